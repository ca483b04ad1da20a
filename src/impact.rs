//! What a plan does to people, read first in a long plan: which services
//! restart, which firewall ports open or close, whether registration opens
//! up, whether federation is turned off or limited.
//!
//! Services come from the roles' handlers, with what each does to people
//! as its role declares it (`impact:`). The rest comes from the roles'
//! `impacts:` lines, which planning evaluates (plan.rs, `role_effects`),
//! comparing the role's facts at the last apply (kept in the host's
//! record) with its facts now. The core knows no setting by name: a role
//! says what its change means.

use std::collections::{BTreeMap, BTreeSet};

use crate::fleet::PlannedHost;
use crate::plan::HostPlan;

/// One effect, and the hosts it happens on.
pub(crate) type Impacts = BTreeMap<String, Vec<String>>;

/// Every effect of the fleet's plans, by effect.
pub(crate) fn impacts(planned: &[PlannedHost]) -> Impacts {
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
    let mut effects = plan.effects.clone();
    let packages: Vec<String> = plan
        .system
        .iter()
        .filter(|change| matches!(change.item, crate::system::Item::Package { .. }))
        .map(|change| {
            change
                .item
                .label()
                .trim_start_matches("package ")
                .to_string()
        })
        .collect();
    if !packages.is_empty() {
        effects.insert(format!(
            "installs {} (a failed apply does not uninstall)",
            packages.join(", ")
        ));
    }
    for change in &plan.system {
        if let crate::system::Item::Database { name, .. } = &change.item {
            effects.insert(format!(
                "creates database {name} (a failed apply does not drop it)"
            ));
        }
    }
    for handler in &plan.handlers {
        let impact = handler
            .impact
            .as_ref()
            .map(|impact| format!(" ({impact})"))
            .unwrap_or_default();
        effects.insert(format!("{}{impact}", handler.name));
    }
    effects
}

/// The impact block printed above a plan's diffs: each effect, its hosts,
/// and how many of the fleet's `total` hosts that is.
pub(crate) fn impact_text(impacts: &Impacts, total: usize) -> String {
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
