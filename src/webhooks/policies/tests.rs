//! `evaluate` end to end on fixture objects, and a property test over arbitrary JSON.

use k8s_openapi::api::core::v1::LimitRange;
use serde_json::{Value, json};

use super::*;
use crate::api::{Exemptions, PolicyScope, TenantPolicies};

const NO_GROUPS: &[String] = &[];
const NO_LIMIT_RANGES: &[LimitRange] = &[];

fn config() -> PolicyConfig {
    PolicyConfig {
        exemptions: Exemptions {
            usernames: vec!["ci-bot".to_owned()],
            groups: vec!["canopy:break-glass".to_owned()],
            namespaces: vec!["acme-sandbox".to_owned()],
        },
        ..PolicyConfig::default()
    }
}

fn tenant_ns(name: &str) -> NamespaceContext<'_> {
    NamespaceContext {
        name,
        excluded: false,
        tenant: Some(TenantContext {
            name: "acme",
            policies: None,
            guardrails: Guardrails::default(),
        }),
        limit_ranges: NO_LIMIT_RANGES,
    }
}

fn alice() -> Requester<'static> {
    Requester {
        username: "alice",
        groups: NO_GROUPS,
    }
}

/// A request as alice in namespace `acme-dev` of tenant `acme`, with the default config.
fn input<'a>(
    group: &'a str,
    kind: &'a str,
    object: &'a Value,
    config: &'a PolicyConfig,
) -> PolicyInput<'a> {
    PolicyInput {
        group,
        kind,
        subresource: None,
        operation: Operation::Create,
        object: Some(leak(object)),
        old_object: None,
        namespace: Some(tenant_ns("acme-dev")),
        requester: alice(),
        config,
    }
}

fn cluster_input<'a>(
    group: &'a str,
    kind: &'a str,
    object: &'a Value,
    config: &'a PolicyConfig,
) -> PolicyInput<'a> {
    PolicyInput {
        namespace: None,
        ..input(group, kind, object, config)
    }
}

/// A fixture as the JSON text a request carries, for as long as the test runs.
fn leak(object: &Value) -> &'static RawValue {
    Box::leak(super::object::raw(object))
}

fn run(input: &PolicyInput<'_>) -> PolicyOutcome {
    evaluate(input).unwrap_or_else(|e| panic!("evaluate failed: {e}"))
}

fn results(outcome: &PolicyOutcome) -> Vec<(Policy, &'static str)> {
    outcome
        .reports
        .iter()
        .map(|r| (r.policy, r.result.as_str()))
        .collect()
}

fn full() -> Value {
    json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}})
}

fn good_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "acme-dev"},
        "spec": {"containers": [{"name": "app", "image": "nginx", "resources": full()}]}
    })
}

fn pod_without_memory_limit() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "acme-dev"},
        "spec": {"containers": [{"name": "app", "image": "nginx", "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1"}}}]}
    })
}

fn bad_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "acme-dev"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [{"name": "app", "image": "nginx", "resources": {
                    "requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1"}}}],
                "volumes": [{"name": "data", "hostPath": {"path": "/data"}}]
            }
        }}
    })
}

const POD_REFUSAL: &str = "Pod \"web\" refused by canopy: container \"app\" at spec.containers[0] \
    has no limits.memory (tenant acme requires requests and limits for cpu, memory); \
    set resources.limits.memory";

#[test]
fn pod_refused_with_the_exact_message() {
    let config = config();
    let object = pod_without_memory_limit();
    let outcome = run(&input("", "Pod", &object, &config));
    assert_eq!(outcome.denial_message(), Some(POD_REFUSAL));
    assert!(outcome.warnings.is_empty());
    assert_eq!(
        results(&outcome),
        [
            (Policy::HostPath, "passed"),
            (Policy::Resources, "violated")
        ]
    );
    let violation = &outcome.reports[1].violations()[0];
    assert_eq!(
        violation.field_path,
        "spec.containers[0].resources.limits.memory"
    );
    assert_eq!(violation.subject_name(), Some("app"));
    assert_eq!(violation.fix(), "set resources.limits.memory");
}

#[test]
fn zero_limits_are_refused_with_the_exact_message() {
    let config = config();
    // As the apiserver sends it: defaulting has copied the zero limits into the requests.
    let object = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "acme-dev"},
        "spec": {"containers": [{"name": "app", "image": "nginx", "resources": {
            "requests": {"cpu": "0", "memory": "0"}, "limits": {"cpu": "0", "memory": "0"}}}]}
    });
    let outcome = run(&input("", "Pod", &object, &config));
    assert_eq!(
        outcome.denial_message(),
        Some(
            "Pod \"web\" refused by canopy: container \"app\" at spec.containers[0] has requests.cpu of \"0\", \
             limits.cpu of \"0\", requests.memory of \"0\", limits.memory of \"0\" \
             (tenant acme requires requests and limits for cpu, memory); a required resource needs a \
             positive quantity; set resources.requests.cpu, resources.limits.cpu, \
             resources.requests.memory, resources.limits.memory to positive values"
        )
    );
    // The same Pod with positive quantities passes: the zeros were the reason.
    let mut positive = object.clone();
    positive["spec"]["containers"][0]["resources"] = full();
    assert!(run(&input("", "Pod", &positive, &config)).is_allowed());
}

#[test]
fn good_pod_is_admitted() {
    let config = config();
    let object = good_pod();
    let outcome = run(&input("", "Pod", &object, &config));
    assert!(outcome.is_allowed());
    assert!(outcome.warnings.is_empty());
    assert_eq!(
        results(&outcome),
        [(Policy::HostPath, "passed"), (Policy::Resources, "passed")]
    );
}

#[test]
fn deployment_lists_every_violation_in_one_message() {
    let config = config();
    let object = bad_deployment();
    let outcome = run(&input("apps", "Deployment", &object, &config));
    assert_eq!(
        outcome.denial_message(),
        Some(
            "Deployment \"web\" refused by canopy: volume \"data\" at spec.template.spec.volumes[0] \
             uses hostPath (forbidden in tenant acme); remove it or use another volume type, such as \
             persistentVolumeClaim or emptyDir; container \"app\" at spec.template.spec.containers[0] \
             has no limits.memory (tenant acme requires requests and limits for cpu, memory); \
             set resources.limits.memory"
        )
    );
}

#[test]
fn warn_mode_admits_with_the_message_as_warning() {
    let config = PolicyConfig {
        host_path: PolicyMode::Warn,
        resources: PolicyMode::Warn,
        ..config()
    };
    let object = pod_without_memory_limit();
    let outcome = run(&input("", "Pod", &object, &config));
    assert!(outcome.is_allowed());
    assert_eq!(
        outcome.warnings,
        [POD_REFUSAL.replace("refused by canopy", "would be refused by canopy")]
    );
    assert_eq!(outcome.reports[1].mode.mode, PolicyMode::Warn);
}

#[test]
fn mixed_modes_split_refusal_and_warning() {
    let config = PolicyConfig {
        resources: PolicyMode::Warn,
        ..config()
    };
    let object = bad_deployment();
    let outcome = run(&input("apps", "Deployment", &object, &config));
    let denial = outcome.denial_message().expect("hostPath is enforced");
    assert!(denial.contains("uses hostPath"), "{denial}");
    assert!(!denial.contains("limits.memory"), "{denial}");
    assert_eq!(outcome.warnings.len(), 1);
    assert!(
        outcome.warnings[0]
            .starts_with("Deployment \"web\" would be refused by canopy: container \"app\""),
        "{:?}",
        outcome.warnings
    );
}

#[test]
fn off_mode_skips_and_does_not_even_read_the_object() {
    let config = PolicyConfig {
        host_path: PolicyMode::Off,
        resources: PolicyMode::Off,
        ..config()
    };
    let object = json!({"spec": "not a pod spec"});
    let outcome = run(&input("apps", "Deployment", &object, &config));
    assert!(outcome.is_allowed());
    assert_eq!(
        results(&outcome),
        [
            (Policy::HostPath, "skipped"),
            (Policy::Resources, "skipped")
        ]
    );
    assert_eq!(outcome.reports[0].mode.source, ModeSource::Cluster);
}

#[test]
fn one_policy_off_the_other_enforced() {
    let config = PolicyConfig {
        host_path: PolicyMode::Off,
        ..config()
    };
    let object = bad_deployment();
    let outcome = run(&input("apps", "Deployment", &object, &config));
    assert_eq!(
        results(&outcome),
        [
            (Policy::HostPath, "skipped"),
            (Policy::Resources, "violated")
        ]
    );
    assert!(
        !outcome
            .denial_message()
            .unwrap_or_default()
            .contains("hostPath")
    );
}

#[test]
fn tenant_override_wins_over_the_cluster() {
    let config = config();
    let policies = TenantPolicies {
        host_path: Some(PolicyMode::Warn),
        resources: Some(PolicyMode::Off),
        guardrails: None,
    };
    let object = bad_deployment();
    let request = PolicyInput {
        namespace: Some(NamespaceContext {
            tenant: Some(TenantContext {
                name: "acme",
                policies: Some(&policies),
                guardrails: Guardrails::default(),
            }),
            ..tenant_ns("acme-dev")
        }),
        ..input("apps", "Deployment", &object, &config)
    };
    let outcome = run(&request);
    assert!(outcome.is_allowed());
    assert_eq!(outcome.warnings.len(), 1);
    assert!(outcome.warnings[0].contains("uses hostPath (forbidden in tenant acme)"));
    assert_eq!(outcome.reports[1].mode.source, ModeSource::Tenant);
}

#[test]
fn excluded_namespace_is_exempt() {
    let config = config();
    let object = bad_deployment();
    let request = PolicyInput {
        namespace: Some(NamespaceContext {
            excluded: true,
            tenant: None,
            ..tenant_ns("kube-system")
        }),
        ..input("apps", "Deployment", &object, &config)
    };
    let outcome = run(&request);
    assert!(outcome.is_allowed());
    assert!(outcome.reports.iter().all(
        |r| r.mode.source == ModeSource::ExcludedNamespace && r.result == CheckResult::Skipped
    ));
}

#[test]
fn exempt_user_group_and_namespace_are_admitted() {
    let config = config();
    let object = bad_deployment();
    let break_glass = vec![
        "system:authenticated".to_owned(),
        "canopy:break-glass".to_owned(),
    ];
    let cases = [
        (
            Requester {
                username: "ci-bot",
                groups: NO_GROUPS,
            },
            "acme-dev",
            ModeSource::ExemptUsername,
        ),
        (
            Requester {
                username: "admin",
                groups: &break_glass,
            },
            "acme-dev",
            ModeSource::ExemptGroup,
        ),
        (alice(), "acme-sandbox", ModeSource::ExemptNamespace),
    ];
    for (requester, namespace, source) in cases {
        let request = PolicyInput {
            requester,
            namespace: Some(tenant_ns(namespace)),
            ..input("apps", "Deployment", &object, &config)
        };
        let outcome = run(&request);
        assert!(outcome.is_allowed(), "{source:?}");
        assert_eq!(outcome.reports[0].mode.source, source);
    }
}

#[test]
fn scope_tenants_versus_all_namespaces() {
    let object = bad_deployment();
    let plain = NamespaceContext {
        tenant: None,
        ..tenant_ns("default")
    };

    let tenants = config();
    let request = PolicyInput {
        namespace: Some(plain),
        ..input("apps", "Deployment", &object, &tenants)
    };
    let outcome = run(&request);
    assert!(outcome.is_allowed());
    assert_eq!(outcome.reports[0].mode.source, ModeSource::OutOfScope);

    let all = PolicyConfig {
        scope: PolicyScope::AllNamespaces,
        ..config()
    };
    let request = PolicyInput {
        namespace: Some(plain),
        ..input("apps", "Deployment", &object, &all)
    };
    let outcome = run(&request);
    let denial = outcome.denial_message().expect("checked everywhere");
    assert!(denial.contains("(forbidden by cluster policy)"), "{denial}");
    assert!(
        denial.contains("(cluster policy requires requests and limits for cpu, memory)"),
        "{denial}"
    );
}

#[test]
fn templates_get_limit_range_defaults_pods_do_not() {
    let config = config();
    let limit_range: LimitRange = serde_json::from_value(json!({
        "metadata": {"name": "canopy-limits", "namespace": "acme-dev"},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m", "memory": "512Mi"}}]}
    }))
    .expect("fixture parses");
    let limit_ranges = [limit_range];
    let namespace = NamespaceContext {
        limit_ranges: &limit_ranges,
        ..tenant_ns("acme-dev")
    };
    let bare = json!({"containers": [{"name": "app", "image": "nginx"}]});

    let cron = json!({"metadata": {"name": "nightly"}, "spec": {"schedule": "@daily",
        "jobTemplate": {"spec": {"template": {"spec": bare.clone()}}}}});
    let request = PolicyInput {
        namespace: Some(namespace),
        ..input("batch", "CronJob", &cron, &config)
    };
    assert!(run(&request).is_allowed());

    let template = json!({"metadata": {"name": "tpl"}, "template": {"spec": bare.clone()}});
    let request = PolicyInput {
        namespace: Some(namespace),
        ..input("", "PodTemplate", &template, &config)
    };
    assert!(run(&request).is_allowed());

    let pod = json!({"metadata": {"name": "web"}, "spec": bare});
    let request = PolicyInput {
        namespace: Some(namespace),
        ..input("", "Pod", &pod, &config)
    };
    let outcome = run(&request);
    let denial = outcome
        .denial_message()
        .expect("a Pod is already defaulted");
    assert!(
        denial.contains("has no requests.cpu, limits.cpu, requests.memory, limits.memory"),
        "{denial}"
    );
}

#[test]
fn unchanged_update_is_admitted_changed_update_is_judged_whole() {
    let config = config();
    let old = bad_deployment();
    let mut scaled = old.clone();
    scaled["spec"]["replicas"] = json!(5);
    scaled["metadata"]["labels"] = json!({"team": "a"});
    let request = PolicyInput {
        operation: Operation::Update,
        old_object: Some(leak(&old)),
        ..input("apps", "Deployment", &scaled, &config)
    };
    let outcome = run(&request);
    assert!(outcome.is_allowed());
    assert_eq!(
        results(&outcome),
        [
            (Policy::HostPath, "unchanged"),
            (Policy::Resources, "unchanged")
        ]
    );

    let mut edited = old.clone();
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    let request = PolicyInput {
        operation: Operation::Update,
        old_object: Some(leak(&old)),
        ..input("apps", "Deployment", &edited, &config)
    };
    let outcome = run(&request);
    assert_eq!(
        results(&outcome),
        [
            (Policy::HostPath, "violated"),
            (Policy::Resources, "violated")
        ]
    );

    // A change to a field no policy reads still makes the spec new: the policies parse
    // only what they check, but an update is compared on the whole spec.
    let mut env = old.clone();
    env["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "A", "value": "1"}]);
    let request = PolicyInput {
        operation: Operation::Update,
        old_object: Some(leak(&old)),
        ..input("apps", "Deployment", &env, &config)
    };
    assert_eq!(
        results(&run(&request)),
        [
            (Policy::HostPath, "violated"),
            (Policy::Resources, "violated")
        ]
    );

    // An unreadable old object excuses nothing.
    let garbage = json!({"spec": 1});
    let request = PolicyInput {
        operation: Operation::Update,
        old_object: Some(leak(&garbage)),
        ..input("apps", "Deployment", &scaled, &config)
    };
    assert!(!run(&request).is_allowed());
}

#[test]
fn deletes_connects_and_other_kinds_are_not_checked() {
    let config = config();
    let object = bad_deployment();
    for operation in [Operation::Delete, Operation::Connect] {
        let request = PolicyInput {
            operation,
            object: None,
            old_object: Some(leak(&object)),
            ..input("apps", "Deployment", &object, &config)
        };
        let outcome = run(&request);
        assert!(outcome.is_allowed() && outcome.reports.is_empty());
    }
    let configmap = json!({"metadata": {"name": "x"}, "data": {}});
    let outcome = run(&input("", "ConfigMap", &configmap, &config));
    assert!(outcome.is_allowed() && outcome.reports.is_empty());
}

#[test]
fn subresources() {
    let config = config();
    let mut pod = pod_without_memory_limit();
    pod["spec"]["volumes"] = json!([{"name": "host", "hostPath": {"path": "/"}}]);
    let old = pod.clone();
    pod["spec"]["ephemeralContainers"] = json!([{"name": "debugger", "image": "busybox"}]);

    let request = PolicyInput {
        subresource: Some("ephemeralcontainers"),
        operation: Operation::Update,
        old_object: Some(leak(&old)),
        ..input("", "Pod", &pod, &config)
    };
    let outcome = run(&request);
    // Only hostPath: the resources of the pod's containers cannot change here.
    assert_eq!(results(&outcome), [(Policy::HostPath, "violated")]);
    assert!(
        outcome
            .denial_message()
            .unwrap_or_default()
            .contains("volume \"host\" at spec.volumes[0] uses hostPath")
    );

    let mut debuggable = pod_without_memory_limit();
    let old = debuggable.clone();
    debuggable["spec"]["ephemeralContainers"] = json!([{"name": "debugger", "image": "busybox"}]);
    let request = PolicyInput {
        subresource: Some("ephemeralcontainers"),
        operation: Operation::Update,
        old_object: Some(leak(&old)),
        ..input("", "Pod", &debuggable, &config)
    };
    assert!(run(&request).is_allowed());

    // A resize is judged for resources only: to zero is refused, to positive admitted.
    let mut sized = good_pod();
    let old = sized.clone();
    sized["spec"]["containers"][0]["resources"] =
        json!({"requests": {"cpu": "100m", "memory": "0"}, "limits": {"cpu": "1", "memory": "0"}});
    let request = PolicyInput {
        subresource: Some("resize"),
        operation: Operation::Update,
        old_object: Some(leak(&old)),
        ..input("", "Pod", &sized, &config)
    };
    let outcome = run(&request);
    assert_eq!(results(&outcome), [(Policy::Resources, "violated")]);
    assert!(
        outcome
            .denial_message()
            .unwrap_or_default()
            .contains("has requests.memory of \"0\", limits.memory of \"0\""),
        "{outcome:?}"
    );
    sized["spec"]["containers"][0]["resources"] = json!({
        "requests": {"cpu": "200m", "memory": "64Mi"}, "limits": {"cpu": "2", "memory": "256Mi"}});
    let request = PolicyInput {
        subresource: Some("resize"),
        operation: Operation::Update,
        old_object: Some(leak(&old)),
        ..input("", "Pod", &sized, &config)
    };
    assert!(run(&request).is_allowed());

    for subresource in ["status", "binding", "scale"] {
        let request = PolicyInput {
            subresource: Some(subresource),
            operation: Operation::Update,
            ..input("", "Pod", &pod, &config)
        };
        let outcome = run(&request);
        assert!(
            outcome.is_allowed() && outcome.reports.is_empty(),
            "{subresource}"
        );
    }
    let request = PolicyInput {
        subresource: Some(""),
        ..input("", "Pod", &pod, &config)
    };
    assert!(!run(&request).is_allowed());
}

fn pv(extra: Value) -> Value {
    let mut pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "pv-1"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "csi": {"driver": "csi.example.com", "volumeHandle": "h1"}}
    });
    if let (Some(spec), Some(extra)) = (pv["spec"].as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    pv
}

#[test]
fn persistent_volume_reclaim_policy() {
    let config = config();
    let cases = [
        (json!({}), false),
        (json!({"persistentVolumeReclaimPolicy": "Retain"}), false),
        (json!({"persistentVolumeReclaimPolicy": "Recycle"}), false),
        (json!({"persistentVolumeReclaimPolicy": "Delete"}), true),
    ];
    for (extra, allowed) in cases {
        let object = pv(extra.clone());
        let outcome = run(&cluster_input("", "PersistentVolume", &object, &config));
        assert_eq!(outcome.is_allowed(), allowed, "{extra}");
    }
    let object = pv(json!({}));
    let outcome = run(&cluster_input("", "PersistentVolume", &object, &config));
    assert_eq!(
        outcome.denial_message(),
        Some(
            "PersistentVolume \"pv-1\" refused by canopy: spec.persistentVolumeReclaimPolicy is unset, \
             which means Retain (cluster policy requires Delete); set spec.persistentVolumeReclaimPolicy to Delete"
        )
    );
}

#[test]
fn persistent_volume_host_path_is_checked_whatever_the_scope() {
    let config = config();
    assert_eq!(config.scope, PolicyScope::Tenants);
    let object = json!({"metadata": {"name": "local"}, "spec": {
        "hostPath": {"path": "/mnt/disk"}, "persistentVolumeReclaimPolicy": "Delete"}});
    let outcome = run(&cluster_input("", "PersistentVolume", &object, &config));
    assert_eq!(
        outcome.denial_message(),
        Some(
            "PersistentVolume \"local\" refused by canopy: spec.hostPath is node storage (forbidden by cluster policy); \
             provision volumes through a StorageClass with a dynamic provisioner instead, \
             or add the provisioner's identity to the CanopyConfiguration's spec.policies.exemptions"
        )
    );
    assert_eq!(
        results(&outcome),
        [
            (Policy::HostPath, "violated"),
            (Policy::ReclaimPolicy, "passed")
        ]
    );
}

#[test]
fn local_persistent_volumes_are_node_storage_unless_the_provisioner_is_exempt() {
    let config = PolicyConfig {
        exemptions: Exemptions {
            usernames: vec!["system:serviceaccount:local:provisioner".to_owned()],
            groups: Vec::new(),
            namespaces: Vec::new(),
        },
        ..PolicyConfig::default()
    };
    let local = json!({"metadata": {"name": "root"}, "spec": {
        "local": {"path": "/"}, "persistentVolumeReclaimPolicy": "Delete",
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}});
    let admin_groups = vec!["system:masters".to_owned()];
    let admin = PolicyInput {
        requester: Requester {
            username: "admin",
            groups: &admin_groups,
        },
        ..cluster_input("", "PersistentVolume", &local, &config)
    };
    let outcome = run(&admin);
    assert_eq!(
        outcome.denial_message(),
        Some(
            "PersistentVolume \"root\" refused by canopy: spec.local is node storage (forbidden by cluster policy); \
             provision volumes through a StorageClass with a dynamic provisioner instead, \
             or add the provisioner's identity to the CanopyConfiguration's spec.policies.exemptions"
        )
    );
    let provisioner = PolicyInput {
        requester: Requester {
            username: "system:serviceaccount:local:provisioner",
            groups: NO_GROUPS,
        },
        ..admin
    };
    let outcome = run(&provisioner);
    assert!(outcome.is_allowed());
    assert_eq!(outcome.reports[0].mode.source, ModeSource::ExemptUsername);

    // The PV controller binding an existing local volume (claimRef) is not refused.
    let mut bound = local.clone();
    bound["spec"]["claimRef"] = json!({"namespace": "acme", "name": "data"});
    let binding = PolicyInput {
        operation: Operation::Update,
        old_object: Some(leak(&local)),
        requester: Requester {
            username: "system:kube-controller-manager",
            groups: NO_GROUPS,
        },
        ..cluster_input("", "PersistentVolume", &bound, &config)
    };
    let outcome = run(&binding);
    assert!(outcome.is_allowed());
    assert_eq!(outcome.reports[0].result, CheckResult::Unchanged);
}

#[test]
fn persistent_volume_update_counts_only_a_change_to_non_delete() {
    let config = config();
    let retain = pv(json!({"persistentVolumeReclaimPolicy": "Retain"}));
    let mut relabelled = retain.clone();
    relabelled["metadata"]["labels"] = json!({"x": "y"});
    let request = PolicyInput {
        operation: Operation::Update,
        old_object: Some(leak(&retain)),
        ..cluster_input("", "PersistentVolume", &relabelled, &config)
    };
    let outcome = run(&request);
    assert!(outcome.is_allowed());
    assert_eq!(outcome.reports[1].result, CheckResult::Unchanged);

    let delete = pv(json!({"persistentVolumeReclaimPolicy": "Delete"}));
    let request = PolicyInput {
        operation: Operation::Update,
        old_object: Some(leak(&delete)),
        ..cluster_input("", "PersistentVolume", &retain, &config)
    };
    assert!(!run(&request).is_allowed());

    let request = PolicyInput {
        operation: Operation::Update,
        old_object: Some(leak(&retain)),
        ..cluster_input("", "PersistentVolume", &delete, &config)
    };
    assert!(run(&request).is_allowed());
}

#[test]
fn storage_class_reclaim_policy() {
    let config = config();
    let sc = |reclaim: Option<&str>| {
        let mut sc = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "fast"}, "provisioner": "csi.example.com"});
        if let Some(reclaim) = reclaim {
            sc["reclaimPolicy"] = json!(reclaim);
        }
        sc
    };
    for (reclaim, allowed) in [
        (None, true),
        (Some("Delete"), true),
        (Some("Retain"), false),
    ] {
        let object = sc(reclaim);
        let outcome = run(&cluster_input(
            "storage.k8s.io",
            "StorageClass",
            &object,
            &config,
        ));
        assert_eq!(outcome.is_allowed(), allowed, "{reclaim:?}");
        assert_eq!(outcome.reports.len(), 1);
    }
    let object = sc(Some("Retain"));
    let outcome = run(&cluster_input(
        "storage.k8s.io",
        "StorageClass",
        &object,
        &config,
    ));
    assert_eq!(
        outcome.denial_message(),
        Some(
            "StorageClass \"fast\" refused by canopy: reclaimPolicy is Retain \
             (cluster policy requires Delete); set reclaimPolicy to Delete"
        )
    );

    // The field is immutable, so updates see it unchanged.
    let mut annotated = object.clone();
    annotated["metadata"]["annotations"] =
        json!({"storageclass.kubernetes.io/is-default-class": "true"});
    let request = PolicyInput {
        operation: Operation::Update,
        old_object: Some(leak(&object)),
        ..cluster_input("storage.k8s.io", "StorageClass", &annotated, &config)
    };
    assert!(run(&request).is_allowed());
}

#[test]
fn reclaim_policy_ignores_the_namespace_scope() {
    // Even if a caller passes a namespace for a cluster-scoped object, it does not count.
    let config = config();
    let object = pv(json!({}));
    let request = PolicyInput {
        namespace: Some(NamespaceContext {
            excluded: true,
            ..tenant_ns("kube-system")
        }),
        ..cluster_input("", "PersistentVolume", &object, &config)
    };
    assert!(!run(&request).is_allowed());
}

#[test]
fn malformed_objects_are_errors() {
    let config = config();
    let cases = [
        ("", "Pod", json!({"spec": {"containers": "app"}})),
        ("", "Pod", json!("pod")),
        ("apps", "Deployment", json!({"spec": {"template": {}}})),
        ("batch", "CronJob", json!({"spec": {"jobTemplate": []}})),
        (
            "",
            "PodTemplate",
            json!({"template": {"spec": {"containers": [{"name": 1}]}}}),
        ),
        ("", "PersistentVolume", json!({"spec": []})),
        ("", "PersistentVolume", json!({"metadata": {}})),
        (
            "storage.k8s.io",
            "StorageClass",
            json!({"reclaimPolicy": 1}),
        ),
        ("storage.k8s.io", "StorageClass", json!(null)),
    ];
    for (group, kind, object) in &cases {
        let request = cluster_input(group, kind, object, &config);
        let request =
            if ObjectKind::from_group_kind(group, kind).is_some_and(ObjectKind::is_namespaced) {
                PolicyInput {
                    namespace: Some(tenant_ns("acme-dev")),
                    ..request
                }
            } else {
                request
            };
        let err = evaluate(&request).expect_err(kind);
        assert!(err.to_string().contains(kind), "{err}");
    }

    let object = good_pod();
    let request = PolicyInput {
        object: None,
        ..input("", "Pod", &object, &config)
    };
    assert!(matches!(
        evaluate(&request),
        Err(PolicyError::MissingObject { kind: "Pod" })
    ));
    let request = cluster_input("", "Pod", &object, &config);
    assert!(matches!(
        evaluate(&request),
        Err(PolicyError::MissingNamespace { kind: "Pod" })
    ));
}

/// A small deterministic generator (splitmix64), so the property test needs no crate and
/// fails the same way every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Keys and strings the policies read, so random objects often get deep into the checks.
const KEYS: &[&str] = &[
    "spec",
    "template",
    "jobTemplate",
    "containers",
    "initContainers",
    "ephemeralContainers",
    "volumes",
    "hostPath",
    "resources",
    "requests",
    "limits",
    "name",
    "restartPolicy",
    "persistentVolumeReclaimPolicy",
    "reclaimPolicy",
    "metadata",
    "generateName",
    "path",
    "cpu",
    "memory",
    "image",
    "emptyDir",
];
const STRINGS: &[&str] = &[
    "",
    "Always",
    "Delete",
    "Retain",
    "cpu",
    "memory",
    "1",
    "100m",
    "app",
    "/",
    "\u{0}\n\"",
];

fn arbitrary(rng: &mut Rng, depth: usize) -> Value {
    let choice = if depth == 0 {
        rng.below(5)
    } else {
        rng.below(8)
    };
    match choice {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => match rng.below(3) {
            0 => json!(rng.next() as i64),
            1 => json!(f64::from(rng.next() as u32) / 7.0),
            _ => json!(rng.below(3)),
        },
        3 | 4 => Value::String((*rng.pick(STRINGS)).to_owned()),
        5 => Value::Array(
            (0..rng.below(4))
                .map(|_| arbitrary(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut map = serde_json::Map::new();
            for _ in 0..rng.below(5) {
                map.insert((*rng.pick(KEYS)).to_owned(), arbitrary(rng, depth - 1));
            }
            Value::Object(map)
        }
    }
}

/// Replaces one random node of a valid object with an arbitrary value: nearly-valid input
/// reaches further than pure noise.
fn mutate(rng: &mut Rng, value: &mut Value) {
    let children = match value {
        Value::Object(map) => map.len(),
        Value::Array(items) => items.len(),
        _ => 0,
    };
    if children == 0 || rng.below(4) == 0 {
        *value = arbitrary(rng, 3);
        return;
    }
    let index = rng.below(children);
    let child = match value {
        Value::Object(map) => map.values_mut().nth(index),
        Value::Array(items) => items.get_mut(index),
        _ => None,
    };
    if let Some(child) = child {
        mutate(rng, child);
    }
}

#[test]
fn arbitrary_json_never_panics() {
    let kinds = [
        ("", "Pod"),
        ("apps", "Deployment"),
        ("batch", "CronJob"),
        ("", "PodTemplate"),
        ("", "PersistentVolume"),
        ("storage.k8s.io", "StorageClass"),
        ("apps", "StatefulSet"),
        ("", "Service"),
        ("", "PersistentVolumeClaim"),
    ];
    // Every guardrail on, so their readers see the arbitrary objects too.
    let rails: crate::api::TenantSpec = serde_json::from_value(json!({
        "runtimeClasses": {"allowed": ["gvisor"]},
        "nodeSelector": {"pool": "acme"},
        "storageClasses": {"allowed": ["fast"]},
        "serviceTypes": {"allowed": ["ClusterIP"]},
        "externalIPs": {"allowed": ["10.0.0.0/8"]},
        "imageRegistries": {"allowed": ["registry.example.com/"]},
        "priorityClasses": {"allowed": ["low"]},
    }))
    .expect("a valid Tenant spec");
    let fixtures = [
        good_pod(),
        pod_without_memory_limit(),
        bad_deployment(),
        pv(json!({"hostPath": {"path": "/"}})),
        json!({"metadata": {"name": "sc"}, "reclaimPolicy": "Retain"}),
        json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}}}),
        json!({"spec": {"type": "NodePort", "externalIPs": ["1.2.3.4"], "ports": [{"port": 80}]}}),
        json!({"spec": {"storageClassName": "slow", "accessModes": ["ReadWriteOnce"]}}),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}},
            "volumeClaimTemplates": [{"spec": {"storageClassName": "slow"}}]}}),
    ];
    let limit_ranges = [LimitRange::default()];
    let mut rng = Rng(0x00c0_ffee);
    let mut outcomes = [0usize; 3];
    for round in 0..20_000 {
        let mut object = if round % 2 == 0 {
            arbitrary(&mut rng, 6)
        } else {
            rng.pick(&fixtures).clone()
        };
        if round % 2 == 1 {
            mutate(&mut rng, &mut object);
        }
        let mut old = rng.pick(&fixtures).clone();
        mutate(&mut rng, &mut old);
        let &(group, kind) = rng.pick(&kinds);
        let mut config = config();
        config.scope = PolicyScope::AllNamespaces;
        config.host_path = *rng.pick(&[PolicyMode::Enforce, PolicyMode::Warn, PolicyMode::Off]);
        config.resources = *rng.pick(&[PolicyMode::Enforce, PolicyMode::Warn]);
        let request = PolicyInput {
            group,
            kind,
            subresource: *rng.pick(&[None, Some("ephemeralcontainers")]),
            operation: *rng.pick(&[Operation::Create, Operation::Update]),
            object: Some(leak(&object)),
            old_object: Some(leak(&old)),
            namespace: Some(NamespaceContext {
                limit_ranges: &limit_ranges,
                ..if round % 3 == 0 {
                    railed_ns(&rails, None)
                } else {
                    tenant_ns("acme-dev")
                }
            }),
            requester: alice(),
            config: &config,
        };
        match evaluate(&request) {
            Err(err) => {
                assert!(!err.to_string().is_empty());
                outcomes[0] += 1;
            }
            Ok(outcome) => {
                // Denied exactly when an enforced policy found something.
                let enforced = outcome
                    .reports
                    .iter()
                    .any(|r| r.mode.mode == PolicyMode::Enforce && !r.violations().is_empty());
                assert_eq!(!outcome.is_allowed(), enforced);
                if let Some(message) = outcome.denial_message() {
                    assert!(message.contains(" refused by canopy: "));
                    assert!(!message.contains('\n'), "{message}");
                }
                outcomes[if outcome.is_allowed() { 1 } else { 2 }] += 1;
            }
        }
    }
    // The generator must reach every kind of answer, or the test proves little.
    assert!(outcomes.iter().all(|&n| n > 100), "{outcomes:?}");
}

fn rails_spec() -> crate::api::TenantSpec {
    serde_json::from_value(json!({
        "runtimeClasses": {"allowed": ["gvisor", "kata"], "default": "gvisor"},
        "nodeSelector": {"pool": "acme"},
        "imageRegistries": {"allowed": ["registry.example.com/acme/"]},
        "serviceTypes": {"allowed": ["ClusterIP"]},
    }))
    .expect("a valid Tenant spec")
}

fn railed_ns<'a>(
    spec: &'a crate::api::TenantSpec,
    policies: Option<&'a TenantPolicies>,
) -> NamespaceContext<'a> {
    NamespaceContext {
        tenant: Some(TenantContext {
            name: "acme",
            policies,
            guardrails: Guardrails::of(spec, None),
        }),
        ..tenant_ns("acme-dev")
    }
}

#[test]
fn guardrails_refuse_with_one_message_naming_fields_reasons_and_fixes() {
    let config = config();
    let spec = rails_spec();
    let object = good_pod();
    let request = PolicyInput {
        namespace: Some(railed_ns(&spec, None)),
        ..input("", "Pod", &object, &config)
    };
    let outcome = run(&request);
    assert_eq!(
        results(&outcome),
        [
            (Policy::HostPath, "passed"),
            (Policy::Resources, "passed"),
            (Policy::Guardrails, "violated")
        ]
    );
    assert_eq!(
        outcome.denial_message(),
        Some(
            "Pod \"web\" refused by canopy: spec.runtimeClassName is unset \
             (tenant acme allows runtime classes \"gvisor\", \"kata\"); \
             set spec.runtimeClassName to \"gvisor\"; \
             spec.nodeSelector does not select pool (tenant acme runs Pods only on nodes labelled pool=acme); \
             set spec.nodeSelector.pool to \"acme\"; \
             container \"app\" at spec.containers[0] uses image \"nginx\" \
             (tenant acme allows images from \"registry.example.com/acme/\"); \
             use an image that starts with \"registry.example.com/acme/\""
        )
    );
    // A compliant Pod passes.
    let mut compliant = good_pod();
    compliant["spec"]["runtimeClassName"] = json!("kata");
    compliant["spec"]["nodeSelector"] = json!({"pool": "acme"});
    compliant["spec"]["containers"][0]["image"] = json!("registry.example.com/acme/web:1");
    let request = PolicyInput {
        object: Some(leak(&compliant)),
        ..request
    };
    assert!(run(&request).is_allowed());
}

#[test]
fn guardrails_warn_skip_exempt_requesters_and_only_cover_tenants_that_set_them() {
    let config = config();
    let spec = rails_spec();
    let object = good_pod();
    let policies = TenantPolicies {
        guardrails: Some(PolicyMode::Warn),
        ..TenantPolicies::default()
    };
    let request = PolicyInput {
        namespace: Some(railed_ns(&spec, Some(&policies))),
        ..input("", "Pod", &object, &config)
    };
    let outcome = run(&request);
    assert!(outcome.is_allowed());
    assert!(
        outcome.warnings[0]
            .starts_with("Pod \"web\" would be refused by canopy: spec.runtimeClassName"),
        "{:?}",
        outcome.warnings
    );
    assert_eq!(outcome.reports[2].mode.source, ModeSource::Tenant);
    // An exempt user is not checked.
    let request = PolicyInput {
        namespace: Some(railed_ns(&spec, None)),
        requester: Requester {
            username: "ci-bot",
            groups: NO_GROUPS,
        },
        ..input("", "Pod", &object, &config)
    };
    let outcome = run(&request);
    assert!(outcome.is_allowed());
    assert_eq!(outcome.reports[2].result, CheckResult::Skipped);
    // A tenant without guardrails has no guardrails report for its Pods.
    let outcome = run(&input("", "Pod", &object, &config));
    assert!(
        outcome
            .reports
            .iter()
            .all(|r| r.policy != Policy::Guardrails)
    );
}

#[test]
fn an_ephemeral_container_answers_only_for_itself() {
    let config = config();
    let spec = rails_spec();
    // A Pod from before the guardrails: no runtime class, no selector.
    let mut old = good_pod();
    old["spec"]["containers"][0]["image"] = json!("registry.example.com/acme/web");
    let mut debugged = old.clone();
    debugged["spec"]["ephemeralContainers"] =
        json!([{"name": "debug", "image": "registry.example.com/acme/toolbox"}]);
    let request = PolicyInput {
        subresource: Some("ephemeralcontainers"),
        operation: Operation::Update,
        old_object: Some(leak(&old)),
        namespace: Some(railed_ns(&spec, None)),
        ..input("", "Pod", &debugged, &config)
    };
    assert!(run(&request).is_allowed());
    let mut foreign = old.clone();
    foreign["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox"}]);
    let request = PolicyInput {
        object: Some(leak(&foreign)),
        ..request
    };
    let outcome = run(&request);
    let message = outcome.denial_message().expect("refused");
    assert!(
        message.contains(
            "ephemeral container \"debug\" at spec.ephemeralContainers[0] uses image \"busybox\""
        ),
        "{message}"
    );
    assert!(!message.contains("runtimeClassName"), "{message}");
}

#[test]
fn services_are_judged_on_what_changed() {
    let config = config();
    let spec = rails_spec();
    let node_port = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
    let request = PolicyInput {
        namespace: Some(railed_ns(&spec, None)),
        ..input("", "Service", &node_port, &config)
    };
    assert_eq!(
        run(&request).denial_message(),
        Some(
            "Service \"web\" refused by canopy: spec.type is \"NodePort\" \
             (tenant acme allows Service types \"ClusterIP\"); set spec.type to \"ClusterIP\""
        )
    );
    // A NodePort Service from before the guardrail may still be labelled...
    let mut labelled = node_port.clone();
    labelled["metadata"]["labels"] = json!({"tier": "front"});
    let update = PolicyInput {
        operation: Operation::Update,
        object: Some(leak(&labelled)),
        old_object: Some(leak(&node_port)),
        ..request
    };
    let outcome = run(&update);
    assert!(outcome.is_allowed());
    assert_eq!(outcome.reports[0].result, CheckResult::Unchanged);
    // ...but not given an external IP.
    let mut external = node_port.clone();
    external["spec"]["externalIPs"] = json!(["198.51.100.1"]);
    let update = PolicyInput {
        object: Some(leak(&external)),
        ..update
    };
    let message = run(&update).denial_message().map(str::to_owned);
    assert_eq!(
        message.as_deref(),
        Some(
            "Service \"web\" refused by canopy: spec.externalIPs[0] is \"198.51.100.1\" \
             (tenant acme allows no external IPs); remove it"
        )
    );
    // Services outside every tenant are not the guardrails' business.
    let plain = PolicyInput {
        namespace: Some(NamespaceContext {
            tenant: None,
            ..tenant_ns("plain")
        }),
        ..input("", "Service", &external, &config)
    };
    assert!(run(&plain).reports.is_empty());
}

#[test]
fn a_stateful_set_answers_for_the_claims_it_will_make() {
    let config = config();
    let spec: crate::api::TenantSpec =
        serde_json::from_value(json!({"storageClasses": {"allowed": ["fast"]}}))
            .expect("a valid Tenant spec");
    let stateful_set = |class: &str| {
        json!({"metadata": {"name": "db"}, "spec": {
            "template": {"spec": {"containers": [{"name": "db", "image": "x", "resources": full()}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"storageClassName": class}}]}})
    };
    let slow = stateful_set("slow");
    let request = PolicyInput {
        namespace: Some(railed_ns(&spec, None)),
        ..input("apps", "StatefulSet", &slow, &config)
    };
    assert_eq!(
        run(&request).denial_message(),
        Some(
            "StatefulSet \"db\" refused by canopy: spec.volumeClaimTemplates[0].spec.storageClassName \
             is \"slow\" (tenant acme allows storage classes \"fast\"); \
             set spec.volumeClaimTemplates[0].spec.storageClassName to \"fast\""
        )
    );
    let fast = stateful_set("fast");
    let request = PolicyInput {
        object: Some(leak(&fast)),
        ..request
    };
    assert!(run(&request).is_allowed());
}
