//! The process supervisor: child processes that cannot outlive the harness.
//!
//! Owns: [`Child`]: a named child process in its own process group, whose
//! output goes to a log file, which the kernel SIGKILLs if the harness dies
//! (`PR_SET_PDEATHSIG`), and which stops within a bound (SIGCONT, SIGTERM,
//! then SIGKILL after a grace) when asked or dropped; [`stop_all`] to stop
//! several at once under one deadline; [`terminate_all_live`] for a
//! harness's Ctrl-C handler; and the echo of every child's output lines,
//! prefixed with its name, to the harness's stderr when `TESTKIT_ECHO=1`
//! (watch a whole cluster live from one terminal).
//!
//! Must not: signal a process it did not start, or one it has already
//! reaped (its pid may have been reused); signals go to the child's own
//! process group, so helpers a child forks (PostgreSQL's workers) stop too.
//!
//! Caveats:
//! - `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
//!   and tokio's blocking threads exit when idle: a node restarted from one
//!   of them was SIGKILLed seconds later (seen in the Jepsen harness). So
//!   every child is forked by one spawner thread that lives as long as the
//!   process.
//! - Children run in their own process group, so a terminal's Ctrl-C reaches
//!   only the harness; it stops them (a [`Child`]'s drop, or
//!   [`terminate_all_live`] from a signal handler), or the kernel kills them
//!   when the harness exits.
//! - `booking up` (src/up.rs) has its own async supervisor: the shipped
//!   binary must not depend on this dev-only crate.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::{wait_until, Error};

/// How long a stopping child gets after SIGTERM before SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a SIGKILLed child may take to be reaped before the stop gives up
/// on it (a process in uninterruptible sleep cannot die at once).
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Pause between two looks at whether a stopping child has exited.
const REAP_POLL: Duration = Duration::from_millis(20);
/// The environment variable that turns on the prefixed echo of every
/// child's output to the harness's stderr.
const ECHO_ENV: &str = "TESTKIT_ECHO";

/// Process groups of every live child, by group id, so a Ctrl-C handler can
/// stop them all: `process::exit` runs no destructors.
static LIVE: Mutex<BTreeMap<i32, String>> = Mutex::new(BTreeMap::new());

/// A named child process in its own process group. Dropping it stops it
/// (SIGCONT, SIGTERM, SIGKILL after [`STOP_GRACE`]).
pub struct Child {
    name: String,
    log: PathBuf,
    /// `None` once reaped: a reaped child's pid may belong to someone else.
    inner: Option<std::process::Child>,
}

impl Child {
    /// Starts `command` as `name`: stdin closed, stdout and stderr appended
    /// to `log` (and echoed, prefixed `[name] `, to stderr when
    /// `TESTKIT_ECHO=1`), in a new process group, SIGKILLed by the kernel if
    /// this process dies.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Child, Error> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(format!("opening {}", log.display()), e))?;
        let echo = echo_enabled();
        if echo {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        } else {
            let err = file
                .try_clone()
                .map_err(|e| Error::io(format!("duplicating {}", log.display()), e))?;
            command.stdout(file).stderr(err);
        }
        command.stdin(Stdio::null()).process_group(0);
        let parent = std::process::id();
        // SAFETY: prctl and getppid are async-signal-safe, and the closure
        // allocates nothing. The kernel SIGKILLs the child when the forking
        // thread's process dies; if that already happened between fork and
        // prctl, the child notices a new parent and does not exec.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("the harness died during fork"));
                }
                Ok(())
            });
        }
        let shown = format!("{command:?}");
        let mut inner = spawn_from_lasting_thread(command)
            .map_err(|e| Error::io(format!("starting {name} ({shown})"), e))?;
        if echo {
            let log_file = |what: &str| {
                OpenOptions::new()
                    .append(true)
                    .open(log)
                    .map_err(|e| Error::io(format!("opening {} for {what}", log.display()), e))
            };
            if let Some(out) = inner.stdout.take() {
                echo_lines(name, out, log_file("stdout")?);
            }
            if let Some(err) = inner.stderr.take() {
                echo_lines(name, err, log_file("stderr")?);
            }
        }
        LIVE.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(inner.id() as i32, name.to_string());
        Ok(Child {
            name: name.to_string(),
            log: log.to_path_buf(),
            inner: Some(inner),
        })
    }

    /// The file the child's output goes to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The pid (also the process group id), while the child is unreaped.
    pub fn pid(&self) -> Option<u32> {
        self.inner.as_ref().map(|c| c.id())
    }

    /// Whether the child still runs; reaps it if it has exited.
    pub(crate) fn is_running(&mut self) -> bool {
        self.check_alive().is_ok()
    }

    /// `Err(Exited)` if the child has exited (it crashed or refused its
    /// config); reaps it then.
    pub(crate) fn check_alive(&mut self) -> Result<(), Error> {
        let Some(child) = self.inner.as_mut() else {
            return Err(Error::Node(format!("{} is not running", self.name)));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.reaped();
                Err(Error::Exited {
                    name: self.name.clone(),
                    status,
                    log: self.log.clone(),
                })
            }
            Err(e) => Err(Error::io(format!("waiting for {}", self.name), e)),
        }
    }

    /// Sends `signal` to the child's process group.
    pub fn signal(&self, signal: i32) -> Result<(), Error> {
        let pid = self
            .pid()
            .ok_or_else(|| Error::Node(format!("{} is not running", self.name)))?;
        signal_group(pid, signal).map_err(|e| {
            Error::io(
                format!("sending signal {signal} to {} (pid {pid})", self.name),
                e,
            )
        })
    }

    /// Waits until `addr` accepts TCP connections, for at most `limit`;
    /// fails at once if the child exits first (it crashed or refused its
    /// config).
    pub async fn wait_listening(&mut self, addr: SocketAddr, limit: Duration) -> Result<(), Error> {
        let what = format!("{} to listen on {addr}", self.name);
        wait_until(&what, limit, || {
            let alive = self.check_alive();
            async move {
                alive?;
                Ok(tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()))
            }
        })
        .await
    }

    /// Waits up to `limit` for the child to exit by itself (blocking); its
    /// exit status, or `None` if it still runs or was reaped before.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.reap_by(Instant::now() + limit)
    }

    /// SIGKILL, then reap (bounded by [`KILL_WAIT`]). Nothing if not running.
    pub fn kill(&mut self) {
        let _ = self.signal(libc::SIGKILL);
        self.reap_by(Instant::now() + KILL_WAIT);
    }

    /// Stops the child: SIGCONT (it may be paused) and SIGTERM, then
    /// SIGKILL if it still runs after `grace`. Nothing if not running.
    pub fn stop(&mut self, grace: Duration) {
        stop_all([self], grace);
    }

    /// The last `lines` lines of the log, under a header naming the child.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.name, &self.log, lines)
    }

    /// Waits until the child exits or `deadline`; after the deadline,
    /// SIGKILL and a bounded reap. Returns the exit status if it was seen.
    fn reap_by(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            let child = self.inner.as_mut()?;
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.reaped();
                    return Some(status);
                }
                Err(_) => {
                    self.reaped();
                    return None;
                }
                Ok(None) if Instant::now() >= deadline => return None,
                Ok(None) => std::thread::sleep(REAP_POLL),
            }
        }
    }

    fn reaped(&mut self) {
        if let Some(child) = self.inner.take() {
            LIVE.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&(child.id() as i32));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop(STOP_GRACE);
    }
}

/// Stops every child at once under one deadline: SIGCONT and SIGTERM to
/// all, then SIGKILL to those still running after `grace`.
pub(crate) fn stop_all<'a>(children: impl IntoIterator<Item = &'a mut Child>, grace: Duration) {
    let mut running: Vec<&mut Child> = children.into_iter().filter(|c| c.inner.is_some()).collect();
    for child in &running {
        let _ = child.signal(libc::SIGCONT);
        let _ = child.signal(libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    for child in &mut running {
        child.reap_by(deadline);
    }
    for child in &mut running {
        if child.inner.is_some() {
            child.kill();
        }
    }
}

/// For a harness's Ctrl-C/SIGTERM handler, just before it exits: SIGCONT
/// and SIGTERM to every live child's group, then SIGKILL after `grace`.
/// (The children's owners never get to run their destructors.)
pub fn terminate_all_live(grace: Duration) {
    let groups: Vec<i32> = LIVE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .keys()
        .copied()
        .collect();
    for &group in &groups {
        let _ = signal_group(group as u32, libc::SIGCONT);
        let _ = signal_group(group as u32, libc::SIGTERM);
    }
    // The owners reap, so there is no exit to wait for here: the grace is
    // a plain pause before the SIGKILL.
    std::thread::sleep(grace);
    for &group in &groups {
        let _ = signal_group(group as u32, libc::SIGKILL);
    }
}

/// The last `lines` lines of the file at `log`, under a header naming `name`.
pub(crate) fn log_tail(name: &str, log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    format!(
        "--- {name} (last {} lines of {})\n{}\n",
        tail.len(),
        log.display(),
        tail.join("\n")
    )
}

fn signal_group(pid: u32, signal: i32) -> std::io::Result<()> {
    let group = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: kill(2) has no memory-safety preconditions. The group is one
    // of our unreaped children's (the caller checked), so it names no
    // stranger's processes.
    if unsafe { libc::kill(-group, signal) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn echo_enabled() -> bool {
    std::env::var(ECHO_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A spawn request for the spawner thread, and where to send the child.
type SpawnRequest = (Command, mpsc::Sender<std::io::Result<std::process::Child>>);

/// Forks `command` from one thread that lives as long as the process (see
/// the module's caveats on `PR_SET_PDEATHSIG`).
fn spawn_from_lasting_thread(command: Command) -> std::io::Result<std::process::Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        // Unbounded, but each caller waits for its answer below, so it holds
        // at most one request per calling thread.
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("cannot start the spawner thread");
        Mutex::new(tx)
    });
    let gone = || std::io::Error::other("the spawner thread is gone");
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send((command, reply_tx))
        .map_err(|_| gone())?;
    reply_rx.recv().map_err(|_| gone())?
}

/// Copies `input` into `log` as it comes and each line, prefixed
/// `[name] `, to this process's stderr, on a thread of its own that ends
/// when the child closes its end.
fn echo_lines(name: &str, input: impl Read + Send + 'static, log: File) {
    let prefix = format!("[{name}] ");
    let _ = std::thread::Builder::new()
        .name(format!("testkit-echo-{name}"))
        .spawn(move || copy_prefixed(input, log, std::io::stderr(), &prefix));
}

/// Copies `input` line by line to `raw` unchanged and to `shown` with
/// `prefix` before each line; stops at the end of `input` or a write error.
/// A line that is not UTF-8 is copied as bytes.
fn copy_prefixed(input: impl Read, mut raw: impl Write, mut shown: impl Write, prefix: &str) {
    let mut reader = BufReader::new(input);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let mut prefixed = prefix.as_bytes().to_vec();
                prefixed.extend_from_slice(&line);
                if !prefixed.ends_with(b"\n") {
                    prefixed.push(b'\n');
                }
                if raw.write_all(&line).is_err() || shown.write_all(&prefixed).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    // Goal: a child's output lands in its log, and is_running/check_alive see it exit.
    #[test]
    fn output_goes_to_the_log_and_an_exit_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("echo.log");
        let mut child = Child::spawn("echo", sh("echo hello; echo oops >&2"), &log).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.is_running() {
            assert!(Instant::now() < deadline, "sh did not exit");
            std::thread::sleep(REAP_POLL);
        }
        assert!(matches!(child.check_alive(), Err(Error::Node(_))));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("hello") && text.contains("oops"), "{text}");
        assert!(child.log_tail(1).contains("oops"));
    }

    // Goal: stop() ends a child that ignores SIGTERM within the grace plus the kill.
    #[test]
    fn stop_is_bounded_for_a_child_that_ignores_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stubborn.log");
        let mut child = Child::spawn(
            "stubborn",
            sh("trap '' TERM; echo ready; while :; do sleep 1; done"),
            &log,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log).unwrap().contains("ready") {
            assert!(Instant::now() < deadline, "sh did not start");
            std::thread::sleep(REAP_POLL);
        }
        let started = Instant::now();
        child.stop(Duration::from_millis(300));
        assert!(child.pid().is_none(), "reaped");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    // Goal: a paused child is stopped too (SIGCONT comes with the SIGTERM).
    #[test]
    fn a_paused_child_stops() {
        let dir = tempfile::tempdir().unwrap();
        let mut child =
            Child::spawn("sleeper", sh("sleep 60"), &dir.path().join("sleeper.log")).unwrap();
        child.signal(libc::SIGSTOP).unwrap();
        child.stop(STOP_GRACE);
        assert!(child.pid().is_none());
    }

    // Goal: the echo copies every line unchanged to the log and prefixed to the terminal.
    #[test]
    fn echo_prefixes_each_line_with_the_name() {
        let mut raw = Vec::new();
        let mut shown = Vec::new();
        copy_prefixed(&b"one\ntwo"[..], &mut raw, &mut shown, "[node-1] ");
        assert_eq!(raw, b"one\ntwo");
        assert_eq!(
            String::from_utf8(shown).unwrap(),
            "[node-1] one\n[node-1] two\n"
        );
    }
}
