//! `canopy dev`: a local cluster with canopy installed, ready when its kubeconfig appears.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use canopy::dev::Binaries;
use common::eventually;

#[test]
fn canopy_dev_serves_the_crds_and_stops_cleanly_on_sigterm() {
    let kubectl = Binaries::locate()
        .expect("run `make envtest` first")
        .kubectl;
    let dir = tempfile::tempdir().expect("a temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let data_dir = dir.path().join("data");
    // The logs go to a file, as a Pod's do: JSON lines, no colours.
    let log_path = dir.path().join("canopy.log");
    let log = std::fs::File::create(&log_path).expect("a log file");
    let started = Instant::now();
    let mut dev = Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(["dev", "--log-format", "json", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--data-dir")
        .arg(&data_dir)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("canopy dev starts");

    eventually(
        "canopy dev to write its kubeconfig",
        Duration::from_secs(120),
        || {
            if let Ok(Some(status)) = dev.try_wait() {
                panic!("canopy dev exited early: {status}");
            }
            kubeconfig.exists().then_some(())
        },
    );
    eprintln!(
        "canopy dev ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let crds = Command::new(&kubectl)
        .args(["get", "crds", "-o", "name"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("kubectl runs");
    let names = String::from_utf8_lossy(&crds.stdout);
    for crd in [
        "tenants.canopy.dev",
        "subnamespaceanchors.canopy.dev",
        "hierarchyconfigurations.canopy.dev",
        "canopyconfigurations.canopy.dev",
    ] {
        assert!(names.contains(crd), "{crd} missing from {names}");
    }
    let server = std::fs::read_to_string(&kubeconfig).expect("kubeconfig readable");
    let port: u16 = server
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://127.0.0.1:"))
        .and_then(|p| p.parse().ok())
        .expect("a loopback server in the kubeconfig");

    let pid = nix::unistd::Pid::from_raw(dev.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal canopy dev");
    let status = eventually("canopy dev to exit", Duration::from_secs(30), || {
        dev.try_wait().ok().flatten()
    });
    assert!(status.success(), "canopy dev exited with {status}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut dev.stdout.take().expect("stdout"), &mut stdout).ok();
    assert!(
        stdout.contains(&format!("export KUBECONFIG={}", kubeconfig.display())),
        "prints the export line: {stdout:?}"
    );
    assert!(
        !kubeconfig.exists(),
        "the kubeconfig of a stopped cluster is removed"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the apiserver is stopped"
    );
    assert!(data_dir.join("etcd").exists(), "a given --data-dir is kept");

    // Logs fit a cluster: one JSON object per line, no escape codes, objects by name, and
    // a clean shutdown (the manager first, then the control plane) warns about nothing.
    let log = std::fs::read_to_string(&log_path).expect("the log");
    assert!(!log.contains('\u{1b}'), "no ANSI escapes in a file: {log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "canopy manager stopped"),
        "{log}"
    );
    let loud: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["level"] == "WARN" || l["level"] == "ERROR")
        .collect();
    assert!(
        loud.is_empty(),
        "a clean run and shutdown logged: {loud:#?}"
    );
    assert!(!log.contains("ObjectRef {"), "{log}");
    assert!(!log.contains("Some("), "{log}");
}
