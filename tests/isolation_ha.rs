//! `maxNamespaces` with two manager replicas serving the webhook: the apiserver reaches
//! them through a round-robin TCP proxy (as a Service spreads connections over its
//! endpoints), one of them leads and creates namespaces, and anchors race as the owner.
//! The limit must hold, and keep holding after the leader stops and the other takes over.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use canopy::controllers::writer::DEFAULT_WRITE_QPS;
use canopy::dev::client_for;
use canopy::leader::LeaderElectionArgs;
use canopy::manager::{Halves, WebhookListener, run_with};
use common::tenants::race_anchors_into_tenants;
use common::{CUSTOM, eventually, kubectl, spawn_on_own_runtime, start_plane};
use tokio::sync::oneshot;

static STOPS: Mutex<Vec<(String, oneshot::Sender<()>)>> = Mutex::new(Vec::new());
/// Connections the proxy handed to each replica.
static CONNECTIONS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

fn start_manager(kubeconfig: std::path::PathBuf, identity: &str, webhooks: WebhookListener) {
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
            webhooks: true,
        };
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = run_with(
            client,
            Some(webhooks),
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

/// Forwards each accepted connection to the next backend in turn (TLS passes through).
fn start_proxy(listener: std::net::TcpListener, backends: [u16; 2]) {
    spawn_on_own_runtime(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        let mut next = 0usize;
        while let Ok((mut inbound, _)) = listener.accept().await {
            let index = next % 2;
            next += 1;
            CONNECTIONS[index].fetch_add(1, Ordering::Relaxed);
            let backend = SocketAddr::from((Ipv4Addr::LOCALHOST, backends[index]));
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
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
            let serving = &plane.pki().loopback_serving;
            let second = WebhookListener::bind(
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                serving.cert_pem.as_bytes(),
                serving.key_pem.as_bytes(),
            )
            .await
            .map_err(|e| canopy::dev::DevError::Canopy(e.to_string()))?;
            let port = |l: &WebhookListener| l.local_addr().map_or(0, |a| a.port());
            let backends = [port(&prepared.webhooks), port(&second)];
            let proxy = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(|e| canopy::dev::DevError::Canopy(e.to_string()))?;
            proxy
                .set_nonblocking(true)
                .map_err(|e| canopy::dev::DevError::Canopy(e.to_string()))?;
            let proxy_port = proxy
                .local_addr()
                .map_err(|e| canopy::dev::DevError::Canopy(e.to_string()))?
                .port();
            start_proxy(proxy, backends);
            let admin = plane.client().await?;
            canopy::dev::canopy::register_webhooks(&admin, proxy_port, &plane.pki().ca.cert_pem)
                .await?;
            let kubeconfig = prepared.manager_kubeconfig.clone();
            start_manager(kubeconfig.clone(), "manager-a", prepared.webhooks);
            start_manager(kubeconfig, "manager-b", second);
            canopy::dev::canopy::wait_for_webhooks(&admin, Duration::from_secs(60)).await?;
            Ok(plane)
        })
    });
}

#[test]
fn max_namespaces_holds_with_two_replicas_and_across_a_handover() {
    setup();
    let first = eventually("a leader", Duration::from_secs(30), holder);
    race_anchors_into_tenants("ha-race");

    // The leader stops; the other replica takes over and is the authority now.
    let stop = {
        let mut stops = STOPS.lock().unwrap_or_else(|p| p.into_inner());
        let at = stops
            .iter()
            .position(|(id, _)| *id == first)
            .expect("the leader's stop");
        stops.remove(at).1
    };
    let _ = stop.send(());
    eventually("the other replica to lead", Duration::from_secs(30), || {
        holder().filter(|h| *h != first)
    });
    race_anchors_into_tenants("ha-after");
    eprintln!(
        "webhook connections per replica: {}, {}",
        CONNECTIONS[0].load(Ordering::Relaxed),
        CONNECTIONS[1].load(Ordering::Relaxed)
    );
}
