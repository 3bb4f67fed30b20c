//! Admission for propagated kinds: copies are read-only to everyone but canopy, and a
//! source whose copy would overwrite an object that is not a copy is refused (on update,
//! only when the update adds such a namespace: see `new_conflicts`).

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};

use super::Webhooks;
use super::review::Verdict;
use crate::api::keys;
use crate::forest::propagated::SourceCheck;

fn inherited_from(obj: Option<&DynamicObject>) -> Option<String> {
    obj?.metadata
        .labels
        .as_ref()?
        .get(keys::INHERITED_FROM)
        .cloned()
}

pub fn review(webhooks: &Webhooks, request: &AdmissionRequest<DynamicObject>) -> Verdict {
    if webhooks.is_canopy(&request.user_info) {
        return Verdict::Allow;
    }
    let Some(namespace) = request.namespace.as_deref() else {
        return Verdict::Allow;
    };
    let kind = request.kind.kind.as_str();
    let name = request.name.as_str();
    let old_source = inherited_from(request.old_object.as_ref());
    let new_source = inherited_from(request.object.as_ref());
    if let Some(source) = old_source.as_ref().or(new_source.as_ref()) {
        if request.operation == Operation::Delete
            && webhooks
                .state
                .forest()
                .get(namespace)
                .is_none_or(|s| s.deleting)
        {
            return Verdict::Allow; // the namespace is going, and its copies with it
        }
        let what = match (&old_source, &new_source) {
            (None, Some(_)) => format!(
                "only canopy may set the {} label; it marks copies",
                keys::INHERITED_FROM
            ),
            _ => format!(
                "it is a copy of {kind} {name:?} from namespace {source:?} and is read-only; \
                 change or delete the source there (or exclude this namespace with a \
                 propagate.canopy.dev/treeSelect or /select annotation on it)"
            ),
        };
        return Verdict::Deny(format!("{kind} {namespace}/{name}: {what}"));
    }
    if let Some(tenant) = webhooks.state.forest().tenant_rooted_at(namespace)
        && crate::api::is_root_object(&request.resource.group, &request.resource.resource, name)
    {
        return Verdict::Deny(format!(
            "{kind} {namespace}/{name} belongs to Tenant {tenant:?} and is written by canopy; \
             change the Tenant's spec instead"
        ));
    }
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Verdict::Allow;
    }
    let Some(object) = request.object.as_ref() else {
        return Verdict::Allow;
    };
    let forest = webhooks.state.forest();
    let conflicts_of = |source: &DynamicObject| {
        webhooks.state.kinds.conflicts_for_source(
            &forest,
            &request.resource.group,
            &request.resource.resource,
            namespace,
            source,
        )
    };
    let conflicts = match conflicts_of(object) {
        Err(err) => return Verdict::Deny(format!("{kind} {namespace}/{name}: {err}")),
        // canopy cannot read the kind now: the check is skipped, not failed closed (see
        // `PropagatedKinds::conflicts_for_source`); the writer is told.
        Ok(SourceCheck::Unchecked(resource)) => {
            return Verdict::Warn(vec![format!(
                "{kind} {namespace}/{name}: canopy cannot read {resource} now (see the \
                 BadConfiguration condition of CanopyConfiguration config), so it did not \
                 check whether copies of this object would overwrite objects in descendant \
                 namespaces; it never overwrites them, and reports such a conflict once it \
                 can read {resource}"
            )]);
        }
        Ok(SourceCheck::Checked(conflicts)) => conflicts,
    };
    // An old object whose annotations are invalid was copied nowhere: no conflict to keep.
    let old_conflicts = match (&request.operation, request.old_object.as_ref()) {
        (Operation::Update, Some(old)) => Some(match conflicts_of(old) {
            Ok(SourceCheck::Checked(conflicts)) => conflicts,
            _ => Vec::new(),
        }),
        _ => None,
    };
    let refused = new_conflicts(old_conflicts.as_deref(), &conflicts);
    if refused.is_empty() {
        return Verdict::Allow;
    }
    let what = if old_conflicts.is_some() {
        ": this change would also copy it into descendants"
    } else {
        " would be copied into descendants"
    };
    Verdict::Deny(format!(
        "{kind} {namespace}/{name}{what} that already hold an object of that name which is \
         not a copy: {}; rename one of them, delete those objects, or limit where this one \
         goes with a propagate.canopy.dev/treeSelect or propagate.canopy.dev/none annotation",
        refused.join(", ")
    ))
}

/// The conflicting namespaces that refuse a source: on CREATE (`old` is `None`) every one
/// of `new`; on UPDATE only those the old object did not conflict in already, so an
/// update that keeps or narrows an existing conflict (a re-apply, a revoked subject, a
/// label) is admitted and the conflict stays reported by the controller, while one that
/// spreads it to another namespace is refused. Pure.
pub fn new_conflicts(old: Option<&[String]>, new: &[String]) -> Vec<String> {
    new.iter()
        .filter(|ns| old.is_none_or(|old| !old.contains(ns)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CanopyConfigurationSpec;
    use crate::forest::watch::ClusterState;
    use kube::core::admission::AdmissionReview;
    use serde_json::{Value, json};

    fn webhooks() -> Webhooks {
        let forest = crate::forest::testing::tree("acme*, acme-dev");
        Webhooks::detached(
            ClusterState::detached(forest, CanopyConfigurationSpec::default()),
            "system:serviceaccount:canopy-system:canopy".into(),
        )
    }

    /// A request by a namespace admin for `resource` (a `(group, version, plural, kind)`).
    fn request(
        resource: (&str, &str, &str, &str),
        operation: &str,
        namespace: &str,
        name: &str,
        old: Option<Value>,
        new: Option<Value>,
    ) -> AdmissionRequest<DynamicObject> {
        let (group, version, plural, kind) = resource;
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "1",
                "kind": {"group": group, "version": version, "kind": kind},
                "resource": {"group": group, "version": version, "resource": plural},
                "operation": operation,
                "namespace": namespace,
                "name": name,
                "userInfo": {"username": "alice", "groups": ["acme-admins"]},
                "object": new,
                "oldObject": old,
            }
        });
        let review: AdmissionReview<DynamicObject> =
            serde_json::from_value(review).expect("a review");
        review.try_into().expect("a request")
    }

    fn object(kind: &str, name: &str, labels: Value) -> Value {
        json!({"apiVersion": "v1", "kind": kind,
               "metadata": {"name": name, "namespace": "acme-dev", "labels": labels}})
    }

    const CONFIGMAPS: (&str, &str, &str, &str) = ("", "v1", "configmaps", "ConfigMap");

    #[test]
    fn copies_of_any_kind_are_read_only() {
        let w = webhooks();
        let copy = object(
            "ConfigMap",
            "settings",
            json!({keys::INHERITED_FROM: "acme"}),
        );
        let edited = object("ConfigMap", "settings", json!({}));
        for (op, old, new) in [
            ("UPDATE", Some(copy.clone()), Some(copy.clone())),
            ("UPDATE", Some(copy.clone()), Some(edited.clone())),
            ("DELETE", Some(copy.clone()), None),
            ("CREATE", None, Some(copy.clone())),
        ] {
            let verdict = review(
                &w,
                &request(CONFIGMAPS, op, "acme-dev", "settings", old, new),
            );
            assert!(matches!(verdict, Verdict::Deny(_)), "{op}: {verdict:?}");
        }
        let local = review(
            &w,
            &request(
                CONFIGMAPS,
                "CREATE",
                "acme-dev",
                "settings",
                None,
                Some(edited),
            ),
        );
        assert!(matches!(local, Verdict::Allow), "{local:?}");
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_create_is_refused_for_every_conflict() {
        assert_eq!(new_conflicts(None, &names(&["a", "b"])), names(&["a", "b"]));
        assert!(new_conflicts(None, &[]).is_empty());
    }

    #[test]
    fn an_update_is_refused_only_for_new_conflicts() {
        let old = names(&["a", "b"]);
        // Re-applied, narrowed, healed: nothing new.
        for new in [names(&["a", "b"]), names(&["b"]), names(&[])] {
            assert!(new_conflicts(Some(&old), &new).is_empty(), "{new:?}");
        }
        // Widened: only the new one is named.
        assert_eq!(
            new_conflicts(Some(&old), &names(&["a", "b", "c"])),
            names(&["c"])
        );
        // Moved: one healed, one new; the new one refuses.
        assert_eq!(
            new_conflicts(Some(&names(&["a"])), &names(&["c"])),
            names(&["c"])
        );
        // An old object that conflicted nowhere: every conflict is new.
        assert_eq!(new_conflicts(Some(&[]), &names(&["a"])), names(&["a"]));
    }

    #[test]
    fn root_objects_are_protected_by_kind_and_name() {
        let w = webhooks();
        let in_root = |resource, kind| {
            let mut obj = object(kind, "canopy-quota", json!({}));
            obj["metadata"]["namespace"] = json!("acme");
            review(
                &w,
                &request(
                    resource,
                    "UPDATE",
                    "acme",
                    "canopy-quota",
                    Some(obj.clone()),
                    Some(obj),
                ),
            )
        };
        let quota = in_root(
            ("", "v1", "resourcequotas", "ResourceQuota"),
            "ResourceQuota",
        );
        assert!(matches!(quota, Verdict::Deny(_)), "{quota:?}");
        // A ConfigMap of the same name is the owners' own.
        let configmap = in_root(CONFIGMAPS, "ConfigMap");
        assert!(matches!(configmap, Verdict::Allow), "{configmap:?}");
    }
}
