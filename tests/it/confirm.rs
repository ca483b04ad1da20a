//! On a terminal, apply shows the plan and asks; only `yes` goes ahead.
//! `script` (util-linux) gives matrixctl a real pseudo-terminal.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::{BIN, FILES_PER_HOST, Sandbox};

fn apply_on_a_terminal(sandbox: &Sandbox, answer: &str) -> (String, i32) {
    let command = format!("{BIN} --color never apply inventory --limit a.example");
    let mut child = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .current_dir(sandbox.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("`script` runs (apt-get install bsdutils)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n");
    (text, output.status.code().unwrap_or(-1))
}

#[test]
fn apply_asks_and_only_yes_goes_ahead() {
    let sandbox = Sandbox::fleet();
    let (text, code) = apply_on_a_terminal(&sandbox, "no\n");
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "Plan: {FILES_PER_HOST} to add, 0 to change, 0 to remove on 1 of 1 host."
        )),
        "{text}"
    );
    assert!(
        text.contains("Apply these changes? Only 'yes' is accepted: "),
        "{text}"
    );
    assert!(
        text.contains("Apply cancelled; nothing was changed."),
        "{text}"
    );
    assert!(sandbox.host_files("a.example").is_empty());

    let (text, code) = apply_on_a_terminal(&sandbox, "yes\n");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "Apply complete: {FILES_PER_HOST} added, 0 changed, 0 removed on 1 of 1 host."
        )),
        "{text}"
    );
    assert_eq!(sandbox.managed_files("a.example").len(), FILES_PER_HOST);
}
