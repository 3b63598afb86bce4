//! SVG plots of a report: throughput over time, and latency percentiles.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::BenchError;
use crate::report::Report;

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws each named series as a line, with a legend at `legend`.
fn lines<'a>(
    chart: &mut Chart<'a, 'a>,
    series: Vec<(String, Vec<(f64, f64)>)>,
    legend: SeriesLabelPosition,
    path: &Path,
) -> Result<(), BenchError> {
    let e = err(path);
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (i, (name, points)) in series.into_iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(&e)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(&e)
}

fn err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> BenchError + '_ {
    move |e| BenchError::Output(format!("{}: {e:?}", path.display()))
}

/// Writes `throughput.svg` and `latency.svg` into `dir`.
pub fn draw(report: &Report, dir: &Path) -> Result<(), BenchError> {
    throughput(report, &dir.join("throughput.svg"))?;
    latency(report, &dir.join("latency.svg"))
}

/// Produced and consumed MB/s each second, phases one after another.
fn throughput(report: &Report, path: &Path) -> Result<(), BenchError> {
    let e = err(path);
    let mut produced = Vec::new();
    let mut consumed = Vec::new();
    let mut offset = 0.0;
    let mut ymax: f64 = 1.0;
    for phase in &report.phases {
        for p in &phase.timeline {
            produced.push((offset + p.t, p.produced_mb_s));
            consumed.push((offset + p.t, p.consumed_mb_s));
            ymax = ymax.max(p.produced_mb_s).max(p.consumed_mb_s);
        }
        offset += phase.timeline.last().map_or(0.0, |p| p.t);
    }
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let phases: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: throughput ({})", report.label, phases.join(", then ")),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..offset.max(1.0), 0f64..ymax * 1.1)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("MB/s")
        .draw()
        .map_err(&e)?;
    lines(
        &mut chart,
        vec![
            ("produced (acknowledged)".to_string(), produced),
            ("consumed".to_string(), consumed),
        ],
        SeriesLabelPosition::UpperRight,
        path,
    )?;
    root.present().map_err(&e)
}

/// Position of quantile `q` on the plot's "nines" axis: 1 = p90, 2 = p99, 3 = p99.9.
fn nines(q: f64) -> f64 {
    -(1.0 - q).max(1e-6).log10()
}

/// Latency against percentile for each phase's produce acks and end-to-end.
fn latency(report: &Report, path: &Path) -> Result<(), BenchError> {
    let e = err(path);
    let mut series = Vec::new();
    for phase in &report.phases {
        for (what, l) in [
            ("produce ack", &phase.produce_latency_ms),
            ("end-to-end", &phase.end_to_end_latency_ms),
        ] {
            if let Some(l) = l {
                let points: Vec<(f64, f64)> = l
                    .curve
                    .iter()
                    .filter(|(q, _)| *q < 1.0)
                    .map(|(q, ms)| (nines(*q), *ms))
                    .collect();
                series.push((format!("{} {what}", phase.name), points));
            }
        }
    }
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(1.0_f64, f64::max);
    let xmax = nines(0.9999);
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: latency by percentile", report.label),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax * 1.1)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_desc("percentile (0 = p0, 1 = p90, 2 = p99, 3 = p99.9, 4 = p99.99)")
        .y_desc("milliseconds")
        .draw()
        .map_err(&e)?;
    lines(&mut chart, series, SeriesLabelPosition::UpperLeft, path)?;
    root.present().map_err(&e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nines_axis_spaces_tail_percentiles_evenly() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
    }
}
