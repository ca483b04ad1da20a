//! Python virtualenvs holding pinned requirements, from an index or only
//! from a directory of wheels (an offline host). What matrixctl installed
//! last is recorded in the venv, so a changed requirement is a change.

use super::{Difference, Item, SystemChange};
use crate::transport::functions::HostFn;
use crate::transport::program::Program;

/// `present REQUIREMENT...` (its `.matrixctl-requirements`, read by
/// [`state`]) or `absent`.
pub(super) fn observe(program: &mut Program, path: &str) {
    program.call(HostFn::ObserveVenv, &[path]);
}

/// A venv's state from its `.matrixctl-requirements` file: `present` and
/// the requirements written there, as words of the characters a
/// requirement can hold (anything else separates them).
pub(crate) fn state(requirements_file: &[u8]) -> String {
    let allowed = |byte: &u8| byte.is_ascii_alphanumeric() || b"._=!+,[]<>~-".contains(byte);
    let mut state = String::from("present");
    for word in requirements_file.split(|byte| !allowed(byte)) {
        if !word.is_empty() {
            state.push(' ');
            state.push_str(&String::from_utf8_lossy(word));
        }
    }
    state
}

pub(super) fn difference(requirements: &[String], words: &[&str]) -> Option<Difference> {
    // `present REQUIREMENT...`: what matrixctl installed there last (none
    // recorded: installed by someone else).
    let Some((&"present", installed)) = words.split_first() else {
        return Some(Difference::create(requirements.join(" ")));
    };
    let installed: Vec<&str> = installed
        .iter()
        .copied()
        .filter(|r| !r.is_empty())
        .collect();
    let wanted: Vec<&str> = requirements.iter().map(String::as_str).collect();
    (installed != wanted).then(|| {
        let before = if installed.is_empty() {
            "not installed by matrixctl".to_string()
        } else {
            installed.join(" ")
        };
        Difference::update(format!("{before} → {}", wanted.join(" ")))
    })
}

pub(super) fn apply(program: &mut Program, changes: &[SystemChange]) {
    for change in changes {
        if let Item::Venv {
            path,
            requirements,
            index_url,
            find_links,
        } = &change.item
        {
            let mut args = vec![
                path.as_str(),
                index_url.as_deref().unwrap_or(""),
                find_links.as_deref().unwrap_or(""),
            ];
            args.extend(requirements.iter().map(String::as_str));
            program.call(HostFn::Venv, &args);
        }
    }
}
