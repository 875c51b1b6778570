//! `make cluster`: the tests' real Kubernetes control plane (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler from `make
//! kube`) and their node (a small kubelet running pods in network
//! namespaces, images being this build's programs), for a person: started
//! in the background, its admin kubeconfig written to the path given, until
//! SIGTERM or Ctrl-C (`make cluster-down`), when everything it set up goes.
//! Needs root, as the tests do.

use kuma_test_support::cluster;

fn main() {
    let Some(out) = std::env::args().nth(1) else {
        eprintln!("usage: cluster KUBECONFIG_PATH");
        std::process::exit(2);
    };
    let cluster = cluster::Cluster::shared();
    if let Err(e) = std::fs::copy(&cluster.cp.admin_kubeconfig, &out) {
        eprintln!("cannot write the kubeconfig to {out}: {e}");
        std::process::exit(1);
    }
    println!(
        "Kubernetes {} is up at {}; kubeconfig: {out}",
        cluster
            .cp
            .get("/version")
            .map(|v| v["gitVersion"].to_string())
            .unwrap_or_default(),
        cluster.cp.url
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
    // Exiting closes the reaper's pipe: it stops the cluster's processes
    // and removes what the node set up.
}
