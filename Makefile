# Everything a fresh machine needs is built or fetched by these targets and cached in .cache/.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help tools build release crds test lint dev dev-down bench

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

tools: ## build/fetch the control plane, kubectl, helm and the python validator (cached)
	hack/setup-rust
	hack/build-control-plane
	hack/fetch-tools
	hack/setup-python
	hack/setup-lua

build: ## build both binaries
	cargo build --bins

release: ## the exact cargo build the Dockerfile runs (release, locked)
	cargo build --release --locked --bins

crds: ## regenerate crds/ from the Rust types
	cargo run -q --bin frontegg-token-operator -- crd > crds/frontegg-token-operator.crds.yaml
	cargo run -q --bin frontegg-token-operator -- crd --helm > charts/frontegg-token-operator/templates/crds.yaml

lint: ## formatting and clippy gates
	cargo fmt --check
	cargo clippy --all-targets --all-features -- -D warnings

test: tools lint ## every gate and test: fmt, clippy, unit, CRD drift, client, conformance, e2e
	hack/test

dev: tools build ## playground: control plane, fake, operator, examples applied, Secrets shown
	hack/dev up

dev-down: ## stop the playground
	hack/dev down

bench: tools release ## benchmarks; writes docs/benchmarks.md
	hack/bench
