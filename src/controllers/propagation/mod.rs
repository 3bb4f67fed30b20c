//! Propagation: every source object of a propagated kind is copied into every
//! descendant of its namespace, and copies that no longer belong are removed.
//!
//! Per kind, two watches feed a `KindIndex`: sources (full objects, label-filtered to
//! non-copies) and copies (metadata only, label-filtered to copies), so memory grows with
//! what canopy owns. A work queue of namespaces per kind runs `plan::plan_namespace` and
//! hands the difference to the writer.

pub mod availability;
pub mod conflicts;
pub mod copy;
pub mod index;
pub mod kinds;
pub mod plan;
pub mod selectors;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, PartialObjectMeta};
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, instrument, warn};

use super::queue::{Outcome, WorkQueue};
use super::writer::Writer;
use crate::api::{PropagationMode, ResourceStatus, keys};
use crate::forest::watch::ClusterState;
use crate::forest::watch_health::resilient;
use availability::{Availability, WatchHealth};
use conflicts::Conflicts;
use copy::Strip;
use index::{CopyState, KindIndex};
use kinds::KindKey;

/// Namespaces reconciled at once, per kind.
const CONCURRENCY: usize = 32;

/// How often a configured kind that cannot be resolved (its CRD not installed yet, say)
/// is looked up again through discovery.
pub const RESOLVE_RETRY: Duration = Duration::from_secs(10);

/// How often each replica brings its `propagation_kind_ready` gauge up to date.
const AVAILABILITY_TICK: Duration = Duration::from_secs(2);

/// Which of a kind's two watches.
#[derive(Clone, Copy)]
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

/// One propagated kind at run time.
struct Kind {
    key: KindKey,
    resource: ApiResource,
    mode: RwLock<PropagationMode>,
    index: RwLock<KindIndex>,
    queue: WorkQueue<String>,
    /// Sources and copies listed once: only then is a plan trustworthy.
    listed: watch::Sender<(bool, bool)>,
    /// Its conflicts have been computed from its listed index once (by the leader).
    conflicts_known: std::sync::atomic::AtomicBool,
    /// What the two watches last said, for reporting (`availability`).
    health: Mutex<[Health; 2]>,
    tasks: Mutex<JoinSet<()>>,
}

impl Kind {
    fn mode(&self) -> PropagationMode {
        *self.mode.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this kind no longer holds back `Propagation::conflicts_known`: its
    /// conflicts are known, or it cannot be used (it is reported as unavailable, and must
    /// keep no other kind's conflicts from being reported).
    fn conflicts_settled(&self) -> bool {
        self.conflicts_known
            .load(std::sync::atomic::Ordering::SeqCst)
            || matches!(self.availability(), Availability::Unavailable(_))
    }

    fn is_listed(&self) -> bool {
        *self.listed.borrow() == (true, true)
    }

    /// The watch works (an event arrived); `listed` when that event ends a list.
    fn watch_ok(&self, which: Watch, listed: bool) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let h = &mut health[which as usize];
        h.error = None;
        h.listed |= listed;
    }

    fn watch_failed(&self, which: Watch, error: String) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health[which as usize].error = Some((error, Instant::now()));
    }

    fn availability(&self) -> Availability {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let view = |h: &Health| WatchHealth {
            listed: h.listed,
            error: h
                .error
                .as_ref()
                .map(|(e, at)| (e.clone(), now.saturating_duration_since(*at))),
        };
        availability::availability(&view(&health[0]), &view(&health[1]))
    }
}

/// The propagation controller; cheap to share.
pub struct Propagation {
    client: Client,
    state: ClusterState,
    writer: Writer,
    kinds: Mutex<HashMap<KindKey, Arc<Kind>>>,
    /// Configured kinds that could not be resolved, with their mode and why; looked up
    /// again every `RESOLVE_RETRY` by `keep_kinds_available`.
    unresolved: Mutex<BTreeMap<KindKey, (PropagationMode, String)>>,
    /// Held while the set of kinds changes: configuration changes and retries of
    /// unresolved kinds must not both start the same kind.
    reconfiguring: tokio::sync::Mutex<()>,
    pub conflicts: Arc<Conflicts>,
    /// Namespaces whose HierarchyConfiguration must report changed conflicts.
    hierarchy_queue: WorkQueue<String>,
    /// True while this process may write (it holds the leader Lease).
    leader: watch::Receiver<bool>,
    /// The configuration has been read and every kind's watches started at least once.
    configured: std::sync::atomic::AtomicBool,
    /// The API resources of the kinds propagated now, sorted; `None` until the
    /// configuration has been read once (so nobody mistakes "not read yet" for "none").
    resolved: watch::Sender<Option<Vec<ApiResource>>>,
}

impl Propagation {
    pub fn new(
        client: Client,
        state: ClusterState,
        writer: Writer,
        leader: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            state,
            writer,
            kinds: Mutex::new(HashMap::new()),
            unresolved: Mutex::new(BTreeMap::new()),
            reconfiguring: tokio::sync::Mutex::new(()),
            conflicts: Arc::new(Conflicts::default()),
            hierarchy_queue: WorkQueue::new(),
            leader,
            configured: std::sync::atomic::AtomicBool::new(false),
            resolved: watch::Sender::new(None),
        })
    }

    /// The kinds propagated now (every mode), as resolved API resources; changes when
    /// the configuration adds, drops or newly resolves a kind.
    pub fn resolved_kinds(&self) -> watch::Receiver<Option<Vec<ApiResource>>> {
        self.resolved.subscribe()
    }

    /// The queue of namespaces whose HierarchyConfiguration status must be rewritten
    /// (the namespace reconciler's queue).
    pub fn hierarchy_queue(&self) -> WorkQueue<String> {
        self.hierarchy_queue.clone()
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
        group: &str,
        resource: &str,
        namespace: &str,
        source: &DynamicObject,
    ) -> Result<SourceCheck, selectors::SelectorError> {
        let annotations = source.metadata.annotations.clone().unwrap_or_default();
        let exceptions = selectors::Exceptions::parse(&annotations)?;
        let name = source.metadata.name.as_deref().unwrap_or_default();
        let key = (group.to_owned(), resource.to_owned());
        let kind = self
            .kinds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        let Some(kind) = kind else {
            return Ok(SourceCheck::Checked(Vec::new()));
        };
        // An object that never propagates has no copies to conflict: every namespace's
        // own kube-root-ca.crt, Helm release records of the same release name in a
        // parent and a child, and so on, once configmaps or secrets are configured.
        if copy::never_propagated(&kind.resource, source).is_some() {
            return Ok(SourceCheck::Checked(Vec::new()));
        }
        let mode = kind.mode();
        if matches!(mode, PropagationMode::Ignore | PropagationMode::Remove)
            || (mode == PropagationMode::AllowPropagate && !exceptions.opted_in())
        {
            return Ok(SourceCheck::Checked(Vec::new()));
        }
        if !kind.is_listed() {
            return Ok(SourceCheck::Unchecked(kinds::display(&kind.key)));
        }
        let forest = self.state.forest();
        let index = kind.index.read().unwrap_or_else(|p| p.into_inner());
        Ok(SourceCheck::Checked(
            forest
                .descendants(namespace)
                .into_iter()
                .filter(|d| index.source(d, name).is_some() && exceptions.admits(&forest, d))
                .map(str::to_owned)
                .collect(),
        ))
    }

    /// Whether the conflicts of every propagated kind are known: the configuration has
    /// been read, and every kind has listed its sources and copies and had its conflicts
    /// computed from them (see `Kind::conflicts_settled`). Until then the namespace
    /// reconciler keeps the conflicts it reported before (a restart does not flap them).
    pub fn conflicts_known(&self) -> bool {
        self.configured.load(std::sync::atomic::Ordering::SeqCst)
            && self.kinds().iter().all(|k| k.conflicts_settled())
    }

    /// The `CannotPropagateObject` lines of the objects of `namespace`, or `None` while
    /// they are not known (`conflicts_known`).
    pub fn conflict_messages_for(&self, namespace: &str) -> Option<Vec<String>> {
        self.conflicts_known()
            .then(|| self.conflicts.messages_for(namespace))
    }

    /// Computes the conflicts of `kind` for every namespace from its index alone, once
    /// it has listed: they are known before any copy is written. When this makes every
    /// kind's known, every namespace's report is looked at again.
    fn compute_conflicts(&self, kind: &Kind) {
        let mut changed = BTreeSet::new();
        {
            let forest = self.state.forest();
            let index = kind.index.read().unwrap_or_else(|e| e.into_inner());
            let mode = kind.mode();
            // Only a namespace holding objects of its own can hold a conflict.
            for namespace in index.source_namespaces() {
                let conflicts =
                    plan::conflicts_in(&forest, &kind.resource, mode, &index, namespace);
                changed.extend(self.conflicts.set(&kind.key, namespace, conflicts));
            }
        }
        kind.conflicts_known
            .store(true, std::sync::atomic::Ordering::SeqCst);
        super::metrics::global().set_conflicts(self.conflicts.count());
        self.hierarchy_queue.add_all(changed);
        if self.conflicts_known() {
            let all = self.all_namespaces();
            self.hierarchy_queue.add_all(all);
        }
    }

    /// Every existing namespace, for a pass over all of them.
    fn all_namespaces(&self) -> Vec<String> {
        self.state
            .forest()
            .namespaces()
            .map(str::to_owned)
            .collect()
    }

    fn kinds(&self) -> Vec<Arc<Kind>> {
        self.kinds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// These namespaces' place or labels changed: re-plan them for every kind.
    pub fn namespaces_changed(&self, names: &[String]) {
        for kind in self.kinds() {
            kind.queue.add_all(names.iter().cloned());
        }
    }

    /// Brings the set of propagated kinds and their modes in line with the configuration,
    /// then re-plans every namespace.
    pub async fn configuration_changed(self: &Arc<Self>) {
        let _reconfiguring = self.reconfiguring.lock().await;
        let wanted = kinds::modes(&self.state.config().resources);
        let wanted_keys: BTreeSet<KindKey> = wanted.iter().map(|(k, _)| k.clone()).collect();
        let stale: Vec<Arc<Kind>> = {
            let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
            let stale_keys: Vec<KindKey> = kinds
                .keys()
                .filter(|k| !wanted_keys.contains(k))
                .cloned()
                .collect();
            stale_keys.iter().filter_map(|k| kinds.remove(k)).collect()
        };
        for kind in stale {
            // A kind dropped from the configuration is left as it is, like `Ignore`.
            info!(group = %kind.key.0, resource = %kind.key.1, "no longer propagated");
            kind.queue.close();
            kind.tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .abort_all();
        }
        for (key, mode) in wanted {
            let existing = self
                .kinds
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned();
            match existing {
                Some(kind) => {
                    let changed = {
                        let mut current = kind.mode.write().unwrap_or_else(|p| p.into_inner());
                        std::mem::replace(&mut *current, mode) != mode
                    };
                    if changed {
                        info!(group = %key.0, resource = %key.1, ?mode, "propagation mode changed");
                    }
                }
                None => match kinds::resolve(&self.client, &key).await {
                    Ok(resource) => {
                        self.unresolved_mut().remove(&key);
                        self.start_kind(key, resource, mode);
                    }
                    Err(err) => {
                        warn!(kind = %kinds::display(&key), error = %err, "cannot propagate this kind; retrying");
                        self.unresolved_mut().insert(key, (mode, err.to_string()));
                    }
                },
            }
        }
        self.unresolved_mut()
            .retain(|key, _| wanted_keys.contains(key));
        let all = self.all_namespaces();
        self.namespaces_changed(&all);
        self.configured
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.publish_resolved();
    }

    fn unresolved_mut(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<KindKey, (PropagationMode, String)>> {
        self.unresolved.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks up again, through discovery, every configured kind that could not be
    /// resolved, and starts propagating those that now can (a CRD installed after it was
    /// configured). Returns how many started.
    pub async fn retry_unresolved(self: &Arc<Self>) -> usize {
        let _reconfiguring = self.reconfiguring.lock().await;
        let pending: Vec<(KindKey, PropagationMode)> = self
            .unresolved_mut()
            .iter()
            .map(|(key, (mode, _))| (key.clone(), *mode))
            .collect();
        let mut started = 0;
        for (key, mode) in pending {
            match kinds::resolve(&self.client, &key).await {
                Ok(resource) => {
                    self.unresolved_mut().remove(&key);
                    info!(kind = %kinds::display(&key), "the kind is served now");
                    self.start_kind(key.clone(), resource, mode);
                    let kind = self
                        .kinds
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&key)
                        .cloned();
                    let all = self.all_namespaces();
                    if let Some(kind) = kind {
                        kind.queue.add_all(all);
                    }
                    started += 1;
                }
                Err(err) => {
                    debug!(kind = %kinds::display(&key), error = %err, "still cannot propagate this kind");
                    if let Some(entry) = self.unresolved_mut().get_mut(&key) {
                        entry.1 = err.to_string();
                    }
                }
            }
        }
        if started > 0 {
            self.publish_resolved();
        }
        started
    }

    /// Whether some configured kind could not be resolved.
    pub fn has_unresolved(&self) -> bool {
        !self.unresolved_mut().is_empty()
    }

    /// Every configured kind and whether it can be used now, sorted by kind.
    pub fn availability(&self) -> Vec<(KindKey, Availability)> {
        let mut out: Vec<(KindKey, Availability)> = self
            .kinds()
            .iter()
            .map(|k| (k.key.clone(), k.availability()))
            .collect();
        out.extend(
            self.unresolved_mut()
                .iter()
                .map(|(key, (_, why))| (key.clone(), Availability::Unavailable(why.clone()))),
        );
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Tells the `resolved_kinds` subscribers about the kinds propagated now, if that
    /// changed.
    fn publish_resolved(&self) {
        let mut resolved: Vec<ApiResource> =
            self.kinds().iter().map(|k| k.resource.clone()).collect();
        resolved.sort_by(|a, b| (&a.group, &a.plural).cmp(&(&b.group, &b.plural)));
        // Only a real change wakes the subscribers: this runs at every relist.
        self.resolved.send_if_modified(|current| {
            let changed = current.as_ref() != Some(&resolved);
            if changed {
                *current = Some(resolved);
            }
            changed
        });
    }

    fn start_kind(self: &Arc<Self>, key: KindKey, resource: ApiResource, mode: PropagationMode) {
        info!(group = %key.0, resource = %key.1, ?mode, "propagating");
        let (listed, _) = watch::channel((false, false));
        let kind = Arc::new(Kind {
            key: key.clone(),
            resource,
            mode: RwLock::new(mode),
            index: RwLock::new(KindIndex::default()),
            queue: WorkQueue::new(),
            listed,
            conflicts_known: std::sync::atomic::AtomicBool::new(false),
            health: Mutex::new([Health::default(), Health::default()]),
            tasks: Mutex::new(JoinSet::new()),
        });
        {
            let mut tasks = kind.tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks.spawn(watch_sources(self.clone(), kind.clone()));
            tasks.spawn(watch_copies(self.clone(), kind.clone()));
            tasks.spawn(run_workers(self.clone(), kind.clone()));
        }
        self.kinds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, kind);
    }

    /// Namespaces waiting to be re-planned, over all kinds.
    pub fn queue_depth(&self) -> usize {
        self.kinds().iter().map(|k| k.queue.len()).sum()
    }

    /// Sources and copies per kind, for `CanopyConfiguration.status.resources`.
    pub fn status(&self) -> Vec<ResourceStatus> {
        let mut out: Vec<ResourceStatus> = self
            .kinds()
            .iter()
            .map(|kind| {
                let index = kind.index.read().unwrap_or_else(|p| p.into_inner());
                ResourceStatus {
                    group: kind.key.0.clone(),
                    resource: kind.key.1.clone(),
                    mode: kind.mode(),
                    sources: u32::try_from(index.source_count()).unwrap_or(u32::MAX),
                    copies: u32::try_from(index.copy_count()).unwrap_or(u32::MAX),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.group, &a.resource).cmp(&(&b.group, &b.resource)));
        out
    }

    /// Whether the configuration has been read and no kind is still in its first list.
    /// A kind that cannot be used (refused by RBAC, not served) does not hold this up:
    /// see `availability::settled`.
    pub fn is_settled(&self) -> bool {
        self.configured.load(std::sync::atomic::Ordering::SeqCst)
            && availability::settled(
                self.kinds()
                    .iter()
                    .map(|k| k.availability())
                    .collect::<Vec<_>>()
                    .iter(),
            )
    }

    fn strip(&self) -> Strip {
        let config = self.state.config();
        Strip {
            labels: config.strip_labels,
            annotations: config.strip_annotations,
        }
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

/// On every replica: retries unresolved kinds every `RESOLVE_RETRY` and keeps the
/// `propagation_kind_ready` gauge up to date. Runs until dropped.
pub async fn keep_kinds_available(p: Arc<Propagation>) {
    let mut tick = tokio::time::interval(AVAILABILITY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_retry = Instant::now();
    loop {
        tick.tick().await;
        if p.has_unresolved() && last_retry.elapsed() >= RESOLVE_RETRY {
            last_retry = Instant::now();
            p.retry_unresolved().await;
        }
        let ready: Vec<(KindKey, bool)> = p
            .availability()
            .into_iter()
            .map(|(key, a)| (key, a == Availability::Ready))
            .collect();
        super::metrics::global().set_kinds_ready(&ready);
    }
}

/// The namespaces whose copies depend on objects in `namespace`: its descendants, and
/// itself (a local object there blocks a copy).
fn affected_by(state: &ClusterState, namespace: &str) -> Vec<String> {
    state
        .forest()
        .subtree(namespace)
        .into_iter()
        .map(str::to_owned)
        .collect()
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

async fn watch_sources(p: Arc<Propagation>, kind: Arc<Kind>) {
    let api: Api<DynamicObject> = Api::all_with(p.client.clone(), &kind.resource);
    let config = watcher::Config::default()
        .labels(&format!("!{}", keys::INHERITED_FROM))
        .any_semantic();
    let mut stream = std::pin::pin!(resilient(
        watch_name("sources", &kind.resource),
        watcher::watcher(api, config)
    ));
    let mut relist: Vec<DynamicObject> = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(obj)) | Ok(Event::Delete(obj)) if obj.namespace().is_none() => {}
            Ok(Event::Apply(obj)) => {
                kind.watch_ok(Watch::Sources, false);
                let ns = obj.namespace().unwrap_or_default();
                kind.index
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .set_source(&ns, obj);
                kind.queue.add_all(affected_by(&p.state, &ns));
            }
            Ok(Event::Delete(obj)) => {
                kind.watch_ok(Watch::Sources, false);
                let ns = obj.namespace().unwrap_or_default();
                kind.index
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove_source(&ns, &obj.name_any());
                kind.queue.add_all(affected_by(&p.state, &ns));
            }
            Ok(Event::Init) => relist.clear(),
            Ok(Event::InitApply(obj)) => relist.push(obj),
            Ok(Event::InitDone) => {
                let mut namespaces = BTreeSet::new();
                {
                    let mut index = kind.index.write().unwrap_or_else(|e| e.into_inner());
                    namespaces.extend(index.source_namespaces().cloned());
                    index.clear_sources();
                    for obj in relist.drain(..) {
                        if let Some(ns) = obj.namespace() {
                            namespaces.insert(ns.clone());
                            index.set_source(&ns, obj);
                        }
                    }
                }
                for ns in namespaces {
                    kind.queue.add_all(affected_by(&p.state, &ns));
                }
                kind.watch_ok(Watch::Sources, true);
                kind.listed.send_modify(|l| l.0 = true);
            }
            Err(err) => {
                debug!(kind = %kinds::display(&kind.key), error = %err, "source watch failed; retrying");
                kind.watch_failed(Watch::Sources, err.to_string());
            }
        }
    }
}

async fn watch_copies(p: Arc<Propagation>, kind: Arc<Kind>) {
    // Metadata only: a copy's content is known from its hash annotation.
    let api: Api<PartialObjectMeta<DynamicObject>> =
        Api::all_with(p.client.clone(), &kind.resource);
    let config = watcher::Config::default()
        .labels(keys::INHERITED_FROM)
        .any_semantic();
    let mut stream = std::pin::pin!(resilient(
        watch_name("copies", &kind.resource),
        watcher::watcher(api, config)
    ));
    let mut relist: Vec<(String, String, CopyState)> = Vec::new();
    let state_of = |obj: &PartialObjectMeta<DynamicObject>| {
        let ns = obj.metadata.namespace.clone()?;
        let name = obj.metadata.name.clone()?;
        Some((ns, name, CopyState::from_meta(&obj.metadata)?))
    };
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(obj)) => {
                kind.watch_ok(Watch::Copies, false);
                if let Some((ns, name, state)) = state_of(&obj) {
                    kind.index
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .set_copy(&ns, &name, state);
                    kind.queue.add(ns);
                }
            }
            Ok(Event::Delete(obj)) => {
                kind.watch_ok(Watch::Copies, false);
                if let (Some(ns), Some(name)) =
                    (obj.metadata.namespace.clone(), obj.metadata.name.clone())
                {
                    kind.index
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove_copy(&ns, &name);
                    kind.queue.add(ns);
                }
            }
            Ok(Event::Init) => relist.clear(),
            Ok(Event::InitApply(obj)) => relist.extend(state_of(&obj)),
            Ok(Event::InitDone) => {
                let mut namespaces = BTreeSet::new();
                {
                    let mut index = kind.index.write().unwrap_or_else(|e| e.into_inner());
                    namespaces.extend(index.copy_namespaces().cloned());
                    index.clear_copies();
                    for (ns, name, state) in relist.drain(..) {
                        index.set_copy(&ns, &name, state);
                        namespaces.insert(ns);
                    }
                }
                kind.queue.add_all(namespaces);
                kind.watch_ok(Watch::Copies, true);
                kind.listed.send_modify(|l| l.1 = true);
            }
            Err(err) => {
                debug!(kind = %kinds::display(&kind.key), error = %err, "copy watch failed; retrying");
                kind.watch_failed(Watch::Copies, err.to_string());
            }
        }
    }
}

async fn run_workers(p: Arc<Propagation>, kind: Arc<Kind>) {
    // Every replica indexes; only the leader writes.
    if p.leader.clone().wait_for(|l| *l).await.is_err() {
        return;
    }
    // No decision on a half-known cluster: a copy not yet listed would be written again.
    let mut listed = kind.listed.subscribe();
    let mut forest_ready = p.state.ready.clone();
    if listed.wait_for(|l| *l == (true, true)).await.is_err()
        || forest_ready.wait_for(|r| *r).await.is_err()
    {
        return;
    }
    p.compute_conflicts(&kind);
    let queue = kind.queue.clone();
    queue
        .run(CONCURRENCY, move |namespace| {
            let (p, kind) = (p.clone(), kind.clone());
            async move { super::metrics::timed("propagation", reconcile(&p, &kind, namespace)).await }
        })
        .await;
}

#[instrument(skip(p, kind), fields(resource = %kind.key.1))]
async fn reconcile(p: &Propagation, kind: &Kind, namespace: String) -> Outcome {
    let plan = {
        let forest = p.state.forest();
        let index = kind.index.read().unwrap_or_else(|e| e.into_inner());
        plan::plan_namespace(
            &forest,
            &kind.resource,
            kind.mode(),
            &index,
            &namespace,
            &p.strip(),
        )
    };
    let changed = p
        .conflicts
        .set(&kind.key, &namespace, plan.conflicts.clone());
    p.hierarchy_queue.add_all(changed);
    super::metrics::global().set_conflicts(p.conflicts.count());
    if plan.is_empty() {
        return Outcome::Success;
    }
    debug!(%namespace, writes = plan.writes.len(), deletes = plan.deletes.len(), "propagating");
    let mut outcome = Outcome::Success;
    for write in &plan.writes {
        if let Err(err) = p
            .writer
            .apply_copy(&kind.resource, &namespace, &write.name, &write.object)
            .await
        {
            if err.is_namespace_gone() {
                return Outcome::Success;
            }
            if err.is_invalid() {
                // An immutable field changed in the source: replace the copy (delete now,
                // written again on the retry), as HNC does for a RoleBinding's roleRef.
                debug!(%namespace, name = %write.name, "replacing a copy whose immutable fields changed");
                let _ = p
                    .writer
                    .delete_copy(&kind.resource, &namespace, &write.name)
                    .await;
                outcome = Outcome::Retry;
                continue;
            }
            warn!(%namespace, name = %write.name, error = %err, "cannot write copy");
            outcome = Outcome::Retry;
        }
    }
    for name in &plan.deletes {
        if let Err(err) = p.writer.delete_copy(&kind.resource, &namespace, name).await {
            warn!(%namespace, %name, error = %err, "cannot delete copy");
            outcome = Outcome::Retry;
        }
    }
    outcome
}
