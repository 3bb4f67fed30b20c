//! SubnamespaceAnchor admission: anchors may not claim foreign or excluded namespaces,
//! nor take a subtree with them when deleted.

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};

use std::collections::BTreeSet;

use kube::ResourceExt;

use super::Webhooks;
use super::namespace::check_subtree_deletion;
use super::protected::removed_finalizer;
use super::review::Verdict;
use super::tenant::check_namespace_limit;
use crate::api::{AnchorState, keys};
use crate::forest::Forest;
use kube::runtime::reflector::ObjectRef;

/// Anchors in `tenant`'s namespaces whose namespace does not exist yet and that canopy has
/// not refused (`Forbidden`, `Conflict`): admitted, and about to become namespaces.
fn admitted_anchors(webhooks: &Webhooks, forest: &Forest, tenant: &str) -> BTreeSet<String> {
    let members = forest.tenant_namespaces(tenant);
    members
        .iter()
        .flat_map(|ns| {
            forest
                .get(ns)
                .into_iter()
                .flat_map(move |s| s.anchors.iter().map(move |a| (ns, a)))
        })
        .filter(|(_, child)| !forest.exists(child))
        .filter(|(ns, child)| {
            let anchor = webhooks
                .state
                .anchors
                .get(&ObjectRef::new(child.as_str()).within(ns));
            let state = anchor.as_ref().and_then(|a| a.status.as_ref()?.status);
            !matches!(state, Some(AnchorState::Forbidden | AnchorState::Conflict))
        })
        .map(|(_, child)| child.clone())
        .collect()
}

pub fn review(webhooks: &Webhooks, request: &AdmissionRequest<DynamicObject>) -> Verdict {
    if webhooks.is_canopy(&request.user_info) {
        return Verdict::Allow;
    }
    let Some(parent) = request.namespace.as_deref() else {
        return Verdict::Allow;
    };
    let forest = webhooks.state.forest();
    let tenant = forest
        .tenant_for(parent)
        .and_then(|t| webhooks.state.tenants.get(&ObjectRef::new(t)));
    let verdict = match request.operation {
        Operation::Create => check_labels(request)
            .or_else(|| check_create(&forest, parent, &request.name))
            .or_else(|| {
                let tenant = tenant.as_deref()?;
                let pending = admitted_anchors(webhooks, &forest, &tenant.name_any());
                check_namespace_limit(&forest, tenant, parent, &request.name, &pending)
            }),
        Operation::Delete => check_delete(&forest, parent, &request.name),
        Operation::Update => removed_finalizer(
            request.old_object.as_ref(),
            request.object.as_ref(),
            keys::ANCHOR_FINALIZER,
            &format!("anchor {parent}/{}", request.name),
        )
        .or_else(|| check_labels(request)),
        Operation::Connect => None,
    };
    verdict.map_or(Verdict::Allow, Verdict::Deny)
}

/// An anchor's `spec.labels` and `spec.annotations` are set on the new namespace by
/// canopy, under canopy's identity, so they must not carry what the requester could not
/// set themselves: canopy's own labels (a tenant label would move the child into another
/// tenant), or keys in the Kubernetes domains, which grant things (Pod Security levels,
/// node selectors for the whole namespace).
fn check_labels(request: &AdmissionRequest<DynamicObject>) -> Option<String> {
    let spec = request.object.as_ref()?.data.get("spec")?;
    let mut refused: Vec<String> = Vec::new();
    for field in ["labels", "annotations"] {
        let Some(map) = spec.get(field).and_then(|m| m.as_object()) else {
            continue;
        };
        refused.extend(
            map.keys()
                .filter(|k| keys::is_protected_label(k) || keys::is_reserved_key(k))
                .map(|k| format!("spec.{field}[{k:?}]")),
        );
    }
    (!refused.is_empty()).then(|| {
        format!(
            "anchor {:?}: {} may not be set through an anchor; canopy sets its own labels, and \
             Kubernetes-domain keys need a cluster admin",
            request.name,
            refused.join(", ")
        )
    })
}

/// Why an anchor `child` may not be created in `parent`, if it may not. Pure.
pub fn check_create(forest: &Forest, parent: &str, child: &str) -> Option<String> {
    if forest.is_excluded(parent) {
        return Some(format!(
            "namespace {parent:?} is excluded from canopy; subnamespaces cannot be created in it"
        ));
    }
    if forest.is_excluded(child) {
        return Some(format!(
            "{child:?} is an excluded namespace name; choose another name"
        ));
    }
    let state = forest.get(child).filter(|s| s.exists)?;
    if state.subnamespace_of.as_deref() == Some(parent) {
        return None; // re-creating the anchor of an existing subnamespace adopts it again
    }
    Some(format!(
        "namespace {child:?} already exists and is not a subnamespace of {parent:?}; choose \
         another name"
    ))
}

/// Why the anchor `child` in `parent` may not be deleted, if it may not. Pure.
pub fn check_delete(forest: &Forest, parent: &str, child: &str) -> Option<String> {
    let ours = forest
        .get(child)
        .is_some_and(|s| s.exists && s.subnamespace_of.as_deref() == Some(parent));
    if !ours {
        return None;
    }
    check_subtree_deletion(forest, child)
        .map(|why| format!("the anchor {parent}/{child} cannot be deleted: {why}"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn sub_of(parent: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("canopy.dev/subnamespace-of".to_owned(), parent.to_owned())])
    }

    #[test]
    fn an_existing_unrelated_namespace_cannot_be_claimed() {
        let mut f = crate::forest::testing::tree("team, taken");
        assert!(check_create(&f, "team", "taken").is_some_and(|r| r.contains("already exists")));
        assert_eq!(check_create(&f, "team", "free"), None);
        f.set_namespace("mine", sub_of("team"), false);
        assert_eq!(check_create(&f, "team", "mine"), None);
    }

    #[test]
    fn kubernetes_domain_keys_are_reserved() {
        assert!(keys::is_reserved_key("pod-security.kubernetes.io/enforce"));
        assert!(keys::is_reserved_key(
            "scheduler.alpha.kubernetes.io/node-selector"
        ));
        assert!(keys::is_reserved_key("k8s.io/x"));
        assert!(!keys::is_reserved_key("team.example.com/owner"));
        assert!(!keys::is_reserved_key("env"));
        assert!(!keys::is_reserved_key("notkubernetes.io/x"));
    }

    #[test]
    fn excluded_names_and_parents_are_refused() {
        let mut f = Forest::new();
        f.set_excluded(["kube-system".to_owned()]);
        assert!(check_create(&f, "team", "kube-system").is_some());
        assert!(check_create(&f, "kube-system", "x").is_some());
    }

    #[test]
    fn deleting_an_anchor_with_grandchildren_needs_cascading_deletion() {
        let f = crate::forest::testing::tree("team >> team-dev");
        assert_eq!(
            check_delete(&f, "team", "team-dev"),
            None,
            "no grandchildren"
        );
        let mut f = crate::forest::testing::tree("team >> team-dev >> team-dev-ci");
        assert!(check_delete(&f, "team", "team-dev").is_some_and(|r| r.contains("team-dev-ci")));
        f.set_hierarchy("team", None, true);
        assert_eq!(check_delete(&f, "team", "team-dev"), None);
    }
}
