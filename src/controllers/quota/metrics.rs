//! Per-HRQ series, set by the recount (so on the leader): `canopy_quota_hard`,
//! `canopy_quota_used` (by namespace, name and resource) and `canopy_quota_reservations`
//! (outstanding reservations per HRQ). An HRQ that goes loses its series. Registered in
//! the manager's registry (`admin::Metrics`) under the prefix `canopy_quota`; like
//! `controllers::metrics`, this module names nothing else of the crate.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ResourceLabels {
    namespace: String,
    name: String,
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct HrqLabels {
    namespace: String,
    name: String,
}

/// One HRQ's figures: `(resource, hard, used)` in units (not thousandths), and how many
/// reservations are outstanding.
pub struct Figures {
    pub namespace: String,
    pub name: String,
    pub resources: Vec<(String, f64, f64)>,
    pub reservations: usize,
}

#[derive(Default)]
pub struct QuotaMetrics {
    hard: Family<ResourceLabels, Gauge<f64, AtomicU64>>,
    used: Family<ResourceLabels, Gauge<f64, AtomicU64>>,
    reservations: Family<HrqLabels, Gauge>,
    known: Mutex<(BTreeSet<ResourceLabels>, BTreeSet<HrqLabels>)>,
}

impl QuotaMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "hard",
            "spec.hard of each HierarchicalResourceQuota, by resource",
            self.hard.clone(),
        );
        registry.register(
            "used",
            "Usage over each HierarchicalResourceQuota's subtree (reservations included), by resource",
            self.used.clone(),
        );
        registry.register(
            "reservations",
            "Reservations made at admission and not yet counted, per HierarchicalResourceQuota",
            self.reservations.clone(),
        );
    }

    /// Sets the series of every HRQ counted, and drops those of HRQs not in `all`.
    pub fn set(&self, all: &[Figures]) {
        let mut resources = BTreeSet::new();
        let mut hrqs = BTreeSet::new();
        for f in all {
            let hrq = HrqLabels {
                namespace: f.namespace.clone(),
                name: f.name.clone(),
            };
            self.reservations
                .get_or_create(&hrq)
                .set(i64::try_from(f.reservations).unwrap_or(i64::MAX));
            hrqs.insert(hrq);
            for (resource, hard, used) in &f.resources {
                let labels = ResourceLabels {
                    namespace: f.namespace.clone(),
                    name: f.name.clone(),
                    resource: resource.clone(),
                };
                self.hard.get_or_create(&labels).set(*hard);
                self.used.get_or_create(&labels).set(*used);
                resources.insert(labels);
            }
        }
        let mut known = self.known.lock();
        for gone in known.0.difference(&resources) {
            self.hard.remove(gone);
            self.used.remove(gone);
        }
        for gone in known.1.difference(&hrqs) {
            self.reservations.remove(gone);
        }
        *known = (resources, hrqs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_follow_the_hrqs() {
        let metrics = QuotaMetrics::default();
        let mut registry = Registry::default();
        metrics.register(registry.sub_registry_with_prefix("canopy_quota"));
        let figures = |name: &str| Figures {
            namespace: "acme".into(),
            name: name.into(),
            resources: vec![("pods".into(), 5.0, 3.0)],
            reservations: 1,
        };
        metrics.set(&[figures("a"), figures("b")]);
        let text = |registry: &Registry| {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, registry).expect("encodes");
            out
        };
        let out = text(&registry);
        assert!(
            out.contains(r#"canopy_quota_used{namespace="acme",name="a",resource="pods"} 3.0"#),
            "{out}"
        );
        assert!(
            out.contains(r#"canopy_quota_reservations{namespace="acme",name="b"} 1"#),
            "{out}"
        );
        metrics.set(&[figures("a")]);
        assert!(!text(&registry).contains(r#"name="b""#));
    }
}
