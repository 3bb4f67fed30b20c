//! Watchers that keep the Forest (and the stores of full objects) in step with the cluster,
//! and tell the reconcilers what changed.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, PersistentVolume};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use tokio::sync::{mpsc, watch};

use super::Forest;
use super::limit_ranges::{self, LimitRangeIndex};
use crate::api::{
    CONFIGURATION_NAME, CanopyConfiguration, CanopyConfigurationSpec, HierarchyConfiguration,
    PodSecurityLevel, SubnamespaceAnchor, Tenant,
};

/// What the reconcilers must look at again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// These namespaces' derived state (labels, HierarchyConfiguration status) may differ.
    Namespaces(Vec<String>),
    /// This anchor, or the namespace it stands for, changed.
    Anchor { namespace: String, name: String },
    /// This PersistentVolume changed.
    Volume(String),
    /// This Tenant changed (or its namespaces did).
    Tenant(String),
    /// Everything may differ (initial list done, configuration changed).
    All,
}

/// The shared, read-mostly view of the cluster that reconcilers and webhooks use.
#[derive(Clone)]
pub struct ClusterState {
    pub forest: Arc<RwLock<Forest>>,
    pub config: Arc<RwLock<CanopyConfigurationSpec>>,
    pub anchors: Store<SubnamespaceAnchor>,
    pub hierarchies: Store<HierarchyConfiguration>,
    /// Tenants, for the admission policies' per-tenant overrides.
    pub tenants: Store<Tenant>,
    /// LimitRanges by namespace: their defaults satisfy the resources policy.
    pub limit_ranges: LimitRangeIndex,
    /// PersistentVolumes, for keeping each with its tenant.
    pub volumes: Store<PersistentVolume>,
    /// True once every watcher has listed its kind once.
    pub ready: watch::Receiver<bool>,
}

impl ClusterState {
    /// Reads the Forest; a poisoned lock (a panicked writer) still holds a consistent tree
    /// because every update completes before the guard drops.
    pub fn forest(&self) -> std::sync::RwLockReadGuard<'_, Forest> {
        self.forest.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> CanopyConfigurationSpec {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The Pod Security level of Tenant `tenant`'s namespaces: its own, else the
    /// configuration's default (also for a Tenant not in the store yet).
    pub fn pod_security_for(&self, tenant: &str) -> PodSecurityLevel {
        self.tenants
            .get(&ObjectRef::new(tenant))
            .and_then(|t| t.spec.pod_security)
            .unwrap_or_else(|| {
                self.config
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .pod_security
            })
    }

    /// A state fed by no watcher, already ready: for benchmarks and tests of the webhook
    /// server without a cluster. Fill the Forest and stores through the returned state.
    pub fn detached(forest: Forest, config: CanopyConfigurationSpec) -> Self {
        let (_, ready) = watch::channel(true);
        Self {
            forest: Arc::new(RwLock::new(forest)),
            config: Arc::new(RwLock::new(config)),
            anchors: reflector::store().0,
            hierarchies: reflector::store().0,
            tenants: reflector::store().0,
            limit_ranges: LimitRangeIndex::default(),
            volumes: reflector::store().0,
            ready,
        }
    }
}

/// Starts the watchers on `client`. Returns the shared state and the stream of changes;
/// the watchers run until the returned future set is dropped.
pub fn start(
    client: Client,
) -> (
    ClusterState,
    mpsc::UnboundedReceiver<Change>,
    impl Future<Output = ()>,
) {
    let forest = Arc::new(RwLock::new(Forest::new()));
    let config = Arc::new(RwLock::new(CanopyConfigurationSpec::default()));
    forest
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .set_excluded(
            config
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .excluded_namespaces
                .clone(),
        );
    let (changes, changes_rx) = mpsc::unbounded_channel();
    let (anchor_store, anchor_writer) = reflector::store();
    let (hc_store, hc_writer) = reflector::store();
    let (ready_tx, ready_rx) = watch::channel(false);
    let readiness = Readiness::new(ready_tx, 7);

    let namespaces = watch_namespaces(
        client.clone(),
        forest.clone(),
        changes.clone(),
        readiness.clone(),
    );
    let hierarchies = {
        let stream = reflector::reflector(
            hc_writer,
            watcher(
                "hierarchyconfigurations",
                Api::<HierarchyConfiguration>::all(client.clone()),
            ),
        );
        feed(
            stream,
            HierarchyFeed {
                forest: forest.clone(),
            },
            changes.clone(),
            readiness.clone(),
        )
    };
    let anchors = {
        let stream = reflector::reflector(
            anchor_writer,
            watcher(
                "subnamespaceanchors",
                Api::<SubnamespaceAnchor>::all(client.clone()),
            ),
        );
        feed(
            stream,
            AnchorFeed {
                forest: forest.clone(),
            },
            changes.clone(),
            readiness.clone(),
        )
    };
    let (tenant_store, tenant_writer) = reflector::store();
    let tenants = feed(
        reflector::reflector(
            tenant_writer,
            watcher("tenants", Api::<Tenant>::all(client.clone())),
        ),
        TenantFeed {
            forest: forest.clone(),
        },
        changes.clone(),
        readiness.clone(),
    );
    let (volume_store, volume_writer) = reflector::store();
    let volumes = feed(
        reflector::reflector(
            volume_writer,
            watcher(
                "persistentvolumes",
                Api::<PersistentVolume>::all(client.clone()),
            ),
        ),
        VolumeFeed,
        changes.clone(),
        readiness.clone(),
    );
    let limit_range_index = LimitRangeIndex::default();
    let limit_ranges = {
        let readiness = readiness.clone();
        limit_ranges::feed(
            watcher("limitranges", Api::<LimitRange>::all(client.clone())),
            limit_range_index.clone(),
            move || readiness.listed(),
        )
    };
    let configuration =
        watch_configuration(client, forest.clone(), config.clone(), changes, readiness);

    let state = ClusterState {
        forest,
        config,
        anchors: anchor_store,
        hierarchies: hc_store,
        tenants: tenant_store,
        limit_ranges: limit_range_index,
        volumes: volume_store,
        ready: ready_rx,
    };
    let run = async move {
        tokio::join!(
            namespaces,
            hierarchies,
            anchors,
            configuration,
            tenants,
            limit_ranges,
            volumes
        );
    };
    (state, changes_rx, run)
}

/// A watch of every object of a kind, with canopy's retries (`watch_health`).
fn watcher<K>(
    name: &str,
    api: Api<K>,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + use<K>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    super::watch_health::resilient(
        name.to_owned(),
        watcher::watcher(api, watcher::Config::default().any_semantic()),
    )
}

/// Counts watchers that have finished their first list.
#[derive(Clone)]
struct Readiness {
    tx: Arc<watch::Sender<bool>>,
    pending: Arc<std::sync::atomic::AtomicUsize>,
}

impl Readiness {
    fn new(tx: watch::Sender<bool>, watchers: usize) -> Self {
        Self {
            tx: Arc::new(tx),
            pending: Arc::new(std::sync::atomic::AtomicUsize::new(watchers)),
        }
    }

    /// One watcher has listed; call once per watcher.
    fn listed(&self) {
        use std::sync::atomic::Ordering;
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            let _ = self.tx.send(true);
        }
    }
}

/// How events of one kind update the Forest, and what they make dirty.
trait ForestFeed<K> {
    /// Applies one object; returns what changed.
    fn apply(&self, obj: &K) -> Vec<Change>;
    /// Applies the removal of one object.
    fn delete(&self, obj: &K) -> Vec<Change>;
    /// After a relist: forget objects that were not listed.
    fn retain(&self, listed: &HashSet<(String, String)>) -> Vec<Change>;
}

async fn feed<K, S, F>(
    stream: S,
    feed: F,
    changes: mpsc::UnboundedSender<Change>,
    readiness: Readiness,
) where
    K: kube::Resource + Clone,
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
    F: ForestFeed<K>,
{
    let mut stream = std::pin::pin!(stream);
    let mut listing: HashSet<(String, String)> = HashSet::new();
    let mut first_list = true;
    while let Some(event) = stream.next().await {
        let out = match event {
            Ok(Event::Apply(obj)) => feed.apply(&obj),
            Ok(Event::Delete(obj)) => feed.delete(&obj),
            Ok(Event::Init) => {
                listing.clear();
                Vec::new()
            }
            Ok(Event::InitApply(obj)) => {
                listing.insert((obj.namespace().unwrap_or_default(), obj.name_any()));
                feed.apply(&obj);
                Vec::new()
            }
            Ok(Event::InitDone) => {
                feed.retain(&listing);
                listing.clear();
                if first_list {
                    first_list = false;
                    readiness.listed();
                }
                vec![Change::All]
            }
            Err(err) => {
                tracing::debug!(error = %err, "watch failed; retrying (logged once per outage by watch_health)");
                Vec::new()
            }
        };
        for change in out {
            // Without reconcilers (`--webhooks`) nobody listens; the Forest still updates.
            let _ = changes.send(change);
        }
    }
}

fn write(forest: &RwLock<Forest>) -> std::sync::RwLockWriteGuard<'_, Forest> {
    forest.write().unwrap_or_else(|p| p.into_inner())
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

async fn watch_namespaces(
    client: Client,
    forest: Arc<RwLock<Forest>>,
    changes: mpsc::UnboundedSender<Change>,
    readiness: Readiness,
) {
    // Metadata only: the tree needs names, labels and deletion timestamps, not specs.
    let stream = watcher(
        "namespaces",
        Api::<PartialObjectMeta<Namespace>>::all(client),
    );
    feed(stream, NamespaceFeed { forest }, changes, readiness).await;
}

struct NamespaceFeed {
    forest: Arc<RwLock<Forest>>,
}

impl ForestFeed<PartialObjectMeta<Namespace>> for NamespaceFeed {
    fn apply(&self, ns: &PartialObjectMeta<Namespace>) -> Vec<Change> {
        let name = ns.name_any();
        let labels: BTreeMap<String, String> = ns.labels().clone();
        let deleting = ns.metadata.deletion_timestamp.is_some();
        let mut forest = write(&self.forest);
        let before = forest.get(&name).map(|s| (s.exists, s.deleting));
        forest.set_namespace(&name, labels, deleting);
        // Existence or deletion changes the subtree's halt state and labels; a label
        // change only matters to the namespace itself.
        let dirty = if before == Some((true, deleting)) {
            vec![name.clone()]
        } else {
            around(&forest, &name, None)
        };
        let parent_ns = forest.get(&name).and_then(|s| s.subnamespace_of.clone());
        drop(forest);
        let mut out = vec![Change::Namespaces(dirty)];
        out.extend(parent_ns.map(|namespace| Change::Anchor {
            namespace,
            name: name.clone(),
        }));
        out
    }

    fn delete(&self, ns: &PartialObjectMeta<Namespace>) -> Vec<Change> {
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

    fn retain(&self, listed: &HashSet<(String, String)>) -> Vec<Change> {
        let mut forest = write(&self.forest);
        let gone: Vec<String> = forest
            .namespaces()
            .filter(|ns| !listed.contains(&(String::new(), (*ns).to_owned())))
            .map(str::to_owned)
            .collect();
        for ns in &gone {
            forest.remove_namespace(ns);
        }
        Vec::new()
    }
}

struct HierarchyFeed {
    forest: Arc<RwLock<Forest>>,
}

impl ForestFeed<HierarchyConfiguration> for HierarchyFeed {
    fn apply(&self, hc: &HierarchyConfiguration) -> Vec<Change> {
        let Some(ns) = hc.namespace() else {
            return Vec::new();
        };
        if hc.name_any() != crate::api::HIERARCHY_NAME {
            return Vec::new();
        }
        let mut forest = write(&self.forest);
        let old_parent = forest.parent(&ns).map(str::to_owned);
        let old_cascade = forest.get(&ns).is_some_and(|s| s.allow_cascading_deletion);
        let new_parent = hc.spec.parent.as_deref().filter(|p| !p.is_empty());
        forest.set_hierarchy(&ns, new_parent, hc.spec.allow_cascading_deletion);
        if old_parent.as_deref() == new_parent && old_cascade == hc.spec.allow_cascading_deletion {
            // Only the status (or metadata) changed, usually by canopy itself: the tree is
            // the same, so only this namespace's report needs a look, not its subtree.
            return vec![Change::Namespaces(vec![ns])];
        }
        vec![Change::Namespaces(around(&forest, &ns, old_parent))]
    }

    fn delete(&self, hc: &HierarchyConfiguration) -> Vec<Change> {
        let Some(ns) = hc.namespace() else {
            return Vec::new();
        };
        let mut forest = write(&self.forest);
        let old_parent = forest.parent(&ns).map(str::to_owned);
        forest.remove_hierarchy(&ns);
        vec![Change::Namespaces(around(&forest, &ns, old_parent))]
    }

    fn retain(&self, listed: &HashSet<(String, String)>) -> Vec<Change> {
        let mut forest = write(&self.forest);
        let stale: Vec<String> = forest
            .namespaces()
            .filter(|ns| {
                forest.parent(ns).is_some()
                    && !listed.contains(&((*ns).to_owned(), crate::api::HIERARCHY_NAME.to_owned()))
            })
            .map(str::to_owned)
            .collect();
        for ns in &stale {
            forest.remove_hierarchy(ns);
        }
        Vec::new()
    }
}

struct AnchorFeed {
    forest: Arc<RwLock<Forest>>,
}

impl ForestFeed<SubnamespaceAnchor> for AnchorFeed {
    fn apply(&self, anchor: &SubnamespaceAnchor) -> Vec<Change> {
        let (Some(namespace), name) = (anchor.namespace(), anchor.name_any()) else {
            return Vec::new();
        };
        write(&self.forest).add_anchor(&namespace, &name);
        vec![Change::Anchor { namespace, name }]
    }

    fn delete(&self, anchor: &SubnamespaceAnchor) -> Vec<Change> {
        let (Some(namespace), name) = (anchor.namespace(), anchor.name_any()) else {
            return Vec::new();
        };
        write(&self.forest).remove_anchor(&namespace, &name);
        // The child's BadConfiguration/anchor-dependent state may change.
        vec![Change::Namespaces(vec![name])]
    }

    fn retain(&self, listed: &HashSet<(String, String)>) -> Vec<Change> {
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
            .filter(|key| !listed.contains(key))
            .collect();
        for (ns, anchor) in stale {
            forest.remove_anchor(&ns, &anchor);
        }
        Vec::new()
    }
}

async fn watch_configuration(
    client: Client,
    forest: Arc<RwLock<Forest>>,
    config: Arc<RwLock<CanopyConfigurationSpec>>,
    changes: mpsc::UnboundedSender<Change>,
    readiness: Readiness,
) {
    let api = Api::<CanopyConfiguration>::all(client);
    let stream = super::watch_health::resilient(
        "canopyconfiguration".to_owned(),
        watcher::watcher(
            api,
            watcher::Config::default().fields(&format!("metadata.name={CONFIGURATION_NAME}")),
        ),
    );
    feed(stream, ConfigFeed { forest, config }, changes, readiness).await;
}

struct ConfigFeed {
    forest: Arc<RwLock<Forest>>,
    config: Arc<RwLock<CanopyConfigurationSpec>>,
}

impl ConfigFeed {
    fn set(&self, spec: CanopyConfigurationSpec) -> Vec<Change> {
        write(&self.forest).set_excluded(spec.excluded_namespaces.iter().cloned());
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = spec;
        vec![Change::All]
    }
}

impl ForestFeed<CanopyConfiguration> for ConfigFeed {
    fn apply(&self, obj: &CanopyConfiguration) -> Vec<Change> {
        self.set(obj.spec.clone())
    }

    fn delete(&self, _: &CanopyConfiguration) -> Vec<Change> {
        self.set(CanopyConfigurationSpec::default())
    }

    fn retain(&self, listed: &HashSet<(String, String)>) -> Vec<Change> {
        if listed.is_empty() {
            self.set(CanopyConfigurationSpec::default())
        } else {
            Vec::new()
        }
    }
}

/// Tenants place their root in the Forest, which decides every namespace's tenant label.
struct TenantFeed {
    forest: Arc<RwLock<Forest>>,
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

impl ForestFeed<Tenant> for TenantFeed {
    fn apply(&self, tenant: &Tenant) -> Vec<Change> {
        let name = tenant.name_any();
        let mut forest = write(&self.forest);
        let old = forest.tenant_root(&name).map(str::to_owned);
        // A Tenant being deleted lets go of its namespaces (its finalizer then cleans up).
        let new = (tenant.metadata.deletion_timestamp.is_none()).then(|| {
            tenant
                .spec
                .root_namespace
                .clone()
                .unwrap_or_else(|| name.clone())
        });
        match &new {
            Some(root) => forest.set_tenant_root(&name, root),
            None => {
                forest.remove_tenant(&name);
            }
        }
        Self::changes(&forest, &name, &[old, new])
    }

    fn delete(&self, tenant: &Tenant) -> Vec<Change> {
        let name = tenant.name_any();
        let mut forest = write(&self.forest);
        let old = forest.remove_tenant(&name);
        Self::changes(&forest, &name, &[old])
    }

    fn retain(&self, listed: &HashSet<(String, String)>) -> Vec<Change> {
        let mut forest = write(&self.forest);
        let known: Vec<String> = forest.tenants().map(str::to_owned).collect();
        for tenant in known {
            if !listed.contains(&(String::new(), tenant.clone())) {
                forest.remove_tenant(&tenant);
            }
        }
        Vec::new()
    }
}

/// PersistentVolumes are labelled with the tenant of the claim they are bound to.
struct VolumeFeed;

impl ForestFeed<PersistentVolume> for VolumeFeed {
    fn apply(&self, pv: &PersistentVolume) -> Vec<Change> {
        vec![Change::Volume(pv.name_any())]
    }

    fn delete(&self, _: &PersistentVolume) -> Vec<Change> {
        Vec::new()
    }

    fn retain(&self, _: &HashSet<(String, String)>) -> Vec<Change> {
        Vec::new()
    }
}
