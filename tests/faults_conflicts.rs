//! Reliability under faults, for propagation conflicts: a conflict must not freeze its
//! source, and a restart must not flap the condition that reports it.
//!
//! This binary runs its own managers: one webhooks-only manager for the whole run (the
//! apiserver calls it), and one controllers-only manager that the restart test stops and
//! replaces.

mod common;

use std::path::PathBuf;
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use canopy::dev::client_for;
use canopy::manager::{Halves, Listeners, run_with};
use canopy::webhooks::certs::DEFAULT_WEBHOOK_CONFIGURATION;
use common::objects::set_parent;
use common::{
    CUSTOM, Kubectl, eventually, json, kubectl, kubectl_ok, kubectl_with_stdin,
    spawn_on_own_runtime, start_plane, unique,
};
use parking_lot::{Mutex, MutexGuard};
use serde_json::Value;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(60);

/// A controllers-only manager on a thread of its own.
struct Controllers {
    /// Its admin port (`/metrics`, `/healthz`, `/readyz`).
    admin_port: u16,
    stop: oneshot::Sender<()>,
    /// Sent once the manager returned and its runtime (with every task) is gone.
    stopped: mpsc::Receiver<()>,
}

impl Controllers {
    fn start(kubeconfig: PathBuf) -> Self {
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (stopped_tx, stopped) = mpsc::channel();
        let admin = common::loopback_admin_listener();
        let admin_port = admin.local_addr().map_or(0, |a| a.port());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                let client = client_for(&kubeconfig).await.expect("the manager's client");
                let halves = Halves {
                    controllers: true,
                    webhooks: false,
                };
                let shutdown = async move {
                    let _ = stop_rx.await;
                };
                // No election: this is the only controllers manager running.
                if let Err(e) = run_with(
                    client,
                    Listeners {
                        webhooks: None,
                        admin: Some(admin),
                    },
                    halves,
                    None,
                    None,
                    DEFAULT_WEBHOOK_CONFIGURATION.to_owned(),
                    shutdown,
                )
                .await
                {
                    eprintln!("controllers manager: {e}");
                }
            });
            drop(runtime);
            let _ = stopped_tx.send(());
        });
        Self {
            admin_port,
            stop,
            stopped,
        }
    }

    fn stop(self) {
        let _ = self.stop.send(());
        self.stopped
            .recv_timeout(Duration::from_secs(30))
            .expect("the controllers manager stops");
    }
}

static CONTROLLERS: Mutex<Option<Controllers>> = Mutex::new(None);
static MANAGER_KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();

/// The tests of this binary run one at a time: the restart test stops the controllers.
static SERIAL: Mutex<()> = Mutex::new(());

fn setup() -> MutexGuard<'static, ()> {
    let serial = SERIAL.lock();
    CUSTOM.get_or_init(|| {
        start_plane(|plane| async move {
            let prepared = canopy::dev::canopy::prepare(&plane).await?;
            let log = std::env::var_os("CANOPY_TEST_LOG")
                .map(PathBuf::from)
                .unwrap_or_else(|| plane.dir().join("logs").join("canopy.log"));
            common::log_to(&log);
            let kubeconfig = prepared.manager_kubeconfig.clone();
            let _ = MANAGER_KUBECONFIG.set(kubeconfig.clone());
            let listener = prepared.webhooks;
            {
                let kubeconfig = kubeconfig.clone();
                spawn_on_own_runtime(async move {
                    let client = client_for(&kubeconfig).await.expect("the webhooks' client");
                    let halves = Halves {
                        controllers: false,
                        webhooks: true,
                    };
                    if let Err(e) = run_with(
                        client,
                        Listeners::webhooks(listener),
                        halves,
                        None,
                        None,
                        DEFAULT_WEBHOOK_CONFIGURATION.to_owned(),
                        std::future::pending(),
                    )
                    .await
                    {
                        eprintln!("webhooks manager: {e}");
                    }
                });
            }
            *CONTROLLERS.lock() = Some(Controllers::start(kubeconfig));
            canopy::dev::canopy::wait_for_webhooks(&plane.client().await?, WAIT).await?;
            Ok(plane)
        })
    });
    serial
}

/// A manager running only the controllers (no webhook server, so no webhook port) serves
/// `/metrics`, `/healthz` and `/readyz` on its admin port.
#[test]
fn a_controllers_only_manager_serves_metrics_and_probes() {
    let _serial = setup();
    let port = CONTROLLERS
        .lock()
        .as_ref()
        .map(|c| c.admin_port)
        .expect("the controllers manager runs");
    assert_eq!(common::http_get(port, "/healthz"), (200, "ok\n".to_owned()));
    eventually("the controllers manager to be ready", WAIT, || {
        (common::http_get(port, "/readyz") == (200, "ok\n".to_owned())).then_some(())
    });
    let metrics = eventually("a namespace reconciled, on /metrics", WAIT, || {
        let (status, text) = common::http_get(port, "/metrics");
        (status == 200
            && text.contains(
                r#"canopy_controller_reconciles_total{controller="namespace",outcome="success"}"#,
            ))
        .then_some(text)
    });
    for series in [
        r#"canopy_controller_queue_depth{controller="namespace"}"#,
        r#"canopy_watch_stale{watch="namespaces"} 0"#,
        "canopy_controller_propagation_conflicts ",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }
    // Reviews are counted by the webhook half, which this manager does not run.
    assert!(
        !metrics.contains("canopy_admission_reviews_total{"),
        "{metrics}"
    );
}

fn restart_controllers() {
    let mut slot = CONTROLLERS.lock();
    if let Some(running) = slot.take() {
        running.stop();
    }
    let kubeconfig = MANAGER_KUBECONFIG.get().expect("set up").clone();
    *slot = Some(Controllers::start(kubeconfig));
}

/// The `BadConfiguration` condition of `namespace` when it reports a conflict in `target`.
fn conflict_condition(namespace: &str, target: &str) -> Option<Value> {
    let hc = json(&["get", "hc", "hierarchy", "-n", namespace, "-o", "json"])?;
    hc["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| {
            c["type"] == "BadConfiguration"
                && c["reason"] == "CannotPropagateObject"
                && c["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&format!("{target:?}")))
        })
        .cloned()
}

fn as_user(user: &str, args: &[&str]) -> Kubectl {
    let mut all = vec!["--as", user];
    all.extend_from_slice(args);
    kubectl(&all)
}

fn as_user_stdin(user: &str, args: &[&str], stdin: &str) -> Kubectl {
    let mut all = vec!["--as", user];
    all.extend_from_slice(args);
    kubectl_with_stdin(&all, Some(stdin))
}

fn source_yaml(namespace: &str, annotations: &str, subjects: &[&str]) -> String {
    let subjects: String = subjects
        .iter()
        .map(|s| format!("- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {s}}}\n"))
        .collect();
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: shared\n  \
         namespace: {namespace}\n  annotations: {{{annotations}}}\nroleRef: {{apiGroup: \
         rbac.authorization.k8s.io, kind: ClusterRole, name: view}}\nsubjects:\n{subjects}"
    )
}

/// Fault: once a descendant held a local object of a source's name, every update of the
/// source was refused, so Git sync stopped and access could not be revoked.
#[test]
fn a_conflict_does_not_freeze_its_source_but_refuses_a_new_one() {
    let _serial = setup();
    let src = unique("fc");
    let (spared, held) = (format!("{src}-spared"), format!("{src}-held"));
    for ns in [&src, &spared, &held] {
        kubectl_ok(&["create", "namespace", ns]);
    }
    set_parent(&spared, &src);
    for ns in [&spared, &held] {
        kubectl_ok(&[
            "create",
            "rolebinding",
            "shared",
            "--clusterrole=view",
            "--user=carol",
            "-n",
            ns,
        ]);
    }
    let admin = format!("{src}-admin");
    kubectl_ok(&[
        "create",
        "rolebinding",
        "namespace-admin",
        "--clusterrole=admin",
        &format!("--user={admin}"),
        "-n",
        &src,
    ]);
    let ssa = [
        "apply",
        "--server-side",
        "--field-manager=gitops",
        "-f",
        "-",
    ];
    let tree_select = format!("propagate.canopy.dev/treeSelect: '!{spared}'");
    let source = source_yaml(&src, &tree_select, &["alice", "bob"]);
    let out = as_user_stdin(&admin, &ssa, &source);
    assert!(out.success, "the source spares {spared}: {}", out.stderr);

    // The conflict arises by moving a namespace with a local object under the source.
    set_parent(&held, &src);
    let reported = eventually("the conflict to be reported", WAIT, || {
        conflict_condition(&src, &held)
    });

    // Updates that do not make the conflict worse are admitted.
    let out = as_user_stdin(&admin, &ssa, &source);
    assert!(out.success, "an identical re-apply: {}", out.stderr);
    let out = as_user(
        &admin,
        &[
            "patch",
            "rolebinding",
            "shared",
            "-n",
            &src,
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/subjects/1"}]"#,
        ],
    );
    assert!(out.success, "removing a subject: {}", out.stderr);
    let out = as_user(
        &admin,
        &["label", "rolebinding", "shared", "-n", &src, "team=blue"],
    );
    assert!(out.success, "a label change: {}", out.stderr);
    let now = json(&["get", "rolebinding", "shared", "-n", &src, "-o", "json"]).expect("source");
    assert_eq!(now["subjects"].as_array().map(Vec::len), Some(1));
    assert_eq!(now["subjects"][0]["name"], "alice");
    assert_eq!(now["metadata"]["labels"]["team"], "blue");

    // An update that adds a conflicting namespace is refused, naming only that one.
    let widened = source_yaml(&src, "", &["alice"]);
    let mut force = ssa.to_vec();
    force.insert(3, "--force-conflicts");
    let out = as_user_stdin(&admin, &force, &widened);
    assert!(!out.success, "widening into {spared} was admitted");
    assert!(
        out.stderr.contains(&format!("{spared:?}")) || out.stderr.contains(&spared),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains(&held),
        "only the new conflict is named: {}",
        out.stderr
    );
    let now = json(&["get", "rolebinding", "shared", "-n", &src, "-o", "json"]).expect("source");
    assert!(
        now["metadata"]["annotations"]
            .get("propagate.canopy.dev/treeSelect")
            .is_some(),
        "the refused update changed nothing"
    );

    // The conflict stays reported, as it was.
    std::thread::sleep(Duration::from_secs(2));
    let still = conflict_condition(&src, &held).expect("the conflict is still reported");
    assert_eq!(
        still["lastTransitionTime"], reported["lastTransitionTime"],
        "{still}"
    );
    let local = json(&["get", "rolebinding", "shared", "-n", &held, "-o", "json"]).expect("local");
    assert_eq!(
        local["subjects"][0]["name"], "carol",
        "the local object stays"
    );
}

/// Fault: after a restart the namespace reconciler planned before propagation knew the
/// conflicts, removing `CannotPropagateObject` and adding it again seconds later.
#[test]
fn a_restart_does_not_flap_a_conflict_condition() {
    let _serial = setup();
    let root = unique("fr");
    let child = format!("{root}-child");
    for ns in [&root, &child] {
        kubectl_ok(&["create", "namespace", ns]);
    }
    for (ns, verb) in [(&child, "get"), (&root, "list")] {
        kubectl_ok(&[
            "create",
            "role",
            "mine",
            &format!("--verb={verb}"),
            "--resource=pods",
            "-n",
            ns,
        ]);
    }
    set_parent(&child, &root);
    let before = eventually("the conflict to be reported", WAIT, || {
        conflict_condition(&root, &child)
    });
    // Settled: nothing else is left to write into the root's HierarchyConfiguration.
    std::thread::sleep(Duration::from_secs(3));
    let hc = || json(&["get", "hc", "hierarchy", "-n", &root, "-o", "json"]).expect("hc");
    let settled = hc();
    let version = settled["metadata"]["resourceVersion"].clone();

    restart_controllers();
    let restarted = Instant::now();
    // Proof the new manager propagates: a new source reaches the child.
    kubectl_ok(&[
        "create",
        "role",
        "probe",
        "--verb=get",
        "--resource=pods",
        "-n",
        &root,
    ]);
    let mut propagated = None;
    let mut polls = 0;
    while restarted.elapsed() < WAIT {
        polls += 1;
        let now = conflict_condition(&root, &child).unwrap_or_else(|| {
            panic!(
                "the condition was removed {:.1}s after the restart: {}",
                restarted.elapsed().as_secs_f64(),
                hc()["status"]
            )
        });
        assert_eq!(
            now["lastTransitionTime"], before["lastTransitionTime"],
            "the condition was set again: {now}"
        );
        if propagated.is_none() && kubectl(&["get", "role", "probe", "-n", &child]).success {
            propagated = Some(Instant::now());
        }
        // Watch a while past the new manager's first propagation.
        if propagated.is_some_and(|at| at.elapsed() > Duration::from_secs(5)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(propagated.is_some(), "the new manager never propagated");
    eprintln!(
        "{polls} polls over {:.1}s",
        restarted.elapsed().as_secs_f64()
    );
    let after = hc();
    assert_eq!(
        after["metadata"]["resourceVersion"], version,
        "the HierarchyConfiguration was written again: before {settled}, after {after}"
    );
}
