//! The device-independent numerical checks of carp-core, as functions of the device they run
//! on: `tests/golden.rs` runs them on flex, `carp-train/tests/gpu.rs` on a GPU device, with the
//! same tolerances.
//!
//! Fixtures: `tests/fixtures/loss_golden.json` written by `tools/golden_loss.py` (NumPy, f64,
//! analytic gradients checked by finite differences in the script) and
//! `tests/fixtures/lars_golden.json` written by `tools/golden_lars.py`.

// Each including test binary uses its own subset.
#![allow(dead_code)]

use burn::tensor::{Device, Tensor, TensorData};
use carp_core::lars::lars_update;
use carp_core::loss::{carp_loss, consistency_loss, entropy_loss};
use carp_core::partition::{block_softmax, Partition};
use serde_json::Value;

/// carp-core's fixtures, reachable from any crate of the workspace.
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../carp-core/tests/fixtures");

fn fixture(name: &str) -> Value {
    let path = format!("{FIXTURES}/{name}");
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect("valid JSON")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn stack_views(views: &Value, b: usize, k: usize, device: &Device) -> Tensor<2> {
    let mut all = Vec::new();
    let mut n = 0;
    for v in views.as_array().unwrap() {
        all.extend(floats(v));
        n += 1;
    }
    Tensor::from_data(TensorData::new(all, [n * b, k]), device)
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn scalar(t: Tensor<1>) -> f64 {
    to_vec(t)[0] as f64
}

/// Loss terms within 1e-5 relative and the gradient w.r.t. the student logits within
/// 1e-4 relative (+1e-6 absolute) of the f64 reference, for every case.
pub fn loss_and_gradient_match_numpy_reference(device: &Device) {
    let fx = fixture("loss_golden.json");
    let device = device.clone().autodiff();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let b = case["B"].as_u64().unwrap() as usize;
        let k = case["K"].as_u64().unwrap() as usize;
        let n = case["N"].as_u64().unwrap() as usize;
        let perm: Vec<usize> = case["perm"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        let partition = Partition::from_permutation(perm, n);
        assert_eq!(partition.num_blocks(), case["P"].as_u64().unwrap() as usize);
        let student = stack_views(&case["student_logits"], b, k, &device).require_grad();
        let teacher = stack_views(&case["teacher_logits"], b, k, &device);
        let terms = carp_loss(student.clone(), teacher, b, &partition);
        for (term, got) in [
            ("consistency", scalar(terms.consistency.clone())),
            ("entropy", scalar(terms.entropy.clone())),
            ("total", scalar(terms.total.clone())),
        ] {
            let want = case[term].as_f64().unwrap();
            let rel = (got - want).abs() / want.abs().max(1e-3);
            assert!(rel < 1e-5, "{name} {term}: {got} vs {want} (rel {rel:e})");
        }
        let grads = terms.total.backward();
        let got = to_vec(student.grad(&grads).expect("student gradient"));
        let want: Vec<f64> = case["grad_student_logits"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(f64s)
            .collect();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let err = (*g as f64 - w).abs();
            assert!(
                err <= 1e-6 + 1e-4 * w.abs(),
                "{name} grad[{i}]: {g} vs {w} (err {err:e})"
            );
        }
    }
}

/// Three LARS steps (changing lr and weight decay) of a 2-D weight and a 1-D bias match the
/// f64 reference, including the zero-weight case where the trust ratio is forced to 1.
pub fn lars_matches_reference_over_three_steps(device: &Device) {
    let fx = fixture("lars_golden.json");
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let momentum = case["momentum"].as_f64().unwrap();
        let eta = case["eta"].as_f64().unwrap();
        let lr = f64s(&case["lr"]);
        let wd = f64s(&case["wd"]);
        for p in case["params"].as_array().unwrap() {
            let shape: Vec<usize> = p["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            let w0 = floats(&p["w0"]);
            let check = |step: usize, w: Vec<f32>, mu: Vec<f32>| {
                for (what, got, want) in [("w", w, &p["w"][step]), ("mu", mu, &p["mu"][step])] {
                    for (g, x) in got.iter().zip(f64s(want)) {
                        let err = (*g as f64 - x).abs();
                        assert!(
                            err <= 1e-7 + 1e-5 * x.abs(),
                            "{name} {} step {step} {what}: {g} vs {x}",
                            p["name"]
                        );
                    }
                }
            };
            if shape.len() == 2 {
                let mut w =
                    Tensor::<2>::from_data(TensorData::new(w0, [shape[0], shape[1]]), device);
                let mut mu = None;
                for s in 0..lr.len() {
                    let g = Tensor::<2>::from_data(
                        TensorData::new(floats(&p["grads"][s]), [shape[0], shape[1]]),
                        device,
                    );
                    let (nw, nmu) = lars_update(w, g, mu, lr[s], wd[s], momentum, eta);
                    check(s, to_vec(nw.clone()), to_vec(nmu.clone()));
                    w = nw;
                    mu = Some(nmu);
                }
            } else {
                let mut w = Tensor::<1>::from_data(TensorData::new(w0, [shape[0]]), device);
                let mut mu = None;
                for s in 0..lr.len() {
                    let g = Tensor::<1>::from_data(
                        TensorData::new(floats(&p["grads"][s]), [shape[0]]),
                        device,
                    );
                    let (nw, nmu) = lars_update(w, g, mu, lr[s], wd[s], momentum, eta);
                    check(s, to_vec(nw.clone()), to_vec(nmu.clone()));
                    w = nw;
                    mu = Some(nmu);
                }
            }
        }
    }
}

/// Finite differences in f64 (on the f32 implementation, h = 1e-2 on a smooth case) agree with
/// the autodiff gradient: a check that does not depend on the fixture.
pub fn gradient_matches_finite_differences(device: &Device) {
    let device = device.clone().autodiff();
    let (b, k, n) = (3, 8, 4);
    let partition = Partition::from_permutation(vec![5, 2, 7, 0, 1, 6, 3, 4], n);
    let s: Vec<f32> = (0..4 * b * k)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0)
        .collect();
    let t: Vec<f32> = (0..2 * b * k)
        .map(|i| ((i * 11 % 13) as f32 - 6.0) / 6.0)
        .collect();
    let teacher = Tensor::<2>::from_data(TensorData::new(t, [2 * b, k]), &device);
    let loss_at = |x: &[f32]| -> f64 {
        let st = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [4 * b, k]), &device);
        scalar(carp_loss(st, teacher.clone(), b, &partition).total)
    };
    let student =
        Tensor::<2>::from_data(TensorData::new(s.clone(), [4 * b, k]), &device).require_grad();
    let grads = carp_loss(student.clone(), teacher.clone(), b, &partition)
        .total
        .backward();
    let analytic = to_vec(student.grad(&grads).unwrap());
    let h = 1e-2f32;
    for i in (0..s.len()).step_by(7) {
        let mut plus = s.clone();
        plus[i] += h;
        let mut minus = s.clone();
        minus[i] -= h;
        let fd = (loss_at(&plus) - loss_at(&minus)) / (2.0 * h as f64);
        assert!(
            (fd - analytic[i] as f64).abs() < 2e-4,
            "logit {i}: finite difference {fd} vs autodiff {}",
            analytic[i]
        );
    }
}

/// The block softmax of a hand-computed case (K = 4, N = 2, permutation [3, 0, 2, 1]).
pub fn block_softmax_by_hand(device: &Device) {
    let part = Partition::from_permutation(vec![3, 0, 2, 1], 2);
    let z = Tensor::<2>::from_floats([[0.0, 1.0, 2.0, 3.0]], device);
    let p = to_vec(block_softmax(z, &part));
    let e = |a: f64, b: f64| (a.exp() / (a.exp() + b.exp())) as f32;
    let want = [e(3.0, 0.0), e(0.0, 3.0), e(2.0, 1.0), e(1.0, 2.0)];
    for (got, want) in p.iter().zip(want) {
        assert!((got - want).abs() < 1e-6, "{p:?} vs {want:?}");
    }
}

/// The block softmax of a random partition with a remainder (K = 27, N = 8: P = 3, three
/// prototypes sit out) against an f64 host computation, within 1e-6: gather order, block
/// layout `[P, B, N]` and normalisation.
pub fn block_softmax_matches_f64(device: &Device) {
    use rand::{Rng, SeedableRng};
    let (b, k, n) = (5, 27, 8);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let part = Partition::random(k, n, &mut rng);
    assert_eq!(part.num_blocks(), 3);
    let z: Vec<f32> = (0..b * k).map(|_| rng.random_range(-4.0..4.0)).collect();
    let got = to_vec(block_softmax(
        Tensor::<2>::from_data(TensorData::new(z.clone(), [b, k]), device),
        &part,
    ));
    assert_eq!(got.len(), 3 * b * n);
    for p in 0..3 {
        for row in 0..b {
            let block: Vec<f64> = (0..n)
                .map(|c| z[row * k + part.indices[p * n + c]] as f64)
                .collect();
            let max = block.iter().cloned().fold(f64::MIN, f64::max);
            let sum: f64 = block.iter().map(|x| (x - max).exp()).sum();
            for c in 0..n {
                let want = (block[c] - max).exp() / sum;
                let g = got[(p * b + row) * n + c] as f64;
                assert!(
                    (g - want).abs() < 1e-6,
                    "p {p} row {row} c {c}: {g} vs {want}"
                );
            }
        }
    }
}

/// Properties of the loss terms (spec §4): entropy 0 for uniform use and log N for collapse;
/// consistency unchanged when the blocks are permuted.
pub fn loss_properties(device: &Device) {
    let s = Tensor::<3>::from_floats([[[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]], device);
    let e = scalar(entropy_loss(s.clone(), s));
    assert!((e - 4f64.ln()).abs() < 1e-5, "{e}");
    let u = Tensor::<3>::full([3, 5, 4], 0.25, device);
    let e = scalar(entropy_loss(u.clone(), u));
    assert!(e.abs() < 1e-6, "{e}");
    let values = |n: usize, shift: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7 + shift) % 11) as f32 / 11.0)
            .collect()
    };
    let s = burn::tensor::activation::softmax(
        Tensor::<3>::from_data(TensorData::new(values(3 * 8 * 5, 1), [3, 8, 5]), device),
        2,
    );
    let t = burn::tensor::activation::softmax(
        Tensor::<3>::from_data(TensorData::new(values(3 * 4 * 5, 4), [3, 4, 5]), device),
        2,
    );
    let a = scalar(consistency_loss(s.clone(), t.clone(), 2));
    let order = Tensor::<1, burn::tensor::Int>::from_ints([2, 0, 1], device);
    let b = scalar(consistency_loss(
        s.select(0, order.clone()),
        t.select(0, order),
        2,
    ));
    assert!((a - b).abs() < 1e-6, "{a} vs {b}");
}
