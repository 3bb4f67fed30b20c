//! The admission policies end to end: real `kubectl apply` (and `--dry-run=server`) by an
//! impersonated non-admin user, through the real apiserver, to canopy's webhook server.
//!
//! The tests of this binary share one CanopyConfiguration (a cluster singleton), set once
//! by `setup()`: scope AllNamespaces, every policy Enforce, one excluded namespace, one
//! exempt namespace, one exempt user and one exempt (break-glass) group.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::{Kubectl, apply, cluster_with_canopy, eventually, kubectl, kubectl_ok, unique};
use serde_json::Value;

const ALICE: &str = "alice";
/// Exempt by username in the shared configuration.
const EXEMPT_USER: &str = "exempt-user";
/// May create PersistentVolumes and StorageClasses, and is not exempt.
const STORAGE_ADMIN: &str = "storage-admin";
/// Exempt by group in the shared configuration (no group is exempt by default).
const BREAK_GLASS: &str = "canopy:break-glass";
/// Excluded and exempt namespaces of the shared configuration (one cluster per test binary,
/// so fixed names do not collide).
const EXCLUDED_NS: &str = "adm-excluded";
const EXEMPT_NS: &str = "adm-exempt";
const CANOPY: &str = "system:serviceaccount:canopy-system:canopy";
const WAIT: Duration = Duration::from_secs(30);

fn setup() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        cluster_with_canopy();
        let out = apply(&format!(
            r#"
apiVersion: canopy.dev/v1alpha1
kind: CanopyConfiguration
metadata: {{name: config}}
spec:
  excludedNamespaces: [kube-system, kube-public, kube-node-lease, canopy-system, {EXCLUDED_NS}]
  policies:
    scope: AllNamespaces
    hostPath: Enforce
    resources: Enforce
    reclaimPolicy: Enforce
    requiredResources: [cpu, memory]
    exemptions: {{usernames: [{EXEMPT_USER}], groups: [{BREAK_GLASS}], namespaces: [{EXEMPT_NS}]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: adm-storage}}
rules:
- apiGroups: [""]
  resources: [persistentvolumes]
  verbs: [get, list, create, update, patch, delete]
- apiGroups: [storage.k8s.io]
  resources: [storageclasses]
  verbs: [get, list, create, update, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: adm-storage}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: adm-storage}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {STORAGE_ADMIN}}}
"#
        ));
        assert!(out.success, "shared configuration: {}", out.stderr);
        // The webhook reads the configuration from its watcher: wait until it is in force
        // (a namespace of no tenant is only checked with scope AllNamespaces).
        let ns = team_namespace("probe");
        eventually("the shared configuration to be in force", WAIT, || {
            let out = as_user(
                ALICE,
                &ns,
                &["apply", "--dry-run=server"],
                &pod("p", "", HOST_PATH),
            );
            out.stderr.contains("refused by canopy").then_some(())
        });
    });
}

/// A namespace where alice (and the exempt user) are namespace admins.
fn team_namespace(prefix: &str) -> String {
    let ns = unique(&format!("adm-{prefix}"));
    create_namespace(&ns);
    ns
}

fn create_namespace(ns: &str) {
    let out = apply(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: team-admins, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {ALICE}}}
- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {EXEMPT_USER}}}
"#
    ));
    assert!(out.success, "namespace {ns}: {}", out.stderr);
    // RBAC reaches the authorizer's cache asynchronously.
    eventually(&format!("alice to be admin in {ns}"), WAIT, || {
        let out = kubectl(&["--as", ALICE, "auth", "can-i", "create", "pods", "-n", ns]);
        (out.stdout.trim() == "yes").then_some(())
    });
}

/// `kubectl --as <user> -n <ns> <verb...> -f -` with `yaml` on stdin.
fn as_user(user: &str, ns: &str, verb: &[&str], yaml: &str) -> Kubectl {
    let mut args = vec!["--as", user, "-n", ns];
    args.extend_from_slice(verb);
    args.extend_from_slice(&["-f", "-"]);
    common::kubectl_with_stdin(&args, Some(yaml))
}

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

const HOST_PATH: &str = "[{name: node, hostPath: {path: /var/run}}]";
const NO_VOLUMES: &str = "[]";
const RESOURCES: &str = "{requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 64Mi}}";

/// A pod spec (flow YAML) with one container, `resources` (empty for none), `volumes`.
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

fn deployment(name: &str, resources: &str, volumes: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  \
         selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    \
         metadata: {{labels: {{app: {name}}}}}\n    spec: {}\n",
        pod_spec(resources, volumes)
    )
}

fn cronjob(name: &str, resources: &str, volumes: &str) -> String {
    let spec = pod_spec(resources, volumes).replacen('{', "{restartPolicy: Never, ", 1);
    format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: {name}}}\nspec:\n  \
         schedule: \"0 0 * * *\"\n  jobTemplate:\n    spec:\n      template:\n        \
         spec: {spec}\n"
    )
}

#[test]
fn host_path_is_refused_in_pods_deployments_and_cronjobs() {
    setup();
    let ns = team_namespace("hostpath");
    let fix = "remove it or use another volume type";
    for (yaml, field) in [
        (
            pod("web", RESOURCES, HOST_PATH),
            "Pod \"web\" refused by canopy: volume \"node\" at spec.volumes[0] uses hostPath",
        ),
        (
            deployment("web", RESOURCES, HOST_PATH),
            "spec.template.spec.volumes[0] uses hostPath",
        ),
        (
            cronjob("nightly", RESOURCES, HOST_PATH),
            "spec.jobTemplate.spec.template.spec.volumes[0] uses hostPath",
        ),
    ] {
        refused(&as_user(ALICE, &ns, &["apply"], &yaml), &[field, fix]);
        refused(
            &as_user(ALICE, &ns, &["apply", "--dry-run=server"], &yaml),
            &[field, fix],
        );
    }
}

#[test]
fn missing_resources_are_refused_in_pods_deployments_and_cronjobs() {
    setup();
    let ns = team_namespace("resources");
    let why = "(cluster policy requires requests and limits for cpu, memory)";
    for (yaml, field) in [
        (
            pod("web", "", NO_VOLUMES),
            "container \"app\" at spec.containers[0] has no requests.cpu",
        ),
        (
            deployment("web", "", NO_VOLUMES),
            "container \"app\" at spec.template.spec.containers[0] has no",
        ),
        (
            cronjob("nightly", "", NO_VOLUMES),
            "at spec.jobTemplate.spec.template.spec.containers[0] has no",
        ),
    ] {
        let fix = "resources.limits.memory";
        refused(&as_user(ALICE, &ns, &["apply"], &yaml), &[field, why, fix]);
        refused(
            &as_user(ALICE, &ns, &["apply", "--dry-run=server"], &yaml),
            &[field, why, fix],
        );
    }
    // Requests alone are not enough (limits alone are: the apiserver copies them into
    // the requests).
    let half = pod("half", "{requests: {cpu: 10m, memory: 16Mi}}", NO_VOLUMES);
    let message = refused(
        &as_user(ALICE, &ns, &["apply"], &half),
        &["has no limits.cpu, limits.memory"],
    );
    assert!(!message.contains("requests.cpu"), "{message}");
}

#[test]
fn one_refusal_lists_every_violation() {
    setup();
    let ns = team_namespace("all");
    let message = refused(
        &as_user(ALICE, &ns, &["apply"], &deployment("web", "", HOST_PATH)),
        &[
            "spec.template.spec.volumes[0] uses hostPath",
            "spec.template.spec.containers[0] has no",
        ],
    );
    assert_eq!(message.matches("refused by canopy").count(), 1, "{message}");
}

#[test]
fn reclaim_policy_and_host_path_are_refused_for_volumes_and_storage_classes() {
    setup();
    let pv = |name: &str, policy: &str, source: &str| {
        format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {name}}}\nspec:\n  \
             capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n{policy}  {source}\n"
        )
    };
    let csi = "csi: {driver: disk.example.com, volumeHandle: v1}";
    let retain = pv(
        &unique("pv-retain"),
        "  persistentVolumeReclaimPolicy: Retain\n",
        csi,
    );
    let fields = [
        "spec.persistentVolumeReclaimPolicy is Retain",
        "set spec.persistentVolumeReclaimPolicy to Delete",
    ];
    refused(
        &as_user(STORAGE_ADMIN, "default", &["apply"], &retain),
        &fields,
    );
    refused(
        &as_user(
            STORAGE_ADMIN,
            "default",
            &["apply", "--dry-run=server"],
            &retain,
        ),
        &fields,
    );
    // The apiserver defaults an unset policy to Retain before any webhook sees it.
    let unset = pv(&unique("pv-unset"), "", csi);
    refused(
        &as_user(STORAGE_ADMIN, "default", &["apply"], &unset),
        &["spec.persistentVolumeReclaimPolicy is Retain"],
    );
    let host = pv(
        &unique("pv-host"),
        "  persistentVolumeReclaimPolicy: Delete\n",
        "hostPath: {path: /srv}",
    );
    refused(
        &as_user(STORAGE_ADMIN, "default", &["apply"], &host),
        &[
            "spec.hostPath is node storage",
            "provision volumes through a StorageClass with a dynamic provisioner instead",
        ],
    );
    let good = unique("pv-good");
    admitted(&as_user(
        STORAGE_ADMIN,
        "default",
        &["apply"],
        &pv(&good, "  persistentVolumeReclaimPolicy: Delete\n", csi),
    ));
    kubectl_ok(&["delete", "pv", &good, "--wait=false"]);

    let sc = |name: &str, policy: &str| {
        format!(
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: {name}}}\n\
             provisioner: disk.example.com\nreclaimPolicy: {policy}\n"
        )
    };
    refused(
        &as_user(
            STORAGE_ADMIN,
            "default",
            &["apply"],
            &sc(&unique("sc-retain"), "Retain"),
        ),
        &[
            "StorageClass",
            "reclaimPolicy is Retain",
            "set reclaimPolicy to Delete",
        ],
    );
    let good = unique("sc-delete");
    admitted(&as_user(
        STORAGE_ADMIN,
        "default",
        &["apply"],
        &sc(&good, "Delete"),
    ));
    kubectl_ok(&["delete", "storageclass", &good]);
}

#[test]
fn compliant_workloads_are_admitted() {
    setup();
    let ns = team_namespace("ok");
    for yaml in [
        pod("web", RESOURCES, NO_VOLUMES),
        deployment("web", RESOURCES, "[{name: scratch, emptyDir: {}}]"),
        cronjob("nightly", RESOURCES, NO_VOLUMES),
    ] {
        admitted(&as_user(ALICE, &ns, &["apply", "--dry-run=server"], &yaml));
        admitted(&as_user(ALICE, &ns, &["apply"], &yaml));
    }
    // Changing a label of an admitted object is checked again and still passes.
    kubectl_ok(&[
        "--as",
        ALICE,
        "-n",
        &ns,
        "label",
        "deployment",
        "web",
        "tier=front",
    ]);
}

#[test]
fn a_limit_range_supplies_missing_resources() {
    setup();
    let ns = team_namespace("limits");
    let out = apply(&format!(
        r#"
apiVersion: v1
kind: LimitRange
metadata: {{name: defaults, namespace: {ns}}}
spec:
  limits:
  - type: Container
    default: {{cpu: 100m, memory: 64Mi}}
    defaultRequest: {{cpu: 10m, memory: 16Mi}}
"#
    ));
    assert!(out.success, "LimitRange: {}", out.stderr);
    // The Pod gets the defaults from the apiserver's LimitRanger before any webhook sees it.
    admitted(&as_user(
        ALICE,
        &ns,
        &["apply"],
        &pod("web", "", NO_VOLUMES),
    ));
    // A template counts them once canopy's LimitRange watcher has seen the LimitRange.
    eventually(
        "a Deployment without resources to be admitted",
        WAIT,
        || {
            as_user(ALICE, &ns, &["apply"], &deployment("web", "", NO_VOLUMES))
                .success
                .then_some(())
        },
    );
    // hostPath is still refused there.
    refused(
        &as_user(ALICE, &ns, &["apply"], &pod("node", "", HOST_PATH)),
        &["uses hostPath"],
    );
}

#[test]
fn warn_mode_admits_with_a_warning() {
    setup();
    let ns = team_namespace("warn");
    let tenant = unique("warned");
    let out = apply(&format!(
        r#"
apiVersion: canopy.dev/v1alpha1
kind: Tenant
metadata: {{name: {tenant}}}
spec:
  rootNamespace: {ns}
  policies: {{hostPath: Warn, resources: Enforce}}
  # Pod Security baseline refuses hostPath on its own; canopy's Warn is what is tested.
  podSecurity: privileged
"#
    ));
    assert!(out.success, "Tenant: {}", out.stderr);
    // Only canopy may set the tenant label.
    kubectl_ok(&[
        "--as",
        CANOPY,
        "label",
        "ns",
        &ns,
        &format!("canopy.dev/tenant={tenant}"),
    ]);
    let out = eventually("the tenant's Warn override to be in force", WAIT, || {
        let out = as_user(ALICE, &ns, &["apply"], &pod("web", RESOURCES, HOST_PATH));
        out.success.then_some(out)
    });
    assert!(
        out.stderr
            .contains("Warning: Pod \"web\" would be refused by canopy"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(&format!("forbidden in tenant {tenant}")),
        "{}",
        out.stderr
    );
    // Enforce still refuses, and the refusal carries the warning along.
    let out = as_user(ALICE, &ns, &["apply"], &deployment("web", "", HOST_PATH));
    refused(
        &out,
        &[
            "Warning:",
            "uses hostPath",
            &format!("tenant {tenant} requires requests and limits"),
        ],
    );
}

#[test]
fn excluded_and_exempt_namespaces_are_not_checked() {
    setup();
    for ns in [EXCLUDED_NS, EXEMPT_NS] {
        create_namespace(ns);
        admitted(&as_user(ALICE, ns, &["apply"], &pod("web", "", HOST_PATH)));
        admitted(&as_user(
            ALICE,
            ns,
            &["apply"],
            &deployment("web", "", HOST_PATH),
        ));
    }
}

#[test]
fn exempt_users_are_not_checked() {
    setup();
    let ns = team_namespace("exempt");
    admitted(&as_user(
        EXEMPT_USER,
        &ns,
        &["apply"],
        &pod("by-exempt", "", HOST_PATH),
    ));
    // An admin who joins the break-glass group is exempt by group...
    admitted(&common::kubectl_with_stdin(
        &[
            "--as",
            "oncall",
            "--as-group",
            "system:masters",
            "--as-group",
            BREAK_GLASS,
            "-n",
            &ns,
            "apply",
            "-f",
            "-",
        ],
        Some(&pod("by-break-glass", "", HOST_PATH)),
    ));
    // ...but being an admin (system:masters) is not an exemption of its own.
    refused(
        &common::kubectl_with_stdin(
            &["-n", &ns, "apply", "-f", "-"],
            Some(&pod("by-admin", "", HOST_PATH)),
        ),
        &["uses hostPath"],
    );
    // alice is not.
    refused(
        &as_user(ALICE, &ns, &["apply"], &pod("by-alice", "", HOST_PATH)),
        &["uses hostPath"],
    );
}

/// What docs/configuration.md and docs/admission.md say: an exempt requester (by username
/// or group) is exempt from every policy, the PersistentVolume and StorageClass checks
/// included, while being a cluster admin is no exemption (there is none by default).
#[test]
fn an_exemption_covers_volumes_and_storage_classes_and_being_admin_does_not() {
    setup();
    let retain_pv = |name: &str| {
        format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {name}}}\nspec:\n  \
             capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n  \
             persistentVolumeReclaimPolicy: Retain\n  hostPath: {{path: /srv}}\n"
        )
    };
    let retain_sc = |name: &str| {
        format!(
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: {name}}}\n\
             provisioner: disk.example.com\nreclaimPolicy: Retain\n"
        )
    };
    let apply = |identity: &[&str], yaml: &str| {
        let mut args = identity.to_vec();
        args.extend_from_slice(&["apply", "-f", "-"]);
        common::kubectl_with_stdin(&args, Some(yaml))
    };
    // A cluster admin (system:masters) is checked like anyone else.
    refused(
        &apply(&[], &retain_pv(&unique("pv-admin"))),
        &[
            "spec.persistentVolumeReclaimPolicy is Retain",
            "spec.hostPath is node storage",
        ],
    );
    refused(
        &apply(&[], &retain_sc(&unique("sc-admin"))),
        &["reclaimPolicy is Retain"],
    );
    // Exempt by group (an admin who joins the break-glass group) and by username.
    let by_group = [
        "--as",
        "oncall",
        "--as-group",
        "system:masters",
        "--as-group",
        BREAK_GLASS,
    ];
    let by_username = ["--as", EXEMPT_USER, "--as-group", "system:masters"];
    for identity in [&by_group[..], &by_username[..]] {
        let pv = unique("pv-exempt");
        admitted(&apply(identity, &retain_pv(&pv)));
        kubectl_ok(&["delete", "pv", &pv, "--wait=false"]);
        let sc = unique("sc-exempt");
        admitted(&apply(identity, &retain_sc(&sc)));
        kubectl_ok(&["delete", "storageclass", &sc]);
    }
}

// ---- the webhook server itself, over HTTPS ----

/// The webhook server's port and the CA that signed its certificate, from the registered
/// webhook configuration.
fn webhook_endpoint() -> (u16, Vec<u8>) {
    let config: Value = serde_json::from_str(&kubectl_ok(&[
        "get",
        "validatingwebhookconfiguration",
        "canopy",
        "-o",
        "json",
    ]))
    .expect("kubectl prints JSON");
    let client = &config["webhooks"][0]["clientConfig"];
    let url = client["url"].as_str().expect("a url");
    let port = url
        .trim_start_matches("https://127.0.0.1:")
        .split('/')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port in the url");
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(client["caBundle"].as_str().expect("a caBundle"))
        .expect("base64");
    (port, ca)
}

/// Sends one raw HTTP/1.1 request over TLS; returns the status and body.
fn https(request: &[u8]) -> (u16, String) {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (port, ca) = webhook_endpoint();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.expect("a PEM certificate")).expect("a CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let response = runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("a name");
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        tls.write_all(request).await.expect("write");
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    });
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn post(path: &str, body: &str) -> (u16, String) {
    https(
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

#[test]
fn malformed_requests_get_400_and_the_server_keeps_serving() {
    setup();
    for (body, expected) in [
        ("not json", "not a JSON AdmissionReview"),
        (
            "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
            "has no request",
        ),
        (
            "{\"apiVersion\":\"v1\",\"kind\":\"Pod\"}",
            "unsupported AdmissionReview version",
        ),
    ] {
        let (status, text) = post("/validate-workloads", body);
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(expected), "{body}: {text}");
    }
    let (status, text) = https(
        b"POST /validate-workloads HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("exceeds"), "{text}");

    // Still serving: a direct review, and the apiserver's calls.
    let review = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
        "uid":"42","kind":{"group":"","version":"v1","kind":"Pod"},
        "resource":{"group":"","version":"v1","resource":"pods"},"name":"x","namespace":"default",
        "operation":"CREATE","userInfo":{"username":"alice"},
        "object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},
                  "spec":{"containers":[{"name":"c","image":"i"}],
                          "volumes":[{"name":"v","hostPath":{"path":"/"}}]}}}}"#;
    let (status, text) = post("/validate-workloads", review);
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("an AdmissionReview");
    assert_eq!(answer["response"]["uid"], "42");
    assert_eq!(answer["response"]["allowed"], false);
    let ns = team_namespace("after-400");
    refused(
        &as_user(
            ALICE,
            &ns,
            &["apply", "--dry-run=server"],
            &pod("web", "", HOST_PATH),
        ),
        &["uses hostPath"],
    );
}

#[test]
fn metrics_count_decisions() {
    setup();
    let ns = team_namespace("metrics");
    refused(
        &as_user(
            ALICE,
            &ns,
            &["apply", "--dry-run=server"],
            &pod("web", RESOURCES, HOST_PATH),
        ),
        &["uses hostPath"],
    );
    // On the admin port (plain HTTP), not the webhook port.
    let (status, text) = common::http_get(common::admin_port(), "/metrics");
    assert_eq!(status, 200, "{text}");
    for series in [
        r#"canopy_admission_policy_decisions_total{policy="hostPath",mode="Enforce",outcome="violated"}"#,
        r#"canopy_admission_policy_decisions_total{policy="resources",mode="Enforce",outcome="passed"}"#,
        r#"canopy_admission_reviews_total{webhook="validate-workloads",verdict="denied"}"#,
        r#"canopy_admission_review_duration_seconds_bucket{le="#,
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
    // The controllers' series share the exposition; the namespace created above has been
    // reconciled (its tree label), so the count is at least one.
    let reconciled = text
        .lines()
        .find(|l| {
            l.starts_with(
                r#"canopy_controller_reconciles_total{controller="namespace",outcome="success"}"#,
            )
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(
        reconciled.is_some_and(|n| n >= 1.0),
        "namespace reconciles missing from:\n{text}"
    );
    for series in [
        r#"canopy_controller_reconcile_duration_seconds_bucket{le="#,
        r#"canopy_controller_queue_depth{controller="namespace"}"#,
        "canopy_controller_propagation_conflicts ",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
}
