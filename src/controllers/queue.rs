//! A work queue of keys (namespace names, anchor references): each key is handled by at
//! most one worker at a time, a key queued many times before a worker takes it runs
//! once, and failures are retried with exponential backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::metrics::ControllerMetrics;

/// Delay before the first retry of a failed key; doubled per failure up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct State<K> {
    ready: VecDeque<K>,
    queued: HashSet<K>,
    running: HashSet<K>,
    /// Keys queued again while running: they go back to `ready` when their run ends.
    rerun: HashSet<K>,
    failures: HashMap<K, u32>,
    closed: bool,
}

/// A deduplicating work queue; clone it to share.
#[derive(Debug)]
pub struct WorkQueue<K> {
    state: Arc<Mutex<State<K>>>,
    wake: Arc<Notify>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            wake: self.wake.clone(),
        }
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                ready: VecDeque::new(),
                queued: HashSet::new(),
                running: HashSet::new(),
                rerun: HashSet::new(),
                failures: HashMap::new(),
                closed: false,
            })),
            wake: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, State<K>> {
        // A worker that panicked while holding the lock left consistent sets behind.
        self.state.lock()
    }

    /// Queues `key` unless it is already waiting.
    pub fn add(&self, key: K) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        if state.running.contains(&key) {
            state.rerun.insert(key);
            return;
        }
        if state.queued.insert(key.clone()) {
            state.ready.push_back(key);
            drop(state);
            self.wake.notify_one();
        }
    }

    pub fn add_all(&self, keys: impl IntoIterator<Item = K>) {
        for key in keys {
            self.add(key);
        }
    }

    /// Keys waiting to be handled (not counting running ones).
    pub fn len(&self) -> usize {
        self.lock().ready.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops handing out keys; `next` returns `None` once the queue is closed.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_waiters();
    }

    /// The next key to handle, waiting for one; `None` when closed.
    pub async fn next(&self) -> Option<K> {
        loop {
            let notified = self.wake.notified();
            {
                let mut state = self.lock();
                if state.closed {
                    return None;
                }
                if let Some(key) = state.ready.pop_front() {
                    state.queued.remove(&key);
                    state.running.insert(key.clone());
                    if !state.ready.is_empty() {
                        self.wake.notify_one();
                    }
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// Marks `key` handled. On failure it is queued again after a backoff that grows
    /// with each consecutive failure; on success its failure count resets.
    pub fn done(&self, key: K, outcome: Outcome) {
        let mut state = self.lock();
        state.running.remove(&key);
        let rerun = state.rerun.remove(&key);
        match outcome {
            Outcome::Success => {
                state.failures.remove(&key);
            }
            Outcome::Retry => {
                let failures = state.failures.entry(key.clone()).or_insert(0);
                *failures = failures.saturating_add(1);
                let delay = backoff(*failures);
                drop(state);
                let queue = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    queue.add(key);
                });
                return;
            }
        }
        drop(state);
        if rerun {
            self.add(key);
        }
    }

    /// Runs `handler` for each key with at most `concurrency` keys at a time, until closed.
    pub async fn run<F, Fut>(&self, concurrency: usize, handler: F)
    where
        F: Fn(K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let queue = self.clone();
            let handler = handler.clone();
            workers.spawn(async move {
                while let Some(key) = queue.next().await {
                    let outcome = handler(key.clone()).await;
                    queue.done(key, outcome);
                }
            });
        }
        while workers.join_next().await.is_some() {}
    }
}

/// Runs one reconcile and records its outcome and duration in `metrics` under
/// `controller`. Here, not in `metrics`, so that the metrics name nothing of the
/// controllers (`metrics` -> `queue` -> `writer` -> `metrics` was a cycle).
pub async fn timed(
    metrics: &ControllerMetrics,
    controller: &str,
    reconcile: impl Future<Output = Outcome>,
) -> Outcome {
    let started = std::time::Instant::now();
    let outcome = reconcile.await;
    metrics.record_reconcile(controller, outcome == Outcome::Success, started.elapsed());
    outcome
}

/// How handling a key went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Try again later (a conflict, a transient API error).
    Retry,
}

impl Outcome {
    /// The outcome of a reconcile whose writes returned `result`; failures are logged
    /// (quietly when the next attempt is expected to see a different world).
    pub fn of_writes(result: Result<super::ops::Executed, super::writer::WriteError>) -> Self {
        match result {
            Ok(super::ops::Executed::Done) => Self::Success,
            Ok(super::ops::Executed::Replan) => Self::Retry,
            Err(err) => {
                if err.is_transient() {
                    tracing::debug!(error = %err, "will retry");
                } else {
                    tracing::warn!(error = %err, "reconcile failed; will retry");
                }
                Self::Retry
            }
        }
    }
}

fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_key_added_many_times_runs_once() {
        let queue = WorkQueue::new();
        for _ in 0..5 {
            queue.add("a");
        }
        queue.add("b");
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.next().await, Some("a"));
        assert_eq!(queue.next().await, Some("b"));
    }

    #[tokio::test]
    async fn a_key_added_while_running_runs_again_after() {
        let queue = WorkQueue::new();
        queue.add("a");
        let key = queue.next().await.expect("a key");
        queue.add("a");
        assert!(queue.is_empty(), "not handed out twice at once");
        queue.done(key, Outcome::Success);
        assert_eq!(queue.next().await, Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_retried_with_growing_backoff() {
        let queue = WorkQueue::new();
        queue.add("a");
        let key = queue.next().await.expect("a key");
        queue.done(key, Outcome::Retry);
        assert!(queue.is_empty());
        tokio::time::sleep(FIRST_BACKOFF + Duration::from_millis(1)).await;
        assert_eq!(queue.len(), 1);
        assert_eq!(backoff(1), FIRST_BACKOFF);
        assert_eq!(backoff(2), FIRST_BACKOFF * 2);
        assert_eq!(backoff(40), MAX_BACKOFF);
    }

    #[tokio::test]
    async fn run_handles_every_key_and_stops_when_closed() {
        let queue = WorkQueue::new();
        let handled = Arc::new(AtomicUsize::new(0));
        queue.add_all(0..100);
        let counter = handled.clone();
        let closer = queue.clone();
        let runner = tokio::spawn({
            let queue = queue.clone();
            async move {
                queue
                    .run(4, move |_key| {
                        let counter = counter.clone();
                        async move {
                            counter.fetch_add(1, Ordering::SeqCst);
                            Outcome::Success
                        }
                    })
                    .await
            }
        });
        while handled.load(Ordering::SeqCst) < 100 {
            tokio::task::yield_now().await;
        }
        closer.close();
        runner.await.expect("workers end");
        assert_eq!(handled.load(Ordering::SeqCst), 100);
    }
}
