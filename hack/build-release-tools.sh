#!/usr/bin/env bash
# What `make release` needs beyond `make test`'s tools, installed when missing:
#   - cargo-cyclonedx (the SBOM), built with `cargo install --locked` into a cache outside
#     the repository keyed by version, as hack/build-helm.sh does for helm;
#   - for each cross target of the plugin: its Rust standard library (rustup) and, for
#     x86_64-pc-windows-gnu, the MinGW linker (Debian's gcc-mingw-w64-x86-64-posix).
# Prints the cargo-cyclonedx binary's path.
set -euo pipefail

CYCLONEDX_VERSION="${CYCLONEDX_VERSION:-0.5.9}"
CACHE="${CANOPY_CACHE:-$HOME/.cache/canopy}"
ROOT="$CACHE/tools/cargo-cyclonedx-$CYCLONEDX_VERSION"
BIN="$ROOT/bin/cargo-cyclonedx"
HOST_TARGET=$(rustc -vV | sed -n 's/^host: //p')

log() { printf 'build-release-tools: %s\n' "$*" >&2; }

as_root() {
  if [[ $(id -u) == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; exit 1; fi
}

if [[ ! -x $BIN ]]; then
  log "building cargo-cyclonedx $CYCLONEDX_VERSION into $ROOT (a few minutes, once)"
  # Its own target directory: the build must not share canopy's (different features).
  cargo install --locked --quiet cargo-cyclonedx --version "$CYCLONEDX_VERSION" --root "$ROOT"
fi

for target in ${PLUGIN_TARGETS:-} ${CHECK_TARGETS:-}; do
  [[ $target == "$HOST_TARGET" ]] && continue
  if ! command -v rustup >/dev/null; then
    log "rustup is missing: install the Rust standard library for $target, or leave it out of PLUGIN_TARGETS/CHECK_TARGETS"
    exit 1
  fi
  if ! rustup target list --installed | grep -qx "$target"; then
    log "adding the Rust target $target"
    rustup target add "$target" >&2
  fi
done

for target in ${PLUGIN_TARGETS:-}; do
  if [[ $target == x86_64-pc-windows-gnu ]] && ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
    log "installing the MinGW cross compiler (ring's C code and the link of kubectl-canopy.exe)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq gcc-mingw-w64-x86-64-posix >/dev/null
  fi
done

if [[ -n ${CHECK_TARGETS:-} ]] && ! command -v clang-14 >/dev/null && ! command -v clang >/dev/null; then
  log "installing clang (ring's C code for the macOS check)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends clang-14 >/dev/null
fi

echo "$BIN"
