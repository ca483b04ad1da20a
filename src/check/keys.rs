//! A server's signing keys (`GET /_matrix/key/v2/server`): the checks the
//! federation tester makes (matching server name, `valid_until_ts` in the
//! future, at least one ed25519 key, every self-signature verifying), on
//! the document's canonical JSON as the spec defines it.

use std::collections::BTreeMap;

use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Serialize;
use serde_json::Value;

/// One ed25519 key of the document, as the tester reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct KeyCheck {
    /// The key decodes to 32 bytes.
    #[serde(rename = "ValidEd25519")]
    pub valid_ed25519: bool,
    /// The server's signature with this key verifies.
    #[serde(rename = "MatchingSignature")]
    pub matching_signature: bool,
}

/// What the document says and whether it holds.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct KeyChecks {
    #[serde(rename = "MatchingServerName")]
    pub matching_server_name: bool,
    #[serde(rename = "FutureValidUntilTS")]
    pub future_valid_until_ts: bool,
    #[serde(rename = "HasEd25519Key")]
    pub has_ed25519_key: bool,
    #[serde(rename = "AllEd25519ChecksOK")]
    pub all_ed25519_checks_ok: Option<bool>,
    #[serde(rename = "Ed25519Checks")]
    pub ed25519_checks: BTreeMap<String, KeyCheck>,
    /// The `server_name` the document claims (empty when it has none).
    #[serde(skip)]
    pub claimed_server_name: String,
    /// Milliseconds since the epoch, 0 when missing.
    #[serde(skip)]
    pub valid_until_ts: u64,
    /// Key IDs that are both current (`verify_keys`) and old
    /// (`old_verify_keys`): a peer then takes the current key as expired.
    #[serde(skip)]
    pub current_and_old: Vec<String>,
}

impl KeyChecks {
    pub(crate) fn all_ok(&self) -> bool {
        self.current_and_old.is_empty()
            && self.matching_server_name
            && self.future_valid_until_ts
            && self.has_ed25519_key
            && self.all_ed25519_checks_ok == Some(true)
    }
}

/// Checks a key document fetched for `server_name`, at `now_ms`.
pub(crate) fn check(document: &Value, server_name: &str, now_ms: u64) -> KeyChecks {
    let claimed = document["server_name"].as_str().unwrap_or("").to_string();
    let valid_until_ts = document["valid_until_ts"].as_u64().unwrap_or(0);
    let signed = signed_bytes(document);
    let mut ed25519_checks = BTreeMap::new();
    if let Some(keys) = document["verify_keys"].as_object() {
        for (key_id, entry) in keys {
            if !key_id.starts_with("ed25519:") {
                continue;
            }
            let key = entry["key"].as_str().and_then(decode_base64);
            let verifying = key
                .as_deref()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok());
            let signature = document["signatures"][claimed.as_str()][key_id.as_str()]
                .as_str()
                .and_then(decode_base64)
                .and_then(|bytes| <[u8; 64]>::try_from(bytes.as_slice()).ok())
                .map(|bytes| Signature::from_bytes(&bytes));
            let matching_signature = match (&verifying, signature) {
                (Some(key), Some(signature)) => key.verify_strict(&signed, &signature).is_ok(),
                _ => false,
            };
            ed25519_checks.insert(
                key_id.clone(),
                KeyCheck {
                    valid_ed25519: verifying.is_some(),
                    matching_signature,
                },
            );
        }
    }
    let current_and_old = document["verify_keys"]
        .as_object()
        .zip(document["old_verify_keys"].as_object())
        .map(|(current, old)| {
            current
                .keys()
                .filter(|key_id| old.contains_key(*key_id))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    KeyChecks {
        current_and_old,
        matching_server_name: claimed == server_name,
        future_valid_until_ts: valid_until_ts > now_ms,
        has_ed25519_key: !ed25519_checks.is_empty(),
        all_ed25519_checks_ok: (!ed25519_checks.is_empty()).then(|| {
            ed25519_checks
                .values()
                .all(|check| check.valid_ed25519 && check.matching_signature)
        }),
        ed25519_checks,
        claimed_server_name: claimed,
        valid_until_ts,
    }
}

/// The bytes a server signs: the document without `signatures` and
/// `unsigned`, as canonical JSON.
pub(crate) fn signed_bytes(document: &Value) -> Vec<u8> {
    let mut stripped = document.clone();
    if let Some(object) = stripped.as_object_mut() {
        object.remove("signatures");
        object.remove("unsigned");
    }
    canonical_json(&stripped).into_bytes()
}

/// The spec's canonical JSON: keys sorted by code point at every level,
/// no insignificant whitespace, UTF-8 unescaped but for what JSON must
/// escape (serde_json escapes exactly that, with lower-case hex).
pub(crate) fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(object) => {
                // UTF-8 byte order is code point order.
                let ordered: BTreeMap<&String, Value> = object
                    .iter()
                    .map(|(key, value)| (key, sorted(value)))
                    .collect();
                let mut map = serde_json::Map::new();
                for (key, value) in ordered {
                    map.insert(key.clone(), value);
                }
                Value::Object(map)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sorted(value)).unwrap_or_default()
}

/// Matrix sends unpadded standard base64; padded is accepted too.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn unpadded(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
    }

    fn signed_document(server_name: &str, signer: &SigningKey, valid_until_ts: u64) -> Value {
        let mut document = serde_json::json!({
            "server_name": server_name,
            "valid_until_ts": valid_until_ts,
            "old_verify_keys": {},
            "verify_keys": {"ed25519:a_1": {"key": unpadded(signer.verifying_key().as_bytes())}},
        });
        let signature = signer.sign(&signed_bytes(&document));
        document["signatures"] =
            serde_json::json!({server_name: {"ed25519:a_1": unpadded(&signature.to_bytes())}});
        document
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let value: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"d": [1, {"z": "é", "y": null}], "c": true}}"#)
                .unwrap();
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{"c":true,"d":[1,{"y":null,"z":"é"}]},"b":1}"#
        );
    }

    #[test]
    fn a_document_signed_by_its_own_key_passes_and_a_changed_one_does_not() {
        let signer = SigningKey::from_bytes(&[7; 32]);
        let document = signed_document("example.com", &signer, 2_000);
        let checks = check(&document, "example.com", 1_000);
        assert!(checks.all_ok(), "{checks:?}");

        let mut tampered = document.clone();
        tampered["valid_until_ts"] = 3_000.into();
        let checks = check(&tampered, "example.com", 1_000);
        assert_eq!(checks.all_ed25519_checks_ok, Some(false));
        assert!(checks.ed25519_checks["ed25519:a_1"].valid_ed25519);

        let checks = check(&document, "other.example", 1_000);
        assert!(!checks.matching_server_name);
        let checks = check(&document, "example.com", 2_000);
        assert!(!checks.future_valid_until_ts);

        let mut keyless = document;
        keyless["verify_keys"] = serde_json::json!({});
        let checks = check(&keyless, "example.com", 1_000);
        assert!(!checks.has_ed25519_key);
        assert_eq!(checks.all_ed25519_checks_ok, None);
    }
}
