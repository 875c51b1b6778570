//! A real Kubernetes control plane for the tests: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler, built by `make kube` into
//! `.venv/bin/`, each on free ports with a data directory of its own.
//!
//! - The API server runs as a default cluster's does: TLS with a CA this
//!   module writes, RBAC and Node authorization, the default admission
//!   plugins (the webhook ones among them) plus NodeRestriction, service
//!   account issuer and signing keys, an audit log of every write (who
//!   wrote what, for the tests that count writes).
//! - Users come from a token file: an admin in `system:masters`, the
//!   controller-manager and the scheduler as the users the default RBAC
//!   policy binds (`system:kube-controller-manager`, `system:kube-scheduler`)
//!   and the test node's kubelet as `system:node:<node>`.
//! - The controller-manager runs deployments, replica sets, endpoints and
//!   endpoint slices, namespaces, garbage collection, service accounts, the
//!   root CA publisher and node lifecycle (which lifts a new node's
//!   not-ready taint once its kubelet reports ready and renews its Lease).
//!
//! One control plane is started per test process ([`ControlPlane::shared`])
//! and shared by the tests of the one area that process runs. Its processes are in a process group of their
//! own; a reaper waiting on a pipe from the test process stops the group and
//! removes the data directory when the test process ends, however it ends.

use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::{KubeClients, KumaCp, Ran, bin, eventually, free_port, venv_tool};

/// The name of the node the test kubelet registers.
pub const NODE: &str = "kuma-test-node";
/// Services' cluster IPs come from here.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The `kubernetes` Service's cluster IP (the first of the range), which
/// pods reach the API server at.
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// Bearer tokens of the users the token file defines.
pub struct Tokens {
    pub admin: String,
    pub controller_manager: String,
    pub scheduler: String,
    pub kubelet: String,
}

impl Tokens {
    fn generate() -> Tokens {
        let token = || format!("{:032x}", rand::random::<u128>());
        Tokens {
            admin: token(),
            controller_manager: token(),
            scheduler: token(),
            kubelet: token(),
        }
    }

    /// kube-apiserver's `--token-auth-file`: token,user,uid,"groups".
    fn file(&self) -> String {
        format!(
            "{},admin,admin,\"system:masters\"\n{},system:kube-controller-manager,kcm\n{},system:kube-scheduler,scheduler\n{},system:node:{NODE},node,\"system:nodes\"\n",
            self.admin, self.controller_manager, self.scheduler, self.kubelet
        )
    }
}

/// The audit policy: metadata of every write, and of every request of the
/// chart's `kuma-cp` (so a benchmark can count its reads: no polling).
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: Metadata
  users: [\"system:serviceaccount:kuma-system:kuma-control-plane\"]
- level: None
";

/// A running control plane.
pub struct ControlPlane {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA that signed the API server's certificate (PEM).
    pub ca_pem: String,
    pub ca_file: PathBuf,
    pub tokens: Tokens,
    pub dir: PathBuf,
    /// A kubeconfig of the admin.
    pub admin_kubeconfig: PathBuf,
    etcd_url: String,
    apiserver: Mutex<Child>,
    apiserver_args: Vec<String>,
    /// The process group of every process of the cluster.
    pub pgid: u32,
    _reaper: Mutex<Child>,
    _others: Mutex<Vec<Child>>,
    client: reqwest::blocking::Client,
    /// Namespaces tests made, removed before the next exclusive test.
    namespaces: Mutex<Vec<String>>,
}

/// Held by the test that runs a `kuma-cp` on the shared cluster: every
/// `kuma-cp` watches every namespace and writes cluster-scoped Meshes, so
/// two at once would each act on the other's objects.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// The process's control plane, or why it did not start (so that every
/// test after the first says so at once).
static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// The area whose tests use this process's control plane: the first
/// module of a test's name, which libtest gives the test's thread.
static AREA: OnceLock<String> = OnceLock::new();

/// Refuses a second area in one process: the areas install cluster-wide
/// webhooks and RBAC, and revoke tokens, that the others must not see.
fn one_area_per_process() {
    let Some(area) = std::thread::current()
        .name()
        .and_then(|name| name.split_once("::"))
        .map(|(area, _)| area.to_string())
    else {
        return;
    };
    let first = AREA.get_or_init(|| area.clone());
    assert!(
        *first == area,
        "tests of {first}:: and {area}:: in one process would share one cluster: run one area per process (cargo test --test k8s -- {area}::, as make test does)"
    );
}

impl ControlPlane {
    /// The process's control plane, started on first use; one area's
    /// tests use it (see [`one_area_per_process`]).
    pub fn shared() -> &'static ControlPlane {
        one_area_per_process();
        let started = SHARED.get_or_init(|| {
            let started = std::panic::catch_unwind(ControlPlane::start).map_err(|e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            });
            // A failing test prints the tail of the cluster's logs too.
            let report = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                report(info);
                if let Some(Ok(cp)) = SHARED.get() {
                    eprintln!("the test cluster's logs:\n{}", cp.logs());
                }
            }));
            started
        });
        match started {
            Ok(cp) => cp,
            Err(why) => panic!("the test Kubernetes control plane did not start: {why}"),
        }
    }

    fn start() -> ControlPlane {
        // Tests have a temporary directory of the target; benchmarks do not.
        let tmp = option_env!("CARGO_TARGET_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::repository().join("target/tmp"));
        let dir = tmp.join(format!(
            "kube-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("the control plane's directory");
        let path = |f: &str| dir.join(f).display().to_string();
        let pki = Pki::generate();
        for (file, text) in [
            ("ca.crt", &pki.ca_pem),
            ("apiserver.crt", &pki.serving_pem),
            ("apiserver.key", &pki.serving_key_pem),
            ("sa.key", &pki.service_account_key_pem),
            ("sa.pub", &pki.service_account_public_pem),
        ] {
            std::fs::write(dir.join(file), text).expect("PKI file");
        }
        let tokens = Tokens::generate();
        std::fs::write(dir.join("tokens.csv"), tokens.file()).expect("token file");
        std::fs::write(dir.join("audit-policy.yaml"), AUDIT_POLICY).expect("audit policy");

        // etcd first: its process starts the group the others join.
        let (etcd_port, peer_port) = (free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = spawn(
            &venv_tool("etcd"),
            &[
                "--name=test".into(),
                format!("--data-dir={}", path("etcd")),
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=test={peer_url}"),
            ],
            &dir.join("etcd.log"),
            None,
        );
        let pgid = etcd.id();
        let reaper = reaper(pgid, &dir);

        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        let apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            // On every address: pods reach it from their network
            // namespaces through the `kubernetes` Service's cluster IP.
            "--bind-address=0.0.0.0".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", path("certs")),
            format!("--tls-cert-file={}", path("apiserver.crt")),
            format!("--tls-private-key-file={}", path("apiserver.key")),
            format!("--client-ca-file={}", path("ca.crt")),
            format!("--token-auth-file={}", path("tokens.csv")),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", path("sa.pub")),
            format!("--service-account-signing-key-file={}", path("sa.key")),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--allow-privileged=true".into(),
            // Webhooks registered by Service are called at a pod behind
            // it, as kube-proxy would route the cluster IP.
            "--enable-aggregator-routing=true".into(),
            // The test node's kubelet endpoint (container logs) is on
            // loopback; its host name resolves nowhere.
            "--kubelet-preferred-address-types=InternalIP".into(),
            format!("--audit-policy-file={}", path("audit-policy.yaml")),
            format!("--audit-log-path={}", path("audit.log")),
            "--audit-log-format=json".into(),
            // Never rotated (the default rotates at 100 MB, which a
            // 10,000-pod benchmark passes): counts read it whole.
            "--audit-log-maxsize=1000000".into(),
            "--audit-log-mode=blocking".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ];
        let apiserver = spawn(
            &venv_tool("kube-apiserver"),
            &apiserver_args,
            &dir.join("kube-apiserver.log"),
            Some(pgid),
        );
        let ca_file = dir.join("ca.crt");
        let client = reqwest::blocking::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("the CA"),
            )
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a client");
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        std::fs::write(
            &admin_kubeconfig,
            kubeconfig(&url, &ca_file, &tokens.admin, "default"),
        )
        .expect("kubeconfig");
        let cp = ControlPlane {
            url,
            ca_pem: pki.ca_pem,
            ca_file,
            tokens,
            dir: dir.clone(),
            admin_kubeconfig,
            etcd_url,
            apiserver: Mutex::new(apiserver),
            apiserver_args,
            pgid,
            _reaper: Mutex::new(reaper),
            _others: Mutex::new(vec![etcd]),
            client,
            namespaces: Mutex::new(Vec::new()),
        };
        cp.wait_ready();

        for (name, token, args) in [
            (
                "kube-controller-manager",
                &cp.tokens.controller_manager,
                vec![
                    "--controllers=deployment-controller,replicaset-controller,endpoints-controller,endpointslice-controller,namespace-controller,garbage-collector-controller,serviceaccount-controller,root-ca-certificate-publisher-controller,node-lifecycle-controller".to_string(),
                    format!("--service-account-private-key-file={}", path("sa.key")),
                    format!("--root-ca-file={}", path("ca.crt")),
                    // Each controller as its own service account, bound by the default
                    // RBAC policy, as a default cluster runs them.
                    "--use-service-account-credentials=true".into(),
                    // Benchmarks create thousands of pods through it.
                    "--kube-api-qps=500".into(),
                    "--kube-api-burst=1000".into(),
                    "--concurrent-deployment-syncs=10".into(),
                    "--concurrent-replicaset-syncs=10".into(),
                ],
            ),
            (
                "kube-scheduler",
                &cp.tokens.scheduler,
                vec!["--kube-api-qps=500".into(), "--kube-api-burst=1000".into()],
            ),
        ] {
            let config = dir.join(format!("{name}.kubeconfig"));
            std::fs::write(&config, kubeconfig(&cp.url, &cp.ca_file, token, "default"))
                .expect("kubeconfig");
            let mut all = vec![
                format!("--kubeconfig={}", config.display()),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", free_port()),
            ];
            all.extend(args);
            let child = spawn(&venv_tool(name), &all, &dir.join(format!("{name}.log")), Some(pgid));
            cp._others.lock().unwrap().push(child);
        }
        cp
    }

    /// Waits until the API server answers `/readyz`; fails at once if it
    /// exited.
    fn wait_ready(&self) {
        let ready = eventually(Duration::from_secs(120), || {
            if let Ok(Some(status)) = self.apiserver.lock().unwrap().try_wait() {
                panic!("kube-apiserver exited with {status}:\n{}", self.logs());
            }
            self.client
                .get(format!("{}/readyz", self.url))
                .bearer_auth(&self.tokens.admin)
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
        assert!(
            ready,
            "kube-apiserver did not become ready:\n{}",
            self.logs()
        );
    }

    /// The tail of every component's log, for a failed test.
    pub fn logs(&self) -> String {
        [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ]
        .iter()
        .map(|name| {
            let text =
                std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            format!("--- {name} ---\n{tail}\n")
        })
        .collect()
    }

    /// A kubeconfig whose user presents `token`.
    pub fn kubeconfig_for(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}.kubeconfig"));
        std::fs::write(
            &path,
            kubeconfig(&self.url, &self.ca_file, token, "default"),
        )
        .expect("kubeconfig");
        path
    }

    /// A request of the admin to `path` (`/api/v1/...`).
    pub fn request(&self, method: &str, path: &str, body: Option<(&str, String)>) -> (u16, Value) {
        self.request_as(&self.tokens.admin, method, path, body)
    }

    /// A request to `path` presenting `token`; answers the status and the
    /// body as JSON (Null when empty).
    pub fn request_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<(&str, String)>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.url),
            )
            .bearer_auth(token);
        if let Some((content_type, body)) = body {
            req = req.header("content-type", content_type).body(body);
        }
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// Creates or updates the object in `collection_path` (its name from
    /// the object) by server-side apply, as `kubectl apply
    /// --server-side --force-conflicts` does; panics on a refusal.
    pub fn apply(&self, collection_path: &str, object: Value) -> Value {
        let name = object["metadata"]["name"].as_str().expect("metadata.name");
        let path = format!("{collection_path}/{name}?fieldManager=kuma-tests&force=true");
        let (status, answer) = self.request(
            "PATCH",
            &path,
            Some(("application/apply-patch+yaml", object.to_string())),
        );
        assert!(
            status < 300,
            "apply {collection_path}/{name}: {status} {answer}"
        );
        answer
    }

    /// Writes the `status` subresource of an object (as a kubelet does a
    /// pod's) by a merge patch.
    pub fn patch_status(&self, object_path: &str, status: Value) {
        let (code, answer) = self.request(
            "PATCH",
            &format!("{object_path}/status"),
            Some((
                "application/merge-patch+json",
                json!({"status": status}).to_string(),
            )),
        );
        assert!(code < 300, "status of {object_path}: {code} {answer}");
    }

    pub fn get(&self, object_path: &str) -> Option<Value> {
        let (status, body) = self.request("GET", object_path, None);
        (status == 200).then_some(body)
    }

    /// The items of a collection.
    pub fn list(&self, collection_path: &str) -> Vec<Value> {
        let (status, body) = self.request("GET", collection_path, None);
        assert_eq!(status, 200, "list {collection_path}: {body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// How many objects a collection holds: one item and the API server's
    /// count of the rest, so that counting 10,000 objects reads one; the
    /// whole list when the server gives no count.
    pub fn count(&self, collection_path: &str) -> usize {
        let (status, page) = self.request("GET", &format!("{collection_path}?limit=1"), None);
        assert_eq!(status, 200, "count {collection_path}: {page}");
        let first = page["items"].as_array().map_or(0, Vec::len);
        let more = page["metadata"]["continue"]
            .as_str()
            .is_some_and(|c| !c.is_empty());
        match page["metadata"]["remainingItemCount"].as_u64() {
            Some(rest) => first + rest as usize,
            None if more => self.list(collection_path).len(),
            None => first,
        }
    }

    /// Deletes an object (in the foreground of nothing: as `kubectl delete
    /// --wait=false`); whether it was there.
    pub fn delete(&self, object_path: &str) -> bool {
        let (status, body) = self.request("DELETE", object_path, None);
        assert!(
            status == 200 || status == 202 || status == 404,
            "delete {object_path}: {status} {body}"
        );
        status != 404
    }

    /// A namespace of the test's own, named from `prefix`; removed by the
    /// next [`ControlPlane::exclusive`].
    pub fn namespace(&self, prefix: &str, labels: Value) -> String {
        let name = format!("{prefix}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        self.namespaces.lock().unwrap().push(name.clone());
        self.apply(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": name, "labels": labels}}),
        );
        name
    }

    /// A token of service account `account` of `namespace` (created when
    /// missing), issued by the API server's TokenRequest, as a kubelet
    /// asks one for a pod.
    pub fn service_account_token(&self, namespace: &str, account: &str) -> String {
        self.apply(
            &format!("/api/v1/namespaces/{namespace}/serviceaccounts"),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}}),
        );
        let (status, answer) = self.request(
            "POST",
            &format!("/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token"),
            Some((
                "application/json",
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                       "spec": {"expirationSeconds": 3600}})
                .to_string(),
            )),
        );
        assert_eq!(
            status, 201,
            "TokenRequest for {namespace}/{account}: {answer}"
        );
        answer["status"]["token"]
            .as_str()
            .expect("a token")
            .to_string()
    }

    /// The real `kubectl` as the admin, with `stdin` if given.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Ran {
        let clients = KubeClients::new(&self.admin_kubeconfig);
        match stdin {
            Some(text) => clients.try_kubectl_with(args, text),
            None => clients.try_kubectl(args),
        }
    }

    /// The cluster to this test alone (see `EXCLUSIVE`), with what earlier
    /// tests left removed: their namespaces (and with them their pods),
    /// every Kuma object, webhook registrations, the Deployments and
    /// Services of `kuma-system`, the control plane's Secrets and leader
    /// Lease.
    pub fn exclusive(&self) -> MutexGuard<'static, ()> {
        let guard = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
        self.install_crds();
        // A kuma-system an earlier test deleted must be gone before this
        // one installs into it.
        let settled = eventually(Duration::from_secs(120), || {
            self.get("/api/v1/namespaces/kuma-system")
                .is_none_or(|ns| ns["metadata"]["deletionTimestamp"].is_null())
        });
        assert!(settled, "kuma-system stayed terminating:\n{}", self.logs());
        let namespaces: Vec<String> = self.namespaces.lock().unwrap().drain(..).collect();
        for ns in namespaces {
            self.delete(&format!("/api/v1/namespaces/{ns}"));
        }
        let in_system = |kinds: &'static str| {
            vec![
                "delete",
                "-n",
                "kuma-system",
                kinds,
                "--all",
                "--ignore-not-found",
            ]
        };
        // Every Kuma kind, as kubectl names a list of them.
        let kuma_kinds = kuma_k8s::k8s::crd::CRDS
            .iter()
            .map(|crd| crd.plural)
            .collect::<Vec<_>>()
            .join(",");
        for args in [
            vec!["delete", &kuma_kinds, "--all", "-A", "--wait=false"],
            // What a chart left: its webhooks, and the Deployments whose
            // pods would serve them.
            vec![
                "delete",
                "mutatingwebhookconfigurations,validatingwebhookconfigurations",
                "--all",
            ],
            in_system("deployments,services"),
            in_system("secrets,leases"),
        ] {
            let out = self.kubectl(&args, None);
            assert!(out.ok, "kubectl {}: {}", args.join(" "), out.stderr);
        }
        guard
    }

    /// A kubeconfig whose user is the chart's ServiceAccount
    /// `kuma-system/kuma-control-plane`, bound to the chart's own RBAC
    /// (the ServiceAccount, ClusterRole, Role and bindings of `kumactl
    /// install control-plane`, applied once): a `kuma-cp` using it is
    /// never an admin, and a permission the chart lacks fails with the
    /// API server's 403.
    pub fn kuma_cp_kubeconfig(&self) -> PathBuf {
        static CONFIG: OnceLock<PathBuf> = OnceLock::new();
        CONFIG
            .get_or_init(|| {
                self.install_crds();
                let rendered = Command::new(bin("kumactl"))
                    .args(["install", "control-plane"])
                    .output()
                    .expect("kumactl install control-plane");
                assert!(rendered.status.success(), "kumactl install control-plane");
                let text = String::from_utf8_lossy(&rendered.stdout);
                let wanted = [
                    "Namespace",
                    "ServiceAccount",
                    "ClusterRole",
                    "ClusterRoleBinding",
                    "Role",
                    "RoleBinding",
                ];
                let rbac: Vec<&str> = text
                    .split("\n---")
                    .filter(|doc| {
                        doc.lines()
                            .find_map(|l| l.strip_prefix("kind: "))
                            .is_some_and(|kind| wanted.contains(&kind.trim()))
                    })
                    .collect();
                let out = self.kubectl(&["apply", "-f", "-"], Some(&rbac.join("\n---")));
                assert!(out.ok, "the chart's RBAC: {}", out.stderr);
                let token = self.service_account_token("kuma-system", "kuma-control-plane");
                self.kubeconfig_for("kuma-control-plane", &token)
            })
            .clone()
    }

    /// `kuma-cp` in Kubernetes mode on this cluster, as the chart's
    /// ServiceAccount, with `extra` settings. Hold [`ControlPlane::exclusive`].
    pub fn kuma_cp(&self, extra: &[(&str, &str)]) -> KumaCp {
        let kubeconfig = self.kuma_cp_kubeconfig();
        let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");
        let mut env = vec![
            ("KUMA_ENVIRONMENT", "kubernetes"),
            ("KUMA_STORE_TYPE", "kubernetes"),
            ("KUBECONFIG", kubeconfig),
        ];
        env.extend_from_slice(extra);
        KumaCp::start(&env)
    }

    /// Creates or updates `object` in `collection_path` and then writes
    /// its `status`, as a kubelet would (the main resource ignores it).
    pub fn apply_with_status(&self, collection_path: &str, object: Value) -> Value {
        let mut spec = object.clone();
        let status = spec.as_object_mut().and_then(|o| o.remove("status"));
        let applied = self.apply(collection_path, spec);
        match status {
            Some(status) => {
                let name = object["metadata"]["name"].as_str().expect("metadata.name");
                self.patch_status(&format!("{collection_path}/{name}"), status);
                self.get(&format!("{collection_path}/{name}"))
                    .unwrap_or(applied)
            }
            None => applied,
        }
    }

    /// Installs Kuma's CRDs (`crds/`) once, and waits until they serve.
    pub fn install_crds(&self) {
        static INSTALLED: OnceLock<()> = OnceLock::new();
        INSTALLED.get_or_init(|| {
            let crds = crate::repository().join("crds");
            let out = self.kubectl(
                &[
                    "apply",
                    "--server-side",
                    "-f",
                    crds.to_str().expect("utf-8"),
                ],
                None,
            );
            assert!(out.ok, "kubectl apply crds/: {}", out.stderr);
            let out = self.kubectl(
                &[
                    "wait",
                    "--for=condition=Established",
                    "crd",
                    "--all",
                    "--timeout=60s",
                ],
                None,
            );
            assert!(out.ok, "the CRDs were not established: {}", out.stderr);
        });
    }

    /// Stops kube-apiserver and starts it again on the same port and data,
    /// as an upgrade or a crash would; waits until it is ready.
    pub fn restart_apiserver(&self) {
        let mut apiserver = self.apiserver.lock().unwrap();
        let _ = apiserver.kill();
        let _ = apiserver.wait();
        *apiserver = spawn(
            &venv_tool("kube-apiserver"),
            &self.apiserver_args,
            &self.dir.join("kube-apiserver.log"),
            Some(self.pgid),
        );
        drop(apiserver);
        self.wait_ready();
    }

    /// Compacts etcd's history up to its current revision, so that a watch
    /// resuming from before it gets `410 Gone` and must list again.
    pub fn compact_etcd(&self) {
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let range: Value = client
            .post(format!("{}/v3/kv/range", self.etcd_url))
            .body(json!({"key": "AA=="}).to_string())
            .send()
            .and_then(|r| r.json())
            .expect("etcd's revision");
        let revision = range["header"]["revision"].clone();
        let compacted = client
            .post(format!("{}/v3/kv/compaction", self.etcd_url))
            .body(json!({"revision": revision, "physical": true}).to_string())
            .send()
            .expect("etcd compaction");
        assert!(
            compacted.status().is_success(),
            "etcd compaction: {compacted:?}"
        );
    }

    /// A shell command run when the test process ends, after the cluster's
    /// processes are stopped (network set-up of the node, say).
    pub fn at_exit(&self, command: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("at-exit.sh"))
            .expect("the clean-up script");
        writeln!(file, "{command}").expect("the clean-up script");
    }

    /// Registers the test node with the kubelet's credentials, as a
    /// kubelet does at its start: ready, with room for many pods, its
    /// kubelet endpoint (container logs) on `port`; creates its Lease and
    /// renews it every 10 s from then on (the heartbeat the node lifecycle
    /// controller watches). Returns once that controller has lifted the
    /// new node's not-ready taint, so pods can be scheduled to it.
    pub fn register_node(&'static self, port: u16) {
        let registered = now();
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"}},
            "status": {
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "20000"},
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "20000"},
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                              {"type": "Hostname", "address": NODE}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "the test kubelet is ready",
                                "lastHeartbeatTime": registered, "lastTransitionTime": registered}]}});
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": NODE},
            "spec": {"holderIdentity": NODE, "leaseDurationSeconds": 40, "renewTime": registered}});
        for (what, path, object) in [
            ("the node", "/api/v1/nodes", node),
            (
                "the node's Lease",
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                lease,
            ),
        ] {
            let (status, answer) = self.request_as(
                &self.tokens.kubelet,
                "POST",
                path,
                Some(("application/json", object.to_string())),
            );
            assert!(
                status == 201 || status == 409,
                "registering {what}: {status} {answer}"
            );
        }
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(10));
                self.request_as(
                    &self.tokens.kubelet,
                    "PATCH",
                    &format!(
                        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}"
                    ),
                    Some((
                        "application/merge-patch+json",
                        json!({"spec": {"renewTime": now()}}).to_string(),
                    )),
                );
            }
        });
        let schedulable = eventually(Duration::from_secs(60), || {
            self.get(&format!("/api/v1/nodes/{NODE}"))
                .is_some_and(|n| n["spec"]["taints"].as_array().is_none_or(|t| t.is_empty()))
        });
        assert!(schedulable, "the node stayed tainted:\n{}", self.logs());
    }

    /// Writes a pod's status with the kubelet's credentials, as a kubelet
    /// reports it: its phase, its IP (on a node at the pod network's `.1`),
    /// and whether it is ready; by a strategic merge, so the scheduler's
    /// conditions stay. Answers the API server's status code.
    pub fn report_pod(
        &self,
        (namespace, name): (&str, &str),
        (ip, started): (&str, &str),
        phase: &str,
        ready: bool,
    ) -> u16 {
        let now = now();
        let condition = |kind: &str, status: bool| json!({"type": kind, "status": if status { "True" } else { "False" }, "lastTransitionTime": now});
        let status = json!({"status": {
            "phase": phase, "podIP": ip, "podIPs": [{"ip": ip}],
            "hostIP": ip.rsplit_once('.').map(|(net, _)| format!("{net}.1")),
            "startTime": started,
            "conditions": [condition("Initialized", true), condition("Ready", ready),
                           condition("ContainersReady", ready)],
        }});
        self.request_as(
            &self.tokens.kubelet,
            "PATCH",
            &format!("/api/v1/namespaces/{namespace}/pods/{name}/status"),
            Some(("application/strategic-merge-patch+json", status.to_string())),
        )
        .0
    }

    /// Writes (create, update, patch, delete) the API server audited from
    /// `user` to `resource` (a plural, e.g. `dataplanes`).
    pub fn writes_by(&self, user: &str, resource: &str) -> usize {
        self.requests_by(user, resource, &["create", "update", "patch", "delete"])
    }

    /// Requests of `verbs` (`get`, `list`, `watch`, `create`, ...) the API
    /// server audited from `user` to `resource` (every resource when
    /// empty). Reads are audited for the chart's `kuma-cp` only.
    pub fn requests_by(&self, user: &str, resource: &str, verbs: &[&str]) -> usize {
        // Read as it is being written: the last line may be cut short.
        let log = std::fs::read(self.dir.join("audit.log")).unwrap_or_default();
        String::from_utf8_lossy(&log)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            // A watch is counted when it starts, anything else when done.
            .filter(|e| {
                let started = if e["verb"] == "watch" {
                    "ResponseStarted"
                } else {
                    "ResponseComplete"
                };
                e["stage"] == started
            })
            .filter(|e| e["user"]["username"] == user)
            .filter(|e| resource.is_empty() || e["objectRef"]["resource"] == resource)
            .filter(|e| verbs.iter().any(|v| e["verb"] == *v))
            .count()
    }
}

/// A kubeconfig for `server` verified with `ca`, whose user presents `token`.
pub fn kubeconfig(server: &str, ca: &Path, token: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: test\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: {namespace}\ncurrent-context: test\n",
        ca.display()
    )
}

/// Starts `program` with its output in `log`, in process group `pgid` (a
/// new one when none).
fn spawn(program: &Path, args: &[String], log: &Path, pgid: Option<u32>) -> Child {
    use std::os::unix::process::CommandExt;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .process_group(pgid.unwrap_or(0) as i32);
    cmd.spawn()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", program.display()))
}

/// A process that waits for the test process to end (its stdin, a pipe
/// from us, closes then), stops the control plane's process group, runs
/// the clean-up steps registered with [`ControlPlane::at_exit`] and
/// removes its directory.
fn reaper(pgid: u32, dir: &Path) -> Child {
    let script = format!(
        "read -r _; kill -TERM -{pgid} 2>/dev/null; sleep 2; kill -KILL -{pgid} 2>/dev/null; sh '{dir}/at-exit.sh' >/dev/null 2>&1; rm -rf '{dir}'",
        dir = dir.display()
    );
    // Kept (with its stdin, the pipe) as long as the test process lives.
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the reaper starts")
}

/// The control plane's certificates and keys.
struct Pki {
    ca_pem: String,
    serving_pem: String,
    serving_key_pem: String,
    service_account_key_pem: String,
    service_account_public_pem: String,
}

impl Pki {
    fn generate() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose, SanType,
        };
        let ca_key = KeyPair::generate().expect("a key");
        let mut ca = CertificateParams::default();
        ca.distinguished_name
            .push(DnType::CommonName, "kuma-tests-kubernetes-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("the CA");
        let issuer = rcgen::Issuer::new(ca, &ca_key);

        let key = KeyPair::generate().expect("a key");
        let mut serving = CertificateParams::default();
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.subject_alt_names = vec![
            SanType::IpAddress("127.0.0.1".parse().expect("ip")),
            SanType::IpAddress("10.96.0.1".parse().expect("ip")),
            SanType::DnsName("localhost".try_into().expect("name")),
            SanType::DnsName("kubernetes".try_into().expect("name")),
            SanType::DnsName("kubernetes.default".try_into().expect("name")),
            SanType::DnsName("kubernetes.default.svc".try_into().expect("name")),
            SanType::DnsName(
                "kubernetes.default.svc.cluster.local"
                    .try_into()
                    .expect("name"),
            ),
        ];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&key, &issuer).expect("the serving cert");
        let service_account = KeyPair::generate().expect("a key");
        Pki {
            ca_pem: ca_cert.pem(),
            serving_pem: serving_cert.pem(),
            serving_key_pem: key.serialize_pem(),
            service_account_key_pem: service_account.serialize_pem(),
            service_account_public_pem: service_account.public_key_pem(),
        }
    }
}

/// Now, as the API's MicroTime.
pub fn now() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_micros()
    )
}
