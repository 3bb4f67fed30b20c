//! The LimitRanges of every namespace, indexed by namespace for the admission webhooks.
//!
//! A reflector `Store` can only be scanned whole, and canopy propagates LimitRanges into
//! every namespace of a tree, so a scan per admission request would grow with the cluster.
//! Here a request costs one map lookup and one `Arc` clone.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::LimitRange;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use parking_lot::RwLock;

use super::indexer::Indexer;

/// The LimitRanges of one namespace, shared between the index and the requests reading it.
pub type NamespaceLimitRanges = Arc<[LimitRange]>;

#[derive(Clone, Default)]
pub struct LimitRangeIndex {
    by_namespace: Arc<RwLock<HashMap<String, NamespaceLimitRanges>>>,
}

impl LimitRangeIndex {
    /// The LimitRanges of `namespace`; `None` when it has none.
    pub fn in_namespace(&self, namespace: &str) -> Option<NamespaceLimitRanges> {
        self.read().get(namespace).cloned()
    }

    /// Adds or replaces one LimitRange.
    pub fn apply(&self, mut limit_range: LimitRange) {
        lean(&mut limit_range);
        let Some(namespace) = limit_range.namespace() else {
            return;
        };
        let name = limit_range.name_any();
        let mut map = self.write();
        let mut items: Vec<LimitRange> = map
            .get(&namespace)
            .map(|items| {
                items
                    .iter()
                    .filter(|lr| lr.name_any() != name)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        items.push(limit_range);
        map.insert(namespace, items.into());
    }

    pub fn delete(&self, limit_range: &LimitRange) {
        let Some(namespace) = limit_range.namespace() else {
            return;
        };
        let name = limit_range.name_any();
        let mut map = self.write();
        let Some(items) = map.get(&namespace) else {
            return;
        };
        let rest: Vec<LimitRange> = items
            .iter()
            .filter(|lr| lr.name_any() != name)
            .cloned()
            .collect();
        if rest.is_empty() {
            map.remove(&namespace);
        } else {
            map.insert(namespace, rest.into());
        }
    }

    /// Replaces everything, after a (re)list.
    pub fn replace_all(&self, limit_ranges: Vec<LimitRange>) {
        let mut grouped: HashMap<String, Vec<LimitRange>> = HashMap::new();
        for mut lr in limit_ranges {
            lean(&mut lr);
            if let Some(namespace) = lr.namespace() {
                grouped.entry(namespace).or_default().push(lr);
            }
        }
        *self.write() = grouped
            .into_iter()
            .map(|(namespace, items)| (namespace, items.into()))
            .collect();
    }

    fn read(&self) -> parking_lot::RwLockReadGuard<'_, HashMap<String, NamespaceLimitRanges>> {
        self.by_namespace.read()
    }

    fn write(&self) -> parking_lot::RwLockWriteGuard<'_, HashMap<String, NamespaceLimitRanges>> {
        self.by_namespace.write()
    }
}

/// Keeps of a LimitRange what admission reads: its name, namespace and spec. canopy
/// propagates LimitRanges into every namespace of a tree, and their labels, annotations
/// and field ownership were megabytes at thousands of namespaces.
fn lean(limit_range: &mut LimitRange) {
    let meta = &mut limit_range.metadata;
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        ..ObjectMeta::default()
    };
}

/// LimitRanges change nothing any reconciler decides: the webhooks read them at
/// admission, so the index reports no change.
impl Indexer<LimitRange> for LimitRangeIndex {
    type Change = std::convert::Infallible;
    type Listed = LimitRange;

    fn listed(&self, mut obj: LimitRange) -> Option<LimitRange> {
        lean(&mut obj);
        Some(obj)
    }

    fn apply(&self, limit_range: LimitRange) -> Vec<Self::Change> {
        LimitRangeIndex::apply(self, limit_range);
        Vec::new()
    }

    fn delete(&self, limit_range: LimitRange) -> Vec<Self::Change> {
        LimitRangeIndex::delete(self, &limit_range);
        Vec::new()
    }

    fn reset(&self, listed: Vec<LimitRange>, _first: bool) -> Vec<Self::Change> {
        self.replace_all(listed);
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{LimitRangeItem, LimitRangeSpec};

    use super::*;

    fn limit_range(namespace: &str, name: &str) -> LimitRange {
        let mut lr = LimitRange::default();
        lr.metadata.namespace = Some(namespace.to_owned());
        lr.metadata.name = Some(name.to_owned());
        lr
    }

    fn names(index: &LimitRangeIndex, namespace: &str) -> Vec<String> {
        let mut names: Vec<String> = index
            .in_namespace(namespace)
            .iter()
            .flat_map(|items| items.iter().map(|lr| lr.name_any()))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn apply_replaces_by_name_and_delete_forgets() {
        let index = LimitRangeIndex::default();
        index.apply(limit_range("a", "one"));
        index.apply(limit_range("a", "two"));
        index.apply(limit_range("a", "one"));
        index.apply(limit_range("b", "one"));
        assert_eq!(names(&index, "a"), ["one", "two"]);
        index.delete(&limit_range("a", "one"));
        index.delete(&limit_range("a", "two"));
        assert!(index.in_namespace("a").is_none());
        assert_eq!(names(&index, "b"), ["one"]);
    }

    #[test]
    fn a_relist_replaces_everything() {
        let index = LimitRangeIndex::default();
        index.apply(limit_range("gone", "x"));
        index.replace_all(vec![limit_range("a", "x"), limit_range("a", "y")]);
        assert!(index.in_namespace("gone").is_none());
        assert_eq!(names(&index, "a"), ["x", "y"]);
    }

    #[test]
    fn the_index_keeps_name_namespace_and_spec_only() {
        let index = LimitRangeIndex::default();
        let mut lr = limit_range("a", "defaults");
        lr.metadata.labels =
            Some([("canopy.dev/inherited-from".to_owned(), "root".to_owned())].into());
        lr.metadata.annotations = Some([("note".to_owned(), "x".repeat(1000))].into());
        lr.spec = Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                ..LimitRangeItem::default()
            }],
        });
        let spec = lr.spec.clone();
        index.apply(lr.clone());
        index.replace_all(vec![lr.clone()]);
        for held in [
            index.in_namespace("a"),
            index.listed(lr).map(|lr| vec![lr].into()),
        ] {
            let held = held.expect("held");
            assert_eq!(held[0].metadata.name.as_deref(), Some("defaults"));
            assert_eq!(held[0].metadata.namespace.as_deref(), Some("a"));
            assert_eq!(held[0].metadata.labels, None);
            assert_eq!(held[0].metadata.annotations, None);
            assert_eq!(held[0].spec, spec);
        }
    }
}
