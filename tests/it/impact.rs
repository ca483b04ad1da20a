//! The impact summary: what a plan does to people, above the diffs.

use crate::support::Sandbox;

#[test]
fn the_impact_summary_comes_first() {
    let sandbox = Sandbox::fleet();
    sandbox.write(
        "inventory/group_vars/all.yaml",
        "synapse_group: root\nfirewall: nftables\nhost_commands: true\n\
         synapse_validate_command: \"true\"\nsynapse_restart_command: \"true\"\n\
         firewall_validate_command: \"true\"\nfirewall_load_command: \"true\"\n\
         firewall_save_command: \"true\"\nfirewall_revert_command: \"true\"\n\
         postmoogle_restart_command: \"true\"\npostmoogle_group: root\n",
    );
    let applied = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(applied.code, 0, "{}", applied.transcript());

    // a.example opens registration; b.example turns federation off;
    // c.example gets the email bridge, which needs port 25.
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "registration: open\nopen_registration_acknowledged: true\n",
    );
    sandbox.write(
        "inventory/host_vars/b.example.yaml",
        "max_upload_size: 200M\nfederation: closed\n",
    );
    sandbox.write(
        "inventory/host_vars/c.example.yaml",
        "bridges:\n  postmoogle: {}\n",
    );
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    let (impact, _) = plan.stdout.split_once("\n\n").unwrap();
    insta::assert_snapshot!(impact);

    // Back again: the comparison is with what the last apply recorded, and
    // closing registration or a port is said too (or not at all).
    assert_eq!(sandbox.run(&["apply", "--yes", "inventory"]).code, 0);
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "registration: closed\n",
    );
    sandbox.write(
        "inventory/host_vars/b.example.yaml",
        "federation: [c.example]\n",
    );
    sandbox.write("inventory/host_vars/c.example.yaml", "");
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    let (impact, _) = plan.stdout.split_once("\n\n").unwrap();
    insta::assert_snapshot!("back_again", impact);
}
