//! A sleep as precise as the OS's timers, for the delays the zone adds on purpose (the `delay_ms`
//! fault, the benchmark's canned SDK latency).
//!
//! `tokio::time::sleep` runs on a wheel of 1 ms ticks and rounds every deadline up to the next tick,
//! and the driver waits in whole milliseconds: a 5 ms sleep lasts 6–7 ms, which made every delayed
//! SDK call ~2 ms slower than asked. Here one thread holds every pending deadline and waits on a
//! condition variable until the earliest (a futex wait with a nanosecond timeout), then completes
//! the due sleepers; it starts on first use and sleeps when nothing is pending.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Waits until `d` has passed, to within the OS timer's slack (tens of microseconds).
pub async fn sleep(d: Duration) {
    sleep_until(Instant::now() + d).await;
}

/// Waits until `deadline`, to within the OS timer's slack.
pub async fn sleep_until(deadline: Instant) {
    if deadline <= Instant::now() {
        return;
    }
    let (tx, rx) = oneshot::channel();
    timer().schedule(deadline, tx);
    // The timer thread never drops a sender unfired; if it ever did, waking early is harmless.
    let _ = rx.await;
}

struct Timer {
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    senders: std::collections::HashMap<u64, oneshot::Sender<()>>,
    next_id: u64,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let timer: &'static Timer =
            Box::leak(Box::new(Timer { pending: Mutex::new(Pending::default()), wake: Condvar::new() }));
        std::thread::Builder::new()
            .name("zone-local-timer".into())
            .spawn(move || timer.run())
            .expect("spawning the timer thread");
        timer
    })
}

impl Timer {
    fn schedule(&self, deadline: Instant, tx: oneshot::Sender<()>) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let id = p.next_id;
        p.next_id += 1;
        let earliest = p.heap.peek().is_none_or(|Reverse((at, _))| deadline < *at);
        p.heap.push(Reverse((deadline, id)));
        p.senders.insert(id, tx);
        drop(p);
        if earliest {
            self.wake.notify_one();
        }
    }

    fn run(&self) {
        let mut due = Vec::new();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            while let Some(Reverse((at, id))) = p.heap.peek().copied() {
                if at > now {
                    break;
                }
                p.heap.pop();
                due.extend(p.senders.remove(&id));
            }
            if !due.is_empty() {
                drop(p);
                for tx in due.drain(..) {
                    let _ = tx.send(());
                }
                p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            p = match p.heap.peek() {
                None => self.wake.wait(p).unwrap_or_else(|e| e.into_inner()),
                Some(Reverse((at, _))) => {
                    let wait = at.saturating_duration_since(now).max(Duration::from_micros(1));
                    self.wake.wait_timeout(p, wait).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sleep_lasts_at_least_its_duration() {
        // How much less it overshoots than tokio's timer is measured in BENCHMARKS.md, not asserted
        // here: on a loaded machine any thread may wake late.
        for _ in 0..5 {
            let t = Instant::now();
            sleep(Duration::from_millis(2)).await;
            assert!(t.elapsed() >= Duration::from_millis(2), "{:?}", t.elapsed());
        }
        sleep(Duration::ZERO).await;
    }

    #[tokio::test]
    async fn concurrent_sleeps_end_in_deadline_order() {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for ms in [9u64, 1, 5, 3, 7] {
            tasks.push(tokio::spawn(async move {
                sleep_until(start + Duration::from_millis(ms)).await;
                (ms, start.elapsed())
            }));
        }
        for t in tasks {
            let (ms, took) = t.await.unwrap();
            assert!(took >= Duration::from_millis(ms), "{ms} ms: {took:?}");
        }
    }
}
