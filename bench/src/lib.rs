//! The flash-sale benchmark and the same hold workload against etcd, Redis
//! and PostgreSQL, all measured in one run on one machine (DESIGN §10).
//!
//! Layout:
//! - [`flash`]: `bench flash-sale`: open-loop fans through the HTTP gateway,
//!   the replica audit, the report; [`echo`]: the no-op axum echo ceiling.
//! - [`room`]: `bench flash-sale --waiting-room`: a crowd through the
//!   event's waiting room ([`room_fan`]: one fan; [`room_report`]: the
//!   numbers, the goal and the PNG's figure; [`join_ceiling`]: the
//!   closed-loop join capacity measured before the sale).
//! - [`peers`]: `bench peers`: the closed-loop hold workload and one module
//!   per system (ours via client and gateway, etcd, Redis, PostgreSQL).
//! - [`cluster`]: our 3-node cluster and gateway as processes (started
//!   through `testkit`, like every cluster of the workspace).
//! - [`http`]: the gateway calls and the seat layout; [`stats`], [`plot`]:
//!   histograms and the PNG; [`node_metrics`]: the nodes' `/metrics`
//!   series the report quotes; [`cpu`]: CPU time per request by
//!   process, from the processes' own clocks. Child processes (nodes, the echo server, the
//!   peers) are `testkit::process::Child`ren: they stop when dropped and
//!   die with the bench.
//!
//! Owns: load generation and reporting. Must not: reach into a node's memory
//! (it drives processes through HTTP, gRPC via `client`, and signals), or
//! send anything off loopback. Every loop is bounded in count and time.
//!
//! Caveat: the load generator shares the 2 cores with what it measures, so
//! absolute numbers drift with the machine's load; compare ratios from one run.

pub mod cluster;
pub mod cpu;
pub mod echo;
pub mod flash;
pub mod http;
pub mod join_ceiling;
pub mod node_metrics;
pub mod peers;
pub mod plot;
pub mod room;
pub mod room_fan;
pub mod room_report;
pub mod stats;
