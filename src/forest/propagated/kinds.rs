//! Which kinds propagate, and how: the defaults of the contract plus
//! `CanopyConfiguration.spec.resources`, resolved to API resources.

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Client;
use kube::core::ApiResource;
use kube::discovery::oneshot;

use crate::api::{PropagationMode, ResourceConfig};

/// `(group, plural)`: how configuration names a kind.
pub type KindKey = (String, String);

/// A kind canopy propagates, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct KindConfig {
    pub resource: ApiResource,
    pub mode: PropagationMode,
}

impl KindConfig {
    pub fn key(&self) -> KindKey {
        (self.resource.group.clone(), self.resource.plural.clone())
    }
}

/// A kind as kubectl names it: `secrets` for the core group, `widgets.example.com`
/// otherwise.
pub fn display(key: &KindKey) -> String {
    if key.0.is_empty() {
        key.1.clone()
    } else {
        format!("{}.{}", key.1, key.0)
    }
}

fn rbac(key: &KindKey) -> bool {
    key.0 == "rbac.authorization.k8s.io" && (key.1 == "roles" || key.1 == "rolebindings")
}

/// The kinds that propagate by default (the CRD's default `spec.resources`, plus Roles
/// and RoleBindings, which always do).
const DEFAULT_KINDS: [(&str, &str); 5] = [
    ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
    ("", "resourcequotas"),
    ("", "limitranges"),
    ("networking.k8s.io", "networkpolicies"),
];

/// The API resources of the default kinds, which need no discovery.
pub fn default_kinds() -> Vec<ApiResource> {
    DEFAULT_KINDS
        .iter()
        .filter_map(|(group, plural)| builtin(&((*group).to_owned(), (*plural).to_owned())))
        .collect()
}

/// The kinds with built-in API resources, propagated by default.
fn builtin(key: &KindKey) -> Option<ApiResource> {
    Some(match (key.0.as_str(), key.1.as_str()) {
        ("rbac.authorization.k8s.io", "roles") => ApiResource::erase::<Role>(&()),
        ("rbac.authorization.k8s.io", "rolebindings") => ApiResource::erase::<RoleBinding>(&()),
        ("", "resourcequotas") => ApiResource::erase::<ResourceQuota>(&()),
        ("", "limitranges") => ApiResource::erase::<LimitRange>(&()),
        ("networking.k8s.io", "networkpolicies") => ApiResource::erase::<NetworkPolicy>(&()),
        _ => return None,
    })
}

/// The mode each configured kind asks for; Roles and RoleBindings always propagate,
/// whatever the configuration says (as in HNC: RBAC is what makes a tree a tree).
pub fn modes(resources: &[ResourceConfig]) -> Vec<(KindKey, PropagationMode)> {
    let mut out: Vec<(KindKey, PropagationMode)> = Vec::new();
    for key in [
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
    ] {
        out.push((
            (key.0.to_owned(), key.1.to_owned()),
            PropagationMode::Propagate,
        ));
    }
    for r in resources {
        let key = (r.group.clone(), r.resource.clone());
        if rbac(&key) {
            continue;
        }
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(existing) => existing.1 = r.mode,
            None => out.push((key, r.mode)),
        }
    }
    out
}

/// Why a configured kind cannot be propagated (the kind itself is named by whoever
/// reports the error).
#[derive(Debug, thiserror::Error)]
pub enum KindError {
    #[error(
        "API group {group:?} cannot be discovered (install the CRD that serves it, or \
         correct the group in spec.resources): {source}"
    )]
    Discovery {
        group: String,
        resource: String,
        source: kube::Error,
    },
    #[error(
        "no resource {resource:?} is served in API group {group:?} (install its CRD, or \
         correct the plural resource name in spec.resources)"
    )]
    Unknown { group: String, resource: String },
    #[error(
        "{resource}.{group} is cluster-scoped; only namespaced resources can propagate \
         (remove it from spec.resources)"
    )]
    ClusterScoped { group: String, resource: String },
}

/// Resolves a kind to its API resource: built-in kinds statically, others through
/// discovery (so a CRD installed after canopy started propagates without a restart).
pub async fn resolve(client: &Client, key: &KindKey) -> Result<ApiResource, KindError> {
    if let Some(resource) = builtin(key) {
        return Ok(resource);
    }
    let (group, plural) = key;
    let err = |source| KindError::Discovery {
        group: group.clone(),
        resource: plural.clone(),
        source,
    };
    let api_group = oneshot::group(client, group).await.map_err(err)?;
    let (resource, caps) = api_group
        .recommended_resources()
        .into_iter()
        .find(|(r, _)| &r.plural == plural)
        .ok_or_else(|| KindError::Unknown {
            group: group.clone(),
            resource: plural.clone(),
        })?;
    if caps.scope != kube::discovery::Scope::Namespaced {
        return Err(KindError::ClusterScoped {
            group: group.clone(),
            resource: plural.clone(),
        });
    }
    Ok(resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(group: &str, resource: &str, mode: PropagationMode) -> ResourceConfig {
        ResourceConfig {
            group: group.into(),
            resource: resource.into(),
            mode,
        }
    }

    #[test]
    fn rbac_always_propagates_and_configuration_sets_the_rest() {
        let modes = modes(&[
            rc(
                "rbac.authorization.k8s.io",
                "roles",
                PropagationMode::Remove,
            ),
            rc("", "secrets", PropagationMode::AllowPropagate),
            rc("", "resourcequotas", PropagationMode::Ignore),
        ]);
        let of = |g: &str, r: &str| {
            modes
                .iter()
                .find(|(k, _)| k.0 == g && k.1 == r)
                .map(|(_, m)| *m)
        };
        assert_eq!(
            of("rbac.authorization.k8s.io", "roles"),
            Some(PropagationMode::Propagate)
        );
        assert_eq!(
            of("rbac.authorization.k8s.io", "rolebindings"),
            Some(PropagationMode::Propagate)
        );
        assert_eq!(of("", "secrets"), Some(PropagationMode::AllowPropagate));
        assert_eq!(of("", "resourcequotas"), Some(PropagationMode::Ignore));
        assert_eq!(
            of("", "limitranges"),
            None,
            "not configured, not propagated"
        );
    }

    #[test]
    fn kinds_are_named_as_kubectl_names_them() {
        assert_eq!(display(&("".into(), "secrets".into())), "secrets");
        assert_eq!(
            display(&("example.com".into(), "widgets".into())),
            "widgets.example.com"
        );
    }

    #[test]
    fn every_default_kind_is_built_in() {
        assert_eq!(default_kinds().len(), DEFAULT_KINDS.len());
    }

    #[test]
    fn builtin_kinds_need_no_discovery() {
        for (g, r) in [
            ("", "resourcequotas"),
            ("", "limitranges"),
            ("networking.k8s.io", "networkpolicies"),
        ] {
            assert!(builtin(&(g.into(), r.into())).is_some(), "{g}/{r}");
        }
    }
}
