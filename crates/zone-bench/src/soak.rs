//! `zone-program bench --soak 600s [--rate N]`: one program process and its SDK peer (the local zone,
//! or the canned server with `--sdk canned`) run the pass-through open-loop at a fixed rate for a long
//! time, with every reply opened and checked, while the program's memory is sampled every second.
//! The report has one row per tenth of the run and the verdicts of the soak target: no error, and
//! RSS flat within ±10% after the warm-up: the first tenth, or one replay window if that is longer
//! (the replay cache keeps every nonce for a window, so it grows for that long by design).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::load::{self, LoadResult, LoadSpec};
use super::scenario::{self, Point, Scenario};
use super::{BenchEnv, Plan};

/// What a soak measured.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    /// The fixed rate, requests per second.
    pub rate: f64,
    /// The closed-loop maximum it was derived from, when no rate was given.
    pub max_rate: Option<f64>,
    /// What answered SDK calls.
    pub sdk: &'static str,
    /// One entry per interval.
    pub intervals: Vec<Interval>,
    /// The program's RSS every second, KiB, with the seconds since the start.
    pub rss: Vec<(f64, u64)>,
    /// Seconds of warm-up before RSS must be flat: the first tenth, or the replay window if longer
    /// (the replay cache fills for one window: every nonce is kept that long, by design).
    pub warmup_secs: f64,
}

/// One interval of the soak.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Seconds since the start at its end.
    pub ends_at: f64,
    /// Its load result (latency from the scheduled time).
    pub load: LoadResult,
    /// The program's RSS at its end, KiB.
    pub rss_kib: u64,
    /// Program CPU per request in it, µs.
    pub server_cpu_us: f64,
}

/// Runs the soak.
pub async fn run(plan: &Plan, env: &BenchEnv, duration: Duration, rate: Option<f64>) -> anyhow::Result<SoakReport> {
    let calibration = scenario::calibrate(env, plan).await?;
    let (max_rate, rate) = match rate {
        Some(rate) => (None, rate),
        None => {
            let spec = LoadSpec { clients: plan.clients, ..plan.spec };
            let point = Point { scenario: Scenario::PassThrough, spec, data_bytes: None, against: None, rate: None };
            let row =
                scenario::run_point(env, plan, Some(&calibration), point).await.context("the closed-loop maximum")?;
            let max = row.load.throughput();
            eprintln!("{}", row.progress_line());
            (Some(max), max / 2.0)
        }
    };
    anyhow::ensure!(rate > 0.0, "the soak needs a positive rate");
    let target = scenario::start_pass_through(env, plan, &calibration).await?;
    let server = &target.server;
    let tenth = duration / 10;
    let window = env.fresh_config()?.program.sdk.local.replay_window_secs.max(0) as f64;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, pid) = (stop.clone(), server.pid());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                if let Ok(u) = super::process::pid_usage(pid) {
                    samples.push((started.elapsed().as_secs_f64(), u.rss_kib));
                }
            }
            samples
        })
    };
    let mut report = SoakReport {
        rate,
        max_rate,
        warmup_secs: tenth.as_secs_f64().max(window),
        sdk: match plan.sdk {
            super::SdkMode::Zone => "local zone",
            super::SdkMode::Canned => "canned SDK server",
        },
        ..SoakReport::default()
    };
    for i in 0..10 {
        // The first interval has a short warm-up so that connection set-up is not measured.
        let warmup = if i == 0 { plan.spec.warmup } else { Duration::ZERO };
        let spec = LoadSpec { clients: plan.clients, warmup, duration: tenth, verify_every: 1, max_requests: None };
        let before = server.usage()?;
        let load = load::drive_open(
            server.addr,
            spec,
            rate,
            Duration::from_secs(5),
            target.source.clone(),
            target.expect.clone(),
        )
        .await?;
        let after = server.usage()?;
        let interval = Interval {
            ends_at: started.elapsed().as_secs_f64(),
            server_cpu_us: (after.cpu_secs - before.cpu_secs) * 1e6 / load.replies.max(1) as f64,
            rss_kib: after.rss_kib,
            load,
        };
        eprintln!(
            "[soak] {:.0} s: {:.0} req/s, p99 {} µs, {} errors, RSS {:.1} MiB",
            interval.ends_at,
            interval.load.throughput(),
            interval.load.quantile_us(0.99),
            interval.load.error_count(),
            interval.rss_kib as f64 / 1024.0
        );
        report.intervals.push(interval);
    }
    stop.store(true, Ordering::Relaxed);
    report.rss = sampler.await.unwrap_or_default();
    Ok(report)
}

impl SoakReport {
    /// Every error of the soak.
    pub fn errors(&self) -> u64 {
        self.intervals.iter().map(|i| i.load.error_count()).sum()
    }

    /// The RSS samples after the warm-up: (first, min, max) in KiB.
    pub fn rss_after_warmup(&self) -> Option<(u64, u64, u64)> {
        let warm = self.warmup_secs.max(self.intervals.first()?.ends_at);
        let after: Vec<u64> = self.rss.iter().filter(|(t, _)| *t >= warm).map(|(_, k)| *k).collect();
        Some((*after.first()?, *after.iter().min()?, *after.iter().max()?))
    }

    /// The report as markdown.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "\n### Soak: invoke_ pass-through at {:.0} req/s{}, SDK: {}, every reply verified\n\n| until s | requests | req/s | p50 ms | p99 ms | max ms | errors | program CPU µs/req | RSS MiB |\n|---:|---:|---:|---:|---:|---:|---|---:|---:|\n",
            self.rate,
            self.max_rate.map_or_else(String::new, |m| format!(" (half the closed-loop maximum, {m:.0})")),
            self.sdk
        );
        for i in &self.intervals {
            let l = &i.load;
            let errors = if l.errors.is_empty() {
                "0".to_owned()
            } else {
                l.errors.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
            };
            let _ = writeln!(
                out,
                "| {:.0} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.0} | {:.1} |",
                i.ends_at,
                l.ok,
                l.throughput(),
                f64::from(l.quantile_us(0.5)) / 1000.0,
                f64::from(l.quantile_us(0.99)) / 1000.0,
                f64::from(l.latencies_us.last().copied().unwrap_or(0)) / 1000.0,
                errors,
                i.server_cpu_us,
                i.rss_kib as f64 / 1024.0
            );
        }
        let total: u64 = self.intervals.iter().map(|i| i.load.ok).sum();
        let _ = writeln!(out, "\n{total} correct replies, {} errors.", self.errors());
        if let Some((first, min, max)) = self.rss_after_warmup() {
            let dev = |k: u64| (k as f64 / first as f64 - 1.0) * 100.0;
            let flat = dev(min) >= -10.0 && dev(max) <= 10.0;
            let _ = writeln!(
                out,
                "RSS after the warm-up ({:.0} s: the first tenth, or the replay window while the replay cache fills): {:.1} MiB at its start, {:.1}–{:.1} MiB ({:+.1}% / {:+.1}%) over {} one-second samples: {}.",
                self.warmup_secs,
                first as f64 / 1024.0,
                min as f64 / 1024.0,
                max as f64 / 1024.0,
                dev(min),
                dev(max),
                self.rss.len(),
                if flat { "flat within ±10% (met)" } else { "not flat within ±10% (missed)" }
            );
        }
        out
    }
}
