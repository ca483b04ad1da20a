//! Machines and the homeservers placed on them.
//!
//! hosts.yaml may name machines (`machines:`: how each is reached) and
//! place homeservers on them (`machine: NAME` on a host). A host without a
//! placement is a homeserver on a machine of its own, as it always was.
//! A placed homeserver is a *customer* of its machine: it takes the
//! machine's connection, root and groups, reads `machine_vars/NAME.yaml`
//! under its own host_vars, and gets its own paths and names from the
//! roles' `per_customer` values, filled in with its short name and its
//! loopback address. Both are derived from the server name alone, so
//! adding or removing a customer never renames or renumbers another.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use super::DnsName;
use crate::values::MAX_CUSTOMER_NAME;

/// How one customer's files and names are laid out on its machine.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Its own paths, accounts, units and address (the roles'
    /// `per_customer` values).
    #[default]
    Shared,
    /// The paths and names of a homeserver on its own machine (the roles'
    /// defaults): how a machine that was a single-customer host keeps its
    /// first customer where it is. At most one per machine.
    Single,
}

/// Where a homeserver lives when it shares a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The machine's name in hosts.yaml.
    pub machine: String,
    pub layout: Layout,
    /// A short name for paths, accounts and units: lowercase letters,
    /// digits and `-`, at most 16 characters.
    pub customer: String,
    /// The loopback address its services listen on (127.x.y.z).
    pub address: String,
}

impl Placement {
    pub(crate) fn new(machine: &str, layout: Layout, server_name: &DnsName) -> Placement {
        let (customer, address) = match layout {
            Layout::Shared => (customer_name(server_name), loopback_address(server_name)),
            Layout::Single => (String::new(), "127.0.0.1".to_string()),
        };
        Placement {
            machine: machine.to_string(),
            layout,
            customer,
            address,
        }
    }
}

impl Placement {
    /// `values` (the roles' `per_customer` values) with `{{ customer }}`
    /// and `{{ customer_address }}` in every string filled in.
    pub(crate) fn fill_in(&self, values: &Mapping) -> Mapping {
        fn fill(value: &Value, placement: &Placement) -> Value {
            match value {
                Value::String(text) => Value::String(
                    text.replace("{{ customer_address }}", &placement.address)
                        .replace("{{ customer }}", &placement.customer),
                ),
                Value::Sequence(items) => {
                    Value::Sequence(items.iter().map(|item| fill(item, placement)).collect())
                }
                Value::Mapping(map) => Value::Mapping(
                    map.iter()
                        .map(|(key, value)| (key.clone(), fill(value, placement)))
                        .collect(),
                ),
                other => other.clone(),
            }
        }
        values
            .iter()
            .map(|(key, value)| (key.clone(), fill(value, self)))
            .collect()
    }
}

/// A machine of hosts.yaml's `machines:`, with the homeservers placed on it.
#[derive(Debug, Clone)]
pub struct Machine {
    pub name: DnsName,
    pub groups: Vec<String>,
    /// Its customers, by server name, sorted.
    pub customers: Vec<DnsName>,
    /// The parts of homeservers it carries (server name, part), sorted.
    pub parts: Vec<(DnsName, String)>,
    /// How it is reached, as a customer of it would be.
    pub connection: super::Connection,
    pub root: std::path::PathBuf,
    pub private_address: Option<String>,
}

/// A part of a homeserver on another machine than its own: its workers,
/// its database. The part is rendered from the homeserver's vars (so its
/// secrets, paths and names are the homeserver's) with the roles that
/// have a share in the part (`parts:` in a manifest), and is planned and
/// applied with the machine that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The parts' names (`workers`, `database`), as roles' `places:` say,
    /// sorted: one machine may carry several parts of one homeserver.
    pub names: Vec<String>,
    /// The machine the homeserver itself is on (its own name when it is a
    /// whole host).
    pub home: String,
    /// Applied before or after the homeserver's own machine.
    pub applied: crate::roles::PartOrder,
}

/// The server name with `-` for `.` when that is short enough; otherwise
/// its start and a hash of the whole name, so two long names that begin
/// alike still differ.
fn customer_name(server_name: &DnsName) -> String {
    let dashed = server_name.as_str().replace('.', "-");
    if dashed.len() <= MAX_CUSTOMER_NAME {
        return dashed;
    }
    let hash = crate::hash::sha256_hex(server_name.as_str().as_bytes());
    let start: String = dashed.chars().take(7).collect();
    format!("{}-{}", start.trim_end_matches('-'), &hash[..8])
}

/// 127.x.y.z from a hash of the server name, never in 127.0.0.0/16 (where
/// a machine's own services listen) and never a .0 or .255 host part.
fn loopback_address(server_name: &DnsName) -> String {
    let hash = crate::hash::sha256_hex(server_name.as_str().as_bytes());
    let byte = |index: usize| u8::from_str_radix(&hash[index * 2..index * 2 + 2], 16).unwrap_or(0);
    format!(
        "127.{}.{}.{}",
        1 + byte(0) % 254,
        byte(1),
        1 + byte(2) % 254
    )
}

/// Customers of one machine whose derived names or addresses collide:
/// (what, the two server names). Vanishingly rare, but two customers
/// sharing an account or an address must never happen.
pub(crate) fn collisions<'a>(
    placed: impl IntoIterator<Item = (&'a DnsName, &'a Placement)>,
) -> Vec<(String, String, String)> {
    let mut seen: BTreeMap<(String, String, String), String> = BTreeMap::new();
    let mut found = Vec::new();
    for (name, placement) in placed {
        if placement.layout == Layout::Single {
            continue;
        }
        for (what, value) in [
            ("short name", &placement.customer),
            ("loopback address", &placement.address),
        ] {
            let key = (placement.machine.clone(), what.to_string(), value.clone());
            match seen.get(&key) {
                Some(other) => found.push((
                    format!("the {what} {value}"),
                    other.clone(),
                    name.to_string(),
                )),
                None => {
                    seen.insert(key, name.to_string());
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> DnsName {
        text.parse().unwrap()
    }

    #[test]
    fn a_short_server_name_is_its_own_customer_name() {
        assert_eq!(customer_name(&name("club.example")), "club-example");
    }

    #[test]
    fn a_long_server_name_keeps_its_start_and_a_hash() {
        let long = customer_name(&name("matrix-for-a-very-long-company.example.com"));
        assert!(long.len() <= MAX_CUSTOMER_NAME, "{long}");
        assert!(long.starts_with("matrix-"), "{long}");
        let other = customer_name(&name("matrix-for-another-company.example.com"));
        assert_ne!(long, other);
    }

    #[test]
    fn loopback_addresses_stay_out_of_127_0_and_off_the_ends() {
        for index in 0..2000 {
            let address = loopback_address(&name(&format!("c{index}.example")));
            let parts: Vec<u16> = address.split('.').map(|p| p.parse().unwrap()).collect();
            assert_eq!(parts[0], 127);
            assert!(parts[1] >= 1 && parts[1] <= 254, "{address}");
            assert!(parts[3] >= 1 && parts[3] <= 254, "{address}");
        }
    }
}
