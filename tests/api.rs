//! The CRDs against a real kube-apiserver: they install with kubectl, every kind can be
//! applied and read back, and the schema refuses invalid objects.

mod common;

use common::{apply, kubectl, kubectl_ok, repo_path, unique};
use serde_json::Value;

fn get_json(args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&kubectl_ok(&all)).expect("kubectl prints JSON")
}

#[test]
fn crds_install_with_kubectl_and_are_established() {
    let crds = repo_path("crds");
    let out = kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        crds.to_str().unwrap(),
    ]);
    assert_eq!(out.lines().count(), 5, "five CRDs applied: {out}");
    for name in [
        "tenants.canopy.dev",
        "subnamespaceanchors.canopy.dev",
        "hierarchyconfigurations.canopy.dev",
        "canopyconfigurations.canopy.dev",
        "hierarchicalresourcequotas.canopy.dev",
    ] {
        kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            &format!("crd/{name}"),
        ]);
    }
}

#[test]
fn tenant_round_trips_with_defaults() {
    let name = unique("acme");
    let out = apply(&format!(
        r#"
apiVersion: canopy.dev/v1alpha1
kind: Tenant
metadata: {{name: {name}}}
spec:
  owners:
  - {{kind: Group, name: acme-admins}}
  - {{kind: User, name: alice}}
  - {{kind: ServiceAccount, name: deployer, namespace: ci}}
  maxNamespaces: 50
  namespaceQuota: {{hard: {{requests.cpu: "4", limits.memory: 8Gi, pods: "50"}}}}
  limitRange:
    limits:
    - type: Container
      default: {{cpu: 500m, memory: 256Mi}}
      defaultRequest: {{cpu: 100m, memory: 128Mi}}
  policies: {{hostPath: Enforce, resources: Warn}}
"#
    ));
    assert!(out.success, "apply failed: {}", out.stderr);
    let tenant = get_json(&["tenant", &name]);
    let spec = &tenant["spec"];
    assert_eq!(spec["owners"][2]["namespace"], "ci");
    assert_eq!(spec["maxNamespaces"], 50);
    assert_eq!(spec["namespaceQuota"]["hard"]["limits.memory"], "8Gi");
    assert_eq!(spec["limitRange"]["limits"][0]["default"]["cpu"], "500m");
    assert_eq!(spec["policies"]["resources"], "Warn");
    // Defaults come from the schema, so every client sees them.
    assert_eq!(spec["ownerRole"], "admin");
    assert_eq!(spec["networkIsolation"], true);
    assert_eq!(spec["deletionPolicy"], "Orphan");

    let by_short_name = kubectl_ok(&["get", "tn", &name]);
    let header = by_short_name.lines().next().unwrap_or_default();
    for column in ["NAME", "ROOT", "NAMESPACES", "MAX", "READY", "AGE"] {
        assert!(
            header.contains(column),
            "column {column} missing from {header:?}"
        );
    }
    kubectl_ok(&["delete", "tenant", &name]);
}

#[test]
fn anchor_and_hierarchy_round_trip_in_a_namespace() {
    let ns = unique("team");
    kubectl_ok(&["create", "namespace", &ns]);
    let out = apply(&format!(
        r#"
apiVersion: canopy.dev/v1alpha1
kind: SubnamespaceAnchor
metadata: {{name: {ns}-dev, namespace: {ns}}}
spec:
  labels: {{env: dev}}
  annotations: {{owner: team-a}}
---
apiVersion: canopy.dev/v1alpha1
kind: HierarchyConfiguration
metadata: {{name: hierarchy, namespace: {ns}}}
spec:
  parent: some-parent
  allowCascadingDeletion: true
"#
    ));
    assert!(out.success, "apply failed: {}", out.stderr);
    let anchor = get_json(&["subns", "-n", &ns, &format!("{ns}-dev")]);
    assert_eq!(anchor["spec"]["labels"]["env"], "dev");
    assert_eq!(anchor["spec"]["annotations"]["owner"], "team-a");
    let also_anchor = kubectl_ok(&["get", "anchor", "-n", &ns, "-o", "name"]);
    assert_eq!(
        also_anchor.trim(),
        format!("subnamespaceanchor.canopy.dev/{ns}-dev")
    );

    let hc = get_json(&["hc", "-n", &ns, "hierarchy"]);
    assert_eq!(hc["spec"]["parent"], "some-parent");
    assert_eq!(hc["spec"]["allowCascadingDeletion"], true);
    let table = kubectl_ok(&["get", "hc", "-n", &ns]);
    assert!(table.contains("some-parent"), "parent column: {table}");
}

#[test]
fn status_is_a_subresource() {
    let ns = unique("status");
    kubectl_ok(&["create", "namespace", &ns]);
    let out = apply(&format!(
        "apiVersion: canopy.dev/v1alpha1\nkind: SubnamespaceAnchor\nmetadata: {{name: child, namespace: {ns}}}\n"
    ));
    assert!(out.success, "{}", out.stderr);
    // A write of the main resource drops status; only /status sets it.
    kubectl_ok(&[
        "patch",
        "subns",
        "child",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"status":{"status":"Ok"}}"#,
    ]);
    let anchor = get_json(&["subns", "-n", &ns, "child"]);
    assert!(
        anchor
            .get("status")
            .is_none_or(|s| s.get("status").is_none()),
        "{anchor}"
    );
    kubectl_ok(&[
        "patch",
        "subns",
        "child",
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"status":"Conflict"}}"#,
    ]);
    let anchor = get_json(&["subns", "-n", &ns, "child"]);
    assert_eq!(anchor["status"]["status"], "Conflict");
}

#[test]
fn configuration_gets_its_defaults_from_the_schema() {
    let out = apply(
        "apiVersion: canopy.dev/v1alpha1\nkind: CanopyConfiguration\nmetadata: {name: config}\nspec: {}\n",
    );
    assert!(out.success, "{}", out.stderr);
    let config = get_json(&["canopyconfiguration", "config"]);
    let spec = &config["spec"];
    let excluded: Vec<&str> = spec["excludedNamespaces"]
        .as_array()
        .expect("excludedNamespaces defaulted")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(excluded.contains(&"kube-system") && excluded.contains(&"canopy-system"));
    assert_eq!(spec["resources"].as_array().map(Vec::len), Some(5));
    assert_eq!(spec["policies"]["hostPath"], "Enforce");
    assert_eq!(spec["policies"]["scope"], "Tenants");
    assert!(
        spec["stripLabels"]
            .to_string()
            .contains("argocd.argoproj.io/instance")
    );
}

/// Each case is (what, YAML, a fragment the refusal must contain).
#[test]
fn schema_refuses_invalid_objects() {
    let ns = unique("invalid");
    kubectl_ok(&["create", "namespace", &ns]);
    let tenant = unique("bad");
    let cases = [
        (
            "an owner kind other than User, Group, ServiceAccount",
            format!("apiVersion: canopy.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {tenant}}}\nspec:\n  owners: [{{kind: Robot, name: r2d2}}]\n"),
            "kind must be User, Group or ServiceAccount",
        ),
        (
            "a ServiceAccount owner without a namespace",
            format!("apiVersion: canopy.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {tenant}}}\nspec:\n  owners: [{{kind: ServiceAccount, name: deployer}}]\n"),
            "namespace is required for a ServiceAccount owner",
        ),
        (
            "maxNamespaces below 1",
            format!("apiVersion: canopy.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {tenant}}}\nspec:\n  maxNamespaces: 0\n"),
            "spec.maxNamespaces",
        ),
        (
            "a root namespace that is not a DNS label",
            format!("apiVersion: canopy.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {tenant}}}\nspec:\n  rootNamespace: Not_A_Label\n"),
            "spec.rootNamespace",
        ),
        (
            "an anchor whose name has a dot",
            format!("apiVersion: canopy.dev/v1alpha1\nkind: SubnamespaceAnchor\nmetadata: {{name: team.dev, namespace: {ns}}}\n"),
            "an anchor's name becomes its namespace's name",
        ),
        (
            "an anchor whose name is longer than 63 characters",
            format!("apiVersion: canopy.dev/v1alpha1\nkind: SubnamespaceAnchor\nmetadata: {{name: {}, namespace: {ns}}}\n", "a".repeat(64)),
            "at most 63 characters",
        ),
        (
            "a Tenant named like no namespace can be, without a rootNamespace",
            format!("apiVersion: canopy.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {tenant}.example}}\nspec: {{}}\n"),
            "names its root namespace after itself",
        ),
        (
            "a HierarchyConfiguration not named hierarchy",
            format!("apiVersion: canopy.dev/v1alpha1\nkind: HierarchyConfiguration\nmetadata: {{name: other, namespace: {ns}}}\nspec: {{parent: x}}\n"),
            "a HierarchyConfiguration must be named 'hierarchy'",
        ),
        (
            "a CanopyConfiguration not named config",
            "apiVersion: canopy.dev/v1alpha1\nkind: CanopyConfiguration\nmetadata: {name: settings}\nspec: {}\n".to_owned(),
            "the CanopyConfiguration must be named 'config'",
        ),
        (
            "an unknown propagation mode",
            "apiVersion: canopy.dev/v1alpha1\nkind: CanopyConfiguration\nmetadata: {name: config}\nspec:\n  resources: [{group: '', resource: secrets, mode: Copy}]\n".to_owned(),
            r#"Unsupported value: "Copy""#,
        ),
    ];
    for (what, yaml, expected) in &cases {
        let out = apply(yaml);
        assert!(!out.success, "{what} was admitted");
        assert!(
            out.stderr.contains(expected),
            "refusal of {what} should contain {expected:?}, got: {}",
            out.stderr
        );
    }
    // A bad owner kind is one clear line, without the apiserver's "some validation rules
    // were not checked" that a schema error adds when the CRD has CEL rules.
    let robot = apply(&cases[0].1);
    assert!(
        !robot.stderr.contains("not checked") && robot.stderr.trim().lines().count() == 1,
        "a bad owner kind should give one line: {}",
        robot.stderr
    );
    let leftover = kubectl(&["get", "tenant", &tenant]);
    assert!(!leftover.success, "no refused Tenant may exist");
    // The same paths with names that can be namespaces' (a dotted Tenant name with a
    // valid rootNamespace included).
    let fine = [
        format!(
            "apiVersion: canopy.dev/v1alpha1\nkind: SubnamespaceAnchor\nmetadata: {{name: team-dev, namespace: {ns}}}\n"
        ),
        format!(
            "apiVersion: canopy.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {tenant}.example}}\nspec: {{rootNamespace: {tenant}}}\n"
        ),
    ];
    for yaml in fine {
        let out = apply(&yaml);
        assert!(out.success, "{yaml}: {}", out.stderr);
    }
}

/// `kubectl explain` documents every field of every kind: the test walks the CRDs that
/// `crds/` holds and asks the apiserver (through kubectl) about each field.
#[test]
fn kubectl_explain_describes_every_field_of_every_kind() {
    fn walk(path: &str, schema: &Value, out: &mut Vec<(String, String)>) {
        let Some(properties) = schema["properties"].as_object() else {
            return;
        };
        for (name, field) in properties {
            if !path.contains('.') && ["apiVersion", "kind", "metadata"].contains(&name.as_str()) {
                continue;
            }
            let here = format!("{path}.{name}");
            let description = field["description"].as_str().unwrap_or_default().to_owned();
            out.push((here.clone(), description));
            walk(&here, field, out);
            walk(&here, &field["items"], out);
        }
    }
    let mut fields = Vec::new();
    for entry in std::fs::read_dir(repo_path("crds")).expect("crds/ exists") {
        let path = entry.expect("a directory entry").path();
        let text = std::fs::read_to_string(&path).expect("a CRD file");
        let crd: Value = serde_saphyr::from_str(&text).expect("a CRD is YAML");
        let kind = crd["spec"]["names"]["kind"]
            .as_str()
            .expect("a CRD names its kind")
            .to_lowercase();
        kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            path.to_str().expect("a UTF-8 path"),
        ]);
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        walk(&kind, root, &mut fields);
    }
    assert!(fields.len() > 100, "only {} fields found", fields.len());
    // The OpenAPI document is published a moment after the CRD is established.
    let kinds: Vec<&String> = fields
        .iter()
        .map(|(path, _)| path)
        .filter(|p| !p.contains('.'))
        .collect();
    common::eventually(
        "the CRDs to be served in OpenAPI",
        std::time::Duration::from_secs(30),
        || {
            kinds
                .iter()
                .all(|kind| kubectl(&["explain", kind]).success)
                .then_some(())
        },
    );
    let mut undocumented = Vec::new();
    for (path, description) in &fields {
        // Right after an apply, kubectl's cached discovery may not know the kind yet.
        let out = common::eventually(
            &format!("kubectl explain {path}"),
            std::time::Duration::from_secs(30),
            || {
                let out = kubectl(&["explain", path]);
                out.success.then_some(out.stdout)
            },
        );
        // kubectl prints "DESCRIPTION:" then the text, rewrapped to its width: compare the
        // first words.
        let after = out.split("DESCRIPTION:").nth(1).unwrap_or_default();
        let first_words: Vec<&str> = description.split_whitespace().take(4).collect();
        let shown: Vec<&str> = after.split_whitespace().take(first_words.len()).collect();
        if description.trim().is_empty() || first_words != shown {
            undocumented.push(format!("{path}: {}", out.trim()));
        }
    }
    assert!(
        undocumented.is_empty(),
        "kubectl explain shows no description for:\n{}",
        undocumented.join("\n---\n")
    );
}
