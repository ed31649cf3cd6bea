//! `bookctl hold`, `release`, `confirm` and `booking show`: a holder's seats
//! from hold to booking.
//!
//! Must not: pay (`confirm` records a payment reference the operator got
//! elsewhere) or resend a write: each command is one first send, and an
//! unknown outcome exits 3 with the ids to check.

use anyhow::bail;
use clap::{ArgGroup, Args, Subcommand};
use client::state_machine::{BookingView, Command, Query, QueryResult, Reply, Selection};
use client::{Client, ClientError, Consistency};
use serde_json::json;

use crate::output::{money, print, when};
use crate::{read, write, Usage};

// The arguments of `bookctl hold` (the subcommand's help is its variant's doc).
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("selection").required(true).args(["seats", "best", "ga"])))]
pub struct HoldArgs {
    /// Event id.
    event: String,
    /// Exactly these seats, e.g. A-1-1,A-1-2 (all or nothing).
    #[arg(long, value_delimiter = ',')]
    seats: Vec<String>,
    /// N best available adjacent seats.
    #[arg(long)]
    best: Option<u32>,
    /// With --best: only in this section.
    #[arg(long, requires = "best")]
    section: Option<String>,
    /// With --best: fall back to non-adjacent seats.
    #[arg(long, requires = "best")]
    allow_non_adjacent: bool,
    /// General admission: SECTION:N places.
    #[arg(long)]
    ga: Option<String>,
    /// Who holds (the owner name later calls must match).
    #[arg(long)]
    holder: String,
}

// The arguments of `bookctl release`.
#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// Hold id.
    hold: u64,
    #[arg(long)]
    holder: String,
}

// The arguments of `bookctl confirm`.
#[derive(Args, Debug)]
pub struct ConfirmArgs {
    /// Hold id.
    hold: u64,
    /// The payment's reference.
    #[arg(long)]
    payment_ref: String,
    #[arg(long)]
    holder: String,
}

#[derive(Subcommand, Debug)]
pub enum BookingCmd {
    /// Show one booking with its tickets.
    Show { id: u64 },
}

pub async fn hold(client: &Client, args: HoldArgs, json_mode: bool) -> anyhow::Result<()> {
    let selection = if !args.seats.is_empty() {
        Selection::Seats(args.seats)
    } else if let Some(count) = args.best {
        Selection::BestAvailable {
            count,
            section: args.section,
            allow_non_adjacent: args.allow_non_adjacent,
        }
    } else if let Some(ga) = &args.ga {
        let (section, count) = ga
            .rsplit_once(':')
            .and_then(|(s, n)| Some((s.to_string(), n.parse::<u32>().ok()?)))
            .ok_or_else(|| Usage(format!("--ga {ga:?}: expected SECTION:N, e.g. floor:2")))?;
        Selection::GeneralAdmission { section, count }
    } else {
        return Err(Usage("give --seats, --best or --ga".into()).into());
    };
    let reply = write(
        client,
        Command::Hold {
            event_id: args.event,
            holder: args.holder,
            selection,
        },
    )
    .await?;
    let Reply::Held {
        hold_id,
        event_id,
        seats,
        general_admission,
        expires_at_ms,
        total_cents,
    } = reply
    else {
        bail!("unexpected reply {reply:?}")
    };
    let value = json!({
        "hold_id": hold_id, "event_id": event_id, "seats": seats,
        "general_admission": general_admission, "expires_at_ms": expires_at_ms, "total_cents": total_cents,
    });
    print(json_mode, value, || {
        let what = match &general_admission {
            Some(ga) => {
                format!("{} general admission place(s) in {}", ga.count, ga.section)
            }
            None => seats.join(", "),
        };
        format!(
            "hold {hold_id} on {event_id}: {what}; total {}; expires {}",
            money(total_cents),
            when(expires_at_ms)
        )
    });
    Ok(())
}

pub async fn release(client: &Client, args: ReleaseArgs, json_mode: bool) -> anyhow::Result<()> {
    let reply = write(
        client,
        Command::Release {
            hold_id: args.hold,
            holder: args.holder,
        },
    )
    .await?;
    let Reply::Released { hold_id } = reply else {
        bail!("unexpected reply {reply:?}")
    };
    print(
        json_mode,
        json!({ "hold_id": hold_id, "released": true }),
        || format!("released hold {hold_id}"),
    );
    Ok(())
}

pub async fn confirm(client: &Client, args: ConfirmArgs, json_mode: bool) -> anyhow::Result<()> {
    let reply = write(
        client,
        Command::Confirm {
            hold_id: args.hold,
            holder: args.holder,
            payment_ref: args.payment_ref,
        },
    )
    .await?;
    let Reply::Confirmed(booking) = reply else {
        bail!("unexpected reply {reply:?}")
    };
    print(json_mode, serde_json::to_value(&booking)?, || {
        booking_text(&booking)
    });
    Ok(())
}

pub async fn booking(
    client: &Client,
    command: BookingCmd,
    consistency: Consistency,
    json_mode: bool,
) -> anyhow::Result<()> {
    let BookingCmd::Show { id } = command;
    let QueryResult::Booking(booking) =
        read(client, Query::Booking { booking_id: id }, consistency).await?
    else {
        bail!("unexpected answer to a booking query")
    };
    let booking = booking.map_err(ClientError::Refused)?;
    print(json_mode, serde_json::to_value(&booking)?, || {
        booking_text(&booking)
    });
    Ok(())
}

fn booking_text(b: &BookingView) -> String {
    let what = match &b.general_admission {
        Some(ga) => format!("{} general admission place(s) in {}", ga.count, ga.section),
        None => b.seats.join(", "),
    };
    let mut out = format!(
        "booking {} ({:?}) for {} on {}: {what}\nhold {}, payment {}, total {}\n",
        b.booking_id,
        b.status,
        b.holder,
        b.event_id,
        b.hold_id,
        b.payment_ref,
        money(b.total_cents)
    );
    for t in &b.tickets {
        let state = if t.revoked {
            "revoked".to_string()
        } else if let Some(at) = t.checked_in_at_ms {
            format!("checked in at {at}")
        } else {
            "valid".to_string()
        };
        out.push_str(&format!(
            "  ticket {} seat {} {state}\n",
            t.ticket_id, t.seat
        ));
    }
    out.trim_end().to_string()
}
