//! `status`: the fleet at a glance, from one round trip per host.

use super::*;

/// `matrixctl status`: each selected host's (or machine's) pending
/// changes and drift, last apply, services, certificates, disk and
/// memory, and the roles' looks, worst first. Exit 2 when any host has
/// an error, as `check`.
pub(crate) fn status_command(
    role_dirs: &[PathBuf],
    args: cli::StatusArgs,
    style: Style,
) -> Result<ExitCode> {
    let mut prepared = prepare_looking(role_dirs, &args.selection, true)?;
    for target in &mut prepared.targets {
        let Ok(root) = fleet::root_of(&target.host) else {
            // The plan reports the root it cannot use.
            continue;
        };
        let state_dir = target.host.vars.state_dir.0.clone();
        let whole = root.is_empty();
        let looks_for = move |rendered: &mut Rendered| {
            let looks = crate::status::looks(&root, &state_dir, &rendered.system, whole);
            rendered.health.extend(looks);
        };
        looks_for(&mut target.rendered);
        let render_again = target.render_again.clone();
        target.render_again = Arc::new(move |host, facts| {
            let mut rendered = render_again(host, facts)?;
            looks_for(&mut rendered);
            Ok(rendered)
        });
    }
    let (_control_dir, options) = reaching(
        &args.connect,
        prepared.targets.iter().map(|target| &target.host),
    )?;
    let planned = runtime()?.block_on(async {
        let planned = fleet::plan(prepared.targets, &options).await;
        fleet::close(&planned).await;
        planned
    });
    let hosts = crate::status::of(&planned);
    let printed = if args.json {
        crate::status::json(&hosts)
    } else {
        crate::status::text(&hosts, style)
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(printed.as_bytes())?;
    stdout.flush()?;
    let any_error = hosts
        .iter()
        .any(|host| host.status == crate::health::HealthStatus::Error);
    Ok(if any_error {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
