//! The command line: `serve`, `local-zone`, `check-config`. Parses, loads the configuration once,
//! and hands over to the module that does the work.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// Load-benchmark the program against the axum echo floor and the one-thread demo (BENCHMARKS.md).
    Bench(crate::bench::BenchArgs),
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
        Command::Serve(args) => {
            if let Some(listen) = args.listen {
                config.server.listen = listen;
            }
            if let Some(sdk) = args.sdk {
                config.sdk.backend = sdk;
            }
            config.validate()?;
            crate::telemetry::init(&config.log);
            runtime()?.block_on(serve(config, args.local))
        }
        Command::Bench(args) => {
            crate::telemetry::init(&crate::config::LogConfig { level: "warn".into(), ..Default::default() });
            crate::bench::run(&config, cli.config.clone(), args, None)
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
}
