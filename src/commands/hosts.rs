//! `host add`, `onboard` and `vars`: the inventory, read and edited.

use super::*;

/// `matrixctl host add`: the flags, as vars for host_vars.
pub(crate) fn host_add_command(role_dirs: &[PathBuf], args: cli::HostAddArgs) -> Result<ExitCode> {
    let roles = RoleSet::load(role_dirs)?;
    let mut vars = Vec::new();
    for (key, value) in [
        ("matrix_fqdn", args.fqdn),
        ("registration", args.registration),
        ("webserver", args.webserver),
    ] {
        if let Some(value) = value {
            vars.push((vec![key.to_string()], serde_yaml::Value::String(value)));
        }
    }
    if args.turn {
        vars.push((vec!["turn".into()], serde_yaml::Mapping::new().into()));
    }
    vars.extend(args.set);
    let new = scaffold::NewHost {
        domain: args.domain,
        ssh: args.ssh,
        local: args.local,
        machine: args.machine,
        groups: args.groups,
        vars,
        bridges: args.bridges,
    };
    print!(
        "{}",
        scaffold::host_add(&args.inventory.path(), &roles, new)?
    );
    Ok(ExitCode::SUCCESS)
}

/// `matrixctl onboard HOST`: the customer's checklist.
pub(crate) fn onboard_command(role_dirs: &[PathBuf], args: cli::OnboardArgs) -> Result<ExitCode> {
    let roles = RoleSet::load(role_dirs)?;
    let inventory = load_inventory(&args.inventory.path(), &roles)?;
    let host = resolved(&inventory, inventory_host(&inventory, &args.domain)?)?;
    let redactor = redactor_for(&inventory);
    let checklist = Renderer::new(&roles).render_checklist(&inventory, &host, &redactor)?;
    let printed = match args.format {
        cli::OnboardFormat::Text => checklist.to_text(),
        cli::OnboardFormat::Markdown => checklist.to_markdown(),
        cli::OnboardFormat::Json => serde_json::to_string_pretty(&checklist)? + "\n",
    };
    // The customer reads it: no secret of any host may be in it.
    print!("{}", redactor.redact(&printed));
    Ok(ExitCode::SUCCESS)
}

/// `matrixctl vars HOST [--explain KEY]`.
pub(crate) fn vars_command(role_dirs: &[PathBuf], args: cli::VarsArgs) -> Result<ExitCode> {
    let roles = RoleSet::load(role_dirs)?;
    let inventory = load_inventory(&args.inventory.path(), &roles)?;
    let host = inventory_host(&inventory, &args.domain)?;
    let redactor = redactor_for(&inventory);
    // What templates see, but the derived secrets.
    let mut effective: serde_yaml::Mapping = Renderer::new(&roles)
        .context(&inventory, host)
        .into_iter()
        .map(|(key, value)| (key.into(), value))
        .collect();
    effective.remove("secrets");
    let mut out = std::io::stdout().lock();
    let Some(key) = args.explain else {
        let yaml = serde_yaml::to_string(&effective)?;
        write!(out, "{}", redactor.redact(&yaml))?;
        return Ok(ExitCode::SUCCESS);
    };
    let key_path: Vec<String> = key.split('.').map(str::to_string).collect();
    let layers = inventory::explain::layers(&inventory, &roles, host, &key_path);
    let value = inventory::explain::lookup(&effective, &key_path);
    if layers.is_empty() && value.is_none() {
        let known = effective.keys().filter_map(|key| key.as_str());
        return Err(
            problem::Problem::new(format!("no var `{key}` for {}", host.name))
                .with_hint(
                    problem::did_you_mean(&key, known)
                        .or_else(|| Some("`matrixctl options` lists every setting".into())),
                )
                .into(),
        );
    }
    let shown = |value: Option<&serde_yaml::Value>| match value {
        None | Some(serde_yaml::Value::Null) => "unset".to_string(),
        Some(serde_yaml::Value::String(text)) => redactor.redact(text).into_owned(),
        Some(other) => redactor
            .redact(&serde_json::to_string(other).unwrap_or_default())
            .into_owned(),
    };
    writeln!(out, "{key} for {}: {}", host.name, shown(value))?;
    writeln!(out)?;
    let rows: Vec<(String, String)> = layers
        .iter()
        .map(|layer| {
            let origin = match layer.line {
                Some(line) => format!("{}:{line}", layer.origin),
                None => layer.origin.clone(),
            };
            (origin, shown(layer.value.as_ref()))
        })
        .collect();
    let width = rows
        .iter()
        .map(|(origin, _)| origin.len())
        .max()
        .unwrap_or(0);
    for (index, (origin, value)) in rows.iter().enumerate() {
        let wins = if index + 1 == rows.len() {
            "  (wins)"
        } else {
            ""
        };
        writeln!(out, "  {origin:width$}  {value}{wins}")?;
    }
    if layers.is_empty() {
        writeln!(
            out,
            "  no layer sets it: matrixctl derives it from other vars"
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
