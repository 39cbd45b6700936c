//! Which operand layout the `gemm` crate runs fastest for a convolution's GEMM
//! `Y[M, N] = X[M, K] · W[K, N]`: the measurement behind the layout choice in `conv.rs`.
//!
//! ```text
//! cargo run --release -p carp-kernels --example gemm_layouts -- [M K N] [threads]
//! ```

use std::time::Instant;

fn run(label: &str, m: usize, k: usize, n: usize, threads: usize, f: &dyn Fn(gemm::Parallelism)) {
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    f(par);
    let reps = 5;
    let t = Instant::now();
    for _ in 0..reps {
        f(par);
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "{label:<48} {:8.2} ms {:8.1} GFLOP/s",
        s * 1e3,
        2.0 * (m * k * n) as f64 / s / 1e9
    );
}

fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let (m, k, n) = if a.len() >= 3 {
        (a[0], a[1], a[2])
    } else {
        (4096, 576, 64)
    };
    let threads = a.get(3).copied().unwrap_or(1);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build_global()
        .unwrap();
    let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let w: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut y = vec![0.0f32; m * n];
    let yp = y.as_mut_ptr() as usize;
    println!("M {m} K {k} N {n}, threads {threads}");
    // SAFETY (all): buffers cover the described matrices.
    run(
        "X row-major, W row-major, Y row-major",
        m,
        k,
        n,
        threads,
        &|p| unsafe {
            gemm::gemm(
                m,
                n,
                k,
                yp as *mut f32,
                1,
                n as isize,
                false,
                x.as_ptr(),
                1,
                k as isize,
                w.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                p,
            )
        },
    );
    run(
        "X row-major, W col-major, Y row-major",
        m,
        k,
        n,
        threads,
        &|p| unsafe {
            gemm::gemm(
                m,
                n,
                k,
                yp as *mut f32,
                1,
                n as isize,
                false,
                x.as_ptr(),
                1,
                k as isize,
                w.as_ptr(),
                k as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                p,
            )
        },
    );
    run(
        "X col-major, W row-major, Y row-major",
        m,
        k,
        n,
        threads,
        &|p| unsafe {
            gemm::gemm(
                m,
                n,
                k,
                yp as *mut f32,
                1,
                n as isize,
                false,
                x.as_ptr(),
                m as isize,
                1,
                w.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                p,
            )
        },
    );
    run(
        "X row-major, W row-major, Y col-major",
        m,
        k,
        n,
        threads,
        &|p| unsafe {
            gemm::gemm(
                m,
                n,
                k,
                yp as *mut f32,
                m as isize,
                1,
                false,
                x.as_ptr(),
                1,
                k as isize,
                w.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                p,
            )
        },
    );
    run(
        "X col-major, W col-major, Y col-major",
        m,
        k,
        n,
        threads,
        &|p| unsafe {
            gemm::gemm(
                m,
                n,
                k,
                yp as *mut f32,
                m as isize,
                1,
                false,
                x.as_ptr(),
                m as isize,
                1,
                w.as_ptr(),
                k as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                p,
            )
        },
    );
    drop(y);
}
