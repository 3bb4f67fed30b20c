//! A local control plane: etcd, kube-apiserver and kube-controller-manager on loopback,
//! started as envtest does, plus the controller manager so the cluster behaves like one.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tempfile::TempDir;

use super::DevError;
use super::binaries::Binaries;
use super::kubeconfig::{self, Credentials};
use super::node::{self, ControlPlaneRef, Node};
use super::pki::Pki;
use super::process::ManagedProcess;

/// How long each stage of start-up may take before it is reported as failed.
const STAGE_TIMEOUT: Duration = Duration::from_secs(90);

/// Settings of a control plane.
#[derive(Clone, Debug, Default)]
pub struct ControlPlaneOptions {
    /// Keep everything (etcd data, certificates, logs) here instead of a temporary
    /// directory that is removed on stop.
    pub data_dir: Option<PathBuf>,
    /// Where the binaries are; `Binaries::locate()` when unset.
    pub binaries: Option<Binaries>,
    /// Add the node `canopy-node-0` (src/dev/node; needs root and `make node`): the
    /// apiserver then listens on the node's address instead of loopback.
    pub node: bool,
}

/// A running control plane. Dropping it stops every process and, unless a data
/// directory was given, removes all data.
pub struct ControlPlane {
    // Field order is drop order: the node stops before the control plane, and processes
    // stop before their directory goes.
    node: Option<Node>,
    processes: Vec<ManagedProcess>,
    _temp_dir: Option<TempDir>,
    dir: PathBuf,
    server: String,
    admin_kubeconfig: PathBuf,
    binaries: Binaries,
    pki: Pki,
    /// kube-apiserver's arguments, to start it again on the same port and data.
    apiserver_args: Vec<String>,
    apiserver_starts: u32,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server", &self.server)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Starts etcd, then kube-apiserver (waiting for `/readyz`), then
    /// kube-controller-manager (waiting until it has created the `default` ServiceAccount,
    /// so Pods can be admitted).
    pub async fn start(options: ControlPlaneOptions) -> Result<Self, DevError> {
        let binaries = match options.binaries {
            Some(b) => b,
            None => Binaries::locate()?,
        };
        let (temp_dir, dir) = match options.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(&dir).map_err(|e| DevError::io(&dir, e))?;
                let dir = std::fs::canonicalize(&dir).map_err(|e| DevError::io(&dir, e))?;
                (None, dir)
            }
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix("canopy-dev-")
                    .tempdir()
                    .map_err(|e| DevError::io(Path::new("/tmp"), e))?;
                let dir = tmp.path().to_owned();
                (Some(tmp), dir)
            }
        };
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| DevError::io(&logs, e))?;
        // The node's host side comes first: the apiserver listens on the node's address,
        // which lives on the node's bridge.
        let node = if options.node {
            let envtest_dir = binaries.kubectl.parent().unwrap_or(Path::new("."));
            Some(Node::prepare(envtest_dir)?)
        } else {
            None
        };
        let listen = if node.is_some() {
            IpAddr::V4(node::NODE_IP)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        let extra_ips: Vec<IpAddr> = node.iter().map(|_| IpAddr::V4(node::NODE_IP)).collect();
        let pki = Pki::generate(&dir.join("pki"), &extra_ips)?;

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let api_port = free_port()?;
        let server = format!("https://{listen}:{api_port}");

        let mut plane = Self {
            node,
            processes: Vec::new(),
            _temp_dir: temp_dir,
            dir: dir.clone(),
            server: server.clone(),
            admin_kubeconfig: dir.join("admin.kubeconfig"),
            binaries,
            pki,
            apiserver_args: Vec::new(),
            apiserver_starts: 1,
        };

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let etcd_args = vec![
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--unsafe-no-fsync=true".to_owned(),
            "--log-level=warn".to_owned(),
        ];
        plane.spawn("etcd", &plane.binaries.etcd.clone(), &etcd_args, &logs)?;
        plane.wait_for_port(etcd_port).await?;

        let pki_dir = plane.pki.dir.clone();
        let p = |f: &str| pki_dir.join(f).display().to_string();
        let mut apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--bind-address={listen}"),
            format!("--advertise-address={listen}"),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", dir.join("pki").display()),
            format!("--tls-cert-file={}", p(Pki::SERVING_CERT)),
            format!("--tls-private-key-file={}", p(Pki::SERVING_KEY)),
            format!("--client-ca-file={}", p(Pki::CA_CERT)),
            format!("--service-account-issuer={server}"),
            format!("--service-account-key-file={}", p(Pki::SA_PUB)),
            format!("--service-account-signing-key-file={}", p(Pki::SA_KEY)),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--authorization-mode=Node,RBAC".to_owned(),
            // Added to the default set, which already holds most of these; named here so
            // a reader sees what the tests rely on.
            "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,\
             DefaultStorageClass,NodeRestriction,MutatingAdmissionWebhook,\
             ValidatingAdmissionWebhook,ResourceQuota"
                .to_owned(),
            "--allow-privileged=true".to_owned(),
            "--profiling=false".to_owned(),
        ];
        if plane.node.is_some() {
            apiserver_args.extend([
                // `kubectl exec` and `logs`: the kubelet trusts the CA, and authorizes the
                // admin certificate through the apiserver.
                format!("--kubelet-client-certificate={}", p(Pki::ADMIN_CERT)),
                format!("--kubelet-client-key={}", p(Pki::ADMIN_KEY)),
                "--kubelet-preferred-address-types=InternalIP".to_owned(),
            ]);
        }
        plane.spawn(
            "kube-apiserver",
            &plane.binaries.kube_apiserver.clone(),
            &apiserver_args,
            &logs,
        )?;
        plane.apiserver_args = apiserver_args;

        let pki = &plane.pki;
        let admin = kubeconfig::render(
            &server,
            &pki.ca.cert_pem,
            Credentials::ClientCert(&pki.admin),
            "canopy-dev",
        );
        kubeconfig::write_atomically(&plane.admin_kubeconfig, &admin)?;
        let kcm_kubeconfig = dir.join("controller-manager.kubeconfig");
        let kcm = kubeconfig::render(
            &server,
            &pki.ca.cert_pem,
            Credentials::ClientCert(&pki.controller_manager),
            "controller-manager",
        );
        kubeconfig::write_atomically(&kcm_kubeconfig, &kcm)?;

        let client = plane.client().await?;
        plane.wait_for_readyz(&client).await?;

        let mut kcm_args = vec![
            format!("--kubeconfig={}", kcm_kubeconfig.display()),
            format!("--authentication-kubeconfig={}", kcm_kubeconfig.display()),
            format!("--authorization-kubeconfig={}", kcm_kubeconfig.display()),
            "--secure-port=0".to_owned(),
            "--leader-elect=false".to_owned(),
            // Each controller acts as its own ServiceAccount, as kubeadm sets it up.
            "--use-service-account-credentials=true".to_owned(),
            format!("--service-account-private-key-file={}", p(Pki::SA_KEY)),
            format!("--root-ca-file={}", p(Pki::CA_CERT)),
            format!("--cluster-signing-cert-file={}", p(Pki::CA_CERT)),
            format!("--cluster-signing-key-file={}", p(Pki::CA_KEY)),
            "--controllers=*".to_owned(),
            "--profiling=false".to_owned(),
        ];
        if plane.node.is_some() {
            // The node's spec.podCIDR, which kube-router reads: the whole Pod range.
            kcm_args.extend([
                "--allocate-node-cidrs=true".to_owned(),
                format!("--cluster-cidr={}", node::POD_CIDR),
                "--node-cidr-mask-size=24".to_owned(),
            ]);
        }
        plane.spawn(
            "kube-controller-manager",
            &plane.binaries.kube_controller_manager.clone(),
            &kcm_args,
            &logs,
        )?;
        plane.wait_for_default_service_account(&client).await?;
        if let Some(mut node) = plane.node.take() {
            let started = node
                .start(ControlPlaneRef {
                    server: &plane.server,
                    pki: &plane.pki,
                    logs: &logs,
                    admin: &client,
                })
                .await;
            plane.node = Some(node);
            started?;
        }
        Ok(plane)
    }

    /// The node, when the plane was started with one.
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A kubeconfig for a `system:masters` user.
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The directory holding data, certificates and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// A client with admin rights. Make one per tokio runtime: a client's connections
    /// belong to the runtime it was made on.
    pub async fn client(&self) -> Result<Client, DevError> {
        client_for(&self.admin_kubeconfig).await
    }

    /// An error naming the first process that has died, with its log.
    pub fn check_running(&mut self) -> Result<(), DevError> {
        if let Some(node) = self.node.as_mut() {
            node.check_running()?;
        }
        self.processes
            .iter_mut()
            .try_for_each(ManagedProcess::check_running)
    }

    /// Stops the node (and cleans the machine), then the controller manager, the
    /// apiserver and etcd, in that order.
    pub fn stop(&mut self) {
        if let Some(mut node) = self.node.take() {
            node.stop();
        }
        while let Some(mut process) = self.processes.pop() {
            tracing::debug!(process = process.name(), "stopping");
            process.stop(Duration::from_secs(10));
        }
    }

    /// Stops kube-apiserver (SIGTERM, then SIGKILL after `grace`), leaving etcd and
    /// kube-controller-manager running: an apiserver outage. No-op if it is not running.
    pub fn stop_apiserver(&mut self, grace: Duration) {
        if let Some(at) = self
            .processes
            .iter()
            .position(|p| p.name() == "kube-apiserver")
        {
            let mut process = self.processes.remove(at);
            tracing::debug!("stopping kube-apiserver");
            process.stop(grace);
        }
    }

    /// Starts kube-apiserver again with the same port, certificates and etcd (so the same
    /// data), and waits for its `/readyz`. No-op if it is running.
    pub async fn start_apiserver(&mut self) -> Result<(), DevError> {
        if self.processes.iter().any(|p| p.name() == "kube-apiserver") {
            return Ok(());
        }
        self.apiserver_starts += 1;
        let log = self
            .dir
            .join("logs")
            .join(format!("kube-apiserver-{}.log", self.apiserver_starts));
        let process = ManagedProcess::spawn(
            "kube-apiserver",
            &self.binaries.kube_apiserver,
            &self.apiserver_args,
            &log,
        )?;
        // After etcd, before the controller manager: processes stop in reverse order.
        let at = self
            .processes
            .iter()
            .position(|p| p.name() == "etcd")
            .map_or(0, |etcd| etcd + 1);
        self.processes.insert(at, process);
        let client = self.client().await?;
        self.wait_for_readyz(&client).await
    }

    fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: &[String],
        logs: &Path,
    ) -> Result<(), DevError> {
        tracing::debug!(process = name, "starting");
        let process =
            ManagedProcess::spawn(name, program, args, &logs.join(format!("{name}.log")))?;
        self.processes.push(process);
        Ok(())
    }

    async fn wait_for_port(&mut self, port: u16) -> Result<(), DevError> {
        self.wait_until("etcd to listen", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await
    }

    async fn wait_for_readyz(&mut self, client: &Client) -> Result<(), DevError> {
        self.wait_until("kube-apiserver /readyz", || async move {
            let request = http::Request::get("/readyz").body(Vec::new());
            match request {
                Ok(req) => client
                    .request_text(req)
                    .await
                    .is_ok_and(|body| body.trim() == "ok"),
                Err(_) => false,
            }
        })
        .await
    }

    async fn wait_for_default_service_account(&mut self, client: &Client) -> Result<(), DevError> {
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        self.wait_until(
            "kube-controller-manager to create ServiceAccount default/default",
            || {
                let accounts = accounts.clone();
                async move {
                    accounts
                        .get_opt("default")
                        .await
                        .is_ok_and(|sa| sa.is_some())
                }
            },
        )
        .await
    }

    /// Polls `ready` until it holds, failing early when a process dies.
    async fn wait_until<F, Fut>(&mut self, what: &str, mut ready: F) -> Result<(), DevError>
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
            if start.elapsed() > STAGE_TIMEOUT {
                let logs = self
                    .processes
                    .iter()
                    .map(|p| format!("--- {} ---\n{}", p.name(), p.log_tail(20)))
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(DevError::Timeout {
                    what: what.to_owned(),
                    logs,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A client for the kubeconfig at `path`.
pub async fn client_for(path: &Path) -> Result<Client, DevError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| DevError::Kubeconfig {
        path: path.to_owned(),
        source,
    })?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| DevError::Kubeconfig {
            path: path.to_owned(),
            source,
        })?;
    Ok(Client::try_from(config)?)
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16, DevError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| DevError::io(Path::new("127.0.0.1:0"), e))?;
    let port = listener
        .local_addr()
        .map_err(|e| DevError::io(Path::new("127.0.0.1:0"), e))?
        .port();
    Ok(port)
}
