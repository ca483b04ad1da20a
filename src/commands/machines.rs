//! `matrixctl machines`: the inventory's machines, the homeservers each
//! carries, and how much room each has now, so the operator knows where
//! the next customer fits.

use std::collections::BTreeMap;

use super::*;

use crate::system::Item;

/// What one machine told of itself.
#[derive(Debug, Default, serde::Serialize)]
struct Room {
    memory_total_kib: Option<u64>,
    memory_available_kib: Option<u64>,
    disk_total_kib: Option<u64>,
    disk_available_kib: Option<u64>,
    /// Each unit the customers' roles keep running, and its state
    /// (`active`, `failed`, ...).
    units: BTreeMap<String, String>,
}

#[derive(Debug, serde::Serialize)]
struct MachineReport {
    name: String,
    customers: Vec<String>,
    /// The parts of homeservers spread over machines it carries
    /// (`big.example's workers`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    parts: Vec<String>,
    /// The customers whose services all run, of those that have services
    /// matrixctl keeps running; unknown when not looked at.
    #[serde(skip_serializing_if = "Option::is_none")]
    running: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    not_running: Vec<String>,
    #[serde(flatten)]
    room: Room,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub(crate) fn machines_command(role_dirs: &[PathBuf], args: cli::MachinesArgs) -> Result<ExitCode> {
    let prepared = prepare(role_dirs, &args.selection)?;
    // The machine targets, each with the units every customer keeps running.
    let machines: Vec<(&Target, &inventory::Machine, Vec<CustomerUnit>)> = prepared
        .targets
        .iter()
        .filter_map(|target| {
            let machine = prepared
                .machines
                .iter()
                .find(|machine| machine.name == target.host.name)?;
            Some((target, machine, customer_units(target)))
        })
        .collect();
    let rooms: Vec<Result<Room, String>> = if args.offline {
        machines.iter().map(|_| Ok(Room::default())).collect()
    } else {
        let (_control_dir, options) = reaching(
            &args.connect,
            machines.iter().map(|(target, _, _)| &target.host),
        )?;
        let runtime = runtime()?;
        runtime.block_on(futures_util::future::join_all(machines.iter().map(
            |(target, _, units)| {
                let task = look_task(units);
                let options = options.clone();
                async move {
                    fleet::run_task(&target.host, &task, &options)
                        .await
                        .map(|said| Room::read(&said))
                        .map_err(|error| format!("{error:#}"))
                }
            },
        )))
    };
    let reports: Vec<MachineReport> = machines
        .iter()
        .zip(rooms)
        .map(|((_, machine, units), room)| {
            let customers: Vec<String> = machine
                .customers
                .iter()
                .map(|customer| customer.to_string())
                .collect();
            let parts: Vec<String> = machine
                .parts
                .iter()
                .map(|(server_name, part)| format!("{server_name}'s {part}"))
                .collect();
            match room {
                Ok(room) => {
                    // A customer runs when every unit its roles keep running is
                    // active; one with none (its system not managed) is neither.
                    let (running, not_running): (Vec<String>, Vec<String>) = customers
                        .iter()
                        .filter(|customer| units.iter().any(|(of, _)| of == *customer))
                        .cloned()
                        .partition(|customer| {
                            units
                                .iter()
                                .filter(|(of, _)| of == customer)
                                .all(|(_, unit)| {
                                    room.units.get(unit).map(String::as_str) == Some("active")
                                })
                        });
                    MachineReport {
                        running: (!args.offline).then_some(running),
                        not_running,
                        name: machine.name.to_string(),
                        customers,
                        parts,
                        room,
                        error: None,
                    }
                }
                Err(error) => MachineReport {
                    name: machine.name.to_string(),
                    customers,
                    parts,
                    running: None,
                    not_running: Vec::new(),
                    room: Room::default(),
                    error: Some(prepared.redactor.redact(&error).into_owned()),
                },
            }
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "machines": reports }))?
        )?;
    } else {
        write!(out, "{}", machines_text(&reports))?;
    }
    Ok(if reports.iter().any(|report| report.error.is_some()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A customer's unit on its machine: (customer, unit).
type CustomerUnit = (String, String);

/// (customer, unit) for every service a customer's roles keep running on
/// the machine (their roles are `ROLE@CUSTOMER` in its render).
fn customer_units(target: &Target) -> Vec<CustomerUnit> {
    let mut units = Vec::new();
    for wanted in &target.rendered.system {
        let Item::Service {
            name,
            running: Some(true),
            ..
        } = &wanted.item
        else {
            continue;
        };
        if let Some((_, customer)) = wanted.role.split_once('@') {
            units.push((customer.to_string(), name.clone()));
        }
    }
    units
}

/// A look at the machine: memory, the root file system, and the state of
/// `units`, one `KIND FIELD...` line each.
fn look_task(units: &[CustomerUnit]) -> crate::render::RenderedTask {
    let quoted: Vec<String> = units
        .iter()
        .map(|(_, unit)| crate::transport::program::quote(unit))
        .collect();
    let mut script = String::from(
        "awk '$1 == \"MemTotal:\" || $1 == \"MemAvailable:\" { print \"memory\", $1, $2 }' /proc/meminfo\n\
         df -Pk / | awk 'NR == 2 { print \"disk\", $2, $4 }'\n",
    );
    if !quoted.is_empty() {
        script.push_str(&format!(
            "for unit in {}; do\n    echo \"unit $unit $(systemctl is-active \"$unit\" 2>/dev/null || true)\"\ndone\n",
            quoted.join(" ")
        ));
    }
    crate::render::RenderedTask {
        script,
        input: String::new(),
    }
}

impl Room {
    fn read(said: &str) -> Room {
        let mut room = Room::default();
        for line in said.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["memory", "MemTotal:", kib] => room.memory_total_kib = kib.parse().ok(),
                ["memory", "MemAvailable:", kib] => room.memory_available_kib = kib.parse().ok(),
                ["disk", total, available] => {
                    room.disk_total_kib = total.parse().ok();
                    room.disk_available_kib = available.parse().ok();
                }
                ["unit", unit, state] => {
                    room.units.insert(unit.to_string(), state.to_string());
                }
                ["unit", unit] => {
                    room.units.insert(unit.to_string(), "unknown".to_string());
                }
                _ => {}
            }
        }
        room
    }
}

fn gib(kib: Option<u64>) -> String {
    match kib {
        Some(kib) => format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0)),
        None => "?".to_string(),
    }
}

fn machines_text(reports: &[MachineReport]) -> String {
    if reports.is_empty() {
        return "No machines: every homeserver of this inventory has a machine of its own (`machines:` in hosts.yaml names shared ones).\n".to_string();
    }
    let mut out = String::new();
    for report in reports {
        let count = report.customers.len();
        out.push_str(&format!(
            "{}: {count} customer{}",
            report.name,
            if count == 1 { "" } else { "s" }
        ));
        if let Some(running) = &report.running
            && !(running.is_empty() && report.not_running.is_empty())
        {
            out.push_str(&format!(
                ", {} of {} running",
                running.len(),
                running.len() + report.not_running.len()
            ));
        }
        out.push('\n');
        if !report.customers.is_empty() || report.parts.is_empty() {
            out.push_str(&format!("  customers: {}\n", report.customers.join(", ")));
        }
        if !report.parts.is_empty() {
            out.push_str(&format!("  carries: {}\n", report.parts.join(", ")));
        }
        if let Some(error) = &report.error {
            out.push_str(&format!("  could not look: {error}\n"));
            continue;
        }
        if report.running.is_some() {
            if !report.not_running.is_empty() {
                out.push_str(&format!(
                    "  not running: {}\n",
                    report.not_running.join(", ")
                ));
            }
            out.push_str(&format!(
                "  memory: {} available of {}\n  disk /: {} free of {}\n",
                gib(report.room.memory_available_kib),
                gib(report.room.memory_total_kib),
                gib(report.room.disk_available_kib),
                gib(report.room.disk_total_kib),
            ));
        }
    }
    // Where the next customer fits best: the most memory available.
    if let Some(roomiest) = reports
        .iter()
        .filter(|report| report.error.is_none())
        .filter_map(|report| Some((report.room.memory_available_kib?, &report.name)))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .filter(|_| reports.len() > 1)
    {
        out.push_str(&format!("\nMost memory available: {}\n", roomiest.1));
    }
    out
}
