//! What a host has now: the state of every path matrixctl wants to manage or
//! managed before, and its record, read in one run of the host program.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use base64::Engine;

use crate::fields::{fields, kind_and_rest};
use crate::hash::sha256_hex;
use crate::record::Record;
use crate::render::DesiredState;
use crate::transport::Transport;
use crate::transport::functions::HostFn;
use crate::transport::program::{DONE_MARKER, Program};

/// One path on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathState {
    Absent,
    File(FileState),
    /// Something that is not a regular file (a directory, a symlink).
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileState {
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub content: Vec<u8>,
}

/// The observed state of one host.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    pub paths: BTreeMap<String, PathState>,
    pub record: Record,
    /// Staged files left behind by an interrupted apply.
    pub leftovers: Vec<String>,
    /// Checks and handlers an interrupted apply did not get to run.
    pub journal: Option<Journal>,
    /// How many files the backup of an interrupted apply holds, if any.
    pub interrupted_backup: Option<usize>,
    /// The paths that backup's manifest names.
    pub backup_paths: Vec<String>,
    /// What the host tells of itself (its release, the versions of the
    /// packages templates asked about); nothing for a host that is a
    /// directory.
    pub facts: crate::facts::HostFacts,
    /// An apply holds the host's lock right now: who, as its lock says.
    pub busy: Option<String>,
    /// Paths on the way to managed files (or the state directory) that
    /// someone other than root could have redirected.
    pub unsafe_paths: Vec<String>,
    /// Earlier applies whose end matrixctl did not see, as sentences.
    pub earlier_runs: Vec<String>,
    /// Each system item's state (`installed 4.6.1-1`, `present`, ...), by key.
    pub system: crate::system::ObservedSystem,
    /// What the roles' looks at the host's health found, in their order.
    pub health: Vec<crate::health::HealthSeen>,
}

/// What an apply still owes a host, written before any live file changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Journal {
    pub validators: Vec<String>,
    pub handlers: Vec<crate::render::Handler>,
}

/// Reads the paths of `desired` and the record (and the paths it lists) in
/// one program run. A file that already has its desired content comes
/// back as a hash match, not as its content.
pub(crate) async fn observe(
    transport: &Transport,
    root: &str,
    state_dir: &str,
    desired: &DesiredState,
    system: &[crate::system::Wanted],
    asked_packages: &BTreeSet<String>,
    health: &[crate::health::HealthProbe],
) -> Result<Observed> {
    let paths: Vec<&str> = desired.keys().map(String::as_str).collect();
    let mut program = Program::new(root, state_dir);
    program.set_list("MC_OBSERVED", &paths);
    let expected: Vec<String> = desired
        .values()
        .map(|file| format!("{} {root}{}", sha256_hex(&file.content), file.path))
        .collect();
    program.set_list(
        "MC_EXPECTED",
        &expected.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    program.set_path_prefixes(root, state_dir, &paths);
    // One stat serves both: the wanted paths and the directories above them.
    program.call(HostFn::ObservePaths, &paths);
    program.call(HostFn::UnsafePaths, &[]);
    let directories: BTreeSet<&str> = paths
        .iter()
        .map(|path| path.rsplit_once('/').map_or("", |(dir, _)| dir))
        .collect();
    program.call(
        HostFn::ObserveLeftovers,
        &directories.into_iter().collect::<Vec<_>>(),
    );
    // The accounts the files name, asked with the roles' accounts. A host
    // that is a directory has no accounts of its own to ask.
    let file_accounts = |of: fn(&crate::render::DesiredFile) -> Option<&String>| -> Vec<&str> {
        if !root.is_empty() {
            return Vec::new();
        }
        desired
            .values()
            .filter_map(of)
            .map(String::as_str)
            .filter(|name| *name != "root")
            .collect()
    };
    crate::system::observe(
        &mut program,
        system,
        &file_accounts(|file| file.group.as_ref()),
        &file_accounts(|file| file.owner.as_ref()),
    );
    // The host's facts: its release, for what roles leave to it (a
    // repository's suite), what must match it (a package pinned to a
    // release's build) and templates; the versions templates asked about.
    // A host that is a directory has no release of its own.
    if root.is_empty() {
        program.call(HostFn::ObserveOs, &[]);
        if !asked_packages.is_empty() {
            let names: Vec<&str> = asked_packages.iter().map(String::as_str).collect();
            program.call(HostFn::ObserveVersions, &names);
        }
        for probe in health {
            program.call(HostFn::ObserveHealth, &[&probe.name, &probe.script]);
        }
    }
    program.call(HostFn::ObserveRecord, &[]);
    program.call(HostFn::ObserveTransaction, &[]);
    let output = transport.run(program.finish()).await?;
    if !output.success {
        bail!("reading the host's files failed: {}", output.stderr.trim());
    }
    parse(&output.stdout, root, desired)
}

/// `CODE ID BASE64-STDERR` of a run nobody read, as a sentence.
fn unseen_run(rest: &str, decode: &dyn Fn(&str) -> Result<Vec<u8>>) -> String {
    let mut fields = rest.splitn(3, ' ');
    let code = fields.next().unwrap_or_default();
    let _run_id = fields.next();
    let errors = decode(fields.next().unwrap_or_default()).unwrap_or_default();
    let errors = String::from_utf8_lossy(&errors);
    let last = errors
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .map(|line| line.trim_start_matches("matrixctl: ").to_string());
    match (code, last) {
        ("0", _) => {
            "an earlier apply finished on the host after matrixctl stopped waiting: it was applied"
                .to_string()
        }
        (_, Some(last)) => {
            format!("an earlier apply ended on the host after matrixctl stopped waiting: {last}")
        }
        (_, None) => {
            "an earlier apply failed on the host after matrixctl stopped waiting".to_string()
        }
    }
}

/// `NAME-BASE64 EXIT-CODE OUTPUT-BASE64` of a health look, as its verdict.
pub(crate) fn health_line(
    rest: &str,
    decode: &dyn Fn(&str) -> Result<Vec<u8>>,
) -> Result<crate::health::HealthSeen> {
    let Some([name, code, output]) = fields(rest) else {
        bail!("unexpected answer from the host: health {rest:.80}");
    };
    let name = String::from_utf8_lossy(&decode(name)?).into_owned();
    let output = String::from_utf8_lossy(&decode(output)?).into_owned();
    Ok(crate::health::HealthSeen::from_output(&name, code, &output))
}

/// What `mc_observe_paths` said about one path (with ROOT).
#[derive(Default)]
struct Seen<'a> {
    /// From stat: the path's type, and its mode, owner and group.
    stat: Option<(&'a str, [&'a str; 3])>,
    same: bool,
    content: Option<Vec<u8>>,
}

fn parse(stdout: &[u8], root: &str, desired: &DesiredState) -> Result<Observed> {
    let text = std::str::from_utf8(stdout).context("the host's answer is not text")?;
    let mut observed = Observed::default();
    let mut done = false;
    let mut seen: BTreeMap<&str, Seen> = BTreeMap::new();
    let mut record: Option<String> = None;
    let decode = |data: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .context("the host sent bad base64")
    };
    for line in text.lines() {
        let (kind, rest) = kind_and_rest(line);
        match kind {
            "absent" => {
                observed.paths.insert(rest.to_string(), PathState::Absent);
            }
            // `sys KIND NAME STATE...`: the key is KIND NAME.
            "sys" => {
                let mut words = rest.splitn(3, ' ');
                let (kind, name) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                let mut state = words.next().unwrap_or("").to_string();
                // A certificate comes as its file, read here; so do a
                // venv's recorded requirements.
                if kind == "certificate"
                    && let Some(pem) = state.strip_prefix("pem ")
                {
                    state = crate::system::certificates::state(
                        &decode(pem)?,
                        std::time::SystemTime::now(),
                    );
                } else if kind == "venv"
                    && let Some(data) = state.strip_prefix("present base64 ")
                {
                    state = crate::system::venvs::state(&decode(data)?);
                }
                observed.system.insert(format!("{kind} {name}"), state);
            }
            "file" => {
                let Some([mode, owner, group, data, path]) = fields(rest) else {
                    bail!("unreadable answer from the host: {line:.80}");
                };
                let mode = u32::from_str_radix(mode, 8).context("bad mode from the host")?;
                let state = FileState {
                    mode,
                    owner: owner.to_string(),
                    group: group.to_string(),
                    content: decode(data)?,
                };
                observed
                    .paths
                    .insert(path.to_string(), PathState::File(state));
            }
            "other" => {
                let (what, path) = rest.split_once(' ').unwrap_or((rest, ""));
                observed
                    .paths
                    .insert(path.to_string(), PathState::Other(what.replace('-', " ")));
            }
            // `stat UID:MODE:TYPE:OWNER:GROUP:PATH`, for the wanted paths,
            // the directories above them and their staging directories.
            "stat" => {
                let fields: Vec<&str> = rest.splitn(6, ':').collect();
                let [_uid, mode, kind, owner, group, path] = fields[..] else {
                    bail!("unreadable answer from the host: {line:.80}");
                };
                seen.entry(path).or_default().stat = Some((kind, [mode, owner, group]));
            }
            "same" => seen.entry(rest).or_default().same = true,
            "content" => {
                let (data, path) = rest.split_once(' ').unwrap_or((rest, ""));
                seen.entry(path).or_default().content = Some(decode(data)?);
            }
            "leftover" => observed.leftovers.push(rest.to_string()),
            // `record`, then the record's lines as `record-line LINE`.
            "record" => record = Some(String::new()),
            "record-line" => match &mut record {
                Some(text) => {
                    text.push_str(rest);
                    text.push('\n');
                }
                None => bail!("unexpected answer from the host: {line:.80}"),
            },
            "record-absent" => {}
            "journal" => {
                let bytes = decode(rest)?;
                observed.journal = Some(
                    serde_json::from_slice(&bytes)
                        .context("the host's journal of pending handlers is damaged")?,
                );
            }
            "busy" => observed.busy = Some(rest.to_string()),
            // `os KEY VALUE`, from /etc/os-release.
            "os" => {
                let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
                let value = Some(value.trim().to_string()).filter(|value| !value.is_empty());
                match key {
                    "id" => observed.facts.os = value,
                    "codename" => observed.facts.release = value,
                    "version" => observed.facts.release_version = value,
                    _ => bail!("unexpected answer from the host: {line:.80}"),
                }
            }
            // `version PACKAGE VERSION`: installed, or apt's candidate.
            "version" => {
                if let Some((name, version)) = rest.split_once(' ') {
                    observed
                        .facts
                        .packages
                        .insert(name.to_string(), version.trim().to_string());
                }
            }
            "unsafe" => observed.unsafe_paths.push(rest.to_string()),
            "run-unseen" => observed.earlier_runs.push(unseen_run(rest, &decode)),
            "run-killed" => observed
                .earlier_runs
                .push("an earlier apply was killed on the host before it finished".to_string()),
            "backup-present" => {
                observed.interrupted_backup = Some(rest.trim().parse().unwrap_or(0))
            }
            "backup-path" => observed.backup_paths.push(rest.to_string()),
            "health" => observed.health.push(health_line(rest, &decode)?),
            _ if line == DONE_MARKER => done = true,
            _ => bail!("unexpected answer from the host: {line:.80}"),
        }
    }
    if !done {
        bail!("the host's answer ended early");
    }
    if let Some(text) = record {
        observed.record = Record::parse(&text)
            .map_err(|reason| anyhow::anyhow!("the host's record is damaged ({reason})"))?;
    }
    for file in desired.values() {
        let full = format!("{root}{}", file.path);
        let state = match seen.remove(full.as_str()) {
            None | Some(Seen { stat: None, .. }) => PathState::Absent,
            Some(Seen {
                stat: Some(("symbolic link", _)),
                ..
            }) => PathState::Other("symlink".into()),
            Some(Seen {
                stat: Some(("regular file" | "regular empty file", [mode, owner, group])),
                same,
                content,
            }) => {
                let content = match (same, content) {
                    (true, _) => file.content.clone(),
                    (false, Some(content)) => content,
                    (false, None) => bail!("the host did not send {}", file.path),
                };
                PathState::File(FileState {
                    mode: u32::from_str_radix(mode, 8).context("bad mode from the host")?,
                    owner: owner.to_string(),
                    group: group.to_string(),
                    content,
                })
            }
            Some(Seen {
                stat: Some((kind, _)),
                ..
            }) => PathState::Other(kind.to_string()),
        };
        observed.paths.insert(file.path.clone(), state);
    }
    observed.leftovers.sort();
    observed.leftovers.dedup();
    Ok(observed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_s_facts_come_from_its_os_and_version_lines() {
        let answer = format!(
            "os id debian\nos codename trixie\nos version 13\nversion hello 2.10-5\nversion python3 3.13.5-1\n{DONE_MARKER}\n"
        );
        let observed = parse(answer.as_bytes(), "", &DesiredState::new()).unwrap();
        let facts = &observed.facts;
        assert_eq!(facts.os.as_deref(), Some("debian"));
        assert_eq!(facts.release.as_deref(), Some("trixie"));
        assert_eq!(facts.release_version.as_deref(), Some("13"));
        assert_eq!(
            facts.packages.get("hello").map(String::as_str),
            Some("2.10-5")
        );
        assert_eq!(facts.packages.len(), 2);
        let odd = format!("os kernel linux\n{DONE_MARKER}\n");
        assert!(parse(odd.as_bytes(), "", &DesiredState::new()).is_err());
    }
}
