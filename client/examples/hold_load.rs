//! A small closed-loop driver: N concurrent clients each hold one distinct
//! seat at a time through the client library, for a fixed time per level, and
//! it prints holds/s and latency percentiles. Not a benchmark of record (that
//! is `bench/`); a quick check of the client path and of batching.
//!
//! Usage: `cargo run --release -p client --example hold_load -- \
//!   [--config cluster.toml | --endpoints a,b,c] [--clients 1,16,256] [--seconds 10]`
//! With `--config`, the file's client certificate is presented (mutual TLS);
//! `--endpoints` dials in plaintext (a cluster with `[tls] mode = "off"`).
//!
//! Bounds: each level runs for `--seconds`; the event has 100 000 seats, and a
//! level stops early when they run out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::state_machine::{Command, EventSpec, Reply, Selection};
use client::{Client, ClientOptions, Ids};

const ROWS: u32 = 100;
const SEATS_PER_ROW: u32 = 1_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (endpoints, tls): (Vec<String>, _) = match (flag("--endpoints"), flag("--config")) {
        (Some(list), _) => (list.split(',').map(str::to_string).collect(), None),
        (None, config) => {
            let path = config.unwrap_or_else(|| "cluster.toml".into());
            let config = cluster_config::ClusterConfig::load(std::path::Path::new(&path))?;
            let tls = client::ClientTls::load(&config, client::TlsIdentity::Client)?;
            (config.endpoints(), tls)
        }
    };
    let options = ClientOptions {
        tls,
        ..ClientOptions::default()
    };
    let levels: Vec<usize> = flag("--clients")
        .unwrap_or_else(|| "1,16,256".into())
        .split(',')
        .map(|n| n.parse())
        .collect::<Result<_, _>>()?;
    let seconds: u64 = flag("--seconds").map_or(Ok(10), |s| s.parse())?;

    let admin = Client::with_options(&endpoints, options.clone())?;
    admin.wait_for_leader(Duration::from_secs(30)).await?;
    let event_id = format!("load-{}", admin.client_id() % 1_000_000);
    let rows: Vec<String> = (1..=ROWS)
        .map(|r| format!(r#"{{"label":"{r}","seats":{SEATS_PER_ROW}}}"#))
        .collect();
    let spec: EventSpec = serde_json::from_str(&format!(
        r#"{{"id":"{event_id}","name":"Load","venue":"Loopback","starts_at":"2030-01-01T20:00:00Z",
            "sections":[{{"kind":"reserved","id":"A","name":"A","price_cents":100,"rows":[{}]}}]}}"#,
        rows.join(",")
    ))?;
    admin
        .submit(Ids::New, Command::CreateEvent(spec))
        .await?
        .into_reply()?;
    admin
        .submit(
            Ids::New,
            Command::OpenSale {
                event_id: event_id.clone(),
            },
        )
        .await?
        .into_reply()?;

    let next_seat = Arc::new(AtomicU64::new(0));
    println!("clients  holds  holds/s  p50_ms  p99_ms  max_ms  errors");
    for clients in levels {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(clients);
        for c in 0..clients {
            let client = Client::with_options(&endpoints, options.clone())?;
            let next_seat = next_seat.clone();
            let event_id = event_id.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies_us = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let n = next_seat.fetch_add(1, Ordering::Relaxed);
                    if n >= u64::from(ROWS * SEATS_PER_ROW) {
                        break;
                    }
                    let seat = format!(
                        "A-{}-{}",
                        n / u64::from(SEATS_PER_ROW) + 1,
                        n % u64::from(SEATS_PER_ROW) + 1
                    );
                    let t = Instant::now();
                    let hold = Command::Hold {
                        event_id: event_id.clone(),
                        holder: format!("fan-{c}"),
                        selection: Selection::Seats(vec![seat]),
                    };
                    let result = client.submit(Ids::New, hold).await;
                    match result.map(|s| s.outcome) {
                        Ok(Ok(Reply::Held { .. })) => {
                            latencies_us.push(t.elapsed().as_micros() as u64)
                        }
                        _ => errors += 1,
                    }
                }
                (latencies_us, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for task in tasks {
            let (latencies, e) = task.await?;
            all.extend(latencies);
            errors += e;
        }
        let elapsed = started.elapsed().as_secs_f64();
        all.sort_unstable();
        let pct = |p: f64| {
            all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
                .map_or(0.0, |&us| us as f64 / 1000.0)
        };
        println!(
            "{clients:>7}  {:>5}  {:>7.0}  {:>6.2}  {:>6.2}  {:>6.2}  {errors}",
            all.len(),
            all.len() as f64 / elapsed,
            pct(0.50),
            pct(0.99),
            all.last().map_or(0.0, |&us| us as f64 / 1000.0)
        );
    }
    Ok(())
}
