//! Tenants for the isolation tests: a Tenant, its owner impersonated, anchors raced.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::objects::{anchor, anchor_state, wait_until_anchor_ok};
use super::{Kubectl, apply, eventually, json, kubectl, kubectl_ok, kubectl_with_stdin, unique};

pub const WAIT: Duration = Duration::from_secs(60);

pub fn tenant_yaml(name: &str, max: u32, extra: &str) -> String {
    format!(
        "apiVersion: canopy.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {name}}}\nspec:\n  \
         owners:\n  - {{kind: Group, name: {name}-admins}}\n  maxNamespaces: {max}\n{extra}"
    )
}

/// Waits up to `timeout` for Tenant `name`'s `Ready` condition to be `True`.
pub fn wait_until_ready(name: &str, timeout: Duration) {
    eventually(&format!("tenant {name} to be Ready"), timeout, || {
        let t = json(&["get", "tenant", name, "-o", "json"])?;
        let ready = t["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready.then_some(())
    });
}

pub fn create_tenant(name: &str, max: u32, extra: &str) {
    let out = apply(&tenant_yaml(name, max, extra));
    assert!(out.success, "{}", out.stderr);
    wait_until_ready(name, WAIT);
    // The owner binding is in place once the owner may create anchors.
    eventually("the owner's rights in the root", WAIT, || {
        as_owner(
            name,
            &["auth", "can-i", "create", "subnamespaceanchors", "-n", name],
        )
        .success
        .then_some(())
    });
}

pub fn owner_flags(tenant: &str) -> [String; 4] {
    [
        "--as".to_owned(),
        format!("{tenant}-bob"),
        "--as-group".to_owned(),
        format!("{tenant}-admins"),
    ]
}

/// kubectl as the tenant's owner.
pub fn as_owner(tenant: &str, args: &[&str]) -> Kubectl {
    let flags = owner_flags(tenant);
    let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    kubectl(&all)
}

pub fn as_owner_stdin(tenant: &str, args: &[&str], stdin: &str) -> Kubectl {
    let flags = owner_flags(tenant);
    let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    kubectl_with_stdin(&all, Some(stdin))
}

/// `kubectl apply -f -` of `yaml` as the tenant's owner.
pub fn as_owner_apply(tenant: &str, yaml: &str) -> Kubectl {
    as_owner_stdin(tenant, &["apply", "-f", "-"], yaml)
}

/// The owner's subnamespace `child` of `parent`, once canopy reports it Ok.
pub fn owner_subnamespace(tenant: &str, parent: &str, child: &str) {
    let out = as_owner_stdin(tenant, &["apply", "-f", "-"], &anchor(parent, child));
    assert!(out.success, "the owner's anchor {child}: {}", out.stderr);
    wait_until_anchor_ok(parent, child, WAIT);
}

pub fn tenant_namespaces(tenant: &str) -> Vec<String> {
    let out = kubectl_ok(&[
        "get",
        "namespaces",
        "-l",
        &format!("canopy.dev/tenant={tenant}"),
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    out.split_whitespace().map(str::to_owned).collect()
}

/// Posts one anchor per name as the owner, all released at the same instant.
pub fn race_anchors(tenant: &str, parent: &str, names: &[String]) -> Vec<(String, Kubectl)> {
    let start = Arc::new(Barrier::new(names.len()));
    let handles: Vec<_> = names
        .iter()
        .map(|name| {
            let (tenant, parent, name, start) = (
                tenant.to_owned(),
                parent.to_owned(),
                name.clone(),
                start.clone(),
            );
            std::thread::spawn(move || {
                let manifest = anchor(&parent, &name);
                start.wait();
                let out = as_owner_stdin(&tenant, &["create", "-f", "-"], &manifest);
                (name, out)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("a racing thread"))
        .collect()
}

/// Races 20 anchors at a time as the owner into fresh tenants of `maxNamespaces: 4`,
/// then into a full one, and checks that no tenant ever holds more than its limit:
/// every admitted anchor ends Ok with its namespace or Forbidden with the reason.
pub fn race_anchors_into_tenants(prefix: &str) {
    let max = 4;
    let base = unique(prefix);
    // Three races into fresh tenants, then a fourth into the last one, already full.
    for round in 0..4 {
        let t = format!("{base}-{}", round.min(2));
        if round < 3 {
            create_tenant(&t, max, "");
            // The legitimate path: one anchor, one namespace (with the root, two).
            owner_subnamespace(&t, &t, &format!("{t}-first"));
        }
        let names: Vec<String> = (0..20).map(|i| format!("{t}-r{round}-{i}")).collect();
        let results = race_anchors(&t, &t, &names);
        let admitted: Vec<&String> = results
            .iter()
            .filter(|(_, out)| out.success)
            .map(|(name, _)| name)
            .collect();
        for (name, out) in results.iter().filter(|(_, out)| !out.success) {
            assert!(
                out.stderr.contains("allows at most 4 namespaces"),
                "anchor {name} refused for another reason: {}",
                out.stderr
            );
        }
        // Every admitted anchor settles: Ok with its namespace, or Forbidden with why.
        for name in &admitted {
            let state = eventually(&format!("anchor {name} to settle"), WAIT, || {
                anchor_state(&t, name).filter(|s| s == "Ok" || s == "Forbidden")
            });
            if state == "Forbidden" {
                let a = json(&["get", "subnamespaceanchor", name, "-n", &t, "-o", "json"])
                    .expect("the anchor");
                let reason = &a["status"]["conditions"][0]["reason"];
                assert_eq!(reason, "MaxNamespacesReached", "{a}");
            } else {
                assert!(
                    json(&["get", "namespace", name, "-o", "json"]).is_some(),
                    "anchor {name} is Ok without its namespace"
                );
            }
        }
        eprintln!(
            "round {round}: {} of 20 anchors admitted by the webhook",
            admitted.len()
        );
        // Give stragglers a moment: nothing more may appear.
        std::thread::sleep(Duration::from_secs(2));
        let namespaces = tenant_namespaces(&t);
        assert_eq!(
            namespaces.len(),
            max as usize,
            "round {round}: the tenant must be exactly full, never past it: {namespaces:?}"
        );
    }
}
