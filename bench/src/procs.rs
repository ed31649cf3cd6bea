//! Child processes the bench starts (cluster nodes, the gateway, the echo
//! server, etcd, Redis, PostgreSQL), and the guarantee that they stop.
//!
//! Owns: [`Child`] (a process in its own process group, stopped on drop:
//! SIGTERM, then SIGKILL after [`STOP_GRACE`]), the registry that a Ctrl-C
//! handler empties, free loopback ports, and waiting for a port to accept.
//! Must not: start anything listening off loopback.
//!
//! Caveat: a SIGKILL of the bench itself orphans its children (nothing runs
//! on SIGKILL); their temp dirs and loopback ports die with the next reboot.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long a child gets to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Process-group ids of every live child, so Ctrl-C can stop them all.
static LIVE: Mutex<BTreeMap<i32, String>> = Mutex::new(BTreeMap::new());

/// A child process in its own process group; stopped when dropped.
pub struct Child {
    name: String,
    inner: std::process::Child,
}

impl Child {
    /// Starts `command` in a new process group with stdout/stderr appended to
    /// `log` (so a failing peer can be diagnosed after the run).
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Child> {
        use std::os::unix::process::CommandExt;
        let out =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let inner = command
            .spawn()
            .with_context(|| format!("cannot start {name} ({command:?})"))?;
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(inner.id() as i32, name.to_string());
        Ok(Child {
            name: name.to_string(),
            inner,
        })
    }

    /// Fails if the child has already exited (it crashed or refused its config).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.inner.try_wait()? {
            bail!("{} exited early: {status}", self.name);
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let pgid = self.inner.id() as i32;
        stop_group(pgid);
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            match self.inner.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    // SAFETY: plain syscall on a process group we created.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                    let _ = self.inner.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).remove(&pgid);
    }
}

fn stop_group(pgid: i32) {
    // SAFETY: plain syscall; the group is one we created with process_group(0).
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
}

/// Installs a Ctrl-C/SIGTERM handler that stops every live child (SIGTERM,
/// a grace period, SIGKILL) and exits 130. Drop guards do not run on
/// `process::exit`, hence the registry.
pub fn install_signal_handler() {
    tokio::spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        eprintln!("\nbench: interrupted; stopping child processes");
        let groups: Vec<i32> = LIVE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        for g in &groups {
            stop_group(*g);
        }
        std::thread::sleep(Duration::from_millis(1500));
        for g in &groups {
            // SAFETY: plain syscall on groups we created.
            unsafe { libc::kill(-*g, libc::SIGKILL) };
        }
        std::process::exit(130);
    });
}

/// A loopback port that was free a moment ago (bind to port 0, read, close).
/// Racy by nature; the children's start-up checks catch a collision.
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Waits until `addr` accepts TCP connections, failing after `timeout` or as
/// soon as `child` has exited.
pub async fn wait_port(
    addr: SocketAddr,
    timeout: Duration,
    child: &mut Child,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        child.check_alive()?;
        if Instant::now() >= deadline {
            bail!(
                "{} did not listen on {addr} within {timeout:?}",
                child.name()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
