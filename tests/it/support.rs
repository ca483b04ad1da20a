//! A sandbox per test: a temporary directory holding an inventory whose
//! hosts are local directories inside it, and a way to run the real binary
//! there and see what a user would see.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_matrixctl");

/// matrixctl as a command to run. As root, the binary itself; as anyone
/// else, the binary in a user namespace of its own where that user is
/// root (`unshare --map-root-user`, like fakeroot), with a network
/// namespace of its own (where a firewall's `nft list ruleset` answers):
/// the hosts of these tests are directories whose files root owns, as on
/// a real host, and `cargo test` runs for anyone.
pub fn matrixctl() -> Command {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0) {
        Command::new(BIN)
    } else {
        let mut command = Command::new("unshare");
        command.args(["--user", "--map-root-user", "--net", BIN]);
        command
    }
}

/// What one run of matrixctl printed, with the sandbox path replaced by
/// `[SANDBOX]` so snapshots do not depend on where the test ran.
#[derive(Debug)]
pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl Run {
    /// The whole transcript: exit code, stdout, stderr.
    pub fn transcript(&self) -> String {
        format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub struct Sandbox {
    dir: tempfile::TempDir,
}

/// The repository's directory, for its fixtures and example inventory.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// How many files the built-in roles render for a host with default vars.
pub const FILES_PER_HOST: usize = 13;

/// A master key for test inventories (not the example's demo key).
pub const TEST_MASTER_KEY: &str = "test-master-key-0123456789abcdef0123456789abcdef";

impl Sandbox {
    /// An empty sandbox.
    pub fn empty() -> Sandbox {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("matrixctl-test-")
                .tempdir()
                .expect("a temporary directory"),
        }
    }

    /// Three local hosts (a.example, b.example in group `eu`, c.example),
    /// with roots under `hosts/`, and the built-in roles' defaults, except
    /// `synapse_group: root` (no matrix-synapse group on this machine).
    pub fn fleet() -> Sandbox {
        let sandbox = Sandbox::empty();
        sandbox.write(
            "inventory/hosts.yaml",
            "hosts:\n\
             \x20 a.example:\n    connection: local\n    root: ../hosts/a.example\n\
             \x20 b.example:\n    connection: local\n    root: ../hosts/b.example\n    groups: [eu]\n\
             \x20 c.example:\n    connection: local\n    root: ../hosts/c.example\n",
        );
        // Local test hosts are directories: no services to check or restart.
        sandbox.write(
            "inventory/group_vars/all.yaml",
            "synapse_group: root\nhost_commands: false\n",
        );
        sandbox.write("inventory/secrets/master.key", TEST_MASTER_KEY);
        sandbox
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where this sandbox's runs keep their SSH masters: its own directory,
    /// so each test sees only its masters and its drop ends them.
    pub fn control_dir(&self) -> PathBuf {
        self.path().join("ctl")
    }

    /// Sets the mode of a file of the sandbox.
    pub fn chmod(&self, relative: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            self.path().join(relative),
            std::fs::Permissions::from_mode(mode),
        )
        .unwrap();
    }

    pub fn write(&self, relative: &str, content: &str) {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        keep_master_key_private(&path);
    }

    /// A file on a local test host, by host name and host path.
    pub fn host_file(&self, host: &str, path: &str) -> PathBuf {
        self.path()
            .join("hosts")
            .join(host)
            .join(path.trim_start_matches('/'))
    }

    pub fn read_host_file(&self, host: &str, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.host_file(host, path)).ok()
    }

    /// Every regular file under a host's root, relative, sorted.
    pub fn host_files(&self, host: &str) -> Vec<String> {
        files_under(&self.path().join("hosts").join(host))
    }

    /// The files roles put on a host: all but matrixctl's own state.
    pub fn managed_files(&self, host: &str) -> Vec<String> {
        let mut files = self.host_files(host);
        files.retain(|path| !path.starts_with("/var/lib/matrixctl/"));
        files
    }

    /// Runs matrixctl with `args` in the sandbox, stdin closed.
    /// Starts `matrixctl apply --yes inventory --limit HOST` whose host
    /// transaction pauses 30 s at `step` (MATRIXCTL_TEST_PAUSE_AT), in its
    /// own process group (see [`kill_group`]).
    pub fn spawn_paused_apply(&self, host: &str, step: &str) -> Child {
        use std::os::unix::process::CommandExt;
        matrixctl()
            .args(["apply", "--yes", "inventory", "--limit", host])
            .current_dir(self.path())
            .env("MATRIXCTL_CONTROL_DIR", self.control_dir())
            .env("MATRIXCTL_TEST_PAUSE_AT", format!("{step}:30"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so the kill reaches the host program too.
            .process_group(0)
            .spawn()
            .expect("matrixctl runs")
    }

    /// The exit code of `plan --detailed-exitcode inventory` (for one host
    /// with `limit`): 0 converged, 2 changes pending, 1 an error.
    pub fn plan_exit_code(&self, limit: Option<&str>) -> i32 {
        let mut args = vec!["plan", "--detailed-exitcode", "inventory"];
        if let Some(limit) = limit {
            args.extend(["--limit", limit]);
        }
        self.run(&args).code
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_env(args, &[])
    }

    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        self.run_from("", args, env)
    }

    /// A run from the sandbox's directory `relative` (its own when empty).
    pub fn run_from(&self, relative: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        let output = matrixctl()
            .args(args)
            .current_dir(self.path().join(relative))
            .env_remove("NO_COLOR")
            .env("MATRIXCTL_CONTROL_DIR", self.control_dir())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("matrixctl runs");
        let clean = |bytes: &[u8]| {
            String::from_utf8_lossy(bytes).replace(&self.path().display().to_string(), "[SANDBOX]")
        };
        Run {
            stdout: clean(&output.stdout),
            stderr: clean(&output.stderr),
            code: output.status.code().unwrap_or(-1),
        }
    }
}

impl Drop for Sandbox {
    /// Ends the SSH masters the sandbox's runs kept (`--persist`): a test
    /// leaves no process behind.
    fn drop(&mut self) {
        for socket in sockets_under(&self.control_dir()) {
            let _ = Command::new("ssh")
                .arg("-o")
                .arg(format!("ControlPath={}", socket.display()))
                .args(["-O", "exit", "matrixctl-test-master"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The Unix sockets in `dir` and its subdirectories.
pub fn sockets_under(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut sockets = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match entry.file_type() {
            Ok(kind) if kind.is_socket() => sockets.push(entry.path()),
            Ok(kind) if kind.is_dir() => sockets.extend(sockets_under(&entry.path())),
            _ => {}
        }
    }
    sockets
}

/// Every regular file under `root`, as `/RELATIVE/PATH`, sorted.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    collect_files(root, root, &mut files);
    files.sort();
    files
}

fn collect_files(root: &Path, dir: &Path, files: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(root, &path, files);
        } else {
            files.push(format!("/{}", path.strip_prefix(root).unwrap().display()));
        }
    }
}

/// The mode bits of a file.
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// A master key is kept as an operator keeps it: others may not read it
/// (or every run warns; git checks keys out 0644).
fn keep_master_key_private(path: &Path) {
    if path.file_name().is_some_and(|name| name == "master.key") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// Copies a directory tree (an inventory, a case) into place.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            keep_master_key_private(&target);
        }
    }
}

/// Kills a child started with its own process group, and everything in it.
pub fn kill_group(child: &mut Child) {
    let killed = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(killed.success());
    let _ = child.wait();
}

/// Kills, as a crash of the host would, the transaction an apply runs on a
/// local test host: it runs in a session of its own (so killing matrixctl
/// does not stop it), named by its pid file in the state directory.
pub fn crash_host_run(sandbox: &Sandbox, host: &str) {
    let runs = sandbox.host_file(host, "/var/lib/matrixctl/runs");
    let mut killed = 0;
    for entry in std::fs::read_dir(&runs)
        .expect("the host has runs")
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "pid") || path.with_extension("code").exists() {
            continue;
        }
        let pid = std::fs::read_to_string(&path).unwrap().trim().to_string();
        // Its process group: the session leader and what it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        wait_until("the host's run never died", || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|stat| stat.contains(") Z "))
                .unwrap_or(true)
        });
        killed += 1;
    }
    assert_eq!(killed, 1, "exactly one run was alive on {host}");
}

/// Polls `condition` every 20 ms; fails the test with `what` after 20 s.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < Duration::from_secs(20), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
