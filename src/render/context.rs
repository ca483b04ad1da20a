//! What every template of a host sees: its vars, secrets, facts, the
//! fleet's exports, the roles' contributions, open ports and kept data.

use super::*;

impl Renderer<'_> {
    /// What the inventory's hosts export (`fleet`), gathered once.
    pub(crate) fn fleet_exports(
        &self,
        inventory: &Inventory,
        redactor: &Redactor,
    ) -> Result<Arc<FleetExports>, Problems> {
        self.fleet
            .get_or_init(|| self.gather_exports(inventory, redactor))
            .clone()
            .map_err(Problems)
    }

    /// Everything a template can read for `host`.
    pub(crate) fn context(&self, inventory: &Inventory, host: &Host) -> BTreeMap<String, Value> {
        self.context_for(inventory, host, true)
    }

    /// `context`, with `ssh_port` only when `with_ssh_port` (finding it
    /// may ask ssh; other hosts' exports never need it).
    pub(super) fn context_for(
        &self,
        inventory: &Inventory,
        host: &Host,
        with_ssh_port: bool,
    ) -> BTreeMap<String, Value> {
        let mut context: BTreeMap<String, Value> = BTreeMap::new();
        let core = match serde_yaml::to_value(&host.vars) {
            Ok(Value::Mapping(core)) => core,
            _ => Mapping::new(),
        };
        for (key, value) in host.merged.iter().chain(core.iter()) {
            if let Some(key) = key.as_str() {
                context.insert(key.to_string(), value.clone());
            }
        }
        let fqdn = host.vars.fqdn(&host.name);
        let secrets: Mapping = host_secrets(inventory, host)
            .into_iter()
            .map(|(name, value)| (Value::from(name.as_str()), Value::from(value)))
            .collect();
        context.insert("secrets".into(), Value::Mapping(secrets));
        context.insert("server_name".into(), host.name.as_str().into());
        // Sharing a machine, the homeserver's own short name and loopback
        // address (its services listen there); on a machine of its own,
        // none and 127.0.0.1.
        let (customer, address) = match &host.placement {
            Some(placement) if placement.layout == crate::inventory::Layout::Shared => {
                (placement.customer.as_str(), placement.address.as_str())
            }
            _ => ("", "127.0.0.1"),
        };
        context.insert("customer".into(), customer.into());
        context.insert("customer_address".into(), address.into());
        // Where it runs and how the inventory groups it, for what labels
        // hosts (the monitoring machine's targets).
        let machine = match &host.placement {
            Some(placement) => placement.machine.as_str(),
            None => host.name.as_str(),
        };
        context.insert("machine_name".into(), machine.into());
        // A homeserver spread over machines: which of its parts this
        // machine carries, where its own machine is, and the private
        // addresses its machines reach each other at.
        let (parts, home) = match &host.part {
            Some(part) => (part.names.clone(), part.home.as_str()),
            None => (vec!["main".to_string()], machine),
        };
        context.insert(
            "parts".into(),
            Value::Sequence(parts.into_iter().map(Value::from).collect()),
        );
        context.insert("home_machine".into(), home.into());
        let addresses = inventory.private_addresses();
        let part_machines: Vec<String> = inventory
            .parts
            .iter()
            .filter(|part| part.name == host.name)
            .filter_map(|part| Some(part.placement.as_ref()?.machine.clone()))
            .collect();
        // The private addresses of every machine of the homeserver, its
        // own first: whom what crosses its machines is open to.
        let mut homeserver_addresses: Vec<Value> = Vec::new();
        for machine in std::iter::once(home).chain(part_machines.iter().map(String::as_str)) {
            if let Some(address) = addresses.get(machine)
                && !homeserver_addresses.contains(address)
            {
                homeserver_addresses.push(address.clone());
            }
        }
        context.insert(
            "part_machines".into(),
            Value::Sequence(part_machines.into_iter().map(Value::from).collect()),
        );
        context.insert(
            "homeserver_addresses".into(),
            Value::Sequence(homeserver_addresses),
        );
        context.insert(
            "private_address".into(),
            host.private_address
                .as_deref()
                .map_or(Value::Null, Value::from),
        );
        context.insert("private_addresses".into(), Value::Mapping(addresses));
        context.insert(
            "host_groups".into(),
            Value::Sequence(
                host.groups
                    .iter()
                    .map(|group| group.as_str().into())
                    .collect(),
            ),
        );
        context.insert("public_baseurl".into(), format!("https://{fqdn}/").into());
        context.insert("matrix_fqdn".into(), fqdn.into());
        // Packages, accounts and services need the host's own root: a
        // host that is a directory of files cannot have them.
        context.insert("whole_host".into(), (host.root == Path::new("/")).into());
        // Only a role that filters traffic needs it; a proxy makes it
        // unknown (refused when such a role applies).
        if with_ssh_port {
            let port_option = self
                .roles
                .roles
                .values()
                .find_map(|role| role.manifest.keeps_ssh_open.as_ref())
                .map_or("", |guard| guard.port_option.as_str());
            context.insert(
                "ssh_port".into(),
                host_ssh_port(host, port_option).unwrap_or_default().into(),
            );
        }
        context
    }

    /// Renders every file of every role that applies to `host`.
    /// What every template of `host` sees: its vars, plus what the roles
    /// declare together (the open ports, the contributions).
    pub(super) fn full_context(
        &self,
        inventory: &Inventory,
        host: &Host,
        facts: &Arc<FactsObject>,
        redactor: &Redactor,
    ) -> Result<(JinjaValue, Vec<OpenPort>, Vec<DataItem>), Problems> {
        let fleet = self.fleet_exports(inventory, redactor)?;
        self.host_context(inventory, host, facts, redactor, Some(fleet))
    }

    /// `full_context`, with `fleet` when given: the exports are gathered
    /// without it.
    pub(super) fn host_context(
        &self,
        inventory: &Inventory,
        host: &Host,
        facts: &Arc<FactsObject>,
        redactor: &Redactor,
        fleet: Option<Arc<FleetExports>>,
    ) -> Result<(JinjaValue, Vec<OpenPort>, Vec<DataItem>), Problems> {
        let (mut base, first_pass) =
            self.first_pass(inventory, host, facts, redactor, fleet.is_some())?;
        let ports = match self.open_ports(&first_pass, redactor) {
            Ok(ports) => ports,
            Err(mut problems) => {
                for problem in &mut problems {
                    problem.message = format!("{} (host {})", problem.message, host.name);
                }
                return Err(Problems(problems));
            }
        };
        // A customer sharing a machine sees the machine's ports: what
        // filters the machine's traffic is one for all of them.
        let ports = match (&host.placement, &fleet) {
            (Some(placement), Some(_)) => self
                .machine_ports(inventory, redactor)?
                .get(&placement.machine)
                .cloned()
                .unwrap_or(ports),
            _ => ports,
        };
        base.insert(
            "open_ports".into(),
            serde_yaml::to_value(&ports).unwrap_or(Value::Null),
        );
        // Contributions may read the fleet's lists too (the firewall's
        // accept rules for the monitoring machine); not a secret one,
        // since nothing marks the files that read a contribution.
        // Gathering the exports themselves (no fleet yet), every list is
        // empty.
        let contributions = match &fleet {
            Some(exports) => {
                let contributed_with = minijinja::value::merge_maps([
                    first_pass.clone(),
                    minijinja::context! {
                        fleet => JinjaValue::from_object(FleetView {
                            exports: exports.clone(),
                            read_secret: Default::default(),
                        }),
                    },
                ]);
                self.contributions(&contributed_with, redactor)
                    .map_err(Problems)?
            }
            None => self
                .roles
                .roles
                .values()
                .flat_map(|role| role.manifest.contributes.keys())
                .map(|name| (name.clone(), Vec::new()))
                .collect(),
        };
        base.insert(
            "contributions".into(),
            serde_yaml::to_value(&contributions).unwrap_or(Value::Null),
        );
        let data = self.host_data(&first_pass, redactor).map_err(Problems)?;
        base.insert(
            "host_data".into(),
            serde_yaml::to_value(&data).unwrap_or(Value::Null),
        );
        // The secrets as an object that notes being read: a file, note or
        // fact that read one is known, whatever it did with the value.
        let secrets = match base.remove("secrets") {
            Some(Value::Mapping(secrets)) => secrets
                .into_iter()
                .filter_map(|(name, value)| {
                    Some((name.as_str()?.to_string(), value.as_str()?.to_string()))
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        let secrets = ReadSecrets::new(secrets);
        let fleet = fleet.map(|exports| FleetView {
            exports,
            read_secret: secrets.read.clone(),
        });
        let context = minijinja::value::merge_maps([
            JinjaValue::from(Serde(base)),
            minijinja::context! {
                ssh_public_keys => JinjaValue::from_object(SshPublicKeys(secrets.values.clone())),
                secrets => JinjaValue::from_object(secrets),
                host => JinjaValue::from_dyn_object(facts.clone()),
                fleet => fleet.map(JinjaValue::from_object),
            },
        ]);
        Ok((context, ports, data))
    }

    /// A host's vars with `system_managed` (the context that decides
    /// which roles apply), as a map and as a template context.
    fn first_pass(
        &self,
        inventory: &Inventory,
        host: &Host,
        facts: &Arc<FactsObject>,
        redactor: &Redactor,
        with_ssh_port: bool,
    ) -> Result<(BTreeMap<String, Value>, JinjaValue), Problems> {
        let mut base = self.context_for(inventory, host, with_ssh_port);
        let first_pass = minijinja::value::merge_maps([
            JinjaValue::from(Serde(&base)),
            minijinja::context! { host => JinjaValue::from_dyn_object(facts.clone()) },
        ]);
        // Whether matrixctl manages the system here: the one gate of every
        // role's system items, which templates read as `system_managed`.
        let system_managed = match self.roles.system_gate() {
            Some((role, gate)) => self
                .condition(role, gate, "system_when", &first_pass, redactor)
                .map_err(|problem| Problems(vec![problem]))?,
            None => true,
        };
        base.insert("system_managed".into(), system_managed.into());
        let first_pass = minijinja::value::merge_maps([
            first_pass,
            minijinja::context! { system_managed => system_managed },
        ]);
        Ok((base, first_pass))
    }

    /// Every machine's open ports: those of all its customers, each once,
    /// gathered once per inventory.
    pub(crate) fn machine_ports(
        &self,
        inventory: &Inventory,
        redactor: &Redactor,
    ) -> Result<Arc<MachinePorts>, Problems> {
        self.machine_ports
            .get_or_init(|| {
                let unknown = FactsObject::new(HostFacts::default());
                let mut by_machine: MachinePorts = BTreeMap::new();
                let mut problems = Vec::new();
                for host in &inventory.hosts {
                    let Some(placement) = &host.placement else {
                        continue;
                    };
                    let own = self
                        .first_pass(inventory, host, &unknown, redactor, false)
                        .map_err(|Problems(problems)| problems)
                        .and_then(|(_, first_pass)| self.open_ports(&first_pass, redactor));
                    match own {
                        // A port of the customer's own service is the
                        // customer's: the same one from another customer
                        // overlaps it.
                        Ok(ports) => by_machine
                            .entry(placement.machine.clone())
                            .or_default()
                            .extend(ports.into_iter().map(|port| {
                                if port.shared {
                                    port
                                } else {
                                    OpenPort {
                                        role: format!("{}@{}", port.role, host.name),
                                        ..port
                                    }
                                }
                            })),
                        // The customer's own render names the problem.
                        Err(_) => continue,
                    }
                }
                for (machine, ports) in &mut by_machine {
                    sort_ports(ports);
                    ports.dedup_by(|later, kept| {
                        (later.proto, later.start, later.end, &later.role)
                            == (kept.proto, kept.start, kept.end, &kept.role)
                    });
                    for mut problem in overlapping(ports) {
                        problem.message = format!("{} (machine {machine})", problem.message);
                        problems.push(problem);
                    }
                }
                if problems.is_empty() {
                    Ok(Arc::new(by_machine))
                } else {
                    Err(problems)
                }
            })
            .clone()
            .map_err(Problems)
    }

    /// Every host's `exports:` entries, hosts in name order; a host's
    /// broken export is every host's problem (each may read the list).
    pub(super) fn gather_exports(
        &self,
        inventory: &Inventory,
        redactor: &Redactor,
    ) -> Result<Arc<FleetExports>, Vec<Problem>> {
        let mut exports = FleetExports::default();
        if self
            .roles
            .roles
            .values()
            .all(|role| role.manifest.exports.is_empty())
        {
            return Ok(Arc::new(exports));
        }
        // A homeserver's parts export too (a workers' machine its
        // targets), after the homeserver, by machine.
        let mut hosts: Vec<&Host> = inventory.hosts.iter().chain(&inventory.parts).collect();
        hosts.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        let mut problems = Vec::new();
        let gathered =
            crate::parallel::map(&hosts, |host| self.exports_of(inventory, host, redactor));
        for (host, result) in hosts.iter().zip(gathered) {
            match result {
                Ok(entries) => {
                    for (list, entry) in entries {
                        exports.push(&list, entry);
                    }
                }
                Err(more) => problems.extend(more.into_iter().map(|mut problem| {
                    problem.message = format!("{} (host {})", problem.message, host.name);
                    problem
                })),
            }
        }
        if problems.is_empty() {
            Ok(Arc::new(exports))
        } else {
            Err(problems)
        }
    }

    /// The export entries of the roles that apply to `host`, by list.
    pub(super) fn exports_of(
        &self,
        inventory: &Inventory,
        host: &Host,
        redactor: &Redactor,
    ) -> Result<Vec<(String, ExportEntry)>, Vec<Problem>> {
        let facts = FactsObject::new(HostFacts::default());
        // A host whose vars do not render exports nothing; its own render
        // says why.
        let Ok((context, _, _)) = self.host_context(inventory, host, &facts, redactor, None) else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        for role in self.roles_in(&context).iter() {
            if role.manifest.exports.is_empty()
                || !matches!(
                    self.condition(role, &role.manifest.when, "when", &context, redactor),
                    Ok(true)
                )
            {
                continue; // the host's own render reports a broken `when`
            }
            for (index, spec) in role.manifest.exports.iter().enumerate() {
                let key = format!("exports[{index}]");
                let contexts = match self.each_item(
                    role,
                    &spec.each,
                    &format!("{key}.each"),
                    &context,
                    redactor,
                ) {
                    Ok(contexts) => contexts,
                    Err(problem) => {
                        problems.push(problem);
                        continue;
                    }
                };
                for context in contexts {
                    if !self.item_applies(role, &spec.when, &key, &context, redactor, &mut problems)
                    {
                        continue;
                    }
                    let mut fields = BTreeMap::new();
                    let mut secret = false;
                    for (name, template) in &spec.fields {
                        let (value, read) = ReadSecrets::during(&context, || {
                            self.env.render_str(template, context.clone())
                        });
                        secret |= read;
                        match value {
                            Ok(value) => {
                                fields.insert(name.clone(), value.trim().to_string());
                            }
                            Err(error) => problems.push(manifest_template_problem(
                                role,
                                format!("{key}.fields.{name}"),
                                &error,
                                redactor,
                            )),
                        }
                    }
                    let entry = ExportEntry {
                        host: host.name.as_str().to_string(),
                        fields,
                        secret,
                    };
                    entries.push((spec.list.clone(), entry));
                }
            }
        }
        if problems.is_empty() {
            Ok(entries)
        } else {
            Err(problems)
        }
    }

    /// What every applying role keeps (its `data:`), rendered and checked:
    /// a database name, or an absolute path.
    pub(super) fn host_data(
        &self,
        context: &JinjaValue,
        redactor: &Redactor,
    ) -> Result<Vec<DataItem>, Vec<Problem>> {
        use crate::roles::DataKind;
        let mut items = Vec::new();
        let mut problems = Vec::new();
        for role in self.roles_in(context).iter() {
            if role.manifest.data.is_empty()
                || !matches!(
                    self.condition(role, &role.manifest.when, "when", context, redactor),
                    Ok(true)
                )
            {
                continue; // render_host reports a broken `when`
            }
            let mut services = Vec::new();
            // A service is a system item: none where matrixctl does not
            // manage the system.
            let system_managed = context
                .get_attr("system_managed")
                .is_ok_and(|managed| managed.is_true());
            for (index, spec) in role
                .manifest
                .services
                .iter()
                .enumerate()
                .filter(|_| system_managed)
            {
                let key = format!("services[{index}]");
                if !self.item_applies(role, &spec.when, &key, context, redactor, &mut problems) {
                    continue;
                }
                match self.env.render_str(&spec.name, context.clone()) {
                    Ok(name) => services.push(name.trim().to_string()),
                    Err(error) => problems.push(manifest_template_problem(
                        role,
                        format!("{key}.name"),
                        &error,
                        redactor,
                    )),
                }
            }
            for (index, spec) in role.manifest.data.iter().enumerate() {
                let key = format!("data[{index}]");
                if !self.item_applies(role, &spec.when, &key, context, redactor, &mut problems) {
                    continue;
                }
                let location = match self.env.render_str(&spec.location, context.clone()) {
                    Ok(location) => location.trim().to_string(),
                    Err(error) => {
                        problems.push(manifest_template_problem(
                            role,
                            format!("{key}.location"),
                            &error,
                            redactor,
                        ));
                        continue;
                    }
                };
                let fits = match spec.kind {
                    DataKind::Postgresql => crate::system::databases::is_sql_identifier(&location),
                    _ => {
                        location.starts_with('/')
                            && location.len() > 1
                            && !location.split('/').any(|part| part == "..")
                    }
                };
                if !fits {
                    problems.push(
                        Problem::new(format!(
                            "role `{}`: {} `{location}` is not {}",
                            role.name,
                            spec.what,
                            match spec.kind {
                                DataKind::Postgresql => "a PostgreSQL database name",
                                _ => "an absolute path",
                            }
                        ))
                        .in_file(&role.path)
                        .at_key(format!("{key}.location"))
                        .with_hint(Some(
                            match spec.kind {
                                DataKind::Postgresql => {
                                    "letters, digits, `_` and `-`, at most 63 of them"
                                }
                                _ => "where it lives on the host, from `/`, without `..`",
                            }
                            .to_string(),
                        )),
                    );
                    continue;
                }
                items.push(DataItem {
                    role: role.name.clone(),
                    kind: spec.kind,
                    location,
                    what: spec.what.clone(),
                    services: services.clone(),
                });
            }
        }
        if problems.is_empty() {
            Ok(items)
        } else {
            Err(problems)
        }
    }

    /// Every list entry the applying roles contribute, by list name, in
    /// role order. Every list any role declares is present, even empty.
    pub(super) fn contributions(
        &self,
        context: &JinjaValue,
        redactor: &Redactor,
    ) -> Result<BTreeMap<String, Vec<String>>, Vec<Problem>> {
        let mut lists: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut problems = Vec::new();
        for role in self.roles_in(context).iter() {
            for name in role.manifest.contributes.keys() {
                lists.entry(name.clone()).or_default();
            }
            if role.manifest.contributes.is_empty() {
                continue;
            }
            match self.condition(role, &role.manifest.when, "when", context, redactor) {
                Ok(true) => {}
                Ok(false) | Err(_) => continue, // render_host reports the error
            }
            for (name, entries) in &role.manifest.contributes {
                for (index, template) in entries.iter().enumerate() {
                    match self.env.render_str(template, context.clone()) {
                        Ok(text) => lists.entry(name.clone()).or_default().push(text),
                        Err(error) => problems.push(manifest_template_problem(
                            role,
                            format!("contributes.{name}[{index}]"),
                            &error,
                            redactor,
                        )),
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(lists)
        } else {
            Err(problems)
        }
    }

    /// The ports of every role that applies, checked: in range, and no
    /// two declarations overlapping (one service per port).
    pub(super) fn open_ports(
        &self,
        context: &JinjaValue,
        redactor: &Redactor,
    ) -> Result<Vec<OpenPort>, Vec<Problem>> {
        let mut ports: Vec<OpenPort> = Vec::new();
        let mut problems = Vec::new();
        for role in self.roles_in(context).iter() {
            match self.condition(role, &role.manifest.when, "when", context, redactor) {
                Ok(true) => {}
                Ok(false) | Err(_) => continue, // render_host reports the error
            }
            for (index, spec) in role.manifest.ports.iter().enumerate() {
                let key = format!("ports[{index}]");
                let each =
                    self.each_item(role, &spec.each, &format!("{key}.each"), context, redactor);
                let contexts = match each {
                    Ok(contexts) => contexts,
                    Err(problem) => {
                        problems.push(problem);
                        continue;
                    }
                };
                for context in &contexts {
                    if !self.item_applies(role, &spec.when, &key, context, redactor, &mut problems)
                    {
                        continue;
                    }
                    let text = match &spec.port {
                        Value::Number(number) => number.to_string(),
                        Value::String(template) => {
                            match self.env.render_str(template, context.clone()) {
                                Ok(text) => text.trim().to_string(),
                                Err(error) => {
                                    problems.push(manifest_template_problem(
                                        role,
                                        format!("{key}.port"),
                                        &error,
                                        redactor,
                                    ));
                                    continue;
                                }
                            }
                        }
                        _ => String::new(),
                    };
                    let from = match &spec.from {
                        None => Vec::new(),
                        Some(expression) => {
                            match self.addresses(role, expression, &format!("{key}.from"), context)
                            {
                                Ok(from) => from,
                                Err(problem) => {
                                    problems.push(problem);
                                    continue;
                                }
                            }
                        }
                    };
                    match parse_port_range(&text) {
                    Some((start, end)) => {
                        let port = if start == end {
                            start.to_string()
                        } else {
                            format!("{start}-{end}")
                        };
                        let proto = format!("{:?}", spec.proto).to_lowercase();
                        ports.push(OpenPort {
                            start,
                            end,
                            proto: spec.proto,
                            role: role.name.clone(),
                            description: spec.description.clone(),
                            name: format!("{port}/{proto}"),
                            port,
                            shared: spec.shared,
                            from,
                        })
                    }
                    None => problems.push(
                        Problem::new(format!(
                            "role `{}`: `{text}` is not a port (1 to 65535) or a range like 49152-49573 ({})",
                            role.name, spec.description
                        ))
                        .in_file(&role.path)
                        .at_key(format!("{key}.port")),
                    ),
                }
                }
            }
        }
        sort_ports(&mut ports);
        problems.extend(overlapping(&ports));
        if problems.is_empty() {
            Ok(ports)
        } else {
            Err(problems)
        }
    }
}

impl Renderer<'_> {
    /// A port's `from`: the IP addresses `expression` gives, sorted, or
    /// the role's mistake.
    fn addresses(
        &self,
        role: &Role,
        expression: &str,
        key: &str,
        context: &JinjaValue,
    ) -> Result<Vec<String>, Problem> {
        let mistake = |reason: String| {
            Problem::new(format!("role `{}`: {reason}", role.name))
                .in_file(&role.path)
                .at_key(key.to_string())
                .with_hint(Some(
                    "a port's `from` is an expression giving a list of IP addresses".into(),
                ))
        };
        let value = self
            .env
            .compile_expression(expression)
            .and_then(|compiled| compiled.eval(context.clone()))
            .map_err(|error| mistake(format!("cannot evaluate `from`: {error}")))?;
        let items = value
            .try_iter()
            .map_err(|_| mistake(format!("`from` gave {}, not a list", value.kind())))?;
        let mut addresses = Vec::new();
        for item in items {
            let text = item.as_str().unwrap_or_default();
            match text.parse::<std::net::IpAddr>() {
                Ok(address) => addresses.push(address.to_string()),
                Err(_) => return Err(mistake(format!("`from` gave `{item}`, not an IP address"))),
            }
        }
        addresses.sort();
        addresses.dedup();
        Ok(addresses)
    }
}

/// Each machine's open ports, by machine name.
pub(crate) type MachinePorts = BTreeMap<String, Vec<OpenPort>>;

fn sort_ports(ports: &mut [OpenPort]) {
    ports.sort_by(|a, b| {
        (a.proto, a.start, a.end, &a.role).cmp(&(b.proto, b.start, b.end, &b.role))
    });
}

/// Two declarations of sorted `ports` that overlap: one service per port.
fn overlapping(ports: &[OpenPort]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for pair in ports.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.proto == b.proto && b.start <= a.end {
            let proto = format!("{:?}", a.proto).to_lowercase();
            problems.push(
                Problem::new(format!(
                    "ports overlap: {} {proto} ({}: {}) and {} {proto} ({}: {})",
                    a.port, a.role, a.description, b.port, b.role, b.description
                ))
                .with_hint(Some(
                    "each port serves one service; move one of them".into(),
                )),
            );
        }
    }
    problems
}
