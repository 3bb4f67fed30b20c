//! HierarchyConfiguration admission: no cycles, no illegal or missing parents, and the
//! requester's consent in every namespace whose policy flow changes.

use k8s_openapi::api::authentication::v1::UserInfo;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};

use super::Webhooks;
use super::review::Verdict;
use crate::api::{HIERARCHY_NAME, HierarchyConfiguration};
use crate::forest::Forest;

/// What a parent change needs before it may happen.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Consent {
    /// Namespaces where the requester needs `update` on hierarchyconfigurations.
    pub namespaces: Vec<String>,
    /// Tenants the requester needs `update` on: a namespace leaves one, or joins another.
    pub tenants: Vec<String>,
}

/// Decides whether `namespace` may change its parent from `old` to `new`, and whose
/// consent it needs. Pure: reads only the Forest.
pub fn check_parent_change(
    forest: &Forest,
    namespace: &str,
    old: Option<&str>,
    new: Option<&str>,
) -> Result<Consent, String> {
    if old == new {
        return Ok(Consent::default());
    }
    let who = format!("namespace {namespace:?}");
    if let Some(anchor_parent) = forest
        .get(namespace)
        .and_then(|s| s.subnamespace_of.as_deref())
        && forest
            .get(anchor_parent)
            .is_some_and(|p| p.anchors.contains(namespace))
        && new != Some(anchor_parent)
    {
        return Err(format!(
            "{who} is a subnamespace of {anchor_parent:?} and its anchor exists: its parent \
             cannot change; delete the anchor {anchor_parent}/{namespace} first"
        ));
    }
    if forest.is_excluded(namespace) {
        return Err(format!(
            "{who} is excluded from canopy and cannot have a parent"
        ));
    }
    let mut consent = Vec::new();
    if let Some(parent) = new {
        if forest.is_excluded(parent) {
            return Err(format!(
                "{who} cannot have parent {parent:?}: excluded namespaces are never part of a tree"
            ));
        }
        if !forest.exists(parent) {
            return Err(format!(
                "{who} cannot have parent {parent:?}: it does not exist"
            ));
        }
        if let Some(cycle) = forest.cycle_if_parent(namespace, parent) {
            return Err(format!(
                "{who} cannot have parent {parent:?}: that would make a cycle ({}); choose a \
                 parent outside the subtree of {namespace:?}",
                cycle.join(" -> ")
            ));
        }
        consent.push(parent.to_owned());
    }
    // A tenant's root may be re-hung by whoever has the rights in the new parent; every
    // other namespace of a tenant leaves it (becomes a root, or moves outside its tree)
    // only with the consent of whoever may update that Tenant: a cluster admin. Owners
    // administer their namespaces, not the tenant's boundary.
    let own = forest
        .tenant_for(namespace)
        .filter(|_| forest.tenant_rooted_at(namespace).is_none());
    let theirs = new.and_then(|parent| forest.tenant_for(parent));
    let mut tenants = Vec::new();
    if let Some(own) = own
        && theirs != Some(own)
    {
        tenants.push(own.to_owned());
        if let Some(theirs) = theirs {
            tenants.push(theirs.to_owned());
        }
    }
    if let Some(old_parent) = old.filter(|p| forest.exists(p)) {
        // The highest namespace that stops being an ancestor must agree: its policy stops
        // flowing into this subtree.
        let leaving_from = match new.and_then(|p| forest.common_ancestor(old_parent, p)) {
            Some(common) => common.to_owned(),
            None => forest.root(old_parent).to_owned(),
        };
        if !consent.contains(&leaving_from) {
            consent.push(leaving_from);
        }
    }
    Ok(Consent {
        namespaces: consent,
        tenants,
    })
}

pub async fn review(webhooks: &Webhooks, request: &AdmissionRequest<DynamicObject>) -> Verdict {
    let Some(namespace) = request.namespace.as_deref() else {
        return Verdict::Allow;
    };
    if webhooks.is_canopy(&request.user_info) || request.name != HIERARCHY_NAME {
        // Other names are refused by the CRD's schema.
        return Verdict::Allow;
    }
    let parse = |obj: Option<&DynamicObject>| -> Result<Option<HierarchyConfiguration>, String> {
        obj.map(|o| {
            o.clone()
                .try_parse::<HierarchyConfiguration>()
                .map_err(|e| {
                    format!("HierarchyConfiguration {namespace}/{HIERARCHY_NAME} is malformed: {e}")
                })
        })
        .transpose()
    };
    let (old, new) = match (
        parse(request.old_object.as_ref()),
        parse(request.object.as_ref()),
    ) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(e), _) | (_, Err(e)) => return Verdict::Deny(e),
    };
    let forest_parent = webhooks.state.forest().parent(namespace).map(str::to_owned);
    // The Forest is the truth for the old parent: the apiserver's old object may predate
    // a parent set by canopy that is still in flight.
    let old_parent = old
        .as_ref()
        .and_then(|h| h.spec.parent.clone())
        .or(forest_parent);
    let new_parent = match request.operation {
        Operation::Delete => {
            if webhooks
                .state
                .forest()
                .get(namespace)
                .is_some_and(|s| s.deleting)
            {
                return Verdict::Allow; // the namespace is going; its hierarchy goes with it
            }
            None
        }
        _ => new.and_then(|h| h.spec.parent).filter(|p| !p.is_empty()),
    };
    let consent = {
        let forest = webhooks.state.forest();
        check_parent_change(
            &forest,
            namespace,
            old_parent.as_deref(),
            new_parent.as_deref(),
        )
    };
    let mut quota_move = None;
    let consent = consent.and_then(|consent| {
        let forest = webhooks.state.forest();
        quota_move = super::quota::move_of(webhooks, &forest, namespace, new_parent.as_deref());
        check_joining_fits(webhooks, &forest, namespace, new_parent.as_deref())
            .or_else(|| {
                let (plan, parent) = (quota_move.as_ref()?, new_parent.as_deref()?);
                super::quota::move_refusal(namespace, parent, plan)
            })
            .map_or(Ok(consent), Err)
    });
    let verdict = match consent {
        Err(message) => Verdict::Deny(message),
        Ok(consent) => check_consent(webhooks, &request.user_info, namespace, &consent).await,
    };
    // Last, once nothing else refuses: the usage moving in is reserved on the HRQs it
    // comes under, exactly as a create there would be.
    match (verdict, quota_move, new_parent.as_deref()) {
        (Verdict::Allow, Some(plan), Some(parent)) => {
            match super::quota::reserve_move(webhooks, namespace, parent, &plan, request.dry_run)
                .await
            {
                Ok(()) => Verdict::Allow,
                Err(message) => Verdict::Deny(message),
            }
        }
        (verdict, _, _) => verdict,
    }
}

/// Why moving `namespace` (with its subtree) under `new_parent` would take a tenant past
/// its `maxNamespaces`, if it would: a tree is a way to grow a tenant too.
fn check_joining_fits(
    webhooks: &Webhooks,
    forest: &Forest,
    namespace: &str,
    new_parent: Option<&str>,
) -> Option<String> {
    let joining = forest.tenant_for(new_parent?)?;
    if forest.tenant_for(namespace) == Some(joining) {
        return None;
    }
    let max = webhooks
        .state
        .tenants
        .get(&kube::runtime::reflector::ObjectRef::new(joining))?
        .spec
        .max_namespaces? as usize;
    let have = forest.tenant_namespaces(joining).len();
    let coming = forest
        .subtree(namespace)
        .into_iter()
        .filter(|ns| forest.exists(ns))
        .count();
    (have + coming > max).then(|| {
        format!(
            "namespace {namespace:?} and its {coming} namespace(s) cannot join tenant \
             {joining:?}: it allows at most {max} namespaces and has {have}"
        )
    })
}

async fn check_consent(
    webhooks: &Webhooks,
    user: &UserInfo,
    namespace: &str,
    consent: &Consent,
) -> Verdict {
    let username = user.username.as_deref().unwrap_or("unknown user");
    for tenant in &consent.tenants {
        match webhooks.authorizer.can_update_tenant(user, tenant).await {
            Ok(true) => {}
            Ok(false) => {
                return Verdict::Deny(format!(
                    "{username} may not take namespace {namespace:?} out of tenant \
                     {:?}{}: moving a namespace across a tenant's boundary (making it a root, \
                     or giving it a parent outside the tenant) needs update on \
                     tenants.canopy.dev {tenant:?}, a cluster admin's right; move it within \
                     the tenant instead, or ask a cluster admin to make the move",
                    consent.tenants[0],
                    consent
                        .tenants
                        .get(1)
                        .map(|t| format!(" into tenant {t:?}"))
                        .unwrap_or_default()
                ));
            }
            Err(err) => {
                return Verdict::Deny(format!(
                    "cannot check {username}'s permission on Tenant {tenant:?}: {err}; try again"
                ));
            }
        }
    }
    for needed in &consent.namespaces {
        match webhooks.authorizer.can_update_hierarchy(user, needed).await {
            Ok(true) => {}
            Ok(false) => {
                return Verdict::Deny(format!(
                    "{username} may not change the parent of namespace {namespace:?}: it needs \
                     update on hierarchyconfigurations.canopy.dev in namespace {needed:?}, whose \
                     policy flow the change affects (the consent rule: every namespace that \
                     gains or loses what flows from above must agree); ask an admin of \
                     {needed:?} to make the change, or to grant you that right there"
                ));
            }
            Err(err) => {
                return Verdict::Deny(format!(
                    "cannot check {username}'s permission in namespace {needed:?}: {err}; try again"
                ));
            }
        }
    }
    Verdict::Allow
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn forest() -> Forest {
        crate::forest::testing::tree("root > a > a1, root > b, other")
    }

    fn consent(ns: &[&str]) -> Result<Consent, String> {
        Ok(Consent {
            namespaces: ns.iter().map(|s| (*s).to_owned()).collect(),
            tenants: vec![],
        })
    }

    #[test]
    fn moving_within_a_tree_needs_the_new_parent_and_the_common_ancestor() {
        assert_eq!(
            check_parent_change(&forest(), "a1", Some("a"), Some("b")),
            consent(&["b", "root"])
        );
    }

    #[test]
    fn leaving_a_tree_needs_its_root() {
        assert_eq!(
            check_parent_change(&forest(), "a1", Some("a"), Some("other")),
            consent(&["other", "root"])
        );
        assert_eq!(
            check_parent_change(&forest(), "a1", Some("a"), None),
            consent(&["root"])
        );
    }

    #[test]
    fn joining_a_tree_needs_only_the_new_parent() {
        assert_eq!(
            check_parent_change(&forest(), "other", None, Some("b")),
            consent(&["b"])
        );
    }

    #[test]
    fn cycles_missing_and_excluded_parents_are_refused() {
        let mut f = forest();
        let cycle = check_parent_change(&f, "a", Some("root"), Some("a1")).expect_err("cycle");
        assert!(cycle.contains("a -> a1 -> a"), "{cycle}");
        assert!(
            check_parent_change(&f, "a", Some("root"), Some("nope"))
                .is_err_and(|e| e.contains("does not exist"))
        );
        f.set_namespace("kube-system", BTreeMap::new(), false);
        f.set_excluded(["kube-system".to_owned()]);
        assert!(
            check_parent_change(&f, "a", Some("root"), Some("kube-system"))
                .is_err_and(|e| e.contains("excluded"))
        );
        assert!(check_parent_change(&f, "kube-system", None, Some("root")).is_err());
    }

    #[test]
    fn a_subnamespace_keeps_its_parent_while_its_anchor_exists() {
        let mut f = forest();
        let labels = BTreeMap::from([("canopy.dev/subnamespace-of".to_owned(), "a".to_owned())]);
        f.set_namespace("a1", labels, false);
        f.add_anchor("a", "a1");
        let refusal = check_parent_change(&f, "a1", Some("a"), Some("b")).expect_err("anchored");
        assert!(refusal.contains("delete the anchor a/a1"), "{refusal}");
        f.remove_anchor("a", "a1");
        assert!(check_parent_change(&f, "a1", Some("a"), Some("b")).is_ok());
    }

    #[test]
    fn leaving_a_tenant_needs_the_right_to_update_it() {
        let mut f = forest();
        f.set_tenant_root("acme", "root");
        f.set_tenant_root("globex", "other");
        let tenants = |c: Result<Consent, String>| c.expect("a consent").tenants;
        assert_eq!(
            tenants(check_parent_change(&f, "a", Some("root"), Some("other"))),
            ["acme", "globex"],
            "into another tenant: both"
        );
        assert_eq!(
            tenants(check_parent_change(&f, "a", Some("root"), None)),
            ["acme"],
            "becoming a root"
        );
        f.remove_tenant("globex");
        assert_eq!(
            tenants(check_parent_change(&f, "a1", Some("a"), Some("other"))),
            ["acme"],
            "under a namespace of no tenant"
        );
        assert!(
            tenants(check_parent_change(&f, "a1", Some("a"), Some("b"))).is_empty(),
            "within the tenant: no Tenant right needed"
        );
        assert!(
            tenants(check_parent_change(&f, "root", None, Some("other"))).is_empty(),
            "the root takes its tenant with it"
        );
    }

    #[test]
    fn a_subnamespace_whose_parent_is_not_set_yet_is_in_its_tenant() {
        let mut f = forest();
        f.set_tenant_root("acme", "root");
        let labels = BTreeMap::from([("canopy.dev/subnamespace-of".to_owned(), "a".to_owned())]);
        f.set_namespace("fresh", labels, false);
        f.add_anchor("a", "fresh");
        assert_eq!(f.tenant_for("fresh"), Some("acme"));
        f.remove_anchor("a", "fresh");
        assert_eq!(f.tenant_for("fresh"), None);
    }
}
