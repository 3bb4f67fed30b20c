//! `CanopyConfiguration.status`: sources and copies per propagated kind, and the
//! `BadConfiguration` condition naming every configured kind canopy cannot use now (with
//! a Warning Event when one becomes unusable, and a Normal one when it is usable again).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::core::ApiResource;
use kube::{Client, Resource};
use serde_json::json;
use tracing::debug;

use super::conditions::{self, DesiredCondition};
use super::ops::{Event, Op};
use super::propagation::Propagation;
use super::propagation::availability::{self, KIND_UNAVAILABLE};
use super::writer::Writer;
use crate::api::{CONFIGURATION_NAME, CanopyConfiguration, ResourceStatus, events, keys};
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
        let rewrite = written.as_ref() != Some(&desired);
        let ops = configuration_ops(&current, &desired, &news, rewrite, Timestamp::now());
        reported = news.reported;
        let mut done = true;
        for op in ops {
            match writer.execute(op).await {
                Ok(_) => {}
                // Deleted meanwhile: the defaults are in effect, nowhere to report.
                Err(err) if err.is_not_found() => {}
                Err(err) => {
                    debug!(error = %err, "cannot write the configuration status");
                    done = false;
                }
            }
        }
        if done {
            written = Some(desired);
        }
    }
}

/// The writes that report `desired` (the kinds' counts and the `BadConfiguration`
/// condition) on the configuration `current`: an Event per kind that became unusable or
/// usable again (`news`), and the status when `rewrite`. Pure.
fn configuration_ops(
    current: &CanopyConfiguration,
    desired: &(Vec<ResourceStatus>, DesiredCondition),
    news: &availability::Transitions,
    rewrite: bool,
    now: Timestamp,
) -> Vec<Op> {
    let reference = current.object_ref(&());
    // One action per kind: Events about different kinds are not folded into one series.
    let event = |key: &KindKey, warning: bool, reason: &str, note: String| {
        Op::Event(Event {
            object: reference.clone(),
            warning,
            reason: reason.to_owned(),
            action: format!("Propagate {}", display(key)),
            note,
        })
    };
    let mut ops: Vec<Op> = news
        .unusable
        .iter()
        .map(|(key, why)| {
            let note = availability::event_note(&format!("{}: {why}", display(key)));
            event(key, true, KIND_UNAVAILABLE, note)
        })
        .collect();
    ops.extend(news.usable.iter().map(|key| {
        let note = format!("{} is propagated now", display(key));
        event(key, false, events::KIND_AVAILABLE, note)
    }));
    if rewrite {
        let existing = current
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        let conditions = conditions::merge(
            &existing,
            std::slice::from_ref(&desired.1),
            current.metadata.generation,
            now,
        );
        ops.push(Op::ApplyStatus {
            resource: ApiResource::erase::<CanopyConfiguration>(&()),
            namespace: None,
            name: CONFIGURATION_NAME.to_owned(),
            status: json!({"resources": desired.0, "conditions": conditions}),
            field_manager: keys::PROPAGATION_FIELD_MANAGER,
        });
    }
    ops
}
