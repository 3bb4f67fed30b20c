#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kubectl)
# from the Go module proxy into a cache outside the repository, keyed by version.
# Skips everything that is already there. See docs/development.md for the recipe.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-}"
CACHE="${CANOPY_CACHE:-$HOME/.cache/canopy}"
BIN_DIR="$CACHE/envtest/k8s-$K8S_VERSION"
STAGING_VERSION="v0.${K8S_VERSION#1.}"

# Every k8s.io staging module of the 1.36 tree; k8s.io/kubernetes requires them at v0.0.0
# and maps them to ./staging, which only works inside its own repository.
STAGING_MODULES=(
  api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager
  cri-api cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice
  externaljwt kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl
  kubelet metrics mount-utils pod-security-admission sample-apiserver sample-cli-plugin
  sample-controller streaming
)

log() { printf 'build-envtest: %s\n' "$*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "go is not installed; install Go >= 1.26 (https://go.dev/dl) and retry"
  exit 1
fi

mkdir -p "$BIN_DIR"
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

build_kube() {
  local missing=0
  for b in kube-apiserver kube-controller-manager kubectl; do
    [[ -x "$BIN_DIR/$b" ]] || missing=1
  done
  if [[ $missing == 0 ]]; then
    log "kubernetes $K8S_VERSION binaries cached in $BIN_DIR"
    return
  fi
  local src="$CACHE/src/kube-$K8S_VERSION"
  mkdir -p "$src/cmd/kube-apiserver" "$src/cmd/kube-controller-manager" "$src/cmd/kubectl"
  {
    echo "module canopy.dev/envtest/kube"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo
    echo "replace ("
    for m in "${STAGING_MODULES[@]}"; do
      echo "	k8s.io/$m => k8s.io/$m $STAGING_VERSION"
    done
    echo ")"
  } >"$src/go.mod"
  # The three mains mirror upstream cmd/<name>/<name>.go.
  write_main "$src/cmd/kube-apiserver/main.go" "k8s.io/kubernetes/cmd/kube-apiserver/app" "app.NewAPIServerCommand()"
  write_main "$src/cmd/kube-controller-manager/main.go" "k8s.io/kubernetes/cmd/kube-controller-manager/app" "app.NewControllerManagerCommand()"
  cat >"$src/cmd/kubectl/main.go" <<'GO'
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
GO
  local minor="${K8S_VERSION#1.}"; minor="${minor%%.*}"
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "resolving k8s.io/kubernetes v$K8S_VERSION (first run downloads ~1 GB of modules)"
  (cd "$src" && go mod tidy)
  for b in kube-apiserver kube-controller-manager kubectl; do
    if [[ ! -x "$BIN_DIR/$b" ]]; then
      log "building $b v$K8S_VERSION (several minutes on 2 cores the first time)"
      (cd "$src" && go build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/$b.tmp" "./cmd/$b")
      mv "$BIN_DIR/$b.tmp" "$BIN_DIR/$b"
    fi
  done
}

write_main() {
  cat >"$1" <<GO
package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"$2"
)

func main() {
	os.Exit(cli.Run($3))
}
GO
}

etcd_version() {
  if [[ -n "$ETCD_VERSION" ]]; then echo "$ETCD_VERSION"; return; fi
  # Pair etcd with the client version this Kubernetes release was built against.
  local gomod
  gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/v$K8S_VERSION.mod"
  [[ -f "$gomod" ]] || (cd "$CACHE" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" >/dev/null)
  awk '$1=="go.etcd.io/etcd/client/v3" {print $2; exit}' "$gomod"
}

build_etcd() {
  local ver; ver="$(etcd_version)"
  ver="${ver#v}"
  if [[ -x "$BIN_DIR/etcd" ]]; then
    log "etcd cached in $BIN_DIR"
    return
  fi
  local src="$CACHE/src/etcd-$ver"
  mkdir -p "$src"
  cat >"$src/go.mod" <<MOD
module canopy.dev/envtest/etcd

go 1.26

require go.etcd.io/etcd/server/v3 v$ver
MOD
  cat >"$src/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
GO
  log "building etcd v$ver"
  (cd "$src" && go mod tidy && go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd.tmp" .)
  mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
  echo "$ver" >"$BIN_DIR/etcd.version"
}

build_etcd
build_kube
echo "$BIN_DIR"
