//! `CanopyConfiguration.status`: sources and copies per propagated kind, and the
//! `BadConfiguration` condition naming every configured kind canopy cannot use now (with
//! a Warning Event when one becomes unusable, and a Normal one when it is usable again).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde_json::json;
use tracing::debug;

use super::conditions::{self, DesiredCondition};
use super::propagation::Propagation;
use super::propagation::availability::{self, KIND_UNAVAILABLE};
use super::writer::Writer;
use crate::api::{CONFIGURATION_NAME, CanopyConfiguration, ResourceStatus, keys};
use crate::forest::propagated::kinds::{KindKey, display};

/// How often the counts and kinds are compared with what was last written.
const INTERVAL: Duration = Duration::from_secs(2);

/// Writes the status whenever it changes (and only then, so GitOps tools see no churn).
/// Runs on the leader.
pub async fn run(client: Client, writer: Writer, propagation: Arc<Propagation>) {
    let api: Api<CanopyConfiguration> = Api::all(client);
    let mut written: Option<(Vec<ResourceStatus>, DesiredCondition)> = None;
    // The kinds whose unavailability an Event has reported.
    let mut reported: BTreeMap<KindKey, String> = BTreeMap::new();
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tick.tick().await;
        if !propagation.is_settled() {
            continue;
        }
        let kinds = propagation.availability();
        let desired = (propagation.status(), availability::condition(&kinds));
        let news = availability::transitions(&reported, &kinds);
        if written.as_ref() == Some(&desired) && news.unusable.is_empty() && news.usable.is_empty()
        {
            reported = news.reported;
            continue;
        }
        let current = match api.get_opt(CONFIGURATION_NAME).await {
            Ok(Some(current)) => current,
            // No configuration object: defaults are in effect and there is nowhere to report.
            Ok(None) => {
                written = Some(desired);
                reported = news.reported;
                continue;
            }
            Err(err) => {
                debug!(error = %err, "cannot read the configuration");
                continue;
            }
        };
        let reference = current.object_ref(&());
        for (key, why) in &news.unusable {
            let note = availability::event_note(&format!("{}: {why}", display(key)));
            let action = format!("Propagate {}", display(key));
            writer
                .event_with_action(reference.clone(), true, KIND_UNAVAILABLE, &action, note)
                .await;
        }
        for key in &news.usable {
            let note = format!("{} is propagated now", display(key));
            let action = format!("Propagate {}", display(key));
            writer
                .event_with_action(
                    reference.clone(),
                    false,
                    crate::api::events::KIND_AVAILABLE,
                    &action,
                    note,
                )
                .await;
        }
        reported = news.reported;
        if written.as_ref() == Some(&desired) {
            continue;
        }
        let existing = current
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        let conditions = conditions::merge(
            &existing,
            std::slice::from_ref(&desired.1),
            current.metadata.generation,
            Timestamp::now(),
        );
        let patch = json!({
            "apiVersion": "canopy.dev/v1alpha1",
            "kind": "CanopyConfiguration",
            "metadata": {"name": CONFIGURATION_NAME},
            "status": {"resources": desired.0, "conditions": conditions},
        });
        let params = PatchParams::apply(keys::PROPAGATION_FIELD_MANAGER).force();
        match api
            .patch_status(CONFIGURATION_NAME, &params, &Patch::Apply(&patch))
            .await
        {
            Ok(_) => written = Some(desired),
            Err(kube::Error::Api(s)) if s.code == 404 => written = Some(desired),
            Err(err) => debug!(error = %err, "cannot write the configuration status"),
        }
    }
}
