//! Tenant isolation that holds: three ways around the admission policies, each performed as
//! an attacker would (a tenant owner, or a cluster admin with canopy's default
//! configuration), refused with the right message, and next to it the legitimate operation
//! on the same path admitted, so a refusal for the wrong reason cannot pass.
//!
//! 1. Zero is not a limit: `limits: {cpu: "0", memory: "0"}` is no limit at run time.
//! 2. Node storage by another name: a `local` PersistentVolume is a node's disk, as
//!    hostPath is.
//! 3. A default that switched the policies off: `system:masters` is no longer exempt, and
//!    nothing the system's own controllers do in tenant namespaces or to volumes is refused.
//!
//! The binary runs with the default CanopyConfiguration (`spec: {}`): no exemptions. Tests
//! that need one add an identity that no other test uses, so they cannot loosen the others.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::tenants::{as_owner, owner_flags};
use common::{
    Kubectl, apply, cluster_with_canopy, eventually, json, kubectl, kubectl_with_stdin, unique,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
/// A local-volume provisioner's identity, exempted by `local_volumes_...` only.
const PROVISIONER: &str = "system:serviceaccount:local-storage:provisioner";
/// The break-glass group, exempted by `a_cluster_admin_...` only.
const BREAK_GLASS: &str = "canopy:break-glass";

fn setup() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        cluster_with_canopy();
        let out = apply(
            r#"
apiVersion: canopy.dev/v1alpha1
kind: CanopyConfiguration
metadata: {name: config}
spec: {}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: iso-provisioner}
rules:
- apiGroups: [""]
  resources: [persistentvolumes]
  verbs: [get, list, create, update, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: iso-provisioner}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: iso-provisioner}
subjects:
- {kind: ServiceAccount, namespace: local-storage, name: provisioner}
"#,
        );
        assert!(out.success, "configuration: {}", out.stderr);
    });
}

/// A Tenant owned by the group `<name>-admins`, with a LimitRange when `limit_range`; waits
/// until its owner `<name>-bob` is admin in the root and canopy checks workloads there.
fn tenant(prefix: &str, limit_range: bool) -> String {
    setup();
    let name = unique(prefix);
    let limits = if limit_range {
        "  limitRange:\n    limits:\n    - type: Container\n      \
         default: {cpu: 500m, memory: 256Mi}\n      defaultRequest: {cpu: 100m, memory: 128Mi}\n"
    } else {
        ""
    };
    // Pod Security `baseline` would refuse hostPath Pods before canopy's webhook is
    // called; these tests are about canopy's own policies, so the tenant's level is
    // `privileged` (tests/isolation.rs covers Pod Security).
    let out = apply(&format!(
        "apiVersion: canopy.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {name}}}\nspec:\n  \
         podSecurity: privileged\n  owners: [{{kind: Group, name: {name}-admins}}]\n{limits}"
    ));
    assert!(out.success, "Tenant {name}: {}", out.stderr);
    eventually(
        &format!("the owner of {name} to be admin there"),
        WAIT,
        || {
            let out = as_owner(&name, &["auth", "can-i", "create", "pods", "-n", &name]);
            (out.stdout.trim() == "yes").then_some(())
        },
    );
    // The webhook learns the namespace's tenant from its Forest: wait until it checks.
    eventually(&format!("workloads in {name} to be checked"), WAIT, || {
        let out = owner_apply(&name, &["--dry-run=server"], &pod("probe", "", HOST_PATH));
        out.stderr.contains("refused by canopy").then_some(())
    });
    if limit_range {
        eventually("the tenant's LimitRange", WAIT, || {
            json(&[
                "get",
                "limitrange",
                "canopy-limits",
                "-n",
                &name,
                "-o",
                "json",
            ])
        });
    }
    name
}

/// `kubectl apply <extra> -n <tenant> -f -` as the tenant's owner.
fn owner_apply(tenant: &str, extra: &[&str], yaml: &str) -> Kubectl {
    let who = owner_flags(tenant);
    let mut all: Vec<&str> = who.iter().map(String::as_str).collect();
    all.extend_from_slice(&["-n", tenant, "apply"]);
    all.extend_from_slice(extra);
    all.extend_from_slice(&["-f", "-"]);
    kubectl_with_stdin(&all, Some(yaml))
}

/// `kubectl <who...> apply <extra> [-n ns] -f -` with `yaml`.
fn apply_as(who: &[&str], ns: Option<&str>, extra: &[&str], yaml: &str) -> Kubectl {
    let mut all: Vec<&str> = who.to_vec();
    if let Some(ns) = ns {
        all.extend_from_slice(&["-n", ns]);
    }
    all.push("apply");
    all.extend_from_slice(extra);
    all.extend_from_slice(&["-f", "-"]);
    kubectl_with_stdin(&all, Some(yaml))
}

/// The cluster admin of the test cluster: a client certificate in `system:masters`.
const ADMIN: &[&str] = &[];
const DRY_RUN: &[&str] = &["--dry-run=server"];
const REAL: &[&str] = &[];

#[track_caller]
fn refused(out: &Kubectl, expected: &[&str]) -> String {
    assert!(
        !out.success,
        "admitted, but should be refused: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("denied the request") && out.stderr.contains("refused by canopy"),
        "not refused by canopy's webhook: {}",
        out.stderr
    );
    for text in expected {
        assert!(
            out.stderr.contains(text),
            "{text:?} missing from: {}",
            out.stderr
        );
    }
    out.stderr.clone()
}

#[track_caller]
fn admitted(out: &Kubectl) {
    assert!(
        out.success,
        "refused, but should be admitted: {}",
        out.stderr
    );
}

const HOST_PATH: &str = "[{name: node, hostPath: {path: /}}]";
const NO_VOLUMES: &str = "[]";
const RESOURCES: &str = "{requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 64Mi}}";

fn pod_spec(resources: &str, volumes: &str) -> String {
    let resources = if resources.is_empty() {
        String::new()
    } else {
        format!(", resources: {resources}")
    };
    format!(
        "{{containers: [{{name: app, image: registry.k8s.io/pause:3.10{resources}}}], volumes: {volumes}}}"
    )
}

fn pod(name: &str, resources: &str, volumes: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {}\n",
        pod_spec(resources, volumes)
    )
}

fn deployment(name: &str, replicas: u32, resources: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  \
         replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    \
         metadata: {{labels: {{app: {name}}}}}\n    spec: {}\n",
        pod_spec(resources, NO_VOLUMES)
    )
}

fn persistent_volume(name: &str, policy: &str, source: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {name}}}\nspec:\n  \
         capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n  storageClassName: \"\"\n  \
         persistentVolumeReclaimPolicy: {policy}\n{source}"
    )
}

/// A `local` source at `path` (the API requires node affinity with it).
fn local(path: &str) -> String {
    format!(
        "  local: {{path: {path}}}\n  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n      \
         - matchExpressions:\n        - {{key: kubernetes.io/hostname, operator: In, values: [node-1]}}\n"
    )
}

const CSI: &str = "  csi: {driver: disk.example.com, volumeHandle: v1}\n";
const NFS: &str = "  nfs: {server: nfs.example.com, path: /exports/data}\n";

fn claim(name: &str, volume: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n  \
         accessModes: [ReadWriteOnce]\n  storageClassName: \"\"\n  volumeName: {volume}\n  \
         resources: {{requests: {{storage: 1Gi}}}}\n"
    )
}

fn storage_class(name: &str, policy: &str) -> String {
    format!(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: {name}}}\n\
         provisioner: disk.example.com\nreclaimPolicy: {policy}\n"
    )
}

/// Waits until the volume is bound: the PV controller (kube-controller-manager, not exempt)
/// has written the claim into the volume's `spec.claimRef` through canopy's webhook.
fn wait_bound(pv: &str) {
    eventually(&format!("PersistentVolume {pv} to be Bound"), WAIT, || {
        let v = json(&["get", "pv", pv, "-o", "json"])?;
        (v["status"]["phase"] == "Bound").then_some(())
    });
}

fn delete_volume(pv: &str) {
    let _ = kubectl(&["delete", "pv", pv, "--wait=false"]);
}

// ---- 1. Zero is not a limit ----

#[test]
fn zero_is_not_a_limit() {
    let t = tenant("zero", false);
    let positive = "a required resource needs a positive quantity";

    // The attack: limits of zero, which the apiserver copies into the requests.
    let zero = pod("zero", "{limits: {cpu: \"0\", memory: \"0\"}}", NO_VOLUMES);
    let expected = [
        "Pod \"zero\" refused by canopy: container \"app\" at spec.containers[0] has \
         requests.cpu of \"0\", limits.cpu of \"0\", requests.memory of \"0\", limits.memory of \"0\"",
        positive,
        "set resources.requests.cpu, resources.limits.cpu, resources.requests.memory, \
         resources.limits.memory to positive values",
    ];
    refused(&owner_apply(&t, REAL, &zero), &expected);
    refused(&owner_apply(&t, DRY_RUN, &zero), &expected);

    // Any spelling of zero (the apiserver sends it canonical), and zero requests under
    // positive limits.
    for spelling in ["0m", "0Gi", "0.0", "0e3", "0.000Ki"] {
        // No memory request: the apiserver refuses one above a zero limit, and copies the
        // zero limit into it.
        let yaml = pod(
            "spelled",
            &format!("{{requests: {{cpu: 10m}}, limits: {{cpu: 100m, memory: \"{spelling}\"}}}}"),
            NO_VOLUMES,
        );
        refused(
            &owner_apply(&t, DRY_RUN, &yaml),
            &[
                "has requests.memory of \"0\", limits.memory of \"0\"",
                positive,
                "set resources.requests.memory, resources.limits.memory to positive values",
            ],
        );
    }
    let zero_requests = pod(
        "zero-requests",
        "{requests: {cpu: \"0\", memory: \"0\"}, limits: {cpu: 100m, memory: 64Mi}}",
        NO_VOLUMES,
    );
    let message = refused(
        &owner_apply(&t, DRY_RUN, &zero_requests),
        &[
            "has requests.cpu of \"0\", requests.memory of \"0\"",
            positive,
        ],
    );
    assert!(!message.contains("limits.cpu of"), "{message}");
    // A negative quantity never gets this far: the apiserver's validation refuses it.
    let negative = pod(
        "negative",
        "{limits: {cpu: \"-1\", memory: 64Mi}}",
        NO_VOLUMES,
    );
    let out = owner_apply(&t, DRY_RUN, &negative);
    assert!(!out.success, "a negative limit was admitted");

    // A template: a zero limit without a request will be a zero request too.
    let template = deployment("zero", 1, "{limits: {cpu: \"0\", memory: 64Mi}}");
    refused(
        &owner_apply(&t, REAL, &template),
        &[
            "container \"app\" at spec.template.spec.containers[0] has requests.cpu of \"0\", limits.cpu of \"0\"",
            positive,
        ],
    );

    // Pod-level resources of zero.
    let pod_level = "apiVersion: v1\nkind: Pod\nmetadata: {name: pod-level}\nspec:\n  \
         resources: {limits: {cpu: \"0\", memory: \"0\"}}\n  \
         containers: [{name: app, image: registry.k8s.io/pause:3.10}]\n";
    refused(
        &owner_apply(&t, DRY_RUN, pod_level),
        &[
            "pod-level resources at spec.resources has requests.cpu of \"0\"",
            "limits.memory of \"0\"",
            "set spec.resources.requests.cpu",
        ],
    );

    // The legitimate operations on the same path: positive quantities are admitted.
    admitted(&owner_apply(
        &t,
        REAL,
        &pod("positive", RESOURCES, NO_VOLUMES),
    ));
    admitted(&owner_apply(
        &t,
        DRY_RUN,
        &pod(
            "limits-only",
            "{limits: {cpu: 100m, memory: 64Mi}}",
            NO_VOLUMES,
        ),
    ));
    admitted(&owner_apply(
        &t,
        REAL,
        &deployment("positive", 0, RESOURCES),
    ));
    let pod_level_positive =
        pod_level.replace("{cpu: \"0\", memory: \"0\"}", "{cpu: 100m, memory: 64Mi}");
    admitted(&owner_apply(&t, DRY_RUN, &pod_level_positive));
}

/// `kubectl patch pod <name> --subresource resize`, as the cluster admin: the `admin` role
/// that owners get does not grant `pods/resize` (1.36), but any role that does, and any
/// non-exempt admin, could otherwise resize a checked Pod to zero.
fn resize(tenant: &str, pod: &str, resources: &str) -> Kubectl {
    let patch =
        format!(r#"{{"spec":{{"containers":[{{"name":"app","resources":{resources}}}]}}}}"#);
    kubectl(&[
        "patch",
        "pod",
        pod,
        "-n",
        tenant,
        "--subresource",
        "resize",
        "-p",
        &patch,
    ])
}

#[test]
fn zero_limits_cannot_be_resized_in() {
    let t = tenant("iso-resize", false);
    // A Burstable Pod (requests below limits), admitted.
    let burstable = "{requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 64Mi}}";
    admitted(&owner_apply(&t, REAL, &pod("web", burstable, NO_VOLUMES)));
    // The attack: resize the memory request and limit to zero through `pods/resize`, which
    // the apiserver allows (the QoS class stays Burstable, by the cpu request), leaving
    // memory unbounded.
    let zero = r#"{"requests":{"cpu":"10m","memory":"0"},"limits":{"cpu":"100m","memory":"0"}}"#;
    refused(
        &resize(&t, "web", zero),
        &[
            "has requests.memory of \"0\", limits.memory of \"0\"",
            "a required resource needs a positive quantity",
        ],
    );
    // The legitimate resize on the same path: positive quantities.
    let bigger =
        r#"{"requests":{"cpu":"20m","memory":"32Mi"},"limits":{"cpu":"200m","memory":"64Mi"}}"#;
    admitted(&resize(&t, "web", bigger));
}

// ---- 2. Node storage by another name ----

#[test]
fn local_volumes_are_node_storage() {
    setup();
    let storage_class = "StorageClass with a dynamic provisioner";
    // The attack, as a cluster admin with the default configuration: the node's root
    // filesystem as a PersistentVolume that a tenant's claim could bind.
    let root = unique("iso-root");
    let local_root = persistent_volume(&root, "Delete", &local("/"));
    for extra in [DRY_RUN, REAL] {
        let message = refused(
            &apply_as(ADMIN, None, extra, &local_root),
            &[
                &format!(
                    "PersistentVolume \"{root}\" refused by canopy: spec.local is node storage"
                ),
                storage_class,
                "spec.policies.exemptions",
            ],
        );
        assert!(!message.contains("hostPath"), "{message}");
    }
    // hostPath volumes are refused the same way, and the fix no longer recommends local ones.
    let host = unique("iso-host");
    let message = refused(
        &apply_as(
            ADMIN,
            None,
            REAL,
            &persistent_volume(&host, "Delete", "  hostPath: {path: /}\n"),
        ),
        &["spec.hostPath is node storage", storage_class],
    );
    assert!(!message.contains("local"), "{message}");

    // The legitimate operations on the same path: network and CSI volumes are admitted.
    for (prefix, source) in [("iso-csi", CSI), ("iso-nfs", NFS)] {
        let name = unique(prefix);
        admitted(&apply_as(
            ADMIN,
            None,
            REAL,
            &persistent_volume(&name, "Delete", source),
        ));
        delete_volume(&name);
    }

    // A local-volume provisioner the admin trusts is exempted by its identity, and only it.
    let out = kubectl(&[
        "patch",
        "canopyconfiguration",
        "config",
        "--type",
        "merge",
        "-p",
        &format!(r#"{{"spec":{{"policies":{{"exemptions":{{"usernames":["{PROVISIONER}"]}}}}}}}}"#),
    ]);
    assert!(out.success, "exempting the provisioner: {}", out.stderr);
    let disk = unique("iso-disk");
    let local_disk = persistent_volume(&disk, "Delete", &local("/mnt/disks/ssd1"));
    let provisioner = ["--as", PROVISIONER];
    eventually("the provisioner's exemption to be in force", WAIT, || {
        apply_as(&provisioner, None, DRY_RUN, &local_disk)
            .success
            .then_some(())
    });
    admitted(&apply_as(&provisioner, None, REAL, &local_disk));
    // Still not the admin.
    refused(
        &apply_as(ADMIN, None, DRY_RUN, &local_root),
        &["spec.local is node storage"],
    );

    // A tenant claims the provisioned volume, and the PV controller binds it: its update of
    // spec.claimRef leaves spec.local as it was, so it is not refused.
    let t = tenant("iso-claim", false);
    admitted(&owner_apply(&t, REAL, &claim("data", &disk)));
    wait_bound(&disk);
    let _ = as_owner(&t, &["delete", "pvc", "data", "-n", &t, "--wait=false"]);
    delete_volume(&disk);
}

// ---- 3. No default exemption ----

#[test]
fn a_cluster_admin_is_not_exempt_by_default() {
    let t = tenant("iso-admin", false);
    // The stored configuration shows the default: no exemptions of any kind (other tests
    // of this binary add a username, never a group or a namespace).
    let config = json(&["get", "canopyconfiguration", "config", "-o", "json"]).expect("config");
    let exemptions = &config["spec"]["policies"]["exemptions"];
    assert_eq!(
        exemptions["groups"],
        Value::Array(Vec::new()),
        "{exemptions}"
    );
    assert_eq!(
        exemptions["namespaces"],
        Value::Array(Vec::new()),
        "{exemptions}"
    );

    // As a cluster admin (a client certificate in system:masters), in a tenant namespace.
    for extra in [DRY_RUN, REAL] {
        refused(
            &apply_as(ADMIN, Some(&t), extra, &pod("node", RESOURCES, HOST_PATH)),
            &[
                "volume \"node\" at spec.volumes[0] uses hostPath",
                &format!("forbidden in tenant {t}"),
            ],
        );
        refused(
            &apply_as(ADMIN, Some(&t), extra, &pod("bare", "", NO_VOLUMES)),
            &["container \"app\" at spec.containers[0] has no requests.cpu, limits.cpu"],
        );
        refused(
            &apply_as(
                ADMIN,
                None,
                extra,
                &persistent_volume(&unique("iso-retain"), "Retain", CSI),
            ),
            &["spec.persistentVolumeReclaimPolicy is Retain"],
        );
        refused(
            &apply_as(
                ADMIN,
                None,
                extra,
                &storage_class(&unique("iso-retain"), "Retain"),
            ),
            &["reclaimPolicy is Retain", "set reclaimPolicy to Delete"],
        );
    }
    // The same admin's legitimate requests on the same paths are admitted.
    admitted(&apply_as(
        ADMIN,
        Some(&t),
        REAL,
        &pod("ok", RESOURCES, NO_VOLUMES),
    ));
    let pv = unique("iso-delete");
    admitted(&apply_as(
        ADMIN,
        None,
        REAL,
        &persistent_volume(&pv, "Delete", CSI),
    ));
    delete_volume(&pv);
    let sc = unique("iso-delete");
    admitted(&apply_as(ADMIN, None, REAL, &storage_class(&sc, "Delete")));
    let _ = kubectl(&["delete", "storageclass", &sc]);

    // A break-glass group, once configured, exempts its members, and only them.
    let out = kubectl(&[
        "patch",
        "canopyconfiguration",
        "config",
        "--type",
        "merge",
        "-p",
        &format!(r#"{{"spec":{{"policies":{{"exemptions":{{"groups":["{BREAK_GLASS}"]}}}}}}}}"#),
    ]);
    assert!(out.success, "adding the break-glass group: {}", out.stderr);
    let glass = [
        "--as",
        "oncall",
        "--as-group",
        "system:masters",
        "--as-group",
        BREAK_GLASS,
    ];
    eventually("the break-glass group to be exempt", WAIT, || {
        apply_as(&glass, Some(&t), DRY_RUN, &pod("glass", "", HOST_PATH))
            .success
            .then_some(())
    });
    admitted(&apply_as(
        &glass,
        Some(&t),
        REAL,
        &pod("glass", "", HOST_PATH),
    ));
    refused(
        &apply_as(ADMIN, Some(&t), DRY_RUN, &pod("node", RESOURCES, HOST_PATH)),
        &["uses hostPath"],
    );
}

/// Pods of `tenant` whose first owner is a `kind`.
fn owned_pods(tenant: &str, kind: &str) -> usize {
    json(&["get", "pods", "-n", tenant, "-o", "json"])
        .and_then(|list| {
            list["items"].as_array().map(|items| {
                items
                    .iter()
                    .filter(|p| p["metadata"]["ownerReferences"][0]["kind"] == kind)
                    .count()
            })
        })
        .unwrap_or(0)
}

#[test]
fn what_the_system_does_in_tenant_namespaces_is_not_refused() {
    // A tenant whose LimitRange fills in resources, so templates without any are admitted
    // and the Pods made from them must be too.
    let t = tenant("iso-system", true);
    let job = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: once}}\nspec:\n  template:\n    \
         spec: {}\n",
        pod_spec(RESOURCES, NO_VOLUMES).replacen('{', "{restartPolicy: Never, ", 1)
    );
    let statefulset = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  \
         replicas: 1\n  serviceName: db\n  selector: {matchLabels: {app: db}}\n  template:\n    \
         metadata: {labels: {app: db}}\n    \
         spec: {containers: [{name: db, image: registry.k8s.io/pause:3.10}]}\n";
    for yaml in [
        deployment("defaults", 2, ""),
        deployment("explicit", 1, RESOURCES),
        job,
        statefulset.to_owned(),
    ] {
        admitted(&owner_apply(&t, REAL, &yaml));
    }
    // The ReplicaSet, Job and StatefulSet controllers create Pods from the checked
    // templates, as themselves (not exempt).
    eventually("the controllers' Pods", WAIT, || {
        (owned_pods(&t, "ReplicaSet") == 3
            && owned_pods(&t, "Job") == 1
            && owned_pods(&t, "StatefulSet") == 1)
            .then_some(())
    });
    // Scaling does not touch the pod spec, and the new Pod is admitted like the others.
    admitted(&as_owner(
        &t,
        &["scale", "deployment", "explicit", "--replicas=2", "-n", &t],
    ));
    eventually("the scaled-up Pod", WAIT, || {
        (owned_pods(&t, "ReplicaSet") == 4).then_some(())
    });
    // A claim on an admin's volume: the PV controller updates the volume (claimRef) and the
    // claim, and nothing of that is refused.
    let pv = unique("iso-bind");
    admitted(&apply_as(
        ADMIN,
        None,
        REAL,
        &persistent_volume(&pv, "Delete", CSI),
    ));
    admitted(&owner_apply(&t, REAL, &claim("data", &pv)));
    wait_bound(&pv);
    // No controller was turned away on the way.
    let events = json(&["get", "events", "-n", &t, "-o", "json"]).expect("events");
    let refusals: Vec<&Value> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("refused by canopy"))
        })
        .collect();
    assert!(
        refusals.is_empty(),
        "controllers were refused: {refusals:?}"
    );
    let _ = as_owner(&t, &["delete", "pvc", "data", "-n", &t, "--wait=false"]);
    delete_volume(&pv);
}
