//! The PNG of a flash-sale run: answered holds per second (top) and p99 hold
//! latency per second (bottom).
//!
//! Owns: drawing. Must not: need system fonts: plotters is built without
//! `ttf`, so the chart has axes and lines but no text; the caption lives in
//! the report and in docs/BENCHMARKS.md (x = seconds since the sale opened,
//! top y = holds/s from 0 to the peak, bottom y = p99 ms from 0 to the worst).

use std::path::Path;

use plotters::prelude::*;

use crate::stats::Timeline;

pub fn draw(path: &Path, timeline: &Timeline) -> anyhow::Result<()> {
    let used = timeline.used();
    let n = used.len().max(2) as f64;
    let peak = used.iter().map(|b| b.0).max().unwrap_or(1).max(1) as f64;
    let p99: Vec<f64> = used.iter().map(|b| b.1.quantile_ms(0.99)).collect();
    let p99_max = p99.iter().cloned().fold(1.0, f64::max);
    // The default lands under `reports/` (git-ignored), which may not exist yet.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (top, bottom) = root.split_vertically(300);
    let mut c = ChartBuilder::on(&top)
        .margin(10)
        .build_cartesian_2d(0f64..n, 0f64..peak * 1.1)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(0)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    c.draw_series(LineSeries::new(
        used.iter()
            .enumerate()
            .map(|(i, b)| (i as f64 + 0.5, b.0 as f64)),
        &BLUE,
    ))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut c = ChartBuilder::on(&bottom)
        .margin(10)
        .build_cartesian_2d(0f64..n, 0f64..p99_max * 1.1)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(0)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    c.draw_series(LineSeries::new(
        p99.iter().enumerate().map(|(i, v)| (i as f64 + 0.5, *v)),
        &RED,
    ))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
