//! Directories with their owner, group and mode, created with their
//! parents.

use super::{Difference, Item, SystemChange};
use crate::transport::functions::HostFn;
use crate::transport::program::Program;

/// `directory MODE OWNER GROUP`, `other KIND` or `absent` for each of
/// `paths` (one stat).
pub(super) fn observe(program: &mut Program, paths: &[&str]) {
    program.call(HostFn::ObserveDirectories, paths);
}

pub(super) fn difference(
    owner: &str,
    group: &str,
    mode: u32,
    words: &[&str],
) -> Option<Difference> {
    let ["directory", have_mode, have_owner, have_group] = words else {
        return Some(Difference::create(format!("{owner}:{group} {mode:04o}")));
    };
    let mut differs = Vec::new();
    let want_mode = format!("{mode:04o}");
    let have_mode = format!("{:0>4}", have_mode);
    if have_mode != want_mode {
        differs.push(format!("mode {have_mode} → {want_mode}"));
    }
    if have_owner != &owner || have_group != &group {
        differs.push(format!("{have_owner}:{have_group} → {owner}:{group}"));
    }
    (!differs.is_empty()).then(|| Difference::update(differs.join(", ")))
}

/// A path that is something else (a file, a symlink) is refused before
/// anything changes.
pub(super) fn blocked(path: &str, state: &str) -> Option<String> {
    state
        .strip_prefix("other ")
        .map(|kind| format!("{path} is a {kind}, not a directory; move it away and plan again"))
}

pub(super) fn apply(program: &mut Program, changes: &[SystemChange]) {
    for change in changes {
        if let Item::Directory {
            path,
            owner,
            group,
            mode,
        } = &change.item
        {
            program.call(
                HostFn::Directory,
                &[path, &format!("{mode:04o}"), owner, group],
            );
        }
    }
}
