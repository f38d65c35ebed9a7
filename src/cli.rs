//! The command line: `serve`, `local-zone`, `check-config`, `preflight`, `keygen`, `app …`. Parses,
//! loads the configuration once, and hands over to the module that does the work.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

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
    /// Check everything the program needs before serving (config, key files, SDK library, data
    /// directory, port); print each failure with its fix; exit non-zero on any failure.
    Preflight,
    /// Generate an RSA-2048 key pair for a corp with the next public_key_ver (for set_public_key).
    Keygen(KeygenArgs),
    /// The app side, outside the zone: call the program through WeCom (or the local zone), set keys
    /// and levels, receive program_notify. Settings in [app] of the configuration.
    App(AppArgs),
    /// Load-benchmark the program against the axum echo floor and the one-thread demo (BENCHMARKS.md).
    Bench(crate::bench::BenchArgs),
}

/// Options of `keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The corp the key is for (default: app.corp_id).
    #[arg(long)]
    pub corp_id: Option<String>,
    /// Directory of the key files `<corp_id>.<ver>.pem` (created with mode 0700).
    #[arg(long, default_value = "keys", value_name = "DIR")]
    pub keys_dir: PathBuf,
    /// The version (default: one above the highest in the keys directory and the keyring).
    #[arg(long)]
    pub ver: Option<u32>,
    /// Print one JSON object instead of the annotated text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `app`.
#[derive(Debug, Args)]
pub struct AppArgs {
    /// Override app.base_url (`https://qyapi.weixin.qq.com` or the local zone).
    #[arg(long, global = true, value_name = "URL")]
    pub base_url: Option<String>,
    /// Override app.program_id.
    #[arg(long, global = true)]
    pub program_id: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: AppCommand,
}

/// The `app` subcommands.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Print a valid access_token (cached in app.token_cache until it expires).
    Token {
        /// Fetch a new one even if the cached one is still valid.
        #[arg(long)]
        refresh: bool,
    },
    /// sync_call_program: call an ability and print its response_data.
    Call {
        /// The ability id, e.g. invoke_sync_msg or get_callback_data.
        ability: String,
        /// request_data: a JSON text, `-` for standard input.
        #[arg(default_value = "{}")]
        request_data: String,
        /// The NotifyId of a program_notify this call answers.
        #[arg(long)]
        notify_id: Option<String>,
    },
    /// async_program_task: start an ability as a job and print its jobid.
    Async {
        /// The ability id.
        ability: String,
        /// request_data: a JSON text, `-` for standard input.
        #[arg(default_value = "{}")]
        request_data: String,
    },
    /// async_program_result: print what the program reported for a job (or that it still runs).
    Result {
        /// The jobid from `app async`.
        jobid: String,
        /// Poll until the job is done, for at most this many seconds.
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
    },
    /// set_public_key: register the public key that wraps message secret keys.
    SetPublicKey {
        /// The public key PEM (e.g. keys/<corp_id>.<ver>.pub.pem from `keygen`).
        #[arg(long, value_name = "FILE")]
        public_key_file: PathBuf,
        /// public_key_ver (default: the <ver> in the file name).
        #[arg(long)]
        ver: Option<u32>,
    },
    /// set_receive_callback: make the program the one that receives events.
    SetReceiveCallback,
    /// get_log_level / set_log_level of the program.
    LogLevel {
        /// get or set.
        #[command(subcommand)]
        action: LogLevelAction,
    },
    /// Debug mode of the program: open_debug_mode, close_debug_mode, check_debug_mode.
    Debug {
        /// open, close or status.
        #[command(subcommand)]
        action: DebugAction,
    },
    /// Receive WeCom callbacks (URL verification, program_notify) and print one JSON line each.
    Listen {
        /// Override app.callback.listen.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Fetch each notification's data right away with sync_call_program and its NotifyId.
        #[arg(long)]
        fetch: bool,
        /// The ability that returns notify data.
        #[arg(long, default_value = "get_callback_data")]
        ability: String,
        /// request_data of the fetch call.
        #[arg(long, default_value = "{}")]
        request_data: String,
        /// Exit after this many program_notify events.
        #[arg(long)]
        count: Option<u64>,
    },
}

/// `app log-level` actions.
#[derive(Debug, Subcommand)]
pub enum LogLevelAction {
    /// Print the program's log level.
    Get,
    /// Set the program's log level.
    Set {
        /// err (1), info (2, WeCom's default) or dbg (3).
        #[arg(value_enum)]
        level: crate::app_client::LogLevel,
    },
}

/// `app debug` actions.
#[derive(Debug, Subcommand)]
pub enum DebugAction {
    /// open_debug_mode with the debug token (调试凭证, valid 3 days).
    Open {
        /// The debug token.
        #[arg(long, env = "ZONE_PROGRAM_DEBUG_TOKEN", hide_env_values = true)]
        debug_token: String,
    },
    /// close_debug_mode.
    Close,
    /// check_debug_mode.
    Status,
}

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Also start the local zone in-process and talk to it (offline development).
    #[arg(long)]
    pub local: bool,
    /// With --local: wipe the local zone's state and the program's store first, together (the
    /// demo key pair is kept).
    #[arg(long, requires = "local")]
    pub fresh: bool,
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
    if let Command::Preflight = cli.command {
        // Before loading: a configuration that does not load is one of the failures it reports.
        return preflight(cli.config.as_deref());
    }
    let mut config = Config::load(cli.config.as_deref(), std::env::vars())?;
    match cli.command {
        Command::CheckConfig => {
            println!("configuration ok (sdk backend: {:?}, listen: {})", config.sdk.backend, config.server.listen);
            Ok(())
        }
        Command::Serve(mut args) => {
            if args.local && args.sdk == Some(SdkBackend::Native) {
                anyhow::bail!(
                    "--local talks to the in-process local zone through the local backend; it cannot be combined \
                     with --sdk native (to run the native backend against a local zone, start `zone-program \
                     local-zone` and see README \"Building against the real SDK\")"
                );
            }
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
            let _log = crate::telemetry::init(&config.log);
            serve_runtime(config.sdk.pool_size)?.block_on(serve(config, args.local, args.fresh))
        }
        Command::Preflight => preflight(cli.config.as_deref()),
        Command::Keygen(args) => crate::keygen::run_cli(&args, &config),
        Command::App(args) => {
            let _log = crate::telemetry::init(&config.log);
            runtime()?.block_on(crate::app_client::commands::run(args, config))
        }
        Command::Bench(args) => {
            let _log = crate::telemetry::init(&crate::config::LogConfig { level: "warn".into(), ..Default::default() });
            crate::bench::run(&config, cli.config.clone(), args, Some(std::sync::Arc::new(BenchZone)))
        }
        Command::LocalZone => {
            let _log = crate::telemetry::init(&config.log);
            runtime()?.block_on(local_zone_only(config))
        }
    }
}

async fn serve(mut config: Config, local: bool, fresh: bool) -> anyhow::Result<()> {
    if !local {
        let app = App::build(config).await?;
        tracing::info!(addr = %app.local_addr(), "zone program listening");
        return app.run_until_stopped(shutdown_signal()).await;
    }
    if fresh {
        wipe_local_state(&config)?;
    }
    let paired = check_pairing(&config)?;
    // The zone binds first so the program can be pointed at it, then learns the program's URL.
    let zone = LocalZone::bind(&config).await?;
    if paired.is_none() && config.local_zone.persist {
        let zone_id = crate::local_zone::persist::zone_id(&config.local_zone.data_dir)?.unwrap_or_default();
        write_pairing(&config, &zone_id)?;
    }
    if config.sdk.backend != SdkBackend::Local {
        tracing::warn!(configured = ?config.sdk.backend, "--local: the local backend replaces the configured one");
    }
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

/// The file beside the program's store that names the local zone it was used with (`serve --local`).
fn pairing_path(config: &Config) -> std::path::PathBuf {
    let mut name = config.store.path.clone().into_os_string();
    name.push(".local-zone");
    name.into()
}

fn write_pairing(config: &Config, zone_id: &str) -> anyhow::Result<()> {
    let path = pairing_path(config);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&path, zone_id).with_context(|| format!("writing {}", path.display()))
}

/// `--fresh`: removes the local zone's state and the program's store (with its WAL files and the
/// pairing mark), together.
fn wipe_local_state(config: &Config) -> anyhow::Result<()> {
    let store = config.store.path.clone().into_os_string();
    let with = |suffix: &str| {
        let mut p = store.clone();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    let state = config.local_zone.data_dir.join(crate::local_zone::persist::STATE_FILE);
    for path in [state, with(""), with("-wal"), with("-shm"), pairing_path(config)] {
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!(path = %path.display(), "--fresh: removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("--fresh: removing {}", path.display())),
        }
    }
    Ok(())
}

/// Refuses to start `serve --local` when the local zone's state and the program's store were not
/// made together (one is missing, or they belong to different zones): the program would follow
/// cursors and jobs the zone never issued, and messages would be lost. Returns the zone id the
/// store is paired with, if any.
fn check_pairing(config: &Config) -> anyhow::Result<Option<String>> {
    if !config.local_zone.persist {
        return Ok(None);
    }
    let dir = &config.local_zone.data_dir;
    let store = &config.store.path;
    let zone = crate::local_zone::persist::zone_id(dir)?;
    let paired = std::fs::read_to_string(pairing_path(config)).ok().map(|s| s.trim().to_owned());
    let fix = "start with `serve --local --fresh` to wipe both, or restore the missing one";
    match (zone, store.exists(), paired) {
        (None, false, _) => Ok(None),
        (Some(zone), true, Some(paired)) if zone == paired => Ok(Some(paired)),
        (Some(zone), true, Some(paired)) => anyhow::bail!(
            "the program store {} was used with another local zone ({paired}) than the one kept in {} ({zone}); {fix}",
            store.display(),
            dir.display()
        ),
        (Some(_), true, None) => anyhow::bail!(
            "the program store {} was not made with the local zone kept in {} (no pairing mark {}); {fix}",
            store.display(),
            dir.display(),
            pairing_path(config).display()
        ),
        (Some(_), false, _) => anyhow::bail!(
            "the local zone kept in {} has state but the program store {} is missing; {fix}",
            dir.display(),
            store.display()
        ),
        (None, true, _) => anyhow::bail!(
            "the program store {} exists but the local zone has no state in {}; {fix}",
            store.display(),
            dir.display()
        ),
    }
}

/// Starts an in-process local zone for each `bench` measurement that needs the SDK.
pub struct BenchZone;

#[async_trait::async_trait]
impl crate::bench::ZoneLauncher for BenchZone {
    async fn launch(&self, config: &Config, program_url: String) -> anyhow::Result<crate::bench::RunningZone> {
        /// Stops the zone's server task when the measurement drops it.
        struct AbortOnDrop(tokio::task::JoinHandle<anyhow::Result<()>>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        // The bench measures the program: its zone keeps no state between measurements.
        let zone = LocalZone::bind_stateless(config).await?;
        let url = zone.url();
        let task = tokio::spawn(zone.run_until_stopped(program_url, std::future::pending()));
        Ok(crate::bench::RunningZone { url, guard: Box::new(AbortOnDrop(task)) })
    }
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

fn preflight(config_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let report = crate::preflight::run(config_file, std::env::vars());
    print!("{}", report.render());
    anyhow::ensure!(report.passed(), "preflight failed: {} problem(s)", report.failures());
    Ok(())
}

/// Parses a secret command-line value (never shown by `Debug`).
fn secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(raw))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(64).build()?)
}

/// The runtime of `serve`: native SDK calls hold a blocking thread each (up to `sdk.pool_size`), so
/// the blocking pool has that many threads on top of the 64 that decodes and key unwrapping use.
fn serve_runtime(sdk_pool_size: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let threads = 64 + sdk_pool_size;
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(threads).build()?)
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
