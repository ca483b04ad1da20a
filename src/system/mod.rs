//! The host as a system, next to its files: repositories, packages,
//! groups, users, directories, Python virtualenvs, PostgreSQL databases,
//! pinned release artifacts, generated files, services and certificates
//! that roles declare. The core knows these kinds (dpkg, useradd, psql,
//! systemd, openssl), never what a role installs. Each item is observed in
//! the same program run as the files, planned with the same `+ ~` grammar,
//! and carried out in a fixed order: repositories, packages, groups,
//! users, directories, virtualenvs, databases and the artifacts' downloads
//! before any file is staged; each artifact's `current` switched with the
//! new files; generated files once the new files are in place; services
//! after the validators, around the handlers; certificates last. Nothing
//! here is ever removed or rolled back but an artifact's `current`: a
//! package, an account or a database outlives the role that asked for it
//! (removing them could take data with them), and the plan says so.
//!
//! Each kind is a module: how the host is asked about it (its part of the
//! host program is `src/transport/remote/KIND.sh`), how what the host said
//! differs from what is wanted, and what apply runs. This module holds the
//! items, the one table of the order kinds are observed and applied in
//! ([`observe`], [`before_files`]), and what dispatches to the kinds.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::transport::program::Program;

pub(crate) mod accounts;
pub(crate) mod artifacts;
pub(crate) mod certificates;
pub(crate) mod databases;
pub(crate) mod directories;
pub(crate) mod generated;
pub(crate) mod packages;
pub(crate) mod repositories;
pub(crate) mod services;
pub(crate) mod venvs;

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
    /// A pinned release in `dest/version`, `dest/current` pointing at it.
    Artifact {
        name: String,
        version: String,
        url: String,
        sha256: String,
        unpack: crate::roles::Unpack,
        strip: u8,
        dest: String,
        owner: String,
        group: String,
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
            Item::Artifact { name, .. } => format!("artifact {name}"),
        }
    }

    /// The key the host program reports the item's state under: its label,
    /// or for a generated file its path (two roles may generate a "key").
    pub(crate) fn key(&self) -> String {
        match self {
            Item::Generated { path, .. } => format!("generated {path}"),
            Item::Artifact { dest, .. } => format!("artifact {dest}"),
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

/// How an item differs from what the host has.
#[derive(Debug)]
pub(crate) struct Difference {
    /// Absent now (`+`), or there but different (`~`).
    create: bool,
    /// What differs, for people.
    detail: String,
    /// For a service: the systemctl verbs apply runs.
    systemctl: Vec<&'static str>,
}

impl Difference {
    fn create(detail: String) -> Difference {
        Difference {
            create: true,
            detail,
            systemctl: Vec::new(),
        }
    }

    fn update(detail: String) -> Difference {
        Difference {
            create: false,
            detail,
            systemctl: Vec::new(),
        }
    }
}

/// Each wanted item that the host does not have as wanted.
pub(crate) fn changes(wanted: &[Wanted], observed: &ObservedSystem) -> Vec<SystemChange> {
    wanted
        .iter()
        .filter_map(
            |Wanted {
                 item,
                 role,
                 also_for,
             }| {
                let state = observed.get(&item.key()).map(String::as_str).unwrap_or("");
                let words: Vec<&str> = state.split(' ').collect();
                let difference = match item {
                    Item::Repository { .. } => repositories::difference(item, &words),
                    Item::Package { version, .. } => packages::difference(version.as_ref(), &words),
                    Item::Group { .. } => accounts::group_difference(state),
                    Item::User {
                        group, home, login, ..
                    } => accounts::user_difference(group, home, *login, state),
                    Item::Directory {
                        owner, group, mode, ..
                    } => directories::difference(owner, group, *mode, &words),
                    Item::Venv { requirements, .. } => venvs::difference(requirements, &words),
                    Item::Service {
                        enabled, running, ..
                    } => services::difference(*enabled, *running, &words),
                    Item::Certificate { name, .. } => certificates::difference(name, &words),
                    Item::Generated { path, .. } => generated::difference(path, state),
                    Item::Database { owner, .. } => databases::difference(owner, state),
                    Item::Artifact { version, .. } => artifacts::difference(version, &words),
                }?;
                Some(SystemChange {
                    item: item.clone(),
                    role: role.clone(),
                    also_for: also_for.clone(),
                    create: difference.create,
                    detail: difference.detail,
                    systemctl: difference.systemctl,
                })
            },
        )
        .collect()
}

/// Asks the host about every wanted item, in one program run with the
/// files: packages, services, groups, accounts and directories in one
/// call each for all of them (one dpkg-query, one systemctl, one getent,
/// one stat), the rest one by one. `file_groups` and `file_owners` are
/// the accounts the files name (plan refuses a file whose owner nothing
/// provides, instead of apply failing after packages were installed).
pub(crate) fn observe(
    program: &mut Program,
    wanted: &[Wanted],
    file_groups: &[&str],
    file_owners: &[&str],
) {
    type ObserveAll = fn(&mut Program, &[&str]);
    type Pick = fn(&Item) -> Option<&str>;
    let batches: [(ObserveAll, Pick, &[&str]); 5] = [
        (
            packages::observe,
            |item| match item {
                Item::Package { name, .. } => Some(name),
                _ => None,
            },
            &[],
        ),
        (
            services::observe,
            |item| match item {
                Item::Service { name, .. } => Some(name),
                _ => None,
            },
            &[],
        ),
        (
            accounts::observe_groups,
            |item| match item {
                Item::Group { name } => Some(name),
                _ => None,
            },
            file_groups,
        ),
        (
            accounts::observe_users,
            |item| match item {
                Item::User { name, .. } => Some(name),
                _ => None,
            },
            file_owners,
        ),
        (
            directories::observe,
            |item| match item {
                Item::Directory { path, .. } => Some(path),
                _ => None,
            },
            &[],
        ),
    ];
    for (observe, pick, more) in batches {
        let mut names: Vec<&str> = wanted
            .iter()
            .filter_map(|wanted| pick(&wanted.item))
            .chain(more.iter().copied())
            .collect();
        names.sort_unstable();
        names.dedup();
        if !names.is_empty() {
            observe(program, &names);
        }
    }
    for Wanted { item, .. } in wanted {
        match item {
            Item::Repository { name, .. } => repositories::observe(program, name),
            Item::Venv { path, .. } => venvs::observe(program, path),
            Item::Database {
                name,
                owner,
                password,
            } => databases::observe(program, name, owner, password),
            Item::Generated { path, .. } => generated::observe(program, path),
            Item::Certificate { name, path, .. } => certificates::observe(program, name, path),
            Item::Artifact {
                dest,
                version,
                sha256,
                ..
            } => artifacts::observe(program, dest, version, sha256),
            Item::Package { .. }
            | Item::Service { .. }
            | Item::Group { .. }
            | Item::User { .. }
            | Item::Directory { .. } => {}
        }
    }
}

/// What apply does to the host as a system before any file is staged, in
/// this order: repositories, packages (one apt-get run), groups, users,
/// directories, venvs and databases (their server may be a package just
/// installed). Generated files ([`generated::apply`]) follow the new
/// files, services ([`services::enable`], [`services::start`]) go around
/// the handlers, certificates ([`certificates::apply`]) come last.
pub(crate) fn before_files(program: &mut Program, changes: &[SystemChange]) {
    repositories::apply(program, changes);
    packages::apply(program, changes);
    accounts::apply(program, changes);
    directories::apply(program, changes);
    venvs::apply(program, changes);
    databases::apply(program, changes);
    artifacts::fetch(program, changes);
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
                *sources = repositories::sources(role, name, url, suite, components);
            }
            Item::Package {
                name,
                version: Some(version),
            } => {
                let Some(codename) = codename else { continue };
                if let Some(built_for) = packages::release_of_build(version)
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

/// A directory item's path must not be something else already (a file, a
/// symlink), and a database that exists must be as wanted (matrixctl never
/// alters one): said before anything is changed.
pub(crate) fn blocked(wanted: &[Wanted], observed: &ObservedSystem) -> Option<String> {
    wanted.iter().find_map(|Wanted { item, .. }| {
        let state = observed.get(&item.key()).map(String::as_str);
        match item {
            Item::Database { name, owner, .. } => {
                let login = observed.get(&format!("login {owner}")).map(String::as_str);
                databases::blocked(name, owner, login, state)
            }
            Item::Directory { path, .. } => directories::blocked(path, state?),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_items_fit_the_host_s_release() {
        assert_eq!(
            packages::release_of_build("1.163.2+bookworm1"),
            Some("bookworm")
        );
        assert_eq!(
            packages::release_of_build("1.163.2+trixie12"),
            Some("trixie")
        );
        assert_eq!(packages::release_of_build("1.163.2"), None);
        assert_eq!(packages::release_of_build("2.0+dfsg"), None);
        assert_eq!(packages::release_of_build("1.0+bookworm"), None);
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
            venvs::state(b"a==1.0\nb[extra]>=2 ; $(x)\n\0"),
            "present a==1.0 b[extra]>=2 x"
        );
        assert_eq!(venvs::state(b""), "present");
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
