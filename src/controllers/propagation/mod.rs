//! Propagation: every source object of a propagated kind is copied into every
//! descendant of its namespace, and copies that no longer belong are removed.
//!
//! This controller decides which kinds propagate (the configuration, resolved through
//! discovery) and starts and stops them in the model (`forest::propagated`), which indexes
//! each kind's sources and copies. Per kind, a work queue of the namespaces the model
//! reports dirty runs `plan::plan_namespace` and hands its `Op`s to the writer.

pub mod availability;
pub mod conflicts;
pub mod copy;
pub mod permissions;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kube::Client;
use kube::core::ApiResource;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, instrument, warn};

use super::ops::Op;
use super::queue::{Outcome, WorkQueue};
use super::writer::Writer;
use crate::api::{PropagationMode, ResourceStatus};
use crate::forest::propagated::kinds;
use crate::forest::propagated::{Availability, KindKey, KindModel, PropagatedKinds};
use crate::forest::watch::ClusterState;
use conflicts::Conflicts;
use copy::{PreparedCopies, Strip};

/// Namespaces reconciled at once, per kind.
const CONCURRENCY: usize = 32;

/// How often a configured kind that cannot be resolved (its CRD not installed yet, say)
/// is looked up again through discovery.
pub const RESOLVE_RETRY: Duration = Duration::from_secs(10);

/// How often each replica brings its `propagation_kind_ready` gauge up to date.
const AVAILABILITY_TICK: Duration = Duration::from_secs(2);

/// How often canopy asks again whether it may use every propagated kind (a grant or a
/// revocation shows within this time); a kind that starts is checked at once.
const PERMISSIONS_RECHECK: Duration = Duration::from_secs(30);

/// One propagated kind at run time: its part of the model, its queue of namespaces to
/// re-plan, and its workers.
struct Kind {
    model: Arc<KindModel>,
    queue: WorkQueue<String>,
    /// Its conflicts have been computed from its listed index once (by the leader).
    conflicts_known: AtomicBool,
    workers: Mutex<JoinSet<()>>,
    /// Its sources' copies, prepared once per version of each source.
    prepared: PreparedCopies,
}

impl Kind {
    /// Whether this kind no longer holds back `Propagation::conflicts_known`: its
    /// conflicts are known, or it cannot be used (it is reported as unavailable, and must
    /// keep no other kind's conflicts from being reported).
    fn conflicts_settled(&self) -> bool {
        self.conflicts_known.load(Ordering::SeqCst)
            || matches!(self.model.availability(), Availability::Unavailable(_))
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
    /// The API resources of the kinds propagated now, sorted; `None` until the
    /// configuration has been read once (so nobody mistakes "not read yet" for "none").
    resolved: watch::Sender<Option<Vec<ApiResource>>>,
    /// Per resolved kind, the verbs of `permissions::VERBS` canopy may not use on it, as
    /// last checked.
    missing_verbs: Mutex<BTreeMap<KindKey, Vec<&'static str>>>,
    /// A kind started since the permissions were last checked.
    permissions_stale: AtomicBool,
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
            resolved: watch::Sender::new(None),
            missing_verbs: Mutex::new(BTreeMap::new()),
            permissions_stale: AtomicBool::new(true),
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

    /// Whether the conflicts of every propagated kind are known: the configuration has
    /// been read, and every kind has listed its sources and copies and had its conflicts
    /// computed from them (see `Kind::conflicts_settled`). Until then the namespace
    /// reconciler keeps the conflicts it reported before (a restart does not flap them).
    pub fn conflicts_known(&self) -> bool {
        self.models().is_configured() && self.kinds().iter().all(|k| k.conflicts_settled())
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
            let model = &kind.model;
            let forest = self.state.forest();
            let index = model.index();
            let mode = model.mode();
            // Only a namespace holding objects of its own can hold a conflict.
            for namespace in index.source_namespaces() {
                let conflicts =
                    plan::conflicts_in(&forest, &model.resource, mode, &index, namespace);
                changed.extend(self.conflicts.set(&model.key, namespace, conflicts));
            }
        }
        kind.conflicts_known.store(true, Ordering::SeqCst);
        self.writer.metrics().set_conflicts(self.conflicts.count());
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

    fn models(&self) -> &PropagatedKinds {
        &self.state.kinds
    }

    fn kinds(&self) -> Vec<Arc<Kind>> {
        self.kinds.lock().values().cloned().collect()
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
            let mut kinds = self.kinds.lock();
            let stale_keys: Vec<KindKey> = kinds
                .keys()
                .filter(|k| !wanted_keys.contains(k))
                .cloned()
                .collect();
            stale_keys.iter().filter_map(|k| kinds.remove(k)).collect()
        };
        for kind in stale {
            // A kind dropped from the configuration is left as it is, like `Ignore`.
            let key = &kind.model.key;
            info!(group = %key.0, resource = %key.1, "no longer propagated");
            self.models().stop(key);
            kind.queue.close();
            kind.workers.lock().abort_all();
        }
        for (key, mode) in wanted {
            let existing = self.kinds.lock().get(&key).cloned();
            match existing {
                Some(kind) => {
                    if kind.model.set_mode(mode) {
                        info!(group = %key.0, resource = %key.1, ?mode, "propagation mode changed");
                    }
                }
                None => match kinds::resolve(&self.client, &key).await {
                    Ok(resource) => {
                        self.unresolved_mut().remove(&key);
                        self.check_kind_permissions(&key, &resource).await;
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
        self.models().set_configured();
        self.publish_resolved();
    }

    fn unresolved_mut(
        &self,
    ) -> parking_lot::MutexGuard<'_, BTreeMap<KindKey, (PropagationMode, String)>> {
        self.unresolved.lock()
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
                    self.check_kind_permissions(&key, &resource).await;
                    self.start_kind(key.clone(), resource, mode);
                    let kind = self.kinds.lock().get(&key).cloned();
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

    /// Every configured kind and whether it can be used now, sorted by kind. A kind
    /// canopy may not use (RBAC) is unavailable with the fix, whatever its watches say.
    pub fn availability(&self) -> Vec<(KindKey, Availability)> {
        let missing = self.missing_verbs.lock().clone();
        let mut out: Vec<(KindKey, Availability)> = self
            .kinds()
            .iter()
            .map(|k| {
                let key = k.model.key.clone();
                let availability = match missing.get(&key) {
                    Some(verbs) if !verbs.is_empty() => {
                        Availability::Unavailable(permissions::forbidden_message(&key, verbs))
                    }
                    _ => k.model.availability(),
                };
                (key, availability)
            })
            .collect();
        out.extend(
            self.unresolved_mut()
                .iter()
                .map(|(key, (_, why))| (key.clone(), Availability::Unavailable(why.clone()))),
        );
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Asks which verbs canopy may not use on a kind about to start, so that its first
    /// report (a refused list would otherwise come first) names the missing rights and
    /// the fix.
    async fn check_kind_permissions(&self, key: &KindKey, resource: &ApiResource) {
        match permissions::missing_verbs(&self.client, resource).await {
            Ok(missing) => {
                self.missing_verbs.lock().insert(key.clone(), missing);
            }
            Err(err) => {
                debug!(kind = %kinds::display(key), error = %err, "cannot check canopy's permissions on a kind");
            }
        }
    }

    /// Asks the apiserver which verbs canopy may not use on each propagated kind, and
    /// keeps the answers for `availability`. A kind whose check fails keeps its last
    /// answer.
    pub async fn check_permissions(&self) {
        self.permissions_stale.store(false, Ordering::SeqCst);
        let kinds: Vec<(KindKey, ApiResource)> = self
            .kinds()
            .iter()
            .map(|k| (k.model.key.clone(), k.model.resource.clone()))
            .collect();
        let mut answers = BTreeMap::new();
        for (key, resource) in &kinds {
            match permissions::missing_verbs(&self.client, resource).await {
                Ok(missing) => {
                    answers.insert(key.clone(), missing);
                }
                Err(err) => {
                    debug!(kind = %kinds::display(key), error = %err, "cannot check canopy's permissions on a kind");
                    if let Some(last) = self.missing_verbs.lock().get(key) {
                        answers.insert(key.clone(), last.clone());
                    }
                }
            }
        }
        *self.missing_verbs.lock() = answers;
    }

    /// Tells the `resolved_kinds` subscribers about the kinds propagated now, if that
    /// changed.
    fn publish_resolved(&self) {
        let mut resolved: Vec<ApiResource> = self
            .kinds()
            .iter()
            .map(|k| k.model.resource.clone())
            .collect();
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
        let queue = WorkQueue::new();
        let dirty = {
            let queue = queue.clone();
            move |namespaces: Vec<String>| queue.add_all(namespaces)
        };
        let model = self.models().start(
            &self.client,
            self.state.forest.clone(),
            key.clone(),
            resource,
            mode,
            dirty,
        );
        let kind = Arc::new(Kind {
            model,
            queue,
            conflicts_known: AtomicBool::new(false),
            workers: Mutex::new(JoinSet::new()),
            prepared: PreparedCopies::default(),
        });
        self.permissions_stale.store(true, Ordering::SeqCst);
        kind.workers
            .lock()
            .spawn(run_workers(self.clone(), kind.clone()));
        self.kinds.lock().insert(key, kind);
    }

    /// Stops every kind's watches and workers, for a clean shutdown: they run on tasks of
    /// their own, which would otherwise outlive the manager and report its connections
    /// closing as watch failures.
    pub fn stop(&self) {
        let kinds: Vec<Arc<Kind>> = self.kinds.lock().drain().map(|(_, kind)| kind).collect();
        for kind in kinds {
            self.models().stop(&kind.model.key);
            kind.queue.close();
            kind.workers.lock().abort_all();
        }
    }

    /// Namespaces waiting to be re-planned, over all kinds.
    pub fn queue_depth(&self) -> usize {
        self.kinds().iter().map(|k| k.queue.len()).sum()
    }

    /// Sources and copies per configured kind, for `CanopyConfiguration.status.resources`; objects
    /// in excluded namespaces (`kube-system`'s Roles, say) take no part in propagation and
    /// are not counted.
    pub fn status(&self) -> Vec<ResourceStatus> {
        let forest = self.state.forest();
        let counted = |namespace: &str| !forest.is_excluded(namespace);
        let mut out: Vec<ResourceStatus> = self
            .models()
            .all()
            .iter()
            .map(|kind| {
                let (sources, copies) = kind.counts(counted);
                ResourceStatus {
                    group: kind.key.0.clone(),
                    resource: kind.key.1.clone(),
                    mode: kind.mode(),
                    sources: u32::try_from(sources).unwrap_or(u32::MAX),
                    copies: u32::try_from(copies).unwrap_or(u32::MAX),
                }
            })
            .collect();
        // A kind that cannot be resolved is configured too: listed, with nothing counted
        // (the BadConfiguration condition says why).
        out.extend(
            self.unresolved_mut()
                .iter()
                .map(|((group, resource), (mode, _))| ResourceStatus {
                    group: group.clone(),
                    resource: resource.clone(),
                    mode: *mode,
                    sources: 0,
                    copies: 0,
                }),
        );
        out.sort_by(|a, b| (&a.group, &a.resource).cmp(&(&b.group, &b.resource)));
        out
    }

    /// Whether the configuration has been read and no kind is still in its first list.
    pub fn is_settled(&self) -> bool {
        self.models().is_settled()
    }

    fn strip(&self) -> Strip {
        let config = self.state.config();
        Strip {
            labels: config.strip_labels,
            annotations: config.strip_annotations,
        }
    }
}

/// On every replica: retries unresolved kinds every `RESOLVE_RETRY` and keeps the
/// `propagation_kind_ready` gauge up to date. Runs until dropped.
pub async fn keep_kinds_available(p: Arc<Propagation>) {
    let mut tick = tokio::time::interval(AVAILABILITY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_retry = Instant::now();
    let mut last_check = Instant::now();
    loop {
        tick.tick().await;
        if p.has_unresolved() && last_retry.elapsed() >= RESOLVE_RETRY {
            last_retry = Instant::now();
            p.retry_unresolved().await;
        }
        if p.permissions_stale.load(Ordering::SeqCst) || last_check.elapsed() >= PERMISSIONS_RECHECK
        {
            last_check = Instant::now();
            p.check_permissions().await;
        }
        let ready: Vec<(KindKey, bool)> = p
            .availability()
            .into_iter()
            .map(|(key, a)| (key, a == Availability::Ready))
            .collect();
        p.writer.metrics().set_kinds_ready(&ready);
    }
}

async fn run_workers(p: Arc<Propagation>, kind: Arc<Kind>) {
    // Every replica indexes; only the leader writes.
    if p.leader.clone().wait_for(|l| *l).await.is_err() {
        return;
    }
    // No decision on a half-known cluster: a copy not yet listed would be written again.
    let mut forest_ready = p.state.ready.clone();
    if kind.model.wait_listed().await.is_err() || forest_ready.wait_for(|r| *r).await.is_err() {
        return;
    }
    p.compute_conflicts(&kind);
    let queue = kind.queue.clone();
    queue
        .run(CONCURRENCY, move |namespace| {
            let (p, kind) = (p.clone(), kind.clone());
            async move {
                let metrics = p.writer.metrics().clone();
                super::queue::timed(&metrics, "propagation", reconcile(&p, &kind, namespace)).await
            }
        })
        .await;
}

#[instrument(skip(p, kind), fields(resource = %kind.model.key.1))]
async fn reconcile(p: &Propagation, kind: &Kind, namespace: String) -> Outcome {
    let model = &kind.model;
    let plan = {
        let forest = p.state.forest();
        plan::plan_namespace(
            &forest,
            &model.resource,
            model.mode(),
            &model.index(),
            &namespace,
            &p.strip(),
            &kind.prepared,
        )
    };
    let changed = p
        .conflicts
        .set(&model.key, &namespace, plan.conflicts.clone());
    p.hierarchy_queue.add_all(changed);
    p.writer.metrics().set_conflicts(p.conflicts.count());
    if plan.is_empty() {
        return Outcome::Success;
    }
    debug!(%namespace, writes = plan.writes.len(), deletes = plan.deletes.len(), "propagating");
    let mut outcome = Outcome::Success;
    // Every copy is tried, even after one fails: one bad source must not hold back the
    // others. What a failure means is decided by `plan::after_failure`.
    for op in plan::copy_ops(&model.resource, &namespace, plan) {
        let Err(err) = p.writer.execute(op.clone()).await else {
            match &op {
                Op::ApplyCopy {
                    namespace, body, ..
                } => model.record_written_copy(namespace, body),
                Op::DeleteCopy {
                    namespace, name, ..
                } => model.record_deleted_copy(namespace, name),
                _ => {}
            }
            continue;
        };
        match plan::after_failure(op, plan::Failure::of(&err)) {
            plan::Recovery::NamespaceGone => return Outcome::Success,
            plan::Recovery::Replace(delete) => {
                debug!(%namespace, error = %err, "replacing a copy whose immutable fields changed");
                // Best effort: the retry writes the copy again either way.
                let _ = p.writer.execute(*delete).await;
            }
            // Refused by RBAC: the CanopyConfiguration's condition names the kind and the
            // fix, once; a WARN per namespace and retry would only bury it.
            plan::Recovery::Retry if err.is_forbidden() => {
                debug!(%namespace, error = %err, "cannot write copy");
            }
            plan::Recovery::Retry => warn!(%namespace, error = %err, "cannot write copy"),
        }
        outcome = Outcome::Retry;
    }
    outcome
}
