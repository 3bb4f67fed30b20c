//! The namespace reconciler: tree labels on the Namespace, and `status.children` and
//! conditions on its HierarchyConfiguration.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::core::ApiResource;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{debug, instrument};

use super::conditions::{self, DesiredCondition};
use super::namespace_labels::{desired_labels, label_changes};
use super::ops::{Event, Op};
use super::propagation::Propagation;
use super::propagation::conflicts;
use super::queue::Outcome;
use super::writer::Writer;
use crate::api::{
    ACTIVITIES_HALTED, BAD_CONFIGURATION, HIERARCHY_NAME, HierarchyConfiguration,
    HierarchyConfigurationStatus, PodSecurityLevel, keys, reasons,
};
use crate::forest::Forest;
use crate::forest::watch::ClusterState;

/// What a namespace needs written.
#[derive(Debug, Default, PartialEq)]
pub struct NamespacePlan {
    /// Tree labels to set (new or changed).
    pub set_labels: BTreeMap<String, String>,
    /// Tree labels to remove.
    pub remove_labels: Vec<String>,
    /// Create the (empty) HierarchyConfiguration first, to have a status to write.
    pub create_hierarchy: bool,
    /// The status to write, when it differs from the current one.
    pub status: Option<HierarchyConfigurationStatus>,
}

impl NamespacePlan {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Decides what namespace `name` needs, from the Forest and its current
/// HierarchyConfiguration. `propagation_conflicts` are the `CannotPropagateObject` lines
/// of its objects, `None` while propagation does not know them yet (after a start): then
/// the lines the current condition carries are kept, so a restart does not remove the
/// condition and add it again. Pure.
pub fn plan_namespace(
    forest: &Forest,
    name: &str,
    hierarchy: Option<&HierarchyConfiguration>,
    propagation_conflicts: Option<&[String]>,
    pod_security: impl Fn(&str) -> PodSecurityLevel,
    now: Timestamp,
) -> NamespacePlan {
    let Some(state) = forest.get(name).filter(|s| s.exists) else {
        return NamespacePlan::default();
    };
    let mut plan = NamespacePlan::default();

    let changes = label_changes(&state.labels, &desired_labels(forest, name, pod_security));
    plan.set_labels = changes.set;
    plan.remove_labels = changes.remove;

    let mut wanted = Vec::new();
    if let Some(halt) = forest.halted(name) {
        wanted.push(DesiredCondition {
            type_: ACTIVITIES_HALTED,
            status: true,
            reason: halt.reason().to_owned(),
            message: halt.message(),
        });
    }
    // One BadConfiguration condition (conditions are keyed by type) naming every problem.
    let mut problems: Vec<(&str, String)> = Vec::new();
    let anchor_parent = state
        .subnamespace_of
        .as_deref()
        .filter(|_| forest.awaiting_anchor_parent(name).is_none());
    if let Some(anchor_parent) = anchor_parent
        && forest.exists(anchor_parent)
        && !forest
            .get(anchor_parent)
            .is_some_and(|p| p.anchors.contains(name))
        && !state.deleting
    {
        // The anchor was deleted without canopy (its finalizer is canopy's alone, so only
        // while canopy was not running, or by removing the webhook): the namespace stays
        // where it is, in its tree and tenant, as HNC keeps it, and says why.
        problems.push((
            reasons::SUBNAMESPACE_ANCHOR_MISSING,
            format!(
                "the anchor {anchor_parent}/{name} of this subnamespace is missing; the \
                 namespace stays in its tree; re-create the anchor to manage it again \
                 (kubectl canopy create {name} -n {anchor_parent})"
            ),
        ));
    }
    if let Some(anchor_parent) = anchor_parent
        && state.parent.as_deref() != Some(anchor_parent)
    {
        problems.push((
            reasons::SUBNAMESPACE_PARENT_MISMATCH,
            format!(
                "this is a subnamespace of {anchor_parent:?} but its parent is {}; \
                 set spec.parent to {anchor_parent:?} or delete the anchor",
                state
                    .parent
                    .as_deref()
                    .map_or("unset".to_owned(), |p| format!("{p:?}"))
            ),
        ));
    }
    let current = hierarchy.and_then(|h| h.status.clone()).unwrap_or_default();
    let propagation_conflicts = match propagation_conflicts {
        Some(known) => known.to_vec(),
        None => reported_conflicts(&current),
    };
    problems.extend(
        propagation_conflicts
            .into_iter()
            .map(|c| (reasons::CANNOT_PROPAGATE_OBJECT, c)),
    );
    if let Some((reason, _)) = problems.first() {
        wanted.push(DesiredCondition {
            type_: BAD_CONFIGURATION,
            status: true,
            reason: (*reason).to_owned(),
            message: problems
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    let children: Vec<String> = forest
        .children(name)
        .filter(|c| forest.exists(c))
        .map(str::to_owned)
        .collect();

    let generation = hierarchy.and_then(|h| h.metadata.generation);
    let status = HierarchyConfigurationStatus {
        children,
        conditions: conditions::merge(&current.conditions, &wanted, generation, now),
    };
    if hierarchy.is_none() {
        if status != HierarchyConfigurationStatus::default() {
            plan.create_hierarchy = true;
            plan.status = Some(status);
        }
    } else if status != current {
        plan.status = Some(status);
    }
    plan
}

/// The `CannotPropagateObject` lines of the `BadConfiguration` condition in `status`.
fn reported_conflicts(status: &HierarchyConfigurationStatus) -> Vec<String> {
    status
        .conditions
        .iter()
        .filter(|c| c.type_ == BAD_CONFIGURATION && c.status == "True")
        .flat_map(|c| c.message.split("; "))
        .filter(|line| conflicts::is_message(line))
        .map(str::to_owned)
        .collect()
}

/// Reconciles one namespace.
#[instrument(skip(state, writer, propagation, name), fields(namespace = %name))]
pub async fn reconcile_namespace(
    state: &ClusterState,
    writer: &Writer,
    propagation: &Propagation,
    name: String,
) -> Outcome {
    let hierarchy = state
        .hierarchies
        .get(&ObjectRef::new(HIERARCHY_NAME).within(&name));
    let plan = plan_namespace(
        &state.forest(),
        &name,
        hierarchy.as_deref(),
        propagation.conflict_messages_for(&name).as_deref(),
        |tenant| state.pod_security_for(tenant),
        Timestamp::now(),
    );
    if plan.is_empty() {
        return Outcome::Success;
    }
    debug!(?plan, "writing");
    let reported: Vec<(String, String)> = hierarchy
        .as_ref()
        .and_then(|h| h.status.as_ref())
        .map(|s| {
            s.conditions
                .iter()
                .filter(|c| c.status == "True")
                .map(|c| (c.type_.clone(), c.reason.clone()))
                .collect()
        })
        .unwrap_or_default();
    Outcome::of_writes(
        writer
            .execute_all(namespace_ops(&name, plan, &reported))
            .await,
    )
}

/// The writes that carry out `plan` for namespace `name`, in order. Each problem the
/// status newly reports (a true `ActivitiesHalted` or `BadConfiguration` whose type and
/// reason are not among `reported`, the true conditions already written) gets a Warning
/// Event in the namespace: users are told once, not at every rewrite of the status. Pure.
pub fn namespace_ops(name: &str, plan: NamespacePlan, reported: &[(String, String)]) -> Vec<Op> {
    let news: Vec<_> = plan
        .status
        .as_ref()
        .map(|s| {
            s.conditions
                .iter()
                .filter(|c| c.status == "True")
                .filter(|c| c.type_ == ACTIVITIES_HALTED || c.type_ == BAD_CONFIGURATION)
                .filter(|c| {
                    !reported
                        .iter()
                        .any(|(t, r)| *t == c.type_ && *r == c.reason)
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut ops = Vec::new();
    if !plan.set_labels.is_empty() || !plan.remove_labels.is_empty() {
        ops.push(Op::PatchNamespaceLabels {
            name: name.to_owned(),
            set: plan.set_labels,
            remove: plan.remove_labels,
        });
    }
    if plan.create_hierarchy {
        ops.push(Op::EnsureHierarchy {
            namespace: name.to_owned(),
        });
    }
    if let Some(status) = plan.status {
        ops.push(Op::ApplyStatus {
            resource: ApiResource::erase::<HierarchyConfiguration>(&()),
            namespace: Some(name.to_owned()),
            name: HIERARCHY_NAME.to_owned(),
            status: serde_json::json!(status),
            field_manager: keys::FIELD_MANAGER,
        });
        for problem in news {
            let reference = ObjectReference {
                api_version: Some(HierarchyConfiguration::api_version(&()).into_owned()),
                kind: Some(HierarchyConfiguration::kind(&()).into_owned()),
                name: Some(HIERARCHY_NAME.to_owned()),
                namespace: Some(name.to_owned()),
                ..ObjectReference::default()
            };
            ops.push(Op::Event(Event::new(
                reference,
                true,
                &problem.reason,
                problem.message.clone(),
            )));
        }
    }
    ops
}

/// The namespaces whose HierarchyConfiguration exists, for a full resync.
pub fn namespaces_with_hierarchy(state: &ClusterState) -> Vec<String> {
    state
        .hierarchies
        .state()
        .iter()
        .filter_map(|h| h.namespace())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline(_: &str) -> PodSecurityLevel {
        PodSecurityLevel::Baseline
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).expect("valid")
    }

    fn forest() -> Forest {
        crate::forest::testing::tree("a > b")
    }

    fn hc(ns: &str, status: Option<HierarchyConfigurationStatus>) -> HierarchyConfiguration {
        let mut hc = HierarchyConfiguration::new(HIERARCHY_NAME, Default::default());
        hc.metadata.namespace = Some(ns.to_owned());
        hc.status = status;
        hc
    }

    #[test]
    fn a_child_gets_its_labels_and_the_parent_its_children() {
        let f = forest();
        let child = plan_namespace(&f, "b", Some(&hc("b", None)), Some(&[]), baseline, now());
        assert_eq!(child.set_labels.len(), 2);
        assert_eq!(child.set_labels["a.tree.canopy.dev/depth"], "1");
        assert_eq!(child.status, None, "nothing to report on b");

        let parent = plan_namespace(&f, "a", None, Some(&[]), baseline, now());
        assert!(
            parent.create_hierarchy,
            "a has a child to report but no hierarchy object"
        );
        assert_eq!(
            parent.status.map(|s| s.children),
            Some(vec!["b".to_owned()])
        );
    }

    #[test]
    fn labels_come_first_then_the_hierarchy_then_its_status_and_a_halt_is_told_once() {
        // "a" has a child to report and no HierarchyConfiguration yet.
        let plan = plan_namespace(&forest(), "a", None, Some(&[]), baseline, now());
        let kinds = |ops: &[Op]| -> Vec<&'static str> {
            ops.iter()
                .map(|op| match op {
                    Op::PatchNamespaceLabels { .. } => "labels",
                    Op::EnsureHierarchy { .. } => "create hierarchy",
                    Op::ApplyStatus { .. } => "status",
                    Op::Event(_) => "event",
                    _ => "other",
                })
                .collect()
        };
        assert_eq!(
            kinds(&namespace_ops("a", plan, &[])),
            ["labels", "create hierarchy", "status"]
        );

        // A namespace in a cycle is halted: an Event the first time, not on a rewrite.
        let mut cycle = crate::forest::testing::tree("x > y, y > x");
        cycle.set_namespace("x", BTreeMap::new(), false);
        let halted = || {
            plan_namespace(
                &cycle,
                "x",
                Some(&hc("x", None)),
                Some(&[]),
                baseline,
                now(),
            )
        };
        let first = namespace_ops("x", halted(), &[]);
        let Some(Op::Event(event)) = first.last() else {
            panic!("{first:?}");
        };
        assert!(
            event.warning && event.reason == reasons::IN_CYCLE,
            "{event:?}"
        );
        assert!(
            !namespace_ops(
                "x",
                halted(),
                &[(ACTIVITIES_HALTED.to_owned(), reasons::IN_CYCLE.to_owned())]
            )
            .iter()
            .any(|op| matches!(op, Op::Event(_)))
        );
    }

    /// A propagation conflict is a Warning Event in the namespace, once per reason.
    #[test]
    fn a_new_bad_configuration_is_told_once_in_the_namespace() {
        let conflict =
            ["cannot propagate Role \"x\" into b: a Role of that name is not a copy".to_owned()];
        let plan = || {
            plan_namespace(
                &forest(),
                "a",
                Some(&hc("a", None)),
                Some(&conflict),
                baseline,
                now(),
            )
        };
        let ops = namespace_ops("a", plan(), &[]);
        let Some(Op::Event(event)) = ops.last() else {
            panic!("{ops:?}");
        };
        assert!(event.warning, "{event:?}");
        assert_eq!(event.reason, reasons::CANNOT_PROPAGATE_OBJECT);
        assert_eq!(event.object.namespace.as_deref(), Some("a"));
        assert!(event.note.contains("is not a copy"), "{event:?}");
        let told = [(
            BAD_CONFIGURATION.to_owned(),
            reasons::CANNOT_PROPAGATE_OBJECT.to_owned(),
        )];
        assert!(
            !namespace_ops("a", plan(), &told)
                .iter()
                .any(|op| matches!(op, Op::Event(_)))
        );
    }

    #[test]
    fn a_converged_namespace_needs_nothing() {
        let mut f = forest();
        let labels = f.tree_labels("b");
        f.set_namespace("b", labels, false);
        assert!(
            plan_namespace(&f, "b", Some(&hc("b", None)), Some(&[]), baseline, now()).is_empty()
        );
        let a_status = HierarchyConfigurationStatus {
            children: vec!["b".to_owned()],
            conditions: vec![],
        };
        let labels = f.tree_labels("a");
        f.set_namespace("a", labels, false);
        assert!(
            plan_namespace(
                &f,
                "a",
                Some(&hc("a", Some(a_status))),
                Some(&[]),
                baseline,
                now()
            )
            .is_empty()
        );
    }

    #[test]
    fn the_tenant_label_follows_the_tenant_root_above() {
        let mut f = forest();
        f.set_tenant_root("acme", "a");
        let plan = plan_namespace(&f, "b", Some(&hc("b", None)), Some(&[]), baseline, now());
        assert_eq!(
            plan.set_labels.get("canopy.dev/tenant").map(String::as_str),
            Some("acme")
        );
        let mut labels = f.tree_labels("b");
        labels.insert("canopy.dev/tenant".to_owned(), "acme".to_owned());
        f.set_namespace("b", labels, false);
        f.remove_tenant("acme");
        let plan = plan_namespace(&f, "b", Some(&hc("b", None)), Some(&[]), baseline, now());
        assert_eq!(plan.remove_labels, vec!["canopy.dev/tenant".to_owned()]);
    }

    #[test]
    fn stale_tree_labels_are_removed() {
        let mut f = forest();
        let mut labels = f.tree_labels("b");
        labels.insert("old.tree.canopy.dev/depth".to_owned(), "1".to_owned());
        labels.insert("team".to_owned(), "x".to_owned());
        f.set_namespace("b", labels, false);
        let plan = plan_namespace(&f, "b", Some(&hc("b", None)), Some(&[]), baseline, now());
        assert_eq!(
            plan.remove_labels,
            vec!["old.tree.canopy.dev/depth".to_owned()]
        );
        assert!(plan.set_labels.is_empty());
    }

    #[test]
    fn a_missing_parent_halts_and_healing_clears_it() {
        let mut f = forest();
        f.set_hierarchy("b", Some("nowhere"), false);
        let plan = plan_namespace(&f, "b", Some(&hc("b", None)), Some(&[]), baseline, now());
        let status = plan.status.expect("a condition to write");
        assert_eq!(status.conditions[0].type_, "ActivitiesHalted");
        assert_eq!(status.conditions[0].reason, "ParentMissing");

        f.set_hierarchy("b", Some("a"), false);
        let healed = plan_namespace(
            &f,
            "b",
            Some(&hc("b", Some(status))),
            Some(&[]),
            baseline,
            now(),
        );
        assert_eq!(healed.status.map(|s| s.conditions.len()), Some(0));
    }

    #[test]
    fn propagation_conflicts_are_reported_on_the_source_namespace() {
        let f = forest();
        let conflict = "roles \"x\" cannot be propagated to \"b\"".to_owned();
        let plan = plan_namespace(
            &f,
            "a",
            Some(&hc("a", None)),
            Some(std::slice::from_ref(&conflict)),
            baseline,
            now(),
        );
        let status = plan.status.expect("a condition");
        let bad = status
            .conditions
            .iter()
            .find(|c| c.type_ == "BadConfiguration")
            .expect("BadConfiguration");
        assert_eq!(bad.reason, "CannotPropagateObject");
        assert_eq!(bad.message, conflict);
    }

    #[test]
    fn conflicts_not_known_yet_keep_the_reported_ones() {
        let mut f = forest();
        let labels = f.tree_labels("a");
        f.set_namespace("a", labels, false);
        let conflict = conflicts::message("roles", "x", "b");
        let before = plan_namespace(
            &f,
            "a",
            Some(&hc("a", None)),
            Some(std::slice::from_ref(&conflict)),
            baseline,
            now(),
        )
        .status
        .expect("a condition");
        let reported = hc("a", Some(before.clone()));
        let later = Timestamp::from_second(1_700_000_100).expect("valid");
        // After a restart, before propagation knows: nothing to write, nothing removed.
        assert!(plan_namespace(&f, "a", Some(&reported), None, baseline, later).is_empty());
        // Known and unchanged: nothing either.
        assert!(
            plan_namespace(
                &f,
                "a",
                Some(&reported),
                Some(std::slice::from_ref(&conflict)),
                baseline,
                later
            )
            .is_empty()
        );
        // Known and healed: removed.
        let healed = plan_namespace(&f, "a", Some(&reported), Some(&[]), baseline, later);
        assert_eq!(healed.status.map(|s| s.conditions.len()), Some(0));

        // Next to another problem, only the conflict lines are kept; the rest is decided
        // again.
        let labels = BTreeMap::from([("canopy.dev/subnamespace-of".to_owned(), "x".to_owned())]);
        let mut f = forest();
        f.set_namespace("b", labels, false);
        let both = plan_namespace(
            &f,
            "b",
            Some(&hc("b", None)),
            Some(std::slice::from_ref(&conflict)),
            baseline,
            now(),
        )
        .status
        .expect("a condition");
        assert!(both.conditions[0].message.contains("; roles \"x\""));
        let reported = hc("b", Some(both.clone()));
        let kept = plan_namespace(&f, "b", Some(&reported), None, baseline, later);
        assert_eq!(kept.status, None, "{kept:?}");
        f.set_namespace("b", f.tree_labels("b"), false);
        let mismatch_gone = plan_namespace(&f, "b", Some(&reported), None, baseline, later)
            .status
            .expect("the mismatch healed");
        assert_eq!(mismatch_gone.conditions[0].reason, "CannotPropagateObject");
        assert_eq!(mismatch_gone.conditions[0].message, conflict);
        assert_eq!(
            mismatch_gone.conditions[0].last_transition_time,
            both.conditions[0].last_transition_time,
            "still True: the transition time stays"
        );
    }

    #[test]
    fn a_subnamespace_with_another_parent_is_badly_configured() {
        let mut f = forest();
        let labels = BTreeMap::from([("canopy.dev/subnamespace-of".to_owned(), "x".to_owned())]);
        f.set_namespace("b", labels, false);
        let plan = plan_namespace(&f, "b", Some(&hc("b", None)), Some(&[]), baseline, now());
        let status = plan.status.expect("a condition");
        assert_eq!(status.conditions[0].type_, "BadConfiguration");
    }
}
