//! The PNG of a run: rates per second (top panel) and latency quantiles
//! per second on a log scale (bottom panel), with a title, axis names with
//! units and a legend in each panel. The flash sale draws answered holds/s
//! and p50/p99 hold latency ([`flash_figure`]); the waiting-room sale
//! builds its own [`Figure`] (`room_report`).
//!
//! Owns: drawing ([`draw`]/[`draw_figure`] to a file, [`draw_rgb`] into a
//! buffer). Must not:
//! need system fonts: text comes from the font `plotkit` embeds (plotters'
//! `ab_glyph`, no `ttf`, no fontconfig).
//!
//! Caveat: an empty second has no latency, so the latency lines skip it
//! rather than dropping to zero (a log scale has no zero).

use std::path::Path;

use plotkit::{AXIS_LABEL_PX, FONT_FAMILY, TICK_PX, TITLE_PX};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::stats::Timeline;

/// Image size in pixels.
pub const WIDTH_PX: u32 = 1000;
pub const HEIGHT_PX: u32 = 600;
/// Series colours (the tests look for them).
pub const HOLDS_COLOUR: RGBColor = RGBColor(31, 119, 180);
pub const P50_COLOUR: RGBColor = RGBColor(44, 160, 44);
pub const P99_COLOUR: RGBColor = RGBColor(214, 39, 40);
/// The waiting-room sale's joins and their p99.
pub const JOINS_COLOUR: RGBColor = RGBColor(255, 127, 14);
pub const JOIN_P99_COLOUR: RGBColor = RGBColor(148, 103, 189);

/// One line of a panel: its legend name, colour and (second, value) points.
pub struct Series {
    pub name: String,
    pub colour: RGBColor,
    pub points: Vec<(f64, f64)>,
}

/// A two-panel picture over seconds since the sale opened: rates on a linear
/// axis on top, latencies in ms on a log axis below.
pub struct Figure {
    pub title: String,
    pub seconds: f64,
    pub rate_y_desc: String,
    pub rates: Vec<Series>,
    pub latency_y_desc: String,
    pub latencies: Vec<Series>,
}

/// The flash sale's picture: answered holds/s on top, p50/p99 hold latency below.
pub fn flash_figure(timeline: &Timeline) -> Figure {
    let used = timeline.used();
    Figure {
        title: "Flash sale: answered holds and hold latency per second".into(),
        seconds: used.len().max(1) as f64,
        rate_y_desc: "answered holds (holds/s)".into(),
        rates: vec![Series {
            name: "answered holds per second".into(),
            colour: HOLDS_COLOUR,
            points: per_second_counts(timeline),
        }],
        latency_y_desc: "hold latency (ms, log)".into(),
        latencies: vec![
            Series {
                name: "p99 hold latency".into(),
                colour: P99_COLOUR,
                points: per_second_quantile(timeline, 0.99),
            },
            Series {
                name: "p50 hold latency".into(),
                colour: P50_COLOUR,
                points: per_second_quantile(timeline, 0.5),
            },
        ],
    }
}

/// (second centre, answers) of every used second.
pub fn per_second_counts(timeline: &Timeline) -> Vec<(f64, f64)> {
    timeline
        .used()
        .iter()
        .enumerate()
        .map(|(i, b)| (i as f64 + 0.5, b.0 as f64))
        .collect()
}

/// (second centre, `q` quantile in ms) of the seconds that answered anything.
pub fn per_second_quantile(timeline: &Timeline, q: f64) -> Vec<(f64, f64)> {
    timeline
        .used()
        .iter()
        .enumerate()
        .filter(|(_, b)| b.0 > 0)
        .map(|(i, b)| (i as f64 + 0.5, b.1.quantile_ms(q)))
        .collect()
}

/// Draws the run's timeline into a PNG at `path`, creating its directory.
pub fn draw(path: &Path, timeline: &Timeline) -> anyhow::Result<()> {
    draw_figure(path, &flash_figure(timeline))
}

/// Draws `figure` into a PNG at `path`, creating its directory.
pub fn draw_figure(path: &Path, figure: &Figure) -> anyhow::Result<()> {
    // The default lands under `reports/` (git-ignored), which may not exist yet.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let root = BitMapBackend::new(path, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
    draw_on(&root, figure)?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Draws the flash-sale picture into an RGB buffer (3 bytes a pixel,
/// row-major, [`WIDTH_PX`] × [`HEIGHT_PX`]).
pub fn draw_rgb(timeline: &Timeline) -> anyhow::Result<Vec<u8>> {
    draw_figure_rgb(&flash_figure(timeline))
}

/// Draws `figure` into an RGB buffer like [`draw_rgb`].
pub fn draw_figure_rgb(figure: &Figure) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![255u8; (WIDTH_PX * HEIGHT_PX * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        draw_on(&root, figure)?;
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(buf)
}

fn draw_on<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, f: &Figure) -> anyhow::Result<()> {
    plotkit::register_font();
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("plot: {e}");
    let seconds = f.seconds.max(1.0);
    let peak = f
        .rates
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1f64, f64::max);
    let (lat_lo, lat_hi) = log_range_ms(
        f.latencies
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1)),
    );

    root.fill(&WHITE).map_err(err)?;
    let body = root
        .margin(6, 0, 0, 0)
        .titled(&f.title, (FONT_FAMILY, TITLE_PX))
        .map_err(err)?;
    let (top, bottom) = body.split_vertically(body.dim_in_pixel().1 / 2);

    let mut c = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..seconds, 0f64..peak * 1.15)
        .map_err(err)?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_desc("time since the sale opened (s)")
        .y_desc(f.rate_y_desc.as_str())
        .axis_desc_style((FONT_FAMILY, AXIS_LABEL_PX))
        .label_style((FONT_FAMILY, TICK_PX))
        .x_label_formatter(&|s| format!("{s:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(err)?;
    for s in &f.rates {
        let colour = s.colour;
        c.draw_series(LineSeries::new(
            s.points.iter().copied(),
            colour.stroke_width(2),
        ))
        .map_err(err)?
        .label(s.name.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    legend(&mut c, SeriesLabelPosition::UpperLeft).map_err(err)?;

    let mut c = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..seconds, log_axis(lat_lo, lat_hi))
        .map_err(err)?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_desc("time since the sale opened (s)")
        .y_desc(f.latency_y_desc.as_str())
        .axis_desc_style((FONT_FAMILY, AXIS_LABEL_PX))
        .label_style((FONT_FAMILY, TICK_PX))
        .x_label_formatter(&|s| format!("{s:.0}"))
        .y_label_formatter(&|v| format_ms(*v))
        .draw()
        .map_err(err)?;
    for s in &f.latencies {
        let colour = s.colour;
        c.draw_series(LineSeries::new(
            s.points.iter().map(|p| (p.0, p.1.max(lat_lo))),
            colour.stroke_width(2),
        ))
        .map_err(err)?
        .label(s.name.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    legend(&mut c, SeriesLabelPosition::LowerRight).map_err(err)?;
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a, X, Y>(
    c: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    c.configure_series_labels()
        .position(position)
        .label_font((FONT_FAMILY, TICK_PX))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

/// The log axis over `lo..hi` (whole decades), widened by a hair: plotters
/// finds its first tick with `ceil(ln(lo) / ln(10))`, which rounds 0.1 ms
/// up to 1 ms and would leave the bottom decade unlabelled.
fn log_axis(lo: f64, hi: f64) -> plotters::coord::combinators::LogCoord<f64> {
    (lo * 0.999..hi * 1.001).log_scale().into()
}

/// A log-scale range around the positive values, widened to whole decades
/// so the ticks land on 1, 10, 100 ms; 1..10 ms when there is none.
fn log_range_ms(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| *v > 0.0)
        .fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        return (1.0, 10.0);
    }
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
    (lo, hi)
}

/// A tick label in ms without trailing zeros: 0.1, 1, 10, 250.
fn format_ms(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use plotkit::non_background_px;

    use super::*;

    /// Ten seconds of a small sale: a ramp to 120 holds/s, latency rising
    /// from 2 ms to 80 ms at the peak, then a quiet last second.
    fn fixed_timeline() -> Timeline {
        let mut t = Timeline::new(20);
        for s in 0..10u64 {
            let holds = if s == 9 { 5 } else { 20 + s * 12 };
            for k in 0..holds {
                let at = Duration::from_millis(s * 1000 + k * 1000 / holds);
                let base_ms = 2 + s * 8;
                let lat = if k % 50 == 0 { base_ms * 4 } else { base_ms };
                t.record(at, Duration::from_millis(lat));
            }
        }
        t
    }

    fn px_of(rgb: &[u8], colour: RGBColor) -> usize {
        rgb.chunks(3)
            .filter(|p| *p == [colour.0, colour.1, colour.2])
            .count()
    }

    /// Goal: the PNG on disk decodes at the expected size, with text in the
    /// title strip and both axis-name areas and every series in its colour.
    /// `PLOT_TEST_OUT=dir` keeps a copy to look at.
    #[test]
    fn flash_sale_png_has_title_axes_and_legend() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/flash-sale.png");
        draw(&path, &fixed_timeline()).unwrap();
        if let Some(out) = std::env::var_os("PLOT_TEST_OUT") {
            std::fs::copy(&path, Path::new(&out).join("flash-sale.png")).unwrap();
        }
        let decoder = png::Decoder::new(std::fs::File::open(&path).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut rgb = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut rgb).unwrap();
        assert_eq!((info.width, info.height), (WIDTH_PX, HEIGHT_PX));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        let white = [255; 3];
        let w = WIDTH_PX;
        // The title: centred in the top strip, nothing in its far corners.
        assert!(non_background_px(&rgb, w, (300, 0), (700, 30), white) > 300);
        assert_eq!(non_background_px(&rgb, w, (0, 0), (100, 30), white), 0);
        // The y-axis names run up the left edge of each panel.
        assert!(non_background_px(&rgb, w, (10, 60), (30, 300), white) > 150);
        assert!(non_background_px(&rgb, w, (10, 330), (30, 590), white) > 150);
        // The x-axis names sit under each panel, centred.
        assert!(non_background_px(&rgb, w, (400, 285), (650, 310), white) > 150);
        assert!(non_background_px(&rgb, w, (400, 575), (650, 600), white) > 150);
        // Each series is drawn (line and legend swatch) in its own colour.
        for colour in [HOLDS_COLOUR, P50_COLOUR, P99_COLOUR] {
            assert!(
                px_of(&rgb, colour) > 100,
                "series colour {colour:?} missing"
            );
        }
    }

    /// Goal: in-memory drawing works without a file, and an empty run still
    /// gets a title (no series, nothing to panic on).
    #[test]
    fn empty_timeline_draws_a_titled_frame() {
        let rgb = draw_rgb(&Timeline::new(5)).unwrap();
        assert_eq!(rgb.len(), (WIDTH_PX * HEIGHT_PX * 3) as usize);
        assert!(non_background_px(&rgb, WIDTH_PX, (300, 0), (700, 30), [255; 3]) > 300);
    }

    /// Goal: the log range covers every value in whole decades.
    #[test]
    fn log_range_is_whole_decades() {
        assert_eq!(log_range_ms([2.0, 80.0].into_iter()), (1.0, 100.0));
        assert_eq!(log_range_ms([0.0, 0.3].into_iter()), (0.1, 1.0));
        assert_eq!(log_range_ms(std::iter::empty()), (1.0, 10.0));
        assert_eq!(format_ms(0.1), "0.1");
        assert_eq!(format_ms(100.0), "100");
    }
}
