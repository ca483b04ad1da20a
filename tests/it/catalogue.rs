//! What the Matrix roles render, checked against the rules Synapse and the
//! spec set, for every profile and the example inventory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::repo;

/// Every inventory whose hosts the checks cover.
fn inventories() -> Vec<PathBuf> {
    let mut inventories = vec![repo().join("inventory.example")];
    for entry in std::fs::read_dir(repo().join("tests/cases"))
        .unwrap()
        .flatten()
    {
        // Every case renders Synapse, except one that only swaps a role.
        if entry.file_name() != "role-override" {
            inventories.push(entry.path());
        }
    }
    inventories.sort();
    inventories
}

/// Renders an inventory; returns each host's directory of files.
fn render(inventory: &Path, out: &Path) -> Vec<PathBuf> {
    let output = crate::support::matrixctl()
        .arg("render")
        .arg(inventory)
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The homeservers: a case may also hold a machine that serves none
    // (a repository machine), with no Synapse configuration, or one that
    // carries a part of a homeserver (its workers: its configuration and
    // secrets, but no well-known files of its own).
    let mut hosts: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|host| host.join("etc/matrix-synapse/conf.d").is_dir())
        .filter(|host| host.join("var/www/matrix/.well-known/matrix").is_dir())
        .collect();
    assert!(
        !hosts.is_empty(),
        "{} renders no homeserver",
        inventory.display()
    );
    hosts.sort();
    hosts
}

fn yaml_keys(path: &Path) -> Vec<String> {
    let value: serde_yaml::Value = serde_yaml::from_slice(&std::fs::read(path).unwrap()).unwrap();
    value
        .as_mapping()
        .unwrap_or_else(|| panic!("{} is not a YAML map", path.display()))
        .keys()
        .map(|key| key.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_synapse_key_lives_in_exactly_one_conf_d_file_and_synapse_knows_it() {
    let known: BTreeSet<String> =
        std::fs::read_to_string(repo().join("roles/synapse.known-keys.txt"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
    let mut written = BTreeSet::new();
    for inventory in inventories() {
        let out = tempfile::tempdir().unwrap();
        for host in render(&inventory, out.path()) {
            let conf_d = host.join("etc/matrix-synapse/conf.d");
            let mut owner: BTreeMap<String, String> = BTreeMap::new();
            for entry in std::fs::read_dir(&conf_d).unwrap().flatten() {
                let file = entry.file_name().to_string_lossy().to_string();
                assert!(
                    file.ends_with(".yaml"),
                    "Synapse reads only .yaml files: {file}"
                );
                for key in yaml_keys(&entry.path()) {
                    assert!(
                        known.contains(&key),
                        "{}: Synapse does not know `{key}`",
                        entry.path().display()
                    );
                    if file != "extra.yaml" {
                        written.insert(key.clone());
                    }
                    if let Some(other) = owner.insert(key.clone(), file.clone()) {
                        panic!("{}: `{key}` is in both {other} and {file}", host.display());
                    }
                }
            }
            for required in [
                "server_name",
                "report_stats",
                "database",
                "listeners",
                "signing_key_path",
                "log_config",
            ] {
                assert!(
                    owner.contains_key(required),
                    "{}: no `{required}`",
                    host.display()
                );
            }
        }
    }
    // An extra may not set a key a template writes (conf.d files merge
    // shallowly: one would silently replace the other). hosting-full
    // enables every role that writes one.
    let sandbox = crate::support::Sandbox::empty();
    crate::support::copy_dir(
        &repo().join("tests/cases/hosting-full"),
        &sandbox.path().join("inventory"),
    );
    let extras: Vec<String> = written.iter().map(|key| format!("  {key}: 1\n")).collect();
    sandbox.write(
        "inventory/host_vars/customer.example.yaml",
        &format!("synapse_extra:\n{}", extras.concat()),
    );
    let plan = sandbox.run(&["plan", "inventory"]);
    for key in &written {
        assert!(
            plan.stderr
                .contains(&format!("`{key}` is written by matrixctl")),
            "synapse_extra may set `{key}`, which a template writes: add it to the constants of the role writing it\n{}",
            plan.stderr
        );
    }
}

#[test]
fn well_known_files_follow_the_spec() {
    for inventory in inventories() {
        let out = tempfile::tempdir().unwrap();
        for host in render(&inventory, out.path()) {
            let name = host.file_name().unwrap().to_string_lossy().to_string();
            let read = |file: &str| -> Option<serde_json::Value> {
                let path = host.join("var/www/matrix/.well-known/matrix").join(file);
                std::fs::read(&path)
                    .ok()
                    .map(|bytes| serde_json::from_slice(&bytes).unwrap())
            };
            let client = read("client").unwrap_or_else(|| panic!("{name}: no client file"));
            let base_url = client["m.homeserver"]["base_url"].as_str().unwrap();
            assert!(
                base_url.starts_with("https://") && base_url.ends_with('/'),
                "{name}: {base_url}"
            );
            for (key, _) in client.as_object().unwrap() {
                assert!(
                    key.contains('.'),
                    "{name}: client key `{key}` is not namespaced"
                );
            }
            if let Some(identity) = client.get("m.identity_server") {
                assert!(
                    identity["base_url"]
                        .as_str()
                        .unwrap()
                        .starts_with("https://")
                );
            }
            if let Some(server) = read("server") {
                let delegated = server["m.server"].as_str().unwrap();
                let (host_part, port) = delegated.rsplit_once(':').unwrap();
                assert!(
                    !host_part.is_empty() && !host_part.contains('/'),
                    "{name}: {delegated}"
                );
                assert!(
                    port.parse::<u16>().is_ok_and(|port| port > 0),
                    "{name}: {delegated}"
                );
            }
            if let Some(support) = read("support") {
                let contacts = support.get("contacts").and_then(|c| c.as_array());
                assert!(
                    contacts.is_some_and(|c| !c.is_empty())
                        || support.get("support_page").is_some()
                );
                for contact in contacts.into_iter().flatten() {
                    assert!(
                        contact.get("matrix_id").is_some()
                            || contact.get("email_address").is_some()
                    );
                    let role = contact["role"].as_str().unwrap();
                    assert!(
                        role == "m.role.admin" || role == "m.role.security" || role.contains('.')
                    );
                    assert!(
                        contact
                            .as_object()
                            .unwrap()
                            .values()
                            .all(|value| !value.is_null())
                    );
                }
            }
        }
    }
}

/// `name: "value"` pairs from the secrets Synapse gets, per host.
fn secrets_of(host: &Path) -> Vec<(String, String)> {
    let conf_d = host.join("etc/matrix-synapse/conf.d");
    let mut secrets = Vec::new();
    let secrets_yaml: serde_yaml::Value =
        serde_yaml::from_slice(&std::fs::read(conf_d.join("secrets.yaml")).unwrap()).unwrap();
    for (key, value) in secrets_yaml.as_mapping().unwrap() {
        secrets.push((
            key.as_str().unwrap().to_string(),
            value.as_str().unwrap().to_string(),
        ));
    }
    let auth: serde_yaml::Value =
        serde_yaml::from_slice(&std::fs::read(conf_d.join("auth.yaml")).unwrap()).unwrap();
    if let Some(pepper) = auth["password_config"]["pepper"].as_str() {
        secrets.push(("pepper".to_string(), pepper.to_string()));
    }
    // Every bridge's tokens.
    if let Ok(registrations) = std::fs::read_dir(host.join("etc/matrix-synapse/appservices")) {
        for registration in registrations.flatten() {
            let yaml: serde_yaml::Value =
                serde_yaml::from_slice(&std::fs::read(registration.path()).unwrap()).unwrap();
            for token in ["as_token", "hs_token"] {
                let name = format!("{} {token}", registration.file_name().to_string_lossy());
                secrets.push((name, yaml[token].as_str().unwrap().to_string()));
            }
        }
    }
    secrets
}

#[test]
fn secrets_are_non_empty_and_pairwise_distinct_on_every_host_and_across_hosts() {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for inventory in inventories() {
        let out = tempfile::tempdir().unwrap();
        for host in render(&inventory, out.path()) {
            let secrets = secrets_of(&host);
            let names: BTreeSet<&str> = secrets.iter().map(|(name, _)| name.as_str()).collect();
            for expected in [
                "registration_shared_secret",
                "macaroon_secret_key",
                "form_secret",
                "pepper",
            ] {
                assert!(
                    names.contains(expected),
                    "{}: no {expected}",
                    host.display()
                );
            }
            for (name, value) in secrets {
                assert!(value.len() >= 32, "{}: {name} is short", host.display());
                let here = format!("{} {name}", host.display());
                if let Some(other) = seen.insert(value, here.clone()) {
                    panic!("{here} has the same value as {other}");
                }
            }
        }
    }
    assert!(
        seen.len() >= 4 * 8 + 4,
        "too few secrets checked: {}",
        seen.len()
    );
}

/// The core knows kinds of things (files, ports, options, facts), never a
/// component: every Synapse, web server, TURN or bridge detail is a role's
/// data. Only the output-format filters are named for their formats
/// (`| nginx`, `| caddy`), as tojson is for JSON.
#[test]
fn no_rust_file_names_a_component() {
    const COMPONENTS: &[&str] = &[
        "synapse",
        "nginx",
        "caddy",
        "coturn",
        "nftables",
        "heisenbridge",
        "postmoogle",
        "mautrix",
        "maubot",
        "telegram",
        "googlechat",
        "bridge",
    ];
    let mut found = Vec::new();
    let mut files = vec![repo().join("src")];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path()),
            );
            continue;
        }
        if path.file_name().is_some_and(|name| name == "escape.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            if lower.contains("crate::escape::") {
                continue;
            }
            for name in COMPONENTS {
                // `host add --bridge NAME` writes `bridges.NAME`, a prefix
                // of the roles' options: the core knows the word, never a
                // bridge.
                let host_add = ["cli.rs", "scaffold.rs", "commands/hosts.rs"]
                    .iter()
                    .any(|file| path.ends_with(file));
                if *name == "bridge" && host_add {
                    continue;
                }
                if lower.contains(name) {
                    found.push(format!("{}:{}: {name}", path.display(), number + 1));
                }
            }
        }
    }
    found.sort();
    assert!(
        found.is_empty(),
        "components belong in roles/, not in the core:\n{}",
        found.join("\n")
    );
}

/// The modules' layers, bottom first (ARCHITECTURE.md, "Layers").
const LAYERS: &[&[&str]] = &[
    &[
        "calendar", "diff", "escape", "fields", "hash", "input", "locate", "openpgp", "parallel",
        "problem", "progress", "sshkey", "values",
    ],
    &["secrets", "trace"],
    &[
        "options", "roles", "service", "exports", "facts", "health", "record",
    ],
    &["inventory", "check", "checklist"],
    &["transport", "system"],
    &["render"],
    &["observe"],
    &["plan"],
    &["fleet"],
    &[
        "impact", "report", "saved", "scaffold", "archives", "status",
    ],
    &["cli"],
    &["commands"],
    &["lib"],
];

/// Every module uses only modules of its own layer or below, and no two
/// modules use each other, however indirectly: the graph read from every
/// `crate::` path outside tests (rust-analyzer's tidy tests are the model).
#[test]
fn the_modules_use_only_their_layer_and_those_below_and_never_in_a_circle() {
    use std::collections::{BTreeMap, BTreeSet};
    let layer_of = |module: &str| LAYERS.iter().position(|layer| layer.contains(&module));
    let path = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![repo().join("src")];
    while let Some(file) = files.pop() {
        if file.is_dir() {
            files.extend(
                std::fs::read_dir(&file)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path()),
            );
            continue;
        }
        let relative = file.strip_prefix(repo().join("src")).unwrap();
        if relative.extension().is_none_or(|ext| ext != "rs")
            || relative == std::path::Path::new("main.rs")
        {
            continue;
        }
        let module = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let used = uses.entry(module.clone()).or_default();
        for found in path.captures_iter(code) {
            if found[1] != module {
                used.insert(found[1].to_string());
            }
        }
    }
    let mut wrong = Vec::new();
    for (module, used) in &uses {
        let Some(own) = layer_of(module) else {
            wrong.push(format!(
                "{module} is in no layer: place it in LAYERS and ARCHITECTURE.md"
            ));
            continue;
        };
        for other in used {
            match layer_of(other) {
                Some(layer) if layer <= own => {}
                _ => wrong.push(format!(
                    "{module} (layer {}) uses {other}, above it",
                    own + 1
                )),
            }
        }
    }
    // A circle within a layer: a module reaching itself.
    for module in uses.keys() {
        let mut seen = BTreeSet::new();
        let mut next: Vec<&String> = uses[module].iter().collect();
        while let Some(other) = next.pop() {
            if other == module {
                wrong.push(format!(
                    "{module} reaches itself through the modules it uses"
                ));
                break;
            }
            if seen.insert(other.clone()) {
                next.extend(uses.get(other).into_iter().flatten());
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
