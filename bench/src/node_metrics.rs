//! Reading the nodes' Prometheus endpoints: the counters and gauges the
//! flash-sale report quotes.
//!
//! Owns: fetching `/metrics` text and picking one series out of it. Must
//! not: parse more than the one `name{node_id="…"} value` line it needs
//! (the node renders a hand-rolled text format, `raft-node::metrics`).

use std::time::Duration;

/// The node counters the report needs, summed over the nodes.
#[derive(Clone, Copy)]
pub struct NodeCounters {
    pub commands_proposed: u64,
    pub answered_without_log_write: u64,
    pub snapshots_built: u64,
}

impl NodeCounters {
    /// What the counters grew by since `before`.
    pub fn since(&self, before: &NodeCounters) -> NodeCounters {
        NodeCounters {
            commands_proposed: self
                .commands_proposed
                .saturating_sub(before.commands_proposed),
            answered_without_log_write: self
                .answered_without_log_write
                .saturating_sub(before.answered_without_log_write),
            snapshots_built: self.snapshots_built.saturating_sub(before.snapshots_built),
        }
    }
}

pub async fn node_counters(metrics_urls: &[String]) -> Option<NodeCounters> {
    Some(NodeCounters {
        commands_proposed: counter_sum(metrics_urls, "booking_commands_proposed_total").await?,
        // A node without the fast path has no such series: count 0.
        answered_without_log_write: counter_sum(
            metrics_urls,
            "booking_answered_without_log_write_total",
        )
        .await
        .unwrap_or(0),
        snapshots_built: counter_sum(metrics_urls, "booking_snapshots_built_total")
            .await
            .unwrap_or(0),
    })
}

/// Each node's value of the series `name`, in `metrics_urls` order; `None`
/// when a node does not answer or has no such series.
async fn values(metrics_urls: &[String], name: &str) -> Option<Vec<u64>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let mut out = Vec::with_capacity(metrics_urls.len());
    for url in metrics_urls {
        let text = http.get(url).send().await.ok()?.text().await.ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))?;
        out.push(line.rsplit(' ').next()?.parse::<u64>().ok()?);
    }
    Some(out)
}

/// Sum of one counter over the nodes' metrics endpoints.
pub async fn counter_sum(metrics_urls: &[String], name: &str) -> Option<u64> {
    Some(values(metrics_urls, name).await?.iter().sum())
}

/// The largest value of a gauge over the nodes, and the node (1-based, in
/// `metrics_urls` order, which is node id order for the bench's cluster)
/// that has it.
pub async fn gauge_max(metrics_urls: &[String], name: &str) -> Option<(u64, u64)> {
    let values = values(metrics_urls, name).await?;
    let (i, v) = values.iter().enumerate().max_by_key(|(_, v)| **v)?;
    Some((*v, i as u64 + 1))
}

/// A gauge's value on one node (1-based, in `metrics_urls` order).
pub async fn gauge_of(metrics_urls: &[String], name: &str, node: u64) -> Option<u64> {
    let url = metrics_urls.get(usize::try_from(node).ok()?.checked_sub(1)?)?;
    values(std::slice::from_ref(url), name)
        .await?
        .first()
        .copied()
}
