# canopy — `make test` to test it, `make dev` to try it.
SHELL := /bin/bash
.DEFAULT_GOAL := test

K8S_VERSION ?= 1.36.3
CANOPY_CACHE ?= $(HOME)/.cache/canopy
export CANOPY_ENVTEST_DIR ?= $(CANOPY_CACHE)/envtest/k8s-$(K8S_VERSION)
export PATH := $(HOME)/.cargo/bin:$(PATH)
# Rust builds are cached outside the repository too, so a fresh clone (CI) compiles only canopy.
export CARGO_TARGET_DIR ?= $(CANOPY_CACHE)/target
# helm renders and lints helm/canopy in tests/packaging.rs (built by hack/build-helm.sh).
HELM_VERSION ?= 3.22.0
export CANOPY_HELM ?= $(CANOPY_CACHE)/tools/helm-$(HELM_VERSION)/helm
# make release: the SBOM tool, the plugin's targets (archives built) and the targets only
# checked (`cargo check`: macOS needs Apple's linker, which no package provides).
CYCLONEDX_VERSION ?= 0.5.9
export CARGO_CYCLONEDX ?= $(CANOPY_CACHE)/tools/cargo-cyclonedx-$(CYCLONEDX_VERSION)/bin/cargo-cyclonedx
export PLUGIN_TARGETS ?= x86_64-unknown-linux-gnu x86_64-pc-windows-gnu
export CHECK_TARGETS ?= x86_64-apple-darwin
# make bench-compare runs HNC's manager beside canopy (built by hack/build-hnc.sh).
HNC_VERSION ?= 1.1.0
export COMPARE_HNC_DIR ?= $(CANOPY_CACHE)/hnc-v$(HNC_VERSION)

.PHONY: test dev dev-node envtest node node-packages image release release-tools tools fmt lint unit crds clean-envtest bench-webhook bench-propagation bench-quota bench-compare

## test: everything CI checks: formatting, lints, `make release`, unit and integration tests
## (tests/node.rs runs Pods on a real node when root; without root it reports itself skipped;
## tests/release.rs checks what `make release` wrote into dist/)
test: tools envtest node-if-root
	cargo fmt --check
	python3 hack/import-graph.py
	cargo clippy --all-targets -- -D warnings
	$(MAKE) --no-print-directory release
	cargo test

# The packaging tests (tests/packaging.rs) need helm.
test: helm-cli

## dev: a local cluster with canopy installed; prints `export KUBECONFIG=...`
dev: envtest
	@echo "make dev: control plane only (Pods stay Pending). For a real node, as root: make dev-node (canopy dev --node)"
	cargo run --bin canopy -- dev

## dev-node: the same with the node canopy-node-0 (root): Pods run, NetworkPolicy is enforced
dev-node: envtest node
	cargo run --bin canopy -- dev --node

## node: what the node needs: Debian packages (as root, when missing), then kubelet,
## kube-scheduler, kube-proxy, kube-router and the pause binary (cached in $(CANOPY_CACHE))
node: node-packages envtest
	K8S_VERSION=$(K8S_VERSION) CANOPY_CACHE=$(CANOPY_CACHE) hack/build-node.sh >/dev/null

node-packages:
	@hack/install-node-packages.sh

# The node runs only as root (the node tests skip themselves otherwise), so only then is it
# worth building for `make test`.
.PHONY: node-if-root
node-if-root:
	@if [[ $$(id -u) == 0 ]]; then $(MAKE) --no-print-directory node; \
	else echo "not root: the node tests (tests/node*.rs) will be skipped"; fi

## image: canopy's OCI image (target/image/canopy.oci.tar, reproducible; `ctr images import`,
## `skopeo copy oci-archive:...` or `podman load` read it) from a release build
image:
	cargo build --release --bin canopy
	$${CARGO_TARGET_DIR:-target}/release/canopy image --binary $${CARGO_TARGET_DIR:-target}/release/canopy \
		--name localhost/canopy:dev --output target/image/canopy.oci.tar

## release: the release artefacts in dist/ (docs/development.md#releases): canopy's OCI image
## and its CycloneDX SBOM, the packaged chart, the CRDs in one file, kubectl-canopy archives
## for PLUGIN_TARGETS, the krew manifest and SHA256SUMS; the plugin is also checked for
## CHECK_TARGETS. RELEASE_URL and IMAGE_REPOSITORY say where they will be published.
release: tools helm-cli release-tools
	cargo build --release --bin canopy --bin kubectl-canopy
	@for t in $(PLUGIN_TARGETS); do \
		if [[ $$t != $$(rustc -vV | sed -n 's/^host: //p') ]]; then \
			echo "cargo build --release --bin kubectl-canopy --target $$t"; \
			cargo build --release --bin kubectl-canopy --target $$t || exit 1; \
		fi; \
	done
	hack/check-plugin.sh $(CHECK_TARGETS)
	hack/release.sh

release-tools:
	@CANOPY_CACHE=$(CANOPY_CACHE) CYCLONEDX_VERSION=$(CYCLONEDX_VERSION) hack/build-release-tools.sh >/dev/null

## envtest: build etcd, kube-apiserver, kube-controller-manager and kubectl (cached)
envtest: tools
	K8S_VERSION=$(K8S_VERSION) CANOPY_CACHE=$(CANOPY_CACHE) hack/build-envtest.sh >/dev/null

## helm-cli: build the helm CLI the packaging tests use (cached in $(CANOPY_CACHE)/tools)
.PHONY: helm-cli manifests chart
helm-cli: tools
	HELM_VERSION=$(HELM_VERSION) CANOPY_CACHE=$(CANOPY_CACHE) hack/build-helm.sh >/dev/null

## manifests: copy crds/, the webhook configuration and the manager's RBAC into config/ and helm/canopy
manifests:
	hack/sync-manifests.sh

## chart: lint and render helm/canopy (what `make test` checks in tests/packaging.rs)
chart: helm-cli
	$(CANOPY_HELM) lint --strict helm/canopy
	$(CANOPY_HELM) template canopy helm/canopy --namespace canopy-system >/dev/null

## tools: install what the build needs and the machine lacks (Go, rustfmt, clippy)
tools:
	@hack/install-tools.sh

## crds: regenerate crds/ from the Rust types
crds:
	cargo run -q --bin canopy -- crds --output-dir crds
	hack/sync-manifests.sh

fmt:
	cargo fmt

lint:
	cargo clippy --all-targets -- -D warnings

## import-graph: the module graph of src/ has one direction and no cycles (hack/import-graph.py)
.PHONY: import-graph
import-graph:
	python3 hack/import-graph.py

## unit: the tests that need no control plane
unit:
	cargo test --lib --bins

## bench-webhook: AdmissionReviews/s and latency of the webhook server (docs/performance.md)
bench-webhook: tools
	cargo bench --bench webhook

## bench-quota: added latency of a Pod create under a HierarchicalResourceQuota (docs/performance.md)
bench-quota: tools envtest
	cargo bench --bench quota

## bench-propagation: fan-out time vs a plain client, writes, restart, RSS (docs/performance.md)
## BENCH_CELLS=100:wide,1000:deep,... picks sizes and shapes (default: every shape at 100 and 1,000)
bench-propagation: tools envtest
	cargo build --release --bin canopy
	cargo bench --bench propagation

## bench-compare: canopy vs HNC v1.1.0 vs a plain client, one fresh control plane each
## (docs/performance.md); HNC's manager is built by hack/build-hnc.sh (cached).
## COMPARE_NAMESPACES=1000,5000 adds sizes (default 1000), COMPARE_SHAPES=wide,balanced
bench-compare: tools envtest
	HNC_VERSION=$(HNC_VERSION) CANOPY_CACHE=$(CANOPY_CACHE) hack/build-hnc.sh >/dev/null
	cargo bench --bench compare

clean-envtest:
	rm -rf $(CANOPY_ENVTEST_DIR)
