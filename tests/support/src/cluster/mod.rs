//! A test cluster: a real Kubernetes control plane ([`control_plane`]) and
//! one node of ours, whose small kubelet runs the pods the real scheduler
//! binds to it.
//!
//! - **The node** registers a real `Node` with the kubelet's own
//!   credentials (`system:node:<name>`, Node authorization and
//!   NodeRestriction apply), renews its Lease so the node lifecycle
//!   controller keeps it schedulable, and serves its containers' logs on a
//!   kubelet endpoint, so `kubectl logs` goes through the API server.
//! - **Pods** bound to the node run as local processes, each pod in a
//!   network namespace of its own on a bridge (pod IPs `10.244.R.N`), its
//!   containers started from the pod's own command, arguments and
//!   environment: downward-API values and `$(VAR)` references filled in,
//!   `KUBERNETES_SERVICE_HOST` the `kubernetes` Service's cluster IP, a
//!   service-account token the kubelet asked the API server for
//!   (TokenRequest bound to the pod), its CA and namespace at
//!   `/var/run/secrets/kubernetes.io/serviceaccount`, Secret volumes at
//!   their mount paths, a temporary directory of each container's own
//!   (`TMPDIR`), and the user IDs the security contexts ask for. Init
//!   containers run in order (a native sidecar is started and waited for by
//!   its startup probe), then the containers; exec, HTTP and TCP probes
//!   decide readiness, which is written as pod status through the API, as a
//!   kubelet does. A pod being deleted has its processes stopped and its
//!   deletion finished by the kubelet.
//! - **Images** are this crate's programs: an image's name picks a
//!   directory of the binaries it holds, put first on `PATH` (the base
//!   system stands for the image's lower layers), and its entrypoint.
//! - **Services**: each pod's `/etc/hosts` (through `ip netns`'
//!   per-namespace `/etc/netns/NS/hosts`) answers a Service's DNS names
//!   with its cluster IP, and the node's iptables play kube-proxy: a
//!   cluster IP's connections go to a pod behind it (the `kubernetes`
//!   Service's to the API server).
//!
//! Deployments, ReplicaSets, endpoints, namespaces and garbage collection
//! are the real controller-manager's. Everything the node sets up (bridge,
//! iptables chain, network namespaces, processes) is removed when the test
//! process ends. Needs root, `ip`, `setpriv` and the iptables the
//! transparent-proxy test uses.

pub mod control_plane;

pub use control_plane::{ControlPlane, NODE};

use crate::{bin, envoy_executable, run_ok};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A clean-up or idempotent set-up step whose failure is no news.
fn quietly(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The node's own rules: pods' connections go through kube-proxy's chain,
/// and what it DNATs back into the pod network is masqueraded, so that the
/// answer returns through the node.
fn node_rules(net: &str, chain: &str) -> [(&'static str, String); 2] {
    [
        ("PREROUTING", format!("-s {net}.0/24 -j {chain}")),
        (
            "POSTROUTING",
            format!("-s {net}.0/24 -d {net}.0/24 -m conntrack --ctstate DNAT -j MASQUERADE"),
        ),
    ]
}

/// What an image holds.
struct Image {
    /// Its binaries: name on `PATH`, the file.
    files: Vec<(&'static str, PathBuf)>,
    entrypoint: Vec<String>,
}

/// The image a reference names, from the programs this node has.
fn image(reference: &str) -> Option<Image> {
    let name = reference.rsplit('/').next()?.split(':').next()?;
    let program = |p: &'static str| (p, bin(p));
    let (files, entrypoint): (Vec<(&'static str, PathBuf)>, &[&str]) = match name {
        "kuma-cp" => (vec![program("kuma-cp")], &["kuma-cp"]),
        "kuma-injector" => (vec![program("kuma-injector")], &["kuma-injector"]),
        "kuma-dp" => (
            vec![program("kuma-dp"), ("envoy", envoy_executable())],
            &["kuma-dp"],
        ),
        "kuma-init" => (
            vec![program("kumactl")],
            &["kumactl", "install", "transparent-proxy"],
        ),
        "kuma-tcp-echo" => (vec![program("kuma-tcp-echo")], &["kuma-tcp-echo"]),
        // Docker's `bash` image: the base system's bash and coreutils.
        "bash" => (Vec::new(), &["bash"]),
        _ => return None,
    };
    Some(Image {
        files,
        entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
    })
}

fn container_image(container: &Value) -> Result<Image, String> {
    image(container["image"].as_str().unwrap_or(""))
        .ok_or_else(|| format!("no image {} on this node", container["image"]))
}

/// The base system, standing for the lower layers of every image.
const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A running pod: its network namespace and processes.
struct PodRun {
    netns: String,
    veth: String,
    ip: String,
    dir: PathBuf,
    processes: Arc<Mutex<Vec<Child>>>,
    stop: Arc<AtomicBool>,
}

impl PodRun {
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for child in self.processes.lock().unwrap().iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        quietly("ip", &["netns", "del", &self.netns]);
        quietly("ip", &["link", "del", &self.veth]);
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.netns));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the kubelet shares with its pod threads.
struct Node {
    cp: &'static ControlPlane,
    /// `10.244.R`: this cluster's pod network.
    net: String,
    bridge: String,
    dir: PathBuf,
    pods: Mutex<HashMap<String, PodRun>>,
    next_ip: Mutex<u8>,
    /// kube-proxy's chain in the node's nat table, and its rules now.
    proxy_chain: String,
    proxy: Mutex<Vec<String>>,
}

impl Node {
    /// A request with the kubelet's own credentials.
    fn request(&self, method: &str, path: &str, body: Option<(&str, String)>) -> (u16, Value) {
        self.cp
            .request_as(&self.cp.tokens.kubelet, method, path, body)
    }
}

/// The node and its kubelet, running until the test process ends.
pub struct Cluster {
    pub cp: &'static ControlPlane,
    node: Arc<Node>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

impl Cluster {
    /// The process's cluster (the shared control plane with Kuma's
    /// CRDs, and the node), started on first use.
    pub fn shared() -> &'static Cluster {
        CLUSTER.get_or_init(|| Cluster::start(ControlPlane::shared()))
    }

    fn start(cp: &'static ControlPlane) -> Cluster {
        let r = 1 + rand::random::<u8>() % 250;
        let net = format!("10.244.{r}");
        let bridge = format!("kb{r}");
        quietly("ip", &["link", "del", &bridge]);
        run_ok("ip", &["link", "add", &bridge, "type", "bridge"]);
        run_ok(
            "ip",
            &["addr", "add", &format!("{net}.1/24"), "dev", &bridge],
        );
        run_ok("ip", &["link", "set", &bridge, "up"]);
        cp.at_exit(&format!("ip link del {bridge}"));
        // kube-proxy: pods' connections to cluster IPs are routed through
        // the node, DNATed there and masqueraded.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
        let proxy_chain = format!("KUBE-{r}");
        quietly("iptables", &["-t", "nat", "-N", &proxy_chain]);
        for (table_chain, rule) in node_rules(&net, &proxy_chain) {
            let mut args = vec!["-t", "nat", "-A", table_chain];
            args.extend(rule.split(' '));
            run_ok("iptables", &args);
            cp.at_exit(&format!("iptables -t nat -D {table_chain} {rule}"));
        }
        cp.at_exit(&format!(
            "iptables -t nat -F {proxy_chain}; iptables -t nat -X {proxy_chain}"
        ));
        let dir = cp.dir.join("node");
        std::fs::create_dir_all(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let node = Arc::new(Node {
            cp,
            net,
            bridge,
            dir,
            pods: Mutex::new(HashMap::new()),
            next_ip: Mutex::new(2),
            proxy_chain,
            proxy: Mutex::new(Vec::new()),
        });
        let looping = node.clone();
        std::thread::spawn(move || {
            loop {
                reconcile_pods(&looping);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        cp.register_node(serve_logs(node.dir.clone()));
        Cluster { cp, node }
    }

    /// A container's output so far (what `kubectl logs` shows).
    pub fn log(&self, namespace: &str, pod: &str, container: &str) -> String {
        std::fs::read_to_string(log_file(&self.node.dir, namespace, pod, container))
            .unwrap_or_default()
    }
}

/// The kubelet endpoint the API server asks for container logs
/// (`kubectl logs`): `/containerLogs/{namespace}/{pod}/{container}`, with
/// `tailLines`. HTTPS with a certificate of its own, which the API server
/// does not verify unless told a kubelet CA (as in a default cluster).
fn serve_logs(dir: PathBuf) -> u16 {
    use axum::extract::{Path as UrlPath, Query};
    // The HTTPS API's own generated certificate, no client certificates.
    let tls = kuma_api::api::https::tls_config(
        &kuma_api::api::settings::ApiServerConfig::default(),
        None,
        "",
    )
    .expect("a TLS configuration");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let app = axum::Router::new().route(
        "/containerLogs/{namespace}/{pod}/{container}",
        axum::routing::get(
            move |UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
                  Query(query): Query<HashMap<String, String>>| {
                let file = log_file(&dir, &namespace, &pod, &container);
                async move {
                    let text = std::fs::read_to_string(file).unwrap_or_default();
                    match query.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
                        Some(n) => {
                            let lines: Vec<&str> = text.lines().collect();
                            let mut tail = lines[lines.len().saturating_sub(n)..].join("\n");
                            tail.push('\n');
                            tail
                        }
                        None => text,
                    }
                }
            },
        ),
    );
    runtime.spawn(kuma_runtime::runtime::serve_tls(
        "kubelet",
        listener,
        tls,
        app,
        kuma_runtime::runtime::CancellationToken::new(),
    ));
    // The runtime lives as long as the test process.
    std::mem::forget(runtime);
    port
}

fn log_file(dir: &Path, namespace: &str, pod: &str, container: &str) -> PathBuf {
    dir.join(format!("{namespace}_{pod}_{container}.log"))
}

fn key(object: &Value) -> String {
    format!(
        "{}/{}",
        object["metadata"]["namespace"].as_str().unwrap_or(""),
        object["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// The kubelet: starts the pods bound to this node, stops and finishes
/// the deletion of those being deleted, keeps `/etc/hosts` and kube-proxy's
/// rules.
fn reconcile_pods(node: &Arc<Node>) {
    let (status, list) = node.request(
        "GET",
        &format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE}"),
        None,
    );
    if status != 200 {
        return; // the API server restarting: the next round lists again
    }
    let pods = list["items"].as_array().cloned().unwrap_or_default();
    let present: Vec<String> = pods
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(key)
        .collect();
    {
        let mut running = node.pods.lock().unwrap();
        let gone: Vec<String> = running
            .keys()
            .filter(|k| !present.contains(k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(pod) = running.remove(&k) {
                pod.stop();
            }
        }
    }
    for pod in &pods {
        let k = key(pod);
        if !pod["metadata"]["deletionTimestamp"].is_null() {
            // Its processes are stopped: the deletion is final.
            node.request(
                "DELETE",
                &pod_path(pod),
                Some((
                    "application/json",
                    json!({"gracePeriodSeconds": 0, "preconditions": {"uid": pod["metadata"]["uid"]}})
                        .to_string(),
                )),
            );
            continue;
        }
        if node.pods.lock().unwrap().contains_key(&k) {
            continue;
        }
        match start_pod(node, pod) {
            Ok(run) => {
                node.pods.lock().unwrap().insert(k, run);
            }
            Err(e) => eprintln!("cluster: pod {k} does not start: {e}"),
        }
    }
    let services = node.cp.list("/api/v1/services");
    let rules = proxy_rules(node, &services);
    let mut applied = node.proxy.lock().unwrap();
    if *applied != rules {
        let chain = &node.proxy_chain;
        quietly("iptables", &["-t", "nat", "-F", chain]);
        for rule in &rules {
            let mut args = vec!["-t", "nat", "-A", chain.as_str()];
            args.extend(rule.split(' '));
            quietly("iptables", &args);
        }
        *applied = rules;
    }
    drop(applied);
    let hosts = hosts_entries(&services);
    for (k, run) in node.pods.lock().unwrap().iter() {
        let namespace = k.split('/').next().unwrap_or("");
        let text = hosts_file(&hosts, namespace);
        let path = format!("/etc/netns/{}/hosts", run.netns);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            let _ = std::fs::write(&path, text);
        }
    }
}

/// (namespace, service, cluster IP) of every Service that has one.
fn hosts_entries(services: &[Value]) -> Vec<(String, String, String)> {
    services
        .iter()
        .filter_map(|service| {
            let ip = service["spec"]["clusterIP"]
                .as_str()
                .filter(|ip| *ip != "None")?;
            Some((
                service["metadata"]["namespace"].as_str()?.to_string(),
                service["metadata"]["name"].as_str()?.to_string(),
                ip.to_string(),
            ))
        })
        .collect()
}

/// kube-proxy's rules: each cluster IP and port DNATed to a pod behind the
/// Service (a ready one if there is), masqueraded so that the answer comes
/// back the same way; the `kubernetes` Service's to the API server, which
/// listens on the node.
fn proxy_rules(node: &Node, services: &[Value]) -> Vec<String> {
    let pods = node.cp.list("/api/v1/pods");
    let api_port = node.cp.url.rsplit(':').next().unwrap_or("443");
    let mut rules = vec![format!(
        "-d {}/32 -p tcp --dport 443 -j DNAT --to-destination {}.1:{api_port}",
        control_plane::KUBERNETES_SERVICE_IP,
        node.net
    )];
    for service in services {
        let Some(cluster_ip) = service["spec"]["clusterIP"]
            .as_str()
            .filter(|ip| *ip != "None")
        else {
            continue;
        };
        let namespace = &service["metadata"]["namespace"];
        let selector = service["spec"]["selector"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut backends: Vec<&Value> = pods
            .iter()
            .filter(|p| {
                p["metadata"]["namespace"] == *namespace
                    && !selector.is_empty()
                    && selector
                        .iter()
                        .all(|(k, v)| p["metadata"]["labels"][k] == *v)
                    && p["status"]["podIP"].is_string()
            })
            .collect();
        let ready = |p: &&Value| {
            p["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        };
        backends.sort_by_key(|p| !ready(p));
        let Some(backend) = backends.first() else {
            continue;
        };
        let pod_ip = backend["status"]["podIP"].as_str().unwrap_or("");
        for port in service["spec"]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let number = port["port"].as_u64().unwrap_or(0);
            let target = match &port["targetPort"] {
                Value::Number(n) => n.as_u64(),
                Value::String(name) => backend["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                    .find(|p| p["name"] == name.as_str())
                    .and_then(|p| p["containerPort"].as_u64()),
                _ => Some(number),
            };
            if let Some(target) = target {
                rules.push(format!(
                    "-d {cluster_ip}/32 -p tcp --dport {number} -j DNAT --to-destination {pod_ip}:{target}"
                ));
            }
        }
    }
    rules
}

fn hosts_file(entries: &[(String, String, String)], namespace: &str) -> String {
    let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
    for (ns, name, ip) in entries {
        text.push_str(&format!(
            "{ip} {name}.{ns}.svc.cluster.local {name}.{ns}.svc {name}.{ns}"
        ));
        if ns == namespace {
            text.push_str(&format!(" {name}"));
        }
        text.push('\n');
    }
    text
}

fn pod_path(pod: &Value) -> String {
    format!(
        "/api/v1/namespaces/{}/pods/{}",
        pod["metadata"]["namespace"].as_str().unwrap_or(""),
        pod["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// Writes the pod's status, as the kubelet reports it.
fn report(node: &Node, pod: &Value, ip: &str, phase: &str, ready: bool) {
    let meta = &pod["metadata"];
    let now = control_plane::now();
    let started = pod["status"]["startTime"].as_str().unwrap_or(&now);
    node.cp.report_pod(
        (
            meta["namespace"].as_str().unwrap_or(""),
            meta["name"].as_str().unwrap_or(""),
        ),
        (ip, started),
        phase,
        ready,
    );
}

fn start_pod(node: &Arc<Node>, pod: &Value) -> Result<PodRun, String> {
    let n = {
        let mut next = node.next_ip.lock().unwrap();
        let n = *next;
        *next = next.checked_add(1).ok_or("the pod network is full")?;
        n
    };
    let r = node.net.rsplit('.').next().unwrap_or("0");
    let netns = format!("kp{r}-{n}");
    let veth = format!("kv{r}-{n}");
    let ip = format!("{}.{n}", node.net);
    let dir = node.dir.join(&netns);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    quietly("ip", &["netns", "del", &netns]);
    run_ok("ip", &["netns", "add", &netns]);
    run_ok("ip", &["-n", &netns, "link", "set", "lo", "up"]);
    run_ok(
        "ip",
        &[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ],
    );
    run_ok("ip", &["link", "set", &veth, "master", &node.bridge]);
    run_ok("ip", &["link", "set", &veth, "up"]);
    run_ok(
        "ip",
        &[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ],
    );
    run_ok("ip", &["-n", &netns, "link", "set", "eth0", "up"]);
    run_ok(
        "ip",
        &[
            "-n",
            &netns,
            "route",
            "add",
            "default",
            "via",
            &format!("{}.1", node.net),
        ],
    );
    node.cp
        .at_exit(&format!("ip netns del {netns}; rm -rf /etc/netns/{netns}"));
    std::fs::create_dir_all(format!("/etc/netns/{netns}")).map_err(|e| e.to_string())?;
    std::fs::write(
        format!("/etc/netns/{netns}/hosts"),
        hosts_file(
            &hosts_entries(&node.cp.list("/api/v1/services")),
            pod["metadata"]["namespace"].as_str().unwrap_or(""),
        ),
    )
    .map_err(|e| e.to_string())?;
    report(node, pod, &ip, "Pending", false);
    let run = PodRun {
        netns,
        veth,
        ip,
        dir,
        processes: Arc::new(Mutex::new(Vec::new())),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let context = PodContext {
        node: node.clone(),
        pod: pod.clone(),
        netns: run.netns.clone(),
        ip: run.ip.clone(),
        dir: run.dir.clone(),
        processes: run.processes.clone(),
        stop: run.stop.clone(),
    };
    std::thread::spawn(move || {
        if let Err(e) = context.run() {
            eprintln!("cluster: pod {}: {e}", key(&context.pod));
            report(&context.node, &context.pod, &context.ip, "Failed", false);
        }
    });
    Ok(run)
}

/// One pod's life, on a thread of its own.
struct PodContext {
    node: Arc<Node>,
    pod: Value,
    netns: String,
    ip: String,
    dir: PathBuf,
    processes: Arc<Mutex<Vec<Child>>>,
    stop: Arc<AtomicBool>,
}

impl PodContext {
    fn namespace(&self) -> &str {
        self.pod["metadata"]["namespace"].as_str().unwrap_or("")
    }

    fn name(&self) -> &str {
        self.pod["metadata"]["name"].as_str().unwrap_or("")
    }

    fn run(&self) -> Result<(), String> {
        self.service_account()?;
        let spec = &self.pod["spec"];
        let init = spec["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let containers = spec["containers"].as_array().cloned().unwrap_or_default();
        let mut probed = Vec::new();
        for container in &init {
            if container["restartPolicy"] == "Always" {
                self.start(container)?;
                let probe = container
                    .get("startupProbe")
                    .or(container.get("readinessProbe"));
                if let Some(probe) = probe {
                    self.wait_for(container, probe, Duration::from_secs(60))?;
                }
                probed.push(container.clone());
            } else {
                let mut child = self.start_child(container)?;
                let status = child.wait().map_err(|e| e.to_string())?;
                if !status.success() {
                    return Err(format!(
                        "init container {} exited with {status}",
                        container["name"]
                    ));
                }
            }
        }
        for container in &containers {
            self.start(container)?;
            probed.push(container.clone());
        }
        // Readiness, reported as it changes.
        let mut last = None;
        while !self.stop.load(Ordering::SeqCst) {
            let ready = probed.iter().all(|c| match c.get("readinessProbe") {
                Some(probe) => self.probe(c, probe),
                None => true,
            });
            if last != Some(ready) {
                report(&self.node, &self.pod, &self.ip, "Running", ready);
                last = Some(ready);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(())
    }

    /// The pod's service account, mounted where pods find it: a token the
    /// kubelet asks the API server for (TokenRequest, bound to the pod, as
    /// a projected volume's), the cluster's CA and the namespace.
    fn service_account(&self) -> Result<(), String> {
        let account = self.pod["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default");
        let (status, answer) = self.node.request(
            "POST",
            &format!(
                "/api/v1/namespaces/{}/serviceaccounts/{account}/token",
                self.namespace()
            ),
            Some((
                "application/json",
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                       "spec": {"expirationSeconds": 3607,
                                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name(),
                                                   "uid": self.pod["metadata"]["uid"]}}})
                .to_string(),
            )),
        );
        let token = answer["status"]["token"]
            .as_str()
            .ok_or_else(|| format!("TokenRequest for {account}: {status} {answer}"))?;
        let dir = self.dir.join("serviceaccount");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("token"), token).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("ca.crt"), &self.node.cp.ca_pem).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("namespace"), self.namespace()).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn wait_for(&self, container: &Value, probe: &Value, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.stop.load(Ordering::SeqCst) {
                return Err("stopped".into());
            }
            if self.probe(container, probe) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "{} never passed its startup probe",
            container["name"]
        ))
    }

    fn probe(&self, container: &Value, probe: &Value) -> bool {
        if let Some(command) = probe["exec"]["command"].as_array() {
            let argv: Vec<String> = command
                .iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            return self
                .command(container, &argv, false)
                .map(|mut c| {
                    c.stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                })
                .unwrap_or(false);
        }
        let port = |p: &Value| p["port"].as_u64().unwrap_or(0);
        if probe["httpGet"].is_object() {
            let url = format!(
                "http://{}:{}{}",
                self.ip,
                port(&probe["httpGet"]),
                probe["httpGet"]["path"].as_str().unwrap_or("/")
            );
            return reqwest::blocking::Client::new()
                .get(url)
                .timeout(Duration::from_secs(1))
                .send()
                .is_ok_and(|r| r.status().is_success());
        }
        if probe["tcpSocket"].is_object() {
            let address = format!("{}:{}", self.ip, port(&probe["tcpSocket"]));
            return address.parse().is_ok_and(|a| {
                std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok()
            });
        }
        true
    }

    fn start(&self, container: &Value) -> Result<(), String> {
        let child = self.start_child(container)?;
        self.processes.lock().unwrap().push(child);
        Ok(())
    }

    fn start_child(&self, container: &Value) -> Result<Child, String> {
        let name = container["name"].as_str().unwrap_or("");
        let entrypoint = container_image(container)?.entrypoint;
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut argv = match container["command"].as_array() {
            Some(_) => strings(&container["command"]),
            None => entrypoint,
        };
        argv.extend(strings(&container["args"]));
        let log = std::fs::File::create(log_file(
            &self.node.dir,
            self.namespace(),
            self.name(),
            name,
        ))
        .map_err(|e| e.to_string())?;
        let mut command = self.command(container, &argv, true)?;
        // In the control plane's process group, stopped with it.
        use std::os::unix::process::CommandExt;
        command
            .process_group(self.node.cp.pgid as i32)
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{name}: {e}"))
    }

    /// The process of `argv` inside `container`: the pod's network
    /// namespace, the image's `PATH`, the container's environment, its
    /// mounts and its user.
    fn command(
        &self,
        container: &Value,
        argv: &[String],
        fresh_tmp: bool,
    ) -> Result<Command, String> {
        let name = container["name"].as_str().unwrap_or("");
        let files = container_image(container)?.files;
        let image_dir = self.dir.join(format!("image-{name}"));
        if !image_dir.exists() {
            std::fs::create_dir_all(&image_dir).map_err(|e| e.to_string())?;
            for (file, target) in &files {
                std::os::unix::fs::symlink(target, image_dir.join(file))
                    .map_err(|e| e.to_string())?;
            }
        }
        let tmp = self.dir.join(format!("tmp-{name}"));
        if fresh_tmp || !tmp.exists() {
            std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))
                .map_err(|e| e.to_string())?;
        }
        let mut mounts = vec![(
            self.dir.join("serviceaccount"),
            PathBuf::from(SERVICE_ACCOUNT_DIR),
        )];
        mounts.extend(self.secret_volumes(container)?);
        // A bind mount needs its mount point: the pod's mount namespace
        // sees the node's file system, so it is made there, empty.
        for (_, target) in &mounts {
            std::fs::create_dir_all(target)
                .map_err(|e| format!("mount point {}: {e}", target.display()))?;
        }
        let security = |field: &str| {
            container["securityContext"][field]
                .as_u64()
                .or(self.pod["spec"]["securityContext"][field].as_u64())
        };
        let uid = security("runAsUser").unwrap_or(0);
        let gid = security("runAsGroup").unwrap_or(uid);
        // A shell in the pod's mount namespace (ip netns exec gives each
        // process one of its own) binds the volumes, then becomes the
        // container's user and program.
        let mut script = String::new();
        let mut own = vec!["KUBELET_UID".to_string(), "KUBELET_GID".to_string()];
        for (i, _) in mounts.iter().enumerate() {
            script.push_str(&format!("mount --bind \"$M{i}\" \"$T{i}\" && "));
            own.push(format!("M{i}"));
            own.push(format!("T{i}"));
        }
        script.push_str(&format!(
            "u=$KUBELET_UID g=$KUBELET_GID && unset {} && exec setpriv --reuid=\"$u\" --regid=\"$g\" --clear-groups -- \"$@\"",
            own.join(" ")
        ));
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.netns, "sh", "-c", &script, "sh"])
            .args(argv)
            .env_clear()
            .env("KUBELET_UID", uid.to_string())
            .env("KUBELET_GID", gid.to_string());
        for (i, (source, target)) in mounts.iter().enumerate() {
            command
                .env(format!("M{i}"), source)
                .env(format!("T{i}"), target);
        }
        // A temporary directory of the container's own, as TMPDIR rather
        // than mounted over /tmp: the programs' files (this checkout, its
        // .venv) may live under /tmp themselves.
        command.env("TMPDIR", &tmp);
        for (k, v) in self.environment(container, &image_dir) {
            command.env(k, v);
        }
        // The first argument is looked up on the image's PATH.
        Ok(command)
    }

    /// The container's environment, as the kubelet builds it.
    fn environment(&self, container: &Value, image_dir: &Path) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert(
            "PATH".to_string(),
            format!("{}:{BASE_PATH}", image_dir.display()),
        );
        env.insert("HOSTNAME".to_string(), self.name().to_string());
        env.insert(
            "KUBERNETES_SERVICE_HOST".to_string(),
            control_plane::KUBERNETES_SERVICE_IP.to_string(),
        );
        env.insert("KUBERNETES_SERVICE_PORT".to_string(), "443".to_string());
        for var in container["env"].as_array().cloned().unwrap_or_default() {
            let name = var["name"].as_str().unwrap_or("").to_string();
            let value = if let Some(path) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                match path {
                    "metadata.name" => self.name().to_string(),
                    "metadata.namespace" => self.namespace().to_string(),
                    "status.podIP" => self.ip.clone(),
                    "spec.serviceAccountName" => self.pod["spec"]["serviceAccountName"]
                        .as_str()
                        .unwrap_or("default")
                        .to_string(),
                    _ => String::new(),
                }
            } else {
                expand(var["value"].as_str().unwrap_or(""), &env)
            };
            env.insert(name, value);
        }
        env
    }

    /// Secret volumes of the pod that `container` mounts, written out.
    fn secret_volumes(&self, container: &Value) -> Result<Vec<(PathBuf, PathBuf)>, String> {
        use base64::Engine;
        let mut mounts = Vec::new();
        for mount in container["volumeMounts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let volume = self.pod["spec"]["volumes"]
                .as_array()
                .and_then(|v| v.iter().find(|v| v["name"] == mount["name"]).cloned())
                .ok_or_else(|| format!("no volume {}", mount["name"]))?;
            let Some(secret) = volume["secret"]["secretName"].as_str() else {
                continue;
            };
            let path = format!("/api/v1/namespaces/{}/secrets/{secret}", self.namespace());
            let (status, object) = self.node.request("GET", &path, None);
            if status != 200 {
                return Err(format!("secret {secret}: {status} {object}"));
            }
            // Each volume its own directory: two volumes may project
            // different keys of one Secret.
            let dir = self
                .dir
                .join(format!("volume-{}", volume["name"].as_str().unwrap_or("")));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let data = object["data"].as_object().cloned().unwrap_or_default();
            // `items` projects the keys listed, at their paths; without it,
            // every key, named as itself.
            let files: Vec<(String, String)> = match volume["secret"]["items"].as_array() {
                Some(items) => items
                    .iter()
                    .map(|i| {
                        (
                            i["key"].as_str().unwrap_or("").to_string(),
                            i["path"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect(),
                None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
            };
            for (key, file) in files {
                let value = data
                    .get(&key)
                    .ok_or_else(|| format!("secret {secret} has no key {key}"))?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(value.as_str().unwrap_or(""))
                    .map_err(|e| e.to_string())?;
                std::fs::write(dir.join(file), bytes).map_err(|e| e.to_string())?;
            }
            mounts.push((
                dir,
                PathBuf::from(mount["mountPath"].as_str().unwrap_or("/")),
            ));
        }
        Ok(mounts)
    }
}

/// `$(VAR)` references to earlier variables, as Kubernetes expands them.
fn expand(value: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find(')') {
            Some(end) => {
                let name = &rest[start + 2..start + 2 + end];
                match env.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 3 + end]),
                }
                rest = &rest[start + 3 + end..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}
