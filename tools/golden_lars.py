#!/usr/bin/env python3
"""Independent float64 reference for the LARS update (spec: shared/spec/carp-method.md, section 5).

Writes crates/carp-core/tests/fixtures/lars_golden.json (path relative to the repository root).
Run from the repository root:  python3 tools/golden_lars.py
Requires only numpy. CI never runs this script; the JSON output is committed.

Per tensor w with gradient g, each step (lr, wd given per step):
    if w.ndim > 1:  d = g + wd * w
                    r = eta * ||w|| / ||d||  if ||w|| > 0 and ||d|| > 0 else 1
                    d = r * d
    else:           d = g            (no weight decay, no trust ratio)
    mu = momentum * mu + d           (mu starts at 0)
    w  = w - lr * mu
Norms are Frobenius (all entries). Initial weights and gradients are float32-representable.
"""
import json
import os
import platform
import sys

import numpy as np

SEED = 20231020
MOMENTUM = 0.9
ETA = 0.001
LR = [0.5, 0.3, 0.1]
WD = [1e-6, 1e-4, 1e-2]
OUT = os.path.join("crates", "carp-core", "tests", "fixtures", "lars_golden.json")


def f32(x):
    return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)


def lars_step(w, g, mu, lr, wd):
    """Returns (new_w, new_mu, trust_ratio) in float64."""
    if w.ndim > 1:
        d = g + wd * w
        wn = float(np.linalg.norm(w))
        dn = float(np.linalg.norm(d))
        r = ETA * wn / dn if (wn > 0.0 and dn > 0.0) else 1.0
        d = r * d
    else:
        d = g
        r = 1.0
    mu = MOMENTUM * mu + d
    w = w - lr * mu
    return w, mu, r


def run_case(rng, name, zero_weight):
    tensors = {
        "weight": f32(rng.standard_normal((3, 4))),
        "bias": f32(rng.standard_normal((4,))),
    }
    if zero_weight:
        tensors["weight"] = np.zeros((3, 4))
    grads = {k: [f32(rng.standard_normal(v.shape)) for _ in LR] for k, v in tensors.items()}
    params = []
    for key, w0 in tensors.items():
        w, mu = w0.copy(), np.zeros_like(w0)
        ws, mus, rs = [], [], []
        for step, (lr, wd) in enumerate(zip(LR, WD)):
            w, mu, r = lars_step(w, grads[key][step], mu, lr, wd)
            ws.append(w.ravel().tolist())
            mus.append(mu.ravel().tolist())
            rs.append(r)
        if zero_weight and key == "weight":
            assert rs[0] == 1.0 and rs[1] != 1.0
            assert np.array_equal(np.asarray(ws[0]), -LR[0] * grads[key][0].ravel())
        params.append({
            "name": key,
            "shape": list(w0.shape),
            "w0": w0.ravel().tolist(),
            "grads": [g.ravel().tolist() for g in grads[key]],
            "w": ws,
            "mu": mus,
            "trust_ratio": rs,
        })
        print(f"{name:>18} {key:>6}: trust ratios {rs}")
    return {
        "name": name,
        "momentum": MOMENTUM,
        "eta": ETA,
        "lr": LR,
        "wd": WD,
        "steps": len(LR),
        "params": params,
    }


def dump(obj, ind=0):
    pad = " " * ind
    if isinstance(obj, dict):
        items = [f'{pad} {json.dumps(k)}: {dump(v, ind + 1).lstrip()}' for k, v in obj.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and isinstance(obj[0], (dict, list)):
        inner = ",\n".join(dump(v, ind + 1) for v in obj)
        return pad + "[\n" + inner + "\n" + pad + "]"
    return pad + json.dumps(obj, separators=(",", ":"), allow_nan=False)


def main():
    rng = np.random.default_rng(SEED)
    cases = [run_case(rng, "random_init", zero_weight=False),
             run_case(rng, "zero_weight_init", zero_weight=True)]
    doc = {
        "generator": "tools/golden_lars.py",
        "spec": "shared/spec/carp-method.md section 5",
        "seed": SEED,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "layout": "tensors are flat row-major; grads/w/mu/trust_ratio are indexed by step; "
                  "w[s] and mu[s] are the values after step s; mu starts at 0",
        "cases": cases,
    }
    path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", OUT))
    with open(path, "w") as f:
        f.write(dump(doc) + "\n")
    with open(path) as f:
        assert json.load(f)["cases"] == cases
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    sys.exit(main())
