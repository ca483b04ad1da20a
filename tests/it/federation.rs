//! A customer's server from an empty Debian to federation, in one apply:
//! three booted hosts, one per delegation mode (well-known, SRV, none),
//! each on PostgreSQL with certificates from pebble through real HTTP-01,
//! resolved by a test DNS server (dnsmasq, SRV records included), then
//! checked from outside with pebble's root as the only trusted CA, and
//! joined in one room over federation.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::booted::{
    BootedHost, assert_next_apply_changes_nothing_on, assert_plan_says, fleet_inventory,
};
use crate::pebble::Pebble;
use crate::support::repo;

/// The network of a test with several booted hosts: pebble and the
/// test's DNS on the first host's side of its link (the others route
/// there over their own), a direct link for each pair given, `names`
/// answered by the DNS and by pebble, and every host resolving through
/// the DNS and trusting pebble (its endpoint's CA in /etc/ssl/acme-test).
pub struct TestNet {
    pub pebble: Pebble,
    /// The address the test's services listen on.
    pub services: String,
    pub names: Vec<(String, String)>,
    /// pebble's root, which the test's own clients trust.
    pub root: PathBuf,
    _dns: TestDns,
    _trust: tempfile::TempDir,
}

impl TestNet {
    pub fn up(
        hosts: &[&BootedHost],
        links: &[(&BootedHost, &BootedHost)],
        names: Vec<(String, String)>,
    ) -> TestNet {
        TestNet::with_records(hosts, links, names, &[])
    }

    /// `up`, with more of dnsmasq's records (`--srv-host=...`).
    pub fn with_records(
        hosts: &[&BootedHost],
        links: &[(&BootedHost, &BootedHost)],
        names: Vec<(String, String)>,
        more_records: &[String],
    ) -> TestNet {
        let first = hosts[0];
        let pebble = Pebble::serve(first);
        let services = format!("{}.1", first.address.rsplit_once('.').unwrap().0);
        for (a, b) in links {
            a.link_to(b);
        }
        for host in &hosts[1..] {
            let routed = Command::new(repo().join("scripts/booted-host"))
                .args(["route", &host.name, &services])
                .output()
                .unwrap();
            assert!(
                routed.status.success(),
                "{}",
                String::from_utf8_lossy(&routed.stderr)
            );
        }
        let mut records: Vec<String> = names
            .iter()
            .map(|(name, address)| format!("--host-record={name},{address}"))
            .collect();
        records.extend(more_records.iter().cloned());
        let dns = TestDns::serve(&services, &records);
        for (name, address) in &names {
            pebble.resolve(name, address);
        }
        let trust = tempfile::tempdir().unwrap();
        std::fs::copy(&pebble.endpoint_ca, trust.path().join("ca.pem")).unwrap();
        let root = pebble.root(trust.path());
        for host in hosts {
            host.run(&format!(
                "rm -f /etc/resolv.conf && echo 'nameserver {services}' > /etc/resolv.conf"
            ));
            host.copy_in(trust.path(), "/etc/ssl/acme-test");
        }
        TestNet {
            pebble,
            services,
            names,
            root,
            _dns: dns,
            _trust: trust,
        }
    }

    /// Each server name and its `matrix.` host, at its booted host's
    /// address.
    pub fn names_of(servers: &[(&str, &BootedHost)]) -> Vec<(String, String)> {
        servers
            .iter()
            .flat_map(|(name, host)| {
                [
                    (name.to_string(), host.address.clone()),
                    (format!("matrix.{name}"), host.address.clone()),
                ]
            })
            .collect()
    }

    /// The vars every homeserver of the network needs: certificates from
    /// pebble over ACME, and Synapse told that the network is private and
    /// its CA is pebble; `more_synapse_extra` goes on in synapse_extra
    /// (lines indented by two).
    pub fn homeserver_vars(&self, more_synapse_extra: &str) -> String {
        format!(
            "certificates: acme\nacme_directory: {}\nacme_email: ops@provider.example\n\
             acme_ca_bundle: /etc/ssl/acme-test/ca.pem\n\
             # The test network is private, and its CA is pebble.\n\
             synapse_extra:\n  ip_range_whitelist: [10.231.0.0/16]\n\
             \x20 federation_custom_ca_list: [/etc/ssl/acme-test/pebble-root.pem]\n\
             \x20 trusted_key_servers: []\n{more_synapse_extra}",
            self.pebble.directory
        )
    }

    /// `matrixctl check` of `server` as the network's outside sees it:
    /// through the test's DNS, trusting pebble alone.
    pub fn check(&self, sandbox: &crate::support::Sandbox, server: &str) -> crate::support::Run {
        let dns = format!("{}:53", self.services);
        sandbox.run(&[
            "check",
            "inventory",
            "--limit",
            server,
            "--dns",
            &dns,
            "--ca-file",
            self.root.to_str().unwrap(),
        ])
    }

    /// The test's client, trusting pebble alone, reaching `names` at
    /// their addresses.
    pub fn outside(&self) -> Outside {
        Outside {
            root: self.root.clone(),
            addresses: self.names.clone(),
        }
    }
}

/// dnsmasq on one address of the test machine's, answering only for the
/// test's names (anything else under `example` does not exist), stopped
/// by its pid.
pub struct TestDns {
    dnsmasq: Child,
    /// The port it answers on (53, unless another was asked for).
    pub port: u16,
}

impl TestDns {
    pub fn serve(address: &str, records: &[String]) -> TestDns {
        TestDns::serve_on(address, 53, records)
    }

    /// On `port` of `address`: a test without its own network can have
    /// one on loopback.
    pub fn serve_on(address: &str, port: u16, records: &[String]) -> TestDns {
        let dnsmasq = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--bind-interfaces",
                "--user=root",
                "--pid-file=",
                "--local=/example/",
            ])
            .arg(format!("--listen-address={address}"))
            .arg(format!("--port={port}"))
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq runs (apt-get install dnsmasq-base)");
        let served = TestDns { dnsmasq, port };
        let started = Instant::now();
        while std::net::TcpStream::connect((address, port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "dnsmasq never listened on {address}:{port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        served
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.dnsmasq.id().to_string())
            .status();
        let _ = self.dnsmasq.wait();
    }
}

/// What an HTTPS request from outside got: the status, the headers
/// (lower-case names) and the body as JSON (null when it was not).
pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub json: serde_json::Value,
    pub said: String,
}

/// HTTPS from the test machine, as the outside world sees the hosts:
/// names resolved to the hosts' addresses, pebble's root the only CA.
pub struct Outside {
    pub root: PathBuf,
    pub addresses: Vec<(String, String)>,
}

impl Outside {
    /// Creates `@admin:SERVER_NAME` with `matrixctl admin create` and logs
    /// in as it at `matrix.SERVER_NAME`: its access token.
    pub fn admin(&self, sandbox: &crate::support::Sandbox, server_name: &str) -> String {
        self.admin_at(sandbox, server_name, &format!("matrix.{server_name}"))
    }

    /// `admin`, logging in at the Matrix host `fqdn`.
    pub fn admin_at(
        &self,
        sandbox: &crate::support::Sandbox,
        server_name: &str,
        fqdn: &str,
    ) -> String {
        let user = format!("@admin:{server_name}");
        let created = sandbox.run(&["admin", "create", server_name, &user]);
        assert_eq!(created.code, 0, "{}", created.transcript());
        let password = crate::booted::admin_password(&created);
        let login = self.call(
            "POST",
            &format!("https://{fqdn}/_matrix/client/v3/login"),
            None,
            Some(
                &serde_json::json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "admin"}, "password": password})
                    .to_string(),
            ),
        );
        assert_eq!(login.json["user_id"], user.as_str(), "{}", login.said);
        login.json["access_token"].as_str().unwrap().to_string()
    }

    /// Calls `call` (with the rest) once a second until `done` holds
    /// for its answer, for at most a minute; `what` says what failed.
    pub fn until(
        &self,
        what: &str,
        call: (&str, &str, Option<&str>, Option<&str>),
        done: impl Fn(&Answer) -> bool,
    ) -> Answer {
        let started = Instant::now();
        loop {
            let (method, url, token, body) = call;
            let answer = self.call(method, url, token, body);
            if done(&answer) {
                return answer;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{what}: {}",
                answer.said
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    pub fn call(&self, method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> Answer {
        let authority = url
            .strip_prefix("https://")
            .and_then(|rest| rest.split('/').next())
            .unwrap();
        let (name, port) = authority.split_once(':').unwrap_or((authority, "443"));
        let address = &self
            .addresses
            .iter()
            .find(|(known, _)| known == name)
            .unwrap_or_else(|| panic!("no address for {name}"))
            .1;
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--max-time", "15", "-D", "-", "-X", method])
            .arg("--cacert")
            .arg(&self.root)
            .arg("--resolve")
            .arg(format!("{name}:{port}:{address}"));
        if let Some(token) = token {
            curl.arg("-H").arg(format!("Authorization: Bearer {token}"));
        }
        if let Some(body) = body {
            curl.args(["-H", "Content-Type: application/json", "-d", body]);
        }
        let output = curl
            .arg(url)
            .output()
            .expect("curl runs (apt-get install curl)");
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        Answer {
            status: headers
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or(0),
            headers: headers.to_lowercase(),
            json: serde_json::from_str(body).unwrap_or_default(),
            said: format!("{text}{}", String::from_utf8_lossy(&output.stderr)),
        }
    }

    pub fn get(&self, url: &str) -> Answer {
        self.call("GET", url, None, None)
    }

    /// A GET that must answer 200 with JSON, retried a while (nginx's
    /// reload takes effect a moment after systemctl returns).
    pub fn json(&self, url: &str) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let answer = self.get(url);
            if answer.status == 200 && !answer.json.is_null() {
                return answer.json;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{url}: {}",
                answer.said
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// One customer's host in the test: its server name, Matrix host name and
/// delegation, and the vars that make it so.
struct Customer {
    host: BootedHost,
    server_name: &'static str,
    matrix_fqdn: &'static str,
}

/// When each unit last started, in microseconds since boot.
fn started(host: &BootedHost, units: &[&str]) -> Vec<String> {
    units
        .iter()
        .map(|unit| {
            host.run(&format!(
                "systemctl show -p ActiveEnterTimestampMonotonic --value {unit}"
            ))
        })
        .collect()
}

/// A 64x64 PNG (Synapse thumbnails it), written by Python's standard
/// library into `dir`.
fn picture_png(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("first.png");
    let script = r#"
import struct, sys, zlib
w = h = 64
rows = b"".join(b"\0" + b"".join(bytes((x * 4, y * 4, 128)) for x in range(w)) for y in range(h))
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
open(sys.argv[1], "wb").write(png)
"#;
    let made = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python3 runs (apt-get install python3)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    path
}

/// Where a file the host has says `key: VALUE`, VALUE (unquoted).
fn yaml_value(host: &BootedHost, path: &str, key: &str) -> String {
    host.run(&format!("sed -n 's/^{key}: *//p' {path}"))
        .trim_matches('"')
        .to_string()
}

#[test]
fn three_empty_hosts_become_federating_homeservers_in_one_apply() {
    three_empty_hosts_federate("trixie", ["mcfedwk", "mcfedsrv", "mcfednone"]);
}

#[test]
fn three_empty_debian_12_hosts_become_federating_homeservers_in_one_apply() {
    three_empty_hosts_federate("bookworm", ["mcfedwk2", "mcfedsrv2", "mcfedno2"]);
}

/// Three empty hosts of Debian release `suite`, delegated each its own way
/// (well-known, SRV, none), federate after one apply.
fn three_empty_hosts_federate(suite: &str, names: [&str; 3]) {
    let customers = [
        Customer {
            host: BootedHost::up_on(names[0], suite),
            server_name: "one.example",
            matrix_fqdn: "matrix.one.example",
        },
        Customer {
            host: BootedHost::up_on(names[1], suite),
            server_name: "two.example",
            matrix_fqdn: "matrix.two.example",
        },
        Customer {
            host: BootedHost::up_on(names[2], suite),
            server_name: "three.example",
            matrix_fqdn: "three.example",
        },
    ];
    let [one, two, three] = &customers;
    let mut names = [
        (one.server_name, &one.host.address),
        (one.matrix_fqdn, &one.host.address),
        (two.server_name, &two.host.address),
        (two.matrix_fqdn, &two.host.address),
        (three.server_name, &three.host.address),
    ];
    names.sort();
    let net = TestNet::with_records(
        &[&one.host, &two.host, &three.host],
        &[
            (&one.host, &two.host),
            (&one.host, &three.host),
            (&two.host, &three.host),
        ],
        names
            .iter()
            .map(|(name, address)| (name.to_string(), address.to_string()))
            .collect(),
        &[format!(
            "--srv-host=_matrix-fed._tcp.{},{},8448,10,0",
            two.server_name, two.matrix_fqdn
        )],
    );
    let root = &net.root;
    let scratch = tempfile::tempdir().unwrap();
    for customer in &customers {
        customer.host.copy_wheels(&["synapse"]);
    }
    one.host.copy_wheels(&["heisenbridge", "mautrix-telegram"]);
    let sandbox = fleet_inventory(
        &[
            (
                &one.host,
                one.server_name,
                "serve_base_domain: true\nturn: {}\n\
                 bridges:\n  heisenbridge:\n    admins: [\"@admin:one.example\"]\n\
                 \x20 mautrix_telegram:\n    api_id: 2040\n    api_hash: booted-test-api-hash-not-real\n\
                 heisenbridge_wheels: /srv/wheels\nmautrix_telegram_wheels: /srv/wheels\n",
            ),
            // The base domain has to serve the client file somewhere with
            // a certificate of its own (check asks for it); here the host
            // does, and its server file is absent, so discovery goes on to
            // the SRV record.
            (
                &two.host,
                two.server_name,
                "delegation: srv\nserve_base_domain: true\n",
            ),
            (&three.host, three.server_name, "delegation: none\n"),
        ],
        &format!(
            "synapse_install: venv\nsynapse_wheels: /srv/wheels\nwebserver: nginx\n{}",
            net.homeserver_vars("")
        ),
    );
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert_plan_says(
        &plan.stdout,
        &[
            "  + package postgresql  (role postgresql)",
            "  + database synapse  (role synapse, owner synapse, UTF8, collation C)",
            "  + certificate matrix.one.example  (role acme, ACME)",
            "  + certificate one.example  (role acme, ACME)",
            "  + certificate two.example  (role acme, ACME)",
            "  + certificate three.example  (role acme, ACME)",
            "  + coturn key matrix.one.example  (role acme, generated on the host: /etc/matrixctl/tls/matrix.one.example/privkey.coturn.pem)",
            "  + package coturn  (role turn)",
        ],
    );

    let began = Instant::now();
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    let applied = began.elapsed();

    let outside = Outside {
        root: root.clone(),
        addresses: names
            .iter()
            .map(|(name, address)| (name.to_string(), address.to_string()))
            .collect(),
    };
    // What the world sees, per delegation mode.
    // Well-known: the base domain (served here, with its own certificate)
    // names the Matrix host's federation port.
    let server = outside.json("https://one.example/.well-known/matrix/server");
    assert_eq!(server["m.server"], "matrix.one.example:8448");
    let client = outside.get("https://one.example/.well-known/matrix/client");
    assert_eq!(
        client.json["m.homeserver"]["base_url"], "https://matrix.one.example/",
        "{}",
        client.said
    );
    assert!(
        client.headers.contains("access-control-allow-origin: *"),
        "{}",
        client.headers
    );
    // SRV: no server file; the federation port answers under the server
    // name's certificate (curl checks it against the name it asked for).
    for (customer, federation) in [
        (one, "matrix.one.example:8448"),
        (two, "two.example:8448"),
        (three, "three.example:8448"),
    ] {
        let versions = outside.json(&format!(
            "https://{}/_matrix/client/versions",
            customer.matrix_fqdn
        ));
        assert!(versions["versions"].is_array(), "{versions}");
        let version = outside.json(&format!(
            "https://{federation}/_matrix/federation/v1/version"
        ));
        assert_eq!(version["server"]["name"], "Synapse", "{version}");
        let keys = outside.json(&format!("https://{federation}/_matrix/key/v2/server"));
        assert_eq!(keys["server_name"], customer.server_name, "{keys}");
    }
    assert_eq!(
        outside
            .get("https://matrix.two.example/.well-known/matrix/server")
            .status,
        404,
        "with SRV delegation there is no server file"
    );

    // coturn answers TLS on 5349 with the Matrix host's certificate.
    let turn_tls = || {
        let output = Command::new("openssl")
            .args(["s_client", "-brief", "-verify_return_error", "-connect"])
            .arg(format!("{}:5349", one.host.address))
            .args([
                "-servername",
                "matrix.one.example",
                "-verify_hostname",
                "matrix.one.example",
            ])
            .arg("-CAfile")
            .arg(root)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let (verified, said) = turn_tls();
    assert!(verified, "coturn's TLS: {said}");
    // The bridges run, and Synapse loaded their registrations: each token
    // is its bot's.
    for (unit, registration, bot) in [
        ("heisenbridge", "heisenbridge", "@heisenbridge:one.example"),
        (
            "mautrix-telegram",
            "mautrix-telegram",
            "@telegrambot:one.example",
        ),
    ] {
        assert_eq!(
            one.host.run(&format!("systemctl is-active {unit}")),
            "active"
        );
        let token = yaml_value(
            &one.host,
            &format!("/etc/matrix-synapse/appservices/{registration}.yaml"),
            "as_token",
        );
        let whoami = outside.call(
            "GET",
            "https://matrix.one.example/_matrix/client/v3/account/whoami",
            Some(&token),
            None,
        );
        assert_eq!(whoami.json["user_id"], bot, "{}", whoami.said);
    }

    // Federation: a room on the first host, joined from the two others.
    let tokens: Vec<String> = customers
        .iter()
        .map(|customer| outside.admin_at(&sandbox, customer.server_name, customer.matrix_fqdn))
        .collect();
    let room = outside.call(
        "POST",
        "https://matrix.one.example/_matrix/client/v3/createRoom",
        Some(&tokens[0]),
        Some(r#"{"preset": "public_chat", "room_alias_name": "lobby"}"#),
    );
    let room_id = room.json["room_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", room.said))
        .to_string();
    for (customer, token) in [(two, &tokens[1]), (three, &tokens[2])] {
        let started = Instant::now();
        loop {
            let joined = outside.call(
                "POST",
                &format!(
                    "https://{}/_matrix/client/v3/join/%23lobby%3Aone.example",
                    customer.matrix_fqdn
                ),
                Some(token),
                Some("{}"),
            );
            if joined.json["room_id"] == room_id.as_str() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{} could not join #lobby:one.example: {}\n{}",
                customer.server_name,
                joined.said,
                customer
                    .host
                    .run("journalctl -u matrix-synapse -n 30 --no-pager")
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let members = outside.call(
        "GET",
        &format!("https://matrix.one.example/_matrix/client/v3/rooms/{room_id}/joined_members"),
        Some(&tokens[0]),
        None,
    );
    for member in [
        "@admin:one.example",
        "@admin:two.example",
        "@admin:three.example",
    ] {
        assert!(
            members.json["joined"][member].is_object(),
            "{member}: {}",
            members.said
        );
    }
    // A customer's first picture: uploaded to one host, downloaded and
    // thumbnailed there, and fetched over federation by another.
    let picture = picture_png(scratch.path());
    let upload = Command::new("curl")
        .args(["-sS", "--max-time", "15", "-X", "POST"])
        .arg("--cacert")
        .arg(root)
        .arg("--resolve")
        .arg(format!("matrix.one.example:443:{}", one.host.address))
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", tokens[0]))
        .args(["-H", "Content-Type: image/png", "--data-binary"])
        .arg(format!("@{}", picture.display()))
        .arg("https://matrix.one.example/_matrix/media/v3/upload?filename=first.png")
        .output()
        .unwrap();
    let uploaded: serde_json::Value = serde_json::from_slice(&upload.stdout).unwrap_or_default();
    let content_uri = uploaded["content_uri"].as_str().unwrap_or_else(|| {
        panic!(
            "upload: {}{}\n{}",
            String::from_utf8_lossy(&upload.stdout),
            String::from_utf8_lossy(&upload.stderr),
            one.host.run("ls -ld /var/lib/matrix-synapse/media; journalctl -u matrix-synapse -n 20 --no-pager")
        )
    });
    let media = content_uri.strip_prefix("mxc://").unwrap();
    // GET `path` of `host` as `token`: the body, and "STATUS CONTENT-TYPE".
    let fetch = |host: &str, token: &str, path: &str| {
        let address = &outside
            .addresses
            .iter()
            .find(|(known, _)| known == host)
            .unwrap()
            .1;
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "30", "-o", "-"])
            .args(["-w", "\n%{http_code} %{content_type}"])
            .arg("--cacert")
            .arg(root)
            .arg("--resolve")
            .arg(format!("{host}:443:{address}"))
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("https://{host}/_matrix/client/v1/media/{path}"))
            .output()
            .unwrap();
        let split = output.stdout.iter().rposition(|&b| b == b'\n').unwrap_or(0);
        let (body, status) = output.stdout.split_at(split);
        (
            body.to_vec(),
            String::from_utf8_lossy(status).trim().to_string(),
        )
    };
    let original = std::fs::read(&picture).unwrap();
    let download = format!("download/{media}");
    let (downloaded, status) = fetch("matrix.one.example", &tokens[0], &download);
    assert_eq!(status, "200 image/png");
    assert!(
        downloaded == original,
        "the download differs from the upload"
    );
    let thumbnail = format!("thumbnail/{media}?width=32&height=32&method=scale");
    let (small, status) = fetch("matrix.one.example", &tokens[0], &thumbnail);
    assert!(status.starts_with("200 image/"), "thumbnail: {status}");
    assert!(!small.is_empty() && small != original, "no thumbnail made");
    let (remote, status) = fetch("matrix.two.example", &tokens[1], &download);
    assert_eq!(status, "200 image/png", "over federation");
    assert!(remote == original, "the federated download differs");

    // `matrixctl check` from outside, as the federation tester would, for
    // each delegation mode: everything passes.
    let dns = format!("{}:53", net.services);
    let check = |args: &[&str]| {
        let mut all = vec!["check", "inventory", "--json", "--dns", &dns, "--ca-file"];
        all.push(root.to_str().unwrap());
        all.extend(args);
        let run = sandbox.run(&all);
        let report: serde_json::Value =
            serde_json::from_str(&run.stdout).unwrap_or_else(|_| panic!("{}", run.transcript()));
        (run, report)
    };
    let errors = |report: &serde_json::Value| -> Vec<String> {
        report["reports"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|host| {
                host["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|c| c["status"] == "error")
                    .map(move |c| {
                        format!(
                            "{} {}: {}",
                            host["server_name"].as_str().unwrap(),
                            c["check"].as_str().unwrap(),
                            c["message"].as_str().unwrap()
                        )
                    })
            })
            .collect()
    };
    let (checked, report) = check(&[]);
    assert_eq!(checked.code, 0, "{:?}\n{}", errors(&report), checked.stdout);
    for (server_name, delegated) in [
        ("one.example", "matrix.one.example:8448"),
        ("two.example", "two.example:8448"),
        ("three.example", "three.example:8448"),
    ] {
        let host = report["reports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|host| host["server_name"] == server_name)
            .unwrap();
        let tester = &host["federation_tester"];
        assert_eq!(tester["FederationOK"], true, "{server_name}: {tester}");
        let (address, connection) = tester["ConnectionReports"]
            .as_object()
            .unwrap()
            .iter()
            .next()
            .unwrap();
        assert!(
            address.ends_with(":8448"),
            "{server_name} via {delegated}: {address}"
        );
        assert_eq!(connection["Checks"]["AllChecksOK"], true, "{connection}");
        for check in ["registration", "port", "server_keys", "tls", "cors"] {
            assert!(
                host["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["check"] == check && c["status"] == "ok"),
                "{server_name}: no passing {check} check in {host}"
            );
        }
    }
    let srv = report["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|host| host["server_name"] == "two.example")
        .map(|host| host["federation_tester"]["DNSResult"]["SRVRecords"][0]["Target"].clone());
    assert_eq!(srv, Some("matrix.two.example".into()));

    // Two faults made on the real hosts, each caught with its own message:
    // a stale server file on the base domain (federation still works
    // through it, on 443), and open registration where the inventory says
    // token (a configuration file matrixctl does not manage).
    one.host.run(
        "cp -p /var/www/matrix/.well-known/matrix/server /root/server.saved && \
         printf '{\"m.server\": \"matrix.one.example:443\"}' > /var/www/matrix/.well-known/matrix/server",
    );
    three.host.run(
        "printf 'enable_registration: true\nenable_registration_without_verification: true\nregistration_requires_token: false\n' \
         > /etc/matrix-synapse/conf.d/zz-open.yaml && systemctl restart matrix-synapse",
    );
    outside.json("https://three.example/_matrix/client/versions");
    let (checked, report) = check(&[]);
    assert_eq!(checked.code, 2, "{}", checked.stdout);
    assert_eq!(
        errors(&report),
        [
            r#"one.example served: serves {"m.server":"matrix.one.example:443"}, but matrixctl renders {"m.server":"matrix.one.example:8448"}"#,
            "three.example registration: registration is open to anyone, but the inventory says by invitation token",
        ],
        "{}",
        checked.stdout
    );
    one.host
        .run("mv /root/server.saved /var/www/matrix/.well-known/matrix/server");
    three
        .host
        .run("rm /etc/matrix-synapse/conf.d/zz-open.yaml && systemctl restart matrix-synapse");
    outside.json("https://three.example/_matrix/client/versions");

    eprintln!(
        "three empty hosts: applied in {:.0?}, federating {:.0?} after the apply began",
        applied,
        began.elapsed()
    );

    // Converged: the next plan is clean, the next apply does nothing, and
    // no service restarts.
    let web = ["matrix-synapse", "nginx", "postgresql"];
    assert_next_apply_changes_nothing_on(
        &sandbox,
        &[
            (
                &one.host,
                &[&web[..], &["coturn", "heisenbridge", "mautrix-telegram"]].concat(),
            ),
            (&two.host, &web),
            (&three.host, &web),
        ],
    );

    // A renewal forced through certbot: nginx serves the new certificate,
    // coturn restarts on its copy, Synapse is left alone.
    let certificate = || {
        one.host
            .run("sha256sum < /etc/matrixctl/tls/matrix.one.example/fullchain.pem")
    };
    let (old, synapse, coturn) = (
        certificate(),
        started(&one.host, &["matrix-synapse"]),
        started(&one.host, &["coturn"]),
    );
    one.host.run(
        "REQUESTS_CA_BUNDLE=/etc/ssl/acme-test/ca.pem certbot renew --force-renewal \
         --no-random-sleep-on-renew -q --cert-name matrix.one.example",
    );
    assert_ne!(certificate(), old);
    assert_eq!(started(&one.host, &["matrix-synapse"]), synapse);
    assert_ne!(started(&one.host, &["coturn"]), coturn);
    assert_eq!(
        one.host
            .run("stat -c '%U:%G %a' /etc/matrixctl/tls/matrix.one.example/privkey.coturn.pem"),
        "root:turnserver 640"
    );
    crate::support::wait_until("coturn serves TLS again after its restart", || turn_tls().0);
    assert!(
        outside.json("https://matrix.one.example/_matrix/client/versions")["versions"].is_array()
    );
    assert_eq!(sandbox.plan_exit_code(None), 0);

    if suite == "trixie" {
        let lost_and_restored = LostServer {
            sandbox: &sandbox,
            outside: &outside,
            lost: &one.host,
            repository: &two.host,
            room_id: &room_id,
            tokens: &tokens,
            download: &download,
            original: &original,
        };
        lost_and_restored.comes_back_and_federates_on(&fetch);
    }
}

/// GET a media path of a host as a token: the body, and "STATUS TYPE".
type Fetch<'f> = dyn Fn(&str, &str, &str) -> (Vec<u8>, String) + 'f;

/// The homeserver of a federation that loses its disk, and what it is
/// backed up to: another homeserver of the inventory, its repository
/// machine too.
struct LostServer<'a> {
    sandbox: &'a crate::support::Sandbox,
    outside: &'a Outside,
    lost: &'a BootedHost,
    repository: &'a BootedHost,
    room_id: &'a str,
    /// The admins' access tokens: one.example's, two.example's, ...
    tokens: &'a [String],
    /// The picture's media path (`download/SERVER/ID`) and its bytes.
    download: &'a str,
    original: &'a [u8],
}

impl LostServer<'_> {
    /// one.example, backed up to two.example, loses its database, media,
    /// signing key and its bridge's SQLite state, and `matrixctl restore`
    /// puts them back: its room's history, its picture, the bridge's state
    /// and its key are there, and two.example accepts what it says next
    /// (signed with the key two.example has cached).
    fn comes_back_and_federates_on(&self, fetch: &Fetch) {
        let (sandbox, outside, lost) = (self.sandbox, self.outside, self.lost);
        let host_key = self
            .repository
            .run("cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub");
        let append = |file: &str, text: &str| {
            let path = sandbox.path().join(file);
            let before = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, format!("{before}{text}")).unwrap();
        };
        append(
            "inventory/host_vars/one.example.yaml",
            &format!(
                "backup:\n  repository: ssh://borg@matrix.two.example/./one.example\n  host_key: {host_key}\n"
            ),
        );
        append(
            "inventory/host_vars/two.example.yaml",
            "backup_server: {}\n",
        );
        let apply = sandbox.run(&["apply", "--yes", "inventory"]);
        assert_eq!(apply.code, 0, "{}", apply.transcript());
        let bridge_db = "/var/lib/mautrix-telegram/mautrix-telegram.db";
        lost.run(&format!(
            "sqlite3 {bridge_db} \"CREATE TABLE drill (said TEXT); INSERT INTO drill VALUES ('kept')\""
        ));
        let signing_key = lost.run("cat /etc/matrix-synapse/homeserver.signing.key");
        let backup = sandbox.run(&["backup", "one.example"]);
        assert_eq!(backup.code, 0, "{}", backup.transcript());

        // The disk is lost: everything the roles keep.
        lost.run(&format!(
            "systemctl stop matrix-synapse mautrix-telegram heisenbridge \
             && cd / && runuser -u postgres -- dropdb synapse \
             && rm -rf /var/lib/matrix-synapse/media /etc/matrix-synapse/homeserver.signing.key {bridge_db}"
        ));
        let restored = sandbox.run(&["restore", "one.example"]);
        assert_eq!(restored.code, 0, "{}", restored.transcript());
        assert_eq!(
            lost.run("cat /etc/matrix-synapse/homeserver.signing.key"),
            signing_key
        );
        assert_eq!(
            lost.run(&format!("sqlite3 {bridge_db} 'SELECT said FROM drill'")),
            "kept"
        );
        assert_eq!(lost.run("systemctl is-active mautrix-telegram"), "active");
        crate::support::wait_until("one.example answers clients again", || {
            outside
                .call(
                    "GET",
                    "https://matrix.one.example/_matrix/client/versions",
                    None,
                    None,
                )
                .json["versions"]
                .is_array()
        });
        // Its history and its picture, from the archive.
        let (picture, status) = fetch("matrix.one.example", &self.tokens[0], self.download);
        assert_eq!(status, "200 image/png");
        assert!(picture == self.original, "the restored picture differs");
        // What it says next, two.example accepts: the same key signs it.
        let sent = outside.call(
            "PUT",
            &format!(
                "https://matrix.one.example/_matrix/client/v3/rooms/{}/send/m.room.message/after-the-restore",
                self.room_id
            ),
            Some(&self.tokens[0]),
            Some(r#"{"msgtype": "m.text", "body": "back from the archive"}"#),
        );
        assert!(sent.json["event_id"].is_string(), "{}", sent.said);
        let started = Instant::now();
        loop {
            let seen = outside.call(
                "GET",
                &format!(
                    "https://matrix.two.example/_matrix/client/v3/rooms/{}/messages?dir=b&limit=20",
                    self.room_id
                ),
                Some(&self.tokens[1]),
                None,
            );
            if seen.said.contains("back from the archive") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "two.example did not take one.example's message after the restore: {}\n{}",
                seen.said,
                self.repository
                    .run("journalctl -u matrix-synapse -n 30 --no-pager")
            );
            std::thread::sleep(Duration::from_secs(1));
        }
        assert_eq!(sandbox.plan_exit_code(None), 0);
    }
}

/// The README's walk, "From an empty server to a federating one", command
/// by command as it is written there, on an empty booted host: only what
/// a newcomer's world differs in is changed (the server's address, an
/// editor that uncomments what the README says to, this test's ACME CA and
/// offline wheels, a DNS server for `check`). Nothing else is added, so a
/// step the README leaves out fails here.
#[test]
fn the_readme_walk_takes_an_empty_server_to_a_federating_one_as_written() {
    let walk = readme_commands("## From an empty server to a federating one");
    assert!(walk.len() >= 8, "{walk:?}");

    let host = BootedHost::up("mcreadme");
    let pebble = Pebble::serve(&host);
    pebble.resolve("matrix.example.com", &host.address);
    let gateway = format!("{}.1", host.address.rsplit_once('.').unwrap().0);
    let _dns = TestDns::serve(
        &gateway,
        &[
            format!("--host-record=example.com,{}", host.address),
            format!("--host-record=matrix.example.com,{}", host.address),
        ],
    );
    let trust = tempfile::tempdir().unwrap();
    std::fs::copy(&pebble.endpoint_ca, trust.path().join("ca.pem")).unwrap();
    let root = pebble.root(trust.path());
    host.copy_in(trust.path(), "/etc/ssl/acme-test");
    host.copy_wheels(&["synapse"]);

    let desk = Desk::new(&host, &host.address);
    let mut transcript = String::new();
    for line in &walk {
        if line.starts_with("$EDITOR inv/group_vars/all.yaml") {
            desk.edit_all_yaml(&pebble.directory);
            continue;
        }
        let (line, expected) = if line.starts_with("matrixctl check") {
            (
                format!("{line} --dns {gateway}:53 --ca-file {}", root.display()),
                [0, 2],
            )
        } else {
            (line.clone(), [0, 0])
        };
        let (code, said) = desk.run(&line, "yes\n");
        transcript.push_str(&said);
        assert!(
            expected.contains(&code),
            "`{line}` exited {code}:\n{transcript}"
        );
    }
    // What the walk promised: onboarding written, a server that answers
    // clients and federation with a real certificate, an admin and an
    // invitation made.
    let onboarding = std::fs::read_to_string(desk.dir.path().join("example.com.md")).unwrap();
    assert!(onboarding.contains("matrix.example.com"), "{onboarding}");
    assert!(
        transcript.contains("Created @admin:example.com, an admin"),
        "{transcript}"
    );
    assert!(
        transcript.contains("Created a registration token on example.com, for 1 registration"),
        "{transcript}"
    );
    let outside = Outside {
        root,
        addresses: vec![("matrix.example.com".into(), host.address.clone())],
    };
    let versions = outside.json("https://matrix.example.com/_matrix/client/versions");
    assert!(versions["versions"].is_array(), "{versions}");
    let keys = outside.json("https://matrix.example.com:8448/_matrix/key/v2/server");
    assert_eq!(keys["server_name"], "example.com", "{keys}");
    // `check` speaks of what only the customer can do: the base domain's
    // server file (the checklist says what to serve), nothing on the host.
    assert!(
        transcript.contains("https://matrix.example.com:8448/_matrix/key/v2/server")
            || transcript.contains("matrix.example.com"),
        "{transcript}"
    );
}

/// The operator's machine for a README walk: a directory to run in, with
/// a home holding the key init's file names, reaching `host` (the
/// README's 203.0.113.x addresses become `address`).
pub struct Desk<'a> {
    pub dir: tempfile::TempDir,
    home: PathBuf,
    host: &'a BootedHost,
    address: String,
}

impl<'a> Desk<'a> {
    pub fn new(host: &'a BootedHost, address: &str) -> Desk<'a> {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        let (key, _) = host.ssh_files();
        std::fs::copy(key, home.join(".ssh/matrixctl")).unwrap();
        Desk {
            dir,
            home,
            host,
            address: address.to_string(),
        }
    }

    /// A README line as the operator types it, with this build and the
    /// host's address: (exit code, `$ LINE` and what it printed).
    /// `matrixctl apply` without `--yes` shows the plan and asks, so it
    /// runs on a terminal, answered with `stdin`.
    pub fn run(&self, line: &str, stdin: &str) -> (i32, String) {
        let command = line
            .replacen("matrixctl", crate::support::BIN, 1)
            .replace("203.0.113.7", &self.address)
            .replace("203.0.113.20", &self.address);
        let (program, shown) = if line.starts_with("matrixctl apply") && !line.contains("--yes") {
            (
                "script".to_string(),
                vec![
                    "--quiet".to_string(),
                    "--return".to_string(),
                    "--command".to_string(),
                    command.clone(),
                    "/dev/null".to_string(),
                ],
            )
        } else {
            ("sh".to_string(), vec!["-c".to_string(), command.clone()])
        };
        let mut child = Command::new(program)
            .args(&shown)
            .current_dir(self.dir.path())
            .env("HOME", &self.home)
            .env("NO_COLOR", "1")
            // No SSH master outlives the test.
            .env("MATRIXCTL_PERSIST", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        (
            output.status.code().unwrap_or(-1),
            format!(
                "$ {line}\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    }

    /// `$EDITOR inv/group_vars/all.yaml`: what the README says to
    /// uncomment, and the test's world: the ACME CA at `acme_directory`
    /// (the private-CA lines init's file shows), the wheels of an offline
    /// host, and the host key seen before.
    pub fn edit_all_yaml(&self, acme_directory: &str) {
        let (_, known_hosts) = self.host.ssh_files();
        let path = self.dir.path().join("inv/group_vars/all.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut edited = String::new();
        for line in text.lines() {
            let uncommented = line.strip_prefix("# ").filter(|rest| {
                [
                    "webserver:",
                    "certificates:",
                    "acme_email:",
                    "database:",
                    "  engine:",
                    "ssh_options:",
                    "  identity_file:",
                ]
                .iter()
                .any(|key| rest.starts_with(key))
            });
            let line = match line.strip_prefix("# acme_directory: ") {
                Some(_) => format!("acme_directory: {acme_directory}"),
                None => match line.strip_prefix("# acme_ca_bundle: ") {
                    Some(_) => "acme_ca_bundle: /etc/ssl/acme-test/ca.pem".to_string(),
                    None => uncommented.unwrap_or(line).to_string(),
                },
            };
            edited.push_str(&line);
            edited.push('\n');
            if line == "  identity_file: ~/.ssh/matrixctl" {
                edited.push_str(&format!("  known_hosts_file: {}\n", known_hosts.display()));
            }
        }
        edited.push_str("synapse_wheels: /srv/wheels\n");
        std::fs::write(&path, edited).unwrap();
    }
}

/// The README section under `heading`, and the commands of its first
/// `sh` block, as written there (a line's `  # comment` left out).
pub fn readme_section_and_commands(heading: &str) -> (String, Vec<String>) {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("the README has no section {heading}"))
        .to_string();
    let commands = section
        .split("```sh\n")
        .nth(1)
        .and_then(|block| block.split("```").next())
        .unwrap_or_else(|| panic!("the README's {heading} shows no commands"))
        .lines()
        .map(|line| line.split("  #").next().unwrap_or(line).trim().to_string())
        .filter(|line| !line.is_empty())
        .collect();
    (section, commands)
}

/// The commands of the README section under `heading`.
fn readme_commands(heading: &str) -> Vec<String> {
    readme_section_and_commands(heading).1
}
