//! PersistentVolumes in the model: a volume belongs to the tenant of its claim.

use k8s_openapi::api::core::v1::PersistentVolume;

use super::Forest;

/// The tenant a volume belongs to: that of its claim's namespace.
pub fn volume_tenant<'a>(forest: &'a Forest, pv: &PersistentVolume) -> Option<&'a str> {
    let claim_namespace = pv.spec.as_ref()?.claim_ref.as_ref()?.namespace.as_deref()?;
    forest.tenant_for(claim_namespace)
}
