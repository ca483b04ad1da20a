//! `-v`: the host program's calls and their timings, per host, on stderr.
//!
//! With tracing on, every call of the host program goes through
//! `mc_traced`, which reports the call and its milliseconds on the
//! program's stderr as `matrixctl-trace MS FUNCTION ARGS`. The transport
//! takes those lines out of what the program printed (so error messages
//! never see them) and prints them under the host's name, secrets
//! redacted.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::secrets::Redactor;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static ARMED: OnceLock<Redactor> = OnceLock::new();

/// The prefix of the host program's trace lines.
pub(crate) const MARKER: &str = "matrixctl-trace ";

/// `-v` was given: tracing starts once the secrets to hide are known.
pub(crate) fn request() {
    REQUESTED.store(true, Ordering::Relaxed);
}

/// Starts tracing, if it was requested, hiding what `redactor` knows.
pub(crate) fn arm(redactor: &Redactor) {
    if REQUESTED.load(Ordering::Relaxed) {
        let _ = ARMED.set(redactor.clone());
    }
}

pub(crate) fn enabled() -> bool {
    ARMED.get().is_some()
}

/// Takes the trace lines out of `stderr` and prints them for `host`, with
/// the whole run's time, as one block.
pub(crate) fn report(host: &str, stderr: &mut String, elapsed: Duration) {
    let Some(redactor) = ARMED.get() else {
        return;
    };
    let mut block = String::new();
    let mut kept = String::new();
    let mut calls = 0;
    for line in stderr.split_inclusive('\n') {
        let Some(trace) = line.strip_prefix(MARKER) else {
            kept.push_str(line);
            continue;
        };
        calls += 1;
        let (ms, call) = trace.trim_end().split_once(' ').unwrap_or(("?", trace));
        let call: String = if call.chars().count() > 120 {
            call.chars().take(117).collect::<String>() + "..."
        } else {
            call.to_string()
        };
        block.push_str(&format!("{host}: {ms:>6} ms  {call}\n"));
    }
    block.push_str(&format!(
        "{host}: {:>6} ms  the whole run ({calls} calls traced, connection included)\n",
        elapsed.as_millis()
    ));
    *stderr = kept;
    eprint!("{}", redactor.redact(&block));
}
