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

mod context;
mod files;
pub(crate) mod machine;
mod outside;
mod system;

/// One file as the inventory says it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DesiredFile {
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
pub(crate) type DesiredState = BTreeMap<String, DesiredFile>;

/// A role's checks and handlers for one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RoleActions {
    pub validators: Vec<String>,
    pub handlers: Vec<Handler>,
    /// For a role that no longer applies: what to run once its files are
    /// removed (stop its service, or reload the server that included them).
    pub removal_handlers: Vec<Handler>,
    /// For a role that applies: what its `removal_handlers` would run. A
    /// machine's record keeps them for its customers' roles, so a customer
    /// taken out of the inventory still has its services stopped.
    pub on_removal: Vec<Handler>,
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
pub(crate) struct Handler {
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
pub(crate) struct ArmedRevert {
    pub save: String,
    pub revert: String,
    pub seconds: u32,
}

/// Something a role that applies keeps on the host (see
/// `Manifest::data`), rendered: what a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub(crate) struct DataItem {
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
pub(crate) struct Rendered {
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

impl Rendered {
    /// The files without owners and groups: they keep whoever writes them
    /// (see `commands::prepare`, for a host that is a directory here when
    /// matrixctl is not root, which could not give them to anyone else).
    pub(crate) fn without_owners(mut self) -> Rendered {
        for file in self.files.values_mut() {
            file.owner = None;
            file.group = None;
        }
        self
    }
}

/// A task rendered for one host: what runs there, and its stdin.
pub(crate) struct RenderedTask {
    pub script: String,
    pub input: String,
}

/// The template environment over built-in and `--roles` templates.
pub(crate) struct Renderer<'a> {
    env: Environment<'static>,
    roles: &'a RoleSet,
    /// What the inventory's hosts export (`fleet`), gathered on the first
    /// render: a renderer serves one inventory.
    fleet: std::sync::OnceLock<Result<Arc<FleetExports>, Vec<Problem>>>,
    /// The open ports of each machine shared by several customers,
    /// gathered on the first render that needs them.
    machine_ports: std::sync::OnceLock<Result<Arc<context::MachinePorts>, Vec<Problem>>>,
    /// The roles' `status:` looks are rendered with their `health:` ones
    /// (for `matrixctl status`).
    status_looks: bool,
}

/// The fuel of one render (minijinja's units: an instruction, or a byte
/// allocated): 16 MiB of output at most, and as many steps.
pub(crate) const TEMPLATE_FUEL: u64 = 16 << 20;

impl<'a> Renderer<'a> {
    pub(crate) fn new(roles: &'a RoleSet) -> Renderer<'a> {
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
        // A derived secret (hex) as the unpadded base64 of its bytes: the
        // seed of an ed25519 key in the Matrix signing key format.
        env.add_filter("hex_to_base64", hex_to_base64);
        env.add_filter("ulid", ulid);
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
            machine_ports: std::sync::OnceLock::new(),
            status_looks: false,
        }
    }

    /// This renderer, knowing the inventory's exports already (gathered
    /// by another renderer of the same inventory).
    /// A renderer that knows what a first render gathered about the
    /// whole inventory (the exports, the machines' ports).
    /// This renderer, rendering the roles' `status:` looks too.
    pub(crate) fn with_status_looks(mut self, status_looks: bool) -> Renderer<'a> {
        self.status_looks = status_looks;
        self
    }

    pub(crate) fn knowing(
        self,
        exports: Arc<FleetExports>,
        machine_ports: Arc<context::MachinePorts>,
    ) -> Renderer<'a> {
        let _ = self.fleet.set(Ok(exports));
        let _ = self.machine_ports.set(Ok(machine_ports));
        self
    }

    /// Everything `host` wants, with what is known of the host itself
    /// (`facts`: nothing before it was observed).
    pub(crate) fn render_host(
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
        let status: &[crate::roles::HealthSpec] = if self.status_looks {
            &role.manifest.status
        } else {
            &[]
        };
        let specs = (role.manifest.health.iter().enumerate())
            .map(|(index, spec)| ("health", index, spec))
            .chain(
                status
                    .iter()
                    .enumerate()
                    .map(|(index, spec)| ("status", index, spec)),
            );
        for (key, index, spec) in specs {
            let at = |field: &str| format!("{key}[{index}].{field}");
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
        for role in self.roles_in(&context).iter() {
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
            let on_removal = self.render_handlers(
                role,
                &role.manifest.removal_handlers,
                "removal_handlers",
                &context,
                redactor,
            );
            match (self.role_actions(role, &context, redactor), on_removal) {
                (Ok(role_actions), Ok(on_removal)) => {
                    actions.insert(
                        role.name.clone(),
                        RoleActions {
                            on_removal,
                            ..role_actions
                        },
                    );
                }
                (Err(problem), _) | (_, Err(problem)) => problems.push(problem),
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
            for (index, context) in (0..role.manifest.files.len()).flat_map(|index| {
                let key = format!("files[{index}].each");
                match self.each_item(
                    role,
                    &role.manifest.files[index].each,
                    &key,
                    &context,
                    redactor,
                ) {
                    Ok(contexts) => contexts
                        .into_iter()
                        .map(|context| (index, Ok(context)))
                        .collect(),
                    Err(problem) => vec![(index, Err(problem))],
                }
            }) {
                let context = match context {
                    Ok(context) => context,
                    Err(problem) => {
                        problems.push(problem);
                        continue;
                    }
                };
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
        for role in self.roles_in(&context).iter() {
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
        problems.extend(machine::unite_system(&mut system));
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

    /// The contexts of an item's `each` (at `key`): `context` with `item`
    /// and `index` for each element of the list it gives; `context`
    /// alone without one.
    pub(super) fn each_item(
        &self,
        role: &Role,
        each: &Option<String>,
        key: &str,
        context: &JinjaValue,
        redactor: &Redactor,
    ) -> Result<Vec<JinjaValue>, Problem> {
        let Some(each) = each else {
            return Ok(vec![context.clone()]);
        };
        let items: Vec<JinjaValue> = self
            .env
            .compile_expression(each)
            .and_then(|compiled| compiled.eval(context.clone()))
            .and_then(|list| list.try_iter().map(Iterator::collect))
            .map_err(|error| manifest_template_problem(role, key.to_string(), &error, redactor))?;
        Ok(items
            .into_iter()
            .enumerate()
            .map(|(index, item)| minijinja::context! { item => item, index => index, ..context.clone() })
            .collect())
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

impl Renderer<'_> {
    /// The roles as a render with `context` takes them: every role on the
    /// homeserver's own machine; on a machine carrying parts of it, the
    /// roles with a share in those parts, each cut to the kinds it gives
    /// them (`Manifest::for_parts`).
    pub(super) fn roles_in(&self, context: &JinjaValue) -> Vec<std::borrow::Cow<'_, Role>> {
        let parts: Vec<String> = context
            .get_attr("parts")
            .ok()
            .and_then(|parts| parts.try_iter().ok().map(|items| items.collect::<Vec<_>>()))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|part| part.as_str().map(str::to_string))
            .collect();
        if parts.is_empty() || parts == ["main"] {
            return self
                .roles
                .roles
                .values()
                .map(std::borrow::Cow::Borrowed)
                .collect();
        }
        self.roles
            .roles
            .values()
            .filter_map(|role| {
                let manifest = role.manifest.for_parts(&parts)?;
                Some(std::borrow::Cow::Owned(Role {
                    manifest,
                    ..role.clone()
                }))
            })
            .collect()
    }
}

/// `secret | hex_to_base64`: the bytes a hex string spells, as unpadded
/// standard base64.
fn hex_to_base64(hex: &str) -> Result<String, minijinja::Error> {
    use base64::Engine;
    let invalid = || {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            "hex_to_base64 takes an even number of hex digits",
        )
    };
    if !hex.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|at| {
            hex.get(at..at + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    Ok(base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes))
}

/// `name | ulid`: a ULID (26 characters of Crockford's base32) that a name
/// always gives, for settings that must be a ULID and stable across
/// renders (the Matrix Authentication Service's upstream providers).
fn ulid(name: &str) -> String {
    use sha2::Digest;
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    let value = u128::from_be_bytes(first);
    // 26 digits of 5 bits spell 130: the first digit holds the top 3.
    (0..26)
        .rev()
        .map(|digit| ALPHABET[((value >> (digit * 5)) & 31) as usize] as char)
        .collect()
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
pub(crate) fn host_secrets(inventory: &Inventory, host: &Host) -> BTreeMap<SecretName, String> {
    inventory
        .secret_names
        .iter()
        .map(|name| {
            let value = match host.vars.secrets.get(name) {
                Some(value) => value.0.clone(),
                None => {
                    let generation = host.vars.secret_generation.get(name).copied().unwrap_or(0);
                    inventory.master_key.derive(
                        &inventory.secret_owner(host, name),
                        name,
                        generation,
                    )
                }
            };
            (name.clone(), value)
        })
        .collect()
}

/// Every secret value any output could contain, for the whole inventory.
pub(crate) fn redactor_for(inventory: &Inventory) -> Redactor {
    let mut values = vec![inventory.master_key.as_text()];
    for host in &inventory.hosts {
        values.extend(inventory.master_key.all_generations(
            host.name.as_str(),
            &inventory.secret_names,
            &host.vars.secret_generation,
        ));
        values.extend(host.secret_values.iter().cloned());
        // What a machine's customers share, derived for the machine.
        if host.placement.is_some() {
            for name in &inventory.machine_secret_names {
                let generations = host
                    .vars
                    .secret_generation
                    .get(name)
                    .map(|generation| [(name.clone(), *generation)].into_iter().collect())
                    .unwrap_or_default();
                values.extend(inventory.master_key.all_generations(
                    &inventory.secret_owner(host, name),
                    std::slice::from_ref(name),
                    &generations,
                ));
            }
        }
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
/// Asked once per target and ssh options in a run: every customer of a
/// machine is reached the same way, and each render asks.
fn proxy_of(target: &crate::inventory::SshTarget, host: &Host) -> Result<Option<String>, String> {
    if target.proxy.is_some() || !(target.user_given && target.port_given) {
        return Ok(target.proxy.clone());
    }
    type Asked = BTreeMap<String, Result<Option<String>, String>>;
    static ASKED: std::sync::Mutex<Asked> = std::sync::Mutex::new(BTreeMap::new());
    let key = format!("{target:?} {:?}", host.vars.ssh_options);
    if let Some(known) = ASKED.lock().ok().and_then(|asked| asked.get(&key).cloned()) {
        return known;
    }
    let mut resolved = target.clone();
    let answer = crate::transport::ssh::resolve(&mut resolved, &host.vars.ssh_options)
        .map(|()| resolved.proxy);
    if let Ok(mut asked) = ASKED.lock() {
        asked.insert(key, answer.clone());
    }
    answer
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

    #[test]
    fn hex_to_base64_gives_the_bytes_unpadded() {
        assert_eq!(hex_to_base64("00ff10").unwrap(), "AP8Q");
        assert_eq!(hex_to_base64("0a").unwrap(), "Cg");
        assert!(hex_to_base64("abc").is_err());
        assert!(hex_to_base64("zz").is_err());
    }

    use super::*;

    #[test]
    fn ulid_is_stable_and_a_valid_ulid() {
        let id = ulid("oidc-github");
        assert_eq!(id, ulid("oidc-github"));
        assert_ne!(id, ulid("oidc-gitlab"));
        assert_eq!(id.len(), 26);
        // A ULID's first digit is at most 7 (its 128 bits in 130).
        assert!(
            id.starts_with(['0', '1', '2', '3', '4', '5', '6', '7']),
            "{id}"
        );
        assert!(
            id.chars()
                .all(|c| "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(c)),
            "{id}"
        );
    }

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
