//! One `jepsen run`: start the cluster, drive the workload under the nemesis,
//! heal, read every replica, check, and write the report directory.
//!
//! Owns: the order of those phases, the progress line, `results.json` and the
//! summary. The report directory holds `history.jsonl`, `results.json`,
//! `schedule.json`, `nemesis.log`, `timeline.html`, `latency.png`,
//! `index.html` (links to all of them) and
//! `cluster/` (the run's `cluster.toml` and `logs/node-<id>.log`; the data
//! directories are deleted unless `keep_data`).
//!
//! Must not: exit the process or print the verdict's exit code; the binary
//! maps [`RunOutcome`] to one. Cleanup is by drop guards (`Cluster`, `Net`),
//! so an error or an interrupt in any phase still stops every node and
//! removes the network.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::{Client, ClientOptions, ClientTls};
use serde::Serialize;
use serde_json::{json, Value};

use super::cluster::{Cluster, Timing};
use super::final_state;
use super::gateway_workload::{self, GwShared};
use super::index;
use super::nemesis::{self, NemesisKind, Step};
use super::net::Net;
use super::recorder::Recorder;
use super::report;
use super::workload::{self, Shared, WorkloadConfig, WorkloadKind};
use crate::booking::{self, BookingOp, BookingResult};
use crate::checkers::{self, CheckResult};
use crate::history;
use crate::linearizability::{Budget, Verdict};
use crate::models::seat;

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub workload: WorkloadKind,
    pub nemesis: NemesisKind,
    pub time_limit_s: u64,
    pub seed: u64,
    pub nodes: u64,
    pub out: PathBuf,
    pub booking_bin: PathBuf,
    /// Client processes; the workload's default if `None`.
    pub processes: Option<u64>,
    pub ops_max: u64,
    /// Wall-time budget of the linearizability check ("unknown" past it).
    pub check_time_limit_s: u64,
    /// `false` forces loopback mode even as root.
    pub allow_netns: bool,
    pub keep_data: bool,
    /// Extra environment for the nodes (the selftest's bug selector).
    pub node_env: Vec<(String, String)>,
    /// Extra environment for the gateway of the `gateway-sellout` workload.
    pub gateway_env: Vec<(String, String)>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict3 {
    Valid,
    Invalid,
    /// Some check ran out of budget; nothing invalid was found.
    Unknown,
}

#[derive(Debug)]
pub enum RunOutcome {
    Checked {
        verdict: Verdict3,
        ops: usize,
    },
    /// The nemesis needs what this machine lacks (the reason is printed).
    Skipped(String),
}

/// Client bounds for the workload: short enough that operations finish
/// within a few seconds of a fault, so the history keeps moving.
fn workload_client_options(tls: &Option<ClientTls>) -> ClientOptions {
    ClientOptions {
        tls: tls.clone(),
        request_timeout_ms: 1_000,
        connect_timeout_ms: 500,
        attempts_max: 6,
        retry_budget_ms: 4_000,
        backoff_ms_initial: 25,
        backoff_ms_max: 500,
        ..ClientOptions::default()
    }
}

fn verdict_word(verdict: Verdict3) -> &'static str {
    match verdict {
        Verdict3::Valid => "valid",
        Verdict3::Invalid => "invalid",
        Verdict3::Unknown => "unknown",
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), String> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| format!("{}: {e}", path.display()))?;
    write_file(path, &text)
}

/// Prints the schedule (the seed reproduces it).
pub fn print_schedule(steps: &[Step], seed: u64, kind: NemesisKind) {
    eprintln!(
        "jepsen: nemesis {kind:?}, seed {seed}: {} fault(s)",
        steps.len()
    );
    for s in steps {
        eprintln!("  {s}");
    }
}

/// Runs one test and writes its report. `Err` is a harness failure (the
/// cluster would not start, the output is not writable), not a verdict.
pub async fn run(opts: RunOptions) -> Result<RunOutcome, String> {
    let (default_procs, seats, ttl_ms) = opts.workload.defaults();
    let cfg = WorkloadConfig {
        kind: opts.workload,
        processes: opts.processes.unwrap_or(default_procs),
        seats,
        hold_ttl_ms: ttl_ms,
        ops_max: opts.ops_max,
        seed: opts.seed,
    };
    let network = match Net::check_available() {
        Ok(()) if opts.allow_netns => true,
        Ok(()) => false,
        Err(why) => {
            eprintln!("jepsen: ************************************************************");
            eprintln!("jepsen: NO NETWORK NAMESPACES: {why}.");
            eprintln!("jepsen: running on loopback; partitions are NOT available, only kill,");
            eprintln!("jepsen: pause, clock and membership faults.");
            eprintln!("jepsen: ************************************************************");
            if opts.nemesis.needs_network() {
                return Ok(RunOutcome::Skipped(format!(
                    "nemesis `partition` needs root, ip and nft: {why}"
                )));
            }
            false
        }
    };
    if opts.nemesis.needs_lazy_disks() {
        if let Some(why) = crate::lazyfs::unavailable_reason() {
            return Ok(RunOutcome::Skipped(format!(
                "nemesis `power-loss` needs a lazy file system: {why}"
            )));
        }
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let ids: Vec<u64> = (1..=opts.nodes).collect();
    let time_limit_ms = opts.time_limit_s * 1000;
    let steps = nemesis::schedule(opts.nemesis, opts.seed, time_limit_ms, &ids, network);
    print_schedule(&steps, opts.seed, opts.nemesis);
    write_json(&opts.out.join("schedule.json"), &steps)?;

    let cluster_dir = opts.out.join("cluster");
    if cluster_dir.exists() {
        // A lazy file system an earlier, killed run left mounted here.
        crate::lazyfs::unmount_all_under(&cluster_dir);
        std::fs::remove_dir_all(&cluster_dir)
            .map_err(|e| format!("{}: {e}", cluster_dir.display()))?;
    }
    let timing = if opts.nemesis.needs_frequent_snapshots() {
        Timing::snapshot_heavy()
    } else {
        Timing::default()
    };
    let cluster = tokio::task::block_in_place(|| {
        Cluster::start(
            &opts.booking_bin,
            &cluster_dir,
            opts.nodes,
            network,
            &timing,
            opts.node_env.clone(),
            opts.nemesis.needs_lazy_disks(),
        )
    })?;
    let endpoints: Vec<(u64, String)> = ids.iter().map(|&id| (id, cluster.endpoint(id))).collect();
    // The harness is the operator: its clients present the admin
    // certificate (the membership nemesis changes membership through them).
    let tls = cluster.client_tls()?;
    eprintln!(
        "jepsen: {} nodes on {} ({})",
        opts.nodes,
        if network {
            "network namespaces"
        } else {
            "loopback"
        },
        endpoints
            .iter()
            .map(|(_, e)| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let cluster = Arc::new(Mutex::new(cluster));
    let client = Client::with_options(
        endpoints.iter().map(|(_, e)| e.clone()),
        workload_client_options(&tls),
    )
    .map_err(|e| format!("client: {e}"))?;
    client
        .wait_for_leader(Duration::from_secs(30))
        .await
        .map_err(|e| format!("cluster did not elect a leader: {e}"))?;
    workload::setup_event(&client, &cfg, Duration::from_secs(30)).await?;
    let gateway_workload = cfg.kind == WorkloadKind::Gateway;
    let mut gateway = None;
    if gateway_workload {
        let mut g = tokio::task::block_in_place(|| {
            let cluster = cluster.lock().expect("cluster lock");
            gateway_workload::process::start(&cluster, &opts.gateway_env)
        })?;
        let http = gateway_workload::http_client()?;
        gateway_workload::process::wait_ready(&mut g, &http).await?;
        eprintln!("jepsen: gateway at {}", g.url);
        gateway = Some((g, http));
    }

    let recorder = Arc::new(Recorder::new());
    let nemesis_log = Arc::new(Mutex::new(Vec::new()));
    let ctx = Arc::new(nemesis::Ctx {
        cluster: cluster.clone(),
        client: client.clone(),
        recorder: recorder.clone(),
        log: nemesis_log.clone(),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let deadline = Instant::now() + Duration::from_millis(time_limit_ms);
    let node_clients = endpoints
        .iter()
        .map(|(_, e)| Client::with_options([e.as_str()], workload_client_options(&tls)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("client: {e}"))?;
    let shared = Arc::new(Shared {
        client: client.clone(),
        node_clients,
        recorder: recorder.clone(),
        cfg: cfg.clone(),
        deadline,
        ops_started: Default::default(),
        stop: stop_rx.clone(),
    });
    let nemesis_task = {
        let ctx = ctx.clone();
        let steps = steps.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move { nemesis::execute(&ctx, &steps, stop).await })
    };
    let workload_task = match &gateway {
        Some((g, http)) => tokio::spawn(gateway_workload::run(Arc::new(GwShared {
            http: http.clone(),
            url: g.url.clone(),
            recorder: recorder.clone(),
            cfg: cfg.clone(),
            deadline,
            ops_started: Default::default(),
            stop: stop_rx.clone(),
        }))),
        None => tokio::spawn(workload::run(shared)),
    };
    let progress = {
        let recorder = recorder.clone();
        let log = nemesis_log.clone();
        let limit = opts.time_limit_s;
        tokio::spawn(async move {
            let mut shown = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let (invoked, ok, other) = recorder.counts();
                let log = log.lock().expect("log lock").clone();
                for line in &log[shown..] {
                    eprintln!("{line}");
                }
                shown = log.len();
                eprintln!(
                    "[{:>5.1}s/{limit}s] {invoked} ops invoked, {ok} ok, {other} fail/info",
                    recorder.now_ns() as f64 / 1e9
                );
            }
        })
    };
    let _ = workload_task.await;
    let _ = stop_tx.send(true);
    let _ = nemesis_task.await;
    progress.abort();
    eprintln!(
        "jepsen: workload done after {:.1} s; healing",
        recorder.now_ns() as f64 / 1e9
    );
    let heal_errors = nemesis::heal_everything(&ctx).await;
    for e in &heal_errors {
        eprintln!("jepsen: heal: {e}");
    }
    let end_ns = recorder.now_ns();

    // The history and the final states.
    let events = recorder.events();
    let ops =
        booking::decode(events.clone()).map_err(|e| format!("decoding our own history: {e}"))?;
    let mut history_file = Vec::new();
    history::write_jsonl(&mut history_file, &events).map_err(|e| format!("history: {e}"))?;
    write_file(&opts.out.join("history.jsonl"), &history_file)?;
    let (replicas, finals, final_error) =
        final_state::read_final_states(&endpoints, &tls, &cfg, &ops).await;
    let finals_read_ns = recorder.now_ns();
    if let Some(e) = &final_error {
        eprintln!("jepsen: final state: {e}");
    }

    let cluster_logs: Vec<(u64, PathBuf)> = cluster.lock().expect("cluster lock").log_paths();
    let gateway_log = gateway.as_ref().map(|(g, _)| g.log_path().to_path_buf());
    if let Some((mut g, _)) = gateway.take() {
        tokio::task::block_in_place(|| g.stop());
    }
    tokio::task::block_in_place(|| cluster.lock().expect("cluster lock").shutdown());
    if !opts.keep_data {
        let _ = std::fs::remove_dir_all(cluster_dir.join("data"));
    }

    // Checks.
    eprintln!("jepsen: checking {} operations", ops.len());
    let budget = Budget {
        time_limit: Duration::from_secs(opts.check_time_limit_s),
        ..Budget::default()
    };
    let check_started = Instant::now();
    // The gateway workload's best-available holds name no seats when invoked,
    // so per-seat linearizability does not apply to it (see gateway_workload).
    let lin_ops: &[BookingOp] = if gateway_workload { &[] } else { &ops };
    let per_seat = seat::check_seats(lin_ops, &budget);
    let lin_took = check_started.elapsed();
    let mut results: Vec<CheckResult> = vec![
        checkers::no_seat_sold_twice(&ops),
        checkers::ids_issued_once(&ops),
    ];
    // Checkout extends a hold (payment pin), so the hold's reply does not
    // bound the confirm in the gateway workload.
    if !gateway_workload {
        // The store keeps time promises only while a majority of clocks is
        // sane: nothing across a window that moved a majority's is judged.
        let insane = checkers::majority_clock_windows(
            &recorder.faults(),
            ids.len(),
            end_ns,
            checkers::MAJORITY_CLOCK_SETTLE_NS,
        );
        results.push(checkers::no_confirm_past_expiry(&ops));
        results.push(checkers::no_early_expiry(
            &ops,
            cfg.hold_ttl_ms,
            checkers::EXPIRY_CLOCK_ALLOWANCE_MS,
            &insane,
        ));
        results.push(checkers::no_payment_pending_expiry(
            &ops,
            &replicas,
            finals_read_ns,
            cluster_config::defaults::PAYMENT_WINDOW_MS,
            checkers::EXPIRY_CLOCK_ALLOWANCE_MS,
            &insane,
        ));
        results.push(checkers::log_time_follows_real_time(
            &ops,
            checkers::EXPIRY_CLOCK_ALLOWANCE_MS,
            &insane,
        ));
        // Holders name one hold request in these workloads (not in the
        // gateway's, whose fans retry through the gateway).
        results.push(checkers::no_duplicate_effects(&ops, &replicas));
    }
    let replicas_complete = final_error.is_none() && replicas.len() == ids.len();
    if !replicas.is_empty() {
        results.push(checkers::acknowledged_bookings_present(&ops, &replicas));
        results.push(checkers::no_phantom_bookings(&ops, &replicas));
        results.push(checkers::no_resurrections(&ops, &replicas));
        results.push(checkers::event_present(&replicas));
        results.push(checkers::replica_hashes_equal(&replicas));
        if gateway_workload {
            let requests = gateway_workload::requests_by_holder(&events);
            results.push(gateway_workload::no_unrequested_holds(
                &ops, &requests, &replicas,
            ));
        }
    }
    let lin_verdict = per_seat.overall();
    let lin_json = linearizability_json(&per_seat, &ops, lin_took);
    let mut verdict = if results.iter().all(|r| r.valid) {
        Verdict3::Valid
    } else {
        Verdict3::Invalid
    };
    match &lin_verdict {
        Verdict::NotLinearizable(_) => verdict = Verdict3::Invalid,
        Verdict::Unknown(_) if verdict == Verdict3::Valid => verdict = Verdict3::Unknown,
        _ => {}
    }
    // Without every replica's final state the replica checks did not run:
    // that is a harness failure to report, not a pass.
    if !replicas_complete && verdict == Verdict3::Valid {
        verdict = Verdict3::Unknown;
    }
    let counts = op_counts(&ops);
    let offending: Vec<usize> = results
        .iter()
        .flat_map(|r| r.offending_ops.iter().copied())
        .chain(
            per_seat
                .violations()
                .flat_map(|(_, e)| e.candidates.clone()),
        )
        .collect();

    // Pictures.
    let faults = recorder.faults();
    let title = format!(
        "jepsen {:?} / {:?}, seed {}, {} s",
        opts.workload, opts.nemesis, opts.seed, opts.time_limit_s
    );
    write_file(
        &opts.out.join("timeline.html"),
        report::timeline_html(&title, &ops, &faults, end_ns, &offending).as_bytes(),
    )?;
    let plot = match report::latency_png(&format!("latency: {title}"), &ops, &faults, end_ns) {
        Ok((png, axes)) => {
            write_file(&opts.out.join("latency.png"), &png)?;
            Some(axes)
        }
        Err(e) => {
            eprintln!("jepsen: latency plot: {e}");
            None
        }
    };
    let mut nemesis_lines = nemesis_log.lock().expect("log lock").join("\n");
    nemesis_lines.push('\n');
    write_file(&opts.out.join("nemesis.log"), nemesis_lines.as_bytes())?;

    let results_json = json!({
        "valid": verdict == Verdict3::Valid,
        "verdict": verdict_word(verdict),
        "workload": cfg,
        "nemesis": opts.nemesis,
        "seed": opts.seed,
        "time_limit_s": opts.time_limit_s,
        "nodes": opts.nodes,
        "network": if network { "namespaces" } else { "loopback" },
        "booking_bin": opts.booking_bin,
        "node_env": opts.node_env,
        "gateway_env": opts.gateway_env,
        "gateway_log": gateway_log,
        "ops": counts,
        "schedule": steps,
        "faults": faults,
        "heal_errors": heal_errors,
        "final_state_error": final_error,
        "replicas": finals,
        "replica_states": replicas,
        "linearizability": lin_json,
        "checkers": results,
        "plot": plot,
        "node_logs": cluster_logs.iter().map(|(id, p)| json!({"node": id, "log": p})).collect::<Vec<_>>(),
    });
    write_json(&opts.out.join("results.json"), &results_json)?;
    // Last, so it links everything the run wrote.
    write_file(
        &opts.out.join("index.html"),
        index::index_html(&opts.out, &title, verdict_word(verdict)).as_bytes(),
    )?;
    print_summary(
        &opts,
        &results,
        &lin_verdict,
        &per_seat,
        &counts,
        verdict,
        lin_took,
        &ops,
    );
    Ok(RunOutcome::Checked {
        verdict,
        ops: ops.len(),
    })
}

#[derive(Serialize, Default, Debug)]
pub struct OpCounts {
    pub total: usize,
    pub ok: usize,
    pub refused: usize,
    pub failed: usize,
    pub unknown: usize,
    pub by_f: std::collections::BTreeMap<String, usize>,
}

fn op_counts(ops: &[BookingOp]) -> OpCounts {
    let mut c = OpCounts {
        total: ops.len(),
        ..Default::default()
    };
    for op in ops {
        match op.result {
            BookingResult::Ok(_) => c.ok += 1,
            BookingResult::Refused(_) => c.refused += 1,
            BookingResult::Failed => c.failed += 1,
            BookingResult::Unknown => c.unknown += 1,
        }
        *c.by_f
            .entry(format!("{:?}", op.call.f()).to_lowercase())
            .or_default() += 1;
    }
    c
}

fn linearizability_json(
    per_seat: &crate::linearizability::PartitionedVerdict<String>,
    ops: &[BookingOp],
    took: Duration,
) -> Value {
    let by_id = |id: usize| ops.iter().find(|o| o.id == id);
    let describe = |id: usize| -> Value {
        match by_id(id) {
            Some(o) => json!({
                "op": id, "process": o.process, "f": o.call.f(), "invoke": o.call.to_value(),
                "result": result_json(&o.result), "invoke_s": o.invoke_ns as f64 / 1e9,
                "complete_s": o.complete_ns.map(|t| t as f64 / 1e9), "index": o.index,
            }),
            None => json!({"op": id}),
        }
    };
    let seats: Vec<Value> = per_seat
        .keys
        .iter()
        .map(|(seat, v)| match v {
            Verdict::Linearizable => json!({"seat": seat, "verdict": "linearizable"}),
            Verdict::Unknown(why) => json!({"seat": seat, "verdict": "unknown", "why": why.to_string()}),
            Verdict::NotLinearizable(e) => {
                let tail = e.linearized.len().saturating_sub(8);
                json!({
                    "seat": seat, "verdict": "not linearizable",
                    "state_after_prefix": e.state,
                    "prefix_len": e.linearized.len(),
                    "prefix_tail": e.linearized[tail..].iter().map(|&i| describe(i)).collect::<Vec<_>>(),
                    "blocked": describe(e.blocked),
                    "candidates": e.candidates.iter().map(|&i| describe(i)).collect::<Vec<_>>(),
                })
            }
        })
        .collect();
    let overall = match per_seat.overall() {
        Verdict::Linearizable => "linearizable",
        Verdict::NotLinearizable(_) => "not linearizable",
        Verdict::Unknown(_) => "unknown",
    };
    json!({"checker": "linearizable_per_seat", "verdict": overall, "valid": overall == "linearizable",
           "took_s": took.as_secs_f64(), "seats": seats})
}

fn result_json(r: &BookingResult) -> Value {
    match r {
        BookingResult::Ok(ret) => json!({"ok": ret.to_value()}),
        BookingResult::Refused(x) => json!({"refused": x.error}),
        BookingResult::Failed => json!("fail"),
        BookingResult::Unknown => json!("info"),
    }
}

#[allow(clippy::too_many_arguments)]
fn print_summary(
    opts: &RunOptions,
    results: &[CheckResult],
    lin: &Verdict,
    per_seat: &crate::linearizability::PartitionedVerdict<String>,
    counts: &OpCounts,
    verdict: Verdict3,
    lin_took: Duration,
    ops: &[BookingOp],
) {
    eprintln!();
    eprintln!(
        "== jepsen {:?} under {:?}, seed {}, {} s, {} nodes",
        opts.workload, opts.nemesis, opts.seed, opts.time_limit_s, opts.nodes
    );
    eprintln!(
        "   {} operations: {} ok, {} refused by the store, {} failed, {} unknown",
        counts.total, counts.ok, counts.refused, counts.failed, counts.unknown
    );
    let lin_text = match lin {
        Verdict::Linearizable => "linearizable".to_string(),
        Verdict::NotLinearizable(_) => "NOT LINEARIZABLE".to_string(),
        Verdict::Unknown(why) => format!("unknown ({why})"),
    };
    eprintln!(
        "   {:<32} {lin_text} ({} seats, {:.2?})",
        "linearizable per seat",
        per_seat.keys.len(),
        lin_took
    );
    for (seat, e) in per_seat.violations() {
        eprintln!(
            "     seat {seat}: state {} after {} ops; none of ops {:?} fits next",
            e.state,
            e.linearized.len(),
            e.candidates
        );
        for &id in &e.candidates {
            if let Some(o) = ops.iter().find(|o| o.id == id) {
                eprintln!(
                    "       op {id} p{} {} -> {}",
                    o.process,
                    o.call.to_value(),
                    result_json(&o.result)
                );
            }
        }
    }
    for r in results {
        let status = if r.valid {
            "ok".to_string()
        } else {
            format!("FAILED ({} findings)", r.findings.len())
        };
        eprintln!(
            "   {:<32} {status} ({} checked, {} unjudged)",
            r.checker, r.checked, r.unjudged
        );
        for f in r.findings.iter().take(5) {
            eprintln!("     {} (ops {:?})", f.message, f.ops);
        }
    }
    let verdict_text = match verdict {
        Verdict3::Valid => "VALID",
        Verdict3::Invalid => "INVALID",
        Verdict3::Unknown => "UNKNOWN (see results.json)",
    };
    eprintln!("== {verdict_text}: report in {}", opts.out.display());
}
