//! The provider's ability and event handler against the local zone, offline, with the test kit.

use provider_ability::{HitSummary, RiskAlert};
use serde_json::{Value, json};
use zone_program::Program;
use zone_testkit::TestZone;

/// The stock program with this crate's parts, as `src/main.rs` builds it.
async fn zone() -> TestZone {
    TestZone::with_program(|config| Program::stock(config).ability(RiskAlert).event_handler("hit_keyword", HitSummary))
        .await
}

/// A customer and the staff member who follows them (seeded by the local zone).
async fn pair(zone: &TestZone) -> (String, String) {
    let world = zone.world().await;
    let c = &world["customers"][0];
    (c["external_userid"].as_str().unwrap().to_owned(), c["follower"].as_str().unwrap().to_owned())
}

const ANGRY: &str = "我要退款，太失望了，我要投诉";
const HAPPY: &str = "谢谢，服务很好";

#[tokio::test]
async fn risk_alert_answers_counts_and_ids_never_text() {
    let zone = zone().await;
    let (customer, staff) = pair(&zone).await;
    let angry = zone.post_message(json!({"sender": customer, "receivers": [staff], "content": ANGRY})).await;
    let happy = zone.post_message(json!({"sender": staff, "receivers": [customer], "content": HAPPY})).await;
    assert_eq!(angry["hit_keyword"], true, "the refund rule matches: {angry}");
    // A range ending now is read from the message index while it is fresh; a message newer than
    // the index comes with its own event (docs/protocol.md), so let both events' pulls finish.
    zone.settle_jobs().await;
    let range = json!({
        "participants": [customer, staff],
        "start_time": angry["send_time"].as_i64().unwrap() - 1,
        "end_time": happy["send_time"].as_i64().unwrap() + 1,
    });

    for alert in [zone.call_ability("risk_alert", &range).await, zone.call_ability_async("risk_alert", &range).await] {
        assert_eq!(alert["errcode"], 0, "{alert}");
        assert_eq!(alert["risk"], "high", "{alert}");
        let listed = alert["message_count"].as_u64().unwrap();
        assert!(listed >= 2, "{alert}");
        assert!(ids(&alert["negative"]["msgids"]).contains(&angry["msgid"]), "{alert}");
        assert!(!ids(&alert["negative"]["msgids"]).contains(&happy["msgid"]), "{alert}");
        assert!(ids(&alert["keyword_hits"]["msgids"]).contains(&angry["msgid"]), "{alert}");
        assert!(ids(&alert["keyword_hits"]["rule_ids"]).contains(&json!("rule_refund")), "{alert}");
        let text = alert.to_string();
        assert!(!text.contains("退款") && !text.contains("谢谢"), "no content leaves the zone: {text}");
    }
}

#[tokio::test]
async fn risk_alert_refuses_bad_input_with_the_framework_codes() {
    let zone = zone().await;
    let both = zone.app_call("risk_alert", r#"{"chatid":"wr1","participants":["a","b"]}"#, None).await;
    let unknown = zone.app_call("risk_alert", r#"{"chatid":"wr1","text":"x"}"#, None).await;
    for reply in [both, unknown] {
        let output: Value = serde_json::from_str(reply["response_data"].as_str().unwrap()).unwrap();
        assert_eq!(output["errcode"], 900_001, "{output}");
    }
}

#[tokio::test]
async fn a_keyword_hit_is_summarised_for_the_app_without_content() {
    let zone = zone().await;
    let (customer, staff) = pair(&zone).await;
    let angry = zone.post_message(json!({"sender": customer, "receivers": [staff], "content": ANGRY})).await;
    // The stock handler notifies the new message (scene 1); this crate's handler the hit (scene 2).
    let mut scenes = Vec::new();
    let hit = loop {
        let n = zone.next_notify().await;
        scenes.push(n.notify_scene);
        if n.notify_scene == Some(2) {
            break n;
        }
        assert!(scenes.len() < 3, "no hit summary among {scenes:?}");
    };
    let summary = zone.get_callback_data(&hit.notify_id).await;
    assert_eq!(summary["event_type"], "hit_keyword", "{summary}");
    assert!(summary["hit_count"].as_u64().unwrap() >= 1, "{summary}");
    assert!(ids(&summary["msgids"]).contains(&angry["msgid"]), "{summary}");
    assert!(summary["rules"].as_array().unwrap().iter().any(|r| r["rule_id"] == "rule_refund"), "{summary}");
    assert!(!summary.to_string().contains("退款"), "no content in the summary: {summary}");
    // Taken once.
    let again = zone.app_call("get_callback_data", "{}", Some(&hit.notify_id)).await;
    let again: Value = serde_json::from_str(again["response_data"].as_str().unwrap()).unwrap();
    assert_eq!(again["errcode"], 900_006, "{again}");
    zone.settle_jobs().await;
}

fn ids(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}
