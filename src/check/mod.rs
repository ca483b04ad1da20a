//! `matrixctl check`: what the outside world sees of a server name, in the
//! order of the spec's server discovery (name, `.well-known/matrix/server`,
//! SRV, addresses), then every address (TLS with the right SNI, the
//! federation version, the signing keys), then client discovery (client
//! file with CORS, `base_url`, `/versions`, identity server, support file).
//! For inventory hosts, [`expect`] adds what matrixctl rendered for them.
//!
//! Each check is a [`Finding`]: ok, warning or error, a one-line reason
//! and a hint. The report also carries the federation tester's fields
//! ([`tester`]), so tooling built on it can switch.

pub(crate) mod expect;
pub(crate) mod keys;
pub(crate) mod name;
pub(crate) mod net;
pub(crate) mod output;
pub(crate) mod tester;

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use name::{Host, ServerName};
use net::{Answer, CertificateProblem, Failure, Lookup, Net, Seen};

/// The cap on a well-known body that homeservers apply (50 KiB).
const WELL_KNOWN_CAP: usize = 50 * 1024;
/// Other JSON answers: a key document or a versions list is far smaller.
const ANSWER_CAP: usize = 1024 * 1024;
/// A certificate closer to its end than this is a warning: renewal (30
/// days ahead for the usual ACME clients) has been failing for two weeks.
const EXPIRY_WARNING_DAYS: i64 = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Ok,
    Warning,
    Error,
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Finding {
    /// Stable name of the check (`well_known_server`, `tls`, …); see docs/check.md.
    pub check: &'static str,
    pub status: Status,
    /// What was checked: a URL, an address, a DNS name.
    pub subject: String,
    pub message: String,
    pub hint: Option<String>,
}

/// Everything `check` found for one server name.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub server_name: String,
    /// The inventory host it was checked for, if any.
    pub host: Option<String>,
    pub ok: bool,
    pub checks: Vec<Finding>,
    pub federation_tester: tester::TesterReport,
}

impl Report {
    pub(crate) fn count(&self, status: Status) -> usize {
        self.checks
            .iter()
            .filter(|finding| finding.status == status)
            .count()
    }
}

/// Collects findings in order.
#[derive(Default)]
pub(crate) struct Findings(pub Vec<Finding>);

impl Findings {
    pub(crate) fn add(
        &mut self,
        check: &'static str,
        status: Status,
        subject: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.0.push(Finding {
            check,
            status,
            subject: subject.into(),
            message: message.into(),
            hint,
        });
    }
    pub(crate) fn ok(
        &mut self,
        check: &'static str,
        subject: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.add(check, Status::Ok, subject, message, None);
    }
    pub(crate) fn warn(
        &mut self,
        check: &'static str,
        subject: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.add(check, Status::Warning, subject, message, Some(hint.into()));
    }
    pub(crate) fn error(
        &mut self,
        check: &'static str,
        subject: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.add(check, Status::Error, subject, message, Some(hint.into()));
    }

    /// The certificate `subject` served was refused: an error, with what
    /// it names and how to get one that fits.
    pub(crate) fn certificate_refused(
        &mut self,
        check: &'static str,
        subject: impl Into<String>,
        seen: &Seen,
    ) {
        let (message, hint) = certificate_problem(seen);
        self.error(check, subject, message, hint);
    }
}

/// Where federation traffic for a server name goes, as discovery found it.
#[derive(Debug, Clone)]
struct Delegation {
    /// The name certificates must be valid for, sent as SNI and in the URL.
    tls_name: String,
    /// Hosts to resolve and the port each is reached on.
    endpoints: Vec<(String, u16)>,
    /// The SRV record the endpoints come from, when they do: a wrong port
    /// is then that record's to fix.
    srv_record: Option<String>,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// Checks `server_name` as the world sees it.
pub(crate) async fn check_domain(net: &Net, server_name: &str) -> Report {
    let mut findings = Findings::default();
    let mut tester = tester::TesterReport::default();
    let parsed = match name::parse(server_name) {
        Ok(parsed) => {
            findings.ok(
                "server_name",
                server_name,
                format!("`{server_name}` is a valid server name"),
            );
            parsed
        }
        Err(why) => {
            findings.error(
                "server_name",
                server_name,
                format!("`{server_name}` is not a server name: {why}"),
                "the server name is the part after the colon in @alice:example.com",
            );
            tester.error = Some(tester::Message::new(format!("invalid server name: {why}")));
            return finish(server_name, findings, tester);
        }
    };
    let delegation = discover(net, &parsed, &mut findings, &mut tester).await;
    if let Some(delegation) = delegation {
        check_addresses(net, server_name, &delegation, &mut findings, &mut tester).await;
    }
    if let Host::Dns(hostname) = &parsed.host {
        check_client_discovery(net, hostname, &mut findings).await;
    }
    finish(server_name, findings, tester)
}

/// Checks an inventory host: its server name, then its probes.
pub(crate) async fn check_host(net: &Net, expected: &expect::HostExpectations) -> Report {
    let mut report = check_domain(net, &expected.server_name).await;
    let mut findings = Findings(std::mem::take(&mut report.checks));
    expect::check(net, expected, &mut findings).await;
    report.ok = findings
        .0
        .iter()
        .all(|finding| finding.status != Status::Error);
    report.checks = findings.0;
    report.host = Some(expected.host.clone());
    report
}

/// What the roles' looks on the host found (or why the host could not
/// be asked), as findings of the report: a look that is not ok is a
/// warning or an error, as it said.
pub(crate) fn add_health(
    report: &mut Report,
    looked: Result<Vec<crate::health::HealthSeen>, String>,
) {
    use crate::health::HealthStatus;
    match looked {
        Ok(seen) => {
            for seen in seen {
                report.checks.push(Finding {
                    check: "on_host",
                    status: match seen.status {
                        HealthStatus::Ok => Status::Ok,
                        HealthStatus::Warning => Status::Warning,
                        HealthStatus::Error => Status::Error,
                    },
                    subject: seen.name,
                    message: seen.message,
                    hint: seen.hint,
                });
            }
        }
        Err(reason) => report.checks.push(Finding {
            check: "on_host",
            status: Status::Error,
            subject: report.host.clone().unwrap_or_default(),
            message: format!("could not look on the host: {reason}"),
            hint: Some(
                "its roles look at it over SSH (the newest backup's age): can `matrixctl plan` reach it?"
                    .to_string(),
            ),
        }),
    }
    report.ok = report
        .checks
        .iter()
        .all(|finding| finding.status != Status::Error);
}

fn finish(server_name: &str, findings: Findings, mut tester: tester::TesterReport) -> Report {
    tester.federation_ok = tester.error.is_none()
        && tester.version.error.is_none()
        && !tester.dns_result.addrs.is_empty()
        && tester.connection_errors.is_empty()
        && tester
            .connection_reports
            .values()
            .all(|report| report.checks.all_checks_ok);
    let ok = findings
        .0
        .iter()
        .all(|finding| finding.status != Status::Error);
    Report {
        server_name: server_name.to_string(),
        host: None,
        ok,
        checks: findings.0,
        federation_tester: tester,
    }
}

/// Server discovery, steps 1 to 6 of the spec.
async fn discover(
    net: &Net,
    parsed: &ServerName,
    findings: &mut Findings,
    tester: &mut tester::TesterReport,
) -> Option<Delegation> {
    let hostname = match &parsed.host {
        Host::Ip(ip) => {
            let port = parsed.port.unwrap_or(8448);
            tester.dns_result.srv_skipped = true;
            findings.ok(
                "delegation",
                parsed.to_string(),
                format!("an IP literal: federation goes to {}:{port}", parsed.host),
            );
            return Some(Delegation {
                tls_name: ip.to_string(),
                endpoints: vec![(ip.to_string(), port)],
                srv_record: None,
            });
        }
        Host::Dns(hostname) => hostname.clone(),
    };
    if let Some(port) = parsed.port {
        tester.dns_result.srv_skipped = true;
        findings.ok(
            "delegation",
            parsed.to_string(),
            format!("an explicit port: federation goes to {hostname}:{port}, no well-known or SRV lookup"),
        );
        return Some(Delegation {
            tls_name: hostname.clone(),
            endpoints: vec![(hostname, port)],
            srv_record: None,
        });
    }
    let url = format!("https://{hostname}/.well-known/matrix/server");
    let delegated = match well_known_server(net, &url, findings).await {
        Ok(delegated) => {
            tester.well_known_result.m_server = delegated.to_string();
            Some(delegated)
        }
        Err(result) => {
            tester.well_known_result.result = result;
            None
        }
    };
    let srv_host = match &delegated {
        Some(ServerName {
            host: Host::Ip(ip),
            port,
        }) => {
            tester.dns_result.srv_skipped = true;
            return Some(Delegation {
                tls_name: ip.to_string(),
                endpoints: vec![(ip.to_string(), port.unwrap_or(8448))],
                srv_record: None,
            });
        }
        Some(ServerName {
            host: Host::Dns(delegated),
            port: Some(port),
        }) => {
            tester.dns_result.srv_skipped = true;
            return Some(Delegation {
                tls_name: delegated.clone(),
                endpoints: vec![(delegated.clone(), *port)],
                srv_record: None,
            });
        }
        Some(ServerName {
            host: Host::Dns(delegated),
            port: None,
        }) => delegated.clone(),
        None => hostname.clone(),
    };
    // SRV: `_matrix-fed._tcp` (v1.8), then the deprecated `_matrix._tcp`.
    let mut endpoints = Vec::new();
    let mut srv_record = None;
    for (prefix, deprecated) in [("_matrix-fed._tcp", false), ("_matrix._tcp", true)] {
        let srv_name = format!("{prefix}.{srv_host}");
        match net.srv(&srv_name).await {
            Lookup::Found(records) => {
                for record in &records {
                    if let Some(alias) = net.cname(&record.target).await {
                        findings.error(
                            "srv",
                            srv_name.clone(),
                            format!(
                                "the SRV target {} is a CNAME (of {alias}); SRV targets must have A/AAAA records of their own (RFC 2782)",
                                record.target
                            ),
                            format!(
                                "point the SRV record at {alias} directly, or give {} A/AAAA records",
                                record.target
                            ),
                        );
                        tester.dns_result.srv_cname = alias.clone();
                    }
                }
                let targets: Vec<String> = records
                    .iter()
                    .map(|record| format!("{}:{}", record.target, record.port))
                    .collect();
                if deprecated {
                    findings.warn(
                        "srv",
                        srv_name.clone(),
                        format!("the deprecated `_matrix._tcp` record points at {}", targets.join(", ")),
                        format!("add the same record as `_matrix-fed._tcp.{srv_host}`; servers since spec v1.8 look that up first"),
                    );
                } else {
                    findings.ok(
                        "srv",
                        srv_name.clone(),
                        format!("points at {}", targets.join(", ")),
                    );
                }
                endpoints = records
                    .iter()
                    .map(|record| (record.target.clone(), record.port))
                    .collect();
                tester.dns_result.srv_records = records;
                srv_record = Some(srv_name);
                break;
            }
            Lookup::None => {}
            Lookup::Failed(why) => {
                findings.warn(
                    "srv",
                    srv_name.clone(),
                    format!("the SRV lookup failed: {why}"),
                    "a resolver that fails on SRV queries makes servers give up on this name; check the domain's DNS servers",
                );
                tester.dns_result.srv_error = Some(tester::Message::new(why));
            }
        }
    }
    if endpoints.is_empty() {
        findings.ok(
            "delegation",
            srv_host.clone(),
            match &delegated {
                Some(_) => format!("no SRV record: federation goes to {srv_host}:8448"),
                None => format!(
                    "no usable server file and no SRV record: federation goes to {srv_host}:8448"
                ),
            },
        );
        endpoints.push((srv_host.clone(), 8448));
    }
    Some(Delegation {
        tls_name: srv_host,
        endpoints,
        srv_record,
    })
}

/// The byte-order mark some editors put before UTF-8 text, which JSON
/// parsers refuse.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Step 3: the server file; the delegated name, or what was wrong (the
/// tester's `result`).
async fn well_known_server(
    net: &Net,
    url: &str,
    findings: &mut Findings,
) -> Result<ServerName, String> {
    let check = "well_known_server";
    let (answer, seen) = net.get(url, WELL_KNOWN_CAP).await;
    expiry_warnings(&seen, url, findings);
    let answer = match answer {
        Ok(answer) => answer,
        Err(Failure::Certificate(seen)) => {
            findings.certificate_refused(check, url, &seen);
            return Err("certificate refused".into());
        }
        Err(failure) => {
            findings.warn(
                check,
                url,
                format!("no answer: {failure}; servers fall back to SRV and port 8448"),
                "if this name delegates with a server file, its website must answer on port 443",
            );
            return Err(failure.to_string());
        }
    };
    if answer.status == 404 {
        findings.ok(
            check,
            url,
            "none (404): servers look up SRV records, then port 8448",
        );
        return Err("404".into());
    }
    if answer.status != 200 {
        findings.error(
            check,
            url,
            format!("answered {} instead of 200 or 404", answer.status),
            "servers treat this as no delegation; serve the file with status 200, or 404 when there is none",
        );
        return Err(format!("status {}", answer.status));
    }
    if answer.truncated {
        findings.error(
            check,
            url,
            format!(
                "larger than {} KiB; servers read no further",
                WELL_KNOWN_CAP / 1024
            ),
            "the server file holds only `m.server`",
        );
        return Err("too large".into());
    }
    // Followed through a redirect to plain http, the file federates, but
    // anyone on the path can rewrite where it sends other servers.
    if answer.url.starts_with("http://") {
        findings.error(
            check,
            url,
            format!("reached through a redirect to plain http ({})", answer.url),
            "serve the server file over https at this URL without redirecting to http: anyone on the path could move the delegation",
        );
    }
    if answer.body.starts_with(UTF8_BOM) {
        findings.error(
            check,
            url,
            "the body starts with a byte-order mark (EF BB BF), which homeservers' JSON parsers refuse",
            "save the file as UTF-8 without a BOM",
        );
        return Err("invalid JSON".into());
    }
    let json: Value = match serde_json::from_slice(&answer.body) {
        Ok(json @ Value::Object(_)) => json,
        _ => {
            let body = String::from_utf8_lossy(&answer.body);
            let looks_like_html = body.trim_start().starts_with('<');
            findings.error(
                check,
                url,
                "not a JSON object",
                if looks_like_html {
                    "it looks like an HTML page: the website answers this path itself; serve the file at exactly /.well-known/matrix/server".to_string()
                } else {
                    "serve `{\"m.server\": \"matrix.example.com:443\"}`".to_string()
                },
            );
            return Err("invalid JSON".into());
        }
    };
    let Some(value) = json.get("m.server") else {
        let hint = if json.get("m.homeserver").is_some() {
            "the base domain serves the client file where the server file belongs: /.well-known/matrix/server holds `m.server`, /client holds `m.homeserver`"
        } else {
            "the server file holds `{\"m.server\": \"host:port\"}`"
        };
        findings.error(check, url, "no `m.server` in it", hint);
        return Err("no m.server".into());
    };
    let Some(text) = value.as_str().filter(|text| !text.is_empty()) else {
        findings.error(
            check,
            url,
            "`m.server` is not a string",
            "write `\"m.server\": \"matrix.example.com:443\"`",
        );
        return Err("m.server not a string".into());
    };
    match name::parse(text) {
        Ok(parsed) => {
            findings.ok(check, url, format!("delegates to `{text}`"));
            Ok(parsed)
        }
        Err(why) => {
            let hint = match text.split_once("://") {
                Some((_, rest)) => format!(
                    "write `{}` without the scheme: `m.server` is host[:port]",
                    rest.trim_end_matches('/')
                ),
                None => "`m.server` is host[:port], like `matrix.example.com:443`".into(),
            };
            findings.error(
                check,
                url,
                format!("`m.server` is `{text}`, not a server name: {why}"),
                hint,
            );
            Err(format!("invalid m.server: {why}"))
        }
    }
}

/// Every address of the delegation: TLS, version, keys, concurrently.
async fn check_addresses(
    net: &Net,
    server_name: &str,
    delegation: &Delegation,
    findings: &mut Findings,
    tester: &mut tester::TesterReport,
) {
    let mut addresses: Vec<SocketAddr> = Vec::new();
    for (host, port) in &delegation.endpoints {
        let entry = tester.dns_result.hosts.entry(host.clone()).or_default();
        if let Ok(ip) = host.parse::<IpAddr>() {
            addresses.push(SocketAddr::new(ip, *port));
            entry.addrs.push(ip.to_string());
            continue;
        }
        if let Some(alias) = net.cname(host).await {
            entry.cname = alias;
        }
        match net.addresses(host, *port).await {
            Lookup::Found(ips) => {
                let listed: Vec<String> = ips.iter().map(ToString::to_string).collect();
                findings.ok(
                    "addresses",
                    format!("{host}:{port}"),
                    format!("resolves to {}", listed.join(", ")),
                );
                entry.addrs.extend(listed);
                addresses.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, *port)));
            }
            Lookup::None => {
                findings.error(
                    "addresses",
                    format!("{host}:{port}"),
                    format!("{host} has no A or AAAA record"),
                    format!("create an A (and AAAA) record for {host} pointing at the homeserver"),
                );
                entry.error = Some(tester::Message::new("no A or AAAA record"));
            }
            Lookup::Failed(why) => {
                findings.error(
                    "addresses",
                    format!("{host}:{port}"),
                    format!("looking up {host} failed: {why}"),
                    "check the domain's DNS servers",
                );
                entry.error = Some(tester::Message::new(why));
            }
        }
    }
    addresses.sort();
    addresses.dedup();
    tester.dns_result.addrs = addresses.iter().map(ToString::to_string).collect();
    let probes = addresses
        .iter()
        .map(|address| probe_address(net, server_name, &delegation.tls_name, *address));
    let probed = futures_join_all(probes).await;
    let mut version_seen = false;
    for (address, probe) in addresses.iter().zip(probed) {
        findings.0.extend(probe.findings);
        match probe.report {
            Ok(report) => {
                tester
                    .connection_reports
                    .insert(address.to_string(), report);
            }
            Err(message) => {
                tester
                    .connection_errors
                    .insert(address.to_string(), tester::Message::new(message));
            }
        }
        if let Some(version) = probe.version
            && !version_seen
        {
            tester.version = version;
            version_seen = true;
        }
    }
    if addresses.is_empty() {
        tester.version.error = Some(tester::Message::new("no address to connect to"));
    }
    // A port that answers nothing while 8448 does: `m.server` names the wrong port.
    let unreachable = !addresses.is_empty() && tester.connection_reports.is_empty();
    if unreachable
        && let Some((host, port)) = delegation
            .endpoints
            .first()
            .filter(|(_, port)| *port != 8448)
        && let Lookup::Found(ips) = net.addresses(host, 8448).await
    {
        let url = format!(
            "https://{}:8448/_matrix/federation/v1/version",
            delegation.tls_name
        );
        let (answer, _) = net
            .get_at(SocketAddr::new(ips[0], 8448), &url, ANSWER_CAP)
            .await;
        if answer.is_ok_and(|answer| answer.status == 200) {
            // Where the wrong port comes from is what to fix: the SRV
            // record's port, or `m.server` (changing `m.server` to dodge a
            // bad SRV record would change the certificate's name too).
            let hint = match &delegation.srv_record {
                Some(record) => format!(
                    "the SRV record {record} names port {port}: fix its port to 8448 (`{record}. 3600 IN SRV 10 0 8448 {host}.`), or serve federation on {port}"
                ),
                None => format!(
                    "the delegation names the wrong port: make it `{host}:8448` (or serve federation on {port})"
                ),
            };
            findings.error(
                "federation_port",
                format!("{host}:{port}"),
                format!("nothing answers federation on port {port}, but {host}:8448 does"),
                hint,
            );
        }
    }
}

/// Runs futures concurrently, results in their order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    futures_util::future::join_all(futures).await
}

struct Probe {
    findings: Vec<Finding>,
    report: Result<tester::ConnectionReport, String>,
    version: Option<tester::Version>,
}

/// One address: TLS for `tls_name`, the version, the keys.
async fn probe_address(net: &Net, server_name: &str, tls_name: &str, address: SocketAddr) -> Probe {
    let mut findings = Findings::default();
    let subject = address.to_string();
    let authority = if tls_name.contains(':') {
        format!("[{tls_name}]:{}", address.port())
    } else {
        format!("{tls_name}:{}", address.port())
    };
    let version_url = format!("https://{authority}/_matrix/federation/v1/version");
    let (version_answer, seen) = net.get_at(address, &version_url, ANSWER_CAP).await;
    let mut valid_certificates = false;
    let mut certificates = Vec::new();
    if let Some(seen) = seen.first() {
        {
            certificates = seen.chain.clone();
            match &seen.verdict {
                Ok(()) => {
                    valid_certificates = true;
                    findings.ok(
                        "tls",
                        subject.clone(),
                        format!(
                            "certificate valid for {tls_name} (issued by {})",
                            seen.chain
                                .first()
                                .map(|c| c.issuer_common_name.as_str())
                                .unwrap_or("?")
                        ),
                    );
                    expiry_warnings(std::slice::from_ref(seen), &subject, &mut findings);
                }
                Err(_) => {
                    findings.certificate_refused("tls", subject.clone(), seen);
                }
            }
        }
    }
    let answer = match version_answer {
        Ok(answer) => answer,
        Err(failure) => {
            let hint = match failure {
                Failure::Refused => format!(
                    "nothing listens on port {}: is the homeserver (or its proxy) up there?",
                    address.port()
                ),
                Failure::Timeout => format!("is port {} open in the firewall?", address.port()),
                _ => format!(
                    "is {address} the homeserver, speaking TLS on port {}?",
                    address.port()
                ),
            };
            findings.error(
                "federation_version",
                subject.clone(),
                format!("no TLS answer: {failure}"),
                hint,
            );
            return Probe {
                findings: findings.0,
                report: Err(failure.to_string()),
                version: Some(tester::Version {
                    error: Some(tester::Message::new(failure.to_string())),
                    ..Default::default()
                }),
            };
        }
    };
    let version_json: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    let version = if answer.status == 200 && version_json["server"].is_object() {
        let name = version_json["server"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let number = version_json["server"]["version"]
            .as_str()
            .unwrap_or("")
            .to_string();
        findings.ok(
            "federation_version",
            version_url.clone(),
            format!("{name} {number} answers federation"),
        );
        tester::Version {
            name,
            version: number,
            error: None,
        }
    } else {
        findings.error(
            "federation_version",
            version_url.clone(),
            format!("answered {} without a server version", answer.status),
            "the reverse proxy must pass /_matrix/federation to the homeserver's federation listener",
        );
        tester::Version {
            error: Some(tester::Message::new(format!("status {}", answer.status))),
            ..Default::default()
        }
    };
    let keys_url = format!("https://{authority}/_matrix/key/v2/server");
    let (keys_answer, _) = net.get_at(address, &keys_url, ANSWER_CAP).await;
    let keys_answer: Answer = match keys_answer {
        Ok(answer) => answer,
        Err(failure) => {
            findings.error(
                "server_keys",
                keys_url.clone(),
                format!("no answer: {failure}"),
                "the reverse proxy must pass /_matrix/key to the homeserver",
            );
            return Probe {
                findings: findings.0,
                report: Err(failure.to_string()),
                version: Some(version),
            };
        }
    };
    let document: Value = match serde_json::from_slice(&keys_answer.body) {
        Ok(document @ Value::Object(_)) if keys_answer.status == 200 => document,
        _ => {
            findings.error(
                "server_keys",
                keys_url.clone(),
                format!("answered {} without a key document", keys_answer.status),
                "the reverse proxy must pass /_matrix/key to the homeserver",
            );
            return Probe {
                findings: findings.0,
                report: Err(format!("key document: status {}", keys_answer.status)),
                version: Some(version),
            };
        }
    };
    let checks = keys::check(&document, server_name, now_ms());
    key_findings(&checks, server_name, &keys_url, &mut findings);
    let verify_keys = document["verify_keys"]
        .as_object()
        .map(|keys| {
            keys.iter()
                .filter_map(|(id, key)| Some((id.clone(), key["key"].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let report = tester::ConnectionReport {
        certificates,
        checks: tester::Checks {
            all_checks_ok: checks.all_ok() && valid_certificates,
            keys: checks,
            valid_certificates,
        },
        errors: Vec::new(),
        ed25519_verify_keys: verify_keys,
        info: Default::default(),
        keys: document,
    };
    Probe {
        findings: findings.0,
        report: Ok(report),
        version: Some(version),
    }
}

fn key_findings(checks: &keys::KeyChecks, server_name: &str, url: &str, findings: &mut Findings) {
    let check = "server_keys";
    if !checks.matching_server_name {
        findings.error(
            check,
            url,
            format!("the key document is for `{}`, not `{server_name}`", checks.claimed_server_name),
            format!("this address serves another homeserver: the delegation of {server_name} points at the wrong host, or its homeserver's server_name is `{}`", checks.claimed_server_name),
        );
    }
    if !checks.future_valid_until_ts {
        findings.error(
            check,
            url,
            "`valid_until_ts` is in the past: other servers will not accept these keys",
            "the homeserver's clock may be wrong; restarting it publishes a fresh document",
        );
    }
    if !checks.has_ed25519_key {
        findings.error(
            check,
            url,
            "no ed25519 key in `verify_keys`",
            "the homeserver's signing key is missing or unreadable",
        );
    }
    for (key_id, key) in &checks.ed25519_checks {
        if !key.valid_ed25519 {
            findings.error(
                check,
                url,
                format!("{key_id} is not a 32-byte ed25519 key"),
                "the signing key file is damaged",
            );
        } else if !key.matching_signature {
            findings.error(
                check,
                url,
                format!("the signature by {key_id} does not verify"),
                "something between the homeserver and the world changes the key document (a proxy rewriting JSON?), or the signing key does not match",
            );
        }
    }
    for key_id in &checks.current_and_old {
        findings.error(
            check,
            url,
            format!("the current key {key_id} is also in `old_verify_keys`"),
            format!(
                "other servers then take {key_id} as expired and refuse what this server signs with it: remove it from the homeserver's list of old signing keys"
            ),
        );
    }
    if checks.all_ok() {
        let ids: Vec<&str> = checks.ed25519_checks.keys().map(String::as_str).collect();
        findings.ok(
            check,
            url,
            format!(
                "keys of {server_name} ({}) with valid self-signatures",
                ids.join(", ")
            ),
        );
    }
}

/// What `url` answered (a file of at most WELL_KNOWN_CAP bytes); a
/// failure is reported, a refused certificate as the error it is and
/// anything else by `no_answer`, and gives none.
pub(crate) async fn answer_or_report(
    net: &Net,
    url: &str,
    check: &'static str,
    findings: &mut Findings,
    no_answer: impl FnOnce(&mut Findings, Failure),
) -> Option<Answer> {
    match net.get(url, WELL_KNOWN_CAP).await.0 {
        Ok(answer) => Some(answer),
        Err(Failure::Certificate(seen)) => {
            findings.certificate_refused(check, url, &seen);
            None
        }
        Err(failure) => {
            no_answer(findings, failure);
            None
        }
    }
}

/// The message and hint for a refused certificate.
fn certificate_problem(seen: &Seen) -> (String, String) {
    let leaf = seen.chain.first();
    let names = leaf
        .map(|leaf| {
            if leaf.dns_names.is_empty() {
                leaf.subject_common_name.clone()
            } else {
                leaf.dns_names.join(", ")
            }
        })
        .unwrap_or_default();
    match &seen.verdict {
        Ok(()) => (format!("the certificate is valid for {}", seen.name), String::new()),
        Err(CertificateProblem::WrongName) => (
            format!("the certificate is for {names}, not {}", seen.name),
            format!(
                "the certificate served here must be valid for {} (the spec checks that name, not the host it reached); add it to the certificate",
                seen.name
            ),
        ),
        Err(CertificateProblem::Expired) => (
            format!(
                "the certificate for {names} expired{}",
                leaf.map(|leaf| format!(" on {}", crate::calendar::date(leaf.not_after))).unwrap_or_default()
            ),
            "renewal is failing: look at the ACME client's log (docs/check.md says where)".into(),
        ),
        Err(CertificateProblem::NotYetValid) => (
            format!("the certificate for {names} is not valid yet"),
            "the clock of this machine or of the CA is wrong".into(),
        ),
        // What the chain shows says which fix: a self-signed certificate
        // (matrixctl's placeholder among them), a chain sent without its
        // intermediate, or a CA nobody here trusts.
        Err(CertificateProblem::UnknownIssuer) => {
            let issuer = leaf.map(|leaf| leaf.issuer_common_name.as_str()).unwrap_or("?");
            let self_signed = leaf.is_some_and(|leaf| leaf.issuer_common_name == leaf.subject_common_name);
            let hint = if self_signed && issuer == "placeholder" {
                "this is matrixctl's placeholder: the ACME certificate is still to do (the last apply said why; is the name in DNS, with port 80 open?)".to_string()
            } else if self_signed {
                "it is self-signed: serve one from a public CA (Let's Encrypt); for a private CA pass --ca-file".to_string()
            } else if seen.chain.len() == 1 {
                format!(
                    "the server sends it alone, without the intermediate certificate of {issuer}: serve the full chain (fullchain.pem, not cert.pem)"
                )
            } else {
                "use a certificate from a public CA (Let's Encrypt); for a private CA pass --ca-file".to_string()
            };
            (
                format!("the certificate for {names} is not from a trusted CA (issued by {issuer})"),
                hint,
            )
        }
        Err(CertificateProblem::Other(why)) if why.contains("CaUsedAsEndEntity") => (
            format!("the certificate for {names} is a CA certificate (basicConstraints CA:TRUE), which TLS clients refuse as a server's"),
            "issue a server certificate (basicConstraints CA:FALSE, extendedKeyUsage serverAuth); `openssl req -x509` makes a CA one unless told otherwise".into(),
        ),
        Err(CertificateProblem::Other(why)) => (
            format!("the certificate for {names} is refused: {why}"),
            "serve a certificate from a public CA for this name".into(),
        ),
    }
}

/// A warning for any valid certificate that ends soon.
fn expiry_warnings(seen: &[Seen], subject: &str, findings: &mut Findings) {
    let now = (now_ms() / 1000) as i64;
    for seen in seen.iter().filter(|seen| seen.verdict.is_ok()) {
        if let Some(leaf) = seen.chain.first() {
            let days = (leaf.not_after - now) / 86_400;
            if days < EXPIRY_WARNING_DAYS {
                findings.warn(
                    "certificate_expiry",
                    subject,
                    format!("the certificate for {} expires on {} ({days} days left)", seen.name, crate::calendar::date(leaf.not_after)),
                    "renewal should have happened 30 days ahead: look at the ACME client's log and timer",
                );
            }
        }
    }
}

/// Client discovery: the client file, its base URL, identity server,
/// and the support file.
async fn check_client_discovery(net: &Net, hostname: &str, findings: &mut Findings) {
    let check = "well_known_client";
    let url = format!("https://{hostname}/.well-known/matrix/client");
    let Some(answer) = answer_or_report(net, &url, check, findings, |findings, failure| {
        findings.warn(check, url.clone(), format!("no answer: {failure}"), "clients find the homeserver from a user ID through this file; serve it on the base domain over HTTPS");
    })
    .await
    else {
        return;
    };
    if answer.status == 404 {
        findings.warn(check, url, "none (404): clients cannot find the homeserver from a user ID", "serve {\"m.homeserver\": {\"base_url\": \"https://matrix.example.com\"}} here (`matrixctl onboard` prints it)");
        return;
    }
    if answer.status != 200 {
        findings.error(
            check,
            url,
            format!("answered {} instead of 200", answer.status),
            "clients give up on any status but 200 and 404",
        );
        return;
    }
    let cors = answer.header("access-control-allow-origin");
    if cors != Some("*") {
        findings.error(
            "cors",
            url.clone(),
            match cors {
                Some(other) => format!("`Access-Control-Allow-Origin` is `{other}`, not `*`"),
                None => "no `Access-Control-Allow-Origin: *` header: web clients (Element Web) cannot read it".into(),
            },
            "add the header `Access-Control-Allow-Origin: *` to the answers under /.well-known/matrix/ (`matrixctl onboard` prints web server configuration that does)",
        );
    } else {
        findings.ok("cors", url.clone(), "`Access-Control-Allow-Origin: *`");
    }
    if answer.body.starts_with(UTF8_BOM) {
        findings.error(
            check,
            url,
            "the body starts with a byte-order mark (EF BB BF), which clients' JSON parsers refuse",
            "save the file as UTF-8 without a BOM",
        );
        return;
    }
    let json: Value = match serde_json::from_slice(&answer.body) {
        Ok(json @ Value::Object(_)) => json,
        _ => {
            findings.error(
                check,
                url,
                "not a JSON object",
                "serve {\"m.homeserver\": {\"base_url\": \"https://matrix.example.com\"}}",
            );
            return;
        }
    };
    let Some(base_url) = json["m.homeserver"]["base_url"].as_str() else {
        let hint = if json.get("m.server").is_some() {
            "the base domain serves the server file where the client file belongs: /.well-known/matrix/client holds `m.homeserver`, /server holds `m.server`"
        } else {
            "the client file needs {\"m.homeserver\": {\"base_url\": \"https://…\"}}"
        };
        findings.error(check, url, "no `m.homeserver.base_url` in it", hint);
        return;
    };
    let parsed = match reqwest::Url::parse(base_url) {
        Ok(parsed) if matches!(parsed.scheme(), "https" | "http") && parsed.host().is_some() => {
            parsed
        }
        _ => {
            findings.error(
                check,
                url,
                format!("`m.homeserver.base_url` is `{base_url}`, not a URL"),
                "write it as https://matrix.example.com",
            );
            return;
        }
    };
    if parsed.scheme() == "http" {
        // Element Web on https cannot call it (mixed content), and every
        // other client would send passwords and tokens in clear.
        findings.error(
            check,
            url.clone(),
            format!("`m.homeserver.base_url` is `{base_url}`: plain http"),
            format!(
                "write it as https://{}: web clients refuse plain http from an https page, and any other client sends passwords in clear",
                parsed.host_str().unwrap_or("matrix.example.com")
            ),
        );
    } else {
        findings.ok(check, url.clone(), format!("the homeserver is {base_url}"));
    }
    let versions_url = format!("{}/_matrix/client/versions", base_url.trim_end_matches('/'));
    let (versions, seen) = net.get(&versions_url, ANSWER_CAP).await;
    expiry_warnings(&seen, &versions_url, findings);
    match versions {
        Ok(answer) => {
            let json: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
            let shaped = json["versions"].as_array().is_some_and(|versions| {
                !versions.is_empty() && versions.iter().all(Value::is_string)
            });
            if answer.status == 200 && shaped {
                findings.ok(
                    "client_versions",
                    versions_url.clone(),
                    match json["versions"].as_array().map_or(0, Vec::len) {
                        1 => "answers with 1 spec version".to_string(),
                        count => format!("answers with {count} spec versions"),
                    },
                );
            } else {
                findings.error(
                    "client_versions",
                    versions_url.clone(),
                    format!("answered {} without a list of versions", answer.status),
                    "the reverse proxy must pass /_matrix/client to the homeserver's client listener",
                );
            }
        }
        Err(Failure::Certificate(seen)) => {
            findings.certificate_refused("client_versions", versions_url.clone(), &seen);
        }
        Err(failure) => {
            findings.error(
                "client_versions",
                versions_url.clone(),
                format!("no answer: {failure}"),
                format!(
                    "is {} reachable on port {}?",
                    parsed.host_str().unwrap_or(""),
                    parsed.port_or_known_default().unwrap_or(443)
                ),
            );
        }
    }
    if let Some(identity) = json.get("m.identity_server") {
        match identity["base_url"].as_str() {
            None => findings.error(
                check,
                url.clone(),
                "`m.identity_server` has no `base_url`",
                "clients refuse the whole file: give it a base_url or remove it",
            ),
            Some(identity_url) => {
                let probe = format!("{}/_matrix/identity/v2", identity_url.trim_end_matches('/'));
                let (answer, _) = net.get(&probe, ANSWER_CAP).await;
                match answer {
                    Ok(answer) if answer.status == 200 => findings.ok("identity_server", probe, "the identity server answers"),
                    Ok(answer) => findings.error("identity_server", probe, format!("answered {}", answer.status), "clients refuse the file when its identity server does not answer; fix or remove `m.identity_server`"),
                    Err(failure) => findings.error("identity_server", probe, format!("no answer: {failure}"), "clients refuse the file when its identity server does not answer; fix or remove `m.identity_server`"),
                }
            }
        }
    }
    check_support(net, hostname, findings).await;
}

/// `/.well-known/matrix/support` (MSC1929), when there is one.
async fn check_support(net: &Net, hostname: &str, findings: &mut Findings) {
    let url = format!("https://{hostname}/.well-known/matrix/support");
    let (answer, _) = net.get(&url, WELL_KNOWN_CAP).await;
    let Ok(answer) = answer else { return };
    if answer.status == 404 {
        return;
    }
    let check = "well_known_support";
    let json: Value = match serde_json::from_slice(&answer.body) {
        Ok(json @ Value::Object(_)) if answer.status == 200 => json,
        _ => {
            findings.warn(
                check,
                url,
                format!("answered {} without a JSON object", answer.status),
                "serve the support file as JSON, or 404 when there is none",
            );
            return;
        }
    };
    let contacts = json["contacts"].as_array();
    let page = json["support_page"].as_str();
    let mut problems = Vec::new();
    if contacts.is_none_or(Vec::is_empty) && page.is_none() {
        problems.push("it needs `contacts` or a `support_page`".to_string());
    }
    for (index, contact) in contacts.into_iter().flatten().enumerate() {
        if contact["matrix_id"].as_str().is_none() && contact["email_address"].as_str().is_none() {
            problems.push(format!(
                "contacts[{index}] has neither `matrix_id` nor `email_address`"
            ));
        }
        if let Some(id) = contact["matrix_id"].as_str()
            && (!id.starts_with('@') || !id.contains(':'))
        {
            problems.push(format!(
                "contacts[{index}].matrix_id `{id}` is not a user ID"
            ));
        }
        match contact["role"].as_str() {
            None => problems.push(format!("contacts[{index}] has no `role`")),
            Some("m.role.admin" | "m.role.security") => {}
            Some(role) if !role.starts_with("m.") && role.contains('.') => {}
            Some(role) => problems.push(format!(
                "contacts[{index}].role `{role}` is not a support role"
            )),
        }
    }
    if let Some(page) = page
        && reqwest::Url::parse(page).is_err()
    {
        problems.push(format!("`support_page` `{page}` is not a URL"));
    }
    if problems.is_empty() {
        findings.ok(check, url, "valid (MSC1929)");
    } else {
        findings.warn(
            check,
            url,
            problems.join("; "),
            "see MSC1929: contacts with a role and a matrix_id or email_address, or a support_page",
        );
    }
}
