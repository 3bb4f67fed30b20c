//! How every watcher reconnects, and whether the model it feeds is stale.
//!
//! Every watch stream (Forest watchers, propagation's source and copy watchers, the
//! webhook-rules watcher) goes through [`resilient`]. It replaces kube-runtime's default
//! backoff (0.8 s doubling to 30 s, which after a 45 s apiserver outage left watches
//! waiting 30 s, then another 30 s on the `410 Gone` that follows the reconnect):
//!
//! - a failed watch or list is retried after [`retry_delay`]: 200 ms doubling per
//!   consecutive failure to at most 1.6 s, times a jitter of 0.75–1.25 (so at most 2 s);
//! - the first `410 Gone` after a healthy stretch relists at once (the watcher has already
//!   dropped its resource version; waiting only delays the relist);
//! - errors are not passed on: the first of an outage is logged as a warning, the rest at
//!   debug level, and the recovery at info level with how long the watch was down.
//!
//! A watch is **stale** from its first error until it is healthy again: an event arrives
//! (other than the start of a relist), a relist completes, or a retry has been quiet for
//! [`SETTLE`] (a resumed watch that nothing happens on sends no event). Stale watches
//! show as `canopy_watch_stale{watch} 1`, and `/readyz` answers 503 once one has been
//! stale for longer than [`READINESS_GRACE`] (see `readiness`).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use kube::runtime::watcher::{self, Event};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The delay before the first retry of a failed watch.
pub const FIRST_RETRY: Duration = Duration::from_millis(200);
/// The longest delay between retries, before jitter.
pub const MAX_RETRY: Duration = Duration::from_millis(1600);
/// A retry that has neither failed nor delivered anything for this long is taken as a
/// healthy watch.
pub const SETTLE: Duration = Duration::from_secs(3);
/// How long a watch may be stale before `/readyz` says not ready. Shorter hiccups (a
/// dropped connection, an apiserver rollout) never flap readiness.
pub const READINESS_GRACE: Duration = Duration::from_secs(10);

/// Why a watch failed, as far as the retry delay is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// `410 Gone`: the resource version is too old; the watcher relists on its next poll.
    Gone,
    /// Anything else: the apiserver is unreachable, refused, or failed.
    Other,
}

impl Failure {
    pub fn of(err: &watcher::Error) -> Self {
        let status = match err {
            watcher::Error::WatchError(status) => Some(&**status),
            watcher::Error::InitialListFailed(err)
            | watcher::Error::WatchStartFailed(err)
            | watcher::Error::WatchFailed(err) => crate::api::errors::status(err),
            _ => None,
        };
        if status.is_some_and(crate::api::errors::is_gone) {
            Self::Gone
        } else {
            Self::Other
        }
    }
}

/// The delay before retrying a watch that has failed `failures` times in a row (this
/// failure included, so at least 1), with `jitter` in `[0, 1)`. The first `410 Gone` of a
/// run of failures relists at once; later ones back off like any failure.
pub fn retry_delay(failure: Failure, failures: u32, gone_before: bool, jitter: f64) -> Duration {
    if failure == Failure::Gone && !gone_before {
        return Duration::ZERO;
    }
    let doublings = failures.saturating_sub(1).min(16);
    let nominal = FIRST_RETRY.saturating_mul(1u32 << doublings).min(MAX_RETRY);
    nominal.mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// What an event says about a watch's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A relist started: the model is not up to date until it is done.
    RelistStarted,
    /// An object of a relist: still relisting.
    Relisting,
    /// A relist finished, or a watch event arrived: the watch works.
    Healthy,
}

impl Progress {
    pub fn of<K>(event: &Event<K>) -> Self {
        match event {
            Event::Init => Self::RelistStarted,
            Event::InitApply(_) => Self::Relisting,
            Event::InitDone | Event::Apply(_) | Event::Delete(_) => Self::Healthy,
        }
    }
}

/// The readiness answer: `Ok` when ready, else why not. `loaded` is whether every watcher
/// has listed once; `stalest` the watch stale for longest, and for how long.
pub fn readiness(
    loaded: bool,
    stalest: Option<(&str, Duration)>,
    grace: Duration,
) -> Result<(), String> {
    if !loaded {
        return Err("the Forest and configuration are still loading".to_owned());
    }
    match stalest {
        Some((watch, stale)) if stale > grace => Err(format!(
            "the {watch} watch has been failing for {}s; the model is stale",
            stale.as_secs()
        )),
        _ => Ok(()),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchLabels {
    watch: String,
}

/// Every running watch's health. The manager makes one and hands it to every watch (the
/// Forest's and the propagated kinds', through `ClusterState::health`), to `/readyz` and
/// to `/metrics`.
pub struct WatchHealth {
    next: AtomicU64,
    /// By registration: the watch's name and since when it is stale.
    watches: Mutex<HashMap<u64, (String, Option<Instant>)>>,
    stale: Family<WatchLabels, Gauge>,
}

impl Default for WatchHealth {
    fn default() -> Self {
        Self::new()
    }
}

impl WatchHealth {
    pub fn new() -> Self {
        Self {
            next: AtomicU64::new(0),
            watches: Mutex::new(HashMap::new()),
            stale: Family::default(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "watch_stale",
            "1 while a watch fails and the model it feeds may be out of date, by watch",
            self.stale.clone(),
        );
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<u64, (String, Option<Instant>)>> {
        self.watches.lock()
    }

    fn add(&self, name: &str) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, (name.to_owned(), None));
        self.publish(name);
        id
    }

    fn remove(&self, id: u64) {
        let name = self.lock().remove(&id).map(|(name, _)| name);
        if let Some(name) = name {
            self.publish(&name);
        }
    }

    fn set_stale(&self, id: u64, since: Option<Instant>) {
        let name = {
            let mut watches = self.lock();
            let Some(entry) = watches.get_mut(&id) else {
                return;
            };
            entry.1 = since;
            entry.0.clone()
        };
        self.publish(&name);
    }

    /// Sets the gauge of `name`: 1 if any watch of that name is stale.
    fn publish(&self, name: &str) {
        let stale = self
            .lock()
            .values()
            .any(|(n, since)| n == name && since.is_some());
        self.stale
            .get_or_create(&WatchLabels {
                watch: name.to_owned(),
            })
            .set(i64::from(stale));
    }

    /// The watch stale for longest, and for how long.
    pub fn stalest(&self) -> Option<(String, Duration)> {
        let now = Instant::now();
        self.lock()
            .values()
            .filter_map(|(name, since)| since.map(|s| (name.clone(), now.duration_since(s))))
            .max_by_key(|(_, stale)| *stale)
    }
}

/// Unregisters a watch when its stream is dropped (a kind no longer propagated, a
/// manager stopping).
struct Registration {
    health: Arc<WatchHealth>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.health.remove(self.id);
    }
}

struct Resilient<S> {
    name: String,
    stream: Pin<Box<S>>,
    registration: Registration,
    /// Consecutive failures since the watch was last healthy.
    failures: u32,
    /// Whether one of them was a `410 Gone`.
    gone: bool,
    stale_since: Option<Instant>,
    /// Sleep this long before polling again (after a failure).
    wait: Option<Duration>,
    relisting: bool,
}

impl<S> Resilient<S> {
    fn healthy(&mut self) {
        if let Some(since) = self.stale_since.take() {
            tracing::info!(
                watch = %self.name,
                down_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
                "watch recovered"
            );
            self.registration
                .health
                .set_stale(self.registration.id, None);
        }
        self.failures = 0;
        self.gone = false;
    }

    fn failed(&mut self, err: &watcher::Error) {
        let failure = Failure::of(err);
        self.failures = self.failures.saturating_add(1);
        let delay = retry_delay(failure, self.failures, self.gone, jitter());
        self.gone |= failure == Failure::Gone;
        if self.stale_since.is_none() {
            let now = Instant::now();
            self.stale_since = Some(now);
            self.registration
                .health
                .set_stale(self.registration.id, Some(now));
            tracing::warn!(watch = %self.name, error = %err, "watch failed; retrying, the model may be stale until it recovers");
        } else {
            tracing::debug!(watch = %self.name, error = %err, failures = self.failures, "watch failed again");
        }
        self.wait = Some(delay);
    }
}

/// A number in `[0, 1)` that differs between calls and processes, for jitter; no
/// cryptographic quality needed.
fn jitter() -> f64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// `stream` (a kube-runtime watcher) with canopy's retries and staleness tracking in
/// `health`, under `name` (the `watch` label). Errors are logged here and passed on.
pub fn resilient<K, S>(
    health: &Arc<WatchHealth>,
    name: String,
    stream: S,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + use<K, S>
where
    K: Send + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
{
    let registration = Registration {
        health: health.clone(),
        id: health.add(&name),
    };
    let state = Resilient {
        name,
        stream: Box::pin(stream),
        registration,
        failures: 0,
        gone: false,
        stale_since: None,
        wait: None,
        relisting: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        let settling = match s.wait.take() {
            Some(delay) => {
                tokio::time::sleep(delay).await;
                true
            }
            None => false,
        };
        let next = if settling && !s.relisting {
            tokio::select! {
                next = s.stream.next() => next,
                () = tokio::time::sleep(SETTLE) => {
                    // The retry neither failed nor delivered: a resumed, quiet watch.
                    s.healthy();
                    s.stream.next().await
                }
            }
        } else {
            s.stream.next().await
        };
        match next {
            None => None,
            Some(Ok(event)) => {
                match Progress::of(&event) {
                    Progress::RelistStarted => s.relisting = true,
                    Progress::Relisting => {}
                    Progress::Healthy => {
                        s.relisting = false;
                        s.healthy();
                    }
                }
                Some((Ok(event), s))
            }
            Some(Err(err)) => {
                s.relisting = false;
                s.failed(&err);
                // Passed on too: a consumer may report it (propagation marks a kind
                // whose list is refused as unavailable); the retry waits on the next
                // poll.
                Some((Err(err), s))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_fast_and_are_capped() {
        let nominal = |n| retry_delay(Failure::Other, n, false, 0.5);
        assert_eq!(nominal(1), Duration::from_millis(200));
        assert_eq!(nominal(2), Duration::from_millis(400));
        assert_eq!(nominal(4), Duration::from_millis(1600));
        assert_eq!(nominal(5), Duration::from_millis(1600));
        assert_eq!(nominal(u32::MAX), Duration::from_millis(1600));
    }

    #[test]
    fn jitter_stays_within_a_quarter_and_never_exceeds_two_seconds() {
        for n in 1..40 {
            let low = retry_delay(Failure::Other, n, false, 0.0);
            let high = retry_delay(Failure::Other, n, false, 0.999_999);
            assert!(low >= Duration::from_millis(150), "{n}: {low:?}");
            assert!(high <= Duration::from_secs(2), "{n}: {high:?}");
            assert!(low < high);
        }
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }

    #[test]
    fn the_first_gone_relists_at_once_a_repeated_one_backs_off() {
        assert_eq!(retry_delay(Failure::Gone, 7, false, 0.5), Duration::ZERO);
        assert_eq!(
            retry_delay(Failure::Gone, 1, true, 0.5),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn a_gone_status_is_recognised() {
        let gone =
            kube::core::Status::failure("too old resource version", "Expired").with_code(410);
        assert_eq!(
            Failure::of(&watcher::Error::WatchError(Box::new(gone))),
            Failure::Gone
        );
        let other = kube::core::Status::failure("boom", "InternalError").with_code(500);
        assert_eq!(
            Failure::of(&watcher::Error::WatchError(Box::new(other))),
            Failure::Other
        );
        assert_eq!(
            Failure::of(&watcher::Error::NoResourceVersion),
            Failure::Other
        );
    }

    #[test]
    fn readiness_waits_for_the_first_list_and_tolerates_short_staleness() {
        let grace = Duration::from_secs(10);
        assert!(readiness(false, None, grace).is_err());
        assert_eq!(readiness(true, None, grace), Ok(()));
        assert_eq!(
            readiness(true, Some(("namespaces", Duration::from_secs(9))), grace),
            Ok(())
        );
        let err = readiness(true, Some(("namespaces", Duration::from_secs(11))), grace)
            .expect_err("stale for longer than the grace");
        assert!(err.contains("namespaces"), "{err}");
    }

    type Item = Result<Event<u32>, watcher::Error>;

    fn refused() -> Item {
        Err(watcher::Error::NoResourceVersion)
    }

    fn gone() -> Item {
        Err(watcher::Error::WatchError(Box::new(
            kube::core::Status::failure("too old", "Expired").with_code(410),
        )))
    }

    fn stale(health: &WatchHealth, name: &str) -> bool {
        health
            .lock()
            .values()
            .any(|(n, s)| n == name && s.is_some())
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_passed_on_retried_fast_and_mark_the_watch_stale() {
        let items: Vec<Item> = vec![
            Ok(Event::Apply(1)),
            refused(),
            refused(),
            gone(),
            Ok(Event::Init),
            Ok(Event::InitApply(2)),
            Ok(Event::InitDone),
        ];
        let (tx, rx) = futures::channel::mpsc::unbounded::<Item>();
        let health = Arc::new(WatchHealth::new());
        let mut out = std::pin::pin!(resilient(&health, "test-swallow".to_owned(), rx));
        for item in items {
            tx.unbounded_send(item).expect("open");
        }
        let start = tokio::time::Instant::now();
        assert!(matches!(out.next().await, Some(Ok(Event::Apply(1)))));
        assert!(!stale(&health, "test-swallow"));
        // Two failures (200 ms, 400 ms, jittered), then a 410 that relists at once; each
        // error is passed on for the consumer to report.
        for _ in 0..3 {
            assert!(matches!(out.next().await, Some(Err(_))));
            assert!(stale(&health, "test-swallow"));
        }
        assert!(matches!(out.next().await, Some(Ok(Event::Init))));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(450), "{waited:?}");
        assert!(waited <= Duration::from_millis(750), "{waited:?}");
        assert!(stale(&health, "test-swallow"), "stale while relisting");
        assert!(matches!(out.next().await, Some(Ok(Event::InitApply(2)))));
        assert!(stale(&health, "test-swallow"));
        assert!(matches!(out.next().await, Some(Ok(Event::InitDone))));
        assert!(!stale(&health, "test-swallow"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_retry_counts_as_recovered() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Item>();
        let health = Arc::new(WatchHealth::new());
        let mut out = std::pin::pin!(resilient(&health, "test-quiet".to_owned(), rx));
        tx.unbounded_send(refused()).expect("open");
        assert!(
            matches!(out.next().await, Some(Err(_))),
            "the error is passed on"
        );
        // Nothing follows the failure: after the retry and SETTLE, the watch is healthy.
        let next = tokio::time::timeout(Duration::from_secs(10), out.next()).await;
        assert!(next.is_err(), "no item");
        assert!(!stale(&health, "test-quiet"));
        assert!(health.stalest().is_none());
    }
}
