//! Layered host vars: merge role defaults, group vars and host vars in
//! precedence order, remembering which layer set every key (provenance).
//!
//! Maps merge deeply; lists and scalars replace. Nothing here knows what the
//! keys mean: that is `schema`'s job.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_yaml::{Mapping, Value};

/// Where a layer of vars came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An inventory file; `text` is kept so errors can find the line of a key.
    File { path: PathBuf, text: String },
    /// The `defaults` of a role manifest.
    RoleDefaults { role: String, path: PathBuf },
    /// A role's `per_customer` values, for a homeserver sharing its machine.
    CustomerDefaults { role: String, path: PathBuf },
}

impl Source {
    pub fn path(&self) -> &PathBuf {
        match self {
            Source::File { path, .. }
            | Source::RoleDefaults { path, .. }
            | Source::CustomerDefaults { path, .. } => path,
        }
    }

    /// The line that sets `key_path` in this source, when it is an inventory
    /// file written in block style (the usual case).
    pub fn line_of(&self, key_path: &[String]) -> Option<usize> {
        match self {
            Source::File { text, .. } => super::locate::line_of_key(text, key_path),
            Source::RoleDefaults { .. } | Source::CustomerDefaults { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    Map {
        entries: BTreeMap<String, Node>,
        source: usize,
    },
    Leaf {
        value: Value,
        source: usize,
    },
}

impl Node {
    fn from_value(value: &Value, source: usize) -> Result<Node, NonStringKey> {
        match value {
            Value::Mapping(mapping) => {
                let mut entries = BTreeMap::new();
                for (key, value) in mapping {
                    let key = key_string(key)?;
                    let node = Node::from_value(value, source).map_err(|e| e.under(&key))?;
                    entries.insert(key, node);
                }
                Ok(Node::Map { entries, source })
            }
            other => Ok(Node::Leaf {
                value: other.clone(),
                source,
            }),
        }
    }

    fn source(&self) -> usize {
        match self {
            Node::Map { source, .. } | Node::Leaf { source, .. } => *source,
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Node::Leaf { value, .. } => value.clone(),
            Node::Map { entries, .. } => Value::Mapping(
                entries
                    .iter()
                    .map(|(key, node)| (Value::String(key.clone()), node.to_value()))
                    .collect(),
            ),
        }
    }
}

/// A mapping key that is not a string (`1: x`, `[a]: b`): vars are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonStringKey {
    pub parent: Vec<String>,
    pub key: String,
}

impl NonStringKey {
    fn under(mut self, parent: &str) -> NonStringKey {
        self.parent.insert(0, parent.to_string());
        self
    }
}

fn key_string(key: &Value) -> Result<String, NonStringKey> {
    match key {
        Value::String(key) => Ok(key.clone()),
        other => Err(NonStringKey {
            parent: Vec::new(),
            key: serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        }),
    }
}

/// One host's vars, merged from all its layers, with provenance.
#[derive(Debug, Clone, Default)]
pub struct Layered {
    entries: BTreeMap<String, Node>,
    sources: Vec<Source>,
}

impl Layered {
    /// Adds a layer on top of the ones before it.
    pub fn push(&mut self, source: Source, vars: &Mapping) -> Result<(), NonStringKey> {
        let id = self.sources.len();
        self.sources.push(source);
        for (key, value) in vars {
            let key = key_string(key)?;
            let node = Node::from_value(value, id).map_err(|e| e.under(&key))?;
            merge_into(&mut self.entries, key, node);
        }
        Ok(())
    }

    /// The merged vars, maps sorted by key.
    pub fn to_mapping(&self) -> Mapping {
        self.entries
            .iter()
            .map(|(key, node)| (Value::String(key.clone()), node.to_value()))
            .collect()
    }

    /// The top-level keys and the layer that last set each.
    pub fn top_level(&self) -> impl Iterator<Item = (&str, &Source)> {
        self.entries
            .iter()
            .map(|(key, node)| (key.as_str(), &self.sources[node.source()]))
    }

    /// The layer that set `key_path`, or, when the path does not exist (a
    /// missing field), the layer that set its deepest existing parent.
    pub fn source_of(&self, key_path: &[String]) -> Option<&Source> {
        let mut entries = &self.entries;
        let mut found = None;
        for key in key_path {
            match entries.get(key) {
                Some(node) => {
                    found = Some(node.source());
                    match node {
                        Node::Map { entries: inner, .. } => entries = inner,
                        Node::Leaf { .. } => break,
                    }
                }
                None => break,
            }
        }
        found.map(|id| &self.sources[id])
    }
}

fn merge_into(entries: &mut BTreeMap<String, Node>, key: String, incoming: Node) {
    match (entries.get_mut(&key), incoming) {
        (
            Some(Node::Map {
                entries: existing,
                source,
            }),
            Node::Map {
                entries: incoming,
                source: incoming_source,
            },
        ) => {
            *source = incoming_source;
            for (key, node) in incoming {
                merge_into(existing, key, node);
            }
        }
        (_, incoming) => {
            entries.insert(key, incoming);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> (Source, Mapping) {
        let source = Source::File {
            path: PathBuf::from(name),
            text: text.to_string(),
        };
        (source, serde_yaml::from_str(text).unwrap())
    }

    fn key(path: &str) -> Vec<String> {
        path.split('.').map(str::to_string).collect()
    }

    #[test]
    fn later_layers_win_and_maps_merge_deeply() {
        let mut layered = Layered::default();
        for (source, vars) in [
            file("all.yaml", "a: 1\nm: {x: 1, y: 1}\nlist: [1, 2]\n"),
            file("group.yaml", "a: 2\nm: {y: 2}\nlist: [3]\n"),
            file("host.yaml", "m: {z: 3}\n"),
        ] {
            layered.push(source, &vars).unwrap();
        }
        let merged: Value = Value::Mapping(layered.to_mapping());
        let expected: Value =
            serde_yaml::from_str("a: 2\nlist: [3]\nm: {x: 1, y: 2, z: 3}\n").unwrap();
        assert_eq!(merged, expected);

        let source = |path: &str| layered.source_of(&key(path)).unwrap().path().clone();
        assert_eq!(source("a"), PathBuf::from("group.yaml"));
        assert_eq!(source("m.x"), PathBuf::from("all.yaml"));
        assert_eq!(source("m.y"), PathBuf::from("group.yaml"));
        assert_eq!(source("m.z"), PathBuf::from("host.yaml"));
        assert_eq!(source("list"), PathBuf::from("group.yaml"));
        // A missing key is attributed to the layer that set its parent.
        assert_eq!(source("m.missing"), PathBuf::from("host.yaml"));
    }

    #[test]
    fn a_scalar_replaces_a_map_and_takes_its_provenance() {
        let mut layered = Layered::default();
        let (s1, v1) = file("all.yaml", "m: {x: 1}\n");
        let (s2, v2) = file("host.yaml", "m: off\n");
        layered.push(s1, &v1).unwrap();
        layered.push(s2, &v2).unwrap();
        assert_eq!(
            layered.source_of(&key("m.x")).unwrap().path(),
            &PathBuf::from("host.yaml")
        );
    }

    #[test]
    fn non_string_keys_are_refused_with_their_path() {
        let mut layered = Layered::default();
        let (source, vars) = file("host.yaml", "m: {1: x}\n");
        let error = layered.push(source, &vars).unwrap_err();
        assert_eq!(error.parent, vec!["m".to_string()]);
        assert_eq!(error.key, "1");
    }
}
