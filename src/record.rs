//! The on-host record of the files matrixctl manages: what it wrote (hash,
//! mode, whether the content is secret, which role). It lets plan remove
//! files a role no longer renders and tell hand edits (drift) from changes
//! in the inventory.
//!
//! One line per file, path last, so the host's shell can read it too
//! (plan observes recorded paths in the same round trip):
//! `file SHA256 MODE SENSITIVE ROLE PATH`. Then one line per role fact
//! (what the role's settings meant at that apply, for the next plan's
//! impact summary): `fact ROLE NAME JSON`. A machine's record also keeps
//! what stops each customer's roles should the customer go (`removal ROLE
//! JSON`, the rendered handlers). Version 1 records (before facts) are
//! still read.

use std::collections::BTreeMap;

use crate::fields::fields;

/// A role's facts (its `facts:`, rendered): name to value, as the
/// record keeps them from one apply to the next.
pub(crate) type Facts = std::collections::BTreeMap<String, serde_json::Value>;

const HEADER: &str =
    "# matrixctl: files it manages on this host. Written by matrixctl; do not edit.\nv2\n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordEntry {
    pub sha256: String,
    pub mode: u32,
    pub sensitive: bool,
    pub role: String,
}

/// Managed paths and what matrixctl last wrote there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Record {
    pub files: BTreeMap<String, RecordEntry>,
    /// Each role's facts at the last apply, by role.
    pub facts: BTreeMap<String, Facts>,
    /// What a machine's customer's role runs once its files are removed,
    /// by role (`ROLE@CUSTOMER`): the handlers, as the plan wrote them.
    pub removals: BTreeMap<String, serde_json::Value>,
}

impl Record {
    pub(crate) fn parse(text: &str) -> Result<Record, String> {
        let mut lines = text.lines().filter(|line| !line.starts_with('#'));
        match lines.next() {
            Some("v1" | "v2") => {}
            other => return Err(format!("unknown record version {other:?}")),
        }
        let mut files = BTreeMap::new();
        let mut facts: BTreeMap<String, Facts> = BTreeMap::new();
        let mut removals = BTreeMap::new();
        for line in lines {
            if let Some(removal) = line.strip_prefix("removal ") {
                let Some([role, json]) = fields(removal) else {
                    return Err(format!("unreadable line {line:?}"));
                };
                let value = serde_json::from_str(json)
                    .map_err(|_| format!("unreadable removal in {line:?}"))?;
                removals.insert(role.to_string(), value);
                continue;
            }
            if let Some(fact) = line.strip_prefix("fact ") {
                let Some([role, name, json]) = fields(fact) else {
                    return Err(format!("unreadable line {line:?}"));
                };
                let value = serde_json::from_str(json)
                    .map_err(|_| format!("unreadable fact in {line:?}"))?;
                facts
                    .entry(role.to_string())
                    .or_default()
                    .insert(name.to_string(), value);
                continue;
            }
            let Some(["file", sha256, mode, sensitive, role, path]) = fields(line) else {
                return Err(format!("unreadable line {line:?}"));
            };
            let mode = u32::from_str_radix(mode, 8).map_err(|_| format!("bad mode in {line:?}"))?;
            files.insert(
                path.to_string(),
                RecordEntry {
                    sha256: sha256.to_string(),
                    mode,
                    sensitive: sensitive == "1",
                    role: role.to_string(),
                },
            );
        }
        Ok(Record {
            files,
            facts,
            removals,
        })
    }

    pub(crate) fn to_text(&self) -> String {
        let mut text = HEADER.to_string();
        for (path, entry) in &self.files {
            text.push_str(&format!(
                "file {} {:04o} {} {} {path}\n",
                entry.sha256,
                entry.mode,
                u8::from(entry.sensitive),
                entry.role
            ));
        }
        for (role, facts) in &self.facts {
            for (name, value) in facts {
                // Compact JSON holds no newline: one fact per line.
                text.push_str(&format!("fact {role} {name} {value}\n"));
            }
        }
        for (role, handlers) in &self.removals {
            text.push_str(&format!("removal {role} {handlers}\n"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_paths_with_spaces() {
        let mut record = Record::default();
        record.files.insert(
            "/srv/a b/c".to_string(),
            RecordEntry {
                sha256: crate::hash::sha256_hex(b"x"),
                mode: 0o640,
                sensitive: true,
                role: "web".to_string(),
            },
        );
        record.facts.entry("web".to_string()).or_default().insert(
            "ports".to_string(),
            serde_json::json!(["443/tcp", {"a b": "c\nd"}]),
        );
        assert_eq!(Record::parse(&record.to_text()).unwrap(), record);
        assert!(Record::parse("v9\n").is_err());
        assert!(Record::parse("v1\nfile 00 0644 0 web /a\n").is_ok());
        assert!(Record::parse("v2\nfact web ports [\n").is_err());
    }
}
