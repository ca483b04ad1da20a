//! All or nothing across a host's files: a step that fails after the first
//! rename ends in a host restored and checked, or in one reported as *not*
//! restored, with the backup kept and the files that differ named. The
//! faults are real: a target that is a mount point makes `rename` fail with
//! EBUSY, inside a private mount namespace (`unshare -m`) that dies with
//! the run.

use std::process::Command;

use crate::support::{BIN, Run, Sandbox};

const REGISTRATION_YAML: &str = "/etc/matrix-synapse/conf.d/registration.yaml";

/// Every file of a host but matrixctl's run results and who last held the
/// lock, with bytes and mode.
fn host_state(sandbox: &Sandbox, host: &str) -> Vec<(String, Vec<u8>, u32)> {
    sandbox
        .host_files(host)
        .into_iter()
        .filter(|path| {
            !path.starts_with("/var/lib/matrixctl/runs/") && path != "/var/lib/matrixctl/lock.owner"
        })
        .map(|path| {
            let full = sandbox.host_file(host, &path);
            let content = std::fs::read(&full).unwrap();
            (path, content, crate::support::mode_of(&full))
        })
        .collect()
}

/// Every file byte for byte and mode for mode as before; no backup,
/// journal or staged file left.
fn assert_same_files(now: &[(String, Vec<u8>, u32)], before: &[(String, Vec<u8>, u32)]) {
    let paths = |files: &[(String, Vec<u8>, u32)]| -> Vec<String> {
        files.iter().map(|(path, _, _)| path.clone()).collect()
    };
    assert_eq!(paths(now), paths(before), "the same files");
    for ((path, content, mode), (_, old_content, old_mode)) in now.iter().zip(before) {
        assert!(
            content == old_content && mode == old_mode,
            "{path} is not as it was"
        );
    }
}

/// `matrixctl apply --yes inventory --limit a.example` in a private mount
/// namespace, after `setup` (shell) ran there.
fn apply_in_mount_namespace(sandbox: &Sandbox, setup: &str) -> Run {
    let script = format!("{setup}\nexec {BIN} apply --yes inventory --limit a.example");
    let output = Command::new("unshare")
        .args(["-m", "sh", "-euc", &script])
        .current_dir(sandbox.path())
        .env_remove("NO_COLOR")
        .output()
        .expect("unshare runs (apt-get install util-linux)");
    let clean = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes).replace(&sandbox.path().display().to_string(), "[SANDBOX]")
    };
    Run {
        stdout: clean(&output.stdout),
        stderr: clean(&output.stderr),
        code: output.status.code().unwrap_or(-1),
    }
}

/// The paths a plan of a.example would change, in the order apply renames.
fn changed_paths(sandbox: &Sandbox) -> Vec<String> {
    let plan = sandbox.run(&["plan", "--json", "inventory", "--limit", "a.example"]);
    let json: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    json["hosts"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_rename_failing_part_way_rolls_every_file_back_and_checks_it() {
    let sandbox = Sandbox::fleet();
    assert_eq!(
        sandbox
            .run(&["apply", "--yes", "inventory", "--limit", "a.example"])
            .code,
        0
    );
    let before = host_state(&sandbox, "a.example");
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "registration: closed\nmatrix_fqdn: chat.a.example\n",
    );
    let changed = changed_paths(&sandbox);
    assert!(changed.len() >= 3, "{changed:?}");
    // The last file renamed is a mount point (of a copy of itself), so
    // every other rename has happened when its own fails.
    let last = changed.last().unwrap();
    let target = sandbox.host_file("a.example", last);
    let copy = sandbox.path().join("copy");
    std::fs::copy(&target, &copy).unwrap();
    let apply = apply_in_mount_namespace(
        &sandbox,
        &format!("mount --bind '{}' '{}'", copy.display(), target.display()),
    );
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    assert!(
        apply.stdout.contains("a.example: ROLLED BACK\n")
            && apply
                .stdout
                .contains(&format!("cannot rename into place: {last}"))
            && apply
                .stdout
                .contains("rolled back: every file is as it was before this apply (checked)"),
        "{}",
        apply.stdout
    );
    assert_same_files(&host_state(&sandbox, "a.example"), &before);
    assert_eq!(
        sandbox.plan_exit_code(Some("a.example")),
        2,
        "the change is still to be made"
    );
}

#[test]
fn a_restore_that_fails_keeps_the_backup_and_names_the_file() {
    let sandbox = Sandbox::fleet();
    let intruder = sandbox.path().join("intruder");
    std::fs::write(&intruder, "not the old file\n").unwrap();
    // Synapse's validator pins a file over the new registration.yaml (a
    // mount point cannot be renamed over) and fails, so the rollback
    // cannot put the old one back.
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &format!(
            "synapse_group: root\nhost_commands: true\nsynapse_restart_command: \"true\"\n\
             synapse_validate_command: 'if [ -e {flag} ]; then mount --bind {intruder} \"$MATRIXCTL_ROOT{REGISTRATION_YAML}\"; exit 1; fi'\n",
            flag = sandbox.path().join("sabotage").display(),
            intruder = intruder.display()
        ),
    );
    let first = sandbox.run(&["apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(first.code, 0, "{}", first.transcript());
    let old = sandbox
        .read_host_file("a.example", REGISTRATION_YAML)
        .unwrap();
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "registration: closed\n",
    );
    std::fs::write(sandbox.path().join("sabotage"), "").unwrap();

    let apply = apply_in_mount_namespace(&sandbox, "true");
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    assert!(
        apply.stdout.contains("a.example: FAILED\n")
            && apply.stdout.contains(&format!(
                "NOT restored: these files still differ from before this apply: {REGISTRATION_YAML}"
            ))
            && apply.stdout.contains(
                "the backup is kept in /var/lib/matrixctl/backup; the next apply uses it"
            )
            && !apply.stdout.contains("every file is as it was"),
        "{}",
        apply.stdout
    );
    let manifest = sandbox.host_file("a.example", "/var/lib/matrixctl/backup/manifest");
    assert!(manifest.exists(), "the backup is kept");
    let saved = std::fs::read_to_string(&manifest).unwrap();
    assert!(saved.contains(REGISTRATION_YAML), "{saved}");

    // The next plan says what is owed; the next apply (no sabotage now)
    // converges and only then drops the backup.
    std::fs::remove_file(sandbox.path().join("sabotage")).unwrap();
    let plan = sandbox.run(&["plan", "inventory", "--limit", "a.example"]);
    assert!(
        plan.stdout
            .contains("an interrupted apply left a backup of 1 file"),
        "{}",
        plan.stdout
    );
    let again = sandbox.run(&["apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(again.code, 0, "{}", again.transcript());
    assert!(!manifest.exists());
    let new = sandbox
        .read_host_file("a.example", REGISTRATION_YAML)
        .unwrap();
    assert_ne!(new, old);
    assert!(String::from_utf8_lossy(&new).contains("enable_registration: false"));
    assert_eq!(sandbox.plan_exit_code(Some("a.example")), 0);
}

#[test]
fn a_transaction_that_does_not_fit_on_the_disk_leaves_no_script_behind() {
    // The run's script holds the new files, secrets among them: cut short
    // by a full disk, it must not stay in runs/ for anyone to find later.
    let sandbox = Sandbox::fleet();
    let first = sandbox.run(&["apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(first.code, 0, "{}", first.transcript());
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "registration: closed\n",
    );
    let runs = sandbox.host_file("a.example", "/var/lib/matrixctl/runs");
    // A 16 KiB file system over runs/, in a mount namespace of the test's
    // own; what the apply left there is listed before the namespace ends.
    let script = format!(
        "mount -t tmpfs -o size=16k,mode=0700 matrixctl-full {runs}\n\
         {BIN} apply --yes inventory --limit a.example || echo \"apply exited $?\"\n\
         echo left:; ls -A {runs}",
        runs = runs.display()
    );
    let output = Command::new("unshare")
        .args(["-m", "sh", "-euc", &script])
        .current_dir(sandbox.path())
        .output()
        .expect("unshare runs (apt-get install util-linux)");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("apply exited 1"), "{said}");
    assert!(
        said.contains("is the disk full?"),
        "{said}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let left = said.rsplit("left:\n").next().unwrap_or_default();
    assert!(
        !left.lines().any(|name| name.ends_with(".sh")),
        "a script was left: {left}"
    );
    // Nothing changed on the host.
    assert!(
        !std::fs::read_to_string(
            sandbox.host_file("a.example", "/etc/matrix-synapse/conf.d/registration.yaml")
        )
        .unwrap()
        .contains("enable_registration: false")
    );
}
