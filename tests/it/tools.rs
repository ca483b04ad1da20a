//! The repository's own files checked by the programs they are written
//! for: the installed Synapse's list of configuration keys, shellcheck on
//! the host program.

use std::path::Path;
use std::process::Command;

use crate::support::repo;

#[test]
fn the_list_of_synapse_keys_matches_the_installed_synapse() {
    let python = std::env::var("MATRIXCTL_SYNAPSE_PYTHON")
        .unwrap_or_else(|_| "/var/cache/matrixctl/synapse-venv/bin/python".to_string());
    let venv = Path::new(&python).parent().and_then(Path::parent).unwrap();
    assert!(
        venv.exists(),
        "needs the Synapse venv ({}): run scripts/test",
        venv.display()
    );
    let output = Command::new(repo().join("scripts/synapse-known-keys"))
        .arg(venv)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let committed = std::fs::read_to_string(repo().join("roles/synapse.known-keys.txt")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        committed,
        "roles/synapse.known-keys.txt is stale: regenerate it with scripts/synapse-known-keys"
    );
}

/// The host program's parts, in the order src/transport/program.rs joins
/// them (`include_str!("remote/NAME.sh")`), as the hosts receive them.
fn host_program() -> String {
    let program = std::fs::read_to_string(repo().join("src/transport/program.rs")).unwrap();
    let parts: Vec<&str> = program
        .split("include_str!(\"")
        .skip(1)
        .filter_map(|rest| rest.split_once("\")").map(|(path, _)| path))
        .collect();
    assert!(parts.len() > 5, "no parts found in program.rs: {parts:?}");
    parts
        .iter()
        .map(|part| std::fs::read_to_string(repo().join("src/transport").join(part)).unwrap())
        .collect()
}

/// The host program (src/transport/remote/*.sh, which every plan and
/// apply runs on the hosts) passes shellcheck as POSIX sh, joined as the
/// hosts receive it: what it finds in a `set -eu` script run as root is
/// worth a look every time. Each disabled check says why where it is
/// disabled.
#[test]
fn the_host_program_passes_shellcheck() {
    let joined = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(joined.path(), host_program()).unwrap();
    let output = std::process::Command::new("shellcheck")
        .args(["--shell=sh", "--format=gcc"])
        .arg(joined.path())
        .output()
        .expect("shellcheck runs (apt-get install shellcheck; scripts/test installs it)");
    assert!(
        output.status.success(),
        "shellcheck (line numbers are of the joined program):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every part of the host program is joined into it, once.
#[test]
fn every_part_of_the_host_program_is_sent() {
    let program = std::fs::read_to_string(repo().join("src/transport/program.rs")).unwrap();
    let mut parts: Vec<String> = std::fs::read_dir(repo().join("src/transport/remote"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    parts.sort();
    for part in parts {
        assert_eq!(
            program
                .matches(&format!("include_str!(\"remote/{part}\")"))
                .count(),
            1,
            "src/transport/remote/{part} must be joined into the host program once (program.rs)"
        );
    }
}
