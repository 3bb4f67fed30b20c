//! High availability: two managers campaign for the Lease; when the leader stops, the
//! other takes over and propagation goes on.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use canopy::controllers::writer::DEFAULT_WRITE_QPS;
use canopy::dev::client_for;
use canopy::leader::LeaderElectionArgs;
use canopy::manager::{Halves, run_with};
use common::{
    CUSTOM, apply, eventually, kubectl, kubectl_ok, spawn_on_own_runtime, start_plane, unique,
};
use tokio::sync::oneshot;

/// Stops a manager when sent to (or dropped).
static STOPS: Mutex<Vec<(String, oneshot::Sender<()>)>> = Mutex::new(Vec::new());

fn start_manager(kubeconfig: std::path::PathBuf, identity: &str) {
    let (stop, stopped) = oneshot::channel::<()>();
    STOPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((identity.to_owned(), stop));
    let identity = identity.to_owned();
    spawn_on_own_runtime(async move {
        let client = client_for(&kubeconfig).await.expect("client");
        let election = LeaderElectionArgs {
            leader_election_identity: Some(identity.clone()),
            lease_duration_seconds: 6,
            ..LeaderElectionArgs::default()
        };
        let halves = Halves {
            controllers: true,
            webhooks: false,
        };
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = run_with(
            client,
            None,
            halves,
            Some(election),
            DEFAULT_WRITE_QPS,
            canopy::webhooks::certs::DEFAULT_WEBHOOK_CONFIGURATION.to_owned(),
            shutdown,
        )
        .await
        {
            eprintln!("manager {identity}: {e}");
        }
    });
}

fn holder() -> Option<String> {
    let out = kubectl(&[
        "get",
        "lease",
        "canopy-manager",
        "-n",
        "canopy-system",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    (out.success && !out.stdout.is_empty()).then_some(out.stdout)
}

fn setup() {
    CUSTOM.get_or_init(|| {
        start_plane(|plane| async move {
            let prepared = canopy::dev::canopy::prepare(&plane).await?;
            // Managers without webhook servers here: the apiserver must not call one
            // that is stopped, so the registration goes.
            let admin = plane.client().await?;
            let configs: kube::Api<
                k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
            > = kube::Api::all(admin);
            let _ = configs.delete("canopy", &Default::default()).await;
            drop(prepared.webhooks);
            start_manager(prepared.manager_kubeconfig.clone(), "manager-a");
            Ok(plane)
        })
    });
    eventually("manager-a to lead", Duration::from_secs(30), || {
        (holder().as_deref() == Some("manager-a")).then_some(())
    });
}

#[test]
fn propagation_goes_on_under_the_other_replica_when_the_leader_stops() {
    setup();
    let kubeconfig = {
        let dir = std::path::Path::new(&CUSTOM.get().expect("set up").kubeconfig)
            .parent()
            .expect("plane dir")
            .to_owned();
        dir.join("canopy-manager.kubeconfig")
    };
    start_manager(kubeconfig, "manager-b");

    let root = unique("ha");
    let child = format!("{root}-c");
    kubectl_ok(&["create", "namespace", &root]);
    kubectl_ok(&["create", "namespace", &child]);
    let out = apply(&format!(
        "apiVersion: canopy.dev/v1alpha1\nkind: HierarchyConfiguration\nmetadata: {{name: hierarchy, namespace: {child}}}\nspec: {{parent: {root}}}\n"
    ));
    assert!(out.success, "{}", out.stderr);
    kubectl_ok(&[
        "create",
        "role",
        "before",
        "--verb=get",
        "--resource=pods",
        "-n",
        &root,
    ]);
    eventually("the leader to propagate", Duration::from_secs(30), || {
        kubectl(&["get", "role", "before", "-n", &child])
            .success
            .then_some(())
    });
    assert_eq!(
        holder().as_deref(),
        Some("manager-a"),
        "the first manager still leads"
    );

    // Stop the leader (as SIGTERM does): it releases the Lease on the way out.
    let stop = {
        let mut stops = STOPS.lock().unwrap_or_else(|p| p.into_inner());
        let at = stops
            .iter()
            .position(|(id, _)| id == "manager-a")
            .expect("manager-a");
        stops.remove(at).1
    };
    let stopped_at = std::time::Instant::now();
    let _ = stop.send(());
    eventually("manager-b to take over", Duration::from_secs(30), || {
        (holder().as_deref() == Some("manager-b")).then_some(())
    });
    eprintln!("handover took {:.1}s", stopped_at.elapsed().as_secs_f64());

    kubectl_ok(&[
        "create",
        "role",
        "after",
        "--verb=list",
        "--resource=pods",
        "-n",
        &root,
    ]);
    eventually(
        "the new leader to propagate",
        Duration::from_secs(30),
        || {
            kubectl(&["get", "role", "after", "-n", &child])
                .success
                .then_some(())
        },
    );
}
