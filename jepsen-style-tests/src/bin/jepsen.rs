//! `jepsen`: the Jepsen-style suite's command line.
//!
//! Owns: argument parsing, output and exit codes, the Ctrl-C handler. The
//! checking and the harness live in the library. Subcommands:
//! `check-register FILE`, `run`, `selftest`, `cleanup`, `lazyfs`, `lazyfs-ctl`.
//!
//! Exit codes (scripts and the CI test rely on these):
//! - `check-register`: 0 linearizable, 1 not linearizable, 2 unknown (budget
//!   exhausted) or unusable input.
//! - `run`: 0 valid, 1 a checker failed, 2 unknown (a check ran out of budget
//!   or a replica could not be read), 3 skipped (the nemesis needs root, `ip`
//!   and `nft`, or for `power-loss` root, `/dev/fuse` and `fusermount3`), 4
//!   the harness failed (cluster would not start, ...), 130
//!   interrupted.
//! - `selftest`: 0 every bug caught and the control run valid, 1 otherwise;
//!   the verdict per case is written to `<out>/selftest.json`.
//! - `cleanup`: 0.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use jepsen_style_tests::corpus;
use jepsen_style_tests::harness::nemesis::NemesisKind;
use jepsen_style_tests::harness::net;
use jepsen_style_tests::harness::run::{self, RunOptions, RunOutcome, Verdict3};
use jepsen_style_tests::harness::selftest::{self, CaseResult};
use jepsen_style_tests::harness::workload::WorkloadKind;
use jepsen_style_tests::linearizability::{self, Budget, Op, Outcome, Verdict};
use jepsen_style_tests::models::register::{CasRegister, RegisterOp, RegisterRet};

#[derive(Parser)]
#[command(
    name = "jepsen",
    version,
    about = "Jepsen-style tests and history checkers for the booking cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a Jepsen-format compare-and-set register log for linearizability.
    ///
    /// Prints `linearizable`, `not linearizable` or `unknown` on stdout and the
    /// evidence on stderr; exits 0, 1 or 2 (2 also for unreadable input).
    CheckRegister {
        /// A log with lines like `INFO jepsen.util - 3 :ok :cas [1 4]`.
        file: PathBuf,
        /// Give up with `unknown` after this many seconds.
        #[arg(long, default_value_t = 60)]
        time_limit_s: u64,
    },
    /// One fault-injection run against real `booking` processes; writes a
    /// report directory and exits 0 valid, 1 invalid, 2 unknown, 3 skipped,
    /// 4 harness failure.
    Run(RunArgs),
    /// Runs deliberately broken builds and checks that each bug is caught
    /// (needs a `booking` built with the `fault-injection-bugs` feature).
    Selftest {
        #[command(flatten)]
        common: CommonArgs,
        /// Run only this bug (no control run).
        #[arg(long)]
        only: Option<String>,
    },
    /// Removes namespaces, links and node processes a killed run left behind
    /// (by the `jepsen-`/`jp` name prefix and the JEPSEN_RUN marker), then
    /// unmounts the lazy file systems (`power-loss`) left under `--under`.
    Cleanup {
        /// Unmount lazy file systems at or below this directory only (other
        /// users' runs elsewhere on the machine keep theirs).
        #[arg(long, default_value = ".")]
        under: PathBuf,
    },
    /// Runs a lazy file system (keeps only fsynced bytes) until SIGINT or
    /// SIGTERM; SIGUSR1 or `lazyfs-ctl cut` cuts its power.
    Lazyfs(jepsen_style_tests::lazyfs::cli::LazyfsArgs),
    /// Talks to a running `jepsen lazyfs`: `cut`, `stats`, `fsync-delay-ms N`.
    LazyfsCtl(jepsen_style_tests::lazyfs::cli::LazyfsCtlArgs),
}

#[derive(clap::Args, Clone)]
struct CommonArgs {
    /// Seconds of workload under faults.
    #[arg(long, default_value_t = 30)]
    time_limit: u64,
    /// Seeds the fault schedule and the workload's choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Report directory (created; an existing one is overwritten).
    #[arg(long, default_value = "reports/jepsen")]
    out: PathBuf,
    /// The release `booking` binary to run (not built by the harness).
    #[arg(long, env = "BOOKING_BIN")]
    booking_bin: Option<PathBuf>,
    /// Client processes (the workload's default if absent).
    #[arg(long)]
    concurrency: Option<u64>,
    /// Most operations in the whole run.
    #[arg(long, default_value_t = 100_000)]
    ops_max: u64,
    /// Seconds the linearizability check may take before answering "unknown".
    #[arg(long, default_value_t = 120)]
    check_time_limit: u64,
    /// Run on loopback even as root (no partitions).
    #[arg(long)]
    no_netns: bool,
    /// Keep the nodes' data directories in the report.
    #[arg(long)]
    keep_data: bool,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// register | sellout | expiry
    #[arg(long, default_value = "register")]
    workload: String,
    /// none | partition | kill | pause | clock | membership | mixed | power-loss | disk-loss | crash-in-snapshot
    #[arg(long, default_value = "mixed")]
    nemesis: String,
    #[command(flatten)]
    common: CommonArgs,
}

/// How many of the last linearized operations the evidence shows.
const PREFIX_TAIL_SHOWN: usize = 5;

const EXIT_LINEARIZABLE: u8 = 0;
const EXIT_NOT_LINEARIZABLE: u8 = 1;
const EXIT_UNKNOWN_OR_BAD_INPUT: u8 = 2;

const EXIT_RUN_VALID: u8 = 0;
const EXIT_RUN_INVALID: u8 = 1;
const EXIT_RUN_UNKNOWN: u8 = 2;
const EXIT_RUN_SKIPPED: u8 = 3;
const EXIT_RUN_HARNESS: u8 = 4;
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckRegister { file, time_limit_s } => check_register(&file, time_limit_s),
        Command::Run(args) => with_runtime(run_command(args)),
        Command::Selftest { common, only } => with_runtime(selftest_command(common, only)),
        Command::Cleanup { under } => {
            // Processes first: a node still running keeps its mount busy.
            let mut removed = net::cleanup_leftovers(true);
            let under = under.canonicalize().unwrap_or(under);
            removed.extend(
                jepsen_style_tests::lazyfs::unmount_all_under(&under)
                    .into_iter()
                    .map(|p| format!("lazy file system mount {}", p.display())),
            );
            if removed.is_empty() {
                eprintln!("jepsen cleanup: nothing to remove");
            }
            for r in removed {
                eprintln!("jepsen cleanup: removed {r}");
            }
            ExitCode::SUCCESS
        }
        Command::Lazyfs(args) => jepsen_style_tests::lazyfs::cli::run(args),
        Command::LazyfsCtl(args) => jepsen_style_tests::lazyfs::cli::ctl(args),
    }
}

/// Runs `work` on a multi-threaded runtime, stopping on Ctrl-C or SIGTERM.
/// Dropping the work drops the cluster's guards (nodes stopped, namespaces
/// removed); the sweep afterwards catches anything a spawned task still held.
fn with_runtime(work: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jepsen: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUN_HARNESS);
        }
    };
    let code = runtime.block_on(async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("jepsen: cannot install a SIGTERM handler: {e}");
                    return None;
                }
            };
        tokio::select! {
            code = work => Some(code),
            _ = tokio::signal::ctrl_c() => None,
            _ = term.recv() => None,
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(10));
    match code {
        Some(code) => code,
        None => {
            eprintln!("jepsen: interrupted; stopping nodes and removing namespaces");
            for r in net::cleanup_leftovers(true) {
                eprintln!("jepsen: removed {r}");
            }
            ExitCode::from(EXIT_INTERRUPTED)
        }
    }
}

fn default_booking_bin() -> PathBuf {
    // <repo>/jepsen-style-tests -> <repo>/target/release/booking
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("release")
        .join("booking")
}

fn options(common: &CommonArgs, workload: WorkloadKind, nemesis: NemesisKind) -> RunOptions {
    RunOptions {
        workload,
        nemesis,
        time_limit_s: common.time_limit,
        seed: common.seed,
        nodes: common.nodes,
        out: common.out.clone(),
        booking_bin: common
            .booking_bin
            .clone()
            .unwrap_or_else(default_booking_bin),
        processes: common.concurrency,
        ops_max: common.ops_max,
        check_time_limit_s: common.check_time_limit,
        allow_netns: !common.no_netns,
        keep_data: common.keep_data,
        node_env: Vec::new(),
        gateway_env: Vec::new(),
    }
}

async fn run_command(args: RunArgs) -> ExitCode {
    let Some(workload) = WorkloadKind::parse(&args.workload) else {
        eprintln!(
            "jepsen: unknown workload {:?}; one of {:?}",
            args.workload,
            WorkloadKind::ALL
        );
        return ExitCode::from(EXIT_RUN_HARNESS);
    };
    let Some(nemesis) = NemesisKind::parse(&args.nemesis) else {
        eprintln!(
            "jepsen: unknown nemesis {:?}; one of {:?}",
            args.nemesis,
            NemesisKind::ALL
        );
        return ExitCode::from(EXIT_RUN_HARNESS);
    };
    if !(1..=net::NODE_ID_MAX).contains(&args.common.nodes) {
        eprintln!("jepsen: --nodes must be 1..={}", net::NODE_ID_MAX);
        return ExitCode::from(EXIT_RUN_HARNESS);
    }
    match run::run(options(&args.common, workload, nemesis)).await {
        Ok(RunOutcome::Checked { verdict, .. }) => ExitCode::from(match verdict {
            Verdict3::Valid => EXIT_RUN_VALID,
            Verdict3::Invalid => EXIT_RUN_INVALID,
            Verdict3::Unknown => EXIT_RUN_UNKNOWN,
        }),
        Ok(RunOutcome::Skipped(why)) => {
            eprintln!("jepsen: SKIPPED: {why}");
            ExitCode::from(EXIT_RUN_SKIPPED)
        }
        Err(e) => {
            eprintln!("jepsen: harness error: {e}");
            ExitCode::from(EXIT_RUN_HARNESS)
        }
    }
}

async fn selftest_command(common: CommonArgs, only: Option<String>) -> ExitCode {
    let base = options(&common, WorkloadKind::Register, NemesisKind::None);
    let results = selftest::selftest(base, only).await;
    eprintln!();
    eprintln!("== jepsen selftest");
    let mut all_good = true;
    let mut cases = Vec::new();
    for (name, r) in &results {
        let good = selftest::case_passes(r);
        all_good &= good;
        cases.push(serde_json::json!({
            "case": name, "result": format!("{r:?}"), "passes": good,
            "report": common.out.join(if name.starts_with("control") { "control" } else { name }),
        }));
        let text = match r {
            CaseResult::Caught => "caught (good)".to_string(),
            CaseResult::ControlValid => "valid (good)".to_string(),
            CaseResult::Missed => "NOT CAUGHT: the checkers passed a broken build".to_string(),
            CaseResult::HookMissing => format!(
                "HOOK MISSING: no `{}{name}` line in the node logs; build booking with --features fault-injection-bugs",
                fault_bugs::ENABLED_MARKER
            ),
            CaseResult::NotRunnable(why) => format!("NOT RUN: {why}"),
            CaseResult::ControlInvalid => "CONTROL RUN INVALID: see its report".to_string(),
            CaseResult::Unknown => "UNKNOWN: a check ran out of budget".to_string(),
            CaseResult::HarnessError(e) => format!("HARNESS ERROR: {e}"),
        };
        eprintln!("   {name:<24} {text}");
    }
    // The verdict per case, for scripts and the CI test.
    let summary = serde_json::json!({"passes": all_good, "cases": cases});
    let path = common.out.join("selftest.json");
    if let Err(e) = std::fs::create_dir_all(&common.out).and_then(|()| {
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&summary).unwrap_or_default(),
        )
    }) {
        eprintln!("jepsen selftest: {}: {e}", path.display());
        all_good = false;
    }
    ExitCode::from(if all_good { 0 } else { 1 })
}

fn check_register(file: &Path, time_limit_s: u64) -> ExitCode {
    let ops = match corpus::read_register_log(file) {
        Ok(ops) => ops,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return ExitCode::from(EXIT_UNKNOWN_OR_BAD_INPUT);
        }
    };
    let budget = Budget {
        time_limit: Duration::from_secs(time_limit_s),
        ..Budget::default()
    };
    let started = Instant::now();
    let verdict = linearizability::check(&CasRegister::default(), &ops, &budget);
    let took = started.elapsed();
    let unknown = ops.iter().filter(|o| o.outcome == Outcome::Unknown).count();
    eprintln!(
        "{}: {} operations ({unknown} with unknown outcome), checked in {took:.2?}",
        file.display(),
        ops.len()
    );
    match verdict {
        Verdict::Linearizable => {
            println!("linearizable");
            ExitCode::from(EXIT_LINEARIZABLE)
        }
        Verdict::NotLinearizable(e) => {
            println!("not linearizable");
            let by_id = |id: usize| {
                ops.iter()
                    .find(|o| o.id == id)
                    .expect("evidence names checked ops")
            };
            eprintln!(
                "the longest linearizable prefix found has {} operations:",
                e.linearized.len()
            );
            // The tail of the prefix is the context a reader needs; the
            // whole prefix can be hundreds of lines.
            let tail = e.linearized.len().saturating_sub(PREFIX_TAIL_SHOWN);
            if tail > 0 {
                eprintln!("  ... {tail} earlier operations");
            }
            for &id in &e.linearized[tail..] {
                eprintln!("  {}", describe(by_id(id)));
            }
            eprintln!(
                "it leaves the register at {}; after it, none of these could take effect next:",
                e.state
            );
            for &id in &e.candidates {
                let mark = if id == e.blocked {
                    " <- its return came first"
                } else {
                    ""
                };
                eprintln!("  {}{mark}", describe(by_id(id)));
            }
            ExitCode::from(EXIT_NOT_LINEARIZABLE)
        }
        Verdict::Unknown(why) => {
            println!("unknown");
            eprintln!("no verdict: {why}");
            ExitCode::from(EXIT_UNKNOWN_OR_BAD_INPUT)
        }
    }
}

/// One operation in the log's own terms; times are line numbers here.
fn describe(op: &Op<RegisterOp<i64>, RegisterRet<i64>>) -> String {
    let what = match &op.input {
        RegisterOp::Read => "read".to_owned(),
        RegisterOp::Write(v) => format!("write {v}"),
        RegisterOp::Cas { from, to } => format!("cas [{from} {to}]"),
    };
    match &op.outcome {
        Outcome::Returned { output, return_ns } => {
            let result = match output {
                RegisterRet::Value(Some(v)) => format!(" -> {v}"),
                RegisterRet::Value(None) => " -> nil".to_owned(),
                RegisterRet::Done => String::new(),
            };
            format!(
                "process {} {what}{result} (lines {}-{return_ns})",
                op.process, op.call_ns
            )
        }
        Outcome::Unknown => format!(
            "process {} {what}, outcome unknown (from line {})",
            op.process, op.call_ns
        ),
    }
}
