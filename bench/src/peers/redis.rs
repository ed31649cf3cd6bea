//! Redis 7 (Debian's `redis-server`) as a peer: one server on loopback in a
//! temp dir with AOF on, `SET seat holder NX PX ttl` per hold; rounds with
//! `appendfsync always` (durable per write, like our store) and `everysec`
//! (up to a second of acknowledged holds lost on a crash).
//!
//! Owns: starting and stopping the server. Caveat: a single node, no
//! replication: the comparison is "what a user would pick instead", not a
//! like-for-like replicated setup.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use redis::aio::MultiplexedConnection;

use super::{BoxFuture, HoldTarget};
use testkit::free_addr;
use testkit::process::Child;

pub const BIN: &str = "redis-server";
/// Hold TTL given to `PX`, in ms (the same 10 minutes as our default hold).
pub const HOLD_TTL_MS: u64 = 600_000;
/// Connections shared by the workers (each multiplexes requests).
pub const CONNECTIONS_MAX: usize = 64;

pub struct RedisServer {
    _child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub async fn start() -> anyhow::Result<RedisServer> {
        let dir = tempfile::Builder::new().prefix("bench-redis-").tempdir()?;
        let port = free_addr().port();
        let mut cmd = Command::new(BIN);
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
        ])
        .args([
            "--appendfsync",
            "always",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ])
        .arg("--dir")
        .arg(dir.path());
        let mut child = Child::spawn("redis", cmd, &dir.path().join("redis.log"))?;
        child
            .wait_listening(
                SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(20),
            )
            .await?;
        Ok(RedisServer {
            _child: child,
            url: format!("redis://127.0.0.1:{port}/"),
            _dir: dir,
        })
    }
}

pub struct RedisTarget {
    conns: Vec<MultiplexedConnection>,
    prefix: String,
}

impl RedisTarget {
    /// A round: sets `appendfsync` to `fsync_policy` and uses keys under `round:`.
    pub async fn new(
        server: &RedisServer,
        round: &str,
        fsync_policy: &str,
        workers: usize,
    ) -> anyhow::Result<Arc<RedisTarget>> {
        let client = redis::Client::open(server.url.as_str())?;
        let mut conns = Vec::new();
        for _ in 0..workers.clamp(1, CONNECTIONS_MAX) {
            conns.push(
                client
                    .get_multiplexed_async_connection()
                    .await
                    .context("redis connect")?,
            );
        }
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("appendfsync")
            .arg(fsync_policy)
            .query_async(&mut conns[0])
            .await?;
        Ok(Arc::new(RedisTarget {
            conns,
            prefix: format!("{round}:seat:"),
        }))
    }
}

impl HoldTarget for RedisTarget {
    fn hold<'a>(
        &'a self,
        worker: usize,
        seat: u32,
        holder: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let mut c = self.conns[worker % self.conns.len()].clone();
            let r: Option<String> = redis::cmd("SET")
                .arg(format!("{}{seat}", self.prefix))
                .arg(holder)
                .arg("NX")
                .arg("PX")
                .arg(HOLD_TTL_MS)
                .query_async(&mut c)
                .await?;
            Ok(r.is_some())
        })
    }

    fn held_count(&self) -> BoxFuture<'_, anyhow::Result<u64>> {
        Box::pin(async move {
            let mut c = self.conns[0].clone();
            let mut cursor: u64 = 0;
            let mut n = 0u64;
            // SCAN is bounded by the key count; each call returns a page.
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{}*", self.prefix))
                    .arg("COUNT")
                    .arg(10_000)
                    .query_async(&mut c)
                    .await?;
                n += keys.len() as u64;
                cursor = next;
                if cursor == 0 {
                    return Ok(n);
                }
            }
        })
    }
}
