//! Revisited Oxford and Paris (`roxford5k/`, `rparis6k/`): images `jpg/<name>.jpg` and the
//! ground truth `gnd_<name>.pkl`, a Python pickle of
//! `{"imlist": [...], "qimlist": [...], "gnd": [{"bbx": [x1, y1, x2, y2], "easy": [...],
//! "hard": [...], "junk": [...]}, ...]}`, read by Burn's `pytorch-reader` pickle machine,
//! which builds plain values only and never calls anything the file names. A pickle that holds
//! anything but plain values (a numpy array, any other object) is refused with its field.

use crate::folder::load_rgb;
use crate::DataError;
use image::RgbImage;
use pytorch_reader::{PickleValue, PytorchReader};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Ground truth of one query.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RevisitedQuery {
    /// Query image name (without `.jpg`).
    pub name: String,
    /// Query region `[x1, y1, x2, y2]` in pixels, if given.
    pub bbx: Option<[f64; 4]>,
    /// Easy positives (database indices).
    pub easy: Vec<usize>,
    /// Hard positives.
    pub hard: Vec<usize>,
    /// Junk.
    pub junk: Vec<usize>,
}

/// A revisited data set: database images and queries with ground truth.
#[derive(Clone, Debug)]
pub struct Revisited {
    /// `roxford5k` or `rparis6k` (the folder name).
    pub name: String,
    /// The data set folder.
    pub dir: PathBuf,
    /// Database image names.
    pub images: Vec<String>,
    /// Queries.
    pub queries: Vec<RevisitedQuery>,
}

/// The revisited data sets the release evaluates.
pub const REVISITED_SETS: [&str; 2] = ["roxford5k", "rparis6k"];

fn field<'a>(
    path: &Path,
    map: &'a HashMap<String, PickleValue>,
    key: &str,
    at: &str,
) -> Result<&'a PickleValue, DataError> {
    map.get(key).ok_or_else(|| DataError::SplitFile {
        path: path.to_path_buf(),
        reason: format!("{at}: no `{key}` entry"),
    })
}

fn list<'a>(path: &Path, v: &'a PickleValue, at: &str) -> Result<&'a [PickleValue], DataError> {
    match v {
        PickleValue::List(items) => Ok(items),
        PickleValue::Unsupported(t) => Err(DataError::SplitFile {
            path: path.to_path_buf(),
            reason: format!(
                "{at}: a `{t}` object, expected a plain list (numpy arrays are not read)"
            ),
        }),
        _ => Err(DataError::SplitFile {
            path: path.to_path_buf(),
            reason: format!("{at}: expected a list"),
        }),
    }
}

fn indices(path: &Path, v: &PickleValue, at: &str, n: usize) -> Result<Vec<usize>, DataError> {
    list(path, v, at)?
        .iter()
        .map(|x| match x {
            PickleValue::Int(i) if *i >= 0 && (*i as usize) < n => Ok(*i as usize),
            other => Err(DataError::SplitFile {
                path: path.to_path_buf(),
                reason: format!("{at}: {other:?} is not a database index below {n}"),
            }),
        })
        .collect()
}

fn strings(path: &Path, v: &PickleValue, at: &str) -> Result<Vec<String>, DataError> {
    list(path, v, at)?
        .iter()
        .map(|x| match x {
            PickleValue::String(s) => Ok(s.clone()),
            other => Err(DataError::SplitFile {
                path: path.to_path_buf(),
                reason: format!("{at}: {other:?} is not a string"),
            }),
        })
        .collect()
}

impl Revisited {
    /// Reads `dir/gnd_<name>.pkl`, `name` being `dir`'s folder name.
    ///
    /// # Errors
    /// [`DataError::SplitFile`] naming the pickle when it is missing, not a pickle, or not of
    /// the shape above (the field at fault is named).
    pub fn open(dir: &Path) -> Result<Self, DataError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = dir.join(format!("gnd_{name}.pkl"));
        if !path.is_file() {
            return Err(DataError::SplitFile {
                path,
                reason: "missing ground-truth file".into(),
            });
        }
        let root =
            PytorchReader::read_pickle_data(&path, None).map_err(|e| DataError::SplitFile {
                path: path.clone(),
                reason: format!("not a readable pickle: {e}"),
            })?;
        let PickleValue::Dict(root) = root else {
            return Err(DataError::SplitFile {
                path,
                reason: "the pickle is not a dict".into(),
            });
        };
        let images = strings(&path, field(&path, &root, "imlist", "root")?, "imlist")?;
        let qnames = strings(&path, field(&path, &root, "qimlist", "root")?, "qimlist")?;
        let gnd = list(&path, field(&path, &root, "gnd", "root")?, "gnd")?;
        if gnd.len() != qnames.len() {
            return Err(DataError::SplitFile {
                path,
                reason: format!("{} gnd entries for {} queries", gnd.len(), qnames.len()),
            });
        }
        let n = images.len();
        let mut queries = Vec::with_capacity(gnd.len());
        for (q, (g, qname)) in gnd.iter().zip(qnames).enumerate() {
            let at = format!("gnd[{q}]");
            let PickleValue::Dict(g) = g else {
                return Err(DataError::SplitFile {
                    path,
                    reason: format!("{at}: expected a dict"),
                });
            };
            let bbx = match g.get("bbx") {
                None | Some(PickleValue::None) => None,
                Some(v) => {
                    let nums: Vec<f64> = list(&path, v, &format!("{at}.bbx"))?
                        .iter()
                        .filter_map(|x| match x {
                            PickleValue::Int(i) => Some(*i as f64),
                            PickleValue::Float(f) => Some(*f),
                            _ => None,
                        })
                        .collect();
                    let b: [f64; 4] = nums.try_into().map_err(|_| DataError::SplitFile {
                        path: path.clone(),
                        reason: format!("{at}.bbx: expected 4 numbers"),
                    })?;
                    Some(b)
                }
            };
            queries.push(RevisitedQuery {
                name: qname,
                bbx,
                easy: indices(
                    &path,
                    field(&path, g, "easy", &at)?,
                    &format!("{at}.easy"),
                    n,
                )?,
                hard: indices(
                    &path,
                    field(&path, g, "hard", &at)?,
                    &format!("{at}.hard"),
                    n,
                )?,
                junk: indices(
                    &path,
                    field(&path, g, "junk", &at)?,
                    &format!("{at}.junk"),
                    n,
                )?,
            });
        }
        Ok(Self {
            name,
            dir: dir.to_path_buf(),
            images,
            queries,
        })
    }

    /// Path of database image `i`.
    pub fn image_path(&self, i: usize) -> PathBuf {
        self.dir.join("jpg").join(format!("{}.jpg", self.images[i]))
    }

    /// Path of query image `q`.
    pub fn query_path(&self, q: usize) -> PathBuf {
        self.dir
            .join("jpg")
            .join(format!("{}.jpg", self.queries[q].name))
    }

    /// Query `q`'s image, cropped to its box as the revisited protocol requires (PIL's
    /// `Image.crop`: corners rounded half to even, outside the image black) when `crop`.
    ///
    /// # Errors
    /// The image's read or decode error.
    pub fn query_image(&self, q: usize, crop: bool) -> Result<RgbImage, DataError> {
        let img = load_rgb(&self.query_path(q))?;
        match (crop, self.queries[q].bbx) {
            (true, Some(b)) => Ok(crop_box(&img, b)),
            _ => Ok(img),
        }
    }
}

/// PIL's `Image.crop(box)`: `round()` each corner (half to even), copy, black outside.
pub fn crop_box(img: &RgbImage, b: [f64; 4]) -> RgbImage {
    let r = |v: f64| v.round_ties_even() as i64;
    let (x0, y0, x1, y1) = (r(b[0]), r(b[1]), r(b[2]), r(b[3]));
    let (w, h) = ((x1 - x0).max(0) as u32, (y1 - y0).max(0) as u32);
    RgbImage::from_fn(w.max(1), h.max(1), |x, y| {
        let (sx, sy) = (x0 + i64::from(x), y0 + i64::from(y));
        if sx >= 0
            && sy >= 0
            && (sx as u32) < img.width()
            && (sy as u32) < img.height()
            && w > 0
            && h > 0
        {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

/// Writes `data`'s ground truth as `dir/gnd_<name>.pkl` in revisitop's shape (pickle protocol
/// 2: dicts, lists, strings, ints and floats only), for building miniature or subset layouts.
///
/// # Errors
/// [`DataError::Io`] when the file cannot be written.
pub fn write_gnd_pickle(data: &Revisited) -> Result<PathBuf, DataError> {
    fn text(out: &mut Vec<u8>, s: &str) {
        out.push(b'X');
        out.extend((s.len() as u32).to_le_bytes());
        out.extend(s.as_bytes());
    }
    fn ints(out: &mut Vec<u8>, v: &[usize]) {
        out.extend([b']', b'(']);
        for &i in v {
            out.push(b'J');
            out.extend((i as i32).to_le_bytes());
        }
        out.push(b'e');
    }
    let mut out = vec![0x80, 2, b'}', b'('];
    text(&mut out, "imlist");
    out.extend([b']', b'(']);
    for s in &data.images {
        text(&mut out, s);
    }
    out.push(b'e');
    text(&mut out, "qimlist");
    out.extend([b']', b'(']);
    for q in &data.queries {
        text(&mut out, &q.name);
    }
    out.push(b'e');
    text(&mut out, "gnd");
    out.extend([b']', b'(']);
    for q in &data.queries {
        out.extend([b'}', b'(']);
        if let Some(b) = q.bbx {
            text(&mut out, "bbx");
            out.extend([b']', b'(']);
            for v in b {
                out.push(b'G');
                out.extend(v.to_be_bytes());
            }
            out.push(b'e');
        }
        for (key, v) in [("easy", &q.easy), ("hard", &q.hard), ("junk", &q.junk)] {
            text(&mut out, key);
            ints(&mut out, v);
        }
        out.push(b'u');
    }
    out.push(b'e');
    out.extend([b'u', b'.']);
    let path = data.dir.join(format!("gnd_{}.pkl", data.name));
    std::fs::create_dir_all(&data.dir).map_err(|source| DataError::Io {
        path: data.dir.clone(),
        source,
    })?;
    std::fs::write(&path, out).map_err(|source| DataError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(dir: &Path, file: &str) -> Revisited {
        let d = dir.join("roxford5k");
        std::fs::create_dir_all(&d).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(file);
        std::fs::copy(src, d.join("gnd_roxford5k.pkl")).unwrap();
        Revisited::open(&d).unwrap()
    }

    /// Pickles written by Python (tools/make_gnd_fixture.py, protocols 4 and 2) read back as
    /// written, and carp's writer round-trips.
    #[test]
    fn reads_python_pickles_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["gnd_tiny.pkl", "gnd_tiny_p2.pkl"] {
            let r = fixture(dir.path(), file);
            assert_eq!(
                r.images,
                ["all_souls_000000", "radcliffe_000001", "bodleian_000002"]
            );
            assert_eq!(r.queries.len(), 2);
            let q = &r.queries[0];
            assert_eq!(
                (q.name.as_str(), q.bbx),
                ("all_souls_000013", Some([136.5, 34.1, 648.5, 955.7]))
            );
            assert_eq!(
                (q.easy.clone(), q.hard.clone(), q.junk.clone()),
                (vec![0], vec![2], vec![])
            );
            assert_eq!(r.queries[1].bbx, Some([0.0, 1.0, 2.0, 3.0]));
            assert!(r
                .query_path(1)
                .ends_with("roxford5k/jpg/radcliffe_000390.jpg"));
            std::fs::remove_file(dir.path().join("roxford5k/gnd_roxford5k.pkl")).unwrap();
            write_gnd_pickle(&r).unwrap();
            let back = Revisited::open(&r.dir).unwrap();
            assert_eq!((back.images, back.queries), (r.images, r.queries));
        }
    }

    #[test]
    fn bad_ground_truth_names_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("rparis6k");
        let e = Revisited::open(&d).unwrap_err().to_string();
        assert!(
            e.contains("gnd_rparis6k.pkl") && e.contains("missing"),
            "{e}"
        );
        let mut r = Revisited {
            name: "rparis6k".into(),
            dir: d.clone(),
            images: vec!["a".into()],
            queries: vec![RevisitedQuery {
                name: "q".into(),
                easy: vec![3],
                ..RevisitedQuery::default()
            }],
        };
        write_gnd_pickle(&r).unwrap();
        let e = Revisited::open(&d).unwrap_err().to_string();
        assert!(e.contains("gnd[0].easy") && e.contains("below 1"), "{e}");
        r.queries[0].easy.clear();
        write_gnd_pickle(&r).unwrap();
        assert!(Revisited::open(&d).is_ok());
        std::fs::write(d.join("gnd_rparis6k.pkl"), b"\x80\x02cos\nsystem\nq\x00.").unwrap();
        let e = Revisited::open(&d).unwrap_err().to_string();
        assert!(e.contains("gnd_rparis6k.pkl"), "{e}");
    }

    #[test]
    fn crop_rounds_half_to_even_and_pads_black() {
        let img = RgbImage::from_fn(4, 3, |x, y| image::Rgb([(10 * y + x) as u8, 0, 0]));
        let c = crop_box(&img, [0.5, 1.0, 2.5, 3.4]);
        // round(0.5) = 0, round(2.5) = 2, round(3.4) = 3: columns 0..2, rows 1..3.
        assert_eq!(c.dimensions(), (2, 2));
        assert_eq!(c.get_pixel(1, 1)[0], 21);
        let c = crop_box(&img, [3.0, 2.0, 5.0, 3.0]);
        assert_eq!((c.get_pixel(0, 0)[0], c.get_pixel(1, 0)[0]), (23, 0));
    }
}
