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
    let net = world_net(&args.seen_as, args.timeout)?;
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

/// The network as `check` sees it: the system's DNS and CAs unless
/// `seen_as` says otherwise; `timeout` seconds for each request.
fn world_net(seen_as: &cli::SeenAs, timeout: u64) -> Result<check::net::Net> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    check::net::Net::new(&check::net::NetOptions {
        pins: seen_as.resolve.clone(),
        dns: seen_as.dns,
        ca_file: seen_as.ca_file.clone(),
        timeout: Duration::from_secs(timeout.max(1)),
    })
}

/// Seconds for each of the gate's requests: `check`'s default.
const GATE_REQUEST_SECONDS: u64 = 10;

/// `apply --gate check`: what `check` finds on a batch's hosts, each
/// target (a machine: each of its homeservers) failing on any error.
/// Every probe is rendered here, before any host is touched. The roles'
/// looks on the hosts are left out: they judge what an apply does not
/// change (a backup's age), and a first apply has no backup yet.
pub(crate) fn check_gate(
    inventory: &Inventory,
    roles: &RoleSet,
    redactor: &Redactor,
    target_names: &[String],
    seen_as: &cli::SeenAs,
) -> Result<Box<fleet::Gate>> {
    let renderer = Renderer::new(roles);
    let mut by_target: std::collections::BTreeMap<String, Vec<check::expect::HostExpectations>> =
        Default::default();
    let mut problems = Vec::new();
    for host in &inventory.hosts {
        let target = match &host.placement {
            Some(placement) => placement.machine.as_str(),
            None => host.name.as_str(),
        };
        if !target_names.iter().any(|name| name == target) {
            continue;
        }
        match renderer.render_probes(inventory, host, redactor) {
            Ok(expected) => by_target
                .entry(target.to_string())
                .or_default()
                .push(expected),
            Err(Problems(found)) => problems.extend(found),
        }
    }
    if !problems.is_empty() {
        return Err(Problems(problems).into());
    }
    let net = Arc::new(world_net(seen_as, GATE_REQUEST_SECONDS)?);
    let by_target = Arc::new(by_target);
    Ok(Box::new(move |targets: Vec<String>| {
        let (net, by_target) = (net.clone(), by_target.clone());
        Box::pin(async move {
            let checked = futures_util::future::join_all(targets.into_iter().map(|target| {
                let (net, by_target) = (net.clone(), by_target.clone());
                async move {
                    let expected = by_target
                        .get(&target)
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    let reports = futures_util::future::join_all(
                        expected.iter().map(|host| check::check_host(&net, host)),
                    )
                    .await;
                    (target, gate_failure(&reports))
                }
            }))
            .await;
            checked
                .into_iter()
                .filter_map(|(target, failure)| Some((target, failure?)))
                .collect()
        })
    }))
}

/// The errors `check` found in `reports`, one per line (and its hint),
/// each named for its server name; None when there is none.
fn gate_failure(reports: &[check::Report]) -> Option<String> {
    let mut lines = Vec::new();
    for report in reports {
        for finding in &report.checks {
            if finding.status != check::Status::Error {
                continue;
            }
            lines.push(format!(
                "{}: {} {}: {}",
                report.server_name, finding.check, finding.subject, finding.message
            ));
            if let Some(hint) = &finding.hint {
                lines.push(format!("  hint: {hint}"));
            }
        }
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}
