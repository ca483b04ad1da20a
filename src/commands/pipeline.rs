//! `plan`, `apply` (of an inventory or a saved plan), `show`, `render`
//! and `disconnect`: the main pipeline, stage by stage.

use super::*;

pub(crate) fn plan_command(
    role_dirs: &[PathBuf],
    args: PlanArgs,
    style: Style,
) -> Result<ExitCode> {
    let prepared = prepare(role_dirs, &args.selection)?;
    let (_control_dir, options) = reaching(
        &args.connect,
        prepared.targets.iter().map(|target| &target.host),
    )?;
    let runtime = runtime()?;
    let planned = runtime.block_on(async {
        let planned = fleet::plan(prepared.targets, &options).await;
        fleet::close(&planned).await;
        planned
    });
    if let Some(out) = &args.out {
        let mut saved = SavedPlan::new(&args.selection.inventory_dir(), role_dirs, &planned)?;
        saved.report = Some(saved::SavedReport {
            text: report::plan_text(
                &planned,
                Style { color: false },
                &prepared.redactor,
                report::Detail::Lines,
            ),
            json: report::json(
                "plan",
                &planned,
                None,
                &prepared.redactor,
                report::Detail::Lines,
            ),
        });
        saved.write(out)?;
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        stdout.write_all(
            report::json(
                "plan",
                &planned,
                None,
                &prepared.redactor,
                report::Detail::Full,
            )
            .as_bytes(),
        )?;
    } else {
        let detail = if args.summary {
            report::Detail::Lines
        } else {
            report::Detail::Full
        };
        stdout
            .write_all(report::plan_text(&planned, style, &prepared.redactor, detail).as_bytes())?;
        if let Some(out) = &args.out {
            writeln!(
                stdout,
                "Saved the plan to {}; apply exactly it with `matrixctl apply {}`.",
                out.display(),
                out.display()
            )?;
        }
    }
    stdout.flush()?;
    Ok(if any_failed(&planned) {
        ExitCode::from(1)
    } else if args.detailed_exitcode && any_changes(&planned) {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) fn apply_command(
    role_dirs: &[PathBuf],
    args: ApplyArgs,
    style: Style,
) -> Result<ExitCode> {
    let target = args.target();
    let saved = if SavedPlan::is_saved_plan(&target) {
        Some(SavedPlan::read(&target)?)
    } else {
        None
    };
    // A saved plan was reviewed when it was made; an inventory was not.
    if saved.is_none() && !args.yes && (args.json || !std::io::stdin().is_terminal()) {
        bail!(
            "apply needs confirmation, and {} cannot ask for it\nhint: review the changes with `matrixctl plan`, then run `matrixctl apply --yes`",
            if args.json {
                "--json output"
            } else {
                "stdin is not a terminal, so matrixctl"
            }
        );
    }
    let (selection, role_dirs) = match &saved {
        Some(saved) => {
            if saved.hosts.is_empty() {
                println!("The saved plan has no changes to apply.");
                return Ok(ExitCode::SUCCESS);
            }
            let names: Vec<&str> = saved.hosts.keys().map(String::as_str).collect();
            let selection = Selection {
                inventory: Some(saved.inventory.clone()),
                inventory_flag: Default::default(),
                limit: crate::cli::Limit {
                    pattern: Some(names.join(",")),
                },
            };
            (selection, saved.roles.clone())
        }
        None => (
            Selection {
                inventory: Some(target.clone()),
                inventory_flag: Default::default(),
                limit: args.limit.clone(),
            },
            role_dirs.to_vec(),
        ),
    };
    let seen_as_given = !args.seen_as.resolve.is_empty()
        || args.seen_as.dns.is_some()
        || args.seen_as.ca_file.is_some();
    if args.gate.is_none() && seen_as_given {
        bail!(
            "--resolve, --dns and --ca-file say how the gate's check reaches the hosts, and there is no --gate\nhint: add `--gate check`, or leave them out"
        );
    }
    let prepared = prepare(&role_dirs, &selection)?;
    let gate = match args.gate {
        Some(cli::Gate::Check) => {
            let names: Vec<String> = prepared
                .targets
                .iter()
                .map(|target| target.host.name.to_string())
                .collect();
            Some(checks::check_gate(
                &prepared.inventory,
                &prepared.roles,
                &prepared.redactor,
                &names,
                &args.seen_as,
            )?)
        }
        None => None,
    };
    let (_control_dir, options) = reaching(
        &args.connect,
        prepared.targets.iter().map(|target| &target.host),
    )?;
    let runtime = runtime()?;
    let mut planned = runtime.block_on(fleet::plan(prepared.targets, &options));
    if let Some(saved) = &saved {
        refuse_changed_hosts(&mut planned, saved);
    }
    let redactor = &prepared.redactor;
    let mut stdout = std::io::stdout().lock();
    if !args.json {
        stdout.write_all(
            report::plan_text(&planned, style, redactor, report::Detail::Full).as_bytes(),
        )?;
        stdout.flush()?;
    }
    if !any_changes(&planned) {
        runtime.block_on(fleet::close(&planned));
        if args.json {
            stdout.write_all(
                report::json("apply", &planned, Some(&[]), redactor, report::Detail::Full)
                    .as_bytes(),
            )?;
        } else {
            writeln!(stdout, "No changes to apply.")?;
        }
        return Ok(if any_failed(&planned) {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    if saved.is_none() && !args.yes && !confirmed()? {
        runtime.block_on(fleet::close(&planned));
        writeln!(stdout, "Apply cancelled; nothing was changed.")?;
        return Ok(ExitCode::from(1));
    }
    // A gate stops the rollout at the first failed check unless the
    // operator allows more failures with --max-fail.
    let rollout = Rollout {
        batch: args.batch,
        max_fail_percent: args.max_fail.unwrap_or(100.0),
        gate: gate.as_deref(),
        stop_at_failed_check: args.max_fail.is_none(),
    };
    let applied = runtime.block_on(async {
        let applied = fleet::apply(&planned, &options, rollout, &lock_owner()).await;
        fleet::close(&planned).await;
        applied
    });
    if args.json {
        stdout.write_all(
            report::json(
                "apply",
                &planned,
                Some(&applied),
                redactor,
                report::Detail::Full,
            )
            .as_bytes(),
        )?;
    } else {
        stdout.write_all(b"\n")?;
        stdout.write_all(report::apply_text(&planned, &applied, style, redactor).as_bytes())?;
    }
    stdout.flush()?;
    let failed = any_failed(&planned) || applied.iter().any(|host| host.result != Applied::Done);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A saved plan applies only where nothing changed since it was made.
pub(crate) fn refuse_changed_hosts(planned: &mut [PlannedHost], saved: &SavedPlan) {
    for host in planned {
        let Some(expected) = saved.hosts.get(&host.name) else {
            continue;
        };
        if host.plan.is_err() {
            continue;
        }
        let now = SavedHost::of(host);
        let reason = match now {
            Some(now) if now.observed != expected.observed => {
                "the host's files changed since the plan was saved"
            }
            Some(now) if now.desired != expected.desired => {
                "the inventory (or a role) changed since the plan was saved"
            }
            Some(_) => continue,
            None => "the host could not be read",
        };
        host.plan = Err(format!(
            "{reason}; refusing to apply the saved plan here\nhint: run `matrixctl plan` again"
        ));
    }
}

/// `matrixctl show FILE`: a saved plan's summary, touching no host.
pub(crate) fn show_command(args: cli::ShowArgs) -> Result<ExitCode> {
    let saved = SavedPlan::read(&args.plan)?;
    let Some(report) = saved.report else {
        bail!(
            "{} was saved by a matrixctl that kept no copy of the plan; `matrixctl apply {}` still applies it",
            args.plan.display(),
            args.plan.display()
        );
    };
    let mut stdout = std::io::stdout().lock();
    if args.json {
        write!(stdout, "{}", report.json)?;
    } else {
        write!(stdout, "{}", report.text)?;
        writeln!(
            stdout,
            "Saved for {}; `matrixctl apply {}` applies exactly it to the hosts still as they were.",
            saved.inventory.display(),
            args.plan.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn render_command(role_dirs: &[PathBuf], args: RenderArgs) -> Result<ExitCode> {
    let prepared = prepare(role_dirs, &args.selection)?;
    // Creating thousands of files is mostly the kernel's work, which
    // spreads over cores too.
    let written = parallel::map(&prepared.targets, |target| {
        write_tree(
            &args.out.join(target.host.name.as_str()),
            &target.rendered.files,
        )
    });
    written.into_iter().collect::<Result<Vec<()>>>()?;
    let files: usize = prepared
        .targets
        .iter()
        .map(|target| target.rendered.files.len())
        .sum();
    let hosts = prepared.targets.len();
    println!(
        "Rendered {files} file{} for {hosts} host{} into {}.",
        if files == 1 { "" } else { "s" },
        if hosts == 1 { "" } else { "s" },
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes desired files under `dir`, with their modes (not owners: the
/// output is for review by the operator who ran the command).
pub(crate) fn write_tree(dir: &Path, desired: &DesiredState) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for file in desired.values() {
        let path = dir.join(file.path.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        fs_err::write(&path, &file.content)?;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(file.mode))?;
    }
    Ok(())
}

/// `matrixctl disconnect`: tells the kept master of each selected SSH
/// host to exit. Hosts are only resolved (no rendering), so it works on an
/// inventory that no longer renders.
pub(crate) fn disconnect_command(
    role_dirs: &[PathBuf],
    args: cli::DisconnectArgs,
) -> Result<ExitCode> {
    let roles = RoleSet::load(role_dirs)?;
    let inventory = load_inventory(&args.selection.inventory_dir(), &roles)?;
    let mut hosts = Vec::new();
    for host in inventory.select(args.selection.limit.pattern.as_deref())? {
        hosts.push(resolved(&inventory, host)?);
    }
    let control_dir = transport::ssh::kept_masters_dir()?;
    // Only the directory matters: disconnecting opens no connection.
    let settings = Arc::new(SshSettings {
        control_dir,
        connect_timeout: Duration::from_secs(5),
        accept_new_host_keys: false,
        persist: Some(Duration::from_secs(1)),
    });
    let transports: Vec<_> = hosts
        .iter()
        .map(|host| transport::Transport::for_host(host, &settings))
        .collect();
    let closed = runtime()?.block_on(futures_util::future::join_all(
        transports.iter().map(transport::Transport::disconnect),
    ));
    let mut stdout = std::io::stdout().lock();
    for (host, closed) in hosts.iter().zip(&closed) {
        if *closed {
            writeln!(stdout, "{}: closed", host.name)?;
        }
    }
    let count = closed.iter().filter(|closed| **closed).count();
    writeln!(
        std::io::stderr(),
        "{count} kept connection{} closed ({} host{} selected)",
        if count == 1 { "" } else { "s" },
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" }
    )?;
    Ok(ExitCode::SUCCESS)
}
