//! `backup` (and `backup verify`), `restore`, and `host remove --purge`:
//! the backup role's tasks, run in order.

use super::*;

/// A backup of each host now, one after the other (each is a run of the
/// host's own backup unit), and what each archive holds; a host that
/// fails does not stop the next.
pub(crate) fn backup_command(role_dirs: &[PathBuf], args: cli::BackupArgs) -> Result<ExitCode> {
    if let Some(cli::BackupCommand::Verify(verify)) = args.command {
        let archive = verify.archive.unwrap_or_else(|| "latest".to_string());
        let said = run_task(
            role_dirs,
            &verify.task.inventory.path(),
            &verify.host,
            "backup verify",
            &[("archive".to_string(), archive)].into_iter().collect(),
            &verify.task.waiting(),
            &[],
        )?;
        print!("{said}");
        println!("{}: the archive would restore.", verify.host);
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = Vec::new();
    // The host program runs as long as the backup: --wait bounds it, not
    // --timeout's default, which is for plans.
    let connect = args.task.waiting();
    for host in &args.hosts {
        let started = std::time::Instant::now();
        let said = run_task(
            role_dirs,
            &args.task.inventory.path(),
            host,
            "backup now",
            &Default::default(),
            &connect,
            &[],
        );
        match said {
            Ok(said) => {
                println!(
                    "{host}: backed up in {:.1} s\n{}",
                    started.elapsed().as_secs_f64(),
                    said.trim_end()
                );
            }
            Err(error) => {
                eprintln!("error: {error:#}");
                failed.push(host.as_str());
            }
        }
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("No backup of {}.", failed.join(", "));
        Ok(ExitCode::from(1))
    }
}

/// `host remove --purge`: the host's data deleted on the server, after a
/// last archive of it verified (the backup role's `purge` task), before
/// the host leaves the inventory. Refused, with nothing deleted, when the
/// host has no backups or the last one fails.
pub(crate) fn purge_host(role_dirs: &[PathBuf], args: &cli::HostRemoveArgs) -> Result<()> {
    let said = run_task(
        role_dirs,
        &args.inventory.path(),
        &args.domain,
        "purge",
        &Default::default(),
        &args.wait.applied_to(&args.connect),
        &[],
    )
    .map_err(|error| {
        anyhow::anyhow!(
            "{error:#}\nhint: the host stays in the inventory; `--purge` deletes data only once a last archive of it verifies (`backup` set for the host)"
        )
    })?;
    let mut deleted = Vec::new();
    let mut archive = None;
    for (kind, rest) in crate::fields::answer_lines(&said) {
        match kind {
            "deleted" => deleted.push(rest.to_string()),
            "archive" => archive = Some(rest.trim().to_string()),
            _ => {}
        }
    }
    let archive =
        archive.context("the host's purge did not name the archive that keeps its data")?;
    println!(
        "Deleted {}'s data ({}); it is kept in the archive {archive}, made and verified just now.",
        args.domain,
        deleted.join(", ")
    );
    Ok(())
}

/// A host put back from its backup, in three steps: the host is checked
/// to hold none of the data a restore replaces (before anything changes;
/// `--force` skips this) and marked as being restored; the inventory is
/// applied to it (packages, accounts, files: the configuration comes back
/// from the inventory); then the archive's data replaces what the apply
/// made, with the services that use it stopped until all of it is back.
/// A restore cut short is run again: the mark lets it resume.
pub(crate) fn restore_command(
    role_dirs: &[PathBuf],
    args: cli::RestoreArgs,
    style: Style,
) -> Result<ExitCode> {
    let archive = args.archive.clone().unwrap_or_else(|| "latest".to_string());
    let task_args = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    run_task(
        role_dirs,
        &args.task.inventory.path(),
        &args.host,
        "restore begin",
        &task_args(&[("force", if args.force { "yes" } else { "no" })]),
        &args.task.connect,
        &[],
    )
    .map_err(|error| {
        anyhow::anyhow!(
            "{error:#}\nhint: nothing was changed; `--force` replaces that data with the archive's"
        )
    })?;
    println!(
        "{}: holds no data a restore would replace; applying the inventory first.",
        args.host
    );
    let applied = apply_command(
        role_dirs,
        ApplyArgs {
            target: Some(args.task.inventory.path()),
            inventory_flag: Default::default(),
            limit: crate::cli::Limit {
                pattern: Some(args.host.clone()),
            },
            connect: args.task.connect.clone(),
            json: false,
            yes: true,
            batch: None,
            max_fail: None,
            gate: None,
            seen_as: Default::default(),
        },
        style,
    )?;
    if applied != ExitCode::SUCCESS {
        bail!(
            "the apply before the data failed, so no data was restored; fix what it says and run `matrixctl restore {}` again",
            args.host
        );
    }
    let connect = args.task.waiting();
    let restored = run_task(
        role_dirs,
        &args.task.inventory.path(),
        &args.host,
        "restore",
        &task_args(&[("archive", &archive)]),
        &connect,
        &[],
    )?;
    println!(
        "Restored {} from {}: its data is back and its services are running.",
        args.host,
        restored.trim()
    );
    Ok(ExitCode::SUCCESS)
}
