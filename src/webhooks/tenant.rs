//! Tenant admission: a root namespace belongs to one Tenant and is never excluded, and a
//! tenant's subnamespaces stay within `maxNamespaces`.

use std::collections::BTreeSet;

use kube::ResourceExt;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};

use super::Webhooks;
use super::protected::removed_finalizer;
use super::review::Verdict;
use crate::api::{Tenant, keys};
use crate::forest::Forest;

pub fn review(webhooks: &Webhooks, request: &AdmissionRequest<DynamicObject>) -> Verdict {
    // canopy's own writes (finalizers) must never be blocked by a later configuration.
    if webhooks.is_canopy(&request.user_info)
        || !matches!(request.operation, Operation::Create | Operation::Update)
    {
        return Verdict::Allow;
    }
    if let Some(refusal) = removed_finalizer(
        request.old_object.as_ref(),
        request.object.as_ref(),
        keys::TENANT_FINALIZER,
        &format!("Tenant {:?}", request.name),
    ) {
        return Verdict::Deny(refusal);
    }
    let tenant = match request.object.clone().map(|o| o.try_parse::<Tenant>()) {
        Some(Ok(tenant)) => tenant,
        Some(Err(e)) => {
            return Verdict::Deny(format!("Tenant {:?} is malformed: {e}", request.name));
        }
        None => return Verdict::Allow,
    };
    let others: Vec<(String, String)> = webhooks
        .state
        .tenants
        .state()
        .iter()
        .filter(|t| t.name_any() != tenant.name_any())
        .map(|t| (t.name_any(), t.root_namespace()))
        .collect();
    check_tenant(&webhooks.state.forest(), &tenant, &others).map_or(Verdict::Allow, Verdict::Deny)
}

/// Why `tenant` may not be admitted, given the other Tenants `(name, root)`. Pure.
pub fn check_tenant(
    forest: &Forest,
    tenant: &Tenant,
    others: &[(String, String)],
) -> Option<String> {
    let name = tenant.name_any();
    let root = tenant.root_namespace();
    if forest.is_excluded(&root) {
        return Some(format!(
            "Tenant {name:?}: root namespace {root:?} is excluded from canopy; choose another"
        ));
    }
    if let Some((other, _)) = others.iter().find(|(_, r)| *r == root) {
        return Some(format!(
            "Tenant {name:?}: namespace {root:?} is already the root of tenant {other:?}"
        ));
    }
    if let Some(other) = forest.tenant_for(&root).filter(|t| *t != name) {
        return Some(format!(
            "Tenant {name:?}: namespace {root:?} belongs to tenant {other:?}"
        ));
    }
    None
}

/// Why a new subnamespace `child` of `parent` would exceed its tenant's `maxNamespaces`,
/// counting the tenant's namespaces and the anchors already admitted for it (`pending`).
/// Pure.
///
/// This is the fast answer; anchors posted at the same instant, or to two replicas, can
/// all pass it. The anchor controller, on the leader, is the authority that never creates
/// a namespace past the limit (`controllers::anchor::NamespaceBudget`).
pub fn check_namespace_limit(
    forest: &Forest,
    tenant: &Tenant,
    parent: &str,
    child: &str,
    pending: &BTreeSet<String>,
) -> Option<String> {
    let max = tenant.spec.max_namespaces?;
    let name = tenant.name_any();
    let mut counted = forest.tenant_namespaces(&name);
    if counted.contains(child) || pending.contains(child) {
        return None; // re-creating the anchor of one it has: no new namespace
    }
    counted.extend(pending.iter().cloned());
    let count = counted.len();
    (count >= max as usize).then(|| {
        format!(
            "tenant {name:?} allows at most {max} namespaces (root included) and has {count}; \
             delete one, or ask a cluster admin to raise spec.maxNamespaces of Tenant {name:?} \
             (cannot create a subnamespace in {parent:?})"
        )
    })
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::api::TenantSpec;

    fn tenant(name: &str, root: Option<&str>, max: Option<u32>) -> Tenant {
        let spec: TenantSpec = serde_json::from_value(serde_json::json!({
            "rootNamespace": root, "maxNamespaces": max,
        }))
        .expect("valid spec");
        Tenant::new(name, spec)
    }

    #[test]
    fn roots_are_unique_and_never_excluded() {
        let mut f = Forest::new();
        f.set_excluded(["kube-system".to_owned()]);
        assert!(check_tenant(&f, &tenant("a", Some("kube-system"), None), &[]).is_some());
        let others = vec![("b".to_owned(), "shared".to_owned())];
        assert!(
            check_tenant(&f, &tenant("a", Some("shared"), None), &others)
                .is_some_and(|m| m.contains("\"b\""))
        );
        assert_eq!(check_tenant(&f, &tenant("a", None, None), &others), None);
    }

    #[test]
    fn the_namespace_limit_counts_the_root() {
        let f = crate::forest::testing::tree("acme* > acme-dev");
        let none = BTreeSet::new();
        let limited = tenant("acme", None, Some(2));
        assert!(
            check_namespace_limit(&f, &limited, "acme", "new", &none)
                .is_some_and(|m| m.contains("at most 2"))
        );
        let three = tenant("acme", None, Some(3));
        assert_eq!(
            check_namespace_limit(&f, &three, "acme", "new", &none),
            None
        );
        let admitted = BTreeSet::from(["other".to_owned()]);
        assert!(
            check_namespace_limit(&f, &three, "acme", "new", &admitted).is_some(),
            "anchors admitted but not yet namespaces count"
        );
        assert_eq!(
            check_namespace_limit(&f, &limited, "acme", "acme-dev", &none),
            None,
            "re-creating the anchor of an existing subnamespace adds nothing"
        );
        assert_eq!(
            check_namespace_limit(&f, &tenant("acme", None, None), "acme", "new", &none),
            None
        );
    }
}
