//! How bookctl prints: one pretty JSON document with `--json`, else human
//! text; aligned tables, money and log-time instants.
//!
//! Must not: talk to the cluster or decide exit codes.

use std::time::{SystemTime, UNIX_EPOCH};

/// Prints `value` as JSON in JSON mode, else the human text.
pub fn print(json_mode: bool, value: serde_json::Value, human: impl FnOnce() -> String) {
    if json_mode {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("a JSON value always serialises")
        );
    } else {
        println!("{}", human());
    }
}

/// Left-aligned columns two spaces apart; a row's last cell is not padded.
pub fn render_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            // The last cell of a short row (an error text) does not widen its column.
            if row.len() == columns || i + 1 < row.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == row.len() {
                    cell.clone()
                } else {
                    format!("{cell:<width$}", width = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// Cents as units and hundredths, e.g. `12.50`.
pub fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A log-time instant (Unix ms) as its value and its distance from now.
pub fn when(at_ms: u64) -> String {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if at_ms >= now_ms {
        format!("at {at_ms} ms (in {} s)", (at_ms - now_ms) / 1000)
    } else {
        format!("at {at_ms} ms ({} s ago)", (now_ms - at_ms) / 1000)
    }
}
