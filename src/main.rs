//! `zone-program`: parse the command line and run it; map an error to exit code 1.

use std::process::ExitCode;

fn main() -> ExitCode {
    match wecom_zone_program::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
