//! Plan and apply over many hosts at once, bounded by `--forks`. A host that
//! fails is reported with its reason and never stops the others; results are
//! always returned sorted by host name, whatever order tasks finished in.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::fields::answer_lines;
use crate::inventory::{Connection, Host};
use crate::observe::{Observed, observe};
use crate::plan::{Action, HostPlan, plan_host};
use crate::progress::Progress;
use crate::transport::functions::HostFn;

use crate::facts::HostFacts;
use crate::observe::Journal;
use crate::render::{DesiredState, Rendered};
use crate::transport::program::{AwaitRun, DONE_MARKER, Program, journal_path, record_path};
use crate::transport::ssh::SshSettings;
use crate::transport::{NotSent, Output, Transport};

/// How many hosts are worked on at once, unless `--forks` says otherwise.
pub(crate) const DEFAULT_FORKS: usize = 50;

/// How a run reaches and paces hosts.
#[derive(Debug, Clone)]
pub(crate) struct FleetOptions {
    pub forks: usize,
    /// The limit for connecting and for each program run on a host.
    pub timeout: Duration,
    pub ssh: Arc<SshSettings>,
}

/// A host with its rendered files, ready to plan.
pub(crate) struct Target {
    pub host: Host,
    /// What the roles want of it, rendered before it was observed.
    pub rendered: Rendered,
    /// Renders the host again once its facts are known (when `rendered`
    /// read them): the same roles, inventory and templates.
    pub render_again: RenderAgain,
    /// The hosts apply finishes before starting this one (the machine of
    /// a homeserver's database before the homeserver's, the homeserver's
    /// before its workers' machines).
    pub needs: Vec<String>,
}

/// A host rendered with facts it told: the rendered host, or the
/// problems, already redacted, as text.
pub(crate) type RenderAgain =
    Arc<dyn Fn(&Host, &HostFacts) -> Result<Rendered, String> + Send + Sync>;

/// One host's plan, or why it could not be made.
pub(crate) struct PlannedHost {
    pub name: String,
    /// How the host is reached, for messages.
    pub reached_by: String,
    pub transport: Transport,
    /// The host's root, as the program on the host sees it ("" for `/`).
    pub root: String,
    /// matrixctl's directory on the host (record and lock).
    pub state_dir: String,
    pub plan: Result<HostPlan, String>,
    /// What the plan was computed against, for saved plans.
    pub observed: Option<Observed>,
    pub desired: DesiredState,
    /// Things for the operator to do outside the host, from the roles.
    pub notes: Vec<String>,
    /// See `Target::needs`.
    pub needs: Vec<String>,
}

/// Runs `work` on every item, at most `forks` at a time, each within
/// `timeout`, and returns the results in the items' order.
async fn for_each_bounded<T, R, F, Fut>(
    items: Vec<T>,
    forks: usize,
    progress: &Progress,
    work: F,
) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(forks.max(1)));
    let mut tasks = JoinSet::new();
    for (index, item) in items.into_iter().enumerate() {
        let limit = limit.clone();
        let future = work(item);
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (index, future.await)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        progress.host_done();
        match joined {
            Ok(result) => results.push(result),
            // A task only ends this way if it panicked: a bug. The other
            // hosts still finish; main reports the missing one.
            Err(error) => eprintln!("error: internal error in a host task: {error}"),
        }
    }
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

/// Observes every target and plans it.
pub(crate) async fn plan(mut targets: Vec<Target>, options: &FleetOptions) -> Vec<PlannedHost> {
    targets.sort_by(|a, b| a.host.name.cmp(&b.host.name));
    let progress = Progress::new("planning", targets.len());
    let timeout = options.timeout;
    let planned = for_each_bounded(targets, options.forks, &progress, |target| {
        let transport = Transport::for_host(&target.host, &options.ssh);
        plan_one(target, transport, timeout)
    })
    .await;
    progress.finish();
    planned
}

async fn plan_one(target: Target, transport: Transport, timeout: Duration) -> PlannedHost {
    let Target {
        host,
        rendered,
        render_again,
        needs,
    } = target;
    let reached_by = match &host.connection {
        Connection::Local => format!("local, root {}", host.root.display()),
        Connection::Ssh(ssh) => format!("ssh {}@{}:{}", ssh.user, ssh.host, ssh.port),
    };
    let root = root_of(&host);
    let observed = match &root {
        Ok(root) => {
            within(
                timeout,
                observe_with_facts(&transport, root, &host, rendered.clone(), &render_again),
            )
            .await
        }
        Err(error) => Err(anyhow::anyhow!("{error:#}")),
    };
    let (rendered, plan, observed) = match observed {
        Ok((rendered, observed)) => {
            let plan = plan_host(
                &rendered.files,
                &observed,
                &record_path(&host.vars.state_dir.0),
                &rendered.actions,
                &rendered.system,
            )
            .map_err(|blocked| blocked.0);
            (rendered, plan, Some(observed))
        }
        Err(error) => (rendered, Err(format!("{error:#}")), None),
    };
    PlannedHost {
        name: host.name.to_string(),
        reached_by,
        transport,
        root: root.unwrap_or_default(),
        state_dir: host.vars.state_dir.0.clone(),
        plan,
        observed,
        desired: rendered.files,
        notes: rendered.notes,
        needs,
    }
}

/// Observes the host; when its render read the host's facts (`host` in a
/// template or condition), renders it again with the facts the host told.
/// That costs no second round trip while the facts change only contents:
/// the observation holds each wanted file's content (or the match with
/// the first render). Only a render that then wants other paths, items or
/// package versions observes again.
async fn observe_with_facts(
    transport: &Transport,
    root: &str,
    host: &Host,
    mut rendered: Rendered,
    render_again: &RenderAgain,
) -> Result<(Rendered, Observed)> {
    let state_dir = &host.vars.state_dir.0;
    let mut observed = observe_rendered(transport, root, state_dir, &rendered).await?;
    // The facts `rendered` was made with: none, the first time.
    let mut rendered_with = HostFacts::default();
    // A render that still wants something else after two observations
    // depends on facts its own wants change: refuse rather than loop.
    for _ in 0..2 {
        // A host that is a directory tells nothing: the first render stands.
        if !rendered.read_facts || observed.facts == rendered_with {
            return Ok((rendered, observed));
        }
        let again = render_again(host, &observed.facts).map_err(|problems| {
            anyhow::anyhow!("rendering again with what the host told of itself: {problems}")
        })?;
        rendered_with = observed.facts.clone();
        let observed_the_same = same_observation(&rendered, &again);
        rendered = again;
        if observed_the_same {
            return Ok((rendered, observed));
        }
        observed = observe_rendered(transport, root, state_dir, &rendered).await?;
    }
    bail!(
        "what the roles want keeps changing with what the host tells of itself (its release, its packages' versions); a condition that reads `host` must not change what it reads"
    )
}

/// Observes what `rendered` wants of the host.
async fn observe_rendered(
    transport: &Transport,
    root: &str,
    state_dir: &str,
    rendered: &Rendered,
) -> Result<Observed> {
    observe(
        transport,
        root,
        state_dir,
        &rendered.files,
        &rendered.system,
        &rendered.asked_packages,
        &rendered.health,
    )
    .await
}

/// Whether observing `next` asks the host what observing `first` asked:
/// the same paths with the same accounts, the same system items, and no
/// package version `first` did not ask about.
fn same_observation(first: &Rendered, next: &Rendered) -> bool {
    let wants = |rendered: &Rendered| {
        rendered
            .files
            .values()
            .map(|file| (file.path.clone(), file.owner.clone(), file.group.clone()))
            .collect::<Vec<_>>()
    };
    wants(first) == wants(next)
        && first.system == next.system
        && first.health == next.health
        && next.asked_packages.is_subset(&first.asked_packages)
}

async fn within<T>(timeout: Duration, work: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => bail!("timed out after {} s (--timeout)", timeout.as_secs()),
    }
}

/// The host's root as an absolute path without a trailing slash.
pub(crate) fn root_of(host: &Host) -> Result<String> {
    let absolute = match &host.connection {
        Connection::Local => std::path::absolute(&host.root)?,
        // A remote root is a path on the remote machine, never made absolute here.
        Connection::Ssh(_) => host.root.clone(),
    };
    let Some(text) = absolute.to_str() else {
        bail!(
            "the root directory {} is not valid UTF-8",
            absolute.display()
        );
    };
    if !text.starts_with('/') {
        bail!("the root directory {text} of an SSH host must be an absolute path");
    }
    Ok(text.trim_end_matches('/').to_string())
}

/// How many hosts apply works on before checking failures again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    Hosts(usize),
    Percent(u32),
}

/// Staged rollout: batches, and when to stop starting new ones.
#[derive(Clone, Copy)]
pub(crate) struct Rollout<'a> {
    pub batch: Option<BatchSize>,
    /// Stop starting batches once more than this percentage of hosts failed.
    pub max_fail_percent: f64,
    /// Run after each batch on the hosts it applied to.
    pub gate: Option<&'a Gate>,
    /// Start no batch after one whose gate failed on any host.
    pub stop_at_failed_check: bool,
}

impl Default for Rollout<'_> {
    fn default() -> Self {
        Rollout {
            batch: None,
            max_fail_percent: 100.0,
            gate: None,
            stop_at_failed_check: false,
        }
    }
}

/// A look at hosts just applied to: given their names, what failed on
/// each that failed (hosts that passed are not in the map).
pub(crate) type Gate = dyn Fn(
        Vec<String>,
    ) -> futures_util::future::BoxFuture<'static, std::collections::BTreeMap<String, String>>
    + Send
    + Sync;

/// What apply did to one host: exactly one of these, as the host said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Applied {
    Done,
    /// Live files changed, then a step failed, and every file was put back
    /// and checked; why, with the failing command's output.
    RolledBack(String),
    /// Not applied, and why: unreachable before anything was sent, refused
    /// before anything live changed, killed on the host, or rolled back
    /// only in part (the reason names the files that differ).
    Failed(String),
    /// matrixctl stopped waiting (or lost the host) while the host still
    /// works on it; it finishes or rolls back there by itself.
    StillRunning(String),
    /// Never started: an earlier batch failed too much.
    NotStarted(String),
    /// Applied, with something still to do that nothing rolls back for (a
    /// certificate the CA did not issue yet), and why.
    Pending(String),
    /// Applied, then the rollout's gate (`--gate check`) found an error
    /// there: what failed. Nothing is rolled back: the change is live.
    CheckFailed(String),
}

impl Applied {
    pub(crate) fn is_failure(&self) -> bool {
        !matches!(
            self,
            Applied::Done | Applied::NotStarted(_) | Applied::Pending(_)
        )
    }

    /// The host's change went live (whatever a gate said after).
    fn went_live(&self) -> bool {
        matches!(self, Applied::Done | Applied::Pending(_))
    }
}

/// One host's apply result.
pub(crate) struct AppliedHost {
    pub name: String,
    pub result: Applied,
}

/// Executes every host's plan, batch by batch; hosts without changes are
/// left alone. `lock_owner` says who holds each host's lock meanwhile.
pub(crate) async fn apply(
    planned: &[PlannedHost],
    options: &FleetOptions,
    rollout: Rollout<'_>,
    lock_owner: &str,
) -> Vec<AppliedHost> {
    let mut work: Vec<&PlannedHost> = planned
        .iter()
        .filter(|host| host.plan.as_ref().is_ok_and(|plan| !plan.is_empty()))
        .collect();
    // What a host needs comes first, in its batch or an earlier one.
    let needs: Vec<(&str, &[String])> = work
        .iter()
        .map(|host| (host.name.as_str(), host.needs.as_slice()))
        .collect();
    let levels = levels(&needs);
    work.sort_by_key(|host| levels.get(host.name.as_str()).copied().unwrap_or(0));
    let total = planned.len().max(1);
    // A host that could not be planned is not applied either: what needs
    // it waits too.
    let unplanned: std::collections::BTreeSet<&str> = planned
        .iter()
        .filter(|host| host.plan.is_err())
        .map(|host| host.name.as_str())
        .collect();
    let mut failed = unplanned.len();
    let batch_size = match rollout.batch {
        None => work.len().max(1),
        Some(BatchSize::Hosts(hosts)) => hosts.max(1),
        Some(BatchSize::Percent(percent)) => (work.len() * percent as usize).div_ceil(100).max(1),
    };
    let progress = Progress::new("applying", work.len());
    let mut applied = Vec::new();
    // Hosts whose gate failed (and in which batch), for the reason later
    // batches did not start.
    let mut failed_checks: Vec<String> = Vec::new();
    for (index, batch) in work.chunks(batch_size).enumerate() {
        let failed_percent = failed as f64 * 100.0 / total as f64;
        let checks = match failed_checks.as_slice() {
            [] => String::new(),
            hosts => format!("the check failed on {}", hosts.join(", ")),
        };
        let stop = if rollout.stop_at_failed_check && !checks.is_empty() {
            Some(format!("not started: {checks}"))
        } else if failed_percent > rollout.max_fail_percent {
            let checks = if checks.is_empty() {
                checks
            } else {
                format!("; {checks}")
            };
            Some(format!(
                "not started: {failed} of {total} hosts had failed before batch {} ({failed_percent:.0}%, more than --max-fail {}%){checks}",
                index + 1,
                rollout.max_fail_percent
            ))
        } else {
            None
        };
        if let Some(reason) = stop {
            for host in work.iter().skip(index * batch_size) {
                applied.push(AppliedHost {
                    name: host.name.clone(),
                    result: Applied::NotStarted(reason.clone()),
                });
            }
            break;
        }
        let mut results: Vec<AppliedHost> = Vec::new();
        let batch_levels: std::collections::BTreeSet<usize> = batch
            .iter()
            .map(|host| levels.get(host.name.as_str()).copied().unwrap_or(0))
            .collect();
        for level in batch_levels {
            let mut jobs_hosts: Vec<&PlannedHost> = Vec::new();
            for host in batch
                .iter()
                .filter(|host| levels.get(host.name.as_str()).copied().unwrap_or(0) == level)
            {
                // A host whose database or homeserver failed here waits for
                // the next apply.
                let failed_need = host.needs.iter().find(|need| {
                    unplanned.contains(need.as_str())
                        || applied.iter().chain(&results).any(|done: &AppliedHost| {
                            &done.name == *need && !done.result.went_live()
                        })
                });
                match failed_need {
                    Some(need) => results.push(AppliedHost {
                        name: host.name.clone(),
                        result: Applied::NotStarted(format!(
                            "not started: {need}, which it needs first, was not applied"
                        )),
                    }),
                    None => jobs_hosts.push(host),
                }
            }
            let jobs: Vec<ApplyJob> = jobs_hosts
                .iter()
                .map(|host| {
                    let plan = host
                        .plan
                        .as_ref()
                        .expect("only planned hosts are in the work list");
                    let run_id = run_id(&host.name);
                    let confirm_seconds = plan
                        .handlers
                        .iter()
                        .filter_map(|handler| handler.armed.as_ref())
                        .map(|armed| u64::from(armed.seconds))
                        .max()
                        .unwrap_or(0);
                    ApplyJob {
                        name: host.name.clone(),
                        transport: host.transport.clone(),
                        program: Program::detached(
                            &host.root,
                            &host.state_dir,
                            &run_id,
                            transaction(&host.root, &host.state_dir, &run_id, plan, lock_owner),
                            confirm_seconds > 0,
                        ),
                        run_id,
                        root: host.root.clone(),
                        state_dir: host.state_dir.clone(),
                        confirm_seconds,
                        installs: plan.system.iter().any(|change| {
                            matches!(
                                change.item,
                                crate::system::Item::Package { .. }
                                    | crate::system::Item::Venv { .. }
                            )
                        }),
                    }
                })
                .collect();
            let timeout = options.timeout;
            let done = for_each_bounded(jobs, options.forks, &progress, move |job| async move {
                // Installing software takes minutes, not seconds: such an apply
                // is waited for at least INSTALL_TIMEOUT.
                let timeout = if job.installs {
                    timeout.max(INSTALL_TIMEOUT)
                } else {
                    timeout
                };
                let result = apply_one(&job, timeout).await;
                AppliedHost {
                    name: job.name,
                    result,
                }
            })
            .await;
            results.extend(done);
        }
        if let Some(gate) = rollout.gate {
            let live: Vec<String> = results
                .iter()
                .filter(|host| host.result.went_live())
                .map(|host| host.name.clone())
                .collect();
            if !live.is_empty() {
                let mut failures = gate(live).await;
                for host in &mut results {
                    if let Some(why) = failures.remove(&host.name) {
                        failed_checks.push(format!("{} (batch {})", host.name, index + 1));
                        host.result = Applied::CheckFailed(why);
                    }
                }
            }
        }
        failed += results
            .iter()
            .filter(|host| host.result.is_failure())
            .count();
        applied.extend(results);
    }
    progress.finish();
    applied.sort_by(|a, b| a.name.cmp(&b.name));
    applied
}

/// How many hosts of `work` (each a name and the names it needs) each
/// one waits for in a chain (0: none): apply starts the hosts of one
/// level together, after the level before. A cycle (two homeservers'
/// parts on each other's machines) stops counting after as many rounds
/// as there are hosts.
fn levels<'a>(work: &[(&'a str, &'a [String])]) -> BTreeMap<&'a str, usize> {
    let mut levels: BTreeMap<&str, usize> = work.iter().map(|(name, _)| (*name, 0)).collect();
    for _ in 0..work.len() {
        let mut changed = false;
        for (name, needs) in work {
            let needed = needs
                .iter()
                .filter_map(|need| levels.get(need.as_str()))
                .map(|level| level + 1)
                .max()
                .unwrap_or(0);
            if needed > levels[name] && needed <= work.len() {
                levels.insert(name, needed);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    levels
}

/// One host's apply, ready to run.
/// The least time an apply that installs packages or venvs is waited for.
pub(crate) const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);

struct ApplyJob {
    name: String,
    transport: Transport,
    program: String,
    /// The name of this apply's run on the host (STATE_DIR/runs/ID.*).
    run_id: String,
    root: String,
    state_dir: String,
    /// How long the host waits for an armed change to be confirmed.
    confirm_seconds: u64,
    /// The plan installs packages or venvs.
    installs: bool,
}

/// A name for one apply on one host, unique enough that two runs never
/// share result files: hashed from the host, this process and the clock.
fn run_id(host: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let seed = format!("{host} {} {nanos}", std::process::id());
    crate::hash::sha256_hex(seed.as_bytes())[..16].to_string()
}

/// What one program run said about a run on the host.
#[derive(Debug)]
enum RunState {
    Finished(Applied),
    /// The transaction waits for matrixctl to confirm an armed change.
    AwaitingConfirmation(String),
    Running,
    Killed,
    /// The host has no such run: the program never started there.
    Missing,
}

fn run_state(output: &Output) -> RunState {
    let stdout = String::from_utf8_lossy(&output.stdout);
    for (kind, rest) in answer_lines(&stdout) {
        match kind {
            "run-awaiting-confirmation" => {
                return RunState::AwaitingConfirmation(rest.to_string());
            }
            "run-running" => return RunState::Running,
            "run-killed" => return RunState::Killed,
            "run-missing" => return RunState::Missing,
            _ => {}
        }
    }
    if output.success && output_is_done(&output.stdout) {
        let pending: Vec<&str> = output
            .stderr
            .lines()
            .skip_while(|line| !line.starts_with("matrixctl: pending: "))
            .map(|line| line.strip_prefix("matrixctl: pending: ").unwrap_or(line))
            .collect();
        if !pending.is_empty() {
            return RunState::Finished(Applied::Pending(pending.join("\n")));
        }
        return RunState::Finished(Applied::Done);
    }
    let reason = failure_reason(&output.stderr);
    RunState::Finished(if output.stderr.contains("matrixctl: rolled back: ") {
        Applied::RolledBack(reason)
    } else {
        Applied::Failed(reason)
    })
}

/// Set in matrixctl's environment, makes the confirmation of an armed
/// change fail, as if the change had cut matrixctl off. For tests only.
pub(crate) const TEST_FAIL_CONFIRMATION: &str = "MATRIXCTL_TEST_FAIL_CONFIRMATION";

/// More armed handlers than any role set has (the firewall is the one).
const MAX_ARMED_ROUNDS: usize = 8;

const STILL_RUNNING_HINT: &str =
    "it finishes or rolls back there by itself; `matrixctl plan` shows how it ended";

/// Sends one host its transaction and follows it to one outcome: the
/// result the host wrote, read over the same connection or, when that
/// broke, over a new one; never a guess.
async fn apply_one(job: &ApplyJob, timeout: Duration) -> Applied {
    let mut state = match tokio::time::timeout(timeout, job.transport.run(job.program.clone()))
        .await
    {
        Err(_) => {
            return Applied::StillRunning(format!(
                "timed out after {} s (--timeout) waiting for the host; the apply may still finish there: {STILL_RUNNING_HINT}",
                timeout.as_secs()
            ));
        }
        Ok(Ok(output)) => run_state(&output),
        Ok(Err(error)) if error.downcast_ref::<NotSent>().is_some() => {
            return Applied::Failed(format!("{error:#}\nnothing was sent, so nothing changed"));
        }
        Ok(Err(error)) => match reconnect(job, timeout).await {
            Some(state) => state,
            None => {
                return Applied::StillRunning(format!(
                    "the connection broke ({error:#}) and could not be made again; the apply may have run on the host: {STILL_RUNNING_HINT}"
                ));
            }
        },
    };
    // An armed change (a new firewall) is confirmed through a fresh
    // connection, never the one that was open before it.
    // One round per armed handler; bounded, in case a host keeps asking.
    let mut rounds = 0;
    while let RunState::AwaitingConfirmation(name) = &state {
        rounds += 1;
        if rounds > MAX_ARMED_ROUNDS {
            return not_confirmed(name, "it kept asking", job.confirm_seconds);
        }
        let name = name.clone();
        let confirmed = if std::env::var_os(TEST_FAIL_CONFIRMATION).is_some() {
            Err("test hook".to_string())
        } else {
            let program = Program::await_run(
                &job.root,
                &job.state_dir,
                &job.run_id,
                AwaitRun::ConfirmThenWait,
                timeout.as_secs(),
            );
            // Slack beyond the host's own wait, so its `run-running` answer
            // arrives before this limit does.
            match run_fresh(job, program, timeout + Duration::from_secs(5)).await {
                Ok(output) => Ok(run_state(&output)),
                Err(error) => Err(format!("{error:#}")),
            }
        };
        state = match confirmed {
            Ok(next) => next,
            // Not confirmed: the host rolls back at its deadline. Read that
            // outcome over the connection that is still open, if it is.
            Err(reason) => {
                let wait = job.confirm_seconds + 10;
                let program = Program::await_run(
                    &job.root,
                    &job.state_dir,
                    &job.run_id,
                    AwaitRun::ThroughArmed,
                    wait,
                );
                match within(Duration::from_secs(wait + 5), job.transport.run(program)).await {
                    Ok(output) => match run_state(&output) {
                        RunState::Finished(applied) => RunState::Finished(applied),
                        _ => return not_confirmed(&name, &reason, job.confirm_seconds),
                    },
                    Err(_) => return not_confirmed(&name, &reason, job.confirm_seconds),
                }
            }
        };
    }
    match state {
        RunState::Finished(applied) => applied,
        RunState::AwaitingConfirmation(name) => {
            not_confirmed(&name, "no answer", job.confirm_seconds)
        }
        RunState::Running => Applied::StillRunning(format!(
            "the host is still working on this apply after {} s (--timeout): {STILL_RUNNING_HINT}",
            timeout.as_secs()
        )),
        RunState::Killed => Applied::Failed(
            "the apply was killed on the host before it finished; `matrixctl plan` shows what it left, and the next apply finishes the job".to_string(),
        ),
        RunState::Missing => Applied::Failed(
            "the connection broke before the program started on the host; nothing changed".to_string(),
        ),
    }
}

fn not_confirmed(name: &str, reason: &str, seconds: u64) -> Applied {
    Applied::StillRunning(format!(
        "could not confirm {name} over a fresh connection, or lost the host after ({reason}); unless it was confirmed, the host rolls the whole apply back by itself within {seconds} s: `matrixctl plan` shows how it ended"
    ))
}

/// Runs `program` over a new connection to the job's host, and closes it.
async fn run_fresh(job: &ApplyJob, program: String, limit: Duration) -> Result<Output> {
    let fresh = job.transport.fresh();
    let answer = within(limit, fresh.run(program)).await;
    fresh.close().await;
    answer
}

/// After a broken connection: asks the host, over new connections (three
/// tries, a second apart), what became of the run.
async fn reconnect(job: &ApplyJob, timeout: Duration) -> Option<RunState> {
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let program = Program::await_run(
            &job.root,
            &job.state_dir,
            &job.run_id,
            AwaitRun::UntilArmed,
            timeout.as_secs(),
        );
        if let Ok(output) = run_fresh(job, program, timeout + Duration::from_secs(5)).await {
            return Some(run_state(&output));
        }
    }
    None
}

/// Runs an operator's task on `host`: `script` with `input` on its stdin,
/// over one connection; what the script printed, or why it failed.
pub(crate) async fn run_task(
    host: &crate::inventory::Host,
    task: &crate::render::RenderedTask,
    options: &FleetOptions,
) -> Result<String> {
    let root = root_of(host)?;
    let transport = Transport::for_host(host, &options.ssh);
    let mut program = Program::new(&root, &host.vars.state_dir.0);
    program.call_with_content(HostFn::TaskScript, &[], task.script.as_bytes());
    program.call_with_content(HostFn::TaskRun, &[], task.input.as_bytes());
    let answer = within(options.timeout, transport.run(program.finish())).await;
    transport.close().await;
    let output = answer?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.success && output_is_done(&output.stdout) {
        let printed = stdout
            .strip_suffix(&format!("{DONE_MARKER}\n"))
            .unwrap_or(&stdout);
        Ok(printed.to_string())
    } else {
        bail!("{}", failure_reason(&output.stderr))
    }
}

/// Runs the roles' looks at `host`'s health (`check` does, apart from a
/// plan) over one connection: what each found, in their order.
pub(crate) async fn look_at_health(
    host: &crate::inventory::Host,
    probes: &[crate::health::HealthProbe],
    options: &FleetOptions,
) -> Result<Vec<crate::health::HealthSeen>> {
    let root = root_of(host)?;
    let transport = Transport::for_host(host, &options.ssh);
    let mut program = Program::new(&root, &host.vars.state_dir.0);
    for probe in probes {
        program.call(HostFn::ObserveHealth, &[&probe.name, &probe.script]);
    }
    let answer = within(options.timeout, transport.run(program.finish())).await;
    transport.close().await;
    let output = answer?;
    if !output.success || !output_is_done(&output.stdout) {
        bail!("{}", failure_reason(&output.stderr));
    }
    let decode = |data: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .context("the host sent bad base64")
    };
    answer_lines(&String::from_utf8_lossy(&output.stdout))
        .filter(|(kind, _)| *kind == "health")
        .map(|(_, rest)| crate::observe::health_line(rest, &decode))
        .collect()
}

/// Closes every connection the run opened.
pub(crate) async fn close(planned: &[PlannedHost]) {
    for host in planned {
        host.transport.close().await;
    }
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

/// The transaction that carries out `plan` on one host, run detached there
/// (see [`Program::detached`]):
/// lock; check owners; stage every new file beside its target; back up
/// what will change (complete before anything live changes); write the
/// journal of checks and handlers owed; rename the new files into place
/// and remove old ones; run the validators, then the handlers; on any
/// failure, roll everything back. The record is written last, and the
/// journal and backup are cleared only when all of it succeeded.
fn transaction(
    root: &str,
    state_dir: &str,
    run_id: &str,
    plan: &HostPlan,
    lock_owner: &str,
) -> Program {
    let mut program = Program::new(root, state_dir);
    program.set("MC_RUN", run_id);
    let mut managed: Vec<&str> = plan.managed_paths.iter().map(String::as_str).collect();
    managed.extend(plan.changes.iter().map(|change| change.path.as_str()));
    managed.sort_unstable();
    managed.dedup();
    program.set_list("MC_MANAGED", &managed);
    program.set_path_prefixes(root, state_dir, &managed);
    // Only where files are written must the way be root's alone (the
    // plan checked every wanted path; removals need no such way).
    let written: Vec<&str> = plan
        .changes
        .iter()
        .filter(|change| change.after.is_some())
        .map(|change| change.path.as_str())
        .collect();
    program.set_safe_directories(root, state_dir, &written);
    program.call(HostFn::Begin, &[lock_owner]);
    program.call(HostFn::Step, &["locked"]);
    // The host as a system first: the files may need its packages,
    // accounts and directories. None of it is rolled back.
    crate::system::before_files(&mut program, &plan.system);
    let writes: Vec<_> = plan
        .changes
        .iter()
        .filter_map(|change| change.after.as_ref())
        .collect();
    for file in &writes {
        if let Some(owner) = &file.owner {
            program.call(HostFn::NeedUser, &[owner, &file.path]);
        }
        if let Some(group) = &file.group {
            program.call(HostFn::NeedGroup, &[group, &file.path]);
        }
    }
    for change in plan.changes.iter().filter(|c| c.leftover) {
        program.call(HostFn::Remove, &[&change.path]);
    }
    // The new files, each directory's in one staging directory (made in
    // one `mkdir`), so that one `mv` per directory puts them in place.
    let by_directory = files_by_directory(writes.iter().map(|file| file.path.as_str()));
    let mut staging: Vec<&str> = by_directory.iter().map(|(dir, _)| *dir).collect();
    staging.push(state_dir);
    program.call(HostFn::StageDirs, &staging);
    for file in &writes {
        let mode = format!("{:04o}", file.mode);
        let owner = file.owner.as_deref().unwrap_or("");
        let group = file.group.as_deref().unwrap_or("");
        program.stage(&file.path, &mode, owner, group, &file.content);
    }
    program.call(HostFn::Step, &["staged"]);
    // The journal and the record are staged now too, so that one sync
    // (mc_backup_end) makes the backup and everything staged durable.
    let journal = Journal {
        validators: plan.validators.clone(),
        handlers: plan.handlers.clone(),
    };
    let journal_path = journal_path(state_dir);
    program.stage(
        &journal_path,
        "0600",
        "",
        "",
        &serde_json::to_vec(&journal).unwrap_or_default(),
    );
    program.stage(
        &plan.record_path,
        "0600",
        "",
        "",
        plan.record.to_text().as_bytes(),
    );
    program.call(HostFn::BackupBegin, &[]);
    for change in plan.changes.iter().filter(|c| !c.leftover) {
        program.call(HostFn::Backup, &[&change.path]);
    }
    program.call(HostFn::BackupEnd, &[]);
    program.call(HostFn::Step, &["backed-up"]);
    program.call(HostFn::CommitState, &[&journal_path]);
    program.call(HostFn::Step, &["journaled"]);
    program.call(HostFn::Live, &[]);
    for (dir, names) in &by_directory {
        let mut args = vec![*dir];
        args.extend(names.iter().copied());
        program.call(HostFn::Commit, &args);
    }
    program.call(HostFn::FlushRenames, &[]);
    // The releases the new files expect, switched to with them.
    crate::system::artifacts::switch(&mut program, &plan.system);
    for change in &plan.changes {
        if change.action == Action::Remove && !change.leftover {
            program.call(HostFn::Remove, &[&change.path]);
        }
    }
    program.call(HostFn::Step, &["renamed"]);
    // Files made by the host's own programs (a signing key), from the new
    // configuration and before the validators read them.
    crate::system::generated::apply(&mut program, &plan.system);
    for validator in &plan.validators {
        program.call(HostFn::Validate, &[validator]);
    }
    program.call(HostFn::Step, &["validated"]);
    // systemd reads changed unit files again before any unit starts.
    let units_changed = plan
        .changes
        .iter()
        .any(|change| change.path.starts_with("/etc/systemd/"));
    if units_changed {
        program.call(HostFn::DaemonReload, &[]);
    }
    // Services are enabled before the handlers and started after them: a
    // handler restarting a service that is not running yet starts it on
    // the new files, and the start is then a no-op, so a new service
    // starts once, on matrixctl's configuration.
    crate::system::services::enable(&mut program, &plan.system);
    for handler in &plan.handlers {
        match &handler.armed {
            Some(armed) => {
                let seconds = armed.seconds.to_string();
                program.call(
                    HostFn::HandlerArmed,
                    &[
                        &handler.name,
                        &handler.command,
                        &armed.save,
                        &armed.revert,
                        &seconds,
                    ],
                );
            }
            None => {
                program.call(HostFn::Handler, &[&handler.name, &handler.command]);
            }
        }
    }
    crate::system::services::start(&mut program, &plan.system);
    crate::system::certificates::apply(&mut program, &plan.system);
    program.call(HostFn::Step, &["handled"]);
    // Made durable by mc_end's sync, before the journal and backup go.
    program.call(HostFn::CommitState, &[&plan.record_path, "later"]);
    program.call(HostFn::Step, &["recorded"]);
    program.call(HostFn::Finish, &[]);
    program
}

/// The paths' directories, each with the names of its paths, in the order
/// the directories first appear.
fn files_by_directory<'a>(paths: impl Iterator<Item = &'a str>) -> Vec<(&'a str, Vec<&'a str>)> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for path in paths {
        // "" for `/` itself: the host program joins DIR/NAME.
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        match groups.iter_mut().find(|(seen, _)| *seen == dir) {
            Some((_, names)) => names.push(name),
            None => groups.push((dir, vec![name])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_comes_before_its_homeserver_and_workers_after_it() {
        let (home, workers) = (vec!["db".to_string()], vec!["home".to_string()]);
        let levels = levels(&[
            ("workers", workers.as_slice()),
            ("other", &[]),
            ("home", home.as_slice()),
            ("db", &[]),
        ]);
        assert_eq!(
            levels.into_iter().collect::<Vec<_>>(),
            [("db", 0), ("home", 1), ("other", 0), ("workers", 2)]
        );
    }

    #[test]
    fn a_cycle_of_needs_still_ends() {
        let (a, b) = (vec!["b".to_string()], vec!["a".to_string()]);
        let levels = levels(&[("a", a.as_slice()), ("b", b.as_slice())]);
        assert!(levels.values().all(|level| *level <= 2), "{levels:?}");
    }
}
