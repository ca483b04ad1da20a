//! Promises made elsewhere, held in their corners: what a newcomer types
//! from the README (`~` in a key path), what a typo cannot do (a local
//! root that climbs to this machine), what a plan shows of a host's own
//! private files, and the keys Synapse knows only by their sub-keys.

use crate::support::Sandbox;

/// An inventory with one SSH host that `render` loads (it contacts none).
fn ssh_inventory(identity_file: &str) -> Sandbox {
    let sandbox = Sandbox::empty();
    sandbox.write(
        "inventory/hosts.yaml",
        "hosts:\n  example.com:\n    ssh: root@203.0.113.7\n",
    );
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &format!("ssh_options:\n  identity_file: {identity_file}\n"),
    );
    sandbox.write(
        "inventory/secrets/master.key",
        crate::support::TEST_MASTER_KEY,
    );
    sandbox.chmod("inventory/secrets/master.key", 0o600);
    sandbox
}

#[test]
fn a_key_path_under_the_home_directory_is_read_as_ssh_reads_it() {
    // As init's group_vars/all.yaml suggests: `~` is the operator's home,
    // not a directory inside the inventory.
    let sandbox = ssh_inventory("~/.ssh/matrixctl");
    let home = sandbox.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let home = home.display().to_string();
    let env = [("HOME", home.as_str())];
    let missing = sandbox.run_with_env(&["render", "inventory", "--out", "out"], &env);
    assert_eq!(missing.code, 1, "{}", missing.transcript());
    insta::assert_snapshot!("identity_file_in_home_missing", missing.stderr);
    sandbox.write(
        "home/.ssh/matrixctl",
        "not a real key; only its existence counts here\n",
    );
    let present = sandbox.run_with_env(&["render", "inventory", "--out", "out"], &env);
    assert_eq!(present.code, 0, "{}", present.transcript());
}

#[test]
fn the_example_inventory_as_git_checks_it_out_runs_without_a_warning() {
    // Git keeps no modes: a fresh clone has the demo key at 0644. The key
    // is published with the repository, so no mode could protect it.
    let sandbox = Sandbox::empty();
    crate::support::copy_dir(
        &crate::support::repo().join("inventory.example"),
        &sandbox.path().join("inventory"),
    );
    sandbox.chmod("inventory/secrets/master.key", 0o644);
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert_eq!(plan.stderr, "", "{}", plan.transcript());
    // A real key at 0644 is still warned about (tests/it/inputs.rs).
}

#[test]
fn a_plan_never_prints_the_old_content_of_a_file_the_host_keeps_private() {
    // Adopting a server set up by hand: its conf.d file is 0640 and holds
    // what its admin put there. matrixctl's own rendering of that path
    // holds no secret, so only the old content must stay unseen.
    let sandbox = Sandbox::fleet();
    // Its users' passwords stay as they are (see the pepper test below).
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "synapse_password_pepper: false\n",
    );
    let path = "/etc/matrix-synapse/conf.d/registration.yaml";
    let file = sandbox.host_file("a.example", path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        "enable_registration: false\nregistration_shared_secret: \"typed-by-hand-4f1c\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let plan = sandbox.run(&["plan", "inventory", "--limit", "a.example"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert!(!plan.stdout.contains("typed-by-hand"), "{}", plan.stdout);
    let json = sandbox.run(&["plan", "--json", "inventory", "--limit", "a.example"]);
    assert!(!json.stdout.contains("typed-by-hand"), "{}", json.stdout);
    let shown: String = plan
        .stdout
        .lines()
        .skip_while(|line| !line.contains(path))
        .take(5)
        .map(|line| format!("{line}\n"))
        .collect();
    insta::assert_snapshot!("private_old_content_hidden", shown);
    // Readable by everyone, the old content is no secret of the host's.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let plan = sandbox.run(&["plan", "inventory", "--limit", "a.example"]);
    assert!(
        plan.stdout.contains("-registration_shared_secret"),
        "{}",
        plan.stdout
    );
}

/// Every `.matrixctl-staged` directory under `dir`.
fn staging_dirs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                if entry.file_name() == ".matrixctl-staged" {
                    found.push(path.clone());
                }
                stack.push(path);
            }
        }
    }
    found
}

/// The fleet with a role of its own: one file, which says the check it
/// is validated with, the option `checked_validator` (`true` unless set).
fn checked_role() -> Sandbox {
    let sandbox = Sandbox::fleet();
    sandbox.write(
        "roles/checked.yaml",
        "description: a file and its check\n\
         files:\n  - template: checked/x.conf.j2\n    dest: /etc/checked/x.conf\n    mode: \"0644\"\n\
         validators:\n  - \"{{ checked_validator }}\"\n\
         options:\n  checked_validator:\n    type: string\n    default: \"true\"\n    description: the check\n",
    );
    sandbox.write(
        "roles/templates/checked/x.conf.j2",
        "{{ checked_validator }}\n",
    );
    sandbox
}

/// `apply --yes` of a.example with the sandbox's roles.
fn apply_a_example(sandbox: &Sandbox) -> crate::support::Run {
    sandbox.run(&[
        "--roles",
        "roles",
        "apply",
        "--yes",
        "inventory",
        "--limit",
        "a.example",
    ])
}

#[test]
fn no_staging_directory_outlives_an_apply_rolled_back_or_not() {
    let sandbox = checked_role();
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "checked_validator: \"false\"\n",
    );
    let host = sandbox.path().join("hosts/a.example");
    let apply = || apply_a_example(&sandbox);
    let failed = apply();
    assert_eq!(failed.code, 1, "{}", failed.transcript());
    assert!(failed.stdout.contains("ROLLED BACK"), "{}", failed.stdout);
    assert_eq!(staging_dirs(&host), Vec::<std::path::PathBuf>::new());
    // Making the state directory on an empty root left the directories
    // above it as a system has them; only the state directory is closed.
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &str| {
        std::fs::metadata(host.join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(
        [mode("var"), mode("var/lib"), mode("var/lib/matrixctl")],
        [0o755, 0o755, 0o700]
    );
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "checked_validator: \"true\"\n",
    );
    let applied = apply();
    assert_eq!(applied.code, 0, "{}", applied.transcript());
    assert_eq!(staging_dirs(&host), Vec::<std::path::PathBuf>::new());
}

#[test]
fn checks_an_interrupted_apply_owes_are_the_inventorys_as_it_is_now() {
    // A failed restore leaves its journal: the checks and handlers still
    // owed. The operator fixes the failing check in the inventory; the
    // next apply runs the fixed one, not the command stored on the host.
    let sandbox = checked_role();
    let apply = || apply_a_example(&sandbox);
    let first = apply();
    assert_eq!(first.code, 0, "{}", first.transcript());
    // What a failed run leaves: its check, `false` then, still owed.
    let journal = sandbox.host_file("a.example", "/var/lib/matrixctl/journal");
    std::fs::write(&journal, r#"{"validators":["false"],"handlers":[]}"#).unwrap();
    let plan = sandbox.run(&[
        "--roles",
        "roles",
        "plan",
        "inventory",
        "--limit",
        "a.example",
    ]);
    assert!(!plan.stdout.contains("false"), "{}", plan.stdout);
    let second = apply();
    assert_eq!(second.code, 0, "{}", second.transcript());
    assert!(!journal.exists(), "the journal is settled");
}

#[test]
fn a_password_pepper_that_would_lock_users_out_is_refused_until_acknowledged() {
    let sandbox = Sandbox::fleet();
    // A Synapse set up by hand (seed 004 writes conf.d/server_name.yaml):
    // its users' passwords have no pepper.
    let by_hand = sandbox.host_file("a.example", "/etc/matrix-synapse/conf.d/server_name.yaml");
    std::fs::create_dir_all(by_hand.parent().unwrap()).unwrap();
    std::fs::write(&by_hand, "server_name: a.example\n").unwrap();
    let plan = |vars: &str| {
        sandbox.write("inventory/host_vars/a.example.yaml", vars);
        sandbox.run(&["plan", "inventory", "--limit", "a.example"])
    };
    let adopted = plan("");
    assert_eq!(adopted.code, 1, "{}", adopted.transcript());
    insta::assert_snapshot!("pepper_added_to_a_hand_made_server", adopted.stdout);
    let kept = plan("synapse_password_pepper: false\n");
    assert_eq!(kept.code, 0, "{}", kept.transcript());
    assert!(!kept.stdout.contains("pepper"), "{}", kept.stdout);
    let applied = sandbox.run(&["apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(applied.code, 0, "{}", applied.transcript());
    // Later, on a host matrixctl set up: turning it on is refused too, and
    // goes ahead, with its impact shown, once acknowledged.
    let on = plan("");
    assert_eq!(on.code, 1, "{}", on.transcript());
    assert!(
        on.stdout
            .contains("the password pepper would change (off -> generation 0)"),
        "{}",
        on.stdout
    );
    let acknowledged = plan("synapse_password_pepper_change_acknowledged: true\n");
    assert_eq!(acknowledged.code, 0, "{}", acknowledged.transcript());
    assert!(
        acknowledged.stdout.contains(
            "every existing password stops working: the password pepper changes (off -> generation 0)"
        ),
        "{}",
        acknowledged.stdout
    );
}

#[test]
fn a_manual_certificate_serving_several_names_is_named_in_the_notes() {
    let sandbox = Sandbox::fleet();
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "webserver: nginx\ntls_certificate: /etc/ssl/m/cert.pem\ntls_certificate_key: /etc/ssl/m/key.pem\nserve_base_domain: true\n",
    );
    let plan = sandbox.run(&["plan", "inventory", "--limit", "a.example"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert!(
        plan.stdout.contains(
            "a.example: make sure the certificate in /etc/ssl/m/cert.pem covers matrix.a.example and a.example"
        ),
        "{}",
        plan.stdout
    );
    // One name, nothing to say.
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "webserver: nginx\ntls_certificate: /etc/ssl/m/cert.pem\ntls_certificate_key: /etc/ssl/m/key.pem\n",
    );
    let plan = sandbox.run(&["plan", "inventory", "--limit", "a.example"]);
    assert!(
        !plan.stdout.contains("make sure the certificate"),
        "{}",
        plan.stdout
    );
}
