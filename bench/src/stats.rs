//! Latency histograms and the per-second timeline of a run.
//!
//! Owns: [`Latencies`] (an HDR histogram in microseconds, 1 µs..60 s, 3
//! significant digits) and [`Timeline`] (answers and p99 per second, for the
//! PNG). Must not: allocate per sample (both are fixed-size after creation).
//! Caveat: samples above 60 s are clamped to 60 s.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Largest latency recorded, in µs; longer samples are clamped to it.
pub const LATENCY_US_MAX: u64 = 60_000_000;

/// One latency distribution.
#[derive(Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies(Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds"))
    }
}

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, LATENCY_US_MAX);
        self.0.record(us).expect("clamped into bounds");
    }

    pub fn merge(&mut self, other: &Latencies) {
        self.0.add(&other.0).expect("same bounds");
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The `q` quantile (0..=1) in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Per-second buckets of a run: answers and a latency histogram each.
pub struct Timeline {
    pub buckets: Vec<(u64, Latencies)>,
}

impl Timeline {
    /// A timeline of at most `seconds_max` one-second buckets; later samples
    /// go into the last bucket.
    pub fn new(seconds_max: usize) -> Timeline {
        Timeline {
            buckets: vec![(0, Latencies::default()); seconds_max.max(1)],
        }
    }

    pub fn record(&mut self, at_since_start: Duration, latency: Duration) {
        let i = (at_since_start.as_secs() as usize).min(self.buckets.len() - 1);
        self.buckets[i].0 += 1;
        self.buckets[i].1.record(latency);
    }

    pub fn merge(&mut self, other: &Timeline) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            a.0 += b.0;
            a.1.merge(&b.1);
        }
    }

    /// The buckets up to the last non-empty one.
    pub fn used(&self) -> &[(u64, Latencies)] {
        let n = self
            .buckets
            .iter()
            .rposition(|b| b.0 > 0)
            .map_or(0, |i| i + 1);
        &self.buckets[..n]
    }
}
