//! Whether each configured kind can be used now, and what that means for readiness and
//! for the `BadConfiguration` condition of the CanopyConfiguration. Pure decisions.
//!
//! A kind canopy cannot use (not served yet, not namespaced, or its list refused by RBAC)
//! is reported and retried; it never makes a replica unready, because readiness gates
//! every webhook and the webhooks fail closed: one kind canopy cannot read would otherwise
//! block every namespace, anchor, Pod and Role write in the cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use super::kinds::{KindKey, display};
use crate::controllers::conditions::DesiredCondition;

/// The condition type on `CanopyConfiguration.status.conditions`.
pub const CONDITION: &str = crate::api::BAD_CONFIGURATION;
pub use crate::api::reasons::{ALL_KINDS_AVAILABLE, KIND_UNAVAILABLE};

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

/// The kinds that cannot be used, with why, sorted by kind.
pub fn unavailable(kinds: &[(KindKey, Availability)]) -> Vec<(KindKey, String)> {
    let mut out: Vec<(KindKey, String)> = kinds
        .iter()
        .filter_map(|(key, a)| match a {
            Availability::Unavailable(why) => Some((key.clone(), why.clone())),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// The `BadConfiguration` condition: true, naming every kind that cannot be used and
/// why, or false when there is none.
pub fn condition(kinds: &[(KindKey, Availability)]) -> DesiredCondition {
    let bad = unavailable(kinds);
    if bad.is_empty() {
        return DesiredCondition {
            type_: CONDITION,
            status: false,
            reason: ALL_KINDS_AVAILABLE.to_owned(),
            message: "every configured kind is propagated".to_owned(),
        };
    }
    let each: Vec<String> = bad
        .iter()
        .map(|(key, why)| format!("{}: {why}", display(key)))
        .collect();
    DesiredCondition {
        type_: CONDITION,
        status: true,
        reason: KIND_UNAVAILABLE.to_owned(),
        message: format!(
            "cannot propagate {}; retrying (grant canopy's ServiceAccount get, list, watch, \
             create, patch and delete on the kind, install its CRD, or remove it from \
             spec.resources): {}",
            if bad.len() == 1 { "a kind" } else { "kinds" },
            each.join("; ")
        ),
    }
}

/// What changed against the kinds an Event already reported as unusable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transitions {
    /// Kinds that became unusable since, with why.
    pub unusable: Vec<(KindKey, String)>,
    /// Kinds usable again (and still configured: a dropped kind is not news).
    pub usable: Vec<KindKey>,
    /// The kinds reported as unusable after these Events: those unusable now, and those
    /// still on their way back (listing again after a grant).
    pub reported: BTreeMap<KindKey, String>,
}

/// Compares `kinds` now with the kinds an Event already reported as unusable.
pub fn transitions(
    reported: &BTreeMap<KindKey, String>,
    kinds: &[(KindKey, Availability)],
) -> Transitions {
    let bad = unavailable(kinds);
    let unusable = bad
        .iter()
        .filter(|(key, _)| !reported.contains_key(key))
        .cloned()
        .collect();
    let usable = kinds
        .iter()
        .filter(|(key, a)| *a == Availability::Ready && reported.contains_key(key))
        .map(|(key, _)| key.clone())
        .collect();
    let mut still: BTreeMap<KindKey, String> = kinds
        .iter()
        .filter(|(_, a)| *a == Availability::Listing)
        .filter_map(|(key, _)| Some((key.clone(), reported.get(key)?.clone())))
        .collect();
    still.extend(bad);
    Transitions {
        unusable,
        usable,
        reported: still,
    }
}

/// The longest note an Event may carry (events.k8s.io allows 1 kB).
const NOTE_LIMIT: usize = 1000;

/// `text` cut to an Event note's size, at a character boundary.
pub fn event_note(text: &str) -> String {
    if text.len() <= NOTE_LIMIT {
        return text.to_owned();
    }
    let mut end = NOTE_LIMIT - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
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

    fn key(group: &str, resource: &str) -> KindKey {
        (group.to_owned(), resource.to_owned())
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

    #[test]
    fn the_condition_names_every_unavailable_kind_and_why() {
        let kinds = [
            (key("", "resourcequotas"), Availability::Ready),
            (
                key("faults.canopy.dev", "widgets"),
                Availability::Unavailable("no such resource is served".into()),
            ),
            (
                key("", "secrets"),
                Availability::Unavailable("secrets is forbidden".into()),
            ),
            (key("", "limitranges"), Availability::Listing),
        ];
        let c = condition(&kinds);
        assert!(c.status);
        assert_eq!(c.type_, CONDITION);
        assert_eq!(c.reason, KIND_UNAVAILABLE);
        assert!(c.message.contains("secrets: secrets is forbidden"), "{c:?}");
        assert!(
            c.message
                .contains("widgets.faults.canopy.dev: no such resource is served"),
            "{c:?}"
        );
        // Sorted by kind: the same kinds always give the same message (no status churn).
        let secrets = c.message.find("secrets:").unwrap_or(usize::MAX);
        let widgets = c.message.find("widgets.").unwrap_or(0);
        assert!(secrets < widgets, "{c:?}");
        assert!(!c.message.contains("limitranges"));

        let fine = condition(&kinds[..1]);
        assert!(!fine.status);
        assert_eq!(fine.reason, ALL_KINDS_AVAILABLE);
    }

    #[test]
    fn events_report_each_change_once() {
        let secrets = key("", "secrets");
        let quotas = key("", "resourcequotas");
        let refused = vec![
            (quotas.clone(), Availability::Ready),
            (
                secrets.clone(),
                Availability::Unavailable("forbidden".into()),
            ),
        ];
        let first = transitions(&BTreeMap::new(), &refused);
        assert_eq!(
            first.unusable,
            vec![(secrets.clone(), "forbidden".to_owned())]
        );
        assert!(first.usable.is_empty());
        let again = transitions(&first.reported, &refused);
        assert!(again.unusable.is_empty() && again.usable.is_empty());
        // Listing again after the grant is no news yet, and is remembered; ready is news.
        let listing = vec![(secrets.clone(), Availability::Listing)];
        let on_the_way = transitions(&again.reported, &listing);
        assert!(on_the_way.unusable.is_empty() && on_the_way.usable.is_empty());
        let ready = vec![(secrets.clone(), Availability::Ready)];
        let back = transitions(&on_the_way.reported, &ready);
        assert_eq!(back.usable, vec![secrets]);
        assert!(back.reported.is_empty());
        // Dropped from the configuration: nothing to say, nothing to remember.
        let dropped = transitions(&again.reported, &[]);
        assert_eq!(dropped, Transitions::default());
    }

    #[test]
    fn event_notes_fit_an_event() {
        assert_eq!(event_note("short"), "short");
        let long = "é".repeat(800);
        let note = event_note(&long);
        assert!(note.len() <= NOTE_LIMIT && note.ends_with("..."));
    }
}
