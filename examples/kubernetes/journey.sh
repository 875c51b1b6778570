#!/bin/sh
# The Kubernetes user journey, one step per call, each as a user types it.
# `make kind-e2e` runs the steps against a kind cluster; the journey test
# (tests/k8s/journey.rs) runs them on a real Kubernetes control plane, so what
# the test proves is what this script does.
#
#   examples/kubernetes/journey.sh install|demo|mtls|permit|replies|dataplanes|uninstall
#
# Uses kubectl, helm and kumactl from PATH; `dataplanes` needs
# KUMA_API_URL, the control plane's HTTP API (for instance through
# `kubectl -n kuma-system port-forward svc/kuma-control-plane 5681`), and
# reads the admin's user token from the Secret `admin-user-token`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in
install)
    # shellcheck disable=SC2086 # HELM_FLAGS holds several flags
    helm install kuma "$here/../../charts/kuma" --namespace kuma-system --create-namespace ${HELM_FLAGS:-}
    ;;
demo)
    kubectl create namespace demo
    kubectl label namespace demo kuma.io/sidecar-injection=enabled
    kubectl apply -f "$here/demo.yaml"
    ;;
mtls)
    kubectl apply -f "$here/mesh-mtls.yaml"
    ;;
permit)
    kubectl apply -f "$here/permission.yaml"
    ;;
replies)
    # The client's last line: "reply: hello mesh" when the echo answered.
    kubectl -n demo logs client -c client --tail=1
    ;;
dataplanes)
    # From another host kumactl is no admin by itself: it takes the admin
    # token kuma-cp keeps in its namespace.
    token=$(kubectl -n kuma-system get secret admin-user-token -o jsonpath='{.data.value}' | base64 -d)
    kumactl config control-planes add --name journey --address "$KUMA_API_URL" \
        --auth-type=tokens --auth-conf "token=$token" --overwrite >/dev/null
    kumactl get dataplanes
    ;;
uninstall)
    helm uninstall kuma --namespace kuma-system
    ;;
*)
    echo "usage: $0 install|demo|mtls|permit|replies|dataplanes|uninstall" >&2
    exit 2
    ;;
esac
