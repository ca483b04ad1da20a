//! Files the host's own programs make once when missing (a signing key),
//! then given owner, group and mode; never read back or replaced.

use super::{Difference, Item, SystemChange};
use crate::transport::functions::HostFn;
use crate::transport::program::Program;

/// `present` or `absent`.
pub(super) fn observe(program: &mut Program, path: &str) {
    program.call(HostFn::ObserveGenerated, &[path]);
}

pub(super) fn difference(path: &str, state: &str) -> Option<Difference> {
    (state != "present").then(|| Difference::create(format!("generated on the host: {path}")))
}

/// Once the new files are in place (the command reads the new
/// configuration), before the validators read what it made.
pub(crate) fn apply(program: &mut Program, changes: &[SystemChange]) {
    for change in changes {
        if let Item::Generated {
            path,
            command,
            owner,
            group,
            mode,
            ..
        } = &change.item
        {
            program.call(
                HostFn::Generate,
                &[path, owner, group, &format!("{mode:04o}"), command],
            );
        }
    }
}
