//! The fans of the gateway workload and what they do: each logical
//! purchase over HTTP, retried like a real client, and its translation into
//! the history.
//!
//! Owns: [`GwShared`] (what every fan of a run shares), the fans, the
//! request/retry rule (5xx, 429 and transport errors retried with the SAME
//! headers and body, so the same `Idempotency-Key`, at most [`ATTEMPTS_MAX`]
//! times), and the HTTP-to-history mapping: `ok` on 2xx, `fail` on a
//! definite 4xx, `info` when the retries ran out.
//!
//! Must not: judge results (the checkers do, after the run) or run
//! unbounded: every fan stops at the deadline, on `stop` or at the operation
//! budget; every request has a timeout and a bounded number of attempts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::booking::{
    BookingCall, BookingF, BookingRef, BookingRet, Cancelled, Confirmed, Held, HoldArgs, HoldRef,
};
use crate::harness::recorder::Recorder;
use crate::harness::workload::{WorkloadConfig, EVENT_ID};
use crate::history::EventType;

/// One HTTP request's bound, in ms (the gateway's own bound is much lower).
const HTTP_TIMEOUT_MS: u64 = 8_000;
/// Attempts of one logical operation (first included), same key each time.
const ATTEMPTS_MAX: u32 = 6;
const BACKOFF_MS_INITIAL: u64 = 100;
const BACKOFF_MS_MAX: u64 = 1_000;
/// Bookings one fan keeps before cancelling its oldest.
const BOOKINGS_KEPT_MAX: usize = 3;
/// Explicit holds pick from the first this-many seats, so fans collide.
const HOT_SEATS: u32 = 16;

/// The HTTP client the fans share.
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(HTTP_TIMEOUT_MS))
        .connect_timeout(Duration::from_millis(1_000))
        .build()
        .map_err(|e| format!("http client: {e}"))
}

/// Shared by every fan of a run.
pub struct GwShared {
    pub http: reqwest::Client,
    /// The gateway's base URL.
    pub url: String,
    pub recorder: Arc<Recorder>,
    pub cfg: WorkloadConfig,
    pub deadline: Instant,
    pub ops_started: AtomicU64,
    pub stop: tokio::sync::watch::Receiver<bool>,
}

impl GwShared {
    fn go_on(&self) -> bool {
        Instant::now() < self.deadline
            && !*self.stop.borrow()
            && self.ops_started.fetch_add(1, Ordering::Relaxed) < self.cfg.ops_max
    }
}

/// How a retried request ended.
enum Answer {
    /// A final HTTP answer (2xx or a definite 4xx) and its JSON body.
    Final(u16, Value),
    /// Retries ran out on 5xx, 429 or transport errors: the effect is unknown.
    GaveUp(String),
}

struct Fan {
    id: u64,
    shared: Arc<GwShared>,
    rng: StdRng,
    purchases: u64,
    /// (session token, booking), oldest first.
    bookings: VecDeque<(String, BookingRef)>,
}

fn problem_code(body: &Value) -> String {
    body.get("code")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string()
}

/// Milliseconds since the epoch of the gateway's `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[10] != b'T' || b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| s.get(from..to)?.parse::<u64>().ok();
    let (y, m, d) = (num(0, 4)? as i64, num(5, 7)? as i64, num(8, 10)? as i64);
    let (hh, mm, ss, ms) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    // Days from the civil date (proleptic Gregorian), 1970-01-01 = 0.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let days = u64::try_from(days).ok()?;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms)
}

impl Fan {
    async fn think(&mut self, max_ms: u64) {
        let ms = self.rng.random_range(0..=max_ms);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// Sends one request, retrying 5xx, 429 and transport errors with the
    /// same headers and body (so the same `Idempotency-Key`).
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let url = format!("{}{path}", self.shared.url);
        let mut backoff_ms = BACKOFF_MS_INITIAL;
        let mut last = String::from("no attempt made");
        for attempt in 1..=ATTEMPTS_MAX {
            let mut req = self
                .shared
                .http
                .request(method.clone(), &url)
                .bearer_auth(token);
            if let Some(k) = key {
                req = req.header("Idempotency-Key", k);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    if status < 500 && status != 429 {
                        return Answer::Final(status, body);
                    }
                    last = format!("HTTP {status} {}", problem_code(&body));
                }
                Err(e) => last = format!("transport: {e}"),
            }
            if attempt < ATTEMPTS_MAX {
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(BACKOFF_MS_MAX);
            }
        }
        Answer::GaveUp(last)
    }

    /// Records the completion of an operation from its answer; `ok` builds
    /// the ok value from a 2xx body (`None`: the body did not parse, `info`).
    fn complete(
        &self,
        f: BookingF,
        answer: &Answer,
        ok: impl FnOnce(&Value) -> Option<BookingRet>,
    ) -> Option<BookingRet> {
        let rec = &self.shared.recorder;
        match answer {
            Answer::Final(status, body) if (200..300).contains(status) => match ok(body) {
                Some(ret) => {
                    rec.complete(self.id, EventType::Ok, f, ret.to_value(), None);
                    Some(ret)
                }
                None => {
                    rec.complete(
                        self.id,
                        EventType::Info,
                        f,
                        json!({"unexpected_body": body, "http_status": status}),
                        None,
                    );
                    None
                }
            },
            Answer::Final(status, body) => {
                rec.complete(
                    self.id,
                    EventType::Fail,
                    f,
                    json!({"error": problem_code(body), "http_status": status}),
                    None,
                );
                None
            }
            Answer::GaveUp(why) => {
                rec.complete(self.id, EventType::Info, f, json!({"gave_up": why}), None);
                None
            }
        }
    }

    async fn session(&self, name: &str) -> Option<String> {
        let url = format!("{}/v1/sessions", self.shared.url);
        for _ in 0..3 {
            if let Ok(r) = self
                .shared
                .http
                .post(&url)
                .json(&json!({ "name": name }))
                .send()
                .await
            {
                if r.status().is_success() {
                    if let Ok(v) = r.json::<Value>().await {
                        if let Some(t) = v.get("token").and_then(Value::as_str) {
                            return Some(t.to_string());
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    fn hot_seat(&mut self) -> String {
        let hot = HOT_SEATS.min(self.shared.cfg.seats).max(1);
        format!("A-1-{}", self.rng.random_range(1..=hot))
    }

    async fn hold(&mut self, token: &str, user: &str) -> Option<HoldRef> {
        let key = format!("hold-{}-{}", self.id, self.purchases);
        let (seats, body, count) = if self.rng.random_bool(0.6) {
            let mut seats = vec![self.hot_seat()];
            if self.rng.random_bool(0.3) {
                let s = self.hot_seat();
                if !seats.contains(&s) {
                    seats.push(s);
                }
            }
            seats.sort();
            let body = json!({ "seats": seats });
            (seats, body, None)
        } else {
            let count: u32 = self.rng.random_range(1..=2);
            (
                Vec::new(),
                json!({ "best_available": { "count": count, "allow_non_adjacent": true } }),
                Some(count),
            )
        };
        let call = BookingCall::Hold(HoldArgs {
            seats,
            holder: user.to_string(),
        });
        let mut invoke = call.to_value();
        invoke["idempotency_key"] = json!(key);
        if let Some(c) = count {
            invoke["best_available"] = json!(c);
        }
        self.shared.recorder.invoke(self.id, BookingF::Hold, invoke);
        let path = format!("/v1/events/{EVENT_ID}/holds");
        let answer = self
            .request(reqwest::Method::POST, &path, token, Some(&key), Some(&body))
            .await;
        let ttl = self.shared.cfg.hold_ttl_ms;
        let mut seats_got = Vec::new();
        let ret = self.complete(BookingF::Hold, &answer, |b| {
            let hold_id = b.get("hold_id")?.as_u64()?;
            let expires_at_ms = b.get("expires_at_ms")?.as_u64()?;
            seats_got = b
                .get("seats")?
                .as_array()?
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect();
            Some(BookingRet::Held(Held {
                hold_id,
                expires_at_ms,
                at_ms: expires_at_ms.saturating_sub(ttl),
            }))
        });
        match ret {
            Some(BookingRet::Held(h)) => Some(HoldRef {
                hold_id: h.hold_id,
                holder: user.to_string(),
                seats: seats_got,
            }),
            _ => None,
        }
    }

    async fn checkout(&mut self, token: &str, hold: &HoldRef) -> Option<BookingRef> {
        let call = BookingCall::Confirm(hold.clone());
        self.shared
            .recorder
            .invoke(self.id, BookingF::Confirm, call.to_value());
        let path = format!("/v1/holds/{}/checkout", hold.hold_id);
        let body = json!({ "payment_method": "tok_ok" });
        let answer = self
            .request(reqwest::Method::POST, &path, token, None, Some(&body))
            .await;
        let ret = self.complete(BookingF::Confirm, &answer, |b| {
            Some(BookingRet::Confirmed(Confirmed {
                booking_id: b.get("booking_id")?.as_u64()?,
                hold_expires_at_ms: None,
                at_ms: parse_rfc3339_ms(b.get("created_at")?.as_str()?)?,
            }))
        });
        match ret {
            Some(BookingRet::Confirmed(c)) => Some(BookingRef {
                booking_id: c.booking_id,
                holder: hold.holder.clone(),
                seats: hold.seats.clone(),
            }),
            _ => None,
        }
    }

    async fn release(&mut self, token: &str, hold: &HoldRef) {
        let call = BookingCall::Release(hold.clone());
        self.shared
            .recorder
            .invoke(self.id, BookingF::Release, call.to_value());
        let path = format!("/v1/holds/{}", hold.hold_id);
        let answer = self
            .request(reqwest::Method::DELETE, &path, token, None, None)
            .await;
        self.complete(BookingF::Release, &answer, |_| {
            Some(BookingRet::Released(crate::booking::Released {
                at_ms: None,
            }))
        });
    }

    async fn cancel_oldest(&mut self) {
        let Some((token, booking)) = self.bookings.pop_front() else {
            return;
        };
        let call = BookingCall::Cancel(booking.clone());
        self.shared
            .recorder
            .invoke(self.id, BookingF::Cancel, call.to_value());
        let path = format!("/v1/bookings/{}/cancel", booking.booking_id);
        let answer = self
            .request(reqwest::Method::POST, &path, &token, None, Some(&json!({})))
            .await;
        self.complete(BookingF::Cancel, &answer, |_| {
            Some(BookingRet::Cancelled(Cancelled { at_ms: None }))
        });
    }

    async fn run(&mut self) {
        while self.shared.go_on() {
            if self.bookings.len() > BOOKINGS_KEPT_MAX {
                self.cancel_oldest().await;
                continue;
            }
            self.purchases += 1;
            let user = format!("g{}-{}", self.id, self.purchases);
            let Some(token) = self.session(&user).await else {
                self.think(200).await;
                continue;
            };
            match self.hold(&token, &user).await {
                Some(hold) if self.rng.random_bool(0.8) => {
                    if let Some(b) = self.checkout(&token, &hold).await {
                        self.bookings.push_back((token, b));
                    }
                }
                Some(hold) => self.release(&token, &hold).await,
                // Refused or unknown: sometimes make room, as a fan who gives a seat back.
                None if self.rng.random_bool(0.3) => self.cancel_oldest().await,
                None => {}
            }
            self.think(20).await;
        }
    }
}

/// Runs every fan until the deadline, `stop`, or the operation budget.
pub async fn run(shared: Arc<GwShared>) {
    let mut tasks = Vec::new();
    for id in 0..shared.cfg.processes {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let rng = StdRng::seed_from_u64(
                shared
                    .cfg
                    .seed
                    .wrapping_mul(1_000_003)
                    .wrapping_add(id)
                    .wrapping_add(0x6761_7465),
            );
            let mut fan = Fan {
                id,
                shared,
                rng,
                purchases: 0,
                bookings: VecDeque::new(),
            };
            fan.run().await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_gateway_timestamps() {
        // Goal: the booking's created_at converts back to the log time in ms.
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2026-11-28T10:21:04.123Z"),
            Some(1_795_861_264_123)
        );
        assert_eq!(parse_rfc3339_ms("2026-11-28 10:21:04Z"), None);
    }
}
