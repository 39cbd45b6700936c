#!/usr/bin/env python3
"""Golden clustering metrics from scikit-learn for crates/carp-eval/tests/cluster_metrics_golden.rs.

Writes crates/carp-eval/tests/fixtures/cluster_metrics_golden.json: label-vector pairs and
sklearn's NMI (arithmetic), adjusted NMI (arithmetic), ARI, Fowlkes-Mallows, homogeneity,
completeness and V-measure. Needs numpy and scikit-learn. Run from the repository root:
    python3 tools/golden_cluster_metrics.py
"""
import json

import numpy as np
import sklearn
from sklearn import metrics as M

rng = np.random.default_rng(20261127)


def case(name, t, p):
    t = [int(x) for x in t]
    p = [int(x) for x in p]
    h, c, v = M.homogeneity_completeness_v_measure(t, p)
    return {
        "name": name,
        "truth": t,
        "pred": p,
        "nmi": M.normalized_mutual_info_score(t, p),
        "ami": M.adjusted_mutual_info_score(t, p),
        "ari": M.adjusted_rand_score(t, p),
        "fmi": M.fowlkes_mallows_score(t, p),
        "homogeneity": h,
        "completeness": c,
        "v_measure": v,
    }


cases = []
# Random labels: 5 classes vs 7 clusters, near independence (AMI near 0, can be negative).
cases.append(case("random_5x7", rng.integers(0, 5, 200), rng.integers(0, 7, 200)))
# Correlated: predictions equal the truth 70 % of the time, else random.
t = rng.integers(0, 10, 3000)
p = np.where(rng.random(3000) < 0.7, t, rng.integers(0, 10, 3000))
cases.append(case("noisy_10x10_n3000", t, p))
# Perfect match up to a renaming of label values (non-contiguous values).
t = rng.integers(0, 4, 50)
cases.append(case("perfect_renamed", t, np.array([17, 3, 99, 42])[t]))
# A class absent from the predictions: 4 classes, predictions only use 3 cluster ids.
t = np.repeat([0, 1, 2, 3], 12)
p = np.array([0, 1, 2, 2])[t].copy()
p[::5] = rng.integers(0, 3, len(p[::5]))
cases.append(case("class_absent_from_pred", t, p))
# Everything in one cluster.
cases.append(case("single_cluster", rng.integers(0, 3, 40), np.zeros(40, int)))
# One class, several clusters.
cases.append(case("single_class", np.full(30, 7), rng.integers(0, 4, 30)))
# One class and one cluster: a perfect (trivial) match.
cases.append(case("single_both", np.full(9, 2), np.full(9, 5)))
# Every row its own cluster.
cases.append(case("all_singletons", rng.integers(0, 5, 60), np.arange(60)))
# Ties: equal-size classes and clusters, a symmetric split (each class halved across two clusters).
t = np.repeat([0, 1, 2, 3], 6)
p = np.concatenate([np.repeat([c, (c + 1) % 4], 3) for c in range(4)])
cases.append(case("ties_symmetric_split", t, p))
# Two rows.
cases.append(case("two_rows_split", [0, 1], [0, 0]))
# Many clusters vs classes (like k-means with k = 100 on 10 classes).
t = rng.integers(0, 10, 2000)
p = (t * 10 + rng.integers(0, 10, 2000)) % 100
p = np.where(rng.random(2000) < 0.2, rng.integers(0, 100, 2000), p)
cases.append(case("k100_on_10_classes", t, p))

out = {
    "generator": "tools/golden_cluster_metrics.py",
    "sklearn": sklearn.__version__,
    "numpy": np.__version__,
    "cases": cases,
}
path = "crates/carp-eval/tests/fixtures/cluster_metrics_golden.json"
with open(path, "w") as f:
    json.dump(out, f, separators=(",", ":"))
    f.write("\n")
print(f"wrote {path}: {len(cases)} cases")
