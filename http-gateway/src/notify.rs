//! The notification sender: delivers the replicated outbox (confirmed and
//! cancelled bookings) at least once to a JSON-lines file, then acknowledges.
//!
//! Owns: the poll loop. Order per round: read up to [`BATCH_MAX`] messages,
//! append them to the sink and `fsync`, then `AckOutbox { up_to }`. A crash
//! between the write and the ack delivers those messages again (at least
//! once; consumers dedupe on `id`). Must not: ack before the write is durable.
//!
//! Caveat: every gateway with a sink configured sends; run one sender per
//! cluster, or accept duplicates (still at least once).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use state_machine::{Command, Query, QueryResult};

use crate::cluster::Consistency;
use crate::AppState;

/// Messages taken from the outbox per round.
pub const BATCH_MAX: u32 = 256;

pub async fn run(state: AppState, sink: PathBuf, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_millis(
        state.settings.notification_poll_ms.max(10),
    ));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {
                if let Err(e) = round(&state, &sink).await {
                    tracing::warn!(error = %e, "notification round failed; will retry");
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// One poll: returns how many messages were delivered.
pub async fn round(state: &AppState, sink: &Path) -> Result<usize, String> {
    let answer = state
        .cluster
        .read(
            Query::Outbox { limit: BATCH_MAX },
            Consistency::Linearizable,
        )
        .await
        .map_err(|e| e.to_string())?;
    let messages = match answer.result {
        QueryResult::Outbox(m) => m,
        _ => return Err("unexpected answer to the outbox query".into()),
    };
    let Some(last) = messages.last().map(|m| m.id) else {
        return Ok(0);
    };
    let mut lines = Vec::new();
    for m in &messages {
        serde_json::to_writer(&mut lines, m).map_err(|e| e.to_string())?;
        lines.push(b'\n');
    }
    let path = sink.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        f.write_all(&lines)?;
        f.sync_data()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot write {}: {e}", sink.display()))?;
    crate::api::submit_first_send(state, Command::AckOutbox { up_to: last })
        .await
        .map_err(|p| p.detail)?;
    state.metrics.notifications_sent.add(messages.len() as i64);
    Ok(messages.len())
}
