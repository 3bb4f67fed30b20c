//! The HTTPS server: warp routes behind our own tokio-rustls accept loop (warp 0.4 has no
//! TLS), HTTP/1.1 and HTTP/2.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};
use warp::Filter;
use warp::http::StatusCode;

use super::Webhooks;
use super::review::{self, Verdict};

/// The largest AdmissionReview accepted; etcd's object limit is 1.5 MiB and a review
/// carries the object twice.
const MAX_BODY: u64 = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("reading the TLS certificate or key: {0}")]
    Pem(#[from] rustls_pki_types::pem::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// TLS settings from a PEM certificate chain and key.
pub fn tls_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, ServerError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A bound, not yet serving, webhook server.
pub struct Server {
    listener: TcpListener,
    tls: TlsAcceptor,
}

impl Server {
    pub async fn bind(addr: SocketAddr, tls: Arc<ServerConfig>) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Listen { addr, source })?;
        Ok(Self {
            listener,
            tls: TlsAcceptor::from(tls),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` resolves; connections in flight finish first.
    pub async fn serve(self, webhooks: Webhooks, shutdown: impl Future<Output = ()>) {
        let routes = routes(webhooks);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        warn!(error = %err, "accept failed");
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let tls = self.tls.clone();
            let service = TowerToHyperService::new(warp::service(routes.clone()));
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let stream = match tls.accept(tcp).await {
                    Ok(stream) => stream,
                    Err(err) => {
                        debug!(%peer, error = %err, "TLS handshake failed");
                        return;
                    }
                };
                let builder = Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                if let Err(err) = watcher.watch(conn.into_owned()).await {
                    debug!(%peer, error = %err, "connection ended with an error");
                }
            });
        }
        graceful.shutdown().await;
    }
}

type Reply = warp::reply::Response;

fn routes(
    webhooks: Webhooks,
) -> impl Filter<Extract = (Reply,), Error = Infallible> + Clone + Send + Sync + 'static {
    let webhooks = Arc::new(webhooks);
    let with = {
        let webhooks = webhooks.clone();
        warp::any().map(move || webhooks.clone())
    };
    let review = warp::post()
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes())
        .and(with.clone())
        .then(
            |path: String, body: bytes::Bytes, webhooks: Arc<Webhooks>| async move {
                handle(&webhooks, &path, &body).await
            },
        );
    let healthz = warp::get()
        .and(warp::path("healthz"))
        .and(warp::path::end())
        .map(|| plain(StatusCode::OK, "ok"));
    let readyz = warp::get()
        .and(warp::path("readyz"))
        .and(warp::path::end())
        .and(with)
        .map(|webhooks: Arc<Webhooks>| {
            if webhooks.is_ready() {
                plain(StatusCode::OK, "ok")
            } else {
                plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the Forest and configuration are still loading",
                )
            }
        });
    review
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .recover(
            |rejection: warp::Rejection| async move { Ok::<_, Infallible>(rejected(rejection)) },
        )
        .unify()
}

async fn handle(webhooks: &Webhooks, path: &str, body: &[u8]) -> Reply {
    let request = match review::decode(body) {
        Ok(request) => request,
        Err(err) => return plain(StatusCode::BAD_REQUEST, &err.to_string()),
    };
    let verdict = match webhooks.review(path, &request).await {
        Some(verdict) => verdict,
        None => return plain(StatusCode::NOT_FOUND, &format!("no webhook at /{path}")),
    };
    if let Verdict::Deny(message) = &verdict {
        debug!(webhook = path, uid = %request.uid, %message, "denied");
    }
    let answer = review::respond(&request, verdict);
    match serde_json::to_vec(&answer) {
        Ok(body) => {
            let mut response = warp::reply::Response::new(body.into());
            response.headers_mut().insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(err) => plain(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
    }
}

fn plain(status: StatusCode, text: &str) -> Reply {
    let mut response = warp::reply::Response::new(format!("{text}\n").into());
    *response.status_mut() = status;
    response
}

fn rejected(rejection: warp::Rejection) -> Reply {
    if rejection.is_not_found() {
        plain(StatusCode::NOT_FOUND, "not found")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body exceeds {MAX_BODY} bytes"),
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST for reviews, GET for probes",
        )
    } else {
        plain(
            StatusCode::BAD_REQUEST,
            &format!("bad request: {rejection:?}"),
        )
    }
}
