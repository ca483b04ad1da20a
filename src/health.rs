//! What roles look at on a host to say whether it is well, beyond its
//! files: a role's `health:` entries are read-only scripts run on the host
//! in the plan's observation (the same round trip) and by `check`. Each
//! prints its verdict as its first line, `ok|warning|error MESSAGE`,
//! then optionally `hint TEXT`: the newest backup's age is one.

use serde::{Deserialize, Serialize};

/// A role's look at the host, rendered for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HealthProbe {
    pub role: String,
    /// What it looks at, as the operator reads it (`backups`).
    pub name: String,
    pub script: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HealthStatus {
    Ok,
    Warning,
    Error,
}

/// What a look found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HealthSeen {
    pub name: String,
    pub status: HealthStatus,
    pub message: String,
    pub hint: Option<String>,
}

impl HealthSeen {
    /// The verdict in what the script printed and how it ended. A script
    /// that gave no verdict is an error that says so, with its last line.
    pub(crate) fn from_output(name: &str, exit_code: &str, output: &str) -> HealthSeen {
        let mut lines = output
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty());
        let verdict = lines.next().and_then(|first| {
            let (word, message) = first.split_once(' ').unwrap_or((first, ""));
            let status = match word {
                "ok" => HealthStatus::Ok,
                "warning" => HealthStatus::Warning,
                "error" => HealthStatus::Error,
                _ => return None,
            };
            Some((status, message.trim().to_string()))
        });
        let hint = output
            .lines()
            .filter_map(|line| line.trim().strip_prefix("hint "))
            .map(str::trim)
            .next()
            .map(str::to_string);
        match verdict {
            Some((status, message)) => HealthSeen {
                name: name.to_string(),
                status,
                message,
                hint,
            },
            None => {
                let last = output
                    .lines()
                    .rev()
                    .map(str::trim)
                    .find(|line| !line.is_empty());
                HealthSeen {
                    name: name.to_string(),
                    status: HealthStatus::Error,
                    message: match last {
                        Some(last) => {
                            format!("the look gave no verdict (exit {exit_code}): {last}")
                        }
                        None => format!("the look gave no verdict (exit {exit_code})"),
                    },
                    hint: None,
                }
            }
        }
    }

    /// Whether it needs the operator.
    pub(crate) fn is_concern(&self) -> bool {
        self.status != HealthStatus::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_is_the_first_line_and_a_hint_may_follow() {
        let seen = HealthSeen::from_output(
            "newest backup",
            "0",
            "warning the newest archive is 3 days old\nhint matrixctl backup example.org\n",
        );
        assert_eq!(seen.status, HealthStatus::Warning);
        assert_eq!(seen.message, "the newest archive is 3 days old");
        assert_eq!(seen.hint.as_deref(), Some("matrixctl backup example.org"));
    }

    #[test]
    fn a_script_without_a_verdict_is_an_error_naming_its_last_words() {
        let seen = HealthSeen::from_output("newest backup", "127", "sh: 1: borg: not found\n");
        assert_eq!(seen.status, HealthStatus::Error);
        assert_eq!(
            seen.message,
            "the look gave no verdict (exit 127): sh: 1: borg: not found"
        );
        let silent = HealthSeen::from_output("newest backup", "0", "");
        assert_eq!(silent.message, "the look gave no verdict (exit 0)");
    }
}
