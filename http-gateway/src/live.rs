//! `GET /v1/events/{id}/live`: the live seat map over WebSocket.
//!
//! Protocol (server → client, JSON text frames):
//! - `{"type":"snapshot","index":N,"availability":{...}}`: every seat as of
//!   log index N (the first message unless `?from=` was given).
//! - `{"type":"changes","index":N,"changes":[{"seat":"A-1-2","state":"held"},...]}`:
//!   the event's seat changes made by the entry at index N, in order.
//! - `{"type":"resync","reason":"..."}`: the changes could not continue
//!   without a gap; a fresh snapshot follows at once.
//!
//! `?from=<index>` resumes after a reconnect: changes at indexes >= `from`
//! (a client passes its last seen index + 1) with no snapshot, unless they
//! are no longer kept, in which case it gets `resync` and a snapshot.
//!
//! Owns: the per-connection task. Bounds: `ws_clients_max` connections
//! (503 beyond), [`SEND_TIMEOUT_MS`] per frame (a client that does not read
//! is dropped), [`RESYNCS_MAX`] resyncs per connection, incoming frames
//! ignored and capped at [`INCOMING_FRAME_BYTES_MAX`].

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use state_machine::{Query, QueryResult};
use tokio::sync::OwnedSemaphorePermit;

use crate::api::check_event_id;
use crate::cluster::{Consistency, WatchItem};
use crate::problem::{ApiPath, ApiQuery, Problem};
use crate::AppState;

/// Longest wait for one frame to be sent before the client is dropped, in ms.
pub const SEND_TIMEOUT_MS: u64 = 10_000;
/// Resyncs one connection may go through before it is closed.
pub const RESYNCS_MAX: u32 = 16;
/// Largest frame accepted from a client, in bytes (clients need send nothing).
pub const INCOMING_FRAME_BYTES_MAX: usize = 4_096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveParams {
    #[serde(default)]
    from: Option<u64>,
}

#[tracing::instrument(skip_all, fields(event = %event_id))]
pub async fn live(
    State(state): State<AppState>,
    ApiPath(event_id): ApiPath<String>,
    ApiQuery(params): ApiQuery<LiveParams>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Problem> {
    check_event_id(&event_id)?;
    let ws = ws.map_err(|r| {
        let status = if r.status().is_client_error() {
            r.status()
        } else {
            StatusCode::BAD_REQUEST
        };
        Problem::new(
            status,
            "websocket_required",
            format!("this route speaks WebSocket: {}", r.body_text()),
        )
    })?;
    // Refuse unknown events before upgrading, so the client gets a 404.
    let answer = crate::api::read(
        &state,
        Query::Event {
            event_id: event_id.clone(),
        },
        Consistency::Stale,
    )
    .await?;
    if let QueryResult::Event(Err(e)) = answer.result {
        return Err(e.into());
    }
    let permit = state.ws_slots.clone().try_acquire_owned().map_err(|_| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_clients",
            "too many live clients",
        )
        .retry_after_ms(5_000)
    })?;
    Ok(ws
        .max_message_size(INCOMING_FRAME_BYTES_MAX)
        .max_frame_size(INCOMING_FRAME_BYTES_MAX)
        .on_upgrade(move |socket| serve_client(state, socket, event_id, params.from, permit))
        .into_response())
}

/// Keeps the WebSocket gauge right however the task ends.
struct ClientGauge(AppState);

impl Drop for ClientGauge {
    fn drop(&mut self) {
        self.0.metrics.ws_clients.dec();
    }
}

async fn send(
    socket: &mut futures::stream::SplitSink<WebSocket, Message>,
    value: serde_json::Value,
) -> bool {
    let frame = Message::Text(value.to_string().into());
    matches!(
        tokio::time::timeout(Duration::from_millis(SEND_TIMEOUT_MS), socket.send(frame)).await,
        Ok(Ok(()))
    )
}

async fn serve_client(
    state: AppState,
    socket: WebSocket,
    event_id: String,
    from: Option<u64>,
    _permit: OwnedSemaphorePermit,
) {
    state.metrics.ws_clients.inc();
    let _gauge = ClientGauge(state.clone());
    let (mut tx, mut rx) = socket.split();
    let mut start = from;
    let mut resyncs = 0u32;
    loop {
        let from_index = match start {
            Some(i) => i.max(1),
            None => {
                let answer = match crate::api::read(
                    &state,
                    Query::Availability {
                        event_id: event_id.clone(),
                    },
                    Consistency::Linearizable,
                )
                .await
                {
                    Ok(a) => a,
                    Err(p) => {
                        let _ = send(
                            &mut tx,
                            json!({ "type": "error", "code": p.code, "detail": p.detail }),
                        )
                        .await;
                        return;
                    }
                };
                let view = match answer.result {
                    QueryResult::Availability(Ok(v)) => v,
                    _ => return,
                };
                let index = view.applied_index;
                if !send(
                    &mut tx,
                    json!({ "type": "snapshot", "index": index, "availability": view }),
                )
                .await
                {
                    return;
                }
                index + 1
            }
        };
        let mut changes = match state.cluster.watch(event_id.clone(), from_index).await {
            Ok(s) => s,
            Err(e) => {
                let p = Problem::from(e);
                let _ = send(
                    &mut tx,
                    json!({ "type": "error", "code": p.code, "detail": p.detail }),
                )
                .await;
                return;
            }
        };
        loop {
            tokio::select! {
                item = changes.next() => match item {
                    Some(WatchItem::Changes { index, changes }) => {
                        let list: Vec<_> = changes.iter().map(|c| json!({ "seat": c.seat, "state": c.state })).collect();
                        if !send(&mut tx, json!({ "type": "changes", "index": index, "changes": list })).await {
                            return;
                        }
                    }
                    Some(WatchItem::Resync { reason }) => {
                        resyncs += 1;
                        if !send(&mut tx, json!({ "type": "resync", "reason": reason })).await || resyncs > RESYNCS_MAX {
                            return;
                        }
                        start = None;
                        break;
                    }
                    None => {
                        let _ = tx.send(Message::Close(None)).await;
                        return;
                    }
                },
                incoming = rx.next() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    // Pings are answered by the protocol layer; other frames carry nothing.
                    Some(Ok(_)) => {}
                },
            }
        }
    }
}
