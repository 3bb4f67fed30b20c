//! Sources that could not be copied somewhere, reported on the source's namespace.

use std::collections::{BTreeSet, HashMap};

use parking_lot::Mutex;

use super::kinds::KindKey;
use super::plan::Conflict;

/// Conflicts found by the propagation workers, read by the namespace reconciler (which
/// owns the HierarchyConfiguration status they appear in).
#[derive(Debug, Default)]
pub struct Conflicts {
    /// By (kind, target namespace): what could not be written there.
    by_target: Mutex<HashMap<(KindKey, String), Vec<Conflict>>>,
}

impl Conflicts {
    /// Records what could not be written into `namespace`; returns the source namespaces
    /// whose report changed.
    pub fn set(
        &self,
        kind: &KindKey,
        namespace: &str,
        conflicts: Vec<Conflict>,
    ) -> BTreeSet<String> {
        let mut map = self.by_target.lock();
        let key = (kind.clone(), namespace.to_owned());
        let old = if conflicts.is_empty() {
            map.remove(&key).unwrap_or_default()
        } else {
            map.insert(key, conflicts.clone()).unwrap_or_default()
        };
        if old == conflicts {
            return BTreeSet::new();
        }
        old.iter()
            .chain(conflicts.iter())
            .map(|c| c.source_namespace.clone())
            .collect()
    }

    /// How many copies cannot be written, over all kinds and namespaces.
    pub fn count(&self) -> usize {
        self.by_target.lock().values().map(Vec::len).sum()
    }

    /// One line per object from `source_namespace` that could not be propagated, sorted.
    pub fn messages_for(&self, source_namespace: &str) -> Vec<String> {
        let map = self.by_target.lock();
        let mut lines: Vec<String> = map
            .iter()
            .flat_map(|((kind, _), conflicts)| {
                conflicts
                    .iter()
                    .filter(|c| c.source_namespace == source_namespace)
                    .map(move |c| message(&kind.1, &c.name, &c.namespace))
            })
            .collect();
        lines.sort();
        lines
    }
}

const CANNOT: &str = " cannot be propagated to ";
const NOT_A_COPY: &str = ": an object of that name there is not a copy";

/// The line reporting that `name` (of the kind `resource`) cannot be copied into
/// `namespace`.
pub fn message(resource: &str, name: &str, namespace: &str) -> String {
    format!("{resource} {name:?}{CANNOT}{namespace:?}{NOT_A_COPY}")
}

/// Whether `line` is one written by `message` (to find them again in a condition).
pub fn is_message(line: &str) -> bool {
    line.contains(CANNOT) && line.ends_with(NOT_A_COPY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_recognised() {
        let line = message("roles", "x", "team-a-dev");
        assert_eq!(
            line,
            "roles \"x\" cannot be propagated to \"team-a-dev\": an object of that name there is not a copy"
        );
        assert!(is_message(&line));
        assert!(!is_message(
            "the anchor p/x of this subnamespace is missing"
        ));
    }

    #[test]
    fn reports_follow_the_latest_plan() {
        let conflicts = Conflicts::default();
        let kind: KindKey = ("".into(), "limitranges".into());
        let c = Conflict {
            source_namespace: "acme".into(),
            name: "limits".into(),
            namespace: "acme-dev".into(),
        };
        assert_eq!(
            conflicts.set(&kind, "acme-dev", vec![c.clone()]),
            BTreeSet::from(["acme".to_owned()])
        );
        assert!(
            conflicts.set(&kind, "acme-dev", vec![c]).is_empty(),
            "unchanged"
        );
        assert_eq!(conflicts.messages_for("acme").len(), 1);
        assert!(conflicts.messages_for("acme")[0].contains("\"acme-dev\""));
        assert_eq!(conflicts.set(&kind, "acme-dev", vec![]).len(), 1, "healed");
        assert!(conflicts.messages_for("acme").is_empty());
    }
}
