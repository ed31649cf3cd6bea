//! The events the tests create: one shape, sized per test.
//!
//! Owns: [`TestEvent`], a reserved section `A` ("Stalls", 50.00 a seat) of
//! rows labelled `1..=rows`, optionally a general-admission section `GA`
//! ("Floor", 20.00) and an event-level hold TTL; as the JSON body the
//! gateway and `bookctl` take, as an `EventSpec`, or as the `CreateEvent`
//! command.
//!
//! Must not: carry the demo event of `booking up` (src/up.rs owns it, and
//! the shipped binary does not depend on this crate) or workload layouts
//! sized by a run's parameters (bench, Jepsen).

use serde_json::{json, Value};
use state_machine::{Command, EventSpec};

/// A small test event; seat ids read `A-<row>-<n>`, numbered from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestEvent {
    pub id: String,
    /// Rows of section A.
    pub rows: u32,
    /// Seats in each row of section A.
    pub seats_per_row: u32,
    /// Capacity of section GA; no GA section when `None`.
    pub general_admission: Option<u32>,
    /// The event's own hold TTL; the cluster default when `None`.
    pub hold_ttl_ms: Option<u64>,
}

impl TestEvent {
    /// Section A of `rows` × `seats_per_row`, nothing else.
    pub fn reserved(id: &str, rows: u32, seats_per_row: u32) -> TestEvent {
        TestEvent {
            id: id.to_string(),
            rows,
            seats_per_row,
            general_admission: None,
            hold_ttl_ms: None,
        }
    }

    /// Adds section GA with room for `capacity`.
    pub fn with_general_admission(mut self, capacity: u32) -> TestEvent {
        self.general_admission = Some(capacity);
        self
    }

    /// Sets the event's own hold TTL.
    pub fn with_hold_ttl_ms(mut self, hold_ttl_ms: u64) -> TestEvent {
        self.hold_ttl_ms = Some(hold_ttl_ms);
        self
    }

    /// The event as the JSON body of `POST /v1/events` or `bookctl event create`.
    pub fn json(&self) -> Value {
        let rows: Vec<Value> = (1..=self.rows)
            .map(|r| json!({ "label": r.to_string(), "seats": self.seats_per_row }))
            .collect();
        let mut sections = vec![json!({
            "kind": "reserved", "id": "A", "name": "Stalls", "price_cents": 5000, "rows": rows
        })];
        if let Some(capacity) = self.general_admission {
            sections.push(json!({
                "kind": "general_admission", "id": "GA", "name": "Floor",
                "capacity": capacity, "price_cents": 2000
            }));
        }
        let mut spec = json!({
            "id": self.id,
            "name": "Test gig",
            "venue": "Loopback Hall",
            "starts_at": "2030-01-01T20:00:00Z",
            "sections": sections,
        });
        if let Some(ttl) = self.hold_ttl_ms {
            spec["hold_ttl_ms"] = json!(ttl);
        }
        spec
    }

    /// The event as the state machine's spec.
    fn spec(&self) -> EventSpec {
        serde_json::from_value(self.json()).expect("a test event is a valid spec")
    }

    /// The command that creates the event.
    pub fn create(&self) -> Command {
        Command::CreateEvent(self.spec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: every option of the fixture reaches the spec.
    #[test]
    fn the_spec_carries_rows_sections_and_ttl() {
        let spec = TestEvent::reserved("gig", 3, 10)
            .with_general_admission(100)
            .with_hold_ttl_ms(5_000)
            .spec();
        assert_eq!(spec.id.as_deref(), Some("gig"));
        assert_eq!(spec.sections.len(), 2);
        assert_eq!(spec.hold_ttl_ms, 5_000);
        let plain = TestEvent::reserved("gig", 2, 10).json();
        assert!(plain.get("hold_ttl_ms").is_none(), "{plain}");
        assert_eq!(plain["sections"][0]["rows"][1]["label"], "2");
    }
}
