//! Desired against observed: what apply would do to each host. The plan is
//! a value, built whole before anything is touched; `plan` prints it and
//! `apply` prints and executes exactly it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::hash::sha256_hex;
use crate::observe::{FileState, Observed, PathState};
use crate::record::{Record, RecordEntry};
use crate::render::{DesiredFile, DesiredState, Handler, RoleActions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    Create,
    Update,
    Remove,
}

/// One change to one path.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub path: String,
    pub action: Action,
    /// The role that renders (or rendered) the file; none for leftovers.
    pub role: Option<String>,
    /// The file was edited on the host since matrixctl wrote it.
    pub drift: bool,
    /// A staged file left by an interrupted apply.
    pub leftover: bool,
    /// Never show this change's content.
    pub sensitive: bool,
    /// Never show the old content: the host keeps the file from others
    /// (no read bit for them), and it is not what matrixctl last wrote
    /// there (a file adopted from a hand-made server, or edited since).
    pub hide_before: bool,
    pub before: Option<FileState>,
    pub after: Option<DesiredFile>,
}

impl Change {
    pub(crate) fn content_changed(&self) -> bool {
        self.before.as_ref().map(|b| &b.content) != self.after.as_ref().map(|a| &a.content)
    }
}

/// Everything apply would do to one host.
#[derive(Debug, Clone)]
pub(crate) struct HostPlan {
    /// Sorted by path.
    pub changes: Vec<Change>,
    /// Files already as desired.
    pub unchanged: usize,
    /// The record apply writes, and where (in the host's state_dir).
    pub record: Record,
    pub record_path: String,
    /// Checks to run on the new files before handlers, and the handlers
    /// to run (in order): those of the roles whose files change, and any
    /// an interrupted apply still owed.
    pub validators: Vec<String>,
    pub handlers: Vec<Handler>,
    /// An interrupted apply left checks or handlers to run.
    pub journal_pending: bool,
    /// An interrupted apply left a backup (of this many files).
    pub interrupted_backup: Option<usize>,
    /// Every path this plan manages or managed before (desired and
    /// recorded): the only paths apply's backup may name.
    pub managed_paths: Vec<String>,
    /// What became of earlier applies that matrixctl did not see end (it
    /// stopped waiting, lost the connection, or the run was killed there).
    pub earlier_runs: Vec<String>,
    /// The host's record does not describe its files (an apply was cut
    /// short before writing it, or files already matched): apply rewrites
    /// it even when no file changes, so no managed file is ever forgotten.
    pub record_outdated: bool,
    /// What the changing roles' impact lines say this plan does to people.
    pub effects: BTreeSet<String>,
    /// Packages, groups, users, directories and services to add or change.
    pub system: Vec<crate::system::SystemChange>,
    /// What the roles' looks at the host's health found (the newest
    /// backup's age): shown, never a change and never a refusal, since
    /// the apply may be what mends it.
    pub health: Vec<crate::health::HealthSeen>,
}

impl HostPlan {
    pub(crate) fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.system.is_empty()
            && !self.record_outdated
            && !self.journal_pending
    }

    pub(crate) fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    /// Files and system items to add, to change and to remove (system
    /// items are never removed), for summaries.
    pub(crate) fn totals(&self) -> (usize, usize, usize) {
        let created = self.system.iter().filter(|change| change.create).count();
        (
            self.count(Action::Create) + created,
            self.count(Action::Update) + self.system.len() - created,
            self.count(Action::Remove),
        )
    }
}

/// A file's owner or group that the host lacks and no role that applies
/// creates: apply would stop at it, after installing packages, so plan
/// refuses the host instead. A role that installs packages is trusted to
/// get its accounts from them (a daemon's package makes its account).
fn missing_account(
    desired: &DesiredState,
    observed: &Observed,
    wanted: &[crate::system::Wanted],
    actions: &BTreeMap<String, RoleActions>,
) -> Option<String> {
    use crate::system::Item;
    let created = |kind: &str, name: &str| {
        wanted.iter().any(|w| match &w.item {
            Item::Group { name: group } => kind == "group" && group == name,
            Item::User { name: user, .. } => kind == "user" && user == name,
            _ => false,
        })
    };
    let installs_packages = |role: &str| {
        wanted.iter().any(|w| {
            matches!(w.item, Item::Package { .. })
                && (w.role == role || w.also_for.iter().any(|other| other == role))
        })
    };
    for file in desired.values() {
        if installs_packages(&file.role) {
            continue;
        }
        let accounts = [
            ("user", "owner", &file.owner),
            ("group", "group", &file.group),
        ];
        for (kind, what, name) in accounts {
            let Some(name) = name else { continue };
            let absent = observed
                .system
                .get(&format!("{kind} {name}"))
                .map(String::as_str)
                == Some("absent");
            if absent && !created(kind, name) {
                // A role that would make it, had the host other settings,
                // names the condition: that is the fix.
                let account = format!("{kind} {name}");
                let dormant = actions.iter().find_map(|(role, role_actions)| {
                    role_actions
                        .dormant_accounts
                        .iter()
                        .find(|(dormant, _)| *dormant == account)
                        .map(|(_, when)| (role, when))
                });
                let hint = match dormant {
                    Some((role, when)) => format!(
                        "role `{role}` makes it when `{when}`: set what that needs, or install the software that brings '{name}' first"
                    ),
                    None => format!(
                        "install the software that brings '{name}' first, or have role `{}` install it (`matrixctl options` lists its options)",
                        file.role
                    ),
                };
                return Some(format!(
                    "refusing this host: {kind} '{name}' does not exist on this host, and no role here creates it ({what} of {}, role `{}`)\nhint: {hint}",
                    file.path, file.role
                ));
            }
        }
    }
    None
}

/// Whether a host file's content must not be shown: others cannot read
/// it on the host, and matrixctl does not know it as its own rendering
/// (`unknown`: no record of it, or edited since). Adopting a hand-made
/// server shows its 0640 conf.d file's secrets otherwise.
fn private_unknown(file: &FileState, unknown: bool) -> bool {
    unknown && file.mode & 0o004 == 0
}

/// Why a host cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blocked(pub String);

pub(crate) fn plan_host(
    desired: &DesiredState,
    observed: &Observed,
    record_path: &str,
    actions: &BTreeMap<String, RoleActions>,
    wanted: &[crate::system::Wanted],
) -> Result<HostPlan, Blocked> {
    if let Some(owner) = &observed.busy {
        return Err(Blocked(format!(
            "busy: an apply is running on this host right now (locked by {owner}); plan again once it has finished"
        )));
    }
    if !observed.unsafe_paths.is_empty() {
        return Err(Blocked(format!(
            "refusing this host: a path matrixctl would write through could have been bent by someone else:\n{}\nhint: remove a symlink named here, or replace it with what it stands for; make each directory named here root's and writable by root alone, and keep services' own files out of matrixctl's paths",
            observed.unsafe_paths.join("\n")
        )));
    }
    if let Some(reason) = crate::system::blocked(wanted, &observed.system) {
        return Err(Blocked(format!("refusing this host: {reason}")));
    }
    if let Some(reason) = missing_account(desired, observed, wanted, actions) {
        return Err(Blocked(reason));
    }
    let mut wanted = wanted.to_vec();
    crate::system::fit_to_release(&mut wanted, observed.facts.release.as_deref())
        .map_err(|reason| Blocked(format!("refusing this host: {reason}")))?;
    let wanted = wanted.as_slice();
    let system = crate::system::changes(wanted, &observed.system);
    if let Some(change) = system.iter().find(|change| {
        observed.system.get(&change.item.key()).map(String::as_str) == Some("unsupported")
    }) {
        return Err(Blocked(format!(
            "role `{}` wants {}, and this host is a directory (root is not /): packages, accounts and services need a whole host",
            change.role,
            change.item.label()
        )));
    }
    let mut changes = Vec::new();
    let mut unchanged = 0;
    let old_record = &observed.record;
    let mut record = Record::default();

    for (path, file) in desired {
        let recorded = old_record.files.get(path);
        let state = observed.paths.get(path).unwrap_or(&PathState::Absent);
        record.files.insert(
            path.clone(),
            RecordEntry {
                sha256: sha256_hex(&file.content),
                mode: file.mode,
                sensitive: file.sensitive,
                role: file.role.clone(),
            },
        );
        let sensitive = file.sensitive || recorded.is_some_and(|r| r.sensitive);
        let change = |action, before: Option<&FileState>, drift: bool| Change {
            path: path.clone(),
            action,
            role: Some(file.role.clone()),
            drift,
            leftover: false,
            sensitive,
            hide_before: before
                .is_some_and(|before| private_unknown(before, recorded.is_none() || drift)),
            before: before.cloned(),
            after: Some(file.clone()),
        };
        match state {
            PathState::Other(what) => {
                return Err(Blocked(format!(
                    "{path} is a {what}, not a regular file; matrixctl will not replace it (role `{}`)",
                    file.role
                )));
            }
            PathState::Absent => changes.push(change(Action::Create, None, false)),
            PathState::File(current) => {
                let same = current.content == file.content
                    && current.mode == file.mode
                    && file.owner.as_ref().is_none_or(|o| *o == current.owner)
                    && file.group.as_ref().is_none_or(|g| *g == current.group);
                if same {
                    unchanged += 1;
                } else {
                    let drift = recorded.is_some_and(|r| r.sha256 != sha256_hex(&current.content));
                    changes.push(change(Action::Update, Some(current), drift));
                }
            }
        }
    }

    for (path, recorded) in &old_record.files {
        if desired.contains_key(path) {
            continue;
        }
        match observed.paths.get(path) {
            Some(PathState::File(current)) => {
                let drift = recorded.sha256 != sha256_hex(&current.content);
                changes.push(Change {
                    path: path.clone(),
                    action: Action::Remove,
                    role: Some(recorded.role.clone()),
                    drift,
                    leftover: false,
                    sensitive: recorded.sensitive,
                    hide_before: private_unknown(current, drift),
                    before: Some(current.clone()),
                    after: None,
                })
            }
            Some(PathState::Other(what)) => {
                return Err(Blocked(format!(
                    "{path}, which matrixctl used to manage, is now a {what}; remove it by hand or restore the file"
                )));
            }
            // Already gone: nothing to do; the new record forgets it.
            Some(PathState::Absent) | None => {}
        }
    }

    for path in &observed.leftovers {
        changes.push(Change {
            path: path.clone(),
            action: Action::Remove,
            role: None,
            drift: false,
            leftover: true,
            // A staged file may hold anything, secrets included.
            sensitive: true,
            hide_before: true,
            before: None,
            after: None,
        });
    }

    // Apply restores only paths its plan manages (mc_backup_begin): a
    // manifest naming another is refused here first.
    if let Some(path) = observed.backup_paths.iter().find(|path| {
        !desired.contains_key(path.as_str()) && !changes.iter().any(|change| change.path == **path)
    }) {
        return Err(Blocked(format!(
            "refusing this host: the backup manifest in {}/backup names {path}, which this plan does not manage; refusing to use it (move the backup away and apply again)",
            record_path.rsplit_once('/').map_or("", |(dir, _)| dir)
        )));
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    record.facts = actions
        .iter()
        .filter(|(_, role_actions)| !role_actions.facts.is_empty())
        .map(|(role, role_actions)| (role.clone(), role_actions.facts.clone()))
        .collect();
    // A machine's customer's roles (`ROLE@CUSTOMER`): what stops them,
    // should the customer leave the inventory.
    record.removals = actions
        .iter()
        .filter(|(role, role_actions)| role.contains('@') && !role_actions.on_removal.is_empty())
        .filter_map(|(role, role_actions)| {
            Some((
                role.clone(),
                serde_json::to_value(&role_actions.on_removal).ok()?,
            ))
        })
        .collect();
    let record_outdated = record != observed.record;

    // A role whose files change, or whose software moves (a package, a
    // venv or an artifact installed, upgraded or switched), runs its
    // handlers: an upgraded service restarts on the new version.
    let software_changed = system.iter().filter(|change| {
        matches!(
            change.item,
            crate::system::Item::Package { .. }
                | crate::system::Item::Venv { .. }
                | crate::system::Item::Artifact { .. }
        )
    });
    let changed_roles: BTreeSet<&str> = changes
        .iter()
        .filter(|change| !change.leftover)
        .filter_map(|change| change.role.as_deref())
        .chain(software_changed.flat_map(|change| change.roles()))
        .collect();
    let mut validators: Vec<String> = Vec::new();
    let mut handlers: BTreeSet<Handler> = BTreeSet::new();
    // What an interrupted apply still owes: its handlers, and checks. The
    // checks are the inventory's as they are now, every role's (the
    // journal's commands may be the very ones that failed and were fixed
    // since); a handler the inventory still has runs as it is now.
    if let Some(journal) = &observed.journal {
        for role_actions in actions.values() {
            for validator in &role_actions.validators {
                if !validators.contains(validator) {
                    validators.push(validator.clone());
                }
            }
        }
        for owed in &journal.handlers {
            let current = actions
                .values()
                .flat_map(|role_actions| &role_actions.handlers)
                .find(|handler| handler.name == owed.name);
            handlers.insert(current.unwrap_or(owed).clone());
        }
    }
    let mut effects = BTreeSet::new();
    for role in &changed_roles {
        if let Some(role_actions) = actions.get(*role) {
            let before = old_record.facts.get(*role);
            // Taking over a file of this role that matrixctl never wrote.
            let adopting = changes.iter().any(|change| {
                change.role.as_deref() == Some(*role)
                    && change.action == Action::Update
                    && !old_record.files.contains_key(&change.path)
            });
            effects.extend(role_effects(role, role_actions, before, adopting));
            if let Some(refusal) = role_refusals(role, role_actions, before, adopting).first() {
                return Err(Blocked(format!(
                    "refusing this host: role `{role}`: {refusal}"
                )));
            }
            handlers.extend(role_actions.removal_handlers.iter().cloned());
            for validator in &role_actions.validators {
                if !validators.contains(validator) {
                    validators.push(validator.clone());
                }
            }
            handlers.extend(role_actions.handlers.iter().cloned());
        } else if let Some(stored) = old_record.removals.get(*role) {
            // A customer gone from the inventory: its files go, and what
            // its roles said stops them runs.
            let stored: Vec<Handler> = serde_json::from_value(stored.clone()).unwrap_or_default();
            handlers.extend(stored);
        }
    }
    Ok(HostPlan {
        changes,
        unchanged,
        record,
        record_path: record_path.to_string(),
        record_outdated,
        validators,
        handlers: handlers.into_iter().collect(),
        journal_pending: observed.journal.is_some(),
        interrupted_backup: observed.interrupted_backup,
        managed_paths: desired
            .keys()
            .chain(old_record.files.keys())
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        earlier_runs: observed.earlier_runs.clone(),
        effects,
        system,
        health: observed.health.clone(),
    })
}

/// What a changing role's `impacts:` lines say, given its facts at the
/// last apply (`before`, none on a host never applied with them) and now,
/// and whether this apply takes over files matrixctl did not write
/// (`adopting`: a server set up by hand). A line that cannot be evaluated
/// says so rather than vanishing.
fn role_effects(
    role: &str,
    actions: &RoleActions,
    before: Option<&crate::record::Facts>,
    adopting: bool,
) -> Vec<String> {
    evaluate(role, "impacts", &actions.impacts, actions, before, adopting)
}

/// What a changing role's `refusals:` say (those the operator has not
/// waived), in the same context as its impacts: each line stops the host.
fn role_refusals(
    role: &str,
    actions: &RoleActions,
    before: Option<&crate::record::Facts>,
    adopting: bool,
) -> Vec<String> {
    evaluate(
        role,
        "refusals",
        &actions.refusals,
        actions,
        before,
        adopting,
    )
}

fn evaluate(
    role: &str,
    what: &str,
    templates: &[String],
    actions: &RoleActions,
    before: Option<&crate::record::Facts>,
    adopting: bool,
) -> Vec<String> {
    if templates.is_empty() {
        return Vec::new();
    }
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    // `before` stays undefined on a host without recorded facts, so a line
    // can test `before.NAME is defined`.
    let mut context = BTreeMap::new();
    context.insert(
        "after",
        minijinja::Value::from(minijinja::value::Serde(&actions.facts)),
    );
    context.insert("adopting", minijinja::Value::from(adopting));
    if let Some(before) = before {
        context.insert(
            "before",
            minijinja::Value::from(minijinja::value::Serde(before)),
        );
    }
    let mut effects = Vec::new();
    for (index, template) in templates.iter().enumerate() {
        match env.render_str(template, &context) {
            Ok(text) => effects.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .map(str::to_string),
            ),
            Err(error) => effects.push(format!(
                "(role `{role}`: {what}[{index}] could not be evaluated: {error})"
            )),
        }
    }
    effects
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_upgrade_alone_runs_its_roles_handlers() {
        let handler = Handler {
            order: 50,
            name: "restart turnd".into(),
            command: "systemctl restart turnd".into(),
            armed: None,
            impact: None,
        };
        let actions: BTreeMap<String, RoleActions> = [(
            "turn".to_string(),
            RoleActions {
                handlers: vec![handler.clone()],
                ..RoleActions::default()
            },
        )]
        .into_iter()
        .collect();
        let wanted = [crate::system::Wanted {
            item: crate::system::Item::Package {
                name: "turnd".into(),
                version: Some("2.0".into()),
            },
            role: "turn".into(),
            also_for: Vec::new(),
        }];
        let mut observed = Observed::default();
        let plan = |observed: &Observed| {
            plan_host(
                &DesiredState::new(),
                observed,
                "/var/lib/matrixctl/state",
                &actions,
                &wanted,
            )
            .unwrap()
        };
        observed
            .system
            .insert("package turnd".into(), "installed 2.0".into());
        assert!(
            plan(&observed).handlers.is_empty(),
            "at its pin: nothing to do"
        );
        observed
            .system
            .insert("package turnd".into(), "installed 1.0".into());
        let upgrade = plan(&observed);
        assert_eq!(upgrade.system[0].detail, "1.0 → 2.0");
        assert_eq!(upgrade.handlers, [handler]);
    }

    fn desired(path: &str, content: &str) -> DesiredState {
        let file = DesiredFile {
            path: path.to_string(),
            content: content.as_bytes().to_vec(),
            mode: 0o644,
            owner: None,
            group: None,
            role: "r".to_string(),
            sensitive: false,
        };
        [(path.to_string(), file)].into_iter().collect()
    }

    fn on_host(path: &str, content: &str, mode: u32) -> (String, PathState) {
        let state = FileState {
            mode,
            owner: "root".into(),
            group: "root".into(),
            content: content.as_bytes().to_vec(),
        };
        (path.to_string(), PathState::File(state))
    }

    /// The plan of `want` against `observed`, with the default state
    /// directory and no system items.
    fn plan_files(want: &DesiredState, observed: &Observed) -> Result<HostPlan, Blocked> {
        plan_host(
            want,
            observed,
            "/var/lib/matrixctl/state",
            &BTreeMap::new(),
            &[],
        )
    }

    #[test]
    fn absent_is_create_equal_is_nothing_mode_is_update() {
        let want = desired("/a", "x\n");
        let plan = plan_files(&want, &Observed::default()).unwrap();
        assert_eq!(plan.changes[0].action, Action::Create);

        let mut observed = Observed::default();
        observed.paths.extend([on_host("/a", "x\n", 0o644)]);
        let plan = plan_files(&want, &observed).unwrap();
        assert!(plan.changes.is_empty());
        assert_eq!(plan.unchanged, 1);
        // The file matches, but the host has no record of it yet.
        assert!(plan.record_outdated);
        observed.record = plan.record.clone();
        assert!(plan_files(&want, &observed).unwrap().is_empty());

        observed.paths.extend([on_host("/a", "x\n", 0o600)]);
        let plan = plan_files(&want, &observed).unwrap();
        assert_eq!(plan.changes[0].action, Action::Update);
        assert!(!plan.changes[0].content_changed());
    }

    #[test]
    fn recorded_files_no_longer_rendered_are_removed_and_edits_are_drift() {
        let first = plan_host(
            &desired("/a", "x\n"),
            &Observed::default(),
            "/var/lib/matrixctl/state",
            &BTreeMap::new(),
            &[],
        )
        .unwrap();
        let mut observed = Observed {
            record: first.record,
            ..Observed::default()
        };
        observed.paths.extend([on_host("/a", "edited\n", 0o644)]);

        let plan = plan_host(
            &desired("/a", "x\n"),
            &observed,
            "/var/lib/matrixctl/state",
            &BTreeMap::new(),
            &[],
        )
        .unwrap();
        assert_eq!(plan.changes[0].action, Action::Update);
        assert!(plan.changes[0].drift);

        let plan = plan_files(&DesiredState::new(), &observed).unwrap();
        assert_eq!(plan.changes[0].action, Action::Remove);
        assert!(plan.record.files.is_empty());
    }

    #[test]
    fn a_directory_in_the_way_blocks_the_host() {
        let mut observed = Observed::default();
        observed
            .paths
            .insert("/a".into(), PathState::Other("directory".into()));
        assert!(
            plan_host(
                &desired("/a", "x"),
                &observed,
                "/var/lib/matrixctl/state",
                &BTreeMap::new(),
                &[]
            )
            .is_err()
        );
    }
}
