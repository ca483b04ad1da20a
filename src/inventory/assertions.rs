//! The roles' rules across vars (`assertions:` in a manifest): an
//! expression that must hold for every host the role applies to, with the
//! message, the hint and the var to blame when it does not.
//!
//! Rules see the host's vars after precedence and typing (defaults filled
//! in) and `server_name`; nothing derived from them (secrets, templates'
//! facts). A rule that cannot be evaluated is the role's mistake and says so.

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
}

/// Every rule of every role that applies to this host and does not hold.
pub fn broken(
    roles: &RoleSet,
    core: &CoreVars,
    merged: &Mapping,
    server_name: Option<&DnsName>,
) -> Vec<Broken> {
    if roles
        .roles
        .values()
        .all(|role| role.manifest.assertions.is_empty())
    {
        return Vec::new();
    }
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let mut context = merged.clone();
    // The core's typed vars carry their defaults; the raw values do not.
    if let Ok(Value::Mapping(core)) = serde_yaml::to_value(core) {
        context.extend(core);
    }
    if let Some(name) = server_name {
        context.insert("server_name".into(), name.as_str().into());
    }
    let context = JinjaValue::from(minijinja::value::Serde(context));
    let eval = |expression: &str| {
        env.compile_expression(expression)
            .and_then(|compiled| compiled.eval(context.clone()))
    };
    let mut broken = Vec::new();
    for role in roles.roles.values() {
        if role.manifest.assertions.is_empty() {
            continue;
        }
        // A `when` that cannot be evaluated is reported when rendering.
        match eval(&role.manifest.when) {
            Ok(applies) if applies.is_true() => {}
            _ => continue,
        }
        for (index, rule) in role.manifest.assertions.iter().enumerate() {
            let holds = match eval(&rule.that) {
                Ok(value) if value.kind() == minijinja::value::ValueKind::Bool => value.is_true(),
                Ok(value) => {
                    broken.push(unusable(
                        role,
                        index,
                        &format!("it gave {}, not true or false", value.kind()),
                    ));
                    continue;
                }
                Err(error) => {
                    broken.push(unusable(role, index, &error.to_string()));
                    continue;
                }
            };
            if holds {
                continue;
            }
            let text = |template: &str| {
                env.render_str(template, context.clone())
                    .unwrap_or_else(|_| template.to_string())
            };
            broken.push(Broken {
                key: rule.key.clone(),
                message: text(&rule.message),
                hint: rule.hint.as_deref().map(text),
                manifest: None,
            });
        }
    }
    broken
}

fn unusable(role: &crate::roles::Role, index: usize, reason: &str) -> Broken {
    Broken {
        key: format!("assertions[{index}].that"),
        message: format!(
            "role `{}`: cannot evaluate an assertion: {reason}",
            role.name
        ),
        hint: Some(
            "an assertion's `that` is an expression over the host's vars that is true or false"
                .into(),
        ),
        manifest: Some(role.path.clone()),
    }
}
