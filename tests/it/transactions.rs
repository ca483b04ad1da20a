//! apply as a transaction per host: validators before handlers, rollback on
//! any failure, and a journal so an interrupted apply's handlers still run.
//! Validators and handlers are pointed at test programs through vars, as an
//! operator would point them at their own.

use std::time::Duration;

use crate::support::{Sandbox, crash_host_run, kill_group, wait_until};

const REGISTRATION_YAML: &str = "/etc/matrix-synapse/conf.d/registration.yaml";

/// Every file of a host with its bytes and mode, for before/after checks.
fn snapshot(sandbox: &Sandbox, host: &str) -> Vec<(String, Vec<u8>, u32)> {
    sandbox
        .managed_files(host)
        .into_iter()
        .map(|path| {
            let full = sandbox.host_file(host, &path);
            (
                path.clone(),
                std::fs::read(&full).unwrap(),
                crate::support::mode_of(&full),
            )
        })
        .collect()
}

/// A fleet whose Synapse handler appends to a log in the sandbox (and
/// fails when `fail_when` is in the new registration file).
fn fleet_with_handlers(fail_when: &str) -> Sandbox {
    let sandbox = Sandbox::fleet();
    let log = sandbox.path().join("handlers.log");
    let mut all = String::from(
        "synapse_group: root\nhost_commands: true\nsynapse_validate_command: \"true\"\n",
    );
    all.push_str(&format!(
        "synapse_restart_command: \"grep -q '{fail_when}' $(dirname {log})/hosts/*/etc/matrix-synapse/conf.d/registration.yaml 2>/dev/null && grep -l '{fail_when}' $(dirname {log})/hosts/*/etc/matrix-synapse/conf.d/registration.yaml | grep -q . && exit 1; echo restart >> {log}\"\n",
        log = log.display()
    ));
    sandbox.write("inventory/group_vars/all.yaml", &all);
    sandbox
}

#[test]
fn a_failing_handler_rolls_the_host_back_and_the_old_config_runs_again() {
    let sandbox = fleet_with_handlers("NEVER-MATCHES");
    let log = sandbox.path().join("handlers.log");
    assert_eq!(
        sandbox
            .run(&["apply", "--yes", "inventory", "--limit", "a.example"])
            .code,
        0
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "restart\n");
    let before = snapshot(&sandbox, "a.example");

    // The new configuration makes the restart fail.
    let all =
        std::fs::read_to_string(sandbox.path().join("inventory/group_vars/all.yaml")).unwrap();
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &all.replace("NEVER-MATCHES", "enable_registration: false"),
    );
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "registration: closed\n",
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    let (_, outcome) = apply.stdout.split_once(" host.\n\n").unwrap();
    insta::assert_snapshot!(outcome);
    assert_eq!(
        snapshot(&sandbox, "a.example"),
        before,
        "every file is as it was"
    );
    // The handler ran again on the restored configuration, and succeeded.
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "restart\nrestart\n");
    let plan = sandbox.run(&["plan", "inventory", "--limit", "a.example"]);
    assert!(!plan.stdout.contains("interrupted"), "{}", plan.stdout);
}

// nginx checks the configuration: with the tests of installed programs.
#[cfg(feature = "host-tests")]
#[test]
fn a_failing_validator_leaves_that_host_exactly_as_it_was_and_others_go_on() {
    let sandbox = Sandbox::fleet();
    // An operator's override of the nginx template that breaks on
    // b.example once registration closes; the real `nginx -t` catches it.
    let builtin =
        std::fs::read_to_string(crate::support::repo().join("templates/nginx/matrix.conf.j2"))
            .unwrap();
    sandbox.write(
        "roles/templates/nginx/matrix.conf.j2",
        &format!(
            "{builtin}{{% if server_name == 'b.example' and registration == 'closed' %}}this_is_not_a_directive on;\n{{% endif %}}\n"
        ),
    );
    let certificates = sandbox.path().join("certificates");
    std::fs::create_dir_all(&certificates).unwrap();
    let output = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args(["-days", "2", "-subj", "/CN=localhost", "-keyout"])
        .arg(certificates.join("key.pem"))
        .arg("-out")
        .arg(certificates.join("cert.pem"))
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(output.status.success());
    // nginx -t on the host's own file (these hosts are directories: the
    // command gets the host's root as $MATRIXCTL_ROOT).
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &format!(
            "synapse_group: root\nhost_commands: true\nwebserver: nginx\n\
             synapse_validate_command: \"true\"\nsynapse_restart_command: \"true\"\nnginx_reload_command: \"true\"\n\
             tls_certificate: {cert}\ntls_certificate_key: {key}\n\
             nginx_validate_command: |-\n\
             \x20 c=$(mktemp) && printf 'pid %s.pid; error_log stderr; events {{}} http {{ include /etc/nginx/mime.types; include %s/etc/nginx/conf.d/matrix.conf; }}' \"$c\" \"$MATRIXCTL_ROOT\" > \"$c\" && nginx -t -q -e stderr -c \"$c\"; r=$?; rm -f \"$c\"; exit $r\n",
            cert = certificates.join("cert.pem").display(),
            key = certificates.join("key.pem").display()
        ),
    );
    let roles = ["--roles", "roles"];
    let run = |args: &[&str]| sandbox.run(&[&roles[..], args].concat());
    assert_eq!(run(&["apply", "--yes", "inventory"]).code, 0);
    let before = snapshot(&sandbox, "b.example");
    let all_files_before = sandbox.host_files("b.example");

    let all =
        std::fs::read_to_string(sandbox.path().join("inventory/group_vars/all.yaml")).unwrap();
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &format!("{all}registration: closed\n"),
    );
    let apply = run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    let (_, outcome) = apply.stdout.split_once(" hosts.\n\n").unwrap();
    // nginx's messages carry a time, a pid and a temporary file name.
    let outcome: String = outcome
        .lines()
        .map(
            |line| match (line.find("[emerg]"), line.find("/tmp/tmp.")) {
                (Some(start), _) => format!("        {}", &line[start..]),
                (None, Some(start)) => format!(
                    "{}[TMP]{}",
                    &line[..start],
                    &line[start..]
                        .split_once(' ')
                        .map(|(_, rest)| format!(" {rest}"))
                        .unwrap_or_default()
                ),
                _ => line.to_string(),
            },
        )
        .map(|line| match line.find("[emerg] ") {
            Some(start) => {
                let rest = &line[start + "[emerg] ".len()..];
                let rest = rest.split_once(": ").map_or(rest, |(_, message)| message);
                format!("{}[emerg] {rest}", &line[..start])
            }
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!(outcome);
    assert_eq!(
        snapshot(&sandbox, "b.example"),
        before,
        "b.example's files are exactly as before"
    );
    // matrixctl's own runs (the result files of each apply) aside.
    let without_runs = |files: Vec<String>| -> Vec<String> {
        files
            .into_iter()
            .filter(|path| !path.starts_with("/var/lib/matrixctl/runs/"))
            .collect()
    };
    assert_eq!(
        without_runs(sandbox.host_files("b.example")),
        without_runs(all_files_before),
        "no file added or left behind"
    );
    for host in ["a.example", "c.example"] {
        let registration = sandbox.read_host_file(host, REGISTRATION_YAML).unwrap();
        assert!(String::from_utf8_lossy(&registration).contains("enable_registration: false"));
    }
}

#[test]
fn handlers_owed_by_an_interrupted_apply_run_on_the_next_one() {
    let sandbox = fleet_with_handlers("NEVER-MATCHES");
    let log = sandbox.path().join("handlers.log");
    assert_eq!(
        sandbox
            .run(&["apply", "--yes", "inventory", "--limit", "a.example"])
            .code,
        0
    );
    std::fs::remove_file(&log).unwrap();
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "registration: closed\n",
    );

    // Cut the apply after every file is in place, before the handler runs.
    let mut child = sandbox.spawn_paused_apply("a.example", "validated");
    wait_until("apply never put the file in place", || {
        let registration = sandbox
            .read_host_file("a.example", REGISTRATION_YAML)
            .unwrap();
        String::from_utf8_lossy(&registration).contains("enable_registration: false")
    });
    std::thread::sleep(Duration::from_millis(300));
    kill_group(&mut child);
    crash_host_run(&sandbox, "a.example");
    assert!(!log.exists(), "the handler must not have run yet");

    let plan = sandbox.run(&[
        "plan",
        "--detailed-exitcode",
        "inventory",
        "--limit",
        "a.example",
    ]);
    assert_eq!(
        plan.code,
        2,
        "pending handlers are pending changes: {}",
        plan.transcript()
    );
    insta::assert_snapshot!(plan.stdout);

    let apply = sandbox.run(&["apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "restart\n",
        "the owed restart ran, once"
    );
    assert_eq!(sandbox.plan_exit_code(Some("a.example")), 0);
}

#[test]
fn switching_a_role_off_runs_its_removal_handler() {
    let sandbox = Sandbox::fleet();
    let log = sandbox.path().join("handlers.log");
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &format!(
            "synapse_group: root\nhost_commands: true\nsynapse_validate_command: \"true\"\n\
             synapse_restart_command: \"true\"\n\
             heisenbridge_restart_command: 'echo restart >> {log}'\n\
             heisenbridge_stop_command: 'echo stop >> {log}'\n",
            log = log.display()
        ),
    );
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "bridges:\n  heisenbridge: {}\n",
    );
    assert_eq!(
        sandbox
            .run(&["apply", "--yes", "inventory", "--limit", "a.example"])
            .code,
        0
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "restart\n");

    sandbox.write("inventory/host_vars/a.example.yaml", "");
    let plan = sandbox.run(&["plan", "inventory", "--limit", "a.example"]);
    assert!(
        plan.stdout
            .contains("then: restart synapse, stop heisenbridge"),
        "{}",
        plan.stdout
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "restart\nstop\n");
    assert_eq!(
        sandbox.read_host_file("a.example", "/etc/heisenbridge/heisenbridge.env"),
        None
    );
}

#[test]
fn a_timeout_reports_the_apply_as_still_running_and_the_next_plan_says_how_it_ended() {
    let sandbox = Sandbox::fleet();
    sandbox.write(
        "inventory/group_vars/all.yaml",
        "synapse_group: root\nhost_commands: true\nsynapse_validate_command: \"sleep 3\"\nsynapse_restart_command: \"true\"\n",
    );
    let apply = sandbox.run(&[
        "apply",
        "--yes",
        "--timeout",
        "1",
        "inventory",
        "--limit",
        "a.example",
    ]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    assert!(
        apply.stdout.contains("a.example: STILL RUNNING on the host\n")
            && apply.stdout.contains(
                "timed out after 1 s (--timeout) waiting for the host; the apply may still finish there"
            )
            && apply.stdout.contains("1 host still running: a.example."),
        "{}",
        apply.stdout
    );
    // The host goes on by itself and commits.
    let runs = sandbox.host_file("a.example", "/var/lib/matrixctl/runs");
    wait_until("the apply never finished on the host", || {
        std::fs::read_dir(&runs).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|entry| entry.path().extension().is_some_and(|ext| ext == "code"))
        })
    });
    let plan = sandbox.run(&[
        "plan",
        "--detailed-exitcode",
        "inventory",
        "--limit",
        "a.example",
    ]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert!(
        plan.stdout.contains(
            "! an earlier apply finished on the host after matrixctl stopped waiting: it was applied"
        ),
        "{}",
        plan.stdout
    );
}
