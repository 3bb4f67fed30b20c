//! The one way a watch feeds the model. Every watcher in canopy (namespaces, anchors,
//! HierarchyConfigurations, Tenants, PersistentVolumes, LimitRanges, the configuration,
//! and each propagated kind's sources and copies) runs `run` with an `Indexer` that
//! applies events to its part of the model and says what changed, so relists, errors
//! and readiness are handled in one place, the same way for all of them.

use futures::{Stream, StreamExt};
use kube::runtime::watcher::{self, Event};

/// Drops what no indexer reads and what costs most memory: `metadata.managedFields`
/// (often more than half of a small object), so that neither a relist's buffer nor a
/// store holds them. For `WatchStreamExt::modify` on every watch but the copies', whose
/// indexer needs to know whether anyone but canopy wrote them (`CopyState::lean`).
pub fn without_managed_fields<K: kube::Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// How events of one kind update the model, and what they make dirty. Implementations
/// only update the model and describe the change; deciding what to do about it is the
/// reconcilers' business.
pub trait Indexer<K> {
    /// What the model reports after an update: what someone must look at again.
    type Change;

    /// What a relist keeps of each object until the list is complete: the object itself,
    /// or only what `reset` reads (a relist of 25,000 copies buffered whole was most of
    /// canopy's peak memory after a restart).
    type Listed;

    /// Shrinks one object of a relist to what `reset` reads; `None` keeps nothing of it.
    fn listed(&self, obj: K) -> Option<Self::Listed>;

    /// Adds or replaces one object.
    fn apply(&self, obj: K) -> Vec<Self::Change>;

    /// Removes one object.
    fn delete(&self, obj: K) -> Vec<Self::Change>;

    /// Replaces everything after a (re)list: `listed` is all that exists now (as
    /// `listed` shrank it), anything else the model holds of this kind is gone. `first`
    /// is true for the first list.
    fn reset(&self, listed: Vec<Self::Listed>, first: bool) -> Vec<Self::Change>;

    /// An event arrived: the watch works (after `reset` when it ended a list).
    fn watch_ok(&self, _list_done: bool) {}

    /// The watch failed; it retries by itself (`watch_health::resilient`).
    fn watch_failed(&self, _error: &watcher::Error) {}
}

/// `Indexer::listed` for an indexer whose `reset` reads whole objects of kind `$kind`.
macro_rules! lists_whole {
    ($kind:ty) => {
        type Listed = $kind;

        fn listed(&self, obj: $kind) -> Option<$kind> {
            Some(obj)
        }
    };
}
pub(crate) use lists_whole;

/// Feeds `events` into `indexer` until the stream ends, handing every change to `emit`.
/// A relist is buffered (each object as `Indexer::listed` shrinks it) and applied at once
/// when it is complete, so the model never holds a half-listed kind; `on_listed` runs
/// once, after the first complete list.
pub async fn run<K, I>(
    events: impl Stream<Item = Result<Event<K>, watcher::Error>>,
    indexer: I,
    mut emit: impl FnMut(I::Change),
    on_listed: impl FnOnce(),
) where
    I: Indexer<K>,
{
    let mut events = std::pin::pin!(events);
    let mut listing: Vec<I::Listed> = Vec::new();
    let mut on_listed = Some(on_listed);
    while let Some(event) = events.next().await {
        let changes = match event {
            Ok(Event::Apply(obj)) => {
                indexer.watch_ok(false);
                indexer.apply(obj)
            }
            Ok(Event::Delete(obj)) => {
                indexer.watch_ok(false);
                indexer.delete(obj)
            }
            Ok(Event::Init) => {
                // A fresh buffer: one grown by an earlier relist would be kept at its peak.
                listing = Vec::new();
                Vec::new()
            }
            Ok(Event::InitApply(obj)) => {
                listing.extend(indexer.listed(obj));
                Vec::new()
            }
            Ok(Event::InitDone) => {
                let changes = indexer.reset(std::mem::take(&mut listing), on_listed.is_some());
                indexer.watch_ok(true);
                if let Some(listed) = on_listed.take() {
                    listed();
                }
                changes
            }
            Err(err) => {
                tracing::debug!(error = %err, "watch failed; retrying (logged once per outage by watch_health)");
                indexer.watch_failed(&err);
                Vec::new()
            }
        };
        changes.into_iter().for_each(&mut emit);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Records what the driver calls, for checking the order of relists.
    #[derive(Default)]
    struct Recorder {
        calls: RefCell<Vec<String>>,
    }

    impl Indexer<u32> for &Recorder {
        type Change = u32;
        type Listed = u32;
        fn listed(&self, obj: u32) -> Option<u32> {
            // Odd objects are kept, even ones shrink to nothing.
            (obj % 2 == 1).then_some(obj)
        }
        fn apply(&self, obj: u32) -> Vec<u32> {
            self.calls.borrow_mut().push(format!("apply {obj}"));
            vec![obj]
        }
        fn delete(&self, obj: u32) -> Vec<u32> {
            self.calls.borrow_mut().push(format!("delete {obj}"));
            vec![obj]
        }
        fn reset(&self, listed: Vec<u32>, first: bool) -> Vec<u32> {
            self.calls
                .borrow_mut()
                .push(format!("reset {listed:?} first={first}"));
            listed
        }
        fn watch_failed(&self, _: &watcher::Error) {
            self.calls.borrow_mut().push("failed".to_owned());
        }
    }

    #[tokio::test]
    async fn a_relist_is_applied_whole_as_shrunk_and_listed_runs_once() {
        let events = futures::stream::iter(vec![
            Ok(Event::Init),
            Ok(Event::InitApply(1)),
            Ok(Event::InitApply(2)),
            Ok(Event::InitDone),
            Ok(Event::Apply(3)),
            Err(watcher::Error::NoResourceVersion),
            Ok(Event::Init),
            Ok(Event::InitApply(2)),
            Ok(Event::InitApply(5)),
            Ok(Event::InitDone),
            Ok(Event::Delete(2)),
        ]);
        let recorder = Recorder::default();
        let mut emitted = Vec::new();
        let mut listed = 0;
        run(events, &recorder, |c| emitted.push(c), || listed += 1).await;
        assert_eq!(
            recorder.calls.into_inner(),
            [
                "reset [1] first=true",
                "apply 3",
                "failed",
                "reset [5] first=false",
                "delete 2"
            ]
        );
        assert_eq!(emitted, [1, 3, 5, 2]);
        assert_eq!(listed, 1);
    }
}
