//! The developer command line `zone-program`: every subcommand in one binary (`serve [--local]`,
//! `local-zone`, `check-config`, `preflight`, `keygen`, `app …`, `bench`). It parses, loads the
//! developer configuration once and hands over to the crate that does the work. The image carries
//! `zone-programd` instead (the program's own `serve`, `check-config`, `preflight`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use zone_app::commands::AppArgs;
use zone_app::keygen::{KeygenArgs, KnownKey};
use zone_local::LocalZone;
use zone_local::config::LocalZoneConfig;
use zone_program::app::{App, shutdown_signal};
use zone_program::config::{KeyringEntry, LogConfig, SdkBackend};
use zone_program::sdk::local::codec_from_config;
use zone_testkit::DevConfig;

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
    /// Check everything the program needs before serving (config, key files, SDK library, data
    /// directory, port); print each failure with its fix; exit non-zero on any failure.
    Preflight,
    /// Generate an RSA-2048 key pair for a corp with the next public_key_ver (for set_public_key).
    Keygen(KeygenArgs),
    /// The app side, outside the zone: call the program through WeCom (or the local zone), set keys
    /// and levels, receive program_notify. Settings in [app] of the configuration.
    App(AppArgs),
    /// Load-benchmark the program against the axum echo floor and the one-thread demo (BENCHMARKS.md).
    Bench(zone_bench::BenchArgs),
}

/// Options of `serve`.
#[derive(Debug, Args)]
#[group(id = "DevServeArgs")]
pub struct ServeArgs {
    /// Also start the local zone in-process and talk to it (offline development).
    #[arg(long)]
    pub local: bool,
    /// The program's own options.
    #[command(flatten)]
    pub program: zone_program::cli::ServeArgs,
}

/// Runs the command line with the process arguments and environment.
pub fn run() -> anyhow::Result<()> {
    use zone_program::cli as program;
    use zone_program::telemetry;
    let cli = Cli::parse();
    if let Command::Preflight = cli.command {
        // Before loading: a configuration that does not load is one of the failures it reports.
        return program::preflight(cli.config.as_deref());
    }
    let mut config = DevConfig::load(cli.config.as_deref(), std::env::vars())?;
    match cli.command {
        Command::CheckConfig => program::check_config(&config.program),
        Command::Serve(mut args) => {
            if args.local && args.program.sdk == Some(SdkBackend::Native) {
                anyhow::bail!(
                    "--local talks to the in-process local zone through the local backend; it cannot be combined \
                     with --sdk native (to run the native backend against a local zone, start `zone-program \
                     local-zone` and see README \"Building against the real SDK\")"
                );
            }
            args.program.apply(&mut config.program)?;
            let _log = telemetry::init(&config.program.log);
            let runtime = program::serve_runtime(config.program.sdk.pool_size)?;
            if args.local {
                runtime.block_on(serve_local(config))
            } else {
                runtime.block_on(program::serve(config.program))
            }
        }
        Command::Preflight => program::preflight(cli.config.as_deref()),
        Command::Keygen(args) => {
            let known: Vec<KnownKey> = config
                .program
                .keyring
                .keys
                .iter()
                .map(|k| KnownKey { corp_id: k.corp_id.clone(), public_key_ver: k.public_key_ver })
                .collect();
            zone_app::keygen::run_cli(&args, &config.app.corp_id, &known)
        }
        Command::App(args) => {
            let _log = telemetry::init(&config.program.log);
            runtime()?.block_on(zone_app::commands::run(args, config.app, shutdown_signal()))
        }
        Command::Bench(args) => {
            let _log = telemetry::init(&LogConfig { level: "warn".into(), ..Default::default() });
            zone_bench::run(&config, cli.config.clone(), args, Some(std::sync::Arc::new(zone_bench::LocalZoneLauncher)))
        }
        Command::LocalZone => {
            let _log = telemetry::init(&config.program.log);
            runtime()?.block_on(local_zone_only(config))
        }
    }
}

/// `serve --local`: the local zone and the program in one process, wired to each other.
async fn serve_local(config: DevConfig) -> anyhow::Result<()> {
    let DevConfig { program: mut config, local_zone: lz, .. } = config;
    // The zone binds first so the program can be pointed at it, then learns the program's URL.
    let zone = LocalZone::bind(&lz, codec_from_config(&config.sdk)?).await?;
    if config.sdk.backend != SdkBackend::Local {
        tracing::warn!(configured = ?config.sdk.backend, "--local: the local backend replaces the configured one");
    }
    config.sdk.backend = SdkBackend::Local;
    config.sdk.local.zone_url = zone.url();
    if config.keyring.keys.is_empty() {
        config.keyring.keys.push(KeyringEntry {
            corp_id: lz.corp_id.clone(),
            public_key_ver: 1,
            private_key_path: zone.private_key_path().to_path_buf(),
        });
    }
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

async fn local_zone_only(config: DevConfig) -> anyhow::Result<()> {
    let lz = config.local_zone;
    let zone = LocalZone::bind(&lz, codec_from_config(&config.program.sdk)?).await?;
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
        key = zone_local::keys::PRIVATE_KEY_FILE,
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

    #[test]
    fn serve_takes_the_programs_options_and_local() {
        let cli = Cli::try_parse_from(["zone-program", "serve", "--local", "--listen", "127.0.0.1:9"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("serve") };
        assert!(args.local);
        assert_eq!(args.program.listen, Some("127.0.0.1:9".parse().unwrap()));
    }
}
