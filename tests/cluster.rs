//! The controller manager makes the local control plane behave like a cluster.

mod common;

use std::time::Duration;

use common::objects::wait_until_gone;
use common::{apply, eventually, kubectl_ok, unique};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn json(args: &[&str]) -> Value {
    common::json(args).expect("kubectl prints JSON")
}

#[test]
fn deleted_namespace_disappears() {
    let ns = unique("doomed");
    kubectl_ok(&["create", "namespace", &ns]);
    kubectl_ok(&[
        "create",
        "configmap",
        "content",
        "-n",
        &ns,
        "--from-literal=a=b",
    ]);
    kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
    // Without the namespace controller it would stay Terminating forever.
    wait_until_gone("namespace", None, &ns, WAIT);
}

#[test]
fn deployment_gets_replicaset_and_pending_pods_and_is_garbage_collected() {
    let ns = unique("deploy");
    kubectl_ok(&["create", "namespace", &ns]);
    let out = apply(&format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: app
        image: registry.example/web:1
        resources:
          requests: {{cpu: 10m, memory: 16Mi}}
          limits: {{cpu: 10m, memory: 16Mi}}
"#
    ));
    assert!(out.success, "{}", out.stderr);
    let replicaset = eventually("a ReplicaSet owned by the Deployment", WAIT, || {
        let list = json(&["get", "replicasets", "-n", &ns, "-o", "json"]);
        list["items"].as_array()?.iter().find_map(|rs| {
            let owner = &rs["metadata"]["ownerReferences"][0];
            (owner["kind"] == "Deployment" && owner["name"] == "web")
                .then(|| rs["metadata"]["name"].as_str().map(str::to_owned))
                .flatten()
        })
    });
    eventually("two Pods owned by the ReplicaSet", WAIT, || {
        let list = json(&["get", "pods", "-n", &ns, "-l", "app=web", "-o", "json"]);
        let pods = list["items"].as_array()?;
        let owned = pods
            .iter()
            .filter(|p| p["metadata"]["ownerReferences"][0]["name"] == replicaset.as_str())
            .count();
        // No nodes: the Pods exist and stay Pending.
        let pending = pods.iter().all(|p| p["status"]["phase"] == "Pending");
        (owned == 2 && pending).then_some(())
    });

    kubectl_ok(&["delete", "deployment", "web", "-n", &ns, "--wait=false"]);
    // The garbage collector deletes the ReplicaSet.
    wait_until_gone("replicaset", Some(&ns), &replicaset, WAIT);
}

#[test]
fn resource_quota_usage_is_counted() {
    let ns = unique("quota");
    kubectl_ok(&["create", "namespace", &ns]);
    kubectl_ok(&[
        "create",
        "quota",
        "q",
        "-n",
        &ns,
        "--hard=configmaps=5,pods=3",
    ]);
    kubectl_ok(&[
        "create",
        "configmap",
        "one",
        "-n",
        &ns,
        "--from-literal=a=b",
    ]);
    eventually("the quota controller to count the ConfigMaps", WAIT, || {
        let quota = json(&["get", "quota", "q", "-n", &ns, "-o", "json"]);
        // kube-root-ca.crt (published by the controller manager) and ours.
        (quota["status"]["used"]["configmaps"] == "2").then_some(())
    });
}
