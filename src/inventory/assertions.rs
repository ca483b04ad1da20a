//! The roles' rules across vars (`assertions:` in a manifest): an
//! expression that must hold for every host the role applies to, with the
//! message, the hint and the var to blame when it does not.
//!
//! Rules see the host's vars after precedence and typing (defaults filled
//! in), `server_name` and their role's constants; nothing derived from them
//! (secrets, templates' facts). A rule with `each` is checked per item. A
//! rule that cannot be evaluated is the role's mistake and says so.

use minijinja::value::{Serde, ValueKind};
use minijinja::{Environment, UndefinedBehavior, Value as JinjaValue};
use serde_yaml::{Mapping, Value};

use super::schema::{CoreVars, DnsName};
use crate::roles::RoleSet;

/// A rule that does not hold for a host, or cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The var to blame, dotted (`consent.server_notice_content`).
    pub key: String,
    pub message: String,
    pub hint: Option<String>,
    /// Set when the rule itself is broken: the role's manifest.
    pub manifest: Option<std::path::PathBuf>,
    /// The vars the role's `when` reads, sorted: when the operator never
    /// set `key` (its value is the role's default), the one of these they
    /// set is what to point at (`certificates: acme` for a missing
    /// `acme_email`).
    pub turned_on_by: Vec<String>,
}

/// Every rule of every role that applies to this host and does not hold.
pub fn broken(
    roles: &RoleSet,
    core: &CoreVars,
    merged: &Mapping,
    server_name: Option<&DnsName>,
    around: &Mapping,
) -> Vec<Broken> {
    if roles
        .roles
        .values()
        .all(|role| role.manifest.assertions.is_empty())
    {
        return Vec::new();
    }
    let env = environment();
    let base = base_context(core, merged, server_name, around);
    let mut broken = Vec::new();
    for role in roles.roles.values() {
        if role.manifest.assertions.is_empty() {
            continue;
        }
        let context = role_context(&base, role);
        let eval = |expression: &str, context: &JinjaValue| {
            env.compile_expression(expression)
                .and_then(|compiled| compiled.eval(context.clone()))
        };
        // A `when` that cannot be evaluated is reported when rendering.
        match eval(&role.manifest.when, &context) {
            Ok(applies) if applies.is_true() => {}
            _ => continue,
        }
        let mut turned_on_by: Vec<String> = env
            .compile_expression(&role.manifest.when)
            .map(|when| when.undeclared_variables(false).into_iter().collect())
            .unwrap_or_default();
        turned_on_by.sort();
        for (index, rule) in role.manifest.assertions.iter().enumerate() {
            let contexts = match &rule.each {
                None => vec![context.clone()],
                Some(each) => match eval(each, &context).map(|items| per_item(&context, &items)) {
                    Ok(Some(contexts)) => contexts,
                    Ok(None) => {
                        let reason = "its `each` gave neither a list nor a map";
                        broken.push(unusable(role, index, "each", reason));
                        continue;
                    }
                    Err(error) => {
                        broken.push(unusable(role, index, "each", &error.to_string()));
                        continue;
                    }
                },
            };
            for context in &contexts {
                let holds = match eval(&rule.that, context) {
                    Ok(value) if value.kind() == ValueKind::Bool => value.is_true(),
                    Ok(value) => {
                        let reason = format!("it gave {}, not true or false", value.kind());
                        broken.push(unusable(role, index, "that", &reason));
                        break;
                    }
                    Err(error) => {
                        broken.push(unusable(role, index, "that", &error.to_string()));
                        break;
                    }
                };
                if holds {
                    continue;
                }
                let text = |template: &str| {
                    env.render_str(template, context.clone())
                        .unwrap_or_else(|_| template.to_string())
                };
                let hint = rule
                    .hint
                    .as_deref()
                    .map(text)
                    .filter(|hint| !hint.is_empty());
                broken.push(Broken {
                    key: text(&rule.key),
                    message: text(&rule.message),
                    hint,
                    manifest: None,
                    turned_on_by: turned_on_by.clone(),
                });
            }
        }
    }
    broken
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_filter("did_you_mean", did_you_mean);
    env
}

/// The host's vars (the core's typed ones carry their defaults; the raw
/// values do not), its server name and what it sees of the inventory, as
/// one template value.
fn base_context(
    core: &CoreVars,
    merged: &Mapping,
    server_name: Option<&DnsName>,
    around: &Mapping,
) -> JinjaValue {
    let mut base = merged.clone();
    if let Ok(Value::Mapping(core)) = serde_yaml::to_value(core) {
        base.extend(core);
    }
    base.extend(around.clone());
    if let Some(name) = server_name {
        base.insert("server_name".into(), name.as_str().into());
    }
    JinjaValue::from(Serde(base))
}

/// The host's vars with a role's constants laid over them without copying
/// (the later map wins), as cloning and converting every var for every
/// role cost more than the rules.
fn role_context(base: &JinjaValue, role: &crate::roles::Role) -> JinjaValue {
    if role.constants.is_empty() {
        base.clone()
    } else {
        minijinja::value::merge_maps([base.clone(), JinjaValue::from(Serde(&role.constants))])
    }
}

/// Where a role that applies to the host places parts of it: each
/// `places:` entry with the machine names its expression gives (the
/// host's own machine left out, no name twice), or the role's mistake.
pub fn places(
    roles: &RoleSet,
    core: &CoreVars,
    merged: &Mapping,
    server_name: &DnsName,
    around: &Mapping,
) -> Result<Vec<(crate::roles::PlaceSpec, Vec<String>)>, Broken> {
    let env = environment();
    let base = base_context(core, merged, Some(server_name), around);
    let own = around.get("machine_name").and_then(Value::as_str);
    let mut placed = Vec::new();
    for role in roles.roles.values() {
        if role.manifest.places.is_empty() {
            continue;
        }
        let context = role_context(&base, role);
        let eval = |expression: &str| {
            env.compile_expression(expression)
                .and_then(|compiled| compiled.eval(context.clone()))
        };
        match eval(&role.manifest.when) {
            Ok(applies) if applies.is_true() => {}
            _ => continue,
        }
        for (index, place) in role.manifest.places.iter().enumerate() {
            let unusable = |reason: String| Broken {
                key: format!("places[{index}].machines"),
                message: format!("role `{}`: cannot evaluate a place: {reason}", role.name),
                hint: Some(
                    "a place's `machines` is an expression giving a list of machine names".into(),
                ),
                manifest: Some(role.path.clone()),
                turned_on_by: Vec::new(),
            };
            let value = eval(&place.machines).map_err(|error| unusable(error.to_string()))?;
            let names = value
                .try_iter()
                .map_err(|_| unusable(format!("it gave {}, not a list", value.kind())))?;
            let mut machines = Vec::new();
            for name in names {
                let Some(name) = name.as_str().map(str::to_string) else {
                    return Err(unusable(format!("it gave {name}, not a machine's name")));
                };
                if Some(name.as_str()) != own && !machines.contains(&name) {
                    machines.push(name);
                }
            }
            if !machines.is_empty() {
                placed.push((place.clone(), machines));
            }
        }
    }
    Ok(placed)
}

/// One context per item of `items` (a list, or a map's keys), each the
/// host's context plus `item`, `index` and, for a map, `value`; `None`
/// when `items` is neither.
fn per_item(context: &JinjaValue, items: &JinjaValue) -> Option<Vec<JinjaValue>> {
    let is_map = match items.kind() {
        ValueKind::Seq => false,
        ValueKind::Map => true,
        ValueKind::None | ValueKind::Undefined => return Some(Vec::new()),
        _ => return None,
    };
    let contexts = items
        .try_iter()
        .ok()?
        .enumerate()
        .map(|(index, item)| {
            let value = if is_map {
                items.get_item(&item).unwrap_or_default()
            } else {
                JinjaValue::UNDEFINED
            };
            minijinja::context! { item, index, value, ..context.clone() }
        })
        .collect();
    Some(contexts)
}

/// `{{ name | did_you_mean(candidates) }}`: "did you mean `x`?" when one
/// candidate is close, else nothing.
fn did_you_mean(name: &str, candidates: Vec<String>) -> String {
    crate::problem::did_you_mean(name, candidates.iter().map(String::as_str)).unwrap_or_default()
}

fn unusable(role: &crate::roles::Role, index: usize, field: &str, reason: &str) -> Broken {
    Broken {
        key: format!("assertions[{index}].{field}"),
        message: format!(
            "role `{}`: cannot evaluate an assertion: {reason}",
            role.name
        ),
        hint: Some(
            "an assertion's `that` is an expression over the host's vars that is true or false, and its `each` gives a list or a map"
                .into(),
        ),
        manifest: Some(role.path.clone()),
        turned_on_by: Vec::new(),
    }
}
