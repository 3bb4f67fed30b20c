//! `canopy manager`: the controllers and the webhook server in one process, sharing one
//! set of watchers, one Forest and one metrics registry, served on the admin port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::Client;
use kube::api::{Api, PostParams};
use tracing::info;

use crate::admin::{self, AdminListener, Metrics, Readiness};
use crate::controllers;
use crate::controllers::propagation::Propagation;
use crate::controllers::writer::Writer;
use crate::forest::watch;
use crate::leader::{self, LeaderElectionArgs};
use crate::webhooks::Webhooks;
use crate::webhooks::certs::DEFAULT_WEBHOOK_CONFIGURATION;
use crate::webhooks::server::{self, Server};

/// Arguments of `canopy manager`.
#[derive(Clone, Debug, clap::Args)]
pub struct ManagerArgs {
    /// Where the webhook server listens.
    #[arg(long, default_value = "0.0.0.0:9443")]
    pub webhook_addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (plain HTTP), whichever
    /// halves run.
    #[arg(long, default_value = admin::DEFAULT_ADMIN_ADDR)]
    pub admin_addr: SocketAddr,
    /// PEM certificate chain the webhook server presents.
    #[arg(long, required_unless_present_any = ["controllers_only", "self_signed_certificates"])]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, required_unless_present_any = ["controllers_only", "self_signed_certificates"])]
    pub tls_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub certificates: crate::webhooks::certs::CertArgs,
    /// Run only the controllers (no webhook server).
    #[arg(long = "controllers", conflicts_with = "webhooks_only")]
    pub controllers_only: bool,
    /// Run only the webhook server (no controllers).
    #[arg(long = "webhooks")]
    pub webhooks_only: bool,
    /// Most writes of copies per second, a client-side cap on top of the bound on writes in
    /// flight; off by default (the apiserver's flow control paces canopy, and its 429s
    /// are honoured). For an apiserver without API Priority and Fairness.
    #[arg(long)]
    pub write_qps: Option<u32>,
    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("cannot find out who canopy runs as (SelfSubjectReview): {0}")]
    Identity(#[source] kube::Error),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    #[error(transparent)]
    Leader(#[from] crate::leader::LeaderError),
    #[error(transparent)]
    Certificates(#[from] crate::webhooks::certs::CertError),
}

/// The webhook server's listening socket and TLS settings, bound before the manager runs
/// so callers (tests, `canopy dev`) know the port to register; and the serving
/// certificate's notAfter when known, for the metrics.
pub struct WebhookListener {
    server: Server,
    certificate_expiry: Option<prometheus_client::metrics::gauge::Gauge>,
}

impl WebhookListener {
    pub async fn bind(
        addr: SocketAddr,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, ManagerError> {
        let tls = server::tls_config(cert_pem, key_pem)?;
        // Read once: certificates from files are loaded at the start only, so the one
        // served until a restart is this one (a renewal on disk needs a restart, which
        // the expiry alert then asks for).
        let expiry = crate::webhooks::certs::pem_not_after(cert_pem).map(|at| {
            let gauge = prometheus_client::metrics::gauge::Gauge::default();
            gauge.set(at);
            gauge
        });
        if expiry.is_none() {
            tracing::warn!(
                "cannot read the serving certificate's expiry; \
                 canopy_webhook_certificate_expiration_timestamp_seconds is not served"
            );
        }
        Ok(Self {
            server: Server::bind(addr, tls)?,
            certificate_expiry: expiry,
        })
    }

    pub async fn from_args(args: &ManagerArgs) -> Result<Self, ManagerError> {
        let read = |path: &Option<PathBuf>| -> Result<Vec<u8>, ManagerError> {
            let path = path.clone().unwrap_or_default();
            std::fs::read(&path).map_err(|source| ManagerError::Read { path, source })
        };
        Self::bind(
            args.webhook_addr,
            &read(&args.tls_cert_file)?,
            &read(&args.tls_key_file)?,
        )
        .await
    }

    /// A listener whose certificate comes from `resolver` (rotated without a restart).
    pub fn bind_with_resolver(
        addr: SocketAddr,
        resolver: std::sync::Arc<crate::webhooks::certs::RotatingCertificate>,
    ) -> Result<Self, ManagerError> {
        let expiry = resolver.expiry();
        let tls = server::tls_config_with_resolver(resolver)?;
        Ok(Self {
            server: Server::bind(addr, tls)?,
            certificate_expiry: Some(expiry),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.local_addr()
    }
}

/// The sockets a manager serves on, bound by the caller (so it knows the ports): the
/// webhooks' (HTTPS, served when the webhook half runs) and the admin port's.
#[derive(Default)]
pub struct Listeners {
    pub webhooks: Option<WebhookListener>,
    pub admin: Option<AdminListener>,
}

impl Listeners {
    /// Only the webhook server, no admin port.
    pub fn webhooks(listener: WebhookListener) -> Self {
        Self {
            webhooks: Some(listener),
            admin: None,
        }
    }

    /// Serves the admin port on `admin` too.
    pub fn with_admin(mut self, admin: AdminListener) -> Self {
        self.admin = Some(admin);
        self
    }
}

/// Which halves to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Halves {
    pub controllers: bool,
    pub webhooks: bool,
}

/// Runs until `shutdown` resolves.
pub async fn run(
    client: Client,
    listeners: Listeners,
    halves: Halves,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ManagerError> {
    run_with(
        client,
        listeners,
        halves,
        None,
        None,
        DEFAULT_WEBHOOK_CONFIGURATION.to_owned(),
        shutdown,
    )
    .await
}

/// Like `run`, with the controllers gated by leader election when `election` is given
/// (without it, this process is the only writer and leads at once); the leader keeps the
/// `propagated.canopy.dev` rules of the ValidatingWebhookConfiguration
/// `webhook_configuration`.
///
/// The process's metrics registry is made here and its parts handed to the watchers, the
/// writer and the webhooks; the admin port (if `listeners` has one) serves it.
pub async fn run_with(
    client: Client,
    listeners: Listeners,
    halves: Halves,
    election: Option<LeaderElectionArgs>,
    write_qps: Option<u32>,
    webhook_configuration: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ManagerError> {
    let username = whoami(&client).await?;
    info!(%username, "canopy manager starting");
    let mut metrics = Metrics::new();
    if let (true, Some(expiry)) = (
        halves.webhooks,
        listeners
            .webhooks
            .as_ref()
            .and_then(|l| l.certificate_expiry.clone()),
    ) {
        metrics.register_certificate_expiry(expiry);
    }
    let metrics = Arc::new(metrics);
    let (state, changes, watchers) = watch::start(client.clone(), metrics.watches.clone());
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));

    let (leader_tx, leader) = tokio::sync::watch::channel(false);
    let campaign = {
        let (client, shutdown) = (client.clone(), shutdown.clone());
        async move {
            match (halves.controllers, election) {
                (false, _) => {
                    shutdown.await;
                    Ok(())
                }
                (true, None) => {
                    let _ = leader_tx.send(true);
                    shutdown.await;
                    Ok(())
                }
                (true, Some(args)) => leader::campaign(client, &args, leader_tx, shutdown).await,
            }
        }
    };
    let writer =
        Writer::with_qps(client.clone(), write_qps).with_metrics(metrics.controllers.clone());
    // The webhooks read propagation's index too (to refuse conflicting sources), so its
    // watchers run on every replica; only the leader writes.
    let propagation = Propagation::new(
        client.clone(),
        state.clone(),
        writer.clone(),
        leader.clone(),
    );
    let admin = {
        let shutdown = shutdown.clone();
        let readiness = Readiness::new(state.clone());
        let metrics = metrics.clone();
        async move {
            if let Some(listener) = listeners.admin {
                listener.serve(metrics, readiness, shutdown).await;
            }
        }
    };
    // `canopy_leader` follows the Lease on every replica.
    let leadership = {
        let (mut leader, gauge) = (leader.clone(), metrics.leader.clone());
        async move {
            loop {
                gauge.set(i64::from(*leader.borrow_and_update()));
                if leader.changed().await.is_err() {
                    gauge.set(0);
                    return;
                }
            }
        }
    };
    let tenant_metrics =
        controllers::tenant_metrics::run(state.clone(), leader.clone(), metrics.tenants.clone());
    let quota = controllers::quota::run(
        state.clone(),
        writer.clone(),
        leader.clone(),
        metrics.quota.clone(),
    );
    let controllers = controllers::run(
        client.clone(),
        state.clone(),
        writer,
        propagation.clone(),
        changes,
        leader,
        webhook_configuration,
    );
    let serve = {
        let shutdown = shutdown.clone();
        async move {
            if let (true, Some(WebhookListener { server, .. })) =
                (halves.webhooks, listeners.webhooks)
            {
                let webhooks =
                    Webhooks::new(state, client, username).with_metrics(metrics.admission.clone());
                server.serve(webhooks, shutdown).await;
            }
        }
    };
    // Separate tasks: each is polled from a worker's own stack, not nested in one deep
    // future (which overflows a 2 MiB thread stack in debug builds).
    let tasks = [
        tokio::spawn(watchers),
        tokio::spawn(controllers),
        tokio::spawn(quota),
        tokio::spawn(serve),
        tokio::spawn(admin),
        tokio::spawn(leadership),
        tokio::spawn(tenant_metrics),
    ];
    let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
    let outcome = tokio::select! {
        _ = futures::future::join_all(tasks) => Ok(()),
        // Ends on shutdown too, after releasing the Lease.
        result = campaign => result.map_err(ManagerError::from),
    };
    for task in aborts {
        task.abort();
    }
    propagation.stop();
    info!("canopy manager stopped");
    outcome
}

/// The username canopy's requests arrive with at the apiserver (and at its own webhooks).
pub async fn whoami(client: &Client) -> Result<String, ManagerError> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(ManagerError::Identity)?;
    Ok(review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default())
}
