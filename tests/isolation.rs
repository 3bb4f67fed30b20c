//! Tenant isolation, attacked the way a tenant owner would: impersonated (`--as <t>-bob
//! --as-group <t>-admins`) with only the rights a Tenant gives its owners, on every write
//! path, concurrently where the attack is a race. Each refusal is paired with the
//! legitimate operation on the same path succeeding, so a refusal for the wrong reason
//! cannot pass. docs/security.md maps each attack class to its test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::objects::{anchor, hierarchy, namespace_labels};
use common::tenants::{
    WAIT, as_owner, as_owner_stdin, create_tenant, owner_flags, owner_subnamespace,
    race_anchors_into_tenants,
};
use common::{
    apply, cluster_with_canopy, eventually, json, kubectl, kubectl_ok, kubectl_with_stdin, unique,
};
use serde_json::Value;

#[test]
fn racing_anchors_never_take_a_tenant_past_max_namespaces() {
    cluster_with_canopy();
    race_anchors_into_tenants("race");
}

#[test]
fn an_owner_cannot_strip_canopys_finalizer_on_any_write_path() {
    cluster_with_canopy();
    let t = unique("fin");
    create_tenant(&t, 10, "");
    let child = format!("{t}-dev");
    owner_subnamespace(&t, &t, &child);
    let target = ["subnamespaceanchor", child.as_str(), "-n", t.as_str()];
    eventually("canopy's finalizer on the anchor", WAIT, || {
        let a = json(&[
            "get", target[0], target[1], target[2], target[3], "-o", "json",
        ])?;
        (a["metadata"]["finalizers"][0] == "canopy.dev/subnamespace").then_some(())
    });

    let patches: [(&str, &str, Option<&str>); 4] = [
        ("merge", r#"{"metadata":{"finalizers":[]}}"#, None),
        ("merge", r#"{"metadata":{"finalizers":null}}"#, None),
        (
            "json",
            r#"[{"op":"remove","path":"/metadata/finalizers/0"}]"#,
            None,
        ),
        ("merge", r#"{"metadata":{"finalizers":[]}}"#, Some("status")),
    ];
    for (kind, patch, subresource) in patches {
        let mut args = vec!["patch", target[0], target[1], target[2], target[3]];
        args.extend(["--type", kind, "-p", patch]);
        let sub;
        if let Some(s) = subresource {
            sub = format!("--subresource={s}");
            args.push(&sub);
        }
        let out = as_owner(&t, &args);
        assert!(
            !out.success,
            "{kind} patch {patch} ({subresource:?}) went through"
        );
        if subresource.is_none() {
            assert!(
                out.stderr.contains("only canopy may remove the finalizer"),
                "{kind} patch {patch}: {}",
                out.stderr
            );
        }
    }
    // Update (replace) without the finalizer.
    let mut object = json(&[
        "get", target[0], target[1], target[2], target[3], "-o", "json",
    ])
    .expect("the anchor");
    object["metadata"]["finalizers"] = Value::Array(vec![]);
    let out = as_owner_stdin(&t, &["replace", "-f", "-"], &object.to_string());
    assert!(
        !out.success && out.stderr.contains("only canopy may remove the finalizer"),
        "replace: {}",
        out.stderr
    );
    // Server-side apply taking the field over.
    let ssa = format!(
        "apiVersion: canopy.dev/v1alpha1\nkind: SubnamespaceAnchor\nmetadata: {{name: {child}, namespace: {t}, finalizers: []}}\n"
    );
    let out = as_owner_stdin(
        &t,
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        &ssa,
    );
    let a = json(&[
        "get", target[0], target[1], target[2], target[3], "-o", "json",
    ])
    .expect("the anchor");
    assert_eq!(
        a["metadata"]["finalizers"][0], "canopy.dev/subnamespace",
        "server-side apply removed the finalizer: {out:?}"
    );

    // The same paths work for what the owner may change.
    let out = as_owner(
        &t,
        &[
            "patch",
            target[0],
            target[1],
            target[2],
            target[3],
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"labels":{"team":"web"}}}"#,
        ],
    );
    assert!(out.success, "a label on the anchor: {}", out.stderr);
    let out = as_owner(
        &t,
        &[
            "patch",
            target[0],
            target[1],
            target[2],
            target[3],
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/metadata/finalizers/-","value":"example.com/keep"}]"#,
        ],
    );
    assert!(out.success, "another finalizer: {}", out.stderr);
    let out = as_owner(
        &t,
        &[
            "patch",
            target[0],
            target[1],
            target[2],
            target[3],
            "--type",
            "json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers/1"}]"#,
        ],
    );
    assert!(out.success, "removing their own finalizer: {}", out.stderr);

    // A Tenant's finalizer is canopy's too, even for a cluster admin.
    let out = kubectl(&[
        "patch",
        "tenant",
        &t,
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":[]}}"#,
    ]);
    assert!(
        !out.success && out.stderr.contains("only canopy may remove the finalizer"),
        "{}",
        out.stderr
    );
    let out = kubectl(&[
        "patch",
        "tenant",
        &t,
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":"gold"}}}"#,
    ]);
    assert!(out.success, "a label on the Tenant: {}", out.stderr);
}

#[test]
fn a_namespace_whose_anchor_is_gone_stays_in_its_tenant() {
    cluster_with_canopy();
    let t = unique("stay");
    create_tenant(&t, 10, "");
    let sibling = format!("{t}-ops");
    owner_subnamespace(&t, &t, &sibling);
    // A namespace outside the tenant where the owner is an admin too.
    let outside = unique("outside");
    kubectl_ok(&["create", "namespace", &outside]);
    kubectl_ok(&[
        "create",
        "rolebinding",
        "owner-admin",
        "--clusterrole=admin",
        &format!("--group={t}-admins"),
        "-n",
        &outside,
    ]);

    // A subnamespace whose anchor is gone, as only a stopped canopy could leave one (its
    // finalizer is canopy's alone): made here by canopy's own identity, the way canopy
    // makes a subnamespace, without the anchor.
    let canopy = "system:serviceaccount:canopy-system:canopy";
    let lost = format!("{t}-lost");
    let namespace = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {lost}\n  labels: {{canopy.dev/subnamespace-of: {t}, canopy.dev/tenant: {t}}}\n"
    );
    let out = kubectl_with_stdin(&["create", "--as", canopy, "-f", "-"], Some(&namespace));
    assert!(out.success, "{}", out.stderr);
    let out = kubectl_with_stdin(
        &["apply", "--as", canopy, "-f", "-"],
        Some(&hierarchy(&lost, Some(&t))),
    );
    assert!(out.success, "{}", out.stderr);
    let child = lost;
    eventually("SubnamespaceAnchorMissing on the namespace", WAIT, || {
        let hc = json(&[
            "get",
            "hierarchyconfiguration",
            "hierarchy",
            "-n",
            &child,
            "-o",
            "json",
        ])?;
        hc["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "BadConfiguration" && c["reason"] == "SubnamespaceAnchorMissing")
            .then_some(())
    });
    let labels = namespace_labels(&child).expect("the namespace stays");
    assert_eq!(labels["canopy.dev/tenant"], t.as_str());
    assert!(
        json(&[
            "get",
            "rolebinding",
            "canopy-owners",
            "-n",
            &child,
            "-o",
            "json"
        ])
        .is_some()
    );

    // Every way out of the tenant, as the owner: refused.
    let refusals = [
        ("become a root", hierarchy(&child, None)),
        ("move outside", hierarchy(&child, Some(&outside))),
    ];
    for (what, manifest) in &refusals {
        let out = as_owner_stdin(&t, &["apply", "-f", "-"], manifest);
        assert!(
            !out.success && out.stderr.contains("tenants.canopy.dev"),
            "{what}: {}",
            out.stderr
        );
    }
    let out = as_owner(
        &t,
        &[
            "delete",
            "hierarchyconfiguration",
            "hierarchy",
            "-n",
            &child,
        ],
    );
    assert!(
        !out.success && out.stderr.contains("tenants.canopy.dev"),
        "deleting the hierarchy: {}",
        out.stderr
    );
    let plugin = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-canopy"))
        .args(["set", &child, "--root"])
        .args(owner_flags(&t))
        .env("KUBECONFIG", &common::current().kubeconfig)
        .output()
        .expect("kubectl-canopy runs");
    assert!(
        !plugin.status.success(),
        "kubectl canopy set --root as the owner: {}",
        String::from_utf8_lossy(&plugin.stdout)
    );
    assert_eq!(
        namespace_labels(&child).expect("still there")["canopy.dev/tenant"],
        t.as_str()
    );

    // Within the tenant, the owner may move it; a cluster admin may take it out.
    let out = as_owner_stdin(
        &t,
        &["apply", "-f", "-"],
        &hierarchy(&child, Some(&sibling)),
    );
    assert!(out.success, "a move within the tenant: {}", out.stderr);
    let out = apply(&hierarchy(&child, None));
    assert!(
        out.success,
        "a cluster admin makes it a root: {}",
        out.stderr
    );
    eventually("the namespace to leave the tenant", WAIT, || {
        namespace_labels(&child)?
            .get("canopy.dev/tenant")
            .is_none()
            .then_some(())
    });
}

fn host_path_pod(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  \
         containers:\n  - name: app\n    image: localhost/canopy-toolbox:latest\n    \
         resources: {{requests: {{cpu: 10m, memory: 16Mi}}, limits: {{cpu: 10m, memory: 16Mi}}}}\n    \
         volumeMounts: [{{name: root, mountPath: /host}}]\n  \
         volumes: [{{name: root, hostPath: {{path: /}}}}]\n"
    )
}

fn plain_pod(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  \
         containers:\n  - name: app\n    image: localhost/canopy-toolbox:latest\n    \
         resources: {{requests: {{cpu: 10m, memory: 16Mi}}, limits: {{cpu: 10m, memory: 16Mi}}}}\n"
    )
}

#[test]
fn a_new_subnamespace_is_its_tenants_from_its_first_instant() {
    cluster_with_canopy();
    let t = unique("first");
    create_tenant(&t, 20, "");
    for round in 0..3 {
        let child = format!("{t}-c{round}");
        let out = as_owner_stdin(&t, &["apply", "-f", "-"], &anchor(&t, &child));
        assert!(out.success, "{}", out.stderr);
        // Four owners post hostPath Pods in a tight loop while the namespace appears.
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let attackers: Vec<_> = (0..4)
            .map(|i| {
                let (t, child, done) = (t.clone(), child.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut tries = 0;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        tries += 1;
                        let pod = host_path_pod(&child, &format!("grab-{i}-{tries}"));
                        let out = as_owner_stdin(&t, &["create", "-f", "-"], &pod);
                        assert!(
                            !out.success,
                            "a hostPath Pod was admitted in {child} on try {tries}"
                        );
                        assert!(
                            out.stderr.contains("not found")
                                || out.stderr.contains("hostPath")
                                || out.stderr.contains("forbidden"),
                            "unexpected answer: {}",
                            out.stderr
                        );
                    }
                })
            })
            .collect();
        eventually(&format!("namespace {child}"), WAIT, || {
            namespace_labels(&child).map(|_| ())
        });
        std::thread::sleep(Duration::from_secs(2));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        for attacker in attackers {
            attacker.join().expect("an attacker thread");
        }
        // The namespace was created with its tenant's labels in the create itself: the
        // only field manager of the tenant label is canopy's create.
        let labels = namespace_labels(&child).expect("the namespace");
        assert_eq!(labels["canopy.dev/tenant"], t.as_str());
        assert_eq!(labels[format!("{t}.tree.canopy.dev/depth")], "1");
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline");
        // The same request without hostPath is the owner's to make (once the owners'
        // binding has been copied in).
        eventually("a compliant Pod to be admitted", WAIT, || {
            let out = as_owner_stdin(&t, &["create", "-f", "-"], &plain_pod(&child, "fine"));
            assert!(
                out.success || out.stderr.contains("forbidden: User"),
                "a compliant Pod: {}",
                out.stderr
            );
            out.success.then_some(())
        });
    }
}

fn privileged_pod(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  \
         hostPID: true\n  containers:\n  - name: app\n    image: localhost/canopy-toolbox:latest\n    \
         command: [nsenter, -t, \"1\", -m, -u, -i, -n, sh]\n    securityContext: {{privileged: true}}\n    \
         resources: {{requests: {{cpu: 10m, memory: 16Mi}}, limits: {{cpu: 10m, memory: 16Mi}}}}\n"
    )
}

#[test]
fn privileged_pods_are_refused_and_pod_security_labels_are_the_tenants() {
    cluster_with_canopy();
    let t = unique("psa");
    create_tenant(&t, 10, "");
    let child = format!("{t}-dev");
    owner_subnamespace(&t, &t, &child);
    for ns in [&t, &child] {
        eventually(&format!("Pod Security labels on {ns}"), WAIT, || {
            let labels = namespace_labels(ns)?;
            ["enforce", "warn", "audit"]
                .iter()
                .all(|m| labels[format!("pod-security.kubernetes.io/{m}")] == "baseline")
                .then_some(())
        });
        let out = as_owner_stdin(&t, &["create", "-f", "-"], &privileged_pod(ns, "escape"));
        assert!(
            !out.success && out.stderr.contains("PodSecurity"),
            "a privileged hostPID Pod in {ns}: {}",
            out.stderr
        );
        let out = as_owner_stdin(&t, &["create", "-f", "-"], &plain_pod(ns, "fine"));
        assert!(out.success, "a plain Pod in {ns}: {}", out.stderr);
    }

    // Nobody lowers the level by hand, on any write path; other labels stay free.
    let lower = [
        vec![
            "label",
            "namespace",
            child.as_str(),
            "pod-security.kubernetes.io/enforce=privileged",
            "--overwrite",
        ],
        vec![
            "label",
            "namespace",
            child.as_str(),
            "pod-security.kubernetes.io/enforce-",
        ],
        vec![
            "patch",
            "namespace",
            child.as_str(),
            "--type",
            "json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/labels/pod-security.kubernetes.io~1warn"}]"#,
        ],
        vec![
            "patch",
            "namespace",
            child.as_str(),
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"labels":{"pod-security.kubernetes.io/enforce-version":"v1.0"}}}"#,
        ],
    ];
    for args in &lower {
        let out = kubectl(args);
        assert!(
            !out.success && out.stderr.contains("spec.podSecurity"),
            "{args:?} as cluster admin: {}",
            out.stderr
        );
    }
    let ssa = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {child}\n  labels: {{pod-security.kubernetes.io/enforce: privileged}}\n"
    );
    let out = kubectl_with_stdin(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            "attacker",
            "-f",
            "-",
        ],
        Some(&ssa),
    );
    assert!(!out.success, "server-side apply: {}", out.stderr);
    let out = as_owner(
        &t,
        &[
            "label",
            "namespace",
            &child,
            "pod-security.kubernetes.io/enforce=privileged",
        ],
    );
    assert!(!out.success, "the owner may not even update namespaces");
    // Through an anchor: refused too.
    let smuggle = format!(
        "apiVersion: canopy.dev/v1alpha1\nkind: SubnamespaceAnchor\nmetadata: {{name: {t}-priv, namespace: {t}}}\nspec:\n  labels: {{pod-security.kubernetes.io/enforce: privileged}}\n"
    );
    let out = as_owner_stdin(&t, &["apply", "-f", "-"], &smuggle);
    assert!(
        !out.success,
        "an anchor carrying a Pod Security label: {}",
        out.stderr
    );
    kubectl_ok(&["label", "namespace", &child, "team=web"]);

    // The cluster admin's way: the Tenant's level, followed by every namespace.
    kubectl_ok(&[
        "patch",
        "tenant",
        &t,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"podSecurity":"restricted"}}"#,
    ]);
    for ns in [&t, &child] {
        eventually(&format!("restricted on {ns}"), WAIT, || {
            (namespace_labels(ns)?["pod-security.kubernetes.io/enforce"] == "restricted")
                .then_some(())
        });
    }
}

#[test]
fn anchors_in_excluded_namespaces_are_refused_and_excluded_namespaces_are_labelled() {
    cluster_with_canopy();
    eventually("kube-system labelled as excluded", WAIT, || {
        (namespace_labels("kube-system")?["canopy.dev/excluded-namespace"] == "true").then_some(())
    });
    let out = apply(&anchor("kube-system", &unique("sneak")));
    assert!(
        !out.success && out.stderr.contains("excluded"),
        "an anchor in kube-system: {}",
        out.stderr
    );
    let plain = unique("plain");
    kubectl_ok(&["create", "namespace", &plain]);
    let out = apply(&anchor(&plain, &format!("{plain}-child")));
    assert!(
        out.success,
        "an anchor in an ordinary namespace: {}",
        out.stderr
    );
    let out = kubectl(&[
        "label",
        "namespace",
        &plain,
        "canopy.dev/excluded-namespace=true",
    ]);
    assert!(
        !out.success,
        "the excluded label is canopy's: {}",
        out.stderr
    );
}
