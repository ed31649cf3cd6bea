//! Test harness for real `booking` processes on loopback: a cluster.toml in a
//! temp dir, node processes that are SIGKILLed when the test ends (pass or
//! panic), bookctl invocations, and polling with generous bounds instead of
//! fixed sleeps.
//!
//! Each test picks its own port range (see the `*_PORT_BASE` constants in the
//! test files) so tests in different binaries never collide.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use client::{Client, ClientOptions};

/// How long any awaited condition may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn booking_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_booking"))
}

/// `bookctl` is a binary of the `client` package; `scripts/test.sh` builds
/// the whole workspace first, so it sits next to `booking`.
pub fn bookctl_bin() -> PathBuf {
    let path = booking_bin().with_file_name("bookctl");
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --release -p client` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A cluster description in its own temp dir, and the node processes started from it.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// node id → `host:port`.
    pub addrs: BTreeMap<u64, String>,
    procs: BTreeMap<u64, Child>,
}

impl TestCluster {
    /// Writes a cluster.toml with `n` nodes on `127.0.0.1:base+1..=base+n`
    /// and a gateway on `base+50`.
    pub fn new(base_port: u16, n: u64) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut text = format!(
            "[cluster]\nname = \"test-{base_port}\"\ndata_dir = \"data\"\n\n\
             [raft]\nheartbeat_interval_ms = 100\nelection_timeout_ms = [400, 800]\n\n\
             [gateway]\nlisten = \"127.0.0.1:{}\"\n",
            base_port + 50
        );
        let mut addrs = BTreeMap::new();
        for id in 1..=n {
            let addr = format!("127.0.0.1:{}", base_port + id as u16);
            text.push_str(&format!("\n[[node]]\nid = {id}\naddr = \"{addr}\"\n"));
            addrs.insert(id, addr);
        }
        let config_path = dir.path().join("cluster.toml");
        std::fs::write(&config_path, text).expect("write cluster.toml");
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        TestCluster {
            dir,
            config_path,
            addrs,
            procs: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> cluster_config::ClusterConfig {
        cluster_config::ClusterConfig::load(&self.config_path).expect("test config is valid")
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join("logs").join(format!("node-{id}.log"))
    }

    /// Starts `booking node` for `id`, its output appended to logs/node-<id>.log.
    pub fn start(&mut self, id: u64, bootstrap: bool) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .unwrap();
        let mut command = Command::new(booking_bin());
        command
            .args(["node", "--config"])
            .arg(&self.config_path)
            .args(["--id", &id.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if bootstrap {
            command.arg("--bootstrap");
        }
        let child = command.spawn().expect("start booking node");
        self.procs.insert(id, child);
    }

    /// Starts every node, bootstrapping from the lowest id.
    pub fn start_all(&mut self) {
        let ids: Vec<u64> = self.addrs.keys().copied().collect();
        for (i, id) in ids.into_iter().enumerate() {
            self.start(id, i == 0);
        }
    }

    pub fn pid(&self, id: u64) -> i32 {
        self.procs[&id].id() as i32
    }

    pub fn signal(&self, id: u64, signal: i32) {
        // SAFETY: kill(2) on a child we have not reaped yet.
        let rc = unsafe { libc::kill(self.pid(id), signal) };
        assert_eq!(rc, 0, "kill({id}, {signal}) failed");
    }

    /// SIGKILL and reap node `id`.
    pub fn kill9(&mut self, id: u64) {
        if let Some(mut child) = self.procs.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn client(&self) -> Client {
        let options = ClientOptions {
            request_timeout_ms: 2_000,
            retry_budget_ms: 30_000,
            attempts_max: 40,
            ..ClientOptions::default()
        };
        Client::from_config(&self.config(), options).expect("client")
    }

    /// Waits until some node leads; returns its id.
    pub async fn wait_leader(&self, client: &Client) -> u64 {
        client
            .wait_for_leader(WAIT)
            .await
            .unwrap_or_else(|e| panic!("no leader: {e}\n{}", self.logs()))
            .node_id
    }

    /// Runs bookctl against this cluster with `args`.
    pub fn bookctl(&self, args: &[&str]) -> Output {
        Command::new(bookctl_bin())
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .output()
            .expect("run bookctl")
    }

    /// The tail of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for id in self.addrs.keys() {
            let text = std::fs::read_to_string(self.log_path(*id)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            out.push_str(&format!(
                "--- node {id} (last {} lines)\n{}\n",
                tail.len(),
                tail.join("\n")
            ));
        }
        out
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.procs.keys().copied().collect();
        for id in ids {
            // Continue first, in case the test stopped it and then panicked.
            if let Some(child) = self.procs.get(&id) {
                // SAFETY: kill(2) on an unreaped child.
                unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
            }
            self.kill9(id);
        }
    }
}

/// A small reserved-seat event: section A, rows 1 and 2 of 10 seats, 50.00 each.
pub fn event_json(event_id: &str) -> String {
    format!(
        r#"{{"id":"{event_id}","name":"Test gig","venue":"Loopback Hall","starts_at":"2030-01-01T20:00:00Z",
            "sections":[{{"kind":"reserved","id":"A","name":"Stalls","price_cents":5000,
                          "rows":[{{"label":"1","seats":10}},{{"label":"2","seats":10}}]}}]}}"#
    )
}

pub fn event_spec(event_id: &str) -> client::state_machine::EventSpec {
    serde_json::from_str(&event_json(event_id)).expect("event spec parses")
}

/// Parses bookctl's stdout as JSON, with its stderr in the panic message.
pub fn json_of(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "bookctl output is not JSON ({e}); status {:?}\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// A `booking gateway` process of a [`TestCluster`], SIGKILLed on drop.
pub struct GatewayProc {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub port: u16,
    pub log: PathBuf,
    config_path: PathBuf,
}

impl GatewayProc {
    /// Starts `booking gateway` with `config_path`, whose `[gateway] listen`
    /// is `127.0.0.1:port`; output appended to `log`.
    pub fn start(config_path: &Path, port: u16, log: &Path) -> GatewayProc {
        let mut proc = GatewayProc {
            child: None,
            base: format!("http://127.0.0.1:{port}"),
            port,
            log: log.to_path_buf(),
            config_path: config_path.to_path_buf(),
        };
        proc.restart();
        proc
    }

    /// Starts the process again (after [`GatewayProc::kill9`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "gateway {} still running", self.port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(booking_bin())
            .args(["gateway", "--config"])
            .arg(&self.config_path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start booking gateway");
        self.child = Some(child);
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until `/readyz` answers 200 (a leader is known); the log tail
    /// in the panic message otherwise.
    pub async fn wait_ready(&mut self, http: &reqwest::Client) {
        let url = format!("{}/readyz", self.base);
        let deadline = Instant::now() + WAIT * 2;
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "gateway {} exited with {status}\n{}",
                        self.port,
                        self.log_tail()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "gateway {} not ready in {:?}\n{}",
                self.port,
                WAIT * 2,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(30)..];
        format!(
            "--- gateway {} (last {} lines)\n{}",
            self.port,
            tail.len(),
            tail.join("\n")
        )
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl TestCluster {
    /// Starts a `booking gateway` of this cluster listening on `port`: a copy
    /// of cluster.toml whose only difference is `[gateway] listen`, in the
    /// same directory, so every gateway shares the data dir (ticket key) and
    /// the derived token secret.
    pub fn start_gateway(&self, port: u16) -> GatewayProc {
        let text = std::fs::read_to_string(&self.config_path).expect("read cluster.toml");
        let listen = text
            .lines()
            .find(|l| l.starts_with("listen = "))
            .expect("cluster.toml has [gateway] listen")
            .to_string();
        let text = text.replace(&listen, &format!("listen = \"127.0.0.1:{port}\""));
        let path = self.dir.path().join(format!("gateway-{port}.toml"));
        std::fs::write(&path, text).expect("write gateway config");
        let log = self
            .dir
            .path()
            .join("logs")
            .join(format!("gateway-{port}.log"));
        GatewayProc::start(&path, port, &log)
    }

    /// A client that talks to node `id` only (for per-node stale reads).
    pub fn node_client(&self, id: u64) -> Client {
        let options = ClientOptions {
            request_timeout_ms: 2_000,
            retry_budget_ms: 3_000,
            attempts_max: 3,
            ..ClientOptions::default()
        };
        Client::with_options([self.addrs[&id].as_str()], options).expect("node client")
    }
}

/// Serialises the tests of one binary that start whole clusters: the CI
/// machine has two cores, and two 3-node clusters plus gateways at once make
/// every bound in them tighter than it needs to be.
pub async fn heavy_test_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}
