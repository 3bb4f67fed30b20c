//! Labels only canopy may set.

use std::collections::BTreeMap;

use crate::api::keys;

/// Why an update by someone other than canopy may not go through: it removes canopy's
/// finalizer `finalizer`, which would let the object go without canopy's cleanup (an
/// anchor deleted without its namespace leaves a subnamespace behind, outside canopy's
/// control). `None` when the finalizer stays, or was never there.
pub fn removed_finalizer(
    old: Option<&kube::core::DynamicObject>,
    new: Option<&kube::core::DynamicObject>,
    finalizer: &str,
    what: &str,
) -> Option<String> {
    let has = |obj: Option<&kube::core::DynamicObject>| {
        obj.and_then(|o| o.metadata.finalizers.as_ref())
            .is_some_and(|f| f.iter().any(|f| f == finalizer))
    };
    (has(old) && !has(new)).then(|| {
        format!(
            "{what}: only canopy may remove the finalizer {finalizer:?}; it stays until canopy \
             has finished cleaning up (delete the object and canopy removes it)"
        )
    })
}

/// Protected labels that differ between `old` and `new` (added, changed or removed).
pub fn changed_protected_labels(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut changed: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| keys::is_protected_label(k) && old.get(*k) != new.get(*k))
        .cloned()
        .collect();
    changed.dedup();
    changed.sort();
    changed.dedup();
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::forest::testing::labels;

    #[test]
    fn added_changed_and_removed_protected_labels_are_reported() {
        let old = labels(&[
            ("a.tree.canopy.dev/depth", "0"),
            ("canopy.dev/tenant", "acme"),
            ("team", "x"),
        ]);
        let new = labels(&[
            ("a.tree.canopy.dev/depth", "1"),
            ("canopy.dev/subnamespace-of", "p"),
            ("team", "y"),
        ]);
        assert_eq!(
            changed_protected_labels(&old, &new),
            [
                "a.tree.canopy.dev/depth",
                "canopy.dev/subnamespace-of",
                "canopy.dev/tenant"
            ]
        );
    }

    #[test]
    fn other_labels_are_free() {
        let old = labels(&[("team", "x")]);
        let new = labels(&[("team", "y"), ("tree.canopy.dev/depth", "1")]);
        assert!(changed_protected_labels(&old, &new).is_empty());
    }
}
