//! Propagation against the real apiserver: sources in a namespace reach every descendant,
//! and every change converges.

mod common;

use std::time::Duration;

use common::objects::{self, configure_kinds, get, wait_until_gone};
use common::{apply, cluster_with_canopy, eventually, json, kubectl, kubectl_ok, unique};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// The tests share one cluster and its one CanopyConfiguration: those that change it hold
/// this lock, so each sees the kinds it configured.
static CONFIGURATION: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

fn configuration_lock() -> parking_lot::MutexGuard<'static, ()> {
    CONFIGURATION.lock()
}

/// A tree `root -> mid -> leaf` of full namespaces, with canopy running.
fn tree(prefix: &str) -> (String, String, String) {
    cluster_with_canopy();
    objects::tree(prefix)
}

fn wait_for_copy(kind: &str, ns: &str, name: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(&format!("{kind} {ns}/{name}"), WAIT, || {
        get(kind, ns, name).filter(|o| check(o))
    })
}

#[test]
fn policy_in_a_root_reaches_a_grandchild_and_follows_its_source() {
    let (root, _mid, leaf) = tree("prop");
    let out = apply(&format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: devs
  namespace: {root}
  labels: {{argocd.argoproj.io/instance: platform, team: a}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: Group, name: devs}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: deny-ingress, namespace: {root}}}
spec: {{podSelector: {{}}, policyTypes: [Ingress]}}
---
apiVersion: v1
kind: ResourceQuota
metadata: {{name: quota, namespace: {root}}}
spec: {{hard: {{pods: "10"}}}}
---
apiVersion: v1
kind: LimitRange
metadata: {{name: limits, namespace: {root}}}
spec:
  limits:
  - type: Container
    default: {{cpu: 200m, memory: 128Mi}}
"#
    ));
    assert!(out.success, "{}", out.stderr);

    let rb = wait_for_copy("rolebinding", &leaf, "devs", |_| true);
    assert_eq!(
        rb["metadata"]["labels"]["canopy.dev/inherited-from"],
        root.as_str()
    );
    assert_eq!(rb["metadata"]["labels"]["team"], "a");
    assert!(
        rb["metadata"]["labels"]
            .get("argocd.argoproj.io/instance")
            .is_none(),
        "GitOps tracking labels are stripped"
    );
    assert!(
        rb["metadata"]["annotations"]
            .get("kubectl.kubernetes.io/last-applied-configuration")
            .is_none(),
        "kubectl's annotation is stripped"
    );
    assert_eq!(rb["roleRef"]["name"], "view");
    wait_for_copy("networkpolicy", &leaf, "deny-ingress", |o| {
        o["spec"]["policyTypes"][0] == "Ingress"
    });
    wait_for_copy("resourcequota", &leaf, "quota", |o| {
        o["spec"]["hard"]["pods"] == "10"
    });
    wait_for_copy("limitrange", &leaf, "limits", |o| {
        o["spec"]["limits"][0]["default"]["cpu"] == "200m"
    });

    // An update reaches every copy.
    kubectl_ok(&[
        "patch",
        "resourcequota",
        "quota",
        "-n",
        &root,
        "--type=merge",
        "-p",
        r#"{"spec":{"hard":{"pods":"20"}}}"#,
    ]);
    wait_for_copy("resourcequota", &leaf, "quota", |o| {
        o["spec"]["hard"]["pods"] == "20"
    });

    // A copy deleted behind canopy's back (as canopy itself, past the webhook) comes back.
    kubectl_ok(&[
        "--as",
        "system:serviceaccount:canopy-system:canopy",
        "delete",
        "rolebinding",
        "devs",
        "-n",
        &leaf,
    ]);
    wait_for_copy("rolebinding", &leaf, "devs", |_| true);

    // A delete reaches every copy.
    kubectl_ok(&["delete", "networkpolicy", "deny-ingress", "-n", &root]);
    wait_until_gone("networkpolicy", Some(&leaf), "deny-ingress", WAIT);
}

#[test]
fn moving_a_subtree_swaps_its_inherited_objects() {
    let (root, mid, leaf) = tree("swap");
    let other = unique("swap-other");
    kubectl_ok(&["create", "namespace", &other]);
    kubectl_ok(&[
        "create",
        "role",
        "from-root",
        "--verb=get",
        "--resource=pods",
        "-n",
        &root,
    ]);
    kubectl_ok(&[
        "create",
        "role",
        "from-other",
        "--verb=list",
        "--resource=pods",
        "-n",
        &other,
    ]);
    wait_for_copy("role", &leaf, "from-root", |_| true);

    let out = apply(&format!(
        "apiVersion: canopy.dev/v1alpha1\nkind: HierarchyConfiguration\nmetadata: {{name: hierarchy, namespace: {mid}}}\nspec: {{parent: {other}}}\n"
    ));
    assert!(out.success, "{}", out.stderr);
    wait_for_copy("role", &leaf, "from-other", |o| {
        o["metadata"]["labels"]["canopy.dev/inherited-from"] == other.as_str()
    });
    wait_until_gone("role", Some(&leaf), "from-root", WAIT);
    wait_until_gone("role", Some(&mid), "from-root", WAIT);
}

#[test]
fn none_select_and_tree_select_limit_where_copies_go() {
    let (root, mid, leaf) = tree("except");
    let sibling = format!("{root}-sib");
    kubectl_ok(&["create", "namespace", &sibling]);
    let out = apply(&format!(
        "apiVersion: canopy.dev/v1alpha1\nkind: HierarchyConfiguration\nmetadata: {{name: hierarchy, namespace: {sibling}}}\nspec: {{parent: {root}}}\n"
    ));
    assert!(out.success, "{}", out.stderr);
    kubectl_ok(&["label", "namespace", &sibling, "env=prod"]);
    let role = |name: &str, annotations: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {name}\n  namespace: {root}\n  annotations: {annotations}\nrules: [{{apiGroups: [''], resources: [pods], verbs: [get]}}]\n---\n"
        )
    };
    let out = apply(&format!(
        "{}{}{}{}",
        role("everywhere", "{}"),
        role("nowhere", "{propagate.canopy.dev/none: 'true'}"),
        role("prod-only", "{propagate.canopy.dev/select: 'env=prod'}"),
        role(
            "leaf-only",
            &format!("{{propagate.canopy.dev/treeSelect: '{mid}, !{mid}-x'}}")
        ),
    ));
    assert!(out.success, "{}", out.stderr);
    wait_for_copy("role", &leaf, "everywhere", |_| true);
    wait_for_copy("role", &sibling, "everywhere", |_| true);
    wait_for_copy("role", &sibling, "prod-only", |_| true);
    wait_for_copy("role", &leaf, "leaf-only", |_| true);
    wait_for_copy("role", &mid, "leaf-only", |_| true);
    // Give canopy time to (wrongly) write the rest, then check they are absent.
    std::thread::sleep(Duration::from_secs(2));
    for (ns, name) in [
        (&leaf, "nowhere"),
        (&sibling, "nowhere"),
        (&leaf, "prod-only"),
        (&sibling, "leaf-only"),
    ] {
        assert!(
            get("role", ns, name).is_none(),
            "{name} must not be in {ns}"
        );
    }
}

#[test]
fn copies_are_read_only() {
    let (root, mid, _leaf) = tree("readonly");
    kubectl_ok(&[
        "create",
        "role",
        "reader",
        "--verb=get",
        "--resource=pods",
        "-n",
        &root,
    ]);
    wait_for_copy("role", &mid, "reader", |_| true);
    let edit = kubectl(&[
        "patch",
        "role",
        "reader",
        "-n",
        &mid,
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/rules/0/verbs","value":["get","list","delete"]}]"#,
    ]);
    assert!(!edit.success, "a copy was edited");
    assert!(
        edit.stderr.contains("read-only") && edit.stderr.contains(&root),
        "{}",
        edit.stderr
    );
    let delete = kubectl(&["delete", "role", "reader", "-n", &mid]);
    assert!(
        !delete.success && delete.stderr.contains("read-only"),
        "{}",
        delete.stderr
    );
    let unlabel = kubectl(&[
        "label",
        "role",
        "reader",
        "-n",
        &mid,
        "canopy.dev/inherited-from-",
    ]);
    assert!(!unlabel.success, "a copy was turned into a local object");
    let forged = kubectl(&[
        "create",
        "role",
        "fake",
        "--verb=get",
        "--resource=pods",
        "-n",
        &mid,
        "--dry-run=client",
        "-o",
        "json",
    ]);
    let mut fake: Value = serde_json::from_str(&forged.stdout).expect("json");
    fake["metadata"]["labels"] = serde_json::json!({"canopy.dev/inherited-from": root});
    let out = common::kubectl_with_stdin(&["create", "-f", "-"], Some(&fake.to_string()));
    assert!(
        !out.success && out.stderr.contains("only canopy may set"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_source_that_would_overwrite_a_local_object_is_refused_and_a_later_conflict_is_reported() {
    let (root, mid, leaf) = tree("conflict");
    kubectl_ok(&[
        "create",
        "role",
        "shared",
        "--verb=get",
        "--resource=pods",
        "-n",
        &leaf,
    ]);
    let refused = kubectl(&[
        "create",
        "role",
        "shared",
        "--verb=list",
        "--resource=pods",
        "-n",
        &root,
    ]);
    assert!(!refused.success, "a conflicting source was admitted");
    assert!(
        refused.stderr.contains(&leaf) && refused.stderr.contains("not a copy"),
        "{}",
        refused.stderr
    );
    let dry = kubectl(&[
        "create",
        "role",
        "shared",
        "--verb=list",
        "--resource=pods",
        "-n",
        &root,
        "--dry-run=server",
    ]);
    assert!(!dry.success, "the dry run is checked too");

    // A conflict that arises anyway, by moving a subtree under a source, leaves the local
    // object alone and is reported on the source's namespace.
    let other = unique("conflict-other");
    kubectl_ok(&["create", "namespace", &other]);
    kubectl_ok(&[
        "create",
        "role",
        "theirs",
        "--verb=list",
        "--resource=pods",
        "-n",
        &other,
    ]);
    kubectl_ok(&[
        "create",
        "role",
        "theirs",
        "--verb=get",
        "--resource=pods",
        "-n",
        &leaf,
    ]);
    let out = apply(&format!(
        "apiVersion: canopy.dev/v1alpha1\nkind: HierarchyConfiguration\nmetadata: {{name: hierarchy, namespace: {mid}}}\nspec: {{parent: {other}}}\n"
    ));
    assert!(out.success, "{}", out.stderr);
    eventually(
        "a BadConfiguration condition on the source's namespace",
        WAIT,
        || {
            let hc = get("hc", &other, "hierarchy")?;
            hc["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| {
                    c["type"] == "BadConfiguration"
                        && c["reason"] == "CannotPropagateObject"
                        && c["message"]
                            .as_str()
                            .is_some_and(|m| m.contains(&format!("\"{leaf}\"")))
                })
                .map(|_| ())
        },
    );
    let local = get("role", &leaf, "theirs").expect("the local role stays");
    assert_eq!(
        local["rules"][0]["verbs"][0], "get",
        "the local object is left alone"
    );
    assert!(
        local["metadata"]["labels"]
            .get("canopy.dev/inherited-from")
            .is_none()
    );
    wait_for_copy("role", &mid, "theirs", |_| true);
}

/// Other kinds propagate once configured, at run time, and `Remove` deletes their copies.
#[test]
fn a_configured_kind_propagates_and_remove_deletes_its_copies() {
    let (root, _mid, leaf) = tree("secrets");
    let _configuration = configuration_lock();
    // canopy's role covers the default kinds only; an admin who configures more grants more.
    let out = apply(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: canopy-secrets}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get, list, watch, create, patch, delete]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: canopy-secrets}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: canopy-secrets}
subjects: [{kind: ServiceAccount, name: canopy, namespace: canopy-system}]
"#,
    );
    assert!(out.success, "{}", out.stderr);
    kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "registry",
        "-n",
        &root,
        "--from-literal=token=s3cret",
    ]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        get("secret", &leaf, "registry").is_none(),
        "secrets do not propagate by default"
    );

    let config =
        |mode: &str| configure_kinds(&[&format!("{{group: '', resource: secrets, mode: {mode}}}")]);
    config("Propagate");
    let copy = wait_for_copy("secret", &leaf, "registry", |_| true);
    assert_eq!(copy["data"]["token"], "czNjcmV0");
    eventually("status.resources to count the secret copies", WAIT, || {
        let c = json(&["get", "canopyconfiguration", "config", "-o", "json"])?;
        c["status"]["resources"]
            .as_array()?
            .iter()
            .find(|r| {
                r["resource"] == "secrets"
                    && r["mode"] == "Propagate"
                    && r["copies"].as_u64().is_some_and(|n| n >= 2)
            })
            .map(|_| ())
    });

    config("Remove");
    wait_until_gone("secret", Some(&leaf), "registry", WAIT);
    assert!(
        get("secret", &root, "registry").is_some(),
        "the source stays"
    );
}

/// The `propagated.canopy.dev` webhook in canopy's ValidatingWebhookConfiguration.
fn propagated_webhook() -> Option<Value> {
    let config = json(&[
        "get",
        "validatingwebhookconfiguration",
        "canopy",
        "-o",
        "json",
    ])?;
    config["webhooks"]
        .as_array()?
        .iter()
        .find(|w| w["name"] == "propagated.canopy.dev")
        .cloned()
}

/// Whether the webhook's rules send CREATE, UPDATE and DELETE of core `resource` to canopy.
fn webhook_covers(resource: &str) -> bool {
    let Some(webhook) = propagated_webhook() else {
        return false;
    };
    webhook["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|rule| {
            let has = |field: &str, value: &str| {
                rule[field]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == value))
            };
            has("apiGroups", "")
                && has("resources", resource)
                && ["CREATE", "UPDATE", "DELETE"]
                    .iter()
                    .all(|op| has("operations", op))
        })
}

/// Copies of a kind added to `spec.resources` are as read-only to a namespace's admins as
/// copies of the default kinds, on every write path, while the same paths keep working on
/// the source and on ordinary objects of the kind: canopy adds the kind to the rules of
/// `propagated.canopy.dev`, and puts it back when someone resets them.
#[test]
fn copies_of_a_configured_kind_are_read_only_to_namespace_admins() {
    let (root, mid, _leaf) = tree("cmro");
    let _configuration = configuration_lock();
    // canopy's role covers the default kinds only; an admin who configures more grants more.
    let out = apply(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: canopy-configmaps}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get, list, watch, create, patch, delete]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: canopy-configmaps}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: canopy-configmaps}
subjects: [{kind: ServiceAccount, name: canopy, namespace: canopy-system}]
"#,
    );
    assert!(out.success, "{}", out.stderr);
    let url_before = propagated_webhook().expect("the webhook")["clientConfig"]["url"].clone();
    configure_kinds(&["{group: '', resource: configmaps, mode: Propagate}"]);
    eventually("the webhook's rules to list configmaps", WAIT, || {
        webhook_covers("configmaps").then_some(())
    });
    assert_eq!(
        propagated_webhook().expect("the webhook")["clientConfig"]["url"],
        url_before,
        "only the rules are canopy's to write"
    );

    // The tree's admin: `admin` in the root, and by its copy in the namespaces below.
    let user = format!("{root}-owner");
    kubectl_ok(&[
        "create",
        "rolebinding",
        "tree-admin",
        "--clusterrole=admin",
        &format!("--user={user}"),
        "-n",
        &root,
    ]);
    wait_for_copy("rolebinding", &mid, "tree-admin", |_| true);
    let as_admin = |args: &[&str], stdin: Option<&str>| {
        let mut all = vec!["--as", user.as_str(), "--as-group", "tree-admins"];
        all.extend_from_slice(args);
        common::kubectl_with_stdin(&all, stdin)
    };
    let ok = |what: &str, out: common::Kubectl| {
        assert!(out.success, "{what} must work: {}", out.stderr);
    };
    let refused = |what: &str, out: common::Kubectl, message: &str| {
        assert!(!out.success, "{what} was admitted");
        assert!(out.stderr.contains(message), "{what}: {}", out.stderr);
    };

    // Creating an ordinary object of the kind works, and it becomes the source.
    ok(
        "creating a ConfigMap",
        as_admin(
            &[
                "create",
                "configmap",
                "settings",
                "--from-literal=level=info",
                "-n",
                &root,
            ],
            None,
        ),
    );
    wait_for_copy("configmap", &mid, "settings", |o| {
        o["data"]["level"] == "info"
            && o["metadata"]["labels"]["canopy.dev/inherited-from"] == root.as_str()
    });

    let apply_yaml = |ns: &str, level: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {ns}}}\ndata: {{level: {level}}}\n"
        )
    };
    let server_side = ["apply", "--server-side", "--force-conflicts", "-f", "-"];
    let merge = |ns: &str, level: &str| {
        as_admin(
            &[
                "patch",
                "configmap",
                "settings",
                "-n",
                ns,
                "--type=merge",
                "-p",
                &format!(r#"{{"data":{{"level":"{level}"}}}}"#),
            ],
            None,
        )
    };
    let json_patch = |ns: &str, level: &str| {
        as_admin(
            &[
                "patch",
                "configmap",
                "settings",
                "-n",
                ns,
                "--type=json",
                "-p",
                &format!(r#"[{{"op":"replace","path":"/data/level","value":"{level}"}}]"#),
            ],
            None,
        )
    };

    // Every write path: refused on the copy, working on the source.
    refused("a merge patch of a copy", merge(&mid, "debug"), "read-only");
    ok("a merge patch of the source", merge(&root, "warn"));
    refused(
        "a JSON patch of a copy",
        json_patch(&mid, "debug"),
        "read-only",
    );
    ok("a JSON patch of the source", json_patch(&root, "error"));
    refused(
        "a server-side apply to a copy",
        as_admin(&server_side, Some(&apply_yaml(&mid, "debug"))),
        "read-only",
    );
    ok(
        "a server-side apply to the source",
        as_admin(&server_side, Some(&apply_yaml(&root, "trace"))),
    );
    refused(
        "removing a copy's inherited-from label",
        as_admin(
            &[
                "label",
                "configmap",
                "settings",
                "-n",
                &mid,
                "canopy.dev/inherited-from-",
            ],
            None,
        ),
        "read-only",
    );
    refused(
        "deleting a copy",
        as_admin(&["delete", "configmap", "settings", "-n", &mid], None),
        "read-only",
    );
    let copy = wait_for_copy("configmap", &mid, "settings", |o| {
        o["data"]["level"] == "trace"
    });
    assert_eq!(
        copy["metadata"]["labels"]["canopy.dev/inherited-from"],
        root.as_str(),
        "the copy follows its source only"
    );

    // A forged copy is refused; the same object without the label is fine, as are its
    // update and deletion.
    let object = |name: &str, labels: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {mid}, labels: {labels}}}\ndata: {{level: info}}\n"
        )
    };
    refused(
        "creating an object labelled as a copy",
        as_admin(
            &["create", "-f", "-"],
            Some(&object(
                "forged",
                &format!("{{canopy.dev/inherited-from: {root}}}"),
            )),
        ),
        "only canopy may set",
    );
    ok(
        "creating a local ConfigMap",
        as_admin(&["create", "-f", "-"], Some(&object("local", "{}"))),
    );
    ok(
        "a merge patch of a local ConfigMap",
        as_admin(
            &[
                "patch",
                "configmap",
                "local",
                "-n",
                &mid,
                "--type=merge",
                "-p",
                r#"{"data":{"level":"debug"}}"#,
            ],
            None,
        ),
    );
    ok(
        "deleting a local ConfigMap",
        as_admin(&["delete", "configmap", "local", "-n", &mid], None),
    );

    // An upgrade that puts the static rules back is repaired, and copies are protected
    // again; the clientConfig (a URL in the tests) is left alone throughout.
    let manifest: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(common::repo_path(
            "webhooks/validating-webhook-configuration.yaml",
        ))
        .expect("the webhook manifest"),
    )
    .expect("the webhook manifest parses");
    let shipped = manifest["webhooks"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["name"] == "propagated.canopy.dev"))
        .expect("the shipped webhook")["rules"]
        .clone();
    let reset =
        serde_json::json!({"webhooks": [{"name": "propagated.canopy.dev", "rules": shipped}]});
    let out = kubectl_ok(&[
        "patch",
        "validatingwebhookconfiguration",
        "canopy",
        "--type=strategic",
        "-p",
        &reset.to_string(),
    ]);
    assert!(
        !out.contains("no change"),
        "the reset changed nothing: {out}"
    );
    eventually("canopy to put the configmaps rule back", WAIT, || {
        webhook_covers("configmaps").then_some(())
    });
    assert_eq!(
        propagated_webhook().expect("the webhook")["clientConfig"]["url"],
        url_before
    );
    refused(
        "a merge patch of a copy after the repair",
        merge(&mid, "debug"),
        "read-only",
    );

    // A kind dropped from the configuration loses its rule (its copies stay as they are).
    configure_kinds(&[]);
    eventually("the configmaps rule to go", WAIT, || {
        (!webhook_covers("configmaps")).then_some(())
    });
    assert!(
        webhook_covers("resourcequotas"),
        "the default kinds keep theirs"
    );
}

#[test]
fn a_role_binding_whose_role_ref_changes_is_replaced_in_every_copy() {
    let (root, _mid, leaf) = tree("roleref");
    kubectl_ok(&[
        "create",
        "rolebinding",
        "ops",
        "--clusterrole=view",
        "--group=ops",
        "-n",
        &root,
    ]);
    wait_for_copy("rolebinding", &leaf, "ops", |o| {
        o["roleRef"]["name"] == "view"
    });
    // roleRef is immutable: the source is replaced, and so must every copy be.
    kubectl_ok(&["delete", "rolebinding", "ops", "-n", &root]);
    kubectl_ok(&[
        "create",
        "rolebinding",
        "ops",
        "--clusterrole=edit",
        "--group=ops",
        "-n",
        &root,
    ]);
    wait_for_copy("rolebinding", &leaf, "ops", |o| {
        o["roleRef"]["name"] == "edit"
    });
}
