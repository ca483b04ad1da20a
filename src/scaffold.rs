//! Writing inventories for the operator: `init` makes a new one, `host add`
//! and `host remove` edit hosts.yaml and host_vars/ the way a person
//! would, keeping the rest of each file (comments, order) as it was.
//!
//! Every edit is checked by loading the edited inventory; when it does not
//! load, or anything fails on the way, the files are put back byte for
//! byte. Nothing here contacts a host.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_yaml::{Mapping, Value};

use crate::inventory::Inventory;
use crate::inventory::explain::lookup;
use crate::inventory::locate::line_of_key;
use crate::inventory::schema::DnsName;
use crate::problem::{Problem, Problems, did_you_mean};
use crate::roles::RoleSet;

const HOSTS_YAML: &str = "\
# The hosts of this inventory, one per Matrix server name (the part after
# the colon in @alice:example.com). Add them with `matrixctl host add
# DOMAIN`; a host's own settings go in host_vars/DOMAIN.yaml.
hosts: {}
";

/// Operator-wide settings, commented (every line, uncommented, is valid:
/// a test loads it so). It names components, so it lives with the
/// templates, not here.
fn all_yaml() -> &'static [u8] {
    crate::roles::BUILTIN_TEMPLATES
        .get_file("inventory/all.yaml")
        .map_or(&[], |file| file.contents())
}

const GITIGNORE: &str = "\
# Every host's secrets derive from the master key: keep it out of git and
# back it up somewhere safe instead.
secrets/master.key
";

/// `matrixctl init DIR`: a new inventory with a fresh master key.
pub(crate) fn init(dir: &Path) -> Result<String> {
    let occupied = match fs_err::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(error) => return Err(error.into()),
    };
    if occupied {
        return Err(Problem::new("the directory is not empty; init makes a new inventory only")
            .in_file(dir)
            .with_hint(Some(format!(
                "add hosts to an existing inventory with `matrixctl host add DOMAIN --inventory {}`",
                dir.display()
            )))
            .into());
    }
    // Built beside DIR and renamed into place: an interrupted init leaves
    // no half inventory under DIR.
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs_err::create_dir_all(&parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".matrixctl-init.")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot create a directory in {}", parent.display()))?;
    let root = staging.path();
    fs_err::write(root.join("hosts.yaml"), HOSTS_YAML)?;
    fs_err::create_dir(root.join("group_vars"))?;
    fs_err::write(root.join("group_vars/all.yaml"), all_yaml())?;
    fs_err::create_dir(root.join("host_vars"))?;
    fs_err::write(root.join(".gitignore"), GITIGNORE)?;
    write_master_key(&root.join("secrets"))?;
    set_mode(root, 0o755)?;
    let staged = staging.keep();
    if let Err(error) = fs_err::rename(&staged, dir) {
        let _ = fs_err::remove_dir_all(&staged);
        return Err(error).with_context(|| format!("cannot create {}", dir.display()));
    }
    Ok(format!(
        "Created the inventory {dir}: hosts.yaml, group_vars/all.yaml (operator-wide settings, commented), \
host_vars/, and secrets/master.key (0600, kept out of git by .gitignore: back it up).\n\
Next: `matrixctl host add DOMAIN --inventory {dir}` for each customer.\n",
        dir = dir.display()
    ))
}

fn write_master_key(secrets: &Path) -> Result<()> {
    use base64::Engine;
    use std::io::{Read, Write};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(secrets)
        .with_context(|| format!("cannot create {}", secrets.display()))?;
    let mut bytes = [0u8; 48];
    fs_err::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let key = base64::engine::general_purpose::STANDARD.encode(bytes);
    let path = secrets.join("master.key");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{key}")?;
    file.sync_all()?;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// What `host add` is asked to write.
#[derive(Debug, Default)]
pub(crate) struct NewHost {
    pub domain: String,
    pub ssh: Option<String>,
    /// `connection: local` with this root.
    pub local: Option<String>,
    /// `machine:`, a machine of hosts.yaml's `machines:`.
    pub machine: Option<String>,
    pub groups: Vec<String>,
    /// Vars for host_vars/DOMAIN.yaml, as dotted key paths; only those
    /// that differ from what the host gets without the file are written.
    pub vars: Vec<(Vec<String>, Value)>,
    /// `--bridge NAME`: each becomes `bridges.NAME: {}`.
    pub bridges: Vec<String>,
}

/// The prefix of the options that are bridges (`bridges.NAME`), as the
/// roles declare them.
const BRIDGE_PREFIX: &str = "bridges.";

/// `matrixctl host add`: a hosts.yaml entry and host_vars/DOMAIN.yaml.
pub(crate) fn host_add(dir: &Path, roles: &RoleSet, mut new: NewHost) -> Result<String> {
    let inventory = load_as_it_is(dir, roles)?;
    let hosts_path = dir.join("hosts.yaml");
    let domain: DnsName =
        new.domain
            .parse()
            .map_err(|error: crate::inventory::schema::InvalidName| {
                Problem::new(format!(
                    "`{}` is not a server name: {}",
                    new.domain, error.reason
                ))
                .with_hint(error.hint)
            })?;
    if inventory.hosts.iter().any(|host| host.name == domain) {
        return Err(Problem::new(format!("{domain} is already in the inventory"))
            .in_file(&hosts_path)
            .at_line(line_of_key(
                &fs_err::read_to_string(&hosts_path)?,
                &["hosts".into(), domain.to_string()],
            ))
            .with_hint(Some(format!(
                "change it in host_vars/{domain}.yaml, or `matrixctl host remove {domain}` first"
            )))
            .into());
    }
    let bridges = roles.option_keys_under(BRIDGE_PREFIX);
    for bridge in &new.bridges {
        if !bridges.contains(bridge) {
            let hint = did_you_mean(bridge, bridges.iter().map(String::as_str))
                .unwrap_or_else(|| format!("the bridges the roles offer: {}", bridges.join(", ")));
            return Err(Problem::new(format!("no bridge `{bridge}`"))
                .with_hint(Some(hint))
                .into());
        }
        new.vars.push((
            vec!["bridges".into(), bridge.clone()],
            Value::Mapping(Mapping::new()),
        ));
    }

    let hosts_text = fs_err::read_to_string(&hosts_path)?;
    let mut fields = Vec::new();
    if let Some(ssh) = &new.ssh {
        fields.push(format!("ssh: {}", scalar(ssh)));
    }
    if let Some(root) = &new.local {
        fields.push("connection: local".to_string());
        fields.push(format!("root: {}", scalar(root)));
    }
    if let Some(machine) = &new.machine {
        fields.push(format!("machine: {}", scalar(machine)));
    }
    if !new.groups.is_empty() {
        let groups: Vec<String> = new.groups.iter().map(|group| scalar(group)).collect();
        fields.push(format!("groups: [{}]", groups.join(", ")));
    }
    let with_entry = add_entry(&hosts_text, &domain, &fields)
        .map_err(|reason| Problem::new(reason).in_file(&hosts_path))?;
    let vars_path = dir.join("host_vars").join(format!("{domain}.yaml"));
    all_or_nothing(|edit| {
        edit.write(&hosts_path, with_entry.as_bytes())?;
        // The host as it is without a host_vars file: what needs writing
        // is what differs from that.
        let defaults = Inventory::load(dir, roles).map_err(refused)?;
        let merged = defaults
            .hosts
            .iter()
            .find(|host| host.name == domain)
            .map(|host| host.merged.clone())
            .unwrap_or_default();
        let mut own = Mapping::new();
        for (path, value) in &new.vars {
            if lookup(&merged, path) != Some(value) {
                insert(&mut own, path, value.clone());
            }
        }
        let mut text = format!(
            "# {domain}: what differs from the defaults and group_vars.\n\
# `matrixctl vars {domain} --explain KEY` shows where a value comes from;\n\
# `matrixctl options` lists every setting.\n"
        );
        if !own.is_empty() {
            text.push_str(&serde_yaml::to_string(&own)?);
        }
        fs_err::create_dir_all(dir.join("host_vars"))?;
        edit.write(&vars_path, text.as_bytes())?;
        Inventory::load(dir, roles).map_err(refused)?;
        Ok(())
    })?;
    Ok(format!(
        "Added {domain} to {hosts} and wrote {vars}.\n\
Next: `matrixctl onboard {domain} --inventory {dir}` for the customer's checklist (DNS, ports, delegation),\n\
then `matrixctl plan {dir} --limit {domain}`.\n",
        hosts = hosts_path.display(),
        vars = vars_path.display(),
        dir = dir.display()
    ))
}

/// `matrixctl host remove`: the host's hosts.yaml entry and host_vars
/// file. The server itself is never contacted.
pub(crate) fn host_remove(dir: &Path, roles: &RoleSet, domain: &str) -> Result<String> {
    let inventory = load_as_it_is(dir, roles)?;
    let hosts_path = dir.join("hosts.yaml");
    if !inventory
        .hosts
        .iter()
        .any(|host| host.name.as_str() == domain)
    {
        return Err(Problem::new(format!("no host `{domain}` in the inventory"))
            .in_file(&hosts_path)
            .with_hint(did_you_mean(
                domain,
                inventory.hosts.iter().map(|host| host.name.as_str()),
            ))
            .into());
    }
    let machine = inventory
        .hosts
        .iter()
        .find(|host| host.name.as_str() == domain)
        .and_then(|host| host.placement.as_ref())
        .map(|placement| placement.machine.clone());
    let hosts_text = fs_err::read_to_string(&hosts_path)?;
    let without = remove_entry(&hosts_text, domain)
        .map_err(|reason| Problem::new(reason).in_file(&hosts_path))?;
    let vars_path = dir.join("host_vars").join(format!("{domain}.yaml"));
    all_or_nothing(|edit| {
        edit.write(&hosts_path, without.as_bytes())?;
        edit.remove(&vars_path)?;
        Inventory::load(dir, roles).map_err(refused)?;
        Ok(())
    })?;
    Ok(match machine {
        // The machine stays managed: its next apply takes the customer's
        // part away.
        Some(machine) => format!(
            "Removed {domain} from {}; machine {machine} was not touched. Its next apply (`matrixctl apply {} --limit {machine}`) stops {domain}'s services and removes its files there; its database and media stay.\n",
            hosts_path.display(),
            dir.display()
        ),
        None => format!(
            "Removed {domain} from {}; the server itself was not touched.\n",
            hosts_path.display()
        ),
    })
}

/// The inventory must load before it is edited: an edit is checked by
/// loading it afterwards, which only means something on a good one.
fn load_as_it_is(dir: &Path, roles: &RoleSet) -> Result<Inventory> {
    Inventory::load(dir, roles).map_err(|Problems(mut problems)| {
        if let Some(first) = problems.first_mut() {
            first.message = format!(
                "the inventory does not load as it is, so it was not edited: {}",
                first.message
            );
        }
        Problems(problems).into()
    })
}

/// An edit that would leave a broken inventory is refused, its problems
/// shown as the loader found them.
fn refused(Problems(mut problems): Problems) -> anyhow::Error {
    if let Some(first) = problems.first_mut() {
        first.message = format!(
            "the inventory would not load after this change, so nothing was changed: {}",
            first.message
        );
        if first.hint.is_none() && first.message.contains("missing `") {
            first.hint = Some("give what is missing with `--set KEY=VALUE`".into());
        }
    }
    Problems(problems).into()
}

/// Runs `edits`; when they fail, every file they wrote or removed is put
/// back as it was.
fn all_or_nothing(edits: impl FnOnce(&mut Edit) -> Result<()>) -> Result<()> {
    let mut edit = Edit::default();
    let result = edits(&mut edit);
    if result.is_err() {
        edit.undo();
    }
    result
}

/// Files written so far, with what they held, so a failure puts every one
/// back.
#[derive(Default)]
struct Edit {
    undo: Vec<(PathBuf, Option<Vec<u8>>)>,
}

impl Edit {
    /// Writes `content` to `path` (through a file renamed into place).
    fn write(&mut self, path: &Path, content: &[u8]) -> Result<()> {
        let before = read_if_there(path)?;
        self.undo.push((path.to_path_buf(), before));
        replace(path, content)
    }

    fn remove(&mut self, path: &Path) -> Result<()> {
        if let Some(bytes) = read_if_there(path)? {
            self.undo.push((path.to_path_buf(), Some(bytes)));
            fs_err::remove_file(path)?;
        }
        Ok(())
    }

    fn undo(self) {
        for (path, before) in self.undo.into_iter().rev() {
            let _ = match before {
                Some(bytes) => replace(&path, &bytes),
                None => fs_err::remove_file(&path).map_err(Into::into),
            };
        }
    }
}

fn read_if_there(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs_err::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Replaces `path` with `content` atomically, keeping its mode.
fn replace(path: &Path, content: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".matrixctl.")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    file.write_all(content)?;
    file.as_file().sync_all()?;
    let mode = match fs_err::metadata(path) {
        Ok(metadata) => metadata.permissions(),
        Err(_) => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::Permissions::from_mode(0o644)
        }
    };
    fs_err::set_permissions(file.path(), mode)?;
    file.persist(path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// hosts.yaml's text with an entry for `domain` added at the end of
/// `hosts:`, the rest of the text as it was.
fn add_entry(text: &str, domain: &DnsName, fields: &[String]) -> Result<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    let Some(hosts_line) = lines.iter().position(|line| line.starts_with("hosts:")) else {
        return Err("hosts.yaml has no top-level `hosts:` line to add the host under".into());
    };
    let after_key = lines[hosts_line]["hosts:".len()..].trim_start();
    let empty_flow = after_key.starts_with("{}");
    if !empty_flow && !after_key.is_empty() && !after_key.starts_with('#') {
        return Err(
            "hosts.yaml writes `hosts:` in flow style ({...}); host add edits the block style only (one host per line, indented)"
                .into(),
        );
    }
    let indent = lines[hosts_line + 1..]
        .iter()
        .find(|line| {
            let trimmed = line.trim_start();
            !trimmed.is_empty() && !trimmed.starts_with('#')
        })
        .map(|line| line.len() - line.trim_start().len())
        .filter(|indent| *indent > 0)
        .unwrap_or(2);
    let pad = " ".repeat(indent);
    let mut entry = if fields.is_empty() {
        format!("{pad}{domain}: {{}}\n")
    } else {
        format!("{pad}{domain}:\n")
    };
    for field in fields {
        entry.push_str(&format!("{pad}{pad}{field}\n"));
    }
    // The entry ends the `hosts:` block: after its last indented line,
    // before what follows at the top level (`machines:` and its comment).
    let next_key = lines[hosts_line + 1..]
        .iter()
        .position(|line| {
            let trimmed = line.trim_start();
            !trimmed.is_empty() && !trimmed.starts_with('#') && trimmed.len() == line.len()
        })
        .map_or(lines.len(), |offset| hosts_line + 1 + offset);
    let end = if next_key == lines.len() {
        next_key
    } else {
        lines[hosts_line + 1..next_key]
            .iter()
            .rposition(|line| !line.trim().is_empty() && line.starts_with(' '))
            .map_or(hosts_line + 1, |offset| hosts_line + 2 + offset)
    };
    let mut out = String::new();
    for (index, line) in lines.iter().enumerate() {
        if index == end {
            out.push_str(&entry);
        }
        if index == hosts_line && empty_flow {
            let comment = after_key["{}".len()..].trim_start();
            out.push_str("hosts:");
            if !comment.is_empty() {
                out.push(' ');
                out.push_str(comment);
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if end == lines.len() {
        out.push_str(&entry);
    }
    Ok(out)
}

/// hosts.yaml's text without the entry of `domain` (its key line and the
/// lines indented under it).
fn remove_entry(text: &str, domain: &str) -> Result<String, String> {
    let Some(line) = line_of_key(text, &["hosts".into(), domain.into()]) else {
        return Err(format!(
            "cannot find the line of `{domain}` under `hosts:` (host remove edits the block style only)"
        ));
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = line - 1;
    let indent_of = |line: &str| line.len() - line.trim_start().len();
    let entry_indent = indent_of(lines[start]);
    let mut end = start + 1;
    while end < lines.len() {
        let trimmed = lines[end].trim_start();
        if !trimmed.is_empty() && indent_of(lines[end]) <= entry_indent {
            break;
        }
        end += 1;
    }
    // Blank lines before what follows stay with it.
    while end > start + 1 && lines[end - 1].trim().is_empty() {
        end -= 1;
    }
    let mut kept: Vec<String> = lines[..start]
        .iter()
        .chain(&lines[end..])
        .map(|line| line.to_string())
        .collect();
    let still_has_hosts = kept
        .iter()
        .skip_while(|line| !line.starts_with("hosts:"))
        .skip(1)
        .any(|line| {
            let trimmed = line.trim_start();
            !trimmed.is_empty() && !trimmed.starts_with('#') && indent_of(line) > 0
        });
    if !still_has_hosts && let Some(hosts) = kept.iter_mut().find(|line| line.starts_with("hosts:"))
    {
        let comment = hosts["hosts:".len()..].trim_start().to_string();
        *hosts = if comment.is_empty() {
            "hosts: {}".into()
        } else {
            format!("hosts: {{}} {comment}")
        };
    }
    let mut out = kept.join("\n");
    out.push('\n');
    Ok(out)
}

/// A YAML scalar as YAML writes it (quoted when it would read otherwise).
fn scalar(text: &str) -> String {
    serde_yaml::to_string(&Value::String(text.into()))
        .map(|yaml| yaml.trim_end().to_string())
        .unwrap_or_else(|_| format!("{text:?}"))
}

fn insert(mapping: &mut Mapping, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        mapping.insert(first.as_str().into(), value);
        return;
    }
    let child = mapping
        .entry(first.as_str().into())
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if !child.is_mapping() {
        *child = Value::Mapping(Mapping::new());
    }
    if let Value::Mapping(child) = child {
        insert(child, rest, value);
    }
}

/// `KEY=VALUE` of `--set`: a dotted key path and a YAML value.
pub(crate) fn parse_assignment(text: &str) -> Result<(Vec<String>, Value), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!(
            "`{text}` is not KEY=VALUE (like `turn.host=turn.example.com`)"
        ));
    };
    let path: Vec<String> = key.split('.').map(str::to_string).collect();
    if path.iter().any(|part| part.is_empty()) {
        return Err(format!("`{key}` is not a key path (like `turn.lifetime`)"));
    }
    let value: Value = serde_yaml::from_str(value)
        .map_err(|error| format!("the value of {key} is not YAML: {error}"))?;
    Ok((path, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> DnsName {
        text.parse().unwrap()
    }

    #[test]
    fn adds_to_an_empty_inventory_and_removes_back_to_it() {
        let added = add_entry(HOSTS_YAML, &name("a.example"), &[]).unwrap();
        assert!(added.ends_with("hosts:\n  a.example: {}\n"), "{added}");
        assert_eq!(remove_entry(&added, "a.example").unwrap(), HOSTS_YAML);
    }

    #[test]
    fn keeps_comments_and_indentation_of_an_existing_file() {
        let text = "# top\nhosts:  # the fleet\n    a.example:\n        ssh: root@a\n    # b is next\n    b.example: {}\n";
        let fields = [
            format!("ssh: {}", scalar("[::1]:2222")),
            "groups: [eu]".into(),
        ];
        let added = add_entry(text, &name("c.example"), &fields).unwrap();
        assert_eq!(
            added,
            format!("{text}    c.example:\n        ssh: '[::1]:2222'\n        groups: [eu]\n")
        );
        let without_a = remove_entry(&added, "a.example").unwrap();
        assert!(
            without_a.starts_with("# top\nhosts:  # the fleet\n    # b is next\n"),
            "{without_a}"
        );
        assert_eq!(remove_entry(&added, "c.example").unwrap(), text);
    }

    #[test]
    fn adds_under_hosts_when_machines_follow() {
        let text = "hosts:\n  a.example:\n    machine: m1\n\n# shared\nmachines:\n  m1: {}\n";
        let added = add_entry(text, &name("b.example"), &["machine: m1".into()]).unwrap();
        assert_eq!(
            added,
            "hosts:\n  a.example:\n    machine: m1\n  b.example:\n    machine: m1\n\n# shared\nmachines:\n  m1: {}\n"
        );
        let empty = "hosts: {}\nmachines:\n  m1: {}\n";
        let added = add_entry(empty, &name("b.example"), &[]).unwrap();
        assert_eq!(added, "hosts:\n  b.example: {}\nmachines:\n  m1: {}\n");
    }

    #[test]
    fn refuses_flow_style_hosts() {
        assert!(add_entry("hosts: {a.example: {}}\n", &name("b.example"), &[]).is_err());
    }

    #[test]
    fn parses_assignments() {
        assert_eq!(
            parse_assignment("turn.lifetime=1h").unwrap(),
            (
                vec!["turn".into(), "lifetime".into()],
                Value::String("1h".into())
            )
        );
        assert!(parse_assignment("turn").is_err());
        assert!(parse_assignment("a..b=1").is_err());
    }
}
