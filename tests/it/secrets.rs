//! Secrets: derived per host and per name, rotated one at a time, and never
//! printed: not in plans, diffs, JSON, apply results or errors.

use crate::support::{Run, Sandbox, TEST_MASTER_KEY};

const SECRETS_YAML: &str = "/etc/matrix-synapse/conf.d/secrets.yaml";

/// `name: "value"` lines of a rendered secrets file.
fn secret_values(content: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(content)
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_string(), value.trim_matches('"').to_string()))
        .collect()
}

fn assert_no_secret(runs: &[&Run], secrets: &[String]) {
    for run in runs {
        for secret in secrets {
            assert!(
                !run.stdout.contains(secret.as_str()) && !run.stderr.contains(secret.as_str()),
                "a secret leaked into:\n{}",
                run.transcript()
            );
        }
    }
}

/// A role of the test's own that puts an operator-chosen secret (the
/// password pepper) in a file, and that can be switched off.
fn add_pepper_role(sandbox: &Sandbox) {
    sandbox.write(
        "roles/pepper.yaml",
        "when: pepper_enabled\ndefaults:\n  pepper_enabled: true\nfiles:\n  - template: pepper/pepper.yaml.j2\n    dest: /etc/matrix-synapse/conf.d/pepper.yaml\n    mode: \"0640\"\n",
    );
    sandbox.write(
        "roles/templates/pepper/pepper.yaml.j2",
        "password_config:\n  pepper: {{ secrets.password_pepper | tojson }}\n",
    );
}

#[test]
fn secrets_are_distinct_per_host_and_name_and_rotate_alone() {
    let sandbox = Sandbox::fleet();
    assert_eq!(
        sandbox
            .run(&["render", "inventory", "--out", "before"])
            .code,
        0
    );
    let read = |dir: &str, host: &str| {
        secret_values(
            &std::fs::read(sandbox.path().join(dir).join(host).join(&SECRETS_YAML[1..])).unwrap(),
        )
    };
    let mut all = Vec::new();
    for host in ["a.example", "b.example", "c.example"] {
        all.extend(read("before", host).into_iter().map(|(_, value)| value));
    }
    assert_eq!(all.len(), 9);
    let mut distinct = all.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 9, "two secrets share a value: {all:?}");

    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "secret_generation:\n  form_secret: 1\n",
    );
    assert_eq!(
        sandbox.run(&["render", "inventory", "--out", "after"]).code,
        0
    );
    let before = read("before", "a.example");
    let after = read("after", "a.example");
    for ((name, old), (_, new)) in before.iter().zip(&after) {
        assert_eq!(name == "form_secret", old != new, "{name}");
    }
    assert_eq!(read("before", "b.example"), read("after", "b.example"));
}

#[test]
fn no_output_ever_shows_a_secret() {
    let sandbox = Sandbox::fleet();
    add_pepper_role(&sandbox);
    let pepper = "operator-chosen-pepper-8f2k1";
    sandbox.write(
        "inventory/host_vars/c.example.yaml",
        &format!("secrets:\n  password_pepper: {pepper}\n"),
    );
    let roles = ["--roles", "roles"];
    let with_roles = |args: &[&str]| sandbox.run(&[&roles[..], args].concat());

    assert_eq!(
        with_roles(&["render", "inventory", "--out", "rendered"]).code,
        0
    );
    let mut secrets = vec![TEST_MASTER_KEY.to_string(), pepper.to_string()];
    for host in ["a.example", "b.example", "c.example"] {
        let content = std::fs::read(
            sandbox
                .path()
                .join("rendered")
                .join(host)
                .join(&SECRETS_YAML[1..]),
        )
        .unwrap();
        secrets.extend(secret_values(&content).into_iter().map(|(_, value)| value));
    }

    let first_plan = with_roles(&["plan", "inventory"]);
    let first_json = with_roles(&["plan", "--json", "inventory"]);
    assert!(
        first_plan
            .stdout
            .contains("(content hidden: the file holds secrets)")
    );
    let apply = with_roles(&["apply", "--yes", "inventory"]);
    let apply_json = with_roles(&["apply", "--yes", "--json", "inventory"]);
    assert_eq!(apply.code, 0);

    // A hand edit of a secrets file, a rotation, and a secret file whose role
    // goes away: each diff would show a secret, so none is shown.
    let edited = sandbox.host_file("a.example", SECRETS_YAML);
    let text = std::fs::read_to_string(&edited).unwrap();
    std::fs::write(&edited, text.replace("form_secret", "#form_secret")).unwrap();
    sandbox.write(
        "inventory/host_vars/b.example.yaml",
        "secret_generation:\n  macaroon_secret_key: 3\n",
    );
    sandbox.write(
        "inventory/host_vars/c.example.yaml",
        &format!("pepper_enabled: false\nsecrets:\n  password_pepper: {pepper}\n"),
    );
    let changed_plan = with_roles(&["plan", "inventory"]);
    let changed_json = with_roles(&["plan", "--json", "inventory"]);
    assert!(
        changed_plan.stdout.contains("edited on the host"),
        "{}",
        changed_plan.stdout
    );
    let changed_apply = with_roles(&["apply", "--yes", "inventory"]);
    assert_eq!(changed_apply.code, 0, "{}", changed_apply.transcript());

    // A template error in a file that holds secrets.
    sandbox.write(
        "roles/templates/pepper/pepper.yaml.j2",
        "password_config:\n  pepper: {{ secrets.password_pepper }} {{ secrets.nope.x }}\n",
    );
    sandbox.write(
        "inventory/host_vars/c.example.yaml",
        &format!("secrets:\n  password_pepper: {pepper}\n"),
    );
    let error = with_roles(&["plan", "inventory"]);
    assert_eq!(error.code, 1);
    assert!(
        error.stderr.contains("pepper.yaml.j2:2"),
        "{}",
        error.stderr
    );

    assert_no_secret(
        &[
            &first_plan,
            &first_json,
            &apply,
            &apply_json,
            &changed_plan,
            &changed_json,
            &changed_apply,
            &error,
        ],
        &secrets,
    );
    insta::assert_snapshot!(changed_plan.transcript());
}

#[test]
fn no_error_ever_shows_a_secret() {
    let sandbox = Sandbox::fleet();
    assert_eq!(
        sandbox
            .run(&["render", "inventory", "--out", "rendered"])
            .code,
        0
    );
    let mut secrets = vec![TEST_MASTER_KEY.to_string()];
    for host in ["a.example", "b.example", "c.example"] {
        let content = std::fs::read(
            sandbox
                .path()
                .join("rendered")
                .join(host)
                .join(&SECRETS_YAML[1..]),
        )
        .unwrap();
        secrets.extend(secret_values(&content).into_iter().map(|(_, value)| value));
    }
    let mut errors = Vec::new();

    // Secrets written with a YAML tag that forces the wrong type: the
    // parser's message would quote them.
    for tagged in [
        "secrets:\n  password_pepper: !!int operator-pepper-one\n",
        "secrets:\n  password_pepper: !!bool operator-pepper-two\n",
        "secrets:\n  password_pepper: !!float \"operator-pepper-three\"\n",
    ] {
        sandbox.write("inventory/host_vars/a.example.yaml", tagged);
        let run = sandbox.run(&["plan", "inventory"]);
        assert_eq!(run.code, 1, "{}", run.transcript());
        assert!(
            run.stderr.contains("a.example.yaml:2"),
            "{}",
            run.transcript()
        );
        errors.push(run);
    }
    secrets.extend(
        [
            "operator-pepper-one",
            "operator-pepper-two",
            "operator-pepper-three",
        ]
        .map(String::from),
    );
    std::fs::remove_file(sandbox.path().join("inventory/host_vars/a.example.yaml")).unwrap();

    // A derived secret pasted as a plain value, and as a key: the errors
    // that name them come before any host is rendered.
    let pasted = secrets[1].clone();
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        &format!("admin_contact: \"{pasted}\"\nsynapse_extra:\n  {pasted}: 1\n"),
    );
    let run = sandbox.run(&["plan", "inventory"]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr.contains("key `synapse_extra.<redacted>`"),
        "{}",
        run.transcript()
    );
    errors.push(run);
    std::fs::remove_file(sandbox.path().join("inventory/host_vars/a.example.yaml")).unwrap();

    // A role whose destination and owner are derived secrets: its errors
    // name the bad value, which the redactor removes.
    for field in [
        "dest: \"{{ secrets.form_secret }}\"\n    mode: \"0600\"",
        "dest: /etc/leak.yaml\n    mode: \"0600\"\n    owner: \"x{{ secrets.form_secret }}!\"",
    ] {
        sandbox.write(
            "roles/leak.yaml",
            &format!("files:\n  - template: leak/leak.j2\n    {field}\n"),
        );
        sandbox.write("roles/templates/leak/leak.j2", "leak\n");
        let run = sandbox.run(&["--roles", "roles", "plan", "inventory"]);
        assert_eq!(run.code, 1, "{}", run.transcript());
        assert!(
            run.stderr.to_lowercase().contains("redacted"),
            "{}",
            run.transcript()
        );
        errors.push(run);
    }
    assert_no_secret(&errors.iter().collect::<Vec<_>>(), &secrets);
}

#[test]
fn a_role_declares_its_own_secrets_and_may_not_take_anothers() {
    let sandbox = Sandbox::fleet();
    sandbox.write(
        "roles/bot.yaml",
        "secrets:\n  bot_token: the bot's login token\nfiles:\n  - template: bot/bot.env.j2\n    dest: /etc/bot.env\n    mode: \"0600\"\n",
    );
    sandbox.write(
        "roles/templates/bot/bot.env.j2",
        "TOKEN={{ secrets.bot_token | env }}\nTURN={{ secrets.turn_shared_secret | env }}\n",
    );
    let render = sandbox.run(&[
        "--roles",
        "roles",
        "render",
        "inventory",
        "--out",
        "rendered",
    ]);
    assert_eq!(render.code, 0, "{}", render.transcript());
    let tokens: Vec<String> = ["a.example", "b.example", "c.example"]
        .iter()
        .map(|host| {
            let env = std::fs::read_to_string(
                sandbox
                    .path()
                    .join("rendered")
                    .join(host)
                    .join("etc/bot.env"),
            )
            .unwrap();
            let token = env
                .lines()
                .next()
                .unwrap()
                .trim_start_matches("TOKEN=")
                .to_string();
            let turn = env
                .lines()
                .nth(1)
                .unwrap()
                .trim_start_matches("TURN=")
                .to_string();
            assert_eq!(token.len(), 64);
            assert_ne!(token, turn, "a declared secret has a value of its own");
            token
        })
        .collect();
    let mut distinct = tokens.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "one value per host: {tokens:?}");

    // It can be overridden like any secret; an undeclared name cannot.
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "secrets:\n  bot_tokn: operator-chosen-token\n",
    );
    let plan = sandbox.run(&["--roles", "roles", "plan", "inventory"]);
    assert_eq!(plan.code, 1);
    assert!(
        plan.stderr.contains("error: unknown secret `bot_tokn`")
            && plan.stderr.contains("hint: did you mean `bot_token`?"),
        "{}",
        plan.transcript()
    );

    // Declaring another role's secret is refused: no accidental sharing.
    sandbox.write(
        "roles/bot.yaml",
        "secrets:\n  turn_shared_secret: mine now\n",
    );
    let clash = sandbox.run(&["--roles", "roles", "plan", "inventory"]);
    assert_eq!(clash.code, 1);
    assert!(
        clash
            .stderr
            .contains("error: roles `bot` and `turn` both declare the secret `turn_shared_secret`"),
        "{}",
        clash.transcript()
    );
}

#[test]
fn an_option_declared_secret_never_prints_in_plans_or_errors() {
    let sandbox = Sandbox::fleet();
    sandbox.write(
        "roles/relay.yaml",
        "when: relay_password is not none\noptions:\n  relay_password:\n    type: string\n    secret: true\n    optional: true\n    description: The SMTP relay's password.\n  relay_port:\n    type: port\n    default: 587\n    description: The relay's port.\nassertions:\n  - that: relay_port != 25\n    key: relay_port\n    message: \"port 25 with password {{ relay_password }}\"\nfiles:\n  - template: relay/relay.env.j2\n    dest: /etc/relay.env\n    mode: \"0600\"\n",
    );
    sandbox.write(
        "roles/templates/relay/relay.env.j2",
        "RELAY_PASSWORD={{ relay_password | env }}\n",
    );
    let password = "correct-horse-battery-staple".to_string();
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        &format!("relay_password: {password}\n"),
    );
    let roles = ["--roles", "roles"];
    let with_roles = |args: &[&str]| sandbox.run(&[&roles[..], args].concat());
    let render = with_roles(&["render", "inventory", "--out", "rendered"]);
    assert_eq!(render.code, 0, "{}", render.transcript());
    let env =
        std::fs::read_to_string(sandbox.path().join("rendered/a.example/etc/relay.env")).unwrap();
    assert_eq!(
        env,
        format!("RELAY_PASSWORD={password}\n"),
        "the file holds it"
    );
    let plan = with_roles(&["plan", "inventory"]);
    let json = with_roles(&["plan", "--json", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    // A rule's message that names it, and a type error about it.
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        &format!("relay_password: {password}\nrelay_port: 25\n"),
    );
    let broken_rule = with_roles(&["plan", "inventory"]);
    assert_eq!(broken_rule.code, 1, "{}", broken_rule.transcript());
    assert!(
        broken_rule.stderr.contains("port 25 with password"),
        "{}",
        broken_rule.transcript()
    );
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        &format!("relay_password: [{password}]\n"),
    );
    let wrong_type = with_roles(&["plan", "inventory"]);
    assert_eq!(wrong_type.code, 1, "{}", wrong_type.transcript());
    assert!(
        wrong_type.stderr.contains("not shown: it is a secret"),
        "{}",
        wrong_type.transcript()
    );
    assert_no_secret(&[&plan, &json, &broken_rule, &wrong_type], &[password]);
}

/// A secret transformed by a template is no longer its own bytes, so no
/// redactor finds it: what counts is that the template read `secrets`.
/// Such a file is sensitive (and refused readable by all), such a note,
/// fact or checklist entry is refused.
#[test]
fn a_secret_transformed_by_a_template_is_still_a_secret() {
    let sandbox = Sandbox::fleet();
    let role = |body: &str| {
        sandbox.write(
            "roles/shout.yaml",
            &format!("description: writes a secret, transformed\n{body}"),
        );
    };
    sandbox.write(
        "roles/templates/shout/shout.conf.j2",
        "shouted: {{ secrets.form_secret | upper }}\nreversed: {{ secrets.form_secret | reverse }}\n",
    );
    let plan =
        |limit: &str| sandbox.run(&["--roles", "roles", "plan", "inventory", "--limit", limit]);
    // Readable by everyone: refused.
    role(
        "files:\n  - template: shout/shout.conf.j2\n    dest: /etc/shout.conf\n    mode: \"0644\"\n",
    );
    let refused = plan("a.example");
    assert_eq!(refused.code, 1, "{}", refused.transcript());
    assert!(
        refused.stderr.contains(
            "/etc/shout.conf is made from secrets (its template reads `secrets`) but mode 0644 lets every user read it"
        ),
        "{}",
        refused.transcript()
    );
    // Private: planned, its content never shown, in text or JSON.
    role(
        "files:\n  - template: shout/shout.conf.j2\n    dest: /etc/shout.conf\n    mode: \"0640\"\n",
    );
    let planned = plan("a.example");
    assert_eq!(planned.code, 0, "{}", planned.transcript());
    assert!(
        planned.stdout.contains(
            "  + /etc/shout.conf  (role shout, mode 0640)\n      (content hidden: the file holds secrets)\n"
        ),
        "{}",
        planned.stdout
    );
    let json = sandbox.run(&[
        "--roles",
        "roles",
        "plan",
        "--json",
        "inventory",
        "--limit",
        "a.example",
    ]);
    assert!(!json.stdout.contains("shouted"), "{}", json.stdout);
    // A note, a fact and a checklist entry that read one: refused.
    for (body, expected) in [
        (
            "notes:\n  - \"{{ secrets.form_secret | reverse }}\"\n",
            "role `shout`: a note reads `secrets`; notes are printed in plans",
        ),
        (
            "facts:\n  shouted: secrets.form_secret | upper\n",
            "role `shout`: fact `shouted` holds a secret",
        ),
        (
            "checklist:\n  - section: Secrets\n    text: \"{{ secrets.form_secret | upper }}\"\n",
            "role `shout`: a checklist entry reads `secrets`",
        ),
    ] {
        role(body);
        let command = if body.starts_with("checklist") {
            vec![
                "--roles",
                "roles",
                "onboard",
                "a.example",
                "--inventory",
                "inventory",
            ]
        } else {
            vec![
                "--roles",
                "roles",
                "plan",
                "inventory",
                "--limit",
                "a.example",
            ]
        };
        let run = sandbox.run(&command);
        assert_eq!(run.code, 1, "{body}: {}", run.transcript());
        assert!(
            run.stderr.contains(expected),
            "{body}: {}",
            run.transcript()
        );
        assert!(run.stdout.is_empty(), "{}", run.transcript());
    }
}

/// A secret that crosses hosts (a client's backup passphrase, exported
/// to its repository machine through `fleet`) is still a secret: the
/// file reading the list is hidden in plans and must be private, and no
/// output shows the value; the plan's note for a repository outside the
/// inventory is shown to the one client that needs it.
#[test]
fn a_secret_another_host_exports_is_still_a_secret() {
    let sandbox = Sandbox::empty();
    crate::support::copy_dir(
        &crate::support::repo().join("tests/cases/backup-server"),
        &sandbox.path().join("inventory"),
    );
    sandbox.chmod("inventory/secrets/master.key", 0o600);
    let rendered = sandbox.run(&["render", "inventory", "--out", "out"]);
    assert_eq!(rendered.code, 0, "{}", rendered.transcript());
    let passphrases = std::fs::read_to_string(
        sandbox
            .path()
            .join("out/backup.example.net/etc/matrixctl/backup-server/passphrases"),
    )
    .unwrap();
    let secrets: Vec<String> = passphrases
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(' ').map(|(_, value)| value.to_string()))
        .collect();
    assert_eq!(secrets.len(), 2, "{passphrases}");
    let plan = sandbox.run(&["plan", "inventory"]);
    let json = sandbox.run(&["plan", "--json", "inventory"]);
    assert_no_secret(&[&rendered, &plan, &json], &secrets);
    assert!(
        plan.stdout.contains(
            "  + /etc/matrixctl/backup-server/passphrases  (role backup-server, mode 0600)\n      (content hidden: the file holds secrets)\n"
        ),
        "{}",
        plan.stdout
    );
    let notes: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|line| line.contains("authorized_keys: `"))
        .collect();
    assert_eq!(notes.len(), 1, "{}", plan.stdout);
    assert!(
        notes[0].contains("customer-c.example backs up to ssh://u123@u123.your-storagebox.de:23/./customer-c.example"),
        "{}",
        notes[0]
    );

    // Readable by others, the file is refused like any made from secrets.
    sandbox.write(
        "roles/backup-server.yaml",
        &std::fs::read_to_string(crate::support::repo().join("roles/backup-server.yaml"))
            .unwrap()
            .replace(
                "dest: /etc/matrixctl/backup-server/passphrases\n    mode: \"0600\"",
                "dest: /etc/matrixctl/backup-server/passphrases\n    mode: \"0644\"",
            ),
    );
    let refused = sandbox.run(&["--roles", "roles", "plan", "inventory"]);
    assert_eq!(refused.code, 1, "{}", refused.transcript());
    assert!(
        refused.stderr.contains(
            "/etc/matrixctl/backup-server/passphrases is made from secrets (its template reads `secrets`) but mode 0644"
        ),
        "{}",
        refused.transcript()
    );
}
