//! The gateway's side of the waiting room: position blocks and the cached
//! watermark.
//!
//! Owns: per event, the block of positions this gateway reserved
//! (`ReserveQueueBlock`, one log write per block) and hands out one per
//! join, the block size (doubling while joins come fast, halving when they
//! are slow: 1 at a trickle, up to `[gateway] queue_block_max` in a burst,
//! [`GatewaySettings::queue_block_max`](crate::GatewaySettings)), the
//! next block reserved ahead while a fast one is half used, and one
//! cached stale read of the room (`Query::WaitingRoom`) that every fan's
//! position answer is computed from. Must not: write anything per fan, or
//! read the cluster per fan (at most one read per event per
//! [`ROOM_CACHE_MS`], whoever asks).
//!
//! Choice: in a burst the next block is reserved by a task of its own as
//! soon as the current one (of at least [`PREFETCH_SIZE_MIN`]) is half
//! used, so joins do not queue behind the block's log write: without it,
//! every join that found the block empty waited for one commit (hundreds
//! of ms while the sale's holds load the log), and a crowd's joins went in
//! steps of one block per commit. Caveat: a gateway can then hold two
//! blocks; when the crowd stops, both rests are holes (at most
//! 2 × `queue_block_max` places), which the state machine's admission
//! grace absorbs like any other. At a trickle (blocks below
//! [`PREFETCH_SIZE_MIN`]) nothing is reserved ahead.
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

/// Blocks at least this large reserve the next one ahead (see the module
/// doc); smaller ones mean joins are slow and a spare would be holes.
pub const PREFETCH_SIZE_MIN: u32 = 64;
/// How long a read of the room serves every fan of that event.
pub const ROOM_CACHE_MS: u64 = 250;
/// Events this gateway keeps a desk for; past it the desks start afresh
/// (an unused block's rest becomes holes, nothing else is lost).
const DESKS_MAX: usize = 4_096;
/// A block used up faster than this doubles the next one.
const BLOCK_FAST: Duration = Duration::from_secs(1);
/// Times a join waits for a reservation made ahead before it reserves a
/// block itself (each wait ends when that reservation is answered).
const AHEAD_WAITS_MAX: u32 = 2;

#[derive(Default)]
pub struct QueueDesks {
    desks: Mutex<HashMap<String, Arc<Desk>>>,
}

#[derive(Default)]
struct Desk {
    block: tokio::sync::Mutex<Block>,
    /// Wakes joins waiting for the reservation made ahead.
    ahead_done: tokio::sync::Notify,
    view: Mutex<Option<(Instant, Arc<WaitingRoomView>)>>,
    /// One refresh at a time; the others wait for it and use its answer.
    refresh: tokio::sync::Mutex<()>,
}

/// Positions `[first, first + count)`, reserved after the opening or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reserved {
    first: u64,
    count: u32,
    opened: bool,
}

/// One event's positions on this gateway: the block being handed out and
/// the next one, reserved ahead.
#[derive(Default, Debug)]
struct Block {
    /// The block being handed out: `[first, end)`, `next` the next one.
    first: u64,
    next: u64,
    end: u64,
    opened: bool,
    /// Size of the last reservation asked for.
    size: u32,
    /// When the block being handed out started.
    started_at: Option<Instant>,
    /// The next block, reserved ahead.
    spare: Option<Reserved>,
    /// A reservation ahead is in flight.
    reserving_ahead: bool,
}

impl Block {
    /// The size of the next reservation: doubled while blocks go in under
    /// [`BLOCK_FAST`], halved otherwise, 1 to `max` (the gateway's
    /// `queue_block_max`, checked at start to be 1..= the state machine's
    /// own bound).
    fn next_size(&mut self, max: u32) -> u32 {
        let fast = self.started_at.is_some_and(|at| at.elapsed() < BLOCK_FAST);
        self.size = match self.size {
            0 => 1,
            s if fast => s.saturating_mul(2).min(max),
            s => (s / 2).max(1),
        };
        self.size
    }

    /// Starts handing out `r`.
    fn start(&mut self, r: Reserved) {
        self.first = r.first;
        self.next = r.first;
        self.end = r.first + u64::from(r.count);
        self.opened = r.opened;
        self.started_at = Some(Instant::now());
    }

    /// Moves to the spare block if the current one is used up (or was
    /// reserved before an opening that has now happened), skipping
    /// positions the watermark has passed. False when there is no usable
    /// position: a block must be reserved.
    ///
    /// Positions reserved after the opening are served in order (place =
    /// position − 1), so position `p` is admitted once `p ≤
    /// admitted_places`: a block the watermark caught up with (joins slower
    /// than admissions, or a spare left idle after a burst) would hand a
    /// newcomer a place whose round may already have lapsed. Those places
    /// are holes the state machine's grace has counted already; skipping
    /// them costs no fan anything.
    fn ready(&mut self, sale_opened: bool, admitted_places: u64) -> bool {
        if sale_opened && !self.opened {
            // A pre-opening block's rest would put late fans into the
            // shuffled pre-queue; so would a pre-opening spare.
            self.end = self.next;
            if self.spare.is_some_and(|s| !s.opened) {
                self.spare = None;
            }
        }
        loop {
            if self.opened {
                self.next = self.next.max(admitted_places + 1).min(self.end);
            }
            if self.next < self.end {
                return true;
            }
            match self.spare.take() {
                Some(s) => self.start(s),
                None => return false,
            }
        }
    }

    /// Hands out the next position; call after `ready` said true.
    fn take(&mut self) -> u64 {
        assert!(self.next < self.end, "position taken from an empty block");
        let position = self.next;
        self.next += 1;
        position
    }

    /// True when the next block should be reserved ahead now: the current
    /// one is large (a burst) and half used, and none is reserved or in
    /// flight.
    fn wants_ahead(&self) -> bool {
        let count = self.end - self.first;
        count >= u64::from(PREFETCH_SIZE_MIN)
            && self.spare.is_none()
            && !self.reserving_ahead
            && self.end - self.next <= count / 2
    }
}

/// A position handed out by this gateway.
pub struct Taken {
    pub position: u64,
    pub view: Arc<WaitingRoomView>,
}

impl QueueDesks {
    fn desk(&self, event_id: &str) -> Arc<Desk> {
        let mut desks = self.desks.lock().expect("queue desks poisoned");
        if let Some(desk) = desks.get(event_id) {
            return desk.clone();
        }
        if desks.len() >= DESKS_MAX {
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
        self.view_at(&self.desk(event_id), state, event_id).await
    }

    async fn view_at(
        &self,
        desk: &Desk,
        state: &AppState,
        event_id: &str,
    ) -> Result<Arc<WaitingRoomView>, Problem> {
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
        // The gauge depends on the view only: set once per read, not per fan.
        state.metrics.set_queue_waiting(
            &view.event_id,
            (view.next_position - 1).saturating_sub(view.admitted_places),
        );
        *desk.view.lock().expect("queue desk poisoned") = Some((Instant::now(), view.clone()));
        Ok(view)
    }

    /// One position for a joining fan: from this gateway's block, from the
    /// block reserved ahead, or from a new block reserved now.
    pub async fn take(&self, state: &AppState, event_id: &str) -> Result<Taken, Problem> {
        let desk = self.desk(event_id);
        let view = self.view_at(&desk, state, event_id).await?;
        let opened = view.seed.is_some();
        let mut waits = 0;
        let mut block = loop {
            let mut block = desk.block.lock().await;
            if block.ready(opened, view.admitted_places) {
                break block;
            }
            if block.reserving_ahead && waits < AHEAD_WAITS_MAX {
                // The next block is on its way: wait for it rather than
                // reserve another one.
                waits += 1;
                let done = desk.ahead_done.notified();
                tokio::pin!(done);
                done.as_mut().enable();
                drop(block);
                done.await;
                continue;
            }
            let count = block.next_size(state.settings.queue_block_max);
            let r = reserve(state, event_id, count).await?;
            block.start(r);
            if block.ready(opened, view.admitted_places) {
                break block;
            }
            // Reserved before the opening, which this gateway has seen:
            // dropped (the loop reserves again, now after the opening).
        };
        let position = block.take();
        if block.wants_ahead() {
            block.reserving_ahead = true;
            let count = block.next_size(state.settings.queue_block_max);
            let (state, desk, event_id) = (state.clone(), desk.clone(), event_id.to_string());
            // Its own task: a join's handler may be dropped (its client
            // gone) before the reservation is answered.
            tokio::spawn(async move {
                let r = reserve(&state, &event_id, count).await;
                let mut block = desk.block.lock().await;
                block.reserving_ahead = false;
                match r {
                    Ok(r) => block.spare = Some(r),
                    Err(e) => {
                        tracing::warn!(event = %event_id, error = ?e, "reserving the next queue block ahead failed; joins reserve their own")
                    }
                }
                drop(block);
                desk.ahead_done.notify_waiters();
            });
        }
        Ok(Taken { position, view })
    }
}

/// One `ReserveQueueBlock` of `count` positions.
async fn reserve(state: &AppState, event_id: &str, count: u32) -> Result<Reserved, Problem> {
    let reply = submit_first_send(
        state,
        Command::ReserveQueueBlock {
            event_id: event_id.to_string(),
            count,
        },
    )
    .await?;
    match reply {
        Reply::QueueBlock {
            first_position,
            count,
            opened,
            ..
        } => Ok(Reserved {
            first: first_position,
            count,
            opened,
        }),
        _ => Err(unexpected("reserve_queue_block")),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reserved(first: u64, count: u32, opened: bool) -> Reserved {
        Reserved {
            first,
            count,
            opened,
        }
    }

    /// Goal: a large block asks for the next one once half used (not
    /// before, not twice), and the spare takes over when it runs out, so a
    /// join never finds both empty while the reservation ahead committed.
    #[test]
    fn a_burst_block_reserves_the_next_at_its_half_and_moves_on_to_it() {
        let mut b = Block {
            size: 128,
            ..Block::default()
        };
        b.start(reserved(1, 128, true));
        let mut handed = Vec::new();
        for _ in 0..63 {
            assert!(b.ready(true, 0));
            handed.push(b.take());
            assert!(!b.wants_ahead(), "ahead before the half: {b:?}");
        }
        assert!(b.ready(true, 0));
        handed.push(b.take());
        assert!(b.wants_ahead(), "half used: {b:?}");
        b.reserving_ahead = true;
        assert!(!b.wants_ahead(), "one reservation ahead at a time");
        b.reserving_ahead = false;
        b.spare = Some(reserved(5_001, 256, true));
        assert!(!b.wants_ahead(), "a spare is already there");
        while handed.len() < 128 + 256 {
            assert!(b.ready(true, 0), "no position after {}", handed.len());
            handed.push(b.take());
        }
        let expected: Vec<u64> = (1..=128).chain(5_001..5_001 + 256).collect();
        assert_eq!(handed, expected, "each position once, block order");
        assert!(!b.ready(true, 0), "both blocks used up");
    }

    /// Goal: small blocks (a trickle) reserve nothing ahead, so a quiet
    /// room does not leave a block of holes behind.
    #[test]
    fn a_trickle_reserves_nothing_ahead() {
        let mut b = Block {
            size: PREFETCH_SIZE_MIN / 2,
            ..Block::default()
        };
        b.start(reserved(1, PREFETCH_SIZE_MIN / 2, true));
        while b.ready(true, 0) {
            b.take();
            assert!(!b.wants_ahead(), "{b:?}");
        }
    }

    /// Goal: once the sale is seen open, the rest of a pre-opening block and
    /// a pre-opening spare are dropped (late fans must not land in the
    /// shuffled pre-queue); a spare reserved after the opening is kept.
    #[test]
    fn pre_opening_positions_are_dropped_at_the_opening() {
        let mut b = Block::default();
        b.start(reserved(1, 100, false));
        b.spare = Some(reserved(101, 100, false));
        assert!(b.ready(false, 0));
        assert_eq!(b.take(), 1);
        assert!(
            !b.ready(true, 0),
            "pre-opening block and spare dropped: {b:?}"
        );
        assert_eq!(b.spare, None);

        let mut b = Block::default();
        b.start(reserved(1, 100, false));
        b.spare = Some(reserved(101, 100, true));
        assert!(b.ready(true, 0));
        assert_eq!(b.take(), 101, "the post-opening spare serves");
    }

    /// Goal: positions the watermark has passed (a block left idle while
    /// rounds admitted through it) are skipped, in the current block and
    /// in the spare, so a newcomer is never handed a place already
    /// admitted (or lapsed) without them.
    #[test]
    fn positions_behind_the_watermark_are_skipped() {
        let mut b = Block::default();
        b.start(reserved(1, 100, true));
        b.spare = Some(reserved(101, 100, true));
        assert!(b.ready(true, 50));
        assert_eq!(b.take(), 51);
        assert!(b.ready(true, 150), "{b:?}");
        assert_eq!(b.take(), 151, "the spare, past the watermark");
        assert!(!b.ready(true, 500), "both passed: reserve anew");
        // Before the opening nothing is skipped (places are shuffled).
        let mut b = Block::default();
        b.start(reserved(1, 100, false));
        assert!(b.ready(false, 50));
        assert_eq!(b.take(), 1);
    }
}
