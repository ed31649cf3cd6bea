//! The RFC 3339 timestamps of event definitions, parsed to epoch milliseconds.
//!
//! Owns: [`parse_rfc3339_ms`] and the proleptic Gregorian calendar arithmetic
//! behind it. Must not: read a clock or the local time zone: every replica
//! must turn the same string into the same instant.
//! Caveats: leap seconds (`:60`), which RFC 3339 allows, are refused, and so
//! are years outside 1970..=9999; fractions beyond milliseconds are truncated.

use crate::limits::MAX_TIMESTAMP_YEAR;

/// Parses an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`,
/// `t`/`z`/space accepted as RFC 3339 allows) into milliseconds since the Unix
/// epoch. Leap seconds (`:60`) are refused; fractions beyond milliseconds are
/// truncated. Years 1970..=9999.
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, String> {
    let b = s.as_bytes();
    let bad = || format!("{s:?} is not an RFC 3339 timestamp like 2026-12-01T20:00:00Z");
    if b.len() < 20 || b.len() > 40 {
        return Err(bad());
    }
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let part = b.get(from..from + len).ok_or_else(bad)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        Ok(part
            .iter()
            .fold(0i64, |acc, d| acc * 10 + (d - b'0') as i64))
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1970..=MAX_TIMESTAMP_YEAR).contains(&year) {
        return Err(format!("{s:?}: year outside 1970..={MAX_TIMESTAMP_YEAR}"));
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(format!("{s:?}: no such date"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!("{s:?}: no such time of day"));
    }
    let mut pos = 19;
    let mut millis = 0i64;
    if b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            if pos - start < 3 {
                millis = millis * 10 + (b[pos] - b'0') as i64;
            }
            pos += 1;
        }
        let digits = pos - start;
        if digits == 0 {
            return Err(bad());
        }
        for _ in digits..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match b.get(pos) {
        Some(b'Z' | b'z') if pos + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if pos + 6 == b.len() && b[pos + 3] == b':' => {
            let (oh, om) = (num(pos + 1, 2)?, num(pos + 4, 2)?);
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            if *sign == b'+' {
                oh * 60 + om
            } else {
                -(oh * 60 + om)
            }
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(secs * 1_000 + millis)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (year >= 1970).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let mut days = 0;
    for y in 1970..year {
        days += if is_leap(y) { 366 } else { 365 };
    }
    for m in 1..month {
        days += days_in_month(year, m);
    }
    days + day - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_known_instants() {
        // Goal: the hand parser agrees with well-known epoch values.
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339_ms("2000-03-01T00:00:00Z"),
            Ok(951_868_800_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-12-01T20:00:00.5+01:00"),
            Ok(1_796_151_600_500)
        );
        assert!(parse_rfc3339_ms("2026-02-29T00:00:00Z").is_err());
        assert!(parse_rfc3339_ms("2026-12-01 20:00").is_err());
        assert!(parse_rfc3339_ms("2026-12-01T20:00:00").is_err());
    }
}
