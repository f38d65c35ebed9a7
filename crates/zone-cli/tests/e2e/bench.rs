//! `zone-program bench` in its short form, against the real binary, so the benchmark cannot rot:
//! every scenario starts its server, is answered correctly, and lands in the report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use zone_bench::{BenchArgs, LocalZoneLauncher};
use zone_bench::{BenchEnv, Plan, Scenario};

/// `zone-program bench`'s arguments, parsed as the CLI parses them.
#[derive(clap::Parser)]
struct BenchCli {
    #[command(flatten)]
    bench: BenchArgs,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_bench_answers_every_scenario_correctly_and_reports_each_point() {
    let args = BenchCli::try_parse_from(["bench", "--quick"]).unwrap().bench;
    let mut plan = Plan::from_args(&args);
    assert_eq!(plan.spec.verify_every, 1, "the quick run opens every reply");
    // Shorter still than --quick: one size and one client count keep the test at a few seconds.
    plan.spec.duration = Duration::from_millis(150);
    plan.sizes = vec![4096];
    plan.sweep_clients = vec![3];
    plan.clients = 4;
    let work = tempfile::tempdir().unwrap();
    let env = BenchEnv {
        config_file: None,
        program: PathBuf::from(env!("CARGO_BIN_EXE_zone-program")),
        zone: Some(Arc::new(LocalZoneLauncher)),
        work_dir: work.path().to_path_buf(),
        against: None,
    };
    // The Netty peer runs where a JDK and Debian's libnetty-java are installed (scripts/bench-deps.sh);
    // elsewhere the bench skips it and says why.
    let netty = zone_bench::netty::find();
    if let Err(why) = &netty {
        eprintln!("the Netty peer is not checked here: {why}");
    }
    let report = zone_bench::measure(&plan, &env, |_| {}).await.expect("the quick bench runs");

    let tables: Vec<(&str, Scenario)> = report.rows.iter().map(|r| (r.table, r.scenario)).collect();
    let netty_rows = if netty.is_ok() { 2 } else { 0 };
    assert_eq!(tables.iter().filter(|(t, _)| *t == "main").count(), 8 + netty_rows, "{tables:?}");
    assert_eq!(
        tables.iter().filter(|(_, s)| matches!(s, Scenario::NettyDemo | Scenario::NettyPublic)).count(),
        netty_rows,
        "{tables:?}"
    );
    assert_eq!(report.notes.len(), usize::from(netty.is_err()), "a skipped peer is noted: {:?}", report.notes);
    assert_eq!(tables.iter().filter(|(t, _)| *t == "sizes").count(), 2, "{tables:?}");
    assert_eq!(tables.iter().filter(|(t, _)| *t == "clients").count(), 3, "{tables:?}");
    for row in &report.rows {
        assert!(row.load.ok > 0, "{}: no correct reply: {:?}", row.progress_line(), row.load.errors);
        assert_eq!(row.load.error_count(), 0, "{}: {:?}", row.progress_line(), row.load.errors);
        let expected = match row.scenario {
            Scenario::Echo => None,
            Scenario::ErrorReply => Some(900_003),
            Scenario::Ability
            | Scenario::AbilityOne
            | Scenario::OneThread
            | Scenario::Threaded
            | Scenario::NettyDemo
            | Scenario::NettyPublic
            | Scenario::PassThrough
            | Scenario::AsyncJob => Some(0),
        };
        assert_eq!(row.errcode, expected, "{}", row.progress_line());
        assert!(row.rss_idle_kib > 0 && row.rss_peak_kib >= row.rss_idle_kib, "{}", row.progress_line());
    }
    let jobs = report.rows.iter().find_map(|r| r.jobs).expect("the async-job row reports its jobs");
    assert!(jobs.submitted > 0, "{jobs:?}");
    // The burst is drained: every job is reported before the follow-up deadline (run, or refused
    // for a full queue and reported so), none fails, and every one is accounted for.
    assert!(jobs.completed > 0 && jobs.failed == 0 && jobs.pending == 0, "{jobs:?}");
    assert_eq!(jobs.completed + jobs.refused, jobs.submitted, "{jobs:?}");
    assert!(jobs.elapsed > Duration::ZERO && jobs.completed_per_sec() > 0.0, "{jobs:?}");
    let sized = report.rows.iter().find(|r| r.table == "sizes" && r.scenario == Scenario::ErrorReply).unwrap();
    assert!(sized.body_bytes > 4096, "a 4 KiB data makes a larger sealed body: {}", sized.body_bytes);
    let calibration = report.calibration.expect("a local zone ran");
    assert!(calibration.reply_bytes > 0 && calibration.sdk_latency > Duration::ZERO);
    let text = report.render();
    for heading in
        ["### Main", "### Cost growth with the body size", "### Cost growth with concurrent clients", "### Targets"]
    {
        assert!(text.contains(heading), "{heading} missing from:\n{text}");
    }
}

/// The canned SDK peer, the open loop and the soak, each in its shortest form: every reply checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canned_sdk_the_open_loop_and_a_soak_answer_every_request_correctly() {
    let args =
        BenchCli::try_parse_from(["bench", "--quick", "--sdk", "canned", "--sdk-delay-ms", "2", "--tables", "rate"])
            .unwrap()
            .bench;
    let mut plan = Plan::from_args(&args);
    plan.spec.duration = Duration::from_millis(200);
    plan.clients = 4;
    let work = tempfile::tempdir().unwrap();
    // No local zone at all: the canned server answers every SDK call.
    let env = BenchEnv {
        config_file: None,
        program: PathBuf::from(env!("CARGO_BIN_EXE_zone-program")),
        zone: None,
        work_dir: work.path().to_path_buf(),
        against: None,
    };
    let report = zone_bench::measure(&plan, &env, |_| {}).await.expect("the canned open-loop bench runs");
    let calibration = report.calibration.expect("calibrated against the canned server");
    assert!(calibration.sdk_latency >= Duration::from_millis(2), "the canned server waits: {calibration:?}");
    assert_eq!(calibration.reply_bytes, 6 * 1024, "the canned reply has the asked size");
    let open: Vec<_> = report.rows.iter().filter(|r| r.rate.is_some()).collect();
    assert_eq!(open.len(), 1, "one open-loop point at half the maximum");
    let row = open[0];
    assert!(row.load.scheduled > 0 && row.load.ok > 0, "{}", row.progress_line());
    assert_eq!(row.load.error_count(), 0, "{}: {:?}", row.progress_line(), row.load.errors);
    assert_eq!(row.load.ok, row.load.scheduled, "every scheduled request answered: {:?}", row.load);
    assert!(report.render().contains("### Open loop"));

    let soak =
        zone_bench::soak(&plan, &env, Duration::from_secs(1), Some(100.0)).await.expect("a one-second soak runs");
    assert_eq!(soak.intervals.len(), 10);
    assert_eq!(soak.errors(), 0, "{}", soak.render());
    assert!(soak.intervals.iter().map(|i| i.load.ok).sum::<u64>() >= 50, "{}", soak.render());
    assert!(soak.render().contains("every reply verified"));
}
