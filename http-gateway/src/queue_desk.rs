//! The gateway's side of the waiting room: position blocks and the cached
//! watermark.
//!
//! Owns: per event, the block of positions this gateway reserved
//! (`ReserveQueueBlock`, one log write per block) and hands out one per
//! join, the block size (doubling while joins come fast, halving when they
//! are slow: 1 at a trickle, up to `[gateway] queue_block_max` in a burst,
//! [`GatewaySettings::queue_block_max`](crate::GatewaySettings)), and one
//! cached stale read of the room (`Query::WaitingRoom`) that every fan's
//! position answer is computed from. Must not: write anything per fan, or
//! read the cluster per fan (at most one read per event per
//! [`ROOM_CACHE_MS`], whoever asks).
//!
//! Choice: a block reserved before the opening that still has positions
//! when this gateway sees the sale open is dropped (its rest would put late
//! fans into the shuffled pre-queue); its unused positions are holes, which
//! the state machine's admission grace absorbs. Caveat: "sees" is through
//! the cached view, so up to [`ROOM_CACHE_MS`] of joins after the opening
//! may still land in the pre-queue. Caveat: the block bound is checked at
//! start against the state machine's default `queue_block_max`; an
//! operator who lowers the replicated one (`Configure`) below the
//! gateway's must lower `[gateway] queue_block_max` too, or large blocks
//! (and the joins waiting on them) are refused `invalid_request`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use state_machine::{Command, Query, QueryResult, Reply, WaitingRoomView};

use crate::api::{read, submit_first_send, unexpected};
use crate::cluster::Consistency;
use crate::problem::Problem;
use crate::AppState;

/// How long a read of the room serves every fan of that event.
pub const ROOM_CACHE_MS: u64 = 250;
/// Events this gateway keeps a desk for; past it the desks start afresh
/// (an unused block's rest becomes holes, nothing else is lost).
const DESKS_MAX: usize = 4_096;
/// A block used up faster than this doubles the next one.
const BLOCK_FAST: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct QueueDesks {
    desks: Mutex<HashMap<String, Arc<Desk>>>,
}

#[derive(Default)]
struct Desk {
    block: tokio::sync::Mutex<Block>,
    view: Mutex<Option<(Instant, Arc<WaitingRoomView>)>>,
    /// One refresh at a time; the others wait for it and use its answer.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Block {
    next: u64,
    end: u64,
    opened: bool,
    size: u32,
    reserved_at: Option<Instant>,
}

/// A position handed out by this gateway.
pub struct Taken {
    pub position: u64,
    pub view: Arc<WaitingRoomView>,
}

impl QueueDesks {
    fn desk(&self, event_id: &str) -> Arc<Desk> {
        let mut desks = self.desks.lock().expect("queue desks poisoned");
        if desks.len() >= DESKS_MAX && !desks.contains_key(event_id) {
            desks.clear();
        }
        desks.entry(event_id.to_string()).or_default().clone()
    }

    /// The room as of at most [`ROOM_CACHE_MS`] ago (one stale read).
    pub async fn view(
        &self,
        state: &AppState,
        event_id: &str,
    ) -> Result<Arc<WaitingRoomView>, Problem> {
        let desk = self.desk(event_id);
        if let Some(view) = desk.fresh_view() {
            return Ok(view);
        }
        let _one = desk.refresh.lock().await;
        if let Some(view) = desk.fresh_view() {
            return Ok(view);
        }
        let answer = read(
            state,
            Query::WaitingRoom {
                event_id: event_id.to_string(),
            },
            Consistency::Stale,
        )
        .await?;
        let view = match answer.result {
            QueryResult::WaitingRoom(r) => Arc::new(r?),
            _ => return Err(unexpected("waiting room")),
        };
        *desk.view.lock().expect("queue desk poisoned") = Some((Instant::now(), view.clone()));
        Ok(view)
    }

    /// One position for a joining fan: from this gateway's block, or from
    /// a new block reserved now.
    pub async fn take(&self, state: &AppState, event_id: &str) -> Result<Taken, Problem> {
        let view = self.view(state, event_id).await?;
        let desk = self.desk(event_id);
        let mut block = desk.block.lock().await;
        let opened_since = !block.opened && view.seed.is_some();
        if block.next >= block.end || opened_since {
            let fast = block
                .reserved_at
                .is_some_and(|at| at.elapsed() < BLOCK_FAST);
            // Checked at start to be 1..= the state machine's own bound.
            let max = state.settings.queue_block_max;
            block.size = match block.size {
                0 => 1,
                s if fast => s.saturating_mul(2).min(max),
                s => (s / 2).max(1),
            };
            let reply = submit_first_send(
                state,
                Command::ReserveQueueBlock {
                    event_id: event_id.to_string(),
                    count: block.size,
                },
            )
            .await?;
            match reply {
                Reply::QueueBlock {
                    first_position,
                    count,
                    opened,
                    ..
                } => {
                    block.next = first_position;
                    block.end = first_position + count as u64;
                    block.opened = opened;
                    block.reserved_at = Some(Instant::now());
                }
                _ => return Err(unexpected("reserve_queue_block")),
            }
        }
        let position = block.next;
        block.next += 1;
        Ok(Taken { position, view })
    }
}

impl Desk {
    fn fresh_view(&self) -> Option<Arc<WaitingRoomView>> {
        let cached = self.view.lock().expect("queue desk poisoned");
        cached
            .as_ref()
            .filter(|(at, _)| at.elapsed() < Duration::from_millis(ROOM_CACHE_MS))
            .map(|(_, v)| v.clone())
    }
}
