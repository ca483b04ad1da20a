//! `matrixctl check` against real servers with faults put in on purpose:
//! nginx serving TLS (certificates from a test CA) on addresses of a
//! network namespace the test makes, dnsmasq answering for the names (SRV
//! and CNAME records included), and matrixctl run inside that namespace.
//! The federation endpoints are static files and fixed answers, with key
//! documents the test signs itself, so a broken signature or a document
//! for another server can be served (the issue allows a small fake for
//! these). A real deployment is checked in tests/it/federation.rs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};

use crate::support::{BIN, Sandbox, TEST_MASTER_KEY};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace with addresses on its loopback, deleted when dropped
/// (after the processes in it, which are fields declared before it).
struct Namespace(String);

impl Namespace {
    fn new(addresses: &[String]) -> Namespace {
        let name = format!(
            "mcchk-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let run = |args: &[&str]| {
            let output = Command::new("ip")
                .args(args)
                .output()
                .expect("ip runs (apt-get install iproute2)");
            assert!(
                output.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        run(&["netns", "add", &name]);
        let namespace = Namespace(name);
        run(&["-n", &namespace.0, "link", "set", "lo", "up"]);
        for address in addresses {
            run(&[
                "-n",
                &namespace.0,
                "addr",
                "add",
                &format!("{address}/32"),
                "dev",
                "lo",
            ]);
        }
        namespace
    }

    fn command(&self, program: &str) -> Command {
        // `ip netns exec` reports a missing program only on its stderr.
        for (tool, package) in [("nginx", "nginx-light"), ("dnsmasq", "dnsmasq-base")] {
            assert!(
                program != tool || Path::new("/usr/sbin").join(tool).exists(),
                "{tool} is not installed (apt-get install {package}; scripts/test installs it)"
            );
        }
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.0, program]);
        command
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A process in the namespace, stopped by its pid when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn wait_for_port(namespace: &Namespace, address: &str, port: u16) {
    let started = Instant::now();
    loop {
        let probe = namespace
            .command("bash")
            .args(["-c", &format!("exec 3<>/dev/tcp/{address}/{port}")])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if probe.success() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nothing listened on {address}:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A test CA and certificates it signs.
struct Ca {
    key: rcgen::KeyPair,
    params: rcgen::CertificateParams,
    pem: String,
}

impl Ca {
    fn new() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "matrixctl test CA");
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { key, params, pem }
    }

    /// A certificate for `names`, valid from `from` to `until` (years),
    /// written as DIR/NAME.pem and DIR/NAME.key.
    fn issue(
        &self,
        dir: &Path,
        file: &str,
        names: &[&str],
        years: (i32, i32),
    ) -> (PathBuf, PathBuf) {
        self.issue_as(dir, file, names, years, Leaf::Server)
    }

    /// Like `issue`, of the kind `leaf` says.
    fn issue_as(
        &self,
        dir: &Path,
        file: &str,
        names: &[&str],
        years: (i32, i32),
        leaf: Leaf,
    ) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(
            names
                .iter()
                .map(|name| name.to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        if leaf == Leaf::Ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let (certificate, chain) = match leaf {
            Leaf::SelfSigned => (params.self_signed(&key).unwrap(), String::new()),
            _ => (params.signed_by(&key, &issuer).unwrap(), self.pem.clone()),
        };
        let (pem, key_path) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&pem, certificate.pem() + &chain).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (pem, key_path)
    }
}

/// What the Matrix host's certificate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    /// A server's, from the test CA.
    Server,
    /// Signed by its own key.
    SelfSigned,
    /// A CA's (basicConstraints CA:TRUE), from the test CA.
    Ca,
}

fn unpadded(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// A key document for `server_name`, signed by `signer` as `signed_as`
/// (serde_json sorts keys: its compact output is canonical JSON here).
fn key_document(server_name: &str, signer: &SigningKey) -> serde_json::Value {
    let valid_until = (std::time::SystemTime::now() + Duration::from_secs(86_400))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut document = serde_json::json!({
        "server_name": server_name,
        "valid_until_ts": valid_until,
        "old_verify_keys": {},
        "verify_keys": {"ed25519:test": {"key": unpadded(signer.verifying_key().as_bytes())}},
    });
    let signature = signer.sign(serde_json::to_string(&document).unwrap().as_bytes());
    document["signatures"] =
        serde_json::json!({server_name: {"ed25519:test": unpadded(&signature.to_bytes())}});
    document
}

/// One made-up customer: its base domain and Matrix host, and what is
/// wrong with them.
struct Scenario {
    name: &'static str,
    server_file: Option<String>,
    client_file: Option<String>,
    cors: bool,
    /// The Matrix host's certificate: names and validity (years).
    matrix_certificate: (Vec<String>, (i32, i32)),
    matrix_ports: Vec<u16>,
    keys: serde_json::Value,
    matrix_leaf: Leaf,
    /// The directives of a plain HTTP server of the base domain on port
    /// 80, which its HTTPS server file then redirects to, when set.
    base_http: &'static str,
    /// The config.json `element.NAME` serves (on the base domain's
    /// address), when set.
    element_config: Option<String>,
    /// More locations of the Matrix host's server block.
    matrix_locations: &'static str,
}

impl Scenario {
    fn good(name: &'static str) -> Scenario {
        Scenario {
            name,
            server_file: Some(format!(r#"{{"m.server": "matrix.{name}:443"}}"#)),
            client_file: Some(format!(
                r#"{{"m.homeserver": {{"base_url": "https://matrix.{name}"}}}}"#
            )),
            cors: true,
            matrix_certificate: (vec![format!("matrix.{name}")], (2024, 2036)),
            matrix_ports: vec![443],
            keys: key_document(name, &SigningKey::from_bytes(&[9; 32])),
            base_http: "",
            matrix_leaf: Leaf::Server,
            element_config: None,
            matrix_locations: "",
        }
    }
}

/// `document` with `old_verify_keys` naming its current key, signed again.
fn current_key_also_old(server_name: &str, signer: &SigningKey) -> serde_json::Value {
    let mut document = key_document(server_name, signer);
    let current = document["verify_keys"]["ed25519:test"].clone();
    if let Some(object) = document.as_object_mut() {
        object.remove("signatures");
    }
    document["old_verify_keys"] = serde_json::json!({
        "ed25519:test": {"key": current["key"], "expired_ts": 1_700_000_000_000u64}
    });
    let signature = signer.sign(serde_json::to_string(&document).unwrap().as_bytes());
    document["signatures"] =
        serde_json::json!({server_name: {"ed25519:test": unpadded(&signature.to_bytes())}});
    document
}

/// The scenarios: one good, and one per fault the issue lists.
fn scenarios() -> Vec<Scenario> {
    let mut list = vec![Scenario::good("good.example")];
    list.push(Scenario {
        cors: false,
        ..Scenario::good("nocors.example")
    });
    let swapped = Scenario::good("swapped.example");
    list.push(Scenario {
        server_file: swapped.client_file.clone(),
        client_file: swapped.server_file.clone(),
        ..swapped
    });
    list.push(Scenario {
        server_file: Some(r#"{"m.server": "https://matrix.scheme.example"}"#.into()),
        ..Scenario::good("scheme.example")
    });
    // m.server names 443; federation only answers on 8448.
    list.push(Scenario {
        matrix_ports: vec![8448],
        ..Scenario::good("wrongport.example")
    });
    list.push(Scenario {
        matrix_certificate: (vec!["other.example".into()], (2024, 2036)),
        ..Scenario::good("wrongname.example")
    });
    list.push(Scenario {
        matrix_certificate: (vec!["matrix.expired.example".into()], (2020, 2021)),
        ..Scenario::good("expired.example")
    });
    // No server file; `_matrix-fed._tcp` points at an alias (records below).
    list.push(Scenario {
        server_file: None,
        matrix_certificate: (vec!["cname.example".into()], (2024, 2036)),
        matrix_ports: vec![8448],
        ..Scenario::good("cname.example")
    });
    list.push(Scenario {
        keys: key_document("someone.example", &SigningKey::from_bytes(&[5; 32])),
        ..Scenario::good("othername.example")
    });
    let mut broken = key_document("badsig.example", &SigningKey::from_bytes(&[3; 32]));
    broken["valid_until_ts"] = (broken["valid_until_ts"].as_u64().unwrap() + 1).into();
    list.push(Scenario {
        keys: broken,
        ..Scenario::good("badsig.example")
    });
    // The current key is also listed as an old one: peers expire it.
    list.push(Scenario {
        keys: current_key_also_old("oldkey.example", &SigningKey::from_bytes(&[9; 32])),
        ..Scenario::good("oldkey.example")
    });
    // The client file sends clients to plain http.
    list.push(Scenario {
        client_file: Some(
            r#"{"m.homeserver": {"base_url": "http://matrix.httpbase.example"}}"#.into(),
        ),
        ..Scenario::good("httpbase.example")
    });
    // A correct server file after a byte-order mark.
    list.push(Scenario {
        server_file: Some("\u{feff}{\"m.server\": \"matrix.bom.example:443\"}".into()),
        ..Scenario::good("bom.example")
    });
    // No server file; the SRV record names 443, federation answers on 8448.
    list.push(Scenario {
        server_file: None,
        matrix_certificate: (vec!["srvport.example".into()], (2024, 2036)),
        matrix_ports: vec![8448],
        ..Scenario::good("srvport.example")
    });
    // The server file, reached through a redirect to plain http.
    list.push(Scenario {
        base_http: "location = /.well-known/matrix/server { default_type application/json; \
                    return 200 '{\"m.server\": \"matrix.plainhop.example:443\"}'; }",
        ..Scenario::good("plainhop.example")
    });
    // A self-signed certificate, and a CA's certificate, on the Matrix host.
    list.push(Scenario {
        matrix_leaf: Leaf::SelfSigned,
        ..Scenario::good("selfsigned.example")
    });
    list.push(Scenario {
        matrix_leaf: Leaf::Ca,
        ..Scenario::good("caleaf.example")
    });
    // The inventory's host: its website serves an old copy of the server file.
    list.push(Scenario {
        server_file: Some(r#"{"m.server": "matrix.stale.example:8449"}"#.into()),
        client_file: Some(
            r#"{"m.homeserver": {"base_url": "https://matrix.stale.example/"}, "org.matrix.msc4143.rtc_foci": [{"type": "livekit", "livekit_service_url": "https://matrix.stale.example/livekit/jwt"}]}"#.into(),
        ),
        // MatrixRTC's authorization service answers; Synapse's transports
        // endpoint is not there (an older Synapse, or MSC4143 off).
        matrix_locations: "location = /livekit/jwt/healthz { return 200 ''; }",
        // Element Web's configuration from before the homeserver moved.
        element_config: Some(
            r#"{"brand": "Element", "default_server_config": {"m.homeserver": {"base_url": "https://matrix.old.example/", "server_name": "stale.example"}}, "disable_custom_urls": true, "disable_guests": true}"#.into(),
        ),
        ..Scenario::good("stale.example")
    });
    list
}

/// Everything the scenarios need, running: nginx and dnsmasq in a
/// namespace, the CA's root in `ca.pem`.
struct World {
    // Dropped in order: the processes, then the namespace.
    _nginx: Process,
    _dnsmasq: Process,
    namespace: Namespace,
    dir: tempfile::TempDir,
}

const DNS: &str = "10.77.0.53";

fn addresses(index: usize) -> (String, String) {
    (
        format!("10.77.0.{}", 10 + 2 * index),
        format!("10.77.0.{}", 11 + 2 * index),
    )
}

impl World {
    fn start() -> World {
        World::serving(scenarios())
    }

    fn serving(scenarios: Vec<Scenario>) -> World {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let ca = Ca::new();
        std::fs::write(root.join("ca.pem"), &ca.pem).unwrap();
        let mut all_addresses = vec![DNS.to_string()];
        let mut servers = String::new();
        let mut records = Vec::new();
        for (index, scenario) in scenarios.iter().enumerate() {
            let (base, matrix) = addresses(index);
            all_addresses.extend([base.clone(), matrix.clone()]);
            let name = scenario.name;
            let files = root.join(name);
            std::fs::create_dir_all(&files).unwrap();
            for (file, content) in [
                ("server", &scenario.server_file),
                ("client", &scenario.client_file),
            ] {
                if let Some(content) = content {
                    std::fs::write(files.join(file), content).unwrap();
                }
            }
            std::fs::write(files.join("keys"), scenario.keys.to_string()).unwrap();
            let (base_pem, base_key) = ca.issue(&files, "base", &[name], (2024, 2036));
            let names: Vec<&str> = scenario
                .matrix_certificate
                .0
                .iter()
                .map(String::as_str)
                .collect();
            let (matrix_pem, matrix_key) = ca.issue_as(
                &files,
                "matrix",
                &names,
                scenario.matrix_certificate.1,
                scenario.matrix_leaf,
            );
            let cors = if scenario.cors {
                "add_header Access-Control-Allow-Origin \"*\" always;"
            } else {
                ""
            };
            let dir = files.display();
            // A base domain with a plain HTTP server redirects its HTTPS
            // server file there.
            let server_location = if scenario.base_http.is_empty() {
                format!("alias {dir}/server; default_type application/json;")
            } else {
                format!("return 301 http://{name}/.well-known/matrix/server;")
            };
            servers.push_str(&format!(
                "server {{\n  listen {base}:443 ssl;\n  server_name {name};\n  \
                 ssl_certificate {}; ssl_certificate_key {};\n  \
                 location = /.well-known/matrix/server {{ {server_location} }}\n  \
                 location = /.well-known/matrix/client {{ alias {dir}/client; default_type application/json; {cors} }}\n}}\n",
                base_pem.display(),
                base_key.display(),
            ));
            if let Some(config) = &scenario.element_config {
                std::fs::write(files.join("element-config.json"), config).unwrap();
                let element = format!("element.{name}");
                let (pem, key) = ca.issue(&files, "element", &[&element], (2024, 2036));
                servers.push_str(&format!(
                    "server {{\n  listen {base}:443 ssl;\n  server_name {element};\n  \
                     ssl_certificate {}; ssl_certificate_key {};\n  \
                     location = /config.json {{ alias {dir}/element-config.json; default_type application/json; }}\n}}\n",
                    pem.display(),
                    key.display(),
                ));
                records.push(format!("--host-record={element},{base}"));
            }
            if !scenario.base_http.is_empty() {
                servers.push_str(&format!(
                    "server {{\n  listen {base}:80;\n  server_name {name};\n  {}\n}}\n",
                    scenario.base_http
                ));
            }
            let listens: String = scenario
                .matrix_ports
                .iter()
                .map(|port| format!("  listen {matrix}:{port} ssl;\n"))
                .collect();
            servers.push_str(&format!(
                "server {{\n{listens}  server_name _;\n  \
                 ssl_certificate {}; ssl_certificate_key {};\n  default_type application/json;\n  \
                 location = /_matrix/federation/v1/version {{ return 200 '{{\"server\": {{\"name\": \"Synapse\", \"version\": \"test\"}}}}'; }}\n  \
                 location = /_matrix/key/v2/server {{ alias {dir}/keys; }}\n  \
                 location = /_matrix/client/versions {{ return 200 '{{\"versions\": [\"v1.11\"]}}'; }}\n  \
                 location = /_matrix/client/v3/register {{ return 403 '{{\"errcode\": \"M_FORBIDDEN\"}}'; }}\n  \
                 location = /.well-known/matrix/client {{ alias {dir}/client; {cors} }}\n  {}\n}}\n",
                matrix_pem.display(),
                matrix_key.display(),
                scenario.matrix_locations
            ));
            records.push(format!("--host-record={name},{base}"));
            if name == "cname.example" {
                records.push(format!("--host-record=matrix.{name},{matrix}"));
                records.push(format!("--cname=alias.{name},matrix.{name}"));
                records.push(format!(
                    "--srv-host=_matrix-fed._tcp.{name},alias.{name},8448,10,0"
                ));
            } else if name == "srvport.example" {
                records.push(format!("--host-record=matrix.{name},{matrix}"));
                records.push(format!(
                    "--srv-host=_matrix-fed._tcp.{name},matrix.{name},443,10,0"
                ));
            } else {
                records.push(format!("--host-record=matrix.{name},{matrix}"));
            }
        }
        let namespace = Namespace::new(&all_addresses);
        let conf = root.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "user root;\npid {0}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n  access_log off;\n  \
                 client_body_temp_path {0}/body; proxy_temp_path {0}/proxy; fastcgi_temp_path {0}/fastcgi;\n  \
                 uwsgi_temp_path {0}/uwsgi; scgi_temp_path {0}/scgi;\n{servers}}}\n",
                root.display()
            ),
        )
        .unwrap();
        let nginx = Process(
            namespace
                .command("nginx")
                .args(["-e", "stderr", "-g", "daemon off;", "-c"])
                .arg(&conf)
                .stdin(Stdio::null())
                .spawn()
                .expect("nginx runs (apt-get install nginx-light)"),
        );
        let dnsmasq = Process(
            namespace
                .command("dnsmasq")
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
                    &format!("--listen-address={DNS}"),
                ])
                .args(&records)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("dnsmasq runs (apt-get install dnsmasq-base)"),
        );
        let world = World {
            _nginx: nginx,
            _dnsmasq: dnsmasq,
            namespace,
            dir,
        };
        wait_for_port(&world.namespace, DNS, 53);
        wait_for_port(&world.namespace, &addresses(0).0, 443);
        world
    }

    /// `--dns`, `--ca-file`: how matrixctl finds this world's servers.
    fn seen_as(&self) -> Vec<String> {
        vec![
            "--dns".to_string(),
            format!("{DNS}:53"),
            "--ca-file".to_string(),
            self.dir.path().join("ca.pem").display().to_string(),
        ]
    }

    /// `matrixctl check ARGS` inside the namespace, with its DNS and CA.
    fn check(&self, args: &[&str]) -> (i32, String, String) {
        let output = self
            .namespace
            .command(BIN)
            .arg("check")
            .args(args)
            .args(["--dns", &format!("{DNS}:53"), "--timeout", "3", "--ca-file"])
            .arg(self.dir.path().join("ca.pem"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        outcome(&output)
    }
}

/// A run's exit code, stdout and stderr.
fn outcome(output: &std::process::Output) -> (i32, String, String) {
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_finds_each_fault_with_its_own_message() {
    let world = World::start();
    let (code, good, stderr) = world.check(&["--domain", "good.example"]);
    assert_eq!(code, 0, "{good}{stderr}");
    insta::assert_snapshot!("good", good);
    for fault in [
        "nocors.example",
        "swapped.example",
        "scheme.example",
        "wrongport.example",
        "wrongname.example",
        "expired.example",
        "cname.example",
        "othername.example",
        "badsig.example",
        "oldkey.example",
        "httpbase.example",
        "bom.example",
        "srvport.example",
        "plainhop.example",
        "selfsigned.example",
        "caleaf.example",
    ] {
        let (code, report, stderr) = world.check(&["--domain", fault]);
        assert_eq!(code, 2, "{fault} passed:\n{report}{stderr}");
        insta::assert_snapshot!(fault, report);
    }
}

#[test]
fn check_json_keeps_its_schema_and_the_federation_tester_s_fields() {
    let world = World::start();
    let (code, json, stderr) = world.check(&["--domain", "good.example", "--json"]);
    assert_eq!(code, 0, "{json}{stderr}");
    let mut document: serde_json::Value = serde_json::from_str(&json).unwrap();
    // What changes from run to run: the test CA's certificates, the key
    // document's expiry and so its signature.
    let tester = &mut document["reports"][0]["federation_tester"];
    for (_, report) in tester["ConnectionReports"].as_object_mut().unwrap() {
        for certificate in report["Certificates"].as_array_mut().unwrap() {
            certificate["SHA256Fingerprint"] = "[fingerprint]".into();
        }
        report["Keys"]["valid_until_ts"] = "[tomorrow]".into();
        for (_, by_key) in report["Keys"]["signatures"].as_object_mut().unwrap() {
            for (_, signature) in by_key.as_object_mut().unwrap() {
                *signature = "[signature of the document]".into();
            }
        }
    }
    insta::assert_snapshot!(serde_json::to_string_pretty(&document).unwrap());

    let (code, json, _) = world.check(&["--domain", "badsig.example", "--json"]);
    assert_eq!(code, 2);
    let document: serde_json::Value = serde_json::from_str(&json).unwrap();
    let tester = &document["reports"][0]["federation_tester"];
    assert_eq!(tester["FederationOK"], false, "{json}");
    let report = &tester["ConnectionReports"]["10.77.0.29:443"]["Checks"];
    assert_eq!(report["AllEd25519ChecksOK"], false, "{json}");
    assert_eq!(
        report["Ed25519Checks"]["ed25519:test"]["MatchingSignature"], false,
        "{json}"
    );
}

#[test]
fn check_compares_what_the_website_serves_with_what_matrixctl_renders() {
    let world = World::start();
    let sandbox = Sandbox::empty();
    sandbox.write(
        "inventory/hosts.yaml",
        "hosts:\n  stale.example:\n    connection: local\n    root: ../hosts/stale\n",
    );
    sandbox.write(
        "inventory/group_vars/all.yaml",
        "synapse_group: root\nhost_commands: false\nfederation_port: 443\n\
         webserver: nginx\nelement_web: {version: \"1.12.6\", sha256: \"00000000000000000000000000000000000000000000000000000000000000aa\"}\n\
         matrixrtc:\n  livekit: {version: \"1.9.4\", sha256: \"00000000000000000000000000000000000000000000000000000000000000bb\"}\n  \
         jwt_service: {version: \"0.5.0\", sha256: \"00000000000000000000000000000000000000000000000000000000000000cc\"}\n\
         livekit_group: root\nlk_jwt_service_group: root\n",
    );
    sandbox.write("inventory/secrets/master.key", TEST_MASTER_KEY);
    let inventory = sandbox.path().join("inventory");
    let (code, report, stderr) = world.check(&[inventory.to_str().unwrap()]);
    assert_eq!(code, 2, "{report}{stderr}");
    assert!(
        report.contains(
            "error   https://stale.example/.well-known/matrix/server: serves {\"m.server\":\"matrix.stale.example:8449\"}, \
             but matrixctl renders {\"m.server\":\"matrix.stale.example:443\"}\n          hint: a stale copy"
        ),
        "{report}"
    );
    // The client file matches, and the Matrix host's copy too.
    assert!(
        report.contains(
            "ok      https://stale.example/.well-known/matrix/client: serves what matrixctl renders"
        ),
        "{report}"
    );
    // Element Web's configuration, compared as JSON: it points at
    // another homeserver.
    assert!(
        report.contains(
            "error   https://element.stale.example/config.json: serves {\"brand\":\"Element\",\"default_server_config\":{\"m.homeserver\":{\"base_url\":\"https://matrix.old.example/\""
        ),
        "{report}"
    );
    // MatrixRTC's discovery chain: what answers, and what is missing.
    assert!(
        report.contains(
            "ok      https://matrix.stale.example/livekit/jwt/healthz: the MatrixRTC authorization service (lk-jwt-service) answers (200)"
        ),
        "{report}"
    );
    assert!(
        report.contains(
            "error   https://matrix.stale.example/_matrix/client/unstable/org.matrix.msc4143/rtc/transports: answered 404 where Synapse's MatrixRTC transports endpoint (MSC4143) answers 401"
        ),
        "{report}"
    );
    // Nothing is checked before the inventory is known good.
    sandbox.write("inventory/group_vars/all.yaml", "federation_port: many\n");
    let (code, report, stderr) = world.check(&[inventory.to_str().unwrap()]);
    assert_eq!(code, 1, "{report}{stderr}");
    assert!(report.is_empty(), "{report}");
    assert!(stderr.contains("federation_port"), "{stderr}");
}

#[test]
fn check_refuses_bad_flags_before_any_request() {
    let run = |args: &[&str]| {
        outcome(
            &Command::new(BIN)
                .arg("check")
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        )
    };
    let missing = tempfile::tempdir().unwrap();
    let ca_file = missing.path().join("no-such-ca.pem");
    let transcript = [
        run(&["--domain", "example.com", "--resolve", "example.com:443"]),
        run(&[
            "--domain",
            "example.com",
            "--resolve",
            "example.com:https:192.0.2.1",
        ]),
        run(&["--domain", "example.com", "--dns", "192.0.2.53"]),
        run(&[
            "--domain",
            "example.com",
            "--ca-file",
            ca_file.to_str().unwrap(),
        ]),
        run(&[
            "--domain",
            "example.com",
            "--ca-file",
            "/dev/null",
            "--json",
        ]),
    ]
    .iter()
    .map(|(code, stdout, stderr)| {
        format!(
            "exit {code}\n{stdout}{}",
            stderr.replace(missing.path().to_str().unwrap(), "TMP")
        )
    })
    .collect::<Vec<_>>()
    .join("\n");
    insta::assert_snapshot!(transcript);
}

/// The README's "Upgrading the fleet" over three customers whose base
/// domains serve, through nginx, the well-known files apply writes; then
/// `apply --batch 1 --gate check` where the second host's change breaks
/// its delegation: its check fails after its batch, and the third host
/// is not touched.
#[test]
fn a_gated_rollout_stops_after_the_batch_whose_check_failed() {
    let hosts = ["h1.example", "h2.example", "h3.example"];
    let world = World::serving(hosts.iter().map(|name| Scenario::good(name)).collect());
    let sandbox = Sandbox::empty();
    let mut listed = String::from("hosts:\n");
    for host in hosts {
        listed.push_str(&format!(
            "  {host}:\n    connection: local\n    root: ../hosts/{host}\n"
        ));
        if host == "h1.example" {
            listed.push_str("    groups: [canary]\n");
        }
        // The base domain serves the host's own well-known files.
        let served = sandbox.host_file(host, "/var/www/matrix/.well-known/matrix");
        for file in ["server", "client"] {
            let link = world.dir.path().join(host).join(file);
            std::fs::remove_file(&link).unwrap();
            std::os::unix::fs::symlink(served.join(file), &link).unwrap();
        }
    }
    sandbox.write("inv/hosts.yaml", &listed);
    let all = |extra: &str| {
        sandbox.write(
            "inv/group_vars/all.yaml",
            &format!(
                "synapse_group: root\nhost_commands: false\nfederation_port: 443\nregistration: closed\n{extra}"
            ),
        )
    };
    all("");
    sandbox.write("inv/secrets/master.key", TEST_MASTER_KEY);
    let seen_as = world.seen_as();
    let run = |line: &str| {
        let mut args: Vec<&str> = line
            .strip_prefix("matrixctl ")
            .unwrap_or_else(|| panic!("not a matrixctl command: {line}"))
            .split_whitespace()
            .collect();
        if args.contains(&"--gate") {
            args.extend(seen_as.iter().map(String::as_str));
        }
        let output = world
            .namespace
            .command(BIN)
            .args(&args)
            .current_dir(sandbox.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        outcome(&output)
    };
    // The first rollout passes every gate.
    let (code, stdout, stderr) = run("matrixctl apply inv --yes --batch 1 --gate check");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("Apply complete"), "{stdout}");

    // The README's walk, as written, on a change to every host.
    all("max_upload_size: 20M\n");
    let media = "/etc/matrix-synapse/conf.d/media.yaml";
    let (_, commands) = crate::federation::readme_section_and_commands("## Upgrading the fleet");
    assert_eq!(commands.len(), 3, "{commands:?}");
    let (code, stdout, stderr) = run(&commands[0]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("on 3 of 3 hosts"), "{stdout}");
    let (code, stdout, stderr) = run(&commands[1]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("on 1 of 1 host"), "{stdout}");
    let changed = |host: &str| {
        String::from_utf8(sandbox.read_host_file(host, media).unwrap())
            .unwrap()
            .contains("20M")
    };
    assert!(changed("h1.example") && !changed("h2.example"));
    let (code, stdout, stderr) = run(&commands[2]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(changed("h2.example") && changed("h3.example"));

    // Every host changes; the second one's delegation goes to a port
    // nothing listens on.
    all("max_upload_size: 30M\n");
    sandbox.write("inv/host_vars/h2.example.yaml", "federation_port: 8449\n");
    let untouched = sandbox.host_files("h3.example");
    let h3_media = sandbox.read_host_file("h3.example", media).unwrap();
    let (code, stdout, stderr) = run("matrixctl apply inv --yes --batch 1 --gate check");
    assert_eq!(code, 1, "{stdout}{stderr}");
    let result = stdout
        .split_once("\n\n")
        .map(|(_, result)| result)
        .unwrap_or_default();
    let result = result[result.find("h1.example: applied").unwrap_or(0)..].to_string();
    insta::assert_snapshot!(result);
    assert_eq!(sandbox.host_files("h3.example"), untouched);
    assert_eq!(
        sandbox.read_host_file("h3.example", media).unwrap(),
        h3_media
    );

    // --max-fail lets the rollout go on past a failed check.
    all("max_upload_size: 40M\n");
    let (code, stdout, stderr) =
        run("matrixctl apply inv --yes --batch 1 --gate check --max-fail 50");
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("h2.example: CHECK FAILED"), "{stdout}");
    assert!(stdout.contains("h3.example: applied"), "{stdout}");
    assert_ne!(
        sandbox.read_host_file("h3.example", media).unwrap(),
        h3_media
    );

    // The gate's flags are refused without a gate.
    let (code, _, stderr) = run("matrixctl apply inv --yes --dns 10.77.0.53:53");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("add `--gate check`"), "{stderr}");
}
