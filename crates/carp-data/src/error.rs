//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading images or building batches.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The dataset root does not exist.
    #[error("{path}: dataset directory does not exist", path = path.display())]
    MissingDir {
        /// The directory that was asked for.
        path: PathBuf,
    },
    /// The dataset root exists but is not a directory.
    #[error("{path}: expected a directory, found a file", path = path.display())]
    NotADirectory {
        /// The path that was asked for.
        path: PathBuf,
    },
    /// The dataset root holds no class sub-folders.
    #[error(
        "{path}: no class sub-folders found (expected <root>/<class>/<image>.jpg|jpeg|png)",
        path = path.display()
    )]
    NoClasses {
        /// The dataset root.
        path: PathBuf,
    },
    /// A class folder holds no file with a supported extension.
    #[error("{path}: class folder holds no .jpg/.jpeg/.png file", path = path.display())]
    EmptyClass {
        /// The class folder.
        path: PathBuf,
    },
    /// Reading a file or directory failed.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file or directory being read.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file could not be decoded as an image.
    #[error("{path}: cannot decode image: {source}", path = path.display())]
    Decode {
        /// The image file.
        path: PathBuf,
        /// The decoder's error.
        source: image::ImageError,
    },
    /// A file the dataset format requires is absent.
    #[error("{path}: missing {what} (looked for {looked})", path = path.display())]
    MissingFile {
        /// The dataset root that was given.
        path: PathBuf,
        /// What was expected, e.g. "CIFAR-10 training batches".
        what: String,
        /// The file names that were tried.
        looked: String,
    },
    /// A split or label file of a data set is missing or malformed (transfer data sets,
    /// VOC07, revisitop ground truth, `.mat` files).
    #[error("{path}: {reason}", path = path.display())]
    SplitFile {
        /// The split file.
        path: PathBuf,
        /// What is wrong (`missing split file`, `line 3: expected ...`).
        reason: String,
    },
    /// A binary file whose length is not a whole number of records.
    #[error(
        "{path}: {len} bytes is not a whole number of {record}-byte records (truncated or not this format)",
        path = path.display()
    )]
    Truncated {
        /// The binary file.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
        /// Bytes per record of the format.
        record: u64,
    },
    /// A label outside the format's range.
    #[error("{path}: record {record} has label {label}, expected {expected}", path = path.display())]
    BadLabel {
        /// The file holding the label.
        path: PathBuf,
        /// Record (0-based) or line (1-based, for text lists) of the label.
        record: usize,
        /// The label read.
        label: String,
        /// The allowed range, in words.
        expected: String,
    },
    /// Two files of one split disagree on the number of images.
    #[error("{path}: {found} labels for {expected} images", path = path.display())]
    CountMismatch {
        /// The label file.
        path: PathBuf,
        /// Number of images in the matching image file.
        expected: usize,
        /// Number of labels found.
        found: usize,
    },
    /// A dataset with no image (an empty file list or binary file).
    #[error("{path}: no images", path = path.display())]
    Empty {
        /// The file or directory.
        path: PathBuf,
    },
    /// A `--data` style source string that does not parse.
    #[error("unknown data source `{spec}`: {reason}")]
    BadSource {
        /// The string given.
        spec: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// With skipping on, too many bad images in a row to find a replacement.
    #[error("{tried} images in a row failed to decode (last: {last}); giving up")]
    TooManyBadImages {
        /// How many consecutive candidates failed.
        tried: usize,
        /// The last error.
        last: Box<DataError>,
    },
    /// An HTTP request could not be made (network, TLS, bad URL).
    #[error("{url}: {source}")]
    Http {
        /// The URL requested.
        url: String,
        /// The client's error.
        source: Box<ureq::Error>,
    },
    /// The server answered with an unexpected status.
    #[error("{url}: HTTP status {status}")]
    HttpStatus {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// A download broke off; the partial file is kept and the next run continues it.
    #[error(
        "{url}: transfer interrupted after {bytes} bytes ({source}); run the command again to resume from {part}",
        part = part.display()
    )]
    Interrupted {
        /// The URL requested.
        url: String,
        /// Bytes of the file received so far.
        bytes: u64,
        /// The partial file.
        part: PathBuf,
        /// The read error.
        source: std::io::Error,
    },
    /// A downloaded file's checksum differs from the published one.
    #[error(
        "{path}: MD5 checksum mismatch: expected {expected}, got {found} (corrupt or wrong file; removed, nothing extracted)",
        path = path.display()
    )]
    ChecksumMismatch {
        /// The archive.
        path: PathBuf,
        /// The published checksum.
        expected: String,
        /// The checksum of what arrived.
        found: String,
    },
    /// An archive could not be unpacked.
    #[error("{path}: cannot unpack: {source}", path = path.display())]
    Extract {
        /// The archive.
        path: PathBuf,
        /// The error from gzip or tar.
        source: std::io::Error,
    },
    /// A sample index past the end of the dataset.
    #[error("{dataset}: index {index} out of range (dataset has {len} images)")]
    IndexOutOfRange {
        /// The dataset's description.
        dataset: String,
        /// The index that was asked for.
        index: usize,
        /// The dataset's length.
        len: usize,
    },
    /// A step past the end of the epoch.
    #[error("step {step} out of range: an epoch has {steps} steps")]
    StepOutOfRange {
        /// The step that was asked for.
        step: usize,
        /// Steps per epoch.
        steps: usize,
    },
    /// Evaluation views of different sizes cannot share one batch buffer.
    #[error(
        "sample {index}: evaluation view has {found} values, expected {expected} \
         (images differ in size: set a resize and a centre crop)"
    )]
    EvalSizeMismatch {
        /// The dataset index of the offending sample.
        index: usize,
        /// Values per view of the first sample.
        expected: usize,
        /// Values per view of this sample.
        found: usize,
    },
}

impl DataError {
    /// Whether this is a per-image failure (unreadable or undecodable file) that
    /// [`crate::Loader::skip_bad_images`] may skip, rather than a problem with the dataset.
    pub fn is_bad_image(&self) -> bool {
        matches!(self, Self::Decode { .. } | Self::Io { .. })
    }
}
