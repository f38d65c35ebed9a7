//! The local codec (DESIGN.md "The local codec"): the project's own wire format between the program
//! and the local zone, standing in for the closed vendor SDK's. It is **not** WeCom's format.
//!
//! A sealed message travels as headers `ww-timestamp`, `ww-nonce`, `ww-secret-ver`, `ww-signature`
//! and the body `{"encrypt":"<base64>"}`, where `encrypt` is the WeCom callback cipher under the key
//! of that version with the corp id as receive id, and the signature is the callback signature over
//! `[token, timestamp, nonce, encrypt]`. Opening checks, in order: the headers parse, the timestamp is
//! within the window, the key version is known, the body parses, the signature matches, the nonce is
//! fresh, and the ciphertext decrypts. Any failure is a [`CodecError`]; peers see none of its detail.
//! Only the replay cache ([`replay`]) keeps state, and only a correctly signed message changes it.

mod replay;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rand::Rng;
use rand::distributions::Alphanumeric;
use secrecy::SecretString;

use crate::cipher::{self as crypto, CallbackCipher, CryptoError};
use crate::clock::{Clock, SystemClock};
pub use replay::ReplayCache;

/// Header carrying the unix time of sealing.
pub const H_TIMESTAMP: &str = "ww-timestamp";
/// Header carrying the 1–32 character nonce.
pub const H_NONCE: &str = "ww-nonce";
/// Header carrying the decimal key version.
pub const H_SECRET_VER: &str = "ww-secret-ver";
/// Header carrying the lowercase hex SHA1 signature.
pub const H_SIGNATURE: &str = "ww-signature";

/// Why a sealed message was refused. Detail for logs (by code) and tests only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A required `ww-*` header is absent or not text.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header does not have its documented form.
    #[error("malformed header {0}")]
    MalformedHeader(&'static str),
    /// The timestamp is outside the replay window.
    #[error("timestamp outside the window")]
    Stale,
    /// The key version is not configured.
    #[error("unknown key version")]
    UnknownKeyVersion,
    /// The nonce was already seen within the window.
    #[error("replayed nonce")]
    Replayed,
    /// The replay cache is full of live nonces; refusing rather than forgetting one.
    #[error("replay cache full")]
    ReplayCacheFull,
    /// The body is not `{"encrypt":"…"}`.
    #[error("malformed body")]
    MalformedBody,
    /// Signature, decryption or frame failure.
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
}

impl CodecError {
    /// A stable numeric code for logs: the crypto codes, or −41001… for the codec's own checks.
    pub fn code(&self) -> i32 {
        match self {
            Self::MissingHeader(_) => -41001,
            Self::MalformedHeader(_) => -41002,
            Self::Stale => -41003,
            Self::UnknownKeyVersion => -41004,
            Self::Replayed => -41005,
            Self::ReplayCacheFull => -41006,
            Self::MalformedBody => -41007,
            Self::Crypto(e) => e.code(),
        }
    }
}

/// A nonce: 1–32 characters of `[A-Za-z0-9]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nonce(String);

impl Nonce {
    /// Parses a received nonce.
    pub fn parse(raw: &str) -> Result<Self, CodecError> {
        if raw.is_empty() || raw.len() > 32 || !raw.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(CodecError::MalformedHeader(H_NONCE));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A fresh random 16-character nonce.
    pub fn random() -> Self {
        Self(rand::thread_rng().sample_iter(&Alphanumeric).take(16).map(char::from).collect())
    }

    /// The nonce text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The default replay window (`sdk.local.replay_window_secs`): WeCom's ±300 s.
pub const DEFAULT_WINDOW_SECS: i64 = 300;
/// The default replay-cache capacity (`sdk.local.nonce_cache_capacity`): 2 000 requests a second
/// for ever (the sizing test in `replay.rs`).
pub const DEFAULT_NONCE_CAPACITY: usize = 1_250_000;

/// A sealed message: headers (lower-case names) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// `ww-*` headers in a fixed order.
    pub headers: Vec<(String, String)>,
    /// `{"encrypt":"…"}`.
    pub body: Vec<u8>,
}

/// An opened message.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    /// The plaintext message.
    pub message: Vec<u8>,
    /// The receive id it was sealed for (the corp id).
    pub receive_id: String,
    /// The key version it was sealed with.
    pub key_ver: u32,
}

/// Settings of one codec end.
pub struct CodecSettings {
    /// The shared signing token.
    pub token: SecretString,
    /// Ciphers by key version; sealing uses the highest.
    pub keys: BTreeMap<u32, CallbackCipher>,
    /// Accepted clock skew in seconds (±).
    pub window_secs: i64,
    /// Most nonces remembered at once. A nonce is remembered until its message's timestamp + the
    /// window (at most 2 × window + 1 s after it arrived), so `rate × (2 × window + 1)` entries
    /// admit `rate` messages per second from any peer whose clock is within the window.
    pub nonce_capacity: usize,
}

/// One end of the local codec, with its own replay cache.
pub struct LocalCodec {
    token: SecretString,
    keys: BTreeMap<u32, CallbackCipher>,
    window: i64,
    clock: Arc<dyn Clock>,
    seen: Mutex<Seen>,
    not_before: i64,
}

/// The replay cache, and what of it outlives the process.
struct Seen {
    cache: ReplayCache,
    log: Option<Arc<dyn AcceptLog>>,
}

impl LocalCodec {
    /// A codec on the system clock.
    pub fn new(settings: CodecSettings) -> Self {
        Self::with_clock(settings, Arc::new(SystemClock))
    }

    /// A codec on the given clock.
    pub fn with_clock(settings: CodecSettings, clock: Arc<dyn Clock>) -> Self {
        assert!(!settings.keys.is_empty(), "config validation guarantees at least one key");
        Self {
            token: settings.token,
            keys: settings.keys,
            window: settings.window_secs,
            clock,
            seen: Mutex::new(Seen { cache: ReplayCache::new(settings.nonce_capacity), log: None }),
            not_before: i64::MIN,
        }
    }

    /// How full the replay cache is: `(live nonces, capacity)`. Live nonces are forgotten as their
    /// window passes, so the fill follows the request rate of the last `2 × window` seconds.
    pub fn replay_fill(&self) -> (usize, usize) {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        (seen.cache.len(), seen.cache.capacity())
    }

    /// Makes the replay protection outlive the process: `log` is told of every accepted message,
    /// and what a previous run's log kept comes back here as `newest` (the latest timestamp it
    /// accepted) and `nonces` (those accepted with that timestamp). Every message older than
    /// `newest` is then refused as stale and those nonces as replayed, so no message a previous run
    /// accepted opens again. The cost: a message sealed before the newest one a previous run
    /// accepted (a peer whose clock lags, or a delivery delayed across the restart) is refused.
    #[must_use]
    pub fn remembering(mut self, newest: i64, nonces: Vec<Nonce>, log: Arc<dyn AcceptLog>) -> Self {
        let now = self.clock.now_secs();
        let seen = self.seen.get_mut().unwrap_or_else(|p| p.into_inner());
        for nonce in &nonces {
            let _ = seen.cache.insert(nonce, now, newest.saturating_add(self.window));
        }
        seen.log = Some(log);
        self.not_before = newest;
        self
    }

    /// Seals `message` for `receive_id` with the newest key, a fresh nonce and the current time.
    pub fn seal(&self, message: &[u8], receive_id: &str) -> Sealed {
        let (&ver, cipher) = self.keys.last_key_value().expect("at least one key");
        self.seal_with(ver, cipher, message, receive_id, self.clock.now_secs(), &Nonce::random())
    }

    /// Seals with an explicit key version, time and nonce (tests and forgery checks).
    pub fn seal_at(&self, ver: u32, message: &[u8], receive_id: &str, timestamp: i64, nonce: &Nonce) -> Option<Sealed> {
        let cipher = self.keys.get(&ver)?;
        Some(self.seal_with(ver, cipher, message, receive_id, timestamp, nonce))
    }

    fn seal_with(
        &self,
        ver: u32,
        cipher: &CallbackCipher,
        message: &[u8],
        receive_id: &str,
        timestamp: i64,
        nonce: &Nonce,
    ) -> Sealed {
        let ts = timestamp.to_string();
        // Base64 has no character that JSON escapes, so the ciphertext is written straight into the
        // body and signed there; going through `serde_json` would copy it once more and scan it for
        // escapes (a third of `seal`'s time at 64 KiB, BENCHMARKS.md).
        let mut body = Vec::with_capacity(BODY_PREFIX.len() + (message.len() + receive_id.len()) * 4 / 3 + 64);
        body.extend_from_slice(BODY_PREFIX);
        cipher.encrypt_into(message, receive_id.as_bytes(), &mut rand::thread_rng(), &mut body);
        let signature = crypto::signature_bytes(&self.token, &ts, nonce.as_str(), &body[BODY_PREFIX.len()..]);
        body.extend_from_slice(BODY_SUFFIX);
        Sealed {
            headers: vec![
                (H_TIMESTAMP.to_owned(), ts),
                (H_NONCE.to_owned(), nonce.as_str().to_owned()),
                (H_SECRET_VER.to_owned(), ver.to_string()),
                (H_SIGNATURE.to_owned(), signature),
            ],
            body,
        }
    }

    /// Verifies and opens a sealed message. `headers` are matched by exact lower-case name.
    pub fn open(&self, headers: &[(String, String)], body: &[u8]) -> Result<Opened, CodecError> {
        let header = |name: &'static str| {
            headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).ok_or(CodecError::MissingHeader(name))
        };
        let ts_raw = header(H_TIMESTAMP)?;
        let nonce = Nonce::parse(header(H_NONCE)?)?;
        let ver_raw = header(H_SECRET_VER)?;
        let signature = header(H_SIGNATURE)?;
        let ts: i64 = parse_decimal(ts_raw).ok_or(CodecError::MalformedHeader(H_TIMESTAMP))?;
        let ver: u32 = parse_decimal(ver_raw).ok_or(CodecError::MalformedHeader(H_SECRET_VER))?;
        let now = self.clock.now_secs();
        if !within_window(now, ts, self.window) || ts < self.not_before {
            return Err(CodecError::Stale);
        }
        let cipher = self.keys.get(&ver).ok_or(CodecError::UnknownKeyVersion)?;
        let body = Body::parse(body)?;
        crypto::verify_signature_bytes(&self.token, ts_raw, nonce.as_str(), body.encrypt(), signature)?;
        // Only a correctly signed message may occupy the replay cache. Its nonce is needed for as
        // long as the message passes the timestamp check: until ts + window.
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.cache.insert(&nonce, now, ts.saturating_add(self.window))?;
        if let Some(log) = &seen.log {
            log.accepted(ts, &nonce);
        }
        drop(seen);
        let opened = match body {
            Body::Decoded { ciphertext, .. } => cipher.decrypt_decoded(ciphertext)?,
            Body::Text(encrypt) => cipher.decrypt(&encrypt)?,
        };
        let receive_id = String::from_utf8(opened.receive_id).map_err(|_| CryptoError::ValidateReceiveId)?;
        Ok(Opened { message: opened.msg, receive_id, key_ver: ver })
    }
}

/// Told of every message a codec accepts, in order, under its replay lock: what a store keeps to
/// resume the replay protection after a restart ([`LocalCodec::remembering`]).
pub trait AcceptLog: Send + Sync {
    /// A message with `timestamp` and `nonce` was accepted.
    fn accepted(&self, timestamp: i64, nonce: &Nonce);
}

/// `|now − ts| ≤ window`, without overflow for any pair of timestamps.
pub fn within_window(now: i64, ts: i64, window: i64) -> bool {
    now.checked_sub(ts).is_some_and(|skew| skew.unsigned_abs() <= window.unsigned_abs())
}

/// What a sealed body starts with, up to the first character of `encrypt`.
const BODY_PREFIX: &[u8] = b"{\"encrypt\":\"";
/// What a sealed body ends with, after the last character of `encrypt`.
const BODY_SUFFIX: &[u8] = b"\"}";

/// A parsed `{"encrypt":"…"}` body.
enum Body<'a> {
    /// The body as [`LocalCodec::seal`] writes it, whose `encrypt` is valid Base64 (so it holds no
    /// JSON escape and is exactly what a JSON parser would read); already decoded.
    Decoded { text: &'a [u8], ciphertext: Vec<u8> },
    /// Any other JSON spelling of the object, parsed by `serde_json`; decoded when decrypted.
    Text(Cow<'a, str>),
}

impl<'a> Body<'a> {
    /// Parses the body. The common form is recognised without a JSON parser: a Base64 decoder
    /// validates the 87 KB of a 64 KiB message's `encrypt` as it decodes them (SIMD), where the
    /// parser would scan them byte by byte; decoding before the signature check changes nothing.
    fn parse(body: &'a [u8]) -> Result<Self, CodecError> {
        let text = body.strip_prefix(BODY_PREFIX).and_then(|rest| rest.strip_suffix(BODY_SUFFIX));
        if let Some(text) = text
            && let Ok(ciphertext) = crypto::decode_base64(text)
        {
            return Ok(Self::Decoded { text, ciphertext });
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Json<'a> {
            #[serde(borrow)]
            encrypt: Cow<'a, str>,
        }
        serde_json::from_slice::<Json<'_>>(body).map(|b| Self::Text(b.encrypt)).map_err(|_| CodecError::MalformedBody)
    }

    /// The `encrypt` text, as signed.
    fn encrypt(&self) -> &[u8] {
        match self {
            Self::Decoded { text, .. } => text,
            Self::Text(text) => text.as_bytes(),
        }
    }
}

fn parse_decimal<T: std::str::FromStr>(raw: &str) -> Option<T> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::cipher::EncodingAesKey;
    use crate::clock::ManualClock;

    fn settings(capacity: usize) -> CodecSettings {
        let mut keys = BTreeMap::new();
        keys.insert(1, CallbackCipher::new(EncodingAesKey::parse(&"a".repeat(43)).unwrap()));
        keys.insert(2, CallbackCipher::new(EncodingAesKey::parse(&"b".repeat(43)).unwrap()));
        CodecSettings { token: SecretString::from("tok"), keys, window_secs: 300, nonce_capacity: capacity }
    }

    fn pair(capacity: usize) -> (LocalCodec, LocalCodec, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        (
            LocalCodec::with_clock(settings(capacity), clock.clone()),
            LocalCodec::with_clock(settings(capacity), clock.clone()),
            clock,
        )
    }

    #[test]
    fn a_sealed_message_opens_once_with_its_receive_id_and_the_newest_key() {
        let (a, b, _) = pair(16);
        let sealed = a.seal(b"{\"x\":1}", "wwcorp");
        let opened = b.open(&sealed.headers, &sealed.body).unwrap();
        assert_eq!(opened.message, b"{\"x\":1}");
        assert_eq!(opened.receive_id, "wwcorp");
        assert_eq!(opened.key_ver, 2);
        assert_eq!(b.open(&sealed.headers, &sealed.body), Err(CodecError::Replayed));
    }

    #[test]
    fn the_sealed_body_is_exactly_the_json_object_serde_would_write() {
        let (a, _, _) = pair(16);
        let sealed = a.seal(&[7u8; 300], "wwcorp");
        let parsed: serde_json::Value = serde_json::from_slice(&sealed.body).unwrap();
        let encrypt = parsed["encrypt"].as_str().unwrap();
        assert_eq!(sealed.body, serde_json::to_vec(&serde_json::json!({ "encrypt": encrypt })).unwrap());
    }

    #[test]
    fn a_body_whose_encrypt_has_json_escapes_still_opens() {
        let (a, b, _) = pair(16);
        let sealed = a.seal(b"m", "c");
        let parsed: serde_json::Value = serde_json::from_slice(&sealed.body).unwrap();
        let encrypt = parsed["encrypt"].as_str().unwrap();
        let escaped = format!(r#"{{"encrypt":"\u{:04x}{}"}}"#, encrypt.as_bytes()[0], &encrypt[1..]);
        assert_eq!(b.open(&sealed.headers, escaped.as_bytes()).unwrap().message, b"m");
    }

    #[test]
    fn stale_future_forged_and_unknown_version_messages_are_refused() {
        let (a, b, clock) = pair(16);
        let now = clock.now_secs();
        let old = a.seal_at(1, b"m", "c", now - 301, &Nonce::random()).unwrap();
        assert_eq!(b.open(&old.headers, &old.body), Err(CodecError::Stale));
        let future = a.seal_at(1, b"m", "c", now + 301, &Nonce::random()).unwrap();
        assert_eq!(b.open(&future.headers, &future.body), Err(CodecError::Stale));
        let edge = a.seal_at(1, b"m", "c", now - 300, &Nonce::random()).unwrap();
        assert!(b.open(&edge.headers, &edge.body).is_ok());

        let mut forged = a.seal(b"m", "c");
        forged.headers[3].1 = "0".repeat(40);
        assert_eq!(b.open(&forged.headers, &forged.body), Err(CodecError::Crypto(CryptoError::ValidateSignature)));

        let mut wrong_ver = a.seal(b"m", "c");
        wrong_ver.headers[2].1 = "9".into();
        assert_eq!(b.open(&wrong_ver.headers, &wrong_ver.body), Err(CodecError::UnknownKeyVersion));

        let mut swapped_ver = a.seal(b"m", "c");
        swapped_ver.headers[2].1 = "1".into(); // signed under the token, but encrypted with key 2
        assert!(b.open(&swapped_ver.headers, &swapped_ver.body).is_err());
    }

    /// Review finding 5: `(now - ts).abs()` wrapped, so `now − 2^63` passed the window (and the
    /// nonce was forgotten at once); `i64::MIN` panicked in a debug build.
    #[test]
    fn extreme_timestamps_are_stale_and_never_panic() {
        let (a, b, clock) = pair(16);
        let now = clock.now_secs();
        for ts in [now.wrapping_sub(i64::MIN), i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1, now - 301, now + 301] {
            let sealed = a.seal_at(2, b"m", "c", ts, &Nonce::random()).unwrap();
            assert_eq!(b.open(&sealed.headers, &sealed.body), Err(CodecError::Stale), "ts {ts}");
            assert_eq!(b.open(&sealed.headers, &sealed.body), Err(CodecError::Stale), "ts {ts}, again");
        }
    }

    /// Review finding 6: the replay cache lived in memory, so a message accepted before a restart
    /// opened again after it.
    #[test]
    fn no_message_accepted_before_a_restart_opens_after_it() {
        /// What a durable log keeps: the newest timestamp and its nonces.
        #[derive(Default)]
        struct Kept(Mutex<(i64, Vec<Nonce>)>);
        impl AcceptLog for Kept {
            fn accepted(&self, ts: i64, nonce: &Nonce) {
                let mut kept = self.0.lock().unwrap();
                if ts > kept.0 {
                    *kept = (ts, Vec::new());
                }
                if ts == kept.0 {
                    kept.1.push(nonce.clone());
                }
            }
        }
        let restart = |log: &Arc<Kept>, clock: &Arc<ManualClock>| {
            let (newest, nonces) = log.0.lock().unwrap().clone();
            LocalCodec::with_clock(settings(16), clock.clone()).remembering(newest, nonces, log.clone())
        };
        let log = Arc::new(Kept::default());
        let (a, _, clock) = pair(16);
        let before = restart(&log, &clock);
        let now = clock.now_secs();
        let older = a.seal_at(2, b"m", "c", now - 5, &Nonce::random()).unwrap();
        let newest = a.seal_at(2, b"m", "c", now, &Nonce::random()).unwrap();
        let newest_too = a.seal_at(2, b"m", "c", now, &Nonce::random()).unwrap();
        for sealed in [&newest, &older, &newest_too] {
            before.open(&sealed.headers, &sealed.body).unwrap();
        }
        drop(before);
        clock.advance(2_000);
        let after = restart(&log, &clock);
        assert_eq!(after.open(&older.headers, &older.body), Err(CodecError::Stale));
        assert_eq!(after.open(&newest.headers, &newest.body), Err(CodecError::Replayed));
        assert_eq!(after.open(&newest_too.headers, &newest_too.body), Err(CodecError::Replayed));
        let same_second = a.seal_at(2, b"m", "c", now, &Nonce::random()).unwrap();
        assert!(after.open(&same_second.headers, &same_second.body).is_ok(), "a new nonce of that second opens");
        let fresh = a.seal(b"m", "c");
        assert!(after.open(&fresh.headers, &fresh.body).is_ok());
        drop(after);
        let again = restart(&log, &clock);
        for sealed in [&fresh, &newest, &same_second] {
            assert!(again.open(&sealed.headers, &sealed.body).is_err());
        }
    }

    #[test]
    fn a_forged_message_does_not_burn_the_nonce_of_a_real_one() {
        let (a, b, clock) = pair(16);
        let nonce = Nonce::random();
        let real = a.seal_at(2, b"m", "c", clock.now_secs(), &nonce).unwrap();
        let mut forged = real.clone();
        forged.headers[3].1 = "f".repeat(40);
        assert!(b.open(&forged.headers, &forged.body).is_err());
        assert!(b.open(&real.headers, &real.body).is_ok());
    }

    #[test]
    fn the_replay_cache_forgets_nonces_after_the_window_and_refuses_when_full() {
        let (a, b, clock) = pair(2);
        let n = Nonce::random();
        let first = a.seal_at(2, b"m", "c", clock.now_secs(), &n).unwrap();
        b.open(&first.headers, &first.body).unwrap();
        let second = a.seal(b"m", "c");
        b.open(&second.headers, &second.body).unwrap();
        let third = a.seal(b"m", "c");
        assert_eq!(b.open(&third.headers, &third.body), Err(CodecError::ReplayCacheFull));
        clock.advance(601_000);
        let later = a.seal_at(2, b"m", "c", clock.now_secs(), &n).unwrap();
        assert!(b.open(&later.headers, &later.body).is_ok(), "the old nonce is reusable once it cannot replay");
    }

    #[test]
    fn missing_and_malformed_headers_and_bodies_are_refused() {
        let (a, b, _) = pair(16);
        let sealed = a.seal(b"m", "c");
        for i in 0..4 {
            let mut h = sealed.headers.clone();
            h.remove(i);
            assert!(matches!(b.open(&h, &sealed.body), Err(CodecError::MissingHeader(_))));
        }
        let mut h = sealed.headers.clone();
        h[1].1 = "bad nonce!".into();
        assert_eq!(b.open(&h, &sealed.body), Err(CodecError::MalformedHeader(H_NONCE)));
        let mut h = sealed.headers.clone();
        h[0].1 = "+12".into();
        assert_eq!(b.open(&h, &sealed.body), Err(CodecError::MalformedHeader(H_TIMESTAMP)));
        assert_eq!(b.open(&sealed.headers, b"{\"encrypt\":1}"), Err(CodecError::MalformedBody));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)))]

        #[test]
        fn the_window_check_is_exact_for_any_pair_of_timestamps(now in any::<i64>(), ts in any::<i64>(), window in 0i64..=86_400) {
            let exact = (i128::from(now) - i128::from(ts)).abs() <= i128::from(window);
            prop_assert_eq!(within_window(now, ts, window), exact);
        }

        #[test]
        fn nonce_parse_accepts_exactly_short_alphanumerics(s in ".{0,40}") {
            let ok = !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric());
            prop_assert_eq!(Nonce::parse(&s).is_ok(), ok);
        }

        #[test]
        fn open_never_panics_on_arbitrary_headers_and_bodies(ts in ".{0,24}", nonce in ".{0,40}", ver in ".{0,12}", sig in ".{0,48}", body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let (_, b, _) = pair(16);
            let headers = vec![(H_TIMESTAMP.into(), ts), (H_NONCE.into(), nonce), (H_SECRET_VER.into(), ver), (H_SIGNATURE.into(), sig)];
            prop_assert!(b.open(&headers, &body).is_err());
        }

        /// The fast path of `Body::parse` reads exactly what `serde_json` reads, or defers to it.
        #[test]
        fn a_body_reads_as_serde_json_reads_it(middle in "[A-Za-z0-9+/=]{0,24}|[A-Za-z0-9+/=\"\\\\ \u{1}é]{0,24}", wrap in any::<bool>()) {
            let body = if wrap { format!(r#"{{"encrypt":"{middle}"}}"#) } else { format!(r#"{{ "encrypt" : "{middle}" }}"#) };
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Reference {
                encrypt: String,
            }
            let reference = serde_json::from_str::<Reference>(&body).ok().map(|r| r.encrypt.into_bytes());
            let ours = Body::parse(body.as_bytes()).ok().map(|b| b.encrypt().to_vec());
            prop_assert_eq!(ours, reference);
        }

        #[test]
        fn any_message_round_trips(msg in proptest::collection::vec(any::<u8>(), 0..1024), rid in "[a-z0-9]{0,20}") {
            let (a, b, _) = pair(16);
            let s = a.seal(&msg, &rid);
            let o = b.open(&s.headers, &s.body).unwrap();
            prop_assert_eq!(o.message, msg);
            prop_assert_eq!(o.receive_id, rid);
        }
    }
}
