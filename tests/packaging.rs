//! Packaging: the Helm chart (`helm/canopy`) and the kustomize bases (`config/`) render,
//! lint cleanly, agree with the sources they copy (crds/, the webhook configuration, the
//! manager's RBAC, the CanopyConfiguration defaults, the `canopy manager` flags), and are
//! accepted by a real apiserver (`kubectl apply --dry-run=server`).
//!
//! The helm binary comes from `CANOPY_HELM`, which `make test` sets (hack/build-helm.sh
//! builds it); these tests fail, not skip, without it.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use canopy::api::CanopyConfigurationSpec;
use common::helm::{helm_command, helm_ok};
use common::{kubectl, kubectl_ok, kubectl_with_stdin, repo_path};
use serde_json::{Value, json};

/// Where `make test` installs the chart and the kustomize base put canopy.
const NAMESPACE: &str = "canopy-system";

// ---------------------------------------------------------------------------------------
// Helpers

fn chart_dir() -> String {
    repo_path("helm/canopy").display().to_string()
}

/// `helm template` of the chart (CRDs included) into `namespace`, with `extra` arguments.
#[track_caller]
fn helm_template(namespace: &str, extra: &[&str]) -> String {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        "canopy",
        &chart,
        "--namespace",
        namespace,
        "--include-crds",
    ];
    args.extend_from_slice(extra);
    helm_ok(&args)
}

/// `kubectl kustomize` of a directory under config/.
#[track_caller]
fn kustomize(dir: &str) -> String {
    let path = repo_path(dir).display().to_string();
    kubectl_ok(&["kustomize", &path])
}

/// Every object in a multi-document YAML stream.
#[track_caller]
fn objects(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap_or_else(|e| panic!("invalid YAML stream: {e}\n{yaml}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// Every object of a multi-document YAML file of the repository.
fn objects_of_file(relative: &str) -> Vec<Value> {
    let path = repo_path(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    objects(&text)
}

fn read_yaml(relative: &str) -> Value {
    let path = repo_path(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[track_caller]
fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among the rendered objects"))
}

fn kinds(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]).replace('"', ""))
        .collect()
}

/// `kubectl apply --dry-run=server -f -` of `yaml`, which must succeed.
#[track_caller]
fn dry_run(what: &str, yaml: &str, extra: &[&str]) {
    let mut args = vec!["apply", "--dry-run=server", "-f", "-"];
    args.extend_from_slice(extra);
    let out = kubectl_with_stdin(&args, Some(yaml));
    assert!(
        out.success,
        "the apiserver refused {what} (kubectl {args:?}):\n{}\n{}",
        out.stderr, out.stdout
    );
}

// ---------------------------------------------------------------------------------------
// The cluster: the plain control plane with canopy's CRDs, plus the namespaces the
// manifests go into and stand-ins for the cert-manager and prometheus-operator CRDs.

const FOREIGN_CRDS: &[(&str, &str, &str, &str)] = &[
    ("cert-manager.io", "Issuer", "issuers", "v1"),
    ("cert-manager.io", "Certificate", "certificates", "v1"),
    (
        "monitoring.coreos.com",
        "ServiceMonitor",
        "servicemonitors",
        "v1",
    ),
];

/// Another release namespace than canopy-system, to check the chart follows it.
const OTHER_NAMESPACE: &str = "tenancy-system";

fn prepared_cluster() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        common::cluster();
        let mut yaml = String::new();
        for ns in [NAMESPACE, OTHER_NAMESPACE] {
            yaml += &format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n");
        }
        for (group, kind, plural, version) in FOREIGN_CRDS {
            // Only the kinds: the real schemas are the other projects' business.
            yaml += &format!(
                r#"---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: {plural}.{group}}}
spec:
  group: {group}
  scope: Namespaced
  names: {{kind: {kind}, plural: {plural}, singular: {singular}}}
  versions:
  - name: {version}
    served: true
    storage: true
    schema:
      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"#,
                singular = kind.to_lowercase()
            );
        }
        let out = common::apply(&yaml);
        assert!(out.success, "setting up the cluster: {}", out.stderr);
        for (group, _, plural, _) in FOREIGN_CRDS {
            kubectl_ok(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/{plural}.{group}"),
            ]);
        }
    });
}

// ---------------------------------------------------------------------------------------
// What both the chart and the kustomize base must install.

/// The manager Deployment: HA, hardened, probed over HTTPS on the webhook port, started
/// with flags that `canopy manager` accepts, mounting the webhook certificate.
#[track_caller]
fn check_manager(objects: &[Value], namespace: &str, what: &str) {
    let deploy = find(objects, "Deployment", "canopy-manager");
    assert_eq!(deploy["metadata"]["namespace"], namespace, "{what}");
    assert!(
        deploy["spec"]["replicas"].as_u64() >= Some(2),
        "{what}: at least 2 replicas"
    );
    let pod = &deploy["spec"]["template"]["spec"];
    let pod_labels = &deploy["spec"]["template"]["metadata"]["labels"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
    assert_eq!(pod["securityContext"]["runAsUser"], 65532, "{what}");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{what}"
    );
    let spread = pod["topologySpreadConstraints"].as_array();
    assert!(
        spread.is_some_and(|s| s.iter().any(|c| {
            c["topologyKey"] == "kubernetes.io/hostname"
                && selects(&c["labelSelector"]["matchLabels"], pod_labels)
        })),
        "{what}: replicas spread over nodes: {spread:?}"
    );

    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "{what}");
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
    assert_eq!(sc["runAsNonRoot"], true, "{what}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][resource].is_string(),
                "{what}: {kind}.{resource} is set"
            );
        }
    }
    assert_eq!(c["ports"][0]["name"], "webhook", "{what}");
    assert_eq!(c["ports"][0]["containerPort"], 9443, "{what}");
    assert_eq!(c["ports"][1]["name"], "admin", "{what}");
    assert_eq!(c["ports"][1]["containerPort"], 8080, "{what}");
    // The probes use the admin port, which every manager serves (plain HTTP).
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{what}: {probe}");
        assert_eq!(get["port"], "admin", "{what}: {probe}");
        assert_eq!(get["scheme"], "HTTP", "{what}: {probe}");
    }

    // The arguments are ones `canopy manager` accepts, and name the mounted files.
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string args"))
        .collect();
    assert_eq!(args.first(), Some(&"manager"), "{what}: {args:?}");
    // `canopy`'s global logging flags, wherever they are; the rest is the manager's.
    let (logging, args): (Vec<&str>, Vec<&str>) = args[1..]
        .iter()
        .partition(|a| a.starts_with("--log-level=") || a.starts_with("--log-format="));
    for flag in &logging {
        let value = flag.split_once('=').map_or("", |(_, v)| v);
        assert!(!value.is_empty(), "{what}: {flag}");
        if flag.starts_with("--log-format=") {
            assert!(["text", "json"].contains(&value), "{what}: {flag}");
        }
    }
    let parsed = parse_manager_args(&args);
    assert_eq!(parsed.webhook_addr.port(), 9443, "{what}");
    assert_eq!(parsed.admin_addr.port(), 8080, "{what}");
    assert!(!parsed.controllers_only && !parsed.webhooks_only, "{what}");
    let mount = c["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "webhook-tls"))
        .unwrap_or_else(|| panic!("{what}: the certificate is mounted"));
    let dir = Path::new(mount["mountPath"].as_str().expect("a mount path"));
    assert_eq!(parsed.tls_cert_file.as_deref(), Some(&*dir.join("tls.crt")));
    assert_eq!(parsed.tls_key_file.as_deref(), Some(&*dir.join("tls.key")));
    let volume = pod["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "webhook-tls"))
        .unwrap_or_else(|| panic!("{what}: a webhook-tls volume"));
    assert_eq!(
        volume["secret"]["secretName"], "canopy-webhook-tls",
        "{what}"
    );

    // Runs as the ServiceAccount that the ClusterRoleBinding binds.
    let sa = pod["serviceAccountName"]
        .as_str()
        .expect("a ServiceAccount");
    let sa_object = find(objects, "ServiceAccount", sa);
    assert_eq!(sa_object["metadata"]["namespace"], namespace, "{what}");
    let binding = find(objects, "ClusterRoleBinding", "canopy-manager");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]),
        "{what}"
    );
    assert_eq!(binding["roleRef"]["name"], "canopy-manager", "{what}");

    // The PodDisruptionBudget and the Service select these Pods.
    let pdb = find(objects, "PodDisruptionBudget", "canopy-manager");
    assert_eq!(pdb["metadata"]["namespace"], namespace, "{what}");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels));
    assert_eq!(pdb["spec"]["minAvailable"], 1, "{what}");
    let service = find(objects, "Service", "canopy-webhook");
    assert_eq!(service["metadata"]["namespace"], namespace, "{what}");
    assert!(selects(&service["spec"]["selector"], pod_labels), "{what}");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "https", "port": 443, "targetPort": "webhook", "protocol": "TCP"}]),
        "{what}"
    );
}

/// Every label of `selector` is on `labels` with the same value.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
}

fn parse_manager_args(args: &[&str]) -> canopy::manager::ManagerArgs {
    use clap::{Args, FromArgMatches};
    let command = canopy::manager::ManagerArgs::augment_args(clap::Command::new("manager"));
    let matches = command
        .try_get_matches_from(std::iter::once("manager").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("`canopy manager` refuses {args:?}: {e}"));
    canopy::manager::ManagerArgs::from_arg_matches(&matches).expect("ManagerArgs")
}

/// The manager's ClusterRole is config/rbac/role.yaml, and the webhooks are
/// webhooks/validating-webhook-configuration.yaml pointed at `namespace`.
#[track_caller]
fn check_rbac_and_webhooks(objects: &[Value], namespace: &str, what: &str) {
    let roles = objects_of_file("config/rbac/role.yaml");
    for name in ["canopy-manager", "canopy-manager-base"] {
        let source = find(&roles, "ClusterRole", name);
        let rendered = find(objects, "ClusterRole", name);
        assert_eq!(
            rendered["rules"], source["rules"],
            "{what}: the rules of {name} are config/rbac/role.yaml's"
        );
        assert_eq!(
            rendered["aggregationRule"], source["aggregationRule"],
            "{what}: the aggregation of {name} is config/rbac/role.yaml's"
        );
    }
    // The manager's role aggregates the labelled roles, the base rules among them.
    let label = "canopy.dev/aggregate-to-manager";
    let manager = find(objects, "ClusterRole", "canopy-manager");
    assert_eq!(
        manager["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"][label], "true",
        "{what}"
    );
    assert_eq!(
        find(objects, "ClusterRole", "canopy-manager-base")["metadata"]["labels"][label],
        "true",
        "{what}: the base rules join the manager's role"
    );
    for name in ["canopy-admin", "canopy-view"] {
        find(objects, "ClusterRole", name);
    }
    let mut expected = read_yaml("webhooks/validating-webhook-configuration.yaml");
    for webhook in expected["webhooks"].as_array_mut().expect("webhooks") {
        webhook["clientConfig"]["service"]["namespace"] = json!(namespace);
        let exprs = webhook
            .pointer_mut("/namespaceSelector/matchExpressions")
            .and_then(Value::as_array_mut);
        if let Some(exprs) = exprs {
            // The exempt-namespace lists (`NotIn`) get the release namespace; the
            // workloads webhook's `canopy.dev/tenant Exists` has no values.
            for values in exprs
                .iter_mut()
                .filter(|e| e["operator"] == "NotIn")
                .map(|e| &mut e["values"])
            {
                let list = values.as_array_mut().expect("values");
                if !list.contains(&json!(namespace)) {
                    list.push(json!(namespace));
                }
            }
        }
    }
    let mut rendered = find(objects, "ValidatingWebhookConfiguration", "canopy").clone();
    for webhook in rendered["webhooks"].as_array_mut().expect("webhooks") {
        if let Some(cc) = webhook["clientConfig"].as_object_mut() {
            cc.remove("caBundle");
        }
    }
    let names = |c: &Value| -> Vec<Value> {
        c["webhooks"]
            .as_array()
            .map(|w| w.iter().map(|w| w["name"].clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        names(&rendered),
        names(&expected),
        "{what}: the webhooks of webhooks/validating-webhook-configuration.yaml"
    );
    for (got, want) in rendered["webhooks"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(expected["webhooks"].as_array().into_iter().flatten())
    {
        assert!(
            got == want,
            "{what}: webhook {} differs from webhooks/validating-webhook-configuration.yaml:\n{}\nexpected:\n{}",
            want["name"],
            serde_json::to_string_pretty(got).unwrap_or_default(),
            serde_json::to_string_pretty(want).unwrap_or_default(),
        );
    }
    let service = find(objects, "Service", "canopy-webhook");
    for webhook in rendered["webhooks"].as_array().expect("webhooks") {
        let target = &webhook["clientConfig"]["service"];
        assert_eq!(target["name"], service["metadata"]["name"], "{what}");
        assert_eq!(target["namespace"], namespace, "{what}");
        assert_eq!(
            target["port"], service["spec"]["ports"][0]["port"],
            "{what}"
        );
    }
}

#[track_caller]
fn check_crds(objects: &[Value], what: &str) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    for crd in canopy::api::all_crds() {
        let name = crd.metadata.name.as_deref().expect("a CRD name");
        let rendered: CustomResourceDefinition =
            serde_json::from_value(find(objects, "CustomResourceDefinition", name).clone())
                .unwrap_or_else(|e| panic!("{what}: {name} is not a CRD: {e}"));
        // Compared as typed values: YAML may spell `minimum: 0` as 0 or 0.0.
        assert!(
            rendered.spec == crd.spec,
            "{what}: {name} is not the CRD the Rust types generate; run `make crds`"
        );
    }
}

// ---------------------------------------------------------------------------------------
// No cluster needed

/// helm/canopy and config/ hold byte-for-byte copies of crds/, the webhook configuration
/// and the manager's RBAC (kustomize and helm read only files under their own roots).
#[test]
fn copies_match_their_sources() {
    let mut copies: Vec<(String, String)> = Vec::new();
    let mut crd_files: Vec<String> = std::fs::read_dir(repo_path("crds"))
        .expect("crds/")
        .map(|e| e.expect("a directory entry").file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    crd_files.sort();
    for file in &crd_files {
        for dir in ["config/crds", "helm/canopy/crds"] {
            copies.push((format!("crds/{file}"), format!("{dir}/{file}")));
        }
    }
    let webhooks = "webhooks/validating-webhook-configuration.yaml";
    copies.push((
        webhooks.into(),
        "config/webhook/validating-webhook-configuration.yaml".into(),
    ));
    copies.push((
        webhooks.into(),
        "helm/canopy/files/validating-webhook-configuration.yaml".into(),
    ));
    for file in ["role.yaml", "user_roles.yaml"] {
        copies.push((
            format!("config/rbac/{file}"),
            format!("helm/canopy/files/{file}"),
        ));
    }
    let mut drifted = Vec::new();
    for (source, copy) in &copies {
        let read = |p: &str| std::fs::read(repo_path(p)).ok();
        if read(source).is_none() || read(source) != read(copy) {
            drifted.push(format!("{copy} (from {source})"));
        }
    }
    assert!(
        drifted.is_empty(),
        "copies that differ from their source; run `make manifests`:\n  {}",
        drifted.join("\n  ")
    );

    // No stale CRD copies, and config/crds lists every CRD.
    for dir in ["config/crds", "helm/canopy/crds"] {
        let mut files: Vec<String> = std::fs::read_dir(repo_path(dir))
            .expect("the directory exists")
            .map(|e| e.expect("a directory entry").file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n != "kustomization.yaml")
            .collect();
        files.sort();
        assert_eq!(
            files, crd_files,
            "{dir} holds other files than crds/; run `make manifests`"
        );
    }
    let mut listed: Vec<String> = read_yaml("config/crds/kustomization.yaml")["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a file name").to_owned())
        .collect();
    listed.sort();
    assert_eq!(
        listed, crd_files,
        "config/crds/kustomization.yaml lists every CRD"
    );
}

/// The chart's `configuration` values and config/samples/canopyconfiguration.yaml are
/// the CRD's defaults, so installing either changes nothing unless the operator edits it.
#[test]
fn configuration_values_are_the_defaults() {
    let defaults =
        serde_json::to_value(CanopyConfigurationSpec::default()).expect("the spec serializes");
    let mut values = read_yaml("helm/canopy/values.yaml")["configuration"].clone();
    values
        .as_object_mut()
        .expect("a configuration map")
        .remove("create");
    assert_eq!(values, defaults, "helm/canopy/values.yaml `configuration`");
    let sample = read_yaml("config/samples/canopyconfiguration.yaml");
    assert_eq!(sample["metadata"]["name"], "config");
    assert_eq!(
        sample["spec"], defaults,
        "config/samples/canopyconfiguration.yaml"
    );
}

/// `helm lint --strict` passes with the default values and with every optional part on.
#[test]
fn helm_lint_is_clean() {
    let chart = chart_dir();
    for extra in [
        &[][..],
        &[
            "--set",
            "certManager.enabled=true",
            "--set",
            "serviceMonitor.enabled=true",
        ],
    ] {
        let mut args = vec!["lint", "--strict", &chart];
        args.extend_from_slice(extra);
        let out = helm_ok(&args);
        assert!(
            out.contains("0 chart(s) failed")
                && !out.contains("[WARNING]")
                && !out.contains("[ERROR]"),
            "helm lint {extra:?}:\n{out}"
        );
    }
}

/// The values schema refuses a typo and a policy mode that does not exist.
#[test]
fn chart_values_are_checked() {
    let chart = chart_dir();
    for (set, complaint) in [
        ("replicaCount=3", "replicaCount"),
        ("configuration.policies.hostPath=Block", "hostPath"),
        ("configuration.resources[0].mode=Copy", "mode"),
    ] {
        let out = helm_command(&["template", "canopy", &chart, "--set", set])
            .output()
            .expect("helm runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(complaint),
            "--set {set} was not refused: {stderr}"
        );
    }
}

/// The webhooks' blast radius follows the values: exempt and excluded namespaces are
/// skipped by every selector, and with `scope: AllNamespaces` the workloads webhook sees
/// namespaces of no tenant too (by default only tenants' namespaces).
#[test]
fn chart_webhook_selectors_follow_the_values() {
    let selector = |sets: &[&str]| -> Vec<Value> {
        let mut args = Vec::new();
        for set in sets {
            args.extend(["--set", *set]);
        }
        let rendered = objects(&helm_template(NAMESPACE, &args));
        let config = find(&rendered, "ValidatingWebhookConfiguration", "canopy");
        config["webhooks"]
            .as_array()
            .expect("webhooks")
            .iter()
            .find(|w| w["name"] == "workloads.canopy.dev")
            .expect("the workloads webhook")["namespaceSelector"]["matchExpressions"]
            .as_array()
            .cloned()
            .expect("expressions")
    };
    let tenant_only = |exprs: &[Value]| exprs.iter().any(|e| e["key"] == "canopy.dev/tenant");
    let exempt = |exprs: &[Value], ns: &str| {
        exprs.iter().any(|e| {
            e["operator"] == "NotIn"
                && e["values"]
                    .as_array()
                    .is_some_and(|v| v.contains(&json!(ns)))
        })
    };
    let default = selector(&[]);
    assert!(
        tenant_only(&default),
        "scope Tenants: only tenants' namespaces"
    );
    let wide = selector(&[
        "configuration.policies.scope=AllNamespaces",
        "webhook.exemptNamespaces={cert-manager}",
        "configuration.excludedNamespaces={kube-system,kube-public,kube-node-lease,kube-flannel}",
    ]);
    assert!(!tenant_only(&wide), "scope AllNamespaces: every namespace");
    assert!(
        exempt(&wide, "cert-manager"),
        "an exempt namespace: {wide:?}"
    );
    assert!(
        exempt(&wide, "kube-flannel"),
        "an excluded namespace: {wide:?}"
    );
    assert!(exempt(&wide, NAMESPACE), "the release namespace: {wide:?}");
}

/// The chart renders the bundled RBAC and webhooks, a hardened HA manager, and the
/// generated CRDs; in another namespace everything follows it.
#[test]
fn chart_renders_what_canopy_needs() {
    for namespace in [NAMESPACE, OTHER_NAMESPACE] {
        let rendered = objects(&helm_template(namespace, &[]));
        let what = format!("helm template -n {namespace}");
        check_crds(&rendered, &what);
        check_manager(&rendered, namespace, &what);
        check_rbac_and_webhooks(&rendered, namespace, &what);
        let config = find(&rendered, "CanopyConfiguration", "config");
        let excluded = config["spec"]["excludedNamespaces"]
            .as_array()
            .expect("excludedNamespaces");
        assert!(
            excluded.contains(&json!(namespace)),
            "{what}: the release namespace is excluded: {excluded:?}"
        );
        let vwc = find(&rendered, "ValidatingWebhookConfiguration", "canopy");
        assert!(
            vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].is_null(),
            "{what}: no cert-manager by default"
        );
        for kind in ["Certificate", "Issuer", "ServiceMonitor"] {
            assert!(
                !rendered.iter().any(|o| o["kind"] == kind),
                "{what}: no {kind} by default: {:?}",
                kinds(&rendered)
            );
        }
        // The one Secret is the CA's, empty: the manager fills it when it manages its own
        // certificates, and needs no right to create Secrets.
        let secrets: Vec<&Value> = rendered.iter().filter(|o| o["kind"] == "Secret").collect();
        assert_eq!(secrets.len(), 1, "{what}: {:?}", kinds(&rendered));
        assert_eq!(secrets[0]["metadata"]["name"], "canopy-webhook-ca");
        assert!(
            secrets[0]["data"].is_null(),
            "{what}: the CA Secret ships empty"
        );
    }
}

/// With cert-manager: an Issuer and Certificate for the Service's DNS names, written to
/// the Secret the manager mounts, and the CA injected into the webhooks. A caBundle
/// given as a value lands in every webhook, base64-encoded.
#[test]
fn chart_certificate_options() {
    let rendered = objects(&helm_template(
        OTHER_NAMESPACE,
        &[
            "--set",
            "certManager.enabled=true",
            "--set",
            "serviceMonitor.enabled=true",
        ],
    ));
    let cert = find(&rendered, "Certificate", "canopy-webhook");
    assert_eq!(cert["spec"]["secretName"], "canopy-webhook-tls");
    assert_eq!(
        cert["spec"]["dnsNames"],
        json!([
            format!("canopy-webhook.{OTHER_NAMESPACE}.svc"),
            format!("canopy-webhook.{OTHER_NAMESPACE}.svc.cluster.local")
        ])
    );
    assert_eq!(cert["spec"]["issuerRef"]["name"], "canopy-selfsigned");
    find(&rendered, "Issuer", "canopy-selfsigned");
    let vwc = find(&rendered, "ValidatingWebhookConfiguration", "canopy");
    assert_eq!(
        vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        format!("{OTHER_NAMESPACE}/canopy-webhook")
    );
    let monitor = find(&rendered, "ServiceMonitor", "canopy");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["scheme"], "http");
    // It scrapes the admin port of the manager's Pods through a Service of its own.
    let metrics = find(&rendered, "Service", "canopy-metrics");
    assert!(selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &metrics["metadata"]["labels"]
    ));
    let webhook = find(&rendered, "Service", "canopy-webhook");
    assert!(!selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &webhook["metadata"]["labels"]
    ));
    assert_eq!(
        metrics["spec"]["ports"],
        json!([{"name": "metrics", "port": 8080, "targetPort": "admin", "protocol": "TCP"}])
    );
    let manager = find(&rendered, "Deployment", "canopy-manager");
    assert!(selects(
        &metrics["spec"]["selector"],
        &manager["spec"]["template"]["metadata"]["labels"]
    ));

    // An issuer of the operator's: no self-signed one.
    let rendered = objects(&helm_template(
        NAMESPACE,
        &[
            "--set",
            "certManager.enabled=true",
            "--set",
            "certManager.issuerRef.kind=ClusterIssuer",
            "--set",
            "certManager.issuerRef.name=corp-ca",
        ],
    ));
    let cert = find(&rendered, "Certificate", "canopy-webhook");
    assert_eq!(
        cert["spec"]["issuerRef"],
        json!({"kind": "ClusterIssuer", "name": "corp-ca"})
    );
    assert!(!rendered.iter().any(|o| o["kind"] == "Issuer"));

    // The operator's own CA.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca).expect("write ca.crt");
    let set_file = format!("webhook.caBundle={}", ca_file.display());
    let rendered = objects(&helm_template(NAMESPACE, &["--set-file", &set_file]));
    let vwc = find(&rendered, "ValidatingWebhookConfiguration", "canopy");
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(ca);
    for webhook in vwc["webhooks"].as_array().expect("webhooks") {
        assert_eq!(webhook["clientConfig"]["caBundle"], encoded.as_str());
    }
    // One replica: no PodDisruptionBudget, which would block every node drain.
    let rendered = objects(&helm_template(NAMESPACE, &["--set", "replicas=1"]));
    assert!(!rendered.iter().any(|o| o["kind"] == "PodDisruptionBudget"));

    // Option C: the manager makes its own certificate; no Secret is mounted (none exists),
    // and the empty CA Secret it fills is there. tests/node_chart.rs installs it for real.
    let rendered = objects(&helm_template(
        NAMESPACE,
        &["--set", "webhook.selfSignedCertificates=true"],
    ));
    let deployment = find(&rendered, "Deployment", "canopy-manager");
    let pod = &deployment["spec"]["template"]["spec"];
    let args = pod["containers"][0]["args"].as_array().expect("args");
    assert!(
        args.contains(&json!("--self-signed-certificates")),
        "{args:?}"
    );
    assert!(
        !args
            .iter()
            .any(|a| a.as_str().is_some_and(|a| a.starts_with("--tls-"))),
        "{args:?}"
    );
    assert!(pod["volumes"].is_null(), "{}", pod["volumes"]);
    assert!(pod["containers"][0]["volumeMounts"].is_null());
    find(&rendered, "Secret", "canopy-webhook-ca");
    // Two sources of the certificate at once is a mistake the chart refuses.
    let out = helm_command(&[
        "template",
        "canopy",
        &chart_dir(),
        "--set",
        "webhook.selfSignedCertificates=true",
        "--set",
        "certManager.enabled=true",
    ])
    .output()
    .expect("helm runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("choose one"));
}

// ---------------------------------------------------------------------------------------
// Against the real apiserver

/// The chart, CRDs included, with default values and with every option on, is accepted
/// by the apiserver in a server-side dry run (schemas, RBAC objects, the webhook
/// configuration, the CanopyConfiguration against its CRD).
#[test]
fn chart_applies_with_server_dry_run() {
    prepared_cluster();
    dry_run(
        "helm template (defaults)",
        &helm_template(NAMESPACE, &[]),
        &[],
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(
        &ca_file,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .expect("write ca.crt");
    let set_file = format!("webhook.caBundle={}", ca_file.display());
    dry_run(
        "helm template (cert-manager, ServiceMonitor, caBundle, another namespace)",
        &helm_template(
            OTHER_NAMESPACE,
            &[
                "--set",
                "certManager.enabled=true",
                "--set",
                "serviceMonitor.enabled=true",
                "--set-file",
                &set_file,
                "--set",
                "configuration.policies.scope=AllNamespaces",
            ],
        ),
        &[],
    );
}

/// `kubectl kustomize config/default` (and every base it is made of) renders; the result
/// installs the same manager, RBAC and webhooks as the chart and is accepted by the
/// apiserver in a server-side dry run, by client-side and server-side apply.
#[test]
fn kustomize_default_applies_with_server_dry_run() {
    prepared_cluster();
    for base in [
        "config/crds",
        "config/rbac",
        "config/manager",
        "config/webhook",
    ] {
        assert!(
            !objects(&kustomize(base)).is_empty(),
            "{base} renders objects"
        );
    }
    let yaml = kustomize("config/default");
    let rendered = objects(&yaml);
    let what = "kubectl kustomize config/default";
    check_crds(&rendered, what);
    check_manager(&rendered, NAMESPACE, what);
    check_rbac_and_webhooks(&rendered, NAMESPACE, what);
    // The namespace comes first, so `kubectl apply -k` can create it before its objects.
    assert_eq!(rendered[0]["kind"], "Namespace", "{:?}", kinds(&rendered));
    dry_run(what, &yaml, &[]);
    // The harness installed the CRDs already, as field manager `canopy`; a fresh cluster
    // has no such owner, and an upgrade takes the fields over the same way.
    dry_run(
        what,
        &yaml,
        &[
            "--server-side",
            "--force-conflicts",
            "--field-manager=canopy-packaging-test",
        ],
    );

    let yaml = kustomize("config/overlays/cert-manager");
    let rendered = objects(&yaml);
    let vwc = find(&rendered, "ValidatingWebhookConfiguration", "canopy");
    assert_eq!(
        vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "canopy-system/canopy-webhook"
    );
    let cert = find(&rendered, "Certificate", "canopy-webhook");
    assert_eq!(cert["spec"]["secretName"], "canopy-webhook-tls");
    dry_run("kubectl kustomize config/overlays/cert-manager", &yaml, &[]);

    let sample = repo_path("config/samples/canopyconfiguration.yaml");
    let out = kubectl(&[
        "apply",
        "--dry-run=server",
        "-f",
        &sample.display().to_string(),
    ]);
    assert!(
        out.success,
        "the sample CanopyConfiguration: {}",
        out.stderr
    );
}

/// The chart values that docs/gitops.md pastes into Argo CD's Application
/// (`spec.source.helm.valuesObject`) and Flux's HelmRelease (`spec.values`) are values the
/// chart knows (its schema refuses others) and do what the page says.
#[test]
fn the_values_in_docs_gitops_render() {
    let doc = std::fs::read_to_string(repo_path("docs/gitops.md")).expect("docs/gitops.md");
    let documents: Vec<Value> = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .flat_map(objects)
        .collect();
    let application = find(&documents, "Application", "canopy");
    assert_eq!(application["spec"]["source"]["path"], "helm/canopy");
    let release = find(&documents, "HelmRelease", "canopy");
    assert_eq!(release["spec"]["chart"]["spec"]["chart"], "./helm/canopy");
    assert_eq!(release["spec"]["install"]["crds"], "Create");
    assert_eq!(release["spec"]["upgrade"]["crds"], "CreateReplace");
    let dir = tempfile::tempdir().expect("a temp dir");
    for (what, values) in [
        (
            "Argo CD",
            &application["spec"]["source"]["helm"]["valuesObject"],
        ),
        ("Flux", &release["spec"]["values"]),
    ] {
        let file = dir.path().join("values.json");
        std::fs::write(&file, values.to_string()).expect("write the values");
        let file = file.display().to_string();
        let rendered = objects(&helm_template("canopy-system", &["-f", &file]));
        assert!(
            rendered.iter().any(|o| o["kind"] == "Certificate"),
            "{what}: certManager.enabled renders the Certificate"
        );
        let config = rendered.iter().find(|o| o["kind"] == "CanopyConfiguration");
        match values["configuration"]["create"].as_bool() {
            Some(false) => assert!(config.is_none(), "{what}: configuration.create=false"),
            _ => {
                let labels = &config.expect("a CanopyConfiguration")["spec"]["stripLabels"];
                assert!(
                    labels
                        .as_array()
                        .is_some_and(|l| l.iter().any(|v| v == "helm.toolkit.fluxcd.io/name")),
                    "{what}: stripLabels {labels}"
                );
            }
        }
    }
}
