#!/usr/bin/env python3
"""Golden values for carp-eval's weighted k-NN (spec §6, DINO's eval_knn.knn_classifier).

Writes crates/carp-eval/tests/fixtures/knn_golden.json, read by
crates/carp-eval/tests/knn_golden.rs.

Definition (the same as carp_eval::weighted_knn):
  - L2-normalise train and test rows (rows with zero norm stay zero);
  - s_ij = <q_i, t_j>; the k nearest train rows are the k largest s_ij, equal similarities
    ordered by ascending train index;
  - score_i(c) = sum over those neighbours with label c of exp(s_ij / T), T = 0.07;
  - classes ranked by descending score, equal scores by ascending class index;
  - top-1: the true label ranks first; top-5: it ranks within the first min(5, k, C)
    (DINO's correct.narrow(1, 0, min(5, k)), never wider than C).

The reference computes in float64 from the float32 inputs the Rust side reads. The Rust side
computes similarities in float32, so the script asserts that nothing is decided by a margin
that float32 rounding could flip: the similarity gap at each k boundary and the gap between the
true label's score and every other score are either exactly zero (a real tie, from duplicated
rows or zero vectors, which both sides see exactly) or comfortably large.

Usage: python3 tools/golden_knn.py   (needs numpy)
"""

import json
import os
import platform

import numpy as np

SEED = 20240607
TRAIN_ROWS = 60
TEST_ROWS = 25
DIM = 8
NUM_CLASSES = 7
KS = [1, 5, 10, 20]
TEMPERATURE = 0.07  # read as f32 by the Rust side; the reference uses float32(0.07)
SIM_MARGIN = 1e-5
SCORE_MARGIN = 1e-4  # relative

OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "crates", "carp-eval", "tests", "fixtures", "knn_golden.json",
)


def make_data(rng):
    centres = rng.normal(size=(NUM_CLASSES, DIM))
    train_labels = np.arange(TRAIN_ROWS) % NUM_CLASSES
    rng.shuffle(train_labels)
    test_labels = rng.integers(0, NUM_CLASSES, size=TEST_ROWS)
    train = centres[train_labels] + 1.2 * rng.normal(size=(TRAIN_ROWS, DIM))
    test = centres[test_labels] + 1.2 * rng.normal(size=(TEST_ROWS, DIM))
    # Duplicated train rows with different labels: exact similarity ties.
    for src, dst in [(3, 17), (3, 41), (8, 30)]:
        train[dst] = train[src]
        if train_labels[dst] == train_labels[src]:
            train_labels[dst] = (train_labels[src] + 1) % NUM_CLASSES
    # A test row equal to a duplicated train row (tie at the very top).
    test[5] = train[3] * 2.0
    # Zero vectors: one train row, one test row (all its similarities tie at 0).
    train[50] = 0.0
    test[12] = 0.0
    # Class NUM_CLASSES - 1 never appears in the train labels.
    train_labels[train_labels == NUM_CLASSES - 1] = 0
    test_labels[[2, 9]] = NUM_CLASSES - 1
    # Stored as integers in thousandths so the JSON is short; both sides form the float32
    # value as float32(milli) / float32(1000), one correctly rounded IEEE division.
    train_milli = np.round(train * 1000.0).astype(np.int64)
    test_milli = np.round(test * 1000.0).astype(np.int64)
    return train_milli, train_labels, test_milli, test_labels


def from_milli(milli):
    return milli.astype(np.float32) / np.float32(1000.0)


def normalise(x):
    x = x.astype(np.float64)
    norm = np.sqrt((x * x).sum(axis=1, keepdims=True))
    return np.where(norm > 0, x / np.where(norm > 0, norm, 1.0), 0.0)


def knn_reference(train, train_labels, test, test_labels, reverse_ties=False):
    """Hit counts and percentages per k; reverse_ties flips both tie rules (a control)."""
    tie = -1 if reverse_ties else 1
    t = float(np.float32(TEMPERATURE))
    train_n, test_n = normalise(train), normalise(test)
    hits = {k: [0, 0] for k in KS}
    for i in range(test.shape[0]):
        sims = [float(np.dot(test_n[i], train_n[j])) for j in range(train.shape[0])]
        order = sorted(range(len(sims)), key=lambda j: (-sims[j], tie * j))
        for k in KS:
            if k < len(sims):
                a, b = sims[order[k - 1]], sims[order[k]]
                assert a == b or a - b > SIM_MARGIN, f"row {i} k {k}: sims {a} {b} too close"
            scores = [0.0] * NUM_CLASSES
            for j in order[:k]:
                scores[train_labels[j]] += np.exp(sims[j] / t)
            label = test_labels[i]
            own = scores[label]
            for c, s in enumerate(scores):
                if c != label and s != own:
                    gap = abs(s - own) / max(abs(s), abs(own))
                    assert gap > SCORE_MARGIN, f"row {i} k {k}: class {c} score too close"
            rank = sum(1 for c, s in enumerate(scores) if s > own or (s == own and tie * c < tie * label))
            hits[k][0] += rank == 0
            hits[k][1] += rank < min(5, k, NUM_CLASSES)
    n = test.shape[0]
    return [
        {
            "k": k,
            "top1_hits": hits[k][0],
            "top5_hits": hits[k][1],
            "top1": hits[k][0] * 100.0 / n,
            "top5": hits[k][1] * 100.0 / n,
        }
        for k in KS
    ]


def main():
    rng = np.random.default_rng(SEED)
    train_milli, train_labels, test_milli, test_labels = make_data(rng)
    train, test = from_milli(train_milli), from_milli(test_milli)
    assert train.dtype == np.float32 and test.dtype == np.float32
    expected = knn_reference(train, train_labels, test, test_labels)
    # The fixture must exercise the tie rules: flipping them has to change some count.
    control = knn_reference(train, train_labels, test, test_labels, reverse_ties=True)
    assert control != expected, "fixture does not exercise the tie rules"
    fixture = {
        "_header": {
            "script": "tools/golden_knn.py",
            "seed": SEED,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "values": "features are float32(milli) / float32(1000)",
            "definition": "weighted k-NN, spec §6; ties: similarity by train index, "
            "score by class index; top-5 window min(5, k, C)",
        },
        "num_classes": NUM_CLASSES,
        "temperature": TEMPERATURE,
        "ks": KS,
        "train": {"rows": TRAIN_ROWS, "dim": DIM, "milli": [int(v) for v in train_milli.ravel()]},
        "train_labels": [int(v) for v in train_labels],
        "test": {"rows": TEST_ROWS, "dim": DIM, "milli": [int(v) for v in test_milli.ravel()]},
        "test_labels": [int(v) for v in test_labels],
        "expected": expected,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    for e in expected:
        print(f"k={e['k']:3d} top1={e['top1']:.4f} top5={e['top5']:.4f}")
    print(f"wrote {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
