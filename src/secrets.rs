//! Per-host secrets, derived from one master key, and the redaction of every
//! secret value from everything matrixctl prints.
//!
//! A secret is HMAC-SHA256(master key, label ‖ host ‖ generation). The
//! roles declare their secrets; each name is its own label, and no two
//! roles may declare the same one, so no two purposes share a value by
//! accident. Cryptographic identities that must never be copied (a
//! homeserver's signing key) are not derived here at all: the host
//! generates them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use aho_corasick::AhoCorasick;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

use crate::problem::Problem;

/// The name of a secret a role declares (its manifest's `secrets:`), as
/// templates read it (`secrets.NAME`). The name is also the derivation
/// label, so no two names can share a value; the role set refuses two
/// roles declaring the same name, so no two roles share one by accident.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SecretName(String);

impl SecretName {
    /// A name of lowercase letters, digits and `_`, starting with a letter.
    pub fn new(name: &str) -> Option<SecretName> {
        let mut bytes = name.bytes();
        let valid = matches!(bytes.next(), Some(b'a'..=b'z'))
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && name.len() <= 64;
        valid.then(|| SecretName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SecretName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<SecretName, D::Error> {
        let text = String::deserialize(deserializer)?;
        SecretName::new(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{text}` is not a secret name (lowercase letters, digits and `_`)"
            ))
        })
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The inventory's master key (`secrets/master.key`).
pub struct MasterKey(Vec<u8>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// The minimum key length: 32 bytes, the HMAC-SHA256 block-size sweet spot.
const MIN_KEY_BYTES: usize = 32;

/// The longest key accepted: no real key is longer, and every secret
/// value (the key included) is a pattern of the redactor.
const MAX_KEY_BYTES: usize = 1024;

/// The key file read at most (a key plus generous whitespace).
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Random base64 has about 6 bits per byte, random hex 4; a phrase or a
/// repeated byte far less.
const MIN_BITS_PER_BYTE: f64 = 3.0;

/// The Shannon entropy of the key's byte histogram: one linear pass.
fn bits_per_byte(key: &[u8]) -> f64 {
    let mut counts = [0usize; 256];
    for &byte in key {
        counts[usize::from(byte)] += 1;
    }
    let total = key.len() as f64;
    counts
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| {
            let share = count as f64 / total;
            share * (total / count as f64).log2()
        })
        .sum()
}

/// How a key published with an example begins (inventory.example's): its
/// file's mode protects nothing, since everyone can read the repository.
const DEMO_KEY_PREFIX: &[u8] = b"DEMO-ONLY-";

/// Every run warns while the key can be read by anyone but its owner (not
/// an error: a key copied by a tool that drops modes still works). A
/// published demo key is never warned about: git checks it out 0644 on
/// every clone, and no mode could make it secret.
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = fs_err::metadata(path) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "warning: the master key {} can be read by others (mode {mode:04o}); every secret derives from it\nhint: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
    }
}

impl MasterKey {
    pub fn load(path: &Path) -> Result<MasterKey, Problem> {
        let hint = || {
            Some(format!(
                "create one with `mkdir -p {dir} && head -c 48 /dev/urandom | base64 > {path} && chmod 600 {path}`",
                dir = path.parent().unwrap_or(Path::new(".")).display(),
                path = path.display()
            ))
        };
        if path.symlink_metadata().is_err() {
            return Err(Problem::new("the inventory has no master key")
                .in_file(path)
                .with_hint(hint()));
        }
        let inventory = path.parent().and_then(Path::parent);
        let bytes = crate::input::read_bytes(path, inventory, MAX_KEY_FILE_BYTES)
            .map_err(|problem| problem.with_hint(hint()))?;
        let key = bytes.trim_ascii().to_vec();
        if key.len() < MIN_KEY_BYTES {
            return Err(Problem::new(format!(
                "the master key is too short: {} bytes, at least {MIN_KEY_BYTES} needed",
                key.len()
            ))
            .in_file(path)
            .with_hint(hint()));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(Problem::new(format!(
                "the master key is too long: {} bytes, at most {MAX_KEY_BYTES}",
                key.len()
            ))
            .in_file(path)
            .with_hint(hint()));
        }
        let bits = bits_per_byte(&key);
        if bits < MIN_BITS_PER_BYTE {
            return Err(Problem::new(format!(
                "the master key looks far from random ({bits:.1} bits per byte, at least {MIN_BITS_PER_BYTE} expected): every secret derives from it"
            ))
            .in_file(path)
            .with_hint(hint()));
        }
        if !key.starts_with(DEMO_KEY_PREFIX) {
            warn_if_readable_by_others(path);
        }
        Ok(MasterKey(key))
    }

    #[cfg(test)]
    pub fn from_bytes(bytes: &[u8]) -> MasterKey {
        MasterKey(bytes.to_vec())
    }

    /// The value of one secret for one host. Inputs are length-prefixed so
    /// that no (label, host) pair can be spelled like another.
    pub fn derive(&self, host: &str, name: &SecretName, generation: u32) -> String {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        for field in [
            b"matrixctl-secret-v1".as_slice(),
            name.as_str().as_bytes(),
            host.as_bytes(),
            &generation.to_be_bytes(),
        ] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// Every value this key ever gave (or gives) `host`'s secrets, up to the
    /// current generations: old values still sit in files on the host until
    /// apply replaces them, and must be redacted from diffs too.
    pub fn all_generations(
        &self,
        host: &str,
        names: &[SecretName],
        generations: &BTreeMap<SecretName, u32>,
    ) -> Vec<String> {
        names
            .iter()
            .flat_map(|name| {
                let current = generations.get(name).copied().unwrap_or(0);
                (0..=current).map(move |generation| self.derive(host, name, generation))
            })
            .collect()
    }

    pub fn as_text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

/// Replaces every known secret value with `<redacted>`, in one pass. Its
/// automaton is built on first use: a whole inventory's secrets make a big
/// one, and a run that prints nothing secret-bearing (a render that
/// succeeds) never needs it.
#[derive(Clone)]
pub struct Redactor {
    values: Arc<[String]>,
    matcher: Arc<OnceLock<Option<AhoCorasick>>>,
}

/// Values shorter than this are not redacted: a 3-character "secret" would
/// blank out ordinary words everywhere, and is no secret anyway.
const MIN_REDACTED_LEN: usize = 6;

pub(crate) const REDACTED: &str = "<redacted>";

impl Redactor {
    pub fn new<I: IntoIterator<Item = String>>(values: I) -> Redactor {
        let values: Vec<String> = values
            .into_iter()
            .filter(|value| value.len() >= MIN_REDACTED_LEN)
            .collect();
        Redactor {
            values: values.into(),
            matcher: Arc::default(),
        }
    }

    pub fn none() -> Redactor {
        Redactor::new(Vec::new())
    }

    fn matcher(&self) -> Option<&AhoCorasick> {
        self.matcher
            .get_or_init(|| {
                let mut values = self.values.to_vec();
                // Longest first, so a secret that contains another is hidden whole.
                values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
                values.dedup();
                (!values.is_empty()).then(|| {
                    AhoCorasick::builder()
                        .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                        .kind(Some(aho_corasick::AhoCorasickKind::NoncontiguousNFA))
                        .build(&values)
                        .expect("literal patterns always build")
                })
            })
            .as_ref()
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.matcher() {
            Some(matcher) if matcher.is_match(text) => Cow::Owned(
                matcher.replace_all(text, &[REDACTED][..].repeat(matcher.patterns_len())),
            ),
            _ => Cow::Borrowed(text),
        }
    }

    /// Whether `text` holds any secret.
    pub fn finds_secret_in(&self, text: &[u8]) -> bool {
        self.matcher().is_some_and(|matcher| matcher.is_match(text))
    }
}

/// Whether a text holds one of a host's own secrets, for deciding that a
/// rendered file is sensitive: a substring search per secret. A host has
/// a handful, so this is cheaper than a [`Redactor`]'s automaton, whose
/// build would be paid for every host of a render.
pub(crate) struct SecretFinder {
    finders: Vec<memchr::memmem::Finder<'static>>,
}

impl SecretFinder {
    pub(crate) fn new<I: IntoIterator<Item = String>>(values: I) -> SecretFinder {
        // The same values a Redactor would hide.
        let finders = values
            .into_iter()
            .filter(|value| value.len() >= MIN_REDACTED_LEN)
            .map(|value| memchr::memmem::Finder::new(value.as_bytes()).into_owned())
            .collect();
        SecretFinder { finders }
    }

    /// Whether `text` holds any of the secrets.
    pub(crate) fn finds_secret_in(&self, text: &[u8]) -> bool {
        self.finders
            .iter()
            .any(|finder| finder.find(text).is_some())
    }
}

// Here, not in problem.rs: a problem knows nothing of secrets, and the
// redactor is what knows them.
impl crate::problem::Problem {
    /// The same problem with every known secret value replaced, in every
    /// part that is printed: errors pass the redactor like plans do.
    pub fn redacted(self, redactor: &Redactor) -> Problem {
        let clean = |text: String| redactor.redact(&text).into_owned();
        Problem {
            message: clean(self.message),
            key: self.key.map(clean),
            detail: self.detail.map(clean),
            hint: self.hint.map(clean),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_secret_is_distinct_across_hosts_names_and_generations() {
        let key = MasterKey::from_bytes(&[7; 32]);
        let hosts = [
            "example.com",
            "example.org",
            "a.example.com",
            "b.example.com",
        ];
        let mut seen = BTreeSet::new();
        let mut count = 0;
        let names: Vec<SecretName> = ["form_secret", "shared_secret", "an_app_token"]
            .iter()
            .map(|name| SecretName::new(name).unwrap())
            .collect();
        for host in hosts {
            for name in &names {
                for generation in 0..3 {
                    let value = key.derive(host, name, generation);
                    assert_eq!(value.len(), 64);
                    seen.insert(value);
                    count += 1;
                }
            }
        }
        assert_eq!(seen.len(), count);
    }

    #[test]
    fn derivation_is_stable() {
        let key = MasterKey::from_bytes(b"0123456789abcdef0123456789abcdef");
        let form = SecretName::new("form_secret").unwrap();
        assert_eq!(
            key.derive("example.com", &form, 0),
            key.derive("example.com", &form, 0)
        );
        assert_ne!(
            key.derive("example.com", &form, 0),
            key.derive("example.com", &form, 1)
        );
    }

    #[test]
    fn redaction_hides_every_occurrence() {
        let redactor = Redactor::new(["s3cr3t-value".to_string(), "ab".to_string()]);
        assert_eq!(
            redactor.redact("a s3cr3t-value and s3cr3t-value ab"),
            "a <redacted> and <redacted> ab"
        );
        assert!(redactor.finds_secret_in(b"xx s3cr3t-value"));
        assert!(!redactor.finds_secret_in(b"nothing here"));
    }
}
