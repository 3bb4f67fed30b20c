//! What operators and tenant owners can see. An operator: canopy creates the
//! CanopyConfiguration `config` when it is missing, reports every configured kind it
//! cannot use with the fix on its status and in a Warning Event, and the fix (a
//! ClusterRole carrying canopy's aggregation label) takes effect without a restart;
//! Tenant Events land in the namespace they concern. An owner: `kubectl canopy tree`
//! shows the trees of their tenants, though they may not list namespaces.
//!
//! One test changes the one CanopyConfiguration; the others touch only their own Tenants.

mod common;

use std::time::Duration;

use common::objects::{bad_configuration, configure_kinds};
use common::tenants::{create_tenant, owner_flags, owner_subnamespace};
use common::{cluster_with_canopy, eventually, json, kubectl_ok, unique};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// The Events with `reason` in `namespace` (every namespace with `None`).
fn events(namespace: Option<&str>, reason: &str) -> Vec<Value> {
    let selector = format!("reason={reason}");
    let mut args = vec!["get", "events", "--field-selector", &selector, "-o", "json"];
    match namespace {
        Some(ns) => args.extend_from_slice(&["-n", ns]),
        None => args.push("-A"),
    }
    json(&args)
        .and_then(|list| list["items"].as_array().cloned())
        .unwrap_or_default()
}

/// Runs the shell-free `kubectl ... && kubectl ...` command a condition message quotes
/// between backticks, after `marker`.
fn run_quoted_command(message: &str, marker: &str) {
    let start = message
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in {message}"));
    let quoted = message[start..]
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no quoted command after {marker:?} in {message}"));
    for command in quoted.split("&&") {
        let words: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"kubectl"), "{quoted}");
        kubectl_ok(&words[1..]);
    }
}

#[test]
fn a_kind_canopy_cannot_use_is_reported_with_its_fix_and_the_fix_works() {
    cluster_with_canopy();
    // Nobody created `config`: canopy does, with every default filled in by the schema.
    let config = eventually("canopy to create the CanopyConfiguration", WAIT, || {
        json(&["get", "canopyconfiguration", "config", "-o", "json"])
    });
    assert_eq!(
        config["spec"]["resources"].as_array().map(Vec::len),
        Some(5),
        "the default kinds: {config}"
    );
    assert_eq!(config["spec"]["policies"]["hostPath"], "Enforce");

    // The counts leave out excluded namespaces: kube-system's and kube-public's Roles
    // take no part in propagation.
    let roles = kubectl_ok(&["get", "roles", "-A", "-o", "json"]);
    let roles: Value = serde_json::from_str(&roles).expect("JSON");
    let excluded = [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "canopy-system",
    ];
    let all = roles["items"].as_array().expect("items");
    let in_trees = all
        .iter()
        .filter(|r| {
            let ns = r["metadata"]["namespace"].as_str().unwrap_or_default();
            !excluded.contains(&ns)
        })
        .count();
    assert!(all.len() > in_trees, "the system namespaces hold Roles");
    eventually(
        "the Roles outside excluded namespaces to be counted",
        WAIT,
        || {
            let c = json(&["get", "canopyconfiguration", "config", "-o", "json"])?;
            let counted = c["status"]["resources"]
                .as_array()?
                .iter()
                .find(|r| r["resource"] == "roles")?["sources"]
                .as_u64()?;
            (counted == in_trees as u64).then_some(())
        },
    );

    // A typo, a cluster-scoped kind, and a kind canopy may not read or write.
    configure_kinds(&[
        "{group: example.com, resource: widgets, mode: Propagate}",
        "{group: rbac.authorization.k8s.io, resource: clusterroles, mode: Propagate}",
        "{group: '', resource: configmaps, mode: Propagate}",
    ]);
    let condition = eventually("every bad kind to be reported", WAIT, || {
        let c = bad_configuration()?;
        let message = c["message"].as_str()?;
        (c["status"] == "True"
            && message.contains("widgets.example.com")
            && message.contains("clusterroles.rbac.authorization.k8s.io")
            && message.contains("configmaps: canopy's ServiceAccount may not"))
        .then_some(c)
    });
    assert_eq!(condition["reason"], "KindUnavailable");
    let message = condition["message"].as_str().unwrap_or_default();
    for fix in [
        "install the CRD that serves it, or correct the group in spec.resources",
        "is cluster-scoped; only namespaced resources can propagate (remove it from spec.resources)",
        "kubectl label clusterrole canopy-propagate-configmaps canopy.dev/aggregate-to-manager=true",
    ] {
        assert!(
            message.contains(fix),
            "the fix {fix:?} is missing: {message}"
        );
    }
    // Every configured kind is listed in status.resources, usable or not.
    let config = json(&["get", "canopyconfiguration", "config", "-o", "json"]).expect("config");
    let listed: Vec<&str> = config["status"]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["resource"].as_str())
        .collect();
    for kind in ["widgets", "clusterroles", "configmaps"] {
        assert!(listed.contains(&kind), "{kind} missing from {listed:?}");
    }
    // A Warning Event per kind on the CanopyConfiguration.
    let warnings = eventually("a Warning Event about configmaps", WAIT, || {
        let all = events(None, "KindUnavailable");
        all.iter()
            .any(|e| {
                e["type"] == "Warning"
                    && e["involvedObject"]["kind"] == "CanopyConfiguration"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("configmaps") && m.contains("aggregate"))
            })
            .then_some(all)
    });
    assert!(
        warnings
            .iter()
            .any(|e| e["message"].as_str().is_some_and(|m| m.contains("widgets"))),
        "{warnings:?}"
    );

    // The fix is the one step the message shows; canopy's own roles stay as they are.
    run_quoted_command(message, "configmaps: ");
    let ns = unique("cm");
    kubectl_ok(&["create", "namespace", &ns]);
    let child = unique("cm-child");
    kubectl_ok(&["create", "namespace", &child]);
    common::objects::set_parent(&child, &ns);
    kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        &ns,
        "--from-literal=a=b",
    ]);
    eventually("the ConfigMap to be propagated once granted", WAIT, || {
        common::objects::get("configmap", &child, "settings")
    });
    let condition = eventually("configmaps to be usable", WAIT, || {
        let c = bad_configuration()?;
        (!c["message"].as_str()?.contains("configmaps")).then_some(c)
    });
    assert_eq!(condition["status"], "True", "the other two are still bad");

    // Back to the defaults: nothing to report.
    configure_kinds(&[]);
    eventually("the condition to clear", WAIT, || {
        let c = bad_configuration()?;
        (c["status"] == "False" && c["reason"] == "AllKindsAvailable").then_some(())
    });
}

#[test]
fn tenant_events_land_in_the_namespace_they_concern() {
    cluster_with_canopy();
    let name = unique("evt");
    create_tenant(&name, 5, "");
    let created = eventually("RootNamespaceCreated in the root", WAIT, || {
        let found = events(Some(&name), "RootNamespaceCreated");
        (!found.is_empty()).then_some(found)
    });
    // Regarding the root Namespace (the apiserver keeps a cluster-scoped object's own
    // Events in `default`), related to the Tenant.
    assert_eq!(created[0]["involvedObject"]["kind"], "Namespace");
    assert_eq!(created[0]["involvedObject"]["name"], name.as_str());
    assert_eq!(created[0]["related"]["kind"], "Tenant", "{:?}", created[0]);
    assert_eq!(created[0]["related"]["name"], name.as_str());
    // kubectl describe shows the Tenant's own Events.
    let described = kubectl_ok(&["describe", "tenant", &name]);
    assert!(described.contains("RootNamespaceCreated"), "{described}");
}

/// Runs the plugin as the owner of `tenant` (impersonated, as `tests/common/tenants.rs`
/// does for kubectl).
fn canopy_as_owner(tenant: &str, args: &[&str]) -> common::Kubectl {
    std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-canopy"))
        .args(args)
        .args(owner_flags(tenant))
        .env("KUBECONFIG", &common::current().kubeconfig)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("kubectl-canopy runs")
        .into()
}

#[test]
fn an_owner_sees_the_trees_of_their_tenants() {
    cluster_with_canopy();
    let mine = unique("own");
    let theirs = unique("other");
    create_tenant(&mine, 5, "");
    create_tenant(&theirs, 5, "");
    let child = format!("{mine}-dev");
    owner_subnamespace(&mine, &mine, &child);

    // An owner may not list namespaces: kubectl says so.
    let denied = common::tenants::as_owner(&mine, &["get", "namespaces"]);
    assert!(!denied.success, "an owner listed namespaces");

    // -A, and no argument at all (the context's namespace, default, is not theirs): their
    // tenant's tree, and nobody else's.
    for args in [&["tree", "-A"][..], &["tree"][..]] {
        let out = eventually("the owner's tree to show the subnamespace", WAIT, || {
            let out = canopy_as_owner(&mine, args);
            (out.success && out.stdout.contains(&child)).then_some(out)
        });
        assert!(
            out.stdout.starts_with(&format!("{mine}\n")),
            "{args:?}: {}",
            out.stdout
        );
        assert!(
            out.stdout.contains(&format!("└── [s] {child}")),
            "{args:?}: {}",
            out.stdout
        );
        assert!(!out.stdout.contains(&theirs), "{args:?}: {}", out.stdout);
    }
    // The owner may read their Tenant by name, and list it by name.
    let got = common::tenants::as_owner(&mine, &["get", "tenant", &mine]);
    assert!(got.success, "{}", got.stderr);
    let selector = format!("metadata.name={mine}");
    let listed = common::tenants::as_owner(
        &mine,
        &[
            "get",
            "tenants",
            "--field-selector",
            &selector,
            "-o",
            "name",
        ],
    );
    assert!(
        listed.success && listed.stdout.contains(&mine),
        "{}",
        listed.stderr
    );
    // Someone who owns nothing is still told what was refused, and what to do.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-canopy"))
        .args(["tree", "-A", "--as", &unique("nobody")])
        .env("KUBECONFIG", &common::current().kubeconfig)
        .output()
        .expect("kubectl-canopy runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("list namespaces at the cluster scope was refused (Forbidden)")
            && stderr.contains("you own no Tenant"),
        "{stderr}"
    );
}
