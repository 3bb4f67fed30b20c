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
#[derive(Debug, PartialEq, Eq)]
pub struct Consent {
    /// Namespaces where the requester needs `update` on hierarchyconfigurations.
    pub namespaces: Vec<String>,
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
        return Ok(Consent { namespaces: vec![] });
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
        // A tenant's root may be re-hung by whoever has the rights; everything below it
        // stays inside its tenant.
        let own = forest
            .tenant_for(namespace)
            .filter(|_| forest.tenant_rooted_at(namespace).is_none());
        let theirs = forest.tenant_for(parent);
        if let Some(own) = own
            && theirs != Some(own)
        {
            return Err(format!(
                "{who} belongs to tenant {own:?} and cannot move under {parent:?}, which {}",
                theirs.map_or("belongs to no tenant".to_owned(), |t| format!(
                    "belongs to tenant {t:?}"
                ))
            ));
        }
        consent.push(parent.to_owned());
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
    match consent {
        Err(message) => Verdict::Deny(message),
        Ok(consent) => check_consent(webhooks, &request.user_info, namespace, &consent).await,
    }
}

async fn check_consent(
    webhooks: &Webhooks,
    user: &UserInfo,
    namespace: &str,
    consent: &Consent,
) -> Verdict {
    let username = user.username.as_deref().unwrap_or("unknown user");
    for needed in &consent.namespaces {
        match webhooks.authorizer.can_update_hierarchy(user, needed).await {
            Ok(true) => {}
            Ok(false) => {
                return Verdict::Deny(format!(
                    "{username} may not change the parent of namespace {namespace:?}: it needs \
                     update on hierarchyconfigurations.canopy.dev in namespace {needed:?}, whose \
                     policy flow the change affects"
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
        let mut f = Forest::new();
        for (ns, parent) in [
            ("root", None),
            ("a", Some("root")),
            ("a1", Some("a")),
            ("b", Some("root")),
            ("other", None),
        ] {
            f.set_namespace(ns, BTreeMap::new(), false);
            f.set_hierarchy(ns, parent, false);
        }
        f
    }

    fn consent(ns: &[&str]) -> Result<Consent, String> {
        Ok(Consent {
            namespaces: ns.iter().map(|s| (*s).to_owned()).collect(),
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
    fn a_tenant_namespace_cannot_move_to_another_tenant() {
        let mut f = forest();
        f.set_tenant_root("acme", "root");
        f.set_tenant_root("globex", "other");
        let refusal =
            check_parent_change(&f, "a", Some("root"), Some("other")).expect_err("tenant");
        assert!(
            refusal.contains("tenant \"acme\"") && refusal.contains("tenant \"globex\""),
            "{refusal}"
        );
        f.set_tenant_root("globex", "b");
        assert!(
            check_parent_change(&f, "a1", Some("a"), Some("b")).is_err(),
            "nor under another tenant's subnamespace"
        );
        f.remove_tenant("globex");
        assert!(
            check_parent_change(&f, "a", Some("root"), Some("other")).is_err(),
            "nor outside any tenant"
        );
    }
}
