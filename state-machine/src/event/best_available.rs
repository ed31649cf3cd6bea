//! Best-available: choosing `count` seats for a hold from the free-seat index.
//!
//! Owns: [`Event::find_best`] and the row scan behind it (free runs in a
//! row's bitset, the best block of a row, the non-adjacent fallback), and the
//! upkeep of each row's lazily refreshed `max_run` and `best_for` cache.
//! Must not: change a seat (the caller takes the chosen seats through
//! `set_seat`), decide whether a hold is allowed (that is `state`), or depend
//! on anything but the seat array: the answer for a given seat array is
//! always the same, cache or no cache.
//!
//! Rules (DESIGN §3, ARCHITECTURE.md): sections and rows in definition order,
//! first is best; within a row the block closest to the centre, ties to the
//! left; a placement that strands a single free seat only when no row offers
//! one that does not.

use super::Event;

/// A placement found by best-available.
struct Candidate {
    start: u32,
    orphan: bool,
    distance: u32,
}

impl Event {
    /// Best-available: `count` adjacent seats in one row of `section` (or of
    /// every reserved section, in definition order). Rows in definition order
    /// are better first; within a row the block closest to the centre wins
    /// (ties: the leftmost). A placement that leaves a single free seat
    /// stranded next to it is taken only when no row offers one that does
    /// not. With `allow_non_adjacent`, falls back to the free seats closest to
    /// each row's centre, best rows first. Err(available) when impossible.
    ///
    /// Cost: O(rows in scope) to skip rows whose free count or longest free
    /// run is too small, plus a word scan of the rows that could fit.
    pub fn find_best(
        &mut self,
        count: u32,
        section: Option<u32>,
        allow_non_adjacent: bool,
    ) -> Result<Vec<u32>, u32> {
        let available = self.reserved_available(section);
        let (row_start, row_end) = match section {
            Some(si) => {
                let s = &self.layout.sections[si as usize];
                (s.row_start, s.row_end)
            }
            None => (0, self.layout.rows.len() as u32),
        };
        if available < count {
            return Err(available);
        }
        // (row, start) of the first orphan-making placement, used only when
        // no row has an orphan-free one.
        let mut fallback: Option<(u32, u32)> = None;
        for r in row_start..row_end {
            let rf = &mut self.rows_free[r as usize];
            if rf.free < count {
                continue;
            }
            if rf.dirty {
                rf.max_run = longest_run(&rf.bits, self.layout.rows[r as usize].seats);
                rf.best_for = None;
                rf.dirty = false;
            }
            if rf.max_run < count {
                continue;
            }
            let best = match rf.best_for {
                Some((cached_count, best)) if cached_count == count => best,
                _ => {
                    let best = best_in_row(&rf.bits, self.layout.rows[r as usize].seats, count)
                        .map(|c| (c.start, c.orphan));
                    rf.best_for = Some((count, best));
                    best
                }
            };
            if let Some((start, orphan)) = best {
                if !orphan {
                    return Ok(self.block(r, start, count));
                }
                if fallback.is_none() {
                    fallback = Some((r, start));
                }
            }
        }
        if let Some((row, start)) = fallback {
            return Ok(self.block(row, start, count));
        }
        if !allow_non_adjacent {
            return Err(available);
        }
        let mut chosen = Vec::with_capacity(count as usize);
        for r in row_start..row_end {
            let rf = &self.rows_free[r as usize];
            if rf.free == 0 {
                continue;
            }
            let row = &self.layout.rows[r as usize];
            let mut free: Vec<u32> = (0..row.seats)
                .filter(|i| rf.bits[(i / 64) as usize] & (1 << (i % 64)) != 0)
                .collect();
            free.sort_by_key(|&i| ((2 * i + 1).abs_diff(row.seats), i));
            for i in free {
                chosen.push(row.seat_start + i);
                if chosen.len() == count as usize {
                    chosen.sort_unstable();
                    return Ok(chosen);
                }
            }
        }
        unreachable!(
            "event {}: section counters say {available} free seats but rows have fewer",
            self.id
        )
    }

    fn block(&self, row: u32, start: u32, count: u32) -> Vec<u32> {
        let base = self.layout.rows[row as usize].seat_start + start;
        (base..base + count).collect()
    }
}

fn bit(bits: &[u64], i: u32) -> bool {
    bits[(i / 64) as usize] & (1 << (i % 64)) != 0
}

/// Next index >= from (and < len) whose bit equals `want`, or len.
fn next_with(bits: &[u64], from: u32, len: u32, want: bool) -> u32 {
    let mut i = from;
    while i < len {
        let w = (i / 64) as usize;
        let word = if want { bits[w] } else { !bits[w] };
        let masked = word & (!0u64 << (i % 64));
        if masked != 0 {
            return (w as u32 * 64 + masked.trailing_zeros()).min(len);
        }
        i = (w as u32 + 1) * 64;
    }
    len
}

/// Free runs of a row as (start, end) pairs, end exclusive.
fn runs(bits: &[u64], len: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let start = next_with(bits, pos, len, true);
        if start >= len {
            return None;
        }
        let end = next_with(bits, start, len, false);
        pos = end;
        Some((start, end))
    })
}

fn longest_run(bits: &[u64], len: u32) -> u32 {
    runs(bits, len).map(|(s, e)| e - s).max().unwrap_or(0)
}

/// The best block of `count` in one row: orphan-free first, then closest to
/// the centre, then leftmost. Distance is doubled to stay in integers.
fn best_in_row(bits: &[u64], seats: u32, count: u32) -> Option<Candidate> {
    let mut best: Option<Candidate> = None;
    let ideal = (seats - count) / 2;
    for (s, e) in runs(bits, seats) {
        if e - s < count {
            continue;
        }
        let last = e - count;
        let base = ideal.clamp(s, last);
        let mut consider = |p: u32| {
            if p < s || p > last {
                return;
            }
            let left_gap = p - s;
            let right_gap = e - (p + count);
            let orphan = left_gap == 1 || right_gap == 1;
            let distance = (2 * p + count).abs_diff(seats);
            let better = match &best {
                None => true,
                Some(b) => (orphan, distance, p) < (b.orphan, b.distance, b.start),
            };
            if better {
                best = Some(Candidate {
                    start: p,
                    orphan,
                    distance,
                });
            }
        };
        // The forbidden (orphan-making) starts are s+1 and last-1, so the best
        // allowed start is within two of the clamped centre or at an end.
        for p in [
            base,
            base + 1,
            base.saturating_sub(1),
            base + 2,
            base.saturating_sub(2),
            s,
            last,
        ] {
            consider(p);
        }
    }
    debug_assert!(best
        .as_ref()
        .is_none_or(|b| (b.start..b.start + count).all(|i| bit(bits, i))));
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Seat;
    use crate::spec::EventSpec;
    use proptest::prelude::*;

    fn spec(rows: u32, seats: u32) -> EventSpec {
        serde_json::from_value(serde_json::json!({
            "id": "e", "name": "E", "venue": "V", "starts_at": "2030-01-01T20:00:00Z",
            "sections": [{"kind": "reserved", "id": "A", "name": "A", "price_cents": 1,
                "rows": (1..=rows).map(|r| serde_json::json!({"label": r.to_string(), "seats": seats})).collect::<Vec<_>>()}]
        }))
        .expect("test spec parses")
    }

    proptest! {
        /// Goal: the per-row cache of best-available answers never changes an
        /// answer: after any sequence of seat changes and searches, a search
        /// gives the same seats as on a copy whose caches were all dropped.
        #[test]
        fn cached_best_available_equals_a_fresh_search(
            steps in proptest::collection::vec((0u32..3, 0u32..40, 1u32..5, any::<bool>()), 1..200)
        ) {
            let mut ev = Event::new(spec(4, 10), 1, 0, None);
            for (kind, seat, count, non_adjacent) in steps {
                match kind {
                    0 => ev.set_seat(seat, Seat::Held(1)),
                    1 => ev.set_seat(seat, Seat::Available),
                    _ => {
                        let mut fresh = ev.clone();
                        for rf in &mut fresh.rows_free {
                            rf.dirty = true;
                            rf.best_for = None;
                        }
                        let cached = ev.find_best(count, None, non_adjacent);
                        prop_assert_eq!(cached.clone(), fresh.find_best(count, None, non_adjacent));
                        if let Ok(seats) = cached {
                            for s in seats {
                                ev.set_seat(s, Seat::Held(2));
                            }
                        }
                    }
                }
            }
        }
    }

    fn bits_of(pattern: &str) -> (Vec<u64>, u32) {
        let len = pattern.len() as u32;
        let mut bits = vec![0u64; (len as usize).div_ceil(64)];
        for (i, c) in pattern.chars().enumerate() {
            if c == '.' {
                bits[i / 64] |= 1 << (i % 64);
            }
        }
        (bits, len)
    }

    #[test]
    fn best_in_row_prefers_centre_and_avoids_orphans() {
        // Goal: the block is centred, and a placement leaving one stranded seat loses.
        let (bits, len) = bits_of("..........");
        let c = best_in_row(&bits, len, 2).unwrap();
        assert_eq!((c.start, c.orphan), (4, false));
        // Free run of 4 at the left: taking 2 in its middle would strand seats.
        let (bits, len) = bits_of("....XXXXXX");
        let c = best_in_row(&bits, len, 2).unwrap();
        assert!(!c.orphan);
        assert!(c.start == 0 || c.start == 2);
        // A run of exactly count+1 cannot avoid an orphan.
        let (bits, len) = bits_of("XXX...XXXX");
        assert!(best_in_row(&bits, len, 2).unwrap().orphan);
        assert_eq!(longest_run(&bits, len), 3);
    }

    #[test]
    fn runs_cross_word_boundaries() {
        // Goal: free runs spanning two 64-bit words are found whole.
        let pattern: String = (0..130)
            .map(|i| if (60..70).contains(&i) { '.' } else { 'X' })
            .collect();
        let (bits, len) = bits_of(&pattern);
        assert_eq!(runs(&bits, len).collect::<Vec<_>>(), vec![(60, 70)]);
    }
}
