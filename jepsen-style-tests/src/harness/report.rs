//! The report's pictures: a self-contained HTML timeline and a PNG latency plot.
//!
//! Owns: [`timeline_html`] (one lane per client process, one bar per
//! operation coloured by outcome, fault windows shaded, the operation's
//! details in a tooltip), [`latency_png`] (latency over time on a log scale,
//! one dot per operation, fault windows shaded and named, a title, axis names
//! with units and a legend; drawn with plotters' bitmap backend into a buffer,
//! text in the font `plotkit` embeds) and a small PNG writer ([`encode_png`]:
//! stored deflate blocks, so no codec library is needed).
//!
//! Must not: judge anything; it draws what the history and the checkers say.
//!
//! Caveats: no system fonts are assumed (the font is compiled in); the axes
//! are also described in `results.json` (`plot`) and the README. The
//! timeline draws at most [`TIMELINE_OPS_MAX`] operations; past that it says
//! how many it left out.

use std::fmt::Write as _;

use plotkit::{AXIS_LABEL_PX, FONT_FAMILY, TICK_PX, TITLE_PX};
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
    pub y_min_ms: f64,
    pub y_max_ms: f64,
    pub colours: String,
}

/// Fill colours of fault windows, one per fault kind in order of first
/// appearance (cycled past the last): light enough for dots to show on them.
pub const FAULT_SHADES: [RGBColor; 6] = [
    RGBColor(244, 199, 199),
    RGBColor(199, 214, 244),
    RGBColor(214, 238, 199),
    RGBColor(244, 226, 186),
    RGBColor(226, 206, 240),
    RGBColor(196, 232, 232),
];

/// Dot colour of each outcome, with its legend name (as in the timeline).
const OUTCOMES: [(&str, RGBColor); 4] = [
    ("ok", RGBColor(58, 154, 72)),
    ("refused by the store", RGBColor(74, 120, 194)),
    ("failed", RGBColor(194, 74, 74)),
    ("unknown (info)", RGBColor(224, 154, 26)),
];

fn outcome_index(r: &BookingResult) -> usize {
    match r {
        BookingResult::Ok(_) => 0,
        BookingResult::Refused(_) => 1,
        BookingResult::Failed => 2,
        BookingResult::Unknown => 3,
    }
}

/// The distinct fault kinds in order of first appearance, each with its shade.
pub fn fault_kinds(faults: &[FaultWindow]) -> Vec<(&str, RGBColor)> {
    let mut kinds: Vec<(&str, RGBColor)> = Vec::new();
    for f in faults {
        if !kinds.iter().any(|(k, _)| *k == f.kind) {
            kinds.push((&f.kind, FAULT_SHADES[kinds.len() % FAULT_SHADES.len()]));
        }
    }
    kinds
}

/// The log axis over `lo..hi` (whole decades), widened by a hair: plotters
/// finds its first tick with `ceil(ln(lo) / ln(10))`, which rounds 0.1 ms
/// up to 1 ms and would leave the bottom decade unlabelled.
fn log_axis(lo: f64, hi: f64) -> plotters::coord::combinators::LogCoord<f64> {
    (lo * 0.999..hi * 1.001).log_scale().into()
}

/// A log-scale range around the positive values in whole decades (ticks on
/// 1, 10, 100 ms); 1..10 ms when there is none.
fn log_range_ms(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| *v > 0.0)
        .fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        return (1.0, 10.0);
    }
    let lo = 10f64.powf(lo.log10().floor());
    (lo, 10f64.powf(hi.log10().ceil()).max(lo * 10.0))
}

/// Latency (ms, log scale) over time (s): one dot per completed operation
/// coloured by outcome, fault windows shaded by kind and named on the band,
/// a title, axis names with units and a legend. Returns the PNG bytes and
/// the axes' meaning.
pub fn latency_png(
    title: &str,
    ops: &[BookingOp],
    faults: &[FaultWindow],
    end_ns: u64,
) -> Result<(Vec<u8>, PlotAxes), String> {
    let (w, h) = (PLOT_WIDTH_PX, PLOT_HEIGHT_PX);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let axes = latency_rgb(&mut buf, title, ops, faults, end_ns)?;
    Ok((encode_png(w, h, &buf), axes))
}

/// Draws [`latency_png`]'s picture into `buf` (RGB, [`PLOT_WIDTH_PX`] ×
/// [`PLOT_HEIGHT_PX`]).
fn latency_rgb(
    buf: &mut [u8],
    title: &str,
    ops: &[BookingOp],
    faults: &[FaultWindow],
    end_ns: u64,
) -> Result<PlotAxes, String> {
    plotkit::register_font();
    let (w, h) = (PLOT_WIDTH_PX, PLOT_HEIGHT_PX);
    let err = |e: DrawingAreaErrorKind<_>| format!("plot: {e}");
    let latency_ms = |o: &BookingOp| {
        o.complete_ns
            .map(|c| c.saturating_sub(o.invoke_ns) as f64 / 1e6)
    };
    let (y_lo, y_hi) = log_range_ms(ops.iter().filter_map(latency_ms));
    let x_max_s = (end_ns as f64 / 1e9).max(0.001);
    let root = BitMapBackend::with_buffer(buf, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let body = root
        .margin(6, 0, 0, 0)
        .titled(title, (FONT_FAMILY, TITLE_PX))
        .map_err(err)?;
    let mut chart = ChartBuilder::on(&body)
        .margin(10)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d(0.0..x_max_s, log_axis(y_lo, y_hi))
        .map_err(err)?;
    // Bands first, so the grid and the dots stay visible on them.
    for (kind, shade) in fault_kinds(faults) {
        chart
            .draw_series(faults.iter().filter(|f| f.kind == kind).map(|f| {
                let x0 = f.start_ns as f64 / 1e9;
                let x1 = f.end_ns.unwrap_or(end_ns) as f64 / 1e9;
                Rectangle::new([(x0, y_lo), (x1, y_hi)], shade.filled())
            }))
            .map_err(err)?
            .label(format!("fault: {kind}"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], shade.filled()));
    }
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("time since the run started (s)")
        .y_desc("operation latency (ms, log)")
        .axis_desc_style((FONT_FAMILY, AXIS_LABEL_PX))
        .label_style((FONT_FAMILY, TICK_PX))
        .y_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        })
        .draw()
        .map_err(err)?;
    // Each band's name at its top left, so overlapping kinds stay told apart.
    chart
        .draw_series(faults.iter().map(|f| {
            EmptyElement::at((f.start_ns as f64 / 1e9, y_hi))
                + Text::new(
                    f.kind.clone(),
                    (4, 4),
                    (FONT_FAMILY, TICK_PX)
                        .into_font()
                        .color(&RGBColor(120, 30, 30)),
                )
        }))
        .map_err(err)?;
    for (i, (name, colour)) in OUTCOMES.iter().enumerate() {
        let dots: Vec<(f64, f64)> = ops
            .iter()
            .filter(|o| outcome_index(&o.result) == i)
            .filter_map(|o| Some((o.invoke_ns as f64 / 1e9, latency_ms(o)?.max(y_lo))))
            .collect();
        if dots.is_empty() {
            continue;
        }
        let colour = *colour;
        chart
            .draw_series(dots.into_iter().map(|p| Circle::new(p, 2, colour.filled())))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| Circle::new((x + 9, y), 4, colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT_FAMILY, TICK_PX))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(PlotAxes {
        width_px: w,
        height_px: h,
        x: format!("time since the run started, 0 to {x_max_s:.1} s"),
        y: format!("operation latency on a log scale, {y_lo} to {y_hi} ms"),
        y_min_ms: y_lo,
        y_max_ms: y_hi,
        colours: "dots: green ok, blue refused by the store, red failed, orange unknown (info); \
                  bands: fault windows, one shade per kind, named in the legend and on the band"
            .into(),
    })
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
    use plotkit::non_background_px;

    use super::*;
    use crate::booking::{BookingCall, ReadArgs, Refusal};

    /// Ten seconds of reads, one every 50 ms, latency 1..40 ms with a slow
    /// tail; a partition from 2 s to 4 s and a kill from 6 s to 7 s.
    fn fixture() -> (Vec<BookingOp>, Vec<FaultWindow>, u64) {
        let ops = (0..200u64)
            .map(|i| {
                let invoke_ns = i * 50_000_000;
                let latency_ns = (1 + i % 40) * 1_000_000 * if i % 37 == 0 { 30 } else { 1 };
                let result = match i % 10 {
                    0 => BookingResult::Refused(Refusal {
                        error: "seat_taken".into(),
                        at_ms: None,
                    }),
                    1 => BookingResult::Failed,
                    2 => BookingResult::Unknown,
                    _ => BookingResult::Failed,
                };
                BookingOp {
                    id: i as usize,
                    process: i % 5,
                    call: BookingCall::Read(ReadArgs { seat: "A1".into() }),
                    result,
                    invoke_ns,
                    complete_ns: Some(invoke_ns + latency_ns),
                    index: None,
                    request_id: None,
                }
            })
            .collect();
        let window = |kind: &str, s0: u64, s1: u64| FaultWindow {
            kind: kind.into(),
            detail: format!("{kind} for the test"),
            start_ns: s0 * 1_000_000_000,
            end_ns: Some(s1 * 1_000_000_000),
            clocks_moved: Vec::new(),
        };
        let faults = vec![window("partition-halves", 2, 4), window("kill", 6, 7)];
        (ops, faults, 10_000_000_000)
    }

    fn count(rgb: &[u8], (x0, y0): (u32, u32), (x1, y1): (u32, u32), c: RGBColor) -> usize {
        let w = PLOT_WIDTH_PX as usize;
        (y0 as usize..y1 as usize)
            .flat_map(|y| (x0 as usize..x1 as usize).map(move |x| (y * w + x) * 3))
            .filter(|&i| rgb[i..i + 3] == [c.0, c.1, c.2])
            .count()
    }

    /// Goal: the latency PNG decodes at its size, has text in the title and
    /// both axis-name regions, each fault band shaded in its own colour where
    /// its window is and nowhere else in the plot, and a legend naming them.
    /// `PLOT_TEST_OUT=dir` keeps a copy to look at.
    #[test]
    fn latency_png_has_title_axes_legend_and_fault_bands() {
        let (ops, faults, end_ns) = fixture();
        let (png_bytes, axes) = latency_png("latency: test run", &ops, &faults, end_ns).unwrap();
        if let Some(out) = std::env::var_os("PLOT_TEST_OUT") {
            std::fs::write(std::path::Path::new(&out).join("latency.png"), &png_bytes).unwrap();
        }
        let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .unwrap();
        let mut rgb = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut rgb).unwrap();
        assert_eq!((info.width, info.height), (PLOT_WIDTH_PX, PLOT_HEIGHT_PX));
        assert_eq!((axes.y_min_ms, axes.y_max_ms), (1.0, 10_000.0));
        let (w, white) = (PLOT_WIDTH_PX, [255; 3]);
        // Title centred at the top; its far corners empty.
        assert!(non_background_px(&rgb, w, (450, 0), (750, 30), white) > 300);
        assert_eq!(non_background_px(&rgb, w, (0, 0), (100, 30), white), 0);
        // The y-axis name runs up the left edge, the x-axis name under the plot.
        assert!(non_background_px(&rgb, w, (5, 100), (30, 420), white) > 200);
        assert!(non_background_px(&rgb, w, (450, 470), (750, 500), white) > 200);
        // Plot area: x = 85 + t / 10 s * 1105 px. The partition band covers
        // 2..4 s (306..527 px), the kill band 6..7 s (748..858 px).
        let (partition, kill) = (FAULT_SHADES[0], FAULT_SHADES[1]);
        let rows = (150, 400);
        assert!(count(&rgb, (330, rows.0), (500, rows.1), partition) > 20_000);
        assert!(count(&rgb, (770, rows.0), (840, rows.1), kill) > 8_000);
        assert_eq!(count(&rgb, (100, rows.0), (290, rows.1), partition), 0);
        assert_eq!(count(&rgb, (100, rows.0), (290, rows.1), kill), 0);
        assert_eq!(count(&rgb, (545, rows.0), (730, rows.1), partition), 0);
        assert_eq!(count(&rgb, (330, rows.0), (500, rows.1), kill), 0);
        // The legend (upper right) shows both shades and the outcome colours.
        let legend = ((850, 35), (1195, 200));
        for c in [partition, kill, OUTCOMES[1].1, OUTCOMES[2].1, OUTCOMES[3].1] {
            assert!(
                count(&rgb, legend.0, legend.1, c) > 10,
                "legend lacks {c:?}"
            );
        }
    }

    /// Goal: each fault kind gets one shade, in order of first appearance.
    #[test]
    fn fault_kinds_share_a_shade() {
        let (_, mut faults, _) = fixture();
        faults.push(faults[0].clone());
        let kinds = fault_kinds(&faults);
        assert_eq!(kinds.len(), 2);
        assert_eq!(kinds[0], ("partition-halves", FAULT_SHADES[0]));
        assert_eq!(kinds[1], ("kill", FAULT_SHADES[1]));
    }

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
