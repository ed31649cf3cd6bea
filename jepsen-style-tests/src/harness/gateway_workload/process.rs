//! The gateway process of the gateway workload: a real `booking gateway`
//! next to the nodes (on the harness's side of the network, where clients
//! run; its log is `cluster/logs/gateway.log`), started through `testkit`
//! like every process of a run.
//!
//! Owns: the gateway's `[gateway]` section (a free loopback port, the run's
//! admin token, a cluster timeout below the fail-over time) and waiting for
//! its `/readyz`. Must not: drive any workload or judge anything.

use std::time::Duration;

use cluster_config::GatewaySection;
use testkit::free_addr;
use testkit::nodes::GatewayProc;

use crate::harness::cluster::Cluster;

/// The gateway's admin token in the run's config (on loopback).
const ADMIN_TOKEN: &str = "jepsen-gateway-admin";
/// The gateway's bound on one cluster call, in ms: below the cluster's
/// fail-over time (election timeout 400-800 ms plus detection), so a call in
/// flight when the leader dies or stops ends as "outcome unknown" at the
/// gateway, which is the situation the gateway's retry rules are about.
pub const GATEWAY_CLUSTER_TIMEOUT_MS: u64 = 1_000;
/// How long the gateway may take to answer `/readyz` at start.
const GATEWAY_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts the gateway of `cluster` (`<cluster dir>/gateway.toml`: the run's
/// `cluster.toml` with a `[gateway]` section on a free loopback port) with
/// `extra_env` (the selftest's bug selector). Does not wait.
pub fn start(cluster: &Cluster, extra_env: &[(String, String)]) -> Result<GatewayProc, String> {
    let gateway = GatewaySection {
        listen: free_addr(),
        admin_token: Some(ADMIN_TOKEN.to_string()),
        cluster_timeout_ms: GATEWAY_CLUSTER_TIMEOUT_MS,
        ..GatewaySection::default()
    };
    cluster.start_gateway(gateway, extra_env)
}

/// Waits until `/readyz` answers 200 (the gateway sees a leader); fails at
/// once if the gateway exits.
pub async fn wait_ready(gateway: &mut GatewayProc, http: &reqwest::Client) -> Result<(), String> {
    gateway
        .wait_ready(http, GATEWAY_READY_TIMEOUT)
        .await
        .map_err(|e| format!("the gateway is not ready: {e}"))
}
