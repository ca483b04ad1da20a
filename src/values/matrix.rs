//! Value types of the Matrix protocol that vars are held to: user IDs,
//! durations (as homeservers write them) and how a server delegates
//! discovery. Parsing makes bad values impossible; what they mean on a host
//! is in the roles' templates.

use serde::{Deserialize, Deserializer, Serialize};

use super::{DnsName, describe_value};

/// A Matrix user ID, `@localpart:server.name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub(crate) struct MatrixId(String);

impl<'de> Deserialize<'de> for MatrixId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<MatrixId, D::Error> {
        let text = String::deserialize(deserializer)?;
        let invalid = |why: &str| {
            serde::de::Error::custom(format!(
                "`{text}` is not a Matrix user ID ({why}); write it like `@alice:example.com`"
            ))
        };
        let rest = text
            .strip_prefix('@')
            .ok_or_else(|| invalid("it must start with `@`"))?;
        let (localpart, server) = rest
            .split_once(':')
            .ok_or_else(|| invalid("it needs `:` and a server name"))?;
        let localpart_ok = !localpart.is_empty()
            && localpart
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._=-/+".contains(&b));
        if !localpart_ok {
            return Err(invalid(
                "the part before `:` may hold only a-z, 0-9 and ._=-/+",
            ));
        }
        let host = match server.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host,
            _ => server,
        };
        host.parse::<DnsName>()
            .map_err(|error| invalid(&error.reason))?;
        if text.len() > 255 {
            return Err(invalid("it is longer than 255 characters"));
        }
        Ok(MatrixId(text))
    }
}

/// A duration as homeservers write it: milliseconds, or a number with s,
/// m, h, d, w or y.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub(crate) enum Duration {
    Milliseconds(u64),
    Text(String),
}

impl Duration {
    /// Whether the duration is nothing at all (`0`, `0s`, `0h`, …).
    pub(crate) fn is_zero(&self) -> bool {
        match self {
            Duration::Milliseconds(ms) => *ms == 0,
            Duration::Text(text) => text
                .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                .bytes()
                .all(|b| b == b'0'),
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let value = serde_yaml::Value::deserialize(deserializer)?;
        let complaint = || {
            serde::de::Error::custom(format!(
                "expected a duration like `30d` (a number with s, m, h, d, w or y, or milliseconds), found {}",
                describe_value(&value)
            ))
        };
        match &value {
            serde_yaml::Value::Number(number) => number
                .as_u64()
                .map(Duration::Milliseconds)
                .ok_or_else(complaint),
            serde_yaml::Value::String(text) => {
                // By characters, not bytes: the input may end in any character.
                let cut = text.char_indices().last().map_or(0, |(index, _)| index);
                let (digits, unit) = text.split_at(cut);
                let valid = !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && matches!(unit, "s" | "m" | "h" | "d" | "w" | "y");
                if valid {
                    Ok(Duration::Text(text.clone()))
                } else {
                    Err(complaint())
                }
            }
            _ => Err(complaint()),
        }
    }
}

/// How other servers find this one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delegation {
    /// `/.well-known/matrix/server` on the server name points to MATRIX_FQDN.
    #[default]
    WellKnown,
    /// A `_matrix-fed._tcp` SRV record, which the operator creates.
    Srv,
    /// No delegation: the homeserver is reached at the server name itself.
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_matrix_ids_never_panic() {
        for text in ["90d", "1h", "5é", "é", "", "d", "12"] {
            let _ = serde_yaml::from_str::<Duration>(&format!("\"{text}\""));
        }
        assert!(serde_yaml::from_str::<Duration>("\"90d\"").is_ok());
        assert!(serde_yaml::from_str::<Duration>("\"9é\"").is_err());
        assert!(serde_yaml::from_str::<MatrixId>("\"@alice:example.com\"").is_ok());
        for bad in [
            "alice",
            "@:x.com",
            "@Alice:example.com",
            "@a:",
            "@a:b:c:d",
            "@é:x.com",
        ] {
            assert!(
                serde_yaml::from_str::<MatrixId>(&format!("\"{bad}\"")).is_err(),
                "{bad}"
            );
        }
    }
}
