//! Shared by the integration tests: one real control plane per test binary, kubectl,
//! and unique names so tests can run in parallel against the same cluster.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod helm;
pub mod managers;
pub mod node;
pub mod objects;
pub mod tenants;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use canopy::dev::{ControlPlane, ControlPlaneOptions, client_for, install_crds};
use parking_lot::Mutex;

/// What the tests need of the shared control plane; the plane itself stays in `PLANE`.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    pub server: String,
}

static PLANE: Mutex<Option<ControlPlane>> = Mutex::new(None);
static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static WITH_CANOPY: OnceLock<Cluster> = OnceLock::new();

/// The control plane of this test binary, started (with canopy's CRDs) on first use.
///
/// Statics are never dropped, so the plane is stopped by an `atexit` hook when the test
/// binary exits; if the binary is killed instead, the kernel kills the processes
/// (the harness sets `PR_SET_PDEATHSIG`).
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        start_plane(|plane| async move {
            install_crds(&plane.client().await?).await?;
            Ok(plane)
        })
    })
}

/// Like `cluster()`, with canopy's manager running in this process as its own
/// ServiceAccount (not an admin), and its webhooks registered with the apiserver.
/// Its logs go to `$CANOPY_TEST_LOG` or `<plane dir>/logs/canopy.log` (`RUST_LOG` sets
/// the level).
pub fn cluster_with_canopy() -> &'static Cluster {
    WITH_CANOPY.get_or_init(|| {
        start_plane(|plane| async move {
            let prepared = canopy::dev::canopy::prepare(&plane).await?;
            // CANOPY_TEST_LOG keeps the log after the run (the plane's directory is removed).
            let log = std::env::var_os("CANOPY_TEST_LOG")
                .map(PathBuf::from)
                .unwrap_or_else(|| plane.dir().join("logs").join("canopy.log"));
            log_to(&log);
            let kubeconfig = prepared.manager_kubeconfig.clone();
            let admin = loopback_admin_listener();
            let _ = ADMIN_PORT.set(admin.local_addr().map_or(0, |a| a.port()));
            let listeners =
                canopy::manager::Listeners::webhooks(prepared.webhooks).with_admin(admin);
            spawn_on_own_runtime(async move {
                let client = client_for(&kubeconfig).await.expect("the manager's client");
                let halves = canopy::manager::Halves {
                    controllers: true,
                    webhooks: true,
                };
                if let Err(e) =
                    canopy::manager::run(client, listeners, halves, std::future::pending()).await
                {
                    eprintln!("canopy manager failed: {e}");
                }
            });
            canopy::dev::canopy::wait_for_webhooks(&plane.client().await?, Duration::from_secs(60))
                .await?;
            Ok(plane)
        })
    })
}

/// The admin port (`/metrics`, `/healthz`, `/readyz`) of the manager that
/// `cluster_with_canopy` runs.
static ADMIN_PORT: OnceLock<u16> = OnceLock::new();

/// The admin port of `cluster_with_canopy`'s manager.
pub fn admin_port() -> u16 {
    *ADMIN_PORT.get().expect("cluster_with_canopy() ran")
}

/// An admin listener on a free loopback port (the manager serves it; read the port with
/// `local_addr`).
pub fn loopback_admin_listener() -> canopy::admin::AdminListener {
    canopy::admin::AdminListener::bind(std::net::SocketAddr::from((
        std::net::Ipv4Addr::LOCALHOST,
        0,
    )))
    .expect("a free loopback port")
}

/// `GET path` on a loopback port over plain HTTP/1.1: the status code and the body (status
/// 0 when nothing answers).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut tcp) = std::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port)) else {
        return (0, String::new());
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if tcp.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut response = Vec::new();
    let _ = tcp.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Runs `work` (a manager, usually) on a runtime of its own, on a thread that lives as long
/// as the test binary or until `work` ends: it must not depend on a test's runtime.
pub fn spawn_on_own_runtime(work: impl Future<Output = ()> + Send + 'static) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(work);
    });
}

pub fn log_to(path: &Path) {
    let Ok(file) = std::fs::File::create(path) else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("canopy=debug"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}

/// Starts the plane on its own thread and runtime (the caller may be inside a test's
/// runtime), runs `setup` on it, and parks it in `PLANE`. For a test binary that needs a
/// setup of its own; call it once, from a `OnceLock`.
pub fn start_plane<F, Fut>(setup: F) -> Cluster
where
    F: FnOnce(ControlPlane) -> Fut + Send + 'static,
    Fut: Future<Output = Result<ControlPlane, canopy::dev::DevError>>,
{
    let started = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move {
            setup(ControlPlane::start(ControlPlaneOptions::default()).await?).await
        })
    })
    .join()
    .expect("the control-plane thread panicked");
    {
        let plane = match started {
            Ok(plane) => plane,
            Err(e) => panic!("cannot start the control plane: {e}"),
        };
        let cluster = Cluster {
            kubeconfig: plane.admin_kubeconfig().to_owned(),
            kubectl: plane.binaries().kubectl.clone(),
            server: plane.server().to_owned(),
        };
        *PLANE.lock() = Some(plane);
        // SAFETY: registering a plain `extern "C" fn` with atexit(3).
        unsafe {
            nix::libc::atexit(stop_plane_at_exit);
        }
        cluster
    }
}

extern "C" fn stop_plane_at_exit() {
    let plane = PLANE.lock().take();
    drop(plane);
}

/// An admin client for `current()` on the caller's runtime.
pub async fn client() -> kube::Client {
    client_for(&current().kubeconfig)
        .await
        .expect("a client for the shared control plane")
}

/// A name no other test in this run uses: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The result of one kubectl call.
#[derive(Debug)]
pub struct Kubectl {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Kubectl {
    fn from(o: Output) -> Self {
        Self {
            success: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs kubectl (the one built with the control plane) as the admin user.
pub fn kubectl(args: &[&str]) -> Kubectl {
    kubectl_with_stdin(args, None)
}

/// The cluster this test binary uses: the one with canopy if it was started, else the
/// plain one (started on first use).
pub fn current() -> &'static Cluster {
    WITH_CANOPY
        .get()
        .or_else(|| CUSTOM.get())
        .unwrap_or_else(cluster)
}

/// The cluster of a test binary with its own setup (see `start_plane`).
pub static CUSTOM: OnceLock<Cluster> = OnceLock::new();

/// Runs kubectl with `stdin` piped in (for `apply -f -`), against `current()`.
pub fn kubectl_with_stdin(args: &[&str], stdin: Option<&str>) -> Kubectl {
    use std::io::Write;
    use std::process::Stdio;
    let cluster = current();
    let mut cmd = Command::new(&cluster.kubectl);
    cmd.args(args)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes())
            .expect("write kubectl stdin");
    }
    child.wait_with_output().expect("kubectl finishes").into()
}

/// kubectl that must succeed; returns stdout.
#[track_caller]
pub fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(out.success, "kubectl {args:?} failed: {}", out.stderr);
    out.stdout
}

/// kubectl's JSON output of `args` (which should include `-o json`), or `None` when
/// kubectl fails (for example NotFound).
pub fn json(args: &[&str]) -> Option<serde_json::Value> {
    let out = kubectl(args);
    out.success
        .then(|| serde_json::from_str(&out.stdout).ok())
        .flatten()
}

/// `kubectl apply -f -` of `yaml`.
pub fn apply(yaml: &str) -> Kubectl {
    // A controller may create the object between kubectl's GET and its CREATE (canopy
    // creates the CanopyConfiguration `config` when it is missing): the apiserver then
    // answers AlreadyExists, and applying again, as a GitOps tool's next sync would, works.
    let mut out = kubectl_with_stdin(&["apply", "-f", "-"], Some(yaml));
    for _ in 0..3 {
        if out.success || !out.stderr.contains("(AlreadyExists)") {
            break;
        }
        out = kubectl_with_stdin(&["apply", "-f", "-"], Some(yaml));
    }
    out
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout` naming `what`.
#[track_caller]
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The repository root, for fixtures and `crds/`.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Runs `f` on this test binary's control plane (to stop or start one of its processes),
/// on a thread and runtime of its own: the caller may be inside a test's runtime.
pub fn with_plane<R: Send + 'static>(
    f: impl AsyncFnOnce(&mut ControlPlane) -> R + Send + 'static,
) -> R {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let mut plane = PLANE.lock();
        let plane = plane.as_mut().expect("the control plane is running");
        runtime.block_on(f(plane))
    })
    .join()
    .expect("the control-plane thread panicked")
}
