//! The notify path (app-side.md §3.1, §4): `spec_notify_app` registers a notify_id for 10 minutes
//! and makes the zone POST the `program_notify` XML, encrypted with the WeCom callback cipher under
//! the app's EncodingAESKey (receive id = corp id) and signed with the app's token, to
//! `local_zone.app_callback_url?msg_signature=…&timestamp=…&nonce=…`. Every notification is also kept
//! in a bounded outbox (`GET /local/notifications`), so it can be seen without an app receiver.

use rand::Rng;
use rand::distributions::Alphanumeric;
use serde_json::{Value, json};

use super::Shared;
use zone_crypto::cipher::{self as crypto, xml};

/// Most notifications kept in the outbox.
const OUTBOX_CAP: usize = 1000;

/// The decrypted `program_notify` XML (app-side.md §3.1).
pub fn program_notify_xml(corp_id: &str, create_time: i64, notify_id: &str, scene: Option<u8>) -> String {
    let scene = scene.map(|s| format!("<NotifyScene>{s}</NotifyScene>")).unwrap_or_default();
    format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{create_time}</CreateTime>\
         <MsgType>{}</MsgType><Event>{}</Event><NotifyId>{}</NotifyId>{scene}</xml>",
        xml::cdata(corp_id),
        xml::cdata("sys"),
        xml::cdata("event"),
        xml::cdata("program_notify"),
        xml::cdata(notify_id),
    )
}

/// Records the notification and, when an app callback URL is configured, delivers it.
pub async fn push(shared: &Shared, notify_id: String, scene: Option<u8>) {
    let now = shared.clock.now();
    let delivered = match shared.cfg.app_callback_url.as_deref() {
        None => Value::Null,
        Some(url) => Value::from(deliver(shared, url, &notify_id, scene, now).await),
    };
    let mut data = shared.data();
    if data.outbox.len() >= OUTBOX_CAP {
        data.outbox.remove(0);
    }
    data.outbox.push(json!({
        "notify_id": notify_id, "notify_scene": scene, "create_time": now, "delivered": delivered,
    }));
}

/// POSTs one encrypted `program_notify`; true when the app answered 2xx.
async fn deliver(shared: &Shared, url: &str, notify_id: &str, scene: Option<u8>, now: i64) -> bool {
    let corp = &shared.cfg.corp_id;
    let plain = program_notify_xml(corp, now, notify_id, scene);
    let encrypt = shared.app_cipher.encrypt(plain.as_bytes(), corp.as_bytes(), &mut rand::thread_rng());
    let timestamp = now.to_string();
    let nonce: String = rand::thread_rng().sample_iter(&Alphanumeric).take(10).map(char::from).collect();
    let signature = crypto::signature(&shared.cfg.app_token, &timestamp, &nonce, &encrypt);
    let body = xml::encrypted_envelope(corp, &shared.cfg.agent_id.to_string(), &encrypt);
    let sent = shared
        .http
        .post(url)
        .query(&[("msg_signature", signature.as_str()), ("timestamp", timestamp.as_str()), ("nonce", nonce.as_str())])
        .header("content-type", "application/xml")
        .timeout(std::time::Duration::from_secs(5))
        .body(body)
        .send()
        .await;
    let ok = matches!(&sent, Ok(res) if res.status().is_success());
    if ok {
        tracing::info!(notify_id, "program_notify delivered to the app");
    } else {
        tracing::warn!(notify_id, "program_notify delivery to the app failed");
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notify_xml_has_the_documented_elements_and_omits_an_ignored_scene() {
        let x = program_notify_xml("wwcorp", 1_348_831_860, "NID", Some(1));
        assert_eq!(xml::field(&x, "ToUserName").as_deref(), Some("wwcorp"));
        assert_eq!(xml::field(&x, "FromUserName").as_deref(), Some("sys"));
        assert_eq!(xml::field(&x, "MsgType").as_deref(), Some("event"));
        assert_eq!(xml::field(&x, "Event").as_deref(), Some("program_notify"));
        assert_eq!(xml::field(&x, "NotifyId").as_deref(), Some("NID"));
        assert_eq!(xml::field(&x, "NotifyScene").as_deref(), Some("1"));
        assert_eq!(xml::field(&program_notify_xml("c", 1, "N", None), "NotifyScene"), None);
    }
}
