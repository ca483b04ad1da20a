//! matrixctl: declarative provisioning for Matrix homeserver hosts.
//!
//! The data flows one way: the inventory is loaded and checked
//! ([`inventory`]), each host's files are rendered from roles and templates
//! ([`roles`], [`render`]), each host is observed in one run of the host
//! program ([`observe`], [`transport`]), desired and observed become a plan
//! ([`plan`]), and apply executes exactly that plan ([`fleet`]). See
//! ARCHITECTURE.md for the tour.

// A `Problem` (file, line, key, hint) is larger than clippy likes in an
// `Err`, but it is built once on a cold path and printed; boxing it
// everywhere would only add noise.
#![allow(clippy::result_large_err)]

mod archives;
mod calendar;
mod check;
mod checklist;
pub mod cli;
mod diff;
mod escape;
mod exports;
mod facts;
mod fields;
mod fleet;
mod hash;
mod health;
mod impact;
mod input;
pub mod inventory;
mod locate;
mod observe;
mod openpgp;
mod options;
mod parallel;
mod plan;
mod problem;
mod progress;
mod record;
mod render;
mod report;
pub mod roles;
mod saved;
mod scaffold;
mod secrets;
mod service;
mod sshkey;
mod status;
mod system;
mod trace;
mod transport;
mod values;

mod commands;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;

use cli::{Cli, ColorChoice, Command};
use commands::*;
use diff::Style;
use problem::Problems;
use roles::RoleSet;

/// Runs one command; the exit code follows Terraform (0 ok, 1 error,
/// 2 changes pending with `plan --detailed-exitcode`).
pub fn run(cli: Cli) -> Result<ExitCode> {
    let style = Style {
        color: match cli.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal()
                    && !no_color_requested(std::env::var_os("NO_COLOR").as_deref())
            }
        },
    };
    if cli.verbose {
        trace::request();
    }
    match cli.command {
        Command::Plan(args) => plan_command(&cli.roles, args, style),
        Command::Apply(args) => apply_command(&cli.roles, args, style),
        Command::Render(args) => render_command(&cli.roles, args),
        Command::Show(args) => show_command(args),
        Command::Options => {
            let roles = roles::RoleSet::load(&cli.roles)?;
            print!("{}", roles.options_reference());
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(cli::AdminCommand::Create(args)) => admin_create(&cli.roles, args),
        Command::Token(cli::TokenCommand::Create(args)) => token_create(&cli.roles, args),
        Command::Backup(args) => backup_command(&cli.roles, args),
        Command::Restore(args) => restore_command(&cli.roles, args, style),
        Command::Backups(args) => {
            let said = run_task(
                &cli.roles,
                &args.inventory.path(),
                &args.host,
                "backup list",
                &Default::default(),
                &args.connect,
                &[],
            )?;
            print!("{}", archives::table(&said)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Init(args) => {
            print!("{}", scaffold::init(&args.dir)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Host(cli::HostCommand::Add(args)) => host_add_command(&cli.roles, args),
        Command::Host(cli::HostCommand::Remove(args)) => {
            if args.purge {
                purge_host(&cli.roles, &args)?;
            }
            let roles = RoleSet::load(&cli.roles)?;
            print!(
                "{}",
                scaffold::host_remove(&args.inventory.path(), &roles, &args.domain)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Machines(args) => machines_command(&cli.roles, args),
        Command::Onboard(args) => onboard_command(&cli.roles, args),
        Command::Vars(args) => vars_command(&cli.roles, args),
        Command::Disconnect(args) => disconnect_command(&cli.roles, args),
        Command::Check(args) => check_command(&cli.roles, args, style),
        Command::Status(args) => status_command(&cli.roles, args, style),
        Command::Completions(args) => {
            let shell = match args.shell {
                cli::CompletionShell::Bash => clap_complete::Shell::Bash,
                cli::CompletionShell::Zsh => clap_complete::Shell::Zsh,
                cli::CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "matrixctl", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Whether `NO_COLOR` asks for no colour: set and not empty, as
/// no-color.org defines it (`NO_COLOR=` leaves colour on).
fn no_color_requested(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|value| !value.is_empty())
}

/// Prints an error the way users see every error: problems as they are,
/// anything else as one `error:` line with its causes.
/// An error as the JSON document `--json` promises on stdout
/// (docs/json.md): `{"format_version", "errors": [{message, file, line,
/// key, hint}]}`.
pub fn print_error_json(error: &anyhow::Error) {
    #[derive(serde::Serialize)]
    struct JsonError<'a> {
        message: &'a str,
        file: Option<String>,
        line: Option<usize>,
        key: Option<&'a str>,
        hint: Option<&'a str>,
    }
    #[derive(serde::Serialize)]
    struct JsonErrors<'a> {
        format_version: u32,
        errors: Vec<JsonError<'a>>,
    }
    let problems: Vec<problem::Problem> = if let Some(Problems(problems)) = error.downcast_ref() {
        problems.clone()
    } else if let Some(problem) = error.downcast_ref::<problem::Problem>() {
        vec![problem.clone()]
    } else {
        vec![problem::Problem::new(format!("{error:#}"))]
    };
    let document = JsonErrors {
        format_version: report::JSON_FORMAT_VERSION,
        errors: problems
            .iter()
            .map(|problem| JsonError {
                message: &problem.message,
                file: problem.file.as_ref().map(|file| file.display().to_string()),
                line: problem.line,
                key: problem.key.as_deref(),
                hint: problem.hint.as_deref(),
            })
            .collect(),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&document).unwrap_or_default()
    );
}

pub fn print_error(error: &anyhow::Error) {
    if let Some(problems) = error.downcast_ref::<Problems>() {
        eprintln!("{problems}");
    } else if let Some(problem) = error.downcast_ref::<problem::Problem>() {
        eprintln!("{problem}");
    } else {
        eprintln!("error: {error:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::no_color_requested;

    #[test]
    fn only_a_non_empty_no_color_turns_colour_off() {
        assert!(!no_color_requested(None));
        assert!(!no_color_requested(Some("".as_ref())));
        assert!(no_color_requested(Some("1".as_ref())));
        assert!(no_color_requested(Some("0".as_ref())));
    }
}
