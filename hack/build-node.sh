#!/usr/bin/env bash
# Builds what a local node needs besides the control plane, into caches outside the
# repository, each piece only when missing (docs/development.md, "The node"):
#   - kubelet, kube-scheduler and kube-proxy from the same throwaway k8s.io/kubernetes
#     module as the control plane (hack/build-envtest.sh must have run first),
#   - kube-router (NetworkPolicy), pinned, from the Go module proxy,
#   - a static pause binary for the sandbox image (hack/pause.c).
# Prints the node cache directory.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.36.3}"
KUBE_ROUTER_VERSION="${KUBE_ROUTER_VERSION:-2.1.0}"
CACHE="${CANOPY_CACHE:-$HOME/.cache/canopy}"
BIN_DIR="$CACHE/envtest/k8s-$K8S_VERSION"
NODE_DIR="$CACHE/node"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf 'build-node: %s\n' "$*" >&2; }

command -v go >/dev/null 2>&1 || { log "go is not installed (make tools)"; exit 1; }
mkdir -p "$NODE_DIR" "$BIN_DIR"
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

build_kube_node() {
  local missing=0
  for b in kubelet kube-scheduler kube-proxy; do
    [[ -x "$BIN_DIR/$b" ]] || missing=1
  done
  if [[ $missing == 0 ]]; then
    log "kubelet, kube-scheduler, kube-proxy cached in $BIN_DIR"
    return
  fi
  local src="$CACHE/src/kube-$K8S_VERSION"
  if [[ ! -f "$src/go.mod" ]]; then
    log "$src/go.mod is missing: run hack/build-envtest.sh (make envtest) first"
    exit 1
  fi
  mkdir -p "$src/cmd/kubelet" "$src/cmd/kube-scheduler" "$src/cmd/kube-proxy"
  # The mains mirror upstream cmd/<name>/<name>.go.
  cat >"$src/cmd/kubelet/main.go" <<'GO'
package main

import (
	"context"
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/restclient"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	command := app.NewKubeletCommand(context.Background())
	os.Exit(cli.Run(command))
}
GO
  cat >"$src/cmd/kube-scheduler/main.go" <<'GO'
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}
GO
  cat >"$src/cmd/kube-proxy/main.go" <<'GO'
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
GO
  local minor="${K8S_VERSION#1.}"; minor="${minor%%.*}"
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$src" && go mod tidy)
  for b in kubelet kube-scheduler kube-proxy; do
    if [[ ! -x "$BIN_DIR/$b" ]]; then
      log "building $b v$K8S_VERSION"
      (cd "$src" && go build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/$b.tmp" "./cmd/$b")
      mv "$BIN_DIR/$b.tmp" "$BIN_DIR/$b"
    fi
  done
}

build_kube_router() {
  local out="$NODE_DIR/kube-router-v$KUBE_ROUTER_VERSION"
  if [[ -x "$out/kube-router" ]]; then
    log "kube-router v$KUBE_ROUTER_VERSION cached in $out"
    return
  fi
  # kube-router's go.mod has no replace directives, so `go install` of the pinned
  # version reproduces upstream's build; GOBIN keeps it out of ~/go/bin.
  log "building kube-router v$KUBE_ROUTER_VERSION (about 4 minutes cold)"
  mkdir -p "$out.tmp"
  GOBIN="$out.tmp" go install -trimpath \
    -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=v$KUBE_ROUTER_VERSION" \
    "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@v$KUBE_ROUTER_VERSION"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_pause() {
  local out="$NODE_DIR/pause"
  local sum; sum="$(sha256sum "$HERE/pause.c" | cut -c1-12)"
  if [[ -x "$out/pause" && "$(cat "$out/source.sha256" 2>/dev/null)" == "$sum" ]]; then
    log "pause cached in $out"
    return
  fi
  command -v gcc >/dev/null 2>&1 || { log "gcc is needed for the pause binary (apt-get install gcc libc6-dev)"; exit 1; }
  mkdir -p "$out"
  gcc -Os -static -Wall -o "$out/pause.tmp" "$HERE/pause.c"
  strip "$out/pause.tmp" 2>/dev/null || true
  mv "$out/pause.tmp" "$out/pause"
  echo "$sum" >"$out/source.sha256"
}

case "${1:-all}" in
  pause) build_pause ;;
  kube-router) build_kube_router ;;
  kube) build_kube_node ;;
  all) build_pause; build_kube_router; build_kube_node ;;
  *) log "unknown part $1 (pause, kube-router, kube, all)"; exit 2 ;;
esac
echo "$NODE_DIR"
