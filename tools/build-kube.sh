#!/usr/bin/env bash
# Builds a real Kubernetes control plane for the tests from the Go module
# proxy: kube-apiserver, kube-controller-manager and kube-scheduler from
# k8s.io/kubernetes used as a module (its ./staging replaces pointed at the
# same release's k8s.io/* v0.x.y), and etcd from go.etcd.io/etcd/server/v3.
# Go is only a build tool here: nothing built by this script ships.
#
# The binaries are built once per pinned version into $KUBE_CACHE (outside
# the clone, beside Go's module and build caches, so a second clone or CI run
# on the same machine only copies them) and copied to $OUT.
#
# Usage: tools/build-kube.sh OUT_DIR   (K8S, ETCD and KUBE_CACHE override the pins)
set -euo pipefail
OUT=${1:?usage: build-kube.sh OUT_DIR}
# Absolute: the build below runs in a temporary directory, where a relative
# OUT would put the binaries into what is removed at exit.
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
K8S=${K8S:-1.35.4}
ETCD=${ETCD:-3.6.13}
MINOR=$(cut -d. -f2 <<<"$K8S")
STAGING=v0.${K8S#1.}
KUBE_CACHE=${KUBE_CACHE:-$HOME/.cache/kuma-kube}
BIN=$KUBE_CACHE/k8s-v$K8S-etcd-v$ETCD
CMDS="kube-apiserver kube-controller-manager kube-scheduler"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
# Test clusters talk to loopback only; the build talks to the module proxy.
unset GOWORK

if [ ! -x "$BIN/etcd" ]; then
  command -v go >/dev/null || { echo "build-kube: Go is needed to build the test Kubernetes control plane (https://go.dev/dl)" >&2; exit 1; }
  start=$(date +%s)
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/k8s" "$work/etcd" "$BIN.tmp"

  cd "$work/k8s"
  go mod init kuma.test/kube >/dev/null 2>&1
  go mod edit -go="$([ "$MINOR" -ge 36 ] && echo 1.26.0 || echo 1.25.0)"
  # The release's own go.mod says which staging modules it replaces.
  gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  for m in $(grep -E '^[[:space:]]*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk '{print $1}' | sort -u); do
    go mod edit -replace="$m=$m@$STAGING"
  done
  go get "k8s.io/kubernetes@v$K8S" >/dev/null
  for c in $CMDS; do go get "k8s.io/kubernetes/cmd/$c@v$K8S" >/dev/null; done
  # As upstream's hack/lib/version.sh sets them, so /version, kubectl
  # version and Helm's kubeVersion see a real release.
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=v$K8S -X $p.gitMajor=1 -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean"
    ld+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  go build -trimpath -ldflags "$ld" -o "$BIN.tmp/" $(for c in $CMDS; do echo "k8s.io/kubernetes/cmd/$c"; done)

  # etcd's module has relative replaces, so it is built from a module that
  # requires it rather than by `go install module@version`.
  cd "$work/etcd"
  go mod init kuma.test/etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@v$ETCD" >/dev/null
  go build -trimpath -ldflags "-s -w" -o "$BIN.tmp/etcd" go.etcd.io/etcd/server/v3

  rm -rf "$BIN"; mv "$BIN.tmp" "$BIN"
  echo "build-kube: built Kubernetes v$K8S and etcd v$ETCD in $(( $(date +%s) - start )) s into $BIN"
fi

mkdir -p "$OUT"
for b in $CMDS etcd; do install -m 0755 "$BIN/$b" "$OUT/$b"; done
"$OUT/kube-apiserver" --version
