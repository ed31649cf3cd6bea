//! Membership faults: a node leaves the voting membership (through the
//! client's admin API) for the window, possibly while another fault runs,
//! and is added back as a learner and promoted at the end.
//!
//! Must not: stop or start processes (the removed node keeps running), or
//! wait unbounded for an answer: every admin call has a bound.

use std::time::Duration;

use super::execute::{apply, Ctx, Undo};
use super::{Fault, Target};

/// Bound on the removal of a node.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on adding a node back (learner, then voter).
const RE_ADD_TIMEOUT: Duration = Duration::from_secs(20);

/// Removes the target from the membership, then applies `during` (if any)
/// at the same time; the undo heals `during` first, then adds the node back.
pub(super) async fn remove(
    ctx: &Ctx,
    target: &Target,
    during: Option<&Fault>,
) -> Result<(Undo, String), String> {
    let node = ctx.resolve(target).await?[0];
    let mut detail = remove_node(ctx, node).await?;
    let inner = match during {
        Some(f) => match Box::pin(apply(ctx, f)).await {
            Ok((undo, d)) => {
                detail.push_str(&format!("; {d}"));
                Some(Box::new(undo))
            }
            Err(e) => {
                detail.push_str(&format!("; concurrent fault failed: {e}"));
                None
            }
        },
        None => None,
    };
    Ok((Undo::ReAdd(node, inner), detail))
}

/// Removes `node` from the membership, within bounded time.
pub(super) async fn remove_node(ctx: &Ctx, node: u64) -> Result<String, String> {
    match tokio::time::timeout(REMOVE_TIMEOUT, ctx.client.remove_node(node)).await {
        Ok(Ok(change)) => Ok(format!(
            "removed node {node} (log index {})",
            change.log_index
        )),
        Ok(Err(e)) => Err(format!("remove node {node}: {e}")),
        Err(_) => Err(format!(
            "remove node {node}: no answer in {} s",
            REMOVE_TIMEOUT.as_secs()
        )),
    }
}

/// Adds `node` back as a learner and promotes it, within bounded time.
pub(super) async fn re_add(ctx: &Ctx, node: u64) -> Result<(), String> {
    let addr = ctx.with_cluster(|c| c.addr(node).to_string());
    tokio::time::timeout(RE_ADD_TIMEOUT, async {
        ctx.client
            .add_learner(node, &addr, true)
            .await
            .map_err(|e| format!("add learner {node}: {e}"))?;
        // A re-added node whose disk was emptied acknowledges nothing until it
        // sees itself a learner and admits itself: the promotion waits.
        loop {
            match ctx.client.promote(node).await {
                Ok(_) => return Ok::<(), String>(()),
                Err(e) if e.to_string().contains("acknowledged no entry") => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(e) => return Err(format!("promote {node}: {e}")),
            }
        }
    })
    .await
    .map_err(|_| {
        format!(
            "re-adding node {node}: no answer in {} s",
            RE_ADD_TIMEOUT.as_secs()
        )
    })?
}
