//! The typed host vars matrixctl itself understands, parsed once so the rest
//! of the code cannot hold an invalid server name, port or size.
//!
//! Role-specific vars are not listed here: each role declares its own keys
//! (and their types, by example) in its manifest's `defaults`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use crate::secrets::SecretName;
use crate::values::matrix::Delegation;
pub use crate::values::{
    CORE_KEYS, DnsName, InvalidName, IpAddress, Port, RESERVED_KEYS, Size, describe_value,
};

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
    /// Where hosts without internet access fetch the roles' pinned
    /// releases (`artifacts:`): a URL base or a directory on the host,
    /// holding each release under its upstream file name.
    #[serde(default)]
    pub artifact_mirror: Option<ArtifactMirror>,
}

/// An http(s) URL base, or an absolute directory on the host, without
/// spaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ArtifactMirror(pub String);

impl<'de> Deserialize<'de> for ArtifactMirror {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ArtifactMirror, D::Error> {
        let text = String::deserialize(deserializer)?;
        let fits = (text.starts_with("https://")
            || text.starts_with("http://")
            || (text.starts_with('/') && !text.split('/').any(|part| part == "..")))
            && !text.chars().any(|c| c.is_whitespace() || c.is_control());
        if fits {
            Ok(ArtifactMirror(text.trim_end_matches('/').to_string()))
        } else {
            Err(serde::de::Error::custom(format!(
                "`{text}` is neither an http(s) URL like `https://mirror.example.net/releases` nor an absolute directory on the host"
            )))
        }
    }
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
                "artifact_mirror" => "/srv/releases",
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
