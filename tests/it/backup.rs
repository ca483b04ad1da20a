//! Backups on booted hosts: what an archive holds, and a server lost and
//! put back from its archive under the same name at a new address.

use crate::booted::BootedHost;
use crate::support::{Sandbox, repo};

/// Backups of what the roles keep: an archive made on demand holds the
/// homeserver's database (a dump that restores), its media and its
/// signing key; the archives list; the timer runs; a passphrase that no
/// longer opens the repository gets its cause named.
#[test]
fn a_backup_holds_the_database_the_media_and_the_signing_key() {
    let host = BootedHost::up("mcbackup");
    host.copy_wheels(&["synapse"]);
    let sandbox = host.inventory(
        "backup.example",
        "synapse_install: venv\nsynapse_wheels: /srv/wheels\n\
         backup:\n  repository: /srv/borg/backup.example\n",
    );
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_eq!(
        host.run("systemctl is-enabled matrixctl-backup.timer; systemctl is-active matrixctl-backup.timer"),
        "enabled\nactive"
    );
    host.run(
        "mkdir -p /var/lib/matrix-synapse/media/local_content/ab/cd \
         && echo 'an uploaded picture' > /var/lib/matrix-synapse/media/local_content/ab/cd/efgh",
    );

    let backup = sandbox.run(&["backup", "backup.example"]);
    assert_eq!(backup.code, 0, "{}", backup.transcript());
    assert!(
        backup.stdout.starts_with("backup.example: backed up in ")
            && backup.stdout.contains("Archive name: backup.example-"),
        "{}",
        backup.stdout
    );
    let listed = sandbox.run(&["backups", "backup.example"]);
    assert_eq!(listed.code, 0, "{}", listed.transcript());
    let archive = listed
        .stdout
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    assert!(archive.starts_with("backup.example-"), "{}", listed.stdout);

    // What the archive holds, read with borg on the host as an operator
    // would, with the host's own passphrase file.
    let borg = |command: &str| {
        host.run(&format!(
            "cd / && BORG_REPO=/srv/borg/backup.example BORG_PASSCOMMAND='cat /etc/matrixctl/backup/passphrase' \
             BORG_BASE_DIR=/var/lib/matrixctl/borg {command}"
        ))
    };
    let contents = borg(&format!("borg list --short ::{archive}"));
    for path in [
        "etc/matrix-synapse/homeserver.signing.key",
        "var/lib/matrix-synapse/media/local_content/ab/cd/efgh",
        "var/lib/matrixctl/borg/staging/postgresql/synapse.pgdump",
    ] {
        assert!(
            contents.lines().any(|line| line == path),
            "{path} is not in the archive:\n{contents}"
        );
    }
    assert_eq!(
        borg(&format!(
            "borg extract --stdout ::{archive} etc/matrix-synapse/homeserver.signing.key | sha256sum"
        )),
        host.run("sha256sum < /etc/matrix-synapse/homeserver.signing.key")
    );
    // The dump is PostgreSQL's custom format, with Synapse's tables in it.
    let tables = borg(&format!(
        "borg extract --stdout ::{archive} var/lib/matrixctl/borg/staging/postgresql/synapse.pgdump \
         | pg_restore --list | grep -c 'TABLE DATA public events '"
    ));
    assert_eq!(tables, "1", "no events table in the dump");
    // The drill without a restore: the dump loads into a scratch
    // database, the key is the live one, the media hash the same.
    let verified = sandbox.run(&["backup", "verify", "backup.example"]);
    assert_eq!(verified.code, 0, "{}", verified.transcript());
    for line in [
        "ok      postgresql synapse: ",
        "restored into a scratch database",
        "ok      file /etc/matrix-synapse/homeserver.signing.key: the same as the live one",
        "ok      directory /var/lib/matrix-synapse/media: 1 files archived, 1 here, 1 sampled the same",
        "backup.example: the archive would restore.",
    ] {
        assert!(
            verified.stdout.contains(line),
            "{line}\n{}",
            verified.stdout
        );
    }
    // A file that no longer matches its archived copy is named.
    host.run(
        "echo 'changed behind the backup' > /var/lib/matrix-synapse/media/local_content/ab/cd/efgh",
    );
    let differs = sandbox.run(&["backup", "verify", "backup.example"]);
    assert_eq!(differs.code, 1, "{}", differs.transcript());
    assert!(
        differs.stderr.contains(
            "FAILED  directory /var/lib/matrix-synapse/media: sampled files differ from the live ones: /var/lib/matrix-synapse/media/local_content/ab/cd/efgh"
        ),
        "{}",
        differs.stderr
    );
    // Nothing was left staged.
    assert_eq!(
        host.ssh("test -e /var/lib/matrixctl/borg/staging")
            .status
            .code(),
        Some(1)
    );
    assert_eq!(sandbox.plan_exit_code(None), 0);

    // The passphrase moves on (a new generation): the repository does not
    // open with it, and the backup says why.
    let own = sandbox.path().join("inventory/group_vars/all.yaml");
    let vars = std::fs::read_to_string(&own).unwrap();
    std::fs::write(
        &own,
        format!("{vars}secret_generation:\n  backup_passphrase: 1\n"),
    )
    .unwrap();
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    let refused = sandbox.run(&["backup", "backup.example"]);
    assert_eq!(refused.code, 1, "{}", refused.transcript());
    assert!(
        refused
            .stderr
            .contains("the repository does not open with this host's passphrase"),
        "{}",
        refused.stderr
    );
}

/// The README's "When a server is lost" host_vars: the customer's (its
/// `backup:`) and the repository machine's, for this test's names, with
/// `host_key` the repository machine's real one.
fn readme_vars(host_key: &str) -> (String, String) {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## When a server is lost")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the README's section on a lost server");
    let blocks: Vec<String> = section
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .map(|block| {
            block
                .lines()
                .filter(|line| !line.starts_with('#'))
                .map(|line| match line.split_once("host_key: ") {
                    Some((indent, _)) => format!("{indent}host_key: {host_key}"),
                    None => line
                        .split("  #")
                        .next()
                        .unwrap_or(line)
                        .trim_end()
                        .to_string(),
                })
                .map(|line| line.replace("example.com", "lost.example") + "\n")
                .collect()
        })
        .collect();
    let [customer, repository] = &blocks[..] else {
        panic!(
            "the README shows the customer's and the repository machine's host_vars: {blocks:?}"
        );
    };
    (customer.clone(), repository.clone())
}

/// An inventory of the customer at `host` and the repository machine,
/// with the README's vars; the customer reaches the machine by its name.
fn drill_inventory(host: &BootedHost, machine: &BootedHost) -> Sandbox {
    host.link_to(machine);
    host.run(&format!(
        "echo '{} backup.example.net' >> /etc/hosts",
        machine.address
    ));
    host.copy_wheels(&["synapse"]);
    let host_key = machine.run("cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub");
    let (customer, repository) = readme_vars(&host_key);
    crate::booted::fleet_inventory(
        &[
            (
                host,
                "lost.example",
                &format!("synapse_install: venv\nsynapse_wheels: /srv/wheels\n{customer}"),
            ),
            (machine, "backup.example.net", &repository),
        ],
        "",
    )
}

/// The README's "When a server is lost" commands, each as words for
/// `matrixctl`, for this test's host and inventory directory.
fn readme_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let block = readme
        .split("## When a server is lost")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("the README's commands for a lost server");
    block
        .lines()
        .map(|line| line.split("  #").next().unwrap_or(line).trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            let words: Vec<String> = line
                .replace("example.com", "lost.example")
                .replace("--inventory inv", "--inventory inventory")
                .split_whitespace()
                .map(str::to_string)
                .collect();
            assert_eq!(words[0], "matrixctl", "{line}");
            words[1..].to_vec()
        })
        .collect()
}

/// The drill, with the README's commands and vars: a homeserver with an
/// account is backed up to the inventory's repository machine,
/// destroyed, and a new empty server at a new address under the same
/// name is restored from the archive with the same master key. The
/// account logs in with its password, the signing key is the one other
/// servers know, and the next plan has nothing to do. A second restore
/// is refused: the server holds data now. And the repository machine
/// holds on to the archives a root on the server deleted through its
/// append-only access: it refuses to prune or compact them away.
#[test]
fn a_lost_server_comes_back_from_its_archive_with_its_accounts_and_signing_key() {
    let commands = readme_commands();
    let [backup, verify, backups, restore] = &commands[..] else {
        panic!("the README shows backup, backup verify, backups and restore: {commands:?}");
    };
    let run = |sandbox: &Sandbox, words: &[String]| {
        sandbox.run(&words.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let machine = BootedHost::up("mcborgsrv");
    let first = BootedHost::up("mcrestore");
    let sandbox = drill_inventory(&first, &machine);
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    let keys = machine.run("cat /srv/borg/.ssh/authorized_keys");
    assert!(
        keys.contains(
            "command=\"cd /srv/borg/repositories && borg serve --append-only --restrict-to-repository /srv/borg/repositories/lost.example\",restrict ssh-ed25519 "
        ),
        "{keys}"
    );
    let admin = sandbox.run(&["admin", "create", "lost.example", "@admin:lost.example"]);
    assert_eq!(admin.code, 0, "{}", admin.transcript());
    let password = crate::booted::admin_password(&admin);
    let signing_key = first.run("cat /etc/matrix-synapse/homeserver.signing.key");
    let backed_up = run(&sandbox, backup);
    assert_eq!(backed_up.code, 0, "{}", backed_up.transcript());
    let verified = run(&sandbox, verify);
    assert_eq!(verified.code, 0, "{}", verified.transcript());
    let listed = run(&sandbox, backups);
    assert_eq!(listed.code, 0, "{}", listed.transcript());
    assert!(
        listed.stdout.starts_with("lost.example-"),
        "{}",
        listed.stdout
    );
    // The repository machine prunes (nothing to prune yet) and notes
    // the archives there are.
    machine.run("systemctl start matrixctl-borg-prune.service");
    drop(first);

    // A new, empty server for the same name, at another address; the
    // operator's inventory keeps its master key and points at it.
    let second = BootedHost::up("mcrestored");
    let rebuilt = drill_inventory(&second, &machine);
    std::fs::copy(
        sandbox.path().join("inventory/secrets/master.key"),
        rebuilt.path().join("inventory/secrets/master.key"),
    )
    .unwrap();
    let restored = run(&rebuilt, restore);
    assert_eq!(
        restored.code,
        0,
        "{}\n{}",
        restored.transcript(),
        second
            .ssh("journalctl -u matrix-synapse -n 20 --no-pager")
            .stdout
            .escape_ascii()
    );
    assert!(
        restored
            .stdout
            .contains("Restored lost.example from lost.example-"),
        "{}",
        restored.stdout
    );
    assert_eq!(
        second.run("cat /etc/matrix-synapse/homeserver.signing.key"),
        signing_key,
        "the signing key other servers know"
    );
    // The account, with its password, from the restored database.
    let login = format!(
        "import json, time, urllib.request\n\
         body = json.dumps({{'type': 'm.login.password', 'identifier': {{'type': 'm.id.user', 'user': 'admin'}}, 'password': '{password}'}}).encode()\n\
         for attempt in range(60):\n\
         \x20   try:\n\
         \x20       answer = urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:8008/_matrix/client/v3/login', body, {{'Content-Type': 'application/json'}}), timeout=5)\n\
         \x20       print(json.load(answer)['user_id'])\n\
         \x20       break\n\
         \x20   except OSError:\n\
         \x20       time.sleep(0.5)\n"
    );
    let logged_in = second.ssh(&format!(
        "/opt/venvs/matrix-synapse/bin/python -c \"$(printf '%s' '{}' | base64 -d)\"",
        base64_of(&login)
    ));
    assert_eq!(
        String::from_utf8_lossy(&logged_in.stdout).trim(),
        "@admin:lost.example",
        "{}",
        String::from_utf8_lossy(&logged_in.stderr)
    );
    let plan = rebuilt.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());

    // It holds the customer's data now: a restore over it is refused,
    // before anything changes.
    let again = run(&rebuilt, restore);
    assert_eq!(again.code, 1, "{}", again.transcript());
    assert!(
        again
            .stderr
            .contains("this host already holds data a restore would replace: postgresql:synapse"),
        "{}",
        again.stderr
    );

    // A root on the server, with its backup key, gets no shell on the
    // repository machine (only borg serve, whatever it asks for) ...
    let ssh_as_backup = "ssh -i /etc/matrixctl/backup/id_ed25519 -o IdentitiesOnly=yes \
         -o UserKnownHostsFile=/etc/matrixctl/backup/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes";
    let _ = second.ssh(&format!(
        "{ssh_as_backup} borg@backup.example.net 'rm -rf /srv/borg/repositories/lost.example' < /dev/null"
    ));
    assert_eq!(
        machine.run("test -e /srv/borg/repositories/lost.example/config && echo kept"),
        "kept"
    );
    // ... and the archives it deletes through borg (append-only: marked
    // deleted, still there) the machine refuses to prune or compact away.
    let archive = listed.stdout.split_whitespace().next().unwrap().to_string();
    let deleted = second.ssh(&format!(
        "cd / && BORG_REPO=ssh://borg@backup.example.net/./lost.example \
         BORG_PASSCOMMAND='cat /etc/matrixctl/backup/passphrase' BORG_BASE_DIR=/var/lib/matrixctl/borg \
         BORG_RSH='{ssh_as_backup}' borg delete ::{archive}"
    ));
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let pruned = machine.ssh("systemctl start matrixctl-borg-prune.service");
    let said = machine.run("journalctl -u matrixctl-borg-prune.service -o cat --no-pager");
    assert!(!pruned.status.success(), "the pruning went ahead:\n{said}");
    assert!(
        said.contains(&format!(
            "lost.example: archives went missing since the last pruning here: {archive}"
        )),
        "{said}"
    );
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
