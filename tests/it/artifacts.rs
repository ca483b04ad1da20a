//! Pinned release artifacts on a booted host, for real: archives the test
//! builds (a made-up tool, two releases, and a single binary), served over
//! HTTP from the test machine's end of the host's link by Python's
//! http.server (its log tells every download). Installed and switched to,
//! upgraded by changing the version, a wrong checksum refused with
//! nothing changed, a failed apply pointing `current` back, and an apply
//! with nothing to do downloading nothing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::booted::BootedHost;
use crate::support::Sandbox;

/// Python's http.server over `dir`, on the test machine's end of `host`'s
/// link, logging each request to `log`; stopped by its pid. (The local
/// apt repository's tests serve theirs with it too.)
pub struct Releases {
    pub url: String,
    log: std::path::PathBuf,
    server: Child,
}

impl Releases {
    pub fn serve(host: &BootedHost, dir: &Path) -> Releases {
        let gateway = format!("{}.1", host.address.rsplit_once('.').unwrap().0);
        let port = crate::loopback::free_port();
        let log = dir.join("requests.log");
        let server = Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", &gateway])
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("python3 runs (apt-get install python3)");
        let started = Instant::now();
        while std::net::TcpStream::connect((gateway.as_str(), port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the release server never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Releases {
            url: format!("http://{gateway}:{port}"),
            log,
            server,
        }
    }

    /// How many times `file` was downloaded so far.
    fn downloads(&self, file: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches(&format!("GET /{file} "))
            .count()
    }
}

impl Drop for Releases {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.server.id().to_string())
            .status();
        let _ = self.server.wait();
    }
}

/// `tool-VERSION.tar.gz` in `dir`, its files under `tool-VERSION/`, and
/// its SHA-256.
fn release(dir: &Path, version: &str) -> String {
    let top = dir.join(format!("tool-{version}"));
    std::fs::create_dir_all(top.join("bin")).unwrap();
    std::fs::write(
        top.join("bin/tool"),
        format!("#!/bin/sh\necho tool {version}\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(top.join("bin/tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(top.join("VERSION"), format!("{version}\n")).unwrap();
    let archive = format!("tool-{version}.tar.gz");
    let made = Command::new("tar")
        .args(["-czf", &archive, &format!("tool-{version}")])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::remove_dir_all(&top).unwrap();
    sha256(&dir.join(archive))
}

pub fn sha256(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The test's role: the tool's release as an artifact, its version and
/// checksum from the inventory, a file of its own whose validator fails
/// when `tool_break` says so (to make an apply roll back), and a single
/// binary.
fn write_role(sandbox: &Sandbox, releases: &Releases, helper_sha: &str, pages_sha: &str) {
    sandbox.write(
        "roles/tool.yaml",
        &format!(
            "description: a made-up tool's releases\n\
             options:\n\
             \x20 tool_version: {{type: string, default: \"1.0\"}}\n\
             \x20 tool_sha256: {{type: string, default: \"\"}}\n\
             \x20 tool_break: {{type: bool, default: false}}\n\
             # What fetches the releases (curl and wget are not on this\n\
             # minimal system; a real role names curl).\n\
             packages:\n\
             \x20 - name: python3\n\
             artifacts:\n\
             \x20 - name: tool\n\
             \x20   version: \"{{{{ tool_version }}}}\"\n\
             \x20   url: \"{base}/tool-{{{{ version }}}}.tar.gz\"\n\
             \x20   sha256: \"{{{{ tool_sha256 }}}}\"\n\
             \x20   unpack: tar\n\
             \x20   strip: 1\n\
             \x20   dest: /opt/tool\n\
             \x20 - name: helper\n\
             \x20   version: \"2\"\n\
             \x20   url: \"{base}/helper\"\n\
             \x20   sha256: \"{helper_sha}\"\n\
             \x20   unpack: binary\n\
             \x20   dest: /opt/helper\n\
             \x20 - name: pages\n\
             \x20   version: \"3\"\n\
             \x20   url: \"{base}/pages-3.zip\"\n\
             \x20   sha256: \"{pages_sha}\"\n\
             \x20   unpack: zip\n\
             \x20   dest: /srv/pages\n\
             files:\n\
             \x20 - template: tool.conf.j2\n\
             \x20   dest: /etc/tool.conf\n\
             \x20   mode: \"0644\"\n\
             validators:\n\
             \x20 - \"{{{{ 'false' if tool_break else '/opt/tool/current/bin/tool' }}}}\"\n",
            base = releases.url
        ),
    );
    sandbox.write(
        "roles/templates/tool.conf.j2",
        "# The tool, at {{ tool_version }}.\nversion = {{ tool_version }}\n",
    );
}

fn set_vars(sandbox: &Sandbox, version: &str, sha: &str, broken: bool) {
    let vars_path = sandbox.path().join("inventory/host_vars/tool.example.yaml");
    let vars = std::fs::read_to_string(&vars_path).unwrap();
    let reach: String = vars
        .lines()
        .take_while(|line| !line.starts_with("tool_"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(
        &vars_path,
        format!("{reach}tool_version: \"{version}\"\ntool_sha256: {sha}\ntool_break: {broken}\n"),
    )
    .unwrap();
}

#[test]
fn a_pinned_release_is_installed_upgraded_refused_on_a_wrong_sum_and_rolled_back() {
    let host = BootedHost::up("mcartifact");
    let dir = tempfile::tempdir().unwrap();
    let one = release(dir.path(), "1.0");
    let two = release(dir.path(), "1.1");
    std::fs::write(dir.path().join("helper"), "#!/bin/sh\necho helper\n").unwrap();
    let helper = sha256(&dir.path().join("helper"));
    // A zip archive, as web clients ship: made by Python's zipfile.
    let zipped = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w') as z: z.writestr('index.html', '<p>pages 3</p>')",
        ])
        .arg(dir.path().join("pages-3.zip"))
        .status()
        .unwrap();
    assert!(zipped.success());
    let pages = sha256(&dir.path().join("pages-3.zip"));
    let releases = Releases::serve(&host, dir.path());
    let sandbox = host.inventory(
        "tool.example",
        "synapse_enabled: false\nwellknown_enabled: false\n",
    );
    write_role(&sandbox, &releases, &helper, &pages);
    let matrixctl = |args: &[&str]| sandbox.run(&[&["--roles", "roles"], args].concat());
    let tool = || host.run("/opt/tool/current/bin/tool");

    // Installed: the plan says what it fetches, the apply lays it out and
    // points `current` at it, the next apply fetches nothing.
    set_vars(&sandbox, "1.0", &one, false);
    let plan = matrixctl(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert!(
        plan.stdout
            .contains("+ artifact tool  (role tool, download 1.0, current → 1.0)"),
        "{}",
        plan.stdout
    );
    let apply = matrixctl(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_eq!(tool(), "tool 1.0");
    assert_eq!(host.run("/opt/helper/current/helper"), "helper");
    assert_eq!(
        host.run("cat /srv/pages/current/index.html"),
        "<p>pages 3</p>"
    );
    assert_eq!(host.run("readlink /opt/tool/current"), "1.0");
    let again = matrixctl(&["apply", "--yes", "inventory"]);
    assert!(
        again.stdout.contains("No changes to apply."),
        "{}",
        again.stdout
    );
    assert_eq!(releases.downloads("tool-1.0.tar.gz"), 1);
    assert_eq!(releases.downloads("helper"), 1);

    // A wrong checksum: refused with both sums, before anything changed.
    set_vars(&sandbox, "1.1", &one, false);
    let refused = matrixctl(&["apply", "--yes", "inventory"]);
    assert_ne!(refused.code, 0, "{}", refused.transcript());
    assert!(
        refused.transcript().contains(&format!(
            "tool-1.1.tar.gz has SHA-256 {two}, and {one} is pinned: nothing was changed"
        )),
        "{}",
        refused.transcript()
    );
    assert_eq!(tool(), "tool 1.0");
    assert_eq!(
        host.run("test -e /opt/tool/1.1 && echo there || echo absent"),
        "absent"
    );
    assert_eq!(
        host.run("cat /etc/tool.conf"),
        "# The tool, at 1.0.\nversion = 1.0"
    );

    // Upgraded by its version and sum: `current` switches with the files.
    set_vars(&sandbox, "1.1", &two, false);
    let plan = matrixctl(&["plan", "inventory"]);
    assert!(
        plan.stdout
            .contains("~ artifact tool  (role tool, download 1.1, current 1.0 → 1.1)"),
        "{}",
        plan.stdout
    );
    let apply = matrixctl(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_eq!(tool(), "tool 1.1");

    // Back to 1.0: a switch of the link, no download.
    set_vars(&sandbox, "1.0", &one, false);
    let plan = matrixctl(&["plan", "inventory"]);
    assert!(
        plan.stdout
            .contains("~ artifact tool  (role tool, current 1.1 → 1.0)"),
        "{}",
        plan.stdout
    );
    let apply = matrixctl(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_eq!(tool(), "tool 1.0");
    assert_eq!(releases.downloads("tool-1.0.tar.gz"), 1);

    // An apply that fails after the switch points `current` back with
    // the files.
    set_vars(&sandbox, "1.1", &two, true);
    let failed = matrixctl(&["apply", "--yes", "inventory"]);
    assert_ne!(failed.code, 0, "{}", failed.transcript());
    assert!(
        failed.stdout.contains("ROLLED BACK"),
        "{}",
        failed.transcript()
    );
    assert_eq!(host.run("readlink /opt/tool/current"), "1.0");
    assert_eq!(
        host.run("cat /etc/tool.conf"),
        "# The tool, at 1.0.\nversion = 1.0"
    );
    // 1.1 was fetched for the refused apply and for the upgrade, not since.
    assert_eq!(releases.downloads("tool-1.1.tar.gz"), 2);

    // A host without internet access: its releases from a mirror, here a
    // directory on the host, under their upstream file names.
    let mirror = tempfile::tempdir().unwrap();
    let three = release(mirror.path(), "1.2");
    host.copy_in(mirror.path(), "/srv/mirror");
    set_vars(&sandbox, "1.2", &three, false);
    let vars_path = sandbox.path().join("inventory/host_vars/tool.example.yaml");
    let vars = std::fs::read_to_string(&vars_path).unwrap();
    std::fs::write(&vars_path, format!("{vars}artifact_mirror: /srv/mirror\n")).unwrap();
    let apply = matrixctl(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_eq!(tool(), "tool 1.2");
    assert_eq!(releases.downloads("tool-1.2.tar.gz"), 0);
}
