//! The per-corp budget of listing calls made without an event token. WeCom limits them strictly
//! (sdk-data-apis.md §1.4, §3.1) and documents no figure, so the program keeps its own, smaller
//! limit: a token bucket per corp of `messages.tokenless_burst` calls, refilled evenly at
//! `messages.tokenless_per_minute`. A workflow that needs a call while the bucket is empty waits
//! when the next token comes before its deadline, and otherwise answers 900106 with
//! `retry_after_ms` instead of calling.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::MessagesConfig;

/// The per-corp buckets of one program.
#[derive(Debug)]
pub struct TokenlessBudget {
    /// `messages.index_freshness_secs`: how far the message index may lag behind now and still
    /// answer a range that ends now.
    pub index_freshness_secs: i64,
    per_minute: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Why a call may not be made now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spent {
    /// When the next call is allowed, from now.
    pub retry_after: Duration,
}

impl TokenlessBudget {
    /// The budget of `[messages]`.
    pub fn new(config: &MessagesConfig) -> Self {
        Self {
            index_freshness_secs: config.index_freshness_secs,
            per_minute: f64::from(config.tokenless_per_minute.max(1)),
            burst: f64::from(config.tokenless_burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one call of `corp_id`'s budget now, or says how long until one is free.
    pub fn try_take(&self, corp_id: &str) -> Result<(), Spent> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(corp_id.to_owned()).or_insert(Bucket { tokens: self.burst, at: now });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.per_minute / 60.0;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let missing = 1.0 - bucket.tokens;
        Err(Spent { retry_after: Duration::from_secs_f64(missing * 60.0 / self.per_minute) })
    }

    /// Takes one call of the budget, waiting for it when it comes before `deadline`.
    pub async fn take(&self, corp_id: &str, deadline: Instant) -> Result<(), Spent> {
        loop {
            match self.try_take(corp_id) {
                Ok(()) => return Ok(()),
                Err(spent) if Instant::now() + spent.retry_after < deadline => {
                    tracing::debug!(wait_ms = spent.retry_after.as_millis() as u64, "waiting for the tokenless budget");
                    tokio::time::sleep(spent.retry_after).await;
                }
                Err(spent) => return Err(spent),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_minute: u32, burst: u32) -> TokenlessBudget {
        TokenlessBudget::new(&MessagesConfig {
            tokenless_per_minute: per_minute,
            tokenless_burst: burst,
            ..Default::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_one_call_per_refill_interval_per_corp() {
        let b = budget(6, 2);
        assert!(b.try_take("c1").is_ok() && b.try_take("c1").is_ok());
        let spent = b.try_take("c1").unwrap_err();
        assert_eq!(spent.retry_after, Duration::from_secs(10), "6 a minute: one every 10 s");
        assert!(b.try_take("c2").is_ok(), "each corp has its own bucket");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.try_take("c1").is_ok());
        assert!(b.try_take("c1").is_err());
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(
            b.try_take("c1").is_ok() && b.try_take("c1").is_ok() && b.try_take("c1").is_err(),
            "capped at the burst"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn take_waits_within_the_deadline_and_refuses_beyond_it() {
        let b = budget(60, 1);
        b.try_take("c").unwrap();
        let start = Instant::now();
        b.take("c", start + Duration::from_secs(5)).await.unwrap();
        assert_eq!(Instant::now() - start, Duration::from_secs(1), "waited for the next token");
        let refused = b.take("c", Instant::now() + Duration::from_millis(500)).await.unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(1));
    }
}
