//! matrixctl: declarative provisioning for Matrix homeserver hosts.
//!
//! The data flows one way: the inventory is loaded and checked
//! ([`inventory`]), each host's files are rendered from roles and templates
//! ([`roles`], [`render`]), each host is observed in one run of the host
//! program ([`observe`], [`transport`]), desired and observed become a plan
//! ([`plan`]), and apply executes exactly that plan ([`fleet`]). See
//! ARCHITECTURE.md for the tour.

// A `Problem` (file, line, key, hint) is larger than clippy likes in an
// `Err`, but it is built once on a cold path and printed; boxing it
// everywhere would only add noise.
#![allow(clippy::result_large_err)]

pub mod archives;
pub mod calendar;
pub mod check;
pub mod checklist;
pub mod cli;
pub mod diff;
pub mod escape;
pub mod exports;
pub mod facts;
pub mod fleet;
pub mod health;
pub mod impact;
pub mod input;
pub mod inventory;
pub mod observe;
pub mod openpgp;
pub mod options;
pub mod parallel;
pub mod plan;
pub mod problem;
pub mod progress;
pub mod record;
pub mod render;
pub mod report;
pub mod roles;
pub mod saved;
pub mod scaffold;
pub mod secrets;
pub mod sshkey;
pub mod system;
pub mod trace;
pub mod transport;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use cli::{ApplyArgs, Cli, ColorChoice, Command, Connect, PlanArgs, RenderArgs, Selection};
use diff::Style;
use fleet::{Applied, FleetOptions, PlannedHost, Rollout, Target};
use inventory::Inventory;
use problem::Problems;
use render::{DesiredState, Renderer, redactor_for};
use roles::RoleSet;
use saved::{SavedHost, SavedPlan};
use secrets::Redactor;
use transport::ssh::{ControlDir, SshSettings};

/// Runs one command; the exit code follows Terraform (0 ok, 1 error,
/// 2 changes pending with `plan --detailed-exitcode`).
pub fn run(cli: Cli) -> Result<ExitCode> {
    let style = Style {
        color: match cli.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal()
                    && !no_color_requested(std::env::var_os("NO_COLOR").as_deref())
            }
        },
    };
    if cli.verbose {
        trace::request();
    }
    match cli.command {
        Command::Plan(args) => plan_command(&cli.roles, args, style),
        Command::Apply(args) => apply_command(&cli.roles, args, style),
        Command::Render(args) => render_command(&cli.roles, args),
        Command::Show(args) => show_command(args),
        Command::Options => {
            let roles = roles::RoleSet::load(&cli.roles)?;
            print!("{}", roles.options_reference());
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(cli::AdminCommand::Create(args)) => admin_create(&cli.roles, args),
        Command::Token(cli::TokenCommand::Create(args)) => token_create(&cli.roles, args),
        Command::Backup(args) => backup_command(&cli.roles, args),
        Command::Restore(args) => restore_command(&cli.roles, args, style),
        Command::Backups(args) => {
            let said = run_task(
                &cli.roles,
                &args.inventory.path(),
                &args.host,
                "backup list",
                &Default::default(),
                &args.connect,
                &[],
            )?;
            print!("{}", archives::table(&said)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Init(args) => {
            print!("{}", scaffold::init(&args.dir)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Host(cli::HostCommand::Add(args)) => host_add_command(&cli.roles, args),
        Command::Host(cli::HostCommand::Remove(args)) => {
            if args.purge {
                purge_host(&cli.roles, &args)?;
            }
            let roles = RoleSet::load(&cli.roles)?;
            print!(
                "{}",
                scaffold::host_remove(&args.inventory.path(), &roles, &args.domain)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Onboard(args) => onboard_command(&cli.roles, args),
        Command::Vars(args) => vars_command(&cli.roles, args),
        Command::Disconnect(args) => disconnect_command(&cli.roles, args),
        Command::Check(args) => check_command(&cli.roles, args, style),
        Command::Completions(args) => {
            let shell = match args.shell {
                cli::CompletionShell::Bash => clap_complete::Shell::Bash,
                cli::CompletionShell::Zsh => clap_complete::Shell::Zsh,
                cli::CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "matrixctl", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `matrixctl show FILE`: a saved plan's summary, touching no host.
fn show_command(args: cli::ShowArgs) -> Result<ExitCode> {
    let saved = SavedPlan::read(&args.plan)?;
    let Some(report) = saved.report else {
        bail!(
            "{} was saved by a matrixctl that kept no copy of the plan; `matrixctl apply {}` still applies it",
            args.plan.display(),
            args.plan.display()
        );
    };
    let mut stdout = std::io::stdout().lock();
    if args.json {
        write!(stdout, "{}", report.json)?;
    } else {
        write!(stdout, "{}", report.text)?;
        writeln!(
            stdout,
            "Saved for {}; `matrixctl apply {}` applies exactly it to the hosts still as they were.",
            saved.inventory.display(),
            args.plan.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `matrixctl host add`: the flags, as vars for host_vars.
fn host_add_command(role_dirs: &[PathBuf], args: cli::HostAddArgs) -> Result<ExitCode> {
    let roles = RoleSet::load(role_dirs)?;
    let mut vars = Vec::new();
    for (key, value) in [
        ("matrix_fqdn", args.fqdn),
        ("registration", args.registration),
        ("webserver", args.webserver),
    ] {
        if let Some(value) = value {
            vars.push((vec![key.to_string()], serde_yaml::Value::String(value)));
        }
    }
    if args.turn {
        vars.push((vec!["turn".into()], serde_yaml::Mapping::new().into()));
    }
    vars.extend(args.set);
    let new = scaffold::NewHost {
        domain: args.domain,
        ssh: args.ssh,
        local: args.local,
        groups: args.groups,
        vars,
        bridges: args.bridges,
    };
    print!(
        "{}",
        scaffold::host_add(&args.inventory.path(), &roles, new)?
    );
    Ok(ExitCode::SUCCESS)
}

/// `matrixctl onboard HOST`: the customer's checklist.
fn onboard_command(role_dirs: &[PathBuf], args: cli::OnboardArgs) -> Result<ExitCode> {
    let roles = RoleSet::load(role_dirs)?;
    let inventory = Inventory::load(&args.inventory.path(), &roles)?;
    let host = resolved(&inventory, inventory_host(&inventory, &args.domain)?)?;
    let redactor = redactor_for(&inventory);
    let checklist = Renderer::new(&roles).render_checklist(&inventory, &host, &redactor)?;
    let printed = match args.format {
        cli::OnboardFormat::Text => checklist.to_text(),
        cli::OnboardFormat::Markdown => checklist.to_markdown(),
        cli::OnboardFormat::Json => serde_json::to_string_pretty(&checklist)? + "\n",
    };
    // The customer reads it: no secret of any host may be in it.
    print!("{}", redactor.redact(&printed));
    Ok(ExitCode::SUCCESS)
}

/// `matrixctl check`: every selected host's server name as the world
/// sees it, and what matrixctl renders for it; or `--domain` alone.
fn check_command(role_dirs: &[PathBuf], args: cli::CheckArgs, style: Style) -> Result<ExitCode> {
    // The inventory is known good, and every probe rendered, before
    // anything goes on the network.
    let mut on_hosts = Vec::new();
    let expected: Vec<check::expect::HostExpectations> = match &args.domain {
        Some(_) => Vec::new(),
        None => {
            let roles = RoleSet::load(role_dirs)?;
            let inventory = Inventory::load(&args.inventory_dir(), &roles)?;
            let redactor = redactor_for(&inventory);
            let renderer = Renderer::new(&roles);
            let mut expected = Vec::new();
            let mut problems = Vec::new();
            for host in inventory.select(args.limit.as_deref())? {
                match renderer.render_probes(&inventory, host, &redactor) {
                    Ok(rendered) => {
                        // A host whose roles look at it (its backups' age)
                        // is also asked over SSH.
                        if !rendered.health.is_empty() {
                            match resolved(&inventory, host) {
                                Ok(host) => on_hosts.push(host),
                                Err(problem) => problems.push(problem),
                            }
                        }
                        expected.push(rendered);
                    }
                    Err(Problems(found)) => problems.extend(found),
                }
            }
            if !problems.is_empty() {
                return Err(Problems(problems).into());
            }
            expected
        }
    };
    let control_dir = ControlDir::for_run(None, reached_over_ssh(&on_hosts))?;
    let options = fleet_options(
        &Connect {
            forks: fleet::DEFAULT_FORKS,
            timeout: args.timeout.max(1),
            accept_new_host_keys: false,
            persist: cli::Persist(None),
        },
        &control_dir,
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let net = check::net::Net::new(&check::net::NetOptions {
        pins: args.resolve.clone(),
        dns: args.dns,
        ca_file: args.ca_file.clone(),
        timeout: Duration::from_secs(args.timeout.max(1)),
    })?;
    let reports = runtime()?.block_on(async {
        match &args.domain {
            Some(domain) => vec![check::check_domain(&net, domain).await],
            None => {
                use futures_util::StreamExt;
                // At most --forks' default of hosts asked at once.
                let looks = futures_util::stream::iter(on_hosts.iter().map(|host| {
                    let probes = expected
                        .iter()
                        .find(|expected| expected.host == host.name.as_str())
                        .map(|expected| expected.health.as_slice())
                        .unwrap_or_default();
                    fleet::look_at_health(host, probes, &options)
                }))
                .buffered(options.forks)
                .collect::<Vec<_>>();
                let (mut reports, looks) = futures_util::future::join(
                    futures_util::future::join_all(
                        expected.iter().map(|host| check::check_host(&net, host)),
                    ),
                    looks,
                )
                .await;
                for (host, looked) in on_hosts.iter().zip(looks) {
                    if let Some(report) = reports
                        .iter_mut()
                        .find(|report| report.host.as_deref() == Some(host.name.as_str()))
                    {
                        check::add_health(report, looked.map_err(|error| format!("{error:#}")));
                    }
                }
                reports
            }
        }
    });
    let printed = if args.json {
        check::output::json(&reports)
    } else {
        check::output::text(&reports, style.color)
    };
    print!("{printed}");
    Ok(if reports.iter().all(|report| report.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `matrixctl vars HOST [--explain KEY]`.
fn vars_command(role_dirs: &[PathBuf], args: cli::VarsArgs) -> Result<ExitCode> {
    let roles = RoleSet::load(role_dirs)?;
    let inventory = Inventory::load(&args.inventory.path(), &roles)?;
    let host = inventory_host(&inventory, &args.domain)?;
    let redactor = redactor_for(&inventory);
    // What templates see, but the derived secrets.
    let mut effective: serde_yaml::Mapping = Renderer::new(&roles)
        .context(&inventory, host)
        .into_iter()
        .map(|(key, value)| (key.into(), value))
        .collect();
    effective.remove("secrets");
    let mut out = std::io::stdout().lock();
    let Some(key) = args.explain else {
        let yaml = serde_yaml::to_string(&effective)?;
        write!(out, "{}", redactor.redact(&yaml))?;
        return Ok(ExitCode::SUCCESS);
    };
    let key_path: Vec<String> = key.split('.').map(str::to_string).collect();
    let layers = inventory::explain::layers(&inventory, &roles, host, &key_path);
    let value = inventory::explain::lookup(&effective, &key_path);
    if layers.is_empty() && value.is_none() {
        let known = effective.keys().filter_map(|key| key.as_str());
        return Err(
            problem::Problem::new(format!("no var `{key}` for {}", host.name))
                .with_hint(
                    problem::did_you_mean(&key, known)
                        .or_else(|| Some("`matrixctl options` lists every setting".into())),
                )
                .into(),
        );
    }
    let shown = |value: Option<&serde_yaml::Value>| match value {
        None | Some(serde_yaml::Value::Null) => "unset".to_string(),
        Some(serde_yaml::Value::String(text)) => redactor.redact(text).into_owned(),
        Some(other) => redactor
            .redact(&serde_json::to_string(other).unwrap_or_default())
            .into_owned(),
    };
    writeln!(out, "{key} for {}: {}", host.name, shown(value))?;
    writeln!(out)?;
    let rows: Vec<(String, String)> = layers
        .iter()
        .map(|layer| {
            let origin = match layer.line {
                Some(line) => format!("{}:{line}", layer.origin),
                None => layer.origin.clone(),
            };
            (origin, shown(layer.value.as_ref()))
        })
        .collect();
    let width = rows
        .iter()
        .map(|(origin, _)| origin.len())
        .max()
        .unwrap_or(0);
    for (index, (origin, value)) in rows.iter().enumerate() {
        let wins = if index + 1 == rows.len() {
            "  (wins)"
        } else {
            ""
        };
        writeln!(out, "  {origin:width$}  {value}{wins}")?;
    }
    if layers.is_empty() {
        writeln!(
            out,
            "  no layer sets it: matrixctl derives it from other vars"
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The inventory's host `name`, or an error listing the hosts.
fn inventory_host<'a>(inventory: &'a Inventory, name: &str) -> Result<&'a inventory::Host> {
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
fn run_task(
    role_dirs: &[PathBuf],
    inventory_dir: &Path,
    host_name: &str,
    name: &str,
    args: &std::collections::BTreeMap<String, String>,
    connect: &Connect,
    also_secret: &[String],
) -> Result<String> {
    let roles = RoleSet::load(role_dirs)?;
    let inventory = Inventory::load(inventory_dir, &roles)?;
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
    let control_dir = ControlDir::for_run(connect.persist.0, reached_over_ssh([&host]))?;
    let options = fleet_options(connect, &control_dir);
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

/// Random text for a password: 24 characters of URL-safe base64.
fn new_password() -> Result<String> {
    use base64::Engine;
    use std::io::Read;
    let mut bytes = [0u8; 18];
    fs_err::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn admin_create(role_dirs: &[PathBuf], args: cli::AdminCreateArgs) -> Result<ExitCode> {
    let (localpart, server) = args
        .user
        .trim_start_matches('@')
        .split_once(':')
        .unwrap_or_default();
    if server != args.host {
        bail!(
            "{} belongs to the server {server}, not to {}: an account is made on its own server",
            args.user,
            args.host
        );
    }
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let line = line.trim_end_matches(['\n', '\r']).to_string();
        if line.is_empty() {
            bail!("--password-stdin: stdin gave an empty first line");
        }
        line
    } else {
        new_password()?
    };
    let task_args = [
        ("localpart".to_string(), localpart.to_string()),
        ("password".to_string(), password.clone()),
    ]
    .into_iter()
    .collect();
    let user_id = run_task(
        role_dirs,
        &args.inventory.path(),
        &args.host,
        "admin create",
        &task_args,
        &args.connect,
        std::slice::from_ref(&password),
    )?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "Created {}, an admin, on {}.",
        user_id.trim(),
        args.host
    )?;
    if !args.password_stdin {
        writeln!(
            stdout,
            "Its password, shown this once (matrixctl keeps no copy): {password}"
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A backup of each host now, one after the other (each is a run of the
/// host's own backup unit), and what each archive holds; a host that
/// fails does not stop the next.
fn backup_command(role_dirs: &[PathBuf], args: cli::BackupArgs) -> Result<ExitCode> {
    if let Some(cli::BackupCommand::Verify(verify)) = args.command {
        let archive = verify.archive.unwrap_or_else(|| "latest".to_string());
        let said = run_task(
            role_dirs,
            &verify.inventory.path(),
            &verify.host,
            "backup verify",
            &[("archive".to_string(), archive)].into_iter().collect(),
            &verify.wait.applied_to(&verify.connect),
            &[],
        )?;
        print!("{said}");
        println!("{}: the archive would restore.", verify.host);
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = Vec::new();
    // The host program runs as long as the backup: --wait bounds it, not
    // --timeout's default, which is for plans.
    let connect = args.wait.applied_to(&args.connect);
    for host in &args.hosts {
        let started = std::time::Instant::now();
        let said = run_task(
            role_dirs,
            &args.inventory.path(),
            host,
            "backup now",
            &Default::default(),
            &connect,
            &[],
        );
        match said {
            Ok(said) => {
                println!(
                    "{host}: backed up in {:.1} s\n{}",
                    started.elapsed().as_secs_f64(),
                    said.trim_end()
                );
            }
            Err(error) => {
                eprintln!("error: {error:#}");
                failed.push(host.as_str());
            }
        }
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("No backup of {}.", failed.join(", "));
        Ok(ExitCode::from(1))
    }
}

/// `host remove --purge`: the host's data deleted on the server, after a
/// last archive of it verified (the backup role's `purge` task), before
/// the host leaves the inventory. Refused, with nothing deleted, when the
/// host has no backups or the last one fails.
fn purge_host(role_dirs: &[PathBuf], args: &cli::HostRemoveArgs) -> Result<()> {
    let said = run_task(
        role_dirs,
        &args.inventory.path(),
        &args.domain,
        "purge",
        &Default::default(),
        &args.wait.applied_to(&args.connect),
        &[],
    )
    .map_err(|error| {
        anyhow::anyhow!(
            "{error:#}\nhint: the host stays in the inventory; `--purge` deletes data only once a last archive of it verifies (`backup` set for the host)"
        )
    })?;
    let mut deleted = Vec::new();
    let mut archive = None;
    for line in said.lines() {
        if let Some(item) = line.strip_prefix("deleted ") {
            deleted.push(item.to_string());
        } else if let Some(name) = line.strip_prefix("archive ") {
            archive = Some(name.trim().to_string());
        }
    }
    let archive =
        archive.context("the host's purge did not name the archive that keeps its data")?;
    println!(
        "Deleted {}'s data ({}); it is kept in the archive {archive}, made and verified just now.",
        args.domain,
        deleted.join(", ")
    );
    Ok(())
}

/// A host put back from its backup, in three steps: the host is checked
/// to hold none of the data a restore replaces (before anything changes;
/// `--force` skips this) and marked as being restored; the inventory is
/// applied to it (packages, accounts, files: the configuration comes back
/// from the inventory); then the archive's data replaces what the apply
/// made, with the services that use it stopped until all of it is back.
/// A restore cut short is run again: the mark lets it resume.
fn restore_command(
    role_dirs: &[PathBuf],
    args: cli::RestoreArgs,
    style: Style,
) -> Result<ExitCode> {
    let archive = args.archive.clone().unwrap_or_else(|| "latest".to_string());
    let task_args = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    run_task(
        role_dirs,
        &args.inventory.path(),
        &args.host,
        "restore begin",
        &task_args(&[("force", if args.force { "yes" } else { "no" })]),
        &args.connect,
        &[],
    )
    .map_err(|error| {
        anyhow::anyhow!(
            "{error:#}\nhint: nothing was changed; `--force` replaces that data with the archive's"
        )
    })?;
    println!(
        "{}: holds no data a restore would replace; applying the inventory first.",
        args.host
    );
    let applied = apply_command(
        role_dirs,
        ApplyArgs {
            target: Some(args.inventory.path()),
            inventory_flag: Default::default(),
            limit: Some(args.host.clone()),
            connect: args.connect.clone(),
            json: false,
            yes: true,
            batch: None,
            max_fail: 100.0,
        },
        style,
    )?;
    if applied != ExitCode::SUCCESS {
        bail!(
            "the apply before the data failed, so no data was restored; fix what it says and run `matrixctl restore {}` again",
            args.host
        );
    }
    let connect = args.wait.applied_to(&args.connect);
    let restored = run_task(
        role_dirs,
        &args.inventory.path(),
        &args.host,
        "restore",
        &task_args(&[("archive", &archive)]),
        &connect,
        &[],
    )?;
    println!(
        "Restored {} from {}: its data is back and its services are running.",
        args.host,
        restored.trim()
    );
    Ok(ExitCode::SUCCESS)
}

fn token_create(role_dirs: &[PathBuf], args: cli::TokenCreateArgs) -> Result<ExitCode> {
    let expiry_time = match args.expires {
        Some(ms) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the clock is before 1970")?
                .as_millis();
            (now + u128::from(ms)).to_string()
        }
        None => String::new(),
    };
    let task_args = [
        (
            "uses".to_string(),
            args.uses.map(|uses| uses.to_string()).unwrap_or_default(),
        ),
        ("expiry_time".to_string(), expiry_time),
    ]
    .into_iter()
    .collect();
    let token = run_task(
        role_dirs,
        &args.inventory.path(),
        &args.host,
        "token create",
        &task_args,
        &args.connect,
        &[],
    )?;
    let uses = match args.uses {
        None => "any number of registrations".to_string(),
        Some(1) => "1 registration".to_string(),
        Some(uses) => format!("{uses} registrations"),
    };
    let valid = args.expires.map_or("with no end".to_string(), |ms| {
        format!("for {} hours", ms / 3_600_000)
    });
    println!(
        "Created a registration token on {}, for {uses}, valid {valid}:\n{}",
        args.host,
        token.trim()
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether `NO_COLOR` asks for no colour: set and not empty, as
/// no-color.org defines it (`NO_COLOR=` leaves colour on).
fn no_color_requested(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|value| !value.is_empty())
}

/// Prints an error the way users see every error: problems as they are,
/// anything else as one `error:` line with its causes.
/// An error as the JSON document `--json` promises on stdout
/// (docs/json.md): `{"format_version", "errors": [{message, file, line,
/// key, hint}]}`.
pub fn print_error_json(error: &anyhow::Error) {
    #[derive(serde::Serialize)]
    struct JsonError<'a> {
        message: &'a str,
        file: Option<String>,
        line: Option<usize>,
        key: Option<&'a str>,
        hint: Option<&'a str>,
    }
    #[derive(serde::Serialize)]
    struct JsonErrors<'a> {
        format_version: u32,
        errors: Vec<JsonError<'a>>,
    }
    let problems: Vec<problem::Problem> = if let Some(Problems(problems)) = error.downcast_ref() {
        problems.clone()
    } else if let Some(problem) = error.downcast_ref::<problem::Problem>() {
        vec![problem.clone()]
    } else {
        vec![problem::Problem::new(format!("{error:#}"))]
    };
    let document = JsonErrors {
        format_version: report::JSON_FORMAT_VERSION,
        errors: problems
            .iter()
            .map(|problem| JsonError {
                message: &problem.message,
                file: problem.file.as_ref().map(|file| file.display().to_string()),
                line: problem.line,
                key: problem.key.as_deref(),
                hint: problem.hint.as_deref(),
            })
            .collect(),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&document).unwrap_or_default()
    );
}

pub fn print_error(error: &anyhow::Error) {
    if let Some(problems) = error.downcast_ref::<Problems>() {
        eprintln!("{problems}");
    } else if let Some(problem) = error.downcast_ref::<problem::Problem>() {
        eprintln!("{problem}");
    } else {
        eprintln!("error: {error:#}");
    }
}

/// A checked inventory with every selected host rendered: the point after
/// which hosts may be contacted.
struct Prepared {
    targets: Vec<Target>,
    redactor: Redactor,
}

fn prepare(role_dirs: &[PathBuf], selection: &Selection) -> Result<Prepared> {
    let roles = Arc::new(RoleSet::load(role_dirs)?);
    let inventory = Arc::new(Inventory::load(&selection.inventory_dir(), &roles)?);
    let hosts = inventory.select(selection.limit.as_deref())?;
    let renderer = Renderer::new(&roles);
    let redactor = redactor_for(&inventory);
    trace::arm(&redactor);
    // A host whose roles read its facts is rendered again once it has told
    // them (fleet.rs): with these very roles, inventory and templates.
    let exports = renderer
        .fleet_exports(&inventory, &redactor)
        .map_err(|Problems(problems)| {
            Problems(
                problems
                    .into_iter()
                    .map(|problem| problem.redacted(&redactor))
                    .collect(),
            )
        })?;
    let render_again: fleet::RenderAgain = {
        let (roles, inventory, redactor) = (roles.clone(), inventory.clone(), redactor.clone());
        Arc::new(move |host, facts| {
            Renderer::new(&roles)
                .knowing(exports.clone())
                .render_host(&inventory, host, facts, &redactor)
                .map_err(|Problems(problems)| {
                    let problems = problems
                        .into_iter()
                        .map(|problem| problem.redacted(&redactor))
                        .collect();
                    Problems(problems).to_string()
                })
        })
    };
    let unknown = facts::HostFacts::default();
    let rendered = parallel::map(&hosts, |host| -> Result<Target, Vec<problem::Problem>> {
        let host = resolved(&inventory, host).map_err(|problem| vec![problem])?;
        match renderer.render_host(&inventory, &host, &unknown, &redactor) {
            Ok(rendered) => Ok(Target {
                host,
                rendered,
                render_again: render_again.clone(),
            }),
            Err(Problems(more)) => Err(more
                .into_iter()
                .map(|problem| problem.redacted(&redactor))
                .collect()),
        }
    });
    let mut problems = Vec::new();
    let mut targets = Vec::new();
    for result in rendered {
        match result {
            Ok(target) => targets.push(target),
            Err(more) => problems.extend(more),
        }
    }
    if !problems.is_empty() {
        return Err(Problems(problems).into());
    }
    Ok(Prepared { targets, redactor })
}

/// `host` with the user and port its SSH config gives, where hosts.yaml
/// leaves them out.
fn resolved(
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

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn any_failed(planned: &[PlannedHost]) -> bool {
    planned.iter().any(|host| host.plan.is_err())
}

/// `matrixctl disconnect`: tells the kept master of each selected SSH
/// host to exit. Hosts are only resolved (no rendering), so it works on an
/// inventory that no longer renders.
fn disconnect_command(role_dirs: &[PathBuf], args: cli::DisconnectArgs) -> Result<ExitCode> {
    let roles = RoleSet::load(role_dirs)?;
    let inventory = Inventory::load(&args.selection.inventory_dir(), &roles)?;
    let mut hosts = Vec::new();
    for host in inventory.select(args.selection.limit.as_deref())? {
        hosts.push(resolved(&inventory, host)?);
    }
    let control_dir = transport::ssh::kept_masters_dir()?;
    // Only the directory matters: disconnecting opens no connection.
    let settings = Arc::new(SshSettings {
        control_dir,
        connect_timeout: Duration::from_secs(5),
        accept_new_host_keys: false,
        persist: Some(Duration::from_secs(1)),
    });
    let transports: Vec<_> = hosts
        .iter()
        .map(|host| transport::Transport::for_host(host, &settings))
        .collect();
    let closed = runtime()?.block_on(futures_util::future::join_all(
        transports.iter().map(transport::Transport::disconnect),
    ));
    let mut stdout = std::io::stdout().lock();
    for (host, closed) in hosts.iter().zip(&closed) {
        if *closed {
            writeln!(stdout, "{}: closed", host.name)?;
        }
    }
    let count = closed.iter().filter(|closed| **closed).count();
    writeln!(
        std::io::stderr(),
        "{count} kept connection{} closed ({} host{} selected)",
        if count == 1 { "" } else { "s" },
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" }
    )?;
    Ok(ExitCode::SUCCESS)
}

fn any_changes(planned: &[PlannedHost]) -> bool {
    planned
        .iter()
        .any(|host| host.plan.as_ref().is_ok_and(|plan| !plan.is_empty()))
}

fn reached_over_ssh<'a>(hosts: impl IntoIterator<Item = &'a inventory::Host>) -> bool {
    hosts
        .into_iter()
        .any(|host| matches!(host.connection, inventory::Connection::Ssh(_)))
}

fn fleet_options(connect: &Connect, control_dir: &ControlDir) -> FleetOptions {
    FleetOptions {
        forks: connect.forks,
        timeout: Duration::from_secs(connect.timeout),
        ssh: Arc::new(SshSettings {
            control_dir: control_dir.path().to_path_buf(),
            connect_timeout: Duration::from_secs(connect.timeout),
            accept_new_host_keys: connect.accept_new_host_keys,
            // Kept only where the kept masters' directory is in use.
            persist: match control_dir {
                ControlDir::Kept(_) => connect.persist.0,
                ControlDir::Run(_) => None,
            },
        }),
    }
}

fn plan_command(role_dirs: &[PathBuf], args: PlanArgs, style: Style) -> Result<ExitCode> {
    let prepared = prepare(role_dirs, &args.selection)?;
    let control_dir = ControlDir::for_run(
        args.connect.persist.0,
        reached_over_ssh(prepared.targets.iter().map(|target| &target.host)),
    )?;
    let options = fleet_options(&args.connect, &control_dir);
    let runtime = runtime()?;
    let planned = runtime.block_on(async {
        let planned = fleet::plan(prepared.targets, &options).await;
        fleet::close(&planned).await;
        planned
    });
    if let Some(out) = &args.out {
        let mut saved = SavedPlan::new(&args.selection.inventory_dir(), role_dirs, &planned)?;
        saved.report = Some(saved::SavedReport {
            text: report::plan_text(
                &planned,
                Style { color: false },
                &prepared.redactor,
                report::Detail::Lines,
            ),
            json: report::json(
                "plan",
                &planned,
                None,
                &prepared.redactor,
                report::Detail::Lines,
            ),
        });
        saved.write(out)?;
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        stdout.write_all(
            report::json(
                "plan",
                &planned,
                None,
                &prepared.redactor,
                report::Detail::Full,
            )
            .as_bytes(),
        )?;
    } else {
        let detail = if args.summary {
            report::Detail::Lines
        } else {
            report::Detail::Full
        };
        stdout
            .write_all(report::plan_text(&planned, style, &prepared.redactor, detail).as_bytes())?;
        if let Some(out) = &args.out {
            writeln!(
                stdout,
                "Saved the plan to {}; apply exactly it with `matrixctl apply {}`.",
                out.display(),
                out.display()
            )?;
        }
    }
    stdout.flush()?;
    Ok(if any_failed(&planned) {
        ExitCode::from(1)
    } else if args.detailed_exitcode && any_changes(&planned) {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn apply_command(role_dirs: &[PathBuf], args: ApplyArgs, style: Style) -> Result<ExitCode> {
    let target = args.target();
    let saved = if SavedPlan::is_saved_plan(&target) {
        Some(SavedPlan::read(&target)?)
    } else {
        None
    };
    // A saved plan was reviewed when it was made; an inventory was not.
    if saved.is_none() && !args.yes && (args.json || !std::io::stdin().is_terminal()) {
        bail!(
            "apply needs confirmation, and {} cannot ask for it\nhint: review the changes with `matrixctl plan`, then run `matrixctl apply --yes`",
            if args.json {
                "--json output"
            } else {
                "stdin is not a terminal, so matrixctl"
            }
        );
    }
    let (selection, role_dirs) = match &saved {
        Some(saved) => {
            if saved.hosts.is_empty() {
                println!("The saved plan has no changes to apply.");
                return Ok(ExitCode::SUCCESS);
            }
            let names: Vec<&str> = saved.hosts.keys().map(String::as_str).collect();
            let selection = Selection {
                inventory: Some(saved.inventory.clone()),
                inventory_flag: Default::default(),
                limit: Some(names.join(",")),
            };
            (selection, saved.roles.clone())
        }
        None => (
            Selection {
                inventory: Some(target.clone()),
                inventory_flag: Default::default(),
                limit: args.limit.clone(),
            },
            role_dirs.to_vec(),
        ),
    };
    let prepared = prepare(&role_dirs, &selection)?;
    let control_dir = ControlDir::for_run(
        args.connect.persist.0,
        reached_over_ssh(prepared.targets.iter().map(|target| &target.host)),
    )?;
    let options = fleet_options(&args.connect, &control_dir);
    let runtime = runtime()?;
    let mut planned = runtime.block_on(fleet::plan(prepared.targets, &options));
    if let Some(saved) = &saved {
        refuse_changed_hosts(&mut planned, saved);
    }
    let redactor = &prepared.redactor;
    let mut stdout = std::io::stdout().lock();
    if !args.json {
        stdout.write_all(
            report::plan_text(&planned, style, redactor, report::Detail::Full).as_bytes(),
        )?;
        stdout.flush()?;
    }
    if !any_changes(&planned) {
        runtime.block_on(fleet::close(&planned));
        if args.json {
            stdout.write_all(
                report::json("apply", &planned, Some(&[]), redactor, report::Detail::Full)
                    .as_bytes(),
            )?;
        } else {
            writeln!(stdout, "No changes to apply.")?;
        }
        return Ok(if any_failed(&planned) {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    if saved.is_none() && !args.yes && !confirmed()? {
        runtime.block_on(fleet::close(&planned));
        writeln!(stdout, "Apply cancelled; nothing was changed.")?;
        return Ok(ExitCode::from(1));
    }
    let rollout = Rollout {
        batch: args.batch,
        max_fail_percent: args.max_fail,
    };
    let applied = runtime.block_on(async {
        let applied = fleet::apply(&planned, &options, rollout, &lock_owner()).await;
        fleet::close(&planned).await;
        applied
    });
    if args.json {
        stdout.write_all(
            report::json(
                "apply",
                &planned,
                Some(&applied),
                redactor,
                report::Detail::Full,
            )
            .as_bytes(),
        )?;
    } else {
        stdout.write_all(b"\n")?;
        stdout.write_all(report::apply_text(&planned, &applied, style, redactor).as_bytes())?;
    }
    stdout.flush()?;
    let failed = any_failed(&planned) || applied.iter().any(|host| host.result != Applied::Done);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A saved plan applies only where nothing changed since it was made.
fn refuse_changed_hosts(planned: &mut [PlannedHost], saved: &SavedPlan) {
    for host in planned {
        let Some(expected) = saved.hosts.get(&host.name) else {
            continue;
        };
        if host.plan.is_err() {
            continue;
        }
        let now = SavedHost::of(host);
        let reason = match now {
            Some(now) if now.observed != expected.observed => {
                "the host's files changed since the plan was saved"
            }
            Some(now) if now.desired != expected.desired => {
                "the inventory (or a role) changed since the plan was saved"
            }
            Some(_) => continue,
            None => "the host could not be read",
        };
        host.plan = Err(format!(
            "{reason}; refusing to apply the saved plan here\nhint: run `matrixctl plan` again"
        ));
    }
}

/// Who holds a host's lock while this apply runs: shown to a second apply.
fn lock_owner() -> String {
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

/// The name of the user this process runs as, from /etc/passwd, or its uid.
fn user_of_this_process() -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = fs_err::metadata("/proc/self").map(|meta| meta.uid()) else {
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
fn confirmed() -> Result<bool> {
    eprint!("Apply these changes? Only 'yes' is accepted: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

fn render_command(role_dirs: &[PathBuf], args: RenderArgs) -> Result<ExitCode> {
    let prepared = prepare(role_dirs, &args.selection)?;
    // Creating thousands of files is mostly the kernel's work, which
    // spreads over cores too.
    let written = parallel::map(&prepared.targets, |target| {
        write_tree(
            &args.out.join(target.host.name.as_str()),
            &target.rendered.files,
        )
    });
    written.into_iter().collect::<Result<Vec<()>>>()?;
    let files: usize = prepared
        .targets
        .iter()
        .map(|target| target.rendered.files.len())
        .sum();
    let hosts = prepared.targets.len();
    println!(
        "Rendered {files} file{} for {hosts} host{} into {}.",
        if files == 1 { "" } else { "s" },
        if hosts == 1 { "" } else { "s" },
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes desired files under `dir`, with their modes (not owners: the
/// output is for review by the operator who ran the command).
fn write_tree(dir: &Path, desired: &DesiredState) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for file in desired.values() {
        let path = dir.join(file.path.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        fs_err::write(&path, &file.content)?;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(file.mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::no_color_requested;

    #[test]
    fn only_a_non_empty_no_color_turns_colour_off() {
        assert!(!no_color_requested(None));
        assert!(!no_color_requested(Some("".as_ref())));
        assert!(no_color_requested(Some("1".as_ref())));
        assert!(no_color_requested(Some("0".as_ref())));
    }
}
