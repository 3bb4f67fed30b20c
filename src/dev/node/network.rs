//! The node's network: one bridge holding the node's address, a CNI conflist of its own,
//! the sysctls Pod networking needs, and a guard that keeps Pod traffic on the bridge.
//!
//! Pods get addresses in `POD_CIDR` on the bridge `BRIDGE`, whose own address
//! (`NODE_IP`) is the node's InternalIP: the apiserver and kube-router refuse a loopback
//! node IP, and an address on a bridge the harness owns exposes nothing on the machine's
//! real interfaces. Pods have routes to the Pod and Service ranges only, no default route,
//! and the guard chain drops anything forwarded between the bridge and another interface:
//! no Pod traffic leaves the machine.

use std::net::Ipv4Addr;
use std::path::Path;

use super::NodeError;
use super::cmd;

/// The bridge the CNI plugin attaches Pods to.
pub const BRIDGE: &str = "canopy0";
/// The node's InternalIP, the bridge's address and the Pods' gateway.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
pub const POD_CIDR: &str = "10.244.0.0/24";
/// The control plane's Service range (kube-apiserver `--service-cluster-ip-range`).
pub const SERVICE_CIDR: &str = "10.0.0.0/24";
/// The iptables chain (filter table) that keeps forwarded traffic on the bridge.
pub const GUARD_CHAIN: &str = "CANOPY-NODE-GUARD";
/// The CNI network's name (host-local and libcni key their state by it).
pub const CNI_NETWORK: &str = "canopy";

/// Sysctls the node sets; their previous values are saved and restored (cleanup.rs).
/// bridge-nf-call-iptables makes bridged Pod-to-Pod traffic pass iptables, where
/// kube-router's NetworkPolicy chains and kube-proxy's Service rules are; ip_forward lets
/// a Pod reach another Pod through a Service; kubelet sets the vm/kernel ones itself
/// (its kernel tunables), so they are saved to be put back.
pub const SYSCTLS: &[(&str, Option<&str>)] = &[
    ("net/bridge/bridge-nf-call-iptables", Some("1")),
    ("net/bridge/bridge-nf-call-ip6tables", Some("1")),
    ("net/ipv4/ip_forward", Some("1")),
    ("net/ipv4/conf/all/route_localnet", None),
    ("vm/overcommit_memory", None),
    ("vm/panic_on_oom", None),
    ("kernel/panic", None),
    ("kernel/panic_on_oops", None),
    ("kernel/keys/root_maxkeys", None),
    ("kernel/keys/root_maxbytes", None),
];

/// Fails when the Pod or Service range overlaps a route the machine already has.
pub fn check_ranges_free() -> Result<(), NodeError> {
    let routes = cmd::run("ip", &["-4", "route", "show", "table", "all"])?;
    for line in routes.lines() {
        let Some(dst) = line.split_whitespace().next() else {
            continue;
        };
        if line.contains(&format!("dev {BRIDGE}")) {
            continue;
        }
        for ours in [POD_CIDR, SERVICE_CIDR] {
            if overlaps(dst, ours) {
                return Err(NodeError::Network(format!(
                    "the route `{line}` overlaps the node's range {ours}; \
                     the node cannot share it"
                )));
            }
        }
    }
    Ok(())
}

fn parse_cidr(cidr: &str) -> Option<(u32, u32)> {
    let (addr, len) = match cidr.split_once('/') {
        Some((a, l)) => (a, l.parse::<u32>().ok()?),
        None => (cidr, 32),
    };
    let addr: Ipv4Addr = addr.parse().ok()?;
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - len.min(32))
    };
    Some((u32::from(addr) & mask, mask))
}

/// Whether two IPv4 ranges share an address (`default` and unparsable routes do not
/// count: the node adds no default route).
fn overlaps(a: &str, b: &str) -> bool {
    match (parse_cidr(a), parse_cidr(b)) {
        (Some((na, ma)), Some((nb, mb))) => {
            let common = ma & mb;
            na & common == nb & common
        }
        _ => false,
    }
}

/// Creates the bridge with the node's address (the CNI bridge plugin adopts it), sets the
/// sysctls, and installs the guard chain.
pub fn setup() -> Result<(), NodeError> {
    cmd::run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
    cmd::run(
        "ip",
        &["addr", "add", &format!("{NODE_IP}/24"), "dev", BRIDGE],
    )?;
    cmd::run("ip", &["link", "set", BRIDGE, "up"])?;
    for (key, value) in SYSCTLS {
        if let Some(value) = value {
            write_sysctl(key, value)?;
        }
    }
    cmd::run("iptables", &["-w", "-N", GUARD_CHAIN])?;
    // Pod to Pod on the bridge passes (kube-router's chains decide); anything forwarded
    // between the bridge and another interface is dropped, both ways.
    for rule in [
        vec!["-i", BRIDGE, "-o", BRIDGE, "-j", "RETURN"],
        vec!["-i", BRIDGE, "-j", "DROP"],
        vec!["-o", BRIDGE, "-j", "DROP"],
    ] {
        let mut args = vec!["-w", "-A", GUARD_CHAIN];
        args.extend(rule);
        cmd::run("iptables", &args)?;
    }
    cmd::run(
        "iptables",
        &[
            "-w",
            "-I",
            "FORWARD",
            "1",
            "-m",
            "comment",
            "--comment",
            "canopy node: Pod traffic stays on the bridge",
            "-j",
            GUARD_CHAIN,
        ],
    )?;
    Ok(())
}

pub fn read_sysctl(key: &str) -> Option<String> {
    std::fs::read_to_string(Path::new("/proc/sys").join(key))
        .ok()
        .map(|v| v.trim().to_owned())
}

pub fn write_sysctl(key: &str, value: &str) -> Result<(), NodeError> {
    let path = Path::new("/proc/sys").join(key);
    std::fs::write(&path, value).map_err(|e| NodeError::Io {
        path: path.clone(),
        source: e,
    })
}

/// The CNI conflist: bridge + host-local (state under the node's root), no masquerading,
/// routes to the Pod and Service ranges only. containerd adds loopback itself.
pub fn conflist(ipam_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK,
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "isDefaultGateway": false,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "dataDir": ipam_dir,
                "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP.to_string()}]],
                "routes": [{"dst": SERVICE_CIDR}],
            },
        }],
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::overlaps;

    #[test]
    fn ranges_overlap_when_they_share_an_address() {
        assert!(overlaps("10.244.0.0/16", "10.244.0.0/24"));
        assert!(overlaps("10.244.0.7", "10.244.0.0/24"));
        assert!(!overlaps("192.0.2.0/24", "10.244.0.0/24"));
        assert!(!overlaps("default", "10.244.0.0/24"));
        assert!(overlaps("10.0.0.0/8", "10.0.0.0/24"));
    }
}
