//! Shared by carp-cli's integration tests.

/// The model of the small test runs: a ResNet-18 at width 4, a 64-way head in partitions of
/// 16, 16 px global and two 8 px local views.
pub const SMALL_MODEL: [&str; 12] = [
    "--base-width",
    "4",
    "--out-dim",
    "64",
    "--partition-size",
    "16",
    "--global-size",
    "16",
    "--local-size",
    "8",
    "--local-views",
    "2",
];
