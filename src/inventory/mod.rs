//! Reads an inventory directory into checked hosts: who they are, how to
//! reach them, and their vars after precedence, typed and with provenance.
//!
//! Everything is checked here, before any host is contacted. Problems are
//! collected across all files so the operator sees them all at once.
//!
//! ```text
//! inventory/
//!   hosts.yaml              hosts: {NAME: {ssh, groups, connection, root}}
//!   group_vars/all.yaml     every host
//!   group_vars/GROUP.yaml   members of GROUP, in the order a host lists groups
//!   host_vars/NAME.yaml     one host
//!   secrets/master.key      the key per-host secrets are derived from
//! ```

pub mod assertions;
pub mod explain;
pub mod layers;
pub mod machines;
mod parts;
pub(crate) use crate::locate;
pub(crate) use crate::values::matrix;
pub mod schema;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use crate::problem::{
    Problem, Problems, deserialize_at, did_you_mean, suggestion_for_serde_message,
};
use crate::roles::RoleSet;
use crate::secrets::{MasterKey, SecretName};
use layers::{Layered, Source};
pub use machines::{Layout, Machine, Part, Placement};
use schema::{CORE_KEYS, CoreVars, DnsName, IpAddress, Port, RESERVED_KEYS, SshOptions};

/// A checked inventory: every host valid, ready to render.
#[derive(Debug)]
pub struct Inventory {
    pub dir: PathBuf,
    /// Sorted by name.
    pub hosts: Vec<Host>,
    /// The parts of homeservers on other machines than their own (each a
    /// `Host` with its homeserver's name and vars, reached as the machine
    /// carrying it is), sorted by machine, then server name.
    pub parts: Vec<Host>,
    /// The machines of hosts.yaml's `machines:`, sorted by name.
    pub machines: Vec<Machine>,
    pub groups: BTreeSet<String>,
    pub master_key: MasterKey,
    /// Every secret the roles declare: what each host derives.
    pub secret_names: Vec<SecretName>,
    /// The ones a machine's customers share (see `secret_owner`).
    pub machine_secret_names: Vec<SecretName>,
    /// What the operator should change though it still works (a renamed
    /// option), once each, sorted.
    pub warnings: Vec<String>,
}

/// One Matrix host.
#[derive(Debug, Clone)]
pub struct Host {
    /// The Matrix server name (the part after the colon in @alice:example.com).
    pub name: DnsName,
    pub groups: Vec<String>,
    pub connection: Connection,
    /// Every path of the host lives under this directory (default `/`).
    pub root: PathBuf,
    /// The machine it shares with other homeservers, if it does.
    pub placement: Option<Placement>,
    /// Where the other machines of a homeserver spread over several reach
    /// its machine (hosts.yaml's `private_address`).
    pub private_address: Option<String>,
    /// Set when this is a part of the homeserver on another machine than
    /// its own (`Inventory::parts`).
    pub part: Option<Part>,
    pub vars: CoreVars,
    /// All vars after precedence, core and role vars alike, for templates.
    pub merged: Mapping,
    /// Every value the operator gave for a secret (overrides, and options
    /// declared `secret`), for redaction.
    pub secret_values: Vec<String>,
    /// Renamed options its vars files still set (see `Inventory::warnings`).
    pub warnings: Vec<String>,
}

/// How matrixctl reaches a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// A directory on this machine.
    Local,
    /// Over SSH.
    Ssh(SshTarget),
}

/// `[user@]host[:port]`, as in hosts.yaml's `ssh:`. What `ssh:` leaves
/// out, the operator's ssh config decides (see `transport::ssh::resolve`):
/// until then `user` is root and `port` 22.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: String,
    pub host: String,
    pub port: Port,
    /// `ssh:` named the user / the port.
    pub user_given: bool,
    pub port_given: bool,
    /// The ProxyCommand or ProxyJump the ssh config sets for this host:
    /// the port matrixctl reaches is then not the host's own sshd port.
    pub proxy: Option<String>,
}

impl SshTarget {
    fn parse(text: &str) -> Result<SshTarget, String> {
        let (user, rest) = match text.split_once('@') {
            Some((user, rest)) => (user.to_string(), rest),
            None => ("root".to_string(), text),
        };
        let user_given = text.contains('@');
        let (host, port) = if let Some(rest) = rest.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{text}`: unclosed `[` in an IPv6 address"))?;
            (host.to_string(), after.strip_prefix(':'))
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (rest.to_string(), None),
            }
        };
        let port_given = port.is_some();
        let port = match port {
            None => Port(22),
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => Port(port),
                _ => return Err(format!("`{text}`: `{port}` is not a port (1 to 65535)")),
            },
        };
        let valid_word = |word: &str| {
            !word.is_empty()
                && !word.starts_with('-')
                && word
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b))
        };
        if !valid_word(&user) || !valid_word(&host) {
            return Err(format!("`{text}` is not of the form user@host:port"));
        }
        Ok(SshTarget {
            user,
            host,
            port,
            user_given,
            port_given,
            proxy: None,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a map with a `hosts:` key (and, optionally, `machines:`)"
)]
struct HostsFile {
    #[serde(default)]
    machines: BTreeMap<String, Option<MachineEntry>>,
    hosts: BTreeMap<String, Option<HostEntry>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a map of host settings (ssh, groups, connection, root, private_address, or machine and layout)"
)]
struct HostEntry {
    #[serde(default)]
    ssh: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    connection: Option<ConnectionKind>,
    #[serde(default)]
    root: Option<PathBuf>,
    /// The machine of `machines:` this homeserver shares.
    #[serde(default)]
    machine: Option<String>,
    #[serde(default)]
    layout: Option<Layout>,
    /// The address the other machines of a homeserver spread over several
    /// reach this one at (a placed homeserver takes its machine's).
    #[serde(default)]
    private_address: Option<IpAddress>,
}

/// A machine of `machines:`: how it is reached, and its groups.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a map of machine settings (ssh, groups, connection, root, private_address)"
)]
struct MachineEntry {
    #[serde(default)]
    ssh: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    connection: Option<ConnectionKind>,
    #[serde(default)]
    root: Option<PathBuf>,
    /// The address the machine's peers reach it at (see `HostEntry`).
    #[serde(default)]
    private_address: Option<IpAddress>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ConnectionKind {
    #[default]
    Ssh,
    Local,
}

/// A vars file, parsed, with its text kept for line lookups.
struct VarsFile {
    path: PathBuf,
    text: String,
    vars: Mapping,
}

impl Inventory {
    /// Loads and checks `dir`. Role defaults from `roles` are the lowest layer
    /// of every host's vars, and their keys are known keys.
    pub fn load(dir: &Path, roles: &RoleSet) -> Result<Inventory, Problems> {
        if !dir.is_dir() {
            return Err(Problem::new("the inventory directory does not exist")
                .in_file(dir)
                .with_hint(Some(
                    "name the inventory directory (the one with hosts.yaml) with `-i DIR`, set MATRIXCTL_INVENTORY, or run matrixctl inside it: e.g. `matrixctl plan -i inventory.example`"
                        .into(),
                ))
                .into());
        }
        let mut problems = Vec::new();
        let hosts_path = dir.join("hosts.yaml");
        let (entries, machine_entries) = read_hosts(&hosts_path)?;

        let mut names = BTreeMap::new();
        // Duplicate names are refused by the YAML parser; uppercase ones by
        // `DnsName`, so no two hosts can differ only in case either.
        for (name, entry, line) in entries {
            match name.parse::<DnsName>() {
                Ok(dns_name) => {
                    names.insert(name, (dns_name, entry, line));
                }
                Err(error) => problems.push(
                    Problem::new(format!("invalid server name: {}", error.reason))
                        .in_file(&hosts_path)
                        .at_line(line)
                        .at_key(format!("hosts.{}", name.escape_debug()))
                        .with_hint(error.hint),
                ),
            }
        }

        let mut machines = BTreeMap::new();
        for (name, entry, line) in machine_entries {
            let key = format!("machines.{}", name.escape_debug());
            match name.parse::<DnsName>() {
                Ok(_) if names.contains_key(&name) => problems.push(
                    Problem::new(format!("`{name}` is both a machine and a homeserver"))
                        .in_file(&hosts_path)
                        .at_line(line)
                        .at_key(key)
                        .with_hint(Some(format!(
                            "a machine is named apart from the homeservers it carries, like `m1.{name}`"
                        ))),
                ),
                Ok(dns_name) => {
                    machines.insert(name, (dns_name, entry, line));
                }
                Err(error) => problems.push(
                    Problem::new(format!("invalid machine name: {}", error.reason))
                        .in_file(&hosts_path)
                        .at_line(line)
                        .at_key(key)
                        .with_hint(error.hint),
                ),
            }
        }
        // A placed homeserver is reached as its machine is, and is in its
        // machine's groups before its own.
        for (name, (_, entry, line)) in names.iter_mut() {
            let Some(machine) = entry.machine.clone() else {
                if entry.layout.is_some() {
                    problems.push(
                        Problem::new("`layout` says how a homeserver shares a machine, and this one has no `machine`")
                            .in_file(&hosts_path)
                            .at_line(*line)
                            .at_key(format!("hosts.{name}.layout"))
                            .with_hint(Some("place it with `machine: NAME`, or remove `layout`".into())),
                    );
                }
                continue;
            };
            let Some((_, machine_entry, _)) = machines.get(&machine) else {
                let hint = did_you_mean(&machine, machines.keys().map(String::as_str)).or_else(|| {
                    Some(format!("name it under `machines:` in hosts.yaml, like\n  machines:\n    {machine}:\n      ssh: root@{machine}"))
                });
                problems.push(
                    Problem::new(format!("`{machine}` is not a machine of hosts.yaml"))
                        .in_file(&hosts_path)
                        .at_line(*line)
                        .at_key(format!("hosts.{name}.machine"))
                        .with_hint(hint),
                );
                continue;
            };
            let reach = [
                ("ssh", entry.ssh.is_some()),
                ("connection", entry.connection.is_some()),
                ("root", entry.root.is_some()),
                ("private_address", entry.private_address.is_some()),
            ];
            for (key, _) in reach.iter().filter(|(_, given)| *given) {
                problems.push(
                    Problem::new(format!(
                        "a homeserver placed on a machine is reached as the machine is, so it has no `{key}` of its own"
                    ))
                    .in_file(&hosts_path)
                    .at_line(*line)
                    .at_key(format!("hosts.{name}.{key}"))
                    .with_hint(Some(format!("set `{key}` on machine `{machine}` under `machines:`"))),
                );
            }
            let mut groups = machine_entry.groups.clone();
            for group in &entry.groups {
                if !groups.contains(group) {
                    groups.push(group.clone());
                }
            }
            *entry = HostEntry {
                ssh: Some(machine_entry.ssh.clone().unwrap_or_else(|| machine.clone())),
                groups,
                connection: machine_entry.connection,
                root: machine_entry.root.clone(),
                machine: Some(machine),
                layout: entry.layout,
                private_address: machine_entry.private_address.clone(),
            };
        }

        let mut groups = BTreeSet::new();
        let group_lists =
            names
                .iter()
                .map(|(name, (_, entry, line))| (format!("hosts.{name}"), &entry.groups, line))
                .chain(machines.iter().map(|(name, (_, entry, line))| {
                    (format!("machines.{name}"), &entry.groups, line)
                }));
        for (at, list, line) in group_lists {
            for (index, group) in list.iter().enumerate() {
                let valid = !group.is_empty()
                    && group
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !valid || group == "all" {
                    let reason = if group == "all" {
                        "`all` is implicit: every host is in it"
                    } else {
                        "group names are made of letters, digits, `_` and `-`"
                    };
                    problems.push(
                        Problem::new(format!("invalid group name `{group}`: {reason}"))
                            .in_file(&hosts_path)
                            .at_line(*line)
                            .at_key(format!("{at}.groups[{index}]")),
                    );
                } else {
                    groups.insert(group.clone());
                }
            }
        }

        // A vars file named after a group, machine or host hosts.yaml lacks.
        let group_vars = read_vars_dir(&dir.join("group_vars"), &mut problems);
        problems.extend(vars_for_nothing(
            &group_vars,
            |group| group == "all" || groups.contains(group),
            groups.iter().map(String::as_str),
            |group| format!("group_vars for `{group}`, but no host is in that group"),
            "list the group under a host's `groups:` in hosts.yaml, or remove the file",
        ));
        let machine_vars = read_vars_dir(&dir.join("machine_vars"), &mut problems);
        problems.extend(vars_for_nothing(
            &machine_vars,
            |machine| machines.contains_key(machine),
            machines.keys().map(String::as_str),
            |machine| format!("machine_vars for `{machine}`, a machine that is not in hosts.yaml"),
            "name the machine under `machines:` in hosts.yaml, or remove the file",
        ));
        let host_vars = read_vars_dir(&dir.join("host_vars"), &mut problems);
        problems.extend(vars_for_nothing(
            &host_vars,
            |host| names.contains_key(host),
            names.keys().map(String::as_str),
            |host| format!("host_vars for `{host}`, a host that is not in hosts.yaml"),
            "add the host to hosts.yaml, or remove the file",
        ));

        let master_key_path = dir.join("secrets").join("master.key");
        let master_key = MasterKey::load(&master_key_path)
            .map_err(|problem| problems.push(problem))
            .ok();

        // What the roles' rules and places read of the inventory beyond
        // the host: the machines, and the private addresses of machines
        // and whole hosts.
        let inventory_vars = inventory_vars(&machines, &names);
        // Each host's vars are layered and checked on its own, so hosts
        // are worked on in parallel; results keep the hosts' order.
        let names: Vec<_> = names.into_iter().collect();
        let loaded = crate::parallel::map(&names, |(name, (dns_name, entry, line))| {
            load_host(
                dir,
                &hosts_path,
                roles,
                &group_vars,
                &machine_vars,
                &host_vars,
                name,
                dns_name,
                entry,
                *line,
                &inventory_vars,
            )
        });
        let mut hosts = Vec::new();
        for result in loaded {
            match result {
                Ok(host) => hosts.push(host),
                Err(more) => {
                    // A mistake in a shared file shows up once, not once per host.
                    for problem in more {
                        if !problems.contains(&problem) {
                            problems.push(problem);
                        }
                    }
                }
            }
        }

        problems.extend(placement_problems(&hosts_path, &hosts));
        let mut machines: Vec<Machine> = machines
            .into_values()
            .filter_map(|(name, entry, line)| {
                let (connection, root) =
                    machine_reach(dir, &hosts_path, name.as_str(), &entry, line)
                        .map_err(|problem| problems.push(problem))
                        .ok()?;
                Some(Machine {
                    customers: hosts
                        .iter()
                        .filter(|host| {
                            host.placement
                                .as_ref()
                                .is_some_and(|placement| placement.machine == name.as_str())
                        })
                        .map(|host| host.name.clone())
                        .collect(),
                    parts: Vec::new(),
                    connection,
                    root,
                    private_address: entry
                        .private_address
                        .as_ref()
                        .map(|address| address.0.to_string()),
                    name,
                    groups: entry.groups,
                })
            })
            .collect();
        let parts = if problems.is_empty() {
            parts::place(
                dir,
                roles,
                &hosts,
                &mut machines,
                &machine_vars,
                &inventory_vars,
                &mut problems,
            )
        } else {
            Vec::new()
        };

        // A vars file several hosts read warns once.
        let warnings: Vec<String> = hosts
            .iter()
            .flat_map(|host| host.warnings.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        match master_key {
            Some(master_key) if problems.is_empty() => Ok(Inventory {
                dir: dir.to_path_buf(),
                hosts,
                parts,
                machines,
                groups,
                master_key,
                secret_names: roles.secret_names(),
                machine_secret_names: roles.machine_secret_names(),
                warnings,
            }),
            // A derived secret pasted where a plain value goes (or used as
            // a key) would print in the problem that names it.
            Some(master_key) => {
                let secret_names = roles.secret_names();
                let no_generations = BTreeMap::new();
                let mut values = vec![master_key.as_text()];
                for (_, (dns_name, _, _)) in &names {
                    let generations = hosts
                        .iter()
                        .find(|host| &host.name == dns_name)
                        .map_or(&no_generations, |host| &host.vars.secret_generation);
                    values.extend(master_key.all_generations(
                        dns_name.as_str(),
                        &secret_names,
                        generations,
                    ));
                }
                for host in &hosts {
                    values.extend(host.secret_values.iter().cloned());
                }
                let redactor = crate::secrets::Redactor::new(values);
                Err(Problems(
                    problems
                        .into_iter()
                        .map(|problem| problem.redacted(&redactor))
                        .collect(),
                ))
            }
            None => Err(Problems(problems)),
        }
    }

    /// Machine or whole host name → the private address hosts.yaml gives
    /// it (what templates read as `private_addresses`).
    pub fn private_addresses(&self) -> Mapping {
        let whole_hosts = self
            .hosts
            .iter()
            .filter(|host| host.placement.is_none())
            .map(|host| (host.name.as_str(), host.private_address.as_ref()));
        let machines = self
            .machines
            .iter()
            .map(|machine| (machine.name.as_str(), machine.private_address.as_ref()));
        whole_hosts
            .chain(machines)
            .filter_map(|(name, address)| Some((name.into(), address?.as_str().into())))
            .collect()
    }

    /// The name `host`'s secret `name` is derived for: its own server
    /// name, or for a secret its machine's customers share, the machine's
    /// (the name of the customer keeping a single host's layout when there
    /// is one, so that its secret stays what it was before it had company).
    pub fn secret_owner(&self, host: &Host, name: &SecretName) -> String {
        let Some(placement) = &host.placement else {
            return host.name.to_string();
        };
        if !self.machine_secret_names.contains(name) {
            return host.name.to_string();
        }
        self.hosts
            .iter()
            .find(|other| {
                other.placement.as_ref().is_some_and(|theirs| {
                    theirs.machine == placement.machine && theirs.layout == Layout::Single
                })
            })
            .map_or_else(
                || placement.machine.clone(),
                |single| single.name.to_string(),
            )
    }

    /// The hosts `pattern` selects: host names, globs over host names and
    /// group names, separated by commas or colons, as Ansible's `--limit`:
    /// plain ones add hosts, `&PATTERN` keeps only the hosts it also
    /// matches, `!PATTERN` takes its hosts away (from every host when
    /// nothing was added): `customers:&eu:!example.com`.
    pub fn select(&self, pattern: Option<&str>) -> Result<Vec<&Host>, Problem> {
        let Some(pattern) = pattern else {
            return Ok(self.hosts.iter().collect());
        };
        let mut added = BTreeSet::new();
        let mut any_added = false;
        let mut kept: Vec<BTreeSet<usize>> = Vec::new();
        let mut removed = BTreeSet::new();
        for part in pattern
            .split([',', ':'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            if let Some(part) = part.strip_prefix('!') {
                removed.extend(self.matching(part)?);
            } else if let Some(part) = part.strip_prefix('&') {
                kept.push(self.matching(part)?);
            } else {
                any_added = true;
                added.extend(self.matching(part)?);
            }
        }
        let base: BTreeSet<usize> = if any_added {
            added
        } else {
            (0..self.hosts.len()).collect()
        };
        Ok(base
            .into_iter()
            .filter(|index| kept.iter().all(|set| set.contains(index)))
            .filter(|index| !removed.contains(index))
            .map(|index| &self.hosts[index])
            .collect())
    }

    /// The hosts one `--limit` pattern names; one that names nothing is an
    /// error, with a suggestion.
    fn matching(&self, part: &str) -> Result<BTreeSet<usize>, Problem> {
        let glob = glob::Pattern::new(part)
            .map_err(|error| Problem::new(format!("invalid --limit pattern `{part}`: {error}")))?;
        let found: BTreeSet<usize> = self
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, host)| {
                part == "all"
                    || host.groups.iter().any(|group| group == part)
                    || glob.matches(host.name.as_str())
                    || host
                        .placement
                        .as_ref()
                        .is_some_and(|placement| glob.matches(&placement.machine))
                    // A machine carrying a part of it.
                    || self.parts.iter().any(|carried| {
                        carried.name == host.name
                            && carried
                                .placement
                                .as_ref()
                                .is_some_and(|placement| glob.matches(&placement.machine))
                    })
            })
            .map(|(index, _)| index)
            .collect();
        let a_group = part == "all" || self.groups.iter().any(|group| group == part);
        if found.is_empty() && !a_group {
            let candidates = self
                .hosts
                .iter()
                .map(|host| host.name.as_str())
                .chain(self.machines.iter().map(|machine| machine.name.as_str()))
                .chain(self.groups.iter().map(String::as_str));
            return Err(
                Problem::new(format!("--limit `{part}` matches no host or group"))
                    .with_hint(did_you_mean(part, candidates)),
            );
        }
        Ok(found)
    }
}

/// An entry of hosts.yaml with the line it is declared on.
type Declared<T> = Vec<(String, T, Option<usize>)>;

/// The hosts and the machines in hosts.yaml, each with its line.
fn read_hosts(path: &Path) -> Result<(Declared<HostEntry>, Declared<MachineEntry>), Problem> {
    if !path.exists() && path.symlink_metadata().is_err() {
        return Err(Problem::new("cannot read the host list: no such file")
            .in_file(path)
            .with_hint(Some(
                "an inventory needs hosts.yaml, e.g.\n  hosts:\n    example.com:\n      ssh: root@matrix.example.com"
                    .into(),
            )));
    }
    let text = crate::input::read_text(path, path.parent(), crate::input::MAX_YAML_BYTES)?;
    let value: Value = crate::input::parse_yaml(path, &text)?;
    let file: HostsFile = deserialize_at(value).map_err(|error| {
        let top_level = error.keys.len() <= 1;
        let (message, hint) = if top_level && error.message.contains("field `") {
            (
                format!("hosts.yaml has `hosts` (and, optionally, `machines`) at its top level ({})", error.message),
                Some("list hosts under it:\n  hosts:\n    example.com:\n      ssh: root@matrix.example.com".to_string()),
            )
        } else {
            (error.message.clone(), suggestion_for_serde_message(&error.message))
        };
        Problem::new(message)
            .in_file(path)
            .at_line(locate::line_of_key(&text, &error.keys))
            .at_key(error.display)
            .with_hint(hint)
    })?;
    fn declared<T: Default>(
        text: &str,
        section: &str,
        entries: BTreeMap<String, Option<T>>,
    ) -> Declared<T> {
        let lines = locate::lines_under(text, section);
        entries
            .into_iter()
            .map(|(name, entry)| {
                let line = lines
                    .get(&name)
                    .copied()
                    .or_else(|| locate::line_of_key(text, &[section.to_string(), name.clone()]))
                    .or_else(|| escaped_key_line(text, &name));
                (name, entry.unwrap_or_default(), line)
            })
            .collect()
    }
    Ok((
        declared(&text, "hosts", file.hosts),
        declared(&text, "machines", file.machines),
    ))
}

/// What placing homeservers on machines got wrong: two customers keeping
/// a single host's layout on one machine, or two whose derived names or
/// addresses collide.
fn placement_problems(hosts_path: &Path, hosts: &[Host]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut single: BTreeMap<&str, &DnsName> = BTreeMap::new();
    for host in hosts {
        let Some(placement) = &host.placement else {
            continue;
        };
        if placement.layout != Layout::Single {
            continue;
        }
        if let Some(first) = single.insert(&placement.machine, &host.name) {
            problems.push(
                Problem::new(format!(
                    "{first} and {} both keep a single host's layout on machine `{}`: their files, accounts and units would be the same ones",
                    host.name, placement.machine
                ))
                .in_file(hosts_path)
                .at_key(format!("hosts.{}.layout", host.name))
                .with_hint(Some(
                    "only the homeserver that was on the machine before others joined keeps `layout: single`".into(),
                )),
            );
        }
    }
    let placed = hosts
        .iter()
        .filter_map(|host| Some((&host.name, host.placement.as_ref()?)));
    for (what, first, second) in machines::collisions(placed) {
        problems.push(
            Problem::new(format!(
                "{first} and {second} would share {what} on their machine"
            ))
            .in_file(hosts_path)
            .at_key(format!("hosts.{second}.machine"))
            .with_hint(Some(
                "place one of them on another machine (the names and addresses are derived from the server names, so that nothing moves when customers come and go)".into(),
            )),
        );
    }
    problems
}

/// The line of a key written as a double-quoted YAML string with escapes
/// (`"a.example\nb":`, a name holding a control character), found by the
/// text up to its first escape, which the locator cannot match as is.
fn escaped_key_line(text: &str, name: &str) -> Option<usize> {
    let plain: String = name.chars().take_while(|c| !c.is_control()).collect();
    if plain.len() == name.len() {
        return None;
    }
    let quoted = format!("\"{plain}\\");
    text.lines()
        .position(|line| line.trim_start().starts_with(&quoted))
        .map(|index| index + 1)
}

/// A problem for each of `files` named after nothing `known` takes, with
/// the nearest of `candidates` or `otherwise` as the hint.
fn vars_for_nothing<'a>(
    files: &BTreeMap<String, VarsFile>,
    known: impl Fn(&str) -> bool,
    candidates: impl Iterator<Item = &'a str> + Clone,
    message: impl Fn(&str) -> String,
    otherwise: &str,
) -> Vec<Problem> {
    files
        .iter()
        .filter(|(name, _)| !known(name))
        .map(|(name, file)| {
            let hint = did_you_mean(name, candidates.clone()).or_else(|| Some(otherwise.into()));
            Problem::new(message(name))
                .in_file(&file.path)
                .with_hint(hint)
        })
        .collect()
}

/// `NAME.yaml` files of a vars directory, by NAME. A missing directory is empty.
fn read_vars_dir(dir: &Path, problems: &mut Vec<Problem>) -> BTreeMap<String, VarsFile> {
    let mut files = BTreeMap::new();
    let Ok(entries) = fs_err::read_dir(dir) else {
        return files;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let Some(extension) = path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        if extension != "yaml" && extension != "yml" {
            continue;
        }
        let Some(name) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let text = match crate::input::read_text(&path, dir.parent(), crate::input::MAX_YAML_BYTES)
        {
            Ok(text) => text,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        let vars = match crate::input::parse_yaml(&path, &text) {
            Ok(Value::Mapping(vars)) => vars,
            Ok(Value::Null) => Mapping::new(),
            Ok(_) => {
                problems.push(
                    Problem::new("expected a map of variables (`key: value` lines)").in_file(&path),
                );
                continue;
            }
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        if let Some(previous) = files.get(&name) {
            let previous: &VarsFile = previous;
            problems.push(
                Problem::new(format!("two vars files for `{name}`"))
                    .in_file(&path)
                    .with_hint(Some(format!(
                        "merge it into {} and remove one",
                        previous.path.display()
                    ))),
            );
            continue;
        }
        files.insert(name, VarsFile { path, text, vars });
    }
    files
}

/// One host of hosts.yaml with its vars layered and checked, or what is
/// wrong with it.
#[allow(clippy::too_many_arguments)]
fn load_host(
    dir: &Path,
    hosts_path: &Path,
    roles: &RoleSet,
    group_vars: &BTreeMap<String, VarsFile>,
    machine_vars: &BTreeMap<String, VarsFile>,
    host_vars: &BTreeMap<String, VarsFile>,
    name: &str,
    dns_name: &DnsName,
    entry: &HostEntry,
    line: Option<usize>,
    inventory_vars: &Mapping,
) -> Result<Host, Vec<Problem>> {
    let mut warnings = BTreeSet::new();
    let placement = entry
        .machine
        .as_deref()
        .map(|machine| Placement::new(machine, entry.layout.unwrap_or_default(), dns_name));
    let vars_files = VarsFiles {
        group_vars,
        machine_vars,
        host_vars,
    };
    let layered = layer_vars(
        dns_name,
        entry,
        placement.as_ref(),
        roles,
        &vars_files,
        &mut warnings,
    )
    .map_err(|problem| vec![problem])?;
    let root = resolve_root(
        dir,
        hosts_path,
        &format!("hosts.{name}"),
        entry.root.as_ref(),
        line,
    )
    .map_err(|problem| vec![problem])?;
    let mut around = inventory_vars.clone();
    around.insert(
        "machine_name".into(),
        entry.machine.as_deref().unwrap_or(name).into(),
    );
    let (mut vars, merged) = check_vars(&layered, roles, Some(dns_name), &around)?;
    vars.ssh_options.relative_to(dir);
    let connection_kind = entry.connection.unwrap_or_default();
    if connection_kind == ConnectionKind::Ssh {
        missing_ssh_files(&vars.ssh_options, &layered)?;
    }
    let connection = match connection_kind {
        ConnectionKind::Local => Connection::Local,
        ConnectionKind::Ssh => {
            // Default: the machine that serves Matrix, as the ssh config
            // (or root on port 22) says.
            let text = entry.ssh.clone().unwrap_or_else(|| vars.fqdn(dns_name));
            let target = SshTarget::parse(&text).map_err(|reason| {
                vec![
                    Problem::new(format!("invalid ssh target {reason}"))
                        .in_file(hosts_path)
                        .at_line(line)
                        .at_key(format!("hosts.{name}.ssh")),
                ]
            })?;
            Connection::Ssh(target)
        }
    };
    let mut secret_values = vars.secret_values();
    secret_values.extend(roles.option_secret_values(&merged));
    Ok(Host {
        name: dns_name.clone(),
        groups: entry.groups.clone(),
        connection,
        root,
        placement,
        private_address: entry
            .private_address
            .as_ref()
            .map(|address| address.0.to_string()),
        part: None,
        vars,
        merged,
        secret_values,
        warnings: warnings.into_iter().collect(),
    })
}

/// What the roles' rules and `places:` see of the inventory besides a
/// host's vars: `inventory_machines` (the names under `machines:`) and
/// `private_addresses` (machine or whole host name → its address).
fn inventory_vars(
    machines: &BTreeMap<String, (DnsName, MachineEntry, Option<usize>)>,
    hosts: &BTreeMap<String, (DnsName, HostEntry, Option<usize>)>,
) -> Mapping {
    let mut addresses = Mapping::new();
    let whole_hosts = hosts
        .iter()
        .filter(|(_, (_, entry, _))| entry.machine.is_none())
        .map(|(name, (_, entry, _))| (name, entry.private_address.as_ref()));
    let machine_addresses = machines
        .iter()
        .map(|(name, (_, entry, _))| (name, entry.private_address.as_ref()));
    for (name, address) in whole_hosts.chain(machine_addresses) {
        if let Some(address) = address {
            addresses.insert(name.as_str().into(), address.0.to_string().into());
        }
    }
    let mut vars = Mapping::new();
    vars.insert(
        "inventory_machines".into(),
        Value::Sequence(machines.keys().map(|name| name.as_str().into()).collect()),
    );
    vars.insert("private_addresses".into(), Value::Mapping(addresses));
    vars
}

/// How a machine of `machines:` is reached: as its customers are.
fn machine_reach(
    dir: &Path,
    hosts_path: &Path,
    name: &str,
    entry: &MachineEntry,
    line: Option<usize>,
) -> Result<(Connection, PathBuf), Problem> {
    let at = format!("machines.{name}");
    let root = resolve_root(dir, hosts_path, &at, entry.root.as_ref(), line)?;
    let connection = match entry.connection.unwrap_or_default() {
        ConnectionKind::Local => Connection::Local,
        ConnectionKind::Ssh => {
            let text = entry.ssh.clone().unwrap_or_else(|| name.to_string());
            let target = SshTarget::parse(&text).map_err(|reason| {
                Problem::new(format!("invalid ssh target {reason}"))
                    .in_file(hosts_path)
                    .at_line(line)
                    .at_key(format!("{at}.ssh"))
            })?;
            Connection::Ssh(target)
        }
    };
    Ok((connection, root))
}

/// A host's or machine's `root` (`at` is its key in hosts.yaml): `/`
/// unless given, a relative one relative to the inventory.
fn resolve_root(
    dir: &Path,
    hosts_path: &Path,
    at: &str,
    root: Option<&PathBuf>,
    line: Option<usize>,
) -> Result<PathBuf, Problem> {
    match root {
        None => Ok(PathBuf::from("/")),
        Some(root) if root.is_absolute() => Ok(root.clone()),
        // Relative roots are relative to the inventory, so an inventory
        // works from any working directory.
        Some(relative) => {
            let root = dir.join(relative);
            // `..` enough times reaches `/` (this machine itself) or a
            // directory holding the inventory: never what a relative root
            // means. An absolute root (or none) says so plainly.
            if let (Ok(resolved), Ok(inventory)) = (root.canonicalize(), dir.canonicalize())
                && inventory.starts_with(&resolved)
            {
                return Err(Problem::new(format!(
                    "root `{}` leads to {}, which holds the inventory itself",
                    relative.display(),
                    resolved.display()
                ))
                .in_file(hosts_path)
                .at_line(line)
                .at_key(format!("{at}.root"))
                .with_hint(Some(
                    "a relative root is a directory of its own next to or inside the inventory \
                         (like `.hosts/NAME`); to manage this machine, leave `root` out"
                        .to_string(),
                )));
            }
            Ok(root)
        }
    }
}

/// The files `ssh_options` names that do not exist on this machine: ssh
/// would only say that the host refused us (a missing key) or fail
/// obscurely, so they are the inventory's mistake, named before any host
/// is contacted.
fn missing_ssh_files(options: &SshOptions, layered: &Layered) -> Result<(), Vec<Problem>> {
    let files = [
        ("identity_file", &options.identity_file, "the key file"),
        ("config_file", &options.config_file, "the ssh_config file"),
    ];
    let mut problems = Vec::new();
    for (key, path, what) in files {
        let Some(path) = path else { continue };
        if path.exists() {
            continue;
        }
        let lookup = ["ssh_options".to_string(), key.to_string()];
        let source = layered.source_of(&lookup);
        let mut problem = Problem::new(format!("{what} {} does not exist", path.display()))
            .at_key(format!("ssh_options.{key}"))
            .with_hint(Some(
                "`~/` is your home directory; other relative paths are relative to the inventory \
                 (make a key with `ssh-keygen -t ed25519 -f PATH`)"
                    .to_string(),
            ));
        if let Some(source) = source {
            problem = problem
                .in_file(source.path())
                .at_line(source.line_of(&lookup));
        }
        problems.push(problem);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The inventory's vars files, by directory.
struct VarsFiles<'a> {
    group_vars: &'a BTreeMap<String, VarsFile>,
    machine_vars: &'a BTreeMap<String, VarsFile>,
    host_vars: &'a BTreeMap<String, VarsFile>,
}

impl VarsFiles<'_> {
    /// The files a host reads, lowest precedence first: group_vars/all,
    /// group_vars/GROUP (in the host's order), machine_vars/MACHINE,
    /// host_vars/NAME.
    fn of<'a>(
        &'a self,
        name: &DnsName,
        groups: &'a [String],
        machine: Option<&str>,
    ) -> impl Iterator<Item = &'a VarsFile> + 'a {
        std::iter::once("all")
            .chain(groups.iter().map(String::as_str))
            .filter_map(|group| self.group_vars.get(group))
            .chain(machine.and_then(|machine| self.machine_vars.get(machine)))
            .chain(self.host_vars.get(name.as_str()))
    }
}

/// Role defaults < the roles' per-customer values (a customer sharing
/// its machine) < the vars files (`VarsFiles::of`).
fn layer_vars(
    name: &DnsName,
    entry: &HostEntry,
    placement: Option<&Placement>,
    roles: &RoleSet,
    files: &VarsFiles,
    warnings: &mut BTreeSet<String>,
) -> Result<Layered, Problem> {
    let mut layered = Layered::default();
    for role in roles.roles.values() {
        let source = Source::RoleDefaults {
            role: role.name.clone(),
            path: role.path.clone(),
        };
        push(&mut layered, source, &role.manifest.defaults)?;
    }
    if let Some(placement) = placement.filter(|placement| placement.layout == Layout::Shared) {
        for role in roles.roles.values() {
            if role.manifest.customer_defaults.is_empty() {
                continue;
            }
            let source = Source::CustomerDefaults {
                role: role.name.clone(),
                path: role.path.clone(),
            };
            let values = placement.fill_in(&role.manifest.customer_defaults);
            push(&mut layered, source, &values)?;
        }
    }
    let files = files.of(name, &entry.groups, entry.machine.as_deref());
    for file in files {
        let source = Source::File {
            path: file.path.clone(),
            text: file.text.clone(),
        };
        let vars = renamed_vars(file, roles, warnings)?;
        push(&mut layered, source, &vars)?;
    }
    Ok(layered)
}

/// A vars file's top-level vars with the roles' renamed options under
/// their new names (each a warning naming file, line and new name), or
/// an error at the first removed option it sets, saying what replaced it.
fn renamed_vars(
    file: &VarsFile,
    roles: &RoleSet,
    warnings: &mut BTreeSet<String>,
) -> Result<Mapping, Problem> {
    let at = |key: &str| crate::locate::line_of_key(&file.text, &[key.to_string()]);
    let mut vars = Mapping::new();
    for (key, value) in &file.vars {
        let Some(name) = key.as_str() else {
            vars.insert(key.clone(), value.clone());
            continue;
        };
        if let Some((instead, role)) = roles.removed(name) {
            return Err(
                Problem::new(format!("`{name}` was removed (role `{}`)", role.name))
                    .in_file(&file.path)
                    .at_line(at(name))
                    .at_key(name.to_string())
                    .with_hint(Some(instead.trim().to_string())),
            );
        }
        match roles.renamed(name) {
            Some((new, role)) => {
                if file.vars.contains_key(new) {
                    return Err(Problem::new(format!(
                        "`{name}` and its new name `{new}` are both set (role `{}` renamed it)",
                        role.name
                    ))
                    .in_file(&file.path)
                    .at_line(at(name))
                    .at_key(name.to_string())
                    .with_hint(Some(format!("keep `{new}` alone"))));
                }
                let line = at(name).map(|line| format!(":{line}")).unwrap_or_default();
                warnings.insert(format!(
                    "{}{line}: `{name}` is now `{new}` (role `{}`); it still works in this release: rename it",
                    file.path.display(),
                    role.name
                ));
                vars.insert(Value::String(new.to_string()), value.clone());
            }
            None => {
                vars.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(vars)
}

fn push(layered: &mut Layered, source: Source, vars: &Mapping) -> Result<(), Problem> {
    let path = source.path().clone();
    layered.push(source, vars).map_err(|error| {
        let mut key = error.parent.join(".");
        if !key.is_empty() {
            key.push('.');
        }
        key.push_str(&error.key);
        Problem::new("variable names must be strings")
            .in_file(&path)
            .at_key(key)
    })
}

/// Types the core vars, checks role vars against their defaults, and refuses
/// unknown keys. Returns the typed core and the merged map for templates.
fn check_vars(
    layered: &Layered,
    roles: &RoleSet,
    server_name: Option<&DnsName>,
    around: &Mapping,
) -> Result<(CoreVars, Mapping), Vec<Problem>> {
    let defaults = roles.defaults();
    let options = &roles.option_tree;
    let mut problems = Vec::new();
    // A key path may go through a list (`oidc_providers[0].idp_id`): the
    // file and line are those of the list's key, the key shown is whole.
    let problem_at = |key_path: &[String], message: String| {
        let mut lookup = Vec::new();
        for part in key_path {
            // `name[3]` is a list index; a key may hold `[` itself.
            match part.split_once('[').filter(|(_, index)| {
                index.strip_suffix(']').is_some_and(|digits| {
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                })
            }) {
                Some((key, _)) => {
                    lookup.push(key.to_string());
                    break;
                }
                None => lookup.push(part.clone()),
            }
        }
        let source = layered.source_of(&lookup);
        let problem = Problem::new(message);
        let problem = match source {
            Some(source) => problem.in_file(source.path()),
            None => problem,
        };
        problem
            .at_line(source.and_then(|s| s.line_of(&lookup)))
            .at_key(key_path.join("."))
    };

    let merged = layered.to_mapping();
    // No value may carry a line break or another control character into a
    // rendered file: there it would start a line of its own (a directive in
    // an ini, web server or environment file). Refused for every var,
    // whatever its type, before anything else looks at it.
    let mut broken_lines = Vec::new();
    // Options say which of their strings may span lines (`multiline`, `any`).
    let allows_lines = |path: &[String]| {
        let parts: Vec<&str> = path
            .iter()
            .map(|part| part.split('[').next().unwrap_or(part))
            .collect();
        parts.split_first().is_some_and(|(top, rest)| {
            options
                .get(*top)
                .is_some_and(|(spec, _)| spec.allows_lines_at(rest))
        })
    };
    find_control_characters(
        &mut Vec::new(),
        &Value::Mapping(merged.clone()),
        false,
        &allows_lines,
        &mut broken_lines,
    );
    // A value refused here is not typed again below (one error per value).
    let broken_keys: BTreeSet<String> = broken_lines
        .iter()
        .filter_map(|(path, _)| path.first())
        .map(|key| key.split('[').next().unwrap_or(key).to_string())
        .collect();
    for (path, what) in broken_lines {
        let problem = if what.starts_with("a bidirectional") || what.starts_with("a zero-width") {
            problem_at(
                &path,
                format!("the value holds {what}, which makes it read as something it is not"),
            )
            .with_hint(Some(
                "retype the value by hand; invisible characters often come with text copied from a web page or chat".to_string(),
            ))
        } else {
            problem_at(
                &path,
                format!("the value holds {what}, which would start a new line in the files it is written to"),
            )
            .with_hint(Some(
                "write the value on one line (a YAML `|` or `>` block adds a line break at its end; use a quoted string)".to_string(),
            ))
        };
        problems.push(problem);
    }
    let mut core = Mapping::new();
    let mut normalised = Mapping::new();
    // A required option nobody set: the one error a default cannot prevent.
    for (key, (spec, role)) in options {
        if spec.required && !merged.contains_key(key.as_str()) {
            let what = spec
                .description
                .as_deref()
                .map(|text| format!(": {}", text.trim()))
                .unwrap_or_default();
            let example = spec
                .example
                .as_ref()
                .and_then(|example| serde_yaml::to_string(example).ok())
                .map(|example| {
                    format!(
                        "set it for this host (or its group), like `{key}: {}`",
                        example.trim()
                    )
                });
            let host = server_name
                .map(|name| format!(" (host {name})"))
                .unwrap_or_default();
            problems.push(
                Problem::new(format!("`{key}` is required by role `{role}`{what}{host}"))
                    .at_key(key.to_string())
                    .with_hint(
                        example.or_else(|| {
                            Some("set it for this host, or in its group's vars".into())
                        }),
                    ),
            );
        }
    }
    for (key, source) in layered.top_level() {
        if CORE_KEYS.contains(&key) {
            if let Some(value) = merged.get(key) {
                core.insert(Value::String(key.to_string()), value.clone());
            }
            continue;
        }
        if let Some((_, reason)) = RESERVED_KEYS.iter().find(|(reserved, _)| *reserved == key) {
            problems.push(problem_at(
                &[key.to_string()],
                format!("`{key}` cannot be set: {reason}"),
            ));
            continue;
        }
        if let Some((spec, _)) = options.get(key) {
            if let Some(value) = merged.get(key)
                && !broken_keys.contains(key)
            {
                let mut findings = Vec::new();
                spec.check(&mut vec![key.to_string()], value, &mut findings);
                if findings.is_empty() {
                    normalised.insert(Value::String(key.to_string()), spec.normalise(value));
                }
                for finding in findings {
                    problems
                        .push(problem_at(&finding.path, finding.message).with_hint(finding.hint));
                }
            }
            continue;
        }
        match defaults.get(key) {
            Some((default, role)) => {
                if let Some(value) = merged.get(key) {
                    check_like_default(
                        &[key.to_string()],
                        value,
                        default,
                        role,
                        &mut |path, message, hint| {
                            problems.push(problem_at(path, message).with_hint(hint))
                        },
                    );
                }
            }
            None => {
                let known = CORE_KEYS.iter().copied().chain(defaults.keys().copied());
                let hint = did_you_mean(key, known).or_else(|| {
                    if matches!(source, Source::File { .. }) {
                        Some("known keys are listed in docs/inventory.md; a role declares its own keys in its `defaults`".into())
                    } else {
                        None
                    }
                });
                problems.push(
                    problem_at(&[key.to_string()], format!("unknown key `{key}`")).with_hint(hint),
                );
            }
        }
    }

    // One key at a time first, so every bad core key is reported, not just the first.
    for (key, value) in &core {
        let single: Mapping = [(key.clone(), value.clone())].into_iter().collect();
        if let Err(error) = deserialize_at::<CoreVars>(Value::Mapping(single)) {
            let message = error.message.clone();
            let hint = suggestion_for_serde_message(&error.message);
            let shown: Vec<String> = error.display.split('.').map(str::to_string).collect();
            problems.push(problem_at(&shown, message).with_hint(hint));
        }
    }
    let vars = deserialize_at::<CoreVars>(Value::Mapping(core)).ok();
    // Overrides and generations name secrets some role declares.
    if let Some(vars) = &vars {
        let declared = roles.secret_names();
        let named = vars.secrets.keys().map(|name| ("secrets", name)).chain(
            vars.secret_generation
                .keys()
                .map(|name| ("secret_generation", name)),
        );
        for (key, name) in named {
            if declared.contains(name) {
                continue;
            }
            let names: Vec<&str> = declared.iter().map(SecretName::as_str).collect();
            let list = names.join(", ");
            let hint = match did_you_mean(name.as_str(), names.iter().copied()) {
                Some(suggestion) => format!("{suggestion} Secret names are: {list}"),
                None => format!("secret names are: {list}"),
            };
            problems.push(
                problem_at(
                    &[key.to_string(), name.to_string()],
                    format!("unknown secret `{name}`"),
                )
                .with_hint(Some(hint)),
            );
        }
    }
    // A shared object var nobody set still has its fields.
    for (key, (spec, _)) in options {
        if !merged.contains_key(key.as_str())
            && let Some(absent) = spec.absent_value()
        {
            normalised
                .entry(Value::String(key.to_string()))
                .or_insert(absent);
        }
    }
    let mut merged = merged;
    for (key, value) in normalised {
        merged.insert(key, value);
    }
    // The roles' rules see the same typed values templates will. With other
    // problems found, a rule still runs if every var it reads is sound
    // (a broken one is left out, so a rule reading it cannot evaluate and
    // says nothing): one run reports every problem it can.
    if let Some(vars) = &vars {
        let partial = !problems.is_empty();
        let unsound: BTreeSet<&str> = problems
            .iter()
            .filter_map(|problem| problem.key.as_deref())
            .map(|key| key.split(['.', '[']).next().unwrap_or(key))
            .collect();
        let mut sound = merged.clone();
        sound.retain(|key, _| key.as_str().is_none_or(|key| !unsound.contains(key)));
        let found = assertions::broken(roles, vars, &sound, server_name, around);
        // A rule's message may name any var, a secret one too. Built only
        // when a rule is broken: most hosts break none.
        let redactor = if found.is_empty() {
            crate::secrets::Redactor::none()
        } else {
            let mut secret_values = vars.secret_values();
            secret_values.extend(roles.option_secret_values(&merged));
            crate::secrets::Redactor::new(secret_values)
        };
        for broken in found {
            if partial && broken.manifest.is_some() {
                continue;
            }
            let broken = assertions::Broken {
                message: redactor.redact(&broken.message).into_owned(),
                hint: broken.hint.map(|hint| redactor.redact(&hint).into_owned()),
                ..broken
            };
            let problem = match &broken.manifest {
                Some(manifest) => Problem::new(broken.message)
                    .in_file(manifest)
                    .at_key(broken.key),
                None => {
                    let path: Vec<String> = broken.key.split('.').map(str::to_string).collect();
                    // A var the operator never set has only its role's
                    // default to point at: point at what they set that
                    // turned the role on instead.
                    let operator_set = |path: &[String]| {
                        matches!(layered.source_of(path), Some(Source::File { .. }))
                    };
                    let instead = broken
                        .turned_on_by
                        .iter()
                        .map(|var| vec![var.clone()])
                        .find(|var| operator_set(var));
                    match instead {
                        Some(var) if !operator_set(&path) => {
                            problem_at(&var, broken.message).at_key(broken.key.clone())
                        }
                        _ => problem_at(&path, broken.message),
                    }
                }
            };
            problems.push(problem.with_hint(broken.hint));
        }
    }
    match vars {
        Some(vars) if problems.is_empty() => Ok((vars, merged)),
        _ => Err(problems),
    }
}

/// Receives (key path, message, hint) for each problem found.
type ReportProblem<'a> = dyn FnMut(&[String], String, Option<String>) + 'a;

/// Every string (value or map key) under `value` that holds a control
/// character, by key path, with what it holds. With `keys_only`, values
/// are not checked.
fn find_control_characters(
    path: &mut Vec<String>,
    value: &Value,
    keys_only: bool,
    allows_lines: &dyn Fn(&[String]) -> bool,
    found: &mut Vec<(Vec<String>, &'static str)>,
) {
    let what = |text: &str| {
        text.chars()
            .find(|c| c.is_control() || invisible(*c).is_some())
            .map(|c| match c {
                '\n' | '\r' => "a line break",
                '\0' => "a NUL character",
                '\t' => "a tab",
                _ => invisible(c).unwrap_or("a control character"),
            })
    };
    match value {
        Value::String(text) => {
            if let Some(what) = what(text).filter(|_| !keys_only) {
                found.push((path.clone(), what));
            }
        }
        Value::Sequence(items) => {
            // An item's path is its list's, indexed: `oidc_providers[0]`.
            for (index, item) in items.iter().enumerate() {
                let mut item_path = path.clone();
                if let Some(last) = item_path.last_mut() {
                    *last = format!("{last}[{index}]");
                }
                find_control_characters(&mut item_path, item, keys_only, allows_lines, found);
            }
        }
        Value::Mapping(map) => {
            for (key, inner) in map {
                let key = match key {
                    Value::String(key) => key.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                if let Some(what) = what(&key) {
                    let mut key_path = path.clone();
                    key_path.push(key.escape_debug().to_string());
                    found.push((key_path, what));
                    continue;
                }
                path.push(key);
                let multiline = keys_only || allows_lines(path);
                find_control_characters(path, inner, multiline, allows_lines, found);
                path.pop();
            }
        }
        Value::Tagged(tagged) => {
            find_control_characters(path, &tagged.value, keys_only, allows_lines, found)
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Characters that change how text reads without showing themselves: the
/// bidirectional controls (a name that reads `example.com` and is not)
/// and zero-width spaces. The joiners (U+200C, U+200D) stay allowed:
/// Persian text and emoji need them.
fn invisible(c: char) -> Option<&'static str> {
    match c {
        '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{061C}' => Some("a bidirectional control character"),
        '\u{200B}' | '\u{2060}' | '\u{FEFF}' => Some("a zero-width character"),
        _ => None,
    }
}

/// An untyped role var (in `defaults`, not `options`) must have its
/// default's type; inside a non-empty default map only the default's keys
/// are known (an empty map `{}` is free-form).
fn check_like_default(
    path: &[String],
    value: &Value,
    default: &Value,
    role: &crate::roles::Role,
    report: &mut ReportProblem,
) {
    let kind = |value: &Value| match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    };
    match (default, value) {
        (Value::Null, _) => {}
        (Value::Number(d), Value::Number(v)) if d.is_f64() || !v.is_f64() => {}
        (Value::Mapping(default_map), Value::Mapping(value_map)) => {
            if default_map.is_empty() {
                return;
            }
            for (key, inner) in value_map {
                let Some(key) = key.as_str() else { continue };
                let mut inner_path = path.to_vec();
                inner_path.push(key.to_string());
                match default_map.get(key) {
                    Some(inner_default) => {
                        check_like_default(&inner_path, inner, inner_default, role, report)
                    }
                    None => {
                        let known = default_map.keys().filter_map(Value::as_str);
                        report(
                            &inner_path,
                            format!("unknown key `{key}`"),
                            did_you_mean(key, known),
                        );
                    }
                }
            }
        }
        (default, value) if std::mem::discriminant(default) == std::mem::discriminant(value) => {}
        (default, value) => report(
            path,
            format!(
                "expected {} (like the default in role `{}`), found {}",
                kind(default),
                role.name,
                kind(value)
            ),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_targets_parse() {
        let target = SshTarget::parse("admin@matrix.example.com:2222").unwrap();
        assert_eq!(
            (target.user.as_str(), target.host.as_str(), target.port),
            ("admin", "matrix.example.com", Port(2222))
        );
        let target = SshTarget::parse("example.com").unwrap();
        assert_eq!((target.user.as_str(), target.port), ("root", Port(22)));
        let target = SshTarget::parse("root@[::1]:22").unwrap();
        assert_eq!(target.host, "::1");
        for bad in ["a@b:0", "a@b:x", "-oProxyCommand=x", "a b@c", "@host"] {
            assert!(SshTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
