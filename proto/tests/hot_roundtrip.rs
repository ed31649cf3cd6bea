//! Goal: every hot command and hot outcome survives command → protobuf →
//! wire bytes → protobuf → command unchanged, and values without a protobuf
//! form are reported as such (so they travel as JSON), never mangled.

use proptest::prelude::*;
use prost::Message;
use proto::booking as pb;
use proto::hot::{command_from_pb, command_to_pb, outcome_from_pb, outcome_to_pb};
use state_machine::{BookingError, Command, GaPlaces, Outcome, Reply, Selection};

fn text() -> impl Strategy<Value = String> {
    // Empty strings included: proto3 cannot tell "" from unset, so the
    // mapping must not depend on presence for strings.
    prop_oneof![Just(String::new()), "[a-zA-Z0-9 é-]{1,12}"]
}

fn selection() -> impl Strategy<Value = Selection> {
    prop_oneof![
        proptest::collection::vec(text(), 0..4).prop_map(Selection::Seats),
        (any::<u32>(), proptest::option::of(text()), any::<bool>()).prop_map(
            |(count, section, allow_non_adjacent)| Selection::BestAvailable {
                count,
                section,
                allow_non_adjacent,
            }
        ),
        (text(), any::<u32>())
            .prop_map(|(section, count)| Selection::GeneralAdmission { section, count }),
    ]
}

fn hot_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (text(), text(), selection()).prop_map(|(event_id, holder, selection)| Command::Hold {
            event_id,
            holder,
            selection,
        }),
        (text(), text(), selection(), any::<u64>()).prop_map(
            |(event_id, holder, selection, queue_position)| Command::HoldQueued {
                event_id,
                holder,
                selection,
                queue_position,
            }
        ),
        (any::<u64>(), text()).prop_map(|(hold_id, holder)| Command::Release { hold_id, holder }),
        (any::<u64>(), text())
            .prop_map(|(hold_id, holder)| Command::BeginPayment { hold_id, holder }),
        (any::<u64>(), text(), text()).prop_map(|(hold_id, holder, payment_ref)| {
            Command::Confirm {
                hold_id,
                holder,
                payment_ref,
            }
        }),
        (any::<u64>(), text(), text(), any::<u64>()).prop_map(
            |(hold_id, holder, charge_id, amount_cents)| Command::BeginCharge {
                hold_id,
                holder,
                charge_id,
                amount_cents,
            }
        ),
        (any::<u64>(), text(), text(), any::<u64>()).prop_map(
            |(hold_id, holder, charge_id, amount_cents)| Command::ConfirmCharge {
                hold_id,
                holder,
                charge_id,
                amount_cents,
            }
        ),
    ]
}

fn hot_outcome() -> impl Strategy<Value = Outcome> {
    let ga = proptest::option::of(
        (text(), any::<u32>()).prop_map(|(section, count)| GaPlaces { section, count }),
    );
    prop_oneof![
        (
            any::<u64>(),
            text(),
            proptest::collection::vec(text(), 0..4),
            ga,
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(
                |(hold_id, event_id, seats, general_admission, expires_at_ms, total_cents)| {
                    Ok(Reply::Held {
                        hold_id,
                        event_id,
                        seats,
                        general_admission,
                        expires_at_ms,
                        total_cents,
                    })
                }
            ),
        any::<u64>().prop_map(|hold_id| Ok(Reply::Released { hold_id })),
        (any::<u64>(), any::<u64>()).prop_map(|(hold_id, expires_at_ms)| Ok(Reply::PaymentBegun {
            hold_id,
            expires_at_ms,
        })),
        proptest::collection::vec(text(), 0..4)
            .prop_map(|seats| Err(BookingError::SeatUnavailable { seats })),
        (any::<u32>(), any::<u32>()).prop_map(|(requested, available)| Err(
            BookingError::NotEnoughSeats {
                requested,
                available,
            }
        )),
        any::<u64>().prop_map(|hold_id| Err(BookingError::HoldExpired { hold_id })),
    ]
}

proptest! {
    #[test]
    fn hot_commands_round_trip(command in hot_command()) {
        let message = command_to_pb(&command).expect("a hot command has a protobuf form");
        let wire = message.encode_to_vec();
        let decoded = pb::HotCommand::decode(wire.as_slice()).expect("decodes");
        prop_assert_eq!(command_from_pb(decoded), Ok(command));
    }

    #[test]
    fn hot_outcomes_round_trip(outcome in hot_outcome()) {
        let message = outcome_to_pb(&outcome).expect("a hot outcome has a protobuf form");
        let wire = message.encode_to_vec();
        let decoded = pb::HotOutcome::decode(wire.as_slice()).expect("decodes");
        prop_assert_eq!(outcome_from_pb(decoded), Ok(outcome));
    }
}

/// Commands and outcomes off the hot path have no protobuf form: the
/// caller must send them as JSON.
#[test]
fn the_rest_has_no_protobuf_form() {
    for command in [
        Command::Tick,
        Command::OpenSale {
            event_id: "e".into(),
        },
        Command::ExtendHold {
            hold_id: 1,
            holder: "h".into(),
        },
        Command::FailPayment {
            hold_id: 1,
            holder: "h".into(),
        },
    ] {
        assert_eq!(command_to_pb(&command), None, "{command:?}");
    }
    for outcome in [
        Ok(Reply::Configured),
        Ok(Reply::PaymentFailed { hold_id: 1 }),
        Err(BookingError::NotOwner),
        Err(BookingError::SaleNotOpen {
            event_id: "e".into(),
        }),
    ] {
        assert_eq!(outcome_to_pb(&outcome), None, "{outcome:?}");
    }
}

/// An incomplete message (a client bug, or a newer client's kind this build
/// does not know) is an error to report, not a panic or a guess.
#[test]
fn incomplete_messages_are_refused() {
    assert!(command_from_pb(pb::HotCommand { kind: None }).is_err());
    let no_selection = pb::HotCommand {
        kind: Some(pb::hot_command::Kind::Hold(pb::HoldCommand::default())),
    };
    assert!(command_from_pb(no_selection).is_err());
    assert!(outcome_from_pb(pb::HotOutcome { kind: None }).is_err());
}
