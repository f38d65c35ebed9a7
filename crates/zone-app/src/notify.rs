//! The app's side of WeCom's XML callbacks (`protocol/app-side.md` §3–4): URL verification (GET with
//! `echostr`) and event delivery (POST of `<xml><Encrypt/></xml>`), verified with the callback
//! Token, decrypted with the EncodingAESKey, the ReceiveId checked against an allow-list; then the
//! event parsed, `program_notify` into [`ProgramNotify`]. Pure functions: no I/O, no logging.

use secrecy::SecretString;

use zone_crypto::cipher::{self as crypto, CallbackCipher, CryptoError, EncodingAesKey, xml};

/// Longest `NotifyId` of a `program_notify` (app-side.md §3.1).
pub const MAX_NOTIFY_ID_BYTES: usize = 128;

/// The query of a callback request (URL-decoded).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct CallbackQuery {
    /// `msg_signature`.
    #[serde(default)]
    pub msg_signature: String,
    /// `timestamp`.
    #[serde(default)]
    pub timestamp: String,
    /// `nonce`.
    #[serde(default)]
    pub nonce: String,
    /// `echostr` (URL verification only).
    #[serde(default)]
    pub echostr: Option<String>,
}

/// What a verified, decrypted callback carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The message: the echo string, or the event XML.
    pub msg: String,
    /// The ReceiveId it was encrypted for (one of the allow-list).
    pub receive_id: String,
}

/// The keys of one callback URL: Token, EncodingAESKey and the accepted ReceiveIds.
#[derive(Debug, Clone)]
pub struct CallbackKeys {
    token: SecretString,
    cipher: CallbackCipher,
    receive_ids: Vec<String>,
}

impl CallbackKeys {
    /// Parses the Token (1–32 of `[A-Za-z0-9]`) and EncodingAESKey (43 of `[A-Za-z0-9]`).
    /// `receive_ids` must not be empty: your corp id, the authorising corp ids, your suite id.
    pub fn new(token: &str, encoding_aes_key: &str, receive_ids: Vec<String>) -> Result<Self, CryptoError> {
        let token = crypto::parse_token(token).map_err(|_| CryptoError::ValidateSignature)?;
        let cipher = CallbackCipher::new(EncodingAesKey::parse(encoding_aes_key)?);
        if receive_ids.is_empty() {
            return Err(CryptoError::ValidateReceiveId);
        }
        Ok(Self { token, cipher, receive_ids })
    }

    /// URL verification (§4.5): checks the signature over `echostr`, decrypts it, checks the
    /// ReceiveId; the `msg` is the bare reply body.
    pub fn verify_url(&self, q: &CallbackQuery) -> Result<Opened, CryptoError> {
        let echostr = q.echostr.as_deref().ok_or(CryptoError::ParseXml)?;
        self.open(q, echostr)
    }

    /// Event delivery (§4.6): reads `Encrypt` from the XML body, checks the signature over it,
    /// decrypts it and checks the ReceiveId; the `msg` is the event XML.
    pub fn open_event(&self, q: &CallbackQuery, body: &str) -> Result<Opened, CryptoError> {
        let encrypt = xml::required_field(body, "Encrypt")?;
        self.open(q, &encrypt)
    }

    fn open(&self, q: &CallbackQuery, encrypt: &str) -> Result<Opened, CryptoError> {
        crypto::verify_signature(&self.token, &q.timestamp, &q.nonce, encrypt, &q.msg_signature)?;
        let opened = self.cipher.decrypt(encrypt)?;
        let receive_id = String::from_utf8(opened.receive_id).map_err(|_| CryptoError::ValidateReceiveId)?;
        if !self.receive_ids.iter().any(|id| crypto::ct_eq(id.as_bytes(), receive_id.as_bytes())) {
            return Err(CryptoError::ValidateReceiveId);
        }
        let msg = String::from_utf8(opened.msg).map_err(|_| CryptoError::IllegalBuffer)?;
        Ok(Opened { msg, receive_id })
    }
}

/// A `NotifyId`: 1–128 bytes of printable ASCII (no spaces), as WeCom assigns or the program chose.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct NotifyId(String);

impl NotifyId {
    /// Parses a NotifyId.
    pub fn parse(raw: &str) -> Result<Self, NotifyError> {
        let ok = !raw.is_empty() && raw.len() <= MAX_NOTIFY_ID_BYTES && raw.bytes().all(|b| b.is_ascii_graphic());
        if ok { Ok(Self(raw.to_owned())) } else { Err(NotifyError::BadNotifyId) }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A `program_notify` event (app-side.md §3.1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProgramNotify {
    /// `ToUserName`: the corp the notification is about.
    pub corp_id: String,
    /// `CreateTime`, Unix seconds.
    pub create_time: i64,
    /// `NotifyId`: pass it to `sync_call_program` within 10 minutes.
    pub notify_id: NotifyId,
    /// `NotifyScene` (0–255) as the program passed it.
    pub notify_scene: u8,
}

/// A decrypted callback event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `program_notify`.
    ProgramNotify(ProgramNotify),
    /// Anything else (`change_auth`, `auth_data_permission`, a message …): its kind only.
    Other {
        /// The `Event`, `InfoType` or `MsgType` value, or `unknown`.
        kind: String,
    },
}

/// Why an event XML was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// A required element is missing or malformed.
    #[error("program_notify lacks a valid {0}")]
    Missing(&'static str),
    /// The NotifyId is empty, too long or not printable ASCII.
    #[error("NotifyId must be 1 to 128 printable ASCII bytes")]
    BadNotifyId,
}

/// Parses a decrypted event XML.
pub fn parse_event(xml_text: &str) -> Result<Event, NotifyError> {
    let event = xml::field(xml_text, "Event");
    if event.as_deref() != Some("program_notify") {
        let kind = event
            .or_else(|| xml::field(xml_text, "InfoType"))
            .or_else(|| xml::field(xml_text, "MsgType"))
            .unwrap_or_else(|| "unknown".into());
        return Ok(Event::Other { kind });
    }
    let corp_id = xml::field(xml_text, "ToUserName").ok_or(NotifyError::Missing("ToUserName"))?;
    let create_time = xml::field(xml_text, "CreateTime")
        .and_then(|t| t.trim().parse().ok())
        .ok_or(NotifyError::Missing("CreateTime"))?;
    let notify_id = NotifyId::parse(&xml::field(xml_text, "NotifyId").ok_or(NotifyError::Missing("NotifyId"))?)?;
    // A scene outside 0–255 is ignored by WeCom (app-side.md §3.1); an absent one reads as 0.
    let notify_scene = match xml::field(xml_text, "NotifyScene") {
        None => 0,
        Some(s) => s.trim().parse().map_err(|_| NotifyError::Missing("NotifyScene"))?,
    };
    Ok(Event::ProgramNotify(ProgramNotify { corp_id, create_time, notify_id, notify_scene }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // app-side.md §4.9: the parameters shared by the three vectors.
    const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
    const TOKEN: &str = "QDG6eK";
    const RECEIVE_ID: &str = "wx5823bf96d3bd56c7";

    fn keys(receive_ids: &[&str]) -> CallbackKeys {
        CallbackKeys::new(TOKEN, KEY, receive_ids.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    /// Vector A (URL verification, official sample code), the query as WeCom sends it.
    fn vector_a() -> CallbackQuery {
        let uri: axum::http::Uri = "/cgi-bin/wxpush?msg_signature=5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3\
                   &timestamp=1409659589&nonce=263014780\
                   &echostr=P9nAzCzyDtyTWESHep1vC5X9xho%2FqYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp%2B4RPcs8TgAE7OaBO%2BFZXvnaqQ%3D%3D"
            .parse()
            .unwrap();
        axum::extract::Query::<CallbackQuery>::try_from_uri(&uri).unwrap().0
    }

    /// Vector C (an encrypted program_notify), as a POST query and body.
    fn vector_c() -> (CallbackQuery, String) {
        let encrypt = "sKqRbbiSUnDhFHOvPjtUMT/xqc2NMT50Ev/7H+VJvU7jwiGX9axSuBYsT8lr5ukS6Cek6U8Rrzb+iQJAP2052oyJsQg0rDsjughFEDOKTqWennwSB+kLE6CdcL3ozDbYIyHlJRDREiyXg7N1EVY5Ksn0Q/kdg6lSp1hZBfJMggfRiXJm5vVEhD4TTKquBkLvnHxo6n/dbnDBB9fcs6X2bmu+8++CAw+qMsnvFheKal3PHfebiS3B/QNsHYhAWnIP+OMp0dG+JbMQ1EE1PyDyX+k4iIRIRMUcxaJ+yVLIClZ4Z7GI/VHUwhP5MPpBwMk+t6OjJx8XIXO7oYIFyBCAGMey9R9l2Ely/GpDNBCLA15KrqqgnxY7t5Aoyt89k/QwxySUEse3ASR9MiNapnNlBQFRekEEMWhlHNFguoJf5CmymF6l1H6nND57A7SgKYBjzxLm9jD/sSjiaYKYVk5Z3Q==";
        let q = CallbackQuery {
            msg_signature: "86a9fc7f1c0e9cebfa020d9b644b54b6f1130ddf".into(),
            timestamp: "1409659813".into(),
            nonce: "1372623149".into(),
            echostr: None,
        };
        (q, xml::encrypted_envelope(RECEIVE_ID, "1000002", encrypt))
    }

    #[test]
    fn vector_a_url_verification_answers_the_bare_echo() {
        let opened = keys(&[RECEIVE_ID]).verify_url(&vector_a()).unwrap();
        assert_eq!(opened.msg, "1616140317555161061");
        assert_eq!(opened.receive_id, RECEIVE_ID);
    }

    #[test]
    fn vector_a_is_refused_for_a_receive_id_outside_the_allow_list_or_a_wrong_signature() {
        assert_eq!(keys(&["wwother"]).verify_url(&vector_a()), Err(CryptoError::ValidateReceiveId));
        let mut q = vector_a();
        q.msg_signature = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd4".into();
        assert_eq!(keys(&[RECEIVE_ID]).verify_url(&q), Err(CryptoError::ValidateSignature));
        q.echostr = None;
        assert_eq!(keys(&[RECEIVE_ID]).verify_url(&q), Err(CryptoError::ParseXml));
    }

    #[test]
    fn vector_c_decodes_to_its_program_notify() {
        let (q, body) = vector_c();
        let opened = keys(&["wwfirst", RECEIVE_ID]).open_event(&q, &body).unwrap();
        let Event::ProgramNotify(n) = parse_event(&opened.msg).unwrap() else { panic!("not a program_notify") };
        assert_eq!(n.corp_id, RECEIVE_ID);
        assert_eq!(n.create_time, 1_348_831_860);
        assert_eq!(n.notify_id.as_str(), "NOTIFYID");
        assert_eq!(n.notify_scene, 1);
    }

    #[test]
    fn vector_c_with_a_changed_timestamp_is_refused() {
        let (mut q, body) = vector_c();
        q.timestamp = "1409659814".into();
        assert_eq!(keys(&[RECEIVE_ID]).open_event(&q, &body), Err(CryptoError::ValidateSignature));
        let (q, _) = vector_c();
        assert_eq!(keys(&[RECEIVE_ID]).open_event(&q, "<xml></xml>"), Err(CryptoError::ParseXml));
    }

    #[test]
    fn vector_b_is_an_event_of_another_kind() {
        let xml =
            "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n<MsgType><![CDATA[text]]></MsgType></xml>";
        assert_eq!(parse_event(xml).unwrap(), Event::Other { kind: "text".into() });
        let auth = "<xml><SuiteId><![CDATA[s]]></SuiteId><InfoType><![CDATA[change_auth]]></InfoType></xml>";
        assert_eq!(parse_event(auth).unwrap(), Event::Other { kind: "change_auth".into() });
    }

    #[test]
    fn a_program_notify_without_a_valid_notify_id_or_scene_is_an_error() {
        let base = |id: &str, scene: &str| {
            format!(
                "<xml><ToUserName>c</ToUserName><CreateTime>1</CreateTime><Event>program_notify</Event>\
                 <NotifyId>{id}</NotifyId><NotifyScene>{scene}</NotifyScene></xml>"
            )
        };
        assert_eq!(parse_event(&base("", "1")), Err(NotifyError::BadNotifyId));
        assert_eq!(parse_event(&base(&"x".repeat(129), "1")), Err(NotifyError::BadNotifyId));
        assert_eq!(parse_event(&base("id", "256")), Err(NotifyError::Missing("NotifyScene")));
        assert!(parse_event(&base(&"x".repeat(128), "255")).is_ok());
    }

    #[test]
    fn keys_are_refused_when_malformed() {
        assert!(CallbackKeys::new("bad token!", KEY, vec!["c".into()]).is_err());
        assert_eq!(CallbackKeys::new(TOKEN, "short", vec!["c".into()]).unwrap_err(), CryptoError::IllegalAesKey);
        assert_eq!(CallbackKeys::new(TOKEN, KEY, vec![]).unwrap_err(), CryptoError::ValidateReceiveId);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)))]

        #[test]
        fn an_encrypted_program_notify_round_trips(
            id in "[!-~]{1,128}", scene in any::<u8>(), t in 0i64..i64::MAX, seed in any::<u64>(),
            ts in "[0-9]{1,10}", nonce in "[A-Za-z0-9]{1,16}",
        ) {
            use rand::SeedableRng as _;
            let msg = format!(
                "<xml><ToUserName>{}</ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>{t}</CreateTime>\
                 <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[program_notify]]></Event>\
                 <NotifyId>{}</NotifyId><NotifyScene>{scene}</NotifyScene></xml>",
                xml::cdata(RECEIVE_ID), xml::cdata(&id)
            );
            let cipher = CallbackCipher::new(EncodingAesKey::parse(KEY).unwrap());
            let encrypt = cipher.encrypt(msg.as_bytes(), RECEIVE_ID.as_bytes(), &mut rand::rngs::StdRng::seed_from_u64(seed));
            let q = CallbackQuery {
                msg_signature: crypto::signature(&SecretString::from(TOKEN), &ts, &nonce, &encrypt),
                timestamp: ts, nonce, echostr: None,
            };
            let opened = keys(&[RECEIVE_ID]).open_event(&q, &xml::encrypted_envelope(RECEIVE_ID, "1", &encrypt)).unwrap();
            let expected = ProgramNotify { corp_id: RECEIVE_ID.into(), create_time: t, notify_id: NotifyId::parse(&id).unwrap(), notify_scene: scene };
            prop_assert_eq!(parse_event(&opened.msg).unwrap(), Event::ProgramNotify(expected));
        }

        #[test]
        fn parsing_and_opening_arbitrary_input_never_panics(text in ".{0,300}", sig in "[0-9a-f]{0,40}") {
            let _ = parse_event(&text);
            let q = CallbackQuery { msg_signature: sig, timestamp: "1".into(), nonce: "n".into(), echostr: Some(text.clone()) };
            let _ = keys(&[RECEIVE_ID]).verify_url(&q);
            let _ = keys(&[RECEIVE_ID]).open_event(&q, &text);
        }
    }
}
