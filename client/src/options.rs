//! The client's bounds: how long one attempt may take, how many attempts a
//! call makes, how long it may spend in all, and how it backs off. Defaults in
//! one place ([`ClientOptions::default`]).

use std::time::Duration;

/// Timeouts, retry bounds and TLS settings of a [`crate::Client`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Mutual TLS: the cluster's CA and this client's certificate. `None`:
    /// plaintext (only a cluster with `[tls] mode = "off"` answers), except
    /// that [`crate::Client::from_config`] loads the config's client
    /// certificate when this is `None` and the config has TLS on.
    pub tls: Option<cluster_tls::ClientTls>,
    /// Deadline of one attempt (one RPC to one node). A write that hits it has
    /// an unknown outcome and is retried with the same ids.
    pub request_timeout_ms: u64,
    /// Deadline of opening a TCP connection to a node.
    pub connect_timeout_ms: u64,
    /// Most attempts per call, redirects included. At least 1.
    pub attempts_max: u32,
    /// Total time one call may spend across its attempts and pauses; capped
    /// at `state_machine::limits::CLIENT_RETRY_BUDGET_MS_MAX`, the bound the
    /// exactly-once table's shortest TTL is derived from (a retry after the
    /// cluster forgot its request id would apply again).
    pub retry_budget_ms: u64,
    /// First pause after a failed attempt; doubles per failure (with jitter)
    /// up to `backoff_ms_max`. A redirect to a named leader does not pause.
    pub backoff_ms_initial: u64,
    /// Longest pause between attempts.
    pub backoff_ms_max: u64,
    /// Most writes coalesced into one `SubmitBatch` to a node
    /// (`client/coalesce.rs`); 1 sends every attempt as its own `Submit`.
    /// Capped at `proto::SUBMIT_BATCH_MAX`. Default 256: with 64 the
    /// gateway's queue (4 batches) held 256 writes, a flash-sale burst
    /// queued behind it, and holds waited ~0.5 s (p50 473–495 ms against
    /// 38–57 ms with 256 and 35–41 ms with 1 024, `bench flash-sale --fans
    /// 72000 --rate 2400`, two runs each on a busy box).
    pub write_batch_max: usize,
    /// Most `SubmitBatch` calls in flight to one node; writes arriving
    /// meanwhile queue (at most `write_batch_max` × this many) and leave in
    /// the next batch; past that bound they wait for room in the queue.
    pub write_batches_in_flight_max: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            tls: None,
            request_timeout_ms: 5_000,
            connect_timeout_ms: 1_000,
            attempts_max: 12,
            retry_budget_ms: state_machine::limits::CLIENT_RETRY_BUDGET_MS_MAX,
            backoff_ms_initial: 25,
            backoff_ms_max: 1_000,
            write_batch_max: 256,
            write_batches_in_flight_max: 4,
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
        Duration::from_millis(
            self.retry_budget_ms
                .clamp(1, state_machine::limits::CLIENT_RETRY_BUDGET_MS_MAX),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: no option makes a client retry one request id longer than the exactly-once table is guaranteed to remember it.
    #[test]
    fn the_retry_budget_never_exceeds_what_the_cluster_remembers() {
        let cap = state_machine::limits::CLIENT_RETRY_BUDGET_MS_MAX;
        let long = ClientOptions {
            retry_budget_ms: u64::MAX,
            ..ClientOptions::default()
        };
        assert_eq!(long.retry_budget(), Duration::from_millis(cap));
        assert_eq!(
            ClientOptions::default().retry_budget(),
            Duration::from_millis(cap)
        );
        assert!(state_machine::limits::DEDUPE_TTL_MS_MIN > cap);
        let short = ClientOptions {
            retry_budget_ms: 4_000,
            ..ClientOptions::default()
        };
        assert_eq!(short.retry_budget(), Duration::from_millis(4_000));
    }
}
