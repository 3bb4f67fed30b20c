//! RBAC is really enforced by the control plane the tests run against.

mod common;

use std::time::Duration;

use common::{apply, eventually, kubectl, unique};

#[test]
fn impersonated_user_needs_a_binding_to_list_tenants() {
    let user = unique("someone");
    let denied = kubectl(&["--as", &user, "get", "tenants"]);
    assert!(!denied.success, "an unbound user listed tenants");
    assert!(
        denied.stderr.contains("Forbidden") || denied.stderr.contains("forbidden"),
        "expected Forbidden, got: {}",
        denied.stderr
    );
    assert!(
        denied.stderr.contains(&user),
        "the refusal names the user: {}",
        denied.stderr
    );

    let role = unique("tenant-reader");
    let out = apply(&format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {role}}}
rules:
- apiGroups: [canopy.dev]
  resources: [tenants]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {role}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}
"#
    ));
    assert!(out.success, "{}", out.stderr);
    eventually(
        "the binding to take effect",
        Duration::from_secs(10),
        || {
            kubectl(&["--as", &user, "get", "tenants"])
                .success
                .then_some(())
        },
    );
    // The binding grants exactly what it says: still no namespaces.
    let namespaces = kubectl(&["--as", &user, "get", "namespaces"]);
    assert!(!namespaces.success, "the binding must not grant namespaces");
}

#[test]
fn group_membership_comes_from_impersonation() {
    let user = unique("member");
    let group = unique("readers");
    let role = unique("group-reader");
    let out = apply(&format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {role}}}
rules:
- apiGroups: [canopy.dev]
  resources: [tenants]
  verbs: [list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {role}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: {group}}}
"#
    ));
    assert!(out.success, "{}", out.stderr);
    eventually(
        "the group binding to take effect",
        Duration::from_secs(10),
        || {
            kubectl(&["--as", &user, "--as-group", &group, "get", "tenants"])
                .success
                .then_some(())
        },
    );
    assert!(
        !kubectl(&["--as", &user, "get", "tenants"]).success,
        "without the group it is refused"
    );
}
