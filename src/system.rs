//! The host as a system, next to its files: repositories, packages,
//! groups, users, directories, Python virtualenvs, PostgreSQL databases,
//! generated files, services and certificates that roles declare. The core
//! knows these kinds (dpkg, useradd, psql, systemd, openssl), never what a
//! role installs. Each item is observed in the same program run as the
//! files, planned with the same `+ ~` grammar, and carried out in a fixed
//! order: repositories, packages, groups, users, directories, virtualenvs
//! and databases before any file is staged; generated files once the new
//! files are in place; services after the validators, around the
//! handlers; certificates last. Nothing here is ever removed or rolled
//! back: a package, an account or a database outlives the role that asked
//! for it (removing them could take data with them), and the plan says so.

use std::collections::BTreeMap;

use serde::Serialize;

/// One thing a role wants the host to have.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Item {
    /// An apt repository (deb822 `.sources` file) whose signing key was
    /// checked against its pinned fingerprint before it got here.
    Repository {
        name: String,
        url: String,
        suite: String,
        components: String,
        fingerprint: String,
        /// The armored key, and the `.sources` file, as written.
        #[serde(skip)]
        key: String,
        #[serde(skip)]
        sources: String,
    },
    /// A Debian package, at `version` when pinned.
    Package {
        name: String,
        version: Option<String>,
    },
    /// A system group.
    Group { name: String },
    /// A system account in `group`, with `home` (not created by it);
    /// with `login`, a shell that runs the commands its SSH keys force.
    User {
        name: String,
        group: String,
        home: String,
        login: bool,
    },
    /// A directory with its owner, group and mode (created with parents).
    Directory {
        path: String,
        owner: String,
        group: String,
        mode: u32,
    },
    /// A Python virtualenv at `path` holding `requirements` (`name` or
    /// `name[extras]==version`), from `index_url`, or only from the wheels
    /// in `find_links` (an offline host). What matrixctl installed last is
    /// recorded in the venv, so a changed requirement is a change.
    Venv {
        path: String,
        requirements: Vec<String>,
        index_url: Option<String>,
        find_links: Option<String>,
    },
    /// A systemd unit, enabled at boot (or not), and running or not (or
    /// either, when `running` is none).
    Service {
        name: String,
        enabled: bool,
        running: Option<bool>,
    },
    /// A PostgreSQL database owned by a login role, both made once
    /// (UTF8, C collation and ctype); the role gets `password` only when
    /// matrixctl creates it.
    Database {
        name: String,
        owner: String,
        #[serde(skip)]
        password: String,
    },
    /// A file `command` makes on the host when it is missing (a signing
    /// key), then given owner, group and mode; never read back or
    /// replaced.
    Generated {
        what: String,
        path: String,
        command: String,
        owner: String,
        group: String,
        mode: u32,
    },
    /// A certificate for `name` at `path`, obtained and renewed by
    /// `command` after the services started.
    Certificate {
        name: String,
        path: String,
        #[serde(skip)]
        command: String,
    },
}

/// A certificate this close to its end is renewed (certbot's own margin).
pub(crate) const RENEW_WITHIN_SECONDS: u64 = 30 * 24 * 3600;

/// A venv's state from its `.matrixctl-requirements` file: `present` and
/// the requirements written there, as words of the characters a
/// requirement can hold (anything else separates them).
pub(crate) fn venv_state(requirements_file: &[u8]) -> String {
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

/// A certificate file's first certificate as `present ISSUED EXPIRY
/// NAME,NAME,` (see `changes`): ISSUED is `self` when its issuer is its
/// subject (a placeholder), EXPIRY `expiring` when it ends within
/// RENEW_WITHIN_SECONDS of `now`, NAMES its DNS names, sorted. A file
/// that is no certificate reads as an expiring placeholder: it is
/// replaced.
pub(crate) fn certificate_state(pem: &[u8], now: std::time::SystemTime) -> String {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let unreadable = "present self expiring ,".to_string();
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(pem) else {
        return unreadable;
    };
    let Ok((_, certificate)) = X509Certificate::from_der(&block.contents) else {
        return unreadable;
    };
    let issued = if certificate.issuer() == certificate.subject() {
        "self"
    } else {
        "ca"
    };
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64);
    let ends = certificate.validity().not_after.timestamp();
    let expiry = if ends - now <= RENEW_WITHIN_SECONDS as i64 {
        "expiring"
    } else {
        "fresh"
    };
    let mut names: Vec<String> = match certificate.subject_alternative_name() {
        Ok(Some(extension)) => extension
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(name) => Some(name.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    names.sort();
    let mut listed: String = names.iter().map(|name| format!("{name},")).collect();
    if listed.is_empty() {
        listed.push(',');
    }
    format!("present {issued} {expiry} {listed}")
}

/// What a PostgreSQL database must be for the applications matrixctl
/// serves (the homeserver refuses any other collation or ctype).
pub(crate) const DATABASE_ENCODING: &str = "UTF8";
pub(crate) const DATABASE_LOCALE: &str = "C";

/// A name safe to double-quote in SQL and to report as one word.
pub(crate) fn is_sql_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl SystemChange {
    /// Every role that wants the item, the first one first.
    pub(crate) fn roles(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.role.as_str()).chain(self.also_for.iter().map(String::as_str))
    }
}

impl Item {
    /// What the item is, for the plan: `package tzdata`.
    pub(crate) fn label(&self) -> String {
        match self {
            Item::Repository { name, .. } => format!("repository {name}"),
            Item::Package { name, .. } => format!("package {name}"),
            Item::Group { name } => format!("group {name}"),
            Item::User { name, .. } => format!("user {name}"),
            Item::Directory { path, .. } => format!("directory {path}"),
            Item::Venv { path, .. } => format!("venv {path}"),
            Item::Service { name, .. } => format!("service {name}"),
            Item::Database { name, .. } => format!("database {name}"),
            Item::Generated { what, .. } => what.clone(),
            Item::Certificate { name, .. } => format!("certificate {name}"),
        }
    }

    /// The key the host program reports the item's state under: its label,
    /// or for a generated file its path (two roles may generate a "key").
    pub(crate) fn key(&self) -> String {
        match self {
            Item::Generated { path, .. } => format!("generated {path}"),
            _ => self.label(),
        }
    }

    /// Whether apply sees to it after the files (services), rather than
    /// before them.
    pub(crate) fn after_files(&self) -> bool {
        matches!(self, Item::Service { .. })
    }
}

/// A role's item for one host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Wanted {
    pub item: Item,
    pub role: String,
    /// Other roles that want the very same item (python3-venv).
    pub also_for: Vec<String>,
}

/// One item apply changes, and how it differs now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SystemChange {
    pub item: Item,
    pub role: String,
    /// Other roles that want the very same item.
    pub also_for: Vec<String>,
    /// Absent now (`+`), or there but different (`~`).
    pub create: bool,
    /// What differs, for people: `4.6.1 → 4.6.2`, `enable, start`.
    pub detail: String,
    /// For a service: the systemctl verbs apply runs (`enable`, `start`).
    #[serde(skip)]
    pub systemctl: Vec<&'static str>,
}

/// What the host program reported for each item, by key.
pub(crate) type ObservedSystem = BTreeMap<String, String>;

/// Each wanted item that the host does not have as wanted.
pub(crate) fn changes(wanted: &[Wanted], observed: &ObservedSystem) -> Vec<SystemChange> {
    let mut out = Vec::new();
    for Wanted {
        item,
        role,
        also_for,
    } in wanted
    {
        let state = observed.get(&item.key()).map(String::as_str).unwrap_or("");
        let words: Vec<&str> = state.split(' ').collect();
        let change = |create: bool, detail: String| SystemChange {
            item: item.clone(),
            role: role.clone(),
            also_for: also_for.clone(),
            create,
            detail,
            systemctl: Vec::new(),
        };
        match item {
            Item::Repository {
                url,
                suite,
                components,
                fingerprint,
                key,
                sources,
                ..
            } => {
                let want = repository_digest(key, sources);
                match words.as_slice() {
                    ["present", have] if *have == want => {}
                    ["present", _] => {
                        out.push(change(false, format!("{url} {suite} {components}")))
                    }
                    _ => out.push(change(
                        true,
                        format!("{url} {suite} {components}, key {fingerprint}"),
                    )),
                }
            }
            Item::Package { version, .. } => match (words.as_slice(), version) {
                (["installed", have], Some(want)) if have != want => {
                    out.push(change(false, format!("{have} → {want}")));
                }
                (["installed", _], _) => {}
                // dpkg stopped part-way (a killed apply): this apply
                // finishes the install.
                (["interrupted", status, have], want) => out.push(change(
                    false,
                    format!(
                        "{status} {have} → {}: an interrupted install, finished by this apply",
                        want.as_deref().unwrap_or("installed")
                    ),
                )),
                (_, Some(want)) => out.push(change(true, want.clone())),
                (_, None) => out.push(change(true, String::new())),
            },
            Item::Group { .. } => {
                if state != "present" {
                    out.push(change(true, String::new()));
                }
            }
            Item::User {
                group, home, login, ..
            } => {
                if state != "present" {
                    let login = if *login { ", logs in over SSH" } else { "" };
                    out.push(change(true, format!("group {group}, home {home}{login}")));
                }
            }
            Item::Directory {
                owner, group, mode, ..
            } => match words.as_slice() {
                ["directory", have_mode, have_owner, have_group] => {
                    let mut differs = Vec::new();
                    let want_mode = format!("{mode:04o}");
                    let have_mode = format!("{:0>4}", have_mode);
                    if have_mode != want_mode {
                        differs.push(format!("mode {have_mode} → {want_mode}"));
                    }
                    if have_owner != owner || have_group != group {
                        differs.push(format!("{have_owner}:{have_group} → {owner}:{group}"));
                    }
                    if !differs.is_empty() {
                        out.push(change(false, differs.join(", ")));
                    }
                }
                _ => out.push(change(true, format!("{owner}:{group} {mode:04o}"))),
            },
            Item::Venv { requirements, .. } => {
                // `present REQUIREMENT...`: what matrixctl installed there
                // last (none recorded: installed by someone else).
                let Some((&"present", installed)) = words.split_first() else {
                    out.push(change(true, requirements.join(" ")));
                    continue;
                };
                let installed: Vec<&str> = installed
                    .iter()
                    .copied()
                    .filter(|r| !r.is_empty())
                    .collect();
                let wanted: Vec<&str> = requirements.iter().map(String::as_str).collect();
                if installed != wanted {
                    let before = if installed.is_empty() {
                        "not installed by matrixctl".to_string()
                    } else {
                        installed.join(" ")
                    };
                    out.push(change(false, format!("{before} → {}", wanted.join(" "))));
                }
            }
            Item::Service {
                enabled, running, ..
            } => {
                let (is_enabled, is_active) = match words.as_slice() {
                    [enabled, active] => (*enabled == "enabled", *active == "active"),
                    _ => (false, false),
                };
                let mut todo = Vec::new();
                if *enabled != is_enabled {
                    todo.push(if *enabled { "enable" } else { "disable" });
                }
                match running {
                    Some(true) if !is_active => todo.push("start"),
                    Some(false) if is_active => todo.push("stop"),
                    _ => {}
                }
                if !todo.is_empty() {
                    out.push(SystemChange {
                        systemctl: todo.clone(),
                        ..change(false, todo.join(", "))
                    });
                }
            }
            // `present ENCODING COLLATE CTYPE OWNER`; one that differs is
            // refused by `blocked`, never altered. `absent`, or `unknown`
            // (no server running to ask): apply creates it if missing.
            // `present ISSUED EXPIRY NAME,NAME,`: ISSUED is `ca` or `self`
            // (a placeholder), EXPIRY `fresh` or `expiring`.
            Item::Certificate { name, .. } => match words.as_slice() {
                ["present", "ca", "fresh", names] => {
                    let names: Vec<&str> = names.split(',').filter(|n| !n.is_empty()).collect();
                    if names != [name.as_str()] {
                        out.push(change(false, format!("for {} → {name}", names.join(", "))));
                    }
                }
                ["present", "ca", _, _] => {
                    out.push(change(false, "ends within 30 days: renewed".to_string()))
                }
                ["present", "self", ..] => {
                    out.push(change(true, "ACME, replacing the placeholder".to_string()))
                }
                _ => out.push(change(true, "ACME".to_string())),
            },
            Item::Generated { path, .. } => {
                if state != "present" {
                    out.push(change(true, format!("generated on the host: {path}")));
                }
            }
            Item::Database { owner, .. } => {
                if words.first() != Some(&"present") {
                    // Unknown: no server yet, or one that did not answer
                    // (stopped). The plan says it could not look.
                    let unknown = if state == "unknown" {
                        "; PostgreSQL is installed but did not answer (stopped?), so whether it \
                         exists is unknown: apply starts it, and checks one that exists before using it"
                    } else {
                        ""
                    };
                    out.push(change(
                        true,
                        format!(
                            "owner {owner}, {DATABASE_ENCODING}, collation {DATABASE_LOCALE}{unknown}"
                        ),
                    ));
                }
            }
        }
    }
    out
}

/// Where a repository's key and `.sources` file go.
pub(crate) fn repository_paths(name: &str) -> (String, String) {
    (
        format!("/etc/apt/keyrings/matrixctl-{name}.asc"),
        format!("/etc/apt/sources.list.d/matrixctl-{name}.sources"),
    )
}

/// A repository's deb822 `.sources` file, as role `role` writes it.
pub(crate) fn repository_sources(
    role: &str,
    name: &str,
    url: &str,
    suite: &str,
    components: &str,
) -> String {
    let (keyring, _) = repository_paths(name);
    format!(
        "# Managed by matrixctl (role {role}); local edits will be overwritten.\n\
         Types: deb\nURIs: {url}\nSuites: {suite}\nComponents: {components}\nSigned-By: {keyring}\n"
    )
}

/// Fits the wanted items to the host's release (`codename`, from its
/// /etc/os-release): a repository whose suite the role left empty gets
/// the host's; a package pinned to another release's build (`+bookworm1`
/// on trixie) is refused, as apt would install what was built for
/// another system.
pub(crate) fn fit_to_release(wanted: &mut [Wanted], codename: Option<&str>) -> Result<(), String> {
    for Wanted { item, role, .. } in wanted.iter_mut() {
        match item {
            Item::Repository {
                name,
                url,
                suite,
                components,
                sources,
                ..
            } if suite.is_empty() => {
                let Some(codename) = codename else {
                    return Err(format!(
                        "repository {name} (role `{role}`) follows the host's release, and this host names none in /etc/os-release; set its suite in the inventory"
                    ));
                };
                *suite = codename.to_string();
                *sources = repository_sources(role, name, url, suite, components);
            }
            Item::Package {
                name,
                version: Some(version),
            } => {
                let Some(codename) = codename else { continue };
                if let Some(built_for) = release_of_build(version)
                    && built_for != codename
                {
                    return Err(format!(
                        "package {name} (role `{role}`) is pinned to {version}, built for {built_for}, and this host runs {codename}: pin its {codename} build (`{}`)",
                        version.replacen(&format!("+{built_for}"), &format!("+{codename}"), 1)
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The release a Debian version says it was built for (`1.163.2+bookworm1`
/// says bookworm): a `+NAME` followed by digits at its end, NAME one of
/// the releases operators run.
fn release_of_build(version: &str) -> Option<&str> {
    const RELEASES: &[&str] = &[
        "buster", "bullseye", "bookworm", "trixie", "forky", "focal", "jammy", "noble",
    ];
    let (_, suffix) = version.rsplit_once('+')?;
    let name = suffix.trim_end_matches(|c: char| c.is_ascii_digit());
    (name.len() < suffix.len() && RELEASES.contains(&name)).then_some(name)
}

/// What the host program reports for a repository that is as wanted: the
/// SHA-256 of its key file followed by its `.sources` file.
pub(crate) fn repository_digest(key: &str, sources: &str) -> String {
    crate::hash::sha256_hex(format!("{key}{sources}").as_bytes())
}

/// A directory item's path must not be something else already (a file, a
/// symlink), and a database that exists must be as wanted (matrixctl never
/// alters one): said before anything is changed.
pub(crate) fn blocked(wanted: &[Wanted], observed: &ObservedSystem) -> Option<String> {
    wanted.iter().find_map(|Wanted { item, .. }| match item {
        Item::Database { name, owner, .. } => {
            if observed.get(&format!("login {owner}")).map(String::as_str) == Some("refused") {
                return Some(format!(
                    "PostgreSQL's login role {owner} exists, and the password matrixctl derives for it does not log in \
                     (matrixctl sets a password only on a role it creates, so the homeserver could not connect): \
                     give this host's `secrets: {{database_password: …}}` the role's password, \
                     or drop the role (`DROP ROLE \"{owner}\"`, once nothing owns anything) so that apply creates it"
                ));
            }
            let state = observed.get(&item.key())?;
            let words: Vec<&str> = state.split(' ').collect();
            let ["present", encoding, collate, ctype, have_owner] = words.as_slice() else {
                return None;
            };
            if *encoding != DATABASE_ENCODING
                || *collate != DATABASE_LOCALE
                || *ctype != DATABASE_LOCALE
            {
                return Some(format!(
                    "database {name} exists with encoding {encoding}, collation {collate} and ctype {ctype}; \
                     it needs {DATABASE_ENCODING}, {DATABASE_LOCALE} and {DATABASE_LOCALE} (the homeserver refuses any other), \
                     and matrixctl never alters a database: dump it, recreate it with \
                     `CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 OWNER {owner}`, \
                     restore it, and plan again"
                ));
            }
            (have_owner != owner).then(|| {
                format!(
                    "database {name} is owned by {have_owner}, not {owner}; matrixctl never alters a database: \
                     `ALTER DATABASE {name} OWNER TO {owner}` if that is right, or set the owner's name in the inventory"
                )
            })
        }
        Item::Directory { path, .. } => {
            let state = observed.get(&item.key())?;
            state.strip_prefix("other ").map(|kind| {
                format!("{path} is a {kind}, not a directory; move it away and plan again")
            })
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_items_fit_the_host_s_release() {
        assert_eq!(release_of_build("1.163.2+bookworm1"), Some("bookworm"));
        assert_eq!(release_of_build("1.163.2+trixie12"), Some("trixie"));
        assert_eq!(release_of_build("1.163.2"), None);
        assert_eq!(release_of_build("2.0+dfsg"), None);
        assert_eq!(release_of_build("1.0+bookworm"), None);
        let repository = Item::Repository {
            name: "example".into(),
            url: "https://repository.example/debian/".into(),
            suite: String::new(),
            components: "main".into(),
            fingerprint: "F".into(),
            key: String::new(),
            sources: String::new(),
        };
        let mut items = wanted(repository);
        fit_to_release(&mut items, Some("trixie")).unwrap();
        let Item::Repository { suite, sources, .. } = &items[0].item else {
            unreachable!()
        };
        assert_eq!(suite, "trixie");
        assert!(sources.contains("Suites: trixie\n"), "{sources}");
        let pinned = || {
            wanted(Item::Package {
                name: "hello".into(),
                version: Some("1.163.2+bookworm1".into()),
            })
        };
        assert!(fit_to_release(&mut pinned(), Some("bookworm")).is_ok());
        let refused = fit_to_release(&mut pinned(), Some("trixie")).unwrap_err();
        assert!(
            refused.contains("pin its trixie build (`1.163.2+trixie1`)"),
            "{refused}"
        );
    }

    fn wanted(item: Item) -> Vec<Wanted> {
        vec![Wanted {
            item,
            role: "r".into(),
            also_for: Vec::new(),
        }]
    }

    #[test]
    fn each_kind_changes_only_when_the_host_differs() {
        let observed: ObservedSystem = [
            ("package a", "installed 1.0"),
            ("group g", "present"),
            ("user u", "absent"),
            ("directory /d", "directory 755 root root"),
            ("service s", "disabled inactive"),
            ("directory /f", "other regular-file"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let package = |version: Option<&str>| Item::Package {
            name: "a".into(),
            version: version.map(str::to_string),
        };
        assert!(changes(&wanted(package(None)), &observed).is_empty());
        assert!(changes(&wanted(package(Some("1.0"))), &observed).is_empty());
        assert_eq!(
            changes(&wanted(package(Some("2.0"))), &observed)[0].detail,
            "1.0 → 2.0"
        );
        let interrupted: ObservedSystem = [(
            "package a".to_string(),
            "interrupted half-configured 2.0".to_string(),
        )]
        .into_iter()
        .collect();
        assert_eq!(
            changes(&wanted(package(Some("2.0"))), &interrupted)[0].detail,
            "half-configured 2.0 → 2.0: an interrupted install, finished by this apply"
        );
        assert!(changes(&wanted(Item::Group { name: "g".into() }), &observed).is_empty());
        let database = || Item::Database {
            name: "app".into(),
            owner: "app".into(),
            password: "not shown".into(),
        };
        for (state, creates) in [
            ("absent", true),
            ("unknown", true),
            ("present UTF8 C C app", false),
        ] {
            let observed: ObservedSystem = [("database app".to_string(), state.to_string())]
                .into_iter()
                .collect();
            let planned = changes(&wanted(database()), &observed);
            assert_eq!(planned.len(), usize::from(creates), "{state}");
            assert_eq!(blocked(&wanted(database()), &observed), None, "{state}");
        }
        for (state, says) in [
            (
                "present UTF8 C.UTF-8 C.UTF-8 app",
                "collation C.UTF-8 and ctype C.UTF-8",
            ),
            ("present UTF8 C C postgres", "is owned by postgres, not app"),
        ] {
            let observed: ObservedSystem = [("database app".to_string(), state.to_string())]
                .into_iter()
                .collect();
            let reason = blocked(&wanted(database()), &observed).unwrap();
            assert!(reason.contains(says), "{reason}");
        }
        let json = serde_json::to_string(&database()).unwrap();
        assert!(!json.contains("not shown"), "{json}");
        let user = Item::User {
            name: "u".into(),
            group: "g".into(),
            home: "/h".into(),
            login: false,
        };
        assert!(changes(&wanted(user), &observed)[0].create);
        let dir = Item::Directory {
            path: "/d".into(),
            owner: "u".into(),
            group: "g".into(),
            mode: 0o750,
        };
        assert_eq!(
            changes(&wanted(dir), &observed)[0].detail,
            "mode 0755 → 0750, root:root → u:g"
        );
        let venv = |requirements: &[&str]| Item::Venv {
            path: "/v".into(),
            requirements: requirements.iter().map(|r| r.to_string()).collect(),
            index_url: None,
            find_links: None,
        };
        assert_eq!(
            venv_state(b"a==1.0\nb[extra]>=2 ; $(x)\n\0"),
            "present a==1.0 b[extra]>=2 x"
        );
        assert_eq!(venv_state(b""), "present");
        let observed_venv: ObservedSystem =
            [("venv /v".to_string(), "present a==1.0 b".to_string())]
                .into_iter()
                .collect();
        assert!(changes(&wanted(venv(&["a==1.0", "b"])), &observed_venv).is_empty());
        assert_eq!(
            changes(&wanted(venv(&["a==2.0", "b"])), &observed_venv)[0].detail,
            "a==1.0 b → a==2.0 b"
        );
        assert!(changes(&wanted(venv(&["a"])), &observed)[0].create);
        let service = Item::Service {
            name: "s".into(),
            enabled: true,
            running: Some(true),
        };
        assert_eq!(
            changes(&wanted(service), &observed)[0].detail,
            "enable, start"
        );
        let file = Item::Directory {
            path: "/f".into(),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o755,
        };
        assert!(blocked(&wanted(file), &observed).is_some());
    }
}

#[cfg(test)]
mod certificate_tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// Signed by a CA of its own for b.example and a.example, valid until
    /// 2036-11-29 14:02:19 UTC (2111580139).
    const LEAF: &str = "-----BEGIN CERTIFICATE-----\nMIIBjzCCATSgAwIBAgIUGGgmCAwJ2tY/fRPMfukkMe5abVYwCgYIKoZIzj0EAwIw\nFTETMBEGA1UEAwwKZml4dHVyZSBDQTAeFw0yNjEyMDIxNDAyMTlaFw0zNjExMjkx\nNDAyMTlaMBQxEjAQBgNVBAMMCWIuZXhhbXBsZTBZMBMGByqGSM49AgEGCCqGSM49\nAwEHA0IABNnAZu0VGvHFVk0IXfBtAILZ21GnmZ3P6rOy+pIGtFU4PQwI7O97ugs7\n6EXVFx/qPGXvdkv5KEnPhAsm/GMKjWGjYzBhMB8GA1UdEQQYMBaCCWIuZXhhbXBs\nZYIJYS5leGFtcGxlMB0GA1UdDgQWBBQZ1jy+/0J47r43YjQ6pVE3dmurgTAfBgNV\nHSMEGDAWgBSvz87LKHjXO6Ts8sGDOarNEfSP6DAKBggqhkjOPQQDAgNJADBGAiEA\n5A5Lk2Lg4VTBHxsHcRnjgoBttPnlEs1DK2R7FjkjFjoCIQC7tiYpQ6fbWzza1TUg\nr71WZPnlJi2O/D9pwgHXTVT+Vw==\n-----END CERTIFICATE-----\n";
    /// The CA's own certificate: issuer and subject are the same.
    const SELF_SIGNED: &str = "-----BEGIN CERTIFICATE-----\nMIIBfzCCASWgAwIBAgIUagZqLmEgLLKTw4Z+TzbYIdR660IwCgYIKoZIzj0EAwIw\nFTETMBEGA1UEAwwKZml4dHVyZSBDQTAeFw0yNjEyMDIxNDAyMTlaFw0zNjExMjkx\nNDAyMTlaMBUxEzARBgNVBAMMCmZpeHR1cmUgQ0EwWTATBgcqhkjOPQIBBggqhkjO\nPQMBBwNCAAQD4/hvoEXCVKAf30pXgzilnLy4bSRGTdN9pxTS+ykHQIuWoJKtMEMD\nX5e5BF5REy8yLcYzHRwBU/2iZ2XRMA6Mo1MwUTAdBgNVHQ4EFgQUr8/Oyyh41zuk\n7PLBgzmqzRH0j+gwHwYDVR0jBBgwFoAUr8/Oyyh41zuk7PLBgzmqzRH0j+gwDwYD\nVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiAzi4MQ+xGLjoQNJS3gOkYP\n6D0oaQKI1cAC5PCudPrD4QIhAOTH+ivTU2B8FiJUwoXk8+q3lZLxTh8qyNr4EOAG\nKFeC\n-----END CERTIFICATE-----\n";
    const ENDS: u64 = 2_111_580_139;

    fn at(seconds: u64) -> std::time::SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn reads_issuer_names_and_expiry() {
        assert_eq!(
            certificate_state(LEAF.as_bytes(), at(ENDS - RENEW_WITHIN_SECONDS - 60)),
            "present ca fresh a.example,b.example,"
        );
        assert_eq!(
            certificate_state(LEAF.as_bytes(), at(ENDS - RENEW_WITHIN_SECONDS + 60)),
            "present ca expiring a.example,b.example,"
        );
        assert_eq!(
            certificate_state(SELF_SIGNED.as_bytes(), at(0)),
            "present self fresh ,"
        );
    }

    #[test]
    fn anything_else_is_an_expiring_placeholder() {
        for junk in [
            "",
            "not a certificate",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert_eq!(
                certificate_state(junk.as_bytes(), at(0)),
                "present self expiring ,"
            );
        }
    }
}
