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

/// The host program (`src/transport/remote.sh`, which every plan and
/// apply runs on the hosts) passes shellcheck as POSIX sh: what it
/// finds in a `set -eu` script run as root is worth a look every time.
/// Each disabled check says why where it is disabled.
#[test]
fn the_host_program_passes_shellcheck() {
    let output = std::process::Command::new("shellcheck")
        .args(["--shell=sh", "--format=gcc"])
        .arg(repo().join("src/transport/remote.sh"))
        .output()
        .expect("shellcheck runs (apt-get install shellcheck; scripts/test installs it)");
    assert!(
        output.status.success(),
        "shellcheck:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
