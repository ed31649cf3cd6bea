//! Reads: [`Client::read`] (a query at a chosen consistency) and
//! [`Client::watch`] (the committed seat changes of one event).
//!
//! Must not: write, or resume a broken watch on its own (the caller decides
//! from which index to watch again, after reading the availability).

use futures::Stream;
use proto::booking as pb;
use state_machine::{Query, QueryResult, SeatChange, SeatStatus};

use super::retry::CallKind;
use super::Client;
use crate::error::ClientError;
use crate::types::{Consistency, ResyncReason, WatchItem};

impl Client {
    /// Answers a query at the requested consistency, with the applied index
    /// the answer reflects. Any node may answer.
    pub async fn read(
        &self,
        query: Query,
        consistency: Consistency,
    ) -> Result<(QueryResult, u64), ClientError> {
        let query_json = serde_json::to_vec(&query).map_err(|e| ClientError::Protocol {
            reason: format!("query does not encode: {e}"),
        })?;
        let consistency = match consistency {
            Consistency::Linearizable => pb::Consistency::Linearizable,
            Consistency::Stale => pb::Consistency::Stale,
        } as i32;
        let message = pb::ReadRequest {
            consistency,
            query_json,
        };
        let routed = self
            .route(CallKind::Read, move |mut c| {
                let message = message.clone();
                async move { c.read(message).await }
            })
            .await?;
        let result: QueryResult =
            serde_json::from_slice(&routed.value.result_json).map_err(|e| {
                ClientError::Protocol {
                    reason: format!("query result does not decode: {e}"),
                }
            })?;
        Ok((result, routed.value.applied_index))
    }

    /// Committed seat changes of `event_id` from log index `from_index` (0:
    /// from now on). The stream ends after a [`WatchItem::Resync`] or an
    /// error; resume by watching again from the last index seen + 1.
    pub async fn watch(
        &self,
        event_id: &str,
        from_index: u64,
    ) -> Result<impl Stream<Item = Result<WatchItem, ClientError>> + Send + 'static, ClientError>
    {
        let message = pb::WatchRequest {
            event_id: event_id.to_string(),
            from_index,
        };
        let routed = self
            .route(CallKind::Read, move |mut c| {
                let message = message.clone();
                async move { c.watch(message).await }
            })
            .await?;
        let stream = futures::stream::unfold(Some(routed.value), |state| async move {
            let mut streaming = state?;
            match streaming.message().await {
                Ok(Some(message)) => match convert_watch(message) {
                    Ok(item @ WatchItem::Resync { .. }) => Some((Ok(item), None)),
                    Ok(item) => Some((Ok(item), Some(streaming))),
                    Err(e) => Some((Err(e), None)),
                },
                Ok(None) => None,
                Err(status) => Some((
                    Err(ClientError::Unavailable {
                        attempts: 1,
                        last_error: format!("watch stream broke: {status}"),
                    }),
                    None,
                )),
            }
        });
        Ok(stream)
    }
}

fn convert_watch(message: pb::WatchMessage) -> Result<WatchItem, ClientError> {
    use pb::watch_message::Kind;
    match message.kind {
        Some(Kind::Changes(c)) => {
            let mut changes = Vec::with_capacity(c.changes.len());
            for change in c.changes {
                let state: SeatStatus =
                    serde_json::from_slice(&change.state_json).map_err(|e| {
                        ClientError::Protocol {
                            reason: format!("seat state does not decode: {e}"),
                        }
                    })?;
                changes.push(SeatChange {
                    event_id: change.event_id,
                    seat: change.seat,
                    state,
                });
            }
            Ok(WatchItem::Changes {
                log_index: c.log_index,
                changes,
            })
        }
        Some(Kind::Resync(r)) => {
            let reason = match pb::resync::Reason::try_from(r.reason) {
                Ok(pb::resync::Reason::TooOld) => ResyncReason::TooOld,
                Ok(pb::resync::Reason::SlowSubscriber) => ResyncReason::SlowSubscriber,
                Ok(pb::resync::Reason::SnapshotInstalled) => ResyncReason::SnapshotInstalled,
                Ok(pb::resync::Reason::Shutdown) => ResyncReason::Shutdown,
                _ => ResyncReason::Unspecified,
            };
            Ok(WatchItem::Resync {
                reason,
                oldest_index: r.oldest_index,
                applied_index: r.applied_index,
            })
        }
        None => Err(ClientError::Protocol {
            reason: "watch message without a kind".into(),
        }),
    }
}
