//! Revisited Oxford/Paris retrieval from images: [`run_retrieval`].

use crate::extract::retrieval_feature;
use crate::{stack, Extractor, SuiteError};
use carp_data::folder::load_rgb;
use carp_data::Revisited;
use carp_eval::{rank_by_similarity, revisited_map, RevisitedReport, RevisitedTruth};
use serde::Serialize;
use std::path::Path;

/// Settings of [`run_retrieval`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RetrievalConfig {
    /// Thumbnail size (release `--imsize`, 224; its script runs 512 with multi-scale).
    pub imsize: u32,
    /// Average over scales 1, 1/√2, 1/2 (release `--multiscale`).
    pub multiscale: bool,
    /// Crop queries to their boxes (the revisited protocol; the release's script does not).
    pub crop_queries: bool,
    /// Precision cut-offs.
    pub kappas: Vec<usize>,
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        Self {
            imsize: 224,
            multiscale: false,
            crop_queries: true,
            kappas: vec![1, 5, 10],
        }
    }
}

/// Features of the database and the queries of the data set in `dir` (`roxford5k/` or
/// `rparis6k/`), L2-normalised, ranked by cosine similarity, scored by revisitop's Medium and
/// Hard protocols.
///
/// # Errors
/// Reading the ground truth or an image; metric errors.
pub fn run_retrieval(
    ex: &Extractor<'_>,
    dir: &Path,
    cfg: &RetrievalConfig,
) -> Result<RevisitedReport, SuiteError> {
    let data = Revisited::open(dir)?;
    let db = (0..data.images.len())
        .map(|i| {
            Ok(retrieval_feature(
                ex,
                &load_rgb(&data.image_path(i))?,
                cfg.imsize,
                cfg.multiscale,
            ))
        })
        .collect::<Result<Vec<_>, SuiteError>>()?;
    let queries = (0..data.queries.len())
        .map(|q| {
            Ok(retrieval_feature(
                ex,
                &data.query_image(q, cfg.crop_queries)?,
                cfg.imsize,
                cfg.multiscale,
            ))
        })
        .collect::<Result<Vec<_>, SuiteError>>()?;
    let db = stack(db)?.l2_normalized();
    let queries = stack(queries)?.l2_normalized();
    let ranks = rank_by_similarity(&db, &queries, usize::MAX)?;
    let gnd: Vec<RevisitedTruth> = data
        .queries
        .iter()
        .map(|q| RevisitedTruth {
            easy: q.easy.clone(),
            hard: q.hard.clone(),
            junk: q.junk.clone(),
        })
        .collect();
    Ok(revisited_map(&ranks, &gnd, &cfg.kappas)?)
}

/// A Markdown table of a retrieval report.
pub fn retrieval_markdown(name: &str, r: &RevisitedReport) -> String {
    let mut md = String::from("| data set | protocol | mAP % |");
    for k in &r.medium.kappas {
        md += &format!(" mP@{k} % |");
    }
    md += "\n|---|---|---:|";
    md += &"---:|".repeat(r.medium.kappas.len());
    md += "\n";
    for (proto, m) in [("medium", &r.medium), ("hard", &r.hard)] {
        md += &format!("| {name} | {proto} | {:.2} |", m.map * 100.0);
        for p in &m.mp_at_k {
            md += &format!(" {:.2} |", p * 100.0);
        }
        md += "\n";
    }
    md
}
