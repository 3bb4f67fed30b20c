//! The labels canopy owns on a namespace: tree depth labels, `canopy.dev/tenant`,
//! `canopy.dev/excluded-namespace`, and in a tenant's namespaces the Pod Security
//! Admission levels. One pure function decides them for the namespace reconciler and for
//! the create of a subnamespace, so a namespace is created with the labels it keeps.

use std::collections::BTreeMap;

use crate::api::{PodSecurityLevel, keys};
use crate::forest::Forest;

/// Labels to set and to remove on one namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelChanges {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

/// The labels canopy wants on namespace `name`, given where the Forest puts it.
/// `pod_security` is the level of its tenant (ignored when it is in none).
pub fn desired_labels(
    forest: &Forest,
    name: &str,
    pod_security: impl Fn(&str) -> PodSecurityLevel,
) -> BTreeMap<String, String> {
    let mut labels = forest.tree_labels(name);
    if forest.is_excluded(name) {
        labels.insert(keys::EXCLUDED_NAMESPACE.to_owned(), "true".to_owned());
    }
    if let Some(tenant) = forest.tenant_for(name) {
        add_tenant_labels(&mut labels, tenant, pod_security(tenant));
    }
    labels
}

/// The labels canopy creates the child `child` of an anchor in `parent` with: the ones it
/// will keep (tree, tenant, Pod Security), so no request ever finds it unlabelled.
pub fn new_subnamespace_labels(
    forest: &Forest,
    child: &str,
    parent: &str,
    pod_security: impl Fn(&str) -> PodSecurityLevel,
) -> BTreeMap<String, String> {
    let mut labels = forest.tree_labels_as_child(child, parent);
    labels.insert(keys::SUBNAMESPACE_OF.to_owned(), parent.to_owned());
    if let Some(tenant) = forest.tenant_for(parent) {
        add_tenant_labels(&mut labels, tenant, pod_security(tenant));
    }
    labels
}

/// The labels canopy creates Tenant `tenant`'s root namespace with.
pub fn new_root_labels(tenant: &str, level: PodSecurityLevel) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    add_tenant_labels(&mut labels, tenant, level);
    labels
}

fn add_tenant_labels(labels: &mut BTreeMap<String, String>, tenant: &str, level: PodSecurityLevel) {
    labels.insert(keys::TENANT.to_owned(), tenant.to_owned());
    for mode in keys::POD_SECURITY_MODES {
        labels.insert(mode.to_owned(), level.as_str().to_owned());
    }
}

/// What turns `current` into `desired`. Labels canopy owns but no longer wants go (stale
/// depth labels, a tenant label after the tenant let go, the excluded label); Pod Security
/// labels stay when a namespace leaves its tenant: lowering a namespace's protection is a
/// cluster admin's decision, not a side effect of Orphan.
pub fn label_changes(
    current: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> LabelChanges {
    let set = desired
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove = current
        .keys()
        .filter(|k| !desired.contains_key(*k))
        .filter(|k| {
            keys::ancestor_of_depth_label(k).is_some()
                || *k == keys::TENANT
                || *k == keys::EXCLUDED_NAMESPACE
        })
        .cloned()
        .collect();
    LabelChanges { set, remove }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline(_: &str) -> PodSecurityLevel {
        PodSecurityLevel::Baseline
    }

    fn forest() -> Forest {
        // acme-dev is anchored in acme but not created yet.
        let mut f = crate::forest::testing::tree("acme*");
        f.add_anchor("acme", "acme-dev");
        f
    }

    #[test]
    fn a_new_subnamespace_is_created_with_the_labels_it_keeps() {
        let mut f = forest();
        let created = new_subnamespace_labels(&f, "acme-dev", "acme", baseline);
        assert_eq!(created[keys::TENANT], "acme");
        assert_eq!(created["acme.tree.canopy.dev/depth"], "1");
        assert_eq!(created["acme-dev.tree.canopy.dev/depth"], "0");
        assert_eq!(created["pod-security.kubernetes.io/enforce"], "baseline");
        // Seen by the watch before its parent is set: nothing to change, nothing removed.
        f.set_namespace("acme-dev", created.clone(), false);
        let before_parent = desired_labels(&f, "acme-dev", baseline);
        assert_eq!(
            label_changes(&created, &before_parent),
            LabelChanges::default()
        );
        // And after.
        f.set_hierarchy("acme-dev", Some("acme"), false);
        let after = desired_labels(&f, "acme-dev", baseline);
        assert_eq!(label_changes(&created, &after), LabelChanges::default());
    }

    #[test]
    fn pod_security_follows_the_tenant_and_stays_when_it_goes() {
        let f = forest();
        let restricted = desired_labels(&f, "acme", |_| PodSecurityLevel::Restricted);
        assert_eq!(restricted["pod-security.kubernetes.io/audit"], "restricted");
        let mut g = f.clone();
        g.remove_tenant("acme");
        let changes = label_changes(&restricted, &desired_labels(&g, "acme", baseline));
        assert_eq!(changes.remove, vec![keys::TENANT.to_owned()]);
    }

    #[test]
    fn excluded_namespaces_are_labelled_and_unlabelled() {
        let mut f = forest();
        f.set_namespace("sys", BTreeMap::new(), false);
        f.set_excluded(["sys".to_owned()]);
        let labels = desired_labels(&f, "sys", baseline);
        assert_eq!(
            labels,
            BTreeMap::from([(keys::EXCLUDED_NAMESPACE.to_owned(), "true".to_owned())])
        );
        f.set_excluded([]);
        let changes = label_changes(&labels, &desired_labels(&f, "sys", baseline));
        assert_eq!(changes.remove, vec![keys::EXCLUDED_NAMESPACE.to_owned()]);
    }
}
