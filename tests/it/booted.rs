//! Whole Debian systems (systemd as PID 1, own network namespace), booted
//! by scripts/booted-host and reached over SSH: roles install their
//! packages, start their services, and a second apply touches nothing.
//! Hosts run Debian 13, the release operators rent today; the tests that
//! matter most for Debian 12 run there too.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Sandbox, repo};

/// Each host gets its own 10.231.N.0/24.
static NEXT_NETWORK: AtomicU32 = AtomicU32::new(40);

/// A booted host, destroyed (by the script, which stops it by its pids)
/// when dropped.
pub struct BootedHost {
    pub name: String,
    pub address: String,
    /// Its Debian release (`trixie`, `bookworm`).
    pub suite: String,
    key: PathBuf,
    known_hosts: PathBuf,
    _keys: tempfile::TempDir,
}

impl BootedHost {
    /// A Debian 13 host.
    pub fn up(name: &str) -> BootedHost {
        BootedHost::up_on(name, "trixie")
    }

    /// A host of Debian release `suite` (`bookworm`, `trixie`).
    pub fn up_on(name: &str, suite: &str) -> BootedHost {
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("id");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen runs (apt-get install openssh-client)");
        assert!(made.success());
        let network = NEXT_NETWORK.fetch_add(1, Ordering::SeqCst).to_string();
        let script = repo().join("scripts/booted-host");
        // A host left by a killed run of this test is replaced.
        let _ = Command::new(&script).args(["down", name]).output();
        let output = Command::new(&script)
            .args(["--suite", suite, "up", name, &network])
            .arg(key.with_extension("pub"))
            .output()
            .unwrap();
        let host = BootedHost {
            name: name.to_string(),
            suite: suite.to_string(),
            address: String::from_utf8_lossy(&output.stdout).trim().to_string(),
            known_hosts: keys.path().join("known_hosts"),
            key,
            _keys: keys,
        };
        assert!(
            output.status.success(),
            "scripts/booted-host up {name} failed (it needs root, systemd-nspawn and mmdebstrap, which it installs):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let host_key =
            std::fs::read_to_string(format!("/run/matrixctl-booted/{name}/host_key.pub")).unwrap();
        let mut fields = host_key.split_whitespace();
        let (kind, data) = (fields.next().unwrap(), fields.next().unwrap());
        std::fs::write(
            &host.known_hosts,
            format!("{} {kind} {data}\n", host.address),
        )
        .unwrap();
        host
    }

    /// The key that logs in as root, and the known-hosts file with the
    /// host's key.
    pub fn ssh_files(&self) -> (&std::path::Path, &std::path::Path) {
        (&self.key, &self.known_hosts)
    }

    /// Runs `command` in the host as root, over SSH.
    pub fn ssh(&self, command: &str) -> Output {
        self.ssh_command(command).output().unwrap()
    }

    fn ssh_command(&self, command: &str) -> Command {
        let mut ssh = Command::new("ssh");
        ssh.arg("-i")
            .arg(&self.key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=5",
                "-F",
                "/dev/null",
            ])
            .arg(format!("root@{}", self.address))
            .arg(command);
        ssh
    }

    /// The output of `command`, which must succeed.
    pub fn run(&self, command: &str) -> String {
        let output = self.ssh(command);
        assert!(
            output.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Copies the local directory `from` to `to` in the host (tar over SSH).
    pub fn copy_in(&self, from: &std::path::Path, to: &str) {
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(from)
            .args(["-cf", "-", "."])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let archive = tar.stdout.take().unwrap();
        let mut ssh = self.ssh_command(&format!("mkdir -p {to} && tar -C {to} -xf -"));
        let copied = ssh.stdin(archive).status().unwrap();
        let archived = tar.wait().unwrap();
        assert!(
            archived.success() && copied.success(),
            "copying {} into {}",
            from.display(),
            self.name
        );
    }

    /// An inventory with this host as `server_name`, reached over SSH.
    pub fn inventory(&self, server_name: &str, vars: &str) -> Sandbox {
        fleet_inventory(&[(self, server_name, "")], vars)
    }

    /// Reboots the host and waits (bounded) until it is back and booted.
    pub fn reboot(&self) {
        let _ = self.ssh("systemctl reboot");
        std::thread::sleep(Duration::from_millis(500));
        let started = Instant::now();
        loop {
            let state = self.ssh("systemctl is-system-running --wait");
            let said = String::from_utf8_lossy(&state.stdout).trim().to_string();
            if said == "running" || said == "degraded" {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{} did not come back after a reboot",
                self.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// An inventory of booted hosts, each `(host, server name, its vars)`,
/// reached over SSH, with `vars` for all of them.
pub fn fleet_inventory(hosts: &[(&BootedHost, &str, &str)], vars: &str) -> Sandbox {
    let sandbox = Sandbox::empty();
    let mut listed = String::from("hosts:\n");
    for (host, server_name, own) in hosts {
        listed.push_str(&format!(
            "  {server_name}:\n    ssh: root@{}:22\n",
            host.address
        ));
        sandbox.write(
            &format!("inventory/host_vars/{server_name}.yaml"),
            &format!(
                "ssh_options:\n  identity_file: {}\n  known_hosts_file: {}\n{own}",
                host.key.display(),
                host.known_hosts.display()
            ),
        );
    }
    sandbox.write("inventory/hosts.yaml", &listed);
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &format!("host_commands: true\n{vars}"),
    );
    let master = sandbox.path().join("inventory/secrets/master.key");
    std::fs::create_dir_all(master.parent().unwrap()).unwrap();
    std::fs::write(
        &master,
        "booted-host test master key, not a secret anywhere\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&master, std::fs::Permissions::from_mode(0o600)).unwrap();
    sandbox
}

impl Drop for BootedHost {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/booted-host"))
            .args(["down", &self.name])
            .output();
    }
}

/// Converged: the next plan is clean, the next apply has nothing to do,
/// and none of `units` was restarted by it.
fn assert_next_apply_changes_nothing(host: &BootedHost, sandbox: &Sandbox, units: &[&str]) {
    assert_next_apply_changes_nothing_on(sandbox, &[(host, units)]);
}

/// As [`assert_next_apply_changes_nothing`], for several hosts, each with
/// the units it runs.
pub fn assert_next_apply_changes_nothing_on(sandbox: &Sandbox, hosts: &[(&BootedHost, &[&str])]) {
    // When each unit last started, in microseconds since boot.
    let started = || -> Vec<String> {
        hosts
            .iter()
            .flat_map(|(host, units)| {
                units.iter().map(move |unit| {
                    host.run(&format!(
                        "systemctl show -p ActiveEnterTimestampMonotonic --value {unit}"
                    ))
                })
            })
            .collect()
    };
    let before = started();
    let plan = sandbox.run(&["plan", "--detailed-exitcode", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    let again = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(again.code, 0, "{}", again.transcript());
    assert!(
        again.stdout.contains("No changes to apply."),
        "{}",
        again.stdout
    );
    assert_eq!(
        started(),
        before,
        "restarted by an apply with nothing to do: {hosts:?}",
        hosts = hosts
            .iter()
            .map(|(host, units)| (&host.name, units))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_fresh_host_gets_its_package_config_and_running_service_and_the_next_apply_touches_nothing() {
    let host = BootedHost::up("mcturn");
    assert_eq!(
        host.ssh("dpkg-query -W coturn").status.code(),
        Some(1),
        "the fresh host has no coturn yet"
    );
    let sandbox = host.inventory(
        "turn.example",
        "synapse_enabled: false\nwellknown_enabled: false\nturn:\n  lifetime: 1h\n",
    );
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    let system: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|line| line.contains(" package ") || line.contains(" service "))
        .collect();
    assert_eq!(
        system,
        [
            "  + package coturn  (role turn)",
            "  ~ service coturn  (role turn, enable, start)"
        ],
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("installs coturn (a failed apply does not uninstall)"),
        "{}",
        plan.stdout
    );

    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert!(
        host.run("dpkg-query -W -f '${Status}' coturn")
            .contains("installed")
    );
    assert_eq!(host.run("systemctl is-active coturn"), "active");
    assert_eq!(host.run("systemctl is-enabled coturn"), "enabled");
    // It runs matrixctl's configuration, never the package's defaults: the
    // file was in place before the service first started.
    let config = host.run("cat /etc/turnserver.conf");
    assert!(config.starts_with("# Managed by matrixctl"), "{config}");
    let journal = host.run("journalctl -u coturn --no-pager -o cat");
    assert_eq!(
        journal.matches("Started coturn.service").count(),
        1,
        "coturn started once, on matrixctl's config:\n{journal}"
    );
    assert!(
        host.run("test ! -e /usr/sbin/policy-rc.d && echo gone") == "gone",
        "the install-time guard is removed"
    );

    // Converged: nothing to do, no package manager run, nothing restarted.
    let installs = host.run("grep -c '^Start-Date' /var/log/apt/history.log");
    assert_next_apply_changes_nothing(&host, &sandbox, &["coturn"]);
    assert_eq!(
        host.run("grep -c '^Start-Date' /var/log/apt/history.log"),
        installs
    );

    // Enabled, not only started: it comes back after a reboot.
    host.reboot();
    assert_eq!(host.run("systemctl is-active coturn"), "active");
    assert_eq!(sandbox.plan_exit_code(None), 0);
}

/// Debian 13, what operators rent today: from empty to Synapse on
/// PostgreSQL 17 behind nginx 1.26, with coturn and the firewall, in one
/// apply, Synapse's venv on the host's Python 3.13; the next apply changes
/// nothing.
#[test]
fn a_debian_13_host_goes_from_empty_to_synapse_answering_through_nginx() {
    let host = BootedHost::up_on("mctrixie", "trixie");
    assert!(
        host.run("cat /etc/debian_version").starts_with("13"),
        "{}",
        host.run("cat /etc/debian_version")
    );
    host.copy_wheels(&["synapse"]);
    let certificates = tempfile::tempdir().unwrap();
    let (cert, key) =
        crate::webserver::certificate(certificates.path(), &["matrix.trixie.example"]);
    std::fs::rename(&cert, certificates.path().join("cert.pem")).unwrap();
    std::fs::rename(&key, certificates.path().join("key.pem")).unwrap();
    host.copy_in(certificates.path(), "/etc/ssl/matrix");
    let sandbox = host.inventory(
        "trixie.example",
        "synapse_install: venv\nsynapse_wheels: /srv/wheels\n\
         database:\n  engine: postgres\n\
         webserver: nginx\nfirewall: nftables\nturn: {}\n\
         tls_certificate: /etc/ssl/matrix/cert.pem\ntls_certificate_key: /etc/ssl/matrix/key.pem\n\
         turn_group: turnserver\n",
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(
        apply.code,
        0,
        "{}\n{}",
        apply.transcript(),
        host.ssh("journalctl -u matrix-synapse -n 20 --no-pager")
            .stdout
            .escape_ascii()
    );
    let versions = Command::new("curl")
        .args(["-sk", "--max-time", "10", "--resolve"])
        .arg(format!("matrix.trixie.example:443:{}", host.address))
        .arg("https://matrix.trixie.example/_matrix/client/versions")
        .output()
        .expect("curl runs (apt-get install curl)");
    let body = String::from_utf8_lossy(&versions.stdout);
    assert!(body.contains("\"versions\""), "{body}");
    assert!(
        host.run("/opt/venvs/matrix-synapse/bin/python -V")
            .starts_with("Python 3.13"),
        "the venv is on the host's own Python"
    );
    for unit in ["matrix-synapse", "nginx", "postgresql", "coturn"] {
        assert_eq!(
            host.run(&format!("systemctl is-active {unit}")),
            "active",
            "{unit}"
        );
    }
    assert_next_apply_changes_nothing(&host, &sandbox, &["matrix-synapse", "nginx", "coturn"]);

    // matrix.org's packages: the repository follows the host's release,
    // and a pin to Debian 12's build is refused on it. (A key of the
    // test's own stands in for matrix.org's.)
    let repository = LocalRepository::serve(&host);
    let key: String = repository
        .key
        .lines()
        .map(|line| format!("  {line}\n"))
        .collect();
    let own = sandbox
        .path()
        .join("inventory/host_vars/trixie.example.yaml");
    let ssh = format!(
        "{}synapse_repository_fingerprint: {}\nsynapse_repository_key: |\n{key}",
        std::fs::read_to_string(&own).unwrap(),
        repository.fingerprint
    );
    std::fs::write(&own, format!("{ssh}synapse_install: packages\n")).unwrap();
    let plan = sandbox.run(&["plan", "inventory"]);
    assert!(
        plan.stdout
            .contains("  + repository matrix-org  (role synapse, https://packages.matrix.org/debian/ trixie main, key "),
        "{}",
        plan.transcript()
    );
    std::fs::write(
        &own,
        format!("{ssh}synapse_install: packages\nsynapse_package_version: 1.163.2+bookworm1\n"),
    )
    .unwrap();
    let refused = sandbox.run(&["plan", "inventory"]);
    assert_eq!(refused.code, 1, "{}", refused.transcript());
    assert!(
        refused.stdout.contains(
            "package matrix-synapse-py3 (role `synapse`) is pinned to 1.163.2+bookworm1, built for bookworm, and this host runs trixie: pin its trixie build (`1.163.2+trixie1`)"
        ),
        "{}",
        refused.stdout
    );
}

#[test]
fn a_host_without_synapse_is_refused_at_plan_time_when_nothing_would_install_it() {
    // `synapse_install: none` means someone installed Synapse; on an
    // empty server its files' group does not exist, and apply would only
    // find out after installing packages.
    let host = BootedHost::up("mcnosyn");
    let sandbox = host.inventory("nosynapse.example", "database: {engine: postgres}\n");
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 1, "{}", plan.transcript());
    assert!(
        plan.stdout.contains(
            "refusing this host: group 'matrix-synapse' does not exist on this host, and no role here creates it"
        ) && plan.stdout.contains(
            "hint: role `synapse` makes it when `synapse_install == \"venv\"`"
        ),
        "{}",
        plan.stdout
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    assert_eq!(
        host.ssh("dpkg-query -W postgresql").status.code(),
        Some(1),
        "nothing was installed"
    );
    // The fix the plan names: matrixctl installs Synapse.
    sandbox.write(
        "inventory/host_vars/nosynapse.example.yaml",
        &format!(
            "{}synapse_install: venv\n",
            std::fs::read_to_string(
                sandbox
                    .path()
                    .join("inventory/host_vars/nosynapse.example.yaml")
            )
            .unwrap()
        ),
    );
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
}

#[test]
fn a_host_prepared_by_hand_is_adopted_without_reinstalling_anything() {
    a_host_prepared_by_hand_is_adopted("mcadopt", "trixie");
}

#[test]
fn a_debian_12_host_prepared_by_hand_is_adopted_without_reinstalling_anything() {
    a_host_prepared_by_hand_is_adopted("mcadopt12", "bookworm");
}

fn a_host_prepared_by_hand_is_adopted(name: &str, suite: &str) {
    let host = BootedHost::up_on(name, suite);
    // Seed 004's way: the package installed and running on its defaults.
    host.run(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends coturn > /dev/null 2>&1 \
         && systemctl enable --now coturn > /dev/null 2>&1",
    );
    let installs = host.run("grep -c '^Start-Date' /var/log/apt/history.log");
    let sandbox = host.inventory(
        "turn.example",
        "synapse_enabled: false\nwellknown_enabled: false\nturn:\n  lifetime: 1h\n",
    );
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert!(
        !plan.stdout.contains(" package ") && !plan.stdout.contains(" service "),
        "only real differences:\n{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("  ~ /etc/turnserver.conf  (role turn"),
        "{}",
        plan.stdout
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_eq!(
        host.run("grep -c '^Start-Date' /var/log/apt/history.log"),
        installs
    );
    assert_eq!(host.run("systemctl is-active coturn"), "active");
    assert!(
        host.run("cat /etc/turnserver.conf")
            .starts_with("# Managed by matrixctl")
    );
    assert_eq!(sandbox.plan_exit_code(None), 0);
}

#[test]
fn a_bot_that_ships_no_package_gets_a_venv_a_unit_and_an_account_of_its_own() {
    let host = BootedHost::up("mcmaubot");
    host.copy_wheels(&["maubot"]);
    let sandbox = host.inventory(
        "bots.example",
        "synapse_enabled: false\nwellknown_enabled: false\n\
         maubot:\n  admin_password: maubot-admin-password-for-tests-only\n\
         maubot_wheels: /srv/wheels\n",
    );
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    let accounts: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|line| {
            ["  + group ", "  + user ", "  + directory "]
                .iter()
                .any(|kind| line.starts_with(kind))
        })
        .collect();
    assert_eq!(
        accounts,
        [
            "  + group maubot  (role maubot)",
            "  + user maubot  (role maubot, group maubot, home /var/lib/maubot)",
            "  + directory /etc/maubot  (role maubot, root:maubot 0750)",
            "  + directory /var/lib/maubot  (role maubot, maubot:maubot 0750)",
            "  + directory /var/lib/maubot/plugins  (role maubot, maubot:maubot 0750)",
            "  + directory /var/lib/maubot/trash  (role maubot, maubot:maubot 0750)",
        ],
        "{}",
        plan.stdout
    );
    assert_plan_says(
        &plan.stdout,
        &[
            "  + package python3-venv  (role maubot)",
            "  + venv /opt/maubot  (role maubot, maubot==0.6.0)",
            "  + /etc/systemd/system/maubot.service  (role maubot",
            "  ~ service maubot  (role maubot, enable, start)",
        ],
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_eq!(
        host.run("systemctl is-active maubot || journalctl -u maubot --no-pager -n 30"),
        "active"
    );
    assert_eq!(
        host.run("stat -c '%U:%G %a' /var/lib/maubot/plugins /etc/maubot/config.yaml"),
        "maubot:maubot 750\nroot:maubot 640"
    );
    assert_eq!(
        host.run("getent passwd maubot | cut -d: -f6,7"),
        "/var/lib/maubot:/usr/sbin/nologin"
    );
    // It runs as its own account, which can read its config and nothing
    // else of matrixctl's.
    assert_eq!(
        host.run("stat -c %U /proc/$(systemctl show -p MainPID --value maubot)"),
        "maubot"
    );
    // And it works: its admin API logs the inventory's admin in.
    let login = r#"
import json, time, urllib.request
body = json.dumps({"username": "admin", "password": "maubot-admin-password-for-tests-only"})
for attempt in range(100):
    try:
        request = urllib.request.Request(
            "http://127.0.0.1:29316/_matrix/maubot/v1/auth/login", data=body.encode())
        print("token" in json.load(urllib.request.urlopen(request, timeout=2)))
        break
    except OSError:
        time.sleep(0.1)
"#;
    assert_eq!(host.run(&format!("python3 -c '{login}'")), "True");

    // Converged, and maubot did not rewrite the config it was given.
    assert_next_apply_changes_nothing(&host, &sandbox, &["maubot"]);
}

/// matrixctl with the test's own roles (`roles/` in the sandbox).
fn with_roles(sandbox: &Sandbox, args: &[&str]) -> crate::support::Run {
    sandbox.run(&[&["--roles", "roles"], args].concat())
}

/// Every one of `lines` is in the plan.
pub fn assert_plan_says(plan: &str, lines: &[&str]) {
    for line in lines {
        assert!(plan.contains(line), "{line}\n{plan}");
    }
}

/// A directory of wheels scripts/test downloads (`what`: maubot, synapse).
impl BootedHost {
    /// A direct link to `other` (scripts/booted-host link): each reaches
    /// the other's address.
    pub fn link_to(&self, other: &BootedHost) {
        let linked = Command::new(repo().join("scripts/booted-host"))
            .args(["link", &self.name, &other.name])
            .output()
            .unwrap();
        assert!(
            linked.status.success(),
            "{}",
            String::from_utf8_lossy(&linked.stderr)
        );
    }

    /// Puts the cached wheels of `components` for this host's Python
    /// (scripts/test downloads them) into /srv/wheels on the host.
    pub fn copy_wheels(&self, components: &[&str]) {
        for component in components {
            self.copy_in(&wheels(&self.suite, component), "/srv/wheels");
        }
    }
}

/// The cached wheels of `component` for the Python of Debian `suite`.
pub fn wheels(suite: &str, component: &str) -> PathBuf {
    let python = match suite {
        "bookworm" => "3.11",
        "trixie" => "3.13",
        other => panic!("no Python known for Debian {other}"),
    };
    let dir = std::env::var_os("MATRIXCTL_WHEELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/matrixctl/wheels".into())
        .join(format!("python{python}/{component}"));
    assert!(
        dir.join(".complete").exists(),
        "the {component} wheels for Python {python} are missing from {}: run scripts/test, which downloads them",
        dir.display()
    );
    dir
}

#[test]
fn one_apply_takes_a_fresh_host_to_synapse_answering_through_nginx() {
    a_fresh_host_gets_synapse_and_bridges("mchome", "trixie");
}

#[test]
fn one_apply_takes_a_fresh_debian_12_host_to_synapse_answering_through_nginx() {
    a_fresh_host_gets_synapse_and_bridges("mchome12", "bookworm");
}

/// Synapse and the bridges on an empty host of Debian release `suite`, in
/// one apply; the Google Chat bridge only where its last release installs
/// (Debian 12's Python), and refused at plan time elsewhere.
fn a_fresh_host_gets_synapse_and_bridges(name: &str, suite: &str) {
    let host = BootedHost::up_on(name, suite);
    let googlechat = suite == "bookworm";
    host.copy_wheels(&["synapse", "heisenbridge", "mautrix-telegram"]);
    if googlechat {
        host.copy_wheels(&["mautrix-googlechat"]);
    }
    // A certificate for the vhost (ACME is the next step).
    let certificates = tempfile::tempdir().unwrap();
    let (cert, key) = crate::webserver::certificate(certificates.path(), &["matrix.home.example"]);
    std::fs::rename(&cert, certificates.path().join("cert.pem")).unwrap();
    std::fs::rename(&key, certificates.path().join("key.pem")).unwrap();
    host.copy_in(certificates.path(), "/etc/ssl/matrix");
    let vars = "synapse_install: venv\nsynapse_wheels: /srv/wheels\n\
         database:\n  engine: sqlite\n  sqlite_path: /var/lib/matrix-synapse/homeserver.db\n\
         webserver: nginx\n\
         tls_certificate: /etc/ssl/matrix/cert.pem\ntls_certificate_key: /etc/ssl/matrix/key.pem\n\
         heisenbridge_wheels: /srv/wheels\nmautrix_telegram_wheels: /srv/wheels\n\
         mautrix_googlechat_wheels: /srv/wheels\n\
         bridges:\n  heisenbridge:\n    admins: [\"@admin:home.example\"]\n\
         \x20 mautrix_telegram:\n    api_id: 2040\n    api_hash: booted-test-api-hash-not-real\n";
    let with_googlechat =
        format!("{vars}\x20 mautrix_googlechat:\n    admins: [\"@admin:home.example\"]\n");
    let sandbox = host.inventory("home.example", &with_googlechat);
    if !googlechat {
        let refused = sandbox.run(&["plan", "inventory"]);
        assert_eq!(refused.code, 1, "{}", refused.transcript());
        assert!(
            refused.stdout.contains(
                "refusing this host: role `mautrix-googlechat`: mautrix-googlechat 0.5.2 and earlier need asyncpg older than 0.30, which cannot be installed on this host's Python (3.13 or later): run this bridge on a Debian 12 host"
            ),
            "{}",
            refused.transcript()
        );
        let own = sandbox.path().join("inventory/group_vars/all.yaml");
        let text = std::fs::read_to_string(&own).unwrap();
        std::fs::write(&own, text.replace(&with_googlechat, vars)).unwrap();
    }
    let bridges: &[&str] = if googlechat {
        &[
            "heisenbridge",
            "mautrix-googlechat",
            "mautrix-telegram",
            "synapse",
        ]
    } else {
        &["heisenbridge", "mautrix-telegram", "synapse"]
    };
    let venv_roles = format!(
        "  + package python3-venv  (roles {} and {})",
        bridges[..bridges.len() - 1].join(", "),
        bridges[bridges.len() - 1]
    );
    let file_roles = if googlechat {
        "  + package file  (roles mautrix-googlechat and mautrix-telegram)"
    } else {
        "  + package file  (role mautrix-telegram)"
    };
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert_plan_says(
        &plan.stdout,
        &[
            "  + package nginx  (role nginx)",
            &venv_roles,
            file_roles,
            "  + user matrix-synapse  (role synapse, group matrix-synapse, home /var/lib/matrix-synapse)",
            "  + venv /opt/venvs/matrix-synapse  (role synapse, matrix-synapse==1.163.2)",
            "  + signing key  (role synapse, generated on the host: /etc/matrix-synapse/homeserver.signing.key)",
            "  ~ service matrix-synapse  (role synapse, enable, start)",
            "  ~ service nginx  (role nginx, enable, start)",
        ],
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(
        apply.code,
        0,
        "{}\n{}",
        apply.transcript(),
        host.ssh("journalctl -u matrix-synapse -n 20 --no-pager")
            .stdout
            .escape_ascii()
    );
    // Synapse answers through nginx, over HTTPS, from outside the host.
    let health = Command::new("curl")
        .args(["-sk", "--max-time", "10", "--resolve"])
        .arg(format!("matrix.home.example:443:{}", host.address))
        .arg("https://matrix.home.example/_matrix/client/versions")
        .output()
        .expect("curl runs (apt-get install curl)");
    let body = String::from_utf8_lossy(&health.stdout);
    assert!(body.contains("\"versions\""), "{body}");
    // The signing key was made on the host, for Synapse's group only, and
    // never left it: no plan, report or record of matrixctl holds it.
    assert_eq!(
        host.run("stat -c '%U:%G %a' /etc/matrix-synapse/homeserver.signing.key"),
        "root:matrix-synapse 640"
    );
    let key = host.run("cut -d' ' -f3 /etc/matrix-synapse/homeserver.signing.key");
    assert!(key.len() > 20, "{key}");
    let json = sandbox.run(&["plan", "--json", "inventory"]);
    assert!(
        !apply.stdout.contains(&key) && !json.stdout.contains(&key),
        "the signing key left the host"
    );
    assert!(!host.run("cat /var/lib/matrixctl/state").contains(&key));
    assert_eq!(
        host.run("stat -c %U /proc/$(systemctl show -p MainPID --value matrix-synapse)"),
        "matrix-synapse"
    );
    // Each bridge runs as its own account and reached Synapse with its
    // token: its bot user has a profile on the homeserver.
    for (unit, bot) in [
        ("heisenbridge", "@heisenbridge:home.example"),
        ("mautrix-telegram", "@telegrambot:home.example"),
        ("mautrix-googlechat", "@googlechatbot:home.example"),
    ]
    .into_iter()
    .filter(|(unit, _)| googlechat || *unit != "mautrix-googlechat")
    {
        let started = Instant::now();
        let profile = loop {
            let profile = Command::new("curl")
                .args(["-sk", "--max-time", "5", "--resolve"])
                .arg(format!("matrix.home.example:443:{}", host.address))
                .arg(format!(
                    "https://matrix.home.example/_matrix/client/v3/profile/{bot}"
                ))
                .output()
                .unwrap();
            let body = String::from_utf8_lossy(&profile.stdout).to_string();
            if body.contains("displayname") || started.elapsed() > Duration::from_secs(60) {
                break body;
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        assert!(
            profile.contains("displayname"),
            "{bot}: {profile}\n{}",
            host.run(&format!(
                "systemctl status {unit} --no-pager; journalctl -u {unit} -n 30 --no-pager"
            ))
        );
        assert_eq!(
            host.run(&format!(
                "stat -c %U /proc/$(systemctl show -p MainPID --value {unit})"
            )),
            unit
        );
    }
    // The mautrix bridges read a config only matrixctl writes.
    for bridge in ["mautrix-telegram", "mautrix-googlechat"]
        .into_iter()
        .filter(|bridge| googlechat || *bridge != "mautrix-googlechat")
    {
        assert_eq!(
            host.run(&format!("stat -c '%U:%G %a' /etc/{bridge}/config.yaml")),
            format!("root:{bridge} 640")
        );
    }

    // The first admin, made through the host's loopback: it logs in from
    // outside with the password printed once.
    let client = |method: &str, path: &str, body: &str| -> serde_json::Value {
        let answer = Command::new("curl")
            .args(["-sk", "--max-time", "10", "-X", method, "--resolve"])
            .arg(format!("matrix.home.example:443:{}", host.address))
            .args(["-H", "Content-Type: application/json", "-d", body])
            .arg(format!("https://matrix.home.example{path}"))
            .output()
            .unwrap();
        serde_json::from_slice(&answer.stdout).unwrap_or_default()
    };
    let admin = sandbox.run(&["admin", "create", "home.example", "@admin:home.example"]);
    assert_eq!(admin.code, 0, "{}", admin.transcript());
    let password = admin_password(&admin);
    assert!(
        admin
            .stdout
            .starts_with("Created @admin:home.example, an admin, on home.example.\n"),
        "{}",
        admin.stdout
    );
    let login = client(
        "POST",
        "/_matrix/client/v3/login",
        &serde_json::json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "admin"}, "password": password}).to_string(),
    );
    assert_eq!(login["user_id"], "@admin:home.example", "{login}");
    // An account that exists is not made again.
    let again = sandbox.run(&["admin", "create", "home.example", "@admin:home.example"]);
    assert_eq!(again.code, 1, "{}", again.transcript());
    assert!(
        again.stderr.contains("User ID already taken"),
        "{}",
        again.stderr
    );

    // The first invitation: a token for one registration, which works
    // once (the host's registration mode is `token`).
    let token = sandbox.run(&[
        "token",
        "create",
        "home.example",
        "--uses",
        "1",
        "--expires",
        "1d",
    ]);
    assert_eq!(token.code, 0, "{}", token.transcript());
    let token = token.stdout.lines().last().unwrap().trim().to_string();
    let register = |name: &str| -> serde_json::Value {
        let start = client(
            "POST",
            "/_matrix/client/v3/register",
            &serde_json::json!({"username": name, "password": "a long new passphrase"}).to_string(),
        );
        let session = start["session"].as_str().unwrap_or_default().to_string();
        // The token stage, then Synapse's closing dummy stage.
        let mut last = serde_json::Value::Null;
        for auth in [
            serde_json::json!({"type": "m.login.registration_token", "token": token, "session": session}),
            serde_json::json!({"type": "m.login.dummy", "session": session}),
        ] {
            last = client(
                "POST",
                "/_matrix/client/v3/register",
                &serde_json::json!({"username": name, "password": "a long new passphrase", "auth": auth})
                    .to_string(),
            );
            if last["user_id"].is_string() || last["errcode"].is_string() {
                break;
            }
        }
        last
    };
    let alice = register("alice");
    assert_eq!(alice["user_id"], "@alice:home.example", "{alice}");
    assert!(
        register("bob")["user_id"].is_null(),
        "the token was for one registration"
    );

    // nginx's configuration in the form this nginx expects (HTTP/2 per
    // site from 1.25.1: Debian 13's 1.26, the version apt was about to
    // install when the plan asked; per address on Debian 12's 1.22, with
    // the note that it reaches every site), and its test has nothing to
    // warn about.
    let config = host.run("cat /etc/nginx/conf.d/matrix.conf");
    let per_site = suite != "bookworm";
    assert_eq!(config.contains("    http2 on;\n"), per_site, "{config}");
    assert_eq!(config.contains(" ssl http2;\n"), !per_site, "{config}");
    assert_eq!(
        apply.stdout.contains("turns it on for all of them"),
        !per_site,
        "{}",
        apply.stdout
    );
    let nginx_test = host.ssh("nginx -t");
    let complaints = String::from_utf8_lossy(&nginx_test.stderr).to_string();
    assert!(
        nginx_test.status.success() && !complaints.contains("[warn]"),
        "{complaints}"
    );

    // Converged: no change, and nothing restarted.
    let mut units = vec![
        "matrix-synapse",
        "nginx",
        "heisenbridge",
        "mautrix-telegram",
    ];
    if googlechat {
        units.push("mautrix-googlechat");
    }
    assert_next_apply_changes_nothing(&host, &sandbox, &units);
}

/// The README's try-it command, as a newcomer runs it (with this build,
/// under a name of its own): example.org on a booted host, answering.
#[test]
fn the_try_it_command_puts_the_example_on_a_real_host_and_takes_it_away() {
    let work = tempfile::tempdir().unwrap();
    let try_it = |args: &[&str]| {
        Command::new(repo().join("scripts/try-it"))
            .args(args)
            .env("MATRIXCTL_BIN", crate::support::BIN)
            .env("MATRIXCTL_TRY_NAME", "mctryit")
            .env("MATRIXCTL_TRY_NETWORK", "60")
            .env("MATRIXCTL_TRY_DIR", work.path().join("try-it"))
            .output()
            .unwrap()
    };
    struct Down<'a>(&'a dyn Fn(&[&str]) -> Output);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            (self.0)(&["down"]);
        }
    }
    let _down = Down(&try_it);
    let up = try_it(&[]);
    let said = String::from_utf8_lossy(&up.stdout);
    assert!(
        up.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(
        said.contains("Destroy it:    scripts/try-it down"),
        "{said}"
    );
    let versions = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "10",
            "--resolve",
            "chat.example.org:443:10.231.60.2",
        ])
        .arg("https://chat.example.org/_matrix/client/versions")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&versions.stdout).contains("\"versions\""),
        "{}",
        String::from_utf8_lossy(&versions.stdout)
    );
    // The first admin, as the newcomer would: the command it printed.
    let first_admin = said
        .lines()
        .find_map(|line| line.trim().strip_prefix("First admin:"))
        .unwrap_or_else(|| panic!("{said}"));
    let words: Vec<&str> = first_admin.split_whitespace().collect();
    let made = Command::new(words[0]).args(&words[1..]).output().unwrap();
    let made_said = String::from_utf8_lossy(&made.stdout);
    assert!(
        made.status.success() && made_said.starts_with("Created @admin:example.org, an admin"),
        "{made_said}\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    // The first invitation, as printed: the host signs up by token.
    let invitation = said
        .lines()
        .find_map(|line| line.trim().strip_prefix("An invitation:"))
        .unwrap_or_else(|| panic!("{said}"));
    let words: Vec<&str> = invitation.split_whitespace().collect();
    let token = Command::new(words[0]).args(&words[1..]).output().unwrap();
    let token_said = String::from_utf8_lossy(&token.stdout);
    assert!(
        token.status.success()
            && token_said
                .starts_with("Created a registration token on example.org, for 1 registration,"),
        "{token_said}\n{}",
        String::from_utf8_lossy(&token.stderr)
    );
    // A server's certificate (check refuses a CA's), in a directory
    // others can traverse, as /etc/ssl's are.
    let served = Command::new("sh")
        .arg("-c")
        .arg(
            "openssl s_client -connect 10.231.60.2:443 -servername chat.example.org < /dev/null 2> /dev/null \
             | openssl x509 -noout -ext basicConstraints",
        )
        .output()
        .unwrap();
    let constraints = String::from_utf8_lossy(&served.stdout);
    assert!(constraints.contains("CA:FALSE"), "{constraints}");
    let work_dir = work.path().join("try-it");
    let mode = Command::new("ssh")
        .arg("-i")
        .arg(work_dir.join("id"))
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            work_dir.join("known_hosts").display()
        ))
        .args(["-o", "BatchMode=yes", "-F", "/dev/null", "root@10.231.60.2"])
        .args(["stat", "-c", "%a", "/etc/ssl/matrix"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&mode.stdout).trim(), "755");
    let down = try_it(&["down"]);
    assert!(down.status.success());
    assert!(!std::path::Path::new("/run/matrixctl-booted/mctryit").exists());
}

/// An apt repository on the test machine's side of a host's link
/// (10.231.N.1), holding real .debs from Debian's archive, signed by a key
/// made for it; served by Python's http.server, stopped by its pid.
struct LocalRepository {
    fingerprint: String,
    key: String,
    url: String,
    /// The version of Debian's own hello in it (Debian 12's): a host of
    /// another release has a later one in its archive, so a role pins
    /// this one to get it from here.
    hello_version: String,
    _server: crate::artifacts::Releases,
    _dir: tempfile::TempDir,
}

impl LocalRepository {
    fn serve(host: &BootedHost) -> LocalRepository {
        let debs = std::env::var_os("MATRIXCTL_REPOSITORY_DEBS")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/var/cache/matrixctl/repository-debs".into());
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let pool = root.join("pool");
        std::fs::create_dir_all(&pool).unwrap();
        let mut copied = 0;
        for entry in std::fs::read_dir(&debs).into_iter().flatten().flatten() {
            std::fs::copy(entry.path(), pool.join(entry.file_name())).unwrap();
            copied += 1;
        }
        assert!(
            copied > 0,
            "no .deb in {}: run scripts/test, which downloads them",
            debs.display()
        );
        // And two later versions of hello, for a pin to move between, in
        // this repository alone: Debian's .deb with `+matrixctlN` added
        // to its version.
        let hello = std::fs::read_dir(&pool)
            .unwrap()
            .flatten()
            .map(|entry| entry.path())
            .find(|path| {
                path.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("hello_")
            })
            .expect("Debian's hello .deb");
        let hello_version = Command::new("dpkg-deb")
            .args(["-f".as_ref(), hello.as_os_str(), "Version".as_ref()])
            .output()
            .unwrap();
        let hello_version = String::from_utf8_lossy(&hello_version.stdout)
            .trim()
            .to_string();
        let dpkg_deb = |args: &[&std::ffi::OsStr]| {
            let status = Command::new("dpkg-deb").args(args).status().unwrap();
            assert!(status.success(), "dpkg-deb {args:?}");
        };
        // A third, whose configuration can be held in the middle (for a
        // test to interrupt an install at a known point): with
        // /run/hello-hold present, its postinst says it started and waits
        // (at most 2 minutes) for /run/hello-go.
        for suffix in ["+matrixctl1", "+matrixctl2", "+matrixctl3"] {
            let unpacked = dir.path().join(format!("hello{suffix}"));
            dpkg_deb(&["-R".as_ref(), hello.as_os_str(), unpacked.as_os_str()]);
            if suffix == "+matrixctl3" {
                let postinst = unpacked.join("DEBIAN/postinst");
                std::fs::write(
                    &postinst,
                    "#!/bin/sh\nset -e\n\
                     if [ \"$1\" = configure ] && [ -e /run/hello-hold ]; then\n\
                     \x20   touch /run/hello-configuring\n\
                     \x20   i=0\n\
                     \x20   while [ ! -e /run/hello-go ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done\n\
                     fi\n",
                )
                .unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&postinst, std::fs::Permissions::from_mode(0o755))
                    .unwrap();
            }
            let control = unpacked.join("DEBIAN/control");
            let text: String = std::fs::read_to_string(&control)
                .unwrap()
                .lines()
                .map(|line| match line.strip_prefix("Version: ") {
                    Some(version) => format!("Version: {version}{suffix}\n"),
                    None => format!("{line}\n"),
                })
                .collect();
            std::fs::write(&control, text).unwrap();
            let built = pool.join(format!("hello{suffix}.deb"));
            dpkg_deb(&["-b".as_ref(), unpacked.as_os_str(), built.as_os_str()]);
        }
        let packages = Command::new("dpkg-scanpackages")
            // -m: every version of a package, not only the newest.
            .args(["-m", "pool", "/dev/null"])
            .current_dir(&root)
            .output()
            .expect("dpkg-scanpackages runs (apt-get install dpkg-dev)");
        assert!(packages.status.success());
        let lists = root.join("dists/local/main/binary-amd64");
        std::fs::create_dir_all(&lists).unwrap();
        std::fs::write(lists.join("Packages"), &packages.stdout).unwrap();
        use sha2::Digest;
        let digest: String = sha2::Sha256::digest(&packages.stdout)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(
            root.join("dists/local/Release"),
            format!(
                "Origin: matrixctl tests\nSuite: local\nCodename: local\nArchitectures: amd64\nComponents: main\n\
                 SHA256:\n {digest} {} main/binary-amd64/Packages\n",
                packages.stdout.len()
            ),
        )
        .unwrap();
        let gnupg = dir.path().join("gnupg");
        std::fs::create_dir_all(&gnupg).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).unwrap();
        let gpg = |args: &[&str]| {
            let output = Command::new("gpg")
                .arg("--homedir")
                .arg(&gnupg)
                .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
                .args(args)
                .output()
                .expect("gpg runs (apt-get install gpg)");
            assert!(
                output.status.success(),
                "gpg {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).to_string()
        };
        gpg(&[
            "--quick-gen-key",
            "matrixctl test repository",
            "ed25519",
            "sign",
            "never",
        ]);
        let fingerprint = gpg(&["--with-colons", "--fingerprint"])
            .lines()
            .find_map(|line| line.strip_prefix("fpr:"))
            .map(|rest| rest.trim_matches(':').to_string())
            .unwrap();
        let key = gpg(&["--armor", "--export"]);
        let release = root.join("dists/local/Release");
        gpg(&[
            "--clearsign",
            "-o",
            root.join("dists/local/InRelease").to_str().unwrap(),
            release.to_str().unwrap(),
        ]);
        // On the test machine's end of the host's link: 10.231.N.1.
        let server = crate::artifacts::Releases::serve(host, &root);
        LocalRepository {
            fingerprint,
            key,
            url: format!("{}/", server.url),
            hello_version,
            _server: server,
            _dir: dir,
        }
    }
}

impl LocalRepository {
    /// A role manifest's `repositories:` block naming this repository,
    /// its key pinned as `fingerprint`.
    fn manifest_block(&self, fingerprint: &str) -> String {
        let key: String = self
            .key
            .lines()
            .map(|line| format!("      {line}\n"))
            .collect();
        format!(
            "repositories:\n  - name: local\n    url: {}\n    suite: local\n    fingerprint: {fingerprint}\n    key: |\n{key}",
            self.url
        )
    }
}

#[test]
fn a_package_comes_from_a_repository_whose_key_is_pinned_by_fingerprint() {
    let host = BootedHost::up("mcrepo");
    let repository = LocalRepository::serve(&host);
    let sandbox = host.inventory(
        "repo.example",
        "synapse_enabled: false\nwellknown_enabled: false\n",
    );
    let role = |fingerprint: &str| {
        sandbox.write(
            "roles/greeter.yaml",
            &format!(
                "description: a package from a repository of its own\n{}packages:\n  - name: hello\n    version: {}\n",
                repository.manifest_block(fingerprint),
                repository.hello_version
            ),
        );
    };
    // A key that is not the pinned one never reaches the host.
    role("0000 0000 0000 0000 0000  0000 0000 0000 0000 0000");
    let refused = with_roles(&sandbox, &["plan", "inventory"]);
    assert_eq!(refused.code, 1, "{}", refused.transcript());
    assert!(
        refused.stderr.contains(&format!(
            "repository `local`: the key's fingerprint is {}, not the pinned 0000000000000000000000000000000000000000",
            repository.fingerprint
        )),
        "{}",
        refused.stderr
    );
    assert_eq!(
        host.ssh("test -e /etc/apt/sources.list.d/matrixctl-local.sources")
            .status
            .code(),
        Some(1)
    );

    // Pinned as people write fingerprints (lowercase, spaces): accepted.
    let spaced: String = repository
        .fingerprint
        .to_lowercase()
        .as_bytes()
        .chunks(4)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    role(&spaced);
    let plan = with_roles(&sandbox, &["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert_plan_says(
        &plan.stdout,
        &[
            &format!(
                "  + repository local  (role greeter, {} local main, key {})",
                repository.url, repository.fingerprint
            ),
            &format!(
                "  + package hello  (role greeter, {})",
                repository.hello_version
            ),
        ],
    );
    let apply = with_roles(&sandbox, &["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_eq!(host.run("hello"), "Hello, world!");
    assert_eq!(
        with_roles(&sandbox, &["plan", "--detailed-exitcode", "inventory"]).code,
        0
    );
}

#[test]
fn a_service_that_does_not_stay_up_fails_the_apply_and_its_unit_is_rolled_back() {
    let host = BootedHost::up("mcbroken");
    let sandbox = host.inventory(
        "broken.example",
        "synapse_enabled: false\nwellknown_enabled: false\n",
    );
    sandbox.write(
        "roles/broken.yaml",
        "description: a service whose program exits at once\n\
         files:\n  - template: broken/broken.service.j2\n    dest: /etc/systemd/system/broken.service\n    mode: \"0644\"\n\
         services:\n  - name: broken\n",
    );
    sandbox.write(
        "roles/templates/broken/broken.service.j2",
        "[Service]\nExecStart=/bin/false\nRestart=on-failure\nRestartSec=0.1\n\n[Install]\nWantedBy=multi-user.target\n",
    );
    let apply = with_roles(&sandbox, &["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    assert!(
        apply
            .stdout
            .contains("broken did not stay up after it started"),
        "{}",
        apply.stdout
    );
    assert!(
        apply
            .stdout
            .contains("rolled back: every file is as it was before this apply (checked)"),
        "{}",
        apply.stdout
    );
    assert_eq!(
        host.ssh("test -e /etc/systemd/system/broken.service")
            .status
            .code(),
        Some(1),
        "its unit file is gone again"
    );
    // And systemd forgot it: not enabled through a dangling link, not
    // restarted over and over, not even loaded.
    assert_eq!(
        host.run("find /etc/systemd/system -name broken.service | wc -l"),
        "0",
        "a link to the removed unit is left"
    );
    assert_eq!(
        host.run("systemctl show -p LoadState --value broken.service"),
        "not-found"
    );
    let restarts = host.run("systemctl show -p NRestarts --value broken.service");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        host.run("systemctl is-active broken.service; true"),
        "inactive"
    );
    assert_eq!(
        host.run("systemctl show -p NRestarts --value broken.service"),
        restarts
    );
}

#[test]
fn a_moved_pin_upgrades_one_package_restarts_its_role_and_touches_nothing_else() {
    let host = BootedHost::up("mcpin");
    let repository = LocalRepository::serve(&host);
    let sandbox = host.inventory(
        "pin.example",
        "synapse_enabled: false\nwellknown_enabled: false\n",
    );
    let role = |version: &str| {
        sandbox.write(
            "roles/greeter.yaml",
            &format!(
                "description: a pinned package, its file and its restart\n{}\
                 packages:\n  - name: hello\n    version: \"{version}\"\n\
                 files:\n  - template: greeter/greeter.conf.j2\n    dest: /etc/greeter.conf\n    mode: \"0644\"\n\
                 handlers:\n  - name: restart greeter\n    command: date +%s%N >> /root/greeter-restarts\n",
                repository.manifest_block(&repository.fingerprint)
            ),
        );
    };
    sandbox.write(
        "roles/templates/greeter/greeter.conf.j2",
        "greeting = hello\n",
    );
    let restarts = || host.run("wc -l < /root/greeter-restarts");
    role("2.10-3+matrixctl1");
    let first = with_roles(&sandbox, &["apply", "--yes", "inventory"]);
    assert_eq!(first.code, 0, "{}", first.transcript());
    assert_eq!(
        host.run("dpkg-query -W -f '${Version}' hello"),
        "2.10-3+matrixctl1"
    );
    assert_eq!(restarts(), "1");
    let config_changed = host.run("stat -c %Y /etc/greeter.conf");

    role("2.10-3+matrixctl2");
    let plan = with_roles(&sandbox, &["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    let changes: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|line| line.starts_with("  ~ ") || line.starts_with("  + "))
        .collect();
    assert_eq!(
        changes,
        ["  ~ package hello  (role greeter, 2.10-3+matrixctl1 → 2.10-3+matrixctl2)"],
        "{}",
        plan.stdout
    );
    let upgrade = with_roles(&sandbox, &["apply", "--yes", "inventory"]);
    assert_eq!(upgrade.code, 0, "{}", upgrade.transcript());
    assert_eq!(
        host.run("dpkg-query -W -f '${Version}' hello"),
        "2.10-3+matrixctl2"
    );
    assert_eq!(restarts(), "2", "restarted once, after the upgrade");
    assert_eq!(host.run("stat -c %Y /etc/greeter.conf"), config_changed);
    assert_eq!(
        with_roles(&sandbox, &["plan", "--detailed-exitcode", "inventory"]).code,
        0
    );
}

#[test]
fn another_nftables_table_and_an_nginx_site_of_the_host_s_own_survive_every_apply() {
    let host = BootedHost::up("mcneighbor");
    // What the host ran before matrixctl came: a shop on nginx, and the
    // tables of other programs (fail2ban's kind, and a NAT one as Docker
    // keeps).
    host.run(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx nftables > /dev/null 2>&1 \
         && mkdir -p /srv/shop && echo 'the shop' > /srv/shop/index.html \
         && printf 'server {\\n    listen 80;\\n    server_name shop.example;\\n    root /srv/shop;\\n}\\n' > /etc/nginx/sites-enabled/shop \
         && systemctl reload nginx \
         && nft add table inet f2b-table \
         && nft add chain inet f2b-table f2b-chain '{ type filter hook input priority -1; policy accept; }' \
         && nft add rule inet f2b-table f2b-chain ip saddr 192.0.2.7 drop \
         && nft add table ip nat \
         && nft add chain ip nat POSTROUTING '{ type nat hook postrouting priority srcnat; policy accept; }'",
    );
    let theirs = || {
        (
            host.run("nft list table inet f2b-table"),
            host.run("nft list table ip nat"),
        )
    };
    let before = theirs();
    let shop = || {
        let page = Command::new("curl")
            .args(["-s", "--max-time", "10", "--resolve"])
            .arg(format!("shop.example:80:{}", host.address))
            .arg("http://shop.example/")
            .output()
            .expect("curl runs (apt-get install curl)");
        String::from_utf8_lossy(&page.stdout).trim().to_string()
    };
    assert_eq!(shop(), "the shop");

    let certificates = tempfile::tempdir().unwrap();
    let (cert, key) =
        crate::webserver::certificate(certificates.path(), &["matrix.neighbours.example"]);
    std::fs::rename(&cert, certificates.path().join("cert.pem")).unwrap();
    std::fs::rename(&key, certificates.path().join("key.pem")).unwrap();
    host.copy_in(certificates.path(), "/etc/ssl/matrix");
    let vars = |federation_port: u16| {
        format!(
            "synapse_enabled: false\nwebserver: nginx\nfirewall: nftables\nfederation_port: {federation_port}\n\
             tls_certificate: /etc/ssl/matrix/cert.pem\ntls_certificate_key: /etc/ssl/matrix/key.pem\n"
        )
    };
    let sandbox = host.inventory("neighbours.example", &vars(8448));
    let first = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(first.code, 0, "{}", first.transcript());
    assert_eq!(theirs(), before, "the first apply left their tables alone");
    assert_eq!(shop(), "the shop");
    assert!(
        host.run("nft list table inet matrixctl")
            .contains("tcp dport 8448 accept")
    );

    // A change that reloads both nginx and the ruleset.
    sandbox.write("inventory/group_vars/all.yaml", &{
        let all =
            std::fs::read_to_string(sandbox.path().join("inventory/group_vars/all.yaml")).unwrap();
        all.replace("federation_port: 8448", "federation_port: 8449")
    });
    let second = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(second.code, 0, "{}", second.transcript());
    assert!(
        second.stdout.contains("/etc/nftables.conf"),
        "{}",
        second.stdout
    );
    assert_eq!(theirs(), before, "the second apply left their tables alone");
    assert_eq!(shop(), "the shop");
    let ours = host.run("nft list table inet matrixctl");
    assert!(ours.contains("tcp dport 8449 accept"), "{ours}");
    assert!(!ours.contains("8448"), "{ours}");
    // matrixctl filters traffic to this host only: containers' and VMs'
    // forwarded traffic is not its to drop.
    assert!(!ours.contains("hook forward"), "{ours}");

    // And after a reboot, the boot loads matrixctl's table next to theirs
    // (theirs are their programs' to restore), and the shop is up.
    host.reboot();
    assert!(host.run("nft list tables").contains("table inet matrixctl"));
    assert_eq!(shop(), "the shop");
    assert_eq!(sandbox.plan_exit_code(None), 0);
}

/// Where a test interrupts an install.
#[derive(Clone, Copy, Debug)]
enum Interruption {
    /// matrixctl is killed while the host installs: the host's run goes on
    /// without it.
    Matrixctl,
    /// The host's run itself, apt and dpkg are killed mid-install (an
    /// OOM kill, a lost host): dpkg is left half-configured.
    HostRun,
}

/// Interrupts an apply while dpkg configures a package, and checks that
/// the next apply converges: the package installed, the role's file in
/// place, no install guard left behind, and the plan after clean.
fn an_interrupted_install_converges_on_the_next_apply(name: &str, interruption: Interruption) {
    let host = BootedHost::up(name);
    let repository = LocalRepository::serve(&host);
    let sandbox = host.inventory(
        "killed.example",
        "synapse_enabled: false\nwellknown_enabled: false\n",
    );
    sandbox.write(
        "roles/greeter.yaml",
        &format!(
            "description: a package whose install is interrupted, and its file\n{}\
             packages:\n  - name: hello\n    version: \"2.10-3+matrixctl3\"\n\
             files:\n  - template: greeter/greeter.conf.j2\n    dest: /etc/greeter.conf\n    mode: \"0644\"\n",
            repository.manifest_block(&repository.fingerprint)
        ),
    );
    sandbox.write(
        "roles/templates/greeter/greeter.conf.j2",
        "greeting = hello\n",
    );
    host.run("touch /run/hello-hold");
    let mut apply = Command::new(env!("CARGO_BIN_EXE_matrixctl"))
        .args(["--roles", "roles", "apply", "--yes", "inventory"])
        .current_dir(sandbox.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while host.ssh("test -e /run/hello-configuring").status.code() != Some(0) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the install never reached hello's postinst"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        host.ssh("test -e /etc/greeter.conf").status.code(),
        Some(1),
        "no file is in place while packages install"
    );
    apply.kill().unwrap();
    apply.wait().unwrap();
    match interruption {
        Interruption::Matrixctl => {
            // Without matrixctl, the host's run finishes the install and
            // the rest of the apply once dpkg may go on.
            host.run("touch /run/hello-go");
            let started = Instant::now();
            while host.ssh("ls /var/lib/matrixctl/runs/*.code").status.code() != Some(0) {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "the host's run never finished"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Interruption::HostRun => {
            // The run's whole session: its shell, apt-get, dpkg, the
            // postinst.
            host.run(
                "sid=$(ps -o sid= -p \"$(cat /var/lib/matrixctl/runs/*.pid)\" | tr -d ' ') \
                 && pkill -KILL -s \"$sid\"",
            );
            assert_eq!(
                host.run("dpkg-query -W -f '${db:Status-Status}' hello"),
                "half-configured"
            );
            host.run("touch /run/hello-go");
        }
    }

    let next = with_roles(&sandbox, &["apply", "--yes", "inventory"]);
    assert_eq!(next.code, 0, "{interruption:?}: {}", next.transcript());
    let said = match interruption {
        Interruption::Matrixctl => {
            "  ! an earlier apply finished on the host after matrixctl stopped waiting: it was applied"
        }
        Interruption::HostRun => {
            "  ~ package hello  (role greeter, half-configured 2.10-3+matrixctl3 → 2.10-3+matrixctl3: an interrupted install, finished by this apply)"
        }
    };
    assert_plan_says(&next.stdout, &[said]);
    assert_eq!(
        host.run("dpkg-query -W -f '${db:Status-Status} ${Version}' hello"),
        "installed 2.10-3+matrixctl3"
    );
    assert_eq!(host.run("cat /etc/greeter.conf"), "greeting = hello");
    assert_eq!(
        host.ssh("test -e /usr/sbin/policy-rc.d").status.code(),
        Some(1),
        "{interruption:?}: the install guard is gone"
    );
    let plan = with_roles(&sandbox, &["plan", "--detailed-exitcode", "inventory"]);
    assert_eq!(plan.code, 0, "{interruption:?}: {}", plan.transcript());
}

#[test]
fn killing_matrixctl_during_an_install_leaves_the_host_to_finish_and_the_next_apply_converges() {
    an_interrupted_install_converges_on_the_next_apply("mckillctl", Interruption::Matrixctl);
}

#[test]
fn killing_the_host_s_run_mid_install_leaves_dpkg_half_done_and_the_next_apply_finishes_it() {
    an_interrupted_install_converges_on_the_next_apply("mckillrun", Interruption::HostRun);
}

/// `synapse_install: packages` as a plan (the matrix.org repository is
/// not reachable from these machines; the apt path itself is proven by
/// the local repository's tests): the repository with its pinned key, the
/// package and its service, and nothing the package brings itself.
#[test]
fn synapse_from_packages_plans_the_matrix_org_repository_its_package_and_service() {
    let host = BootedHost::up("mcsynpkg");
    // A key of the test's own stands in for matrix.org's, pinned as such.
    let repository = LocalRepository::serve(&host);
    let key: String = repository
        .key
        .lines()
        .map(|line| format!("  {line}\n"))
        .collect();
    // The build for the host's own release, which the repository's suite
    // follows.
    let suite = &host.suite;
    let vars = format!(
        "synapse_install: packages\nsynapse_package_version: 1.163.2+{suite}1\n\
         database:\n  engine: sqlite\n  sqlite_path: /var/lib/matrix-synapse/homeserver.db\n"
    );
    let without_key = host.inventory("pkg.example", &vars);
    let refused = without_key.run(&["plan", "inventory"]);
    assert_eq!(refused.code, 1, "{}", refused.transcript());
    assert!(
        refused.stderr.contains(
            "`synapse_install: packages` needs the matrix.org repository's key in synapse_repository_key"
        ),
        "{}",
        refused.stderr
    );
    let sandbox = host.inventory(
        "pkg.example",
        &format!(
            "{vars}synapse_repository_fingerprint: {}\nsynapse_repository_key: |\n{key}",
            repository.fingerprint
        ),
    );
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert_plan_says(
        &plan.stdout,
        &[
            &format!(
                "  + repository matrix-org  (role synapse, https://packages.matrix.org/debian/ {suite} main, key {})",
                repository.fingerprint
            ),
            &format!("  + package matrix-synapse-py3  (role synapse, 1.163.2+{suite}1)"),
            "  ~ service matrix-synapse  (role synapse, enable, start)",
        ],
    );
    for brought_by_the_package in [
        "  + venv ",
        "  + user ",
        "  + group ",
        "  + /etc/systemd/system/matrix-synapse.service",
    ] {
        assert!(
            !plan.stdout.contains(brought_by_the_package),
            "{brought_by_the_package}\n{}",
            plan.stdout
        );
    }
}

/// Postmoogle ships no package and no wheel, and its releases cannot be
/// fetched on these machines: a stand-in program, served as a release
/// from the test machine and fetched by matrixctl as Postmoogle's
/// (`postmoogle_release`, pinned by its SHA-256), proves what matrixctl
/// gives it (its own account, its environment, a writable data directory,
/// port 25 without root). The environment file's contents are checked by
/// the render tests.
#[test]
fn a_postmoogle_release_runs_as_its_own_account_on_port_25() {
    let host = BootedHost::up("mcmail");
    host.run(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 > /dev/null 2>&1",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("postmoogle"),
        "#!/usr/bin/python3\n\
         # Stands in for Postmoogle: reads its environment, writes its\n\
         # database in its working directory, answers SMTP's greeting on 25.\n\
         import os, socket\n\
         login = os.environ['POSTMOOGLE_LOGIN']\n\
         open(os.path.basename(os.environ['POSTMOOGLE_DB_DSN']), 'a').close()\n\
         server = socket.socket()\n\
         server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         server.bind(('0.0.0.0', 25))\n\
         server.listen()\n\
         while True:\n\
         \x20   conn, _ = server.accept()\n\
         \x20   conn.sendall(('220 stand-in for ' + login + '\\r\\n').encode())\n\
         \x20   conn.close()\n",
    )
    .unwrap();
    let sha256 = crate::artifacts::sha256(&dir.path().join("postmoogle"));
    let releases = crate::artifacts::Releases::serve(&host, dir.path());
    let sandbox = host.inventory(
        "mail.example",
        &format!(
            "synapse_enabled: false\nwellknown_enabled: false\n\
             bridges:\n  postmoogle:\n    login: mailbot\n\
             postmoogle_release:\n  version: 0.0.1-stand-in\n  url: {}/postmoogle\n  sha256: {sha256}\n",
            releases.url
        ),
    );
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert_plan_says(
        &plan.stdout,
        &[
            "  + user postmoogle  (role postmoogle, group postmoogle, home /var/lib/postmoogle)",
            "  ~ service postmoogle  (role postmoogle, enable, start)",
            "  + artifact postmoogle  (role postmoogle, download 0.0.1-stand-in, current → 0.0.1-stand-in)",
        ],
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    let greeting = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .arg(format!("telnet://{}:25", host.address))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("curl runs (apt-get install curl)");
    assert_eq!(
        String::from_utf8_lossy(&greeting.stdout).trim(),
        "220 stand-in for mailbot",
        "{}",
        host.run("journalctl -u postmoogle -n 20 --no-pager")
    );
    assert_eq!(
        host.run("stat -c %U /proc/$(systemctl show -p MainPID --value postmoogle)"),
        "postmoogle"
    );
    assert_eq!(
        host.run(
            "stat -c '%U:%G %a' /etc/postmoogle/postmoogle.env /var/lib/postmoogle/postmoogle.db"
        ),
        "root:postmoogle 640\npostmoogle:postmoogle 644"
    );
    assert_next_apply_changes_nothing(&host, &sandbox, &["postmoogle"]);
}

/// Synapse on the host's own PostgreSQL, from an empty host in one apply:
/// the server installed, the database made as Synapse requires it, owned
/// by its user, whose password Synapse's TCP connection proves.
#[test]
fn synapse_gets_a_postgresql_database_made_as_it_requires_and_never_altered() {
    let host = BootedHost::up("mcpostgres");
    host.copy_wheels(&["synapse"]);
    let vars = "synapse_install: venv\nsynapse_wheels: /srv/wheels\n";
    let sandbox = host.inventory("pg.example", vars);
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert_plan_says(
        &plan.stdout,
        &[
            "creates database synapse (a failed apply does not drop it)",
            "  + package postgresql  (role postgresql)",
            "  + database synapse  (role synapse, owner synapse, UTF8, collation C)",
            "  ~ service postgresql  (role postgresql, enable, start)",
        ],
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(
        apply.code,
        0,
        "{}\n{}",
        apply.transcript(),
        host.ssh("journalctl -u matrix-synapse -n 30 --no-pager")
            .stdout
            .escape_ascii()
    );
    let psql = |sql: &str| {
        host.run(&format!(
            "cd / && runuser -u postgres -- psql -XAtc \"{sql}\""
        ))
    };
    assert_eq!(
        psql(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype, pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'synapse'"
        ),
        "UTF8|C|C|synapse"
    );
    // Only its owner may connect: another login role on the server (another
    // application's, or a customer's) may not, whatever its password.
    assert_eq!(
        psql("SELECT has_database_privilege('public', 'synapse', 'CONNECT')"),
        "f"
    );
    // Synapse made its schema there, through TCP with its password.
    let started = Instant::now();
    loop {
        let health = host.ssh(
            "/opt/venvs/matrix-synapse/bin/python -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8008/health').read().decode())\"",
        );
        if String::from_utf8_lossy(&health.stdout).trim() == "OK" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Synapse never answered /health:\n{}",
            host.run("journalctl -u matrix-synapse -n 30 --no-pager")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        host.run(
            "cd / && runuser -u postgres -- psql -XAt -d synapse -c \"SELECT tableowner FROM pg_tables WHERE tablename = 'users'\""
        ),
        "synapse"
    );
    assert_next_apply_changes_nothing(&host, &sandbox, &["matrix-synapse", "postgresql"]);

    // A database that is not as Synapse requires is refused, never altered.
    psql(
        "CREATE DATABASE other OWNER synapse LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' TEMPLATE template0",
    );
    let own = sandbox.path().join("inventory/host_vars/pg.example.yaml");
    let ssh = std::fs::read_to_string(&own).unwrap();
    std::fs::write(&own, format!("{ssh}database:\n  name: other\n")).unwrap();
    let refused = sandbox.run(&["plan", "inventory"]);
    assert_eq!(refused.code, 1, "{}", refused.transcript());
    assert!(
        refused.stdout.contains(
            "database other exists with encoding UTF8, collation C.UTF-8 and ctype C.UTF-8"
        ),
        "{}",
        refused.stdout
    );

    // PostgreSQL stopped: the plan cannot look, and says so; the apply
    // starts it and finds the wrong database, with the fix.
    host.run("systemctl stop postgresql");
    let blind = sandbox.run(&["plan", "inventory"]);
    assert!(
        blind.stdout.contains(
            "  + database other  (role synapse, owner synapse, UTF8, collation C; PostgreSQL is installed but did not answer (stopped?)"
        ),
        "{}",
        blind.stdout
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    assert!(
        apply.stdout.contains("matrixctl never alters a database: dump it, recreate it with `CREATE DATABASE \"other\" OWNER \"synapse\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`"),
        "{}",
        apply.stdout
    );

    // A login role made by hand, with a password of its own: matrixctl
    // sets none on a role it did not create, so Synapse could not log in.
    // The plan tries the derived password and says what to do.
    host.run("systemctl start postgresql");
    psql("CREATE ROLE handmade LOGIN PASSWORD 'typed-by-hand'");
    std::fs::write(
        &own,
        format!("{ssh}database:\n  name: handmade\n  user: handmade\n"),
    )
    .unwrap();
    let refused = sandbox.run(&["plan", "inventory"]);
    assert_eq!(refused.code, 1, "{}", refused.transcript());
    assert!(
        refused.stdout.contains(
            "PostgreSQL's login role handmade exists, and the password matrixctl derives for it does not log in"
        ),
        "{}",
        refused.stdout
    );
    // Given the role's password, the plan goes ahead.
    std::fs::write(
        &own,
        format!(
            "{ssh}database:\n  name: handmade\n  user: handmade\nsecrets:\n  database_password: typed-by-hand\n"
        ),
    )
    .unwrap();
    let accepted = sandbox.run(&["plan", "inventory"]);
    assert_eq!(accepted.code, 0, "{}", accepted.transcript());
}

/// A certificate from an ACME CA through real HTTP-01, on a fresh host in
/// one apply: nginx starts on a placeholder, serves the challenge, and
/// certbot's copy replaces the placeholder; a renewal swaps it and reloads
/// nginx, restarting nothing.
#[test]
fn a_certificate_the_ca_cannot_issue_yet_leaves_the_placeholder_serving_and_rolls_nothing_back() {
    // Before the name's DNS record exists: the CA cannot reach the host.
    let host = BootedHost::up("mcnodns");
    let pebble = crate::pebble::Pebble::serve(&host);
    let trust = tempfile::tempdir().unwrap();
    std::fs::copy(&pebble.endpoint_ca, trust.path().join("ca.pem")).unwrap();
    host.copy_in(trust.path(), "/etc/ssl/acme-test");
    let sandbox = host.inventory(
        "nodns.example",
        &format!(
            "synapse_enabled: false\nwellknown_enabled: false\n\
             webserver: nginx\ncertificates: acme\nacme_directory: {}\n\
             acme_email: ops@nodns.example\nacme_ca_bundle: /etc/ssl/acme-test/ca.pem\n",
            pebble.directory
        ),
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    assert!(
        apply.stdout.contains("nodns.example: applied (")
            && apply.stdout.contains(
                "nodns.example: STILL TO DO (nothing rolled back)\n    no certificate for matrix.nodns.example yet"
            )
            && apply.stdout.contains("is matrix.nodns.example in DNS, pointing at this host"),
        "{}",
        apply.stdout
    );
    assert!(!apply.stdout.contains("Traceback"), "{}", apply.stdout);
    // Everything else is in place, serving the placeholder.
    assert_eq!(host.run("systemctl is-active nginx"), "active");
    assert!(
        host.run(
            "openssl x509 -noout -subject -in /etc/matrixctl/tls/matrix.nodns.example/fullchain.pem"
        )
        .contains("placeholder")
    );
    let plan = sandbox.run(&["plan", "inventory"]);
    assert!(
        plan.stdout.contains(
            "  + certificate matrix.nodns.example  (role acme, ACME, replacing the placeholder)"
        ),
        "{}",
        plan.stdout
    );
    // Once the record exists, the next apply gets it.
    pebble.resolve("matrix.nodns.example", &host.address);
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert!(
        !host
            .run("openssl x509 -noout -subject -in /etc/matrixctl/tls/matrix.nodns.example/fullchain.pem")
            .contains("placeholder")
    );
}

#[test]
fn an_acme_certificate_replaces_the_placeholder_in_one_apply_and_renews_in_place() {
    let host = BootedHost::up("mcacme");
    let pebble = crate::pebble::Pebble::serve(&host);
    pebble.resolve("matrix.acme.example", &host.address);
    host.copy_wheels(&["synapse"]);
    let trust = tempfile::tempdir().unwrap();
    std::fs::copy(&pebble.endpoint_ca, trust.path().join("ca.pem")).unwrap();
    host.copy_in(trust.path(), "/etc/ssl/acme-test");
    let sandbox = host.inventory(
        "acme.example",
        &format!(
            "synapse_install: venv\nsynapse_wheels: /srv/wheels\n\
             database:\n  engine: sqlite\n  sqlite_path: /var/lib/matrix-synapse/homeserver.db\n\
             webserver: nginx\ncertificates: acme\nacme_directory: {}\n\
             acme_email: ops@acme.example\nacme_ca_bundle: /etc/ssl/acme-test/ca.pem\n",
            pebble.directory
        ),
    );
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert_plan_says(
        &plan.stdout,
        &[
            "  + package certbot  (role acme)",
            "  + placeholder certificate matrix.acme.example  (role acme, generated on the host: /etc/matrixctl/tls/matrix.acme.example/fullchain.pem)",
            "  + certificate matrix.acme.example  (role acme, ACME)",
        ],
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    let root = pebble.root(trust.path());
    let versions = || {
        let answer = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&root)
            .arg("--resolve")
            .arg(format!("matrix.acme.example:443:{}", host.address))
            .arg("https://matrix.acme.example/_matrix/client/versions")
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&answer.stdout),
            String::from_utf8_lossy(&answer.stderr)
        )
    };
    // nginx's reload takes effect a moment after systemctl returns.
    let served = || {
        let started = Instant::now();
        loop {
            let said = versions();
            if said.contains("\"versions\"") || started.elapsed() > Duration::from_secs(10) {
                return said;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let said = served();
    assert!(said.contains("\"versions\""), "{said}");
    assert_next_apply_changes_nothing(&host, &sandbox, &["matrix-synapse", "nginx"]);

    // A renewal forced through certbot: the new certificate is served, and
    // nothing but nginx's reload happened.
    let synapse_started =
        host.run("systemctl show -p ActiveEnterTimestampMonotonic --value matrix-synapse");
    let before = host.run("sha256sum < /etc/matrixctl/tls/matrix.acme.example/fullchain.pem");
    host.run("REQUESTS_CA_BUNDLE=/etc/ssl/acme-test/ca.pem certbot renew --force-renewal --no-random-sleep-on-renew -q");
    assert_ne!(
        host.run("sha256sum < /etc/matrixctl/tls/matrix.acme.example/fullchain.pem"),
        before
    );
    let said = served();
    assert!(said.contains("\"versions\""), "{said}");
    assert_eq!(
        host.run("systemctl show -p ActiveEnterTimestampMonotonic --value matrix-synapse"),
        synapse_started
    );
    assert_eq!(sandbox.plan_exit_code(None), 0);
}

/// The password `matrixctl admin create` printed, shown once.
pub fn admin_password(admin: &crate::support::Run) -> String {
    admin
        .stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("Its password, shown this once (matrixctl keeps no copy): ")
        })
        .unwrap_or_else(|| panic!("no password in: {}", admin.stdout))
        .to_string()
}
