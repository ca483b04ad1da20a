//! Real sshd test hosts on loopback: one sshd per host, each on its own
//! port with its own host key and `root:` directory, all started by the
//! test and stopped by pid when it ends. A host can also get its own /etc
//! (an overlay in a private mount namespace) holding two test users:
//! `mctl-sudo` (passwordless sudo) and `mctl-plain` (no sudo).

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::loopback::free_port;
use crate::support::{Sandbox, TEST_MASTER_KEY};

pub struct SshHost {
    pub name: String,
    pub port: u16,
    dir: PathBuf,
    sshd: Option<Child>,
    with_users: bool,
}

/// A sandbox whose inventory reaches its hosts over SSH.
pub struct SshFleet {
    pub sandbox: Sandbox,
    pub hosts: Vec<SshHost>,
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(path));
}

impl SshHost {
    fn sshd_path() -> &'static str {
        let path = "/usr/sbin/sshd";
        assert!(
            Path::new(path).exists(),
            "the SSH tests need sshd: apt-get install openssh-server (scripts/test installs it)"
        );
        path
    }

    fn start(name: &str, base: &Path, authorized_keys: &Path, with_users: bool) -> SshHost {
        let dir = base.join("sshd").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        keygen(&dir.join("host_key"));
        let mut host = SshHost {
            name: name.to_string(),
            port: free_port(),
            dir,
            sshd: None,
            with_users,
        };
        host.write_config(authorized_keys);
        host.launch();
        host
    }

    fn write_config(&self, authorized_keys: &Path) {
        let dir = self.dir.display();
        let config = format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {keys}\nUsePAM no\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n\
             MaxSessions 100\nMaxStartups 200:30:300\nUseDNS no\nLogLevel VERBOSE\n",
            port = self.port,
            keys = authorized_keys.display()
        );
        std::fs::write(self.dir.join("sshd_config"), config).unwrap();
        run(Command::new(Self::sshd_path())
            .arg("-t")
            .arg("-f")
            .arg(self.dir.join("sshd_config")));
        if self.with_users {
            self.prepare_etc_overlay();
        }
    }

    /// An upper layer over /etc with the two test users and a sudo rule.
    fn prepare_etc_overlay(&self) {
        let upper = self.dir.join("etc-upper");
        std::fs::create_dir_all(upper.join("sudoers.d")).unwrap();
        std::fs::create_dir_all(self.dir.join("etc-work")).unwrap();
        let append = |file: &str, lines: &str| {
            let mut text = std::fs::read_to_string(Path::new("/etc").join(file)).unwrap();
            text.push_str(lines);
            std::fs::write(upper.join(file), text).unwrap();
        };
        append(
            "passwd",
            "mctl-sudo:x:4901:4901::/tmp:/bin/sh\nmctl-plain:x:4902:4902::/tmp:/bin/sh\n",
        );
        append("group", "mctl-sudo:x:4901:\nmctl-plain:x:4902:\n");
        append(
            "shadow",
            "mctl-sudo:*:19000:0:99999:7:::\nmctl-plain:*:19000:0:99999:7:::\n",
        );
        let sudoers = upper.join("sudoers.d/mctl-test");
        std::fs::write(&sudoers, "mctl-sudo ALL=(root) NOPASSWD: ALL\n").unwrap();
        run(Command::new("chmod").arg("0440").arg(&sudoers));
        assert!(
            Path::new("/usr/bin/sudo").exists(),
            "the become tests need sudo: apt-get install sudo (scripts/test installs it)"
        );
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.join("sshd.log")).unwrap();
        let config = self.dir.join("sshd_config");
        let mut command = if self.with_users {
            // unshare execs (no fork), so the child's pid is sshd's.
            let mut command = Command::new("unshare");
            command.args(["--mount", "--propagation", "private", "sh", "-c"]).arg(format!(
                "mount -t overlay overlay -o lowerdir=/etc,upperdir={dir}/etc-upper,workdir={dir}/etc-work /etc && exec {sshd} -f {config} -D -e",
                dir = self.dir.display(),
                sshd = Self::sshd_path(),
                config = config.display()
            ));
            command
        } else {
            let mut command = Command::new(Self::sshd_path());
            command.arg("-f").arg(&config).args(["-D", "-e"]);
            command
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.sshd = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.sshd.as_mut().unwrap().try_wait().unwrap() {
                panic!("sshd for {} exited ({status}): {}", self.name, self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd for {} never listened",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The known_hosts line for this host's current key.
    pub fn known_hosts_line(&self) -> String {
        let public = std::fs::read_to_string(self.dir.join("host_key.pub")).unwrap();
        let mut fields = public.split_whitespace();
        format!(
            "[127.0.0.1]:{} {} {}\n",
            self.port,
            fields.next().unwrap(),
            fields.next().unwrap()
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// Remote commands this sshd has started so far.
    pub fn sessions(&self) -> usize {
        self.log().matches("Starting session: command").count()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// The host was reinstalled: same address, a new host key.
    pub fn replace_host_key(&mut self, authorized_keys: &Path) {
        self.stop();
        std::fs::remove_file(self.dir.join("host_key")).unwrap();
        std::fs::remove_file(self.dir.join("host_key.pub")).unwrap();
        keygen(&self.dir.join("host_key"));
        self.write_config(authorized_keys);
        self.launch();
    }

    /// Kills every process of this sshd's sessions (not the listener): the
    /// connection drops as if the network had gone, and the host's `sh` dies
    /// with it. Processes that left those sessions (`setsid`, as apply's
    /// transaction does) live on, as they would on a real host.
    pub fn kill_sessions(&self) {
        let Some(sshd) = &self.sshd else { return };
        let tree = descendants(sshd.id());
        // The sessions sshd made: its own processes', and the ones it
        // started the session commands in.
        let session_pids: Vec<u32> = tree
            .iter()
            .filter(|process| {
                process.command.starts_with("sshd")
                    || tree.iter().any(|parent| {
                        parent.pid == process.ppid && parent.command.starts_with("sshd")
                    })
            })
            .map(|process| process.sid)
            .collect();
        for process in tree
            .iter()
            .filter(|process| session_pids.contains(&process.sid))
        {
            let _ = Command::new("kill")
                .args(["-KILL", &process.pid.to_string()])
                .status();
        }
    }

    /// The pids of ssh master connections to this host (the client side,
    /// `ssh -M -f … -p PORT`).
    pub fn masters(&self) -> Vec<String> {
        let port = self.port.to_string();
        let mut masters = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_ssh = args.first().is_some_and(|arg| arg.ends_with(b"ssh"));
            let is_master = args.contains(&b"-M".as_slice());
            let to_us = args
                .windows(2)
                .any(|pair| pair[0] == b"-p" && pair[1] == port.as_bytes());
            if is_ssh && is_master && to_us {
                masters.push(entry.file_name().to_string_lossy().to_string());
            }
        }
        masters
    }

    /// Kills matrixctl's ssh masters to this host, as if the operator's
    /// machine lost them. Returns how many it killed.
    pub fn kill_masters(&self) -> usize {
        let masters = self.masters();
        for pid in &masters {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        masters.len()
    }

    /// Kills every process below this sshd, detached ones included.
    fn kill_everything_below(&self) {
        let Some(sshd) = &self.sshd else { return };
        for process in descendants(sshd.id()) {
            let _ = Command::new("kill")
                .args(["-KILL", &process.pid.to_string()])
                .status();
        }
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        self.kill_everything_below();
        self.stop();
    }
}

/// A process as /proc describes it.
struct Process {
    pid: u32,
    ppid: u32,
    sid: u32,
    command: String,
}

/// Every process below `root` in the process tree, from /proc.
fn descendants(root: u32) -> Vec<Process> {
    let mut processes = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces.
        let Some((head, after)) = stat.rsplit_once(')') else {
            continue;
        };
        let command = head.split_once('(').map(|(_, c)| c).unwrap_or_default();
        let fields: Vec<u32> = after
            .split_whitespace()
            .skip(1)
            .take(4)
            .map(|field| field.parse().unwrap_or(0))
            .collect();
        // After the name: state, ppid, pgrp, session.
        if fields.len() < 3 {
            continue;
        }
        processes.push(Process {
            pid,
            ppid: fields[0],
            sid: fields[2],
            command: command.to_string(),
        });
    }
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            processes
                .iter()
                .filter(|process| process.ppid == parent)
                .map(|process| process.pid),
        );
        index += 1;
    }
    found.remove(0);
    processes.retain(|process| found.contains(&process.pid));
    processes
}

impl SshFleet {
    /// Hosts reached as root; `with_users` names hosts that also get the
    /// two test users (their own /etc).
    pub fn start(names: &[&str], with_users: &[&str]) -> SshFleet {
        let sandbox = Sandbox::empty();
        // Test users read the authorized keys: let them through the sandbox.
        run(Command::new("chmod").arg("0711").arg(sandbox.path()));
        let keys_dir = sandbox.path().join("ssh");
        std::fs::create_dir_all(&keys_dir).unwrap();
        keygen(&keys_dir.join("client_key"));
        std::fs::copy(
            keys_dir.join("client_key.pub"),
            keys_dir.join("authorized_keys"),
        )
        .unwrap();
        run(Command::new("chmod").arg("0755").arg(&keys_dir));
        run(Command::new("chmod")
            .arg("0644")
            .arg(keys_dir.join("authorized_keys")));
        let hosts = names
            .iter()
            .map(|name| {
                SshHost::start(
                    name,
                    sandbox.path(),
                    &keys_dir.join("authorized_keys"),
                    with_users.contains(name),
                )
            })
            .collect();
        let fleet = SshFleet { sandbox, hosts };
        fleet.write_inventory(&[]);
        fleet.trust_all_host_keys();
        fleet
    }

    pub fn host(&self, name: &str) -> &SshHost {
        self.hosts.iter().find(|host| host.name == name).unwrap()
    }

    pub fn host_mut(&mut self, name: &str) -> &mut SshHost {
        self.hosts
            .iter_mut()
            .find(|host| host.name == name)
            .unwrap()
    }

    pub fn authorized_keys(&self) -> PathBuf {
        self.sandbox.path().join("ssh/authorized_keys")
    }

    /// hosts.yaml with every host as root@127.0.0.1:PORT (or `users`'
    /// user), roots under hosts/, and the test client key.
    pub fn write_inventory(&self, users: &[(&str, &str)]) {
        let mut hosts = String::from("hosts:\n");
        for host in &self.hosts {
            let user = users
                .iter()
                .find(|(name, _)| *name == host.name)
                .map_or("root", |(_, user)| user);
            let root = self.sandbox.path().join("hosts").join(&host.name);
            hosts.push_str(&format!(
                "  {}:\n    ssh: {user}@127.0.0.1:{}\n    root: {}\n",
                host.name,
                host.port,
                root.display()
            ));
        }
        self.sandbox.write("inventory/hosts.yaml", &hosts);
        self.sandbox.write(
            "inventory/group_vars/all.yaml",
            "synapse_group: root\nhost_commands: false\nssh_options:\n  identity_file: ../ssh/client_key\n  known_hosts_file: ../ssh/known_hosts\n  config_file: /dev/null\n",
        );
        self.sandbox
            .write("inventory/secrets/master.key", TEST_MASTER_KEY);
    }

    pub fn trust_all_host_keys(&self) {
        let mut file = std::fs::File::create(self.sandbox.path().join("ssh/known_hosts")).unwrap();
        for host in &self.hosts {
            file.write_all(host.known_hosts_line().as_bytes()).unwrap();
        }
    }

    /// Runs matrixctl; ports in the output become `[PORT:NAME]`.
    pub fn run(&self, args: &[&str]) -> crate::support::Run {
        self.run_with_env(args, &[])
    }

    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> crate::support::Run {
        let mut run = self.sandbox.run_with_env(args, env);
        for host in &self.hosts {
            let port = format!("127.0.0.1:{}", host.port);
            let name = format!("127.0.0.1:[PORT:{}]", host.name);
            run.stdout = run.stdout.replace(&port, &name);
            run.stderr = run.stderr.replace(&port, &name);
            let bracketed = format!("[127.0.0.1]:{}", host.port);
            let named = format!("[127.0.0.1]:[PORT:{}]", host.name);
            run.stdout = run.stdout.replace(&bracketed, &named);
            run.stderr = run.stderr.replace(&bracketed, &named);
            let spaced = format!("-p {} 127.0.0.1", host.port);
            let named = format!("-p [PORT:{}] 127.0.0.1", host.name);
            run.stdout = run.stdout.replace(&spaced, &named);
        }
        run
    }
}
