//! A minimal TensorBoard event-file writer (scalars and histograms) and its reader.
//!
//! No maintained Rust crate writes TensorBoard events (`tensorboard-rs` is marked inactive and
//! pulls in protobuf 2 and image 0.23), and the format is small:
//!
//! - The file `events.out.tfevents.<unix secs>.<host>` is a sequence of TFRecords:
//!   `u64 length (LE) | u32 masked_crc32c(length bytes) | data | u32 masked_crc32c(data)`,
//!   with `masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8` (wrapping).
//! - Each record is a protobuf `Event { double wall_time = 1; int64 step = 2;
//!   string file_version = 3; Summary summary = 5; }`, `Summary { repeated Value value = 1; }`,
//!   `Value { string tag = 1; float simple_value = 2; HistogramProto histo = 5; }`,
//!   `HistogramProto { double min = 1, max = 2, num = 3, sum = 4, sum_squares = 5;
//!   repeated double bucket_limit = 6 [packed]; repeated double bucket = 7 [packed]; }`.
//! - The first event carries `file_version = "brain.Event:2"`.
//!
//! The encoder is checked by [`read_events`] here and, by hand, by the `tensorboard` Python
//! package's `EventAccumulator` (see the issue 6 note).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, ((field as u64) << 3) | wire as u64);
}

fn put_f64(out: &mut Vec<u8>, field: u32, v: f64) {
    key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_packed_f64(out: &mut Vec<u8>, field: u32, v: &[f64]) {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    put_bytes(out, field, &bytes);
}

/// One value of a summary.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar.
    Scalar(f32),
    /// A histogram: right bucket edges and counts (bucket i holds values in
    /// (limit[i-1], limit[i]]), plus the summary statistics TensorBoard shows.
    Histogram {
        /// Smallest value.
        min: f64,
        /// Largest value.
        max: f64,
        /// Number of values.
        num: f64,
        /// Sum of the values.
        sum: f64,
        /// Sum of squares.
        sum_squares: f64,
        /// Right edge of each bucket.
        bucket_limit: Vec<f64>,
        /// Count of each bucket.
        bucket: Vec<f64>,
    },
}

impl Value {
    /// The histogram of integer values `0..n` with `counts[i]` occurrences of `i`, in
    /// unit-wide buckets with right edges `i + 0.5`.
    pub fn integer_histogram(counts: &[f64]) -> Self {
        let num: f64 = counts.iter().sum();
        let used = || counts.iter().enumerate().filter(|(_, c)| **c > 0.0);
        let min = used().map(|(i, _)| i as f64).next().unwrap_or(0.0);
        let max = used().map(|(i, _)| i as f64).next_back().unwrap_or(0.0);
        Value::Histogram {
            min,
            max,
            num,
            sum: used().map(|(i, c)| i as f64 * c).sum(),
            sum_squares: used().map(|(i, c)| (i * i) as f64 * c).sum(),
            bucket_limit: (0..counts.len()).map(|i| i as f64 + 0.5).collect(),
            bucket: counts.to_vec(),
        }
    }

    fn encode(&self, tag: &str) -> Vec<u8> {
        let mut v = Vec::new();
        put_bytes(&mut v, 1, tag.as_bytes());
        match self {
            Value::Scalar(x) => {
                key(&mut v, 2, 5);
                v.extend_from_slice(&x.to_le_bytes());
            }
            Value::Histogram {
                min,
                max,
                num,
                sum,
                sum_squares,
                bucket_limit,
                bucket,
            } => {
                let mut h = Vec::new();
                put_f64(&mut h, 1, *min);
                put_f64(&mut h, 2, *max);
                put_f64(&mut h, 3, *num);
                put_f64(&mut h, 4, *sum);
                put_f64(&mut h, 5, *sum_squares);
                put_packed_f64(&mut h, 6, bucket_limit);
                put_packed_f64(&mut h, 7, bucket);
                put_bytes(&mut v, 5, &h);
            }
        }
        v
    }
}

/// One decoded event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub wall_time: f64,
    /// Global step.
    pub step: i64,
    /// `brain.Event:2` on the first event of a file, empty otherwise.
    pub file_version: String,
    /// Tagged values.
    pub values: Vec<(String, Value)>,
}

fn encode_event(e: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    put_f64(&mut out, 1, e.wall_time);
    key(&mut out, 2, 0);
    varint(&mut out, e.step as u64);
    if !e.file_version.is_empty() {
        put_bytes(&mut out, 3, e.file_version.as_bytes());
    }
    if !e.values.is_empty() {
        let mut summary = Vec::new();
        for (tag, value) in &e.values {
            put_bytes(&mut summary, 1, &value.encode(tag));
        }
        put_bytes(&mut out, 5, &summary);
    }
    out
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Appends events to a new event file in a directory (one file per process).
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Creates `dir/events.out.tfevents.<secs>.<host>.<pid>` and writes the version event.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let name = format!(
            "events.out.tfevents.{}.{host}.{}",
            now() as u64,
            std::process::id()
        );
        let path = dir.join(name);
        let mut w = Self {
            out: BufWriter::new(File::create(&path)?),
            path,
        };
        w.write(&Event {
            wall_time: now(),
            step: 0,
            file_version: "brain.Event:2".into(),
            values: Vec::new(),
        })?;
        Ok(w)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event with the current wall time and flushes it.
    pub fn add(&mut self, step: usize, values: Vec<(String, Value)>) -> std::io::Result<()> {
        self.write(&Event {
            wall_time: now(),
            step: step as i64,
            file_version: String::new(),
            values,
        })
    }

    fn write(&mut self, e: &Event) -> std::io::Result<()> {
        let data = encode_event(e);
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc(&len).to_le_bytes())?;
        self.out.write_all(&data)?;
        self.out.write_all(&masked_crc(&data).to_le_bytes())?;
        self.out.flush()
    }
}

/// Why an event file could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum EventFileError {
    /// The record framing or a CRC is wrong.
    #[error("record at byte {offset}: {message}")]
    Framing {
        /// Byte offset of the record.
        offset: usize,
        /// What is wrong.
        message: String,
    },
    /// The protobuf payload could not be decoded.
    #[error("event at byte {offset}: bad protobuf")]
    Decode {
        /// Byte offset of the record.
        offset: usize,
    },
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    /// Next (field, wire type, payload): payload bytes for wire 1, 2, 5; varint as 8 LE bytes.
    fn field(&mut self) -> Option<(u32, u8, Vec<u8>)> {
        let k = self.varint()?;
        let (field, wire) = ((k >> 3) as u32, (k & 7) as u8);
        let payload = match wire {
            0 => self.varint()?.to_le_bytes().to_vec(),
            1 => self.take(8)?.to_vec(),
            2 => {
                let n = self.varint()? as usize;
                self.take(n)?.to_vec()
            }
            5 => self.take(4)?.to_vec(),
            _ => return None,
        };
        Some((field, wire, payload))
    }

    fn fields(buf: &'a [u8]) -> Option<Vec<(u32, u8, Vec<u8>)>> {
        let mut r = Reader { buf, pos: 0 };
        let mut out = Vec::new();
        while r.pos < buf.len() {
            out.push(r.field()?);
        }
        Some(out)
    }
}

fn f64_of(b: &[u8]) -> f64 {
    f64::from_le_bytes(b.try_into().unwrap_or([0; 8]))
}

fn packed(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8).map(f64_of).collect()
}

fn decode_value(buf: &[u8]) -> Option<(String, Value)> {
    let mut tag = String::new();
    let mut value = None;
    for (field, _, p) in Reader::fields(buf)? {
        match field {
            1 => tag = String::from_utf8(p).ok()?,
            2 => value = Some(Value::Scalar(f32::from_le_bytes(p.try_into().ok()?))),
            5 => {
                let (mut min, mut max, mut num, mut sum, mut sum_squares) = (0., 0., 0., 0., 0.);
                let (mut bucket_limit, mut bucket) = (Vec::new(), Vec::new());
                for (f, _, q) in Reader::fields(&p)? {
                    match f {
                        1 => min = f64_of(&q),
                        2 => max = f64_of(&q),
                        3 => num = f64_of(&q),
                        4 => sum = f64_of(&q),
                        5 => sum_squares = f64_of(&q),
                        6 => bucket_limit = packed(&q),
                        7 => bucket = packed(&q),
                        _ => {}
                    }
                }
                value = Some(Value::Histogram {
                    min,
                    max,
                    num,
                    sum,
                    sum_squares,
                    bucket_limit,
                    bucket,
                });
            }
            _ => {}
        }
    }
    Some((tag, value?))
}

fn decode_event(buf: &[u8]) -> Option<Event> {
    let mut e = Event {
        wall_time: 0.0,
        step: 0,
        file_version: String::new(),
        values: Vec::new(),
    };
    for (field, _, p) in Reader::fields(buf)? {
        match field {
            1 => e.wall_time = f64_of(&p),
            2 => e.step = u64::from_le_bytes(p.try_into().ok()?) as i64,
            3 => e.file_version = String::from_utf8(p).ok()?,
            5 => {
                for (f, _, v) in Reader::fields(&p)? {
                    if f == 1 {
                        e.values.push(decode_value(&v)?);
                    }
                }
            }
            _ => {}
        }
    }
    Some(e)
}

/// Reads every event of an event file, checking the framing and both CRCs of each record.
pub fn read_events(bytes: &[u8]) -> Result<Vec<Event>, EventFileError> {
    let mut events = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let bad = |message: &str| EventFileError::Framing {
            offset: pos,
            message: message.into(),
        };
        let header = bytes
            .get(pos..pos + 12)
            .ok_or_else(|| bad("truncated header"))?;
        let (len, crc) = header.split_at(8);
        if masked_crc(len).to_le_bytes() != crc {
            return Err(bad("length CRC mismatch"));
        }
        let n = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
        let data = bytes
            .get(pos + 12..pos + 12 + n)
            .ok_or_else(|| bad("truncated data"))?;
        let crc = bytes
            .get(pos + 12 + n..pos + 16 + n)
            .ok_or_else(|| bad("truncated data CRC"))?;
        if masked_crc(data).to_le_bytes() != crc {
            return Err(bad("data CRC mismatch"));
        }
        events.push(decode_event(data).ok_or(EventFileError::Decode { offset: pos })?);
        pos += 16 + n;
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The masked CRC32C of TFRecord, checked against the value TensorFlow's
    /// `crc32c.masked_crc32c` gives for the 8 little-endian bytes of length 0 and for
    /// b"hello" (computed from the published CRC32C check value: crc32c("123456789") =
    /// 0xE3069283).
    // Written out as TensorFlow's Python does, not with `rotate_right`, to check it.
    #[allow(clippy::manual_rotate)]
    #[test]
    fn masked_crc_matches_the_definition() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        let c = 0xE306_9283u32;
        let masked = ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8);
        assert_eq!(masked_crc(b"123456789"), masked);
    }

    #[test]
    fn varint_encoding() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
    }

    #[test]
    fn write_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.add(
            7,
            vec![
                ("loss/total".into(), Value::Scalar(1.25)),
                ("lr".into(), Value::Scalar(-0.5)),
            ],
        )
        .unwrap();
        w.add(
            300,
            vec![(
                "argmax/student".into(),
                Value::integer_histogram(&[1.0, 0.0, 3.0]),
            )],
        )
        .unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        assert!(path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("events.out.tfevents."));
        let bytes = std::fs::read(&path).unwrap();
        let events = read_events(&bytes).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].file_version, "brain.Event:2");
        assert_eq!(events[1].step, 7);
        assert_eq!(
            events[1].values,
            vec![
                ("loss/total".to_string(), Value::Scalar(1.25)),
                ("lr".to_string(), Value::Scalar(-0.5)),
            ]
        );
        assert_eq!(events[2].step, 300);
        // values 0, 2, 2, 2: sum 6, sum of squares 12, min 0, max 2
        assert_eq!(
            events[2].values[0].1,
            Value::Histogram {
                min: 0.0,
                max: 2.0,
                num: 4.0,
                sum: 6.0,
                sum_squares: 12.0,
                bucket_limit: vec![0.5, 1.5, 2.5],
                bucket: vec![1.0, 0.0, 3.0],
            }
        );
        assert!(events[1].wall_time > 1.7e9);
        // A flipped byte is caught by the CRC.
        let mut torn = bytes.clone();
        let last = torn.len() - 6;
        torn[last] ^= 0xff;
        assert!(matches!(
            read_events(&torn),
            Err(EventFileError::Framing { .. })
        ));
        assert!(read_events(&bytes[..bytes.len() - 1]).is_err());
    }
}
