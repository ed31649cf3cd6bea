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
//! Owns: the per-connection task and the [`LiveHub`]: one cluster watch per
//! event per gateway, shared by every socket of that event (each change is
//! rendered to JSON once), with a ring of the last [`RING_ENTRIES_MAX`]
//! entries so a socket that subscribes after its snapshot misses nothing.
//! Bounds: `ws_clients_max` connections (503 beyond),
//! `ws_clients_per_address_max` per client address (429 beyond), pages of
//! other origins refused unless `[gateway] allowed_origins` lists them (403),
//! [`SEND_TIMEOUT_MS`] per frame (a client that does not read is dropped), a
//! [`FEED_BUFFER`]-deep broadcast per event (a socket that falls behind gets
//! a resync), [`RESYNCS_MAX`] resyncs per connection, incoming frames
//! ignored and capped at [`INCOMING_FRAME_BYTES_MAX`].
//!
//! A feed starts at an index the gateway read itself (a linearizable
//! snapshot, or a client's `?from=` checked against a linearizable read),
//! so a client cannot park the shared watch in the future. It ends when the
//! cluster stream ends or resyncs (every socket then resyncs) or when no
//! socket has listened for [`FEED_IDLE_MS`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use state_machine::{Query, QueryResult};
use tokio::sync::{broadcast, OwnedSemaphorePermit};

use crate::api::check_event_id;
use crate::client_addr::{ClientAddr, CountGuard};
use crate::cluster::{Consistency, WatchItem};
use crate::problem::{ApiPath, ApiQuery, Problem};
use crate::AppState;

/// Longest wait for one frame to be sent before the client is dropped, in ms.
pub const SEND_TIMEOUT_MS: u64 = 10_000;
/// Resyncs one connection may go through before it is closed.
pub const RESYNCS_MAX: u32 = 16;
/// Largest frame accepted from a client, in bytes (clients need send nothing).
pub const INCOMING_FRAME_BYTES_MAX: usize = 4_096;
/// Entries with changes each event feed keeps for late subscribers.
pub const RING_ENTRIES_MAX: usize = 4_096;
/// Frames buffered per event for its sockets; a socket further behind resyncs.
pub const FEED_BUFFER: usize = 1_024;
/// A feed with no socket for this long stops its cluster watch, in ms.
pub const FEED_IDLE_MS: u64 = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveParams {
    #[serde(default)]
    from: Option<u64>,
}

/// Whether the page that opened the socket may: no `Origin` (not a
/// browser), the gateway's own origin, or one of `allowed_origins`.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.to_ascii_lowercase();
    if allowed.iter().any(|a| a == "*" || *a == origin) {
        return true;
    }
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    match (origin.split_once("://"), host) {
        (Some((_, origin_host)), Some(host)) => origin_host == host,
        _ => false,
    }
}

#[tracing::instrument(skip_all, fields(event = %event_id))]
pub async fn live(
    State(state): State<AppState>,
    ApiPath(event_id): ApiPath<String>,
    ApiQuery(params): ApiQuery<LiveParams>,
    headers: HeaderMap,
    client: Option<axum::Extension<ClientAddr>>,
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
    if !origin_allowed(&headers, &state.settings.allowed_origins) {
        return Err(Problem::forbidden(
            "origin_not_allowed",
            "pages of this origin may not open the live seat map",
        ));
    }
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
    let per_address = match client {
        Some(axum::Extension(c)) => Some(
            state
                .ws_per_address
                .try_add(c.key, state.settings.ws_clients_per_address_max)
                .ok_or_else(|| {
                    Problem::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too_many_clients",
                        "too many live seat maps from this address",
                    )
                    .retry_after_ms(5_000)
                })?,
        ),
        None => None,
    };
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
        .on_upgrade(move |socket| {
            serve_client(state, socket, event_id, params.from, (permit, per_address))
        })
        .into_response())
}

/// Keeps the WebSocket gauge right however the task ends.
struct ClientGauge(AppState);

impl Drop for ClientGauge {
    fn drop(&mut self) {
        self.0.metrics.ws_clients.dec();
    }
}

async fn send_text(
    socket: &mut futures::stream::SplitSink<WebSocket, Message>,
    text: &str,
) -> bool {
    let frame = Message::Text(text.into());
    matches!(
        tokio::time::timeout(Duration::from_millis(SEND_TIMEOUT_MS), socket.send(frame)).await,
        Ok(Ok(()))
    )
}

async fn send(
    socket: &mut futures::stream::SplitSink<WebSocket, Message>,
    value: serde_json::Value,
) -> bool {
    send_text(socket, &value.to_string()).await
}

/// One frame of an event feed, rendered once for every socket.
#[derive(Clone, Debug)]
enum FeedItem {
    Changes {
        index: u64,
        frame: Arc<str>,
    },
    /// The feed ended; every socket resyncs.
    Ended {
        reason: Arc<str>,
    },
}

/// The shared state of one event's feed.
struct FeedInner {
    /// Recent change frames, oldest first.
    ring: VecDeque<(u64, Arc<str>)>,
    /// The feed holds every change at indexes `>= covered_from`.
    covered_from: u64,
    ended: bool,
}

/// One event's feed: the ring and the broadcast, both under one lock for
/// publishing, so a subscriber takes the ring and its receiver atomically.
struct EventFeed {
    inner: Mutex<FeedInner>,
    tx: broadcast::Sender<FeedItem>,
}

/// Every event feed of this gateway. Bounded: a feed exists only while a
/// socket listens (or for [`FEED_IDLE_MS`] after), and sockets are capped.
#[derive(Default)]
pub struct LiveHub {
    feeds: Mutex<HashMap<String, Arc<EventFeed>>>,
}

/// What a socket gets from [`LiveHub::subscribe`].
struct Subscription {
    backlog: Vec<(u64, Arc<str>)>,
    rx: broadcast::Receiver<FeedItem>,
}

/// Why a socket must read a snapshot first.
enum SubscribeError {
    /// `from` is older than the feed holds.
    Resync(String),
    Problem(Problem),
}

impl LiveHub {
    /// Subscribes to `event_id`'s changes at indexes `>= from`, starting
    /// the event's feed if there is none. `trusted`: `from` comes from this
    /// gateway's own linearizable snapshot read.
    async fn subscribe(
        &self,
        state: &AppState,
        event_id: &str,
        from: u64,
        trusted: bool,
    ) -> Result<Subscription, SubscribeError> {
        if let Some(sub) = self.try_join(event_id, from)? {
            return Ok(sub);
        }
        // No live feed: start one, at an index the gateway vouches for.
        let start = if trusted {
            from
        } else {
            let answer = crate::api::read(
                state,
                Query::Event {
                    event_id: event_id.to_string(),
                },
                Consistency::Linearizable,
            )
            .await
            .map_err(SubscribeError::Problem)?;
            from.min(answer.applied_index + 1)
        };
        if start > from {
            return Err(SubscribeError::Resync("resume point not known".into()));
        }
        let stream = state
            .cluster
            .watch(event_id.to_string(), start)
            .await
            .map_err(|e| SubscribeError::Problem(e.into()))?;
        let (tx, _) = broadcast::channel(FEED_BUFFER);
        let feed = Arc::new(EventFeed {
            inner: Mutex::new(FeedInner {
                ring: VecDeque::new(),
                covered_from: start,
                ended: false,
            }),
            tx,
        });
        {
            let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
            match feeds.get(event_id) {
                // Another socket started one meanwhile: use it, drop ours.
                Some(other) if !lock(&other.inner).ended => {
                    drop(feeds);
                    return self
                        .try_join(event_id, from)?
                        .ok_or_else(|| SubscribeError::Resync("feed ended".into()));
                }
                _ => {
                    feeds.insert(event_id.to_string(), feed.clone());
                }
            }
        }
        let sub = join(&feed, from)?;
        tokio::spawn(run_feed(state.clone(), event_id.to_string(), feed, stream));
        Ok(sub)
    }

    fn try_join(&self, event_id: &str, from: u64) -> Result<Option<Subscription>, SubscribeError> {
        let feed = {
            let feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
            feeds.get(event_id).cloned()
        };
        match feed {
            Some(feed) if !lock(&feed.inner).ended => join(&feed, from).map(Some),
            _ => Ok(None),
        }
    }

    fn remove(&self, event_id: &str, feed: &Arc<EventFeed>) {
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        if feeds.get(event_id).is_some_and(|f| Arc::ptr_eq(f, feed)) {
            feeds.remove(event_id);
        }
    }

    /// Event feeds running now (tests and metrics).
    pub fn feeds(&self) -> usize {
        self.feeds.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn lock(m: &Mutex<FeedInner>) -> std::sync::MutexGuard<'_, FeedInner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn join(feed: &EventFeed, from: u64) -> Result<Subscription, SubscribeError> {
    let inner = lock(&feed.inner);
    if inner.ended {
        return Err(SubscribeError::Resync("feed ended".into()));
    }
    if from < inner.covered_from {
        return Err(SubscribeError::Resync(format!(
            "changes before index {} are no longer kept here",
            inner.covered_from
        )));
    }
    let backlog = inner
        .ring
        .iter()
        .filter(|(index, _)| *index >= from)
        .cloned()
        .collect();
    Ok(Subscription {
        backlog,
        rx: feed.tx.subscribe(),
    })
}

/// Pumps one cluster watch into an event feed until it ends or idles.
async fn run_feed(
    state: AppState,
    event_id: String,
    feed: Arc<EventFeed>,
    mut stream: crate::cluster::WatchStream,
) {
    let mut idle = tokio::time::interval(Duration::from_millis(FEED_IDLE_MS));
    idle.tick().await;
    let reason: String = loop {
        tokio::select! {
            item = stream.next() => match item {
                Some(WatchItem::Changes { index, changes }) => {
                    let list: Vec<_> = changes.iter().map(|c| json!({ "seat": c.seat, "state": c.state })).collect();
                    let frame: Arc<str> = json!({ "type": "changes", "index": index, "changes": list }).to_string().into();
                    let mut inner = lock(&feed.inner);
                    inner.ring.push_back((index, frame.clone()));
                    if inner.ring.len() > RING_ENTRIES_MAX {
                        if let Some((dropped, _)) = inner.ring.pop_front() {
                            inner.covered_from = dropped + 1;
                        }
                    }
                    // No receiver is fine: late subscribers read the ring.
                    let _ = feed.tx.send(FeedItem::Changes { index, frame });
                }
                Some(WatchItem::Resync { reason }) => break reason,
                None => break "the cluster closed the watch".to_string(),
            },
            _ = idle.tick() => {
                if feed.tx.receiver_count() == 0 {
                    break "idle".to_string();
                }
            }
        }
    };
    {
        let mut inner = lock(&feed.inner);
        inner.ended = true;
        let _ = feed.tx.send(FeedItem::Ended {
            reason: reason.clone().into(),
        });
    }
    state.live.remove(&event_id, &feed);
    tracing::debug!(event = %event_id, %reason, "event feed ended");
}

async fn serve_client(
    state: AppState,
    socket: WebSocket,
    event_id: String,
    from: Option<u64>,
    _slots: (OwnedSemaphorePermit, Option<CountGuard>),
) {
    state.metrics.ws_clients.inc();
    let _gauge = ClientGauge(state.clone());
    let (mut tx, mut rx) = socket.split();
    let mut start = from;
    let mut resyncs = 0u32;
    loop {
        let (from_index, trusted) = match start {
            Some(i) => (i.max(1), false),
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
                (index + 1, true)
            }
        };
        let sub = match state
            .live
            .subscribe(&state, &event_id, from_index, trusted)
            .await
        {
            Ok(sub) => sub,
            Err(SubscribeError::Resync(reason)) => {
                resyncs += 1;
                if !send(&mut tx, json!({ "type": "resync", "reason": reason })).await
                    || resyncs > RESYNCS_MAX
                {
                    return;
                }
                start = None;
                continue;
            }
            Err(SubscribeError::Problem(p)) => {
                let _ = send(
                    &mut tx,
                    json!({ "type": "error", "code": p.code, "detail": p.detail }),
                )
                .await;
                return;
            }
        };
        let Subscription {
            backlog,
            rx: mut changes,
        } = sub;
        for (_, frame) in &backlog {
            if !send_text(&mut tx, frame).await {
                return;
            }
        }
        let resync_reason = loop {
            tokio::select! {
                item = changes.recv() => match item {
                    Ok(FeedItem::Changes { index, frame }) => {
                        if index >= from_index && !send_text(&mut tx, &frame).await {
                            return;
                        }
                    }
                    Ok(FeedItem::Ended { reason }) => break reason.to_string(),
                    Err(broadcast::error::RecvError::Lagged(_)) => break "the client fell behind".to_string(),
                    Err(broadcast::error::RecvError::Closed) => break "the feed closed".to_string(),
                },
                incoming = rx.next() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    // Pings are answered by the protocol layer; other frames carry nothing.
                    Some(Ok(_)) => {}
                },
            }
        };
        resyncs += 1;
        if !send(
            &mut tx,
            json!({ "type": "resync", "reason": resync_reason }),
        )
        .await
            || resyncs > RESYNCS_MAX
        {
            return;
        }
        start = None;
    }
}
