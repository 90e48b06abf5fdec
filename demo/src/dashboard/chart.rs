//! A small time-series chart: a few lines over the last minutes, drawn as SVG.

use yew::prelude::*;

/// One line of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// Its name in the legend.
    pub label: &'static str,
    /// Values, oldest first, one a second; `None` where there was nothing to measure.
    pub values: Vec<Option<f64>>,
}

/// Properties of [`Chart`].
#[derive(Properties, PartialEq)]
pub struct ChartProps {
    /// The chart's title.
    pub title: AttrValue,
    /// The unit of its values, shown after the latest ones.
    pub unit: AttrValue,
    /// Its lines (up to three colours).
    pub lines: Vec<Line>,
}

const WIDTH: f64 = 300.0;
const HEIGHT: f64 = 80.0;
const COLOURS: [&str; 3] = ["#0969da", "#bf3989", "#9a6700"];

/// The lines scaled to their common maximum, with the latest value of each in the legend.
#[component]
pub fn Chart(props: &ChartProps) -> Html {
    let max = props.lines.iter().flat_map(|line| line.values.iter().flatten()).fold(0.0f64, |a, b| a.max(*b));
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let slug = props.title.to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let paths = props.lines.iter().zip(COLOURS).map(|(line, colour)| {
        let count = line.values.len().max(2) - 1;
        let points: Vec<String> = line
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, value)| {
                let value = (*value)?;
                let x = WIDTH * i as f64 / count as f64;
                let y = HEIGHT - HEIGHT * value / top;
                Some(format!("{x:.1},{y:.1}"))
            })
            .collect();
        // Dots too: a line with a value only now and then (commit times on a quiet
        // server) still shows where it has one.
        let dots = points.iter().map(|point| {
            let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
            html! { <circle cx={x.to_owned()} cy={y.to_owned()} r="1.5" fill={colour} /> }
        });
        html! { <><polyline points={points.join(" ")} fill="none" stroke={colour} stroke-width="1.5" />{ for dots }</> }
    });
    let legend = props.lines.iter().zip(COLOURS).map(|(line, colour)| {
        let latest = line.values.iter().rev().flatten().next().copied();
        let latest = latest.map_or("–".to_owned(), |v| format!("{} {}", round(v), props.unit));
        html! {
            <li><span class="swatch" style={format!("background:{colour}")}></span>
                { line.label }{ ": " }<span class="latest" data-line={line.label}>{ latest }</span></li>
        }
    });
    html! {
        <figure class="chart" data-chart={slug}>
            <figcaption>{ props.title.clone() }<span class="scale">{ format!(" (max {} {})", round(max), props.unit) }</span></figcaption>
            <svg viewBox={format!("0 0 {WIDTH} {HEIGHT}")} preserveAspectRatio="none" role="img" aria-label={props.title.clone()}>
                <line x1="0" y1={HEIGHT.to_string()} x2={WIDTH.to_string()} y2={HEIGHT.to_string()} class="axis" />
                { for paths }
            </svg>
            <ul class="legend">{ for legend }</ul>
        </figure>
    }
}

/// Two decimals below 10, whole numbers above.
fn round(value: f64) -> String {
    if value < 10.0 { format!("{value:.2}") } else { format!("{value:.0}") }
}
