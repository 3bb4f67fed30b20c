//! The quota part of the model: every HierarchicalResourceQuota, and the usage of every
//! counted object (Pods, Services, PersistentVolumeClaims) by uid and summed per
//! namespace, fed by their watches through `Indexer`s. The admission webhook reads which
//! HRQs apply to a namespace; the recount controller and the hierarchy webhook read a
//! subtree's usage.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use kube::ResourceExt;
use tokio::sync::Notify;

use super::Forest;
use super::indexer::Indexer;
use crate::api::HierarchicalResourceQuota;
use crate::api::quota_usage::{self, Amounts};

/// Something the quota model holds changed: usage must be recounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaChanged;

#[derive(Default)]
struct Inner {
    /// HRQs by namespace, then name.
    hrqs: HashMap<String, BTreeMap<String, Arc<HierarchicalResourceQuota>>>,
    /// Every counted object by uid: its resource, namespace and usage.
    objects: HashMap<String, (&'static str, String, Amounts)>,
    /// Usage summed per namespace.
    by_namespace: HashMap<String, Amounts>,
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

    fn put_object(&mut self, uid: String, resource: &'static str, ns: String, usage: Amounts) {
        quota_usage::add(self.by_namespace.entry(ns.clone()).or_default(), &usage);
        self.objects.insert(uid, (resource, ns, usage));
    }
}

/// HRQs and usage; cheap to clone.
#[derive(Clone, Default)]
pub struct QuotaIndex {
    inner: Arc<RwLock<Inner>>,
    /// Woken on every change (the recount controller waits on it).
    pub changed: Arc<Notify>,
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

    fn changed(&self) -> Vec<QuotaChanged> {
        self.changed.notify_one();
        vec![QuotaChanged]
    }
}

/// Feeds HRQs into the index.
#[derive(Clone)]
pub struct HrqFeed(pub QuotaIndex);

impl Indexer<HierarchicalResourceQuota> for HrqFeed {
    type Change = QuotaChanged;

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
        self.0.changed()
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
        self.0.changed()
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
        self.0.changed()
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
        let Some(uid) = obj.uid() else {
            return Vec::new();
        };
        let removed = self.0.write().remove_object(&uid);
        if removed {
            self.0.changed()
        } else {
            Vec::new()
        }
    }

    fn reset(&self, listed: Vec<K>, _first: bool) -> Vec<QuotaChanged> {
        let mut inner = self.0.write();
        let stale: Vec<String> = inner
            .objects
            .iter()
            .filter(|(_, (r, _, _))| *r == K::RESOURCE)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in stale {
            inner.remove_object(&uid);
        }
        for obj in listed {
            if let (Some(uid), Some(ns)) = (obj.uid(), obj.namespace()) {
                let usage = obj.usage();
                inner.put_object(uid, K::RESOURCE, ns, usage);
            }
        }
        drop(inner);
        self.0.changed()
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
}
