use std::collections::BTreeMap;

use super::*;

use super::testing::tree;

fn labels(f: &Forest, name: &str) -> Vec<(String, String)> {
    f.tree_labels(name).into_iter().collect()
}

fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, d)| (format!("{a}.tree.canopy.dev/depth"), (*d).to_owned()))
        .collect()
}

#[test]
fn ancestors_descendants_and_subtree() {
    let f = tree("acme > acme-dev > acme-dev-ci, acme > acme-prod");
    assert_eq!(f.ancestors("acme-dev-ci"), ["acme-dev", "acme"]);
    assert_eq!(
        f.descendants("acme"),
        ["acme-dev", "acme-prod", "acme-dev-ci"]
    );
    assert_eq!(f.subtree("acme-dev"), ["acme-dev", "acme-dev-ci"]);
    assert_eq!(f.root("acme-dev-ci"), "acme");
    assert!(f.is_ancestor("acme", "acme-dev-ci"));
    assert!(!f.is_ancestor("acme-prod", "acme-dev-ci"));
    assert_eq!(f.common_ancestor("acme-dev-ci", "acme-prod"), Some("acme"));
    assert_eq!(
        f.common_ancestor("acme-dev-ci", "acme-dev"),
        Some("acme-dev")
    );
    assert_eq!(
        f.children("acme").collect::<Vec<_>>(),
        ["acme-dev", "acme-prod"]
    );
}

#[test]
fn tree_labels_name_every_ancestor_with_its_distance() {
    let f = tree("a > b > c");
    assert_eq!(labels(&f, "c"), l(&[("a", "2"), ("b", "1"), ("c", "0")]));
    assert_eq!(labels(&f, "a"), l(&[("a", "0")]));
}

#[test]
fn moving_a_subtree_changes_the_labels_below_it() {
    let mut f = tree("a > b > c, x");
    f.set_hierarchy("b", Some("x"), false);
    assert_eq!(labels(&f, "c"), l(&[("b", "1"), ("c", "0"), ("x", "2")]));
    assert!(f.descendants("a").is_empty());
    assert_eq!(f.descendants("x"), ["b", "c"]);
}

#[test]
fn cycles_are_detected_before_and_after_they_exist() {
    let mut f = tree("a > b > c");
    assert_eq!(
        f.cycle_if_parent("a", "c"),
        Some(vec![
            "a".to_owned(),
            "c".to_owned(),
            "b".to_owned(),
            "a".to_owned()
        ])
    );
    assert!(f.cycle_if_parent("a", "a").is_some());
    assert_eq!(f.cycle_if_parent("c", "a"), None, "moving down is no cycle");

    f.set_hierarchy("a", Some("c"), false);
    assert_eq!(f.cycle("a"), Some(vec!["a", "c", "b"]));
    for ns in ["a", "b", "c"] {
        assert_eq!(f.halted(ns).map(|h| h.reason()), Some("InCycle"), "{ns}");
        assert_eq!(f.tree_labels(ns).len(), 1, "{ns} keeps only its own label");
        assert_eq!(f.root(ns), ns);
    }
    // Walks terminate and never return the start.
    assert_eq!(f.ancestors("a"), ["c", "b"]);
    assert_eq!(f.descendants("a"), ["b", "c"]);
}

#[test]
fn a_namespace_below_a_cycle_is_halted_by_its_ancestor() {
    let mut f = tree("b > a > leaf, a > b");
    f.set_namespace("leaf", BTreeMap::new(), false);
    assert_eq!(f.cycle("leaf"), None);
    assert!(matches!(
        f.halted("leaf"),
        Some(HaltReason::AncestorHalted { .. })
    ));
}

#[test]
fn missing_and_excluded_parents_halt() {
    let mut f = tree("gone > orphan > child");
    f.remove_namespace("gone");
    assert_eq!(
        f.halted("orphan"),
        Some(HaltReason::ParentMissing {
            parent: "gone".into()
        })
    );
    assert_eq!(
        f.halted("child"),
        Some(HaltReason::AncestorHalted {
            ancestor: "orphan".into()
        })
    );
    assert!(
        !f.exists("gone"),
        "a referenced parent is known, not existing"
    );

    f.set_namespace("kube-system", BTreeMap::new(), false);
    f.set_excluded(["kube-system".to_owned()]);
    f.set_hierarchy("orphan", Some("kube-system"), false);
    assert_eq!(
        f.halted("orphan").map(|h| h.reason()),
        Some("IllegalParent")
    );
    assert!(f.tree_labels("kube-system").is_empty());
    assert_eq!(labels(&f, "child"), l(&[("child", "0"), ("orphan", "1")]));
}

#[test]
fn healing_clears_the_halt() {
    let mut f = tree("parent > child");
    f.remove_namespace("parent");
    assert!(f.halted("child").is_some());
    f.set_namespace("parent", BTreeMap::new(), false);
    assert_eq!(f.halted("child"), None);
    assert_eq!(labels(&f, "child"), l(&[("child", "0"), ("parent", "1")]));
}

#[test]
fn removed_namespaces_are_forgotten_once_unreferenced() {
    let mut f = tree("a > b");
    f.remove_namespace("b");
    assert_eq!(f.descendants("a"), Vec::<&str>::new());
    assert!(f.get("b").is_none());
    f.remove_namespace("a");
    assert!(f.is_empty());
}

#[test]
fn a_deleted_parent_stays_known_while_children_point_at_it() {
    let mut f = tree("a > b");
    f.remove_namespace("a");
    assert!(!f.exists("a"));
    assert_eq!(f.children("a").collect::<Vec<_>>(), ["b"]);
    assert_eq!(f.halted("b").map(|h| h.reason()), Some("ParentMissing"));
}

#[test]
fn tenant_and_subnamespace_labels_are_read() {
    let mut f = Forest::new();
    let labels = BTreeMap::from([
        ("canopy.dev/tenant".to_owned(), "acme".to_owned()),
        ("canopy.dev/subnamespace-of".to_owned(), "acme".to_owned()),
    ]);
    f.set_namespace("acme-dev", labels, false);
    let ns = f.get("acme-dev").expect("known");
    assert_eq!(ns.tenant.as_deref(), Some("acme"));
    assert_eq!(ns.subnamespace_of.as_deref(), Some("acme"));
}

#[test]
fn cascading_deletion_is_inherited() {
    let mut f = tree("a > b > c");
    assert!(!f.allows_cascading_deletion("c"));
    f.set_hierarchy("a", None, true);
    assert!(f.allows_cascading_deletion("c"));
    assert!(f.allows_cascading_deletion("a"));
}

#[test]
fn deep_tree_of_fifty_levels() {
    let names: Vec<String> = (0..50).map(|i| format!("level-{i}")).collect();
    let mut f = Forest::new();
    for (i, name) in names.iter().enumerate() {
        f.set_namespace(name, BTreeMap::new(), false);
        f.set_hierarchy(name, i.checked_sub(1).map(|p| names[p].as_str()), false);
    }
    let leaf = &names[49];
    assert_eq!(f.ancestors(leaf).len(), 49);
    assert_eq!(f.root(leaf), "level-0");
    assert_eq!(f.descendants("level-0").len(), 49);
    let tree = f.tree_labels(leaf);
    assert_eq!(tree.len(), 50);
    assert_eq!(tree["level-0.tree.canopy.dev/depth"], "49");
    assert!(
        f.cycle_if_parent("level-0", leaf)
            .is_some_and(|c| c.len() == 51)
    );
    assert_eq!(f.halted(leaf), None);
}

#[test]
fn wide_tree_of_five_thousand_children() {
    let mut f = Forest::new();
    f.set_namespace("root", BTreeMap::new(), false);
    for i in 0..5000 {
        let name = format!("child-{i}");
        f.set_namespace(&name, BTreeMap::new(), false);
        f.set_hierarchy(&name, Some("root"), false);
    }
    assert_eq!(f.descendants("root").len(), 5000);
    assert_eq!(f.children("root").count(), 5000);
    assert_eq!(f.tree_labels("child-4999").len(), 2);
    f.set_hierarchy("child-0", None, false);
    assert_eq!(f.children("root").count(), 4999);
}

#[test]
fn namespaces_belong_to_the_tenant_rooted_above_them() {
    let mut f = tree("acme > acme-dev, loose");
    f.set_tenant_root("acme", "acme");
    assert_eq!(f.tenant_for("acme-dev"), Some("acme"));
    assert_eq!(f.tenant_for("loose"), None);
    f.set_hierarchy("loose", Some("acme-dev"), false);
    assert_eq!(
        f.tenant_for("loose"),
        Some("acme"),
        "moving in joins the tenant"
    );
    assert_eq!(f.remove_tenant("acme").as_deref(), Some("acme"));
    assert_eq!(f.tenant_for("acme-dev"), None);
}
