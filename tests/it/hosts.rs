//! matrixctl's integration tests of real programs and hosts
//! (`scripts/test`, `--features host-tests`): sshd, nginx, Caddy,
//! HAProxy, nftables in network namespaces, Synapse, booted Debian hosts
//! and pebble, which scripts/test installs. They share `support` with the
//! fast tier (`main.rs`); their files live beside its own.

// A test that unwraps fails, which is what a test is for; and a test
// binary has no API for `pub` to reach beyond (its modules share helpers).
#![allow(clippy::unwrap_used, unreachable_pub)]

#[path = "all_or_nothing.rs"]
mod all_or_nothing;
#[path = "artifacts.rs"]
mod artifacts;
#[path = "backup.rs"]
mod backup;
#[path = "booted.rs"]
mod booted;
#[path = "check.rs"]
mod check;
#[path = "elementx.rs"]
mod elementx;
#[path = "faults.rs"]
mod faults;
#[path = "federation.rs"]
mod federation;
#[path = "injection.rs"]
mod injection;
#[path = "loopback.rs"]
mod loopback;
#[path = "monitoring.rs"]
mod monitoring;
#[path = "network.rs"]
mod network;
#[path = "newcomer.rs"]
mod newcomer;
#[path = "onboarding.rs"]
mod onboarding;
#[path = "pebble.rs"]
mod pebble;
#[path = "shared_machine.rs"]
mod shared_machine;
#[path = "ssh.rs"]
mod ssh;
#[path = "sshd.rs"]
mod sshd;
// Shared with the fast tier, which uses all of it (and keeps it from
// rotting); a helper only these tests use lives in one of their modules.
#[allow(dead_code)]
#[path = "support.rs"]
mod support;
#[path = "synapse.rs"]
mod synapse;
#[path = "tools.rs"]
mod tools;
#[path = "webserver.rs"]
mod webserver;
#[path = "workers.rs"]
mod workers;
