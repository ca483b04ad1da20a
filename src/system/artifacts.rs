//! Pinned releases (a role's `artifacts:`): fetched and checked against
//! their SHA-256 before anything is live, laid out in `DEST/VERSION`, and
//! switched to by pointing `DEST/current` at them once the new files are
//! live, so that a rollback points it back.

use super::{Difference, Item, SystemChange};
use crate::transport::functions::HostFn;
use crate::transport::program::Program;

/// `present|absent CURRENT` for the version wanted.
pub(super) fn observe(program: &mut Program, dest: &str, version: &str, sha256: &str) {
    program.call(HostFn::ObserveArtifact, &[dest, version, sha256]);
}

pub(super) fn difference(version: &str, words: &[&str]) -> Option<Difference> {
    let (have, current) = match words {
        [have, current] => (*have, *current),
        _ => ("absent", "-"),
    };
    let switch = match current {
        "-" => format!("current → {version}"),
        current => format!("current {current} → {version}"),
    };
    match (have, current == version) {
        ("present", true) => None,
        ("present", false) => Some(Difference::update(switch)),
        _ if current == "-" => Some(Difference::create(format!("download {version}, {switch}"))),
        _ => Some(Difference::update(format!("download {version}, {switch}"))),
    }
}

/// Before the files: each version not there yet fetched, checked and laid
/// out (nothing live changes).
pub(crate) fn fetch(program: &mut Program, changes: &[SystemChange]) {
    for change in changes {
        if let Item::Artifact {
            name,
            version,
            url,
            sha256,
            unpack,
            strip,
            dest,
            owner,
            group,
        } = &change.item
        {
            let strip = strip.to_string();
            program.call(
                HostFn::ArtifactFetch,
                &[
                    name,
                    version,
                    url,
                    dest,
                    sha256,
                    unpack.name(),
                    &strip,
                    owner,
                    group,
                ],
            );
        }
    }
}

/// With the new files live: each `current` pointed at its version.
pub(crate) fn switch(program: &mut Program, changes: &[SystemChange]) {
    for change in changes {
        if let Item::Artifact { dest, version, .. } = &change.item {
            program.call(HostFn::ArtifactSwitch, &[dest, version]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_there_and_current_is_no_change() {
        assert!(difference("1.2", &["present", "1.2"]).is_none());
    }

    #[test]
    fn a_version_there_but_not_current_is_a_switch_and_a_new_one_a_download() {
        let back = difference("1.1", &["present", "1.2"]).unwrap();
        assert_eq!(
            (back.create, back.detail.as_str()),
            (false, "current 1.2 → 1.1")
        );
        let new = difference("1.3", &["absent", "1.2"]).unwrap();
        assert_eq!(new.detail, "download 1.3, current 1.2 → 1.3");
        let first = difference("1.0", &["absent", "-"]).unwrap();
        assert!(first.create, "{}", first.detail);
    }
}
