//! The report's pictures: a self-contained HTML timeline and a PNG latency plot.
//!
//! Owns: [`timeline_html`] (one lane per client process, one bar per
//! operation coloured by outcome, fault windows shaded, the operation's
//! details in a tooltip), [`latency_png`] (latency over time, one dot per
//! operation, fault windows shaded; drawn with plotters' bitmap backend into
//! a buffer) and a small PNG writer ([`encode_png`]: stored deflate blocks,
//! so no codec or font library is needed).
//!
//! Must not: judge anything; it draws what the history and the checkers say.
//!
//! Caveats: the plot has no text (no fonts are assumed on the machine); the
//! axes are described in `results.json` (`plot`) and the README. The
//! timeline draws at most [`TIMELINE_OPS_MAX`] operations; past that it says
//! how many it left out.

use std::fmt::Write as _;

use plotters::prelude::*;
use serde::Serialize;

use super::recorder::FaultWindow;
use crate::booking::{BookingOp, BookingResult};

/// Operations drawn in the timeline, at most.
pub const TIMELINE_OPS_MAX: usize = 20_000;
/// Plot size in pixels.
pub const PLOT_WIDTH_PX: u32 = 1200;
pub const PLOT_HEIGHT_PX: u32 = 500;

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn outcome_colour(r: &BookingResult) -> &'static str {
    match r {
        BookingResult::Ok(_) => "#3a9a48",
        BookingResult::Refused(_) => "#4a78c2",
        BookingResult::Failed => "#c24a4a",
        BookingResult::Unknown => "#e09a1a",
    }
}

/// A self-contained HTML page: SVG lanes per process, fault windows shaded,
/// offending operations outlined in black.
pub fn timeline_html(
    title: &str,
    ops: &[BookingOp],
    faults: &[FaultWindow],
    end_ns: u64,
    offending: &[usize],
) -> String {
    let processes: std::collections::BTreeSet<u64> = ops.iter().map(|o| o.process).collect();
    let lane_of: std::collections::BTreeMap<u64, usize> =
        processes.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let lane_h = 14.0;
    let left = 60.0;
    let width = 1600.0;
    let top = 30.0;
    let height = top + lane_h * processes.len() as f64 + 40.0;
    let end_ns = end_ns.max(1);
    let x = |t: u64| left + (t as f64 / end_ns as f64) * (width - left - 10.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="10">"#
    );
    for f in faults {
        let (x0, x1) = (x(f.start_ns), x(f.end_ns.unwrap_or(end_ns)));
        let _ = write!(
            svg,
            r##"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="{:.1}" fill="#f4c7c7" opacity="0.6"><title>{}: {}</title></rect><text x="{x0:.1}" y="{:.1}" fill="#a33">{}</text>"##,
            (x1 - x0).max(1.0),
            height - top - 30.0,
            html_escape(&f.kind),
            html_escape(&f.detail),
            top - 4.0,
            html_escape(&f.kind)
        );
    }
    for (p, lane) in &lane_of {
        let _ = write!(
            svg,
            r#"<text x="2" y="{:.1}">p{p}</text>"#,
            top + lane_h * (*lane as f64) + 10.0
        );
    }
    for op in ops.iter().take(TIMELINE_OPS_MAX) {
        let lane = lane_of[&op.process];
        let x0 = x(op.invoke_ns);
        let x1 = x(op.complete_ns.unwrap_or(end_ns));
        let y = top + lane_h * lane as f64 + 1.0;
        let stroke = if offending.contains(&op.id) {
            r#" stroke="black" stroke-width="2""#
        } else {
            ""
        };
        let result = match &op.result {
            BookingResult::Ok(r) => format!("ok {}", r.to_value()),
            BookingResult::Refused(r) => format!("refused {}", r.error),
            BookingResult::Failed => "fail".into(),
            BookingResult::Unknown => "info (unknown)".into(),
        };
        let _ = write!(
            svg,
            r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"{stroke}><title>op {} p{} {:?} {} [{:.3}s - {}] index {:?}</title></rect>"#,
            (x1 - x0).max(1.0),
            lane_h - 2.0,
            outcome_colour(&op.result),
            op.id,
            op.process,
            op.call.f(),
            html_escape(&format!("{} -> {result}", op.call.to_value())),
            op.invoke_ns as f64 / 1e9,
            op.complete_ns
                .map(|t| format!("{:.3}s", t as f64 / 1e9))
                .unwrap_or_else(|| "open".into()),
            op.index
        );
    }
    svg.push_str("</svg>");
    let left_out = ops.len().saturating_sub(TIMELINE_OPS_MAX);
    let note = if left_out > 0 {
        format!("<p>{left_out} later operations are not drawn.</p>")
    } else {
        String::new()
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body style=\"font-family:sans-serif\">\
         <h1>{t}</h1><p>One lane per client process; time runs right ({:.1} s in all). \
         <span style=\"color:#3a9a48\">ok</span>, <span style=\"color:#4a78c2\">refused by the store</span>, \
         <span style=\"color:#c24a4a\">failed</span>, <span style=\"color:#e09a1a\">unknown (info)</span>; \
         red bands are fault windows; black outlines are operations a checker names. Hover for details.</p>{note}\
         <div style=\"overflow-x:auto\">{svg}</div></body></html>",
        end_ns as f64 / 1e9,
        t = html_escape(title)
    )
}

/// How the plot maps data to pixels, recorded in `results.json`.
#[derive(Serialize, Clone, Debug)]
pub struct PlotAxes {
    pub width_px: u32,
    pub height_px: u32,
    pub x: String,
    pub y: String,
    pub y_max_ms: f64,
    pub colours: String,
}

/// Latency (ms) over time (s): one dot per completed operation, fault
/// windows shaded. Returns the PNG bytes and the axes' meaning.
pub fn latency_png(
    ops: &[BookingOp],
    faults: &[FaultWindow],
    end_ns: u64,
) -> Result<(Vec<u8>, PlotAxes), String> {
    let (w, h) = (PLOT_WIDTH_PX, PLOT_HEIGHT_PX);
    let mut latencies: Vec<f64> = ops
        .iter()
        .filter_map(|o| {
            o.complete_ns
                .map(|c| c.saturating_sub(o.invoke_ns) as f64 / 1e6)
        })
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    // The 99.9th percentile, so a few timeouts do not flatten everything else.
    let y_max_ms = latencies
        .get(((latencies.len() as f64) * 0.999) as usize)
        .or(latencies.last())
        .copied()
        .unwrap_or(1.0)
        .max(1.0)
        * 1.1;
    let x_max_s = (end_ns as f64 / 1e9).max(0.001);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let area = root.margin(10, 10, 10, 10);
        let mut chart = ChartBuilder::on(&area)
            .build_cartesian_2d(0.0..x_max_s, 0.0..y_max_ms)
            .map_err(|e| format!("plot: {e}"))?;
        let shade = RGBColor(244, 199, 199);
        chart
            .draw_series(faults.iter().map(|f| {
                let x0 = f.start_ns as f64 / 1e9;
                let x1 = f.end_ns.unwrap_or(end_ns) as f64 / 1e9;
                Rectangle::new([(x0, 0.0), (x1, y_max_ms)], shade.filled())
            }))
            .map_err(|e| format!("plot: {e}"))?;
        // Axes without labels: a frame, and a light line every second and every 100 ms of latency.
        let grid = RGBColor(225, 225, 225);
        let secs = x_max_s.ceil() as u64;
        chart
            .draw_series(
                (0..=secs)
                    .map(|s| PathElement::new(vec![(s as f64, 0.0), (s as f64, y_max_ms)], grid)),
            )
            .map_err(|e| format!("plot: {e}"))?;
        let steps = (y_max_ms / 100.0).floor() as u64;
        chart
            .draw_series((1..=steps.min(200)).map(|k| {
                let y = k as f64 * 100.0;
                PathElement::new(vec![(0.0, y), (x_max_s, y)], grid)
            }))
            .map_err(|e| format!("plot: {e}"))?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, y_max_ms), (0.0, 0.0), (x_max_s, 0.0)],
                BLACK.stroke_width(2),
            )))
            .map_err(|e| format!("plot: {e}"))?;
        chart
            .draw_series(ops.iter().filter_map(|o| {
                let c = o.complete_ns?;
                let colour = match &o.result {
                    BookingResult::Ok(_) => RGBColor(58, 154, 72),
                    BookingResult::Refused(_) => RGBColor(74, 120, 194),
                    BookingResult::Failed => RGBColor(194, 74, 74),
                    BookingResult::Unknown => RGBColor(224, 154, 26),
                };
                let lat = (c.saturating_sub(o.invoke_ns) as f64 / 1e6).min(y_max_ms);
                Some(Circle::new(
                    (o.invoke_ns as f64 / 1e9, lat),
                    2,
                    colour.filled(),
                ))
            }))
            .map_err(|e| format!("plot: {e}"))?;
        root.present().map_err(|e| format!("plot: {e}"))?;
    }
    let axes = PlotAxes {
        width_px: w,
        height_px: h,
        x: format!("time since the run started, 0 to {x_max_s:.1} s; a light vertical line every second"),
        y: format!("latency, 0 to {y_max_ms:.0} ms (capped there); a light horizontal line every 100 ms"),
        y_max_ms,
        colours: "green ok, blue refused by the store, red failed, orange unknown (info); red bands are fault windows"
            .into(),
    };
    Ok((encode_png(w, h, &buf), axes))
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in bytes {
        a = (a + x as u32) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// An 8-bit RGB PNG of `rgb` (row-major, 3 bytes a pixel). The image data is
/// a zlib stream of stored (uncompressed) deflate blocks: larger than a
/// compressed PNG, but every viewer reads it and it needs no codec.
pub fn encode_png(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
    assert_eq!(
        rgb.len(),
        (width * height * 3) as usize,
        "buffer size does not match the image"
    );
    let row = (width * 3) as usize;
    let mut raw = Vec::with_capacity((row + 1) * height as usize);
    for y in 0..height as usize {
        raw.push(0); // filter type: none
        raw.extend_from_slice(&rgb[y * row..(y + 1) * row]);
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    z.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // depth 8, RGB, deflate, no filter method, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the checksums match their published check values, so viewers accept the PNG.
    #[test]
    fn checksums_match_known_values() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }

    /// Goal: a PNG has the signature, an IHDR of the right size and ends with IEND.
    #[test]
    fn png_is_well_formed() {
        let png = encode_png(2, 1, &[255, 0, 0, 0, 255, 0]);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 2);
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
    }
}
