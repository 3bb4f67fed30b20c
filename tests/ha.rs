//! High availability: two managers campaign for the Lease; when the leader stops, the
//! other takes over and propagation goes on.

mod common;

use std::time::Duration;

use canopy::manager::Listeners;
use common::managers::{holder, start_manager, stop_manager};
use common::{CUSTOM, apply, eventually, kubectl, kubectl_ok, start_plane, unique};

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
            start_manager(
                prepared.manager_kubeconfig.clone(),
                "manager-a",
                Listeners::default(),
            );
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
    start_manager(kubeconfig, "manager-b", Listeners::default());

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
    let stopped_at = std::time::Instant::now();
    stop_manager("manager-a");
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
