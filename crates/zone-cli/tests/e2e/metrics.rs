//! `GET /metrics` after known traffic, read with a Prometheus text parser: every family the README
//! "Metrics" section lists, with the values the traffic implies.

use std::collections::HashMap;

use serde_json::json;

use crate::helpers::{TestEnv, poll};

/// The scrape as `name{sorted labels}` → value.
async fn scrape(env: &TestEnv) -> HashMap<String, f64> {
    let res = env.http.get(format!("http://{}/metrics", env.addr)).send().await.unwrap();
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = res.text().await.unwrap();
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    let mut out = HashMap::new();
    for s in parsed.samples {
        let mut labels: Vec<(String, String)> = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.sort();
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref b) => b.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert(format!("{}{{{}}}", s.metric, labels.join(",")), value);
    }
    out
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| {
        let mut keys: Vec<&String> = m.keys().collect();
        keys.sort();
        panic!("{key} not scraped; have {keys:#?}")
    })
}

#[tokio::test]
async fn a_scrape_after_known_traffic_shows_each_family_with_bounded_labels() {
    let env = TestEnv::spawn_with(|c| c.program.server.body_limit_bytes = 64 * 1024).await;
    // Two good calls, one of an ability the program does not have (straight to the program).
    for _ in 0..2 {
        assert_eq!(env.call("list_abilities", "{}").await["errcode"], 0);
    }
    assert_ne!(env.call("no_such_ability_x1", "{}").await["errcode"], 0);
    // One forged request (signature changed) and one too large.
    let mut forged = env.seal_callback(1, "list_abilities", "{}");
    for (k, v) in &mut forged.headers {
        if k == "ww-signature" {
            *v = "0".repeat(40);
        }
    }
    assert_ne!(env.post(&forged).await.status(), 200);
    let big = env.seal_callback(1, "list_abilities", &"x".repeat(100 * 1024));
    assert_eq!(env.post(&big).await.status(), 413);
    // One SDK call answered by an injected errcode, through an app call.
    env.control("faults", json!({"api": "get_rule_list", "count": 1, "errcode": 45009})).await;
    env.app_call("invoke_get_rule_list", "{}", None).await;
    // One async call whose result is reported.
    let jobid = env.app_async("list_abilities", "{}").await["jobid"].as_str().unwrap().to_owned();
    env.await_async_result(&jobid).await;

    let m = poll(
        || async { serde_json::to_value(scrape(&env).await).unwrap() },
        |v| v["zone_program_job_reports_total{outcome=ok}"] == 1.0,
    )
    .await;
    let m: HashMap<String, f64> = serde_json::from_value(m).unwrap();
    // 2 + 1 direct, 1 sync and 1 async (its acknowledgement) through the zone.
    assert_eq!(get(&m, "zone_program_requests_total{outcome=ok,reason=}"), 5.0);
    let refused: f64 =
        m.iter().filter(|(k, _)| k.starts_with("zone_program_requests_total{outcome=refused")).map(|(_, v)| v).sum();
    assert_eq!(refused, 1.0);
    assert!(
        m.contains_key("zone_program_requests_total{outcome=refused,reason=signature}")
            || m.contains_key("zone_program_requests_total{outcome=refused,reason=sdk_decode}"),
        "the refusal has its reason class"
    );
    assert_eq!(get(&m, "zone_program_requests_total{outcome=too_large,reason=}"), 1.0);
    assert_eq!(get(&m, "zone_program_request_duration_seconds_count{}"), 7.0);
    assert_eq!(get(&m, "zone_program_ability_calls_total{ability=list_abilities,errcode=0}"), 3.0);
    let unknown: f64 = m.iter().filter(|(k, _)| k.contains("ability=unknown")).map(|(_, v)| v).sum();
    assert_eq!(unknown, 1.0, "an unknown ability id is one label value, not its own");
    assert!(!m.keys().any(|k| k.contains("no_such_ability_x1")));
    assert_eq!(get(&m, "zone_program_sdk_errors_total{api=get_rule_list,code=45009}"), 1.0);
    assert!(get(&m, "zone_program_sdk_call_duration_seconds_count{api=get_rule_list}") >= 1.0);
    assert_eq!(get(&m, "zone_program_job_reports_total{outcome=ok}"), 1.0);
    assert!(get(&m, "zone_program_jobs{state=done}") >= 1.0);
    assert_eq!(get(&m, "zone_program_jobs{state=queued}"), 0.0);
    assert_eq!(get(&m, "zone_program_job_oldest_queued_age_seconds{}"), 0.0);
    let cfg = &env.state.config.store;
    assert_eq!(get(&m, "zone_program_notify_max_entries{}"), cfg.max_notify_entries as f64);
    assert_eq!(get(&m, "zone_program_notify_max_data_bytes{}"), cfg.max_notify_bytes as f64);
    assert_eq!(get(&m, "zone_program_notify_entries{}"), 0.0);
    assert!(get(&m, "zone_program_open_connections{}") >= 1.0, "the scrape's own connection");
    // Every accepted request's nonce is live (the forged one and the 413 never reached the cache).
    assert_eq!(get(&m, "zone_program_replay_cache_entries{}"), 5.0);
    let capacity = env.state.config.sdk.local.nonce_cache_capacity as f64;
    assert_eq!(get(&m, "zone_program_replay_cache_capacity{}"), capacity);
    assert_eq!(get(&m, "zone_program_callbacks_answered_total{}"), 5.0);

    // deploy/monitoring uses only names the program exports (every family has samples by now).
    let exported: std::collections::HashSet<&str> = m.keys().map(|k| k.split('{').next().unwrap()).collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/monitoring");
    for file in ["alerts.yml", "dashboard.json"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut used = 0;
        for (i, _) in text.match_indices("zone_program_") {
            let name: String = text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let base = ["_bucket", "_count", "_sum"].iter().find_map(|x| name.strip_suffix(x)).unwrap_or(&name);
            let known = exported.contains(name.as_str()) || exported.iter().any(|e| e.starts_with(base));
            assert!(known, "{file} uses {name}, which /metrics does not export");
            used += 1;
        }
        assert!(used >= 10, "{file} uses the metrics");
    }
}
