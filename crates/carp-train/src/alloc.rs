//! Process allocator settings for the large, short-lived buffers of training and inference.
//!
//! Every layer allocates its activations and gradients afresh (tens of MiB each at the cifar
//! preset, more at ResNet-50) and frees them a moment later. glibc serves any block above its
//! mmap threshold (at most 32 MiB) with a fresh `mmap` and unmaps it on free, so each step
//! page-faults its whole working set in again and the kernel zeroes every page: 13 % of the
//! CPU of `carp embed` and 5 % of a training step were page faults and page clearing
//! (bench/runs/2026-12-02-speed). Serving large blocks from the heap and keeping freed memory
//! for reuse removes that; the peak resident memory stays the same (the working set is
//! reached on every step anyway), but it is not returned to the system until the process
//! exits.

/// Environment variable that, set to `0`, leaves the allocator's defaults alone.
pub const ENV: &str = "CARP_MALLOC_TUNING";

/// Makes glibc serve large blocks from the heap and keep freed memory for reuse; whether it
/// did (not on other C libraries, not with `CARP_MALLOC_TUNING=0`). Call it once, first
/// thing in `main`.
pub fn keep_freed_memory() -> bool {
    if std::env::var(ENV).is_ok_and(|v| v == "0") {
        return false;
    }
    tune()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune() -> bool {
    // SAFETY: mallopt only changes allocator parameters; it is called before any other
    // thread exists and has no memory-safety preconditions.
    unsafe {
        // No mmap'd blocks: all of them come from (and go back to) the heap.
        let no_mmap = libc::mallopt(libc::M_MMAP_MAX, 0) == 1;
        // Never give the top of the heap back to the system.
        let no_trim = libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1;
        // One arena for all threads: a secondary arena's heaps are at most 64 MiB, and glibc
        // mmaps (and later unmaps) any larger block a worker thread asks for whatever
        // M_MMAP_MAX says. The threads allocate few, large blocks: no lock contention to
        // speak of (measured: no difference in the cifar step).
        let one_arena = libc::mallopt(libc::M_ARENA_MAX, 1) == 1;
        no_mmap && no_trim && one_arena
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune() -> bool {
    false
}
