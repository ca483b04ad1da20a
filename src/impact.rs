//! What a plan does to people, read first in a long plan: which services
//! restart, which firewall ports open or close, whether registration opens
//! up, whether federation is turned off or limited.
//!
//! Services come from the roles' handlers, with what each does to people
//! as its role declares it (`impact:`). The rest is read from the
//! rendered files of the built-in roles (the nftables ruleset, Synapse's
//! registration.yaml and server.yaml), before and after: the one place the
//! Rust code reads what templates wrote, so the summary says what the files
//! will really do rather than what the vars meant to.

use std::collections::{BTreeMap, BTreeSet};

use crate::fleet::PlannedHost;
use crate::plan::{Change, HostPlan};

/// One effect, and the hosts it happens on.
pub type Impacts = BTreeMap<String, Vec<String>>;

/// Every effect of the fleet's plans, by effect.
pub fn impacts(planned: &[PlannedHost]) -> Impacts {
    let mut impacts: Impacts = BTreeMap::new();
    for host in planned {
        let Ok(plan) = &host.plan else { continue };
        for effect in host_effects(plan) {
            impacts.entry(effect).or_default().push(host.name.clone());
        }
    }
    impacts
}

fn host_effects(plan: &HostPlan) -> BTreeSet<String> {
    let mut effects = BTreeSet::new();
    for handler in &plan.handlers {
        let impact = handler
            .impact
            .as_ref()
            .map(|impact| format!(" ({impact})"))
            .unwrap_or_default();
        effects.insert(format!("{}{impact}", handler.name));
    }
    for change in &plan.changes {
        let (before, after) = contents(change);
        if change.role.as_deref() == Some("firewall") {
            let (old, new) = (ports(&before), ports(&after));
            // One line per direction, so hosts opening the same ports group.
            let opened = port_list(new.difference(&old));
            if !opened.is_empty() {
                effects.insert(format!("opens {opened} in the firewall"));
            }
            let closed = port_list(old.difference(&new));
            if !closed.is_empty() {
                effects.insert(format!("closes {closed} in the firewall"));
            }
        }
        if change.path.ends_with("/conf.d/registration.yaml") && change.before.is_some() {
            let (old, new) = (registration(&before), registration(&after));
            if new.0 > old.0 {
                effects.insert(format!("registration opens up ({} -> {})", old.1, new.1));
            }
        }
        if change.path.ends_with("/conf.d/server.yaml") {
            let (old, new) = (federation(&before), federation(&after));
            if new != old {
                match new {
                    Some(0) => effects.insert("federation is turned off".to_string()),
                    Some(servers) => {
                        effects.insert(format!("federation is limited to {servers} servers"))
                    }
                    None => effects.insert("federation opens to every server".to_string()),
                };
            }
        }
    }
    effects
}

fn contents(change: &Change) -> (String, String) {
    let before = change
        .before
        .as_ref()
        .map(|file| String::from_utf8_lossy(&file.content).into_owned());
    let after = change
        .after
        .as_ref()
        .map(|file| String::from_utf8_lossy(&file.content).into_owned());
    (before.unwrap_or_default(), after.unwrap_or_default())
}

/// `443/tcp` for each `tcp dport 443 accept` rule of a ruleset.
fn ports(ruleset: &str) -> BTreeSet<String> {
    ruleset
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [proto @ ("tcp" | "udp"), "dport", port, "accept", ..] => {
                    Some(format!("{port}/{proto}"))
                }
                _ => None,
            }
        })
        .collect()
}

/// Ports in numeric order (`22/tcp, 443/tcp, 49152-49573/udp`).
fn port_list<'a>(ports: impl Iterator<Item = &'a String>) -> String {
    let mut ports: Vec<&String> = ports.collect();
    ports.sort_by_key(|port| {
        let start: u32 = port
            .split(['-', '/'])
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        (start, (*port).clone())
    });
    ports
        .iter()
        .map(|port| port.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How open registration is (higher is more open), and its name.
fn registration(file: &str) -> (u8, &'static str) {
    let yaml: serde_yaml::Value = serde_yaml::from_str(file).unwrap_or_default();
    let flag = |key: &str| {
        yaml.get(key)
            .and_then(serde_yaml::Value::as_bool)
            .unwrap_or(false)
    };
    if !flag("enable_registration") {
        (0, "closed")
    } else if flag("registration_requires_token") {
        (1, "invite token")
    } else if yaml.get("registrations_require_3pid").is_some() {
        (2, "open with email verification")
    } else {
        (3, "open")
    }
}

/// How many servers federation is limited to (0: off); None when open.
fn federation(file: &str) -> Option<usize> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(file).unwrap_or_default();
    yaml.get("federation_domain_whitelist")
        .and_then(serde_yaml::Value::as_sequence)
        .map(Vec::len)
}

/// The impact block printed above a plan's diffs: each effect, its hosts,
/// and how many of the fleet's `total` hosts that is.
pub fn impact_text(impacts: &Impacts, total: usize) -> String {
    if impacts.is_empty() {
        return String::new();
    }
    let mut out = String::from("Impact:\n");
    for (effect, hosts) in impacts {
        let list = if hosts.len() <= 5 {
            hosts.join(", ")
        } else {
            format!("{} hosts: {}", hosts.len(), hosts.join(","))
        };
        out.push_str(&format!(
            "  {effect}: {list} ({} of {total})\n",
            hosts.len()
        ));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ports_registration_and_federation() {
        assert_eq!(
            ports("  tcp dport 22 accept comment \"x\"\n udp dport 49152-49573 accept\n"),
            ["22/tcp", "49152-49573/udp"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        assert_eq!(registration("enable_registration: false\n").0, 0);
        assert_eq!(
            registration("enable_registration: true\nregistration_requires_token: true\n").0,
            1
        );
        assert_eq!(
            registration(
                "enable_registration: true\nenable_registration_without_verification: true\n"
            )
            .0,
            3
        );
        assert_eq!(federation("federation_domain_whitelist: []\n"), Some(0));
        assert_eq!(federation("presence: {enabled: true}\n"), None);
    }
}
