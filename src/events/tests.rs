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
