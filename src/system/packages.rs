//! Debian packages, at a pinned version or any; installed in one apt-get
//! run, with no service started on the package's defaults.

use super::{Difference, Item, SystemChange};
use crate::transport::functions::HostFn;
use crate::transport::program::Program;

/// `installed VERSION`, `interrupted STATUS VERSION` (dpkg stopped
/// part-way), or nothing: one dpkg-query for all of `names`.
pub(super) fn observe(program: &mut Program, names: &[&str]) {
    program.call(HostFn::ObservePackages, names);
}

pub(super) fn difference(version: Option<&String>, words: &[&str]) -> Option<Difference> {
    match (words, version) {
        (["installed", have], Some(want)) if have != want => {
            Some(Difference::update(format!("{have} → {want}")))
        }
        (["installed", _], _) => None,
        // dpkg stopped part-way (a killed apply): this apply finishes the
        // install.
        (["interrupted", status, have], want) => Some(Difference::update(format!(
            "{status} {have} → {}: an interrupted install, finished by this apply",
            want.map_or("installed", String::as_str)
        ))),
        (_, Some(want)) => Some(Difference::create(want.clone())),
        (_, None) => Some(Difference::create(String::new())),
    }
}

/// The release a Debian version says it was built for (`1.163.2+bookworm1`
/// says bookworm): a `+NAME` followed by digits at its end, NAME one of
/// the releases operators run.
pub(super) fn release_of_build(version: &str) -> Option<&str> {
    const RELEASES: &[&str] = &[
        "buster", "bullseye", "bookworm", "trixie", "forky", "focal", "jammy", "noble",
    ];
    let (_, suffix) = version.rsplit_once('+')?;
    let name = suffix.trim_end_matches(|c: char| c.is_ascii_digit());
    (name.len() < suffix.len() && RELEASES.contains(&name)).then_some(name)
}

/// Every changed package in one run (`name` or `name=version`).
pub(super) fn apply(program: &mut Program, changes: &[SystemChange]) {
    let packages: Vec<String> = changes
        .iter()
        .filter_map(|change| match &change.item {
            Item::Package {
                name,
                version: Some(version),
            } => Some(format!("{name}={version}")),
            Item::Package {
                name,
                version: None,
            } => Some(name.clone()),
            _ => None,
        })
        .collect();
    if !packages.is_empty() {
        let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
        program.call(HostFn::Packages, &packages);
        program.call(HostFn::Step, &["packages-installed"]);
    }
}
