//! The load generator: `clients` keep-alive HTTP/1.1 connections (one hyper client connection
//! each, no pool in between), each sending its next request as soon as the previous reply is in
//! (a closed loop, like `wrk`). Requests that *finish* inside the measured window count; the warm-up
//! before it does not. Every reply's status is checked, and every `verify_every`-th one is opened in
//! full (signature, decryption, `errcode`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Bytes;
use http_body_util::BodyExt as _;
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderValue;
use hyper::{HeaderMap, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::requests::{Expect, Source};

/// How hard and how long to drive one server.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    /// Concurrent connections, each with one request in flight.
    pub clients: usize,
    /// Unmeasured time before the window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Open every n-th reply in full (1 = all).
    pub verify_every: u64,
    /// Send at most this many requests in all (closed loop), then stop: the window ends there.
    pub max_requests: Option<u64>,
}

/// What one run measured.
#[derive(Debug, Default, Clone)]
pub struct LoadResult {
    /// Correct replies that finished inside the window.
    pub ok: u64,
    /// Failures inside the window, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Latencies of the correct replies in the window, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// The window's length.
    pub window: Duration,
    /// Client time spent preparing (signing or sealing) the window's requests.
    pub prep: Duration,
    /// Requests whose preparation `prep` covers.
    pub prepared: u64,
    /// Every reply received, warm-up and failures included (CPU time is divided by this).
    pub replies: u64,
    /// Open loop: the requests scheduled inside the window (0 for a closed loop).
    pub scheduled: u64,
}

impl LoadResult {
    /// Correct replies per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }

    /// All failures in the window.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The `q`-quantile latency (0.0–1.0) in microseconds, or 0 without samples.
    pub fn quantile_us(&self, q: f64) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let rank = ((self.latencies_us.len() as f64 * q).ceil() as usize).clamp(1, self.latencies_us.len());
        self.latencies_us[rank - 1]
    }

    /// Client preparation time per request, in microseconds.
    pub fn prep_us_per_request(&self) -> f64 {
        if self.prepared == 0 { 0.0 } else { self.prep.as_secs_f64() * 1e6 / self.prepared as f64 }
    }
}

/// Drives `addr` with `spec`; returns when the window closes (requests still in flight then are
/// abandoned, and not counted).
pub async fn drive(
    addr: SocketAddr,
    spec: LoadSpec,
    source: Arc<Source>,
    expect: Arc<Expect>,
) -> anyhow::Result<LoadResult> {
    let mut senders = Vec::with_capacity(spec.clients);
    for _ in 0..spec.clients {
        senders.push(connect(addr).await.with_context(|| format!("connecting to {addr}"))?);
    }
    let start = Instant::now();
    let window = Window { from: start + spec.warmup, until: start + spec.warmup + spec.duration };
    let host = HeaderValue::try_from(addr.to_string()).expect("an address is a header value");
    let mut tasks = Vec::with_capacity(spec.clients);
    let sent = Arc::new(AtomicU64::new(0));
    for (i, sender) in senders.into_iter().enumerate() {
        let client = Client {
            addr,
            host: host.clone(),
            source: source.clone(),
            expect: expect.clone(),
            spec,
            window,
            sent: sent.clone(),
        };
        tasks.push(tokio::spawn(client.run(sender, i as u64)));
    }
    let mut total = LoadResult { window: spec.duration, ..LoadResult::default() };
    for task in tasks {
        let part = task.await.context("a client task failed")?;
        total.ok += part.ok;
        for (kind, n) in part.errors {
            *total.errors.entry(kind).or_default() += n;
        }
        total.latencies_us.extend(part.latencies_us);
        total.prep += part.prep;
        total.prepared += part.prepared;
        total.replies += part.replies;
    }
    total.latencies_us.sort_unstable();
    if spec.max_requests.is_some() {
        total.window = window.until.min(Instant::now()).saturating_duration_since(window.from);
    }
    Ok(total)
}

#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    until: Instant,
}

struct Client {
    addr: SocketAddr,
    host: HeaderValue,
    source: Arc<Source>,
    expect: Arc<Expect>,
    spec: LoadSpec,
    window: Window,
    /// Requests sent by every client of the run (for `spec.max_requests`).
    sent: Arc<AtomicU64>,
}

impl Client {
    async fn run(self, mut sender: SendRequest<http_body_util::Full<Bytes>>, seed: u64) -> LoadResult {
        let mut out = LoadResult::default();
        let mut count = seed;
        let deadline = tokio::time::Instant::from_std(self.window.until);
        loop {
            let prep_start = Instant::now();
            if prep_start >= self.window.until {
                break;
            }
            if self.spec.max_requests.is_some_and(|max| self.sent.fetch_add(1, Ordering::Relaxed) >= max) {
                break;
            }
            let req = self.source.next(&self.host);
            let sent = Instant::now();
            if sent >= self.window.from {
                out.prep += sent - prep_start;
                out.prepared += 1;
            }
            let exchange = async {
                sender.ready().await?;
                let res = sender.send_request(req).await?;
                let (parts, body) = res.into_parts();
                let body = body.collect().await?.to_bytes();
                Ok::<_, hyper::Error>((parts, body))
            };
            let outcome = tokio::select! {
                outcome = exchange => outcome,
                () = tokio::time::sleep_until(deadline) => break,
            };
            let done = Instant::now();
            out.replies += u64::from(outcome.is_ok());
            let counted = done >= self.window.from && done <= self.window.until;
            count += 1;
            let verdict = match &outcome {
                Ok((parts, body)) => {
                    let open = count.is_multiple_of(self.spec.verify_every.max(1));
                    self.expect.check(parts.status, &parts.headers, body, open)
                }
                Err(_) => Err("transport".to_owned()),
            };
            if counted {
                match verdict {
                    Ok(()) => {
                        out.ok += 1;
                        out.latencies_us.push(u32::try_from((done - sent).as_micros()).unwrap_or(u32::MAX));
                    }
                    Err(kind) => *out.errors.entry(kind).or_default() += 1,
                }
            }
            if outcome.is_err() || sender.is_closed() {
                match self.reconnect(&mut out, deadline).await {
                    Some(s) => sender = s,
                    None => break,
                }
            }
        }
        out
    }

    /// The open loop of one connection: take the next due request, wait for its time, send it, and
    /// count its latency from the time it was due.
    async fn run_open(
        self,
        mut sender: SendRequest<http_body_util::Full<Bytes>>,
        seed: u64,
        schedule: Schedule,
        grace: Duration,
    ) -> LoadResult {
        let mut out = LoadResult::default();
        let mut count = seed;
        let deadline = tokio::time::Instant::from_std(self.window.until + grace);
        loop {
            let i = schedule.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let due = schedule.due(i);
            if due >= self.window.until {
                break;
            }
            // Not tokio's timer: its 1 ms ticks would send requests in bursts, up to 1 ms late.
            zone_local::timer::sleep_until(due).await;
            let req = self.source.next(&self.host);
            let exchange = async {
                sender.ready().await?;
                let res = sender.send_request(req).await?;
                let (parts, body) = res.into_parts();
                let body = body.collect().await?.to_bytes();
                Ok::<_, hyper::Error>((parts, body))
            };
            let counted = due >= self.window.from;
            let outcome = tokio::select! {
                outcome = exchange => outcome,
                () = tokio::time::sleep_until(deadline) => {
                    if counted {
                        *out.errors.entry("no reply in time".to_owned()).or_default() += 1;
                    }
                    break;
                }
            };
            let done = Instant::now();
            out.replies += u64::from(outcome.is_ok());
            count += 1;
            let verdict = match &outcome {
                Ok((parts, body)) => {
                    let open = count.is_multiple_of(self.spec.verify_every.max(1));
                    self.expect.check(parts.status, &parts.headers, body, open)
                }
                Err(_) => Err("transport".to_owned()),
            };
            if counted {
                match verdict {
                    Ok(()) => {
                        out.ok += 1;
                        out.latencies_us.push(u32::try_from((done - due).as_micros()).unwrap_or(u32::MAX));
                    }
                    Err(kind) => *out.errors.entry(kind).or_default() += 1,
                }
            }
            if outcome.is_err() || sender.is_closed() {
                match self.reconnect(&mut out, deadline).await {
                    Some(s) => sender = s,
                    None => break,
                }
            }
        }
        out
    }

    /// Opens a new connection after the server closed one; counts failures, gives up at the deadline.
    async fn reconnect(
        &self,
        out: &mut LoadResult,
        deadline: tokio::time::Instant,
    ) -> Option<SendRequest<http_body_util::Full<Bytes>>> {
        loop {
            let attempt = tokio::select! {
                r = connect(self.addr) => r,
                () = tokio::time::sleep_until(deadline) => return None,
            };
            match attempt {
                Ok(sender) => return Some(sender),
                Err(_) => {
                    let now = Instant::now();
                    if now >= self.window.from && now <= self.window.until {
                        *out.errors.entry("connect".to_owned()).or_default() += 1;
                    }
                    // Back off instead of spinning while the server refuses connections.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// Drives `addr` open-loop at `rate` requests per second: request `i` is due at `start + i / rate`,
/// taken by whichever of the `spec.clients` connections is free (at most that many in flight, like
/// wrk2), and its latency counts from when it was due, not from when a connection got to it: a
/// server that stalls is charged for every request that waited behind the stall. Requests due in
/// the window count; the ones still unanswered `grace` after the window are errors ("no reply in
/// time"), and the ones no connection could send before the window ended are errors too ("not sent:
/// every connection busy"), so a rate the server cannot keep up with shows as errors, not as a
/// lower rate.
pub async fn drive_open(
    addr: SocketAddr,
    spec: LoadSpec,
    rate: f64,
    grace: Duration,
    source: Arc<Source>,
    expect: Arc<Expect>,
) -> anyhow::Result<LoadResult> {
    anyhow::ensure!(rate > 0.0, "the rate must be positive");
    let mut senders = Vec::with_capacity(spec.clients);
    for _ in 0..spec.clients {
        senders.push(connect(addr).await.with_context(|| format!("connecting to {addr}"))?);
    }
    let start = Instant::now();
    let window = Window { from: start + spec.warmup, until: start + spec.warmup + spec.duration };
    let host = HeaderValue::try_from(addr.to_string()).expect("an address is a header value");
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let schedule = Schedule { start, interval_s: 1.0 / rate, next: next.clone() };
    let mut tasks = Vec::with_capacity(spec.clients);
    for (i, sender) in senders.into_iter().enumerate() {
        let client = Client {
            addr,
            host: host.clone(),
            source: source.clone(),
            expect: expect.clone(),
            spec,
            window,
            sent: Arc::new(AtomicU64::new(0)),
        };
        tasks.push(tokio::spawn(client.run_open(sender, i as u64, schedule.clone(), grace)));
    }
    let mut total = LoadResult { window: spec.duration, ..LoadResult::default() };
    for task in tasks {
        let part = task.await.context("a client task failed")?;
        total.ok += part.ok;
        for (kind, n) in part.errors {
            *total.errors.entry(kind).or_default() += n;
        }
        total.latencies_us.extend(part.latencies_us);
        total.replies += part.replies;
    }
    // Every request due in the window: taken by a connection or not.
    let due_in_window = |i: u64| schedule.due(i) >= window.from && schedule.due(i) < window.until;
    let first = (spec.warmup.as_secs_f64() * rate).ceil() as u64;
    let scheduled = (first..).take_while(|&i| schedule.due(i) < window.until).filter(|&i| due_in_window(i)).count();
    total.scheduled = scheduled as u64;
    let answered = total.ok + total.error_count();
    if total.scheduled > answered {
        *total.errors.entry("not sent: every connection busy".to_owned()).or_default() += total.scheduled - answered;
    }
    total.latencies_us.sort_unstable();
    Ok(total)
}

/// The open loop's clock: request `i` is due at `start + i × interval`.
#[derive(Clone)]
struct Schedule {
    start: Instant,
    interval_s: f64,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl Schedule {
    fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 * self.interval_s)
    }
}

/// Sends one request on a new connection and returns the reply.
pub async fn exchange_once(addr: SocketAddr, source: &Source) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
    let mut sender = connect(addr).await?;
    sender.ready().await?;
    let host = HeaderValue::try_from(addr.to_string()).expect("an address is a header value");
    let (parts, body) = sender.send_request(source.next(&host)).await?.into_parts();
    Ok((parts.status, parts.headers, body.collect().await?.to_bytes()))
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<http_body_util::Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // The connection ends when the server closes it or the sender is dropped; either is fine.
        let _ = conn.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let r = LoadResult { latencies_us: (1..=100).collect(), ..LoadResult::default() };
        assert_eq!(r.quantile_us(0.5), 50);
        assert_eq!(r.quantile_us(0.99), 99);
        assert_eq!(r.quantile_us(1.0), 100);
        assert_eq!(LoadResult::default().quantile_us(0.99), 0);
    }

    #[tokio::test]
    async fn a_closed_loop_against_an_echo_server_counts_replies_and_checks_lengths() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, super::super::baselines::echo_router(1024)).await });
        let mut keys = std::collections::BTreeMap::new();
        let key = zone_crypto::cipher::EncodingAesKey::parse(&"k".repeat(43)).unwrap();
        keys.insert(1, zone_crypto::cipher::CallbackCipher::new(key));
        let token = secrecy::SecretString::from("tok");
        let settings =
            zone_crypto::codec::CodecSettings { token: token.clone(), keys, window_secs: 300, nonce_capacity: 10 };
        let source =
            Arc::new(Source::resigned(&zone_crypto::codec::LocalCodec::new(settings), token, b"hello", "corp"));
        let len = source.body_len().unwrap();
        let spec = LoadSpec {
            clients: 4,
            warmup: Duration::from_millis(20),
            duration: Duration::from_millis(150),
            verify_every: 1,
            max_requests: None,
        };
        let good = drive(addr, spec, source.clone(), Arc::new(Expect::Echo { len })).await.unwrap();
        assert!(good.ok > 0 && good.error_count() == 0, "{good:?}");
        assert_eq!(good.latencies_us.len() as u64, good.ok);
        let bad = drive(addr, spec, source, Arc::new(Expect::Echo { len: len + 1 })).await.unwrap();
        assert_eq!(bad.ok, 0);
        assert!(bad.errors["echo length"] > 0, "{bad:?}");
    }
}
