//! `bookctl event create|list|show|open|close` and `bookctl seats`: events,
//! their sales and their seat maps.
//!
//! Must not: build an event spec itself (it reads one from a JSON file) or
//! judge a reply beyond its kind.

use std::path::PathBuf;

use anyhow::bail;
use clap::Subcommand;
use client::state_machine::{
    AvailabilityView, Command, EventSpec, EventSummary, EventView, Query, QueryResult, Reply,
};
use client::{Client, ClientError, Consistency};
use serde_json::json;

use crate::output::{money, print, render_table};
use crate::{read, write, Usage};

#[derive(Subcommand, Debug)]
pub enum EventCmd {
    /// Create an event from a JSON file (an EventSpec).
    Create {
        #[arg(long)]
        file: PathBuf,
    },
    /// List events.
    List,
    /// Show one event.
    Show { id: String },
    /// Open an event's sale.
    Open { id: String },
    /// Close an event's sale.
    Close { id: String },
}

pub async fn event(
    client: &Client,
    command: EventCmd,
    consistency: Consistency,
    json_mode: bool,
) -> anyhow::Result<()> {
    match command {
        EventCmd::Create { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Usage(format!("cannot read {}: {e}", file.display())))?;
            let spec: EventSpec = serde_json::from_str(&text).map_err(|e| {
                Usage(format!(
                    "{} is not an event definition: {e}",
                    file.display()
                ))
            })?;
            let reply = write(client, Command::CreateEvent(spec)).await?;
            let Reply::EventCreated { event_id } = reply else {
                bail!("unexpected reply {reply:?}")
            };
            print(json_mode, json!({ "event_id": event_id }), || {
                format!("created event {event_id}")
            });
            Ok(())
        }
        EventCmd::List => {
            let QueryResult::Events(events) = read(client, Query::Events, consistency).await?
            else {
                bail!("unexpected answer to an events query")
            };
            print(json_mode, serde_json::to_value(&events)?, || {
                events_table(&events)
            });
            Ok(())
        }
        EventCmd::Show { id } => {
            let QueryResult::Event(event) =
                read(client, Query::Event { event_id: id }, consistency).await?
            else {
                bail!("unexpected answer to an event query")
            };
            let event = event.map_err(ClientError::Refused)?;
            print(json_mode, serde_json::to_value(&event)?, || {
                event_text(&event)
            });
            Ok(())
        }
        EventCmd::Open { id } => {
            let reply = write(
                client,
                Command::OpenSale {
                    event_id: id.clone(),
                },
            )
            .await?;
            print(
                json_mode,
                json!({ "event_id": id, "sale": "open", "reply": reply }),
                || format!("sale of {id} is open"),
            );
            Ok(())
        }
        EventCmd::Close { id } => {
            let reply = write(
                client,
                Command::CloseSale {
                    event_id: id.clone(),
                },
            )
            .await?;
            print(
                json_mode,
                json!({ "event_id": id, "sale": "closed", "reply": reply }),
                || format!("sale of {id} is closed"),
            );
            Ok(())
        }
    }
}

pub async fn seats(
    client: &Client,
    event_id: String,
    consistency: Consistency,
    json_mode: bool,
) -> anyhow::Result<()> {
    let QueryResult::Availability(view) =
        read(client, Query::Availability { event_id }, consistency).await?
    else {
        bail!("unexpected answer to an availability query")
    };
    let view = view.map_err(ClientError::Refused)?;
    print(json_mode, serde_json::to_value(&view)?, || {
        seats_text(&view)
    });
    Ok(())
}

fn events_table(events: &[EventSummary]) -> String {
    if events.is_empty() {
        return "no events".into();
    }
    let mut rows = vec![vec![
        "ID".to_string(),
        "NAME".into(),
        "VENUE".into(),
        "STARTS".into(),
        "SALE".into(),
        "AVAILABLE".into(),
        "CAPACITY".into(),
    ]];
    for e in events {
        rows.push(vec![
            e.event_id.clone(),
            e.name.clone(),
            e.venue.clone(),
            e.starts_at.clone(),
            format!("{:?}", e.sale).to_lowercase(),
            e.available.to_string(),
            e.capacity.to_string(),
        ]);
    }
    render_table(&rows)
}

fn event_text(e: &EventView) -> String {
    let mut out = format!(
        "{} ({}) at {}, starts {}\nsale: {}; capacity {}, available {}, held {}, booked {}\nhold ttl {} ms, at most {} seats per hold\n",
        e.spec.name,
        e.spec.id.as_deref().unwrap_or("?"),
        e.spec.venue,
        e.spec.starts_at,
        format!("{:?}", e.sale).to_lowercase(),
        e.capacity,
        e.available,
        e.held,
        e.booked,
        e.spec.hold_ttl_ms,
        e.spec.max_seats_per_hold,
    );
    if let Some(waiting) = e.queue_waiting {
        out.push_str(&format!(
            "waiting room: {waiting} waiting, {} shopping\n",
            e.queue_shopping.unwrap_or(0)
        ));
    }
    for section in &e.spec.sections {
        out.push_str(&format!(
            "  section {} ({}): {} places at {}\n",
            section.id(),
            section.name(),
            section.capacity(),
            money(section.price_cents())
        ));
    }
    out.trim_end().to_string()
}

fn seats_text(v: &AvailabilityView) -> String {
    let mut out = format!(
        "{}: sale {}, as of log index {} (log time {} ms)\nlegend: . available  H held  B booked\n",
        v.event_id,
        format!("{:?}", v.sale).to_lowercase(),
        v.applied_index,
        v.clock_ms
    );
    for s in &v.sections {
        out.push_str(&format!(
            "section {}{} at {}: capacity {}, available {}, held {}, booked {}\n",
            s.section,
            if s.general_admission {
                " (general admission)"
            } else {
                ""
            },
            money(s.price_cents),
            s.capacity,
            s.available,
            s.held,
            s.booked
        ));
        let width = s.rows.iter().map(|r| r.label.len()).max().unwrap_or(0);
        for row in &s.rows {
            out.push_str(&format!("  {:>width$}  {}\n", row.label, row.states));
        }
    }
    out.trim_end().to_string()
}
