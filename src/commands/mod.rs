//! The commands, one module each kind (lib.rs dispatches to them), and
//! what they share: loading the inventory, preparing a selection of
//! hosts before any is touched (`prepare`), reaching hosts, running a
//! role's task on one.

mod backups;
mod checks;
mod hosts;
mod machines;
mod pipeline;
mod status;
mod tasks;

pub(crate) use backups::{backup_command, purge_host, restore_command};
pub(crate) use checks::check_command;
pub(crate) use hosts::{host_add_command, onboard_command, vars_command};
pub(crate) use machines::machines_command;
pub(crate) use pipeline::{
    apply_command, disconnect_command, plan_command, render_command, show_command,
};
pub(crate) use status::status_command;
pub(crate) use tasks::{admin_create, token_create};

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cli::{ApplyArgs, Connect, PlanArgs, RenderArgs, Selection};
use crate::diff::Style;
use crate::fleet::{Applied, FleetOptions, PlannedHost, Rollout, Target};
use crate::inventory::Inventory;
use crate::problem::Problems;
use crate::render::{DesiredState, Rendered, Renderer, redactor_for};
use crate::roles::RoleSet;
use crate::saved::{SavedHost, SavedPlan};
use crate::secrets::Redactor;
use crate::transport::ssh::{ControlDir, SshSettings};

use crate::{
    calendar, check, cli, facts, fleet, inventory, parallel, problem, report, saved, scaffold,
    trace, transport,
};

/// The inventory at `dir`; what the operator should change though it
/// still works (a renamed option) goes to stderr, once per run.
pub(crate) fn load_inventory(dir: &Path, roles: &RoleSet) -> Result<Inventory, Problems> {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let inventory = Inventory::load(dir, roles)?;
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        for warning in &inventory.warnings {
            eprintln!("warning: {warning}");
        }
    }
    Ok(inventory)
}

/// The inventory's host `name`, or an error listing the hosts.
pub(crate) fn inventory_host<'a>(
    inventory: &'a Inventory,
    name: &str,
) -> Result<&'a inventory::Host> {
    inventory
        .hosts
        .iter()
        .find(|host| host.name.as_str() == name)
        .ok_or_else(|| {
            let known = inventory.hosts.iter().map(|host| host.name.as_str());
            problem::Problem::new(format!("no host `{name}` in the inventory"))
                .in_file(&inventory.dir.join("hosts.yaml"))
                .with_hint(Some(format!(
                    "its hosts: {}",
                    known.collect::<Vec<_>>().join(", ")
                )))
                .into()
        })
}

/// Runs the task `name` that a role offers on the inventory's host
/// `host_name`, with `args`; what it printed. `also_secret` are values of
/// this run that must not show in an error either (a new password).
pub(crate) fn run_task(
    role_dirs: &[PathBuf],
    inventory_dir: &Path,
    host_name: &str,
    name: &str,
    args: &std::collections::BTreeMap<String, String>,
    connect: &Connect,
    also_secret: &[String],
) -> Result<String> {
    let roles = RoleSet::load(role_dirs)?;
    let inventory = load_inventory(inventory_dir, &roles)?;
    let host = resolved(&inventory, inventory_host(&inventory, host_name)?)?;
    let renderer = Renderer::new(&roles);
    let redactor = redactor_for(&inventory);
    trace::arm(&redactor);
    let Some(task) = renderer
        .render_task(&inventory, &host, name, args, &redactor)
        .map_err(|problem| problem.redacted(&redactor))?
    else {
        bail!(
            "no role that applies to {host_name} offers `{name}`; `matrixctl options` says which role does, and the condition under which it applies"
        );
    };
    let (_control_dir, options) = reaching(connect, [&host])?;
    let this_run = Redactor::new(also_secret.iter().cloned());
    runtime()?
        .block_on(fleet::run_task(&host, &task, &options))
        .map_err(|error| {
            let said = format!("{error:#}");
            anyhow::anyhow!(
                "{name} on {host_name} failed: {}",
                this_run.redact(&redactor.redact(&said))
            )
        })
}

/// A checked inventory with every selected host rendered: the point after
/// which hosts may be contacted.
pub(crate) struct Prepared {
    targets: Vec<Target>,
    redactor: Redactor,
    /// The inventory's machines (`machines:`), by name.
    machines: Vec<inventory::Machine>,
    inventory: Arc<Inventory>,
    roles: Arc<RoleSet>,
}

pub(crate) fn prepare(role_dirs: &[PathBuf], selection: &Selection) -> Result<Prepared> {
    prepare_looking(role_dirs, selection, false)
}

/// `prepare`, with the roles' `status:` looks too when `status_looks`.
pub(crate) fn prepare_looking(
    role_dirs: &[PathBuf],
    selection: &Selection,
    status_looks: bool,
) -> Result<Prepared> {
    let roles = Arc::new(RoleSet::load(role_dirs)?);
    let inventory = Arc::new(load_inventory(&selection.inventory_dir(), &roles)?);
    let hosts = whole_machines(
        &inventory,
        inventory.select(selection.limit.pattern.as_deref())?,
    );
    let renderer = Renderer::new(&roles).with_status_looks(status_looks);
    let redactor = redactor_for(&inventory);
    trace::arm(&redactor);
    let redacted = |Problems(problems): Problems| {
        Problems(
            problems
                .into_iter()
                .map(|problem| problem.redacted(&redactor))
                .collect(),
        )
    };
    // A host whose roles read its facts is rendered again once it has told
    // them (fleet.rs): with these very roles, inventory and templates.
    let exports = renderer
        .fleet_exports(&inventory, &redactor)
        .map_err(redacted)?;
    let machine_ports = renderer
        .machine_ports(&inventory, &redactor)
        .map_err(redacted)?;
    // Hosts rendered again with one renderer: its templates compile once
    // for all of a machine's customers.
    let render_all_again: RenderAllAgain = {
        let (roles, inventory, redactor) = (roles.clone(), inventory.clone(), redactor.clone());
        Arc::new(move |hosts, facts| {
            let renderer = Renderer::new(&roles)
                .with_status_looks(status_looks)
                .knowing(exports.clone(), machine_ports.clone());
            parallel::map(hosts, |host| {
                renderer
                    .render_host(&inventory, host, facts, &redactor)
                    .map_err(|Problems(problems)| {
                        let problems = problems
                            .into_iter()
                            .map(|problem| problem.redacted(&redactor))
                            .collect();
                        Problems(problems).to_string()
                    })
            })
        })
    };
    let render_again: fleet::RenderAgain = {
        let render_all_again = render_all_again.clone();
        Arc::new(move |host, facts| {
            render_all_again(std::slice::from_ref(host), facts)
                .pop()
                .unwrap_or_else(|| Err("nothing was rendered".to_string()))
        })
    };
    let unknown = facts::HostFacts::default();
    let rendered = parallel::map(&hosts, |host| {
        let host = resolved(&inventory, host).map_err(|problem| vec![problem])?;
        match renderer.render_host(&inventory, &host, &unknown, &redactor) {
            Ok(rendered) => Ok((host, rendered)),
            Err(problems) => Err(redacted(problems).0),
        }
    });
    let mut problems = Vec::new();
    let mut targets = Vec::new();
    // Each machine's customers are one target (one round trip, one
    // transaction): gathered here, merged below.
    let mut machines: std::collections::BTreeMap<String, Vec<(inventory::Host, Rendered)>> =
        Default::default();
    for result in rendered {
        match result {
            Ok((host, rendered)) => match &host.placement {
                Some(placement) => machines
                    .entry(placement.machine.clone())
                    .or_default()
                    .push((host, rendered)),
                None => targets.push(target(host, rendered, render_again.clone())),
            },
            Err(more) => problems.extend(more),
        }
    }
    if !problems.is_empty() {
        return Err(Problems(problems).into());
    }
    for (machine, customers) in machines {
        match machine_target(&inventory, &machine, customers, render_all_again.clone()) {
            Ok(target) => targets.push(target),
            Err(more) => problems.extend(redacted(more).0),
        }
    }
    if !problems.is_empty() {
        return Err(Problems(problems).into());
    }
    order_parts(&inventory, &mut targets);
    Ok(Prepared {
        targets,
        redactor,
        machines: inventory.machines.clone(),
        inventory,
        roles,
    })
}

/// `selected` with the parts of them on other machines, and everything
/// else on the machines of those it holds: a machine is planned and
/// applied whole, or the customers and parts left out would look like
/// files to remove.
fn whole_machines<'a>(
    inventory: &'a Inventory,
    selected: Vec<&'a inventory::Host>,
) -> Vec<&'a inventory::Host> {
    let chosen = |host: &inventory::Host| selected.iter().any(|chosen| chosen.name == host.name);
    let machines: std::collections::BTreeSet<&str> = selected
        .iter()
        .copied()
        .chain(inventory.parts.iter().filter(|part| chosen(part)))
        .filter_map(|host| Some(host.placement.as_ref()?.machine.as_str()))
        .collect();
    let on_those_machines = |host: &inventory::Host| {
        host.placement
            .as_ref()
            .is_some_and(|placement| machines.contains(placement.machine.as_str()))
    };
    inventory
        .hosts
        .iter()
        .chain(&inventory.parts)
        .filter(|host| (host.part.is_none() && chosen(host)) || on_those_machines(host))
        .collect()
}

/// Which target each homeserver spread over machines needs applied
/// first: a part applied `before` (its database) ahead of the
/// homeserver's own machine, one applied `after` (its workers) behind it.
fn order_parts(inventory: &Inventory, targets: &mut [Target]) {
    let target_of = |host: &inventory::Host| match &host.placement {
        Some(placement) => placement.machine.clone(),
        None => host.name.to_string(),
    };
    let mut needs: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for part in &inventory.parts {
        let (Some(carried), Some(placement)) = (&part.part, &part.placement) else {
            continue;
        };
        let home = inventory
            .hosts
            .iter()
            .find(|host| host.name == part.name)
            .map(target_of)
            .unwrap_or_else(|| carried.home.clone());
        let (first, then) = match carried.applied {
            crate::roles::PartOrder::Before => (placement.machine.clone(), home),
            crate::roles::PartOrder::After => (home, placement.machine.clone()),
        };
        needs.entry(then).or_default().push(first);
    }
    for target in targets {
        if let Some(first) = needs.remove(target.host.name.as_str()) {
            target.needs = first;
            target.needs.sort();
            target.needs.dedup();
        }
    }
}

/// A host ready to plan. A host that is a directory on this machine (the
/// example inventory, a test) keeps the owner and group of whoever writes
/// its files when that is not root, who could give them to no one else;
/// a whole host or one over SSH always gets the roles'.
fn target(host: inventory::Host, rendered: Rendered, render_again: fleet::RenderAgain) -> Target {
    if uid_of_this_process() != Some(0) && is_directory_here(&host) {
        Target {
            host,
            rendered: rendered.without_owners(),
            render_again: without_owners(render_again),
            needs: Vec::new(),
        }
    } else {
        Target {
            host,
            rendered,
            render_again,
            needs: Vec::new(),
        }
    }
}

/// A machine and the homeservers on it as one target: the machine reached
/// as its customers say, their renders merged (also when rendered again
/// with the facts the machine told).
fn machine_target(
    inventory: &Inventory,
    machine: &str,
    customers: Vec<(inventory::Host, Rendered)>,
    render_all_again: RenderAllAgain,
) -> Result<Target, Problems> {
    let (hosts, renders): (Vec<inventory::Host>, Vec<Rendered>) = customers.into_iter().unzip();
    let host = machine_host(inventory, machine, &hosts)?;
    let merged = merge(machine, hosts.iter().zip(renders.into_iter().map(Ok)))?;
    let name = machine.to_string();
    let again: fleet::RenderAgain = Arc::new(move |_, facts| {
        let customers = hosts.iter().zip(render_all_again(&hosts, facts));
        merge(&name, customers).map_err(|problems| problems.to_string())
    });
    Ok(target(host, merged, again))
}

/// The customers' renders as their machine's, or the first that failed.
fn merge<'a>(
    machine: &str,
    customers: impl Iterator<Item = (&'a inventory::Host, Result<Rendered, String>)>,
) -> Result<Rendered, Problems> {
    let mut renders = Vec::new();
    for (host, rendered) in customers {
        let rendered = rendered.map_err(|said| Problems(vec![problem::Problem::new(said)]))?;
        renders.push(crate::render::machine::CustomerRender { host, rendered });
    }
    crate::render::machine::merge(machine, renders)
}

/// The machine as a host: reached as its customers are (hosts.yaml gives
/// them its connection), with the state directory and SSH settings they
/// all must agree on.
fn machine_host(
    inventory: &Inventory,
    machine: &str,
    customers: &[inventory::Host],
) -> Result<inventory::Host, Problems> {
    let found = inventory
        .machines
        .iter()
        .find(|candidate| candidate.name.as_str() == machine);
    let (Some(found), Some(first)) = (found, customers.first()) else {
        return Err(Problems(vec![problem::Problem::new(format!(
            "machine `{machine}` carries no homeserver"
        ))]));
    };
    let mut problems = Vec::new();
    for other in &customers[1..] {
        let pairs = [
            (
                "state_dir",
                serde_yaml::to_value(&first.vars.state_dir).ok(),
                serde_yaml::to_value(&other.vars.state_dir).ok(),
            ),
            (
                "ssh_options",
                serde_yaml::to_value(&first.vars.ssh_options).ok(),
                serde_yaml::to_value(&other.vars.ssh_options).ok(),
            ),
            (
                "become",
                serde_yaml::to_value(first.vars.become_).ok(),
                serde_yaml::to_value(other.vars.become_).ok(),
            ),
        ];
        for (key, a, b) in pairs {
            if a != b {
                problems.push(
                    problem::Problem::new(format!(
                        "{} and {} share machine {machine} but set `{key}` differently: the machine is reached and kept one way",
                        first.name, other.name
                    ))
                    .at_key(key.to_string())
                    .with_hint(Some(format!(
                        "set `{key}` once, in machine_vars/{machine}.yaml"
                    ))),
                );
            }
        }
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    let mut host = first.clone();
    host.name = found.name.clone();
    host.groups = found.groups.clone();
    host.placement = None;
    host.part = None;
    host.private_address = found.private_address.clone();
    host.warnings = Vec::new();
    host.secret_values = customers
        .iter()
        .flat_map(|customer| customer.secret_values.iter().cloned())
        .collect();
    Ok(host)
}

/// `host` with the user and port its SSH config gives, where hosts.yaml
/// leaves them out.
pub(crate) fn resolved(
    inventory: &Inventory,
    host: &inventory::Host,
) -> Result<inventory::Host, problem::Problem> {
    let mut host = host.clone();
    if let inventory::Connection::Ssh(target) = &mut host.connection
        && (!target.user_given || !target.port_given)
        && let Err(reason) = transport::ssh::resolve(target, &host.vars.ssh_options)
    {
        return Err(problem::Problem::new(reason)
            .in_file(&inventory.dir.join("hosts.yaml"))
            .at_key(format!("hosts.{}.ssh", host.name)));
    }
    Ok(host)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) fn any_failed(planned: &[PlannedHost]) -> bool {
    planned.iter().any(|host| host.plan.is_err())
}

pub(crate) fn any_changes(planned: &[PlannedHost]) -> bool {
    planned
        .iter()
        .any(|host| host.plan.as_ref().is_ok_and(|plan| !plan.is_empty()))
}

fn reached_over_ssh<'a>(hosts: impl IntoIterator<Item = &'a inventory::Host>) -> bool {
    hosts
        .into_iter()
        .any(|host| matches!(host.connection, inventory::Connection::Ssh(_)))
}

/// How this run reaches `hosts`, as `connect` says: the one place that
/// decides whether SSH masters are kept (`--persist`, only when a host is
/// reached over SSH). The directory must live as long as the options are
/// used: a run's own directory goes when it is dropped.
pub(crate) fn reaching<'a>(
    connect: &Connect,
    hosts: impl IntoIterator<Item = &'a inventory::Host>,
) -> Result<(ControlDir, FleetOptions)> {
    let control_dir = ControlDir::for_run(connect.persist.0, reached_over_ssh(hosts))?;
    let options = FleetOptions {
        forks: connect.forks,
        timeout: Duration::from_secs(connect.timeout),
        ssh: Arc::new(SshSettings {
            control_dir: control_dir.path().to_path_buf(),
            connect_timeout: Duration::from_secs(connect.timeout),
            accept_new_host_keys: connect.accept_new_host_keys,
            // Kept only where the kept masters' directory is in use.
            persist: match &control_dir {
                ControlDir::Kept(_) => connect.persist.0,
                ControlDir::Run(_) => None,
            },
        }),
    };
    Ok((control_dir, options))
}

/// Who holds a host's lock while this apply runs: shown to a second apply.
pub(crate) fn lock_owner() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|user| !user.is_empty())
        .unwrap_or_else(user_of_this_process);
    let machine = fs_err::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "?".to_string());
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| calendar::date_time(elapsed.as_secs() as i64))
        .unwrap_or_default();
    format!(
        "matrixctl apply by {user}@{machine} (pid {}) since {since}",
        std::process::id()
    )
}

/// Whether `host` is a directory on this machine rather than a system.
fn is_directory_here(host: &crate::inventory::Host) -> bool {
    matches!(host.connection, crate::inventory::Connection::Local) && host.root != Path::new("/")
}

/// The uid this process runs as (the owner of /proc/self).
fn uid_of_this_process() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    fs_err::metadata("/proc/self").ok().map(|meta| meta.uid())
}

/// Renders hosts again once their facts are known, each as
/// `fleet::RenderAgain` does, in the hosts' order.
type RenderAllAgain = Arc<
    dyn Fn(&[inventory::Host], &facts::HostFacts) -> Vec<Result<Rendered, String>> + Send + Sync,
>;

/// `render_again` with the files' owners left alone.
fn without_owners(render_again: fleet::RenderAgain) -> fleet::RenderAgain {
    Arc::new(move |host, facts| {
        render_again(host, facts).map(crate::render::Rendered::without_owners)
    })
}

/// The name of the user this process runs as, from /etc/passwd, or its uid.
pub(crate) fn user_of_this_process() -> String {
    let Some(uid) = uid_of_this_process() else {
        return "?".to_string();
    };
    fs_err::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)? == uid.to_string()).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// Asks on the terminal; only `yes` goes ahead.
pub(crate) fn confirmed() -> Result<bool> {
    eprint!("Apply these changes? Only 'yes' is accepted: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}
