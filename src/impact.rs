//! What a plan does to people, read first in a long plan: which services
//! restart, which firewall ports open or close, whether registration opens
//! up, whether federation is turned off or limited.
//!
//! Services come from the roles' handlers, with what each does to people
//! as its role declares it (`impact:`). The rest comes from the roles'
//! `impacts:` lines, templates comparing the role's facts at the last apply
//! (kept in the host's record) with its facts now. The core knows no
//! setting by name: a role says what its change means.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::value::Serde;

use crate::fleet::PlannedHost;
use crate::plan::HostPlan;
use crate::render::{Facts, RoleActions};

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

/// What a changing role's `impacts:` lines say, given its facts at the
/// last apply (`before`, none on a host never applied with them) and now,
/// and whether this apply takes over files matrixctl did not write
/// (`adopting`: a server set up by hand). A line that cannot be evaluated
/// says so rather than vanishing.
pub fn role_effects(
    role: &str,
    actions: &RoleActions,
    before: Option<&Facts>,
    adopting: bool,
) -> Vec<String> {
    evaluate(role, "impacts", &actions.impacts, actions, before, adopting)
}

/// What a changing role's `refusals:` say (those the operator has not
/// waived), in the same context as its impacts: each line stops the host.
pub fn role_refusals(
    role: &str,
    actions: &RoleActions,
    before: Option<&Facts>,
    adopting: bool,
) -> Vec<String> {
    evaluate(
        role,
        "refusals",
        &actions.refusals,
        actions,
        before,
        adopting,
    )
}

fn evaluate(
    role: &str,
    what: &str,
    templates: &[String],
    actions: &RoleActions,
    before: Option<&Facts>,
    adopting: bool,
) -> Vec<String> {
    if templates.is_empty() {
        return Vec::new();
    }
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    // `before` stays undefined on a host without recorded facts, so a line
    // can test `before.NAME is defined`.
    let mut context = BTreeMap::new();
    context.insert("after", minijinja::Value::from(Serde(&actions.facts)));
    context.insert("adopting", minijinja::Value::from(adopting));
    if let Some(before) = before {
        context.insert("before", minijinja::Value::from(Serde(before)));
    }
    let mut effects = Vec::new();
    for (index, template) in templates.iter().enumerate() {
        match env.render_str(template, &context) {
            Ok(text) => effects.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .map(str::to_string),
            ),
            Err(error) => effects.push(format!(
                "(role `{role}`: {what}[{index}] could not be evaluated: {error})"
            )),
        }
    }
    effects
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
