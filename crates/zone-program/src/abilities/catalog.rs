//! The SDK APIs of `protocol/sdk-data-apis.md` §0 and `protocol/sdk-model-apis.md` §0, each with
//! the request and response examples of its WeCom doc page. This one list is the `invoke_<api>`
//! whitelist and the source of the examples `list_abilities` shows; a test checks it against the
//! protocol files' inventory tables.

/// One SDK API and its documented examples.
#[derive(Debug, Clone, Copy)]
pub struct SdkApi {
    /// The `Invoke` name.
    pub name: &'static str,
    /// Where it is documented.
    pub doc: &'static str,
    /// A request, as JSON text.
    pub request: &'static str,
    /// A successful response, as JSON text.
    pub response: &'static str,
}

const fn api(name: &'static str, doc: &'static str, request: &'static str, response: &'static str) -> SdkApi {
    SdkApi { name, doc, request, response }
}

const MSG_ITEM: &str = r#"{"msgid":"M1","sender":{"type":1,"id":"wo1"},"receiver_list":[{"type":2,"id":"wm1"}],"chatid":"wr1","send_time":1700000000,"msgtype":1,"service_encrypt_info":{"encrypted_secret_key":"KEY","public_key_ver":1}}"#;
const OK: &str = r#"{"errcode":0,"errmsg":"ok"}"#;
const CREATED: &str = r#"{"errcode":0,"errmsg":"ok","jobid":"JOBID","fail_list":[{"errcode":710601,"errmsg":"x","msgid":"M1","encrypt_info":{"secret_key":"K1"}}]}"#;
const MSG_LIST_REQ: &str = r#"{"msg_list":[{"msgid":"M1","encrypt_info":{"secret_key":"K1"}}]}"#;
const JOBID_REQ: &str = r#"{"jobid":"JOBID"}"#;

/// Every SDK API a program may call through `invoke_<api>`, in protocol order. The own-model pair
/// appears under both names the sources use (`create_model_task` and the Java SDK's
/// `create_private_task`), and `knowledge_base_list` also under its old name `document_list`.
pub const SDK_APIS: &[SdkApi] = &[
    // sdk-data-apis.md §0
    api("program_async_job_call_back", "WeCom doc 100039", r#"{"errcode":0,"result":"{}"}"#, OK),
    api(
        "spec_notify_app",
        "WeCom doc 101383",
        r#"{"notify_id":"NID","notify_scene":1}"#,
        r#"{"errcode":0,"errmsg":"ok","notify_id":"NID"}"#,
    ),
    api(
        "sync_msg",
        "WeCom doc 101365",
        r#"{"cursor":"C","token":"T","limit":200,"mode":0,"begin_time":1700000000}"#,
        listings::SYNC_MSG_RSP,
    ),
    api("get_msg_list_by_page_id", "WeCom doc 101365", r#"{"page_id":"PAGEID"}"#, listings::PAGE_RSP),
    api(
        "get_group_chat",
        "WeCom doc 101367",
        r#"{"chatid":"wr1"}"#,
        r#"{"errcode":0,"errmsg":"ok","creator":"wo1","room_create_time":1592361604,"members":[{"memberid":"wo1","jointime":1592361605,"type":1}]}"#,
    ),
    api(
        "get_agree_status_single",
        "WeCom doc 101366",
        r#"{"item":[{"userid":"wo1","external_userid":"wm1"}]}"#,
        r#"{"errcode":0,"errmsg":"ok","agreeinfo":[{"status_change_time":1562766651,"userid":"wo1","external_userid":"wm1","agree_status":"Agree"}]}"#,
    ),
    api(
        "get_agree_status_room",
        "WeCom doc 101366",
        r#"{"chatid":"wr1"}"#,
        r#"{"errcode":0,"errmsg":"ok","agreeinfo":[{"status_change_time":1562766651,"external_userid":"wm1","agree_status":"Agree"}]}"#,
    ),
    api(
        "set_hide_sensitiveinfo_config",
        "WeCom doc 100055",
        r#"{"userid":"wo1","config":{"hide_mobile":false,"hide_idcard":true,"hide_bankno":true}}"#,
        OK,
    ),
    api(
        "get_hide_sensitiveinfo_config",
        "WeCom doc 100055",
        r#"{"userid":"wo1"}"#,
        r#"{"errcode":0,"errmsg":"ok","config":{"hide_mobile":false,"hide_idcard":true,"hide_bankno":true}}"#,
    ),
    api(
        "search_chat",
        "WeCom doc 101368",
        r#"{"query_word":"VIP","limit":50,"cursor":""}"#,
        r#"{"errcode":0,"errmsg":"ok","has_more":0,"next_cursor":"","chat_list":[{"chatid":"wr1"}]}"#,
    ),
    api(
        "search_msg",
        "WeCom doc 99818",
        r#"{"query_word":"欢迎","chat_info":{"chat_type":2,"id_list":[{"open_userid":"wo1","external_userid":"wm1"}],"chat_id":"wr1","msg_type_list":[1],"sender":{"open_userid":"wo1"},"sender_list":[{"open_userid":"wo1"}]},"start_time":1668355200,"end_time":1668528000,"skip_stop_words":true,"limit":50,"cursor":""}"#,
        r#"{"errcode":0,"errmsg":"ok","has_more":0,"next_cursor":"","msg_list":[{"msgid":"M1"}]}"#,
    ),
    api(
        "search_contact_or_customer",
        "WeCom doc 101370",
        r#"{"query_word":"张三","query_user_type":1,"limit":50,"cursor":""}"#,
        r#"{"errcode":0,"errmsg":"ok","has_more":0,"next_cursor":"","user_list":[{"type":1,"id":"wo1"}]}"#,
    ),
    api(
        "create_rule",
        "WeCom doc 99829",
        r#"{"name":"refund","keyword":{"word_list":["退款"],"is_case_sensitive":0,"match_rule":0,"is_trim_msg":0},"semantics":{"semantics_list":[2]},"applicable_range":{"target_type":{"type_list":[2]},"chat_type":{"type_list":[1,2]},"department":{"id_list":[1]},"user":{"id_list":["wo1"]},"external_contact":{"id_list":["wm1"]},"chat":{"id_list":["wr1"]},"exclude_mobile":{"mobile_list":["13800000000"]},"exclude_email":{"email_list":["a@example.com"]},"exclude_bank_card":{"bank_card_list":["6222000000000000"]}}}"#,
        r#"{"errcode":0,"errmsg":"ok","rule_id":"R1"}"#,
    ),
    api(
        "get_rule_list",
        "WeCom doc 99829",
        r#"{"cursor":"","limit":100}"#,
        r#"{"errcode":0,"errmsg":"ok","rule_list":[{"rule_id":"R1","name":"refund","create_time":1700000000}],"has_more":false,"next_cursor":""}"#,
    ),
    api(
        "get_rule_detail",
        "WeCom doc 99829",
        r#"{"rule_id":"R1"}"#,
        r#"{"errcode":0,"errmsg":"ok","name":"refund","keyword":{"word_list":["退款"],"is_case_sensitive":0,"match_rule":0,"is_trim_msg":0},"semantics":{"semantics_list":[2]},"applicable_range":{"target_type":{"type_list":[2]}}}"#,
    ),
    api(
        "update_rule",
        "WeCom doc 99829",
        r#"{"rule_id":"R1","name":"refund","keyword":{"word_list":["退款"],"is_case_sensitive":0,"match_rule":0,"is_trim_msg":0},"semantics":{"semantics_list":[2]},"applicable_range":{"target_type":{"type_list":[2]},"chat_type":{"type_list":[1,2]},"department":{"id_list":[1]},"user":{"id_list":["wo1"]},"external_contact":{"id_list":["wm1"]},"chat":{"id_list":["wr1"]},"exclude_mobile":{"mobile_list":["13800000000"]},"exclude_email":{"email_list":["a@example.com"]},"exclude_bank_card":{"bank_card_list":["6222000000000000"]}}}"#,
        OK,
    ),
    api("delete_rule", "WeCom doc 99829", r#"{"rule_id":"R1"}"#, OK),
    api(
        "get_hit_msg_list",
        "WeCom doc 99830",
        r#"{"cursor":"","token":"T","need_detail":1,"limit":200,"begin_time":1700000000}"#,
        listings::HIT_RSP,
    ),
    api(
        "knowledge_base_list",
        "WeCom doc 100030",
        "{}",
        r#"{"errcode":0,"errmsg":"ok","kb_info_list":[{"kb_id":"kb1","kb_name":"FAQ"}]}"#,
    ),
    api(
        "document_list",
        "WeCom doc 100030 (name before 2024-09-20)",
        "{}",
        r#"{"errcode":0,"errmsg":"ok","kb_info_list":[{"kb_id":"kb1","kb_name":"FAQ"}]}"#,
    ),
    api(
        "knowledge_base_create",
        "WeCom doc 100030",
        r#"{"kb_name":"客服知识","doc_list":[{"doc_name":"官网","type":101,"file_media_id":"MEDIA_ID","web_url":"https://example.com"}]}"#,
        r#"{"errcode":0,"errmsg":"ok","kb_id":"kb1","doc_list":[{"docid":1,"doc_name":"官网"}]}"#,
    ),
    api(
        "knowledge_base_detail",
        "WeCom doc 100030",
        r#"{"kb_id":"kb1"}"#,
        r#"{"errcode":0,"errmsg":"ok","kb_id":"kb1","kb_name":"FAQ","doc_list":[{"docid":1,"doc_name":"官网","type":101}]}"#,
    ),
    api(
        "knowledge_base_add_doc",
        "WeCom doc 100030",
        r#"{"kb_id":"kb1","doc_list":[{"doc_name":"FAQ.pdf","type":2,"file_media_id":"MEDIA_ID","web_url":"https://example.com"}]}"#,
        r#"{"errcode":0,"errmsg":"ok","doc_list":[{"docid":2,"doc_name":"FAQ.pdf"}]}"#,
    ),
    api("knowledge_base_remove_doc", "WeCom doc 100030", r#"{"kb_id":"kb1","docid_list":[2]}"#, OK),
    api("knowledge_base_modify_name", "WeCom doc 100030", r#"{"kb_id":"kb1","kb_name":"FAQ2"}"#, OK),
    api("knowledge_base_delete", "WeCom doc 100030", r#"{"kb_id":"kb1"}"#, OK),
    api(
        "create_chatdata_export_job",
        "WeCom doc 101380",
        r#"{"code":"CODE","media_id":"MEDIA"}"#,
        r#"{"errcode":0,"errmsg":"ok","jobid":"JOBID"}"#,
    ),
    api(
        "get_chatdata_export_job_status",
        "WeCom doc 101380",
        JOBID_REQ,
        r#"{"errcode":0,"errmsg":"ok","status":3,"result_errcode":0,"result_errmsg":"ok","result_id":"RID"}"#,
    ),
    // sdk-model-apis.md §0
    api("create_sentiment_task", "WeCom doc 99831", MSG_LIST_REQ, CREATED),
    api(
        "get_sentiment_result",
        "WeCom doc 99831",
        JOBID_REQ,
        r#"{"errcode":0,"errmsg":"ok","status":1,"fail_list":[{"errcode":710601,"errmsg":"x","msgid":"M9"}],"analyze_result_list":[{"errcode":0,"errmsg":"ok","msgid":"M1","sentiment_result":2}]}"#,
    ),
    api("create_summary_task", "WeCom doc 101376", MSG_LIST_REQ, CREATED),
    api(
        "get_summary_result",
        "WeCom doc 101376",
        JOBID_REQ,
        r#"{"errcode":0,"errmsg":"ok","status":1,"fail_list":[{"errcode":710601,"errmsg":"x","msgid":"M9"}],"response_data":"SUMMARY"}"#,
    ),
    api(
        "create_customer_tag_task",
        "WeCom doc 101375",
        r#"{"tag_group_list":[{"group_id":"G1"}],"msg_list":[{"msgid":"M1","encrypt_info":{"secret_key":"K1"}}],"model_id":"MODEL_ID"}"#,
        r#"{"errcode":0,"errmsg":"ok","jobid":"JOBID","fail_list":[],"fail_tag_group_id_list":["G9"]}"#,
    ),
    api(
        "get_customer_tag_result",
        "WeCom doc 101375",
        JOBID_REQ,
        r#"{"errcode":0,"errmsg":"ok","status":1,"fail_list":[{"errcode":710601,"errmsg":"x","msgid":"M9"}],"tag_result_list":[{"group_id":"G1","tag_id":"T1"}]}"#,
    ),
    api(
        "create_recommend_dialog_task",
        "WeCom doc 101374",
        r#"{"kb_id":"kb1","msg_list":[{"msgid":"M1","encrypt_info":{"secret_key":"K1"}}]}"#,
        CREATED,
    ),
    api(
        "get_recommend_dialog_result",
        "WeCom doc 101374",
        JOBID_REQ,
        r#"{"errcode":0,"errmsg":"ok","status":1,"fail_list":[{"errcode":710601,"errmsg":"x","msgid":"M9"}],"response_data":"REPLY"}"#,
    ),
    api(
        "create_ww_model_task",
        "WeCom doc 101373",
        r#"{"ability_id":"ABILITY_ID","kb_id":"kb1","kb_retrieval_words":"退货政策","tag_group_list":[{"group_id":"G1"}],"msg_list":[{"msgid":"M1","encrypt_info":{"secret_key":"K1"}}],"model_id":"MODEL_ID","need_think_result":false,"var_args":[{"name":"task","value":"数据分析"}]}"#,
        CREATED,
    ),
    api(
        "get_ww_model_result",
        "WeCom doc 101373",
        JOBID_REQ,
        r#"{"errcode":0,"errmsg":"ok","status":1,"fail_list":[{"errcode":710601,"errmsg":"x","msgid":"M9"}],"response_data":"RESULT"}"#,
    ),
    api(
        "create_model_task",
        "WeCom doc 99835",
        r#"{"model_id":"MODEL_ID","ability_id":"qa","kb_id":"kb1","service_kb_id":"skb1","tag_group_list":[{"group_id":"G1"}],"msg_list":[{"msgid":"M1","encrypt_info":{"secret_key":"K1"}}],"debug_info":{"chat":"A说:你好","chat_content":"你好","knowledge":"K","tagjson":"{}"},"escape_type":0}"#,
        CREATED,
    ),
    api(
        "get_model_task_result",
        "WeCom doc 99835",
        JOBID_REQ,
        r#"{"errcode":0,"errmsg":"ok","status":1,"fail_list":[{"errcode":710601,"errmsg":"x","msgid":"M9"}],"response_errcode":0,"response_data":"{}"}"#,
    ),
    api(
        "create_private_task",
        "Java SDK list (alias of create_model_task)",
        r#"{"model_id":"MODEL_ID","ability_id":"qa","kb_id":"kb1","service_kb_id":"skb1","tag_group_list":[{"group_id":"G1"}],"msg_list":[{"msgid":"M1","encrypt_info":{"secret_key":"K1"}}],"debug_info":{"chat":"A说:你好","chat_content":"你好","knowledge":"K","tagjson":"{}"},"escape_type":0}"#,
        CREATED,
    ),
    api(
        "get_private_task_result",
        "Java SDK list (alias of get_model_task_result)",
        JOBID_REQ,
        r#"{"errcode":0,"errmsg":"ok","status":1,"fail_list":[{"errcode":710601,"errmsg":"x","msgid":"M9"}],"response_errcode":0,"response_data":"{}"}"#,
    ),
    api(
        "create_program_task",
        "WeCom doc 101381",
        r#"{"program_id":"PROG_ID","ability_id":"ABILITY_ID","msg_list":[{"msgid":"M1","encrypt_info":{"secret_key":"K1"}}],"debug_info":{"chat":"A说:你好","chat_content":"你好"},"escape_type":0}"#,
        CREATED,
    ),
    api(
        "get_program_task_result",
        "WeCom doc 101381",
        JOBID_REQ,
        r#"{"errcode":0,"errmsg":"ok","status":1,"fail_list":[{"errcode":710601,"errmsg":"x","msgid":"M9"}],"response_errcode":0,"response_data":"{}"}"#,
    ),
    api("create_spam_task", "WeCom doc 100036", MSG_LIST_REQ, CREATED),
    api(
        "get_spam_result",
        "WeCom doc 100036",
        JOBID_REQ,
        r#"{"errcode":0,"errmsg":"ok","status":1,"fail_list":[{"errcode":710601,"errmsg":"x","msgid":"M9"}],"analyze_result_list":[{"errcode":0,"errmsg":"ok","msgid":"M1","spam_result":0}]}"#,
    ),
];

/// Responses that embed a message item (kept apart for readability).
mod listings {
    pub(super) const SYNC_MSG_RSP: &str = r#"{"errcode":0,"errmsg":"ok","has_more":0,"next_cursor":"C2","msg_list":[{"msgid":"M1","sender":{"type":1,"id":"wo1"},"receiver_list":[{"type":2,"id":"wm1"}],"chatid":"wr1","send_time":1700000000,"msgtype":1,"service_encrypt_info":{"encrypted_secret_key":"KEY","public_key_ver":1}}],"page_id_list":["PAGEID"]}"#;
    pub(super) const PAGE_RSP: &str = r#"{"errcode":0,"errmsg":"ok","msg_list":[{"msgid":"M1","sender":{"type":1,"id":"wo1"},"receiver_list":[{"type":2,"id":"wm1"}],"chatid":"wr1","send_time":1700000000,"msgtype":1,"service_encrypt_info":{"encrypted_secret_key":"KEY","public_key_ver":1}}]}"#;
    pub(super) const HIT_RSP: &str = r#"{"errcode":0,"errmsg":"ok","has_more":0,"next_cursor":"C2","msg_list":[{"msgid":"M1","msg_detail":{"sender":{"type":1,"id":"wo1"},"receiver_list":[{"type":2,"id":"wm1"}],"chatid":"wr1","send_time":1700000000,"msgtype":1,"service_encrypt_info":{"encrypted_secret_key":"KEY","public_key_ver":1}},"hit_rule_list":[{"rule_id":"R1","has_hit_keyword":true,"semantics_list":[2]}]}]}"#;
}

/// A message item of a listing, as documented (sdk-data-apis.md §3.1).
pub const MESSAGE_ITEM_EXAMPLE: &str = MSG_ITEM;

/// The APIs through which the program acts on its own behalf (it reports an async job's result, it
/// notifies the app): an app calling them as `invoke_<api>` could forge a result or a notification,
/// so they are offered as abilities only when `abilities.expose_program_apis` lists them.
pub const PROGRAM_APIS: &[&str] = &["program_async_job_call_back", "spec_notify_app"];

/// The API called `name`, if it is whitelisted.
pub fn find(name: &str) -> Option<&'static SdkApi> {
    SDK_APIS.iter().find(|a| a.name == name)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// Names in [`SDK_APIS`] that the inventory tables do not list: the Java SDK's own-model alias
    /// (sdk-model-apis.md §0, "Name conflict for the own model").
    const ALIASES: &[&str] = &["create_private_task", "get_private_task_result"];

    fn protocol_dir() -> Option<PathBuf> {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        std::env::var_os("ZONE_PROGRAM_PROTOCOL_DIR")
            .map(PathBuf::from)
            .into_iter()
            .chain([
                manifest.join("../../protocol"),
                manifest.join("../../../shared/protocol"),
                manifest.join("../../shared/protocol"),
            ])
            .find(|d| d.join("sdk-data-apis.md").is_file() && d.join("sdk-model-apis.md").is_file())
    }

    /// The backticked API names of the cells `columns` of the "## 0. Inventory" table; a name
    /// written as a suffix (`` `_detail` ``) extends the prefix of the cell's first full name.
    fn inventory(markdown: &str, columns: &[usize]) -> Vec<String> {
        let start = markdown.find("## 0. Inventory").expect("an inventory section");
        let section = &markdown[start..];
        let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
        let mut names = Vec::new();
        for line in section[..end].lines().filter(|l| l.starts_with('|') && !l.starts_with("|---")) {
            let cells: Vec<&str> = line.split('|').collect();
            for &c in columns {
                let Some(cell) = cells.get(c) else { continue };
                let mut prefix = String::new();
                for (i, token) in cell.split('`').enumerate() {
                    if i % 2 == 0 || token.is_empty() || !token.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_') {
                        continue;
                    }
                    if let Some(suffix) = token.strip_prefix('_') {
                        names.push(format!("{prefix}_{suffix}"));
                    } else {
                        prefix = token.rsplit_once('_').map_or(token, |(p, _)| p).to_owned();
                        names.push(token.to_owned());
                    }
                }
            }
        }
        names.retain(|n| n != "api_name");
        names
    }

    fn protocol_names() -> Vec<String> {
        match protocol_dir() {
            Some(dir) => {
                let data = std::fs::read_to_string(dir.join("sdk-data-apis.md")).unwrap();
                let model = std::fs::read_to_string(dir.join("sdk-model-apis.md")).unwrap();
                let mut names = inventory(&data, &[1]);
                names.extend(inventory(&model, &[2, 3]));
                assert!(names.len() >= 40, "the inventory tables parsed to only {names:?}");
                names
            }
            None => zone_crypto::wire::SDK_API_INVENTORY.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn the_whitelist_holds_every_api_of_the_protocol_inventory_and_nothing_else() {
        let names = protocol_names();
        for name in &names {
            assert!(find(name).is_some(), "{name} is in the protocol inventory but not whitelisted");
        }
        for api in SDK_APIS {
            assert!(
                names.iter().any(|n| n == api.name) || ALIASES.contains(&api.name),
                "{} is whitelisted but in no protocol inventory",
                api.name
            );
        }
    }

    #[test]
    fn the_copied_inventory_matches_the_protocol_files_when_they_are_present() {
        if let Some(_dir) = protocol_dir() {
            let mut parsed = protocol_names();
            parsed.sort();
            let mut copied: Vec<String> =
                zone_crypto::wire::SDK_API_INVENTORY.iter().map(|s| (*s).to_owned()).collect();
            copied.sort();
            assert_eq!(parsed, copied);
        }
    }

    #[test]
    fn names_are_plain_identifiers_without_the_demos_trailing_space_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for api in SDK_APIS {
            assert!(api.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{:?}", api.name);
            assert!(seen.insert(api.name), "{} twice", api.name);
        }
        assert!(find("get_summary_result").is_some());
        assert!(find("get_summary_result ").is_none());
    }

    #[test]
    fn every_example_is_a_json_object_and_every_response_has_errcode_zero() {
        for api in SDK_APIS {
            let request: serde_json::Value =
                serde_json::from_str(api.request).unwrap_or_else(|e| panic!("{}: {e}", api.name));
            assert!(request.is_object(), "{}", api.name);
            let response: serde_json::Value =
                serde_json::from_str(api.response).unwrap_or_else(|e| panic!("{}: {e}", api.name));
            assert_eq!(response["errcode"], 0, "{}", api.name);
        }
        let item: serde_json::Value = serde_json::from_str(MESSAGE_ITEM_EXAMPLE).unwrap();
        assert!(item["service_encrypt_info"].is_object());
    }
}
