//! Faults injected at every step of the host's transaction, over real SSH:
//! the controller killed, its ssh master killed, the host's session (and
//! its `sh`) killed. The transaction runs detached on the host, so after
//! each fault the host ends whole (every file new: none of these faults
//! makes the apply fail), the report matches it, and the next plan is clean.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::sshd::SshFleet;
use crate::support::{BIN, kill_group, wait_until};

/// The transaction's steps, in order, as `mc_step` names them.
const STEPS: [&str; 9] = [
    "locked",
    "staged",
    "backed-up",
    "journaled",
    "first-renamed",
    "renamed",
    "validated",
    "handled",
    "recorded",
];

#[derive(Clone, Copy, Debug)]
/// What is killed.
enum Killed {
    Controller,
    SshMaster,
    HostSession,
}

const STATE: &str = "/var/lib/matrixctl";

fn paused_apply(fleet: &SshFleet, step: &str) -> Child {
    use std::os::unix::process::CommandExt;
    Command::new(BIN)
        .args(["apply", "--yes", "inventory"])
        .current_dir(fleet.sandbox.path())
        .env("MATRIXCTL_TEST_PAUSE_AT", format!("{step}:2"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("matrixctl runs")
}

/// The one run on the host, by its file stem (runs/ID.*).
fn the_run(fleet: &SshFleet) -> Option<String> {
    let runs = fleet
        .sandbox
        .host_file("a.example", &format!("{STATE}/runs"));
    std::fs::read_dir(runs)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "paused"))
        .map(|path| path.with_extension("").display().to_string())
}

fn faults_at_every_step(killed: Killed) {
    let fleet = SshFleet::start(&["a.example"], &[]);
    let sandbox = &fleet.sandbox;
    let first = fleet.run(&["apply", "--yes", "inventory"]);
    assert_eq!(first.code, 0, "{}", first.transcript());

    let mut previous_run = None;
    for (index, step) in STEPS.iter().enumerate() {
        let case = format!("{killed:?} killed at {step}");
        // Three files change each round.
        sandbox.write(
            "inventory/host_vars/a.example.yaml",
            &format!(
                "registration: {}\nmatrix_fqdn: chat{index}.a.example\n",
                if index % 2 == 0 { "closed" } else { "token" }
            ),
        );
        let _ = std::fs::remove_dir_all(sandbox.path().join("rendered"));
        assert_eq!(
            fleet
                .run(&["render", "inventory", "--out", "rendered"])
                .code,
            0
        );

        let mut child = paused_apply(&fleet, step);
        wait_until(&format!("{case}: the host never reached the step"), || {
            the_run(&fleet).is_some_and(|run| Some(run) != previous_run)
        });
        let run = the_run(&fleet).unwrap();
        previous_run = Some(run.clone());
        let report = match killed {
            Killed::Controller => {
                kill_group(&mut child);
                None
            }
            Killed::SshMaster => {
                assert!(
                    fleet.host("a.example").kill_masters() > 0,
                    "{case}: no master to kill"
                );
                Some(child.wait_with_output().unwrap())
            }
            Killed::HostSession => {
                fleet.host("a.example").kill_sessions();
                Some(child.wait_with_output().unwrap())
            }
        };
        // The host finishes by itself.
        wait_until(&format!("{case}: the run never finished"), || {
            std::path::Path::new(&format!("{run}.code")).exists()
        });
        assert_eq!(
            std::fs::read_to_string(format!("{run}.code")).unwrap(),
            "0\n",
            "{case}: the run failed: {}",
            std::fs::read_to_string(format!("{run}.err")).unwrap_or_default()
        );

        // No mixed host at rest: every file is the new one.
        for path in sandbox.managed_files("a.example") {
            let rendered =
                std::fs::read(sandbox.path().join("rendered/a.example").join(&path[1..]))
                    .unwrap_or_else(|_| panic!("{case}: {path} is on the host but not rendered"));
            assert_eq!(
                sandbox.read_host_file("a.example", &path).unwrap(),
                rendered,
                "{case}: {path} is not the new file"
            );
        }
        for leftover in ["journal", "backup", "revert.saved"] {
            assert!(
                !sandbox
                    .host_file("a.example", &format!("{STATE}/{leftover}"))
                    .exists(),
                "{case}: {leftover} left behind"
            );
        }

        // The report is what happened.
        if let Some(report) = report {
            let stdout = String::from_utf8_lossy(&report.stdout);
            assert_eq!(report.status.code(), Some(0), "{case}: {stdout}");
            assert!(stdout.contains("a.example: applied ("), "{case}: {stdout}");
        }

        // The next plan is clean; it says how a run nobody watched ended.
        let plan = fleet.run(&["plan", "--detailed-exitcode", "inventory"]);
        assert_eq!(plan.code, 0, "{case}: {}", plan.transcript());
        let unwatched = plan.stdout.contains(
            "an earlier apply finished on the host after matrixctl stopped waiting: it was applied",
        );
        assert_eq!(
            unwatched,
            matches!(killed, Killed::Controller),
            "{case}: {}",
            plan.stdout
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_controller_killed_at_every_step_leaves_the_host_whole() {
    faults_at_every_step(Killed::Controller);
}

#[test]
fn the_ssh_master_killed_at_every_step_leaves_the_host_whole_and_the_report_true() {
    faults_at_every_step(Killed::SshMaster);
}

#[test]
fn the_hosts_session_killed_at_every_step_leaves_the_host_whole_and_the_report_true() {
    faults_at_every_step(Killed::HostSession);
}

#[test]
fn a_killed_controller_leaves_no_control_directory_behind_and_names_its_user() {
    let fleet = SshFleet::start(&["a.example"], &[]);
    let sandbox = &fleet.sandbox;
    // Sockets go here (a short path), so this test sees only its own.
    let runtime = sandbox.path().join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    let control_dirs = || -> Vec<String> {
        std::fs::read_dir(&runtime)
            .unwrap()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().to_string())
            .filter(|name| name.starts_with("mctl-"))
            .collect()
    };
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(BIN)
            .args(["apply", "--yes", "inventory"])
            .current_dir(sandbox.path())
            .env("MATRIXCTL_TEST_PAUSE_AT", "staged:10")
            // Masters that end with the run, in a directory of the run's own.
            .env("MATRIXCTL_PERSIST", "0")
            .env("XDG_RUNTIME_DIR", &runtime)
            .env_remove("USER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap()
    };
    wait_until("the host never reached the step", || {
        the_run(&fleet).is_some()
    });
    let owner =
        std::fs::read_to_string(sandbox.host_file("a.example", &format!("{STATE}/lock.owner")))
            .unwrap();
    assert!(
        owner.starts_with("matrixctl apply by root@"),
        "without USER, the lock names the uid's user: {owner}"
    );
    kill_group(&mut child);
    assert_eq!(control_dirs().len(), 1, "the killed run's directory");
    assert!(
        !fleet.host("a.example").masters().is_empty(),
        "the killed run's master outlives it"
    );

    // The next run sweeps it (and tells its master to exit) before its own.
    let plan = fleet.run_with_env(
        &["plan", "inventory"],
        &[
            ("XDG_RUNTIME_DIR", runtime.to_str().unwrap()),
            ("MATRIXCTL_PERSIST", "0"),
        ],
    );
    // (The killed run's transaction is still paused on the host: busy.)
    assert_eq!(plan.code, 1, "{}", plan.transcript());
    assert!(
        plan.stdout
            .contains("busy: an apply is running on this host right now")
    );
    assert!(control_dirs().is_empty(), "{:?}", control_dirs());
    wait_until("the stale master never exited", || {
        fleet.host("a.example").masters().is_empty()
    });
}
