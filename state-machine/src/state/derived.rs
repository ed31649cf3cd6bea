//! The state's derived indexes: deadline queues computed from the saved state.
//!
//! Owns: [`Derived`] and [`Derived::rebuild`], the one place that says how
//! each index follows from the saved fields. Must not: hold anything that
//! cannot be recomputed from the saved state, or be serialized (it is
//! `#[serde(skip)]` in [`BookingState`](super::BookingState), so it reaches
//! neither snapshots nor the state hash).
//!
//! Caveat: between restores, the command functions keep these indexes in
//! step with the saved fields by hand (each insert or remove sits next to the
//! change it mirrors); `check_invariants` compares them with the data after
//! every entry in tests, and restore rebuilds them from scratch.

use std::collections::BTreeSet;

use super::HoldTable;
use crate::event::Event;
use crate::view::SaleState;

/// Ordered queues of what falls due with log time, so housekeeping pops due
/// work from the front instead of scanning every hold, fan and event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Derived {
    /// `(expires_at_ms, hold_id)` of every live (active or payment-pending)
    /// hold: housekeeping expires holds from the front.
    pub expiry: BTreeSet<(u64, u64)>,
    /// `(until_ms, event)` of every live admission round (event is the
    /// dense event number): housekeeping lapses rounds from the front.
    pub lapses: BTreeSet<(u64, u32)>,
    /// `(sale_opens_at_ms, event)` of events not opened yet that open by
    /// themselves at that log time.
    pub scheduled_opens: BTreeSet<(u64, u32)>,
    /// Events with a waiting room whose sale is open: the ones housekeeping
    /// asks to admit the next fans.
    pub queue_events: BTreeSet<u32>,
}

impl Derived {
    /// Computes every index from the saved holds and events.
    pub fn rebuild(holds: &HoldTable, events: &[Event]) -> Derived {
        let mut derived = Derived {
            expiry: holds
                .iter()
                .filter(|(_, h)| h.status.is_live())
                .map(|(id, h)| (h.expires_at_ms, id))
                .collect(),
            ..Derived::default()
        };
        for (i, ev) in events.iter().enumerate() {
            let i = i as u32;
            if let Some(at) = ev.sale_opens_at_ms {
                derived.scheduled_opens.insert((at, i));
            }
            if let Some(queue) = &ev.queue {
                if ev.sale == SaleState::Open {
                    derived.queue_events.insert(i);
                }
                for round in &queue.rounds {
                    derived.lapses.insert((round.until_ms, i));
                }
            }
        }
        derived
    }
}
