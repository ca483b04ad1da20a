//! The documentation's var reference cannot drift from the code: every var
//! matrixctl knows has a row in docs/inventory.md, and every row is a var.

use std::collections::BTreeSet;

use crate::support::repo;

#[test]
fn the_var_reference_lists_exactly_the_known_vars() {
    let docs = std::fs::read_to_string(repo().join("docs/inventory.md")).unwrap();
    let reference = &docs[docs.find("\n## Vars\n").unwrap()..docs.find("\n## Secrets\n").unwrap()];
    let documented: BTreeSet<String> = reference
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(key, _)| key.to_string())
        .collect();

    let roles = matrixctl::roles::RoleSet::load(&[]).unwrap();
    let mut known: BTreeSet<String> = matrixctl::inventory::schema::CORE_KEYS
        .iter()
        .map(|key| key.to_string())
        .collect();
    known.extend(roles.defaults().keys().map(|key| key.to_string()));

    let undocumented: Vec<_> = known.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&known).collect();
    assert!(
        undocumented.is_empty(),
        "vars without a row in docs/inventory.md: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "rows in docs/inventory.md that are no var: {unknown:?}"
    );
}
