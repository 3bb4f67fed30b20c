//! PersistentVolumes stay with their tenant: each bound volume is labelled with the tenant
//! of the namespace its claim lives in, so a claim from another tenant can be refused
//! (webhooks/claims.rs) even after the first claim is gone.

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tracing::instrument;

use super::ops::Op;
use super::queue::Outcome;
use super::writer::Writer;
use crate::api::keys;
use crate::forest::Forest;
use crate::forest::watch::ClusterState;

/// The label change a volume needs: `Some(Some(t))` set, `Some(None)` remove. Pure.
pub fn plan_volume(forest: &Forest, pv: &PersistentVolume) -> Option<Option<String>> {
    let current = pv.labels().get(keys::TENANT).map(String::as_str);
    let bound = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some();
    let desired = crate::forest::volume_tenant(forest, pv);
    match (bound, desired) {
        (true, Some(t)) if current != Some(t) => Some(Some(t.to_owned())),
        // Unbound: the volume may be claimed anew; bound outside any tenant: no tenant.
        (false, _) | (true, None) if current.is_some() => Some(None),
        _ => None,
    }
}

#[instrument(skip(state, writer, name), fields(volume = %name))]
pub async fn reconcile_volume(state: &ClusterState, writer: &Writer, name: String) -> Outcome {
    let Some(pv) = state.volumes.get(&ObjectRef::new(&name)) else {
        return Outcome::Success;
    };
    let Some(change) = plan_volume(&state.forest(), &pv) else {
        return Outcome::Success;
    };
    let label = Op::LabelVolume {
        name,
        tenant: change,
    };
    Outcome::of_writes(writer.execute_all(vec![label]).await)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn pv(claim_namespace: Option<&str>, tenant_label: Option<&str>) -> PersistentVolume {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pv", "labels": tenant_label.map(|t| BTreeMap::from([("canopy.dev/tenant", t)]))},
            "spec": {"claimRef": claim_namespace.map(|ns| serde_json::json!({"namespace": ns, "name": "data"}))},
        }))
        .expect("valid")
    }

    #[test]
    fn a_bound_volume_takes_its_claims_tenant_and_loses_it_when_released() {
        let f = crate::forest::testing::tree("acme*");
        assert_eq!(
            plan_volume(&f, &pv(Some("acme"), None)),
            Some(Some("acme".into()))
        );
        assert_eq!(plan_volume(&f, &pv(Some("acme"), Some("acme"))), None);
        assert_eq!(plan_volume(&f, &pv(None, Some("acme"))), Some(None));
        assert_eq!(plan_volume(&f, &pv(Some("elsewhere"), None)), None);
    }
}
