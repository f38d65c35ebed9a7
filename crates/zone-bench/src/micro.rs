//! A short in-run measurement of the codec against raw AES-256-CBC + SHA1 on the same bytes, so the
//! load report carries the codec ratio of the same run (the criterion benches in `benches/cipher.rs`
//! are the careful version of this).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use secrecy::SecretString;
use sha1::{Digest, Sha1};

use zone_crypto::cipher::{CallbackCipher, EncodingAesKey};
use zone_crypto::codec::{CodecSettings, LocalCodec};

/// Median times of one round trip at one size.
#[derive(Debug, Clone, Copy)]
pub struct CodecRatio {
    /// Bytes of plaintext.
    pub bytes: usize,
    /// `LocalCodec::seal` + `open`.
    pub codec: Duration,
    /// AES-256-CBC encrypt + decrypt + one SHA1 each way, in place.
    pub raw: Duration,
}

impl CodecRatio {
    /// Codec throughput as a fraction of the raw floor's.
    pub fn ratio(&self) -> f64 {
        self.raw.as_secs_f64() / self.codec.as_secs_f64()
    }
}

/// Measures `rounds` round trips of each and keeps the medians.
pub fn codec_ratio(bytes: usize, rounds: usize) -> CodecRatio {
    let key = EncodingAesKey::parse("BenchMicroKey0123456789abcdefghijklmnopqrst").expect("a valid key");
    let raw_key = *key.expose_bytes();
    let mut keys = BTreeMap::new();
    keys.insert(1, CallbackCipher::new(key));
    let settings = || CodecSettings {
        token: SecretString::from("BenchToken"),
        keys: keys.clone(),
        window_secs: 300,
        nonce_capacity: rounds + 1,
    };
    let (sender, receiver) = (LocalCodec::new(settings()), LocalCodec::new(settings()));
    let plain: Vec<u8> = (0..bytes).map(|i| b'a' + (i % 26) as u8).collect();
    let codec = median(rounds, || {
        let sealed = sender.seal(&plain, "corp");
        black_box(receiver.open(&sealed.headers, &sealed.body).expect("opens"));
    });
    let mut buf = plain.clone();
    let raw = median(rounds, || {
        buf.copy_from_slice(&plain);
        let len = buf.len() - buf.len() % 16;
        let enc = cbc::Encryptor::<aes::Aes256>::new((&raw_key).into(), raw_key[..16].into());
        let ct = enc.encrypt_padded_mut::<NoPadding>(&mut buf[..len], len).expect("whole blocks");
        black_box(Sha1::digest(ct));
        black_box(Sha1::digest(&buf[..len]));
        let dec = cbc::Decryptor::<aes::Aes256>::new((&raw_key).into(), raw_key[..16].into());
        black_box(dec.decrypt_padded_mut::<NoPadding>(&mut buf[..len]).expect("whole blocks"));
    });
    CodecRatio { bytes, codec, raw }
}

fn median(rounds: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..rounds.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort_unstable();
    times[times.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codec_costs_more_than_its_raw_floor() {
        let r = codec_ratio(4096, 5);
        assert!(r.codec > Duration::ZERO && r.raw > Duration::ZERO);
        assert!(r.ratio() < 3.0, "the codec cannot beat the cipher it runs by far: {r:?}");
    }
}
