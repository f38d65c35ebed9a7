//! Event parsing, scenes and dedupe keys.

use proptest::prelude::*;

use super::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

#[test]
fn every_documented_example_parses_to_its_type_and_follow_up() {
    let cases = [
        (
            r#"{"event_type":"conversation_new_message","timestamp":1408091189,"conversation_new_message":{"token":"ENC"}}"#,
            EventType::ConversationNewMessage,
            FollowUp::SyncMsg { token: Some("ENC".into()) },
        ),
        (
            r#"{"event_type":"hit_keyword","timestamp":1408091189,"hit_keyword":{"token":"xxx"}}"#,
            EventType::HitKeyword,
            FollowUp::HitMsgList { token: Some("xxx".into()) },
        ),
        (
            r#"{"event_type":"chat_archive_audit_approved_single","timestamp":1,"chat_archive_audit_approved":{"userid":"zhangsan","external_userid":"wmX"}}"#,
            EventType::AuditApprovedSingle,
            FollowUp::AgreeSingle { userid: "zhangsan".into(), external_userid: "wmX".into() },
        ),
        (
            r#"{"event_type":"chat_archive_audit_approved_room","timestamp":1,"chat_archive_audit_approved":{"external_userid":"wmX","chatid":"wrX"}}"#,
            EventType::AuditApprovedRoom,
            FollowUp::AgreeRoom { chatid: "wrX".into() },
        ),
        (
            r#"{"event_type":"auth_knowledge_base","timestamp":1,"auth_knowledge_base":{"knowledge_base_id":"KB1","knowledge_base_name":"FAQ"}}"#,
            EventType::AuthKnowledgeBase,
            FollowUp::None,
        ),
        (
            r#"{"event_type":"unauth_knowledge_base","timestamp":1,"unauth_knowledge_base":{"knowledge_base_id":"KB1"}}"#,
            EventType::UnauthKnowledgeBase,
            FollowUp::None,
        ),
        (
            r#"{"event_type":"delete_knowledge_base","timestamp":1,"delete_knowledge_base":{"knowledge_base_id":"KB1"}}"#,
            EventType::DeleteKnowledgeBase,
            FollowUp::None,
        ),
        (
            r#"{"event_type":"knowledge_base_learn_done","timestamp":1,"knowledge_base_learn_done":{"knowledge_base_id":"KB1","doc_id":1,"learn_status":0}}"#,
            EventType::KnowledgeBaseLearnDone,
            FollowUp::None,
        ),
        (
            r#"{"event_type":"chat_archive_export_finished","timestamp":1,"chat_archive_export_finished":{"jobid":"JOBID"}}"#,
            EventType::ChatArchiveExportFinished,
            FollowUp::ExportStatus { jobid: "JOBID".into() },
        ),
        (r#"{"event_type":"something_new","timestamp":1}"#, EventType::Other, FollowUp::None),
    ];
    for (json, kind, follow_up) in cases {
        let e = parse(json, 4096).unwrap();
        assert_eq!((e.kind, &e.follow_up), (kind, &follow_up), "{json}");
    }
}

#[test]
fn scenes_are_distinct_and_names_round_trip() {
    let mut scenes: Vec<u8> = EventType::ALL.iter().map(|t| t.scene()).collect();
    scenes.sort_unstable();
    scenes.dedup();
    assert_eq!(scenes.len(), EventType::ALL.len());
    for t in EventType::ALL.iter().filter(|t| **t != EventType::Other) {
        assert_eq!(EventType::parse(t.name()), *t);
    }
}

#[test]
fn an_oversize_token_or_jobid_is_not_used_for_the_follow_up() {
    let long = "t".repeat(129);
    let e = parse(
        &format!(r#"{{"event_type":"conversation_new_message","conversation_new_message":{{"token":"{long}"}}}}"#),
        4096,
    )
    .unwrap();
    assert_eq!(e.follow_up, FollowUp::SyncMsg { token: None });
    let e = parse(
        &format!(
            r#"{{"event_type":"chat_archive_export_finished","chat_archive_export_finished":{{"jobid":"{}"}}}}"#,
            "j".repeat(65)
        ),
        4096,
    )
    .unwrap();
    assert_eq!(e.follow_up, FollowUp::None);
}

#[test]
fn bodies_without_an_event_type_are_refused() {
    for bad in ["", "[]", "{}", r#"{"event_type":1}"#, r#"{"event_type":""}"#, "not json"] {
        assert_eq!(parse(bad, 4096).unwrap_err().code(), crate::error::ErrorCode::InvalidInput, "{bad}");
    }
    assert_eq!(parse(&"x".repeat(10), 5).unwrap_err().code(), crate::error::ErrorCode::InputTooLarge);
}

#[test]
fn the_dedupe_key_ignores_key_order_and_separates_corps_and_parts() {
    let a = parse(r#"{"event_type":"hit_keyword","timestamp":1,"hit_keyword":{"token":"T"}}"#, 4096).unwrap();
    let b = parse(r#"{"hit_keyword":{"token":"T"},"timestamp":1,"event_type":"hit_keyword"}"#, 4096).unwrap();
    assert_eq!(dedupe_key("c", &a.raw, 0), dedupe_key("c", &b.raw, 0));
    assert_ne!(dedupe_key("c", &a.raw, 0), dedupe_key("d", &a.raw, 0));
    assert_ne!(dedupe_key("c", &a.raw, 0), dedupe_key("c", &a.raw, 1));
    let later = parse(r#"{"event_type":"hit_keyword","timestamp":2,"hit_keyword":{"token":"T"}}"#, 4096).unwrap();
    assert_ne!(dedupe_key("c", &a.raw, 0), dedupe_key("c", &later.raw, 0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn parsing_arbitrary_text_never_panics(s in "\\PC{0,300}") {
        let _ = parse(&s, 4096);
    }

    #[test]
    fn any_event_object_with_a_type_parses(t in "[a-z_]{1,40}", token in "[A-Za-z0-9]{0,200}", ts in any::<i64>()) {
        let body = json!({"event_type": t, "timestamp": ts, "conversation_new_message": {"token": token}, "hit_keyword": {"token": token}});
        let e = parse(&body.to_string(), 1 << 20).unwrap();
        prop_assert_eq!(e.raw.get("timestamp"), Some(&json!(ts)));
        if let FollowUp::SyncMsg { token: Some(t) } | FollowUp::HitMsgList { token: Some(t) } = &e.follow_up {
            prop_assert!(t.len() <= MAX_TOKEN_BYTES && !t.is_empty());
        }
    }
}

/// Follow-up jobs against an in-process double of the SDK that pages a listing two items at a time
/// and fails chosen APIs on demand.
mod follow_ups {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::app::{App, AppState};
    use crate::config::Config;
    use crate::jobs::JobRunner;
    use crate::sdk::{CallContext, CallType, DecodeError, Decoded, SdkError, ZoneSdk};
    use crate::store::NotifyId;

    const CORP: &str = "corp1";

    #[derive(Default)]
    struct Double {
        items: usize,
        /// api → (calls that still succeed first, then calls that fail).
        failures: Mutex<HashMap<String, (u32, u32)>>,
        calls: Mutex<Vec<(String, Value)>>,
        /// Ids this double's `GenerateNotifyId` hands out, in order (none: not a native backend).
        native_ids: Mutex<Vec<String>>,
        /// A notify id `spec_notify_app` answers instead of the one it was given.
        answered_notify_id: Mutex<Option<String>>,
    }

    impl Double {
        fn with_items(items: usize) -> Arc<Self> {
            Arc::new(Self { items, ..Self::default() })
        }

        fn fail(&self, api: &str, times: u32) {
            self.fail_after(api, 0, times);
        }

        fn fail_after(&self, api: &str, successes: u32, times: u32) {
            self.failures.lock().unwrap().insert(api.into(), (successes, times));
        }

        fn calls(&self, api: &str) -> Vec<Value> {
            self.calls.lock().unwrap().iter().filter(|(a, _)| a == api).map(|(_, r)| r.clone()).collect()
        }
    }

    #[async_trait]
    impl ZoneSdk for Double {
        fn decode(&self, _: &str, _: &[(String, String)], _: &[u8]) -> Result<Decoded, DecodeError> {
            Err(DecodeError { code: -1, reply: None })
        }
        async fn invoke(&self, ctx: &CallContext, api: &str, request: &str) -> Result<String, SdkError> {
            assert_eq!(ctx.corp_id, CORP);
            let request: Value = serde_json::from_str(request).unwrap();
            self.calls.lock().unwrap().push((api.to_owned(), request.clone()));
            if let Some((pass, fail)) = self.failures.lock().unwrap().get_mut(api) {
                if *pass > 0 {
                    *pass -= 1;
                } else if *fail > 0 {
                    *fail -= 1;
                    return Err(SdkError::Invoke { api: api.into(), ret: -10006 });
                }
            }
            let reply = match api {
                "sync_msg" | "get_hit_msg_list" => {
                    let from: usize = request["cursor"].as_str().map_or(0, |c| c[1..].parse().unwrap());
                    let to = (from + 2).min(self.items);
                    let list: Vec<Value> =
                        (from..to).map(|i| json!({"msgid": format!("m{i}"), "send_time": i})).collect();
                    json!({"errcode":0,"errmsg":"ok","has_more": i32::from(to < self.items),"next_cursor": format!("c{to}"),"msg_list": list})
                }
                "get_agree_status_room" => {
                    json!({"errcode":0,"errmsg":"ok","agreeinfo":[{"external_userid":"wm1","agree_status":"Agree"}]})
                }
                "get_chatdata_export_job_status" => {
                    json!({"errcode":0,"errmsg":"ok","status":3,"result_errcode":0,"result_id":"RID"})
                }
                "spec_notify_app" => {
                    let answered = self.answered_notify_id.lock().unwrap().clone();
                    json!({"errcode":0,"errmsg":"ok","notify_id": answered.map_or(request["notify_id"].clone(), Value::from)})
                }
                other => panic!("unexpected api {other}"),
            };
            Ok(reply.to_string())
        }
        fn native_notify_ids(&self) -> bool {
            !self.native_ids.lock().unwrap().is_empty()
        }
        fn generate_notify_id(&self) -> Result<String, SdkError> {
            Ok(self.native_ids.lock().unwrap().remove(0))
        }
    }

    #[tokio::test]
    async fn the_sdks_generate_notify_id_names_the_data_and_an_unusable_one_is_replaced() {
        let sdk = Double::with_items(1);
        *sdk.native_ids.lock().unwrap() = vec!["SdkNotifyId0001".into(), "x".repeat(65), "unused".into()];
        let (_dir, state) = state(sdk.clone(), 5).await;
        accept(&state, &event_callback(new_message("T1"))).await.unwrap();
        drive(&state).await;
        accept(&state, &event_callback(new_message("T2"))).await.unwrap();
        drive(&state).await;
        let notifies = sdk.calls("spec_notify_app");
        assert_eq!(notifies[0]["notify_id"], "SdkNotifyId0001", "the SDK's id is used as is");
        assert_eq!(take(&state, &notifies[0]).await["conversation_new_message"]["token"], "T1");
        let second = notifies[1]["notify_id"].as_str().unwrap();
        assert_eq!(second.len(), 32, "a 65-byte id is over spec_notify_app's 64: a random one instead");
        assert_eq!(take(&state, &notifies[1]).await["conversation_new_message"]["token"], "T2");
    }

    /// Issue 18: `spec_notify_app` answering another notify_id than the one sent means the app will
    /// ask for data the store does not hold under that id; it is logged as an error, naming both ids
    /// (ids, not content), and the data stays under the id the program chose.
    #[tokio::test]
    async fn a_notify_id_answered_other_than_sent_is_logged_with_both_ids() {
        let (lines, _default) = crate::telemetry::capture::capture();

        let sdk = Double::with_items(1);
        *sdk.answered_notify_id.lock().unwrap() = Some("OtherNotifyId".into());
        let (_dir, state) = state(sdk.clone(), 5).await;
        accept(&state, &event_callback(new_message("T1"))).await.unwrap();
        drive(&state).await;
        let notifies = sdk.calls("spec_notify_app");
        assert_eq!(notifies.len(), 1);
        let sent = notifies[0]["notify_id"].as_str().unwrap().to_owned();
        let text = lines.text();
        let line = text
            .lines()
            .find(|l| l.contains("spec_notify_app answered another notify_id"))
            .unwrap_or_else(|| panic!("no error line in:\n{text}"));
        assert!(line.contains("ERROR"), "{line}");
        assert!(
            line.contains(&format!("notify_id.sent=\"{sent}\""))
                && line.contains("notify_id.answered=\"OtherNotifyId\""),
            "{line}"
        );
        assert_eq!(
            take(&state, &notifies[0]).await["conversation_new_message"]["token"],
            "T1",
            "kept under the sent id"
        );

        // The same id answered back (or none) is no error.
        *sdk.answered_notify_id.lock().unwrap() = None;
        accept(&state, &event_callback(new_message("T2"))).await.unwrap();
        drive(&state).await;
        let text = lines.text();
        assert_eq!(text.matches("spec_notify_app answered another notify_id").count(), 1, "{text}");
    }

    async fn state(sdk: Arc<Double>, max_runs: u32) -> (tempfile::TempDir, AppState) {
        state_with(sdk, max_runs, |_| {}).await
    }

    async fn state_with(
        sdk: Arc<Double>,
        max_runs: u32,
        tweak: impl FnOnce(&mut Config),
    ) -> (tempfile::TempDir, AppState) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::load(None, Vec::new()).unwrap();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.store.path = dir.path().join("s.sqlite");
        config.jobs.report_backoff_ms = 1;
        config.jobs.max_runs = max_runs;
        tweak(&mut config);
        let app = App::build_with_sdk(config, sdk).await.unwrap();
        (dir, app.state().clone())
    }

    fn event_callback(data: Value) -> Callback {
        Callback {
            corp_id: CORP.into(),
            agent_id: 1,
            call_type: CallType::Event,
            is_async: false,
            job_info: String::new(),
            ability_id: String::new(),
            notify_id: String::new(),
            data: data.to_string(),
        }
    }

    /// Runs jobs until none is unfinished (retries are due after a millisecond).
    async fn drive(state: &AppState) {
        let runner: Arc<dyn JobRunner> = crate::jobs::runner::Runner::new(state.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            state.jobs.run_until_empty(&runner).await.unwrap();
            if state.jobs.counts().await.unwrap().unfinished() == 0 {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "jobs did not finish");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn take(state: &AppState, notify: &Value) -> Value {
        let id = NotifyId::parse(notify["notify_id"].as_str().unwrap()).unwrap();
        let data = state.store.take_notify(CORP, &id).await.unwrap().unwrap();
        serde_json::from_str(&data).unwrap()
    }

    fn new_message(token: &str) -> Value {
        json!({"event_type":"conversation_new_message","timestamp":1,"conversation_new_message":{"token":token}})
    }

    #[tokio::test]
    async fn a_new_message_event_pulls_every_page_with_its_token_and_notifies_once_despite_redelivery() {
        let sdk = Double::with_items(5);
        let (_dir, state) = state(sdk.clone(), 5).await;
        for _ in 0..2 {
            let ack = accept(&state, &event_callback(new_message("TOK"))).await.unwrap();
            assert_eq!(ack, json!({"errcode":0,"errmsg":"ok"}));
        }
        drive(&state).await;
        let pulls = sdk.calls("sync_msg");
        assert_eq!(pulls.len(), 3);
        assert!(pulls.iter().all(|r| r["token"] == "TOK" && r["limit"] == 1000));
        assert!(pulls[0].get("cursor").is_none(), "no empty cursor is sent");
        let notifies = sdk.calls("spec_notify_app");
        assert_eq!(notifies.len(), 1, "a redelivered event does not notify twice");
        assert_eq!(notifies[0]["notify_scene"], 1);
        let data = take(&state, &notifies[0]).await;
        assert_eq!(data["event_type"], "conversation_new_message");
        assert_eq!(data["conversation_new_message"]["token"], "TOK");
        let ids: Vec<&str> =
            data["msg_list"].as_array().unwrap().iter().map(|m| m["msgid"].as_str().unwrap()).collect();
        assert_eq!(ids, ["m0", "m1", "m2", "m3", "m4"]);
        assert_eq!((data["has_more"].clone(), data["errcode"].clone()), (json!(0), json!(0)));
        assert_eq!(state.store.cursor(CORP, "sync_msg").await.unwrap().as_deref(), Some("c5"));
    }

    #[tokio::test]
    async fn a_failure_mid_listing_pulls_again_from_the_stored_cursor_and_delivers_each_message_once() {
        let sdk = Double::with_items(6);
        let (_dir, state) = state(sdk.clone(), 5).await;
        sdk.fail_after("sync_msg", 1, 1);
        accept(&state, &event_callback(new_message("T"))).await.unwrap();
        drive(&state).await;
        let cursors: Vec<Option<String>> =
            sdk.calls("sync_msg").iter().map(|r| r["cursor"].as_str().map(str::to_owned)).collect();
        // Nothing is stored (and no cursor moves) before the whole pull is: the retry starts over.
        assert_eq!(cursors, [None, Some("c2".into()), None, Some("c2".into()), Some("c4".into())]);
        let data = take(&state, &sdk.calls("spec_notify_app")[0]).await;
        let ids: Vec<&str> =
            data["msg_list"].as_array().unwrap().iter().map(|m| m["msgid"].as_str().unwrap()).collect();
        assert_eq!(ids, ["m0", "m1", "m2", "m3", "m4", "m5"], "no page lost, none repeated");
    }

    #[tokio::test]
    async fn a_second_event_continues_from_the_stored_cursor() {
        let sdk = Double::with_items(3);
        let (_dir, state) = state(sdk.clone(), 5).await;
        accept(&state, &event_callback(new_message("T1"))).await.unwrap();
        drive(&state).await;
        accept(&state, &event_callback(new_message("T2"))).await.unwrap();
        drive(&state).await;
        let last = sdk.calls("sync_msg").pop().unwrap();
        assert_eq!((last["cursor"].clone(), last["token"].clone()), (json!("c3"), json!("T2")));
        let second = take(&state, &sdk.calls("spec_notify_app")[1]).await;
        assert_eq!(second["msg_list"], json!([]));
    }

    #[tokio::test]
    async fn a_failed_notify_is_retried_without_pulling_or_storing_again() {
        let sdk = Double::with_items(1);
        let (_dir, state) = state(sdk.clone(), 5).await;
        sdk.fail("spec_notify_app", 2);
        accept(&state, &event_callback(new_message("T"))).await.unwrap();
        drive(&state).await;
        assert_eq!(sdk.calls("sync_msg").len(), 1);
        let notifies = sdk.calls("spec_notify_app");
        assert_eq!(notifies.len(), 3);
        assert!(notifies.iter().all(|n| n["notify_id"] == notifies[0]["notify_id"]), "the same notify_id each time");
        assert_eq!(state.store.notify_stats().await.unwrap().live, 1);
    }

    #[tokio::test]
    async fn more_than_ten_pages_continue_in_a_second_part_with_its_own_notify() {
        let sdk = Double::with_items(23);
        let (_dir, state) = state(sdk.clone(), 5).await;
        accept(&state, &event_callback(new_message("T"))).await.unwrap();
        drive(&state).await;
        let notifies = sdk.calls("spec_notify_app");
        assert_eq!(notifies.len(), 2);
        let first = take(&state, &notifies[0]).await;
        let second = take(&state, &notifies[1]).await;
        assert_eq!((first["part"].clone(), first["has_more"].clone()), (json!(0), json!(1)));
        assert_eq!(first["msg_list"].as_array().unwrap().len(), 20);
        assert_eq!((second["part"].clone(), second["has_more"].clone()), (json!(1), json!(0)));
        assert_eq!(second["msg_list"][0]["msgid"], "m20");
    }

    #[tokio::test]
    async fn a_follow_up_that_keeps_failing_is_delivered_without_its_data_on_the_last_run() {
        let sdk = Double::with_items(1);
        let (_dir, state) = state(sdk.clone(), 2).await;
        sdk.fail("get_chatdata_export_job_status", 100);
        let export = json!({"event_type":"chat_archive_export_finished","timestamp":1,"chat_archive_export_finished":{"jobid":"J"}});
        accept(&state, &event_callback(export)).await.unwrap();
        drive(&state).await;
        assert_eq!(sdk.calls("get_chatdata_export_job_status").len(), 2);
        let data = take(&state, &sdk.calls("spec_notify_app")[0]).await;
        assert_eq!(data["follow_up_errcode"], 900_101);
        assert_eq!(data["chat_archive_export_finished"]["jobid"], "J");
        assert!(data.get("export_job").is_none());
    }

    #[tokio::test]
    async fn pages_pulled_before_a_lasting_failure_are_delivered_without_a_further_part() {
        let sdk = Double::with_items(6);
        let (_dir, state) = state(sdk.clone(), 1).await;
        sdk.fail_after("sync_msg", 1, 100);
        accept(&state, &event_callback(new_message("T"))).await.unwrap();
        drive(&state).await;
        let notifies = sdk.calls("spec_notify_app");
        assert_eq!(notifies.len(), 1, "no continuation part after a failed listing");
        let data = take(&state, &notifies[0]).await;
        assert_eq!(data["msg_list"].as_array().unwrap().len(), 2, "the page pulled before the failure");
        assert_eq!((data["has_more"].clone(), data["follow_up_errcode"].clone()), (json!(1), json!(900_101)));
        assert_eq!(state.store.cursor(CORP, "sync_msg").await.unwrap().as_deref(), Some("c2"));
    }

    #[tokio::test]
    async fn a_full_store_keeps_the_messages_behind_the_cursor_and_delivers_them_once_there_is_room() {
        let sdk = Double::with_items(3);
        let (_dir, state) = state_with(sdk.clone(), 2, |c| c.store.max_notify_entries = 1).await;
        accept(&state, &event_callback(new_message("T"))).await.unwrap();
        // Something else takes the only slot before the job stores.
        let filler = NotifyId::generate();
        let entry = crate::store::NotifyEntry { notify_id: filler.clone(), corp_id: CORP.into(), data: "{}".into() };
        state.store.put_notify(entry).await.unwrap();
        let runner: Arc<dyn JobRunner> = crate::jobs::runner::Runner::new(state.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while sdk.calls("sync_msg").len() < 5 {
            state.jobs.run_until_empty(&runner).await.unwrap();
            assert!(tokio::time::Instant::now() < deadline, "the job was not tried again");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let counts = state.jobs.counts().await.unwrap();
        assert_eq!((counts.unfinished(), counts.failed), (1, 0), "waiting is not failing (max_runs is 2): {counts:?}");
        assert_eq!(state.store.cursor(CORP, "sync_msg").await.unwrap(), None, "the cursor did not move");
        assert!(sdk.calls("spec_notify_app").is_empty());
        state.store.take_notify(CORP, &filler).await.unwrap().unwrap();
        drive(&state).await;
        let notifies = sdk.calls("spec_notify_app");
        assert_eq!(notifies.len(), 1);
        let data = take(&state, &notifies[0]).await;
        let ids: Vec<&str> =
            data["msg_list"].as_array().unwrap().iter().map(|m| m["msgid"].as_str().unwrap()).collect();
        assert_eq!(ids, ["m0", "m1", "m2"]);
        assert_eq!(state.store.cursor(CORP, "sync_msg").await.unwrap().as_deref(), Some("c3"));
        assert_eq!(state.jobs.counts().await.unwrap().failed, 0);
    }

    #[tokio::test]
    async fn consent_and_export_events_carry_their_follow_up_and_scene() {
        let sdk = Double::with_items(0);
        let (_dir, state) = state(sdk.clone(), 5).await;
        let room = json!({"event_type":"chat_archive_audit_approved_room","timestamp":1,
                          "chat_archive_audit_approved":{"external_userid":"wm1","chatid":"wr1"}});
        let export = json!({"event_type":"chat_archive_export_finished","timestamp":1,"chat_archive_export_finished":{"jobid":"J"}});
        accept(&state, &event_callback(room)).await.unwrap();
        accept(&state, &event_callback(export)).await.unwrap();
        drive(&state).await;
        assert_eq!(sdk.calls("get_agree_status_room")[0], json!({"chatid":"wr1"}));
        let notifies = sdk.calls("spec_notify_app");
        let mut by_scene = HashMap::new();
        for n in &notifies {
            by_scene.insert(n["notify_scene"].as_i64().unwrap(), take(&state, n).await);
        }
        assert_eq!(by_scene[&4]["agreeinfo"][0]["agree_status"], "Agree");
        assert_eq!(by_scene[&9]["export_job"], json!({"status":3,"result_errcode":0,"result_id":"RID"}));
    }

    #[tokio::test]
    async fn a_bad_event_is_refused_and_records_nothing() {
        let sdk = Double::with_items(0);
        let (_dir, state) = state(sdk, 5).await;
        let before = state.store.fingerprint().await.unwrap();
        let mut cb = event_callback(json!({}));
        cb.data = "{not json".into();
        assert_eq!(accept(&state, &cb).await.unwrap_err().code(), crate::error::ErrorCode::InvalidInput);
        assert_eq!(state.store.fingerprint().await.unwrap(), before);
    }
}
