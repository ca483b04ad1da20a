//! Parts of a homeserver on other machines than its own.
//!
//! A role's `places:` names machines of `machines:` for a part of the
//! homeserver (its workers, its database). Each machine named gets one
//! part host per homeserver: the homeserver's vars, secrets and paths,
//! reached as the machine is, with the names of the parts it carries.
//! Only a machine with a `private_address` can carry a part, and only for
//! a homeserver whose own machine has one: that is where what crosses
//! machines listens.

use serde_yaml::{Mapping, Value};

use super::{Host, Layout, Machine, Part, Placement, Problem, VarsFile, assertions};
use crate::roles::RoleSet;

/// The vars of machine_vars/MACHINE.yaml a machine carrying parts (and
/// no customer) reads: how it is reached and kept.
const REACH_KEYS: [&str; 3] = ["ssh_options", "state_dir", "become"];

/// The part hosts the roles place, each machine's `parts` filled in; what
/// cannot be placed goes to `problems`.
pub(super) fn place(
    dir: &std::path::Path,
    roles: &RoleSet,
    hosts: &[Host],
    machines: &mut [Machine],
    machine_vars: &std::collections::BTreeMap<String, VarsFile>,
    inventory_vars: &Mapping,
    problems: &mut Vec<Problem>,
) -> Vec<Host> {
    let hosts_path = &dir.join("hosts.yaml");
    let mut parts: Vec<Host> = Vec::new();
    for host in hosts {
        let home = match &host.placement {
            Some(placement) => placement.machine.clone(),
            None => host.name.to_string(),
        };
        let mut around = inventory_vars.clone();
        around.insert("machine_name".into(), home.as_str().into());
        let placed = match assertions::places(roles, &host.vars, &host.merged, &host.name, &around)
        {
            Ok(placed) => placed,
            Err(broken) => {
                let mut problem = Problem::new(broken.message).at_key(broken.key);
                if let Some(manifest) = &broken.manifest {
                    problem = problem.in_file(manifest);
                }
                problems.push(problem.with_hint(broken.hint));
                continue;
            }
        };
        for (place, names) in placed {
            for name in names {
                let Some(machine) = machines
                    .iter_mut()
                    .find(|machine| machine.name.as_str() == name)
                else {
                    problems.push(
                        Problem::new(format!(
                            "{}: `{name}` (its {}) is not a machine of hosts.yaml",
                            host.name, place.part
                        ))
                        .at_key(place.key.clone())
                        .with_hint(Some(format!(
                            "name it under `machines:` in hosts.yaml, like\n  machines:\n    {name}:\n      ssh: root@{name}\n      private_address: 10.0.0.2"
                        ))),
                    );
                    continue;
                };
                if machine.private_address.is_none() {
                    problems.push(
                        Problem::new(format!(
                            "{}: machine {name} carries its {} but has no `private_address`: what crosses machines listens there alone",
                            host.name, place.part
                        ))
                        .in_file(hosts_path)
                        .at_key(format!("machines.{name}.private_address"))
                        .with_hint(Some(format!(
                            "set `private_address:` on machine {name} in hosts.yaml (an address on a network only your machines reach)"
                        ))),
                    );
                    continue;
                }
                if host.private_address.is_none() {
                    let (at, whose) = match &host.placement {
                        Some(placement) => (
                            format!("machines.{}.private_address", placement.machine),
                            format!("machine {}", placement.machine),
                        ),
                        None => (
                            format!("hosts.{}.private_address", host.name),
                            format!("host {}", host.name),
                        ),
                    };
                    problems.push(
                        Problem::new(format!(
                            "{}: its {} is on machine {name}, and its own machine {home} has no `private_address` to be reached at",
                            host.name, place.part
                        ))
                        .in_file(hosts_path)
                        .at_key(at)
                        .with_hint(Some(format!(
                            "set `private_address:` on {whose} in hosts.yaml (an address on a network only your machines reach)"
                        ))),
                    );
                    continue;
                }
                if let Some(part) = parts.iter_mut().find(|part| {
                    part.name == host.name
                        && part
                            .placement
                            .as_ref()
                            .is_some_and(|placement| placement.machine == name)
                }) {
                    if let Some(carried) = &mut part.part
                        && !carried.names.contains(&place.part)
                    {
                        carried.names.push(place.part.clone());
                        carried.names.sort();
                    }
                    continue;
                }
                machine.parts.push((host.name.clone(), place.part.clone()));
                parts.push(part_host(host, machine, &home, &place));
            }
        }
    }
    for machine in machines.iter_mut() {
        machine.parts.sort();
    }
    // How a machine carrying parts is reached is its own, from
    // machine_vars: not the homeserver's.
    for part in &mut parts {
        let Some(file) = part
            .placement
            .as_ref()
            .and_then(|placement| machine_vars.get(&placement.machine))
        else {
            continue;
        };
        if let Err(problem) = reach_from(file, part, dir) {
            problems.push(problem);
        }
    }
    for machine in machines
        .iter()
        .filter(|machine| machine.customers.is_empty())
    {
        let Some(file) = machine_vars.get(machine.name.as_str()) else {
            continue;
        };
        for key in file.vars.keys().filter_map(Value::as_str) {
            if !REACH_KEYS.contains(&key) {
                problems.push(
                    Problem::new(format!(
                        "machine {} carries no homeserver of its own, so its machine_vars only say how it is reached ({}); `{key}` would apply to nothing",
                        machine.name,
                        REACH_KEYS.join(", ")
                    ))
                    .in_file(&file.path)
                    .at_line(crate::locate::line_of_key(&file.text, &[key.to_string()]))
                    .at_key(key.to_string())
                    .with_hint(Some(
                        "the parts of a homeserver on it take the homeserver's vars: set it there".into(),
                    )),
                );
            }
        }
    }
    parts.sort_by(|a, b| {
        let machine = |host: &Host| host.placement.as_ref().map(|p| p.machine.clone());
        (machine(a), &a.name).cmp(&(machine(b), &b.name))
    });
    parts
}

/// The homeserver `host` as the part of it `machine` carries.
fn part_host(host: &Host, machine: &Machine, home: &str, place: &crate::roles::PlaceSpec) -> Host {
    // Its paths and names are the homeserver's own: a customer's keeps
    // its short name and address, a whole host's the plain ones.
    let placement = match &host.placement {
        Some(placement) => Placement {
            machine: machine.name.to_string(),
            ..placement.clone()
        },
        None => Placement::new(machine.name.as_str(), Layout::Single, &host.name),
    };
    let mut groups = machine.groups.clone();
    for group in &host.groups {
        if !groups.contains(group) {
            groups.push(group.clone());
        }
    }
    Host {
        groups,
        connection: machine.connection.clone(),
        root: machine.root.clone(),
        placement: Some(placement),
        private_address: machine.private_address.clone(),
        part: Some(Part {
            names: vec![place.part.clone()],
            home: home.to_string(),
            applied: place.applied,
        }),
        warnings: Vec::new(),
        ..host.clone()
    }
}

/// `part`'s SSH options, state directory and `become`, from its
/// machine's machine_vars where that sets them.
fn reach_from(file: &VarsFile, part: &mut Host, dir: &std::path::Path) -> Result<(), Problem> {
    fn read<T: serde::de::DeserializeOwned>(
        file: &VarsFile,
        key: &str,
    ) -> Result<Option<T>, Problem> {
        let Some(value) = file.vars.get(key) else {
            return Ok(None);
        };
        serde_yaml::from_value(value.clone())
            .map(Some)
            .map_err(|error| {
                Problem::new(format!("`{key}`: {error}"))
                    .in_file(&file.path)
                    .at_line(crate::locate::line_of_key(&file.text, &[key.to_string()]))
                    .at_key(key.to_string())
            })
    }
    if let Some(mut options) = read::<super::SshOptions>(file, "ssh_options")? {
        options.relative_to(dir);
        part.vars.ssh_options = options;
    }
    if let Some(state_dir) = read(file, "state_dir")? {
        part.vars.state_dir = state_dir;
    }
    if let Some(become_) = read(file, "become")? {
        part.vars.become_ = become_;
    }
    Ok(())
}
