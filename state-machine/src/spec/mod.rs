//! Event definitions: the JSON that `POST /v1/events` takes, and its validation.
//!
//! Owns: [`EventSpec`] and its parts, the checks that refuse a bad definition
//! with a precise reason, and the slug rules. Timestamps are checked by the
//! RFC 3339 parser in `rfc3339` ([`parse_rfc3339_ms`]).
//! Must not: look at the current state (duplicate event ids are the state's
//! business) or at a clock.
//!
//! Caveats:
//! - `SectionSpec` is internally tagged on `kind` in JSON (the public shape) but
//!   externally tagged in binary formats (postcard, bincode), which cannot
//!   decode internally tagged enums. The switch is serde's
//!   `is_human_readable()`, so the same type goes into the Raft log and JSON.
//! - Timestamps stay the strings the client sent (so they echo back exactly);
//!   a small hand parser only checks that they are RFC 3339 and yields epoch
//!   milliseconds for `sale_opens_at` (the sale opens by itself at that log time).

mod rfc3339;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::*;

pub use rfc3339::parse_rfc3339_ms;

/// One event as its organiser defines it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// Slug; when absent, `CreateEvent` derives one from the name and the log index.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub venue: String,
    /// RFC 3339, e.g. `2026-12-01T20:00:00Z`.
    pub starts_at: String,
    /// RFC 3339; when set, the sale opens by itself once log time reaches it.
    #[serde(default)]
    pub sale_opens_at: Option<String>,
    #[serde(default = "default_hold_ttl_ms")]
    pub hold_ttl_ms: u64,
    #[serde(default = "default_max_seats_per_hold")]
    pub max_seats_per_hold: u32,
    #[serde(default)]
    pub waiting_room: Option<WaitingRoomSpec>,
    pub sections: Vec<SectionSpec>,
}

fn default_hold_ttl_ms() -> u64 {
    DEFAULT_HOLD_TTL_MS
}
fn default_max_seats_per_hold() -> u32 {
    DEFAULT_MAX_SEATS_PER_HOLD
}
fn default_admit_batch() -> u32 {
    DEFAULT_ADMIT_BATCH
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitingRoomSpec {
    pub enabled: bool,
    /// Fans admitted at once, at most; see the waiting-room module for the rule.
    #[serde(default = "default_admit_batch")]
    pub admit_batch: u32,
}

/// A row of a reserved section: seats are numbered 1..=seats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowSpec {
    pub label: String,
    pub seats: u32,
}

/// A section: reserved (rows of numbered seats) or general admission (a count).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SectionSpec {
    Reserved {
        id: String,
        name: String,
        price_cents: u64,
        rows: Vec<RowSpec>,
    },
    GeneralAdmission {
        id: String,
        name: String,
        capacity: u32,
        price_cents: u64,
    },
}

/// The JSON shape: `{"kind": "reserved", ...}`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum SectionJson {
    Reserved {
        id: String,
        name: String,
        price_cents: u64,
        rows: Vec<RowSpec>,
    },
    GeneralAdmission {
        id: String,
        name: String,
        capacity: u32,
        price_cents: u64,
    },
}

/// The binary shape: externally tagged, which postcard can decode.
#[derive(Serialize, Deserialize)]
enum SectionBin {
    Reserved {
        id: String,
        name: String,
        price_cents: u64,
        rows: Vec<RowSpec>,
    },
    GeneralAdmission {
        id: String,
        name: String,
        capacity: u32,
        price_cents: u64,
    },
}

impl Serialize for SectionSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (json, bin) = match self.clone() {
            SectionSpec::Reserved {
                id,
                name,
                price_cents,
                rows,
            } => (
                SectionJson::Reserved {
                    id: id.clone(),
                    name: name.clone(),
                    price_cents,
                    rows: rows.clone(),
                },
                SectionBin::Reserved {
                    id,
                    name,
                    price_cents,
                    rows,
                },
            ),
            SectionSpec::GeneralAdmission {
                id,
                name,
                capacity,
                price_cents,
            } => (
                SectionJson::GeneralAdmission {
                    id: id.clone(),
                    name: name.clone(),
                    capacity,
                    price_cents,
                },
                SectionBin::GeneralAdmission {
                    id,
                    name,
                    capacity,
                    price_cents,
                },
            ),
        };
        if s.is_human_readable() {
            json.serialize(s)
        } else {
            bin.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for SectionSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            Ok(match SectionJson::deserialize(d)? {
                SectionJson::Reserved {
                    id,
                    name,
                    price_cents,
                    rows,
                } => SectionSpec::Reserved {
                    id,
                    name,
                    price_cents,
                    rows,
                },
                SectionJson::GeneralAdmission {
                    id,
                    name,
                    capacity,
                    price_cents,
                } => SectionSpec::GeneralAdmission {
                    id,
                    name,
                    capacity,
                    price_cents,
                },
            })
        } else {
            Ok(match SectionBin::deserialize(d)? {
                SectionBin::Reserved {
                    id,
                    name,
                    price_cents,
                    rows,
                } => SectionSpec::Reserved {
                    id,
                    name,
                    price_cents,
                    rows,
                },
                SectionBin::GeneralAdmission {
                    id,
                    name,
                    capacity,
                    price_cents,
                } => SectionSpec::GeneralAdmission {
                    id,
                    name,
                    capacity,
                    price_cents,
                },
            })
        }
    }
}

impl SectionSpec {
    pub fn id(&self) -> &str {
        match self {
            SectionSpec::Reserved { id, .. } | SectionSpec::GeneralAdmission { id, .. } => id,
        }
    }
    pub fn name(&self) -> &str {
        match self {
            SectionSpec::Reserved { name, .. } | SectionSpec::GeneralAdmission { name, .. } => name,
        }
    }
    pub fn price_cents(&self) -> u64 {
        match self {
            SectionSpec::Reserved { price_cents, .. }
            | SectionSpec::GeneralAdmission { price_cents, .. } => *price_cents,
        }
    }
    /// Seats in a reserved section, capacity of a general-admission one.
    pub fn capacity(&self) -> u64 {
        match self {
            SectionSpec::Reserved { rows, .. } => rows.iter().map(|r| r.seats as u64).sum(),
            SectionSpec::GeneralAdmission { capacity, .. } => *capacity as u64,
        }
    }
}

/// The parsed, validated times of a definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecTimes {
    pub starts_at_ms: i64,
    pub sale_opens_at_ms: Option<i64>,
}

impl EventSpec {
    /// Checks every rule except "the id is not taken". The id may be absent
    /// (it is derived later); when present it must be a valid slug.
    pub fn validate(&self) -> Result<SpecTimes, String> {
        if let Some(id) = &self.id {
            check_slug(id).map_err(|e| format!("id: {e}"))?;
        }
        check_name("name", &self.name)?;
        check_name("venue", &self.venue)?;
        let starts_at_ms =
            parse_rfc3339_ms(&self.starts_at).map_err(|e| format!("starts_at: {e}"))?;
        let sale_opens_at_ms = match &self.sale_opens_at {
            Some(s) => Some(parse_rfc3339_ms(s).map_err(|e| format!("sale_opens_at: {e}"))?),
            None => None,
        };
        if !(MIN_HOLD_TTL_MS..=MAX_HOLD_TTL_MS).contains(&self.hold_ttl_ms) {
            return Err(format!(
                "hold_ttl_ms: {} is outside {MIN_HOLD_TTL_MS}..={MAX_HOLD_TTL_MS}",
                self.hold_ttl_ms
            ));
        }
        if !(1..=MAX_SEATS_PER_HOLD_LIMIT).contains(&self.max_seats_per_hold) {
            return Err(format!(
                "max_seats_per_hold: {} is outside 1..={MAX_SEATS_PER_HOLD_LIMIT}",
                self.max_seats_per_hold
            ));
        }
        if let Some(w) = &self.waiting_room {
            if !(1..=MAX_ADMIT_BATCH).contains(&w.admit_batch) {
                return Err(format!(
                    "waiting_room.admit_batch: {} is outside 1..={MAX_ADMIT_BATCH}",
                    w.admit_batch
                ));
            }
        }
        if self.sections.is_empty() {
            return Err("sections: an event needs at least one section".into());
        }
        if self.sections.len() > MAX_SECTIONS_PER_EVENT {
            return Err(format!(
                "sections: {} sections, at most {MAX_SECTIONS_PER_EVENT}",
                self.sections.len()
            ));
        }
        let mut total_seats: u64 = 0;
        let mut section_ids: Vec<&str> = Vec::new();
        for (i, section) in self.sections.iter().enumerate() {
            let id = section.id();
            check_token(id, MAX_SECTION_ID_LEN).map_err(|e| format!("sections[{i}].id: {e}"))?;
            if section_ids.contains(&id) {
                return Err(format!("sections[{i}].id: duplicate section id {id:?}"));
            }
            section_ids.push(id);
            check_name(&format!("sections[{i}].name"), section.name())?;
            if section.price_cents() > MAX_PRICE_CENTS {
                return Err(format!(
                    "sections[{i}].price_cents: {} is above {MAX_PRICE_CENTS}",
                    section.price_cents()
                ));
            }
            match section {
                SectionSpec::Reserved { rows, .. } => {
                    if rows.is_empty() {
                        return Err(format!(
                            "sections[{i}].rows: a reserved section needs at least one row"
                        ));
                    }
                    if rows.len() > MAX_ROWS_PER_SECTION as usize {
                        return Err(format!(
                            "sections[{i}].rows: {} rows, at most {MAX_ROWS_PER_SECTION}",
                            rows.len()
                        ));
                    }
                    let mut labels: Vec<&str> = Vec::with_capacity(rows.len());
                    for (j, row) in rows.iter().enumerate() {
                        check_token(&row.label, MAX_ROW_LABEL_LEN)
                            .map_err(|e| format!("sections[{i}].rows[{j}].label: {e}"))?;
                        if labels.contains(&row.label.as_str()) {
                            return Err(format!(
                                "sections[{i}].rows[{j}].label: duplicate row label {:?}",
                                row.label
                            ));
                        }
                        labels.push(&row.label);
                        if row.seats == 0 {
                            return Err(format!(
                                "sections[{i}].rows[{j}].seats: a row needs at least one seat"
                            ));
                        }
                        if row.seats > MAX_SEATS_PER_ROW {
                            return Err(format!(
                                "sections[{i}].rows[{j}].seats: {} seats, at most {MAX_SEATS_PER_ROW}",
                                row.seats
                            ));
                        }
                    }
                }
                SectionSpec::GeneralAdmission { capacity, .. } => {
                    if *capacity == 0 {
                        return Err(format!("sections[{i}].capacity: must be at least 1"));
                    }
                }
            }
            total_seats += section.capacity();
            if total_seats > MAX_SEATS_PER_EVENT as u64 {
                return Err(format!(
                    "sections: more than {MAX_SEATS_PER_EVENT} seats in the event (reached at sections[{i}])"
                ));
            }
        }
        Ok(SpecTimes {
            starts_at_ms,
            sale_opens_at_ms,
        })
    }
}

/// A slug: 1..=64 of `a-z0-9-`, not starting or ending with `-`.
pub fn check_slug(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_EVENT_ID_LEN {
        return Err(format!(
            "length {} is outside 1..={MAX_EVENT_ID_LEN}",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "character {c:?} is not allowed in a slug (a-z, 0-9, -)"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("a slug may not start or end with '-'".into());
    }
    Ok(())
}

/// Section ids and row labels: ASCII letters and digits (they are parts of
/// seat ids like `A-12-7`, so no `-`).
fn check_token(s: &str, max_len: usize) -> Result<(), String> {
    if s.is_empty() || s.len() > max_len {
        return Err(format!("length {} is outside 1..={max_len}", s.len()));
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii_alphanumeric()) {
        return Err(format!(
            "character {c:?} is not allowed (ASCII letters and digits only)"
        ));
    }
    Ok(())
}

fn check_name(field: &str, s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err(format!("{field}: must not be empty"));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(format!(
            "{field}: {} bytes, at most {MAX_NAME_LEN}",
            s.len()
        ));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(format!("{field}: control characters are not allowed"));
    }
    Ok(())
}

/// Derives an event slug from its name and the log index of the entry that
/// creates it: lower-cased ASCII letters and digits, runs of anything else
/// become one `-`, at most 40 characters, then `-<index>`. Deterministic.
pub fn derive_slug(name: &str, index: u64) -> String {
    let mut slug = String::with_capacity(48);
    let mut dash = false;
    for c in name.chars() {
        if slug.len() >= 40 {
            break;
        }
        if c.is_ascii_alphanumeric() {
            if dash && !slug.is_empty() {
                slug.push('-');
            }
            dash = false;
            slug.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
    }
    if slug.is_empty() {
        slug.push_str("event");
    }
    slug.push('-');
    slug.push_str(&index.to_string());
    slug
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_checked_and_derived() {
        // Goal: slug rules refuse bad characters and derivation is deterministic.
        assert!(check_slug("summer-gig-2026").is_ok());
        assert!(check_slug("Summer").is_err());
        assert!(check_slug("-a").is_err());
        assert_eq!(derive_slug("The Big  Gig!", 42), "the-big-gig-42");
        assert_eq!(derive_slug("!!!", 7), "event-7");
    }
}
