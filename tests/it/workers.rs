//! Synapse's worker mode on one booted machine, for real: the busy
//! homeserver runs its main process, Redis and client, federation
//! inbound, federation sender, media, event persister, pusher and
//! background workers (role synapse-workers)
//! behind nginx, next to an outside homeserver on a booted host of its
//! own, both with certificates from pebble and names from the test's DNS.
//! A client's syncs are answered by the client worker (its journal logs
//! them, the main process's does not), a message reaches the outside
//! server through the federation sender, an upload and its download go
//! through the media worker, `check` passes and the next apply has
//! nothing to do.

use std::time::{Duration, Instant};

use crate::booted::{BootedHost, assert_next_apply_changes_nothing_on};
use crate::federation::{Outside, TestNet};
use crate::support::Sandbox;

const BUSY: &str = "busy.example";
const BIG: &str = "big.example";
const OUTSIDE: &str = "outside.example";

/// How many lines of `unit`'s journal mention `text`.
fn logged(host: &BootedHost, unit: &str, text: &str) -> usize {
    host.run(&format!(
        "journalctl -u '{unit}' --no-pager -o cat | grep -c -F -- '{text}' || true"
    ))
    .parse()
    .unwrap_or(0)
}

#[test]
fn a_busy_homeserver_runs_synapse_workers_behind_nginx_and_federates() {
    let busy = BootedHost::up("mcbusy");
    let outside_host = BootedHost::up("mcoutwork");
    let names = TestNet::names_of(&[(BUSY, &busy), (OUTSIDE, &outside_host)]);
    let net = TestNet::up(
        &[&busy, &outside_host],
        &[(&busy, &outside_host)],
        names.clone(),
    );
    for host in [&busy, &outside_host] {
        host.copy_wheels(&["synapse"]);
    }

    let sandbox = Sandbox::empty();
    let mut hosts = String::from("hosts:\n");
    for (name, host) in [(BUSY, &busy), (OUTSIDE, &outside_host)] {
        hosts.push_str(&format!("  {name}:\n    ssh: root@{}:22\n", host.address));
        let (key, known_hosts) = host.ssh_files();
        sandbox.write(
            &format!("inventory/host_vars/{name}.yaml"),
            &format!(
                "ssh_options:\n  identity_file: {}\n  known_hosts_file: {}\n",
                key.display(),
                known_hosts.display()
            ),
        );
    }
    sandbox.write("inventory/hosts.yaml", &hosts);
    sandbox.write(
        &format!("inventory/host_vars/{BUSY}.yaml"),
        &format!(
            "{}synapse_workers:\n\
             \x20 - {{name: client1, kind: client}}\n\
             \x20 - {{name: inbound1, kind: federation_inbound}}\n\
             \x20 - {{name: sender1, kind: federation_sender}}\n\
             \x20 - {{name: media1, kind: media}}\n\
             \x20 - {{name: events1, kind: event_persister}}\n\
             \x20 - {{name: pusher1, kind: pusher}}\n\
             \x20 - {{name: background, kind: background}}\n",
            std::fs::read_to_string(
                sandbox
                    .path()
                    .join(format!("inventory/host_vars/{BUSY}.yaml"))
            )
            .unwrap()
        ),
    );
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &format!(
            "host_commands: true\nsynapse_install: venv\nsynapse_wheels: /srv/wheels\n\
             webserver: nginx\nregistration: token\nserve_base_domain: true\n{}",
            net.homeserver_vars(
                "  # The load below is about processes, not Synapse's rate limits.\n\
                 \x20 rc_message: {per_second: 1000, burst_count: 1000}\n\
                 \x20 rc_registration: {per_second: 1000, burst_count: 1000}\n\
                 \x20 rc_joins: {local: {per_second: 1000, burst_count: 1000}}\n"
            )
        ),
    );
    sandbox.write(
        "inventory/secrets/master.key",
        "booted workers test master key, not a secret anywhere\n",
    );
    sandbox.chmod("inventory/secrets/master.key", 0o600);

    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(
        apply.code,
        0,
        "{}\n{}",
        apply.transcript(),
        busy.run("journalctl -n 80 --no-pager")
    );
    for unit in [
        "matrix-synapse",
        "matrix-synapse-redis",
        "matrix-synapse-worker@client1",
        "matrix-synapse-worker@inbound1",
        "matrix-synapse-worker@sender1",
        "matrix-synapse-worker@media1",
        "matrix-synapse-worker@events1",
        "matrix-synapse-worker@pusher1",
        "matrix-synapse-worker@background",
    ] {
        assert_eq!(
            busy.run(&format!("systemctl is-active {unit} || true")),
            "active",
            "{unit}: {}",
            busy.run(&format!("journalctl -u {unit} -n 30 --no-pager"))
        );
    }

    let outside = net.outside();
    let on_busy = outside.admin(&sandbox, BUSY);
    let on_outside = outside.admin(&sandbox, OUTSIDE);

    // Syncs go to the client worker, never to the main process.
    syncs_are_answered_by(&outside, BUSY, &on_busy, &busy, &busy, "client1");

    // A room on the busy server that the outside server joins (inbound
    // federation), then a message that reaches it (the sender).
    let room_id = message_reaches_outside(
        &outside,
        (BUSY, &on_busy),
        &on_outside,
        "lobby",
        "sent by a worker",
    );
    // The event persister wrote it: the `events` stream is its alone, so
    // the worker that took the request sent it there over replication.
    assert!(
        logged(
            &busy,
            "matrix-synapse-worker@events1",
            "/_synapse/replication/"
        ) > 0,
        "{}",
        busy.run("journalctl -u matrix-synapse-worker@events1 -n 40 --no-pager -o cat")
    );
    assert!(
        logged(&busy, "matrix-synapse-worker@sender1", OUTSIDE) > 0,
        "{}",
        busy.run("journalctl -u matrix-synapse-worker@sender1 -n 40 --no-pager -o cat")
    );
    assert!(
        logged(
            &busy,
            "matrix-synapse-worker@inbound1",
            "/_matrix/federation/"
        ) > 0,
        "{}",
        busy.run("journalctl -u matrix-synapse-worker@inbound1 -n 40 --no-pager -o cat")
    );

    // An upload and its download, through the media worker.
    upload_goes_through_the_media_worker(&outside, BUSY, &on_busy, &busy);

    let checked = net.check(&sandbox, BUSY);
    assert_eq!(checked.code, 0, "{}", checked.transcript());
    assert_next_apply_changes_nothing_on(
        &sandbox,
        &[(
            &busy,
            &[
                "matrix-synapse",
                "matrix-synapse-worker@client1",
                "matrix-synapse-worker@media1",
            ],
        )],
    );

    // Load, bounded in time and count: twenty users holding 200
    // long-polling syncs while a message goes out every 100 ms, with the
    // workers (and below, as a monolith).
    let token = sandbox.run(&["token", "create", BUSY, "--uses", "20"]);
    assert_eq!(token.code, 0, "{}", token.transcript());
    let token = token.stdout.lines().last().unwrap().trim().to_string();
    let users: Vec<String> = (0..20)
        .map(|n| {
            let url = format!("https://matrix.{BUSY}/_matrix/client/v3/register");
            let body = |auth: serde_json::Value| {
                serde_json::json!({"username": format!("load{n}"), "password": "a long load passphrase", "auth": auth})
                    .to_string()
            };
            let start = outside.call("POST", &url, None, Some(&body(serde_json::Value::Null)));
            let session = start.json["session"].as_str().unwrap_or_default().to_string();
            let mut registered = serde_json::Value::Null;
            for auth in [
                serde_json::json!({"type": "m.login.registration_token", "token": token, "session": session}),
                serde_json::json!({"type": "m.login.dummy", "session": session}),
            ] {
                registered = outside.call("POST", &url, None, Some(&body(auth))).json;
                if registered["access_token"].is_string() {
                    break;
                }
            }
            let access = registered["access_token"]
                .as_str()
                .unwrap_or_else(|| panic!("load{n}: {registered}"))
                .to_string();
            let joined = outside.call(
                "POST",
                &format!("https://matrix.{BUSY}/_matrix/client/v3/join/{room_id}"),
                Some(&access),
                Some("{}"),
            );
            assert_eq!(joined.status, 200, "{}", joined.said);
            access
        })
        .collect();
    let busy_address = names
        .iter()
        .find(|(name, _)| name == &format!("matrix.{BUSY}"))
        .unwrap()
        .1
        .clone();
    let load_holds_as = |layout: &str| {
        load_holds(
            &load(
                &outside.root,
                &busy_address,
                &room_id,
                &on_busy,
                &users,
                200,
                30,
            ),
            layout,
        )
    };
    load_holds_as("workers");

    // The media worker taken out: it stops once nginx routes media back
    // to the main process, which serves uploads again.
    let vars_path = sandbox
        .path()
        .join(format!("inventory/host_vars/{BUSY}.yaml"));
    let vars = std::fs::read_to_string(&vars_path).unwrap();
    std::fs::write(
        &vars_path,
        vars.replace("  - {name: media1, kind: media}\n", ""),
    )
    .unwrap();
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_ne!(
        busy.run("systemctl is-active matrix-synapse-worker@media1 || true"),
        "active"
    );
    let uploaded = outside.call(
        "POST",
        &format!("https://matrix.{BUSY}/_matrix/media/v3/upload?filename=again.json"),
        Some(&on_busy),
        Some(r#"{"kept": "by the main process"}"#),
    );
    let uri = uploaded.json["content_uri"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", uploaded.said))
        .to_string();
    let media_id = uri.rsplit('/').next().unwrap();
    assert!(logged(&busy, "matrix-synapse", media_id) >= 1);

    // Workers off: every worker and their Redis stop, syncs go to the
    // main process.
    std::fs::write(&vars_path, vars.split("synapse_workers:").next().unwrap()).unwrap();
    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    for unit in [
        "matrix-synapse-worker@client1",
        "matrix-synapse-worker@sender1",
        "matrix-synapse-redis",
    ] {
        assert_ne!(
            busy.run(&format!("systemctl is-active {unit} || true")),
            "active",
            "{unit}"
        );
    }
    let synced = outside.call(
        "GET",
        &format!("https://matrix.{BUSY}/_matrix/client/v3/sync?timeout=0"),
        Some(&on_busy),
        None,
    );
    assert_eq!(synced.status, 200, "{}", synced.said);
    assert!(logged(&busy, "matrix-synapse", "/_matrix/client/v3/sync") >= 1);
    let plan = sandbox.run(&["plan", "--detailed-exitcode", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());

    load_holds_as("monolith");
}

/// What a load run measured: each message send's round trip, and each
/// message's delivery to a waiting sync (from its origin_server_ts: the
/// booted hosts share the test machine's clock), in milliseconds; and
/// every request that failed.
#[derive(Default)]
struct Load {
    sends: Vec<u64>,
    deliveries: Vec<u64>,
    errors: Vec<String>,
}

impl Load {
    fn percentile(values: &[u64], percent: usize) -> u64 {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        sorted
            .get((sorted.len() * percent / 100).min(sorted.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    }

    fn summary(&self, layout: &str) -> String {
        format!(
            "{layout}: {} sends p50 {} ms p95 {} ms; {} deliveries p50 {} ms p95 {} ms; {} errors",
            self.sends.len(),
            Load::percentile(&self.sends, 50),
            Load::percentile(&self.sends, 95),
            self.deliveries.len(),
            Load::percentile(&self.deliveries, 50),
            Load::percentile(&self.deliveries, 95),
            self.errors.len()
        )
    }
}

/// A load run had no error, and every message sent reached most of the
/// waiting syncs; its numbers go to stderr (README, "When a customer
/// outgrows a machine").
fn load_holds(measured: &Load, layout: &str) {
    eprintln!("{}", measured.summary(layout));
    assert!(
        measured.errors.is_empty(),
        "{layout}: {:?}",
        measured.errors
    );
    assert!(
        measured.sends.len() >= 30 && measured.deliveries.len() >= measured.sends.len() * 50,
        "{}",
        measured.summary(layout)
    );
}

/// `syncs` long-polling sync loops (spread over `users`' tokens) and a
/// message to `room_id` every 100 ms from `sender`, for `seconds`,
/// through the web server at `address` (HTTPS, pebble's `root`).
fn load(
    root: &std::path::Path,
    address: &str,
    room_id: &str,
    sender: &str,
    users: &[String],
    syncs: usize,
    seconds: u64,
) -> Load {
    use std::sync::{Arc, Mutex};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(&std::fs::read(root).unwrap()).unwrap(),
            ])
            .resolve(
                &format!("matrix.{BUSY}"),
                format!("{address}:443").parse().unwrap(),
            )
            .timeout(Duration::from_secs(40))
            .build()
            .unwrap();
        let base = format!("https://matrix.{BUSY}/_matrix/client/v3");
        let measured = Arc::new(Mutex::new(Load::default()));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let now_ms = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        let mut tasks = Vec::new();
        for index in 0..syncs {
            let (client, base, measured) = (client.clone(), base.clone(), measured.clone());
            let token = users[index % users.len()].clone();
            let room_id = room_id.to_string();
            tasks.push(tokio::spawn(async move {
                let mut since: Option<String> = None;
                while Instant::now() < deadline {
                    let url = match &since {
                        None => format!("{base}/sync?timeout=0"),
                        Some(since) => format!("{base}/sync?timeout=10000&since={since}"),
                    };
                    let answer = client.get(&url).bearer_auth(&token).send().await;
                    let json: serde_json::Value = match answer {
                        Ok(answer) if answer.status() == 200 => {
                            let bytes = answer.bytes().await.unwrap_or_default();
                            serde_json::from_slice(&bytes).unwrap_or_default()
                        }
                        Ok(answer) => {
                            measured
                                .lock()
                                .unwrap()
                                .errors
                                .push(format!("sync: {}", answer.status()));
                            continue;
                        }
                        Err(error) => {
                            measured
                                .lock()
                                .unwrap()
                                .errors
                                .push(format!("sync: {error}"));
                            continue;
                        }
                    };
                    let received = now_ms();
                    if since.is_some() {
                        let events = json["rooms"]["join"][&room_id]["timeline"]["events"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default();
                        let mut load = measured.lock().unwrap();
                        for event in events {
                            if event["content"]["body"]
                                .as_str()
                                .is_some_and(|body| body.starts_with("load "))
                                && let Some(sent) = event["origin_server_ts"].as_u64()
                            {
                                load.deliveries.push(received.saturating_sub(sent));
                            }
                        }
                    }
                    since = json["next_batch"].as_str().map(str::to_string);
                }
            }));
        }
        let mut sequence = 0;
        while Instant::now() < deadline {
            sequence += 1;
            let started = Instant::now();
            let sent = client
                .put(format!(
                    "{base}/rooms/{room_id}/send/m.room.message/load{}-{sequence}",
                    std::process::id()
                ))
                .bearer_auth(sender)
                .header("Content-Type", "application/json")
                .body(
                    serde_json::json!({"msgtype": "m.text", "body": format!("load {sequence}")})
                        .to_string(),
                )
                .send()
                .await;
            let elapsed = started.elapsed().as_millis() as u64;
            match sent {
                Ok(answer) if answer.status() == 200 => {
                    measured.lock().unwrap().sends.push(elapsed)
                }
                Ok(answer) => measured
                    .lock()
                    .unwrap()
                    .errors
                    .push(format!("send: {}", answer.status())),
                Err(error) => measured
                    .lock()
                    .unwrap()
                    .errors
                    .push(format!("send: {error}")),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for task in tasks {
            let _ = task.await;
        }
        std::mem::take(&mut *measured.lock().unwrap())
    })
}

/// Three syncs on `server` (its main process on `main`), each answered
/// by client worker `worker` on `on` (its journal logs them), none by
/// the main process.
fn syncs_are_answered_by(
    outside: &Outside,
    server: &str,
    token: &str,
    main: &BootedHost,
    on: &BootedHost,
    worker: &str,
) {
    for _ in 0..3 {
        let synced = outside.call(
            "GET",
            &format!("https://matrix.{server}/_matrix/client/v3/sync?timeout=0"),
            Some(token),
            None,
        );
        assert_eq!(synced.status, 200, "{}", synced.said);
    }
    let unit = format!("matrix-synapse-worker@{worker}");
    assert!(
        logged(on, &unit, "/_matrix/client/v3/sync") >= 3,
        "{}",
        on.run(&format!("journalctl -u {unit} -n 40 --no-pager -o cat"))
    );
    assert_eq!(
        logged(main, "matrix-synapse", "/_matrix/client/v3/sync"),
        0,
        "the main process answered a sync"
    );
}

/// A public room `#alias` on `server` (with its admin's token) that the
/// outside server joins, and a message `body` sent there that reaches
/// the outside server: the room's id.
fn message_reaches_outside(
    outside: &Outside,
    (server, token): (&str, &str),
    outside_token: &str,
    alias: &str,
    body: &str,
) -> String {
    let room = outside.call(
        "POST",
        &format!("https://matrix.{server}/_matrix/client/v3/createRoom"),
        Some(token),
        Some(&serde_json::json!({"preset": "public_chat", "room_alias_name": alias}).to_string()),
    );
    let room_id = room.json["room_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", room.said))
        .to_string();
    let join = format!("https://matrix.{OUTSIDE}/_matrix/client/v3/join/%23{alias}%3A{server}");
    outside.until(
        "the outside server could not join",
        ("POST", &join, Some(outside_token), Some("{}")),
        |joined| joined.json["room_id"] == room_id.as_str(),
    );
    let sent = outside.call(
        "PUT",
        &format!(
            "https://matrix.{server}/_matrix/client/v3/rooms/{room_id}/send/m.room.message/m1"
        ),
        Some(token),
        Some(&serde_json::json!({"msgtype": "m.text", "body": body}).to_string()),
    );
    assert_eq!(sent.status, 200, "{}", sent.said);
    let messages = format!(
        "https://matrix.{OUTSIDE}/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=10"
    );
    outside.until(
        "the message never reached the outside server",
        ("GET", &messages, Some(outside_token), None),
        |messages| messages.said.contains(body),
    );
    room_id
}

/// An upload to `server` and its download, both through media worker
/// `media1` on `on` (its journal names the media).
fn upload_goes_through_the_media_worker(
    outside: &Outside,
    server: &str,
    token: &str,
    on: &BootedHost,
) {
    let uploaded = outside.call(
        "POST",
        &format!("https://matrix.{server}/_matrix/media/v3/upload?filename=note.json"),
        Some(token),
        Some(r#"{"kept": "by the media worker"}"#),
    );
    let uri = uploaded.json["content_uri"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", uploaded.said))
        .to_string();
    let media_id = uri.rsplit('/').next().unwrap();
    let downloaded = outside.call(
        "GET",
        &format!("https://matrix.{server}/_matrix/client/v1/media/download/{server}/{media_id}"),
        Some(token),
        None,
    );
    assert_eq!(
        downloaded.json["kept"], "by the media worker",
        "{}",
        downloaded.said
    );
    assert!(
        logged(on, "matrix-synapse-worker@media1", media_id) >= 1,
        "{}",
        on.run("journalctl -u matrix-synapse-worker@media1 -n 40 --no-pager -o cat")
    );
}

/// The README's YAML block that starts with `first_line`.
fn readme_block(first_line: &str) -> String {
    let readme = std::fs::read_to_string(crate::support::repo().join("README.md")).unwrap();
    let start = readme
        .find(&format!("```yaml\n{first_line}\n"))
        .unwrap_or_else(|| panic!("README.md has no YAML block starting {first_line}"));
    let block = &readme[start + "```yaml\n".len()..];
    block[..block.find("```").unwrap()].to_string()
}

/// Whether a TCP connection from `from` (a booted host) to `address`
/// `port` is accepted within three seconds.
fn answers_from(from: &BootedHost, address: &str, port: u16) -> bool {
    from.run(&format!(
        "timeout 3 bash -c 'exec 3<>/dev/tcp/{address}/{port}' 2> /dev/null && echo open || echo closed"
    )) == "open"
}

/// One homeserver over three booted machines: PostgreSQL alone on one,
/// the main process with Redis and nginx on the homeserver's own, client,
/// federation-sender and media workers on the third; an outside
/// homeserver on a fourth. One apply brings it all up in order (the
/// database's machine, the homeserver's, then the workers'); a client's
/// syncs are answered on the workers' machine, a message reaches the
/// outside server through the sender there, media goes through the
/// media worker, Synapse's database connections are TLS, `check` passes
/// and the next apply changes nothing. Redis, the replication listener,
/// the workers' listeners and PostgreSQL answer the homeserver's machines
/// and nobody else.
#[test]
fn a_homeserver_spread_over_three_machines_federates_and_keeps_what_crosses_them_private() {
    let main = BootedHost::up("mcspmain");
    let database = BootedHost::up("mcspdb");
    let workers = BootedHost::up("mcspwork");
    let outside_host = BootedHost::up("mcspout");
    let names = TestNet::names_of(&[(BIG, &main), (OUTSIDE, &outside_host)]);
    let net = TestNet::up(
        &[&main, &database, &workers, &outside_host],
        &[
            (&main, &database),
            (&main, &workers),
            (&workers, &database),
            (&main, &outside_host),
            (&workers, &outside_host),
            (&database, &outside_host),
        ],
        names,
    );
    for host in [&main, &workers, &outside_host] {
        host.copy_wheels(&["synapse"]);
    }

    let sandbox = Sandbox::empty();
    sandbox.write(
        "inventory/hosts.yaml",
        &format!(
            "hosts:\n\
             \x20 {BIG}:\n    ssh: root@{main}:22\n    private_address: {main}\n\
             \x20 {OUTSIDE}:\n    ssh: root@{outside}:22\n\
             machines:\n\
             \x20 db.{BIG}:\n    ssh: root@{database}:22\n    private_address: {database}\n\
             \x20 workers.{BIG}:\n    ssh: root@{workers}:22\n    private_address: {workers}\n",
            main = main.address,
            outside = outside_host.address,
            database = database.address,
            workers = workers.address,
        ),
    );
    let reach = |host: &BootedHost| {
        let (key, known_hosts) = host.ssh_files();
        format!(
            "ssh_options:\n  identity_file: {}\n  known_hosts_file: {}\n",
            key.display(),
            known_hosts.display()
        )
    };
    // The README's vars, as written.
    sandbox.write(
        &format!("inventory/host_vars/{BIG}.yaml"),
        &format!(
            "{}{}",
            reach(&main),
            readme_block("# host_vars/big.example.yaml")
        ),
    );
    sandbox.write(
        &format!("inventory/host_vars/{OUTSIDE}.yaml"),
        &reach(&outside_host),
    );
    sandbox.write(
        &format!("inventory/machine_vars/db.{BIG}.yaml"),
        &reach(&database),
    );
    sandbox.write(
        &format!("inventory/machine_vars/workers.{BIG}.yaml"),
        &reach(&workers),
    );
    sandbox.write(
        "inventory/group_vars/all.yaml",
        &format!(
            "host_commands: true\nsynapse_install: venv\nsynapse_wheels: /srv/wheels\n\
             webserver: nginx\nregistration: token\nserve_base_domain: true\n{}",
            net.homeserver_vars("")
        ),
    );
    sandbox.write(
        "inventory/secrets/master.key",
        "booted spread workers test master key, not a secret anywhere\n",
    );
    sandbox.chmod("inventory/secrets/master.key", 0o600);

    // The plan says what restarts where.
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    println!("{}", plan.stdout);

    let apply = sandbox.run(&["apply", "--yes", "inventory"]);
    let journals = || {
        [&main, &workers, &database]
            .iter()
            .map(|host| host.run("journalctl -n 60 --no-pager"))
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    assert_eq!(apply.code, 0, "{}\n{}", apply.transcript(), journals());
    for (host, unit) in [
        (&main, "matrix-synapse"),
        (&main, "matrix-synapse-redis"),
        (&database, "postgresql"),
        (&workers, "matrix-synapse-worker@client1"),
        (&workers, "matrix-synapse-worker@sender1"),
        (&workers, "matrix-synapse-worker@media1"),
    ] {
        assert_eq!(
            host.run(&format!("systemctl is-active {unit} || true")),
            "active",
            "{unit} on {}: {}",
            host.name,
            host.run(&format!("journalctl -u {unit} -n 30 --no-pager"))
        );
    }
    // Nothing of Synapse runs on the database's machine, no main
    // process on the workers'.
    assert_eq!(
        database.run("test -e /opt/venvs/matrix-synapse && echo yes || echo no"),
        "no"
    );
    assert_ne!(
        workers.run("systemctl is-active matrix-synapse || true"),
        "active"
    );

    let outside = net.outside();
    let on_big = outside.admin(&sandbox, BIG);
    let on_outside = outside.admin(&sandbox, OUTSIDE);

    // Syncs are answered on the workers' machine, never by the main process.
    syncs_are_answered_by(&outside, BIG, &on_big, &main, &workers, "client1");

    // A room the outside server joins, and a message that reaches it
    // through the sender on the workers' machine.
    message_reaches_outside(
        &outside,
        (BIG, &on_big),
        &on_outside,
        "hall",
        "sent across machines",
    );
    assert!(
        logged(&workers, "matrix-synapse-worker@sender1", OUTSIDE) > 0,
        "{}",
        workers.run("journalctl -u matrix-synapse-worker@sender1 -n 40 --no-pager -o cat")
    );

    // An upload and its download, through the media worker, kept on its
    // machine.
    upload_goes_through_the_media_worker(&outside, BIG, &on_big, &workers);
    // Synapse keeps it under local_content, its id split into directories.
    let stored = "find /var/lib/matrix-synapse/media/local_content -type f 2> /dev/null | wc -l";
    assert_eq!(workers.run(stored), "1");
    assert_eq!(main.run(stored), "0");

    // Every connection Synapse's processes hold to the database is TLS.
    let connections = database.run(
        "runuser -u postgres -- psql -Atc \"select count(*), count(*) filter (where ssl) from pg_stat_ssl join pg_stat_activity using (pid) where datname = 'synapse'\"",
    );
    let (all, tls) = connections.split_once('|').unwrap();
    assert!(
        all.parse::<u32>().unwrap() > 0 && all == tls,
        "{connections}"
    );

    // What crosses machines answers the homeserver's machines alone.
    let private = [
        (&main, 6380, "Redis"),
        (&main, 9093, "replication"),
        (&workers, 18100, "the client worker's listener"),
        (&database, 5432, "PostgreSQL"),
    ];
    for (host, port, what) in private {
        assert!(
            !answers_from(&outside_host, &host.address, port),
            "{what} on {} answers the outside server",
            host.name
        );
        let from_here = std::net::TcpStream::connect_timeout(
            &format!("{}:{port}", host.address).parse().unwrap(),
            Duration::from_secs(3),
        );
        assert!(
            from_here.is_err(),
            "{what} on {} answers the test machine",
            host.name
        );
    }
    assert!(
        answers_from(&workers, &main.address, 6380),
        "Redis refuses the workers' machine"
    );
    assert!(
        answers_from(&main, &database.address, 5432),
        "PostgreSQL refuses the main process's machine"
    );
    assert!(
        answers_from(&main, &workers.address, 18100),
        "the client worker refuses nginx's machine"
    );

    let checked = net.check(&sandbox, BIG);
    assert_eq!(checked.code, 0, "{}", checked.transcript());
    // A worker that stops answering is named by `check`, from the
    // homeserver's machine, with the machine it runs on.
    workers.run("systemctl stop matrix-synapse-worker@client1");
    let checked = net.check(&sandbox, BIG);
    assert_ne!(checked.code, 0, "{}", checked.transcript());
    assert!(
        checked
            .stdout
            .contains(&format!("worker client1 on workers.{BIG} does not answer")),
        "{}",
        checked.transcript()
    );
    workers.run("systemctl start matrix-synapse-worker@client1");
    assert_next_apply_changes_nothing_on(
        &sandbox,
        &[
            (&main, &["matrix-synapse", "matrix-synapse-redis"]),
            (&database, &["postgresql"]),
            (
                &workers,
                &[
                    "matrix-synapse-worker@client1",
                    "matrix-synapse-worker@sender1",
                    "matrix-synapse-worker@media1",
                ],
            ),
        ],
    );
}
