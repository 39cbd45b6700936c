#!/usr/bin/env python3
"""Golden values for carp-eval's few-shot SVM, VOC AP, retrieval mAP and whitening (issue 14).

Writes crates/carp-eval/tests/fixtures/protocols_golden.json, read by
crates/carp-eval/tests/protocols_golden.rs.

- svm: scikit-learn LinearSVC (liblinear dual coordinate descent) with the release's settings
  (evaluations/few-shot/eval_svm_voc.py: squared hinge, L2, class_weight {1: 2, -1: 1},
  intercept_scaling 1, tol 1e-4, max_iter 2000) on L2-normalised (norm + 1e-5) float32 rows,
  and the same problem solved to tol 1e-10 (the unique optimum). Decision values of test rows.
- ap: the release's get_precision_recall / calculate_ap, copied below verbatim except for one
  word: np.argsort(preds, kind="stable"), so that tied scores have a defined order (carp's:
  ties ranked by descending index, which is the stable ascending sort reversed). The script
  checks that numpy's default sort gives the same AP on each case where it can tell.
  Cases include ties, VOC 'difficult' (0) labels mapped to -1 as the release does, and an
  all-negative class (the release's 0/0: NaN).
- retrieval: an independent NumPy implementation of revisitop's compute_map (vectorised with
  searchsorted, not a copy of the loop), on random rankings with junk images, positives that
  are also junk, and queries without positives.
- whitening: the release's utils.PCA (whit 0.5, eigenvalues clamped at 1e-5 of the largest)
  trained on the uncentred second-moment matrix of the whitening features, applied to
  mean-centred rows, as eval_copy_detection.py does. Eigenvectors have arbitrary signs and,
  for clamped eigenvalues, an arbitrary basis, so the fixture stores the sign- and
  basis-invariant P^T P and the Gram matrix of the whitened rows.

Usage: python3 tools/golden_eval_protocols.py   (needs numpy and scikit-learn)
"""

import json
import os
import platform

import numpy as np
import sklearn
from sklearn.svm import LinearSVC

SEED = 14
OUT = "crates/carp-eval/tests/fixtures/protocols_golden.json"


# ---- the release's AP (evaluations/few-shot/eval_svm_voc.py), argsort made stable ----
def calculate_ap(rec, prec):
    rec, prec = rec.reshape(rec.size, 1), prec.reshape(prec.size, 1)
    z, o = np.zeros((1, 1)), np.ones((1, 1))
    mrec, mpre = np.vstack((z, rec, o)), np.vstack((z, prec, z))
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    indices = np.where(mrec[1:] != mrec[0:-1])[0] + 1
    ap = 0
    for i in indices:
        ap = ap + (mrec[i] - mrec[i - 1]) * mpre[i]
    return ap


def get_precision_recall(targets, preds, kind="stable"):
    targets = np.array(targets > 0, dtype=np.float32)
    tog = np.hstack((targets[:, np.newaxis].astype(np.float64), preds[:, np.newaxis].astype(np.float64)))
    ind = np.argsort(preds, kind=kind)
    ind = ind[::-1]
    score = np.array([tog[i, 1] for i in ind])
    sortcounts = np.array([tog[i, 0] for i in ind])
    tp = sortcounts
    fp = sortcounts.copy()
    for i in range(sortcounts.shape[0]):
        if sortcounts[i] >= 1:
            fp[i] = 0.0
        elif sortcounts[i] < 1:
            fp[i] = 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        P = np.cumsum(tp) / (np.cumsum(tp) + np.cumsum(fp))
        numinst = np.sum(targets)
        R = np.cumsum(tp) / numinst
        ap = calculate_ap(R, P)
    return P, R, score, float(np.asarray(ap).reshape(-1)[0]) if np.size(ap) else float(ap)


def ap_value(targets, preds):
    return get_precision_recall(np.asarray(targets, dtype=np.float64), np.asarray(preds, dtype=np.float64))[3]


def normalise(x):
    return x / (np.linalg.norm(x, axis=1) + 1e-5)[:, None]


def svm_case(rng):
    dim, n_train, n_test = 10, 48, 40
    centre = rng.normal(size=dim)
    x = rng.normal(size=(n_train + n_test, dim))
    y = np.where(rng.random(n_train + n_test) < 0.3, 1, -1)
    x[y == 1] += 0.8 * centre
    x = normalise(x.astype(np.float32)).astype(np.float32)
    xtr, xte = x[:n_train], x[n_train:]
    ytr, yte = y[:n_train], y[n_train:]
    out = {"dim": dim, "train": xtr.astype(float).ravel().tolist(), "train_labels": ytr.tolist(),
           "test": xte.astype(float).ravel().tolist(), "test_labels": yte.tolist()}
    for name, tol, max_iter in [("release", 1e-4, 2000), ("exact", 1e-10, 100000)]:
        for cost in [0.5, 4.0]:
            clf = LinearSVC(C=cost, class_weight={1: 2, -1: 1}, intercept_scaling=1.0, penalty="l2",
                            loss="squared_hinge", tol=tol, dual=True, max_iter=max_iter, random_state=0)
            clf.fit(xtr.astype(np.float64), ytr)
            dec = clf.decision_function(xte.astype(np.float64))
            out[f"{name}_c{cost}"] = {
                "cost": cost, "tol": tol, "max_iter": max_iter,
                "decision": dec.tolist(), "coef": clf.coef_.ravel().tolist(),
                "intercept": float(clf.intercept_[0]), "n_iter": int(clf.n_iter_),
                "ap": ap_value(yte, dec),
            }
    return out


def ap_cases(rng):
    cases = []
    # Ties between positives and negatives, VOC difficult (0) labels, an all-negative class.
    raw = [
        ([1, -1, 0, 1, -1, -1, 1, 0, -1, 1], [0.9, 0.9, 0.5, 0.3, 0.3, 0.3, 0.1, 0.9, -0.2, 0.3]),
        ([-1, -1, -1, 0, -1], [0.1, 0.2, 0.2, 0.4, -1.0]),
        ([1, 1, 1], [0.0, 0.0, 0.0]),
        ([-1, 1, -1, 1], [2.0, 1.0, 1.0, 1.0]),
    ]
    for targets, scores in raw:
        cases.append((targets, scores))
    for n in [30, 200]:
        targets = rng.choice([-1, -1, -1, 0, 1], size=n)
        scores = np.round(rng.normal(size=n), 1)  # one decimal: many ties
        cases.append((targets.tolist(), scores.tolist()))
    out = []
    for targets, scores in cases:
        t = np.array(targets, dtype=np.float64)
        t[t == 0] = -1  # the release: test_labels[test_labels == 0] = -1
        ap = ap_value(t, np.array(scores))
        default = get_precision_recall(t, np.array(scores, dtype=np.float64), kind="quicksort")[3]
        out.append({"targets": targets, "scores": scores, "ap": None if np.isnan(ap) else ap,
                    "numpy_default_sort_agrees": bool((np.isnan(ap) and np.isnan(default)) or ap == default)})
    return out


def compute_map_reference(ranks, gnd, kappas):
    """Independent vectorised compute_map: ranks [db, nq], gnd list of dicts ok/junk."""
    nq = len(gnd)
    aps = np.full(nq, np.nan)
    prs = np.full((nq, len(kappas)), np.nan)
    for i in range(nq):
        ok = np.asarray(gnd[i]["ok"], dtype=np.int64)
        if ok.size == 0:
            continue
        junk = np.asarray(gnd[i]["junk"], dtype=np.int64)
        order = ranks[:, i]
        is_pos = np.isin(order, ok)
        is_junk = np.isin(order, junk)
        pos = np.flatnonzero(is_pos)
        junk_pos = np.flatnonzero(is_junk)
        # each positive moves up by the number of junk entries strictly before it
        pos = pos - np.searchsorted(junk_pos, pos, side="left")
        j = np.arange(pos.size)
        prec0 = np.where(pos == 0, 1.0, j / np.maximum(pos, 1))
        prec1 = (j + 1) / (pos + 1)
        aps[i] = np.sum((prec0 + prec1) / 2.0) / ok.size
        p1 = pos + 1
        for m, kappa in enumerate(kappas):
            kq = min(p1.max(), kappa)
            prs[i, m] = np.sum(p1 <= kq) / kq
    valid = ~np.isnan(aps)
    return float(np.mean(aps[valid])), aps, np.mean(prs[valid], axis=0), prs


def retrieval_case(rng):
    n_db, n_q = 40, 7
    ranks = np.stack([rng.permutation(n_db) for _ in range(n_q)], axis=1)
    gnd = []
    for q in range(n_q):
        perm = rng.permutation(n_db)
        if q == 3:
            gnd.append({"ok": [], "junk": perm[:3].tolist()})
            continue
        n_ok = int(rng.integers(1, 8))
        n_junk = int(rng.integers(0, 6))
        ok = perm[:n_ok].tolist()
        junk = perm[n_ok:n_ok + n_junk].tolist()
        if q == 5 and n_ok > 1:
            junk.append(ok[0])  # an image both positive and junk
        gnd.append({"ok": ok, "junk": junk})
    kappas = [1, 5, 10]
    m, aps, pr, prs = compute_map_reference(ranks, gnd, kappas)
    nan_free = lambda a: [None if np.isnan(v) else float(v) for v in np.asarray(a).ravel()]
    return {"ranks": ranks.T.tolist(), "gnd": gnd, "kappas": kappas, "map": m, "aps": nan_free(aps),
            "mp_at_k": nan_free(pr), "prs": nan_free(prs)}


def whitening_case(rng):
    n, d = 50, 6
    base = rng.normal(size=(n, d - 1)).astype(np.float32) + 2.0
    # the last column is 0.5 * col0 + col1 (0.5 is exact in float32): rank d - 1, one eigenvalue
    # below the 1e-5 clamp
    x = np.concatenate([base, base[:, :1] * 0.5 + base[:, 1:2]], axis=1).astype(np.float32)
    queries = rng.normal(size=(5, d)).astype(np.float32) + 2.0
    feats = x.astype(np.float64)
    mean = feats.mean(axis=0)
    cov = feats.T @ feats / n
    dvals, v = np.linalg.eigh(cov)
    eps = dvals.max() * 1e-5
    dvals[dvals < eps] = eps
    total = dvals.sum()
    idx = np.argsort(dvals)[::-1][:d]
    dvals, v = dvals[idx], v[:, idx]
    dvt = np.diag(1.0 / dvals ** 0.5) @ v.T
    white = (queries.astype(np.float64) - mean) @ dvt.T
    return {"dim": d, "features": x.astype(float).ravel().tolist(), "queries": queries.astype(float).ravel().tolist(),
            "mean": mean.tolist(), "pt_p": (dvt.T @ dvt).ravel().tolist(), "gram": (white @ white.T).ravel().tolist(),
            "eigenvalues": dvals.tolist(), "energy_kept": float(dvals.sum() / total)}


def main():
    rng = np.random.default_rng(SEED)
    doc = {
        "_header": {
            "script": "tools/golden_eval_protocols.py",
            "seed": SEED,
            "numpy": np.__version__,
            "scikit_learn": sklearn.__version__,
            "python": platform.python_version(),
        },
        "svm": svm_case(rng),
        "ap": ap_cases(rng),
        "retrieval": retrieval_case(rng),
        "whitening": whitening_case(rng),
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")
    for case in doc["ap"]:
        print("ap", case["ap"], "numpy default sort agrees:", case["numpy_default_sort_agrees"])
    for k, v in doc["svm"].items():
        if isinstance(v, dict):
            print(k, "n_iter", v["n_iter"], "ap", v["ap"])


if __name__ == "__main__":
    main()
