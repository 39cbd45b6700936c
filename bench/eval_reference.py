#!/usr/bin/env python3
"""Features and reference timings for bench/eval.sh.

  eval_reference.py gen DIR   writes train/test features (float32) and labels (int64) as raw
                              little-endian files plus shape.json (clustered Gaussian data:
                              10 class centres N(0, 0.25^2) in 512 dims, unit noise)
  eval_reference.py run DIR   times on those files, with --threads threads:
    - weighted k-NN (spec section 6) in PyTorch: chunked similarity matmul, one topk at
      the largest k, exp(sim / 0.07)-weighted one-hot votes, top-1/top-5 for k in
      {10, 20, 100, 200} from the sorted prefix (DINO's knn_classifier, fused over k);
    - spherical k-means in faiss-cpu (faiss.Kmeans, spherical=True, niter 100, nredo 10,
      max_points_per_centroid large enough that faiss uses every point) on the same
      standardised, L2-normalised train features, then test assignment.
    prints one JSON line.
"""
import argparse
import json
import os
import time

import numpy as np


def gen(d, n_train, n_test, dim, classes, seed):
    rng = np.random.default_rng(seed)
    centres = (0.25 * rng.normal(size=(classes, dim))).astype(np.float32)
    for name, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, classes, n)
        x = centres[y] + rng.normal(size=(n, dim)).astype(np.float32)
        x.astype("<f4").tofile(os.path.join(d, f"{name}.f32"))
        y.astype("<i8").tofile(os.path.join(d, f"{name}_labels.i64"))
    with open(os.path.join(d, "shape.json"), "w") as f:
        json.dump({"n_train": n_train, "n_test": n_test, "dim": dim, "classes": classes}, f)


def load(d):
    s = json.load(open(os.path.join(d, "shape.json")))
    tr = np.fromfile(os.path.join(d, "train.f32"), "<f4").reshape(s["n_train"], s["dim"])
    te = np.fromfile(os.path.join(d, "test.f32"), "<f4").reshape(s["n_test"], s["dim"])
    ytr = np.fromfile(os.path.join(d, "train_labels.i64"), "<i8")
    yte = np.fromfile(os.path.join(d, "test_labels.i64"), "<i8")
    return s, tr, te, ytr, yte


def torch_knn(tr, te, ytr, yte, classes, ks=(10, 20, 100, 200), t=0.07, chunk=1024):
    import torch

    tr = torch.nn.functional.normalize(torch.from_numpy(tr), dim=1)
    te = torch.nn.functional.normalize(torch.from_numpy(te), dim=1)
    ytr = torch.from_numpy(ytr)
    yte = torch.from_numpy(yte)
    kmax = max(ks)
    hits = {k: [0, 0] for k in ks}
    with torch.no_grad():
        for s in range(0, te.shape[0], chunk):
            q = te[s : s + chunk]
            sim = q @ tr.T
            dist, idx = sim.topk(kmax, dim=1, largest=True, sorted=True)
            cand = ytr[idx]
            w = (dist / t).exp()
            onehot = torch.zeros(q.shape[0], kmax, classes).scatter_(2, cand.unsqueeze(2), 1)
            votes = (onehot * w.unsqueeze(2)).cumsum(1)
            tgt = yte[s : s + chunk].unsqueeze(1)
            for k in ks:
                pred = votes[:, k - 1].argsort(1, descending=True)
                correct = pred.eq(tgt)
                hits[k][0] += correct[:, :1].sum().item()
                hits[k][1] += correct[:, : min(5, k)].sum().item()
    n = te.shape[0]
    return {k: (100 * a / n, 100 * b / n) for k, (a, b) in hits.items()}


def faiss_kmeans(tr, te, k, seed):
    import faiss

    mean, std = tr.mean(0), tr.std(0)
    std[std == 0] = 1
    p = (tr - mean) / std
    p = np.ascontiguousarray(p / np.linalg.norm(p, axis=1, keepdims=True), dtype=np.float32)
    q = (te - mean) / std
    q = np.ascontiguousarray(q / np.linalg.norm(q, axis=1, keepdims=True), dtype=np.float32)
    km = faiss.Kmeans(
        p.shape[1], k, niter=100, nredo=10, spherical=True, seed=seed,
        max_points_per_centroid=p.shape[0], verbose=False,
    )
    km.train(p)
    _, test_assign = km.index.search(q, 1)
    _, train_assign = km.index.search(p, 1)
    obj = float((1 - (p * km.centroids[train_assign[:, 0]]).sum(1)).sum())
    return obj, test_assign[:, 0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["gen", "run"])
    ap.add_argument("dir")
    ap.add_argument("--n-train", type=int, default=50000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kmeans-ks", default="10,100")
    a = ap.parse_args()
    if a.mode == "gen":
        gen(a.dir, a.n_train, a.n_test, a.dim, a.classes, 0)
        return
    import faiss
    import torch
    from sklearn.metrics import normalized_mutual_info_score

    torch.set_num_threads(a.threads)
    faiss.omp_set_num_threads(a.threads)
    s, tr, te, ytr, yte = load(a.dir)
    out = {"torch": torch.__version__, "faiss": faiss.__version__, "threads": a.threads}
    t0 = time.perf_counter()
    acc = torch_knn(tr, te, ytr, yte, s["classes"])
    out["knn_s"] = time.perf_counter() - t0
    out["knn"] = {str(k): v for k, v in acc.items()}
    out["kmeans"] = {}
    for k in [int(x) for x in a.kmeans_ks.split(",")]:
        t0 = time.perf_counter()
        obj, test_assign = faiss_kmeans(tr, te, k, 1234)
        dt = time.perf_counter() - t0
        out["kmeans"][str(k)] = {
            "s": dt, "objective": obj, "test_nmi": normalized_mutual_info_score(yte, test_assign)
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
