//! `CanopyConfiguration.status.resources`: sources and copies per propagated kind.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tracing::debug;

use super::propagation::Propagation;
use crate::api::{CONFIGURATION_NAME, CanopyConfiguration, ResourceStatus, keys::FIELD_MANAGER};

/// How often the counts are compared with what was last written.
const INTERVAL: Duration = Duration::from_secs(2);

/// Writes the counts whenever they change (and only then, so GitOps tools see no churn).
pub async fn run(client: Client, propagation: Arc<Propagation>) {
    let api: Api<CanopyConfiguration> = Api::all(client);
    let mut written: Option<Vec<ResourceStatus>> = None;
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tick.tick().await;
        if !propagation.is_synced() {
            continue;
        }
        let resources = propagation.status();
        if written.as_ref() == Some(&resources) {
            continue;
        }
        let patch = json!({
            "apiVersion": "canopy.dev/v1alpha1",
            "kind": "CanopyConfiguration",
            "metadata": {"name": CONFIGURATION_NAME},
            "status": {"resources": resources},
        });
        let params = PatchParams::apply(&format!("{FIELD_MANAGER}-propagation")).force();
        match api
            .patch_status(CONFIGURATION_NAME, &params, &Patch::Apply(&patch))
            .await
        {
            Ok(_) => written = Some(resources),
            // No configuration object: defaults are in effect and there is nowhere to report.
            Err(kube::Error::Api(s)) if s.code == 404 => written = Some(resources),
            Err(err) => debug!(error = %err, "cannot write the configuration status"),
        }
    }
}
