//! The command line: subcommands and their flags (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Declarative provisioning for Matrix homeserver hosts.
#[derive(Debug, Parser)]
#[command(name = "matrixctl", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// When to colour output. `auto` colours a terminal unless NO_COLOR is set (and not empty).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// Print each host's program calls and their milliseconds on stderr
    /// (secrets redacted).
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,

    /// A directory of extra roles (NAME.yaml and templates/); a role named
    /// like a built-in one replaces it. May be given more than once.
    #[arg(long = "roles", global = true, value_name = "DIR")]
    pub roles: Vec<PathBuf>,
}

impl Cli {
    /// The command prints JSON, so its errors must be JSON too.
    pub fn json_output(&self) -> bool {
        match &self.command {
            Command::Plan(args) => args.json,
            Command::Apply(args) => args.json,
            Command::Show(args) => args.json,
            Command::Onboard(args) => args.format == OnboardFormat::Json,
            Command::Check(args) => args.json,
            Command::Status(args) => args.json,
            _ => false,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change on each host, without changing anything.
    Plan(PlanArgs),
    /// The fleet at a glance, worst first: per host, pending changes and
    /// drift, the last apply, services down or restarting, certificates,
    /// disk and memory, and the roles' own looks (the newest backup, the
    /// homeserver's release). One round trip per host; exit 2 when any
    /// host has an error.
    Status(StatusArgs),
    /// Make each host match the inventory.
    Apply(ApplyArgs),
    /// Write each host's desired files under DIR/HOST/, touching no host.
    Render(RenderArgs),
    /// Print the summary of a plan saved with `plan --out` (each change,
    /// no contents), touching no host.
    Show(ShowArgs),
    /// List every option the roles declare (type, default, description),
    /// as the Markdown reference in docs/inventory.md.
    Options,
    /// Accounts on a host's homeserver: `admin create HOST @name`.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Registration tokens of a host's homeserver: `token create HOST`.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Back each host's data up now (`backup` set in the inventory) and
    /// report the archive made: what the timer does, at once.
    Backup(BackupArgs),
    /// List a host's backup archives: each one's age, size, files, and
    /// what it alone holds (what pruning it would free).
    Backups(BackupsArgs),
    /// Put a host back from a backup: on an empty (or rebuilt) server,
    /// apply the inventory, then put the archive's data back (databases,
    /// media, the signing key, the bridges' state) and start the services.
    Restore(RestoreArgs),
    /// Make a new inventory in DIR: hosts.yaml, group_vars/all.yaml with
    /// the operator-wide settings commented, and a fresh secrets/master.key.
    Init(InitArgs),
    /// Add a host to the inventory, or remove one (never touching the server).
    #[command(subcommand)]
    Host(HostCommand),
    /// The machines of the inventory with the homeservers on each, and
    /// how much room each has now (memory, disk, customers running),
    /// looked at in one round trip per machine: where the next customer fits.
    Machines(MachinesArgs),
    /// The customer's checklist for a host: DNS records, firewall ports,
    /// what the base domain must serve, the first admin, the bridges' bots.
    Onboard(OnboardArgs),
    /// Check what the world sees of each host, or of any server name with
    /// `--domain`: discovery, TLS, federation, signing keys, client
    /// discovery, and for inventory hosts what matrixctl renders for them.
    /// Exit 0 when nothing is an error, 2 when a check failed.
    Check(CheckArgs),
    /// A host's effective vars, secrets redacted; `--explain KEY` shows
    /// every layer that sets KEY.
    Vars(VarsArgs),
    /// Close the SSH connections earlier runs kept open (`--persist`) to
    /// the selected hosts.
    Disconnect(DisconnectArgs),
    /// Print a shell completion script: `matrixctl completions bash > /etc/bash_completion.d/matrixctl`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff): `matrixctl man | man -l -`.
    Man,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub selection: Selection,

    #[command(flatten)]
    pub connect: Connect,

    /// Print it as JSON (see docs/json.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MachinesArgs {
    #[command(flatten)]
    pub selection: Selection,

    /// Only list them, from the inventory: no machine is contacted.
    #[arg(long)]
    pub offline: bool,

    /// Print it as JSON.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub connect: Connect,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    #[command(flatten)]
    pub selection: Selection,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The saved plan.
    pub plan: PathBuf,

    /// Print it as JSON (see docs/json.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The directory to create (it must not exist, or be empty).
    pub dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Add a host: its hosts.yaml entry (the rest of the file kept as it
    /// is) and host_vars/DOMAIN.yaml with what differs from the defaults.
    Add(HostAddArgs),
    /// Take a host out of the inventory: its hosts.yaml entry and
    /// host_vars file. The server is not contacted.
    Remove(HostRemoveArgs),
}

#[derive(Debug, Args)]
pub struct HostAddArgs {
    /// The customer's Matrix server name (the part after the colon in
    /// @alice:example.com).
    pub domain: String,

    #[command(flatten)]
    pub inventory: InventoryDir,

    /// The name the homeserver is reached at (default `matrix.DOMAIN`).
    #[arg(long, value_name = "NAME")]
    pub fqdn: Option<String>,

    /// How matrixctl reaches the host, `[user@]host[:port]` (default: the
    /// Matrix name, as your ssh config says).
    #[arg(long, value_name = "TARGET")]
    pub ssh: Option<String>,

    /// The host is a directory on this machine (`connection: local`, for
    /// trying things out and for tests), relative to the inventory.
    #[arg(long, value_name = "DIR", conflicts_with = "ssh")]
    pub local: Option<String>,

    /// The homeserver shares this machine of hosts.yaml's `machines:`
    /// with others (it is reached as the machine is).
    #[arg(long, value_name = "MACHINE", conflicts_with_all = ["ssh", "local"])]
    pub machine: Option<String>,

    /// How people get accounts: a value of the `registration` option
    /// (`matrixctl options` lists them; the role's declaration checks it).
    #[arg(long, value_name = "MODE")]
    pub registration: Option<String>,

    /// A bridge to run for this customer (see `matrixctl options`, the
    /// `bridges.NAME` options). May be given more than once.
    #[arg(long = "bridge", value_name = "NAME")]
    pub bridges: Vec<String>,

    /// Run a TURN server for voice and video calls (`turn: {}`).
    #[arg(long)]
    pub turn: bool,

    /// The web server in front of the homeserver (`webserver`; see
    /// `matrixctl options` for the ones the roles offer).
    #[arg(long, value_name = "SERVER")]
    pub webserver: Option<String>,

    /// A group the host is in (its group_vars apply). May be given more than once.
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,

    /// Any other var, `KEY=VALUE` with a dotted key and a YAML value
    /// (`--set turn.lifetime=1h`). May be given more than once.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = crate::scaffold::parse_assignment)]
    pub set: Vec<(Vec<String>, serde_yaml::Value)>,
}

#[derive(Debug, Args)]
pub struct HostRemoveArgs {
    /// The host, as the inventory names it.
    pub domain: String,

    #[command(flatten)]
    pub inventory: InventoryDir,

    /// Also delete the customer's data on the server (databases, media,
    /// the bridges' state, the signing key): its services stop, a last
    /// backup is made and verified, and only then is the data deleted; the
    /// archive that keeps it is named. Needs `backup` set for the host.
    /// Without it, the server is not contacted and keeps its data.
    #[arg(long)]
    pub purge: bool,

    #[command(flatten)]
    pub wait: Wait,

    #[command(flatten)]
    pub connect: Connect,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The inventory and hosts (neither read with --domain).
    #[command(flatten)]
    pub selection: Selection,

    /// Check this server name, without an inventory.
    #[arg(long, value_name = "DOMAIN", conflicts_with = "limit")]
    pub domain: Option<String>,

    /// Print the report as JSON (see docs/check.md).
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub seen_as: SeenAs,

    /// Seconds allowed for each connection and request.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub timeout: u64,
}

/// How `check` reaches server names: as the world does, unless told
/// otherwise (a test's DNS and CA, a host not in DNS yet).
#[derive(Debug, Clone, Default, Args)]
pub struct SeenAs {
    /// Reach HOST on PORT at ADDRESS instead of what DNS says, like curl's
    /// --resolve. May be given more than once.
    #[arg(long = "resolve", value_name = "HOST:PORT:ADDRESS")]
    pub resolve: Vec<crate::check::net::Pin>,

    /// Ask this DNS server (`192.0.2.53:53`) instead of the system's.
    #[arg(long, value_name = "ADDRESS:PORT", value_parser = parse_dns_server)]
    pub dns: Option<std::net::SocketAddr>,

    /// Trust the CA certificates in this PEM file instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct OnboardArgs {
    /// The host, as the inventory names it.
    pub domain: String,

    #[command(flatten)]
    pub inventory: InventoryDir,

    /// text for a terminal, markdown to send the customer, json for tools.
    #[arg(long, value_enum, default_value_t = OnboardFormat::Text)]
    pub format: OnboardFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnboardFormat {
    Text,
    Markdown,
    Json,
}

#[derive(Debug, Args)]
pub struct VarsArgs {
    /// The host, as the inventory names it.
    pub domain: String,

    #[command(flatten)]
    pub inventory: InventoryDir,

    /// Show every layer that sets this key (dotted, like `turn.host`),
    /// lowest precedence first, with file and line.
    #[arg(long, value_name = "KEY")]
    pub explain: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin account through the homeserver's shared-secret
    /// registration, over the host's loopback (through SSH). The password
    /// is generated and printed once, or read from stdin.
    Create(AdminCreateArgs),
}

#[derive(Debug, Args)]
pub struct AdminCreateArgs {
    /// The host, as the inventory names it.
    pub host: String,

    /// The account to create, like `@admin:example.com`.
    #[arg(value_parser = parse_user)]
    pub user: String,

    /// Read the password from the first line of stdin instead of
    /// generating one.
    #[arg(long)]
    pub password_stdin: bool,

    #[command(flatten)]
    pub inventory: InventoryDir,

    #[command(flatten)]
    pub connect: Connect,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,

    /// The hosts, as the inventory names them.
    #[arg(required = true)]
    pub hosts: Vec<String>,

    #[command(flatten)]
    pub task: HostTask,
}

/// What a task run on one host takes: how long it may run, the
/// inventory, and how to connect.
#[derive(Debug, Args)]
pub struct HostTask {
    #[command(flatten)]
    pub wait: Wait,

    #[command(flatten)]
    pub inventory: InventoryDir,

    #[command(flatten)]
    pub connect: Connect,
}

impl HostTask {
    /// How to connect, for as long as the task may run (`--wait`).
    pub fn waiting(&self) -> Connect {
        self.wait.applied_to(&self.connect)
    }
}

/// How long a host's backup or restore may take.
#[derive(Debug, Clone, Copy, Args)]
pub struct Wait {
    /// How long each host's backup or restore may take before matrixctl
    /// stops waiting (it goes on on the host).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub wait: u64,
}

impl Wait {
    /// `connect` with its run limit raised to the wait: the host program
    /// runs as long as the backup or restore does.
    pub fn applied_to(self, connect: &Connect) -> Connect {
        Connect {
            timeout: self.wait.max(connect.timeout),
            ..connect.clone()
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Prove a host's newest archive (or --archive NAME) would restore,
    /// without restoring it: each database loads into a scratch copy, the
    /// files (the signing key) are the live ones, sampled media hash the
    /// same, SQLite copies pass their integrity check.
    Verify(BackupVerifyArgs),
}

#[derive(Debug, Args)]
pub struct BackupVerifyArgs {
    /// The host, as the inventory names it.
    pub host: String,

    /// The archive to verify; the newest when not given.
    #[arg(long, value_name = "NAME", value_parser = parse_archive)]
    pub archive: Option<String>,

    #[command(flatten)]
    pub task: HostTask,
}

#[derive(Debug, Args)]
pub struct BackupsArgs {
    /// The host, as the inventory names it.
    pub host: String,

    #[command(flatten)]
    pub inventory: InventoryDir,

    #[command(flatten)]
    pub connect: Connect,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The host, as the inventory names it.
    pub host: String,

    /// The archive to restore (`matrixctl backups HOST` lists them); the
    /// newest when not given.
    #[arg(long, value_name = "NAME", value_parser = parse_archive)]
    pub archive: Option<String>,

    /// Restore even over data the host already holds (it is replaced).
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub task: HostTask,
}

/// An archive's name as borg writes this host's: plain characters only.
fn parse_archive(text: &str) -> Result<String, String> {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c))
    {
        Ok(text.to_string())
    } else {
        Err(format!(
            "`{text}` is not an archive name (like `example.org-2026-12-06T03:12:44Z`; `matrixctl backups HOST` lists them)"
        ))
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a registration token (for `registration: token`) through the
    /// homeserver's admin API, over the host's loopback (through SSH).
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// The host, as the inventory names it.
    pub host: String,

    /// How many registrations the token allows (unlimited when not given).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub uses: Option<u32>,

    /// How long the token stays valid, like `7d` or `12h` (no end when not
    /// given).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    pub expires: Option<u64>,

    #[command(flatten)]
    pub inventory: InventoryDir,

    #[command(flatten)]
    pub connect: Connect,
}

fn parse_user(text: &str) -> Result<String, String> {
    serde_yaml::from_value::<crate::inventory::matrix::MatrixId>(text.into())
        .map(|_| text.to_string())
        .map_err(|error| error.to_string())
}

/// `30s`, `15m`, `12h`, `7d` or `2w`, in milliseconds.
fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a duration: write it like `7d`, `12h` or `30m`");
    let cut = text.char_indices().last().map_or(0, |(index, _)| index);
    let (digits, unit) = text.split_at(cut);
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let unit_ms: u64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => return Err(bad()),
    };
    match number.checked_mul(unit_ms) {
        Some(ms) if ms > 0 => Ok(ms),
        _ => Err(bad()),
    }
}

#[derive(Debug, Args)]
pub struct Selection {
    /// The inventory directory, or `-i DIR`.
    #[arg(value_name = "INVENTORY", conflicts_with = "inventory_dir")]
    pub inventory: Option<PathBuf>,

    #[command(flatten)]
    pub inventory_flag: InventoryDir,

    #[command(flatten)]
    pub limit: Limit,
}

/// `--limit PATTERN`: the hosts a command is for.
#[derive(Debug, Clone, Default, Args)]
pub struct Limit {
    /// Only these hosts: a name, a glob (`*.example.com`) or a group;
    /// several separated by commas or colons; `&P` intersects, `!P`
    /// excludes (`customers:&eu:!example.com`).
    #[arg(id = "limit", long = "limit", value_name = "PATTERN")]
    pub pattern: Option<String>,
}

/// `-i/--inventory DIR`: every command that reads an inventory takes it.
#[derive(Debug, Clone, Default, Args)]
pub struct InventoryDir {
    /// The inventory directory [default: $MATRIXCTL_INVENTORY, else the
    /// current directory when it holds hosts.yaml, else ./inventory].
    #[arg(
        id = "inventory_dir",
        short = 'i',
        long = "inventory",
        value_name = "DIR"
    )]
    pub given: Option<PathBuf>,
}

impl InventoryDir {
    /// The directory named, or the default.
    pub fn path(&self) -> PathBuf {
        inventory_dir(self.given.as_deref())
    }
}

/// The inventory a command reads: the one it was given (positional or
/// `-i`), else `MATRIXCTL_INVENTORY`, else the current directory when it
/// holds hosts.yaml (matrixctl run from inside an inventory), else
/// `./inventory`.
pub fn inventory_dir(given: Option<&std::path::Path>) -> PathBuf {
    if let Some(given) = given {
        return given.to_path_buf();
    }
    if let Some(named) = std::env::var_os("MATRIXCTL_INVENTORY").filter(|named| !named.is_empty()) {
        return PathBuf::from(named);
    }
    if std::path::Path::new("hosts.yaml").is_file() {
        return PathBuf::from(".");
    }
    PathBuf::from("inventory")
}

impl Selection {
    /// The inventory: positional or `-i`, else the default.
    pub fn inventory_dir(&self) -> PathBuf {
        inventory_dir(
            self.inventory
                .as_deref()
                .or(self.inventory_flag.given.as_deref()),
        )
    }
}

impl ApplyArgs {
    /// The inventory or saved plan: positional or `-i`, else the default
    /// inventory.
    pub fn target(&self) -> PathBuf {
        inventory_dir(
            self.target
                .as_deref()
                .or(self.inventory_flag.given.as_deref()),
        )
    }
}

/// How hosts are reached and paced.
#[derive(Debug, Clone, Args)]
pub struct Connect {
    /// How many hosts to work on at once.
    #[arg(long, value_name = "N", default_value_t = crate::fleet::DEFAULT_FORKS, value_parser = parse_forks)]
    pub forks: usize,

    /// Seconds allowed to connect to a host, and for each run of the
    /// program on it (an apply that installs packages or venvs is waited
    /// for at least 15 minutes).
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,

    /// Accept and record the key of a host seen for the first time. A host
    /// whose key CHANGED is always refused.
    #[arg(long)]
    pub accept_new_host_keys: bool,

    /// Keep each host's SSH connection open this long after its last use
    /// (`90s`, `5m`, `1h`), so the next run skips the handshake; `0` closes
    /// connections when the run ends. `matrixctl disconnect` closes them.
    #[arg(long, value_name = "DURATION", default_value = "5m", env = "MATRIXCTL_PERSIST",
          value_parser = parse_persist)]
    pub persist: Persist,
}

/// `--persist`: how long kept SSH connections wait; `None` for `0`.
#[derive(Debug, Clone, Copy)]
pub struct Persist(pub Option<std::time::Duration>);

fn parse_persist(text: &str) -> Result<Persist, String> {
    if text == "0" {
        return Ok(Persist(None));
    }
    parse_duration_ms(text)
        .map(|ms| Persist(Some(std::time::Duration::from_millis(ms))))
        .map_err(|why| format!("{why}, or `0` to close connections when the run ends"))
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub selection: Selection,

    #[command(flatten)]
    pub connect: Connect,

    /// Print the plan as JSON (see docs/json.md).
    #[arg(long)]
    pub json: bool,

    /// Exit 2 when changes are pending (0: none, 1: error).
    #[arg(long)]
    pub detailed_exitcode: bool,

    /// Save the plan, for `matrixctl apply FILE` to apply exactly it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Per host, only the paths and items that change and how, without
    /// file contents.
    #[arg(long)]
    pub summary: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The inventory directory (or `-i DIR`), or a plan saved with `plan --out`.
    #[arg(value_name = "INVENTORY|PLAN", conflicts_with = "inventory_dir")]
    pub target: Option<PathBuf>,

    #[command(flatten)]
    pub inventory_flag: InventoryDir,

    #[command(flatten)]
    pub limit: Limit,

    #[command(flatten)]
    pub connect: Connect,

    /// Print the plan and result as JSON (see docs/json.md); needs --yes.
    #[arg(long)]
    pub json: bool,

    /// Apply without asking for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Apply to this many hosts at a time, or this percentage (`25%`).
    #[arg(long, value_name = "N|P%", value_parser = parse_batch)]
    pub batch: Option<crate::fleet::BatchSize>,

    /// Start no new batch once more than this percentage of hosts failed
    /// (default 100). With --gate and no --max-fail, the first failed
    /// check stops the rollout.
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    pub max_fail: Option<f64>,

    /// After each batch, run this on the hosts it applied to, and count a
    /// host whose check finds an error as failed: `check` is what
    /// `matrixctl check` does (discovery, TLS, federation, keys, what
    /// matrixctl renders), as other servers reach the host.
    #[arg(long, value_enum, value_name = "CHECK")]
    pub gate: Option<Gate>,

    /// How the gate's check reaches the hosts (`--gate check` only).
    #[command(flatten)]
    pub seen_as: SeenAs,
}

/// What `apply --gate` runs between batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Gate {
    Check,
}

fn parse_forks(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(forks) if (1..=10_000).contains(&forks) => Ok(forks),
        _ => Err(format!("`{text}` is not a number of hosts from 1 to 10000")),
    }
}

fn parse_batch(text: &str) -> Result<crate::fleet::BatchSize, String> {
    use crate::fleet::BatchSize;
    let bad = || {
        format!(
            "`{text}` is not a batch size: give a number of hosts (`10`) or a percentage (`25%`)"
        )
    };
    match text.strip_suffix('%') {
        Some(percent) => match percent.parse::<u32>() {
            Ok(percent) if (1..=100).contains(&percent) => Ok(BatchSize::Percent(percent)),
            _ => Err(bad()),
        },
        None => match text.parse::<usize>() {
            Ok(hosts) if hosts > 0 => Ok(BatchSize::Hosts(hosts)),
            _ => Err(bad()),
        },
    }
}

fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(percent) if (0.0..=100.0).contains(&percent) => Ok(percent),
        _ => Err(format!("`{text}` is not a percentage from 0 to 100")),
    }
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub selection: Selection,

    /// Where to write the files (DIR/HOST/PATH).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// `--dns`: an address and a port, with the usual port spelled out in the
/// error, since `192.0.2.53` alone is the common slip.
fn parse_dns_server(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(server) = text.parse() {
        return Ok(server);
    }
    let wanted = "expected ADDRESS:PORT, like 192.0.2.53:53 or [2001:db8::53]:53";
    match text.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => {
            Err(format!("no port; {wanted} (DNS is port 53: {text}:53)"))
        }
        Ok(std::net::IpAddr::V6(_)) => {
            Err(format!("no port; {wanted} (DNS is port 53: [{text}]:53)"))
        }
        Err(_) => Err(format!("not an IP address and port; {wanted}")),
    }
}
