//! What hosts tell each other: the roles' `exports:`, gathered over the
//! whole inventory, which every host's templates read as `fleet.LIST`.
//!
//! A repository machine's authorized_keys lists the public keys of the
//! hosts that back up to it; each host says so in its own vars. The
//! entries are rendered once per inventory, with each exporting host's
//! own vars, and never read `fleet` themselves (no host's exports depend
//! on another's).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use minijinja::Value as JinjaValue;

/// Every export list of the inventory, each in host name order.
#[derive(Debug, Default)]
pub(crate) struct FleetExports {
    lists: BTreeMap<String, Vec<ExportEntry>>,
}

/// One host's entry in one list.
#[derive(Debug)]
pub(crate) struct ExportEntry {
    /// The exporting host's name, as `host` in the entry.
    pub host: String,
    pub fields: BTreeMap<String, String>,
    /// Made from the exporting host's secrets: a file that reads the
    /// list holds secrets.
    pub secret: bool,
}

impl FleetExports {
    /// Adds `entry` to `list`; hosts are added in name order.
    pub(crate) fn push(&mut self, list: &str, entry: ExportEntry) {
        self.lists.entry(list.to_string()).or_default().push(entry);
    }
}

/// `fleet` as one host's templates see it: a list no host exports is
/// empty (a repository machine before its first client). Reading a list
/// with an entry made from secrets counts, for the reading file, as
/// reading `secrets`.
#[derive(Debug)]
pub(crate) struct FleetView {
    pub exports: Arc<FleetExports>,
    /// The reading host's mark of having read a secret (its `secrets`
    /// object's), set when a list made from secrets is read.
    pub read_secret: Arc<AtomicBool>,
}

impl minijinja::value::Object for FleetView {
    fn get_value(self: &Arc<Self>, key: &JinjaValue) -> Option<JinjaValue> {
        let entries = self
            .exports
            .lists
            .get(key.as_str()?)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if entries.iter().any(|entry| entry.secret) {
            self.read_secret.store(true, Ordering::Relaxed);
        }
        let entries: Vec<BTreeMap<&str, &str>> = entries
            .iter()
            .map(|entry| {
                let mut fields: BTreeMap<&str, &str> = entry
                    .fields
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str()))
                    .collect();
                fields.insert("host", entry.host.as_str());
                fields
            })
            .collect();
        Some(JinjaValue::from(minijinja::value::Serde(entries)))
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Values(
            self.exports
                .lists
                .keys()
                .map(|name| JinjaValue::from(name.as_str()))
                .collect(),
        )
    }
}
