//! The client's bounds: how long one attempt may take, how many attempts a
//! call makes, how long it may spend in all, and how it backs off. Defaults in
//! one place ([`ClientOptions::default`]).

use std::time::Duration;

/// Timeouts and retry bounds of a [`crate::Client`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Deadline of one attempt (one RPC to one node). A write that hits it has
    /// an unknown outcome and is retried with the same ids.
    pub request_timeout_ms: u64,
    /// Deadline of opening a TCP connection to a node.
    pub connect_timeout_ms: u64,
    /// Most attempts per call, redirects included. At least 1.
    pub attempts_max: u32,
    /// Total time one call may spend across its attempts and pauses.
    pub retry_budget_ms: u64,
    /// First pause after a failed attempt; doubles per failure (with jitter)
    /// up to `backoff_ms_max`. A redirect to a named leader does not pause.
    pub backoff_ms_initial: u64,
    /// Longest pause between attempts.
    pub backoff_ms_max: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout_ms: 5_000,
            connect_timeout_ms: 1_000,
            attempts_max: 12,
            retry_budget_ms: 30_000,
            backoff_ms_initial: 25,
            backoff_ms_max: 1_000,
        }
    }
}

impl ClientOptions {
    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.max(1))
    }

    pub(crate) fn retry_budget(&self) -> Duration {
        Duration::from_millis(self.retry_budget_ms.max(1))
    }

    /// Pause before attempt `failures + 1`: exponential with "equal jitter"
    /// (half fixed, half random) so many clients that failed together do not
    /// come back together.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let exp = self
            .backoff_ms_initial
            .max(1)
            .saturating_mul(1u64 << failures.min(16));
        let capped = exp.min(self.backoff_ms_max.max(1));
        let half = capped / 2;
        let jitter = if half > 0 {
            rand::random_range(0..=half)
        } else {
            0
        };
        Duration::from_millis(half + jitter)
    }
}
