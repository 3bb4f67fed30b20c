//! PersistentVolumeClaims may not name a volume that belongs to another tenant.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use kube::runtime::reflector::ObjectRef;

use super::Webhooks;
use super::review::Verdict;
use crate::api::keys;
use crate::forest::volume_tenant;

pub fn review(webhooks: &Webhooks, request: &AdmissionRequest<DynamicObject>) -> Verdict {
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Verdict::Allow;
    }
    let Some(namespace) = request.namespace.as_deref() else {
        return Verdict::Allow;
    };
    let claim = match request
        .object
        .clone()
        .map(|o| o.try_parse::<PersistentVolumeClaim>())
    {
        Some(Ok(claim)) => claim,
        Some(Err(e)) => {
            return Verdict::Deny(format!(
                "PersistentVolumeClaim {:?} is malformed: {e}",
                request.name
            ));
        }
        None => return Verdict::Allow,
    };
    let Some(volume) = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty())
    else {
        return Verdict::Allow;
    };
    let Some(pv) = webhooks.state.volumes.get(&ObjectRef::new(&volume)) else {
        return Verdict::Allow;
    };
    let forest = webhooks.state.forest();
    let owner = pv
        .labels()
        .get(keys::TENANT)
        .map(String::as_str)
        .or_else(|| volume_tenant(&forest, &pv));
    let ours = forest.tenant_for(namespace);
    match owner {
        Some(owner) if Some(owner) != ours => Verdict::Deny(format!(
            "PersistentVolumeClaim {namespace}/{}: spec.volumeName {volume:?} belongs to tenant \
             {owner:?}; a volume stays with its tenant (ask a cluster admin to release it, or \
             claim another volume)",
            request.name
        )),
        _ => Verdict::Allow,
    }
}
