//! `filature-bench chart FILE.jsonl [--out DIR]`: one SVG bar chart per scenario from a run's JSON
//! lines (`filature-bench all --json > FILE.jsonl`), one panel per metric, each system's value
//! as a bar, filature highlighted, the scenario's floor (the best any runtime could do, where the
//! scenario has one) drawn hatched-grey, and the machine and date in the caption. Written into
//! `docs/bench/` by default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::harness::Metric;

/// (scenario → metric → [(system, value)]), in first-seen order of systems.
type Table = BTreeMap<String, BTreeMap<String, Vec<(String, f64)>>>;

const FILATURE: RGBColor = RGBColor(200, 70, 30);
const PEER: RGBColor = RGBColor(90, 120, 170);
const FLOOR: RGBColor = RGBColor(150, 150, 150);

/// Renders every scenario found in `input` into `out_dir`; returns the files written.
pub(crate) fn render(input: &Path, out_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let text = std::fs::read_to_string(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let mut table = Table::new();
    for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
        let (Some(scenario), Some(system), Some(m)) = (
            field(line, "scenario"),
            field(line, "system"),
            Metric::from_json(line),
        ) else {
            continue;
        };
        if !m.value.is_finite() {
            continue;
        }
        table
            .entry(scenario)
            .or_default()
            .entry(m.name.clone())
            .or_default()
            .push((system, m.value));
    }
    if table.is_empty() {
        return Err(format!("no benchmark lines in {}", input.display()));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| e.to_string())?;
    let caption = caption(input);
    let floors: BTreeMap<&str, &str> = crate::scenarios::registry()
        .into_iter()
        .filter_map(|s| Some((s.name, s.floor?)))
        .collect();
    let mut written = Vec::new();
    for (scenario, metrics) in &table {
        let path = out_dir.join(format!("{scenario}.svg"));
        let floor = floors.get(scenario.as_str()).copied();
        draw(&path, scenario, metrics, floor, &caption).map_err(|e| format!("{scenario}: {e}"))?;
        written.push(path);
    }
    Ok(written)
}

/// A string field of a JSON line (the harness writes flat objects with plain strings).
fn field(line: &str, name: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(v.get(name)?.as_str()?.to_owned())
}

/// "2 CPUs (model), Linux 6.18, <date of the input file>".
fn caption(input: &Path) -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let date = std::fs::metadata(input)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| civil_date(d.as_secs() / 86_400))
        .unwrap_or_default();
    format!("{cpus} vCPUs ({model}), Linux {kernel}; run of {date}")
}

/// Days since 1970-01-01 → "YYYY-MM-DD" (proleptic Gregorian; Howard Hinnant's algorithm).
fn civil_date(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn draw(
    path: &Path,
    scenario: &str,
    metrics: &BTreeMap<String, Vec<(String, f64)>>,
    floor: Option<&str>,
    caption: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let panel_h = 260u32;
    let height = panel_h * metrics.len() as u32 + 50;
    let root = SVGBackend::new(path, (760, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (body, foot) = root.split_vertically(height - 50);
    let font = ("sans-serif", 13).into_font().color(&BLACK);
    foot.draw(&Text::new(
        format!("filature-bench {scenario}: {caption}."),
        (10, 8),
        font.clone(),
    ))?;
    foot.draw(&Text::new(
        "filature in orange; the floor, where the scenario has one, in grey; peers in blue.",
        (10, 28),
        font,
    ))?;
    for (area, (metric, values)) in body.split_evenly((metrics.len(), 1)).iter().zip(metrics) {
        let n = values.len();
        let max = values
            .iter()
            .map(|(_, v)| *v)
            .fold(0.0, f64::max)
            .max(f64::MIN_POSITIVE);
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{scenario}: {metric}"), ("sans-serif", 17))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(70)
            // A segmented `0..k` has a segment for each of 0..=k: one per system.
            .build_cartesian_2d((0..n.saturating_sub(1)).into_segmented(), 0.0..max * 1.15)?;
        let names: Vec<String> = values.iter().map(|(s, _)| s.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_label_formatter(&|v| short(*v))
            .draw()?;
        chart.draw_series(values.iter().enumerate().map(|(i, (system, v))| {
            let color = if system == "filature" {
                FILATURE
            } else if Some(system.as_str()) == floor {
                FLOOR
            } else {
                PEER
            };
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), *v),
                ],
                color.filled(),
            );
            bar.set_margin(0, 0, 12, 12);
            bar
        }))?;
        chart.draw_series(values.iter().enumerate().map(|(i, (_, v))| {
            Text::new(
                short(*v),
                (SegmentValue::CenterOf(i), *v + max * 0.07),
                TextStyle::from(("sans-serif", 12).into_font())
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            )
        }))?;
    }
    root.present()?;
    Ok(())
}

/// 1234567 → "1.23M", 0.0042 → "0.0042".
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_svg_per_scenario() {
        let dir = std::env::temp_dir().join(format!("filature-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("run.jsonl");
        std::fs::write(
            &input,
            concat!(
                "{\"scenario\": \"switch\", \"system\": \"filature\", \"metric\": \"round_trip_ns\", \"value\": 60.0}\n",
                "{\"scenario\": \"switch\", \"system\": \"corosensei\", \"metric\": \"round_trip_ns\", \"value\": 2.0}\n",
                "{\"scenario\": \"switch\", \"system\": \"tokio\", \"metric\": \"round_trip_ns\", \"value\": 410.0}\n",
                "{\"scenario\": \"call\", \"system\": \"filature\", \"metric\": \"calls_per_sec_1p\", \"value\": 5000000.0}\n",
                "not json\n",
            ),
        )
        .unwrap();
        let out = dir.join("out");
        let written = render(&input, &out).unwrap();
        assert_eq!(written.len(), 2);
        let svg = std::fs::read_to_string(out.join("switch.svg")).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("corosensei") && svg.contains("round_trip_ns")
        );
        assert_eq!(civil_date(20_424), "2025-12-02");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
