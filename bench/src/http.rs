//! Talking to the gateway over HTTP like a crowd of fans would: many client
//! addresses, one session token per user, the admin calls that set up a sale.
//!
//! Owns: [`FanPool`] (HTTP clients bound to distinct loopback source
//! addresses), the event layout the benchmarks sell, and the hold/checkout
//! calls with their outcome classes. Must not: compute tokens itself (it signs
//! in through `POST /v1/sessions`, the public way).
//!
//! Caveat: the gateway rate-limits per client address (default 2 000/s). A
//! crowd comes from many addresses, so the pool binds each client to its own
//! address in 127.0.0.0/8 (Linux routes the whole range to `lo`); with
//! [`SOURCE_ADDRESSES`] of them the per-address bucket is not what limits
//! the bench.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// Distinct loopback source addresses, 127.1.0.1 upwards.
pub const SOURCE_ADDRESSES: usize = 128;
/// Seats per row of the benchmark layout.
pub const SEATS_PER_ROW: u32 = 50;
/// Rows per section of the benchmark layout.
pub const ROWS_PER_SECTION: u32 = 100;
/// Concurrent sign-ins before a sale.
pub const LOGIN_CONCURRENCY: usize = 256;
/// Bound on one HTTP request of the bench.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP clients, one per source address.
#[derive(Clone)]
pub struct FanPool {
    pub base: String,
    /// `base` parsed once: the hot calls set a path on a clone of it
    /// instead of formatting and parsing a whole URL per request (URL
    /// parsing was ~5 % of the generator's samples).
    base_url: reqwest::Url,
    clients: Vec<reqwest::Client>,
}

/// What one hold attempt got.
#[derive(Debug, Clone, PartialEq)]
pub enum HoldAnswer {
    /// 201: the hold id and its seats.
    Held { hold_id: u64, seats: Vec<String> },
    /// 409: seat(s) taken; `sold_out` when best-available found nothing left.
    Rejected { sold_out: bool },
    /// 403 on a waiting-room event: not admitted (`lapsed`: admitted once,
    /// and that admission's window has passed).
    NotAdmitted { lapsed: bool },
    /// 429: the gateway's rate limit (answered without touching the cluster).
    RateLimited,
    /// 503 or a transport error: no answer about the seat.
    Unavailable,
    /// Anything else: a bench or gateway bug; counted and shown.
    Other(u16),
}

impl FanPool {
    pub fn new(base: &str) -> anyhow::Result<FanPool> {
        let mut clients = Vec::with_capacity(SOURCE_ADDRESSES);
        for i in 0..SOURCE_ADDRESSES {
            let ip = Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8);
            clients.push(
                reqwest::Client::builder()
                    .local_address(IpAddr::V4(ip))
                    .timeout(REQUEST_TIMEOUT)
                    .pool_max_idle_per_host(1024)
                    .build()?,
            );
        }
        let base = base.trim_end_matches('/').to_string();
        Ok(FanPool {
            base_url: reqwest::Url::parse(&base).with_context(|| format!("gateway URL {base}"))?,
            base,
            clients,
        })
    }

    /// `base` with `path` (which starts with `/`; ids in it are the bench's
    /// own, URL-safe).
    fn url(&self, path: &str) -> reqwest::Url {
        let mut url = self.base_url.clone();
        url.set_path(path);
        url
    }

    pub fn client(&self, fan: u64) -> &reqwest::Client {
        &self.clients[(fan % self.clients.len() as u64) as usize]
    }

    /// Signs `name` in; the session token.
    pub async fn login(&self, fan: u64, name: &str) -> anyhow::Result<String> {
        for _ in 0..20 {
            let r = self
                .client(fan)
                .post(format!("{}/v1/sessions", self.base))
                .json(&json!({ "name": name }))
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => {
                    let v: Value = r.json().await?;
                    return v["token"]
                        .as_str()
                        .map(str::to_string)
                        .context("session answer without token");
                }
                // Rate limited or not ready: wait and try again (bounded).
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        bail!("could not sign in {name}")
    }

    /// One hold attempt: explicit seats or best-available (one seat).
    pub async fn hold(
        &self,
        fan: u64,
        token: &str,
        event_id: &str,
        seat: Option<&str>,
    ) -> HoldAnswer {
        let pick = match seat {
            Some(s) => Pick::Seat(s),
            None => Pick::BestAvailable,
        };
        self.hold_with(fan, token, event_id, pick, None).await
    }

    /// One hold attempt of one seat picked by `pick`, presenting the
    /// waiting-room `queue_token` when the event has a room.
    pub async fn hold_with(
        &self,
        fan: u64,
        token: &str,
        event_id: &str,
        pick: Pick<'_>,
        queue_token: Option<&str>,
    ) -> HoldAnswer {
        let body = HoldBody {
            seats: match pick {
                Pick::Seat(s) => Some([s]),
                _ => None,
            },
            best_available: matches!(pick, Pick::BestAvailable).then_some(BestAvailableBody {
                count: 1,
                allow_non_adjacent: true,
            }),
            general_admission: match pick {
                Pick::GeneralAdmission(section) => Some(GeneralAdmissionBody { section, count: 1 }),
                _ => None,
            },
            queue_token,
        };
        let r = self
            .client(fan)
            .post(self.url(&format!("/v1/events/{event_id}/holds")))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await;
        let Ok(r) = r else {
            return HoldAnswer::Unavailable;
        };
        match r.status().as_u16() {
            201 => match r.json::<HeldAnswer>().await {
                Ok(v) => HoldAnswer::Held {
                    hold_id: v.hold_id.unwrap_or(0),
                    seats: v.seats,
                },
                Err(_) => HoldAnswer::Other(201),
            },
            409 => {
                let v: ProblemAnswer = r.json().await.unwrap_or_default();
                let sold_out = v.code == "not_enough_seats" && v.available == Some(0);
                HoldAnswer::Rejected { sold_out }
            }
            403 => {
                let v: ProblemAnswer = r.json().await.unwrap_or_default();
                HoldAnswer::NotAdmitted {
                    lapsed: v.code == "admission_lapsed",
                }
            }
            429 => HoldAnswer::RateLimited,
            503 => HoldAnswer::Unavailable,
            s => HoldAnswer::Other(s),
        }
    }

    /// Checks a hold out with the simulated provider's always-succeeding
    /// token. True on 201 (booked).
    pub async fn checkout(&self, fan: u64, token: &str, hold_id: u64) -> bool {
        self.pay(fan, token, hold_id, "tok_ok").await == PayAnswer::Booked
    }

    /// Checks a hold out with the simulated provider's `payment_method`
    /// (`tok_ok`, `tok_declined`, `tok_slow_<ms>`: http-gateway/src/payments.rs).
    pub async fn pay(&self, fan: u64, token: &str, hold_id: u64, method: &str) -> PayAnswer {
        let r = self
            .client(fan)
            .post(self.url(&format!("/v1/holds/{hold_id}/checkout")))
            .bearer_auth(token)
            .json(&PayBody {
                payment_method: method,
            })
            .send()
            .await;
        let Ok(r) = r else {
            return PayAnswer::Failed(0);
        };
        let status = r.status().as_u16();
        // Read the body to its end so the connection goes back to the pool.
        let _ = r.bytes().await;
        match status {
            201 => PayAnswer::Booked,
            402 => PayAnswer::Declined,
            s => PayAnswer::Failed(s),
        }
    }

    /// Joins the event's waiting room: `POST /v1/events/{id}/queue`.
    pub async fn join(&self, fan: u64, token: &str, event_id: &str) -> QueueAnswer {
        let r = self
            .client(fan)
            .post(self.url(&format!("/v1/events/{event_id}/queue")))
            .bearer_auth(token)
            .send()
            .await;
        queue_answer(r, 201).await
    }

    /// Where `queue_token` stands: `GET /v1/events/{id}/queue/{token}`.
    pub async fn position(
        &self,
        fan: u64,
        token: &str,
        event_id: &str,
        queue_token: &str,
    ) -> QueueAnswer {
        let r = self
            .client(fan)
            .get(self.url(&format!("/v1/events/{event_id}/queue/{queue_token}")))
            .bearer_auth(token)
            .send()
            .await;
        queue_answer(r, 200).await
    }
}

// The hot calls' bodies and answers as typed structs: building and
// parsing `serde_json::Value` trees per request was ~6 % of the
// generator's samples. Answers ignore fields they do not name, and a
// field the gateway leaves out reads as absent, as `Value` indexing did.

#[derive(serde::Serialize)]
struct HoldBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    seats: Option<[&'a str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    best_available: Option<BestAvailableBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    general_admission: Option<GeneralAdmissionBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_token: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct BestAvailableBody {
    count: u32,
    allow_non_adjacent: bool,
}

#[derive(serde::Serialize)]
struct GeneralAdmissionBody<'a> {
    section: &'a str,
    count: u32,
}

#[derive(serde::Serialize)]
struct PayBody<'a> {
    payment_method: &'a str,
}

#[derive(serde::Deserialize)]
struct HeldAnswer {
    hold_id: Option<u64>,
    #[serde(default)]
    seats: Vec<String>,
}

#[derive(serde::Deserialize, Default)]
struct ProblemAnswer {
    #[serde(default)]
    code: String,
    available: Option<u64>,
}

#[derive(serde::Deserialize)]
struct QueueBody {
    queue_token: Option<String>,
    queue_position: Option<u64>,
    position: Option<u64>,
    admitted: Option<bool>,
    state: Option<String>,
    estimated_wait_ms: Option<u64>,
    poll_after_ms: Option<u64>,
}

/// Which seat a hold asks for.
#[derive(Clone, Copy, Debug)]
pub enum Pick<'a> {
    /// This seat id (choose-your-seat).
    Seat(&'a str),
    /// One seat, the best left.
    BestAvailable,
    /// One place in this general-admission section.
    GeneralAdmission(&'a str),
}

/// What a checkout came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayAnswer {
    /// 201: booked.
    Booked,
    /// 402: the payment was declined (the gateway released the seats).
    Declined,
    /// Anything else (status, 0 for a transport error).
    Failed(u16),
}

/// A waiting-room answer: the place of a queue token.
#[derive(Clone, Debug, PartialEq)]
pub enum QueueAnswer {
    Place(QueuePlace),
    RateLimited,
    Unavailable,
    Other(u16),
}

/// The fields of a join or position answer the fans act on.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuePlace {
    /// Present in a join's answer only.
    pub queue_token: Option<String>,
    pub queue_position: u64,
    /// Fans ahead of this one (None unless waiting).
    pub ahead: Option<u64>,
    pub admitted: bool,
    /// `waiting`, `admitted`, `lapsed` or `pending_shuffle`.
    pub state: String,
    pub estimated_wait_ms: Option<u64>,
    /// The gateway's hint: poll again after this many ms (absent from
    /// gateways before it).
    pub poll_after_ms: Option<u64>,
}

async fn queue_answer(r: reqwest::Result<reqwest::Response>, ok: u16) -> QueueAnswer {
    let Ok(r) = r else {
        return QueueAnswer::Unavailable;
    };
    match r.status().as_u16() {
        s if s == ok => match r.json::<QueueBody>().await {
            Ok(v) => QueueAnswer::Place(QueuePlace {
                queue_token: v.queue_token,
                queue_position: v.queue_position.unwrap_or(0),
                ahead: v.position.map(|p| p.saturating_sub(1)),
                admitted: v.admitted.unwrap_or(false),
                state: v.state.unwrap_or_default(),
                estimated_wait_ms: v.estimated_wait_ms,
                poll_after_ms: v.poll_after_ms,
            }),
            Err(_) => QueueAnswer::Other(s),
        },
        429 => QueueAnswer::RateLimited,
        503 => QueueAnswer::Unavailable,
        s => QueueAnswer::Other(s),
    }
}

/// The benchmark layout: `seats` seats in rows of [`SEATS_PER_ROW`], sections
/// `S1`, `S2`, ... of [`ROWS_PER_SECTION`] rows; the last row may be short.
pub fn event_spec(event_id: &str, seats: u32) -> Value {
    let mut sections = Vec::new();
    let mut left = seats;
    let mut s = 1;
    while left > 0 {
        let mut rows = Vec::new();
        for r in 1..=ROWS_PER_SECTION {
            if left == 0 {
                break;
            }
            let n = left.min(SEATS_PER_ROW);
            rows.push(json!({ "label": r.to_string(), "seats": n }));
            left -= n;
        }
        sections.push(json!({ "kind": "reserved", "id": format!("S{s}"), "name": format!("Section {s}"), "price_cents": 5000, "rows": rows }));
        s += 1;
    }
    json!({
        "id": event_id,
        "name": "Bench flash sale",
        "venue": "Loopback Arena",
        "starts_at": "2027-06-01T20:00:00Z",
        "max_seats_per_hold": 8,
        "sections": sections,
    })
}

/// The id of seat `rank` (0 = the best seat: first section, first row, seat 1).
pub fn seat_id(rank: u32) -> String {
    let per_section = SEATS_PER_ROW * ROWS_PER_SECTION;
    let s = rank / per_section + 1;
    let r = (rank % per_section) / SEATS_PER_ROW + 1;
    let n = rank % SEATS_PER_ROW + 1;
    format!("S{s}-{r}-{n}")
}

/// Creates the event and opens its sale through the admin API.
pub async fn create_event(
    base: &str,
    admin_token: &str,
    event_id: &str,
    seats: u32,
) -> anyhow::Result<()> {
    create_event_from(base, admin_token, &event_spec(event_id, seats)).await
}

/// Creates the event `spec` (the `POST /v1/events` body) and opens its sale.
pub async fn create_event_from(base: &str, admin_token: &str, spec: &Value) -> anyhow::Result<()> {
    let event_id = spec["id"].as_str().context("event spec without id")?;
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let r = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(admin_token)
        .json(spec)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!(
            "create event {event_id}: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    let r = http
        .post(format!("{base}/v1/events/{event_id}/sale/open"))
        .bearer_auth(admin_token)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!(
            "open sale {event_id}: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// Waits until the gateway answers `/readyz` (a leader is known).
pub async fn wait_ready(base: &str, timeout: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if std::time::Instant::now() >= deadline {
            bail!("gateway at {base} not ready within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs in `users` accounts (`fan0`, `fan1`, ...), [`LOGIN_CONCURRENCY`]
/// at a time; their session tokens, in order.
pub async fn sign_in(pool: &FanPool, users: u64) -> anyhow::Result<Vec<String>> {
    sign_in_named(pool, "fan", users).await
}

/// Signs in `<prefix>0`, `<prefix>1`, ... like [`sign_in`].
pub async fn sign_in_named(
    pool: &FanPool,
    prefix: &str,
    users: u64,
) -> anyhow::Result<Vec<String>> {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(LOGIN_CONCURRENCY));
    let mut logins = Vec::with_capacity(users as usize);
    for u in 0..users {
        let pool = pool.clone();
        let permit = sem.clone().acquire_owned().await?;
        let name = format!("{prefix}{u}");
        logins.push(tokio::spawn(async move {
            let _permit = permit;
            pool.login(u, &name).await
        }));
    }
    let mut tokens = Vec::with_capacity(users as usize);
    for l in logins {
        tokens.push(l.await??);
    }
    Ok(tokens)
}
