#!/usr/bin/env bash
# Builds the helm CLI from the Go module proxy into a cache outside the repository, keyed
# by version, as hack/build-envtest.sh builds the control plane. Prints the binary's path.
# `make test` uses it to render and lint helm/canopy; nothing else needs helm.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-3.22.0}"
HELM_VERSION="${HELM_VERSION#v}"
CACHE="${CANOPY_CACHE:-$HOME/.cache/canopy}"
BIN_DIR="$CACHE/tools/helm-$HELM_VERSION"
BIN="$BIN_DIR/helm"

log() { printf 'build-helm: %s\n' "$*" >&2; }

if [[ -x "$BIN" ]]; then
  log "helm v$HELM_VERSION cached in $BIN_DIR"
  echo "$BIN"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  log "go is not installed; install Go >= 1.21 (https://go.dev/dl) and retry"
  exit 1
fi

export GOFLAGS=-mod=mod
export CGO_ENABLED=0

src="$CACHE/src/helm-$HELM_VERSION"
mkdir -p "$src" "$BIN_DIR"
# A throwaway module that requires helm and builds its own cmd/helm package. Replace
# directives of a dependency are ignored, so any that helm's go.mod has are copied in.
cat >"$src/go.mod" <<MOD
module canopy.dev/tools/helm

go 1.26

require helm.sh/helm/v3 v$HELM_VERSION
MOD
cat >"$src/tools.go" <<'GO'
//go:build tools

package tools

import _ "helm.sh/helm/v3/cmd/helm"
GO

gomod="$(go env GOMODCACHE)/cache/download/helm.sh/helm/v3/@v/v$HELM_VERSION.mod"
[[ -f "$gomod" ]] || (cd "$src" && go mod download -json "helm.sh/helm/v3@v$HELM_VERSION" >/dev/null)
# Single-line (`replace a => b v`) and block (`replace (` ... `)`) forms.
replaces="$(awk '
  /^replace \(/ {inblock=1; next}
  inblock && /^\)/ {inblock=0; next}
  inblock && NF {print; next}
  /^replace / {sub(/^replace /, ""); print}
' "$gomod")"
if [[ -n "$replaces" ]]; then
  log "copying helm's replace directives"
  { echo; echo "replace ("; sed 's/^[[:space:]]*/\t/' <<<"$replaces"; echo ")"; } >>"$src/go.mod"
fi

log "resolving helm.sh/helm/v3 v$HELM_VERSION"
(cd "$src" && go mod tidy)
# The same -X flags as helm's own Makefile: the version, and the Kubernetes version that
# `helm template` reports as .Capabilities.KubeVersion and `helm lint` checks deprecations
# against (v1.N for the k8s.io/client-go v0.N that helm is built with).
client_go="$(cd "$src" && go list -f '{{.Version}}' -m k8s.io/client-go)"
client_go="${client_go#v0.}"
kube_minor="${client_go%%.*}"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kube_minor"
done
log "building helm v$HELM_VERSION (a minute or two on 2 cores)"
(cd "$src" && go build -trimpath -ldflags "$ldflags" -o "$BIN.tmp" helm.sh/helm/v3/cmd/helm)
mv "$BIN.tmp" "$BIN"
echo "$BIN"
