#!/usr/bin/env bash
# `make release`: canopy's release artefacts in $DIST (default dist/), without Docker.
#
#   canopy-$V.oci.tar                      the image (`canopy image`, the recipe of `make image`)
#   canopy-$V.sbom.cdx.json                its SBOM, CycloneDX 1.5 JSON (cargo-cyclonedx)
#   canopy-$V.tgz                          the packaged Helm chart (CRDs in crds/)
#   canopy-crds-$V.yaml                    every CRD in one file, for upgrades (docs/upgrading.md)
#   kubectl-canopy_$V_<os>_<arch>.tar.gz   the plugin, one archive per PLUGIN_TARGETS entry
#   canopy.yaml                            the krew plugin manifest for those archives
#   SHA256SUMS                             sha256sum(1) lines for every file above
#
# The binaries must already be built (the Makefile does it: `cargo build --release` per
# target). Inputs, from the environment:
#   CARGO_TARGET_DIR   where cargo put the binaries (required)
#   CANOPY_HELM        the helm binary (hack/build-helm.sh)
#   CARGO_CYCLONEDX    the cargo-cyclonedx binary (hack/build-release-tools.sh)
#   PLUGIN_TARGETS     Rust target triples of the plugin archives (default: the host's)
#   IMAGE_REPOSITORY   the image's repository (default `canopy`, the chart's default)
#   RELEASE_URL        where the archives will be downloadable (the krew manifest's uris;
#                      the default is a placeholder until the project has a public home)
#   RELEASE_HOMEPAGE   the krew manifest's homepage (a placeholder too)
#   SOURCE_DATE_EPOCH  the timestamp of every archive entry (default: the commit's time)
#   DIST               the output directory (default dist/)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'release: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

: "${CARGO_TARGET_DIR:?CARGO_TARGET_DIR is not set: run through make release}"
: "${CANOPY_HELM:?CANOPY_HELM is not set: run through make release (hack/build-helm.sh)}"
: "${CARGO_CYCLONEDX:?CARGO_CYCLONEDX is not set: run through make release}"
HOST_TARGET=$(rustc -vV | sed -n 's/^host: //p')
PLUGIN_TARGETS=${PLUGIN_TARGETS:-$HOST_TARGET}
IMAGE_REPOSITORY=${IMAGE_REPOSITORY:-canopy}
DIST=${DIST:-dist}
# Commit time, so rebuilding the same commit gives the same archives; 0 outside git.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
export SOURCE_DATE_EPOCH

canopy="$CARGO_TARGET_DIR/release/canopy"
[[ -x $canopy ]] || die "$canopy is missing: cargo build --release --bin canopy"
# `canopy --version` prints "canopy 0.1.0": the version of Cargo.toml.
VERSION=$("$canopy" --version | awk '{print $2}')
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || die "unexpected version '$VERSION' from $canopy --version"
chart_version=$(sed -n 's/^version: *//p' helm/canopy/Chart.yaml)
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' helm/canopy/Chart.yaml)
[[ $chart_version == "$VERSION" && $app_version == "$VERSION" ]] ||
  die "helm/canopy/Chart.yaml says version $chart_version, appVersion $app_version; Cargo.toml says $VERSION"
RELEASE_URL=${RELEASE_URL:-https://github.com/canopy-dev/canopy/releases/download/v$VERSION}

rm -rf "$DIST"
mkdir -p "$DIST"
log "canopy $VERSION into $DIST/ (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"

# The image: the same code as `make image`, from the release binary.
"$canopy" image --binary "$canopy" --name "$IMAGE_REPOSITORY:$VERSION" \
  --output "$DIST/canopy-$VERSION.oci.tar" >/dev/null

# The SBOM of the canopy package: every crate in the binaries' dependency graph for the
# image's target, without build-only dependencies. cargo-cyclonedx writes it beside
# Cargo.toml and stamps it with SOURCE_DATE_EPOCH; the checkout's absolute path in its
# bom-refs is replaced by `.`, and a serial number derived from the version is added, so
# the same commit gives the same file wherever it is built.
sbom_tmp=canopy-release-sbom
rm -f "$sbom_tmp.json"
"$CARGO_CYCLONEDX" cyclonedx --format json --spec-version 1.5 --no-build-deps \
  --target x86_64-unknown-linux-gnu --override-filename "$sbom_tmp" --quiet
[[ -s $sbom_tmp.json ]] || die "cargo-cyclonedx wrote no $sbom_tmp.json"
# The image also carries the shared libraries `ldd` names (see src/dev/image.rs), which
# cargo-cyclonedx cannot know: each is added with the Debian package it comes from
# (dpkg -S), or as a bare file with its digest where dpkg does not know it.
libs=$(mktemp)
for lib in $(ldd "$canopy" | grep -o '/[^ ]*'); do
  owner=$(dpkg -S "$lib" 2>/dev/null | head -1 | cut -d: -f1 || true)
  version="" arch=""
  if [[ -n $owner ]]; then
    read -r version arch < <(dpkg-query -W -f='${Version} ${Architecture}\n' "$owner")
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$lib" "$(sha256sum "$(readlink -f "$lib")" | awk '{print $1}')" \
    "$owner" "$version" "$arch"
done >"$libs"
distro=$(. /etc/os-release 2>/dev/null && echo "${ID:-linux}")
python3 - "$sbom_tmp.json" "$DIST/canopy-$VERSION.sbom.cdx.json" "$PWD" "$VERSION" "$libs" "$distro" <<'EOF'
import json, sys, uuid
src, dst, checkout, version, libs, distro = sys.argv[1:]
with open(src) as f:
    text = f.read().replace("file://" + checkout, "file://.")
bom = json.loads(text)
bom["serialNumber"] = "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "canopy-sbom-" + version))
packages = {}
with open(libs) as f:
    for line in f:
        path, digest, package, pkg_version, arch = line.rstrip("\n").split("\t")
        prop = {"name": "canopy:image:path", "value": path.lstrip("/")}
        if package:
            purl = f"pkg:deb/{distro}/{package}@{pkg_version}?arch={arch}"
            c = packages.setdefault(purl, {"type": "library", "bom-ref": purl, "name": package,
                                           "version": pkg_version, "purl": purl, "properties": []})
            c["properties"].append(prop)
        else:
            packages[path] = {"type": "file", "bom-ref": "file:" + path, "name": path.lstrip("/"),
                              "hashes": [{"alg": "SHA-256", "content": digest}], "properties": [prop]}
bom["components"] = bom.get("components", []) + [packages[k] for k in sorted(packages)]
with open(dst, "w") as f:
    json.dump(bom, f, indent=2, sort_keys=True)
    f.write("\n")
EOF
rm -f "$sbom_tmp.json" "$libs"

# A tar.gz that depends only on the files' contents and modes.
reproducible_tgz() { # out dir files...
  local out=$1 dir=$2
  shift 2
  tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    --format=gnu -C "$dir" -cf - "$@" | gzip -n -9 >"$out"
}

# The chart: crds/ goes in as it is, so `helm install` creates the CRDs first.
helm_home=$(mktemp -d)
trap 'rm -rf "$helm_home"' EXIT
HELM_CACHE_HOME=$helm_home/cache HELM_CONFIG_HOME=$helm_home/config HELM_DATA_HOME=$helm_home/data \
  "$CANOPY_HELM" package helm/canopy --destination "$DIST" >/dev/null
[[ -f $DIST/canopy-$VERSION.tgz ]] || die "helm package wrote no $DIST/canopy-$VERSION.tgz"
# helm stamps each entry with the clock; the same files repacked with reproducible_tgz make
# the chart archive depend only on the commit, like the others.
chart_stage=$(mktemp -d)
tar -xzmf "$DIST/canopy-$VERSION.tgz" -C "$chart_stage"
reproducible_tgz "$DIST/canopy-$VERSION.tgz" "$chart_stage" canopy
rm -rf "$chart_stage"

# Every CRD in one file: what an upgrade applies before `helm upgrade` (Helm never upgrades
# crds/). The chart's copies are the ones packaged above.
for crd in helm/canopy/crds/*.yaml; do
  printf -- '---\n'
  cat "$crd"
done >"$DIST/canopy-crds-$VERSION.yaml"

# The plugin archives and the krew platforms that point at them.
platforms=""
for target in $PLUGIN_TARGETS; do
  case $target in
    x86_64-unknown-linux-*) os=linux arch=amd64 exe="" ;;
    aarch64-unknown-linux-*) os=linux arch=arm64 exe="" ;;
    x86_64-apple-darwin) os=darwin arch=amd64 exe="" ;;
    aarch64-apple-darwin) os=darwin arch=arm64 exe="" ;;
    x86_64-pc-windows-*) os=windows arch=amd64 exe=".exe" ;;
    *) die "PLUGIN_TARGETS: no os/arch known for $target" ;;
  esac
  if [[ $target == "$HOST_TARGET" ]]; then dir="$CARGO_TARGET_DIR/release"; else dir="$CARGO_TARGET_DIR/$target/release"; fi
  binary="$dir/kubectl-canopy$exe"
  [[ -f $binary ]] || die "$binary is missing: cargo build --release --bin kubectl-canopy --target $target"
  stage=$(mktemp -d)
  cp "$binary" "$stage/kubectl-canopy$exe"
  chmod 0755 "$stage/kubectl-canopy$exe"
  cp README.md "$stage/README.md"
  chmod 0644 "$stage/README.md"
  archive="kubectl-canopy_${VERSION}_${os}_${arch}.tar.gz"
  reproducible_tgz "$DIST/$archive" "$stage" "kubectl-canopy$exe" README.md
  rm -rf "$stage"
  sha=$(sha256sum "$DIST/$archive" | awk '{print $1}')
  platforms+="  - selector:
      matchLabels:
        os: $os
        arch: $arch
    uri: $RELEASE_URL/$archive
    sha256: $sha
    bin: kubectl-canopy$exe
"
done

# The krew manifest (krew.sigs.k8s.io/docs/developer-guide/plugin-manifest).
cat >"$DIST/canopy.yaml" <<EOF
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: canopy
spec:
  version: v$VERSION
  homepage: ${RELEASE_HOMEPAGE:-https://github.com/canopy-dev/canopy}
  shortDescription: Show and change canopy namespace trees
  description: |
    kubectl canopy shows the namespace trees of the canopy multi-tenancy controller
    (tenants, subnamespaces, parents, problems) and changes them: create a subnamespace,
    set a namespace's parent, describe a namespace's place in its tree. It needs canopy
    installed in the cluster.
  platforms:
$platforms
EOF

# Computed before SHA256SUMS exists, so it lists every other file and not itself.
sums=$(cd "$DIST" && sha256sum -- *)
printf '%s\n' "$sums" >"$DIST/SHA256SUMS"
log "done:"
(cd "$DIST" && ls -l) >&2
