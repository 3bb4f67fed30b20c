//! Reconcilers: each decides the desired state of one object from the Forest and hands
//! the difference to the writer.

pub mod anchor;
mod conditions;
pub mod hierarchy;
pub mod queue;
pub mod writer;

use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;

use crate::api::SubnamespaceAnchor;
use crate::forest::watch::{Change, ClusterState};
use queue::WorkQueue;
use writer::Writer;

/// How many objects of each kind are reconciled at once.
const CONCURRENCY: usize = 16;

/// Runs the namespace and anchor reconcilers until `changes` ends. Waits for the first
/// full list of every watched kind before deciding anything, so no decision is made on a
/// half-known cluster.
pub async fn run(
    state: ClusterState,
    writer: Writer,
    mut changes: mpsc::UnboundedReceiver<Change>,
) {
    let mut ready = state.ready.clone();
    if ready.wait_for(|r| *r).await.is_err() {
        return;
    }
    let namespaces: WorkQueue<String> = WorkQueue::new();
    let anchors: WorkQueue<ObjectRef<SubnamespaceAnchor>> = WorkQueue::new();
    enqueue_all(&state, &namespaces, &anchors);

    let dispatch = {
        let (state, namespaces, anchors) = (state.clone(), namespaces.clone(), anchors.clone());
        async move {
            while let Some(change) = changes.recv().await {
                match change {
                    Change::Namespaces(names) => namespaces.add_all(names),
                    Change::Anchor { namespace, name } => {
                        anchors.add(ObjectRef::new(&name).within(&namespace));
                    }
                    Change::All => enqueue_all(&state, &namespaces, &anchors),
                }
            }
            namespaces.close();
            anchors.close();
        }
    };
    let namespace_workers = {
        let (state, writer) = (state.clone(), writer.clone());
        namespaces.run(CONCURRENCY, move |name| {
            let (state, writer) = (state.clone(), writer.clone());
            async move { hierarchy::reconcile_namespace(&state, &writer, name).await }
        })
    };
    let anchor_workers = anchors.run(CONCURRENCY, move |key| {
        let (state, writer) = (state.clone(), writer.clone());
        async move { anchor::reconcile_anchor(&state, &writer, key).await }
    });
    tokio::join!(dispatch, namespace_workers, anchor_workers);
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
