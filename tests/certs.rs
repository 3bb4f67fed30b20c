//! Self-managed webhook certificates: the manager makes its CA, publishes the caBundle,
//! and rotates its serving certificate without a restart while the apiserver keeps
//! calling it; the expiry it reports for the metrics is the served certificate's.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use canopy::dev::client_for;
use canopy::manager::{Halves, Listeners, WebhookListener, run};
use canopy::webhooks::certs::{CertArgs, CertManager};
use common::{CUSTOM, eventually, spawn_on_own_runtime, start_plane};

/// The serial number of the certificate served on `port`.
fn served_serial(port: u16) -> Option<String> {
    let shell = format!(
        "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -serial"
    );
    let out = Command::new("sh").args(["-c", &shell]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    text.starts_with("serial=").then_some(text)
}

/// The PEM of the certificate served on `port`.
fn served_pem(port: u16) -> Option<String> {
    let shell =
        format!("openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509");
    let out = Command::new("sh").args(["-c", &shell]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.contains("BEGIN CERTIFICATE").then_some(text)
}

/// The gauge `canopy_webhook_certificate_expiration_timestamp_seconds` is served from.
static EXPIRY: std::sync::OnceLock<prometheus_client::metrics::gauge::Gauge> =
    std::sync::OnceLock::new();

#[test]
fn the_manager_publishes_its_ca_and_rotates_its_certificate_without_a_restart() {
    let port = std::sync::OnceLock::new();
    CUSTOM.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        let cluster = start_plane(move |plane| async move {
            let prepared = canopy::dev::canopy::prepare(&plane).await?;
            drop(prepared.webhooks);
            let kubeconfig = prepared.manager_kubeconfig.clone();
            // A listener of the manager's own, registered with a caBundle that does not
            // sign its certificate: only the manager's patch can make the calls work.
            let port = canopy::dev::free_port()?;
            let admin = plane.client().await?;
            canopy::dev::canopy::register_webhooks(&admin, port, &plane.pki().ca.cert_pem).await?;
            let _ = tx.send(port);
            spawn_on_own_runtime(async move {
                let client = client_for(&kubeconfig).await.expect("client");
                let args = CertArgs {
                    self_signed_certificates: true,
                    ca_secret: "canopy-webhook-ca".into(),
                    webhook_service: "canopy-webhook".into(),
                    webhook_configuration: "canopy".into(),
                    extra_hosts: vec!["127.0.0.1".into()],
                    certificate_validity_seconds: 30,
                };
                let certs = CertManager::start(client.clone(), args, "canopy-system".into())
                    .await
                    .expect("certificates");
                let _ = EXPIRY.set(certs.resolver().expiry());
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                let listener =
                    WebhookListener::bind_with_resolver(addr, certs.resolver()).expect("listener");
                tokio::spawn(certs.run());
                let halves = Halves {
                    controllers: true,
                    webhooks: true,
                };
                let listeners = Listeners::webhooks(listener);
                let _ = run(client, listeners, halves, std::future::pending()).await;
            });
            canopy::dev::canopy::wait_for_webhooks(&admin, Duration::from_secs(60)).await?;
            Ok(plane)
        });
        let _ = port.set(rx.recv().unwrap_or_default());
        cluster
    });
    let port = *port.get().expect("the webhook port");
    // The apiserver already calls the manager (start-up waited for a refused probe), so
    // the caBundle it trusts is the manager's CA.
    let first = eventually("a served certificate", Duration::from_secs(10), || {
        served_serial(port)
    });
    let second = eventually("the certificate to rotate", Duration::from_secs(60), || {
        served_serial(port).filter(|s| *s != first)
    });
    assert_ne!(first, second);
    // The expiry for the metrics follows the rotation: it is the served certificate's.
    let expiry = EXPIRY.get().expect("the manager started");
    eventually(
        "the expiry of the served certificate",
        Duration::from_secs(30),
        || {
            let served = canopy::webhooks::certs::pem_not_after(served_pem(port)?.as_bytes())?;
            (expiry.get() == served).then_some(())
        },
    );
    // And the rotated certificate is still trusted.
    let forged = common::apply(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: rotation-probe\n  labels: {canopy.dev/tenant: x}\n",
    );
    assert!(
        !forged.success && forged.stderr.contains("only canopy may set"),
        "{}",
        forged.stderr
    );
}
