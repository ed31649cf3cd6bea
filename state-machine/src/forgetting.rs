//! When the exactly-once table may forget: the cut-off a leader names in
//! `ForgetRequests`.
//!
//! Owns: [`ForgetCutoff`], one node's bounded record of (its monotonic
//! milliseconds, its applied log time) pairs, and the rule that turns it into
//! a `before_ms`. Must not: read a clock (the caller passes its monotonic
//! milliseconds, which is why this lives in the pure crate: the property
//! test drives it with made-up time), or be replicated state (it is one
//! node's memory; losing it on a restart only delays forgetting).
//!
//! Why no clock can shorten a TTL with it: log time never goes back, and an
//! outcome is stamped with the log time at which it was applied. If at this
//! node's monotonic instant `t` its applied log time was `c`, every outcome
//! stamped below `c` was applied (so committed) before `t`. Once `ttl` of
//! monotonic time has passed since `t`, those outcomes are at least `ttl`
//! old in real time, however far log time jumped meanwhile, forwards (a
//! leader's clock an hour fast, a majority moved after an outage) or not
//! at all. A node that just started has no sample `ttl` old, so a new
//! leader forgets nothing until it has been up for the TTL.

use std::collections::VecDeque;

/// Most samples kept. Samples are spaced `ttl / (FORGET_SAMPLES_MAX / 2)`
/// apart at least, so one TTL fits in half the ring; when the ring is full
/// (the TTL was lowered) new samples are skipped, which only makes the
/// cut-off older, never newer.
pub const FORGET_SAMPLES_MAX: usize = 4_096;

/// (monotonic ms, applied log time ms) samples of one node, oldest first.
#[derive(Clone, Debug, Default)]
pub struct ForgetCutoff {
    samples: VecDeque<(u64, u64)>,
}

impl ForgetCutoff {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that at monotonic `mono_ms` this node had applied up to log
    /// time `clock_ms`. `ttl_ms` only spaces the samples.
    pub fn record(&mut self, mono_ms: u64, clock_ms: u64, ttl_ms: u64) {
        let gap_ms = (ttl_ms / (FORGET_SAMPLES_MAX as u64 / 2)).max(1);
        if let Some(&(last_mono, _)) = self.samples.back() {
            if mono_ms < last_mono.saturating_add(gap_ms) {
                return;
            }
        }
        if self.samples.len() < FORGET_SAMPLES_MAX {
            self.samples.push_back((mono_ms, clock_ms));
        }
    }

    /// The `before_ms` a `ForgetRequests` may name at monotonic `mono_ms`:
    /// the log time of the newest sample at least `ttl_ms` old, or `None`
    /// when there is none yet. Drops the samples older than that one.
    pub fn cutoff(&mut self, mono_ms: u64, ttl_ms: u64) -> Option<u64> {
        let limit = mono_ms.checked_sub(ttl_ms)?;
        while self.samples.len() >= 2 && self.samples[1].0 <= limit {
            self.samples.pop_front();
        }
        match self.samples.front() {
            Some(&(at, clock_ms)) if at <= limit => Some(clock_ms),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the cut-off is the log time of the newest sample at least a TTL old, and none exists before the node has seen a full TTL.
    #[test]
    fn cutoff_is_the_newest_sample_a_ttl_old() {
        let mut c = ForgetCutoff::new();
        c.record(0, 100, 1_000);
        c.record(500, 3_600_100, 1_000); // log time jumped an hour
        c.record(900, 3_600_200, 1_000);
        assert_eq!(c.cutoff(999, 1_000), None, "nothing is a TTL old yet");
        assert_eq!(c.cutoff(1_000, 1_000), Some(100));
        assert_eq!(c.cutoff(1_499, 1_000), Some(100));
        assert_eq!(c.cutoff(1_500, 1_000), Some(3_600_100));
        assert_eq!(c.len(), 2, "the sample superseded is dropped");
    }

    // Goal: the ring stays bounded and a full ring only makes cut-offs older.
    #[test]
    fn ring_is_bounded() {
        let mut c = ForgetCutoff::new();
        for i in 0..(3 * FORGET_SAMPLES_MAX as u64) {
            c.record(i, i, 1);
        }
        assert_eq!(c.len(), FORGET_SAMPLES_MAX);
        assert_eq!(c.cutoff(10_000_000, 1), Some(FORGET_SAMPLES_MAX as u64 - 1));
    }
}
