//! Fleet behaviour that does not depend on the transport: grouped plan
//! output and staged rollout. Local hosts keep these fast.

use crate::support::{FILES_PER_HOST, Sandbox};

#[test]
fn a_change_shared_by_hosts_prints_once_headed_by_them() {
    let sandbox = Sandbox::fleet();
    assert_eq!(sandbox.run(&["apply", "--yes", "inventory"]).code, 0);
    // Every host's registration file changes the same way; c.example's
    // server name file changes too, differently from anyone else's.
    sandbox.write(
        "inventory/group_vars/all.yaml",
        "synapse_group: root\nhost_commands: false\nregistration: closed\n",
    );
    sandbox.write(
        "inventory/host_vars/c.example.yaml",
        "matrix_fqdn: chat.c.example\n",
    );
    let plan = sandbox.run(&[
        "plan",
        "--limit",
        "a.example,b.example,c.example",
        "inventory",
    ]);
    insta::assert_snapshot!(plan.transcript());
}

#[test]
fn a_host_list_too_long_to_read_becomes_a_count_and_a_limit_pattern() {
    let sandbox = Sandbox::empty();
    let mut hosts = String::from("hosts:\n");
    for index in 0..7 {
        hosts.push_str(&format!(
            "  h{index}.example:\n    connection: local\n    root: ../hosts/h{index}\n"
        ));
    }
    sandbox.write("inventory/hosts.yaml", &hosts);
    sandbox.write(
        "inventory/group_vars/all.yaml",
        "synapse_group: root\nhost_commands: false\nwellknown_enabled: false\n",
    );
    sandbox.write(
        "inventory/secrets/master.key",
        crate::support::TEST_MASTER_KEY,
    );
    let plan = sandbox.run(&["plan", "inventory"]);
    assert!(
        plan.stdout.contains(
            "7 hosts: h0.example,h1.example,h2.example,h3.example,h4.example,h5.example,h6.example\n  + /etc/matrix-synapse/conf.d/"
        ),
        "{}",
        plan.stdout
    );
}

#[test]
fn a_batch_that_fails_too_much_stops_the_rollout() {
    let sandbox = Sandbox::empty();
    let mut hosts = String::from("hosts:\n");
    for name in ["a", "b", "c", "d", "e"] {
        hosts.push_str(&format!(
            "  {name}.example:\n    connection: local\n    root: ../hosts/{name}.example\n"
        ));
    }
    sandbox.write("inventory/hosts.yaml", &hosts);
    sandbox.write(
        "inventory/group_vars/all.yaml",
        "synapse_group: root\nhost_commands: false\n",
    );
    sandbox.write(
        "inventory/secrets/master.key",
        crate::support::TEST_MASTER_KEY,
    );
    // a.example, in the first batch, cannot be applied.
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "synapse_group: no-such-group-here\n",
    );

    let apply = sandbox.run(&[
        "apply",
        "--yes",
        "--batch",
        "2",
        "--max-fail",
        "0",
        "inventory",
    ]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    let (_, outcome) = apply.stdout.split_once(" hosts.\n\n").unwrap();
    insta::assert_snapshot!(outcome);
    assert_eq!(
        sandbox.managed_files("b.example").len(),
        FILES_PER_HOST,
        "b.example shared the first batch"
    );
    for host in ["c.example", "d.example", "e.example"] {
        assert!(
            sandbox.host_files(host).is_empty(),
            "{host} should never have started"
        );
    }

    // Without a failure budget of zero, every batch runs.
    let json = sandbox.run(&["apply", "--yes", "--json", "--batch", "40%", "inventory"]);
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(parsed["summary"]["hosts_failed"], 1);
    assert_eq!(parsed["summary"]["hosts_not_started"], 0);
    assert_eq!(sandbox.managed_files("e.example").len(), FILES_PER_HOST);
}

/// `status` puts the host that could not be read first, then those with
/// something to apply (edited files named as such), then those as the
/// inventory says; JSON carries the same.
#[test]
fn status_shows_the_fleet_worst_first() {
    let sandbox = Sandbox::fleet();
    assert_eq!(sandbox.run(&["apply", "inventory", "--yes"]).code, 0);
    // Someone edits a managed file on b.example; c.example's vars change.
    let edited = sandbox.host_file("b.example", "/etc/matrix-synapse/conf.d/media.yaml");
    std::fs::write(&edited, "max_upload_size: 1G\n").unwrap();
    sandbox.write(
        "inventory/host_vars/c.example.yaml",
        "max_upload_size: 20M\n",
    );
    // A host whose record is not one cannot be planned.
    sandbox.write(
        "inventory/hosts.yaml",
        &(std::fs::read_to_string(sandbox.path().join("inventory/hosts.yaml")).unwrap()
            + "  d.example:\n    connection: local\n    root: ../hosts/d.example\n"),
    );
    sandbox.write("hosts/d.example/var/lib/matrixctl/state", "not a record\n");
    let run = sandbox.run(&["status", "inventory", "--color", "never"]);
    insta::assert_snapshot!(run.transcript());
    let run = sandbox.run(&["status", "inventory", "--json"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let order: Vec<&str> = json["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|host| host["name"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["d.example", "b.example", "c.example", "a.example"]);
    assert_eq!(json["hosts"][1]["drifted_files"], 1);
    assert_eq!(json["hosts"][2]["pending_changes"], 1);
}
