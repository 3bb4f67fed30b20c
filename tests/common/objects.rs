//! The objects the integration tests make and wait for, named for what they are: a
//! namespace, its parent, an anchor, a tree, the propagated kinds; and waiting until an
//! object is there, or gone. With them a test reads as the behaviour it checks.
//!
//! Every helper acts as the cluster admin on `current()`; those that must succeed assert
//! it with kubectl's message, the `try_` ones return the outcome for tests of refusals.

use std::time::Duration;

use serde_json::Value;

use super::{Kubectl, apply, eventually, json, kubectl, kubectl_ok, unique};

/// How long the helpers wait for canopy or the control plane to act.
pub const WAIT: Duration = Duration::from_secs(30);

/// Creates the namespace `name`.
#[track_caller]
pub fn create_namespace(name: &str) {
    kubectl_ok(&["create", "namespace", name]);
}

/// The labels of namespace `name`, if it exists.
pub fn namespace_labels(name: &str) -> Option<Value> {
    Some(json(&["get", "namespace", name, "-o", "json"])?["metadata"]["labels"].clone())
}

/// The HierarchyConfiguration of `namespace` with `parent` (`None`: a root).
pub fn hierarchy(namespace: &str, parent: Option<&str>) -> String {
    let parent = parent.map_or("null".to_owned(), |p| format!("{p:?}"));
    format!(
        "apiVersion: canopy.dev/v1alpha1\nkind: HierarchyConfiguration\nmetadata: {{name: hierarchy, namespace: {namespace}}}\nspec: {{parent: {parent}}}\n"
    )
}

/// Makes `parent` the parent of `child`; the outcome, for tests that expect a refusal.
pub fn try_set_parent(child: &str, parent: &str) -> Kubectl {
    apply(&hierarchy(child, Some(parent)))
}

/// Makes `parent` the parent of `child`, which must be admitted.
#[track_caller]
pub fn set_parent(child: &str, parent: &str) {
    let out = try_set_parent(child, parent);
    assert!(
        out.success,
        "setting the parent of {child} to {parent}: {}",
        out.stderr
    );
}

/// The SubnamespaceAnchor for `child` in `parent`.
pub fn anchor(parent: &str, child: &str) -> String {
    format!(
        "apiVersion: canopy.dev/v1alpha1\nkind: SubnamespaceAnchor\nmetadata: {{name: {child}, namespace: {parent}}}\n"
    )
}

/// Creates the anchor `child` in `parent`, which must be admitted, and waits up to
/// `timeout` for canopy to create its namespace.
#[track_caller]
pub fn make_subnamespace(parent: &str, child: &str, timeout: Duration) {
    let out = apply(&anchor(parent, child));
    assert!(out.success, "the anchor {parent}/{child}: {}", out.stderr);
    eventually(&format!("namespace {child}"), timeout, || {
        json(&["get", "namespace", child, "-o", "json"])
    });
}

/// What canopy reports in the anchor `child`'s `status.status` (in `parent`).
pub fn anchor_state(parent: &str, child: &str) -> Option<String> {
    let a = json(&[
        "get",
        "subnamespaceanchor",
        child,
        "-n",
        parent,
        "-o",
        "json",
    ])?;
    a["status"]["status"].as_str().map(str::to_owned)
}

/// Waits up to `timeout` until canopy reports the anchor `child` in `parent` `Ok` (its
/// namespace exists, in place).
#[track_caller]
pub fn wait_until_anchor_ok(parent: &str, child: &str, timeout: Duration) {
    eventually(
        &format!("anchor {parent}/{child} to be Ok"),
        timeout,
        || (anchor_state(parent, child).as_deref() == Some("Ok")).then_some(()),
    );
}

/// A tree `<prefix>-… -> …-mid -> …-leaf` of full namespaces (parents set through their
/// HierarchyConfigurations, not anchors); returns their names.
pub fn tree(prefix: &str) -> (String, String, String) {
    let root = unique(prefix);
    let (mid, leaf) = (format!("{root}-mid"), format!("{root}-leaf"));
    for ns in [&root, &mid, &leaf] {
        create_namespace(ns);
    }
    set_parent(&mid, &root);
    set_parent(&leaf, &mid);
    (root, mid, leaf)
}

/// Sets the CanopyConfiguration's kinds to the default ones plus `extra`
/// (`{group: .., resource: .., mode: ..}` lines).
#[track_caller]
pub fn configure_kinds(extra: &[&str]) {
    let mut yaml = "apiVersion: canopy.dev/v1alpha1\nkind: CanopyConfiguration\nmetadata: {name: config}\nspec:\n  resources:\n  - {group: '', resource: resourcequotas, mode: Propagate}\n  - {group: networking.k8s.io, resource: networkpolicies, mode: Propagate}\n  - {group: '', resource: limitranges, mode: Propagate}\n".to_owned();
    for line in extra {
        yaml.push_str(&format!("  - {line}\n"));
    }
    let out = apply(&yaml);
    assert!(out.success, "{}", out.stderr);
}

/// The CanopyConfiguration's `BadConfiguration` condition, once written.
pub fn bad_configuration() -> Option<Value> {
    let config = json(&["get", "canopyconfiguration", "config", "-o", "json"])?;
    config["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "BadConfiguration")
        .cloned()
}

/// The object `kind`/`name` in namespace `ns`, if it exists.
pub fn get(kind: &str, ns: &str, name: &str) -> Option<Value> {
    json(&["get", kind, name, "-n", ns, "-o", "json"])
}

/// Waits up to `WAIT` for the object `kind`/`name` in `ns` to exist; returns it.
#[track_caller]
pub fn wait_for(kind: &str, ns: &str, name: &str) -> Value {
    eventually(&format!("{kind} {ns}/{name}"), WAIT, || get(kind, ns, name))
}

/// Waits up to `timeout` until the apiserver answers NotFound for `kind`/`name` (in `ns`,
/// unless it is cluster-scoped).
#[track_caller]
pub fn wait_until_gone(kind: &str, ns: Option<&str>, name: &str, timeout: Duration) {
    let mut args = vec!["get", kind, name];
    let what = match ns {
        Some(ns) => {
            args.extend(["-n", ns]);
            format!("{kind} {ns}/{name} to be gone")
        }
        None => format!("{kind} {name} to be gone"),
    };
    eventually(&what, timeout, || {
        let out = kubectl(&args);
        (!out.success && out.stderr.contains("NotFound")).then_some(())
    });
}
