//! The typed host vars matrixctl itself understands, parsed once so the rest
//! of the code cannot hold an invalid server name, port or size.
//!
//! Role-specific vars are not listed here: each role declares its own keys
//! (and their types, by example) in its manifest's `defaults`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::matrix::Delegation;
use crate::secrets::SecretName;

/// The keys of [`CoreVars`], for the unknown-key check and its suggestions.
pub const CORE_KEYS: &[&str] = &[
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
pub const RESERVED_KEYS: &[(&str, &str)] = &[
    (
        "server_name",
        "the server name is the host's name in hosts.yaml; it cannot be set in vars",
    ),
    (
        "public_baseurl",
        "public_baseurl is derived from matrix_fqdn (https://MATRIX_FQDN/); set matrix_fqdn instead",
    ),
];

/// Host vars with a meaning in matrixctl's own code, after precedence.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CoreVars {
    /// Where clients and federation reach the homeserver; defaults to `matrix.SERVER_NAME`.
    #[serde(default)]
    pub matrix_fqdn: Option<DnsName>,
    /// The port federation traffic arrives on (8448 unless delegated to 443).
    #[serde(default = "default_federation_port")]
    pub federation_port: Port,
    /// Operator-chosen values that replace derived secrets.
    #[serde(default)]
    pub secrets: BTreeMap<SecretName, SecretValue>,
    /// Bump one secret's generation to rotate it alone.
    #[serde(default)]
    pub secret_generation: BTreeMap<SecretName, u32>,
    /// How the host program gains root when connecting as another user.
    #[serde(default, rename = "become")]
    pub become_: Become,
    #[serde(default)]
    pub ssh_options: SshOptions,
    /// Where matrixctl keeps its record and lock on the host.
    #[serde(default)]
    pub state_dir: StateDir,

    /// How other servers find this one.
    #[serde(default)]
    pub delegation: Delegation,
}

impl CoreVars {
    /// Where the homeserver is reached: matrix_fqdn, else the server name itself
    /// without delegation, else `matrix.SERVER_NAME`.
    pub fn fqdn(&self, server_name: &DnsName) -> String {
        match (&self.matrix_fqdn, self.delegation) {
            (Some(fqdn), _) => fqdn.to_string(),
            (None, Delegation::None) => server_name.to_string(),
            (None, _) => format!("matrix.{server_name}"),
        }
    }

    /// Every operator-chosen secret in these vars, for redaction.
    pub fn secret_values(&self) -> Vec<String> {
        self.secrets.values().map(|value| value.0.clone()).collect()
    }
}

/// An absolute, normalised directory on the host for matrixctl's own files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StateDir(pub String);

impl Default for StateDir {
    fn default() -> StateDir {
        StateDir("/var/lib/matrixctl".to_string())
    }
}

impl<'de> Deserialize<'de> for StateDir {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StateDir, D::Error> {
        let text = String::deserialize(deserializer)?;
        let normal = text.starts_with('/')
            && text.len() > 1
            && !text.ends_with('/')
            && !text.chars().any(char::is_control)
            && text
                .split('/')
                .skip(1)
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if normal {
            Ok(StateDir(text))
        } else {
            Err(serde::de::Error::custom(format!(
                "`{text}` is not an absolute, normalised directory like `/var/lib/matrixctl`"
            )))
        }
    }
}

/// Privilege escalation for the host program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Become {
    /// Run as the connecting user (root, usually).
    #[default]
    None,
    /// Run under `sudo -n`: the user needs passwordless sudo.
    Sudo,
}

/// How to connect over SSH, beyond `ssh:` in hosts.yaml. Relative paths
/// are relative to the inventory directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a map of SSH options")]
pub struct SshOptions {
    /// The only key to offer (`ssh -i`, with IdentitiesOnly).
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// An ssh_config to use instead of `~/.ssh/config` (`ssh -F`).
    #[serde(default)]
    pub config_file: Option<PathBuf>,
    /// Where host keys are checked (default: ssh's own, `~/.ssh/known_hosts`).
    #[serde(default)]
    pub known_hosts_file: Option<PathBuf>,
    /// Accept and record an unknown host key; a changed key is always refused.
    #[serde(default)]
    pub accept_new_host_keys: bool,
    /// Extra ssh_config options, like `ProxyJump: bastion.example.com`.
    #[serde(default)]
    pub options: BTreeMap<SshOptionName, SshOptionValue>,
}

impl SshOptions {
    /// Makes `~/PATH` the operator's home directory's PATH, as ssh reads
    /// it, and other relative paths relative to `dir` (the inventory).
    pub fn relative_to(&mut self, dir: &std::path::Path) {
        let home = std::env::var_os("HOME").filter(|home| !home.is_empty());
        for path in [
            &mut self.identity_file,
            &mut self.config_file,
            &mut self.known_hosts_file,
        ]
        .into_iter()
        .flatten()
        {
            let in_home = path
                .strip_prefix("~")
                .ok()
                .zip(home.as_ref())
                .map(|(rest, home)| std::path::Path::new(home).join(rest));
            if let Some(in_home) = in_home {
                *path = in_home;
            } else if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
    }
}

/// Options matrixctl sets itself, which an ssh_config could not override.
const OWN_SSH_OPTIONS: &[(&str, &str)] = &[
    ("batchmode", "matrixctl never asks questions over SSH"),
    ("controlmaster", "matrixctl runs its own master connection"),
    ("controlpath", "matrixctl runs its own master connection"),
    ("controlpersist", "matrixctl runs its own master connection"),
    (
        "stricthostkeychecking",
        "use `accept_new_host_keys: true` (changed keys are always refused)",
    ),
    ("userknownhostsfile", "use `known_hosts_file`"),
    ("identityfile", "use `identity_file`"),
    ("port", "give the port in hosts.yaml: `ssh: user@host:port`"),
    ("user", "give the user in hosts.yaml: `ssh: user@host:port`"),
];

/// The name of an ssh_config option.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SshOptionName(pub String);

impl<'de> Deserialize<'de> for SshOptionName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SshOptionName, D::Error> {
        let name = String::deserialize(deserializer)?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(serde::de::Error::custom(format!(
                "`{name}` is not an ssh_config option name (letters and digits, like `ProxyJump`)"
            )));
        }
        if let Some((_, why)) = OWN_SSH_OPTIONS
            .iter()
            .find(|(own, _)| name.eq_ignore_ascii_case(own))
        {
            return Err(serde::de::Error::custom(format!(
                "`{name}` cannot be set here: {why}"
            )));
        }
        Ok(SshOptionName(name))
    }
}

/// The value of an ssh_config option: one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SshOptionValue(pub String);

impl<'de> Deserialize<'de> for SshOptionValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SshOptionValue, D::Error> {
        let value = serde_yaml::Value::deserialize(deserializer)?;
        let text = match &value {
            serde_yaml::Value::String(text) => text.clone(),
            serde_yaml::Value::Number(number) => number.to_string(),
            serde_yaml::Value::Bool(flag) => if *flag { "yes" } else { "no" }.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a single value, found {}",
                    describe_value(other)
                )));
            }
        };
        if text.is_empty() || text.contains(['\n', '\r']) {
            return Err(serde::de::Error::custom(
                "an ssh option's value must be one non-empty line",
            ));
        }
        Ok(SshOptionValue(text))
    }
}

fn default_federation_port() -> Port {
    Port(8448)
}

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

/// A secret chosen by the operator. Its value never appears in an error,
/// even when it has the wrong type.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SecretValue(pub String);

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SecretValue, D::Error> {
        match serde_yaml::Value::deserialize(deserializer) {
            Ok(serde_yaml::Value::String(value)) if !value.is_empty() => Ok(SecretValue(value)),
            _ => Err(serde::de::Error::custom(
                "expected a non-empty string (quote the value; it is not shown here because it is a secret)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_uppercase_suffixes() {
        assert_eq!("50M".parse::<Size>().unwrap().bytes, 50 << 20);
        assert_eq!("1024".parse::<Size>().unwrap().bytes, 1024);
        assert_eq!("2G".parse::<Size>().unwrap().bytes, 2 << 30);
        assert!("50m".parse::<Size>().unwrap_err().contains("write `50M`"));
        assert!("M".parse::<Size>().is_err());
        assert!("+5M".parse::<Size>().is_err());
        assert!("99999999999999999T".parse::<Size>().is_err());
    }

    #[test]
    fn dns_names_are_checked() {
        for good in ["example.com", "matrix.example-1.org", "localhost"] {
            assert!(good.parse::<DnsName>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "Example.com",
            "example..com",
            "-a.com",
            "a_b.com",
            "example.com:8448",
            "10.0.0.1",
            "ex ample.com",
        ] {
            assert!(bad.parse::<DnsName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn core_keys_are_the_struct_fields() {
        // Every listed key is accepted, so the list and the struct agree.
        for key in CORE_KEYS {
            let value = match *key {
                "matrix_fqdn" => "m.example.com",
                "federation_port" => "443",
                "identity_server" => "https://vector.im",
                "become" => "sudo",
                "state_dir" => "/srv/matrixctl",
                "delegation" => "srv",
                _ => "{}",
            };
            let yaml = format!("{key}: {value}");
            let parsed: Result<CoreVars, _> = serde_yaml::from_str(&yaml);
            assert!(parsed.is_ok(), "{key}: {parsed:?}");
        }
        let unknown: Result<CoreVars, _> = serde_yaml::from_str("nope: 1");
        assert!(unknown.is_err());
    }
}
