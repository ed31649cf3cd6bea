//! Goal: no connection keeps its slot forever while others wait. A crowd
//! that keeps every one of `connections_max` keep-alive connections busy
//! cannot lock a new client out (an operator's `GET /readyz`), and the crowd
//! keeps being served meanwhile (reconnecting when asked to).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http_gateway::fake::FakeCluster;
use http_gateway::settings::GatewaySettings;

/// The connection cap of these tests, and the size of the crowd that fills it.
const CROWD: usize = 8;
/// Bound on a new client's wait for its first answer while the crowd holds
/// every slot (generous: the gateway promises far less).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// Pause between two requests of one crowd member: far shorter than any
/// idle timeout, so every connection stays busy, but the crowd does not take
/// every CPU cycle of a shared test machine.
const CROWD_PAUSE: Duration = Duration::from_millis(2);

/// What one member of the crowd has seen so far.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// `CROWD` clients, each on its own keep-alive connection (one pooled
/// connection per client), sending `GET /healthz` one after another until
/// `stop`. A failed request (a connection closed under it) is counted and
/// the client goes on, as any HTTP client would.
fn start_crowd(
    gw: &Gw,
    stop: &Arc<AtomicBool>,
) -> (Vec<Arc<Tally>>, Vec<tokio::task::JoinHandle<()>>) {
    let mut tallies = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..CROWD {
        let tally = Arc::new(Tally::default());
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(WAIT)
            .build()
            .expect("http client");
        let url = gw.url("/healthz");
        let (stop, t) = (stop.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let answered = match client.get(&url).send().await {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let counter = if answered { &t.ok } else { &t.failed };
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(CROWD_PAUSE).await;
            }
        }));
        tallies.push(tally);
    }
    (tallies, tasks)
}

/// Waits (bounded by [`WAIT`]) until every member of the crowd has had more
/// than `floor[i]` answers.
async fn crowd_served_beyond(tallies: &[Arc<Tally>], floor: &[u64], what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let behind: Vec<usize> = (0..tallies.len())
            .filter(|&i| tallies[i].ok.load(Ordering::Relaxed) <= floor[i])
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: crowd members {behind:?} got no answer within {WAIT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_crowd_at_the_connection_cap_does_not_lock_out_a_new_client() {
    // Eight clients keep all eight slots busy; a ninth client's GET /readyz
    // must still be answered, and the crowd must keep being served after.
    let gw = start_on(
        Arc::new(FakeCluster::new()),
        GatewaySettings {
            connections_max: CROWD,
            ..settings()
        },
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (tallies, tasks) = start_crowd(&gw, &stop);
    // Every member holds a slot once each has been answered.
    crowd_served_beyond(&tallies, &[0; CROWD], "crowd start").await;

    let fresh = reqwest::Client::new();
    let answer = fresh
        .get(gw.url("/readyz"))
        .timeout(ANSWER_WITHIN)
        .send()
        .await;
    let status = answer.as_ref().map(|r| r.status().as_u16());
    assert!(
        matches!(status, Ok(200)),
        "a new client was not answered within {ANSWER_WITHIN:?} while the crowd held \
         every connection: {answer:?}"
    );

    // The crowd is still served after the newcomer got its slot.
    let seen: Vec<u64> = tallies
        .iter()
        .map(|t| t.ok.load(Ordering::Relaxed))
        .collect();
    crowd_served_beyond(&tallies, &seen, "after the newcomer").await;

    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = tokio::time::timeout(WAIT, task).await;
    }
    let failed: u64 = tallies
        .iter()
        .map(|t| t.failed.load(Ordering::Relaxed))
        .sum();
    let ok: u64 = tallies.iter().map(|t| t.ok.load(Ordering::Relaxed)).sum();
    eprintln!("crowd: {ok} answered, {failed} failed");
}
