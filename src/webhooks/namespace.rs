//! Namespace admission: protected labels on every write path, and deletions that would
//! bypass an anchor or take a subtree with them.

use std::collections::BTreeMap;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};

use super::Webhooks;
use super::protected::changed_protected_labels;
use super::review::Verdict;
use crate::api::keys;
use crate::forest::Forest;

fn labels(obj: Option<&DynamicObject>) -> BTreeMap<String, String> {
    obj.and_then(|o| o.metadata.labels.clone())
        .unwrap_or_default()
}

pub fn review(webhooks: &Webhooks, request: &AdmissionRequest<DynamicObject>) -> Verdict {
    if webhooks.is_canopy(&request.user_info) {
        return Verdict::Allow;
    }
    let name = request.name.as_str();
    match request.operation {
        // Every patch type, server-side apply, and the status and finalize subresources
        // all reach us as an UPDATE with both objects, so one comparison covers them all.
        Operation::Create | Operation::Update => {
            let (old, new) = (
                labels(request.old_object.as_ref()),
                labels(request.object.as_ref()),
            );
            let mut changed = changed_protected_labels(&old, &new);
            // In a tenant's namespaces the Pod Security levels are the Tenant's: lowering
            // them would let privileged Pods in, which reach the node.
            let in_tenant = webhooks.state.forest().tenant_of(name).is_some()
                || old.contains_key(keys::TENANT)
                || new.contains_key(keys::TENANT);
            let pod_security = if in_tenant {
                changed_pod_security_labels(&old, &new)
            } else {
                Vec::new()
            };
            if changed.is_empty() && pod_security.is_empty() {
                Verdict::Allow
            } else if changed.is_empty() {
                Verdict::Deny(format!(
                    "namespace {name:?}: only canopy may set the labels {} in a tenant's \
                     namespace; a cluster admin sets the level with the Tenant's \
                     spec.podSecurity",
                    pod_security.join(", ")
                ))
            } else {
                changed.extend(pod_security);
                let via = request
                    .sub_resource
                    .as_deref()
                    .map(|s| format!(" (through the {s} subresource)"))
                    .unwrap_or_default();
                Verdict::Deny(format!(
                    "namespace {name:?}: only canopy may set the labels {}{via}; they follow \
                     the namespace's place in its tree and tenant (change the parent with a \
                     HierarchyConfiguration instead)",
                    changed.join(", ")
                ))
            }
        }
        Operation::Delete => {
            check_delete(&webhooks.state.forest(), name).map_or(Verdict::Allow, Verdict::Deny)
        }
        Operation::Connect => Verdict::Allow,
    }
}

/// `pod-security.kubernetes.io/*` labels that differ between `old` and `new`.
fn changed_pod_security_labels(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut changed: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| k.starts_with(keys::POD_SECURITY_PREFIX) && old.get(*k) != new.get(*k))
        .cloned()
        .collect();
    changed.sort();
    changed.dedup();
    changed
}

/// Why `namespace` may not be deleted by a user, if it may not. Pure.
pub fn check_delete(forest: &Forest, namespace: &str) -> Option<String> {
    let state = forest.get(namespace)?;
    if let Some(parent) = state.subnamespace_of.as_deref()
        && forest
            .get(parent)
            .is_some_and(|p| p.anchors.contains(namespace))
    {
        return Some(format!(
            "namespace {namespace:?} is a subnamespace of {parent:?}; delete it through its \
             anchor: kubectl delete subnamespaceanchor {namespace} -n {parent}"
        ));
    }
    check_subtree_deletion(forest, namespace)
}

/// Refuses deleting `namespace` when that would delete subnamespaces below it, unless
/// cascading deletion is allowed on it or an ancestor.
pub fn check_subtree_deletion(forest: &Forest, namespace: &str) -> Option<String> {
    let subnamespaces: Vec<&str> = forest
        .children(namespace)
        .filter(|c| forest.get(c).and_then(|s| s.subnamespace_of.as_deref()) == Some(namespace))
        .collect();
    if subnamespaces.is_empty() || forest.allows_cascading_deletion(namespace) {
        return None;
    }
    Some(format!(
        "deleting namespace {namespace:?} would delete its subnamespaces {}; set \
         spec.allowCascadingDeletion: true in its HierarchyConfiguration (kubectl canopy set \
         {namespace} --allow-cascading-deletion) or delete them first",
        subnamespaces.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forest() -> Forest {
        crate::forest::testing::tree("team >> team-dev")
    }

    #[test]
    fn an_anchored_subnamespace_is_deleted_through_its_anchor() {
        let refusal = check_delete(&forest(), "team-dev").expect("refused");
        assert!(
            refusal.contains("kubectl delete subnamespaceanchor team-dev -n team"),
            "{refusal}"
        );
        let mut f = forest();
        f.remove_anchor("team", "team-dev");
        assert_eq!(check_delete(&f, "team-dev"), None);
    }

    #[test]
    fn a_parent_of_subnamespaces_needs_cascading_deletion() {
        let mut f = forest();
        assert!(check_delete(&f, "team").is_some_and(|r| r.contains("team-dev")));
        f.set_hierarchy("team", None, true);
        assert_eq!(check_delete(&f, "team"), None);
    }

    #[test]
    fn unknown_namespaces_may_go() {
        assert_eq!(check_delete(&forest(), "elsewhere"), None);
    }
}
