//! What the root package's tests add to `testkit`: the paths of this
//! package's binaries, a [`TestCluster`] of real `booking node` processes
//! on fixed loopback ports (SIGKILLed when the test ends, pass or panic)
//! with a client and `bookctl` aimed at it, gateways beside it, and small
//! output helpers.
//!
//! Must not: start processes or write configs any other way than through
//! `testkit` (one way to start a cluster), or sleep as synchronisation.
//!
//! Each test picks its own port range (see the `*_PORT_BASE` constants and
//! the port numbers in the test files) so tests in different binaries never
//! collide.

#![allow(dead_code, unused_imports)] // each test binary uses a different subset

pub mod http;
pub mod seats;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::time::Duration;

use client::{Client, ClientOptions};
use testkit::nodes::{Launch, NodeProcs};
use testkit::process::Child;
use testkit::{ConfigFile, TestEvent};

pub use testkit::{wait_for, wait_until, WAIT};

/// Lines of each log shown in a failure message.
const LOG_TAIL_LINES: usize = 30;
/// How long a stopping `booking up` gets after SIGTERM: more than its own
/// grace for its children (10 s), so it never dies before them.
const UP_STOP_GRACE: Duration = Duration::from_secs(20);
/// Lines of `booking up`'s output (its children's included) in a failure message.
const UP_LOG_TAIL_LINES: usize = 80;

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

/// A cluster description in its own temp dir, and the node processes started from it.
pub struct TestCluster {
    /// Node ids to `host:port`.
    pub addrs: std::collections::BTreeMap<u64, String>,
    pub config_path: PathBuf,
    procs: NodeProcs,
    // Last: the directory outlives the processes.
    pub dir: tempfile::TempDir,
}

/// The admin token every [`TestCluster`]'s cluster.toml sets.
pub const ADMIN_TOKEN: &str = "test-cluster-admin-token";

impl TestCluster {
    /// Writes a cluster.toml with `n` nodes on `127.0.0.1:base+1..=base+n`
    /// and a gateway on `base+50`.
    pub fn new(base_port: u16, n: u16) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = ConfigFile::new(&format!("test-{base_port}"))
            .with_nodes_from_port(base_port, n)
            .with_gateway_listen(([127, 0, 0, 1], base_port + 50).into())
            .with_demo_gateway(ADMIN_TOKEN);
        let procs = NodeProcs::create(&booking_bin(), dir.path(), file, Launch::inherit_rust_log())
            .expect("a test cluster's directory and config");
        TestCluster {
            addrs: procs
                .ids()
                .into_iter()
                .map(|id| (id, procs.addr(id).to_string()))
                .collect(),
            config_path: procs.config_path().to_path_buf(),
            procs,
            dir,
        }
    }

    pub fn config(&self) -> cluster_config::ClusterConfig {
        self.procs.config().clone()
    }

    /// Starts `booking node` for `id`, its output appended to logs/node-<id>.log.
    pub fn start(&mut self, id: u64, bootstrap: bool) {
        self.procs
            .start(id, bootstrap)
            .unwrap_or_else(|e| panic!("start node {id}: {e}"));
    }

    /// Starts every node, bootstrapping from the lowest id.
    pub fn start_all(&mut self) {
        self.procs
            .start_all()
            .unwrap_or_else(|e| panic!("start the nodes: {e}"));
    }

    pub fn signal(&self, id: u64, signal: i32) {
        self.procs
            .signal(id, signal)
            .unwrap_or_else(|e| panic!("kill({id}, {signal}): {e}"));
    }

    /// SIGTERM node `id` and wait until it exited (SIGKILL after a grace).
    pub fn stop(&mut self, id: u64) {
        self.procs
            .stop(id)
            .unwrap_or_else(|e| panic!("stop node {id}: {e}"));
    }

    /// SIGKILL and reap node `id` (nothing if it is not running).
    pub fn kill9(&mut self, id: u64) {
        let _ = self.procs.kill(id);
    }

    pub fn client(&self) -> Client {
        let options = ClientOptions {
            request_timeout_ms: 2_000,
            retry_budget_ms: 30_000,
            attempts_max: 40,
            ..ClientOptions::default()
        };
        Client::from_config(self.procs.config(), options).expect("client")
    }

    /// [`TestCluster::client`] with the admin certificate (membership,
    /// leadership transfer, backups), as `bookctl` has.
    pub fn admin_client(&self) -> Client {
        let options = ClientOptions {
            request_timeout_ms: 2_000,
            retry_budget_ms: 30_000,
            attempts_max: 40,
            tls: client::ClientTls::load(self.procs.config(), client::TlsIdentity::Admin)
                .expect("the test cluster's admin certificate"),
            ..ClientOptions::default()
        };
        Client::from_config(self.procs.config(), options).expect("admin client")
    }

    /// A client that talks to node `id` only (for per-node stale reads).
    pub fn node_client(&self, id: u64) -> Client {
        let options = ClientOptions {
            request_timeout_ms: 2_000,
            retry_budget_ms: 3_000,
            attempts_max: 3,
            tls: client::ClientTls::load(self.procs.config(), client::TlsIdentity::Client)
                .expect("the test cluster's client certificate"),
            ..ClientOptions::default()
        };
        Client::with_options([self.addrs[&id].as_str()], options).expect("node client")
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
        self.procs.logs_tail(LOG_TAIL_LINES)
    }

    /// Starts a `booking gateway` of this cluster listening on `port`: the
    /// cluster's config with only `[gateway] listen` changed, in the same
    /// directory, so every gateway shares the data dir (ticket key) and the
    /// derived token secret.
    pub fn start_gateway(&self, port: u16) -> GatewayProc {
        let mut gateway = self.procs.file().gateway.clone();
        gateway.listen = ([127, 0, 0, 1], port).into();
        let proc = self
            .procs
            .start_gateway(&format!("gateway-{port}"), gateway, &[])
            .unwrap_or_else(|e| panic!("start gateway {port}: {e}"));
        GatewayProc {
            base: proc.url.clone(),
            port,
            proc,
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // A finished or failed test need not wait for graceful stops.
        self.procs.kill_all();
    }
}

/// A `booking gateway` process of a [`TestCluster`], SIGKILLed on drop.
pub struct GatewayProc {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub port: u16,
    proc: testkit::nodes::GatewayProc,
}

impl GatewayProc {
    /// Starts the process again (after [`GatewayProc::kill9`]).
    pub fn restart(&mut self) {
        self.proc
            .restart()
            .unwrap_or_else(|e| panic!("restart gateway {}: {e}", self.port));
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        self.proc.kill();
    }

    /// Waits until `/readyz` answers 200 (a leader is known); the log tail
    /// in the panic message otherwise.
    pub async fn wait_ready(&mut self, http: &reqwest::Client) {
        if let Err(e) = self.proc.wait_ready(http, WAIT * 2).await {
            panic!("gateway {}: {e}\n{}", self.port, self.log_tail());
        }
    }

    pub fn log_tail(&self) -> String {
        self.proc.log_tail(LOG_TAIL_LINES)
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        self.proc.kill();
    }
}

/// A `booking up` process, its stdout and stderr in one log file. Dropped
/// (a failed test), it gets SIGTERM so it stops its own children, and
/// SIGKILL only after [`UP_STOP_GRACE`].
pub struct UpProc {
    child: Child,
}

impl UpProc {
    /// `booking up --config <config>`, output to `log` (appended).
    pub fn start(config: &Path, log: &Path) -> UpProc {
        let mut command = Command::new(booking_bin());
        command.args(["up", "--config"]).arg(config).env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        let child = Child::spawn("up", command, log).expect("start booking up");
        UpProc { child }
    }

    /// Everything `up` printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.child.log_path()).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        self.child.log_path()
    }

    /// The end of `up`'s output, for failure messages.
    pub fn log_tail(&self) -> String {
        self.child.log_tail(UP_LOG_TAIL_LINES)
    }

    pub fn signal(&self, signal: i32) {
        self.child
            .signal(signal)
            .unwrap_or_else(|e| panic!("signal {signal} to up: {e}"));
    }

    /// SIGTERM, then waits up to `limit` for `up` to exit; its status, with
    /// its output in the panic message if it did not exit.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.child.wait_exit(limit).unwrap_or_else(|| {
            panic!(
                "`up` still running {limit:?} after SIGTERM\n{}",
                self.output()
            )
        })
    }
}

impl Drop for UpProc {
    fn drop(&mut self) {
        self.child.stop(UP_STOP_GRACE);
    }
}

/// The small event of these tests: section A, rows 1 and 2 of 10 seats, 50.00 each.
pub fn test_event(event_id: &str) -> TestEvent {
    TestEvent::reserved(event_id, 2, 10)
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
