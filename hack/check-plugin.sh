#!/usr/bin/env bash
# `cargo check` of kubectl-canopy for targets whose binaries cannot be linked here
# (`make release` runs it for CHECK_TARGETS, default x86_64-apple-darwin): it proves that
# the plugin and the library it links compile for that OS, i.e. that no Linux-only code
# is reachable without a cfg gate.
#
# A check still runs build scripts, and ring's compiles C for the target. clang can target
# macOS, but Apple's SDK headers cannot be installed on Linux: ring's C needs only
# TargetConditionals.h, assert.h and string.h, so stand-ins for those three
# (hack/macos-check/) and clang's own freestanding headers are used. Nothing compiled with
# them is linked or run.
set -euo pipefail
cd "$(dirname "$0")/.."

cc=$(command -v clang-14 || command -v clang || true)
[[ -n $cc ]] || { echo "check-plugin: clang is missing (hack/build-release-tools.sh installs it)" >&2; exit 1; }
builtin="$("$cc" -print-resource-dir)/include"

for target in "$@"; do
  var=${target//-/_}
  cflags=""
  if [[ $target == *-apple-darwin ]]; then
    cflags="-ffreestanding -nostdinc -isystem $PWD/hack/macos-check -isystem $builtin"
  fi
  echo "cargo check --release --bin kubectl-canopy --target $target"
  env "CC_$var=$cc" "CFLAGS_$var=$cflags" \
    cargo check --release --quiet --bin kubectl-canopy --target "$target"
done
