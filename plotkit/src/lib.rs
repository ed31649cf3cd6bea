//! The text of the project's plots: a bundled font registered with plotters,
//! the sizes every chart uses, and a pixel probe for the plots' tests.
//!
//! Owns: [`register_font`] (DejaVu Sans, embedded with `include_bytes!` from
//! `assets/fonts/`, licence beside it, registered as plotters' `sans-serif`
//! family, once per process) and [`non_background_px`].
//!
//! Must not: draw charts (each crate draws its own: `bench::plot`,
//! `jepsen_style_tests::harness::report`), read fonts from the system, or be a
//! dependency of a shipped crate.
//!
//! Caveat: plotters' `ab_glyph` renderer ignores a glyph's left bearing, so
//! letters sit a pixel or two left of where a full text engine puts them;
//! readable, not typeset.

use std::sync::Once;

use plotters::style::FontStyle;

/// The family name every chart asks for; [`register_font`] serves it.
pub const FONT_FAMILY: &str = "sans-serif";
/// Chart titles, in pixels.
pub const TITLE_PX: u32 = 22;
/// Axis descriptions (name and unit), in pixels.
pub const AXIS_LABEL_PX: u32 = 16;
/// Tick labels and legend entries, in pixels.
pub const TICK_PX: u32 = 13;

/// DejaVu Sans (Bitstream Vera licence, `assets/fonts/LICENSE`).
static DEJAVU_SANS_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers the bundled font as [`FONT_FAMILY`] for every style. Call before
/// drawing any text; later calls do nothing.
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [
            FontStyle::Normal,
            FontStyle::Bold,
            FontStyle::Italic,
            FontStyle::Oblique,
        ] {
            // The bytes are compiled in: a parse failure is a broken build.
            assert!(
                plotters::style::register_font(FONT_FAMILY, style, DEJAVU_SANS_TTF).is_ok(),
                "the bundled DejaVu Sans does not parse as a font"
            );
        }
    });
}

/// Pixels of `rgb` (row-major, 3 bytes a pixel, `width` wide) inside the
/// rectangle `x0..x1` × `y0..y1` whose colour is not `background`. The plots'
/// tests use it to find text, bands and lines where they must be.
pub fn non_background_px(
    rgb: &[u8],
    width: u32,
    (x0, y0): (u32, u32),
    (x1, y1): (u32, u32),
    background: [u8; 3],
) -> usize {
    let width = width as usize;
    assert_eq!(rgb.len() % (width * 3), 0, "buffer is not whole rows");
    let height = rgb.len() / (width * 3);
    assert!(
        x0 < x1 && y0 < y1 && x1 as usize <= width && y1 as usize <= height,
        "rectangle ({x0},{y0})..({x1},{y1}) outside the {width}x{height} image"
    );
    (y0 as usize..y1 as usize)
        .flat_map(|y| (x0 as usize..x1 as usize).map(move |x| (y * width + x) * 3))
        .filter(|&i| rgb[i..i + 3] != background)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the bundled font registers, so plotters measures text with it.
    #[test]
    fn bundled_font_measures_text() {
        register_font();
        register_font();
        let font = plotters::style::FontDesc::new(
            plotters::style::FontFamily::Name(FONT_FAMILY),
            TITLE_PX as f64,
            FontStyle::Normal,
        );
        let (w, h) = font.box_size("latency (ms)").expect("font registered");
        assert!(w > 60 && h > 5, "text box {w}x{h} too small");
    }

    /// Goal: the probe counts only pixels that differ from the background.
    #[test]
    fn probe_counts_foreground() {
        let mut rgb = vec![255u8; 4 * 2 * 3];
        rgb[(4 + 2) * 3] = 0; // pixel (2, 1)
        assert_eq!(non_background_px(&rgb, 4, (0, 0), (4, 2), [255; 3]), 1);
        assert_eq!(non_background_px(&rgb, 4, (0, 0), (2, 2), [255; 3]), 0);
    }
}
