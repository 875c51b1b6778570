//! Real `kubectl` and `helm` (installed into `.venv/bin` by `make deps`),
//! each run as a process against a kubeconfig, with their caches and
//! configuration in a directory of the test's own.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A program `make deps` installs into `.venv/bin` (kubectl, Helm, and
/// `make kube`'s Kubernetes control plane); panics naming the fix when it
/// is missing.
pub fn venv_tool(name: &str) -> PathBuf {
    let path = crate::repository().join(".venv/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `make deps` (or `make kube` for the Kubernetes control plane)",
        path.display()
    );
    path
}

pub struct KubeClients {
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

/// What a client printed, and whether it succeeded.
pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl KubeClients {
    pub fn new(kubeconfig: &Path) -> KubeClients {
        KubeClients {
            kubeconfig: kubeconfig.to_path_buf(),
            home: tempfile::tempdir().expect("a home for the clients"),
        }
    }

    fn run(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Ran {
        use std::io::Write;
        let home = self.home.path();
        let mut child = Command::new(venv_tool(tool))
            .args(args)
            .current_dir(crate::repository())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", home)
            .env("KUBECACHEDIR", home.join("kube-cache"))
            .env("HELM_CACHE_HOME", home.join("helm-cache"))
            .env("HELM_CONFIG_HOME", home.join("helm-config"))
            .env("HELM_DATA_HOME", home.join("helm-data"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{tool} starts: {e}"));
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("stdin written");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("the client ends");
        Ran {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `kubectl ARGS`, which must succeed; its standard output.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.must("kubectl", args, None)
    }

    /// `kubectl ARGS` with `stdin` (for `-f -`), which must succeed.
    pub fn kubectl_with(&self, args: &[&str], stdin: &str) -> String {
        self.must("kubectl", args, Some(stdin))
    }

    /// `kubectl ARGS`, succeed or fail.
    pub fn try_kubectl(&self, args: &[&str]) -> Ran {
        self.run("kubectl", args, None)
    }

    /// `kubectl ARGS` with `stdin`, succeed or fail.
    pub fn try_kubectl_with(&self, args: &[&str], stdin: &str) -> Ran {
        self.run("kubectl", args, Some(stdin))
    }

    /// A step of `examples/kubernetes/journey.sh`, run with `sh` as a
    /// user runs it: kubectl and helm from `.venv/bin`, kumactl from this
    /// build, on `PATH`; `env` added.
    pub fn journey(&self, step: &str, env: &[(&str, &str)]) -> Ran {
        let kumactl_dir = super::bin("kumactl");
        let path = format!(
            "{}:{}:{}",
            venv_tool("kubectl").parent().unwrap().display(),
            kumactl_dir.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("sh")
            .arg("examples/kubernetes/journey.sh")
            .arg(step)
            .current_dir(crate::repository())
            .env("PATH", path)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .env("HELM_CACHE_HOME", self.home.path().join("helm-cache"))
            .env("HELM_CONFIG_HOME", self.home.path().join("helm-config"))
            .env("HELM_DATA_HOME", self.home.path().join("helm-data"))
            .envs(env.iter().copied())
            .output()
            .expect("sh runs");
        Ran {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `helm install|upgrade kuma charts/kuma` into `kuma-system`, with
    /// `--set` for each of `sets`; must succeed.
    pub fn chart(&self, verb: &str, sets: &[&str]) -> String {
        let mut args = vec![verb, "kuma", "charts/kuma", "--namespace", "kuma-system"];
        if verb == "install" {
            args.push("--create-namespace");
        }
        for set in sets {
            args.extend(["--set", set]);
        }
        self.helm(&args)
    }

    /// `helm ARGS`, which must succeed.
    pub fn helm(&self, args: &[&str]) -> String {
        self.must("helm", args, None)
    }

    fn must(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> String {
        let ran = self.run(tool, args, stdin);
        assert!(
            ran.ok,
            "{tool} {}:\n{}{}",
            args.join(" "),
            ran.stdout,
            ran.stderr
        );
        ran.stdout
    }
}
