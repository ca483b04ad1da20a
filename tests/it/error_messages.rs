//! Every kind of bad input, as data: each directory under tests/errors/ is
//! an inventory (plus `roles/` when the case needs its own role) and
//! `case.txt` saying what is wrong. The whole transcript of `plan` on it is
//! the expectation: error text is part of the interface.

use std::process::Stdio;

use crate::support::{Sandbox, repo};

#[test]
fn bad_inventories_get_clear_errors() {
    insta::glob!("../errors", "*/case.txt", |case_file| {
        let case = case_file.parent().unwrap();
        let name = case.file_name().unwrap().to_str().unwrap();
        let relative = format!("errors/{name}");
        let mut args = vec!["plan".to_string(), relative.clone()];
        if case.join("roles").is_dir() {
            args.insert(0, format!("{relative}/roles"));
            args.insert(0, "--roles".to_string());
        }
        // Git checks keys out as 0644; operators keep them 0600 (one test
        // below checks the warning a readable key gets).
        let key = case.join("secrets/master.key");
        if key.is_file() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let output = crate::support::matrixctl()
            .args(&args)
            .current_dir(repo().join("tests"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Bad input never reaches a host: nothing is planned, nothing written.
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert_eq!(stdout, "", "{name}");
        assert!(!case.join("../../hosts-never-written").exists());
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        let description = std::fs::read_to_string(case_file).unwrap();
        insta::assert_snapshot!(format!(
            "{description}$ matrixctl {}\n{stderr}",
            args.join(" ")
        ));
    });
}

/// `admin create` and `token create` refuse what they cannot do before
/// any host is contacted, and say why.
#[test]
fn admin_and_token_commands_refuse_bad_requests_clearly() {
    let sandbox = crate::support::Sandbox::fleet();
    sandbox.write(
        "inventory/host_vars/c.example.yaml",
        "registration: closed\n",
    );
    let mut transcript = String::new();
    for args in [
        &["admin", "create", "nosuch.example", "@admin:nosuch.example"][..],
        &["admin", "create", "a.example", "@admin:b.example"],
        &["admin", "create", "a.example", "@Admin:a.example"],
        &["token", "create", "a.example", "--expires", "3x"],
        &["token", "create", "a.example", "--uses", "0"],
        // A token is useless where registration is not by token.
        &["token", "create", "c.example", "--uses", "1"],
    ] {
        let run = sandbox.run(args);
        assert_eq!(run.code, 1, "{args:?}");
        assert_eq!(run.stdout, "", "{args:?}");
        transcript.push_str(&format!("$ matrixctl {}\n{}\n", args.join(" "), run.stderr));
    }
    insta::assert_snapshot!(transcript);
}

/// A usage error exits 1, like every other error: 2 is what
/// `plan --detailed-exitcode` means by "changes pending". Help exits 0.
#[test]
fn a_usage_error_exits_1_never_the_changes_pending_code() {
    let sandbox = crate::support::Sandbox::fleet();
    let typo = sandbox.run(&["plan", "--limt", "a.example", "inventory"]);
    assert_eq!(typo.code, 1, "{}", typo.transcript());
    assert!(
        typo.stderr.contains("unexpected argument '--limt'"),
        "{}",
        typo.stderr
    );
    assert!(
        typo.stderr.contains("a similar argument exists: '--limit'"),
        "{}",
        typo.stderr
    );
    let help = sandbox.run(&["plan", "--help"]);
    assert_eq!(help.code, 0);
    assert!(
        help.stdout.contains("--detailed-exitcode"),
        "{}",
        help.stdout
    );
}

/// A role that renamed an option keeps the old name working, with a
/// warning naming file, line and the new name; one that removed an option
/// refuses it at its line, saying what replaced it.
#[test]
fn renamed_options_warn_and_removed_ones_say_what_replaced_them() {
    let sandbox = Sandbox::fleet();
    sandbox.write(
        "myroles/greeting.yaml",
        "description: a greeting\n\
         when: \"true\"\n\
         options:\n  greeting_text:\n    type: string\n    default: hello\n    description: what the file says\n\
         renamed_options:\n  greeting: greeting_text\n\
         removed_options:\n  greeting_color: colours went away in 2.0; style the page with CSS instead\n\
         files:\n  - template: greeting.j2\n    dest: /etc/greeting\n    mode: \"0644\"\n",
    );
    sandbox.write("myroles/templates/greeting.j2", "{{ greeting_text }}\n");
    let all = "synapse_group: root\nhost_commands: false\n";
    let roles = ["--roles", "myroles"];
    let run = |args: &[&str]| sandbox.run(&[&roles[..], args].concat());
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &format!("{all}greeting: bonjour\n"),
    );
    let renamed = run(&["render", "inventory", "--out", "out"]);
    assert_eq!(renamed.code, 0, "{}", renamed.transcript());
    assert_eq!(
        std::fs::read_to_string(sandbox.path().join("out/a.example/etc/greeting")).unwrap(),
        "bonjour\n"
    );
    let mut transcripts = format!("$ matrixctl render (greeting set)\n{}", renamed.stderr);
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &format!("{all}greeting: bonjour\ngreeting_text: salut\n"),
    );
    let both = run(&["plan", "inventory"]);
    assert_eq!(both.code, 1, "{}", both.transcript());
    transcripts.push_str(&format!(
        "\n$ matrixctl plan (greeting and greeting_text set)\n{}",
        both.stderr
    ));
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &format!("{all}greeting_color: red\n"),
    );
    let removed = run(&["plan", "inventory"]);
    assert_eq!(removed.code, 1, "{}", removed.transcript());
    transcripts.push_str(&format!(
        "\n$ matrixctl plan (greeting_color set)\n{}",
        removed.stderr
    ));
    // A rename to nothing, or of a name still in use, is the role's mistake.
    sandbox.write(
        "myroles/greeting.yaml",
        "when: \"false\"\nrenamed_options:\n  greeting: greeting_words\n  matrix_fqdn: federation_port\n",
    );
    let broken = run(&["plan", "inventory"]);
    assert_eq!(broken.code, 1, "{}", broken.transcript());
    transcripts.push_str(&format!(
        "\n$ matrixctl plan (a role renaming to nothing)\n{}",
        broken.stderr
    ));
    insta::assert_snapshot!(transcripts);
}
