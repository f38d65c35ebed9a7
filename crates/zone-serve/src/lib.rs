//! Serving a router on a listener under connection limits (README "Reliability and security"):
//! - at most `max_connections` connections are open; at the cap a new connection takes the place of
//!   the connection that has been idle the longest (no request in progress: waiting for, or in the
//!   middle of, a request head), so a flood of idle or slow-header connections cannot lock out a
//!   client that sends its request; when every connection has a request in progress, the new one is
//!   answered a static `503` and closed, at the cost of one write;
//! - a connection that has not sent a whole request head `header_read_timeout` after it opened, or
//!   after its previous reply (the idle keep-alive timeout), is closed (hyper's `header_read_timeout`);
//! - accept errors (e.g. out of file descriptors) are logged at most once a second and retried after a
//!   short pause instead of spinning;
//! - on shutdown no connection is accepted any more, idle ones close at once and busy ones after their
//!   reply; [`serve`] returns when the last one has closed.
//!
//! [`raise_fd_limit`] raises the soft limit of open files to the hard one and says how many
//! connections fit below it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tower::ServiceExt as _;

/// The limits on request bodies: [`limit_bodies`].
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body of one request (larger: 413, from axum's `DefaultBodyLimit`).
    pub max_body_bytes: usize,
    /// Most body bytes of all requests being received at once: a request whose announced length
    /// (or, without one, `max_body_bytes`) does not fit in what is left is answered `503` at once,
    /// before any of its body is read. A body over [`SMALL_BODY_BYTES`] must also leave a quarter
    /// of the budget free, so that large bodies cannot crowd out small requests.
    pub max_buffered_bytes: usize,
    /// Longest pause while a body is received (then the request fails with 400).
    pub body_read_timeout: Duration,
}

/// `router` with the body limits: each request reserves its body's size out of the shared budget
/// for as long as it is handled.
pub fn limit_bodies<S: Clone + Send + Sync + 'static>(router: Router<S>, limits: BodyLimits) -> Router<S> {
    let total = limits.max_buffered_bytes.min(Semaphore::MAX_PERMITS);
    let budget = Arc::new(Semaphore::new(total));
    // Large bodies never take the last quarter: a flood of them leaves room for the small requests
    // that are nearly all of the real traffic.
    let reserve = total / 4;
    let max_body = limits.max_body_bytes;
    router
        .layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
            let budget = budget.clone();
            async move {
                let want = match announced_length(req.headers()) {
                    Some(0) => return next.run(req).await,
                    // Larger than one body may be: refused with 413 before any of it is read.
                    Some(n) if n > max_body as u64 => return next.run(req).await,
                    Some(n) => usize::try_from(n).unwrap_or(max_body),
                    None => max_body,
                };
                if want > SMALL_BODY_BYTES && budget.available_permits() < want.saturating_add(reserve) {
                    return busy();
                }
                let Ok(reserved) = budget.try_acquire_many_owned(u32::try_from(want).unwrap_or(u32::MAX)) else {
                    return busy();
                };
                let response = next.run(req).await;
                drop(reserved);
                response
            }
        }))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body_read_timeout))
}

/// Bodies up to this size may use the whole budget; larger ones leave a quarter of it free.
pub const SMALL_BODY_BYTES: usize = 64 * 1024;

/// The body length a request announces: its `content-length`, `None` when it is chunked (length
/// unknown), `Some(0)` when it has neither (HTTP/1.1: no body).
fn announced_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    if headers.contains_key(axum::http::header::TRANSFER_ENCODING) {
        return None;
    }
    match headers.get(axum::http::header::CONTENT_LENGTH) {
        None => Some(0),
        Some(v) => v.to_str().ok().and_then(|v| v.trim().parse().ok()).or(Some(u64::MAX)),
    }
}

/// `503` with the body `{"error":"busy"}`.
fn busy() -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (axum::http::StatusCode::SERVICE_UNAVAILABLE, [("content-type", "application/json")], r#"{"error":"busy"}"#)
        .into_response()
}

/// File descriptors kept free of connections for the store, the SDK's client, logs and the like.
pub const RESERVED_FDS: u64 = 256;

/// The limits [`serve`] enforces.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long a connection may take to send a request head, after opening or after its previous
    /// reply.
    pub header_read_timeout: Duration,
}

/// Counts of what the limits did, for tests and logs.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Idle connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// Connections refused because every open one had a request in progress.
    pub refused: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then waits for the open
/// connections to finish their request in progress and close.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    stats: Arc<ConnStats>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Slots::new(limits.max_connections, stats));
    let (stop_tx, stop_rx) = watch::channel(false);
    let accept_errors = RateLimited::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Out of file descriptors or memory: the pending connection stays in the backlog;
                // pause so that closing connections can free what is missing.
                accept_errors.warn(|n| tracing::warn!(error = %e, errors = n, "accepting a connection failed"));
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(20)) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let slot = loop {
            let freed = slots.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match slots.admit() {
                Admit::Yes(slot) => break Some(slot),
                Admit::No => break None,
                // Connections told to close have not closed yet: give them a moment (the new
                // connection waits, accepted, meanwhile).
                Admit::Wait => {
                    if tokio::time::timeout(Duration::from_millis(50), freed).await.is_err() {
                        break None;
                    }
                }
            }
        };
        let Some(slot) = slot else {
            slots.stats.refused.fetch_add(1, Ordering::Relaxed);
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        slots.stats.open.fetch_add(1, Ordering::Relaxed);
        let served = connection(stream, router.clone(), limits, slots.clone(), slot, stop_rx.clone());
        let stats = slots.stats.clone();
        tokio::spawn(async move {
            served.await;
            stats.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    slots.all_closed().await;
}

/// Raises the soft limit of open files to the hard limit; returns the soft limit now in force (or
/// `None` when it is unlimited or unknown).
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if limit.current != limit.maximum {
            let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                return limit.maximum;
            }
        }
        limit.current
    }
    #[cfg(not(unix))]
    None
}

/// `configured`, lowered to what `fd_limit` leaves after [`RESERVED_FDS`] (at least 16).
pub fn connection_cap(configured: usize, fd_limit: Option<u64>) -> usize {
    match fd_limit {
        Some(fds) => configured.min(usize::try_from(fds.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX)),
        None => configured,
    }
}

/// One connection: hyper's HTTP/1 with the header-read timeout, closed when evicted, shut down
/// gracefully when the server stops.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: ConnLimits,
    slots: Arc<Slots>,
    slot: Arc<Slot>,
    mut stop: watch::Receiver<bool>,
) {
    let busy_slots = slots.clone();
    let busy_slot = slot.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let busy = busy_slots.busy(&busy_slot);
        let router = router.clone();
        async move {
            let response = router.oneshot(req.map(axum::body::Body::new)).await;
            drop(busy);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    // Boxed so that it is really closed (dropped) before its slot is freed.
    let mut conn = Box::pin(builder.serve_connection(TokioIo::new(stream), service));
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            () = slot.evict.notified() => {
                if !slots.is_busy(&slot) {
                    break;
                }
                // It became busy after it was chosen: let it finish that request, then close.
                conn.as_mut().graceful_shutdown();
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_err() || *stop.borrow() {
                    if !slots.is_busy(&slot) {
                        break;
                    }
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
    drop(conn);
    slots.closed(&slot);
}

/// Refuses a connection beyond the cap: one non-blocking write of a static reply, then close.
fn refuse(stream: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                          content-length: 17\r\nconnection: close\r\n\r\n{\"error\":\"busy\"}";
    let _ = stream.try_write(BUSY);
}

/// Errors that concern only the connection being accepted (the peer gave up already).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted)
}

/// An open connection's place in the table.
struct Slot {
    evict: Notify,
}

/// The open connections: how many, and the idle ones in the order they became idle.
struct Slots {
    max: usize,
    stats: Arc<ConnStats>,
    inner: Mutex<SlotsInner>,
    empty: Notify,
    /// Told whenever a connection closes.
    freed: Notify,
}

/// What [`Slots::admit`] decided.
enum Admit {
    Yes(Arc<Slot>),
    Wait,
    No,
}

#[derive(Default)]
struct SlotsInner {
    open: usize,
    next: u64,
    /// Idle connections by the sequence number of the moment they became idle.
    idle: BTreeMap<u64, Arc<Slot>>,
    /// The idle sequence number of each idle connection, by the slot's address.
    idle_key: std::collections::HashMap<usize, u64>,
}

/// Marks a connection busy while alive.
struct Busy {
    slots: Arc<Slots>,
    slot: Arc<Slot>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut inner = self.slots.lock();
        let seq = inner.next;
        inner.next += 1;
        inner.idle.insert(seq, self.slot.clone());
        inner.idle_key.insert(key(&self.slot), seq);
    }
}

fn key(slot: &Arc<Slot>) -> usize {
    Arc::as_ptr(slot) as usize
}

impl Slots {
    fn new(max: usize, stats: Arc<ConnStats>) -> Self {
        Self {
            max: max.max(1),
            stats,
            inner: Mutex::new(SlotsInner::default()),
            empty: Notify::new(),
            freed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection (idle until its first request head is read); at the cap, the
    /// longest-idle connection is told to close. [`Admit::No`] when every connection is busy;
    /// [`Admit::Wait`] while connections told to close (at most an eighth of the cap beyond it)
    /// have not yet.
    fn admit(&self) -> Admit {
        let mut inner = self.lock();
        if inner.open >= self.max {
            if inner.idle.is_empty() {
                return Admit::No;
            }
            if inner.open >= self.max + self.max / 8 + 8 {
                return Admit::Wait;
            }
            let (_, old) = inner.idle.pop_first().expect("not empty");
            inner.idle_key.remove(&key(&old));
            old.evict.notify_one();
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let slot = Arc::new(Slot { evict: Notify::new() });
        inner.open += 1;
        let seq = inner.next;
        inner.next += 1;
        inner.idle.insert(seq, slot.clone());
        inner.idle_key.insert(key(&slot), seq);
        drop(inner);
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        Admit::Yes(slot)
    }

    /// Marks `slot` busy until the returned guard drops.
    fn busy(self: &Arc<Self>, slot: &Arc<Slot>) -> Busy {
        let mut inner = self.lock();
        if let Some(seq) = inner.idle_key.remove(&key(slot)) {
            inner.idle.remove(&seq);
        }
        Busy { slots: self.clone(), slot: slot.clone() }
    }

    fn is_busy(&self, slot: &Arc<Slot>) -> bool {
        !self.lock().idle_key.contains_key(&key(slot))
    }

    fn closed(&self, slot: &Arc<Slot>) {
        let mut inner = self.lock();
        if let Some(seq) = inner.idle_key.remove(&key(slot)) {
            inner.idle.remove(&seq);
        }
        inner.open -= 1;
        if inner.open == 0 {
            self.empty.notify_waiters();
        }
        self.freed.notify_waiters();
    }

    async fn all_closed(&self) {
        loop {
            let notified = self.empty.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().open == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Logs at most once a second, with the number of occurrences since the last line.
#[derive(Default)]
struct RateLimited {
    last_second: AtomicI64,
    count: AtomicU64,
}

impl RateLimited {
    fn warn(&self, log: impl FnOnce(u64)) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        if self.last_second.swap(now, Ordering::Relaxed) != now {
            self.count.store(0, Ordering::Relaxed);
            log(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max: usize) -> Arc<Slots> {
        Arc::new(Slots::new(max, Arc::default()))
    }

    fn admitted(s: &Slots) -> Arc<Slot> {
        match s.admit() {
            Admit::Yes(slot) => slot,
            _ => panic!("not admitted"),
        }
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room() {
        let s = slots(2);
        let a = admitted(&s);
        let b = admitted(&s);
        let busy_a = s.busy(&a);
        let c = admitted(&s);
        assert!(s.is_busy(&a) && !s.is_busy(&c));
        s.closed(&b);
        drop(busy_a);
        // a went idle after c: c is the longest idle now.
        let _d = admitted(&s);
        assert_eq!(s.stats.evicted.load(Ordering::Relaxed), 2);
        assert!(s.is_busy(&c), "c was chosen and left the idle list");
    }

    #[test]
    fn when_every_connection_is_busy_a_new_one_is_refused() {
        let s = slots(2);
        let a = admitted(&s);
        let b = admitted(&s);
        let _busy = (s.busy(&a), s.busy(&b));
        assert!(matches!(s.admit(), Admit::No));
    }

    #[test]
    fn evictions_not_yet_closed_are_bounded_and_waited_for() {
        let s = slots(8);
        let first: Vec<_> = (0..8).map(|_| admitted(&s)).collect();
        let mut admitted_beyond = 0;
        while let Admit::Yes(_) = s.admit() {
            admitted_beyond += 1;
        }
        assert_eq!(admitted_beyond, 8 / 8 + 8, "at most the slack beyond the cap while the evicted close");
        assert!(matches!(s.admit(), Admit::Wait));
        s.closed(&first[0]);
        assert!(matches!(s.admit(), Admit::Yes(_)), "a closed connection makes room again");
    }

    #[test]
    fn the_connection_cap_stays_below_the_fd_limit() {
        assert_eq!(connection_cap(4096, Some(1024)), 1024 - RESERVED_FDS as usize);
        assert_eq!(connection_cap(4096, Some(100)), 16);
        assert_eq!(connection_cap(4096, Some(1 << 20)), 4096);
        assert_eq!(connection_cap(4096, None), 4096);
    }
}
