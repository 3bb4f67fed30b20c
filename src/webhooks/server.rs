//! The HTTPS server of the webhooks: warp routes behind our own tokio-rustls accept loop
//! (warp 0.4 has no TLS), HTTP/1.1 and HTTP/2. `/metrics` and the probes are served by
//! `crate::admin` on a plain port of their own.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};
use warp::Filter;
use warp::http::StatusCode;

use super::Webhooks;
use super::review;

/// The largest AdmissionReview accepted; etcd's object limit is 1.5 MiB and a review
/// carries the object twice.
pub const MAX_BODY: u64 = 8 * 1024 * 1024;

/// Where benchmarks find the bare route (see [`ServeOptions::bare_allowed_route`]).
pub const BARE_ALLOWED_PATH: &str = "bare-allowed";

/// The fixed answer of the bare route: what the cheapest possible webhook would send.
const BARE_ALLOWED: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}"#;

/// Routes beyond the webhooks and probes.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServeOptions {
    /// `POST /bare-allowed` answers a fixed "allowed" without decoding the body: the
    /// baseline that benchmarks compare the real webhooks with. Never on in the manager.
    pub bare_allowed_route: bool,
}

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

/// TLS settings whose certificate `resolver` picks per handshake (so it can rotate).
pub fn tls_config_with_resolver(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
) -> Result<Arc<ServerConfig>, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A bound, not yet serving, webhook server.
///
/// The socket is a std one until `serve`: a tokio socket belongs to the runtime it was
/// made on, and callers bind (to learn the port) on a different runtime than they serve.
pub struct Server {
    listener: std::net::TcpListener,
    tls: TlsAcceptor,
}

impl Server {
    pub fn bind(addr: SocketAddr, tls: Arc<ServerConfig>) -> Result<Self, ServerError> {
        let listen_error = |source| ServerError::Listen { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(listen_error)?;
        listener.set_nonblocking(true).map_err(listen_error)?;
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
        self.serve_with(webhooks, ServeOptions::default(), shutdown)
            .await
    }

    pub async fn serve_with(
        self,
        webhooks: Webhooks,
        options: ServeOptions,
        shutdown: impl Future<Output = ()>,
    ) {
        let listener = match TcpListener::from_std(self.listener) {
            Ok(listener) => listener,
            Err(err) => {
                warn!(error = %err, "cannot serve webhooks");
                return;
            }
        };
        let routes = routes(webhooks, options);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let Some((tcp, peer)) = accept(&listener, &mut shutdown, "webhook").await else {
                break;
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
    options: ServeOptions,
) -> impl Filter<Extract = (Reply,), Error = Infallible> + Clone + Send + Sync + 'static {
    let webhooks = Arc::new(webhooks);
    let with = warp::any().map(move || webhooks.clone());
    let bare = warp::post()
        .and(warp::path(BARE_ALLOWED_PATH))
        .and(warp::path::end())
        .and_then(move || async move {
            if options.bare_allowed_route {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes())
        .map(|_: bytes::Bytes| json(BARE_ALLOWED.into()));
    let review = warp::post()
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes())
        .and(with)
        .then(
            |path: String, body: bytes::Bytes, webhooks: Arc<Webhooks>| async move {
                answer(&webhooks, &path, &body).await.into_reply()
            },
        );
    bare.or(review)
        .unify()
        .recover(
            |rejection: warp::Rejection| async move { Ok::<_, Infallible>(rejected(rejection)) },
        )
        .unify()
}

/// What the server answers to a POST: a status and a body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    /// An AdmissionReview (JSON) when the status is 200, else a line of text.
    pub body: Vec<u8>,
}

impl Answer {
    fn text(status: StatusCode, text: &str) -> Self {
        Self {
            status,
            body: format!("{text}\n").into_bytes(),
        }
    }

    fn into_reply(self) -> Reply {
        let is_json = self.status == StatusCode::OK;
        let mut response = warp::reply::Response::new(self.body.into());
        *response.status_mut() = self.status;
        if is_json {
            response.headers_mut().insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static("application/json"),
            );
        }
        response
    }
}

/// Answers the body of a POST to `/<path>`: everything the server does with a review but
/// HTTP, so that tests can feed it anything. A body that is not a usable AdmissionReview
/// gets 400, an unknown path 404; nothing a client sends makes it panic.
pub async fn answer(webhooks: &Webhooks, path: &str, body: &[u8]) -> Answer {
    let started = Instant::now();
    let Some(webhook) = super::paths::known(path) else {
        return Answer::text(StatusCode::NOT_FOUND, &format!("no webhook at /{path}"));
    };
    match webhook {
        // The policies read a few fields of the object: it stays JSON text.
        super::paths::WORKLOADS | super::paths::VOLUMES => {
            match review::decode::<review::RawObject>(body) {
                Ok(request) => {
                    let verdict = super::policy_review::review(webhooks, &request);
                    finish(webhooks, webhook, &request, verdict, started)
                }
                Err(err) => bad_request(webhooks, &err),
            }
        }
        _ => match review::decode::<DynamicObject>(body) {
            Ok(mut request) => match webhooks.review(webhook, &mut request).await {
                Some(verdict) => finish(webhooks, webhook, &request, verdict, started),
                None => Answer::text(StatusCode::NOT_FOUND, &format!("no webhook at /{path}")),
            },
            Err(err) => bad_request(webhooks, &err),
        },
    }
}

fn bad_request(webhooks: &Webhooks, err: &review::ReviewError) -> Answer {
    webhooks.metrics().record_bad_request();
    Answer::text(StatusCode::BAD_REQUEST, &err.to_string())
}

/// The answer to `request`: the verdict as an AdmissionReview, recorded in the metrics.
fn finish<T: kube::Resource>(
    webhooks: &Webhooks,
    webhook: &'static str,
    request: &AdmissionRequest<T>,
    verdict: review::Verdict,
    started: Instant,
) -> Answer {
    if let Some(message) = verdict.denial() {
        debug!(webhook, uid = %request.uid, %message, "denied");
    }
    let label = verdict.as_str();
    let review = review::respond(request, verdict);
    match serde_json::to_vec(&review) {
        Ok(body) => {
            webhooks
                .metrics()
                .record_review(webhook, label, started.elapsed());
            Answer {
                status: StatusCode::OK,
                body,
            }
        }
        Err(err) => Answer::text(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
    }
}

fn json(body: String) -> Reply {
    let mut response = warp::reply::Response::new(body.into());
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The next connection on `listener`, or `None` once `shutdown` resolves. A failed
/// accept (out of file descriptors, usually) waits 100 ms, giving connections time to
/// close, and tries again. `what` names the port in the log.
pub(crate) async fn accept(
    listener: &tokio::net::TcpListener,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    what: &str,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => return Some(conn),
                Err(err) => {
                    warn!(error = %err, port = what, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            () = shutdown.as_mut() => return None,
        }
    }
}

pub(crate) fn plain(status: StatusCode, text: &str) -> Reply {
    let mut response = warp::reply::Response::new(format!("{text}\n").into());
    *response.status_mut() = status;
    response
}

fn rejected(rejection: warp::Rejection) -> Reply {
    if rejection.is_not_found() {
        plain(StatusCode::NOT_FOUND, "not found")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        // 400, not 413: the contract answers every unusable AdmissionReview alike.
        plain(
            StatusCode::BAD_REQUEST,
            &format!("the body exceeds {MAX_BODY} bytes; an AdmissionReview is never that large"),
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        plain(
            StatusCode::BAD_REQUEST,
            &format!("send a Content-Length header (at most {MAX_BODY} bytes)"),
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST; /metrics and the probes are on the admin port",
        )
    } else {
        plain(
            StatusCode::BAD_REQUEST,
            &format!("bad request: {rejection:?}"),
        )
    }
}
