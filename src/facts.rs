//! What a host says about itself, for roles' conditions and templates:
//! its release (from /etc/os-release) and the versions of the packages the
//! templates ask about (installed, or what apt would install). They come
//! from the plan's observation of the host, in the same round trip.
//!
//! Templates see them as `host`: `host.release` (`trixie`),
//! `host.release_version` (`13`), `host.os` (`debian`) and
//! `host.packages.NAME` (a Debian version, or none). Before the host has
//! been asked (the first render, `matrixctl render`, a host that is a
//! directory) every fact is none, and the object notes which packages were
//! asked about so the observation can answer for them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use minijinja::Value;
use minijinja::value::{Enumerator, Object};

/// The facts of one host; every field is unknown (`None`, empty) until the
/// host is observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostFacts {
    /// `ID` of /etc/os-release: `debian`, `ubuntu`.
    pub os: Option<String>,
    /// `VERSION_CODENAME`: `trixie`, `bookworm`, `noble`.
    pub release: Option<String>,
    /// `VERSION_ID`: `13`, `24.04`.
    pub release_version: Option<String>,
    /// Package name to its version: the installed one, or else the one apt
    /// would install now (its candidate). A package apt knows nothing of
    /// is absent.
    pub packages: BTreeMap<String, String>,
}

/// `host` in a template: the facts, noting whether any was read and which
/// packages were asked about.
#[derive(Debug)]
pub(crate) struct FactsObject {
    facts: HostFacts,
    read: AtomicBool,
    asked: Mutex<BTreeSet<String>>,
}

/// `host.packages`: a package's version by name, none when unknown.
#[derive(Debug)]
struct PackagesObject(Arc<FactsObject>);

impl FactsObject {
    pub(crate) fn new(facts: HostFacts) -> Arc<FactsObject> {
        Arc::new(FactsObject {
            facts,
            read: AtomicBool::new(false),
            asked: Mutex::new(BTreeSet::new()),
        })
    }

    /// Whether a template, condition or note read any fact.
    pub(crate) fn was_read(&self) -> bool {
        self.read.load(Ordering::Relaxed)
    }

    /// The packages whose versions were asked about, for the observation.
    pub(crate) fn asked_packages(&self) -> BTreeSet<String> {
        self.asked
            .lock()
            .map(|asked| asked.clone())
            .unwrap_or_default()
    }
}

fn optional(value: &Option<String>) -> Value {
    value.as_deref().map_or(Value::from(()), Value::from)
}

impl Object for FactsObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.read.store(true, Ordering::Relaxed);
        Some(match key.as_str()? {
            "os" => optional(&self.facts.os),
            "release" => optional(&self.facts.release),
            "release_version" => optional(&self.facts.release_version),
            "packages" => Value::from_object(PackagesObject(self.clone())),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["os", "release", "release_version", "packages"])
    }
}

impl Object for PackagesObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        let facts = &self.0;
        facts.read.store(true, Ordering::Relaxed);
        // Only a name a package could have is asked about on the host.
        if is_package_name(name)
            && let Ok(mut asked) = facts.asked.lock()
        {
            asked.insert(name.to_string());
        }
        Some(optional(&facts.facts.packages.get(name).cloned()))
    }
}

/// Debian's package names: lower-case letters, digits, `+`, `-` and `.`,
/// beginning with a letter or digit, two characters at least.
fn is_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// `VERSION is version_at_least(MINIMUM)`: Debian's ordering (epoch,
/// upstream version, revision; `~` sorts before anything). An unknown
/// version (none, empty) is at least nothing.
pub(crate) fn version_at_least(version: Value, minimum: &str) -> bool {
    match version.as_str() {
        Some(version) if !version.is_empty() => {
            compare_versions(version, minimum) != std::cmp::Ordering::Less
        }
        _ => false,
    }
}

/// `VERSION | version_prefix(N)`: the first N numbers of the upstream
/// version (`3.13.5-1` by 2 is `3.13`, `17+278` by 1 is `17`); none for an
/// unknown version.
pub(crate) fn version_prefix(version: Value, count: usize) -> Value {
    let Some(version) = version.as_str().filter(|version| !version.is_empty()) else {
        return Value::from(());
    };
    let (_, upstream, _) = split_version(version);
    let numbers: Vec<&str> = upstream
        .split(|c: char| !c.is_ascii_digit())
        .take_while(|part| !part.is_empty())
        .take(count)
        .collect();
    Value::from(numbers.join("."))
}

/// Epoch, upstream version and revision of a Debian version.
fn split_version(version: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) => {
            (epoch.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, version),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// Two Debian versions in dpkg's order.
pub(crate) fn compare_versions(left: &str, right: &str) -> std::cmp::Ordering {
    let (left_epoch, left_upstream, left_revision) = split_version(left);
    let (right_epoch, right_upstream, right_revision) = split_version(right);
    left_epoch
        .cmp(&right_epoch)
        .then_with(|| compare_part(left_upstream, right_upstream))
        .then_with(|| compare_part(left_revision, right_revision))
}

/// dpkg's `verrevcmp`: runs of non-digits compared character by character
/// (letters first, then other characters, `~` before even the end), then
/// runs of digits compared as numbers.
fn compare_part(left: &str, right: &str) -> std::cmp::Ordering {
    fn order(c: Option<u8>) -> i32 {
        match c {
            None => 0,
            Some(b'~') => -1,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(c),
            Some(c) => i32::from(c) + 256,
        }
    }
    let (left, right) = (left.as_bytes(), right.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < left.len() || j < right.len() {
        while (i < left.len() && !digit(left, i)) || (j < right.len() && !digit(right, j)) {
            let (a, b) = (order(left.get(i).copied()), order(right.get(j).copied()));
            if a != b {
                return a.cmp(&b);
            }
            i += 1;
            j += 1;
        }
        while left.get(i) == Some(&b'0') {
            i += 1;
        }
        while right.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_difference = std::cmp::Ordering::Equal;
        while digit(left, i) && digit(right, j) {
            if first_difference == std::cmp::Ordering::Equal {
                first_difference = left[i].cmp(&right[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(left, i) {
            return std::cmp::Ordering::Greater;
        }
        if digit(right, j) {
            return std::cmp::Ordering::Less;
        }
        if first_difference != std::cmp::Ordering::Equal {
            return first_difference;
        }
    }
    std::cmp::Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::{Equal, Greater, Less};

    #[test]
    fn versions_compare_as_dpkg_compares_them() {
        for (left, right, expected) in [
            ("1.26.3-3+deb13u1", "1.25.1", Greater),
            ("1.22.1-9+deb12u2", "1.25.1", Less),
            ("1.25.1", "1.25.1", Equal),
            ("1.25.1-1", "1.25.1", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0+dfsg", Less),
            ("1:0.9", "2.0", Greater),
            ("1.10", "1.9", Greater),
            ("1.010", "1.10", Equal),
            ("1.0a", "1.0-1", Greater),
            ("17+278", "17", Greater),
            ("2.0", "10.0", Less),
        ] {
            assert_eq!(
                compare_versions(left, right),
                expected,
                "{left} against {right}"
            );
            assert_eq!(
                compare_versions(right, left),
                expected.reverse(),
                "{right} against {left}"
            );
        }
    }

    #[test]
    fn an_unknown_version_is_at_least_nothing_and_prefixes_cut_numbers() {
        assert!(version_at_least(Value::from("1.26.3-3"), "1.25.1"));
        assert!(!version_at_least(Value::from("1.24.0-2ubuntu7"), "1.25.1"));
        assert!(!version_at_least(Value::from(()), "0"));
        assert!(!version_at_least(Value::from(""), "0"));
        let prefix = |version: &str, count| version_prefix(Value::from(version), count).to_string();
        assert_eq!(prefix("3.13.5-1", 2), "3.13");
        assert_eq!(prefix("17+278", 1), "17");
        assert_eq!(prefix("1:2.4.62-1~deb12u2", 1), "2");
        assert!(version_prefix(Value::from(()), 1).is_none());
    }

    #[test]
    fn the_facts_object_notes_reads_and_the_packages_asked_about() {
        let env = minijinja::Environment::new();
        let facts = FactsObject::new(HostFacts {
            release: Some("trixie".into()),
            packages: BTreeMap::from([("hello".to_string(), "1.26.3-3".to_string())]),
            ..HostFacts::default()
        });
        let context = minijinja::context! { host => Value::from_dyn_object(facts.clone()) };
        assert!(!facts.was_read());
        let text = env
            .render_str(
                "{{ host.release }} {{ host.packages.hello }} {{ host.packages.absent is none }} {{ host.packages['*'] is none }}",
                context,
            )
            .unwrap();
        assert_eq!(text, "trixie 1.26.3-3 True True");
        assert!(facts.was_read());
        assert_eq!(
            facts.asked_packages(),
            BTreeSet::from(["absent".to_string(), "hello".to_string()])
        );
    }
}
