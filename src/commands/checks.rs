//! `check`: what the world sees of each host, and the roles' looks on
//! the hosts.

use super::*;

/// `matrixctl check`: every selected host's server name as the world
/// sees it, and what matrixctl renders for it; or `--domain` alone.
pub(crate) fn check_command(
    role_dirs: &[PathBuf],
    args: cli::CheckArgs,
    style: Style,
) -> Result<ExitCode> {
    // The inventory is known good, and every probe rendered, before
    // anything goes on the network.
    let mut on_hosts = Vec::new();
    let expected: Vec<check::expect::HostExpectations> = match &args.domain {
        Some(_) => Vec::new(),
        None => {
            let roles = RoleSet::load(role_dirs)?;
            let inventory = load_inventory(&args.selection.inventory_dir(), &roles)?;
            let redactor = redactor_for(&inventory);
            let renderer = Renderer::new(&roles);
            let mut expected = Vec::new();
            let mut problems = Vec::new();
            for host in inventory.select(args.selection.limit.pattern.as_deref())? {
                match renderer.render_probes(&inventory, host, &redactor) {
                    Ok(rendered) => {
                        // A host whose roles look at it (its backups' age)
                        // is also asked over SSH.
                        if !rendered.health.is_empty() {
                            match resolved(&inventory, host) {
                                Ok(host) => on_hosts.push(host),
                                Err(problem) => problems.push(problem),
                            }
                        }
                        expected.push(rendered);
                    }
                    Err(Problems(found)) => problems.extend(found),
                }
            }
            if !problems.is_empty() {
                return Err(Problems(problems).into());
            }
            expected
        }
    };
    // Asked once, with nothing kept: check runs rarely, and reaches only
    // the hosts whose roles look at them.
    let (_control_dir, options) = reaching(
        &Connect {
            forks: fleet::DEFAULT_FORKS,
            timeout: args.timeout.max(1),
            accept_new_host_keys: false,
            persist: cli::Persist(None),
        },
        &on_hosts,
    )?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let net = check::net::Net::new(&check::net::NetOptions {
        pins: args.resolve.clone(),
        dns: args.dns,
        ca_file: args.ca_file.clone(),
        timeout: Duration::from_secs(args.timeout.max(1)),
    })?;
    let reports = runtime()?.block_on(async {
        match &args.domain {
            Some(domain) => vec![check::check_domain(&net, domain).await],
            None => {
                use futures_util::StreamExt;
                // At most --forks' default of hosts asked at once.
                let looks = futures_util::stream::iter(on_hosts.iter().map(|host| {
                    let probes = expected
                        .iter()
                        .find(|expected| expected.host == host.name.as_str())
                        .map(|expected| expected.health.as_slice())
                        .unwrap_or_default();
                    fleet::look_at_health(host, probes, &options)
                }))
                .buffered(options.forks)
                .collect::<Vec<_>>();
                let (mut reports, looks) = futures_util::future::join(
                    futures_util::future::join_all(
                        expected.iter().map(|host| check::check_host(&net, host)),
                    ),
                    looks,
                )
                .await;
                for (host, looked) in on_hosts.iter().zip(looks) {
                    if let Some(report) = reports
                        .iter_mut()
                        .find(|report| report.host.as_deref() == Some(host.name.as_str()))
                    {
                        check::add_health(report, looked.map_err(|error| format!("{error:#}")));
                    }
                }
                reports
            }
        }
    });
    let printed = if args.json {
        check::output::json(&reports)
    } else {
        check::output::text(&reports, style.color)
    };
    print!("{printed}");
    Ok(if reports.iter().all(|report| report.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
