//! The gateway workload (`--workload gateway-sellout`): fans buy seats
//! through a real `booking gateway` process, over HTTP, like a browser would.
//!
//! Owns: starting and stopping the gateway process next to the nodes (on the
//! harness's side of the network, where clients run; its log is
//! `cluster/logs/gateway.log`), the fans, the HTTP-to-history translation, and
//! the gateway-only checker [`no_unrequested_holds`].
//!
//! A fan, per logical purchase: signs in as a fresh user `g<process>-<n>`
//! (`POST /v1/sessions`), holds explicit seats (from a small hot set, so fans
//! collide) or best-available seats with an `Idempotency-Key`, then checks
//! out with `tok_ok` (or releases the hold). Each request is retried on 5xx,
//! 429 and timeouts with the SAME key, as a real client does (checkout and
//! release ids are derived from the hold by the gateway). History: `ok` on
//! 2xx, `fail` on a definite 4xx (409, 402, 410, ...; value `{"error": code}`),
//! `info` when the retries ran out on 5xx or timeouts. A fan keeps at most
//! [`BOOKINGS_KEPT_MAX`] bookings and cancels its oldest beyond that, and
//! after a refusal, so seats keep changing hands for the whole run.
//!
//! The history uses the booking shapes of `booking.rs`; a best-available
//! hold's invoke has `"seats": []` plus `"best_available": <count>`, and its
//! seats are known from its reply on. So the per-seat linearizability check
//! does not apply (the harness skips it for this workload); the sell-out
//! checkers do, plus [`no_unrequested_holds`].
//!
//! Must not: judge results while running, or run unbounded: every fan stops
//! at the deadline, on `stop` or at the operation budget; every request has a
//! timeout and a bounded number of attempts.
//!
//! Caveat: one gateway process; retries across gateways are tested by the
//! root package's `tests/gateway_faults.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::cluster::spawn_from_lasting_thread;
use super::net::RUN_MARKER_ENV;
use super::recorder::Recorder;
use super::workload::{WorkloadConfig, EVENT_ID};
use crate::booking::{
    BookingCall, BookingF, BookingOp, BookingRef, BookingResult, BookingRet, Cancelled, Confirmed,
    Held, HoldArgs, HoldRef, ReplicaState, SeatView,
};
use crate::checkers::{CheckResult, Finding};
use crate::history::{Event, EventType};

/// The gateway's admin token in the run's config (on loopback).
const ADMIN_TOKEN: &str = "jepsen-gateway-admin";
/// The gateway's bound on one cluster call, in ms: below the cluster's
/// fail-over time (election timeout 400-800 ms plus detection), so a call in
/// flight when the leader dies or stops ends as "outcome unknown" at the
/// gateway, which is the situation the gateway's retry rules are about.
pub const GATEWAY_CLUSTER_TIMEOUT_MS: u64 = 1_000;
/// How long the gateway may take to answer `/readyz` at start.
const GATEWAY_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping gateway gets after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// One HTTP request's bound, in ms (the gateway's own bound is much lower).
const HTTP_TIMEOUT_MS: u64 = 8_000;
/// Attempts of one logical operation (first included), same key each time.
const ATTEMPTS_MAX: u32 = 6;
const BACKOFF_MS_INITIAL: u64 = 100;
const BACKOFF_MS_MAX: u64 = 1_000;
/// Bookings one fan keeps before cancelling its oldest.
pub const BOOKINGS_KEPT_MAX: usize = 3;
/// Explicit holds pick from the first this-many seats, so fans collide.
const HOT_SEATS: u32 = 16;

/// A `booking gateway` child process. Dropping it stops the process.
pub struct GatewayProc {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub log_path: PathBuf,
}

impl GatewayProc {
    /// Writes `<cluster_dir>/gateway.toml` (the run's `cluster.toml` plus a
    /// `[gateway]` section on a free loopback port) and starts the gateway
    /// with `extra_env` (the selftest's bug selector). Does not wait.
    pub fn start(
        booking_bin: &Path,
        cluster_dir: &Path,
        extra_env: &[(String, String)],
    ) -> Result<GatewayProc, String> {
        let cluster_toml = cluster_dir.join("cluster.toml");
        let base = std::fs::read_to_string(&cluster_toml)
            .map_err(|e| format!("{}: {e}", cluster_toml.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("picking a free port for the gateway: {e}"))?
            .port();
        // `[gateway]` goes before the `[[node]]` tables so TOML reads it as its own table.
        let section = format!(
            "[gateway]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
             cluster_timeout_ms = {GATEWAY_CLUSTER_TIMEOUT_MS}\n\n"
        );
        let config = match base.find("[[node]]") {
            Some(at) => format!("{}{section}{}", &base[..at], &base[at..]),
            None => format!("{base}\n{section}"),
        };
        let config_path = cluster_dir.join("gateway.toml");
        std::fs::write(&config_path, config)
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        let logs = cluster_dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
        let log_path = logs.join("gateway.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let mut command = Command::new(booking_bin);
        command
            .arg("gateway")
            .arg("--config")
            .arg(&config_path)
            .env(
                RUN_MARKER_ENV,
                format!("{}-{}", std::process::id(), cluster_dir.display()),
            )
            .env(
                "RUST_LOG",
                std::env::var("JEPSEN_NODE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        for (k, v) in extra_env {
            command.env(k, v);
        }
        // SAFETY: prctl is async-signal-safe; the gateway dies with the harness.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = spawn_from_lasting_thread(command)
            .map_err(|e| format!("starting the gateway ({}): {e}", booking_bin.display()))?;
        Ok(GatewayProc {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            log_path,
        })
    }

    /// Waits until `/readyz` answers 200 (the gateway sees a leader).
    pub async fn wait_ready(&mut self, http: &reqwest::Client) -> Result<(), String> {
        let deadline = Instant::now() + GATEWAY_READY_TIMEOUT;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "the gateway exited with {status} at start; see {}",
                        self.log_path.display()
                    ));
                }
            }
            match http.get(format!("{}/readyz", self.url)).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("/readyz answered {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!(
            "the gateway was not ready within {} s: {last}; see {}",
            GATEWAY_READY_TIMEOUT.as_secs(),
            self.log_path.display()
        ))
    }

    /// SIGTERM, then SIGKILL after the grace.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: the pid of our own unreaped child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        self.stop();
    }
}

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
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
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

/// What one hold invocation asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requested {
    Seats(BTreeSet<String>),
    BestAvailable(u64),
}

/// Each hold invoke's request, by holder, from the raw history (the
/// best-available count is not part of the decoded `HoldArgs`).
pub fn requests_by_holder(events: &[Event<BookingF, Value>]) -> BTreeMap<String, Requested> {
    let mut out = BTreeMap::new();
    for e in events {
        if e.f != BookingF::Hold || e.kind != EventType::Invoke {
            continue;
        }
        let Some(holder) = e.value.get("holder").and_then(Value::as_str) else {
            continue;
        };
        let requested = match e.value.get("best_available").and_then(Value::as_u64) {
            Some(n) => Requested::BestAvailable(n),
            None => Requested::Seats(
                e.value
                    .get("seats")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
        };
        out.insert(holder.to_string(), requested);
    }
    out
}

/// No replica shows a live hold or a booking that its user's requests cannot
/// explain. Each user of this workload makes exactly one hold request, so:
/// after an `ok` hold only the hold id it returned may be theirs; after an
/// `info` hold at most one hold; after a definite `fail` none; and a hold's
/// seats must be ones the user asked for (explicit) or no more than the
/// count asked for (best-available).
pub fn no_unrequested_holds(
    ops: &[BookingOp],
    requests: &BTreeMap<String, Requested>,
    replicas: &[ReplicaState],
) -> CheckResult {
    let mut hold_ops: BTreeMap<&str, &BookingOp> = BTreeMap::new();
    for op in ops {
        if let BookingCall::Hold(a) = &op.call {
            hold_ops.insert(a.holder.as_str(), op);
        }
    }
    let (mut findings, mut checked) = (Vec::new(), 0);
    for replica in replicas {
        // holder -> hold id -> seats, over live holds and bookings.
        let mut by_holder: BTreeMap<&str, BTreeMap<u64, Vec<&str>>> = BTreeMap::new();
        for (seat, view) in &replica.seats {
            let (hold_id, holder) = match view {
                SeatView::Held { hold_id, holder } => (*hold_id, holder),
                SeatView::Booked {
                    hold_id, holder, ..
                } => (*hold_id, holder),
                _ => continue,
            };
            by_holder
                .entry(holder.as_str())
                .or_default()
                .entry(hold_id)
                .or_default()
                .push(seat.as_str());
        }
        for (holder, holds) in &by_holder {
            checked += 1;
            let shown: Vec<String> = holds
                .iter()
                .map(|(h, seats)| format!("hold {h} {seats:?}"))
                .collect();
            let mut finding = |message: String, ops: Vec<usize>| {
                findings.push(Finding {
                    message: format!("node {}: {message}", replica.node),
                    ops,
                    seat: holds.values().flatten().next().map(|s| s.to_string()),
                    node: Some(replica.node.clone()),
                });
            };
            let Some(op) = hold_ops.get(holder) else {
                finding(
                    format!("user {holder:?} made no hold request but has {shown:?}"),
                    Vec::new(),
                );
                continue;
            };
            let explained = match &op.result {
                BookingResult::Ok(BookingRet::Held(h)) => holds.keys().all(|id| *id == h.hold_id),
                BookingResult::Unknown => holds.len() <= 1,
                _ => false,
            };
            if !explained {
                finding(
                    format!(
                        "user {holder:?} asked for one hold (op {}, {}) but has {shown:?}",
                        op.id,
                        describe_result(&op.result)
                    ),
                    vec![op.id],
                );
                continue;
            }
            for (hold_id, seats) in holds {
                let fits = match requests.get(*holder) {
                    Some(Requested::Seats(asked)) => seats.iter().all(|s| asked.contains(*s)),
                    Some(Requested::BestAvailable(n)) => seats.len() as u64 <= *n,
                    None => false,
                };
                if !fits {
                    finding(
                        format!(
                            "user {holder:?} has hold {hold_id} on {seats:?}, more than op {} asked for ({:?})",
                            op.id,
                            requests.get(*holder)
                        ),
                        vec![op.id],
                    );
                }
            }
        }
    }
    CheckResult::new("no_unrequested_holds", findings, checked, 0)
}

fn describe_result(r: &BookingResult) -> String {
    match r {
        BookingResult::Ok(BookingRet::Held(h)) => format!("ok: hold {}", h.hold_id),
        BookingResult::Ok(_) => "ok".into(),
        BookingResult::Refused(x) => format!("refused: {}", x.error),
        BookingResult::Failed => "failed".into(),
        BookingResult::Unknown => "unknown".into(),
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

    fn hold_op(id: usize, holder: &str, result: BookingResult) -> BookingOp {
        BookingOp {
            id,
            process: 0,
            call: BookingCall::Hold(HoldArgs {
                seats: vec![],
                holder: holder.into(),
            }),
            result,
            invoke_ns: 0,
            complete_ns: Some(1),
            index: None,
        }
    }

    fn replica(views: &[(&str, SeatView)]) -> ReplicaState {
        ReplicaState {
            node: "n1".into(),
            seats: views
                .iter()
                .map(|(s, v)| (s.to_string(), v.clone()))
                .collect(),
            state_hash: "h".into(),
            event_missing: false,
        }
    }

    #[test]
    fn extra_hold_of_a_user_is_found_and_explained_ones_are_not() {
        // Goal: one ok request explains its own hold only; a definite fail explains none.
        let held = |hold_id| {
            BookingResult::Ok(BookingRet::Held(Held {
                hold_id,
                expires_at_ms: 10,
                at_ms: 0,
            }))
        };
        let ops = vec![
            hold_op(0, "u1", held(5)),
            hold_op(1, "u2", BookingResult::Unknown),
            hold_op(
                2,
                "u3",
                BookingResult::Refused(crate::booking::Refusal {
                    error: "seat_unavailable".into(),
                    at_ms: None,
                }),
            ),
        ];
        let mut requests = BTreeMap::new();
        requests.insert("u1".to_string(), Requested::BestAvailable(1));
        requests.insert("u2".to_string(), Requested::BestAvailable(1));
        requests.insert(
            "u3".to_string(),
            Requested::Seats(["A-1-3".to_string()].into()),
        );
        let h = |hold_id, holder: &str| SeatView::Held {
            hold_id,
            holder: holder.into(),
        };
        let fine = replica(&[("A-1-1", h(5, "u1")), ("A-1-2", h(7, "u2"))]);
        assert!(no_unrequested_holds(&ops, &requests, &[fine]).valid);
        let extra = replica(&[("A-1-1", h(5, "u1")), ("A-1-2", h(6, "u1"))]);
        let r = no_unrequested_holds(&ops, &requests, &[extra]);
        assert!(!r.valid);
        assert_eq!(r.offending_ops, vec![0]);
        let failed_but_held = replica(&[("A-1-3", h(8, "u3"))]);
        assert!(!no_unrequested_holds(&ops, &requests, &[failed_but_held]).valid);
        let unknown_twice = replica(&[("A-1-1", h(9, "u2")), ("A-1-2", h(10, "u2"))]);
        assert!(!no_unrequested_holds(&ops, &requests, &[unknown_twice]).valid);
    }
}
