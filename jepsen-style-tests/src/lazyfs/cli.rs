//! `jepsen lazyfs` (run one lazy file system as a process until SIGINT or
//! SIGTERM) and `jepsen lazyfs-ctl` (cut its power, read its counters or
//! change its fsync latency through its control socket).
//!
//! Owns: the control protocol, one line per request on a Unix socket,
//! answered with one line: `cut` → the cut report as JSON; `stats` → the
//! counters as JSON; `fsync-delay-ms N` → `ok`; anything else → `error: …`.
//! SIGUSR1 also cuts the power (the report goes to stdout).
//!
//! Must not: be the harness's way in: the harness holds a
//! [`LazyFsMount`] in-process. This is for scripts and for poking at a
//! mount by hand.
//!
//! Caveat: the socket is created with the process's umask and removed at
//! exit; a stale socket file from a killed run is replaced.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::fuse::Shared;
use super::mount::{LazyFsMount, LazyFsOptions};

/// Longest control request line accepted.
const CONTROL_LINE_MAX: u64 = 256;
/// How long `lazyfs-ctl` waits for an answer.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// `jepsen lazyfs`.
#[derive(clap::Args, Debug)]
pub struct LazyfsArgs {
    /// Directory loaded as the durable state at mount and replaced by the
    /// contents at a clean exit (omit: start empty, keep nothing).
    #[arg(long)]
    pub backing: Option<PathBuf>,
    /// Where to mount (created if missing; must be empty).
    #[arg(long)]
    pub mount: PathBuf,
    /// Latency added to every fsync, fdatasync and directory fsync.
    #[arg(long, default_value_t = 0)]
    pub fsync_delay_ms: u64,
    /// Unix socket for `jepsen lazyfs-ctl` (default: none; SIGUSR1 still cuts).
    #[arg(long)]
    pub control: Option<PathBuf>,
}

/// `jepsen lazyfs-ctl`.
#[derive(clap::Args, Debug)]
pub struct LazyfsCtlArgs {
    /// The socket given to `jepsen lazyfs --control`.
    #[arg(long)]
    pub control: PathBuf,
    /// `cut`, `stats` or `fsync-delay-ms N`.
    #[arg(required = true, num_args = 1..)]
    pub request: Vec<String>,
}

/// Answers one control request.
fn handle(shared: &Shared, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["cut"] => serde_json::to_string(&shared.lock().power_cut()).unwrap_or_default(),
        ["stats"] => serde_json::to_string(&shared.lock().stats()).unwrap_or_default(),
        ["fsync-delay-ms", n] => match n.parse::<u64>() {
            Ok(ms) => {
                shared
                    .fsync_delay_ms
                    .store(ms, std::sync::atomic::Ordering::Relaxed);
                "ok".into()
            }
            Err(e) => format!("error: {n}: {e}"),
        },
        _ => format!("error: unknown request {line:?} (cut | stats | fsync-delay-ms N)"),
    }
}

fn serve_control(listener: UnixListener, shared: Arc<Shared>) {
    // One client at a time: requests are rare and each is quick.
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let Ok(write_half) = stream.try_clone() else {
            continue;
        };
        let mut reader = BufReader::new(std::io::Read::take(stream, CONTROL_LINE_MAX * 64));
        let mut writer = write_half;
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            let answer = handle(&shared, line.trim());
            if writeln!(writer, "{answer}").is_err() {
                break;
            }
            line.clear();
        }
    }
}

/// Blocks these signals in the calling thread (and the threads it starts
/// afterwards), so `sigwait` can take them.
fn block_signals(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask on the
    // current thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// `jepsen lazyfs`: 0 after a clean unmount, 1 if it could not mount or save.
pub fn run(args: LazyfsArgs) -> ExitCode {
    let set = block_signals(&[libc::SIGINT, libc::SIGTERM, libc::SIGUSR1]);
    let options = LazyFsOptions {
        backing: args.backing.clone(),
        fsync_delay_ms: args.fsync_delay_ms,
    };
    let mount = match LazyFsMount::mount(&args.mount, options) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("jepsen lazyfs: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.control {
        let _ = std::fs::remove_file(path);
        match UnixListener::bind(path) {
            Ok(listener) => {
                let shared = mount.shared();
                std::thread::spawn(move || serve_control(listener, shared));
            }
            Err(e) => {
                eprintln!("jepsen lazyfs: control socket {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "jepsen lazyfs: mounted {} (backing {}, fsync delay {} ms, control {}); SIGUSR1 cuts the power, SIGINT/SIGTERM unmount",
        mount.mountpoint().display(),
        args.backing.as_ref().map(|b| b.display().to_string()).unwrap_or_else(|| "none".into()),
        args.fsync_delay_ms,
        args.control.as_ref().map(|c| c.display().to_string()).unwrap_or_else(|| "none".into()),
    );
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` holds signals blocked in this thread.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        if sig == libc::SIGUSR1 {
            let report = mount.power_cut();
            println!(
                "jepsen lazyfs: power cut: {}",
                serde_json::to_string(&report).unwrap_or_default()
            );
            continue;
        }
        break;
    }
    if let Some(path) = &args.control {
        let _ = std::fs::remove_file(path);
    }
    match mount.unmount() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jepsen lazyfs: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sends one request to a running `jepsen lazyfs` and returns its answer.
pub fn request(control: &std::path::Path, request: &str) -> Result<String, String> {
    let mut stream =
        UnixStream::connect(control).map_err(|e| format!("{}: {e}", control.display()))?;
    stream
        .set_read_timeout(Some(CONTROL_TIMEOUT))
        .map_err(|e| e.to_string())?;
    writeln!(stream, "{request}").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| format!("{}: {e}", control.display()))?;
    Ok(answer.trim_end().to_string())
}

/// `jepsen lazyfs-ctl`: prints the answer; 0 unless it starts with `error`
/// or the socket is unreachable.
pub fn ctl(args: LazyfsCtlArgs) -> ExitCode {
    match request(&args.control, &args.request.join(" ")) {
        Ok(answer) => {
            println!("{answer}");
            if answer.starts_with("error") {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("jepsen lazyfs-ctl: {e}");
            ExitCode::FAILURE
        }
    }
}
