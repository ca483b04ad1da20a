//! matrixctl's integration tests: one binary, a module per feature, and
//! `support` for the sandboxes they run the real binary in.

// A test that unwraps fails, which is what a test is for.
#![allow(clippy::unwrap_used)]

mod all_or_nothing;
mod backup;
mod booted;
mod catalogue;
mod check;
mod confirm;
mod docs;
mod error_messages;
mod faults;
mod federation;
mod fleet;
mod impact;
mod injection;
mod inputs;
mod interrupted;
mod network;
mod onboarding;
mod papercuts;
mod paths;
mod pebble;
mod plan_apply;
mod promises;
mod render;
mod secrets;
mod ssh;
mod sshd;
mod support;
mod synapse;
mod transactions;
mod webserver;
