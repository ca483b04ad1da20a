//! Homeservers sharing a machine, on local hosts: each customer's own
//! paths, the machine's shared files once, one plan and one apply per
//! machine, customers coming and going without the others moving, and a
//! single-customer host taking a second customer.

use std::os::unix::fs::MetadataExt;

use crate::support::{Sandbox, TEST_MASTER_KEY};

const MACHINE: &str = "m1.hosting.example";

/// A machine (a local directory) with the customers `customers` on it, and
/// c.example on a machine of its own; nginx and the firewall on all.
fn machine_with(customers: &[&str]) -> Sandbox {
    let sandbox = Sandbox::empty();
    sandbox.write("inventory/hosts.yaml", &hosts_yaml(customers, None));
    sandbox.write(
        "inventory/group_vars/all.yaml",
        "synapse_group: root\nhost_commands: false\nwebserver: nginx\nfirewall: nftables\n",
    );
    sandbox.write("inventory/secrets/master.key", TEST_MASTER_KEY);
    sandbox
}

/// hosts.yaml with `customers` on the machine, `single` keeping a single
/// host's layout.
fn hosts_yaml(customers: &[&str], single: Option<&str>) -> String {
    let mut text = format!(
        "machines:\n  {MACHINE}:\n    connection: local\n    root: ../hosts/{MACHINE}\nhosts:\n"
    );
    for customer in customers {
        text.push_str(&format!("  {customer}:\n    machine: {MACHINE}\n"));
        if single == Some(*customer) {
            text.push_str("    layout: single\n");
        }
    }
    text.push_str("  c.example:\n    connection: local\n    root: ../hosts/c.example\n");
    text
}

/// Each file of the machine with its inode: a file that was rewritten
/// (renamed into place) has a new one.
fn inodes(sandbox: &Sandbox) -> Vec<(String, u64)> {
    sandbox
        .managed_files(MACHINE)
        .into_iter()
        .map(|path| {
            let inode = std::fs::metadata(sandbox.host_file(MACHINE, &path))
                .unwrap()
                .ino();
            (path, inode)
        })
        .collect()
}

#[test]
fn a_machine_is_planned_and_applied_once_for_all_its_customers() {
    let sandbox = machine_with(&["a.example", "b.example"]);
    let plan = sandbox.run(&["plan", "--summary", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    insta::assert_snapshot!(plan.transcript());

    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert!(
        apply.stdout.contains(&format!(
            "{MACHINE}: applied (29 added, 0 changed, 0 removed)"
        )),
        "{}",
        apply.stdout
    );
    // Each customer has its own Synapse, on its own address, behind its
    // own site; the firewall is the machine's, once.
    let listener = |customer: &str| {
        let path = format!("/etc/matrix-synapse-{customer}/conf.d/listeners.yaml");
        String::from_utf8(sandbox.read_host_file(MACHINE, &path).unwrap()).unwrap()
    };
    let (a, b) = (listener("a-example"), listener("b-example"));
    assert!(a.contains("bind_addresses: [\"127."), "{a}");
    assert_ne!(a, b, "two customers listen on one address");
    for customer in ["a-example", "b-example"] {
        let site = format!("/etc/nginx/conf.d/matrix-{customer}.conf");
        assert!(sandbox.read_host_file(MACHINE, &site).is_some(), "{site}");
    }
    let record = String::from_utf8(
        sandbox
            .read_host_file(MACHINE, "/var/lib/matrixctl/state")
            .unwrap(),
    )
    .unwrap();
    assert!(
        record
            .contains(" synapse@a.example /etc/matrix-synapse-a-example/conf.d/server_name.yaml\n")
    );
    assert!(
        record.contains(" firewall /etc/nftables.conf\n"),
        "{record}"
    );

    // Where a customer's own path comes from, and that the inventory wins.
    sandbox.write(
        &format!("inventory/machine_vars/{MACHINE}.yaml"),
        "max_upload_size: 20M\n",
    );
    let explained = sandbox.run(&[
        "vars",
        "a.example",
        "--inventory",
        "inventory",
        "--explain",
        "synapse_config_dir",
    ]);
    insta::assert_snapshot!("explain_per_customer", explained.transcript());
    let explained = sandbox.run(&[
        "vars",
        "b.example",
        "--inventory",
        "inventory",
        "--explain",
        "max_upload_size",
    ]);
    insta::assert_snapshot!("explain_machine_vars", explained.transcript());
    sandbox.write(&format!("inventory/machine_vars/{MACHINE}.yaml"), "");

    // The customer's checklist is its own, as on a machine of its own.
    let onboard = sandbox.run(&["onboard", "b.example", "--inventory", "inventory"]);
    assert_eq!(onboard.code, 0, "{}", onboard.transcript());
    assert!(
        onboard.stdout.contains("matrix.b.example"),
        "{}",
        onboard.stdout
    );
    assert!(!onboard.stdout.contains("a.example"), "{}", onboard.stdout);

    let listed = sandbox.run(&["machines", "--offline", "inventory"]);
    insta::assert_snapshot!("machines_offline", listed.transcript());
    // Looked at (this machine, as the machine is a directory here): its
    // memory and disk; nothing runs, as nothing is managed but files.
    let looked = sandbox.run(&["machines", "inventory", "--json"]);
    assert_eq!(looked.code, 0, "{}", looked.transcript());
    let looked: serde_json::Value = serde_json::from_str(&looked.stdout).unwrap();
    assert_eq!(
        looked["machines"][0]["customers"],
        serde_json::json!(["a.example", "b.example"])
    );
    assert!(looked["machines"][0]["memory_total_kib"].as_u64().unwrap() > 0);
    assert!(looked["machines"][0]["disk_available_kib"].is_u64());

    let again = sandbox.run(&["plan", "--detailed-exitcode", "inventory"]);
    assert_eq!(again.code, 0, "{}", again.transcript());
    assert!(
        again
            .stdout
            .ends_with("Plan: 0 to add, 0 to change, 0 to remove on 0 of 2 hosts.\n")
    );
}

#[test]
fn customers_come_and_go_without_the_others_moving() {
    let sandbox = machine_with(&["a.example", "b.example"]);
    assert_eq!(sandbox.run(&["apply", "--yes", "inventory"]).code, 0);
    let before = inodes(&sandbox);

    let added = sandbox.run(&[
        "host",
        "add",
        "d.example",
        "--machine",
        MACHINE,
        "--inventory",
        "inventory",
    ]);
    assert_eq!(added.code, 0, "{}", added.transcript());
    // Naming one customer plans its whole machine: the others' files are
    // not mistaken for files to remove.
    let plan = sandbox.run(&["plan", "--summary", "inventory", "--limit", "d.example"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    insta::assert_snapshot!("customer_added", plan.transcript());
    assert!(!plan.stdout.contains(" - "), "{}", plan.stdout);
    assert_eq!(
        sandbox
            .run(&["apply", "--yes", "inventory", "--limit", "d.example"])
            .code,
        0
    );
    let after: Vec<(String, u64)> = inodes(&sandbox)
        .into_iter()
        .filter(|(path, _)| !path.contains("d-example"))
        .collect();
    assert_eq!(before, after, "a file of another customer was rewritten");

    let removed = sandbox.run(&["host", "remove", "d.example", "--inventory", "inventory"]);
    insta::assert_snapshot!("host_remove_on_a_machine", removed.transcript());
    let plan = sandbox.run(&["plan", "--summary", "inventory"]);
    insta::assert_snapshot!("customer_removed", plan.transcript());
    assert_eq!(sandbox.run(&["apply", "--yes", "inventory"]).code, 0);
    assert_eq!(before, inodes(&sandbox));
}

#[test]
fn a_single_customer_host_takes_a_second_customer_without_moving() {
    // a.example was a host of its own, on the machine's directory.
    let sandbox = machine_with(&[]);
    sandbox.write(
        "inventory/hosts.yaml",
        &format!(
            "hosts:\n  a.example:\n    connection: local\n    root: ../hosts/{MACHINE}\n  c.example:\n    connection: local\n    root: ../hosts/c.example\n"
        ),
    );
    assert_eq!(sandbox.run(&["apply", "--yes", "inventory"]).code, 0);
    let before = inodes(&sandbox);

    // It moves onto a machine of hosts.yaml, keeping a single host's
    // layout, and b.example joins it.
    sandbox.write(
        "inventory/hosts.yaml",
        &hosts_yaml(&["a.example", "b.example"], Some("a.example")),
    );
    let plan = sandbox.run(&["plan", "--summary", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    insta::assert_snapshot!("second_customer", plan.transcript());
    assert_eq!(sandbox.run(&["apply", "--yes", "inventory"]).code, 0);
    let kept: Vec<(String, u64)> = inodes(&sandbox)
        .into_iter()
        .filter(|(path, _)| before.iter().any(|(was, _)| was == path))
        .collect();
    assert_eq!(before, kept, "a file of the first customer was rewritten");
}

#[test]
fn a_machine_s_customers_share_one_turn_server_and_its_secret() {
    let sandbox = machine_with(&["a.example", "b.example"]);
    sandbox.write(
        &format!("inventory/machine_vars/{MACHINE}.yaml"),
        "turn:\n  host: turn.m1.hosting.example\n",
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    let secret_of = |path: &str, key: &str| {
        let text = String::from_utf8(sandbox.read_host_file(MACHINE, path).unwrap()).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {path}:\n{text}"))
            .trim_matches('"')
            .to_string()
    };
    let coturn = secret_of("/etc/turnserver.conf", "static-auth-secret=");
    for customer in ["a-example", "b-example"] {
        let path = format!("/etc/matrix-synapse-{customer}/conf.d/turn.yaml");
        assert_eq!(secret_of(&path, "turn_shared_secret: "), coturn, "{path}");
    }
    // Derived for the machine: not the secret either customer would have
    // on a machine of its own.
    let record = String::from_utf8(
        sandbox
            .read_host_file(MACHINE, "/var/lib/matrixctl/state")
            .unwrap(),
    )
    .unwrap();
    assert!(record.contains(" turn /etc/turnserver.conf\n"), "{record}");
    let own = Sandbox::empty();
    own.write(
        "inventory/hosts.yaml",
        "hosts:\n  a.example:\n    connection: local\n    root: ../hosts/a.example\n",
    );
    own.write(
        "inventory/group_vars/all.yaml",
        "synapse_group: root\nhost_commands: false\nturn:\n  host: turn.m1.hosting.example\n",
    );
    own.write("inventory/secrets/master.key", TEST_MASTER_KEY);
    assert_eq!(own.run(&["apply", "--yes", "inventory"]).code, 0);
    let alone = String::from_utf8(
        own.read_host_file("a.example", "/etc/turnserver.conf")
            .unwrap(),
    )
    .unwrap();
    assert!(
        !alone.contains(&coturn),
        "the machine's secret is a.example's own"
    );
    // And the plan shows neither.
    let plan = sandbox.run(&["plan", "inventory"]);
    assert!(!plan.stdout.contains(&coturn), "{}", plan.stdout);
}

#[test]
fn a_port_of_a_customer_s_own_service_is_not_shared_with_another() {
    let sandbox = machine_with(&["a.example", "b.example"]);
    // Heisenbridge's identd (113/tcp) is each customer's own service; the
    // web server's ports are the machine's.
    sandbox.write(
        &format!("inventory/machine_vars/{MACHINE}.yaml"),
        "bridges:\n  heisenbridge:\n    identd: true\n",
    );
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 1, "{}", plan.transcript());
    assert!(
        plan.stderr
            .contains("ports overlap: 113 tcp (heisenbridge@a.example: Heisenbridge identd"),
        "{}",
        plan.stderr
    );
}

#[test]
fn each_customer_s_bridges_are_its_own() {
    let sandbox = machine_with(&["a.example", "b.example"]);
    sandbox.write(
        &format!("inventory/machine_vars/{MACHINE}.yaml"),
        "bridges:\n  heisenbridge: {}\n",
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    let read = |path: &str| {
        String::from_utf8(sandbox.read_host_file(MACHINE, path).unwrap_or_default()).unwrap()
    };
    let mut addresses = Vec::new();
    for (customer, short) in [("a.example", "a-example"), ("b.example", "b-example")] {
        // The bridge listens on the customer's own address, where the
        // customer's Synapse reaches it.
        let env = read(&format!("/etc/heisenbridge-{short}/heisenbridge.env"));
        let address = env
            .split("--listen-address ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("{env}"))
            .to_string();
        assert!(
            address.starts_with("127.") && address != "127.0.0.1",
            "{env}"
        );
        let registration = read(&format!(
            "/etc/matrix-synapse-{short}/appservices/heisenbridge.yaml"
        ));
        assert!(
            registration.contains(&format!("url: \"http://{address}:9898\"")),
            "{customer}: {registration}"
        );
        let listeners = read(&format!(
            "/etc/matrix-synapse-{short}/conf.d/listeners.yaml"
        ));
        assert!(
            listeners.contains(&format!("[\"{address}\"]")),
            "{listeners}"
        );
        addresses.push(address);
    }
    assert_ne!(addresses[0], addresses[1]);
}

/// Caddy on a shared machine: one Caddyfile (the machine's global
/// options) importing a file of sites per customer, which Caddy takes.
#[cfg(feature = "host-tests")]
#[test]
fn caddy_takes_a_caddyfile_per_customer_under_the_machine_s() {
    let sandbox = machine_with(&["a.example", "b.example"]);
    sandbox.write(
        &format!("inventory/machine_vars/{MACHINE}.yaml"),
        "webserver: caddy\n",
    );
    let render = sandbox.run(&["render", "inventory", "--out", "out"]);
    assert_eq!(render.code, 0, "{}", render.transcript());
    let caddy = sandbox.path().join(format!("out/{MACHINE}/etc/caddy"));
    let main = std::fs::read_to_string(caddy.join("Caddyfile")).unwrap();
    assert!(
        main.ends_with("import \"matrixctl/*.caddyfile\"\n"),
        "{main}"
    );
    for customer in ["a-example", "b-example"] {
        assert!(
            caddy
                .join(format!("matrixctl/{customer}.caddyfile"))
                .is_file()
        );
    }
    let validated = std::process::Command::new("caddy")
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(caddy.join("Caddyfile"))
        .env("HOME", sandbox.path())
        .env("XDG_DATA_HOME", sandbox.path().join("caddy-data"))
        .env("XDG_CONFIG_HOME", sandbox.path().join("caddy-config"))
        .output()
        .expect("caddy runs (apt-get install caddy)");
    assert!(
        validated.status.success(),
        "{}",
        String::from_utf8_lossy(&validated.stderr)
    );
}

/// One homeserver over three local machines: its database's machine,
/// its own, its workers'. `machines` says what each carries; a database
/// machine that fails leaves the homeserver's and the workers' machines
/// not started (they need it first); once it applies, one apply brings
/// all three up, `--limit` naming the workers' machine plans the whole
/// homeserver, and the next plan is clean.
#[test]
fn a_homeserver_spread_over_machines_is_applied_in_order() {
    let sandbox = Sandbox::empty();
    sandbox.write(
        "inventory/hosts.yaml",
        "hosts:\n  big.example:\n    connection: local\n    root: ../hosts/big.example\n    private_address: 10.0.0.1\n\
         machines:\n\
         \x20 db.big.example:\n    connection: local\n    root: ../hosts/db.big.example\n    private_address: 10.0.0.2\n\
         \x20 workers.big.example:\n    connection: local\n    root: ../hosts/workers.big.example\n    private_address: 10.0.0.3\n",
    );
    sandbox.write(
        "inventory/group_vars/all.yaml",
        "synapse_group: root\nhost_commands: false\nwebserver: nginx\nfirewall: nftables\n\
         synapse_install: venv\ndatabase:\n  machine: db.big.example\n\
         synapse_workers:\n  - {name: client1, kind: client, machine: workers.big.example}\n",
    );
    sandbox.write("inventory/secrets/master.key", TEST_MASTER_KEY);
    let listed = sandbox.run(&["machines", "--offline", "inventory"]);
    assert_eq!(listed.code, 0, "{}", listed.transcript());
    insta::assert_snapshot!(listed.stdout);

    // Something in the way on the database's machine: nothing after it starts.
    let blocked = sandbox
        .path()
        .join("hosts/db.big.example/etc/postgresql/15/main/pg_hba.conf");
    std::fs::create_dir_all(blocked.join("in-the-way")).unwrap();
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_ne!(apply.code, 0, "{}", apply.transcript());
    for (host, needs) in [
        ("big.example", "db.big.example"),
        ("workers.big.example", "big.example"),
    ] {
        assert!(
            apply.stdout.contains(&format!(
                "{host}: not started: {needs}, which it needs first, was not applied"
            )),
            "{}",
            apply.transcript()
        );
    }
    assert!(sandbox.managed_files("big.example").is_empty());

    std::fs::remove_dir_all(&blocked).unwrap();
    let limited = sandbox.run(&[
        "plan",
        "--summary",
        "inventory",
        "--limit",
        "workers.big.example",
    ]);
    assert_eq!(limited.code, 0, "{}", limited.transcript());
    for host in ["big.example", "db.big.example", "workers.big.example"] {
        assert!(limited.stdout.contains(host), "{}", limited.stdout);
    }
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert!(
        sandbox
            .read_host_file(
                "workers.big.example",
                "/etc/matrix-synapse/workers/client1.yaml"
            )
            .is_some()
    );
    assert!(
        sandbox
            .read_host_file("db.big.example", "/etc/postgresql/15/main/pg_hba.conf")
            .is_some()
    );
    assert_eq!(sandbox.plan_exit_code(None), 0);
}

/// A homeserver that already signs with a key Synapse made is not spread
/// over machines behind the operator's back: one key for every machine
/// would replace it. The plan refuses until the key is given and the
/// change acknowledged; then every machine gets that very key.
#[test]
fn spreading_a_homeserver_keeps_the_signing_key_synapse_made() {
    let sandbox = Sandbox::empty();
    let alone = "hosts:\n  big.example:\n    connection: local\n    root: ../hosts/big.example\n    private_address: 10.0.0.1\n";
    sandbox.write("inventory/hosts.yaml", alone);
    sandbox.write(
        "inventory/group_vars/all.yaml",
        "synapse_group: root\nhost_commands: false\nsynapse_install: venv\n",
    );
    sandbox.write("inventory/secrets/master.key", TEST_MASTER_KEY);
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    // What Synapse's --generate-keys made on the host.
    let made = "ed25519 a_AbCd VGhpcyBpcyBub3QgYSByZWFsIHNpZ25pbmcga2V5IGF0IGFsbA\n";
    sandbox.write(
        "hosts/big.example/etc/matrix-synapse/homeserver.signing.key",
        made,
    );

    sandbox.write(
        "inventory/hosts.yaml",
        &format!(
            "{alone}machines:\n  workers.big.example:\n    connection: local\n    root: ../hosts/workers.big.example\n    private_address: 10.0.0.3\n"
        ),
    );
    sandbox.write(
        "inventory/host_vars/big.example.yaml",
        "database: {host: 10.0.0.9}\n\
         synapse_workers:\n  - {name: client1, kind: client, machine: workers.big.example}\n",
    );
    let refused = sandbox.run(&["plan", "--summary", "inventory"]);
    assert_ne!(refused.code, 0, "{}", refused.transcript());
    insta::assert_snapshot!(refused.transcript());

    sandbox.write(
        "inventory/host_vars/big.example.yaml",
        &format!(
            "database: {{host: 10.0.0.9}}\n\
             synapse_workers:\n  - {{name: client1, kind: client, machine: workers.big.example}}\n\
             synapse_signing_key_change_acknowledged: true\n\
             secrets:\n  signing_key: \"{}\"\n",
            made.trim()
        ),
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert!(
        !apply.stdout.contains("VGhpcyBpcyBub3Qg"),
        "the key printed: {}",
        apply.stdout
    );
    for host in ["big.example", "workers.big.example"] {
        let key = sandbox
            .read_host_file(host, "/etc/matrix-synapse/homeserver.signing.key")
            .unwrap();
        assert_eq!(String::from_utf8(key).unwrap(), made, "{host}");
    }
}
