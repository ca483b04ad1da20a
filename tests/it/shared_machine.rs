//! Many customers on one machine, for real: a booted machine carrying
//! five homeservers (each its own Synapse, on the machine's PostgreSQL and
//! nginx, with certificates from pebble), and one outside homeserver on a
//! booted host of its own, resolved by the test's DNS. Every customer
//! federates with the outside server and with its neighbour, signs a user
//! up with its own token and passes `check`; no customer's account reads
//! another's signing key or opens another's database; a sixth customer
//! joins without any of the five restarting, and one leaves with its
//! database and media kept. Then the outside server's machine takes a
//! customer of its own without the outside server moving.

use std::time::{Duration, Instant};

use crate::booted::{BootedHost, assert_plan_says};
use crate::federation::{Desk, Outside, TestDns, TestNet, readme_section_and_commands};
use crate::pebble::Pebble;
use crate::support::Sandbox;

const MACHINE: &str = "m1.hosting.example";
const OUTSIDE: &str = "outside.example";

/// The inventory: `customers` on the machine, the outside server on its
/// own host.
fn write_hosts(sandbox: &Sandbox, machine: &BootedHost, outside: &BootedHost, customers: &[&str]) {
    let mut hosts = format!(
        "machines:\n  {MACHINE}:\n    ssh: root@{}:22\nhosts:\n",
        machine.address
    );
    for customer in customers {
        hosts.push_str(&format!("  {customer}:\n    machine: {MACHINE}\n"));
    }
    hosts.push_str(&format!(
        "  {OUTSIDE}:\n    ssh: root@{}:22\n",
        outside.address
    ));
    sandbox.write("inventory/hosts.yaml", &hosts);
}

/// `ssh_options` reaching `host`.
fn ssh_options(host: &BootedHost) -> String {
    let (key, known_hosts) = host.ssh_files();
    format!(
        "ssh_options:\n  identity_file: {}\n  known_hosts_file: {}\n",
        key.display(),
        known_hosts.display()
    )
}

fn unit(customer: &str) -> String {
    format!("matrix-synapse-{}", customer.replace('.', "-"))
}

fn short(customer: &str) -> String {
    customer.replace('.', "-")
}

#[test]
fn five_customers_share_a_machine_federate_and_cannot_reach_each_other() {
    let machine = BootedHost::up("mcshared");
    let outside_host = BootedHost::up("mcoutside");
    let five = [
        "c1.example",
        "c2.example",
        "c3.example",
        "c4.example",
        "c5.example",
    ];
    let sixth = "c6.example";
    let mut names: Vec<(String, String)> = Vec::new();
    for customer in five.iter().chain([&sixth]) {
        names.push((customer.to_string(), machine.address.clone()));
        names.push((format!("matrix.{customer}"), machine.address.clone()));
    }
    names.push((OUTSIDE.to_string(), outside_host.address.clone()));
    names.push((format!("matrix.{OUTSIDE}"), outside_host.address.clone()));
    // The customer that joins the outside server's machine, last.
    let joining = "c7.example";
    names.push((joining.to_string(), outside_host.address.clone()));
    names.push((format!("matrix.{joining}"), outside_host.address.clone()));
    let net = TestNet::up(
        &[&machine, &outside_host],
        &[(&machine, &outside_host)],
        names.clone(),
    );
    let (services, root) = (&net.services, &net.root);
    for host in [&machine, &outside_host] {
        host.copy_wheels(&["synapse"]);
    }
    machine.copy_wheels(&["heisenbridge"]);

    let sandbox = Sandbox::empty();
    write_hosts(&sandbox, &machine, &outside_host, &five);
    sandbox.write(
        &format!("inventory/machine_vars/{MACHINE}.yaml"),
        &ssh_options(&machine),
    );
    sandbox.write(
        &format!("inventory/host_vars/{OUTSIDE}.yaml"),
        &ssh_options(&outside_host),
    );
    // Two customers back up, each into its own repository (a directory
    // of the machine's here; another machine in real life), and run an
    // IRC bridge each.
    for customer in &five[..2] {
        sandbox.write(
            &format!("inventory/host_vars/{customer}.yaml"),
            &format!(
                "backup:\n  repository: /srv/backups/{customer}\n\
                 bridges:\n  heisenbridge: {{}}\nheisenbridge_wheels: /srv/wheels\n"
            ),
        );
    }
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &format!(
            "host_commands: true\nsynapse_install: venv\nsynapse_wheels: /srv/wheels\n\
             webserver: nginx\nregistration: token\nserve_base_domain: true\n{}",
            net.homeserver_vars("")
        ),
    );
    sandbox.write(
        "inventory/secrets/master.key",
        "booted shared-machine test master key, not a secret anywhere\n",
    );
    sandbox.chmod("inventory/secrets/master.key", 0o600);

    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert_plan_says(
        &plan.stdout,
        &[
            "  [c1.example]\n",
            "  + database synapse-c1-example  (role synapse@c1.example, owner synapse-c1-example, UTF8, collation C)",
            "  + user matrix-synapse-c5-example  (role synapse@c5.example",
            "  + package postgresql  (roles postgresql@c1.example,",
            "  + certificate matrix.c3.example  (role acme@c3.example, ACME)",
            "  [the machine]\n",
        ],
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(
        apply.code,
        0,
        "{}\n{}",
        apply.transcript(),
        machine.run("journalctl -n 60 --no-pager")
    );

    let outside = Outside {
        root: root.clone(),
        addresses: names.clone(),
    };
    for customer in five.iter().chain([&OUTSIDE]) {
        let versions = outside.json(&format!(
            "https://matrix.{customer}/_matrix/client/versions"
        ));
        assert!(versions["versions"].is_array(), "{customer}: {versions}");
        let keys = outside.json(&format!(
            "https://matrix.{customer}:8448/_matrix/key/v2/server"
        ));
        assert_eq!(keys["server_name"], *customer, "{keys}");
    }

    let machines = sandbox.run(&["machines", "inventory"]);
    assert_eq!(machines.code, 0, "{}", machines.transcript());
    assert!(
        machines
            .stdout
            .starts_with(&format!("{MACHINE}: 5 customers, 5 of 5 running\n  customers: c1.example, c2.example, c3.example, c4.example, c5.example\n  memory: ")),
        "{}",
        machines.stdout
    );

    // Each bridge is its customer's: its own unit and account, reached
    // by its own Synapse (the bot answers to its registration's token).
    for customer in &five[..2] {
        let unit = format!("heisenbridge-{}", short(customer));
        assert_eq!(
            machine.run(&format!("systemctl is-active {unit}")),
            "active"
        );
        assert_eq!(
            machine.run(&format!("systemctl show -p User --value {unit}")),
            unit
        );
        let token = machine.run(&format!(
            "sed -n 's/^as_token: *//p' /etc/matrix-synapse-{}/appservices/heisenbridge.yaml",
            short(customer)
        ));
        let whoami = outside.call(
            "GET",
            &format!("https://matrix.{customer}/_matrix/client/v3/account/whoami"),
            Some(token.trim_matches('"')),
            None,
        );
        assert_eq!(
            whoami.json["user_id"],
            format!("@heisenbridge:{customer}").as_str(),
            "{}",
            whoami.said
        );
    }

    // Backups, per customer (before `check`, which fails a host with
    // none): each its own archive, key and timer, and
    // each verifies against its own live data.
    for customer in &five[..2] {
        let made = sandbox.run(&["backup", customer, "--inventory", "inventory"]);
        assert_eq!(made.code, 0, "{}", made.transcript());
        let verified = sandbox.run(&["backup", "verify", customer, "--inventory", "inventory"]);
        assert_eq!(verified.code, 0, "{}", verified.transcript());
        assert!(
            verified
                .stdout
                .contains(&format!("synapse-{}", short(customer))),
            "{}",
            verified.stdout
        );
    }
    machine.run(&format!(
        "systemctl is-enabled matrixctl-backup-{}.timer",
        short(five[0])
    ));

    // `check`, from outside, for every customer and the outside server.
    let dns = format!("{services}:53");
    let checked = sandbox.run(&[
        "check",
        "inventory",
        "--dns",
        &dns,
        "--ca-file",
        root.to_str().unwrap(),
    ]);
    assert_eq!(checked.code, 0, "{}", checked.transcript());

    // Customers cannot reach each other: not the signing key, not the
    // config's secrets, not the media, not the database.
    let (c1, c2) = (five[0], five[1]);
    for path in [
        format!("/etc/matrix-synapse-{}/homeserver.signing.key", short(c2)),
        format!("/etc/matrix-synapse-{}/conf.d/secrets.yaml", short(c2)),
    ] {
        let read = machine.ssh(&format!("runuser -u {} -- cat {path}", unit(c1)));
        assert!(!read.status.success(), "{} read {path}", unit(c1));
        assert!(
            String::from_utf8_lossy(&read.stderr).contains("Permission denied"),
            "{}",
            String::from_utf8_lossy(&read.stderr)
        );
    }
    let listed = machine.ssh(&format!(
        "runuser -u {} -- ls /var/lib/matrix-synapse-{}/media",
        unit(c1),
        short(c2)
    ));
    assert!(
        !listed.status.success(),
        "{} listed another's media",
        unit(c1)
    );
    let password = machine.run(&format!(
        "sed -n 's/^ *password: *//p' /etc/matrix-synapse-{}/conf.d/database.yaml",
        short(c1)
    ));
    let password = password.trim_matches('"');
    let psql = |database: &str| {
        machine.ssh(&format!(
            "cd / && PGPASSWORD='{password}' psql -XAt -h 127.0.0.1 -U synapse-{} -d {database} -c 'SELECT 1'",
            short(c1)
        ))
    };
    let own = psql(&format!("synapse-{}", short(c1)));
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    let other = psql(&format!("synapse-{}", short(c2)));
    assert!(
        !other.status.success(),
        "a customer opened another's database"
    );
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("permission denied for database"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );

    // Federation: a room on c1 that the outside server and every other
    // customer of the machine join, and a room on the outside server that
    // every customer joins.
    let admin = |server_name: &str| outside.admin(&sandbox, server_name);
    let tokens: Vec<(&str, String)> = five
        .iter()
        .chain([&OUTSIDE])
        .map(|server_name| (*server_name, admin(server_name)))
        .collect();
    let token_of = |server_name: &str| {
        tokens
            .iter()
            .find(|(name, _)| *name == server_name)
            .map(|(_, token)| token.clone())
            .unwrap()
    };
    let create_room = |server_name: &str| -> String {
        let room = outside.call(
            "POST",
            &format!("https://matrix.{server_name}/_matrix/client/v3/createRoom"),
            Some(&token_of(server_name)),
            Some(r#"{"preset": "public_chat", "room_alias_name": "lobby"}"#),
        );
        room.json["room_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{}", room.said))
            .to_string()
    };
    let join = |server_name: &str, room_server: &str, room_id: &str| {
        let started = Instant::now();
        loop {
            let joined = outside.call(
                "POST",
                &format!(
                    "https://matrix.{server_name}/_matrix/client/v3/join/%23lobby%3A{room_server}"
                ),
                Some(&token_of(server_name)),
                Some("{}"),
            );
            if joined.json["room_id"] == room_id {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{server_name} could not join #lobby:{room_server}: {}",
                joined.said
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    };
    let on_c1 = create_room(c1);
    let on_outside = create_room(OUTSIDE);
    for server_name in five.iter().skip(1).chain([&OUTSIDE]) {
        join(server_name, c1, &on_c1);
    }
    for server_name in five {
        join(server_name, OUTSIDE, &on_outside);
    }
    let members = outside.call(
        "GET",
        &format!("https://matrix.{OUTSIDE}/_matrix/client/v3/rooms/{on_outside}/joined_members"),
        Some(&token_of(OUTSIDE)),
        None,
    );
    for customer in five {
        assert!(
            members.json["joined"][format!("@admin:{customer}")].is_object(),
            "{customer}: {}",
            members.said
        );
    }

    // Each customer signs a user up with its own token, and only its own.
    for customer in five {
        let token = sandbox.run(&["token", "create", customer, "--uses", "1"]);
        assert_eq!(token.code, 0, "{}", token.transcript());
        let token = token.stdout.lines().last().unwrap().trim().to_string();
        let register = |server_name: &str| -> serde_json::Value {
            let url = format!("https://matrix.{server_name}/_matrix/client/v3/register");
            let start = outside.call(
                "POST",
                &url,
                None,
                Some(
                    &serde_json::json!({"username": "alice", "password": "a long new passphrase"})
                        .to_string(),
                ),
            );
            let session = start.json["session"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut last = serde_json::Value::Null;
            for auth in [
                serde_json::json!({"type": "m.login.registration_token", "token": token, "session": session}),
                serde_json::json!({"type": "m.login.dummy", "session": session}),
            ] {
                last = outside
                    .call(
                        "POST",
                        &url,
                        None,
                        Some(&serde_json::json!({"username": "alice", "password": "a long new passphrase", "auth": auth}).to_string()),
                    )
                    .json;
                if last["user_id"].is_string() || last["errcode"].is_string() {
                    break;
                }
            }
            last
        };
        if customer == c1 {
            // c1's token means nothing to c2.
            assert!(
                register(c2)["user_id"].is_null(),
                "c1's token signed up on c2"
            );
        }
        assert_eq!(
            register(customer)["user_id"],
            format!("@alice:{customer}").as_str()
        );
    }

    // A sixth customer: none of the five restarts.
    let pids = || -> Vec<String> {
        five.iter()
            .map(|customer| {
                machine.run(&format!(
                    "systemctl show -p MainPID --value {}",
                    unit(customer)
                ))
            })
            .collect()
    };
    let before = pids();
    let six: Vec<&str> = five.iter().copied().chain([sixth]).collect();
    write_hosts(&sandbox, &machine, &outside_host, &six);
    let added = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(added.code, 0, "{}", added.transcript());
    assert!(
        !added.stdout.contains("restart synapse for c1.example"),
        "{}",
        added.stdout
    );
    assert_eq!(before, pids(), "adding a customer restarted another");
    let versions = outside.json(&format!("https://matrix.{sixth}/_matrix/client/versions"));
    assert!(versions["versions"].is_array(), "{versions}");

    // One leaves: its Synapse stops and its site goes; its database and
    // media stay.
    let gone = five[4];
    let remaining: Vec<&str> = six.iter().copied().filter(|c| *c != gone).collect();
    write_hosts(&sandbox, &machine, &outside_host, &remaining);
    let removed = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(removed.code, 0, "{}", removed.transcript());
    assert!(
        removed.stdout.contains(&format!("stop synapse for {gone}")),
        "{}",
        removed.stdout
    );
    assert_ne!(
        machine.run(&format!("systemctl is-active {} || true", unit(gone))),
        "active"
    );
    machine.run(&format!(
        "test ! -e /etc/nginx/conf.d/matrix-{}.conf",
        short(gone)
    ));
    machine.run(&format!(
        "test -d /var/lib/matrix-synapse-{}/media",
        short(gone)
    ));
    assert_eq!(
        machine.run(&format!(
            "cd / && runuser -u postgres -- psql -XAtc \"SELECT count(*) FROM pg_database WHERE datname = 'synapse-{}'\"",
            short(gone)
        )),
        "1"
    );
    let machines = sandbox.run(&["machines", "inventory"]);
    assert!(
        machines
            .stdout
            .starts_with(&format!("{MACHINE}: 5 customers, 5 of 5 running\n  customers: c1.example, c2.example, c3.example, c4.example, c6.example\n")),
        "{}",
        machines.stdout
    );
    let converged = sandbox.run(&["plan", "--detailed-exitcode", "inventory"]);
    assert_eq!(converged.code, 0, "{}", converged.transcript());

    // A server that was a homeserver of its own takes a second customer:
    // it keeps a single host's layout, and nothing of it moves.
    let outside_state = || {
        (
            outside_host.run("systemctl show -p MainPID --value matrix-synapse"),
            outside_host
                .run("stat -c '%n %i' /etc/matrix-synapse/conf.d/* /etc/nginx/conf.d/matrix.conf"),
        )
    };
    let before = outside_state();
    let mut hosts = format!(
        "machines:\n  {MACHINE}:\n    ssh: root@{}:22\n  m2.hosting.example:\n    ssh: root@{}:22\nhosts:\n",
        machine.address, outside_host.address
    );
    for customer in &remaining {
        hosts.push_str(&format!("  {customer}:\n    machine: {MACHINE}\n"));
    }
    hosts.push_str(&format!(
        "  {OUTSIDE}:\n    machine: m2.hosting.example\n    layout: single\n  {joining}:\n    machine: m2.hosting.example\n"
    ));
    sandbox.write("inventory/hosts.yaml", &hosts);
    sandbox.write(
        "inventory/machine_vars/m2.hosting.example.yaml",
        &ssh_options(&outside_host),
    );
    let joined = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(joined.code, 0, "{}", joined.transcript());
    assert_eq!(before, outside_state(), "the first customer moved");
    let versions = outside.json(&format!("https://matrix.{joining}/_matrix/client/versions"));
    assert!(versions["versions"].is_array(), "{versions}");
    let keys = outside.json(&format!(
        "https://matrix.{OUTSIDE}:8448/_matrix/key/v2/server"
    ));
    assert_eq!(keys["server_name"], OUTSIDE, "{keys}");
    let again = sandbox.run(&["apply", "--yes", "inventory"]);
    assert!(
        again.stdout.contains("No changes to apply."),
        "{}",
        again.transcript()
    );
}

/// The README's walk, "Several customers on one machine", as written
/// there, on a booted machine, after the first walk's `init` and edit
/// (its own test runs that walk): the README's hosts.yaml, then each
/// command. Only the machine's address, the test's ACME CA and DNS, and
/// offline wheels differ from a newcomer's world.
#[test]
fn the_readme_walk_puts_two_customers_on_one_machine_and_takes_one_away() {
    let (section, walk) = readme_section_and_commands("## Several customers on one machine");
    let hosts_yaml = section
        .split("```yaml\n# hosts.yaml\n")
        .nth(1)
        .and_then(|block| block.split("```").next())
        .expect("the README's hosts.yaml");
    assert!(walk.len() >= 5, "{walk:?}");

    let machine = BootedHost::up("mcreadme2");
    let pebble = Pebble::serve(&machine);
    let gateway = format!("{}.1", machine.address.rsplit_once('.').unwrap().0);
    let mut records = Vec::new();
    for name in [
        "family.example",
        "matrix.family.example",
        "club.example",
        "matrix.club.example",
    ] {
        pebble.resolve(name, &machine.address);
        records.push(format!("--host-record={name},{}", machine.address));
    }
    let _dns = TestDns::serve(&gateway, &records);
    let trust = tempfile::tempdir().unwrap();
    std::fs::copy(&pebble.endpoint_ca, trust.path().join("ca.pem")).unwrap();
    let root = pebble.root(trust.path());
    machine.copy_in(trust.path(), "/etc/ssl/acme-test");
    machine.copy_wheels(&["synapse"]);

    let desk = Desk::new(&machine, &machine.address);
    let mut transcript = String::new();
    let (code, said) = desk.run("matrixctl init inv", "");
    assert_eq!(code, 0, "{said}");
    desk.edit_all_yaml(&pebble.directory);
    std::fs::write(
        desk.dir.path().join("inv/hosts.yaml"),
        hosts_yaml.replace("203.0.113.20", &machine.address),
    )
    .unwrap();
    for line in &walk {
        let (code, said) = desk.run(line, "yes\n");
        transcript.push_str(&said);
        assert_eq!(code, 0, "`{line}` exited {code}:\n{transcript}");
    }
    // `apply` ran on a terminal, which ends its lines with CR LF.
    let transcript = transcript.replace("\r\n", "\n");
    assert!(
        transcript.contains("m1.hosting.example: 2 customers, 2 of 2 running\n"),
        "{transcript}"
    );
    assert!(
        transcript.contains("  [club.example]\n") && transcript.contains("  [family.example]\n"),
        "{transcript}"
    );
    assert!(
        transcript.contains("stop synapse for club.example"),
        "{transcript}"
    );
    let outside = Outside {
        root,
        addresses: vec![("matrix.family.example".into(), machine.address.clone())],
    };
    let keys = outside.json("https://matrix.family.example:8448/_matrix/key/v2/server");
    assert_eq!(keys["server_name"], "family.example", "{keys}");
    assert_ne!(
        machine.run("systemctl is-active matrix-synapse-club-example || true"),
        "active"
    );
    assert_eq!(
        machine.run("systemctl is-active matrix-synapse-family-example"),
        "active"
    );
}
