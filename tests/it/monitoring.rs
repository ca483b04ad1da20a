//! Watching the fleet, for real: a booted monitoring machine (role
//! monitoring: Debian's Prometheus and Alertmanager) and two booted
//! homeservers with `metrics` (Synapse, PostgreSQL, nginx, certificates
//! from pebble valid ten days, a firewall). Prometheus reports every
//! target the roles declare up; the exporters answer the monitoring
//! machine and nobody else; a stopped Synapse, the short-lived
//! certificates and a stale backup each reach a webhook receiver run by
//! the test as alerts; `status` shows the stopped service and the
//! expiring certificate.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::booted::BootedHost;
use crate::pebble::Pebble;
use crate::support::{Sandbox, repo};

const WATCH: &str = "watch.example";
const ONE: &str = "one.example";
const TWO: &str = "two.example";

/// An HTTP server on the test machine taking Alertmanager's webhook
/// posts, stopped (its thread joined) when dropped.
struct Webhook {
    url: String,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Webhook {
    fn serve(address: &str) -> Webhook {
        let listener = TcpListener::bind((address, 0)).unwrap();
        let url = format!("http://{}/alerts", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Some(body) = take_post(stream) {
                                received.lock().unwrap().push(body);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })
        };
        Webhook {
            url,
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// How many posts arrived so far: `wait_for` looks only at later ones.
    fn mark(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// The first alert named `name` whose labels mention `about` that
    /// arrives firing after the `since`th post, waited for (bounded).
    fn wait_for(&self, since: usize, name: &str, about: &str) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let found = self.received.lock().unwrap()[since..]
                .iter()
                .find_map(|post| {
                    post["alerts"].as_array()?.iter().find_map(|alert| {
                        (alert["status"] == "firing"
                            && alert["labels"]["alertname"] == name
                            && alert["labels"].to_string().contains(about))
                        .then(|| alert.clone())
                    })
                });
            if let Some(alert) = found {
                return alert;
            }
            assert!(
                started.elapsed() < Duration::from_secs(240),
                "no {name} alert about {about} reached the webhook; it got:\n{:#?}",
                self.received.lock().unwrap()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one HTTP request's JSON body and answers 200.
fn take_post(mut stream: TcpStream) -> Option<serde_json::Value> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    serde_json::from_slice(&body).ok()
}

/// What `host` answers on its own loopback `port` for `path` (bash's
/// /dev/tcp: the host has no HTTP client), as JSON.
fn local_json(host: &BootedHost, port: u16, path: &str) -> serde_json::Value {
    let said = host.run(&format!(
        "bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && printf \"GET {path} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n\" >&3 && cat <&3'"
    ));
    let body = said.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str(body).unwrap_or_else(|error| panic!("{path}: {error}: {said}"))
}

#[test]
fn a_monitoring_machine_scrapes_the_fleet_and_alerts_on_what_breaks() {
    let watch = BootedHost::up("mcwatch");
    let one = BootedHost::up("mcone");
    let two = BootedHost::up("mctwo");
    // Certificates valid ten days: within the alert's fourteen.
    let pebble = Pebble::serve_lasting(&one, 10 * 86_400);
    let services = format!("{}.1", one.address.rsplit_once('.').unwrap().0);
    for host in [&one, &two] {
        watch.link_to(host);
    }
    let routed = Command::new(repo().join("scripts/booted-host"))
        .args(["route", &two.name, &services])
        .output()
        .unwrap();
    assert!(routed.status.success(), "{routed:?}");
    for (name, host) in [(ONE, &one), (TWO, &two)] {
        pebble.resolve(name, &host.address);
        pebble.resolve(&format!("matrix.{name}"), &host.address);
    }
    let trust = tempfile::tempdir().unwrap();
    std::fs::copy(&pebble.endpoint_ca, trust.path().join("ca.pem")).unwrap();
    for host in [&one, &two] {
        host.copy_in(trust.path(), "/etc/ssl/acme-test");
        host.copy_wheels(&["synapse"]);
    }
    let webhook = Webhook::serve(&format!("{}.1", watch.address.rsplit_once('.').unwrap().0));

    let sandbox = Sandbox::empty();
    let mut hosts = String::from("hosts:\n");
    for (name, host) in [(WATCH, &watch), (ONE, &one), (TWO, &two)] {
        hosts.push_str(&format!("  {name}:\n    ssh: root@{}:22\n", host.address));
        let (key, known_hosts) = host.ssh_files();
        let own = match name {
            WATCH => format!(
                "synapse_enabled: false\nwebserver: none\ncertificates: manual\nfirewall: none\nmetrics: false\n\
                 monitoring:\n  address: {}\n  webhook_url: {}\n  scrape_interval: 5s\n  alert_after: 10s\n",
                watch.address, webhook.url
            ),
            ONE => format!(
                "metrics_address: {}\nbackup:\n  repository: /srv/backups/{ONE}\n",
                one.address
            ),
            _ => format!("metrics_address: {}\n", two.address),
        };
        sandbox.write(
            &format!("inv/host_vars/{name}.yaml"),
            &format!(
                "ssh_options:\n  identity_file: {}\n  known_hosts_file: {}\n{own}",
                key.display(),
                known_hosts.display()
            ),
        );
    }
    sandbox.write("inv/hosts.yaml", &hosts);
    sandbox.write(
        "inv/group_vars/all.yaml",
        &format!(
            "host_commands: true\nsynapse_install: venv\nsynapse_wheels: /srv/wheels\n\
             webserver: nginx\ncertificates: acme\nacme_directory: {}\n\
             acme_email: ops@provider.example\nacme_ca_bundle: /etc/ssl/acme-test/ca.pem\n\
             firewall: nftables\nmetrics: true\n",
            pebble.directory
        ),
    );
    sandbox.write(
        "inv/secrets/master.key",
        "booted monitoring test master key, not a secret anywhere\n",
    );
    sandbox.chmod("inv/secrets/master.key", 0o600);

    // The README's "Watching the fleet", as written: apply, then status
    // once things broke.
    let (_, walk) = crate::federation::readme_section_and_commands("## Watching the fleet");
    assert_eq!(walk.len(), 2, "{walk:?}");
    let run = |line: &str| {
        let args: Vec<&str> = line
            .strip_prefix("matrixctl ")
            .unwrap_or_else(|| panic!("not a matrixctl command: {line}"))
            .split_whitespace()
            .collect();
        sandbox.run(&args)
    };
    let apply = run(&walk[0]);
    assert_eq!(
        apply.code,
        0,
        "{}\n{}",
        apply.transcript(),
        watch.run("journalctl -n 40 --no-pager -u prometheus -u prometheus-alertmanager")
    );
    // What went live passed Prometheus's own checks.
    watch.run("promtool check config /etc/prometheus/prometheus.yml");
    watch.run("amtool check-config /etc/prometheus/alertmanager.yml");
    for host in [&one, &two] {
        host.run("systemctl start matrixctl-metrics.service");
    }

    // Every target the roles declare, up, as Prometheus's API says.
    let started = Instant::now();
    let targets = loop {
        let targets = local_json(&watch, 9090, "/api/v1/targets");
        let active = targets["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if active.len() == 8 && active.iter().all(|target| target["health"] == "up") {
            break active;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not every target is up: {targets:#}"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    let mut jobs: Vec<String> = targets
        .iter()
        .map(|target| {
            format!(
                "{} {}",
                target["labels"]["job"].as_str().unwrap(),
                target["labels"]["machine"].as_str().unwrap()
            )
        })
        .collect();
    jobs.sort();
    assert_eq!(
        jobs,
        [
            "nginx one.example",
            "nginx two.example",
            "node one.example",
            "node two.example",
            "postgres one.example",
            "postgres two.example",
            "synapse one.example",
            "synapse two.example",
        ]
    );

    // The exporters answer the monitoring machine alone: not the test
    // machine, one hop away.
    for port in [9100, 9113, 9187, 9000] {
        let address: std::net::SocketAddr = format!("{}:{port}", one.address).parse().unwrap();
        assert!(
            TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_err(),
            "{address} answered another address than the monitoring machine's"
        );
    }

    // While the hosts were being set up, their targets were down: only
    // what arrives from here on counts.
    let since = webhook.mark();
    // A stale backup: one archive, then its record made three days old.
    let made = sandbox.run(&["backup", ONE, "--inventory", "inv"]);
    assert_eq!(made.code, 0, "{}", made.transcript());
    one.run(
        "read -r _ name < /var/lib/matrixctl/borg/newest && \
         echo \"$(($(date +%s) - 259200)) $name\" > /var/lib/matrixctl/borg/newest && \
         systemctl start matrixctl-metrics.service",
    );
    // A stopped Synapse.
    two.run("systemctl stop matrix-synapse");

    let down = webhook.wait_for(since, "SynapseDown", &two.address);
    assert!(
        down["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("Synapse on "),
        "{down:#}"
    );
    // The certificates ended within fourteen days from their issuing on.
    webhook.wait_for(0, "CertificateExpiring", &format!("matrix.{TWO}"));
    webhook.wait_for(since, "BackupStale", &one.address);

    let status = run(&walk[1]);
    assert_eq!(status.code, 2, "{}", status.transcript());
    assert!(
        status.stdout.starts_with(&format!("{TWO}  error\n")),
        "{}",
        status.stdout
    );
    for expected in [
        "  error   services: down: matrix-synapse (inactive)\n",
        &format!("certificates: matrix.{TWO}: expires in 9 days"),
        "backups: ",
    ] {
        assert!(
            status.stdout.contains(expected),
            "{expected}\n{}",
            status.stdout
        );
    }
}
