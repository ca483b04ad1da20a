//! The core's vocabulary: value types the inventory, the roles' options
//! and the transport all speak (ports, sizes, DNS names, addresses, Matrix
//! IDs and durations), each parsed once so no other code holds an invalid
//! one; and the names of the vars the core itself owns.

pub(crate) mod matrix;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The keys of [`CoreVars`], for the unknown-key check and its suggestions.
pub const CORE_KEYS: &[&str] = &[
    "artifact_mirror",
    "become",
    "delegation",
    "federation_port",
    "matrix_fqdn",
    "secret_generation",
    "secrets",
    "ssh_options",
    "state_dir",
];

/// Keys that are facts about the host, not settings.
/// The longest short name of a homeserver sharing a machine: a role may
/// prefix it with a service's name of up to 15 characters and still have
/// a Linux account name (at most 32 characters).
pub(crate) const MAX_CUSTOMER_NAME: usize = 16;

pub const RESERVED_KEYS: &[(&str, &str)] = &[
    (
        "server_name",
        "the server name is the host's name in hosts.yaml; it cannot be set in vars",
    ),
    (
        "public_baseurl",
        "public_baseurl is derived from matrix_fqdn (https://MATRIX_FQDN/); set matrix_fqdn instead",
    ),
    (
        "customer",
        "a homeserver's short name on a shared machine is derived from its server name",
    ),
    (
        "customer_address",
        "a homeserver's loopback address is derived from its server name (127.0.0.1 on a machine of its own)",
    ),
    (
        "machine_name",
        "a homeserver's machine is named by `machine:` in hosts.yaml",
    ),
    (
        "host_groups",
        "a host's groups are set by `groups:` in hosts.yaml",
    ),
    (
        "private_address",
        "a machine's private address is set by `private_address:` in hosts.yaml",
    ),
    (
        "private_addresses",
        "the machines' private addresses are set by `private_address:` in hosts.yaml",
    ),
    (
        "inventory_machines",
        "the machines are the ones under `machines:` in hosts.yaml",
    ),
    (
        "parts",
        "which parts of a homeserver a machine carries follows from where the roles place them",
    ),
    (
        "part_machines",
        "the machines carrying parts of a homeserver follow from where the roles place them",
    ),
    (
        "homeserver_addresses",
        "the private addresses of a homeserver's machines are set by `private_address:` in hosts.yaml",
    ),
    (
        "home_machine",
        "a homeserver's own machine is named by `machine:` in hosts.yaml",
    ),
];

/// A TCP/UDP port, 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Port, D::Error> {
        let value = serde_yaml::Value::deserialize(deserializer)?;
        match value.as_u64().map(u16::try_from) {
            Some(Ok(port)) if port > 0 => Ok(Port(port)),
            Some(_) => Err(serde::de::Error::custom(format!(
                "port {} is out of range: expected 1 to 65535",
                value.as_u64().unwrap_or_default()
            ))),
            None => Err(serde::de::Error::custom(format!(
                "expected a port number from 1 to 65535, found {}",
                describe_value(&value)
            ))),
        }
    }
}

/// A short description of a YAML value for error messages.
pub fn describe_value(value: &serde_yaml::Value) -> String {
    match value {
        // A long value is elided: the file and line point at it whole.
        serde_yaml::Value::String(text) if text.chars().count() > 80 => {
            let start: String = text.chars().take(60).collect();
            format!(
                "the string {start:?}… ({} characters)",
                text.chars().count()
            )
        }
        serde_yaml::Value::String(text) => format!("the string {text:?}"),
        serde_yaml::Value::Number(number) => format!("the number {number}"),
        serde_yaml::Value::Bool(flag) => format!("`{flag}`"),
        serde_yaml::Value::Null => "nothing (null)".to_string(),
        serde_yaml::Value::Sequence(_) => "a list".to_string(),
        serde_yaml::Value::Mapping(_) => "a map".to_string(),
        serde_yaml::Value::Tagged(_) => "a tagged value".to_string(),
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A size as homeservers write it: bytes, or a number with an uppercase
/// K/M/G/T suffix (powers of 1024). `50m` is refused where it is read, so
/// it is refused here too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Size {
    pub bytes: u64,
    /// The operator's spelling, which is also what templates print.
    pub text: String,
}

/// The largest size accepted (1T): sizes here bound uploads and the like;
/// beyond it, a unit was mistyped (`99999T`).
const MAX_SIZE_BYTES: u64 = 1 << 40;

impl FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Size, String> {
        let (digits, multiplier) = match text.char_indices().last() {
            Some((index, 'K')) => (&text[..index], 1u64 << 10),
            Some((index, 'M')) => (&text[..index], 1 << 20),
            Some((index, 'G')) => (&text[..index], 1 << 30),
            Some((index, 'T')) => (&text[..index], 1 << 40),
            Some((_, suffix @ ('k' | 'm' | 'g' | 't'))) => {
                return Err(format!(
                    "invalid size `{text}`: the suffix must be uppercase; write `{}{}`",
                    &text[..text.len() - 1],
                    suffix.to_ascii_uppercase()
                ));
            }
            _ => (text, 1),
        };
        let number: u64 = digits
            .parse()
            .ok()
            .filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                format!("invalid size `{text}`: expected bytes or a number with K, M, G or T, like `50M`")
            })?;
        let bytes = number
            .checked_mul(multiplier)
            .filter(|bytes| *bytes <= MAX_SIZE_BYTES)
            .ok_or_else(|| {
                format!("invalid size `{text}`: more than 1T, which no setting here is meant to be")
            })?;
        Ok(Size {
            bytes,
            text: text.to_string(),
        })
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Size, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "expected a size: bytes, or a number with K, M, G or T, like `50M`",
            )
        })? {
            Raw::Bytes(bytes) => bytes.to_string().parse().map_err(serde::de::Error::custom),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// A lowercase DNS name: what a server name or `matrix_fqdn` must be.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct DnsName(String);

impl DnsName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a string is not a DNS name, with the fix where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName {
    pub reason: String,
    pub hint: Option<String>,
}

impl FromStr for DnsName {
    type Err = InvalidName;

    fn from_str(raw: &str) -> Result<DnsName, InvalidName> {
        let fail = |reason: String, hint: Option<String>| Err(InvalidName { reason, hint });
        // What messages show: a line break or an invisible character in
        // a name is spelt out, never printed.
        let name = raw.escape_debug().to_string();
        if raw.is_empty() {
            return fail("a server name cannot be empty".into(), None);
        }
        if raw.contains("://") {
            return fail(
                format!("`{name}` looks like a URL, not a host name"),
                Some("write just the DNS name, like `matrix.example.com`".into()),
            );
        }
        if raw.contains(':') {
            return fail(
                format!("`{name}` has a port or is an IPv6 address"),
                Some("matrixctl manages hosts by DNS name without a port; delegate federation with the well-known file instead".into()),
            );
        }
        if raw.len() > 230 {
            return fail(
                format!("`{name}` is longer than 230 characters, the Matrix spec's limit"),
                None,
            );
        }
        if raw.bytes().any(|b| b.is_ascii_uppercase()) {
            return fail(
                format!("`{name}` has uppercase letters"),
                Some(format!(
                    "Matrix IDs are case-sensitive while DNS is not; use `{}`",
                    name.to_ascii_lowercase()
                )),
            );
        }
        for label in raw.split('.') {
            let valid = !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return fail(
                    format!(
                        "`{name}` is not a valid DNS name (bad label `{}`)",
                        label.escape_debug()
                    ),
                    Some(
                        "labels are 1 to 63 of a-z, 0-9 and `-`, not starting or ending with `-`"
                            .into(),
                    ),
                );
            }
        }
        if raw
            .split('.')
            .all(|label| label.bytes().all(|b| b.is_ascii_digit()))
        {
            return fail(
                format!("`{name}` is an IP address"),
                Some("matrixctl manages hosts by DNS name".into()),
            );
        }
        Ok(DnsName(raw.to_string()))
    }
}

impl<'de> Deserialize<'de> for DnsName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DnsName, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|error: InvalidName| {
            serde::de::Error::custom(match error.hint {
                Some(hint) => format!("{} ({hint})", error.reason),
                None => error.reason,
            })
        })
    }
}

/// An IPv4 or IPv6 address, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct IpAddress(pub std::net::IpAddr);

impl<'de> Deserialize<'de> for IpAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<IpAddress, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map(IpAddress).map_err(|_| {
            serde::de::Error::custom(format!(
                "expected an IP address like `192.0.2.1` or `2001:db8::1`, found `{text}`"
            ))
        })
    }
}
