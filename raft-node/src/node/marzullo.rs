//! Marzullo's algorithm: the interval that the most sources agree on.
//!
//! Owns: [`agreement`], a pure function over source intervals (each "the
//! true time lies in `[lower_ms, upper_ms]`"), used by the leader to find
//! cluster time (`clock.rs`). Must not: read a clock, know about peers or
//! RPCs, or pick a value inside the interval (its caller decides).
//!
//! As in TigerBeetle's cluster time: sort every interval's ends, sweep
//! counting how many intervals are open, and keep the stretch where that
//! count peaks. Ends are inclusive (touching intervals agree on their
//! common point). When two separate stretches share the peak count the
//! answer is ambiguous and is reported as such: the caller then trusts no
//! agreement rather than pick one side.

/// One source's claim: the true value lies in `[lower_ms, upper_ms]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub lower_ms: i64,
    pub upper_ms: i64,
}

/// The stretch the most sources agree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreement {
    pub lower_ms: i64,
    pub upper_ms: i64,
    /// How many source intervals contain the whole stretch.
    pub sources: usize,
    /// Another, separate stretch is contained in as many intervals.
    pub ambiguous: bool,
}

/// The smallest interval contained in the largest number of `intervals`
/// (Marzullo), or `None` for no intervals. An interval with
/// `lower_ms > upper_ms` is a programming error.
pub fn agreement(intervals: &[Interval]) -> Option<Agreement> {
    if intervals.is_empty() {
        return None;
    }
    // (value, kind): kind 0 opens, 1 closes, so at equal values an interval
    // opens before another closes (inclusive ends).
    let mut ends: Vec<(i64, u8)> = Vec::with_capacity(intervals.len() * 2);
    for i in intervals {
        assert!(
            i.lower_ms <= i.upper_ms,
            "interval [{}, {}] is inverted",
            i.lower_ms,
            i.upper_ms
        );
        ends.push((i.lower_ms, 0));
        ends.push((i.upper_ms, 1));
    }
    ends.sort_unstable();
    let mut open = 0usize;
    let mut best = 0usize;
    let mut best_at = (0i64, 0i64);
    let mut ambiguous = false;
    for (k, &(value, kind)) in ends.iter().enumerate() {
        if kind == 0 {
            open += 1;
            // The stretch runs from here to the next end.
            let next = ends[k + 1].0;
            if open > best {
                best = open;
                best_at = (value, next);
                ambiguous = false;
            } else if open == best && value > best_at.1 {
                ambiguous = true;
            }
        } else {
            open -= 1;
        }
    }
    Some(Agreement {
        lower_ms: best_at.0,
        upper_ms: best_at.1,
        sources: best,
        ambiguous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn iv(lower_ms: i64, upper_ms: i64) -> Interval {
        Interval { lower_ms, upper_ms }
    }

    fn containing(intervals: &[Interval], lo: i64, hi: i64) -> usize {
        intervals
            .iter()
            .filter(|i| i.lower_ms <= lo && hi <= i.upper_ms)
            .count()
    }

    // Goal: the textbook cases: agreement of all, one liar outvoted, touching ends, and a split that is reported ambiguous.
    #[test]
    fn known_cases() {
        let a = agreement(&[iv(8, 12), iv(11, 13), iv(10, 12)]).unwrap();
        assert_eq!((a.lower_ms, a.upper_ms, a.sources), (11, 12, 3));
        assert!(!a.ambiguous);
        // One clock an hour ahead is outvoted by two that agree.
        let hour = 3_600_000;
        let a = agreement(&[iv(hour - 500, hour + 500), iv(-500, 500), iv(-400, 600)]).unwrap();
        assert_eq!((a.lower_ms, a.upper_ms, a.sources), (-400, 500, 2));
        assert!(!a.ambiguous);
        // Touching ends agree on the shared point.
        let a = agreement(&[iv(0, 10), iv(10, 20)]).unwrap();
        assert_eq!((a.lower_ms, a.upper_ms, a.sources), (10, 10, 2));
        // Two pairs disagree: two stretches of 2, ambiguous.
        let a = agreement(&[iv(0, 1), iv(0, 1), iv(5, 6), iv(5, 6)]).unwrap();
        assert_eq!(a.sources, 2);
        assert!(a.ambiguous);
        assert_eq!(agreement(&[]), None);
    }

    fn intervals() -> impl Strategy<Value = Vec<Interval>> {
        prop::collection::vec(
            (-50i64..50, 0i64..30).prop_map(|(lo, w)| iv(lo, lo + w)),
            1..8,
        )
    }

    proptest! {
        // Goal: the answer is contained in exactly `sources` intervals, no point anywhere is in more, and it is flagged ambiguous exactly when a point outside it is in as many.
        #[test]
        fn agreement_is_the_best_stretch(intervals in intervals()) {
            let a = agreement(&intervals).unwrap();
            prop_assert!(a.lower_ms <= a.upper_ms);
            prop_assert_eq!(containing(&intervals, a.lower_ms, a.upper_ms), a.sources);
            for x in -60i64..90 {
                prop_assert!(containing(&intervals, x, x) <= a.sources, "point {} beats {:?}", x, a);
            }
            // Ambiguous exactly when a point outside the stretch is in as
            // many intervals.
            let rival = (-60i64..90)
                .filter(|x| *x < a.lower_ms || *x > a.upper_ms)
                .any(|x| containing(&intervals, x, x) == a.sources);
            prop_assert_eq!(a.ambiguous, rival, "{:?} for {:?}", a, intervals);
        }
    }
}
