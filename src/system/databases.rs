//! PostgreSQL databases owned by a login role, both made once (UTF8, C
//! collation and ctype) and never altered: one that differs is refused.

use super::{Difference, Item, SystemChange};
use crate::transport::functions::HostFn;
use crate::transport::program::Program;

/// What a PostgreSQL database must be for the applications matrixctl
/// serves (the homeserver refuses any other collation or ctype).
pub(crate) const ENCODING: &str = "UTF8";
pub(crate) const LOCALE: &str = "C";

/// A name safe to double-quote in SQL and to report as one word.
pub(crate) fn is_sql_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `present ENCODING COLLATE CTYPE OWNER`, `absent`, or `unknown` (no
/// server running to ask); and `login OWNER refused` when the role exists
/// and the derived password does not log in (it arrives in a variable,
/// never as an argument).
pub(super) fn observe(program: &mut Program, name: &str, owner: &str, password: &str) {
    program
        .set("MC_DB_PASSWORD", password)
        .call(HostFn::ObserveDatabase, &[name, owner]);
}

pub(super) fn difference(owner: &str, state: &str) -> Option<Difference> {
    if state.split(' ').next() == Some("present") {
        return None;
    }
    // Unknown: no server yet, or one that did not answer (stopped). The
    // plan says it could not look.
    let unknown = if state == "unknown" {
        "; PostgreSQL is installed but did not answer (stopped?), so whether it \
         exists is unknown: apply starts it, and checks one that exists before using it"
    } else {
        ""
    };
    Some(Difference::create(format!(
        "owner {owner}, {ENCODING}, collation {LOCALE}{unknown}"
    )))
}

/// A database that exists must be as wanted, and its owner's derived
/// password must log in: said before anything is changed.
pub(super) fn blocked(
    name: &str,
    owner: &str,
    login: Option<&str>,
    state: Option<&str>,
) -> Option<String> {
    if login == Some("refused") {
        return Some(format!(
            "PostgreSQL's login role {owner} exists, and the password matrixctl derives for it does not log in \
             (matrixctl sets a password only on a role it creates, so the homeserver could not connect): \
             give this host's `secrets: {{database_password: …}}` the role's password, \
             or drop the role (`DROP ROLE \"{owner}\"`, once nothing owns anything) so that apply creates it"
        ));
    }
    let words: Vec<&str> = state?.split(' ').collect();
    let ["present", encoding, collate, ctype, have_owner] = words.as_slice() else {
        return None;
    };
    if *encoding != ENCODING || *collate != LOCALE || *ctype != LOCALE {
        return Some(format!(
            "database {name} exists with encoding {encoding}, collation {collate} and ctype {ctype}; \
             it needs {ENCODING}, {LOCALE} and {LOCALE} (the homeserver refuses any other), \
             and matrixctl never alters a database: dump it, recreate it with \
             `CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 OWNER {owner}`, \
             restore it, and plan again"
        ));
    }
    (have_owner != &owner).then(|| {
        format!(
            "database {name} is owned by {have_owner}, not {owner}; matrixctl never alters a database: \
             `ALTER DATABASE {name} OWNER TO {owner}` if that is right, or set the owner's name in the inventory"
        )
    })
}

/// Last of the items before the files: the server may be a package just
/// installed. The password arrives on stdin, never as an argument.
pub(super) fn apply(program: &mut Program, changes: &[SystemChange]) {
    for change in changes {
        if let Item::Database {
            name,
            owner,
            password,
        } = &change.item
        {
            program.call_with_content(HostFn::Database, &[name, owner], password.as_bytes());
        }
    }
}
