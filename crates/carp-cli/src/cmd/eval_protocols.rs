//! `carp eval fewshot|retrieval|copydays|suite`: the protocols that read their own data
//! layouts (issue 14). Each loads the backbone with the flags every evaluation shares, calls
//! one `carp_suite` function, prints a table and writes `<out>/eval/<name>.{md,json}`.

use crate::cmd::embed::{default_dir, BackboneArgs, LoadedBackbone};
use anyhow::Context;
use carp_eval::{FewShotConfig, SvcConfig};
use carp_suite::copydays::{run_copydays, CopydaysConfig};
use carp_suite::fewshot::{fewshot_markdown, run_fewshot};
use carp_suite::retrieval::{retrieval_markdown, run_retrieval, RetrievalConfig};
use carp_suite::suite::{run_suite, suite_markdown, SuiteConfig};
use carp_suite::Extractor;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Backbone, transform and output flags shared by these commands.
#[derive(clap::Args, Debug, Clone)]
pub struct Shared {
    #[command(flatten)]
    backbone: BackboneArgs,
    /// Images per forward pass.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Directory whose `eval/` receives the results (default: the checkpoint's directory,
    /// else the current one).
    #[arg(long)]
    out: Option<PathBuf>,
}

impl Shared {
    fn load(&self) -> anyhow::Result<LoadedBackbone> {
        self.backbone.init_threads()?;
        let loaded = self.backbone.load()?;
        eprintln!("backbone: {}", loaded.origin);
        Ok(loaded)
    }

    /// The backbone with its evaluation transform (spec §6, the one policy of
    /// `EvalTransform::for_backbone`).
    fn extractor<'a>(&self, l: &'a LoadedBackbone) -> Extractor<'a> {
        Extractor {
            backbone: &l.backbone,
            device: &l.device,
            transform: l.transform,
            batch: self.batch,
        }
    }

    fn write(
        &self,
        name: &str,
        origin: &str,
        md: &str,
        results: serde_json::Value,
    ) -> anyhow::Result<()> {
        let out = self.out.clone().unwrap_or_else(|| {
            let d = default_dir(&self.backbone, "");
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d
            }
        });
        let dir = out.join("eval");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let md = format!("# carp eval {name}\n\n- backbone: {origin}\n\n{md}");
        print!("{md}");
        let md_path = dir.join(format!("{name}.md"));
        std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
        let json_path = dir.join(format!("{name}.json"));
        let doc = json!({"protocol": name, "backbone": origin, "results": results});
        std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", json_path.display()))?;
        eprintln!("wrote {} and {}", md_path.display(), json_path.display());
        Ok(())
    }
}

/// Flags of `carp eval fewshot`.
#[derive(clap::Args, Debug)]
pub struct FewshotArgs {
    #[command(flatten)]
    shared: Shared,
    /// Folder holding `VOCdevkit/VOC2007` (ImageSets/Main/<class>_{trainval,test}.txt and
    /// JPEGImages/).
    #[arg(long)]
    data: PathBuf,
    /// SVM costs C, comma-separated; each is reported (the release's --cost, default 0.5).
    #[arg(long, value_delimiter = ',', default_value = "0.5")]
    cost: Vec<f64>,
    /// Low-shot: train on k images per class, for each k given, averaging --runs draws.
    #[arg(long)]
    low_shot: bool,
    /// The k of --low-shot.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    shots: Vec<usize>,
    /// Seeded draws per k (the release: 5).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Flags of `carp eval retrieval`.
#[derive(clap::Args, Debug)]
pub struct RetrievalArgs {
    #[command(flatten)]
    shared: Shared,
    /// Folder holding `roxford5k/` and/or `rparis6k/` (each with jpg/ and gnd_<name>.pkl).
    #[arg(long)]
    data: PathBuf,
    /// Data sets: roxford5k, rparis6k (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "roxford5k,rparis6k")]
    dataset: Vec<String>,
    /// Images are shrunk to fit this square (PIL thumbnail); the release's script runs 512
    /// with --multiscale.
    #[arg(long, default_value_t = 224)]
    imsize: u32,
    /// Average features over scales 1, 1/sqrt 2, 1/2, then normalise (DINO's multi_scale).
    #[arg(long)]
    multiscale: bool,
    /// Feed whole query images, as the release's script does, instead of cropping them to
    /// their boxes as the revisited protocol prescribes.
    #[arg(long)]
    no_query_crop: bool,
}

/// Flags of `carp eval copydays`.
#[derive(clap::Args, Debug)]
pub struct CopydaysArgs {
    #[command(flatten)]
    shared: Shared,
    /// The Copydays folder: original/, strong/, and optionally jpegqual/N/, crops/N/.
    #[arg(long)]
    data: PathBuf,
    /// Folder of images the whitening is learned on (the paper: 20k YFCC100M images); without
    /// it, features are not whitened.
    #[arg(long)]
    whitening_data: Option<PathBuf>,
    /// Folder of distractor images added to the database (the paper: 10k YFCC100M images).
    #[arg(long)]
    distractors: Option<PathBuf>,
    /// Images are resized to this square (aspect not kept), as the release.
    #[arg(long, default_value_t = 320)]
    imsize: u32,
}

/// Flags of `carp eval suite`.
#[derive(clap::Args, Debug)]
pub struct SuiteArgs {
    #[command(flatten)]
    shared: Shared,
    /// Folder to search for data sets (cifar10/, cifar100/, stl10/ with train/ and test/;
    /// flowers-102/, oxford-iiit-pet/, dtd/, food-101/, fgvc-aircraft-2013b/, stanford_cars/,
    /// gtsrb/, country211/; VOCdevkit/; roxford5k/, rparis6k/; copydays/ with optional
    /// copydays-whitening/ and copydays-distractors/ beside it).
    #[arg(long)]
    data_root: PathBuf,
    /// Linear-probe epochs per classification data set (0: no linear probe).
    #[arg(long, default_value_t = 100)]
    linear_epochs: usize,
    /// k-means restarts.
    #[arg(long, default_value_t = 10)]
    kmeans_restarts: usize,
    /// At most this many train and test images per classification data set, evenly spaced
    /// (0: all).
    #[arg(long, default_value_t = 0)]
    max_images: usize,
    /// Few-shot draws per k.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Retrieval image size.
    #[arg(long, default_value_t = 224)]
    imsize: u32,
    /// Copy-detection image side.
    #[arg(long, default_value_t = 320)]
    copydays_imsize: u32,
}

fn check_data(path: &Path, flag: &str) -> anyhow::Result<()> {
    anyhow::ensure!(path.is_dir(), "{flag} {}: not a directory", path.display());
    Ok(())
}

/// Runs `carp eval fewshot`.
pub fn fewshot(a: FewshotArgs) -> anyhow::Result<ExitCode> {
    check_data(&a.data, "--data")?;
    let l = a.shared.load()?;
    let cfg = FewShotConfig {
        costs: a.cost.clone(),
        shots: if a.low_shot {
            a.shots.clone()
        } else {
            Vec::new()
        },
        runs: a.runs,
        seed: a.seed,
        svm: SvcConfig::default(),
    };
    let rows = run_fewshot(&a.shared.extractor(&l), &a.data, &cfg)?;
    let md = format!("Few-shot VOC07: linear SVMs (squared hinge, positive weight 2), AP per class as the release\n\n{}", fewshot_markdown(&rows));
    a.shared.write(
        "fewshot",
        &l.origin,
        &md,
        json!({"config": cfg, "rows": rows}),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `carp eval retrieval`.
pub fn retrieval(a: RetrievalArgs) -> anyhow::Result<ExitCode> {
    check_data(&a.data, "--data")?;
    let l = a.shared.load()?;
    let cfg = RetrievalConfig {
        imsize: a.imsize,
        multiscale: a.multiscale,
        crop_queries: !a.no_query_crop,
        kappas: vec![1, 5, 10],
    };
    let mut md = format!(
        "Revisited retrieval: imsize {}, multi-scale {}, queries cropped {}\n\n",
        cfg.imsize, cfg.multiscale, cfg.crop_queries
    );
    let mut results = serde_json::Map::new();
    for name in &a.dataset {
        anyhow::ensure!(
            carp_data::REVISITED_SETS.contains(&name.as_str()),
            "--dataset: unknown `{name}` (roxford5k, rparis6k)"
        );
        let r = run_retrieval(&a.shared.extractor(&l), &a.data.join(name), &cfg)
            .with_context(|| format!("retrieval on {name}"))?;
        md += &retrieval_markdown(name, &r);
        results.insert(name.clone(), json!(r));
    }
    a.shared.write(
        "retrieval",
        &l.origin,
        &md,
        json!({"config": cfg, "datasets": results}),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `carp eval copydays`.
pub fn copydays(a: CopydaysArgs) -> anyhow::Result<ExitCode> {
    check_data(&a.data, "--data")?;
    let l = a.shared.load()?;
    let cfg = CopydaysConfig {
        imsize: a.imsize,
        distractors: a.distractors.clone(),
        whitening: a.whitening_data.clone(),
    };
    let r = run_copydays(&a.shared.extractor(&l), &a.data, &cfg)?;
    let mut md = format!(
        "Copydays copy detection: {}x{} images, database {} images, whitening {}\n\n| block | queries | mAP % |\n|---|---:|---:|\n",
        cfg.imsize,
        cfg.imsize,
        r.database,
        if r.whitening.is_some() { "learned" } else { "none" }
    );
    for b in &r.blocks {
        md += &format!("| {} | {} | {:.2} |\n", b.name, b.queries, b.map * 100.0);
    }
    a.shared.write(
        "copydays",
        &l.origin,
        &md,
        json!({"config": cfg, "report": r}),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `carp eval suite`.
pub fn suite(a: SuiteArgs) -> anyhow::Result<ExitCode> {
    check_data(&a.data_root, "--data-root")?;
    let l = a.shared.load()?;
    let mut cfg = SuiteConfig {
        linear_epochs: a.linear_epochs,
        kmeans_restarts: a.kmeans_restarts,
        max_images: a.max_images,
        ..SuiteConfig::default()
    };
    cfg.fewshot.runs = a.runs;
    cfg.retrieval.imsize = a.imsize;
    cfg.copydays.imsize = a.copydays_imsize;
    let ex = a.shared.extractor(&l);
    let transform = format!("{} (classification, few-shot)", ex.transform);
    let start = std::time::Instant::now();
    let r = run_suite(&ex, &a.data_root, &cfg);
    let secs = start.elapsed().as_secs_f64();
    let md = format!(
        "- data root: {}\n- transform: {transform}\n- wall time: {secs:.1} s\n\n{}",
        a.data_root.display(),
        suite_markdown(&r)
    );
    a.shared.write(
        "suite",
        &l.origin,
        &md,
        json!({"data_root": a.data_root, "transform": transform, "config": cfg, "wall_seconds": secs, "report": r}),
    )?;
    Ok(ExitCode::SUCCESS)
}
