//! systemd units, enabled at boot or not, running or not. Apply enables
//! them before the handlers and starts them after (a new service starts
//! once, on matrixctl's configuration).

use super::{Difference, Item, SystemChange};
use crate::transport::functions::HostFn;
use crate::transport::program::Program;

/// `ENABLED ACTIVE` for each unit of `names` (one systemctl).
pub(super) fn observe(program: &mut Program, names: &[&str]) {
    program.call(HostFn::ObserveServices, names);
}

pub(super) fn difference(
    enabled: bool,
    running: Option<bool>,
    words: &[&str],
) -> Option<Difference> {
    let (is_enabled, is_active) = match words {
        [enabled, active] => (*enabled == "enabled", *active == "active"),
        _ => (false, false),
    };
    let mut todo = Vec::new();
    if enabled != is_enabled {
        todo.push(if enabled { "enable" } else { "disable" });
    }
    match running {
        Some(true) if !is_active => todo.push("start"),
        Some(false) if is_active => todo.push("stop"),
        _ => {}
    }
    (!todo.is_empty()).then(|| Difference {
        detail: todo.join(", "),
        systemctl: todo,
        ..Difference::update(String::new())
    })
}

/// The units a plan's changes take `verb` (`enable`, `disable`, `start`,
/// `stop`) for, in the plan's order.
fn units<'a>(changes: &'a [SystemChange], verb: &str) -> Vec<&'a str> {
    changes
        .iter()
        .filter(|change| change.systemctl.contains(&verb))
        .filter_map(|change| match &change.item {
            Item::Service { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect()
}

/// Before the handlers: enables (one call), disables.
pub(crate) fn enable(program: &mut Program, changes: &[SystemChange]) {
    let enables = units(changes, "enable");
    if !enables.is_empty() {
        program.call(HostFn::ServicesEnable, &enables);
    }
    for name in units(changes, "disable") {
        program.call(HostFn::Service, &[name, "disable", "-"]);
    }
}

/// After the handlers: stops first (a service taking over another's port
/// starts after it stopped), then the starts in one call, which waits
/// once for all of them to stay up.
pub(crate) fn start(program: &mut Program, changes: &[SystemChange]) {
    for name in units(changes, "stop") {
        program.call(HostFn::Service, &[name, "-", "stop"]);
    }
    let starts = units(changes, "start");
    if !starts.is_empty() {
        program.call(HostFn::ServicesStart, &starts);
    }
}
