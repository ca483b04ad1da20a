//! The firewall and TURN roles proven by the real programs: the rendered
//! nftables ruleset is loaded into a throwaway network namespace and probed
//! from a second one over a veth pair; coturn starts from its rendered
//! configuration on loopback.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::support::{BIN, copy_dir, repo};

fn render(case: &str, extra_vars: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory");
    copy_dir(&repo().join("tests/cases").join(case), &inventory);
    if !extra_vars.is_empty() {
        let all = std::fs::read_to_string(inventory.join("group_vars/all.yaml")).unwrap();
        std::fs::write(
            inventory.join("group_vars/all.yaml"),
            format!("{all}{extra_vars}"),
        )
        .unwrap();
    }
    let output = Command::new(BIN)
        .arg("render")
        .arg(&inventory)
        .arg("--out")
        .arg(dir.path().join("out"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let hosts: Vec<PathBuf> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(hosts.len(), 1);
    let host = hosts[0].clone();
    (dir, host)
}

fn run(command: &mut Command) -> std::process::Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Two network namespaces joined by a veth pair, deleted when dropped.
struct Namespaces {
    server: String,
    client: String,
    server_address: String,
}

static NEXT_NAMESPACE: AtomicU32 = AtomicU32::new(0);

impl Namespaces {
    fn new() -> Namespaces {
        let serial = NEXT_NAMESPACE.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{serial}", std::process::id());
        let subnet = 10 + (std::process::id() % 200);
        let spaces = Namespaces {
            server: format!("mctl-s-{id}"),
            client: format!("mctl-c-{id}"),
            server_address: format!("10.213.{subnet}.1"),
        };
        // Unique per test too: interface names share the machine's namespace.
        let veth = format!("mv{}x{serial}", std::process::id() % 100_000);
        run(Command::new("ip").args(["netns", "add", &spaces.server]));
        run(Command::new("ip").args(["netns", "add", &spaces.client]));
        run(Command::new("ip").args([
            "link",
            "add",
            &format!("{veth}s"),
            "type",
            "veth",
            "peer",
            "name",
            &format!("{veth}c"),
        ]));
        run(Command::new("ip").args(["link", "set", &format!("{veth}s"), "netns", &spaces.server]));
        run(Command::new("ip").args(["link", "set", &format!("{veth}c"), "netns", &spaces.client]));
        for (space, device, address) in [
            (
                &spaces.server,
                format!("{veth}s"),
                format!("10.213.{subnet}.1/24"),
            ),
            (
                &spaces.client,
                format!("{veth}c"),
                format!("10.213.{subnet}.2/24"),
            ),
        ] {
            run(Command::new("ip").args(["-n", space, "addr", "add", &address, "dev", &device]));
            run(Command::new("ip").args(["-n", space, "link", "set", &device, "up"]));
            run(Command::new("ip").args(["-n", space, "link", "set", "lo", "up"]));
        }
        spaces
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for space in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", space]).status();
        }
    }
}

/// TCP listeners on `ports` inside the server namespace.
struct Listeners(Child);

impl Listeners {
    fn start(spaces: &Namespaces, ports: &[u16]) -> Listeners {
        let script = format!(
            "import socket, threading, time\n\
             for port in {ports:?}:\n\
             \x20   s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             \x20   s.bind(('0.0.0.0', port)); s.listen(16)\n\
             \x20   threading.Thread(target=lambda s=s: [s.accept()[0].close() for _ in iter(int, 1)], daemon=True).start()\n\
             print('ready', flush=True)\n\
             time.sleep(60)\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &spaces.server, "python3", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready");
        Listeners(child)
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether a TCP connection from the client namespace gets through.
fn connects(spaces: &Namespaces, port: u16) -> bool {
    let script = format!(
        "import socket, sys\ns = socket.socket(); s.settimeout(1)\n\
         try:\n    s.connect(('{}', {port})); print('open')\nexcept Exception as e:\n    print('closed', e)\n",
        spaces.server_address
    );
    let output =
        run(Command::new("ip").args(["netns", "exec", &spaces.client, "python3", "-c", &script]));
    String::from_utf8_lossy(&output.stdout).starts_with("open")
}

/// A table of someone else's (as Docker makes one) in namespace `ns`.
fn load_other_table(ns: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("other.nft");
    std::fs::write(
        &file,
        "table ip docker_like {\n  chain postrouting {\n    type nat hook postrouting priority srcnat;\n  }\n}\n",
    )
    .unwrap();
    run(Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f"])
        .arg(&file));
}

#[test]
fn the_firewall_accepts_declared_ports_and_drops_the_rest() {
    let (_dir, host) = render("hosting-full", "");
    let ruleset = host.join("etc/nftables.conf");
    let check = Command::new("nft")
        .arg("-c")
        .arg("-f")
        .arg(&ruleset)
        .output()
        .expect("nft runs (apt-get install nftables)");
    assert!(
        check.status.success(),
        "nft -c: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    let spaces = Namespaces::new();
    // 22: SSH; 3478 and 5349: TURN; 4443: Jitsi; 8080: declared by no one.
    let _listeners = Listeners::start(&spaces, &[22, 3478, 4443, 5349, 8080]);
    assert!(
        connects(&spaces, 8080),
        "before the ruleset, everything is reachable"
    );
    // Someone else's table (Docker's, fail2ban's) is there already.
    load_other_table(&spaces.server);
    // Loaded twice, as every apply and every boot does.
    for _ in 0..2 {
        run(Command::new("ip")
            .args(["netns", "exec", &spaces.server, "nft", "-f"])
            .arg(&ruleset));
    }
    for open in [22, 3478, 4443, 5349] {
        assert!(connects(&spaces, open), "port {open} should be open");
    }
    assert!(!connects(&spaces, 8080), "port 8080 should be dropped");
    let live =
        run(Command::new("ip").args(["netns", "exec", &spaces.server, "nft", "list", "tables"]));
    assert_eq!(
        String::from_utf8_lossy(&live.stdout),
        "table ip docker_like\ntable inet matrixctl\n",
        "only matrixctl's own table is replaced"
    );
}

#[test]
fn coturn_starts_from_its_rendered_config_with_synapses_secret() {
    let (dir, host) = render(
        "hosting-full",
        "turn:\n  listening_ip: 127.0.0.1\n  port: 34781\n  tls_port: 34791\n  relay_min_port: 49152\n  relay_max_port: 49200\n",
    );
    let config = std::fs::read_to_string(host.join("etc/turnserver.conf")).unwrap();
    let synapse: serde_yaml::Value = serde_yaml::from_slice(
        &std::fs::read(host.join("etc/matrix-synapse/conf.d/turn.yaml")).unwrap(),
    )
    .unwrap();
    let secret = synapse["turn_shared_secret"].as_str().unwrap();
    assert!(secret.len() >= 32);
    assert!(
        config.contains(&format!("static-auth-secret={secret}\n")),
        "coturn and Synapse share the secret"
    );

    // A test copy: a pid file and log in the temp dir, no TLS certificates.
    let test_config = dir.path().join("turnserver.conf");
    std::fs::write(
        &test_config,
        format!(
            "{config}pidfile={}/turnserver.pid\nlog-file=stdout\nno-tls\nno-dtls\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let turnserver = Command::new("turnserver")
        .arg("-c")
        .arg(&test_config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("turnserver runs (apt-get install coturn)");
    struct Stop(Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut turnserver = Stop(turnserver);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", 34781)).is_err() {
        if let Some(status) = turnserver.0.try_wait().unwrap() {
            panic!("turnserver exited: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "turnserver never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let probe = Command::new("turnutils_stunclient")
        .args(["-p", "34781", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let _ = turnserver.0.kill();
    let output = std::mem::replace(&mut turnserver.0, Command::new("true").spawn().unwrap())
        .wait_with_output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(
        !log.contains("Bad configuration format"),
        "coturn did not understand its config:\n{log}"
    );
}

#[test]
fn a_firewall_change_that_is_not_confirmed_reverts_by_itself() {
    let spaces = Namespaces::new();
    let ns = &spaces.server;
    let sandbox = crate::support::Sandbox::fleet();
    let nft = format!("ip netns exec {ns} nft");
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &format!(
            "synapse_group: root\nfirewall: nftables\nhost_commands: true\n\
             synapse_validate_command: \"true\"\nsynapse_restart_command: \"true\"\n\
             firewall_validate_command: '{nft} -c -f \"$MATRIXCTL_ROOT/etc/nftables.conf\"'\n\
             firewall_load_command: '{nft} -f \"$MATRIXCTL_ROOT/etc/nftables.conf\"'\n\
             firewall_nft: '{nft}'\n\
             firewall_confirm_seconds: 2\n"
        ),
    );
    let live = || {
        let output = run(Command::new("ip").args(["netns", "exec", ns, "nft", "list", "ruleset"]));
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    // Someone else's table, which no apply or revert may touch.
    load_other_table(ns);
    // Confirmed: the new ruleset stays.
    let first = sandbox.run(&["apply", "--yes", "inventory", "--limit", "a.example"]);
    assert_eq!(first.code, 0, "{}", first.transcript());
    std::thread::sleep(Duration::from_secs(3));
    assert!(live().contains("tcp dport 22 accept"), "{}", live());
    assert!(!live().contains("4443"));

    // Not confirmed (the test hook skips the fresh connection): at its
    // deadline the host rolls the whole apply back by itself, and the
    // report says so, because it is read from the host.
    let ruleset_before = sandbox.read_host_file("a.example", "/etc/nftables.conf");
    // This load also adds a table of its own, outside matrixctl's: the
    // kind of lockout a revert of matrixctl's table alone would leave.
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        &format!(
            "jitsi_enabled: true\n\
             firewall_load_command: '{nft} -f \"$MATRIXCTL_ROOT/etc/nftables.conf\" && {nft} add table ip lockout'\n"
        ),
    );
    let second = sandbox.run_with_env(
        &["apply", "--yes", "inventory", "--limit", "a.example"],
        &[("MATRIXCTL_TEST_FAIL_CONFIRMATION", "1")],
    );
    assert_eq!(second.code, 1, "{}", second.transcript());
    assert!(
        second.stdout.contains("a.example: ROLLED BACK\n")
            && second.stdout.contains(
                "\"load the firewall\" was not confirmed within 2 s over a fresh connection"
            )
            && second
                .stdout
                .contains("rolled back: every file is as it was before this apply (checked)"),
        "{}",
        second.stdout
    );
    assert!(
        !live().contains("4443") && live().contains("tcp dport 22 accept"),
        "the previous ruleset is back when apply returns:\n{}",
        live()
    );
    assert_eq!(
        sandbox.read_host_file("a.example", "/etc/nftables.conf"),
        ruleset_before,
        "the ruleset file is the old one"
    );
    assert!(
        live().contains("table ip docker_like"),
        "another table survives the apply and its revert:\n{}",
        live()
    );
    assert!(
        !live().contains("table ip lockout"),
        "the table the unconfirmed load added is reverted too:\n{}",
        live()
    );
    assert!(
        !sandbox
            .host_file("a.example", "/var/lib/matrixctl/revert.saved")
            .exists()
    );
    // No drift: the change is simply still to be made.
    let plan = sandbox.run(&["plan", "inventory", "--limit", "a.example"]);
    assert!(
        plan.stdout
            .contains("  ~ /etc/nftables.conf  (role firewall)\n"),
        "{}",
        plan.stdout
    );
}
