//! The control plane with the node `canopy-node-0` (src/dev/node) for tests/node.rs and
//! tests/node_chart.rs: Pods run, NetworkPolicy is enforced. Needs root; without it the
//! tests report themselves skipped.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use canopy::dev::{ControlPlane, ControlPlaneOptions, client_for};

use super::{CUSTOM, Cluster, eventually, json, kubectl, log_to, spawn_on_own_runtime};

/// The image with `sh`, `nc`, `httpd`, `sleep` and `cat` that test Pods run.
pub const TOOLBOX: &str = canopy::dev::node::images::TOOLBOX_IMAGE;

static NODE_PLANE: Mutex<Option<ControlPlane>> = Mutex::new(None);
static NODE_CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();

/// This binary's plane with a node, started on first use (with canopy's manager running
/// in this process when `with_canopy`), or `None` when this process is not root.
pub fn node_cluster(with_canopy: bool) -> Option<&'static Cluster> {
    NODE_CLUSTER
        .get_or_init(|| {
            if !canopy::dev::node::can_run() {
                return None;
            }
            let cluster = start(with_canopy);
            let _ = CUSTOM.set(cluster.clone());
            Some(cluster)
        })
        .as_ref()
}

/// `node_cluster`, or a line saying why the test did nothing.
pub fn require_node(with_canopy: bool, test: &str) -> bool {
    if node_cluster(with_canopy).is_some() {
        return true;
    }
    eprintln!("{test}: skipped: the node needs root");
    false
}

fn start(with_canopy: bool) -> Cluster {
    let started = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move {
            let begun = std::time::Instant::now();
            let plane = ControlPlane::start(ControlPlaneOptions {
                node: true,
                ..ControlPlaneOptions::default()
            })
            .await?;
            eprintln!(
                "control plane and node {} ready in {:.1} s",
                canopy::dev::NODE_NAME,
                begun.elapsed().as_secs_f64()
            );
            if with_canopy {
                start_canopy(&plane).await?;
            }
            Ok::<_, canopy::dev::DevError>(plane)
        })
    })
    .join()
    .expect("the control-plane thread panicked");
    let plane = match started {
        Ok(plane) => plane,
        Err(e) => panic!("cannot start the control plane with a node: {e}"),
    };
    let cluster = Cluster {
        kubeconfig: plane.admin_kubeconfig().to_owned(),
        kubectl: plane.binaries().kubectl.clone(),
        server: plane.server().to_owned(),
    };
    *NODE_PLANE.lock().unwrap_or_else(|p| p.into_inner()) = Some(plane);
    // SAFETY: registering a plain `extern "C" fn` with atexit(3).
    unsafe {
        nix::libc::atexit(stop_at_exit);
    }
    cluster
}

/// As `cluster_with_canopy`: canopy's manager in this process as its own ServiceAccount,
/// its webhooks registered on loopback.
async fn start_canopy(plane: &ControlPlane) -> Result<(), canopy::dev::DevError> {
    let prepared = canopy::dev::canopy::prepare(plane).await?;
    let log = std::env::var_os("CANOPY_TEST_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| plane.dir().join("logs").join("canopy.log"));
    log_to(&log);
    let kubeconfig = prepared.manager_kubeconfig.clone();
    let listener = prepared.webhooks;
    spawn_on_own_runtime(async move {
        let client = client_for(&kubeconfig).await.expect("the manager's client");
        let halves = canopy::manager::Halves {
            controllers: true,
            webhooks: true,
        };
        if let Err(e) = canopy::manager::run(
            client,
            canopy::manager::Listeners::webhooks(listener),
            halves,
            std::future::pending(),
        )
        .await
        {
            eprintln!("canopy manager failed: {e}");
        }
    });
    canopy::dev::canopy::wait_for_webhooks(&plane.client().await?, Duration::from_secs(60)).await
}

/// Stops the node (cleaning the machine) and the plane when the test binary exits.
extern "C" fn stop_at_exit() {
    let plane = NODE_PLANE.lock().unwrap_or_else(|p| p.into_inner()).take();
    drop(plane);
}

/// Runs `f` on the node's plane (to import an image), on a thread of its own.
pub fn with_node_plane<R: Send + 'static>(
    f: impl FnOnce(&ControlPlane) -> R + Send + 'static,
) -> R {
    std::thread::spawn(move || {
        let plane = NODE_PLANE.lock().unwrap_or_else(|p| p.into_inner());
        let plane = plane.as_ref().expect("the node's plane is running");
        f(plane)
    })
    .join()
    .expect("the node plane thread panicked")
}

/// Resources every test container declares (canopy's resources policy requires them in
/// tenant namespaces).
pub const RESOURCES: &str =
    "{requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 32Mi}}";

/// A Pod of the toolbox image running `command` (a shell line).
pub fn pod_yaml(ns: &str, name: &str, command: &str, resources: Option<&str>) -> String {
    let resources = resources.map_or(String::new(), |r| format!("\n    resources: {r}"));
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}
spec:
  terminationGracePeriodSeconds: 0
  enableServiceLinks: false
  automountServiceAccountToken: false
  containers:
  - name: main
    image: {TOOLBOX}
    imagePullPolicy: Never
    command: [sh, -c, {command:?}]{resources}
"
    )
}

/// An HTTP server (busybox httpd on 8080) answering with `<ns>`.
pub fn server_yaml(ns: &str) -> String {
    pod_yaml(
        ns,
        "server",
        &format!("echo {ns} > /www/index.html && exec httpd -f -p 8080 -h /www"),
        Some(RESOURCES),
    )
}

pub fn client_yaml(ns: &str) -> String {
    pod_yaml(ns, "client", "exec sleep 86400", Some(RESOURCES))
}

/// Waits until Pod `ns/name` runs and returns its IP.
pub fn wait_running(ns: &str, name: &str, timeout: Duration) -> String {
    eventually(&format!("pod {ns}/{name} to run"), timeout, || {
        let pod = json(&["get", "pod", name, "-n", ns, "-o", "json"])?;
        let ready = pod["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        let ip = pod["status"]["podIP"].as_str()?;
        (pod["status"]["phase"] == "Running" && ready).then(|| ip.to_owned())
    })
}

/// What one HTTP request from a client Pod gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// `200 OK` with the server's namespace in the body.
    Open,
    /// Connection refused: kube-router REJECTs what a NetworkPolicy does not admit
    /// (icmp-port-unreachable), so a refusal is immediate; a timeout is neither answer.
    Refused,
}

impl std::fmt::Display for Reach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reach::Open => "open",
            Reach::Refused => "refused",
        })
    }
}

/// One HTTP GET from Pod `client_ns/client` to `ip:8080`, through `kubectl exec`.
/// `None` when the probe itself failed (kubectl or the exec), which is neither answer.
pub fn probe(client_ns: &str, ip: &str, server_ns: &str) -> Option<Reach> {
    let line = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 8080; echo rc=$?");
    let out = kubectl(&["exec", "-n", client_ns, "client", "--", "sh", "-c", &line]);
    if !out.success {
        return None;
    }
    if out.stdout.contains("200 OK") && out.stdout.contains(server_ns) {
        Some(Reach::Open)
    } else if out.stderr.contains("Connection refused") && out.stdout.trim_end().ends_with("rc=1") {
        Some(Reach::Refused)
    } else {
        None
    }
}
