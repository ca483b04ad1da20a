//! What is rendered for use away from a plan: a role's task, the
//! customer's checklist (`onboard`) and what `check` probes.

use super::*;

impl Renderer<'_> {
    /// The script and input of task `name` for `host`, from the role that
    /// offers it and applies there, with `args` the command line's values;
    /// `Ok(None)`: no role that applies to the host offers it.
    pub(crate) fn render_task(
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

    /// The customer's checklist for `host` (`matrixctl onboard`): the
    /// roles' `checklist` entries that apply, rendered, and the ports.
    pub(crate) fn render_checklist(
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
    pub(crate) fn render_probes(
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
                            "role `{}`: a probe gives `served` with `file`, `registration` with `expect`, `ports_on`, or `answers` with `status` and `what`",
                            role.name
                        ))
                        .in_file(&role.path)
                        .at_key(format!("probes[{index}]"))
                    };
                    if let Some(url) = &spec.answers {
                        let lone = spec.served.is_none()
                            && spec.file.is_none()
                            && spec.registration.is_none()
                            && spec.expect.is_none()
                            && spec.ports_on.is_none();
                        return match (&spec.what, spec.status.is_empty()) {
                            (Some(what), false) if lone => Ok(Some(Expectation::Answers {
                                url: text(url, "answers")?,
                                status: spec.status.clone(),
                                what: text(what, "what")?,
                            })),
                            _ => Err(wrong()),
                        };
                    }
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
    pub(super) fn checklist_entry(
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
}
