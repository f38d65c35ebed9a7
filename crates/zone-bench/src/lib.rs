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
mod load;
mod micro;
mod process;
mod report;
mod requests;
mod scenario;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use clap::{Args, ValueEnum};

pub use baselines::BaselineServer;
pub use load::{LoadResult, LoadSpec};
pub use report::{Report, Row};
pub use scenario::Scenario;

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
    /// Whatever keeps it running.
    pub guard: Box<dyn Send + Sync>,
}

/// Starts an in-process local zone for each `bench` measurement that needs the SDK.
pub struct LocalZoneLauncher;

#[async_trait]
impl ZoneLauncher for LocalZoneLauncher {
    async fn launch(&self, config: &DevConfig, program_url: String) -> anyhow::Result<RunningZone> {
        /// Stops the zone's server task when the measurement drops it.
        struct AbortOnDrop(tokio::task::JoinHandle<anyhow::Result<()>>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let zone = zone_local::LocalZone::bind(
            &config.local_zone,
            zone_program::sdk::local::codec_from_config(&config.program.sdk)?,
        )
        .await?;
        let url = zone.url();
        let task = tokio::spawn(zone.run_until_stopped(program_url, std::future::pending()));
        Ok(RunningZone { url, guard: Box::new(AbortOnDrop(task)) })
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
            },
            sizes: args.sizes.clone(),
            sweep_clients: args.sweep_clients.clone(),
            tables: args.tables.clone(),
            sdk_delay: Duration::from_millis(args.sdk_delay_ms),
            micro_rounds: 200,
            calibration_calls: 200,
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
    let env = BenchEnv { config_file, program, zone, work_dir: work_dir.clone() };
    let plan = Plan::from_args(&args);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(measure(&plan, &env, |row| eprintln!("{}", row.progress_line())));
    let _ = std::fs::remove_dir_all(&work_dir);
    println!("{}", report?.render());
    Ok(())
}

/// Measures every table of `plan`, calling `progress` after each point.
pub async fn measure(plan: &Plan, env: &BenchEnv, mut progress: impl FnMut(&Row)) -> anyhow::Result<Report> {
    let mut report = Report { clients: plan.clients, ..Report::default() };
    let micro = micro::codec_ratio(64 * 1024, plan.micro_rounds);
    report.codec_ratio = Some(micro);
    let calibration = match &env.zone {
        Some(zone) => Some(scenario::calibrate(env, zone.as_ref(), plan).await?),
        None => None,
    };
    report.calibration = calibration;
    // (table, scenario, clients, padded `data` size or the scenario's natural request)
    let mut points: Vec<(&'static str, Scenario, usize, Option<usize>)> = Vec::new();
    let sdk = calibration.is_some();
    if plan.tables.contains(&Table::Main) {
        let all = [
            Scenario::Echo,
            Scenario::Ability,
            Scenario::AbilityOne,
            Scenario::ErrorReply,
            Scenario::OneThread,
            Scenario::PassThrough,
            Scenario::AsyncJob,
        ];
        for scenario in all {
            if sdk || !scenario.needs_sdk() {
                points.push(("main", scenario, plan.clients, None));
            }
        }
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
    for (table, scenario, clients, size) in points {
        let spec = LoadSpec { clients, ..plan.spec };
        let row =
            scenario::run_point(env, plan, calibration.as_ref(), scenario, spec, size).await.with_context(|| {
                format!("{table} table: {} with {clients} clients, data {size:?} bytes", scenario.name())
            })?;
        let row = Row { table, ..row };
        progress(&row);
        report.rows.push(row);
    }
    Ok(report)
}
