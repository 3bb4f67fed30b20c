//! The SubnamespaceAnchor reconciler: creates the child namespace, reports on it, and
//! deletes it when the anchor goes.

use std::collections::BTreeMap;

use kube::core::ApiResource;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{debug, instrument, warn};

use super::namespace_labels::new_subnamespace_labels;
use super::ops::{Event, Executed, Op};
use super::queue::Outcome;
use super::writer::{WriteError, Writer};
use crate::api::{AnchorState, PodSecurityLevel, SubnamespaceAnchor, events, keys, reasons};
use crate::forest::Forest;
use crate::forest::watch::ClusterState;

mod budget;
pub use budget::NamespaceBudget;

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
    SetState(AnchorState, Reason),
}

/// Why an anchor has its state: the condition's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    pub reason: &'static str,
    pub message: String,
}

/// The `maxNamespaces` of the tenant a new subnamespace would join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceLimit {
    pub tenant: String,
    pub max: u32,
}

impl NamespaceLimit {
    fn refusal(&self, count: usize) -> Reason {
        Reason {
            reason: reasons::MAX_NAMESPACES_REACHED,
            message: format!(
                "tenant {:?} allows at most {} namespaces (root included) and has {count}; \
                 delete one, or ask a cluster admin to raise spec.maxNamespaces of Tenant {:?}",
                self.tenant, self.max, self.tenant
            ),
        }
    }
}

/// Decides what anchor `anchor` (in namespace `parent`) needs, from the Forest, the
/// `maxNamespaces` of its tenant, and the tenants' Pod Security levels. Pure.
pub fn plan_anchor(
    forest: &Forest,
    parent: &str,
    anchor: &SubnamespaceAnchor,
    limit: Option<&NamespaceLimit>,
    pod_security: impl Fn(&str) -> PodSecurityLevel,
) -> Vec<AnchorAction> {
    let child = anchor.name_any();
    let child_state = forest.get(&child).filter(|s| s.exists);
    let is_our_child = child_state.is_some_and(|s| s.subnamespace_of.as_deref() == Some(parent));
    let has_finalizer = anchor
        .finalizers()
        .iter()
        .any(|f| f == keys::ANCHOR_FINALIZER);
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
    let ok = || Reason {
        reason: reasons::CREATED,
        message: format!("namespace {child:?} is a subnamespace of {parent:?}"),
    };
    let (state, reason) = if forest.is_excluded(&child) || forest.is_excluded(parent) {
        let message = format!(
            "namespace {child:?} or {parent:?} is excluded from canopy; subnamespaces are \
             never created there"
        );
        let reason = Reason {
            reason: reasons::EXCLUDED_NAMESPACE,
            message,
        };
        (AnchorState::Forbidden, reason)
    } else if is_our_child {
        if forest.parent(&child) != Some(parent) {
            actions.push(AnchorAction::SetChildParent);
        }
        (AnchorState::Ok, ok())
    } else if child_state.is_some() {
        let message = format!(
            "namespace {child:?} exists and is not a subnamespace of {parent:?}; it is left alone"
        );
        (
            AnchorState::Conflict,
            Reason {
                reason: reasons::CONFLICT,
                message,
            },
        )
    } else if let Some(refusal) = limit.and_then(|limit| {
        let count = forest.tenant_namespaces(&limit.tenant).len();
        (count >= limit.max as usize).then(|| limit.refusal(count))
    }) {
        (AnchorState::Forbidden, refusal)
    } else {
        // Protected labels are refused at admission; an anchor admitted before that rule
        // still never gets canopy to set them on its behalf.
        let mut labels = anchor.spec.labels.clone();
        labels.retain(|k, _| !keys::is_protected_label(k) && !keys::is_reserved_key(k));
        labels.extend(new_subnamespace_labels(
            forest,
            &child,
            parent,
            pod_security,
        ));
        let mut annotations = anchor.spec.annotations.clone();
        annotations.retain(|k, _| !keys::is_reserved_key(k));
        actions.push(AnchorAction::CreateChild {
            labels,
            annotations,
        });
        actions.push(AnchorAction::SetChildParent);
        (AnchorState::Ok, ok())
    };
    if anchor.status.as_ref().and_then(|s| s.status) != Some(state) {
        actions.push(AnchorAction::SetState(state, reason));
    }
    actions
}

/// Reconciles one anchor.
// The key is shown as `namespace` and `anchor` (its Debug form is unreadable, and a field
// called `name` would clash with the span's own name in JSON logs).
#[instrument(skip(state, writer, budget, key), fields(namespace = %key.namespace.as_deref().unwrap_or_default(), anchor = %key.name))]
pub async fn reconcile_anchor(
    state: &ClusterState,
    writer: &Writer,
    budget: &NamespaceBudget,
    key: ObjectRef<SubnamespaceAnchor>,
) -> Outcome {
    let Some(anchor) = state.anchors.get(&key) else {
        return Outcome::Success; // deleted; nothing left to do
    };
    let parent = key.namespace.clone().unwrap_or_default();
    let limit = namespace_limit(state, &parent);
    let actions = plan_anchor(
        &state.forest(),
        &parent,
        &anchor,
        limit.as_ref(),
        |tenant| state.pod_security_for(tenant),
    );
    for action in actions {
        debug!(?action, "applying");
        let step = match (&action, &limit) {
            // The one place a tenant grows: reserve a place under the limit first, so
            // anchors reconciled at the same time cannot all see room for themselves.
            (AnchorAction::CreateChild { .. }, Some(limit)) => {
                let counted = state.forest().tenant_namespaces(&limit.tenant);
                match budget.reserve(limit, &anchor.name_any(), &counted) {
                    Ok(()) => {
                        let result = apply(writer, &parent, &anchor, action).await;
                        if !matches!(result, Ok(Executed::Done)) {
                            budget.release(&limit.tenant, &anchor.name_any());
                        }
                        result
                    }
                    Err(refusal) => {
                        let forbidden = AnchorAction::SetState(AnchorState::Forbidden, refusal);
                        apply(writer, &parent, &anchor, forbidden)
                            .await
                            .map(|_| Executed::Replan)
                    }
                }
            }
            _ => apply(writer, &parent, &anchor, action).await,
        };
        match step {
            Ok(Executed::Done) => {}
            // Someone else's namespace of that name appeared first, or the tenant is
            // full (the anchor is Forbidden): look again later.
            Ok(Executed::Replan) => return Outcome::Retry,
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
    // A tenant that is full today may have room later (a namespace deleted, the limit
    // raised): look again, with the queue's backoff (at most a minute).
    let waiting = limit.is_some_and(|limit| {
        let forest = state.forest();
        !forest.exists(&anchor.name_any())
            && forest.tenant_namespaces(&limit.tenant).len() >= limit.max as usize
    });
    if waiting {
        return Outcome::Retry;
    }
    Outcome::Success
}

/// The limit of the tenant that a subnamespace of `parent` joins, if it has one.
fn namespace_limit(state: &ClusterState, parent: &str) -> Option<NamespaceLimit> {
    let tenant = state.forest().tenant_for(parent)?.to_owned();
    let max = state
        .tenants
        .get(&ObjectRef::new(&tenant))?
        .spec
        .max_namespaces?;
    Some(NamespaceLimit { tenant, max })
}

async fn apply(
    writer: &Writer,
    parent: &str,
    anchor: &SubnamespaceAnchor,
    action: AnchorAction,
) -> Result<Executed, WriteError> {
    writer.execute_all(anchor_ops(parent, anchor, action)).await
}

/// The writes that carry out one action on `anchor` (in namespace `parent`). Pure.
pub fn anchor_ops(parent: &str, anchor: &SubnamespaceAnchor, action: AnchorAction) -> Vec<Op> {
    let child = anchor.name_any();
    let finalizers = |finalizers: Vec<String>| Op::SetFinalizers {
        resource: ApiResource::erase::<SubnamespaceAnchor>(&()),
        namespace: Some(parent.to_owned()),
        name: child.clone(),
        finalizers,
        resource_version: anchor.resource_version().unwrap_or_default(),
    };
    match action {
        AnchorAction::AddFinalizer => {
            let mut with_ours = anchor.finalizers().to_vec();
            with_ours.push(keys::ANCHOR_FINALIZER.to_owned());
            vec![finalizers(with_ours)]
        }
        AnchorAction::RemoveFinalizer => vec![finalizers(
            anchor
                .finalizers()
                .iter()
                .filter(|f| *f != keys::ANCHOR_FINALIZER)
                .cloned()
                .collect(),
        )],
        // Someone else's namespace of that name may appear first: it is never touched
        // (no parent is set on it); the next pass, from the watch, reports Conflict.
        AnchorAction::CreateChild {
            labels,
            annotations,
        } => vec![Op::CreateNamespace {
            name: child.clone(),
            labels,
            annotations,
            created: Some(Event::new(
                anchor.object_ref(&()),
                false,
                events::SUBNAMESPACE_CREATED,
                format!("created namespace {child:?} under {parent:?}"),
            )),
            replan_if_exists: true,
        }],
        AnchorAction::SetChildParent => vec![Op::SetParent {
            namespace: child,
            parent: parent.to_owned(),
        }],
        AnchorAction::DeleteChild => vec![Op::DeleteNamespace { name: child }],
        AnchorAction::SetState(state, reason) => {
            let mut ops = vec![Op::SetAnchorState {
                namespace: parent.to_owned(),
                name: child,
                state,
                reason: reason.reason,
                message: reason.message.clone(),
            }];
            if matches!(state, AnchorState::Conflict | AnchorState::Forbidden) {
                ops.push(Op::Event(Event::new(
                    anchor.object_ref(&()),
                    true,
                    &format!("{state:?}"),
                    reason.message,
                )));
            }
            ops
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{SubnamespaceAnchorSpec, SubnamespaceAnchorStatus, keys};

    fn baseline(_: &str) -> PodSecurityLevel {
        PodSecurityLevel::Baseline
    }

    /// The states in `actions`, without their reasons.
    fn states(actions: &[AnchorAction]) -> Vec<AnchorState> {
        actions
            .iter()
            .filter_map(|a| match a {
                AnchorAction::SetState(state, _) => Some(*state),
                _ => None,
            })
            .collect()
    }

    fn anchor(name: &str, finalized: bool) -> SubnamespaceAnchor {
        let mut a = SubnamespaceAnchor::new(name, SubnamespaceAnchorSpec::default());
        a.metadata.namespace = Some("team".to_owned());
        if finalized {
            a.metadata.finalizers = Some(vec![keys::ANCHOR_FINALIZER.to_owned()]);
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
        let actions = plan_anchor(&forest_with(None), "team", &a, None, baseline);
        assert_eq!(actions[0], AnchorAction::AddFinalizer);
        let AnchorAction::CreateChild { labels, .. } = &actions[1] else {
            panic!("expected CreateChild, got {actions:?}");
        };
        assert_eq!(labels["env"], "dev");
        assert_eq!(labels[keys::SUBNAMESPACE_OF], "team");
        assert_eq!(actions[2], AnchorAction::SetChildParent);
        assert_eq!(states(&actions[3..]), vec![AnchorState::Ok]);
    }

    #[test]
    fn an_unrelated_namespace_of_that_name_is_a_conflict_and_left_alone() {
        let actions = plan_anchor(
            &forest_with(Some(BTreeMap::new())),
            "team",
            &anchor("team-dev", true),
            None,
            baseline,
        );
        assert_eq!(actions.len(), 1);
        assert_eq!(states(&actions), vec![AnchorState::Conflict]);
    }

    #[test]
    fn an_existing_child_is_ok_and_converged_needs_nothing() {
        let mut f = forest_with(Some(child_of_team()));
        f.set_hierarchy("team-dev", Some("team"), false);
        let mut a = anchor("team-dev", true);
        assert_eq!(
            states(&plan_anchor(&f, "team", &a, None, baseline)),
            vec![AnchorState::Ok]
        );
        a.status = Some(SubnamespaceAnchorStatus {
            status: Some(AnchorState::Ok),
            conditions: vec![],
        });
        assert!(plan_anchor(&f, "team", &a, None, baseline).is_empty());
    }

    #[test]
    fn excluded_names_are_forbidden() {
        let mut f = forest_with(None);
        f.set_excluded(["team-dev".to_owned()]);
        let actions = plan_anchor(&f, "team", &anchor("team-dev", true), None, baseline);
        assert_eq!(states(&actions), vec![AnchorState::Forbidden]);
    }

    #[test]
    fn deleting_the_anchor_deletes_only_its_own_child() {
        let mut a = anchor("team-dev", true);
        a.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        let ours = plan_anchor(
            &forest_with(Some(child_of_team())),
            "team",
            &a,
            None,
            baseline,
        );
        assert_eq!(
            ours,
            vec![AnchorAction::DeleteChild, AnchorAction::RemoveFinalizer]
        );
        let not_ours = plan_anchor(
            &forest_with(Some(BTreeMap::new())),
            "team",
            &a,
            None,
            baseline,
        );
        assert_eq!(not_ours, vec![AnchorAction::RemoveFinalizer]);
    }

    #[test]
    fn a_full_tenant_gets_no_new_namespace() {
        let mut f = forest_with(None);
        f.set_tenant_root("acme", "team");
        let limit = NamespaceLimit {
            tenant: "acme".to_owned(),
            max: 1,
        };
        let actions = plan_anchor(
            &f,
            "team",
            &anchor("team-dev", true),
            Some(&limit),
            baseline,
        );
        assert_eq!(states(&actions), vec![AnchorState::Forbidden]);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, AnchorAction::CreateChild { .. }))
        );
        let room = NamespaceLimit { max: 2, ..limit };
        let actions = plan_anchor(&f, "team", &anchor("team-dev", true), Some(&room), baseline);
        let Some(AnchorAction::CreateChild { labels, .. }) = actions.first() else {
            panic!("expected CreateChild, got {actions:?}");
        };
        // Created into its tenant and tree, with its Pod Security level.
        assert_eq!(labels[keys::TENANT], "acme");
        assert_eq!(labels["team.tree.canopy.dev/depth"], "1");
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline");
    }
}
