//! A role's files, rendered and checked: destination, owner, mode, and
//! whether they hold a secret.

use super::*;

impl Renderer<'_> {
    pub(super) fn render_file(
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
        // The file's own `with:` values, over the host's vars.
        let context = match &spec.with {
            None => context.clone(),
            Some(with) => {
                let own = render_with(&Value::Mapping(with.clone()), &|source| {
                    render_field("with", source)
                })?;
                minijinja::value::merge_maps([context.clone(), JinjaValue::from(Serde(&own))])
            }
        };
        // A secret transformed (upper-cased, split, reversed) is no longer
        // found by its bytes: that the template read one is what counts.
        let (content, read_secret) =
            ReadSecrets::during(&context, || template.render(context.clone()));
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
    pub(super) fn state_dir_of(&self, context: &JinjaValue) -> String {
        context
            .get_attr("state_dir")
            .ok()
            .and_then(|value| value.as_str().map(str::to_string))
            .unwrap_or_else(|| "/var/lib/matrixctl".to_string())
    }
}

/// A file's `with:` value with every string rendered by `render` (a
/// template over the host's vars); numbers, booleans and the shape stay.
fn render_with(
    value: &Value,
    render: &dyn Fn(&str) -> Result<String, Problem>,
) -> Result<Value, Problem> {
    Ok(match value {
        Value::String(source) => Value::String(render(source)?),
        Value::Sequence(items) => Value::Sequence(
            items
                .iter()
                .map(|item| render_with(item, render))
                .collect::<Result<_, _>>()?,
        ),
        Value::Mapping(map) => Value::Mapping(
            map.iter()
                .map(|(key, item)| Ok((key.clone(), render_with(item, render)?)))
                .collect::<Result<_, Problem>>()?,
        ),
        other => other.clone(),
    })
}
