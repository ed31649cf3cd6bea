//! The waiting room: join (a position from this gateway's block, in a
//! signed token; no log write per fan) and where a token stands (computed
//! from the token and the cached watermark; no cluster call per fan).
//!
//! Every waiting answer carries `poll_after_ms`: when to ask again (see
//! [`poll_after_ms`]). Fans near the front poll often, fans further back
//! only as often as the line can reach them, never more than half the
//! hold window apart; a fan who follows it learns of its admission within
//! a quarter of the admission grace.
//!
//! Caveats: `estimated_wait_ms` is a rough upper bound (batches ahead ×
//! hold TTL: admissions free up sooner as fans finish). Each join hands out
//! a new position (joining again after the opening gives a later place;
//! before it, another draw, bounded by the per-user rate limit), and one
//! admission per user is enforced when they hold.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use state_machine::{admit_grace_ms, fan_place, FanPlace, WaitingRoomView};

use super::check_event_id;
use crate::auth::User;
use crate::keys::QueueClaims;
use crate::problem::{ApiPath, Problem};
use crate::{rfc3339_ms, AppState};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where `position` of `user` stands in `view`. A position past the view
/// (a block reserved after this cached read) is at the back of the line.
fn place(view: &WaitingRoomView, position: u64) -> FanPlace {
    match fan_place(view, position) {
        FanPlace::Unknown if view.seed.is_none() => FanPlace::PendingShuffle,
        FanPlace::Unknown => FanPlace::Waiting {
            ahead: (position - 1).saturating_sub(view.admitted_places),
        },
        p => p,
    }
}

/// Shortest `poll_after_ms` a waiting fan is told.
pub const POLL_AFTER_MS_MIN: u64 = 250;
/// Longest `poll_after_ms`; half the hold window bounds it as well.
pub const POLL_AFTER_MS_MAX: u64 = 30_000;

/// When a fan with `ahead` fans in front of it should poll again: the
/// earliest it can be admitted, and near the front a quarter of the
/// admission grace (`admit_grace_ms`), within [`POLL_AFTER_MS_MIN`] and
/// half the hold window (at most [`POLL_AFTER_MS_MAX`]).
///
/// Why "earliest": a round's places count as shopping for the grace, so
/// the places admitted within any grace-long stretch are at most one
/// batch, and a fan with `ahead` in front waits at least
/// ⌊ahead / admit_batch⌋ graces. A fan who follows the hint learns of its
/// admission within a quarter of the grace (or by the time the hold window
/// is half gone, for a window under 2 s), so it acts within the grace and
/// its place is not given to the next round meanwhile. Polling later than
/// the grace would let the room over-admit (the places of admitted fans
/// who have not held yet stop counting after the grace).
pub fn poll_after_ms(view: &WaitingRoomView, ahead: u64) -> u64 {
    let ceiling = (view.hold_ttl_ms / 2).clamp(POLL_AFTER_MS_MIN, POLL_AFTER_MS_MAX);
    let grace_ms = admit_grace_ms(view.hold_ttl_ms);
    let batch = u64::from(view.admit_batch.max(1));
    let earliest_ms = (ahead / batch).saturating_mul(grace_ms);
    earliest_ms
        .max(grace_ms / 4)
        .clamp(POLL_AFTER_MS_MIN, ceiling)
}

/// `estimated_wait_ms`: batches ahead × the hold window.
fn upper_wait_ms(view: &WaitingRoomView, ahead: u64) -> u64 {
    let batch = view.admit_batch.max(1) as u64;
    (ahead + 1).div_ceil(batch).saturating_mul(view.hold_ttl_ms)
}

/// A join's or a position's answer (the schema is `queue_place` in
/// `openapi.rs`).
#[derive(serde::Serialize)]
struct QueueAnswer<'a> {
    event_id: &'a str,
    queue_position: u64,
    position: Option<u64>,
    admitted: bool,
    admitted_until: Option<String>,
    state: &'static str,
    estimated_wait_ms: Option<u64>,
    poll_after_ms: Option<u64>,
    /// In a join's answer only.
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_token: Option<String>,
}

fn queue_answer(
    view: &WaitingRoomView,
    position: u64,
    queue_token: Option<String>,
) -> QueueAnswer<'_> {
    let (state, ahead, until) = match place(view, position) {
        FanPlace::PendingShuffle => ("pending_shuffle", None, None),
        FanPlace::Waiting { ahead } => ("waiting", Some(ahead), None),
        FanPlace::Admitted { until_ms } => ("admitted", None, Some(until_ms)),
        FanPlace::Lapsed | FanPlace::Unknown => ("lapsed", None, None),
    };
    let (estimated_wait_ms, poll_after_ms) = match (state, ahead) {
        ("waiting", Some(ahead)) => (
            Some(upper_wait_ms(view, ahead)),
            Some(poll_after_ms(view, ahead)),
        ),
        ("admitted", _) => (Some(0), None),
        // Anyone in the pre-queue may be in the opening's first round.
        ("pending_shuffle", _) => (None, Some(poll_after_ms(view, 0))),
        _ => (None, None),
    };
    QueueAnswer {
        event_id: &view.event_id,
        queue_position: position,
        position: ahead.map(|a| a + 1),
        admitted: until.is_some(),
        admitted_until: until.map(rfc3339_ms),
        state,
        estimated_wait_ms,
        poll_after_ms,
        queue_token,
    }
}

#[tracing::instrument(skip_all, fields(event = %event_id, user = %user.0))]
pub async fn join(
    State(state): State<AppState>,
    user: User,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Response, Problem> {
    check_event_id(&event_id)?;
    let taken = state.queue_desks.take(&state, &event_id).await?;
    let token = state
        .keys
        .issue_queue_token(&event_id, &user.0, taken.position, now_ms());
    let body = queue_answer(&taken.view, taken.position, Some(token));
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// The claims of `token` if it is valid and names this user and event;
/// otherwise the problem to answer (403 `invalid_queue_token`).
pub(crate) fn verified_token(
    state: &AppState,
    token: &str,
    event_id: &str,
    user: &str,
) -> Result<QueueClaims, Problem> {
    let claims = state.keys.verify_queue_token(token).ok_or_else(|| {
        Problem::forbidden("invalid_queue_token", "the waiting-room token is not valid")
    })?;
    if claims.e != event_id || claims.u != user {
        return Err(Problem::forbidden(
            "invalid_queue_token",
            "the waiting-room token belongs to another user or event",
        ));
    }
    Ok(claims)
}

#[tracing::instrument(skip_all, fields(event = %event_id, user = %user.0))]
pub async fn position(
    State(state): State<AppState>,
    user: User,
    ApiPath((event_id, token)): ApiPath<(String, String)>,
) -> Result<Response, Problem> {
    check_event_id(&event_id)?;
    let claims = verified_token(&state, &token, &event_id, &user.0)?;
    let view = state.queue_desks.view(&state, &event_id).await?;
    Ok(axum::Json(queue_answer(&view, claims.p, None)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(admitted_places: u64, lapsed_places: u64) -> WaitingRoomView {
        WaitingRoomView {
            event_id: "e".into(),
            admit_batch: 5_000,
            hold_ttl_ms: 15_000,
            clock_ms: 0,
            seed: Some([0; 32]),
            next_position: 1_000_001,
            pre_count: 0,
            admitted_places,
            lapsed_places,
            rounds: Vec::new(),
            shopping: 0,
            shoppers: 0,
        }
    }

    /// Goal: the poll hint is a quarter of the admission grace at the
    /// front, the earliest possible admission further back (a batch per
    /// grace), and never outside [250 ms, half the hold window].
    #[test]
    fn poll_after_is_the_earliest_admission_within_bounds() {
        // Hold window 15 s: grace 1.5 s; batch 5 000.
        let v = view(20_000, 10_000);
        assert_eq!(poll_after_ms(&v, 0), 375);
        assert_eq!(poll_after_ms(&v, 4_999), 375, "could be in the next round");
        assert_eq!(poll_after_ms(&v, 5_000), 1_500, "a batch back: one grace");
        assert_eq!(poll_after_ms(&v, 15_000), 4_500);
        assert_eq!(poll_after_ms(&v, 1_000_000), 7_500, "half the window");
        let mut short = view(20_000, 10_000);
        short.hold_ttl_ms = 1_000;
        assert_eq!(poll_after_ms(&short, 0), POLL_AFTER_MS_MIN);
        assert_eq!(poll_after_ms(&short, 1_000_000), 500);
        let mut long = view(20_000, 10_000);
        long.hold_ttl_ms = 600_000;
        assert_eq!(poll_after_ms(&long, 1_000_000), POLL_AFTER_MS_MAX);
        for ahead in [0, 1, 10, 1_000, 100_000, u64::MAX / 2] {
            let ms = poll_after_ms(&v, ahead);
            assert!((POLL_AFTER_MS_MIN..=7_500).contains(&ms), "{ahead}: {ms}");
        }
    }
}
