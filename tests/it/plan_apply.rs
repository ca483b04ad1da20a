//! plan and apply against local hosts: creations, convergence, drift,
//! removal of what a role no longer renders, modes, and failures that stay
//! with their host.

use crate::support::{FILES_PER_HOST, Sandbox, mode_of};

const SERVER_NAME_YAML: &str = "/etc/matrix-synapse/conf.d/server_name.yaml";
const SECRETS_YAML: &str = "/etc/matrix-synapse/conf.d/secrets.yaml";
const WELLKNOWN_SERVER: &str = "/var/www/matrix/.well-known/matrix/server";
const WELLKNOWN_CLIENT: &str = "/var/www/matrix/.well-known/matrix/client";
const RECORD: &str = "/var/lib/matrixctl/state";

#[test]
fn plan_on_empty_hosts_lists_every_creation() {
    let sandbox = Sandbox::fleet();
    let run = sandbox.run(&["plan", "inventory", "--limit", "a.example"]);
    insta::assert_snapshot!(run.transcript());
    assert!(
        sandbox.host_files("a.example").is_empty(),
        "plan wrote something"
    );
}

#[test]
fn apply_creates_exactly_the_rendered_files_then_converges() {
    let sandbox = Sandbox::fleet();
    let first = sandbox.run(&["plan", "--detailed-exitcode", "inventory"]);
    assert_eq!(first.code, 2, "{}", first.transcript());

    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert!(apply.stdout.ends_with(&format!(
        "Apply complete: {} added, 0 changed, 0 removed on 3 of 3 hosts.\n",
        3 * FILES_PER_HOST
    )));

    // What apply wrote is byte for byte what render produces, with its modes.
    let render = sandbox.run(&["render", "inventory", "--out", "rendered"]);
    assert_eq!(render.code, 0, "{}", render.transcript());
    for host in ["a.example", "b.example", "c.example"] {
        assert!(sandbox.host_files(host).contains(&RECORD.to_string()));
        let applied = sandbox.managed_files(host);
        let rendered_root = sandbox.path().join("rendered").join(host);
        let mut rendered = Vec::new();
        for path in &applied {
            let on_host = sandbox.read_host_file(host, path).unwrap();
            let expected = std::fs::read(rendered_root.join(path.trim_start_matches('/'))).unwrap();
            assert_eq!(on_host, expected, "{host}{path}");
            rendered.push(path.clone());
        }
        assert_eq!(applied.len(), FILES_PER_HOST, "{host}: {applied:?}");
        assert_eq!(mode_of(&sandbox.host_file(host, SERVER_NAME_YAML)), 0o644);
        assert_eq!(mode_of(&sandbox.host_file(host, SECRETS_YAML)), 0o640);
        assert_eq!(mode_of(&sandbox.host_file(host, RECORD)), 0o600);
    }

    let second = sandbox.run(&["plan", "--detailed-exitcode", "inventory"]);
    assert_eq!(second.code, 0, "{}", second.transcript());
    assert!(
        second
            .stdout
            .ends_with("Plan: 0 to add, 0 to change, 0 to remove on 0 of 3 hosts.\n")
    );
    let again = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(again.code, 0);
    assert!(
        again.stdout.ends_with("No changes to apply.\n"),
        "{}",
        again.stdout
    );
}

#[test]
fn rendered_files_follow_the_spec() {
    let sandbox = Sandbox::fleet();
    sandbox.write(
        "inventory/host_vars/b.example.yaml",
        "matrix_fqdn: chat.b.example\nfederation_port: 443\n",
    );
    assert_eq!(sandbox.run(&["apply", "--yes", "inventory"]).code, 0);
    let json = |host, path| -> serde_json::Value {
        serde_json::from_slice(&sandbox.read_host_file(host, path).unwrap()).unwrap()
    };
    assert_eq!(
        json("b.example", WELLKNOWN_SERVER),
        serde_json::json!({"m.server": "chat.b.example:443"})
    );
    assert_eq!(
        json("b.example", WELLKNOWN_CLIENT),
        serde_json::json!({"m.homeserver": {"base_url": "https://chat.b.example/"}})
    );
    assert_eq!(
        json("a.example", WELLKNOWN_SERVER),
        serde_json::json!({"m.server": "matrix.a.example:8448"})
    );
}

#[test]
fn a_hand_edit_shows_as_drift_and_apply_puts_it_back() {
    let sandbox = Sandbox::fleet();
    assert_eq!(sandbox.run(&["apply", "--yes", "inventory"]).code, 0);
    let original = sandbox
        .read_host_file("a.example", SERVER_NAME_YAML)
        .unwrap();
    let edited = String::from_utf8(original.clone())
        .unwrap()
        .replace("a.example\"", "evil.example\"");
    std::fs::write(sandbox.host_file("a.example", SERVER_NAME_YAML), edited).unwrap();
    let client = sandbox.host_file("c.example", WELLKNOWN_CLIENT);
    std::fs::set_permissions(&client, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    let plan = sandbox.run(&["plan", "--detailed-exitcode", "inventory"]);
    assert_eq!(plan.code, 2);
    insta::assert_snapshot!(plan.transcript());

    assert_eq!(sandbox.run(&["apply", "--yes", "inventory"]).code, 0);
    assert_eq!(
        sandbox
            .read_host_file("a.example", SERVER_NAME_YAML)
            .unwrap(),
        original
    );
    assert_eq!(mode_of(&client), 0o644);
    assert_eq!(
        sandbox
            .run(&["plan", "--detailed-exitcode", "inventory"])
            .code,
        0
    );
}

#[test]
fn switching_a_role_off_removes_its_files() {
    let sandbox = Sandbox::fleet();
    assert_eq!(sandbox.run(&["apply", "--yes", "inventory"]).code, 0);
    sandbox.write("inventory/group_vars/eu.yaml", "wellknown_enabled: false\n");

    let plan = sandbox.run(&["plan", "inventory"]);
    insta::assert_snapshot!(plan.transcript());

    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_eq!(sandbox.read_host_file("b.example", WELLKNOWN_SERVER), None);
    assert_eq!(sandbox.read_host_file("b.example", WELLKNOWN_CLIENT), None);
    assert!(
        sandbox
            .read_host_file("a.example", WELLKNOWN_SERVER)
            .is_some()
    );
    let record = String::from_utf8(sandbox.read_host_file("b.example", RECORD).unwrap()).unwrap();
    assert!(!record.contains("well-known"), "{record}");
    assert_eq!(
        sandbox
            .run(&["plan", "--detailed-exitcode", "inventory"])
            .code,
        0
    );
}

#[test]
fn a_missing_owner_fails_that_host_alone_and_touches_none_of_its_files() {
    let sandbox = Sandbox::fleet();
    assert_eq!(sandbox.run(&["apply", "--yes", "inventory"]).code, 0);
    let before = sandbox
        .read_host_file("b.example", SERVER_NAME_YAML)
        .unwrap();
    sandbox.write(
        "inventory/host_vars/b.example.yaml",
        "matrix_fqdn: chat.b.example\nsynapse_group: no-such-group-here\n",
    );
    sandbox.write(
        "inventory/host_vars/c.example.yaml",
        "registration: closed\n",
    );

    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 1);
    // What apply reports after the plan it showed.
    let (_, outcome) = apply.stdout.split_once(" hosts.\n\n").unwrap();
    insta::assert_snapshot!(outcome);
    assert_eq!(
        sandbox
            .read_host_file("b.example", SERVER_NAME_YAML)
            .unwrap(),
        before
    );
    let registration = sandbox
        .read_host_file("c.example", "/etc/matrix-synapse/conf.d/registration.yaml")
        .unwrap();
    assert!(
        String::from_utf8(registration)
            .unwrap()
            .contains("enable_registration: false")
    );
}

#[test]
fn a_directory_where_a_file_belongs_blocks_only_that_host() {
    let sandbox = Sandbox::fleet();
    std::fs::create_dir_all(sandbox.host_file("c.example", WELLKNOWN_SERVER)).unwrap();
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 1);
    assert!(
        apply.stdout.contains(
            "FAILED c.example (local, root inventory/../hosts/c.example)\n    /var/www/matrix/.well-known/matrix/server is a directory, not a regular file"
        ),
        "{}",
        apply.stdout
    );
    assert!(
        apply
            .stdout
            .ends_with("on 2 of 3 hosts. 1 host failed: c.example.\n"),
        "{}",
        apply.stdout
    );
    assert!(
        sandbox
            .read_host_file("a.example", SERVER_NAME_YAML)
            .is_some()
    );
    assert_eq!(sandbox.host_files("c.example"), Vec::<String>::new());
}

#[test]
fn apply_without_a_terminal_needs_yes_and_touches_nothing() {
    let sandbox = Sandbox::fleet();
    let run = sandbox.run(&["apply", "inventory"]);
    insta::assert_snapshot!(run.transcript());
    assert!(sandbox.host_files("a.example").is_empty());
}

#[test]
fn limit_selects_by_name_glob_or_group() {
    let sandbox = Sandbox::fleet();
    let hosts = |limit: &str| -> Vec<String> {
        let run = sandbox.run(&["plan", "--json", "inventory", "--limit", limit]);
        assert_eq!(run.code, 0, "{}", run.transcript());
        let parsed: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        parsed["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|host| host["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(hosts("a.example"), ["a.example"]);
    assert_eq!(hosts("eu"), ["b.example"]);
    assert_eq!(hosts("[ac].example"), ["a.example", "c.example"]);
    assert_eq!(hosts("c.example,eu"), ["b.example", "c.example"]);
    // Exclusion and intersection, as Ansible writes them.
    assert_eq!(hosts("!eu"), ["a.example", "c.example"]);
    assert_eq!(hosts("*.example:!a.example"), ["b.example", "c.example"]);
    assert_eq!(hosts("*.example:&eu"), ["b.example"]);
    assert_eq!(hosts("all:&eu:!b.example"), Vec::<String>::new());
    let unknown_excluded = sandbox.run(&["plan", "inventory", "--limit", "all:!b.exmple"]);
    assert_eq!(
        unknown_excluded.code,
        1,
        "{}",
        unknown_excluded.transcript()
    );
    assert!(
        unknown_excluded
            .stderr
            .contains("--limit `b.exmple` matches no host or group"),
        "{}",
        unknown_excluded.stderr
    );
    let unknown = sandbox.run(&["plan", "inventory", "--limit", "b.exmple"]);
    insta::assert_snapshot!(unknown.transcript());
}

#[test]
fn json_plan_has_a_versioned_stable_shape() {
    let sandbox = Sandbox::fleet();
    assert_eq!(
        sandbox
            .run(&["apply", "--yes", "inventory", "--limit", "a.example"])
            .code,
        0
    );
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "registration: closed\n",
    );
    let run = sandbox.run(&[
        "plan",
        "--json",
        "inventory",
        "--limit",
        "a.example,b.example",
    ]);
    assert_eq!(run.code, 0);
    let parsed: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(parsed["format_version"], 1);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn colour_follows_the_flag() {
    let sandbox = Sandbox::fleet();
    let always = sandbox.run(&["--color", "always", "plan", "inventory"]);
    assert!(always.stdout.contains("\x1b[32m+"), "{}", always.stdout);
    let never = sandbox.run(&["--color", "never", "plan", "inventory"]);
    assert!(!never.stdout.contains('\x1b'));
    // Not a terminal: auto means no colour.
    assert!(!sandbox.run(&["plan", "inventory"]).stdout.contains('\x1b'));
}

#[test]
fn files_that_already_match_are_recorded_so_they_can_be_removed_later() {
    let sandbox = Sandbox::fleet();
    // The host already has exactly the rendered files, but no record.
    assert_eq!(
        sandbox.run(&["render", "inventory", "--out", "hosts"]).code,
        0
    );
    let plan = sandbox.run(&[
        "plan",
        "--detailed-exitcode",
        "inventory",
        "--limit",
        "a.example",
    ]);
    assert_eq!(plan.code, 2, "{}", plan.transcript());
    insta::assert_snapshot!(plan.transcript());
    assert_eq!(sandbox.run(&["apply", "--yes", "inventory"]).code, 0);
    assert!(sandbox.read_host_file("a.example", RECORD).is_some());
    assert_eq!(
        sandbox
            .run(&["plan", "--detailed-exitcode", "inventory"])
            .code,
        0
    );

    sandbox.write(
        "inventory/group_vars/all.yaml",
        "synapse_group: root\nhost_commands: false\nwellknown_enabled: false\n",
    );
    assert_eq!(sandbox.run(&["apply", "--yes", "inventory"]).code, 0);
    assert_eq!(sandbox.read_host_file("a.example", WELLKNOWN_SERVER), None);
}

#[test]
fn delegation_modes_decide_the_server_file_and_srv_prints_the_record() {
    let sandbox = Sandbox::fleet();
    sandbox.write("inventory/host_vars/a.example.yaml", "delegation: srv\n");
    sandbox.write("inventory/host_vars/b.example.yaml", "delegation: none\n");
    let plan = sandbox.run(&["plan", "inventory", "--limit", "a.example,b.example"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    let (_, notes) = plan
        .stdout
        .split_once("Notes (for you to do; matrixctl cannot):\n")
        .unwrap();
    insta::assert_snapshot!(notes);
    assert_eq!(sandbox.run(&["apply", "--yes", "inventory"]).code, 0);
    assert_eq!(sandbox.read_host_file("a.example", WELLKNOWN_SERVER), None);
    assert_eq!(sandbox.read_host_file("b.example", WELLKNOWN_SERVER), None);
    assert!(
        sandbox
            .read_host_file("c.example", WELLKNOWN_SERVER)
            .is_some()
    );
    let client = String::from_utf8(
        sandbox
            .read_host_file("b.example", WELLKNOWN_CLIENT)
            .unwrap(),
    )
    .unwrap();
    assert!(client.contains("\"https://b.example/\""), "{client}");
    // Converged, the text plan no longer repeats them; JSON keeps them.
    let again = sandbox.run(&["plan", "inventory"]);
    assert!(!again.stdout.contains("Notes (for you"), "{}", again.stdout);
    let json = sandbox.run(&["plan", "--json", "inventory"]);
    assert!(json.stdout.contains("_matrix-fed._tcp"), "{}", json.stdout);
}

#[test]
fn local_hosts_alone_keep_no_ssh_directory() {
    let sandbox = Sandbox::fleet();
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert!(
        !sandbox.control_dir().exists(),
        "a run without SSH hosts made the kept connections' directory"
    );
}
