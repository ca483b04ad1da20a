//! The CLI's smaller promises: a summary-only plan, `show` of a saved
//! plan, errors as JSON under `--json`, the impact block in JSON, and
//! `-v`'s per-call timings.

use crate::support::Sandbox;

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
