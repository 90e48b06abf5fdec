//! PNG plots of the report, drawn with `plotters`.

use std::path::Path;

use plotters::prelude::*;

use crate::peer::Peer;
use crate::report::{EchoRun, IdleRun, Ramp};

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

const COLORS: [RGBColor; 4] =
    [RGBColor(31, 111, 235), RGBColor(210, 153, 34), RGBColor(45, 164, 78), RGBColor(137, 87, 229)];

fn color(peer: Peer) -> RGBColor {
    COLORS[Peer::ALL.iter().position(|p| *p == peer).unwrap_or(0)]
}

/// Registers a system font for the plots' text; `false` when none is installed.
fn font() -> bool {
    for path in FONTS {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// Writes every plot there is data for.
pub fn all(folder: &Path, fanout: &[Ramp], echo: &[EchoRun], idle: &[IdleRun]) {
    if !font() {
        eprintln!("no TrueType font in {FONTS:?}; skipping the plots");
        return;
    }
    let results = [
        (!fanout.is_empty()).then(|| fanout_plot(&folder.join("fanout.png"), fanout)),
        (!echo.is_empty()).then(|| echo_plot(&folder.join("echo.png"), echo)),
        (!idle.is_empty()).then(|| idle_plot(&folder.join("idle.png"), idle)),
    ];
    for result in results.into_iter().flatten() {
        match result {
            Ok(path) => println!("plot written to {path}"),
            Err(error) => eprintln!("plot failed: {error}"),
        }
    }
}

type Drawn = Result<String, Box<dyn std::error::Error>>;

fn fanout_plot(path: &Path, fanout: &[Ramp]) -> Drawn {
    let root = BitMapBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_rate =
        fanout.iter().flat_map(|(_, _, s)| s.iter().flatten()).map(|s| s.rate).max().unwrap_or(1000);
    let mut chart = ChartBuilder::on(&root)
        .caption("Fan-out: p99 latency as the publish rate doubles (1 room)", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((100u64..max_rate * 2).log_scale(), (0.1f64..10_000.0).log_scale())?;
    chart.configure_mesh().x_desc("messages per second into the room").y_desc("p99 latency (ms)").draw()?;
    chart
        .draw_series(LineSeries::new(vec![(100, 100.0), (max_rate * 2, 100.0)], RED.stroke_width(1)))?
        .label("100 ms limit")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
    for (peer, _, steps) in fanout {
        let Ok(steps) = steps else { continue };
        let points: Vec<(u64, f64)> =
            steps.iter().map(|s| (s.rate, (s.p99.as_secs_f64() * 1e3).clamp(0.1, 9_999.0))).collect();
        let c = color(*peer);
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))?
            .label(peer.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, c.filled())))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(path.display().to_string())
}

/// Bars, one per label, with the value written above each.
fn bars(path: &Path, caption: &str, unit: &str, bars: &[(String, f64, RGBColor)]) -> Drawn {
    let root = BitMapBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = bars.iter().map(|(_, v, _)| *v).fold(0.0, f64::max) * 1.2 + 1e-9;
    let labels: Vec<String> = bars.iter().map(|(l, _, _)| l.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..bars.len() as f64, 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(unit)
        .draw()?;
    for (i, (_, value, c)) in bars.iter().enumerate() {
        let x = i as f64;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x + 0.15, 0.0), (x + 0.85, *value)],
            c.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{value:.2}"),
            (x + 0.38, *value + top * 0.03),
            ("sans-serif", 16),
        )))?;
    }
    root.present()?;
    Ok(path.display().to_string())
}

fn echo_plot(path: &Path, echo: &[EchoRun]) -> Drawn {
    let data: Vec<(String, f64, RGBColor)> = echo
        .iter()
        .filter_map(|(p, _, e)| {
            e.as_ref()
                .ok()
                .map(|e| (p.name().to_owned(), e.cpu_per_round_trip.as_secs_f64() * 1e6, color(*p)))
        })
        .collect();
    bars(path, "Echo: server CPU per round trip (lower is better)", "µs", &data)
}

fn idle_plot(path: &Path, idle: &[IdleRun]) -> Drawn {
    let data: Vec<(String, f64, RGBColor)> = idle
        .iter()
        .filter_map(|(p, room, _, b)| {
            let label =
                if *p == Peer::Tether { format!("Tether, rooms of {room}") } else { p.name().to_owned() };
            b.as_ref().ok().map(|b| (label, b / 1e3, color(*p)))
        })
        .collect();
    bars(path, "Memory per idle connection (lower is better)", "KB", &data)
}
