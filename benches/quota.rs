//! `make bench-quota`: what a HierarchicalResourceQuota adds to a Pod create, end to end.
//!
//! One run, one control plane (etcd, kube-apiserver; no node), one canopy manager
//! in-process (controllers and webhooks), one Tenant (HRQs and canopy's webhooks apply only
//! in tenants' namespaces). Pods are created through the apiserver, as the admin,
//! alternately in a namespace of the tenant under no HRQ and in a child of a namespace with
//! an HRQ (so the webhook reads the HRQ and compare-and-swaps its status): p50/p99 of each,
//! sequentially, then with `BENCH_CONCURRENCY` (default 8) creates in flight against the
//! one HRQ (where reservations conflict and retry). `BENCH_PODS` (default 200) Pods per
//! series.
//!
//! Then what every tenant feels: Pod creates in a tenant's namespace (so the apiserver calls
//! `workloads.canopy.dev` and `quota.canopy.dev`) with canopy's ValidatingWebhookConfiguration
//! registered and with it deleted, the same client and namespace, `BENCH_WEBHOOK_PODS`
//! (default 1,000) creates per series at concurrency 1 and `BENCH_WEBHOOK_CONCURRENCY`
//! (default 32), in blocks that alternate (with, without, with, without) so drift in the
//! apiserver's state falls on both. Figures go into docs/performance.md; nothing is
//! asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use canopy::dev::{ControlPlane, ControlPlaneOptions, client_for};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// The manager's allocator (src/main.rs): the manager runs in this process.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> Result<(), BoxError> {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (pods, concurrency) = (env("BENCH_PODS", 200), env("BENCH_CONCURRENCY", 8));
    let webhook = WebhookSeries {
        pods: env("BENCH_WEBHOOK_PODS", 1000),
        concurrency: env("BENCH_WEBHOOK_CONCURRENCY", 32).max(1),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(pods, concurrency.max(1), webhook))
}

/// The with/without-webhooks comparison's size.
#[derive(Clone, Copy)]
struct WebhookSeries {
    pods: usize,
    concurrency: usize,
}

async fn run(pods: usize, concurrency: usize, webhook: WebhookSeries) -> Result<(), BoxError> {
    let plane = ControlPlane::start(ControlPlaneOptions::default()).await?;
    let prepared = canopy::dev::canopy::prepare(&plane).await?;
    let manager = client_for(&prepared.manager_kubeconfig).await?;
    let listener = prepared.webhooks;
    tokio::spawn(async move {
        let halves = canopy::manager::Halves {
            controllers: true,
            webhooks: true,
        };
        if let Err(e) = canopy::manager::run(
            manager,
            canopy::manager::Listeners::webhooks(listener),
            halves,
            std::future::pending(),
        )
        .await
        {
            eprintln!("canopy manager failed: {e}");
        }
    });
    let admin = plane.client().await?;
    canopy::dev::canopy::wait_for_webhooks(&admin, Duration::from_secs(60)).await?;

    create_tenant(&admin).await?;
    for ns in ["plain", "budget", "budget-child"] {
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
    }
    let dynamic = |kind: &str| -> Result<kube::core::ApiResource, BoxError> {
        Ok(match kind {
            "hc" => kube::core::ApiResource::erase::<canopy::api::HierarchyConfiguration>(&()),
            _ => kube::core::ApiResource::erase::<canopy::api::HierarchicalResourceQuota>(&()),
        })
    };
    // All three in the tenant: plain and budget under its root, budget-child under budget.
    for (ns, parent) in [
        ("plain", "bench"),
        ("budget", "bench"),
        ("budget-child", "budget"),
    ] {
        let hc: kube::core::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "canopy.dev/v1alpha1", "kind": "HierarchyConfiguration",
            "metadata": {"name": "hierarchy", "namespace": ns},
            "spec": {"parent": parent}
        }))?;
        Api::namespaced_with(admin.clone(), ns, &dynamic("hc")?)
            .create(&PostParams::default(), &hc)
            .await?;
    }
    let hrq: kube::core::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "canopy.dev/v1alpha1", "kind": "HierarchicalResourceQuota",
        "metadata": {"name": "budget", "namespace": "budget"},
        "spec": {"hard": {"pods": "100000", "requests.cpu": "10000"}}
    }))?;
    let hrqs = Api::namespaced_with(admin.clone(), "budget", &dynamic("hrq")?);
    // Refused until canopy's model has budget in the tenant.
    let started = Instant::now();
    while let Err(e) = hrqs.create(&PostParams::default(), &hrq).await {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("the HRQ was never admitted: {e}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Counted, and the child under it in canopy's model, before measuring.
    let started = Instant::now();
    loop {
        let probe = create(&admin, "budget-child", "probe").await;
        if probe.is_ok() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("the HRQ was never counted: {probe:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    println!("Pod creates through the apiserver, {pods} per series; latency in ms");
    println!("| series | in flight | p50 | p99 | creates/s |");
    println!("|---|---|---|---|---|");
    // Warm both paths, then alternate so both see the same apiserver and etcd state.
    for i in 0..20 {
        create(&admin, "plain", &format!("warm-{i}")).await?;
        create(&admin, "budget-child", &format!("warm-{i}")).await?;
    }
    let (mut plain, mut quota) = (Vec::new(), Vec::new());
    for i in 0..pods {
        plain.push(timed(&admin, "plain", &format!("s-{i}")).await?);
        quota.push(timed(&admin, "budget-child", &format!("s-{i}")).await?);
    }
    row("no HRQ", 1, &mut plain, None);
    row("under an HRQ", 1, &mut quota, None);
    for (label, ns) in [("no HRQ", "plain"), ("under an HRQ", "budget-child")] {
        let (mut times, took) = parallel(&admin, ns, "p", pods, concurrency).await?;
        row(label, concurrency, &mut times, Some(took));
    }
    with_and_without_webhooks(&admin, webhook).await
}

/// The Tenant `bench` (root namespace `bench`), once its namespace admits Pods: HRQs and
/// canopy's webhooks apply only in tenants' namespaces.
async fn create_tenant(admin: &Client) -> Result<(), BoxError> {
    let tenant: kube::core::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "canopy.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "bench"},
        // Privileged: Pod Security admission is the apiserver's either way; the bench Pod
        // sets no securityContext.
        "spec": {"owners": [{"kind": "Group", "name": "bench-admins"}], "podSecurity": "privileged"}
    }))?;
    Api::<kube::core::DynamicObject>::all_with(
        admin.clone(),
        &kube::core::ApiResource::erase::<canopy::api::Tenant>(&()),
    )
    .create(&PostParams::default(), &tenant)
    .await?;
    // The webhooks answer for the tenant's namespace once canopy's model has it.
    let started = Instant::now();
    loop {
        let probe = create(admin, "bench", "probe").await;
        if probe.is_ok() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("the tenant's namespace never admitted a Pod: {probe:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Pod creates in a tenant's namespace with canopy's webhooks registered and without.
async fn with_and_without_webhooks(admin: &Client, series: WebhookSeries) -> Result<(), BoxError> {
    use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(admin.clone());
    let mut saved = configs.get("canopy").await?;
    saved.metadata.resource_version = None;
    saved.metadata.uid = None;
    saved.metadata.managed_fields = None;
    saved.metadata.creation_timestamp = None;
    saved.metadata.generation = None;
    let half = series.pods / 2;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let (mut with_c, mut without_c) = (Vec::new(), Vec::new());
    let (mut took_with, mut took_without) = (Duration::ZERO, Duration::ZERO);
    for block in 0..4 {
        let registered = block % 2 == 0;
        if registered {
            if configs.get_opt("canopy").await?.is_none() {
                configs.create(&PostParams::default(), &saved).await?;
            }
        } else {
            configs
                .delete("canopy", &kube::api::DeleteParams::default())
                .await?;
        }
        // The apiserver's webhook configuration informer follows within milliseconds.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for i in 0..10 {
            create(admin, "bench", &format!("warm-{block}-{i}")).await?;
        }
        let sequential = if registered { &mut with } else { &mut without };
        for i in 0..half {
            sequential.push(timed(admin, "bench", &format!("s-{block}-{i}")).await?);
        }
        let (times, took) = parallel(
            admin,
            "bench",
            &format!("c-{block}"),
            half,
            series.concurrency,
        )
        .await?;
        if registered {
            with_c.extend(times);
            took_with += took;
        } else {
            without_c.extend(times);
            took_without += took;
        }
    }
    if configs.get_opt("canopy").await?.is_none() {
        configs.create(&PostParams::default(), &saved).await?;
    }
    println!();
    println!(
        "Pod creates in a tenant's namespace, with canopy's webhooks registered and without; {} per series; latency in ms",
        2 * half
    );
    println!("| webhooks | in flight | p50 | p99 | creates/s |");
    println!("|---|---|---|---|---|");
    let with_row = row("registered", 1, &mut with, None);
    let without_row = row("none", 1, &mut without, None);
    let with_c_row = row(
        "registered",
        series.concurrency,
        &mut with_c,
        Some(took_with),
    );
    let without_c_row = row(
        "none",
        series.concurrency,
        &mut without_c,
        Some(took_without),
    );
    for (in_flight, w, n) in [
        (1, with_row, without_row),
        (series.concurrency, with_c_row, without_c_row),
    ] {
        println!(
            "in flight {in_flight}: with/without p50 {:.2}x, p99 {:.2}x",
            w.0 / n.0.max(1e-9),
            w.1 / n.1.max(1e-9)
        );
    }
    Ok(())
}

async fn create(client: &Client, ns: &str, name: &str) -> Result<(), kube::Error> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "1m", "memory": "1Mi"},
                          "limits": {"cpu": "1m", "memory": "1Mi"}}}]}
    }))
    .map_err(kube::Error::SerdeError)?;
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .map(|_| ())
}

async fn timed(client: &Client, ns: &str, name: &str) -> Result<Duration, BoxError> {
    let start = Instant::now();
    create(client, ns, name).await?;
    Ok(start.elapsed())
}

async fn parallel(
    client: &Client,
    ns: &str,
    prefix: &str,
    pods: usize,
    concurrency: usize,
) -> Result<(Vec<Duration>, Duration), BoxError> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, ns, next, prefix) = (
            client.clone(),
            ns.to_owned(),
            next.clone(),
            prefix.to_owned(),
        );
        workers.push(tokio::spawn(async move {
            let mut times = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= pods {
                    return Ok::<_, String>(times);
                }
                let t = Instant::now();
                create(&client, &ns, &format!("{prefix}-{i}"))
                    .await
                    .map_err(|e| e.to_string())?;
                times.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await??);
    }
    Ok((all, start.elapsed()))
}

/// Prints one row; returns its p50 and p99 in ms.
fn row(
    label: &str,
    in_flight: usize,
    times: &mut [Duration],
    took: Option<Duration>,
) -> (f64, f64) {
    times.sort();
    let at = |q: f64| {
        let i = ((times.len() as f64 - 1.0) * q).round() as usize;
        times.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let rate = took.map_or_else(
        || {
            let total: Duration = times.iter().sum();
            times.len() as f64 / total.as_secs_f64().max(1e-9)
        },
        |t| times.len() as f64 / t.as_secs_f64().max(1e-9),
    );
    println!(
        "| {label} | {in_flight} | {:.1} | {:.1} | {rate:.0} |",
        at(0.5),
        at(0.99)
    );
    (at(0.5), at(0.99))
}
