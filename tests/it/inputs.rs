//! Inputs that used to stall or surprise: a FIFO or a device as a vars
//! file, a vars file symlinked out of the inventory, pathological sizes,
//! and a master key others can read. Each ends at once with a clear error
//! naming the file (or, for the key's mode, a warning with the fix).

use std::os::unix::fs::symlink;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::Sandbox;

/// `plan` on the sandbox: fails within a second, naming `file`.
fn fails_fast_naming(sandbox: &Sandbox, file: &str, expected: &str) {
    let started = Instant::now();
    let plan = sandbox.run(&["plan", "inventory"]);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(plan.code, 1, "{}", plan.transcript());
    assert!(
        plan.stderr.contains(expected) && plan.stderr.contains(&format!("--> {file}")),
        "expected {expected:?} about {file}:\n{}",
        plan.transcript()
    );
    assert!(plan.stdout.is_empty());
}

#[test]
fn a_fifo_as_a_vars_file_is_refused_without_blocking() {
    let sandbox = Sandbox::fleet();
    let fifo = sandbox.path().join("inventory/host_vars/a.example.yaml");
    std::fs::create_dir_all(fifo.parent().unwrap()).unwrap();
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    fails_fast_naming(
        &sandbox,
        "inventory/host_vars/a.example.yaml",
        "error: is a FIFO, not a regular file",
    );
}

// Only root makes a device node: with the tests that run as root.
#[cfg(feature = "host-tests")]
#[test]
fn a_device_as_a_vars_file_is_refused_without_reading_it() {
    let sandbox = Sandbox::fleet();
    let device = sandbox.path().join("inventory/group_vars/eu.yaml");
    // /dev/zero's numbers: read, it would grow memory without end.
    let made = Command::new("mknod")
        .arg(&device)
        .args(["c", "1", "5"])
        .status()
        .unwrap();
    assert!(made.success());
    fails_fast_naming(
        &sandbox,
        "inventory/group_vars/eu.yaml",
        "error: is a device, not a regular file",
    );
}

#[test]
fn a_vars_file_symlinked_out_of_the_inventory_is_refused_and_named() {
    let sandbox = Sandbox::fleet();
    sandbox.write("elsewhere/a.yaml", "registration: closed\n");
    let link = sandbox.path().join("inventory/host_vars/a.example.yaml");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    symlink(sandbox.path().join("elsewhere/a.yaml"), &link).unwrap();
    fails_fast_naming(
        &sandbox,
        "inventory/host_vars/a.example.yaml",
        "error: is a symlink to [SANDBOX]/elsewhere/a.yaml, outside inventory; matrixctl reads only files inside it",
    );
    // /dev/zero through a link is refused the same way, before any read.
    std::fs::remove_file(&link).unwrap();
    symlink("/dev/zero", &link).unwrap();
    fails_fast_naming(
        &sandbox,
        "inventory/host_vars/a.example.yaml",
        "is a symlink to /dev/zero, outside inventory",
    );
    // A link that stays inside is read as usual.
    std::fs::remove_file(&link).unwrap();
    sandbox.write("inventory/shared/a.yaml", "registration: closed\n");
    symlink("../shared/a.yaml", &link).unwrap();
    let plan = sandbox.run(&["plan", "inventory"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
}

#[test]
fn a_vars_directory_symlinked_out_of_the_inventory_is_refused_and_named() {
    // Each file in it is a plain file: only the directory is the link.
    for directory in ["host_vars", "group_vars", "secrets"] {
        let sandbox = Sandbox::fleet();
        let inside = sandbox.path().join("inventory").join(directory);
        let outside = sandbox.path().join("elsewhere").join(directory);
        std::fs::create_dir_all(outside.parent().unwrap()).unwrap();
        if inside.exists() {
            std::fs::rename(&inside, &outside).unwrap();
        } else {
            std::fs::create_dir_all(&outside).unwrap();
        }
        if directory == "host_vars" {
            std::fs::write(outside.join("a.example.yaml"), "registration: closed\n").unwrap();
        }
        symlink(&outside, &inside).unwrap();
        let file = match directory {
            "host_vars" => "a.example.yaml",
            "group_vars" => "all.yaml",
            _ => "master.key",
        };
        fails_fast_naming(
            &sandbox,
            &format!("inventory/{directory}/{file}"),
            &format!(
                "error: is, through a linked directory, [SANDBOX]/elsewhere/{directory}/{file}, outside inventory"
            ),
        );
    }
}

#[test]
fn pathological_sizes_end_within_a_second() {
    let sandbox = Sandbox::fleet();
    let deep = format!("x: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    sandbox.write("inventory/group_vars/eu.yaml", &deep);
    fails_fast_naming(
        &sandbox,
        "inventory/group_vars/eu.yaml:1",
        "error: YAML nested more than 64 levels deep",
    );
    std::fs::remove_file(sandbox.path().join("inventory/group_vars/eu.yaml")).unwrap();
    for length in [10_000, 100_000] {
        sandbox.write("inventory/secrets/master.key", &"a".repeat(length));
        fails_fast_naming(
            &sandbox,
            "inventory/secrets/master.key",
            "error: the file is larger than 4 KiB",
        );
    }
    sandbox.write("inventory/secrets/master.key", &"a".repeat(1000));
    fails_fast_naming(
        &sandbox,
        "inventory/secrets/master.key",
        "error: the master key looks far from random",
    );
}

#[test]
fn a_master_key_others_can_read_gets_a_warning_on_every_run() {
    let sandbox = Sandbox::fleet();
    let key = sandbox.path().join("inventory/secrets/master.key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    for _ in 0..2 {
        let plan = sandbox.run(&["plan", "inventory"]);
        assert_eq!(plan.code, 0, "{}", plan.transcript());
        assert!(
            plan.stderr.contains(
                "warning: the master key inventory/secrets/master.key can be read by others (mode 0644); every secret derives from it\nhint: chmod 600 inventory/secrets/master.key\n"
            ),
            "{}",
            plan.transcript()
        );
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let plan = sandbox.run(&["plan", "inventory"]);
    assert!(!plan.stderr.contains("warning"), "{}", plan.transcript());
}

#[test]
fn a_line_break_is_refused_everywhere_but_in_json_encoded_values() {
    let sandbox = Sandbox::fleet();
    // synapse_extra reaches its file through tojson: the break stays an
    // escape inside one JSON string.
    sandbox.write(
        "inventory/host_vars/a.example.yaml",
        "synapse_extra:\n  default_room_version: \"10\\nx\"\n",
    );
    let render = sandbox.run(&[
        "render",
        "inventory",
        "--out",
        "rendered",
        "--limit",
        "a.example",
    ]);
    assert_eq!(render.code, 0, "{}", render.transcript());
    let extra = std::fs::read_to_string(
        sandbox
            .path()
            .join("rendered/a.example/etc/matrix-synapse/conf.d/extra.yaml"),
    )
    .unwrap();
    assert!(
        extra.contains("default_room_version: \"10\\nx\"\n"),
        "{extra}"
    );

    // Anywhere else, and in any key, it is refused.
    for vars in [
        "synapse_extra:\n  \"default_room_version\\nenable_registration\": true\n",
        "turn:\n  listening_ip: \"192.0.2.1\\nno-auth\"\n",
        "bridges:\n  postmoogle:\n    login: \"bot\\nPOSTMOOGLE_ADMINS=@evil:x\"\n",
    ] {
        sandbox.write("inventory/host_vars/a.example.yaml", vars);
        let plan = sandbox.run(&["plan", "inventory"]);
        assert_eq!(plan.code, 1, "{vars}: {}", plan.transcript());
        assert!(
            plan.stderr.contains(
                "holds a line break, which would start a new line in the files it is written to"
            ),
            "{vars}: {}",
            plan.transcript()
        );
    }
}
