//! The benchmark's report: one row per measured point, rendered as markdown tables, and the ratios
//! the targets of BENCHMARKS.md are stated in, each with its verdict.

use std::fmt::Write as _;

use super::SdkMode;
use super::load::LoadResult;
use super::micro::CodecRatio;
use super::scenario::{Calibration, JobStats, MEMORY_WINDOW_SECS, MemoryPoint, Scenario};

/// One measured point.
#[derive(Debug, Clone)]
pub struct Row {
    /// `main`, `sizes` or `clients`.
    pub table: &'static str,
    /// What ran.
    pub scenario: Scenario,
    /// Whether the `--against` program ran (not `--program`).
    pub against: bool,
    /// The open loop's fixed rate (req/s), or none for a closed loop.
    pub rate: Option<f64>,
    /// Concurrent clients.
    pub clients: usize,
    /// The HTTP request body, in bytes.
    pub body_bytes: usize,
    /// The padded `data` size, when the point sets one.
    pub data_bytes: Option<usize>,
    /// The `errcode` the server answered (none for the echo).
    pub errcode: Option<i64>,
    /// The reply's plaintext size (the echo's: its body), bytes; 0 when not probed.
    pub reply_bytes: usize,
    /// For async jobs: what became of them.
    pub jobs: Option<JobStats>,
    /// For the `memory` table: RSS around a burst.
    pub memory: Option<MemoryPoint>,
    /// Server CPU time per reply, in microseconds.
    pub server_cpu_us: f64,
    /// This process's CPU time per reply (load generator, plus the local zone when it runs), µs.
    pub client_cpu_us: f64,
    /// The server's resident set after start, before any request, KiB.
    pub rss_idle_kib: u64,
    /// The server's peak resident set over the point, KiB.
    pub rss_peak_kib: u64,
    /// Throughput, latency and errors.
    pub load: LoadResult,
}

impl Row {
    /// One line for the progress log on stderr.
    pub fn progress_line(&self) -> String {
        format!(
            "[{}] {} clients={} body={}B: {:.0} req/s, p99 {} µs, {} errors",
            self.table,
            self.scenario.name(),
            self.clients,
            self.body_bytes,
            self.load.throughput(),
            self.load.quantile_us(0.99),
            self.load.error_count()
        )
    }

    /// The scenario's name, marked when the `--against` program ran.
    pub fn label(&self) -> String {
        if self.against { format!("{} (against)", self.scenario.name()) } else { self.scenario.name().to_owned() }
    }

    fn rate_cells(&self, max: f64) -> String {
        let l = &self.load;
        let rate = self.rate.unwrap_or_default();
        format!(
            "| {} | {:.0} | {:.0}% | {:.0} | {} | {} | {} | {} | {} | {:.0} |",
            self.label(),
            rate,
            rate / max.max(1e-9) * 100.0,
            l.throughput(),
            ms(l.quantile_us(0.5)),
            ms(l.quantile_us(0.99)),
            ms(l.quantile_us(0.999)),
            ms(l.latencies_us.last().copied().unwrap_or(0)),
            errors_cell(l),
            self.server_cpu_us,
        )
    }

    fn cells(&self) -> String {
        let l = &self.load;
        let errors = errors_cell(l);
        format!(
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {:.0} | {:.0} | {} |",
            self.label(),
            self.clients,
            human_bytes(self.body_bytes),
            human_bytes(self.reply_bytes),
            self.errcode.map_or_else(|| "–".to_owned(), |c| c.to_string()),
            l.throughput(),
            ms(l.quantile_us(0.5)),
            ms(l.quantile_us(0.99)),
            ms(l.latencies_us.last().copied().unwrap_or(0)),
            errors,
            self.server_cpu_us,
            self.client_cpu_us,
            format_args!("{:.1} → {:.1}", mib(self.rss_idle_kib), mib(self.rss_peak_kib)),
        )
    }
}

/// Every point of a run, and what the run measured besides.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The main table's client count.
    pub clients: usize,
    /// The points, in the order they ran.
    pub rows: Vec<Row>,
    /// The in-run codec measurement (64 KiB).
    pub codec_ratio: Option<CodecRatio>,
    /// The local zone's SDK latency, if a zone ran.
    pub calibration: Option<Calibration>,
    /// What answered SDK calls.
    pub sdk: SdkMode,
    /// The pass-through's closed-loop maximum the `rate` table's fractions are of.
    pub max_rate: Option<f64>,
    /// A `--quick` smoke run: its points are too short to judge the targets, so no verdict is given.
    pub quick: bool,
    /// What the run could not measure, and why (e.g. a baseline skipped for a missing toolchain).
    pub notes: Vec<String>,
}

/// One target and how the run did against it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The target as stated.
    pub target: &'static str,
    /// The measured value, in words.
    pub measured: String,
    /// Met, or not (none when the run could not measure it).
    pub met: Option<bool>,
}

impl Report {
    /// The first row of `table` for `scenario` at `clients`.
    pub fn find(&self, table: &str, scenario: Scenario, clients: usize) -> Option<&Row> {
        self.rows.iter().find(|r| r.table == table && r.scenario == scenario && r.clients == clients && !r.against)
    }

    /// The `--against` program's row beside [`Report::find`]'s.
    pub fn find_against(&self, table: &str, scenario: Scenario, clients: usize) -> Option<&Row> {
        self.rows.iter().find(|r| r.table == table && r.scenario == scenario && r.clients == clients && r.against)
    }

    /// The targets, measured in this run.
    pub fn verdicts(&self) -> Vec<Verdict> {
        let c = self.clients;
        let main = |s| self.find("main", s, c);
        let ratio = |a: Option<&Row>, b: Option<&Row>| match (a, b) {
            (Some(a), Some(b)) if b.load.throughput() > 0.0 => Some(a.load.throughput() / b.load.throughput()),
            _ => None,
        };
        let mut out = Vec::new();
        let pass = ratio(main(Scenario::PassThrough), main(Scenario::OneThread));
        out.push(Verdict {
            target: "pass-through throughput ≥ 20× the one-thread demo",
            measured: pass.map_or_else(|| "not measured (no local zone)".to_owned(), |r| format!("{r:.1}×")),
            met: pass.map(|r| r >= 20.0),
        });
        for (target, scenario) in [
            (
                "ability without SDK (list_abilities, whole list: 27 KiB reply) ≥ 50% of the axum echo floor",
                Scenario::Ability,
            ),
            (
                "ability without SDK (list_abilities, one ability: < 1 KiB reply) ≥ 50% of the axum echo floor",
                Scenario::AbilityOne,
            ),
            ("shortest path (unknown ability's error reply) ≥ 50% of the axum echo floor", Scenario::ErrorReply),
        ] {
            let floor = ratio(main(scenario), main(Scenario::Echo));
            out.push(Verdict {
                target,
                measured: floor.map_or_else(|| "not measured".to_owned(), |r| format!("{:.0}%", r * 100.0)),
                met: floor.map(|r| r >= 0.5),
            });
        }
        out.push(Verdict {
            target: "codec ≥ 50% of raw AES-256-CBC + SHA1 at 64 KiB",
            measured: self.codec_ratio.map_or_else(
                || "not measured".to_owned(),
                |m| {
                    format!(
                        "{:.0}% (seal+open {} µs, raw {} µs)",
                        m.ratio() * 100.0,
                        m.codec.as_micros(),
                        m.raw.as_micros()
                    )
                },
            ),
            met: self.codec_ratio.map(|m| m.ratio() >= 0.5),
        });
        let threaded = ratio(main(Scenario::PassThrough), main(Scenario::Threaded));
        out.push(Verdict {
            target: "pass-through throughput ≥ 8× the threaded stdlib server",
            measured: threaded.map_or_else(|| "not measured".to_owned(), |r| format!("{r:.1}×")),
            met: threaded.map(|r| r >= 8.0),
        });
        let p99 = main(Scenario::PassThrough).map(|r| r.load.quantile_us(0.99));
        out.push(Verdict {
            target: "pass-through p99 < 5 ms",
            measured: p99.map_or_else(|| "not measured (no local zone)".to_owned(), |p| format!("{} ms", ms(p))),
            met: p99.map(|p| p < 5_000),
        });
        let half = self.max_rate.and_then(|max| {
            self.rows
                .iter()
                .filter(|r| r.table == "rate" && !r.against)
                .filter_map(|r| Some((r, r.rate?)))
                .min_by(|(_, a), (_, b)| (a / max - 0.5).abs().total_cmp(&(b / max - 0.5).abs()))
                .map(|(r, rate)| (rate / max, r.load.quantile_us(0.99), r.load.error_count()))
        });
        out.push(Verdict {
            target: "pass-through p99 < 5 ms at 50% of its maximum rate (open loop)",
            measured: half.map_or_else(
                || "not measured".to_owned(),
                |(f, p99, errors)| format!("{} ms at {:.0}%, {errors} errors", ms(p99), f * 100.0),
            ),
            met: half.map(|(_, p99, errors)| p99 < 5_000 && errors == 0),
        });
        let idle = self.rows.iter().filter(|r| r.scenario.is_program()).map(|r| r.rss_idle_kib).max();
        out.push(Verdict {
            target: "program idle RSS < 30 MiB",
            measured: idle.map_or_else(|| "not measured".to_owned(), |k| format!("{:.1} MiB", mib(k))),
            met: idle.map(|k| k < 30 * 1024),
        });
        out.extend(self.netty_verdicts());
        out
    }

    /// Issue #17's targets against the Netty peer in the official demo's shape (256 + 256 threads):
    /// throughput ≥ 3× with the canned SDK (≥ 2× with the local zone in the loop), p99 ≤ 1/5 of
    /// its p99, peak RSS ≤ 1/10 of its peak.
    fn netty_verdicts(&self) -> Vec<Verdict> {
        let (program, netty) = (
            self.find("main", Scenario::PassThrough, self.clients),
            self.find("main", Scenario::NettyDemo, self.clients),
        );
        let both = program.zip(netty).filter(|(_, n)| n.load.throughput() > 0.0);
        let (target, factor): (&'static str, f64) = match self.sdk {
            SdkMode::Canned => ("pass-through throughput ≥ 3× the Netty demo (256 + 256 threads), canned SDK", 3.0),
            SdkMode::Zone => {
                ("pass-through throughput ≥ 2× the Netty demo (256 + 256 threads), local zone in the loop", 2.0)
            }
        };
        let not_measured = || "not measured (no Netty row)".to_owned();
        let throughput = both.map(|(p, n)| p.load.throughput() / n.load.throughput());
        // A ratio of p99s (program ÷ Netty) and of peak resident sets (program ÷ Netty).
        let p99 = both.map(|(p, n)| (p.load.quantile_us(0.99), n.load.quantile_us(0.99)));
        let rss = both.map(|(p, n)| (p.rss_peak_kib, n.rss_peak_kib));
        vec![
            Verdict {
                target,
                measured: throughput.map_or_else(not_measured, |r| format!("{r:.2}×")),
                met: throughput.map(|r| r >= factor),
            },
            Verdict {
                target: "pass-through p99 ≤ 1/5 of the Netty demo's (256 + 256 threads)",
                measured: p99.map_or_else(not_measured, |(p, n)| {
                    format!("{} ms against {} ms: 1/{:.1}", ms(p), ms(n), f64::from(n) / f64::from(p.max(1)))
                }),
                met: p99.map(|(p, n)| u64::from(p) * 5 <= u64::from(n)),
            },
            Verdict {
                target: "program peak RSS ≤ 1/10 of the Netty demo's (256 + 256 threads)",
                measured: rss.map_or_else(not_measured, |(p, n)| {
                    format!("{:.1} MiB against {:.1} MiB: 1/{:.1}", mib(p), mib(n), n as f64 / p.max(1) as f64)
                }),
                met: rss.map(|(p, n)| p * 10 <= n),
            },
        ]
    }

    /// The pass-through against each demo baseline of the main table: how many times its
    /// throughput, and the baseline's p99 and peak RSS as multiples of the program's.
    fn render_baseline_ratios(&self, out: &mut String) {
        let Some(program) = self.find("main", Scenario::PassThrough, self.clients) else { return };
        let baselines: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.table == "main" && !r.against && r.scenario.needs_sdk() && !r.scenario.is_program())
            .collect();
        if baselines.is_empty() {
            return;
        }
        let _ = write!(
            out,
            "\n### The pass-through against the demo baselines (ratios of this run, {} clients)\n\n| baseline | req/s | pass-through ÷ baseline req/s | baseline p99 ÷ pass-through p99 | baseline peak RSS ÷ pass-through peak RSS | server CPU µs/req, baseline / pass-through |\n|---|---:|---:|---:|---:|---|\n",
            self.clients
        );
        let (p_rate, p_p99, p_rss) =
            (program.load.throughput(), f64::from(program.load.quantile_us(0.99).max(1)), program.rss_peak_kib.max(1));
        for b in baselines {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.2}× | {:.2}× | {:.1}× | {:.0} / {:.0} |",
                b.label(),
                b.load.throughput(),
                p_rate / b.load.throughput().max(1e-9),
                f64::from(b.load.quantile_us(0.99)) / p_p99,
                b.rss_peak_kib as f64 / p_rss as f64,
                b.server_cpu_us,
                program.server_cpu_us,
            );
        }
    }

    /// The report as markdown.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let header = "| scenario | clients | request | reply | errcode | req/s | p50 ms | p99 ms | max ms | errors | server CPU µs/req | bench CPU µs/req | server RSS MiB idle → peak |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|\n";
        for (table, title) in [
            ("main", format!("Main: every scenario at {} clients", self.clients)),
            ("sizes", "Cost growth with the body size".to_owned()),
            ("clients", "Cost growth with concurrent clients".to_owned()),
        ] {
            let rows: Vec<&Row> = self.rows.iter().filter(|r| r.table == table).collect();
            if rows.is_empty() {
                continue;
            }
            let _ = write!(out, "\n### {title}\n\n{header}");
            for row in rows {
                let _ = writeln!(out, "{}", row.cells());
            }
        }
        let open: Vec<&Row> = self.rows.iter().filter(|r| r.table == "rate" && r.rate.is_some()).collect();
        if !open.is_empty() {
            let max = self.max_rate.unwrap_or(1.0);
            let _ = write!(
                out,
                "\n### Open loop: latency against a fixed rate ({} connections; maximum {max:.0} req/s closed-loop; latency from each request's scheduled time)\n\n| scenario | rate req/s | of max | achieved req/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | server CPU µs/req |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n",
                self.clients
            );
            for row in open {
                let _ = writeln!(out, "{}", row.rate_cells(max));
            }
        }
        let memory: Vec<(&Row, &MemoryPoint)> =
            self.rows.iter().filter_map(|r| Some((r, r.memory.as_ref()?))).collect();
        if !memory.is_empty() {
            let _ = write!(
                out,
                "\n### Memory after a burst (error reply, {} clients; replay window {MEMORY_WINDOW_SECS} s, RSS once every nonce of the burst has expired)\n\n| program | burst requests | RSS idle MiB | peak MiB | after MiB | kept MiB |\n|---|---:|---:|---:|---:|---:|\n",
                self.clients
            );
            for (row, m) in memory {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.1} | {:.1} | {:.1} | {:+.1} |",
                    if row.against { "against" } else { "program" },
                    m.burst_requests,
                    mib(m.idle_kib),
                    mib(m.peak_kib),
                    mib(m.after_kib),
                    mib(m.after_kib) - mib(m.idle_kib)
                );
            }
        }
        let jobs: Vec<(&Row, &JobStats)> =
            self.rows.iter().filter(|r| r.table == "jobs").filter_map(|r| Some((r, r.jobs.as_ref()?))).collect();
        if !jobs.is_empty() {
            let _ = write!(
                out,
                "\n### Async jobs ({} clients submitting through the zone's app API; elapsed from the first submission to the last report)\n\n| program | submitted | in s | submitted/s | completed | completed/s | drained after s | refused (900301) | failed | pending at deadline | server CPU µs/job | RSS MiB idle → peak |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
                self.clients
            );
            for (row, j) in jobs {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.2} | {:.0} | {} | **{:.0}** | {:.2} | {} | {} | {} | {:.0} | {:.1} → {:.1} |",
                    if row.against { "against" } else { "program" },
                    j.submitted,
                    row.load.window.as_secs_f64(),
                    j.submitted as f64 / row.load.window.as_secs_f64().max(1e-9),
                    j.completed,
                    j.completed_per_sec(),
                    j.drained_after.as_secs_f64(),
                    j.refused,
                    j.failed_code.map_or_else(|| j.failed.to_string(), |code| format!("{} (first: {code})", j.failed)),
                    j.pending,
                    row.server_cpu_us,
                    mib(row.rss_idle_kib),
                    mib(row.rss_peak_kib)
                );
            }
        }
        for row in self.rows.iter().filter(|r| r.table == "main") {
            if let Some(j) = &row.jobs {
                let _ = writeln!(
                    out,
                    "\nAsync jobs ({} clients submitting; the row above counts submissions): {} submitted, {} completed ({:.0}/s from the first submission to the last report, drained {:.1} s after the last submission), {} refused (900301, reported), {} failed, {} still pending at the deadline.",
                    row.clients,
                    j.submitted,
                    j.completed,
                    j.completed_per_sec(),
                    j.drained_after.as_secs_f64(),
                    j.refused,
                    j.failed,
                    j.pending
                );
            }
        }
        if let Some(cal) = &self.calibration {
            let what = match self.sdk {
                SdkMode::Zone => "the local zone",
                SdkMode::Canned => "the canned SDK server (it only waits and answers)",
            };
            let _ = writeln!(
                out,
                "\nSDK call to {what} (sequential, the program's own client): median {} ms, p99 {} ms, response {} B; the demo baselines block that long per request.",
                ms(cal.sdk_latency.as_micros() as u32),
                ms(cal.sdk_latency_p99.as_micros() as u32),
                cal.reply_bytes
            );
        }
        self.render_baseline_ratios(&mut out);
        for note in &self.notes {
            let _ = writeln!(out, "\n{note}");
        }
        let _ = write!(out, "\n### Targets (ratios of this run)\n\n");
        if self.quick {
            let _ = writeln!(
                out,
                "A `--quick` run checks that every scenario works; its 200 ms points are too short to judge the \
                 targets, so no verdict is given. Run `zone-program bench` without `--quick` for verdicts.\n"
            );
        }
        let _ = write!(out, "| target | measured | verdict |\n|---|---|---|\n");
        for v in self.verdicts() {
            let verdict = match v.met {
                _ if self.quick => "– (quick run)",
                Some(true) => "met",
                Some(false) => "missed",
                None => "–",
            };
            let _ = writeln!(out, "| {} | {} | {} |", v.target, v.measured, verdict);
        }
        out
    }
}

fn errors_cell(l: &LoadResult) -> String {
    if l.errors.is_empty() {
        "0".to_owned()
    } else {
        l.errors.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
    }
}

fn ms(us: u32) -> String {
    format!("{:.2}", f64::from(us) / 1000.0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn human_bytes(b: usize) -> String {
    match b {
        b if b >= 1024 * 1024 => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        b if b >= 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn row(table: &'static str, scenario: Scenario, ok: u64, p99_us: u32, idle_kib: u64) -> Row {
        Row {
            table,
            scenario,
            against: false,
            rate: None,
            clients: 64,
            body_bytes: 400,
            data_bytes: None,
            errcode: Some(0),
            reply_bytes: 100,
            jobs: None,
            memory: None,
            server_cpu_us: 10.0,
            client_cpu_us: 5.0,
            rss_idle_kib: idle_kib,
            rss_peak_kib: idle_kib * 2,
            load: LoadResult {
                ok,
                latencies_us: vec![p99_us; 10],
                window: Duration::from_secs(1),
                ..LoadResult::default()
            },
        }
    }

    #[test]
    fn verdicts_are_the_ratios_of_the_main_rows() {
        let report = Report {
            clients: 64,
            rows: vec![
                row("main", Scenario::Echo, 1000, 100, 5_000),
                row("main", Scenario::Ability, 400, 200, 12_000),
                row("main", Scenario::AbilityOne, 600, 200, 12_000),
                row("main", Scenario::OneThread, 100, 300, 8_000),
                row("main", Scenario::PassThrough, 2500, 6_000, 40_000),
            ],
            ..Report::default()
        };
        let v = report.verdicts();
        assert_eq!((v[0].measured.as_str(), v[0].met), ("25.0×", Some(true)));
        assert_eq!((v[1].measured.as_str(), v[1].met), ("40%", Some(false)));
        assert_eq!((v[2].measured.as_str(), v[2].met), ("60%", Some(true)));
        assert_eq!((v[3].measured.as_str(), v[3].met), ("not measured", None), "no error-reply row");
        assert_eq!(v[4].met, None, "no codec measurement in this report");
        assert_eq!((v[5].measured.as_str(), v[5].met), ("not measured", None), "no threaded row");
        assert_eq!((v[6].measured.as_str(), v[6].met), ("6.00 ms", Some(false)));
        assert_eq!((v[7].measured.as_str(), v[7].met), ("not measured", None), "no rate table");
        assert_eq!((v[8].measured.as_str(), v[8].met), ("39.1 MiB", Some(false)));
        let text = report.render();
        assert!(text.contains("| invoke_ pass-through | 64 | 400 B | 100 B | 0 | 2500 |"), "{text}");
        assert!(text.contains("| missed |"));
        let quick = Report { quick: true, ..report }.render();
        assert!(!quick.contains("missed") && !quick.contains("| met |"), "{quick}");
        assert!(quick.contains("no verdict is given"));
    }

    #[test]
    fn the_netty_targets_depend_on_the_sdk_mode_and_compare_p99_and_peak_rss() {
        let rows = vec![
            row("main", Scenario::NettyDemo, 1000, 50_000, 100_000),
            row("main", Scenario::NettyPublic, 200, 200_000, 80_000),
            row("main", Scenario::PassThrough, 2500, 9_000, 10_000),
        ];
        let canned = Report { clients: 64, rows: rows.clone(), sdk: SdkMode::Canned, ..Report::default() };
        let v = canned.verdicts();
        let netty: Vec<_> = v.iter().filter(|v| v.target.contains("Netty")).collect();
        assert_eq!(netty.len(), 3, "{v:?}");
        assert!(netty[0].target.contains("≥ 3×"), "{:?}", netty[0]);
        assert_eq!((netty[0].measured.as_str(), netty[0].met), ("2.50×", Some(false)));
        assert_eq!(netty[1].met, Some(true), "9 ms ≤ 50 ms / 5: {:?}", netty[1]);
        assert_eq!(netty[2].met, Some(true), "peak 20 000 KiB ≤ 200 000 KiB / 10: {:?}", netty[2]);
        let zone = Report { clients: 64, rows, sdk: SdkMode::Zone, ..Report::default() };
        let v = zone.verdicts();
        let through = v.iter().find(|v| v.target.contains("Netty") && v.target.contains("throughput")).unwrap();
        assert!(through.target.contains("≥ 2×") && through.met == Some(true), "{through:?}");
        let text = zone.render();
        assert!(text.contains("| Netty demo (4 + 4 threads) | 200 | 12.50× |"), "{text}");
        let none = Report { clients: 64, ..Report::default() }.verdicts();
        assert!(none.iter().filter(|v| v.target.contains("Netty")).all(|v| v.met.is_none()));
        let skipped = Report { notes: vec!["The Netty peer was skipped: no java.".into()], ..zone };
        assert!(skipped.render().contains("The Netty peer was skipped: no java."));
    }
}
