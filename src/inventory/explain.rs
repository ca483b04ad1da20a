//! `matrixctl vars HOST --explain KEY`: every layer that sets a key, lowest
//! precedence first, with file and line, and the value that wins.

use std::path::PathBuf;

use serde_yaml::{Mapping, Value};

use super::layers::Source;
use super::{Host, Inventory, Layout, VarsFiles, read_vars_dir};
use crate::options::OptionSpec;
use crate::roles::RoleSet;

/// One layer's say on a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// `default (role NAME)`, or the inventory file.
    pub origin: String,
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    /// What the layer sets; `None` for a default that is "unset".
    pub value: Option<Value>,
}

/// The layers that set `key_path` for `host`, lowest precedence first,
/// starting with the role's default when a role declares the key.
pub fn layers(
    inventory: &Inventory,
    roles: &RoleSet,
    host: &Host,
    key_path: &[String],
) -> Vec<Layer> {
    let mut layers = Vec::new();
    if let Some((origin, value)) = role_default(roles, key_path) {
        layers.push(Layer {
            origin,
            file: None,
            line: None,
            value,
        });
    }
    // A customer sharing its machine: the roles' values for it.
    if let Some(placement) = host
        .placement
        .as_ref()
        .filter(|placement| placement.layout == Layout::Shared)
    {
        for role in roles.roles.values() {
            let values = placement.fill_in(&role.manifest.customer_defaults);
            if let Some(value) = lookup(&values, key_path) {
                layers.push(Layer {
                    origin: format!(
                        "per customer (role {}, sharing machine {})",
                        role.name, placement.machine
                    ),
                    file: None,
                    line: None,
                    value: Some(value.clone()),
                });
            }
        }
    }
    // The files are read again: they loaded a moment ago, and a few
    // re-reads are cheaper than every host keeping its layers' texts.
    let mut ignored = Vec::new();
    let group_vars = read_vars_dir(&inventory.dir.join("group_vars"), &mut ignored);
    let machine_vars = read_vars_dir(&inventory.dir.join("machine_vars"), &mut ignored);
    let host_vars = read_vars_dir(&inventory.dir.join("host_vars"), &mut ignored);
    let vars_files = VarsFiles {
        group_vars: &group_vars,
        machine_vars: &machine_vars,
        host_vars: &host_vars,
    };
    let machine = host
        .placement
        .as_ref()
        .map(|placement| placement.machine.as_str());
    for file in vars_files.of(&host.name, &host.groups, machine) {
        if let Some(value) = lookup(&file.vars, key_path) {
            let source = Source::File {
                path: file.path.clone(),
                text: file.text.clone(),
            };
            layers.push(Layer {
                origin: file.path.display().to_string(),
                file: Some(file.path.clone()),
                line: source.line_of(key_path),
                value: Some(value.clone()),
            });
        }
    }
    layers
}

/// The role that declares `key_path` (an option, a field of one, or a
/// `defaults` entry) and its default.
fn role_default(roles: &RoleSet, key_path: &[String]) -> Option<(String, Option<Value>)> {
    for role in roles.roles.values() {
        // Options are declared by top-level key or dotted (`apps.NAME`);
        // the rest of the path walks object fields.
        for (declared, spec) in &role.manifest.options {
            let declared_path: Vec<&str> = declared.split('.').collect();
            if declared_path.len() > key_path.len()
                || declared_path
                    .iter()
                    .zip(key_path)
                    .any(|(declared, asked)| declared != asked)
            {
                continue;
            }
            let Some(spec) = field(spec, &key_path[declared_path.len()..]) else {
                continue;
            };
            let value = spec.default.clone().filter(|value| !value.is_null());
            return Some((format!("default (role {})", role.name), value));
        }
        if let Some(value) = lookup(&role.manifest.defaults, key_path) {
            return Some((format!("default (role {})", role.name), Some(value.clone())));
        }
    }
    None
}

fn field<'a>(spec: &'a OptionSpec, path: &[String]) -> Option<&'a OptionSpec> {
    match path.split_first() {
        None => Some(spec),
        Some((first, rest)) => field(spec.fields.get(first)?, rest),
    }
}

pub fn lookup<'a>(mapping: &'a Mapping, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let value = mapping.get(first.as_str())?;
    if rest.is_empty() {
        Some(value)
    } else {
        lookup(value.as_mapping()?, rest)
    }
}
