//! `carp report RUN_DIR`: PNG plots of a run's `metrics.jsonl` (and k-NN from `summary.json`)
//! plus a short Markdown summary, `report.md`.
//!
//! Plots are drawn with `plotters`' bitmap backend; text uses DejaVu Sans compiled into the
//! binary (`assets/`, Bitstream Vera licence), so no system fonts or fontconfig are needed.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `metrics.jsonl` is missing or has no usable line.
    #[error("{path}: no step records (is this a carp run directory?)")]
    NoMetrics {
        /// The metrics file.
        path: PathBuf,
    },
    /// Drawing failed.
    #[error("{path}: drawing failed: {message}")]
    Draw {
        /// The image.
        path: PathBuf,
        /// The backend's message.
        message: String,
    },
}

/// What `carp report` wrote.
#[derive(Clone, Debug)]
pub struct Report {
    /// The PNG files.
    pub images: Vec<PathBuf>,
    /// The Markdown summary.
    pub markdown: PathBuf,
}

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn ensure_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let parsed = register_font("sans-serif", FontStyle::Normal, FONT).is_ok();
        assert!(parsed, "the bundled font parses");
    });
}

/// Step records of a run, one per step: a step logged twice (work redone after a resume
/// from an older checkpoint) keeps its last line.
pub fn read_metrics(path: &Path) -> Result<Vec<Value>, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut by_step = BTreeMap::new();
    for line in text.lines() {
        // A line cut by a crash is skipped.
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let Some(step) = v["step"].as_u64() {
            by_step.insert(step, v);
        }
    }
    if by_step.is_empty() {
        return Err(ReportError::NoMetrics {
            path: path.to_path_buf(),
        });
    }
    Ok(by_step.into_values().collect())
}

type Series = (&'static str, Vec<(f64, f64)>);

fn series(records: &[Value], key: &'static str) -> Series {
    let points = records
        .iter()
        .filter_map(|r| Some((r["step"].as_f64()?, r[key].as_f64()?)))
        .filter(|(_, y)| y.is_finite())
        .collect();
    (key, points)
}

fn draw_err(path: &Path) -> impl Fn(String) -> ReportError + '_ {
    move |message| ReportError::Draw {
        path: path.to_path_buf(),
        message,
    }
}

/// Draws `series` as lines on one chart; `y_range` fixes the y axis.
fn line_chart(
    path: &Path,
    title: &str,
    series: &[Series],
    y_range: Option<(f64, f64)>,
) -> Result<(), ReportError> {
    let err = draw_err(path);
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if let Some(r) = y_range {
        (y0, y1) = r;
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    finish(&mut chart, &root, &err)
}

/// k-NN top-1 against k, trained teacher next to the initial backbone.
fn knn_chart(path: &Path, knn: &Value) -> Result<(), ReportError> {
    let curve = |key: &str| -> Vec<(f64, f64)> {
        knn[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r["k"].as_f64()?, r["top1"].as_f64()?)))
            .collect()
    };
    let err = draw_err(path);
    let (trained, init) = (curve("trained"), curve("init"));
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let kmax = trained.iter().chain(&init).map(|p| p.0).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("k-NN top-1 (%) of the teacher backbone", ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..kmax * 1.05, 0.0..100.0)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("k")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (i, (name, pts)) in [("trained", trained), ("random init", init)]
        .into_iter()
        .enumerate()
    {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
            .map_err(|e| err(e.to_string()))?;
    }
    finish(&mut chart, &root, &err)
}

/// Draws the legend of `chart` and writes the image.
fn finish<'a>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    root: &DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>,
    err: &impl Fn(String) -> ReportError,
) -> Result<(), ReportError> {
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

fn last_f64(records: &[Value], key: &str) -> Option<f64> {
    records.iter().rev().find_map(|r| r[key].as_f64())
}

/// Writes `loss.png`, `schedule.png`, `health.png` (`knn.png` when the run evaluated,
/// `knn_training.png` when it evaluated during training)
/// and `report.md` into `run_dir/report/`.
pub fn write_report(run_dir: &Path) -> Result<Report, ReportError> {
    ensure_font();
    let records = read_metrics(&run_dir.join("metrics.jsonl"))?;
    let dir = run_dir.join("report");
    std::fs::create_dir_all(&dir).map_err(|source| ReportError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut images = Vec::new();
    let loss = dir.join("loss.png");
    line_chart(
        &loss,
        "loss terms",
        &[
            series(&records, "loss"),
            series(&records, "consistency"),
            series(&records, "entropy"),
        ],
        None,
    )?;
    images.push(loss);
    let sched = dir.join("schedule.png");
    line_chart(&sched, "learning rate", &[series(&records, "lr")], None)?;
    let momentum = dir.join("momentum.png");
    line_chart(
        &momentum,
        "teacher momentum",
        &[series(&records, "momentum")],
        None,
    )?;
    images.push(sched);
    images.push(momentum);
    let health = dir.join("health.png");
    line_chart(
        &health,
        "collapse signals (0 to 1)",
        &[
            series(&records, "entropy_ratio"),
            series(&records, "prototype_coverage"),
            series(&records, "bottleneck_std_ratio"),
            series(&records, "agreement_top1"),
            series(&records, "agreement_top5"),
        ],
        Some((0.0, 1.0)),
    )?;
    images.push(health);
    let summary: Option<Value> = std::fs::read_to_string(run_dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let knn = summary.as_ref().map(|s| &s["knn"]).filter(|k| !k.is_null());
    if let Some(knn) = knn {
        let path = dir.join("knn.png");
        knn_chart(&path, knn)?;
        images.push(path);
    }

    // k-NN points taken during training (`run.eval_every_epochs`), if any.
    if let Ok(points) = read_metrics(&run_dir.join(crate::pretrain::KNN_LOG)) {
        let path = dir.join("knn_training.png");
        line_chart(
            &path,
            "k-NN top-1 / top-5 of the teacher during training (%, k = 20)",
            &[series(&points, "top1"), series(&points, "top5")],
            None,
        )?;
        images.push(path);
    }

    let first = &records[0];
    let last = &records[records.len() - 1];
    let collapsed = records.iter().filter(|r| r["collapse"] == true).count();
    let mut md = String::new();
    md.push_str(&format!("# carp run report: {}\n\n", run_dir.display()));
    md.push_str(&format!(
        "- logged steps: {} (steps {} to {})\n",
        records.len(),
        first["step"],
        last["step"]
    ));
    md.push_str("\n| signal | first | last |\n|---|---|---|\n");
    for key in [
        "loss",
        "consistency",
        "entropy",
        "entropy_ratio",
        "prototypes_used",
        "prototype_coverage",
        "bottleneck_std_ratio",
        "agreement_top1",
        "agreement_top5",
        "lr",
        "momentum",
        "img_per_s",
    ] {
        let f = |r: &Value| r[key].as_f64().map_or("-".into(), |v| format!("{v:.4}"));
        md.push_str(&format!("| {key} | {} | {} |\n", f(first), f(last)));
    }
    md.push_str(&format!(
        "\n- logged steps flagged by the collapse detector: {collapsed}\n- steps skipped (non-finite): {}\n",
        last_f64(&records, "skipped_steps").unwrap_or(0.0)
    ));
    if let Some(knn) = knn {
        md.push_str(&format!(
            "- k-NN top-1 (k = {}): trained {:.2} % vs random init {:.2} %\n",
            knn["k"],
            knn["trained_top1"].as_f64().unwrap_or(f64::NAN),
            knn["init_top1"].as_f64().unwrap_or(f64::NAN)
        ));
    }
    md.push('\n');
    for img in &images {
        let name = img.file_name().unwrap_or_default().to_string_lossy();
        md.push_str(&format!("![{name}]({name})\n"));
    }
    let markdown = dir.join("report.md");
    std::fs::write(&markdown, md).map_err(|source| ReportError::Io {
        path: markdown.clone(),
        source,
    })?;
    Ok(Report { images, markdown })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_from_a_metrics_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for step in 0..20 {
            let s = step as f64;
            text.push_str(&format!(
                "{{\"step\":{step},\"epoch\":0,\"loss\":{},\"consistency\":{},\"entropy\":0.1,\"lr\":{},\"wd\":0.0,\"momentum\":0.99,\"img_per_s\":10.0,\"data_wait_s\":0.0,\"skipped_steps\":0,\"entropy_ratio\":0.05,\"prototypes_used\":9.0,\"prototypes_used_frac\":0.5,\"prototype_coverage\":0.5,\"bottleneck_std\":0.1,\"bottleneck_std_ratio\":0.8,\"agreement_top1\":{},\"agreement_top5\":0.9,\"collapse\":false}}\n",
                3.0 - s * 0.05, 2.9 - s * 0.05, 1.0 - s * 0.04, s / 40.0
            ));
        }
        // A redone step (after a resume) replaces the earlier line; a torn line is ignored.
        text.push_str("{\"step\":19,\"loss\":9.0,\"collapse\":true}\n{\"step\":2");
        std::fs::write(dir.path().join("metrics.jsonl"), text).unwrap();
        let records = read_metrics(&dir.path().join("metrics.jsonl")).unwrap();
        assert_eq!(records.len(), 20);
        assert_eq!(records[19]["loss"], 9.0);
        let r = write_report(dir.path()).unwrap();
        assert_eq!(r.images.len(), 4);
        for img in &r.images {
            let bytes = std::fs::read(img).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", img.display());
        }
        let md = std::fs::read_to_string(&r.markdown).unwrap();
        assert!(md.contains("| loss | 3.0000 | 9.0000 |"), "{md}");
        assert!(md.contains("flagged by the collapse detector: 1"), "{md}");
        assert!(matches!(
            write_report(&dir.path().join("missing")),
            Err(ReportError::Io { .. })
        ));
    }
}
