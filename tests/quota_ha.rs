//! HierarchicalResourceQuota usage survives the leader stopping in the middle of a burst
//! of creates: two manager replicas serve the webhook (through a round-robin proxy), the
//! leader is stopped while 50 Pods are being created across 10 namespaces, and once the
//! other replica leads, `status.used` equals the Pods that exist and no reservation is
//! left. Its own binary, because the stopped replica's webhook port stays in the proxy.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::managers::{holder, setup_two_replicas, stop_manager};
use common::tenants::{WAIT, create_tenant, owner_subnamespace};
use common::{eventually, json, kubectl_ok, unique};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};

fn setup() {
    setup_two_replicas();
}

#[test]
fn usage_matches_a_recount_after_the_leader_stops_during_a_burst() {
    setup();
    let first = eventually("a leader", Duration::from_secs(30), holder);
    let t = unique("qha");
    create_tenant(&t, 10, "  quota: {pods: \"30\"}\n");
    let mut namespaces = vec![t.clone()];
    for i in 0..9 {
        let sub = format!("{t}-{i}");
        owner_subnamespace(&t, &t, &sub);
        namespaces.push(sub);
    }
    eventually("the tenant quota to be counted", WAIT, || {
        let hrq = json(&["get", "hrq", "canopy-tenant-quota", "-n", &t, "-o", "json"])?;
        (hrq["status"]["used"]["pods"] == "0").then_some(())
    });

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let admitted = runtime.block_on({
        let namespaces = namespaces.clone();
        let first = first.clone();
        async move {
            let client = common::client().await;
            let start = Arc::new(tokio::sync::Barrier::new(51));
            let mut tasks = Vec::new();
            for ns in &namespaces {
                for i in 0..5 {
                    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
                    let pod: Pod = serde_json::from_value(serde_json::json!({
                        "metadata": {"name": format!("b{i}"), "namespace": ns},
                        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                          "limits": {"cpu": "10m", "memory": "16Mi"}}}]}
                    }))
                    .expect("a pod");
                    let start = start.clone();
                    tasks.push(tokio::spawn(async move {
                        start.wait().await;
                        // Spread the creates over the handover.
                        tokio::time::sleep(Duration::from_millis(u64::from(i as u32) * 150)).await;
                        api.create(&PostParams::default(), &pod).await.is_ok()
                    }));
                }
            }
            start.wait().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            // SIGTERM-like: the leader releases the Lease, its webhook server stops.
            stop_manager(&first);
            let mut admitted = 0;
            for task in tasks {
                admitted += usize::from(task.await.unwrap_or(false));
            }
            admitted
        }
    });
    assert!(admitted <= 30, "{admitted} Pods admitted under pods: 30");
    eventually("the other replica to lead", Duration::from_secs(30), || {
        holder().filter(|h| *h != first)
    });
    let exist: usize = namespaces
        .iter()
        .map(|ns| {
            kubectl_ok(&["get", "pods", "-n", ns, "-o", "name"])
                .lines()
                .count()
        })
        .sum();
    assert_eq!(exist, admitted);
    eventually(
        "used to match the Pods that exist, with no reservation left",
        WAIT,
        || {
            let hrq = json(&["get", "hrq", "canopy-tenant-quota", "-n", &t, "-o", "json"])?;
            (hrq["status"]["used"]["pods"] == exist.to_string().as_str()
                && hrq["status"]["reservations"].is_null())
            .then_some(())
        },
    );
    eprintln!("admitted {admitted} of 50 across the handover");
}
