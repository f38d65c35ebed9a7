//! `zone-programd`, the binary of the zone image: parse the command line and run it; map an error to
//! exit code 1. It carries the program only (no local zone, app side or benchmark).

use std::process::ExitCode;

fn main() -> ExitCode {
    match zone_program::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
