//! Bounds on SDK calls: at most `sdk.pool_size` calls in flight, a short wait for a slot before
//! answering [`SdkError::Busy`] (back-pressure instead of an unbounded queue), and a deadline of
//! `sdk.invoke_timeout_ms` per call ([`SdkError::Timeout`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{CallContext, DecodeError, Decoded, ReplayFill, SdkError, ZoneSdk};
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

    /// Runs the blocking `call` on tokio's blocking pool holding a slot, within the deadline. The slot
    /// moves into the blocking task and is released only when `call` really returns: a call that
    /// overran its deadline (answered [`SdkError::Timeout`]) still counts against `sdk.pool_size`, so
    /// stuck SDK calls cannot pile up beyond it.
    pub async fn run_blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce() -> Result<T, SdkError> + Send + 'static,
    ) -> Result<T, SdkError> {
        let permit = self.acquire().await?;
        let span = tracing::Span::current();
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(call)
        });
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(_join)) => Err(SdkError::Unavailable("the sdk call panicked".into())),
            Err(_elapsed) => Err(SdkError::Timeout),
        }
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
    fn decode(&self, method: &str, headers: &[(String, String)], body: &[u8]) -> Result<Decoded, DecodeError> {
        self.inner.decode(method, headers, body)
    }

    async fn invoke(&self, ctx: &CallContext, api: &str, request_json: &str) -> Result<String, SdkError> {
        self.limiter.run(self.inner.invoke(ctx, api, request_json)).await
    }

    fn generate_notify_id(&self) -> Result<String, SdkError> {
        self.inner.generate_notify_id()
    }

    fn native_notify_ids(&self) -> bool {
        self.inner.native_notify_ids()
    }

    fn may_block(&self) -> bool {
        self.inner.may_block()
    }

    fn replay_fill(&self) -> Option<ReplayFill> {
        self.inner.replay_fill()
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

    #[tokio::test]
    async fn a_timed_out_blocking_call_keeps_its_slot_until_it_really_ends() {
        let l = limiter(1);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let stuck = l.run_blocking(move || {
            let _ = wait.recv();
            Ok("finished late")
        });
        assert_eq!(stuck.await, Err(SdkError::Timeout));
        assert_eq!(l.available(), 0, "the stuck call still holds its slot");
        assert_eq!(l.run_blocking(|| Ok(1)).await, Err(SdkError::Busy), "no call piles up behind it");
        release.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while l.available() == 0 {
            assert!(std::time::Instant::now() < deadline, "the slot came back");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(l.run_blocking(|| Ok(2)).await, Ok(2));
    }

    #[tokio::test]
    async fn a_panicking_blocking_call_is_an_error_and_frees_its_slot() {
        let cfg = SdkConfig { pool_size: 1, invoke_timeout_ms: 10_000, ..Default::default() };
        let l = InvokeLimiter::new(&cfg);
        let r: Result<(), SdkError> = l.run_blocking(|| panic!("boom")).await;
        assert!(matches!(r, Err(SdkError::Unavailable(_))));
        assert_eq!(l.available(), 1);
    }
}
