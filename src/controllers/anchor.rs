//! The SubnamespaceAnchor reconciler: creates the child namespace, reports on it, and
//! deletes it when the anchor goes.

use std::collections::BTreeMap;

use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{debug, info, instrument, warn};

use super::queue::Outcome;
use super::writer::{WriteError, Writer};
use crate::api::{AnchorState, SubnamespaceAnchor, keys};
use crate::forest::Forest;
use crate::forest::watch::ClusterState;

/// Keeps an anchor until canopy has deleted its child namespace.
pub const ANCHOR_FINALIZER: &str = "canopy.dev/subnamespace";

/// One step of reconciling an anchor, in the order they must happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnchorAction {
    AddFinalizer,
    CreateChild {
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    },
    SetChildParent,
    DeleteChild,
    RemoveFinalizer,
    SetState(AnchorState),
}

/// Decides what anchor `anchor` (in namespace `parent`) needs, from the Forest. Pure.
pub fn plan_anchor(
    forest: &Forest,
    parent: &str,
    anchor: &SubnamespaceAnchor,
) -> Vec<AnchorAction> {
    let child = anchor.name_any();
    let child_state = forest.get(&child).filter(|s| s.exists);
    let is_our_child = child_state.is_some_and(|s| s.subnamespace_of.as_deref() == Some(parent));
    let has_finalizer = anchor.finalizers().iter().any(|f| f == ANCHOR_FINALIZER);
    let mut actions = Vec::new();

    if anchor.metadata.deletion_timestamp.is_some() {
        if is_our_child && !child_state.is_some_and(|s| s.deleting) {
            actions.push(AnchorAction::DeleteChild);
        }
        if has_finalizer {
            actions.push(AnchorAction::RemoveFinalizer);
        }
        return actions;
    }
    if !has_finalizer {
        actions.push(AnchorAction::AddFinalizer);
    }
    let state = if forest.is_excluded(&child) || forest.is_excluded(parent) {
        AnchorState::Forbidden
    } else if is_our_child {
        if forest.parent(&child) != Some(parent) {
            actions.push(AnchorAction::SetChildParent);
        }
        AnchorState::Ok
    } else if child_state.is_some() {
        AnchorState::Conflict
    } else {
        // Protected labels are refused at admission; an anchor admitted before that rule
        // still never gets canopy to set them on its behalf.
        let mut labels = anchor.spec.labels.clone();
        labels.retain(|k, _| {
            !crate::webhooks::is_protected_label(k) && !crate::webhooks::is_reserved_key(k)
        });
        let mut annotations = anchor.spec.annotations.clone();
        annotations.retain(|k, _| !crate::webhooks::is_reserved_key(k));
        labels.insert(keys::SUBNAMESPACE_OF.to_owned(), parent.to_owned());
        actions.push(AnchorAction::CreateChild {
            labels,
            annotations,
        });
        actions.push(AnchorAction::SetChildParent);
        AnchorState::Ok
    };
    if anchor.status.as_ref().and_then(|s| s.status) != Some(state) {
        actions.push(AnchorAction::SetState(state));
    }
    actions
}

/// Reconciles one anchor.
#[instrument(skip(state, writer), fields(namespace = %key.namespace.as_deref().unwrap_or_default(), name = %key.name))]
pub async fn reconcile_anchor(
    state: &ClusterState,
    writer: &Writer,
    key: ObjectRef<SubnamespaceAnchor>,
) -> Outcome {
    let Some(anchor) = state.anchors.get(&key) else {
        return Outcome::Success; // deleted; nothing left to do
    };
    let parent = key.namespace.clone().unwrap_or_default();
    let actions = plan_anchor(&state.forest(), &parent, &anchor);
    for action in actions {
        debug!(?action, "applying");
        match apply(writer, &parent, &anchor, action).await {
            Ok(Step::Continue) => {}
            // Someone else's namespace of that name appeared first: never touch it (no
            // parent is set on it); the next pass, from the watch, reports Conflict.
            Ok(Step::Replan) => return Outcome::Retry,
            Err(err) => {
                if err.is_transient() {
                    debug!(error = %err, "will retry");
                } else {
                    warn!(error = %err, "reconcile failed; will retry");
                }
                return Outcome::Retry;
            }
        }
    }
    Outcome::Success
}

/// Whether the remaining actions still hold after one was applied.
enum Step {
    Continue,
    Replan,
}

async fn apply(
    writer: &Writer,
    parent: &str,
    anchor: &SubnamespaceAnchor,
    action: AnchorAction,
) -> Result<Step, WriteError> {
    let child = anchor.name_any();
    let resource_version = anchor.resource_version().unwrap_or_default();
    let without_ours = || -> Vec<String> {
        anchor
            .finalizers()
            .iter()
            .filter(|f| *f != ANCHOR_FINALIZER)
            .cloned()
            .collect()
    };
    match action {
        AnchorAction::AddFinalizer => {
            let mut finalizers = anchor.finalizers().to_vec();
            finalizers.push(ANCHOR_FINALIZER.to_owned());
            writer
                .set_finalizers::<SubnamespaceAnchor>(
                    Some(parent),
                    &child,
                    &finalizers,
                    &resource_version,
                )
                .await?;
        }
        AnchorAction::RemoveFinalizer => {
            writer
                .set_finalizers::<SubnamespaceAnchor>(
                    Some(parent),
                    &child,
                    &without_ours(),
                    &resource_version,
                )
                .await?;
        }
        AnchorAction::CreateChild {
            labels,
            annotations,
        } => {
            if !writer.create_namespace(&child, labels, annotations).await? {
                return Ok(Step::Replan);
            }
            info!(child = %child, "created subnamespace");
            let note = format!("created namespace {child:?} under {parent:?}");
            writer
                .event(anchor.object_ref(&()), false, "SubnamespaceCreated", note)
                .await;
        }
        AnchorAction::SetChildParent => writer.set_parent(&child, parent).await?,
        AnchorAction::DeleteChild => {
            info!(child = %child, "deleting subnamespace");
            writer.delete_namespace(&child).await?;
        }
        AnchorAction::SetState(state) => {
            writer.set_anchor_state(parent, &child, state).await?;
            let why = match state {
                AnchorState::Conflict => Some(format!(
                    "namespace {child:?} exists and is not a subnamespace of {parent:?}; it is left alone"
                )),
                AnchorState::Forbidden => {
                    Some(format!("namespace name {child:?} is excluded from canopy"))
                }
                AnchorState::Ok | AnchorState::Missing => None,
            };
            if let Some(note) = why {
                writer
                    .event(anchor.object_ref(&()), true, &format!("{state:?}"), note)
                    .await;
            }
        }
    }
    Ok(Step::Continue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{SubnamespaceAnchorSpec, SubnamespaceAnchorStatus};

    fn anchor(name: &str, finalized: bool) -> SubnamespaceAnchor {
        let mut a = SubnamespaceAnchor::new(name, SubnamespaceAnchorSpec::default());
        a.metadata.namespace = Some("team".to_owned());
        if finalized {
            a.metadata.finalizers = Some(vec![ANCHOR_FINALIZER.to_owned()]);
        }
        a
    }

    fn forest_with(child_labels: Option<BTreeMap<String, String>>) -> Forest {
        let mut f = Forest::new();
        f.set_namespace("team", BTreeMap::new(), false);
        if let Some(labels) = child_labels {
            f.set_namespace("team-dev", labels, false);
        }
        f
    }

    fn child_of_team() -> BTreeMap<String, String> {
        BTreeMap::from([(keys::SUBNAMESPACE_OF.to_owned(), "team".to_owned())])
    }

    #[test]
    fn a_new_anchor_gets_a_finalizer_and_a_child() {
        let mut a = anchor("team-dev", false);
        a.spec.labels.insert("env".to_owned(), "dev".to_owned());
        let actions = plan_anchor(&forest_with(None), "team", &a);
        assert_eq!(actions[0], AnchorAction::AddFinalizer);
        let AnchorAction::CreateChild { labels, .. } = &actions[1] else {
            panic!("expected CreateChild, got {actions:?}");
        };
        assert_eq!(labels["env"], "dev");
        assert_eq!(labels[keys::SUBNAMESPACE_OF], "team");
        assert_eq!(actions[2], AnchorAction::SetChildParent);
        assert_eq!(actions[3], AnchorAction::SetState(AnchorState::Ok));
    }

    #[test]
    fn an_unrelated_namespace_of_that_name_is_a_conflict_and_left_alone() {
        let actions = plan_anchor(
            &forest_with(Some(BTreeMap::new())),
            "team",
            &anchor("team-dev", true),
        );
        assert_eq!(actions, vec![AnchorAction::SetState(AnchorState::Conflict)]);
    }

    #[test]
    fn an_existing_child_is_ok_and_converged_needs_nothing() {
        let mut f = forest_with(Some(child_of_team()));
        f.set_hierarchy("team-dev", Some("team"), false);
        let mut a = anchor("team-dev", true);
        assert_eq!(
            plan_anchor(&f, "team", &a),
            vec![AnchorAction::SetState(AnchorState::Ok)]
        );
        a.status = Some(SubnamespaceAnchorStatus {
            status: Some(AnchorState::Ok),
            conditions: vec![],
        });
        assert!(plan_anchor(&f, "team", &a).is_empty());
    }

    #[test]
    fn excluded_names_are_forbidden() {
        let mut f = forest_with(None);
        f.set_excluded(["team-dev".to_owned()]);
        let actions = plan_anchor(&f, "team", &anchor("team-dev", true));
        assert_eq!(
            actions,
            vec![AnchorAction::SetState(AnchorState::Forbidden)]
        );
    }

    #[test]
    fn deleting_the_anchor_deletes_only_its_own_child() {
        let mut a = anchor("team-dev", true);
        a.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        let ours = plan_anchor(&forest_with(Some(child_of_team())), "team", &a);
        assert_eq!(
            ours,
            vec![AnchorAction::DeleteChild, AnchorAction::RemoveFinalizer]
        );
        let not_ours = plan_anchor(&forest_with(Some(BTreeMap::new())), "team", &a);
        assert_eq!(not_ours, vec![AnchorAction::RemoveFinalizer]);
    }
}
