//! Builds the programs sent to hosts: the functions of `remote/*.sh`, then a
//! generated `main` holding the paths and file contents, then `main`.

use base64::Engine;

use super::functions::HostFn;

/// The directory beside a managed file where an apply stages the new files
/// (`MC_STAGING_DIR` in remote/common.sh).
pub(crate) const STAGING_DIR: &str = ".matrixctl-staged";

/// The functions every program starts with.
pub(crate) const REMOTE_FUNCTIONS: &str = concat!(
    include_str!("remote/common.sh"),
    include_str!("remote/paths.sh"),
    include_str!("remote/observe.sh"),
    include_str!("remote/files.sh"),
    include_str!("remote/transaction.sh"),
    // The host as a system, a part per kind (src/system/).
    include_str!("remote/repositories.sh"),
    include_str!("remote/packages.sh"),
    include_str!("remote/accounts.sh"),
    include_str!("remote/directories.sh"),
    include_str!("remote/venvs.sh"),
    include_str!("remote/databases.sh"),
    include_str!("remote/generated.sh"),
    include_str!("remote/artifacts.sh"),
    include_str!("remote/services.sh"),
    include_str!("remote/certificates.sh"),
);

/// The record of managed files, in the host's `state_dir`.
pub(crate) fn record_path(state_dir: &str) -> String {
    format!("{state_dir}/state")
}

/// Set to `STEP:SECONDS` in matrixctl's environment, makes the host's
/// transaction pause at that step (see `mc_step` in remote/files.sh), once it has
/// written `runs/ID.paused`, so tests can cut an apply short (or race it)
/// at a known point, over SSH as locally. For tests only.
pub(crate) const TEST_PAUSE_AT: &str = "MATRIXCTL_TEST_PAUSE_AT";

/// The journal of checks and handlers an apply still owes, in the state dir.
pub(crate) fn journal_path(state_dir: &str) -> String {
    format!("{state_dir}/journal")
}

/// The last line of a program that ran to the end.
pub(crate) const DONE_MARKER: &str = "matrixctl-done";

/// A program under construction.
pub(crate) struct Program {
    main: String,
}

impl Program {
    /// `root` is prefixed to every path on the host ("" for `/`);
    /// `state_dir` holds matrixctl's record and lock.
    pub(crate) fn new(root: &str, state_dir: &str) -> Program {
        let mut main = String::new();
        main.push_str(&format!("ROOT={}\n", quote(root)));
        main.push_str(&format!("MC_STATE_DIR={}\n", quote(state_dir)));
        main.push_str(&format!("MC_RECORD={}\n", quote(&record_path(state_dir))));
        if let Ok(value) = std::env::var(TEST_PAUSE_AT)
            && let Some((step, seconds)) = value.split_once(':')
            && !step.is_empty()
            && step.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
            && !seconds.is_empty()
            && seconds.bytes().all(|b| b.is_ascii_digit())
        {
            main.push_str(&format!(
                "MC_TEST_PAUSE_AT={step}\nMC_TEST_PAUSE_SECONDS={seconds}\n"
            ));
        }
        Program { main }
    }

    /// Adds a call: the function name and its arguments, quoted.
    pub(crate) fn call(&mut self, function: HostFn, args: &[&str]) -> &mut Program {
        self.traced();
        self.main.push_str(function.name());
        for arg in args {
            self.main.push(' ');
            self.main.push_str(&quote(arg));
        }
        self.main.push('\n');
        self
    }

    /// Adds a call whose stdin is `content`, as base64 in a here-document.
    pub(crate) fn call_with_content(
        &mut self,
        function: HostFn,
        args: &[&str],
        content: &[u8],
    ) -> &mut Program {
        self.traced();
        self.main.push_str(function.name());
        for arg in args {
            self.main.push(' ');
            self.main.push_str(&quote(arg));
        }
        // base64 never contains `_`, so the delimiter cannot occur in the body.
        self.main.push_str(" <<'MATRIXCTL_EOF'\n");
        let encoded = base64::engine::general_purpose::STANDARD.encode(content);
        for chunk in encoded.as_bytes().chunks(76) {
            self.main
                .push_str(std::str::from_utf8(chunk).unwrap_or_default());
            self.main.push('\n');
        }
        self.main.push_str("MATRIXCTL_EOF\n");
        self
    }

    /// Adds `mc_stage PATH MODE OWNER GROUP` with the file's content. Text
    /// (UTF-8 without NUL: what one quoted shell word can hold, byte for
    /// byte) is set in `MC_CONTENT` and written by the shell's own `printf`,
    /// so staging a file starts no process; other bytes come as base64 on
    /// the call's stdin. Either way the content is in the program, never in
    /// an argument (`-v` traces print arguments).
    pub(crate) fn stage(
        &mut self,
        path: &str,
        mode: &str,
        owner: &str,
        group: &str,
        content: &[u8],
    ) -> &mut Program {
        match std::str::from_utf8(content) {
            Ok(text) if !text.contains('\0') => {
                self.main.push_str("MC_CONTENT=");
                self.main.push_str(&quote(text));
                self.main.push('\n');
                self.call(HostFn::Stage, &[path, mode, owner, group, "text"])
            }
            _ => self.call_with_content(HostFn::Stage, &[path, mode, owner, group], content),
        }
    }

    /// With `-v`, the next call goes through `mc_traced` (src/trace.rs).
    fn traced(&mut self) {
        if crate::trace::enabled() {
            self.main.push_str("mc_traced ");
        }
    }

    /// Sets MC_PREFIXES for `mc_unsafe_paths`: every directory on the way
    /// from `/` to each of `paths` (under `root`) and to the state
    /// directory (itself included), each followed by its parent as
    /// `PARENT/.` (the directory a symlink sits in, resolved); and the
    /// staging directory beside each path (an apply stages its files
    /// there), followed by `DIR/.`, so a symlink planted in its place is
    /// refused like one on the way.
    ///
    /// Also sets MC_SAFE_DIRS: the directories from the host's root down to
    /// each path's directory and to the state directory, as MC_PREFIXES
    /// names them (the root itself as `ROOT/.`). Each must be root's and
    /// writable by root alone: whoever can change one of them can swap what
    /// lies below it between matrixctl's look and its write, and root's
    /// chmod, chown and rename would then follow their links.
    pub(crate) fn set_path_prefixes(
        &mut self,
        root: &str,
        state_dir: &str,
        paths: &[&str],
    ) -> &mut Program {
        let mut seen = std::collections::BTreeSet::new();
        let mut list: Vec<String> = Vec::new();
        let mut walk = |full: &str, include_last: bool| {
            let parts: Vec<&str> = full.split('/').skip(1).collect();
            let upto = if include_last {
                parts.len()
            } else {
                parts.len().saturating_sub(1)
            };
            let mut prefix = String::new();
            for part in &parts[..upto] {
                let parent = prefix.clone();
                prefix.push('/');
                prefix.push_str(part);
                if seen.insert(prefix.clone()) {
                    list.push(prefix.clone());
                    list.push(format!("{parent}/."));
                }
            }
        };
        for path in paths {
            walk(&format!("{root}{path}"), false);
        }
        let state = format!("{root}{state_dir}");
        walk(&state, true);
        list.push(format!("{state}/."));
        for path in paths {
            if let Some((dir, _)) = path.rsplit_once('/') {
                let staging = format!("{root}{dir}/{}", STAGING_DIR);
                if seen.insert(staging.clone()) {
                    list.push(staging);
                    list.push(format!("{root}{dir}/."));
                }
            }
        }
        let items: Vec<&str> = list.iter().map(String::as_str).collect();
        // set_list frames the list with newlines; the shell splits on them.
        self.set_list("MC_PREFIXES", &items);
        self.set_safe_directories(root, state_dir, paths)
    }

    /// Sets MC_SAFE_DIRS for the paths that will be written (see
    /// [`Program::set_path_prefixes`], which sets it for all its paths).
    /// A path only removed is left out: `rm` follows no link, and a
    /// backup copies a link as a link, so a directory a service owns may
    /// hold a file matrixctl once wrote there and now removes.
    pub(crate) fn set_safe_directories(
        &mut self,
        root: &str,
        state_dir: &str,
        written: &[&str],
    ) -> &mut Program {
        let safe = safe_directories(root, state_dir, written);
        let safe: Vec<&str> = safe.iter().map(String::as_str).collect();
        self.set_list("MC_SAFE_DIRS", &safe)
    }

    /// Sets a shell variable to a word.
    pub(crate) fn set(&mut self, name: &str, value: &str) -> &mut Program {
        self.main.push_str(&format!("{name}={}\n", quote(value)));
        self
    }

    /// Sets a shell variable to a newline-delimited list (with a newline at
    /// each end, so `case` can match whole lines).
    pub(crate) fn set_list(&mut self, name: &str, items: &[&str]) -> &mut Program {
        let mut list = String::from("\n");
        for item in items {
            list.push_str(item);
            list.push('\n');
        }
        self.main.push_str(&format!("{name}={}\n", quote(&list)));
        self
    }

    /// The whole program text, ending in the done marker.
    pub(crate) fn finish(mut self) -> String {
        self.main
            .push_str(&format!("printf '%s\\n' {DONE_MARKER}\n"));
        self.text()
    }

    fn text(self) -> String {
        let mut text = String::with_capacity(REMOTE_FUNCTIONS.len() + self.main.len() + 32);
        text.push_str(REMOTE_FUNCTIONS);
        text.push_str("main() {\n");
        text.push_str(&self.main);
        text.push_str("}\nmain\n");
        text
    }

    /// A program that hands `transaction` to the host as run `run_id`: the
    /// host writes it into its state directory and runs it in a session of
    /// its own, so the connection no longer matters, then waits for its
    /// result here (mc_await) and prints it as the transaction wrote it.
    /// With `armed`, the transaction stops half-way for a confirmation, so
    /// the wait returns when it does (`run-awaiting-confirmation`).
    pub(crate) fn detached(
        root: &str,
        state_dir: &str,
        run_id: &str,
        transaction: Program,
        armed: bool,
    ) -> String {
        // One quoted word, byte for byte, that `mc_start_run` writes with
        // the shell's printf (a here-document this large costs dash a
        // process to feed it, and `cat` another to read it).
        let inner = transaction.finish();
        let mut outer = Program::new(root, state_dir);
        outer.set_path_prefixes(root, state_dir, &[]);
        outer.set("MC_RUN_SCRIPT", &inner);
        outer.call(HostFn::StartRun, &[run_id]);
        if !armed {
            outer.call(HostFn::WaitChild, &[]);
        }
        outer.call(HostFn::Await, &[run_id, "confirm", "0"]);
        outer.text()
    }

    /// A program that waits up to `seconds` for run `run_id` and prints its
    /// result (or what became of it), as `wait` says.
    pub(crate) fn await_run(
        root: &str,
        state_dir: &str,
        run_id: &str,
        wait: AwaitRun,
        seconds: u64,
    ) -> String {
        let mut program = Program::new(root, state_dir);
        if wait == AwaitRun::ConfirmThenWait {
            program.call(HostFn::Confirm, &[run_id]);
        }
        let mode = match wait {
            AwaitRun::ConfirmThenWait | AwaitRun::UntilArmed => "confirm",
            AwaitRun::ThroughArmed => "through",
        };
        program.call(HostFn::Await, &[run_id, mode, &seconds.max(1).to_string()]);
        program.text()
    }
}

/// How [`Program::await_run`] waits for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AwaitRun {
    /// Confirm the run's armed change first, then wait (stopping at a
    /// further armed change).
    ConfirmThenWait,
    /// Wait, and return as soon as the run waits for a confirmation.
    UntilArmed,
    /// Wait for the end, past any armed change (the host decides it).
    ThroughArmed,
}

/// Quotes a word for the POSIX shell: single quotes, with `'` spelled `'\''`.
pub(crate) fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The directories that must be root's alone for matrixctl to write
/// `paths` and its state directory under `root` (see
/// [`Program::set_path_prefixes`]): the root as `ROOT/.`, then every
/// directory below it on the way to each path's directory and to the state
/// directory, named as MC_PREFIXES names them. Sorted, each once.
fn safe_directories(root: &str, state_dir: &str, paths: &[&str]) -> Vec<String> {
    let mut dirs = std::collections::BTreeSet::new();
    dirs.insert(format!("{root}/."));
    let state = format!("{state_dir}/");
    for path in paths.iter().copied().chain([state.as_str()]) {
        let mut prefix = String::from(root);
        let parts: Vec<&str> = path.split('/').skip(1).collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            prefix.push('/');
            prefix.push_str(part);
            dirs.insert(prefix.clone());
        }
        // The directory itself, resolved: where a root symlink leads.
        dirs.insert(format!("{prefix}/."));
    }
    dirs.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn run_sh(program: &str) -> std::process::Output {
        let mut child = Command::new("sh")
            .arg("-s")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(program.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// What this machine's own dpkg and apt say, as the host program reads
    /// it: an installed package's version, a known one's candidate, and
    /// nothing for a name apt never heard of; /etc/os-release's fields.
    #[test]
    fn the_host_program_reads_package_versions_and_the_release_as_dpkg_and_apt_do() {
        let mut program = Program::new("", "/var/lib/matrixctl");
        program.call(
            HostFn::ObserveVersions,
            &["dpkg", "hello", "no-such-package-matrixctl"],
        );
        program.call(HostFn::ObserveOs, &[]);
        let output = run_sh(&program.finish());
        let text = String::from_utf8_lossy(&output.stdout);
        let dpkg = Command::new("dpkg-query")
            .args(["-W", "-f", "${Version}", "dpkg"])
            .output()
            .expect("dpkg-query runs (a Debian machine)");
        let dpkg = String::from_utf8_lossy(&dpkg.stdout);
        assert!(text.contains(&format!("version dpkg {dpkg}\n")), "{text}");
        assert!(!text.contains("no-such-package"), "{text}");
        // hello is in Debian's archive but not installed by the tests: its
        // line is apt's candidate, whatever this machine's lists say.
        let policy = Command::new("apt-cache")
            .args(["policy", "hello"])
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        let policy = String::from_utf8_lossy(&policy.stdout);
        let installed = !policy.contains("Installed: (none)");
        let candidate = policy
            .lines()
            .find_map(|line| line.trim().strip_prefix("Candidate: "))
            .filter(|candidate| *candidate != "(none)");
        match candidate {
            Some(candidate) if !installed => assert!(
                text.contains(&format!("version hello {candidate}\n")),
                "{text}"
            ),
            Some(_) => assert!(text.contains("version hello "), "{text}"),
            None => assert!(!text.contains("version hello"), "{text}"),
        }
        let release = fs_err::read_to_string("/etc/os-release").unwrap();
        let codename = release
            .lines()
            .find_map(|line| line.strip_prefix("VERSION_CODENAME="))
            .unwrap();
        assert!(
            text.contains(&format!("os codename {codename}\n")),
            "{text}"
        );
        assert!(text.contains("os id debian\n"), "{text}");
    }

    #[test]
    fn a_program_cut_anywhere_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let mut program = Program::new(root, "/var/lib/matrixctl");
        program.stage("/etc/a.conf", "0644", "", "", &[b'x'; 200]);
        program.stage("/etc/b.bin", "0644", "", "", b"\0\xff");
        program.call(HostFn::Commit, &["/etc", "a.conf", "b.bin"]);
        let text = program.finish();
        // Cut at every line end and in the middle of every line.
        let mut cuts: Vec<usize> = text
            .match_indices('\n')
            .map(|(index, _)| index + 1)
            .collect();
        cuts.extend(
            text.match_indices('\n')
                .map(|(index, _)| index.saturating_sub(3)),
        );
        cuts.retain(|&cut| cut < text.len());
        for cut in cuts {
            let output = run_sh(&text[..cut]);
            assert!(
                !dir.path().join("etc").exists(),
                "a program cut at byte {cut} acted: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(!String::from_utf8_lossy(&output.stdout).contains(DONE_MARKER));
        }
        let output = run_sh(&text);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            fs_err::read(dir.path().join("etc/a.conf")).unwrap(),
            [b'x'; 200]
        );
    }

    #[test]
    fn a_detached_program_cut_anywhere_starts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let mut transaction = Program::new(root, "/state");
        transaction.set("MC_RUN", "r1");
        transaction.call(HostFn::Begin, &["test"]);
        transaction.call_with_content(HostFn::Stage, &["/etc/a.conf", "0644", "", ""], b"x\n");
        transaction.call(HostFn::Commit, &["/etc", "a.conf"]);
        let text = Program::detached(root, "/state", "r1", transaction, false);
        let cuts: Vec<usize> = text
            .match_indices('\n')
            .map(|(index, _)| index + 1)
            .filter(|&cut| cut < text.len())
            .collect();
        for cut in cuts {
            let output = run_sh(&text[..cut]);
            assert!(
                !dir.path().join("state").exists() && !dir.path().join("etc").exists(),
                "a program cut at byte {cut} acted: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let output = run_sh(&text);
        assert!(
            String::from_utf8_lossy(&output.stdout).ends_with(&format!("{DONE_MARKER}\n")),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(fs_err::read(dir.path().join("etc/a.conf")).unwrap(), b"x\n");
    }

    // Gives files to root and to group daemon: root's alone, so in the
    // tier of tests that runs as root (scripts/test, CI).
    #[cfg(feature = "host-tests")]
    #[test]
    fn staged_files_get_their_modes_and_owners_in_batches_before_the_rename() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let mut program = Program::new(root, "/var/lib/matrixctl");
        let files = [
            ("/etc/a.conf", "0644", "root", "root"),
            ("/etc/b.conf", "0640", "", "daemon"),
            ("/etc/c d.conf", "0600", "", ""),
            ("/etc/e.conf", "0640", "root", "daemon"),
        ];
        for (path, mode, owner, group) in files {
            program.stage(path, mode, owner, group, path.as_bytes());
        }
        program.call(
            HostFn::Commit,
            &["/etc", "a.conf", "b.conf", "c d.conf", "e.conf"],
        );
        program.call(HostFn::FlushRenames, &[]);
        let output = run_sh(&program.finish());
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let daemon = std::process::Command::new("getent")
            .args(["group", "daemon"])
            .output()
            .unwrap();
        let daemon: u32 = String::from_utf8_lossy(&daemon.stdout)
            .split(':')
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        for (path, mode, _, group) in files {
            let meta = fs_err::metadata(dir.path().join(&path[1..])).unwrap();
            assert_eq!(
                format!("{:04o}", meta.permissions().mode() & 0o7777),
                mode,
                "{path}"
            );
            assert_eq!(
                meta.gid(),
                if group == "daemon" { daemon } else { 0 },
                "{path}"
            );
            assert_eq!(
                fs_err::read(dir.path().join(&path[1..])).unwrap(),
                path.as_bytes()
            );
        }
        assert!(
            !dir.path().join("etc").join(STAGING_DIR).exists(),
            "the staging directory goes once its files are in place"
        );

        // An owner chown refuses is named by its file, and nothing is renamed.
        let mut program = Program::new(root, "/var/lib/matrixctl");
        program.call_with_content(HostFn::Stage, &["/etc/f.conf", "0644", "", ""], b"f");
        program.call_with_content(
            HostFn::Stage,
            &["/etc/g.conf", "0644", "no-such-user", ""],
            b"g",
        );
        program.call(HostFn::Commit, &["/etc", "f.conf"]);
        let output = run_sh(&program.finish());
        assert!(!output.status.success());
        assert_eq!(
            String::from_utf8_lossy(&output.stderr),
            "matrixctl: cannot set the owner of /etc/g.conf to no-such-user\n"
        );
        assert!(!dir.path().join("etc/f.conf").exists());
    }

    #[test]
    fn staged_contents_arrive_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        // Text the shell must not touch: quotes, expansions, escapes, the
        // UTF-8 bytes dash uses internally (0x81 to 0x8a, as in "€" and
        // U+0081..U+008A), CR, trailing newlines; and bytes only base64
        // can carry (NUL, invalid UTF-8).
        let mut every_char = String::new();
        for c in (1..=0x2ffu32).filter_map(char::from_u32) {
            every_char.push(c);
        }
        let contents: Vec<(&str, Vec<u8>)> = vec![
            (
                "/etc/quotes",
                b"it's \"$HOME\" `id` $(id) ${x:-y} \\n %s %b \\\n'\n".to_vec(),
            ),
            ("/etc/no-newline", b"last line".to_vec()),
            ("/etc/newlines", b"a\r\n\n\n".to_vec()),
            ("/etc/empty", Vec::new()),
            (
                "/etc/unicode",
                format!("{every_char}\u{20ac}\u{2c6}\n").into_bytes(),
            ),
            ("/etc/nul", b"a\0b".to_vec()),
            ("/etc/latin1", b"caf\xe9\n".to_vec()),
        ];
        let mut program = Program::new(root, "/var/lib/matrixctl");
        for (path, content) in &contents {
            program.stage(path, "0644", "", "", content);
        }
        let mut commit = vec!["/etc"];
        commit.extend(contents.iter().map(|(path, _)| &path["/etc/".len()..]));
        program.call(HostFn::Commit, &commit);
        let text = program.finish();
        // Text is in the program as it is; only the last two are base64.
        assert_eq!(text.matches("\nMC_CONTENT='").count(), 5);
        let output = run_sh(&text);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for (path, content) in &contents {
            assert_eq!(
                &fs_err::read(dir.path().join(&path[1..])).unwrap(),
                content,
                "{path}"
            );
        }
    }

    #[test]
    fn a_symlinks_directory_is_found_by_its_whole_path_even_with_colons_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_str().unwrap();
        let etc = format!("{base}/etc");
        fs_err::create_dir(&etc).unwrap();
        std::os::unix::fs::symlink(&etc, format!("{etc}/link")).unwrap();
        // A directory whose path ends with ":" and then etc's: its stat
        // line ends as etc's would.
        let decoy = format!("{base}/d:{etc}");
        fs_err::create_dir_all(&decoy).unwrap();
        fs_err::set_permissions(&decoy, std::fs::Permissions::from_mode(0o777)).unwrap();
        let unsafe_paths = || {
            let mut program = Program::new("", "/nonexistent-state");
            program.set_list(
                "MC_PREFIXES",
                &[
                    &format!("{decoy}/."),
                    &format!("{etc}/link"),
                    &format!("{etc}/."),
                ],
            );
            program.call(HostFn::UnsafePaths, &[]);
            String::from_utf8(run_sh(&program.finish()).stdout).unwrap()
        };
        fs_err::set_permissions(&etc, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(unsafe_paths(), format!("{DONE_MARKER}\n"));
        // The directory is this user's (root's in CI, anyone's else).
        let uid = {
            use std::os::unix::fs::MetadataExt;
            fs_err::metadata(&etc).unwrap().uid()
        };
        fs_err::set_permissions(&etc, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            unsafe_paths(),
            format!(
                "unsafe {etc}/link: a symlink in a directory that others can write (777, uid {uid})\n{DONE_MARKER}\n"
            )
        );
    }

    #[test]
    fn the_host_program_and_the_planner_name_the_staging_directory_alike() {
        assert!(REMOTE_FUNCTIONS.contains(&format!("\nMC_STAGING_DIR={}\n", STAGING_DIR)));
    }

    #[test]
    fn quoting_survives_the_shell() {
        for word in ["plain", "it's", "$(rm -rf /)", "a b\nc", ""] {
            let output = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf '%s' {}", quote(word)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(output.stdout).unwrap(), word);
        }
    }
}
