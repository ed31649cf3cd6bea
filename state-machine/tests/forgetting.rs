//! Goal: the exactly-once table never forgets an outcome younger than its
//! TTL in real time, whatever the leaders' clocks do to log time (jumps of
//! an hour forward or back, leaders changing), when forgetting is driven
//! the way a leader drives it: `ForgetRequests` with the cut-off of its own
//! `ForgetCutoff`, sampled against its monotonic clock.

use proptest::prelude::*;
use state_machine::forgetting::ForgetCutoff;
use state_machine::*;

const TTL_MS: u64 = state_machine::limits::DEDUPE_TTL_MS_MIN;
const HOUR_MS: i64 = 3_600_000;

#[derive(Clone, Debug)]
enum Op {
    /// Real time passes.
    Wait { ms: u64 },
    /// The leader's wall clock is set off by this much from real time.
    Skew { offset_ms: i64 },
    /// A client sends a new request.
    Send,
    /// The leader samples its applied log time and, if its cut-off allows,
    /// proposes `ForgetRequests`.
    Forget,
    /// Another node takes over: a fresh sampler (its samples are its own).
    NewLeader,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..20_000u64).prop_map(|ms| Op::Wait { ms }),
        1 => prop_oneof![
            Just(0i64),
            Just(HOUR_MS),
            Just(-HOUR_MS),
            -2 * HOUR_MS..2 * HOUR_MS
        ]
        .prop_map(|offset_ms| Op::Skew { offset_ms }),
        4 => Just(Op::Send),
        4 => Just(Op::Forget),
        1 => Just(Op::NewLeader),
    ]
}

struct Sim {
    state: BookingState,
    index: u64,
    /// Real (and every node's monotonic) time, ms.
    now_ms: u64,
    offset_ms: i64,
    sampler: ForgetCutoff,
    next_request_id: u64,
    /// (request id, real time its entry was applied).
    applied: Vec<(u64, u64)>,
}

impl Sim {
    /// The leader's stamp now: real time plus its clock's offset (far from
    /// zero, so no hour back reaches below it).
    fn stamp_ms(&self) -> u64 {
        ((10 * HOUR_MS as u64 + self.now_ms) as i64 + self.offset_ms) as u64
    }

    fn apply(&mut self, request: Request) -> Outcome {
        self.index += 1;
        let out = self.state.apply(
            self.index,
            &Batch {
                stamp_ms: self.stamp_ms(),
                requests: vec![request],
            },
        );
        self.state.check_invariants().expect("invariants hold");
        out.outcomes.into_iter().next().expect("one outcome")
    }

    fn sample(&mut self) {
        let ttl = self.state.settings().dedupe_ttl_ms;
        self.sampler.record(self.now_ms, self.state.clock_ms(), ttl);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_outcome_is_forgotten_inside_its_ttl(ops in prop::collection::vec(op(), 1..300)) {
        let mut sim = Sim {
            state: BookingState::new(),
            index: 0,
            now_ms: 0,
            offset_ms: 0,
            sampler: ForgetCutoff::new(),
            next_request_id: 1,
            applied: Vec::new(),
        };
        let configured = sim.apply(Request {
            client_id: 0,
            request_id: 0,
            command: Command::Configure(Settings {
                dedupe_ttl_ms: TTL_MS,
                ..Settings::default()
            }),
        });
        prop_assert!(configured.is_ok(), "{configured:?}");
        for op in ops {
            match op {
                Op::Wait { ms } => sim.now_ms += ms,
                Op::Skew { offset_ms } => sim.offset_ms = offset_ms,
                Op::Send => {
                    let request_id = sim.next_request_id;
                    sim.next_request_id += 1;
                    let outcome = sim.apply(Request {
                        client_id: 7,
                        request_id,
                        command: Command::AckOutbox { up_to: 0 },
                    });
                    prop_assert!(outcome.is_ok(), "{outcome:?}");
                    sim.applied.push((request_id, sim.now_ms));
                }
                Op::Forget => {
                    sim.sample();
                    if let Some(before_ms) = sim.sampler.cutoff(sim.now_ms, TTL_MS) {
                        if sim.state.forget_due(before_ms, sim.stamp_ms()) {
                            let forgot = sim.apply(Request {
                                client_id: 0,
                                request_id: 0,
                                command: Command::ForgetRequests { before_ms },
                            });
                            prop_assert!(forgot.is_ok(), "{forgot:?}");
                        }
                    }
                }
                Op::NewLeader => sim.sampler = ForgetCutoff::new(),
            }
            sim.sample();
            for &(request_id, at_ms) in &sim.applied {
                if sim.now_ms - at_ms < TTL_MS {
                    prop_assert!(
                        sim.state.remembers(7, request_id),
                        "request {request_id} applied at {at_ms} ms forgotten at {} ms (TTL {TTL_MS})",
                        sim.now_ms
                    );
                }
            }
        }
    }

    #[test]
    fn outcomes_a_ttl_old_are_forgotten_eventually(skew in -2 * HOUR_MS..2 * HOUR_MS) {
        // Liveness: with a leader that keeps sampling and an otherwise idle
        // log (nothing else moves log time), everything sent is forgotten
        // once it is a TTL old: the ForgetRequests entry's own stamp moves
        // log time.
        let mut sim = Sim {
            state: BookingState::new(),
            index: 0,
            now_ms: 0,
            offset_ms: skew,
            sampler: ForgetCutoff::new(),
            next_request_id: 1,
            applied: Vec::new(),
        };
        for request_id in 1..=10 {
            let sent = sim.apply(Request { client_id: 7, request_id, command: Command::AckOutbox { up_to: 0 } });
            prop_assert!(sent.is_ok());
            sim.sample();
            sim.now_ms += 1_000;
        }
        let ttl = sim.state.settings().dedupe_ttl_ms;
        for _ in 0..(2 * ttl / 1_000 + 2) {
            sim.now_ms += 1_000;
            sim.sample();
            if let Some(before_ms) = sim.sampler.cutoff(sim.now_ms, ttl) {
                if sim.state.forget_due(before_ms, sim.stamp_ms()) {
                    let forgot = sim.apply(Request { client_id: 0, request_id: 0, command: Command::ForgetRequests { before_ms } });
                    prop_assert!(forgot.is_ok());
                }
            }
        }
        prop_assert_eq!(sim.state.remembered_requests(), 0);
    }
}
