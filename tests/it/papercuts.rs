//! The CLI's smaller promises: a summary-only plan, `show` of a saved
//! plan, errors as JSON under `--json`, the impact block in JSON, and
//! `-v`'s per-call timings; every command naming the inventory the
//! same way.

use crate::support::{FILES_PER_HOST, Sandbox, files_under};

#[test]
fn a_summary_plan_lists_the_changes_without_their_contents() {
    let sandbox = Sandbox::fleet();
    let full = sandbox.run(&["plan", "inventory"]);
    let summary = sandbox.run(&["plan", "--summary", "inventory"]);
    assert_eq!(summary.code, 0, "{}", summary.transcript());
    // Every line of the summary is a line of the full plan, in order, and
    // no content (an indented diff line) is among them.
    let mut full_lines = full.stdout.lines();
    for line in summary.stdout.lines() {
        assert!(
            full_lines.any(|full| full == line),
            "`{line}` is not in the full plan"
        );
        assert!(
            !line.starts_with("      "),
            "content in the summary: {line}"
        );
    }
    assert!(
        summary
            .stdout
            .contains("  + /etc/matrix-synapse/conf.d/server_name.yaml")
    );
    assert!(summary.stdout.len() * 3 < full.stdout.len());
    insta::assert_snapshot!("plan_summary", summary.stdout);
}

#[test]
fn show_prints_a_saved_plans_summary_without_touching_a_host() {
    let sandbox = Sandbox::fleet();
    let plan = sandbox.run(&["plan", "inventory", "--out", "saved.plan"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    let summary = sandbox.run(&["plan", "--summary", "inventory"]);
    let json = sandbox.run(&["plan", "--json", "inventory"]);
    // The inventory is gone (the hosts were never made): show reads the
    // file alone.
    std::fs::remove_dir_all(sandbox.path().join("inventory")).unwrap();
    assert!(!sandbox.path().join("hosts").exists());
    let shown = sandbox.run(&["show", "saved.plan"]);
    assert_eq!(shown.code, 0, "{}", shown.transcript());
    let (shown_text, applies_line) = shown.stdout.rsplit_once("Saved for ").unwrap();
    assert_eq!(shown_text, summary.stdout);
    assert!(
        applies_line.contains("`matrixctl apply saved.plan`"),
        "{applies_line}"
    );
    // The JSON is the plan's, without contents.
    let shown_json: serde_json::Value =
        serde_json::from_str(&sandbox.run(&["show", "--json", "saved.plan"]).stdout).unwrap();
    let mut expected: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    for host in expected["hosts"].as_array_mut().unwrap() {
        for change in host["changes"].as_array_mut().unwrap() {
            change["diff"] = serde_json::Value::Null;
        }
    }
    assert_eq!(shown_json, expected);

    // A file from before `show` existed: a clear error.
    let text = std::fs::read_to_string(sandbox.path().join("saved.plan")).unwrap();
    let mut old: serde_json::Value = serde_json::from_str(&text).unwrap();
    old.as_object_mut().unwrap().remove("report");
    sandbox.write("old.plan", &old.to_string());
    let refused = sandbox.run(&["show", "old.plan"]);
    insta::assert_snapshot!("show_old_saved_plan", refused.transcript());
}

#[test]
fn with_json_errors_are_json_on_stdout_too() {
    let sandbox = Sandbox::fleet();
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "registraton: open\nmax_upload_size: lots\n",
    );
    for args in [
        &["plan", "--json", "inventory"][..],
        &["apply", "--yes", "--json", "inventory"],
    ] {
        let run = sandbox.run(args);
        assert_eq!(run.code, 1, "{}", run.transcript());
        let document: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", run.stdout));
        assert_eq!(document["errors"].as_array().unwrap().len(), 2);
        if args[0] == "plan" {
            insta::assert_snapshot!("json_errors", run.stdout);
        }
    }
}

#[test]
fn the_json_plan_carries_the_impact_block() {
    // The example's firewall opens ports: an impact on every host.
    let sandbox = Sandbox::empty();
    crate::support::copy_dir(
        &crate::support::repo().join("inventory.example"),
        &sandbox.path().join("inventory"),
    );
    std::fs::remove_dir_all(sandbox.path().join("inventory/.hosts")).ok();
    let run = sandbox.run(&["plan", "--json", "inventory"]);
    let document: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let text = sandbox.run(&["plan", "inventory"]).stdout;
    let impact = document["impact"].as_array().unwrap();
    assert!(!impact.is_empty());
    for entry in impact {
        let effect = entry["effect"].as_str().unwrap();
        assert!(
            text.contains(&format!("  {effect}: ")),
            "{effect} not in the text plan"
        );
        assert!(!entry["hosts"].as_array().unwrap().is_empty());
    }
}

#[test]
fn verbose_runs_show_each_hosts_calls_and_times_and_change_nothing_else() {
    let sandbox = Sandbox::fleet();
    let quiet = sandbox.run(&["plan", "inventory"]);
    let verbose = sandbox.run(&["-v", "plan", "inventory"]);
    assert_eq!(verbose.stdout, quiet.stdout);
    for host in ["a.example", "b.example", "c.example"] {
        assert!(
            verbose
                .stderr
                .lines()
                .any(|line| line.starts_with(&format!("{host}: "))
                    && line.contains(" ms  mc_observe_paths /etc/matrix-synapse/conf.d/")),
            "{}",
            verbose.stderr
        );
        assert!(
            verbose.stderr.contains(&format!("{host}: "))
                && verbose.stderr.contains(" ms  the whole run ("),
            "{}",
            verbose.stderr
        );
    }
    // Apply traces its transaction too, and still works.
    let apply = sandbox.run(&["-v", "apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert!(
        apply.stderr.contains("a.example: ") && apply.stderr.contains(" ms  mc_commit "),
        "{}",
        apply.stderr
    );
    assert!(!apply.stderr.contains(crate::support::TEST_MASTER_KEY));
    assert_eq!(sandbox.plan_exit_code(Some("a.example")), 0);
}

/// Hosts are loaded and rendered on every core (src/parallel.rs); what an
/// operator sees must not depend on it: errors in host order, the same
/// bytes every run, and each host rendered as when it is rendered alone.
#[test]
fn many_hosts_render_and_fail_in_host_order_whatever_the_threads() {
    let sandbox = Sandbox::fleet();
    let mut hosts = String::from("hosts:\n");
    for index in 0..60 {
        hosts.push_str(&format!(
            "  h{index:02}.example:\n    connection: local\n    root: ../hosts/h{index:02}\n"
        ));
    }
    sandbox.write("inventory/hosts.yaml", &hosts);
    // Per-host vars, so no two hosts render the same files.
    for index in 0..60 {
        sandbox.write(
            &format!("inventory/host_vars/h{index:02}.example.yaml"),
            &format!("max_upload_size: {}M\n", index + 1),
        );
    }
    let all = sandbox.run(&["render", "inventory", "--out", "all"]);
    assert_eq!(all.code, 0, "{}", all.transcript());
    for host in ["h00.example", "h31.example", "h59.example"] {
        let alone = sandbox.run(&["render", "inventory", "--limit", host, "--out", "alone"]);
        assert_eq!(alone.code, 0, "{}", alone.transcript());
        let in_fleet = files_under(&sandbox.path().join("all").join(host));
        let by_itself = files_under(&sandbox.path().join("alone").join(host));
        assert_eq!(in_fleet, by_itself, "{host}");
        assert_eq!(in_fleet.len(), FILES_PER_HOST, "{host}");
        for file in &in_fleet {
            assert_eq!(
                std::fs::read(sandbox.path().join("all").join(host).join(&file[1..])).unwrap(),
                std::fs::read(sandbox.path().join("alone").join(host).join(&file[1..])).unwrap(),
                "{host} {file}"
            );
        }
    }

    for index in [7, 23, 59, 44] {
        sandbox.write(
            &format!("inventory/host_vars/h{index:02}.example.yaml"),
            "max_upload_size: lots\n",
        );
    }
    let first = sandbox.run(&["plan", "inventory"]);
    assert_eq!(first.code, 1, "{}", first.transcript());
    let named: Vec<&str> = first
        .stderr
        .lines()
        .filter_map(|line| line.split("host_vars/").nth(1))
        .map(|rest| &rest[..3])
        .collect();
    assert_eq!(named, ["h07", "h23", "h44", "h59"], "{}", first.stderr);
    for _ in 0..3 {
        let again = sandbox.run(&["plan", "inventory"]);
        assert_eq!(again.stderr, first.stderr);
    }
}

/// Every command finds the inventory the same way: as given (positional
/// where a command has one, or `-i DIR`), else `MATRIXCTL_INVENTORY`, else
/// the current directory when it holds hosts.yaml, else `./inventory`.
#[test]
fn every_command_names_the_inventory_the_same_way() {
    let sandbox = Sandbox::fleet();
    std::fs::rename(
        sandbox.path().join("inventory"),
        sandbox.path().join("customers"),
    )
    .unwrap();
    let ok = |run: crate::support::Run| {
        assert_eq!(run.code, 0, "{}", run.transcript());
        run
    };
    // Positional, and -i, for the commands that read hosts.
    let positional = ok(sandbox.run(&["plan", "customers"]));
    let flagged = ok(sandbox.run(&["plan", "-i", "customers"]));
    assert_eq!(positional.stdout, flagged.stdout);
    // (check reads the inventory before any request: a limit that matches
    // none of its hosts says so.)
    let check = sandbox.run(&["check", "--inventory", "customers", "--limit", "nothing*"]);
    assert!(
        check.stderr.contains("`nothing*` matches no host or group"),
        "{}",
        check.transcript()
    );
    // -i for the commands whose positional is a host.
    for args in [
        &["vars", "a.example", "-i", "customers"][..],
        &["onboard", "a.example", "-i", "customers"],
        &["render", "-i", "customers", "--out", "rendered"],
    ] {
        ok(sandbox.run(args));
    }
    // The environment, for any command.
    let env = [("MATRIXCTL_INVENTORY", "customers")];
    assert_eq!(
        ok(sandbox.run_with_env(&["plan"], &env)).stdout,
        positional.stdout
    );
    ok(sandbox.run_with_env(&["vars", "b.example"], &env));
    // From inside the inventory, nothing to name.
    let inside = ok(sandbox.run_from("customers", &["vars", "c.example"], &[]));
    assert!(inside.stdout.contains("server_name"), "{}", inside.stdout);
    ok(sandbox.run_from("customers", &["plan"], &[]));
    // Named twice, differently: a usage error.
    let twice = sandbox.run(&["plan", "customers", "-i", "elsewhere"]);
    assert_eq!(twice.code, 1, "{}", twice.transcript());
    assert!(
        twice.stderr.contains("cannot be used with"),
        "{}",
        twice.stderr
    );
    // Nowhere to be found: the error says every way to name it.
    let missing = sandbox.run(&["vars", "a.example"]);
    assert_eq!(missing.code, 1, "{}", missing.transcript());
    insta::assert_snapshot!(missing.stderr);
}
