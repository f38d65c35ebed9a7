//! The local zone's data APIs through the program's SDK backend: group chats, consent, the
//! hide-sensitive-info config, the three searches, keyword rules and hits, knowledge sets and exports.
//! For each: a valid call, a limit, and a documented error code.

use serde_json::{Value, json};

use crate::helpers::{TestEnv, poll};

fn chat<'a>(world: &'a Value, name: &str) -> &'a Value {
    world["chats"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

fn errcode(v: &Value) -> i64 {
    v["errcode"].as_i64().unwrap()
}

#[tokio::test]
async fn get_group_chat_serves_internal_groups_and_reports_an_expired_archive() {
    let env = TestEnv::spawn().await;
    let w = env.world().await;
    let internal = chat(&w, "产品讨论组");
    let reply = env.sdk("get_group_chat", json!({"chatid": internal["chatid"]})).await;
    assert_eq!(errcode(&reply), 0, "{reply}");
    let types: Vec<i64> = reply["members"].as_array().unwrap().iter().map(|m| m["type"].as_i64().unwrap()).collect();
    assert_eq!(types, [1, 1, 1, 3], "three staff and a robot");
    assert!(reply["room_create_time"].as_i64().unwrap() > 0 && reply.get("name").is_none());
    let expired = chat(&w, "产品年会筹备组");
    assert_eq!(errcode(&env.sdk("get_group_chat", json!({"chatid": expired["chatid"]})).await), 301_052);
    let customer_group = chat(&w, "VIP客户服务群");
    assert_eq!(errcode(&env.sdk("get_group_chat", json!({"chatid": customer_group["chatid"]})).await), 40058);
    assert_eq!(errcode(&env.sdk("get_group_chat", json!({})).await), 40058);
}

#[tokio::test]
async fn consent_status_is_reported_per_pair_and_per_group_and_changes_with_the_approval_event() {
    let env = TestEnv::spawn().await;
    let w = env.world().await;
    let c = &w["customers"];
    let pair = |i: usize| json!({"userid": c[i]["follower"], "external_userid": c[i]["external_userid"]});
    let reply = env.sdk("get_agree_status_single", json!({"item": [pair(0), pair(3)]})).await;
    let status: Vec<&str> =
        reply["agreeinfo"].as_array().unwrap().iter().map(|a| a["agree_status"].as_str().unwrap()).collect();
    assert_eq!(status, ["Agree", "Disagree"], "{reply}");
    let too_many: Vec<Value> = (0..101).map(|_| pair(0)).collect();
    assert_eq!(errcode(&env.sdk("get_agree_status_single", json!({"item": too_many})).await), 40058);
    let out_of_scope = json!({"userid": w["staff"][5]["userid"], "external_userid": c[5]["external_userid"]});
    assert_eq!(errcode(&env.sdk("get_agree_status_single", json!({"item": [out_of_scope]})).await), 40058);

    let ev = env
        .control(
            "events",
            json!({"event_type": "chat_archive_audit_approved_single",
                                          "userid": c[3]["follower"], "external_userid": c[3]["external_userid"]}),
        )
        .await;
    assert_eq!(ev["ack"]["errcode"], 0, "the program acknowledged the event: {ev}");
    let reply = env.sdk("get_agree_status_single", json!({"item": [pair(3)]})).await;
    assert_eq!(reply["agreeinfo"][0]["agree_status"], "Agree");

    let vip = chat(&w, "VIP客户服务群")["chatid"].clone();
    let room = env.sdk("get_agree_status_room", json!({"chatid": vip})).await;
    let statuses: Vec<&str> =
        room["agreeinfo"].as_array().unwrap().iter().map(|a| a["agree_status"].as_str().unwrap()).collect();
    assert_eq!(statuses.len(), 3, "{room}");
    assert!(statuses.contains(&"Disagree"));
    assert_eq!(errcode(&env.sdk("get_agree_status_room", json!({"chatid": "wrnope"})).await), 40058);
}

#[tokio::test]
async fn the_hide_sensitive_info_config_defaults_to_no_masking_and_keeps_what_is_set() {
    let env = TestEnv::spawn().await;
    let user = env.world().await["staff"][0]["userid"].clone();
    let get = env.sdk("get_hide_sensitiveinfo_config", json!({"userid": user})).await;
    assert_eq!(get["config"], json!({"hide_mobile": false, "hide_idcard": false, "hide_bankno": false}));
    let set = json!({"userid": user, "config": {"hide_idcard": true, "hide_bankno": true}});
    assert_eq!(errcode(&env.sdk("set_hide_sensitiveinfo_config", set).await), 0);
    let get = env.sdk("get_hide_sensitiveinfo_config", json!({"userid": user})).await;
    assert_eq!(get["config"], json!({"hide_mobile": false, "hide_idcard": true, "hide_bankno": true}));
    let bad = json!({"userid": user, "config": {"hide_mobile": "yes"}});
    assert_eq!(errcode(&env.sdk("set_hide_sensitiveinfo_config", bad).await), 40058);
    assert_eq!(env.sdk("get_hide_sensitiveinfo_config", json!({"userid": user})).await["config"]["hide_mobile"], false);
    assert_eq!(errcode(&env.sdk("get_hide_sensitiveinfo_config", json!({"userid": "wonobody"})).await), 40058);
}

#[tokio::test]
async fn search_chat_finds_named_groups_by_current_name_with_paging() {
    let env = TestEnv::spawn().await;
    let w = env.world().await;
    let vip = env.sdk("search_chat", json!({"query_word": "vip"})).await;
    assert_eq!(vip["chat_list"], json!([{"chatid": chat(&w, "VIP客户服务群")["chatid"]}]), "{vip}");
    let first = env.sdk("search_chat", json!({"query_word": "产品", "limit": 1})).await;
    assert_eq!((first["has_more"].as_i64(), first["chat_list"].as_array().unwrap().len()), (Some(1), 1), "{first}");
    let second =
        env.sdk("search_chat", json!({"query_word": "产品", "limit": 1, "cursor": first["next_cursor"]})).await;
    assert_ne!(second["chat_list"], first["chat_list"]);
    assert_eq!(second["has_more"], 0);
    assert_eq!(errcode(&env.sdk("search_chat", json!({"query_word": "V"})).await), 40058, "≥ 2 characters");
    assert_eq!(errcode(&env.sdk("search_chat", json!({"query_word": "VIP", "limit": 101})).await), 40058);
    let wrong_cursor = json!({"query_word": "VIP", "cursor": first["next_cursor"]});
    assert_eq!(errcode(&env.sdk("search_chat", wrong_cursor).await), 40058, "a cursor belongs to its query");
}

#[tokio::test]
async fn search_msg_matches_content_within_its_filters_and_range() {
    let env = TestEnv::spawn().await;
    let hits = env.sdk("search_msg", json!({"query_word": "退款", "limit": 100})).await;
    assert_eq!(errcode(&hits), 0, "{hits}");
    let n = hits["msg_list"].as_array().unwrap().len();
    assert!(n > 0 && hits["msg_list"][0].as_object().unwrap().len() == 1, "msgid only: {hits}");
    let files = env.sdk("search_msg", json!({"query_word": "报价单", "chat_info": {"msg_type_list": [8]}})).await;
    let texts = env.sdk("search_msg", json!({"query_word": "报价单", "chat_info": {"msg_type_list": [1]}})).await;
    assert!(!files["msg_list"].as_array().unwrap().is_empty() && !texts["msg_list"].as_array().unwrap().is_empty());
    assert_ne!(files["msg_list"], texts["msg_list"]);
    let now = env.control("clock/advance", json!({"secs": 0})).await["now"].as_i64().unwrap();
    for (bad, why) in [
        (json!({"query_word": "退款", "chat_info": {"msg_type_list": [2]}}), "voice is not searchable"),
        (json!({"query_word": "退款", "end_time": now}), "end_time needs start_time"),
        (json!({"query_word": "退款", "start_time": now - 32 * 86_400, "end_time": now}), "over 31 days"),
        (json!({"query_word": "退款", "start_time": now, "end_time": now - 1}), "start after end"),
        (
            json!({"query_word": "退款", "chat_info": {"chat_type": 1, "id_list": [{"open_userid": "wo1"}]}}),
            "1:1 needs 2 ids",
        ),
        (json!({"query_word": "退款", "chat_info": {"sender": {"external_userid": "wm1"}}}), "senders are staff"),
        (json!({"query_word": "退款", "limit": 101}), "limit ≤ 100"),
        (json!({"query_word": "退"}), "≥ 2 characters"),
    ] {
        assert_eq!(errcode(&env.sdk("search_msg", bad).await), 40058, "{why}");
    }
}

#[tokio::test]
async fn search_contact_or_customer_matches_names_and_pinyin_inside_the_scope() {
    let env = TestEnv::spawn().await;
    let w = env.world().await;
    let staff = env.sdk("search_contact_or_customer", json!({"query_word": "zhang", "query_user_type": 1})).await;
    assert_eq!(staff["user_list"], json!([{"type": 1, "id": w["staff"][0]["userid"]}]), "{staff}");
    let customers = env.sdk("search_contact_or_customer", json!({"query_word": "先生", "query_user_type": 2})).await;
    assert_eq!(customers["user_list"].as_array().unwrap().len(), 2, "{customers}");
    let hidden = env.sdk("search_contact_or_customer", json!({"query_word": "赵磊"})).await;
    assert_eq!(hidden["user_list"], json!([]), "staff outside the scope are not found");
    let long = "张".repeat(32);
    assert_eq!(errcode(&env.sdk("search_contact_or_customer", json!({"query_word": long})).await), 40058);
    let bad_type = json!({"query_word": "张伟", "query_user_type": 3});
    assert_eq!(errcode(&env.sdk("search_contact_or_customer", bad_type).await), 40058);
}

#[tokio::test]
async fn keyword_rules_are_created_listed_updated_and_deleted_within_their_limits() {
    let env = TestEnv::spawn().await;
    let rule = json!({"name": "已回复", "keyword": {"word_list": ["退货"], "match_rule": 0},
                      "semantics": {"semantics_list": [2]}, "applicable_range": {"target_type": {"type_list": [2]}}});
    let created = env.sdk("create_rule", rule).await;
    let id = created["rule_id"].as_str().unwrap().to_owned();
    let detail = env.sdk("get_rule_detail", json!({"rule_id": id})).await;
    assert_eq!((detail["name"].as_str(), detail["keyword"]["word_list"].clone()), (Some("已回复"), json!(["退货"])));
    let list = env.sdk("get_rule_list", json!({"limit": 2})).await;
    assert_eq!(list["has_more"], true, "a bool here: {list}");
    let rest = env.sdk("get_rule_list", json!({"limit": 2, "cursor": list["next_cursor"]})).await;
    assert_eq!(rest["has_more"], false);
    assert_eq!(list["rule_list"].as_array().unwrap().len() + rest["rule_list"].as_array().unwrap().len(), 3);

    let too_long = json!({"rule_id": id, "name": "名".repeat(21)});
    assert_eq!(errcode(&env.sdk("update_rule", too_long).await), 40058);
    assert_eq!(env.sdk("get_rule_detail", json!({"rule_id": id})).await["name"], "已回复", "unchanged");
    assert_eq!(errcode(&env.sdk("update_rule", json!({"rule_id": id, "name": "新名"})).await), 0);
    assert_eq!(env.sdk("get_rule_detail", json!({"rule_id": id})).await["name"], "新名");
    for bad in [
        json!({"name": "x", "keyword": {"word_list": (0..21).map(|i| format!("w{i}")).collect::<Vec<_>>()}}),
        json!({"name": "x", "keyword": {"word_list": ["w".repeat(33)]}}),
        json!({"name": "x"}),
        json!({"name": "x", "semantics": {"semantics_list": [1]}, "applicable_range": {"user": {"id_list": vec!["wo"; 1001]}}}),
        json!({"semantics": {"semantics_list": [1]}}),
    ] {
        assert_eq!(errcode(&env.sdk("create_rule", bad).await), 40058);
    }
    assert_eq!(errcode(&env.sdk("delete_rule", json!({"rule_id": id})).await), 0);
    assert_eq!(errcode(&env.sdk("get_rule_detail", json!({"rule_id": id})).await), 40058);
    assert_eq!(errcode(&env.sdk("delete_rule", json!({"rule_id": id})).await), 40058);
}

#[tokio::test]
async fn hits_are_listed_with_their_rules_and_a_new_hit_raises_hit_keyword_with_a_token() {
    let env = TestEnv::spawn().await;
    let all = env.sdk("get_hit_msg_list", json!({"limit": 1000})).await;
    let seeded = all["msg_list"].as_array().unwrap().len();
    assert!(seeded > 0, "{all}");
    let first = &all["msg_list"][0];
    assert!(first.get("msg_detail").is_none() && !first["hit_rule_list"].as_array().unwrap().is_empty());
    let page = env.sdk("get_hit_msg_list", json!({"limit": 2, "need_detail": 1})).await;
    assert_eq!(page["has_more"], 1);
    assert!(page["msg_list"][0]["msg_detail"]["service_encrypt_info"]["public_key_ver"] == 1);
    let w = env.world().await;
    let c = &w["customers"][0];
    let added = env
        .control(
            "messages",
            json!({"sender": c["external_userid"], "receivers": [c["follower"]], "content": "我要退款"}),
        )
        .await;
    assert_eq!(added["hit_keyword"], true, "{added}");
    assert_eq!(added["hit_event_ack"]["errcode"], 0);
    let new = env.sdk("get_hit_msg_list", json!({"token": added["hit_token"], "cursor": all["next_cursor"]})).await;
    assert_eq!(new["msg_list"].as_array().unwrap().len(), 1, "{new}");
    assert_eq!(new["msg_list"][0]["hit_rule_list"][0]["has_hit_keyword"], true);
    assert_eq!(errcode(&env.sdk("get_hit_msg_list", json!({"cursor": "c".repeat(65)})).await), 40058);
    assert_eq!(errcode(&env.sdk("get_hit_msg_list", json!({"limit": 1001})).await), 40058);
    assert_eq!(
        errcode(&env.sdk("get_hit_msg_list", json!({"token": added["token"]})).await),
        40058,
        "wrong token kind"
    );
    assert_eq!(errcode(&env.sdk("get_hit_msg_list", json!({"need_detail": 2})).await), 40058);
}

#[tokio::test]
async fn knowledge_sets_are_managed_within_their_limits_and_all_or_nothing() {
    let env = TestEnv::spawn().await;
    assert_eq!(env.sdk("knowledge_base_list", json!({})).await["kb_info_list"].as_array().unwrap().len(), 2);
    let docs = json!([{"doc_name": "客服问答.pdf", "type": 2, "file_media_id": "MEDIA"},
                      {"doc_name": "官网", "type": 101, "web_url": "https://example.com"}]);
    let created = env.sdk("knowledge_base_create", json!({"kb_name": "客服知识二", "doc_list": docs})).await;
    let kb = created["kb_id"].as_str().unwrap().to_owned();
    let ids: Vec<u64> = created["doc_list"].as_array().unwrap().iter().map(|d| d["docid"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    let added = env
        .sdk(
            "knowledge_base_add_doc",
            json!({"kb_id": kb, "doc_list": [{"doc_name": "a.docx", "type": 6, "file_media_id": "M"}]}),
        )
        .await;
    assert_eq!(added["doc_list"].as_array().unwrap().len(), 1);
    assert_eq!(
        errcode(&env.sdk("knowledge_base_remove_doc", json!({"kb_id": kb, "docid_list": [ids[0], 999_999]})).await),
        40058
    );
    assert_eq!(
        env.sdk("knowledge_base_detail", json!({"kb_id": kb})).await["doc_list"].as_array().unwrap().len(),
        3,
        "nothing removed"
    );
    assert_eq!(errcode(&env.sdk("knowledge_base_remove_doc", json!({"kb_id": kb, "docid_list": [ids[0]]})).await), 0);
    assert_eq!(
        errcode(&env.sdk("knowledge_base_modify_name", json!({"kb_id": kb, "kb_name": "名".repeat(21)})).await),
        40058
    );
    assert_eq!(errcode(&env.sdk("knowledge_base_modify_name", json!({"kb_id": kb, "kb_name": "新名字"})).await), 0);
    let detail = env.sdk("knowledge_base_detail", json!({"kb_id": kb})).await;
    assert_eq!((detail["kb_name"].as_str(), detail["doc_list"].as_array().unwrap().len()), (Some("新名字"), 2));
    for bad in [
        json!({"kb_name": "名".repeat(21), "doc_list": docs}),
        json!({"kb_name": "x", "doc_list": []}),
        json!({"kb_name": "x", "doc_list": [{"doc_name": "a.doc", "type": 2, "file_media_id": "M"}]}),
        json!({"kb_name": "x", "doc_list": [{"doc_name": "a", "type": 3, "file_media_id": "M"}]}),
        json!({"kb_name": "x", "doc_list": [{"doc_name": "a", "type": 101, "web_url": "ftp://x"}]}),
        json!({"kb_name": "x", "doc_list": [{"doc_name": "a.pdf", "type": 2}]}),
        json!({"kb_name": "x", "doc_list": vec![json!({"doc_name": "a.pdf", "type": 2, "file_media_id": "M"}); 1001]}),
    ] {
        assert_eq!(errcode(&env.sdk("knowledge_base_create", bad).await), 40058);
    }
    assert_eq!(env.sdk("knowledge_base_list", json!({})).await["kb_info_list"].as_array().unwrap().len(), 3);
    assert_eq!(errcode(&env.sdk("knowledge_base_delete", json!({"kb_id": kb})).await), 0);
    assert_eq!(errcode(&env.sdk("knowledge_base_detail", json!({"kb_id": kb})).await), 40058);
}

#[tokio::test]
async fn an_export_job_runs_until_finished_and_its_code_is_single_use() {
    let env = TestEnv::spawn_with(|c| c.local_zone.export_finish_after_ms = 0).await;
    let code = env.control("export_code", json!({})).await["code"].clone();
    let job = env.sdk("create_chatdata_export_job", json!({"code": code, "media_id": "TEMPLATE"})).await;
    let jobid = job["jobid"].as_str().unwrap().to_owned();
    assert!(jobid.len() <= 64);
    assert_eq!(errcode(&env.sdk("create_chatdata_export_job", json!({"code": code, "media_id": "T"})).await), 40058);
    let status = || env.sdk("get_chatdata_export_job_status", json!({"jobid": jobid}));
    assert_eq!(status().await["status"], 1);
    assert_eq!(status().await["status"], 2);
    let ev = env.control("events", json!({"event_type": "chat_archive_export_finished", "jobid": jobid})).await;
    assert_eq!(ev["ack"]["errcode"], 0, "{ev}");
    let done = status().await;
    assert_eq!((done["status"].as_i64(), done["result_errcode"].as_i64()), (Some(3), Some(0)));
    assert!(done["result_id"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(errcode(&env.sdk("get_chatdata_export_job_status", json!({"jobid": "EXPJOBnope"})).await), 40058);
    let stale = env.control("export_code", json!({})).await["code"].clone();
    env.control("clock/advance", json!({"secs": 301})).await;
    assert_eq!(errcode(&env.sdk("create_chatdata_export_job", json!({"code": stale, "media_id": "T"})).await), 40058);
    env.control("clock/advance", json!({"secs": 86_400})).await;
    assert_eq!(errcode(&status().await), 40058, "a jobid is valid 24 hours");
}

#[tokio::test]
async fn an_export_job_finishes_by_itself_after_the_configured_delay() {
    let env = TestEnv::spawn_with(|c| c.local_zone.export_finish_after_ms = 30).await;
    let code = env.control("export_code", json!({})).await["code"].clone();
    let jobid = env.sdk("create_chatdata_export_job", json!({"code": code, "media_id": "T"})).await["jobid"].clone();
    let done = poll(|| env.sdk("get_chatdata_export_job_status", json!({"jobid": jobid})), |v| v["status"] == 3).await;
    assert_eq!(done["result_errcode"], 0);
}

#[tokio::test]
async fn every_other_documented_event_reaches_the_program_and_changes_the_world() {
    let env = TestEnv::spawn().await;
    let w = env.world().await;
    let vip = chat(&w, "VIP客户服务群")["chatid"].clone();
    let kb = w["kb_ids"][0].clone();
    for event in [
        json!({"event_type": "chat_archive_audit_approved_room", "chatid": vip, "external_userid": w["customers"][1]["external_userid"]}),
        json!({"event_type": "hit_keyword"}),
        json!({"event_type": "auth_knowledge_base", "knowledge_base_id": "kbnew", "knowledge_base_name": "新知识"}),
        json!({"event_type": "knowledge_base_learn_done", "knowledge_base_id": kb, "doc_id": 1001}),
        json!({"event_type": "unauth_knowledge_base", "knowledge_base_id": "kbnew"}),
        json!({"event_type": "delete_knowledge_base", "knowledge_base_id": kb}),
    ] {
        let ev = env.control("events", event.clone()).await;
        assert_eq!((ev["errcode"].as_i64(), ev["ack"]["errcode"].as_i64()), (Some(0), Some(0)), "{event} → {ev}");
    }
    let room = env.sdk("get_agree_status_room", json!({"chatid": vip})).await;
    assert!(room["agreeinfo"].as_array().unwrap().iter().all(|a| a["agree_status"] == "Agree"), "{room}");
    assert_eq!(env.sdk("knowledge_base_list", json!({})).await["kb_info_list"].as_array().unwrap().len(), 1);
    assert_eq!(errcode(&env.control("events", json!({"event_type": "no_such_event"})).await), 40058);
    let bad_doc = json!({"event_type": "knowledge_base_learn_done", "knowledge_base_id": w["kb_ids"][1], "doc_id": 7});
    assert_eq!(errcode(&env.control("events", bad_doc).await), 40058);
}
