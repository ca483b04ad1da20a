//! The command line: subcommands and their flags (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Declarative provisioning for Matrix homeserver hosts.
#[derive(Debug, Parser)]
#[command(name = "matrixctl", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// When to colour output. `auto` colours a terminal unless NO_COLOR is set.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// A directory of extra roles (NAME.yaml and templates/); a role named
    /// like a built-in one replaces it. May be given more than once.
    #[arg(long = "roles", global = true, value_name = "DIR")]
    pub roles: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change on each host, without changing anything.
    Plan(PlanArgs),
    /// Make each host match the inventory.
    Apply(ApplyArgs),
    /// Write each host's desired files under DIR/HOST/, touching no host.
    Render(RenderArgs),
}

#[derive(Debug, Args)]
pub struct Selection {
    /// The inventory directory.
    #[arg(default_value = "inventory")]
    pub inventory: PathBuf,

    /// Only these hosts: a name, a glob (`*.example.com`) or a group;
    /// several separated by commas.
    #[arg(long, value_name = "PATTERN")]
    pub limit: Option<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub selection: Selection,

    /// Print the plan as JSON (see docs/json.md).
    #[arg(long)]
    pub json: bool,

    /// Exit 2 when changes are pending (0: none, 1: error).
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub selection: Selection,

    /// Print the plan and result as JSON (see docs/json.md); needs --yes.
    #[arg(long)]
    pub json: bool,

    /// Apply without asking for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub selection: Selection,

    /// Where to write the files (DIR/HOST/PATH).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}
