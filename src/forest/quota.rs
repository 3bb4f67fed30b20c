//! The quota part of the model: every HierarchicalResourceQuota, and the usage of every
//! counted object (Pods, Services, PersistentVolumeClaims, and the objects of any kind an
//! HRQ counts with `count/<resource>`) by uid and summed per namespace, fed by their
//! watches through `Indexer`s. The admission webhook reads which
//! HRQs apply to a namespace; the recount controller and the hierarchy webhook read a
//! subtree's usage.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use kube::ResourceExt;
use kube::core::{DynamicObject, PartialObjectMeta};
use tokio::sync::Notify;

use super::Forest;
use super::indexer::{Indexer, lists_whole};
use crate::api::HierarchicalResourceQuota;
use crate::api::quota_usage::{self, Amounts};

/// Something the quota model holds changed: usage must be recounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaChanged;

#[derive(Default)]
struct Inner {
    /// HRQs by namespace, then name.
    hrqs: HashMap<String, BTreeMap<String, Arc<HierarchicalResourceQuota>>>,
    /// Every counted object by uid: its resource (a `count/...` name for the generically
    /// counted kinds), namespace and usage.
    objects: HashMap<String, (String, String, Amounts)>,
    /// Usage summed per namespace.
    by_namespace: HashMap<String, Amounts>,
    /// The generic object counts (`count/configmaps`, ...) and how far counting them got.
    counts: HashMap<String, CountState>,
}

/// How far the count of a generically counted kind got (`src/forest/quota_counts.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CountState {
    /// Its watch is listing: not counted yet.
    Listing,
    /// Every object of the kind is in the index.
    Counted,
    /// It cannot be counted, and why (no such kind, cluster-scoped, canopy may not list it).
    Unavailable(String),
}

impl Inner {
    fn remove_object(&mut self, uid: &str) -> bool {
        let Some((_, namespace, usage)) = self.objects.remove(uid) else {
            return false;
        };
        if let Some(sum) = self.by_namespace.get_mut(&namespace) {
            for (name, v) in usage {
                if let Some(have) = sum.get_mut(&name) {
                    *have -= v;
                }
            }
            sum.retain(|_, v| *v != 0);
            if sum.is_empty() {
                self.by_namespace.remove(&namespace);
            }
        }
        true
    }

    fn put_object(&mut self, uid: String, resource: &str, ns: String, usage: Amounts) {
        quota_usage::add(self.by_namespace.entry(ns.clone()).or_default(), &usage);
        self.objects.insert(uid, (resource.to_owned(), ns, usage));
    }

    /// Replaces every object of `resource` with `listed` (uid, namespace, usage).
    fn replace_objects(
        &mut self,
        resource: &str,
        listed: impl IntoIterator<Item = (String, String, Amounts)>,
    ) {
        let stale: Vec<String> = self
            .objects
            .iter()
            .filter(|(_, (r, _, _))| r == resource)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in stale {
            self.remove_object(&uid);
        }
        for (uid, ns, usage) in listed {
            self.put_object(uid, resource, ns, usage);
        }
    }
}

/// HRQs and usage; cheap to clone.
#[derive(Clone, Default)]
pub struct QuotaIndex {
    inner: Arc<RwLock<Inner>>,
    /// Woken on every change (the recount controller waits on it).
    pub changed: Arc<Notify>,
    /// Woken when an HRQ changes, for the one task that starts and stops the watches of
    /// generically counted kinds (a `Notify` wakes one waiter).
    pub hrqs_changed: Arc<Notify>,
}

impl QuotaIndex {
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read()
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write()
    }

    /// Every HRQ.
    pub fn all(&self) -> Vec<Arc<HierarchicalResourceQuota>> {
        self.read()
            .hrqs
            .values()
            .flat_map(|m| m.values().cloned())
            .collect()
    }

    /// The HRQs in `namespace` itself.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<HierarchicalResourceQuota>> {
        self.read()
            .hrqs
            .get(namespace)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether any HRQ exists (the webhook's fast path).
    pub fn is_empty(&self) -> bool {
        self.read().hrqs.is_empty()
    }

    /// The HRQs that apply to an object in `namespace`: its own and every ancestor's,
    /// from the top of the tree down.
    pub fn over(&self, forest: &Forest, namespace: &str) -> Vec<Arc<HierarchicalResourceQuota>> {
        let inner = self.read();
        if inner.hrqs.is_empty() {
            return Vec::new();
        }
        let mut chain: Vec<&str> = forest.ancestors(namespace);
        chain.reverse();
        chain.push(namespace);
        chain
            .into_iter()
            .filter_map(|ns| inner.hrqs.get(ns))
            .flat_map(|m| m.values().cloned())
            .collect()
    }

    /// Usage summed over `namespaces`.
    pub fn usage_of<'a>(&self, namespaces: impl IntoIterator<Item = &'a str>) -> Amounts {
        let inner = self.read();
        let mut total = Amounts::new();
        for ns in namespaces {
            if let Some(usage) = inner.by_namespace.get(ns) {
                quota_usage::add(&mut total, usage);
            }
        }
        total
    }

    /// Usage over the subtree of `namespace` (itself included), as the Forest has it.
    pub fn subtree_usage(&self, forest: &Forest, namespace: &str) -> Amounts {
        self.usage_of(forest.subtree(namespace))
    }

    /// The usage of the object with `uid`, and its namespace, if it is known.
    pub fn object(&self, uid: &str) -> Option<(String, Amounts)> {
        self.read()
            .objects
            .get(uid)
            .map(|(_, ns, usage)| (ns.clone(), usage.clone()))
    }

    /// The generic object counts (`count/configmaps`, `count/deployments.apps`) that any
    /// HRQ names: the kinds whose objects must be watched and counted.
    pub fn generic_counts(&self) -> BTreeSet<String> {
        self.read()
            .hrqs
            .values()
            .flat_map(|m| m.values())
            .flat_map(|h| h.spec.hard.keys())
            .filter(|name| quota_usage::is_generic_count(name))
            .cloned()
            .collect()
    }

    /// Every generic object count the index has a state for.
    pub fn count_names(&self) -> Vec<String> {
        self.read().counts.keys().cloned().collect()
    }

    /// Whether usage of the resource name `name` is fully known: always for what canopy's
    /// own watches count, for a generic object count once its kind's watch has listed.
    pub fn is_counted(&self, name: &str) -> bool {
        !quota_usage::is_generic_count(name)
            || self.read().counts.get(name) == Some(&CountState::Counted)
    }

    /// Why the object count `name` cannot be counted, if it cannot.
    pub fn count_problem(&self, name: &str) -> Option<String> {
        match self.read().counts.get(name) {
            Some(CountState::Unavailable(why)) => Some(why.clone()),
            _ => None,
        }
    }

    /// Records how far counting `name` got.
    pub fn set_count_state(&self, name: &str, state: CountState) {
        let previous = self.write().counts.insert(name.to_owned(), state.clone());
        if previous != Some(state) {
            self.changed();
        }
    }

    /// Stops counting `name`: its objects and its state go.
    pub fn forget_count(&self, name: &str) {
        let mut inner = self.write();
        inner.replace_objects(name, []);
        inner.counts.remove(name);
        drop(inner);
        self.changed();
    }

    fn changed(&self) -> Vec<QuotaChanged> {
        self.changed.notify_one();
        vec![QuotaChanged]
    }

    /// Removes the counted object with `uid`; a change only if it was there.
    fn remove(&self, uid: Option<String>) -> Vec<QuotaChanged> {
        match uid {
            Some(uid) if self.write().remove_object(&uid) => self.changed(),
            _ => Vec::new(),
        }
    }

    fn hrq_changed(&self) -> Vec<QuotaChanged> {
        self.hrqs_changed.notify_one();
        self.changed()
    }
}

/// Feeds HRQs into the index.
#[derive(Clone)]
pub struct HrqFeed(pub QuotaIndex);

impl Indexer<HierarchicalResourceQuota> for HrqFeed {
    type Change = QuotaChanged;
    lists_whole!(HierarchicalResourceQuota);

    fn apply(&self, hrq: HierarchicalResourceQuota) -> Vec<QuotaChanged> {
        let Some(ns) = hrq.namespace() else {
            return Vec::new();
        };
        self.0
            .write()
            .hrqs
            .entry(ns)
            .or_default()
            .insert(hrq.name_any(), Arc::new(hrq));
        self.0.hrq_changed()
    }

    fn delete(&self, hrq: HierarchicalResourceQuota) -> Vec<QuotaChanged> {
        let Some(ns) = hrq.namespace() else {
            return Vec::new();
        };
        let mut inner = self.0.write();
        if let Some(m) = inner.hrqs.get_mut(&ns) {
            m.remove(&hrq.name_any());
            if m.is_empty() {
                inner.hrqs.remove(&ns);
            }
        }
        drop(inner);
        self.0.hrq_changed()
    }

    fn reset(&self, listed: Vec<HierarchicalResourceQuota>, _first: bool) -> Vec<QuotaChanged> {
        let mut hrqs: HashMap<String, BTreeMap<String, Arc<HierarchicalResourceQuota>>> =
            HashMap::new();
        for hrq in listed {
            if let Some(ns) = hrq.namespace() {
                hrqs.entry(ns)
                    .or_default()
                    .insert(hrq.name_any(), Arc::new(hrq));
            }
        }
        self.0.write().hrqs = hrqs;
        self.0.hrq_changed()
    }
}

/// A kind whose objects count against quotas.
pub trait Counted: kube::Resource + Clone {
    const RESOURCE: &'static str;
    fn usage(&self) -> Amounts;
}

impl Counted for Pod {
    const RESOURCE: &'static str = "pods";
    fn usage(&self) -> Amounts {
        quota_usage::pod_usage(self)
    }
}

impl Counted for Service {
    const RESOURCE: &'static str = "services";
    fn usage(&self) -> Amounts {
        quota_usage::service_usage(self)
    }
}

impl Counted for PersistentVolumeClaim {
    const RESOURCE: &'static str = "persistentvolumeclaims";
    fn usage(&self) -> Amounts {
        quota_usage::claim_usage(self)
    }
}

/// Feeds the usage of one counted kind into the index; keeps only the usage.
#[derive(Clone)]
pub struct UsageFeed(pub QuotaIndex);

impl<K: Counted> Indexer<K> for UsageFeed {
    type Change = QuotaChanged;
    lists_whole!(K);

    fn apply(&self, obj: K) -> Vec<QuotaChanged> {
        let (Some(uid), Some(ns)) = (obj.uid(), obj.namespace()) else {
            return Vec::new();
        };
        let usage = obj.usage();
        let mut inner = self.0.write();
        if inner
            .objects
            .get(&uid)
            .is_some_and(|(_, n, u)| *n == ns && *u == usage)
        {
            return Vec::new();
        }
        inner.remove_object(&uid);
        inner.put_object(uid, K::RESOURCE, ns, usage);
        drop(inner);
        self.0.changed()
    }

    fn delete(&self, obj: K) -> Vec<QuotaChanged> {
        self.0.remove(obj.uid())
    }

    fn reset(&self, listed: Vec<K>, _first: bool) -> Vec<QuotaChanged> {
        let listed = listed.into_iter().filter_map(|obj| {
            let usage = obj.usage();
            Some((obj.uid()?, obj.namespace()?, usage))
        });
        self.0.write().replace_objects(K::RESOURCE, listed);
        self.0.changed()
    }
}

/// Feeds the objects of one generically counted kind (`count/<resource>`) into the index,
/// from a watch of their metadata: each counts one.
#[derive(Clone)]
pub struct CountFeed {
    pub index: QuotaIndex,
    /// The `count/...` name.
    pub name: String,
}

impl CountFeed {
    fn entry(&self, obj: &PartialObjectMeta<DynamicObject>) -> Option<(String, String, Amounts)> {
        Some((
            obj.uid()?,
            obj.namespace()?,
            Amounts::from([(self.name.clone(), 1000)]),
        ))
    }
}

impl Indexer<PartialObjectMeta<DynamicObject>> for CountFeed {
    type Change = QuotaChanged;
    /// An object's uid, namespace and what it counts: all a relist of Pods needs.
    type Listed = (String, String, Amounts);

    fn listed(&self, obj: PartialObjectMeta<DynamicObject>) -> Option<Self::Listed> {
        self.entry(&obj)
    }

    fn apply(&self, obj: PartialObjectMeta<DynamicObject>) -> Vec<QuotaChanged> {
        let Some((uid, ns, usage)) = self.entry(&obj) else {
            return Vec::new();
        };
        let mut inner = self.index.write();
        if inner.objects.contains_key(&uid) {
            return Vec::new();
        }
        inner.put_object(uid, &self.name, ns, usage);
        drop(inner);
        self.index.changed()
    }

    fn delete(&self, obj: PartialObjectMeta<DynamicObject>) -> Vec<QuotaChanged> {
        self.index.remove(obj.uid())
    }

    fn reset(&self, listed: Vec<Self::Listed>, _first: bool) -> Vec<QuotaChanged> {
        let mut inner = self.index.write();
        inner.replace_objects(&self.name, listed);
        // Only a kind still wanted is marked counted (its watch may outlive the HRQ).
        if let Some(state) = inner.counts.get_mut(&self.name) {
            *state = CountState::Counted;
        }
        drop(inner);
        self.index.changed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forest::testing::tree;
    use serde_json::json;

    fn pod(ns: &str, uid: &str, cpu: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": uid, "namespace": ns, "uid": uid},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}
        }))
        .expect("pod")
    }

    fn hrq(ns: &str, name: &str) -> HierarchicalResourceQuota {
        serde_json::from_value(json!({
            "apiVersion": "canopy.dev/v1alpha1", "kind": "HierarchicalResourceQuota",
            "metadata": {"name": name, "namespace": ns}, "spec": {"hard": {"pods": "5"}}
        }))
        .expect("hrq")
    }

    #[test]
    fn usage_is_summed_over_a_subtree_and_follows_updates_deletes_and_relists() {
        let forest = tree("root > a > a1, root > b");
        let index = QuotaIndex::default();
        let feed = UsageFeed(index.clone());
        feed.apply(pod("a", "1", "100m"));
        feed.apply(pod("a1", "2", "200m"));
        feed.apply(pod("b", "3", "1"));
        assert_eq!(index.subtree_usage(&forest, "a")["requests.cpu"], 300);
        assert_eq!(index.subtree_usage(&forest, "root")["pods"], 3000);
        feed.apply(pod("a", "1", "500m"));
        assert_eq!(index.subtree_usage(&forest, "a")["requests.cpu"], 700);
        Indexer::<Pod>::delete(&feed, pod("a1", "2", "200m"));
        assert_eq!(index.subtree_usage(&forest, "a")["requests.cpu"], 500);
        Indexer::<Pod>::reset(&feed, vec![pod("b", "3", "1")], false);
        assert_eq!(index.subtree_usage(&forest, "root")["pods"], 1000);
        assert!(index.subtree_usage(&forest, "a").is_empty());
    }

    #[test]
    fn the_hrqs_over_a_namespace_are_its_own_and_its_ancestors_top_down() {
        let forest = tree("root > a > a1");
        let index = QuotaIndex::default();
        let feed = HrqFeed(index.clone());
        feed.apply(hrq("a", "team"));
        feed.apply(hrq("root", "canopy-tenant-quota"));
        feed.apply(hrq("other", "x"));
        let over: Vec<String> = index
            .over(&forest, "a1")
            .iter()
            .map(|h| format!("{}/{}", h.namespace().unwrap_or_default(), h.name_any()))
            .collect();
        assert_eq!(over, ["root/canopy-tenant-quota", "a/team"]);
        feed.delete(hrq("a", "team"));
        assert_eq!(index.over(&forest, "a1").len(), 1);
    }

    fn meta(ns: &str, uid: &str) -> PartialObjectMeta<DynamicObject> {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": uid, "namespace": ns, "uid": uid}
        }))
        .expect("metadata")
    }

    #[test]
    fn a_generic_count_is_counted_only_once_its_kind_has_listed() {
        let forest = tree("root > a, root > b");
        let index = QuotaIndex::default();
        let mut counted = hrq("root", "team");
        counted.spec.hard.insert(
            "count/configmaps".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("2".into()),
        );
        HrqFeed(index.clone()).apply(counted);
        assert_eq!(
            index.generic_counts(),
            BTreeSet::from(["count/configmaps".to_owned()])
        );
        // Pods have their own watch: always counted.
        assert!(index.is_counted("pods") && index.is_counted("count/pods"));
        assert!(!index.is_counted("count/configmaps"));
        index.set_count_state("count/configmaps", CountState::Listing);
        let feed = CountFeed {
            index: index.clone(),
            name: "count/configmaps".into(),
        };
        feed.apply(meta("a", "1"));
        assert!(!index.is_counted("count/configmaps"), "still listing");
        let listed = [meta("a", "1"), meta("b", "2"), meta("b", "3")]
            .into_iter()
            .filter_map(|m| feed.listed(m))
            .collect();
        feed.reset(listed, true);
        assert!(index.is_counted("count/configmaps"));
        assert_eq!(
            index.subtree_usage(&forest, "root")["count/configmaps"],
            3000
        );
        assert_eq!(index.subtree_usage(&forest, "b")["count/configmaps"], 2000);
        feed.delete(meta("b", "3"));
        // An update of metadata does not count twice.
        feed.apply(meta("a", "1"));
        assert_eq!(
            index.subtree_usage(&forest, "root")["count/configmaps"],
            2000
        );
        assert!(index.object("2").is_some());
        index.set_count_state("count/configmaps", CountState::Unavailable("no".into()));
        assert_eq!(
            index.count_problem("count/configmaps").as_deref(),
            Some("no")
        );
        assert!(!index.is_counted("count/configmaps"));
        index.forget_count("count/configmaps");
        assert!(index.subtree_usage(&forest, "root").is_empty());
        assert!(index.count_names().is_empty());
    }
}
