//! `make bench-propagation`: how long canopy takes to fan 5 objects out from the root of
//! a namespace tree into every descendant, beside a plain client writing the same copies
//! itself, against the local control plane (etcd, kube-apiserver,
//! kube-controller-manager). Figures and method: docs/performance.md.
//!
//! Each cell (size × shape) gets a fresh control plane:
//!
//! 1. canopy's CRDs, ServiceAccount and RBAC are installed (`dev::canopy::prepare`); the
//!    ValidatingWebhookConfiguration is removed, because the manager runs with
//!    `--controllers` only (webhook cost is `make bench-webhook`'s subject).
//! 2. The tree is created as admin: N namespaces, N−1 HierarchyConfigurations.
//! 3. `canopy manager --controllers` starts as a separate process with the
//!    ServiceAccount's kubeconfig (`system:serviceaccount:canopy-system:canopy`, so
//!    API Priority and Fairness applies: `workload-low`), and labels the tree; the bench
//!    waits until the apiserver sees no writes for a while.
//! 4. **Propagation**: 5 sources (Role, RoleBinding, ResourceQuota, NetworkPolicy,
//!    LimitRange) are created at the root; the time runs until a metadata watch per kind
//!    has seen a copy in every descendant. Meanwhile an admin lists namespaces in a loop
//!    (`kubectl get ns`, first chunk of 500): its p50/p99 beside the same calls while
//!    idle, and the 429s canopy's writes got, show whether the fan-out crowds others out. Writes are counted from the apiserver's
//!    `apiserver_request_total` (verb `APPLY` on the 5 resources, which only canopy uses
//!    here), before and after, once the apiserver is quiet again.
//! 5. **Restart**: the manager is stopped, one copy (the Role in the last namespace) is
//!    deleted while it is down, and a new manager starts: the time until that copy is back,
//!    the time until its CPU goes idle, and every write it makes (exactly 1 expected).
//! 6. **Baseline**: with the manager stopped, the same ServiceAccount's token writes the
//!    same 5·(N−1) copies (the bodies canopy writes, under other names) with server-side
//!    apply, 32 workers per kind as canopy's propagation workers: once unthrottled, once
//!    through a 200 writes/s limiter like canopy's `Writer`.
//!
//! Environment: `BENCH_CELLS` (e.g. `100:wide,1000:deep`; default every shape at 100 and
//! 1,000), `BENCH_DEEP_CHAIN` (chain length of the deep shape above 1,000 namespaces,
//! default 50), `BENCH_MANAGER` (the canopy binary; default the one cargo built),
//! `BENCH_LOG_DIR` (manager logs; default `/tmp/canopy-bench-propagation`),
//! `BENCH_TIMEOUT_SECS` (per phase, default 900).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use canopy::api::{HIERARCHY_NAME, HierarchyConfiguration, HierarchyConfigurationSpec, keys};
use canopy::controllers::propagation::copy::{Strip, desired_copy};
use canopy::dev::{ControlPlane, ControlPlaneOptions, client_for};
use futures::{StreamExt, TryStreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::watcher::{self, Event};
use parking_lot::Mutex;
use serde_json::{Value, json};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Propagation workers per kind in the manager (`propagation::CONCURRENCY`).
const WORKERS_PER_KIND: usize = 32;
/// Object names of the 5 sources.
const SOURCE_NAME: &str = "bench";

/// The client-side limit canopy's `Writer` applied by default before issue 14 (now only
/// with `--write-qps`): the plain client's second variant, for comparison.
const DEFAULT_WRITE_QPS: u32 = 200;

fn main() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The future runs on this (main) thread, so the manager processes it forks get
    // PR_SET_PDEATHSIG from a thread that lives as long as the bench.
    runtime.block_on(run())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Wide,
    Deep,
    Balanced,
}

impl Shape {
    fn parse(s: &str) -> Result<Self, BoxError> {
        Ok(match s {
            "wide" => Self::Wide,
            "deep" => Self::Deep,
            "balanced" => Self::Balanced,
            other => return Err(format!("unknown shape {other:?} (wide, deep, balanced)").into()),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Wide => "wide",
            Self::Deep => "deep",
            Self::Balanced => "balanced",
        }
    }
}

struct Settings {
    cells: Vec<(usize, Shape)>,
    deep_chain: usize,
    manager: PathBuf,
    log_dir: PathBuf,
    timeout: Duration,
}

fn settings() -> Result<Settings, BoxError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let cells = match env("BENCH_CELLS") {
        Some(spec) => spec
            .split(',')
            .map(|cell| {
                let (size, shape) = cell
                    .trim()
                    .split_once(':')
                    .ok_or_else(|| format!("BENCH_CELLS: {cell:?} is not SIZE:SHAPE"))?;
                Ok((size.parse::<usize>()?, Shape::parse(shape)?))
            })
            .collect::<Result<Vec<_>, BoxError>>()?,
        None => [100, 1000]
            .into_iter()
            .flat_map(|n| [Shape::Wide, Shape::Deep, Shape::Balanced].map(|s| (n, s)))
            .collect(),
    };
    if cells.iter().any(|(n, _)| *n < 2) {
        return Err("a tree needs at least 2 namespaces".into());
    }
    Ok(Settings {
        cells,
        deep_chain: env("BENCH_DEEP_CHAIN").map_or(Ok(50), |v| v.parse())?,
        manager: env("BENCH_MANAGER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_canopy"))),
        log_dir: env("BENCH_LOG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/canopy-bench-propagation")),
        timeout: Duration::from_secs(env("BENCH_TIMEOUT_SECS").map_or(Ok(900), |v| v.parse())?),
    })
}

/// Parent index of each namespace (index 0 is the root).
///
/// - wide: every other namespace is a child of the root;
/// - deep: a chain of N (N ≤ 1,000), or a chain of `deep_chain` with the remaining
///   namespaces as leaves spread evenly over the chain's members;
/// - balanced: the complete 10-ary tree of N namespaces (heap order).
fn parents(shape: Shape, n: usize, deep_chain: usize) -> Vec<Option<usize>> {
    let chain = if n <= 1000 { n } else { deep_chain.clamp(1, n) };
    (0..n)
        .map(|i| {
            (i > 0).then(|| match shape {
                Shape::Wide => 0,
                Shape::Balanced => (i - 1) / 10,
                Shape::Deep if i < chain => i - 1,
                Shape::Deep => (i - chain) % chain,
            })
        })
        .collect()
}

fn depth_of(parents: &[Option<usize>]) -> usize {
    let mut depth = vec![0usize; parents.len()];
    for i in 1..parents.len() {
        // Parents precede children in every shape.
        depth[i] = parents[i].map_or(0, |p| depth[p] + 1);
    }
    depth.into_iter().max().unwrap_or(0)
}

fn ns_name(i: usize) -> String {
    format!("n{i}")
}

/// The 5 propagated kinds and the source object of each.
fn kinds() -> Vec<(ApiResource, Value)> {
    vec![
        (
            ApiResource::erase::<Role>(&()),
            json!({"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}),
        ),
        (
            ApiResource::erase::<RoleBinding>(&()),
            json!({
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "bench-devs"}]
            }),
        ),
        (
            ApiResource::erase::<ResourceQuota>(&()),
            json!({"spec": {"hard": {"pods": "100"}}}),
        ),
        (
            ApiResource::erase::<NetworkPolicy>(&()),
            json!({"spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
        ),
        (
            ApiResource::erase::<LimitRange>(&()),
            json!({"spec": {"limits": [{"type": "Container", "default": {"cpu": "200m", "memory": "128Mi"}}]}}),
        ),
    ]
}

async fn run() -> Result<(), BoxError> {
    let settings = settings()?;
    std::fs::create_dir_all(&settings.log_dir)?;
    println!(
        "canopy propagation benchmark: {} cell(s); manager {}; logs in {}",
        settings.cells.len(),
        settings.manager.display(),
        settings.log_dir.display()
    );
    let mut rows = Vec::new();
    for &(n, shape) in &settings.cells {
        println!("\n## {n} namespaces, {}", shape.name());
        let row = cell(&settings, n, shape).await?;
        println!("{}", row.detail);
        rows.push(row);
    }
    println!(
        "\n| tree | depth | copies | canopy | baseline (unthrottled) | ratio | baseline (200/s) | ratio | copy writes | restart: repaired / idle / object writes | peak RSS | peak RSS after restart | peak RSS / cached objects (base included) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!("{}", row.table);
    }
    Ok(())
}

struct Row {
    table: String,
    detail: String,
}

async fn cell(settings: &Settings, n: usize, shape: Shape) -> Result<Row, BoxError> {
    let label = format!("{n}-{}", shape.name());
    let plane = ControlPlane::start(ControlPlaneOptions::default()).await?;
    let admin = plane.client().await?;
    let prepared = canopy::dev::canopy::prepare(&plane).await?;
    // The manager runs with --controllers: no webhook server answers the registered
    // configuration, so remove it (failurePolicy Fail would refuse every write).
    drop(prepared.webhooks);
    Api::<ValidatingWebhookConfiguration>::all(admin.clone())
        .delete("canopy", &DeleteParams::default())
        .await?;
    let sa = client_for(&prepared.manager_kubeconfig).await?;

    // ---- the tree ----
    let parents = parents(shape, n, settings.deep_chain);
    let depth = depth_of(&parents);
    let names: Vec<String> = (0..n).map(ns_name).collect();
    let root = names[0].clone();
    let descendants: Vec<String> = names[1..].to_vec();
    let started = Instant::now();
    create_tree(&admin, &names, &parents).await?;
    println!(
        "tree created ({n} namespaces, depth {depth}) in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let log = |k: usize| settings.log_dir.join(format!("{label}-manager-{k}.log"));
    let mut manager = Manager::start(&settings.manager, &prepared.manager_kubeconfig, &log(1))?;
    let started = Instant::now();
    wait_for_tree(&admin, &names, &root, &mut manager, settings.timeout).await?;
    wait_quiet(&admin, Duration::from_secs(3), settings.timeout).await?;
    println!(
        "manager labelled the tree; quiet after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // ---- propagation ----
    let kinds = kinds();
    let before = request_counts(&admin).await?;
    let cpu_before = manager.cpu();
    let observer = Observer::start(&admin, &kinds, &root, &descendants).await?;
    // Another client's view: an admin listing namespaces (`kubectl get ns`, one chunk),
    // idle now and again during the fan-out.
    let idle = Latencies::of(admin_list_loop(&admin, Some(100), None).await);
    let busy_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = tokio::spawn(admin_list_loop_owned(admin.clone(), busy_stop.clone()));
    let t0 = Instant::now();
    futures::future::try_join_all(kinds.iter().map(|(ar, body)| {
        let admin = admin.clone();
        let root = root.clone();
        async move {
            let mut obj = body.clone();
            obj["apiVersion"] = ar.api_version.clone().into();
            obj["kind"] = ar.kind.clone().into();
            obj["metadata"] = json!({"name": SOURCE_NAME, "namespace": root});
            let obj: DynamicObject = serde_json::from_value(obj)?;
            Api::<DynamicObject>::namespaced_with(admin, &root, ar)
                .create(&PostParams::default(), &obj)
                .await?;
            Ok::<_, BoxError>(())
        }
    }))
    .await?;
    let arrivals = observer
        .wait(t0, settings.timeout, &mut manager)
        .await
        .map_err(|e| format!("{label}: {e}"))?;
    let t_canopy = arrivals.last;
    busy_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let busy = Latencies::of(busy.await.unwrap_or_default());
    let prop_cpu = manager.cpu().saturating_sub(cpu_before);
    let (rss_after_prop, hwm_prop) = manager.memory();
    let after = wait_quiet(&admin, Duration::from_secs(3), settings.timeout).await?;
    let prop_writes = diff(&before, &after);
    let copies = kinds.len() * descendants.len();
    let copy_applies = count(&prop_writes, |k| {
        k.verb == "APPLY" && k.subresource.is_empty() && is_kind(&kinds, &k.resource)
    });
    println!(
        "propagation: {copies} copies in {:.2} s (p50 arrival {:.2} s), {copy_applies} copy applies, manager CPU {:.1} s, RSS {:.1} MiB, peak {:.1} MiB",
        t_canopy.as_secs_f64(),
        arrivals.p50.as_secs_f64(),
        prop_cpu.as_secs_f64(),
        mib(rss_after_prop),
        mib(hwm_prop)
    );
    println!("writes during propagation:\n{}", describe(&prop_writes));
    let throttled = count(&prop_writes, |k| k.code == "429");
    println!(
        "admin `get ns` (limit 500): idle p50 {:.1} ms p99 {:.1} ms ({} calls); during the fan-out p50 {:.1} ms p99 {:.1} ms ({} calls): p99 {:.2}x idle; 429 answers to writes: {throttled}",
        idle.p50_ms,
        idle.p99_ms,
        idle.n,
        busy.p50_ms,
        busy.p99_ms,
        busy.n,
        busy.p99_ms / idle.p99_ms.max(0.001)
    );

    // ---- restart on the converged tree, with one copy deleted while it is down ----
    manager.stop();
    let last = descendants
        .last()
        .cloned()
        .ok_or("the tree has no descendant")?;
    let (role_ar, _) = &kinds[0];
    Api::<DynamicObject>::namespaced_with(admin.clone(), &last, role_ar)
        .delete(SOURCE_NAME, &DeleteParams::default())
        .await?;
    let before = wait_quiet(&admin, Duration::from_secs(2), settings.timeout).await?;
    let mut manager = Manager::start(&settings.manager, &prepared.manager_kubeconfig, &log(2))?;
    let restarted = manager.started;
    let repaired = wait_for_object(
        &admin,
        role_ar,
        &last,
        SOURCE_NAME,
        settings.timeout,
        &mut manager,
    )
    .await?
    .saturating_duration_since(restarted);
    let idle = manager.wait_idle(Duration::from_millis(1500), settings.timeout)?;
    let after = wait_quiet(&admin, Duration::from_secs(3), settings.timeout).await?;
    let restart_writes = diff(&before, &after);
    // Lease traffic is leader election's, and a 404 wrote nothing (the status of a
    // CanopyConfiguration that does not exist); both are listed below.
    let restart_total = count(&restart_writes, |k| {
        k.resource != "leases" && k.code != "404"
    });
    let (rss_restart, hwm_restart) = manager.memory();
    println!(
        "restart: deleted copy back after {:.2} s, CPU idle after {:.2} s, {restart_total} object write(s) (1 expected), RSS {:.1} MiB, peak {:.1} MiB",
        repaired.as_secs_f64(),
        idle.as_secs_f64(),
        mib(rss_restart),
        mib(hwm_restart)
    );
    println!("writes during restart:\n{}", describe(&restart_writes));
    manager.stop();

    // ---- baseline: the same copies, written directly by the same identity ----
    let mut bodies = Vec::new();
    for (ar, _) in &kinds {
        let source = Api::<DynamicObject>::namespaced_with(admin.clone(), &root, ar)
            .get(SOURCE_NAME)
            .await?;
        bodies.push((ar.clone(), source));
    }
    let mut baselines = Vec::new();
    for (variant, qps) in [("a", None), ("b", Some(DEFAULT_WRITE_QPS))] {
        let before = request_counts(&admin).await?;
        let name = format!("baseline-{variant}");
        let jobs: Vec<(ApiResource, Vec<(String, Value)>)> = bodies
            .iter()
            .map(|(ar, source)| {
                let objects = descendants
                    .iter()
                    .map(|ns| {
                        let (mut copy, _) = desired_copy(ar, source, &root, ns, &Strip::default());
                        copy["metadata"]["name"] = name.clone().into();
                        (ns.clone(), copy)
                    })
                    .collect();
                (ar.clone(), objects)
            })
            .collect();
        let (elapsed, retries) = baseline(&sa, jobs, &name, qps).await?;
        let after = wait_quiet(&admin, Duration::from_secs(2), settings.timeout).await?;
        let writes = diff(&before, &after);
        let applies = count(&writes, |k| {
            k.verb == "APPLY" && k.subresource.is_empty() && is_kind(&kinds, &k.resource)
        });
        println!(
            "baseline {}: {copies} writes in {:.2} s ({applies} applies seen, {retries} retries)",
            qps.map_or("unthrottled".to_owned(), |q| format!("at {q}/s")),
            elapsed.as_secs_f64()
        );
        baselines.push(elapsed);
    }
    drop(plane);

    let cached = copies + n; // copies plus namespaces, the objects the manager holds most of
    let per_object = (hwm_restart.max(hwm_prop) as f64 * 1024.0) / cached as f64;
    let table = format!(
        "| {n} {} | {depth} | {copies} | {:.2} s | {:.2} s | {:.2}x | {:.2} s | {:.2}x | {copy_applies} | {:.2} s / {:.2} s / {restart_total} | {:.1} MiB | {:.1} MiB | {:.2} KiB |",
        shape.name(),
        t_canopy.as_secs_f64(),
        baselines[0].as_secs_f64(),
        t_canopy.as_secs_f64() / baselines[0].as_secs_f64(),
        baselines[1].as_secs_f64(),
        t_canopy.as_secs_f64() / baselines[1].as_secs_f64(),
        repaired.as_secs_f64(),
        idle.as_secs_f64(),
        mib(hwm_prop),
        mib(hwm_restart),
        per_object / 1024.0,
    );
    Ok(Row {
        table,
        detail: format!(
            "cell {label}: canopy {:.2} s, baseline {:.2} s / {:.2} s",
            t_canopy.as_secs_f64(),
            baselines[0].as_secs_f64(),
            baselines[1].as_secs_f64()
        ),
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn is_kind(kinds: &[(ApiResource, Value)], resource: &str) -> bool {
    kinds.iter().any(|(ar, _)| ar.plural == resource)
}

// ---- setup ----

/// Creates the namespaces, then the HierarchyConfigurations, 64 at a time, as admin.
async fn create_tree(
    admin: &Client,
    names: &[String],
    parents: &[Option<usize>],
) -> Result<(), BoxError> {
    let ns_api: Api<Namespace> = Api::all(admin.clone());
    futures::stream::iter(names.iter())
        .map(|name| {
            let api = ns_api.clone();
            async move {
                let mut ns = Namespace::default();
                ns.metadata.name = Some(name.clone());
                api.create(&PostParams::default(), &ns).await?;
                Ok::<_, BoxError>(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    futures::stream::iter(names.iter().zip(parents))
        .filter_map(|(name, parent)| async move { parent.map(|p| (name, ns_name(p))) })
        .map(|(name, parent)| {
            let api: Api<HierarchyConfiguration> = Api::namespaced(admin.clone(), name);
            async move {
                let hc = HierarchyConfiguration::new(
                    HIERARCHY_NAME,
                    HierarchyConfigurationSpec {
                        parent: Some(parent),
                        allow_cascading_deletion: false,
                    },
                );
                api.create(&PostParams::default(), &hc).await?;
                Ok::<_, BoxError>(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Waits until every namespace carries the root's depth label.
async fn wait_for_tree(
    admin: &Client,
    names: &[String],
    root: &str,
    manager: &mut Manager,
    timeout: Duration,
) -> Result<(), BoxError> {
    let api: Api<Namespace> = Api::all(admin.clone());
    let params = ListParams::default().labels(&keys::tree_depth_label(root));
    let start = Instant::now();
    loop {
        manager.check()?;
        let mut labelled = 0;
        let mut continue_token: Option<String> = None;
        loop {
            let mut page = params.clone().limit(500);
            if let Some(token) = continue_token.take() {
                page = page.continue_token(&token);
            }
            let list = api.list_metadata(&page).await?;
            labelled += list.items.len();
            match list.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => continue_token = Some(token),
                None => break,
            }
        }
        if labelled == names.len() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!("only {labelled} of {} namespaces labelled", names.len()).into());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

// ---- the manager process ----

struct Manager {
    child: Child,
    started: Instant,
    log: PathBuf,
}

impl Manager {
    fn start(program: &Path, kubeconfig: &Path, log: &Path) -> Result<Self, BoxError> {
        let file = std::fs::File::create(log)?;
        let mut command = Command::new(program);
        command
            .args(["manager", "--controllers"])
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_MANAGER_LOG")
                    .unwrap_or_else(|_| "info,kube_client::client::builder=off".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        // SAFETY: prctl(2) is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = command.spawn()?;
        Ok(Self {
            child,
            started: Instant::now(),
            log: log.to_owned(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error with the end of the log if the manager has exited.
    fn check(&mut self) -> Result<(), BoxError> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!("the manager exited ({status}):\n{}", tail.join("\n")).into());
        }
        Ok(())
    }

    /// User plus system CPU time so far.
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at field 3.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // utime and stime are fields 14 and 15: index 11 and 12 after the name.
        let total = ticks(11) + ticks(12);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(total * 1000 / hz)
    }

    /// (VmRSS, VmHWM) in KiB.
    fn memory(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Time from start until the CPU time last grew, once it has not grown for `quiet`.
    fn wait_idle(&mut self, quiet: Duration, timeout: Duration) -> Result<Duration, BoxError> {
        let mut last = self.cpu();
        let mut last_change = Instant::now();
        loop {
            self.check()?;
            std::thread::sleep(Duration::from_millis(50));
            let now = self.cpu();
            if now != last {
                last = now;
                last_change = Instant::now();
            } else if last_change.elapsed() >= quiet {
                return Ok(last_change.saturating_duration_since(self.started));
            }
            if self.started.elapsed() > timeout {
                return Err("the manager never went idle".into());
            }
        }
    }

    /// SIGTERM, then SIGKILL after 10 s.
    fn stop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        if let Ok(pid) = i32::try_from(self.pid()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

// ---- observing copies ----

struct Arrivals {
    last: Duration,
    p50: Duration,
}

/// One metadata watch per kind on copies from the root; records when each descendant
/// first holds a copy.
struct Observer {
    seen: Arc<Mutex<HashMap<(usize, String), Instant>>>,
    expected: usize,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Observer {
    async fn start(
        admin: &Client,
        kinds: &[(ApiResource, Value)],
        root: &str,
        descendants: &[String],
    ) -> Result<Self, BoxError> {
        let seen: Arc<Mutex<HashMap<(usize, String), Instant>>> = Arc::default();
        let wanted: Arc<HashSet<String>> = Arc::new(descendants.iter().cloned().collect());
        let mut tasks = Vec::new();
        let mut listed = Vec::new();
        for (k, (ar, _)) in kinds.iter().enumerate() {
            let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(admin.clone(), ar);
            let config = watcher::Config::default()
                .labels(&format!("{}={root}", keys::INHERITED_FROM))
                .any_semantic();
            let (tx, rx) = tokio::sync::oneshot::channel();
            listed.push(rx);
            let (seen, wanted) = (seen.clone(), wanted.clone());
            tasks.push(tokio::spawn(async move {
                let mut tx = Some(tx);
                let mut stream = std::pin::pin!(watcher::watcher(api, config));
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(Event::Apply(obj)) | Ok(Event::InitApply(obj)) => {
                            let (Some(ns), Some(name)) =
                                (obj.metadata.namespace, obj.metadata.name)
                            else {
                                continue;
                            };
                            if name == SOURCE_NAME && wanted.contains(&ns) {
                                seen.lock().entry((k, ns)).or_insert_with(Instant::now);
                            }
                        }
                        Ok(Event::InitDone) => {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        Ok(_) => {}
                        Err(err) => eprintln!("observer watch: {err}"),
                    }
                }
            }));
        }
        for rx in listed {
            rx.await?;
        }
        Ok(Self {
            seen,
            expected: kinds.len() * descendants.len(),
            tasks,
        })
    }

    async fn wait(
        self,
        t0: Instant,
        timeout: Duration,
        manager: &mut Manager,
    ) -> Result<Arrivals, BoxError> {
        loop {
            let have = self.seen.lock().len();
            if have >= self.expected {
                break;
            }
            manager.check()?;
            if t0.elapsed() > timeout {
                return Err(format!("only {have} of {} copies arrived", self.expected).into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for task in &self.tasks {
            task.abort();
        }
        let mut times: Vec<Duration> = self
            .seen
            .lock()
            .values()
            .map(|t| t.saturating_duration_since(t0))
            .collect();
        times.sort();
        Ok(Arrivals {
            last: times.last().copied().unwrap_or_default(),
            p50: times.get(times.len() / 2).copied().unwrap_or_default(),
        })
    }
}

async fn wait_for_object(
    admin: &Client,
    ar: &ApiResource,
    namespace: &str,
    name: &str,
    timeout: Duration,
    manager: &mut Manager,
) -> Result<Instant, BoxError> {
    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), namespace, ar);
    let start = Instant::now();
    loop {
        if api.get_opt(name).await?.is_some() {
            return Ok(Instant::now());
        }
        manager.check()?;
        if start.elapsed() > timeout {
            return Err(format!("{namespace}/{name} never came back").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- the baseline ----

/// Server-side applies every object with 32 workers per kind, optionally through one
/// shared limiter of `qps` writes/s (what canopy's `Writer` does). Returns the time
/// and the number of retried requests (429s and 5xx).
async fn baseline(
    client: &Client,
    jobs: Vec<(ApiResource, Vec<(String, Value)>)>,
    name: &str,
    qps: Option<u32>,
) -> Result<(Duration, usize), BoxError> {
    let limiter: Option<Arc<DefaultDirectRateLimiter>> = qps.map(|q| {
        Arc::new(RateLimiter::direct(Quota::per_second(
            NonZeroU32::new(q).unwrap_or(NonZeroU32::MIN),
        )))
    });
    let retries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for (ar, objects) in jobs {
        let queue = Arc::new(Mutex::new(VecDeque::from(objects)));
        for _ in 0..WORKERS_PER_KIND {
            let (queue, client, ar, limiter, retries) = (
                queue.clone(),
                client.clone(),
                ar.clone(),
                limiter.clone(),
                retries.clone(),
            );
            let name = name.to_owned();
            workers.spawn(async move {
                loop {
                    let next = queue.lock().pop_front();
                    let Some((ns, object)) = next else {
                        return Ok::<_, kube::Error>(());
                    };
                    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
                    let mut attempt = 0;
                    loop {
                        if let Some(limiter) = &limiter {
                            limiter.until_ready().await;
                        }
                        match api
                            .patch(
                                &name,
                                &PatchParams::apply(keys::FIELD_MANAGER).force(),
                                &Patch::Apply(&object),
                            )
                            .await
                        {
                            Ok(_) => break,
                            Err(kube::Error::Api(s))
                                if (s.code == 429 || s.code >= 500) && attempt < 10 =>
                            {
                                attempt += 1;
                                retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
            });
        }
    }
    while let Some(result) = workers.join_next().await {
        result??;
    }
    Ok((
        start.elapsed(),
        retries.load(std::sync::atomic::Ordering::Relaxed),
    ))
}

// ---- another client's latency ----

#[derive(Default)]
struct Latencies {
    n: usize,
    p50_ms: f64,
    p99_ms: f64,
}

impl Latencies {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |q: f64| {
            samples
                .get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        Self {
            n: samples.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
        }
    }
}

/// Lists namespaces as `kubectl get ns` does (its first chunk of 500), one call after
/// another, `calls` times or until `stop`; returns each call's latency.
async fn admin_list_loop(
    admin: &Client,
    calls: Option<usize>,
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> Vec<Duration> {
    let api: Api<Namespace> = Api::all(admin.clone());
    let mut samples = Vec::new();
    while calls.is_none_or(|c| samples.len() < c)
        && !stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
    {
        let started = Instant::now();
        if api.list(&ListParams::default().limit(500)).await.is_ok() {
            samples.push(started.elapsed());
        }
    }
    samples
}

async fn admin_list_loop_owned(
    admin: Client,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Duration> {
    admin_list_loop(&admin, None, Some(&stop)).await
}

// ---- apiserver request counters ----

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct RequestKey {
    verb: String,
    resource: String,
    subresource: String,
    code: String,
}

type Counts = BTreeMap<RequestKey, u64>;

const MUTATING: [&str; 6] = [
    "CREATE",
    "UPDATE",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

/// `apiserver_request_total` for mutating verbs, by verb, resource, subresource and code.
async fn request_counts(admin: &Client) -> Result<Counts, BoxError> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = admin.request_text(request).await?;
    let mut counts = Counts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let labels: HashMap<&str, &str> = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        let verb = labels.get("verb").copied().unwrap_or_default();
        if !MUTATING.contains(&verb) {
            continue;
        }
        let key = RequestKey {
            verb: verb.to_owned(),
            resource: labels
                .get("resource")
                .copied()
                .unwrap_or_default()
                .to_owned(),
            subresource: labels
                .get("subresource")
                .copied()
                .unwrap_or_default()
                .to_owned(),
            code: labels.get("code").copied().unwrap_or_default().to_owned(),
        };
        let value = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        *counts.entry(key).or_default() += value;
    }
    Ok(counts)
}

/// Waits until no mutating request has been counted for `quiet`; returns the counts.
async fn wait_quiet(
    admin: &Client,
    quiet: Duration,
    timeout: Duration,
) -> Result<Counts, BoxError> {
    let start = Instant::now();
    let mut last = request_counts(admin).await?;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = request_counts(admin).await?;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return Ok(last);
        }
        if start.elapsed() > timeout {
            return Err("the apiserver never went quiet".into());
        }
    }
}

fn diff(before: &Counts, after: &Counts) -> Counts {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

fn count(counts: &Counts, filter: impl Fn(&RequestKey) -> bool) -> u64 {
    counts
        .iter()
        .filter(|(k, _)| filter(k))
        .map(|(_, v)| v)
        .sum()
}

fn describe(counts: &Counts) -> String {
    if counts.is_empty() {
        return "  (none)".to_owned();
    }
    counts
        .iter()
        .map(|(k, v)| {
            let resource = if k.subresource.is_empty() {
                k.resource.clone()
            } else {
                format!("{}/{}", k.resource, k.subresource)
            };
            format!("  {} {resource} {}: {v}", k.verb, k.code)
        })
        .collect::<Vec<_>>()
        .join("\n")
}
