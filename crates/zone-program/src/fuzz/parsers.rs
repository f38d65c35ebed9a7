//! The parsers behind the wire: ability inputs (every ability of the registry), event payloads,
//! `program_notify` XML (parse and open), and configuration loading (file and overrides).

use std::sync::OnceLock;

use proptest::prelude::*;
use rand::Rng;
use rand::rngs::StdRng;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use super::{MARKER, config, json, mutate, object, rng, text};
use crate::abilities::Registry;
use crate::config::{Config, OutputEnvelope};
use crate::error::ErrorCode;
use crate::events::{self, EventType, FollowUp};
use zone_app::notify::{self, CallbackKeys, CallbackQuery, Event};
use zone_crypto::cipher::{self as crypto, CallbackCipher, EncodingAesKey, xml};

/// The registry, its ids, every field name of its input protocols, and the protocols (examples with
/// every key, not necessarily a valid input: e.g. all three of a workflow's sources).
struct Abilities {
    registry: Registry,
    ids: Vec<String>,
    names: Vec<&'static str>,
    examples: Vec<(String, String)>,
}

fn abilities() -> &'static Abilities {
    static ABILITIES: OnceLock<Abilities> = OnceLock::new();
    ABILITIES.get_or_init(|| {
        let registry = Registry::new(4096, OutputEnvelope::Bare);
        let ids: Vec<String> = registry.ids().map(str::to_owned).collect();
        let mut names = std::collections::BTreeSet::new();
        let mut examples = Vec::new();
        for id in &ids {
            let example = registry.get(id).unwrap().info().input_example;
            collect_keys(&example, &mut names);
            examples.push((id.clone(), example.to_string()));
        }
        let names = names.into_iter().map(|n| &*Box::leak(n.into_boxed_str())).collect();
        Abilities { registry, ids, names, examples }
    })
}

fn collect_keys(v: &Value, into: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, v)| {
            into.insert(k.clone());
            collect_keys(v, into);
        }),
        Value::Array(a) => a.iter().for_each(|v| collect_keys(v, into)),
        _ => {}
    }
}

fn nested(rng: &mut StdRng) -> String {
    let depth = rng.gen_range(100..5000);
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

const EVENT_FIELDS: [&str; 9] = [
    "token",
    "userid",
    "external_userid",
    "chatid",
    "jobid",
    "knowledge_base_id",
    "knowledge_base_name",
    "doc_id",
    "learn_status",
];

fn event(rng: &mut StdRng) -> String {
    let mut raw = object(rng, &EVENT_FIELDS, 1);
    let kind = EventType::ALL[rng.gen_range(0..EventType::ALL.len())];
    match rng.gen_range(0..6) {
        0 => {}
        1 => {
            raw.insert("event_type".into(), json(rng, &[], 1));
        }
        _ => {
            raw.insert("event_type".into(), Value::String(kind.name().to_owned()));
        }
    }
    if let Some(key) = kind.payload_key() {
        raw.insert(key.into(), Value::Object(object(rng, &EVENT_FIELDS, 1)));
    }
    match rng.gen_range(0..8) {
        0 => mutate(rng, &Value::Object(raw).to_string()),
        1 => format!(r#"{{"event_type":"hit_keyword","hit_keyword":{}}}"#, nested(rng)),
        _ => Value::Object(raw).to_string(),
    }
}

/// A well-formed `program_notify` with random valid fields, and what it must parse to.
fn notify_xml(rng: &mut StdRng) -> (String, notify::ProgramNotify) {
    let corp: String = (0..rng.gen_range(1..20)).map(|_| char::from(rng.gen_range(b'a'..=b'z'))).collect();
    let id: String =
        (0..rng.gen_range(1..=128)).map(|_| char::from(rng.gen_range(b'!'..=b'~'))).filter(|c| *c != '<').collect();
    let id = if id.is_empty() { "x".to_owned() } else { id };
    let (time, scene) = (rng.gen_range(0..i64::MAX), rng.r#gen::<u8>());
    let text = format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>{time}</CreateTime>\
         <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[program_notify]]></Event><NotifyId>{}</NotifyId>\
         <NotifyScene>{scene}</NotifyScene></xml>",
        xml::cdata(&corp),
        xml::cdata(&id)
    );
    let expected = notify::ProgramNotify {
        corp_id: corp,
        create_time: time,
        notify_id: notify::NotifyId::parse(&id).unwrap(),
        notify_scene: scene,
    };
    (text, expected)
}

/// Random XML-shaped text over the tags of WeCom callbacks.
fn xml_soup(rng: &mut StdRng) -> String {
    const TAGS: [&str; 8] =
        ["xml", "ToUserName", "CreateTime", "MsgType", "Event", "NotifyId", "NotifyScene", "InfoType"];
    let mut out = String::new();
    for _ in 0..rng.gen_range(0..14) {
        let tag = TAGS[rng.gen_range(0..TAGS.len())];
        match rng.gen_range(0..7) {
            0 => out.push_str(&format!("<{tag}>")),
            1 => out.push_str(&format!("</{tag}>")),
            2 => out.push_str(&xml::cdata(&text(rng, &["program_notify", "1", "256"]))),
            3 => out.push_str("<![CDATA["),
            4 => out.push_str(["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&", "]]>"][rng.gen_range(0..7)]),
            _ => out.push_str(&text(rng, &["program_notify", "-1", "255", "99999999999999999999"])),
        }
    }
    out
}

fn keys() -> &'static CallbackKeys {
    static KEYS: OnceLock<CallbackKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        CallbackKeys::new("FuzzToken", "FuzzKeyOne0123456789abcdefghijklmnopqrstuvw", vec!["wwfuzz".into()]).unwrap()
    })
}

/// A value only secret keys get; a config error may name the key, never this.
const SECRET: &str = "QzxSecret9";

const CONFIG_KEYS: [(&str, bool); 22] = [
    ("server.listen", false),
    ("server.body_limit_bytes", false),
    ("server.request_timeout_ms", false),
    ("sdk.backend", false),
    ("sdk.pool_size", false),
    ("sdk.queue_wait_ms", false),
    ("sdk.invoke_timeout_ms", false),
    ("sdk.local.token", true),
    ("sdk.local.keys", true),
    ("sdk.local.replay_window_secs", false),
    ("sdk.local.nonce_cache_capacity", false),
    ("sdk.local.zone_url", false),
    ("store.notify_ttl_secs", false),
    ("jobs.workers", false),
    ("jobs.max_pending", false),
    ("abilities.max_input_bytes", false),
    ("abilities.output_envelope", false),
    ("keyring.keys", false),
    ("log.format", false),
    ("app.callback.encoding_aes_key", true),
    ("local_zone.app_token", true),
    ("app.corp_secret", true),
];

fn config_value(rng: &mut StdRng, secret: bool) -> String {
    let s = if secret { SECRET } else { MARKER };
    match rng.gen_range(0..10) {
        0 => rng.gen_range(-2i64..70_000).to_string(),
        1 => rng.r#gen::<i64>().to_string(),
        2 => ["true", "local", "native", "json", "bare", "0", "127.0.0.1:0", "http://127.0.0.1:1"][rng.gen_range(0..8)]
            .into(),
        3 => format!("{s}{}", "A".repeat(rng.gen_range(0..40))),
        4 => format!("\"{s}\""),
        5 => format!("[{{ ver = {}, encoding_aes_key = \"{s}{}\" }}]", rng.gen_range(0..3), "k".repeat(33)),
        6 => format!("{{ a = [1, \"{s}\"] }}"),
        7 => mutate(rng, &format!("[{{ ver = 1, encoding_aes_key = \"{}\" }}]", "K".repeat(43))),
        _ => text(rng, &[]).replace(MARKER, s),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ability_input_is_accepted_or_refused_with_an_input_code_that_echoes_nothing(seed in any::<u64>()) {
        let a = abilities();
        let mut rng = rng(seed);
        let id = match rng.gen_range(0..10) {
            0 => text(&mut rng, &["invoke_", "invoke", "get_callback_data"]),
            _ => a.ids[rng.gen_range(0..a.ids.len())].clone(),
        };
        let example = a.examples.iter().find(|(i, _)| *i == id).map(|(_, e)| e.clone());
        let data = match rng.gen_range(0..8) {
            0 => example.clone().unwrap_or_default(),
            1 => json!({ "input": Value::Object(object(&mut rng, &a.names, 3)) }).to_string(),
            2 => mutate(&mut rng, example.as_deref().unwrap_or("{}")),
            3 => json(&mut rng, &a.names, 3).to_string(),
            4 => nested(&mut rng),
            _ => Value::Object(object(&mut rng, &a.names, 3)).to_string(),
        };
        match a.registry.check(&id, &data) {
            Ok(()) => {}
            Err(e) => {
                let code = e.code();
                prop_assert!(
                    matches!(code, ErrorCode::InvalidInput | ErrorCode::InputTooLarge | ErrorCode::UnknownAbility),
                    "{:?}", code
                );
                let reply = e.to_reply_json().to_string();
                prop_assert!(!reply.contains(MARKER), "the reply echoes the input: {}", reply);
            }
        }
    }

    #[test]
    fn event_payloads_parse_to_bounded_follow_ups_or_an_input_code(seed in any::<u64>()) {
        let mut rng = rng(seed);
        let data = event(&mut rng);
        match events::parse(&data, 4096) {
            Ok(ev) => {
                let declared = ev.raw.get("event_type").and_then(Value::as_str).map(EventType::parse);
                prop_assert_eq!(Some(ev.kind), declared);
                let id_ok = |s: &str| !s.is_empty() && s.len() <= 128;
                let bounded = match &ev.follow_up {
                    FollowUp::SyncMsg { token } | FollowUp::HitMsgList { token } => token.as_deref().is_none_or(id_ok),
                    FollowUp::AgreeSingle { userid, external_userid } => id_ok(userid) && id_ok(external_userid),
                    FollowUp::AgreeRoom { chatid } => id_ok(chatid),
                    FollowUp::ExportStatus { jobid } => !jobid.is_empty() && jobid.chars().count() <= 64,
                    FollowUp::None => true,
                };
                prop_assert!(bounded, "{:?}", ev.follow_up);
                // A redelivery is the same text; re-serialising `raw` instead would change floats
                // (serde_json's float parsing is not round-trip exact), which WeCom never does.
                let again = events::parse(&data, usize::MAX).unwrap();
                prop_assert_eq!(events::dedupe_key("c", &ev.raw, 0), events::dedupe_key("c", &again.raw, 0));
            }
            Err(e) => {
                prop_assert!(matches!(e.code(), ErrorCode::InvalidInput | ErrorCode::InputTooLarge));
                prop_assert!(!e.to_reply_json().to_string().contains(MARKER));
            }
        }
    }

    #[test]
    fn program_notify_xml_parses_exactly_and_opens_only_when_signed(seed in any::<u64>()) {
        let mut rng = rng(seed);
        let (text, expected) = notify_xml(&mut rng);
        prop_assert_eq!(notify::parse_event(&text), Ok(Event::ProgramNotify(expected)));
        let soup = if rng.r#gen() { xml_soup(&mut rng) } else { mutate(&mut rng, &text) };
        if let Ok(Event::ProgramNotify(n)) = notify::parse_event(&soup) {
            prop_assert!(notify::NotifyId::parse(n.notify_id.as_str()).is_ok());
        }
        let cipher = CallbackCipher::new(EncodingAesKey::parse("FuzzKeyOne0123456789abcdefghijklmnopqrstuvw").unwrap());
        let encrypt = cipher.encrypt(soup.as_bytes(), b"wwfuzz", &mut rng);
        let (timestamp, nonce) = (rng.r#gen::<u32>().to_string(), rng.r#gen::<u32>().to_string());
        let token = SecretString::from("FuzzToken");
        let q = CallbackQuery { msg_signature: crypto::signature(&token, &timestamp, &nonce, &encrypt), timestamp, nonce, echostr: None };
        let body = xml::encrypted_envelope("wwfuzz", "1", &encrypt);
        let opened = keys().open_event(&q, &body);
        prop_assert_eq!(opened.map(|o| o.msg), Ok(soup.clone()));
        let tampered = mutate(&mut rng, &body);
        if xml::field(&tampered, "Encrypt").as_deref() != Some(encrypt.as_str()) {
            prop_assert!(keys().open_event(&q, &tampered).is_err());
        }
    }

    #[test]
    fn configuration_loads_valid_or_names_the_key_without_the_secret(seed in any::<u64>()) {
        thread_local! {
            static FILE: std::path::PathBuf =
                std::env::temp_dir().join(format!("zone-fuzz-config-{}-{:016x}.toml", std::process::id(), rand::random::<u64>()));
        }
        let mut rng = rng(seed);
        let mut env = Vec::new();
        let mut file_text = String::new();
        for _ in 0..rng.gen_range(0..4) {
            let (key, secret) = CONFIG_KEYS[rng.gen_range(0..CONFIG_KEYS.len())];
            let value = config_value(&mut rng, secret);
            if rng.gen_bool(0.1) {
                let (table, leaf) = key.rsplit_once('.').unwrap();
                file_text.push_str(&format!("[{table}]\n{leaf} = {value}\n"));
            } else {
                env.push((format!("ZONE_PROGRAM_{}", key.replace('.', "__").to_ascii_uppercase()), value));
            }
        }
        if rng.gen_bool(0.05) {
            env.push((format!("ZONE_PROGRAM_{}", text(&mut rng, &[])), "1".into()));
        }
        let loaded = if file_text.is_empty() {
            Config::load(None, env)
        } else {
            let path = FILE.with(Clone::clone);
            std::fs::write(&path, &file_text).unwrap();
            Config::load(Some(&path), env)
        };
        match loaded {
            Ok(c) => {
                prop_assert!(c.sdk.pool_size > 0 && (1..=600).contains(&c.store.notify_ttl_secs));
                prop_assert!(c.abilities.max_input_bytes <= c.server.body_limit_bytes);
                if c.sdk.backend == crate::config::SdkBackend::Local {
                    prop_assert!(crypto::parse_token(c.sdk.local.token.expose_secret()).is_ok());
                    prop_assert!(!c.sdk.local.keys.is_empty());
                }
                if seed % 16 == 0 {
                    prop_assert!(!format!("{c:?}").contains(SECRET), "Debug shows a secret");
                }
            }
            Err(e) => {
                prop_assert!(!e.key.is_empty());
                prop_assert!(!e.to_string().contains(SECRET), "the error shows a secret: {}", e);
            }
        }
    }
}
