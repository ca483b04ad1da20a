//! Role manifests: when a role applies, which files it renders, and the vars
//! (with defaults) it brings. Built-in roles are embedded in the binary;
//! `--roles DIR` adds roles or replaces built-in ones by name.
//!
//! A role directory holds `NAME.yaml` manifests and a `templates/` tree, the
//! same layout as this repository's `roles/` and `templates/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use crate::problem::{Problem, Problems, deserialize_at, suggestion_for_serde_message};

static BUILTIN_ROLES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/roles");
pub static BUILTIN_TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// A role manifest, as written in `roles/NAME.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub description: Option<String>,
    /// A minijinja expression over the host vars; the role applies when true.
    #[serde(default = "always")]
    pub when: String,
    /// The vars this role brings, with their default values. Their keys
    /// become known keys, and a default's type is the var's type.
    #[serde(default)]
    pub defaults: Mapping,
    /// The options' `per_customer` values: the layer above `defaults` for
    /// a homeserver sharing its machine (see `inventory::Placement`).
    #[serde(skip)]
    pub customer_defaults: Mapping,
    /// The vars this role declares: type, default (or required),
    /// description, example, whether secret. A declared option's default
    /// is its own, never in `defaults`.
    #[serde(default)]
    pub options: BTreeMap<String, OptionSpec>,
    /// Rules across vars, checked for every host the role applies to
    /// before anything renders.
    #[serde(default)]
    pub assertions: Vec<Assertion>,
    /// Data the role's assertions read by name (known keys, reserved
    /// names): a value, or `{lines_of: FILE}` for a text file next to the
    /// manifest with one entry per line (`#` starts a comment).
    #[serde(default)]
    pub constants: BTreeMap<String, Constant>,
    /// The secrets this role derives, by name, with what each is for.
    /// Templates of any role read them as `secrets.NAME`; no two roles may
    /// declare the same name.
    #[serde(default)]
    pub secrets: BTreeMap<crate::secrets::SecretName, String>,
    /// Of those, the ones every homeserver on one machine shares (a
    /// service the machine runs once for all its customers): derived once
    /// for the machine.
    #[serde(default)]
    pub machine_secrets: Vec<crate::secrets::SecretName>,
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// The host as a system (see `src/system/`): Debian packages, system
    /// groups and users, directories and systemd services this role needs.
    /// Every field is a template; each item may have a `when`.
    #[serde(default)]
    pub repositories: Vec<RepositorySpec>,
    #[serde(default)]
    pub packages: Vec<PackageSpec>,
    #[serde(default)]
    pub groups: Vec<GroupSpec>,
    #[serde(default)]
    pub users: Vec<UserSpec>,
    #[serde(default)]
    pub directories: Vec<DirectorySpec>,
    #[serde(default)]
    pub venvs: Vec<VenvSpec>,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    #[serde(default)]
    pub databases: Vec<DatabaseSpec>,
    #[serde(default)]
    pub generated: Vec<GeneratedSpec>,
    /// Pinned release archives and binaries the role installs (see
    /// `ArtifactSpec`).
    #[serde(default)]
    pub artifacts: Vec<ArtifactSpec>,
    #[serde(default)]
    pub certificates: Vec<CertificateSpec>,
    /// What this role keeps that cannot be rendered again (a database,
    /// uploads, a service's state, a generated key): what a backup holds
    /// and a restore puts back. Templates see the items of every role
    /// that applies as `host_data`.
    #[serde(default)]
    pub data: Vec<DataSpec>,
    /// Things the operator asks for on demand (`matrixctl admin create`),
    /// by name: a program run on the host with its input on stdin.
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskSpec>,
    /// Templates of notes for the operator (like a DNS record to create);
    /// a note that renders empty is not shown.
    #[serde(default)]
    pub notes: Vec<String>,
    /// What the customer must do off the host for this role, for
    /// `matrixctl onboard`: DNS records, files their website serves,
    /// snippets of web server configuration, a paragraph of instructions.
    #[serde(default)]
    pub checklist: Vec<ChecklistSpec>,
    /// What `matrixctl check` verifies from outside on hosts this role
    /// applies to, beyond the protocol's own checks: a URL serving what
    /// the host renders, registration behaving as configured, the ports
    /// answering.
    #[serde(default)]
    pub probes: Vec<ProbeSpec>,
    /// Looks at the host that say whether it is well beyond its files (the
    /// newest backup's age): read-only scripts that plan runs in its
    /// observation and `check` over SSH (see `src/health.rs`).
    #[serde(default)]
    pub health: Vec<HealthSpec>,
    /// Looks only `matrixctl status` runs, written like `health:` (the
    /// version of what runs): what an operator reads at a glance, not
    /// what decides an apply.
    #[serde(default)]
    pub status: Vec<HealthSpec>,
    /// What the role exposes to Prometheus on the host: each entry is
    /// exported to the list `metrics_targets` (`fleet.metrics_targets`)
    /// with its job, port and path, for the monitoring machine to scrape.
    #[serde(default)]
    pub metrics: Vec<MetricsSpec>,
    /// The condition every role's system items (repositories, packages,
    /// accounts, directories, venvs, services, databases, generated files,
    /// certificates) need besides their own `when`: matrixctl manages the
    /// system on this host. Declared once, by one role (services), for
    /// all; templates and conditions read its value as `system_managed`.
    #[serde(default)]
    pub system_when: Option<String>,
    /// Options this role renamed: old name to new (top-level vars). An
    /// inventory that still sets the old name works, its value under the
    /// new one, with a warning naming the new one; for one release, then
    /// the entry moves to `removed_options`.
    #[serde(default)]
    pub renamed_options: BTreeMap<String, String>,
    /// Options this role no longer has: old name to what replaced it. An
    /// inventory that sets one gets an error saying so, at its line.
    #[serde(default)]
    pub removed_options: BTreeMap<String, String>,
    /// The ports this role's service needs open; the firewall is built
    /// from the ports of every role that applies.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Entries (templates) this role adds to lists other roles read, by
    /// list name: templates see every applying role's entries, in role
    /// order, as `contributions.NAME` (an appservice adds its registration
    /// to a list the homeserver's config reads).
    #[serde(default)]
    pub contributes: BTreeMap<String, Vec<String>>,
    /// What a host this role applies to tells the other hosts of the
    /// inventory: entries of named lists, which every host's templates
    /// read as `fleet.LIST` (a backup client's public key for the
    /// repository machine's authorized_keys).
    #[serde(default)]
    pub exports: Vec<ExportSpec>,
    /// For a role whose files decide which ports the host accepts (a
    /// firewall): when it applies, its files must keep the SSH port
    /// matrixctl connects through open, or the host is refused.
    #[serde(default)]
    pub keeps_ssh_open: Option<KeepsSshOpen>,
    /// What this role's settings mean to people, by name: expressions over
    /// the host's vars (`registration`, the ports a firewall accepts).
    /// Each apply stores them in the host's record, so the next plan can
    /// compare what the host has with what it will get.
    #[serde(default)]
    pub facts: BTreeMap<String, String>,
    /// Lines for the plan's impact summary when this role's files change:
    /// templates over `before` (the facts of the last apply; undefined on
    /// a host matrixctl never applied) and `after` (the facts now). Each
    /// non-empty line of the output is one effect.
    #[serde(default)]
    pub impacts: Vec<String>,
    /// Changes plan refuses until the operator says to go ahead: `text`
    /// is a template like an impact's (over `before`, `after` and
    /// `adopting`); when it renders to text, the host is refused with it,
    /// unless `unless` (an expression over the host's vars, like `when`)
    /// is true.
    #[serde(default)]
    pub refusals: Vec<RefusalSpec>,
    /// Commands (templates) that check this role's new files on the host
    /// before they take effect, like a web server's config test.
    #[serde(default)]
    pub validators: Vec<String>,
    /// What makes this role's changes take effect, like reloading a server.
    #[serde(default)]
    pub handlers: Vec<HandlerSpec>,
    /// What to run once the role no longer applies and its files were
    /// removed: stop its service, or reload the server that included them.
    #[serde(default)]
    pub removal_handlers: Vec<HandlerSpec>,
    /// Parts of the homeserver this role puts on other machines of the
    /// inventory than the homeserver's own (its workers, its database):
    /// each a part's name, an expression giving the machines' names, and
    /// whether a part's machine is applied before or after the
    /// homeserver's own.
    #[serde(default)]
    pub places: Vec<PlaceSpec>,
    /// What this role renders on a machine that carries a part of a
    /// homeserver, by part name: the kinds of this manifest the part
    /// takes (`files`, `services`, `handlers`, ...). A role without the
    /// part renders nothing there. Templates see the names of the parts
    /// a machine carries as `parts` (`["main"]` on the homeserver's own
    /// machine).
    #[serde(default)]
    pub parts: BTreeMap<String, Vec<ManifestKind>>,
}

/// Where a role puts a part of the homeserver (see `Manifest::places`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceSpec {
    /// The part's name, which roles' `parts:` name too.
    pub part: String,
    /// An expression over the host's vars giving a list of machine names
    /// (the homeserver's own machine among them is left out).
    pub machines: String,
    /// The var an error about a machine it names points at.
    pub key: String,
    /// Applied before the homeserver's machine (what it needs to start,
    /// like its database) or after it (what needs it, like its workers).
    pub applied: PartOrder,
}

/// When a part's machine is applied, next to the homeserver's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartOrder {
    Before,
    After,
}

/// The kinds of a manifest a part of a homeserver may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManifestKind {
    Files,
    Repositories,
    Packages,
    Groups,
    Users,
    Directories,
    Venvs,
    Services,
    Databases,
    Generated,
    Artifacts,
    Certificates,
    Ports,
    Contributes,
    Validators,
    Handlers,
    RemovalHandlers,
    Notes,
    Exports,
}

impl Manifest {
    /// This manifest as parts of a homeserver take it: the kinds listed
    /// kept (its exports with its metrics targets), every other kind that
    /// acts on a host or speaks of the homeserver as a whole (data, tasks,
    /// probes, looks, facts, the checklist) left out. None when the role has no share
    /// in any of those parts.
    pub fn for_parts(&self, parts: &[String]) -> Option<Manifest> {
        let kinds: Vec<ManifestKind> = parts
            .iter()
            .filter_map(|part| self.parts.get(part))
            .flatten()
            .copied()
            .collect();
        if !parts.iter().any(|part| self.parts.contains_key(part)) {
            return None;
        }
        let keeps = |kind: ManifestKind| kinds.contains(&kind);
        let mut manifest = self.clone();
        macro_rules! keep {
            ($($kind:ident => $field:ident),* $(,)?) => {
                $(if !keeps(ManifestKind::$kind) {
                    manifest.$field = Default::default();
                })*
            };
        }
        keep!(
            Files => files,
            Repositories => repositories,
            Packages => packages,
            Groups => groups,
            Users => users,
            Directories => directories,
            Venvs => venvs,
            Services => services,
            Databases => databases,
            Generated => generated,
            Artifacts => artifacts,
            Certificates => certificates,
            Ports => ports,
            Contributes => contributes,
            Validators => validators,
            Handlers => handlers,
            RemovalHandlers => removal_handlers,
            Notes => notes,
            Exports => exports,
        );
        manifest.data = Vec::new();
        manifest.tasks = BTreeMap::new();
        manifest.checklist = Vec::new();
        manifest.probes = Vec::new();
        manifest.health = Vec::new();
        manifest.status = Vec::new();
        manifest.metrics = Vec::new();
        manifest.facts = BTreeMap::new();
        manifest.impacts = Vec::new();
        manifest.refusals = Vec::new();
        manifest.places = Vec::new();
        Some(manifest)
    }
}

pub use crate::options::{OptionSpec, OptionType};

/// One of a role's constants, as its manifest gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Constant {
    Lines { lines_of: String },
    Value(Value),
}

/// A rule over a host's vars: when `that` is false, the host is refused
/// with `message` (a template) at the var `key`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assertion {
    /// An expression giving a list (or a map): the rule is checked once
    /// per item (per key of a map), which `that`, `key`, `message` and
    /// `hint` read as `item`, with `index` (from 0) and, for a map, `value`.
    #[serde(default)]
    pub each: Option<String>,
    /// A minijinja expression over the host vars that must hold.
    pub that: String,
    /// The var the message is about (its file and line are shown), dotted;
    /// a template (`oidc_providers[{{ index }}].idp_id`).
    pub key: String,
    /// What is wrong, for people; may use `{{ vars }}`.
    pub message: String,
    #[serde(default)]
    pub hint: Option<String>,
}

/// One entry of the customer's checklist. Every string is a template over
/// the host's vars; an entry whose `when` is false, or that renders to
/// nothing, is left out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecklistSpec {
    /// The part of the checklist it belongs in (`DNS records`); entries
    /// with the same section are shown together.
    pub section: String,
    /// Sections show lowest first (then by name).
    #[serde(default = "default_handler_order")]
    pub order: u32,
    #[serde(default)]
    pub when: Option<String>,
    /// A paragraph of instructions (Markdown inline syntax: `code`).
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub records: Vec<RecordSpec>,
    /// Files someone else's web server must serve, with the content this
    /// host renders for them.
    #[serde(default)]
    pub served: Vec<ServedSpec>,
    /// Ready-to-paste configuration, from a template that sees the vars
    /// and `served` (each with `url`, `path`, `content` and `json`, the
    /// content on one line).
    #[serde(default)]
    pub snippets: Vec<SnippetSpec>,
}

/// One thing `matrixctl check` verifies from outside; each string is a
/// template over the host's vars. Exactly one of `served`,
/// `registration` and `ports_on` is given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    #[serde(default)]
    pub when: Option<String>,
    /// A URL that must serve what the host renders at `file` (JSON
    /// compared as values, anything else byte for byte).
    #[serde(default)]
    pub served: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
    /// A homeserver's client base URL, whose registration must be what
    /// `expect` says: `closed`, `token`, `email` or `open`.
    #[serde(default)]
    pub registration: Option<String>,
    #[serde(default)]
    pub expect: Option<String>,
    /// A host name on which every TCP port the roles open must accept a
    /// connection from outside.
    #[serde(default)]
    pub ports_on: Option<String>,
    /// A URL that must answer a GET with one of `status`: an endpoint
    /// that is there (a 401 from one that asks for a token counts), which
    /// `what` names for people.
    #[serde(default)]
    pub answers: Option<String>,
    #[serde(default)]
    pub status: Vec<u16>,
    #[serde(default)]
    pub what: Option<String>,
}

/// A DNS record the customer creates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSpec {
    /// An expression giving a list: one record per item, which the other
    /// fields read as `item`.
    #[serde(default)]
    pub each: Option<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    #[serde(default)]
    pub when: Option<String>,
}

/// A file at `url` whose content is what this host renders at `file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServedSpec {
    pub url: String,
    pub file: String,
    #[serde(default)]
    pub when: Option<String>,
}

/// Configuration for one kind of web server (or hosting service).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnippetSpec {
    /// For people: `a web server (inside the server block of example.com)`.
    pub label: String,
    /// A template under `templates/`.
    pub template: String,
    #[serde(default)]
    pub when: Option<String>,
}

/// How a role that filters traffic keeps matrixctl's way in open.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepsSshOpen {
    /// The role's option naming the SSH port to keep open; `0` (its
    /// default) means the port matrixctl really connects to.
    pub port_option: String,
    /// A line one of the role's rendered files must hold (a template over
    /// `ssh_port`), compared word by word, like `tcp dport {{ ssh_port }} accept`.
    pub rule: String,
}

/// A command that makes a role's changes take effect.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerSpec {
    /// What it does, for people: `restart the homeserver`.
    pub name: String,
    /// The command (a template), run with `sh -c` on the host.
    pub command: String,
    /// Handlers run in this order, lowest first (then by name).
    #[serde(default = "default_handler_order")]
    pub order: u32,
    /// What people notice while it runs, shown in the plan's impact
    /// summary: `a short outage for users`.
    #[serde(default)]
    pub impact: Option<String>,
    /// For a change that could cut matrixctl off (the firewall): a command
    /// whose output saves the live state, and one that restores it from
    /// the file `$MATRIXCTL_SAVED`. Before the handler runs, the host arms
    /// the restore to run after `confirm_within` seconds; only a fresh
    /// connection from matrixctl afterwards disarms it.
    #[serde(default)]
    pub save: Option<String>,
    #[serde(default)]
    pub revert: Option<String>,
    #[serde(default)]
    pub confirm_within: Option<String>,
}

fn default_handler_order() -> u32 {
    50
}

/// A port (or range) a role needs open to the world.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// A number, a range `49152-49573`, or a template rendering to either.
    pub port: serde_yaml::Value,
    pub proto: Proto,
    /// Open it only when this expression is true.
    #[serde(default)]
    pub when: Option<String>,
    /// What it is for, shown in the ruleset and the docs.
    pub description: String,
    /// Served once for the whole machine (the web server, TURN), so the
    /// same port from several homeservers sharing a machine is one; a
    /// port of a homeserver's own service is refused twice.
    #[serde(default)]
    pub shared: bool,
    /// Open it to these addresses alone: an expression giving a list of
    /// IP addresses (the other machines of a homeserver spread over
    /// several). Unset: open to everyone.
    #[serde(default)]
    pub from: Option<String>,
    /// One port per item of this list (an expression), as a file's `each`:
    /// the other fields read `item` and `index`.
    #[serde(default)]
    pub each: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    Tcp,
    Udp,
}

fn always() -> String {
    "true".to_string()
}

/// One file a role renders.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Template name under the templates root, e.g. `web/site.conf.j2`.
    pub template: String,
    /// Absolute destination path on the host; may use `{{ vars }}`.
    pub dest: String,
    pub mode: Mode,
    /// Owner and group names; may use `{{ vars }}`. Unset leaves them alone.
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// Never show this file's content in diffs, even without a known secret in it.
    #[serde(default)]
    pub sensitive: bool,
    /// Render this file only when this expression is true.
    #[serde(default)]
    pub when: Option<String>,
    /// An expression giving a list: one file per item, which `dest`,
    /// `when`, `with` and the template read as `item` (with `index`).
    #[serde(default)]
    pub each: Option<String>,
    /// Variables of this file's template alone, so one template serves
    /// several roles (every unit of a `service:` block, every appservice
    /// registration): a map whose strings are templates over the host's
    /// vars, rendered before the file is.
    #[serde(default)]
    pub with: Option<serde_yaml::Mapping>,
}

/// An apt repository, its signing key pinned by fingerprint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySpec {
    /// Names its files (`matrixctl-NAME.sources`, `matrixctl-NAME.asc`).
    pub name: String,
    pub url: String,
    pub suite: String,
    #[serde(default = "main_component")]
    pub components: String,
    /// The ASCII-armored public key the repository signs with.
    pub key: String,
    /// The key's fingerprint: a key with another one is refused.
    pub fingerprint: String,
    #[serde(default)]
    pub when: Option<String>,
}

fn main_component() -> String {
    "main".to_string()
}

/// A Debian package; `version` pins it (an upgrade or a downgrade).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSpec {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub when: Option<String>,
}

/// A system group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub name: String,
    #[serde(default)]
    pub when: Option<String>,
}

/// A system account (no login shell, no home created).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub name: String,
    pub group: String,
    pub home: String,
    /// The account logs in over SSH to run what its authorized_keys
    /// forces (its shell is /bin/sh); otherwise it cannot log in.
    #[serde(default)]
    pub login: bool,
    #[serde(default)]
    pub when: Option<String>,
}

/// A directory, with its parents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySpec {
    pub path: String,
    #[serde(default = "root_account")]
    pub owner: String,
    #[serde(default = "root_account")]
    pub group: String,
    #[serde(default = "directory_mode")]
    pub mode: Mode,
    #[serde(default)]
    pub when: Option<String>,
}

fn root_account() -> String {
    "root".to_string()
}

fn directory_mode() -> Mode {
    Mode(0o755)
}

/// A Python virtualenv holding pinned requirements (`name==version`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VenvSpec {
    pub path: String,
    pub requirements: Vec<String>,
    /// The package index to install from (empty: pip's default).
    #[serde(default)]
    pub index_url: Option<String>,
    /// A directory of wheels on the host to install from, and only from
    /// (empty: the index).
    #[serde(default)]
    pub find_links: Option<String>,
    #[serde(default)]
    pub when: Option<String>,
}

/// A PostgreSQL database on the host's own server, and the login role that
/// owns it, made once with what the homeserver (and most applications) require
/// (UTF8, C collation and ctype, from template0); never dropped or altered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSpec {
    pub name: String,
    pub owner: String,
    /// The owner's password, set when matrixctl creates the role (a
    /// template, normally a secret: it never shows in a plan).
    pub password: String,
    #[serde(default)]
    pub when: Option<String>,
}

/// A file a program on the host makes when it is missing (a signing key):
/// never rendered, read back or replaced by matrixctl. `command` runs as
/// A release the role installs from a URL, pinned by its SHA-256: a tar
/// or zip archive unpacked, or a single binary, into `dest/VERSION`, with
/// `dest/current` pointing at the version in use. The download is checked
/// on the host before anything is live; a version already there (its sum
/// recorded beside it) is never downloaded again, and switching back to
/// it is switching the link.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSpec {
    /// What it is, for the plan and the binary's file name: `element-web`.
    pub name: String,
    /// Its version (a template): the directory it goes to.
    pub version: String,
    /// Where it is fetched from (a template that may read `version`): an
    /// http(s) URL, or an absolute path on the host (a mirror there).
    pub url: String,
    /// Its SHA-256, hex (a template).
    pub sha256: String,
    pub unpack: Unpack,
    /// Leading path components a tar archive's members lose (its
    /// top directory).
    #[serde(default)]
    pub strip: u8,
    /// The directory holding each version and the `current` link.
    pub dest: String,
    #[serde(default = "root_account")]
    pub owner: String,
    #[serde(default = "root_account")]
    pub group: String,
    #[serde(default)]
    pub when: Option<String>,
}

/// How an artifact is laid out once fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unpack {
    Tar,
    Zip,
    /// One executable file, `dest/VERSION/NAME`.
    Binary,
}

impl Unpack {
    pub fn name(self) -> &'static str {
        match self {
            Unpack::Tar => "tar",
            Unpack::Zip => "zip",
            Unpack::Binary => "binary",
        }
    }
}

/// root once the new files are in place, before the validators; the file
/// then gets `owner`, `group` and `mode`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratedSpec {
    /// What it is, for the plan: `signing key`.
    pub what: String,
    pub path: String,
    pub command: String,
    #[serde(default = "root_account")]
    pub owner: String,
    #[serde(default = "root_account")]
    pub group: String,
    #[serde(default = "generated_mode")]
    pub mode: Mode,
    #[serde(default)]
    pub when: Option<String>,
}

fn generated_mode() -> Mode {
    Mode(0o600)
}

/// One entry a host adds to a list the whole inventory reads
/// (`fleet.LIST`): fields rendered with the exporting host's vars.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSpec {
    /// The list's name, like `backup_clients`.
    pub list: String,
    #[serde(default)]
    pub when: Option<String>,
    /// One entry per item of this list (an expression), as a file's
    /// `each`: `when` and the fields read `item` and `index`.
    #[serde(default)]
    pub each: Option<String>,
    /// Field name to template. An entry whose templates read `secrets`
    /// makes every file that reads its list one holding secrets.
    pub fields: BTreeMap<String, String>,
}

/// A Prometheus target a role exposes on the host (see `Manifest::metrics`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSpec {
    /// The job's name (`node`, a homeserver's), which alert rules name.
    pub job: String,
    /// The port it answers on, a template.
    pub port: String,
    /// The path of its metrics.
    #[serde(default = "metrics_path")]
    pub path: String,
    /// The machine's, not the homeserver's (the node exporter): on a
    /// machine shared by several customers, one target for all.
    #[serde(default)]
    pub shared: bool,
    #[serde(default)]
    pub when: Option<String>,
    /// One target per item of this list (an expression), as a file's
    /// `each` (a homeserver's workers).
    #[serde(default)]
    pub each: Option<String>,
}

fn metrics_path() -> String {
    "/metrics".to_string()
}

/// The export list a role's `metrics:` entries go to.
pub const METRICS_TARGETS: &str = "metrics_targets";

/// One thing a role keeps: a PostgreSQL database (by name), an SQLite
/// database (copied through SQLite's online backup, consistent while in
/// use), a directory or a file (archived as they are).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    pub kind: DataKind,
    /// The database's name (`postgresql`) or the path (the others): a
    /// template.
    pub location: String,
    /// What it is, for people: `the media store`.
    pub what: String,
    #[serde(default)]
    pub when: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    Postgresql,
    Sqlite,
    Directory,
    File,
}

impl DataKind {
    pub fn name(self) -> &'static str {
        match self {
            DataKind::Postgresql => "postgresql",
            DataKind::Sqlite => "sqlite",
            DataKind::Directory => "directory",
            DataKind::File => "file",
        }
    }
}

/// A certificate for `name`, kept at `path` (PEM) by `command` (an ACME
/// client), run after the services started when the certificate is
/// missing, self-signed (a placeholder), for other names, or within 30
/// days of its end.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSpec {
    pub name: String,
    pub path: String,
    pub command: String,
    #[serde(default)]
    pub when: Option<String>,
}

/// A task a role offers the operator, run on the host through the same
/// connection as apply. `script` (a shell script) and `input` (its stdin,
/// where secrets go: never a command line) are templates over the host's
/// vars and `args`, the command line's values.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub description: String,
    pub script: String,
    #[serde(default)]
    pub input: String,
    #[serde(default)]
    pub when: Option<String>,
    /// A template: when it renders to text, the task is refused with that
    /// text before the host is contacted (a task that could not do what
    /// the operator wants on this host, as its vars stand).
    #[serde(default)]
    pub refuse: Option<String>,
}

/// A look at the host's health (see `Manifest::health`): `script` is a
/// template, run on the host with nothing on stdin; it must change
/// nothing, and prints `ok|warning|error MESSAGE`, then maybe `hint TEXT`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    pub name: String,
    #[serde(default)]
    pub when: Option<String>,
    pub script: String,
}

/// A change that needs the operator's word (see `Manifest::refusals`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefusalSpec {
    pub text: String,
    pub unless: String,
}

/// A systemd unit, enabled at boot and running unless said otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `null`: whether it runs is none of matrixctl's business (a oneshot
    /// unit that loads something at boot).
    #[serde(default = "running")]
    pub running: Option<bool>,
    #[serde(default)]
    pub when: Option<String>,
    /// An expression giving a list: one unit per item, which `name` and
    /// `when` read as `item` (with `index`).
    #[serde(default)]
    pub each: Option<String>,
}

fn yes() -> bool {
    true
}

fn running() -> Option<bool> {
    Some(true)
}

/// A file mode in octal with its leading zero, like `"0640"` (serde_yaml
/// reads an unquoted `0640` as that string too; a bare `640` is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Mode, D::Error> {
        let complaint = "expected an octal mode with its leading zero, like \"0644\"";
        match Value::deserialize(deserializer)? {
            Value::String(text)
                if (3..=4).contains(&text.len())
                    && text.bytes().all(|b| (b'0'..=b'7').contains(&b)) =>
            {
                u32::from_str_radix(&text, 8)
                    .map(Mode)
                    .map_err(|_| serde::de::Error::custom(complaint))
            }
            _ => Err(serde::de::Error::custom(complaint)),
        }
    }
}

/// Where a role's manifest came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    Dir(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    /// The manifest's path, for error messages (`roles/NAME.yaml` when built in).
    pub path: PathBuf,
    pub origin: Origin,
    pub manifest: Manifest,
    /// The manifest's constants, files read.
    pub constants: Mapping,
}

/// All roles in effect, sorted by name, and where their templates live.
#[derive(Debug, Clone)]
pub struct RoleSet {
    pub roles: BTreeMap<String, Role>,
    /// Every declared option by top-level var, with the role declaring it.
    /// A dotted name (`apps.irc`) is a field of an object var
    /// several roles share; that var's entry is the object they make up.
    pub option_tree: BTreeMap<String, (OptionSpec, String)>,
    /// `--roles` directories' `templates/`, searched last-given first, before
    /// the built-in templates.
    pub template_dirs: Vec<PathBuf>,
}

impl RoleSet {
    /// The built-in roles plus those in `extra_dirs` (later directories win).
    pub fn load(extra_dirs: &[PathBuf]) -> Result<RoleSet, Problems> {
        let mut roles = BTreeMap::new();
        let mut problems = Vec::new();
        for file in BUILTIN_ROLES.files() {
            let path = Path::new("roles").join(file.path());
            let Some(name) = role_name(&path) else {
                continue;
            };
            let text = String::from_utf8_lossy(file.contents());
            match parse_manifest(&path, &text) {
                Ok(manifest) => {
                    let read = |file: &str| {
                        BUILTIN_ROLES
                            .get_file(file)
                            .map(|file| String::from_utf8_lossy(file.contents()).into_owned())
                            .ok_or_else(|| "no such file among the built-in roles".to_string())
                    };
                    match constants(&path, &manifest, read) {
                        Ok(constants) => {
                            roles.insert(
                                name.clone(),
                                Role {
                                    name,
                                    path,
                                    origin: Origin::Builtin,
                                    manifest,
                                    constants,
                                },
                            );
                        }
                        Err(problem) => problems.push(problem),
                    }
                }
                Err(problem) => problems.push(problem),
            }
        }
        let mut template_dirs = Vec::new();
        for dir in extra_dirs {
            let entries = match fs_err::read_dir(dir) {
                Ok(entries) => entries,
                Err(error) => {
                    problems.push(
                        Problem::new(format!("cannot read the roles directory: {error}"))
                            .in_file(dir)
                            .with_hint(Some("--roles takes a directory holding NAME.yaml manifests and a templates/ directory".into())),
                    );
                    continue;
                }
            };
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .collect();
            paths.sort();
            for path in paths {
                let Some(name) = role_name(&path) else {
                    continue;
                };
                let text =
                    match crate::input::read_text(&path, Some(dir), crate::input::MAX_YAML_BYTES) {
                        Ok(text) => text,
                        Err(problem) => {
                            problems.push(problem);
                            continue;
                        }
                    };
                match parse_manifest(&path, &text) {
                    Ok(mut manifest) => {
                        let read = |file: &str| {
                            crate::input::read_text(
                                &dir.join(file),
                                Some(dir),
                                crate::input::MAX_YAML_BYTES,
                            )
                            .map_err(|problem| problem.message)
                        };
                        let mut constants = match constants(&path, &manifest, read) {
                            Ok(constants) => constants,
                            Err(problem) => {
                                problems.push(problem);
                                continue;
                            }
                        };
                        // A replacement that declares no options of its own
                        // keeps the replaced role's: its templates most
                        // often read the same vars.
                        if let Some(replaced) = roles.get(&name)
                            && manifest.options.is_empty()
                        {
                            adopt_options(&mut manifest, &replaced.manifest);
                            for (key, value) in &replaced.constants {
                                constants
                                    .entry(key.clone())
                                    .or_insert_with(|| value.clone());
                            }
                        }
                        // Replacing a role that keeps SSH open never
                        // drops that promise by accident.
                        let replaced = roles
                            .get(&name)
                            .map(|role: &Role| role.manifest.keeps_ssh_open.is_some());
                        if replaced == Some(true) && manifest.keeps_ssh_open.is_none() {
                            problems.push(
                                Problem::new(format!(
                                    "role `{name}` replaces one that keeps the SSH port open (`keeps_ssh_open`), and does not declare it"
                                ))
                                .in_file(&path)
                                .with_hint(Some("declare `keeps_ssh_open: {port_option: …, rule: …}`: matrixctl then refuses files that would lock it out".into())),
                            );
                        }
                        roles.insert(
                            name.clone(),
                            Role {
                                name,
                                path,
                                origin: Origin::Dir(dir.clone()),
                                manifest,
                                constants,
                            },
                        );
                    }
                    Err(problem) => problems.push(problem),
                }
            }
            template_dirs.insert(0, dir.join("templates"));
        }
        let option_tree = match option_tree(&roles) {
            Ok(tree) => tree,
            Err(mut more) => {
                problems.append(&mut more);
                BTreeMap::new()
            }
        };
        let set = RoleSet {
            roles,
            option_tree,
            template_dirs,
        };
        if let Err(mut more) = set.check_declarations() {
            problems.append(&mut more);
        }
        if problems.is_empty() {
            Ok(set)
        } else {
            Err(Problems(problems))
        }
    }

    /// The one gate of every role's system items, and the role that
    /// declares it (see `Manifest::system_when`); none when no role does.
    pub fn system_gate(&self) -> Option<(&Role, &str)> {
        self.roles.values().find_map(|role| {
            role.manifest
                .system_when
                .as_deref()
                .map(|gate| (role, gate))
        })
    }

    /// The new name of a var a role renamed, and the role.
    pub fn renamed(&self, old: &str) -> Option<(&str, &Role)> {
        self.roles.values().find_map(|role| {
            role.manifest
                .renamed_options
                .get(old)
                .map(|new| (new.as_str(), role))
        })
    }

    /// What replaced a var a role removed, and the role.
    pub fn removed(&self, old: &str) -> Option<(&str, &Role)> {
        self.roles.values().find_map(|role| {
            role.manifest
                .removed_options
                .get(old)
                .map(|instead| (instead.as_str(), role))
        })
    }

    /// The secrets a machine's customers share (`machine_secrets`), in
    /// name order.
    pub fn machine_secret_names(&self) -> Vec<crate::secrets::SecretName> {
        self.every(|manifest| manifest.machine_secrets.clone())
    }

    /// Every secret the roles declare, in name order.
    pub fn secret_names(&self) -> Vec<crate::secrets::SecretName> {
        self.every(|manifest| manifest.secrets.keys().cloned().collect())
    }

    /// What `of` gives for every role, sorted, each once.
    fn every<T: Ord>(&self, of: impl Fn(&Manifest) -> Vec<T>) -> Vec<T> {
        let mut all: Vec<T> = self
            .roles
            .values()
            .flat_map(|role| of(&role.manifest))
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// The option reference, in Markdown: one table per role that declares
    /// options, in role order, each option with its type, default and
    /// description (and an example when the role gives one).
    pub fn options_reference(&self) -> String {
        let mut out = String::new();
        for role in self.roles.values() {
            if role.manifest.options.is_empty() {
                continue;
            }
            let about = role.manifest.description.as_deref().unwrap_or_default();
            out.push_str(&format!("#### {} ({})\n\n", role.name, table_cell(about)));
            out.push_str("| key | type | default | what it does |\n|---|---|---|---|\n");
            for (key, spec) in &role.manifest.options {
                reference_rows(key, spec, &mut out);
            }
            out.push('\n');
            if !role.manifest.data.is_empty() {
                let kept: Vec<String> = role
                    .manifest
                    .data
                    .iter()
                    .map(|item| format!("{} (`{}`)", item.what, item.kind.name()))
                    .collect();
                out.push_str(&format!(
                    "What it keeps, which backups hold: {}.\n\n",
                    kept.join("; ")
                ));
            }
        }
        out
    }

    /// Every value in `vars` that an option declares secret.
    pub fn option_secret_values(&self, vars: &Mapping) -> Vec<String> {
        let mut values = Vec::new();
        for (key, (spec, _)) in &self.option_tree {
            if let Some(value) = vars.get(key.as_str()) {
                spec.secret_values(value, &mut values);
            }
        }
        values
    }

    /// The names of the options declared as `PREFIX.NAME`, sorted.
    pub fn option_keys_under(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .roles
            .values()
            .flat_map(|role| role.manifest.options.keys())
            .filter_map(|key| key.strip_prefix(prefix))
            .filter(|name| !name.contains('.'))
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The default of every role var, and the role that declares it.
    pub fn defaults(&self) -> BTreeMap<&str, (&Value, &Role)> {
        let mut defaults = BTreeMap::new();
        for role in self.roles.values() {
            for (key, value) in &role.manifest.defaults {
                if let Some(key) = key.as_str() {
                    defaults.entry(key).or_insert((value, role));
                }
            }
        }
        defaults
    }

    /// What the roles declare, together: no two declare one secret or one
    /// option, each option declaration can work, and two roles may share an
    /// untyped var (both read it) but not disagree on its default.
    fn check_declarations(&self) -> Result<(), Vec<Problem>> {
        let mut seen: BTreeMap<String, (&Value, &Role)> = BTreeMap::new();
        let mut problems = Vec::new();
        let mut secret_owners: BTreeMap<&crate::secrets::SecretName, &Role> = BTreeMap::new();
        let mut option_owners: BTreeMap<&str, &Role> = BTreeMap::new();
        for role in self.roles.values() {
            for name in role.manifest.secrets.keys() {
                if let Some(other) = secret_owners.insert(name, role) {
                    problems.push(
                        Problem::new(format!(
                            "roles `{}` and `{}` both declare the secret `{name}`",
                            other.name, role.name
                        ))
                        .in_file(&role.path)
                        .at_key(format!("secrets.{name}"))
                        .with_hint(Some(format!(
                            "a role that needs another role's secret reads it as `secrets.{name}` without declaring it; a secret of its own needs a name of its own"
                        ))),
                    );
                }
            }
            if role.manifest.system_when.is_some()
                && let Some((other, _)) = self.system_gate()
                && other.name != role.name
            {
                problems.push(
                    Problem::new(format!(
                        "roles `{}` and `{}` both declare `system_when`, the one gate of every role's system items",
                        other.name, role.name
                    ))
                    .in_file(&role.path)
                    .at_key("system_when"),
                );
            }
            // An old name is no name anything still declares, and a new
            // one is: otherwise the warning would point nowhere.
            let known = |key: &str| {
                crate::values::CORE_KEYS.contains(&key)
                    || self.option_tree.contains_key(key)
                    || self
                        .roles
                        .values()
                        .any(|role| role.manifest.defaults.contains_key(key))
            };
            for (old, new) in &role.manifest.renamed_options {
                if known(old) || !known(new) {
                    problems.push(
                        Problem::new(format!(
                            "role `{}` renames `{old}` to `{new}`, but {}",
                            role.name,
                            if known(old) {
                                format!("`{old}` is still a var")
                            } else {
                                format!("no role declares `{new}`")
                            }
                        ))
                        .in_file(&role.path)
                        .at_key(format!("renamed_options.{old}")),
                    );
                }
            }
            for old in role.manifest.removed_options.keys() {
                if known(old) {
                    problems.push(
                        Problem::new(format!(
                            "role `{}` says `{old}` was removed, but it is still a var",
                            role.name
                        ))
                        .in_file(&role.path)
                        .at_key(format!("removed_options.{old}")),
                    );
                }
            }
            // A declaration that cannot work is the role's mistake, said
            // once, before any host is looked at.
            for (key, spec) in &role.manifest.options {
                for refusal in spec.declaration_problems(key) {
                    problems.push(
                        Problem::new(format!("role `{}`: {refusal}", role.name))
                            .in_file(&role.path)
                            .at_key(format!("options.{key}")),
                    );
                }
                if let Some(other) = option_owners.insert(key.as_str(), role) {
                    problems.push(
                        Problem::new(format!(
                            "roles `{}` and `{}` both declare the option `{key}`",
                            other.name, role.name
                        ))
                        .in_file(&role.path)
                        .at_key(format!("options.{key}"))
                        .with_hint(Some(
                            "a role reads another role's option without declaring it".into(),
                        )),
                    );
                }
            }
            for (key, value) in &role.manifest.defaults {
                let Some(key) = key.as_str() else {
                    problems.push(
                        Problem::new("a role default's name must be a string")
                            .in_file(&role.path)
                            .at_key("defaults"),
                    );
                    continue;
                };
                if crate::values::CORE_KEYS.contains(&key) {
                    problems.push(
                        Problem::new(format!(
                            "role `{}` declares a default for `{key}`, which matrixctl itself defines",
                            role.name
                        ))
                        .in_file(&role.path)
                        .at_key(format!("defaults.{key}"))
                        .with_hint(Some("remove it from the role's defaults; templates can use it as is".into())),
                    );
                    continue;
                }
                match seen.get(key) {
                    Some((other_value, other_role)) if *other_value != value => {
                        problems.push(
                            Problem::new(format!(
                                "roles `{}` and `{}` declare different defaults for `{key}`",
                                other_role.name, role.name
                            ))
                            .in_file(&role.path)
                            .at_key(format!("defaults.{key}")),
                        );
                    }
                    _ => {
                        seen.insert(key.to_string(), (value, role));
                    }
                }
            }
        }
        // Without the gate, system items would apply on every host (a
        // directory host included): a role set that has them must have it.
        if self.system_gate().is_none()
            && let Some(role) = self
                .roles
                .values()
                .find(|role| role.manifest.has_system_items())
        {
            problems.push(
                Problem::new(format!(
                    "role `{}` declares system items (packages, accounts, services, ...), and no role declares `system_when`, the one gate of every role's system items",
                    role.name
                ))
                .in_file(&role.path)
                .with_hint(Some(
                    "the built-in role `services` declares `system_when: manage_system and host_commands and whole_host`; a `services.yaml` of your own that replaces it must declare it too".into(),
                )),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

impl Manifest {
    /// Whether the role wants anything of the host as a system.
    fn has_system_items(&self) -> bool {
        !(self.repositories.is_empty()
            && self.packages.is_empty()
            && self.groups.is_empty()
            && self.users.is_empty()
            && self.directories.is_empty()
            && self.venvs.is_empty()
            && self.services.is_empty()
            && self.databases.is_empty()
            && self.generated.is_empty()
            && self.certificates.is_empty())
    }
}

/// One row for the option `key`, then one for each of its fields (an item
/// of a list of objects is `key[]`).
fn reference_rows(key: &str, spec: &OptionSpec, out: &mut String) {
    let shown = |value: &Value| match value {
        Value::String(text) if text.is_empty() => "`\"\"`".to_string(),
        Value::Null => "unset".to_string(),
        Value::String(text) => format!("`{}`", table_cell(text)),
        other => format!(
            "`{}`",
            table_cell(&serde_json::to_string(other).unwrap_or_default())
        ),
    };
    let default = if spec.required {
        "**required**".to_string()
    } else {
        spec.default
            .as_ref()
            .map_or_else(|| "unset".to_string(), shown)
    };
    let mut what = table_cell(spec.description.as_deref().unwrap_or_default());
    if let Some(example) = &spec.example {
        what.push_str(&format!(" Example: {}.", shown(example)));
    }
    if spec.secret {
        what.push_str(" A secret: never shown.");
    }
    if let Some(per_customer) = &spec.per_customer {
        what.push_str(&format!(" Sharing a machine: {}.", shown(per_customer)));
    }
    out.push_str(&format!(
        "| `{key}` | {} | {default} | {what} |\n",
        table_cell(&spec.type_name())
    ));
    let (prefix, fields) = match (&spec.kind, &spec.items) {
        (OptionType::List, Some(items)) => (format!("{key}[]"), &items.fields),
        _ => (key.to_string(), &spec.fields),
    };
    for (field, inner) in fields {
        reference_rows(&format!("{prefix}.{field}"), inner, out);
    }
}

/// Text on one line of a Markdown table.
fn table_cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The roles' options by top-level var. `NAME.FIELD` declares a field of
/// the object var NAME, which exists so that several roles can share it
/// (each app a field of `apps`); NAME itself is then declared by
/// none of them.
fn option_tree(
    roles: &BTreeMap<String, Role>,
) -> Result<BTreeMap<String, (OptionSpec, String)>, Vec<Problem>> {
    let mut tree: BTreeMap<String, (OptionSpec, String)> = BTreeMap::new();
    let mut shared: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for role in roles.values() {
        for (key, spec) in &role.manifest.options {
            let Some((parent, field)) = key.split_once('.') else {
                tree.insert(key.clone(), (spec.clone(), role.name.clone()));
                continue;
            };
            if field.contains('.') || parent.is_empty() || field.is_empty() {
                problems.push(
                    Problem::new(format!(
                        "role `{}`: option `{key}`: a shared var's field is `NAME.FIELD`, one level deep",
                        role.name
                    ))
                    .in_file(&role.path)
                    .at_key(format!("options.{key}")),
                );
                continue;
            }
            let entry = tree.entry(parent.to_string()).or_insert_with(|| {
                let mut object: OptionSpec = serde_yaml::from_str("{type: object, default: {}}")
                    .expect("a literal declaration");
                object.description = Some(String::new());
                (object, String::new())
            });
            entry.0.fields.insert(field.to_string(), spec.clone());
            shared
                .entry(parent.to_string())
                .or_default()
                .push(role.name.clone());
        }
    }
    for (parent, owners) in shared {
        let Some((object, owner)) = tree.get_mut(&parent) else {
            continue;
        };
        if !owner.is_empty() || object.kind != OptionType::Object {
            problems.push(Problem::new(format!(
                "role `{owner}` declares the option `{parent}`, and roles {} declare fields of it",
                owners.join(", ")
            )));
            continue;
        }
        *owner = owners.join(", ");
        object.description = Some(format!(
            "Shared by the roles {}; each field is theirs.",
            owners.join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(tree)
    } else {
        Err(problems)
    }
}

fn role_name(path: &Path) -> Option<String> {
    if path.extension()? != "yaml" {
        return None;
    }
    Some(path.file_stem()?.to_str()?.to_string())
}

fn parse_manifest(path: &Path, text: &str) -> Result<Manifest, Problem> {
    let value: Value = crate::input::parse_yaml(path, text)?;
    let value = match value {
        Value::Null => Value::Mapping(Mapping::new()),
        // A `service:` block stands for the lists and options it expands to.
        Value::Mapping(mapping) => Value::Mapping(crate::service::expand(mapping, path)?),
        other => other,
    };
    let mut manifest: Manifest = deserialize_at(value).map_err(|error| {
        Problem::new(format!("invalid role manifest: {}", error.message))
            .in_file(path)
            .at_line(crate::locate::line_of_key(text, &error.keys))
            .at_key(error.display)
            .with_hint(suggestion_for_serde_message(&error.message))
    })?;
    // Facts and impact lines are evaluated per host; a typo in one should
    // stop the run when the roles load, not print nothing at plan time.
    if let Some(name) = manifest.facts.keys().find(|name| !is_plain_name(name)) {
        return Err(Problem::new(format!(
            "invalid role manifest: fact name `{name}` may hold only a-z, 0-9 and _"
        ))
        .in_file(path)
        .at_key(format!("facts.{name}")));
    }
    // A role's metrics targets are exports of its own, for the
    // monitoring machine's templates (`fleet.metrics_targets`).
    for spec in std::mem::take(&mut manifest.metrics) {
        manifest.exports.push(ExportSpec {
            list: METRICS_TARGETS.to_string(),
            when: spec.when.clone(),
            each: spec.each.clone(),
            fields: BTreeMap::from([
                ("job".to_string(), spec.job.clone()),
                ("port".to_string(), spec.port.clone()),
                ("path".to_string(), spec.path.clone()),
                // Where it runs: a homeserver spread over machines has
                // targets on several.
                ("machine".to_string(), "{{ machine_name }}".to_string()),
                (
                    "shared".to_string(),
                    if spec.shared { "true" } else { "" }.to_string(),
                ),
            ]),
        });
        manifest.metrics.push(spec);
    }
    // Other hosts' templates read an export list as `fleet.LIST`.
    if let Some((index, export)) = manifest
        .exports
        .iter()
        .enumerate()
        .find(|(_, export)| !is_plain_name(&export.list))
    {
        return Err(Problem::new(format!(
            "invalid role manifest: export list name `{}` may hold only a-z, 0-9 and _",
            export.list
        ))
        .in_file(path)
        .at_key(format!("exports[{index}].list")));
    }
    let syntax = minijinja::Environment::new();
    let expressions = manifest.facts.iter().map(|(name, expression)| {
        (
            format!("facts.{name}"),
            syntax.compile_expression(expression).err(),
        )
    });
    let templates = manifest
        .impacts
        .iter()
        .enumerate()
        .map(|(index, template)| {
            (
                format!("impacts[{index}]"),
                syntax.template_from_str(template).err(),
            )
        });
    for (key, error) in expressions.chain(templates) {
        if let Some(error) = error {
            return Err(Problem::new(format!("invalid role manifest: {error}"))
                .in_file(path)
                .at_key(key));
        }
    }
    if let Some(name) = manifest
        .machine_secrets
        .iter()
        .find(|name| !manifest.secrets.contains_key(*name))
    {
        return Err(Problem::new(format!(
            "`{name}` is in machine_secrets but not among the role's `secrets`"
        ))
        .in_file(path)
        .at_key("machine_secrets")
        .with_hint(Some(
            "declare it under `secrets:` with what it is for, or take it out of machine_secrets"
                .to_string(),
        )));
    }
    // A declared option's default joins the role's defaults layer, so
    // precedence treats both alike; it may not be given twice.
    for (key, spec) in &manifest.options {
        if manifest.defaults.contains_key(key.as_str()) {
            return Err(Problem::new(format!(
                "`{key}` is both a declared option and in `defaults`"
            ))
            .in_file(path)
            .at_line(crate::locate::line_of_key(
                text,
                &["defaults".to_string(), key.clone()],
            ))
            .at_key(format!("defaults.{key}"))
            .with_hint(Some(format!(
                "give its default as `options.{key}.default` and remove it from `defaults`"
            ))));
        }
        // A shared var's field gets its default from the var's object.
        if key.contains('.') {
            continue;
        }
        if let Some(absent) = spec.absent_value() {
            manifest.defaults.insert(Value::String(key.clone()), absent);
        }
        if let Some(value) = &spec.per_customer {
            manifest
                .customer_defaults
                .insert(Value::String(key.clone()), value.clone());
        }
    }
    Ok(manifest)
}

/// A name templates read as an attribute: a-z, 0-9 and _, not empty.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The manifest's constants, each `lines_of` file read through `read`
/// (a plain file name next to the manifest).
fn constants(
    path: &Path,
    manifest: &Manifest,
    read: impl Fn(&str) -> Result<String, String>,
) -> Result<Mapping, Problem> {
    let mut out = Mapping::new();
    for (name, constant) in &manifest.constants {
        let value = match constant {
            Constant::Value(value) => value.clone(),
            Constant::Lines { lines_of } => {
                let plain = Path::new(lines_of)
                    .components()
                    .all(|part| matches!(part, std::path::Component::Normal(_)))
                    && !lines_of.contains('/');
                let text = if plain {
                    read(lines_of)
                } else {
                    Err("a file name next to the manifest, without `/`, was expected".into())
                };
                let text = text.map_err(|reason| {
                    Problem::new(format!(
                        "constant `{name}`: cannot read `{lines_of}`: {reason}"
                    ))
                    .in_file(path)
                    .at_key(format!("constants.{name}.lines_of"))
                })?;
                let entries = text
                    .lines()
                    .map(|line| line.split('#').next().unwrap_or_default().trim())
                    .filter(|line| !line.is_empty())
                    .map(Value::from)
                    .collect();
                Value::Sequence(entries)
            }
        };
        out.insert(Value::from(name.as_str()), value);
    }
    Ok(out)
}

/// Gives `manifest` (a replacement declaring no options) the options and
/// assertions of the role it replaces, except options it sets a default
/// for itself (those stay typed by that default).
fn adopt_options(manifest: &mut Manifest, replaced: &Manifest) {
    for (key, spec) in &replaced.options {
        if manifest.defaults.contains_key(key.as_str()) {
            continue;
        }
        if !key.contains('.')
            && let Some(absent) = spec.absent_value()
        {
            manifest.defaults.insert(Value::String(key.clone()), absent);
        }
        manifest.options.insert(key.clone(), spec.clone());
    }
    if manifest.assertions.is_empty() {
        manifest.assertions = replaced.assertions.clone();
    }
}

/// A port range open to the world, and which role wants it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OpenPort {
    pub start: u16,
    pub end: u16,
    pub proto: Proto,
    pub role: String,
    pub description: String,
    /// `443` or `49152-49573`, as firewalls write it.
    pub port: String,
    /// `443/tcp`: the port and protocol, as people write them.
    pub name: String,
    /// Its declaration's `shared`.
    #[serde(skip)]
    pub shared: bool,
    /// The only addresses it is open to (none: everyone), sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_secret_of_every_role_has_a_distinct_value() {
        let set = RoleSet::load(&[]).unwrap();
        let names = set.secret_names();
        assert!(names.len() >= 11, "{names:?}");
        let key = crate::secrets::MasterKey::from_bytes(&[9; 32]);
        let mut seen = std::collections::BTreeSet::new();
        let mut count = 0;
        for host in ["example.com", "example.org", "a.example.com"] {
            for name in &names {
                for generation in 0..3 {
                    seen.insert(key.derive(host, name, generation));
                    count += 1;
                }
            }
        }
        assert_eq!(seen.len(), count);
    }

    #[test]
    fn builtin_roles_load() {
        let set = RoleSet::load(&[]).unwrap();
        assert!(set.roles.len() > 1);
    }

    #[test]
    fn modes_must_be_octal_with_a_leading_zero() {
        // `644` is a decimal number to YAML: refused rather than guessed at.
        let bad = parse_manifest(
            Path::new("roles/x.yaml"),
            "files:\n  - template: x.j2\n    dest: /x\n    mode: 644\n",
        )
        .unwrap_err();
        assert_eq!(bad.key.as_deref(), Some("files[0].mode"));
        assert!(bad.message.contains("leading zero"), "{}", bad.message);
        let unquoted = parse_manifest(
            Path::new("roles/x.yaml"),
            "files:\n  - template: x.j2\n    dest: /x\n    mode: 0644\n",
        )
        .unwrap();
        assert_eq!(unquoted.files[0].mode, Mode(0o644));
        let good = parse_manifest(
            Path::new("roles/x.yaml"),
            "files:\n  - template: x.j2\n    dest: /x\n    mode: \"0640\"\n",
        )
        .unwrap();
        assert_eq!(good.files[0].mode, Mode(0o640));
    }
}
