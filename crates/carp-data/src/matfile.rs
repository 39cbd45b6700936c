//! A reader for the MATLAB Level 5 `.mat` files that Flowers-102 (`imagelabels.mat`,
//! `setid.mat`) and Stanford Cars (`cars_meta.mat`, `cars_*_annos*.mat`) ship their labels and
//! splits in: numeric arrays, character arrays, cell arrays and struct arrays, uncompressed or
//! zlib-compressed (`miCOMPRESSED`), little-endian. Sparse, object and function-handle arrays
//! are refused. No crate reads struct arrays (the `matfile` crate reads numeric arrays only).
//!
//! Layout (MathWorks, "MAT-File Format", Level 5): a 128-byte header ending in version 0x0100
//! and the endian mark `IM`; then data elements, each a tag (`u32` type, `u32` byte count, or
//! the small form with both in one `u32` and up to 4 bytes of data) padded to 8 bytes. A
//! variable is an `miMATRIX` element: array flags (class in the low byte), dimensions, name,
//! then the class's payload.

use crate::DataError;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// A value of a `.mat` variable (arrays flattened in MATLAB's column-major order).
#[derive(Clone, Debug, PartialEq)]
pub enum MatValue {
    /// A numeric or logical array as f64.
    Numeric {
        /// Dimensions.
        dims: Vec<usize>,
        /// Values, column-major.
        data: Vec<f64>,
    },
    /// A character array (rows concatenated for a 1 x N string).
    Char(String),
    /// A cell array.
    Cell(Vec<MatValue>),
    /// A struct array: one map of field values per element.
    Struct(Vec<BTreeMap<String, MatValue>>),
}

impl MatValue {
    /// The numbers of a numeric array.
    pub fn numbers(&self) -> Option<&[f64]> {
        match self {
            MatValue::Numeric { data, .. } => Some(data),
            _ => None,
        }
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::SplitFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    /// One data element: (type, payload); the cursor moves past its padding.
    fn element(&mut self) -> Option<(u32, &'a [u8])> {
        let first = self.u32()?;
        if first >> 16 != 0 {
            // Small data element: bytes in the high half, type in the low half, 4 data bytes.
            let n = (first >> 16) as usize;
            let payload = self.take(4)?;
            return Some((first & 0xffff, payload.get(..n)?));
        }
        let n = self.u32()? as usize;
        let payload = self.take(n)?;
        if first != 15 {
            // Elements are padded to 8 bytes (compressed ones are not).
            let pad = (8 - n % 8) % 8;
            self.pos = (self.pos + pad).min(self.data.len());
        }
        Some((first, payload))
    }
}

/// Numbers of a data element of MAT type `ty`.
fn numbers(ty: u32, b: &[u8]) -> Option<Vec<f64>> {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            b.chunks_exact($n)
                .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk")) as f64)
                .collect()
        };
    }
    Some(match ty {
        1 => b.iter().map(|&v| f64::from(v as i8)).collect(),
        2 => b.iter().map(|&v| f64::from(v)).collect(),
        3 => conv!(i16, 2),
        4 => conv!(u16, 2),
        5 => conv!(i32, 4),
        6 => conv!(u32, 4),
        7 => conv!(f32, 4),
        9 => conv!(f64, 8),
        12 => conv!(i64, 8),
        13 => conv!(u64, 8),
        _ => return None,
    })
}

/// Bounds the nesting of cells and structs so a hostile file cannot recurse without limit.
const MAX_DEPTH: usize = 32;

fn matrix(path: &Path, payload: &[u8], depth: usize) -> Result<(String, MatValue), DataError> {
    if depth > MAX_DEPTH {
        return Err(bad(path, "cells or structs nested too deeply"));
    }
    let trunc = || bad(path, "truncated or malformed matrix element");
    let mut c = Cursor {
        data: payload,
        pos: 0,
    };
    if payload.is_empty() {
        // An empty miMATRIX (e.g. an empty cell entry).
        return Ok((
            String::new(),
            MatValue::Numeric {
                dims: vec![0, 0],
                data: Vec::new(),
            },
        ));
    }
    let (_, flags) = c.element().ok_or_else(trunc)?;
    let class = *flags.first().ok_or_else(trunc)?;
    let (_, dims) = c.element().ok_or_else(trunc)?;
    let dims: Vec<usize> = dims
        .chunks_exact(4)
        .map(|d| i32::from_le_bytes(d.try_into().expect("4 bytes")).max(0) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(trunc)?;
    let (_, name) = c.element().ok_or_else(trunc)?;
    let name = String::from_utf8_lossy(name).into_owned();
    let value = match class {
        // Cell array: one matrix per element.
        1 => {
            let mut items = Vec::with_capacity(count.min(1 << 20));
            for _ in 0..count {
                let (ty, p) = c.element().ok_or_else(trunc)?;
                if ty != 14 {
                    return Err(bad(
                        path,
                        format!("cell element of type {ty}, expected matrix"),
                    ));
                }
                items.push(matrix(path, p, depth + 1)?.1);
            }
            MatValue::Cell(items)
        }
        // Struct array: field name length, names, then each element's fields.
        2 => {
            let (_, len) = c.element().ok_or_else(trunc)?;
            let len =
                u32::from_le_bytes(len.get(..4).ok_or_else(trunc)?.try_into().expect("4")) as usize;
            let (_, names) = c.element().ok_or_else(trunc)?;
            if len == 0 {
                return Err(bad(path, "struct with zero-length field names"));
            }
            let fields: Vec<String> = names
                .chunks(len)
                .map(|n| {
                    let end = n.iter().position(|&b| b == 0).unwrap_or(n.len());
                    String::from_utf8_lossy(&n[..end]).into_owned()
                })
                .collect();
            let mut elements = Vec::with_capacity(count.min(1 << 20));
            for _ in 0..count {
                let mut map = BTreeMap::new();
                for f in &fields {
                    let (ty, p) = c.element().ok_or_else(trunc)?;
                    if ty != 14 {
                        return Err(bad(
                            path,
                            format!("field {f} of type {ty}, expected matrix"),
                        ));
                    }
                    map.insert(f.clone(), matrix(path, p, depth + 1)?.1);
                }
                elements.push(map);
            }
            MatValue::Struct(elements)
        }
        // Character array.
        4 => {
            let (ty, b) = c.element().unwrap_or((4, &[]));
            let units: Vec<u32> = match ty {
                16 => {
                    return Ok((
                        name,
                        MatValue::Char(String::from_utf8_lossy(b).into_owned()),
                    ))
                }
                17 | 4 | 3 => b
                    .chunks_exact(2)
                    .map(|u| u32::from(u16::from_le_bytes([u[0], u[1]])))
                    .collect(),
                18 | 6 | 5 => b
                    .chunks_exact(4)
                    .map(|u| u32::from_le_bytes(u.try_into().expect("4")))
                    .collect(),
                1 | 2 => b.iter().map(|&v| u32::from(v)).collect(),
                other => return Err(bad(path, format!("char data of type {other}"))),
            };
            // Column-major: for a multi-row array read row by row.
            let rows = dims.first().copied().unwrap_or(1).max(1);
            let cols = units.len() / rows;
            let mut s = String::with_capacity(units.len());
            for r in 0..rows {
                for col in 0..cols {
                    s.push(char::from_u32(units[col * rows + r]).unwrap_or('\u{fffd}'));
                }
            }
            MatValue::Char(s)
        }
        // Numeric and logical classes (real part only).
        6..=15 => {
            let data = if count == 0 {
                Vec::new()
            } else {
                let (ty, b) = c.element().ok_or_else(trunc)?;
                numbers(ty, b).ok_or_else(|| bad(path, format!("numeric data of type {ty}")))?
            };
            if data.len() != count {
                return Err(bad(
                    path,
                    format!("variable {name}: {} values for dims {dims:?}", data.len()),
                ));
            }
            MatValue::Numeric { dims, data }
        }
        other => {
            return Err(bad(
                path,
                format!("variable {name}: unsupported MATLAB class {other} (sparse/object)"),
            ))
        }
    };
    Ok((name, value))
}

/// Reads every variable of the Level 5 `.mat` file at `path`.
///
/// # Errors
/// [`DataError::SplitFile`] naming the file when it is missing, not a little-endian Level 5
/// file, or malformed.
pub fn read_mat(path: &Path) -> Result<BTreeMap<String, MatValue>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
    if bytes.len() < 128 || &bytes[126..128] != b"IM" || bytes[124..126] != [0, 1] {
        return Err(bad(
            path,
            "not a little-endian MATLAB Level 5 .mat file (v7.3/HDF5 files are not read)",
        ));
    }
    let mut c = Cursor {
        data: &bytes,
        pos: 128,
    };
    let mut out = BTreeMap::new();
    while c.pos < bytes.len() {
        let (ty, payload) = c
            .element()
            .ok_or_else(|| bad(path, "truncated data element"))?;
        let (name, value) = match ty {
            14 => matrix(path, payload, 0)?,
            15 => {
                let mut inflated = Vec::new();
                flate2::read::ZlibDecoder::new(payload)
                    .take(1 << 31)
                    .read_to_end(&mut inflated)
                    .map_err(|e| bad(path, format!("bad compressed element: {e}")))?;
                let mut inner = Cursor {
                    data: &inflated,
                    pos: 0,
                };
                let (ty, p) = inner
                    .element()
                    .ok_or_else(|| bad(path, "truncated compressed element"))?;
                if ty != 14 {
                    continue;
                }
                matrix(path, p, 0)?
            }
            _ => continue,
        };
        out.insert(name, value);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes an uncompressed Level 5 file: doubles, a string, a cell of strings and a struct
    /// array. Used by the reader tests of Flowers-102 and Stanford Cars too.
    pub(crate) struct MatWriter {
        body: Vec<u8>,
    }

    fn element(ty: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(ty.to_le_bytes());
        v.extend((data.len() as u32).to_le_bytes());
        v.extend(data);
        while v.len() % 8 != 0 {
            v.push(0);
        }
        v
    }

    pub(crate) enum W<'a> {
        Doubles(&'a [f64]),
        Str(&'a str),
        Cell(Vec<W<'a>>),
        Struct(Vec<&'a str>, Vec<Vec<W<'a>>>),
    }

    fn matrix(name: &str, w: &W) -> Vec<u8> {
        let (class, dims, body): (u8, Vec<i32>, Vec<u8>) = match w {
            W::Doubles(d) => (
                6,
                vec![1, d.len() as i32],
                element(
                    9,
                    &d.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(),
                ),
            ),
            W::Str(s) => {
                let units: Vec<u8> = s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
                (
                    4,
                    vec![1, s.encode_utf16().count() as i32],
                    element(4, &units),
                )
            }
            W::Cell(items) => (
                1,
                vec![1, items.len() as i32],
                items.iter().flat_map(|i| matrix("", i)).collect(),
            ),
            W::Struct(fields, elems) => {
                let len = 32usize;
                let mut names = Vec::new();
                for f in fields {
                    let mut n = f.as_bytes().to_vec();
                    n.resize(len, 0);
                    names.extend(n);
                }
                let mut b = Vec::new();
                // Small element: field name length.
                b.extend((5u32 | (4 << 16)).to_le_bytes());
                b.extend((len as u32).to_le_bytes());
                b.extend(element(1, &names));
                for e in elems {
                    for v in e {
                        b.extend(matrix("", v));
                    }
                }
                (2, vec![1, elems.len() as i32], b)
            }
        };
        let mut m = Vec::new();
        m.extend(element(6, &[class, 0, 0, 0, 0, 0, 0, 0]));
        m.extend(element(
            5,
            &dims
                .iter()
                .flat_map(|d| d.to_le_bytes())
                .collect::<Vec<_>>(),
        ));
        m.extend(element(1, name.as_bytes()));
        m.extend(body);
        element(14, &m)
    }

    impl MatWriter {
        pub(crate) fn new() -> Self {
            Self { body: Vec::new() }
        }
        pub(crate) fn var(mut self, name: &str, w: W) -> Self {
            self.body.extend(matrix(name, &w));
            self
        }
        pub(crate) fn write(self, path: &Path) {
            let mut head = b"MATLAB 5.0 MAT-file, written by carp tests".to_vec();
            head.resize(116, b' ');
            head.extend([0u8; 8]);
            head.extend([0, 1, b'I', b'M']);
            head.extend(self.body);
            std::fs::write(path, head).unwrap();
        }
    }

    #[test]
    fn reads_what_the_writer_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.mat");
        MatWriter::new()
            .var("labels", W::Doubles(&[3.0, 1.0, 2.0]))
            .var("names", W::Cell(vec![W::Str("AM General"), W::Str("Zoë")]))
            .var(
                "annotations",
                W::Struct(
                    vec!["class", "fname"],
                    vec![
                        vec![W::Doubles(&[2.0]), W::Str("00001.jpg")],
                        vec![W::Doubles(&[1.0]), W::Str("00002.jpg")],
                    ],
                ),
            )
            .write(&p);
        let m = read_mat(&p).unwrap();
        assert_eq!(m["labels"].numbers().unwrap(), &[3.0, 1.0, 2.0]);
        assert_eq!(
            m["names"],
            MatValue::Cell(vec![
                MatValue::Char("AM General".into()),
                MatValue::Char("Zoë".into())
            ])
        );
        let MatValue::Struct(e) = &m["annotations"] else {
            panic!("struct expected")
        };
        assert_eq!(e[1]["fname"], MatValue::Char("00002.jpg".into()));
        assert_eq!(e[0]["class"].numbers().unwrap(), &[2.0]);
    }

    /// A file written by scipy.io.savemat with compression (tools/make_mat_fixture.py).
    #[test]
    fn reads_a_scipy_compressed_file() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scipy_v5.mat");
        let m = read_mat(&p).unwrap();
        assert_eq!(m["trnid"].numbers().unwrap(), &[3.0, 1.0, 4.0]);
        assert_eq!(m["labels"].numbers().unwrap(), &[1.0, 2.0, 1.0, 2.0]);
        let MatValue::Struct(e) = &m["annotations"] else {
            panic!("struct expected")
        };
        assert_eq!(e.len(), 2);
        assert_eq!(e[0]["fname"], MatValue::Char("00001.jpg".into()));
        assert_eq!(e[1]["class"].numbers().unwrap(), &[7.0]);
        assert_eq!(
            m["class_names"],
            MatValue::Cell(vec![
                MatValue::Char("AM General Hummer SUV 2000".into()),
                MatValue::Char("Acura RL Sedan 2012".into())
            ])
        );
    }

    #[test]
    fn garbage_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("setid.mat");
        std::fs::write(&p, b"not a mat file").unwrap();
        let e = read_mat(&p).unwrap_err().to_string();
        assert!(e.contains("setid.mat") && e.contains("Level 5"), "{e}");
    }
}
