//! An apply killed part-way leaves every file wholly old or wholly new, and
//! the next plan reports what was left behind; the next apply converges.

use crate::support::{Sandbox, crash_host_run, kill_group, wait_until};

const SERVER_NAME_YAML: &str = "/etc/matrix-synapse/conf.d/server_name.yaml";
const REGISTRATION_YAML: &str = "/etc/matrix-synapse/conf.d/registration.yaml";
const WELL_KNOWN_CLIENT: &str = "/var/www/matrix/.well-known/matrix/client";

/// Whether any staged file, or staging directory, is left on the host.
fn anything_staged_left(sandbox: &Sandbox, host: &str) -> bool {
    sandbox
        .host_files(host)
        .iter()
        .any(|path| path.ends_with(".matrixctl-tmp") || path.contains("/.matrixctl-staged/"))
        || [
            "/etc/matrix-synapse/conf.d",
            "/var/www/matrix/.well-known/matrix",
        ]
        .iter()
        .any(|dir| {
            sandbox
                .host_file(host, &format!("{dir}/.matrixctl-staged"))
                .exists()
        })
}

#[test]
fn a_killed_apply_leaves_whole_files_and_the_next_apply_converges() {
    let sandbox = Sandbox::fleet();
    assert_eq!(
        sandbox
            .run(&["apply", "--yes", "inventory", "--limit", "a.example"])
            .code,
        0
    );
    let old_registration = sandbox
        .read_host_file("a.example", REGISTRATION_YAML)
        .unwrap();
    let old_client = sandbox
        .read_host_file("a.example", WELL_KNOWN_CLIENT)
        .unwrap();

    // Four files change, two in Synapse's conf.d and two well-known files.
    // One `mv` renames a directory's files; the test hook pauses the host
    // program after the first directory's, so the kill lands between
    // conf.d's renames and the well-known files'.
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "registration: closed\nmatrix_fqdn: chat.a.example\n",
    );
    let render = sandbox.run(&[
        "render",
        "inventory",
        "--out",
        "rendered",
        "--limit",
        "a.example",
    ]);
    assert_eq!(render.code, 0);
    let rendered = |path: &str| {
        std::fs::read(sandbox.path().join("rendered/a.example").join(&path[1..])).unwrap()
    };

    let mut child = sandbox.spawn_paused_apply("a.example", "first-renamed");
    wait_until("apply never committed a file", || {
        sandbox
            .read_host_file("a.example", REGISTRATION_YAML)
            .unwrap()
            != old_registration
    });
    kill_group(&mut child);
    crash_host_run(&sandbox, "a.example");

    // Each file is wholly the old or wholly the new one.
    for path in [REGISTRATION_YAML, SERVER_NAME_YAML] {
        assert_eq!(
            sandbox.read_host_file("a.example", path).unwrap(),
            rendered(path),
            "{path}"
        );
    }
    assert_eq!(
        sandbox
            .read_host_file("a.example", WELL_KNOWN_CLIENT)
            .unwrap(),
        old_client
    );

    let plan = sandbox.run(&["plan", "inventory", "--limit", "a.example"]);
    assert!(
        plan.stdout.contains(
            "  - /var/www/matrix/.well-known/matrix/.matrixctl-staged/client  (left by an interrupted apply; removing it)\n"
        ),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("  ~ /var/www/matrix/.well-known/matrix/client  (role wellknown)"),
        "{}",
        plan.stdout
    );
    // conf.d's files are in place; its emptied staging directory is left.
    assert!(
        plan.stdout.contains(
            "  - /etc/matrix-synapse/conf.d/.matrixctl-staged  (left by an interrupted apply; removing it)\n"
        ),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains("server_name.yaml"), "{}", plan.stdout);

    let apply = sandbox.run(&["apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_eq!(
        sandbox
            .read_host_file("a.example", WELL_KNOWN_CLIENT)
            .unwrap(),
        rendered(WELL_KNOWN_CLIENT)
    );
    assert!(!anything_staged_left(&sandbox, "a.example"));
    assert_eq!(sandbox.plan_exit_code(None), 2);
    assert_eq!(sandbox.plan_exit_code(Some("a.example")), 0);
}

#[test]
fn an_apply_killed_after_its_backup_changed_nothing_and_the_next_one_converges() {
    let sandbox = Sandbox::fleet();
    assert_eq!(
        sandbox
            .run(&["apply", "--yes", "inventory", "--limit", "a.example"])
            .code,
        0
    );
    let old_registration = sandbox
        .read_host_file("a.example", REGISTRATION_YAML)
        .unwrap();
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "registration: closed\n",
    );

    let mut child = sandbox.spawn_paused_apply("a.example", "backed-up");
    let manifest = sandbox.host_file("a.example", "/var/lib/matrixctl/backup/manifest");
    wait_until("apply never finished its backup", || manifest.exists());
    kill_group(&mut child);
    crash_host_run(&sandbox, "a.example");

    // Nothing live changed; the plan reports the backup and the staged file.
    assert_eq!(
        sandbox
            .read_host_file("a.example", REGISTRATION_YAML)
            .unwrap(),
        old_registration
    );
    let plan = sandbox.run(&["plan", "inventory", "--limit", "a.example"]);
    assert!(
        plan.stdout
            .contains("an interrupted apply left a backup of 1 file"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("/etc/matrix-synapse/conf.d/.matrixctl-staged/registration.yaml"),
        "{}",
        plan.stdout
    );

    let apply = sandbox.run(&["apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    let registration = sandbox
        .read_host_file("a.example", REGISTRATION_YAML)
        .unwrap();
    assert!(String::from_utf8_lossy(&registration).contains("enable_registration: false"));
    assert!(
        !manifest.exists(),
        "the backup is gone once an apply succeeded"
    );
    assert!(!anything_staged_left(&sandbox, "a.example"));
    assert_eq!(sandbox.plan_exit_code(Some("a.example")), 0);
}

#[test]
fn a_file_left_by_a_restore_or_an_older_matrixctl_is_found_and_removed() {
    let sandbox = Sandbox::fleet();
    assert_eq!(
        sandbox
            .run(&["apply", "--yes", "inventory", "--limit", "a.example"])
            .code,
        0
    );
    // A file written alone (a rollback's restore, an apt key) is staged as
    // `.NAME.matrixctl-tmp`, as every file was before staging directories.
    let leftover = sandbox.host_file(
        "a.example",
        "/etc/matrix-synapse/conf.d/.server_name.yaml.matrixctl-tmp",
    );
    std::fs::write(&leftover, "half a file").unwrap();

    let plan = sandbox.run(&["plan", "inventory", "--limit", "a.example"]);
    assert_eq!(
        plan.stdout,
        "a.example\n  \
         - /etc/matrix-synapse/conf.d/.server_name.yaml.matrixctl-tmp  (left by an interrupted apply; removing it)\n\n\
         Plan: 0 to add, 0 to change, 1 to remove on 1 of 1 host.\n"
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert!(!leftover.exists());
    assert!(!anything_staged_left(&sandbox, "a.example"));
    assert_eq!(sandbox.plan_exit_code(Some("a.example")), 0);
}
