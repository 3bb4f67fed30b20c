//! How fast copies are written: as fast as the apiserver takes them, with a bounded number
//! in flight.
//!
//! A client-side rate (the old default of 200 writes/s) made a fan-out to 1,000
//! namespaces take 4 s where the apiserver takes the same writes in 1.5 s, and it is
//! a guess at the apiserver's capacity made by a client that cannot see it. The
//! apiserver can: its API Priority and Fairness queues each flow and answers `429 Too
//! Many Requests` with `Retry-After` when a priority level is full, which kube's client
//! honours (its default retry layer waits the `Retry-After` and retries 429, 503 and
//! 504). So canopy bounds only what it has **in flight**: at most
//! `COPY_WRITES_IN_FLIGHT` copy writes at once, and `COPY_WRITES_IN_FLIGHT_PER_KIND` of
//! one kind, so a fan-out of one kind cannot starve another kind's writes. Failures back
//! off per object in the work queues (`queue.rs`), never in a hot loop. A rate is still
//! there for whoever wants one: `--write-qps`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Copy writes in flight at once, all kinds together.
pub const COPY_WRITES_IN_FLIGHT: usize = 64;
/// Copy writes of one kind in flight at once.
pub const COPY_WRITES_IN_FLIGHT_PER_KIND: usize = 32;

/// The bounds every copy write passes; cheap to clone.
#[derive(Clone)]
pub struct WriteBounds {
    total: Arc<Semaphore>,
    per_kind: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    /// An optional client-side rate (`--write-qps`), off by default.
    rate: Option<Arc<DefaultDirectRateLimiter>>,
}

/// Held while one copy write is in flight.
pub struct InFlight {
    // `None` only if a semaphore were closed, which never happens: the write then goes
    // unbounded rather than not at all.
    _kind: Option<OwnedSemaphorePermit>,
    _total: Option<OwnedSemaphorePermit>,
}

impl WriteBounds {
    /// The in-flight bounds, and a rate of `qps` writes per second (bursts of as many)
    /// if one is given.
    pub fn new(qps: Option<u32>) -> Self {
        Self {
            total: Arc::new(Semaphore::new(COPY_WRITES_IN_FLIGHT)),
            per_kind: Arc::default(),
            rate: qps
                .and_then(NonZeroU32::new)
                .map(|qps| Arc::new(RateLimiter::direct(Quota::per_second(qps)))),
        }
    }

    /// Waits for room for one more write of `kind` (its plural); the room is given back
    /// when the returned guard is dropped.
    pub async fn enter(&self, kind: &str) -> InFlight {
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        let of_kind = self
            .per_kind
            .lock()
            .entry(kind.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(COPY_WRITES_IN_FLIGHT_PER_KIND)))
            .clone();
        // The kind's permit first: writes of a busy kind wait there without holding one
        // of the shared permits that other kinds need. The semaphores are never closed.
        let kind = of_kind.acquire_owned().await.ok();
        let total = self.total.clone().acquire_owned().await.ok();
        InFlight {
            _kind: kind,
            _total: total,
        }
    }

    /// How many copy writes are in flight now.
    pub fn in_flight(&self) -> usize {
        COPY_WRITES_IN_FLIGHT - self.total.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Runs `n` writes of `kind` that each take 20 ms; returns the most in flight at once
    /// (of that kind, and in total).
    async fn burst(bounds: &WriteBounds, kinds: &[&str], n: usize) -> (usize, usize) {
        let peak_kind = Arc::new(AtomicUsize::new(0));
        let peak_total = Arc::new(AtomicUsize::new(0));
        let now_kind = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let kind = kinds[i % kinds.len()].to_owned();
            let first_kind = kind == kinds[0];
            let (bounds, peak_kind, peak_total, now_kind) = (
                bounds.clone(),
                peak_kind.clone(),
                peak_total.clone(),
                now_kind.clone(),
            );
            tasks.spawn(async move {
                let _in = bounds.enter(&kind).await;
                if first_kind {
                    let k = now_kind.fetch_add(1, Ordering::SeqCst) + 1;
                    peak_kind.fetch_max(k, Ordering::SeqCst);
                }
                peak_total.fetch_max(bounds.in_flight(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                if first_kind {
                    now_kind.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        (
            peak_kind.load(Ordering::SeqCst),
            peak_total.load(Ordering::SeqCst),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn writes_in_flight_are_bounded_per_kind_and_in_total() {
        let bounds = WriteBounds::new(None);
        let (kind, total) = burst(&bounds, &["rolebindings"], 200).await;
        assert_eq!(kind, COPY_WRITES_IN_FLIGHT_PER_KIND);
        assert_eq!(total, COPY_WRITES_IN_FLIGHT_PER_KIND);
        let kinds = ["rolebindings", "roles", "networkpolicies", "resourcequotas"];
        let (kind, total) = burst(&bounds, &kinds, 400).await;
        assert!(kind <= COPY_WRITES_IN_FLIGHT_PER_KIND, "{kind}");
        assert_eq!(total, COPY_WRITES_IN_FLIGHT);
        assert_eq!(bounds.in_flight(), 0, "every permit is given back");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_rate_nothing_waits_but_the_bounds() {
        let bounds = WriteBounds::new(None);
        let started = tokio::time::Instant::now();
        // 320 writes of 20 ms, 32 at a time: 10 rounds.
        burst(&bounds, &["rolebindings"], 320).await;
        assert_eq!(started.elapsed(), Duration::from_millis(200));
    }
}
