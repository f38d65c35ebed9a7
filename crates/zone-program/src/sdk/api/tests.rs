use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::*;
use crate::abilities::catalog::SDK_APIS;
use crate::sdk::{DecodeError, Decoded};

/// Answers every call with `reply` and records what was sent.
struct Canned {
    reply: String,
    sent: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl ZoneSdk for Canned {
    fn decode(&self, _: &str, _: &[(String, String)], _: &[u8]) -> Result<Decoded, DecodeError> {
        Err(DecodeError { code: -1, reply: None })
    }

    async fn invoke(&self, _: &CallContext, api: &str, request: &str) -> Result<String, SdkError> {
        self.sent.lock().unwrap().push((api.to_owned(), request.to_owned()));
        Ok(self.reply.clone())
    }
}

fn canned(reply: &str) -> (Sdk, Arc<Canned>) {
    let canned = Arc::new(Canned { reply: reply.into(), sent: Mutex::default() });
    (Sdk::new(canned.clone(), CallContext::default()), canned)
}

#[test]
fn the_table_covers_every_catalogued_api_once() {
    let mut typed: Vec<&str> = TYPED_APIS.to_vec();
    let mut catalogued: Vec<&str> = SDK_APIS.iter().map(|a| a.name).collect();
    typed.sort_unstable();
    catalogued.sort_unstable();
    assert_eq!(typed.len(), 46);
    assert_eq!(typed, catalogued);
}

#[tokio::test]
async fn a_typed_call_sends_only_the_given_fields_and_decodes_the_reply() {
    let (sdk, canned) =
        canned(r#"{"errcode":0,"errmsg":"ok","has_more":1,"next_cursor":"C2","page_id_list":["P1",{"page_id":"P2"}]}"#);
    let page = sdk.sync_msg(SyncMsgRequest { limit: Some(1000), mode: Some(2), ..Default::default() }).await.unwrap();
    assert!(page.has_more);
    assert_eq!(page.next_cursor, "C2");
    assert_eq!(page.page_ids(), ["P1", "P2"]);
    let sent = canned.sent.lock().unwrap().clone();
    assert_eq!(sent, [("sync_msg".to_owned(), r#"{"limit":1000,"mode":2}"#.to_owned())]);
}

#[tokio::test]
async fn a_request_over_a_documented_limit_is_never_sent() {
    let (sdk, canned) = canned(r#"{"errcode":0}"#);
    let over = [
        sdk.sync_msg(SyncMsgRequest { limit: Some(1001), ..Default::default() }).await.err(),
        sdk.sync_msg(SyncMsgRequest { cursor: Some("c".repeat(129)), ..Default::default() }).await.err(),
        sdk.get_hit_msg_list(HitMsgListRequest { cursor: Some("c".repeat(65)), ..Default::default() }).await.err(),
        sdk.spec_notify_app(SpecNotifyAppRequest { notify_id: Some("n".repeat(65)), notify_scene: None }).await.err(),
        sdk.create_sentiment_task(MsgListTaskRequest { msg_list: vec![ModelMsg::new("m", "k"); 1001] }).await.err(),
        sdk.create_summary_task(MsgListTaskRequest::default()).await.err(),
        sdk.get_agree_status_single(AgreeSingleRequest { item: Vec::new() }).await.err(),
        sdk.search_chat(SearchRequest { query_word: "x".into(), ..Default::default() }).await.err(),
    ];
    for e in over {
        assert!(matches!(e, Some(SdkError::Limit { .. })), "{e:?}");
    }
    assert!(canned.sent.lock().unwrap().is_empty());
    assert_eq!(SdkError::Limit { api: "sync_msg", what: "x" }.error_code(), crate::error::ErrorCode::InvalidInput);
}

#[tokio::test]
async fn a_non_zero_errcode_or_an_unfit_reply_is_an_error() {
    let (sdk, _) = canned(r#"{"errcode":301052,"errmsg":"expired"}"#);
    let e = sdk.get_group_chat(ChatIdRequest { chatid: "wr1".into() }).await.unwrap_err();
    assert_eq!(e, SdkError::Errcode { api: "get_group_chat".into(), errcode: 301_052 });
    let (sdk, _) = canned(r#"{"errcode":0,"jobid":5}"#);
    let e = sdk.create_summary_task(MsgListTaskRequest { msg_list: vec![ModelMsg::new("m", "k")] }).await;
    assert_eq!(e.unwrap_err(), SdkError::BadResponse);
}

#[tokio::test]
async fn the_aliases_call_under_their_own_names() {
    let (sdk, canned) = canned(r#"{"errcode":0,"kb_info_list":[{"kb_id":"kb1"}]}"#);
    let list = sdk.document_list(Empty {}).await.unwrap();
    assert_eq!(list.kb_info_list.len(), 1);
    assert_eq!(canned.sent.lock().unwrap()[0].0, "document_list");
}
