# canopy — `make test` to test it, `make dev` to try it.
SHELL := /bin/bash
.DEFAULT_GOAL := test

K8S_VERSION ?= 1.36.3
CANOPY_CACHE ?= $(HOME)/.cache/canopy
export CANOPY_ENVTEST_DIR ?= $(CANOPY_CACHE)/envtest/k8s-$(K8S_VERSION)
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: test dev envtest tools fmt lint unit crds clean-envtest

## test: everything CI checks: formatting, lints, unit and integration tests
test: tools envtest
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo test

## dev: a local cluster with canopy installed; prints `export KUBECONFIG=...`
dev: envtest
	cargo run --bin canopy -- dev

## envtest: build etcd, kube-apiserver, kube-controller-manager and kubectl (cached)
envtest: tools
	K8S_VERSION=$(K8S_VERSION) CANOPY_CACHE=$(CANOPY_CACHE) hack/build-envtest.sh >/dev/null

## tools: install what the build needs and the machine lacks (Go, rustfmt, clippy)
tools:
	@hack/install-tools.sh

## crds: regenerate crds/ from the Rust types
crds:
	cargo run -q --bin canopy -- crds --output-dir crds

fmt:
	cargo fmt

lint:
	cargo clippy --all-targets -- -D warnings

## unit: the tests that need no control plane
unit:
	cargo test --lib --bins

clean-envtest:
	rm -rf $(CANOPY_ENVTEST_DIR)
