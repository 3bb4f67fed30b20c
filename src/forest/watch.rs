//! The model's watches: each lists and watches one kind and feeds it, through its
//! `Indexer` (`feeds.rs`, `limit_ranges.rs`), into the Forest and the stores that make up
//! the `ClusterState`; what changed goes to the reconcilers as `Change`s.

use std::sync::Arc;

use futures::Stream;
use k8s_openapi::api::core::v1::{
    LimitRange, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Service,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Client;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use parking_lot::RwLock;
use tokio::sync::{mpsc, watch};

use super::Forest;
pub use super::feeds::Change;
use super::feeds::{AnchorFeed, ConfigFeed, HierarchyFeed, NamespaceFeed, TenantFeed, VolumeFeed};
use super::indexer::{self, Indexer};
use super::limit_ranges::LimitRangeIndex;
use super::propagated::PropagatedKinds;
use super::quota::{HrqFeed, QuotaIndex, UsageFeed};
use super::storage_classes::StorageClassIndex;
use super::watch_health::{self, WatchHealth};
use crate::api::{
    CONFIGURATION_NAME, CanopyConfiguration, CanopyConfigurationSpec, HierarchyConfiguration,
    PodSecurityLevel, SubnamespaceAnchor, Tenant,
};

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
    /// Which StorageClass is the cluster's default, for the storage guardrail.
    pub storage_classes: StorageClassIndex,
    /// PersistentVolumes, for keeping each with its tenant.
    pub volumes: Store<PersistentVolume>,
    /// Sources and copies of every propagated kind (their watches are started by the
    /// propagation controller, which decides which kinds propagate).
    pub kinds: Arc<PropagatedKinds>,
    /// HierarchicalResourceQuotas and the usage of every counted object.
    pub quota: QuotaIndex,
    /// The kinds counted generically for HRQs (`count/<resource>`) that exist: the
    /// `quota.canopy.dev` webhook must be called for their creates.
    pub counted_kinds: watch::Receiver<Vec<kube::core::ApiResource>>,
    /// True once every watcher has listed its kind once.
    pub ready: watch::Receiver<bool>,
    /// Whether the watches feeding this state (the Forest's and the propagated kinds')
    /// are failing: for `/readyz` and `canopy_watch_stale`.
    pub health: Arc<WatchHealth>,
}

impl ClusterState {
    /// Reads the Forest.
    pub fn forest(&self) -> parking_lot::RwLockReadGuard<'_, Forest> {
        self.forest.read()
    }

    pub fn config(&self) -> CanopyConfigurationSpec {
        self.config.read().clone()
    }

    /// The Pod Security level of Tenant `tenant`'s namespaces: its own, else the
    /// configuration's default (also for a Tenant not in the store yet).
    pub fn pod_security_for(&self, tenant: &str) -> PodSecurityLevel {
        self.tenants
            .get(&ObjectRef::new(tenant))
            .and_then(|t| t.spec.pod_security)
            .unwrap_or_else(|| self.config.read().pod_security)
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
            storage_classes: StorageClassIndex::default(),
            volumes: reflector::store().0,
            kinds: Arc::new(PropagatedKinds::settled()),
            quota: QuotaIndex::default(),
            counted_kinds: watch::channel(Vec::new()).1,
            ready,
            health: Arc::new(WatchHealth::new()),
        }
    }
}

/// The watches of the model, by the name their health is reported under
/// (`canopy_watch_stale{watch=...}`); each must list once before anything is decided.
pub const WATCHES: [&str; 12] = [
    "namespaces",
    "hierarchyconfigurations",
    "subnamespaceanchors",
    "tenants",
    "persistentvolumes",
    "limitranges",
    "storageclasses",
    "canopyconfiguration",
    "hierarchicalresourcequotas",
    "quota/pods",
    "quota/services",
    "quota/persistentvolumeclaims",
];

/// Starts the watchers on `client`, reporting their health to `health` (as the
/// propagated kinds started later do). Returns the shared state and the stream of
/// changes; the watchers run until the returned future is dropped.
pub fn start(
    client: Client,
    health: Arc<WatchHealth>,
) -> (
    ClusterState,
    mpsc::UnboundedReceiver<Change>,
    impl Future<Output = ()>,
) {
    let forest = Arc::new(RwLock::new(Forest::new()));
    let config = Arc::new(RwLock::new(CanopyConfigurationSpec::default()));
    // Until the configuration is read, its defaults hold (`ConfigFeed` reports only a
    // difference from what is set here).
    super::feeds::write(&forest).set_excluded(config.read().excluded_namespaces.clone());
    let (changes, changes_rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = watch::channel(false);
    let readiness = Readiness::new(ready_tx, WATCHES.len());
    let feed = || Feed {
        changes: changes.clone(),
        readiness: readiness.clone(),
    };

    let namespaces = feed().run(
        watcher(
            &health,
            "namespaces",
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        ),
        NamespaceFeed {
            forest: forest.clone(),
        },
    );
    let (hc_store, hc_writer) = reflector::store();
    let hierarchies = feed().run(
        reflector::reflector(
            hc_writer,
            watcher(&health, "hierarchyconfigurations", Api::all(client.clone())),
        ),
        HierarchyFeed {
            forest: forest.clone(),
        },
    );
    let (anchor_store, anchor_writer) = reflector::store();
    let anchors = feed().run(
        reflector::reflector(
            anchor_writer,
            watcher(&health, "subnamespaceanchors", Api::all(client.clone())),
        ),
        AnchorFeed {
            forest: forest.clone(),
        },
    );
    let (tenant_store, tenant_writer) = reflector::store();
    let tenants = feed().run(
        reflector::reflector(
            tenant_writer,
            watcher(&health, "tenants", Api::all(client.clone())),
        ),
        TenantFeed {
            forest: forest.clone(),
        },
    );
    let (volume_store, volume_writer) = reflector::store();
    let volumes = feed().run(
        reflector::reflector(
            volume_writer,
            watcher(&health, "persistentvolumes", Api::all(client.clone())),
        ),
        VolumeFeed,
    );
    let configuration = feed().run(
        watch_health::resilient(
            &health,
            "canopyconfiguration".to_owned(),
            watcher::watcher(
                Api::<CanopyConfiguration>::all(client.clone()),
                watcher::Config::default().fields(&format!("metadata.name={CONFIGURATION_NAME}")),
            ),
        ),
        ConfigFeed {
            forest: forest.clone(),
            config: config.clone(),
        },
    );
    let limit_range_index = LimitRangeIndex::default();
    let limit_ranges = index_only(
        watcher(
            &health,
            "limitranges",
            Api::<LimitRange>::all(client.clone()),
        ),
        limit_range_index.clone(),
        readiness.clone(),
    );
    let storage_class_index = StorageClassIndex::default();
    let storage_classes = index_only(
        watcher(
            &health,
            "storageclasses",
            Api::<StorageClass>::all(client.clone()),
        ),
        storage_class_index.clone(),
        readiness.clone(),
    );
    // Quota: the HRQs and the usage of what they count. A change only wakes the recount
    // controller (through the index's `Notify`), so the emitted changes are dropped.
    let quota = QuotaIndex::default();
    let (counted_kinds, counted_kinds_rx) = watch::channel(Vec::new());
    let quota_watches = {
        let (quota, readiness, health) = (quota.clone(), readiness.clone(), health.clone());
        async move {
            tokio::join!(
                super::quota_counts::run(
                    client.clone(),
                    quota.clone(),
                    health.clone(),
                    counted_kinds
                ),
                index_only(
                    watcher(
                        &health,
                        "hierarchicalresourcequotas",
                        Api::all(client.clone())
                    ),
                    HrqFeed(quota.clone()),
                    readiness.clone(),
                ),
                index_only(
                    watcher(&health, "quota/pods", Api::<Pod>::all(client.clone())),
                    UsageFeed(quota.clone()),
                    readiness.clone(),
                ),
                index_only(
                    watcher(
                        &health,
                        "quota/services",
                        Api::<Service>::all(client.clone())
                    ),
                    UsageFeed(quota.clone()),
                    readiness.clone(),
                ),
                index_only(
                    watcher(
                        &health,
                        "quota/persistentvolumeclaims",
                        Api::<PersistentVolumeClaim>::all(client),
                    ),
                    UsageFeed(quota.clone()),
                    readiness.clone(),
                ),
            );
        }
    };

    let state = ClusterState {
        forest,
        config,
        anchors: anchor_store,
        hierarchies: hc_store,
        tenants: tenant_store,
        limit_ranges: limit_range_index,
        storage_classes: storage_class_index,
        volumes: volume_store,
        kinds: Arc::new(PropagatedKinds::reporting_to(health.clone())),
        quota: quota.clone(),
        counted_kinds: counted_kinds_rx,
        ready: ready_rx,
        health,
    };
    let run = async move {
        tokio::join!(
            namespaces,
            hierarchies,
            anchors,
            configuration,
            tenants,
            limit_ranges,
            storage_classes,
            volumes,
            quota_watches
        );
    };
    (state, changes_rx, run)
}

/// Where the Forest's watches report: changes to the reconcilers, first lists to
/// readiness.
struct Feed {
    changes: mpsc::UnboundedSender<Change>,
    readiness: Readiness,
}

impl Feed {
    /// Every watch runs the same way: its events through its indexer, its changes to the
    /// reconcilers, its first complete list counted towards readiness.
    fn run<K>(
        self,
        stream: impl Stream<Item = Result<Event<K>, watcher::Error>>,
        indexer: impl Indexer<K, Change = Change>,
    ) -> impl Future<Output = ()> {
        let Self { changes, readiness } = self;
        indexer::run(
            stream,
            indexer,
            // Without reconcilers (`--webhooks`) nobody listens; the model still updates.
            move |change| {
                let _ = changes.send(change);
            },
            move || readiness.listed(),
        )
    }
}

/// A watch whose changes nobody dispatches: its indexer has no consumer to tell (the
/// LimitRanges) or wakes its own (the quota index's `Notify`). Only its first list
/// counts, towards readiness.
fn index_only<K, I: Indexer<K>>(
    stream: impl Stream<Item = Result<Event<K>, watcher::Error>>,
    indexer: I,
    readiness: Readiness,
) -> impl Future<Output = ()> {
    indexer::run(stream, indexer, |_| {}, move || readiness.listed())
}

/// A watch of every object of a kind, with canopy's retries (`watch_health`).
fn watcher<K>(
    health: &Arc<WatchHealth>,
    name: &str,
    api: Api<K>,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + use<K>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    watch_health::resilient(
        health,
        name.to_owned(),
        watcher::watcher(api, watcher::Config::default().any_semantic())
            .modify(indexer::without_managed_fields),
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

#[cfg(test)]
mod tests {
    use super::WATCHES;

    /// docs/architecture.md says what each watch reads; a watch added here must be
    /// described there.
    #[test]
    fn the_architecture_names_every_watch() {
        let doc = include_str!("../../docs/architecture.md");
        let described = [
            ("namespaces", "| namespace watcher |"),
            (
                "hierarchyconfigurations",
                "| HierarchyConfiguration watcher |",
            ),
            ("subnamespaceanchors", "| anchor watcher |"),
            ("tenants", "| Tenant watcher |"),
            ("persistentvolumes", "| PersistentVolume watcher |"),
            ("limitranges", "| LimitRange watcher |"),
            ("storageclasses", "| StorageClass watcher |"),
            ("canopyconfiguration", "| configuration watcher |"),
            (
                "hierarchicalresourcequotas",
                "| HierarchicalResourceQuota watcher |",
            ),
            ("quota/pods", "| quota usage watchers |"),
            ("quota/services", "| quota usage watchers |"),
            ("quota/persistentvolumeclaims", "| quota usage watchers |"),
        ];
        assert_eq!(
            described.len(),
            WATCHES.len(),
            "describe every watch of WATCHES"
        );
        for (watch, row) in described {
            assert!(WATCHES.contains(&watch), "{watch} is not a watch");
            assert!(
                doc.contains(row),
                "docs/architecture.md lacks the row {row:?}"
            );
        }
    }
}
