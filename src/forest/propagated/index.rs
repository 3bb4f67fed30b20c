//! What exists of one propagated kind: sources (full objects) and copies (only what
//! deciding needs), by namespace.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::core::{DynamicObject, ObjectMeta};
use serde_json::Value;

use crate::api::keys;
use crate::api::keys::SOURCE_HASH;

/// Whether `new` differs from `old` only where propagation never looks: the status and
/// the resourceVersion (and the field ownership, which the watches drop). Copies are made
/// of the rest, so an update like this changes no copy.
pub fn same_but_status(old: &DynamicObject, new: &DynamicObject) -> bool {
    let meta_same = {
        let mut old_meta = old.metadata.clone();
        old_meta
            .resource_version
            .clone_from(&new.metadata.resource_version);
        old_meta
            .managed_fields
            .clone_from(&new.metadata.managed_fields);
        old_meta == new.metadata
    };
    meta_same
        && old.types == new.types
        && match (without_status(&old.data), without_status(&new.data)) {
            (Some(mut a), Some(mut b)) => {
                a.sort_by_key(|(k, _)| *k);
                b.sort_by_key(|(k, _)| *k);
                a == b
            }
            _ => old.data == new.data,
        }
}

/// The fields of an object body but its status; `None` if it is not a JSON object.
fn without_status(data: &Value) -> Option<Vec<(&String, &Value)>> {
    let map = data.as_object()?;
    Some(map.iter().filter(|(k, _)| *k != "status").collect())
}

/// What canopy needs to know of an existing copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyState {
    pub inherited_from: String,
    pub hash: Option<String>,
    /// Only canopy has written its content (no other field manager on the main
    /// resource), so a matching hash means a matching copy.
    pub clean: bool,
}

impl CopyState {
    pub fn from_meta(meta: &ObjectMeta) -> Option<Self> {
        let inherited_from = meta.labels.as_ref()?.get(keys::INHERITED_FROM)?.clone();
        let clean = Self::only_canopy_wrote(meta);
        Some(Self {
            inherited_from,
            hash: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(SOURCE_HASH))
                .cloned(),
            clean,
        })
    }
}

impl CopyState {
    /// The state of a copy canopy has just applied, from the body it applied: what
    /// `from_meta` reads of it once the watch reports it, if nobody else wrote it since.
    pub fn written(body: &Value) -> Option<Self> {
        let metadata = body.get("metadata")?;
        let text = |map: &str, key: &str| {
            metadata
                .get(map)
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Some(Self {
            inherited_from: text("labels", keys::INHERITED_FROM)?,
            hash: text("annotations", SOURCE_HASH),
            // The body names no other field manager: canopy's apply owns what it set.
            clean: true,
        })
    }

    /// Whether only canopy has written the main resource (no other field manager).
    fn only_canopy_wrote(meta: &ObjectMeta) -> bool {
        meta.managed_fields.as_ref().is_none_or(|entries| {
            entries
                .iter()
                .filter(|e| e.subresource.as_deref().unwrap_or_default().is_empty())
                .all(|e| e.manager.as_deref() == Some(keys::FIELD_MANAGER))
        })
    }

    /// Keeps of a copy's metadata only what `from_meta` reads, as the watch delivers it,
    /// so that a page of a list held by the watcher is small too (the relist buffer keeps
    /// only `CopyState`s). Who wrote it is kept as one bare entry.
    pub fn lean<K: kube::Resource>(obj: &mut K) {
        let meta = obj.meta_mut();
        let clean = Self::only_canopy_wrote(meta);
        meta.managed_fields = (!clean).then(|| {
            vec![ManagedFieldsEntry {
                manager: Some("someone-else".to_owned()),
                ..ManagedFieldsEntry::default()
            }]
        });
        if let Some(labels) = meta.labels.as_mut() {
            labels.retain(|k, _| k == keys::INHERITED_FROM);
        }
        if let Some(annotations) = meta.annotations.as_mut() {
            annotations.retain(|k, _| k == SOURCE_HASH);
        }
        meta.owner_references = None;
        meta.finalizers = None;
    }
}

/// Sources and copies of one kind.
#[derive(Debug, Default)]
pub struct KindIndex {
    sources: HashMap<String, BTreeMap<String, Arc<DynamicObject>>>,
    copies: HashMap<String, CopiesIn>,
}

/// The copies of one kind in one namespace, sorted by name. A namespace usually holds one
/// or two copies of a kind, and a `BTreeMap`'s first node has room for 11 (about 900 bytes
/// for one copy): 12.6 MiB at the heap peak of a restart with 25,000 copies.
#[derive(Debug, Default)]
struct CopiesIn(Vec<(String, CopyState)>);

impl CopiesIn {
    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name))
    }

    fn get(&self, name: &str) -> Option<&CopyState> {
        self.position(name).ok().map(|i| &self.0[i].1)
    }

    fn insert(&mut self, name: &str, state: CopyState) {
        match self.position(name) {
            Ok(i) => self.0[i].1 = state,
            Err(i) => {
                // Exact room for the first few; past that the Vec grows as usual.
                if self.0.len() == self.0.capacity() && self.0.len() < 4 {
                    self.0.reserve_exact(1);
                }
                self.0.insert(i, (name.to_owned(), state));
            }
        }
    }

    fn remove(&mut self, name: &str) {
        if let Ok(i) = self.position(name) {
            self.0.remove(i);
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &CopyState)> {
        self.0.iter().map(|(name, state)| (name, state))
    }
}

impl KindIndex {
    pub fn set_source(&mut self, namespace: &str, mut object: DynamicObject) {
        // Field ownership is half an object's size and never copied.
        object.metadata.managed_fields = None;
        let name = object.metadata.name.clone().unwrap_or_default();
        self.sources
            .entry(namespace.to_owned())
            .or_default()
            .insert(name, Arc::new(object));
    }

    pub fn remove_source(&mut self, namespace: &str, name: &str) {
        if let Some(objects) = self.sources.get_mut(namespace) {
            objects.remove(name);
            if objects.is_empty() {
                self.sources.remove(namespace);
            }
        }
    }

    pub fn set_copy(&mut self, namespace: &str, name: &str, state: CopyState) {
        match self.copies.get_mut(namespace) {
            Some(copies) => copies.insert(name, state),
            None => {
                let mut copies = CopiesIn::default();
                copies.insert(name, state);
                self.copies.insert(namespace.to_owned(), copies);
            }
        }
    }

    pub fn remove_copy(&mut self, namespace: &str, name: &str) {
        if let Some(copies) = self.copies.get_mut(namespace) {
            copies.remove(name);
            if copies.0.is_empty() {
                self.copies.remove(namespace);
            }
        }
    }

    /// Forgets everything (before a relist).
    pub fn clear_sources(&mut self) {
        self.sources.clear();
    }

    pub fn clear_copies(&mut self) {
        self.copies.clear();
    }

    pub fn sources_in(
        &self,
        namespace: &str,
    ) -> impl Iterator<Item = (&String, &Arc<DynamicObject>)> {
        self.sources.get(namespace).into_iter().flatten()
    }

    pub fn source(&self, namespace: &str, name: &str) -> Option<&Arc<DynamicObject>> {
        self.sources.get(namespace)?.get(name)
    }

    pub fn copies_in(&self, namespace: &str) -> impl Iterator<Item = (&String, &CopyState)> {
        self.copies
            .get(namespace)
            .into_iter()
            .flat_map(CopiesIn::iter)
    }

    pub fn copy(&self, namespace: &str, name: &str) -> Option<&CopyState> {
        self.copies.get(namespace)?.get(name)
    }

    /// Namespaces holding sources.
    pub fn source_namespaces(&self) -> impl Iterator<Item = &String> {
        self.sources.keys()
    }

    /// Namespaces holding copies.
    pub fn copy_namespaces(&self) -> impl Iterator<Item = &String> {
        self.copies.keys()
    }

    /// Sources in the namespaces `counted` accepts.
    pub fn source_count(&self, counted: impl Fn(&str) -> bool) -> usize {
        self.sources
            .iter()
            .filter(|(ns, _)| counted(ns))
            .map(|(_, objects)| objects.len())
            .sum()
    }

    /// Copies in the namespaces `counted` accepts.
    pub fn copy_count(&self, counted: impl Fn(&str) -> bool) -> usize {
        self.copies
            .iter()
            .filter(|(ns, _)| counted(ns))
            .map(|(_, copies)| copies.0.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::PartialObjectMeta;
    use serde_json::json;

    fn copy(managers: &[&str]) -> PartialObjectMeta<DynamicObject> {
        let entries: Vec<_> = managers
            .iter()
            .map(|m| {
                json!({"manager": m, "operation": "Apply", "fieldsType": "FieldsV1",
                            "fieldsV1": {"f:data": {"f:a": {}, "f:b": {}}}})
            })
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "PartialObjectMetadata",
            "metadata": {
                "name": "r", "namespace": "child", "uid": "1",
                "labels": {keys::INHERITED_FROM: "root", "app": "x", "argocd.argoproj.io/instance": "y"},
                "annotations": {SOURCE_HASH: "abc", "kubectl.kubernetes.io/last-applied-configuration": "{...}"},
                "finalizers": ["f"],
                "managedFields": entries,
            }
        }))
        .expect("metadata")
    }

    #[test]
    fn a_lean_copy_keeps_what_deciding_reads_and_who_wrote_it() {
        for (managers, clean) in [
            (vec![keys::FIELD_MANAGER], true),
            (vec![keys::FIELD_MANAGER, "kubectl-edit"], false),
        ] {
            let mut meta = copy(&managers);
            let before = CopyState::from_meta(&meta.metadata);
            CopyState::lean(&mut meta);
            assert_eq!(CopyState::from_meta(&meta.metadata), before, "{managers:?}");
            assert_eq!(before.map(|s| s.clean), Some(clean));
            let lean = &meta.metadata;
            assert_eq!(lean.labels.as_ref().map(|l| l.len()), Some(1));
            assert_eq!(lean.annotations.as_ref().map(|a| a.len()), Some(1));
            assert!(lean.finalizers.is_none());
            // No field sets are kept, at most one bare entry naming someone else.
            let entries = lean.managed_fields.clone().unwrap_or_default();
            assert!(entries.iter().all(|e| e.fields_v1.is_none()));
            assert_eq!(entries.len(), usize::from(!clean));
        }
    }

    #[test]
    fn copies_in_a_namespace_stay_sorted_are_replaced_by_name_and_removed() {
        let state = |hash: &str| CopyState {
            inherited_from: "root".to_owned(),
            hash: Some(hash.to_owned()),
            clean: true,
        };
        let mut index = KindIndex::default();
        for (name, hash) in [("b", "1"), ("a", "1"), ("c", "1"), ("b", "2")] {
            index.set_copy("ns", name, state(hash));
        }
        index.set_copy("other", "a", state("3"));
        let held: Vec<_> = index
            .copies_in("ns")
            .map(|(name, s)| (name.as_str(), s.hash.as_deref()))
            .collect();
        assert_eq!(held, [("a", Some("1")), ("b", Some("2")), ("c", Some("1"))]);
        index.remove_copy("ns", "b");
        index.remove_copy("ns", "missing");
        assert_eq!(index.copy("ns", "b"), None);
        assert_eq!(index.copy("ns", "c"), Some(&state("1")));
        assert_eq!(index.copy_count(|ns| ns == "ns"), 2);
        index.remove_copy("ns", "a");
        index.remove_copy("ns", "c");
        let namespaces: Vec<_> = index.copy_namespaces().collect();
        assert_eq!(namespaces, ["other"]);
    }
}
