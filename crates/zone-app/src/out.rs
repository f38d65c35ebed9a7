//! Standard output for the `app …` commands and `keygen`: a reader that closes the pipe early
//! (`zone-program app call … | head`) ends the command quietly (exit status 0) instead of a
//! "failed printing to stdout: Broken pipe" panic.

use std::io::Write as _;

/// Prints `text` and a newline, flushed at once (a consumer reads lines as they come).
pub fn print_out(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    quiet_on_broken_pipe(writeln!(out, "{text}"))?;
    quiet_on_broken_pipe(out.flush())
}

/// Exits the process with status 0 when `written` failed because the reader went away.
pub fn quiet_on_broken_pipe<T>(written: std::io::Result<T>) -> std::io::Result<T> {
    if let Err(e) = &written
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
    written
}
