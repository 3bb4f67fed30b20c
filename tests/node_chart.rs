//! canopy in-cluster, installed from its own chart onto the real node: the release's image
//! and packaged chart when `make release` has written them into dist/ (`make test` does,
//! just before), else the image built from this very binary (`localhost/canopy:dev`) and
//! helm/canopy; two replicas, the chart's self-managed
//! certificate (option C), leader election. The leader Pod is killed and propagation and
//! admission keep working; `helm upgrade` keeps them working; `helm uninstall` leaves no
//! webhook configuration that would block the cluster.
//!
//! Needs root (the node does) and helm (`CANOPY_HELM`, set by `make test`); without root it
//! says it was skipped.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::node::{require_node, with_node_plane};
use common::tenants::{create_tenant, owner_subnamespace};
use common::{apply, current, eventually, json, kubectl, kubectl_ok, kubectl_with_stdin, unique};

const NAMESPACE: &str = "canopy-system";
const RELEASE: &str = "canopy";
/// Pods of a 283 MB debug image start in seconds; a loaded CI machine gets more.
const ROLLOUT: &str = "5m";
const WAIT: Duration = Duration::from_secs(120);

fn helm(args: &[&str]) -> common::Kubectl {
    let path = std::env::var_os("CANOPY_HELM")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .expect("CANOPY_HELM is not set: run through `make test` (hack/build-helm.sh builds helm)");
    let home = std::env::temp_dir().join(format!("canopy-node-chart-helm-{}", std::process::id()));
    let out = Command::new(path)
        .args(args)
        .arg("--kubeconfig")
        .arg(&current().kubeconfig)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("helm runs");
    out.into()
}

/// What is installed: the release's chart and image, or this checkout's.
struct Installed {
    chart: String,
    /// The image's tag under `localhost/canopy`.
    tag: String,
    /// The OCI archive to import (written before the import).
    archive: PathBuf,
}

/// The release in dist/ (`make release`) when it is there: its image, renamed to
/// `localhost/canopy:<version>` (the node pulls nothing, and the name is not covered by any
/// digest), and its packaged chart. Otherwise the image of this test's `canopy` binary and
/// the chart's directory.
fn release_or_build(images: &std::path::Path) -> Installed {
    let version = env!("CARGO_PKG_VERSION");
    let dist = common::repo_path("dist");
    let image = dist.join(format!("canopy-{version}.oci.tar"));
    let chart = dist.join(format!("canopy-{version}.tgz"));
    if image.is_file() && chart.is_file() {
        std::fs::create_dir_all(images).expect("the images directory");
        let archive = images.join("canopy-release.oci.tar");
        canopy::dev::image::rename_archive(
            &image,
            &archive,
            &format!("localhost/canopy:{version}"),
        )
        .expect("renaming the release image");
        eprintln!(
            "installing the release: {} and {}",
            image.display(),
            chart.display()
        );
        return Installed {
            chart: chart.display().to_string(),
            tag: version.to_owned(),
            archive,
        };
    }
    eprintln!("no release in dist/ (make release): installing helm/canopy with this build's image");
    let archive = canopy::dev::node::images::canopy(
        images,
        std::path::Path::new(env!("CARGO_BIN_EXE_canopy")),
    )
    .expect("canopy's image");
    Installed {
        chart: common::repo_path("helm/canopy").display().to_string(),
        tag: "dev".to_owned(),
        archive,
    }
}

fn install_args<'a>(
    verb: &'a str,
    chart: &'a str,
    image_tag: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        verb,
        RELEASE,
        chart,
        "--namespace",
        NAMESPACE,
        "--set",
        "image.repository=localhost/canopy",
        "--set",
        image_tag,
        "--set",
        "image.pullPolicy=Never",
        "--set",
        "webhook.selfSignedCertificates=true",
        "--set",
        "replicas=2",
        "--wait",
        "--timeout",
        ROLLOUT,
    ];
    args.extend_from_slice(extra);
    args
}

/// A namespace carrying a forged tenant label, in a dry run: canopy's webhook refuses it,
/// so the refusal proves the apiserver reached a replica through the Service.
fn admission_works() -> bool {
    let probe = unique("forged");
    let out = kubectl_with_stdin(
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {probe}\n  labels: {{canopy.dev/tenant: nobody}}\n"
        )),
    );
    !out.success && out.stderr.contains("only canopy may set")
}

fn leader_identity() -> Option<String> {
    let lease = json(&[
        "get",
        "lease",
        "canopy-manager",
        "-n",
        NAMESPACE,
        "-o",
        "json",
    ])?;
    lease["spec"]["holderIdentity"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn manager_pods() -> Vec<String> {
    let pods = json(&[
        "get",
        "pods",
        "-n",
        NAMESPACE,
        "-l",
        "app.kubernetes.io/name=canopy",
        "-o",
        "json",
    ])
    .expect("the manager's Pods");
    pods["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn role(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         rules: [{{apiGroups: [''], resources: [configmaps], verbs: [get]}}]\n"
    )
}

/// Five webhook calls in a row answered by canopy: a Service endpoint of a crashed replica
/// stays until its readiness probe fails, and meanwhile some calls are refused.
fn admission_settled() -> bool {
    (0..5).all(|_| admission_works())
}

/// Creates Role `name` in `parent` and returns how long its copy took to appear in `child`.
/// The write is retried while the apiserver cannot reach a webhook replica (failurePolicy
/// Fail), as any client would; the number of such refusals is printed.
fn propagation_works(parent: &str, child: &str, name: &str) -> Duration {
    let start = Instant::now();
    let mut unreachable = 0;
    eventually(&format!("Role {name} to be admitted"), WAIT, || {
        let out = apply(&role(parent, name));
        if out.success {
            return Some(());
        }
        assert!(
            out.stderr.contains("failed calling webhook"),
            "Role {name}: {}",
            out.stderr
        );
        unreachable += 1;
        None
    });
    if unreachable > 0 {
        eprintln!("Role {name}: {unreachable} attempt(s) refused while a replica was unreachable");
    }
    eventually(&format!("Role {name} copied into {child}"), WAIT, || {
        json(&["get", "role", name, "-n", child, "-o", "json"])
    });
    start.elapsed()
}

/// SIGKILLs every process of Pod `canopy-system/<pod>` on the node (found by the Pod's UID
/// in their cgroup), as a crash would; returns their pids.
fn sigkill_pod_processes(pod: &str) -> Vec<i32> {
    let uid = json(&["get", "pod", pod, "-n", NAMESPACE, "-o", "json"]).expect("the Pod")
        ["metadata"]["uid"]
        .as_str()
        .expect("a uid")
        .to_owned();
    // cgroupfs paths carry the UID with dashes (`pod<uid>`).
    let needle = format!("pod{uid}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let in_pod = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|c| c.contains(&needle));
        // The manager itself, not the sandbox's pause process.
        if in_pod && comm.trim() == "canopy" {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn canopy_runs_in_cluster_from_its_chart() {
    if !require_node(false, "canopy_runs_in_cluster_from_its_chart") {
        return;
    }
    let imported = Instant::now();
    let installed = with_node_plane(|plane| {
        let node = plane.node().expect("the plane has a node");
        let installed = release_or_build(&plane.dir().join("images"));
        node.import_image(&installed.archive)
            .expect("importing canopy's image");
        installed
    });
    eprintln!(
        "localhost/canopy:{} imported in {:.1} s",
        installed.tag,
        imported.elapsed().as_secs_f64()
    );
    let image_tag = format!("image.tag={}", installed.tag);

    // Install: two replicas become Ready, which needs the webhook server up with the
    // certificate canopy made itself.
    let chart = installed.chart.clone();
    let started = Instant::now();
    let out = helm(&install_args(
        "install",
        &chart,
        &image_tag,
        &["--create-namespace"],
    ));
    assert!(out.success, "helm install: {}\n{}", out.stdout, out.stderr);
    eprintln!(
        "helm install --wait: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(manager_pods().len(), 2, "two replicas");
    eventually("the CA in the webhooks' caBundle", WAIT, || {
        let config = json(&[
            "get",
            "validatingwebhookconfiguration",
            "canopy",
            "-o",
            "json",
        ])?;
        let hooks = config["webhooks"].as_array()?;
        hooks
            .iter()
            .all(|h| {
                h["clientConfig"]["caBundle"]
                    .as_str()
                    .is_some_and(|b| !b.is_empty())
            })
            .then_some(())
    });
    eventually("admission through the Service", WAIT, || {
        admission_settled().then_some(())
    });

    // The controllers (on the leader) do their work.
    let t = unique("incluster");
    create_tenant(&t, 10, "");
    let sub = format!("{t}-sub");
    owner_subnamespace(&t, &t, &sub);
    let took = propagation_works(&t, &sub, "before-failover");
    eprintln!(
        "propagation with the first leader: {:.1} s",
        took.as_secs_f64()
    );

    // The leader crashes: SIGKILL to its process on the node, so it cannot release the
    // Lease; the other replica takes over once the Lease expires (15 s).
    let leader = eventually("a leader", WAIT, leader_identity);
    let pods = manager_pods();
    let leader_pod = pods
        .iter()
        .find(|p| leader.starts_with(p.as_str()))
        .unwrap_or_else(|| panic!("leader {leader} is none of {pods:?}"))
        .clone();
    let crashed = Instant::now();
    let killed_pids = sigkill_pod_processes(&leader_pod);
    assert!(!killed_pids.is_empty(), "no process of {leader_pod} found");
    eventually("admission right after the leader crashed", WAIT, || {
        admission_settled().then_some(())
    });
    let admission_after = crashed.elapsed();
    propagation_works(&t, &sub, "after-crash");
    let propagation_after = crashed.elapsed();
    eprintln!(
        "leader {leader_pod} SIGKILLed (pids {killed_pids:?}): admission answered after {:.1} s, \
         a Role propagated {:.1} s after the crash (Lease: 15 s); leader now {:?}",
        admission_after.as_secs_f64(),
        propagation_after.as_secs_f64(),
        leader_identity(),
    );

    // Then the leader's Pod is deleted outright.
    let leader = eventually("a leader", WAIT, leader_identity);
    let pods = manager_pods();
    let leader_pod = pods
        .iter()
        .find(|p| leader.starts_with(p.as_str()))
        .unwrap_or_else(|| panic!("leader {leader} is none of {pods:?}"))
        .clone();
    let killed = Instant::now();
    kubectl_ok(&[
        "delete",
        "pod",
        &leader_pod,
        "-n",
        NAMESPACE,
        "--grace-period=0",
        "--force",
    ]);
    eventually("admission right after the leader is killed", WAIT, || {
        admission_settled().then_some(())
    });
    let admission_after = killed.elapsed();
    propagation_works(&t, &sub, "after-failover");
    let propagation_after = killed.elapsed();
    let new_leader = eventually("a new leader", WAIT, || {
        leader_identity().filter(|l| !l.starts_with(leader_pod.as_str()))
    });
    eprintln!(
        "killed leader {leader_pod}: admission answered after {:.1} s, a Role propagated {:.1} s \
         after the kill (new leader {new_leader})",
        admission_after.as_secs_f64(),
        propagation_after.as_secs_f64(),
    );
    // The Deployment replaces the Pod.
    eventually("two replicas again", WAIT, || {
        (manager_pods().len() == 2).then_some(())
    });

    // helm upgrade: a rolling update of both replicas; the webhooks keep their CA.
    let out = helm(&install_args(
        "upgrade",
        &chart,
        &image_tag,
        &["--set-string", "podAnnotations.canopy-test/revision=2"],
    ));
    assert!(out.success, "helm upgrade: {}\n{}", out.stdout, out.stderr);
    eventually("admission after the upgrade", WAIT, || {
        admission_settled().then_some(())
    });
    let took = propagation_works(&t, &sub, "after-upgrade");
    eprintln!(
        "after helm upgrade: propagation {:.1} s",
        took.as_secs_f64()
    );

    // helm uninstall: nothing of canopy's may stand between the apiserver and writes.
    let out = helm(&["uninstall", RELEASE, "--namespace", NAMESPACE, "--wait"]);
    assert!(
        out.success,
        "helm uninstall: {}\n{}",
        out.stdout, out.stderr
    );
    let left = kubectl_ok(&[
        "get",
        "validatingwebhookconfigurations,mutatingwebhookconfigurations",
        "-o",
        "name",
    ]);
    assert!(
        !left.contains("canopy"),
        "webhook configurations left behind: {left}"
    );
    // Writes that canopy's webhooks would have been called for go through.
    let out = apply(&role(&t, "after-uninstall"));
    assert!(out.success, "a Role in a tenant namespace: {}", out.stderr);
    let plain = unique("plain");
    kubectl_ok(&["create", "namespace", &plain]);
    let out = kubectl(&["get", "pods", "-n", NAMESPACE, "-o", "name"]);
    eprintln!(
        "after helm uninstall: no canopy webhook configuration; writes go through; Pods still \
         terminating in {NAMESPACE}: {:?}",
        out.stdout.trim()
    );
}
