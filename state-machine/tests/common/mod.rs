//! Shared test helpers: a standard event definition and compact renderings of
//! outcomes, so tests and scenario files compare short readable lines.
#![allow(dead_code)]

use state_machine::*;

/// The standard layout of scenario files and unit tests: reserved section `A`
/// with `rows` rows labelled 1..=rows of `seats` seats at 5000 cents, and a
/// general-admission section `GA` of `ga` places at 2000 cents.
pub fn std_spec(id: &str, rows: u32, seats: u32, ga: u32, ttl_ms: u64) -> EventSpec {
    let mut sections = vec![SectionSpec::Reserved {
        id: "A".into(),
        name: "Stalls".into(),
        price_cents: 5000,
        rows: (1..=rows).map(|r| RowSpec { label: r.to_string(), seats }).collect(),
    }];
    if ga > 0 {
        sections.push(SectionSpec::GeneralAdmission { id: "GA".into(), name: "Standing".into(), capacity: ga, price_cents: 2000 });
    }
    EventSpec {
        id: Some(id.into()),
        name: format!("Event {id}"),
        venue: "Hall".into(),
        starts_at: "2030-01-01T20:00:00Z".into(),
        sale_opens_at: None,
        hold_ttl_ms: ttl_ms,
        max_seats_per_hold: 8,
        waiting_room: None,
        sections,
    }
}

fn join<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
}

/// `ok <kind> key=value ...` or `err <code> key=value ...`.
pub fn render_outcome(o: &Outcome) -> String {
    match o {
        Ok(r) => match r {
            Reply::EventCreated { event_id } => format!("ok created event={event_id}"),
            Reply::SaleOpened { fans_shuffled, .. } => format!("ok opened shuffled={fans_shuffled}"),
            Reply::SaleClosed { .. } => "ok closed".into(),
            Reply::Held { hold_id, seats, general_admission, expires_at_ms, total_cents, .. } => {
                let ga = general_admission.as_ref().map(|g| format!(" ga={}:{}", g.section, g.count)).unwrap_or_default();
                format!("ok held hold={hold_id} seats={} expires={expires_at_ms} total={total_cents}{ga}", join(seats))
            }
            Reply::HoldExtended { hold_id, expires_at_ms } => format!("ok extended hold={hold_id} expires={expires_at_ms}"),
            Reply::Released { hold_id } => format!("ok released hold={hold_id}"),
            Reply::PaymentBegun { hold_id, expires_at_ms } => {
                format!("ok payment_begun hold={hold_id} expires={expires_at_ms}")
            }
            Reply::Confirmed(b) => format!(
                "ok confirmed booking={} hold={} seats={} tickets={} total={}",
                b.booking_id,
                b.hold_id,
                join(&b.seats),
                join(b.tickets.iter().map(|t| t.ticket_id)),
                b.total_cents
            ),
            Reply::PaymentFailed { hold_id } => format!("ok payment_failed hold={hold_id}"),
            Reply::BookingCancelled { booking_id, tickets_revoked } => {
                format!("ok cancelled booking={booking_id} revoked={}", join(tickets_revoked))
            }
            Reply::CheckedIn { ticket_id, checked_in_at_ms } => format!("ok checked_in ticket={ticket_id} at={checked_in_at_ms}"),
            Reply::QueueJoined { queue, already_joined } => format!("ok joined {} already={already_joined}", render_queue(queue)),
            Reply::QueueLeft { .. } => "ok left".into(),
            Reply::WebhookRecorded { new } => format!("ok webhook new={new}"),
            Reply::OutboxAcked { removed } => format!("ok acked removed={removed}"),
            Reply::Configured => "ok configured".into(),
            Reply::Ticked { clock_ms } => format!("ok ticked clock={clock_ms}"),
        },
        Err(e) => {
            let detail = match e {
                BookingError::SeatUnavailable { seats } => format!(" seats={}", join(seats)),
                BookingError::NotEnoughSeats { requested, available } => format!(" requested={requested} available={available}"),
                BookingError::TooManySeats { requested, max } => format!(" requested={requested} max={max}"),
                BookingError::AlreadyConfirmed { booking_id, .. } => format!(" booking={booking_id}"),
                BookingError::ExtendLimitReached { max_expires_at_ms, .. } => format!(" max={max_expires_at_ms}"),
                BookingError::HoldNotActive { status, .. } => format!(" status={status}"),
                BookingError::AlreadyCheckedIn { checked_in_at_ms, .. } => format!(" at={checked_in_at_ms}"),
                BookingError::UnknownSeat { seat } => format!(" seat={seat}"),
                _ => String::new(),
            };
            format!("err {}{detail}", e.code())
        }
    }
}

pub fn render_queue(q: &QueueView) -> String {
    format!(
        "state={} position={} admitted={} until={}",
        serde_json::to_value(q.state).unwrap().as_str().unwrap(),
        opt(q.position),
        q.admitted,
        opt(q.admitted_until_ms)
    )
}

pub fn render_change(c: &SeatChange) -> String {
    match c.state {
        SeatStatus::Available => format!("{}:available", c.seat),
        SeatStatus::Held => format!("{}:held", c.seat),
        SeatStatus::Booked => format!("{}:booked", c.seat),
        SeatStatus::GeneralAdmission { held, sold, .. } => format!("{}:held={held}/sold={sold}", c.seat),
    }
}

/// Applies and checks every invariant afterwards.
pub fn apply_checked(state: &mut BookingState, index: u64, batch: &Batch) -> ApplyOutput {
    let out = state.apply(index, batch);
    if let Err(e) = state.check_invariants() {
        panic!("invariant broken after entry {index}: {e}");
    }
    assert_eq!(out.outcomes.len(), batch.requests.len(), "one outcome per request");
    out
}
