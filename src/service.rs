//! A role's `service:` block: the whole-host part most services share,
//! written once. A role that runs a program of its own (an appservice, a
//! bot) says its name, what it needs and its unit's template; the block
//! expands, before the manifest is read, into the options, packages,
//! venv, account, directories, service, handlers and unit file that the
//! role would otherwise write out, every one of them as it would have:
//!
//! ```yaml
//! service:
//!   name: relay-bot                 # the unit and the account
//!   title: the relay bot            # how the options' descriptions name it
//!   packages: [file]                # besides python3-venv for a venv
//!   config_dir: true                # PREFIX_config_dir, /etc/NAME
//!   data_dir: true                  # PREFIX_data_dir, /var/lib/NAME, the home
//!   venv:
//!     version: 1.2.3                # PREFIX_version
//!     requirements: ["relay-bot=={{ relay_bot_version }}"]
//!   unit: relay-bot/relay-bot.service.j2
//! ```
//!
//! PREFIX is the name with `-` written `_`. The options it declares are
//! `PREFIX_config_dir`, `_data_dir`, `_group` (unless `group: false`:
//! then the group is the name), `_version`, `_venv`, `_wheels` (and
//! `_index_url` with `venv.index_url: true`), `_restart_command` and
//! `_stop_command`. What the block cannot say the role writes beside it,
//! and its lists add to the block's.

use serde_yaml::{Mapping, Value};

use crate::problem::Problem;

/// The manifest `manifest` with its `service:` block, if any, expanded
/// into the lists and options it stands for. `path` is the manifest's,
/// for errors.
pub fn expand(mut manifest: Mapping, path: &std::path::Path) -> Result<Mapping, Problem> {
    let Some(block) = manifest.remove("service") else {
        return Ok(manifest);
    };
    let problem = |message: String| {
        Problem::new(format!("invalid role manifest: {message}"))
            .in_file(path)
            .at_key("service")
    };
    let Value::Mapping(block) = block else {
        return Err(problem(
            "`service` is a map (name, title, unit, ...)".into(),
        ));
    };
    let text = |key: &str| -> Result<Option<String>, Problem> {
        match block.get(key) {
            None => Ok(None),
            Some(Value::String(text)) if !text.trim().is_empty() => Ok(Some(text.clone())),
            Some(_) => Err(problem(format!("`service.{key}` is a string"))),
        }
    };
    let flag = |key: &str, default: bool| -> Result<bool, Problem> {
        match block.get(key) {
            None => Ok(default),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(_) => Err(problem(format!("`service.{key}` is true or false"))),
        }
    };
    const KNOWN: &[&str] = &[
        "name",
        "title",
        "packages",
        "group",
        "config_dir",
        "data_dir",
        "venv",
        "unit",
        "handler_order",
    ];
    if let Some(key) = block
        .keys()
        .filter_map(Value::as_str)
        .find(|key| !KNOWN.contains(key))
    {
        return Err(problem(format!(
            "unknown key `service.{key}`; a service block has {}",
            KNOWN.join(", ")
        )));
    }
    let name = text("name")?.ok_or_else(|| problem("`service.name` is missing".into()))?;
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
    {
        return Err(problem(format!(
            "`service.name` `{name}` may hold only a-z, 0-9 and -"
        )));
    }
    let title = text("title")?.ok_or_else(|| problem("`service.title` is missing".into()))?;
    // Both are written into the options' YAML: plain words only.
    if !title
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " ._'-".contains(c))
    {
        return Err(problem(format!(
            "`service.title` `{title}` may hold only letters, digits, spaces and . _ ' -"
        )));
    }
    let unit = text("unit")?
        .ok_or_else(|| problem("`service.unit` (its unit's template) is missing".into()))?;
    let order = match block.get("handler_order") {
        None => 70,
        Some(Value::Number(number)) => number
            .as_u64()
            .ok_or_else(|| problem("`service.handler_order` is a whole number".into()))?,
        Some(_) => return Err(problem("`service.handler_order` is a whole number".into())),
    };
    let packages: Vec<String> = match block.get("packages") {
        None => Vec::new(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| problem("`service.packages` lists package names".into()))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(problem("`service.packages` is a list".into())),
    };
    let prefix = name.replace('-', "_");
    let own_group = flag("group", true)?;
    let config_dir = flag("config_dir", false)?;
    let data_dir = flag("data_dir", false)?;
    let group = if own_group {
        format!("{{{{ {prefix}_group }}}}")
    } else {
        name.clone()
    };
    let home = if data_dir {
        format!("{{{{ {prefix}_data_dir }}}}")
    } else {
        format!("/var/lib/{name}")
    };

    let mut options = String::new();
    let mut items = String::new();
    let mut package_lines = String::new();
    // Each directory comes with the option that names it.
    let mut directories = String::new();
    if config_dir {
        options.push_str(&format!(
            "{prefix}_config_dir:\n  type: path\n  default: /etc/{name}\n  description: Where {title}'s configuration is written.\n"
        ));
        directories.push_str(&format!(
            "  - path: \"{{{{ {prefix}_config_dir }}}}\"\n    group: \"{group}\"\n    mode: \"0750\"\n"
        ));
    }
    if data_dir {
        options.push_str(&format!(
            "{prefix}_data_dir:\n  type: path\n  default: /var/lib/{name}\n  description: {title}'s working directory, its account's home.\n"
        ));
        directories.push_str(&format!(
            "  - path: \"{{{{ {prefix}_data_dir }}}}\"\n    owner: {name}\n    group: \"{group}\"\n    mode: \"0750\"\n"
        ));
    }
    if own_group {
        options.push_str(&format!(
            "{prefix}_group:\n  type: string\n  default: {name}\n  description: The group {title} runs as, which may read its configuration (root owns it).\n"
        ));
    }
    if let Some(venv) = block.get("venv") {
        let Value::Mapping(venv) = venv else {
            return Err(problem(
                "`service.venv` is a map (version, requirements)".into(),
            ));
        };
        if let Some(key) = venv
            .keys()
            .filter_map(Value::as_str)
            .find(|key| !["version", "requirements", "index_url"].contains(key))
        {
            return Err(problem(format!(
                "unknown key `service.venv.{key}`; a venv has version, requirements, index_url"
            )));
        }
        let version = match venv.get("version") {
            Some(Value::String(version))
                if version.starts_with(|c: char| c.is_ascii_digit())
                    && version.bytes().all(|byte| {
                        byte.is_ascii_digit()
                            || byte.is_ascii_lowercase()
                            || b".+!-".contains(&byte)
                    }) =>
            {
                version.clone()
            }
            _ => {
                return Err(problem(
                    "`service.venv.version` is a version in quotes, like \"1.2.3\"".into(),
                ));
            }
        };
        let requirements = match venv.get("requirements") {
            Some(Value::Sequence(requirements)) if !requirements.is_empty() => requirements,
            _ => {
                return Err(problem(
                    "`service.venv.requirements` lists what pip installs".into(),
                ));
            }
        };
        let index_url = matches!(venv.get("index_url"), Some(Value::Bool(true)));
        options.push_str(&format!(
            "{prefix}_version:\n  type: string\n  default: \"{version}\"\n  pattern: \"[0-9][0-9a-z.+!-]*\"\n  pattern_means: a version like `{version}`\n  description: The {title} release installed into its venv on a whole host.\n\
             {prefix}_venv:\n  type: path\n  default: /opt/{name}\n  description: The virtualenv {title} is installed into on a whole host.\n\
             {prefix}_wheels:\n  type: path\n  optional: true\n  example: /srv/wheels\n  description: >-\n    A directory of wheels on the host to install {title} from, and only\n    from (an offline host); unset uses the package index.\n"
        ));
        if index_url {
            options.push_str(&format!(
                "{prefix}_index_url:\n  type: https_url\n  optional: true\n  description: The package index {title} is installed from; unset is PyPI.\n"
            ));
        }
        package_lines.push_str("  - name: python3-venv\n");
        items.push_str(&format!(
            "venvs:\n  - path: \"{{{{ {prefix}_venv }}}}\"\n    requirements: {}\n{}    find_links: \"{{{{ {prefix}_wheels or '' }}}}\"\n",
            serde_json::to_string(requirements).unwrap_or_default(),
            if index_url {
                format!("    index_url: \"{{{{ {prefix}_index_url or '' }}}}\"\n")
            } else {
                String::new()
            }
        ));
    }
    options.push_str(&format!(
        "{prefix}_restart_command:\n  type: string\n  default: systemctl restart {name}\n  description: Restarts {title} after its files change.\n\
         {prefix}_stop_command:\n  type: string\n  default: systemctl stop {name}\n  description: Stops {title} once its role no longer applies.\n"
    ));
    for package in &packages {
        package_lines.push_str(&format!(
            "  - name: {}\n",
            serde_json::to_string(package).unwrap_or_default()
        ));
    }
    if !package_lines.is_empty() {
        items.push_str(&format!("packages:\n{package_lines}"));
    }
    items.push_str(&format!(
        "groups:\n  - name: \"{group}\"\n\
         users:\n  - name: {name}\n    group: \"{group}\"\n    home: \"{home}\"\n\
         services:\n  - name: {name}\n\
         handlers:\n  - name: restart {name}\n    command: \"{{{{ {prefix}_restart_command if host_commands else '' }}}}\"\n    order: {order}\n\
         removal_handlers:\n  - name: stop {name}\n    command: \"{{{{ {prefix}_stop_command if host_commands else '' }}}}\"\n    order: {order}\n\
         files:\n  - template: {}\n    dest: /etc/systemd/system/{name}.service\n    mode: \"0644\"\n    owner: root\n    group: root\n    when: system_managed\n",
        serde_json::to_string(&unit).unwrap_or_default()
    ));
    if !directories.is_empty() {
        items.push_str(&format!("directories:\n{directories}"));
    }
    let indented_options: String = options.lines().map(|line| format!("  {line}\n")).collect();
    let expansion = format!("options:\n{indented_options}{items}");
    let Ok(Value::Mapping(expansion)) = serde_yaml::from_str::<Value>(&expansion) else {
        return Err(problem(format!(
            "the service block of `{name}` does not expand into a manifest"
        )));
    };
    // The block's lists come first, the role's own after them; an option
    // the role declares too is the role's mistake.
    for (key, value) in expansion {
        match (manifest.get_mut(&key), value) {
            (None, value) => {
                manifest.insert(key, value);
            }
            (Some(Value::Sequence(own)), Value::Sequence(mut generated)) => {
                generated.append(own);
                *own = generated;
            }
            (Some(Value::Mapping(own)), Value::Mapping(generated)) => {
                for (option, spec) in generated {
                    if own.contains_key(&option) {
                        return Err(problem(format!(
                            "`{}` comes from the service block; the role declares it too",
                            option.as_str().unwrap_or_default()
                        )));
                    }
                    own.insert(option, spec);
                }
            }
            (Some(_), _) => {
                return Err(problem(format!(
                    "`{}` is a list or a map where the service block adds to it",
                    key.as_str().unwrap_or_default()
                )));
            }
        }
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> Mapping {
        match serde_yaml::from_str(text) {
            Ok(Value::Mapping(mapping)) => mapping,
            _ => panic!("not a map: {text}"),
        }
    }

    #[test]
    fn a_block_expands_into_the_items_and_options_it_stands_for() {
        let expanded = expand(
            manifest(
                "service: {name: relay-bot, title: the relay bot, data_dir: true, \
                 venv: {version: 1.2.3, requirements: [relay-bot]}, unit: r.service.j2}\n\
                 packages: [{name: file}]\n",
            ),
            std::path::Path::new("roles/relay-bot.yaml"),
        )
        .unwrap();
        let names = |key: &str| -> Vec<String> {
            expanded[key]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|item| item["name"].as_str().unwrap_or_default().to_string())
                .collect()
        };
        // The block's items first, the role's own after them.
        assert_eq!(names("packages"), ["python3-venv", "file"]);
        assert_eq!(names("services"), ["relay-bot"]);
        assert_eq!(expanded["users"][0]["home"], "{{ relay_bot_data_dir }}");
        let options: Vec<&str> = expanded["options"]
            .as_mapping()
            .unwrap()
            .keys()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            options,
            [
                "relay_bot_data_dir",
                "relay_bot_group",
                "relay_bot_version",
                "relay_bot_venv",
                "relay_bot_wheels",
                "relay_bot_restart_command",
                "relay_bot_stop_command"
            ]
        );
        assert!(!expanded.contains_key("service"));
        // A version YAML would read as a number stays the string it is.
        let short = expand(
            manifest("service: {name: x, title: X, unit: u, venv: {version: \"1.15\", requirements: [x]}}"),
            std::path::Path::new("roles/x.yaml"),
        )
        .unwrap();
        assert_eq!(short["options"]["x_version"]["default"], "1.15");
    }

    #[test]
    fn a_wrong_block_is_refused_saying_what_is_wrong() {
        let refused = |text: &str| {
            expand(manifest(text), std::path::Path::new("roles/x.yaml"))
                .unwrap_err()
                .message
        };
        assert_eq!(
            refused("service: {name: x, title: X, unit: u, colour: red}"),
            "invalid role manifest: unknown key `service.colour`; a service block has name, title, packages, group, config_dir, data_dir, venv, unit, handler_order"
        );
        assert_eq!(
            refused("service: {name: x, title: \"X: y\", unit: u}"),
            "invalid role manifest: `service.title` `X: y` may hold only letters, digits, spaces and . _ ' -"
        );
        assert_eq!(
            refused(
                "service: {name: x, title: X, unit: u, venv: {version: \"1.0\\\"\", requirements: [x]}}"
            ),
            "invalid role manifest: `service.venv.version` is a version in quotes, like \"1.2.3\""
        );
        assert_eq!(
            refused("service: {title: X, unit: u}"),
            "invalid role manifest: `service.name` is missing"
        );
        assert_eq!(
            refused(
                "service: {name: x, title: X, unit: u}\noptions: {x_stop_command: {type: string}}"
            ),
            "invalid role manifest: `x_stop_command` comes from the service block; the role declares it too"
        );
    }
}
