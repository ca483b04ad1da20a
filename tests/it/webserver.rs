//! The nginx and Caddy roles proven by the real servers: the rendered
//! configuration passes `nginx -t` / `caddy validate`, and, run on loopback
//! ports (test vars, not edited files) with a test certificate, serves the
//! well-known files with JSON and CORS and proxies to a running Synapse.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::loopback::free_port;
use crate::support::repo;
use crate::synapse::{Deployed, deploy_host, start};

/// A self-signed certificate for `names`, made by openssl: (cert, key).
pub fn certificate(dir: &Path, names: &[&str]) -> (String, String) {
    let cert = dir.join("test-cert.pem");
    let key = dir.join("test-key.pem");
    let san = names
        .iter()
        .map(|name| format!("DNS:{name}"))
        .collect::<Vec<_>>()
        .join(",");
    let output = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            &format!("/CN={}", names[0]),
            "-addext",
            &format!("subjectAltName={san}"),
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

struct Ports {
    http: u16,
    https: u16,
    federation: u16,
    /// maubot's loopback port (role maubot, behind the web server).
    maubot: u16,
}

const MAUBOT_ADMIN_PASSWORD: &str = "maubot-admin-password-for-tests-only";

/// Deploys the minimal profile with a web server in front, on free ports,
/// and maubot behind it (started by the tests that use it, so its restart
/// handler does nothing); the returned directory holds the test
/// certificate.
fn deploy_with(webserver: &str, extra: &str) -> (Deployed, Ports, tempfile::TempDir) {
    let https = free_port();
    // Federation on the HTTPS port itself, when the test asks for it.
    let federation = if extra.contains("federation_on_https") {
        https
    } else {
        free_port()
    };
    let extra = extra.replace("federation_on_https\n", "");
    let ports = Ports {
        http: free_port(),
        https,
        federation,
        maubot: free_port(),
    };
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), &["matrix.minimal.example", "minimal.example"]);
    let vars = format!(
        "webserver: {webserver}\nwebserver_http_port: {}\nwebserver_https_port: {}\nfederation_port: {}\n\
         tls_certificate: {cert}\ntls_certificate_key: {key}\nserve_base_domain: true\n\
         base_domain_redirect: https://www.minimal.example\n\
         maubot:\n  admin_password: {MAUBOT_ADMIN_PASSWORD}\n  port: {}\n\
         maubot_restart_command: \"true\"\n{extra}",
        ports.http, ports.https, ports.federation, ports.maubot
    );
    let deployed = deploy_host(
        &repo().join("tests/cases/synapse-minimal"),
        "minimal.example",
        &vars,
    );
    (deployed, ports, dir)
}

/// A process the test started, stopped by its pid (TERM) when dropped.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// nginx, run from `wrapper` by the test, stopped with QUIT when dropped.
struct Nginx(Child);

impl Nginx {
    fn start(wrapper: &Path) -> Nginx {
        let child = Command::new("nginx")
            .args(["-e", "stderr", "-c"])
            .arg(wrapper)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Nginx(child)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-QUIT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// The Python of the venv maubot is installed in (scripts/test makes it).
fn maubot_python() -> std::path::PathBuf {
    let python = std::env::var_os("MATRIXCTL_MAUBOT_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/cache/matrixctl/maubot-venv/bin/python".into());
    assert!(
        python.exists(),
        "the maubot test needs maubot in a venv at {}: run scripts/test, which installs it \
         (python3 -m venv V && V/bin/pip install maubot==0.6.0)",
        python.display()
    );
    python
}

/// Starts maubot from the config.yaml matrixctl rendered, as its role says
/// to run it (`-n`: it never rewrites the file), and waits for its port.
fn start_maubot(deployed: &Deployed, port: u16) -> Service {
    let data = deployed.path("data/maubot");
    for dir in ["plugins", "trash"] {
        std::fs::create_dir_all(data.join(dir)).unwrap();
    }
    let log = std::fs::File::create(deployed.path("maubot.log")).unwrap();
    let child = Command::new(maubot_python())
        .args(["-m", "maubot", "-n", "-c"])
        .arg(deployed.path("etc/maubot/config.yaml"))
        .current_dir(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut maubot = Service(child);
    wait_for_port(port, &mut maubot.0, "maubot");
    maubot
}

/// maubot behind the web server: its admin UI logs in with the inventory's
/// password, and registers a bot account on the real Synapse with the
/// shared secret both were given; the bot's token works. maubot never
/// rewrites its config, so the plan stays clean.
fn assert_fronts_maubot(deployed: &Deployed, ports: &Ports) {
    let _maubot = start_maubot(deployed, ports.maubot);
    let name = "matrix.minimal.example";
    let ui = curl(name, ports.https, "/_matrix/maubot/");
    assert_eq!(ui.status, 200, "the admin UI: {}{}", ui.headers, ui.body);
    let login = request(
        name,
        ports.https,
        "POST",
        "/_matrix/maubot/v1/auth/login",
        Some(&format!(
            "{{\"username\": \"admin\", \"password\": \"{MAUBOT_ADMIN_PASSWORD}\"}}"
        )),
        None,
    );
    assert_eq!(login.status, 200, "maubot login: {}", login.body);
    let token: serde_json::Value = serde_json::from_str(&login.body).unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    let register = request(
        name,
        ports.https,
        "POST",
        "/_matrix/maubot/v1/client/auth/minimal.example/register",
        Some("{\"username\": \"echobot\", \"password\": \"echobot-password\"}"),
        Some(&token),
    );
    assert_eq!(register.status, 200, "maubot register: {}", register.body);
    let bot: serde_json::Value = serde_json::from_str(&register.body).unwrap();
    assert_eq!(
        bot["user_id"], "@echobot:minimal.example",
        "{}",
        register.body
    );
    let whoami = request(
        name,
        ports.https,
        "GET",
        "/_matrix/client/v3/account/whoami",
        None,
        bot["access_token"].as_str(),
    );
    assert_eq!(whoami.status, 200, "{}", whoami.body);
    assert!(
        whoami.body.contains("@echobot:minimal.example"),
        "{}",
        whoami.body
    );
    assert_eq!(deployed.sandbox.plan_exit_code(Some("minimal.example")), 0);
}

struct Curl {
    status: u16,
    headers: String,
    body: String,
}

/// An HTTPS GET to loopback, with the right name for SNI and Host.
fn curl(name: &str, port: u16, path: &str) -> Curl {
    request(name, port, "GET", path, None, None)
}

/// An HTTPS request to loopback, with a JSON body and a bearer token when
/// given.
fn request(
    name: &str,
    port: u16,
    method: &str,
    path: &str,
    json: Option<&str>,
    token: Option<&str>,
) -> Curl {
    let mut command = Command::new("curl");
    command
        .args([
            "-sk",
            "--max-time",
            "10",
            "-D",
            "-",
            "-X",
            method,
            "--resolve",
        ])
        .arg(format!("{name}:{port}:127.0.0.1"));
    if let Some(json) = json {
        command
            .args(["-H", "Content-Type: application/json", "--data"])
            .arg(json);
    }
    if let Some(token) = token {
        command
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"));
    }
    let output = command
        .arg(format!("https://{name}:{port}{path}"))
        .output()
        .expect("curl runs (apt-get install curl)");
    let text = String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n");
    let (headers, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Curl {
        status,
        headers: headers.to_lowercase(),
        body: body.to_string(),
    }
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{what} never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What both web servers must do, checked over HTTPS.
fn assert_fronts_synapse(ports: &Ports) {
    let client = curl(
        "matrix.minimal.example",
        ports.https,
        "/.well-known/matrix/client",
    );
    assert_eq!(client.status, 200, "{}{}", client.headers, client.body);
    assert!(
        client.headers.contains("content-type: application/json"),
        "{}",
        client.headers
    );
    assert!(
        client.headers.contains("access-control-allow-origin: *"),
        "{}",
        client.headers
    );
    let body: serde_json::Value = serde_json::from_str(&client.body).unwrap();
    assert_eq!(
        body["m.homeserver"]["base_url"],
        "https://matrix.minimal.example/"
    );

    let server = curl("minimal.example", ports.https, "/.well-known/matrix/server");
    assert_eq!(server.status, 200, "{}", server.body);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&server.body).unwrap()["m.server"],
        format!("matrix.minimal.example:{}", ports.federation)
    );

    let versions = curl(
        "matrix.minimal.example",
        ports.https,
        "/_matrix/client/versions",
    );
    assert_eq!(versions.status, 200, "{}", versions.body);
    assert!(versions.body.contains("\"versions\""));
    let federation = curl(
        "matrix.minimal.example",
        ports.federation,
        "/_matrix/federation/v1/version",
    );
    assert_eq!(federation.status, 200, "{}", federation.body);
    assert!(federation.body.contains("Synapse"), "{}", federation.body);

    let admin = curl(
        "matrix.minimal.example",
        ports.https,
        "/_synapse/admin/v1/server_version",
    );
    assert_ne!(
        admin.status, 200,
        "the admin API must not be public: {}",
        admin.body
    );
    let website = curl("minimal.example", ports.https, "/about");
    assert_eq!(website.status, 301);
    assert!(
        website
            .headers
            .contains("location: https://www.minimal.example/about"),
        "{}",
        website.headers
    );
}

#[test]
fn nginx_passes_its_check_and_fronts_synapse() {
    let (deployed, ports, _certificate) = deploy_with("nginx", "");
    let _synapse = start(&deployed);
    let _nginx = run_nginx(&deployed, ports.https);
    assert_fronts_synapse(&ports);
    assert_fronts_maubot(&deployed, &ports);
}

/// nginx, run by the test on the configuration matrixctl rendered
/// (checked with `nginx -t` first), its state in the deployed tree.
fn run_nginx(deployed: &Deployed, https: u16) -> Nginx {
    let rendered = deployed.path("etc/nginx/conf.d/matrix.conf");
    assert!(rendered.exists(), "no nginx config rendered");
    let run = deployed.path("nginx");
    std::fs::create_dir_all(&run).unwrap();
    // Debian's nginx.conf includes conf.d/*.conf inside http {}; this wrapper
    // does the same, with the test's pid file and logs.
    let wrapper = run.join("nginx.conf");
    std::fs::write(
        &wrapper,
        format!(
            "user root;\ndaemon off;\npid {run}/nginx.pid;\nerror_log {run}/error.log;\nevents {{}}\n\
             http {{\n  access_log off;\n  client_body_temp_path {run}/body;\n  proxy_temp_path {run}/proxy;\n\
             fastcgi_temp_path {run}/fastcgi;\n  uwsgi_temp_path {run}/uwsgi;\n  scgi_temp_path {run}/scgi;\n\
             include /etc/nginx/mime.types;\n  include {rendered};\n}}\n",
            run = run.display(),
            rendered = rendered.display()
        ),
    )
    .unwrap();
    let check = Command::new("nginx")
        .args(["-t", "-q", "-e", "stderr", "-c"])
        .arg(&wrapper)
        .output()
        .expect("nginx runs (apt-get install nginx-light)");
    assert!(
        check.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    let mut nginx = Nginx::start(&wrapper);
    wait_for_port(https, &mut nginx.0, "nginx");
    nginx
}

#[test]
fn caddy_validates_and_fronts_synapse() {
    caddy_fronts_synapse("");
}

#[test]
fn caddy_serves_federation_on_the_https_port() {
    caddy_fronts_synapse("federation_on_https\n");
}

fn caddy_fronts_synapse(extra: &str) {
    let admin = free_port();
    let (deployed, ports, _certificate) = deploy_with(
        "caddy",
        &format!("{extra}caddy_admin_address: 127.0.0.1:{admin}\n"),
    );
    let _synapse = start(&deployed);
    let _caddy = run_caddy(&deployed, ports.https);
    assert_fronts_synapse(&ports);
    assert_fronts_maubot(&deployed, &ports);
}

/// Caddy, run by the test on the Caddyfile matrixctl rendered (checked
/// with `caddy validate` first), its state in the deployed tree.
fn run_caddy(deployed: &Deployed, https: u16) -> Service {
    let caddyfile = deployed.path("etc/caddy/Caddyfile");
    assert!(caddyfile.exists(), "no Caddyfile rendered");
    let home = deployed.path("caddy-home");
    std::fs::create_dir_all(&home).unwrap();
    let caddy = |args: &[&str]| {
        let mut command = Command::new("caddy");
        command
            .args(args)
            .arg("--adapter")
            .arg("caddyfile")
            .arg("--config")
            .arg(&caddyfile)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .stdin(Stdio::null());
        command
    };
    let check = caddy(&["validate"])
        .output()
        .expect("caddy runs (apt-get install caddy)");
    assert!(
        check.status.success(),
        "caddy validate: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let server = caddy(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Service(server);
    wait_for_port(https, &mut server.0, "caddy");
    server
}

/// Caddy's own ACME against the CA it is given (pebble on loopback,
/// validating on Caddy's ports): with SRV delegation the Matrix host and
/// the server name's federation site each get a certificate for their
/// name, and Synapse answers under each.
#[test]
fn caddy_gets_each_name_a_certificate_from_the_acme_ca_it_is_given() {
    let (http, https, federation, admin) = (free_port(), free_port(), free_port(), free_port());
    let pebble = crate::pebble::Pebble::serve_at("127.0.0.1", http, https);
    for name in ["matrix.minimal.example", "minimal.example"] {
        pebble.resolve(name, "127.0.0.1");
    }
    let vars = format!(
        "webserver: caddy\nwebserver_http_port: {http}\nwebserver_https_port: {https}\n\
         federation_port: {federation}\ncaddy_admin_address: 127.0.0.1:{admin}\n\
         delegation: srv\ncertificates: acme\nacme_directory: {}\n\
         acme_email: ops@minimal.example\nacme_ca_bundle: {}\n",
        pebble.directory,
        pebble.endpoint_ca.display()
    );
    let deployed = deploy_host(
        &repo().join("tests/cases/synapse-minimal"),
        "minimal.example",
        &vars,
    );
    let caddyfile = std::fs::read_to_string(deployed.path("etc/caddy/Caddyfile")).unwrap();
    assert!(
        caddyfile.contains(&format!("\tacme_ca \"{}\"\n", pebble.directory)),
        "{caddyfile}"
    );
    let _synapse = start(&deployed);
    let _caddy = run_caddy(&deployed, https);
    let trust = tempfile::tempdir().unwrap();
    let root = pebble.root(trust.path());
    // Caddy obtains the certificates in the background, after it starts.
    let get = |name: &str, port: u16, path: &str| -> serde_json::Value {
        let started = Instant::now();
        loop {
            let answer = Command::new("curl")
                .args(["-sS", "--max-time", "5", "--cacert"])
                .arg(&root)
                .arg("--resolve")
                .arg(format!("{name}:{port}:127.0.0.1"))
                .arg(format!("https://{name}:{port}{path}"))
                .output()
                .expect("curl runs (apt-get install curl)");
            if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&answer.stdout) {
                return json;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "https://{name}:{port}{path} under pebble's root: {}",
                String::from_utf8_lossy(&answer.stderr)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let versions = get("matrix.minimal.example", https, "/_matrix/client/versions");
    assert!(versions["versions"].is_array(), "{versions}");
    let keys = get("minimal.example", federation, "/_matrix/key/v2/server");
    assert_eq!(keys["server_name"], "minimal.example", "{keys}");
}

#[test]
fn every_profile_with_a_web_server_passes_its_check() {
    let certificates = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certificates.path(), &["localhost"]);
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("tests/cases"))
        .unwrap()
        .flatten()
    {
        let case = entry.path();
        // Every vars file of the case: a host may choose its own server.
        let vars: String = ["group_vars", "host_vars", "machine_vars"]
            .iter()
            .filter_map(|dir| std::fs::read_dir(case.join(dir)).ok())
            .flat_map(|files| files.flatten())
            .map(|file| std::fs::read_to_string(file.path()).unwrap())
            .collect();
        if !vars.contains("webserver: nginx") && !vars.contains("webserver: caddy") {
            continue;
        }
        let sandbox = crate::support::Sandbox::empty();
        let inventory = sandbox.path().join("inventory");
        crate::support::copy_dir(&case, &inventory);
        let all = std::fs::read_to_string(inventory.join("group_vars/all.yaml")).unwrap();
        // nginx -t opens the certificates: the test's stand in for Let's Encrypt's.
        let tls = if vars.contains("webserver: nginx") {
            format!("tls_certificate: {cert}\ntls_certificate_key: {key}\n")
        } else {
            String::new()
        };
        std::fs::write(inventory.join("group_vars/all.yaml"), format!("{all}{tls}")).unwrap();
        let render = sandbox.run(&["render", "inventory", "--out", "out"]);
        assert_eq!(render.code, 0, "{}", render.transcript());
        for host in std::fs::read_dir(sandbox.path().join("out"))
            .unwrap()
            .flatten()
        {
            // Each host's (or machine's) server: every file matrixctl
            // writes into nginx's conf.d, or its Caddyfile.
            let nginx = host.path().join("etc/nginx/conf.d");
            let caddyfile = host.path().join("etc/caddy/Caddyfile");
            let (webserver, output) = if nginx.is_dir() {
                let wrapper = sandbox.path().join("nginx.conf");
                std::fs::write(
                    &wrapper,
                    format!(
                        "pid {dir}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n  include /etc/nginx/mime.types;\n  include {}/*.conf;\n}}\n",
                        nginx.display(),
                        dir = sandbox.path().display()
                    ),
                )
                .unwrap();
                let output = Command::new("nginx")
                    .args(["-t", "-q", "-e", "stderr", "-c"])
                    .arg(&wrapper)
                    .output()
                    .unwrap();
                ("nginx", output)
            } else if caddyfile.exists() {
                let output = Command::new("caddy")
                    .args(["validate", "--adapter", "caddyfile", "--config"])
                    .arg(&caddyfile)
                    .env("HOME", sandbox.path())
                    .env("XDG_CONFIG_HOME", sandbox.path().join("config"))
                    .env("XDG_DATA_HOME", sandbox.path().join("data"))
                    .output()
                    .unwrap();
                ("caddy", output)
            } else {
                continue;
            };
            assert!(
                output.status.success(),
                "{} ({webserver}): {}",
                case.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "only {checked} web server configurations checked"
    );
}

#[test]
fn nginx_is_reloaded_when_its_vhost_changes_and_only_then() {
    let reloads = tempfile::tempdir().unwrap();
    let log = reloads.path().join("reloads.log");
    let run_dir = reloads.path().join("nginx");
    std::fs::create_dir_all(&run_dir).unwrap();
    let wrapper = run_dir.join("nginx.conf");
    // The handler reloads the test nginx (by its pid) and counts reloads;
    // the validator checks through the same wrapper nginx runs from.
    // First deployed with placeholder commands: nginx is not running yet.
    let placeholders = "host_commands: true\nsynapse_validate_command: \"true\"\nsynapse_restart_command: \"true\"\n\
         nginx_validate_command: \"true\"\nnginx_reload_command: \"true\"\n";
    let (deployed, ports, _certificate) = deploy_with("nginx", placeholders);
    std::fs::write(
        &wrapper,
        format!(
            "user root;\ndaemon off;\npid {run}/nginx.pid;\nerror_log {run}/error.log;\nevents {{}}\n\
             http {{\n  access_log off;\n  client_body_temp_path {run}/body;\n  proxy_temp_path {run}/proxy;\n\
             fastcgi_temp_path {run}/fastcgi;\n  uwsgi_temp_path {run}/uwsgi;\n  scgi_temp_path {run}/scgi;\n\
             include /etc/nginx/mime.types;\n  include {rendered};\n}}\n",
            run = run_dir.display(),
            rendered = deployed.path("etc/nginx/conf.d/matrix.conf").display()
        ),
    )
    .unwrap();
    let mut nginx = Nginx::start(&wrapper);
    wait_for_port(ports.https, &mut nginx.0, "nginx");
    let admin = || {
        curl(
            "matrix.minimal.example",
            ports.https,
            "/_synapse/admin/v1/server_version",
        )
        .status
    };
    assert_eq!(admin(), 404, "the admin API is not proxied yet");

    let group_vars = deployed.path("inventory/group_vars/synapse-test.yaml");
    let vars = std::fs::read_to_string(&group_vars)
        .unwrap()
        .replace(
            "nginx_validate_command: \"true\"",
            &format!(
                "nginx_validate_command: 'nginx -t -q -e stderr -c {}'",
                wrapper.display()
            ),
        )
        .replace(
            "nginx_reload_command: \"true\"",
            &format!(
                "nginx_reload_command: 'echo reload >> {} && kill -HUP $(cat {}/nginx.pid)'",
                log.display(),
                run_dir.display()
            ),
        );
    let apply = |vars: &str| {
        std::fs::write(&group_vars, vars).unwrap();
        let run =
            deployed
                .sandbox
                .run(&["apply", "--yes", "inventory", "--limit", "minimal.example"]);
        assert_eq!(run.code, 0, "{}", run.transcript());
        run
    };

    // Only Synapse's files change: nginx is left alone.
    apply(&format!("{vars}registration: closed\n"));
    assert!(
        !log.exists(),
        "nginx was reloaded for a Synapse-only change"
    );

    // The vhost changes: nginx is reloaded, and serves the new config
    // (the admin API is now proxied; no Synapse runs, hence a bad gateway).
    let run = apply(&format!(
        "{vars}registration: closed\nexpose_admin_api: true\n"
    ));
    assert!(run.stdout.contains("then: reload nginx"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "reload\n");
    // Old workers finish their requests while new ones start: wait until
    // the new configuration answers.
    let started = Instant::now();
    while admin() != 502 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nginx never picked up the new vhost"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A stand-in for one of Synapse's processes behind the web server: it
/// answers every request with its own name, so the test sees where the
/// web server sent each one. (The booted tests put real Synapse workers
/// behind nginx; this one checks both web servers' routing alike.) Its
/// thread stops when it is dropped.
struct StandIn {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StandIn {
    fn answering(name: &'static str, port: u16) -> StandIn {
        StandIn::serving(name, port, false)
    }

    /// Like `answering`, with the path it was asked for after its name:
    /// `NAME PATH`, so the test sees what the web server passed on.
    fn echoing_path(name: &'static str, port: u16) -> StandIn {
        StandIn::serving(name, port, true)
    }

    fn serving(name: &'static str, port: u16, echo_path: bool) -> StandIn {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                // The request's head, up to its blank line, then its body:
                // closing with unread bytes would reset the connection.
                let mut length = 0;
                let mut path = String::new();
                while reader.read_line(&mut line).is_ok_and(|read| read > 2) {
                    if path.is_empty() {
                        path = line.split_whitespace().nth(1).unwrap_or("?").to_string();
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                let _ = std::io::Read::read_exact(&mut reader, &mut body);
                let mut stream = reader.into_inner();
                let answer = if echo_path {
                    format!("{name} {path}")
                } else {
                    name.to_string()
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        StandIn {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Both web servers send each endpoint to the workers that serve it
/// (Synapse's docs/workers.md), a user's syncs always to the same client
/// worker, federation (also under the server name, where the SRV record
/// sends it) to the federation worker and its media requests to the
/// media worker, and everything else to the main process.
#[test]
fn both_web_servers_route_the_workers_endpoints_alike() {
    for webserver in ["nginx", "caddy"] {
        let names = ["main", "client1", "client2", "inbound1", "media1"];
        let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
        let admin = free_port();
        let (deployed, web, _certificate) = deploy_with(
            webserver,
            &format!(
                "synapse_install: venv\ndatabase: {{engine: postgres}}\ndelegation: srv\n\
                 caddy_admin_address: 127.0.0.1:{admin}\n\
                 synapse_workers:\n\
                 \x20 - {{name: client1, kind: client, port: {}}}\n\
                 \x20 - {{name: client2, kind: client, port: {}}}\n\
                 \x20 - {{name: inbound1, kind: federation_inbound, port: {}}}\n\
                 \x20 - {{name: media1, kind: media, port: {}}}\n",
                ports[1], ports[2], ports[3], ports[4]
            ),
        );
        let _stand_ins: Vec<StandIn> = names
            .iter()
            .zip(&ports)
            .enumerate()
            .map(|(index, (name, port))| {
                // The main process listens where the deployment put it.
                StandIn::answering(name, if index == 0 { deployed.port } else { *port })
            })
            .collect();
        let _nginx;
        let _caddy;
        if webserver == "nginx" {
            _nginx = run_nginx(&deployed, web.https);
        } else {
            _caddy = run_caddy(&deployed, web.https);
        }
        let answered = |port: u16, name: &str, method: &str, path: &str, token: Option<&str>| {
            let answer = request(name, port, method, path, Some("{}"), token);
            assert_eq!(answer.status, 200, "{webserver} {path}: {}", answer.headers);
            answer.body
        };
        let host = "matrix.minimal.example";
        let https = web.https;
        // A user's syncs stay on one client worker, whichever device asks.
        let sync = "/_matrix/client/v3/sync?timeout=0";
        let alice = answered(https, host, "GET", sync, Some("syt_YWxpY2U_first_device"));
        assert!(
            alice.starts_with("client"),
            "{webserver}: alice's sync went to {alice}"
        );
        for device in ["second", "third", "fourth"] {
            let token = format!("syt_YWxpY2U_{device}_device");
            assert_eq!(
                answered(https, host, "GET", sync, Some(&token)),
                alice,
                "{webserver}: alice's syncs moved"
            );
        }
        let users: std::collections::BTreeSet<String> = (0..12)
            .map(|user| {
                let token = format!("syt_dXNlcn{user}_device_x");
                answered(https, host, "GET", sync, Some(&token))
            })
            .collect();
        assert_eq!(
            users,
            ["client1", "client2"].map(String::from).into(),
            "{webserver}: twelve users' syncs used {users:?}"
        );
        for (method, path, worker) in [
            ("POST", "/_matrix/client/v3/createRoom", "client"),
            (
                "GET",
                "/_matrix/client/v1/media/download/minimal.example/abc",
                "media1",
            ),
            ("POST", "/_matrix/media/v3/upload", "media1"),
            ("GET", "/_matrix/client/versions", "main"),
            ("GET", "/_matrix/client/v3/pushrules/", "main"),
        ] {
            let body = answered(https, host, method, path, Some("syt_Ym9i_device_y"));
            assert!(
                body.starts_with(worker),
                "{webserver} {path}: went to {body}"
            );
        }
        for (path, worker) in [
            ("/_matrix/federation/v1/send/txn1", "inbound1"),
            ("/_matrix/federation/v1/media/download/abc", "media1"),
            ("/_matrix/key/v2/query", "inbound1"),
            ("/_matrix/key/v2/server", "main"),
        ] {
            let method = if path.contains("/send/") {
                "PUT"
            } else {
                "GET"
            };
            // On the Matrix host, and where the SRV record sends federation.
            for (port, name) in [(https, host), (web.federation, "minimal.example")] {
                let body = answered(port, name, method, path, None);
                assert!(
                    body.starts_with(worker),
                    "{webserver} {name}:{port}{path}: went to {body}"
                );
            }
        }
    }
}

/// Element Web at its own name on both web servers: the release that
/// `current` points at, the config.json matrixctl renders under every name
/// Element asks for it by, the headers Element's README asks for on every
/// answer, and no caching of what must stay fresh (but of the bundles).
#[test]
fn both_web_servers_serve_element_web_with_its_headers() {
    for webserver in ["nginx", "caddy"] {
        let admin = free_port();
        let (deployed, ports, _certificate) = deploy_with(
            webserver,
            &format!(
                "caddy_admin_address: 127.0.0.1:{admin}\n\
                 element_web:\n  version: \"1.12.6\"\n  sha256: \"{}\"\n",
                "0".repeat(64)
            ),
        );
        // What the artifact leaves (tests/it/artifacts.rs proves the
        // fetching): the version's files and `current` pointing at them.
        let release = deployed.path("opt/element-web/1.12.6");
        std::fs::create_dir_all(release.join("bundles/abc")).unwrap();
        std::fs::write(
            release.join("index.html"),
            "<title>Element stand-in page</title>\n",
        )
        .unwrap();
        std::fs::write(release.join("version"), "1.12.6\n").unwrap();
        std::fs::write(release.join("bundles/abc/app.js"), "console.log(1);\n").unwrap();
        std::os::unix::fs::symlink("1.12.6", deployed.path("opt/element-web/current")).unwrap();
        let _server = match webserver {
            "nginx" => Server::Nginx(run_nginx(&deployed, ports.https)),
            _ => Server::Caddy(run_caddy(&deployed, ports.https)),
        };
        let name = "element.minimal.example";
        let page = curl(name, ports.https, "/");
        assert_eq!(
            page.status, 200,
            "{webserver}: {}{}",
            page.headers, page.body
        );
        assert!(
            page.body.contains("Element stand-in page"),
            "{webserver}: {}",
            page.body
        );
        for path in [
            "/",
            "/index.html",
            "/version",
            "/config.json",
            "/config.element.minimal.example.json",
            "/bundles/abc/app.js",
        ] {
            let answer = curl(name, ports.https, path);
            assert_eq!(
                answer.status, 200,
                "{webserver} {path}: {}{}",
                answer.headers, answer.body
            );
            for header in [
                "x-frame-options: sameorigin",
                "x-content-type-options: nosniff",
                "x-xss-protection: 1; mode=block",
                "content-security-policy: frame-ancestors 'self'",
            ] {
                assert!(
                    answer.headers.contains(header),
                    "{webserver} {path}: no {header} in\n{}",
                    answer.headers
                );
            }
            let fresh = answer.headers.contains("cache-control: no-cache");
            assert_eq!(
                fresh,
                !path.starts_with("/bundles/"),
                "{webserver} {path}: {}",
                answer.headers
            );
            if path.starts_with("/config") {
                assert!(
                    answer.headers.contains("content-type: application/json"),
                    "{webserver} {path}: {}",
                    answer.headers
                );
                let config: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
                assert_eq!(
                    config["default_server_config"]["m.homeserver"]["base_url"],
                    "https://matrix.minimal.example/",
                    "{webserver}: {}",
                    answer.body
                );
                assert_eq!(
                    config["default_server_config"]["m.homeserver"]["server_name"],
                    "minimal.example"
                );
                assert_eq!(
                    answer.body,
                    std::fs::read_to_string(deployed.path("etc/element-web/config.json")).unwrap(),
                    "{webserver} {path}"
                );
            }
        }
        // The homeserver's name does not serve the client.
        let matrix = curl("matrix.minimal.example", ports.https, "/index.html");
        assert!(
            !matrix.body.contains("Element stand-in page"),
            "{webserver}: {}",
            matrix.body
        );
    }
}

/// Either web server, stopped when dropped.
enum Server {
    Nginx(#[allow(dead_code)] Nginx),
    Caddy(#[allow(dead_code)] Service),
}

/// MatrixRTC's discovery chain through both web servers to a real
/// Synapse: the client well-known's `rtc_foci`, Synapse's transports
/// endpoint (MSC4143, on with the settings matrixctl writes, which Synapse
/// must accept), and the authorization service and LiveKit behind their
/// prefixes, here stand-ins that answer with the path they were asked for
/// (the real ones cannot be downloaded on this machine).
#[test]
fn both_web_servers_carry_matrixrtc_discovery_to_synapse_and_livekit() {
    for webserver in ["nginx", "caddy"] {
        let (admin, jwt, sfu) = (free_port(), free_port(), free_port());
        let zeros = "0".repeat(64);
        let (deployed, ports, _certificate) = deploy_with(
            webserver,
            &format!(
                "caddy_admin_address: 127.0.0.1:{admin}\n\
                 synapse_python: {}\n\
                 matrixrtc:\n  livekit: {{version: \"1.9.4\", sha256: \"{zeros}\"}}\n  \
                 jwt_service: {{version: \"0.5.0\", sha256: \"{zeros}\"}}\n  \
                 http_port: {sfu}\n  jwt_port: {jwt}\n",
                crate::synapse::synapse_python().display()
            ),
        );
        let _synapse = start(&deployed);
        let _jwt = StandIn::echoing_path("lk-jwt-service stand-in", jwt);
        let _sfu = StandIn::echoing_path("livekit stand-in", sfu);
        let _server = match webserver {
            "nginx" => Server::Nginx(run_nginx(&deployed, ports.https)),
            _ => Server::Caddy(run_caddy(&deployed, ports.https)),
        };
        let name = "matrix.minimal.example";
        let service_url = "https://matrix.minimal.example/livekit/jwt";

        let client = curl(name, ports.https, "/.well-known/matrix/client");
        let client: serde_json::Value = serde_json::from_str(&client.body).unwrap();
        assert_eq!(
            client["org.matrix.msc4143.rtc_foci"],
            serde_json::json!([{"type": "livekit", "livekit_service_url": service_url}]),
            "{webserver}: {client}"
        );

        let transports = "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports";
        let anonymous = curl(name, ports.https, transports);
        assert_eq!(anonymous.status, 401, "{webserver}: {}", anonymous.body);
        let created = deployed.sandbox.run(&[
            "admin",
            "create",
            "minimal.example",
            "@alice:minimal.example",
        ]);
        assert_eq!(created.code, 0, "{webserver}: {}", created.transcript());
        let password = crate::booted::admin_password(&created);
        let login = request(
            name,
            ports.https,
            "POST",
            "/_matrix/client/v3/login",
            Some(
                &serde_json::json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": password})
                    .to_string(),
            ),
            None,
        );
        assert_eq!(login.status, 200, "{webserver}: {}", login.body);
        let token: serde_json::Value = serde_json::from_str(&login.body).unwrap();
        let known = request(
            name,
            ports.https,
            "GET",
            transports,
            None,
            token["access_token"].as_str(),
        );
        assert_eq!(known.status, 200, "{webserver}: {}", known.body);
        let known: serde_json::Value = serde_json::from_str(&known.body).unwrap();
        assert_eq!(
            known["rtc_transports"],
            serde_json::json!([{"type": "livekit", "livekit_service_url": service_url}]),
            "{webserver}"
        );

        // Each service sees its own paths, without the prefix.
        let health = curl(name, ports.https, "/livekit/jwt/healthz");
        assert_eq!(health.status, 200, "{webserver}: {}", health.body);
        assert_eq!(
            health.body, "lk-jwt-service stand-in /healthz",
            "{webserver}"
        );
        let token = curl(name, ports.https, "/livekit/jwt/get_token");
        assert_eq!(
            token.body, "lk-jwt-service stand-in /get_token",
            "{webserver}"
        );
        let signal = curl(name, ports.https, "/livekit/sfu/rtc?access_token=abc");
        assert_eq!(
            signal.body, "livekit stand-in /rtc?access_token=abc",
            "{webserver}"
        );
    }
}

/// With MAS, both web servers send the Matrix login, logout and refresh
/// endpoints to it (before the client workers, whose endpoints include
/// login), MAS's own name to it, and everything else where it went.
#[test]
fn both_web_servers_send_login_to_mas_before_any_worker() {
    for webserver in ["nginx", "caddy"] {
        let (admin, client, mas) = (free_port(), free_port(), free_port());
        let (deployed, web, _certificate) = deploy_with(
            webserver,
            &format!(
                "synapse_install: venv\ndatabase: {{engine: postgres}}\n\
                 caddy_admin_address: 127.0.0.1:{admin}\n\
                 synapse_workers:\n  - {{name: client1, kind: client, port: {client}}}\n\
                 mas: {{version: \"1.22.0\", sha256: \"{}\", http_port: {mas}}}\n",
                "0".repeat(64)
            ),
        );
        let _main = StandIn::answering("main", deployed.port);
        let _client = StandIn::answering("client1", client);
        let _mas = StandIn::echoing_path("mas stand-in", mas);
        let _server = match webserver {
            "nginx" => Server::Nginx(run_nginx(&deployed, web.https)),
            _ => Server::Caddy(run_caddy(&deployed, web.https)),
        };
        let host = "matrix.minimal.example";
        for (method, path, expected) in [
            (
                "POST",
                "/_matrix/client/v3/login",
                "mas stand-in /_matrix/client/v3/login",
            ),
            (
                "GET",
                "/_matrix/client/r0/login",
                "mas stand-in /_matrix/client/r0/login",
            ),
            (
                "POST",
                "/_matrix/client/v3/logout",
                "mas stand-in /_matrix/client/v3/logout",
            ),
            (
                "POST",
                "/_matrix/client/v3/logout/all",
                "mas stand-in /_matrix/client/v3/logout/all",
            ),
            (
                "POST",
                "/_matrix/client/v3/refresh",
                "mas stand-in /_matrix/client/v3/refresh",
            ),
            ("GET", "/_matrix/client/v3/sync", "client1"),
            ("GET", "/_matrix/client/versions", "main"),
        ] {
            let answer = request(host, web.https, method, path, Some("{}"), None);
            assert_eq!(
                answer.body, expected,
                "{webserver} {method} {path}: {}",
                answer.headers
            );
        }
        let account = curl("auth.minimal.example", web.https, "/account/");
        assert_eq!(
            account.body, "mas stand-in /account/",
            "{webserver}: {}",
            account.headers
        );
    }
}
