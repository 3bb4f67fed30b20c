//! The indexers of the Forest's watches: how each event updates the Forest, and which
//! namespaces, anchors and Tenants it makes dirty. Only what changed is reported, so
//! canopy's own writes (a status, labels that are already right) do not wake it again.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, PersistentVolume};
use kube::ResourceExt;
use kube::api::PartialObjectMeta;
use parking_lot::RwLock;

use super::Forest;
use super::indexer::{Indexer, lists_whole};
use crate::api::{
    CanopyConfiguration, CanopyConfigurationSpec, HIERARCHY_NAME, HierarchyConfiguration,
    SubnamespaceAnchor, Tenant,
};

/// What the reconcilers must look at again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// These namespaces' derived state (labels, HierarchyConfiguration status, copies)
    /// may differ.
    Namespaces(Vec<String>),
    /// This anchor, or the namespace it stands for, changed.
    Anchor { namespace: String, name: String },
    /// This PersistentVolume changed.
    Volume(String),
    /// This Tenant changed (or its namespaces did).
    Tenant(String),
    /// Everything may differ: the configuration changed, or a watch listed again after
    /// an outage (work that failed meanwhile is retried now, not after its backoff).
    All,
}

/// A relist after the first: everything is looked at again. The first list reports
/// nothing, because nothing decides before every watch has listed once and then the
/// reconcilers look at everything anyway.
fn relisted(first: bool) -> Vec<Change> {
    if first { Vec::new() } else { vec![Change::All] }
}

pub(super) fn write(forest: &RwLock<Forest>) -> parking_lot::RwLockWriteGuard<'_, Forest> {
    forest.write()
}

/// Namespaces whose derived state depends on `name`'s place: its subtree and its parent.
fn around(forest: &Forest, name: &str, old_parent: Option<String>) -> Vec<String> {
    let mut out: Vec<String> = forest
        .subtree(name)
        .into_iter()
        .map(str::to_owned)
        .collect();
    out.extend(old_parent);
    out.extend(forest.parent(name).map(str::to_owned));
    out
}

/// Namespaces: existence, deletion and labels.
pub struct NamespaceFeed {
    pub forest: Arc<RwLock<Forest>>,
}

impl Indexer<PartialObjectMeta<Namespace>> for NamespaceFeed {
    type Change = Change;
    lists_whole!(PartialObjectMeta<Namespace>);

    fn apply(&self, ns: PartialObjectMeta<Namespace>) -> Vec<Change> {
        let name = ns.name_any();
        let deleting = ns.metadata.deletion_timestamp.is_some();
        let labels: BTreeMap<String, String> = ns.metadata.labels.unwrap_or_default();
        let mut forest = write(&self.forest);
        let before = forest
            .get(&name)
            .map(|s| (s.exists, s.deleting, s.labels.clone()));
        let existed = before
            .as_ref()
            .is_some_and(|(exists, was_deleting, _)| *exists && *was_deleting == deleting);
        if existed && before.as_ref().is_some_and(|(_, _, l)| *l == labels) {
            // Annotations, finalizers or a status: nothing the model keeps.
            return Vec::new();
        }
        forest.set_namespace(&name, labels, deleting);
        // Existence or deletion changes the subtree's halt state and labels; a label
        // change only matters to the namespace itself.
        let dirty = if existed {
            vec![name.clone()]
        } else {
            around(&forest, &name, None)
        };
        let parent_ns = forest.get(&name).and_then(|s| s.subnamespace_of.clone());
        drop(forest);
        let mut out = vec![Change::Namespaces(dirty)];
        out.extend(parent_ns.map(|namespace| Change::Anchor { namespace, name }));
        out
    }

    fn delete(&self, ns: PartialObjectMeta<Namespace>) -> Vec<Change> {
        let name = ns.name_any();
        let mut forest = write(&self.forest);
        let parent = forest.parent(&name).map(str::to_owned);
        let anchor_parent = forest.get(&name).and_then(|s| s.subnamespace_of.clone());
        let mut dirty = around(&forest, &name, parent);
        forest.remove_namespace(&name);
        dirty.extend(forest.descendants(&name).into_iter().map(str::to_owned));
        drop(forest);
        let mut out = vec![Change::Namespaces(dirty)];
        out.extend(anchor_parent.map(|namespace| Change::Anchor { namespace, name }));
        out
    }

    fn reset(&self, listed: Vec<PartialObjectMeta<Namespace>>, first: bool) -> Vec<Change> {
        let names: HashSet<String> = listed.iter().map(|ns| ns.name_any()).collect();
        for ns in listed {
            self.apply(ns);
        }
        let mut forest = write(&self.forest);
        let gone: Vec<String> = forest
            .namespaces()
            .filter(|ns| !names.contains(*ns))
            .map(str::to_owned)
            .collect();
        for ns in &gone {
            forest.remove_namespace(ns);
        }
        relisted(first)
    }
}

/// HierarchyConfigurations: each namespace's parent and `allowCascadingDeletion`.
pub struct HierarchyFeed {
    pub forest: Arc<RwLock<Forest>>,
}

impl Indexer<HierarchyConfiguration> for HierarchyFeed {
    type Change = Change;
    lists_whole!(HierarchyConfiguration);

    fn apply(&self, hc: HierarchyConfiguration) -> Vec<Change> {
        let Some(ns) = hc.namespace() else {
            return Vec::new();
        };
        if hc.name_any() != HIERARCHY_NAME {
            return Vec::new();
        }
        let mut forest = write(&self.forest);
        let old_parent = forest.parent(&ns).map(str::to_owned);
        let old_cascade = forest.get(&ns).is_some_and(|s| s.allow_cascading_deletion);
        let new_parent = hc.spec.parent.as_deref().filter(|p| !p.is_empty());
        if old_parent.as_deref() == new_parent && old_cascade == hc.spec.allow_cascading_deletion {
            // The tree is the same. Its status needs a look only while it does not speak
            // of this generation: canopy's own writes of it, which do, wake nothing. (A
            // status someone else changed is written back at the next change of that
            // namespace.)
            let generation = hc.metadata.generation;
            let current = hc.status.as_ref().is_none_or(|s| {
                s.conditions
                    .iter()
                    .all(|c| c.observed_generation == generation)
            });
            return if current {
                Vec::new()
            } else {
                vec![Change::Namespaces(vec![ns])]
            };
        }
        forest.set_hierarchy(&ns, new_parent, hc.spec.allow_cascading_deletion);
        vec![Change::Namespaces(around(&forest, &ns, old_parent))]
    }

    fn delete(&self, hc: HierarchyConfiguration) -> Vec<Change> {
        let Some(ns) = hc.namespace() else {
            return Vec::new();
        };
        let mut forest = write(&self.forest);
        let old_parent = forest.parent(&ns).map(str::to_owned);
        forest.remove_hierarchy(&ns);
        vec![Change::Namespaces(around(&forest, &ns, old_parent))]
    }

    fn reset(&self, listed: Vec<HierarchyConfiguration>, first: bool) -> Vec<Change> {
        let with_hierarchy: HashSet<String> = listed
            .iter()
            .filter(|hc| hc.name_any() == HIERARCHY_NAME)
            .filter_map(|hc| hc.namespace())
            .collect();
        for hc in listed {
            self.apply(hc);
        }
        let mut forest = write(&self.forest);
        let stale: Vec<String> = forest
            .namespaces()
            .filter(|ns| forest.parent(ns).is_some() && !with_hierarchy.contains(*ns))
            .map(str::to_owned)
            .collect();
        for ns in &stale {
            forest.remove_hierarchy(ns);
        }
        relisted(first)
    }
}

/// SubnamespaceAnchors: which namespace holds which anchors.
pub struct AnchorFeed {
    pub forest: Arc<RwLock<Forest>>,
}

impl Indexer<SubnamespaceAnchor> for AnchorFeed {
    type Change = Change;
    lists_whole!(SubnamespaceAnchor);

    fn apply(&self, anchor: SubnamespaceAnchor) -> Vec<Change> {
        let (Some(namespace), name) = (anchor.namespace(), anchor.name_any()) else {
            return Vec::new();
        };
        write(&self.forest).add_anchor(&namespace, &name);
        vec![Change::Anchor { namespace, name }]
    }

    fn delete(&self, anchor: SubnamespaceAnchor) -> Vec<Change> {
        let (Some(namespace), name) = (anchor.namespace(), anchor.name_any()) else {
            return Vec::new();
        };
        write(&self.forest).remove_anchor(&namespace, &name);
        // The child's BadConfiguration/anchor-dependent state may change.
        vec![Change::Namespaces(vec![name])]
    }

    fn reset(&self, listed: Vec<SubnamespaceAnchor>, first: bool) -> Vec<Change> {
        let keys: HashSet<(String, String)> = listed
            .iter()
            .filter_map(|a| Some((a.namespace()?, a.name_any())))
            .collect();
        let mut forest = write(&self.forest);
        let stale: Vec<(String, String)> = forest
            .namespaces()
            .flat_map(|ns| {
                forest
                    .get(ns)
                    .into_iter()
                    .flat_map(|s| s.anchors.iter())
                    .map(move |a| (ns.to_owned(), a.clone()))
            })
            .filter(|key| !keys.contains(key))
            .collect();
        for (ns, anchor) in stale {
            forest.remove_anchor(&ns, &anchor);
        }
        for (ns, anchor) in &keys {
            forest.add_anchor(ns, anchor);
        }
        relisted(first)
    }
}

/// The CanopyConfiguration `config`: the configuration itself and the excluded
/// namespaces.
pub struct ConfigFeed {
    pub forest: Arc<RwLock<Forest>>,
    pub config: Arc<RwLock<CanopyConfigurationSpec>>,
}

impl ConfigFeed {
    /// Takes `spec` as the configuration; everything is looked at again only when it
    /// differs (canopy's own writes of the status leave it as it is).
    fn set(&self, spec: CanopyConfigurationSpec) -> Vec<Change> {
        let mut config = self.config.write();
        if *config == spec {
            return Vec::new();
        }
        write(&self.forest).set_excluded(spec.excluded_namespaces.iter().cloned());
        *config = spec;
        vec![Change::All]
    }
}

impl Indexer<CanopyConfiguration> for ConfigFeed {
    type Change = Change;
    lists_whole!(CanopyConfiguration);

    fn apply(&self, obj: CanopyConfiguration) -> Vec<Change> {
        self.set(obj.spec)
    }

    fn delete(&self, _: CanopyConfiguration) -> Vec<Change> {
        self.set(CanopyConfigurationSpec::default())
    }

    fn reset(&self, listed: Vec<CanopyConfiguration>, _first: bool) -> Vec<Change> {
        // The watch selects the one object by name: a missing object means the defaults.
        let spec = listed
            .into_iter()
            .next()
            .map(|c| c.spec)
            .unwrap_or_default();
        self.set(spec)
    }
}

/// Tenants place their root in the Forest, which decides every namespace's tenant.
pub struct TenantFeed {
    pub forest: Arc<RwLock<Forest>>,
}

impl TenantFeed {
    fn changes(forest: &Forest, tenant: &str, roots: &[Option<String>]) -> Vec<Change> {
        let mut namespaces = Vec::new();
        for root in roots.iter().flatten() {
            namespaces.extend(forest.subtree(root).into_iter().map(str::to_owned));
        }
        vec![
            Change::Namespaces(namespaces),
            Change::Tenant(tenant.to_owned()),
        ]
    }
}

impl Indexer<Tenant> for TenantFeed {
    type Change = Change;
    lists_whole!(Tenant);

    fn apply(&self, tenant: Tenant) -> Vec<Change> {
        let name = tenant.name_any();
        let mut forest = write(&self.forest);
        let old = forest.tenant_root(&name).map(str::to_owned);
        // A Tenant being deleted lets go of its namespaces (its finalizer then cleans up).
        let new = tenant
            .metadata
            .deletion_timestamp
            .is_none()
            .then(|| tenant.root_namespace());
        match &new {
            Some(root) => forest.set_tenant_root(&name, root),
            None => {
                forest.remove_tenant(&name);
            }
        }
        Self::changes(&forest, &name, &[old, new])
    }

    fn delete(&self, tenant: Tenant) -> Vec<Change> {
        let name = tenant.name_any();
        let mut forest = write(&self.forest);
        let old = forest.remove_tenant(&name);
        Self::changes(&forest, &name, &[old])
    }

    fn reset(&self, listed: Vec<Tenant>, first: bool) -> Vec<Change> {
        let names: BTreeSet<String> = listed.iter().map(|t| t.name_any()).collect();
        for tenant in listed {
            self.apply(tenant);
        }
        let mut forest = write(&self.forest);
        let known: Vec<String> = forest.tenants().map(str::to_owned).collect();
        for tenant in known.iter().filter(|t| !names.contains(*t)) {
            forest.remove_tenant(tenant);
        }
        relisted(first)
    }
}

/// PersistentVolumes are labelled with the tenant of the claim they are bound to; the
/// volumes themselves are kept by their reflector store.
pub struct VolumeFeed;

impl Indexer<PersistentVolume> for VolumeFeed {
    type Change = Change;

    /// A relist only counts towards readiness: nothing of it is kept.
    type Listed = ();

    fn listed(&self, _: PersistentVolume) -> Option<()> {
        None
    }

    fn apply(&self, pv: PersistentVolume) -> Vec<Change> {
        vec![Change::Volume(pv.name_any())]
    }

    fn delete(&self, _: PersistentVolume) -> Vec<Change> {
        Vec::new()
    }

    fn reset(&self, _: Vec<()>, first: bool) -> Vec<Change> {
        relisted(first)
    }
}

#[cfg(test)]
mod tests {
    use kube::api::ObjectMeta;

    use super::*;
    use crate::api::{HierarchyConfigurationSpec, HierarchyConfigurationStatus, TenantSpec};
    use crate::forest::testing::{labels, tree};

    fn shared(forest: Forest) -> Arc<RwLock<Forest>> {
        Arc::new(RwLock::new(forest))
    }

    fn namespace(name: &str, l: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
        PartialObjectMeta::<Namespace> {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(labels(l)),
                ..ObjectMeta::default()
            },
            ..Default::default()
        }
    }

    fn hierarchy(ns: &str, parent: Option<&str>) -> HierarchyConfiguration {
        let mut hc = HierarchyConfiguration::new(
            HIERARCHY_NAME,
            HierarchyConfigurationSpec {
                parent: parent.map(str::to_owned),
                ..Default::default()
            },
        );
        hc.metadata.namespace = Some(ns.to_owned());
        hc
    }

    fn sorted(changes: Vec<Change>) -> Vec<Change> {
        changes
            .into_iter()
            .map(|c| match c {
                Change::Namespaces(mut names) => {
                    names.sort();
                    names.dedup();
                    Change::Namespaces(names)
                }
                other => other,
            })
            .collect()
    }

    fn names(list: &[&str]) -> Change {
        Change::Namespaces(list.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn a_namespace_event_reports_only_what_changed() {
        let feed = NamespaceFeed {
            forest: shared(tree("a > b > c")),
        };
        // The same labels again (an annotation or canopy's own write): nothing.
        assert_eq!(feed.apply(namespace("b", &[])), []);
        // A label change: that namespace alone.
        assert_eq!(
            feed.apply(namespace("b", &[("team", "x")])),
            [names(&["b"])]
        );
        // A new namespace: itself (its subtree) and its parent.
        assert_eq!(sorted(feed.apply(namespace("d", &[]))), [names(&["d"])]);
        // A deleted one: its subtree and its parent.
        assert_eq!(
            sorted(feed.delete(namespace("b", &[]))),
            [names(&["a", "b", "c"])]
        );
    }

    #[test]
    fn a_subnamespace_event_also_wakes_its_anchor() {
        let feed = NamespaceFeed {
            forest: shared(tree("team")),
        };
        let changes = feed.apply(namespace("team-dev", &[(keys_sub(), "team")]));
        assert!(changes.contains(&Change::Anchor {
            namespace: "team".into(),
            name: "team-dev".into()
        }));
    }

    fn keys_sub() -> &'static str {
        crate::api::keys::SUBNAMESPACE_OF
    }

    #[test]
    fn a_hierarchy_status_write_wakes_nothing_and_a_move_wakes_both_places() {
        let feed = HierarchyFeed {
            forest: shared(tree("a > b > c, x")),
        };
        let mut with_status = hierarchy("b", Some("a"));
        with_status.metadata.generation = Some(1);
        let condition = |generation| crate::api::Condition {
            type_: crate::api::BAD_CONFIGURATION.into(),
            status: "True".into(),
            reason: "x".into(),
            message: "y".into(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
            observed_generation: generation,
        };
        // A status written before canopy knew the generation: it needs writing again.
        with_status.status = Some(HierarchyConfigurationStatus {
            children: vec!["c".into()],
            conditions: vec![condition(None)],
        });
        assert_eq!(feed.apply(with_status.clone()), [names(&["b"])]);
        // One that speaks of this generation (canopy's own write) wakes nothing.
        with_status.status = Some(HierarchyConfigurationStatus {
            children: vec!["c".into()],
            conditions: vec![condition(Some(1))],
        });
        assert_eq!(feed.apply(with_status), []);
        assert_eq!(
            sorted(feed.apply(hierarchy("b", Some("x")))),
            [names(&["a", "b", "c", "x"])]
        );
        assert_eq!(
            sorted(feed.delete(hierarchy("b", Some("x")))),
            [names(&["b", "c", "x"])]
        );
    }

    #[test]
    fn the_configuration_wakes_everything_only_when_its_spec_changes() {
        let config = Arc::new(RwLock::new(CanopyConfigurationSpec::default()));
        let feed = ConfigFeed {
            forest: shared(Forest::new()),
            config: config.clone(),
        };
        let mut obj = CanopyConfiguration::new("config", CanopyConfigurationSpec::default());
        // A status write leaves the spec as it is.
        assert_eq!(feed.apply(obj.clone()), []);
        obj.spec.excluded_namespaces = vec!["kube-system".into(), "ops".into()];
        assert_eq!(feed.apply(obj.clone()), [Change::All]);
        assert!(feed.forest.read().is_excluded("ops"));
        assert_eq!(feed.reset(vec![obj], false), []);
        // Gone: the defaults.
        assert_eq!(feed.reset(Vec::new(), false), [Change::All]);
        assert!(!feed.forest.read().is_excluded("ops"));
    }

    #[test]
    fn a_tenant_wakes_its_tree_and_lets_go_of_it_when_deleted() {
        let feed = TenantFeed {
            forest: shared(tree("acme > acme-dev, other")),
        };
        let spec: TenantSpec = serde_json::from_value(serde_json::json!({})).expect("valid spec");
        let mut tenant = Tenant::new("acme", spec);
        assert_eq!(
            sorted(feed.apply(tenant.clone())),
            [names(&["acme", "acme-dev"]), Change::Tenant("acme".into())]
        );
        tenant.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_eq!(
            sorted(feed.apply(tenant)),
            [names(&["acme", "acme-dev"]), Change::Tenant("acme".into())]
        );
        assert!(feed.forest.read().tenant_for("acme-dev").is_none());
    }

    #[test]
    fn a_relist_replaces_what_was_known_and_only_a_later_one_wakes_everything() {
        let feed = NamespaceFeed {
            forest: shared(tree("a > b, gone")),
        };
        assert_eq!(
            feed.reset(vec![namespace("a", &[]), namespace("b", &[])], true),
            []
        );
        assert!({
            let f = feed.forest.read();
            !f.exists("gone") && f.exists("b")
        });
        assert_eq!(feed.reset(vec![namespace("a", &[])], false), [Change::All]);
        assert!(!feed.forest.read().exists("b"));

        let anchors = AnchorFeed {
            forest: shared(tree("team >> old")),
        };
        let mut anchor = SubnamespaceAnchor::new("new", Default::default());
        anchor.metadata.namespace = Some("team".into());
        anchors.reset(vec![anchor], true);
        let forest = anchors.forest.read();
        let held = &forest.get("team").expect("team").anchors;
        assert!(held.contains("new") && !held.contains("old"), "{held:?}");
    }
}
