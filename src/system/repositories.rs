//! Apt repositories: a deb822 `.sources` file and the signing key it
//! names, checked against its pinned fingerprint before it got here.

use super::{Difference, Item, SystemChange};
use crate::transport::functions::HostFn;
use crate::transport::program::Program;

/// Where a repository's key and `.sources` file go.
pub(crate) fn paths(name: &str) -> (String, String) {
    (
        format!("/etc/apt/keyrings/matrixctl-{name}.asc"),
        format!("/etc/apt/sources.list.d/matrixctl-{name}.sources"),
    )
}

/// A repository's deb822 `.sources` file, as role `role` writes it.
pub(crate) fn sources(role: &str, name: &str, url: &str, suite: &str, components: &str) -> String {
    let (keyring, _) = paths(name);
    format!(
        "# Managed by matrixctl (role {role}); local edits will be overwritten.\n\
         Types: deb\nURIs: {url}\nSuites: {suite}\nComponents: {components}\nSigned-By: {keyring}\n"
    )
}

/// What the host program reports for a repository that is as wanted: the
/// SHA-256 of its key file followed by its `.sources` file.
pub(crate) fn digest(key: &str, sources: &str) -> String {
    crate::hash::sha256_hex(format!("{key}{sources}").as_bytes())
}

/// `present DIGEST` or `absent`.
pub(super) fn observe(program: &mut Program, name: &str) {
    let (keyring, sources) = paths(name);
    program.call(HostFn::ObserveRepository, &[name, &keyring, &sources]);
}

pub(super) fn difference(item: &Item, words: &[&str]) -> Option<Difference> {
    let Item::Repository {
        url,
        suite,
        components,
        fingerprint,
        key,
        sources,
        ..
    } = item
    else {
        return None;
    };
    match words {
        ["present", have] if *have == digest(key, sources) => None,
        ["present", _] => Some(Difference::update(format!("{url} {suite} {components}"))),
        _ => Some(Difference::create(format!(
            "{url} {suite} {components}, key {fingerprint}"
        ))),
    }
}

/// Writes each changed repository's key and `.sources` file, then reads
/// the lists of those repositories alone.
pub(super) fn apply(program: &mut Program, changes: &[SystemChange]) {
    let mut updated = Vec::new();
    for change in changes {
        if let Item::Repository {
            name, key, sources, ..
        } = &change.item
        {
            let (keyring, sources_path) = paths(name);
            program.call_with_content(HostFn::Put, &[&keyring], key.as_bytes());
            program.call_with_content(HostFn::Put, &[&sources_path], sources.as_bytes());
            updated.push(sources_path);
        }
    }
    if !updated.is_empty() {
        let updated: Vec<&str> = updated.iter().map(String::as_str).collect();
        program.call(HostFn::AptUpdate, &updated);
    }
}
