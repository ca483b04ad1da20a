//! A new operator's first hour: `init`, `host add` for three customers,
//! plan and apply on local targets; `host remove`; every refusal leaving
//! the inventory byte for byte as it was; `onboard`'s checklist, whose
//! web server snippets real nginx, Caddy and HAProxy accept and serve;
//! `vars --explain`; and the exit codes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::loopback::free_port;
use crate::support::{BIN, Sandbox, repo, wait_until};

/// Every file under `dir`, relative path to bytes.
fn snapshot_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// init, then three customers the way an operator adds them: local
/// targets stand in for servers.
fn three_customers() -> Sandbox {
    let sandbox = Sandbox::empty();
    let run = sandbox.run(&["init", "inventory"]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    // Local directories have no service accounts or services.
    let all = sandbox.path().join("inventory/group_vars/all.yaml");
    let mut text = std::fs::read_to_string(&all).unwrap();
    text.push_str(
        "\nsynapse_group: root\nturn_group: root\nhost_commands: false\nwebserver: nginx\n",
    );
    std::fs::write(&all, text).unwrap();
    for args in [
        &[
            "host",
            "add",
            "one.example",
            "--local",
            "../hosts/one.example",
        ][..],
        &[
            "host",
            "add",
            "two.example",
            "--local",
            "../hosts/two.example",
            "--fqdn",
            "chat.two.example",
            "--registration",
            "closed",
            "--bridge",
            "heisenbridge",
            "--group",
            "eu",
        ],
        &[
            "host",
            "add",
            "three.example",
            "--local",
            "../hosts/three.example",
            "--turn",
            "--webserver",
            "caddy",
            "--set",
            "delegation=srv",
        ],
    ] {
        let mut full = args.to_vec();
        full.extend(["--inventory", "inventory"]);
        let run = sandbox.run(&full);
        assert_eq!(run.code, 0, "{}", run.transcript());
    }
    sandbox
}

#[test]
fn init_and_host_add_make_an_inventory_that_plans_and_applies() {
    let sandbox = three_customers();
    let inventory = sandbox.path().join("inventory");
    let key = inventory.join("secrets/master.key");
    assert_eq!(crate::support::mode_of(&key), 0o600);
    let gitignore = std::fs::read_to_string(inventory.join(".gitignore")).unwrap();
    assert!(gitignore.lines().any(|line| line == "secrets/master.key"));
    insta::assert_snapshot!(
        "host_add_hosts_yaml",
        std::fs::read_to_string(inventory.join("hosts.yaml")).unwrap()
    );
    insta::assert_snapshot!(
        "host_add_two_example_vars",
        std::fs::read_to_string(inventory.join("host_vars/two.example.yaml")).unwrap()
    );
    // Only what differs from the defaults: one.example asked for nothing.
    let one = std::fs::read_to_string(inventory.join("host_vars/one.example.yaml")).unwrap();
    assert!(one.lines().all(|line| line.starts_with('#')), "{one}");

    // What host add wrote is what the inventory now says.
    let explain = sandbox.run(&[
        "vars",
        "two.example",
        "--inventory",
        "inventory",
        "--explain",
        "registration",
    ]);
    assert_eq!(explain.code, 0, "{}", explain.transcript());
    assert!(
        explain
            .stdout
            .starts_with("registration for two.example: closed\n"),
        "{}",
        explain.stdout
    );
    let fqdn = sandbox.run(&[
        "vars",
        "two.example",
        "--inventory",
        "inventory",
        "--explain",
        "matrix_fqdn",
    ]);
    assert!(
        fqdn.stdout
            .starts_with("matrix_fqdn for two.example: chat.two.example\n"),
        "{}",
        fqdn.stdout
    );

    assert_eq!(sandbox.plan_exit_code(None), 2);
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_eq!(sandbox.plan_exit_code(None), 0);
    assert!(
        sandbox
            .read_host_file(
                "two.example",
                "/etc/matrix-synapse/appservices/heisenbridge.yaml"
            )
            .is_some()
    );
    assert!(
        sandbox
            .read_host_file("three.example", "/etc/turnserver.conf")
            .is_some()
    );
    assert!(
        sandbox
            .read_host_file("three.example", "/etc/caddy/Caddyfile")
            .is_some()
    );
}

#[test]
fn host_remove_takes_a_host_out_and_leaves_the_rest_as_written() {
    let sandbox = three_customers();
    let hosts = sandbox.path().join("inventory/hosts.yaml");
    let before = std::fs::read_to_string(&hosts).unwrap();
    // two.example is the only host in `eu`, which has no group_vars.
    let run = sandbox.run(&["host", "remove", "two.example", "--inventory", "inventory"]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(
        !sandbox
            .path()
            .join("inventory/host_vars/two.example.yaml")
            .exists()
    );
    let after = std::fs::read_to_string(&hosts).unwrap();
    let (head, _) = before.split_once("hosts:\n").unwrap();
    assert_eq!(
        after,
        format!(
            "{head}hosts:\n  one.example:\n    connection: local\n    root: ../hosts/one.example\n\
             \x20 three.example:\n    connection: local\n    root: ../hosts/three.example\n"
        )
    );
    // Adding it back gives the same file again.
    let run = sandbox.run(&[
        "host",
        "add",
        "two.example",
        "--inventory",
        "inventory",
        "--local",
        "../hosts/two.example",
        "--group",
        "eu",
    ]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let lines = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        lines(&std::fs::read_to_string(&hosts).unwrap()),
        lines(&before)
    );
}

#[test]
fn every_refusal_leaves_the_inventory_byte_identical() {
    let sandbox = three_customers();
    // A group_vars file makes removing the group's last host a broken
    // inventory: that removal is refused too.
    sandbox.write("inventory/group_vars/eu.yaml", "max_upload_size: 20M\n");
    let inventory = sandbox.path().join("inventory");
    let before = snapshot_dir(&inventory);
    let mut transcripts = String::new();
    for args in [
        &["init", "inventory"][..],
        &["host", "add", "Customer.example"],
        &["host", "add", "https://four.example/"],
        &["host", "add", "one.example"],
        &["host", "add", "four.example", "--bridge", "heisenbrige"],
        &[
            "host",
            "add",
            "four.example",
            "--bridge",
            "mautrix_telegram",
        ],
        &[
            "host",
            "add",
            "four.example",
            "--set",
            "max_upload_size=lots",
        ],
        &["host", "add", "four.example", "--set", "no_such_setting=1"],
        &["host", "add", "four.example", "--group", "all"],
        &["host", "add", "four.example", "--registration", "maybe"],
        &["host", "remove", "five.example"],
        &["host", "remove", "two.example"],
    ] {
        let mut full = args.to_vec();
        if args[0] == "host" {
            full.extend(["--inventory", "inventory"]);
        }
        let run = sandbox.run(&full);
        assert_eq!(run.code, 1, "{}", run.transcript());
        transcripts.push_str(&format!("$ matrixctl {}\n{}\n", full.join(" "), run.stderr));
        assert!(
            snapshot_dir(&inventory) == before,
            "`matrixctl {}` changed the inventory",
            full.join(" ")
        );
    }
    insta::assert_snapshot!("inventory_edit_refusals", transcripts);
}

#[test]
fn onboard_checklists_of_three_customers() {
    let sandbox = Sandbox::empty();
    crate::support::copy_dir(
        &repo().join("inventory.example"),
        &sandbox.path().join("inventory"),
    );
    for host in ["example.com", "example.org", "example.net"] {
        let run = sandbox.run(&["onboard", host, "--inventory", "inventory"]);
        assert_eq!(run.code, 0, "{}", run.transcript());
        insta::assert_snapshot!(format!("onboard_{host}"), run.stdout);
    }
    let markdown = sandbox.run(&[
        "onboard",
        "example.org",
        "--inventory",
        "inventory",
        "--format",
        "markdown",
    ]);
    insta::assert_snapshot!("onboard_example.org_markdown", markdown.stdout);
    let json = sandbox.run(&[
        "onboard",
        "example.org",
        "--inventory",
        "inventory",
        "--format",
        "json",
    ]);
    insta::assert_snapshot!("onboard_example.org_json", json.stdout);
    // The demo's Telegram api_hash is a secret: never in a checklist.
    let com = sandbox.run(&[
        "onboard",
        "example.com",
        "--inventory",
        "inventory",
        "--format",
        "json",
    ]);
    assert!(!com.stdout.contains("demo-telegram-api-hash-not-real"));
}

/// A server the test started, stopped by its pid when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// `program` run in `dir`, with its home and XDG directories there too
/// (Caddy keeps state in them).
fn in_dir(program: &str, args: &[&str], dir: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir)
        .env("XDG_CONFIG_HOME", dir);
    command
}

fn missing(program: &str, error: std::io::Error) -> ! {
    panic!("cannot run {program} ({error}): scripts/test installs it")
}

fn start(program: &str, args: &[&str], dir: &Path) -> Server {
    let child = in_dir(program, args, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| missing(program, error));
    Server(child)
}

fn check(program: &str, args: &[&str], dir: &Path) {
    let output = in_dir(program, args, dir)
        .output()
        .unwrap_or_else(|error| missing(program, error));
    assert!(
        output.status.success(),
        "{program} refused the snippet: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What `curl -si URL` shows: status line, headers (lowercase) and body.
fn fetch(url: &str) -> Option<(String, BTreeMap<String, String>, String)> {
    let output = Command::new("curl")
        .args(["-si", "--max-time", "5", url])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.to_string();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_string()))
        .collect();
    Some((status, headers, body.to_string()))
}

#[test]
fn the_snippets_onboard_prints_pass_nginx_caddy_and_haproxy_and_serve_the_files() {
    let sandbox = Sandbox::empty();
    crate::support::copy_dir(
        &repo().join("inventory.example"),
        &sandbox.path().join("inventory"),
    );
    let run = sandbox.run(&[
        "onboard",
        "example.org",
        "--inventory",
        "inventory",
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let checklist: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let entry = checklist["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|section| section["entries"].as_array().unwrap())
        .find(|entry| !entry["snippets"].as_array().unwrap().is_empty())
        .expect("a checklist entry with snippets");
    let snippet = |starts: &str| {
        entry["snippets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|snippet| snippet["label"].as_str().unwrap().starts_with(starts))
            .unwrap_or_else(|| panic!("no {starts} snippet"))["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let served: Vec<(String, serde_json::Value)> = entry["served"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| {
            (
                file["location"].as_str().unwrap().to_string(),
                serde_json::from_str(file["content"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    assert_eq!(served.len(), 3, "server, client and support files");

    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let nginx_port = free_port();
    let nginx_conf = dir.join("nginx.conf");
    std::fs::write(
        &nginx_conf,
        format!(
            "daemon off;\npid {d}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n\
             access_log off;\nclient_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\nuwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
             server {{\nlisten 127.0.0.1:{nginx_port};\n{}\n}}\n}}\n",
            snippet("nginx"),
            d = dir.display()
        ),
    )
    .unwrap();
    check(
        "nginx",
        &["-t", "-q", "-c", nginx_conf.to_str().unwrap()],
        dir,
    );

    let caddy_port = free_port();
    let caddyfile = dir.join("Caddyfile");
    std::fs::write(
        &caddyfile,
        format!(
            "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {d}/caddy\n}}\n\
             http://127.0.0.1:{caddy_port} {{\n{}\n}}\n",
            snippet("Caddy"),
            d = dir.display()
        ),
    )
    .unwrap();
    let caddyfile_arg = caddyfile.to_str().unwrap();
    check(
        "caddy",
        &[
            "validate",
            "--adapter",
            "caddyfile",
            "--config",
            caddyfile_arg,
        ],
        dir,
    );

    let haproxy_port = free_port();
    let haproxy_cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &haproxy_cfg,
        format!(
            "defaults\n    mode http\n    timeout client 5s\n    timeout server 5s\n    timeout connect 5s\n\
             frontend website\n    bind 127.0.0.1:{haproxy_port}\n{}",
            snippet("HAProxy")
                .lines()
                .map(|line| format!("    {line}\n"))
                .collect::<String>()
        ),
    )
    .unwrap();
    check(
        "haproxy",
        &["-c", "-q", "-f", haproxy_cfg.to_str().unwrap()],
        dir,
    );

    let _nginx = start(
        "nginx",
        &["-e", "stderr", "-c", nginx_conf.to_str().unwrap()],
        dir,
    );
    let _caddy = start(
        "caddy",
        &["run", "--adapter", "caddyfile", "--config", caddyfile_arg],
        dir,
    );
    let _haproxy = start(
        "haproxy",
        &["-db", "-f", haproxy_cfg.to_str().unwrap()],
        dir,
    );
    for (server, port) in [
        ("nginx", nginx_port),
        ("Caddy", caddy_port),
        ("HAProxy", haproxy_port),
    ] {
        for (location, content) in &served {
            let url = format!("http://127.0.0.1:{port}{location}");
            let mut answer = None;
            wait_until(&format!("{server} answers {url}"), || {
                answer = fetch(&url);
                answer.is_some()
            });
            let (status, headers, body) = answer.unwrap();
            assert!(status.contains(" 200"), "{server} {location}: {status}");
            assert_eq!(
                headers
                    .get("access-control-allow-origin")
                    .map(String::as_str),
                Some("*"),
                "{server} {location}: {headers:?}"
            );
            assert!(
                headers
                    .get("content-type")
                    .is_some_and(|t| t.starts_with("application/json")),
                "{server} {location}: {headers:?}"
            );
            let served_json: serde_json::Value = serde_json::from_str(&body)
                .unwrap_or_else(|error| panic!("{server} {location}: not JSON ({error}): {body}"));
            assert_eq!(&served_json, content, "{server} {location}");
        }
    }
}

#[test]
fn vars_explain_shows_every_layer_with_its_file_and_line() {
    let sandbox = Sandbox::empty();
    crate::support::copy_dir(
        &repo().join("inventory.example"),
        &sandbox.path().join("inventory"),
    );
    // Three inventory layers and the default: all, a group, the host.
    sandbox.write(
        "inventory/host_vars/example.com.yaml",
        &(std::fs::read_to_string(repo().join("inventory.example/host_vars/example.com.yaml"))
            .unwrap()
            + "max_upload_size: 10M\n"),
    );
    let all = repo().join("inventory.example/group_vars/all.yaml");
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &(std::fs::read_to_string(all).unwrap() + "max_upload_size: 30M\n"),
    );
    let run = sandbox.run(&[
        "vars",
        "example.com",
        "--inventory",
        "inventory",
        "--explain",
        "max_upload_size",
    ]);
    insta::assert_snapshot!("vars_explain_three_levels", run.transcript());
    let unknown = sandbox.run(&[
        "vars",
        "example.com",
        "--inventory",
        "inventory",
        "--explain",
        "max_upload_sise",
    ]);
    insta::assert_snapshot!("vars_explain_unknown_key", unknown.transcript());
    // Plain `vars`: every effective var, secrets redacted.
    let vars = sandbox.run(&["vars", "example.com", "--inventory", "inventory"]);
    assert_eq!(vars.code, 0, "{}", vars.transcript());
    assert!(
        vars.stdout.contains("max_upload_size: 10M\n"),
        "{}",
        vars.stdout
    );
    assert!(
        vars.stdout.contains("api_hash: <redacted>"),
        "{}",
        vars.stdout
    );
    assert!(!vars.stdout.contains("demo-telegram-api-hash-not-real"));
}

#[test]
fn exit_codes_tell_usage_input_host_failures_and_pending_changes_apart() {
    let sandbox = crate::support::Sandbox::fleet();
    let converged = crate::support::Sandbox::fleet();
    assert_eq!(converged.run(&["apply", "--yes", "inventory"]).code, 0);
    let broken = crate::support::Sandbox::fleet();
    broken.write(
        "inventory/group_vars/all.yaml",
        "synapse_group: root\nhost_commands: false\nregistration: maybe\n",
    );
    let failing = crate::support::Sandbox::fleet();
    // A host nothing answers for: port 1 on loopback refuses at once.
    failing.write(
        "inventory/hosts.yaml",
        "hosts:\n  a.example:\n    ssh: root@127.0.0.1:1\n",
    );
    let table: [(&str, &Sandbox, &[&str], i32); 6] = [
        (
            "usage error",
            &sandbox,
            &["plan", "--limt", "a.example", "inventory"],
            1,
        ),
        ("unknown command", &sandbox, &["plna"], 1),
        (
            "input error",
            &broken,
            &["plan", "--detailed-exitcode", "inventory"],
            1,
        ),
        (
            "host failure",
            &failing,
            &["plan", "--detailed-exitcode", "inventory"],
            1,
        ),
        (
            "no changes",
            &converged,
            &["plan", "--detailed-exitcode", "inventory"],
            0,
        ),
        (
            "changes pending",
            &sandbox,
            &["plan", "--detailed-exitcode", "inventory"],
            2,
        ),
    ];
    for (what, sandbox, args, code) in table {
        let run = sandbox.run(args);
        assert_eq!(run.code, code, "{what}: {}", run.transcript());
    }
    let help = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
}

#[test]
fn completions_and_the_manual_page_come_from_the_command_line_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let output = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(output.status.success());
        let script = String::from_utf8_lossy(&output.stdout);
        for command in ["onboard", "apply", "plan", "init"] {
            assert!(
                script.contains(command),
                "{shell} completion lacks {command}"
            );
        }
    }
    let bash = Command::new("bash")
        .args(["-n", "-c"])
        .arg(
            String::from_utf8(
                Command::new(BIN)
                    .args(["completions", "bash"])
                    .output()
                    .unwrap()
                    .stdout,
            )
            .unwrap(),
        )
        .status()
        .unwrap();
    assert!(bash.success(), "the bash completion is not valid bash");
    let man = Command::new(BIN).arg("man").output().unwrap();
    assert!(man.status.success());
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH matrixctl"),
        "{page:.200}"
    );
    assert!(page.contains("onboard"));
}

#[test]
fn every_commented_setting_of_a_new_inventory_is_valid_uncommented() {
    let sandbox = Sandbox::empty();
    assert_eq!(sandbox.run(&["init", "inventory"]).code, 0);
    let all = sandbox.path().join("inventory/group_vars/all.yaml");
    let text = std::fs::read_to_string(&all).unwrap();
    // `# key: value` and its indented continuation lines.
    let setting = uncommented_settings(&text);
    assert!(setting.lines().count() >= 8, "{setting}");
    std::fs::write(
        &all,
        format!("{setting}synapse_group: root\nhost_commands: false\n"),
    )
    .unwrap();
    let run = sandbox.run(&[
        "host",
        "add",
        "one.example",
        "--inventory",
        "inventory",
        "--local",
        "../hosts/one",
    ]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
}

/// The lines of `text` that are settings commented out (`# key: value`,
/// `#   nested: value`), uncommented.
fn uncommented_settings(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# ") else {
            continue;
        };
        let key = rest.trim_start();
        let is_setting = key.split_once(':').is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if is_setting {
            out.push_str(rest);
            out.push('\n');
        }
    }
    out
}
