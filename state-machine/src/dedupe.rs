//! Bounded memories of what was already done: request results and webhook ids.
//!
//! Owns: the `(client_id, request_id)` → first `Outcome` table that makes
//! retries exactly-once, and the table of payment-provider webhook event ids.
//! Must not: use a hash map (iteration order would reach snapshots) or a clock
//! (entries age in log time, `clock_ms`).
//!
//! Bounds: each table keeps entries for a TTL of log time and at most a
//! maximum count. Entries are kept in insertion order, which is also
//! non-decreasing log time (the clock never goes back), so both expiry and
//! "full" eviction drop from the front: the oldest by log time, ties in apply
//! order. A request retried after its entry was dropped is applied again;
//! `dedupe_ttl_ms` must exceed how long clients retry.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::command::Outcome;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RequestTable {
    results: BTreeMap<(u64, u64), Outcome>,
    /// (recorded_at_ms, client_id, request_id), oldest first.
    order: VecDeque<(u64, u64, u64)>,
}

impl RequestTable {
    pub fn get(&self, client_id: u64, request_id: u64) -> Option<&Outcome> {
        self.results.get(&(client_id, request_id))
    }

    pub fn insert(&mut self, client_id: u64, request_id: u64, at_ms: u64, outcome: Outcome, max_entries: u32) {
        let previous = self.results.insert((client_id, request_id), outcome);
        assert!(previous.is_none(), "dedupe entry ({client_id}, {request_id}) recorded twice");
        self.order.push_back((at_ms, client_id, request_id));
        self.trim(max_entries);
    }

    /// Drops entries recorded at or before `clock_ms - ttl_ms`.
    pub fn expire(&mut self, clock_ms: u64, ttl_ms: u64) {
        while let Some(&(at, c, r)) = self.order.front() {
            if at.saturating_add(ttl_ms) > clock_ms {
                break;
            }
            self.order.pop_front();
            self.results.remove(&(c, r));
        }
    }

    pub fn trim(&mut self, max_entries: u32) {
        while self.order.len() > max_entries as usize {
            let (_, c, r) = self.order.pop_front().expect("non-empty");
            self.results.remove(&(c, r));
        }
    }

    pub fn len(&self) -> usize {
        self.results.len()
    }

    pub fn check(&self) -> Result<(), String> {
        if self.results.len() != self.order.len() {
            return Err(format!("dedupe: {} results but {} order entries", self.results.len(), self.order.len()));
        }
        if self.order.iter().any(|(_, c, r)| !self.results.contains_key(&(*c, *r))) {
            return Err("dedupe: order entry without a result".into());
        }
        if self.order.iter().zip(self.order.iter().skip(1)).any(|(a, b)| a.0 > b.0) {
            return Err("dedupe: order is not by time".into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WebhookTable {
    seen: BTreeMap<String, u64>,
    order: VecDeque<(u64, String)>,
}

impl WebhookTable {
    /// Records `id`; true when it was not remembered yet.
    pub fn record(&mut self, id: &str, at_ms: u64, max_entries: u32) -> bool {
        if self.seen.contains_key(id) {
            return false;
        }
        self.seen.insert(id.to_string(), at_ms);
        self.order.push_back((at_ms, id.to_string()));
        self.trim(max_entries);
        true
    }

    pub fn expire(&mut self, clock_ms: u64, ttl_ms: u64) {
        while let Some((at, _)) = self.order.front() {
            if at.saturating_add(ttl_ms) > clock_ms {
                break;
            }
            let (_, id) = self.order.pop_front().expect("non-empty");
            self.seen.remove(&id);
        }
    }

    pub fn trim(&mut self, max_entries: u32) {
        while self.order.len() > max_entries as usize {
            let (_, id) = self.order.pop_front().expect("non-empty");
            self.seen.remove(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }
}
