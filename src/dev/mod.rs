//! The local control plane used by the integration tests and by `canopy dev`.
//!
//! etcd, kube-apiserver and kube-controller-manager are built from source by
//! `make envtest` (hack/build-envtest.sh) and started here on free loopback ports.

mod binaries;
pub mod canopy;
mod control_plane;
pub mod image;
mod install;
mod kubeconfig;
pub mod node;
mod pki;
mod process;

use std::path::{Path, PathBuf};

pub use binaries::{Binaries, K8S_VERSION};
pub use control_plane::{ControlPlane, ControlPlaneOptions, client_for, free_port};
pub use install::install_crds;
pub use node::{NODE_NAME, Node, NodeError};

/// Why the local control plane could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("{path} is missing: run `make envtest` to build the control-plane binaries")]
    MissingBinary { path: PathBuf },
    #[error(
        "HOME is not set; set CANOPY_ENVTEST_DIR to the directory of the control-plane binaries"
    )]
    NoHome,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
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
    #[error("cannot generate certificates: {0}")]
    Certificates(#[from] rcgen::Error),
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("cannot build a client: {0}")]
    Client(#[from] kube::Error),
    #[error("installing CRD {name}: {source}")]
    InstallCrd { name: String, source: kube::Error },
    #[error("installing {what}: {source}")]
    Install { what: String, source: kube::Error },
    #[error("setting up canopy: {0}")]
    Canopy(String),
    #[error("node {NODE_NAME}: {0}")]
    Node(#[from] NodeError),
}

impl DevError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Arguments of `canopy dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where to write the admin kubeconfig, once everything is ready.
    #[arg(long, default_value = ".canopy/kubeconfig")]
    pub kubeconfig: PathBuf,
    /// Keep etcd data, certificates and logs here (kept on exit) instead of a temporary
    /// directory (removed on exit).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Add a real node (`canopy-node-0`: containerd, kubelet, kube-scheduler, kube-proxy,
    /// kube-router) so Pods run and NetworkPolicy is enforced. Needs root and `make node`;
    /// without root the control plane starts alone.
    #[arg(long)]
    pub node: bool,
}

/// `canopy dev`: start the control plane, install the CRDs, publish the kubeconfig, and
/// run until Ctrl-C or SIGTERM.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let with_node = args.node && node::can_run();
    if args.node && !with_node {
        tracing::warn!("--node needs root: starting the control plane without a node");
    }
    let mut plane = ControlPlane::start(ControlPlaneOptions {
        data_dir: args.data_dir.clone(),
        binaries: None,
        node: with_node,
    })
    .await?;
    if let Some(node) = plane.node() {
        // This very binary becomes `localhost/canopy:dev`, for `helm install` on the node.
        let exe =
            std::env::current_exe().map_err(|e| DevError::io(Path::new("/proc/self/exe"), e))?;
        let archive = node::images::canopy(&plane.dir().join("images"), &exe)?;
        node.import_image(&archive)?;
    }
    let admin = plane.client().await?;
    let prepared = canopy::prepare(&plane).await?;
    let manager_client = client_for(&prepared.manager_kubeconfig).await?;
    // canopy's /metrics, /healthz and /readyz, on a free loopback port (logged).
    let admin_port =
        crate::admin::AdminListener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = admin_port
        .local_addr()
        .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
    tracing::info!(%addr, "canopy's admin port");
    let (stop_manager, stopped) = tokio::sync::oneshot::channel::<()>();
    let manager = tokio::spawn(crate::manager::run(
        manager_client,
        crate::manager::Listeners::webhooks(prepared.webhooks).with_admin(admin_port),
        crate::manager::Halves {
            controllers: true,
            webhooks: true,
        },
        async move {
            let _ = stopped.await;
        },
    ));
    canopy::wait_for_webhooks(&admin, std::time::Duration::from_secs(60)).await?;
    canopy::wait_for_configuration(&admin, std::time::Duration::from_secs(60)).await?;

    // The kubeconfig appears only now, so a script waiting for the file finds a cluster
    // that is ready to use.
    let admin = std::fs::read_to_string(plane.admin_kubeconfig())
        .map_err(|e| DevError::io(plane.admin_kubeconfig(), e))?;
    kubeconfig::write_atomically(&args.kubeconfig, &admin)?;
    let kubeconfig_path =
        std::fs::canonicalize(&args.kubeconfig).map_err(|e| DevError::io(&args.kubeconfig, e))?;
    tracing::info!(
        server = plane.server(),
        data_dir = %plane.dir().display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "control plane ready"
    );
    println!("export KUBECONFIG={}", kubeconfig_path.display());
    if with_node {
        println!(
            "# node {NODE_NAME} is Ready; images: {}, {} (imagePullPolicy: Never)",
            node::images::TOOLBOX_IMAGE,
            node::images::CANOPY_IMAGE
        );
    } else {
        println!(
            "# no node: Pods stay Pending. For a real node (root): canopy dev --node \
             (make dev-node)"
        );
    }

    let outcome = wait_for_shutdown(&mut plane).await;
    let _ = stop_manager.send(());
    if let Ok(Err(err)) = manager.await {
        tracing::warn!(error = %err, "the manager stopped with an error");
    }
    tracing::info!("stopping the control plane");
    let _ = std::fs::remove_file(&kubeconfig_path);
    plane.stop();
    outcome
}

/// Returns on Ctrl-C or SIGTERM, or with an error when a control-plane process dies.
async fn wait_for_shutdown(plane: &mut ControlPlane) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut health = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
            _ = health.tick() => plane.check_running()?,
        }
    }
}
