//! Element X's stack on a booted host, end to end as far as this machine
//! allows: Synapse (real), nginx (real), PostgreSQL (real), certificates
//! from the test's ACME CA, and Element Web, LiveKit, lk-jwt-service and
//! the Matrix Authentication Service installed by matrixctl
//! as pinned releases, which here are stand-ins the test builds (the real
//! ones cannot be downloaded on these machines): a page for Element Web,
//! and for the three services small programs that refuse to start without
//! what the real ones require and answer the few endpoints involved,
//! saying they are stand-ins. `check`, run from outside through the
//! test's DNS, follows the discovery chain a calling client follows.

use std::path::Path;
use std::process::Command;

use crate::artifacts::{Releases, sha256};
use crate::booted::{BootedHost, assert_next_apply_changes_nothing_on};
use crate::federation::TestNet;
use crate::support::Sandbox;

const SERVER: &str = "calls.example";

/// LiveKit's stand-in: reads the configuration matrixctl wrote (as the
/// real one does, it refuses a secret shorter than 32 characters), then
/// answers HTTP on its API address and accepts ICE/TCP connections on its
/// TCP port.
const LIVEKIT_STAND_IN: &str = r#"#!/usr/bin/python3
# A stand-in for livekit-server, built by matrixctl's tests.
import re, socket, sys, threading
from http.server import BaseHTTPRequestHandler, HTTPServer
config = open(sys.argv[sys.argv.index("--config") + 1]).read()
port = int(re.search(r"^port: (\d+)$", config, re.M).group(1))
bind = re.search(r'^bind_addresses: \["([^"]+)"\]$', config, re.M).group(1)
tcp_port = int(re.search(r"^  tcp_port: (\d+)$", config, re.M).group(1))
secret = re.search(r'^  matrixctl: "([^"]+)"$', config, re.M).group(1)
if len(secret) < 32:
    sys.exit("secret is too short")
ice = socket.socket()
ice.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ice.bind(("0.0.0.0", tcp_port))
ice.listen()
def accept():
    while True:
        ice.accept()[0].close()
threading.Thread(target=accept, daemon=True).start()
class Answer(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("livekit stand-in " + self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
HTTPServer((bind, port), Answer).serve_forever()
"#;

/// lk-jwt-service's stand-in: exits as the real one does when a variable
/// it requires is missing, and answers /healthz on LIVEKIT_JWT_BIND.
const JWT_STAND_IN: &str = r#"#!/usr/bin/python3
# A stand-in for lk-jwt-service, built by matrixctl's tests.
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
for name in ["LIVEKIT_URL", "LIVEKIT_KEY", "LIVEKIT_SECRET", "LIVEKIT_FULL_ACCESS_HOMESERVERS"]:
    if not os.environ.get(name):
        sys.exit(name + " must be set")
host, port = os.environ["LIVEKIT_JWT_BIND"].rsplit(":", 1)
class Answer(BaseHTTPRequestHandler):
    def do_GET(self):
        status = 200 if self.path == "/healthz" else 404
        body = ("lk-jwt-service stand-in " + self.path).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
HTTPServer((host, int(port)), Answer).serve_forever()
"#;

/// MAS's stand-in: `server` reads the configuration matrixctl wrote and
/// answers what Synapse and clients ask of MAS here (its discovery
/// document, which Synapse passes on as its auth metadata, the Matrix
/// login endpoints the web server sends it, its health); `manage`
/// records the command it was given (what `admin create` and `token
/// create` run) in its data directory.
const MAS_STAND_IN: &str = r#"#!/usr/bin/python3
# A stand-in for mas-cli, built by matrixctl's tests.
import json, re, sys, threading
from http.server import BaseHTTPRequestHandler, HTTPServer
config = open(sys.argv[sys.argv.index("--config") + 1]).read()
if sys.argv[1] == "manage":
    with open("/var/lib/mas/manage.log", "a") as log:
        log.write(" ".join(sys.argv[2:sys.argv.index("--config")]) + "\n")
    sys.exit(0)
public_base = re.search(r'^  public_base: "([^"]+)"$', config, re.M).group(1)
web, health = re.findall(r'^        - address: "([^"]+)"$', config, re.M)
for needed in ["encryption:", "key_file:", "homeserver:", "secret:", "password:"]:
    if needed not in config:
        sys.exit("no " + needed)
class Answer(BaseHTTPRequestHandler):
    def answer(self, status, body, kind):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == "/.well-known/openid-configuration":
            document = {"issuer": public_base, "account_management_uri": public_base + "account/",
                        "authorization_endpoint": public_base + "authorize", "stand_in": True}
            self.answer(200, json.dumps(document).encode(), "application/json")
        else:
            self.answer(200, ("mas stand-in " + self.path).encode(), "text/plain")
def serve(address):
    host, port = address.rsplit(":", 1)
    HTTPServer((host, int(port)), Answer).serve_forever()
threading.Thread(target=serve, args=(health,), daemon=True).start()
serve(web)
"#;

/// The releases the host fetches, in `dir`: Element Web's archive (its
/// files under element-vVERSION/), LiveKit's (livekit-server at the top)
/// and lk-jwt-service's binary.
fn build_releases(dir: &Path) {
    let element = dir.join("element-build/element-v1.12.6");
    std::fs::create_dir_all(&element).unwrap();
    std::fs::write(
        element.join("index.html"),
        "<title>Element Web stand-in</title>\n",
    )
    .unwrap();
    std::fs::write(element.join("version"), "1.12.6\n").unwrap();
    let mas = dir.join("mas-build");
    std::fs::create_dir_all(mas.join("share/assets")).unwrap();
    let livekit = dir.join("livekit-build");
    std::fs::create_dir_all(&livekit).unwrap();
    let executable = |path: &Path, text: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    executable(&livekit.join("livekit-server"), LIVEKIT_STAND_IN);
    executable(&dir.join("lk-jwt-service_linux_amd64"), JWT_STAND_IN);
    executable(&mas.join("mas-cli"), MAS_STAND_IN);
    for (archive, from, member) in [
        (
            "element-v1.12.6.tar.gz",
            dir.join("element-build"),
            "element-v1.12.6",
        ),
        (
            "livekit_1.9.4_linux_amd64.tar.gz",
            livekit,
            "livekit-server",
        ),
        ("mas-cli-x86_64-linux.tar.gz", mas.clone(), "."),
    ] {
        let status = Command::new("tar")
            .arg("-czf")
            .arg(dir.join(archive))
            .arg("-C")
            .arg(from)
            .arg(member)
            .status()
            .expect("tar runs");
        assert!(status.success(), "tar {archive}");
    }
}

#[test]
fn element_web_and_calls_are_installed_served_and_checked_from_outside() {
    let host = BootedHost::up("mcelementx");
    host.run(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 > /dev/null 2>&1",
    );
    let mut names = TestNet::names_of(&[(SERVER, &host)]);
    names.push((format!("element.{SERVER}"), host.address.clone()));
    names.push((format!("auth.{SERVER}"), host.address.clone()));
    let net = TestNet::up(&[&host], &[], names);
    host.copy_wheels(&["synapse"]);

    let dir = tempfile::tempdir().unwrap();
    build_releases(dir.path());
    let releases = Releases::serve(&host, dir.path());
    let sum = |file: &str| sha256(&dir.path().join(file));
    let sandbox: Sandbox = host.inventory(
        SERVER,
        &format!(
            "synapse_install: venv\nsynapse_wheels: /srv/wheels\n\
             webserver: nginx\nregistration: token\nserve_base_domain: true\nfirewall: nftables\n\
             artifact_mirror: {}\n\
             element_web:\n  version: 1.12.6\n  sha256: {}\n\
             matrixrtc:\n  livekit: {{version: 1.9.4, sha256: {}}}\n  \
             jwt_service: {{version: 0.5.0, sha256: {}}}\n\
             database: {{engine: postgres}}\nmas: {{version: 1.22.0, sha256: {}}}\n{}",
            releases.url,
            sum("element-v1.12.6.tar.gz"),
            sum("livekit_1.9.4_linux_amd64.tar.gz"),
            sum("lk-jwt-service_linux_amd64"),
            sum("mas-cli-x86_64-linux.tar.gz"),
            net.homeserver_vars("")
        ),
    );

    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(
        apply.code,
        0,
        "{}\n{}",
        apply.transcript(),
        host.run("journalctl -n 60 --no-pager")
    );
    for unit in ["livekit", "lk-jwt-service", "mas"] {
        assert_eq!(
            host.run(&format!("systemctl is-active {unit} || true")),
            "active",
            "{unit}: {}",
            host.run(&format!("journalctl -u {unit} -n 30 --no-pager"))
        );
        assert_eq!(
            host.run(&format!(
                "stat -c %U /proc/$(systemctl show -p MainPID --value {unit})"
            )),
            unit,
            "{unit} runs as its own account"
        );
    }

    // The client at its own name, and the chain a calling client follows.
    let outside = net.outside();
    let page = outside.get(&format!("https://element.{SERVER}/"));
    assert_eq!(page.status, 200, "{}", page.said);
    assert!(page.said.contains("Element Web stand-in"), "{}", page.said);
    let check = net.check(&sandbox, SERVER);
    for line in [
        "https://element.calls.example/config.json: serves what matrixctl renders",
        "https://matrix.calls.example/.well-known/matrix/client: serves what matrixctl renders",
        "https://matrix.calls.example/_matrix/client/unstable/org.matrix.msc4143/rtc/transports: Synapse's MatrixRTC transports endpoint (MSC4143) answers (401)",
        "https://matrix.calls.example/livekit/jwt/healthz: the MatrixRTC authorization service (lk-jwt-service) answers (200)",
        "7881/tcp (LiveKit ICE over TCP (calls where UDP is blocked)) accepts connections",
        "https://matrix.calls.example/_matrix/client/v1/auth_metadata: Synapse's delegation to MAS (MSC2965 auth metadata) answers (200)",
        "https://auth.calls.example/.well-known/openid-configuration: the Matrix Authentication Service's discovery document answers (200)",
    ] {
        assert!(
            check.stdout.contains(line),
            "{line}\n{}",
            check.transcript()
        );
    }
    assert_eq!(check.code, 0, "{}", check.transcript());
    // LiveKit's API is reached through the web server only.
    let signal = outside.get(&format!("https://matrix.{SERVER}/livekit/sfu/rtc"));
    assert!(
        signal.said.contains("livekit stand-in /rtc"),
        "{}",
        signal.said
    );

    // Synapse delegates to MAS: its auth metadata is MAS's document, and
    // the Matrix login endpoints reach MAS through nginx.
    let metadata = outside.json(&format!(
        "https://matrix.{SERVER}/_matrix/client/v1/auth_metadata"
    ));
    assert_eq!(
        metadata["issuer"],
        format!("https://auth.{SERVER}/"),
        "{metadata}"
    );
    assert_eq!(metadata["stand_in"], true, "{metadata}");
    let login = outside.get(&format!("https://matrix.{SERVER}/_matrix/client/v3/login"));
    assert!(
        login.said.contains("mas stand-in /_matrix/client/v3/login"),
        "{}",
        login.said
    );
    // Each service's look from the host: a stopped one is named, with
    // where its log is.
    for look in [
        "MAS answers at http://127.0.0.1:8091/health",
        "the MatrixRTC authorization service answers at http://127.0.0.1:8081/healthz",
        "LiveKit answers at http://127.0.0.1:7880/",
    ] {
        assert!(
            check.stdout.contains(look),
            "{look}\n{}",
            check.transcript()
        );
    }
    host.run("systemctl stop lk-jwt-service");
    let stopped = net.check(&sandbox, SERVER);
    assert_ne!(stopped.code, 0, "{}", stopped.transcript());
    assert!(
        stopped.stdout.contains(
            "the MatrixRTC authorization service does not answer at http://127.0.0.1:8081/healthz"
        ) && stopped
            .stdout
            .contains("journalctl -u lk-jwt-service says why"),
        "{}",
        stopped.transcript()
    );
    host.run("systemctl start lk-jwt-service");

    // The operator's accounts and invitations go through mas-cli.
    let admin = sandbox.run(&["admin", "create", SERVER, &format!("@boss:{SERVER}")]);
    assert_eq!(admin.code, 0, "{}", admin.transcript());
    let token = sandbox.run(&["token", "create", SERVER, "--uses", "3"]);
    assert_eq!(token.code, 0, "{}", token.transcript());
    let token = token.stdout.lines().last().unwrap().trim().to_string();
    let manage = host.run("cat /var/lib/mas/manage.log");
    assert!(
        manage.contains(
            "register-user --yes --admin --ignore-password-complexity --username boss --password "
        ),
        "{manage}"
    );
    assert!(
        manage.contains(&format!(
            "issue-user-registration-token --token {token} --usage-limit 3"
        )),
        "{manage}"
    );

    assert_next_apply_changes_nothing_on(
        &sandbox,
        &[(
            &host,
            &[
                "matrix-synapse",
                "livekit",
                "lk-jwt-service",
                "mas",
                "nginx",
            ],
        )],
    );
}
