//! One event's inventory: the seat array, per-section counters, and the
//! derived indexes that make seat-id parsing and best-available fast.
//!
//! Owns: the dense seat numbering (reserved seats of all sections, in
//! definition order), seat-state transitions with their counter and index
//! upkeep, and public seat ids (`SECTION-ROW-NUMBER`, numbers from 1). The
//! best-available search over the free-seat index is `best_available`.
//! Must not: decide whether a transition is allowed (that is `state`), or
//! know about time.
//!
//! Caveats:
//! - `layout` and `rows_free` are derived from the spec and the seat array;
//!   they are not serialized and `rebuild_indexes` recomputes them on restore.
//! - A row's `max_run` (longest free run) is recomputed lazily: a seat change
//!   only marks the row dirty, best-available refreshes it when it looks.

mod best_available;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::{EventSpec, SectionSpec};
use crate::view::SaleState;
use crate::waiting_room::WaitingRoom;

/// State of one reserved seat. The id inside names the live hold or the
/// confirmed booking that owns the seat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Seat {
    Available,
    Held(u64),
    Booked(u64),
}

/// Counters of one section. For reserved sections they mirror the seat array
/// (checked by `check_invariants`); for general admission they are the truth.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SectionCounters {
    pub held: u32,
    pub booked: u32,
    /// General admission: places ever sold, numbering GA tickets `<section>#<n>`.
    pub ga_issued: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Event {
    pub id: String,
    /// As created, with `id` filled in.
    pub spec: EventSpec,
    pub created_index: u64,
    pub created_at_ms: u64,
    /// Log time at which the sale opens by itself, if the spec says so.
    pub sale_opens_at_ms: Option<u64>,
    pub sale: SaleState,
    /// The waiting-room shuffle happens at the first opening only.
    pub opened_once: bool,
    pub seats: Vec<Seat>,
    pub counters: Vec<SectionCounters>,
    /// Formats 1-3 held one record per fan: converted on restore.
    #[serde(deserialize_with = "crate::legacy_queue::decode")]
    pub queue: Option<WaitingRoom>,
    #[serde(skip)]
    pub layout: Layout,
    #[serde(skip)]
    pub rows_free: Vec<RowFree>,
}

/// Derived from the spec: where every section and row starts in the seat array.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Layout {
    pub sections: Vec<SectionLayout>,
    pub section_by_id: BTreeMap<String, u32>,
    pub rows: Vec<RowLayout>,
    /// Dense seat → global row index.
    pub seat_row: Vec<u32>,
    /// Reserved seats plus general-admission capacity.
    pub capacity: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SectionLayout {
    pub id: String,
    /// Some(capacity) for general admission.
    pub ga_capacity: Option<u32>,
    pub row_start: u32,
    pub row_end: u32,
    pub capacity: u32,
    pub price_cents: u64,
    /// Row label → global row index.
    pub row_by_label: BTreeMap<String, u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RowLayout {
    pub section: u32,
    pub label: String,
    pub seat_start: u32,
    pub seats: u32,
}

/// Free-seat index of one row: a bitset (bit i = seat i+1 free), the free
/// count, and the longest free run (valid when not dirty). Equality ignores
/// the lazily computed `max_run`/`dirty`/`best_for` cache, which depends on
/// when best-available last looked, not on the state.
#[derive(Clone, Debug, Default, Eq)]
pub(crate) struct RowFree {
    pub free: u32,
    pub max_run: u32,
    pub dirty: bool,
    pub bits: Vec<u64>,
    /// The last best-available answer for this row, valid when not dirty:
    /// `(count, Some((start, orphan)))`, or `(count, None)` when no block of
    /// `count` fits. Late in a sale most rows are unchanged between two
    /// requests, and re-running `best_in_row` on each of them was over a third
    /// of the leader's CPU in the flash-sale profile.
    pub best_for: Option<(u32, Option<(u32, bool)>)>,
}

impl PartialEq for RowFree {
    fn eq(&self, other: &Self) -> bool {
        self.free == other.free && self.bits == other.bits
    }
}

impl Event {
    /// A new event from a validated spec whose `id` is set.
    pub fn new(
        spec: EventSpec,
        created_index: u64,
        created_at_ms: u64,
        sale_opens_at_ms: Option<u64>,
    ) -> Event {
        let id = spec
            .id
            .clone()
            .expect("event spec id is filled in before Event::new");
        let reserved_seats: u64 = spec
            .sections
            .iter()
            .filter(|s| matches!(s, SectionSpec::Reserved { .. }))
            .map(|s| s.capacity())
            .sum();
        let queue = match &spec.waiting_room {
            Some(w) if w.enabled => Some(WaitingRoom::new(w.admit_batch)),
            _ => None,
        };
        let mut event = Event {
            id,
            counters: vec![SectionCounters::default(); spec.sections.len()],
            spec,
            created_index,
            created_at_ms,
            sale_opens_at_ms,
            sale: SaleState::NotOpen,
            opened_once: false,
            seats: vec![Seat::Available; reserved_seats as usize],
            queue,
            layout: Layout::default(),
            rows_free: Vec::new(),
        };
        event.rebuild_indexes();
        event
    }

    /// Recomputes `layout` and `rows_free` from the spec and the seat array.
    pub fn rebuild_indexes(&mut self) {
        let mut layout = Layout::default();
        let mut seat_start = 0u32;
        for (si, section) in self.spec.sections.iter().enumerate() {
            let row_start = layout.rows.len() as u32;
            let mut sl = SectionLayout {
                id: section.id().to_string(),
                price_cents: section.price_cents(),
                capacity: section.capacity() as u32,
                row_start,
                row_end: row_start,
                ..SectionLayout::default()
            };
            match section {
                SectionSpec::Reserved { rows, .. } => {
                    for row in rows {
                        let r = layout.rows.len() as u32;
                        sl.row_by_label.insert(row.label.clone(), r);
                        layout.rows.push(RowLayout {
                            section: si as u32,
                            label: row.label.clone(),
                            seat_start,
                            seats: row.seats,
                        });
                        layout
                            .seat_row
                            .extend(std::iter::repeat_n(r, row.seats as usize));
                        seat_start += row.seats;
                    }
                    sl.row_end = layout.rows.len() as u32;
                }
                SectionSpec::GeneralAdmission { capacity, .. } => sl.ga_capacity = Some(*capacity),
            }
            layout.capacity += sl.capacity;
            layout.section_by_id.insert(sl.id.clone(), si as u32);
            layout.sections.push(sl);
        }
        assert_eq!(
            seat_start as usize,
            self.seats.len(),
            "event {}: seat array does not match its layout",
            self.id
        );
        self.rows_free = layout
            .rows
            .iter()
            .map(|row| {
                let mut rf = RowFree {
                    bits: vec![0; row.seats.div_ceil(64) as usize],
                    dirty: true,
                    ..RowFree::default()
                };
                for i in 0..row.seats {
                    if self.seats[(row.seat_start + i) as usize] == Seat::Available {
                        rf.bits[(i / 64) as usize] |= 1 << (i % 64);
                        rf.free += 1;
                    }
                }
                rf
            })
            .collect();
        self.layout = layout;
    }

    /// Dense index of a public seat id, or None if it does not parse or exist.
    /// Cheap: two splits, two small ordered-map lookups, one integer parse.
    pub fn parse_seat(&self, seat_id: &str) -> Option<u32> {
        let (section, rest) = seat_id.split_once('-')?;
        let (row, number) = rest.rsplit_once('-')?;
        let si = *self.layout.section_by_id.get(section)?;
        let r = *self.layout.sections[si as usize].row_by_label.get(row)?;
        if number.is_empty() || number.len() > 4 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u32 = number.parse().ok()?;
        let row = &self.layout.rows[r as usize];
        if n == 0 || n > row.seats {
            return None;
        }
        Some(row.seat_start + n - 1)
    }

    /// Public id of a dense seat: `SECTION-ROW-NUMBER`.
    pub fn seat_id(&self, seat: u32) -> String {
        let row = &self.layout.rows[self.layout.seat_row[seat as usize] as usize];
        let section = &self.layout.sections[row.section as usize].id;
        let mut s = String::with_capacity(section.len() + row.label.len() + 6);
        s.push_str(section);
        s.push('-');
        s.push_str(&row.label);
        s.push('-');
        push_u32(&mut s, seat - row.seat_start + 1);
        s
    }

    pub fn section_of_seat(&self, seat: u32) -> u32 {
        self.layout.rows[self.layout.seat_row[seat as usize] as usize].section
    }

    pub fn seat_price_cents(&self, seat: u32) -> u64 {
        self.layout.sections[self.section_of_seat(seat) as usize].price_cents
    }

    /// Moves one reserved seat to `new`, keeping counters and the row index
    /// in step. The caller has checked the transition is allowed.
    pub fn set_seat(&mut self, seat: u32, new: Seat) {
        let old = self.seats[seat as usize];
        let r = self.layout.seat_row[seat as usize];
        let row = &self.layout.rows[r as usize];
        let counters = &mut self.counters[row.section as usize];
        match old {
            Seat::Available => {}
            Seat::Held(_) => counters.held -= 1,
            Seat::Booked(_) => counters.booked -= 1,
        }
        match new {
            Seat::Available => {}
            Seat::Held(_) => counters.held += 1,
            Seat::Booked(_) => counters.booked += 1,
        }
        let i = seat - row.seat_start;
        let rf = &mut self.rows_free[r as usize];
        let bit = 1u64 << (i % 64);
        let word = &mut rf.bits[(i / 64) as usize];
        let was_free = *word & bit != 0;
        let is_free = new == Seat::Available;
        if was_free != is_free {
            *word ^= bit;
            if is_free {
                rf.free += 1;
            } else {
                rf.free -= 1;
            }
            rf.dirty = true;
        }
        self.seats[seat as usize] = new;
    }

    /// Places (seats or GA units) neither held nor booked, in the whole event.
    pub fn available_units(&self) -> u32 {
        self.layout
            .sections
            .iter()
            .zip(&self.counters)
            .map(|(s, c)| s.capacity - c.held - c.booked)
            .sum()
    }

    /// Free reserved seats in one section, or in every reserved section
    /// (`None`): what best-available can choose from.
    pub fn reserved_available(&self, section: Option<u32>) -> u32 {
        match section {
            Some(si) => {
                let s = &self.layout.sections[si as usize];
                let c = &self.counters[si as usize];
                s.capacity - c.held - c.booked
            }
            None => self
                .layout
                .sections
                .iter()
                .zip(&self.counters)
                .filter(|(s, _)| s.ga_capacity.is_none())
                .map(|(s, c)| s.capacity - c.held - c.booked)
                .sum(),
        }
    }
}

fn push_u32(s: &mut String, mut n: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    s.push_str(std::str::from_utf8(&buf[i..]).expect("digits are ASCII"));
}
