//! `zone-program local-zone tail`: the console's timeline as a terminal stream. Polls
//! `GET /local/calls?since=N` and prints one line per interaction as it starts, one per step as it
//! happens, and one when the program answered.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

/// How often the zone is asked for changes.
const POLL: Duration = Duration::from_millis(300);

/// What has been printed of each interaction: (head printed, steps printed, answer printed).
#[derive(Debug, Default)]
pub struct Printed(HashMap<u64, (bool, usize, bool)>);

impl Printed {
    /// The lines to print for `calls` (as `/local/calls` returns them, newest first).
    pub fn lines(&mut self, calls: &[Value]) -> Vec<String> {
        let mut out = Vec::new();
        for c in calls.iter().rev() {
            let Some(id) = c["id"].as_u64() else { continue };
            let seen = self.0.entry(id).or_default();
            if !seen.0 {
                seen.0 = true;
                let what = if c["call_type"] == 2 {
                    format!("event {}", text(&c["title"]))
                } else {
                    let mode = if c["is_async"] == true { "async" } else { "sync" };
                    format!("{} {} ({mode})", text(&c["title"]), text(&c["ability_id"]))
                };
                out.push(format!("#{id} {} {what}", text(&c["origin"])));
            }
            let steps = c["steps"].as_array().map(Vec::as_slice).unwrap_or_default();
            for s in steps.iter().skip(seen.1) {
                out.push(format!("#{id}   {}", step(s)));
            }
            seen.1 = seen.1.max(steps.len());
            if !seen.2 && c["program"] != "pending" {
                seen.2 = true;
                let outcome = match c["program"].as_str() {
                    Some("failed") => format!("delivery failed: {}", text(&c["error"])),
                    _ => format!(
                        "program errcode {} in {:.1} ms",
                        c["errcode"].as_i64().map_or("-".into(), |e| e.to_string()),
                        c["latency_ms"].as_f64().unwrap_or_default()
                    ),
                };
                let app = c["app_errcode"].as_i64().map(|e| format!(" → app errcode {e}")).unwrap_or_default();
                out.push(format!("#{id}   {outcome}{app}"));
            }
        }
        out
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn step(s: &Value) -> String {
    match text(&s["kind"]) {
        "sdk" => {
            let fault = s["fault"].as_str().map(|f| format!(" (fault {f})")).unwrap_or_default();
            format!(
                "SDK {} → errcode {} in {:.1} ms{fault}",
                text(&s["api"]),
                s["errcode"],
                s["latency_ms"].as_f64().unwrap_or_default()
            )
        }
        "notify" => {
            let state = match s["delivered"].as_bool() {
                None => "kept in the outbox (no app callback URL)",
                Some(true) => "delivered to the app",
                Some(false) => "NOT delivered (is `app listen` running?)",
            };
            format!("program_notify {} → {state}", text(&s["notify_id"]))
        }
        "report" => format!("job reported errcode {}", s["errcode"]),
        "fetched" => format!("get_callback_data #{} fetched {}", s["by"], text(&s["notify_id"])),
        other => format!("{other}: {s}"),
    }
}

/// Streams the timeline of the zone at `zone_url` until interrupted. `from_start` prints what the
/// zone already holds; otherwise only what happens from now.
pub async fn run(zone_url: &str, from_start: bool) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let base = zone_url.trim_end_matches('/');
    let mut printed = Printed::default();
    let mut seq = 0u64;
    let mut first = true;
    loop {
        let reply: Value = http
            .get(format!("{base}/local/calls?since={seq}"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("GET {base}/local/calls (is the local zone running there? --url)"))?
            .json()
            .await
            .context("the reply of /local/calls is not JSON")?;
        let calls = reply["calls"].as_array().cloned().unwrap_or_default();
        if first && !from_start {
            printed.lines(&calls);
        } else {
            let mut out = std::io::stdout().lock();
            let written =
                printed.lines(&calls).iter().try_for_each(|line| writeln!(out, "{line}")).and_then(|()| out.flush());
            match written {
                // The reader went away (`… | head`): the stream ends quietly.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                other => other?,
            }
        }
        if first {
            eprintln!("tailing {base}/local/calls (Ctrl-C to stop)");
        }
        first = false;
        seq = reply["seq"].as_u64().unwrap_or(seq);
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_interaction_prints_its_head_each_step_once_and_its_answer() {
        let mut p = Printed::default();
        let pending = json!([{"id": 3, "origin": "app", "title": "sync_call_program", "ability_id": "invoke_sync_msg",
            "call_type": 1, "is_async": false, "program": "pending",
            "steps": [{"kind": "sdk", "api": "sync_msg", "errcode": 0, "latency_ms": 1.25, "fault": null}]}]);
        assert_eq!(
            p.lines(pending.as_array().unwrap()),
            ["#3 app sync_call_program invoke_sync_msg (sync)", "#3   SDK sync_msg → errcode 0 in 1.2 ms"]
        );
        let done = json!([{"id": 3, "origin": "app", "title": "sync_call_program", "ability_id": "invoke_sync_msg",
            "call_type": 1, "program": "ok", "errcode": 0, "latency_ms": 9.0, "app_errcode": 0,
            "steps": [{"kind": "sdk", "api": "sync_msg", "errcode": 0, "latency_ms": 1.25},
                      {"kind": "notify", "notify_id": "N1", "delivered": false}]}]);
        assert_eq!(
            p.lines(done.as_array().unwrap()),
            [
                "#3   program_notify N1 → NOT delivered (is `app listen` running?)",
                "#3   program errcode 0 in 9.0 ms → app errcode 0"
            ]
        );
        assert!(p.lines(done.as_array().unwrap()).is_empty(), "nothing twice");
    }
}
