//! The host as a system: each role's packages, accounts, directories,
//! venvs, services, databases, generated files and certificates, and its
//! validators and handlers, rendered.

use super::*;

impl Renderer<'_> {
    /// A role's validators and handlers, rendered for this host.
    pub(super) fn role_actions(
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
    pub(super) fn render_system(
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
                crate::system::repositories::sources(&role.name, &name, &url, &suite, &components);
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
            for context in
                self.each_item(role, &spec.each, &format!("{key}.each"), context, redactor)?
            {
                let applies = |key: String, when: &Option<String>| match when {
                    Some(when) => self.condition(role, when, &key, &context, redactor),
                    None => Ok(true),
                };
                if !applies(format!("{key}.when"), &spec.when)? {
                    continue;
                }
                let name = self.render_command(
                    role,
                    format!("{key}.name"),
                    &spec.name,
                    &context,
                    redactor,
                )?;
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
        }
        for (index, spec) in manifest.databases.iter().enumerate() {
            let key = format!("databases[{index}]");
            if !applies(format!("{key}.when"), &spec.when)? {
                continue;
            }
            // Quoted as identifiers in SQL, and reported as words.
            let identifier = |field: &str, template: &str| -> Result<String, Problem> {
                let text = render(format!("{key}.{field}"), template)?;
                if crate::system::databases::is_sql_identifier(&text) {
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
        for (index, spec) in manifest.artifacts.iter().enumerate() {
            let key = format!("artifacts[{index}]");
            if !applies(format!("{key}.when"), &spec.when)? {
                continue;
            }
            // A word each: the host program takes them as arguments and
            // reports the artifact by its directory.
            let word = |field: &str, text: String, expected: &str| -> Result<String, Problem> {
                let plain = !text.is_empty()
                    && !text.starts_with('-')
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._+~-".contains(&b));
                if plain {
                    Ok(text)
                } else {
                    Err(refuse(format!("{key}.{field}"), &text, expected))
                }
            };
            let name = word(
                "name",
                render(format!("{key}.name"), &spec.name)?,
                "a name (letters, digits, `.`, `_`, `-`)",
            )?;
            let version = word(
                "version",
                render(format!("{key}.version"), &spec.version)?,
                "a version (letters, digits, `.`, `_`, `+`, `~`, `-`)",
            )?;
            let with_version =
                minijinja::context! { version => version.clone(), ..context.clone() };
            let url = self.render_command(
                role,
                format!("{key}.url"),
                &spec.url,
                &with_version,
                redactor,
            )?;
            let fetchable =
                (url.starts_with("https://") || url.starts_with("http://") || url.starts_with('/'))
                    && !url.contains(char::is_whitespace);
            if !fetchable {
                return Err(refuse(
                    format!("{key}.url"),
                    &url,
                    "an http(s) URL or an absolute path on the host, without spaces",
                ));
            }
            // A mirror (the core var `artifact_mirror`) holds each release
            // under its upstream file name.
            let url = match context
                .get_attr("artifact_mirror")
                .ok()
                .and_then(|mirror| mirror.as_str().map(str::to_string))
            {
                Some(mirror) => {
                    let file = url.rsplit('/').next().unwrap_or_default();
                    format!("{mirror}/{file}")
                }
                None => url,
            };
            let sha256 = render(format!("{key}.sha256"), &spec.sha256)?.to_lowercase();
            if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(refuse(
                    format!("{key}.sha256"),
                    &sha256,
                    "a SHA-256 (64 hex digits)",
                ));
            }
            items.push(Item::Artifact {
                name,
                version,
                url,
                sha256,
                unpack: spec.unpack,
                strip: spec.strip,
                dest: path(format!("{key}.dest"), &spec.dest)?,
                owner: account(format!("{key}.owner"), &spec.owner)?,
                group: account(format!("{key}.group"), &spec.group)?,
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

    /// Renders handler specs (`handlers` or `removal_handlers` at `field`).
    pub(super) fn render_handlers(
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

    /// A command template of a role, rendered for this host and trimmed;
    /// an error names the role file and the key.
    pub(super) fn render_command(
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

    /// Whether a role's item at `key` applies: its `when`, if any, is
    /// true. A broken `when` is a problem, and the item does not apply.
    pub(super) fn item_applies(
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
}
