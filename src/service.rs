//! The blocks a role manifest may use instead of writing out what most
//! roles of a kind share, expanded before the manifest is read into the
//! ordinary entries they stand for, every one of them as it would have
//! been written by hand.
//!
//! `service:`, the whole-host part of a program of its own (an
//! appservice, a bot):
//!
//! ```yaml
//! service:
//!   name: relay-bot                 # the unit and the account
//!   title: the relay bot            # how the options' descriptions name it
//!   packages: [file]                # besides python3-venv for a venv
//!   config_dir: true                # PREFIX_config_dir, /etc/NAME
//!   data_dir: true                  # PREFIX_data_dir, /var/lib/NAME, the home
//!   venv:
//!     version: "1.2.3"              # PREFIX_version
//!     requirements: ["relay-bot=={{ relay_bot_version }}"]
//!   unit:                           # the shared unit template's values
//!     description: the relay bot
//!     exec: ["{{ relay_bot_venv }}/bin/python", -m, relay_bot]
//! ```
//!
//! PREFIX is the name with `-` written `_`. The options it declares are
//! `PREFIX_config_dir`, `_data_dir`, `_group` (unless `group: false`:
//! then the group is the name), `_version`, `_venv`, `_wheels` (and
//! `_index_url` with `venv.index_url: true`), `_restart_command` and
//! `_stop_command`. `unit:` may instead name a template of the role's.
//!
//! `appservice:`, an application service registered with the homeserver
//! role named by `homeserver`: its registration file (one shared
//! template), the contribution listing it, and the two tokens.
//!
//! What a block cannot say the role writes beside it, and the role's lists
//! add to the block's.

use serde_yaml::{Mapping, Value};

use crate::problem::Problem;
use crate::values::MAX_CUSTOMER_NAME;

/// The manifest `manifest` with its blocks, if any, expanded into the
/// lists and options they stand for. `path` is the manifest's, for errors;
/// its stem is the role's name.
pub(crate) fn expand(mut manifest: Mapping, path: &std::path::Path) -> Result<Mapping, Problem> {
    let role = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    type Expansion = fn(&Block, &str) -> Result<Mapping, Problem>;
    let blocks: [(&str, Expansion); 2] = [
        ("service", service_expansion),
        ("appservice", appservice_expansion),
    ];
    for (key, expansion) in blocks {
        let Some(value) = manifest.remove(key) else {
            continue;
        };
        let block = Block::new(key, value, path)?;
        let expanded = expansion(&block, &role)?;
        merge(&mut manifest, expanded, &block)?;
    }
    Ok(manifest)
}

/// One block of a manifest, read with errors naming its keys.
struct Block<'a> {
    key: &'static str,
    map: Mapping,
    path: &'a std::path::Path,
}

impl<'a> Block<'a> {
    fn new(key: &'static str, value: Value, path: &'a std::path::Path) -> Result<Self, Problem> {
        match value {
            Value::Mapping(map) => Ok(Block { key, map, path }),
            _ => {
                let empty = Block {
                    key,
                    map: Mapping::new(),
                    path,
                };
                Err(empty.problem(format!("`{key}` is a map of its settings")))
            }
        }
    }

    fn problem(&self, message: String) -> Problem {
        Problem::new(format!("invalid role manifest: {message}"))
            .in_file(self.path)
            .at_key(self.key)
    }

    /// Refuses a key outside `known`, naming those there are.
    fn known(&self, known: &[&str]) -> Result<(), Problem> {
        match self
            .map
            .keys()
            .filter_map(Value::as_str)
            .find(|key| !known.contains(key))
        {
            Some(key) => Err(self.problem(format!(
                "unknown key `{}.{key}`; a {} block has {}",
                self.key,
                self.key,
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }

    fn text(&self, key: &str) -> Result<Option<String>, Problem> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(text)) if !text.trim().is_empty() => Ok(Some(text.clone())),
            Some(_) => Err(self.problem(format!("`{}.{key}` is a string", self.key))),
        }
    }

    fn required(&self, key: &str, what: &str) -> Result<String, Problem> {
        self.text(key)?
            .ok_or_else(|| self.problem(format!("`{}.{key}`{what} is missing", self.key)))
    }

    /// A required text of plain words, safe to write into YAML unquoted.
    fn words(&self, key: &str) -> Result<String, Problem> {
        let text = self.required(key, "")?;
        if text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " ._'-,".contains(c))
        {
            Ok(text)
        } else {
            Err(self.problem(format!(
                "`{}.{key}` `{text}` may hold only letters, digits, spaces and . _ ' - ,",
                self.key
            )))
        }
    }

    /// A required name of a-z, 0-9 and `sep`.
    fn name(&self, key: &str, sep: u8) -> Result<String, Problem> {
        let name = self.required(key, "")?;
        if name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == sep)
        {
            Ok(name)
        } else {
            Err(self.problem(format!(
                "`{}.{key}` `{name}` may hold only a-z, 0-9 and {}",
                self.key, sep as char
            )))
        }
    }

    fn flag(&self, key: &str, default: bool) -> Result<bool, Problem> {
        match self.map.get(key) {
            None => Ok(default),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(_) => Err(self.problem(format!("`{}.{key}` is true or false", self.key))),
        }
    }

    /// The manifest entries the block's text `expansion` writes.
    fn parsed(&self, expansion: &str) -> Result<Mapping, Problem> {
        match serde_yaml::from_str::<Value>(expansion) {
            Ok(Value::Mapping(expanded)) => Ok(expanded),
            _ => Err(self.problem(format!(
                "the {} block does not expand into a manifest",
                self.key
            ))),
        }
    }

    /// A list of strings (empty when absent).
    fn strings(&self, key: &str, what: &str) -> Result<Vec<String>, Problem> {
        strings(self.map.get(key))
            .ok_or_else(|| self.problem(format!("`{}.{key}` is a list of {what}", self.key)))
    }
}

/// The strings of a list (none for no list at all); None when it is not
/// one of strings.
fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    match value {
        None => Some(Vec::new()),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect(),
        Some(_) => None,
    }
}

/// A value written into the expansion's YAML: JSON, which YAML reads as is.
fn yaml<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The block's lists come first, the role's own after them; an option the
/// role declares too is the role's mistake.
fn merge(manifest: &mut Mapping, expansion: Mapping, block: &Block) -> Result<(), Problem> {
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
                for (entry, spec) in generated {
                    if own.contains_key(&entry) {
                        return Err(block.problem(format!(
                            "`{}` comes from the {} block; the role declares it too",
                            entry.as_str().unwrap_or_default(),
                            block.key
                        )));
                    }
                    own.insert(entry, spec);
                }
            }
            (Some(_), _) => {
                return Err(block.problem(format!(
                    "`{}` is a list or a map where the {} block adds to it",
                    key.as_str().unwrap_or_default(),
                    block.key
                )));
            }
        }
    }
    Ok(())
}

fn service_expansion(block: &Block, role: &str) -> Result<Mapping, Problem> {
    block.known(&[
        "name",
        "title",
        "packages",
        "group",
        "config_dir",
        "data_dir",
        "venv",
        "unit",
        "handler_order",
        "when",
        "customer_name",
    ])?;
    let name = block.name("name", b'-')?;
    // Its name for a homeserver sharing a machine: its own unit, account
    // and directories, within a Linux account name's 32 characters.
    let customer_name = block
        .text("customer_name")?
        .unwrap_or_else(|| format!("{name}-{{{{ customer }}}}"));
    let fixed = customer_name.replace("{{ customer }}", "");
    if !customer_name.contains("{{ customer }}")
        || !fixed
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        || fixed.len() + MAX_CUSTOMER_NAME > 32
    {
        return Err(block.problem(format!(
            "`service.customer_name` `{customer_name}` must hold `{{{{ customer }}}}` (up to {MAX_CUSTOMER_NAME} characters) and at most {} more of a-z, 0-9 and -, to stay a Linux account name",
            32 - MAX_CUSTOMER_NAME
        )));
    }
    // Written into the options' YAML: plain words only.
    let title = block.words("title")?;
    let order = match block.map.get("handler_order") {
        None => 70,
        Some(Value::Number(number)) => number
            .as_u64()
            .ok_or_else(|| block.problem("`service.handler_order` is a whole number".into()))?,
        Some(_) => return Err(block.problem("`service.handler_order` is a whole number".into())),
    };
    let packages = block.strings("packages", "package names")?;
    let prefix = name.replace('-', "_");
    let own_group = block.flag("group", true)?;
    let config_dir = block.flag("config_dir", false)?;
    let data_dir = block.flag("data_dir", false)?;
    let service = format!("{{{{ {prefix}_service }}}}");
    let group = if own_group {
        format!("{{{{ {prefix}_group }}}}")
    } else {
        service.clone()
    };
    let home = if data_dir {
        format!("{{{{ {prefix}_data_dir }}}}")
    } else {
        format!("/var/lib/{service}")
    };
    let unit = unit_file(block, role, &service, &group, data_dir.then_some(&prefix))?;

    let mut options = String::new();
    let mut items = String::new();
    let mut package_lines = String::new();
    // Each directory comes with the option that names it.
    let mut directories = String::new();
    options.push_str(&format!(
        "{prefix}_service:\n  type: string\n  default: {name}\n  per_customer: \"{customer_name}\"\n  pattern: \"[a-z][a-z0-9-]*\"\n  pattern_means: a-z, 0-9 and -\n  description: The unit and the account {title} runs as.\n"
    ));
    if config_dir {
        options.push_str(&format!(
            "{prefix}_config_dir:\n  type: path\n  default: /etc/{name}\n  per_customer: \"/etc/{name}-{{{{ customer }}}}\"\n  description: Where {title}'s configuration is written.\n"
        ));
        directories.push_str(&format!(
            "  - path: \"{{{{ {prefix}_config_dir }}}}\"\n    group: \"{group}\"\n    mode: \"0750\"\n"
        ));
    }
    if data_dir {
        options.push_str(&format!(
            "{prefix}_data_dir:\n  type: path\n  default: /var/lib/{name}\n  per_customer: \"/var/lib/{name}-{{{{ customer }}}}\"\n  description: {title}'s working directory, its account's home.\n"
        ));
        directories.push_str(&format!(
            "  - path: \"{{{{ {prefix}_data_dir }}}}\"\n    owner: \"{service}\"\n    group: \"{group}\"\n    mode: \"0750\"\n"
        ));
    }
    if own_group {
        options.push_str(&format!(
            "{prefix}_group:\n  type: string\n  default: {name}\n  per_customer: \"{customer_name}\"\n  description: The group {title} runs as, which may read its configuration (root owns it).\n"
        ));
    }
    if let Some(venv) = block.map.get("venv") {
        let Value::Mapping(venv) = venv else {
            return Err(block.problem("`service.venv` is a map (version, requirements)".into()));
        };
        if let Some(key) = venv
            .keys()
            .filter_map(Value::as_str)
            .find(|key| !["version", "requirements", "index_url"].contains(key))
        {
            return Err(block.problem(format!(
                "unknown key `service.venv.{key}`; a venv has version, requirements, index_url"
            )));
        }
        // Without a version the role pins it itself (in its requirements).
        let version = match venv.get("version") {
            None => None,
            Some(Value::String(version))
                if version.starts_with(|c: char| c.is_ascii_digit())
                    && version.bytes().all(|byte| {
                        byte.is_ascii_digit()
                            || byte.is_ascii_lowercase()
                            || b".+!-".contains(&byte)
                    }) =>
            {
                Some(version.clone())
            }
            _ => {
                return Err(block.problem(
                    "`service.venv.version` is a version in quotes, like \"1.2.3\"".into(),
                ));
            }
        };
        let requirements = match strings(venv.get("requirements")) {
            Some(requirements) if !requirements.is_empty() => requirements,
            _ => {
                return Err(
                    block.problem("`service.venv.requirements` lists what pip installs".into())
                );
            }
        };
        let index_url = matches!(venv.get("index_url"), Some(Value::Bool(true)));
        if let Some(version) = version {
            options.push_str(&format!(
                "{prefix}_version:\n  type: string\n  default: \"{version}\"\n  pattern: \"[0-9][0-9a-z.+!-]*\"\n  pattern_means: a version like `{version}`\n  description: The {title} release installed into its venv on a whole host.\n"
            ));
        }
        options.push_str(&format!(
            "{prefix}_venv:\n  type: path\n  default: /opt/{name}\n  description: The virtualenv {title} is installed into on a whole host.\n\
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
            yaml(&requirements),
            if index_url {
                format!("    index_url: \"{{{{ {prefix}_index_url or '' }}}}\"\n")
            } else {
                String::new()
            }
        ));
    }
    options.push_str(&format!(
        "{prefix}_restart_command:\n  type: string\n  default: systemctl restart {name}\n  per_customer: \"systemctl restart {customer_name}\"\n  description: Restarts {title} after its files change.\n\
         {prefix}_stop_command:\n  type: string\n  default: systemctl stop {name}\n  per_customer: \"systemctl stop {customer_name}\"\n  description: Stops {title} once its role no longer applies.\n"
    ));
    for package in &packages {
        package_lines.push_str(&format!("  - name: {}\n", yaml(package)));
    }
    if !package_lines.is_empty() {
        items.push_str(&format!("packages:\n{package_lines}"));
    }
    items.push_str(&format!(
        "groups:\n  - name: \"{group}\"\n\
         users:\n  - name: \"{service}\"\n    group: \"{group}\"\n    home: \"{home}\"\n\
         services:\n  - name: \"{service}\"\n\
         handlers:\n  - name: restart {name}\n    command: \"{{{{ {prefix}_restart_command if host_commands else '' }}}}\"\n    order: {order}\n\
         removal_handlers:\n  - name: stop {name}\n    command: \"{{{{ {prefix}_stop_command if host_commands else '' }}}}\"\n    order: {order}\n\
         files:\n  - template: {}\n    dest: \"/etc/systemd/system/{service}.service\"\n    mode: \"0644\"\n    owner: root\n    group: root\n    when: system_managed\n{}",
        yaml(&unit.0),
        unit.1
            .map(|with| format!("    with: {}\n", yaml(&with)))
            .unwrap_or_default()
    ));
    if !directories.is_empty() {
        items.push_str(&format!("directories:\n{directories}"));
    }
    let indented_options: String = options.lines().map(|line| format!("  {line}\n")).collect();
    let mut expanded = block.parsed(&format!("options:\n{indented_options}{items}"))?;
    // `when`: the program may be absent (one the operator supplies), and
    // with it everything that runs it; the options and handlers stay.
    if let Some(when) = block.text("when")? {
        for (key, item) in expanded.iter_mut() {
            let Some(items) = item.as_sequence_mut() else {
                continue;
            };
            let key = key.as_str().unwrap_or_default();
            for item in items
                .iter_mut()
                .filter(|_| !key.ends_with("handlers"))
                .filter_map(Value::as_mapping_mut)
            {
                let condition = match item.get("when").and_then(Value::as_str) {
                    Some(own) => format!("({when}) and {own}"),
                    None => when.clone(),
                };
                item.insert(Value::from("when"), Value::from(condition));
            }
        }
    }
    Ok(expanded)
}

/// The template of the service's unit, and the values it is rendered with:
/// the role's own template (`unit: TEMPLATE`), or the shared one with what
/// the block's `unit:` map says.
fn unit_file(
    block: &Block,
    role: &str,
    name: &str,
    group: &str,
    data_dir_of: Option<&String>,
) -> Result<(String, Option<Value>), Problem> {
    let map = match block.map.get("unit") {
        Some(Value::String(template)) => return Ok((template.clone(), None)),
        Some(Value::Mapping(map)) => map.clone(),
        _ => {
            return Err(block.problem(
                "`service.unit` is missing: a map for the shared unit (description, exec, ...) or a template of the role's".into(),
            ));
        }
    };
    let unit = Block {
        key: "service.unit",
        map,
        path: block.path,
    };
    unit.known(&[
        "description",
        "exec",
        "after",
        "environment_file",
        "supplementary_groups",
        "capabilities",
    ])?;
    let description = unit.words("description")?;
    let Some(Value::Sequence(exec)) = unit.map.get("exec") else {
        return Err(
            unit.problem("`service.unit.exec` is missing: the command's words, a list".into())
        );
    };
    // Each word a string (a template, checked to be one plain word when
    // rendered), or `{env: NAME}` for systemd's `$NAME`.
    let variable = |name: &str| {
        name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    };
    for word in exec {
        let fits = match word {
            Value::String(_) => true,
            Value::Mapping(map) => {
                map.len() == 1 && map.get("env").and_then(Value::as_str).is_some_and(variable)
            }
            _ => false,
        };
        if !fits {
            return Err(unit.problem(format!(
                "`service.unit.exec` has {}: each word is a string, or {{env: NAME}} (NAME in capitals) for an environment variable",
                serde_json::to_string(word).unwrap_or_default()
            )));
        }
    }
    let mut with = Mapping::new();
    let mut set = |key: &str, value: Value| {
        with.insert(Value::from(key), value);
    };
    set("role", Value::from(role));
    set("user", Value::from(name));
    set("group", Value::from(group));
    set("description", Value::from(description));
    set("exec", Value::Sequence(exec.clone()));
    for key in ["after", "supplementary_groups", "capabilities"] {
        let names = unit.strings(key, "names")?;
        set(
            key,
            Value::Sequence(names.into_iter().map(Value::from).collect()),
        );
    }
    // Every key the template reads is there, none when unset.
    set(
        "environment_file",
        unit.text("environment_file")?
            .map_or(Value::Null, Value::from),
    );
    set(
        "working_directory",
        data_dir_of.map_or(Value::Null, |prefix| {
            Value::from(format!("{{{{ {prefix}_data_dir }}}}"))
        }),
    );
    let mut outer = Mapping::new();
    outer.insert(Value::from("unit"), Value::Mapping(with));
    Ok((
        "service/unit.service.j2".into(),
        Some(Value::Mapping(outer)),
    ))
}

fn appservice_expansion(block: &Block, role: &str) -> Result<Mapping, Problem> {
    block.known(&[
        "homeserver",
        "id",
        "title",
        "port",
        "sender",
        "users",
        "aliases",
    ])?;
    let homeserver = block.name("homeserver", b'_')?;
    let id = block.name("id", b'_')?;
    let sender = block.name("sender", b'_')?;
    let title = block.words("title")?;
    let port = block.required("port", " (the loopback port the homeserver reaches it on)")?;
    let users = block.strings("users", "regular expressions of user localparts")?;
    let aliases = block.strings("aliases", "regular expressions of alias localparts")?;
    let prefix = role.replace('-', "_");
    let registration = yaml(&format!(
        "{{{{ {homeserver}_config_dir }}}}/appservices/{role}.yaml"
    ));
    let mut with = Mapping::new();
    for (key, value) in [
        ("role", Value::from(role)),
        ("id", Value::from(id)),
        (
            "url",
            Value::from(format!("http://{{{{ customer_address }}}}:{port}")),
        ),
        ("tokens", Value::from(prefix.clone())),
        ("sender", Value::from(sender)),
        (
            "users",
            Value::Sequence(users.into_iter().map(Value::from).collect()),
        ),
        (
            "aliases",
            Value::Sequence(aliases.into_iter().map(Value::from).collect()),
        ),
    ] {
        with.insert(Value::from(key), value);
    }
    let mut outer = Mapping::new();
    outer.insert(Value::from("appservice"), Value::Mapping(with));
    block.parsed(&format!(
        "contributes:\n  {homeserver}_appservices:\n    - {registration}\n\
         files:\n  - template: appservice/registration.yaml.j2\n    dest: {registration}\n    mode: \"0640\"\n    owner: root\n    group: \"{{{{ {homeserver}_group }}}}\"\n    with: {}\n\
         secrets:\n  {prefix}_as_token: the appservice token {title} presents to the homeserver\n  {prefix}_hs_token: the token the homeserver presents to {title}\n",
        yaml(&outer)
    ))
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
        // Its unit and account: the name, or its own for a homeserver
        // sharing a machine (relay-bot-CUSTOMER).
        assert_eq!(names("services"), ["{{ relay_bot_service }}"]);
        assert_eq!(
            expanded["options"]["relay_bot_service"]["per_customer"],
            "relay-bot-{{ customer }}"
        );
        assert_eq!(
            expanded["options"]["relay_bot_data_dir"]["per_customer"],
            "/var/lib/relay-bot-{{ customer }}"
        );
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
                "relay_bot_service",
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
            "invalid role manifest: unknown key `service.colour`; a service block has name, title, packages, group, config_dir, data_dir, venv, unit, handler_order, when, customer_name"
        );
        assert_eq!(
            refused("service: {name: x, title: \"X: y\", unit: u}"),
            "invalid role manifest: `service.title` `X: y` may hold only letters, digits, spaces and . _ ' - ,"
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
        assert_eq!(
            refused(
                "service: {name: x, title: X, unit: {description: X, exec: [x, {env: lower}]}}"
            ),
            "invalid role manifest: `service.unit.exec` has {\"env\":\"lower\"}: each word is a string, or {env: NAME} (NAME in capitals) for an environment variable"
        );
        assert_eq!(
            refused("service: {name: x, title: X, unit: {description: X}}"),
            "invalid role manifest: `service.unit.exec` is missing: the command's words, a list"
        );
        assert_eq!(
            refused("appservice: {homeserver: hs, id: x, title: X, port: \"1\", sender: \"x y\"}"),
            "invalid role manifest: `appservice.sender` `x y` may hold only a-z, 0-9 and _"
        );
    }

    #[test]
    fn a_shared_unit_is_rendered_with_the_blocks_values() {
        let expanded = expand(
            manifest(
                "service: {name: relay-bot, title: the relay bot, data_dir: true, when: relay_on,\n\
                 unit: {description: the relay bot, exec: [\"{{ relay_bot_venv }}/bin/python\", -m, relay], capabilities: [CAP_NET_BIND_SERVICE]}}\n\
                 services: [{name: other, when: other_on}]\n",
            ),
            std::path::Path::new("roles/relay-bot.yaml"),
        )
        .unwrap();
        let unit = &expanded["files"][0];
        assert_eq!(unit["template"], "service/unit.service.j2");
        assert_eq!(unit["when"], "(relay_on) and system_managed");
        let values = &unit["with"]["unit"];
        assert_eq!(values["role"], "relay-bot");
        assert_eq!(values["user"], "{{ relay_bot_service }}");
        assert_eq!(values["group"], "{{ relay_bot_group }}");
        assert_eq!(values["working_directory"], "{{ relay_bot_data_dir }}");
        assert_eq!(values["environment_file"], Value::Null);
        assert_eq!(values["capabilities"][0], "CAP_NET_BIND_SERVICE");
        // `when` gates what runs the program, not the role's own items.
        assert_eq!(expanded["services"][0]["when"], "relay_on");
        assert_eq!(expanded["services"][1]["when"], "other_on");
        assert!(expanded["handlers"][0].get("when").is_none());
    }

    #[test]
    fn an_appservice_block_registers_with_the_homeserver_it_names() {
        let expanded = expand(
            manifest(
                "appservice: {homeserver: hs, id: relay, title: the relay, port: \"{{ relay.port }}\", \
                 sender: relaybot, users: [relay_.*]}",
            ),
            std::path::Path::new("roles/relay-bot.yaml"),
        )
        .unwrap();
        let registration = "{{ hs_config_dir }}/appservices/relay-bot.yaml";
        assert_eq!(expanded["contributes"]["hs_appservices"][0], registration);
        assert_eq!(expanded["files"][0]["dest"], registration);
        assert_eq!(expanded["files"][0]["group"], "{{ hs_group }}");
        let values = &expanded["files"][0]["with"]["appservice"];
        assert_eq!(
            values["url"],
            "http://{{ customer_address }}:{{ relay.port }}"
        );
        assert_eq!(values["tokens"], "relay_bot");
        assert_eq!(values["aliases"], Value::Sequence(Vec::new()));
        let secrets: Vec<&str> = expanded["secrets"]
            .as_mapping()
            .unwrap()
            .keys()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(secrets, ["relay_bot_as_token", "relay_bot_hs_token"]);
    }
}
