#!/usr/bin/env bash
# Builds HNC's manager (sigs.k8s.io/hierarchical-namespaces/cmd/manager), pinned, from the
# Go module proxy into a cache outside the repository, for `make bench-compare`
# (benches/compare.rs). Skips everything that is already there. Prints the directory
# holding `manager` and `crds/` (HNC's CRDs from the module's config/crd/bases).
#
# The module zip on the proxy keeps only vendor/modules.txt of HNC's vendor tree, so
# `-mod=vendor` cannot build it; instead the module's own source is copied out of the
# module cache and built as the main module with -mod=mod, which resolves every
# dependency at exactly the versions of HNC's go.mod and checks them against its go.sum.
set -euo pipefail

HNC_VERSION="${HNC_VERSION:-1.1.0}"
CACHE="${CANOPY_CACHE:-$HOME/.cache/canopy}"
OUT="$CACHE/hnc-v$HNC_VERSION"
MODULE="sigs.k8s.io/hierarchical-namespaces"

log() { printf 'build-hnc: %s\n' "$*" >&2; }

if [[ -x "$OUT/manager" && -f "$OUT/crds/hnc.x-k8s.io_hierarchyconfigurations.yaml" ]]; then
  log "HNC v$HNC_VERSION cached in $OUT"
  echo "$OUT"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  log "go is not installed; install Go >= 1.26 (https://go.dev/dl) and retry"
  exit 1
fi

# HNC's go.mod says go 1.20: build with the installed toolchain, never fetch another.
export GOTOOLCHAIN=local
export CGO_ENABLED=0

mkdir -p "$CACHE"
log "downloading $MODULE@v$HNC_VERSION"
dir="$(cd "$CACHE" && GOFLAGS=-mod=mod go mod download -json "$MODULE@v$HNC_VERSION" |
  awk -F'"' '$2=="Dir" {print $4; exit}')"
if [[ -z "$dir" || ! -f "$dir/go.mod" ]]; then
  log "go mod download gave no module directory for $MODULE@v$HNC_VERSION"
  exit 1
fi

src="$CACHE/src/hnc-v$HNC_VERSION"
rm -rf "$src"
mkdir -p "$(dirname "$src")"
cp -r "$dir" "$src"
chmod -R u+w "$src"
rm -rf "$src/vendor"

mkdir -p "$OUT/crds"
log "building HNC's manager v$HNC_VERSION (about 2 minutes on 2 cores with a cold module cache)"
(cd "$src" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$OUT/manager.tmp" ./cmd/manager)
cp "$src"/config/crd/bases/*.yaml "$OUT/crds/"
mv "$OUT/manager.tmp" "$OUT/manager"
echo "v$HNC_VERSION" >"$OUT/version"
log "HNC v$HNC_VERSION built into $OUT"
echo "$OUT"
