//! matrixctl's fast integration tests (`cargo test`, by anyone): the real
//! binary on inventories and on local hosts (directories), error messages,
//! golden renders and snapshots; nothing to install but Rust. The tests of
//! real programs and hosts are in `hosts.rs`; a test here that needs root
//! or an installed program runs with them (`--features host-tests`). A
//! module per feature, and `support` for the sandboxes they run the binary
//! in.

// A test that unwraps fails, which is what a test is for; and a test
// binary has no API for `pub` to reach beyond (its modules share helpers).
#![allow(clippy::unwrap_used, unreachable_pub)]

mod catalogue;
mod confirm;
mod docs;
mod error_messages;
mod fleet;
mod impact;
mod inputs;
mod interrupted;
mod machines;
mod mas;
mod papercuts;
// Its hosts have directories and links that other users own: only root
// makes them, so it runs in the tier that runs as root.
#[cfg(feature = "host-tests")]
mod paths;
mod plan_apply;
mod promises;
mod render;
mod secrets;
mod support;
mod transactions;
