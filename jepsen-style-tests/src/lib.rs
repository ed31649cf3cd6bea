//! The Jepsen-style suite: a cluster of real `booking` processes under
//! partitions, kills, pauses and clock skew, workloads that record every
//! operation, and checkers that prove from the history that nothing was
//! double-booked or lost.
//!
//! Owns: fault injection, histories and checkers. Must not: reach into a
//! node's memory; it drives real processes through public interfaces only.
//!
//! # Layout
//! - [`history`]: the operation history every workload records and every
//!   checker reads (`history.jsonl`), and pairing invokes with completions.
//! - [`linearizability`]: the generic Wing–Gong–Lowe checker with
//!   memoisation, bounded by a [`linearizability::Budget`], partitioned per
//!   key.
//! - [`models`]: sequential specifications: the compare-and-set register of
//!   the checker corpus and one seat of the booking store.
//! - [`booking`]: the booking workload's typed operations and final replica
//!   states.
//! - [`checkers`]: the booking safety checkers (no double sale, no lost or
//!   phantom booking, no confirm past expiry, replicas agree).
//! - [`corpus`]: the Jepsen text-log reader for the register corpus.
//! - [`harness`]: the fault-injection harness (`jepsen run`, `selftest`,
//!   `cleanup`): real `booking` processes in network namespaces, a seeded
//!   nemesis, workloads through the client library, the report directory.
//!   It records `booking::BookingEvent`s, then calls `booking::decode`,
//!   `models::seat::check_seats` and the `checkers` functions on the result.
//! - [`lazyfs`]: a FUSE file system that keeps only fsynced bytes, with a
//!   power-cut operation, for the `power-loss` nemesis.
//!
//! Caveat: every search is bounded; a check that runs out of budget answers
//! "unknown" and never guesses.

pub mod booking;
pub mod checkers;
pub mod corpus;
pub mod error;
pub mod harness;
pub mod history;
pub mod lazyfs;
pub mod linearizability;
pub mod models;

pub use error::{Error, Result};
