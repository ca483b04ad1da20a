use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match matrixctl::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // clap's own exit code for a usage error is 2, which is what
            // `plan --detailed-exitcode` means by "changes pending": a
            // typo in CI would read as pending changes. Help and version
            // still exit 0.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let json = cli.json_output();
    match matrixctl::run(cli) {
        Ok(code) => code,
        Err(error) => {
            if json {
                matrixctl::print_error_json(&error);
            } else {
                matrixctl::print_error(&error);
            }
            ExitCode::from(1)
        }
    }
}
