//! The Argo CD health checks in `config/argocd/*.lua`, run on Lua 5.1 (Argo CD's
//! gopher-lua speaks 5.1) against fixture objects shaped like what canopy writes, and
//! `docs/gitops.md`, whose `argocd-cm` must embed exactly those files. On every object,
//! gopher-lua (the interpreter Argo CD embeds, run by `hack/argocd-lua`) must give the same
//! status and message, and Flux's `healthCheckExprs` from docs/gitops.md (run by
//! `hack/flux-cel` with cel-go) the same verdict.
//!
//! `live_objects_in_each_state` then runs them on objects canopy itself wrote, healthy and
//! degraded, on a real control plane; `tests/readme.rs` also runs them on the live objects
//! of the README tour.

#[path = "common/argocd.rs"]
mod argocd;
mod common;
#[path = "common/flux.rs"]
mod flux;

use std::time::Duration;

use argocd::{HealthCheck, health};
use common::objects::{anchor, make_subnamespace};
use common::tenants::create_tenant;
use common::{apply, cluster_with_canopy, eventually, json, kubectl_ok, kubectl_with_stdin};
use flux::Verdict;
use serde_json::{Value, json};

/// A canopy object of `kind` with `generation` and `status`.
fn object(kind: &str, name: &str, generation: i64, status: Option<Value>) -> Value {
    let mut obj = json!({
        "apiVersion": "canopy.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "generation": generation},
        "spec": {},
    });
    if let Some(status) = status {
        obj["status"] = status;
    }
    obj
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, generation: i64) -> Value {
    json!({
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-12-04T12:00:00Z",
        "observedGeneration": generation,
    })
}

/// Argo CD's verdict (`status`, with a message containing `message_contains`), and
/// Flux's matching one where docs/gitops.md gives Flux an expression for the kind.
#[track_caller]
fn assert_health(check: HealthCheck, obj: &Value, status: &str, message_contains: &str) {
    let (got, message) = health(check, obj);
    assert_eq!(got, status, "{check:?} of {obj}: message {message:?}");
    assert!(
        message.contains(message_contains),
        "{check:?} of {obj}: {message:?} lacks {message_contains:?}"
    );
    assert_gopher_lua_agrees(check, obj, (&got, &message));
    assert_flux_agrees(obj, status);
}

/// The same script on gopher-lua, the interpreter Argo CD embeds, gives the same answer.
#[track_caller]
fn assert_gopher_lua_agrees(check: HealthCheck, obj: &Value, mlua: (&str, &str)) {
    let (status, message) = argocd::health_on_gopher_lua(check, obj);
    assert_eq!(
        (status.as_str(), message.as_str()),
        mlua,
        "{check:?} of {obj}: gopher-lua and Lua 5.1 differ"
    );
}

#[track_caller]
fn assert_flux_agrees(obj: &Value, argo: &str) {
    let Some(flux) = flux::verdict(obj) else {
        return;
    };
    let agrees = match argo {
        "Healthy" => flux == Verdict::Current,
        "Degraded" => flux == Verdict::Failed,
        // Flux waits on both; an expression that reads a status not written yet errs.
        _ => matches!(flux, Verdict::InProgress | Verdict::Error(_)),
    };
    assert!(agrees, "Argo CD says {argo}, Flux {flux:?}, of {obj}");
}

#[test]
fn tenant_health_follows_the_ready_condition_of_the_current_generation() {
    let tenant = |generation, conditions: Option<Value>| {
        object(
            "Tenant",
            "acme",
            generation,
            conditions.map(|c| json!({"rootNamespace": "acme", "conditions": c})),
        )
    };
    let ready = |status, reason, message, observed| {
        Some(json!([condition(
            "Ready", status, reason, message, observed
        )]))
    };
    assert_health(
        HealthCheck::Tenant,
        &tenant(1, None),
        "Progressing",
        "Waiting for canopy",
    );
    assert_health(
        HealthCheck::Tenant,
        &tenant(
            1,
            ready("True", "Ready", "1 namespace(s); owners bound to admin", 1),
        ),
        "Healthy",
        "1 namespace(s); owners bound to admin",
    );
    // The spec changed and canopy has not written the condition for it yet.
    assert_health(
        HealthCheck::Tenant,
        &tenant(3, ready("True", "Ready", "1 namespace(s)", 2)),
        "Progressing",
        "generation 3",
    );
    assert_health(
        HealthCheck::Tenant,
        &tenant(
            1,
            ready(
                "False",
                "RootNamespaceMissing",
                "creating root namespace \"acme\"",
                1,
            ),
        ),
        "Progressing",
        "RootNamespaceMissing: creating root namespace",
    );
    for reason in ["RootExcluded", "RootClaimed", "RootInsideAnotherTenant"] {
        assert_health(
            HealthCheck::Tenant,
            &tenant(1, ready("False", reason, "choose another root", 1)),
            "Degraded",
            &format!("{reason}: choose another root"),
        );
    }
}

#[test]
fn anchor_health_follows_its_state() {
    let anchor = |status: Option<Value>| object("SubnamespaceAnchor", "acme-dev", 1, status);
    let with = |state: &str, ready: &str, reason: &str, message: &str| {
        anchor(Some(json!({
            "status": state,
            "conditions": [condition("Ready", ready, reason, message, 0)],
        })))
    };
    assert_health(
        HealthCheck::SubnamespaceAnchor,
        &anchor(None),
        "Progressing",
        "create the subnamespace acme-dev",
    );
    assert_health(
        HealthCheck::SubnamespaceAnchor,
        &anchor(Some(json!({"status": "Missing"}))),
        "Progressing",
        "acme-dev",
    );
    assert_health(
        HealthCheck::SubnamespaceAnchor,
        &with(
            "Ok",
            "True",
            "Created",
            "namespace \"acme-dev\" is a subnamespace of \"acme\"",
        ),
        "Healthy",
        "Created: namespace \"acme-dev\" is a subnamespace of \"acme\"",
    );
    assert_health(
        HealthCheck::SubnamespaceAnchor,
        &with(
            "Conflict",
            "False",
            "Conflict",
            "namespace \"acme-dev\" exists and is not a subnamespace of \"acme\"",
        ),
        "Degraded",
        "Conflict: Conflict: namespace \"acme-dev\" exists",
    );
    assert_health(
        HealthCheck::SubnamespaceAnchor,
        &with(
            "Forbidden",
            "False",
            "ExcludedNamespace",
            "is excluded from canopy",
        ),
        "Degraded",
        "Forbidden: ExcludedNamespace: ",
    );
}

#[test]
fn hierarchy_health_is_degraded_while_a_problem_is_reported() {
    let hierarchy = |generation, parent: Option<&str>, status: Option<Value>| {
        let mut obj = object("HierarchyConfiguration", "hierarchy", generation, status);
        if let Some(parent) = parent {
            obj["spec"]["parent"] = json!(parent);
        }
        obj
    };
    // canopy writes no status for a namespace with no children and no problem.
    assert_health(
        HealthCheck::HierarchyConfiguration,
        &hierarchy(1, Some("acme"), None),
        "Healthy",
        "parent: acme",
    );
    assert_health(
        HealthCheck::HierarchyConfiguration,
        &hierarchy(1, None, Some(json!({"children": ["acme-dev"]}))),
        "Healthy",
        "a root",
    );
    assert_health(
        HealthCheck::HierarchyConfiguration,
        &hierarchy(
            2,
            Some("gone"),
            Some(json!({"conditions": [condition(
                "ActivitiesHalted",
                "True",
                "ParentMissing",
                "parent \"gone\" does not exist",
                2,
            )]})),
        ),
        "Degraded",
        "ActivitiesHalted (ParentMissing): parent \"gone\" does not exist",
    );
    assert_health(
        HealthCheck::HierarchyConfiguration,
        &hierarchy(
            1,
            Some("acme"),
            Some(json!({"conditions": [
                condition("ActivitiesHalted", "True", "InCycle", "a cycle", 1),
                condition("BadConfiguration", "True", "CannotPropagateObject", "a conflict", 1),
            ]})),
        ),
        "Degraded",
        "ActivitiesHalted (InCycle): a cycle; BadConfiguration (CannotPropagateObject): a conflict",
    );
    // The parent was just fixed; canopy has not yet cleared the old condition.
    assert_health(
        HealthCheck::HierarchyConfiguration,
        &hierarchy(
            3,
            Some("acme"),
            Some(json!({"conditions": [condition(
                "ActivitiesHalted",
                "True",
                "ParentMissing",
                "parent \"gone\" does not exist",
                2,
            )]})),
        ),
        "Progressing",
        "generation 3",
    );
}

#[test]
fn configuration_health_follows_bad_configuration() {
    let config = |generation, conditions: Option<Value>| {
        object(
            "CanopyConfiguration",
            "config",
            generation,
            conditions.map(|c| json!({"resources": [], "conditions": c})),
        )
    };
    assert_health(
        HealthCheck::CanopyConfiguration,
        &config(1, None),
        "Progressing",
        "Waiting for canopy",
    );
    assert_health(
        HealthCheck::CanopyConfiguration,
        &config(
            1,
            Some(json!([condition(
                "BadConfiguration",
                "False",
                "AllKindsAvailable",
                "every configured kind is propagated",
                1
            )])),
        ),
        "Healthy",
        "every configured kind is propagated",
    );
    assert_health(
        HealthCheck::CanopyConfiguration,
        &config(
            2,
            Some(json!([condition(
                "BadConfiguration",
                "True",
                "KindUnavailable",
                "cannot propagate widgets.example.com",
                2
            )])),
        ),
        "Degraded",
        "KindUnavailable: cannot propagate widgets.example.com",
    );
    assert_health(
        HealthCheck::CanopyConfiguration,
        &config(
            3,
            Some(json!([condition(
                "BadConfiguration",
                "True",
                "KindUnavailable",
                "cannot propagate widgets.example.com",
                2
            )])),
        ),
        "Progressing",
        "generation 3",
    );
}

/// `docs/gitops.md` shows each script as an `argocd-cm` entry; the entry's text (its YAML
/// block scalar, de-indented) must be the file, so the two cannot drift apart.
#[test]
fn the_argocd_cm_in_docs_gitops_embeds_the_scripts_verbatim() {
    let doc = std::fs::read_to_string(argocd::repo_path("docs/gitops.md"))
        .expect("docs/gitops.md is readable");
    for check in HealthCheck::ALL {
        let key = format!(
            "resource.customizations.health.canopy.dev_{}: |",
            check.kind()
        );
        let lines: Vec<&str> = doc.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.trim() == key)
            .unwrap_or_else(|| panic!("docs/gitops.md has no {key:?}"));
        let indent = lines[at].len() - lines[at].trim_start().len() + 2;
        let mut embedded = String::new();
        for line in &lines[at + 1..] {
            if line.trim().is_empty() {
                embedded.push('\n');
                continue;
            }
            if line.len() - line.trim_start().len() < indent || line.starts_with("```") {
                break;
            }
            embedded.push_str(&line[indent..]);
            embedded.push('\n');
        }
        let embedded = format!("{}\n", embedded.trim_end());
        assert_eq!(
            embedded,
            check.script(),
            "docs/gitops.md's {key:?} differs from config/argocd/{}",
            check.file()
        );
    }
}

const WAIT: Duration = Duration::from_secs(60);
const CANOPY_SA: &str = "system:serviceaccount:canopy-system:canopy";

/// Waits until `check` judges the live object (`kubectl get <args> -o json`) `status`,
/// with a message containing `message_contains`.
#[track_caller]
fn live_health_becomes(check: HealthCheck, args: &[&str], status: &str, message_contains: &str) {
    live_health_becomes_all(check, args, status, &[message_contains]);
}

#[track_caller]
fn live_health_becomes_all(
    check: HealthCheck,
    args: &[&str],
    status: &str,
    message_contains: &[&str],
) {
    let mut get = args.to_vec();
    get.insert(0, "get");
    get.extend_from_slice(&["-o", "json"]);
    let mut last = String::new();
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(&format!("{args:?} to be {status}"), WAIT, || {
            let obj = json(&get)?;
            let (got, message) = health(check, &obj);
            last = format!("{got}: {message}\n{obj:#}");
            let done = got == status && message_contains.iter().all(|m| message.contains(m));
            if done {
                assert_gopher_lua_agrees(check, &obj, (&got, &message));
                assert_flux_agrees(&obj, status);
            }
            done.then_some(())
        })
    }));
    assert!(
        found.is_ok(),
        "{args:?} never became {status} ({message_contains:?}); last: {last}"
    );
}

/// The checks on objects canopy wrote: a Ready Tenant, an anchor `Ok` and one in
/// `Conflict`, a HierarchyConfiguration whose parent is gone, a Tenant whose root was
/// excluded afterwards, and a configuration with a kind that does not exist.
#[test]
fn live_objects_in_each_state() {
    cluster_with_canopy();

    // Healthy: a Tenant, its subnamespace's anchor, and both HierarchyConfigurations.
    create_tenant("argo-t", 5, "");
    live_health_becomes(
        HealthCheck::Tenant,
        &["tenant", "argo-t"],
        "Healthy",
        "1 namespace(s)",
    );
    make_subnamespace("argo-t", "argo-t-dev", WAIT);
    live_health_becomes(
        HealthCheck::SubnamespaceAnchor,
        &["subns", "argo-t-dev", "-n", "argo-t"],
        "Healthy",
        "Created",
    );
    for ns in ["argo-t", "argo-t-dev"] {
        live_health_becomes(
            HealthCheck::HierarchyConfiguration,
            &["hierarchyconfiguration", "hierarchy", "-n", ns],
            "Healthy",
            "parent: ",
        );
    }

    // Degraded: an anchor whose namespace exists and is not its child. The webhook refuses
    // such an anchor, so it is written as canopy (as an anchor admitted before the
    // namespace appeared would be).
    kubectl_ok(&["create", "namespace", "argo-taken"]);
    let out = kubectl_with_stdin(
        &["--as", CANOPY_SA, "apply", "-f", "-"],
        Some(&anchor("argo-t", "argo-taken")),
    );
    assert!(out.success, "{}", out.stderr);
    live_health_becomes(
        HealthCheck::SubnamespaceAnchor,
        &["subns", "argo-taken", "-n", "argo-t"],
        "Degraded",
        "Conflict: Conflict: namespace \"argo-taken\" exists",
    );

    // Degraded: a namespace whose parent was deleted.
    kubectl_ok(&["create", "namespace", "argo-p"]);
    kubectl_ok(&["create", "namespace", "argo-c"]);
    let out = apply(
        "apiVersion: canopy.dev/v1alpha1\nkind: HierarchyConfiguration\n\
         metadata: {name: hierarchy, namespace: argo-c}\nspec: {parent: argo-p}\n",
    );
    assert!(out.success, "{}", out.stderr);
    live_health_becomes(
        HealthCheck::HierarchyConfiguration,
        &["hierarchyconfiguration", "hierarchy", "-n", "argo-p"],
        "Healthy",
        "a root",
    );
    kubectl_ok(&["delete", "namespace", "argo-p", "--wait=false"]);
    live_health_becomes(
        HealthCheck::HierarchyConfiguration,
        &["hierarchyconfiguration", "hierarchy", "-n", "argo-c"],
        "Degraded",
        "ActivitiesHalted (ParentMissing)",
    );

    // Degraded: a Tenant whose root the configuration excludes afterwards, and the
    // configuration itself, which names a kind that does not exist.
    create_tenant("argo-x", 5, "");
    live_health_becomes(
        HealthCheck::CanopyConfiguration,
        &["canopyconfiguration", "config"],
        "Healthy",
        "every configured kind is propagated",
    );
    let out = apply(
        "apiVersion: canopy.dev/v1alpha1\nkind: CanopyConfiguration\nmetadata: {name: config}\n\
         spec:\n  excludedNamespaces: [kube-system, kube-public, kube-node-lease, canopy-system, argo-x]\n  \
         resources:\n  - {group: example.com, resource: widgets, mode: Propagate}\n",
    );
    assert!(out.success, "{}", out.stderr);
    live_health_becomes(
        HealthCheck::Tenant,
        &["tenant", "argo-x"],
        "Degraded",
        "RootExcluded: ",
    );
    live_health_becomes_all(
        HealthCheck::CanopyConfiguration,
        &["canopyconfiguration", "config"],
        "Degraded",
        &["KindUnavailable: cannot propagate", "widgets.example.com"],
    );
}

/// The Tenant, anchor and RoleBinding example of docs/gitops.md, synced as Argo CD would:
/// wave by wave (`argocd.argoproj.io/sync-wave`), each object applied and, for canopy's
/// kinds, waited for until the health check says Healthy before the next wave starts.
#[test]
fn the_sync_waves_of_docs_gitops_converge() {
    cluster_with_canopy();
    let doc = std::fs::read_to_string(argocd::repo_path("docs/gitops.md")).expect("gitops.md");
    let block = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("kind: SubnamespaceAnchor"))
        .expect("docs/gitops.md has the sync-wave example");
    let mut objects: Vec<(i64, String, Value)> = block
        .split("\n---\n")
        .map(|d| {
            let obj: Value = serde_saphyr::from_str(d).expect("each document is YAML");
            let wave = obj["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
                .as_str()
                .map_or(0, |w| w.parse().expect("a wave is a number"));
            (wave, d.to_owned(), obj)
        })
        .collect();
    objects.sort_by_key(|(wave, _, _)| *wave);
    for (wave, yaml, obj) in &objects {
        let kind = obj["kind"].as_str().expect("a kind");
        let name = obj["metadata"]["name"].as_str().expect("a name");
        let out = apply(yaml);
        assert!(out.success, "wave {wave}: {kind} {name}: {}", out.stderr);
        let check = match kind {
            "Tenant" => HealthCheck::Tenant,
            "SubnamespaceAnchor" => HealthCheck::SubnamespaceAnchor,
            _ => continue,
        };
        let mut args = vec![kind, name];
        if let Some(ns) = obj["metadata"]["namespace"].as_str() {
            args.extend(["-n", ns]);
        }
        live_health_becomes(check, &args, "Healthy", "");
    }
    let (_, _, last) = objects.last().expect("objects");
    kubectl_ok(&[
        "get",
        "rolebinding",
        last["metadata"]["name"].as_str().expect("a name"),
        "-n",
        last["metadata"]["namespace"].as_str().expect("a namespace"),
    ]);
}
