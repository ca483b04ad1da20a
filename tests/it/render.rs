//! Rendered files as snapshots. Golden cases are data: each directory under
//! tests/cases/ is an inventory (with `roles/` when it brings its own), and
//! the example inventory is a case too. The snapshot holds every file of
//! every host, so any change in what matrixctl writes shows up in review.
//! Derived secrets are in it on purpose: their derivation must never change,
//! or every deployed secret would rotate at once.

use std::path::Path;
use std::process::Stdio;

use crate::support::repo;

/// `matrixctl render INVENTORY --out` a new directory, which it returns.
fn render_into(inventory: &Path, roles: Option<&Path>) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let mut command = crate::support::matrixctl();
    if let Some(roles) = roles {
        command.arg("--roles").arg(roles);
    }
    let output = command
        .arg("render")
        .arg(inventory)
        .arg("--out")
        .arg(out.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

fn render_all(inventory: &Path, roles: Option<&Path>) -> String {
    let out = render_into(inventory, roles);
    let mut files = Vec::new();
    collect(out.path(), out.path(), &mut files);
    files.sort();
    let mut snapshot = String::new();
    for (relative, mode, content) in files {
        snapshot.push_str(&format!("=== {relative} ({mode:04o})\n{content}"));
        if !content.ends_with('\n') {
            snapshot.push_str("\n[no newline at end]\n");
        }
    }
    snapshot
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, u32, String)>) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let mode = entry.metadata().unwrap().permissions().mode() & 0o7777;
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            files.push((relative, mode, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn the_example_inventory_renders_as_expected() {
    insta::assert_snapshot!(render_all(&repo().join("inventory.example"), None));
}

#[test]
fn golden_cases_render_as_expected() {
    insta::glob!("../cases", "*/case.txt", |case_file| {
        let case = case_file.parent().unwrap();
        let roles = case.join("roles");
        let roles = roles.is_dir().then_some(roles.as_path());
        let description = std::fs::read_to_string(case_file).unwrap();
        insta::assert_snapshot!(format!("{description}\n{}", render_all(case, roles)));
    });
}

#[test]
fn rendering_is_byte_for_byte_repeatable() {
    let example = repo().join("inventory.example");
    assert_eq!(render_all(&example, None), render_all(&example, None));
}

/// `render` counts what it wrote in words that agree with the numbers.
#[test]
fn render_says_how_many_files_and_hosts_in_plain_words() {
    let sandbox = crate::support::Sandbox::fleet();
    let one = sandbox.run(&[
        "render",
        "inventory",
        "--limit",
        "a.example",
        "--out",
        "out",
    ]);
    assert_eq!(one.code, 0, "{}", one.transcript());
    assert!(
        one.stdout.contains(" files for 1 host into out."),
        "{}",
        one.stdout
    );
    let three = sandbox.run(&["render", "inventory", "--out", "out3"]);
    assert!(
        three.stdout.contains(" files for 3 hosts into out3."),
        "{}",
        three.stdout
    );
}

/// The Element X stack's files hold what the versions they follow require
/// (LiveKit 1.9's pkg/config, lk-jwt-service 0.5's main.go, Element Web
/// 1.12's docs/config.md, MAS 1.22's docs/reference/configuration.md),
/// and agree with each other: a setting left out or two components
/// disagreeing fails here, though the components
/// themselves cannot be downloaded to run on this machine. (Synapse's
/// settings are proven by a real Synapse in tests/it/webserver.rs.)
#[test]
fn element_x_configurations_hold_what_their_pinned_versions_require() {
    let out = render_into(&repo().join("tests/cases/element-x"), None);
    for host in ["calls.example", "meet.example"] {
        let read = |path: &str| {
            std::fs::read_to_string(out.path().join(host).join(path))
                .unwrap_or_else(|error| panic!("{host}: {path}: {error}"))
        };
        let livekit: serde_yaml::Value =
            serde_yaml::from_str(&read("etc/livekit/livekit.yaml")).unwrap();
        let env: std::collections::BTreeMap<String, String> =
            read("etc/lk-jwt-service/lk-jwt-service.env")
                .lines()
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| line.split_once('='))
                .map(|(name, value)| (name.to_string(), value.trim_matches('\'').to_string()))
                .collect();
        let synapse: serde_yaml::Value =
            serde_yaml::from_str(&read("etc/matrix-synapse/conf.d/matrix_rtc.yaml")).unwrap();
        let well_known: serde_json::Value =
            serde_json::from_str(&read("var/www/matrix/.well-known/matrix/client")).unwrap();
        let element: serde_json::Value =
            serde_json::from_str(&read("etc/element-web/config.json")).unwrap();

        // LiveKit: a key pair whose secret is at least 32 characters (it
        // refuses shorter ones), its ports, and rooms made only by the
        // authorization service.
        let keys = livekit["keys"].as_mapping().expect("LiveKit needs `keys`");
        assert_eq!(keys.len(), 1, "{host}: {keys:?}");
        let (key, secret) = keys.iter().next().unwrap();
        let (key, secret) = (key.as_str().unwrap(), secret.as_str().unwrap());
        assert!(
            secret.len() >= 32,
            "{host}: a LiveKit secret of {} characters",
            secret.len()
        );
        for setting in ["port_range_start", "port_range_end", "tcp_port"] {
            assert!(
                livekit["rtc"][setting].as_u64().is_some(),
                "{host}: rtc.{setting}"
            );
        }
        assert!(livekit["port"].as_u64().is_some(), "{host}: port");
        assert_eq!(
            livekit["room"]["auto_create"],
            serde_yaml::Value::Bool(false),
            "{host}"
        );

        // lk-jwt-service: everything it refuses to start without, the same
        // key pair, and LiveKit's WebSocket behind the web server.
        for required in [
            "LIVEKIT_URL",
            "LIVEKIT_KEY",
            "LIVEKIT_SECRET",
            "LIVEKIT_FULL_ACCESS_HOMESERVERS",
        ] {
            assert!(
                env.get(required).is_some_and(|value| !value.is_empty()),
                "{host}: {required} in {env:?}"
            );
        }
        assert!(
            !(env.contains_key("LIVEKIT_JWT_BIND") && env.contains_key("LIVEKIT_JWT_PORT")),
            "{host}"
        );
        assert_eq!(
            (env["LIVEKIT_KEY"].as_str(), env["LIVEKIT_SECRET"].as_str()),
            (key, secret),
            "{host}"
        );
        assert_eq!(
            env["LIVEKIT_URL"],
            format!("wss://matrix.{host}/livekit/sfu"),
            "{host}"
        );
        assert!(
            env["LIVEKIT_FULL_ACCESS_HOMESERVERS"]
                .split(',')
                .any(|name| name == host),
            "{host}"
        );

        // Clients find the same transport through the well-known and Synapse.
        let service_url = format!("https://matrix.{host}/livekit/jwt");
        let transport = serde_json::json!({"type": "livekit", "livekit_service_url": service_url});
        assert_eq!(
            well_known["org.matrix.msc4143.rtc_foci"],
            serde_json::json!([transport]),
            "{host}"
        );
        let transports: serde_json::Value =
            serde_json::to_value(&synapse["matrix_rtc"]["transports"]).unwrap();
        assert_eq!(transports, serde_json::json!([transport]), "{host}");
        assert_eq!(
            synapse["experimental_features"]["msc4143_enabled"],
            serde_yaml::Value::Bool(true)
        );

        // MAS: what its 1.22 configuration requires (a public base, a
        // listener, a database, a 32-byte encryption key, a signing key,
        // the homeserver), the secret Synapse has, and the listener
        // Synapse and the web server reach.
        let mas: serde_yaml::Value = serde_yaml::from_str(&read("etc/mas/config.yaml")).unwrap();
        let delegation: serde_yaml::Value =
            serde_yaml::from_str(&read("etc/matrix-synapse/conf.d/mas.yaml")).unwrap();
        let delegation = &delegation["matrix_authentication_service"];
        assert_eq!(
            mas["http"]["public_base"].as_str(),
            Some(format!("https://auth.{host}/").as_str())
        );
        let encryption = mas["secrets"]["encryption"].as_str().unwrap_or_default();
        assert!(
            encryption.len() == 64 && encryption.chars().all(|c| c.is_ascii_hexdigit()),
            "{host}: MAS's encryption secret must be 32 bytes in hex"
        );
        assert!(
            mas["secrets"]["keys"][0]["key_file"].as_str().is_some(),
            "{host}: a signing key"
        );
        for setting in ["host", "port", "username", "password", "database"] {
            assert!(
                !mas["database"][setting].is_null(),
                "{host}: database.{setting}"
            );
        }
        assert_eq!(mas["matrix"]["homeserver"].as_str(), Some(host));
        assert_eq!(mas["matrix"]["secret"], delegation["secret"], "{host}");
        let web = mas["http"]["listeners"][0]["binds"][0]["address"]
            .as_str()
            .unwrap();
        assert_eq!(
            delegation["endpoint"].as_str(),
            Some(format!("http://{web}/").as_str()),
            "{host}"
        );
        assert_eq!(delegation["enabled"], serde_yaml::Value::Bool(true));
        let resources: Vec<&str> = mas["http"]["listeners"][0]["resources"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|resource| resource["name"].as_str())
            .collect();
        for resource in ["discovery", "human", "oauth", "compat", "graphql", "assets"] {
            assert!(
                resources.contains(&resource),
                "{host}: {resource} in {resources:?}"
            );
        }

        // Element Web: the homeserver one way only (it refuses to load
        // with two), and calls through Element Call.
        assert_eq!(
            element["default_server_config"]["m.homeserver"]["base_url"],
            format!("https://matrix.{host}/"),
            "{host}"
        );
        for refused in ["default_server_name", "default_hs_url"] {
            assert!(element.get(refused).is_none(), "{host}: {refused}");
        }
        assert_eq!(element["element_call"]["use_exclusively"], true, "{host}");
    }
}

/// The README's Element X block, as written, renders the whole stack.
#[test]
fn the_readme_element_x_block_renders_web_client_and_calls() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("```yaml\n# host_vars/team.example.yaml\n")
        .expect("the README's Element X block");
    let block = &readme[start + "```yaml\n".len()..];
    let block = &block[..block.find("```").unwrap()];
    let sandbox = crate::support::Sandbox::empty();
    sandbox.write(
        "inventory/hosts.yaml",
        "hosts:\n  team.example:\n    connection: local\n    root: ../host\n",
    );
    sandbox.write("inventory/host_vars/team.example.yaml", block);
    sandbox.write(
        "inventory/secrets/master.key",
        crate::support::TEST_MASTER_KEY,
    );
    sandbox.chmod("inventory/secrets/master.key", 0o600);
    let render = sandbox.run(&["render", "inventory", "--out", "out"]);
    assert_eq!(render.code, 0, "{}", render.transcript());
    let read = |path: &str| {
        std::fs::read_to_string(sandbox.path().join("out/team.example").join(path))
            .unwrap_or_else(|error| panic!("{path}: {error}"))
    };
    assert!(read("etc/nginx/conf.d/matrix.conf").contains("server_name element.team.example;"));
    assert!(
        read("etc/element-web/config.json")
            .contains("\"base_url\": \"https://matrix.team.example/\"")
    );
    assert!(read("etc/livekit/livekit.yaml").contains("auto_create: false"));
    assert!(
        read("etc/lk-jwt-service/lk-jwt-service.env")
            .contains("LIVEKIT_URL=wss://matrix.team.example/livekit/sfu")
    );
    assert!(read("etc/matrix-synapse/conf.d/matrix_rtc.yaml").contains("msc4143_enabled: true"));
    assert!(
        read("var/www/matrix/.well-known/matrix/client").contains("org.matrix.msc4143.rtc_foci")
    );
    assert!(read("etc/mas/config.yaml").contains("public_base: \"https://auth.team.example/\""));
    assert!(read("etc/matrix-synapse/conf.d/mas.yaml").contains("matrix_authentication_service:"));
}
