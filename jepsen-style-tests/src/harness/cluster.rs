//! The cluster under test: real `booking node` processes, each with its own
//! data directory, log file and (as root) network namespace.
//!
//! Owns: the run's `cluster.toml`, starting, killing (SIGKILL), pausing
//! (SIGSTOP/SIGCONT) and restarting node processes, and each node's
//! clock-offset file (`<data dir>/node-<id>/clock-offset-ms`, read by the node
//! when started with `BOOKING_FAULT_CLOCK=1`).
//!
//! Must not: build anything (it runs the binary it is given) or reach into a
//! node's memory. Every process it starts carries `JEPSEN_RUN=<tag>` in its
//! environment so `jepsen cleanup` can find leftovers, and dies with the
//! harness (`PR_SET_PDEATHSIG`).
//!
//! Caveat: in loopback mode (no root) the nodes listen on 127.0.0.1 ports
//! picked free at start; another program may take a port while a node is
//! down, and the restart then fails (reported, not hidden).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::net::{self, Net, RUN_MARKER_ENV};

/// gRPC port of every node in network-namespace mode (each has its own address).
pub const NETNS_PORT: u16 = 7101;
/// How long a stopping node gets after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Raft timing of the cluster under test, written into its `cluster.toml`.
#[derive(Clone, Debug)]
pub struct Timing {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: [u64; 2],
    pub expiry_sweep_ms: u64,
    pub snapshot_every_entries: u64,
}

impl Default for Timing {
    fn default() -> Self {
        // Small snapshots so a restarted or re-added node catches up by
        // snapshot during a run, which is a path worth exercising.
        Timing {
            heartbeat_interval_ms: 100,
            election_timeout_ms: [400, 800],
            expiry_sweep_ms: 200,
            snapshot_every_entries: 2000,
        }
    }
}

struct NodeProc {
    id: u64,
    addr: SocketAddr,
    child: Option<Child>,
    paused: bool,
    log_path: PathBuf,
}

/// A running cluster. Dropping it stops every node and removes the network.
pub struct Cluster {
    booking_bin: PathBuf,
    config_path: PathBuf,
    data_dir: PathBuf,
    nodes: BTreeMap<u64, NodeProc>,
    /// `Some` in network-namespace mode.
    net: Option<Net>,
    run_tag: String,
    /// Extra environment for every node (e.g. a fault-injection bug selector).
    extra_env: Vec<(String, String)>,
}

/// A spawn request for the spawner thread, and where to send the child.
type SpawnRequest = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);

/// Spawns `command` from one thread that lives as long as the harness.
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
/// and tokio's blocking threads exit when idle: a node restarted from one of
/// them was SIGKILLed seconds later. Forking from this one thread avoids it.
pub(crate) fn spawn_from_lasting_thread(command: Command) -> std::io::Result<Child> {
    static SPAWNER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<SpawnRequest>>> =
        std::sync::OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        // Unbounded, but each request waits for its answer below, so it
        // holds at most one request per calling thread.
        let (tx, rx) = std::sync::mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("jepsen-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("cannot start the spawner thread");
        std::sync::Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = std::sync::mpsc::channel();
    sender
        .lock()
        .expect("spawner lock")
        .send((command, reply_tx))
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?
}

fn free_loopback_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Cluster {
    /// Writes the config under `dir` and starts `count` nodes (ids 1..=count).
    /// With `use_netns`, creates the namespaces first.
    pub fn start(
        booking_bin: &Path,
        dir: &Path,
        count: u64,
        use_netns: bool,
        timing: &Timing,
        extra_env: Vec<(String, String)>,
    ) -> Result<Cluster, String> {
        if !booking_bin.is_file() {
            return Err(format!(
                "booking binary {} not found; build it with `cargo build --release -p booking` or pass --booking-bin",
                booking_bin.display()
            ));
        }
        let ids: Vec<u64> = (1..=count).collect();
        let net = if use_netns {
            Some(Net::setup(&ids)?)
        } else {
            None
        };
        std::fs::create_dir_all(dir.join("logs")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut nodes = BTreeMap::new();
        for &id in &ids {
            let addr = if use_netns {
                SocketAddr::new(net::node_ip(id).into(), NETNS_PORT)
            } else {
                let port = free_loopback_port().map_err(|e| format!("picking a free port: {e}"))?;
                SocketAddr::from(([127, 0, 0, 1], port))
            };
            let log_path = dir.join("logs").join(format!("node-{id}.log"));
            nodes.insert(
                id,
                NodeProc {
                    id,
                    addr,
                    child: None,
                    paused: false,
                    log_path,
                },
            );
        }
        let config_path = dir.join("cluster.toml");
        let mut toml = format!(
            "# Written by `jepsen run`.\n[cluster]\nname = \"jepsen\"\ndata_dir = \"data\"\n\n[raft]\n\
             heartbeat_interval_ms = {}\nelection_timeout_ms = [{}, {}]\nsnapshot_every_entries = {}\n\n\
             [booking]\nexpiry_sweep_ms = {}\n",
            timing.heartbeat_interval_ms,
            timing.election_timeout_ms[0],
            timing.election_timeout_ms[1],
            timing.snapshot_every_entries,
            timing.expiry_sweep_ms
        );
        for n in nodes.values() {
            toml.push_str(&format!(
                "\n[[node]]\nid = {}\naddr = \"{}\"\n",
                n.id, n.addr
            ));
        }
        std::fs::write(&config_path, toml)
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        let run_tag = format!("{}-{}", std::process::id(), dir.display());
        let mut cluster = Cluster {
            booking_bin: booking_bin.to_path_buf(),
            config_path,
            data_dir: dir.join("data"),
            nodes,
            net,
            run_tag,
            extra_env,
        };
        for id in ids {
            // Only the lowest id initialises the membership, as `booking up` does.
            cluster.spawn(id, id == 1)?;
        }
        Ok(cluster)
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    pub fn addr(&self, id: u64) -> SocketAddr {
        self.nodes[&id].addr
    }

    pub fn endpoint(&self, id: u64) -> String {
        format!("http://{}", self.addr(id))
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.ids().into_iter().map(|id| self.endpoint(id)).collect()
    }

    pub fn net(&self) -> Option<&Net> {
        self.net.as_ref()
    }

    pub fn log_paths(&self) -> Vec<(u64, PathBuf)> {
        self.nodes
            .values()
            .map(|n| (n.id, n.log_path.clone()))
            .collect()
    }

    fn node_data_dir(&self, id: u64) -> PathBuf {
        self.data_dir.join(format!("node-{id}"))
    }

    fn spawn(&mut self, id: u64, bootstrap: bool) -> Result<(), String> {
        let node = self.nodes.get(&id).ok_or_else(|| format!("no node {id}"))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(|e| format!("{}: {e}", node.log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let mut argv: Vec<String> = if self.net.is_some() {
            Net::exec_prefix(id)
        } else {
            Vec::new()
        };
        argv.push(self.booking_bin.display().to_string());
        argv.extend(["node", "--config"].map(String::from));
        argv.push(self.config_path.display().to_string());
        argv.push("--id".into());
        argv.push(id.to_string());
        if bootstrap {
            argv.push("--bootstrap".into());
        }
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .env(RUN_MARKER_ENV, &self.run_tag)
            .env("BOOKING_FAULT_CLOCK", "1")
            .env(
                "RUST_LOG",
                std::env::var("JEPSEN_NODE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        for (k, v) in &self.extra_env {
            command.env(k, v);
        }
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to
        // SIGKILL the node if the harness dies, so nothing outlives a crash.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = spawn_from_lasting_thread(command)
            .map_err(|e| format!("starting node {id} ({}): {e}", argv.join(" ")))?;
        let node = self.nodes.get_mut(&id).expect("checked above");
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    fn signal(&self, id: u64, sig: i32) -> Result<(), String> {
        let child = self.nodes[&id]
            .child
            .as_ref()
            .ok_or_else(|| format!("node {id} is not running"))?;
        // SAFETY: a pid of our own child that we have not reaped yet.
        if unsafe { libc::kill(child.id() as i32, sig) } != 0 {
            return Err(format!(
                "signal {sig} to node {id}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    pub fn is_running(&mut self, id: u64) -> bool {
        let node = self.nodes.get_mut(&id).expect("known node");
        match node.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                node.child = None;
                false
            }
            None => false,
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self, id: u64) -> Result<(), String> {
        self.signal(id, libc::SIGKILL)?;
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(mut child) = node.child.take() {
            let _ = child.wait();
        }
        node.paused = false;
        Ok(())
    }

    /// Starts a node that is not running (from its existing data directory).
    pub fn restart(&mut self, id: u64) -> Result<(), String> {
        if self.is_running(id) {
            return Ok(());
        }
        self.spawn(id, false)
    }

    pub fn pause(&mut self, id: u64) -> Result<(), String> {
        self.signal(id, libc::SIGSTOP)?;
        self.nodes.get_mut(&id).expect("known node").paused = true;
        Ok(())
    }

    pub fn resume(&mut self, id: u64) -> Result<(), String> {
        self.signal(id, libc::SIGCONT)?;
        self.nodes.get_mut(&id).expect("known node").paused = false;
        Ok(())
    }

    /// Writes the node's clock offset (signed ms), atomically: the node
    /// re-reads the file every 100 ms and must never see half a number.
    pub fn set_clock_offset_ms(&self, id: u64, offset_ms: i64) -> Result<(), String> {
        let dir = self.node_data_dir(id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let tmp = dir.join("clock-offset-ms.tmp");
        std::fs::write(&tmp, format!("{offset_ms}\n"))
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join("clock-offset-ms"))
            .map_err(|e| format!("clock offset of node {id}: {e}"))
    }

    /// Heals what the harness can heal locally: resumes paused nodes,
    /// restarts dead ones, resets clocks and drops partition rules.
    pub fn heal_all(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(net) = &self.net {
            if let Err(e) = net.heal() {
                errors.push(e);
            }
        }
        for id in self.ids() {
            if self.nodes[&id].paused {
                if let Err(e) = self.resume(id) {
                    errors.push(e);
                }
            }
            if let Err(e) = self.set_clock_offset_ms(id, 0) {
                errors.push(e);
            }
            if let Err(e) = self.restart(id) {
                errors.push(e);
            }
        }
        errors
    }

    /// SIGCONT + SIGTERM every node, then SIGKILL those still up after the grace.
    pub fn stop_all(&mut self) {
        for node in self.nodes.values() {
            if let Some(child) = &node.child {
                // SAFETY: pids of our unreaped children.
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGCONT);
                    libc::kill(child.id() as i32, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        for node in self.nodes.values_mut() {
            let Some(mut child) = node.child.take() else {
                continue;
            };
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }

    /// Stops the nodes and removes the network now (also done on drop).
    pub fn shutdown(&mut self) {
        self.stop_all();
        if let Some(mut net) = self.net.take() {
            net.teardown();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}
