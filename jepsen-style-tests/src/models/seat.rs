//! One seat of the booking store, as a sequential object.
//!
//! Owns: [`SeatModel`], its state [`SeatState`], and the projection of a
//! booking history onto seats ([`seat_partitions`], [`check_seats`]).
//!
//! A seat is `Available`, `Held` by one hold or `Booked` from one hold. A hold
//! is named by its `holder`, which the workload makes unique per hold
//! invocation, plus the server's `hold_id` once known: an `info` hold never
//! reveals its id, but a later read names its holder.
//!
//! | op | ok | refused (`fail` with a code) | unknown |
//! | --- | --- | --- | --- |
//! | hold | seat free (or its hold may lapse) → held | `seat_unavailable`: seat not available | free → held |
//! | release | held by this hold → available | `hold_expired`: the hold lapses | held by it → available |
//! | confirm | held by this hold → booked (again on a booked one: idempotent) | `hold_expired`: the hold lapses | held by it → booked |
//! | cancel | booked by this hold → available | nothing changes | booked by it → available |
//! | read | must match (a held seat may read available once its hold may lapse) | nothing | dropped |
//!
//! Expiry, the time-dependent part, is deliberately simple: a held seat *may*
//! lapse to available at any point, except that when both the hold's
//! `expires_at_ms` and the deciding apply's `at_ms` are known, it may lapse
//! only if `at_ms >= expires_at_ms` (log time, reported by the server). A
//! lapse is never forced, because an expired hold stays visible until the
//! leader's sweep. So this model does not prove that holds were honoured for
//! their whole TTL, nor that nothing was confirmed too late: the
//! `checkers::no_confirm_past_expiry` checker owns that. Hold extensions
//! (`BeginPayment`) are not modelled; they only make the check more lenient.
//!
//! Refusal codes other than the two above leave the seat unchanged and assert
//! nothing. Must not: read clocks; it sees only what the history reports.
//! Caveat: an operation on several seats is checked as its projection on each
//! seat: sound (a violation on one seat is a real violation) but not complete
//! (cross-seat atomicity is not checked here). A *refused* multi-seat
//! operation is left out: the refusal does not say which seat was taken.

use std::collections::BTreeMap;

use crate::booking::{
    is_expired, BookingCall, BookingId, BookingOp, BookingResult, BookingRet, HoldId, Refusal,
    SeatId, SeatView,
};
use crate::linearizability::{self, Budget, Model, Op, Outcome, PartitionedVerdict};

/// The state machine's refusal code for a hold on a seat that is not free.
pub const SEAT_UNAVAILABLE: &str = "seat_unavailable";
/// The state machine's refusal code for a release or confirm of a hold that lapsed.
pub const HOLD_EXPIRED: &str = "hold_expired";

/// What the model knows of a seat. `None` fields are not yet known.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SeatState {
    Available,
    Held {
        holder: String,
        hold_id: Option<HoldId>,
        expires_at_ms: Option<u64>,
    },
    Booked {
        holder: String,
        hold_id: Option<HoldId>,
        booking_id: Option<BookingId>,
    },
}

/// The model's output: an `ok` result or a refusal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SeatOutput {
    Ok(BookingRet),
    Refused(Refusal),
}

/// The sequential specification of one seat; see the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeatModel;

/// May a hold expiring at `expires_at_ms` have lapsed by log time `at_ms`?
fn may_lapse(expires_at_ms: Option<u64>, at_ms: Option<u64>) -> bool {
    match (expires_at_ms, at_ms) {
        (Some(expires), Some(at)) => is_expired(expires, at),
        _ => true,
    }
}

/// Does a possibly-unknown id agree with one seen now?
fn fits(known: Option<u64>, seen: u64) -> bool {
    known.is_none_or(|k| k == seen)
}

impl SeatState {
    fn held_by(&self, hold: &str, id: HoldId) -> bool {
        matches!(self, SeatState::Held { holder, hold_id, .. } if holder == hold && fits(*hold_id, id))
    }

    fn booked_by(&self, hold: &str, id: BookingId) -> bool {
        matches!(self, SeatState::Booked { holder, booking_id, .. } if holder == hold && fits(*booking_id, id))
    }

    fn expires_at_ms(&self) -> Option<u64> {
        match self {
            SeatState::Held { expires_at_ms, .. } => *expires_at_ms,
            _ => None,
        }
    }

    /// A release or confirm of our hold was refused as expired.
    fn after_expiry_refusal(&self, mine: bool, r: &Refusal) -> Option<SeatState> {
        if r.error == HOLD_EXPIRED && mine {
            may_lapse(self.expires_at_ms(), r.at_ms).then_some(SeatState::Available)
        } else {
            Some(self.clone())
        }
    }
}

impl Model for SeatModel {
    type State = SeatState;
    type Input = BookingCall;
    type Output = SeatOutput;

    fn init(&self) -> SeatState {
        SeatState::Available
    }

    fn step(
        &self,
        state: &SeatState,
        call: &BookingCall,
        output: Option<&SeatOutput>,
    ) -> Option<SeatState> {
        use SeatOutput::{Ok, Refused};
        use SeatState::{Available, Booked, Held};
        match call {
            BookingCall::Hold(args) => match output {
                Some(Ok(BookingRet::Held(h))) => {
                    let free = match state {
                        Available => true,
                        Held { expires_at_ms, .. } => may_lapse(*expires_at_ms, Some(h.at_ms)),
                        Booked { .. } => false,
                    };
                    free.then(|| Held {
                        holder: args.holder.clone(),
                        hold_id: Some(h.hold_id),
                        expires_at_ms: Some(h.expires_at_ms),
                    })
                }
                Some(Refused(r)) if r.error == SEAT_UNAVAILABLE => {
                    (*state != Available).then(|| state.clone())
                }
                Some(Refused(_)) => Some(state.clone()),
                // If it happened here it succeeded; a refusal here is the
                // same as never happening, which the search covers.
                None => (!matches!(state, Booked { .. })).then(|| Held {
                    holder: args.holder.clone(),
                    hold_id: None,
                    expires_at_ms: None,
                }),
                Some(Ok(_)) => None,
            },
            BookingCall::Release(r) => {
                let mine = state.held_by(&r.holder, r.hold_id);
                match output {
                    Some(Ok(BookingRet::Released(_))) | None => mine.then_some(Available),
                    Some(Refused(refusal)) => state.after_expiry_refusal(mine, refusal),
                    Some(Ok(_)) => None,
                }
            }
            BookingCall::Confirm(r) => {
                let mine = state.held_by(&r.holder, r.hold_id);
                let booked = |booking_id| Booked {
                    holder: r.holder.clone(),
                    hold_id: Some(r.hold_id),
                    booking_id,
                };
                match output {
                    Some(Ok(BookingRet::Confirmed(c))) => {
                        // A repeat on the booked seat is the dedupe returning
                        // the remembered result.
                        let repeat = state.booked_by(&r.holder, c.booking_id)
                            && matches!(state, Booked { hold_id, .. } if fits(*hold_id, r.hold_id));
                        (mine || repeat).then(|| booked(Some(c.booking_id)))
                    }
                    Some(Refused(refusal)) => state.after_expiry_refusal(mine, refusal),
                    None => mine.then(|| booked(None)),
                    Some(Ok(_)) => None,
                }
            }
            BookingCall::BeginPayment(r) => {
                let mine = state.held_by(&r.holder, r.hold_id);
                let pinned = |expires_at_ms| Held {
                    holder: r.holder.clone(),
                    hold_id: Some(r.hold_id),
                    expires_at_ms,
                };
                match output {
                    Some(Ok(BookingRet::PaymentBegun(p))) => {
                        mine.then(|| pinned(Some(p.expires_at_ms)))
                    }
                    Some(Refused(refusal)) => state.after_expiry_refusal(mine, refusal),
                    // If it happened here it succeeded (a refusal changes
                    // nothing, the same as never happening), moving the
                    // expiry to somewhere unknown.
                    None => mine.then(|| pinned(None)),
                    Some(Ok(_)) => None,
                }
            }
            BookingCall::Cancel(b) => {
                let mine = state.booked_by(&b.holder, b.booking_id);
                match output {
                    Some(Ok(BookingRet::Cancelled(_))) | None => mine.then_some(Available),
                    Some(Refused(_)) => Some(state.clone()),
                    Some(Ok(_)) => None,
                }
            }
            BookingCall::Read(_) => match output {
                Some(Ok(BookingRet::Read(read))) => match (&read.seat, state) {
                    (SeatView::Available, Available) => Some(Available),
                    (SeatView::Available, Held { expires_at_ms, .. }) => {
                        may_lapse(*expires_at_ms, read.at_ms).then_some(Available)
                    }
                    (SeatView::Held { hold_id, holder }, Held { expires_at_ms, .. })
                        if state.held_by(holder, *hold_id) =>
                    {
                        Some(Held {
                            holder: holder.clone(),
                            hold_id: Some(*hold_id),
                            expires_at_ms: *expires_at_ms,
                        })
                    }
                    (
                        SeatView::Booked {
                            booking_id,
                            hold_id,
                            holder,
                        },
                        Booked { hold_id: known, .. },
                    ) if state.booked_by(holder, *booking_id) && fits(*known, *hold_id) => {
                        Some(Booked {
                            holder: holder.clone(),
                            hold_id: Some(*hold_id),
                            booking_id: Some(*booking_id),
                        })
                    }
                    // The reader saw "taken" without a name: any holder fits.
                    (SeatView::HeldUnnamed, Held { .. }) => Some(state.clone()),
                    (SeatView::BookedUnnamed, Booked { .. }) => Some(state.clone()),
                    _ => None,
                },
                Some(Refused(_)) | None => Some(state.clone()),
                Some(Ok(_)) => None,
            },
        }
    }
}

/// Projects a booking history onto seats: each operation goes to every seat
/// it touches. `fail` operations without a refusal code are left out: they
/// did not happen and say nothing.
pub fn seat_partitions(ops: &[BookingOp]) -> BTreeMap<SeatId, Vec<Op<BookingCall, SeatOutput>>> {
    let mut parts: BTreeMap<SeatId, Vec<Op<BookingCall, SeatOutput>>> = BTreeMap::new();
    for op in ops {
        let outcome = match (&op.result, op.complete_ns) {
            // A refused hold of several seats says some seat was taken, not
            // which: projected onto each seat it would claim too much. It did
            // not happen, so leaving it out is sound.
            (BookingResult::Refused(_), _) if op.call.seats().len() > 1 => continue,
            (BookingResult::Ok(ret), Some(return_ns)) => Outcome::Returned {
                output: SeatOutput::Ok(ret.clone()),
                return_ns,
            },
            (BookingResult::Refused(r), Some(return_ns)) => Outcome::Returned {
                output: SeatOutput::Refused(r.clone()),
                return_ns,
            },
            (BookingResult::Failed, _) => continue,
            // An unknown read changes nothing; leaving it out saves search.
            (BookingResult::Unknown, _) if matches!(op.call, BookingCall::Read(_)) => continue,
            (BookingResult::Unknown, _) => Outcome::Unknown,
            (BookingResult::Ok(_) | BookingResult::Refused(_), None) => {
                unreachable!("a known result always has a completion time")
            }
        };
        for seat in op.call.seats() {
            parts.entry(seat.clone()).or_default().push(Op {
                id: op.id,
                process: op.process,
                input: op.call.clone(),
                outcome: outcome.clone(),
                call_ns: op.invoke_ns,
            });
        }
    }
    parts
}

/// Linearizability of every seat's sub-history against [`SeatModel`].
pub fn check_seats(ops: &[BookingOp], budget: &Budget) -> PartitionedVerdict<SeatId> {
    linearizability::check_partitioned(&SeatModel, seat_partitions(ops), budget)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::booking::{BookingRef, Held as HeldRet};
    use crate::booking::{Cancelled, Confirmed, HoldArgs, HoldRef, ReadArgs, Released, SeatRead};
    use crate::linearizability::Verdict;

    const SEAT: &str = "A-1-1";

    /// A tiny builder: operations on one seat, each given its interval.
    struct H(Vec<BookingOp>);

    impl H {
        fn new() -> Self {
            H(Vec::new())
        }
        fn op(mut self, call: BookingCall, result: BookingResult, t: (u64, u64)) -> Self {
            let known = !matches!(result, BookingResult::Unknown);
            self.0.push(BookingOp {
                id: self.0.len(),
                process: self.0.len() as u64,
                call,
                result,
                invoke_ns: t.0,
                complete_ns: known.then_some(t.1),
                index: None,
                request_id: None,
            });
            self
        }
        fn verdict(&self) -> Verdict {
            check_seats(&self.0, &Budget::default()).overall()
        }
    }

    fn hold(holder: &str) -> BookingCall {
        BookingCall::Hold(HoldArgs {
            seats: vec![SEAT.into()],
            holder: holder.into(),
        })
    }
    fn hold_ref(holder: &str, hold_id: u64) -> HoldRef {
        HoldRef {
            hold_id,
            holder: holder.into(),
            seats: vec![SEAT.into()],
        }
    }
    fn read() -> BookingCall {
        BookingCall::Read(ReadArgs { seat: SEAT.into() })
    }
    fn held(hold_id: u64, expires_at_ms: u64, at_ms: u64) -> BookingResult {
        BookingResult::Ok(BookingRet::Held(HeldRet {
            hold_id,
            expires_at_ms,
            at_ms,
        }))
    }
    fn saw(seat: SeatView, at_ms: u64) -> BookingResult {
        BookingResult::Ok(BookingRet::Read(SeatRead {
            seat,
            at_ms: Some(at_ms),
        }))
    }
    fn refused(code: &str, at_ms: u64) -> BookingResult {
        BookingResult::Refused(Refusal {
            error: code.into(),
            at_ms: Some(at_ms),
        })
    }
    fn confirmed(booking_id: u64, at_ms: u64) -> BookingResult {
        BookingResult::Ok(BookingRet::Confirmed(Confirmed {
            booking_id,
            hold_expires_at_ms: None,
            at_ms,
        }))
    }
    fn held_view(hold_id: u64, holder: &str) -> SeatView {
        SeatView::Held {
            hold_id,
            holder: holder.into(),
        }
    }

    #[test]
    fn a_begun_payment_keeps_the_seat_held_past_the_holds_first_expiry() {
        // Goal: a hold expiring at 1 000 may lapse by log time 5 000 (a new hold then succeeds), unless a begin-payment moved its expiry to 100 000 first.
        let other = || hold("b");
        let lapsed = H::new().op(hold("a"), held(1, 1_000, 0), (0, 1)).op(
            other(),
            held(2, 15_000, 5_000),
            (4, 5),
        );
        assert_eq!(lapsed.verdict(), Verdict::Linearizable);
        let paid = H::new()
            .op(hold("a"), held(1, 1_000, 0), (0, 1))
            .op(
                BookingCall::BeginPayment(hold_ref("a", 1)),
                BookingResult::Ok(BookingRet::PaymentBegun(crate::booking::PaymentBegun {
                    expires_at_ms: 100_000,
                })),
                (2, 3),
            )
            .op(other(), held(2, 15_000, 5_000), (4, 5));
        assert_ne!(paid.verdict(), Verdict::Linearizable);
    }

    #[test]
    fn refused_multi_seat_hold_does_not_claim_each_seat_taken() {
        // Goal: "some seat of A-1-1 and A-1-2 was taken" is not read as "A-1-1 was taken".
        let two = BookingCall::Hold(HoldArgs {
            seats: vec![SEAT.into(), "A-1-2".into()],
            holder: "b".into(),
        });
        let h = H::new().op(hold("a"), held(1, 1000, 5), (0, 1)).op(
            two,
            refused(SEAT_UNAVAILABLE, 10),
            (2, 3),
        );
        assert_eq!(h.verdict(), Verdict::Linearizable);
        let two = BookingCall::Hold(HoldArgs {
            seats: vec!["A-1-2".into(), SEAT.into()],
            holder: "c".into(),
        });
        let h = H::new()
            .op(read(), saw(SeatView::Available, 1), (0, 1))
            .op(two, refused(SEAT_UNAVAILABLE, 10), (2, 3))
            .op(read(), saw(SeatView::HeldUnnamed, 11), (4, 5));
        assert!(
            !h.verdict().is_linearizable(),
            "a read of an unnamed hold with no hold before it must fail"
        );
        let two = BookingCall::Hold(HoldArgs {
            seats: vec!["A-1-2".into(), SEAT.into()],
            holder: "d".into(),
        });
        // The case that used to fail: this seat free, the other one taken.
        let h = H::new().op(read(), saw(SeatView::Available, 1), (0, 1)).op(
            two,
            refused(SEAT_UNAVAILABLE, 10),
            (2, 3),
        );
        assert_eq!(h.verdict(), Verdict::Linearizable);
    }

    #[test]
    fn unnamed_reads_match_any_holder_of_the_right_kind() {
        // Goal: `held_unnamed` fits any live hold and `booked_unnamed` any booking, and not each other.
        let base = || H::new().op(hold("a"), held(1, 1000, 5), (0, 1));
        assert_eq!(
            base()
                .op(read(), saw(SeatView::HeldUnnamed, 6), (2, 3))
                .verdict(),
            Verdict::Linearizable
        );
        assert!(!base()
            .op(read(), saw(SeatView::BookedUnnamed, 6), (2, 3))
            .verdict()
            .is_linearizable());
        let booked = base().op(
            BookingCall::Confirm(hold_ref("a", 1)),
            confirmed(7, 20),
            (2, 3),
        );
        assert_eq!(
            booked
                .op(read(), saw(SeatView::BookedUnnamed, 21), (4, 5))
                .verdict(),
            Verdict::Linearizable
        );
    }

    #[test]
    fn hold_confirm_cancel_rebook_is_linearizable() {
        // Goal: the ordinary life of a seat, including a resale after a cancel, is accepted.
        let h = H::new()
            .op(hold("a"), held(1, 1000, 10), (0, 1))
            .op(
                BookingCall::Confirm(hold_ref("a", 1)),
                confirmed(7, 20),
                (2, 3),
            )
            .op(
                BookingCall::Cancel(BookingRef {
                    booking_id: 7,
                    holder: "a".into(),
                    seats: vec![SEAT.into()],
                }),
                BookingResult::Ok(BookingRet::Cancelled(Cancelled { at_ms: Some(30) })),
                (4, 5),
            )
            .op(hold("b"), held(2, 1040, 40), (6, 7))
            .op(
                BookingCall::Release(hold_ref("b", 2)),
                BookingResult::Ok(BookingRet::Released(Released { at_ms: Some(50) })),
                (8, 9),
            )
            .op(read(), saw(SeatView::Available, 60), (10, 11));
        assert_eq!(h.verdict(), Verdict::Linearizable);
    }

    #[test]
    fn a_second_hold_before_the_first_expires_is_rejected() {
        // Goal: two holds granted on one seat while the first is live (log time) is caught.
        let h = H::new().op(hold("a"), held(1, 1000, 10), (0, 1)).op(
            hold("b"),
            held(2, 1500, 500),
            (2, 3),
        );
        assert!(matches!(h.verdict(), Verdict::NotLinearizable(_)));
        // The same hold after the expiry is fine.
        let h = H::new().op(hold("a"), held(1, 1000, 10), (0, 1)).op(
            hold("b"),
            held(2, 2000, 1000),
            (2, 3),
        );
        assert_eq!(h.verdict(), Verdict::Linearizable);
    }

    #[test]
    fn a_booked_seat_never_reads_available_or_takes_a_hold() {
        // Goal: a booking is permanent without a cancel, whatever the expiry times.
        let base = || {
            H::new().op(hold("a"), held(1, 1000, 10), (0, 1)).op(
                BookingCall::Confirm(hold_ref("a", 1)),
                confirmed(7, 20),
                (2, 3),
            )
        };
        assert!(matches!(
            base()
                .op(read(), saw(SeatView::Available, 5000), (4, 5))
                .verdict(),
            Verdict::NotLinearizable(_)
        ));
        assert!(matches!(
            base().op(hold("b"), held(2, 9000, 5000), (4, 5)).verdict(),
            Verdict::NotLinearizable(_)
        ));
        assert!(matches!(
            base()
                .op(hold("b"), refused(SEAT_UNAVAILABLE, 5000), (4, 5))
                .verdict(),
            Verdict::Linearizable
        ));
    }

    #[test]
    fn a_lapsed_hold_does_not_come_back() {
        // Goal: after a read shows the seat available, the old hold can be neither read nor confirmed.
        let base = || {
            H::new().op(hold("a"), held(1, 1000, 10), (0, 1)).op(
                read(),
                saw(SeatView::Available, 1200),
                (2, 3),
            )
        };
        assert!(matches!(
            base()
                .op(read(), saw(held_view(1, "a"), 1300), (4, 5))
                .verdict(),
            Verdict::NotLinearizable(_)
        ));
        assert!(matches!(
            base()
                .op(
                    BookingCall::Confirm(hold_ref("a", 1)),
                    confirmed(7, 1300),
                    (4, 5)
                )
                .verdict(),
            Verdict::NotLinearizable(_)
        ));
        // Reading it available before its expiry is a violation too.
        let early = H::new().op(hold("a"), held(1, 1000, 10), (0, 1)).op(
            read(),
            saw(SeatView::Available, 500),
            (2, 3),
        );
        assert!(matches!(early.verdict(), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn an_info_hold_may_surface_later_through_a_read_or_never() {
        // Goal: an unknown hold can be revealed by a read naming its holder, or vanish.
        let revealed = H::new()
            .op(hold("a"), BookingResult::Unknown, (0, 0))
            .op(read(), saw(SeatView::Available, 5), (1, 2))
            .op(read(), saw(held_view(3, "a"), 8), (3, 4));
        assert_eq!(revealed.verdict(), Verdict::Linearizable);
        let never = H::new()
            .op(hold("a"), BookingResult::Unknown, (0, 0))
            .op(hold("b"), held(1, 1000, 10), (1, 2))
            .op(read(), saw(held_view(1, "b"), 20), (3, 4));
        assert_eq!(never.verdict(), Verdict::Linearizable);
        // But a read cannot name a holder that nobody asked for.
        let phantom = H::new().op(read(), saw(held_view(3, "zed"), 8), (3, 4));
        assert!(matches!(phantom.verdict(), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn refusals_are_observations() {
        // Goal: "seat unavailable" on a free seat and "hold expired" on a live hold are both caught.
        let free_refused = H::new().op(hold("a"), refused(SEAT_UNAVAILABLE, 5), (0, 1));
        assert!(matches!(
            free_refused.verdict(),
            Verdict::NotLinearizable(_)
        ));
        let live_expired = H::new().op(hold("a"), held(1, 1000, 10), (0, 1)).op(
            BookingCall::Confirm(hold_ref("a", 1)),
            refused(HOLD_EXPIRED, 500),
            (2, 3),
        );
        assert!(matches!(
            live_expired.verdict(),
            Verdict::NotLinearizable(_)
        ));
        let late_expired = H::new()
            .op(hold("a"), held(1, 1000, 10), (0, 1))
            .op(
                BookingCall::Confirm(hold_ref("a", 1)),
                refused(HOLD_EXPIRED, 1000),
                (2, 3),
            )
            .op(hold("b"), held(2, 2100, 1100), (4, 5));
        assert_eq!(late_expired.verdict(), Verdict::Linearizable);
    }

    #[test]
    fn multi_seat_operations_are_checked_on_each_seat() {
        // Goal: a two-seat hold conflicts with a later single-seat hold on either seat.
        let two = BookingCall::Hold(HoldArgs {
            seats: vec!["A-1-1".into(), "A-1-2".into()],
            holder: "a".into(),
        });
        let other = BookingCall::Hold(HoldArgs {
            seats: vec!["A-1-2".into()],
            holder: "b".into(),
        });
        let h = H::new()
            .op(two, held(1, 1000, 10), (0, 1))
            .op(other, held(2, 1100, 100), (2, 3));
        let v = check_seats(&h.0, &Budget::default());
        assert_eq!(v.keys.len(), 2);
        assert_eq!(v.keys[0].1, Verdict::Linearizable);
        let (seat, evidence) = v.violations().next().expect("seat A-1-2 is double-held");
        assert_eq!((seat.as_str(), evidence.blocked), ("A-1-2", 1));
    }
}
