//! The fault-injection harness behind `jepsen run`, `jepsen selftest` and
//! `jepsen cleanup`.
//!
//! Owns: real `booking node` processes ([`cluster`]), their network
//! namespaces and nftables partitions ([`net`]), the seeded fault schedule and
//! its execution ([`nemesis`]), the client workloads ([`workload`], and through the HTTP
//! gateway [`gateway_workload`]), the
//! history recorder ([`recorder`]), reading every replica after the heal
//! ([`final_state`]), the pictures of the report ([`report`]) and its
//! front page ([`index`]), one whole run
//! ([`run`]) and the deliberately broken builds that prove the suite can fail
//! ([`selftest`]).
//!
//! Must not: build anything (it runs the `booking` binary it is given), reach
//! into a node's memory (it uses the client library, signals, files the node
//! documents and the network), or touch namespaces, nft tables or processes
//! it did not create (names carry the `jepsen-`/`jp` prefix, processes the
//! `JEPSEN_RUN` environment marker).
//!
//! Caveats: partitions need root, `ip` and `nft`; without them the harness
//! says so loudly and runs on loopback with kill, pause, clock and membership
//! faults only. One networked run at a time per machine (a lock file guards
//! the fixed names).

pub mod cluster;
pub mod final_state;
pub mod gateway_workload;
pub mod index;
pub mod nemesis;
pub mod net;
pub mod recorder;
pub mod report;
pub mod run;
pub mod selftest;
pub mod workload;
