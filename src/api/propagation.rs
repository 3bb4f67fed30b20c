//! Rules of the contract about what propagates.

use kube::core::{ApiResource, DynamicObject};
use serde_json::Value;

use super::keys;

/// Why a source is never propagated, whatever the mode.
pub fn never_propagated(resource: &ApiResource, source: &DynamicObject) -> Option<&'static str> {
    let meta = &source.metadata;
    if meta
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(keys::INHERITED_FROM))
    {
        return Some("it is itself a copy");
    }
    if meta.finalizers.as_ref().is_some_and(|f| !f.is_empty()) {
        return Some("it has finalizers");
    }
    if meta.deletion_timestamp.is_some() {
        return Some("it is being deleted");
    }
    let core = resource.group.is_empty();
    let secret_type = || {
        source
            .data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    if core && resource.plural == "secrets" {
        match secret_type() {
            "kubernetes.io/service-account-token" => return Some("it is a service-account token"),
            "helm.sh/release.v1" => return Some("it is a Helm release record"),
            _ => {}
        }
    }
    if core && resource.plural == "configmaps" && meta.name.as_deref() == Some("kube-root-ca.crt") {
        return Some("every namespace gets its own kube-root-ca.crt");
    }
    None
}
