//! `canopy dev --node` as a user runs it: ready within a minute on a warm cache, a Pod runs;
//! after a `kill -9` the next start removes the leftovers (containerd's shims and the Pods
//! they keep alive, iptables chains, ipsets, the bridge, mounts) and starts clean; after
//! Ctrl-C (SIGTERM) the machine is as it was before the first start.
//!
//! Needs root (the node does); without it the test says it was skipped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous for a loaded CI machine; the measured time is printed.
const READY_WITHIN: Duration = Duration::from_secs(150);

/// What a node may change on the machine, read without changing anything.
fn machine_state() -> Vec<String> {
    let run = |program: &str, args: &[&str]| -> String {
        Command::new(program)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| format!("{program}: {e}"))
    };
    let mut state = Vec::new();
    for save in ["iptables-save", "ip6tables-save"] {
        // Rules and chains, without the comments and packet counters that change anyway.
        for line in run(save, &[]).lines() {
            if line.starts_with('#') {
                continue;
            }
            let line = match line.split_once(" [") {
                Some((head, _)) if line.starts_with(':') => head,
                _ => line,
            };
            state.push(format!("{save}: {line}"));
        }
    }
    for name in run("ipset", &["list", "-n"]).lines() {
        state.push(format!("ipset: {name}"));
    }
    for line in run("ip", &["-o", "link", "show"]).lines() {
        let name = line.split(':').nth(1).unwrap_or_default().trim();
        state.push(format!("link: {name}"));
    }
    for line in run("ip", &["netns", "list"]).lines() {
        state.push(format!("netns: {line}"));
    }
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
        for point in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
            if point.contains("canopy-node")
                || point.contains("kubelet")
                || point.contains("/run/netns")
            {
                state.push(format!("mount: {point}"));
            }
        }
    }
    for path in [
        "/var/lib/canopy-node",
        "/var/lib/cni",
        "/run/containerd",
        "/run/netns",
    ] {
        state.push(format!("{path} exists: {}", Path::new(path).exists()));
    }
    if Path::new("/sys/fs/cgroup/kubepods").exists() {
        state.push("cgroup: /sys/fs/cgroup/kubepods".to_owned());
    }
    if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
        for h in hierarchies.flatten() {
            if h.path().join("kubepods").exists() {
                state.push(format!("cgroup: {}/kubepods", h.path().display()));
            }
        }
    }
    for key in [
        "net/ipv4/ip_forward",
        "net/ipv4/conf/all/route_localnet",
        "net/bridge/bridge-nf-call-iptables",
        "net/bridge/bridge-nf-call-ip6tables",
        "vm/overcommit_memory",
        "vm/panic_on_oom",
        "kernel/panic",
        "kernel/panic_on_oops",
        "kernel/keys/root_maxkeys",
        "kernel/keys/root_maxbytes",
    ] {
        let value = std::fs::read_to_string(Path::new("/proc/sys").join(key)).unwrap_or_default();
        state.push(format!("sysctl {key} = {}", value.trim()));
    }
    let procs: Vec<String> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                    cmdline
                        .contains("canopy-node")
                        .then(|| format!("process: {cmdline}"))
                })
                .collect()
        })
        .unwrap_or_default();
    state.extend(procs);
    state
}

struct Dev {
    child: Child,
    kubeconfig: PathBuf,
    ready_after: Duration,
}

fn envtest_dir() -> PathBuf {
    std::env::var_os("CANOPY_ENVTEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/canopy/envtest/k8s-1.36.3")
        })
}

/// Starts `canopy dev --node` and waits for its `export KUBECONFIG=` line.
fn start_dev(dir: &Path, run: u32) -> Dev {
    let kubeconfig = dir.join(format!("kubeconfig-{run}"));
    let log = std::fs::File::create(dir.join(format!("dev-{run}.log"))).expect("a log file");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(["dev", "--node", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--data-dir")
        .arg(dir.join(format!("data-{run}")))
        .env("RUST_LOG", "info,canopy=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("canopy dev starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("export KUBECONFIG=") {
                let _ = tx.send(());
            }
        }
    });
    if let Err(e) = rx.recv_timeout(READY_WITHIN) {
        let why = match e {
            mpsc::RecvTimeoutError::Timeout => format!("was not ready in {READY_WITHIN:?}"),
            mpsc::RecvTimeoutError::Disconnected => "exited before it was ready".to_owned(),
        };
        let _ = child.kill();
        let log = std::fs::read_to_string(dir.join(format!("dev-{run}.log"))).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "canopy dev --node (run {run}) {why}:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Dev {
        child,
        kubeconfig,
        ready_after: started.elapsed(),
    }
}

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(envtest_dir().join("kubectl"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).expect("kubectl's stdin");
    }
    let out = child.wait_with_output().expect("kubectl finishes");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A Pod runs on the node (with `kubectl exec` answering from inside it).
fn pod_runs(kubeconfig: &Path, name: &str) {
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  \
         terminationGracePeriodSeconds: 0\n  containers:\n  - name: main\n    \
         image: localhost/canopy-toolbox:latest\n    imagePullPolicy: Never\n    \
         command: [sleep, '86400']\n"
    );
    let (ok, out) = kubectl(kubeconfig, &["apply", "-f", "-"], Some(&pod));
    assert!(ok, "Pod {name}: {out}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (ok, out) = kubectl(
            kubeconfig,
            &["exec", name, "--", "cat", "/etc/hostname"],
            None,
        );
        if ok && out.trim() == name {
            return;
        }
        assert!(Instant::now() < deadline, "Pod {name} never ran: {out}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn dev_node_starts_clean_after_kill_9_and_leaves_the_machine_as_found() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "dev_node_starts_clean_after_kill_9_and_leaves_the_machine_as_found: skipped: the node needs root"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The baseline is a machine without a node: a run of this test that died half-way
    // (its node killed) must not become the state the next run compares against.
    canopy::dev::node::clean_leftovers().expect("cleaning an earlier node's leftovers");
    let before = machine_state();

    let mut first = start_dev(dir.path(), 1);
    eprintln!(
        "canopy dev --node ready in {:.1} s",
        first.ready_after.as_secs_f64()
    );
    pod_runs(&first.kubeconfig, "first");
    // kill -9: canopy dev cannot clean up; its direct children die with it
    // (PR_SET_PDEATHSIG), but containerd's shims and the Pods they hold survive.
    first.child.kill().expect("SIGKILL");
    let _ = first.child.wait();
    let leftovers: Vec<String> = machine_state()
        .into_iter()
        .filter(|line| !before.contains(line))
        .collect();
    eprintln!(
        "after kill -9, {} lines of machine state differ, e.g. {:?}",
        leftovers.len(),
        leftovers.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        !leftovers.is_empty(),
        "kill -9 left nothing behind: the check sees nothing"
    );

    let mut second = start_dev(dir.path(), 2);
    eprintln!(
        "second start, after kill -9, ready in {:.1} s",
        second.ready_after.as_secs_f64()
    );
    pod_runs(&second.kubeconfig, "second");
    // Ctrl-C.
    let pid = nix::unistd::Pid::from_raw(second.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let stopped = Instant::now();
    loop {
        if second.child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(90),
            "canopy dev --node did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("stopped in {:.1} s", stopped.elapsed().as_secs_f64());

    let after = machine_state();
    let added: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
    let removed: Vec<&String> = before.iter().filter(|l| !after.contains(l)).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "the machine is not as found:\nadded: {added:#?}\nremoved: {removed:#?}"
    );
}
