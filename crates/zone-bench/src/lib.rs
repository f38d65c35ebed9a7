//! `zone-program bench`: the load benchmark. It drives the real program (a child process started
//! with `serve`) over loopback with freshly signed requests and, in the same run, the two baselines
//! of [`baselines`]: the bare axum echo floor and the one-thread server of the official demos. It
//! prints markdown tables of throughput, latency, errors, CPU per request and memory, and the
//! ratios the performance targets are stated in (BENCHMARKS.md).
//!
//! Three tables: `main` (every scenario at `--clients`), `sizes` (body 1 KiB → 1 MiB) and
//! `clients` (1 → 1000 concurrent clients). Every point runs a fresh server process for a bounded
//! time; the whole command stops by itself. The local zone, which the pass-through needs, is started
//! by the caller through [`ZoneLauncher`] (the CLI), so nothing here imports it.

mod baselines;
mod canned;
mod load;
mod micro;
pub mod netty;
mod process;
mod report;
mod requests;
mod scenario;
mod soak;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use clap::{Args, ValueEnum};

pub use baselines::BaselineServer;
pub use load::{LoadResult, LoadSpec};
pub use netty::NettyMode;
pub use report::{Report, Row};
pub use scenario::Scenario;
pub use soak::{SoakReport, run as soak};

use zone_testkit::DevConfig;

/// Options of `zone-program bench`.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// Serve a baseline (the benchmark starts these itself, in child processes).
    #[command(subcommand)]
    pub serve: Option<BaselineServer>,
    /// Concurrent clients of the main table.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Measured time per point, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub duration_ms: u64,
    /// Unmeasured warm-up per point, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub warmup_ms: u64,
    /// Sizes of `data` in the sizes table, in bytes.
    #[arg(long, value_delimiter = ',', default_value = "1024,16384,65536,262144,1048576")]
    pub sizes: Vec<usize>,
    /// Client counts of the clients table.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256,1000")]
    pub sweep_clients: Vec<usize>,
    /// Extra latency of every SDK call in milliseconds: armed in the local zone, and added to the
    /// one-thread baseline's simulated call (which otherwise lasts as long as a local-zone call).
    #[arg(long, default_value_t = 0)]
    pub sdk_delay_ms: u64,
    /// Open and check every n-th reply in full (every reply's status and headers are checked).
    #[arg(long, default_value_t = 8)]
    pub verify_every: u64,
    /// Which tables to run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "main,sizes,clients")]
    pub tables: Vec<Table>,
    /// A smoke run: 200 ms points, two sizes and two client counts (checks that everything works).
    #[arg(long)]
    pub quick: bool,
    /// The program binary to benchmark (default: this executable).
    #[arg(long, value_name = "PATH")]
    pub program: Option<PathBuf>,
    /// Another program binary (e.g. the build before a change) measured beside `--program` in the
    /// same run: every program point runs once with each, back to back, so the two are compared
    /// under the same machine load. Its rows are marked "(against)".
    #[arg(long, value_name = "PATH")]
    pub against: Option<PathBuf>,
    /// Environment variables (`KEY=VALUE`) for the `--against` program only, e.g. `RUST_LOG=warn`
    /// to compare one binary at two log levels (`--against` defaults to `--program` then).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env_pair)]
    pub against_env: Vec<(String, String)>,
    /// What answers the program's SDK calls: `zone`, the local zone (its real work per API, plus
    /// `--sdk-delay-ms`); or `canned`, a benchmark instrument that only waits `--sdk-delay-ms` and
    /// answers a sealed canned reply of `--canned-bytes`, so that the program is compared with the
    /// baselines on the same work (the baselines wait as long as the program's measured SDK call).
    #[arg(long, value_enum, default_value = "zone")]
    pub sdk: SdkMode,
    /// The Netty peer (the official Java demo's architecture, on OpenJDK and Debian's
    /// `libnetty-java`, at 256 + 256 and 4 + 4 threads) in the main table: `auto` runs it when
    /// `java`, `javac` and the jars are installed (`scripts/bench-deps.sh`) and otherwise says why
    /// it is skipped; `require` fails without them; `off` never runs it.
    #[arg(long, value_enum, default_value = "auto")]
    pub netty: NettyMode,
    /// Unmeasured load before each Netty point, in milliseconds, on top of `--warmup-ms`: the
    /// JIT compiles the hot paths first, as a long-running server has them compiled (on two busy
    /// cores C1/C2 were still compiling after 3 s).
    #[arg(long, default_value_t = 10_000)]
    pub jvm_warmup_ms: u64,
    /// Size of the canned SDK reply's plaintext, in bytes (`--sdk canned`).
    #[arg(long, default_value_t = 6 * 1024)]
    pub canned_bytes: usize,
    /// Open-loop points of the `rate` table, as fractions of the pass-through's measured
    /// closed-loop maximum: requests are sent on a fixed schedule and latency counts from the
    /// scheduled time, so a stalled server cannot slow the clients down and hide its stall.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.25,0.5,0.75,0.9")]
    pub rate_fractions: Vec<f64>,
    /// A soak instead of the tables: the pass-through for this long (`600s`, `10m`) at `--rate`
    /// requests per second, every reply verified, the program's memory sampled every second.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub soak: Option<Duration>,
    /// The soak's fixed rate in requests per second (default: half the closed-loop maximum,
    /// measured first on the same processes).
    #[arg(long)]
    pub rate: Option<f64>,
    /// The async-job scenario submits this many jobs as fast as `--clients` can (a burst, no
    /// warm-up) instead of submitting for `--duration-ms`.
    #[arg(long, value_name = "N")]
    pub jobs: Option<u64>,
}

/// What answers the program's SDK calls in a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum SdkMode {
    /// The local zone: the emulator's real work per API call.
    #[default]
    Zone,
    /// A canned server in the bench process: wait, then a sealed canned reply; nothing else.
    Canned,
}

fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    Ok((k.to_owned(), v.to_owned()))
}

/// `600s`, `10m`, `1h`, `1500ms` or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 600s, 10m or 1500ms");
    let (n, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: u64 = n.parse().map_err(|_| bad())?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" | "min" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(bad()),
    }
}

/// The report's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Table {
    /// Every scenario at `--clients`.
    Main,
    /// Body size 1 KiB → 1 MiB.
    Sizes,
    /// 1 → 1000 concurrent clients.
    Clients,
    /// The pass-through open-loop at fixed rates: the latency/rate curve.
    Rate,
    /// The program's memory after a burst of requests, once the replay cache has emptied.
    Memory,
    /// The async-job scenario alone (`--jobs N` for a burst of N).
    Jobs,
}

/// Starts a local zone for one measurement. The CLI implements it; the program never does.
#[async_trait]
pub trait ZoneLauncher: Send + Sync {
    /// Starts a zone with `config`'s `[sdk.local]` keys and `[local_zone]` settings, sending its
    /// own requests to `program_url`.
    async fn launch(&self, config: &DevConfig, program_url: String) -> anyhow::Result<RunningZone>;
}

/// A running local zone; dropping it stops the zone.
pub struct RunningZone {
    /// Its base URL (the program's `sdk.local.zone_url`).
    pub url: String,
    /// How many async job results it has received so far, when it can tell (the async-job
    /// scenario times the last report with it).
    pub reports: Option<Arc<dyn Fn() -> u64 + Send + Sync>>,
    /// Whatever keeps it running.
    pub guard: Box<dyn Send + Sync>,
}

/// Starts an in-process local zone for each `bench` measurement that needs the SDK.
pub struct LocalZoneLauncher;

#[async_trait]
impl ZoneLauncher for LocalZoneLauncher {
    async fn launch(&self, config: &DevConfig, program_url: String) -> anyhow::Result<RunningZone> {
        // The bench measures the program: its zone keeps no state between measurements.
        let zone = zone_local::LocalZone::bind_stateless(
            &config.local_zone,
            zone_program::sdk::local::codec_from_config(&config.program.sdk)?,
        )
        .await?;
        let url = zone.url();
        let shared = zone.shared();
        let reports: Arc<dyn Fn() -> u64 + Send + Sync> = Arc::new(move || shared.timeline.reports());
        let task = tokio::spawn(zone.run_until_stopped(program_url, std::future::pending()));
        Ok(RunningZone { url, reports: Some(reports), guard: Box::new(canned::AbortOnDrop(task)) })
    }
}

/// Everything a measurement needs besides its plan.
pub struct BenchEnv {
    /// The `--config` file, passed on to the child processes (which also inherit `ZONE_PROGRAM_*`).
    pub config_file: Option<PathBuf>,
    /// The program binary.
    pub program: PathBuf,
    /// Starts local zones; without one, the scenarios that need the SDK are skipped.
    pub zone: Option<Arc<dyn ZoneLauncher>>,
    /// Scratch space for stores and logs (removed by the caller).
    pub work_dir: PathBuf,
    /// A second program measured beside `program` (`--against`).
    pub against: Option<Against>,
}

/// The second program of a side-by-side run.
#[derive(Debug, Clone)]
pub struct Against {
    /// Its binary.
    pub program: PathBuf,
    /// Extra environment variables for it.
    pub env: Vec<(String, String)>,
}

impl BenchEnv {
    /// The configuration the children run with, as this process loads it: the `--config` file and
    /// `ZONE_PROGRAM_*` variables; the local zone on a free port with its data in the work dir,
    /// and replay caches large enough for a run.
    pub fn fresh_config(&self) -> anyhow::Result<DevConfig> {
        let mut config = DevConfig::load(self.config_file.as_deref(), std::env::vars())?;
        config.local_zone.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        config.local_zone.data_dir = self.work_dir.join("local-zone");
        config.program.store.path = self.work_dir.join("store.sqlite");
        config.program.sdk.local.nonce_cache_capacity = scenario::NONCE_CAPACITY;
        // The load calls `invoke_sync_msg` without a token: the bench measures throughput, not the
        // emulated limit on such calls (local_zone.tokenless_calls_per_minute).
        config.local_zone.tokenless_calls_per_minute = 0;
        Ok(config)
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The main table's client count.
    pub clients: usize,
    /// Per-point load shape (clients are set per point).
    pub spec: LoadSpec,
    /// Sizes table.
    pub sizes: Vec<usize>,
    /// Clients table.
    pub sweep_clients: Vec<usize>,
    /// Tables to run.
    pub tables: Vec<Table>,
    /// Added SDK latency.
    pub sdk_delay: Duration,
    /// Round trips of the in-run codec ratio.
    pub micro_rounds: usize,
    /// Sequential SDK calls that calibrate the one-thread baseline.
    pub calibration_calls: usize,
    /// What answers SDK calls.
    pub sdk: SdkMode,
    /// The canned SDK reply's size.
    pub canned_bytes: usize,
    /// Whether the main table measures the Netty peer.
    pub netty: NettyMode,
    /// Unmeasured load before a Netty point (none in a `--quick` run).
    pub jvm_warmup: Duration,
    /// The `rate` table's points, as fractions of the measured maximum.
    pub rate_fractions: Vec<f64>,
    /// A burst of this many async jobs instead of a timed submission (`--jobs`).
    pub jobs: Option<u64>,
    /// A smoke run (`--quick`): too short for its ratios to mean anything against the targets.
    pub quick: bool,
}

impl Plan {
    /// The plan of the command-line options.
    pub fn from_args(args: &BenchArgs) -> Self {
        let mut plan = Self {
            clients: args.clients,
            spec: LoadSpec {
                clients: args.clients,
                warmup: Duration::from_millis(args.warmup_ms),
                duration: Duration::from_millis(args.duration_ms),
                verify_every: args.verify_every,
                max_requests: None,
            },
            sizes: args.sizes.clone(),
            sweep_clients: args.sweep_clients.clone(),
            tables: args.tables.clone(),
            sdk_delay: Duration::from_millis(args.sdk_delay_ms),
            micro_rounds: 200,
            calibration_calls: 200,
            sdk: args.sdk,
            canned_bytes: args.canned_bytes,
            netty: args.netty,
            jvm_warmup: Duration::from_millis(args.jvm_warmup_ms),
            rate_fractions: args.rate_fractions.clone(),
            jobs: args.jobs,
            quick: false,
        };
        if args.quick {
            plan = plan.quick();
        }
        plan
    }

    /// The smoke version of this plan: short points, the smallest and largest size, two client counts.
    pub fn quick(mut self) -> Self {
        self.spec.warmup = Duration::from_millis(50);
        self.spec.duration = Duration::from_millis(200);
        self.spec.verify_every = 1;
        self.clients = self.clients.min(8);
        self.sizes = vec![1024, 256 * 1024];
        self.sweep_clients = vec![1, 32];
        self.micro_rounds = 5;
        self.calibration_calls = 10;
        self.rate_fractions = vec![0.5];
        self.jvm_warmup = Duration::ZERO;
        self.quick = true;
        self
    }
}

/// Runs `zone-program bench`: serves a baseline when asked to, else measures and prints the report.
pub fn run(
    config: &DevConfig,
    config_file: Option<PathBuf>,
    args: BenchArgs,
    zone: Option<Arc<dyn ZoneLauncher>>,
) -> anyhow::Result<()> {
    if let Some(server) = args.serve {
        return baselines::serve(server, &config.program);
    }
    let program = match &args.program {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("locating this executable")?,
    };
    let work_dir = std::env::temp_dir().join(format!("zone-program-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir).with_context(|| format!("creating {}", work_dir.display()))?;
    let against = (args.against.is_some() || !args.against_env.is_empty()).then(|| Against {
        program: args.against.clone().unwrap_or_else(|| program.clone()),
        env: args.against_env.clone(),
    });
    let env = BenchEnv { config_file, program, zone, work_dir: work_dir.clone(), against };
    let plan = Plan::from_args(&args);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if let Some(duration) = args.soak {
        let soaked = runtime.block_on(soak::run(&plan, &env, duration, args.rate));
        let _ = std::fs::remove_dir_all(&work_dir);
        println!("{}", soaked?.render());
        return Ok(());
    }
    let report = runtime.block_on(measure(&plan, &env, |row| eprintln!("{}", row.progress_line())));
    let _ = std::fs::remove_dir_all(&work_dir);
    println!("{}", report?.render());
    Ok(())
}

/// Measures every table of `plan`, calling `progress` after each point.
pub async fn measure(plan: &Plan, env: &BenchEnv, mut progress: impl FnMut(&Row)) -> anyhow::Result<Report> {
    let mut report = Report { clients: plan.clients, quick: plan.quick, ..Report::default() };
    let micro = micro::codec_ratio(64 * 1024, plan.micro_rounds);
    report.codec_ratio = Some(micro);
    let sdk = env.zone.is_some() || plan.sdk == SdkMode::Canned;
    let calibration = if sdk { Some(scenario::calibrate(env, plan).await?) } else { None };
    report.calibration = calibration;
    report.sdk = plan.sdk;
    // (table, scenario, clients, padded `data` size or the scenario's natural request)
    let mut points: Vec<(&'static str, Scenario, usize, Option<usize>)> = Vec::new();
    if plan.tables.contains(&Table::Main) {
        let all = [
            Scenario::Echo,
            Scenario::Ability,
            Scenario::AbilityOne,
            Scenario::ErrorReply,
            Scenario::OneThread,
            Scenario::Threaded,
            Scenario::NettyDemo,
            Scenario::NettyPublic,
            Scenario::PassThrough,
            Scenario::AsyncJob,
        ];
        let netty = match (plan.netty, sdk) {
            (NettyMode::Off, _) | (_, false) => false,
            (mode, true) => match netty::find() {
                Ok(_) => true,
                Err(why) if mode == NettyMode::Require => anyhow::bail!("--netty require: {why}"),
                Err(why) => {
                    let note = format!("The Netty peer was skipped: {why}.");
                    eprintln!("{note}");
                    report.notes.push(note);
                    false
                }
            },
        };
        for scenario in all {
            let runs = match scenario {
                // The canned server answers `/sdk/invoke` only: async jobs need the zone's app API.
                Scenario::AsyncJob => env.zone.is_some() && plan.sdk == SdkMode::Zone,
                Scenario::NettyDemo | Scenario::NettyPublic => netty,
                _ => true,
            };
            if runs && (sdk || !scenario.needs_sdk()) {
                points.push(("main", scenario, plan.clients, None));
            }
        }
    }
    if plan.tables.contains(&Table::Jobs) && env.zone.is_some() && plan.sdk == SdkMode::Zone {
        points.push(("jobs", Scenario::AsyncJob, plan.clients, None));
    }
    if plan.tables.contains(&Table::Sizes) {
        for &size in &plan.sizes {
            points.push(("sizes", Scenario::Echo, plan.clients, Some(size)));
            points.push(("sizes", Scenario::ErrorReply, plan.clients, Some(size)));
        }
    }
    if plan.tables.contains(&Table::Clients) {
        for &clients in &plan.sweep_clients {
            for scenario in [Scenario::Echo, Scenario::ErrorReply, Scenario::PassThrough] {
                if sdk || !scenario.needs_sdk() {
                    points.push(("clients", scenario, clients, None));
                }
            }
        }
    }
    let mut flip = false;
    for (table, scenario, clients, size) in points {
        let spec = LoadSpec { clients, ..plan.spec };
        for against in variants(env, scenario, &mut flip) {
            let point = scenario::Point { scenario, spec, data_bytes: size, against, rate: None };
            let row = scenario::run_point(env, plan, calibration.as_ref(), point).await.with_context(|| {
                format!("{table} table: {} with {clients} clients, data {size:?} bytes", scenario.name())
            })?;
            let row = Row { table, ..row };
            progress(&row);
            report.rows.push(row);
        }
    }
    if plan.tables.contains(&Table::Memory) {
        let spec = LoadSpec { clients: plan.clients, ..plan.spec };
        let mut flip = false;
        for against in variants(env, Scenario::ErrorReply, &mut flip) {
            let row = scenario::run_memory_point(env, plan, spec, against).await.context("memory table")?;
            progress(&row);
            report.rows.push(row);
        }
    }
    if plan.tables.contains(&Table::Rate) && sdk {
        rate_table(plan, env, calibration.as_ref(), &mut report, &mut progress).await?;
    }
    Ok(report)
}

/// The program variants a point runs with: `--program` alone, or both it and `--against`, in an
/// order that alternates from point to point so that neither always runs first.
fn variants<'a>(env: &'a BenchEnv, scenario: Scenario, flip: &mut bool) -> Vec<Option<&'a Against>> {
    match &env.against {
        Some(against) if scenario.is_program() => {
            *flip = !*flip;
            if *flip { vec![None, Some(against)] } else { vec![Some(against), None] }
        }
        _ => vec![None],
    }
}

/// The `rate` table: the pass-through's closed-loop maximum (the main table's, or measured now),
/// then open-loop points at fractions of it.
async fn rate_table(
    plan: &Plan,
    env: &BenchEnv,
    calibration: Option<&scenario::Calibration>,
    report: &mut Report,
    progress: &mut impl FnMut(&Row),
) -> anyhow::Result<()> {
    let spec = LoadSpec { clients: plan.clients, ..plan.spec };
    let max = match report.find("main", Scenario::PassThrough, plan.clients) {
        Some(row) => row.load.throughput(),
        None => {
            let point =
                scenario::Point { scenario: Scenario::PassThrough, spec, data_bytes: None, against: None, rate: None };
            let row = scenario::run_point(env, plan, calibration, point)
                .await
                .context("rate table: the closed-loop maximum")?;
            let row = Row { table: "rate", ..row };
            progress(&row);
            let max = row.load.throughput();
            report.rows.push(row);
            max
        }
    };
    anyhow::ensure!(max > 0.0, "rate table: the pass-through answered nothing in the closed loop");
    report.max_rate = Some(max);
    let mut flip = false;
    for &fraction in &plan.rate_fractions {
        let rate = (max * fraction).max(1.0);
        for against in variants(env, Scenario::PassThrough, &mut flip) {
            let point =
                scenario::Point { scenario: Scenario::PassThrough, spec, data_bytes: None, against, rate: Some(rate) };
            let row = scenario::run_point(env, plan, calibration, point)
                .await
                .with_context(|| format!("rate table: {rate:.0} req/s"))?;
            let row = Row { table: "rate", ..row };
            progress(&row);
            report.rows.push(row);
        }
    }
    Ok(())
}
