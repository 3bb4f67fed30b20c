//! Namespace trees against the real apiserver, through canopy's real webhooks, with
//! impersonated users where permission matters.

mod common;

use std::time::Duration;

use common::objects::{
    self, namespace_labels, set_parent, try_set_parent, wait_until_anchor_ok, wait_until_gone,
};
use common::{apply, cluster_with_canopy, eventually, json, kubectl, kubectl_ok, unique};

const WAIT: Duration = Duration::from_secs(30);
const CANOPY_SA: &str = "system:serviceaccount:canopy-system:canopy";

/// A namespace, with canopy running.
fn create_namespace(name: &str) {
    cluster_with_canopy();
    objects::create_namespace(name);
}

fn anchor(parent: &str, child: &str) -> common::Kubectl {
    apply(&format!(
        "apiVersion: canopy.dev/v1alpha1\nkind: SubnamespaceAnchor\nmetadata: {{name: {child}, namespace: {parent}}}\nspec:\n  labels: {{team: blue}}\n  annotations: {{owner: blue-team}}\n"
    ))
}

/// Waits for an Event with `reason` about `object` in namespace `ns`.
fn wait_for_event(ns: &str, object: &str, reason: &str) {
    eventually(&format!("a {reason} event on {object}"), WAIT, || {
        let events = json(&["get", "events", "-n", ns, "-o", "json"])?;
        events["items"]
            .as_array()?
            .iter()
            .any(|e| e["reason"] == reason && e["involvedObject"]["name"] == object)
            .then_some(())
    });
}

fn depth(ns: &str, ancestor: &str) -> Option<String> {
    namespace_labels(ns)?[format!("{ancestor}.tree.canopy.dev/depth")]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn an_anchor_creates_its_namespace_with_parent_labels_and_status() {
    let root = unique("anchor-root");
    let child = format!("{root}-dev");
    create_namespace(&root);
    let out = anchor(&root, &child);
    assert!(out.success, "{}", out.stderr);
    wait_until_anchor_ok(&root, &child, WAIT);

    wait_for_event(&root, &child, "SubnamespaceCreated");
    let child_labels = namespace_labels(&child).expect("the child namespace exists");
    assert_eq!(child_labels["team"], "blue", "spec.labels are set");
    assert_eq!(child_labels["canopy.dev/subnamespace-of"], root.as_str());
    assert_eq!(child_labels[format!("{child}.tree.canopy.dev/depth")], "0");
    assert_eq!(child_labels[format!("{root}.tree.canopy.dev/depth")], "1");
    let ns = json(&["get", "namespace", &child, "-o", "json"]).expect("namespace");
    assert_eq!(ns["metadata"]["annotations"]["owner"], "blue-team");
    let hc = json(&["get", "hc", "hierarchy", "-n", &child, "-o", "json"]).expect("hierarchy");
    assert_eq!(hc["spec"]["parent"], root.as_str());
    eventually("the parent to list its child", WAIT, || {
        let hc = json(&["get", "hc", "hierarchy", "-n", &root, "-o", "json"])?;
        (hc["status"]["children"] == serde_json::json!([child])).then_some(())
    });

    // The plugin shows the tree the controller built.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-canopy"))
        .args(["tree", &root])
        .env("KUBECONFIG", &cluster_with_canopy().kubeconfig)
        .output()
        .expect("kubectl-canopy runs");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines[0], root);
    assert!(
        lines[1].contains(&child) && lines[1].contains("[s]"),
        "{tree}"
    );
}

#[test]
fn depth_labels_follow_a_moved_subtree() {
    let a = unique("move-a");
    let b = unique("move-b");
    let (mid, leaf) = (format!("{a}-mid"), format!("{a}-leaf"));
    for ns in [&a, &b, &mid, &leaf] {
        create_namespace(ns);
    }
    set_parent(&mid, &a);
    set_parent(&leaf, &mid);
    eventually("the grandchild to carry every ancestor", WAIT, || {
        (depth(&leaf, &a).as_deref() == Some("2") && depth(&leaf, &mid).as_deref() == Some("1"))
            .then_some(())
    });

    set_parent(&mid, &b);
    eventually("the labels to follow the move", WAIT, || {
        (depth(&leaf, &b).as_deref() == Some("2")
            && depth(&leaf, &a).is_none()
            && depth(&mid, &a).is_none()
            && depth(&mid, &b).as_deref() == Some("1"))
        .then_some(())
    });
}

#[test]
fn a_cycle_is_refused() {
    let a = unique("cycle-a");
    let b = format!("{a}-b");
    create_namespace(&a);
    create_namespace(&b);
    set_parent(&b, &a);
    eventually("b under a", WAIT, || depth(&b, &a).map(|_| ()));
    let out = try_set_parent(&a, &b);
    assert!(!out.success, "a cycle was admitted");
    assert!(out.stderr.contains("cycle"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("{a} -> {b} -> {a}")),
        "{}",
        out.stderr
    );
    let missing = try_set_parent(&a, &unique("nowhere"));
    assert!(
        !missing.success && missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
    let excluded = try_set_parent(&a, "kube-system");
    assert!(
        !excluded.success && excluded.stderr.contains("excluded"),
        "{}",
        excluded.stderr
    );
}

#[test]
fn moving_needs_rights_in_the_new_parent_and_in_the_tree_being_left() {
    let root = unique("rights-root");
    let child = format!("{root}-child");
    let elsewhere = unique("rights-else");
    let own = unique("rights-own");
    let user = unique("alice");
    for ns in [&root, &child, &elsewhere, &own] {
        create_namespace(ns);
    }
    set_parent(&child, &root);
    for ns in [&child, &own] {
        kubectl_ok(&[
            "create",
            "rolebinding",
            "admin",
            "--clusterrole=admin",
            "--user",
            &user,
            "-n",
            ns,
        ]);
    }
    let move_as_user = |parent: &str| {
        common::kubectl_with_stdin(
            &["--as", &user, "apply", "-f", "-"],
            Some(&format!(
                "apiVersion: canopy.dev/v1alpha1\nkind: HierarchyConfiguration\nmetadata: {{name: hierarchy, namespace: {child}}}\nspec: {{parent: {parent}}}\n"
            )),
        )
    };
    // The aggregated admin role lets the user edit the hierarchy in their namespace...
    eventually(
        "the admin role to include hierarchyconfigurations",
        WAIT,
        || {
            kubectl(&[
                "--as",
                &user,
                "auth",
                "can-i",
                "update",
                "hierarchyconfigurations.canopy.dev",
                "-n",
                &child,
            ])
            .success
            .then_some(())
        },
    );
    // ...but not to move it under a namespace where they have no rights,
    let out = move_as_user(&elsewhere);
    assert!(!out.success, "moved under a foreign namespace");
    assert!(
        out.stderr
            .contains(&format!("in namespace \"{elsewhere}\"")),
        "{}",
        out.stderr
    );
    // nor out of its tree without rights in the tree's root.
    let out = move_as_user(&own);
    assert!(!out.success, "left the tree without the root's consent");
    assert!(
        out.stderr.contains(&format!("in namespace \"{root}\"")),
        "{}",
        out.stderr
    );

    kubectl_ok(&[
        "create",
        "rolebinding",
        "root-admin",
        "--clusterrole=admin",
        "--user",
        &user,
        "-n",
        &root,
    ]);
    eventually(
        "the move to be allowed with rights in the root",
        WAIT,
        || move_as_user(&own).success.then_some(()),
    );
    eventually("the child to be under its new parent", WAIT, || {
        depth(&child, &own).map(|_| ())
    });
}

#[test]
fn tree_labels_cannot_be_edited_by_hand_on_any_write_path() {
    let ns = unique("labels");
    create_namespace(&ns);
    eventually("canopy's own label", WAIT, || depth(&ns, &ns).map(|_| ()));
    let own = format!("{ns}.tree.canopy.dev/depth");
    let attempts: Vec<(&str, Vec<String>)> = vec![
        (
            "label add",
            vec![
                "label".into(),
                "namespace".into(),
                ns.clone(),
                "other.tree.canopy.dev/depth=1".into(),
            ],
        ),
        (
            "label change",
            vec![
                "label".into(),
                "namespace".into(),
                ns.clone(),
                format!("{own}=5"),
                "--overwrite".into(),
            ],
        ),
        (
            "label removal",
            vec![
                "label".into(),
                "namespace".into(),
                ns.clone(),
                format!("{own}-"),
            ],
        ),
        (
            "tenant label",
            vec![
                "label".into(),
                "namespace".into(),
                ns.clone(),
                "canopy.dev/tenant=acme".into(),
            ],
        ),
        (
            "subnamespace label",
            vec![
                "label".into(),
                "namespace".into(),
                ns.clone(),
                "canopy.dev/subnamespace-of=x".into(),
            ],
        ),
        (
            "JSON patch",
            vec![
                "patch".into(),
                "namespace".into(),
                ns.clone(),
                "--type=json".into(),
                "-p".into(),
                format!(
                    r#"[{{"op":"remove","path":"/metadata/labels/{}"}}]"#,
                    own.replace('/', "~1")
                ),
            ],
        ),
        (
            "merge patch through the status subresource",
            vec![
                "patch".into(),
                "namespace".into(),
                ns.clone(),
                "--subresource=status".into(),
                "--type=merge".into(),
                "-p".into(),
                r#"{"metadata":{"labels":{"canopy.dev/tenant":"acme"}}}"#.into(),
            ],
        ),
        (
            "strategic patch",
            vec![
                "patch".into(),
                "namespace".into(),
                ns.clone(),
                "-p".into(),
                r#"{"metadata":{"labels":{"canopy.dev/tenant":"acme"}}}"#.into(),
            ],
        ),
    ];
    for (what, args) in attempts {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = kubectl(&args);
        assert!(!out.success, "{what} was admitted");
        assert!(
            out.stderr.contains("only canopy may set"),
            "{what}: {}",
            out.stderr
        );
    }
    let ssa = common::kubectl_with_stdin(
        &["apply", "--server-side", "--field-manager=hand", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels: {{canopy.dev/tenant: acme}}\n"
        )),
    );
    assert!(
        !ssa.success && ssa.stderr.contains("only canopy may set"),
        "server-side apply: {}",
        ssa.stderr
    );
    let create = apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}-new\n  labels: {{canopy.dev/tenant: acme}}\n"
    ));
    assert!(
        !create.success && create.stderr.contains("only canopy may set"),
        "create: {}",
        create.stderr
    );
    // Other labels stay free.
    kubectl_ok(&["label", "namespace", &ns, "team=blue"]);
}

#[test]
fn deleting_an_anchor_deletes_its_namespace_and_cascades_only_when_allowed() {
    let root = unique("del-root");
    let child = format!("{root}-c");
    let grandchild = format!("{root}-gc");
    create_namespace(&root);
    assert!(anchor(&root, &child).success);
    wait_until_anchor_ok(&root, &child, WAIT);
    let out = anchor(&child, &grandchild);
    assert!(out.success, "{}", out.stderr);
    wait_until_anchor_ok(&child, &grandchild, WAIT);

    let refused = kubectl(&["delete", "namespace", &grandchild]);
    assert!(
        !refused.success,
        "a subnamespace was deleted around its anchor"
    );
    assert!(
        refused.stderr.contains("delete it through its anchor"),
        "{}",
        refused.stderr
    );

    let refused = kubectl(&["delete", "subns", &child, "-n", &root]);
    assert!(!refused.success, "an anchor with a grandchild was deleted");
    assert!(
        refused.stderr.contains(&grandchild) && refused.stderr.contains("allowCascadingDeletion"),
        "{}",
        refused.stderr
    );

    let out = kubectl(&[
        "patch",
        "hc",
        "hierarchy",
        "-n",
        &root,
        "--type=merge",
        "-p",
        r#"{"spec":{"allowCascadingDeletion":true}}"#,
    ]);
    if !out.success {
        // The root has no hierarchy object until it has something to report.
        let created = apply(&format!(
            "apiVersion: canopy.dev/v1alpha1\nkind: HierarchyConfiguration\nmetadata: {{name: hierarchy, namespace: {root}}}\nspec: {{allowCascadingDeletion: true}}\n"
        ));
        assert!(created.success, "{}", created.stderr);
    }
    eventually("the anchor to be deletable", WAIT, || {
        kubectl(&["delete", "subns", &child, "-n", &root, "--wait=false"])
            .success
            .then_some(())
    });
    for ns in [&child, &grandchild] {
        wait_until_gone("namespace", None, ns, Duration::from_secs(90));
    }
}

#[test]
fn an_anchor_for_an_unrelated_namespace_is_refused_or_reports_conflict() {
    let parent = unique("conflict");
    let taken = unique("taken");
    create_namespace(&parent);
    create_namespace(&taken);
    kubectl_ok(&["label", "namespace", &taken, "owner=someone-else"]);

    let refused = anchor(&parent, &taken);
    assert!(!refused.success, "an anchor claimed a foreign namespace");
    assert!(
        refused.stderr.contains("already exists"),
        "{}",
        refused.stderr
    );

    // With the webhook out of the way (as canopy itself), the controller reports the
    // conflict and leaves the namespace alone.
    let out = common::kubectl_with_stdin(
        &["--as", CANOPY_SA, "apply", "-f", "-"],
        Some(&format!(
            "apiVersion: canopy.dev/v1alpha1\nkind: SubnamespaceAnchor\nmetadata: {{name: {taken}, namespace: {parent}}}\n"
        )),
    );
    assert!(out.success, "{}", out.stderr);
    eventually("the anchor to report Conflict", WAIT, || {
        let a = json(&["get", "subns", &taken, "-n", &parent, "-o", "json"])?;
        (a["status"]["status"] == "Conflict").then_some(())
    });
    wait_for_event(&parent, &taken, "Conflict");
    let untouched = namespace_labels(&taken).expect("still there");
    assert_eq!(untouched["owner"], "someone-else");
    assert!(untouched.get("canopy.dev/subnamespace-of").is_none());
    assert!(
        json(&["get", "hc", "hierarchy", "-n", &taken, "-o", "json"])
            .is_none_or(|h| h["spec"]["parent"].is_null())
    );

    // Deleting that anchor leaves the namespace alone too.
    kubectl_ok(&["delete", "subns", &taken, "-n", &parent]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        kubectl(&["get", "namespace", &taken]).success,
        "an unrelated namespace was deleted"
    );
}

#[test]
fn a_subnamespace_keeps_its_parent_while_its_anchor_exists() {
    let root = unique("keep");
    let child = format!("{root}-c");
    let other = unique("keep-other");
    create_namespace(&root);
    create_namespace(&other);
    assert!(anchor(&root, &child).success);
    wait_until_anchor_ok(&root, &child, WAIT);
    let out = try_set_parent(&child, &other);
    assert!(!out.success, "a subnamespace changed parent");
    assert!(out.stderr.contains("delete the anchor"), "{}", out.stderr);
}

#[test]
fn a_missing_parent_halts_the_namespace_until_it_heals() {
    let parent = unique("halt-parent");
    let child = format!("{parent}-c");
    create_namespace(&parent);
    create_namespace(&child);
    set_parent(&child, &parent);
    eventually("the child to join", WAIT, || {
        depth(&child, &parent).map(|_| ())
    });
    kubectl_ok(&["delete", "namespace", &parent, "--wait=false"]);
    eventually(
        "ActivitiesHalted with ParentMissing",
        Duration::from_secs(90),
        || {
            let hc = json(&["get", "hc", "hierarchy", "-n", &child, "-o", "json"])?;
            let conditions = hc["status"]["conditions"].as_array()?.clone();
            conditions
                .iter()
                .any(|c| {
                    c["type"] == "ActivitiesHalted"
                        && c["reason"] == "ParentMissing"
                        && c["status"] == "True"
                })
                .then_some(())
        },
    );
    assert!(
        depth(&child, &parent).is_none(),
        "a missing parent's label is dropped"
    );
    create_namespace(&parent);
    eventually("the halt to clear", WAIT, || {
        let hc = json(&["get", "hc", "hierarchy", "-n", &child, "-o", "json"])?;
        let healed = hc["status"]["conditions"]
            .as_array()
            .is_none_or(|c| c.is_empty());
        (healed && depth(&child, &parent).is_some()).then_some(())
    });
}

#[test]
fn an_anchor_cannot_smuggle_protected_labels_onto_its_namespace() {
    let root = unique("smuggle");
    create_namespace(&root);
    for label in [
        "canopy.dev/tenant: acme",
        "canopy.dev/excluded-namespace: 'true'",
        "x.tree.canopy.dev/depth: '1'",
        "pod-security.kubernetes.io/enforce: privileged",
    ] {
        let out = apply(&format!(
            "apiVersion: canopy.dev/v1alpha1\nkind: SubnamespaceAnchor\nmetadata: {{name: {root}-c, namespace: {root}}}\nspec:\n  labels: {{{label}}}\n"
        ));
        assert!(!out.success, "an anchor with {label} was admitted");
        assert!(
            out.stderr.contains("may not be set through an anchor"),
            "{}",
            out.stderr
        );
    }
}
