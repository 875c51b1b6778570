//! Throw-away PostgreSQL clusters for the tests.

use super::{KumaCp, bin, free_port};
use std::path::PathBuf;
use std::process::Command;

pub fn pg_bin(name: &str) -> PathBuf {
    let dir =
        std::env::var("KUMA_TEST_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    PathBuf::from(dir).join(name)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL program as the `postgres` user when we are root
/// (PostgreSQL refuses to run as root).
fn pg_command(name: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_bin(name));
        c
    } else {
        Command::new(pg_bin(name))
    }
}

/// A throw-away PostgreSQL cluster in a temporary directory, stopped on
/// drop. The superuser is `kuma`, trusted on 127.0.0.1.
pub struct PgCluster {
    pub port: u16,
    dir: PathBuf,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let cluster = Self::init();
        cluster.run_ctl("start");
        cluster
    }

    /// A cluster that accepts TLS connections only, with this certificate.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> PgCluster {
        let cluster = Self::init();
        let data = cluster.dir.join("data");
        std::fs::write(data.join("server.crt"), cert_pem).expect("server.crt");
        std::fs::write(data.join("server.key"), key_pem).expect("server.key");
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).expect("postgresql.conf");
        let hba = data.join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        let tls_only: String = text
            .lines()
            .map(|l| match l.strip_prefix("host ") {
                Some(rest) => format!("hostssl {rest}\n"),
                None => format!("{l}\n"),
            })
            .collect();
        std::fs::write(&hba, tls_only).expect("pg_hba.conf");
        if is_root() {
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data)
                .status();
        }
        let _ = Command::new("chmod")
            .arg("600")
            .arg(data.join("server.key"))
            .status();
        cluster.run_ctl("start");
        cluster
    }

    fn init() -> PgCluster {
        let dir = std::env::temp_dir().join(format!(
            "kuma-test-pg-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("pg dir");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status();
            assert!(
                status.map(|s| s.success()).unwrap_or(false),
                "chown of {}",
                dir.display()
            );
        }
        let data = dir.join("data");
        let out = pg_command("initdb")
            .args(["-A", "trust", "-U", "kuma", "--no-sync", "-E", "UTF8", "-D"])
            .arg(&data)
            .output()
            .expect("initdb runs (install postgresql-15)");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PgCluster {
            port: free_port(),
            dir,
        }
    }

    fn run_ctl(&self, action: &str) {
        let data = self.dir.join("data");
        let mut cmd = pg_command("pg_ctl");
        cmd.arg("-D").arg(&data).args(["-w", "-t", "60"]);
        if action == "start" {
            cmd.arg("-l")
                .arg(self.dir.join("log"))
                .arg("-o")
                .arg(format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
                    self.port,
                    self.dir.display()
                ));
        } else {
            cmd.args(["-m", "fast"]);
        }
        let out = cmd.arg(action).output().expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl {action}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop(&self) {
        self.run_ctl("stop");
    }

    pub fn restart(&self) {
        self.run_ctl("start");
    }

    /// Creates a fresh database and returns the `KUMA_STORE_*` settings
    /// that point at it.
    pub fn new_database(&self, name: &str) -> PgDatabase {
        let out = Command::new(pg_bin("psql"))
            .args(["-h", "127.0.0.1", "-U", "kuma", "-d", "postgres", "-p"])
            .arg(self.port.to_string())
            .args(["-c", &format!("CREATE DATABASE \"{name}\"")])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "create database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PgDatabase {
            port: self.port,
            name: name.to_string(),
        }
    }
}

impl PgCluster {
    fn destroy(&self) {
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.destroy();
    }
}

static SHARED: std::sync::OnceLock<PgCluster> = std::sync::OnceLock::new();

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> i32;
}

extern "C" fn destroy_shared() {
    if let Some(cluster) = SHARED.get() {
        cluster.destroy();
    }
}

/// One cluster for every test of a test binary; each test makes its own
/// database in it. Statics are never dropped, so the cluster is stopped
/// from an `atexit` handler when the test binary exits.
pub fn shared_cluster() -> &'static PgCluster {
    SHARED.get_or_init(|| {
        let cluster = PgCluster::start();
        // SAFETY: registers a plain function with no captured state.
        unsafe {
            atexit(destroy_shared);
        }
        cluster
    })
}

/// A fresh database in the shared cluster, migrated to the current schema.
pub fn migrated_database(test: &str) -> PgDatabase {
    let db = shared_cluster().new_database(&format!("{test}_{}", std::process::id()));
    db.migrate();
    db
}

pub struct PgDatabase {
    pub port: u16,
    pub name: String,
}

impl PgDatabase {
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("KUMA_STORE_TYPE".into(), "postgres".into()),
            ("KUMA_STORE_POSTGRES_HOST".into(), "127.0.0.1".into()),
            ("KUMA_STORE_POSTGRES_PORT".into(), self.port.to_string()),
            ("KUMA_STORE_POSTGRES_USER".into(), "kuma".into()),
            ("KUMA_STORE_POSTGRES_PASSWORD".into(), "kuma".into()),
            ("KUMA_STORE_POSTGRES_DB_NAME".into(), self.name.clone()),
            ("KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT".into(), "2".into()),
        ]
    }

    pub fn config(&self) -> kuma_store_postgres::store::postgres::PostgresConfig {
        kuma_store_postgres::store::postgres::PostgresConfig {
            port: self.port,
            db_name: self.name.clone(),
            connection_timeout: 2,
            max_open_connections: 10,
            ..Default::default()
        }
    }

    /// `kuma-cp migrate up` against this database.
    pub fn migrate(&self) {
        let out = Command::new(bin("kuma-cp"))
            .args(["migrate", "up"])
            .envs(self.env())
            .output()
            .expect("kuma-cp migrate runs");
        assert!(
            out.status.success(),
            "migrate up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts a `kuma-cp` on this database, with extra settings.
    pub fn kuma_cp(&self, extra: &[(&str, &str)]) -> KumaCp {
        let env = self.env();
        let mut all: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(extra);
        KumaCp::start(&all)
    }
}
