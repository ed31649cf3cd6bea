//! PostgreSQL 15 (Debian's `postgresql`) as a peer: a private cluster made
//! with `initdb` in a temp dir, on a loopback port, fsync and
//! synchronous_commit on (the defaults). Two hold strategies:
//! - `for-update`: `BEGIN; SELECT status … FOR UPDATE; UPDATE …; COMMIT`.
//! - `optimistic`: read the version, then `UPDATE … WHERE status='available'
//!   AND version=$v` (autocommit); one row updated means held.
//!
//! Owns: the cluster's start and stop. PostgreSQL refuses to run as root, so
//! as root it runs as the `postgres` user via `runuser`, and the temp dir is
//! handed to that user. One connection per worker (bounded by
//! [`CONNECTIONS_MAX`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Statement};

use super::{BoxFuture, HoldTarget};
use testkit::free_addr;
use testkit::process::Child;

/// Most worker connections (the server is started with room for them).
pub const CONNECTIONS_MAX: usize = 256;

/// Where Debian puts the server binaries.
pub fn bin_dir() -> Option<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .collect();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .find(|b| b.join("postgres").exists() && b.join("initdb").exists())
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

pub struct PgServer {
    _child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl PgServer {
    pub async fn start() -> anyhow::Result<PgServer> {
        let bin = bin_dir().context(
            "no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql)",
        )?;
        let dir = tempfile::Builder::new().prefix("bench-pg-").tempdir()?;
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()?
                .success();
            if !ok {
                bail!("cannot hand {} to the postgres user", dir.path().display());
            }
        }
        let data = dir.path().join("data");
        let out = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .context("initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = free_addr().port();
        let mut cmd = as_postgres(&bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                &format!("max_connections={}", CONNECTIONS_MAX + 20),
            ])
            .args(["-c", "fsync=on", "-c", "synchronous_commit=on"]);
        let mut child = Child::spawn("postgres", cmd, &dir.path().join("postgres.log"))?;
        child
            .wait_listening(
                SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(30),
            )
            .await?;
        let server = PgServer {
            _child: child,
            port,
            _dir: dir,
        };
        // The port opens before recovery ends ("the database system is
        // starting up"): wait for a real session, bounded.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match server.connect().await {
                Ok(_) => return Ok(server),
                Err(e) if std::time::Instant::now() >= deadline => {
                    return Err(e.context("postgres never accepted a session"))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub async fn connect(&self) -> anyhow::Result<Client> {
        let (client, conn) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={} user=postgres", self.port),
            NoTls,
        )
        .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    ForUpdate,
    Optimistic,
}

struct Worker {
    client: Client,
    select: Statement,
    update: Statement,
}

pub struct PgTarget {
    workers: Vec<Mutex<Worker>>,
    strategy: Strategy,
    table: String,
    admin: Client,
}

impl PgTarget {
    pub async fn new(
        server: &PgServer,
        round: &str,
        strategy: Strategy,
        seats: u32,
        workers: usize,
    ) -> anyhow::Result<Arc<PgTarget>> {
        let table = format!("seats_{}", round.replace('-', "_"));
        let admin = server.connect().await?;
        admin
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {table};
                 CREATE TABLE {table} (id int PRIMARY KEY, status text NOT NULL, holder text, version int NOT NULL);
                 INSERT INTO {table} SELECT g, 'available', NULL, 0 FROM generate_series(0, {}) g;
                 ANALYZE {table};",
                seats.saturating_sub(1)
            ))
            .await?;
        let (select_sql, update_sql) = match strategy {
            Strategy::ForUpdate => (
                format!("SELECT status FROM {table} WHERE id = $1 FOR UPDATE"),
                format!("UPDATE {table} SET status = 'held', holder = $2, version = version + 1 WHERE id = $1"),
            ),
            Strategy::Optimistic => (
                format!("SELECT status, version FROM {table} WHERE id = $1"),
                format!(
                    "UPDATE {table} SET status = 'held', holder = $2, version = version + 1 WHERE id = $1 AND status = 'available' AND version = $3"
                ),
            ),
        };
        let mut ws = Vec::new();
        for _ in 0..workers.clamp(1, CONNECTIONS_MAX) {
            let client = server.connect().await?;
            let select = client.prepare(&select_sql).await?;
            let update = client.prepare(&update_sql).await?;
            ws.push(Mutex::new(Worker {
                client,
                select,
                update,
            }));
        }
        Ok(Arc::new(PgTarget {
            workers: ws,
            strategy,
            table,
            admin,
        }))
    }
}

impl HoldTarget for PgTarget {
    fn hold<'a>(
        &'a self,
        worker: usize,
        seat: u32,
        holder: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let mut w = self.workers[worker % self.workers.len()].lock().await;
            let id = seat as i32;
            match self.strategy {
                Strategy::ForUpdate => {
                    let (select, update) = (w.select.clone(), w.update.clone());
                    let tx = w.client.transaction().await?;
                    let row = tx.query_one(&select, &[&id]).await?;
                    let status: &str = row.get(0);
                    if status != "available" {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    tx.execute(&update, &[&id, &holder]).await?;
                    tx.commit().await?;
                    Ok(true)
                }
                Strategy::Optimistic => {
                    let row = w.client.query_one(&w.select, &[&id]).await?;
                    let status: &str = row.get(0);
                    let version: i32 = row.get(1);
                    if status != "available" {
                        return Ok(false);
                    }
                    let n = w
                        .client
                        .execute(&w.update, &[&id, &holder, &version])
                        .await?;
                    Ok(n == 1)
                }
            }
        })
    }

    fn held_count(&self) -> BoxFuture<'_, anyhow::Result<u64>> {
        Box::pin(async move {
            let row = self
                .admin
                .query_one(
                    &format!("SELECT count(*) FROM {} WHERE status = 'held'", self.table),
                    &[],
                )
                .await?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }
}
