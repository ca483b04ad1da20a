//! The Synapse role proven by a real Synapse: each profile under
//! tests/cases/synapse-*/ is applied to a local directory (with test vars
//! for SQLite, loopback port and paths: no rendered file is edited), then
//! Synapse checks the configuration, starts from it, and answers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::loopback::free_port;
use crate::support::{Sandbox, copy_dir, repo};

/// The Python of the venv Synapse is installed in (scripts/test makes it).
pub fn synapse_python() -> PathBuf {
    let python = std::env::var_os("MATRIXCTL_SYNAPSE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/matrixctl/synapse-venv/bin/python"));
    assert!(
        python.exists(),
        "the Synapse tests need Synapse in a venv at {}: run scripts/test, which installs it \
         (python3 -m venv V && V/bin/pip install 'matrix-synapse[oidc,url-preview]' matrix-synapse-ldap3)",
        python.display()
    );
    python
}

/// A profile applied to a sandbox, ready for Synapse.
pub struct Deployed {
    pub sandbox: Sandbox,
    pub host: String,
    pub port: u16,
}

impl Deployed {
    pub fn path(&self, relative: &str) -> PathBuf {
        self.sandbox.path().join(relative)
    }

    fn config_args(&self) -> Vec<String> {
        vec![
            "-c".into(),
            self.path("etc/matrix-synapse/homeserver.yaml")
                .display()
                .to_string(),
            "-c".into(),
            self.path("etc/matrix-synapse/conf.d").display().to_string(),
        ]
    }

    fn synapse(&self, extra: &[&str]) -> Command {
        let mut command = Command::new(synapse_python());
        command
            .args(["-m"])
            .args(extra)
            .args(self.config_args())
            .current_dir(self.path("data"))
            .stdin(Stdio::null());
        command
    }
}

/// Copies the profile's inventory and applies its one host for Synapse.
fn deploy(profile: &str) -> Deployed {
    let case = repo().join("tests/cases").join(profile);
    let hosts = std::fs::read_to_string(case.join("hosts.yaml")).unwrap();
    let host = hosts
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches(':')
        .to_string();
    deploy_host(&case, &host, "")
}

/// Copies `inventory`, puts `host` at `root: /` in an extra group whose
/// test vars (SQLite, a loopback port, paths inside the sandbox) win over
/// the inventory's groups, and applies it to that host.
pub fn deploy_host(inventory_dir: &Path, host: &str, extra_vars: &str) -> Deployed {
    let sandbox = Sandbox::empty();
    let inventory = sandbox.path().join("inventory");
    copy_dir(inventory_dir, &inventory);
    let hosts_path = inventory.join("hosts.yaml");
    let mut hosts: serde_yaml::Value =
        serde_yaml::from_slice(&std::fs::read(&hosts_path).unwrap()).unwrap();
    let entry = &mut hosts["hosts"][host];
    entry["root"] = "/".into();
    let mut groups = entry["groups"].as_sequence().cloned().unwrap_or_default();
    groups.push("synapse-test".into());
    entry["groups"] = serde_yaml::Value::Sequence(groups);
    std::fs::write(&hosts_path, serde_yaml::to_string(&hosts).unwrap()).unwrap();

    let port = free_port();
    let dir = sandbox.path().display().to_string();
    // Unless the test points validators and handlers at its own programs,
    // there are no services here to check or restart.
    // SQLite, unless the test names its own database.
    let database = if extra_vars.contains("database:") {
        String::new()
    } else {
        format!("database:\n  engine: sqlite\n  sqlite_path: {dir}/data/homeserver.db\n")
    };
    let host_commands = if extra_vars.contains("host_commands:") {
        ""
    } else {
        "host_commands: false\n"
    };
    sandbox.write(
        "inventory/group_vars/synapse-test.yaml",
        &format!(
            "# Test vars: SQLite, a loopback port and paths inside the sandbox.\n\
             synapse_config_dir: {dir}/etc/matrix-synapse\n\
             synapse_data_dir: {dir}/data\n\
             synapse_signing_key_path: {dir}/etc/matrix-synapse/homeserver.signing.key\n\
             synapse_log_config: {dir}/etc/matrix-synapse/log.yaml\n\
             synapse_listener_port: {port}\n\
             wellknown_webroot: {dir}/www\n\
             state_dir: {dir}/state\n\
             nginx_config_path: {dir}/etc/nginx/conf.d/matrix.conf\n\
             caddy_config_path: {dir}/etc/caddy/Caddyfile\n\
             synapse_redis_config: {dir}/etc/matrix-synapse-redis.conf\n\
             firewall_ruleset_path: {dir}/etc/nftables.conf\n\
             turn_config_path: {dir}/etc/turnserver.conf\n\
             turn_group: root\n\
             {host_commands}\
             heisenbridge_config_dir: {dir}/etc/heisenbridge\n\
             postmoogle_config_dir: {dir}/etc/postmoogle\n\
             postmoogle_data_dir: {dir}/data/postmoogle\n\
             element_web_dir: {dir}/opt/element-web\n\
             livekit_config_dir: {dir}/etc/livekit\n\
             livekit_group: root\n\
             lk_jwt_service_config_dir: {dir}/etc/lk-jwt-service\n\
             lk_jwt_service_group: root\n\
             mas_config_dir: {dir}/etc/mas\n\
             mas_group: root\n\
             element_web_config_dir: {dir}/etc/element-web\n\
             mautrix_telegram_config_dir: {dir}/etc/mautrix-telegram\n\
             mautrix_telegram_data_dir: {dir}/data/mautrix-telegram\n\
             maubot_config_dir: {dir}/etc/maubot\n\
             maubot_data_dir: {dir}/data/maubot\n\
             maubot_group: root\n\
             mautrix_telegram_group: root\n\
             mautrix_googlechat_group: root\n\
             postmoogle_group: root\n\
             # The test machine is no host to install packages on.\n\
             manage_system: false\n\
             {database}\
             {extra_vars}"
        ),
    );
    // Debian's package ships homeserver.yaml; everything that matters is in
    // conf.d, which is read after it.
    sandbox.write(
        "etc/matrix-synapse/homeserver.yaml",
        "# As Debian ships it, minus what conf.d sets.\ntrusted_key_servers: []\n",
    );
    std::fs::create_dir_all(sandbox.path().join("data")).unwrap();
    let apply = sandbox.run(&["apply", "--yes", "inventory", "--limit", host]);
    assert_eq!(apply.code, 0, "{host}: {}", apply.transcript());
    Deployed {
        sandbox,
        host: host.to_string(),
        port,
    }
}

/// A running Synapse, stopped by pid when dropped.
pub struct Running {
    pub child: Child,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks the configuration and starts Synapse from it.
pub fn start(deployed: &Deployed) -> Running {
    let keys = deployed
        .synapse(&["synapse.app.homeserver", "--generate-keys"])
        .output()
        .unwrap();
    assert!(
        keys.status.success(),
        "--generate-keys: {}",
        String::from_utf8_lossy(&keys.stderr)
    );
    let check = deployed.synapse(&["synapse.config"]).output().unwrap();
    let said = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(
        check.status.success() && said.contains("Config parses OK!"),
        "Synapse refused the config:\n{said}"
    );

    let log = deployed.path("synapse.log");
    let child = deployed
        .synapse(&["synapse.app.homeserver"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut running = Running { child, log };
    let started = Instant::now();
    loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            panic!(
                "Synapse exited ({status}):\n{}",
                std::fs::read_to_string(&running.log).unwrap_or_default()
            );
        }
        if let Ok(response) = http(deployed.port, "GET", "/health", None)
            && response.status == 200
        {
            return running;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Synapse never answered /health:\n{}",
            std::fs::read_to_string(&running.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Response {
    status: u16,
    headers: String,
    body: String,
}

impl Response {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }
}

/// One HTTP/1.0 request to Synapse on loopback (so the body is not chunked).
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok(Response {
        status,
        headers: head.to_string(),
        body: body.to_string(),
    })
}

fn registration_flows(port: u16) -> Response {
    http(port, "POST", "/_matrix/client/v3/register", Some("{}")).unwrap()
}

/// Every stage named in the register response's flows.
fn stages(response: &Response) -> Vec<Vec<String>> {
    response.json()["flows"]
        .as_array()
        .map(|flows| {
            flows
                .iter()
                .map(|flow| {
                    flow["stages"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|stage| stage.as_str().unwrap().to_string())
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn assert_serves_client_api(deployed: &Deployed) {
    let versions = http(deployed.port, "GET", "/_matrix/client/versions", None).unwrap();
    assert_eq!(versions.status, 200, "{}", versions.body);
    assert!(
        versions.json()["versions"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
    );

    let well_known = http(deployed.port, "GET", "/.well-known/matrix/client", None).unwrap();
    assert_eq!(well_known.status, 200, "{}", well_known.body);
    assert_eq!(
        well_known.header("Access-Control-Allow-Origin").as_deref(),
        Some("*")
    );
    let rendered: serde_json::Value = serde_json::from_slice(
        &std::fs::read(deployed.path("www/.well-known/matrix/client")).unwrap(),
    )
    .unwrap();
    // Synapse's own answer and our static file agree on the base URL.
    assert_eq!(
        well_known.json()["m.homeserver"]["base_url"],
        rendered["m.homeserver"]["base_url"]
    );
    assert_eq!(
        rendered["m.homeserver"]["base_url"],
        format!("https://matrix.{}/", deployed.host)
    );
}

#[test]
fn minimal_profile_starts_and_asks_for_an_invite_token() {
    let deployed = deploy("synapse-minimal");
    let _synapse = start(&deployed);
    assert_serves_client_api(&deployed);
    let register = registration_flows(deployed.port);
    assert_eq!(register.status, 401, "{}", register.body);
    let flows = stages(&register);
    assert!(
        flows
            .iter()
            .all(|flow| flow.contains(&"m.login.registration_token".to_string())),
        "every flow needs a token: {flows:?}"
    );
}

/// What Synapse parsed for one setting (`python -m synapse.config read`).
fn synapse_reads(deployed: &Deployed, setting: &str) -> String {
    let output = deployed
        .synapse(&["synapse.config", "read", setting])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{setting}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|line| line.starts_with(setting))
        .unwrap_or_else(|| panic!("{text}"));
    line[setting.len() + 1..].trim().to_string()
}

#[test]
fn enterprise_profile_starts_with_registration_closed() {
    let deployed = deploy("synapse-enterprise");
    let _synapse = start(&deployed);
    // Synapse read the settings the way the inventory means them.
    assert_eq!(
        synapse_reads(&deployed, "federation.federation_domain_whitelist"),
        "{'corp.example': True, 'partner.example': True}"
    );
    assert_eq!(
        synapse_reads(&deployed, "media.max_upload_size"),
        "104857600"
    );
    assert_eq!(
        synapse_reads(&deployed, "registration.enable_registration"),
        "False"
    );
    assert_serves_client_api(&deployed);
    let register = registration_flows(deployed.port);
    assert_eq!(register.status, 403, "{}", register.body);
    assert_eq!(register.json()["errcode"], "M_FORBIDDEN");
    // The consent page is served from the rendered policy.
    let consent = http(deployed.port, "GET", "/_matrix/consent?v=1.0", None).unwrap();
    assert!(
        consent.body.contains("Acceptable Use Policy"),
        "{} {}",
        consent.status,
        consent.body
    );
}

#[test]
fn sso_profile_starts_and_open_registration_needs_an_email() {
    let deployed = deploy("synapse-sso");
    let _synapse = start(&deployed);
    assert_serves_client_api(&deployed);
    let register = registration_flows(deployed.port);
    assert_eq!(register.status, 401, "{}", register.body);
    let flows = stages(&register);
    assert!(!flows.is_empty());
    assert!(
        flows
            .iter()
            .all(|flow| flow.contains(&"m.login.email.identity".to_string())),
        "every flow needs an email: {flows:?}"
    );
    let login = http(deployed.port, "GET", "/_matrix/client/v3/login", None).unwrap();
    let types: Vec<String> = login.json()["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|flow| flow["type"].as_str().unwrap().to_string())
        .collect();
    assert!(types.contains(&"m.login.sso".to_string()), "{types:?}");
}

#[test]
fn every_host_of_the_example_inventory_is_accepted_by_synapse() {
    for host in ["example.com", "example.net", "example.org"] {
        let deployed = deploy_host(&repo().join("inventory.example"), host, "");
        let _synapse = start(&deployed);
        let versions = http(deployed.port, "GET", "/_matrix/client/versions", None).unwrap();
        assert_eq!(versions.status, 200, "{host}: {}", versions.body);
    }
}

/// The user an appservice token acts as, asked of the running Synapse.
fn whoami(port: u16, token: &str) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /_matrix/client/v3/account/whoami HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    Response {
        status: head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0),
        headers: head.to_string(),
        body: body.to_string(),
    }
}

#[test]
fn the_hosting_profile_starts_with_every_bridge_registered() {
    let deployed = deploy("hosting-full");
    let _synapse = start(&deployed);
    assert_serves_client_api(&deployed);
    let registration = |name: &str| -> serde_yaml::Value {
        serde_yaml::from_slice(
            &std::fs::read(deployed.path(&format!("etc/matrix-synapse/appservices/{name}.yaml")))
                .unwrap(),
        )
        .unwrap()
    };
    // Synapse loaded each registration: its as_token acts as its sender.
    for (name, sender) in [
        ("heisenbridge", "heisenbridge"),
        ("mautrix-telegram", "telegrambot"),
        // A role written as data only (roles/mautrix-googlechat.yaml).
        ("mautrix-googlechat", "googlechatbot"),
    ] {
        let token = registration(name)["as_token"].as_str().unwrap().to_string();
        let answer = whoami(deployed.port, &token);
        assert_eq!(answer.status, 200, "{name}: {}", answer.body);
        assert_eq!(
            answer.json()["user_id"],
            format!("@{sender}:{}", deployed.host),
            "{name}"
        );
    }
    // And the bridges' namespaces are theirs alone.
    let taken = http(
        deployed.port,
        "GET",
        "/_matrix/client/v3/register/available?username=irc_someone",
        None,
    )
    .unwrap();
    assert_eq!(taken.status, 400, "{}", taken.body);
    assert_eq!(taken.json()["errcode"], "M_EXCLUSIVE");
    // It started with the S3 media module (roles/synapse-s3-storage-provider.yaml,
    // data only) loaded from its conf.d file; a module it could not import
    // or configure would have stopped it.
    let providers: serde_yaml::Value = serde_yaml::from_slice(
        &std::fs::read(deployed.path("etc/matrix-synapse/conf.d/media_storage_providers.yaml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        providers["media_storage_providers"][0]["module"],
        "s3_storage_provider.S3StorageProviderBackend"
    );
    // The TURN settings Synapse read share coturn's secret.
    let coturn = std::fs::read_to_string(deployed.path("etc/turnserver.conf")).unwrap();
    let secret = coturn
        .lines()
        .find_map(|line| line.strip_prefix("static-auth-secret="))
        .unwrap();
    let turn: serde_yaml::Value = serde_yaml::from_slice(
        &std::fs::read(deployed.path("etc/matrix-synapse/conf.d/turn.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(turn["turn_shared_secret"].as_str(), Some(secret));
}

/// A restart script for the handler: stops the Synapse whose pid is in
/// `pidfile`, starts it again from the configuration now on disk, and
/// succeeds only once the new one answers /health on the port its
/// listeners.yaml names.
fn restart_script(deployed: &Deployed, pidfile: &Path) -> PathBuf {
    let script = deployed.path("restart-synapse.sh");
    let args = deployed.config_args().join(" ");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             kill \"$(cat {pid})\" 2>/dev/null\n\
             i=0; while kill -0 \"$(cat {pid})\" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n\
             cd {data} && setsid {python} -m synapse.app.homeserver {args} > {data}/restart.log 2>&1 < /dev/null 9>&- &\n\
             echo $! > {pid}\n\
             port=$(sed -n 's/^  - port: //p' {conf_d}/listeners.yaml)\n\
             i=0; while [ $i -lt 150 ]; do\n\
             \x20 python3 -c \"import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:'+sys.argv[1]+'/health', timeout=1)\" \"$port\" 2>/dev/null && exit 0\n\
             \x20 kill -0 \"$(cat {pid})\" 2>/dev/null || exit 1\n\
             \x20 sleep 0.2; i=$((i+1))\n\
             done\nexit 1\n",
            pid = pidfile.display(),
            data = deployed.path("data").display(),
            python = synapse_python().display(),
            conf_d = deployed.path("etc/matrix-synapse/conf.d").display(),
        ),
    )
    .unwrap();
    script
}

#[test]
fn a_synapse_that_fails_to_restart_is_rolled_back_and_runs_the_old_config() {
    let deployed = deploy("synapse-minimal");
    let synapse = start(&deployed);
    let pidfile = deployed.path("synapse.pid");
    std::fs::write(&pidfile, synapse.child.id().to_string()).unwrap();
    let script = restart_script(&deployed, &pidfile);

    // The new configuration moves Synapse to a port something else holds:
    // Synapse's own check accepts it, but it cannot start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let group_vars = deployed.path("inventory/group_vars/synapse-test.yaml");
    let vars = std::fs::read_to_string(&group_vars)
        .unwrap()
        .replace("host_commands: false\n", "");
    let old_port = deployed.port;
    std::fs::write(
        &group_vars,
        vars.replace(&format!("synapse_listener_port: {old_port}"), &format!("synapse_listener_port: {taken_port}"))
            + &format!(
                "host_commands: true\nsynapse_validate_command: \"true\"\nsynapse_restart_command: \"sh {}\"\n",
                script.display()
            ),
    )
    .unwrap();
    let before = std::fs::read(deployed.path("etc/matrix-synapse/conf.d/listeners.yaml")).unwrap();
    let apply =
        deployed
            .sandbox
            .run(&["apply", "--yes", "inventory", "--limit", "minimal.example"]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    assert!(
        apply.stdout.contains("handler \"restart synapse\" failed"),
        "{}",
        apply.stdout
    );
    assert!(apply.stdout.contains("rolled back"), "{}", apply.stdout);
    assert_eq!(
        std::fs::read(deployed.path("etc/matrix-synapse/conf.d/listeners.yaml")).unwrap(),
        before
    );
    // The handler ran again on the restored files: Synapse is back, on the old port.
    let health = http(old_port, "GET", "/health", None).unwrap();
    assert_eq!(health.status, 200);
    drop(taken);
    // Stop the Synapse the handler started (the test's own was replaced).
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let _ = Command::new("kill").arg(pid.trim()).status();
}
