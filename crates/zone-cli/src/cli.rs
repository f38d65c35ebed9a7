//! The developer command line `zone-program`: every subcommand in one binary (`serve [--local]`,
//! `local-zone`, `check-config`, `preflight`, `keygen`, `app …`, `bench`). It parses, loads the
//! developer configuration once and hands over to the crate that does the work. The image carries
//! `zone-programd` instead (the program's own `serve`, `check-config`, `preflight`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, Parser, Subcommand};
use zone_app::commands::AppArgs;
use zone_app::keygen::{KeygenArgs, KnownKey};
use zone_local::LocalZone;
use zone_local::config::LocalZoneConfig;
use zone_program::app::{App, shutdown_signal};
use zone_program::cli::ConfigFile;
use zone_program::config::{KeyringEntry, LogConfig, SdkBackend};
use zone_program::sdk::local::codec_from_config;
use zone_testkit::DevConfig;

/// The WeCom data & intelligence zone program.
#[derive(Debug, Parser)]
#[command(name = "zone-program", version, about, long_about = None)]
pub struct Cli {
    /// `--config FILE`.
    #[command(flatten)]
    pub config: ConfigFile,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve WeCom callbacks (POST / on server.listen, default 0.0.0.0:8080).
    Serve(ServeArgs),
    /// Run only the local zone (the emulator of the WeCom side); `local-zone tail` streams its timeline.
    LocalZone(LocalZoneArgs),
    /// Load and validate the configuration and check its key files, then exit.
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
    /// Print a shell completion script: `zone-program completions bash > /etc/bash_completion.d/zone-program`
    /// (zsh: into a directory of `$fpath` as `_zone-program`; fish: `~/.config/fish/completions/zone-program.fish`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Options of `local-zone`.
#[derive(Debug, Args)]
pub struct LocalZoneArgs {
    /// Without an action: run the local zone.
    #[command(subcommand)]
    pub action: Option<LocalZoneAction>,
}

/// What `local-zone` does besides running.
#[derive(Debug, Subcommand)]
pub enum LocalZoneAction {
    /// Stream the zone's timeline to the terminal: app calls, events, the program's SDK calls,
    /// program_notify pushes and get_callback_data fetches (the console's timeline, as text).
    Tail {
        /// The local zone's URL (default: http://<local_zone.listen>).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Also print what the zone already recorded (its last 200 interactions).
        #[arg(long)]
        from_start: bool,
    },
}

/// Options of `serve`.
#[derive(Debug, Args)]
#[group(id = "DevServeArgs")]
pub struct ServeArgs {
    /// Also start the local zone in-process and talk to it (offline development).
    #[arg(long)]
    pub local: bool,
    /// With --local: wipe the local zone's state and the program's store first, together (the
    /// demo key pair is kept).
    #[arg(long, requires = "local")]
    pub fresh: bool,
    /// The program's own options.
    #[command(flatten)]
    pub program: zone_program::cli::ServeArgs,
}

/// Runs the command line with the process arguments and environment.
pub fn run() -> anyhow::Result<()> {
    use zone_program::cli as program;
    use zone_program::telemetry;
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        // Before loading: completions need no configuration.
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "zone-program", &mut out);
        return zone_app::out::print_out(String::from_utf8_lossy(&out).trim_end()).map_err(Into::into);
    }
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
            if args.program.allow_public_demo_keys {
                config.local_zone.allow_public_demo_keys = true;
            }
            let _log = telemetry::init(&config.program.log);
            let runtime = program::serve_runtime(config.program.sdk.pool_size)?;
            if args.local {
                runtime.block_on(serve_local(config, args.fresh))
            } else {
                runtime.block_on(program::serve(config.program))
            }
        }
        Command::Preflight => program::preflight(cli.config.as_deref()),
        Command::Keygen(args) => zone_app::keygen::run_cli(&args, &config.app.corp_id, &known_keys(&config)),
        Command::App(args) => {
            let _log = telemetry::init(&config.program.log);
            runtime()?.block_on(zone_app::commands::run(args, config.app, shutdown_signal()))
        }
        Command::Bench(args) => {
            let _log = telemetry::init(&LogConfig { level: "warn".into(), ..Default::default() });
            zone_bench::run(
                &config,
                cli.config.path.clone(),
                args,
                Some(std::sync::Arc::new(zone_bench::LocalZoneLauncher)),
            )
        }
        Command::Completions { .. } => unreachable!("handled before the configuration is loaded"),
        Command::LocalZone(LocalZoneArgs { action: None }) => {
            let _log = telemetry::init(&config.program.log);
            runtime()?.block_on(local_zone_only(config))
        }
        Command::LocalZone(LocalZoneArgs { action: Some(LocalZoneAction::Tail { url, from_start }) }) => {
            let url = url.unwrap_or_else(|| format!("http://{}", loopback_for(config.local_zone.listen)));
            runtime()?.block_on(zone_local::console::tail::run(&url, from_start))
        }
    }
}

/// The key versions `keygen` must go above: the keyring's, and the local zone's demo key (version 1
/// of the demo corp, which `serve --local` and `local-zone` register and put in the keyring), so
/// that the key it makes is accepted by `app set-public-key` against the local zone as is.
fn known_keys(config: &DevConfig) -> Vec<KnownKey> {
    let mut known: Vec<KnownKey> = config
        .program
        .keyring
        .keys
        .iter()
        .map(|k| KnownKey { corp_id: k.corp_id.clone(), public_key_ver: k.public_key_ver })
        .collect();
    known.push(KnownKey { corp_id: config.local_zone.corp_id.clone(), public_key_ver: 1 });
    known
}

/// `serve --local`: the local zone and the program in one process, wired to each other.
async fn serve_local(config: DevConfig, fresh: bool) -> anyhow::Result<()> {
    let DevConfig { program: mut config, local_zone: lz, .. } = config;
    let store = config.store.path.clone();
    if fresh {
        wipe_local_state(&store, &lz)?;
    }
    let paired = check_pairing(&store, &lz)?;
    // The zone binds first so the program can be pointed at it, then learns the program's URL.
    let zone = LocalZone::bind(&lz, codec_from_config(&config.sdk)?).await?;
    if paired.is_none() && lz.persist {
        write_pairing(&store, zone.zone_id())?;
    }
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

/// The file beside the program's store that names the local zone it was used with (`serve --local`).
fn pairing_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".local-zone");
    name.into()
}

fn write_pairing(store: &Path, zone_id: &str) -> anyhow::Result<()> {
    let path = pairing_path(store);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&path, zone_id).with_context(|| format!("writing {}", path.display()))
}

/// `--fresh`: removes the local zone's state and the program's store (with its WAL files and the
/// pairing mark), together. The demo key pair stays.
fn wipe_local_state(store: &Path, lz: &LocalZoneConfig) -> anyhow::Result<()> {
    let with = |suffix: &str| {
        let mut p = store.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    let state = lz.data_dir.join(zone_local::persist::STATE_FILE);
    for path in [state, with(""), with("-wal"), with("-shm"), pairing_path(store)] {
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
fn check_pairing(store: &Path, lz: &LocalZoneConfig) -> anyhow::Result<Option<String>> {
    if !lz.persist {
        return Ok(None);
    }
    let dir = &lz.data_dir;
    let zone = zone_local::persist::zone_id(dir)?;
    let mark = pairing_path(store);
    let paired = std::fs::read_to_string(&mark).ok().map(|s| s.trim().to_owned());
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
            mark.display()
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
    fn completions_cover_every_subcommand_in_each_shell() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "zone-program", &mut out);
            let text = String::from_utf8(out).unwrap();
            for sub in ["serve", "local-zone", "tail", "keygen", "app", "set-public-key", "bench", "completions"] {
                assert!(text.contains(sub), "{shell}: {sub}");
            }
        }
    }

    #[test]
    fn keygen_goes_above_the_local_zones_demo_key() {
        let config = DevConfig::load(None, Vec::new()).unwrap();
        let known = known_keys(&config);
        assert!(known.iter().any(|k| k.corp_id == config.local_zone.corp_id && k.public_key_ver == 1));
    }

    #[test]
    fn local_zone_tail_parses() {
        let cli = Cli::try_parse_from(["zone-program", "local-zone", "tail", "--url", "http://127.0.0.1:1"]).unwrap();
        let Command::LocalZone(LocalZoneArgs { action: Some(LocalZoneAction::Tail { url, from_start }) }) = cli.command
        else {
            panic!("tail")
        };
        assert_eq!((url.as_deref(), from_start), (Some("http://127.0.0.1:1"), false));
    }

    #[test]
    fn serve_takes_the_programs_options_and_local() {
        let cli = Cli::try_parse_from(["zone-program", "serve", "--local", "--listen", "127.0.0.1:9"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("serve") };
        assert!(args.local);
        assert_eq!(args.program.listen, Some("127.0.0.1:9".parse().unwrap()));
    }
}
