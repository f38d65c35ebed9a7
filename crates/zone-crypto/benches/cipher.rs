//! Micro-benchmarks of the request path's cryptography, side by side with the physical floor.
//!
//! For each body size (1 KiB, 64 KiB, 1 MiB) three groups run on the same bytes:
//! - `raw`: AES-256-CBC (`aes` + `cbc`, in place, no padding) plus one SHA1 over the bytes. Nothing
//!   can do the cipher's work for less: this is the floor the ratios in BENCHMARKS.md divide by.
//! - `callback_cipher`: the WeCom callback cipher (`CallbackCipher::encrypt`/`decrypt`) and the
//!   signature (`signature`/`verify_signature`) over the Base64 ciphertext.
//! - `local_codec`: `LocalCodec::seal`/`open`: cipher, signature, the `{"encrypt"}` JSON body,
//!   header parsing and the replay cache. `open` consumes a nonce, so each iteration opens a
//!   message sealed afresh in the (untimed) batch setup. Batches are `LargeInput`, as in `raw`: a
//!   server opens a body it has just read, not one evicted from the cache by a batch of others.
//!
//! Runs are short on purpose (10 samples, 1 s per benchmark): `cargo bench --bench cipher` takes
//! about a minute on 2 cores. Under `cargo test` criterion runs each routine once, as a smoke test.
//!
//! Times are the benchmark thread's **CPU time** (`CLOCK_THREAD_CPUTIME_ID`), not the wall clock:
//! on a shared, loaded machine the wall clock also counts the time the thread waits for a core,
//! which made the ratios swing by 2× between runs. Single-threaded work on an idle machine
//! measures the same either way.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngCore, SeedableRng};
use secrecy::SecretString;
use sha1::{Digest, Sha1};
use zone_crypto::cipher::{self as crypto, CallbackCipher, EncodingAesKey};
use zone_crypto::codec::{CodecSettings, LocalCodec};
use zone_crypto::demo;

/// The body sizes of the issue: 1 KiB, 64 KiB, 1 MiB.
const SIZES: [usize; 3] = [1024, 64 * 1024, 1024 * 1024];
const KEY: &str = demo::LOCAL_KEY;
const TOKEN: &str = demo::LOCAL_TOKEN;
const CORP: &str = demo::CORP_ID;

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

fn key_bytes() -> [u8; 32] {
    *EncodingAesKey::parse(KEY).expect("a valid demo key").expose_bytes()
}

fn cipher() -> CallbackCipher {
    CallbackCipher::new(EncodingAesKey::parse(KEY).expect("a valid demo key"))
}

/// A codec whose replay cache never fills during a benchmark (it grows only with the iterations run).
fn codec() -> LocalCodec {
    let mut keys = BTreeMap::new();
    keys.insert(1, cipher());
    LocalCodec::new(CodecSettings {
        token: SecretString::from(TOKEN),
        keys,
        window_secs: 300,
        nonce_capacity: usize::MAX,
    })
}

/// A JSON-ish message of exactly `len` bytes (what a callback carries is JSON text).
fn message(len: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut raw = vec![0u8; len];
    rng.fill_bytes(&mut raw);
    raw.iter().map(|b| b"abcdefghijklmnopqrstuvwxyz0123456789"[usize::from(*b) % 36]).collect()
}

/// The calling thread's CPU time, in nanoseconds, as the scheduler accounts it.
struct ThreadCpuTime;

/// Formats values as durations in nanoseconds, like the wall clock's.
static NANOSECONDS: WallTime = WallTime;

impl ThreadCpuTime {
    /// `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`: exact to the nanosecond, unlike the tick-granular
    /// `/proc/thread-self/schedstat`.
    fn now() -> u64 {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        u64::try_from(t.tv_sec).expect("positive") * 1_000_000_000 + u64::try_from(t.tv_nsec).expect("positive")
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        Self::now()
    }

    fn end(&self, start: u64) -> u64 {
        Self::now().saturating_sub(start)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        NANOSECONDS.formatter()
    }
}

fn short() -> Criterion<ThreadCpuTime> {
    Criterion::default()
        .with_measurement(ThreadCpuTime)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args()
}

/// The floor: AES-256-CBC over the bytes (in place) plus one SHA1 over them.
fn raw(c: &mut Criterion<ThreadCpuTime>) {
    let key = key_bytes();
    let mut group = c.benchmark_group("raw");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let plain = message(size);
        group.bench_with_input(BenchmarkId::new("aes256cbc_encrypt+sha1", size), &plain, |b, plain| {
            b.iter_batched_ref(
                || plain.clone(),
                |buf| {
                    let enc = Aes256CbcEnc::new((&key).into(), key[..16].into());
                    let len = buf.len();
                    let out = enc.encrypt_padded_mut::<NoPadding>(buf, len).expect("whole blocks");
                    black_box(Sha1::digest(out))
                },
                BatchSize::LargeInput,
            );
        });
        let mut ciphertext = plain.clone();
        let len = ciphertext.len();
        Aes256CbcEnc::new((&key).into(), key[..16].into())
            .encrypt_padded_mut::<NoPadding>(&mut ciphertext, len)
            .expect("whole blocks");
        group.bench_with_input(BenchmarkId::new("aes256cbc_decrypt+sha1", size), &ciphertext, |b, ct| {
            b.iter_batched_ref(
                || ct.clone(),
                |buf| {
                    let digest = Sha1::digest(&buf[..]);
                    let dec = Aes256CbcDec::new((&key).into(), key[..16].into());
                    black_box(dec.decrypt_padded_mut::<NoPadding>(buf).expect("whole blocks"));
                    black_box(digest)
                },
                BatchSize::LargeInput,
            );
        });
        group.bench_with_input(BenchmarkId::new("sha1", size), &plain, |b, plain| {
            b.iter(|| black_box(Sha1::digest(plain)));
        });
    }
    group.finish();
}

/// The WeCom callback cipher and its signature.
fn callback_cipher(c: &mut Criterion<ThreadCpuTime>) {
    let cipher = cipher();
    let token = SecretString::from(TOKEN);
    let mut group = c.benchmark_group("callback_cipher");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let plain = message(size);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        group.bench_with_input(BenchmarkId::new("encrypt", size), &plain, |b, plain| {
            b.iter(|| black_box(cipher.encrypt(plain, CORP.as_bytes(), &mut rng)));
        });
        let encrypted = cipher.encrypt(&plain, CORP.as_bytes(), &mut rng);
        group.bench_with_input(BenchmarkId::new("decrypt", size), &encrypted, |b, encrypted| {
            b.iter(|| black_box(cipher.decrypt(encrypted).expect("decrypts")));
        });
        group.bench_with_input(BenchmarkId::new("signature", size), &encrypted, |b, encrypted| {
            b.iter(|| black_box(crypto::signature(&token, "1700000000", "n0nce", encrypted)));
        });
        let sig = crypto::signature(&token, "1700000000", "n0nce", &encrypted);
        group.bench_with_input(BenchmarkId::new("verify_signature", size), &encrypted, |b, encrypted| {
            b.iter(|| crypto::verify_signature(&token, "1700000000", "n0nce", encrypted, &sig).expect("verifies"));
        });
    }
    group.finish();
}

/// The local codec: seal, and open of a freshly sealed message (the replay cache forbids reuse).
fn local_codec(c: &mut Criterion<ThreadCpuTime>) {
    let sender = codec();
    let receiver = codec();
    let mut group = c.benchmark_group("local_codec");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let plain = message(size);
        group.bench_with_input(BenchmarkId::new("seal", size), &plain, |b, plain| {
            b.iter(|| black_box(sender.seal(plain, CORP)));
        });
        group.bench_with_input(BenchmarkId::new("open", size), &plain, |b, plain| {
            b.iter_batched_ref(
                || sender.seal(plain, CORP),
                |sealed| receiver.open(&sealed.headers, &sealed.body).expect("opens"),
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = short();
    targets = raw, callback_cipher, local_codec
}
criterion_main!(benches);
