//! One measured point: start a fresh server process for the scenario, probe it once, drive it, and
//! read its CPU time and memory before and after.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use secrecy::ExposeSecret as _;

use super::load::{self, LoadSpec};
use super::netty::Shape;
use super::process::{self, ServerCommand, ServerProcess};
use super::requests::{self, Expect, Source};
use super::{Against, BenchEnv, Plan, Row, RunningZone, SdkMode, ZoneLauncher};
use zone_crypto::cipher::{CallbackCipher, EncodingAesKey};
use zone_crypto::codec::{CodecSettings, LocalCodec};
use zone_program::sdk::local::LocalSdk;
use zone_program::sdk::{CallContext, ZoneSdk as _};
use zone_testkit::DevConfig;

/// The SDK API of the pass-through scenario: the main data API, pulling chat records
/// (sdk-data-apis.md §3.1).
pub const PASS_THROUGH_API: &str = "sync_msg";
/// Its request: the first ten messages of the retention window (a page of about 4 KiB).
pub const PASS_THROUGH_REQUEST: &str = r#"{"limit":10}"#;
/// The ability answered without the SDK: what the deployment offers, a reply of some KiB.
pub const NO_SDK_ABILITY: &str = "list_abilities";
/// Its input for one ability's description (a reply of under 1 KiB).
pub const NO_SDK_ONE_INPUT: &str = r#"{"ability_id":"invoke_sync_msg"}"#;
/// An ability id the program does not offer: its error reply is the shortest full path (decode →
/// dispatch → encode) through the program.
pub const UNKNOWN_ABILITY: &str = "bench_no_such_ability";
/// The replay caches of the program, the baselines and the client must hold every nonce of a run
/// (the default, 100 000 per 10 minutes, would refuse requests after a few seconds of load).
pub(super) const NONCE_CAPACITY: usize = 50_000_000;

/// What one point measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The bare axum echo floor, sent the same bytes as [`Scenario::Ability`].
    Echo,
    /// The program answering an ability without the SDK (`list_abilities`, every ability: ~27 KiB).
    Ability,
    /// The same ability asked for one ability's description (a reply of under 1 KiB).
    AbilityOne,
    /// The program answering an unknown ability id with its error reply.
    ErrorReply,
    /// The one-thread demo baseline (decode, blocking simulated SDK call, encode).
    OneThread,
    /// The same work on a thread per connection (`std::net`, blocking I/O): a threaded stdlib server.
    Threaded,
    /// The same work on the Netty architecture of the official Java demo (`netty`): 256 IO + 256
    /// business threads.
    NettyDemo,
    /// The same Netty server with 4 + 4 threads (what a public zone program runs).
    NettyPublic,
    /// The program passing `invoke_<api>` through to the local zone.
    PassThrough,
    /// Async jobs of the pass-through, submitted through the local zone's `async_program_task`; the
    /// program acknowledges, runs each job and reports it with `program_async_job_call_back`.
    AsyncJob,
}

impl Scenario {
    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Echo => "axum echo (floor)",
            Self::Ability => "list_abilities (no SDK)",
            Self::AbilityOne => "list_abilities, one (no SDK)",
            Self::ErrorReply => "unknown ability (error reply)",
            Self::OneThread => "one-thread demo",
            Self::Threaded => "threaded stdlib server",
            Self::NettyDemo => "Netty demo (256 + 256 threads)",
            Self::NettyPublic => "Netty demo (4 + 4 threads)",
            Self::PassThrough => "invoke_ pass-through",
            Self::AsyncJob => "async job (via app API)",
        }
    }

    /// Whether it needs the local zone (directly, or for the calibrated SDK latency).
    pub fn needs_sdk(self) -> bool {
        matches!(
            self,
            Self::OneThread | Self::Threaded | Self::NettyDemo | Self::NettyPublic | Self::PassThrough | Self::AsyncJob
        )
    }

    /// The Netty peer's shape, for its two scenarios.
    pub fn netty_shape(self) -> Option<Shape> {
        match self {
            Self::NettyDemo => Some(Shape::Demo),
            Self::NettyPublic => Some(Shape::Public),
            _ => None,
        }
    }

    /// Whether the server is the program (not a baseline).
    pub fn is_program(self) -> bool {
        matches!(self, Self::Ability | Self::AbilityOne | Self::ErrorReply | Self::PassThrough | Self::AsyncJob)
    }
}

/// The SDK call's latency as the program sees it, measured against the local zone.
#[derive(Debug, Clone, Copy)]
pub struct Calibration {
    /// Median of sequential `invoke` calls.
    pub sdk_latency: Duration,
    /// The 99th percentile of the same calls.
    pub sdk_latency_p99: Duration,
    /// Bytes of the SDK's response (the one-thread baseline replies with as many).
    pub reply_bytes: usize,
}

/// Measures sequential pass-through calls with the program's own SDK client.
pub async fn calibrate(env: &BenchEnv, plan: &Plan) -> anyhow::Result<Calibration> {
    let running = launch_sdk(env, plan, "http://127.0.0.1:9".into()).await?;
    let mut config = env.fresh_config()?;
    config.program.sdk.local.zone_url = running.url.clone();
    let sdk = LocalSdk::new(&config.program.sdk)?;
    let ctx = CallContext {
        corp_id: config.local_zone.corp_id.clone(),
        agent_id: config.local_zone.agent_id,
        ability_id: format!("invoke_{PASS_THROUGH_API}"),
        job_info: String::new(),
    };
    let mut times = Vec::with_capacity(plan.calibration_calls);
    let mut reply_bytes = 0;
    for _ in 0..plan.calibration_calls.max(1) {
        let t = Instant::now();
        let response = sdk.invoke(&ctx, PASS_THROUGH_API, PASS_THROUGH_REQUEST).await.context("calibration call")?;
        times.push(t.elapsed());
        zone_program::sdk::require_ok(PASS_THROUGH_API, &response)
            .context("the local zone's answer to the calibration call")?;
        reply_bytes = response.len();
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    Ok(Calibration { sdk_latency: at(0.5), sdk_latency_p99: at(0.99), reply_bytes })
}

/// One measured point.
#[derive(Debug, Clone, Copy)]
pub struct Point<'a> {
    /// What runs.
    pub scenario: Scenario,
    /// Clients and times.
    pub spec: LoadSpec,
    /// A padded `data` size, else the scenario's natural request.
    pub data_bytes: Option<usize>,
    /// Run the `--against` program instead of `--program`.
    pub against: Option<&'a Against>,
    /// Open loop at this many requests per second, else closed loop.
    pub rate: Option<f64>,
}

/// How long an open-loop point waits for the replies of the window's last requests.
const OPEN_LOOP_GRACE: Duration = Duration::from_secs(5);

/// Runs one point with a fresh server (and, for the pass-through, a fresh local zone).
pub async fn run_point(
    env: &BenchEnv,
    plan: &Plan,
    calibration: Option<&Calibration>,
    point: Point<'_>,
) -> anyhow::Result<Row> {
    let Point { scenario, spec, data_bytes, against, rate } = point;
    let config = env.fresh_config()?;
    let corp = config.local_zone.corp_id.clone();
    let client = Arc::new(client_codec(&config)?);
    let data = data_bytes.map_or_else(|| "{}".to_owned(), requests::padded_input);
    let message = match scenario {
        Scenario::Ability => requests::callback_message(&corp, NO_SDK_ABILITY, "", false, &data),
        Scenario::AbilityOne => requests::callback_message(&corp, NO_SDK_ABILITY, "", false, NO_SDK_ONE_INPUT),
        Scenario::Echo | Scenario::ErrorReply => requests::callback_message(&corp, UNKNOWN_ABILITY, "", false, &data),
        Scenario::OneThread
        | Scenario::Threaded
        | Scenario::NettyDemo
        | Scenario::NettyPublic
        | Scenario::PassThrough
        | Scenario::AsyncJob => {
            requests::callback_message(&corp, &format!("invoke_{PASS_THROUGH_API}"), "", false, PASS_THROUGH_REQUEST)
        }
    };
    let source = Arc::new(Source::resigned(&client, config.program.sdk.local.token.clone(), &message, &corp));
    let body_bytes = source.body_len().unwrap_or_default();
    let (server, zone) = start_server(env, plan, calibration, scenario, against, &config).await?;
    if scenario == Scenario::AsyncJob {
        let zone = zone.context("the async-job scenario runs with a local zone")?;
        // A burst (`--jobs N`): N submissions as fast as the clients go, no warm-up.
        let spec = match plan.jobs {
            Some(n) => LoadSpec {
                warmup: Duration::ZERO,
                duration: spec.duration.max(BURST_LIMIT),
                max_requests: Some(n),
                ..spec
            },
            None => spec,
        };
        let row = run_async_point(&config, &server, &zone, spec).await?;
        return Ok(Row { against: against.is_some(), ..row });
    }
    let idle = server.usage()?;
    let (errcode, reply_bytes) = match scenario {
        Scenario::Echo => (None, body_bytes),
        _ => {
            let (errcode, len) = probe(&server, &source, &client, &corp).await?;
            (Some(errcode), len)
        }
    };
    let expect = Arc::new(match errcode {
        None => Expect::Echo { len: body_bytes },
        Some(errcode) => Expect::Sealed { codec: client.clone(), receive_id: corp.clone(), errcode },
    });
    if scenario.netty_shape().is_some() && !plan.jvm_warmup.is_zero() {
        // Unmeasured: the JVM compiles its hot paths under load first.
        let warm = LoadSpec { warmup: Duration::ZERO, duration: plan.jvm_warmup, ..spec };
        load::drive(server.addr, warm, source.clone(), expect.clone()).await.context("the JVM's warm-up")?;
    }
    let (server_before, self_before) = (server.usage()?, process::self_usage()?);
    let result = match rate {
        Some(rate) => load::drive_open(server.addr, spec, rate, OPEN_LOOP_GRACE, source, expect).await?,
        None => load::drive(server.addr, spec, source, expect).await?,
    };
    let (server_after, self_after) = (server.usage()?, process::self_usage()?);
    drop(zone);
    let replies = result.replies.max(1) as f64;
    Ok(Row {
        table: "",
        scenario,
        against: against.is_some(),
        rate,
        clients: spec.clients,
        body_bytes,
        data_bytes,
        errcode,
        reply_bytes,
        jobs: None,
        memory: None,
        server_cpu_us: (server_after.cpu_secs - server_before.cpu_secs) * 1e6 / replies,
        client_cpu_us: (self_after.cpu_secs - self_before.cpu_secs) * 1e6 / replies,
        rss_idle_kib: idle.rss_kib,
        rss_peak_kib: server_after.hwm_kib,
        load: result,
    })
}

/// What the program's memory did around a burst (the `memory` table).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MemoryPoint {
    /// Requests of the burst (each a fresh nonce in the replay cache).
    pub burst_requests: u64,
    /// RSS before the burst, KiB.
    pub idle_kib: u64,
    /// Peak RSS, KiB.
    pub peak_kib: u64,
    /// RSS once every nonce of the burst has expired and been forgotten, KiB.
    pub after_kib: u64,
}

/// The replay window of the `memory` table's program, seconds: short, so that the burst's nonces
/// expire within the point.
pub const MEMORY_WINDOW_SECS: u64 = 3;

/// Runs the `memory` point: the error reply closed-loop for `spec.duration` (a burst of fresh
/// nonces), then, once they have expired (2 × the window, the longest a nonce is kept), a trickle
/// of requests (the cache forgets on insert), and the RSS after it.
pub async fn run_memory_point(
    env: &BenchEnv,
    plan: &Plan,
    spec: LoadSpec,
    against: Option<&Against>,
) -> anyhow::Result<Row> {
    let config = env.fresh_config()?;
    let corp = config.local_zone.corp_id.clone();
    let client = Arc::new(client_codec(&config)?);
    let message = requests::callback_message(&corp, UNKNOWN_ABILITY, "", false, "{}");
    let source = Arc::new(Source::resigned(&client, config.program.sdk.local.token.clone(), &message, &corp));
    // The program of this point (`--program` or `--against`) with the short replay window.
    let (program, mut extra) = match against {
        Some(a) => (a.program.clone(), a.env.clone()),
        None => (env.program.clone(), Vec::new()),
    };
    extra.push(("ZONE_PROGRAM_SDK__LOCAL__REPLAY_WINDOW_SECS".to_owned(), MEMORY_WINDOW_SECS.to_string()));
    let run_as = Against { program, env: extra };
    let (server, _zone) = start_server(env, plan, None, Scenario::ErrorReply, Some(&run_as), &config).await?;
    let (errcode, _) = probe(&server, &source, &client, &corp).await?;
    anyhow::ensure!(errcode == 900_003, "the memory point's probe answered errcode {errcode}");
    let idle = server.usage()?;
    let expect = Arc::new(Expect::Sealed { codec: client, receive_id: corp, errcode: 900_003 });
    let burst = load::drive(server.addr, spec, source.clone(), expect.clone()).await?;
    tokio::time::sleep(Duration::from_secs(2 * MEMORY_WINDOW_SECS + 1)).await;
    let trickle = LoadSpec {
        clients: 1,
        warmup: Duration::ZERO,
        duration: Duration::from_millis(300),
        verify_every: 1,
        max_requests: None,
    };
    let _ = load::drive(server.addr, trickle, source, expect).await?;
    let after = server.usage()?;
    Ok(Row {
        table: "memory",
        scenario: Scenario::ErrorReply,
        against: against.is_some(),
        rate: None,
        clients: spec.clients,
        body_bytes: 0,
        data_bytes: None,
        errcode: Some(errcode),
        reply_bytes: 0,
        jobs: None,
        memory: Some(MemoryPoint {
            burst_requests: burst.replies,
            idle_kib: idle.rss_kib,
            peak_kib: after.hwm_kib,
            after_kib: after.rss_kib,
        }),
        server_cpu_us: 0.0,
        client_cpu_us: 0.0,
        rss_idle_kib: idle.rss_kib,
        rss_peak_kib: after.hwm_kib,
        load: burst,
    })
}

/// A running pass-through: the program, its SDK peer, and what to send it.
pub(super) struct Target {
    /// The program.
    pub server: ServerProcess,
    /// Its SDK peer (kept running while this lives).
    pub _zone: Option<RunningZone>,
    /// Its requests.
    pub source: Arc<Source>,
    /// How its replies are checked.
    pub expect: Arc<Expect>,
}

/// Starts the program and its SDK peer for the pass-through and checks one call.
pub(super) async fn start_pass_through(
    env: &BenchEnv,
    plan: &Plan,
    calibration: &Calibration,
) -> anyhow::Result<Target> {
    let config = env.fresh_config()?;
    let corp = config.local_zone.corp_id.clone();
    let client = Arc::new(client_codec(&config)?);
    let ability = format!("invoke_{PASS_THROUGH_API}");
    let message = requests::callback_message(&corp, &ability, "", false, PASS_THROUGH_REQUEST);
    let source = Arc::new(Source::resigned(&client, config.program.sdk.local.token.clone(), &message, &corp));
    let (server, zone) = start_server(env, plan, Some(calibration), Scenario::PassThrough, None, &config).await?;
    let (errcode, _) = probe(&server, &source, &client, &corp).await?;
    anyhow::ensure!(errcode == 0, "the pass-through's probe answered errcode {errcode}");
    let expect = Arc::new(Expect::Sealed { codec: client, receive_id: corp, errcode: 0 });
    Ok(Target { server, _zone: zone, source, expect })
}

async fn start_server(
    env: &BenchEnv,
    plan: &Plan,
    calibration: Option<&Calibration>,
    scenario: Scenario,
    against: Option<&Against>,
    config: &DevConfig,
) -> anyhow::Result<(ServerProcess, Option<RunningZone>)> {
    let mut args: Vec<String> = Vec::new();
    if let Some(file) = &env.config_file {
        args.extend(["--config".into(), file.display().to_string()]);
    }
    let log = env.work_dir.join(format!("{}.log", scenario.name().replace([' ', ',', '(', ')'], "_")));
    let mut envs = vec![
        ("ZONE_PROGRAM_SDK__LOCAL__NONCE_CACHE_CAPACITY".to_owned(), NONCE_CAPACITY.to_string()),
        ("ZONE_PROGRAM_STORE__PATH".to_owned(), env.work_dir.join("store.sqlite").display().to_string()),
        ("ZONE_PROGRAM_LOCAL_ZONE__DATA_DIR".to_owned(), config.local_zone.data_dir.display().to_string()),
    ];
    let exe = match against {
        Some(a) if scenario.is_program() => {
            envs.extend(a.env.iter().cloned());
            a.program.clone()
        }
        _ => env.program.clone(),
    };
    if let Some(shape) = scenario.netty_shape() {
        let cal = calibration.context("the Netty peer needs the SDK latency calibration")?;
        let toolchain = super::netty::find().map_err(|why| anyhow::anyhow!("the Netty peer: {why}"))?;
        let classes = toolchain.compile(&env.work_dir)?;
        return Ok((toolchain.command(&classes, shape, cal, config, log)?.start().await?, None));
    }
    match scenario {
        Scenario::Echo => args.extend(["bench", "serve-echo", "--listen", "{listen}"].map(String::from)),
        Scenario::OneThread | Scenario::Threaded => {
            let cal = calibration.context("the demo baselines need the SDK latency calibration")?;
            let command = if scenario == Scenario::OneThread { "serve-one-thread" } else { "serve-threaded" };
            args.extend(["bench", command, "--listen", "{listen}"].map(String::from));
            let latency = cal.sdk_latency.as_micros().to_string();
            args.extend(["--sdk-latency-us".into(), latency, "--reply-bytes".into(), cal.reply_bytes.to_string()]);
        }
        Scenario::NettyDemo | Scenario::NettyPublic => unreachable!("started above"),
        Scenario::Ability
        | Scenario::AbilityOne
        | Scenario::ErrorReply
        | Scenario::PassThrough
        | Scenario::AsyncJob => {
            args.extend(["serve", "--listen", "{listen}"].map(String::from));
        }
    }
    if !matches!(scenario, Scenario::PassThrough | Scenario::AsyncJob) {
        envs.push(("ZONE_PROGRAM_SDK__LOCAL__ZONE_URL".to_owned(), "http://127.0.0.1:9".to_owned()));
        let command = ServerCommand { exe, args, env: envs, log };
        return Ok((command.start().await?, None));
    }
    let mut last_error = None;
    for _ in 0..3 {
        let addr = process::free_port()?;
        let running = launch_sdk(env, plan, format!("http://{addr}")).await?;
        let mut envs = envs.clone();
        envs.push(("ZONE_PROGRAM_SDK__LOCAL__ZONE_URL".to_owned(), running.url.clone()));
        let command = ServerCommand { exe: exe.clone(), args: args.clone(), env: envs, log: log.clone() };
        match command.start_on(addr).await {
            Ok(server) => return Ok((server, Some(running))),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.expect("at least one attempt"))
}

/// Starts what answers the program's SDK calls in this run: the local zone with its delay fault
/// armed, or the canned server.
pub(super) async fn launch_sdk(env: &BenchEnv, plan: &Plan, program_url: String) -> anyhow::Result<RunningZone> {
    match (plan.sdk, &env.zone) {
        (SdkMode::Canned, _) => super::canned::start(env, plan.sdk_delay, plan.canned_bytes).await,
        (SdkMode::Zone, Some(zone)) => launch_zone(env, zone.as_ref(), program_url, plan.sdk_delay).await,
        (SdkMode::Zone, None) => anyhow::bail!("no local zone to answer SDK calls"),
    }
}

async fn launch_zone(
    env: &BenchEnv,
    zone: &dyn ZoneLauncher,
    program_url: String,
    delay: Duration,
) -> anyhow::Result<RunningZone> {
    let config = env.fresh_config()?;
    let running = zone.launch(&config, program_url).await.context("starting the local zone")?;
    if !delay.is_zero() {
        let fault = serde_json::json!({
            "api": PASS_THROUGH_API, "delay_ms": delay.as_millis() as u64, "count": 1_000_000,
        });
        let res = reqwest::Client::new().post(format!("{}/local/faults", running.url)).json(&fault).send().await?;
        let reply: serde_json::Value = res.json().await?;
        anyhow::ensure!(reply["errcode"] == 0, "arming the SDK delay in the local zone: {reply}");
    }
    Ok(running)
}

/// The longest a `--jobs N` burst may take to submit.
const BURST_LIMIT: Duration = Duration::from_secs(120);

/// Samples the zone's count of received reports every millisecond; returns the count and when it
/// last changed (the time of the last report) once `stop` is set.
fn watch_reports(
    reports: Arc<dyn Fn() -> u64 + Send + Sync>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(u64, Option<Instant>)> {
    tokio::spawn(async move {
        let started = Instant::now();
        let (mut seen, mut at) = (reports(), None);
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut shown = Duration::ZERO;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            tick.tick().await;
            let now = reports();
            if now != seen {
                (seen, at) = (now, Some(Instant::now()));
            }
            if started.elapsed() >= shown + Duration::from_millis(500) {
                shown += Duration::from_millis(500);
                eprintln!("  jobs reported at {:.1} s: {seen}", shown.as_secs_f64());
            }
        }
        (seen, at)
    })
}

/// Submits async jobs through the zone's app API for the window (or `spec.max_requests` of them),
/// then follows every job to its report (or to a deadline) with `async_program_result`. With a
/// zone that counts the reports it received, the elapsed time ends at the last report as the zone
/// saw it (sampled every millisecond), and the jobs are followed only to learn their outcome;
/// otherwise it ends at the last report the follower saw.
async fn run_async_point(
    config: &DevConfig,
    server: &ServerProcess,
    zone: &RunningZone,
    spec: LoadSpec,
) -> anyhow::Result<Row> {
    let http = reqwest::Client::new();
    let lz = &config.local_zone;
    let token: serde_json::Value = http
        .get(format!("{}/cgi-bin/gettoken", zone.url))
        .query(&[("corpid", lz.corp_id.as_str()), ("corpsecret", lz.corp_secret.expose_secret())])
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"].as_str().context("gettoken answered no access_token")?.to_owned();
    let body = serde_json::json!({
        "program_id": lz.program_id,
        "ability_id": format!("invoke_{PASS_THROUGH_API}"),
        "request_data": PASS_THROUGH_REQUEST,
    });
    let source = Arc::new(Source::AppCall {
        path: format!("/cgi-bin/chatdata/async_program_task?access_token={token}"),
        body: serde_json::to_vec(&body)?.into(),
    });
    let expect = Arc::new(Expect::AppJob { jobids: std::sync::Mutex::new(Vec::new()) });
    let zone_addr: std::net::SocketAddr = zone.url.trim_start_matches("http://").parse().context("the zone's URL")?;
    let idle = server.usage()?;
    let stop_watch = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = zone.reports.clone().map(|reports| watch_reports(reports, stop_watch.clone()));
    let started = Instant::now();
    let (server_before, self_before) = (server.usage()?, process::self_usage()?);
    let result = load::drive(zone_addr, spec, source.clone(), expect.clone()).await?;
    let jobids = match &*expect {
        Expect::AppJob { jobids } => std::mem::take(&mut *jobids.lock().unwrap_or_else(|p| p.into_inner())),
        _ => unreachable!("built above"),
    };
    let submitted_until = Instant::now();
    let submitting = submitted_until - started;
    let deadline = submitted_until + Duration::from_secs(30).max(submitting * 3);
    let result_url = format!("{}/cgi-bin/chatdata/async_program_result?access_token={token}", zone.url);
    let jobs = match (watcher, &zone.reports) {
        (Some(watcher), Some(reports)) => {
            // Every accepted or refused job is reported once: wait for as many reports.
            let expected = jobids.len() as u64;
            while reports() < expected && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            stop_watch.store(true, std::sync::atomic::Ordering::Relaxed);
            let (_, last_report) = watcher.await?;
            let mut jobs = follow_jobs(&http, &result_url, jobids, started, submitted_until, Instant::now()).await?;
            if let Some(last) = last_report {
                jobs.elapsed = last.saturating_duration_since(started);
                jobs.drained_after = last.saturating_duration_since(submitted_until);
            }
            jobs
        }
        _ => follow_jobs(&http, &result_url, jobids, started, submitted_until, deadline).await?,
    };
    let (server_after, self_after) = (server.usage()?, process::self_usage()?);
    let per_job = jobs.submitted.max(1) as f64;
    Ok(Row {
        table: "",
        scenario: Scenario::AsyncJob,
        against: false,
        rate: None,
        clients: spec.clients,
        body_bytes: source.body_len().unwrap_or_default(),
        data_bytes: None,
        errcode: Some(0),
        reply_bytes: 0,
        jobs: Some(jobs),
        memory: None,
        server_cpu_us: (server_after.cpu_secs - server_before.cpu_secs) * 1e6 / per_job,
        client_cpu_us: (self_after.cpu_secs - self_before.cpu_secs) * 1e6 / per_job,
        rss_idle_kib: idle.rss_kib,
        rss_peak_kib: server_after.hwm_kib,
        load: result,
    })
}

/// The program's code for a call refused because its job queue was full.
const JOB_QUEUE_FULL: i64 = 900_301;

/// Follows the jobs in submission order (the order the program runs them), one
/// `async_program_result` at a time so that following costs the zone little: a job not reported
/// yet is asked again every 10 ms until `deadline`; past it, each is asked once. The elapsed time
/// ends at the last report seen, not at the deadline.
async fn follow_jobs(
    http: &reqwest::Client,
    result_url: &str,
    jobids: Vec<String>,
    started: Instant,
    submitted_until: Instant,
    deadline: Instant,
) -> anyhow::Result<JobStats> {
    let mut jobs = JobStats { submitted: jobids.len() as u64, ..JobStats::default() };
    let mut last_report = None;
    for jobid in &jobids {
        loop {
            let reply: serde_json::Value =
                http.post(result_url).json(&serde_json::json!({ "jobid": jobid })).send().await?.json().await?;
            // `async_program_result` has no `status`: a job is reported once `response_errcode` is there.
            match (reply["errcode"].as_i64(), reply["response_errcode"].as_i64()) {
                (Some(0), None) if Instant::now() < deadline => {
                    // Not reported yet: the job is still queued or running in the program.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                (Some(0), None) => {
                    jobs.pending += 1;
                    break;
                }
                (Some(0), Some(0)) => jobs.completed += 1,
                (Some(0), Some(JOB_QUEUE_FULL)) => jobs.refused += 1,
                (code, response) => {
                    jobs.failed += 1;
                    // The first kind seen, for the report: the API's errcode, else the job's.
                    if jobs.failed_code.is_none() {
                        jobs.failed_code =
                            Some(if code != Some(0) { code.unwrap_or(-1) } else { response.unwrap_or(-1) });
                    }
                }
            }
            last_report = Some(Instant::now());
            break;
        }
    }
    jobs.elapsed = last_report.map_or(Duration::ZERO, |t| t.saturating_duration_since(started));
    jobs.drained_after = last_report.map_or(Duration::ZERO, |t| t.saturating_duration_since(submitted_until));
    Ok(jobs)
}

/// What became of the async jobs of one point.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JobStats {
    /// Jobs accepted by `async_program_task` (warm-up included).
    pub submitted: u64,
    /// Reported with `errcode` 0.
    pub completed: u64,
    /// Reported refused: the program's job queue was full (`900301`).
    pub refused: u64,
    /// Reported failed otherwise, or not deliverable.
    pub failed: u64,
    /// Not reported by the deadline.
    pub pending: u64,
    /// The code of the first failure (the `async_program_result` errcode, else the job's).
    pub failed_code: Option<i64>,
    /// From the first submission to the last report seen.
    pub elapsed: Duration,
    /// From the last submission to the last report seen: how long the burst took to drain.
    pub drained_after: Duration,
}

impl JobStats {
    /// Completed jobs per second, submission to last report.
    pub fn completed_per_sec(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends one request and returns the `errcode` and plaintext length of the verified reply.
async fn probe(
    server: &ServerProcess,
    source: &Source,
    codec: &LocalCodec,
    corp: &str,
) -> anyhow::Result<(i64, usize)> {
    let (status, headers, body) = load::exchange_once(server.addr, source).await?;
    anyhow::ensure!(status == 200, "the probe request got HTTP {status}");
    requests::open_reply(codec, corp, &headers, &body).map_err(|e| anyhow::anyhow!("the probe's reply: {e}"))
}

/// The client's codec: the configured keys with a replay cache that holds a whole run.
fn client_codec(config: &DevConfig) -> anyhow::Result<LocalCodec> {
    let local = &config.program.sdk.local;
    let mut keys = BTreeMap::new();
    for k in &local.keys {
        let key = EncodingAesKey::parse(k.encoding_aes_key.expose_secret())
            .map_err(|_| anyhow::anyhow!("sdk.local.keys: ver {} is not a valid EncodingAESKey", k.ver))?;
        keys.insert(k.ver, CallbackCipher::new(key));
    }
    Ok(LocalCodec::new(CodecSettings {
        token: local.token.clone(),
        keys,
        window_secs: local.replay_window_secs,
        nonce_capacity: NONCE_CAPACITY,
    }))
}
