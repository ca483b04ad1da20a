//! A machine's render: the renders of the homeservers it carries, made
//! one, so that a machine is observed, planned and applied as one host
//! (one round trip, one transaction, one record).
//!
//! Each customer's roles are named `ROLE@SERVER_NAME` in the machine's
//! render (its files, actions, system items, data and looks), so its
//! handlers run for its own changes only and the plan says whose each
//! change is. A customer that keeps a single host's layout keeps the
//! roles' plain names, as before it had company. What several customers
//! render alike (the firewall, the web server's package, the ACME hook)
//! is the machine's, once; the same path rendered differently is refused,
//! naming both customers.

use super::*;
use crate::inventory::Layout;

/// One customer's render, to be merged into its machine's.
pub(crate) struct CustomerRender<'a> {
    pub host: &'a Host,
    pub rendered: Rendered,
}

/// The name a customer's role has in its machine's render.
pub(crate) fn qualified(role: &str, host: &Host) -> String {
    match &host.placement {
        Some(placement) if placement.layout == Layout::Shared => {
            format!("{role}@{}", host.name)
        }
        _ => role.to_string(),
    }
}

/// The customers' renders as one, or what two customers want differently
/// of the machine.
pub(crate) fn merge(
    machine: &str,
    mut customers: Vec<CustomerRender>,
) -> Result<Rendered, Problems> {
    // A customer keeping a single host's layout comes first: what it
    // shares with the others stays under its roles' plain names.
    customers.sort_by_key(|customer| {
        let single = customer
            .host
            .placement
            .as_ref()
            .is_some_and(|placement| placement.layout == Layout::Single);
        (!single, customer.host.name.clone())
    });
    let mut merged = Rendered::default();
    let mut problems = Vec::new();
    let mut whose: BTreeMap<String, &str> = BTreeMap::new();
    for customer in &customers {
        let host = customer.host;
        let rendered = &customer.rendered;
        let name = |role: &str| qualified(role, host);
        for (path, file) in &rendered.files {
            let plain = &file.role;
            let file = DesiredFile {
                role: name(plain),
                ..file.clone()
            };
            match merged.files.get(path) {
                None => {
                    whose.insert(path.clone(), host.name.as_str());
                    merged.files.insert(path.clone(), file);
                }
                // Rendered alike by several customers: the machine's, under
                // the role's plain name (its actions are any customer's).
                Some(kept) if same_file(kept, &file) => {
                    if let Some(actions) = rendered.actions.get(plain) {
                        merged
                            .actions
                            .entry(plain.clone())
                            .or_insert_with(|| actions.clone());
                    }
                    if let Some(kept) = merged.files.get_mut(path) {
                        kept.role = plain.clone();
                    }
                }
                Some(_) => problems.push(
                    Problem::new(format!(
                        "{} and {} both render {path} (role {}), differently, and they share machine {machine}",
                        whose.get(path).copied().unwrap_or("?"),
                        host.name,
                        plain,
                    ))
                    .with_hint(Some(format!(
                        "a file several customers write is the machine's: give the vars it is made from one value, in machine_vars/{machine}.yaml (`matrixctl vars {} --explain VAR` shows where a value comes from); a role without paths of each customer's own (see `Sharing a machine` in `matrixctl options`) serves one customer of a machine",
                        host.name
                    ))),
                ),
            }
        }
        for (role, actions) in &rendered.actions {
            merged
                .actions
                .insert(name(role), customers_handlers(actions.clone(), host));
        }
        for note in &rendered.notes {
            if !merged.notes.contains(note) {
                merged.notes.push(note.clone());
            }
        }
        merged
            .system
            .extend(rendered.system.iter().map(|wanted| crate::system::Wanted {
                item: wanted.item.clone(),
                role: name(&wanted.role),
                also_for: wanted.also_for.iter().map(|role| name(role)).collect(),
            }));
        merged.read_facts |= rendered.read_facts;
        merged
            .asked_packages
            .extend(rendered.asked_packages.iter().cloned());
        merged
            .data
            .extend(rendered.data.iter().map(|item| DataItem {
                role: name(&item.role),
                ..item.clone()
            }));
        merged.health.extend(
            rendered
                .health
                .iter()
                .map(|probe| crate::health::HealthProbe {
                    role: name(&probe.role),
                    // Whose it is, where the plan prints it.
                    name: if name(&probe.role) == probe.role {
                        probe.name.clone()
                    } else {
                        format!("{} of {}", probe.name, host.name)
                    },
                    ..probe.clone()
                }),
        );
    }
    problems.extend(unite_system(&mut merged.system).into_iter().map(|problem| {
        problem.with_hint(Some(format!(
            "on machine {machine} it is one for all its customers: give them the settings it is made from alike (a release, the features that need a package or an extra), in machine_vars/{machine}.yaml"
        )))
    }));
    if problems.is_empty() {
        Ok(merged)
    } else {
        Err(Problems(problems))
    }
}

/// A customer's actions, with each handler that works on something of
/// the customer's own (its command names the customer's short name: its
/// unit, its account) named for the customer, so that the plan says whose
/// service restarts. A handler of the machine's (reload the web server)
/// keeps its name, and runs once however many customers changed.
fn customers_handlers(mut actions: RoleActions, host: &Host) -> RoleActions {
    let Some(placement) = host
        .placement
        .as_ref()
        .filter(|placement| placement.layout == Layout::Shared)
    else {
        return actions;
    };
    for handler in actions
        .handlers
        .iter_mut()
        .chain(actions.removal_handlers.iter_mut())
        .chain(actions.on_removal.iter_mut())
    {
        if handler.command.contains(&placement.customer) {
            handler.name = format!("{} for {}", handler.name, host.name);
        }
    }
    actions
}

/// Two renders of one path that are one file.
fn same_file(a: &DesiredFile, b: &DesiredFile) -> bool {
    a.content == b.content
        && a.mode == b.mode
        && a.owner == b.owner
        && a.group == b.group
        && a.sensitive == b.sensitive
}

/// One item per thing on the host: the same one wanted twice is one (the
/// one kept notes the other role), and two roles wanting it differently
/// is a problem.
pub(super) fn unite_system(system: &mut Vec<crate::system::Wanted>) -> Vec<Problem> {
    system.sort();
    // `dedup_by` hands the later item first: it is removed, and the
    // one kept notes the role that also wanted it.
    system.dedup_by(|later, kept| {
        let same = later.item == kept.item;
        if same {
            kept.also_for.push(later.role.clone());
            kept.also_for.append(&mut later.also_for);
        }
        same
    });
    let mut problems = Vec::new();
    for pair in system.windows(2) {
        if pair[0].item.key() == pair[1].item.key() {
            problems.push(Problem::new(format!(
                "roles `{}` and `{}` both declare {}, differently",
                pair[0].role,
                pair[1].role,
                pair[0].item.label()
            )));
        }
    }
    problems
}
