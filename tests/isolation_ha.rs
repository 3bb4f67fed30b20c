//! `maxNamespaces` with two manager replicas serving the webhook: the apiserver reaches
//! them through a round-robin TCP proxy (as a Service spreads connections over its
//! endpoints), one of them leads and creates namespaces, and anchors race as the owner.
//! The limit must hold, and keep holding after the leader stops and the other takes over.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use canopy::manager::WebhookListener;
use common::managers::{holder, start_manager, stop_manager};
use common::tenants::race_anchors_into_tenants;
use common::{CUSTOM, eventually, spawn_on_own_runtime, start_plane};

/// Connections the proxy handed to each replica.
static CONNECTIONS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

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
            start_manager(kubeconfig.clone(), "manager-a", Some(prepared.webhooks));
            start_manager(kubeconfig, "manager-b", Some(second));
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
    stop_manager(&first);
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
