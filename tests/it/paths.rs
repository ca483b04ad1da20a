//! No path that someone else could have bent: symlinks planted above a
//! managed file or in the state directory are refused with the path named,
//! and nothing is written outside the managed tree (a sentinel tree next to
//! the host stays byte for byte the same). A root-owned symlink in a
//! root-owned directory still works.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::Sandbox;

const CONF_D: &str = "/etc/matrix-synapse/conf.d";
const STATE: &str = "/var/lib/matrixctl";

/// An applied host a.example and a sentinel tree beside it.
fn applied_host() -> (Sandbox, PathBuf) {
    let sandbox = Sandbox::fleet();
    let first = sandbox.run(&["apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(first.code, 0, "{}", first.transcript());
    let sentinel = sandbox.path().join("sentinel");
    std::fs::create_dir_all(sentinel.join("conf.d")).unwrap();
    std::fs::write(sentinel.join("conf.d/keep.yaml"), "sentinel\n").unwrap();
    std::fs::write(sentinel.join("file"), "sentinel\n").unwrap();
    // The next apply has something to write.
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "registration: closed\n",
    );
    (sandbox, sentinel)
}

/// Every file under `dir` with its content, sorted.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
            }
        }
    }
    files.sort();
    files
}

/// Replaces a directory of the host with a symlink to `target`, owned by
/// `uid` (the link itself).
fn plant_link(sandbox: &Sandbox, host_path: &str, target: &Path, uid: u32) {
    let link = sandbox.host_file("a.example", host_path);
    if link.is_dir() {
        std::fs::remove_dir_all(&link).unwrap();
    } else if link.exists() {
        std::fs::remove_file(&link).unwrap();
    }
    symlink(target, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(uid), Some(uid)).unwrap();
}

fn refused(sandbox: &Sandbox, sentinel: &Path, expected: &str) {
    let before = tree(sentinel);
    let apply = sandbox.run(&["apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    assert!(
        apply.stdout.contains(expected),
        "expected {expected:?} in:\n{}",
        apply.stdout
    );
    assert_eq!(tree(sentinel), before, "something was written outside");
}

#[test]
fn a_parent_directory_replaced_by_a_service_users_symlink_is_refused() {
    let (sandbox, sentinel) = applied_host();
    plant_link(&sandbox, CONF_D, &sentinel.join("conf.d"), 1000);
    refused(
        &sandbox,
        &sentinel,
        &format!("{CONF_D}: a symlink owned by uid 1000, not root"),
    );
    let plan = sandbox.run(&["plan", "inventory", "--limit", "a.example"]);
    assert_eq!(plan.code, 1);
    assert!(
        plan.stdout
            .contains("a path matrixctl would write through could have been bent by someone else"),
        "{}",
        plan.stdout
    );
}

#[test]
fn a_root_symlink_in_a_directory_others_can_write_is_refused() {
    let (sandbox, sentinel) = applied_host();
    plant_link(&sandbox, CONF_D, &sentinel.join("conf.d"), 0);
    let parent = sandbox.host_file("a.example", "/etc/matrix-synapse");
    Command::new("chmod")
        .arg("0777")
        .arg(&parent)
        .status()
        .unwrap();
    refused(
        &sandbox,
        &sentinel,
        &format!("{CONF_D}: a symlink in a directory that others can write (777, uid 0)"),
    );
}

#[test]
fn a_managed_directory_a_service_account_owns_is_refused_by_plan_and_apply() {
    // Its owner could swap the directory, or plant links in the staging
    // directory inside it, between matrixctl's look and root's write.
    let (sandbox, sentinel) = applied_host();
    let conf_d = sandbox.host_file("a.example", CONF_D);
    std::os::unix::fs::chown(&conf_d, Some(1000), Some(1000)).unwrap();
    let expected =
        format!("{CONF_D}: a directory on the way to a managed file belongs to uid 1000, not root");
    let plan = sandbox.run(&["plan", "inventory", "--limit", "a.example"]);
    assert_eq!(plan.code, 1, "{}", plan.transcript());
    assert!(plan.stdout.contains(&expected), "{}", plan.stdout);
    refused(&sandbox, &sentinel, &expected);
    let registration = std::fs::read_to_string(conf_d.join("registration.yaml")).unwrap();
    assert!(!registration.contains("enable_registration: false"));
    assert!(!conf_d.join(".matrixctl-staged").exists());
}

#[test]
fn a_directory_on_the_way_that_its_group_can_write_is_refused() {
    let (sandbox, sentinel) = applied_host();
    let parent = sandbox.host_file("a.example", "/etc/matrix-synapse");
    Command::new("chmod")
        .arg("0775")
        .arg(&parent)
        .status()
        .unwrap();
    refused(
        &sandbox,
        &sentinel,
        "/etc/matrix-synapse: others can write a directory on the way to a managed file (mode 775)",
    );
}

#[test]
fn a_root_symlink_in_a_root_directory_is_followed() {
    let (sandbox, _) = applied_host();
    let real = sandbox.host_file("a.example", "/etc/matrix-synapse/conf.real");
    std::fs::rename(sandbox.host_file("a.example", CONF_D), &real).unwrap();
    symlink("conf.real", sandbox.host_file("a.example", CONF_D)).unwrap();
    let apply = sandbox.run(&["apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    let registration = std::fs::read_to_string(real.join("registration.yaml")).unwrap();
    assert!(registration.contains("enable_registration: false"));
}

#[test]
fn symlinks_in_the_state_directory_are_never_followed() {
    let cases: [(&str, &str); 6] = [
        (STATE, "matrixctl follows no symlink in its state directory"),
        (
            "/var/lib/matrixctl/backup.new",
            "/var/lib/matrixctl/backup.new: matrixctl follows no symlink in its state directory",
        ),
        (
            "/var/lib/matrixctl/lock",
            "/var/lib/matrixctl/lock: matrixctl follows no symlink in its state directory",
        ),
        (
            "/var/lib/matrixctl/lock.owner",
            "/var/lib/matrixctl/lock.owner: matrixctl follows no symlink in its state directory",
        ),
        (
            "/var/lib/matrixctl/backup",
            "/var/lib/matrixctl/backup: matrixctl follows no symlink in its state directory",
        ),
        (
            "/var/lib/matrixctl/state",
            "/var/lib/matrixctl/state: the record is a symlink",
        ),
    ];
    for (path, expected) in cases {
        let (sandbox, sentinel) = applied_host();
        let target = if path == STATE {
            // A whole copy, so only the link itself is wrong.
            let copy = sentinel.join("state");
            crate::support::copy_dir(&sandbox.host_file("a.example", STATE), &copy);
            copy
        } else if path.ends_with("backup") {
            sentinel.join("conf.d")
        } else {
            sentinel.join("file")
        };
        plant_link(&sandbox, path, &target, 0);
        // Plan refuses what apply will refuse.
        let plan = sandbox.run(&["plan", "inventory", "--limit", "a.example"]);
        assert_eq!(plan.code, 1, "{path}: {}", plan.transcript());
        assert!(
            plan.stdout
                .contains("matrixctl follows no symlink in its state directory")
                || plan.stdout.contains("the record is a symlink"),
            "{path}: {}",
            plan.stdout
        );
        refused(&sandbox, &sentinel, expected);
    }
}

#[test]
fn a_state_directory_others_can_write_is_refused() {
    let (sandbox, sentinel) = applied_host();
    let state = sandbox.host_file("a.example", STATE);
    Command::new("chmod")
        .arg("0777")
        .arg(&state)
        .status()
        .unwrap();
    refused(
        &sandbox,
        &sentinel,
        "others can write the state directory (mode 777)",
    );
}

#[test]
fn a_crafted_backup_manifest_cannot_steer_a_restore() {
    let (sandbox, sentinel) = applied_host();
    let backup = sandbox.host_file("a.example", "/var/lib/matrixctl/backup");
    std::fs::create_dir_all(&backup).unwrap();
    std::fs::write(backup.join("1"), "attacker\n").unwrap();
    let outside = format!(
        "/../../../../../../../..{}",
        sentinel.join("file").display()
    );
    std::fs::write(backup.join("manifest"), format!("saved 1 {outside}\n")).unwrap();
    // (The output names the sandbox as [SANDBOX].)
    let shown = outside.replace(&sandbox.path().display().to_string(), "[SANDBOX]");
    let expected = format!(
        "the backup manifest in /var/lib/matrixctl/backup names {shown}, which this plan does not manage"
    );
    // Plan refuses what apply will refuse.
    let plan = sandbox.run(&["plan", "inventory", "--limit", "a.example"]);
    assert_eq!(plan.code, 1, "{}", plan.transcript());
    assert!(plan.stdout.contains(&expected), "{}", plan.stdout);
    refused(&sandbox, &sentinel, &expected);
}

#[test]
fn a_file_matrixctl_wrote_is_still_removed_from_a_directory_a_service_took_over() {
    // Only the way to a file matrixctl writes must be root's alone: what
    // it removes goes with `rm`, which follows no link (an upgraded host
    // whose old files now sit in a service's directory).
    let sandbox = Sandbox::fleet();
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "consent:\n  version: \"1.0\"\n  document: \"<p>Be kind.</p>\"\n",
    );
    let first = sandbox.run(&["apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(first.code, 0, "{}", first.transcript());
    let page = sandbox.host_file("a.example", "/etc/matrix-synapse/consent/en/1.0.html");
    assert!(page.exists());
    std::os::unix::fs::chown(page.parent().unwrap(), Some(1000), Some(1000)).unwrap();
    sandbox.write("inventory/host_vars/a.example.yaml", "");
    let apply = sandbox.run(&["apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert!(!page.exists(), "the page is removed");
}
