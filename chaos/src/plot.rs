//! The soak's PNG: memory, descriptors, tasks and queued bytes over the run.

use std::path::Path;

use plotters::prelude::*;

use crate::soak::Sample;

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a system font for the labels; `false` when none is installed.
fn font() -> bool {
    FONTS.iter().any(|path| {
        std::fs::read(path).is_ok_and(|bytes| {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        })
    })
}

/// Draws four panels over time into `path`.
pub fn soak(path: &Path, samples: &[Sample]) -> Result<(), String> {
    if !font() {
        println!("no TrueType font in {FONTS:?}; the plot is not drawn (the CSV has the figures)");
        return Ok(());
    }
    draw(path, samples).map_err(|e| format!("drawing {}: {e}", path.display()))
}

fn draw(path: &Path, samples: &[Sample]) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let minutes: Vec<f64> = samples.iter().map(|s| s.at / 60.0).collect();
    let end = minutes.last().copied().unwrap_or(1.0).max(0.1);
    type Series = (&'static str, fn(&Sample) -> f64, RGBColor);
    let panels: [Series; 4] = [
        ("resident memory (MB)", |s| s.rss as f64 / 1e6, RGBColor(31, 111, 235)),
        ("open file descriptors", |s| s.fds as f64, RGBColor(210, 153, 34)),
        ("runtime tasks", |s| s.tasks, RGBColor(45, 164, 78)),
        ("queued bytes, all clients (KB)", |s| s.queued / 1e3, RGBColor(137, 87, 229)),
    ];
    for (area, (title, value, color)) in root.split_evenly((2, 2)).iter().zip(panels) {
        let values: Vec<f64> = samples.iter().map(value).collect();
        let top = values.iter().copied().fold(0.0, f64::max).max(1.0) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..end, 0.0..top)?;
        chart.configure_mesh().x_desc("minutes").draw()?;
        chart.draw_series(LineSeries::new(minutes.iter().copied().zip(values), &color))?;
    }
    root.present()?;
    Ok(())
}
