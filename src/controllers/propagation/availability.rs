//! What the availability of each configured kind (`forest::propagated::availability`)
//! means for the `BadConfiguration` condition of the CanopyConfiguration and its Events.
//! Pure decisions.

use std::collections::BTreeMap;

use crate::controllers::conditions::DesiredCondition;
pub use crate::forest::propagated::{
    Availability, ERROR_FRESH, WatchHealth, availability, settled,
};
use crate::forest::propagated::{KindKey, display};

/// The condition type on `CanopyConfiguration.status.conditions`.
pub const CONDITION: &str = crate::api::BAD_CONFIGURATION;
pub use crate::api::reasons::{ALL_KINDS_AVAILABLE, KIND_UNAVAILABLE};

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
            "cannot propagate {}; retrying, each fix takes effect without a restart \
             (or remove the kind from spec.resources): {}",
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

    fn key(group: &str, resource: &str) -> KindKey {
        (group.to_owned(), resource.to_owned())
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
