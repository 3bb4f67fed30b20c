use std::time::Instant;
use serde_json::{json, Value};
use canopy::webhooks::review;
use canopy::webhooks::policies::*;
fn main() {
    let c = |i: usize| json!({"name": format!("app-{i}"), "image": "x:1", "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "env": [{"name": "MODE", "value": "p"}], "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}], "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent",
        "securityContext": {"allowPrivilegeEscalation": false}});
    let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "bench", "labels": {"a": "b"}, "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": (0..10).map(c).collect::<Vec<_>>(), "volumes": [{"name": "data", "emptyDir": {}}]}}}});
    let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"}, "name": "web", "namespace": "bench", "operation": "CREATE", "userInfo": {"username": "a"}, "object": obj.clone()}}).to_string();
    let n = 20000;
    let t = Instant::now(); for _ in 0..n { let _ = review::decode(body.as_bytes()).unwrap(); } println!("decode {:?}", t.elapsed() / n);
    let t = Instant::now(); for _ in 0..n { let _: Value = serde_json::from_slice(body.as_bytes()).unwrap(); } println!("to Value {:?}", t.elapsed() / n);
    let t = Instant::now(); for _ in 0..n { let _ = obj.clone(); } println!("clone {:?}", t.elapsed() / n);
    let t = Instant::now(); for _ in 0..n { let _ = extract_pod_spec(WorkloadKind::Deployment, &obj).unwrap(); } println!("extract {:?}", t.elapsed() / n);
    let config = canopy::api::PolicyConfig { scope: canopy::api::PolicyScope::AllNamespaces, ..Default::default() };
    let input = PolicyInput { group: "apps", kind: "Deployment", subresource: None, operation: Operation::Create, object: Some(&obj), old_object: None,
        namespace: Some(NamespaceContext { name: "bench", excluded: false, tenant: None, limit_ranges: &[] }), requester: Requester { username: "a", groups: &[] }, config: &config };
    let t = Instant::now(); for _ in 0..n { let _ = evaluate(&input).unwrap(); } println!("evaluate {:?}", t.elapsed() / n);
    let req = review::decode(body.as_bytes()).unwrap();
    let t = Instant::now(); for _ in 0..n { let r = review::respond(&req, review::Verdict::Allow); let _ = serde_json::to_vec(&r).unwrap(); } println!("respond {:?}", t.elapsed() / n);
}
