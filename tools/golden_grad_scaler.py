#!/usr/bin/env python3
"""PyTorch's GradScaler as the reference for carp's dynamic loss scaling (issue 12).

Writes crates/carp-core/tests/fixtures/grad_scaler_golden.json (path relative to the
repository root). Run from the repository root:  python3 tools/golden_grad_scaler.py
Requires torch (CPU build is enough: torch.amp.GradScaler("cpu") runs the same
_amp_update_scale_ / _amp_foreach_non_finite_check_and_unscale_ arithmetic as CUDA).
CI never runs this script; the JSON output is committed.

Each case drives a real GradScaler with an SGD optimiser (lr 0) over one parameter:
per step, scale(loss) (so the scale is initialised), set the parameter's gradient to a
finite value or to inf/nan (the step's `found_inf`), step() and update(). It records the
scale (f32) and the growth tracker after every update (`trajectory`, run-length encoded
as [scale, tracker, repeat] for the long default case) and the state_dict at the end.
The `unscale` cases record unscale_() on given gradients: the unscaled values as f32
bit patterns and whether an inf/nan was found.
"""
import json
import os
import platform
import struct

import torch

OUT = os.path.join("crates", "carp-core", "tests", "fixtures", "grad_scaler_golden.json")


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", float(x)))[0]


def run_case(name, init_scale, growth, backoff, interval, steps, overflow):
    """`overflow`: set of step indices whose gradients hold an inf (nan on odd ones)."""
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([p], lr=0.0)
    scaler = torch.amp.GradScaler(
        "cpu",
        init_scale=init_scale,
        growth_factor=growth,
        backoff_factor=backoff,
        growth_interval=interval,
    )
    traj = []
    skipped = []
    for s in range(steps):
        scaler.scale(torch.tensor(1.0))
        g = torch.tensor([1.0, -2.0, 0.5])
        if s in overflow:
            g[1] = float("nan") if s % 2 else float("inf")
        p.grad = g
        before = p.detach().clone()
        # SGD with lr 0 leaves p unchanged either way; `skipped` reads the scaler's own record
        scaler.step(opt)
        found = sum(v.item() for v in scaler._per_optimizer_states[id(opt)]["found_inf_per_device"].values())
        skipped.append(found > 0)
        scaler.update()
        assert torch.equal(before, p.detach())
        traj.append([scaler.get_scale(), int(scaler._get_growth_tracker()) if hasattr(scaler, "_get_growth_tracker") else int(scaler._growth_tracker.item())])
    # run-length encode [scale, tracker] pairs whose tracker grows by one per step
    rle = []
    for scale, tracker in traj:
        if rle and rle[-1][0] == scale and rle[-1][1] + rle[-1][2] == tracker:
            rle[-1][2] += 1
        else:
            rle.append([scale, tracker, 1])
    state = scaler.state_dict()
    assert [s for s in range(steps) if skipped[s]] == sorted(overflow), name
    return {
        "name": name,
        "init_scale": init_scale,
        "growth_factor": growth,
        "backoff_factor": backoff,
        "growth_interval": interval,
        "steps": steps,
        "overflow_steps": sorted(overflow),
        "trajectory_rle": [[f32_bits(s), t, n] for s, t, n in rle],
        "trajectory_rle_layout": "[f32 bits of the scale after the update, growth tracker after the update, number of consecutive steps with tracker rising by 1 from there]",
        "state_dict": {
            "scale": state["scale"],
            "growth_factor": state["growth_factor"],
            "backoff_factor": state["backoff_factor"],
            "growth_interval": state["growth_interval"],
            "_growth_tracker": state["_growth_tracker"],
        },
    }


def unscale_case(name, scale, grads):
    p = torch.nn.Parameter(torch.zeros(len(grads)))
    opt = torch.optim.SGD([p], lr=0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=scale)
    scaler.scale(torch.tensor(1.0))
    p.grad = torch.tensor(grads, dtype=torch.float32)
    scaler.unscale_(opt)
    found = sum(v.item() for v in scaler._per_optimizer_states[id(opt)]["found_inf_per_device"].values())
    return {
        "name": name,
        "scale": scale,
        "grads_bits": [f32_bits(g) for g in torch.tensor(grads, dtype=torch.float32).tolist()],
        "unscaled_bits": [f32_bits(g) for g in p.grad.tolist()],
        "found_inf": bool(found > 0),
    }


def main():
    cases = [
        # The defaults over 4500 updates: early overflows while the scale settles, growth
        # after 2000 clean updates, an overflow resetting the tracker.
        run_case("defaults", 65536.0, 2.0, 0.5, 2000, 4500, {0, 1, 2, 5, 2100, 4300}),
        # Growth that would overflow f32 (2^127 * 2 = inf) keeps the scale, resets the tracker.
        run_case("growth_to_inf", 2.0**126, 2.0, 0.5, 3, 16, {7}),
        # Factors that are not powers of two: the products round in f32.
        run_case("odd_factors", 3.0, 1.7, 0.3, 2, 24, {3, 4, 11, 17}),
    ]
    unscale = [
        unscale_case("finite", 65536.0, [3.0, -1e-3, 6.5e4, 1e-30, 0.0, 123456.789]),
        unscale_case("odd_scale", 3.0, [1.0, 2.0, -7.0, 1e38]),
        unscale_case("with_inf", 1024.0, [1.0, float("inf"), 2.0]),
        unscale_case("with_nan", 1024.0, [float("nan"), 1.0]),
        # scale below 1: unscaling multiplies by more than 1 and can overflow f32
        unscale_case("overflow_on_unscale", 0.25, [1e38, 1.0]),
    ]
    doc = {
        "generator": "tools/golden_grad_scaler.py",
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "cases": cases,
        "unscale": unscale,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
