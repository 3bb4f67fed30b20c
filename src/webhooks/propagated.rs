//! Admission for propagated kinds: copies are read-only to everyone but canopy, and a
//! source whose copy would overwrite an object that is not a copy is refused.

use std::collections::BTreeMap;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};

use super::Webhooks;
use super::review::Verdict;
use crate::api::keys;

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
        && crate::controllers::tenant::ROOT_OBJECTS.contains(&name)
    {
        return Verdict::Deny(format!(
            "{kind} {namespace}/{name} belongs to Tenant {tenant:?} and is written by canopy; \
             change the Tenant's spec instead"
        ));
    }
    let Some(propagation) = webhooks.propagation.as_ref() else {
        return Verdict::Allow;
    };
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Verdict::Allow;
    }
    let annotations: BTreeMap<String, String> = request
        .object
        .as_ref()
        .and_then(|o| o.metadata.annotations.clone())
        .unwrap_or_default();
    match propagation.conflicts_for_source(
        &request.resource.group,
        &request.resource.resource,
        namespace,
        name,
        &annotations,
    ) {
        Err(err) => Verdict::Deny(format!("{kind} {namespace}/{name}: {err}")),
        Ok(conflicts) if conflicts.is_empty() => Verdict::Allow,
        Ok(conflicts) => Verdict::Deny(format!(
            "{kind} {namespace}/{name} would be copied into descendants that already hold \
             an object of that name which is not a copy: {}; rename one of them, delete \
             those objects, or limit where this one goes with a propagate.canopy.dev/treeSelect \
             or propagate.canopy.dev/none annotation",
            conflicts.join(", ")
        )),
    }
}
