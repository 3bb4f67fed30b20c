//! containerd as a plain process with its own config, root, state and socket under the
//! node's root: nothing under /etc, and no clash with a containerd the machine may run.

use std::path::{Path, PathBuf};

use super::NodeError;

/// A second runtime handler, the same runc under another name: what a sandboxed runtime
/// (gVisor's `runsc`, Kata) looks like to Kubernetes, so a RuntimeClass and the tenants'
/// `runtimeClasses` guardrail can be tried on a real node without either installed.
pub const SANDBOX_HANDLER: &str = "canopy-sandbox";

pub struct Containerd {
    pub config: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub cni_conf_dir: PathBuf,
    runc_root: PathBuf,
}

impl Containerd {
    pub fn new(node_root: &Path) -> Self {
        let dir = node_root.join("containerd");
        Self {
            config: dir.join("config.toml"),
            root: dir.join("root"),
            state: dir.join("state"),
            socket: dir.join("containerd.sock"),
            cni_conf_dir: node_root.join("cni").join("net.d"),
            runc_root: dir.join("runc"),
        }
    }

    pub fn args(&self) -> Vec<String> {
        vec!["--config".into(), self.config.display().to_string()]
    }

    /// The config (version 2, containerd 1.6). Each setting is there for a reason:
    /// - `restrict_oom_score_adj`: without it runc cannot lower its own oom_score_adj in
    ///   this VM and every sandbox fails ("can't get final child's PID from pipe: EOF").
    /// - `sandbox_image`: a local image, since nothing can be pulled.
    /// - `netns_mounts_under_state_dir`, runc's `Root`: Pod network namespaces and runc's
    ///   state under the node's root instead of /run, so cleanup finds them all.
    /// - cgroupfs, not systemd: kubelet runs with `cgroupDriver: cgroupfs`.
    /// - the stream server on loopback: `kubectl exec` goes apiserver → kubelet →
    ///   containerd on 127.0.0.1 only.
    /// - [`SANDBOX_HANDLER`]: runc again, registered under a second name, for RuntimeClasses
    ///   (same runc `Root`, so cleanup finds its containers with the others).
    pub fn write_config(&self, sandbox_image: &str) -> Result<(), NodeError> {
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc_root}"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{sandbox}]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{sandbox}.options]
        SystemdCgroup = false
        Root = "{runc_root}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf_dir}"
    max_conf_num = 1
"#,
            root = self.root.display(),
            state = self.state.display(),
            socket = self.socket.display(),
            opt = self.root.join("opt").display(),
            runc_root = self.runc_root.display(),
            sandbox = SANDBOX_HANDLER,
            cni_conf_dir = self.cni_conf_dir.display(),
        );
        if let Some(parent) = self.config.parent() {
            std::fs::create_dir_all(parent).map_err(|e| NodeError::io(parent, e))?;
        }
        std::fs::write(&self.config, config).map_err(|e| NodeError::io(&self.config, e))
    }
}
