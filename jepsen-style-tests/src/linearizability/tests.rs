//! Unit and property tests of the WGL search, on the compare-and-set register.

use super::*;
use crate::models::register::{CasRegister, RegisterOp, RegisterRet};
use proptest::prelude::*;

type RegOp = Op<RegisterOp<i64>, RegisterRet<i64>>;

fn op(
    id: usize,
    input: RegisterOp<i64>,
    output: Option<RegisterRet<i64>>,
    call_ns: u64,
    return_ns: u64,
) -> RegOp {
    Op {
        id,
        process: id as u64,
        input,
        outcome: match output {
            Some(output) => Outcome::Returned { output, return_ns },
            None => Outcome::Unknown,
        },
        call_ns,
    }
}

fn write(id: usize, v: i64, t: (u64, u64)) -> RegOp {
    op(id, RegisterOp::Write(v), Some(RegisterRet::Done), t.0, t.1)
}
fn write_info(id: usize, v: i64, call_ns: u64) -> RegOp {
    op(id, RegisterOp::Write(v), None, call_ns, 0)
}
fn read(id: usize, v: Option<i64>, t: (u64, u64)) -> RegOp {
    op(id, RegisterOp::Read, Some(RegisterRet::Value(v)), t.0, t.1)
}
fn cas(id: usize, from: i64, to: i64, t: (u64, u64)) -> RegOp {
    op(
        id,
        RegisterOp::Cas { from, to },
        Some(RegisterRet::Done),
        t.0,
        t.1,
    )
}

fn verdict(ops: &[RegOp]) -> Verdict {
    check(&CasRegister::default(), ops, &Budget::default())
}

#[test]
fn sequential_history_is_linearizable() {
    // Goal: the plain sequential case is accepted.
    let h = [
        write(0, 1, (0, 1)),
        read(1, Some(1), (2, 3)),
        cas(2, 1, 2, (4, 5)),
        read(3, Some(2), (6, 7)),
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

#[test]
fn empty_history_is_linearizable() {
    // Goal: nothing to place is trivially fine (and does not trip the search).
    assert_eq!(verdict(&[]), Verdict::Linearizable);
}

#[test]
fn stale_read_is_rejected_with_evidence() {
    // Goal: a read after an acknowledged write that misses it is caught, and the evidence names it.
    let h = [write(0, 1, (0, 1)), read(1, None, (2, 3))];
    let Verdict::NotLinearizable(e) = verdict(&h) else {
        panic!("stale read accepted");
    };
    assert_eq!(e.linearized, vec![0]);
    assert_eq!(e.blocked, 1);
    assert_eq!(e.candidates, vec![1]);
    assert_eq!(e.state, "Some(1)");
}

#[test]
fn concurrent_read_may_see_either_value() {
    // Goal: a read overlapping a write may return the old or the new value.
    for seen in [None, Some(1)] {
        let h = [write(0, 1, (0, 10)), read(1, seen, (2, 3))];
        assert_eq!(verdict(&h), Verdict::Linearizable, "read saw {seen:?}");
    }
}

#[test]
fn reads_may_not_go_back_in_time() {
    // Goal: once a later read saw the new value, a read strictly after it cannot see the old one.
    let h = [
        write(0, 1, (0, 10)),
        read(1, Some(1), (1, 2)),
        read(2, None, (3, 4)),
    ];
    assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
}

#[test]
fn info_write_may_take_effect_late() {
    // Goal: an unknown write can land long after its invoke, after reads that missed it.
    let h = [
        write_info(0, 1, 0),
        read(1, None, (10, 11)),
        read(2, Some(1), (20, 21)),
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

#[test]
fn info_write_may_never_happen() {
    // Goal: an unknown write that no read ever sees can be dropped.
    let h = [
        write(0, 2, (0, 1)),
        write_info(1, 1, 2),
        read(2, Some(2), (10, 11)),
        read(3, Some(2), (20, 21)),
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

#[test]
fn info_cas_that_can_never_apply_is_dropped() {
    // Goal: an unknown op that fits nowhere, not even last, is taken never to have happened.
    let h = [
        write(0, 1, (0, 1)),
        op(1, RegisterOp::Cas { from: 5, to: 6 }, None, 2, 0),
        read(2, Some(1), (5, 6)),
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

#[test]
fn info_write_cannot_take_effect_before_its_invoke() {
    // Goal: a value read before the only write of it was invoked is rejected.
    let h = [read(0, Some(1), (0, 1)), write_info(1, 1, 2)];
    assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
}

#[test]
fn info_write_once_seen_cannot_be_undone() {
    // Goal: after a read saw the unknown write, a later read of the old value is rejected.
    let h = [
        write_info(0, 1, 0),
        read(1, Some(1), (5, 6)),
        read(2, None, (10, 11)),
    ];
    assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
}

#[test]
fn info_cas_applies_only_where_its_compare_holds() {
    // Goal: an unknown cas can explain a value only if the register held `from` at some point after its invoke.
    let ok = [
        write(0, 1, (0, 1)),
        op(1, RegisterOp::Cas { from: 1, to: 2 }, None, 2, 0),
        read(2, Some(2), (5, 6)),
    ];
    assert_eq!(verdict(&ok), Verdict::Linearizable);
    let bad = [
        write(0, 3, (0, 1)),
        op(1, RegisterOp::Cas { from: 1, to: 2 }, None, 2, 0),
        read(2, Some(2), (5, 6)),
    ];
    assert!(matches!(verdict(&bad), Verdict::NotLinearizable(_)));
}

#[test]
fn touching_operations_count_as_concurrent() {
    // Goal: a call at the very instant of another's return may be ordered either way.
    let h = [write(0, 1, (0, 5)), read(1, None, (5, 6))];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

#[test]
fn exhausted_budget_yields_unknown_never_a_verdict() {
    // Goal: running out of steps or cached states says Unknown, on both a good and a bad history.
    let good = [
        write(0, 1, (0, 10)),
        write(1, 2, (0, 10)),
        read(2, Some(1), (11, 12)),
    ];
    let bad = [write(0, 1, (0, 1)), read(1, None, (2, 3))];
    for h in [&good[..], &bad[..]] {
        let steps = Budget {
            max_steps: 1,
            ..Budget::default()
        };
        assert_eq!(
            check(&CasRegister::default(), h, &steps),
            Verdict::Unknown(Exhausted::Steps { limit: 1 })
        );
        let states = Budget {
            max_cached_states: 0,
            ..Budget::default()
        };
        assert!(matches!(
            check(&CasRegister::default(), h, &states),
            Verdict::Unknown(Exhausted::CachedStates { limit: 0 })
        ));
    }
}

#[test]
fn partitioned_check_reports_each_key_and_the_worst_overall() {
    // Goal: keys are independent objects; one bad key makes the whole history bad.
    let mut parts = BTreeMap::new();
    parts.insert("x", vec![write(0, 1, (0, 1)), read(1, Some(1), (2, 3))]);
    parts.insert("y", vec![write(2, 1, (0, 1)), read(3, None, (2, 3))]);
    let v = check_partitioned(&CasRegister::default(), parts, &Budget::default());
    assert_eq!(v.keys[0], ("x", Verdict::Linearizable));
    assert_eq!(
        v.violations()
            .map(|(k, e)| (*k, e.blocked))
            .collect::<Vec<_>>(),
        vec![("y", 3)]
    );
    assert!(matches!(v.overall(), Verdict::NotLinearizable(_)));
}

// ---- Property tests ----------------------------------------------------

/// Exhaustive reference: some subset of the unknown ops plus all known ops,
/// in some order that respects real time, is a legal sequential run.
fn brute_force(ops: &[RegOp]) -> bool {
    let model = CasRegister::<i64>::default();
    let unknown: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].outcome == Outcome::Unknown)
        .collect();
    let ret = |i: usize| match ops[i].outcome {
        Outcome::Returned { return_ns, .. } => return_ns,
        Outcome::Unknown => u64::MAX,
    };
    fn permute(
        model: &CasRegister<i64>,
        ops: &[RegOp],
        left: &mut Vec<usize>,
        state: Option<i64>,
        ret: &dyn Fn(usize) -> u64,
    ) -> bool {
        if left.is_empty() {
            return true;
        }
        for k in 0..left.len() {
            let i = left[k];
            // `i` may go next only if no other remaining op returned before `i` was called.
            if left.iter().any(|&j| j != i && ret(j) < ops[i].call_ns) {
                continue;
            }
            let output = match &ops[i].outcome {
                Outcome::Returned { output, .. } => Some(output),
                Outcome::Unknown => None,
            };
            if let Some(next) = model.step(&state, &ops[i].input, output) {
                left.remove(k);
                let found = permute(model, ops, left, next, ret);
                left.insert(k, i);
                if found {
                    return true;
                }
            }
        }
        false
    }
    (0u32..1 << unknown.len()).any(|mask| {
        let mut left: Vec<usize> = (0..ops.len())
            .filter(|&i| match unknown.iter().position(|&u| u == i) {
                Some(bit) => mask & (1 << bit) != 0,
                None => true,
            })
            .collect();
        permute(&model, ops, &mut left, None, &ret)
    })
}

fn arb_input() -> impl Strategy<Value = RegisterOp<i64>> {
    prop_oneof![
        Just(RegisterOp::Read),
        (0i64..2).prop_map(RegisterOp::Write),
        (0i64..2, 0i64..2).prop_map(|(from, to)| RegisterOp::Cas { from, to }),
    ]
}

/// Small random histories, linearizable or not: random intervals, random
/// read results, some writes and cas unknown.
fn arb_history(max_ops: usize) -> impl Strategy<Value = Vec<RegOp>> {
    prop::collection::vec(
        (
            arb_input(),
            0u64..12,
            0u64..6,
            prop::option::of(0i64..2),
            0u8..5,
        ),
        0..=max_ops,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(id, (input, call_ns, len, seen, dice))| {
                let output = match input {
                    RegisterOp::Read => Some(RegisterRet::Value(seen)),
                    _ if dice == 0 => None,
                    _ => Some(RegisterRet::Done),
                };
                op(id, input, output, call_ns, call_ns + len)
            })
            .collect()
    })
}

/// Histories made by really running the operations atomically, each at a
/// distinct point inside its interval; some writes then lose their reply
/// (unknown) and some unknown ones never happen at all.
fn arb_real_history(max_ops: usize) -> impl Strategy<Value = Vec<RegOp>> {
    prop::collection::vec((arb_input(), 0u64..50, 0u64..50, 0u8..6), 1..=max_ops).prop_map(|raw| {
        let model = CasRegister::<i64>::default();
        let mut order: Vec<usize> = (0..raw.len()).collect();
        // Linearization point of op i: 100*i shuffled by the first random field.
        order.sort_by_key(|&i| (raw[i].1, i));
        let mut point = vec![0u64; raw.len()];
        for (rank, &i) in order.iter().enumerate() {
            point[i] = 100 * rank as u64 + 50;
        }
        let mut state = None;
        let mut ops: Vec<RegOp> = Vec::new();
        for &i in &order {
            let (input, _, slack, dice) = raw[i].clone();
            let unknown = dice == 0 && input != RegisterOp::Read;
            let never = unknown && slack % 2 == 0;
            let output = match &input {
                RegisterOp::Read => Some(RegisterRet::Value(state)),
                RegisterOp::Cas { from, .. } if state != Some(*from) => continue, // a failed cas: not recorded
                _ => Some(RegisterRet::Done),
            };
            if !never {
                state = model
                    .step(&state, &input, output.as_ref())
                    .expect("a real run is legal");
            }
            let call_ns = point[i] - 50 + slack % 50;
            let return_ns = point[i] + slack * 3;
            ops.push(op(
                i,
                input,
                if unknown { None } else { output },
                call_ns.min(point[i]),
                return_ns,
            ));
        }
        ops
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn agrees_with_brute_force_on_small_histories(h in arb_history(6)) {
        // Goal: on every small history, WGL says exactly what exhaustive search says.
        let expected = brute_force(&h);
        match verdict(&h) {
            Verdict::Linearizable => prop_assert!(expected, "WGL accepted a non-linearizable history"),
            Verdict::NotLinearizable(_) => prop_assert!(!expected, "WGL rejected a linearizable history"),
            Verdict::Unknown(e) => prop_assert!(false, "budget ran out on a tiny history: {e}"),
        }
    }

    #[test]
    fn accepts_every_history_of_a_real_atomic_register(h in arb_real_history(40)) {
        // Goal: no false alarms on larger histories produced by a correct register.
        prop_assert_eq!(verdict(&h), Verdict::Linearizable);
    }
}
