//! The image's command line, `zone-programd`: `serve`, `check-config`, `preflight`. It parses, loads
//! the configuration once and hands over; the developer CLI (`zone-program`) reuses these pieces and
//! adds the local zone, the app side, keygen and the benchmark.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

use crate::app::{App, shutdown_signal};
use crate::config::{Config, SdkBackend};

/// The WeCom data & intelligence zone program (the binary of the zone image).
#[derive(Debug, Parser)]
#[command(name = "zone-programd", version, about, long_about = None)]
pub struct Cli {
    /// `--config FILE`.
    #[command(flatten)]
    pub config: ConfigFile,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--config FILE` (or `ZONE_PROGRAM_CONFIG`), the same on the image's and the developer's command line.
#[derive(Debug, Clone, Args)]
pub struct ConfigFile {
    /// TOML configuration file (every key is optional; see config.example.toml).
    #[arg(long = "config", global = true, env = "ZONE_PROGRAM_CONFIG", value_name = "FILE")]
    pub path: Option<PathBuf>,
}

impl ConfigFile {
    /// The file given, if any.
    pub fn as_deref(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve WeCom callbacks (POST / on server.listen, default 0.0.0.0:8080).
    Serve(ServeArgs),
    /// Load and validate the configuration and check its key files, then exit.
    CheckConfig,
    /// Check everything the program needs before serving (config, key files, SDK library, data
    /// directory, port); print each failure with its fix; exit non-zero on any failure.
    Preflight,
}

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Override server.listen.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Override sdk.backend.
    #[arg(long, value_enum)]
    pub sdk: Option<SdkBackend>,
    /// Serve the public demo keys (local backend; with `--local`, the local zone too) on a
    /// non-loopback address anyway: for a closed lab network only. Sets
    /// server.allow_public_demo_keys (and local_zone.allow_public_demo_keys).
    #[arg(long)]
    pub allow_public_demo_keys: bool,
    /// Open the vendor SDK's debug mode at start with this debug token (调试凭证, valid 3 days);
    /// needs `--sdk native` and `--access-token`. Overrides sdk.native.debug_token.
    #[arg(long, value_name = "TOKEN", requires = "access_token", value_parser = secret)]
    pub debug_token: Option<SecretString>,
    /// The app's access_token for debug mode (valid about 2 hours). Overrides sdk.native.access_token.
    #[arg(long, value_name = "TOKEN", requires = "debug_token", value_parser = secret)]
    pub access_token: Option<SecretString>,
}

impl ServeArgs {
    /// Applies the overrides to `config` and validates the result.
    pub fn apply(&mut self, config: &mut Config) -> anyhow::Result<()> {
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        if let Some(sdk) = self.sdk {
            config.sdk.backend = sdk;
        }
        if self.allow_public_demo_keys {
            config.server.allow_public_demo_keys = true;
        }
        if let (Some(debug), Some(access)) = (self.debug_token.take(), self.access_token.take()) {
            config.sdk.native.debug_token = Some(debug);
            config.sdk.native.access_token = Some(access);
        }
        config.validate()?;
        Ok(())
    }
}

/// Runs the image's command line with the process arguments and environment.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        // Before loading: a configuration that does not load is one of the failures it reports.
        Command::Preflight => preflight(cli.config.as_deref()),
        Command::CheckConfig => check_config(&Config::load(cli.config.as_deref(), std::env::vars())?),
        Command::Serve(mut args) => {
            let mut config = Config::load(cli.config.as_deref(), std::env::vars())?;
            args.apply(&mut config)?;
            let _log = crate::telemetry::init(&config.log);
            serve_runtime(config.sdk.pool_size)?.block_on(serve(config))
        }
    }
}

/// `serve`: builds the program and serves until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    tracing::info!(addr = %app.local_addr(), "zone program listening");
    app.run_until_stopped(shutdown_signal()).await
}

/// `check-config`: the configuration loaded; its key files are checked (a missing, unreadable or
/// wrong key fails); says what it will run and what only `preflight` checks.
pub fn check_config(config: &Config) -> anyhow::Result<()> {
    let keys = crate::preflight::check_keys(config);
    print!("{}", keys.render_checks());
    anyhow::ensure!(keys.passed(), "check-config failed: {} problem(s) with the keyring's key files", keys.failures());
    println!("configuration ok (sdk backend: {:?}, listen: {})", config.sdk.backend, config.server.listen);
    println!("the SDK library, the data directory and the port are checked by `preflight` and at start");
    Ok(())
}

/// `preflight`: runs every start check and prints the report; fails when any check failed.
pub fn preflight(config_file: Option<&Path>) -> anyhow::Result<()> {
    let report = crate::preflight::run(config_file, std::env::vars());
    print!("{}", report.render());
    anyhow::ensure!(report.passed(), "preflight failed: {} problem(s)", report.failures());
    Ok(())
}

/// The runtime of `serve`: native SDK calls hold a blocking thread each (up to `sdk.pool_size`), so
/// the blocking pool has that many threads on top of the 64 that decodes and key unwrapping use.
pub fn serve_runtime(sdk_pool_size: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let threads = 64 + sdk_pool_size;
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(threads).build()?)
}

/// Parses a secret command-line value (never shown by `Debug`).
fn secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(raw))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_debug_token_needs_the_access_token_and_both_parse() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        assert!(parse(&["zone-programd", "serve", "--sdk", "native", "--debug-token", "d"]).is_err());
        let cli =
            parse(&["zone-programd", "serve", "--sdk", "native", "--debug-token", "d", "--access-token", "a"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("serve") };
        use secrecy::ExposeSecret;
        assert_eq!(args.debug_token.unwrap().expose_secret(), "d");
        assert_eq!(args.access_token.unwrap().expose_secret(), "a");
        assert_eq!(args.sdk, Some(SdkBackend::Native));
    }

    #[test]
    fn the_image_binary_has_no_developer_commands() {
        for dev in ["local-zone", "app", "keygen", "bench"] {
            assert!(Cli::try_parse_from(["zone-programd", dev]).is_err(), "{dev}");
        }
        assert!(Cli::try_parse_from(["zone-programd", "serve", "--local"]).is_err());
    }
}
