//! The federation tester's report (matrix-federation-tester's JSON, with
//! its Go field names), filled from the same lookups as the findings, so
//! tooling that reads the tester can read `check --json` instead. The
//! tester's gaps are closed: `SRVRecords` comes from `_matrix-fed._tcp`
//! when it exists (then `_matrix._tcp`), and every address is checked.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::keys::KeyChecks;
use super::net::{CertificateInfo, SrvRecord};

/// An error as the tester serialises one.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Message {
    #[serde(rename = "Message")]
    pub message: String,
}

impl Message {
    pub(crate) fn new(message: impl Into<String>) -> Message {
        Message {
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct TesterReport {
    #[serde(rename = "Error", skip_serializing_if = "Option::is_none")]
    pub error: Option<Message>,
    #[serde(rename = "WellKnownResult")]
    pub well_known_result: WellKnownResult,
    #[serde(rename = "DNSResult")]
    pub dns_result: DnsResult,
    #[serde(rename = "ConnectionReports")]
    pub connection_reports: BTreeMap<String, ConnectionReport>,
    #[serde(rename = "ConnectionErrors")]
    pub connection_errors: BTreeMap<String, Message>,
    #[serde(rename = "Version")]
    pub version: Version,
    #[serde(rename = "FederationOK")]
    pub federation_ok: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct WellKnownResult {
    #[serde(rename = "m.server")]
    pub m_server: String,
    /// Why there is no delegation from the file (empty when there is one).
    pub result: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct DnsResult {
    #[serde(rename = "SRVSkipped")]
    pub srv_skipped: bool,
    /// The alias an SRV target turned out to be (empty when none is).
    #[serde(rename = "SRVCName")]
    pub srv_cname: String,
    #[serde(rename = "SRVRecords")]
    pub srv_records: Vec<SrvRecord>,
    #[serde(rename = "SRVError")]
    pub srv_error: Option<Message>,
    #[serde(rename = "Hosts")]
    pub hosts: BTreeMap<String, HostResult>,
    #[serde(rename = "Addrs")]
    pub addrs: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct HostResult {
    #[serde(rename = "CName")]
    pub cname: String,
    #[serde(rename = "Addrs")]
    pub addrs: Vec<String>,
    #[serde(rename = "Error", skip_serializing_if = "Option::is_none")]
    pub error: Option<Message>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConnectionReport {
    #[serde(rename = "Certificates")]
    pub certificates: Vec<CertificateInfo>,
    #[serde(rename = "Checks")]
    pub checks: Checks,
    #[serde(rename = "Errors")]
    pub errors: Vec<Message>,
    #[serde(rename = "Ed25519VerifyKeys")]
    pub ed25519_verify_keys: BTreeMap<String, String>,
    #[serde(rename = "Info")]
    pub info: BTreeMap<String, String>,
    #[serde(rename = "Keys")]
    pub keys: Value,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Checks {
    #[serde(rename = "AllChecksOK")]
    pub all_checks_ok: bool,
    #[serde(flatten)]
    pub keys: KeyChecks,
    #[serde(rename = "ValidCertificates")]
    pub valid_certificates: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Version {
    pub name: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Message>,
}
