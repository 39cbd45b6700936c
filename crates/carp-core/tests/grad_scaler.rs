//! `GradScaler` against PyTorch's (issue 12).
//!
//! Fixture: `tests/fixtures/grad_scaler_golden.json`, written by `tools/golden_grad_scaler.py`
//! (torch's own `GradScaler` on CPU driven with chosen overflow steps). Comparisons are
//! exact, bit for bit: the scale is an f32 that PyTorch multiplies by f64 factors and rounds.

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use carp_core::scaler::GradScaler;
use serde_json::Value;

fn fixture() -> Value {
    let path = format!(
        "{}/tests/fixtures/grad_scaler_golden.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect("valid JSON")
}

fn f32_of(v: &Value) -> f32 {
    f32::from_bits(v.as_u64().expect("f32 bits") as u32)
}

/// The scale and growth counter after every update of three runs (the defaults over 4500
/// steps with overflows while settling and later; a growth that would overflow f32; growth
/// and backoff factors that round), and the final state with PyTorch's `state_dict` values.
#[test]
fn update_matches_pytorch_step_by_step() {
    let fx = fixture();
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let f = |k: &str| case[k].as_f64().unwrap();
        let mut scaler = GradScaler::new(
            f("init_scale") as f32,
            f("growth_factor"),
            f("backoff_factor"),
            f("growth_interval") as u32,
        );
        let overflow: Vec<u64> = case["overflow_steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let mut expected = Vec::new();
        for run in case["trajectory_rle"].as_array().unwrap() {
            let (scale, tracker, n) = (
                f32_of(&run[0]),
                run[1].as_u64().unwrap(),
                run[2].as_u64().unwrap(),
            );
            expected.extend((0..n).map(|i| (scale, (tracker + i) as u32)));
        }
        let steps = case["steps"].as_u64().unwrap();
        assert_eq!(expected.len() as u64, steps, "{name}");
        for (step, want) in (0..steps).zip(&expected) {
            scaler.update(overflow.contains(&step));
            assert_eq!(
                (scaler.scale.to_bits(), scaler.growth_tracker),
                (want.0.to_bits(), want.1),
                "{name}: step {step}: scale {} vs {}",
                scaler.scale,
                want.0
            );
        }
        let state = &case["state_dict"];
        let ours = serde_json::to_value(scaler).unwrap();
        for key in [
            "scale",
            "growth_factor",
            "backoff_factor",
            "growth_interval",
            "_growth_tracker",
        ] {
            assert_eq!(
                ours[key].as_f64().unwrap(),
                state[key].as_f64().unwrap(),
                "{name}: state_dict[{key}]"
            );
        }
    }
}

#[derive(Module, Debug)]
struct One {
    w: Param<Tensor<1>>,
}

/// Unscaled gradients bit for bit and the overflow flag: finite values, a scale that is not
/// a power of two, an inf, a NaN, and a finite gradient that only overflows when multiplied
/// by 1/S > 1 (PyTorch checks the scaled values, so that is no overflow).
#[test]
fn unscale_matches_pytorch_bit_for_bit() {
    let fx = fixture();
    let device = Device::flex();
    for case in fx["unscale"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let grads: Vec<f32> = case["grads_bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(f32_of)
            .collect();
        let want: Vec<f32> = case["unscaled_bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(f32_of)
            .collect();
        let n = grads.len();
        let module = One {
            w: Param::from_tensor(Tensor::zeros([n], &device)),
        };
        let mut gp = GradientsParams::new();
        gp.register(
            module.w.id,
            Tensor::<1>::from_data(TensorData::new(grads, [n]), &device),
        );
        let scaler = GradScaler {
            scale: case["scale"].as_f64().unwrap() as f32,
            ..GradScaler::default()
        };
        let out = scaler.unscale(&module, gp);
        let got: Vec<f32> = out
            .grads
            .get::<1>(module.w.id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{name}: {got:?} vs {want:?}");
        assert_eq!(
            out.overflow.is_some(),
            case["found_inf"].as_bool().unwrap(),
            "{name}"
        );
    }
}
