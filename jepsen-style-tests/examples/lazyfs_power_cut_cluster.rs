//! One-off experiment (issue 12, `power-loss`): how many acknowledged holds
//! does a 3-node cluster lose when every node is killed and its disk loses
//! power?
//!
//! Each try: mount a lazy file system (keeps only fsynced bytes) on every
//! node's data directory, start 3 `booking node`s on loopback, create an
//! event, submit `--holds` holds (one seat each, `--concurrency` at once)
//! through the client library, SIGKILL every node right after the last
//! acknowledgement, cut the power of every file system, restart the nodes
//! and read every acknowledged hold back by id with a linearizable read.
//!
//! ```sh
//! cargo build --release --bin booking
//! sudo target/release/examples/lazyfs_power_cut_cluster --tries 3 --holds 400
//! ```
//!
//! Measured on main at `fcda2b4` (the store before the durability fix:
//! `flush_async` only), 2 shared cores, lost / acknowledged per try:
//! - `--concurrency 16` (400 holds in 0.1 s, inside one 500 ms sled
//!   flusher period): 310/400, 400/400 (membership lost too: no leader
//!   after the restart), 400/400 (only the initialising entry survived).
//! - `--concurrency 1` (400 holds in 0.7–1.6 s): 134/400, 175/400, 143/400.
//!
//! Again on branch `durability` before the fix (`4c4def5`), `--tries 2
//! --concurrency 1`: 93/400 and 265/400 lost.
//! After the durability step (`store/durable.rs`, branch `durability`),
//! `--tries 3`: 0/400 lost in each try with `--concurrency 1` (400 holds in
//! 1.1-1.2 s, against 0.5-0.6 s before: the added syncs, on this in-memory
//! FUSE disk) and 0/400 with `--concurrency 16` (0.1-0.2 s).
//!
//! The loss is what was acknowledged since the last periodic `sync_all`
//! of sled's flusher on the node that wins the next election, so it
//! scales with the submit rate, not with the number of holds.
//!
//! Needs root, `/dev/fuse` and `fusermount3`. Writes node logs under
//! `--out` (default: a directory in the temp dir, printed at the start).
//! Prints one line per try and a JSON summary at the end; exits 0 when
//! the experiment ran (whatever it found), 1 when it could not run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Client, ClientError, Consistency, Ids};
use jepsen_style_tests::harness::cluster::{Cluster, Timing};
use jepsen_style_tests::harness::workload::{setup_event, WorkloadConfig, WorkloadKind, EVENT_ID};
use jepsen_style_tests::lazyfs::{self, CutReport, LazyFsMount, LazyFsOptions};
use state_machine::{BookingError, Command, Query, QueryResult, Reply, Selection};

/// Nodes in the cluster.
const NODES: u64 = 3;
/// How long the cluster may take to elect a leader, at start and after the cut.
const LEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Holds last longer than any try, so none expires before it is read back.
const HOLD_TTL_MS: u64 = 3_600_000;
/// Retries of one read-back when the cluster answers with a transient error.
const READ_ATTEMPTS: u32 = 20;

struct Args {
    booking_bin: PathBuf,
    tries: u32,
    holds: u32,
    concurrency: usize,
    fsync_delay_ms: u64,
    out: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut args = Args {
        booking_bin: std::env::var_os("BOOKING_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target/release/booking")),
        tries: 3,
        holds: 400,
        concurrency: 16,
        fsync_delay_ms: 0,
        out: std::env::temp_dir().join(format!("lazyfs-cluster-{}", std::process::id())),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--booking-bin" => args.booking_bin = value()?.into(),
            "--tries" => args.tries = value()?.parse().map_err(|e| format!("--tries: {e}"))?,
            "--holds" => args.holds = value()?.parse().map_err(|e| format!("--holds: {e}"))?,
            "--concurrency" => {
                args.concurrency = value()?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?
            }
            "--fsync-delay-ms" => {
                args.fsync_delay_ms = value()?
                    .parse()
                    .map_err(|e| format!("--fsync-delay-ms: {e}"))?
            }
            "--out" => args.out = value()?.into(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[derive(serde::Serialize)]
struct TryResult {
    try_no: u32,
    acknowledged: u64,
    lost: u64,
    lost_hold_ids: Vec<u64>,
    /// Holds whose read-back failed for another reason than "not found".
    unreadable: u64,
    recovered: bool,
    note: String,
    submit_seconds: f64,
    cut_reports: Vec<CutReport>,
}

/// Submits the holds; returns (hold id, holder) of each acknowledged one.
async fn submit_holds(client: &Client, holds: u32, concurrency: usize) -> Vec<(u64, String)> {
    let next = Arc::new(std::sync::atomic::AtomicU32::new(1));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n > holds {
                    return acked;
                }
                let holder = format!("h-{n}");
                let seat = format!("A-1-{n}");
                let hold = Command::Hold {
                    event_id: EVENT_ID.to_string(),
                    holder: holder.clone(),
                    selection: Selection::Seats(vec![seat]),
                };
                match client
                    .submit(Ids::New, hold)
                    .await
                    .and_then(client::Submitted::into_reply)
                {
                    Ok(Reply::Held { hold_id, .. }) => acked.push((hold_id, holder)),
                    Ok(other) => eprintln!("hold {n}: unexpected reply {other:?}"),
                    Err(e) => eprintln!("hold {n}: {e}"),
                }
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all
}

/// Whether an acknowledged hold is still there: `Some(true)` present,
/// `Some(false)` lost, `None` unreadable.
async fn hold_present(client: &Client, hold_id: u64, holder: &str) -> Option<bool> {
    for _ in 0..READ_ATTEMPTS {
        match client
            .read(Query::Hold { hold_id }, Consistency::Linearizable)
            .await
        {
            Ok((QueryResult::Hold(Ok(view)), _)) => return Some(view.holder == holder),
            Ok((QueryResult::Hold(Err(BookingError::UnknownHold { .. })), _)) => {
                return Some(false)
            }
            Ok((other, _)) => {
                eprintln!("hold {hold_id}: unexpected answer {other:?}");
                return None;
            }
            Err(ClientError::Refused(e)) => {
                eprintln!("hold {hold_id}: refused {e}");
                return None;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    None
}

async fn one_try(args: &Args, try_no: u32) -> Result<TryResult, String> {
    let dir = args.out.join(format!("try-{try_no}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // Mounts first (dropped last): every node's data directory is a lazy FS.
    let mut mounts = Vec::new();
    for id in 1..=NODES {
        let options = LazyFsOptions {
            backing: None,
            fsync_delay_ms: args.fsync_delay_ms,
        };
        mounts.push(LazyFsMount::mount(
            &dir.join("data").join(format!("node-{id}")),
            options,
        )?);
    }
    let mut cluster = Cluster::start(
        &args.booking_bin,
        &dir,
        NODES,
        false,
        &Timing::default(),
        vec![],
        // This example mounts its own lazy file systems (above).
        false,
    )?;
    let client = cluster.client()?;
    client
        .wait_for_leader(LEADER_TIMEOUT)
        .await
        .map_err(|e| format!("no leader at start: {e}"))?;
    let cfg = WorkloadConfig {
        kind: WorkloadKind::Register,
        processes: args.concurrency as u64,
        seats: args.holds,
        hold_ttl_ms: HOLD_TTL_MS,
        ops_max: u64::from(args.holds),
        seed: u64::from(try_no),
    };
    setup_event(&client, &cfg, LEADER_TIMEOUT).await?;

    let started = Instant::now();
    let acked = submit_holds(&client, args.holds, args.concurrency).await;
    let submit_seconds = started.elapsed().as_secs_f64();
    // Right after the last acknowledgement: every node dies, then every
    // disk loses power.
    for id in cluster.ids() {
        cluster.kill(id)?;
    }
    let cut_reports: Vec<CutReport> = mounts.iter().map(|m| m.power_cut()).collect();
    for id in cluster.ids() {
        cluster.restart(id)?;
    }
    let client = cluster.client()?;
    let mut result = TryResult {
        try_no,
        acknowledged: acked.len() as u64,
        lost: 0,
        lost_hold_ids: Vec::new(),
        unreadable: 0,
        recovered: true,
        note: String::new(),
        submit_seconds,
        cut_reports,
    };
    if let Err(e) = client.wait_for_leader(LEADER_TIMEOUT).await {
        result.recovered = false;
        result.note = format!(
            "no leader after the power cut: {e}; node logs in {}",
            dir.join("logs").display()
        );
        result.lost = result.acknowledged;
        return Ok(result);
    }
    for (hold_id, holder) in &acked {
        match hold_present(&client, *hold_id, holder).await {
            Some(true) => {}
            Some(false) => {
                result.lost += 1;
                result.lost_hold_ids.push(*hold_id);
            }
            None => result.unreadable += 1,
        }
    }
    result.lost_hold_ids.sort_unstable();
    drop(cluster);
    for m in mounts {
        if let Err(e) = m.unmount() {
            eprintln!("{e}");
        }
    }
    Ok(result)
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lazyfs_power_cut_cluster: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some(reason) = lazyfs::unavailable_reason() {
        eprintln!("lazyfs_power_cut_cluster: cannot run: {reason}");
        return std::process::ExitCode::FAILURE;
    }
    println!(
        "lazyfs_power_cut_cluster: {} tries, {} holds, {} at once, fsync delay {} ms, booking {}, out {}",
        args.tries,
        args.holds,
        args.concurrency,
        args.fsync_delay_ms,
        args.booking_bin.display(),
        args.out.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut results = Vec::new();
    for try_no in 1..=args.tries {
        match runtime.block_on(one_try(&args, try_no)) {
            Ok(r) => {
                println!(
                    "try {}: acknowledged {}, lost {}, unreadable {}, recovered {}, holds took {:.1} s{}",
                    r.try_no,
                    r.acknowledged,
                    r.lost,
                    r.unreadable,
                    r.recovered,
                    r.submit_seconds,
                    if r.note.is_empty() { String::new() } else { format!(" ({})", r.note) }
                );
                results.push(r);
            }
            Err(e) => {
                eprintln!("try {try_no}: could not run: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&results).unwrap_or_default()
    );
    std::process::ExitCode::SUCCESS
}
