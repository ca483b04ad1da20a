//! What an inventory host must look like from outside, beyond the
//! protocol: the roles' `probes` (a URL serving exactly what matrixctl
//! renders, registration as configured, the ports answering), checked
//! after the server name's own checks.

use std::net::SocketAddr;

use serde_json::Value;

use super::net::{Failure, Lookup, Net};
use super::{Findings, answer_or_report};
use crate::roles::OpenPort;
use crate::roles::Proto;

#[derive(Debug, Clone)]
pub(crate) enum Expectation {
    /// `url` serves what the host renders at `path`.
    Served {
        url: String,
        path: String,
        content: Vec<u8>,
    },
    /// Registration at the homeserver `base_url` is `expect`.
    Registration { base_url: String, expect: String },
    /// Every TCP port in `ports` accepts connections on `host`.
    Ports { host: String, ports: Vec<OpenPort> },
    /// `url` answers a GET with one of `status`: `what` is there.
    Answers {
        url: String,
        status: Vec<u16>,
        what: String,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct HostExpectations {
    pub host: String,
    pub server_name: String,
    pub expectations: Vec<Expectation>,
    /// The roles' looks at the host's health, run on it over SSH.
    pub health: Vec<crate::health::HealthProbe>,
}

/// Checks every expectation, in order.
pub(crate) async fn check(net: &Net, expected: &HostExpectations, findings: &mut Findings) {
    for expectation in &expected.expectations {
        match expectation {
            Expectation::Served { url, path, content } => {
                served(net, url, path, content, findings).await
            }
            Expectation::Registration { base_url, expect } => {
                registration(net, base_url, expect, findings).await
            }
            Expectation::Ports { host, ports } => open_ports(net, host, ports, findings).await,
            Expectation::Answers { url, status, what } => {
                answers(net, url, status, what, findings).await
            }
        }
    }
}

/// The text or JSON on one line, cut for a message.
fn one_line(bytes: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(bytes) {
        Ok(json) => json.to_string(),
        Err(_) => String::from_utf8_lossy(bytes)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    };
    if text.chars().count() > 160 {
        format!("{}…", text.chars().take(160).collect::<String>())
    } else {
        text
    }
}

async fn served(net: &Net, url: &str, path: &str, content: &[u8], findings: &mut Findings) {
    let check = "served";
    let Some(answer) = answer_or_report(net, url, check, findings, |findings, failure| {
        findings.error(
            check,
            url,
            format!("no answer: {failure}"),
            format!(
                "serve the file matrixctl renders at {path} here (`matrixctl onboard` shows how)"
            ),
        );
    })
    .await
    else {
        return;
    };
    let same = match (
        serde_json::from_slice::<Value>(content),
        serde_json::from_slice::<Value>(&answer.body),
    ) {
        (Ok(wanted), Ok(got)) => wanted == got,
        _ => answer.body == content,
    };
    if answer.status == 200 && same {
        findings.ok(
            check,
            url,
            format!("serves what matrixctl renders ({path})"),
        );
    } else if answer.status != 200 {
        findings.error(
            check,
            url,
            format!("answered {} where matrixctl renders {path}", answer.status),
            format!(
                "serve {} here (`matrixctl onboard` shows how)",
                one_line(content)
            ),
        );
    } else {
        findings.error(
            check,
            url,
            format!("serves {}, but matrixctl renders {}", one_line(&answer.body), one_line(content)),
            "a stale copy: replace it with the rendered file (`matrixctl onboard` prints it); with matrixctl serving it, run `matrixctl apply`",
        );
    }
}

/// Whether `url` is there: it answers with one of `status` (an endpoint
/// that asks for a token answers 401 without one; 404 means nobody serves
/// it there).
async fn answers(net: &Net, url: &str, status: &[u16], what: &str, findings: &mut Findings) {
    let check = "answers";
    let expected = status
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(" or ");
    let Some(answer) = answer_or_report(net, url, check, findings, |findings, failure| {
        findings.error(
            check,
            url,
            format!("no answer from {what}: {failure}"),
            "the web server must pass this path on, and what serves it must run (`matrixctl status` on the host)",
        );
    })
    .await
    else {
        return;
    };
    if status.contains(&answer.status) {
        findings.ok(check, url, format!("{what} answers ({})", answer.status));
    } else {
        findings.error(
            check,
            url,
            format!(
                "answered {} where {what} answers {expected}: {}",
                answer.status,
                one_line(&answer.body)
            ),
            "is the configuration matrixctl renders applied and running? `matrixctl plan` shows drift; a 404 or 502 means the web server reaches nothing there",
        );
    }
}

/// How a homeserver answers an empty registration: 403 when closed, 401
/// with the flows it offers otherwise.
async fn registration(net: &Net, base_url: &str, expect: &str, findings: &mut Findings) {
    let check = "registration";
    let url = format!(
        "{}/_matrix/client/v3/register",
        base_url.trim_end_matches('/')
    );
    let (answer, _) = net.post_json(&url, "{}", 64 * 1024).await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(failure) => {
            findings.error(
                check,
                url,
                format!("no answer: {failure}"),
                "the reverse proxy must pass /_matrix/client to the homeserver",
            );
            return;
        }
    };
    let json: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    let flows: Vec<Vec<&str>> = json["flows"]
        .as_array()
        .map(|flows| {
            flows
                .iter()
                .map(|flow| {
                    flow["stages"]
                        .as_array()
                        .map(|stages| stages.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    let every_flow_has =
        |stage: &str| !flows.is_empty() && flows.iter().all(|flow| flow.contains(&stage));
    let found = match answer.status {
        403 => "closed",
        401 if every_flow_has("m.login.registration_token") => "token",
        401 if every_flow_has("m.login.email.identity") => "email",
        401 if !flows.is_empty() => "open",
        _ => {
            findings.error(
                check,
                url,
                format!("answered {} without registration flows", answer.status),
                "a homeserver answers 403 (closed) or 401 with its flows; is this path passed to it?",
            );
            return;
        }
    };
    let described = |mode: &str| match mode {
        "closed" => "closed".to_string(),
        "token" => "by invitation token".to_string(),
        "email" => "open with email verification".to_string(),
        "open" => "open to anyone".to_string(),
        other => format!("`{other}`"),
    };
    if found == expect {
        findings.ok(
            check,
            url,
            format!(
                "registration is {}, as the inventory says",
                described(found)
            ),
        );
    } else {
        findings.error(
            check,
            url,
            format!("registration is {}, but the inventory says {}", described(found), described(expect)),
            "the homeserver does not run the configuration matrixctl renders: run `matrixctl plan` for drift, and look for configuration matrixctl does not manage",
        );
    }
}

async fn open_ports(net: &Net, host: &str, ports: &[OpenPort], findings: &mut Findings) {
    let check = "port";
    let ips = match net.addresses(host, 0).await {
        Lookup::Found(ips) => ips,
        _ => {
            findings.error(
                check,
                host,
                format!("{host} has no address to check its ports on"),
                format!("create an A (and AAAA) record for {host}"),
            );
            return;
        }
    };
    let mut probes = Vec::new();
    // A port open to a homeserver's own machines alone is not for the
    // world to reach.
    for port in ports
        .iter()
        .filter(|port| port.proto == Proto::Tcp && port.from.is_empty())
    {
        for ip in &ips {
            probes.push((port, SocketAddr::new(*ip, port.start)));
        }
    }
    let outcomes =
        futures_util::future::join_all(probes.iter().map(|(_, address)| net.connects(*address)))
            .await;
    for ((port, address), outcome) in probes.iter().zip(outcomes) {
        let label = format!("{}/tcp ({})", port.start, port.description);
        match outcome {
            Ok(()) => findings.ok(
                check,
                address.to_string(),
                format!("{label} accepts connections"),
            ),
            Err(Failure::Refused) => findings.error(
                check,
                address.to_string(),
                format!("{label} refuses connections: nothing listens there"),
                format!(
                    "is the service behind port {} ({}) running?",
                    port.start, port.role
                ),
            ),
            Err(failure) => findings.error(
                check,
                address.to_string(),
                format!("{label}: {failure}"),
                format!(
                    "is port {} open in the firewall (and in the provider's)?",
                    port.start
                ),
            ),
        }
    }
}
