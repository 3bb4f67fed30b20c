//! Keeps the per-tenant series (`forest::tenant_metrics`) in step with the model, on every
//! replica: the leader sets the gauges (namespaces, their limit, copies, tenant quota) so
//! that one replica exports them; every replica drops the refusal counters of Tenants
//! that went, since each counts its own webhooks' refusals.
//!
//! A timer rather than a reaction to each change: the figures are read by a scrape every
//! 15 to 60 s, while a pass walks every Tenant's namespaces and every copy, which a burst
//! of changes (a fan-out writing thousands of copies) would otherwise repeat per event.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::quota;
use crate::api::TENANT_QUOTA;
use crate::forest::tenant_metrics::{Tally, TenantMetrics};
use crate::forest::watch::ClusterState;

/// A tenant quota's `(resource, hard, used)`, in units.
type QuotaFigures = Vec<(String, f64, f64)>;

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
        let _span = tracing::debug_span!("tenant_metrics", leading).entered();
        update(&state, leading, &metrics);
    }
}

/// One pass. The model's locks are taken one at a time (the Forest, then each kind's
/// index), never nested, so this cannot take part in a lock-order cycle with the
/// planners and webhooks.
fn update(state: &ClusterState, leading: bool, metrics: &TenantMetrics) {
    let tenants = state.tenants.state();
    let names: BTreeSet<String> = tenants.iter().map(|t| t.name_any()).collect();
    metrics.retain_refusals(&names);
    if !leading {
        return;
    }
    let now = Timestamp::now();
    let (mut tally, quotas) = {
        let forest = state.forest();
        let tally = Tally::new(
            &forest,
            tenants.iter().map(|t| {
                (
                    t.metadata.name.as_deref().unwrap_or_default(),
                    t.spec.max_namespaces,
                )
            }),
        );
        // The tenant quota is the HRQ canopy writes into the root: its usage as the recount
        // computes it (over the tree, reservations included), so it agrees with the HRQ's
        // status and with `canopy_quota_used`. The Forest, then the quota index: the
        // recount's order.
        let quotas: Vec<(String, QuotaFigures)> = names
            .iter()
            .filter_map(|tenant| {
                let root = forest.tenant_root(tenant)?;
                let hrq = state
                    .quota
                    .in_namespace(root)
                    .into_iter()
                    .find(|h| h.metadata.name.as_deref() == Some(TENANT_QUOTA))?;
                let desired = quota::desired_status(&hrq, &forest, &state.quota, now);
                Some((tenant.clone(), quota::figures_of(&hrq, &desired).resources))
            })
            .collect();
        (tally, quotas)
    };
    for kind in state.kinds.all() {
        tally.count_copies(&kind.index());
    }
    let mut all = tally.into_figures();
    for (tenant, resources) in quotas {
        if let Some(figures) = all.get_mut(&tenant) {
            figures.quota = resources;
        }
    }
    metrics.set(&all);
}
