//! `matrixctl status`: the fleet at a glance. Each host's plan (one round
//! trip) carries, besides its pending changes and drift, the roles' health
//! and `status:` looks and the looks made here from what every host has:
//! the last apply, the services the roles run, the certificates they keep,
//! disk and memory. Hosts are printed worst first.

use serde::Serialize;

use crate::diff::Style;
use crate::fleet::PlannedHost;
use crate::health::{HealthProbe, HealthSeen, HealthStatus};
use crate::system::{Item, Wanted};
use crate::transport::program::quote;

/// Disk use (percent) from which `room` warns, and from which it is an error.
const DISK_WARNING_PERCENT: u64 = 85;
const DISK_ERROR_PERCENT: u64 = 95;
/// Available memory (percent) below which `room` warns.
const MEMORY_WARNING_PERCENT: u64 = 10;
/// Days before a certificate expires from which `certificates` warns.
const CERTIFICATE_WARNING_DAYS: u64 = 14;

/// Looks every host gets from what it has, whatever its roles: when and
/// how the last apply ended (`state_dir` under `root`, "" for `/`), the
/// roles' running services, the certificates they keep, and, on a whole
/// host (`whole`), its disk and memory. Nothing here changes the host.
pub(crate) fn looks(
    root: &str,
    state_dir: &str,
    system: &[Wanted],
    whole: bool,
) -> Vec<HealthProbe> {
    let mut looks = vec![HealthProbe {
        role: "matrixctl".to_string(),
        name: "last apply".to_string(),
        script: last_apply_script(&format!("{root}{state_dir}/runs")),
    }];
    let services: Vec<&str> = system
        .iter()
        .filter_map(|wanted| match &wanted.item {
            Item::Service {
                name,
                running: Some(true),
                ..
            } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    if !services.is_empty() {
        looks.push(HealthProbe {
            role: "matrixctl".to_string(),
            name: "services".to_string(),
            script: services_script(&services),
        });
    }
    let certificates: Vec<(&str, String)> = system
        .iter()
        .filter_map(|wanted| match &wanted.item {
            Item::Certificate { name, path, .. } => Some((name.as_str(), format!("{root}{path}"))),
            _ => None,
        })
        .collect();
    if !certificates.is_empty() {
        looks.push(HealthProbe {
            role: "matrixctl".to_string(),
            name: "certificates".to_string(),
            script: certificates_script(&certificates),
        });
    }
    if whole {
        looks.push(HealthProbe {
            role: "matrixctl".to_string(),
            name: "room".to_string(),
            script: room_script(),
        });
    }
    looks
}

/// The newest run's exit code file says how the last apply ended, its
/// time when (apply keeps the last run's files until the next one).
fn last_apply_script(runs: &str) -> String {
    format!(
        r#"runs={runs}
newest=$(ls -t -- "$runs"/*.code 2> /dev/null | head -n 1)
if [ -z "$newest" ]; then
    echo "warning no apply on record"
    echo "hint matrixctl apply applies the inventory"
    exit 0
fi
ago=$(( $(date +%s) - $(stat -c %Y -- "$newest") ))
if [ "$ago" -ge 172800 ]; then when="$((ago / 86400)) days ago"
elif [ "$ago" -ge 7200 ]; then when="$((ago / 3600)) hours ago"
elif [ "$ago" -ge 120 ]; then when="$((ago / 60)) minutes ago"
else when="$ago seconds ago"; fi
read -r code < "$newest" || code=1
if [ "$code" = 0 ]; then
    echo "ok $when, applied"
elif grep -q '^matrixctl: rolled back: ' -- "${{newest%.code}}.err" 2> /dev/null; then
    echo "error $when, rolled back"
    echo "hint matrixctl plan shows what is still to apply"
else
    echo "error $when, failed (exit $code)"
    echo "hint matrixctl plan shows what is still to apply"
fi
"#,
        runs = quote(runs)
    )
}

/// Which of the units is not active, with how often systemd restarted
/// those that are (a unit that keeps crashing restarts and looks up).
fn services_script(units: &[&str]) -> String {
    let units: Vec<String> = units.iter().map(|unit| quote(unit)).collect();
    format!(
        r#"down='' restarting='' up=0
for unit in {units}; do
    state=$(systemctl is-active -- "$unit" 2> /dev/null)
    if [ "$state" = active ]; then
        up=$((up + 1))
        restarts=$(systemctl show -p NRestarts --value -- "$unit" 2> /dev/null)
        [ "${{restarts:-0}}" = 0 ] || restarting="$restarting $unit ($restarts restarts)"
    else
        down="$down $unit (${{state:-unknown}})"
        first=${{first:-$unit}}
    fi
done
if [ -n "$down" ]; then
    echo "error down:$down"
    echo "hint journalctl -u $first on the host says why; matrixctl apply starts it"
elif [ -n "$restarting" ]; then
    echo "warning $up running; restarted by systemd:$restarting"
    echo "hint journalctl -u UNIT on the host says why it stopped"
else
    echo "ok $up running"
fi
"#,
        units = units.join(" ")
    )
}

/// Each certificate's end date (openssl, which the roles that keep
/// certificates install), the soonest first in the message.
fn certificates_script(certificates: &[(&str, String)]) -> String {
    let pairs: Vec<String> = certificates
        .iter()
        .map(|(name, path)| format!("{} {}", quote(name), quote(path)))
        .collect();
    format!(
        r#"now=$(date +%s) worst=ok said='' hint=''
look() {{
    if ! end=$(openssl x509 -enddate -noout -in "$2" 2> /dev/null); then
        worst=error said="$said, $1: none readable"
        hint="hint matrixctl apply makes it; the CA's answer is in its log"
        return
    fi
    days=$(( ($(date -d "${{end#notAfter=}}" +%s) - now) / 86400 ))
    if [ "$(openssl x509 -noout -subject -in "$2" | sed 's/^subject=//')" = "$(openssl x509 -noout -issuer -in "$2" | sed 's/^issuer=//')" ]; then
        [ "$worst" = error ] || worst=warning
        said="$said, $1: the placeholder (the CA has not issued it yet)"
        hint="hint the plan after an apply names what the CA said"
    elif [ "$days" -lt 0 ]; then
        worst=error said="$said, $1: expired $(( -days )) days ago"
        hint="hint is the renewal timer running, and port 80 open? journalctl -u certbot on the host"
    elif [ "$days" -lt {warn} ]; then
        [ "$worst" = error ] || worst=warning
        said="$said, $1: expires in $days days"
        hint="hint is the renewal timer running, and port 80 open? journalctl -u certbot on the host"
    else
        said="$said, $1: $days days left"
    fi
}}
{calls}
echo "$worst ${{said#, }}"
[ -z "$hint" ] || echo "$hint"
"#,
        warn = CERTIFICATE_WARNING_DAYS,
        calls = pairs
            .iter()
            .map(|pair| format!("look {pair}"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The root file system's and /var's use, and the memory available.
fn room_script() -> String {
    format!(
        r#"worst=ok said=''
for dir in / /var; do
    set -- $(df -P -- "$dir" | awk 'NR == 2 {{ sub("%", "", $5); print $5, int($4 / 1048576), $6 }}')
    [ $# = 3 ] || continue
    case " $seen " in *" $3 "*) continue ;; esac
    seen="$seen $3"
    if [ "$1" -ge {disk_error} ]; then worst=error
    elif [ "$1" -ge {disk_warning} ] && [ "$worst" = ok ]; then worst=warning; fi
    said="$said, disk $3 $1% used ($2 GiB free)"
done
total=$(awk '/^MemTotal:/ {{ print $2 }}' /proc/meminfo)
available=$(awk '/^MemAvailable:/ {{ print $2 }}' /proc/meminfo)
if [ -n "$total" ] && [ "$total" -gt 0 ]; then
    percent=$((available * 100 / total))
    [ "$percent" -ge {memory_warning} ] || [ "$worst" = error ] || worst=warning
    said="$said, memory $percent% available ($((available / 1024)) MiB)"
fi
echo "$worst ${{said#, }}"
[ "$worst" = ok ] || echo "hint matrixctl machines shows what runs there"
"#,
        disk_error = DISK_ERROR_PERCENT,
        disk_warning = DISK_WARNING_PERCENT,
        memory_warning = MEMORY_WARNING_PERCENT,
    )
}

/// One host's status: its worst verdict and every look, worst first.
#[derive(Debug, Serialize)]
pub(crate) struct HostStatus {
    pub name: String,
    pub status: HealthStatus,
    /// Files and system items apply would change (0 when unreadable).
    pub pending_changes: usize,
    /// Of those, managed files someone edited on the host since.
    pub drifted_files: usize,
    pub looks: Vec<HealthSeen>,
}

/// Every planned host's status, worst first, then by name.
pub(crate) fn of(planned: &[PlannedHost]) -> Vec<HostStatus> {
    let mut hosts: Vec<HostStatus> = planned.iter().map(host_status).collect();
    hosts.sort_by(|a, b| b.status.cmp(&a.status).then_with(|| a.name.cmp(&b.name)));
    hosts
}

fn host_status(host: &PlannedHost) -> HostStatus {
    let mut looks = Vec::new();
    let (pending_changes, drifted_files) = match &host.plan {
        Ok(plan) => {
            let (create, update, remove) = plan.totals();
            let pending = create + update + remove;
            let drifted = plan.changes.iter().filter(|change| change.drift).count();
            looks.push(HealthSeen {
                name: "changes".to_string(),
                status: if drifted > 0 || pending > 0 || plan.journal_pending {
                    HealthStatus::Warning
                } else {
                    HealthStatus::Ok
                },
                message: match (pending, drifted) {
                    (0, _) if plan.journal_pending => {
                        "an interrupted apply left steps to run".to_string()
                    }
                    (0, _) => "none pending: the host is as the inventory says".to_string(),
                    (pending, 0) => format!("{pending} pending"),
                    (pending, 1) => {
                        format!("{pending} pending; 1 managed file was edited on the host")
                    }
                    (pending, drifted) => {
                        format!(
                            "{pending} pending; {drifted} managed files were edited on the host"
                        )
                    }
                },
                hint: (pending > 0 || plan.journal_pending)
                    .then(|| "matrixctl plan shows them; matrixctl apply applies them".to_string()),
            });
            looks.extend(plan.health.iter().cloned());
            (pending, drifted)
        }
        Err(reason) => {
            looks.push(HealthSeen {
                name: "plan".to_string(),
                status: HealthStatus::Error,
                message: reason.lines().next().unwrap_or_default().to_string(),
                hint: Some("matrixctl plan says more".to_string()),
            });
            (0, 0)
        }
    };
    // Worst first; looks of one verdict keep their order.
    looks.sort_by_key(|seen| std::cmp::Reverse(seen.status));
    HostStatus {
        name: host.name.clone(),
        status: looks
            .iter()
            .map(|seen| seen.status)
            .max()
            .unwrap_or(HealthStatus::Ok),
        pending_changes,
        drifted_files,
        looks,
    }
}

/// The hosts, each headed by its name and worst verdict, then a summary.
pub(crate) fn text(hosts: &[HostStatus], style: Style) -> String {
    let mut out = String::new();
    let word = |status: HealthStatus| match status {
        HealthStatus::Ok => style.green("ok"),
        HealthStatus::Warning => style.yellow("warning"),
        HealthStatus::Error => style.red("error"),
    };
    for host in hosts {
        out.push_str(&format!(
            "{}  {}\n",
            style.bold(&host.name),
            word(host.status)
        ));
        for seen in &host.looks {
            let padding = " ".repeat(8usize.saturating_sub(status_name(seen.status).len()));
            out.push_str(&format!(
                "  {}{padding}{}: {}\n",
                word(seen.status),
                seen.name,
                seen.message
            ));
            if let Some(hint) = &seen.hint {
                out.push_str(&format!("          hint: {hint}\n"));
            }
        }
    }
    let count = |status: HealthStatus| hosts.iter().filter(|host| host.status == status).count();
    out.push_str(&format!(
        "\n{} host{}: {} with errors, {} with warnings, {} ok.\n",
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" },
        count(HealthStatus::Error),
        count(HealthStatus::Warning),
        count(HealthStatus::Ok)
    ));
    out
}

fn status_name(status: HealthStatus) -> &'static str {
    match status {
        HealthStatus::Ok => "ok",
        HealthStatus::Warning => "warning",
        HealthStatus::Error => "error",
    }
}

/// The hosts as JSON (docs/json.md, "status").
pub(crate) fn json(hosts: &[HostStatus]) -> String {
    #[derive(Serialize)]
    struct Fleet<'a> {
        command: &'static str,
        hosts: &'a [HostStatus],
    }
    let mut text = serde_json::to_string_pretty(&Fleet {
        command: "status",
        hosts,
    })
    .unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a look's script prints, run here as the host runs it.
    fn run(script: &str) -> String {
        let output = std::process::Command::new("sh")
            .args(["-c", script])
            .output()
            .expect("sh runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    #[test]
    fn the_last_apply_is_the_newest_run_s_exit_code() {
        let runs = tempfile::tempdir().unwrap();
        let script = last_apply_script(&runs.path().display().to_string());
        assert!(run(&script).starts_with("warning no apply on record\n"));
        std::fs::write(runs.path().join("a.code"), "0\n").unwrap();
        // Seconds ago: a loaded machine may take one to run the script.
        let said = run(&script);
        assert!(
            said.starts_with("ok ") && said.contains(" seconds ago, applied\n"),
            "{said}"
        );
        std::fs::write(runs.path().join("a.err"), "matrixctl: rolled back: x\n").unwrap();
        std::fs::write(runs.path().join("a.code"), "1\n").unwrap();
        let said = run(&script);
        assert!(
            said.starts_with("error ") && said.contains(" seconds ago, rolled back\n"),
            "{said}"
        );
    }

    #[test]
    fn a_certificate_is_read_for_its_days_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let make = |name: &str, days: &str| {
            let made = std::process::Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ])
                .args(["-nodes", "-subj", "/CN=x", "-days", days, "-keyout"])
                .arg(path("key"))
                .arg("-out")
                .arg(path(name))
                .output()
                .expect("openssl runs (apt-get install openssl)");
            assert!(made.status.success(), "{made:?}");
        };
        make("soon.pem", "3");
        let said = run(&certificates_script(&[
            ("soon.example", path("soon.pem")),
            ("none.example", path("absent.pem")),
        ]));
        // Self-signed, as the placeholder is; the absent one is the worst.
        assert!(
            said.starts_with(
                "error soon.example: the placeholder (the CA has not issued it yet), none.example: none readable\n"
            ),
            "{said}"
        );
    }

    #[test]
    fn room_and_services_give_a_verdict() {
        let said = run(&room_script());
        assert!(
            said.starts_with("ok disk / ")
                || said.starts_with("warning disk / ")
                || said.starts_with("error disk / "),
            "{said}"
        );
        assert!(said.contains("% available ("), "{said}");
        let said = run(&services_script(&["matrixctl-no-such-unit"]));
        assert!(
            said.starts_with("error down: matrixctl-no-such-unit ("),
            "{said}"
        );
    }
}
