//! What plan and apply print: text for people (stdout) and JSON for
//! programs. Every string leaves through the redactor; hosts are in name
//! order and changes in path order, so the same state prints the same bytes.

use serde::Serialize;

use crate::diff::{Style, paint, unified};
use std::collections::BTreeMap;

use crate::fleet::{Applied, AppliedHost, PlannedHost};
use crate::plan::{Action, Change, HostPlan};
use crate::secrets::Redactor;

/// The version of the JSON output's shape (docs/json.md).
pub(crate) const JSON_FORMAT_VERSION: u32 = 1;

/// Totals over the fleet.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub(crate) struct Summary {
    pub create: usize,
    pub update: usize,
    pub remove: usize,
    pub hosts: usize,
    pub hosts_with_changes: usize,
    pub hosts_failed: usize,
    /// Apply only: hosts a staged rollout never started.
    pub hosts_not_started: usize,
}

impl Summary {
    pub(crate) fn of(planned: &[PlannedHost], applied: Option<&[AppliedHost]>) -> Summary {
        let mut summary = Summary {
            hosts: planned.len(),
            ..Summary::default()
        };
        for host in planned {
            match &host.plan {
                Ok(plan) => {
                    let (create, update, remove) = plan.totals();
                    summary.create += create;
                    summary.update += update;
                    summary.remove += remove;
                    summary.hosts_with_changes += usize::from(!plan.is_empty());
                }
                Err(_) => summary.hosts_failed += 1,
            }
        }
        if let Some(applied) = applied {
            summary.hosts_failed += applied.iter().filter(|a| a.result.is_failure()).count();
            summary.hosts_not_started = applied
                .iter()
                .filter(|a| matches!(a.result, Applied::NotStarted(_)))
                .count();
        }
        summary
    }
}

fn plural(count: usize, word: &str) -> String {
    if count == 1 {
        format!("{count} {word}")
    } else {
        format!("{count} {word}s")
    }
}

/// How much of each change a text plan shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detail {
    /// Each change with its diff or content.
    Full,
    /// Each change's line alone (`plan --summary`, saved plans): no
    /// content, in text or JSON (`diff` is null).
    Lines,
}

/// The plan, then the summary line. A change that is the same on several
/// hosts prints once, headed by those hosts, so a fleet plan stays short.
pub(crate) fn plan_text(
    planned: &[PlannedHost],
    style: Style,
    redactor: &Redactor,
    detail: Detail,
) -> String {
    // Each change as text, and the hosts it appears on.
    let mut hosts_of_change: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
    let mut unchanged = Vec::new();
    for host in planned {
        let Ok(plan) = &host.plan else { continue };
        if plan.is_empty() {
            unchanged.push(host.name.as_str());
        }
        for (path, mut text) in change_texts(plan, style) {
            if detail == Detail::Lines {
                // The change's own line, without what is indented under it.
                text.truncate(text.find('\n').map_or(text.len(), |end| end + 1));
            }
            hosts_of_change
                .entry((path, text))
                .or_default()
                .push(&host.name);
        }
    }
    // Then the changes of each set of hosts, in path order.
    let mut changes_of_hosts: BTreeMap<Vec<&str>, Vec<String>> = BTreeMap::new();
    for ((_, text), hosts) in hosts_of_change {
        changes_of_hosts.entry(hosts).or_default().push(text);
    }
    let mut out = crate::impact::impact_text(&crate::impact::impacts(planned), planned.len());
    for (hosts, changes) in &changes_of_hosts {
        out.push_str(&style.bold(&host_list(hosts)));
        out.push('\n');
        for change in changes {
            out.push_str(change);
        }
        out.push('\n');
    }
    if !unchanged.is_empty() {
        out.push_str(&format!("No changes: {}.\n\n", host_list(&unchanged)));
    }
    // Only for hosts with changes: a note is work for when a role starts
    // or changes on a host, and repeating it on every plan of a converged
    // host only buries it (JSON always carries the notes).
    let noted: Vec<&PlannedHost> = planned
        .iter()
        .filter(|host| !host.notes.is_empty())
        .filter(|host| host.plan.as_ref().is_ok_and(|plan| !plan.is_empty()))
        .collect();
    if !noted.is_empty() {
        out.push_str("Notes (for you to do; matrixctl cannot):\n");
        for host in noted {
            for note in &host.notes {
                out.push_str(&format!("  {}: {note}\n", host.name));
            }
        }
        out.push('\n');
    }
    out.push_str(&health_text(planned, style));
    for host in planned {
        if let Err(reason) = &host.plan {
            out.push_str(&format!(
                "{} {} ({})\n",
                style.red("FAILED"),
                style.bold(&host.name),
                host.reached_by
            ));
            for line in reason.lines() {
                out.push_str(&format!("    {line}\n"));
            }
            out.push('\n');
        }
    }
    out.push_str(&plan_summary(&Summary::of(planned, None), planned));
    out.push('\n');
    redactor.redact(&out).into_owned()
}

/// What the roles' looks found wrong on the hosts, whether or not they
/// change: a failing backup is news on a converged host too.
fn health_text(planned: &[PlannedHost], style: Style) -> String {
    use crate::health::HealthStatus;
    let mut out = String::new();
    for host in planned {
        let Ok(plan) = &host.plan else { continue };
        for seen in plan.health.iter().filter(|seen| seen.is_concern()) {
            let status = match seen.status {
                HealthStatus::Error => style.red("FAILING"),
                _ => style.yellow("warning"),
            };
            out.push_str(&format!(
                "  {}: {} {status}: {}\n",
                host.name, seen.name, seen.message
            ));
            if let Some(hint) = &seen.hint {
                out.push_str(&format!("      hint: {hint}\n"));
            }
        }
    }
    if out.is_empty() {
        out
    } else {
        format!("On the hosts (looked at there; not changes):\n{out}\n")
    }
}

/// Hosts as a header: all names when few; with many, a count and a
/// comma-separated list that `--limit` accepts as it is.
fn host_list(hosts: &[&str]) -> String {
    match hosts.len() {
        0..=5 => hosts.join(", "),
        n => format!("{n} hosts: {}", hosts.join(",")),
    }
}

pub(crate) fn plan_summary(summary: &Summary, planned: &[PlannedHost]) -> String {
    let mut line = format!(
        "Plan: {} to add, {} to change, {} to remove on {} of {}.",
        summary.create,
        summary.update,
        summary.remove,
        summary.hosts_with_changes,
        plural(summary.hosts, "host")
    );
    let failed: Vec<&str> = planned
        .iter()
        .filter(|h| h.plan.is_err())
        .map(|h| h.name.as_str())
        .collect();
    line.push_str(&listed_suffix(&failed, "failed"));
    line
}

fn listed_suffix(hosts: &[&str], what: &str) -> String {
    if hosts.is_empty() {
        String::new()
    } else {
        format!(
            " {} {what}: {}.",
            plural(hosts.len(), "host"),
            hosts.join(", ")
        )
    }
}

/// Each change of a host's plan as printed: (sort key, text). A machine's
/// plan is grouped by customer (`ROLE@CUSTOMER` roles), what the machine
/// shares last.
fn change_texts(plan: &HostPlan, style: Style) -> Vec<(String, String)> {
    let texts = ungrouped_change_texts(plan, style);
    let customer_of = |role: &str| {
        role.split_once('@')
            .map(|(_, customer)| customer.to_string())
    };
    let mut customers: Vec<Option<String>> = Vec::new();
    for change in &plan.system {
        let mut of = change.roles().map(customer_of);
        let first = of.next().flatten();
        customers.push(first.filter(|first| of.all(|other| other.as_ref() == Some(first))));
    }
    let file_customers: BTreeMap<&str, Option<String>> = plan
        .changes
        .iter()
        .map(|change| {
            (
                change.path.as_str(),
                change.role.as_deref().and_then(customer_of),
            )
        })
        .collect();
    if customers
        .iter()
        .chain(file_customers.values())
        .all(Option::is_none)
    {
        return texts;
    }
    let mut grouped = Vec::new();
    let mut headed = std::collections::BTreeSet::new();
    for (key, text) in texts {
        // System items are keyed by their index (see below).
        let customer = match key.strip_prefix(['!', '}']) {
            Some(index) if index.len() == 4 => index
                .parse::<usize>()
                .ok()
                .and_then(|index| customers.get(index).cloned().flatten()),
            _ => file_customers.get(key.as_str()).cloned().flatten(),
        };
        let group = match (&customer, key.starts_with('~')) {
            (Some(customer), _) => format!("1{customer}"),
            (None, false) => "2".to_string(),
            (None, true) => "3".to_string(),
        };
        if group != "3" && headed.insert(group.clone()) {
            let header = match &customer {
                Some(customer) => format!("  [{customer}]\n"),
                None => "  [the machine]\n".to_string(),
            };
            grouped.push((format!("{group}\u{0}"), header));
        }
        grouped.push((format!("{group}\u{1}{key}"), text));
    }
    grouped
}

/// `change_texts` before grouping by customer.
fn ungrouped_change_texts(plan: &HostPlan, style: Style) -> Vec<(String, String)> {
    let mut texts = Vec::new();
    if plan.changes.is_empty() && plan.record_outdated {
        texts.push((
            plan.record_path.clone(),
            format!(
                "  {} {}  (its files already match; apply records them as managed)\n",
                style.yellow("~"),
                plan.record_path
            ),
        ));
    }
    // The host as a system: before the files (`!` sorts before `/`), and
    // services after them (`}` sorts after every path), as apply does.
    for (index, change) in plan.system.iter().enumerate() {
        let painted = if change.create {
            style.green("+")
        } else {
            style.yellow("~")
        };
        let roles: Vec<&str> = change.roles().collect();
        let roles = match roles.as_slice() {
            [one] => format!("role {one}"),
            [init @ .., last] => format!("roles {} and {last}", init.join(", ")),
            [] => String::new(),
        };
        let detail = if change.detail.is_empty() {
            roles
        } else {
            format!("{roles}, {}", change.detail)
        };
        let key = if change.item.after_files() {
            format!("}}{index:04}")
        } else {
            format!("!{index:04}")
        };
        texts.push((
            key,
            format!("  {painted} {}  ({detail})\n", change.item.label()),
        ));
    }
    for change in &plan.changes {
        let painted = match change.action {
            Action::Create => style.green("+"),
            Action::Update => style.yellow("~"),
            Action::Remove => style.red("-"),
        };
        let mut text = format!("  {painted} {}  ({})\n", change.path, describe(change));
        if let Some(body) = body(change) {
            let body = if body.starts_with('(') {
                body
            } else {
                paint(&body, style)
            };
            for line in body.lines() {
                text.push_str(&format!("      {line}\n"));
            }
        }
        texts.push((change.path.clone(), text));
    }
    // After the files (paths sort before "~"): what apply runs, and what an
    // interrupted apply left.
    if let Some(files) = plan.interrupted_backup {
        texts.push((
            "~1".to_string(),
            format!(
                "  {} an interrupted apply left a backup of {}: kept until this apply succeeds, restored if it fails\n",
                style.yellow("!"),
                plural(files, "file")
            ),
        ));
    }
    for (index, run) in plan.earlier_runs.iter().enumerate() {
        texts.push((
            format!("~0{index:04}"),
            format!("  {} {run}\n", style.yellow("!")),
        ));
    }
    if plan.journal_pending {
        texts.push((
            "~2".to_string(),
            format!(
                "  {} an interrupted apply did not finish its checks and handlers: this apply runs them\n",
                style.yellow("!")
            ),
        ));
    }
    if !plan.handlers.is_empty() {
        let names: Vec<&str> = plan
            .handlers
            .iter()
            .map(|handler| handler.name.as_str())
            .collect();
        texts.push((
            "~3".to_string(),
            format!("  {} then: {}\n", style.cyan(">"), names.join(", ")),
        ));
    }
    texts
}

/// The words after a path: its role and what about it changes.
fn describe(change: &Change) -> String {
    if change.leftover {
        return "left by an interrupted apply; removing it".to_string();
    }
    let role = change.role.as_deref().unwrap_or("?");
    let mut notes = vec![format!("role {role}")];
    match (&change.before, &change.after) {
        (None, Some(after)) => {
            let mut meta = format!("mode {:04o}", after.mode);
            if let Some(owner) = &after.owner {
                meta.push_str(&format!(", owner {owner}"));
            }
            if let Some(group) = &after.group {
                meta.push_str(&format!(", group {group}"));
            }
            notes.push(meta);
        }
        (Some(before), Some(after)) => {
            if before.mode != after.mode {
                notes.push(format!("mode {:04o} -> {:04o}", before.mode, after.mode));
            }
            if let Some(owner) = after.owner.as_ref().filter(|o| **o != before.owner) {
                notes.push(format!("owner {} -> {owner}", before.owner));
            }
            if let Some(group) = after.group.as_ref().filter(|g| **g != before.group) {
                notes.push(format!("group {} -> {group}", before.group));
            }
        }
        (Some(_), None) => notes.push("no longer rendered".to_string()),
        (None, None) => {}
    }
    if change.drift {
        notes.push("edited on the host since matrixctl wrote it".to_string());
    }
    notes.join(", ")
}

/// The diff shown under a change, or a note saying why there is none.
fn body(change: &Change) -> Option<String> {
    if change.leftover || !change.content_changed() {
        return None;
    }
    if change.sensitive {
        return Some("(content hidden: the file holds secrets)".to_string());
    }
    let before = change
        .before
        .as_ref()
        .map(|b| b.content.as_slice())
        .unwrap_or_default();
    let after = change
        .after
        .as_ref()
        .map(|a| a.content.as_slice())
        .unwrap_or_default();
    if let Some(private) = change.before.as_ref().filter(|_| change.hide_before) {
        let note = format!(
            "(old content hidden: the host keeps this file private, mode {:04o}; it may hold secrets)",
            private.mode
        );
        return Some(match (&change.after, unified(b"", after)) {
            (Some(_), Some(new)) => format!("{note}\n{new}"),
            _ => note,
        });
    }
    Some(unified(before, after).unwrap_or_else(|| "(binary content changed)".to_string()))
}

/// What apply did, host by host, and its summary line.
pub(crate) fn apply_text(
    planned: &[PlannedHost],
    applied: &[AppliedHost],
    style: Style,
    redactor: &Redactor,
) -> String {
    let mut out = String::new();
    let mut done = Summary::default();
    let mut failed = Vec::new();
    let mut rolled_back = Vec::new();
    let mut running = Vec::new();
    let mut not_started = Vec::new();
    let mut pending = Vec::new();
    let mut check_failed = Vec::new();
    for host in planned {
        let result = applied
            .iter()
            .find(|a| a.name == host.name)
            .map(|a| &a.result);
        let name = style.bold(&host.name);
        match (&host.plan, result) {
            (Err(reason), _) | (Ok(_), Some(Applied::Failed(reason))) => {
                failed.push(host.name.as_str());
                out.push_str(&headed(&name, &style.red("FAILED"), reason));
            }
            (Ok(_), Some(Applied::RolledBack(reason))) => {
                rolled_back.push(host.name.as_str());
                out.push_str(&headed(&name, &style.red("ROLLED BACK"), reason));
            }
            (Ok(_), Some(Applied::StillRunning(reason))) => {
                running.push(host.name.as_str());
                out.push_str(&headed(
                    &name,
                    &style.yellow("STILL RUNNING on the host"),
                    reason,
                ));
            }
            (Ok(_), Some(Applied::NotStarted(reason))) => {
                not_started.push(host.name.as_str());
                out.push_str(&format!("{name}: {reason}\n"));
            }
            (
                Ok(plan),
                Some(outcome @ (Applied::Done | Applied::Pending(_) | Applied::CheckFailed(_))),
            ) => {
                let (create, update, remove) = plan.totals();
                done.create += create;
                done.update += update;
                done.remove += remove;
                done.hosts_with_changes += 1;
                out.push_str(&format!(
                    "{name}: applied ({create} added, {update} changed, {remove} removed)\n"
                ));
                if let Applied::Pending(reason) = outcome {
                    pending.push(host.name.as_str());
                    out.push_str(&headed(
                        &name,
                        &style.yellow("STILL TO DO (nothing rolled back)"),
                        reason,
                    ));
                }
                if let Applied::CheckFailed(reason) = outcome {
                    check_failed.push(host.name.as_str());
                    out.push_str(&headed(
                        &name,
                        &style.red("CHECK FAILED after the apply (the change is live)"),
                        reason,
                    ));
                }
            }
            (Ok(_), None) => out.push_str(&format!("{name}: no changes\n")),
        }
    }
    let verdict = if failed.is_empty()
        && rolled_back.is_empty()
        && running.is_empty()
        && not_started.is_empty()
        && pending.is_empty()
        && check_failed.is_empty()
    {
        "complete"
    } else {
        "incomplete"
    };
    out.push_str(&format!(
        "\nApply {verdict}: {} added, {} changed, {} removed on {} of {}.",
        done.create,
        done.update,
        done.remove,
        done.hosts_with_changes,
        plural(planned.len(), "host")
    ));
    out.push_str(&listed_suffix(&failed, "failed"));
    out.push_str(&listed_suffix(&rolled_back, "rolled back"));
    out.push_str(&listed_suffix(&running, "still running"));
    out.push_str(&listed_suffix(&not_started, "not started"));
    out.push_str(&listed_suffix(&pending, "with something still to do"));
    out.push_str(&listed_suffix(&check_failed, "failing its check"));
    out.push('\n');
    redactor.redact(&out).into_owned()
}

/// A host's outcome header and its reason, indented below it.
fn headed(name: &str, header: &str, reason: &str) -> String {
    let mut text = format!("{name}: {header}\n");
    for line in reason.lines() {
        text.push_str(&format!("    {line}\n"));
    }
    text
}

#[derive(Serialize)]
struct JsonReport<'a> {
    format_version: u32,
    command: &'a str,
    /// What the plan does to people, as the text's `Impact:` block.
    impact: Vec<JsonImpact>,
    hosts: Vec<JsonHost>,
    summary: Summary,
}

#[derive(Serialize)]
struct JsonImpact {
    effect: String,
    hosts: Vec<String>,
}

#[derive(Serialize)]
struct JsonHost {
    name: String,
    /// `unchanged`, `changes` (plan), `applied` (apply) or `failed`.
    status: &'static str,
    error: Option<String>,
    unchanged_files: usize,
    /// Apply will rewrite the host's record of managed files.
    record_outdated: bool,
    /// Things for the operator to do outside the host.
    notes: Vec<String>,
    /// Checks apply runs on the new files, then handlers, in order.
    validators: Vec<String>,
    handlers: Vec<String>,
    /// An interrupted apply left checks and handlers to run.
    journal_pending: bool,
    /// Files in the backup an interrupted apply left, if any.
    interrupted_backup: Option<usize>,
    /// How earlier applies ended that matrixctl did not see end.
    earlier_runs: Vec<String>,
    /// What the roles' looks at the host's health found, ok ones too.
    health: Vec<crate::health::HealthSeen>,
    /// Packages, groups, users, directories and services to add or change.
    system: Vec<crate::system::SystemChange>,
    changes: Vec<JsonChange>,
}

#[derive(Serialize)]
struct JsonChange {
    path: String,
    action: Action,
    role: Option<String>,
    drift: bool,
    leftover: bool,
    sensitive: bool,
    mode: BeforeAfter,
    owner: BeforeAfter,
    group: BeforeAfter,
    diff: Option<String>,
}

#[derive(Serialize)]
struct BeforeAfter {
    before: Option<String>,
    after: Option<String>,
}

/// The plan (and, for apply, the outcome) as JSON: docs/json.md.
pub(crate) fn json(
    command: &str,
    planned: &[PlannedHost],
    applied: Option<&[AppliedHost]>,
    redactor: &Redactor,
    detail: Detail,
) -> String {
    let hosts = planned
        .iter()
        .map(|host| {
            let outcome = applied.and_then(|applied| applied.iter().find(|a| a.name == host.name));
            let (status, error) = match (&host.plan, outcome.map(|o| &o.result)) {
                (Err(reason), _) | (_, Some(Applied::Failed(reason))) => {
                    ("failed", Some(reason.clone()))
                }
                (_, Some(Applied::RolledBack(reason))) => ("rolled_back", Some(reason.clone())),
                (_, Some(Applied::StillRunning(reason))) => ("still_running", Some(reason.clone())),
                (_, Some(Applied::NotStarted(reason))) => ("not_started", Some(reason.clone())),
                (Ok(plan), _) if plan.is_empty() => ("unchanged", None),
                (Ok(_), Some(Applied::Done)) => ("applied", None),
                (Ok(_), Some(Applied::Pending(reason))) => {
                    ("applied_pending", Some(reason.clone()))
                }
                (Ok(_), Some(Applied::CheckFailed(reason))) => {
                    ("applied_check_failed", Some(reason.clone()))
                }
                (Ok(_), None) => ("changes", None),
            };
            let (unchanged_files, record_outdated, changes) = match &host.plan {
                Ok(plan) => (
                    plan.unchanged,
                    plan.record_outdated,
                    plan.changes
                        .iter()
                        .map(|change| json_change(change, detail))
                        .collect(),
                ),
                Err(_) => (0, false, Vec::new()),
            };
            let plan = host.plan.as_ref().ok();
            JsonHost {
                name: host.name.clone(),
                status,
                error,
                unchanged_files,
                record_outdated,
                notes: host.notes.clone(),
                validators: plan.map(|plan| plan.validators.clone()).unwrap_or_default(),
                handlers: plan
                    .map(|plan| {
                        plan.handlers
                            .iter()
                            .map(|handler| handler.name.clone())
                            .collect()
                    })
                    .unwrap_or_default(),
                journal_pending: plan.is_some_and(|plan| plan.journal_pending),
                interrupted_backup: plan.and_then(|plan| plan.interrupted_backup),
                earlier_runs: plan
                    .map(|plan| plan.earlier_runs.clone())
                    .unwrap_or_default(),
                health: plan.map(|plan| plan.health.clone()).unwrap_or_default(),
                system: plan.map(|plan| plan.system.clone()).unwrap_or_default(),
                changes,
            }
        })
        .collect();
    let impact = crate::impact::impacts(planned)
        .into_iter()
        .map(|(effect, hosts)| JsonImpact { effect, hosts })
        .collect();
    let report = JsonReport {
        format_version: JSON_FORMAT_VERSION,
        command,
        impact,
        hosts,
        summary: Summary::of(planned, applied),
    };
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    format!("{}\n", redactor.redact(&text))
}

fn json_change(change: &Change, detail: Detail) -> JsonChange {
    let before = change.before.as_ref();
    let after = change.after.as_ref();
    JsonChange {
        path: change.path.clone(),
        action: change.action,
        role: change.role.clone(),
        drift: change.drift,
        leftover: change.leftover,
        sensitive: change.sensitive,
        mode: BeforeAfter {
            before: before.map(|b| format!("{:04o}", b.mode)),
            after: after.map(|a| format!("{:04o}", a.mode)),
        },
        owner: BeforeAfter {
            before: before.map(|b| b.owner.clone()),
            after: after.and_then(|a| a.owner.clone()),
        },
        group: BeforeAfter {
            before: before.map(|b| b.group.clone()),
            after: after.and_then(|a| a.group.clone()),
        },
        diff: body(change).filter(|body| detail == Detail::Full && !body.starts_with('(')),
    }
}
