//! The command line: `serve`, `local-zone`, `check-config`. Parses, loads the configuration once,
//! and hands over to the module that does the work.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::app::{App, shutdown_signal};
use crate::config::{Config, KeyringEntry, LocalZoneConfig, SdkBackend};
use crate::local_zone::LocalZone;

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
        Command::LocalZone => {
            crate::telemetry::init(&config.log);
            runtime()?.block_on(local_zone_only(config))
        }
    }
}

async fn serve(mut config: Config, local: bool) -> anyhow::Result<()> {
    if !local {
        let app = App::build(config).await?;
        tracing::info!(addr = %app.local_addr(), "zone program listening");
        return app.run_until_stopped(shutdown_signal()).await;
    }
    // The zone binds first so the program can be pointed at it, then learns the program's URL.
    let zone = LocalZone::bind(&config).await?;
    config.sdk.backend = SdkBackend::Local;
    config.sdk.local.zone_url = zone.url();
    if config.keyring.keys.is_empty() {
        config.keyring.keys.push(KeyringEntry {
            corp_id: config.local_zone.corp_id.clone(),
            public_key_ver: 1,
            private_key_path: zone.private_key_path().to_path_buf(),
        });
    }
    let lz = config.local_zone.clone();
    let app = App::build(config).await?;
    let program_addr = app.local_addr();
    let program_url = format!("http://{}", loopback_for(program_addr));
    print_first_call(&lz, &zone.url(), &program_url);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let zone_task = tokio::spawn(zone.run_until_stopped(program_url, stopped(stop_rx.clone())));
    let served = app.run_until_stopped(stopped(stop_rx)).await;
    zone_task.abort();
    served
}

async fn local_zone_only(config: Config) -> anyhow::Result<()> {
    let zone = LocalZone::bind(&config).await?;
    let lz = config.local_zone.clone();
    print_first_call(&lz, &zone.url(), &lz.program_url);
    zone.run_until_stopped(lz.program_url.clone(), shutdown_signal()).await
}

/// A wildcard listen address is reached through loopback.
fn loopback_for(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], addr.port())) } else { addr }
}

/// Prints, at start, how to call the program through the local zone (the README's first call).
fn print_first_call(lz: &LocalZoneConfig, zone_url: &str, program_url: &str) {
    use secrecy::ExposeSecret as _;
    let secret = lz.corp_secret.expose_secret();
    let secret = if secret == LocalZoneConfig::default().corp_secret.expose_secret() {
        secret
    } else {
        "<local_zone.corp_secret>"
    };
    println!(
        "local zone: {zone_url}  (app API /cgi-bin/*, SDK API /sdk/invoke, controls /local/*)\n\
         program:    {program_url}\n\
         demo message key: {dir}/{key} (public_key_ver 1)\n\n\
         First call (paste into a shell):\n\
         TOKEN=$(curl -s '{zone_url}/cgi-bin/gettoken?corpid={corp}&corpsecret={secret}' | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')\n\
         curl -s -X POST \"{zone_url}/cgi-bin/chatdata/sync_call_program?access_token=$TOKEN\" \\\n  \
         -d '{{\"program_id\":\"{program}\",\"ability_id\":\"invoke_sync_msg\",\"request_data\":\"{{\\\"limit\\\":2}}\"}}'\n",
        dir = lz.data_dir.display(),
        key = crate::local_zone::keys::PRIVATE_KEY_FILE,
        corp = lz.corp_id,
        program = lz.program_id,
    );
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
