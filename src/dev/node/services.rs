//! kube-scheduler, kube-proxy and kube-router's firewall: the node-side processes besides
//! kubelet and containerd.

use std::path::Path;

use super::NODE_NAME;
use super::network::{NODE_IP, POD_CIDR, SERVICE_CIDR};

/// kube-scheduler: without it a Pod that names no node stays Pending. No serving port,
/// no leader election (one replica).
pub fn scheduler_args(kubeconfig: &Path) -> Vec<String> {
    let kc = kubeconfig.display();
    vec![
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        "--secure-port=0".to_owned(),
        "--leader-elect=false".to_owned(),
        "--profiling=false".to_owned(),
    ]
}

/// kube-proxy in iptables mode: Pods reach the `kubernetes` Service and the apiserver
/// reaches webhook Services through their ClusterIPs. NodePorts only on the node's
/// address (so kube-proxy leaves `route_localnet` alone), the conntrack limits as the
/// machine has them, and its ports on the node's address only.
pub fn proxy_args(kubeconfig: &Path) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--hostname-override={NODE_NAME}"),
        "--proxy-mode=iptables".to_owned(),
        format!("--bind-address={NODE_IP}"),
        format!("--cluster-cidr={POD_CIDR}"),
        format!("--nodeport-addresses={NODE_IP}/32"),
        format!("--healthz-bind-address={NODE_IP}:10256"),
        format!("--metrics-bind-address={NODE_IP}:10249"),
        "--conntrack-max-per-core=0".to_owned(),
        "--conntrack-tcp-timeout-established=0".to_owned(),
        "--conntrack-tcp-timeout-close-wait=0".to_owned(),
        "--profiling=false".to_owned(),
        "--v=1".to_owned(),
    ]
}

/// kube-router as a NetworkPolicy firewall only: no routing, no service proxy (kube-proxy
/// does that), no CNI (the bridge plugin does that), no health or metrics port.
pub fn router_args(kubeconfig: &Path) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        "--run-firewall=true".to_owned(),
        "--run-router=false".to_owned(),
        "--run-service-proxy=false".to_owned(),
        "--enable-cni=false".to_owned(),
        "--enable-ipv6=false".to_owned(),
        format!("--hostname-override={NODE_NAME}"),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--health-port=0".to_owned(),
        "--metrics-port=0".to_owned(),
        // Policy changes are applied from watch events at once; the full resync is a safety net.
        "--iptables-sync-period=1m".to_owned(),
        "--v=1".to_owned(),
    ]
}
