//! HierarchicalResourceQuotas against a real apiserver, with two manager replicas serving
//! the webhook through a round-robin proxy (as a Service spreads connections), one of
//! them leading (the recount). The test control plane has no node: Pods are admitted and
//! stay Pending, and Pending Pods count, which is all admission needs.

mod common;

use std::sync::Arc;

use common::managers::setup_two_replicas;
use common::objects::hierarchy;
use common::tenants::{WAIT, as_owner, as_owner_apply, create_tenant, owner_subnamespace};
use common::{Kubectl, apply, eventually, json, kubectl, kubectl_ok, unique};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};

fn setup() {
    setup_two_replicas();
}

const TENANT_QUOTA: &str = "canopy-tenant-quota";

fn pod_yaml(namespace: &str, name: &str, cpu: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  \
         containers:\n  - name: c\n    image: registry.k8s.io/pause:3.10\n    resources:\n      \
         requests: {{cpu: {cpu}, memory: 16Mi}}\n      limits: {{cpu: {cpu}, memory: 16Mi}}\n"
    )
}

fn hrq_yaml(namespace: &str, name: &str, hard: &str) -> String {
    format!(
        "apiVersion: canopy.dev/v1alpha1\nkind: HierarchicalResourceQuota\nmetadata: \
         {{name: {name}, namespace: {namespace}}}\nspec:\n  hard: {hard}\n"
    )
}

/// `status.used[resource]` of an HRQ.
fn used(namespace: &str, name: &str, resource: &str) -> Option<String> {
    let hrq = json(&["get", "hrq", name, "-n", namespace, "-o", "json"])?;
    hrq["status"]["used"][resource].as_str().map(str::to_owned)
}

#[track_caller]
fn wait_used(namespace: &str, name: &str, resource: &str, want: &str) {
    eventually(
        &format!("{namespace}/{name} to count {resource} = {want}"),
        WAIT,
        || (used(namespace, name, resource).as_deref() == Some(want)).then_some(()),
    );
}

fn pods_in(namespaces: &[String]) -> usize {
    namespaces
        .iter()
        .map(|ns| {
            kubectl_ok(&["get", "pods", "-n", ns, "-o", "name"])
                .lines()
                .count()
        })
        .sum()
}

#[track_caller]
fn refused(out: &Kubectl, parts: &[&str]) {
    assert!(!out.success, "admitted, but should be refused");
    for part in parts {
        assert!(out.stderr.contains(part), "{part:?} not in: {}", out.stderr);
    }
}

#[test]
fn the_sixth_pod_is_refused_wherever_it_is_created_and_a_deleted_pod_frees_budget() {
    setup();
    let t = unique("quota");
    create_tenant(&t, 10, "  quota: {pods: \"5\", requests.cpu: \"1\"}\n");
    let subs: Vec<String> = ["a", "b", "c"].iter().map(|s| format!("{t}-{s}")).collect();
    for sub in &subs {
        owner_subnamespace(&t, &t, sub);
    }
    wait_used(&t, TENANT_QUOTA, "pods", "0");
    // The owner may read the tenant's quota.
    let listed = as_owner(&t, &["get", "hrq", "-n", &t]);
    assert!(
        listed.success && listed.stdout.contains(TENANT_QUOTA),
        "{}",
        listed.stderr
    );

    let all: Vec<String> = std::iter::once(t.clone()).chain(subs.clone()).collect();
    for (i, ns) in all.iter().chain([&subs[0]]).enumerate() {
        let out = as_owner_apply(&t, &pod_yaml(ns, &format!("p{i}"), "100m"));
        assert!(out.success, "pod {i} in {ns}: {}", out.stderr);
    }
    // Five Pods anywhere in the tree: the sixth is refused in every namespace of it.
    for ns in &all {
        let out = as_owner_apply(&t, &pod_yaml(ns, "sixth", "100m"));
        refused(
            &out,
            &[
                &format!("exceeded hierarchical quota \"{TENANT_QUOTA}\" in namespace \"{t}\""),
                "pods: requested 1, used 5, hard 5",
            ],
        );
    }
    wait_used(&t, TENANT_QUOTA, "requests.cpu", "500m");
    // A dry run is checked too, and reserves nothing.
    let dry = as_owner_stdin_dry(&t, &pod_yaml(&subs[1], "sixth", "100m"));
    refused(&dry, &["pods: requested 1, used 5, hard 5"]);

    // Deleting a Pod frees its share; then the sixth goes through, once.
    kubectl_ok(&["delete", "pod", "p0", "-n", &t, "--wait=true"]);
    wait_used(&t, TENANT_QUOTA, "pods", "4");
    let out = as_owner_apply(&t, &pod_yaml(&subs[2], "sixth", "100m"));
    assert!(out.success, "{}", out.stderr);
    let out = as_owner_apply(&t, &pod_yaml(&subs[1], "seventh", "100m"));
    refused(&out, &["pods: requested 1, used 5, hard 5"]);
    wait_used(&t, TENANT_QUOTA, "pods", "5");
    assert_eq!(pods_in(&all), 5);
}

fn as_owner_stdin_dry(tenant: &str, yaml: &str) -> Kubectl {
    common::tenants::as_owner_stdin(tenant, &["apply", "--dry-run=server", "-f", "-"], yaml)
}

#[test]
fn cpu_counts_across_the_tree_and_a_resize_is_checked() {
    setup();
    let t = unique("cpu");
    create_tenant(&t, 5, "  quota: {requests.cpu: \"1\"}\n");
    let sub = format!("{t}-a");
    owner_subnamespace(&t, &t, &sub);
    wait_used(&t, TENANT_QUOTA, "requests.cpu", "0");
    let out = as_owner_apply(&t, &pod_yaml(&t, "big", "600m"));
    assert!(out.success, "{}", out.stderr);
    let out = as_owner_apply(&t, &pod_yaml(&sub, "too-big", "500m"));
    refused(&out, &["requests.cpu: requested 500m, used 600m, hard 1"]);
    let out = as_owner_apply(&t, &pod_yaml(&sub, "fits", "400m"));
    assert!(out.success, "{}", out.stderr);
    wait_used(&t, TENANT_QUOTA, "requests.cpu", "1");
    // An in-place resize (pods/resize) is checked for what it adds.
    let resize = |cpu: &str| {
        let patch = format!(
            r#"{{"spec":{{"containers":[{{"name":"c","resources":{{"requests":{{"cpu":"{cpu}"}},"limits":{{"cpu":"{cpu}"}}}}}}]}}}}"#
        );
        kubectl(&[
            "patch",
            "pod",
            "big",
            "-n",
            &t,
            "--subresource",
            "resize",
            "-p",
            &patch,
        ])
    };
    refused(
        &resize("900m"),
        &["requests.cpu: requested 300m, used 1, hard 1"],
    );
    let out = resize("500m");
    assert!(out.success, "{}", out.stderr);
    wait_used(&t, TENANT_QUOTA, "requests.cpu", "900m");
}

#[test]
fn the_owner_splits_the_budget_but_cannot_change_the_tenants_quota() {
    setup();
    let t = unique("split");
    create_tenant(&t, 5, "  quota: {pods: \"4\"}\n");
    let team = format!("{t}-team");
    owner_subnamespace(&t, &t, &team);
    wait_used(&t, TENANT_QUOTA, "pods", "0");

    // Every write path to the tenant's quota is closed to the owner.
    let patched = as_owner(
        &t,
        &[
            "patch",
            "hrq",
            TENANT_QUOTA,
            "-n",
            &t,
            "--type=merge",
            "-p",
            r#"{"spec":{"hard":{"pods":"100"}}}"#,
        ],
    );
    refused(
        &patched,
        &["is the quota of Tenant", "change the Tenant instead"],
    );
    let replaced = as_owner_apply(&t, &hrq_yaml(&t, TENANT_QUOTA, "{pods: \"100\"}"));
    refused(&replaced, &["is the quota of Tenant"]);
    let deleted = as_owner(&t, &["delete", "hrq", TENANT_QUOTA, "-n", &t]);
    refused(&deleted, &["is the quota of Tenant"]);
    let status = as_owner(
        &t,
        &[
            "patch",
            "hrq",
            TENANT_QUOTA,
            "-n",
            &t,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"used":{"pods":"0"}}}"#,
        ],
    );
    refused(&status, &["forbidden"]);
    let foreign = as_owner_apply(&t, &hrq_yaml("default", "mine", "{pods: \"1\"}"));
    refused(&foreign, &["forbidden"]);
    let bogus = as_owner_apply(&t, &hrq_yaml(&team, "bogus", "{configmaps: \"1\"}"));
    refused(
        &bogus,
        &[
            "\"configmaps\" is not counted by canopy",
            "count/<resource>",
        ],
    );
    // The cluster admin changes the Tenant, and the quota follows.
    let out = apply(&common::tenants::tenant_yaml(
        &t,
        5,
        "  quota: {pods: \"3\"}\n",
    ));
    assert!(out.success, "{}", out.stderr);
    eventually("the tenant quota to follow the Tenant", WAIT, || {
        let hrq = json(&["get", "hrq", TENANT_QUOTA, "-n", &t, "-o", "json"])?;
        (hrq["spec"]["hard"]["pods"] == "3" && hrq["status"]["hard"]["pods"] == "3").then_some(())
    });

    // The owner's own HRQ in the team namespace: both apply, the stricter one refuses.
    let own = as_owner_apply(&t, &hrq_yaml(&team, "team", "{pods: \"1\"}"));
    assert!(own.success, "{}", own.stderr);
    wait_used(&team, "team", "pods", "0");
    let out = as_owner_apply(&t, &pod_yaml(&team, "one", "100m"));
    assert!(out.success, "{}", out.stderr);
    let out = as_owner_apply(&t, &pod_yaml(&team, "two", "100m"));
    refused(
        &out,
        &[&format!(
            "exceeded hierarchical quota \"team\" in namespace \"{team}\""
        )],
    );
    wait_used(&t, TENANT_QUOTA, "pods", "1");
    for name in ["r1", "r2"] {
        let out = as_owner_apply(&t, &pod_yaml(&t, name, "100m"));
        assert!(out.success, "{}", out.stderr);
    }
    let out = as_owner_apply(&t, &pod_yaml(&t, "r3", "100m"));
    refused(
        &out,
        &[&format!("exceeded hierarchical quota \"{TENANT_QUOTA}\"")],
    );
}

#[test]
fn fifty_concurrent_pods_across_ten_namespaces_admit_exactly_hard() {
    setup();
    let t = unique("burst");
    create_tenant(&t, 10, "  quota: {pods: \"20\"}\n");
    let mut namespaces = vec![t.clone()];
    for i in 0..9 {
        let sub = format!("{t}-{i}");
        owner_subnamespace(&t, &t, &sub);
        namespaces.push(sub);
    }
    wait_used(&t, TENANT_QUOTA, "pods", "0");
    let outcomes = burst(&namespaces, 5);
    let admitted = outcomes.iter().filter(|o| o.is_ok()).count();
    let refusals: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    for message in &refusals {
        assert!(
            message.contains("exceeded hierarchical quota"),
            "an unexpected refusal: {message}"
        );
    }
    assert_eq!(admitted, 20, "refusals: {refusals:?}");
    assert_eq!(pods_in(&namespaces), 20);
    wait_used(&t, TENANT_QUOTA, "pods", "20");
    eventually("the reservations to be released", WAIT, || {
        let hrq = json(&["get", "hrq", TENANT_QUOTA, "-n", &t, "-o", "json"])?;
        hrq["status"]["reservations"].is_null().then_some(())
    });
}

/// Creates `per_namespace` Pods in each namespace at once (one task each, all released
/// together), as the cluster admin; the outcome of each create.
fn burst(namespaces: &[String], per_namespace: usize) -> Vec<Result<(), String>> {
    let namespaces = namespaces.to_vec();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async move {
        let client = common::client().await;
        let start = Arc::new(tokio::sync::Barrier::new(namespaces.len() * per_namespace));
        let mut tasks = Vec::new();
        for ns in &namespaces {
            for i in 0..per_namespace {
                let api: Api<Pod> = Api::namespaced(client.clone(), ns);
                let pod: Pod =
                    serde_saphyr::from_str(&pod_yaml(ns, &format!("b{i}"), "10m")).expect("a pod");
                let start = start.clone();
                tasks.push(tokio::spawn(async move {
                    start.wait().await;
                    api.create(&PostParams::default(), &pod)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }));
            }
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap_or_else(|e| Err(e.to_string())));
        }
        outcomes
    })
}

fn configmap_yaml(namespace: &str, name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {namespace}}}\n")
}

fn deployment_yaml(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         spec:\n  replicas: 0\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    \
         metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n      - name: c\n        \
         image: registry.k8s.io/pause:3.10\n        resources:\n          requests: {{cpu: 10m, memory: 16Mi}}\n          \
         limits: {{cpu: 10m, memory: 16Mi}}\n"
    )
}

#[test]
fn any_namespaced_kind_is_counted_with_count_resource() {
    setup();
    let t = unique("count");
    let quota = |extra: &str| {
        format!("  quota: {{count/configmaps: \"4\", count/deployments.apps: \"1\"{extra}}}\n")
    };
    create_tenant(&t, 5, &quota(", count/secrets: \"5\""));
    let sub = format!("{t}-a");
    owner_subnamespace(&t, &t, &sub);
    // Every namespace holds the controller-manager's kube-root-ca.crt ConfigMap, and the
    // apiserver's quota counts it too: two of four are taken.
    wait_used(&t, TENANT_QUOTA, "count/configmaps", "2");
    wait_used(&t, TENANT_QUOTA, "count/deployments.apps", "0");
    for (ns, name) in [(&t, "one"), (&sub, "two")] {
        let out = as_owner_apply(&t, &configmap_yaml(ns, name));
        assert!(out.success, "{}", out.stderr);
    }
    for ns in [&t, &sub] {
        refused(
            &as_owner_apply(&t, &configmap_yaml(ns, "three")),
            &[
                &format!("exceeded hierarchical quota \"{TENANT_QUOTA}\" in namespace \"{t}\""),
                "count/configmaps: requested 1, used 4, hard 4",
            ],
        );
    }
    // An update adds no object.
    let out = as_owner(&t, &["label", "configmap", "one", "-n", &t, "edited=yes"]);
    assert!(out.success, "{}", out.stderr);
    // Deleting one frees its place.
    kubectl_ok(&["delete", "configmap", "one", "-n", &t, "--wait=true"]);
    wait_used(&t, TENANT_QUOTA, "count/configmaps", "3");
    let out = as_owner_apply(&t, &configmap_yaml(&sub, "three"));
    assert!(out.success, "{}", out.stderr);

    // A kind of another API group: count/<resource>.<group>.
    let out = as_owner_apply(&t, &deployment_yaml(&sub, "web"));
    assert!(out.success, "{}", out.stderr);
    refused(
        &as_owner_apply(&t, &deployment_yaml(&t, "api")),
        &["count/deployments.apps: requested 1, used 1, hard 1"],
    );

    // canopy may not list Secrets (not granted by default): counting them is impossible,
    // so creating one under this quota is refused, with what to do, never admitted
    // uncounted...
    let secret = |name: &str| {
        as_owner(
            &t,
            &[
                "create",
                "secret",
                "generic",
                name,
                "-n",
                &sub,
                "--from-literal=k=v",
            ],
        )
    };
    refused(
        &secret("s1"),
        &[
            "limits count/secrets, which canopy cannot count",
            "canopy may not list secrets",
        ],
    );
    // ...and without count/secrets in the quota, the same create goes through.
    let out = apply(&common::tenants::tenant_yaml(&t, 5, &quota("")));
    assert!(out.success, "{}", out.stderr);
    eventually("the Secret to be admitted", WAIT, || {
        secret("s1").success.then_some(())
    });
}

#[test]
fn moving_a_namespace_in_is_refused_past_the_quota_and_moves_update_used() {
    setup();
    let t = unique("mv");
    create_tenant(&t, 5, "  quota: {pods: \"3\"}\n");
    let q = unique("mv-q");
    kubectl_ok(&["create", "namespace", &q]);
    wait_used(&t, TENANT_QUOTA, "pods", "0");
    for (ns, name) in [(&t, "p1"), (&t, "p2"), (&q, "q1"), (&q, "q2")] {
        let out = apply(&pod_yaml(ns, name, "10m"));
        assert!(out.success, "{}", out.stderr);
    }
    wait_used(&t, TENANT_QUOTA, "pods", "2");
    let out = apply(&hierarchy(&q, Some(&t)));
    refused(
        &out,
        &[
            &format!("namespace {q:?} cannot move under {t:?}"),
            &format!("would exceed hierarchical quota \"{TENANT_QUOTA}\""),
            "pods: the subtree uses 2, used 2, hard 3",
        ],
    );
    kubectl_ok(&["delete", "pod", "q2", "-n", &q, "--wait=true"]);
    // The webhook reads usage from its model: the move goes through once it has seen
    // the deletion.
    eventually("the move to be admitted", WAIT, || {
        apply(&hierarchy(&q, Some(&t))).success.then_some(())
    });
    wait_used(&t, TENANT_QUOTA, "pods", "3");
    // Once canopy has made it the tenant's (its label), the quota holds there too.
    eventually("a Pod in the moved namespace to be refused", WAIT, || {
        let out = apply(&pod_yaml(&q, "q3", "10m"));
        (!out.success && out.stderr.contains("used 3, hard 3")).then_some(())
    });
    // Out again: its Pod no longer counts, and Pods may be created there freely.
    let out = apply(&hierarchy(&q, None));
    assert!(out.success, "{}", out.stderr);
    wait_used(&t, TENANT_QUOTA, "pods", "2");
    eventually("a Pod in the moved-out namespace", WAIT, || {
        apply(&pod_yaml(&q, "q3", "10m")).success.then_some(())
    });
    let out = apply(&pod_yaml(&t, "p3", "10m"));
    assert!(out.success, "{}", out.stderr);
}

#[test]
fn a_move_and_a_create_racing_for_the_last_place_never_both_win() {
    setup();
    let t = unique("race");
    create_tenant(&t, 5, "  quota: {pods: \"3\"}\n");
    wait_used(&t, TENANT_QUOTA, "pods", "0");
    for name in ["p1", "p2"] {
        let out = apply(&pod_yaml(&t, name, "10m"));
        assert!(out.success, "{}", out.stderr);
    }
    wait_used(&t, TENANT_QUOTA, "pods", "2");
    let mut both_lost = 0;
    for round in 0..4 {
        // One place left; a namespace with one Pod moves in while a Pod is created.
        let q = unique(&format!("race-q{round}"));
        kubectl_ok(&["create", "namespace", &q]);
        let out = apply(&pod_yaml(&q, "q1", "10m"));
        assert!(out.success, "{}", out.stderr);
        // The model must have seen q's Pod, or the move would carry no usage.
        std::thread::sleep(std::time::Duration::from_millis(500));
        let (tq, qq) = (t.clone(), q.clone());
        let mover = std::thread::spawn(move || apply(&hierarchy(&qq, Some(&tq))));
        let creator = {
            let t = t.clone();
            std::thread::spawn(move || apply(&pod_yaml(&t, &format!("r{round}"), "10m")))
        };
        let moved = mover.join().expect("mover");
        let created = creator.join().expect("creator");
        assert!(
            !(moved.success && created.success),
            "round {round}: the move and the create both took the last place"
        );
        if !moved.success && !created.success {
            both_lost += 1;
        }
        for out in [&moved, &created] {
            if !out.success {
                assert!(out.stderr.contains("hierarchical quota"), "{}", out.stderr);
            }
        }
        // Back to one place left.
        if moved.success {
            let out = apply(&hierarchy(&q, None));
            assert!(out.success, "{}", out.stderr);
        }
        if created.success {
            kubectl_ok(&[
                "delete",
                "pod",
                &format!("r{round}"),
                "-n",
                &t,
                "--wait=true",
            ]);
        }
        wait_used(&t, TENANT_QUOTA, "pods", "2");
    }
    println!("rounds where neither won (both refused by the other's reservation): {both_lost}");
}

#[test]
fn a_reservation_whose_pod_never_appears_is_released() {
    setup();
    let t = unique("lapse");
    create_tenant(&t, 5, "  quota: {pods: \"1\"}\n");
    wait_used(&t, TENANT_QUOTA, "pods", "0");
    // The apiserver's own ResourceQuota admission runs after the webhooks: it refuses the
    // Pod after canopy reserved its share, so the Pod never appears.
    let out = apply(&format!(
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {{name: none, namespace: {t}}}\nspec:\n  hard: {{pods: \"0\"}}\n"
    ));
    assert!(out.success, "{}", out.stderr);
    eventually("the ResourceQuota to be counted", WAIT, || {
        let rq = json(&["get", "resourcequota", "none", "-n", &t, "-o", "json"])?;
        rq["status"]["hard"]["pods"].is_string().then_some(())
    });
    let out = apply(&pod_yaml(&t, "ghost", "10m"));
    refused(&out, &["exceeded quota"]);
    assert_eq!(
        used(&t, TENANT_QUOTA, "pods").as_deref(),
        Some("1"),
        "reserved"
    );
    // Meanwhile the HRQ is full ...
    kubectl_ok(&["delete", "resourcequota", "none", "-n", &t]);
    let out = apply(&pod_yaml(&t, "real", "10m"));
    refused(
        &out,
        &[
            &format!("exceeded hierarchical quota \"{TENANT_QUOTA}\""),
            "used 1, hard 1",
        ],
    );
    // ... until the reservation lapses (30 s) and the recount releases it.
    wait_used(&t, TENANT_QUOTA, "pods", "0");
    let out = apply(&pod_yaml(&t, "real", "10m"));
    assert!(out.success, "{}", out.stderr);
}

#[test]
fn hrqs_live_in_tenants_and_pods_outside_every_tenant_are_not_sent_to_canopy() {
    setup();
    let ns = unique("plain");
    kubectl_ok(&["create", "namespace", &ns]);
    let out = apply(&hrq_yaml(&ns, "budget", "{pods: \"1\"}"));
    refused(
        &out,
        &[
            "belongs to no tenant",
            "enforced in tenants' namespaces only",
        ],
    );
    // The webhook's selector requires the tenant label: a Pod there never reaches canopy.
    for name in ["a", "b"] {
        let out = apply(&pod_yaml(&ns, name, "10m"));
        assert!(out.success, "{}", out.stderr);
    }
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
