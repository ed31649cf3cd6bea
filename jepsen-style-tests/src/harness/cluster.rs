//! The cluster under test: real `booking node` processes, each with its own
//! data directory, log file and (as root) network namespace.
//!
//! Owns: the run's cluster description (timing, addresses: one per
//! namespace, or free loopback ports), the environment every node gets
//! (the `JEPSEN_RUN` marker, `BOOKING_FAULT_CLOCK=1`, a bug selector), the
//! network, each node's clock-offset file (`<run dir>/control/node-<id>.clock-offset-ms`,
//! read by the node when started with `BOOKING_FAULT_CLOCK=1` and
//! `BOOKING_FAULT_CLOCK_DIR=<run dir>/control`) and, for the `power-loss`
//! nemesis, a lazy file system (keeps only fsynced bytes) mounted on each
//! node's data directory, whose power it cuts. Harness-control files live
//! outside the data directories, so a power cut never rolls them back.
//! Starting, killing (SIGKILL), pausing
//! (SIGSTOP/SIGCONT), restarting and stopping the processes, their logs and
//! the `cluster.toml` are `testkit`'s (children die with the harness,
//! `PR_SET_PDEATHSIG`).
//!
//! Must not: build anything (it runs the binary it is given) or reach into a
//! node's memory. Every process it starts carries `JEPSEN_RUN=<tag>` in its
//! environment so `jepsen cleanup` can find leftovers.
//!
//! Caveat: in loopback mode (no root) the nodes listen on 127.0.0.1 ports
//! picked free at start; another program may take a port while a node is
//! down, and the restart then fails (reported, not hidden).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use testkit::config::node;
use testkit::nodes::{GatewayProc, Launch, NodeProcs};
use testkit::{free_addr, ConfigFile};

use super::net::{self, Net, RUN_MARKER_ENV};
use crate::lazyfs::{CutReport, LazyFsMount, LazyFsOptions};

/// gRPC port of every node in network-namespace mode (each has its own address).
pub const NETNS_PORT: u16 = 7101;

/// Raft timing of the cluster under test, written into its `cluster.toml`.
#[derive(Clone, Debug)]
pub struct Timing {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: [u64; 2],
    pub expiry_sweep_ms: u64,
    pub snapshot_every_entries: u64,
    /// Log entries kept after a snapshot (`raft.max_in_snapshot_log_to_keep`).
    pub max_in_snapshot_log_to_keep: u64,
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
            max_in_snapshot_log_to_keep: cluster_config::RaftSection::default()
                .max_in_snapshot_log_to_keep,
        }
    }
}

impl Timing {
    /// For the `crash-in-snapshot` nemesis: a snapshot every 100 entries
    /// (every second or two under the register workload, whose writes the
    /// proposer packs into ~60 entries a second) and 20 entries kept after
    /// it, so a follower paused for a couple of seconds is sent a snapshot,
    /// and every node is often building one.
    pub fn snapshot_heavy() -> Timing {
        Timing {
            snapshot_every_entries: 100,
            max_in_snapshot_log_to_keep: 20,
            ..Timing::default()
        }
    }
}

/// A running cluster. Dropping it stops every node and removes the network.
pub struct Cluster {
    // Before `mounts` and `net`: the nodes stop before their file systems
    // and namespaces go.
    procs: NodeProcs,
    /// Lazy file systems on the nodes' data directories, by node id
    /// (empty unless started with `lazy_disks`).
    mounts: std::collections::BTreeMap<u64, LazyFsMount>,
    /// Where the harness's control files (clock offsets) live.
    control_dir: PathBuf,
    /// `Some` in network-namespace mode.
    net: Option<Net>,
    /// `JEPSEN_RUN` of every process of this run.
    run_tag: String,
}

fn err(e: testkit::Error) -> String {
    e.to_string()
}

impl Cluster {
    /// Writes the config under `dir` and starts `count` nodes (ids 1..=count).
    /// With `use_netns`, creates the namespaces first; with `lazy_disks`,
    /// mounts a lazy file system on every node's data directory first (needs
    /// root, `/dev/fuse` and `fusermount3`).
    pub fn start(
        booking_bin: &Path,
        dir: &Path,
        count: u64,
        use_netns: bool,
        timing: &Timing,
        extra_env: Vec<(String, String)>,
        lazy_disks: bool,
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
        let mut file = ConfigFile::new("jepsen");
        file.nodes = ids
            .iter()
            .map(|&id| {
                let addr = if use_netns {
                    SocketAddr::new(net::node_ip(id).into(), NETNS_PORT)
                } else {
                    free_addr()
                };
                node(id, addr)
            })
            .collect();
        file.raft.heartbeat_interval_ms = timing.heartbeat_interval_ms;
        file.raft.election_timeout_ms = timing.election_timeout_ms;
        file.raft.snapshot_every_entries = timing.snapshot_every_entries;
        file.raft.max_in_snapshot_log_to_keep = timing.max_in_snapshot_log_to_keep;
        file.booking.expiry_sweep_ms = timing.expiry_sweep_ms;
        // The gateway workload's fans take demo sessions and pay with test
        // cards; its gateway listens on loopback, where both are allowed.
        file.auth.mode = cluster_config::AuthMode::Demo;
        file.payments.provider = cluster_config::PaymentProviderKind::Simulated;
        let run_tag = format!("{}-{}", std::process::id(), dir.display());
        let control_dir = dir.join("control");
        std::fs::create_dir_all(&control_dir)
            .map_err(|e| format!("{}: {e}", control_dir.display()))?;
        let control_dir = control_dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", control_dir.display()))?;
        let mut env = vec![
            (RUN_MARKER_ENV.to_string(), run_tag.clone()),
            ("BOOKING_FAULT_CLOCK".to_string(), "1".to_string()),
            (
                "BOOKING_FAULT_CLOCK_DIR".to_string(),
                control_dir.display().to_string(),
            ),
        ];
        env.extend(extra_env);
        let launch = Launch {
            rust_log: std::env::var("JEPSEN_NODE_LOG").unwrap_or_else(|_| "info".into()),
            env,
            wrap: use_netns.then_some(Net::exec_prefix as fn(u64) -> Vec<String>),
        };
        let procs = NodeProcs::create(booking_bin, dir, file, launch).map_err(err)?;
        let mut mounts = std::collections::BTreeMap::new();
        if lazy_disks {
            for &id in &ids {
                let data_dir = procs.config().node_data_dir(id);
                let mount = LazyFsMount::mount(&data_dir, LazyFsOptions::default())
                    .map_err(|e| format!("node {id}: {e}"))?;
                mounts.insert(id, mount);
            }
        }
        let mut cluster = Cluster {
            procs,
            mounts,
            control_dir,
            net,
            run_tag,
        };
        // Only the lowest id initialises the membership, as `booking up` does.
        cluster.procs.start_all().map_err(err)?;
        Ok(cluster)
    }

    /// Whether the nodes' data directories are lazy file systems.
    pub fn has_lazy_disks(&self) -> bool {
        !self.mounts.is_empty()
    }

    /// Cuts the power of node `id`'s data directory: every file back to its
    /// last fsync. The node must be dead (killed first, as a power cut would).
    pub fn power_cut(&mut self, id: u64) -> Result<CutReport, String> {
        if self.procs.is_running(id) {
            return Err(format!("node {id} still runs; kill it before the cut"));
        }
        let mount = self
            .mounts
            .get(&id)
            .ok_or_else(|| format!("node {id} has no lazy file system"))?;
        Ok(mount.power_cut())
    }

    pub fn ids(&self) -> Vec<u64> {
        self.procs.ids()
    }

    /// The TLS settings of the harness's clients: the run's admin
    /// certificate (`None` with `[tls] mode = "off"`).
    pub fn client_tls(&self) -> Result<Option<client::ClientTls>, String> {
        client::ClientTls::load(self.procs.config(), client::TlsIdentity::Admin)
            .map_err(|e| e.to_string())
    }

    /// A client of every node with default bounds and [`Cluster::client_tls`].
    pub fn client(&self) -> Result<client::Client, String> {
        let options = client::ClientOptions {
            tls: self.client_tls()?,
            ..client::ClientOptions::default()
        };
        client::Client::with_options(self.endpoints(), options).map_err(|e| e.to_string())
    }

    pub fn addr(&self, id: u64) -> SocketAddr {
        self.procs.addr(id)
    }

    pub fn endpoint(&self, id: u64) -> String {
        format!("http://{}", self.addr(id))
    }

    /// `http://<addr>` of every node, in id order.
    pub fn endpoints(&self) -> Vec<String> {
        self.procs.endpoints()
    }

    pub fn net(&self) -> Option<&Net> {
        self.net.as_ref()
    }

    pub fn log_paths(&self) -> Vec<(u64, PathBuf)> {
        self.ids()
            .into_iter()
            .map(|id| (id, self.procs.log_path(id)))
            .collect()
    }

    /// Starts a `booking gateway` beside the nodes (on the harness's side of
    /// the network) as `gateway`: the run's file with `gateway` as its
    /// `[gateway]` section, `JEPSEN_RUN` and `extra_env` in its environment.
    pub fn start_gateway(
        &self,
        gateway: cluster_config::GatewaySection,
        extra_env: &[(String, String)],
    ) -> Result<GatewayProc, String> {
        let mut env = vec![(RUN_MARKER_ENV.to_string(), self.run_tag.clone())];
        env.extend_from_slice(extra_env);
        self.procs
            .start_gateway("gateway", gateway, &env)
            .map_err(err)
    }

    /// Empties node `id`'s data directory (a lost or replaced disk). The node
    /// must be dead. On a lazy file system only the contents go, not the mount.
    pub fn wipe_data_dir(&mut self, id: u64) -> Result<(), String> {
        if self.procs.is_running(id) {
            return Err(format!("node {id} still runs; kill it before the wipe"));
        }
        let dir = self.procs.config().node_data_dir(id);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("listing {}: {e}", dir.display())),
        };
        for entry in entries {
            let path = entry
                .map_err(|e| format!("listing {}: {e}", dir.display()))?
                .path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| format!("wiping {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self, id: u64) -> Result<(), String> {
        self.procs.kill(id).map_err(err)
    }

    /// Starts a node that is not running (from its existing data directory).
    pub fn restart(&mut self, id: u64) -> Result<(), String> {
        self.procs.restart(id).map_err(err)
    }

    pub fn pause(&mut self, id: u64) -> Result<(), String> {
        self.procs.pause(id).map_err(err)
    }

    pub fn resume(&mut self, id: u64) -> Result<(), String> {
        self.procs.resume(id).map_err(err)
    }

    /// Writes the node's clock offset (signed ms), atomically: the node
    /// re-reads the file every 100 ms and must never see half a number.
    pub fn set_clock_offset_ms(&self, id: u64, offset_ms: i64) -> Result<(), String> {
        let dir = &self.control_dir;
        let tmp = dir.join(format!("node-{id}.clock-offset-ms.tmp"));
        std::fs::write(&tmp, format!("{offset_ms}\n"))
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join(format!("node-{id}.clock-offset-ms")))
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
            if self.procs.is_paused(id) {
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

    /// Stops the nodes (SIGCONT + SIGTERM, SIGKILL after the grace) and
    /// removes the network now (also done on drop).
    pub fn shutdown(&mut self) {
        self.procs.stop_all();
        // After the nodes: nothing holds a file on them any more. Unmounted
        // without saving: what a run leaves on a lazy disk is not kept.
        for (id, mount) in std::mem::take(&mut self.mounts) {
            if let Err(e) = mount.unmount() {
                eprintln!("jepsen: lazy file system of node {id}: {e}");
            }
        }
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
