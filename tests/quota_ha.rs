//! HierarchicalResourceQuota usage survives the leader being killed (SIGKILL) in the
//! middle of a burst of creates: two `canopy manager` processes serve the webhook (through
//! a round-robin proxy), the leader is killed while 50 Pods are being created across 10
//! namespaces (its reservations half written, its answers cut), and once the other replica
//! leads, `status.used` equals the Pods that exist and no reservation is left. Its own
//! binary, because the killed replica's webhook port stays in the proxy.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::managers::{ManagerProcess, free_port, holder, start_proxy};
use common::tenants::{WAIT, create_tenant, owner_subnamespace};
use common::{CUSTOM, eventually, json, kubectl_ok, start_plane, unique};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};

/// What the two processes need: canopy's kubeconfig, the serving certificate's files and
/// the ports the proxy forwards to.
struct Setup {
    kubeconfig: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    ports: [u16; 2],
}

static SETUP: OnceLock<Setup> = OnceLock::new();

/// The control plane with the webhooks registered behind a proxy to two ports; the
/// managers are started by the test (their parent must outlive them).
fn setup() -> &'static Setup {
    CUSTOM.get_or_init(|| {
        start_plane(|plane| async move {
            let prepared = canopy::dev::canopy::prepare(&plane).await?;
            // The processes listen themselves.
            drop(prepared.webhooks);
            let dir = prepared
                .manager_kubeconfig
                .parent()
                .map(PathBuf::from)
                .unwrap_or_default();
            let serving = &plane.pki().loopback_serving;
            let (cert, key) = (dir.join("serving.crt"), dir.join("serving.key"));
            let write = |p: &PathBuf, s: &str| {
                std::fs::write(p, s).map_err(|e| canopy::dev::DevError::Canopy(e.to_string()))
            };
            write(&cert, &serving.cert_pem)?;
            write(&key, &serving.key_pem)?;
            let ports = [free_port(), free_port()];
            let proxy = std::net::TcpListener::bind(("127.0.0.1", 0))
                .map_err(|e| canopy::dev::DevError::Canopy(e.to_string()))?;
            proxy
                .set_nonblocking(true)
                .map_err(|e| canopy::dev::DevError::Canopy(e.to_string()))?;
            let proxy_port = proxy.local_addr().map_or(0, |a| a.port());
            start_proxy(proxy, ports);
            let admin = plane.client().await?;
            canopy::dev::canopy::register_webhooks(&admin, proxy_port, &plane.pki().ca.cert_pem)
                .await?;
            let _ = SETUP.set(Setup {
                kubeconfig: prepared.manager_kubeconfig,
                cert,
                key,
                ports,
            });
            Ok(plane)
        })
    });
    SETUP.get().expect("the setup")
}

fn manager(setup: &Setup, identity: &str, port: u16) -> ManagerProcess {
    let addr = format!("127.0.0.1:{port}");
    let mut process = ManagerProcess::new(
        &[
            "--webhook-addr",
            &addr,
            "--admin-addr",
            "127.0.0.1:0",
            "--tls-cert-file",
            &setup.cert.to_string_lossy(),
            "--tls-key-file",
            &setup.key.to_string_lossy(),
            "--leader-election-identity",
            identity,
            "--lease-duration-seconds",
            "6",
        ],
        setup.kubeconfig.clone(),
        // Kept after the run (the plane's directory is not).
        std::env::temp_dir().join(format!("canopy-quota-ha-{identity}.log")),
    );
    process.start();
    process
}

#[test]
fn usage_matches_a_recount_after_the_leader_is_killed_during_a_burst() {
    let setup = setup();
    let mut managers = [
        ("manager-a", manager(setup, "manager-a", setup.ports[0])),
        ("manager-b", manager(setup, "manager-b", setup.ports[1])),
    ];
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime
        .block_on(async {
            let admin = common::client().await;
            canopy::dev::canopy::wait_for_webhooks(&admin, Duration::from_secs(60)).await
        })
        .expect("the webhooks answer");
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

    let victim = managers
        .iter_mut()
        .find(|(identity, _)| *identity == first)
        .map(|(_, process)| process)
        .expect("the leader is one of the two");
    let admitted = runtime.block_on({
        let namespaces = namespaces.clone();
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
            // SIGKILL: the Lease is not released (the other replica waits for it to
            // expire), reservations in flight are left half done.
            victim.kill();
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
    eprintln!("admitted {admitted} of 50 across the kill and the handover");
}
