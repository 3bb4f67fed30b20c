//! `make bench-webhook`: AdmissionReviews per second and latency over HTTPS against the
//! webhook server alone (no apiserver), beside the same server stack answering a bare
//! "allowed" without decoding.
//!
//! Load generator and server share the machine: on 2 cores the figures are a floor for
//! what a webhook replica gets on a dedicated core pair. `BENCH_SECONDS` (default 3) sets
//! the length of each run.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use canopy::api::{CanopyConfigurationSpec, PolicyScope};
use canopy::forest::Forest;
use canopy::forest::watch::ClusterState;
use canopy::webhooks::Webhooks;
use canopy::webhooks::server::{self, BARE_ALLOWED_PATH, ServeOptions, Server};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// The manager's allocator (src/main.rs), so the server here allocates as it does there.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> Result<(), BoxError> {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let run_for = Duration::from_secs_f64(seconds);
    let (ca_pem, cert_pem, key_pem) = certificates()?;
    let tls = server::tls_config(cert_pem.as_bytes(), key_pem.as_bytes())?;
    let server = Server::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), tls)?;
    let addr = server.local_addr().ok_or("the server has no address")?;

    // The server gets a runtime (and threads) of its own, as in the manager.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build();
        if let Ok(runtime) = runtime {
            runtime.block_on(server.serve_with(
                webhooks(),
                ServeOptions {
                    bare_allowed_route: true,
                },
                std::future::pending(),
            ));
        }
    });

    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let connector = connector(&ca_pem)?;
    let bodies = [
        ("small Pod", Bytes::from(pod_review().to_string())),
        (
            "Deployment, 10 containers",
            Bytes::from(deployment_review(10).to_string()),
        ),
    ];
    // What a review costs the server alone, without HTTP, TLS or the load generator.
    let webhooks = webhooks();
    println!("one review in-process (`server::answer`, one thread), after 0.3 s of warm-up:\n");
    println!(
        "| object | µs per review | serde_json skipping the body | ratio |\n|---|---|---|---|"
    );
    for (name, body) in &bodies {
        let per_review = client.block_on(async {
            per_call(run_for, async || {
                std::hint::black_box(
                    server::answer(&webhooks, canopy::webhooks::paths::WORKLOADS, body).await,
                );
            })
            .await
        });
        let skip = client.block_on(per_call(run_for, async || {
            let _ = std::hint::black_box(serde_json::from_slice::<serde::de::IgnoredAny>(body));
        }));
        println!(
            "| {name} ({} B) | {:.1} | {:.1} | {:.1}x |",
            body.len(),
            per_review.as_secs_f64() * 1e6,
            skip.as_secs_f64() * 1e6,
            per_review.as_secs_f64() / skip.as_secs_f64()
        );
    }
    println!();
    println!(
        "webhook server alone, HTTPS (HTTP/1.1 keep-alive, one connection per client), {seconds} s per run\n"
    );
    println!(
        "| object | concurrency | route | reviews/s | p50 | p99 | vs bare |\n|---|---|---|---|---|---|---|"
    );
    for (name, body) in &bodies {
        for concurrency in [1, 64] {
            let mut bare = None;
            for path in [BARE_ALLOWED_PATH, canopy::webhooks::paths::WORKLOADS] {
                let result = client.block_on(load(
                    &connector,
                    addr,
                    path,
                    body.clone(),
                    concurrency,
                    run_for,
                ))?;
                let ratio = match bare {
                    None => {
                        bare = Some(result.per_second);
                        "1.00".to_owned()
                    }
                    Some(bare) => format!("{:.2}", result.per_second / bare),
                };
                println!(
                    "| {name} ({} B) | {concurrency} | /{path} | {:.0} | {} | {} | {ratio} |",
                    body.len(),
                    result.per_second,
                    micros(result.p50),
                    micros(result.p99),
                );
            }
        }
    }
    Ok(())
}

/// The mean time of one call of `call`, repeated for `run_for` after 0.3 s of warm-up.
async fn per_call(run_for: Duration, mut call: impl AsyncFnMut()) -> Duration {
    let warm_up = Instant::now();
    while warm_up.elapsed() < Duration::from_millis(300) {
        call().await;
    }
    let (started, mut calls) = (Instant::now(), 0u32);
    while started.elapsed() < run_for {
        for _ in 0..100 {
            call().await;
        }
        calls += 100;
    }
    started.elapsed() / calls
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// A Forest with the benchmark's namespace, and every policy in force everywhere.
fn webhooks() -> Webhooks {
    let mut forest = Forest::new();
    forest.set_namespace("bench", Default::default(), false);
    let mut config = CanopyConfigurationSpec::default();
    config.policies.scope = PolicyScope::AllNamespaces;
    Webhooks::detached(ClusterState::detached(forest, config), "canopy".into())
}

/// A CA, and a serving certificate for 127.0.0.1 that it signed (PEM).
fn certificates() -> Result<(String, String, String), BoxError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(Ipv4Addr::LOCALHOST.into()));
    let cert = params.signed_by(&key, &ca)?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}

fn connector(ca_pem: &str) -> Result<tokio_rustls::TlsConnector, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

struct Measured {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// `concurrency` clients, each on its own connection, post `body` back to back for
/// `run_for` (after a short warm-up that is not counted).
async fn load(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    path: &str,
    body: Bytes,
    concurrency: usize,
    run_for: Duration,
) -> Result<Measured, BoxError> {
    let warm_up = Duration::from_millis(300);
    let start = Instant::now() + warm_up;
    let end = start + run_for;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let connector = connector.clone();
        let body = body.clone();
        let uri = format!("https://127.0.0.1:{}/{path}", addr.port());
        tasks.push(tokio::spawn(async move {
            client(connector, addr, uri, body, start, end).await
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(Measured {
        per_second: latencies.len() as f64 / run_for.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    })
}

async fn client(
    connector: tokio_rustls::TlsConnector,
    addr: SocketAddr,
    uri: String,
    body: Bytes,
    start: Instant,
    end: Instant,
) -> Result<Vec<Duration>, BoxError> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1")?;
    let tls = connector.connect(name, tcp).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(connection);
    let mut latencies = Vec::new();
    let mut checked = false;
    loop {
        let request = hyper::Request::post(uri.as_str())
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))?;
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let response = sender.send_request(request).await?;
        let status = response.status();
        let answer = response.into_body().collect().await?.to_bytes();
        let took = sent.elapsed();
        if status != hyper::StatusCode::OK {
            return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&answer)).into());
        }
        if !checked {
            // Every benchmark object is compliant: anything but "allowed" is a broken setup.
            let review: Value = serde_json::from_slice(&answer)?;
            if review["response"]["allowed"] != true {
                return Err(format!("not allowed: {review}").into());
            }
            checked = true;
        }
        if sent >= start {
            latencies.push(took);
        }
    }
    Ok(latencies)
}

fn review(group: &str, kind: &str, resource: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "requestKind": {"group": group, "version": "v1", "kind": kind},
            "requestResource": {"group": group, "version": "v1", "resource": resource},
            "name": object["metadata"]["name"].clone(),
            "namespace": "bench",
            "operation": "CREATE",
            "userInfo": {
                "username": "alice",
                "uid": "014fbff9a07c",
                "groups": ["system:authenticated", "team-a"],
            },
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions", "fieldManager": "kubectl-client-side-apply"},
        }
    })
}

/// A container as the apiserver sends it: defaulted, with requests and limits.
fn container(name: &str) -> Value {
    json!({
        "name": name,
        "image": "registry.example.com/team-a/app:1.4.2",
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "env": [{"name": "MODE", "value": "production"}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true},
    })
}

fn pod_spec(containers: usize) -> Value {
    json!({
        "containers": (0..containers).map(|i| container(&format!("app-{i}"))).collect::<Vec<_>>(),
        "volumes": [{"name": "data", "emptyDir": {}}],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        "securityContext": {},
        "schedulerName": "default-scheduler",
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ],
        "priority": 0,
        "enableServiceLinks": true,
        "preemptionPolicy": "PreemptLowerPriority",
    })
}

fn metadata(name: &str) -> Value {
    json!({
        "name": name,
        "namespace": "bench",
        "uid": "1b4d8a0c-6f8e-4a51-9f59-6c1f2b7c0e11",
        "creationTimestamp": "2025-01-01T00:00:00Z",
        "labels": {"app": "web", "team": "a"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
    })
}

fn pod_review() -> Value {
    review(
        "",
        "Pod",
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata("web"), "spec": pod_spec(1)}),
    )
}

fn deployment_review(containers: usize) -> Value {
    review(
        "apps",
        "Deployment",
        "deployments",
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata("web"),
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec(containers)},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
            }
        }),
    )
}
