//! kubelet, configured for this machine (see docs/development.md, "The node").

use std::path::{Path, PathBuf};

use super::network::NODE_IP;
use super::{NODE_NAME, NodeError};

pub struct Kubelet {
    root_dir: PathBuf,
    config: PathBuf,
    containerd_socket: PathBuf,
}

impl Kubelet {
    pub fn new(node_root: &Path, containerd_socket: &Path) -> Self {
        Self {
            root_dir: node_root.join("kubelet"),
            config: node_root.join("kubelet-config.yaml"),
            containerd_socket: containerd_socket.to_owned(),
        }
    }

    /// The KubeletConfiguration. What this machine needs, and why:
    /// - `cgroupDriver: cgroupfs`, `failCgroupV1: false`: the machine has cgroup v1
    ///   hierarchies and no systemd managing them; 1.36 refuses v1 unless told.
    /// - `failSwapOn: false`: do not depend on the machine's swap.
    /// - the node's address for the kubelet's server, read-only port and healthz off: nothing
    ///   listens on the machine's real interfaces.
    /// - x509 client CA + webhook authorization: the apiserver authenticates with its
    ///   client certificate for `exec` and `logs`.
    /// - eviction and image GC thresholds that never trigger: a busy development disk must
    ///   not evict the test Pods or delete the local images (they cannot be pulled again).
    pub fn write_config(&self, client_ca: &Path) -> Result<(), NodeError> {
        let config = format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {NODE_IP}
port: 10250
readOnlyPort: 0
healthzPort: 0
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{socket}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization:
  mode: Webhook
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
registerNode: true
maxPods: 110
podPidsLimit: 4096
resolvConf: /etc/resolv.conf
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
localStorageCapacityIsolation: true
shutdownGracePeriod: 0s
",
            socket = self.containerd_socket.display(),
            ca = client_ca.display(),
        );
        std::fs::write(&self.config, config).map_err(|e| NodeError::io(&self.config, e))
    }

    pub fn args(&self, kubeconfig: &Path) -> Vec<String> {
        vec![
            format!("--config={}", self.config.display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--root-dir={}", self.root_dir.display()),
            format!("--cert-dir={}", self.root_dir.join("pki").display()),
            format!("--hostname-override={NODE_NAME}"),
            // The apiserver and kube-router refuse a loopback node IP.
            format!("--node-ip={NODE_IP}"),
            "--v=1".to_owned(),
        ]
    }
}
