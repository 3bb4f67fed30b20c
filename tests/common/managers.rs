//! canopy managers started and stopped by a test binary with a setup of its own.

use std::path::PathBuf;
use std::sync::Mutex;

use canopy::controllers::writer::DEFAULT_WRITE_QPS;
use canopy::dev::client_for;
use canopy::leader::LeaderElectionArgs;
use canopy::manager::{Halves, WebhookListener, run_with};
use tokio::sync::oneshot;

use super::{kubectl, spawn_on_own_runtime};

/// Stops a manager when sent to (or dropped), by identity.
static STOPS: Mutex<Vec<(String, oneshot::Sender<()>)>> = Mutex::new(Vec::new());

/// Starts a manager as canopy's ServiceAccount (`kubeconfig`), campaigning for the Lease
/// as `identity`; it serves the webhooks on `webhooks` when given.
pub fn start_manager(kubeconfig: PathBuf, identity: &str, webhooks: Option<WebhookListener>) {
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
            webhooks: webhooks.is_some(),
        };
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = run_with(
            client,
            webhooks,
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

/// Stops the manager `identity` as SIGTERM would (it releases the Lease on the way out).
pub fn stop_manager(identity: &str) {
    let stop = {
        let mut stops = STOPS.lock().unwrap_or_else(|p| p.into_inner());
        let at = stops
            .iter()
            .position(|(id, _)| id == identity)
            .unwrap_or_else(|| panic!("no manager {identity} to stop"));
        stops.remove(at).1
    };
    let _ = stop.send(());
}

/// Who holds the Lease `canopy-manager`.
pub fn holder() -> Option<String> {
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
