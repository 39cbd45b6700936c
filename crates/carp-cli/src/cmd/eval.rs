//! `carp eval knn|linear|kmeans` (and `fewshot|retrieval|copydays|suite`, in
//! `eval_protocols.rs`): the spec §6 protocols on a backbone's features (computed from
//! images, or read from `carp embed` output), printed as a table and written as JSON and
//! Markdown into `<run or --out>/eval/`.

use crate::cmd::embed::{default_dir, embed_split, BackboneArgs, TransformArgs};
use anyhow::Context;
use carp_eval::{
    kmeans_eval, linear_probe, linear_probe_with, weighted_knn, KmeansConfig, KmeansInit,
    KnnConfig, LinearConfig, LinearReport, ProbeOptimizer,
};
use carp_train::embed::{augmented_features, open_eval_data, read_embedding, Embedding};
use carp_train::eval::subsample;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the features come from and where results go.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    #[command(flatten)]
    backbone: BackboneArgs,
    #[command(flatten)]
    transform: TransformArgs,
    /// Train (memory bank / fitting) images: synthetic[:train|:test], imagefolder:PATH or PATH.
    #[arg(long)]
    train: Option<String>,
    /// Test images.
    #[arg(long)]
    test: Option<String>,
    /// Reuse `carp embed` output: a directory with train.safetensors and test.safetensors.
    #[arg(long, conflicts_with_all = ["train", "test"])]
    features: Option<PathBuf>,
    /// Directory whose `eval/` receives the results (default: the checkpoint's run directory,
    /// else the --features directory, else the current directory).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Flags of `carp eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    protocol: Protocol,
}

#[derive(clap::Subcommand, Debug)]
enum Protocol {
    /// Weighted k-NN (cosine similarity, exp(sim / T) votes), top-1/top-5 per k.
    Knn {
        #[command(flatten)]
        common: Common,
        /// Neighbour counts (k larger than the train set is an error).
        #[arg(long, value_delimiter = ',', default_values_t = carp_eval::knn::SPEC_KS)]
        k: Vec<usize>,
        /// Vote temperature T.
        #[arg(long, default_value_t = 0.07)]
        temperature: f32,
        /// Test rows per similarity block (memory: rows x train size floats).
        #[arg(long, default_value_t = 1024)]
        chunk_rows: usize,
    },
    /// Linear probe on frozen features, top-1/top-5 per epoch and the best.
    Linear {
        #[command(flatten)]
        common: Common,
        /// Epochs.
        #[arg(long, default_value_t = 100)]
        epochs: usize,
        /// Optimiser: lars or sgd.
        #[arg(long, default_value = "lars")]
        optimizer: String,
        /// Rows per step.
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        /// Peak learning rate (cosine to 0 over the epochs); default 1.0 for LARS, 0.1 for SGD.
        #[arg(long)]
        lr: Option<f64>,
        /// Weight decay.
        #[arg(long, default_value_t = 0.0)]
        wd: f64,
        /// Seed of the initialisation and shuffles.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Faithful path: recompute the train features every epoch from augmented images
        /// (RandomResizedCrop to --crop, 32 for small-stem models without it, and a flip)
        /// instead of once with the evaluation transform. Needs --train/--test images.
        #[arg(long)]
        augment: bool,
    },
    /// Spherical k-means on standardised features; NMI, AMI, ARI, FMI, homogeneity,
    /// completeness, V-measure of the test assignment.
    Kmeans {
        #[command(flatten)]
        common: Common,
        /// Clusters (default: the number of classes).
        #[arg(long)]
        k: Option<usize>,
        /// Lloyd iterations per restart.
        #[arg(long, default_value_t = 100)]
        iterations: usize,
        /// Restarts; the lowest objective wins.
        #[arg(long, default_value_t = 10)]
        restarts: usize,
        /// Initialisation: kmeans++ or random.
        #[arg(long, default_value = "kmeans++")]
        init: String,
        /// Seed of the initialisations.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Skip the train-statistics standardisation.
        #[arg(long)]
        no_standardize: bool,
    },
    /// Few-shot Pascal VOC07: one-vs-rest linear SVMs on L2-normalised features, mAP over the
    /// 20 classes (full train set, or --low-shot k = 1, 2, 4, 8, 16 with 5 seeded draws).
    Fewshot(crate::cmd::eval_protocols::FewshotArgs),
    /// Image retrieval on revisited Oxford / Paris: mAP and mP@1/5/10, Medium and Hard.
    Retrieval(crate::cmd::eval_protocols::RetrievalArgs),
    /// Copy detection on Copydays (strong and other blocks): mAP of the top-20 retrieval,
    /// optionally with whitening and distractors.
    Copydays(crate::cmd::eval_protocols::CopydaysArgs),
    /// Every protocol whose data is found under --data-root; writes eval/suite.{json,md}.
    Suite(crate::cmd::eval_protocols::SuiteArgs),
}

/// Train and test features with labels and a description of their origin.
struct Splits {
    train: Embedding,
    test: Embedding,
    origin: String,
    transform: String,
    out: PathBuf,
    tag: &'static str,
    /// Train rows when `train` is not materialised (the augmented linear probe).
    train_rows: Option<usize>,
}

fn load_splits(c: &Common) -> anyhow::Result<Splits> {
    c.backbone.init_threads()?;
    let tag = if c.backbone.random_init {
        "-random-init"
    } else {
        ""
    };
    if let Some(dir) = &c.features {
        let train = read_embedding(dir, "train")?;
        let test = read_embedding(dir, "test")?;
        let out = c.out.clone().unwrap_or_else(|| dir.clone());
        return Ok(Splits {
            train,
            test,
            origin: format!("features {}", dir.display()),
            transform: "as embedded".into(),
            out,
            tag: "",
            train_rows: None,
        });
    }
    let (train_spec, test_spec) = match (&c.train, &c.test) {
        (Some(a), Some(b)) => (a, b),
        _ => anyhow::bail!("give --train DATA and --test DATA, or --features DIR"),
    };
    let loaded = c.backbone.load()?;
    eprintln!("backbone: {}", loaded.origin);
    let train_opts = c.transform.options(&loaded, c.transform.max_train);
    let test_opts = c.transform.options(&loaded, c.transform.max_test);
    let train = embed_split(&loaded, train_spec, "--train", &train_opts)?;
    let test = embed_split(&loaded, test_spec, "--test", &test_opts)?;
    let out = c.out.clone().unwrap_or_else(|| {
        let d = default_dir(&c.backbone, "");
        if d.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            d
        }
    });
    Ok(Splits {
        train,
        test,
        origin: loaded.origin,
        transform: train_opts.transform.to_string(),
        out,
        tag,
        train_rows: None,
    })
}

/// The faithful linear probe: test features once (evaluation transform), train features
/// recomputed from augmented images every epoch.
fn augmented_linear(c: &Common, cfg: &LinearConfig) -> anyhow::Result<(Splits, LinearReport)> {
    anyhow::ensure!(
        c.features.is_none(),
        "--augment recomputes features from images: give --train and --test, not --features"
    );
    let (train_spec, test_spec) = match (&c.train, &c.test) {
        (Some(a), Some(b)) => (a, b),
        _ => anyhow::bail!("--augment needs --train DATA and --test DATA"),
    };
    c.backbone.init_threads()?;
    let loaded = c.backbone.load()?;
    eprintln!("backbone: {}", loaded.origin);
    let test_opts = c.transform.options(&loaded, c.transform.max_test);
    let test = embed_split(&loaded, test_spec, "--test", &test_opts)?;
    let yte = test.class_labels("test features")?;
    let data = open_eval_data(train_spec, "--train")?;
    let indices = subsample(data.dataset.len(), c.transform.max_train);
    let crop = test_opts.transform.probe_crop();
    let classes = data.classes.len().max(test.num_classes());
    let report = linear_probe_with(
        loaded.config.output_dim(),
        classes,
        cfg,
        &test.features,
        &yte,
        |epoch| {
            let start = std::time::Instant::now();
            let r = augmented_features(
                &loaded.backbone,
                &data,
                &indices,
                crop,
                cfg.seed,
                epoch,
                c.transform.batch,
                &loaded.device,
            );
            eprintln!(
                "epoch {}: {} augmented train features in {:.1} s",
                epoch + 1,
                indices.len(),
                start.elapsed().as_secs_f64()
            );
            r
        },
    )?;
    let out = c.out.clone().unwrap_or_else(|| {
        let d = default_dir(&c.backbone, "");
        if d.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            d
        }
    });
    let splits = Splits {
        train: Embedding {
            features: carp_eval::Features::new(Vec::new(), 0, 0)?,
            labels: Vec::new(),
            paths: Vec::new(),
            classes: Vec::new(),
        },
        test,
        origin: loaded.origin,
        transform: format!(
            "train: RandomResizedCrop {crop} + flip, recomputed each epoch; test: {}",
            test_opts.transform
        ),
        out,
        tag: if c.backbone.random_init {
            "-random-init"
        } else {
            ""
        },
        train_rows: Some(indices.len()),
    };
    Ok((splits, report))
}

/// Prints `markdown`, writes it and `report` as `<out>/eval/<name>.{md,json}`.
fn report(
    s: &Splits,
    name: &str,
    markdown: &str,
    results: serde_json::Value,
) -> anyhow::Result<()> {
    let dir = s.out.join("eval");
    let train_rows = s.train_rows.unwrap_or(s.train.features.rows);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let header = format!(
        "# carp eval {name}\n\n- backbone: {}\n- transform: {}\n- train: {} x {}, test: {} x {}\n\n",
        s.origin,
        s.transform,
        train_rows,
        s.test.features.dim,
        s.test.features.rows,
        s.test.features.dim
    );
    let md = format!("{header}{markdown}");
    print!("{md}");
    let stem = format!("{name}{}", s.tag);
    let md_path = dir.join(format!("{stem}.md"));
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    let doc = json!({
        "protocol": name,
        "backbone": s.origin,
        "transform": s.transform,
        "train_rows": train_rows,
        "test_rows": s.test.features.rows,
        "dim": s.test.features.dim,
        "results": results,
    });
    let json_path = dir.join(format!("{stem}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    eprintln!("wrote {} and {}", md_path.display(), json_path.display());
    Ok(())
}

/// Labels and class count of both splits.
fn labels(s: &Splits) -> anyhow::Result<(Vec<usize>, Vec<usize>, usize)> {
    let train = s.train.class_labels("train features")?;
    let test = s.test.class_labels("test features")?;
    let classes = s.train.num_classes().max(s.test.num_classes());
    Ok((train, test, classes))
}

/// Runs `carp eval`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    use crate::cmd::eval_protocols as p;
    match args.protocol {
        Protocol::Fewshot(a) => return p::fewshot(a),
        Protocol::Retrieval(a) => return p::retrieval(a),
        Protocol::Copydays(a) => return p::copydays(a),
        Protocol::Suite(a) => return p::suite(a),
        Protocol::Knn {
            common,
            k,
            temperature,
            chunk_rows,
        } => {
            let s = load_splits(&common)?;
            let (ytr, yte, classes) = labels(&s)?;
            let cfg = KnnConfig {
                ks: k,
                temperature,
                chunk_rows,
            };
            let res = weighted_knn(
                &s.train.features,
                &ytr,
                &s.test.features,
                &yte,
                classes,
                &cfg,
            )?;
            let mut md = format!(
                "Weighted k-NN, T = {temperature}\n\n| k | top-1 % | top-5 % |\n|---:|---:|---:|\n"
            );
            for r in &res {
                md += &format!("| {} | {:.2} | {:.2} |\n", r.k, r.top1, r.top5);
            }
            report(&s, "knn", &md, json!({"config": cfg, "knn": res}))?;
        }
        Protocol::Linear {
            common,
            epochs,
            optimizer,
            batch_size,
            lr,
            wd,
            seed,
            augment,
        } => {
            let optimizer = match optimizer.as_str() {
                "lars" => ProbeOptimizer::Lars,
                "sgd" => ProbeOptimizer::Sgd,
                other => anyhow::bail!("--optimizer: unknown `{other}` (lars, sgd)"),
            };
            let lr = lr.unwrap_or(match optimizer {
                ProbeOptimizer::Lars => 1.0,
                ProbeOptimizer::Sgd => 0.1,
            });
            let cfg = LinearConfig {
                epochs,
                optimizer,
                batch_size,
                lr,
                weight_decay: wd,
                seed,
                ..LinearConfig::default()
            };
            let (s, r) = if augment {
                augmented_linear(&common, &cfg)?
            } else {
                let s = load_splits(&common)?;
                let (ytr, yte, classes) = labels(&s)?;
                let r = linear_probe(
                    &s.train.features,
                    &ytr,
                    &s.test.features,
                    &yte,
                    classes,
                    &cfg,
                )?;
                (s, r)
            };
            let mut md = format!(
                "Linear probe: {epochs} epochs, {optimizer:?}, batch {batch_size}, lr {lr} (cosine), wd {wd}\n\n\
                 | epoch | lr | train loss | top-1 % | top-5 % |\n|---:|---:|---:|---:|---:|\n"
            );
            let every = (epochs / 10).max(1);
            for e in r
                .epochs
                .iter()
                .filter(|e| e.epoch % every == 0 || e.epoch + 1 == epochs)
            {
                md += &format!(
                    "| {} | {:.4} | {:.4} | {:.2} | {:.2} |\n",
                    e.epoch + 1,
                    e.lr,
                    e.train_loss,
                    e.top1,
                    e.top5
                );
            }
            let last = r.epochs.last().expect("epochs >= 1");
            md += &format!(
                "\nBest: epoch {}, top-1 {:.2} %, top-5 {:.2} %. Last: top-1 {:.2} %, top-5 {:.2} %.\n",
                r.best.epoch + 1,
                r.best.top1,
                r.best.top5,
                last.top1,
                last.top5
            );
            report(&s, "linear", &md, json!({"config": cfg, "linear": r}))?;
        }
        Protocol::Kmeans {
            common,
            k,
            iterations,
            restarts,
            init,
            seed,
            no_standardize,
        } => {
            let init = match init.as_str() {
                "kmeans++" | "k-means++" => KmeansInit::KmeansPlusPlus,
                "random" => KmeansInit::Random,
                other => anyhow::bail!("--init: unknown `{other}` (kmeans++, random)"),
            };
            let cfg = KmeansConfig {
                k,
                iterations,
                restarts,
                init,
                seed,
                standardize: !no_standardize,
                ..KmeansConfig::default()
            };
            let s = load_splits(&common)?;
            let (ytr, yte, classes) = labels(&s)?;
            let r = kmeans_eval(
                &s.train.features,
                &ytr,
                &s.test.features,
                &yte,
                classes,
                &cfg,
            )?;
            let mut md = format!(
                "Spherical k-means: k = {}, {restarts} restarts x {iterations} iterations, {init:?} init, \
                 standardised: {}; best restart {} (objective {:.2}, {} iterations)\n\n\
                 | split | NMI | AMI | ARI | FMI | homogeneity | completeness | V-measure |\n\
                 |---|---:|---:|---:|---:|---:|---:|---:|\n",
                r.k, !no_standardize, r.best_restart, r.objective, r.iterations
            );
            for (name, m) in [("test", &r.test), ("train", &r.train)] {
                md += &format!(
                    "| {name} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |\n",
                    m.nmi, m.ami, m.ari, m.fmi, m.homogeneity, m.completeness, m.v_measure
                );
            }
            report(&s, "kmeans", &md, json!({"config": cfg, "kmeans": r}))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
