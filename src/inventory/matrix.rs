//! Typed vars for what a Matrix host runs: Synapse's settings, registration,
//! sign-in, federation and discovery. Parsing makes bad values impossible;
//! `check` refuses the combinations Synapse itself would refuse at start-up,
//! at plan time, with the reason. What the values mean on the host is in the
//! templates: this module only knows their shapes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::schema::{CoreVars, DnsName, SecretValue, describe_value};

/// Top-level Synapse options written by matrixctl's templates. An extra
/// key (`synapse_extra`) may not collide with one: Synapse merges conf.d
/// files shallowly, so the later file would silently win.
pub const MANAGED_SYNAPSE_KEYS: &[(&str, &str)] = &[
    ("admin_contact", "admin_contact"),
    ("app_service_config_files", "bridges"),
    (
        "allow_public_rooms_over_federation",
        "allow_public_rooms_over_federation",
    ),
    ("allowed_avatar_mimetypes", "allowed_avatar_mimetypes"),
    ("database", "database"),
    ("delete_stale_devices_after", "delete_stale_devices_after"),
    ("email", "email"),
    ("enable_authenticated_media", "(always on)"),
    ("enable_registration", "registration"),
    (
        "enable_registration_without_verification",
        "open_registration_acknowledged",
    ),
    ("federation_domain_whitelist", "federation"),
    ("filter_timeline_limit", "filter_timeline_limit"),
    (
        "forgotten_room_retention_period",
        "forgotten_room_retention_period",
    ),
    ("form_secret", "secrets.form_secret"),
    ("ip_range_blacklist", "(the recommended list)"),
    ("listeners", "synapse_listener_port"),
    ("log_config", "synapse_log_config"),
    ("macaroon_secret_key", "secrets.macaroon_secret_key"),
    ("mau_stats_only", "mau_stats_only"),
    ("max_avatar_size", "max_avatar_size"),
    ("max_upload_size", "max_upload_size"),
    ("media_store_path", "synapse_data_dir"),
    ("modules", "ldap"),
    ("oidc_providers", "oidc_providers"),
    ("password_config", "password_auth and password_policy"),
    ("presence", "presence"),
    ("public_baseurl", "matrix_fqdn"),
    ("registration_requires_token", "registration"),
    (
        "registration_shared_secret",
        "secrets.registration_shared_secret",
    ),
    ("registrations_require_3pid", "registration_requires_email"),
    ("report_stats", "report_stats"),
    (
        "require_auth_for_profile_requests",
        "require_auth_for_profile_requests",
    ),
    ("server_name", "the host's name in hosts.yaml"),
    ("server_notices", "server_notices"),
    ("signing_key_path", "synapse_signing_key_path"),
    ("url_preview_enabled", "url_previews"),
    ("turn_allow_guests", "turn.allow_guests"),
    ("turn_shared_secret", "secrets.turn_shared_secret"),
    ("turn_uris", "turn"),
    ("turn_user_lifetime", "turn.lifetime"),
    ("url_preview_ip_range_blacklist", "(the recommended list)"),
    ("user_consent", "consent"),
];

/// Every top-level key Synapse reads, from its own code
/// (`scripts/synapse-known-keys`; a test keeps this list current).
const SYNAPSE_KEYS: &str = include_str!("synapse_keys.txt");

/// A Matrix user ID, `@localpart:server.name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MatrixId(String);

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

/// A duration as Synapse reads it: milliseconds, or a number with s, m, h,
/// d, w or y.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Duration {
    Milliseconds(u64),
    Text(String),
}

impl Duration {
    /// Whether the duration is nothing at all (`0`, `0s`, `0h`, …).
    pub fn is_zero(&self) -> bool {
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

/// An `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct HttpsUrl(String);

impl<'de> Deserialize<'de> for HttpsUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<HttpsUrl, D::Error> {
        let text = String::deserialize(deserializer)?;
        let host = text
            .strip_prefix("https://")
            .map(|rest| rest.split(['/', ':', '?', '#']).next().unwrap_or(""));
        match host {
            Some(host) if !host.is_empty() && !text.contains(char::is_whitespace) => {
                Ok(HttpsUrl(text))
            }
            _ => Err(serde::de::Error::custom(format!(
                "`{text}` is not an https:// URL"
            ))),
        }
    }
}

/// Who this host federates with. Templates see `"open"`, `"closed"` or
/// the list of servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Federation {
    /// With every server.
    #[default]
    Open,
    /// With none.
    Closed,
    /// With these servers only.
    AllowList(Vec<DnsName>),
}

impl Serialize for Federation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Federation::Open => serializer.serialize_str("open"),
            Federation::Closed => serializer.serialize_str("closed"),
            Federation::AllowList(servers) => servers.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Federation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Federation, D::Error> {
        let value = serde_yaml::Value::deserialize(deserializer)?;
        match &value {
            serde_yaml::Value::String(mode) if mode == "open" => Ok(Federation::Open),
            serde_yaml::Value::String(mode) if mode == "closed" => Ok(Federation::Closed),
            serde_yaml::Value::Sequence(_) => {
                let servers: Vec<DnsName> =
                    serde_yaml::from_value(value.clone()).map_err(serde::de::Error::custom)?;
                Ok(Federation::AllowList(servers))
            }
            other => Err(serde::de::Error::custom(format!(
                "expected `open`, `closed` or a list of server names to federate with, found {}",
                describe_value(other)
            ))),
        }
    }
}

/// One OpenID Connect identity provider for single sign-on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a map describing one OIDC provider")]
pub struct OidcProvider {
    pub idp_id: String,
    pub idp_name: String,
    pub issuer: HttpsUrl,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<SecretValue>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    #[serde(default = "default_localpart_template")]
    pub localpart_template: String,
    #[serde(default = "default_display_name_template")]
    pub display_name_template: String,
    #[serde(default)]
    pub email_template: Option<String>,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into()]
}
fn default_localpart_template() -> String {
    "{{ user.preferred_username }}".to_string()
}
fn default_display_name_template() -> String {
    "{{ user.name }}".to_string()
}

/// `/.well-known/matrix/support` (MSC1929).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a map with `contacts` and/or `support_page`"
)]
pub struct Support {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<SupportContact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support_page: Option<HttpsUrl>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a map describing one support contact"
)]
pub struct SupportContact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix_id: Option<MatrixId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_address: Option<String>,
    /// `m.role.admin`, `m.role.security`, or a namespaced role of your own.
    #[serde(default = "default_role")]
    pub role: String,
}

fn default_role() -> String {
    "m.role.admin".to_string()
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
    /// No delegation: Synapse is reached at the server name itself.
    None,
}

/// Extra top-level Synapse options, passed through as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct SynapseExtra(pub BTreeMap<String, serde_yaml::Value>);

impl<'de> Deserialize<'de> for SynapseExtra {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SynapseExtra, D::Error> {
        let map = BTreeMap::<String, serde_yaml::Value>::deserialize(deserializer)?;
        let known: BTreeSet<&str> = SYNAPSE_KEYS.lines().collect();
        for key in map.keys() {
            if let Some((_, instead)) = MANAGED_SYNAPSE_KEYS
                .iter()
                .find(|(managed, _)| managed == key)
            {
                return Err(serde::de::Error::custom(format!(
                    "`{key}` is written by matrixctl (from {instead}); an extra value would silently replace it"
                )));
            }
            if !known.contains(key.as_str()) {
                let hint = crate::problem::did_you_mean(key, known.iter().copied())
                    .map(|hint| format!(" ({hint})"))
                    .unwrap_or_default();
                return Err(serde::de::Error::custom(format!(
                    "`{key}` is not an option Synapse knows{hint}; Synapse would silently ignore it"
                )));
            }
        }
        Ok(SynapseExtra(map))
    }
}

/// A combination that Synapse (or a client) would refuse: where, why, and
/// what to do.
pub struct Refusal {
    pub key: Vec<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Debug for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key.join("."), self.message)
    }
}

fn refusal(key: &[&str], message: impl Into<String>, hint: Option<&str>) -> Refusal {
    Refusal {
        key: key.iter().map(|part| part.to_string()).collect(),
        message: message.into(),
        hint: hint.map(str::to_string),
    }
}

/// The combinations Synapse would refuse at start-up (or that would leave
/// a host broken), refused here at plan time instead.
pub fn check(vars: &CoreVars) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    let mut idp_ids = BTreeSet::new();
    for (index, provider) in vars.oidc_providers.iter().enumerate() {
        let id_ok = !provider.idp_id.is_empty()
            && provider.idp_id.len() <= 250
            && provider
                .idp_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b));
        let position = format!("oidc_providers[{index}]");
        if !id_ok {
            refusals.push(refusal(
                &[&position, "idp_id"],
                format!(
                    "`{}` is not a valid idp_id: use letters, digits and . _ ~ -",
                    provider.idp_id
                ),
                None,
            ));
        }
        if !idp_ids.insert(provider.idp_id.as_str()) {
            refusals.push(refusal(
                &[&position, "idp_id"],
                format!("two providers use idp_id `{}`", provider.idp_id),
                None,
            ));
        }
    }
    for key in vars.well_known_client_extra.keys() {
        // Discovery keys are case-sensitive for clients, so a spelling that
        // differs only in case is a mistake, never a new key.
        let folded = key.to_ascii_lowercase();
        if folded == "m.homeserver" || folded == "m.identity_server" {
            refusals.push(refusal(
                &["well_known_client_extra"],
                format!("`{key}` is written by matrixctl (from matrix_fqdn and identity_server)"),
                None,
            ));
        } else if folded == "m.server" {
            refusals.push(refusal(
                &["well_known_client_extra"],
                format!("`{key}` belongs in /.well-known/matrix/server, not in the client file"),
                Some("delegation is set by `delegation` and `federation_port`; remove this key"),
            ));
        } else if !key.contains('.') {
            refusals.push(refusal(
                &["well_known_client_extra"],
                format!("`{key}` is not namespaced: the spec wants keys like `io.element.e2ee`"),
                None,
            ));
        }
    }
    if let Some(support) = &vars.support {
        if support.contacts.is_empty() && support.support_page.is_none() {
            refusals.push(refusal(
                &["support"],
                "support needs `contacts` or a `support_page`",
                None,
            ));
        }
        for (index, contact) in support.contacts.iter().enumerate() {
            let position = format!("contacts[{index}]");
            if contact.matrix_id.is_none() && contact.email_address.is_none() {
                refusals.push(refusal(
                    &["support", &position],
                    "a support contact needs a `matrix_id` or an `email_address`",
                    None,
                ));
            }
            let role_ok = matches!(contact.role.as_str(), "m.role.admin" | "m.role.security")
                || (!contact.role.starts_with("m.") && contact.role.contains('.'));
            if !role_ok {
                refusals.push(refusal(
                    &["support", &position, "role"],
                    format!("`{}` is not a support role", contact.role),
                    Some("use `m.role.admin`, `m.role.security`, or a namespaced role like `com.example.billing`"),
                ));
            }
            if let Some(email) = &contact.email_address
                && !email.contains('@')
            {
                refusals.push(refusal(
                    &["support", &position, "email_address"],
                    format!("`{email}` is not an email address"),
                    None,
                ));
            }
        }
    }
    refusals
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
