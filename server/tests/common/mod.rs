//! Test harness: the server as a real process (the binary under test) on a
//! loopback port, and a real PostgreSQL started from Debian's binaries in a
//! temporary directory.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

/// `suite!(case, ...)`: one `#[test]` per case on SQLite (module `sqlite`)
/// and one on a real PostgreSQL (module `postgres`). Each case is a
/// `fn(&TestBackend)`.
///
/// A PostgreSQL test never passes without PostgreSQL: when it cannot start
/// one it fails and says why ([`Postgres::start`]). To run without
/// PostgreSQL on purpose, build with `BIOPAY_SKIP_POSTGRES=1`: server/build.rs
/// then sets the cfg `biopay_skip_postgres` and every PostgreSQL test is
/// `#[ignore]`d, so the runner lists each one as ignored, by name. A
/// PostgreSQL test written outside this macro carries the same attribute:
/// `#[cfg_attr(biopay_skip_postgres, ignore = "BIOPAY_SKIP_POSTGRES=1")]`.
#[allow(unused_macros)]
macro_rules! suite {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(#[test] fn $case() { super::$case(&super::TestBackend::sqlite()); })+
        }
        mod postgres {
            $(#[test]
            #[cfg_attr(biopay_skip_postgres, ignore = "BIOPAY_SKIP_POSTGRES=1")]
            fn $case() { super::$case(&super::TestBackend::postgres()); })+
        }
    };
}

mod phone;
#[allow(unused_imports)] // not every suite uses the phone
pub use phone::*;

use biopay_server_tools::client::ApiClient;
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

pub const RP_KEY: &str = biopay_server::DANGER_DEMO_RP_KEY;
pub const ADMIN_KEY: &str = biopay_server::DANGER_DEMO_ADMIN_KEY;
pub const RP: &str = "pay.example.com";

/// Which store a server uses.
#[derive(Debug, Clone)]
pub enum Backend {
    /// SQLite in the server's data directory.
    Sqlite,
    /// PostgreSQL at this URL.
    Postgres(String),
}

/// A running `biopay-server` process.
pub struct ServerProcess {
    child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
    pub backend: Backend,
    extra: Vec<String>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_biopay-server")
}

impl ServerProcess {
    /// Starts a server with the demo trust and keys on an ephemeral loopback port.
    pub fn start(data_dir: &Path, backend: &Backend, extra: &[&str]) -> Self {
        Self::start_on(data_dir, backend, extra, "127.0.0.1:0")
    }

    pub fn start_on(data_dir: &Path, backend: &Backend, extra: &[&str], listen: &str) -> Self {
        let mut cmd = Command::new(bin());
        cmd.args([
            "serve",
            "--danger-demo-trust",
            "--danger-demo-keys",
            "--log-json",
        ])
        .args(["--listen", listen])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env_remove("BIOPAY_DATABASE_URL")
        .env_remove("BIOPAY_CONFIG")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        if let Backend::Postgres(url) = backend {
            cmd.args(["--database-url", url]);
        }
        // BIOPAY_TEST_STATELESS=1 runs every suite's servers with
        // self-authenticating payment challenges (PROTOCOL.md §6.1.3).
        if std::env::var_os("BIOPAY_TEST_STATELESS").is_some()
            && !extra.contains(&"--stateless-payment-challenges")
        {
            cmd.arg("--stateless-payment-challenges");
        }
        let mut child = cmd.spawn().expect("spawn biopay-server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Drain stdout for the whole life of the process; report the address.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("biopay-server listening") {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(v["fields"]["addr"].as_str().unwrap().to_owned());
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not report its address: {:?}", child.wait());
            }
        };
        let s = Self {
            child,
            addr,
            data_dir: data_dir.to_owned(),
            backend: backend.clone(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.wait_healthy();
        s
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api(&self) -> ApiClient {
        ApiClient::new(&self.url(), Some(RP_KEY))
    }

    pub fn admin(&self) -> ApiClient {
        ApiClient::new(&self.url(), Some(ADMIN_KEY))
    }

    /// Polls /healthz until it answers 200 (bounded).
    pub fn wait_healthy(&self) {
        let api = ApiClient::new(&self.url(), None);
        let start = Instant::now();
        loop {
            if let Ok(r) = api.get("/healthz") {
                if r.status == 200 {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "server never became healthy"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the graceful exit (bounded).
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "server exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("server did not stop within 20 s");
    }

    /// A new process on the same data and store (and the same port when `same_port`).
    pub fn restart_args(&self) -> (PathBuf, Backend, Vec<String>, String) {
        (
            self.data_dir.clone(),
            self.backend.clone(),
            self.extra.clone(),
            self.addr.clone(),
        )
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `biopay-server audit verify` on a server's store: (success, output).
/// A counter's value from the server's /metrics.
pub fn metric(api: &ApiClient, name: &str) -> u64 {
    let m = api.get("/metrics").unwrap();
    m.body
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

pub fn audit_verify(data_dir: &Path, backend: &Backend) -> (bool, String) {
    let mut cmd = Command::new(bin());
    cmd.args(["audit", "verify", "--data-dir"]).arg(data_dir);
    if let Backend::Postgres(url) = backend {
        cmd.args(["--database-url", url]);
    }
    let out = cmd.env_remove("BIOPAY_DATABASE_URL").output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// ---------------------------------------------------------------------------
// PostgreSQL

/// A PostgreSQL server in a temporary directory on a loopback port.
pub struct Postgres {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
    bin: PathBuf,
    root: bool,
}

/// Where Debian installs PostgreSQL (`<dir>/<version>/bin/initdb`);
/// `BIOPAY_TEST_POSTGRES_DIR` points the lookup elsewhere (a missing path
/// shows what a machine without PostgreSQL reports).
fn pg_install_dir() -> PathBuf {
    std::env::var_os("BIOPAY_TEST_POSTGRES_DIR")
        .map_or_else(|| PathBuf::from("/usr/lib/postgresql"), PathBuf::from)
}

/// The reason a PostgreSQL test names when it cannot run.
pub fn no_postgres_reason(dir: &Path) -> String {
    format!(
        "PostgreSQL is required by this test but {}/*/bin/initdb was not found; \
         install it (apt-get install postgresql, as scripts/test does) or set \
         BIOPAY_SKIP_POSTGRES=1 to report the PostgreSQL tests as ignored",
        dir.display()
    )
}

fn find_pg_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(pg_install_dir())
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists() && p.join("postgres").exists())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn id_of(flag: &str, user: &str) -> u32 {
    let o = Command::new("id").args([flag, user]).output().unwrap();
    assert!(
        o.status.success(),
        "no user {user}: install postgresql (scripts/test does)"
    );
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

/// A command that runs as the unprivileged `postgres` user when we are root
/// (PostgreSQL refuses to run as root).
fn pg_command(bin: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    /// Starts PostgreSQL. Panics, naming the reason, when it is not
    /// installed or does not start: a PostgreSQL test that cannot run fails
    /// (skipping is only by `BIOPAY_SKIP_POSTGRES=1`, see `suite!`).
    pub fn start() -> Self {
        let Some(bin) = find_pg_bin() else {
            panic!("{}", no_postgres_reason(&pg_install_dir()));
        };
        let root = is_root();
        let dir = tempfile::tempdir().unwrap();
        if root {
            std::os::unix::fs::chown(
                dir.path(),
                Some(id_of("-u", "postgres")),
                Some(id_of("-g", "postgres")),
            )
            .unwrap();
        }
        let data = dir.path().join("data");
        let out = pg_command(&bin.join("initdb"), root)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for attempt in 0..5 {
            let port = free_port();
            let mut child = pg_command(&bin.join("postgres"), root)
                .arg("-D")
                .arg(&data)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
                .arg(dir.path())
                .args(["-c", "max_connections=200", "-c", "shared_buffers=64MB"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: port taken? try another
                }
                let url = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
                if postgres::Client::connect(&url, postgres::NoTls).is_ok() {
                    return Self {
                        child,
                        port,
                        _dir: dir,
                        bin,
                        root,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("postgres start attempt {attempt} failed; retrying");
        }
        panic!("PostgreSQL did not start");
    }

    /// Stops the server (fast shutdown, as an operator's `pg_ctl stop`
    /// would; SIGKILL only if it hangs); its data stays for [`Self::restart`].
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the stopped server again on the same data and port (bounded).
    pub fn restart(&mut self) {
        let data = self._dir.path().join("data");
        self.child = pg_command(&self.bin.join("postgres"), self.root)
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-k"])
            .arg(self._dir.path())
            .args(["-c", "max_connections=200", "-c", "shared_buffers=64MB"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        );
        let start = Instant::now();
        while postgres::Client::connect(&url, postgres::NoTls).is_err() {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "PostgreSQL exited on restart"
            );
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "PostgreSQL did not restart within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates a fresh database and returns its URL.
    pub fn database(&self, name: &str) -> String {
        let mut c = postgres::Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                self.port
            ),
            postgres::NoTls,
        )
        .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// A client for a database URL.
    pub fn client(url: &str) -> postgres::Client {
        postgres::Client::connect(url, postgres::NoTls).unwrap()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Fast shutdown; SIGKILL only if it hangs.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A backend for one test: SQLite, or a fresh database on a fresh PostgreSQL.
pub struct TestBackend {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub pg: Option<Postgres>,
}

impl TestBackend {
    pub fn sqlite() -> Self {
        Self {
            backend: Backend::Sqlite,
            dir: tempfile::tempdir().unwrap(),
            pg: None,
        }
    }

    /// A fresh PostgreSQL; panics with the reason when it cannot run
    /// ([`Postgres::start`]).
    pub fn postgres() -> Self {
        let pg = Postgres::start();
        let url = pg.database("biopay");
        Self {
            backend: Backend::Postgres(url),
            dir: tempfile::tempdir().unwrap(),
            pg: Some(pg),
        }
    }

    pub fn server(&self, extra: &[&str]) -> ServerProcess {
        ServerProcess::start(&self.dir.path().join("server"), &self.backend, extra)
    }
}
