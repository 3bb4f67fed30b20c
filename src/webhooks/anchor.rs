//! SubnamespaceAnchor admission: anchors may not claim foreign or excluded namespaces,
//! nor take a subtree with them when deleted.

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};

use super::Webhooks;
use super::namespace::check_subtree_deletion;
use super::review::Verdict;
use super::tenant::check_namespace_limit;
use crate::forest::Forest;
use kube::runtime::reflector::ObjectRef;

pub fn review(webhooks: &Webhooks, request: &AdmissionRequest<DynamicObject>) -> Verdict {
    if webhooks.is_canopy(&request.user_info) {
        return Verdict::Allow;
    }
    let Some(parent) = request.namespace.as_deref() else {
        return Verdict::Allow;
    };
    let forest = webhooks.state.forest();
    let tenant = forest
        .tenant_for(parent)
        .and_then(|t| webhooks.state.tenants.get(&ObjectRef::new(t)));
    let verdict = match request.operation {
        Operation::Create => check_create(&forest, parent, &request.name)
            .or_else(|| check_namespace_limit(&forest, tenant.as_deref(), parent)),
        Operation::Delete => check_delete(&forest, parent, &request.name),
        Operation::Update | Operation::Connect => None,
    };
    verdict.map_or(Verdict::Allow, Verdict::Deny)
}

/// Why an anchor `child` may not be created in `parent`, if it may not. Pure.
pub fn check_create(forest: &Forest, parent: &str, child: &str) -> Option<String> {
    if forest.is_excluded(parent) {
        return Some(format!(
            "namespace {parent:?} is excluded from canopy; subnamespaces cannot be created in it"
        ));
    }
    if forest.is_excluded(child) {
        return Some(format!(
            "{child:?} is an excluded namespace name; choose another name"
        ));
    }
    let state = forest.get(child).filter(|s| s.exists)?;
    if state.subnamespace_of.as_deref() == Some(parent) {
        return None; // re-creating the anchor of an existing subnamespace adopts it again
    }
    Some(format!(
        "namespace {child:?} already exists and is not a subnamespace of {parent:?}; choose \
         another name"
    ))
}

/// Why the anchor `child` in `parent` may not be deleted, if it may not. Pure.
pub fn check_delete(forest: &Forest, parent: &str, child: &str) -> Option<String> {
    let ours = forest
        .get(child)
        .is_some_and(|s| s.exists && s.subnamespace_of.as_deref() == Some(parent));
    if !ours {
        return None;
    }
    check_subtree_deletion(forest, child)
        .map(|why| format!("the anchor {parent}/{child} cannot be deleted: {why}"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn sub_of(parent: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("canopy.dev/subnamespace-of".to_owned(), parent.to_owned())])
    }

    #[test]
    fn an_existing_unrelated_namespace_cannot_be_claimed() {
        let mut f = Forest::new();
        f.set_namespace("team", BTreeMap::new(), false);
        f.set_namespace("taken", BTreeMap::new(), false);
        assert!(check_create(&f, "team", "taken").is_some_and(|r| r.contains("already exists")));
        assert_eq!(check_create(&f, "team", "free"), None);
        f.set_namespace("mine", sub_of("team"), false);
        assert_eq!(check_create(&f, "team", "mine"), None);
    }

    #[test]
    fn excluded_names_and_parents_are_refused() {
        let mut f = Forest::new();
        f.set_excluded(["kube-system".to_owned()]);
        assert!(check_create(&f, "team", "kube-system").is_some());
        assert!(check_create(&f, "kube-system", "x").is_some());
    }

    #[test]
    fn deleting_an_anchor_with_grandchildren_needs_cascading_deletion() {
        let mut f = Forest::new();
        f.set_namespace("team", BTreeMap::new(), false);
        f.set_namespace("team-dev", sub_of("team"), false);
        f.set_hierarchy("team-dev", Some("team"), false);
        f.add_anchor("team", "team-dev");
        assert_eq!(
            check_delete(&f, "team", "team-dev"),
            None,
            "no grandchildren"
        );
        f.set_namespace("team-dev-ci", sub_of("team-dev"), false);
        f.set_hierarchy("team-dev-ci", Some("team-dev"), false);
        f.add_anchor("team-dev", "team-dev-ci");
        assert!(check_delete(&f, "team", "team-dev").is_some_and(|r| r.contains("team-dev-ci")));
        f.set_hierarchy("team", None, true);
        assert_eq!(check_delete(&f, "team", "team-dev"), None);
    }
}
