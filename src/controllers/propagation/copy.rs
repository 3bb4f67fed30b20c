//! What a copy of a source looks like.

use std::collections::BTreeMap;

use kube::core::{ApiResource, DynamicObject};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::api::keys::{self, SOURCE_HASH};

/// The labels and annotations copies never carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Strip {
    pub labels: Vec<String>,
    pub annotations: Vec<String>,
}

/// The copy of `source` (living in `source_namespace`) that belongs in `namespace`, and
/// its digest.
pub fn desired_copy(
    resource: &ApiResource,
    source: &DynamicObject,
    source_namespace: &str,
    namespace: &str,
    strip: &Strip,
) -> (Value, String) {
    let name = source.metadata.name.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = source.metadata.labels.clone().unwrap_or_default();
    labels.retain(|k, _| !strip.labels.contains(k));
    labels.insert(keys::INHERITED_FROM.to_owned(), source_namespace.to_owned());
    let mut annotations: BTreeMap<String, String> =
        source.metadata.annotations.clone().unwrap_or_default();
    annotations.retain(|k, _| !strip.annotations.contains(k) && k != SOURCE_HASH);

    let mut body = Map::new();
    if let Value::Object(data) = &source.data {
        for (key, value) in data {
            // Status belongs to each copy's own controllers (quota usage, for one).
            if key != "status" {
                body.insert(key.clone(), value.clone());
            }
        }
    }
    let hash = digest(&labels, &annotations, &body);
    annotations.insert(SOURCE_HASH.to_owned(), hash.clone());
    let mut copy = json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
    });
    if let Value::Object(obj) = &mut copy {
        obj.extend(body);
    }
    (copy, hash)
}

fn digest(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    body: &Map<String, Value>,
) -> String {
    let mut hasher = Sha256::new();
    // serde_json writes maps in a fixed order for a given input, so equal sources give
    // equal digests.
    for part in [
        serde_json::to_vec(labels),
        serde_json::to_vec(annotations),
        serde_json::to_vec(body),
    ] {
        hasher.update(part.unwrap_or_default());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use k8s_openapi::api::rbac::v1::RoleBinding;

    use super::*;
    use crate::api::never_propagated;

    fn role_binding() -> (ApiResource, DynamicObject) {
        let ar = ApiResource::erase::<RoleBinding>(&());
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "devs", "namespace": "acme", "resourceVersion": "7",
                "labels": {"team": "a", "argocd.argoproj.io/instance": "acme"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "x"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"}]
        }))
        .expect("valid");
        (ar, obj)
    }

    #[test]
    fn a_copy_carries_content_and_origin_but_not_tracking_metadata() {
        let (ar, rb) = role_binding();
        let strip = Strip {
            labels: vec!["argocd.argoproj.io/instance".into()],
            annotations: vec!["kubectl.kubernetes.io/last-applied-configuration".into()],
        };
        let (copy, hash) = desired_copy(&ar, &rb, "acme", "acme-dev", &strip);
        assert_eq!(copy["metadata"]["namespace"], "acme-dev");
        assert_eq!(
            copy["metadata"]["labels"]["canopy.dev/inherited-from"],
            "acme"
        );
        assert_eq!(copy["metadata"]["labels"]["team"], "a");
        assert!(
            copy["metadata"]["labels"]
                .get("argocd.argoproj.io/instance")
                .is_none()
        );
        assert!(
            copy["metadata"]["annotations"]
                .get("kubectl.kubernetes.io/last-applied-configuration")
                .is_none()
        );
        assert_eq!(copy["metadata"]["annotations"][SOURCE_HASH], hash.as_str());
        assert_eq!(copy["roleRef"]["name"], "edit");
        assert!(copy["metadata"].get("resourceVersion").is_none());

        let (_, same) = desired_copy(&ar, &rb, "acme", "acme-prod", &strip);
        assert_eq!(
            hash, same,
            "the digest does not depend on the target namespace"
        );
        let mut changed = rb.clone();
        changed.data["roleRef"]["name"] = json!("admin");
        assert_ne!(
            desired_copy(&ar, &changed, "acme", "acme-dev", &strip).1,
            hash
        );
    }

    #[test]
    fn some_objects_never_propagate() {
        let (ar, mut rb) = role_binding();
        assert_eq!(never_propagated(&ar, &rb), None);
        rb.metadata.finalizers = Some(vec!["x".into()]);
        assert!(never_propagated(&ar, &rb).is_some());

        let secrets = ApiResource::erase::<Secret>(&());
        let token: DynamicObject =
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "t"}, "type": "kubernetes.io/service-account-token"}))
            .expect("valid");
        assert!(never_propagated(&secrets, &token).is_some());
        let configmaps = ApiResource::erase::<ConfigMap>(&());
        let root_ca: DynamicObject =
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-root-ca.crt"}}))
            .expect("valid");
        assert!(never_propagated(&configmaps, &root_ca).is_some());
    }
}
