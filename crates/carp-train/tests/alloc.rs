//! `carp_train::alloc::keep_freed_memory`: a freed large block is reused without page faults.
//!
//! Its own `main` (no test harness), so that the settings are made first thing on the main
//! thread, as the `carp` binary makes them.

/// Minor page faults of the calling thread so far.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn thread_faults() -> i64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
        usage.ru_minflt
    }
}

/// Page faults filling a 96 MiB block allocated right after an equal one was freed, on a
/// thread spawned after the settings (as rayon's workers are).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn faults_refilling_a_freed_block() -> i64 {
    std::thread::spawn(|| {
        // Far above glibc's largest mmap threshold (32 MiB).
        let n = 96 << 20;
        drop(std::hint::black_box(vec![1u8; n]));
        let before = thread_faults();
        let second = std::hint::black_box(vec![2u8; n]);
        let faults = thread_faults() - before;
        assert_eq!(second[n - 1], 2);
        faults
    })
    .join()
    .expect("allocating thread")
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn main() {
    // Without the settings glibc mmaps such a block and unmaps it on free, so refilling it
    // faults in all of its 24576 pages again; with them it reuses the mapped pages.
    assert!(
        carp_train::alloc::keep_freed_memory(),
        "mallopt refused the settings"
    );
    let faults = faults_refilling_a_freed_block();
    assert!(
        faults < 1000,
        "{faults} page faults refilling a freed 96 MiB block"
    );
    println!("test alloc ... ok ({faults} page faults refilling a freed 96 MiB block)");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() {
    println!("test alloc ... skipped: the allocator settings are glibc's");
}
