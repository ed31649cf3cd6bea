//! Linearizability checking by Wing–Gong–Lowe search with memoisation.
//!
//! Owns: the generic [`Model`] trait, the checker's operation type [`Op`], the
//! search, its [`Budget`] and its [`Verdict`]; partitioning by key
//! (P-compositionality) for multi-key histories. The models themselves live in
//! `crate::models`.
//!
//! The search (Wing & Gong 1993, with Lowe's memoisation from "Testing for
//! linearizability", 2017, the approach the Porcupine checker also takes):
//! every operation becomes a *call* and a *return* entry in one doubly-linked
//! list ordered by time. Walking from the head, a call entry is a candidate to
//! linearize next: if the model accepts it from the current state and the pair
//! (set of linearized operations, new state) has not been seen before, the
//! operation is *lifted* out of the list (both entries, dancing-links style so
//! it can be put back in O(1)), pushed on a stack, and the walk restarts at the
//! head. Reaching a return entry means that operation's deadline has come with
//! no way to place it, so the search backtracks: pop the last choice, restore
//! its entries and state, and try the next candidate after it. The cache makes
//! the search visit each configuration once, which is what makes real
//! histories tractable.
//!
//! Unknown outcomes (`info`, or no completion) get a return at +infinity and an
//! unknown output. They may be linearized at any point after their call, and
//! the search succeeds as soon as every *known* operation is linearized: the
//! unknown ones left over are taken never to have happened.
//!
//! Ties: a call and a return at the same instant are ordered call first, so
//! operations that touch are treated as concurrent. With one harness clock
//! that can only make the checker more permissive, never invent a violation.
//!
//! Must not: decide anything it was not asked. Every search is bounded by a
//! [`Budget`]; running out yields [`Verdict::Unknown`], never a guess.
//! Caveats: the worst case is exponential in the number of concurrent
//! operations, and `info` operations count as concurrent with everything
//! after them: a history with dozens of them that is *not* linearizable
//! late in the history can exhaust any budget. Measured once on the 2-core
//! dev machine, generated register histories with one impossible read placed
//! halfway: 3,682 operations of 5 processes, no `info`: rejected in 38 ms;
//! 728 operations with 17 `info` writes: 0.43 s; 713 operations of 10
//! processes with 19 `info` writes: still unknown after 20 s (the same
//! histories without the bad read: all linearizable in under 16 ms). Short
//! runs and per-key partitioning are the remedy. (Skipping configurations
//! that differ only by having placed *more* unknown operations is sound but
//! measured slower here, so the cache stays an exact-match set.) Partitioning is only
//! sound for models whose keys are independent (each key its own object, as
//! seats are).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A sequential specification: the object the history claims to implement.
pub trait Model {
    /// Must be `Hash + Eq`: the memoisation cache is keyed by it. Keep it small.
    type State: Clone + Eq + Hash + Debug;
    type Input: Debug;
    type Output: Debug;

    /// The object's state before any operation.
    fn init(&self) -> Self::State;

    /// Applies one operation. `output` is `None` when the outcome is unknown
    /// (`info`); the model then says what state the operation would leave *if
    /// it took effect here*, or `None` if it cannot have taken effect here
    /// (it may still take effect elsewhere, or never). Returns `None` when the
    /// operation with this output is impossible from `state`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// How an operation ended, as the checker needs it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<O> {
    /// The operation happened and returned `output` at `return_ns`.
    Returned { output: O, return_ns: u64 },
    /// `info` or no completion: it may have happened at any time after its
    /// call, or never.
    Unknown,
}

/// One operation as the checker sees it. `fail` operations are not given to
/// the checker: they did not happen.
#[derive(Clone, Debug, PartialEq)]
pub struct Op<I, O> {
    /// The caller's id for the operation (e.g. `history::Operation::id`);
    /// evidence names operations by it.
    pub id: usize,
    pub process: u64,
    pub input: I,
    pub outcome: Outcome<O>,
    pub call_ns: u64,
}

/// The operations of a history checked against model `M`.
pub type ModelOp<M> = Op<<M as Model>::Input, <M as Model>::Output>;

/// Bounds on one check. Running out of any of them yields `Verdict::Unknown`.
#[derive(Clone, Debug)]
pub struct Budget {
    /// Wall time for the whole check (all partitions together). Read every
    /// few thousand steps; growing or freeing a cache of millions of states
    /// can overshoot it by a few seconds.
    pub time_limit: Duration,
    /// Search steps (entries visited) for the whole check; deterministic, so
    /// tests can use it where a wall-clock limit would be flaky.
    pub max_steps: u64,
    /// Memoised configurations per partition; bounds memory.
    pub max_cached_states: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            time_limit: Duration::from_secs(60),
            max_steps: 2_000_000_000,
            // Each entry is a bitset plus a state, tens of bytes for the
            // models here: about a gigabyte at the limit.
            max_cached_states: 10_000_000,
        }
    }
}

/// Which bound ran out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exhausted {
    Time { limit: Duration },
    Steps { limit: u64 },
    CachedStates { limit: usize },
}

impl std::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exhausted::Time { limit } => write!(f, "time limit of {limit:?} reached"),
            Exhausted::Steps { limit } => write!(f, "step limit of {limit} reached"),
            Exhausted::CachedStates { limit } => {
                write!(f, "memoisation cache limit of {limit} states reached")
            }
        }
    }
}

/// Why a history is not linearizable, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The longest sequence of operations (by id, in linearization order)
    /// the search could place before getting stuck.
    pub linearized: Vec<usize>,
    /// The model state after `linearized`, as `Debug` text.
    pub state: String,
    /// The operation whose return came with no way to place it next.
    pub blocked: usize,
    /// Every operation that was a candidate at that point (called, not yet
    /// linearized, including `blocked`); none could be placed next.
    pub candidates: Vec<usize>,
}

/// The answer of one check.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable(Box<Evidence>),
    /// The budget ran out before an answer: nothing is claimed.
    Unknown(Exhausted),
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Checks one history (one object) against `model`.
pub fn check<M: Model>(model: &M, ops: &[ModelOp<M>], budget: &Budget) -> Verdict {
    let mut meter = Meter::new(budget);
    search(model, ops, &mut meter)
}

/// Per-key verdicts of a partitioned check, in key order.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionedVerdict<K> {
    pub keys: Vec<(K, Verdict)>,
}

impl<K> PartitionedVerdict<K> {
    /// Not linearizable if any key is; otherwise unknown if any key is;
    /// otherwise linearizable. (P-compositionality: the whole history is
    /// linearizable iff every key's sub-history is.)
    pub fn overall(&self) -> Verdict {
        let mut unknown = None;
        for (_, v) in &self.keys {
            match v {
                Verdict::NotLinearizable(_) => return v.clone(),
                Verdict::Unknown(e) if unknown.is_none() => unknown = Some(e.clone()),
                _ => {}
            }
        }
        unknown.map_or(Verdict::Linearizable, Verdict::Unknown)
    }

    /// The keys whose sub-history is not linearizable, with their evidence.
    pub fn violations(&self) -> impl Iterator<Item = (&K, &Evidence)> {
        self.keys.iter().filter_map(|(k, v)| match v {
            Verdict::NotLinearizable(e) => Some((k, &**e)),
            _ => None,
        })
    }
}

/// Checks each key's operations as an independent object (P-compositionality).
/// The budget is shared: all keys together get its time and steps. Keys after
/// the budget ran out are reported `Unknown`.
pub fn check_partitioned<M: Model, K: Ord>(
    model: &M,
    partitions: BTreeMap<K, Vec<ModelOp<M>>>,
    budget: &Budget,
) -> PartitionedVerdict<K> {
    let mut meter = Meter::new(budget);
    let keys = partitions
        .into_iter()
        .map(|(k, ops)| {
            meter.cached_states = 0;
            (k, search(model, &ops, &mut meter))
        })
        .collect();
    PartitionedVerdict { keys }
}

/// Tracks the budget across one check (and across partitions).
struct Meter {
    started: Instant,
    time_limit: Duration,
    steps: u64,
    max_steps: u64,
    cached_states: usize,
    max_cached_states: usize,
}

impl Meter {
    /// Reading the clock costs more than a search step; look every this many.
    const STEPS_PER_CLOCK_READ: u64 = 4096;

    fn new(budget: &Budget) -> Self {
        Meter {
            started: Instant::now(),
            time_limit: budget.time_limit,
            steps: 0,
            max_steps: budget.max_steps,
            cached_states: 0,
            max_cached_states: budget.max_cached_states,
        }
    }

    fn tick(&mut self) -> Result<(), Exhausted> {
        self.steps += 1;
        if self.steps > self.max_steps {
            return Err(Exhausted::Steps {
                limit: self.max_steps,
            });
        }
        if self.steps.is_multiple_of(Self::STEPS_PER_CLOCK_READ)
            && self.started.elapsed() > self.time_limit
        {
            return Err(Exhausted::Time {
                limit: self.time_limit,
            });
        }
        Ok(())
    }
}

const NIL: usize = usize::MAX;

/// The call/return entries as a doubly-linked list over an arena. Node 0 is
/// the head sentinel; operation `i` has its call at `1 + 2i` and its return at
/// `2 + 2i`, so the pairing needs no lookup.
struct Entries {
    prev: Vec<usize>,
    next: Vec<usize>,
}

impl Entries {
    fn call(op: usize) -> usize {
        1 + 2 * op
    }
    fn op(node: usize) -> usize {
        (node - 1) / 2
    }
    fn is_call(node: usize) -> bool {
        node % 2 == 1
    }

    fn new<I, O>(ops: &[Op<I, O>]) -> Self {
        // Sort key: finite times before +infinity, then time, then calls
        // before returns (touching operations count as concurrent).
        let mut order: Vec<(bool, u64, u8, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            order.push((false, op.call_ns, 0, Self::call(i)));
            match &op.outcome {
                Outcome::Returned { return_ns, .. } => {
                    assert!(
                        *return_ns >= op.call_ns,
                        "op {} returns at {return_ns} ns before its call at {} ns",
                        op.id,
                        op.call_ns
                    );
                    order.push((false, *return_ns, 1, Self::call(i) + 1))
                }
                Outcome::Unknown => order.push((true, u64::MAX, 1, Self::call(i) + 1)),
            }
        }
        order.sort_unstable();
        let n = 2 * ops.len() + 1;
        let mut entries = Entries {
            prev: vec![NIL; n],
            next: vec![NIL; n],
        };
        let mut last = 0;
        for &(_, _, _, node) in &order {
            entries.next[last] = node;
            entries.prev[node] = last;
            last = node;
        }
        entries
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    /// Puts back a node removed by `unlink`; valid only in reverse order of
    /// removal, which the search's stack guarantees.
    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NIL {
            self.prev[n] = node;
        }
    }

    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(call + 1);
    }

    fn unlift(&mut self, call: usize) {
        self.relink(call + 1);
        self.relink(call);
    }
}

/// A set of operation indices, the first half of a memoisation key.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Box<[u64]>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)].into_boxed_slice())
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

fn search<M: Model>(model: &M, ops: &[ModelOp<M>], meter: &mut Meter) -> Verdict {
    let mut entries = Entries::new(ops);
    let mut linearized = Bits::new(ops.len());
    let mut cache: HashSet<(Bits, M::State)> = HashSet::new();
    // Each frame: the call node lifted, and the state before it.
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let is_known = |i: usize| matches!(ops[i].outcome, Outcome::Returned { .. });
    // Known operations not yet linearized: at zero the rest can be dropped.
    let mut known_left = (0..ops.len()).filter(|&i| is_known(i)).count();
    let mut best: Option<Evidence> = None;
    let mut entry = entries.next[0];

    while known_left > 0 {
        if let Err(e) = meter.tick() {
            return Verdict::Unknown(e);
        }
        // With a known operation left, its return lies ahead of every
        // +infinity return, so the walk meets a return before the end.
        assert_ne!(
            entry, NIL,
            "walked past every return with {known_left} known ops left"
        );
        if Entries::is_call(entry) {
            let i = Entries::op(entry);
            let output = match &ops[i].outcome {
                Outcome::Returned { output, .. } => Some(output),
                Outcome::Unknown => None,
            };
            if let Some(next_state) = model.step(&state, &ops[i].input, output) {
                linearized.set(i);
                if cache.insert((linearized.clone(), next_state.clone())) {
                    meter.cached_states += 1;
                    if meter.cached_states > meter.max_cached_states {
                        return Verdict::Unknown(Exhausted::CachedStates {
                            limit: meter.max_cached_states,
                        });
                    }
                    stack.push((entry, std::mem::replace(&mut state, next_state)));
                    entries.lift(entry);
                    if is_known(i) {
                        known_left -= 1;
                    }
                    entry = entries.next[0];
                    continue;
                }
                linearized.clear(i);
            }
            entry = entries.next[entry];
        } else {
            // A return: its operation can no longer be placed on this path.
            if best
                .as_ref()
                .is_none_or(|b| stack.len() > b.linearized.len())
            {
                best = Some(evidence(&entries, &stack, &state, entry, ops));
            }
            let Some((call, prior)) = stack.pop() else {
                return Verdict::NotLinearizable(Box::new(
                    best.expect("evidence is recorded before giving up"),
                ));
            };
            let i = Entries::op(call);
            state = prior;
            linearized.clear(i);
            entries.unlift(call);
            if is_known(i) {
                known_left += 1;
            }
            entry = entries.next[call];
        }
    }
    Verdict::Linearizable
}

fn evidence<I, O, S: Debug>(
    entries: &Entries,
    stack: &[(usize, S)],
    state: &S,
    blocked_return: usize,
    ops: &[Op<I, O>],
) -> Evidence {
    let mut candidates = Vec::new();
    let mut node = entries.next[0];
    while node != blocked_return && node != NIL {
        if Entries::is_call(node) {
            candidates.push(ops[Entries::op(node)].id);
        }
        node = entries.next[node];
    }
    Evidence {
        linearized: stack.iter().map(|(c, _)| ops[Entries::op(*c)].id).collect(),
        state: format!("{state:?}"),
        blocked: ops[Entries::op(blocked_return)].id,
        candidates,
    }
}

#[cfg(test)]
mod tests;
