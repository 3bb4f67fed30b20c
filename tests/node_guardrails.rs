//! A Tenant's guardrails on the real node (src/dev/node): its containerd registers runc a
//! second time as the handler `canopy-sandbox` (a stand-in for gVisor or Kata), a
//! RuntimeClass points at it, and a tenant whose `runtimeClasses` allow only that class has
//! its Pods refused without it and running with it; with a `nodeSelector`, the tenant's
//! Pods wait until a node carries the label and then run there.
//!
//! Needs root (the node does); without it the test says it was skipped. One test, so the
//! node starts once and the binary stays short.

mod common;

use std::time::Duration;

use canopy::dev::NODE_NAME;
use canopy::dev::node::SANDBOX_HANDLER;
use common::node::{RESOURCES, pod_yaml, require_node, wait_running};
use common::tenants::{WAIT, create_tenant};
use common::{apply, eventually, json, kubectl, kubectl_with_stdin, unique};

const POD_WAIT: Duration = Duration::from_secs(120);

fn pod(ns: &str, name: &str, runtime: Option<&str>, pool: Option<&str>) -> String {
    let runtime = runtime.map_or(String::new(), |r| format!("  runtimeClassName: {r}\n"));
    let pool = pool.map_or(String::new(), |p| {
        format!("  nodeSelector: {{pool: {p}}}\n")
    });
    pod_yaml(ns, name, "exec sleep 86400", Some(RESOURCES)).replacen(
        "spec:\n",
        &format!("spec:\n{runtime}{pool}"),
        1,
    )
}

#[test]
fn a_tenants_pods_run_only_with_its_runtime_class_and_on_its_nodes() {
    if !require_node(
        true,
        "a_tenants_pods_run_only_with_its_runtime_class_and_on_its_nodes",
    ) {
        return;
    }
    let t = unique("sandboxed");
    let sandbox = format!("{t}-sandbox");
    let out = apply(&format!(
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {{name: {sandbox}}}\n\
         handler: {SANDBOX_HANDLER}\n"
    ));
    assert!(out.success, "RuntimeClass: {}", out.stderr);
    create_tenant(
        &t,
        5,
        &format!(
            "  runtimeClasses: {{allowed: [{sandbox}], default: {sandbox}}}\n  \
             nodeSelector: {{pool: {t}}}\n"
        ),
    );

    // Without the class (or the selector) the Pod never reaches the node.
    eventually("the guardrails to apply in the tenant", WAIT, || {
        let out = kubectl_with_stdin(
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&pod(&t, "plain", None, Some(&t))),
        );
        out.stderr.contains("refused by canopy").then_some(())
    });
    let out = apply(&pod(&t, "plain", None, Some(&t)));
    assert!(!out.success, "admitted without the class");
    let refusal = out.stderr;
    assert!(
        refusal.contains(&format!(
            "spec.runtimeClassName is unset (tenant {t} allows runtime classes \"{sandbox}\"); \
             set spec.runtimeClassName to \"{sandbox}\""
        )),
        "{refusal}"
    );
    let out = apply(&pod(&t, "anywhere", Some(&sandbox), None));
    assert!(
        !out.success
            && out
                .stderr
                .contains(&format!("set spec.nodeSelector.pool to \"{t}\"")),
        "{}",
        out.stderr
    );
    assert!(
        kubectl(&["get", "pod", "plain", "-n", &t])
            .stderr
            .contains("NotFound")
    );

    // With both, the Pod is admitted, and waits while no node carries the tenant's label.
    let out = apply(&pod(&t, "sandboxed", Some(&sandbox), Some(&t)));
    assert!(out.success, "the compliant Pod: {}", out.stderr);
    eventually(
        "the scheduler to find no node for the Pod",
        POD_WAIT,
        || {
            let p = json(&["get", "pod", "sandboxed", "-n", &t, "-o", "json"])?;
            let unschedulable = p["status"]["conditions"].as_array()?.iter().any(|c| {
                c["type"] == "PodScheduled"
                    && c["status"] == "False"
                    && c["reason"] == "Unschedulable"
            });
            unschedulable.then_some(())
        },
    );
    let label = format!("pool={t}");
    let out = kubectl(&["label", "node", NODE_NAME, &label]);
    assert!(out.success, "{}", out.stderr);
    wait_running(&t, "sandboxed", POD_WAIT);
    let p = json(&["get", "pod", "sandboxed", "-n", &t, "-o", "json"]).expect("the Pod");
    assert_eq!(p["spec"]["nodeName"], NODE_NAME);
    assert_eq!(p["spec"]["runtimeClassName"], sandbox.as_str());
    // The handler did the work: a RuntimeClass whose handler containerd does not know
    // leaves its Pod without a sandbox (admitted: the tenant allows nothing else, so it is
    // tried as a cluster admin's Pod outside the tenant).
    let missing = format!("{t}-missing");
    let out = apply(&format!(
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {{name: {missing}}}\n\
         handler: not-registered\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {t}-outside}}\n"
    ));
    assert!(out.success, "{}", out.stderr);
    let out = apply(&pod(
        &format!("{t}-outside"),
        "unknown",
        Some(&missing),
        None,
    ));
    assert!(out.success, "{}", out.stderr);
    eventually("the kubelet to fail the unknown handler", POD_WAIT, || {
        let events = json(&[
            "get",
            "events",
            "-n",
            &format!("{t}-outside"),
            "--field-selector",
            "involvedObject.name=unknown",
            "-o",
            "json",
        ])?;
        events["items"]
            .as_array()?
            .iter()
            .any(|e| {
                e["reason"] == "FailedCreatePodSandBox"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("not-registered"))
            })
            .then_some(())
    });

    let out = kubectl(&["label", "node", NODE_NAME, "pool-"]);
    assert!(out.success, "{}", out.stderr);
    for ns in [t.as_str(), &format!("{t}-outside")] {
        let _ = kubectl(&["delete", "pods", "--all", "-n", ns, "--wait=false"]);
    }
}
