//! etcd 3.4 (Debian's `etcd-server`) as a peer: three members on loopback in
//! a temp dir, one transaction per hold through etcd's v3 HTTP/JSON gateway
//! (`POST /v3/kv/txn`: compare the seat key's create_revision == 0, then put).
//!
//! Choice: the JSON gateway over reqwest instead of the `etcd-client` crate,
//! which compiles etcd's protos at build time and would need a second protoc
//! set-up and its own tonic version; the JSON gateway costs etcd some
//! encoding work per request, noted in docs/BENCHMARKS.md.
//!
//! Owns: starting and stopping the members (drop guards). Workers spread
//! over the three members (followers forward to the leader, like clientv3's
//! balancer).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use serde_json::{json, Value};

use super::{BoxFuture, HoldTarget};
use testkit::free_addr;
use testkit::process::Child;

pub const NAME: &str = "etcd 3.4 (3n)";
pub const BIN: &str = "etcd";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

/// Three running members.
pub struct EtcdCluster {
    _members: Vec<Child>,
    pub client_urls: Vec<String>,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    pub async fn start() -> anyhow::Result<EtcdCluster> {
        let dir = tempfile::Builder::new().prefix("bench-etcd-").tempdir()?;
        let ports: Vec<(u16, u16)> = (0..3)
            .map(|_| (free_addr().port(), free_addr().port()))
            .collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let mut members = Vec::new();
        for (i, (c, p)) in ports.iter().enumerate() {
            let mut cmd = Command::new(BIN);
            cmd.args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.path().join(format!("m{i}")))
                .args(["--listen-client-urls", &format!("http://127.0.0.1:{c}")])
                .args(["--advertise-client-urls", &format!("http://127.0.0.1:{c}")])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{p}"),
                ])
                .args(["--initial-cluster", &initial.join(",")])
                .args([
                    "--initial-cluster-token",
                    "bench",
                    "--initial-cluster-state",
                    "new",
                ]);
            members.push(Child::spawn(
                &format!("etcd-m{i}"),
                cmd,
                &dir.path().join(format!("m{i}.log")),
            )?);
        }
        for ((c, _), m) in ports.iter().zip(members.iter_mut()) {
            m.wait_listening(
                SocketAddr::from(([127, 0, 0, 1], *c)),
                Duration::from_secs(30),
            )
            .await?;
        }
        let client_urls: Vec<String> = ports
            .iter()
            .map(|(c, _)| format!("http://127.0.0.1:{c}"))
            .collect();
        // Healthy means a leader exists and a quorum read works.
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = match http.get(format!("{}/health", client_urls[0])).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .map(|v| v["health"] == "true")
                    .unwrap_or(false),
                Err(_) => false,
            };
            if ok {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "etcd cluster not healthy within 30 s (logs in {})",
                    dir.path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(EtcdCluster {
            _members: members,
            client_urls,
            _dir: dir,
        })
    }
}

/// The hold target for one round: keys under `/<round>/seat/`.
pub struct EtcdTarget {
    http: reqwest::Client,
    urls: Vec<String>,
    prefix: String,
}

impl EtcdTarget {
    pub fn new(cluster: &EtcdCluster, round: &str) -> anyhow::Result<Arc<EtcdTarget>> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(512)
            .build()?;
        Ok(Arc::new(EtcdTarget {
            http,
            urls: cluster.client_urls.clone(),
            prefix: format!("/{round}/seat/"),
        }))
    }
}

impl HoldTarget for EtcdTarget {
    fn hold<'a>(
        &'a self,
        worker: usize,
        seat: u32,
        holder: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let key = b64(&format!("{}{seat}", self.prefix));
            let body = json!({
                "compare": [{ "key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
                "success": [{ "request_put": { "key": key, "value": b64(holder) } }],
            });
            let url = format!("{}/v3/kv/txn", self.urls[worker % self.urls.len()]);
            let r = self.http.post(url).json(&body).send().await?;
            if !r.status().is_success() {
                bail!("etcd txn: {}", r.status());
            }
            let v: Value = r.json().await?;
            Ok(v["succeeded"].as_bool().unwrap_or(false))
        })
    }

    fn held_count(&self) -> BoxFuture<'_, anyhow::Result<u64>> {
        Box::pin(async move {
            let mut end = self.prefix.clone().into_bytes();
            *end.last_mut().expect("non-empty prefix") += 1;
            let body = json!({
                "key": b64(&self.prefix),
                "range_end": base64::engine::general_purpose::STANDARD.encode(&end),
                "count_only": true,
            });
            let v: Value = self
                .http
                .post(format!("{}/v3/kv/range", self.urls[0]))
                .json(&body)
                .send()
                .await?
                .json()
                .await?;
            // int64 fields are strings in proto3 JSON; absent means 0.
            Ok(v["count"]
                .as_str()
                .map(|s| s.parse::<u64>())
                .transpose()
                .context("count")?
                .unwrap_or(0))
        })
    }
}
