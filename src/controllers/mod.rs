//! Reconcilers: each decides the desired state of one object from the Forest and hands
//! the difference to the writer.

pub mod anchor;
mod conditions;
mod configuration_status;
pub mod hierarchy;
pub mod metrics;
pub mod namespace_labels;
pub mod ops;
pub mod propagation;
pub mod queue;
pub mod quota;
pub mod tenant;
pub mod tenant_metrics;
pub mod volume;
pub mod webhook_rules;
pub mod write_bounds;
pub mod writer;

use std::sync::Arc;

use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use tokio::sync::mpsc;

use crate::api::SubnamespaceAnchor;
use crate::forest::watch::{Change, ClusterState};
use propagation::Propagation;
use queue::WorkQueue;
use writer::Writer;

/// How many objects of each kind are reconciled at once.
const CONCURRENCY: usize = 16;

/// Runs the namespace and anchor reconcilers until `changes` ends. Waits for the first
/// full list of every watched kind before deciding anything, so no decision is made on a
/// half-known cluster.
///
/// Reconcilers run only while `leader` is true (this replica holds the Lease); until
/// then, and in a webhooks-only manager, it only keeps propagation's watchers in step with
/// the configuration, for the webhooks to read. The leader also keeps the rules of the
/// `propagated.canopy.dev` webhook in the ValidatingWebhookConfiguration
/// `webhook_configuration` in step with the propagated kinds.
pub async fn run(
    client: Client,
    state: ClusterState,
    writer: Writer,
    propagation: Arc<Propagation>,
    mut changes: mpsc::UnboundedReceiver<Change>,
    mut leader: tokio::sync::watch::Receiver<bool>,
    webhook_configuration: String,
) {
    let mut ready = state.ready.clone();
    if ready.wait_for(|r| *r).await.is_err() {
        return;
    }
    let namespaces = propagation.hierarchy_queue();
    let anchors: WorkQueue<ObjectRef<SubnamespaceAnchor>> = WorkQueue::new();
    let tenant_queue: WorkQueue<String> = WorkQueue::new();
    let volume_queue: WorkQueue<String> = WorkQueue::new();
    volume_queue.add_all(state.volumes.state().iter().map(|v| v.name_any()));
    tenant_queue.add_all(state.tenants.state().iter().map(|t| t.name_any()));
    Box::pin(propagation.configuration_changed()).await;
    enqueue_all(&state, &namespaces, &anchors);

    let dispatch = {
        let (state, namespaces, anchors, propagation) = (
            state.clone(),
            namespaces.clone(),
            anchors.clone(),
            propagation.clone(),
        );
        let tenants = tenant_queue.clone();
        let volumes = volume_queue.clone();
        async move {
            while let Some(change) = changes.recv().await {
                match change {
                    Change::Namespaces(names) => {
                        propagation.namespaces_changed(&names);
                        tenants.add_all(tenants_of(&state, &names));
                        namespaces.add_all(names);
                    }
                    Change::Anchor { namespace, name } => {
                        anchors.add(ObjectRef::new(&name).within(&namespace));
                    }
                    Change::Tenant(name) => {
                        // Its Pod Security level may have changed: its namespaces' labels.
                        let members: Vec<String> = state
                            .forest()
                            .tenant_namespaces(&name)
                            .into_iter()
                            .collect();
                        namespaces.add_all(members);
                        tenants.add(name);
                    }
                    Change::Volume(name) => volumes.add(name),
                    Change::All => {
                        Box::pin(propagation.configuration_changed()).await;
                        enqueue_all(&state, &namespaces, &anchors);
                        tenants.add_all(
                            state
                                .forest()
                                .tenants()
                                .map(str::to_owned)
                                .collect::<Vec<_>>(),
                        );
                        tenants.add_all(state.tenants.state().iter().map(|t| t.name_any()));
                    }
                }
            }
            namespaces.close();
            anchors.close();
            tenants.close();
            volumes.close();
        }
    };
    // On every replica: unresolved kinds are looked up again, and the kind-ready gauge
    // is kept, for as long as the configuration is followed.
    let kinds = propagation::keep_kinds_available(propagation.clone());
    let dispatch = tokio::spawn(async move {
        tokio::select! {
            () = dispatch => {}
            () = kinds => {}
        }
    });
    if leader.wait_for(|l| *l).await.is_err() {
        let _ = dispatch.await;
        return;
    }
    // A new leader may find work its predecessor left: look at everything once.
    enqueue_all(&state, &namespaces, &anchors);
    tenant_queue.add_all(state.tenants.state().iter().map(|t| t.name_any()));
    let dispatch = async move {
        let _ = dispatch.await;
    };
    let rules = webhook_rules::run(
        client.clone(),
        writer.clone(),
        state.clone(),
        propagation.clone(),
        webhook_configuration,
    );
    let status = configuration_status::run(client, writer.clone(), propagation.clone());
    let depths = {
        let (namespaces, anchors, tenants, propagation) = (
            namespaces.clone(),
            anchors.clone(),
            tenant_queue.clone(),
            propagation.clone(),
        );
        let m = writer.metrics().clone();
        async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                m.set_queue_depth("namespace", namespaces.len());
                m.set_queue_depth("anchor", anchors.len());
                m.set_queue_depth("tenant", tenants.len());
                m.set_queue_depth("propagation", propagation.queue_depth());
            }
        }
    };
    let namespace_workers = {
        let (state, writer) = (state.clone(), writer.clone());
        let propagation = propagation.clone();
        namespaces.run(CONCURRENCY, move |name| {
            let (state, writer, propagation) = (state.clone(), writer.clone(), propagation.clone());
            async move {
                queue::timed(
                    writer.metrics(),
                    "namespace",
                    hierarchy::reconcile_namespace(&state, &writer, &propagation, name),
                )
                .await
            }
        })
    };
    let anchor_workers = {
        let (state, writer) = (state.clone(), writer.clone());
        let budget = Arc::new(anchor::NamespaceBudget::new());
        anchors.run(CONCURRENCY, move |key| {
            let (state, writer, budget) = (state.clone(), writer.clone(), budget.clone());
            async move {
                let reconcile = anchor::reconcile_anchor(&state, &writer, &budget, key);
                queue::timed(writer.metrics(), "anchor", reconcile).await
            }
        })
    };
    let volume_workers = {
        let (state, writer) = (state.clone(), writer.clone());
        volume_queue.run(CONCURRENCY, move |name| {
            let (state, writer) = (state.clone(), writer.clone());
            async move {
                let reconcile = volume::reconcile_volume(&state, &writer, name);
                queue::timed(writer.metrics(), "volume", reconcile).await
            }
        })
    };
    let tenant_workers = tenant_queue.run(CONCURRENCY, move |name| {
        let (state, writer) = (state.clone(), writer.clone());
        async move {
            let reconcile = tenant::reconcile_tenant(&state, &writer, name);
            queue::timed(writer.metrics(), "tenant", reconcile).await
        }
    });
    tokio::join!(
        dispatch,
        namespace_workers,
        anchor_workers,
        tenant_workers,
        volume_workers,
        depths,
        status,
        rules
    );
}

/// The Tenants whose status lists any of `names`: by the label a namespace carries now,
/// and by the tree it is in now (they differ while a namespace moves between tenants).
fn tenants_of(state: &ClusterState, names: &[String]) -> Vec<String> {
    let forest = state.forest();
    let mut tenants: Vec<String> = names
        .iter()
        .flat_map(|ns| {
            let labelled = forest.get(ns).and_then(|s| s.tenant.clone());
            let placed = forest.tenant_for(ns).map(str::to_owned);
            labelled.into_iter().chain(placed)
        })
        .collect();
    tenants.sort();
    tenants.dedup();
    tenants
}

fn enqueue_all(
    state: &ClusterState,
    namespaces: &WorkQueue<String>,
    anchors: &WorkQueue<ObjectRef<SubnamespaceAnchor>>,
) {
    let names: Vec<String> = state.forest().namespaces().map(str::to_owned).collect();
    namespaces.add_all(names);
    namespaces.add_all(hierarchy::namespaces_with_hierarchy(state));
    anchors.add_all(
        state
            .anchors
            .state()
            .iter()
            .map(|a| ObjectRef::from(a.as_ref())),
    );
}
