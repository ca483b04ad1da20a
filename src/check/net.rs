//! The network as `check` sees it: DNS through hickory (the system's
//! resolver, or `--dns`), names pinned with `--resolve`, and HTTPS through
//! reqwest on rustls, with a certificate verifier that records what it
//! saw, so a report can say *why* a certificate is refused and still look
//! at what the server answers behind it.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::problem::Problem;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Serialize;
use sha2::Digest;

/// A name pinned to an address, like curl's `--resolve HOST:PORT:ADDR`.
#[derive(Debug, Clone)]
pub struct Pin {
    pub host: String,
    pub port: u16,
    pub address: IpAddr,
}

impl std::str::FromStr for Pin {
    type Err = String;

    fn from_str(text: &str) -> Result<Pin, String> {
        let wanted = "expected HOST:PORT:ADDRESS, like matrix.example.com:443:192.0.2.7";
        let mut parts = text.splitn(3, ':');
        let (Some(host), Some(port), Some(address)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(wanted.into());
        };
        let address = address.trim_start_matches('[').trim_end_matches(']');
        Ok(Pin {
            host: host.to_ascii_lowercase(),
            port: port
                .parse()
                .map_err(|_| format!("`{port}` is not a port; {wanted}"))?,
            address: address
                .parse()
                .map_err(|_| format!("`{address}` is not an IP address; {wanted}"))?,
        })
    }
}

/// How `check` reaches the world.
#[derive(Debug, Clone, Default)]
pub(crate) struct NetOptions {
    pub pins: Vec<Pin>,
    pub dns: Option<SocketAddr>,
    /// Trusted roots instead of the system's.
    pub ca_file: Option<std::path::PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup<T> {
    Found(T),
    /// The name exists without such records, or does not exist.
    None,
    Failed(String),
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct SrvRecord {
    #[serde(rename = "Target")]
    pub target: String,
    #[serde(rename = "Port")]
    pub port: u16,
    #[serde(rename = "Priority")]
    pub priority: u16,
    #[serde(rename = "Weight")]
    pub weight: u16,
}

/// Why a certificate chain was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CertificateProblem {
    WrongName,
    Expired,
    NotYetValid,
    UnknownIssuer,
    Other(String),
}

/// A certificate of a chain a server sent, as the tester reports it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CertificateInfo {
    #[serde(rename = "SubjectCommonName")]
    pub subject_common_name: String,
    #[serde(rename = "IssuerCommonName")]
    pub issuer_common_name: String,
    #[serde(rename = "SHA256Fingerprint")]
    pub sha256_fingerprint: String,
    #[serde(rename = "DNSNames")]
    pub dns_names: Vec<String>,
    /// Seconds since the epoch.
    #[serde(skip)]
    pub not_after: i64,
}

/// One TLS handshake's certificate: for which name, the chain and the
/// verdict against the trusted roots.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub name: String,
    pub chain: Vec<CertificateInfo>,
    pub verdict: Result<(), CertificateProblem>,
}

/// A rustls verifier that asks webpki and remembers the answer; when
/// `strict`, a refused chain also fails the handshake.
#[derive(Debug)]
struct Recorder {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    strict: bool,
    seen: Mutex<Vec<Seen>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let outcome = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let verdict = match &outcome {
            Ok(_) => Ok(()),
            Err(rustls::Error::InvalidCertificate(problem)) => Err(match problem {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => CertificateProblem::WrongName,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    CertificateProblem::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    CertificateProblem::NotYetValid
                }
                CertificateError::UnknownIssuer => CertificateProblem::UnknownIssuer,
                other => CertificateProblem::Other(format!("{other:?}")),
            }),
            Err(other) => Err(CertificateProblem::Other(other.to_string())),
        };
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|der| certificate_info(der))
            .collect();
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(Seen {
                name: server_name.to_str().into_owned(),
                chain,
                verdict,
            });
        }
        match outcome {
            Err(error) if self.strict => Err(error),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn certificate_info(der: &CertificateDer<'_>) -> CertificateInfo {
    let fingerprint = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        sha2::Sha256::digest(der.as_ref()),
    );
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return CertificateInfo {
            subject_common_name: String::new(),
            issuer_common_name: String::new(),
            sha256_fingerprint: fingerprint,
            dns_names: Vec::new(),
            not_after: 0,
        };
    };
    let common_name = |name: &x509_parser::x509::X509Name<'_>| {
        name.iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let dns_names = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    CertificateInfo {
        subject_common_name: common_name(parsed.subject()),
        issuer_common_name: common_name(parsed.issuer()),
        sha256_fingerprint: fingerprint,
        dns_names,
        not_after: parsed.validity().not_after.timestamp(),
    }
}

/// An HTTP answer, its body cut at the cap.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: u16,
    /// Where the last redirect led.
    pub url: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
    /// The body was longer than the cap.
    pub truncated: bool,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The certificate was refused (a strict request).
    Certificate(Seen),
    Timeout,
    Refused,
    /// The host name has no address.
    NoAddress,
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Certificate(seen) => {
                write!(f, "the certificate of {} was refused", seen.name)
            }
            Failure::Timeout => f.write_str("no answer in time"),
            Failure::Refused => f.write_str("the connection was refused"),
            Failure::NoAddress => f.write_str("the name has no address"),
            Failure::Other(text) => f.write_str(text),
        }
    }
}

pub(crate) struct Net {
    resolver: TokioResolver,
    pins: Vec<Pin>,
    provider: Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
    pub timeout: Duration,
}

/// reqwest's name resolution, through the pins and the same resolver as
/// the discovery, so redirects and base URLs see the same world.
struct Resolving {
    resolver: TokioResolver,
    pins: Vec<Pin>,
}

impl reqwest::dns::Resolve for Resolving {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_ascii_lowercase();
        let pinned: Vec<SocketAddr> = self
            .pins
            .iter()
            .filter(|pin| pin.host == name)
            .map(|pin| SocketAddr::new(pin.address, 0))
            .collect();
        let resolver = self.resolver.clone();
        Box::pin(async move {
            if !pinned.is_empty() {
                return Ok(Box::new(pinned.into_iter()) as reqwest::dns::Addrs);
            }
            let found = resolver.lookup_ip(format!("{name}.")).await?;
            let addresses: Vec<SocketAddr> =
                found.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl Net {
    pub(crate) fn new(options: &NetOptions) -> Result<Net> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        match &options.ca_file {
            Some(path) => {
                let refused = |message: String| {
                    Problem::new(message).in_file(path).with_hint(Some(
                        "--ca-file takes a PEM file of CA certificates (`-----BEGIN CERTIFICATE-----` blocks), like a test CA's root".into(),
                    ))
                };
                // The message names the flag; fs_err's would add the path twice.
                let pem = std::fs::read(path)
                    .map_err(|error| refused(format!("--ca-file: cannot read it: {error}")))?;
                let mut added = 0;
                for certificate in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
                    let certificate: CertificateDer<'static> = certificate.map_err(|error| {
                        refused(format!("--ca-file: not a PEM certificate: {error}"))
                    })?;
                    roots.add(certificate).map_err(|error| {
                        refused(format!("--ca-file: a certificate rustls refuses: {error}"))
                    })?;
                    added += 1;
                }
                if added == 0 {
                    return Err(refused("--ca-file: no PEM certificate in it".into()).into());
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
                if roots.is_empty() {
                    bail!(
                        "no trusted CA certificates on this machine (apt-get install ca-certificates, or pass --ca-file)"
                    );
                }
            }
        }
        let mut resolver_options = ResolverOpts::default();
        resolver_options.timeout = options.timeout.min(Duration::from_secs(5));
        resolver_options.attempts = 2;
        let builder = match options.dns {
            Some(server) => {
                let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
                for connection in &mut name_server.connections {
                    connection.port = server.port();
                }
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![name_server]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio()
                .context("reading the system's resolver configuration (/etc/resolv.conf)")?,
        };
        let resolver = builder.with_options(resolver_options).build()?;
        Ok(Net {
            resolver,
            pins: options.pins.clone(),
            provider,
            roots: Arc::new(roots),
            timeout: options.timeout,
        })
    }

    /// SRV records of `name`, by priority then weight.
    pub(crate) async fn srv(&self, name: &str) -> Lookup<Vec<SrvRecord>> {
        match self
            .resolver
            .lookup(format!("{name}."), RecordType::SRV)
            .await
        {
            Ok(found) => {
                let mut records: Vec<SrvRecord> = found
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::SRV(srv) => Some(SrvRecord {
                            target: srv.target.to_ascii().trim_end_matches('.').to_string(),
                            port: srv.port,
                            priority: srv.priority,
                            weight: srv.weight,
                        }),
                        _ => None,
                    })
                    .collect();
                records.sort_by_key(|record| (record.priority, std::cmp::Reverse(record.weight)));
                if records.is_empty() {
                    Lookup::None
                } else {
                    Lookup::Found(records)
                }
            }
            Err(error) if error.is_no_records_found() || error.is_nx_domain() => Lookup::None,
            Err(error) => Lookup::Failed(error.to_string()),
        }
    }

    /// The name `name` is an alias of, if it is one.
    pub(crate) async fn cname(&self, name: &str) -> Option<String> {
        let found = self
            .resolver
            .lookup(format!("{name}."), RecordType::CNAME)
            .await
            .ok()?;
        found
            .answers()
            .iter()
            .find_map(|record| match &record.data {
                RData::CNAME(target) => Some(target.0.to_ascii().trim_end_matches('.').to_string()),
                _ => None,
            })
    }

    /// The A and AAAA addresses of `host`: pinned ones for `port` (any
    /// port when it is 0), else DNS.
    pub(crate) async fn addresses(&self, host: &str, port: u16) -> Lookup<Vec<IpAddr>> {
        let host = host.to_ascii_lowercase();
        let pinned: Vec<IpAddr> = self
            .pins
            .iter()
            .filter(|pin| pin.host == host && (pin.port == port || port == 0))
            .map(|pin| pin.address)
            .collect();
        if !pinned.is_empty() {
            return Lookup::Found(pinned);
        }
        match self.resolver.lookup_ip(format!("{host}.")).await {
            Ok(found) => {
                let mut addresses: Vec<IpAddr> = found.iter().collect();
                addresses.sort();
                addresses.dedup();
                if addresses.is_empty() {
                    Lookup::None
                } else {
                    Lookup::Found(addresses)
                }
            }
            Err(error) if error.is_no_records_found() || error.is_nx_domain() => Lookup::None,
            Err(error) => Lookup::Failed(error.to_string()),
        }
    }

    fn client(
        &self,
        strict: bool,
        pin: Option<(&str, SocketAddr)>,
    ) -> Result<(reqwest::Client, Arc<Recorder>)> {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            self.roots.clone(),
            self.provider.clone(),
        )
        .build()?;
        let recorder = Arc::new(Recorder {
            inner,
            strict,
            seen: Mutex::new(Vec::new()),
        });
        let mut tls = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone())
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(Resolving {
                resolver: self.resolver.clone(),
                pins: self.pins.clone(),
            })
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .user_agent(concat!("matrixctl-check/", env!("CARGO_PKG_VERSION")))
            // As many redirects as a homeserver's well-known lookup follows.
            .redirect(reqwest::redirect::Policy::limited(20))
            .no_proxy();
        if let Some((name, address)) = pin {
            builder = builder
                .resolve(name, address)
                .redirect(reqwest::redirect::Policy::none());
        }
        Ok((builder.build()?, recorder))
    }

    /// GET `url` with the certificate checked (refused: no answer), the
    /// body read up to `cap` bytes. Redirects are followed.
    pub(crate) async fn get(&self, url: &str, cap: usize) -> (Result<Answer, Failure>, Vec<Seen>) {
        self.request(true, None, url, None, cap).await
    }

    /// POST `body` (JSON) to `url`, the certificate checked.
    pub(crate) async fn post_json(
        &self,
        url: &str,
        body: &str,
        cap: usize,
    ) -> (Result<Answer, Failure>, Vec<Seen>) {
        self.request(true, None, url, Some(body), cap).await
    }

    /// GET `url` from exactly `address`, with the URL's host as SNI and
    /// `Host`, whatever the certificate (its verdict is in the `Seen`).
    pub(crate) async fn get_at(
        &self,
        address: SocketAddr,
        url: &str,
        cap: usize,
    ) -> (Result<Answer, Failure>, Vec<Seen>) {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_string))
            .unwrap_or_default();
        self.request(false, Some((&host, address)), url, None, cap)
            .await
    }

    async fn request(
        &self,
        strict: bool,
        pin: Option<(&str, SocketAddr)>,
        url: &str,
        body: Option<&str>,
        cap: usize,
    ) -> (Result<Answer, Failure>, Vec<Seen>) {
        let (client, recorder) = match self.client(strict, pin) {
            Ok(made) => made,
            Err(error) => return (Err(Failure::Other(format!("{error:#}"))), Vec::new()),
        };
        let outcome = async {
            let request = match body {
                None => client.get(url),
                Some(body) => client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string()),
            };
            let mut response = request.send().await?;
            let status = response.status().as_u16();
            let final_url = response.url().to_string();
            let headers = response.headers().clone();
            let mut body = Vec::new();
            let mut truncated = false;
            while let Some(chunk) = response.chunk().await? {
                body.extend_from_slice(&chunk);
                if body.len() > cap {
                    body.truncate(cap);
                    truncated = true;
                    break;
                }
            }
            Ok::<Answer, reqwest::Error>(Answer {
                status,
                url: final_url,
                headers,
                body,
                truncated,
            })
        }
        .await;
        let seen = recorder
            .seen
            .lock()
            .map(|seen| seen.clone())
            .unwrap_or_default();
        let outcome = outcome.map_err(|error| {
            if let Some(refused) = seen
                .iter()
                .find(|seen| seen.verdict.is_err())
                .filter(|_| strict)
            {
                return Failure::Certificate(refused.clone());
            }
            if error.is_timeout() {
                return Failure::Timeout;
            }
            let text = error_chain(&error);
            if text.contains("Connection refused") {
                Failure::Refused
            } else if text.contains("dns error") {
                Failure::NoAddress
            } else {
                Failure::Other(innermost(&error))
            }
        });
        (outcome, seen)
    }

    /// Whether a TCP connection to `address` opens in time.
    pub(crate) async fn connects(&self, address: SocketAddr) -> Result<(), Failure> {
        match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                Err(Failure::Refused)
            }
            Ok(Err(error)) => Err(Failure::Other(error.to_string())),
            Err(_) => Err(Failure::Timeout),
        }
    }
}

/// The most specific cause of an error (reqwest's outer layers only
/// repeat the URL).
fn innermost(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// An error and its causes on one line, most specific last.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}
