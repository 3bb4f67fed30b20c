#!/usr/bin/env bash
# Installs what `make test` needs and a fresh machine may lack. Idempotent and quiet
# when everything is present.
set -euo pipefail

log() { printf 'install-tools: %s\n' "$*" >&2; }

as_root() {
  if [[ $(id -u) == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; exit 1; fi
}

apt_install() {
  log "installing Debian packages: $*"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# Go builds the control plane. Any Go >= 1.21 will do: the build modules say `go 1.26`,
# and the go command then fetches that toolchain from the module proxy by itself.
if ! command -v go >/dev/null 2>&1; then
  apt_install golang-go ca-certificates
fi

for tool in gcc git; do
  command -v "$tool" >/dev/null 2>&1 || apt_install build-essential git
done

if ! command -v cargo >/dev/null 2>&1; then
  log "cargo is missing: install Rust with rustup (https://rustup.rs), then rerun"
  exit 1
fi

if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
      log "adding rustup component $component"
      rustup component add "$component"
    fi
  done
fi
