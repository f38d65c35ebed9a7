//! Known answers from `protocol/app-side.md` §4.9, the reject table, and property tests.

use base64::engine::general_purpose::STANDARD as REFERENCE_BASE64;
use proptest::prelude::*;
use rand::SeedableRng;
use secrecy::SecretString;

use super::*;

/// The shared parameters of the three vectors (app-side.md §4.9).
const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const TOKEN: &str = "QDG6eK";
const RECEIVE_ID: &[u8] = b"wx5823bf96d3bd56c7";

/// Vector A (official sample code): URL verification.
const ECHOSTR_A: &str = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";
/// Vector B (official sample code): an event POST whose padding is 30 bytes.
const ENCRYPT_B: &str = "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==";
/// Vector C (computed from the algorithm, app-side.md §4.9 C): a `program_notify`.
const MSG_C: &str = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1348831860</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[program_notify]]></Event><NotifyId><![CDATA[NOTIFYID]]></NotifyId><NotifyScene>1</NotifyScene></xml>";
const ENCRYPT_C: &str = "sKqRbbiSUnDhFHOvPjtUMT/xqc2NMT50Ev/7H+VJvU7jwiGX9axSuBYsT8lr5ukS6Cek6U8Rrzb+iQJAP2052oyJsQg0rDsjughFEDOKTqWennwSB+kLE6CdcL3ozDbYIyHlJRDREiyXg7N1EVY5Ksn0Q/kdg6lSp1hZBfJMggfRiXJm5vVEhD4TTKquBkLvnHxo6n/dbnDBB9fcs6X2bmu+8++CAw+qMsnvFheKal3PHfebiS3B/QNsHYhAWnIP+OMp0dG+JbMQ1EE1PyDyX+k4iIRIRMUcxaJ+yVLIClZ4Z7GI/VHUwhP5MPpBwMk+t6OjJx8XIXO7oYIFyBCAGMey9R9l2Ely/GpDNBCLA15KrqqgnxY7t5Aoyt89k/QwxySUEse3ASR9MiNapnNlBQFRekEEMWhlHNFguoJf5CmymF6l1H6nND57A7SgKYBjzxLm9jD/sSjiaYKYVk5Z3Q==";

fn cipher() -> CallbackCipher {
    CallbackCipher::new(EncodingAesKey::parse(KEY).unwrap())
}

fn token() -> SecretString {
    SecretString::from(TOKEN)
}

#[test]
fn the_aes_key_and_iv_match_the_documented_hex() {
    let key = EncodingAesKey::parse(KEY).unwrap();
    assert_eq!(hex::encode(key.expose_bytes()), "8d69989bbaabe67328014c194631ad0719b3dca035b64023df292447aab60760");
    assert_eq!(hex::encode(&key.expose_bytes()[..16]), "8d69989bbaabe67328014c194631ad07");
}

#[test]
fn vector_a_url_verification_signs_and_decrypts() {
    let sig = signature(&token(), "1409659589", "263014780", ECHOSTR_A);
    assert_eq!(sig, "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3");
    verify_signature(&token(), "1409659589", "263014780", ECHOSTR_A, &sig).unwrap();
    let msg = cipher().decrypt_for(ECHOSTR_A, RECEIVE_ID).unwrap();
    assert_eq!(msg, b"1616140317555161061");
}

#[test]
fn vector_a_re_encrypts_to_the_same_bytes_with_its_random() {
    let out = cipher().encrypt_with_random(b"c41b64491c2468d0", b"1616140317555161061", RECEIVE_ID);
    assert_eq!(out, ECHOSTR_A);
}

#[test]
fn vector_b_with_thirty_bytes_of_padding_decrypts() {
    let sig = signature(&token(), "1409659813", "1372623149", ENCRYPT_B);
    assert_eq!(sig, "477715d11cdb4164915debcba66cb864d751f3e6");
    let opened = cipher().decrypt(ENCRYPT_B).unwrap();
    assert_eq!(opened.receive_id, RECEIVE_ID);
    assert_eq!(opened.msg.len(), 284);
    let xml = String::from_utf8(opened.msg).unwrap();
    assert!(xml.starts_with("<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n<FromUserName>"));
    assert_eq!(xml::field(&xml, "Content").as_deref(), Some("hello"));
    assert_eq!(xml::field(&xml, "MsgId").as_deref(), Some("4561255354251345929"));
}

#[test]
fn vector_c_program_notify_encrypts_and_signs_as_documented() {
    assert_eq!(MSG_C.len(), 291);
    let out = cipher().encrypt_with_random(b"0123456789abcdef", MSG_C.as_bytes(), RECEIVE_ID);
    assert_eq!(out.len(), 472);
    assert_eq!(out, ENCRYPT_C);
    assert_eq!(signature(&token(), "1409659813", "1372623149", &out), "86a9fc7f1c0e9cebfa020d9b644b54b6f1130ddf");
}

#[test]
fn a_bad_key_is_rejected_with_minus_40004() {
    for bad in ["", "short", &KEY[..42], &format!("{KEY}A"), "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2+"] {
        assert_eq!(EncodingAesKey::parse(bad).unwrap_err().code(), -40004, "{bad:?}");
    }
}

#[test]
fn the_reject_table_gives_the_official_codes() {
    let c = cipher();
    let decrypt = |s: &str| c.decrypt(s).unwrap_err().code();
    assert_eq!(decrypt("not base64!"), -40010);
    assert_eq!(decrypt(&REFERENCE_BASE64.encode([0u8; 17])), -40007, "not a multiple of 16");
    assert_eq!(decrypt(""), -40007, "empty");
    // Padding byte 0 and 33, and a length field larger than the buffer, encrypted raw.
    let raw = |plain: &[u8]| {
        let mut buf = plain.to_vec();
        let key = EncodingAesKey::parse(KEY).unwrap();
        let k = key.expose_bytes();
        let len = buf.len();
        let out = Aes256CbcEnc::new(k.into(), k[..16].into())
            .encrypt_padded_mut::<NoPadding>(&mut buf, len)
            .unwrap()
            .to_vec();
        REFERENCE_BASE64.encode(out)
    };
    let mut zero_pad = vec![b'a'; 32];
    zero_pad[31] = 0;
    assert_eq!(decrypt(&raw(&zero_pad)), -40008, "padding byte 0");
    let mut big_pad = vec![33u8; 64];
    big_pad[0] = b'a';
    assert_eq!(decrypt(&raw(&big_pad)), -40008, "padding byte 33");
    let mut uneven = vec![b'a'; 32];
    uneven[31] = 3;
    uneven[30] = 3;
    uneven[29] = 2;
    assert_eq!(decrypt(&raw(&uneven)), -40008, "padding bytes that differ");
    let mut long_len = vec![b'r'; 16];
    long_len.extend_from_slice(&1000u32.to_be_bytes());
    long_len.extend_from_slice(b"short");
    pad(&mut long_len);
    assert_eq!(decrypt(&raw(&long_len)), -40008, "length field past the end");
    // Receive id mismatch, and a wrong key.
    assert_eq!(c.decrypt_for(ECHOSTR_A, b"wx_other").unwrap_err().code(), -40005);
    let other = CallbackCipher::new(EncodingAesKey::parse(&"a".repeat(43)).unwrap());
    assert!(other.decrypt_for(ECHOSTR_A, RECEIVE_ID).is_err(), "a wrong key must not decrypt");
    // Signature mismatch.
    assert_eq!(verify_signature(&token(), "1", "2", "3", "00").unwrap_err().code(), -40001);
}

#[test]
fn an_aligned_message_gets_a_full_block_of_padding() {
    let mut buf = vec![1u8; 64];
    pad(&mut buf);
    assert_eq!(buf.len(), 96);
    assert!(buf[64..].iter().all(|&b| b == 32));
    assert_eq!(unpad(&buf).unwrap().len(), 64);
}

#[test]
fn the_base64_decoder_is_as_strict_as_the_reference_one() {
    for (text, ok) in [
        ("QQ==", true),
        ("QUI=", true),
        ("QUJD", true),
        ("", true),
        ("QR==", false), // non-canonical trailing bits
        ("QUJ=", false),
        ("QQ=", false),
        ("QQ", false),
        ("Q===", false),
        ("QQ==QQ==", false),
        ("QU JD", false),
        ("QUJD\n", false),
        ("QU-_", false),
    ] {
        assert_eq!(decode_base64(text.as_bytes()).is_ok(), ok, "{text:?}");
        assert_eq!(REFERENCE_BASE64.decode(text).is_ok(), ok, "reference {text:?}");
    }
}

#[test]
fn upper_case_signatures_verify_and_other_lengths_do_not() {
    let sig = signature(&token(), "1409659589", "263014780", ECHOSTR_A);
    verify_signature(&token(), "1409659589", "263014780", ECHOSTR_A, &sig.to_ascii_uppercase()).unwrap();
    for bad in [&sig[..39], &format!("{sig}0"), ""] {
        assert_eq!(
            verify_signature(&token(), "1409659589", "263014780", ECHOSTR_A, bad),
            Err(CryptoError::ValidateSignature)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn the_simd_base64_decodes_and_encodes_exactly_like_the_reference(text in "[A-Za-z0-9+/=]{0,80}|.{0,40}", bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        prop_assert_eq!(decode_base64(text.as_bytes()).ok(), REFERENCE_BASE64.decode(&text).ok());
        let encoded = REFERENCE_BASE64.encode(&bytes);
        prop_assert_eq!(BASE64.encode_to_string(&bytes), encoded.clone());
        prop_assert_eq!(decode_base64(encoded.as_bytes()).unwrap(), bytes);
    }

    #[test]
    fn encrypting_into_a_buffer_appends_what_encrypt_returns(msg in proptest::collection::vec(any::<u8>(), 0..600), seed in any::<u64>()) {
        let c = cipher();
        let expected = c.encrypt(&msg, RECEIVE_ID, &mut rand::rngs::StdRng::seed_from_u64(seed));
        let mut out = b"prefix".to_vec();
        c.encrypt_into(&msg, RECEIVE_ID, &mut rand::rngs::StdRng::seed_from_u64(seed), &mut out);
        prop_assert_eq!(&out[..6], b"prefix");
        prop_assert_eq!(&out[6..], expected.as_bytes());
    }

    #[test]
    fn any_message_and_receive_id_round_trip(msg in proptest::collection::vec(any::<u8>(), 0..2048), rid in proptest::collection::vec(any::<u8>(), 0..64), seed in any::<u64>()) {
        let c = cipher();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let enc = c.encrypt(&msg, &rid, &mut rng);
        prop_assert_eq!(c.decrypt_for(&enc, &rid).unwrap(), msg);
    }

    #[test]
    fn decrypt_and_verify_never_panic_on_arbitrary_input(s in ".{0,400}", bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let c = cipher();
        let _ = c.decrypt(&s);
        let _ = c.decrypt(&REFERENCE_BASE64.encode(&bytes));
        let _ = verify_signature(&token(), &s, &s, &s, &s);
        let _ = EncodingAesKey::parse(&s);
        let _ = xml::field(&s, "Encrypt");
    }
}

/// Cases per property: `PROPTEST_CASES` when set (CI's long run), else a quick default.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
}
