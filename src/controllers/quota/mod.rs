//! The HierarchicalResourceQuota recount (leader only): from the model's usage index,
//! each HRQ's `status.used` over its namespace's subtree, `status.hard`, the printer
//! summaries, and the reservations still outstanding. A reservation (written by the
//! admission webhook, `src/webhooks/quota.rs`) is released when its object is counted,
//! or when it expires without the object ever appearing (another admission step refused
//! it, the request timed out). Every write is a compare-and-swap on the HRQ's
//! resourceVersion, so a reservation made meanwhile is never lost.

pub mod metrics;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::core::ApiResource;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::ops::Op;
use super::writer::Writer;
use crate::api::MOVE_RESOURCE;
use crate::api::quota_usage::{self, Amounts};
use crate::api::{HierarchicalResourceQuota, HierarchicalResourceQuotaStatus};
use crate::forest::Forest;
use crate::forest::quota::QuotaIndex;
use crate::forest::watch::ClusterState;

/// Every HRQ is looked at again at least this often (a parent change moves usage from
/// one subtree to another, and expired reservations must go), and at once when an HRQ or
/// a counted object changes.
pub const RECOUNT_EVERY: Duration = Duration::from_secs(1);

/// The status `hrq` should have, from the model, at `now`.
pub fn desired_status(
    hrq: &HierarchicalResourceQuota,
    forest: &Forest,
    index: &QuotaIndex,
    now: Timestamp,
) -> HierarchicalResourceQuotaStatus {
    let hard: Amounts = hrq
        .spec
        .hard
        .iter()
        .filter_map(|(name, q)| quota_usage::parse_milli(&q.0).map(|v| (name.clone(), v)))
        .collect();
    let namespace = hrq.namespace().unwrap_or_default();
    let subtree = forest.subtree(&namespace);
    let mut used = quota_usage::restrict(&index.usage_of(subtree.iter().copied()), &hard);
    let current = hrq.status.clone().unwrap_or_default();
    let mut reservations = Vec::new();
    for reservation in current.reservations {
        let expired = reservation
            .expires
            .parse::<Timestamp>()
            .map_or(true, |t| t <= now);
        let reserved: Amounts = reservation
            .usage
            .iter()
            .filter_map(|(name, q)| quota_usage::parse_milli(&q.0).map(|v| (name.clone(), v)))
            .collect();
        let outstanding = match index.object(&reservation.uid) {
            // A namespace moving in: counted once the model has it in the subtree.
            _ if reservation.resource == MOVE_RESOURCE => {
                if subtree.contains(&reservation.name.as_str()) {
                    Amounts::new()
                } else {
                    reserved
                }
            }
            // Counted now: only what it has not reached yet (a resize in flight) remains.
            Some((ns, usage)) if subtree.contains(&ns.as_str()) => {
                quota_usage::increase(&quota_usage::restrict(&usage, &hard), &reserved)
            }
            // Moved out of the subtree meanwhile: it no longer counts here.
            Some(_) => Amounts::new(),
            None => reserved,
        };
        if outstanding.is_empty() || expired {
            continue;
        }
        quota_usage::add(&mut used, &quota_usage::restrict(&outstanding, &hard));
        reservations.push(reservation);
    }
    for name in hard.keys() {
        used.entry(name.clone()).or_insert(0);
    }
    // An object count whose kind is not (yet) fully listed is left out of `used`: the
    // webhook refuses what it would count until it is ("not counted yet").
    used.retain(|name, _| index.is_counted(name));
    let (requests, limits) = quota_usage::summaries(&used, &hard);
    HierarchicalResourceQuotaStatus {
        hard: hrq.spec.hard.clone(),
        used: quota_usage::format_list(&used),
        requests_summary: (!requests.is_empty()).then_some(requests),
        limits_summary: (!limits.is_empty()).then_some(limits),
        reservations,
    }
}

/// The write that brings `hrq`'s status to `desired`, if it differs: a replacement with
/// the resourceVersion the decision was made on.
pub fn recount_op(
    hrq: &HierarchicalResourceQuota,
    desired: HierarchicalResourceQuotaStatus,
) -> Option<Op> {
    if hrq.status.as_ref() == Some(&desired) {
        return None;
    }
    let mut object = json!({
        "apiVersion": HierarchicalResourceQuota::api_version(&()),
        "kind": HierarchicalResourceQuota::kind(&()),
        "metadata": {
            "name": hrq.name_any(),
            "namespace": hrq.namespace(),
            "resourceVersion": hrq.resource_version(),
        },
        "spec": hrq.spec,
    });
    object["status"] = serde_json::to_value(desired).ok()?;
    Some(Op::ReplaceStatus {
        resource: ApiResource::erase::<HierarchicalResourceQuota>(&()),
        namespace: hrq.namespace(),
        name: hrq.name_any(),
        object,
    })
}

/// The figures of `hrq` with `status` for the metrics (`canopy_quota_*`, `canopy_tenant_quota_*`).
pub fn figures_of(
    hrq: &HierarchicalResourceQuota,
    status: &HierarchicalResourceQuotaStatus,
) -> metrics::Figures {
    let units = |q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
        q.and_then(|q| quota_usage::parse_milli(&q.0))
            .map_or(0.0, |m| m as f64 / 1000.0)
    };
    metrics::Figures {
        namespace: hrq.namespace().unwrap_or_default(),
        name: hrq.name_any(),
        resources: hrq
            .spec
            .hard
            .iter()
            .map(|(r, h)| (r.clone(), units(Some(h)), units(status.used.get(r))))
            .collect(),
        reservations: status.reservations.len(),
    }
}

/// Recounts every HRQ while this replica leads, until `leader` closes.
pub async fn run(
    state: ClusterState,
    writer: Writer,
    mut leader: tokio::sync::watch::Receiver<bool>,
    metrics: std::sync::Arc<metrics::QuotaMetrics>,
) {
    let mut ready = state.ready.clone();
    if ready.wait_for(|r| *r).await.is_err() {
        return;
    }
    loop {
        if leader.wait_for(|l| *l).await.is_err() {
            return;
        }
        let ops: Vec<Op> = {
            let forest = state.forest();
            let now = Timestamp::now();
            let mut figures = Vec::new();
            let mut ops = Vec::new();
            for hrq in state.quota.all() {
                let desired = desired_status(&hrq, &forest, &state.quota, now);
                figures.push(figures_of(&hrq, &desired));
                ops.extend(recount_op(&hrq, desired));
            }
            metrics.set(&figures);
            ops
        };
        for op in ops {
            if let Err(err) = writer.execute(op).await {
                // A conflict means someone (a reservation) wrote first: recount again.
                if err.is_transient() {
                    tracing::debug!(error = %err, "recounting a quota");
                } else {
                    tracing::warn!(error = %err, "cannot write a quota's usage");
                }
            }
        }
        tokio::select! {
            _ = state.quota.changed.notified() => {
                // Let a burst of events settle into one recount.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ = tokio::time::sleep(RECOUNT_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forest::indexer::Indexer;
    use crate::forest::quota::{HrqFeed, UsageFeed};
    use crate::forest::testing::tree;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(ns: &str, uid: &str, cpu: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": uid, "namespace": ns, "uid": uid},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}
        }))
        .expect("pod")
    }

    fn hrq(status: serde_json::Value) -> HierarchicalResourceQuota {
        serde_json::from_value(json!({
            "apiVersion": "canopy.dev/v1alpha1", "kind": "HierarchicalResourceQuota",
            "metadata": {"name": "q", "namespace": "root", "resourceVersion": "9"},
            "spec": {"hard": {"pods": "5", "requests.cpu": "1"}},
            "status": status,
        }))
        .expect("hrq")
    }

    fn reservation(uid: &str, cpu: &str, expires: &str) -> serde_json::Value {
        json!({"uid": uid, "namespace": "a", "name": uid, "resource": "pods",
               "usage": {"pods": "1", "requests.cpu": cpu}, "expires": expires})
    }

    const LATER: &str = "2030-01-01T00:00:00Z";
    const EARLIER: &str = "2020-01-01T00:00:00Z";

    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().expect("time")
    }

    #[test]
    fn usage_is_the_subtree_plus_reservations_of_objects_not_seen_yet() {
        let forest = tree("root > a > a1, other");
        let index = QuotaIndex::default();
        let feed = UsageFeed(index.clone());
        feed.apply(pod("a", "seen", "300m"));
        feed.apply(pod("a1", "x", "200m"));
        feed.apply(pod("other", "y", "1"));
        let hrq = hrq(json!({"reservations": [
            reservation("seen", "300m", LATER),
            reservation("pending", "100m", LATER),
            reservation("lapsed", "100m", EARLIER),
        ]}));
        let status = desired_status(&hrq, &forest, &index, now());
        assert_eq!(status.used["pods"].0, "3");
        assert_eq!(status.used["requests.cpu"].0, "600m");
        let kept: Vec<&str> = status.reservations.iter().map(|r| r.uid.as_str()).collect();
        assert_eq!(kept, ["pending"]);
        assert_eq!(status.hard, hrq.spec.hard);
        assert_eq!(
            status.requests_summary.as_deref(),
            Some("pods: 3/5, requests.cpu: 600m/1")
        );
    }

    #[test]
    fn a_move_reservation_holds_until_the_namespace_is_in_the_subtree() {
        let index = QuotaIndex::default();
        let feed = UsageFeed(index.clone());
        feed.apply(pod("q", "q1", "200m"));
        let moving = json!({"uid": "namespace/q", "namespace": "q", "name": "q",
            "resource": MOVE_RESOURCE, "usage": {"pods": "1", "requests.cpu": "200m"},
            "expires": LATER});
        let hrq = hrq(json!({"reservations": [moving]}));
        // Before the model has the move: the reservation counts (q is not in the tree).
        let before = desired_status(&hrq, &tree("root > a, q"), &index, now());
        assert_eq!(before.used["requests.cpu"].0, "200m");
        assert_eq!(before.reservations.len(), 1);
        // After: the namespace's own Pods count, and the reservation goes (not twice).
        let after = desired_status(&hrq, &tree("root > a, root > q"), &index, now());
        assert_eq!(after.used["requests.cpu"].0, "200m");
        assert_eq!(after.used["pods"].0, "1");
        assert!(after.reservations.is_empty());
    }

    #[test]
    fn a_counted_hrq_is_not_written_again_and_a_write_carries_the_resource_version() {
        let forest = tree("root");
        let index = QuotaIndex::default();
        HrqFeed(index.clone()).apply(hrq(json!({})));
        let first = hrq(json!({}));
        let desired = desired_status(&first, &forest, &index, now());
        assert_eq!(desired.used["pods"].0, "0");
        let Some(Op::ReplaceStatus { object, .. }) = recount_op(&first, desired.clone()) else {
            panic!("a write");
        };
        assert_eq!(object["metadata"]["resourceVersion"], "9");
        let counted = hrq(serde_json::to_value(&desired).expect("json"));
        assert_eq!(
            recount_op(&counted, desired_status(&counted, &forest, &index, now())),
            None
        );
    }

    #[test]
    fn a_resize_in_flight_keeps_only_what_the_pod_has_not_reached() {
        let forest = tree("root > a");
        let index = QuotaIndex::default();
        UsageFeed(index.clone()).apply(pod("a", "p", "200m"));
        let hrq = hrq(json!({"reservations": [reservation("p", "500m", LATER)]}));
        let status = desired_status(&hrq, &forest, &index, now());
        assert_eq!(status.used["requests.cpu"].0, "500m");
        assert_eq!(status.reservations.len(), 1);
    }
}
