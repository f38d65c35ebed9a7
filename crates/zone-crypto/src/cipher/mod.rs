//! The classic WeCom callback cipher (`protocol/app-side.md` §4): SHA1 signature over the sorted
//! `[token, timestamp, nonce, encrypt]`, AES-256-CBC with the key from a 43-character
//! EncodingAESKey, IV = the key's first 16 bytes, PKCS#7 to 32-byte blocks, and the plaintext frame
//! `random16 ‖ u32 BE length ‖ msg ‖ receive_id`.
//!
//! Errors are typed inside ([`CryptoError`], mapped to the official −40001…−40011 codes) and must be
//! made opaque by whoever answers a peer. Nothing here logs.

mod frame;
pub mod xml;

#[cfg(test)]
mod tests;

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use base64::Engine as _;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use frame::{BLOCK, pad, unpad};

/// The Base64 of `msg_encrypt`: standard alphabet, padded.
const BASE64: base64_simd::Base64 = base64_simd::STANDARD;

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// A failure of the callback cipher, in the official library's numbering (app-side.md §4.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// −40001: the signature does not match.
    #[error("signature check failed")]
    ValidateSignature,
    /// −40002: the XML envelope could not be parsed.
    #[error("XML parse failed")]
    ParseXml,
    /// −40003: the signature could not be computed.
    #[error("computing the signature failed")]
    ComputeSignature,
    /// −40004: the EncodingAESKey is not 43 characters of `[A-Za-z0-9]`.
    #[error("illegal AESKey")]
    IllegalAesKey,
    /// −40005: the receive id in the plaintext is not the expected one.
    #[error("ReceiveId check failed")]
    ValidateReceiveId,
    /// −40006: encryption failed.
    #[error("AES encryption failed")]
    EncryptAes,
    /// −40007: decryption failed (e.g. the ciphertext is not a whole number of blocks).
    #[error("AES decryption failed")]
    DecryptAes,
    /// −40008: the decrypted buffer is malformed (padding or length field).
    #[error("illegal buffer")]
    IllegalBuffer,
    /// −40009: Base64 encoding failed.
    #[error("Base64 encoding failed")]
    EncodeBase64,
    /// −40010: the ciphertext is not valid Base64.
    #[error("Base64 decoding failed")]
    DecodeBase64,
    /// −40011: the reply XML could not be built.
    #[error("generating the reply XML failed")]
    GenReturnXml,
}

impl CryptoError {
    /// The official numeric code (−40001…−40011).
    pub fn code(self) -> i32 {
        match self {
            Self::ValidateSignature => -40001,
            Self::ParseXml => -40002,
            Self::ComputeSignature => -40003,
            Self::IllegalAesKey => -40004,
            Self::ValidateReceiveId => -40005,
            Self::EncryptAes => -40006,
            Self::DecryptAes => -40007,
            Self::IllegalBuffer => -40008,
            Self::EncodeBase64 => -40009,
            Self::DecodeBase64 => -40010,
            Self::GenReturnXml => -40011,
        }
    }
}

/// A 43-character EncodingAESKey, parsed. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct EncodingAesKey(Zeroizing<[u8; 32]>);

impl EncodingAesKey {
    /// Parses the 43-character `[A-Za-z0-9]` form: `AESKey = Base64Decode(key + "=")`.
    pub fn parse(encoded: &str) -> Result<Self, CryptoError> {
        if encoded.len() != 43 || !encoded.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(CryptoError::IllegalAesKey);
        }
        let mut padded = Zeroizing::new(String::with_capacity(44));
        padded.push_str(encoded);
        padded.push('=');
        // The last character carries 2 bits that the decoder may reject as non-canonical;
        // WeCom's libraries ignore them, so decode leniently.
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
        );
        let bytes = Zeroizing::new(engine.decode(padded.as_bytes()).map_err(|_| CryptoError::IllegalAesKey)?);
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| CryptoError::IllegalAesKey)?;
        Ok(Self(Zeroizing::new(key)))
    }

    /// The 32 key bytes, for the cipher and for known-answer tests.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for EncodingAesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncodingAesKey(<redacted>)")
    }
}

/// The plaintext of a decrypted message: the message bytes and the trailing receive id.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    /// The message (`msg`), usually UTF-8 XML or JSON.
    pub msg: Vec<u8>,
    /// The receive id that followed the message (a corp id, suite id or empty).
    pub receive_id: Vec<u8>,
}

/// The WeCom callback cipher for one EncodingAESKey.
#[derive(Clone, Debug)]
pub struct CallbackCipher {
    key: EncodingAesKey,
}

impl CallbackCipher {
    /// A cipher for this key.
    pub fn new(key: EncodingAesKey) -> Self {
        Self { key }
    }

    /// Encrypts `msg` for `receive_id` with 16 fresh random bytes from `rng`; returns `msg_encrypt`.
    pub fn encrypt(&self, msg: &[u8], receive_id: &[u8], rng: &mut impl RngCore) -> String {
        let mut random = [0u8; 16];
        rng.fill_bytes(&mut random);
        self.encrypt_with_random(&random, msg, receive_id)
    }

    /// Encrypts with the given 16 random bytes (for known-answer tests; production uses [`Self::encrypt`]).
    pub fn encrypt_with_random(&self, random: &[u8; 16], msg: &[u8], receive_id: &[u8]) -> String {
        BASE64.encode_to_string(self.encrypt_frame(random, msg, receive_id))
    }

    /// Encrypts `msg` for `receive_id` with 16 fresh random bytes from `rng` and appends the Base64
    /// `msg_encrypt` to `out`, so that a caller can write it straight into a message body.
    pub fn encrypt_into(&self, msg: &[u8], receive_id: &[u8], rng: &mut impl RngCore, out: &mut Vec<u8>) {
        let mut random = [0u8; 16];
        rng.fill_bytes(&mut random);
        BASE64.encode_append(self.encrypt_frame(&random, msg, receive_id), out);
    }

    /// The raw ciphertext of the padded frame.
    fn encrypt_frame(&self, random: &[u8; 16], msg: &[u8], receive_id: &[u8]) -> Vec<u8> {
        // Not `Zeroizing`: the buffer is sized so that it never reallocates, and it is encrypted in
        // place, so what is left to drop is ciphertext only.
        let mut buf = frame::build(random, msg, receive_id);
        let len = buf.len();
        let key = self.key.expose_bytes();
        let enc = Aes256CbcEnc::new(key.into(), key[..16].into());
        enc.encrypt_padded_mut::<NoPadding>(&mut buf, len).expect("frame::build pads to a whole number of AES blocks");
        buf
    }

    /// Decrypts `msg_encrypt` and splits the frame, without checking the receive id.
    pub fn decrypt(&self, msg_encrypt: &str) -> Result<Opened, CryptoError> {
        self.decrypt_decoded(decode_base64(msg_encrypt.as_bytes())?)
    }

    /// Decrypts a ciphertext already decoded with [`decode_base64`] and splits the frame, without
    /// checking the receive id. The buffer is decrypted in place and zeroized except for the message.
    pub fn decrypt_decoded(&self, ciphertext: Vec<u8>) -> Result<Opened, CryptoError> {
        let mut buf = Zeroizing::new(ciphertext);
        if buf.is_empty() || !buf.len().is_multiple_of(16) {
            return Err(CryptoError::DecryptAes);
        }
        let key = self.key.expose_bytes();
        let dec = Aes256CbcDec::new(key.into(), key[..16].into());
        dec.decrypt_padded_mut::<NoPadding>(&mut buf).map_err(|_| CryptoError::DecryptAes)?;
        frame::split(buf)
    }

    /// Decrypts and requires the receive id to be `expected` (constant-time compare).
    pub fn decrypt_for(&self, msg_encrypt: &str, expected_receive_id: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let opened = self.decrypt(msg_encrypt)?;
        if !ct_eq(&opened.receive_id, expected_receive_id) {
            return Err(CryptoError::ValidateReceiveId);
        }
        Ok(opened.msg)
    }
}

/// `lowercase_hex(SHA1(concat(sorted([token, timestamp, nonce, encrypt]))))` (app-side.md §4.4).
pub fn signature(token: &SecretString, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    signature_bytes(token, timestamp, nonce, encrypt.as_bytes())
}

/// [`signature`] over `encrypt` as raw bytes (as it sits in a message body).
pub fn signature_bytes(token: &SecretString, timestamp: &str, nonce: &str, encrypt: &[u8]) -> String {
    let hex = signature_hex(token, timestamp, nonce, encrypt);
    String::from_utf8(hex.to_vec()).expect("hex is ASCII")
}

/// Checks `given` against the expected signature in constant time.
pub fn verify_signature(
    token: &SecretString,
    timestamp: &str,
    nonce: &str,
    encrypt: &str,
    given: &str,
) -> Result<(), CryptoError> {
    verify_signature_bytes(token, timestamp, nonce, encrypt.as_bytes(), given)
}

/// [`verify_signature`] over `encrypt` as raw bytes (as it sits in a message body), so that a caller
/// need not check the bytes are UTF-8 first: sorting and hashing are over bytes either way.
pub fn verify_signature_bytes(
    token: &SecretString,
    timestamp: &str,
    nonce: &str,
    encrypt: &[u8],
    given: &str,
) -> Result<(), CryptoError> {
    let expected = signature_hex(token, timestamp, nonce, encrypt);
    // Upper-case hex digits are accepted; the length is not secret, the digits are compared in
    // constant time.
    let mut lower = [0u8; 40];
    let matches = given.len() == lower.len() && {
        for (l, g) in lower.iter_mut().zip(given.bytes()) {
            *l = g.to_ascii_lowercase();
        }
        ct_eq(&lower, &expected)
    };
    if matches { Ok(()) } else { Err(CryptoError::ValidateSignature) }
}

/// The signature as 40 lowercase hex bytes. `str` order is byte order, so sorting bytes is the
/// documented sort.
fn signature_hex(token: &SecretString, timestamp: &str, nonce: &str, encrypt: &[u8]) -> [u8; 40] {
    let mut parts = [token.expose_secret().as_bytes(), timestamp.as_bytes(), nonce.as_bytes(), encrypt];
    parts.sort_unstable();
    let mut sha = Sha1::new();
    for part in parts {
        sha.update(part);
    }
    let mut hex = [0u8; 40];
    hex::encode_to_slice(sha.finalize(), &mut hex).expect("40 hex digits for 20 bytes");
    hex
}

/// Decodes the standard, padded Base64 of a `msg_encrypt` (−40010 when it is not). SIMD-accelerated
/// where the CPU allows; strict like the `base64` crate's `STANDARD` engine (canonical padding and
/// trailing bits, no whitespace), which the tests cross-check.
pub fn decode_base64(msg_encrypt: &[u8]) -> Result<Vec<u8>, CryptoError> {
    BASE64.decode_to_vec(msg_encrypt).map_err(|_| CryptoError::DecodeBase64)
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A token of 1–32 `[A-Za-z0-9]` characters (app-side.md §4.1), kept secret.
pub fn parse_token(raw: &str) -> Result<SecretString, &'static str> {
    if raw.is_empty() || raw.len() > 32 || !raw.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("must be 1 to 32 characters of [A-Za-z0-9]");
    }
    Ok(SecretString::from(raw.to_owned()))
}
