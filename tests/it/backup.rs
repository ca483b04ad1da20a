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
    // A DNS server that knows no name, for `check`: the outside checks
    // fail at once, and the one on the host is what is looked at.
    let dns = crate::federation::TestDns::serve_on("127.0.0.1", crate::loopback::free_port(), &[]);
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
    // No archive yet: the plan says so on a converged host, and `check`
    // (which asks the host over SSH for it) fails on it.
    let plan = sandbox.run(&["plan", "inventory"]);
    assert!(
        plan.stdout.contains(
            "On the hosts (looked at there; not changes):\n  backup.example: backups FAILING: no archive of this host yet\n      hint: matrixctl backup HOST makes the first now\n"
        ),
        "{}",
        plan.transcript()
    );
    let on_host = |check: &crate::support::Run| -> serde_json::Value {
        let report: serde_json::Value = serde_json::from_str(&check.stdout).unwrap();
        report["reports"][0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|finding| finding["check"] == "on_host")
            .cloned()
            .unwrap_or_else(|| panic!("no on_host finding:\n{}", check.stdout))
    };
    let dns_server = format!("127.0.0.1:{}", dns.port);
    let check = [
        "check",
        "--json",
        "--timeout",
        "2",
        "--dns",
        &dns_server,
        "inventory",
    ];
    let checked = sandbox.run(&check);
    assert_eq!(checked.code, 2, "{}", checked.transcript());
    let finding = on_host(&checked);
    assert_eq!(
        (&finding["status"], &finding["subject"], &finding["message"]),
        (
            &serde_json::json!("error"),
            &serde_json::json!("backups"),
            &serde_json::json!("no archive of this host yet")
        ),
        "{finding}"
    );

    let backup = sandbox.run(&["backup", "backup.example"]);
    assert_eq!(backup.code, 0, "{}", backup.transcript());
    assert!(
        backup.stdout.starts_with("backup.example: backed up in ")
            && backup.stdout.contains("Archive name: backup.example-"),
        "{}",
        backup.stdout
    );
    // Fresh: nothing on the host for the plan to say, and check is content.
    let plan = sandbox.run(&["plan", "inventory"]);
    assert!(!plan.stdout.contains("On the hosts"), "{}", plan.stdout);
    let finding = on_host(&sandbox.run(&check));
    assert_eq!(finding["status"], "ok", "{finding}");
    // Older than twice the schedule (daily): a warning; older than a
    // week: failing, in the plan and in check.
    let made = host.run("cat /var/lib/matrixctl/borg/newest");
    let (_, archive) = made.split_once(' ').unwrap();
    host.run(&format!(
        "echo $(($(date +%s) - 3 * 86400)) {archive} > /var/lib/matrixctl/borg/newest"
    ));
    let plan = sandbox.run(&["plan", "inventory"]);
    assert!(
        plan.stdout.contains(&format!(
            "  backup.example: backups warning: the newest archive, {archive}, is 3 days old (backups run every 24 hours)\n"
        )),
        "{}",
        plan.stdout
    );
    assert_eq!(on_host(&sandbox.run(&check))["status"], "warning");
    host.run(&format!(
        "echo $(($(date +%s) - 8 * 86400)) {archive} > /var/lib/matrixctl/borg/newest"
    ));
    let plan = sandbox.run(&["plan", "inventory"]);
    assert!(
        plan.stdout.contains(&format!(
            "  backup.example: backups FAILING: the newest archive, {archive}, is 8 days old (more than 7 days)\n"
        )),
        "{}",
        plan.stdout
    );
    assert_eq!(on_host(&sandbox.run(&check))["status"], "error");
    host.run(&format!("echo {made} > /var/lib/matrixctl/borg/newest"));

    let listed = sandbox.run(&["backups", "backup.example"]);
    assert_eq!(listed.code, 0, "{}", listed.transcript());
    // A header, then the archive: its age, size, files and own share.
    let mut rows = listed.stdout.lines();
    assert!(
        rows.next()
            .is_some_and(|header| header.starts_with("ARCHIVE ") && header.ends_with("ITS OWN")),
        "{}",
        listed.stdout
    );
    let row: Vec<&str> = rows.next().unwrap_or_default().split_whitespace().collect();
    let archive = row.first().copied().unwrap_or_default().to_string();
    assert!(
        archive.starts_with("backup.example-") && row.len() >= 6,
        "{}",
        listed.stdout
    );

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
    // The plan says the last run failed, with where to look.
    let plan = sandbox.run(&["plan", "inventory"]);
    assert!(
        plan.stdout.contains("ago, failed\n      hint: journalctl -u matrixctl-backup on the host says why it failed;"),
        "{}",
        plan.stdout
    );
    // Purging the customer's data needs a last backup that works: none
    // can be made, so nothing is deleted, the services run again and the
    // host stays in the inventory.
    let purge = sandbox.run(&["host", "remove", "backup.example", "--purge"]);
    assert_eq!(purge.code, 1, "{}", purge.transcript());
    assert!(
        purge
            .stderr
            .contains("the repository did not open: nothing was deleted")
            && purge
                .stderr
                .contains("hint: the host stays in the inventory;"),
        "{}",
        purge.stderr
    );
    assert_eq!(host.run("systemctl is-active matrix-synapse"), "active");
    assert_eq!(
        host.run("test -s /etc/matrix-synapse/homeserver.signing.key && echo kept"),
        "kept"
    );
    assert_eq!(sandbox.plan_exit_code(None), 0);
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
    // The customer's first room, a message in it and a picture uploaded.
    let written = as_customer(&first, &password, &["write"]);
    let (room, picture) = written.split_once(' ').expect("a room and a picture");
    let backed_up = run(&sandbox, backup);
    assert_eq!(backed_up.code, 0, "{}", backed_up.transcript());
    let verified = run(&sandbox, verify);
    assert_eq!(verified.code, 0, "{}", verified.transcript());
    let listed = run(&sandbox, backups);
    assert_eq!(listed.code, 0, "{}", listed.transcript());
    assert!(
        listed
            .stdout
            .lines()
            .nth(1)
            .is_some_and(|row| row.starts_with("lost.example-")),
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
    // The database made again admits its owner alone, as apply made it.
    assert_eq!(
        second.run(
            "cd / && runuser -u postgres -- psql -XAtc \"SELECT has_database_privilege('public', 'synapse', 'CONNECT')\""
        ),
        "f"
    );
    // The account, with its password, from the restored database; its
    // room's history and the picture, from the database and the media.
    assert_eq!(
        as_customer(&second, &password, &["read", room, picture]),
        format!(
            "@admin:lost.example [\"before the server was lost\"] {}",
            sha256_hex(&picture_bytes())
        )
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

    // The repository out of reach: the backup fails, saying so; the plan
    // says the last run failed; the archives there are untouched.
    second.run(&format!(
        "ip rule add to {}/32 unreachable pref 100",
        machine.address
    ));
    let unreachable = run(&rebuilt, backup);
    second.run("ip rule del pref 100");
    assert_eq!(unreachable.code, 1, "{}", unreachable.transcript());
    assert!(
        unreachable
            .stderr
            .contains("the repository cannot be reached over SSH (ssh://borg@backup.example.net/./lost.example)"),
        "{}",
        unreachable.stderr
    );
    let plan = rebuilt.run(&["plan", "inventory"]);
    assert!(
        plan.stdout
            .contains("  lost.example: backups warning: the newest archive, ")
            && plan.stdout.contains("ago, failed\n"),
        "{}",
        plan.stdout
    );
    let names = |table: &str| -> Vec<String> {
        table
            .lines()
            .skip(1)
            .filter_map(|row| row.split_whitespace().next().map(str::to_string))
            .collect()
    };
    assert_eq!(names(&run(&rebuilt, backups).stdout), names(&listed.stdout));

    // A restore cut short while it puts the data back (pg_restore never
    // ends here, and matrixctl stops waiting): the homeserver stays down
    // and cannot be started, the plan says why, and the next restore
    // starts over and finishes.
    second.run(
        "printf '#!/bin/sh\\nexec sleep 600\\n' > /usr/local/bin/pg_restore && chmod 755 /usr/local/bin/pg_restore",
    );
    let cut = rebuilt.run(&[
        "restore",
        "lost.example",
        "--force",
        "--wait",
        "20",
        "--inventory",
        "inventory",
    ]);
    second.run(
        "rm /usr/local/bin/pg_restore; pkill -f '[m]atrixctl/backup restore' || true; \
         pkill -x sleep || true; pkill -x borg || true",
    );
    assert_eq!(cut.code, 1, "{}", cut.transcript());
    assert_eq!(
        second.run("systemctl start matrix-synapse; systemctl is-active matrix-synapse || true"),
        "inactive",
        "the homeserver started on half a restore"
    );
    let plan = rebuilt.run(&["plan", "inventory"]);
    assert!(
        plan.stdout.contains(
            "  lost.example: backups FAILING: a restore was cut short while it put the data back: the services that use it stay stopped\n      hint: matrixctl restore HOST starts it over\n"
        ),
        "{}",
        plan.stdout
    );
    let resumed = run(&rebuilt, restore);
    assert_eq!(resumed.code, 0, "{}", resumed.transcript());
    assert_eq!(
        as_customer(&second, &password, &["read", room, picture]),
        format!(
            "@admin:lost.example [\"before the server was lost\"] {}",
            sha256_hex(&picture_bytes())
        )
    );
    let plan = rebuilt.run(&["plan", "--detailed-exitcode", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());

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
    let archive = listed.stdout.lines().nth(1).unwrap_or_default();
    let archive = archive.split_whitespace().next().unwrap_or_default();
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
    // The customer leaves: their data is deleted from the server only
    // after a last archive of it, made with the services stopped,
    // verifies; then the host leaves the inventory.
    let purged = rebuilt.run(&["host", "remove", "lost.example", "--purge"]);
    assert_eq!(purged.code, 0, "{}", purged.transcript());
    assert!(
        purged.stdout.starts_with(
            "Deleted lost.example's data (postgresql synapse, directory /var/lib/matrix-synapse/media, file /etc/matrix-synapse/homeserver.signing.key); it is kept in the archive lost.example-"
        ) && purged.stdout.contains("Removed lost.example from "),
        "{}",
        purged.stdout
    );
    assert_eq!(
        second.run(
            "runuser -u postgres -- psql -XAtc \"SELECT count(*) FROM pg_database WHERE datname = 'synapse'\"; \
             test -e /etc/matrix-synapse/homeserver.signing.key || echo no key; systemctl is-enabled matrix-synapse || true"
        ),
        "0\nno key\ndisabled"
    );
}

/// The bytes of the picture the customer uploads: a PNG header, then a
/// pattern that deduplicates like nothing else in the archive.
fn picture_bytes() -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..16_384u32).map(|n| (n * 7 % 251) as u8));
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The customer, through the homeserver's client API on `host`'s
/// loopback, logged in as @admin with `password`: `write` makes a room
/// with a message and uploads the picture (prints `ROOM MXC`); `read ROOM
/// MXC` prints the user, the room's messages and the picture's SHA-256.
fn as_customer(host: &BootedHost, password: &str, args: &[&str]) -> String {
    let picture = base64_of_bytes(&picture_bytes());
    let script = format!(
        "import base64, hashlib, json, sys, time, urllib.parse, urllib.request\n\
         def call(method, path, body=None, token=None, raw=None, kind='application/json'):\n\
         \x20   data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)\n\
         \x20   headers = {{'Content-Type': kind}}\n\
         \x20   if token: headers['Authorization'] = 'Bearer ' + token\n\
         \x20   request = urllib.request.Request('http://127.0.0.1:8008' + path, data, headers, method=method)\n\
         \x20   return urllib.request.urlopen(request, timeout=10).read()\n\
         login = {{'type': 'm.login.password', 'identifier': {{'type': 'm.id.user', 'user': 'admin'}}, 'password': '{password}'}}\n\
         for attempt in range(60):\n\
         \x20   try:\n\
         \x20       session = json.loads(call('POST', '/_matrix/client/v3/login', login))\n\
         \x20       break\n\
         \x20   except OSError:\n\
         \x20       time.sleep(0.5)\n\
         token = session['access_token']\n\
         if sys.argv[1] == 'write':\n\
         \x20   room = json.loads(call('POST', '/_matrix/client/v3/createRoom', {{'name': 'Drill'}}, token))['room_id']\n\
         \x20   call('PUT', '/_matrix/client/v3/rooms/%s/send/m.room.message/first' % urllib.parse.quote(room), {{'msgtype': 'm.text', 'body': 'before the server was lost'}}, token)\n\
         \x20   uploaded = json.loads(call('POST', '/_matrix/media/v3/upload?filename=picture.png', token=token, raw=base64.b64decode('{picture}'), kind='image/png'))\n\
         \x20   print(room, uploaded['content_uri'])\n\
         else:\n\
         \x20   room, mxc = sys.argv[2], sys.argv[3]\n\
         \x20   chunk = json.loads(call('GET', '/_matrix/client/v3/rooms/%s/messages?dir=b&limit=50' % urllib.parse.quote(room), token=token))['chunk']\n\
         \x20   bodies = [event['content'].get('body') for event in chunk if event['type'] == 'm.room.message']\n\
         \x20   picture = call('GET', '/_matrix/client/v1/media/download/' + mxc[len('mxc://'):], token=token)\n\
         \x20   print(session['user_id'], json.dumps(bodies), hashlib.sha256(picture).hexdigest())\n"
    );
    let said = host.ssh(&format!(
        "/opt/venvs/matrix-synapse/bin/python -c \"$(printf '%s' '{}' | base64 -d)\" {}",
        base64_of(&script),
        args.iter()
            .map(|arg| format!("'{arg}'"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    assert!(
        said.status.success(),
        "{}",
        String::from_utf8_lossy(&said.stderr)
    );
    String::from_utf8_lossy(&said.stdout).trim().to_string()
}

fn base64_of_bytes(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
