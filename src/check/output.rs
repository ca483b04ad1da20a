//! `check`'s report for people (per server name: each check with its
//! status, reason and hint) and as JSON (docs/check.md).

use std::fmt::Write;

use serde::Serialize;

use super::{Report, Status};

/// The JSON document `check --json` prints.
#[derive(Serialize)]
pub(crate) struct JsonReport<'a> {
    pub format_version: u32,
    pub ok: bool,
    pub reports: &'a [Report],
}

pub(crate) fn json(reports: &[Report]) -> String {
    let document = JsonReport {
        format_version: 1,
        ok: reports.iter().all(|report| report.ok),
        reports,
    };
    serde_json::to_string_pretty(&document).unwrap_or_default() + "\n"
}

pub(crate) fn text(reports: &[Report], color: bool) -> String {
    let paint = |status: Status| {
        let (word, code) = match status {
            Status::Ok => ("ok", "32"),
            Status::Warning => ("warning", "33"),
            Status::Error => ("error", "31"),
        };
        if color {
            format!("\x1b[{code}m{word:<7}\x1b[0m")
        } else {
            format!("{word:<7}")
        }
    };
    let mut out = String::new();
    for report in reports {
        match &report.host {
            Some(host) if host != &report.server_name => {
                let _ = writeln!(out, "{} (host {host})", report.server_name);
            }
            _ => {
                let _ = writeln!(out, "{}", report.server_name);
            }
        }
        for finding in &report.checks {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                paint(finding.status),
                finding.subject,
                finding.message
            );
            if let Some(hint) = &finding.hint {
                let _ = writeln!(out, "          hint: {hint}");
            }
        }
        let errors = report.count(Status::Error);
        let warnings = report.count(Status::Warning);
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        let _ = writeln!(
            out,
            "  {}, {}, {} ok",
            plural(errors, "error"),
            plural(warnings, "warning"),
            report.count(Status::Ok)
        );
        out.push('\n');
    }
    let failing = reports.iter().filter(|report| !report.ok).count();
    if reports.len() > 1 {
        let _ = writeln!(
            out,
            "{failing} of {} server names have errors",
            reports.len()
        );
    }
    out
}
