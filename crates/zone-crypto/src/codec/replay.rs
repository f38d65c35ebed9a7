//! The replay cache of the local codec: the nonces of accepted messages, each remembered for as long
//! as its message could still pass the timestamp check, so that a signed message opens at most once.
//!
//! An entry is compact and is forgotten by time, cheaply:
//! - it is a 64-bit fingerprint of the nonce (SipHash-1-3 under a random key of this cache), kept in
//!   a hash set and in the list of the second it expires in: about 18 bytes per live nonce at most
//!   (a `String` nonce with its `VecDeque` twin cost ~100);
//! - a nonce is kept until its message's timestamp + the window (the last second at which that
//!   message passes the ±window check), i.e. at most 2 × window after it was accepted and about one
//!   window when the peers' clocks agree;
//! - whole seconds are forgotten at once, and the set gives its memory back as it empties: an idle
//!   cache holds almost nothing.
//!
//! It fails closed: when full of live nonces it refuses instead of forgetting one early, and two
//! different nonces with the same fingerprint (about `n / 2^64` per request with `n` live nonces)
//! refuse the second as replayed; neither ever lets a replay through.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use super::{CodecError, Nonce};

/// Fingerprints per chunk of an expiry list (4 KiB): a second's list wastes at most one chunk.
const CHUNK: usize = 512;

/// A set that is at most a quarter full and larger than this many entries is shrunk.
const SHRINK_ABOVE: usize = 1024;

/// Fingerprints of live nonces (or other keys), forgotten by the second: the replay cache of one
/// codec end, or of the app's callback receiver.
pub struct ReplayCache {
    capacity: usize,
    key: RandomState,
    live: HashSet<u64, BuildHasherDefault<Prehashed>>,
    /// Fingerprints by the last second they must be remembered, in chunks of [`CHUNK`].
    by_expiry: BTreeMap<i64, Vec<Vec<u64>>>,
}

impl ReplayCache {
    /// An empty cache of at most `capacity` live nonces; it allocates only as nonces arrive.
    pub fn new(capacity: usize) -> Self {
        Self { capacity, key: RandomState::new(), live: HashSet::default(), by_expiry: BTreeMap::new() }
    }

    /// Remembers `nonce` until second `keep_until` (inclusive), first forgetting every nonce whose
    /// last second is before `now`. Refuses a live nonce, and any nonce when full of live ones.
    pub fn insert(&mut self, nonce: &Nonce, now: i64, keep_until: i64) -> Result<(), CodecError> {
        self.insert_key(nonce.as_str(), now, keep_until)
    }

    /// [`ReplayCache::insert`] for any key (e.g. the signature of an app-side callback).
    pub fn insert_key(&mut self, key: &str, now: i64, keep_until: i64) -> Result<(), CodecError> {
        self.insert_fingerprint(self.key.hash_one(key), now, keep_until)
    }

    fn insert_fingerprint(&mut self, fingerprint: u64, now: i64, keep_until: i64) -> Result<(), CodecError> {
        self.forget_before(now);
        if self.live.len() >= self.capacity {
            return Err(if self.live.contains(&fingerprint) {
                CodecError::Replayed
            } else {
                CodecError::ReplayCacheFull
            });
        }
        // One probe of the table both checks and inserts.
        if !self.live.insert(fingerprint) {
            return Err(CodecError::Replayed);
        }
        let chunks = self.by_expiry.entry(keep_until).or_default();
        match chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(fingerprint),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(fingerprint);
                chunks.push(chunk);
            }
        }
        Ok(())
    }

    fn forget_before(&mut self, now: i64) {
        let mut forgot = false;
        while let Some(second) = self.by_expiry.first_entry() {
            if *second.key() >= now {
                break;
            }
            for fingerprint in second.remove().into_iter().flatten() {
                self.live.remove(&fingerprint);
            }
            forgot = true;
        }
        if forgot && self.live.capacity() > SHRINK_ABOVE.max(4 * self.live.len()) {
            self.live.shrink_to(2 * self.live.len());
        }
    }

    /// Live nonces (remembered until their window passes).
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no nonce is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// The most live nonces it holds; beyond it a new message is refused (-41006).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Heap bytes held: the set's table (a `u64` and a control byte per bucket, buckets a power of
    /// two holding 7/8 of it) plus the expiry chunks. The allocator's own overhead is not counted.
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        let buckets = match self.live.capacity() {
            0 => 0,
            cap => (cap * 8 / 7).next_power_of_two(),
        };
        let set = buckets * (8 + 1) + 16;
        let chunks: usize = self
            .by_expiry
            .values()
            .map(|chunks| {
                chunks.capacity() * size_of::<Vec<u64>>() + chunks.iter().map(|c| c.capacity() * 8).sum::<usize>()
            })
            .sum();
        set + chunks + self.by_expiry.len() * 64
    }
}

/// The hasher of the set: fingerprints are already keyed hashes, so they index it as they are.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn nonce(s: &str) -> Nonce {
        Nonce::parse(s).unwrap()
    }

    #[test]
    fn a_nonce_is_refused_until_its_message_is_stale_and_admitted_after() {
        let mut cache = ReplayCache::new(16);
        let (ts, window) = (1_000, 300);
        cache.insert(&nonce("n1"), ts, ts + window).unwrap();
        assert_eq!(cache.insert(&nonce("n1"), ts + window, ts + 2 * window), Err(CodecError::Replayed));
        // At ts + window + 1 the message with that nonce is outside the window: the nonce may go.
        cache.insert(&nonce("n1"), ts + window + 1, ts + 2 * window + 1).unwrap();
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_message_from_a_peer_ahead_of_us_keeps_its_nonce_longer() {
        let mut cache = ReplayCache::new(16);
        let now = 1_000;
        cache.insert(&nonce("ahead"), now, (now + 300) + 300).unwrap();
        assert_eq!(cache.insert(&nonce("ahead"), now + 600, now + 900), Err(CodecError::Replayed));
        cache.insert(&nonce("ahead"), now + 601, now + 901).unwrap();
    }

    #[test]
    fn a_full_cache_refuses_until_live_nonces_expire() {
        let mut cache = ReplayCache::new(2);
        cache.insert(&nonce("a"), 0, 10).unwrap();
        cache.insert(&nonce("b"), 0, 20).unwrap();
        assert_eq!(cache.insert(&nonce("c"), 5, 15), Err(CodecError::ReplayCacheFull));
        assert_eq!(
            cache.insert(&nonce("a"), 10, 15),
            Err(CodecError::Replayed),
            "a replay is named as such even when full"
        );
        cache.insert(&nonce("c"), 11, 21).unwrap();
        assert_eq!(cache.insert(&nonce("d"), 20, 30), Err(CodecError::ReplayCacheFull));
        cache.insert(&nonce("d"), 21, 31).unwrap();
    }

    /// The sizing claim of `sdk.local.nonce_cache_capacity`'s default, by construction: 2 000
    /// requests per second, every one from a peer whose clock is a whole window ahead (the longest
    /// a nonce is kept), are all admitted past the point where the first nonces expire (the steady
    /// state); filled up to the capacity the cache costs under 40 MiB, and almost nothing once idle.
    #[test]
    fn the_default_capacity_admits_2000_requests_a_second_for_ever_in_under_40_mib() {
        const RATE: i64 = 2_000;
        let (window, capacity) = (super::super::DEFAULT_WINDOW_SECS, super::super::DEFAULT_NONCE_CAPACITY);
        let mut cache = ReplayCache::new(capacity);
        let mut fingerprints = (0u64..).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29));
        let mut next = || fingerprints.next().expect("endless");
        for now in 0..(2 * window + 1 + 20) {
            for _ in 0..RATE {
                let ts = now + window;
                assert_eq!(cache.insert_fingerprint(next(), now, ts + window), Ok(()), "refused at second {now}");
            }
        }
        assert_eq!(cache.len(), (RATE * (2 * window + 1)) as usize, "the steady state: 2 × window + 1 s of nonces");
        let now = 2 * window + 20;
        while cache.len() < capacity {
            cache.insert_fingerprint(next(), now, now + 2 * window).unwrap();
        }
        assert_eq!(cache.insert_fingerprint(next(), now, now), Err(CodecError::ReplayCacheFull));
        assert!(cache.heap_bytes() < 40 << 20, "full: {} bytes", cache.heap_bytes());
        cache.insert_fingerprint(next(), 10 * window, 10 * window).unwrap();
        assert!(cache.heap_bytes() < 16 << 10, "idle: {} bytes", cache.heap_bytes());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)))]

        /// Against a model that keeps every nonce as a string with its last second: the same
        /// answers (admitted, replayed, full) for any interleaving of nonces, clock steps and skews.
        #[test]
        fn the_cache_answers_like_a_map_of_nonces_to_their_last_second(
            capacity in 1usize..12,
            steps in proptest::collection::vec((0usize..16, 0i64..400, -300i64..=300), 1..200),
        ) {
            let mut cache = ReplayCache::new(capacity);
            let mut model: HashMap<String, i64> = HashMap::new();
            let mut now = 1_700_000_000;
            for (n, advance, skew) in steps {
                now += advance;
                let keep_until = now + skew + 300;
                let name = format!("n{n}");
                model.retain(|_, until| *until >= now);
                let expected = if model.contains_key(&name) {
                    Err(CodecError::Replayed)
                } else if model.len() >= capacity {
                    Err(CodecError::ReplayCacheFull)
                } else {
                    model.insert(name.clone(), keep_until);
                    Ok(())
                };
                prop_assert_eq!(cache.insert(&nonce(&name), now, keep_until), expected);
                prop_assert_eq!(cache.len(), model.len());
            }
        }
    }
}
