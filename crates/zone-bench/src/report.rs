//! The benchmark's report: one row per measured point, rendered as markdown tables, and the ratios
//! the targets of BENCHMARKS.md are stated in, each with its verdict.

use std::fmt::Write as _;

use super::load::LoadResult;
use super::micro::CodecRatio;
use super::scenario::{Calibration, JobStats, Scenario};

/// One measured point.
#[derive(Debug, Clone)]
pub struct Row {
    /// `main`, `sizes` or `clients`.
    pub table: &'static str,
    /// What ran.
    pub scenario: Scenario,
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

    fn cells(&self) -> String {
        let l = &self.load;
        let errors = if l.errors.is_empty() {
            "0".to_owned()
        } else {
            l.errors.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
        };
        format!(
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {:.0} | {:.0} | {} |",
            self.scenario.name(),
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
        self.rows.iter().find(|r| r.table == table && r.scenario == scenario && r.clients == clients)
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
        let p99 = main(Scenario::PassThrough).map(|r| r.load.quantile_us(0.99));
        out.push(Verdict {
            target: "pass-through p99 < 5 ms",
            measured: p99.map_or_else(|| "not measured (no local zone)".to_owned(), |p| format!("{} ms", ms(p))),
            met: p99.map(|p| p < 5_000),
        });
        let idle = self.rows.iter().filter(|r| r.scenario.is_program()).map(|r| r.rss_idle_kib).max();
        out.push(Verdict {
            target: "program idle RSS < 30 MiB",
            measured: idle.map_or_else(|| "not measured".to_owned(), |k| format!("{:.1} MiB", mib(k))),
            met: idle.map(|k| k < 30 * 1024),
        });
        out
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
            let _ = writeln!(
                out,
                "\nSDK call to the local zone (sequential, the program's own client): median {} ms, p99 {} ms, response {} B; the one-thread demo blocks that long per request.",
                ms(cal.sdk_latency.as_micros() as u32),
                ms(cal.sdk_latency_p99.as_micros() as u32),
                cal.reply_bytes
            );
        }
        let _ = write!(out, "\n### Targets (ratios of this run)\n\n| target | measured | verdict |\n|---|---|---|\n");
        for v in self.verdicts() {
            let verdict = match v.met {
                Some(true) => "met",
                Some(false) => "missed",
                None => "–",
            };
            let _ = writeln!(out, "| {} | {} | {} |", v.target, v.measured, verdict);
        }
        out
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
            clients: 64,
            body_bytes: 400,
            data_bytes: None,
            errcode: Some(0),
            reply_bytes: 100,
            jobs: None,
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
        assert_eq!((v[5].measured.as_str(), v[5].met), ("6.00 ms", Some(false)));
        assert_eq!((v[6].measured.as_str(), v[6].met), ("39.1 MiB", Some(false)));
        let text = report.render();
        assert!(text.contains("| invoke_ pass-through | 64 | 400 B | 100 B | 0 | 2500 |"), "{text}");
    }
}
