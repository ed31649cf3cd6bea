//! A cluster of real `booking node` processes from one `cluster.toml`, and
//! `booking gateway` processes beside it.
//!
//! Owns: [`NodeProcs`]: writing `<dir>/cluster.toml` from a [`ConfigFile`],
//! starting each node (`booking node --config F --id N`, `--bootstrap` for
//! the first start of the lowest id), killing, pausing, resuming and
//! restarting nodes, each node's log (`<dir>/logs/node-<id>.log`), and a
//! bounded stop of all of them; [`GatewayProc`]: a `booking gateway` whose
//! config is the cluster's file with its own `[gateway]` section
//! (`<dir>/<name>.toml`, log `<dir>/logs/<name>.log`), and waiting for its
//! `/readyz`.
//!
//! Must not: build anything (it runs the binary it is given), reach into a
//! node's memory, or decide what a test asserts. The harness that owns the
//! directory also owns its cleanup.
//!
//! Caveat: node addresses are fixed when the file is written; a node
//! restarted after another program took its port fails to start, and says
//! so in its log.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cluster_config::{ClusterConfig, GatewaySection};

use crate::process::{self, Child, STOP_GRACE};
use crate::{wait_until, ConfigFile, Error};

/// How node processes start, beyond `booking node --config F --id N`.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// `RUST_LOG` of the nodes and gateways.
    pub rust_log: String,
    /// Extra environment of every node (not of the gateways).
    pub env: Vec<(String, String)>,
    /// A program and arguments to run the node under (`ip netns exec jp1`),
    /// per node id.
    pub wrap: Option<fn(u64) -> Vec<String>>,
}

impl Launch {
    /// Nodes logging at `rust_log`, no extra environment, run directly.
    pub fn logging(rust_log: &str) -> Launch {
        Launch {
            rust_log: rust_log.to_string(),
            ..Launch::default()
        }
    }

    /// The harness's own `RUST_LOG` if set, else `info`.
    pub fn inherit_rust_log() -> Launch {
        Launch::logging(&std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
    }
}

struct Node {
    child: Option<Child>,
    paused: bool,
}

/// The node processes of one cluster. Dropping it stops them (bounded).
pub struct NodeProcs {
    booking_bin: PathBuf,
    dir: PathBuf,
    config_path: PathBuf,
    file: ConfigFile,
    /// The file as the nodes read it (validated).
    config: ClusterConfig,
    launch: Launch,
    nodes: BTreeMap<u64, Node>,
}

impl NodeProcs {
    /// Writes `<dir>/cluster.toml` from `file` (validated) and creates
    /// `<dir>/logs`; starts nothing.
    pub fn create(
        booking_bin: &Path,
        dir: &Path,
        file: ConfigFile,
        launch: Launch,
    ) -> Result<NodeProcs, Error> {
        if !booking_bin.is_file() {
            return Err(Error::MissingBinary(booking_bin.to_path_buf()));
        }
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)
            .map_err(|e| Error::io(format!("creating {}", logs.display()), e))?;
        let config_path = dir.join("cluster.toml");
        let config = file.write(&config_path)?;
        let nodes = config
            .node_ids()
            .into_iter()
            .map(|id| {
                (
                    id,
                    Node {
                        child: None,
                        paused: false,
                    },
                )
            })
            .collect();
        Ok(NodeProcs {
            booking_bin: booking_bin.to_path_buf(),
            dir: dir.to_path_buf(),
            config_path,
            file,
            config,
            launch,
            nodes,
        })
    }

    /// Starts every node; only the lowest id bootstraps, as `booking up` does.
    pub fn start_all(&mut self) -> Result<(), Error> {
        let ids = self.ids();
        for (i, id) in ids.into_iter().enumerate() {
            self.start(id, i == 0)?;
        }
        Ok(())
    }

    /// Starts node `id` (from its data directory if it has one).
    pub fn start(&mut self, id: u64, bootstrap: bool) -> Result<(), Error> {
        if self.is_running(id) {
            return Err(Error::Node(format!("node {id} is already running")));
        }
        let mut argv: Vec<String> = self.launch.wrap.map(|wrap| wrap(id)).unwrap_or_default();
        argv.push(self.booking_bin.display().to_string());
        argv.extend(["node", "--config"].map(String::from));
        argv.push(self.config_path.display().to_string());
        argv.extend(["--id".to_string(), id.to_string()]);
        if bootstrap {
            argv.push("--bootstrap".into());
        }
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .env("RUST_LOG", &self.launch.rust_log)
            .envs(self.launch.env.iter().map(|(k, v)| (k, v)));
        let child = Child::spawn(&format!("node-{id}"), command, &self.log_path(id))?;
        let node = self.node_mut(id)?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// Starts node `id` unless it runs.
    pub fn restart(&mut self, id: u64) -> Result<(), Error> {
        if self.is_running(id) {
            return Ok(());
        }
        self.start(id, false)
    }

    /// Whether node `id` runs (reaps it if it has exited).
    pub fn is_running(&mut self, id: u64) -> bool {
        let Ok(node) = self.node_mut(id) else {
            return false;
        };
        let running = node.child.as_mut().is_some_and(Child::is_running);
        if !running {
            node.child = None;
        }
        running
    }

    /// Waits until node `id` accepts TCP connections on its address, for at
    /// most `limit`; fails at once if it exits first.
    pub async fn wait_listening(&mut self, id: u64, limit: Duration) -> Result<(), Error> {
        let addr = self.addr(id);
        self.node_mut(id)?
            .child
            .as_mut()
            .ok_or_else(|| Error::Node(format!("node {id} is not running")))?
            .wait_listening(addr, limit)
            .await
    }

    /// Whether node `id` was paused and not resumed since.
    pub fn is_paused(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.paused)
    }

    /// Sends `signal` to node `id`.
    pub fn signal(&self, id: u64, signal: i32) -> Result<(), Error> {
        self.nodes
            .get(&id)
            .and_then(|n| n.child.as_ref())
            .ok_or_else(|| Error::Node(format!("node {id} is not running")))?
            .signal(signal)
    }

    /// Stops node `id` as an operator would: SIGTERM, then SIGKILL only after
    /// the grace ([`STOP_GRACE`]); reaps it.
    pub fn stop(&mut self, id: u64) -> Result<(), Error> {
        let node = self.node_mut(id)?;
        let child = node
            .child
            .as_mut()
            .ok_or_else(|| Error::Node(format!("node {id} is not running")))?;
        process::stop_all([child], STOP_GRACE);
        node.child = None;
        node.paused = false;
        Ok(())
    }

    /// SIGKILL node `id` and reap it.
    pub fn kill(&mut self, id: u64) -> Result<(), Error> {
        let node = self.node_mut(id)?;
        let mut child = node
            .child
            .take()
            .ok_or_else(|| Error::Node(format!("node {id} is not running")))?;
        node.paused = false;
        child.kill();
        Ok(())
    }

    /// SIGSTOP node `id`.
    pub fn pause(&mut self, id: u64) -> Result<(), Error> {
        self.signal(id, libc::SIGSTOP)?;
        self.node_mut(id)?.paused = true;
        Ok(())
    }

    /// SIGCONT node `id`.
    pub fn resume(&mut self, id: u64) -> Result<(), Error> {
        self.signal(id, libc::SIGCONT)?;
        self.node_mut(id)?.paused = false;
        Ok(())
    }

    /// Stops every node at once: SIGCONT and SIGTERM, SIGKILL after the
    /// grace ([`STOP_GRACE`]).
    pub fn stop_all(&mut self) {
        process::stop_all(
            self.nodes.values_mut().filter_map(|n| n.child.as_mut()),
            STOP_GRACE,
        );
        for node in self.nodes.values_mut() {
            node.child = None;
            node.paused = false;
        }
    }

    /// SIGKILLs every node at once (a test that failed need not wait).
    pub fn kill_all(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                child.kill();
            }
            node.paused = false;
        }
    }

    /// Node ids in file order.
    pub fn ids(&self) -> Vec<u64> {
        self.config.node_ids()
    }

    /// The gRPC address of node `id`. Panics for an id the file lacks.
    pub fn addr(&self, id: u64) -> SocketAddr {
        self.config
            .node(id)
            .unwrap_or_else(|| panic!("node {id} is not in the cluster's file"))
            .addr
    }

    /// `http://<addr>` of every node, in file order.
    pub fn endpoints(&self) -> Vec<String> {
        self.config.endpoints()
    }

    /// The validated config the nodes run with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The file as it was built.
    pub fn file(&self) -> &ConfigFile {
        &self.file
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.join("logs").join(format!("node-{id}.log"))
    }

    /// The last `lines` lines of every node's log, for failure messages.
    pub fn logs_tail(&self, lines: usize) -> String {
        self.ids()
            .into_iter()
            .map(|id| process::log_tail(&format!("node {id}"), &self.log_path(id), lines))
            .collect()
    }

    /// Starts a `booking gateway` of this cluster as `name`, with the
    /// cluster's file but `gateway` as its `[gateway]` section and `env`
    /// added to its environment. Does not wait for it.
    pub fn start_gateway(
        &self,
        name: &str,
        gateway: GatewaySection,
        env: &[(String, String)],
    ) -> Result<GatewayProc, Error> {
        let file = ConfigFile {
            gateway,
            ..self.file.clone()
        };
        let config_path = self.dir.join(format!("{name}.toml"));
        let config = file.write(&config_path)?;
        let mut gateway = GatewayProc {
            name: name.to_string(),
            booking_bin: self.booking_bin.clone(),
            config_path,
            log: self.dir.join("logs").join(format!("{name}.log")),
            url: format!("http://{}", config.gateway.listen),
            rust_log: self.launch.rust_log.clone(),
            env: env.to_vec(),
            child: None,
        };
        gateway.restart()?;
        Ok(gateway)
    }

    fn node_mut(&mut self, id: u64) -> Result<&mut Node, Error> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| Error::Node(format!("no node {id} in the cluster")))
    }
}

impl Drop for NodeProcs {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// A `booking gateway` process. Dropping it stops it (bounded).
pub struct GatewayProc {
    name: String,
    booking_bin: PathBuf,
    config_path: PathBuf,
    log: PathBuf,
    /// `http://<listen>`.
    pub url: String,
    rust_log: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl GatewayProc {
    /// Starts the process again (after [`GatewayProc::kill`] or a crash);
    /// nothing if it runs.
    pub fn restart(&mut self) -> Result<(), Error> {
        if self.child.as_mut().is_some_and(Child::is_running) {
            return Ok(());
        }
        let mut command = Command::new(&self.booking_bin);
        command
            .arg("gateway")
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", &self.rust_log)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        self.child = Some(Child::spawn(&self.name, command, &self.log)?);
        Ok(())
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// SIGTERM, then SIGKILL after the grace.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.stop(STOP_GRACE);
        }
    }

    /// Polls `GET /readyz` until 200 (the gateway listens and sees a
    /// leader), for at most `limit`; fails at once if the process exits.
    pub async fn wait_ready(
        &mut self,
        http: &reqwest::Client,
        limit: Duration,
    ) -> Result<(), Error> {
        let url = format!("{}/readyz", self.url);
        let what = format!(
            "{} to answer 200 on /readyz (log {})",
            self.name,
            self.log.display()
        );
        let child = &mut self.child;
        wait_until(&what, limit, || {
            let alive = match child.as_mut() {
                Some(c) => c.check_alive(),
                None => Err(Error::Node("the gateway is not running".into())),
            };
            let get = http.get(&url).send();
            async move {
                alive?;
                Ok(get
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 200)
                    .then_some(()))
            }
        })
        .await
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the gateway's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        process::log_tail(&self.name, &self.log, lines)
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        self.stop();
    }
}
