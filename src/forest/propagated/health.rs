//! How usable each propagated kind is now, from what its two watches last said. Pure.
//!
//! A kind canopy cannot use (not served yet, not namespaced, or its list refused by RBAC)
//! is reported and retried; it never makes a replica unready, because readiness gates
//! every webhook and the webhooks fail closed: one kind canopy cannot read would otherwise
//! block every namespace, anchor, Pod and Role write in the cluster.

use std::time::Duration;

/// How long a watch error counts after it happened. A watch that keeps failing reports
/// again at least every 30 s (the watchers' longest backoff); one that recovered without
/// an event to show it (a watch restarted quietly) stops counting after this.
pub const ERROR_FRESH: Duration = Duration::from_secs(90);

/// What one of a kind's two watches (sources, copies) last said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchHealth {
    /// It has finished a list at least once: the index holds what it listed.
    pub listed: bool,
    /// The last error and how long ago it happened; cleared by the next list or event.
    pub error: Option<(String, Duration)>,
}

/// How usable a configured kind is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    /// Sources and copies listed, and their watches work.
    Ready,
    /// Resolved; its first lists are under way (no error yet).
    Listing,
    /// Cannot be used now; why (not served, cluster-scoped, refused by RBAC, ...).
    Unavailable(String),
}

/// A resolved kind's availability from its two watches. An error wins over a past list:
/// the index may be stale, and the watch is retrying with backoff.
pub fn availability(sources: &WatchHealth, copies: &WatchHealth) -> Availability {
    for (what, health) in [("sources", sources), ("copies", copies)] {
        if let Some((error, age)) = &health.error
            && *age < ERROR_FRESH
        {
            return Availability::Unavailable(format!("listing or watching its {what}: {error}"));
        }
    }
    if sources.listed && copies.listed {
        Availability::Ready
    } else {
        Availability::Listing
    }
}

/// Whether the webhooks may serve: no kind is still in its first list. A kind that
/// failed is not waited for (the source-conflict check skips it, see
/// `Propagation::conflicts_for_source`); a kind still listing is, so a replica that just
/// started does not admit, for a moment, sources that conflict with objects it has not
/// listed yet.
pub fn settled<'a>(kinds: impl IntoIterator<Item = &'a Availability>) -> bool {
    kinds
        .into_iter()
        .all(|a| !matches!(a, Availability::Listing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(listed: bool, error: Option<&str>) -> WatchHealth {
        WatchHealth {
            listed,
            error: error.map(|e| (e.to_owned(), Duration::from_secs(1))),
        }
    }

    #[test]
    fn a_kind_is_ready_once_both_lists_are_done_and_no_watch_fails() {
        assert_eq!(
            availability(&health(true, None), &health(true, None)),
            Availability::Ready
        );
        assert_eq!(
            availability(&health(true, None), &health(false, None)),
            Availability::Listing
        );
        let refused = availability(&health(false, Some("403 forbidden")), &health(false, None));
        assert!(
            matches!(&refused, Availability::Unavailable(why) if why.contains("403 forbidden") && why.contains("sources")),
            "{refused:?}"
        );
        // A watch that fails after a list: the index may be stale, the kind is reported.
        assert!(matches!(
            availability(&health(true, None), &health(true, Some("gone"))),
            Availability::Unavailable(_)
        ));
        // Until the error is old enough that the watch must have recovered quietly.
        let old = WatchHealth {
            listed: true,
            error: Some(("gone".into(), ERROR_FRESH)),
        };
        assert_eq!(availability(&health(true, None), &old), Availability::Ready);
    }

    #[test]
    fn readiness_waits_for_first_lists_but_never_for_a_failing_kind() {
        assert!(settled(&[]));
        assert!(settled(&[
            Availability::Ready,
            Availability::Unavailable("forbidden".into())
        ]));
        assert!(!settled(&[Availability::Ready, Availability::Listing]));
    }
}
