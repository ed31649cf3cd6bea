//! `jepsen`: the Jepsen-style suite's command line.
//!
//! Owns: argument parsing, output and exit codes. The checking itself lives
//! in the library. Subcommands so far: `check-register FILE`. (`run` and
//! `selftest` come with the fault-injection harness.)
//!
//! Exit codes: 0 linearizable, 1 not linearizable, 2 unknown (budget
//! exhausted) or unusable input; scripts rely on these.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use jepsen_style_tests::corpus;
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
}

/// How many of the last linearized operations the evidence shows.
const PREFIX_TAIL_SHOWN: usize = 5;

const EXIT_LINEARIZABLE: u8 = 0;
const EXIT_NOT_LINEARIZABLE: u8 = 1;
const EXIT_UNKNOWN_OR_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckRegister { file, time_limit_s } => check_register(&file, time_limit_s),
    }
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
