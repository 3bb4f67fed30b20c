//! The propagated kinds in the model: per kind, an index of sources (full objects,
//! label-filtered to non-copies) and copies (metadata only), fed by two watches, so memory
//! grows with what canopy owns. The propagation controller decides which kinds propagate
//! and starts them here (`PropagatedKinds::start`); the webhooks read the same indexes.

mod health;
pub mod index;
pub mod kinds;
pub mod selectors;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use kube::api::{Api, PartialObjectMeta};
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::Forest;
use super::indexer::{self, Indexer, lists_whole};
use super::watch_health::{self, resilient};
use crate::api::{PropagationMode, keys, never_propagated};
pub use health::{Availability, ERROR_FRESH, WatchHealth, availability, settled};
pub use index::{CopyState, KindIndex};
pub use kinds::{KindKey, display};
pub use selectors::{Exceptions, SelectorError};

/// Which of a kind's two watches.
#[derive(Clone, Copy, Debug)]
enum Watch {
    Sources = 0,
    Copies = 1,
}

/// One watch's state: listed once, and its last error with when it happened.
#[derive(Default)]
struct Health {
    listed: bool,
    error: Option<(String, Instant)>,
}

/// One propagated kind in the model.
pub struct KindModel {
    pub key: KindKey,
    pub resource: ApiResource,
    mode: RwLock<PropagationMode>,
    index: RwLock<KindIndex>,
    /// Sources and copies listed once: only then is a plan trustworthy.
    listed: watch::Sender<(bool, bool)>,
    /// What the two watches last said, for reporting (`availability`).
    health: Mutex<[Health; 2]>,
    watches: Mutex<JoinSet<()>>,
}

impl KindModel {
    pub fn mode(&self) -> PropagationMode {
        *self.mode.read()
    }

    /// Sets the mode; whether it changed.
    pub fn set_mode(&self, mode: PropagationMode) -> bool {
        let mut current = self.mode.write();
        std::mem::replace(&mut *current, mode) != mode
    }

    /// Reads the index.
    pub fn index(&self) -> parking_lot::RwLockReadGuard<'_, KindIndex> {
        self.index.read()
    }

    fn index_mut(&self) -> parking_lot::RwLockWriteGuard<'_, KindIndex> {
        self.index.write()
    }

    /// Records a copy canopy has just written (`body`, the applied object), before the
    /// copies' watch reports it: a namespace planned again in between (another source
    /// changed) would otherwise see the copy missing and write it a second time. The
    /// watch event then replaces the record with what the apiserver holds (the same state,
    /// or one that says someone else also wrote it), as client-go's mutation cache does
    /// for an informer.
    pub fn record_written_copy(&self, namespace: &str, body: &serde_json::Value) {
        let Some(name) = body.pointer("/metadata/name").and_then(|n| n.as_str()) else {
            return;
        };
        if let Some(state) = CopyState::written(body) {
            self.index_mut().set_copy(namespace, name, state);
        }
    }

    /// Records a copy canopy has just deleted, before the watch reports it.
    pub fn record_deleted_copy(&self, namespace: &str, name: &str) {
        self.index_mut().remove_copy(namespace, name);
    }

    pub fn is_listed(&self) -> bool {
        *self.listed.borrow() == (true, true)
    }

    /// Resolves once both watches have listed (`Err` if the kind was stopped first).
    pub async fn wait_listed(&self) -> Result<(), watch::error::RecvError> {
        let mut listed = self.listed.subscribe();
        listed.wait_for(|l| *l == (true, true)).await.map(|_| ())
    }

    fn watch_ok(&self, which: Watch, list_done: bool) {
        let mut health = self.health.lock();
        let h = &mut health[which as usize];
        h.error = None;
        h.listed |= list_done;
        drop(health);
        if list_done {
            self.listed.send_modify(|l| match which {
                Watch::Sources => l.0 = true,
                Watch::Copies => l.1 = true,
            });
        }
    }

    fn watch_failed(&self, which: Watch, error: String) {
        let mut health = self.health.lock();
        health[which as usize].error = Some((error, Instant::now()));
    }

    pub fn availability(&self) -> Availability {
        let health = self.health.lock();
        let now = Instant::now();
        let view = |h: &Health| WatchHealth {
            listed: h.listed,
            error: h
                .error
                .as_ref()
                .map(|(e, at)| (e.clone(), now.saturating_duration_since(*at))),
        };
        availability(&view(&health[0]), &view(&health[1]))
    }

    /// Sources and copies in the namespaces `counted` accepts, for
    /// `CanopyConfiguration.status.resources`.
    pub fn counts(&self, counted: impl Fn(&str) -> bool) -> (usize, usize) {
        let index = self.index();
        (index.source_count(&counted), index.copy_count(&counted))
    }
}

/// Every propagated kind, by `(group, plural)`; cheap to share.
#[derive(Default)]
pub struct PropagatedKinds {
    kinds: Mutex<HashMap<KindKey, Arc<KindModel>>>,
    /// Where the kinds' watches report whether they fail (the manager's, served on
    /// `/metrics` and read by `/readyz`).
    stale: Arc<watch_health::WatchHealth>,
    /// The configuration has been read and every configured kind started at least once.
    configured: AtomicBool,
}

impl PropagatedKinds {
    /// A registry with no kinds whose configuration counts as read: for a model fed by no
    /// watcher (benchmarks, tests of the webhooks without a cluster).
    /// No kinds yet; their watches will report to `stale`.
    pub fn reporting_to(stale: Arc<watch_health::WatchHealth>) -> Self {
        Self {
            stale,
            ..Self::default()
        }
    }

    pub fn settled() -> Self {
        let kinds = Self::default();
        kinds.set_configured();
        kinds
    }

    pub fn get(&self, key: &KindKey) -> Option<Arc<KindModel>> {
        self.lock().get(key).cloned()
    }

    /// Every kind propagated now.
    pub fn all(&self) -> Vec<Arc<KindModel>> {
        self.lock().values().cloned().collect()
    }

    /// Starts indexing `resource` through its two watches on `client`; every namespace
    /// whose copies may differ after an event goes to `dirty`. Replaces a kind of the same
    /// key (stop it first to keep its watches from running on).
    pub fn start(
        &self,
        client: &Client,
        forest: Arc<RwLock<Forest>>,
        key: KindKey,
        resource: ApiResource,
        mode: PropagationMode,
        dirty: impl Fn(Vec<String>) + Clone + Send + Sync + 'static,
    ) -> Arc<KindModel> {
        let (listed, _) = watch::channel((false, false));
        let kind = Arc::new(KindModel {
            key: key.clone(),
            resource,
            mode: RwLock::new(mode),
            index: RwLock::new(KindIndex::default()),
            listed,
            health: Mutex::new([Health::default(), Health::default()]),
            watches: Mutex::new(JoinSet::new()),
        });
        {
            let mut watches = kind.watches.lock();
            watches.spawn(watch_sources(
                client.clone(),
                self.stale.clone(),
                kind.clone(),
                forest,
                dirty.clone(),
            ));
            watches.spawn(watch_copies(
                client.clone(),
                self.stale.clone(),
                kind.clone(),
                dirty,
            ));
        }
        self.lock().insert(key, kind.clone());
        kind
    }

    /// Stops indexing a kind dropped from the configuration.
    pub fn stop(&self, key: &KindKey) -> Option<Arc<KindModel>> {
        let kind = self.lock().remove(key)?;
        kind.watches.lock().abort_all();
        Some(kind)
    }

    pub fn set_configured(&self) {
        self.configured.store(true, Ordering::SeqCst);
    }

    pub fn is_configured(&self) -> bool {
        self.configured.load(Ordering::SeqCst)
    }

    /// Whether the configuration has been read and no kind is still in its first list.
    /// A kind that cannot be used (refused by RBAC, not served) does not hold this up:
    /// see `settled`.
    pub fn is_settled(&self) -> bool {
        self.is_configured()
            && settled(
                self.all()
                    .iter()
                    .map(|k| k.availability())
                    .collect::<Vec<_>>()
                    .iter(),
            )
    }

    /// Descendants of `namespace` where a copy of `source` (of the kind `resource` of
    /// `group`) would overwrite an object that is not a copy; `Err` when the source's
    /// propagation annotations are invalid.
    ///
    /// `SourceCheck::Unchecked` when the kind's index has not been listed (canopy may not
    /// read the kind, say): the check is skipped rather than failed closed. It is a
    /// courtesy, not a guarantee: the planner never writes a copy over an object that is
    /// not a copy and reports the conflict once it can read the kind. Failing it closed
    /// would refuse every write of that kind in every namespace (every Secret, for
    /// `secrets`) for as long as canopy cannot read it.
    pub fn conflicts_for_source(
        &self,
        forest: &Forest,
        group: &str,
        resource: &str,
        namespace: &str,
        source: &DynamicObject,
    ) -> Result<SourceCheck, SelectorError> {
        let annotations = source.metadata.annotations.clone().unwrap_or_default();
        let exceptions = Exceptions::parse(&annotations)?;
        let name = source.metadata.name.as_deref().unwrap_or_default();
        let Some(kind) = self.get(&(group.to_owned(), resource.to_owned())) else {
            return Ok(SourceCheck::Checked(Vec::new()));
        };
        // An object that never propagates has no copies to conflict: every namespace's
        // own kube-root-ca.crt, Helm release records of the same release name in a
        // parent and a child, and so on, once configmaps or secrets are configured.
        if never_propagated(&kind.resource, source).is_some() {
            return Ok(SourceCheck::Checked(Vec::new()));
        }
        let mode = kind.mode();
        if matches!(mode, PropagationMode::Ignore | PropagationMode::Remove)
            || (mode == PropagationMode::AllowPropagate && !exceptions.opted_in())
        {
            return Ok(SourceCheck::Checked(Vec::new()));
        }
        if !kind.is_listed() {
            return Ok(SourceCheck::Unchecked(display(&kind.key)));
        }
        let index = kind.index();
        Ok(SourceCheck::Checked(
            forest
                .descendants(namespace)
                .into_iter()
                .filter(|d| index.source(d, name).is_some() && exceptions.admits(forest, d))
                .map(str::to_owned)
                .collect(),
        ))
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<KindKey, Arc<KindModel>>> {
        self.kinds.lock()
    }
}

/// What the source-conflict check could say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceCheck {
    /// The descendants where a copy would overwrite an object that is not a copy.
    Checked(Vec<String>),
    /// The kind's index is not listed (canopy cannot read the kind now); the kind, as
    /// kubectl names it.
    Unchecked(String),
}

/// The `watch` label of a kind's source or copy watch: `sources/roles`,
/// `copies/networkpolicies.networking.k8s.io`.
fn watch_name(what: &str, resource: &ApiResource) -> String {
    if resource.group.is_empty() {
        format!("{what}/{}", resource.plural)
    } else {
        format!("{what}/{}.{}", resource.plural, resource.group)
    }
}

/// Sources: full objects without `canopy.dev/inherited-from`. A source event makes its
/// namespace's subtree dirty (the namespace itself too: a local object there blocks a
/// copy).
struct SourceFeed {
    kind: Arc<KindModel>,
    forest: Arc<RwLock<Forest>>,
}

impl SourceFeed {
    fn affected(&self, namespaces: impl IntoIterator<Item = String>) -> Vec<String> {
        let forest = self.forest.read();
        let mut out = BTreeSet::new();
        for ns in namespaces {
            out.extend(forest.subtree(&ns).into_iter().map(str::to_owned));
        }
        out.into_iter().collect()
    }
}

impl Indexer<DynamicObject> for SourceFeed {
    type Change = Vec<String>;
    lists_whole!(DynamicObject);

    fn apply(&self, obj: DynamicObject) -> Vec<Vec<String>> {
        let Some(ns) = obj.namespace() else {
            return Vec::new();
        };
        let mut index = self.kind.index_mut();
        let unchanged = index
            .source(&ns, &obj.name_any())
            .is_some_and(|old| index::same_but_status(old, &obj));
        index.set_source(&ns, obj);
        drop(index);
        if unchanged {
            // A status write (a ResourceQuota's usage, by the apiserver's quota
            // controller): nothing a copy carries changed, so nothing is planned again.
            // In a deep tree every such write re-planned the whole subtree.
            return Vec::new();
        }
        vec![self.affected([ns])]
    }

    fn delete(&self, obj: DynamicObject) -> Vec<Vec<String>> {
        let Some(ns) = obj.namespace() else {
            return Vec::new();
        };
        self.kind.index_mut().remove_source(&ns, &obj.name_any());
        vec![self.affected([ns])]
    }

    fn reset(&self, listed: Vec<DynamicObject>, _first: bool) -> Vec<Vec<String>> {
        let mut namespaces = BTreeSet::new();
        {
            let mut index = self.kind.index_mut();
            namespaces.extend(index.source_namespaces().cloned());
            index.clear_sources();
            for obj in listed {
                if let Some(ns) = obj.namespace() {
                    namespaces.insert(ns.clone());
                    index.set_source(&ns, obj);
                }
            }
        }
        vec![self.affected(namespaces)]
    }

    fn watch_ok(&self, list_done: bool) {
        self.kind.watch_ok(Watch::Sources, list_done);
    }

    fn watch_failed(&self, error: &watcher::Error) {
        tracing::debug!(kind = %kinds::display(&self.kind.key), %error, "source watch failed; retrying");
        self.kind.watch_failed(Watch::Sources, error.to_string());
    }
}

/// Copies: metadata of objects with `canopy.dev/inherited-from`; a copy's content is
/// known from its hash annotation. A copy event makes its namespace dirty.
struct CopyFeed {
    kind: Arc<KindModel>,
}

fn copy_state(obj: &PartialObjectMeta<DynamicObject>) -> Option<(String, String, CopyState)> {
    let ns = obj.metadata.namespace.clone()?;
    let name = obj.metadata.name.clone()?;
    Some((ns, name, CopyState::from_meta(&obj.metadata)?))
}

impl Indexer<PartialObjectMeta<DynamicObject>> for CopyFeed {
    type Change = Vec<String>;
    type Listed = (String, String, CopyState);

    fn listed(&self, obj: PartialObjectMeta<DynamicObject>) -> Option<Self::Listed> {
        copy_state(&obj)
    }

    fn apply(&self, obj: PartialObjectMeta<DynamicObject>) -> Vec<Vec<String>> {
        let Some((ns, name, state)) = copy_state(&obj) else {
            return Vec::new();
        };
        let mut index = self.kind.index_mut();
        if index.copy(&ns, &name) == Some(&state) {
            // A status write, or the watch reporting a copy canopy already recorded when
            // it wrote it: what the plan reads is the same.
            return Vec::new();
        }
        index.set_copy(&ns, &name, state);
        vec![vec![ns]]
    }

    fn delete(&self, obj: PartialObjectMeta<DynamicObject>) -> Vec<Vec<String>> {
        let (Some(ns), Some(name)) = (obj.metadata.namespace, obj.metadata.name) else {
            return Vec::new();
        };
        self.kind.index_mut().remove_copy(&ns, &name);
        vec![vec![ns]]
    }

    fn reset(&self, listed: Vec<Self::Listed>, _first: bool) -> Vec<Vec<String>> {
        let mut namespaces = BTreeSet::new();
        {
            let mut index = self.kind.index_mut();
            namespaces.extend(index.copy_namespaces().cloned());
            index.clear_copies();
            for (ns, name, state) in listed {
                index.set_copy(&ns, &name, state);
                namespaces.insert(ns);
            }
        }
        vec![namespaces.into_iter().collect()]
    }

    fn watch_ok(&self, list_done: bool) {
        self.kind.watch_ok(Watch::Copies, list_done);
    }

    fn watch_failed(&self, error: &watcher::Error) {
        tracing::debug!(kind = %kinds::display(&self.kind.key), %error, "copy watch failed; retrying");
        self.kind.watch_failed(Watch::Copies, error.to_string());
    }
}

async fn watch_sources(
    client: Client,
    stale: Arc<watch_health::WatchHealth>,
    kind: Arc<KindModel>,
    forest: Arc<RwLock<Forest>>,
    dirty: impl Fn(Vec<String>),
) {
    let api: Api<DynamicObject> = Api::all_with(client, &kind.resource);
    let config = watcher::Config::default()
        .labels(&format!("!{}", keys::INHERITED_FROM))
        .any_semantic();
    let events = resilient(
        &stale,
        watch_name("sources", &kind.resource),
        watcher::watcher(api, config).modify(indexer::without_managed_fields),
    );
    indexer::run(events, SourceFeed { kind, forest }, dirty, || {}).await;
}

async fn watch_copies(
    client: Client,
    stale: Arc<watch_health::WatchHealth>,
    kind: Arc<KindModel>,
    dirty: impl Fn(Vec<String>),
) {
    // Metadata only: a copy's content is known from its hash annotation.
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &kind.resource);
    let config = watcher::Config::default()
        .labels(keys::INHERITED_FROM)
        .any_semantic();
    let events = resilient(
        &stale,
        watch_name("copies", &kind.resource),
        watcher::watcher(api, config).modify(CopyState::lean),
    );
    indexer::run(events, CopyFeed { kind }, dirty, || {}).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model() -> KindModel {
        KindModel {
            key: ("rbac.authorization.k8s.io".into(), "rolebindings".into()),
            resource: ApiResource::erase::<k8s_openapi::api::rbac::v1::RoleBinding>(&()),
            mode: RwLock::new(PropagationMode::Propagate),
            index: RwLock::new(KindIndex::default()),
            listed: watch::channel((true, true)).0,
            health: Mutex::new([Health::default(), Health::default()]),
            watches: Mutex::new(JoinSet::new()),
        }
    }

    #[test]
    fn a_written_copy_is_known_before_its_watch_event_and_a_deleted_one_is_gone() {
        let kind = model();
        let body = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "edit", "namespace": "child",
                "labels": {keys::INHERITED_FROM: "root"},
                "annotations": {crate::api::keys::SOURCE_HASH: "h1"}},
        });
        kind.record_written_copy("child", &body);
        let state = kind.index().copy("child", "edit").cloned();
        assert_eq!(
            state.as_ref().map(|s| s.inherited_from.as_str()),
            Some("root")
        );
        assert_eq!(state.as_ref().and_then(|s| s.hash.as_deref()), Some("h1"));
        assert_eq!(state.map(|s| s.clean), Some(true));
        // What the watch then reports of the same object (no other field manager).
        let meta: kube::core::ObjectMeta =
            serde_json::from_value(body["metadata"].clone()).expect("metadata");
        assert_eq!(CopyState::written(&body), CopyState::from_meta(&meta));
        // Something that is not a copy records nothing.
        kind.record_written_copy("child", &json!({"metadata": {"name": "x"}}));
        assert!(kind.index().copy("child", "x").is_none());
        kind.record_deleted_copy("child", "edit");
        assert!(kind.index().copy("child", "edit").is_none());
    }

    fn quota(rv: &str, hard: &str, used: Option<&str>) -> DynamicObject {
        let mut object = json!({
            "apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "q", "namespace": "root", "resourceVersion": rv},
            "spec": {"hard": {"pods": hard}},
        });
        if let Some(used) = used {
            object["status"] = json!({"hard": {"pods": hard}, "used": {"pods": used}});
        }
        serde_json::from_value(object).expect("a ResourceQuota")
    }

    /// The apiserver's quota controller writes the status of every ResourceQuota, source
    /// and copy, after each change: that must not re-plan the source's subtree (in a
    /// 1,000-deep tree it kept the planner busy for half a minute after a restart), while
    /// a change of what copies carry must.
    #[test]
    fn status_writes_wake_no_planner_and_content_changes_do() {
        let kind = Arc::new(model());
        let mut forest = Forest::new();
        forest.set_namespace("root", Default::default(), false);
        forest.set_namespace("child", Default::default(), false);
        forest.set_hierarchy("child", Some("root"), false);
        let sources = SourceFeed {
            kind: kind.clone(),
            forest: Arc::new(RwLock::new(forest)),
        };
        assert_eq!(
            sources.apply(quota("1", "10", None)),
            [vec!["child", "root"]]
        );
        assert!(sources.apply(quota("2", "10", Some("3"))).is_empty());
        assert!(sources.apply(quota("3", "10", Some("4"))).is_empty());
        assert_eq!(
            sources.apply(quota("4", "20", Some("4"))),
            [vec!["child", "root"]]
        );
        assert_eq!(
            kind.index()
                .source("root", "q")
                .and_then(|q| q.metadata.resource_version.clone()),
            Some("4".to_owned())
        );

        let copies = CopyFeed { kind: kind.clone() };
        let copy = |rv: &str, hash: &str| -> PartialObjectMeta<DynamicObject> {
            serde_json::from_value(json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {"name": "q", "namespace": "child", "resourceVersion": rv,
                    "labels": {keys::INHERITED_FROM: "root"},
                    "annotations": {crate::api::keys::SOURCE_HASH: hash}},
            }))
            .expect("metadata")
        };
        assert_eq!(copies.apply(copy("5", "h1")), [vec!["child"]]);
        assert!(copies.apply(copy("6", "h1")).is_empty());
        assert_eq!(copies.apply(copy("7", "h2")), [vec!["child"]]);
    }
}
