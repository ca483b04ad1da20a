//! The Matrix Authentication Service in front of a homeserver that may
//! already have users: its accounts would be unknown to MAS, so the plan
//! refuses until the operator says they were moved (syn2mas), and a new
//! homeserver gets MAS without being asked (the booted test in
//! elementx.rs, and the golden case element-x).

use crate::support::{Sandbox, TEST_MASTER_KEY};

#[test]
fn mas_is_not_put_in_front_of_existing_users_until_they_were_moved() {
    let sandbox = Sandbox::empty();
    sandbox.write(
        "inventory/hosts.yaml",
        "hosts:\n  team.example:\n    connection: local\n    root: ../hosts/team.example\n",
    );
    sandbox.write(
        "inventory/group_vars/all.yaml",
        "synapse_group: root\nmas_group: root\nhost_commands: false\n\
         webserver: nginx\ndatabase: {engine: postgres}\n",
    );
    sandbox.write("inventory/secrets/master.key", TEST_MASTER_KEY);
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());

    let mas = format!(
        "mas:\n  version: \"1.22.0\"\n  sha256: \"{}\"\n",
        "0".repeat(64)
    );
    sandbox.write("inventory/host_vars/team.example.yaml", &mas);
    let refused = sandbox.run(&["plan", "--summary", "inventory"]);
    assert_ne!(refused.code, 0, "{}", refused.transcript());
    insta::assert_snapshot!(refused.transcript());

    sandbox.write(
        "inventory/host_vars/team.example.yaml",
        &format!("{mas}  syn2mas: true\n"),
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    let read = |path: &str| {
        String::from_utf8(sandbox.read_host_file("team.example", path).unwrap()).unwrap()
    };
    assert!(read("/etc/matrix-synapse/conf.d/mas.yaml").contains("enabled: true"));
    assert!(
        read("/etc/matrix-synapse/conf.d/registration.yaml").contains("enable_registration: false")
    );
    assert!(read("/etc/mas/config.yaml").contains("homeserver: \"team.example\""));
    assert_eq!(sandbox.plan_exit_code(None), 0);
}
