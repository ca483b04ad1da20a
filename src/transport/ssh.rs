//! The SSH transport: the system `ssh` client in ControlMaster mode, driven
//! by the `openssh` crate, so operators' `~/.ssh/config`, agents, jump hosts
//! and keys work as they do in a terminal. One master connection per host;
//! the program goes to `sh -s` on stdin, never on the command line.
//!
//! Masters outlive a run (`--persist`, default five idle minutes) in a
//! private per-user directory, so `plan` then `apply` pays each handshake
//! once. A master is reused only while it answers and the known-hosts files
//! are as they were when it was last used; anything else gets a new one.
//! Connections that must prove a host is still reachable (the firewall's
//! confirmation) never go through a kept master.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

use super::{NotSent, Output};
use crate::hash::sha256_hex;
use crate::inventory::SshTarget;
use crate::inventory::schema::{Become, SshOptions};

/// Settings shared by every SSH connection of one run.
#[derive(Debug, Clone)]
pub(crate) struct SshSettings {
    /// Where control sockets live: short, because a Unix socket path is
    /// limited to 108 bytes.
    pub control_dir: PathBuf,
    pub connect_timeout: Duration,
    /// Accept (and record) unknown host keys; changed keys are always refused.
    pub accept_new_host_keys: bool,
    /// How long a master waits, idle, for the next run; `None`: masters end
    /// with the run (and `control_dir` is the run's own).
    pub persist: Option<Duration>,
}

/// One host reached over SSH.
#[derive(Debug, Clone)]
pub(crate) struct Ssh {
    target: SshTarget,
    options: SshOptions,
    become_: Become,
    settings: Arc<SshSettings>,
    /// The master connection, opened on first use and kept for the run.
    session: Arc<Mutex<Option<Session>>>,
    /// A connection of its own, never a kept master, closed after use.
    fresh_only: bool,
}

/// How long a master with no session left waits before it exits: long
/// enough for apply's confirmation question, short enough that a killed
/// matrixctl leaves nothing running for long.
const MASTER_IDLE_SECONDS: usize = 300;

impl Ssh {
    pub(crate) fn new(
        target: SshTarget,
        options: SshOptions,
        become_: Become,
        settings: Arc<SshSettings>,
    ) -> Ssh {
        Ssh {
            target,
            options,
            become_,
            settings,
            session: Arc::new(Mutex::new(None)),
            fresh_only: false,
        }
    }

    /// The same target with no connection yet: the next run opens a new
    /// master of its own, whatever masters are kept.
    pub(crate) fn fresh(&self) -> Ssh {
        Ssh {
            session: Arc::new(Mutex::new(None)),
            fresh_only: true,
            ..self.clone()
        }
    }

    /// How long this connection's master outlives the run, if it does.
    fn persist(&self) -> Option<Duration> {
        self.settings.persist.filter(|_| !self.fresh_only)
    }

    /// Where this target's kept master is recorded: a symlink named after
    /// everything that shapes the connection, pointing at the master's
    /// directory (the openssh crate names those itself).
    fn kept_master_link(&self) -> PathBuf {
        let identity = format!(
            "{}\0{}\0{}\0{:?}",
            self.target.user, self.target.host, self.target.port, self.options
        );
        let mut name = sha256_hex(identity.as_bytes());
        name.truncate(16);
        self.settings.control_dir.join(name)
    }

    /// The directory of this target's kept master, as its record names it.
    fn kept_master_dir(&self) -> Option<PathBuf> {
        let name = fs_err::read_link(self.kept_master_link()).ok()?;
        Some(self.settings.control_dir.join(master_dir_name(&name)?))
    }

    /// Tells the kept master in `dir` to exit and removes it and its
    /// record; whether it was still answering.
    async fn end_kept_master(&self, dir: &Path) -> bool {
        let session = Session::resume_mux(dir.join("master").into(), None);
        let alive = session.check().await.is_ok();
        let _ = session.close().await;
        let _ = fs_err::remove_file(self.kept_master_link());
        let _ = fs_err::remove_dir_all(dir);
        alive
    }

    /// The kept master of this target, if it still answers and the host
    /// keys it was verified against are unchanged. A master that fails
    /// either test is told to exit and forgotten.
    async fn resume_kept_master(&self) -> Option<Session> {
        let dir = self.kept_master_dir()?;
        let stamp = fs_err::read_to_string(dir.join(KNOWN_HOSTS_STAMP)).ok();
        if stamp.as_deref() == Some(&self.known_hosts_stamp()) {
            let session =
                Session::resume_mux(dir.join("master").into(), Some(dir.join("log").into()));
            if session.check().await.is_ok() {
                return Some(session);
            }
        }
        self.end_kept_master(&dir).await;
        None
    }

    /// Records a new master as this target's kept one.
    fn keep_master(&self, session: &Session) {
        let Some(name) = session.control_socket().parent().and_then(Path::file_name) else {
            return;
        };
        let link = self.kept_master_link();
        let staged = link.with_extension(format!("new-{}", std::process::id()));
        let _ = fs_err::remove_file(&staged);
        // Another run may have kept a master for the same target meanwhile:
        // the rename replaces its record, and that master idles out.
        if std::os::unix::fs::symlink(name, &staged).is_ok()
            && fs_err::rename(&staged, &link).is_err()
        {
            let _ = fs_err::remove_file(&staged);
        }
    }

    /// What the host keys this target is checked against look like now:
    /// a digest of the known-hosts files ssh reads (and of the ssh config,
    /// which may name others). A kept master verified against other keys
    /// is not reused.
    fn known_hosts_stamp(&self) -> String {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let mut files = vec![
            self.options
                .known_hosts_file
                .clone()
                .unwrap_or_else(|| home.join(".ssh/known_hosts")),
            home.join(".ssh/known_hosts2"),
            PathBuf::from("/etc/ssh/ssh_known_hosts"),
            PathBuf::from("/etc/ssh/ssh_known_hosts2"),
        ];
        files.extend(self.options.config_file.clone());
        let mut seen = Vec::new();
        for file in files {
            seen.extend_from_slice(file.as_os_str().as_encoded_bytes());
            match fs_err::read(&file) {
                Ok(bytes) => {
                    seen.extend_from_slice(format!("\0{}\0", bytes.len()).as_bytes());
                    seen.extend_from_slice(&bytes);
                }
                Err(_) => seen.extend_from_slice(b"\0absent\0"),
            }
        }
        sha256_hex(&seen)
    }

    async fn connect(&self) -> Result<Session> {
        if self.persist().is_some()
            && let Some(session) = self.resume_kept_master().await
        {
            return Ok(session);
        }
        let session = self.launch_master().await?;
        if self.persist().is_some() {
            self.keep_master(&session);
        }
        Ok(session)
    }

    async fn launch_master(&self) -> Result<Session> {
        let idle = match self.persist() {
            Some(persist) => persist.as_secs().max(1) as usize,
            None => MASTER_IDLE_SECONDS,
        };
        let mut builder = SessionBuilder::default();
        builder
            .user(self.target.user.clone())
            .port(self.target.port.0)
            .control_directory(&self.settings.control_dir)
            .connect_timeout(self.settings.connect_timeout)
            .server_alive_interval(Duration::from_secs(15))
            .control_persist(ControlPersist::IdleFor(
                NonZeroUsize::new(idle).unwrap_or(NonZeroUsize::MIN),
            ))
            // The crate's default is accept-new; ours is the safe one.
            .known_hosts_check(
                if self.options.accept_new_host_keys || self.settings.accept_new_host_keys {
                    KnownHosts::Add
                } else {
                    KnownHosts::Strict
                },
            );
        if let Some(identity) = &self.options.identity_file {
            builder.keyfile(identity);
        }
        if let Some(known_hosts) = &self.options.known_hosts_file {
            builder.user_known_hosts_file(known_hosts);
        }
        if let Some(config) = self.config_file()? {
            builder.config_file(config);
        }
        let destination = if self.target.host.contains(':') {
            format!("[{}]", self.target.host)
        } else {
            self.target.host.clone()
        };
        builder
            .connect_mux(&destination)
            .await
            .map_err(|error| anyhow!(NotSent(self.explain_connect_error(&error))))
    }

    /// Extra `-o` options go into a generated ssh_config that then includes
    /// the operator's own configuration, so both apply (ssh takes the first
    /// value it reads for an option).
    fn config_file(&self) -> Result<Option<PathBuf>> {
        if self.options.options.is_empty() {
            return Ok(self.options.config_file.clone());
        }
        let mut text = String::from("# generated by matrixctl for one run\n");
        for (key, value) in &self.options.options {
            text.push_str(&format!("{} {}\n", key.0, value.0));
        }
        match &self.options.config_file {
            Some(config) => text.push_str(&format!("Include {}\n", config.display())),
            None => text.push_str("Include ~/.ssh/config\nInclude /etc/ssh/ssh_config\n"),
        }
        let path = self.settings.control_dir.join(format!(
            "{}-{}.conf",
            self.target.host.replace(['/', ':'], "_"),
            self.target.port
        ));
        fs_err::write(&path, text)?;
        Ok(Some(path))
    }

    fn explain_connect_error(&self, error: &openssh::Error) -> String {
        let detail = error_chain(error);
        let at = format!("{}:{}", self.target.host, self.target.port);
        let known_hosts = self
            .options
            .known_hosts_file
            .as_deref()
            .map(|path| path.display().to_string())
            .unwrap_or_else(|| "~/.ssh/known_hosts".to_string());
        let key_name = if self.target.port.0 == 22 {
            self.target.host.clone()
        } else {
            format!("[{}]:{}", self.target.host, self.target.port)
        };
        if detail.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || detail.contains("Host key for") && detail.contains("has changed")
        {
            format!(
                "the host key of {at} has CHANGED since it was recorded in {known_hosts}; refusing to connect\n\
                 hint: if the host was reinstalled, check its new key out of band, then remove the old one with `ssh-keygen -R '{key_name}'`"
            )
        } else if detail.contains("Host key verification failed")
            || detail.contains("host key is known")
        {
            format!(
                "the host key of {at} is unknown (not in {known_hosts}); refusing to connect\n\
                 hint: check the key out of band and add it (`ssh-keyscan -p {} {} >> {known_hosts}`), or run with --accept-new-host-keys",
                self.target.port, self.target.host
            )
        } else if detail.contains("Connection refused") {
            format!("cannot connect to {at}: connection refused (is sshd running on that port?)")
        } else if detail.contains("timed out") {
            format!("cannot connect to {at}: timed out")
        } else if detail.contains("Permission denied") {
            format!(
                "{}@{at} refused our authentication\nhint: check the key (ssh_options.identity_file) or the agent, and the user's authorized_keys",
                self.target.user
            )
        } else if detail.contains("Could not resolve") {
            format!(
                "cannot resolve {}: {}",
                self.target.host,
                last_line(&detail)
            )
        } else {
            format!("cannot connect to {at}: {}", last_line(&detail))
        }
    }

    pub(crate) async fn run(&self, program: String) -> Result<Output> {
        let mut guard = self.session.lock().await;
        // A master that idled out (a long confirmation) is reopened.
        if let Some(session) = guard.as_ref()
            && session.check().await.is_err()
        {
            *guard = None;
        }
        if guard.is_none() {
            *guard = Some(self.connect().await?);
        }
        let session = guard.as_ref().expect("connected above");
        let mut command = match self.become_ {
            Become::None => session.command("sh"),
            Become::Sudo => {
                let mut command = session.command("sudo");
                command.args(["-n", "--", "sh"]);
                command
            }
        };
        command.arg("-s");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .await
            .map_err(|error| {
                NotSent(format!(
                    "cannot start the program on {}: {}",
                    self.target.host,
                    error_chain(&error)
                ))
            })?;
        let mut stdin = child.stdin().take().context("no stdin to the host")?;
        let mut stdout = child.stdout().take().context("no stdout from the host")?;
        let mut stderr = child.stderr().take().context("no stderr from the host")?;
        let write = async {
            let result = stdin.write_all(program.as_bytes()).await;
            let _ = stdin.shutdown().await;
            drop(stdin);
            result
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (written, read_out, read_err) = tokio::join!(
            write,
            stdout.read_to_end(&mut out),
            stderr.read_to_end(&mut err)
        );
        let status = child.wait().await;
        let stderr = String::from_utf8_lossy(&err).into_owned();
        if self.become_ == Become::Sudo && stderr.contains("sudo: a password is required") {
            return Err(NotSent(format!(
                "{} may not run sudo without a password on this host\nhint: give it passwordless sudo (NOPASSWD) or connect as root",
                self.target.user
            ))
            .into());
        }
        if stderr.contains("sudo: command not found") || stderr.contains("sudo: not found") {
            return Err(NotSent(
                "`become: sudo` is set, but sudo is not installed on this host".to_string(),
            )
            .into());
        }
        read_out.context("reading the host's answer")?;
        read_err.context("reading the host's errors")?;
        let status = status.map_err(|error| {
            anyhow!(
                "the connection to {} broke: {}",
                self.target.host,
                error_chain(&error)
            )
        })?;
        written.context("sending the program to the host")?;
        Ok(Output {
            success: status.success(),
            stdout: out,
            stderr,
        })
    }

    /// Ends the run's use of the connection: a kept master is left
    /// running (stamped with the host keys it was verified against), any
    /// other is closed.
    pub(crate) async fn close(&self) {
        let Some(session) = self.session.lock().await.take() else {
            return;
        };
        if self.persist().is_none() {
            let _ = session.close().await;
            return;
        }
        let (socket, _log) = session.detach();
        if let Some(dir) = socket.parent() {
            let _ = fs_err::write(dir.join(KNOWN_HOSTS_STAMP), self.known_hosts_stamp());
        }
    }

    /// Tells this target's kept master, if there is one, to exit
    /// (`matrixctl disconnect`). Whether there was one.
    pub(crate) async fn disconnect(&self) -> bool {
        match self.kept_master_dir() {
            Some(dir) => self.end_kept_master(&dir).await,
            None => {
                let _ = fs_err::remove_file(self.kept_master_link());
                false
            }
        }
    }
}

/// The file beside a kept master that records [`Ssh::known_hosts_stamp`].
const KNOWN_HOSTS_STAMP: &str = "known-hosts";

/// The openssh crate's name for a master's directory; anything else a
/// record might point at is refused.
fn master_dir_name(name: &Path) -> Option<&std::ffi::OsStr> {
    let text = name.to_str()?;
    (text.starts_with(".ssh-connection") && !text.contains('/')).then_some(name.as_os_str())
}

/// Fills in what `ssh:` left out (user, port) from the operator's ssh
/// config, as `ssh -G` prints the effective settings, and notes a proxy
/// (ProxyCommand, ProxyJump) the config puts in front of the host. The
/// user is root unless `ssh:` or the config names one. No host is
/// contacted: `ssh -G` only evaluates the configuration.
pub(crate) fn resolve(target: &mut SshTarget, options: &SshOptions) -> Result<(), String> {
    let effective = effective_config(target, options, false)?;
    if !target.port_given
        && let Some(port) = effective
            .get("port")
            .and_then(|port| port.parse::<u16>().ok())
            .filter(|port| *port > 0)
    {
        target.port = crate::inventory::schema::Port(port);
    }
    if !target.user_given
        && let Some(user) = effective.get("user")
    {
        // ssh's default user is the local one; only a configured one counts.
        let defaults = effective_config(target, options, true)?;
        if defaults.get("user") != Some(user) {
            target.user = user.clone();
        }
    }
    target.proxy = ["proxyjump", "proxycommand"]
        .iter()
        .filter_map(|key| {
            effective
                .get(*key)
                .filter(|value| value.as_str() != "none")
                .map(|value| format!("{key} {value}"))
        })
        .next();
    Ok(())
}

/// `ssh -G` for the target: its settings, keys in lower case. With
/// `defaults`, as if no ssh config existed (`-F /dev/null`).
fn effective_config(
    target: &SshTarget,
    options: &SshOptions,
    defaults: bool,
) -> Result<std::collections::HashMap<String, String>, String> {
    let mut command = std::process::Command::new("ssh");
    command.arg("-G");
    match (&options.config_file, defaults) {
        (_, true) => {
            command.args(["-F", "/dev/null"]);
        }
        (Some(config), false) => {
            command.arg("-F").arg(config);
        }
        (None, false) => {}
    }
    if !defaults {
        for (key, value) in &options.options {
            command.arg("-o").arg(format!("{}={}", key.0, value.0));
        }
    }
    if target.port_given {
        command.arg("-p").arg(target.port.0.to_string());
    }
    if target.user_given {
        command.arg("-l").arg(&target.user);
    }
    let output = command
        .arg("--")
        .arg(&target.host)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|error| {
            format!("cannot run `ssh -G` to read the ssh config for {}: {error} (is openssh-client installed?)", target.host)
        })?;
    if !output.status.success() {
        return Err(format!(
            "`ssh -G {}` failed, so its ssh config is unknown: {}",
            target.host,
            last_line(&String::from_utf8_lossy(&output.stderr))
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(key, value)| (key.to_ascii_lowercase(), value.to_string()))
        .collect())
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or(text)
        .trim()
}

/// Where control sockets live for one run: the per-user directory of kept
/// masters, or (with `--persist 0`) a directory of the run's own.
pub(crate) enum ControlDir {
    Kept(PathBuf),
    Run(tempfile::TempDir),
}

impl ControlDir {
    /// The kept masters' directory when connections are kept and some
    /// host is reached over SSH (a run on local hosts alone makes none).
    pub(crate) fn for_run(persist: Option<Duration>, any_ssh: bool) -> Result<ControlDir> {
        Ok(match persist {
            Some(_) if any_ssh => ControlDir::Kept(kept_masters_dir()?),
            _ => ControlDir::Run(control_dir()?),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        match self {
            ControlDir::Kept(dir) => dir,
            ControlDir::Run(dir) => dir.path(),
        }
    }
}

/// The private per-user directory of kept masters:
/// `MATRIXCTL_CONTROL_DIR`, else `$XDG_RUNTIME_DIR/matrixctl`, else
/// `/tmp/matrixctl-UID`. Made 0700 when missing; refused unless it is a
/// real directory of ours that no one else can enter (a socket planted
/// there would get our programs). Records of masters that are gone are
/// swept.
pub(crate) fn kept_masters_dir() -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let uid = fs_err::metadata("/proc/self")
        .map(|meta| meta.uid())
        .context("cannot tell which user this is (/proc/self)")?;
    let dir = match std::env::var_os("MATRIXCTL_CONTROL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|dir| dir.is_dir() && dir.as_os_str().len() < 40)
            .map(|dir| dir.join("matrixctl"))
            .unwrap_or_else(|| PathBuf::from(format!("/tmp/matrixctl-{uid}"))),
    };
    if let Err(error) = std::fs::DirBuilder::new().mode(0o700).create(&dir)
        && error.kind() != std::io::ErrorKind::AlreadyExists
    {
        bail!(
            "cannot create {} for kept SSH connections: {error}
hint: set MATRIXCTL_CONTROL_DIR to a private directory, or run with --persist 0",
            dir.display()
        );
    }
    let meta =
        fs_err::symlink_metadata(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        bail!(
            "{} is not a private directory of this user (it must be a real directory, owned by uid {uid}, mode 0700), so its SSH control sockets cannot be trusted
hint: remove it (matrixctl makes it again), or run with --persist 0",
            dir.display()
        );
    }
    sweep_kept_masters(&dir);
    Ok(dir)
}

/// Removes records whose master directory is gone, and master directories
/// without a socket (a master that idled out removes its own) once they
/// are old enough that no run can still be starting that master.
fn sweep_kept_masters(dir: &Path) {
    const STARTING_AT_MOST: Duration = Duration::from_secs(15 * 60);
    let Ok(entries) = fs_err::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_symlink() {
            if fs_err::metadata(&path).is_err() {
                let _ = fs_err::remove_file(&path);
            }
        } else if kind.is_dir()
            && master_dir_name(Path::new(&entry.file_name())).is_some()
            && fs_err::symlink_metadata(path.join("master")).is_err()
            && entry
                .metadata()
                .and_then(|meta| meta.modified())
                .is_ok_and(|modified| modified.elapsed().unwrap_or_default() > STARTING_AT_MOST)
        {
            let _ = fs_err::remove_dir_all(&path);
        }
    }
}

/// A short, private directory for this run's control sockets, named after
/// this process (`mctl-PID-…`). Directories that earlier runs left (they
/// were killed before they could remove theirs) are swept first: their
/// masters are told to exit, then the directory goes.
pub(crate) fn control_dir() -> Result<tempfile::TempDir> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_dir() && dir.as_os_str().len() < 40)
        .unwrap_or_else(|| Path::new("/tmp").to_path_buf());
    sweep_stale_control_dirs(&base);
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(&format!("mctl-{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(base)
        .context("cannot create a directory for SSH control sockets")
}

/// Removes `mctl-PID-…` directories of ours whose process is gone.
fn sweep_stale_control_dirs(base: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs_err::read_dir(base) else {
        return;
    };
    let me = fs_err::metadata("/proc/self").map(|m| m.uid()).ok();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix("mctl-"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let ours = fs_err::symlink_metadata(&dir)
            .is_ok_and(|meta| meta.is_dir() && Some(meta.uid()) == me);
        if !ours || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        for socket in sockets_in(&dir, 2) {
            // Asks the master behind the socket to exit; it answers at once.
            let _ = std::process::Command::new("ssh")
                .arg("-o")
                .arg(format!("ControlPath={}", socket.display()))
                .args(["-O", "exit", "matrixctl-stale-master"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = fs_err::remove_dir_all(&dir);
    }
}

/// The Unix sockets in `dir` and, down to `depth` levels, in its
/// subdirectories (the openssh crate gives each master a directory).
fn sockets_in(dir: &Path, depth: usize) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut sockets = Vec::new();
    for entry in fs_err::read_dir(dir).into_iter().flatten().flatten() {
        match entry.file_type() {
            Ok(kind) if kind.is_socket() => sockets.push(entry.path()),
            Ok(kind) if kind.is_dir() && depth > 1 => {
                sockets.extend(sockets_in(&entry.path(), depth - 1))
            }
            _ => {}
        }
    }
    sockets
}
