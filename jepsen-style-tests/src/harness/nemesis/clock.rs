//! Clock faults: a node's clock jumps by an offset for the window (bump),
//! or flips between the offset and zero every period (strobe). The offset
//! reaches the node through its clock-offset file (`BOOKING_FAULT_CLOCK=1`),
//! which it re-reads every 100 ms.
//!
//! Must not: touch any clock but the nodes' offset files; the undo sets
//! them back to zero.

use std::time::Duration;

use super::execute::{Ctx, Undo};
use super::Target;

/// Sets the offset of the target's nodes for the window.
pub(super) async fn bump(
    ctx: &Ctx,
    target: &Target,
    offset_ms: i64,
) -> Result<(Undo, String), String> {
    let nodes = ctx.resolve(target).await?;
    ctx.with_cluster(|c| {
        nodes
            .iter()
            .try_for_each(|&n| c.set_clock_offset_ms(n, offset_ms))
    })?;
    Ok((
        Undo::ClockReset(nodes.clone(), None),
        format!("clock of {nodes:?} {offset_ms:+} ms"),
    ))
}

/// Flips the offset of the target's nodes every `period_ms` until the undo
/// aborts the strobe.
pub(super) async fn strobe(
    ctx: &Ctx,
    target: &Target,
    offset_ms: i64,
    period_ms: u64,
) -> Result<(Undo, String), String> {
    let nodes = ctx.resolve(target).await?;
    let cluster = ctx.cluster.clone();
    let period = Duration::from_millis(period_ms);
    let strobe_nodes = nodes.clone();
    // Aborted by the heal; each round is one small file write.
    let task = tokio::spawn(async move {
        let mut on = true;
        loop {
            let value = if on { offset_ms } else { 0 };
            {
                let c = cluster.lock().expect("cluster lock");
                for &n in &strobe_nodes {
                    let _ = c.set_clock_offset_ms(n, value);
                }
            }
            on = !on;
            tokio::time::sleep(period).await;
        }
    });
    Ok((
        Undo::ClockReset(nodes.clone(), Some(task)),
        format!("clock of {nodes:?} strobing {offset_ms:+} ms"),
    ))
}
