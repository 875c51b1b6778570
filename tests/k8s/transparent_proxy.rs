//! Transparent proxying for real: two "pods" are network namespaces this
//! test builds (`ip netns`, veth pairs), each set up as `kuma-init` sets a
//! pod up (`kumactl install transparent-proxy`: nft iptables in one,
//! legacy in the other, each detected) and running `kuma-dp` and Envoy as
//! UID 5678. An unmodified client (bash's `/dev/tcp`) connecting to the
//! echo Service's address is carried through both Envoys to the echo
//! server; with mTLS on, only once a TrafficPermission allows it. Needs
//! root (`make test` runs as root here) and Debian's iptables.

use kuma_test_support as common;
use kuma_test_support::cluster::control_plane;

use common::{bin, envoy_executable, eventually, run_ok};
use control_plane::ControlPlane;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A network namespace, removed (with its veth pairs) on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        run_ok("ip", &["netns", "add", &name]);
        run_ok("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Netns(name)
    }

    fn exec(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0]).arg(program);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pod(name: &str, app: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": {"app": app},
                        "annotations": {"kuma.io/sidecar-injected": "true",
                                        "kuma.io/transparent-proxying": "enabled",
                                        "kuma.io/transparent-proxying-inbound-port": "15006",
                                        "kuma.io/transparent-proxying-outbound-port": "15001"}},
           "spec": {"serviceAccountName": app, "containers": [{"name": app, "image": app}]},
           "status": {"phase": "Running", "podIP": ip,
                      "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn service(name: &str, target: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"selector": {"app": name},
                    "ports": [{"port": 80, "targetPort": target}]}})
}

/// Sends `hello` from inside `ns` to `ip:80` with bash's `/dev/tcp`, as an
/// unmodified application would; answers what came back.
fn hello(ns: &Netns, ip: &str) -> String {
    let script = format!("exec 3<>/dev/tcp/{ip}/80 && printf hello >&3 && timeout 3 head -c 5 <&3");
    let out = ns
        .exec(Path::new("/bin/bash"))
        .args(["-c", &script])
        .output()
        .expect("bash runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_unmodified_client_reaches_a_service_through_both_redirected_envoys() {
    let api = ControlPlane::shared();
    let _only = api.exclusive();
    let demo = api.namespace("demo", json!({"kuma.io/sidecar-injection": "enabled"}));
    let client_token = api.service_account_token(&demo, "client");
    let echo_token = api.service_account_token(&demo, "echo");
    let r = 1 + rand::random::<u8>() % 250;
    let (a, b) = (format!("kuma{r}a"), format!("kuma{r}b"));
    let (client_ns, echo_ns) = (Netns::new(format!("{a}-ns")), Netns::new(format!("{b}-ns")));
    // Each pod reaches the host (and the control plane) over its own veth
    // pair, and the other pod over a third one.
    let host_ip = format!("10.250.{r}.1");
    for (ns, host_side, net) in [(&client_ns, &a, 250), (&echo_ns, &b, 251)] {
        let peer = format!("{host_side}p");
        run_ok(
            "ip",
            &[
                "link", "add", host_side, "type", "veth", "peer", "name", &peer,
            ],
        );
        run_ok("ip", &["link", "set", &peer, "netns", &ns.0]);
        run_ok(
            "ip",
            &[
                "addr",
                "add",
                &format!("10.{net}.{r}.1/24"),
                "dev",
                host_side,
            ],
        );
        run_ok("ip", &["link", "set", host_side, "up"]);
        run_ok(
            "ip",
            &[
                "-n",
                &ns.0,
                "addr",
                "add",
                &format!("10.{net}.{r}.2/24"),
                "dev",
                &peer,
            ],
        );
        run_ok("ip", &["-n", &ns.0, "link", "set", &peer, "up"]);
        run_ok(
            "ip",
            &[
                "-n",
                &ns.0,
                "route",
                "add",
                "default",
                "via",
                &format!("10.{net}.{r}.1"),
            ],
        );
    }
    let link = format!("kuma{r}l");
    run_ok(
        "ip",
        &[
            "link",
            "add",
            &link,
            "netns",
            &client_ns.0,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{link}p"),
            "netns",
            &echo_ns.0,
        ],
    );
    let (client_ip, echo_ip) = (format!("10.252.{r}.1"), format!("10.252.{r}.2"));
    run_ok(
        "ip",
        &[
            "-n",
            &client_ns.0,
            "addr",
            "add",
            &format!("{client_ip}/24"),
            "dev",
            &link,
        ],
    );
    run_ok("ip", &["-n", &client_ns.0, "link", "set", &link, "up"]);
    run_ok(
        "ip",
        &[
            "-n",
            &echo_ns.0,
            "addr",
            "add",
            &format!("{echo_ip}/24"),
            "dev",
            &format!("{link}p"),
        ],
    );
    run_ok(
        "ip",
        &["-n", &echo_ns.0, "link", "set", &format!("{link}p"), "up"],
    );

    let cp = api.kuma_cp(&[("KUMA_GENERAL_ADVERTISED_HOSTNAME", &host_ip)]);
    let services = format!("/api/v1/namespaces/{demo}/services");
    let echo_vip = api.apply(&services, service("echo", 7000))["spec"]["clusterIP"]
        .as_str()
        .expect("a cluster IP")
        .to_string();
    api.apply(&services, service("client", 8080));
    let pods = format!("/api/v1/namespaces/{demo}/pods");
    api.apply_with_status(&pods, pod("client-1", "client", &client_ip));
    api.apply_with_status(&pods, pod("echo-1", "echo", &echo_ip));

    // kuma-init: the echo pod's node uses legacy iptables (it holds a rule
    // already), the client's the default (nft).
    run_ok(
        "ip",
        &[
            "netns",
            "exec",
            &echo_ns.0,
            "iptables-legacy",
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            "9",
            "-j",
            "ACCEPT",
        ],
    );
    let kumactl = bin("kumactl");
    for (ns, backend) in [(&client_ns, "Nft"), (&echo_ns, "Legacy")] {
        let out = ns
            .exec(&kumactl)
            .args(["install", "transparent-proxy", "--kuma-dp-uid", "5678"])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains(&format!("({backend} iptables)")), "{said}");
    }

    // The echo application, as root in its pod.
    let _echo = Running(
        echo_ns
            .exec(&bin("kuma-tcp-echo"))
            .args(["run", "--port", "7000", "--address", "0.0.0.0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The sidecars, as UID 5678, configured from the environment.
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let bootstrap_port = cp.bootstrap.rsplit(':').next().unwrap().to_string();
    let mut sidecars = Vec::new();
    for (ns, name, token) in [
        (&client_ns, "client-1", &client_token),
        (&echo_ns, "echo-1", &echo_token),
    ] {
        let token_file = dir.path().join(format!("{name}-token"));
        std::fs::write(&token_file, token).unwrap();
        let config_dir = dir.path().join(name);
        std::fs::create_dir(&config_dir).unwrap();
        std::fs::set_permissions(&config_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
        sidecars.push(Running(
            ns.exec(Path::new("/usr/bin/setpriv"))
                .args(["--reuid=5678", "--regid=5678", "--clear-groups"])
                .arg(bin("kuma-dp"))
                .arg("run")
                .env_clear()
                .env(
                    "KUMA_CONTROL_PLANE_URL",
                    format!("http://{host_ip}:{bootstrap_port}"),
                )
                // The CA itself: the file is in kuma-cp's work directory,
                // which UID 5678 cannot enter.
                .env(
                    "KUMA_CONTROL_PLANE_CA_CERT",
                    std::fs::read_to_string(cp.ca_file.as_ref().unwrap()).unwrap(),
                )
                .env("KUMA_DATAPLANE_MESH", "default")
                .env("KUMA_DATAPLANE_NAME", format!("{name}.{demo}"))
                .env("KUMA_DATAPLANE_ADMIN_PORT", "9901")
                .env("KUMA_DATAPLANE_RUNTIME_TOKEN_PATH", &token_file)
                .env("KUMA_DATAPLANE_RUNTIME_BINARY_PATH", envoy_executable())
                .env("KUMA_DATAPLANE_RUNTIME_CONFIG_DIR", &config_dir)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        ));
    }
    let logs = || {
        ["client-1", "echo-1"]
            .iter()
            .map(|n| {
                std::fs::read_to_string(dir.path().join(format!("{n}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    for ns in [&client_ns, &echo_ns] {
        assert!(
            eventually(Duration::from_secs(30), || ns
                .exec(&bin("kuma-dp"))
                .args(["probe", "--admin-port", "9901"])
                .status()
                .is_ok_and(|s| s.success())),
            "a sidecar did not become ready:\n{}",
            logs()
        );
    }

    assert!(
        eventually(Duration::from_secs(15), || hello(&client_ns, &echo_vip)
            == "hello"),
        "no echo through the Service address; sidecars:\n{}",
        logs()
    );
    // It went through the echo pod's Envoy, whose inbound took it.
    let stats = Command::new("ip")
        .args(["netns", "exec", &echo_ns.0, "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9901 && printf 'GET /stats?filter=inbound HTTP/1.1\\r\\nHost: admin\\r\\nConnection: close\\r\\n\\r\\n' >&3 && timeout 3 cat <&3"])
        .output()
        .unwrap();
    let stats = String::from_utf8_lossy(&stats.stdout);
    assert!(
        stats.lines().any(|l| l
            .starts_with(&format!("tcp.inbound_{echo_ip}_7000.downstream_cx_total:"))
            && !l.ends_with(": 0")),
        "{stats}"
    );

    // mTLS: denied until a TrafficPermission allows the client.
    api.apply(
        "/apis/kuma.io/v1alpha1/meshes",
        json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "default"},
               "spec": {"mtls": {"enabled": true, "ca": {"builtin": {}}}}}),
    );
    assert!(
        eventually(Duration::from_secs(15), || hello(&client_ns, &echo_vip)
            .is_empty()),
        "traffic flowed with mTLS on and no permission"
    );
    api.apply(
        &format!("/apis/kuma.io/v1alpha1/namespaces/{demo}/trafficpermissions"),
        json!({"apiVersion": "kuma.io/v1alpha1", "kind": "TrafficPermission",
               "metadata": {"name": "client-to-echo"}, "mesh": "default",
               "spec": {"rules": [{"sources": [{"match": {"app": "client"}}],
                                   "destinations": [{"match": {"service": format!("echo_{demo}_svc_80")}}]}]}}),
    );
    assert!(
        eventually(Duration::from_secs(15), || hello(&client_ns, &echo_vip)
            == "hello"),
        "the permission did not open the path; sidecars:\n{}",
        logs()
    );
}
