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
            // No configuration object: the defaults are in effect. Create `config` with
            // them, so there is something to read and to report on; the next tick writes
            // its status.
            Ok(None) => {
                if let Err(err) = writer.execute(default_configuration_op()).await {
                    debug!(error = %err, "cannot create the default configuration");
                }
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

/// Creates the CanopyConfiguration `config` with an empty spec, which the CRD's schema
/// fills with every default (as HNC creates its `config`). Only when none exists: one that
/// a person, Helm or a GitOps tool created is never touched, and canopy owns no field of
/// the spec it created, so a later apply from Git takes it over without a conflict.
fn default_configuration_op() -> Op {
    Op::CreateIfMissing {
        resource: ApiResource::erase::<CanopyConfiguration>(&()),
        namespace: None,
        name: CONFIGURATION_NAME.to_owned(),
        body: json!({
            "apiVersion": CanopyConfiguration::api_version(&()),
            "kind": CanopyConfiguration::kind(&()),
            "metadata": {"name": CONFIGURATION_NAME},
            "spec": {},
        }),
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
            namespace: None,
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
        // A new leader (a restart) starts with nothing written: what the object already
        // says is not written again, so a converged restart writes nothing.
        let resources = current.status.as_ref().map(|s| s.resources.as_slice());
        if resources == Some(desired.0.as_slice()) && conditions == existing {
            return ops;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The default `config` is created only when missing, with an empty spec that the
    /// CRD's schema fills: canopy owns no spec field a GitOps tool might later apply.
    #[test]
    fn the_default_configuration_is_created_if_missing_with_an_empty_spec() {
        let Op::CreateIfMissing {
            resource,
            namespace,
            name,
            body,
        } = default_configuration_op()
        else {
            panic!("not a create");
        };
        assert_eq!(resource.kind, "CanopyConfiguration");
        assert_eq!((namespace, name.as_str()), (None, CONFIGURATION_NAME));
        assert_eq!(body["spec"], json!({}));
        assert_eq!(body["metadata"]["name"], CONFIGURATION_NAME);
        assert_eq!(body["apiVersion"], "canopy.dev/v1alpha1");
    }

    /// A new leader has written nothing yet; when the object already says what it would
    /// write, a converged restart writes nothing. A change is still written.
    #[test]
    fn a_status_the_object_already_has_is_not_written_again() {
        let resources = vec![ResourceStatus {
            group: "rbac.authorization.k8s.io".into(),
            resource: "roles".into(),
            sources: 1,
            copies: 999,
            ..ResourceStatus::default()
        }];
        let condition = DesiredCondition {
            type_: "BadConfiguration",
            status: false,
            reason: "AllKindsPropagated".into(),
            message: "every configured kind is propagated".into(),
        };
        let now: Timestamp = "2026-12-04T00:00:00Z".parse().expect("time");
        let conditions = conditions::merge(&[], std::slice::from_ref(&condition), Some(1), now);
        let current: CanopyConfiguration = serde_json::from_value(json!({
            "apiVersion": "canopy.dev/v1alpha1", "kind": "CanopyConfiguration",
            "metadata": {"name": CONFIGURATION_NAME, "generation": 1},
            "spec": {},
            "status": {"resources": resources, "conditions": conditions},
        }))
        .expect("configuration");
        let later: Timestamp = "2026-12-05T00:00:00Z".parse().expect("time");
        let quiet = availability::Transitions {
            unusable: Vec::new(),
            usable: Vec::new(),
            reported: BTreeMap::new(),
        };
        let desired = (resources.clone(), condition.clone());
        assert!(configuration_ops(&current, &desired, &quiet, true, later).is_empty());
        let mut more = resources;
        more[0].copies = 1000;
        let ops = configuration_ops(&current, &(more, condition), &quiet, true, later);
        assert!(
            matches!(ops.as_slice(), [Op::ApplyStatus { .. }]),
            "{ops:?}"
        );
    }
}
