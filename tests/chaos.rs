//! Propagation under faults: a fan-out from one root into a tree of namespaces while the
//! manager (a separate `canopy manager --controllers` process) is killed with SIGKILL at
//! random moments while copies are being written, and kube-apiserver is stopped and
//! started once (same port, same etcd). It must end with exactly the desired copies:
//! none missing, none extra, none stale, and none of the copies that were already right
//! before the faults recreated (same `uid` and `creationTimestamp`).
//!
//! It prints, and does not assert, the recovery time: from kube-apiserver answering
//! `/readyz` again to a source created at that moment being copied into every descendant.
//! The apiserver is stopped once the copies of the round before are all written, so the
//! figure is the watches' reconnect and relist plus one fan-out, not a backlog.
//!
//! Environment: `CHAOS_NAMESPACES` (tree size, default 100), `CHAOS_KILLS` (default 10),
//! `CHAOS_OUTAGE_SECS` (how long kube-apiserver is down, default 20), `CHAOS_SEED`
//! (random moments; printed), `CHAOS_LOG` (the manager's log; default in the temp dir).
//! Full-size figures: docs/performance.md ("Recovery under faults").

mod common;

use common::managers::ManagerProcess;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use std::time::{Duration, Instant};

use canopy::api::{
    CanopyConfigurationSpec, HIERARCHY_NAME, HierarchyConfiguration, HierarchyConfigurationSpec,
    keys,
};
use canopy::controllers::propagation::copy::{Strip, desired_copy};
use common::{CUSTOM, start_plane, with_plane};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
use kube::{Client, ResourceExt};
use serde_json::json;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A small xorshift generator: the moments only need to differ between runs and be
/// reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn setup() -> PathBuf {
    let cluster = CUSTOM.get_or_init(|| {
        start_plane(|plane| async move {
            let prepared = canopy::dev::canopy::prepare(&plane).await?;
            // The manager runs without webhooks (it is killed over and over), so the
            // apiserver must not call them.
            let configs: Api<ValidatingWebhookConfiguration> = Api::all(plane.client().await?);
            let _ = configs.delete("canopy", &DeleteParams::default()).await;
            drop(prepared.webhooks);
            Ok(plane)
        })
    });
    std::path::Path::new(&cluster.kubeconfig)
        .parent()
        .expect("the plane's directory")
        .join("canopy-manager.kubeconfig")
}

/// The tree: `root`, then `n - 1` namespaces, the first tenth children of the root and the
/// rest spread below them. Returns every descendant of the root.
async fn create_tree(client: &Client, root: &str, n: usize) -> Vec<String> {
    let names: Vec<String> = (1..n).map(|i| format!("{root}-{i}")).collect();
    let first_level = (n / 10).max(1);
    let parent_of = |i: usize| -> String {
        if i <= first_level {
            root.to_owned()
        } else {
            format!("{root}-{}", 1 + (i - 1) % first_level)
        }
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let all = std::iter::once(root.to_owned()).chain(names.iter().cloned());
    futures::stream::iter(all)
        .map(|name| {
            let namespaces = namespaces.clone();
            async move {
                let ns = Namespace {
                    metadata: kube::core::ObjectMeta {
                        name: Some(name),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                namespaces.create(&PostParams::default(), &ns).await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("namespaces are created");
    futures::stream::iter(1..n)
        .map(|i| {
            let client = client.clone();
            let (name, parent) = (format!("{root}-{i}"), parent_of(i));
            async move {
                let api: Api<HierarchyConfiguration> = Api::namespaced(client, &name);
                let mut hc = HierarchyConfiguration::new(
                    HIERARCHY_NAME,
                    HierarchyConfigurationSpec {
                        parent: Some(parent),
                        ..Default::default()
                    },
                );
                hc.metadata.namespace = Some(name);
                api.create(&PostParams::default(), &hc).await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("hierarchy configurations are created");
    names
}

fn role(name: &str, verbs: &[&str]) -> Role {
    serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": verbs}],
    }))
    .expect("a role")
}

fn binding(name: &str, role: &str) -> RoleBinding {
    serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": format!("group-{name}")}],
    }))
    .expect("a role binding")
}

/// Creates or replaces the Role and RoleBinding `name` in `root`.
async fn put_sources(client: &Client, root: &str, name: &str, verbs: &[&str]) {
    let params = PatchParams::apply("chaos-test").force();
    let roles: Api<Role> = Api::namespaced(client.clone(), root);
    roles
        .patch(name, &params, &Patch::Apply(role(name, verbs)))
        .await
        .expect("the source Role is written");
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), root);
    bindings
        .patch(name, &params, &Patch::Apply(binding(name, name)))
        .await
        .expect("the source RoleBinding is written");
}

async fn delete_sources(client: &Client, root: &str, name: &str) {
    let roles: Api<Role> = Api::namespaced(client.clone(), root);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), root);
    let _ = roles.delete(name, &DeleteParams::default()).await;
    let _ = bindings.delete(name, &DeleteParams::default()).await;
}

/// One copy as found: its hash annotation, uid and creation time.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Found {
    hash: Option<String>,
    from: Option<String>,
    uid: Option<String>,
    created: Option<String>,
}

/// What is wrong with the copies of both kinds in the tree, and the copies found.
#[derive(Debug, Default)]
struct Report {
    missing: Vec<String>,
    extra: Vec<String>,
    stale: Vec<String>,
    copies: BTreeMap<(String, String, String), Found>,
}

impl Report {
    fn converged(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.stale.is_empty()
    }
}

async fn check(client: &Client, root: &str, descendants: &[String]) -> Report {
    let tree: BTreeSet<&str> = descendants.iter().map(String::as_str).collect();
    let strip = {
        let config = CanopyConfigurationSpec::default();
        Strip {
            labels: config.strip_labels,
            annotations: config.strip_annotations,
        }
    };
    let mut report = Report::default();
    for (kind, resource) in [
        ("roles", ApiResource::erase::<Role>(&())),
        ("rolebindings", ApiResource::erase::<RoleBinding>(&())),
    ] {
        let sources: Vec<DynamicObject> =
            Api::<DynamicObject>::namespaced_with(client.clone(), root, &resource)
                .list(&ListParams::default().labels(&format!("!{}", keys::INHERITED_FROM)))
                .await
                .expect("sources are listed")
                .items;
        let copies = Api::<DynamicObject>::all_with(client.clone(), &resource)
            .list(&ListParams::default().labels(keys::INHERITED_FROM))
            .await
            .expect("copies are listed")
            .items;
        let mut found: BTreeMap<(String, String), DynamicObject> = BTreeMap::new();
        for copy in copies {
            let ns = copy.namespace().unwrap_or_default();
            if tree.contains(ns.as_str()) {
                found.insert((ns, copy.name_any()), copy);
            }
        }
        let mut desired: BTreeSet<(String, String)> = BTreeSet::new();
        for source in &sources {
            for ns in descendants {
                let key = (ns.clone(), source.name_any());
                let (body, hash) = desired_copy(&resource, source, root, ns, &strip);
                desired.insert(key.clone());
                let label = format!("{kind} {}/{}", key.0, key.1);
                match found.get(&key) {
                    None => report.missing.push(label),
                    Some(copy) => {
                        let annotations = copy.annotations();
                        let same_content = ["rules", "roleRef", "subjects"]
                            .iter()
                            .all(|field| copy.data.get(*field) == body.get(*field));
                        if annotations.get("canopy.dev/source-hash") != Some(&hash)
                            || copy.labels().get(keys::INHERITED_FROM).map(String::as_str)
                                != Some(root)
                            || !same_content
                        {
                            report.stale.push(label);
                        }
                    }
                }
            }
        }
        for (key, copy) in found {
            if !desired.contains(&key) {
                report.extra.push(format!("{kind} {}/{}", key.0, key.1));
            }
            report.copies.insert(
                (kind.to_owned(), key.0, key.1),
                Found {
                    hash: copy.annotations().get("canopy.dev/source-hash").cloned(),
                    from: copy.labels().get(keys::INHERITED_FROM).cloned(),
                    uid: copy.metadata.uid.clone(),
                    created: copy
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| format!("{t:?}")),
                },
            );
        }
    }
    report
}

/// Polls until the copies are exactly right; the last report either way.
async fn converge(
    client: &Client,
    root: &str,
    descendants: &[String],
    timeout: Duration,
) -> (Report, Duration) {
    let start = Instant::now();
    loop {
        let report = check(client, root, descendants).await;
        if report.converged() || start.elapsed() > timeout {
            return (report, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls until a copy of Role `name` is in every descendant.
async fn copied_everywhere(client: &Client, name: &str, descendants: &[String]) {
    let api: Api<Role> = Api::all(client.clone());
    let tree: BTreeSet<&str> = descendants.iter().map(String::as_str).collect();
    loop {
        let params = ListParams::default()
            .labels(keys::INHERITED_FROM)
            .fields(&format!("metadata.name={name}"));
        if let Ok(list) = api.list(&params).await {
            let count = list
                .items
                .iter()
                .filter(|r| tree.contains(r.namespace().unwrap_or_default().as_str()))
                .count();
            if count == descendants.len() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn copies_end_exact_after_manager_kills_and_an_apiserver_restart() {
    let kubeconfig = setup();
    let n: usize = env_or("CHAOS_NAMESPACES", 100).max(2);
    let kills: u32 = env_or("CHAOS_KILLS", 10);
    let outage = Duration::from_secs(env_or("CHAOS_OUTAGE_SECS", 20));
    let seed: u64 = env_or(
        "CHAOS_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1,
    );
    let log = std::env::var_os("CHAOS_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("canopy-chaos-{}.log", std::process::id()))
        });
    eprintln!(
        "chaos: {n} namespaces, {kills} kills, {}s apiserver outage, seed {seed}, manager log {}",
        outage.as_secs(),
        log.display()
    );
    let mut rng = Rng(seed);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let client = runtime.block_on(common::client());
    let root = common::unique("chaos");
    let descendants = runtime.block_on(create_tree(&client, &root, n));
    // Any free admin port: nothing here reads it, and the default may be taken.
    let mut manager = ManagerProcess::new(
        &[
            "--controllers",
            "--leader-elect=false",
            "--admin-addr",
            "127.0.0.1:0",
        ],
        kubeconfig,
        log,
    );
    manager.start();

    // Stable sources: written once, before any fault; their copies must survive everything.
    runtime.block_on(put_sources(&client, &root, "stable", &["get"]));
    let (before, took) = runtime.block_on(converge(
        &client,
        &root,
        &descendants,
        Duration::from_secs(300),
    ));
    assert!(
        before.converged(),
        "the first fan-out did not converge: {:?} missing, {:?} extra, {:?} stale",
        before.missing.len(),
        before.extra.len(),
        before.stale.len()
    );
    eprintln!(
        "chaos: first fan-out converged in {:.1}s",
        took.as_secs_f64()
    );

    // Churn: each round writes sources (copies being written), kills the manager at a
    // random moment within the fan-out, changes sources while it is down, and restarts it.
    let verbs = [["get", "list"], ["list", "watch"], ["get", "watch"]];
    for round in 0..kills {
        let r = round as usize;
        runtime.block_on(async {
            put_sources(&client, &root, &format!("churn-{r}"), &verbs[r % 3]).await;
            if r >= 1 {
                // An update: every copy of the previous round goes stale.
                put_sources(&client, &root, &format!("churn-{}", r - 1), &["create"]).await;
            }
        });
        let moment = Duration::from_millis(rng.below(2 * n as u64 * 10));
        std::thread::sleep(moment);
        manager.kill();
        runtime.block_on(async {
            if r >= 2 {
                // A deletion while the manager is down: its copies must go.
                delete_sources(&client, &root, &format!("churn-{}", r - 2)).await;
            }
        });
        eprintln!(
            "chaos: round {round}: killed after {} ms",
            moment.as_millis()
        );
        manager.start();
        if round == kills / 2 {
            // The apiserver goes away (the manager keeps running) and comes back. First
            // the round's writes finish, so the recovery time below is the watches'
            // reconnect, relist and one fan-out, not a backlog of earlier writes.
            let (_, took) = runtime.block_on(converge(
                &client,
                &root,
                &descendants,
                Duration::from_secs(300),
            ));
            eprintln!(
                "chaos: converged {:.1}s after the restart; stopping kube-apiserver",
                took.as_secs_f64()
            );
            with_plane(async |plane| plane.stop_apiserver(Duration::from_secs(10)));
            std::thread::sleep(outage);
            with_plane(async |plane| plane.start_apiserver().await)
                .expect("kube-apiserver starts again");
            let back = Instant::now();
            let probe = "after-outage";
            let client = runtime.block_on(common::client());
            runtime.block_on(async {
                Api::<Role>::namespaced(client.clone(), &root)
                    .create(&PostParams::default(), &role(probe, &["get"]))
                    .await
                    .expect("the probe source is created");
                copied_everywhere(&client, probe, &descendants).await;
            });
            eprintln!(
                "chaos: RECOVERY: a source created when kube-apiserver was ready again was in all {} descendants after {:.2}s ({}s outage)",
                descendants.len(),
                back.elapsed().as_secs_f64(),
                outage.as_secs()
            );
        }
    }

    let client = runtime.block_on(common::client());
    let (after, took) = runtime.block_on(converge(
        &client,
        &root,
        &descendants,
        Duration::from_secs(300),
    ));
    eprintln!(
        "chaos: converged {:.1}s after the last restart: {} copies, {} missing, {} extra, {} stale",
        took.as_secs_f64(),
        after.copies.len(),
        after.missing.len(),
        after.extra.len(),
        after.stale.len()
    );
    let recreated: Vec<_> = before
        .copies
        .iter()
        .filter(|(key, found)| after.copies.get(*key) != Some(found))
        .map(|(key, _)| key)
        .collect();
    eprintln!(
        "chaos: {} of {} copies that were right before the faults were recreated or changed",
        recreated.len(),
        before.copies.len()
    );
    let sample = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>();
    assert!(
        after.missing.is_empty(),
        "missing: {:?}",
        sample(&after.missing)
    );
    assert!(after.extra.is_empty(), "extra: {:?}", sample(&after.extra));
    assert!(after.stale.is_empty(), "stale: {:?}", sample(&after.stale));
    assert!(
        recreated.is_empty(),
        "recreated or changed: {:?}",
        recreated.iter().take(5).collect::<Vec<_>>()
    );
    manager.kill();
}
