//! The plaintext frame `random16 ‖ u32 BE msg_len ‖ msg ‖ receive_id`, padded with strict PKCS#7 to
//! 32-byte blocks (app-side.md §4.2–4.3).

use zeroize::{Zeroize, Zeroizing};

use super::{CryptoError, Opened};

/// The padding block size of the WeCom scheme (not the AES block size).
pub const BLOCK: usize = 32;

/// Builds the padded frame.
pub(super) fn build(random: &[u8; 16], msg: &[u8], receive_id: &[u8]) -> Vec<u8> {
    let len = u32::try_from(msg.len()).expect("messages are far below 4 GiB");
    let mut buf = Vec::with_capacity(20 + msg.len() + receive_id.len() + BLOCK);
    buf.extend_from_slice(random);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(msg);
    buf.extend_from_slice(receive_id);
    pad(&mut buf);
    buf
}

/// Splits a decrypted, still padded frame in place: the message moves to the front of `buf` and is
/// returned in it, so no second copy of the plaintext is made; every other byte (the random prefix,
/// the length, the receive id, the padding and the stale tail) is zeroized, and on failure all of
/// `buf` is.
pub(super) fn split(mut buf: Zeroizing<Vec<u8>>) -> Result<Opened, CryptoError> {
    let body_len = unpad(&buf)?.len();
    if body_len < 20 {
        return Err(CryptoError::IllegalBuffer);
    }
    let len = u32::from_be_bytes([buf[16], buf[17], buf[18], buf[19]]) as usize;
    if len > body_len - 20 {
        return Err(CryptoError::IllegalBuffer);
    }
    let receive_id = buf[20 + len..body_len].to_vec();
    buf.copy_within(20..20 + len, 0);
    buf[len..].zeroize();
    buf.truncate(len);
    Ok(Opened { msg: std::mem::take(&mut *buf), receive_id })
}

/// Appends `pad = 32 − (len mod 32)` bytes of value `pad` (always 1..=32 bytes).
pub fn pad(buf: &mut Vec<u8>) {
    let pad = BLOCK - buf.len() % BLOCK;
    buf.resize(buf.len() + pad, pad as u8);
}

/// Strips strict PKCS#7 padding: the last byte is 1..=32 and every padding byte equals it.
pub fn unpad(buf: &[u8]) -> Result<&[u8], CryptoError> {
    let &last = buf.last().ok_or(CryptoError::IllegalBuffer)?;
    let pad = usize::from(last);
    if pad == 0 || pad > BLOCK || pad > buf.len() {
        return Err(CryptoError::IllegalBuffer);
    }
    let (body, tail) = buf.split_at(buf.len() - pad);
    if tail.iter().any(|&b| b != last) {
        return Err(CryptoError::IllegalBuffer);
    }
    Ok(body)
}
