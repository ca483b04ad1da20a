//! Rendered files as snapshots. Golden cases are data: each directory under
//! tests/cases/ is an inventory (with `roles/` when it brings its own), and
//! the example inventory is a case too. The snapshot holds every file of
//! every host, so any change in what matrixctl writes shows up in review.
//! Derived secrets are in it on purpose: their derivation must never change,
//! or every deployed secret would rotate at once.

use std::path::Path;
use std::process::Stdio;

use crate::support::repo;

fn render_all(inventory: &Path, roles: Option<&Path>) -> String {
    let out = tempfile::tempdir().unwrap();
    let mut command = crate::support::matrixctl();
    if let Some(roles) = roles {
        command.arg("--roles").arg(roles);
    }
    let output = command
        .arg("render")
        .arg(inventory)
        .arg("--out")
        .arg(out.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut files = Vec::new();
    collect(out.path(), out.path(), &mut files);
    files.sort();
    let mut snapshot = String::new();
    for (relative, mode, content) in files {
        snapshot.push_str(&format!("=== {relative} ({mode:04o})\n{content}"));
        if !content.ends_with('\n') {
            snapshot.push_str("\n[no newline at end]\n");
        }
    }
    snapshot
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, u32, String)>) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let mode = entry.metadata().unwrap().permissions().mode() & 0o7777;
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            files.push((relative, mode, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn the_example_inventory_renders_as_expected() {
    insta::assert_snapshot!(render_all(&repo().join("inventory.example"), None));
}

#[test]
fn golden_cases_render_as_expected() {
    insta::glob!("../cases", "*/case.txt", |case_file| {
        let case = case_file.parent().unwrap();
        let roles = case.join("roles");
        let roles = roles.is_dir().then_some(roles.as_path());
        let description = std::fs::read_to_string(case_file).unwrap();
        insta::assert_snapshot!(format!("{description}\n{}", render_all(case, roles)));
    });
}

#[test]
fn rendering_is_byte_for_byte_repeatable() {
    let example = repo().join("inventory.example");
    assert_eq!(render_all(&example, None), render_all(&example, None));
}

/// `render` counts what it wrote in words that agree with the numbers.
#[test]
fn render_says_how_many_files_and_hosts_in_plain_words() {
    let sandbox = crate::support::Sandbox::fleet();
    let one = sandbox.run(&[
        "render",
        "inventory",
        "--limit",
        "a.example",
        "--out",
        "out",
    ]);
    assert_eq!(one.code, 0, "{}", one.transcript());
    assert!(
        one.stdout.contains(" files for 1 host into out."),
        "{}",
        one.stdout
    );
    let three = sandbox.run(&["render", "inventory", "--out", "out3"]);
    assert!(
        three.stdout.contains(" files for 3 hosts into out3."),
        "{}",
        three.stdout
    );
}
