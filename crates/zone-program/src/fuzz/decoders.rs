//! The wire decoders: the local codec's `open` (headers, body, signature, window, nonce, cipher),
//! the WeCom callback cipher and signature on their own, and the local backend's `decode` of a
//! verified message into a callback.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proptest::prelude::*;
use rand::Rng;
use rand::rngs::StdRng;
use secrecy::SecretString;

use super::{MARKER, config, json, mutate, rng, text};
use crate::sdk::ZoneSdk as _;
use zone_crypto::cipher::{self as crypto, CallbackCipher, CryptoError, EncodingAesKey};
use zone_crypto::codec::{CodecError, CodecSettings, LocalCodec, Nonce, Sealed};

const KEY_1: &str = "FuzzKeyOne0123456789abcdefghijklmnopqrstuvw";
const KEY_2: &str = "FuzzKeyTwo0123456789abcdefghijklmnopqrstuvw";
const TOKEN: &str = "FuzzToken";

fn settings() -> CodecSettings {
    let mut keys = BTreeMap::new();
    keys.insert(1, CallbackCipher::new(EncodingAesKey::parse(KEY_1).unwrap()));
    keys.insert(2, CallbackCipher::new(EncodingAesKey::parse(KEY_2).unwrap()));
    // Room for every nonce of a long run: a full cache would refuse valid messages.
    CodecSettings { token: SecretString::from(TOKEN), keys, window_secs: 300, nonce_capacity: 1 << 26 }
}

/// The sealing end and the opening end (one each for the whole run: the opening end's replay cache
/// sees every nonce, as in production).
fn ends() -> &'static (LocalCodec, LocalCodec) {
    static ENDS: OnceLock<(LocalCodec, LocalCodec)> = OnceLock::new();
    ENDS.get_or_init(|| (LocalCodec::new(settings()), LocalCodec::new(settings())))
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    (0..rng.gen_range(0..max)).map(|_| rng.r#gen()).collect()
}

/// Whether `new` means what `old` meant in header `name`: the same text up to hex case (the
/// signature), or the same number (the key version, which is not signed: `02` is version 2).
fn same_meaning(name: &str, old: &str, new: &str) -> bool {
    new.eq_ignore_ascii_case(old)
        || (name == zone_crypto::codec::H_SECRET_VER
            && !new.is_empty()
            && new.bytes().all(|b| b.is_ascii_digit())
            && new.parse::<u32>().is_ok_and(|n| old.parse() == Ok(n)))
}

/// A change of the body's JSON text that leaves its `encrypt` string as it was.
const EQUIVALENT: &str = "an equivalent body";

/// One tampering of a sealed message; `None` when the draw left it intact.
fn tamper(rng: &mut StdRng, sealed: &mut Sealed) -> Option<&'static str> {
    match rng.gen_range(0..10) {
        0 => None,
        1 => {
            let body = String::from_utf8(sealed.body.clone()).unwrap();
            let mutated = mutate(rng, &body);
            let encrypt = |text: &str| {
                serde_json::from_str::<serde_json::Value>(text).ok().map(|v| v["encrypt"].as_str().map(str::to_owned))
            };
            sealed.body = mutated.clone().into_bytes();
            // `\/` is JSON for `/`: an edit that leaves the signed `encrypt` text as it was is no tampering.
            match encrypt(&mutated) == encrypt(&body) {
                true => Some(EQUIVALENT),
                false => Some("body edited"),
            }
        }
        2 => {
            let i = rng.gen_range(0..sealed.body.len());
            sealed.body[i] ^= 1 << rng.gen_range(0..8);
            Some("body bit flipped")
        }
        3 => {
            let cut = rng.gen_range(0..sealed.body.len());
            sealed.body.truncate(cut);
            Some("body truncated")
        }
        4 => {
            let i = rng.gen_range(0..sealed.headers.len());
            sealed.headers.remove(i);
            Some("header dropped")
        }
        5 => {
            let i = rng.gen_range(0..sealed.headers.len());
            let old = sealed.headers[i].1.clone();
            let new = mutate(rng, &old);
            (!same_meaning(&sealed.headers[i].0, &old, &new)).then(|| {
                sealed.headers[i].1 = new;
                "header edited"
            })
        }
        6 => {
            let i = rng.gen_range(0..sealed.headers.len());
            let new = text(rng, &[]);
            (!same_meaning(&sealed.headers[i].0, &sealed.headers[i].1, &new)).then(|| {
                sealed.headers[i].1 = new;
                "header replaced"
            })
        }
        7 => {
            sealed.body = bytes(rng, 400);
            Some("body replaced")
        }
        8 => {
            // The same message signed with another token, or encrypted with another key.
            let mut s = settings();
            if rng.r#gen() {
                s.token = SecretString::from("OtherToken");
            } else {
                s.keys.insert(2, CallbackCipher::new(EncodingAesKey::parse(KEY_1).unwrap()));
            }
            *sealed = LocalCodec::new(s).seal(b"{}", "wwfuzz");
            Some("foreign key or token")
        }
        _ => {
            let ts = now() + if rng.r#gen() { 301 } else { -301 } + rng.gen_range(-5..5) * 1000;
            *sealed = ends().0.seal_at(2, b"{}", "wwfuzz", ts, &Nonce::random()).unwrap();
            Some("outside the window")
        }
    }
}

/// A local-codec message for the local backend: mostly the callback JSON with mutated fields.
fn callback_message(rng: &mut StdRng) -> Vec<u8> {
    let names = ["corp_id", "agent_id", "call_type", "is_async", "job_info", "ability_id", "notify_id", "data"];
    let mut v = serde_json::json!({
        "corp_id": "wwfuzz", "agent_id": 1000002, "call_type": 1, "is_async": false,
        "job_info": "j", "ability_id": "invoke_sync_msg", "notify_id": "", "data": "{}",
    });
    for _ in 0..rng.gen_range(0..4) {
        let key = names[rng.gen_range(0..names.len())];
        v[key] = json(rng, &names, 2);
    }
    match rng.gen_range(0..6) {
        0 => bytes(rng, 300),
        1 => mutate(rng, &v.to_string()).into_bytes(),
        _ => v.to_string().into_bytes(),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_local_codec_opens_exactly_the_untampered_messages(seed in any::<u64>()) {
        let mut rng = rng(seed);
        let (sealer, opener) = ends();
        let message = bytes(&mut rng, 300);
        let receive_id = text(&mut rng, &["wwfuzz"]);
        let mut sealed = sealer.seal(&message, &receive_id);
        match tamper(&mut rng, &mut sealed) {
            None => {
                let opened = opener.open(&sealed.headers, &sealed.body).expect("an untampered message opens");
                prop_assert_eq!(opened.message, message);
                prop_assert_eq!(opened.receive_id, receive_id);
                prop_assert_eq!(opener.open(&sealed.headers, &sealed.body), Err(CodecError::Replayed));
            }
            Some(EQUIVALENT) => {
                let _ = opener.open(&sealed.headers, &sealed.body);
            }
            Some(how) => {
                let refused = opener.open(&sealed.headers, &sealed.body);
                prop_assert!(refused.is_err(), "{} was accepted", how);
            }
        }
    }

    #[test]
    fn the_callback_cipher_round_trips_and_the_signature_refuses_any_change(seed in any::<u64>()) {
        let mut rng = rng(seed);
        let cipher = CallbackCipher::new(EncodingAesKey::parse(KEY_1).unwrap());
        let token = SecretString::from(TOKEN);
        // Arbitrary ciphertexts (block-aligned half the time, to reach padding and frame checks).
        let mut junk = bytes(&mut rng, 200);
        if rng.r#gen() {
            junk.truncate(junk.len() / 16 * 16);
        }
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &junk);
        if let Ok(opened) = cipher.decrypt(&b64) {
            prop_assert!(opened.msg.len() + opened.receive_id.len() + 20 < junk.len(), "the frame fits the ciphertext");
        }
        let _ = cipher.decrypt(&mutate(&mut rng, &b64));
        let msg = bytes(&mut rng, 600);
        let rid = text(&mut rng, &[]);
        let encrypt = cipher.encrypt(&msg, rid.as_bytes(), &mut rng);
        prop_assert_eq!(cipher.decrypt_for(&encrypt, rid.as_bytes()), Ok(msg.clone()));
        prop_assert_eq!(cipher.decrypt_for(&encrypt, format!("{rid}x").as_bytes()), Err(CryptoError::ValidateReceiveId));
        let (ts, nonce) = (rng.r#gen::<u32>().to_string(), text(&mut rng, &[]));
        let sig = crypto::signature(&token, &ts, &nonce, &encrypt);
        prop_assert!(crypto::verify_signature(&token, &ts, &nonce, &encrypt, &sig).is_ok());
        let mut parts = [ts, nonce, encrypt, sig];
        let i = rng.gen_range(0..4);
        let changed = mutate(&mut rng, &parts[i]);
        if !changed.eq_ignore_ascii_case(&parts[i]) {
            parts[i] = changed;
            let [ts, nonce, encrypt, sig] = &parts;
            prop_assert_eq!(crypto::verify_signature(&token, ts, nonce, encrypt, sig), Err(CryptoError::ValidateSignature));
        }
    }

    #[test]
    fn the_local_backend_decodes_only_well_formed_callbacks_for_their_receive_id(seed in any::<u64>()) {
        static SDK: OnceLock<crate::sdk::local::LocalSdk> = OnceLock::new();
        let sdk = SDK.get_or_init(|| {
            let mut config = crate::config::SdkConfig::default();
            config.local.token = SecretString::from(TOKEN);
            config.local.keys = vec![crate::config::LocalKey { ver: 1, encoding_aes_key: SecretString::from(KEY_1) }];
            config.local.nonce_cache_capacity = 1 << 26;
            crate::sdk::local::LocalSdk::new(&config).unwrap()
        });
        let mut rng = rng(seed);
        let message = callback_message(&mut rng);
        let receive_id = if rng.gen_bool(0.9) { "wwfuzz" } else { "wwother" };
        let mut keys = BTreeMap::new();
        keys.insert(1, CallbackCipher::new(EncodingAesKey::parse(KEY_1).unwrap()));
        let sealer = LocalCodec::new(CodecSettings { token: SecretString::from(TOKEN), keys, window_secs: 300, nonce_capacity: 1 });
        let sealed = sealer.seal(&message, receive_id);
        let decoded = sdk.decode("POST", &sealed.headers, &sealed.body).is_ok();
        let valid = serde_json::from_slice::<zone_crypto::wire::CallbackMessage>(&message)
            .is_ok_and(|m| m.corp_id == receive_id);
        prop_assert_eq!(decoded, valid, "{}", String::from_utf8_lossy(&message).replace(MARKER, "<marker>"));
    }
}
