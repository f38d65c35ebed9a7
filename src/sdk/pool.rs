//! Bounds on SDK calls: at most `sdk.pool_size` calls in flight, a short wait for a slot before
//! answering [`SdkError::Busy`] (back-pressure instead of an unbounded queue), and a deadline of
//! `sdk.invoke_timeout_ms` per call ([`SdkError::Timeout`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{CallContext, Callback, DecodeError, Reply, SdkError, ZoneSdk};
use crate::config::SdkConfig;

/// The shared bound on SDK calls.
#[derive(Clone, Debug)]
pub struct InvokeLimiter {
    slots: Arc<Semaphore>,
    queue_wait: Duration,
    timeout: Duration,
}

impl InvokeLimiter {
    /// A limiter with the configured pool size, queue wait and timeout.
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(config.pool_size)),
            queue_wait: Duration::from_millis(config.queue_wait_ms),
            timeout: Duration::from_millis(config.invoke_timeout_ms),
        }
    }

    /// Waits up to the queue wait for a slot.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, SdkError> {
        match tokio::time::timeout(self.queue_wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(SdkError::Unavailable("sdk pool closed".into())),
            Err(_elapsed) => Err(SdkError::Busy),
        }
    }

    /// The per-call deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `call` holding a slot, within the deadline.
    pub async fn run<T>(&self, call: impl Future<Output = Result<T, SdkError>>) -> Result<T, SdkError> {
        let _permit = self.acquire().await?;
        tokio::time::timeout(self.timeout, call).await.unwrap_or(Err(SdkError::Timeout))
    }

    /// Slots free right now (for metrics and tests).
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }
}

/// A backend whose `invoke` is bounded by an [`InvokeLimiter`].
pub struct Bounded<S> {
    inner: S,
    limiter: InvokeLimiter,
}

impl<S: ZoneSdk> Bounded<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, limiter: InvokeLimiter) -> Self {
        Self { inner, limiter }
    }
}

#[async_trait]
impl<S: ZoneSdk> ZoneSdk for Bounded<S> {
    fn decode(&self, method: &str, headers: &[(String, String)], body: &[u8]) -> Result<Callback, DecodeError> {
        self.inner.decode(method, headers, body)
    }

    fn encode_reply(&self, ctx: &CallContext, plaintext: &str) -> Result<Reply, SdkError> {
        self.inner.encode_reply(ctx, plaintext)
    }

    async fn invoke(&self, ctx: &CallContext, api: &str, request_json: &str) -> Result<String, SdkError> {
        self.limiter.run(self.inner.invoke(ctx, api, request_json)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(size: usize) -> InvokeLimiter {
        let cfg = SdkConfig { pool_size: size, queue_wait_ms: 20, invoke_timeout_ms: 50, ..Default::default() };
        InvokeLimiter::new(&cfg)
    }

    #[tokio::test]
    async fn a_full_pool_answers_busy_and_recovers_when_a_slot_frees() {
        let l = limiter(1);
        let held = l.acquire().await.unwrap();
        assert_eq!(l.run(async { Ok(()) }).await, Err(SdkError::Busy));
        drop(held);
        assert_eq!(l.run(async { Ok(7) }).await, Ok(7));
    }

    #[tokio::test]
    async fn a_slow_call_times_out_and_gives_its_slot_back() {
        let l = limiter(1);
        let slow = l.run(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        });
        assert_eq!(slow.await, Err(SdkError::Timeout));
        assert_eq!(l.available(), 1);
    }
}
