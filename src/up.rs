//! `booking up`: a whole local cluster from one command.
//!
//! Starts every `[[node]]` of the config as a child process of this binary
//! (`booking node --config FILE --id N`), passing `--bootstrap` to the lowest
//! id only when no node's data directory exists yet (a first run); prefixes
//! each child's output lines with `[node-N]`; waits until a node leads (via the
//! client's status call); prints the endpoints; and stops every child on
//! Ctrl-C/SIGTERM or as soon as one of them dies unexpectedly.
//!
//! Owns: the [`Supervisor`] of child processes and the start-up sequence. Must
//! not: reach into a node (it only talks gRPC through `client`, and signals).
//!
//! Extending: the gateway issue adds a `gateway` child with
//! [`Supervisor::spawn`] after the leader is known, and a demo event through
//! the client, in [`run`] between "leader elected" and "print the endpoints".
//!
//! Caveats: children run in their own process group, so a terminal's Ctrl-C
//! reaches only this process, which then stops them in order (SIGTERM, then
//! SIGKILL after [`STOP_GRACE`]). If this process is SIGKILLed, the children
//! are orphaned (tokio's `kill_on_drop` only covers an orderly drop).

use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use client::{Client, ClientOptions};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long the cluster may take to elect its first leader.
pub const LEADER_WAIT: Duration = Duration::from_secs(60);
/// How long children get to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long to wait for a SIGKILLed child to be reaped before giving up on it.
pub const KILL_WAIT: Duration = Duration::from_secs(5);
/// Most children one supervisor runs (nodes plus a gateway); also the
/// capacity of the exit channel, so a child's exit report never blocks.
pub const CHILDREN_MAX: usize = cluster_config::limits::NODES_MAX + 4;

pub async fn run(config_path: PathBuf) -> anyhow::Result<ExitCode> {
    let config = crate::load_config(&config_path)?;
    let config_path = std::path::absolute(&config_path).unwrap_or(config_path);
    // Installed before any child starts, so an early Ctrl-C is not lost.
    let stop = crate::shutdown_signal().context("cannot install signal handlers")?;
    tokio::pin!(stop);

    let fresh = config.nodes.iter().all(|n| !config.node_data_dir(n.id).exists());
    let bootstrap_id = if fresh { config.nodes.iter().map(|n| n.id).min() } else { None };
    let exe = std::env::current_exe().context("cannot find this executable to start nodes with")?;

    let mut supervisor = Supervisor::new();
    for node in &config.nodes {
        let mut command = Command::new(&exe);
        command.arg("node").arg("--config").arg(&config_path).arg("--id").arg(node.id.to_string());
        if bootstrap_id == Some(node.id) {
            command.arg("--bootstrap");
        }
        if let Err(e) = supervisor.spawn(&format!("node-{}", node.id), command) {
            supervisor.stop().await;
            return Err(e);
        }
    }
    match bootstrap_id {
        Some(id) => tracing::info!(node = id, "first run: node {id} initialises the cluster"),
        None => tracing::info!("data directories exist: nodes rejoin from them"),
    }

    let client = Client::from_config(&config, ClientOptions::default())?;
    let leader = tokio::select! {
        leader = client.wait_for_leader(LEADER_WAIT) => leader,
        exit = supervisor.next_exit() => {
            eprintln!("booking up: {} before the cluster elected a leader; stopping the cluster", exit.describe());
            supervisor.stop().await;
            return Ok(ExitCode::from(1));
        }
        () = &mut stop => {
            supervisor.stop().await;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let leader = match leader {
        Ok(leader) => leader,
        Err(e) => {
            eprintln!("booking up: {e}; stopping the cluster");
            supervisor.stop().await;
            return Ok(ExitCode::from(1));
        }
    };

    print_endpoints(&config, &config_path, leader.node_id, leader.term);

    let code = tokio::select! {
        exit = supervisor.next_exit() => {
            eprintln!("booking up: {} unexpectedly; stopping the cluster", exit.describe());
            ExitCode::from(1)
        }
        () = &mut stop => ExitCode::SUCCESS,
    };
    supervisor.stop().await;
    Ok(code)
}

fn print_endpoints(config: &cluster_config::ClusterConfig, config_path: &Path, leader_id: u64, term: u64) {
    let mut text = format!(
        "\ncluster {:?} is up: leader node {leader_id} (term {term}), data in {}\n",
        config.cluster.name,
        config.data_dir().display()
    );
    for node in &config.nodes {
        text.push_str(&format!("  node {:<3} grpc http://{}", node.id, node.addr));
        if let Some(metrics) = node.metrics_addr {
            text.push_str(&format!("  metrics http://{metrics}/metrics"));
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "try: bookctl --config {} status\nCtrl-C stops the cluster.\n",
        config_path.display()
    ));
    println!("{text}");
}

/// A child's end, as reported to the supervisor.
pub struct ChildExit {
    /// The child's name (`node-2`).
    pub name: String,
    /// Its exit status, or why waiting for it failed.
    pub status: std::io::Result<ExitStatus>,
}

impl ChildExit {
    /// "node-2 exited with exit status: 1", "node-2 was killed by signal 9".
    pub fn describe(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        match &self.status {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(code), _) => format!("{} exited with code {code}", self.name),
                (None, Some(signal)) => format!("{} was killed by signal {signal}", self.name),
                _ => format!("{} exited ({status})", self.name),
            },
            Err(e) => format!("{} could not be waited for: {e}", self.name),
        }
    }
}

/// One running child: its name and how to signal it.
struct Running {
    name: String,
    /// Signals for the task that owns the `Child`. The owner sends them only
    /// while the child is unreaped, so a recycled pid is never signalled.
    control: mpsc::Sender<i32>,
}

/// Runs named child processes, prefixes their output, reports their exits,
/// and stops them in order.
pub struct Supervisor {
    running: Vec<Running>,
    exits_tx: mpsc::Sender<ChildExit>,
    exits_rx: mpsc::Receiver<ChildExit>,
}

impl Supervisor {
    pub fn new() -> Self {
        let (exits_tx, exits_rx) = mpsc::channel(CHILDREN_MAX);
        Supervisor { running: Vec::new(), exits_tx, exits_rx }
    }

    /// Starts `command` as child `name` in its own process group, with its
    /// stdout and stderr lines prefixed by `[name]`.
    pub fn spawn(&mut self, name: &str, mut command: Command) -> anyhow::Result<()> {
        anyhow::ensure!(self.running.len() < CHILDREN_MAX, "at most {CHILDREN_MAX} children");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child: Child = command.spawn().with_context(|| format!("cannot start {name}"))?;
        let prefix = format!("[{name}] ");
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(prefix_lines(stdout, tokio::io::stdout(), prefix.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(prefix_lines(stderr, tokio::io::stderr(), prefix));
        }
        // Capacity 2: SIGTERM then SIGKILL is all the supervisor ever sends.
        let (control, mut signals) = mpsc::channel::<i32>(2);
        let exits = self.exits_tx.clone();
        let child_name = name.to_string();
        tokio::spawn(async move {
            let status = loop {
                tokio::select! {
                    status = child.wait() => break status,
                    Some(signal) = signals.recv() => {
                        if let Some(pid) = child.id() {
                            send_signal(pid, signal);
                        }
                    }
                }
            };
            // The channel holds one slot per child, so this never waits long;
            // if the supervisor is gone, nobody needs the report.
            let _ = exits.send(ChildExit { name: child_name, status }).await;
        });
        self.running.push(Running { name: name.to_string(), control });
        Ok(())
    }

    /// Waits for the next child to exit and forgets it. Pending forever if no
    /// child runs (the caller selects it against other events).
    pub async fn next_exit(&mut self) -> ChildExit {
        if self.running.is_empty() {
            return std::future::pending().await;
        }
        let exit = self.exits_rx.recv().await.expect("the supervisor holds a sender, so the channel stays open");
        self.running.retain(|r| r.name != exit.name);
        exit
    }

    /// Stops every child: SIGTERM, then SIGKILL for those still running after
    /// [`STOP_GRACE`]. Returns when all are reaped or [`KILL_WAIT`] passed.
    pub async fn stop(&mut self) {
        if self.running.is_empty() {
            return;
        }
        eprintln!("booking up: stopping {} child process(es)", self.running.len());
        self.signal_all(libc::SIGTERM).await;
        if !self.wait_all(STOP_GRACE).await {
            let names: Vec<&str> = self.running.iter().map(|r| r.name.as_str()).collect();
            eprintln!("booking up: {} still running after {:?}; killing", names.join(", "), STOP_GRACE);
            self.signal_all(libc::SIGKILL).await;
            if !self.wait_all(KILL_WAIT).await {
                eprintln!("booking up: could not reap {} child process(es)", self.running.len());
            }
        }
    }

    async fn signal_all(&self, signal: i32) {
        for running in &self.running {
            // A full or closed control channel means the child is already
            // being signalled or has exited; either way nothing is lost.
            let _ = running.control.try_send(signal);
        }
    }

    /// Reaps exits until none run (true) or `limit` passes (false).
    async fn wait_all(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.running.is_empty() {
            match tokio::time::timeout_at(deadline, self.next_exit()).await {
                Ok(exit) => tracing::debug!("{}", exit.describe()),
                Err(_) => return false,
            }
        }
        true
    }
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

fn send_signal(pid: u32, signal: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is a child
    // this process has not reaped yet, so it cannot name another process.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc != 0 {
        tracing::debug!(pid, signal, error = %std::io::Error::last_os_error(), "kill failed");
    }
}

/// Copies `input` to `output` line by line, each line prefixed. Lines come
/// from our own node binary's log output; a line that is not UTF-8 is copied
/// lossily.
async fn prefix_lines<R, W>(input: R, mut output: W, prefix: String)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BufReader::new(input);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let mut text = prefix.clone().into_bytes();
                text.extend_from_slice(&line);
                if !text.ends_with(b"\n") {
                    text.push(b'\n');
                }
                if output.write_all(&text).await.is_err() || output.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}
