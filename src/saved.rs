//! Saved plans: `plan --out FILE` records what each host's plan was
//! computed against, as fingerprints (hashes, never contents); `apply
//! FILE` recomputes the plan and applies it only to hosts whose
//! fingerprints still match. Rendering and planning are deterministic, so
//! equal fingerprints mean an identical plan. The file also keeps the plan's
//! summary (each change's line, text and JSON, no contents), for
//! `matrixctl show FILE`: still nothing a secret could be in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fleet::PlannedHost;
use crate::observe::{Observed, PathState};
use crate::render::DesiredState;

const FORMAT: &str = "matrixctl-saved-plan";
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SavedPlan {
    format: String,
    version: u32,
    /// Absolute, so `apply FILE` works from any directory.
    pub inventory: PathBuf,
    pub roles: Vec<PathBuf>,
    /// The hosts with changes, and what their plans were computed against.
    pub hosts: BTreeMap<String, SavedHost>,
    /// The plan's summary; absent in files of matrixctl before `show`.
    #[serde(default)]
    pub report: Option<SavedReport>,
}

/// A plan's summary as `plan --summary` prints it (without colour), and
/// its JSON report with every `diff` null.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SavedReport {
    pub text: String,
    pub json: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedHost {
    /// sha256 over the observed state of every path, the record and leftovers.
    pub observed: String,
    /// sha256 over the desired files (paths, modes, owners, contents).
    pub desired: String,
}

impl SavedPlan {
    pub(crate) fn new(
        inventory: &Path,
        roles: &[PathBuf],
        planned: &[PlannedHost],
    ) -> Result<SavedPlan> {
        let absolute =
            |path: &Path| std::path::absolute(path).with_context(|| format!("{}", path.display()));
        let mut hosts = BTreeMap::new();
        for host in planned {
            if let (Ok(plan), Some(saved)) = (&host.plan, SavedHost::of(host))
                && !plan.is_empty()
            {
                hosts.insert(host.name.clone(), saved);
            }
        }
        Ok(SavedPlan {
            format: FORMAT.to_string(),
            version: VERSION,
            inventory: absolute(inventory)?,
            roles: roles
                .iter()
                .map(|dir| absolute(dir))
                .collect::<Result<_>>()?,
            hosts,
            report: None,
        })
    }

    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        fs_err::write(path, format!("{text}\n"))?;
        Ok(())
    }

    pub(crate) fn read(path: &Path) -> Result<SavedPlan> {
        let text = fs_err::read_to_string(path)?;
        let saved: SavedPlan = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a saved plan", path.display()))?;
        if saved.format != FORMAT || saved.version != VERSION {
            bail!(
                "{} is a saved plan of another format ({} v{}); make a new one with `matrixctl plan --out`",
                path.display(),
                saved.format,
                saved.version
            );
        }
        Ok(saved)
    }

    /// Whether `path` looks like a saved plan rather than an inventory.
    pub(crate) fn is_saved_plan(path: &Path) -> bool {
        path.is_file()
    }
}

impl SavedHost {
    pub(crate) fn of(host: &PlannedHost) -> Option<SavedHost> {
        Some(SavedHost {
            observed: fingerprint_observed(host.observed.as_ref()?),
            desired: fingerprint_desired(&host.desired),
        })
    }
}

fn hex(digest: impl AsRef<[u8]>) -> String {
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds length-prefixed fields, so no two states hash alike by accident.
fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

fn fingerprint_observed(observed: &Observed) -> String {
    let mut hasher = Sha256::new();
    for (path, state) in &observed.paths {
        field(&mut hasher, path.as_bytes());
        match state {
            PathState::Absent => field(&mut hasher, b"absent"),
            PathState::Other(what) => field(&mut hasher, format!("other {what}").as_bytes()),
            PathState::File(file) => {
                field(
                    &mut hasher,
                    format!("file {:o} {} {}", file.mode, file.owner, file.group).as_bytes(),
                );
                field(&mut hasher, &Sha256::digest(&file.content));
            }
        }
    }
    field(&mut hasher, observed.record.to_text().as_bytes());
    for leftover in &observed.leftovers {
        field(&mut hasher, leftover.as_bytes());
    }
    hex(hasher.finalize())
}

fn fingerprint_desired(desired: &DesiredState) -> String {
    let mut hasher = Sha256::new();
    for (path, file) in desired {
        field(&mut hasher, path.as_bytes());
        let meta = format!(
            "{:o} {} {} {} {}",
            file.mode,
            file.owner.as_deref().unwrap_or("-"),
            file.group.as_deref().unwrap_or("-"),
            file.role,
            file.sensitive
        );
        field(&mut hasher, meta.as_bytes());
        field(&mut hasher, &Sha256::digest(&file.content));
    }
    hex(hasher.finalize())
}
