//! The `kubectl-canopy` binary against a real kube-apiserver. No canopy controller runs
//! here, so the tests write namespaces and HierarchyConfigurations with kubectl and check
//! what the plugin reads and writes.

mod common;

use std::process::{Command, Stdio};

use common::objects::set_parent;
use common::{Kubectl, apply, cluster, kubectl, kubectl_ok, unique};
use serde_json::Value;

/// Runs the plugin as the admin user of the shared control plane.
fn canopy(args: &[&str]) -> Kubectl {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubectl-canopy"));
    cmd.env("KUBECONFIG", &cluster().kubeconfig);
    run(cmd, args)
}

fn run(mut cmd: Command, args: &[&str]) -> Kubectl {
    cmd.args(args)
        .stdin(Stdio::null())
        .output()
        .expect("kubectl-canopy runs")
        .into()
}

#[track_caller]
fn canopy_ok(args: &[&str]) -> String {
    let out = canopy(args);
    assert!(
        out.success,
        "kubectl-canopy {args:?} failed: {}",
        out.stderr
    );
    out.stdout
}

/// Asserts the plugin failed with exit code 1 and one `Error: ...` line; returns it.
#[track_caller]
fn canopy_err(args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubectl-canopy"));
    cmd.env("KUBECONFIG", &cluster().kubeconfig);
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("kubectl-canopy runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "kubectl-canopy {args:?} should exit 1; stderr: {stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout: {:?}", out.stdout);
    assert!(stderr.starts_with("Error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

fn namespace(name: &str, subnamespace_of: Option<&str>) {
    kubectl_ok(&["create", "namespace", name]);
    if let Some(parent) = subnamespace_of {
        kubectl_ok(&[
            "label",
            "namespace",
            name,
            &format!("canopy.dev/subnamespace-of={parent}"),
        ]);
    }
}

fn hierarchy_spec(namespace: &str) -> Value {
    let json = kubectl_ok(&["get", "hc", "hierarchy", "-n", namespace, "-o", "json"]);
    let hc: Value = serde_json::from_str(&json).expect("kubectl prints JSON");
    hc["spec"].clone()
}

/// root ─┬─ [s] root-a ── root-a-x
///       └─ root-b (halted: ParentMissing, reported in its status)
fn small_tree() -> String {
    let root = unique("tree");
    let (a, b, ax) = (
        format!("{root}-a"),
        format!("{root}-b"),
        format!("{root}-a-x"),
    );
    namespace(&root, None);
    namespace(&a, Some(&root));
    namespace(&b, None);
    namespace(&ax, None);
    set_parent(&a, &root);
    set_parent(&b, &root);
    set_parent(&ax, &a);
    kubectl_ok(&[
        "patch",
        "hc",
        "hierarchy",
        "-n",
        &b,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"ActivitiesHalted","status":"True",
            "reason":"ParentMissing","message":"parent is gone",
            "lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#,
    ]);
    root
}

#[test]
fn tree_prints_the_subtree_indented_with_marks_and_legend() {
    let root = small_tree();
    let out = canopy_ok(&["tree", &root]);
    let expected_tree = format!(
        "{root}\n\
         ├── [s] {root}-a\n\
         │   └── {root}-a-x\n\
         └── {root}-b (halted: ParentMissing)\n"
    );
    assert!(out.starts_with(&expected_tree), "{out}");
    assert!(out.contains("\n[s] indicates subnamespaces\n"), "{out}");
    assert!(
        out.contains("(halted: REASON) indicates ActivitiesHalted"),
        "{out}"
    );

    // A subtree on its own; the namespace may also come from -n.
    let sub = canopy_ok(&["tree", "-n", &format!("{root}-a")]);
    assert_eq!(
        sub,
        format!("[s] {root}-a\n└── {root}-a-x\n\n[s] indicates subnamespaces\n")
    );

    // Every tree: other tests' namespaces are there too, so look for this one's block.
    let all = canopy_ok(&["tree", "-A"]);
    assert!(all.contains(&expected_tree), "{all}");
    assert!(
        all.lines().any(|l| l == "kube-system"),
        "every root is printed: {all}"
    );
}

#[test]
fn tree_prints_a_cycle_once_and_marks_it() {
    let x = unique("cycle-x");
    let y = unique("cycle-y");
    namespace(&x, None);
    namespace(&y, None);
    // Nothing refuses a cycle here: no canopy webhook runs in these tests.
    set_parent(&x, &y);
    set_parent(&y, &x);
    let out = canopy_ok(&["tree", &x]);
    assert!(
        out.starts_with(&format!(
            "{x} (halted: InCycle)\n└── {y} (halted: InCycle)\n\n"
        )),
        "{out}"
    );
    let all = canopy_ok(&["tree", "--all-namespaces"]);
    assert_eq!(all.matches(&format!(" {y} (halted")).count(), 1, "{all}");
}

#[test]
fn create_makes_an_anchor_in_the_parent() {
    let parent = unique("parent");
    namespace(&parent, None);
    let child = format!("{parent}-child");
    let out = canopy_ok(&["create", &child, "-n", &parent]);
    assert_eq!(
        out,
        format!("Successfully created {child:?} subnamespace anchor in {parent:?} namespace\n")
    );
    let anchors = kubectl_ok(&["get", "subns", "-n", &parent, "-o", "name"]);
    assert_eq!(
        anchors.trim(),
        format!("subnamespaceanchor.canopy.dev/{child}")
    );

    let again = canopy_err(&["create", &child, "-n", &parent]);
    assert!(again.contains("already exists"), "{again}");
    let bad = canopy_err(&["create", "Not_A_Name", "-n", &parent]);
    assert!(bad.contains("not a valid namespace name"), "{bad}");
}

#[test]
fn set_writes_the_parent_and_cascading_deletion() {
    let parent = unique("setp");
    let ns = unique("setc");
    namespace(&parent, None);
    namespace(&ns, None);

    let out = canopy_ok(&["set", &ns, "--parent", &parent]);
    assert_eq!(out, format!("Set the parent of {ns:?} to {parent:?}\n"));
    assert_eq!(hierarchy_spec(&ns)["parent"], parent.as_str());

    let out = canopy_ok(&["set", &ns, "--allow-cascading-deletion"]);
    assert_eq!(out, format!("Allowed cascading deletion in {ns:?}\n"));
    let spec = hierarchy_spec(&ns);
    assert_eq!(spec["allowCascadingDeletion"], true);
    assert_eq!(spec["parent"], parent.as_str(), "the parent is kept");

    let out = canopy_ok(&["set", &ns, "--root"]);
    assert_eq!(
        out,
        format!("{ns:?} is now a root (its parent was {parent:?})\n")
    );
    let spec = hierarchy_spec(&ns);
    assert!(spec["parent"].is_null(), "{spec}");
    assert_eq!(spec["allowCascadingDeletion"], true, "the flag is kept");

    let out = canopy_ok(&["set", &ns, "--root"]);
    assert!(out.contains("already a root; no change"), "{out}");

    // The writes are the plugin's own, so they can be told from canopy's and GitOps'.
    let json = kubectl_ok(&[
        "get",
        "hc",
        "hierarchy",
        "-n",
        &ns,
        "-o",
        "json",
        "--show-managed-fields",
    ]);
    let hc: Value = serde_json::from_str(&json).expect("JSON");
    let managers: Vec<&str> = hc["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(managers, ["kubectl-canopy"]);
}

#[test]
fn set_takes_over_a_parent_written_by_kubectl() {
    let ns = unique("takeover");
    namespace(&ns, None);
    set_parent(&ns, "somewhere");
    canopy_ok(&["set", &ns, "--root"]);
    assert!(hierarchy_spec(&ns)["parent"].is_null());
    let tree = canopy_ok(&["tree", &ns]);
    assert_eq!(tree, format!("{ns}\n"));
}

#[test]
fn describe_shows_parent_children_and_anchors() {
    let root = small_tree();
    let a = format!("{root}-a");
    canopy_ok(&["create", &format!("{a}-new"), "-n", &a]);
    let out = canopy_ok(&["describe", &a]);
    for line in [
        format!("Namespace:                {a}"),
        format!("Parent:                   {root}"),
        format!("Ancestors:                {root} > {a}"),
        format!("Subnamespace of:          {root}"),
        "Allow cascading deletion: false".to_owned(),
        "Children:".to_owned(),
        format!("  - {a}-x"),
        "Anchors:".to_owned(),
        format!("  - {a}-new: no status yet"),
        "Conditions:               none reported".to_owned(),
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }
    let out = canopy_ok(&["describe", &format!("{root}-b")]);
    assert!(
        out.contains("  - ActivitiesHalted=True (ParentMissing): parent is gone\n"),
        "{out}"
    );
}

#[test]
fn a_missing_namespace_is_a_clear_error() {
    let missing = unique("missing");
    for args in [
        vec!["tree", missing.as_str()],
        vec!["describe", missing.as_str()],
        vec!["set", missing.as_str(), "--root"],
        vec!["set", missing.as_str(), "--parent", "default"],
        vec!["create", "child", "-n", missing.as_str()],
    ] {
        let err = canopy_err(&args);
        assert_eq!(
            err.trim_end(),
            format!("Error: namespace {missing:?} not found"),
            "{args:?}"
        );
    }
}

#[test]
fn an_unreadable_kubeconfig_is_a_clear_error() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubectl-canopy"));
    cmd.env_remove("KUBECONFIG");
    let out = run(
        cmd,
        &["--kubeconfig", "/nonexistent/kubeconfig", "tree", "x"],
    );
    assert!(!out.success);
    assert!(
        out.stderr
            .starts_with("Error: cannot read kubeconfig /nonexistent/kubeconfig"),
        "{}",
        out.stderr
    );

    // The flag works as the environment variable does.
    let ns = unique("flag");
    namespace(&ns, None);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubectl-canopy"));
    cmd.env_remove("KUBECONFIG");
    let kubeconfig = cluster().kubeconfig.to_string_lossy().into_owned();
    let out = run(cmd, &["tree", &ns, "--kubeconfig", &kubeconfig]);
    assert!(out.success, "{}", out.stderr);
    assert_eq!(out.stdout, format!("{ns}\n"));
}

#[test]
fn impersonated_user_without_rights_is_refused_clearly() {
    let user = unique("nobody");
    let ns = unique("guarded");
    namespace(&ns, None);

    // Neither the cluster-wide list nor the per-namespace reads it falls back to.
    let err = canopy_err(&["tree", &ns, "--as", &user]);
    assert!(
        err.contains(&format!(
            "get hierarchyconfigurations.canopy.dev in namespace {ns:?} was refused (Forbidden)"
        )),
        "{err}"
    );
    assert!(err.contains(&format!("User \"{user}\"")), "{err}");
    let err = canopy_err(&["tree", "-A", "--as", &user]);
    assert!(
        err.contains("list namespaces at the cluster scope was refused (Forbidden)"),
        "{err}"
    );

    let err = canopy_err(&["create", "child", "-n", &ns, "--as", &user]);
    assert!(
        err.contains(&format!(
            "create subnamespaceanchors.canopy.dev in namespace {ns:?} was refused (Forbidden)"
        )),
        "{err}"
    );

    let err = canopy_err(&["set", &ns, "--root", "--as", &user]);
    assert!(err.contains("(Forbidden)"), "{err}");
    assert!(err.contains("hierarchyconfigurations"), "{err}");

    // The same user in an admin group may: --as-group reaches the apiserver.
    let out = canopy_ok(&["tree", &ns, "--as", &user, "--as-group", "system:masters"]);
    assert_eq!(out, format!("{ns}\n"));
    let denied = kubectl(&["--as", &user, "get", "subns", "-n", &ns]);
    assert!(!denied.success, "the user itself still has no rights");
}

/// Grants `user` what a tenant owner has in `namespaces` only: no cluster-wide list.
fn grant_namespaced(user: &str, namespaces: &[&str]) {
    let role = unique("tenant-owner");
    let mut yaml = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {role}}}\n\
         rules:\n\
         - {{apiGroups: [\"\"], resources: [namespaces], verbs: [get]}}\n\
         - {{apiGroups: [canopy.dev], resources: [hierarchyconfigurations], verbs: [get, list]}}\n\
         - {{apiGroups: [canopy.dev], resources: [subnamespaceanchors], verbs: [get, list, create]}}\n"
    );
    for ns in namespaces {
        yaml.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
             metadata: {{name: {role}, namespace: {ns}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\n\
             subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]\n"
        ));
    }
    let out = apply(&yaml);
    assert!(out.success, "{}", out.stderr);
}

fn set_children(namespace: &str, children: &[&str]) {
    let patch = serde_json::json!({"status": {"children": children}}).to_string();
    kubectl_ok(&[
        "patch",
        "hc",
        "hierarchy",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

#[test]
fn a_tenant_owner_without_cluster_wide_rights_sees_their_tree() {
    let root = small_tree();
    let (a, b, ax) = (
        format!("{root}-a"),
        format!("{root}-b"),
        format!("{root}-a-x"),
    );
    // What the controller would report; none runs here.
    let out = apply(&format!(
        "apiVersion: canopy.dev/v1alpha1\nkind: HierarchyConfiguration\n\
         metadata: {{name: hierarchy, namespace: {root}}}\n"
    ));
    assert!(out.success, "{}", out.stderr);
    set_children(&root, &[&a, &b]);
    set_children(&a, &[&ax]);
    let user = unique("owner");
    // Not in root-b: it is listed by its parent, but its own conditions stay unseen.
    grant_namespaced(&user, &[&root, &a, &ax]);

    let out = common::eventually(
        "the bindings to take effect",
        std::time::Duration::from_secs(10),
        || {
            let out = canopy(&["tree", &root, "--as", &user]);
            out.success.then_some(out.stdout)
        },
    );
    assert_eq!(
        out,
        format!(
            "{root}\n\
             ├── [s] {a}\n\
             │   └── {ax}\n\
             └── {b}\n\
             \n\
             [s] indicates subnamespaces\n"
        )
    );

    let out = canopy_ok(&["describe", &a, "--as", &user]);
    for line in [
        format!("Parent:                   {root}"),
        format!("Ancestors:                {root} > {a}"),
        format!("  - {ax}"),
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }

    let out = canopy_ok(&["create", &format!("{a}-y"), "-n", &a, "--as", &user]);
    assert!(out.starts_with("Successfully created"), "{out}");
}

#[test]
fn usage_errors_exit_1_like_every_other_error() {
    let out = canopy(&["set", "some-namespace"]);
    assert!(!out.success);
    assert!(out.stderr.contains("--root"), "{}", out.stderr);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubectl-canopy"));
    let status = cmd
        .args(["tree", "x", "--as-group", "g"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("kubectl-canopy runs");
    assert_eq!(status.code(), Some(1));
}
