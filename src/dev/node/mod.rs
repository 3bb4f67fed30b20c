//! One real node for the local control plane: containerd (with runc and the CNI bridge
//! from Debian packages), kubelet, kube-scheduler, kube-proxy and kube-router's
//! NetworkPolicy firewall, all as plain processes of the harness. Pods run, Services work,
//! NetworkPolicy is enforced, and canopy itself can run as a Pod from its chart.
//!
//! Root is required (network namespaces, iptables, cgroups, mounts). The node lives under
//! one fixed root directory (`/var/lib/canopy-node`, or `$CANOPY_NODE_ROOT`) guarded by a
//! lock file, so a start after a killed run finds the leftovers and removes them first
//! (cleanup.rs). docs/development.md, "The node", explains each piece.

mod cleanup;
mod cmd;
mod containerd;
pub mod images;
mod kubelet;
mod network;
mod services;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node as NodeObject;
use kube::{Api, Client};
use nix::fcntl::{Flock, FlockArg};

use super::pki::Pki;
use super::process::ManagedProcess;

pub use containerd::SANDBOX_HANDLER;
pub use network::{BRIDGE, NODE_IP, POD_CIDR, SERVICE_CIDR};

/// The node's name.
pub const NODE_NAME: &str = "canopy-node-0";
/// The kube-router release that enforces NetworkPolicy (hack/build-node.sh).
pub const KUBE_ROUTER_VERSION: &str = "2.1.0";

/// How long the node may take to become Ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Why the node could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("a node needs root (network namespaces, iptables, cgroups, mounts)")]
    NotRoot,
    #[error("{what} is missing: {fix}")]
    Missing { what: String, fix: String },
    #[error(
        "another node is running on this machine (lock {path} is held); stop it first \
         (one node per machine: the bridge, the node name and the iptables chains are fixed)"
    )]
    Locked { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("the node's network: {0}")]
    Network(String),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("{name} exited ({status}); the end of its log:\n{log_tail}")]
    Exited {
        name: String,
        status: String,
        log_tail: String,
    },
    #[error("timed out waiting for {what}; the end of the logs:\n{logs}")]
    Timeout { what: String, logs: String },
    #[error("reading node {NODE_NAME}: {0}")]
    Api(#[from] kube::Error),
}

impl NodeError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The binaries the node runs, besides the Debian packages.
#[derive(Clone, Debug)]
pub struct NodeBinaries {
    pub kubelet: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kube_proxy: PathBuf,
    pub kube_router: PathBuf,
    pub pause: PathBuf,
    pub busybox: PathBuf,
}

impl NodeBinaries {
    /// kubelet, kube-scheduler and kube-proxy next to the control plane's binaries
    /// (`envtest_dir`); kube-router and pause in `$CANOPY_CACHE/node` (hack/build-node.sh).
    pub fn locate(envtest_dir: &Path) -> Result<Self, NodeError> {
        let cache = envtest_dir
            .parent()
            .and_then(Path::parent)
            .map(|c| c.join("node"))
            .ok_or_else(|| NodeError::Missing {
                what: "the node cache directory".into(),
                fix: "set CANOPY_ENVTEST_DIR to <cache>/envtest/k8s-<version>".into(),
            })?;
        let find = |path: PathBuf| {
            if path.is_file() {
                Ok(path)
            } else {
                Err(NodeError::Missing {
                    what: path.display().to_string(),
                    fix: "run `make node` to build the node's binaries".into(),
                })
            }
        };
        Ok(Self {
            kubelet: find(envtest_dir.join("kubelet"))?,
            kube_scheduler: find(envtest_dir.join("kube-scheduler"))?,
            kube_proxy: find(envtest_dir.join("kube-proxy"))?,
            kube_router: find(
                cache
                    .join(format!("kube-router-v{KUBE_ROUTER_VERSION}"))
                    .join("kube-router"),
            )?,
            pause: find(cache.join("pause").join("pause"))?,
            busybox: find(PathBuf::from("/bin/busybox")).map_err(|_| NodeError::Missing {
                what: "/bin/busybox".into(),
                fix: "run `make node-packages` (Debian package busybox-static)".into(),
            })?,
        })
    }
}

/// Host tools from Debian packages (installed by `make node-packages`).
const TOOLS: &[(&str, &str)] = &[
    ("containerd", "containerd"),
    ("containerd-shim-runc-v2", "containerd"),
    ("ctr", "containerd"),
    ("runc", "runc"),
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
    ("/usr/lib/cni/host-local", "containernetworking-plugins"),
    ("/usr/lib/cni/loopback", "containernetworking-plugins"),
    ("ipset", "ipset"),
    ("iptables", "iptables"),
    ("iptables-save", "iptables"),
    ("iptables-restore", "iptables"),
    ("ip", "iproute2"),
];

/// Whether this process may run a node (root); `canopy dev` and the tests fall back to
/// the control plane alone when it may not.
pub fn can_run() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The node's root directory: `$CANOPY_NODE_ROOT` or `/var/lib/canopy-node`. Cleanup
/// removes this directory and kills every process whose command line names it, so an
/// override must be an absolute path whose last component starts with `canopy-node`
/// (else the default is used): `CANOPY_NODE_ROOT=/tmp` must not empty /tmp.
pub fn root_dir() -> PathBuf {
    std::env::var_os("CANOPY_NODE_ROOT")
        .map(PathBuf::from)
        .filter(|p| {
            p.is_absolute()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("canopy-node"))
        })
        .unwrap_or_else(|| PathBuf::from("/var/lib/canopy-node"))
}

/// Removes what an earlier node left on this machine (what every node start does first),
/// without starting one. Fails if a node is running.
pub fn clean_leftovers() -> Result<(), NodeError> {
    if !can_run() {
        return Err(NodeError::NotRoot);
    }
    let root = root_dir();
    let lock_path = root.with_extension("lock");
    let lock_file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| NodeError::io(&lock_path, e))?;
    let lock =
        Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|_| NodeError::Locked {
            path: lock_path.clone(),
        })?;
    cleanup::clean(&root);
    let _ = std::fs::remove_file(&lock_path);
    drop(lock);
    Ok(())
}

/// A node: first `prepare` (the host side, before the control plane starts, because the
/// apiserver listens on the node's address), then `start` (once the control plane runs).
/// Dropping it stops every process and cleans the machine.
pub struct Node {
    // Field order is drop order; `Drop` stops the processes and cleans up explicitly.
    processes: Vec<ManagedProcess>,
    root: PathBuf,
    binaries: NodeBinaries,
    containerd_socket: PathBuf,
    cleaned: bool,
    lock: Option<Flock<File>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// What the node needs of the control plane.
pub struct ControlPlaneRef<'a> {
    pub server: &'a str,
    pub pki: &'a Pki,
    pub logs: &'a Path,
    pub admin: &'a Client,
}

impl Node {
    /// Checks root, tools and binaries, takes the machine's node lock, removes what an
    /// earlier run left behind, records the machine's state, and sets up the bridge with
    /// the node's address, the sysctls and the guard chain.
    pub fn prepare(envtest_dir: &Path) -> Result<Self, NodeError> {
        if !can_run() {
            return Err(NodeError::NotRoot);
        }
        for (tool, package) in TOOLS {
            if !cmd::exists(tool) {
                return Err(NodeError::Missing {
                    what: (*tool).to_owned(),
                    fix: format!("run `make node-packages` (Debian package {package})"),
                });
            }
        }
        let binaries = NodeBinaries::locate(envtest_dir)?;
        let root = root_dir();
        // Cleanup kills what runs in the kubepods cgroups and removes KUBE-* chains: on a
        // machine that is itself a Kubernetes node that would wreck it.
        if let Some(pid) = cleanup::foreign_kubelet(&root) {
            return Err(NodeError::Network(format!(
                "this machine runs a kubelet of its own (pid {pid}); the local node would \
                 take over its cgroups and iptables chains, so it refuses to start"
            )));
        }
        let lock_path = root.with_extension("lock");
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| NodeError::io(&lock_path, e))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
            .map_err(|_| NodeError::Locked { path: lock_path })?;
        let started = Instant::now();
        cleanup::clean(&root);
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "removed what an earlier node left"
        );
        network::check_ranges_free()?;
        cleanup::record_original(&root).map_err(|e| NodeError::io(&root, e))?;
        let node = Self {
            processes: Vec::new(),
            containerd_socket: root.join("containerd").join("containerd.sock"),
            root,
            binaries,
            cleaned: false,
            lock: Some(lock),
        };
        // From here on a failure drops `node`, which cleans up what was done.
        network::setup()?;
        Ok(node)
    }

    /// The node's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// containerd's socket (for `ctr --address` and `crictl`).
    pub fn containerd_socket(&self) -> &Path {
        &self.containerd_socket
    }

    /// Starts containerd and loads the pause and toolbox images, then kubelet,
    /// kube-scheduler, kube-proxy and kube-router, and waits until the node is Ready.
    pub async fn start(&mut self, plane: ControlPlaneRef<'_>) -> Result<(), NodeError> {
        let started = Instant::now();
        let containerd = containerd::Containerd::new(&self.root);
        std::fs::create_dir_all(&containerd.cni_conf_dir)
            .map_err(|e| NodeError::io(&containerd.cni_conf_dir, e))?;
        let conflist = containerd.cni_conf_dir.join("10-canopy.conflist");
        std::fs::write(&conflist, network::conflist(&self.root.join("cni-ipam")))
            .map_err(|e| NodeError::io(&conflist, e))?;
        containerd.write_config(images::PAUSE_IMAGE)?;
        self.spawn(
            "containerd",
            Path::new("containerd"),
            &containerd.args(),
            plane.logs,
        )?;
        let socket = self.containerd_socket.clone();
        self.wait_until("containerd's socket", || {
            let socket = socket.clone();
            async move { tokio::net::UnixStream::connect(&socket).await.is_ok() }
        })
        .await?;

        let image_dir = self.root.join("images");
        images::import(
            &self.containerd_socket,
            &images::pause(&image_dir, &self.binaries.pause)?,
        )?;
        images::import(
            &self.containerd_socket,
            &images::toolbox(&image_dir, &self.binaries.busybox)?,
        )?;

        let kubeconfigs = self.root.join("kubeconfig");
        std::fs::create_dir_all(&kubeconfigs).map_err(|e| NodeError::io(&kubeconfigs, e))?;
        let write_kubeconfig = |name: &str, pair| -> Result<PathBuf, NodeError> {
            let path = kubeconfigs.join(format!("{name}.kubeconfig"));
            let text = super::kubeconfig::render(
                plane.server,
                &plane.pki.ca.cert_pem,
                super::kubeconfig::Credentials::ClientCert(pair),
                name,
            );
            std::fs::write(&path, text).map_err(|e| NodeError::io(&path, e))?;
            Ok(path)
        };
        let kubelet_kc = write_kubeconfig("kubelet", &plane.pki.kubelet)?;
        let scheduler_kc = write_kubeconfig("kube-scheduler", &plane.pki.scheduler)?;
        let proxy_kc = write_kubeconfig("kube-proxy", &plane.pki.kube_proxy)?;
        // kube-router reads Pods, Namespaces, NetworkPolicies and Nodes cluster-wide and
        // updates its Node; the admin identity keeps the harness free of another role.
        let router_kc = write_kubeconfig("kube-router", &plane.pki.admin)?;

        let kubelet = kubelet::Kubelet::new(&self.root, &self.containerd_socket);
        kubelet.write_config(&plane.pki.path(Pki::CA_CERT))?;
        let kubelet_bin = self.binaries.kubelet.clone();
        self.spawn(
            "kubelet",
            &kubelet_bin,
            &kubelet.args(&kubelet_kc),
            plane.logs,
        )?;
        let scheduler = self.binaries.kube_scheduler.clone();
        self.spawn(
            "kube-scheduler",
            &scheduler,
            &services::scheduler_args(&scheduler_kc),
            plane.logs,
        )?;
        let proxy = self.binaries.kube_proxy.clone();
        self.spawn(
            "kube-proxy",
            &proxy,
            &services::proxy_args(&proxy_kc),
            plane.logs,
        )?;
        let nodes: Api<NodeObject> = Api::all(plane.admin.clone());
        // kube-router finds its node object at start-up, and exits when there is none yet.
        self.wait_until("kubelet to register node canopy-node-0", || {
            let nodes = nodes.clone();
            async move { nodes.get_opt(NODE_NAME).await.ok().flatten().is_some() }
        })
        .await?;
        let router = self.binaries.kube_router.clone();
        self.spawn(
            "kube-router",
            &router,
            &services::router_args(&router_kc),
            plane.logs,
        )?;
        self.wait_until("node canopy-node-0 to be Ready", || {
            let nodes = nodes.clone();
            async move {
                nodes
                    .get_opt(NODE_NAME)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|n| is_ready(&n))
            }
        })
        .await?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "node {NODE_NAME} is Ready"
        );
        Ok(())
    }

    /// Loads an OCI archive (src/dev/image.rs) into the node's containerd, where Pods with
    /// `imagePullPolicy: Never` find it by the name recorded in the archive.
    pub fn import_image(&self, archive: &Path) -> Result<(), NodeError> {
        images::import(&self.containerd_socket, archive)
    }

    /// An error naming the first node process that has died, with its log.
    pub fn check_running(&mut self) -> Result<(), NodeError> {
        for process in &mut self.processes {
            if let Err(super::DevError::Exited {
                name,
                status,
                log_tail,
            }) = process.check_running()
            {
                return Err(NodeError::Exited {
                    name,
                    status,
                    log_tail,
                });
            }
        }
        Ok(())
    }

    /// Stops every process (kube-router, kube-proxy, kube-scheduler and kubelet first,
    /// containerd last), kills what runs in Pods, and cleans the machine. Idempotent.
    pub fn stop(&mut self) {
        if self.cleaned {
            return;
        }
        while let Some(mut process) = self.processes.pop() {
            tracing::debug!(process = process.name(), "stopping");
            process.stop(Duration::from_secs(5));
        }
        cleanup::clean(&self.root);
        self.cleaned = true;
        if let Some(lock) = self.lock.take() {
            let _ = std::fs::remove_file(self.root.with_extension("lock"));
            drop(lock);
        }
    }

    fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: &[String],
        logs: &Path,
    ) -> Result<(), NodeError> {
        tracing::debug!(process = name, "starting");
        let program = cmd::resolve(&program.to_string_lossy());
        let process =
            ManagedProcess::spawn(name, &program, args, &logs.join(format!("{name}.log")))
                .map_err(|e| match e {
                    super::DevError::Spawn { program, source } => {
                        NodeError::Spawn { program, source }
                    }
                    super::DevError::Io { path, source } => NodeError::Io { path, source },
                    other => NodeError::Command {
                        command: name.to_owned(),
                        detail: other.to_string(),
                    },
                })?;
        self.processes.push(process);
        Ok(())
    }

    async fn wait_until<F, Fut>(&mut self, what: &str, mut ready: F) -> Result<(), NodeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            self.check_running()?;
            if ready().await {
                tracing::debug!(
                    stage = what,
                    elapsed_ms = start.elapsed().as_millis() as u64,
                    "ready"
                );
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                let logs = self
                    .processes
                    .iter()
                    .map(|p| format!("--- {} ---\n{}", p.name(), p.log_tail(15)))
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(NodeError::Timeout {
                    what: what.to_owned(),
                    logs,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_ready(node: &NodeObject) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}
