//! Prometheus metrics of the controllers: reconciles, errors, queue depth, latency and
//! writes. The manager makes one `ControllerMetrics`, registers it with the process's
//! registry (served at `GET /metrics` on the admin port) and hands it to the writer, which
//! every reconciler already holds. This module names nothing else of the crate, so
//! anything may record into it.

use std::collections::BTreeSet;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    controller: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct KindLabels {
    group: String,
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    resource: String,
    operation: &'static str,
}

/// The controllers' series. Label values are controller and resource names canopy
/// chooses, never request data.
pub struct ControllerMetrics {
    reconciles: Family<OutcomeLabels, Counter>,
    duration: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    queue_depth: Family<ControllerLabels, Gauge>,
    writes: Family<WriteLabels, Counter>,
    conflicts: Gauge,
    kind_ready: Family<KindLabels, Gauge>,
    /// The kinds `kind_ready` has series for, so a kind dropped from the configuration
    /// loses its series.
    kinds: Mutex<BTreeSet<KindLabels>>,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 3 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 15))
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ControllerMetrics {
    pub fn new() -> Self {
        Self {
            reconciles: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            queue_depth: Family::default(),
            writes: Family::default(),
            conflicts: Gauge::default(),
            kind_ready: Family::default(),
            kinds: Mutex::new(BTreeSet::new()),
        }
    }

    /// Adds the series to `registry` (under its prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "reconciles",
            "Reconciles by controller and outcome (success, retry)",
            self.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile takes, writes included, by controller",
            self.duration.clone(),
        );
        registry.register(
            "queue_depth",
            "Keys waiting to be reconciled, by controller",
            self.queue_depth.clone(),
        );
        registry.register(
            "objects_written",
            "Objects written by the controllers, by resource and operation",
            self.writes.clone(),
        );
        registry.register(
            "propagation_conflicts",
            "Sources that cannot be copied somewhere because a local object has their name",
            self.conflicts.clone(),
        );
        registry.register(
            "propagation_kind_ready",
            "1 if a configured kind is propagated, 0 if canopy cannot use it now (see the \
             CanopyConfiguration's BadConfiguration condition)",
            self.kind_ready.clone(),
        );
    }

    pub fn record_reconcile(&self, controller: &str, success: bool, took: Duration) {
        let outcome = if success { "success" } else { "retry" };
        self.reconciles
            .get_or_create(&OutcomeLabels {
                controller: controller.to_owned(),
                outcome,
            })
            .inc();
        self.duration
            .get_or_create(&ControllerLabels {
                controller: controller.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn set_queue_depth(&self, controller: &str, depth: usize) {
        self.queue_depth
            .get_or_create(&ControllerLabels {
                controller: controller.to_owned(),
            })
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    pub fn record_write(&self, resource: &str, operation: &'static str) {
        self.writes
            .get_or_create(&WriteLabels {
                resource: resource.to_owned(),
                operation,
            })
            .inc();
    }

    /// Sets `propagation_kind_ready` for every configured kind, `(group, resource)`, and
    /// drops the series of kinds no longer configured.
    pub fn set_kinds_ready(&self, kinds: &[((String, String), bool)]) {
        let mut known = self.kinds.lock();
        let now: BTreeSet<KindLabels> = kinds
            .iter()
            .map(|((group, resource), _)| KindLabels {
                group: group.clone(),
                resource: resource.clone(),
            })
            .collect();
        for gone in known.difference(&now) {
            self.kind_ready.remove(gone);
        }
        for ((group, resource), ready) in kinds {
            let labels = KindLabels {
                group: group.clone(),
                resource: resource.clone(),
            };
            self.kind_ready
                .get_or_create(&labels)
                .set(i64::from(*ready));
        }
        *known = now;
    }

    pub fn set_conflicts(&self, count: usize) {
        self.conflicts.set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(metrics: &ControllerMetrics) -> String {
        let mut registry = Registry::with_prefix("canopy_controller");
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        text
    }

    #[test]
    fn kind_ready_follows_the_configured_kinds() {
        let metrics = ControllerMetrics::new();
        let key = |g: &str, r: &str| (g.to_owned(), r.to_owned());
        metrics.set_kinds_ready(&[
            (key("", "secrets"), false),
            (key("", "resourcequotas"), true),
        ]);
        let text = encoded(&metrics);
        assert!(
            text.contains(
                "canopy_controller_propagation_kind_ready{group=\"\",resource=\"secrets\"} 0"
            ),
            "{text}"
        );
        assert!(text.contains("resource=\"resourcequotas\"} 1"), "{text}");
        // Secrets dropped from the configuration: their series goes.
        metrics.set_kinds_ready(&[(key("", "resourcequotas"), true)]);
        assert!(!encoded(&metrics).contains("secrets"));
    }
}
