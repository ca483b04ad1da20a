//! No value can inject a line or a directive. Every string var the web
//! server, bridge and TURN templates print is set to a hostile value (a
//! quote, a semicolon, a brace-free block opener, `#`, a backslash,
//! spaces); the rendered files must keep exactly the structure of a benign
//! render: once each quoted string is blanked, the two renders are equal,
//! so the value stayed inside its token. Values a format would expand even
//! quoted (`$` for nginx, braces for Caddy, a word with a space on a
//! command line) are refused, naming the template line.

use crate::support::{Sandbox, copy_dir, repo};

/// The string vars printed into non-JSON formats, and the roles' files.
/// (synapse_listener_address is typed `ip`: no hostile text gets that far.)
const STRING_VARS: [&str; 6] = [
    "tls_certificate",
    "tls_certificate_key",
    "wellknown_webroot",
    "caddy_admin_address",
    "postmoogle_data_dir",
    "mautrix_telegram_data_dir",
];

const HOSTILE: &str = "/srv/x\\\" ; return 200 \\\"pwned\\\"; location /evil # a'b";

/// The hosting-full case (nginx, three bridges, TURN) with `vars` as its
/// host's vars; renders it and returns every file of its host.
fn render(webserver: &str, vars: &str) -> Result<Vec<(String, String)>, String> {
    let sandbox = Sandbox::empty();
    copy_dir(
        &repo().join("tests/cases/hosting-full"),
        &sandbox.path().join("inventory"),
    );
    sandbox.write(
        "inventory/host_vars/customer.example.yaml",
        &format!("webserver: {webserver}\n{vars}"),
    );
    let run = sandbox.run(&["render", "inventory", "--out", "rendered"]);
    if run.code != 0 {
        return Err(run.stderr);
    }
    let root = sandbox.path().join("rendered/customer.example");
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(&root).unwrap().display().to_string();
                files.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The text with every quoted string (double or single quotes, with
/// backslash escapes inside double quotes) replaced by `Q`.
fn blank_quoted(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(inner) = chars.next() {
                    match inner {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push('Q');
            }
            '\'' => {
                for inner in chars.by_ref() {
                    if inner == '\'' {
                        break;
                    }
                }
                out.push('Q');
            }
            _ => out.push(c),
        }
    }
    out
}

fn yaml_quoted(value: &str) -> String {
    serde_json::to_string(value).unwrap()
}

#[test]
fn hostile_values_stay_inside_their_token_in_every_format() {
    for webserver in ["nginx", "caddy"] {
        let benign_vars: String = STRING_VARS
            .iter()
            .map(|var| format!("{var}: {}\n", yaml_quoted("/srv/be nign")))
            .collect();
        // The env file's single quotes cannot hold a single quote, and
        // Caddy's tokens no braces: those values are refused (below).
        let hostile = HOSTILE.replace('\'', "");
        let hostile_vars: String = STRING_VARS
            .iter()
            .map(|var| format!("{var}: {}\n", yaml_quoted(&hostile)))
            .collect();
        // Heisenbridge's arguments are words, which refuse spaces (tested
        // below): the bridge is off here.
        let off = "bridges:\n  heisenbridge: null\n";
        let benign = render(webserver, &format!("{benign_vars}{off}"))
            .unwrap_or_else(|error| panic!("{webserver}: the benign render failed: {error}"));
        let mut hostile_files = render(webserver, &format!("{hostile_vars}{off}"))
            .unwrap_or_else(|error| panic!("{webserver}: the hostile render failed: {error}"));
        // wellknown_webroot is also part of paths: name the files as the
        // benign render does.
        for (name, _) in &mut hostile_files {
            *name = name.replace(hostile.trim_start_matches('/'), "srv/be nign");
        }
        hostile_files.sort();
        assert_eq!(
            benign.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            hostile_files
                .iter()
                .map(|(name, _)| name)
                .collect::<Vec<_>>(),
            "{webserver}: the same files"
        );
        for ((name, benign), (_, hostile_text)) in benign.iter().zip(&hostile_files) {
            // JSON and YAML files quote with tojson; every other format
            // with its own filter. Either way: the same structure.
            assert_eq!(
                blank_quoted(benign),
                blank_quoted(hostile_text),
                "{webserver}: {name} changed structure:\n{hostile_text}"
            );
            assert!(
                !blank_quoted(hostile_text).contains("pwned")
                    && !blank_quoted(hostile_text).contains("/evil"),
                "{webserver}: {name} carries the hostile text outside a quoted token:\n{hostile_text}"
            );
        }
    }
}

#[test]
fn values_a_format_would_expand_are_refused_with_the_template_line() {
    let cases = [
        (
            "nginx",
            "tls_certificate: \"/etc/ssl/$host.pem\"\n",
            "cannot be written into nginx: `$` would be read as a variable",
        ),
        (
            "caddy",
            "caddy_admin_address: \"localhost:2019 {\"\n",
            "cannot be written into a Caddyfile: braces would be read as a placeholder or a block",
        ),
        (
            "nginx",
            "synapse_config_dir: \"/etc/matrix synapse\"\n",
            "cannot be written into a command line",
        ),
        (
            "nginx",
            "postmoogle_data_dir: \"/var/lib/it's\"\n",
            "cannot be written into an environment file: a single quote cannot be quoted there",
        ),
    ];
    for (webserver, vars, expected) in cases {
        let error = render(webserver, vars).expect_err(vars);
        assert!(error.contains(expected), "{vars}: {error}");
        assert!(
            error.contains(".j2:"),
            "the template line is named: {error}"
        );
    }
    // A typed var never gets that far: the inventory names it.
    let error = render(
        "nginx",
        "synapse_listener_address: \"127.0.0.1 --owner @evil:x\"\n",
    )
    .expect_err("not an IP");
    assert!(
        error.contains(
            "expected an IP address like `192.0.2.1` or `2001:db8::1`, found the string \"127.0.0.1 --owner @evil:x\""
        ) && error.contains("customer.example.yaml:2, key `synapse_listener_address`"),
        "{error}"
    );
}

#[test]
fn the_consent_pages_never_hand_synapse_a_template_of_the_operators() {
    // Synapse renders the policy page as a Jinja template of its own: a
    // brace in the operator's text must reach it as a character reference.
    let sandbox = Sandbox::empty();
    copy_dir(
        &repo().join("tests/cases/synapse-enterprise"),
        &sandbox.path().join("inventory"),
    );
    let vars = std::fs::read_dir(sandbox.path().join("inventory/group_vars"))
        .unwrap()
        .flatten()
        .map(|entry| std::fs::read_to_string(entry.path()).unwrap())
        .collect::<String>();
    assert!(vars.contains("consent:"), "the case configures consent");
    let hosts = std::fs::read_to_string(sandbox.path().join("inventory/hosts.yaml")).unwrap();
    let host = hosts
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches(':')
        .to_string();
    sandbox.write(
        &format!("inventory/host_vars/{host}.yaml"),
        "consent:\n  version: \"1.0\"\n  policy_name: \"Terms {{ config }}\"\n  document: |\n    <h1>Terms</h1>\n    <p>{{ ''.__class__ }} {% if 1 %}x{% endif %}</p>\n",
    );
    let run = sandbox.run(&["render", "inventory", "--out", "rendered"]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let mut pages = Vec::new();
    let mut stack = vec![sandbox.path().join("rendered")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|ext| ext == "html") {
                pages.push(std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    assert_eq!(pages.len(), 2, "the policy and the success page");
    for page in &pages {
        // Only Synapse's own form (from matrixctl's template) has braces.
        let outside_raw = page.split("{% if has_consented %}").next().unwrap();
        assert!(
            !outside_raw.contains('{') && !outside_raw.contains('}'),
            "{page}"
        );
        assert!(page.contains("&#123;&#123; config &#125;&#125;"), "{page}");
    }
    let policy = pages
        .iter()
        .find(|page| page.contains("<h1>Terms</h1>"))
        .unwrap();
    assert!(
        policy.contains("&#123;&#123; ''.__class__ &#125;&#125;"),
        "{policy}"
    );
}
