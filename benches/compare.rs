//! `make bench-compare`: canopy beside HNC v1.1.0 and beside a plain client, the same
//! scenario on a fresh control plane each. Figures and method: docs/performance.md,
//! "Side by side with HNC".
//!
//! For every tree (size × shape) and every system, a fresh control plane (etcd,
//! kube-apiserver, kube-controller-manager) gets the same tree of N namespaces (N−1
//! HierarchyConfigurations, created as admin before any controller runs), then:
//!
//! 1. the controller starts as its own process and labels the tree (the bench waits for
//!    the root's depth label on every namespace and for the apiserver to go quiet);
//! 2. **one object**, in `COMPARE_ONE_TRIALS` trials (default 5): a RoleBinding is created
//!    in the root (`bench-101`, `bench-102`, …, the last `bench-0`); the time runs until a
//!    metadata watch has seen its copy in every descendant (N−1 copies). Nothing is deleted
//!    between trials (a deletion leaves HNC busy for the next trial), so each trial adds one
//!    more object to the same tree. The median is reported; a one-second trial is within
//!    this machine's noise;
//! 3. **five objects**: 5 more RoleBindings (`bench-1` … `bench-5`) at once, 5·(N−1) copies;
//! 4. peak RSS (`VmHWM` of the controller process), then a **restart on the converged
//!    tree**: SIGTERM, a new process, the time until it is idle (its CPU time has not grown
//!    for 2 s and the apiserver has counted no write since), and the writes it made
//!    (0 expected).
//!
//! The systems:
//!
//! - **plain**: no controller. The bench itself writes every copy (the body canopy would
//!   write, `desired_copy`, under the source's name) with server-side apply, 32 requests in
//!   flight (canopy's propagation workers per kind), as canopy's ServiceAccount (the same
//!   API Priority and Fairness flow as canopy). The time includes creating the source.
//!   This is the limit: the same writes with no controller in the way. With
//!   `COMPARE_PLAIN_COPY_WATCH=1` it also watches every copy's metadata, as canopy does.
//! - **canopy**: `canopy manager --controllers` at its defaults, as its ServiceAccount. The
//!   webhook configuration is removed (no webhook server runs); the admin port is a free
//!   loopback port.
//! - **hnc**: HNC v1.1.0's manager (`hack/build-hnc.sh`) with the arguments of its release
//!   manifest (`--max-reconciles=10 --apiserver-qps-throttle=50`, the 4 system namespaces
//!   excluded), **`--no-webhooks`** (HNC's webhooks need a Service in front of the
//!   manager, which this control plane without a node cannot route to),
//!   `--enable-stackdriver=false`, no metrics or probe ports, with the admin kubeconfig
//!   (as `system:masters` it is exempt from API Priority and Fairness, which can only
//!   help it). Its CRDs come from the module's `config/crd/bases`.
//!
//! Writes are counted from the apiserver's `apiserver_request_total` (every mutating
//! request on `rolebindings`, minus the sources the bench created), before and after each
//! phase, once the apiserver is quiet.
//!
//! Environment: `COMPARE_NAMESPACES` (sizes, comma separated; default 1000),
//! `COMPARE_SHAPES` (default `wide,balanced`), `COMPARE_SYSTEMS` (default
//! `plain,canopy,hnc`), `COMPARE_HNC_DIR` (holds `manager` and `crds/`; default
//! `$CANOPY_CACHE/hnc-v1.1.0`), `BENCH_MANAGER` (the canopy binary; default the one cargo
//! built), `BENCH_LOG_DIR` (controller logs; default `/tmp/canopy-bench-compare`),
//! `BENCH_TIMEOUT_SECS` (per phase, default 900).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use canopy::api::{HIERARCHY_NAME, HierarchyConfiguration, HierarchyConfigurationSpec, keys};
use canopy::controllers::propagation::copy::{Strip, desired_copy};
use canopy::dev::{ControlPlane, ControlPlaneOptions, client_for, free_port};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta};
use kube::runtime::watcher::{self, Event};
use parking_lot::Mutex;
use serde_json::json;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Requests in flight of the plain client: canopy's propagation workers per kind.
const PLAIN_CONCURRENCY: usize = 32;
/// HNC's label on its copies and the suffix of its depth labels.
const HNC_INHERITED_FROM: &str = "hnc.x-k8s.io/inherited-from";
const HNC_DEPTH_SUFFIX: &str = ".tree.hnc.x-k8s.io/depth";
/// The arguments of HNC v1.1.0's release manifest (config/manager/manager.yaml), with the
/// webhooks, Stackdriver and the metrics and probe ports off.
const HNC_ARGS: &[&str] = &[
    "--no-webhooks",
    "--enable-stackdriver=false",
    "--metrics-addr=0",
    "--health-probe-bind-address=0",
    "--max-reconciles=10",
    "--apiserver-qps-throttle=50",
    "--excluded-namespace=kube-system",
    "--excluded-namespace=kube-public",
    "--excluded-namespace=hnc-system",
    "--excluded-namespace=kube-node-lease",
];

fn main() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The future runs on this (main) thread, so the controller processes it forks get
    // PR_SET_PDEATHSIG from a thread that lives as long as the bench.
    runtime.block_on(run())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Wide,
    Balanced,
}

impl Shape {
    fn parse(s: &str) -> Result<Self, BoxError> {
        Ok(match s.trim() {
            "wide" => Self::Wide,
            "balanced" => Self::Balanced,
            other => return Err(format!("unknown shape {other:?} (wide, balanced)").into()),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Wide => "wide",
            Self::Balanced => "balanced",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    Plain,
    Canopy,
    Hnc,
}

impl System {
    fn parse(s: &str) -> Result<Self, BoxError> {
        Ok(match s.trim() {
            "plain" => Self::Plain,
            "canopy" => Self::Canopy,
            "hnc" => Self::Hnc,
            other => {
                return Err(format!("unknown system {other:?} (plain, canopy, hnc)").into());
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain client",
            Self::Canopy => "canopy",
            Self::Hnc => "HNC v1.1.0",
        }
    }

    fn inherited_from(self) -> &'static str {
        match self {
            Self::Plain | Self::Canopy => keys::INHERITED_FROM,
            Self::Hnc => HNC_INHERITED_FROM,
        }
    }

    fn hierarchy_resource(self) -> ApiResource {
        match self {
            Self::Plain | Self::Canopy => ApiResource::erase::<HierarchyConfiguration>(&()),
            Self::Hnc => ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("hnc.x-k8s.io", "v1alpha2", "HierarchyConfiguration"),
                "hierarchyconfigurations",
            ),
        }
    }

    fn hierarchy(self, parent: &str) -> Result<DynamicObject, BoxError> {
        let value = match self {
            Self::Plain | Self::Canopy => serde_json::to_value(HierarchyConfiguration::new(
                HIERARCHY_NAME,
                HierarchyConfigurationSpec {
                    parent: Some(parent.to_owned()),
                    allow_cascading_deletion: false,
                },
            ))?,
            Self::Hnc => json!({
                "apiVersion": "hnc.x-k8s.io/v1alpha2",
                "kind": "HierarchyConfiguration",
                "metadata": {"name": "hierarchy"},
                "spec": {"parent": parent},
            }),
        };
        Ok(serde_json::from_value(value)?)
    }

    fn depth_label(self, root: &str) -> String {
        match self {
            Self::Plain | Self::Canopy => keys::tree_depth_label(root),
            Self::Hnc => format!("{root}{HNC_DEPTH_SUFFIX}"),
        }
    }
}

struct Settings {
    sizes: Vec<usize>,
    shapes: Vec<Shape>,
    systems: Vec<System>,
    canopy: PathBuf,
    hnc_dir: PathBuf,
    log_dir: PathBuf,
    timeout: Duration,
    /// One-object trials per tree and system; the median is reported.
    one_trials: usize,
    /// The plain client also watches every copy's metadata, as canopy does: what that
    /// watch alone costs (a diagnosis, off by default).
    plain_copy_watch: bool,
}

fn settings() -> Result<Settings, BoxError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let list = |k: &str, default: &str| {
        env(k)
            .unwrap_or_else(|| default.to_owned())
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
    };
    let sizes = list("COMPARE_NAMESPACES", "1000")
        .iter()
        .map(|s| s.parse::<usize>())
        .collect::<Result<Vec<_>, _>>()?;
    if sizes.iter().any(|n| *n < 2) {
        return Err("a tree needs at least 2 namespaces".into());
    }
    let cache = env("CANOPY_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/canopy")
    });
    Ok(Settings {
        sizes,
        shapes: list("COMPARE_SHAPES", "wide,balanced")
            .iter()
            .map(|s| Shape::parse(s))
            .collect::<Result<_, _>>()?,
        systems: list("COMPARE_SYSTEMS", "plain,canopy,hnc")
            .iter()
            .map(|s| System::parse(s))
            .collect::<Result<_, _>>()?,
        canopy: env("BENCH_MANAGER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_canopy"))),
        hnc_dir: env("COMPARE_HNC_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache.join("hnc-v1.1.0")),
        log_dir: env("BENCH_LOG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/canopy-bench-compare")),
        timeout: Duration::from_secs(env("BENCH_TIMEOUT_SECS").map_or(Ok(900), |v| v.parse())?),
        one_trials: env("COMPARE_ONE_TRIALS")
            .map_or(Ok(5), |v| v.parse::<usize>())?
            .max(1),
        plain_copy_watch: env("COMPARE_PLAIN_COPY_WATCH").is_some_and(|v| v == "1"),
    })
}

/// Parent index of each namespace (index 0 is the root): wide = every other namespace a
/// child of the root; balanced = the complete 10-ary tree (heap order).
fn parents(shape: Shape, n: usize) -> Vec<Option<usize>> {
    (0..n)
        .map(|i| {
            (i > 0).then(|| match shape {
                Shape::Wide => 0,
                Shape::Balanced => (i - 1) / 10,
            })
        })
        .collect()
}

fn depth_of(parents: &[Option<usize>]) -> usize {
    let mut depth = vec![0usize; parents.len()];
    for i in 1..parents.len() {
        // Parents precede children in both shapes.
        depth[i] = parents[i].map_or(0, |p| depth[p] + 1);
    }
    depth.into_iter().max().unwrap_or(0)
}

fn ns_name(i: usize) -> String {
    format!("n{i}")
}

fn source_name(i: usize) -> String {
    format!("bench-{i}")
}

/// The source RoleBinding: the `view` ClusterRole for a group (HNC and canopy propagate
/// RoleBindings by default).
fn source(root: &str, name: &str) -> Result<DynamicObject, BoxError> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": root},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name}],
    }))?)
}

async fn run() -> Result<(), BoxError> {
    let settings = settings()?;
    std::fs::create_dir_all(&settings.log_dir)?;
    if settings.systems.contains(&System::Hnc) {
        let manager = settings.hnc_dir.join("manager");
        if !manager.is_file() {
            return Err(format!(
                "{} is missing: run hack/build-hnc.sh (make bench-compare does)",
                manager.display()
            )
            .into());
        }
    }
    println!(
        "canopy vs HNC vs a plain client: sizes {:?}, shapes {:?}, systems {:?}; canopy {}; HNC {}; logs in {}",
        settings.sizes,
        settings.shapes.iter().map(|s| s.name()).collect::<Vec<_>>(),
        settings
            .systems
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>(),
        settings.canopy.display(),
        settings.hnc_dir.display(),
        settings.log_dir.display()
    );
    let mut results: Vec<(usize, Shape, Vec<Outcome>)> = Vec::new();
    for &n in &settings.sizes {
        for &shape in &settings.shapes {
            let mut outcomes = Vec::new();
            for &system in &settings.systems {
                println!("\n## {n} namespaces, {}: {}", shape.name(), system.name());
                let outcome = one_run(&settings, n, shape, system).await?;
                outcomes.push(outcome);
            }
            results.push((n, shape, outcomes));
        }
    }
    print_table(&results);
    Ok(())
}

struct Outcome {
    system: System,
    depth: usize,
    /// Time until every descendant holds the copy of one RoleBinding.
    one: Duration,
    /// Time until every descendant holds the copies of five more RoleBindings.
    five: Duration,
    /// Writes on rolebindings per copy, in each phase.
    per_copy_one: f64,
    per_copy_five: f64,
    controller: Option<ControllerFigures>,
}

struct ControllerFigures {
    /// Time from start until the tree was labelled.
    labelled: Duration,
    /// VmHWM in KiB, over labelling and both phases.
    peak_rss: u64,
    /// From spawning the restarted process until it is idle.
    restart_idle: Duration,
    /// Object writes during the restart (`is_object_write`).
    restart_writes: u64,
    restart_peak_rss: u64,
}

async fn one_run(
    settings: &Settings,
    n: usize,
    shape: Shape,
    system: System,
) -> Result<Outcome, BoxError> {
    let label = format!("{n}-{}-{system:?}", shape.name()).to_lowercase();
    let plane = ControlPlane::start(ControlPlaneOptions::default()).await?;
    let admin = plane.client().await?;

    // ---- what each system needs installed ----
    let mut canopy_kubeconfig = None;
    match system {
        System::Plain | System::Canopy => {
            let prepared = canopy::dev::canopy::prepare(&plane).await?;
            // No webhook server runs: remove the configuration (failurePolicy Fail
            // would refuse every write).
            drop(prepared.webhooks);
            Api::<ValidatingWebhookConfiguration>::all(admin.clone())
                .delete("canopy", &DeleteParams::default())
                .await?;
            wait_webhooks_gone(&admin).await?;
            canopy_kubeconfig = Some(prepared.manager_kubeconfig);
        }
        System::Hnc => install_hnc(&plane, &admin, &settings.hnc_dir).await?,
    }

    // ---- the tree ----
    let parents = parents(shape, n);
    let depth = depth_of(&parents);
    let names: Vec<String> = (0..n).map(ns_name).collect();
    let root = names[0].clone();
    let descendants: Vec<String> = names[1..].to_vec();
    let started = Instant::now();
    create_tree(&admin, system, &names, &parents).await?;
    println!(
        "tree created ({n} namespaces, depth {depth}) in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let log = |k: usize| settings.log_dir.join(format!("{label}-{k}.log"));
    let start_controller = |k: usize| -> Result<Option<Controller>, BoxError> {
        Ok(match system {
            System::Plain => None,
            System::Canopy => Some(Controller::start(
                &settings.canopy,
                &[
                    "manager",
                    "--controllers",
                    // Its default, 0.0.0.0:8080, may be taken on a shared machine.
                    "--admin-addr",
                    &format!("127.0.0.1:{}", free_port()?),
                ],
                canopy_kubeconfig.as_deref().ok_or("no canopy kubeconfig")?,
                &log(k),
            )?),
            System::Hnc => Some(Controller::start(
                &settings.hnc_dir.join("manager"),
                HNC_ARGS,
                plane.admin_kubeconfig(),
                &log(k),
            )?),
        })
    };
    let before_labels = request_counts(&admin).await?;
    let mut controller = start_controller(1)?;
    let mut labelled = Duration::ZERO;
    if let Some(c) = controller.as_mut() {
        let label_key = system.depth_label(&root);
        wait_for_labels(&admin, &label_key, n, c, settings.timeout).await?;
        labelled = c.started.elapsed();
        let (after, last_write) =
            wait_quiet(&admin, Duration::from_secs(3), settings.timeout).await?;
        println!(
            "tree labelled after {:.1} s; last write {:.1} s after the start",
            labelled.as_secs_f64(),
            last_write
                .map_or(labelled, |t| t.saturating_duration_since(c.started))
                .as_secs_f64()
        );
        println!(
            "writes while labelling:\n{}",
            describe(&diff(&before_labels, &after))
        );
    }
    let writer = match &canopy_kubeconfig {
        Some(path) => Some(client_for(path).await?),
        None => None,
    };
    let plain_writer = match system {
        System::Plain => writer.clone(),
        _ => None,
    };
    let copy_watch = match &plain_writer {
        Some(client) if settings.plain_copy_watch => {
            let api: Api<PartialObjectMeta<RoleBinding>> = Api::all(client.clone());
            let config = watcher::Config::default()
                .labels(system.inherited_from())
                .any_semantic();
            println!("the plain client also watches the copies' metadata");
            Some(tokio::spawn(async move {
                let mut events = std::pin::pin!(watcher::watcher(api, config));
                while events.next().await.is_some() {}
            }))
        }
        _ => None,
    };

    // ---- one object (in trials), then five ----
    let mut runs: Vec<(String, Vec<usize>)> = (1..settings.one_trials)
        .map(|t| (format!("one object, trial {t}"), vec![100 + t]))
        .collect();
    runs.push((
        format!("one object, trial {}", settings.one_trials),
        vec![0],
    ));
    runs.push(("five objects".to_owned(), vec![1, 2, 3, 4, 5]));
    let mut phases = Vec::new();
    for (phase, sources) in runs {
        let wanted: Vec<String> = sources.iter().map(|&i| source_name(i)).collect();
        let (before, _) = wait_quiet(&admin, Duration::from_secs(2), settings.timeout).await?;
        let observer = Observer::start(
            &admin,
            system.inherited_from(),
            &root,
            &wanted,
            &descendants,
        )
        .await?;
        let cpu_before = controller.as_ref().map(Controller::cpu);
        let bench_cpu_before = cpu_of("self");
        let machine_cpu_before = machine_cpu();
        let t0 = Instant::now();
        let created = futures::future::try_join_all(wanted.iter().map(|name| {
            let api: Api<DynamicObject> = Api::namespaced_with(
                admin.clone(),
                &root,
                &ApiResource::erase::<RoleBinding>(&()),
            );
            let root = root.clone();
            async move {
                let object = source(&root, name)?;
                Ok::<_, BoxError>(api.create(&PostParams::default(), &object).await?)
            }
        }))
        .await?;
        if let Some(client) = &plain_writer {
            plain_copies(client, &created, &root, &descendants).await?;
        }
        let Arrivals {
            first,
            all: elapsed,
        } = observer
            .wait(t0, settings.timeout, controller.as_mut())
            .await
            .map_err(|e| format!("{label}, {phase}: {e}"))?;
        let cpu = controller
            .as_ref()
            .zip(cpu_before)
            .map(|(c, before)| c.cpu().saturating_sub(before));
        let bench_cpu = cpu_of("self").saturating_sub(bench_cpu_before);
        let machine = machine_cpu().saturating_sub(machine_cpu_before);
        let (after, _) = wait_quiet(&admin, Duration::from_secs(3), settings.timeout).await?;
        let writes = diff(&before, &after);
        let copies = wanted.len() * descendants.len();
        let rb_writes =
            count(&writes, |k| k.resource == "rolebindings").saturating_sub(wanted.len() as u64);
        let per_copy = rb_writes as f64 / copies as f64;
        println!(
            "{phase}: {copies} copies in {:.2} s, the first after {:.3} s; {rb_writes} copy writes ({per_copy:.3} per copy); CPU: the machine {:.2} s, the bench {:.2} s{}",
            elapsed.as_secs_f64(),
            first.as_secs_f64(),
            machine.as_secs_f64(),
            bench_cpu.as_secs_f64(),
            cpu.map_or(String::new(), |cpu| format!(
                ", the controller {:.2} s",
                cpu.as_secs_f64()
            ))
        );
        println!("writes:\n{}", describe(&writes));
        phases.push((elapsed, per_copy));
    }
    let (five, per_copy_five) = phases.pop().ok_or("no five-object phase")?;
    let one = median(phases.iter().map(|(d, _)| *d).collect()).ok_or("no one-object trial")?;
    // Every trial's copies are counted; the worst trial is the one reported.
    let per_copy_one = phases.iter().map(|(_, w)| *w).fold(0.0, f64::max);
    println!(
        "one object: median {:.2} s of {} trials ({})",
        one.as_secs_f64(),
        phases.len(),
        phases
            .iter()
            .map(|(d, _)| format!("{:.2} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );

    if let Some(task) = copy_watch {
        task.abort();
    }

    // ---- peak memory, then a restart on the converged tree ----
    let mut figures = None;
    if let Some(mut c) = controller.take() {
        let (_, peak_rss) = c.memory();
        c.stop();
        let (before, _) = wait_quiet(&admin, Duration::from_secs(2), settings.timeout).await?;
        let mut c = start_controller(2)?.ok_or("no controller to restart")?;
        let cpu_idle_at = c.wait_idle(Duration::from_secs(2), settings.timeout)?;
        let (after, last_write) =
            wait_quiet(&admin, Duration::from_secs(3), settings.timeout).await?;
        let idle = last_write.map_or(cpu_idle_at, |t| {
            cpu_idle_at.max(t.saturating_duration_since(c.started))
        });
        let writes = diff(&before, &after);
        let restart_writes = count(&writes, is_object_write);
        let (_, restart_peak_rss) = c.memory();
        println!(
            "restart: idle after {:.2} s (CPU {:.2} s), {restart_writes} object write(s), peak RSS {:.1} MiB (before the restart {:.1} MiB)",
            idle.as_secs_f64(),
            cpu_idle_at.as_secs_f64(),
            mib(restart_peak_rss),
            mib(peak_rss)
        );
        println!("writes during the restart:\n{}", describe(&writes));
        c.stop();
        figures = Some(ControllerFigures {
            labelled,
            peak_rss,
            restart_idle: idle,
            restart_writes,
            restart_peak_rss,
        });
    }
    drop(plane);
    Ok(Outcome {
        system,
        depth,
        one,
        five,
        per_copy_one,
        per_copy_five,
        controller: figures,
    })
}

fn print_table(results: &[(usize, Shape, Vec<Outcome>)]) {
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let ratio = |a: Duration, b: Duration| {
        if b.is_zero() {
            "-".to_owned()
        } else {
            format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
        }
    };
    println!(
        "\n| tree | system | 1 RoleBinding: median time | vs plain | vs canopy | 5 RoleBindings: time | vs plain | vs canopy | writes per copy (1 / 5) | tree labelled | peak RSS | restart: idle after | restart: writes | restart: peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (n, shape, outcomes) in results {
        let find = |s: System| outcomes.iter().find(|o| o.system == s);
        let plain = find(System::Plain);
        let canopy = find(System::Canopy);
        for o in outcomes {
            let vs = |base: Option<&Outcome>, f: fn(&Outcome) -> Duration| {
                base.map_or("-".to_owned(), |b| ratio(f(o), f(b)))
            };
            let c = o.controller.as_ref();
            println!(
                "| {n} {} (depth {}) | {} | {} | {} | {} | {} | {} | {} | {:.3} / {:.3} | {} | {} | {} | {} | {} |",
                shape.name(),
                o.depth,
                o.system.name(),
                secs(o.one),
                vs(plain, |o| o.one),
                vs(canopy, |o| o.one),
                secs(o.five),
                vs(plain, |o| o.five),
                vs(canopy, |o| o.five),
                o.per_copy_one,
                o.per_copy_five,
                c.map_or("-".to_owned(), |c| secs(c.labelled)),
                c.map_or("-".to_owned(), |c| format!("{:.1} MiB", mib(c.peak_rss))),
                c.map_or("-".to_owned(), |c| secs(c.restart_idle)),
                c.map_or("-".to_owned(), |c| c.restart_writes.to_string()),
                c.map_or("-".to_owned(), |c| format!(
                    "{:.1} MiB",
                    mib(c.restart_peak_rss)
                )),
            );
        }
    }
    // HNC against canopy, one line per tree.
    println!(
        "\n| tree | HNC ÷ canopy: 1 RoleBinding (median) | 5 RoleBindings | peak RSS | restart to idle |"
    );
    println!("|---|---|---|---|---|");
    for (n, shape, outcomes) in results {
        let find = |s: System| outcomes.iter().find(|o| o.system == s);
        let (Some(hnc), Some(canopy)) = (find(System::Hnc), find(System::Canopy)) else {
            continue;
        };
        let (Some(h), Some(c)) = (hnc.controller.as_ref(), canopy.controller.as_ref()) else {
            continue;
        };
        println!(
            "| {n} {} | {} | {} | {:.2}x | {} |",
            shape.name(),
            ratio(hnc.one, canopy.one),
            ratio(hnc.five, canopy.five),
            h.peak_rss as f64 / c.peak_rss.max(1) as f64,
            ratio(h.restart_idle, c.restart_idle),
        );
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---- setup ----

/// HNC's CRDs (kubectl apply of the module's config/crd/bases) and its namespace.
async fn install_hnc(plane: &ControlPlane, admin: &Client, dir: &Path) -> Result<(), BoxError> {
    let kubectl = |args: &[&str]| -> Result<(), BoxError> {
        let output = Command::new(&plane.binaries().kubectl)
            .arg("--kubeconfig")
            .arg(plane.admin_kubeconfig())
            .args(args)
            .output()?;
        if !output.status.success() {
            return Err(format!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        Ok(())
    };
    let crds = dir.join("crds");
    let crds = crds.to_str().ok_or("the HNC directory is not UTF-8")?;
    kubectl(&["apply", "--server-side", "-f", crds])?;
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "hierarchyconfigurations.hnc.x-k8s.io",
        "hncconfigurations.hnc.x-k8s.io",
        "subnamespaceanchors.hnc.x-k8s.io",
        "hierarchicalresourcequotas.hnc.x-k8s.io",
    ])?;
    let mut ns = Namespace::default();
    ns.metadata.name = Some("hnc-system".to_owned());
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

/// Waits until the apiserver has dropped the deleted webhook configuration from its cache
/// (it is eventually consistent): a namespace create, in a dry run, succeeds.
async fn wait_webhooks_gone(admin: &Client) -> Result<(), BoxError> {
    let api: Api<Namespace> = Api::all(admin.clone());
    let mut probe = Namespace::default();
    probe.metadata.name = Some("compare-webhook-probe".to_owned());
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let start = Instant::now();
    loop {
        match api.create(&params, &probe).await {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() < Duration::from_secs(60) => {
                eprintln!("waiting for the webhook configuration to go: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Creates the namespaces, then the HierarchyConfigurations (canopy's or HNC's), 64 at a
/// time, as admin.
async fn create_tree(
    admin: &Client,
    system: System,
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
    let ar = system.hierarchy_resource();
    futures::stream::iter(names.iter().zip(parents))
        .filter_map(|(name, parent)| async move { parent.map(|p| (name, ns_name(p))) })
        .map(|(name, parent)| {
            let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), name, &ar);
            async move {
                api.create(&PostParams::default(), &system.hierarchy(&parent)?)
                    .await?;
                Ok::<_, BoxError>(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Waits until `n` namespaces carry the label `key`.
async fn wait_for_labels(
    admin: &Client,
    key: &str,
    n: usize,
    controller: &mut Controller,
    timeout: Duration,
) -> Result<(), BoxError> {
    let api: Api<Namespace> = Api::all(admin.clone());
    let params = ListParams::default().labels(key);
    let start = Instant::now();
    loop {
        controller.check()?;
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
        if labelled >= n {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!("only {labelled} of {n} namespaces labelled {key}").into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---- the plain client ----

/// Server-side applies the copy of every source into every descendant, with
/// `PLAIN_CONCURRENCY` requests in flight and no client-side limit; a 429 or 5xx is
/// retried after 100 ms.
async fn plain_copies(
    client: &Client,
    sources: &[DynamicObject],
    root: &str,
    descendants: &[String],
) -> Result<(), BoxError> {
    let ar = ApiResource::erase::<RoleBinding>(&());
    let mut jobs = VecDeque::new();
    for source in sources {
        let name = source.metadata.name.clone().ok_or("a source has no name")?;
        for ns in descendants {
            let (copy, _) = desired_copy(&ar, source, root, ns, &Strip::default());
            jobs.push_back((ns.clone(), name.clone(), copy));
        }
    }
    let queue = Arc::new(Mutex::new(jobs));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..PLAIN_CONCURRENCY {
        let (queue, client, ar) = (queue.clone(), client.clone(), ar.clone());
        workers.spawn(async move {
            loop {
                let next = queue.lock().pop_front();
                let Some((ns, name, object)) = next else {
                    return Ok::<_, kube::Error>(());
                };
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
                let mut attempt = 0;
                loop {
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
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        });
    }
    while let Some(result) = workers.join_next().await {
        result??;
    }
    Ok(())
}

// ---- the controller process ----

struct Controller {
    child: Child,
    started: Instant,
    log: PathBuf,
}

impl Controller {
    fn start(
        program: &Path,
        args: &[&str],
        kubeconfig: &Path,
        log: &Path,
    ) -> Result<Self, BoxError> {
        let file = std::fs::File::create(log)?;
        let mut command = Command::new(program);
        command
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_MANAGER_LOG")
                    .unwrap_or_else(|_| "info,kube_client::client::builder=off".into()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
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

    /// An error with the end of the log if the process has exited.
    fn check(&mut self) -> Result<(), BoxError> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!("the controller exited ({status}):\n{}", tail.join("\n")).into());
        }
        Ok(())
    }

    /// User plus system CPU time so far.
    fn cpu(&self) -> Duration {
        cpu_of(&self.pid().to_string())
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
                return Err("the controller never went idle".into());
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

impl Drop for Controller {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// User plus system CPU time so far of process `pid` (`self` for the bench).
fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
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
    clock_ticks(ticks(11) + ticks(12))
}

/// `ticks` of the kernel's clock (`/proc`'s unit of CPU time) as a duration.
fn clock_ticks(ticks: u64) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// CPU time all processes on the machine have used so far (`/proc/stat`: every state but
/// idle and iowait).
fn machine_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let busy: u64 = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    clock_ticks(busy)
}

// ---- observing copies ----

/// When the copies of a phase arrived, counted from the sources' creation.
struct Arrivals {
    first: Duration,
    all: Duration,
}

/// The median of trial times (the upper one of an even count).
fn median(mut times: Vec<Duration>) -> Option<Duration> {
    times.sort();
    times.get(times.len() / 2).copied()
}

/// One metadata watch on RoleBindings labelled as copies from the root; records when each
/// (source, descendant) pair is first seen.
struct Observer {
    seen: Arc<Mutex<HashSet<(String, String)>>>,
    first_seen: Arc<Mutex<Option<Instant>>>,
    expected: usize,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    async fn start(
        admin: &Client,
        label: &str,
        root: &str,
        names: &[String],
        descendants: &[String],
    ) -> Result<Self, BoxError> {
        let seen: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
        let first_seen: Arc<Mutex<Option<Instant>>> = Arc::default();
        let task_first = first_seen.clone();
        let wanted_ns: HashSet<String> = descendants.iter().cloned().collect();
        let wanted_names: HashSet<String> = names.iter().cloned().collect();
        let api: Api<PartialObjectMeta<RoleBinding>> = Api::all(admin.clone());
        let config = watcher::Config::default()
            .labels(&format!("{label}={root}"))
            .any_semantic();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task_seen = seen.clone();
        let task = tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut stream = std::pin::pin!(watcher::watcher(api, config));
            while let Some(event) = stream.next().await {
                match event {
                    Ok(Event::Apply(obj)) | Ok(Event::InitApply(obj)) => {
                        let (Some(ns), Some(name)) = (obj.metadata.namespace, obj.metadata.name)
                        else {
                            continue;
                        };
                        if wanted_names.contains(&name) && wanted_ns.contains(&ns) {
                            task_first.lock().get_or_insert_with(Instant::now);
                            task_seen.lock().insert((name, ns));
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
        });
        rx.await?;
        Ok(Self {
            seen,
            first_seen,
            expected: names.len() * descendants.len(),
            task,
        })
    }

    /// Times from `t0` until the first and until every copy has been seen.
    async fn wait(
        self,
        t0: Instant,
        timeout: Duration,
        mut controller: Option<&mut Controller>,
    ) -> Result<Arrivals, BoxError> {
        loop {
            let have = self.seen.lock().len();
            if have >= self.expected {
                let all = t0.elapsed();
                self.task.abort();
                let first = self
                    .first_seen
                    .lock()
                    .map_or(all, |t| t.saturating_duration_since(t0));
                return Ok(Arrivals { first, all });
            }
            if let Some(c) = controller.as_deref_mut() {
                c.check()?;
            }
            if t0.elapsed() > timeout {
                self.task.abort();
                return Err(format!("only {have} of {} copies arrived", self.expected).into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
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

/// The verbs of `apiserver_request_total` that write (a create is `POST`, an update `PUT`,
/// a server-side apply `APPLY`).
const MUTATING: [&str; 5] = ["POST", "PUT", "PATCH", "APPLY", "DELETE"];

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
        let label = |k: &str| labels.get(k).copied().unwrap_or_default().to_owned();
        let verb = label("verb");
        if !MUTATING.contains(&verb.as_str()) {
            continue;
        }
        let key = RequestKey {
            verb,
            resource: label("resource"),
            subresource: label("subresource"),
            code: label("code"),
        };
        let value = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        *counts.entry(key).or_default() += value;
    }
    Ok(counts)
}

/// Waits until no object write (`is_object_write`) has been counted for `quiet`; returns
/// the counts and when they last changed while waiting (`None`: never). Lease renewals,
/// reviews and failed requests (the apiserver's own `POST endpoints` gets a 422 every
/// 10 s here; canopy's status apply of a missing CanopyConfiguration a 404) do not count.
async fn wait_quiet(
    admin: &Client,
    quiet: Duration,
    timeout: Duration,
) -> Result<(Counts, Option<Instant>), BoxError> {
    let start = Instant::now();
    let writes = |c: &Counts| -> Counts {
        c.iter()
            .filter(|(k, _)| is_object_write(k))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    let mut last = writes(&request_counts(admin).await?);
    let mut since = Instant::now();
    let mut changed = None;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = request_counts(admin).await?;
        let now_writes = writes(&now);
        if now_writes != last {
            since = Instant::now();
            changed = Some(since);
            last = now_writes;
        } else if since.elapsed() >= quiet {
            return Ok((now, changed));
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

/// A request that changed a stored object: it succeeded (2xx), and it is neither a Lease
/// renewal (leader election) nor a review (`selfsubjectreviews` and the like store
/// nothing). The apiserver's own failed `POST endpoints` (422) is left out by its code.
fn is_object_write(k: &RequestKey) -> bool {
    k.code.starts_with('2') && k.resource != "leases" && !k.resource.ends_with("reviews")
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
