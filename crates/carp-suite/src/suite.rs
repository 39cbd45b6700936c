//! `carp eval suite`: every protocol whose data is found under one root folder, one table.
//!
//! Looked for under the root (torchvision's folder names, plus image-folder copies):
//!
//! | data | found as | protocols |
//! |---|---|---|
//! | CIFAR-10 / CIFAR-100 / STL-10 | `cifar10/`, `cifar100/`, `stl10/` each with `train/` and `test/` class folders | k-NN, k-means, linear |
//! | transfer sets | [`carp_data::TransferSet::folder`] (`flowers-102/`, `dtd/`, ...) | k-NN, k-means, linear |
//! | VOC07 | `VOCdevkit/VOC2007/` | few-shot (full and k = 1, 2, 4, 8, 16) |
//! | revisited Oxford / Paris | `roxford5k/`, `rparis6k/` with their `gnd_*.pkl` | retrieval |
//! | Copydays | `copydays/original/` | copy detection |
//!
//! Each data set's train and test features are computed once and shared by its protocols.

use crate::copydays::{run_copydays, CopydaysConfig};
use crate::fewshot::run_fewshot;
use crate::retrieval::{run_retrieval, RetrievalConfig};
use crate::{Extractor, SuiteError};
use carp_data::{Dataset, ImageFolder, LabelledFiles, Split, TransferSet, REVISITED_SETS};
use carp_eval::{
    kmeans_eval, linear_probe, weighted_knn, Features, FewShotConfig, KmeansConfig, KnnConfig,
    LinearConfig,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Settings of [`run_suite`].
#[derive(Clone, Debug, Serialize)]
pub struct SuiteConfig {
    /// k-NN neighbour counts (those above the train size are dropped; all train rows when
    /// none is left).
    pub knn_k: Vec<usize>,
    /// k-means restarts.
    pub kmeans_restarts: usize,
    /// Linear-probe epochs (0: no linear probe).
    pub linear_epochs: usize,
    /// Use at most this many train / test images per classification data set (0: all),
    /// evenly spaced.
    pub max_images: usize,
    /// Few-shot settings.
    pub fewshot: FewShotConfig,
    /// Retrieval settings.
    pub retrieval: RetrievalConfig,
    /// Copy-detection settings.
    pub copydays: CopydaysConfig,
}

impl Default for SuiteConfig {
    fn default() -> Self {
        Self {
            knn_k: vec![10, 20, 100, 200],
            kmeans_restarts: 10,
            linear_epochs: 100,
            max_images: 0,
            fewshot: FewShotConfig::default(),
            retrieval: RetrievalConfig::default(),
            copydays: CopydaysConfig {
                imsize: 320,
                ..CopydaysConfig::default()
            },
        }
    }
}

/// One number of the report, in the paper's shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SuiteRow {
    /// `knn`, `kmeans`, `linear`, `fewshot`, `retrieval`, `copydays`.
    pub protocol: String,
    /// Data set name.
    pub dataset: String,
    /// `top1 (k=20)`, `NMI`, `mAP (k=4)`, `mAP medium`, ...
    pub metric: String,
    /// The value (percent for accuracies and mAP, [0, 1] for clustering scores).
    pub value: f64,
}

/// A data set looked for and not evaluated, with the reason.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Skipped {
    /// Data set name.
    pub dataset: String,
    /// Why.
    pub reason: String,
}

/// Everything [`run_suite`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteReport {
    /// The table.
    pub rows: Vec<SuiteRow>,
    /// Data sets not found or failed.
    pub skipped: Vec<Skipped>,
    /// Seconds per data set (features and protocols).
    pub seconds: Vec<(String, f64)>,
    /// Feature extractions run (one per split, shared by that data set's protocols).
    pub feature_sets: Vec<(String, usize, usize)>,
}

fn subsample(n: usize, max: usize) -> Vec<usize> {
    carp_train::eval::subsample(n, max)
}

/// The classification data sets under `root`: name and (train, test).
fn classification_sets(
    root: &Path,
    skipped: &mut Vec<Skipped>,
) -> Vec<(String, LabelledFiles, LabelledFiles)> {
    let mut out = Vec::new();
    for name in ["cifar10", "cifar100", "stl10"] {
        let dir = root.join(name);
        if !dir.is_dir() {
            skipped.push(Skipped {
                dataset: name.into(),
                reason: format!("{} not found", dir.display()),
            });
            continue;
        }
        let open = |s: &str| -> Result<LabelledFiles, SuiteError> {
            let f = ImageFolder::open(&dir.join(s))?;
            let paths = (0..f.len()).map(|i| f.path(i).to_path_buf()).collect();
            let labels = (0..f.len()).map(|i| f.label(i).unwrap_or(0)).collect();
            Ok(LabelledFiles::new(
                format!("{name} {s}"),
                paths,
                labels,
                f.classes().to_vec(),
            ))
        };
        match (open("train"), open("test")) {
            (Ok(a), Ok(b)) => out.push((name.to_string(), a, b)),
            (Err(e), _) | (_, Err(e)) => skipped.push(Skipped {
                dataset: name.into(),
                reason: format!("{e} (expected {name}/train and {name}/test class folders)"),
            }),
        }
    }
    for set in TransferSet::ALL {
        if !root.join(set.folder()).is_dir() {
            skipped.push(Skipped {
                dataset: set.name().into(),
                reason: format!("{} not found", root.join(set.folder()).display()),
            });
            continue;
        }
        match (set.open(root, Split::Train), set.open(root, Split::Test)) {
            (Ok(a), Ok(b)) => out.push((set.name().to_string(), a, b)),
            (Err(e), _) | (_, Err(e)) => skipped.push(Skipped {
                dataset: set.name().into(),
                reason: e.to_string(),
            }),
        }
    }
    out
}

fn labels(l: &[Option<usize>]) -> Vec<usize> {
    l.iter().map(|v| v.unwrap_or(0)).collect()
}

fn classify(
    name: &str,
    train: (&Features, &[usize]),
    test: (&Features, &[usize]),
    classes: usize,
    cfg: &SuiteConfig,
    rows: &mut Vec<SuiteRow>,
) -> Result<(), SuiteError> {
    let row = |protocol: &str, metric: String, value: f64| SuiteRow {
        protocol: protocol.into(),
        dataset: name.into(),
        metric,
        value,
    };
    let mut ks: Vec<usize> = cfg
        .knn_k
        .iter()
        .copied()
        .filter(|&k| k <= train.0.rows)
        .collect();
    if ks.is_empty() && train.0.rows > 0 {
        // A train set smaller than every k: all of it votes.
        ks.push(train.0.rows);
    }
    if !ks.is_empty() {
        let knn = weighted_knn(
            train.0,
            train.1,
            test.0,
            test.1,
            classes,
            &KnnConfig {
                ks,
                ..KnnConfig::default()
            },
        )?;
        for r in knn {
            rows.push(row("knn", format!("top1 (k={})", r.k), r.top1));
        }
    }
    let km = kmeans_eval(
        train.0,
        train.1,
        test.0,
        test.1,
        classes,
        &KmeansConfig {
            restarts: cfg.kmeans_restarts.max(1),
            ..KmeansConfig::default()
        },
    )?;
    rows.push(row("kmeans", "NMI".into(), km.test.nmi));
    rows.push(row("kmeans", "ARI".into(), km.test.ari));
    if cfg.linear_epochs > 0 {
        let lin = linear_probe(
            train.0,
            train.1,
            test.0,
            test.1,
            classes,
            &LinearConfig {
                epochs: cfg.linear_epochs,
                ..LinearConfig::default()
            },
        )?;
        let last = lin.epochs.last().map_or(f64::NAN, |e| e.top1);
        rows.push(row(
            "linear",
            format!("top1 ({} epochs)", cfg.linear_epochs),
            last,
        ));
    }
    Ok(())
}

/// Runs every protocol whose data is under `root`; see the module docs. A data set that
/// fails (a bad split file, an unreadable image) is reported as skipped with its error and the
/// suite goes on.
pub fn run_suite(ex: &Extractor<'_>, root: &Path, cfg: &SuiteConfig) -> SuiteReport {
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let mut seconds = Vec::new();
    let mut feature_sets = Vec::new();
    for (name, train, test) in classification_sets(root, &mut skipped) {
        let start = Instant::now();
        tracing::info!(dataset = %name, train = train.len(), test = test.len(), "suite: features");
        let result = (|| -> Result<(), SuiteError> {
            let (ftr, ltr) = ex.features(&train, &subsample(train.len(), cfg.max_images))?;
            let (fte, lte) = ex.features(&test, &subsample(test.len(), cfg.max_images))?;
            feature_sets.push((format!("{name} train"), ftr.rows, ftr.dim));
            feature_sets.push((format!("{name} test"), fte.rows, fte.dim));
            let classes = train.num_classes().max(test.num_classes());
            classify(
                &name,
                (&ftr, &labels(&ltr)),
                (&fte, &labels(&lte)),
                classes,
                cfg,
                &mut rows,
            )
        })();
        if let Err(e) = result {
            skipped.push(Skipped {
                dataset: name.clone(),
                reason: e.to_string(),
            });
        }
        seconds.push((name, start.elapsed().as_secs_f64()));
    }
    let voc = root.join("VOCdevkit/VOC2007");
    if voc.is_dir() {
        let start = Instant::now();
        for (shots, label) in [(vec![], "full"), (cfg.fewshot.shots.clone(), "low-shot")] {
            if label == "low-shot" && shots.is_empty() {
                continue;
            }
            let fc = FewShotConfig {
                shots,
                ..cfg.fewshot.clone()
            };
            match run_fewshot(ex, root, &fc) {
                Ok(r) => {
                    for x in r {
                        let k = x.shots.map_or("full".to_string(), |k| format!("k={k}"));
                        rows.push(SuiteRow {
                            protocol: "fewshot".into(),
                            dataset: "voc07".into(),
                            metric: format!("mAP ({k}, C={})", x.cost),
                            value: x.mean_map,
                        });
                    }
                }
                Err(e) => skipped.push(Skipped {
                    dataset: "voc07".into(),
                    reason: e.to_string(),
                }),
            }
        }
        seconds.push(("voc07".into(), start.elapsed().as_secs_f64()));
    } else {
        skipped.push(Skipped {
            dataset: "voc07".into(),
            reason: format!("{} not found", voc.display()),
        });
    }
    for name in REVISITED_SETS {
        let dir: PathBuf = root.join(name);
        if !dir.is_dir() {
            skipped.push(Skipped {
                dataset: name.into(),
                reason: format!("{} not found", dir.display()),
            });
            continue;
        }
        let start = Instant::now();
        match run_retrieval(ex, &dir, &cfg.retrieval) {
            Ok(r) => {
                for (proto, m) in [("medium", &r.medium), ("hard", &r.hard)] {
                    rows.push(SuiteRow {
                        protocol: "retrieval".into(),
                        dataset: name.into(),
                        metric: format!("mAP {proto}"),
                        value: m.map * 100.0,
                    });
                    for (k, p) in m.kappas.iter().zip(&m.mp_at_k) {
                        rows.push(SuiteRow {
                            protocol: "retrieval".into(),
                            dataset: name.into(),
                            metric: format!("mP@{k} {proto}"),
                            value: p * 100.0,
                        });
                    }
                }
            }
            Err(e) => skipped.push(Skipped {
                dataset: name.into(),
                reason: e.to_string(),
            }),
        }
        seconds.push((name.into(), start.elapsed().as_secs_f64()));
    }
    let cd = root.join("copydays");
    if cd.join("original").is_dir() {
        let start = Instant::now();
        let mut c = cfg.copydays.clone();
        for (field, folder) in [
            (&mut c.distractors, "copydays-distractors"),
            (&mut c.whitening, "copydays-whitening"),
        ] {
            if field.is_none() && root.join(folder).is_dir() {
                *field = Some(root.join(folder));
            }
        }
        match run_copydays(ex, &cd, &c) {
            Ok(r) => {
                for b in r.blocks {
                    rows.push(SuiteRow {
                        protocol: "copydays".into(),
                        dataset: "copydays".into(),
                        metric: format!("mAP {}", b.name),
                        value: b.map * 100.0,
                    });
                }
            }
            Err(e) => skipped.push(Skipped {
                dataset: "copydays".into(),
                reason: e.to_string(),
            }),
        }
        seconds.push(("copydays".into(), start.elapsed().as_secs_f64()));
    } else {
        skipped.push(Skipped {
            dataset: "copydays".into(),
            reason: format!("{} not found", cd.join("original").display()),
        });
    }
    SuiteReport {
        rows,
        skipped,
        seconds,
        feature_sets,
    }
}

/// The report as Markdown: the table, then what was skipped and why.
pub fn suite_markdown(r: &SuiteReport) -> String {
    let mut md = String::from("| protocol | data set | metric | value |\n|---|---|---|---:|\n");
    for row in &r.rows {
        md += &format!(
            "| {} | {} | {} | {:.2} |\n",
            row.protocol, row.dataset, row.metric, row.value
        );
    }
    if !r.skipped.is_empty() {
        md += "\nSkipped:\n\n";
        for s in &r.skipped {
            md += &format!("- {}: {}\n", s.dataset, s.reason);
        }
    }
    md += "\nTime per data set:\n\n";
    for (name, s) in &r.seconds {
        md += &format!("- {name}: {s:.1} s\n");
    }
    md
}
