//! canopy managers started and stopped by a test binary with a setup of its own.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use canopy::controllers::writer::DEFAULT_WRITE_QPS;
use canopy::dev::canopy::PreparedCanopy;
use canopy::dev::{ControlPlane, DevError, client_for};
use canopy::leader::LeaderElectionArgs;
use canopy::manager::{Halves, Listeners, WebhookListener, run_with};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::{kubectl, spawn_on_own_runtime};

/// Stops a manager when sent to (or dropped), by identity.
static STOPS: Mutex<Vec<(String, oneshot::Sender<()>)>> = Mutex::new(Vec::new());

/// Starts a manager as canopy's ServiceAccount (`kubeconfig`), campaigning for the Lease
/// as `identity`; it serves the webhooks and the admin port on `listeners` when given.
pub fn start_manager(kubeconfig: PathBuf, identity: &str, listeners: Listeners) {
    let (stop, stopped) = oneshot::channel::<()>();
    STOPS.lock().push((identity.to_owned(), stop));
    let identity = identity.to_owned();
    spawn_on_own_runtime(async move {
        let client = client_for(&kubeconfig).await.expect("client");
        let election = LeaderElectionArgs {
            leader_election_identity: Some(identity.clone()),
            lease_duration_seconds: 6,
            ..LeaderElectionArgs::default()
        };
        let halves = Halves {
            controllers: true,
            webhooks: listeners.webhooks.is_some(),
        };
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = run_with(
            client,
            listeners,
            halves,
            Some(election),
            DEFAULT_WRITE_QPS,
            canopy::webhooks::certs::DEFAULT_WEBHOOK_CONFIGURATION.to_owned(),
            shutdown,
        )
        .await
        {
            eprintln!("manager {identity}: {e}");
        }
    });
}

/// Stops the manager `identity` as SIGTERM would (it releases the Lease on the way out).
pub fn stop_manager(identity: &str) {
    let stop = {
        let mut stops = STOPS.lock();
        let at = stops
            .iter()
            .position(|(id, _)| id == identity)
            .unwrap_or_else(|| panic!("no manager {identity} to stop"));
        stops.remove(at).1
    };
    let _ = stop.send(());
}

/// Who holds the Lease `canopy-manager`.
pub fn holder() -> Option<String> {
    let out = kubectl(&[
        "get",
        "lease",
        "canopy-manager",
        "-n",
        "canopy-system",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    (out.success && !out.stdout.is_empty()).then_some(out.stdout)
}

/// Connections the round-robin proxy handed to each replica.
static CONNECTIONS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// How many connections the proxy of `start_two_replicas` gave each replica.
pub fn proxy_connections() -> [usize; 2] {
    [0, 1].map(|i| CONNECTIONS[i].load(Ordering::Relaxed))
}

/// Two managers, `manager-a` and `manager-b`, both serving the webhooks, which the
/// apiserver reaches through a round-robin TCP proxy (as a Service spreads connections
/// over its endpoints; TLS passes through). Returns the two replicas' ports.
pub async fn start_two_replicas(
    plane: &ControlPlane,
    prepared: PreparedCanopy,
) -> Result<Replicas, DevError> {
    let err = |e: String| DevError::Canopy(e);
    let serving = &plane.pki().loopback_serving;
    let second = WebhookListener::bind(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        serving.cert_pem.as_bytes(),
        serving.key_pem.as_bytes(),
    )
    .await
    .map_err(|e| err(e.to_string()))?;
    let port = |l: &WebhookListener| l.local_addr().map_or(0, |a| a.port());
    let backends = [port(&prepared.webhooks), port(&second)];
    let proxy =
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| err(e.to_string()))?;
    proxy
        .set_nonblocking(true)
        .map_err(|e| err(e.to_string()))?;
    let proxy_port = proxy.local_addr().map_err(|e| err(e.to_string()))?.port();
    start_proxy(proxy, backends);
    let admin = plane.client().await?;
    canopy::dev::canopy::register_webhooks(&admin, proxy_port, &plane.pki().ca.cert_pem).await?;
    let kubeconfig = prepared.manager_kubeconfig.clone();
    let admins = [
        super::loopback_admin_listener(),
        super::loopback_admin_listener(),
    ];
    let admin_ports = [&admins[0], &admins[1]].map(|l| l.local_addr().map_or(0, |a| a.port()));
    let [admin_a, admin_b] = admins;
    start_manager(
        kubeconfig.clone(),
        "manager-a",
        Listeners::webhooks(prepared.webhooks).with_admin(admin_a),
    );
    start_manager(
        kubeconfig,
        "manager-b",
        Listeners::webhooks(second).with_admin(admin_b),
    );
    canopy::dev::canopy::wait_for_webhooks(&admin, Duration::from_secs(60)).await?;
    Ok(Replicas {
        webhook_ports: backends,
        admin_ports,
    })
}

/// The ports of the two replicas of `start_two_replicas`.
#[derive(Clone, Copy, Debug)]
pub struct Replicas {
    /// Their webhook servers (HTTPS), behind the proxy.
    pub webhook_ports: [u16; 2],
    /// Their admin ports (`/metrics`, `/healthz`, `/readyz`, plain HTTP).
    pub admin_ports: [u16; 2],
}

/// Forwards each accepted connection to the next backend in turn.
pub fn start_proxy(listener: std::net::TcpListener, backends: [u16; 2]) {
    spawn_on_own_runtime(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        let mut next = 0usize;
        while let Ok((mut inbound, _)) = listener.accept().await {
            let index = next % 2;
            next += 1;
            CONNECTIONS[index].fetch_add(1, Ordering::Relaxed);
            let backend = SocketAddr::from((Ipv4Addr::LOCALHOST, backends[index]));
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
}

/// This test binary's own control plane with canopy as two replicas behind one webhook
/// address (`start_two_replicas`), started once.
pub fn setup_two_replicas() {
    super::CUSTOM.get_or_init(|| {
        super::start_plane(|plane| async move {
            let prepared = canopy::dev::canopy::prepare(&plane).await?;
            start_two_replicas(&plane, prepared).await?;
            Ok(plane)
        })
    });
}

/// `canopy manager` as its own process, so it can be killed with SIGKILL (no graceful
/// shutdown, no Lease released, requests in flight cut). It dies with the thread that
/// started it (`PR_SET_PDEATHSIG`), so start it from the test's own thread.
pub struct ManagerProcess {
    pub args: Vec<String>,
    pub kubeconfig: PathBuf,
    /// Where its log is appended.
    pub log: PathBuf,
    child: Option<std::process::Child>,
}

impl ManagerProcess {
    pub fn new(args: &[&str], kubeconfig: PathBuf, log: PathBuf) -> Self {
        Self {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            kubeconfig,
            log,
            child: None,
        }
    }

    pub fn start(&mut self) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the manager's log");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_canopy"));
        command
            .arg("manager")
            .args(&self.args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("CANOPY_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log);
        // SAFETY: prctl(2) is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        self.child = Some(command.spawn().expect("the manager starts"));
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ManagerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port (bound and released: fine for a test's own processes).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
