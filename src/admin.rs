//! The admin port: `/metrics`, `/healthz` and `/readyz` over plain HTTP, on every manager
//! whichever halves it runs (`--admin-addr`, default `0.0.0.0:8080`).
//!
//! They are not on the webhook port: a controllers-only manager has no webhook server,
//! and a scraper or kubelet probe needs neither the webhook's TLS certificate nor a route
//! through the webhook Service. Nothing here is secret (series names and counts, and why
//! a replica is not ready), as on any controller's metrics port.
//!
//! The one metrics registry of the process is built here ([`Metrics::new`], called by the
//! manager) and its parts are handed to whoever records into them; nothing is global.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tracing::{debug, warn};
use warp::Filter;
use warp::http::StatusCode;

use crate::controllers::metrics::ControllerMetrics;
use crate::controllers::quota::metrics::QuotaMetrics;
use crate::forest::tenant_metrics::TenantMetrics;
use crate::forest::watch::ClusterState;
use crate::forest::watch_health::{self, WatchHealth};
use crate::webhooks::metrics::Metrics as AdmissionMetrics;
use crate::webhooks::server::{accept, plain};

/// Where `canopy manager` serves the admin port unless told otherwise.
pub const DEFAULT_ADMIN_ADDR: &str = "0.0.0.0:8080";

/// Every metric family canopy exports, as `# TYPE` names it, with its type: the catalogue
/// docs/observability.md documents and tests/observability.rs lints the rules and the
/// dashboard against. A unit test fails when it and the registry disagree. (A family
/// without samples is left out of an exposition, so the registry alone cannot list them.)
pub const FAMILIES: [(&str, &str); 22] = [
    ("canopy_controller_reconciles", "counter"),
    ("canopy_controller_reconcile_duration_seconds", "histogram"),
    ("canopy_controller_queue_depth", "gauge"),
    ("canopy_controller_objects_written", "counter"),
    ("canopy_controller_propagation_conflicts", "gauge"),
    ("canopy_controller_propagation_kind_ready", "gauge"),
    ("canopy_watch_stale", "gauge"),
    ("canopy_admission_policy_decisions", "counter"),
    ("canopy_admission_reviews", "counter"),
    ("canopy_admission_bad_requests", "counter"),
    ("canopy_admission_review_duration_seconds", "histogram"),
    ("canopy_quota_hard", "gauge"),
    ("canopy_quota_used", "gauge"),
    ("canopy_quota_reservations", "gauge"),
    ("canopy_tenant_namespaces", "gauge"),
    ("canopy_tenant_namespaces_max", "gauge"),
    ("canopy_tenant_propagated_copies", "gauge"),
    ("canopy_tenant_quota_hard", "gauge"),
    ("canopy_tenant_quota_used", "gauge"),
    ("canopy_tenant_policy_refusals", "counter"),
    ("canopy_leader", "gauge"),
    (
        "canopy_webhook_certificate_expiration_timestamp_seconds",
        "gauge",
    ),
];

/// Every series of the process, in one registry so `/metrics` is one exposition.
pub struct Metrics {
    registry: Registry,
    /// `canopy_controller_*`: reconciles, queue depths, writes, propagation.
    pub controllers: Arc<ControllerMetrics>,
    /// `canopy_watch_stale`, and the staleness `/readyz` reads.
    pub watches: Arc<WatchHealth>,
    /// `canopy_admission_*`: reviews and policy decisions.
    pub admission: Arc<AdmissionMetrics>,
    /// `canopy_quota_*`: each HierarchicalResourceQuota's hard, used and reservations.
    pub quota: Arc<QuotaMetrics>,
    /// `canopy_tenant_*`: per-tenant namespaces, copies, quota and refusals.
    pub tenants: Arc<TenantMetrics>,
    /// `canopy_leader`: 1 while this replica runs the controllers (holds the Lease).
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let controllers = Arc::new(ControllerMetrics::new());
        let watches = Arc::new(WatchHealth::new());
        let tenants = Arc::new(TenantMetrics::default());
        let admission = Arc::new(AdmissionMetrics::new().with_tenants(tenants.clone()));
        let quota = Arc::new(QuotaMetrics::default());
        let leader = Gauge::default();
        let mut registry = Registry::default();
        controllers.register(registry.sub_registry_with_prefix("canopy_controller"));
        watches.register(registry.sub_registry_with_prefix("canopy"));
        admission.register(registry.sub_registry_with_prefix("canopy_admission"));
        quota.register(registry.sub_registry_with_prefix("canopy_quota"));
        tenants.register(registry.sub_registry_with_prefix("canopy_tenant"));
        registry.register(
            "canopy_leader",
            "1 while this replica runs the controllers (holds the leader Lease, or runs \
             without leader election), else 0; the sum over the replicas is 1 when healthy",
            leader.clone(),
        );
        Self {
            registry,
            controllers,
            watches,
            admission,
            quota,
            tenants,
            leader,
        }
    }

    /// Serves `canopy_webhook_certificate_expiration_timestamp_seconds` from `expiry`,
    /// the serving certificate's notAfter (kept current by whoever rotates it). Only a
    /// manager that serves webhooks and knows its certificate's expiry has the series, so
    /// an alert on it never fires for an unknown value.
    pub fn register_certificate_expiry(&mut self, expiry: Gauge) {
        self.registry.register(
            "canopy_webhook_certificate_expiration_timestamp_seconds",
            "When the webhook server's serving certificate expires (its notAfter), in \
             seconds since the Unix epoch",
            expiry,
        );
    }

    /// The text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// What `/readyz` reads: the model the webhooks answer from and the controllers plan on.
#[derive(Clone)]
pub struct Readiness {
    state: ClusterState,
}

impl Readiness {
    pub fn new(state: ClusterState) -> Self {
        Self { state }
    }

    /// Ready once the Forest and configuration are loaded and no propagated kind is still
    /// in its first list (the source-conflict check reads those indexes), and while no
    /// watch has been failing for longer than `READINESS_GRACE` (the model would be
    /// stale); else why not. A kind canopy cannot use (refused by RBAC, not served) never
    /// holds readiness up: readiness gates every fail-closed webhook, so one unusable kind
    /// would block the whole cluster; its conflict check is skipped instead
    /// (`PropagatedKinds::conflicts_for_source`).
    pub fn check(&self) -> Result<(), String> {
        let loaded = *self.state.ready.borrow() && self.state.kinds.is_settled();
        let stalest = self.state.health.stalest();
        watch_health::readiness(
            loaded,
            stalest
                .as_ref()
                .map(|(name, stale)| (name.as_str(), *stale)),
            watch_health::READINESS_GRACE,
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("listening on {addr} (the admin port): {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The admin port's socket, bound before the manager runs so that callers (tests) can
/// learn its port. A std socket until served, like the webhook listener, because callers
/// bind on another runtime than the one that serves.
pub struct AdminListener(std::net::TcpListener);

impl AdminListener {
    pub fn bind(addr: SocketAddr) -> Result<Self, AdminError> {
        let listen_error = |source| AdminError::Listen { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(listen_error)?;
        listener.set_nonblocking(true).map_err(listen_error)?;
        Ok(Self(listener))
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.0.local_addr().ok()
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown` resolves.
    pub async fn serve(
        self,
        metrics: Arc<Metrics>,
        readiness: Readiness,
        shutdown: impl Future<Output = ()>,
    ) {
        let addr = self.local_addr();
        let listener = match TcpListener::from_std(self.0) {
            Ok(listener) => listener,
            Err(err) => {
                warn!(error = %err, "cannot serve the admin port");
                return;
            }
        };
        let addr = addr.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
        let routes = routes(metrics, readiness);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let Some((tcp, peer)) = accept(&listener, &mut shutdown, "admin").await else {
                break;
            };
            let service = TowerToHyperService::new(warp::service(routes.clone()));
            let conn = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .into_owned();
            let watched = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(err) = watched.await {
                    debug!(%peer, error = %err, "admin connection ended with an error");
                }
            });
        }
        graceful.shutdown().await;
    }
}

type Reply = warp::reply::Response;

fn routes(
    metrics: Arc<Metrics>,
    readiness: Readiness,
) -> impl Filter<Extract = (Reply,), Error = Infallible> + Clone + Send + Sync + 'static {
    let metrics = warp::get()
        .and(warp::path("metrics"))
        .and(warp::path::end())
        .map(move || match metrics.encode() {
            Ok(text) => {
                let mut response = plain(StatusCode::OK, text.trim_end());
                response.headers_mut().insert(
                    warp::http::header::CONTENT_TYPE,
                    warp::http::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                response
            }
            Err(err) => plain(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
        });
    let healthz = warp::get()
        .and(warp::path("healthz"))
        .and(warp::path::end())
        .map(|| plain(StatusCode::OK, "ok"));
    let readyz = warp::get()
        .and(warp::path("readyz"))
        .and(warp::path::end())
        .map(move || match readiness.check() {
            Ok(()) => plain(StatusCode::OK, "ok"),
            Err(why) => plain(StatusCode::SERVICE_UNAVAILABLE, &why),
        });
    metrics
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .recover(|rejection: warp::Rejection| async move {
            Ok::<_, Infallible>(if rejection.is_not_found() {
                plain(
                    StatusCode::NOT_FOUND,
                    "not found: try /metrics, /healthz, /readyz",
                )
            } else {
                plain(StatusCode::METHOD_NOT_ALLOWED, "use GET")
            })
        })
        .unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_registry_holds_every_part() {
        let metrics = Metrics::new();
        metrics.controllers.record_reconcile(
            "namespace",
            true,
            std::time::Duration::from_millis(1),
        );
        metrics.admission.record_bad_request();
        type Item = Result<kube::runtime::watcher::Event<u32>, kube::runtime::watcher::Error>;
        let _watch = watch_health::resilient(
            &metrics.watches,
            "namespaces".to_owned(),
            futures::stream::pending::<Item>(),
        );
        let text = metrics.encode().expect("encodes");
        for series in [
            r#"canopy_controller_reconciles_total{controller="namespace",outcome="success"} 1"#,
            "canopy_admission_bad_requests_total 1",
            r#"canopy_watch_stale{watch="namespaces"} 0"#,
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
    }

    /// With a sample in every family, the `# TYPE` lines are exactly `FAMILIES`.
    #[test]
    fn the_catalogue_lists_every_family() {
        use std::collections::{BTreeMap, BTreeSet};
        use std::time::Duration;

        use crate::controllers::quota::metrics::Figures;
        use crate::forest::tenant_metrics::TenantFigures;

        let mut metrics = Metrics::new();
        metrics.register_certificate_expiry(Gauge::default());
        let c = &metrics.controllers;
        c.record_reconcile("namespace", true, Duration::from_millis(1));
        c.set_queue_depth("namespace", 1);
        c.record_write("roles", "apply");
        c.set_conflicts(1);
        c.set_kinds_ready(&[(("".to_owned(), "secrets".to_owned()), true)]);
        type Item = Result<kube::runtime::watcher::Event<u32>, kube::runtime::watcher::Error>;
        let _watch = watch_health::resilient(
            &metrics.watches,
            "namespaces".to_owned(),
            futures::stream::pending::<Item>(),
        );
        metrics.admission.record_policy_error();
        metrics
            .admission
            .record_review("validate-workloads", "allowed", Duration::from_millis(1));
        metrics.admission.record_bad_request();
        metrics.quota.set(&[Figures {
            namespace: "acme".to_owned(),
            name: "q".to_owned(),
            resources: vec![("pods".to_owned(), 1.0, 0.0)],
            reservations: 0,
        }]);
        metrics.tenants.set(&BTreeMap::from([(
            "acme".to_owned(),
            TenantFigures {
                namespaces: 1,
                max_namespaces: Some(2),
                propagated_copies: 0,
                quota: vec![("pods".to_owned(), 1.0, 0.0)],
            },
        )]));
        metrics.admission.record_quota_refusal("acme");
        metrics.leader.set(1);
        let text = metrics.encode().expect("encodes");
        let served: BTreeSet<(String, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
            .collect();
        let listed: BTreeSet<(String, String)> = FAMILIES
            .iter()
            .map(|(name, kind)| ((*name).to_owned(), (*kind).to_owned()))
            .collect();
        assert_eq!(served, listed, "{text}");
    }
}
