//! The command line: `serve`, `local-zone`, `check-config`. Parses, loads the configuration once,
//! and hands over to the module that does the work.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

use crate::app::{App, shutdown_signal};
use crate::config::{Config, SdkBackend};

/// The WeCom data & intelligence zone program.
#[derive(Debug, Parser)]
#[command(name = "zone-program", version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file (every key is optional; see config.example.toml).
    #[arg(long, global = true, env = "ZONE_PROGRAM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve WeCom callbacks (POST / on server.listen, default 0.0.0.0:8080).
    Serve(ServeArgs),
    /// Run only the local zone (the emulator of the WeCom side).
    LocalZone,
    /// Load and validate the configuration, then exit.
    CheckConfig,
}

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Also start the local zone in-process and talk to it (offline development).
    #[arg(long)]
    pub local: bool,
    /// Override server.listen.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Override sdk.backend.
    #[arg(long, value_enum)]
    pub sdk: Option<SdkBackend>,
    /// Open the vendor SDK's debug mode at start with this debug token (调试凭证, valid 3 days);
    /// needs `--sdk native` and `--access-token`. Overrides sdk.native.debug_token.
    #[arg(long, value_name = "TOKEN", requires = "access_token", value_parser = secret)]
    pub debug_token: Option<SecretString>,
    /// The app's access_token for debug mode (valid about 2 hours). Overrides sdk.native.access_token.
    #[arg(long, value_name = "TOKEN", requires = "debug_token", value_parser = secret)]
    pub access_token: Option<SecretString>,
}

/// Runs the command line with the process arguments and environment.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref(), std::env::vars())?;
    match cli.command {
        Command::CheckConfig => {
            println!("configuration ok (sdk backend: {:?}, listen: {})", config.sdk.backend, config.server.listen);
            Ok(())
        }
        Command::Serve(mut args) => {
            if let Some(listen) = args.listen {
                config.server.listen = listen;
            }
            if let Some(sdk) = args.sdk {
                config.sdk.backend = sdk;
            }
            if let (Some(debug), Some(access)) = (args.debug_token.take(), args.access_token.take()) {
                config.sdk.native.debug_token = Some(debug);
                config.sdk.native.access_token = Some(access);
            }
            config.validate()?;
            crate::telemetry::init(&config.log);
            runtime()?.block_on(serve(config, args.local))
        }
        Command::LocalZone => {
            crate::telemetry::init(&config.log);
            anyhow::bail!("the local zone is not part of this build yet")
        }
    }
}

async fn serve(config: Config, local: bool) -> anyhow::Result<()> {
    if local {
        tracing::warn!("--local: the local zone is not part of this build yet; serving the program only");
    }
    let app = App::build(config).await?;
    tracing::info!(addr = %app.local_addr(), "zone program listening");
    app.run_until_stopped(shutdown_signal()).await
}

/// Parses a secret command-line value (never shown by `Debug`).
fn secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(raw))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(64).build()?)
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
        assert!(parse(&["zone-program", "serve", "--sdk", "native", "--debug-token", "d"]).is_err());
        let cli =
            parse(&["zone-program", "serve", "--sdk", "native", "--debug-token", "d", "--access-token", "a"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("serve") };
        use secrecy::ExposeSecret;
        assert_eq!(args.debug_token.unwrap().expose_secret(), "d");
        assert_eq!(args.access_token.unwrap().expose_secret(), "a");
        assert_eq!(args.sdk, Some(SdkBackend::Native));
    }
}
