//! An apply killed part-way leaves every file wholly old or wholly new, and
//! the next plan reports what was left behind; the next apply converges.

use crate::support::{Sandbox, crash_host_run, kill_group, wait_until};

const SERVER_NAME_YAML: &str = "/etc/matrix-synapse/conf.d/server_name.yaml";
const REGISTRATION_YAML: &str = "/etc/matrix-synapse/conf.d/registration.yaml";

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
    let old_server_name = sandbox
        .read_host_file("a.example", SERVER_NAME_YAML)
        .unwrap();

    // Two files change; the test hook pauses the host program after each
    // rename, so the kill lands between the first and the second.
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
    assert_eq!(
        sandbox
            .read_host_file("a.example", REGISTRATION_YAML)
            .unwrap(),
        rendered(REGISTRATION_YAML)
    );
    assert_eq!(
        sandbox
            .read_host_file("a.example", SERVER_NAME_YAML)
            .unwrap(),
        old_server_name
    );

    let plan = sandbox.run(&["plan", "inventory", "--limit", "a.example"]);
    assert!(
        plan.stdout.contains(
            "  - /etc/matrix-synapse/conf.d/.server_name.yaml.matrixctl-tmp  (left by an interrupted apply; removing it)\n"
        ),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("  ~ /etc/matrix-synapse/conf.d/server_name.yaml  (role synapse)"),
        "{}",
        plan.stdout
    );

    let apply = sandbox.run(&["apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_eq!(
        sandbox
            .read_host_file("a.example", SERVER_NAME_YAML)
            .unwrap(),
        rendered(SERVER_NAME_YAML)
    );
    assert!(
        !sandbox
            .host_files("a.example")
            .iter()
            .any(|path| path.ends_with(".matrixctl-tmp"))
    );
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
        plan.stdout.contains(".registration.yaml.matrixctl-tmp"),
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
    assert!(
        !sandbox
            .host_files("a.example")
            .iter()
            .any(|path| path.ends_with(".matrixctl-tmp"))
    );
    assert_eq!(sandbox.plan_exit_code(Some("a.example")), 0);
}
