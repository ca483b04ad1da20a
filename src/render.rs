//! Renders a host's desired files: its vars into a template context, each
//! role's `when` decides, each file's template, destination, mode and owner
//! are rendered. Strict: a missing var is an error naming template and line.
//! Deterministic: sorted maps in, the same bytes out, every time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};
use std::sync::Arc;

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value as JinjaValue};
use serde_yaml::{Mapping, Value};

use crate::exports::{ExportEntry, FleetExports, FleetView};
use crate::facts::{FactsObject, HostFacts};
use crate::inventory::{Connection, Host, Inventory};
use crate::problem::{Problem, Problems};
use crate::record::Facts;
use crate::roles::{BUILTIN_TEMPLATES, OpenPort, Role, RoleSet};
use crate::secrets::{Redactor, SecretFinder, SecretName};

/// One file as the inventory says it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredFile {
    /// Absolute path on the host (not including the host's `root`).
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub role: String,
    /// Holds a secret (or the role says so): its content is never shown.
    pub sensitive: bool,
}

/// A host's desired files, by path.
pub type DesiredState = BTreeMap<String, DesiredFile>;

/// A role's checks and handlers for one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleActions {
    pub validators: Vec<String>,
    pub handlers: Vec<Handler>,
    /// For a role that no longer applies: what to run once its files are
    /// removed (stop its service, or reload the server that included them).
    pub removal_handlers: Vec<Handler>,
    /// The role's facts for this host, stored in the record by apply.
    pub facts: Facts,
    /// The role's impact templates (over `before` and `after` facts).
    pub impacts: Vec<String>,
    /// The role's refusal templates the operator has not waived (their
    /// `unless` is false for this host), evaluated like `impacts`.
    pub refusals: Vec<String>,
    /// Accounts the role makes under a condition that is false for this
    /// host: (`group NAME` or `user NAME`, the condition). A file that
    /// needs one of them is refused naming what would make it.
    pub dormant_accounts: Vec<(String, String)>,
}

/// A handler, rendered: run when its role's files changed. Two handlers
/// are the same when they run the same thing in the same place (order,
/// name, command, armed revert): the impact text is not compared, so one
/// owed by an interrupted apply (read back without it) still runs once.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Handler {
    pub order: u32,
    pub name: String,
    pub command: String,
    /// Save, revert and seconds, for a handler that must be confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub armed: Option<ArmedRevert>,
    /// What people notice while it runs, for the plan's impact summary
    /// (kept in a journal too, so owed handlers are described alike).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<String>,
}

impl Handler {
    fn identity(&self) -> (u32, &str, &str, Option<&ArmedRevert>) {
        (self.order, &self.name, &self.command, self.armed.as_ref())
    }
}

impl PartialEq for Handler {
    fn eq(&self, other: &Handler) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for Handler {}

impl PartialOrd for Handler {
    fn partial_cmp(&self, other: &Handler) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Handler {
    fn cmp(&self, other: &Handler) -> std::cmp::Ordering {
        self.identity().cmp(&other.identity())
    }
}

/// An automatic revert, armed before a handler that could cut matrixctl off.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ArmedRevert {
    pub save: String,
    pub revert: String,
    pub seconds: u32,
}

/// Something a role that applies keeps on the host (see
/// `Manifest::data`), rendered: what a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct DataItem {
    pub role: String,
    pub kind: crate::roles::DataKind,
    /// The database's name, or the path.
    pub location: String,
    pub what: String,
    /// The role's services (the units that use it): stopped while it is
    /// restored.
    pub services: Vec<String>,
}

/// Everything rendered for one host.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub files: DesiredState,
    /// Per role that applies: its validators and handlers, rendered.
    pub actions: BTreeMap<String, RoleActions>,
    /// What the operator must do outside the host (a DNS record to create),
    /// from the roles' `notes`; shown by plan.
    pub notes: Vec<String>,
    /// Packages, groups, users, directories and services, in item order.
    pub system: Vec<crate::system::Wanted>,
    /// Whether anything rendered read the host's facts (`host`): then the
    /// host is rendered again once they are known.
    pub read_facts: bool,
    /// The packages whose versions the templates asked about.
    pub asked_packages: BTreeSet<String>,
    /// What the roles that apply keep on the host, in role order.
    pub data: Vec<DataItem>,
    /// The roles' looks at the host's health, in role order.
    pub health: Vec<crate::health::HealthProbe>,
}

/// A task rendered for one host: what runs there, and its stdin.
pub struct RenderedTask {
    pub script: String,
    pub input: String,
}

/// The template environment over built-in and `--roles` templates.
pub struct Renderer<'a> {
    env: Environment<'static>,
    roles: &'a RoleSet,
    /// What the inventory's hosts export (`fleet`), gathered on the first
    /// render: a renderer serves one inventory.
    fleet: std::sync::OnceLock<Result<Arc<FleetExports>, Vec<Problem>>>,
}

/// The fuel of one render (minijinja's units: an instruction, or a byte
/// allocated): 16 MiB of output at most, and as many steps.
pub const TEMPLATE_FUEL: u64 = 16 << 20;

impl<'a> Renderer<'a> {
    pub fn new(roles: &'a RoleSet) -> Renderer<'a> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Templates choose their quoting (`| tojson`); nothing is escaped behind their back.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        let mut syntax = minijinja::syntax::SyntaxConfig::builder();
        // Block tags on their own line leave no blank line or indent
        // behind (trim_blocks, lstrip_blocks), as in Ansible templates.
        syntax
            .keep_trailing_newline(true)
            .trim_blocks(true)
            .lstrip_blocks(true);
        env.set_syntax(syntax.build().expect("the default delimiters are valid"));
        // Each render has a budget of steps and of bytes allocated (a
        // `--roles` template growing a string in a loop would otherwise
        // abort the process on a failed allocation). Far above what any
        // built-in template spends: their files are a few KiB each.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.add_filter("merge", merge_maps);
        // One token of each format the roles write (see escape.rs).
        env.add_filter("nginx", crate::escape::nginx);
        env.add_filter("caddy", crate::escape::caddy);
        env.add_filter("caddy_body", crate::escape::caddy_body);
        env.add_filter("haproxy", crate::escape::haproxy);
        env.add_filter("env", crate::escape::env);
        env.add_filter("word", crate::escape::word);
        env.add_filter("html_text", crate::escape::html_text);
        env.add_filter("html_markup", crate::escape::html_markup);
        env.add_filter("bytes", size_in_bytes);
        // Facts about the host (`host.packages.NAME`) are Debian versions.
        env.add_test("version_at_least", crate::facts::version_at_least);
        env.add_filter("version_prefix", crate::facts::version_prefix);
        // An SSH key derived from a secret (see sshkey.rs).
        env.add_filter("ssh_private_key", |secret: &str, comment: Option<&str>| {
            crate::sshkey::private_key(secret, comment.unwrap_or_default())
        });
        let dirs = roles.template_dirs.clone();
        env.set_loader(move |name| {
            if Path::new(name)
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
            {
                return Ok(None);
            }
            for dir in &dirs {
                let path = dir.join(name);
                if path.is_file() {
                    return fs_err::read_to_string(&path).map(Some).map_err(|error| {
                        minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            error.to_string(),
                        )
                    });
                }
            }
            Ok(BUILTIN_TEMPLATES
                .get_file(name)
                .map(|file| String::from_utf8_lossy(file.contents()).into_owned()))
        });
        Renderer {
            env,
            roles,
            fleet: std::sync::OnceLock::new(),
        }
    }

    /// This renderer, knowing the inventory's exports already (gathered
    /// by another renderer of the same inventory).
    pub fn knowing(self, exports: Arc<FleetExports>) -> Renderer<'a> {
        let _ = self.fleet.set(Ok(exports));
        self
    }

    /// What the inventory's hosts export (`fleet`), gathered once.
    pub fn fleet_exports(
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
    pub fn context(&self, inventory: &Inventory, host: &Host) -> BTreeMap<String, Value> {
        self.context_for(inventory, host, true)
    }

    /// `context`, with `ssh_port` only when `with_ssh_port` (finding it
    /// may ask ssh; other hosts' exports never need it).
    fn context_for(
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

    /// The script and input of task `name` for `host`, from the role that
    /// offers it and applies there, with `args` the command line's values;
    /// `Ok(None)`: no role that applies to the host offers it.
    pub fn render_task(
        &self,
        inventory: &Inventory,
        host: &Host,
        name: &str,
        args: &BTreeMap<String, String>,
        redactor: &Redactor,
    ) -> Result<Option<RenderedTask>, Problem> {
        // What every template of the host sees (its data, the roles'
        // contributions), with the task's arguments. Tasks run on a host
        // that was not observed first: its facts are unknown (none).
        let facts = FactsObject::new(HostFacts::default());
        let (full, _, _) = self
            .full_context(inventory, host, &facts, redactor)
            .map_err(|Problems(mut problems)| problems.remove(0))?;
        let context = minijinja::value::merge_maps([
            full,
            minijinja::context! {
                args => JinjaValue::from(Serde(args)),
                task_name => name.replace(' ', "-"),
            },
        ]);
        for role in self.roles.roles.values() {
            let Some(task) = role.manifest.tasks.get(name) else {
                continue;
            };
            if !self.condition(role, &role.manifest.when, "when", &context, redactor)? {
                continue;
            }
            let applies = match &task.when {
                Some(when) => self.condition(
                    role,
                    when,
                    &format!("tasks.{name}.when"),
                    &context,
                    redactor,
                )?,
                None => true,
            };
            if !applies {
                continue;
            }
            let template = |key: &str, text: &str| {
                self.env.render_str(text, context.clone()).map_err(|error| {
                    manifest_template_problem(role, format!("tasks.{name}.{key}"), &error, redactor)
                })
            };
            if let Some(refuse) = &task.refuse {
                let why = template("refuse", refuse)?;
                let why = why.trim();
                if !why.is_empty() {
                    return Err(Problem::new(format!(
                        "`{name}` cannot help on {}: {why}",
                        host.name
                    )));
                }
            }
            return Ok(Some(RenderedTask {
                script: template("script", &task.script)?,
                input: template("input", &task.input)?,
            }));
        }
        Ok(None)
    }

    /// Renders every file of every role that applies to `host`.
    /// What every template of `host` sees: its vars, plus what the roles
    /// declare together (the open ports, the contributions).
    fn full_context(
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
    fn host_context(
        &self,
        inventory: &Inventory,
        host: &Host,
        facts: &Arc<FactsObject>,
        redactor: &Redactor,
        fleet: Option<Arc<FleetExports>>,
    ) -> Result<(JinjaValue, Vec<OpenPort>, Vec<DataItem>), Problems> {
        let mut base = self.context_for(inventory, host, fleet.is_some());
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
        let ports = match self.open_ports(&first_pass, redactor) {
            Ok(ports) => ports,
            Err(mut problems) => {
                for problem in &mut problems {
                    problem.message = format!("{} (host {})", problem.message, host.name);
                }
                return Err(Problems(problems));
            }
        };
        base.insert(
            "open_ports".into(),
            serde_yaml::to_value(&ports).unwrap_or(Value::Null),
        );
        let contributions = match self.contributions(&first_pass, redactor) {
            Ok(contributions) => contributions,
            Err(problems) => return Err(Problems(problems)),
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

    /// Every host's `exports:` entries, hosts in name order; a host's
    /// broken export is every host's problem (each may read the list).
    fn gather_exports(
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
        let mut hosts: Vec<&Host> = inventory.hosts.iter().collect();
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
    fn exports_of(
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
        for role in self.roles.roles.values() {
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
                if !self.item_applies(role, &spec.when, &key, &context, redactor, &mut problems) {
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
        if problems.is_empty() {
            Ok(entries)
        } else {
            Err(problems)
        }
    }

    /// The customer's checklist for `host` (`matrixctl onboard`): the
    /// roles' `checklist` entries that apply, rendered, and the ports.
    pub fn render_checklist(
        &self,
        inventory: &Inventory,
        host: &Host,
        redactor: &Redactor,
    ) -> Result<crate::checklist::Checklist, Problems> {
        let facts = FactsObject::new(HostFacts::default());
        let (context, ports, _) = self.full_context(inventory, host, &facts, redactor)?;
        // A served file's content is the one this host renders.
        let rendered = self.render_in(inventory, host, &context, redactor)?;
        let mut problems = Vec::new();
        let mut entries = Vec::new();
        for role in self.roles.roles.values() {
            if !matches!(
                self.condition(role, &role.manifest.when, "when", &context, redactor),
                Ok(true)
            ) {
                continue;
            }
            for (index, spec) in role.manifest.checklist.iter().enumerate() {
                let (entry, read_secret) = ReadSecrets::during(&context, || {
                    self.checklist_entry(role, index, spec, &context, &rendered.files, redactor)
                });
                // The checklist goes to the customer: no value of a secret,
                // however transformed.
                if read_secret {
                    problems.push(
                        Problem::new(format!(
                            "role `{}`: a checklist entry reads `secrets`; the checklist goes to the customer",
                            role.name
                        ))
                        .in_file(&role.path)
                        .at_key(format!("checklist[{index}]")),
                    );
                    continue;
                }
                match entry {
                    Ok(Some(entry)) => entries.push(entry),
                    Ok(None) => {}
                    Err(problem) => problems.push(problem),
                }
            }
        }
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        let ssh_port = context
            .get_attr("ssh_port")
            .ok()
            .and_then(|port| u16::try_from(port).ok())
            .filter(|port| *port > 0 && matches!(host.connection, Connection::Ssh(_)));
        Ok(crate::checklist::Checklist::new(
            host.name.as_str(),
            entries,
            &ports,
            ssh_port,
        ))
    }

    /// What `matrixctl check` verifies from outside for `host`: the roles'
    /// `probes` that apply, rendered against the host's files and ports.
    pub fn render_probes(
        &self,
        inventory: &Inventory,
        host: &Host,
        redactor: &Redactor,
    ) -> Result<crate::check::expect::HostExpectations, Problems> {
        use crate::check::expect::{Expectation, HostExpectations};
        let facts = FactsObject::new(HostFacts::default());
        let (context, ports, _) = self.full_context(inventory, host, &facts, redactor)?;
        let rendered = self.render_in(inventory, host, &context, redactor)?;
        let mut problems = Vec::new();
        let mut expectations = Vec::new();
        for role in self.roles.roles.values() {
            if !matches!(
                self.condition(role, &role.manifest.when, "when", &context, redactor),
                Ok(true)
            ) {
                continue;
            }
            for (index, spec) in role.manifest.probes.iter().enumerate() {
                let at = |field: &str| format!("probes[{index}].{field}");
                let text = |source: &str, field: &str| {
                    self.env
                        .render_str(source, context.clone())
                        .map(|text| text.trim().to_string())
                        .map_err(|error| {
                            manifest_template_problem(role, at(field), &error, redactor)
                        })
                };
                let expectation = (|| {
                    if let Some(when) = &spec.when
                        && !self.condition(role, when, &at("when"), &context, redactor)?
                    {
                        return Ok(None);
                    }
                    let wrong = || {
                        Problem::new(format!(
                            "role `{}`: a probe gives `served` with `file`, `registration` with `expect`, or `ports_on`",
                            role.name
                        ))
                        .in_file(&role.path)
                        .at_key(format!("probes[{index}]"))
                    };
                    match (
                        &spec.served,
                        &spec.file,
                        &spec.registration,
                        &spec.expect,
                        &spec.ports_on,
                    ) {
                        (Some(url), Some(file), None, None, None) => {
                            let path = text(file, "file")?;
                            // A file the host does not render, or one holding a secret, is not probed.
                            match rendered.files.get(&path).filter(|file| !file.sensitive) {
                                None => Ok(None),
                                Some(file) => Ok(Some(Expectation::Served {
                                    url: text(url, "served")?,
                                    path,
                                    content: file.content.clone(),
                                })),
                            }
                        }
                        (None, None, Some(base_url), Some(expect), None) => {
                            Ok(Some(Expectation::Registration {
                                base_url: text(base_url, "registration")?,
                                expect: text(expect, "expect")?,
                            }))
                        }
                        (None, None, None, None, Some(host_name)) => Ok(Some(Expectation::Ports {
                            host: text(host_name, "ports_on")?,
                            ports: ports.clone(),
                        })),
                        _ => Err(wrong()),
                    }
                })();
                match expectation {
                    Ok(Some(expectation)) => expectations.push(expectation),
                    Ok(None) => {}
                    Err(problem) => problems.push(problem),
                }
            }
        }
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        let server_name = context
            .get_attr("server_name")
            .ok()
            .and_then(|name| name.as_str().map(str::to_string))
            .unwrap_or_else(|| host.name.to_string());
        Ok(HostExpectations {
            host: host.name.to_string(),
            server_name,
            expectations,
            health: rendered.health,
        })
    }

    /// One `checklist` entry of `role`, rendered; `None` when its `when`
    /// is false or it renders to nothing.
    fn checklist_entry(
        &self,
        role: &Role,
        index: usize,
        spec: &crate::roles::ChecklistSpec,
        context: &JinjaValue,
        files: &DesiredState,
        redactor: &Redactor,
    ) -> Result<Option<crate::checklist::Entry>, Problem> {
        use crate::checklist::{Entry, Record, Served, Snippet};
        let at = |field: &str| format!("checklist[{index}].{field}");
        let applies = |when: &Option<String>, key: String| match when {
            None => Ok(true),
            Some(when) => self.condition(role, when, &key, context, redactor),
        };
        let text = |source: &str, key: String, scope: &JinjaValue| {
            self.env
                .render_str(source, scope.clone())
                .map(|text| text.trim().to_string())
                .map_err(|error| manifest_template_problem(role, key, &error, redactor))
        };
        if !applies(&spec.when, at("when"))? {
            return Ok(None);
        }
        let mut entry = Entry {
            section: spec.section.clone(),
            order: spec.order,
            role: role.name.clone(),
            text: match &spec.text {
                Some(source) => text(source, at("text"), context)?,
                None => String::new(),
            },
            ..Entry::default()
        };
        for (n, record) in spec.records.iter().enumerate() {
            let key = |field: &str| at(&format!("records[{n}].{field}"));
            if !applies(&record.when, key("when"))? {
                continue;
            }
            let items = match &record.each {
                None => vec![JinjaValue::UNDEFINED],
                Some(each) => self
                    .env
                    .compile_expression(each)
                    .and_then(|compiled| compiled.eval(context.clone()))
                    .and_then(|list| list.try_iter().map(Iterator::collect))
                    .map_err(|error| {
                        manifest_template_problem(role, key("each"), &error, redactor)
                    })?,
            };
            for item in items {
                let scope = minijinja::context! { item => item, ..context.clone() };
                entry.records.push(Record {
                    name: text(&record.name, key("name"), &scope)?,
                    kind: text(&record.kind, key("type"), &scope)?,
                    value: text(&record.value, key("value"), &scope)?,
                });
            }
        }
        for (n, served) in spec.served.iter().enumerate() {
            let key = |field: &str| at(&format!("served[{n}].{field}"));
            if !applies(&served.when, key("when"))? {
                continue;
            }
            let path = text(&served.file, key("file"), context)?;
            let Some(file) = files.get(&path) else {
                continue; // the host renders no such file
            };
            let content = String::from_utf8_lossy(&file.content).into_owned();
            let json = serde_json::from_str::<serde_json::Value>(&content)
                .map(|value| value.to_string())
                .unwrap_or_else(|_| content.trim().to_string());
            let url = text(&served.url, key("url"), context)?;
            // The path part, as web server configs match it.
            let location = url
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|at| rest[at..].to_string()))
                .unwrap_or_else(|| "/".into());
            entry.served.push(Served {
                url,
                location,
                path,
                content,
                json,
            });
        }
        let with_served = minijinja::context! {
            served => JinjaValue::from(Serde(&entry.served)),
            ..context.clone()
        };
        for (n, snippet) in spec.snippets.iter().enumerate() {
            let key = |field: &str| at(&format!("snippets[{n}].{field}"));
            if !applies(&snippet.when, key("when"))? {
                continue;
            }
            let body = self
                .env
                .get_template(&snippet.template)
                .and_then(|template| template.render(with_served.clone()))
                .map_err(|error| {
                    self.template_problem(role, &snippet.template, &error, redactor)
                })?;
            entry.snippets.push(Snippet {
                label: text(&snippet.label, key("label"), context)?,
                text: body.trim_end().to_string() + "\n",
            });
        }
        let empty = entry.text.is_empty()
            && entry.records.is_empty()
            && entry.served.is_empty()
            && entry.snippets.is_empty();
        Ok((!empty).then_some(entry))
    }

    /// Everything `host` wants, with what is known of the host itself
    /// (`facts`: nothing before it was observed).
    pub fn render_host(
        &self,
        inventory: &Inventory,
        host: &Host,
        facts: &HostFacts,
        redactor: &Redactor,
    ) -> Result<Rendered, Problems> {
        let facts = FactsObject::new(facts.clone());
        let (context, _, data) = self.full_context(inventory, host, &facts, redactor)?;
        let mut rendered = self.render_in(inventory, host, &context, redactor)?;
        rendered.data = data;
        rendered.read_facts = facts.was_read();
        rendered.asked_packages = facts.asked_packages();
        Ok(rendered)
    }

    /// A role's looks at the host's health (`health:`), for a host it
    /// applies to. Their verdicts are printed, so none may read a secret.
    fn render_health(
        &self,
        role: &Role,
        context: &JinjaValue,
        redactor: &Redactor,
    ) -> Result<Vec<crate::health::HealthProbe>, Problem> {
        let mut probes = Vec::new();
        for (index, spec) in role.manifest.health.iter().enumerate() {
            let at = |field: &str| format!("health[{index}].{field}");
            if let Some(when) = &spec.when
                && !self.condition(role, when, &at("when"), context, redactor)?
            {
                continue;
            }
            let (script, read_secret) = ReadSecrets::during(context, || {
                self.env.render_str(&spec.script, context.clone())
            });
            if read_secret {
                return Err(Problem::new(format!(
                    "role `{}`: a health look reads `secrets`; what it prints is shown in plans",
                    role.name
                ))
                .in_file(&role.path)
                .at_key(at("script")));
            }
            let script = script
                .map_err(|error| manifest_template_problem(role, at("script"), &error, redactor))?;
            probes.push(crate::health::HealthProbe {
                role: role.name.clone(),
                name: spec.name.clone(),
                script,
            });
        }
        Ok(probes)
    }

    /// `render_host` with the host's context already made.
    fn render_in(
        &self,
        inventory: &Inventory,
        host: &Host,
        context: &JinjaValue,
        redactor: &Redactor,
    ) -> Result<Rendered, Problems> {
        let context = context.clone();
        let host_secrets = SecretFinder::new(
            host_secrets(inventory, host)
                .into_values()
                .chain(host.secret_values.iter().cloned()),
        );
        let mut desired = DesiredState::new();
        let mut notes = Vec::new();
        let mut actions = BTreeMap::new();
        let mut problems = Vec::new();
        let mut system = Vec::new();
        let mut health = Vec::new();
        let system_managed = context
            .get_attr("system_managed")
            .is_ok_and(|managed| managed.is_true());
        for role in self.roles.roles.values() {
            match self.condition(role, &role.manifest.when, "when", &context, redactor) {
                Ok(true) => {}
                Ok(false) => {
                    // Its files, if any are on the host, go away: say what
                    // to run then.
                    match self.render_handlers(
                        role,
                        &role.manifest.removal_handlers,
                        "removal_handlers",
                        &context,
                        redactor,
                    ) {
                        Ok(removal_handlers) if !removal_handlers.is_empty() => {
                            actions.insert(
                                role.name.clone(),
                                RoleActions {
                                    removal_handlers,
                                    ..RoleActions::default()
                                },
                            );
                        }
                        Ok(_) => {}
                        Err(problem) => problems.push(problem),
                    }
                    continue;
                }
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            }
            match self.role_actions(role, &context, redactor) {
                Ok(role_actions) => {
                    actions.insert(role.name.clone(), role_actions);
                }
                Err(problem) => problems.push(problem),
            }
            for (index, note) in role.manifest.notes.iter().enumerate() {
                let (rendered, read_secret) =
                    ReadSecrets::during(&context, || self.env.render_str(note, context.clone()));
                if read_secret {
                    problems.push(
                        Problem::new(format!(
                            "role `{}`: a note reads `secrets`; notes are printed in plans",
                            role.name
                        ))
                        .in_file(&role.path)
                        .at_key(format!("notes[{index}]"))
                        .with_hint(Some(
                            "say where the secret is (a file on the host), never what it is"
                                .to_string(),
                        )),
                    );
                    continue;
                }
                match rendered {
                    Ok(text) if !text.trim().is_empty() => notes.push(text.trim().to_string()),
                    Ok(_) => {}
                    Err(error) => problems.push(manifest_template_problem(
                        role,
                        format!("notes[{index}]"),
                        &error,
                        redactor,
                    )),
                }
            }
            // No system item where matrixctl does not manage the system.
            if system_managed {
                match self.render_system(role, &context, redactor) {
                    Ok(items) => system.extend(items),
                    Err(problem) => problems.push(problem),
                }
            }
            match self.render_health(role, &context, redactor) {
                Ok(probes) => health.extend(probes),
                Err(problem) => problems.push(problem),
            }
            for index in 0..role.manifest.files.len() {
                if let Some(when) = &role.manifest.files[index].when {
                    let key = format!("files[{index}].when");
                    match self.condition(role, when, &key, &context, redactor) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(problem) => {
                            problems.push(problem);
                            continue;
                        }
                    }
                }
                match self.render_file(role, index, &context, &host_secrets, redactor) {
                    Ok(file) => {
                        if let Some(other) = desired.get(&file.path) {
                            problems.push(
                                Problem::new(format!(
                                    "roles `{}` and `{}` both render {}",
                                    other.role, role.name, file.path
                                ))
                                .in_file(&role.path)
                                .at_key(format!("files[{index}].dest")),
                            );
                        } else {
                            desired.insert(file.path.clone(), file);
                        }
                    }
                    Err(problem) => problems.push(problem),
                }
            }
        }
        // A role that filters traffic must keep matrixctl's way in open.
        for role in self.roles.roles.values() {
            let Some(guard) = &role.manifest.keeps_ssh_open else {
                continue;
            };
            if !matches!(
                self.condition(role, &role.manifest.when, "when", &context, redactor),
                Ok(true)
            ) {
                continue;
            }
            let ssh_port = match host_ssh_port(host, &guard.port_option) {
                Ok(port) => port,
                Err(reason) => {
                    problems.push(Problem::new(reason).with_hint(Some(format!(
                        "set `{}: PORT` for this host, the port its sshd listens on",
                        guard.port_option
                    ))));
                    continue;
                }
            };
            let rule = match self.env.render_str(&guard.rule, context.clone()) {
                Ok(rule) => rule,
                Err(error) => {
                    problems.push(manifest_template_problem(
                        role,
                        "keeps_ssh_open.rule".into(),
                        &error,
                        redactor,
                    ));
                    continue;
                }
            };
            let rule: Vec<&str> = rule.split_whitespace().collect();
            let kept = !rule.is_empty()
                && desired.values().any(|file| {
                    file.role == role.name
                        && String::from_utf8_lossy(&file.content).lines().any(|line| {
                            let words: Vec<&str> = line.split_whitespace().collect();
                            words
                                .windows(rule.len())
                                .any(|window| window == rule.as_slice())
                        })
                });
            if !kept {
                problems.push(
                    Problem::new(format!(
                        "the {} role's files do not accept tcp port {ssh_port}, which matrixctl connects through: applying them would lock everyone out",
                        role.name
                    ))
                    .with_hint(Some(format!(
                        "its files must keep a `{}` rule for the SSH port",
                        rule.join(" ")
                    ))),
                );
            }
        }
        // One item per thing on the host: the same one from two roles is
        // one, and two roles wanting it differently is a mistake.
        system.sort();
        // `dedup_by` hands the later item first: it is removed, and the
        // one kept notes the role that also wanted it.
        system.dedup_by(|later, kept| {
            let same = later.item == kept.item;
            if same {
                kept.also_for.push(later.role.clone());
            }
            same
        });
        for pair in system.windows(2) {
            if pair[0].item.key() == pair[1].item.key() {
                problems.push(Problem::new(format!(
                    "roles `{}` and `{}` both declare {}, differently",
                    pair[0].role,
                    pair[1].role,
                    pair[0].item.label()
                )));
            }
        }
        if problems.is_empty() {
            Ok(Rendered {
                files: desired,
                actions,
                notes,
                system,
                health,
                ..Rendered::default()
            })
        } else {
            for problem in &mut problems {
                problem.message = format!("{} (host {})", problem.message, host.name);
            }
            Err(Problems(problems))
        }
    }

    /// A role's validators and handlers, rendered for this host.
    fn role_actions(
        &self,
        role: &Role,
        context: &JinjaValue,
        redactor: &Redactor,
    ) -> Result<RoleActions, Problem> {
        let mut actions = RoleActions::default();
        for (index, validator) in role.manifest.validators.iter().enumerate() {
            let command = self.render_command(
                role,
                format!("validators[{index}]"),
                validator,
                context,
                redactor,
            )?;
            if !command.is_empty() {
                actions.validators.push(command);
            }
        }
        actions.handlers =
            self.render_handlers(role, &role.manifest.handlers, "handlers", context, redactor)?;
        for (name, expression) in &role.manifest.facts {
            let key = format!("facts.{name}");
            let (value, read_secret) = ReadSecrets::during(context, || {
                self.env
                    .compile_expression(expression)
                    .and_then(|expression| expression.eval(context))
            });
            let value = value
                .map_err(|error| manifest_template_problem(role, key.clone(), &error, redactor))?;
            let value = serde_json::to_value(&value).unwrap_or(serde_json::Value::Null);
            // The record is readable on the host and impact lines print.
            if read_secret || redactor.finds_secret_in(value.to_string().as_bytes()) {
                return Err(Problem::new(format!(
                    "role `{}`: fact `{name}` holds a secret; facts are stored in the host's record and shown in plans",
                    role.name
                ))
                .in_file(&role.path)
                .at_key(key));
            }
            actions.facts.insert(name.clone(), value);
        }
        actions.impacts = role.manifest.impacts.clone();
        let dormant = role
            .manifest
            .groups
            .iter()
            .map(|spec| ("group", &spec.name, &spec.when))
            .chain(
                role.manifest
                    .users
                    .iter()
                    .map(|spec| ("user", &spec.name, &spec.when)),
            );
        // An account is dormant here when the system gate is shut or its
        // own `when` is false; what would make it is both, as written.
        let system_managed = context
            .get_attr("system_managed")
            .is_ok_and(|managed| managed.is_true());
        let gate = self
            .roles
            .system_gate()
            .map(|(_, gate)| gate.trim().to_string());
        for (kind, name, when) in dormant {
            let own_false = match when {
                Some(when) => matches!(
                    self.condition(role, when, "when", context, redactor),
                    Ok(false)
                ),
                None => false,
            };
            let mut needs = Vec::new();
            if !system_managed && let Some(gate) = &gate {
                needs.push(gate.clone());
            }
            if own_false && let Some(when) = when {
                needs.push(when.trim().to_string());
            }
            // Rendering a name that does not render is the item's own
            // error, reported where the item applies; here it is skipped.
            let (false, Ok(name)) = (needs.is_empty(), self.env.render_str(name, context.clone()))
            else {
                continue;
            };
            actions
                .dormant_accounts
                .push((format!("{kind} {name}"), needs.join(" and ")));
        }
        for (index, refusal) in role.manifest.refusals.iter().enumerate() {
            let key = format!("refusals[{index}].unless");
            if !self.condition(role, &refusal.unless, &key, context, redactor)? {
                actions.refusals.push(refusal.text.clone());
            }
        }
        Ok(actions)
    }

    /// The role's packages, groups, users, directories and services for
    /// this host, each field rendered and checked.
    fn render_system(
        &self,
        role: &Role,
        context: &JinjaValue,
        redactor: &Redactor,
    ) -> Result<Vec<crate::system::Wanted>, Problem> {
        use crate::system::Item;
        let manifest = &role.manifest;
        let render = |key: String, template: &str| {
            self.render_command(role, key, template, context, redactor)
        };
        let applies = |key: String, when: &Option<String>| match when {
            Some(when) => self.condition(role, when, &key, context, redactor),
            None => Ok(true),
        };
        let refuse = |key: String, value: &str, expected: &str| {
            Problem::new(format!("role `{}`: `{value}` is not {expected}", role.name))
                .in_file(&role.path)
                .at_key(key)
        };
        let account = |key: String, template: &str| -> Result<String, Problem> {
            let name = render(key.clone(), template)?;
            if is_account_name(&name) {
                Ok(name)
            } else {
                Err(refuse(
                    key,
                    &name,
                    "a user or group name (a-z, 0-9, _ and -)",
                ))
            }
        };
        let path = |key: String, template: &str| -> Result<String, Problem> {
            let path = render(key.clone(), template)?;
            // No spaces either: the host program reports items by words.
            let normal = check_normal_path(&path).is_ok() && !path.contains(char::is_whitespace);
            if normal {
                Ok(path)
            } else {
                Err(refuse(
                    key,
                    &path,
                    "an absolute, normalised path without spaces",
                ))
            }
        };
        let mut items = Vec::new();
        for (index, spec) in manifest.repositories.iter().enumerate() {
            let key = format!("repositories[{index}]");
            if !applies(format!("{key}.when"), &spec.when)? {
                continue;
            }
            let word = |field: &str, template: &str, extra: &[u8]| -> Result<String, Problem> {
                let text = render(format!("{key}.{field}"), template)?;
                let valid = !text.is_empty()
                    && text.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || b"._-".contains(&b) || extra.contains(&b)
                    });
                if valid {
                    Ok(text)
                } else {
                    Err(refuse(
                        format!("{key}.{field}"),
                        &text,
                        "one word of letters, digits and . _ -",
                    ))
                }
            };
            let name = word("name", &spec.name, b"")?;
            let url = render(format!("{key}.url"), &spec.url)?;
            let url_ok = (url.starts_with("https://") || url.starts_with("http://"))
                && !url.chars().any(|c| c.is_whitespace() || c.is_control());
            if !url_ok {
                return Err(refuse(
                    format!("{key}.url"),
                    &url,
                    "an http:// or https:// URL",
                ));
            }
            // Empty: the host's own release, filled in by the plan.
            let suite = if render(format!("{key}.suite"), &spec.suite)?.is_empty() {
                String::new()
            } else {
                word("suite", &spec.suite, b"/")?
            };
            let components = word("components", &spec.components, b" ")?;
            let armored = self
                .env
                .render_str(&spec.key, context.clone())
                .map_err(|error| {
                    manifest_template_problem(role, format!("{key}.key"), &error, redactor)
                })?;
            let pinned = crate::openpgp::normalise(&render(
                format!("{key}.fingerprint"),
                &spec.fingerprint,
            )?);
            let found = crate::openpgp::fingerprint(&armored).map_err(|reason| {
                Problem::new(format!(
                    "role `{}`: repository `{name}`: its key: {reason}",
                    role.name
                ))
                .in_file(&role.path)
                .at_key(format!("{key}.key"))
            })?;
            if found != pinned {
                return Err(Problem::new(format!(
                    "role `{}`: repository `{name}`: the key's fingerprint is {found}, not the pinned {pinned}",
                    role.name
                ))
                .in_file(&role.path)
                .at_key(format!("{key}.fingerprint"))
                .with_hint(Some(
                    "check the key with its publisher before pinning a new fingerprint".into(),
                )));
            }
            let sources =
                crate::system::repository_sources(&role.name, &name, &url, &suite, &components);
            let armored = if armored.ends_with('\n') {
                armored
            } else {
                format!("{armored}\n")
            };
            items.push(Item::Repository {
                name,
                url,
                suite,
                components,
                fingerprint: found,
                key: armored,
                sources,
            });
        }
        for (index, spec) in manifest.packages.iter().enumerate() {
            let key = format!("packages[{index}]");
            if !applies(format!("{key}.when"), &spec.when)? {
                continue;
            }
            let name = render(format!("{key}.name"), &spec.name)?;
            if !is_package_name(&name) {
                return Err(refuse(
                    format!("{key}.name"),
                    &name,
                    "a Debian package name",
                ));
            }
            let version = match &spec.version {
                Some(template) => {
                    let version = render(format!("{key}.version"), template)?;
                    let valid = version
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".+~:-".contains(&b));
                    match (version.is_empty(), valid) {
                        (true, _) => None,
                        (false, true) => Some(version),
                        (false, false) => {
                            return Err(refuse(
                                format!("{key}.version"),
                                &version,
                                "a Debian version",
                            ));
                        }
                    }
                }
                None => None,
            };
            items.push(Item::Package { name, version });
        }
        for (index, spec) in manifest.groups.iter().enumerate() {
            let key = format!("groups[{index}]");
            if applies(format!("{key}.when"), &spec.when)? {
                items.push(Item::Group {
                    name: account(format!("{key}.name"), &spec.name)?,
                });
            }
        }
        for (index, spec) in manifest.users.iter().enumerate() {
            let key = format!("users[{index}]");
            if applies(format!("{key}.when"), &spec.when)? {
                items.push(Item::User {
                    name: account(format!("{key}.name"), &spec.name)?,
                    group: account(format!("{key}.group"), &spec.group)?,
                    home: path(format!("{key}.home"), &spec.home)?,
                    login: spec.login,
                });
            }
        }
        for (index, spec) in manifest.directories.iter().enumerate() {
            let key = format!("directories[{index}]");
            if applies(format!("{key}.when"), &spec.when)? {
                items.push(Item::Directory {
                    path: path(format!("{key}.path"), &spec.path)?,
                    owner: account(format!("{key}.owner"), &spec.owner)?,
                    group: account(format!("{key}.group"), &spec.group)?,
                    mode: spec.mode.0,
                });
            }
        }
        for (index, spec) in manifest.venvs.iter().enumerate() {
            let key = format!("venvs[{index}]");
            if !applies(format!("{key}.when"), &spec.when)? {
                continue;
            }
            let mut requirements = Vec::new();
            for (number, template) in spec.requirements.iter().enumerate() {
                let key = format!("{key}.requirements[{number}]");
                let requirement = render(key.clone(), template)?;
                // A requirement only some settings need renders empty.
                if requirement.is_empty() {
                    continue;
                }
                let (name, version) = requirement
                    .split_once("==")
                    .unwrap_or((requirement.as_str(), "0"));
                // `name` or `name[extra,extra]`.
                let (name, extras) = match name.split_once('[') {
                    Some((name, extras)) => (name, extras.strip_suffix(']').unwrap_or("[")),
                    None => (name, ""),
                };
                let name_ok = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                    && extras
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-,".contains(&b));
                let version_ok = !version.is_empty()
                    && version
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".+!-".contains(&b));
                if !name_ok || !version_ok {
                    return Err(refuse(
                        key,
                        &requirement,
                        "a requirement like `name==1.2.3`",
                    ));
                }
                requirements.push(requirement);
            }
            let optional =
                |key: String, template: &Option<String>| -> Result<Option<String>, Problem> {
                    let Some(template) = template else {
                        return Ok(None);
                    };
                    let text = render(key.clone(), template)?;
                    if text.is_empty() {
                        return Ok(None);
                    }
                    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                        return Err(refuse(key, &text, "a URL or path without spaces"));
                    }
                    Ok(Some(text))
                };
            items.push(Item::Venv {
                path: path(format!("{key}.path"), &spec.path)?,
                requirements,
                index_url: optional(format!("{key}.index_url"), &spec.index_url)?,
                find_links: optional(format!("{key}.find_links"), &spec.find_links)?,
            });
        }
        for (index, spec) in manifest.services.iter().enumerate() {
            let key = format!("services[{index}]");
            if !applies(format!("{key}.when"), &spec.when)? {
                continue;
            }
            let name = render(format!("{key}.name"), &spec.name)?;
            let valid = !name.is_empty()
                && !name.starts_with('-')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"@._-".contains(&b));
            if !valid {
                return Err(refuse(format!("{key}.name"), &name, "a systemd unit name"));
            }
            items.push(Item::Service {
                name,
                enabled: spec.enabled,
                running: spec.running,
            });
        }
        for (index, spec) in manifest.databases.iter().enumerate() {
            let key = format!("databases[{index}]");
            if !applies(format!("{key}.when"), &spec.when)? {
                continue;
            }
            // Quoted as identifiers in SQL, and reported as words.
            let identifier = |field: &str, template: &str| -> Result<String, Problem> {
                let text = render(format!("{key}.{field}"), template)?;
                if crate::system::is_sql_identifier(&text) {
                    Ok(text)
                } else {
                    Err(refuse(
                        format!("{key}.{field}"),
                        &text,
                        "a PostgreSQL name (letters, digits, _ and -, at most 63)",
                    ))
                }
            };
            let name = identifier("name", &spec.name)?;
            let owner = identifier("owner", &spec.owner)?;
            let password = render(format!("{key}.password"), &spec.password)?;
            if password.is_empty() || password.chars().any(char::is_control) {
                return Err(Problem::new(format!(
                    "role `{}`: database `{name}`: the password is empty or holds a control character",
                    role.name
                ))
                .in_file(&role.path)
                .at_key(format!("{key}.password")));
            }
            items.push(Item::Database {
                name,
                owner,
                password,
            });
        }
        for (index, spec) in manifest.generated.iter().enumerate() {
            let key = format!("generated[{index}]");
            if !applies(format!("{key}.when"), &spec.when)? {
                continue;
            }
            let what = render(format!("{key}.what"), &spec.what)?;
            let plain = !what.is_empty()
                && what
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || " _.-".contains(c));
            if !plain {
                return Err(refuse(
                    format!("{key}.what"),
                    &what,
                    "a few plain words (letters, digits, spaces)",
                ));
            }
            let command = render(format!("{key}.command"), &spec.command)?;
            if command.is_empty() {
                return Err(refuse(format!("{key}.command"), &command, "a command"));
            }
            items.push(Item::Generated {
                what,
                path: path(format!("{key}.path"), &spec.path)?,
                command,
                owner: account(format!("{key}.owner"), &spec.owner)?,
                group: account(format!("{key}.group"), &spec.group)?,
                mode: spec.mode.0,
            });
        }
        for (index, spec) in manifest.certificates.iter().enumerate() {
            let key = format!("certificates[{index}]");
            if !applies(format!("{key}.when"), &spec.when)? {
                continue;
            }
            let name = render(format!("{key}.name"), &spec.name)?;
            if name.parse::<crate::inventory::schema::DnsName>().is_err() {
                return Err(refuse(format!("{key}.name"), &name, "a DNS name"));
            }
            let command = render(format!("{key}.command"), &spec.command)?;
            if command.is_empty() {
                return Err(refuse(format!("{key}.command"), &command, "a command"));
            }
            items.push(Item::Certificate {
                path: path(format!("{key}.path"), &spec.path)?,
                name,
                command,
            });
        }
        Ok(items
            .into_iter()
            .map(|item| crate::system::Wanted {
                item,
                role: role.name.clone(),
                also_for: Vec::new(),
            })
            .collect())
    }

    /// A command template of a role, rendered for this host and trimmed;
    /// an error names the role file and the key.
    fn render_command(
        &self,
        role: &Role,
        key: String,
        template: &str,
        context: &JinjaValue,
        redactor: &Redactor,
    ) -> Result<String, Problem> {
        self.env
            .render_str(template, context.clone())
            .map(|command| command.trim().to_string())
            .map_err(|error| manifest_template_problem(role, key, &error, redactor))
    }

    /// Renders handler specs (`handlers` or `removal_handlers` at `field`).
    fn render_handlers(
        &self,
        role: &Role,
        specs: &[crate::roles::HandlerSpec],
        field: &str,
        context: &JinjaValue,
        redactor: &Redactor,
    ) -> Result<Vec<Handler>, Problem> {
        let render = |key: String, template: &str| {
            self.render_command(role, key, template, context, redactor)
        };
        let mut handlers = Vec::new();
        for (index, handler) in specs.iter().enumerate() {
            let command = render(format!("{field}[{index}].command"), &handler.command)?;
            if command.is_empty() {
                continue;
            }
            let armed = match (&handler.save, &handler.revert) {
                (Some(save), Some(revert)) => {
                    let save = render(format!("{field}[{index}].save"), save)?;
                    let revert = render(format!("{field}[{index}].revert"), revert)?;
                    let seconds_text = match &handler.confirm_within {
                        Some(template) => {
                            render(format!("{field}[{index}].confirm_within"), template)?
                        }
                        None => "30".to_string(),
                    };
                    let seconds = seconds_text.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(|| {
                        Problem::new(format!(
                            "role `{}`: confirm_within must be a number of seconds, got `{seconds_text}`",
                            role.name
                        ))
                        .in_file(&role.path)
                        .at_key(format!("{field}[{index}].confirm_within"))
                    })?;
                    (!save.is_empty() && !revert.is_empty()).then_some(ArmedRevert {
                        save,
                        revert,
                        seconds,
                    })
                }
                _ => None,
            };
            handlers.push(Handler {
                order: handler.order,
                name: handler.name.clone(),
                command,
                armed,
                impact: handler.impact.clone(),
            });
        }
        Ok(handlers)
    }

    /// Whether a role's item at `key` applies: its `when`, if any, is
    /// true. A broken `when` is a problem, and the item does not apply.
    fn item_applies(
        &self,
        role: &Role,
        when: &Option<String>,
        key: &str,
        context: &JinjaValue,
        redactor: &Redactor,
        problems: &mut Vec<Problem>,
    ) -> bool {
        let Some(when) = when else {
            return true;
        };
        match self.condition(role, when, &format!("{key}.when"), context, redactor) {
            Ok(applies) => applies,
            Err(problem) => {
                problems.push(problem);
                false
            }
        }
    }

    /// What every applying role keeps (its `data:`), rendered and checked:
    /// a database name, or an absolute path.
    fn host_data(
        &self,
        context: &JinjaValue,
        redactor: &Redactor,
    ) -> Result<Vec<DataItem>, Vec<Problem>> {
        use crate::roles::DataKind;
        let mut items = Vec::new();
        let mut problems = Vec::new();
        for role in self.roles.roles.values() {
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
                    DataKind::Postgresql => crate::system::is_sql_identifier(&location),
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
    fn contributions(
        &self,
        context: &JinjaValue,
        redactor: &Redactor,
    ) -> Result<BTreeMap<String, Vec<String>>, Vec<Problem>> {
        let mut lists: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut problems = Vec::new();
        for role in self.roles.roles.values() {
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
    fn open_ports(
        &self,
        context: &JinjaValue,
        redactor: &Redactor,
    ) -> Result<Vec<OpenPort>, Vec<Problem>> {
        let mut ports: Vec<OpenPort> = Vec::new();
        let mut problems = Vec::new();
        for role in self.roles.roles.values() {
            match self.condition(role, &role.manifest.when, "when", context, redactor) {
                Ok(true) => {}
                Ok(false) | Err(_) => continue, // render_host reports the error
            }
            for (index, spec) in role.manifest.ports.iter().enumerate() {
                let key = format!("ports[{index}]");
                if !self.item_applies(role, &spec.when, &key, context, redactor, &mut problems) {
                    continue;
                }
                let text = match &spec.port {
                    Value::Number(number) => number.to_string(),
                    Value::String(template) => match self.env.render_str(template, context.clone())
                    {
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
                    },
                    _ => String::new(),
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
        ports.sort_by(|a, b| {
            (a.proto, a.start, a.end, &a.role).cmp(&(b.proto, b.start, b.end, &b.role))
        });
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
        if problems.is_empty() {
            Ok(ports)
        } else {
            Err(problems)
        }
    }

    /// Evaluates a `when` expression (the role's, at `key`, or a file's).
    fn condition(
        &self,
        role: &Role,
        expression: &str,
        key: &str,
        context: &JinjaValue,
        redactor: &Redactor,
    ) -> Result<bool, Problem> {
        let value = self
            .env
            .compile_expression(expression)
            .and_then(|compiled| compiled.eval(context.clone()));
        let problem = |reason: String| {
            Problem::new(format!(
                "role `{}`: cannot evaluate `when: {expression}`: {reason}",
                role.name
            ))
            .in_file(&role.path)
            .at_key(key)
        };
        match value {
            // Strictly a boolean: a string like "false" would otherwise be true.
            Ok(value) if value.kind() == minijinja::value::ValueKind::Bool => Ok(value.is_true()),
            Ok(value) if value.is_undefined() => {
                Err(problem("it uses an undefined variable".into())
                    .with_hint(Some("declare the variable in the role's `defaults`".into())))
            }
            Ok(value) => Err(problem(format!(
                "expected true or false, got {}",
                value.kind()
            ))),
            Err(error) => Err(problem(redactor.redact(&jinja_reason(&error)).into_owned())),
        }
    }

    fn render_file(
        &self,
        role: &Role,
        index: usize,
        context: &JinjaValue,
        host_secrets: &SecretFinder,
        redactor: &Redactor,
    ) -> Result<DesiredFile, Problem> {
        let spec = &role.manifest.files[index];
        let field_problem = |field: &str, message: String| {
            Problem::new(format!("role `{}`: {message}", role.name))
                .in_file(&role.path)
                .at_key(format!("files[{index}].{field}"))
        };
        let render_field = |field: &str, source: &str| {
            self.env
                .render_str(source, context.clone())
                .map_err(|error| {
                    field_problem(field, redactor.redact(&jinja_reason(&error)).into_owned())
                })
        };
        let path = render_field("dest", &spec.dest)?;
        check_dest(&path, &self.state_dir_of(context))
            .map_err(|reason| field_problem("dest", format!("destination `{path}` {reason}")))?;
        let owner = match &spec.owner {
            Some(owner) => Some(render_field("owner", owner)?),
            None => None,
        };
        let group = match &spec.group {
            Some(group) => Some(render_field("group", group)?),
            None => None,
        };
        for (field, name) in [("owner", &owner), ("group", &group)] {
            if let Some(name) = name
                && !is_account_name(name)
            {
                return Err(field_problem(
                    field,
                    format!("`{name}` is not a valid user or group name"),
                ));
            }
        }
        let template = self.env.get_template(&spec.template).map_err(|error| {
            if error.kind() == minijinja::ErrorKind::TemplateNotFound {
                let mut places: Vec<String> = self
                    .roles
                    .template_dirs
                    .iter()
                    .map(|dir| dir.display().to_string())
                    .collect();
                places.push("the built-in templates".to_string());
                field_problem(
                    "template",
                    format!("template `{}` does not exist", spec.template),
                )
                .with_hint(Some(format!(
                    "templates are looked up in {}",
                    places.join(", then ")
                )))
            } else {
                self.template_problem(role, &spec.template, &error, redactor)
            }
        })?;
        // A secret transformed (upper-cased, split, reversed) is no longer
        // found by its bytes: that the template read one is what counts.
        let (content, read_secret) =
            ReadSecrets::during(context, || template.render(context.clone()));
        let content = content
            .map_err(|error| self.template_problem(role, &spec.template, &error, redactor))?
            .into_bytes();
        let sensitive = spec.sensitive || read_secret || host_secrets.finds_secret_in(&content);
        if sensitive && spec.mode.0 & 0o007 != 0 {
            let holds = if read_secret {
                "is made from secrets (its template reads `secrets`)"
            } else {
                "holds secrets"
            };
            return Err(field_problem(
                "mode",
                format!(
                    "{path} {holds} but mode {:04o} lets every user read it",
                    spec.mode.0
                ),
            )
            .with_hint(Some(
                "use a mode without permissions for others, like \"0640\"".into(),
            )));
        }
        Ok(DesiredFile {
            path,
            content,
            mode: spec.mode.0,
            owner,
            group,
            role: role.name.clone(),
            sensitive,
        })
    }

    /// The host's state_dir, from the template context.
    fn state_dir_of(&self, context: &JinjaValue) -> String {
        context
            .get_attr("state_dir")
            .ok()
            .and_then(|value| value.as_str().map(str::to_string))
            .unwrap_or_else(|| "/var/lib/matrixctl".to_string())
    }

    fn template_problem(
        &self,
        role: &Role,
        template: &str,
        error: &minijinja::Error,
        redactor: &Redactor,
    ) -> Problem {
        let name = error.name().unwrap_or(template);
        let file = self
            .roles
            .template_dirs
            .iter()
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
            .unwrap_or_else(|| Path::new("templates").join(name));
        let mut problem = Problem::new(format!(
            "role `{}`: {}",
            role.name,
            redactor.redact(&jinja_reason(error))
        ))
        .in_file(&file)
        .at_line(error.line());
        if let (Some(source), Some(line)) = (error.template_source(), error.line()) {
            let excerpt: Vec<String> = source
                .lines()
                .enumerate()
                .skip(line.saturating_sub(3))
                .take_while(|(index, _)| *index < line)
                .map(|(index, text)| format!("{:>4} {text}", index + 1))
                .collect();
            problem = problem.with_detail(redactor.redact(&excerpt.join("\n")).into_owned());
        }
        problem
    }
}

/// A host's secrets as templates see them (`secrets.NAME`): a map that
/// remembers being read, so that whatever a template does with a value
/// (upper-cases, reverses, splits it), matrixctl knows the result came
/// from a secret. Read and reset around each file, note and fact; a host's
/// templates render on one thread.
#[derive(Debug)]
struct ReadSecrets {
    values: BTreeMap<String, String>,
    /// Shared with what else counts as reading a secret (`fleet`).
    read: Arc<std::sync::atomic::AtomicBool>,
}

impl ReadSecrets {
    fn new(values: BTreeMap<String, String>) -> ReadSecrets {
        ReadSecrets {
            values,
            read: Arc::default(),
        }
    }

    /// What `work` gives, and whether it read a secret of `context` (a
    /// context without the secrets object reads none).
    fn during<T>(context: &JinjaValue, work: impl FnOnce() -> T) -> (T, bool) {
        let secrets = context
            .get_attr("secrets")
            .ok()
            .and_then(|secrets| secrets.downcast_object::<ReadSecrets>());
        let take = |secrets: &ReadSecrets| {
            secrets
                .read
                .swap(false, std::sync::atomic::Ordering::Relaxed)
        };
        if let Some(secrets) = &secrets {
            take(secrets);
        }
        let result = work();
        (result, secrets.is_some_and(|secrets| take(&secrets)))
    }

    fn mark_read(&self) {
        self.read.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl minijinja::value::Object for ReadSecrets {
    fn get_value(self: &std::sync::Arc<Self>, key: &JinjaValue) -> Option<JinjaValue> {
        self.mark_read();
        self.values
            .get(key.as_str()?)
            .map(|value| JinjaValue::from(value.as_str()))
    }

    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        self.mark_read();
        minijinja::value::Enumerator::Values(
            self.values
                .keys()
                .map(|name| JinjaValue::from(name.as_str()))
                .collect(),
        )
    }
}

/// `ssh_public_keys.NAME`: the public half of the SSH key derived from
/// secret NAME (`secrets.NAME | ssh_private_key`). Reading it reads no
/// secret: a note or another host's file may hold it.
#[derive(Debug)]
struct SshPublicKeys(BTreeMap<String, String>);

impl minijinja::value::Object for SshPublicKeys {
    fn get_value(self: &std::sync::Arc<Self>, key: &JinjaValue) -> Option<JinjaValue> {
        self.0
            .get(key.as_str()?)
            .map(|secret| JinjaValue::from(crate::sshkey::public_key(secret)))
    }
}

/// `a | merge(b)`: the keys of both maps, b's value winning, sorted by key.
fn merge_maps(left: JinjaValue, right: JinjaValue) -> Result<JinjaValue, minijinja::Error> {
    let mut merged = BTreeMap::new();
    for map in [&left, &right] {
        if map.kind() != minijinja::value::ValueKind::Map {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("merge needs two maps, got {}", map.kind()),
            ));
        }
        for key in map.try_iter()? {
            let value = map.get_item(&key)?;
            merged.insert(key, value);
        }
    }
    Ok(JinjaValue::from(merged))
}

/// minijinja's error without its own location suffix (we print the location).
/// A template in a role's manifest (a note, a command, a port, a
/// contribution) that failed to render: the manifest and the key, and the
/// reason with every known secret removed.
fn manifest_template_problem(
    role: &Role,
    key: String,
    error: &minijinja::Error,
    redactor: &Redactor,
) -> Problem {
    Problem::new(format!(
        "role `{}`: {}",
        role.name,
        redactor.redact(&jinja_reason(error))
    ))
    .in_file(&role.path)
    .at_key(key)
}

fn jinja_reason(error: &minijinja::Error) -> String {
    let kind = match error.kind() {
        minijinja::ErrorKind::OutOfFuel => format!(
            "the template went past matrixctl's budget of {} Mi steps and bytes allocated \
             (a loop that does not end, or a value that grows without bound)",
            TEMPLATE_FUEL >> 20
        ),
        kind => kind.to_string(),
    };
    match error.detail() {
        Some(detail) => format!("{kind}: {detail}"),
        None => kind,
    }
}

/// `{{ size | bytes }}`: a size (`50M`, or a number of bytes) as a number
/// of bytes, for formats that spell sizes otherwise (web servers).
fn size_in_bytes(value: minijinja::Value) -> Result<u64, minijinja::Error> {
    let text = value.to_string();
    text.parse::<crate::inventory::schema::Size>()
        .map(|size| size.bytes)
        .map_err(|reason| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, reason))
}

/// The secrets of one host: derived from the master key unless overridden.
pub fn host_secrets(inventory: &Inventory, host: &Host) -> BTreeMap<SecretName, String> {
    inventory
        .secret_names
        .iter()
        .map(|name| {
            let value = match host.vars.secrets.get(name) {
                Some(value) => value.0.clone(),
                None => {
                    let generation = host.vars.secret_generation.get(name).copied().unwrap_or(0);
                    inventory
                        .master_key
                        .derive(host.name.as_str(), name, generation)
                }
            };
            (name.clone(), value)
        })
        .collect()
}

/// Every secret value any output could contain, for the whole inventory.
pub fn redactor_for(inventory: &Inventory) -> Redactor {
    let mut values = vec![inventory.master_key.as_text()];
    for host in &inventory.hosts {
        values.extend(inventory.master_key.all_generations(
            host.name.as_str(),
            &inventory.secret_names,
            &host.vars.secret_generation,
        ));
        values.extend(host.secret_values.iter().cloned());
    }
    Redactor::new(values)
}

/// The SSH port a traffic-filtering role keeps open: its `port_option`
/// when the operator sets one, else the port matrixctl really reaches the host's
/// sshd on (the effective one, from `ssh:` or the ssh config; 22 for a
/// local host). Through a proxy that port is unknown.
/// The proxy the operator's ssh config puts in front of `target`. A
/// target whose `ssh:` names both user and port was not resolved through
/// `ssh -G` (nothing left to fill in), but its config may still send the
/// connection through a ProxyJump or ProxyCommand: asked here, only for
/// hosts whose firewall must keep SSH open.
fn proxy_of(target: &crate::inventory::SshTarget, host: &Host) -> Result<Option<String>, String> {
    if target.proxy.is_some() || !(target.user_given && target.port_given) {
        return Ok(target.proxy.clone());
    }
    let mut resolved = target.clone();
    crate::transport::ssh::resolve(&mut resolved, &host.vars.ssh_options)?;
    Ok(resolved.proxy)
}

fn host_ssh_port(host: &Host, port_option: &str) -> Result<u16, String> {
    let named = host
        .merged
        .get(port_option)
        .and_then(Value::as_u64)
        .and_then(|port| u16::try_from(port).ok())
        .filter(|port| *port > 0);
    if let Some(port) = named {
        return Ok(port);
    }
    match &host.connection {
        crate::inventory::Connection::Ssh(target) => match proxy_of(target, host)? {
            Some(proxy) => Err(format!(
                "matrixctl reaches {} through a proxy (ssh config: {proxy}), so the port its sshd listens on is unknown, and the firewall must keep it open (host {})",
                target.host, host.name
            )),
            None => Ok(target.port.0),
        },
        crate::inventory::Connection::Local => Ok(22),
    }
}

/// `443` or `49152-49573`, each port from 1 to 65535, start ≤ end.
fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let port = |part: &str| part.trim().parse::<u16>().ok().filter(|port| *port > 0);
    match text.split_once('-') {
        Some((start, end)) => {
            let (start, end) = (port(start)?, port(end)?);
            (start <= end).then_some((start, end))
        }
        None => port(text).map(|port| (port, port)),
    }
}

fn check_dest(path: &str, state_dir: &str) -> Result<(), &'static str> {
    check_normal_path(path)?;
    if path
        .strip_prefix(state_dir)
        .is_some_and(|rest| rest.starts_with('/'))
        || path.ends_with(".matrixctl-tmp")
        || path
            .split('/')
            .any(|part| part == crate::transport::program::STAGING_DIR)
    {
        return Err("is reserved for matrixctl's own record and staged files");
    }
    Ok(())
}

/// An absolute, normalised path naming a file or directory (no trailing
/// `/`, `//`, `.`, `..` or control characters).
fn check_normal_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must be an absolute path");
    }
    if path.ends_with('/') {
        return Err("must name a file, not a directory");
    }
    if path.chars().any(|c| c.is_control()) {
        return Err("must not contain control characters");
    }
    if path
        .split('/')
        .skip(1)
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err("must be a normalised path (no `//`, `.` or `..`)");
    }
    Ok(())
}

/// A Debian package name: lowercase letters, digits and + - . (at least
/// two, starting with a letter or digit).
fn is_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

fn is_account_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name.len() <= 32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_must_be_plain_absolute_paths() {
        assert!(check_dest("/etc/homeserver/conf.d/a.yaml", "/var/lib/matrixctl").is_ok());
        for bad in [
            "etc/a",
            "/etc/",
            "/etc/../a",
            "/etc//a",
            "/etc/./a",
            "/etc/a\nb",
        ] {
            assert!(check_dest(bad, "/var/lib/matrixctl").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn account_names_are_shell_safe() {
        assert!(is_account_name("matrix-homeserver"));
        assert!(is_account_name("root"));
        for bad in ["", "Root", "a b", "$(x)", "-a", "1abc"] {
            assert!(!is_account_name(bad), "{bad}");
        }
    }
}
