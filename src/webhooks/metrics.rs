//! Prometheus metrics of the webhook server, served at `GET /metrics` on the admin port.
//!
//! Label values are fixed strings (policy and mode names, webhook paths the server knows),
//! never taken from a request, so a caller cannot grow the series without bound.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::policies::{CheckResult, PolicyReport};
use crate::api::PolicyMode;
use crate::forest::tenant_metrics::TenantMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    policy: &'static str,
    mode: &'static str,
    /// `passed`, `violated`, `unchanged` (an update that did not change what the policy
    /// checks) or `skipped` (mode Off for this request).
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    webhook: &'static str,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    webhook: &'static str,
}

pub struct Metrics {
    decisions: Family<DecisionLabels, Counter>,
    reviews: Family<ReviewLabels, Counter>,
    bad_requests: Counter,
    latency: Family<WebhookLabels, Histogram>,
    /// Where refusals are counted per tenant (`canopy_tenant_policy_refusals_total`),
    /// registered with the other per-tenant series.
    tenants: Arc<TenantMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            decisions: Family::default(),
            reviews: Family::default(),
            bad_requests: Counter::default(),
            // 50 µs to about 0.8 s: a review takes tens of microseconds, the apiserver
            // gives up after the webhook's timeout of a few seconds.
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_05, 2.0, 15))
            }),
            tenants: Arc::default(),
        }
    }

    /// Counts refusals per tenant into `tenants` (the manager's) instead of a private set.
    pub fn with_tenants(mut self, tenants: Arc<TenantMetrics>) -> Self {
        self.tenants = tenants;
        self
    }

    /// Adds the series to `registry` (under its prefix, `canopy_admission` in the
    /// manager's registry).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "policy_decisions",
            "Admission policy decisions by policy, effective mode and outcome",
            self.decisions.clone(),
        );
        registry.register(
            "reviews",
            "AdmissionReviews answered, by webhook and verdict",
            self.reviews.clone(),
        );
        registry.register(
            "bad_requests",
            "Requests answered with HTTP 400 (not a usable AdmissionReview)",
            self.bad_requests.clone(),
        );
        registry.register(
            "review_duration_seconds",
            "Time from a request body to the encoded answer, by webhook",
            self.latency.clone(),
        );
    }

    /// Counts what each policy decided for one request.
    pub fn record_policies(&self, reports: &[PolicyReport]) {
        for report in reports {
            self.decisions
                .get_or_create(&DecisionLabels {
                    policy: report.policy.as_str(),
                    mode: mode_name(report.mode.mode),
                    outcome: report.result.as_str(),
                })
                .inc();
        }
    }

    /// Counts, for `tenant`, each Enforce policy whose violations refused a request.
    pub fn record_policy_refusals(&self, tenant: &str, reports: &[PolicyReport]) {
        for report in reports {
            if report.mode.mode == PolicyMode::Enforce
                && matches!(report.result, CheckResult::Violated(_))
            {
                self.tenants.record_refusal(tenant, report.policy.as_str());
            }
        }
    }

    /// Counts a request in a namespace of `tenant` refused by the quota webhook.
    pub fn record_quota_refusal(&self, tenant: &str) {
        self.tenants.record_refusal(tenant, "quota");
    }

    /// Counts a policy request whose object could not be read.
    pub fn record_policy_error(&self) {
        self.decisions
            .get_or_create(&DecisionLabels {
                policy: "any",
                mode: "any",
                outcome: "error",
            })
            .inc();
    }

    pub fn record_review(&self, webhook: &'static str, verdict: &'static str, took: Duration) {
        self.reviews
            .get_or_create(&ReviewLabels { webhook, verdict })
            .inc();
        self.latency
            .get_or_create(&WebhookLabels { webhook })
            .observe(took.as_secs_f64());
    }

    pub fn record_bad_request(&self) {
        self.bad_requests.inc();
    }
}

fn mode_name(mode: PolicyMode) -> &'static str {
    match mode {
        PolicyMode::Enforce => "Enforce",
        PolicyMode::Warn => "Warn",
        PolicyMode::Off => "Off",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::policies::{CheckResult, EffectiveMode, ModeSource, Policy};

    #[test]
    fn decisions_are_counted_by_policy_mode_and_outcome() {
        let metrics = Metrics::new();
        let report = PolicyReport {
            policy: Policy::HostPath,
            mode: EffectiveMode {
                mode: PolicyMode::Enforce,
                source: ModeSource::Cluster,
            },
            result: CheckResult::Violated(Vec::new()),
        };
        metrics.record_policies(&[report.clone(), report]);
        metrics.record_review("validate-workloads", "denied", Duration::from_micros(80));
        let mut registry = Registry::with_prefix("canopy_admission");
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains(
                r#"canopy_admission_policy_decisions_total{policy="hostPath",mode="Enforce",outcome="violated"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"canopy_admission_reviews_total{webhook="validate-workloads",verdict="denied"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"canopy_admission_review_duration_seconds_count{webhook="validate-workloads"} 1"#
            ),
            "{text}"
        );
    }
}
