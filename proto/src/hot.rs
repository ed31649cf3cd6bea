//! Conversions between the hot commands and outcomes of `state_machine` and
//! their protobuf forms (`HotCommand`, `HotOutcome` in `booking.proto`).
//!
//! Owns: the one mapping both ends use (the client encodes commands and
//! decodes outcomes, the node the reverse), so the two cannot drift, and
//! which commands and outcomes have a protobuf form at all. Must not: decide
//! anything about bookings, or lose information: every conversion is exact
//! (`tests` round-trips every variant), and a value without a protobuf form
//! yields `None` so the caller sends JSON instead.
//!
//! Why protobuf for these: a hold through the JSON form cost a serde_json
//! encode and decode of the command and of the outcome on every request; the
//! prost message is decoded in the same pass as the envelope.

use state_machine::{BookingError, Command, GaPlaces, Outcome, Reply, Selection};

use crate::booking as pb;
use pb::hold_command::Selection as PbSelection;
use pb::hot_command::Kind as CommandKind;
use pb::hot_outcome::Kind as OutcomeKind;

/// The protobuf form of `command`, or None when it has none (send JSON).
pub fn command_to_pb(command: &Command) -> Option<pb::HotCommand> {
    let kind = match command {
        Command::Hold {
            event_id,
            holder,
            selection,
        } => CommandKind::Hold(hold_to_pb(event_id, holder, selection, None)),
        Command::HoldQueued {
            event_id,
            holder,
            selection,
            queue_position,
        } => CommandKind::Hold(hold_to_pb(
            event_id,
            holder,
            selection,
            Some(*queue_position),
        )),
        Command::Release { hold_id, holder } => CommandKind::Release(pb::HoldRef {
            hold_id: *hold_id,
            holder: holder.clone(),
        }),
        Command::BeginPayment { hold_id, holder } => CommandKind::BeginPayment(pb::HoldRef {
            hold_id: *hold_id,
            holder: holder.clone(),
        }),
        Command::Confirm {
            hold_id,
            holder,
            payment_ref,
        } => CommandKind::Confirm(pb::ConfirmCommand {
            hold_id: *hold_id,
            holder: holder.clone(),
            payment_ref: payment_ref.clone(),
        }),
        Command::BeginCharge {
            hold_id,
            holder,
            charge_id,
            amount_cents,
        } => CommandKind::BeginCharge(charge_to_pb(*hold_id, holder, charge_id, *amount_cents)),
        Command::ConfirmCharge {
            hold_id,
            holder,
            charge_id,
            amount_cents,
        } => CommandKind::ConfirmCharge(charge_to_pb(*hold_id, holder, charge_id, *amount_cents)),
        _ => return None,
    };
    Some(pb::HotCommand { kind: Some(kind) })
}

fn hold_to_pb(
    event_id: &str,
    holder: &str,
    selection: &Selection,
    queue_position: Option<u64>,
) -> pb::HoldCommand {
    let selection = match selection {
        Selection::Seats(seats) => PbSelection::Seats(pb::SeatList {
            seats: seats.clone(),
        }),
        Selection::BestAvailable {
            count,
            section,
            allow_non_adjacent,
        } => PbSelection::BestAvailable(pb::BestAvailable {
            count: *count,
            section: section.clone(),
            allow_non_adjacent: *allow_non_adjacent,
        }),
        Selection::GeneralAdmission { section, count } => {
            PbSelection::GeneralAdmission(pb::GeneralAdmission {
                section: section.clone(),
                count: *count,
            })
        }
    };
    pb::HoldCommand {
        event_id: event_id.to_string(),
        holder: holder.to_string(),
        selection: Some(selection),
        queue_position,
    }
}

fn charge_to_pb(
    hold_id: u64,
    holder: &str,
    charge_id: &str,
    amount_cents: u64,
) -> pb::ChargeCommand {
    pb::ChargeCommand {
        hold_id,
        holder: holder.to_string(),
        charge_id: charge_id.to_string(),
        amount_cents,
    }
}

/// The command a `HotCommand` carries; Err names what is missing (a client
/// sent an incomplete message: the node answers INVALID_ARGUMENT).
pub fn command_from_pb(command: pb::HotCommand) -> Result<Command, String> {
    Ok(match command.kind.ok_or("hot_command has no kind")? {
        CommandKind::Hold(h) => {
            let selection = match h.selection.ok_or("hold has no selection")? {
                PbSelection::Seats(list) => Selection::Seats(list.seats),
                PbSelection::BestAvailable(b) => Selection::BestAvailable {
                    count: b.count,
                    section: b.section,
                    allow_non_adjacent: b.allow_non_adjacent,
                },
                PbSelection::GeneralAdmission(g) => Selection::GeneralAdmission {
                    section: g.section,
                    count: g.count,
                },
            };
            match h.queue_position {
                None => Command::Hold {
                    event_id: h.event_id,
                    holder: h.holder,
                    selection,
                },
                Some(queue_position) => Command::HoldQueued {
                    event_id: h.event_id,
                    holder: h.holder,
                    selection,
                    queue_position,
                },
            }
        }
        CommandKind::Release(r) => Command::Release {
            hold_id: r.hold_id,
            holder: r.holder,
        },
        CommandKind::BeginPayment(r) => Command::BeginPayment {
            hold_id: r.hold_id,
            holder: r.holder,
        },
        CommandKind::Confirm(c) => Command::Confirm {
            hold_id: c.hold_id,
            holder: c.holder,
            payment_ref: c.payment_ref,
        },
        CommandKind::BeginCharge(c) => Command::BeginCharge {
            hold_id: c.hold_id,
            holder: c.holder,
            charge_id: c.charge_id,
            amount_cents: c.amount_cents,
        },
        CommandKind::ConfirmCharge(c) => Command::ConfirmCharge {
            hold_id: c.hold_id,
            holder: c.holder,
            charge_id: c.charge_id,
            amount_cents: c.amount_cents,
        },
    })
}

/// The protobuf form of `outcome`, or None when it has none (send JSON).
pub fn outcome_to_pb(outcome: &Outcome) -> Option<pb::HotOutcome> {
    let kind = match outcome {
        Ok(Reply::Held {
            hold_id,
            event_id,
            seats,
            general_admission,
            expires_at_ms,
            total_cents,
        }) => OutcomeKind::Held(pb::Held {
            hold_id: *hold_id,
            event_id: event_id.clone(),
            seats: seats.clone(),
            general_admission: general_admission.as_ref().map(|g| pb::GeneralAdmission {
                section: g.section.clone(),
                count: g.count,
            }),
            expires_at_ms: *expires_at_ms,
            total_cents: *total_cents,
        }),
        Ok(Reply::Released { hold_id }) => OutcomeKind::Released(*hold_id),
        Ok(Reply::PaymentBegun {
            hold_id,
            expires_at_ms,
        }) => OutcomeKind::PaymentBegun(pb::PaymentBegun {
            hold_id: *hold_id,
            expires_at_ms: *expires_at_ms,
        }),
        Err(BookingError::SeatUnavailable { seats }) => {
            OutcomeKind::SeatUnavailable(pb::SeatList {
                seats: seats.clone(),
            })
        }
        Err(BookingError::NotEnoughSeats {
            requested,
            available,
        }) => OutcomeKind::NotEnoughSeats(pb::NotEnoughSeats {
            requested: *requested,
            available: *available,
        }),
        Err(BookingError::HoldExpired { hold_id }) => OutcomeKind::HoldExpired(*hold_id),
        _ => return None,
    };
    Some(pb::HotOutcome { kind: Some(kind) })
}

/// The outcome a `HotOutcome` carries; Err when it carries none.
pub fn outcome_from_pb(outcome: pb::HotOutcome) -> Result<Outcome, String> {
    Ok(match outcome.kind.ok_or("hot_outcome has no kind")? {
        OutcomeKind::Held(h) => Ok(Reply::Held {
            hold_id: h.hold_id,
            event_id: h.event_id,
            seats: h.seats,
            general_admission: h.general_admission.map(|g| GaPlaces {
                section: g.section,
                count: g.count,
            }),
            expires_at_ms: h.expires_at_ms,
            total_cents: h.total_cents,
        }),
        OutcomeKind::Released(hold_id) => Ok(Reply::Released { hold_id }),
        OutcomeKind::PaymentBegun(p) => Ok(Reply::PaymentBegun {
            hold_id: p.hold_id,
            expires_at_ms: p.expires_at_ms,
        }),
        OutcomeKind::SeatUnavailable(list) => {
            Err(BookingError::SeatUnavailable { seats: list.seats })
        }
        OutcomeKind::NotEnoughSeats(n) => Err(BookingError::NotEnoughSeats {
            requested: n.requested,
            available: n.available,
        }),
        OutcomeKind::HoldExpired(hold_id) => Err(BookingError::HoldExpired { hold_id }),
    })
}
