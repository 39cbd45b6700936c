//! Issue 15's cause, reproduced: Burn flex's `Tensor::sum` of 4 Mi elements or more rounds
//! differently depending on which rayon worker steals what; [`ordered_sum`] does not.
//!
//! `cargo run --release -p carp-core --example sum_order -- [INPUTS=20] [CALLS=20]`
//!
//! For each of INPUTS random tensors shaped like the CIFAR head's 2048 x 2048 weight (squared,
//! as LARS's norm squares it), the reference is one sum in a two-thread pool whose second
//! worker is held busy (the owner runs every split itself). Then CALLS sums run with the second
//! worker stealing every job it can. The table counts the calls whose bits differ from the
//! reference.

use burn::tensor::{Device, Tensor, TensorData};
use carp_core::reduce::ordered_sum;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A full sum of a 1-D tensor.
type SumFn = fn(Tensor<1>) -> Tensor<1>;

/// Runs `f` in a fresh two-thread pool whose second worker spins (`steal == false`) or steals
/// every job it can once `f` runs (`steal == true`).
fn in_perturbed_pool<R: Send>(steal: bool, f: impl FnOnce() -> R + Send) -> R {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a thread pool");
    let held = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (held, running, stop) = (Arc::clone(&held), Arc::clone(&running), Arc::clone(&stop));
        pool.spawn(move || {
            held.store(true, Ordering::SeqCst);
            while !stop.load(Ordering::SeqCst) {
                if steal && running.load(Ordering::SeqCst) {
                    rayon::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        });
    }
    while !held.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let out = pool.install(|| {
        running.store(true, Ordering::SeqCst);
        f()
    });
    stop.store(true, Ordering::SeqCst);
    out
}

#[allow(clippy::disallowed_methods)] // Burn's `Tensor::sum` is what this example measures
fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a count"));
    let inputs = args.next().unwrap_or(20);
    let calls = args.next().unwrap_or(20);
    let n = 2048 * 2048;
    let device = Device::flex();
    let normal = Normal::new(0.0f32, 0.02).expect("a normal distribution");
    let sums: [(&str, SumFn); 2] = [("Tensor::sum", |t| t.sum()), ("ordered_sum", ordered_sum)];
    let mut differ = [0usize; 2];
    let mut inputs_differing = [0usize; 2];
    for seed in 0..inputs as u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let host: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng)).collect();
        let x = Tensor::<1>::from_data(TensorData::new(host, [n]), &device).square();
        for (k, (_, sum)) in sums.iter().enumerate() {
            let bits = |t: &Tensor<1>| sum(t.clone()).into_scalar::<f32>().to_bits();
            let reference = in_perturbed_pool(false, || bits(&x));
            let stolen = in_perturbed_pool(true, || {
                (0..calls).filter(|_| bits(&x) != reference).count()
            });
            differ[k] += stolen;
            inputs_differing[k] += usize::from(stolen > 0);
        }
    }
    println!("| sum | calls differing from the no-steal value | inputs with a differing call |");
    println!("|---|---|---|");
    for (k, (name, _)) in sums.iter().enumerate() {
        println!(
            "| {name} | {} of {} | {} of {inputs} |",
            differ[k],
            inputs * calls,
            inputs_differing[k]
        );
    }
}
