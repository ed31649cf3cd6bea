//! The flash-sale benchmark and the same workload against etcd, Redis and
//! PostgreSQL, all measured in one run on one machine.
//!
//! Owns: load generation and reporting. Must not: reach into a node's memory.
//!
//! Not written yet: arrives with the benchmark issue.
