use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = matrixctl::cli::Cli::parse();
    match matrixctl::run(cli) {
        Ok(code) => code,
        Err(error) => {
            matrixctl::print_error(&error);
            ExitCode::from(1)
        }
    }
}
