//! Admission webhooks: the policies (pure functions), the tree and tenancy checks, and
//! the HTTPS server that serves them (webhooks only; `/metrics` and the probes are on the
//! admin port, `crate::admin`).

mod anchor;
mod authorizer;
pub mod certs;
mod claims;
mod hierarchy;
pub mod metrics;
mod namespace;
pub mod policies;
mod policy_review;
mod propagated;
mod protected;
mod quota;
pub mod review;
pub mod server;
mod tenant;

#[cfg(test)]
mod robustness_tests;

use std::sync::Arc;

use k8s_openapi::api::authentication::v1::UserInfo;

use kube::Client;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;

use crate::forest::watch::ClusterState;
pub use authorizer::Authorizer;
use metrics::Metrics;
use review::Verdict;

/// The paths the webhook configuration points at.
pub mod paths {
    pub const HIERARCHY: &str = "validate-hierarchy";
    pub const ANCHOR: &str = "validate-anchor";
    pub const NAMESPACE: &str = "validate-namespace";
    /// The admission policies for namespaced workloads (pods and pod templates).
    pub const WORKLOADS: &str = "validate-workloads";
    /// The admission policies for PersistentVolumes and StorageClasses.
    pub const VOLUMES: &str = "validate-volumes";
    pub const PROPAGATED: &str = "validate-propagated";
    pub const TENANT: &str = "validate-tenant";
    pub const CLAIMS: &str = "validate-claims";
    /// HierarchicalResourceQuotas: reservations for what they count, and the HRQs.
    pub const QUOTA: &str = "validate-quota";

    /// Every webhook path the server serves.
    pub const ALL: [&str; 9] = [
        HIERARCHY, ANCHOR, NAMESPACE, WORKLOADS, VOLUMES, PROPAGATED, TENANT, CLAIMS, QUOTA,
    ];

    /// The path as a `'static` label for metrics, if a webhook serves it.
    pub fn known(path: &str) -> Option<&'static str> {
        ALL.into_iter().find(|known| *known == path)
    }
}

/// Everything the handlers read: the shared cluster state, and who canopy is.
pub struct Webhooks {
    state: ClusterState,
    authorizer: Authorizer,
    canopy_username: String,
    metrics: Arc<Metrics>,
    /// Writes quota reservations (the one write a webhook makes).
    quota: quota::QuotaWriter,
}

impl Webhooks {
    /// `canopy_username` is the identity canopy's own writes arrive with; they are exempt
    /// from the checks that protect canopy's labels and objects from everyone else.
    pub fn new(state: ClusterState, client: Client, canopy_username: String) -> Self {
        Self {
            state,
            authorizer: Authorizer::new(client.clone()),
            canopy_username,
            metrics: Arc::default(),
            quota: quota::QuotaWriter::new(client),
        }
    }

    /// Webhooks on a state that no cluster feeds (`ClusterState::detached`), for
    /// benchmarks and tests; checks that ask the apiserver fail.
    pub fn detached(state: ClusterState, canopy_username: String) -> Self {
        Self {
            state,
            authorizer: Authorizer::detached(),
            canopy_username,
            metrics: Arc::default(),
            quota: quota::QuotaWriter::detached(),
        }
    }

    /// Records the reviews in `metrics` (the manager's, which `/metrics` serves) instead
    /// of a set of its own.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn is_canopy(&self, user: &UserInfo) -> bool {
        user.username.as_deref() == Some(self.canopy_username.as_str())
    }

    /// The verdict of the webhook at `path`, or `None` if there is none.
    pub async fn review(
        &self,
        path: &str,
        request: &mut AdmissionRequest<DynamicObject>,
    ) -> Option<Verdict> {
        let verdict = match path {
            paths::HIERARCHY => hierarchy::review(self, request).await,
            paths::ANCHOR => anchor::review(self, request),
            paths::NAMESPACE => namespace::review(self, request),
            // The policies take the object as JSON text: `server::answer` decodes their
            // requests so and calls `policy_review::review` itself.
            paths::PROPAGATED => propagated::review(self, request),
            paths::TENANT => tenant::review(self, request),
            paths::CLAIMS => claims::review(self, request),
            paths::QUOTA => quota::review(self, request).await,
            _ => return None,
        };
        Some(verdict)
    }
}

#[cfg(test)]
mod path_tests {
    /// docs/architecture.md lists the webhook paths; one added here must be listed there.
    #[test]
    fn the_architecture_lists_every_path() {
        let doc = include_str!("../../docs/architecture.md");
        for path in super::paths::ALL {
            assert!(
                doc.contains(&format!("`/{path}`")),
                "docs/architecture.md lacks /{path}"
            );
        }
        assert!(doc.contains(&format!(
            "the {} webhook paths",
            number(super::paths::ALL.len())
        )));
    }

    fn number(n: usize) -> &'static str {
        [
            "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        ]
        .get(n)
        .copied()
        .unwrap_or("many")
    }

    /// Every path the bundled webhook configuration calls is one the server answers.
    #[test]
    fn every_configured_path_is_served() {
        let config: serde_json::Value = serde_saphyr::from_str(include_str!(
            "../../webhooks/validating-webhook-configuration.yaml"
        ))
        .expect("the bundled configuration parses");
        let webhooks = config["webhooks"].as_array().expect("webhooks");
        assert!(!webhooks.is_empty());
        for webhook in webhooks {
            let path = webhook["clientConfig"]["service"]["path"]
                .as_str()
                .expect("a path");
            assert!(
                super::paths::known(path.trim_start_matches('/')).is_some(),
                "{path} is configured but not served"
            );
        }
    }
}
