//! Keeps the per-tenant series (`forest::tenant_metrics`) in step with the model, on every
//! replica: the leader sets the gauges (namespaces, their limit, copies, tenant quota) so
//! that one replica exports them; every replica drops the refusal counters of Tenants
//! that went, since each counts its own webhooks' refusals.
//!
//! A timer rather than a reaction to each change: the figures are for a scrape every 15
//! to 60 s, and one pass over the model costs about as much as one relist of it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use tracing::Instrument;

use super::quota;
use crate::api::TENANT_QUOTA;
use crate::forest::tenant_metrics::{self, TenantMetrics};
use crate::forest::watch::ClusterState;

/// How often the series are recomputed.
pub const EVERY: Duration = Duration::from_secs(2);

/// Recomputes the series every `EVERY` until `leader` closes.
pub async fn run(
    state: ClusterState,
    leader: tokio::sync::watch::Receiver<bool>,
    metrics: Arc<TenantMetrics>,
) {
    let mut ready = state.ready.clone();
    if ready.wait_for(|r| *r).await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if leader.has_changed().is_err() {
            return;
        }
        let leading = *leader.borrow();
        async { update(&state, leading, &metrics) }
            .instrument(tracing::debug_span!("tenant_metrics", leading))
            .await;
    }
}

fn update(state: &ClusterState, leading: bool, metrics: &TenantMetrics) {
    let tenants = state.tenants.state();
    let names: BTreeSet<String> = tenants.iter().map(|t| t.name_any()).collect();
    metrics.retain_refusals(&names);
    if !leading {
        return;
    }
    let kinds = state.kinds.all();
    let indexes: Vec<_> = kinds.iter().map(|k| k.index()).collect();
    let index_refs: Vec<_> = indexes.iter().map(|guard| &**guard).collect();
    let forest = state.forest();
    let mut all = tenant_metrics::figures(
        &forest,
        tenants.iter().map(|t| {
            (
                t.metadata.name.as_deref().unwrap_or_default(),
                t.spec.max_namespaces,
            )
        }),
        &index_refs,
    );
    drop(index_refs);
    drop(indexes);
    // The tenant quota is the HRQ canopy writes into the root: its usage as the recount
    // computes it (over the tree, reservations included), so it agrees with the HRQ's
    // status and with `canopy_quota_used`.
    let now = Timestamp::now();
    for (tenant, figures) in &mut all {
        let Some(root) = forest.tenant_root(tenant) else {
            continue;
        };
        if let Some(hrq) = state
            .quota
            .in_namespace(root)
            .into_iter()
            .find(|h| h.metadata.name.as_deref() == Some(TENANT_QUOTA))
        {
            let desired = quota::desired_status(&hrq, &forest, &state.quota, now);
            figures.quota = quota::figures_of(&hrq, &desired).resources;
        }
    }
    drop(forest);
    metrics.set(&all);
}
