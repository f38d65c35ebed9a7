//! Messages with their keys: unwrapping listed messages' `encrypted_secret_key` with the keyring
//! (off the async executor; a message without a usable key is skipped with its code, never a
//! failure of the call), messages the app gave with keys it unwrapped itself (app-side.md §5.4),
//! the model `msg_list` built from them, and the `fail_list` items models answer.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::input::{max_items, max_len, non_empty};
use super::messages::{MAX_ID_BYTES, MsgRef};
use crate::error::{AppError, ErrorCode};
use crate::keyring::{Keyring, SecretKey, UnwrapError};
use crate::sdk::api::ModelMsg;

/// A message ready for a model task.
pub struct Unwrapped {
    /// Its id.
    pub msgid: String,
    /// Its key.
    pub secret_key: SecretKey,
}

/// A message left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its id.
    pub msgid: String,
    /// One of the program's codes (`KeyUnavailable`, `KeyUnwrapFailed`) or a model's errcode.
    pub errcode: i64,
}

/// A message given directly by the app, with a key it unwrapped itself (app-side.md §5.4). Accepted
/// in the workflows' shape `{"msgid","secret_key"}` and in the SDK's `{"msgid","encrypt_info":
/// {"secret_key"}}` (the model APIs' `msg_list` items), so either can be pasted.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "GivenMsgWire")]
pub struct GivenMsg {
    /// Its id.
    pub msgid: String,
    /// Its unwrapped key.
    pub secret_key: String,
}

/// Either shape of a [`GivenMsg`] as it arrives.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GivenMsgWire {
    msgid: String,
    #[serde(default)]
    secret_key: Option<String>,
    #[serde(default)]
    encrypt_info: Option<EncryptInfo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptInfo {
    secret_key: String,
}

impl TryFrom<GivenMsgWire> for GivenMsg {
    type Error = &'static str;

    fn try_from(w: GivenMsgWire) -> Result<Self, Self::Error> {
        match (w.secret_key, w.encrypt_info) {
            (Some(secret_key), None) | (None, Some(EncryptInfo { secret_key })) => {
                Ok(Self { msgid: w.msgid, secret_key })
            }
            (None, None) => Err("a msg_list item needs `secret_key` or `encrypt_info.secret_key`"),
            (Some(_), Some(_)) => Err("a msg_list item takes `secret_key` or `encrypt_info.secret_key`, not both"),
        }
    }
}

/// Checks a list of given messages.
pub fn validate_given(field: &str, list: &[GivenMsg], max: usize) -> Result<(), AppError> {
    max_items(field, list, max)?;
    for m in list {
        non_empty("msgid", &m.msgid)?;
        max_len("msgid", &m.msgid, MAX_ID_BYTES)?;
        non_empty("secret_key", &m.secret_key)?;
        max_len("secret_key", &m.secret_key, 256)?;
    }
    Ok(())
}

/// Unwraps the keys of `messages` off the async executor. A message whose key is missing, of an
/// unknown version or undecryptable is skipped with its code; it never fails the whole call.
pub async fn unwrap_keys(
    keyring: &Arc<Keyring>,
    corp_id: &str,
    messages: Vec<MsgRef>,
) -> Result<(Vec<Unwrapped>, Vec<Skipped>), AppError> {
    let keyring = keyring.clone();
    let corp_id = corp_id.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut ok = Vec::with_capacity(messages.len());
        let mut skipped = Vec::new();
        for m in messages {
            let outcome = match &m.service_encrypt_info {
                None => Err(UnwrapError::UnknownKey),
                Some(k) => keyring.unwrap_secret_key(&corp_id, k.public_key_ver, &k.encrypted_secret_key),
            };
            match outcome {
                Ok(secret_key) => ok.push(Unwrapped { msgid: m.msgid, secret_key }),
                Err(e) => skipped.push(Skipped { msgid: m.msgid, errcode: unwrap_code(e).code() }),
            }
        }
        (ok, skipped)
    })
    .await
    .map_err(|e| AppError::Internal(anyhow::anyhow!("unwrapping keys: {e}")))
}

fn unwrap_code(e: UnwrapError) -> ErrorCode {
    match e {
        UnwrapError::UnknownKey => ErrorCode::KeyUnavailable,
        UnwrapError::BadEncoding | UnwrapError::Decrypt | UnwrapError::Malformed => ErrorCode::KeyUnwrapFailed,
    }
}

/// Messages the app gave with their keys, deduplicated.
pub fn given(list: Vec<GivenMsg>) -> Vec<Unwrapped> {
    let mut seen = HashSet::new();
    list.into_iter()
        .filter(|m| seen.insert(m.msgid.clone()))
        .map(|m| Unwrapped { msgid: m.msgid, secret_key: SecretKey::from_given(m.secret_key) })
        .collect()
}

/// The model `msg_list` of a batch. The result holds keys (its `Debug` does not show them, and they
/// are zeroed when dropped): never log its serialisation.
pub fn model_msg_list(batch: &[Unwrapped]) -> Vec<ModelMsg> {
    batch.iter().map(|m| ModelMsg::new(m.msgid.as_str(), m.secret_key.expose_secret())).collect()
}

/// The `fail_list` items of a create or result reply as skipped messages.
pub fn failures(reply_fail_list: &[Value]) -> Vec<Skipped> {
    reply_fail_list
        .iter()
        .filter_map(|f| {
            Some(Skipped {
                msgid: f.get("msgid")?.as_str()?.to_owned(),
                errcode: f.get("errcode").and_then(Value::as_i64).unwrap_or(ErrorCode::ModelTaskFailed.code()),
            })
        })
        .collect()
}

/// Skipped messages as output JSON.
pub fn skipped_json(skipped: &[Skipped]) -> Value {
    Value::Array(skipped.iter().map(|s| json!({ "msgid": s.msgid, "errcode": s.errcode })).collect())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_given_message_is_accepted_in_the_workflow_shape_and_the_sdk_shape() {
        let flat: GivenMsg = serde_json::from_str(r#"{"msgid":"a","secret_key":"k"}"#).unwrap();
        let sdk: GivenMsg = serde_json::from_str(r#"{"msgid":"a","encrypt_info":{"secret_key":"k"}}"#).unwrap();
        assert_eq!((flat.msgid.as_str(), flat.secret_key.as_str()), ("a", "k"));
        assert_eq!((sdk.msgid.as_str(), sdk.secret_key.as_str()), ("a", "k"));
        assert!(serde_json::from_str::<GivenMsg>(r#"{"msgid":"a"}"#).is_err());
        assert!(
            serde_json::from_str::<GivenMsg>(r#"{"msgid":"a","secret_key":"k","encrypt_info":{"secret_key":"k"}}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<GivenMsg>(r#"{"msgid":"a","secret_key":"k","extra":1}"#).is_err());
    }

    #[test]
    fn given_messages_are_deduplicated_and_become_the_model_msg_list() {
        let list = vec![
            GivenMsg { msgid: "a".into(), secret_key: "k1".into() },
            GivenMsg { msgid: "a".into(), secret_key: "k2".into() },
        ];
        let msgs = given(list);
        assert_eq!(
            serde_json::to_value(model_msg_list(&msgs)).unwrap(),
            json!([{"msgid":"a","encrypt_info":{"secret_key":"k1"}}])
        );
    }

    #[tokio::test]
    async fn a_message_without_a_usable_key_is_skipped_with_its_code() {
        let item = |id: &str, ver: Option<i64>| MsgRef {
            msgid: id.into(),
            sender: None,
            receiver_list: Vec::new(),
            chatid: String::new(),
            send_time: 0,
            service_encrypt_info: ver
                .map(|v| super::super::messages::WrappedKey { encrypted_secret_key: "AAAA".into(), public_key_ver: v }),
        };
        let (ok, skipped) =
            unwrap_keys(&Arc::new(Keyring::default()), "corp", vec![item("a", None), item("b", Some(1))])
                .await
                .unwrap();
        assert!(ok.is_empty());
        assert_eq!(
            skipped,
            vec![Skipped { msgid: "a".into(), errcode: 900_203 }, Skipped { msgid: "b".into(), errcode: 900_203 }]
        );
    }

    #[test]
    fn fail_list_items_become_skipped_messages() {
        let list = [json!({"errcode":710601,"msgid":"m1"}), json!({"msgid":"m2"}), json!({"errcode":1})];
        let skipped = failures(&list);
        assert_eq!(skipped_json(&skipped), json!([{"msgid":"m1","errcode":710601},{"msgid":"m2","errcode":900201}]));
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        #[test]
        fn reading_arbitrary_fail_lists_never_panics(text in "\\PC{0,300}") {
            if let Ok(Value::Array(list)) = serde_json::from_str::<Value>(&text) {
                let _ = failures(&list);
            }
        }
    }
}
