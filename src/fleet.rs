//! Plan and apply over many hosts at once, bounded. A host that fails is
//! reported with its reason and never stops the others; results are always
//! returned sorted by host name, whatever order the tasks finished in.

use std::sync::Arc;

use anyhow::{Result, bail};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::inventory::{Connection, Host};
use crate::observe::observe;
use crate::plan::{Action, HostPlan, plan_host};
use crate::render::DesiredState;
use crate::transport::Transport;
use crate::transport::program::{DONE_MARKER, Program, RECORD_PATH};

/// How many hosts are worked on at once.
pub const DEFAULT_FORKS: usize = 50;

/// A host with its rendered files, ready to plan.
pub struct Target {
    pub host: Host,
    pub desired: DesiredState,
}

/// One host's plan, or why it could not be made.
pub struct PlannedHost {
    pub name: String,
    /// How the host is reached, for the plan's header line.
    pub reached_by: String,
    pub transport: Option<Transport>,
    /// The host's root, as the program on the host sees it ("" for `/`).
    pub root: String,
    pub plan: Result<HostPlan, String>,
}

/// Observes every target and plans it.
pub async fn plan(targets: Vec<Target>) -> Vec<PlannedHost> {
    let limit = Arc::new(Semaphore::new(DEFAULT_FORKS));
    let mut tasks = JoinSet::new();
    for target in targets {
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            plan_one(target).await
        });
    }
    let mut planned = Vec::new();
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(host) => planned.push(host),
            // A panicking task is a bug; it still must not hide other hosts.
            Err(error) => planned.push(PlannedHost {
                name: "?".into(),
                reached_by: String::new(),
                transport: None,
                root: String::new(),
                plan: Err(format!("internal error: {error}")),
            }),
        }
    }
    planned.sort_by(|a, b| a.name.cmp(&b.name));
    planned
}

async fn plan_one(target: Target) -> PlannedHost {
    let Target { host, desired } = target;
    let name = host.name.to_string();
    let reached_by = match &host.connection {
        Connection::Local => format!("local, root {}", host.root.display()),
        Connection::Ssh(ssh) => format!("ssh {}@{}:{}", ssh.user, ssh.host, ssh.port),
    };
    let mut planned = PlannedHost {
        name,
        reached_by,
        transport: None,
        root: String::new(),
        plan: Err(String::new()),
    };
    let prepared =
        Transport::for_host(&host).and_then(|transport| Ok((transport, root_of(&host)?)));
    let (transport, root) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            planned.plan = Err(format!("{error:#}"));
            return planned;
        }
    };
    let paths: Vec<&str> = desired.keys().map(String::as_str).collect();
    planned.plan = match observe(&transport, &root, &paths).await {
        Ok(observed) => plan_host(&desired, &observed).map_err(|blocked| blocked.0),
        Err(error) => Err(format!("{error:#}")),
    };
    planned.transport = Some(transport);
    planned.root = root;
    planned
}

/// The host's root as an absolute path without a trailing slash.
fn root_of(host: &Host) -> Result<String> {
    let absolute = std::path::absolute(&host.root)?;
    let Some(text) = absolute.to_str() else {
        bail!(
            "the root directory {} is not valid UTF-8",
            absolute.display()
        );
    };
    Ok(text.trim_end_matches('/').to_string())
}

/// One host's apply result.
pub struct AppliedHost {
    pub name: String,
    pub result: Result<(), String>,
}

/// Executes every host's plan; hosts without changes are left alone.
pub async fn apply(planned: &[PlannedHost]) -> Vec<AppliedHost> {
    let limit = Arc::new(Semaphore::new(DEFAULT_FORKS));
    let mut tasks = JoinSet::new();
    for host in planned {
        let (Ok(plan), Some(transport)) = (&host.plan, &host.transport) else {
            continue;
        };
        if plan.is_empty() {
            continue;
        }
        let program = apply_program(&host.root, plan);
        let transport = transport.clone();
        let name = host.name.clone();
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let result = match transport.run(program).await {
                Ok(output) if output.success && output_is_done(&output.stdout) => Ok(()),
                Ok(output) => Err(failure_reason(&output.stderr)),
                Err(error) => Err(format!("{error:#}")),
            };
            AppliedHost { name, result }
        });
    }
    let mut applied = Vec::new();
    while let Some(result) = tasks.join_next().await {
        if let Ok(host) = result {
            applied.push(host);
        }
    }
    applied.sort_by(|a, b| a.name.cmp(&b.name));
    applied
}

fn output_is_done(stdout: &[u8]) -> bool {
    String::from_utf8_lossy(stdout).lines().last() == Some(DONE_MARKER)
}

fn failure_reason(stderr: &str) -> String {
    let reason: Vec<&str> = stderr
        .lines()
        .map(|line| line.strip_prefix("matrixctl: ").unwrap_or(line))
        .collect();
    if reason.is_empty() {
        "the host program stopped without saying why".to_string()
    } else {
        reason.join("\n")
    }
}

/// The program that carries out `plan`: check owners, stage every new file
/// beside its target, then rename them all into place, remove, and write the
/// record last. Nothing live changes until every file is staged.
fn apply_program(root: &str, plan: &HostPlan) -> String {
    let mut program = Program::new(root);
    let writes: Vec<_> = plan
        .changes
        .iter()
        .filter_map(|change| change.after.as_ref())
        .collect();
    for file in &writes {
        if let Some(owner) = &file.owner {
            program.call("mc_need_user", &[owner, &file.path]);
        }
        if let Some(group) = &file.group {
            program.call("mc_need_group", &[group, &file.path]);
        }
    }
    for change in plan.changes.iter().filter(|c| c.leftover) {
        program.call("mc_remove", &[&change.path]);
    }
    for file in &writes {
        let mode = format!("{:04o}", file.mode);
        let owner = file.owner.as_deref().unwrap_or("");
        let group = file.group.as_deref().unwrap_or("");
        program.call_with_content(
            "mc_stage",
            &[&file.path, &mode, owner, group],
            &file.content,
        );
    }
    for file in &writes {
        program.call("mc_commit", &[&file.path]);
    }
    for change in &plan.changes {
        if change.action == Action::Remove && !change.leftover {
            program.call("mc_remove", &[&change.path]);
        }
    }
    program.call_with_content(
        "mc_stage",
        &[RECORD_PATH, "0600", "", ""],
        plan.record.to_text().as_bytes(),
    );
    program.call("mc_commit", &[RECORD_PATH]);
    program.finish()
}
