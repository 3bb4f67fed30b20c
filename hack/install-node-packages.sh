#!/usr/bin/env bash
# Installs the Debian packages the local node needs (containerd, runc, the CNI plugins,
# ipset, iptables, busybox-static, conntrack, iproute2), only those that are missing, and
# only as root: the node itself needs root, so without it there is nothing to install for.
set -euo pipefail

PACKAGES=(containerd runc containernetworking-plugins ipset iptables busybox-static conntrack iproute2)

log() { printf 'install-node-packages: %s\n' "$*" >&2; }

if [[ $(id -u) != 0 ]]; then
  log "not root: skipping (the node needs root; the control plane works without it)"
  exit 0
fi
if ! command -v dpkg-query >/dev/null 2>&1; then
  log "not a Debian-like system: install ${PACKAGES[*]} by hand"
  exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if [[ ${#missing[@]} == 0 ]]; then
  exit 0
fi
log "installing: ${missing[*]}"
apt-get update -qq
# containerd's package starts a system containerd under systemd where there is one; the
# node runs its own containerd with its own socket and does not use it.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
