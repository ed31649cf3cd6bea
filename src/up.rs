//! `booking up`: a whole local cluster from one command.
//!
//! Starts every `[[node]]` of the config as a child process of this binary
//! (`booking node --config FILE --id N`), passing `--bootstrap` to the lowest
//! id only when no node's data directory exists yet (a first run); prefixes
//! each child's output lines with `[node-N]`; waits until a node leads (via the
//! client's status call); then starts one `booking gateway` child (`[gateway]`),
//! waits for its `/readyz`, creates the demo event through the admin API if
//! it does not exist yet (a second run reuses the data); prints the URLs; and
//! stops every child on Ctrl-C/SIGTERM or as soon as one of them dies
//! unexpectedly.
//!
//! Owns: the [`Supervisor`] of child processes, the start-up sequence and the
//! demo event's definition. Must not: reach into a node or the gateway (it
//! only talks gRPC through `client`, HTTP to the gateway, and signals).
//!
//! Caveats: children run in their own process group, so a terminal's Ctrl-C
//! reaches only this process, which then stops them in order (SIGTERM, then
//! SIGKILL after [`STOP_GRACE`]). If this process is SIGKILLed, the children
//! are orphaned (tokio's `kill_on_drop` only covers an orderly drop).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use client::{Client, ClientOptions};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long the cluster may take to elect its first leader.
pub const LEADER_WAIT: Duration = Duration::from_secs(60);
/// How long the gateway child may take to answer `/readyz` with 200.
pub const GATEWAY_WAIT: Duration = Duration::from_secs(60);
/// Upper bound on one HTTP call to the gateway child.
pub const GATEWAY_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The demo event's id (`GET /v1/events/demo`).
pub const DEMO_EVENT_ID: &str = "demo";
/// How long children get to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long to wait for a SIGKILLed child to be reaped before giving up on it.
pub const KILL_WAIT: Duration = Duration::from_secs(5);
/// Most children one supervisor runs (nodes plus a gateway); also the
/// capacity of the exit channel, so a child's exit report never blocks.
pub const CHILDREN_MAX: usize = cluster_config::limits::NODES_MAX + 4;

/// Children log with [`crate::UP_CHILD_LOG_FILTER`] unless the user set
/// `RUST_LOG` (which they then inherit unchanged).
fn quiet_unless_asked(command: &mut Command) {
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", crate::UP_CHILD_LOG_FILTER);
    }
}

pub async fn run(config_path: PathBuf) -> anyhow::Result<ExitCode> {
    let config = crate::load_config(&config_path)?;
    let config_path = std::path::absolute(&config_path).unwrap_or(config_path);
    // Installed before any child starts, so an early Ctrl-C is not lost.
    let stop = crate::shutdown_signal().context("cannot install signal handlers")?;
    tokio::pin!(stop);

    let fresh = config
        .nodes
        .iter()
        .all(|n| !config.node_data_dir(n.id).exists());
    let bootstrap_id = if fresh {
        config.nodes.iter().map(|n| n.id).min()
    } else {
        None
    };
    // The first README command needs no extra step: certificates that are
    // missing are made here (existing ones are kept).
    if config.tls_on() {
        crate::certs::ensure(&config)?;
    }
    let exe = std::env::current_exe().context("cannot find this executable to start nodes with")?;
    // Built before any child starts, so a failure here leaves nothing to stop.
    let http = reqwest::Client::builder()
        .timeout(GATEWAY_CALL_TIMEOUT)
        .build()
        .context("cannot build an HTTP client")?;

    let mut supervisor = Supervisor::new();
    for node in &config.nodes {
        let mut command = Command::new(&exe);
        command
            .arg("node")
            .arg("--config")
            .arg(&config_path)
            .arg("--id")
            .arg(node.id.to_string());
        if bootstrap_id == Some(node.id) {
            command.arg("--bootstrap");
        }
        quiet_unless_asked(&mut command);
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

    let gateway = crate::gateway::settings(&config);
    // Created here, once, so every gateway of this cluster shares its secrets
    // even if several start at the same moment; and an admin token unless the
    // file sets one.
    let admin = match prepare_gateway_secrets(&gateway) {
        Ok(admin) => admin,
        Err(e) => {
            eprintln!("booking up: {e}; stopping the cluster");
            supervisor.stop().await;
            return Ok(ExitCode::from(1));
        }
    };
    let mut command = Command::new(&exe);
    command.arg("gateway").arg("--config").arg(&config_path);
    quiet_unless_asked(&mut command);
    if let Err(e) = supervisor.spawn("gateway", command) {
        eprintln!("booking up: {e:#}; stopping the cluster");
        supervisor.stop().await;
        return Ok(ExitCode::from(1));
    }
    let base = format!("http://{}", gateway.listen);
    let ready = unless_interrupted(&mut supervisor, stop.as_mut(), wait_ready(&http, &base)).await;
    let demo = match ready {
        Ok(Ok(())) => {
            unless_interrupted(
                &mut supervisor,
                stop.as_mut(),
                ensure_demo_event(&http, &base, &admin.token),
            )
            .await
        }
        Ok(Err(e)) => {
            eprintln!("booking up: the gateway is not ready: {e:#}; stopping the cluster");
            supervisor.stop().await;
            return Ok(ExitCode::from(1));
        }
        Err(interrupted) => return Ok(interrupted.finish(&mut supervisor).await),
    };
    let demo = match demo {
        Ok(demo) => demo,
        Err(interrupted) => return Ok(interrupted.finish(&mut supervisor).await),
    };

    print_endpoints(&config, &config_path, leader.node_id, leader.term);
    print_gateway(&gateway, &config_path, &demo, &admin);

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

/// The admin token `up` uses for the demo event, and where it came from.
struct AdminToken {
    token: String,
    /// Where an operator finds it again.
    source: String,
    /// Generated by this run: printed this once.
    created: bool,
}

/// Creates the gateway's missing secret files and, unless `[gateway]
/// admin_token` is set, the admin token file (random, 0600).
fn prepare_gateway_secrets(gateway: &http_gateway::GatewaySettings) -> anyhow::Result<AdminToken> {
    http_gateway::keys::ensure_secret_files(gateway)?;
    if let Some(token) = &gateway.admin_token {
        return Ok(AdminToken {
            token: token.clone(),
            source: "[gateway] admin_token".into(),
            created: false,
        });
    }
    let path = gateway.admin_token_path();
    let created = http_gateway::keys::create_admin_token(&path)?;
    let token = match &created {
        Some(t) => t.clone(),
        None => http_gateway::keys::read_admin_token(&path)?
            .with_context(|| format!("{} vanished", path.display()))?,
    };
    Ok(AdminToken {
        token,
        source: path.display().to_string(),
        created: created.is_some(),
    })
}

/// Why a start-up step was cut short.
enum Interrupted {
    /// A child died first.
    Exit(ChildExit),
    /// Ctrl-C or SIGTERM.
    Stop,
}

impl Interrupted {
    /// Stops every child; the exit code says whether this was asked for.
    async fn finish(self, supervisor: &mut Supervisor) -> ExitCode {
        let code = match self {
            Interrupted::Exit(exit) => {
                eprintln!(
                    "booking up: {} during start-up; stopping the cluster",
                    exit.describe()
                );
                ExitCode::from(1)
            }
            Interrupted::Stop => ExitCode::SUCCESS,
        };
        supervisor.stop().await;
        code
    }
}

/// Runs `step` unless a child exits or a stop signal arrives first, so no
/// start-up wait can outlive a dead child or ignore Ctrl-C.
async fn unless_interrupted<T>(
    supervisor: &mut Supervisor,
    stop: Pin<&mut impl Future<Output = ()>>,
    step: impl Future<Output = T>,
) -> Result<T, Interrupted> {
    tokio::select! {
        value = step => Ok(value),
        exit = supervisor.next_exit() => Err(Interrupted::Exit(exit)),
        () = stop => Err(Interrupted::Stop),
    }
}

/// Polls `GET /readyz` until 200 (the gateway listens and sees a leader).
async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + GATEWAY_WAIT;
    loop {
        let last = match http.get(format!("{base}/readyz")).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => format!("/readyz answered {}", r.status()),
            Err(e) => e.to_string(),
        };
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "not ready after {GATEWAY_WAIT:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What `up` did about the demo event.
enum Demo {
    Created {
        seats: u32,
    },
    Existed,
    /// Not fatal: the cluster and gateway run; the operator can create events.
    Failed(String),
}

/// Creates and opens the demo event through the admin API, unless it exists.
async fn ensure_demo_event(http: &reqwest::Client, base: &str, admin_token: &str) -> Demo {
    match try_demo_event(http, base, admin_token).await {
        Ok(demo) => demo,
        Err(e) => Demo::Failed(format!("{e:#}")),
    }
}

async fn try_demo_event(
    http: &reqwest::Client,
    base: &str,
    admin_token: &str,
) -> anyhow::Result<Demo> {
    let event_url = format!("{base}/v1/events/{DEMO_EVENT_ID}");
    let existing = http
        .get(&event_url)
        .send()
        .await
        .context("GET the demo event")?;
    match existing.status().as_u16() {
        200 => return Ok(Demo::Existed),
        404 => {}
        status => anyhow::bail!(
            "GET {event_url} answered {status}: {}",
            existing.text().await.unwrap_or_default()
        ),
    }
    let (spec, seats) = demo_event_spec();
    let created = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(admin_token)
        .json(&spec)
        .send()
        .await
        .context("POST /v1/events")?;
    // 409: another `up` (or a retry inside the client) created it meanwhile.
    if !(created.status().is_success() || created.status().as_u16() == 409) {
        anyhow::bail!(
            "POST /v1/events answered {}: {}",
            created.status(),
            created.text().await.unwrap_or_default()
        );
    }
    let opened = http
        .post(format!("{event_url}/sale/open"))
        .bearer_auth(admin_token)
        .send()
        .await
        .context("open the sale")?;
    if !opened.status().is_success() {
        anyhow::bail!(
            "POST {event_url}/sale/open answered {}: {}",
            opened.status(),
            opened.text().await.unwrap_or_default()
        );
    }
    Ok(Demo::Created { seats })
}

/// A venue big enough to look like one on the seat map: two reserved
/// sections (1 500 + 900 seats) and a standing floor of 500; and its size.
fn demo_event_spec() -> (serde_json::Value, u32) {
    let rows = |count: u32, seats: u32| -> Vec<serde_json::Value> {
        (1..=count)
            .map(|r| serde_json::json!({ "label": r.to_string(), "seats": seats }))
            .collect()
    };
    let spec = serde_json::json!({
        "id": DEMO_EVENT_ID,
        "name": "Demo Night",
        "venue": "Local Arena",
        "starts_at": "2030-01-01T20:00:00Z",
        "sections": [
            {"kind": "reserved", "id": "A", "name": "Stalls", "price_cents": 5_000, "rows": rows(25, 60)},
            {"kind": "reserved", "id": "B", "name": "Balcony", "price_cents": 3_500, "rows": rows(12, 75)},
            {"kind": "general_admission", "id": "GA", "name": "Standing", "capacity": 500, "price_cents": 2_000}
        ]
    });
    (spec, 25 * 60 + 12 * 75 + 500)
}

fn print_gateway(
    gateway: &http_gateway::GatewaySettings,
    config_path: &Path,
    demo: &Demo,
    admin: &AdminToken,
) {
    let base = format!("http://{}", gateway.listen);
    let demo = match demo {
        Demo::Created { seats } => format!("created, {seats} seats, sale open"),
        Demo::Existed => "exists (reused from the data directory)".to_string(),
        Demo::Failed(reason) => format!("NOT created: {reason}"),
    };
    // The generated token is shown once, on the run that made it.
    let admin_line = if admin.created {
        format!(
            "Authorization: Bearer {}\n             (generated now and shown once; kept in {}, mode 0600)",
            admin.token, admin.source
        )
    } else {
        format!(
            "Authorization: Bearer <{} of {}>",
            admin.source,
            config_path.display()
        )
    };
    println!(
        "gateway:\n  page       {base}/?event={DEMO_EVENT_ID}\n  api        {base}/v1  (OpenAPI: {base}/openapi.json)\n  \
         demo event {base}/v1/events/{DEMO_EVENT_ID}: {demo}\n  \
         admin      {admin_line}\n\
         Ctrl-C stops the cluster and the gateway.\n"
    );
}

fn print_endpoints(
    config: &cluster_config::ClusterConfig,
    config_path: &Path,
    leader_id: u64,
    term: u64,
) {
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
        "try: bookctl --config {} status",
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
        Supervisor {
            running: Vec::new(),
            exits_tx,
            exits_rx,
        }
    }

    /// Starts `command` as child `name` in its own process group, with its
    /// stdout and stderr lines prefixed by `[name]`.
    pub fn spawn(&mut self, name: &str, mut command: Command) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.running.len() < CHILDREN_MAX,
            "at most {CHILDREN_MAX} children"
        );
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child: Child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
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
            let _ = exits
                .send(ChildExit {
                    name: child_name,
                    status,
                })
                .await;
        });
        self.running.push(Running {
            name: name.to_string(),
            control,
        });
        Ok(())
    }

    /// Waits for the next child to exit and forgets it. Pending forever if no
    /// child runs (the caller selects it against other events).
    pub async fn next_exit(&mut self) -> ChildExit {
        if self.running.is_empty() {
            return std::future::pending().await;
        }
        let exit = self
            .exits_rx
            .recv()
            .await
            .expect("the supervisor holds a sender, so the channel stays open");
        self.running.retain(|r| r.name != exit.name);
        exit
    }

    /// Stops every child: SIGTERM, then SIGKILL for those still running after
    /// [`STOP_GRACE`]. Returns when all are reaped or [`KILL_WAIT`] passed.
    pub async fn stop(&mut self) {
        if self.running.is_empty() {
            return;
        }
        eprintln!(
            "booking up: stopping {} child process(es)",
            self.running.len()
        );
        self.signal_all(libc::SIGTERM).await;
        if !self.wait_all(STOP_GRACE).await {
            let names: Vec<&str> = self.running.iter().map(|r| r.name.as_str()).collect();
            eprintln!(
                "booking up: {} still running after {:?}; killing",
                names.join(", "),
                STOP_GRACE
            );
            self.signal_all(libc::SIGKILL).await;
            if !self.wait_all(KILL_WAIT).await {
                eprintln!(
                    "booking up: could not reap {} child process(es)",
                    self.running.len()
                );
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
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
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
