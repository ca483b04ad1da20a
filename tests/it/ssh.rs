//! plan and apply over SSH against real sshd test hosts on loopback.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sshd::SshFleet;
use crate::support::{BIN, FILES_PER_HOST, mode_of};

const SERVER_NAME_YAML: &str = "/etc/matrix-synapse/conf.d/server_name.yaml";
const REGISTRATION_YAML: &str = "/etc/matrix-synapse/conf.d/registration.yaml";
const RECORD: &str = "/var/lib/matrixctl/state";

#[test]
fn plan_and_apply_over_ssh_one_remote_command_each() {
    let fleet = SshFleet::start(&["a.example", "b.example", "c.example"], &[]);
    let sandbox = &fleet.sandbox;

    let plan = fleet.run(&["plan", "--detailed-exitcode", "inventory"]);
    assert_eq!(plan.code, 2, "{}", plan.transcript());
    assert!(plan.stdout.ends_with(&format!(
        "Plan: {} to add, 0 to change, 0 to remove on 3 of 3 hosts.\n",
        3 * FILES_PER_HOST
    )));
    for host in &fleet.hosts {
        assert_eq!(
            host.sessions(),
            1,
            "plan on {} ran more than one remote command",
            host.name
        );
    }

    let apply = fleet.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    for host in &fleet.hosts {
        // apply plans again (one command) and then applies (one more).
        assert_eq!(host.sessions(), 3, "{}", host.name);
    }

    assert_eq!(
        fleet
            .run(&["render", "inventory", "--out", "rendered"])
            .code,
        0
    );
    for host in ["a.example", "b.example", "c.example"] {
        let managed = sandbox.managed_files(host);
        assert_eq!(managed.len(), FILES_PER_HOST, "{host}: {managed:?}");
        for path in &managed {
            let rendered =
                std::fs::read(sandbox.path().join("rendered").join(host).join(&path[1..])).unwrap();
            assert_eq!(
                sandbox.read_host_file(host, path).unwrap(),
                rendered,
                "{host}{path}"
            );
        }
        assert_eq!(
            mode_of(&sandbox.host_file(host, "/etc/matrix-synapse/conf.d/secrets.yaml")),
            0o640
        );
        assert_eq!(mode_of(&sandbox.host_file(host, RECORD)), 0o600);
    }
    let again = fleet.run(&["plan", "--detailed-exitcode", "inventory"]);
    assert_eq!(again.code, 0, "{}", again.transcript());
    assert!(
        again
            .stdout
            .starts_with("No changes: a.example, b.example, c.example.\n"),
        "{}",
        again.stdout
    );
}

#[test]
fn a_down_host_and_a_changed_host_key_fail_alone() {
    let mut fleet = SshFleet::start(&["a.example", "b.example", "c.example"], &[]);
    fleet.host_mut("b.example").stop();
    let keys = fleet.authorized_keys();
    fleet.host_mut("c.example").replace_host_key(&keys);

    let apply = fleet.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    let (_, outcome) = apply.stdout.split_once("Plan: ").unwrap();
    insta::assert_snapshot!(outcome);
    assert_eq!(
        fleet.sandbox.managed_files("a.example").len(),
        FILES_PER_HOST
    );
    assert!(fleet.sandbox.host_files("c.example").is_empty());
}

#[test]
fn unknown_host_keys_are_refused_unless_accepted() {
    let fleet = SshFleet::start(&["a.example"], &[]);
    std::fs::write(fleet.sandbox.path().join("ssh/known_hosts"), "").unwrap();

    let refused = fleet.run(&["plan", "inventory"]);
    assert_eq!(refused.code, 1);
    insta::assert_snapshot!(refused.stdout);

    let accepted = fleet.run(&["plan", "--accept-new-host-keys", "inventory"]);
    assert_eq!(accepted.code, 0, "{}", accepted.transcript());
    let known = std::fs::read_to_string(fleet.sandbox.path().join("ssh/known_hosts")).unwrap();
    assert!(
        known.contains(&format!("[127.0.0.1]:{}", fleet.host("a.example").port)),
        "{known}"
    );
    // Now known: plain strict checking accepts it.
    assert_eq!(fleet.run(&["plan", "inventory"]).code, 0);
}

#[test]
fn a_changed_host_key_is_refused_even_when_accepting_new_ones() {
    let mut fleet = SshFleet::start(&["a.example"], &[]);
    let keys = fleet.authorized_keys();
    fleet.host_mut("a.example").replace_host_key(&keys);
    let refused = fleet.run(&["plan", "--accept-new-host-keys", "inventory"]);
    assert_eq!(refused.code, 1);
    assert!(refused.stdout.contains("has CHANGED"), "{}", refused.stdout);
}

#[test]
fn an_ordinary_user_applies_with_sudo_and_one_without_rights_gets_a_clear_error() {
    let fleet = SshFleet::start(&["a.example", "b.example"], &["a.example", "b.example"]);
    fleet.write_inventory(&[("a.example", "mctl-sudo"), ("b.example", "mctl-plain")]);
    let all = std::fs::read_to_string(fleet.sandbox.path().join("inventory/group_vars/all.yaml"))
        .unwrap();
    fleet.sandbox.write(
        "inventory/group_vars/all.yaml",
        &format!("{all}become: sudo\n"),
    );

    let apply = fleet.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    let (_, failure) = apply.stdout.split_once("FAILED b.example").unwrap();
    insta::assert_snapshot!(failure);
    let file = fleet.sandbox.host_file("a.example", SERVER_NAME_YAML);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().uid(),
        0,
        "written as root, through sudo"
    );
    assert!(fleet.sandbox.host_files("b.example").is_empty());
}

#[test]
fn a_second_apply_on_a_locked_host_fails_fast() {
    let fleet = SshFleet::start(&["a.example"], &[]);
    let sandbox = &fleet.sandbox;
    let first = Command::new(BIN)
        .args(["apply", "--yes", "inventory"])
        .current_dir(sandbox.path())
        .env("MATRIXCTL_TEST_PAUSE_AT", "first-renamed:4")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // The first file apply puts in place (changes go in path order).
    while sandbox
        .read_host_file("a.example", "/etc/matrix-synapse/conf.d/auth.yaml")
        .is_none()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the first apply never wrote a file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = fleet.run(&["apply", "--yes", "inventory"]);
    assert_eq!(second.code, 1, "{}", second.transcript());
    // Its plan already sees the first apply holding the lock: busy, not
    // "interrupted".
    assert!(
        second.stdout.contains(
            "    busy: an apply is running on this host right now (locked by matrixctl apply by "
        ),
        "{}",
        second.stdout
    );
    assert!(!second.stdout.contains("interrupted"), "{}", second.stdout);
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stdout)
    );
    assert_eq!(
        fleet
            .run(&["plan", "--detailed-exitcode", "inventory"])
            .code,
        0
    );
}

#[test]
fn a_saved_plan_is_refused_where_the_host_changed_since() {
    let fleet = SshFleet::start(&["a.example", "b.example", "c.example"], &[]);
    let sandbox = &fleet.sandbox;
    assert_eq!(fleet.run(&["apply", "--yes", "inventory"]).code, 0);
    let all =
        std::fs::read_to_string(sandbox.path().join("inventory/group_vars/all.yaml")).unwrap();
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &format!("{all}registration: closed\n"),
    );

    let plan = fleet.run(&["plan", "inventory", "--out", "saved.plan"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    let saved = std::fs::read_to_string(sandbox.path().join("saved.plan")).unwrap();
    assert!(
        !saved.contains("enable_registration"),
        "a saved plan holds hashes, not contents"
    );

    // Someone edits b.example by hand after the plan was made.
    std::fs::write(
        sandbox.host_file("b.example", REGISTRATION_YAML),
        "enable_registration: true\n",
    )
    .unwrap();
    let apply = fleet.run(&["apply", "saved.plan"]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    let (_, outcome) = apply
        .stdout
        .split_once("\n\n\n")
        .unwrap_or(("", &apply.stdout));
    insta::assert_snapshot!(outcome);
    for host in ["a.example", "c.example"] {
        let registration = sandbox.read_host_file(host, REGISTRATION_YAML).unwrap();
        assert!(
            String::from_utf8(registration)
                .unwrap()
                .contains("enable_registration: false")
        );
    }
    assert_eq!(
        sandbox
            .read_host_file("b.example", REGISTRATION_YAML)
            .unwrap(),
        b"enable_registration: true\n"
    );
}

#[test]
fn a_connection_cut_mid_apply_does_not_stop_it_and_the_report_is_read_from_the_host() {
    let fleet = SshFleet::start(&["a.example"], &[]);
    let sandbox = &fleet.sandbox;
    assert_eq!(fleet.run(&["apply", "--yes", "inventory"]).code, 0);
    let old_registration = sandbox
        .read_host_file("a.example", REGISTRATION_YAML)
        .unwrap();
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "registration: closed\nmatrix_fqdn: chat.a.example\n",
    );
    assert_eq!(
        fleet
            .run(&["render", "inventory", "--out", "rendered"])
            .code,
        0
    );
    let rendered = |path: &str| {
        std::fs::read(sandbox.path().join("rendered/a.example").join(&path[1..])).unwrap()
    };

    let sessions_before = fleet.host("a.example").sessions();
    let apply = Command::new(BIN)
        .args(["apply", "--yes", "inventory"])
        .current_dir(sandbox.path())
        .env("MATRIXCTL_TEST_PAUSE_AT", "first-renamed:2")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while sandbox
        .read_host_file("a.example", REGISTRATION_YAML)
        .unwrap()
        == old_registration
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "apply never committed a file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The connection and the host's `sh` die between the first rename and
    // the second. The transaction does not: it finishes, and matrixctl
    // reads its result over a new connection.
    fleet.host("a.example").kill_sessions();
    let cut = apply.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&cut.stdout);
    assert_eq!(cut.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("a.example: applied ("), "{stdout}");
    assert_eq!(
        fleet.host("a.example").sessions() - sessions_before,
        3,
        "plan, apply, and one more to read the result"
    );
    for path in [REGISTRATION_YAML, SERVER_NAME_YAML] {
        assert_eq!(
            sandbox.read_host_file("a.example", path).unwrap(),
            rendered(path),
            "{path} is the new one"
        );
    }
    assert!(
        !sandbox
            .host_files("a.example")
            .iter()
            .any(|path| path.ends_with(".matrixctl-tmp") || path.contains("/.matrixctl-staged/"))
    );
    assert_eq!(
        fleet
            .run(&["plan", "--detailed-exitcode", "inventory"])
            .code,
        0
    );
}

#[test]
fn a_host_that_never_answers_times_out_alone() {
    let fleet = SshFleet::start(&["a.example"], &[]);
    // A port that accepts connections and then says nothing at all.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        if let Ok((stream, _)) = silent.accept() {
            held.push(stream);
            std::thread::sleep(Duration::from_secs(4));
        }
    });
    let hosts = std::fs::read_to_string(fleet.sandbox.path().join("inventory/hosts.yaml")).unwrap();
    fleet.sandbox.write(
        "inventory/hosts.yaml",
        &format!("{hosts}  silent.example:\n    ssh: root@127.0.0.1:{port}\n    root: /nonexistent-never-written\n"),
    );
    let started = Instant::now();
    let plan = fleet.run(&["plan", "--timeout", "1", "inventory"]);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout was not kept"
    );
    assert_eq!(plan.code, 1, "{}", plan.transcript());
    assert!(
        plan.stdout.contains("FAILED silent.example"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("timed out"), "{}", plan.stdout);
    assert!(plan.stdout.contains("a.example\n  + "), "{}", plan.stdout);
    holder.join().unwrap();
}

#[test]
fn the_ssh_config_decides_what_ssh_leaves_out_and_the_firewall_keeps_that_port() {
    let fleet = SshFleet::start(&["a.example"], &[]);
    let sandbox = &fleet.sandbox;
    let port = fleet.host("a.example").port;
    sandbox.write(
        "ssh/config",
        &format!(
            "Host a-alias\n  HostName 127.0.0.1\n  Port {port}\n\n\
             Host a-proxied\n  HostName 127.0.0.1\n  ProxyCommand nc %h {port}\n"
        ),
    );
    let root = sandbox.path().join("hosts/a.example");
    let hosts = |alias: &str| {
        format!(
            "hosts:\n  a.example:\n    ssh: {alias}\n    root: {}\n",
            root.display()
        )
    };
    let all = |extra: &str| {
        format!(
            "synapse_group: root\nhost_commands: false\n{extra}ssh_options:\n  identity_file: ../ssh/client_key\n  known_hosts_file: ../ssh/known_hosts\n  config_file: ../ssh/config\n"
        )
    };
    sandbox.write("inventory/hosts.yaml", &hosts("a-alias"));
    sandbox.write("inventory/group_vars/all.yaml", &all(""));

    // No port and no user in `ssh:`: the config's port, and root.
    let plan = fleet.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert!(
        plan.stdout.starts_with("a.example\n  + "),
        "{}",
        plan.stdout
    );

    // The firewall keeps the port matrixctl really reaches.
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &all("firewall: nftables\n"),
    );
    let render = fleet.run(&["render", "inventory", "--out", "rendered"]);
    assert_eq!(render.code, 0, "{}", render.transcript());
    let ruleset =
        std::fs::read_to_string(sandbox.path().join("rendered/a.example/etc/nftables.conf"))
            .unwrap();
    assert!(
        ruleset.contains(&format!("tcp dport {port} accept")),
        "{ruleset}"
    );

    // Through a proxy, that port is unknown: refused until named.
    sandbox.write("inventory/hosts.yaml", &hosts("a-proxied"));
    let refused = fleet.run(&["render", "inventory", "--out", "rendered2"]);
    assert_eq!(refused.code, 1, "{}", refused.transcript());
    assert!(
        refused.stderr.contains(&format!(
            "error: matrixctl reaches a-proxied through a proxy (ssh config: proxycommand nc %h {port}), so the port its sshd listens on is unknown"
        )) && refused.stderr.contains("hint: set `firewall_ssh_port: PORT`"),
        "{}",
        refused.transcript()
    );
    // `ssh:` naming user and port leaves ssh nothing to fill in, but the
    // config still sends the connection through the proxy: the port in
    // `ssh:` is the proxy's business, not necessarily the host's sshd.
    sandbox.write(
        "inventory/hosts.yaml",
        &hosts(&format!("root@a-proxied:{port}")),
    );
    let refused = fleet.run(&["render", "inventory", "--out", "rendered4"]);
    assert_eq!(refused.code, 1, "{}", refused.transcript());
    assert!(
        refused.stderr.contains(&format!(
            "error: matrixctl reaches a-proxied through a proxy (ssh config: proxycommand nc %h {port}), so the port its sshd listens on is unknown"
        )),
        "{}",
        refused.transcript()
    );
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &all("firewall: nftables\nfirewall_ssh_port: 2222\n"),
    );
    let named = fleet.run(&["render", "inventory", "--out", "rendered3"]);
    assert_eq!(named.code, 0, "{}", named.transcript());
    let ruleset =
        std::fs::read_to_string(sandbox.path().join("rendered3/a.example/etc/nftables.conf"))
            .unwrap();
    assert!(ruleset.contains("tcp dport 2222 accept"), "{ruleset}");
}

#[test]
fn a_kept_connection_serves_the_next_runs_until_it_dies_the_keys_change_or_disconnect() {
    let fleet = SshFleet::start(&["a.example", "b.example"], &[]);
    let (a, b) = (fleet.host("a.example"), fleet.host("b.example"));
    let handshakes = |host: &crate::sshd::SshHost| host.log().matches("Accepted publickey").count();
    let run = |args: &[&str]| {
        let run = fleet.run(args);
        assert_eq!(run.code, 0, "{}", run.transcript());
    };

    // The first plan connects; its masters stay for the next run.
    run(&["plan", "inventory"]);
    assert_eq!((handshakes(a), handshakes(b)), (1, 1));
    let kept = a.masters();
    assert_eq!(kept.len(), 1, "{kept:?}");
    // plan, apply and plan again: not one more handshake, the same master.
    run(&["plan", "inventory"]);
    run(&["apply", "--yes", "inventory"]);
    run(&["plan", "--detailed-exitcode", "inventory"]);
    assert_eq!((handshakes(a), handshakes(b)), (1, 1));
    assert_eq!(a.masters(), kept);

    // A master that died is replaced without a word.
    assert_eq!(a.kill_masters(), 1);
    run(&["plan", "--detailed-exitcode", "inventory"]);
    assert_eq!((handshakes(a), handshakes(b)), (2, 1));

    // The known-hosts file changed (a key removed, rotated, added): no
    // master verified against the old one is trusted.
    let known_hosts = fleet.sandbox.path().join("ssh/known_hosts");
    let mut keys = std::fs::read_to_string(&known_hosts).unwrap();
    keys.push_str("# a key was rotated\n");
    std::fs::write(&known_hosts, keys).unwrap();
    run(&["plan", "--detailed-exitcode", "inventory"]);
    assert_eq!((handshakes(a), handshakes(b)), (3, 2));
    assert_eq!(a.masters().len(), 1, "the replaced master exited");

    // --persist 0 neither uses nor keeps one.
    run(&[
        "plan",
        "--persist",
        "0",
        "inventory",
        "--limit",
        "a.example",
    ]);
    assert_eq!(handshakes(a), 4);
    assert_eq!(a.masters().len(), 1);

    // disconnect closes what is kept, and says so.
    let closed = fleet.run(&["disconnect", "inventory"]);
    assert_eq!(closed.code, 0, "{}", closed.transcript());
    assert_eq!(closed.stdout, "a.example: closed\nb.example: closed\n");
    assert_eq!(
        closed.stderr,
        "2 kept connections closed (2 hosts selected)\n"
    );
    assert!(a.masters().is_empty() && b.masters().is_empty());
    let again = fleet.run(&["disconnect", "inventory", "--limit", "a.example"]);
    assert_eq!(
        (again.stdout.as_str(), again.stderr.as_str()),
        ("", "0 kept connections closed (1 host selected)\n")
    );

    // The idle time is the operator's: a master kept for one second ends.
    run(&[
        "plan",
        "--persist",
        "1s",
        "inventory",
        "--limit",
        "b.example",
    ]);
    crate::support::wait_until("the idle master never exited", || b.masters().is_empty());
}

#[test]
fn kept_connections_live_only_in_a_private_directory() {
    let fleet = SshFleet::start(&["a.example"], &[]);
    let shared = fleet.sandbox.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let refused = fleet.run_with_env(
        &["plan", "inventory"],
        &[("MATRIXCTL_CONTROL_DIR", shared.to_str().unwrap())],
    );
    assert_eq!(refused.code, 1, "{}", refused.transcript());
    assert_eq!(
        refused
            .stderr
            .replace(fleet.sandbox.path().to_str().unwrap(), "[SANDBOX]"),
        "error: [SANDBOX]/shared is not a private directory of this user (it must be a real directory, owned by uid 0, mode 0700), so its SSH control sockets cannot be trusted\n\
         hint: remove it (matrixctl makes it again), or run with --persist 0\n"
    );
    assert_eq!(
        fleet.host("a.example").sessions(),
        0,
        "no host was contacted"
    );
    let bad = fleet.run(&["plan", "--persist", "soon", "inventory"]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains(
            "`soon` is not a duration: write it like `7d`, `12h` or `30m`, or `0` to close connections when the run ends"
        ),
        "{}",
        bad.stderr
    );
}
