//! A Tenant's guardrails through the real apiserver: every refusal names the field and the
//! fix and is paired with the compliant request admitted; Pods, Deployments and CronJobs
//! are judged at the object the owner writes (a refused Deployment makes no ReplicaSet);
//! Warn mode admits with the message as a warning; the owners cannot loosen their own
//! Tenant, a cluster admin can.
//!
//! The binary runs with the default CanopyConfiguration (guardrails `Enforce`, no
//! exemptions). Each test makes its own tenant and cluster-scoped objects with unique
//! names; only `claims_and_ephemeral_volumes_keep_to_the_allowed_classes` touches the
//! cluster's default StorageClass.

mod common;

use std::time::Duration;

use common::tenants::{as_owner, as_owner_stdin, owner_flags, wait_until_ready};
use common::{Kubectl, apply, cluster_with_canopy, eventually, json, kubectl, unique};

const WAIT: Duration = Duration::from_secs(60);

/// The guardrails of one test tenant, and the cluster objects they name.
struct Rails {
    tenant: String,
}

impl Rails {
    fn runtime(&self, which: &str) -> String {
        format!("{}-{which}", self.tenant)
    }
    fn registry(&self) -> String {
        format!("registry.example.com/{}/", self.tenant)
    }
}

/// A tenant with every guardrail, the RuntimeClasses, PriorityClasses and StorageClasses
/// they name (and one of each kind that is not allowed), a LimitRange for the resources
/// policy; waits until canopy checks its namespace.
fn tenant(prefix: &str, extra: &str) -> Rails {
    cluster_with_canopy();
    let t = unique(prefix);
    let out = apply(&format!(
        r#"
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {{name: {t}-gvisor}}
handler: runsc
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {{name: {t}-kata}}
handler: kata
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {{name: {t}-runc}}
handler: runc
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {{name: {t}-low}}
value: 10
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {{name: {t}-high}}
value: 1000
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: {t}-fast}}
provisioner: example.com/none
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: {t}-slow}}
provisioner: example.com/none
---
apiVersion: canopy.dev/v1alpha1
kind: Tenant
metadata: {{name: {t}}}
spec:
  owners: [{{kind: Group, name: {t}-admins}}]
  limitRange:
    limits:
    - type: Container
      default: {{cpu: 100m, memory: 64Mi}}
      defaultRequest: {{cpu: 10m, memory: 16Mi}}
  runtimeClasses: {{allowed: [{t}-gvisor, {t}-kata], default: {t}-gvisor}}
  nodeSelector: {{pool: {t}}}
  storageClasses: {{allowed: [{t}-fast]}}
  serviceTypes: {{allowed: [ClusterIP]}}
  imageRegistries: {{allowed: [registry.example.com/{t}/]}}
  priorityClasses: {{allowed: [{t}-low]}}
{extra}"#
    ));
    assert!(out.success, "tenant {t}: {}", out.stderr);
    wait_until_ready(&t, WAIT);
    let rails = Rails { tenant: t.clone() };
    eventually(&format!("the owner of {t} to be admin there"), WAIT, || {
        let out = as_owner(&t, &["auth", "can-i", "create", "pods", "-n", &t]);
        (out.stdout.trim() == "yes").then_some(())
    });
    eventually("the tenant's LimitRange", WAIT, || {
        json(&["get", "limitrange", "canopy-limits", "-n", &t, "-o", "json"])
    });
    // The webhook learns the namespace's tenant and its guardrails from its model: wait
    // until a compliant Pod passes and a bare one is checked.
    eventually(&format!("guardrails in {t} to be checked"), WAIT, || {
        let good = owner_apply(&t, DRY_RUN, &pod("probe", &rails.spec(&[])));
        let bare = owner_apply(&t, DRY_RUN, &pod("probe", BARE));
        (good.success && bare.stderr.contains("runtimeClassName")).then_some(())
    });
    rails
}

const DRY_RUN: &[&str] = &["--dry-run=server"];
const REAL: &[&str] = &[];
/// A pod spec that sets none of the guardrails' fields.
const BARE: &str = "{containers: [{name: app, image: busybox}]}";

impl Rails {
    /// A compliant pod spec (flow YAML), with `changes` replacing (or, with an empty
    /// value, removing) its fields.
    fn spec(&self, changes: &[(&str, &str)]) -> String {
        let t = &self.tenant;
        let mut fields: Vec<(String, String)> = vec![
            ("runtimeClassName".into(), self.runtime("gvisor")),
            ("nodeSelector".into(), format!("{{pool: {t}}}")),
            ("priorityClassName".into(), format!("{t}-low")),
            (
                "containers".into(),
                format!("[{{name: app, image: '{}app:1'}}]", self.registry()),
            ),
        ];
        for (key, value) in changes {
            fields.retain(|(k, _)| k != key);
            if !value.is_empty() {
                fields.push(((*key).to_owned(), (*value).to_owned()));
            }
        }
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("{{{}}}", body.join(", "))
    }
}

fn pod(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {spec}\n")
}

fn deployment(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  \
         replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    \
         metadata: {{labels: {{app: {name}}}}}\n    spec: {spec}\n"
    )
}

/// A CronJob; `spec` must not set `restartPolicy` (added here, as Jobs require).
fn cron_job(name: &str, spec: &str) -> String {
    let spec = format!("{{restartPolicy: Never, {}", &spec[1..]);
    format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: {name}}}\nspec:\n  \
         schedule: '0 0 1 1 *'\n  jobTemplate:\n    spec:\n      template:\n        \
         spec: {spec}\n"
    )
}

/// `kubectl apply <extra> -n <tenant> -f -` as the tenant's owner.
fn owner_apply(tenant: &str, extra: &[&str], yaml: &str) -> Kubectl {
    let mut args: Vec<&str> = vec!["-n", tenant, "apply"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-f", "-"]);
    as_owner_stdin(tenant, &args, yaml)
}

#[track_caller]
fn refused(out: &Kubectl, expected: &[&str]) {
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
}

#[track_caller]
fn admitted(out: &Kubectl) {
    assert!(
        out.success,
        "refused, but should be admitted: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("canopy"), "warned: {}", out.stderr);
}

/// One broken guardrail: the change to the compliant spec, the field below the pod spec,
/// what the message says (`SPEC` for the pod spec's path), the fix.
type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, String, String);
/// A kind's manifest from a name and a pod spec.
type Make = fn(&str, &str) -> String;

/// Each pod guardrail broken alone, in a Pod, a Deployment and a CronJob: refused with the
/// field at its path in that kind and the fix; the compliant object of each kind admitted.
#[test]
fn each_pod_guardrail_names_its_field_and_fix_in_every_kind() {
    let r = tenant("rails", "");
    let t = r.tenant.as_str();
    let gvisor = r.runtime("gvisor");
    let runc = r.runtime("runc");
    let image = format!("[{{name: app, image: 'docker.io/{t}/app:1'}}]");
    let high = format!("{t}-high");
    let other_pool = "{pool: elsewhere}".to_owned();
    let reason_rc = format!(
        "(tenant {t} allows runtime classes \"{gvisor}\", \"{}\")",
        r.runtime("kata")
    );
    let cases: Vec<Case> = vec![
        (
            vec![("runtimeClassName", "")],
            "runtimeClassName",
            format!("runtimeClassName is unset {reason_rc}"),
            format!("runtimeClassName to \"{gvisor}\""),
        ),
        (
            vec![("runtimeClassName", runc.as_str())],
            "runtimeClassName",
            format!("runtimeClassName is \"{runc}\""),
            format!("runtimeClassName to \"{gvisor}\""),
        ),
        (
            vec![("nodeSelector", "")],
            "nodeSelector",
            format!(
                "nodeSelector does not select pool (tenant {t} runs Pods only on nodes labelled pool={t})"
            ),
            format!("nodeSelector.pool to \"{t}\""),
        ),
        (
            vec![("nodeSelector", other_pool.as_str())],
            "nodeSelector",
            "nodeSelector selects pool=\"elsewhere\"".to_owned(),
            format!("nodeSelector.pool to \"{t}\""),
        ),
        (
            vec![("priorityClassName", high.as_str())],
            "priorityClassName",
            format!(
                "priorityClassName is \"{high}\" (tenant {t} allows priority classes \"{t}-low\")"
            ),
            format!("set it to \"{t}-low\" or remove it"),
        ),
        (
            vec![("containers", image.as_str())],
            "containers[0]",
            format!(
                "container \"app\" at SPEC.containers[0] uses image \"docker.io/{t}/app:1\" \
                 (tenant {t} allows images from \"registry.example.com/{t}/\")"
            ),
            format!("use an image that starts with \"registry.example.com/{t}/\""),
        ),
    ];
    let kinds: [(&str, &str, Make); 3] = [
        ("Pod", "spec", pod),
        ("Deployment", "spec.template.spec", deployment),
        ("CronJob", "spec.jobTemplate.spec.template.spec", cron_job),
    ];
    for (kind, path, make) in kinds {
        for (n, (change, field, says, fix)) in cases.iter().enumerate() {
            let name = format!("bad-{}-{n}", kind.to_lowercase());
            let out = owner_apply(t, REAL, &make(&name, &r.spec(change)));
            let says = says.replace("SPEC", path);
            let says = if says.starts_with("container") {
                says
            } else {
                format!("{path}.{says}")
            };
            let fix = if fix.starts_with("set it") || fix.starts_with("use") {
                fix.clone()
            } else {
                format!("set {path}.{fix}")
            };
            refused(
                &out,
                &[
                    &format!("{kind} \"{name}\" refused by canopy: "),
                    &format!("{path}.{field}"),
                    &says,
                    &fix,
                ],
            );
        }
        let name = format!("good-{}", kind.to_lowercase());
        admitted(&owner_apply(t, REAL, &make(&name, &r.spec(&[]))));
    }
    // A required node affinity pinned to the label does what the selector does.
    let affinity = format!(
        "{{requiredDuringSchedulingIgnoredDuringExecution: {{nodeSelectorTerms: \
         [{{matchExpressions: [{{key: pool, operator: In, values: [{t}]}}]}}]}}}}"
    );
    let spec = r.spec(&[
        ("nodeSelector", ""),
        ("affinity", &format!("{{nodeAffinity: {affinity}}}")),
    ]);
    admitted(&owner_apply(t, DRY_RUN, &pod("affinity", &spec)));
    // Every violation of one object in one message.
    let out = owner_apply(t, DRY_RUN, &deployment("all-wrong", BARE));
    refused(
        &out,
        &[
            "spec.template.spec.runtimeClassName is unset",
            "spec.template.spec.nodeSelector does not select pool",
            "uses image \"busybox\"",
        ],
    );
}

/// A refused Deployment leaves nothing behind (no ReplicaSet, no Pods were ever tried);
/// the compliant one gets its ReplicaSet and a Pod, which the webhook admits too.
#[test]
fn a_template_is_checked_at_the_workload_not_at_its_replica_set() {
    let r = tenant("tmpl", "");
    let t = r.tenant.as_str();
    let out = owner_apply(
        t,
        REAL,
        &deployment("bad", &r.spec(&[("runtimeClassName", "")])),
    );
    refused(&out, &["Deployment \"bad\" refused by canopy"]);
    admitted(&owner_apply(t, REAL, &deployment("good", &r.spec(&[]))));
    eventually("the good Deployment's Pod", WAIT, || {
        let pods = json(&["get", "pods", "-n", t, "-l", "app=good", "-o", "json"])?;
        let pods = pods["items"].as_array()?.clone();
        (!pods.is_empty()).then_some(())
    });
    let bad = kubectl(&["get", "deployment", "bad", "-n", t]);
    assert!(
        !bad.success && bad.stderr.contains("NotFound"),
        "{}",
        bad.stderr
    );
    let sets = json(&["get", "replicasets", "-n", t, "-o", "json"]).expect("replicasets");
    let names: Vec<&str> = sets["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    assert!(
        names.iter().all(|n| n.starts_with("good-")),
        "only the good Deployment has a ReplicaSet: {names:?}"
    );
}

/// Claims name an allowed class; a Pod's generic ephemeral volume too; a claim or volume
/// without a class gets the cluster's default, which must then be allowed.
#[test]
fn claims_and_ephemeral_volumes_keep_to_the_allowed_classes() {
    let r = tenant("storage", "");
    let t = r.tenant.as_str();
    let claim = |name: &str, class: &str| {
        let class = if class.is_empty() {
            String::new()
        } else {
            format!("  storageClassName: {class}\n")
        };
        format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n  \
             accessModes: [ReadWriteOnce]\n{class}  resources: {{requests: {{storage: 1Gi}}}}\n"
        )
    };
    refused(
        &owner_apply(t, REAL, &claim("slow", &format!("{t}-slow"))),
        &[
            "PersistentVolumeClaim \"slow\" refused by canopy: ",
            &format!(
                "spec.storageClassName is \"{t}-slow\" (tenant {t} allows storage classes \"{t}-fast\")"
            ),
            &format!("set spec.storageClassName to \"{t}-fast\""),
        ],
    );
    admitted(&owner_apply(t, REAL, &claim("fast", &format!("{t}-fast"))));
    // A StatefulSet answers for the claims it will make, at `kubectl apply`.
    let stateful_set = |class: &str| {
        format!(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db}}\nspec:\n  \
             selector: {{matchLabels: {{app: db}}}}\n  serviceName: db\n  template:\n    \
             metadata: {{labels: {{app: db}}}}\n    spec: {}\n  volumeClaimTemplates:\n  \
             - metadata: {{name: data}}\n    spec: {{storageClassName: {class}, \
             accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}\n",
            r.spec(&[])
        )
    };
    refused(
        &owner_apply(t, DRY_RUN, &stateful_set(&format!("{t}-slow"))),
        &[&format!(
            "spec.volumeClaimTemplates[0].spec.storageClassName is \"{t}-slow\""
        )],
    );
    admitted(&owner_apply(
        t,
        DRY_RUN,
        &stateful_set(&format!("{t}-fast")),
    ));

    let ephemeral = |class: &str| {
        let class = if class.is_empty() {
            String::new()
        } else {
            format!("storageClassName: {class}, ")
        };
        r.spec(&[(
            "volumes",
            &format!(
                "[{{name: scratch, ephemeral: {{volumeClaimTemplate: {{spec: {{{class}\
                 accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}}}}}}}]"
            ),
        )])
    };
    let field = "spec.volumes[0].ephemeral.volumeClaimTemplate.spec.storageClassName";
    refused(
        &owner_apply(t, DRY_RUN, &pod("eph", &ephemeral(&format!("{t}-slow")))),
        &[&format!("{field} is \"{t}-slow\"")],
    );
    admitted(&owner_apply(
        t,
        DRY_RUN,
        &pod("eph", &ephemeral(&format!("{t}-fast"))),
    ));

    // The default class: with a disallowed default, a class-less volume is refused and
    // the message says which class it would get; with an allowed one it is admitted.
    let mark = |class: &str, default: bool| {
        let out = kubectl(&[
            "annotate",
            "--overwrite",
            "storageclass",
            class,
            &format!("storageclass.kubernetes.io/is-default-class={default}"),
        ]);
        assert!(out.success, "{}", out.stderr);
    };
    mark(&format!("{t}-slow"), true);
    eventually("the slow default to be known", WAIT, || {
        let out = owner_apply(t, DRY_RUN, &pod("eph", &ephemeral("")));
        out.stderr
            .contains(&format!(
                "{field} is unset, which means the cluster's default class \"{t}-slow\""
            ))
            .then_some(())
    });
    // The apiserver's DefaultStorageClass plugin writes the default into a class-less
    // claim before canopy sees it.
    refused(
        &owner_apply(t, REAL, &claim("defaulted", "")),
        &[&format!("spec.storageClassName is \"{t}-slow\"")],
    );
    mark(&format!("{t}-slow"), false);
    mark(&format!("{t}-fast"), true);
    eventually("the fast default to be known", WAIT, || {
        owner_apply(t, DRY_RUN, &pod("eph", &ephemeral("")))
            .success
            .then_some(())
    });
    admitted(&owner_apply(t, REAL, &claim("defaulted", "")));
    mark(&format!("{t}-fast"), false);
}

/// Service types and external IPs: NodePort and LoadBalancer refused where only ClusterIP
/// is allowed, external IPs refused unless the Tenant allows their range.
#[test]
fn services_keep_to_their_types_and_external_ips() {
    let r = tenant("svc", "  externalIPs: {allowed: [203.0.113.0/24]}\n");
    let t = r.tenant.as_str();
    let service = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  \
             selector: {{app: web}}\n  ports: [{{port: 80}}]\n{extra}"
        )
    };
    refused(
        &owner_apply(t, REAL, &service("np", "  type: NodePort\n")),
        &[
            "Service \"np\" refused by canopy: ",
            &format!("spec.type is \"NodePort\" (tenant {t} allows Service types \"ClusterIP\")"),
            "set spec.type to \"ClusterIP\"",
        ],
    );
    refused(
        &owner_apply(t, REAL, &service("lb", "  type: LoadBalancer\n")),
        &["spec.type is \"LoadBalancer\""],
    );
    refused(
        &owner_apply(t, REAL, &service("ext", "  externalIPs: [198.51.100.7]\n")),
        &[
            "spec.externalIPs[0] is \"198.51.100.7\"",
            &format!("(tenant {t} allows external IPs in 203.0.113.0/24)"),
            "remove it",
        ],
    );
    admitted(&owner_apply(
        t,
        REAL,
        &service("ext", "  externalIPs: [203.0.113.7]\n"),
    ));
    admitted(&owner_apply(t, REAL, &service("web", "")));
    // An edit that leaves the guardrails' fields alone is admitted.
    let out = as_owner(t, &["-n", t, "label", "service", "web", "tier=front"]);
    assert!(out.success, "{}", out.stderr);
}

/// `policies.guardrails: Warn`: the object is admitted and the owner sees the message as a
/// warning; the compliant one gets none.
#[test]
fn warn_mode_admits_with_the_message() {
    let r = tenant("warn", "  policies: {guardrails: Warn}\n");
    let t = r.tenant.as_str();
    let out = owner_apply(
        t,
        REAL,
        &deployment("web", &r.spec(&[("runtimeClassName", "")])),
    );
    assert!(out.success, "Warn refused: {}", out.stderr);
    assert!(
        out.stderr.contains(
            "Deployment \"web\" would be refused by canopy: \
             spec.template.spec.runtimeClassName is unset"
        ),
        "no warning: {}",
        out.stderr
    );
    admitted(&owner_apply(t, REAL, &deployment("fine", &r.spec(&[]))));
}

/// The owners cannot change their own Tenant's guardrails on any write path (update,
/// patch, client- and server-side apply); a cluster admin can, and it takes effect.
#[test]
fn owners_cannot_change_their_own_guardrails_but_an_admin_can() {
    let r = tenant("own", "");
    let t = r.tenant.as_str();
    let loose = format!(
        "apiVersion: canopy.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {t}}}\nspec:\n  \
         owners: [{{kind: Group, name: {t}-admins}}]\n  imageRegistries: {{allowed: ['']}}\n"
    );
    let flags = owner_flags(t);
    let who: Vec<&str> = flags.iter().map(String::as_str).collect();
    // The owner may read the Tenant (canopy grants that), nothing more.
    let tenant_json = as_owner(t, &["get", "tenant", t, "-o", "json"]);
    assert!(tenant_json.success, "{}", tenant_json.stderr);
    let attempts: Vec<(&str, Kubectl)> = vec![
        (
            "patch",
            as_owner(
                t,
                &[
                    "patch",
                    "tenant",
                    t,
                    "--type=merge",
                    "-p",
                    r#"{"spec":{"imageRegistries":null}}"#,
                ],
            ),
        ),
        (
            "update",
            as_owner_stdin(t, &["replace", "-f", "-"], &tenant_json.stdout),
        ),
        ("apply", as_owner_stdin(t, &["apply", "-f", "-"], &loose)),
        (
            "server-side apply",
            as_owner_stdin(
                t,
                &["apply", "--server-side", "--force-conflicts", "-f", "-"],
                &loose,
            ),
        ),
    ];
    for (how, out) in attempts {
        assert!(
            !out.success && out.stderr.contains("forbidden"),
            "the owner's {how} ({who:?}) was not forbidden: {} {}",
            out.stdout,
            out.stderr
        );
    }
    let docker = pod(
        "docker",
        &r.spec(&[(
            "containers",
            "[{name: app, image: 'docker.io/library/nginx'}]",
        )]),
    );
    refused(&owner_apply(t, DRY_RUN, &docker), &["uses image"]);
    // The admin's patch goes through, and the webhook follows it.
    let out = kubectl(&[
        "patch",
        "tenant",
        t,
        "--type=merge",
        "-p",
        &format!(
            r#"{{"spec":{{"imageRegistries":{{"allowed":["registry.example.com/{t}/","docker.io/library/"]}}}}}}"#
        ),
    ]);
    assert!(out.success, "the admin's patch: {}", out.stderr);
    eventually("the wider registry list to apply", WAIT, || {
        owner_apply(t, DRY_RUN, &docker).success.then_some(())
    });
}

/// The CRD's schema keeps the guardrails well-formed: a runtime class default outside
/// `allowed` and an unknown Service type are refused by the apiserver, the same Tenant
/// without them is admitted.
#[test]
fn the_schema_refuses_malformed_guardrails() {
    cluster_with_canopy();
    let t = unique("schema");
    let tenant = |runtime: &str, services: &str| {
        format!(
            "apiVersion: canopy.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {t}}}\nspec:\n  \
             runtimeClasses: {runtime}\n  serviceTypes: {{allowed: [{services}]}}\n"
        )
    };
    let dry_run = |yaml: &str| {
        common::kubectl_with_stdin(&["apply", "--dry-run=server", "-f", "-"], Some(yaml))
    };
    let out = dry_run(&tenant("{allowed: [kata], default: gvisor}", "ClusterIP"));
    assert!(
        !out.success && out.stderr.contains("default must be one of allowed"),
        "{}",
        out.stderr
    );
    let out = dry_run(&tenant("{allowed: [kata]}", "Ingress"));
    assert!(
        !out.success && out.stderr.contains("spec.serviceTypes.allowed[0]"),
        "{}",
        out.stderr
    );
    let out = dry_run(&tenant(
        "{allowed: [gvisor, kata], default: gvisor}",
        "ClusterIP",
    ));
    assert!(out.success, "{}", out.stderr);
}
