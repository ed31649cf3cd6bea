//! This store as a peer: through the client library (gRPC, `client::Client`)
//! and through the HTTP gateway. Both run against the bench's own 3-node
//! cluster (fsync on); each round is a fresh event.
//!
//! Must not: reach into a node; the held count is a linearizable
//! `Availability` read.

use std::sync::Arc;

use anyhow::{bail, Context};
use client::{Client, ClientOptions, ClientTls, Consistency, Ids};
use state_machine::{BookingError, Command, EventSpec, Query, QueryResult, Reply, Selection};

use super::{BoxFuture, HoldTarget};
use crate::http::{self, FanPool, HoldAnswer};

pub const CLIENT: &str = "ours (client, 3n fsync)";
pub const GATEWAY: &str = "ours (gateway, 3n fsync)";
/// The client path on a `booking-fault-bugs` binary with `skip-fdatasync`:
/// sled's flush only, as the store acknowledged before its durability step
/// (the "before" of the syncs; not durable on a power cut).
pub const CLIENT_NO_SYNC: &str = "ours (client, 3n, skip-fdatasync)";
/// The client round against a second cluster with `[tls] mode = "off"`, so
/// one run shows what mutual TLS costs.
pub const CLIENT_PLAINTEXT: &str = "ours (client, 3n fsync, TLS off)";

async fn held_via_client(client: &Client, event_id: &str) -> anyhow::Result<u64> {
    let (result, _) = client
        .read(
            Query::Availability {
                event_id: event_id.to_string(),
            },
            Consistency::Linearizable,
        )
        .await?;
    let QueryResult::Availability(Ok(view)) = result else {
        bail!("availability: {result:?}")
    };
    Ok(view
        .sections
        .iter()
        .map(|s| u64::from(s.held + s.booked))
        .sum())
}

/// Holds through `client::Client`.
pub struct ViaClient {
    client: Client,
    event_id: String,
}

impl ViaClient {
    pub async fn new(
        endpoints: &[String],
        tls: &Option<ClientTls>,
        round: &str,
        seats: u32,
    ) -> anyhow::Result<Arc<ViaClient>> {
        let options = ClientOptions {
            tls: tls.clone(),
            ..ClientOptions::default()
        };
        let client = Client::with_options(endpoints.to_vec(), options)?;
        let event_id = format!("peers-client-{round}");
        let spec: EventSpec =
            serde_json::from_value(http::event_spec(&event_id, seats)).context("event spec")?;
        client
            .submit(Ids::New, Command::CreateEvent(spec))
            .await?
            .into_reply()?;
        client
            .submit(
                Ids::New,
                Command::OpenSale {
                    event_id: event_id.clone(),
                },
            )
            .await?
            .into_reply()?;
        Ok(Arc::new(ViaClient { client, event_id }))
    }
}

impl HoldTarget for ViaClient {
    fn hold<'a>(
        &'a self,
        _worker: usize,
        seat: u32,
        holder: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let hold = Command::Hold {
                event_id: self.event_id.clone(),
                holder: holder.to_string(),
                selection: Selection::Seats(vec![http::seat_id(seat)]),
            };
            match self.client.submit(Ids::New, hold).await?.outcome {
                Ok(Reply::Held { .. }) => Ok(true),
                Ok(other) => bail!("unexpected reply {other:?}"),
                Err(BookingError::SeatUnavailable { .. }) => Ok(false),
                Err(refusal) => Err(client::ClientError::Refused(refusal).into()),
            }
        })
    }

    fn held_count(&self) -> BoxFuture<'_, anyhow::Result<u64>> {
        Box::pin(held_via_client(&self.client, &self.event_id))
    }
}

/// Signed-in users each gateway worker rotates through. The gateway limits
/// each user to 50 requests/s (burst 100); one user per worker would measure
/// that limit, not the store, once a worker passes 50 holds/s.
pub const USERS_PER_WORKER: usize = 8;

/// Holds through the HTTP gateway, [`USERS_PER_WORKER`] signed-in users per
/// worker, used in turn.
pub struct ViaGateway {
    pool: FanPool,
    /// `workers * USERS_PER_WORKER` tokens; worker `w` owns the slice
    /// starting at `w * USERS_PER_WORKER`.
    tokens: Vec<String>,
    /// Per worker: how many holds it has sent (picks the next user).
    sent: Vec<std::sync::atomic::AtomicUsize>,
    event_id: String,
    client: Client,
}

impl ViaGateway {
    pub async fn new(
        gateway_url: &str,
        admin_token: &str,
        endpoints: &[String],
        tls: &Option<ClientTls>,
        round: &str,
        seats: u32,
        workers: usize,
    ) -> anyhow::Result<Arc<ViaGateway>> {
        let pool = FanPool::new(gateway_url)?;
        http::wait_ready(gateway_url, std::time::Duration::from_secs(30)).await?;
        let event_id = format!("peers-gw-{round}");
        http::create_event(gateway_url, admin_token, &event_id, seats).await?;
        let mut tokens = Vec::with_capacity(workers * USERS_PER_WORKER);
        for u in 0..workers * USERS_PER_WORKER {
            tokens.push(pool.login(u as u64, &format!("peer{u}")).await?);
        }
        let sent = (0..workers)
            .map(|_| std::sync::atomic::AtomicUsize::new(0))
            .collect();
        let options = ClientOptions {
            tls: tls.clone(),
            ..ClientOptions::default()
        };
        let client = Client::with_options(endpoints.to_vec(), options)?;
        Ok(Arc::new(ViaGateway {
            pool,
            tokens,
            sent,
            event_id,
            client,
        }))
    }
}

impl HoldTarget for ViaGateway {
    fn hold<'a>(
        &'a self,
        worker: usize,
        seat: u32,
        _holder: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let seat = http::seat_id(seat);
            let turn = self.sent[worker].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let token = &self.tokens[worker * USERS_PER_WORKER + turn % USERS_PER_WORKER];
            match self
                .pool
                .hold(worker as u64, token, &self.event_id, Some(&seat))
                .await
            {
                HoldAnswer::Held { .. } => Ok(true),
                HoldAnswer::Rejected { .. } => Ok(false),
                other => bail!("gateway answered {other:?}"),
            }
        })
    }

    fn held_count(&self) -> BoxFuture<'_, anyhow::Result<u64>> {
        Box::pin(held_via_client(&self.client, &self.event_id))
    }
}
