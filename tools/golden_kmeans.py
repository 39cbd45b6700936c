#!/usr/bin/env python3
"""Golden spherical k-means run for crates/carp-eval/tests/kmeans_golden.rs.

Writes crates/carp-eval/tests/fixtures/kmeans_golden.json: float32-representable train and test
features (4 overlapping blobs, 8 dims), the protocol of spec section 6 for ONE restart in float64
NumPy: standardise with train mean / population std, L2-normalise rows, start from given train
rows as centroids, Lloyd iterations (cosine assignment, ties to the lower index; centroid =
normalised sum; stop when an assignment repeats, at most 100 updates), objective sum(1 - cos),
then assign the test rows with the train statistics. Needs numpy. Run from the repository root:
    python3 tools/golden_kmeans.py
"""
import json

import numpy as np

rng = np.random.default_rng(7)
K, D = 4, 8
centres = rng.normal(size=(K, D)) * 1.2


def make(n):
    labels = rng.integers(0, K, n)
    x = centres[labels] + rng.normal(size=(n, D)) + 0.3
    return x.astype(np.float32).astype(np.float64), labels


train, train_labels = make(150)
test, test_labels = make(40)

mean = train.mean(0)
std = train.std(0)
std[std == 0] = 1.0


def prep(x):
    z = (x - mean) / std
    return z / np.linalg.norm(z, axis=1, keepdims=True)


p = prep(train)
init_rows = [3, 17, 42, 99]
c = p[init_rows].copy()


def assign(points, cents):
    s = points @ cents.T
    return s.argmax(1), s.max(1)


a, best = assign(p, c)
iters = 0
while iters < 100:
    sums = np.zeros_like(c)
    np.add.at(sums, a, p)
    assert (np.bincount(a, minlength=K) > 0).all(), "fixture must not hit the empty-cluster rule"
    c = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    iters += 1
    na, best = assign(p, c)
    same = (na == a).all()
    a = na
    if same:
        break
assert iters > 2, "fixture should need several iterations"
test_assign, _ = assign(prep(test), c)

out = {
    "generator": "tools/golden_kmeans.py",
    "numpy": np.__version__,
    "dim": D,
    "train": train.ravel().tolist(),
    "test": test.ravel().tolist(),
    "init_rows": init_rows,
    "mean": mean.tolist(),
    "std": std.tolist(),
    "iterations": iters,
    "assignments": a.tolist(),
    "objective": float((1 - best).sum()),
    "centroids": c.ravel().tolist(),
    "test_assignments": test_assign.tolist(),
}
path = "crates/carp-eval/tests/fixtures/kmeans_golden.json"
with open(path, "w") as f:
    json.dump(out, f, separators=(",", ":"))
    f.write("\n")
print(f"wrote {path}: {iters} iterations, objective {out['objective']:.6f}")
