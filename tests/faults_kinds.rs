//! A configured kind canopy cannot use never takes the webhooks down, and is picked up
//! once it can be used, without a restart.
//!
//! Two manager replicas serve the webhooks through a round-robin TCP proxy (as a
//! Service spreads connections over its endpoints), one of them leads. The tests share
//! one cluster and its one CanopyConfiguration, so they hold a lock and each writes the
//! whole list of kinds it needs.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::managers::start_two_replicas;
use common::objects::{bad_configuration, configure_kinds, create_namespace, make_subnamespace};
use common::{CUSTOM, apply, eventually, json, kubectl, kubectl_ok};
use common::{start_plane, unique};
use parking_lot::Mutex;

const WAIT: Duration = Duration::from_secs(60);

/// The tests change the one CanopyConfiguration: one at a time.
static CONFIGURATION: Mutex<()> = Mutex::new(());

/// The admin ports (`/metrics`, `/readyz`) of the two replicas.
static REPLICAS: OnceLock<[u16; 2]> = OnceLock::new();

fn setup() {
    CUSTOM.get_or_init(|| {
        start_plane(|plane| async move {
            let prepared = canopy::dev::canopy::prepare(&plane).await?;
            let log = std::env::var_os("CANOPY_TEST_LOG")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| plane.dir().join("logs").join("canopy.log"));
            common::log_to(&log);
            let replicas = start_two_replicas(&plane, prepared).await?;
            let _ = REPLICAS.set(replicas.admin_ports);
            Ok(plane)
        })
    });
}

/// `GET path` on one replica's admin port: the status code and the body.
fn get_from_replica(replica: usize, path: &str) -> (u16, String) {
    let ports = REPLICAS.get().expect("setup() ran");
    common::http_get(ports[replica], path)
}

/// Asserts that both replicas answer `/readyz` with 200 for `period`.
#[track_caller]
fn both_replicas_stay_ready(period: Duration) {
    let start = Instant::now();
    while start.elapsed() < period {
        for replica in 0..2 {
            let (status, body) = get_from_replica(replica, "/readyz");
            assert_eq!(
                status,
                200,
                "replica {replica} is not ready after {:?}: {body}",
                start.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until both replicas have loaded what they need to answer (right after the start,
/// their first lists may still be under way).
fn both_replicas_become_ready() {
    eventually("both replicas to be ready", WAIT, || {
        (0..2)
            .all(|replica| get_from_replica(replica, "/readyz").0 == 200)
            .then_some(())
    });
}

/// The value of `canopy_controller_propagation_kind_ready` for a kind on a replica.
fn kind_ready_metric(replica: usize, group: &str, resource: &str) -> Option<String> {
    let (_, body) = get_from_replica(replica, "/metrics");
    body.lines()
        .find(|l| {
            l.starts_with("canopy_controller_propagation_kind_ready{")
                && l.contains(&format!("group=\"{group}\""))
                && l.contains(&format!("resource=\"{resource}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .map(str::to_owned)
}

/// A ClusterRole with every verb canopy needs on `resources` of `group`, bound to
/// canopy's ServiceAccount.
fn grant(name: &str, group: &str, resources: &str) {
    let out = apply(&format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {name}}}
rules:
- apiGroups: ["{group}"]
  resources: [{resources}]
  verbs: [get, list, watch, create, update, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {name}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {name}}}
subjects: [{{kind: ServiceAccount, name: canopy, namespace: canopy-system}}]
"#
    ));
    assert!(out.success, "{}", out.stderr);
}

/// A root namespace and a subnamespace of it made through an anchor (which the anchor
/// webhook must admit and the leader must act on); returns their names.
fn tree(prefix: &str) -> (String, String) {
    let root = unique(prefix);
    create_namespace(&root);
    let child = format!("{root}-child");
    make_subnamespace(&root, &child, WAIT);
    (root, child)
}

/// canopy's namespace webhook still answers: a forged tenant label is refused by it.
#[track_caller]
fn namespace_webhook_answers() {
    let forged = apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n  labels: {{canopy.dev/tenant: someone}}\n",
        unique("forged")
    ));
    assert!(
        !forged.success && forged.stderr.contains("only canopy may set"),
        "canopy refuses a forged tenant label: {forged:?}"
    );
}

#[test]
fn an_unreadable_kind_keeps_every_replica_ready_and_is_picked_up_once_granted() {
    setup();
    let _lock = CONFIGURATION.lock();
    both_replicas_become_ready();

    // canopy has no right to list Secrets.
    configure_kinds(&["{group: '', resource: secrets, mode: AllowPropagate}"]);
    // The leader resolved the kind: its rule is in the propagated webhook.
    eventually("secrets in the propagated webhook's rules", WAIT, || {
        let config = json(&[
            "get",
            "validatingwebhookconfiguration",
            "canopy",
            "-o",
            "json",
        ])?;
        let rules = config["webhooks"]
            .as_array()?
            .iter()
            .find(|w| w["name"] == "propagated.canopy.dev")?["rules"]
            .to_string();
        rules.contains("\"secrets\"").then_some(())
    });
    // Every replica stays ready while it cannot list Secrets, and admissions are answered.
    both_replicas_stay_ready(Duration::from_secs(5));
    namespace_webhook_answers();
    let (root, child) = tree("faults-secrets");

    // The kind is reported, by name, with the error.
    let condition = eventually("BadConfiguration naming secrets", WAIT, || {
        bad_configuration().filter(|c| c["status"] == "True")
    });
    assert_eq!(condition["reason"], "KindUnavailable", "{condition}");
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(message.contains("secrets"), "{condition}");
    // canopy asked the apiserver what it may do: the missing verbs, and the fix.
    assert!(
        message.contains("secrets: canopy's ServiceAccount may not get, list, watch"),
        "{condition}"
    );
    assert!(
        message.contains("canopy.dev/aggregate-to-manager=true"),
        "{condition}"
    );
    for replica in 0..2 {
        eventually("the kind-ready metric at 0", WAIT, || {
            (kind_ready_metric(replica, "", "secrets").as_deref() == Some("0")).then_some(())
        });
    }
    let events = kubectl_ok(&[
        "get",
        "events",
        "-A",
        "--field-selector",
        "reason=KindUnavailable",
        "-o",
        "json",
    ]);
    assert!(
        events.contains("secrets"),
        "an event names the kind: {events}"
    );

    // A Secret that opts in is admitted although its conflicts cannot be checked.
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: shared\n  namespace: {root}\n  annotations: {{propagate.canopy.dev/all: \"true\"}}\nstringData: {{token: abc}}\n"
    );
    let out = apply(&secret);
    assert!(out.success, "the source is admitted: {}", out.stderr);

    // Once canopy may use Secrets, the copy appears without a restart.
    grant("canopy-faults-secrets", "", "secrets");
    eventually(
        &format!("secret {child}/shared"),
        Duration::from_secs(90),
        || json(&["get", "secret", "shared", "-n", &child, "-o", "json"]),
    );
    eventually("BadConfiguration to clear", WAIT, || {
        bad_configuration().filter(|c| c["status"] == "False")
    });
    for replica in 0..2 {
        eventually("the kind-ready metric at 1", WAIT, || {
            (kind_ready_metric(replica, "", "secrets").as_deref() == Some("1")).then_some(())
        });
    }
    both_replicas_stay_ready(Duration::from_secs(1));
    // With the index synced, the source-conflict check is back: a source whose copy
    // would overwrite a local Secret in the child is refused.
    kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "local",
        "-n",
        &child,
        "--from-literal=a=b",
    ]);
    let out = apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: local\n  namespace: {root}\n  annotations: {{propagate.canopy.dev/all: \"true\"}}\nstringData: {{token: abc}}\n"
    ));
    assert!(
        !out.success && out.stderr.contains("would be copied into descendants"),
        "{out:?}"
    );
}

#[test]
fn a_kind_whose_crd_comes_later_is_picked_up_without_a_restart() {
    setup();
    let _lock = CONFIGURATION.lock();
    grant("canopy-faults-widgets", "faults.canopy.dev", "widgets");
    configure_kinds(&["{group: faults.canopy.dev, resource: widgets, mode: Propagate}"]);

    // Reported as unavailable while the kind is not served. (Looked at without failing
    // at once, so that on a build without the report the missing copies fail first.)
    let start = Instant::now();
    let mut reported = None;
    while start.elapsed() < Duration::from_secs(20) && reported.is_none() {
        reported = bad_configuration().filter(|c| {
            c["status"] == "True"
                && c["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("widgets.faults.canopy.dev"))
        });
        std::thread::sleep(Duration::from_millis(250));
    }
    both_replicas_stay_ready(Duration::from_secs(1));

    let out = apply(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.faults.canopy.dev}
spec:
  group: faults.canopy.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#,
    );
    assert!(out.success, "{}", out.stderr);
    eventually("the Widget CRD to be served", WAIT, || {
        kubectl(&["get", "widgets", "-A"]).success.then_some(())
    });
    let (root, child) = tree("faults-widgets");
    eventually("the source Widget", WAIT, || {
        apply(&format!(
            "apiVersion: faults.canopy.dev/v1\nkind: Widget\nmetadata: {{name: gear, namespace: {root}}}\nspec: {{teeth: 12}}\n"
        ))
        .success
        .then_some(())
    });
    let copy = eventually(&format!("widget {child}/gear"), WAIT, || {
        json(&["get", "widget", "gear", "-n", &child, "-o", "json"])
    });
    assert_eq!(copy["spec"]["teeth"], 12);
    assert_eq!(
        copy["metadata"]["labels"]["canopy.dev/inherited-from"],
        root.as_str()
    );

    let reported = reported.expect("BadConfiguration named the kind while it was not served");
    assert_eq!(reported["reason"], "KindUnavailable", "{reported}");
    eventually("BadConfiguration to clear", WAIT, || {
        bad_configuration().filter(|c| c["status"] == "False")
    });
}
