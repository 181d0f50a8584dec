# Everything a fresh machine needs is built or fetched by these targets and cached in .cache/.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help tools build release-build release image previous-release crds test lint dev dev-down bench apiserver-profile install-cli

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

tools: ## build/fetch the control plane, the node, promtool, kubectl, helm and the python validator (cached)
	hack/setup-rust
	hack/setup-node-packages
	hack/build-control-plane
	hack/build-promtool
	hack/fetch-tools
	hack/setup-python
	hack/setup-lua

build: ## build the binaries (operator, fake, test consumer)
	cargo build --bins

release-build: ## the Dockerfile's cargo build (release, locked), without the LTO and size optimisation the shipped image adds
	cargo build --release --locked --bins

release: tools release-build ## the release artifacts, tagged with the version: target/dist/*-<version>.tgz (chart) and .oci.tar (image)
	hack/release

image: release-build ## OCI image archives for the node, without Docker: target/images/*.tar
	hack/image/build

previous-release: ## the previous release's chart and image, from git history, for tests/upgrade.rs (cached)
	hack/previous-release

install-cli: ## install kubectl-frontegg (the `kubectl frontegg` plugin) into ~/.cargo/bin
	cargo install --locked --path . --bin kubectl-frontegg

crds: ## regenerate crds/, the chart's CRDs and docs/crd-reference.md from the Rust types
	cargo run -q --bin frontegg-token-operator -- crd > crds/frontegg-token-operator.crds.yaml
	cargo run -q --bin frontegg-token-operator -- crd --helm > charts/frontegg-token-operator/templates/crds.yaml
	cargo run -q --bin frontegg-token-operator -- crd --reference > docs/crd-reference.md

lint: ## formatting and clippy gates
	cargo fmt --check
	cargo clippy --all-targets --all-features -- -D warnings

test: tools lint previous-release image ## every gate and test: fmt, clippy, unit, CRD drift, client, conformance, e2e, in-cluster, upgrade
	hack/test

dev: tools build $(if $(IN_CLUSTER),image) ## playground: control plane, fake, operator, examples, Secrets (IN_CLUSTER=1: the chart's pod on a node)
	IN_CLUSTER=$(IN_CLUSTER) hack/dev up

dev-down: ## stop the playground
	hack/dev down

bench: tools release-build ## benchmarks; writes docs/benchmarks.md
	hack/bench

apiserver-profile: tools ## where a token's cost goes in the API server (after make bench)
	hack/apiserver-profile
