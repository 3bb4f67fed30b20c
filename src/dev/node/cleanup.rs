//! Putting the machine back as the node found it, after a clean stop and, at the next
//! start, after a run that was killed (`kill -9`, a panicking test): processes in the
//! node's cgroups and containerd's shims (which outlive their parent by design), mounts
//! under the node's root, the iptables chains of kube-proxy, kube-router and the guard,
//! kube-router's ipsets, the bridge and its veths, the kubepods cgroups, the sysctls, and
//! the node's root itself.
//!
//! Every step is best effort and logs what it could not undo: a half-started node must
//! still be cleaned as far as possible.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::cmd;
use super::network::{self, BRIDGE, CNI_NETWORK};

/// The file (under the node's root) holding what the machine looked like before the first
/// start: `sysctl <key> <value>` and `absent <path>` lines.
const ORIGINAL: &str = "host.orig";

/// Paths a node creates outside its root when they are missing: libcni's cache and
/// containerd's shim sockets.
const OUTSIDE_PATHS: &[&str] = &["/var/lib/cni", "/run/containerd"];

/// Chain and ipset prefixes that belong to the node: kube-proxy and kube-router (`KUBE-`),
/// CNI plugins (`CNI-`) and the guard (`CANOPY-`).
const CHAIN_PREFIXES: &[&str] = &["KUBE-", "CNI-", "CANOPY-"];

/// Records the machine's state before the node changes it, unless a record from an earlier
/// run that was never cleaned up is there (that one has the true original values).
pub fn record_original(root: &Path) -> std::io::Result<()> {
    let path = root.join(ORIGINAL);
    if path.exists() {
        return Ok(());
    }
    let mut text = String::new();
    for (key, _) in network::SYSCTLS {
        if let Some(value) = network::read_sysctl(key) {
            text.push_str(&format!("sysctl {key} {value}\n"));
        }
    }
    for outside in OUTSIDE_PATHS {
        if !Path::new(outside).exists() {
            text.push_str(&format!("absent {outside}\n"));
        }
    }
    std::fs::create_dir_all(root)?;
    std::fs::write(path, text)
}

/// Removes everything a node (running or killed) left on the machine. `root` is the node's
/// root directory; it is removed too.
pub fn clean(root: &Path) {
    let started = Instant::now();
    kill_node_processes(root);
    unmount_under(root);
    clean_iptables("iptables");
    clean_iptables("ip6tables");
    clean_ipsets();
    clean_links();
    remove_cgroups();
    clean_cni_cache();
    restore_original(root);
    if root.exists()
        && let Err(e) = std::fs::remove_dir_all(root)
    {
        tracing::warn!(root = %root.display(), error = %e, "cannot remove the node's root");
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "node cleaned up"
    );
}

/// SIGKILLs every process in the kubepods cgroups (the containers) and every process
/// whose command line names the node's root (containerd, its shims, kubelet, kube-proxy,
/// kube-router, kube-scheduler), until none is left.
fn kill_node_processes(root: &Path) {
    let me = std::process::id();
    let root_str = root.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut pids = pods_processes();
        pids.extend(processes_naming(&root_str));
        pids.retain(|&pid| pid != me);
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            tracing::warn!(?pids, "processes of the node survive SIGKILL");
            return;
        }
        for pid in &pids {
            if let Ok(pid) = i32::try_from(*pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A kubelet that is not this node's (its command line does not name `root`).
pub fn foreign_kubelet(root: &Path) -> Option<u32> {
    let root = root.to_string_lossy().into_owned();
    let entries = std::fs::read_dir("/proc").ok()?;
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            // An exiting or zombie process (this node's own kubelet, killed with its
            // parent) has an empty command line: not a kubelet that runs.
            comm.trim() == "kubelet"
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| !c.is_empty() && !String::from_utf8_lossy(&c).contains(&root))
        })
}

fn processes_naming(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                String::from_utf8_lossy(&cmdline)
                    .split('\0')
                    .any(|arg| arg.contains(needle))
            })
        })
        .collect()
}

/// The cgroup directories kubelet creates (`kubepods` in every v1 hierarchy and in the
/// unified one), deepest first.
fn kubepods_cgroups() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return dirs;
    };
    // v1 hierarchies (and v2 mounted at .../unified) hold it one level down; a pure cgroup
    // v2 machine holds it at the top.
    let tops = hierarchies
        .flatten()
        .map(|h| h.path().join("kubepods"))
        .chain([PathBuf::from("/sys/fs/cgroup/kubepods")]);
    for top in tops {
        if top.is_dir() {
            collect_dirs(&top, &mut dirs);
        }
    }
    // Children before parents.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    dirs
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_owned());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
}

fn pods_processes() -> Vec<u32> {
    kubepods_cgroups()
        .iter()
        .filter_map(|dir| std::fs::read_to_string(dir.join("cgroup.procs")).ok())
        .flat_map(|procs| {
            procs
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn remove_cgroups() {
    for dir in kubepods_cgroups() {
        if let Err(e) = std::fs::remove_dir(&dir) {
            tracing::warn!(cgroup = %dir.display(), error = %e, "cannot remove a cgroup");
        }
    }
}

/// Unmounts (lazily, deepest first) everything mounted under `root`: overlay snapshots,
/// Pod volumes (tmpfs, projected tokens), network namespaces.
fn unmount_under(root: &Path) {
    let Ok(canonical) = std::fs::canonicalize(root) else {
        return;
    };
    let prefix = canonical.to_string_lossy().into_owned();
    for _ in 0..5 {
        let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let mut points: Vec<String> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(unescape_mount_path)
            .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
            .collect();
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
        points.dedup();
        for point in points {
            if let Err(e) = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH) {
                tracing::debug!(mount = point, error = %e, "cannot unmount");
            }
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mount_path(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&raw[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_ours(chain: &str) -> bool {
    CHAIN_PREFIXES.iter().any(|p| chain.starts_with(p))
}

/// The `iptables-save` text without the node's chains and without every rule that is in
/// them, jumps to them or matches one of the node's ipsets; `None` when there are none.
pub fn without_node_chains(saved: &str) -> Option<String> {
    let mut changed = false;
    let mut kept = Vec::new();
    for line in saved.lines() {
        let drop = if let Some(decl) = line.strip_prefix(':') {
            decl.split_whitespace().next().is_some_and(is_ours)
        } else if line.starts_with("-A ") || line.starts_with("-I ") {
            let words: Vec<&str> = line.split_whitespace().collect();
            words.get(1).is_some_and(|c| is_ours(c))
                || words.windows(2).any(|w| {
                    matches!(w[0], "-j" | "-g" | "--jump" | "--goto" | "--match-set")
                        && (is_ours(w[1]) || is_ours_ipset(w[1]))
                })
        } else {
            false
        };
        if drop {
            changed = true;
        } else {
            kept.push(line);
        }
    }
    changed.then(|| kept.join("\n") + "\n")
}

fn clean_iptables(family: &str) {
    let save = format!("{family}-save");
    let restore = format!("{family}-restore");
    if !cmd::exists(&save) {
        return;
    }
    let saved = match cmd::run(&save, &[]) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the {family} rules");
            return;
        }
    };
    if let Some(cleaned) = without_node_chains(&saved)
        && let Err(e) = cmd::run_with_stdin(&restore, &["-w"], Some(&cleaned))
    {
        tracing::warn!(error = %e, "cannot remove the node's {family} chains");
    }
}

fn is_ours_ipset(name: &str) -> bool {
    let name = name.strip_prefix("inet6:").unwrap_or(name);
    let lower = name.to_ascii_lowercase();
    lower.starts_with("kube-") || lower.starts_with("canopy-")
}

fn clean_ipsets() {
    if !cmd::exists("ipset") {
        return;
    }
    let Ok(names) = cmd::run("ipset", &["list", "-n"]) else {
        return;
    };
    let ours: Vec<&str> = names.lines().filter(|n| is_ours_ipset(n)).collect();
    // Flush all first: a list set may reference another set, which then cannot go.
    for name in &ours {
        let _ = cmd::run("ipset", &["flush", name]);
    }
    for name in &ours {
        if let Err(e) = cmd::run("ipset", &["destroy", name]) {
            tracing::warn!(ipset = name, error = %e, "cannot destroy an ipset");
        }
    }
}

/// The veths still attached to the bridge (their Pod's namespace was not deleted), then
/// the bridge itself.
fn clean_links() {
    if let Ok(links) = cmd::run("ip", &["-o", "link", "show", "master", BRIDGE]) {
        for line in links.lines() {
            // "12: veth1234@if3: <...>"
            if let Some(name) = line.split(':').nth(1) {
                let name = name.trim().split('@').next().unwrap_or_default();
                let _ = cmd::run("ip", &["link", "delete", name]);
            }
        }
    }
    if Path::new("/sys/class/net").join(BRIDGE).exists()
        && let Err(e) = cmd::run("ip", &["link", "delete", BRIDGE])
    {
        tracing::warn!(error = %e, "cannot delete the bridge");
    }
}

/// libcni caches each attachment's result in /var/lib/cni/results, named after the
/// network.
fn clean_cni_cache() {
    let results = Path::new("/var/lib/cni/results");
    if let Ok(entries) = std::fs::read_dir(results) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{CNI_NETWORK}-"))
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn restore_original(root: &Path) {
    let Ok(text) = std::fs::read_to_string(root.join(ORIGINAL)) else {
        return;
    };
    for line in text.lines() {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("sysctl"), Some(key), Some(value)) => {
                if let Err(e) = network::write_sysctl(key, value) {
                    tracing::warn!(key, error = %e, "cannot restore a sysctl");
                }
            }
            (Some("absent"), Some(path), None) => {
                let path = Path::new(path);
                if path.exists()
                    && let Err(e) = std::fs::remove_dir_all(path)
                {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove");
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_chains_and_the_rules_using_them_go() {
        let saved = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n\
                     :KUBE-ROUTER-FORWARD - [0:0]\n:CANOPY-NODE-GUARD - [0:0]\n:OTHER - [0:0]\n\
                     -A FORWARD -j CANOPY-NODE-GUARD\n-A FORWARD -j KUBE-ROUTER-FORWARD\n\
                     -A FORWARD -m set --match-set kube-router-local-ips dst -j ACCEPT\n\
                     -A FORWARD -j OTHER\n-A KUBE-ROUTER-FORWARD -j ACCEPT\nCOMMIT\n";
        let cleaned = without_node_chains(saved).expect("changed");
        assert_eq!(
            cleaned,
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OTHER - [0:0]\n\
             -A FORWARD -j OTHER\nCOMMIT\n"
        );
        assert_eq!(without_node_chains(&cleaned), None);
    }

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path(r"/a\040b"), "/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
    }
}
