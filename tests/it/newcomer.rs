//! The README's first command as a newcomer runs it: as an ordinary user,
//! not root, on a fresh copy of the example inventory.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use crate::support::{BIN, copy_dir, repo};

/// `nobody`, whom this test becomes (setpriv, from util-linux).
const NOBODY: u32 = 65534;

/// Runs the binary's copy at `bin` (the checkout may lie where nobody
/// cannot reach, like /root) as nobody, in `dir`.
fn as_nobody(bin: &std::path::Path, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--reset-env",
        ])
        .arg(bin)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("setpriv runs (util-linux)")
}

#[test]
fn the_example_applies_as_an_ordinary_user_and_then_plans_no_changes() {
    let sandbox = tempfile::tempdir().unwrap();
    let dir = sandbox.path().join("matrixctl");
    copy_dir(
        &repo().join("inventory.example"),
        &dir.join("inventory.example"),
    );
    std::fs::remove_dir_all(dir.join("inventory.example/.hosts")).ok();
    let bin = sandbox.path().join("matrixctl-bin");
    std::fs::copy(BIN, &bin).unwrap();
    Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}")])
        .arg(sandbox.path())
        .status()
        .unwrap();
    let plan = as_nobody(&bin, &dir, &["plan", "inventory.example"]);
    let stdout = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    assert!(stdout.contains("to add"), "{stdout}");
    let apply = as_nobody(&bin, &dir, &["apply", "--yes", "inventory.example"]);
    let stderr = String::from_utf8_lossy(&apply.stderr);
    assert!(
        apply.status.success(),
        "{}{stderr}",
        String::from_utf8_lossy(&apply.stdout)
    );
    // The plan's lines name no owner: nothing to warn about on every run.
    assert!(!stderr.contains("warning"), "{stderr}");
    let written = dir.join("inventory.example/.hosts/example.com/etc/matrix-synapse/conf.d");
    let file = std::fs::read_dir(&written)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(file.metadata().unwrap().uid(), NOBODY);
    let again = as_nobody(&bin, &dir, &["plan", "inventory.example"]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(
        stdout.contains("Plan: 0 to add, 0 to change, 0 to remove on 0 of 3 hosts."),
        "{stdout}"
    );
}
