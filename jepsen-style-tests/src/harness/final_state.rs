//! After the heal: every replica's final state, read from that replica alone.
//!
//! Owns: waiting until all nodes report the same applied index (and keep it,
//! so the leader's expiry ticks have settled), then reading each node with
//! *stale* reads (its own applied state, no leader involved): the seat map,
//! every hold and booking by id, and the state hash from its status. From
//! these it builds the [`ReplicaState`]s the checkers compare.
//!
//! Must not: write anything to the cluster.
//!
//! Caveats: the store's availability map shows only `.`/`H`/`B` per seat;
//! the owner comes from scanning holds and bookings by id (ids are dense
//! counters), up to the largest id the history saw plus a margin for ids
//! handed out to operations whose reply was lost. A seat whose owner the scan
//! does not find is left out of the replica's map (unknown, not available).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use client::{Client, ClientOptions, ClientTls, Consistency, NodeStatus};
use serde::Serialize;
use state_machine::{BookingStatus, Query, QueryResult};

use super::workload::{WorkloadConfig, EVENT_ID};
use crate::booking::{BookingCall, BookingOp, BookingResult, BookingRet, ReplicaState, SeatView};

/// Ids scanned past the largest one the history saw.
const ID_SCAN_MARGIN: u64 = 64;
/// Most ids scanned per kind, whatever the history says.
const ID_SCAN_MAX: u64 = 200_000;
/// How many stale reads one node answers at once during the scan.
const SCAN_CONCURRENCY: usize = 16;

/// One node's status at the moment all agreed.
#[derive(Serialize, Clone, Debug)]
pub struct NodeFinal {
    pub node_id: u64,
    pub applied_index: u64,
    pub state_hash: String,
    pub role: String,
    pub term: u64,
    pub voters: Vec<u64>,
}

fn single_node_client(endpoint: &str, tls: &Option<ClientTls>) -> Result<Client, String> {
    let options = ClientOptions {
        tls: tls.clone(),
        request_timeout_ms: 2_000,
        connect_timeout_ms: 1_000,
        attempts_max: 3,
        retry_budget_ms: 6_000,
        ..ClientOptions::default()
    };
    Client::with_options([endpoint.to_string()], options).map_err(|e| format!("{endpoint}: {e}"))
}

/// Polls every node until all report one applied index twice in a row, at
/// least `settle` apart; at most `timeout`.
pub async fn wait_converged(
    endpoints: &[(u64, String)],
    tls: &Option<ClientTls>,
    settle: Duration,
    timeout: Duration,
) -> Result<Vec<NodeFinal>, String> {
    let clients: Vec<(u64, Client)> = endpoints
        .iter()
        .map(|(id, e)| single_node_client(e, tls).map(|c| (*id, c)))
        .collect::<Result<_, _>>()?;
    let deadline = Instant::now() + timeout;
    let mut previous: Option<u64> = None;
    let mut last_seen = String::new();
    loop {
        let mut statuses: Vec<(u64, NodeStatus)> = Vec::new();
        for (id, c) in &clients {
            match c.node_status(&c.endpoints()[0]).await {
                Ok(s) => statuses.push((*id, s)),
                Err(e) => last_seen = format!("node {id}: {e}"),
            }
        }
        if statuses.len() == clients.len() {
            let applied: Vec<u64> = statuses.iter().map(|(_, s)| s.applied_index).collect();
            last_seen = format!("applied indexes {applied:?}");
            let all_equal = applied.windows(2).all(|w| w[0] == w[1]);
            if all_equal && previous == Some(applied[0]) {
                return Ok(statuses
                    .into_iter()
                    .map(|(id, s)| NodeFinal {
                        node_id: id,
                        applied_index: s.applied_index,
                        state_hash: s.state_hash.clone(),
                        role: s.role.clone(),
                        term: s.term,
                        voters: s
                            .members
                            .iter()
                            .filter(|m| m.voter)
                            .map(|m| m.node_id)
                            .collect(),
                    })
                    .collect());
            }
            previous = all_equal.then(|| applied[0]);
        }
        if Instant::now() + settle > deadline {
            return Err(format!(
                "replicas did not converge within {} s: {last_seen}",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(settle).await;
    }
}

/// Reads one replica's seats (all of `seats`) and builds its final state.
pub async fn read_replica(
    node: &NodeFinal,
    endpoint: &str,
    tls: &Option<ClientTls>,
    seats: &[String],
    hold_id_scan_to: u64,
    booking_id_scan_to: u64,
) -> Result<ReplicaState, String> {
    use futures::StreamExt;
    let c = single_node_client(endpoint, tls)?;
    let (result, _) = c
        .read(
            Query::Availability {
                event_id: EVENT_ID.into(),
            },
            Consistency::Stale,
        )
        .await
        .map_err(|e| format!("node {}: availability: {e}", node.node_id))?;
    if let QueryResult::Availability(Err(state_machine::BookingError::UnknownEvent { .. })) = result
    {
        return Ok(ReplicaState {
            node: format!("n{}", node.node_id),
            seats: BTreeMap::new(),
            state_hash: node.state_hash.clone(),
            event_missing: true,
        });
    }
    let QueryResult::Availability(Ok(view)) = result else {
        return Err(format!(
            "node {}: availability: unexpected answer {result:?}",
            node.node_id
        ));
    };
    let mut chars: BTreeMap<String, u8> = BTreeMap::new();
    for section in &view.sections {
        for row in &section.rows {
            for (i, b) in row.states.bytes().enumerate() {
                chars.insert(format!("{}-{}-{}", section.section, row.label, i + 1), b);
            }
        }
    }
    // Live holds and confirmed bookings, by seat.
    let mut held_by: BTreeMap<String, SeatView> = BTreeMap::new();
    let mut booked_by: BTreeMap<String, SeatView> = BTreeMap::new();
    let hold_ids = 1..=hold_id_scan_to.min(ID_SCAN_MAX);
    let holds: Vec<_> = futures::stream::iter(hold_ids)
        .map(|hold_id| {
            let c = c.clone();
            async move { c.read(Query::Hold { hold_id }, Consistency::Stale).await }
        })
        .buffered(SCAN_CONCURRENCY)
        .collect()
        .await;
    for r in holds {
        match r.map_err(|e| format!("node {}: hold scan: {e}", node.node_id))? {
            (QueryResult::Hold(Ok(h)), _) if h.event_id == EVENT_ID && h.status.is_live() => {
                for s in &h.seats {
                    held_by.insert(
                        s.clone(),
                        SeatView::Held {
                            hold_id: h.hold_id,
                            holder: h.holder.clone(),
                        },
                    );
                }
            }
            _ => {}
        }
    }
    let bookings: Vec<_> = futures::stream::iter(1..=booking_id_scan_to.min(ID_SCAN_MAX))
        .map(|booking_id| {
            let c = c.clone();
            async move {
                c.read(Query::Booking { booking_id }, Consistency::Stale)
                    .await
            }
        })
        .buffered(SCAN_CONCURRENCY)
        .collect()
        .await;
    for r in bookings {
        match r.map_err(|e| format!("node {}: booking scan: {e}", node.node_id))? {
            (QueryResult::Booking(Ok(b)), _)
                if b.event_id == EVENT_ID && b.status == BookingStatus::Confirmed =>
            {
                for s in &b.seats {
                    booked_by.insert(
                        s.clone(),
                        SeatView::Booked {
                            booking_id: b.booking_id,
                            hold_id: b.hold_id,
                            holder: b.holder.clone(),
                        },
                    );
                }
            }
            _ => {}
        }
    }
    let mut map = BTreeMap::new();
    for seat in seats {
        let view = match chars.get(seat) {
            Some(b'.') => Some(SeatView::Available),
            Some(b'H') => held_by.get(seat).cloned(),
            Some(b'B') => booked_by.get(seat).cloned(),
            _ => None,
        };
        if let Some(v) = view {
            map.insert(seat.clone(), v);
        }
    }
    Ok(ReplicaState {
        node: format!("n{}", node.node_id),
        seats: map,
        state_hash: node.state_hash.clone(),
        event_missing: false,
    })
}

/// How far to scan ids: the history's largest plus room for lost replies.
pub fn scan_bound(max_seen: u64, unknown_ops: u64) -> u64 {
    max_seen + unknown_ops + ID_SCAN_MARGIN
}

/// Waits until the replicas converge, then reads each one's final state,
/// scanning ids up to the largest the history `ops` saw (plus a margin per
/// unknown outcome). An error ends the reading and is returned with what was
/// read so far.
pub async fn read_final_states(
    endpoints: &[(u64, String)],
    tls: &Option<ClientTls>,
    cfg: &WorkloadConfig,
    ops: &[BookingOp],
) -> (Vec<ReplicaState>, Vec<NodeFinal>, Option<String>) {
    // Settle at least one expiry-sweep interval apart, so ticks are done.
    let finals = match wait_converged(
        endpoints,
        tls,
        Duration::from_millis(500),
        Duration::from_secs(60),
    )
    .await
    {
        Ok(f) => f,
        Err(e) => return (Vec::new(), Vec::new(), Some(e)),
    };
    let mut hold_max = 0;
    let mut booking_max = 0;
    let mut unknown = 0u64;
    for op in ops {
        match &op.result {
            BookingResult::Ok(BookingRet::Held(h)) => hold_max = hold_max.max(h.hold_id),
            BookingResult::Ok(BookingRet::Confirmed(c)) => {
                booking_max = booking_max.max(c.booking_id)
            }
            BookingResult::Unknown => unknown += 1,
            _ => {}
        }
        if let BookingCall::Cancel(b) = &op.call {
            booking_max = booking_max.max(b.booking_id);
        }
    }
    let seats = cfg.seat_ids();
    let mut replicas = Vec::new();
    for node in &finals {
        let endpoint = &endpoints
            .iter()
            .find(|(id, _)| *id == node.node_id)
            .expect("known node")
            .1;
        match read_replica(
            node,
            endpoint,
            tls,
            &seats,
            scan_bound(hold_max, unknown),
            scan_bound(booking_max, unknown),
        )
        .await
        {
            Ok(r) => replicas.push(r),
            Err(e) => return (replicas, finals, Some(e)),
        }
    }
    (replicas, finals, None)
}
