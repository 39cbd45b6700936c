#!/usr/bin/env python3
"""Independent float64 reference for the CARP loss (spec: shared/spec/carp-method.md, sections 3 and 4).

Writes crates/carp-core/tests/fixtures/loss_golden.json (path relative to the repository root).
Run from the repository root:  python3 tools/golden_loss.py
Requires only numpy. CI never runs this script; the JSON output is committed.

For each case it stores f32-representable logits (student and teacher views), the random
permutation of prototype indices, the expected consistency / entropy / total loss in float64,
and d total / d student_logits, computed analytically and checked by central finite differences.

Floats are written with Python's repr of the float64 value. Inputs are exactly float32 values,
so parsing the text either as f32 or as f64 gives the exact input value.
"""
import json
import math
import os
import platform
import sys

import numpy as np

SEED = 20231019
EPS = float(np.finfo(np.float32).eps)  # 1.1920928955078125e-07
FD_H = 1e-6
FD_TOL = 1e-7
OUT = os.path.join("crates", "carp-core", "tests", "fixtures", "loss_golden.json")


# ---------------------------------------------------------------------------
# Forward pass (spec section 3 and 4), float64
# ---------------------------------------------------------------------------

def block_index(perm, n):
    """First P*N entries of the permutation, cut into P blocks of N: shape [P, N]."""
    k = len(perm)
    p = k // n
    return np.asarray(perm[: p * n], dtype=np.int64).reshape(p, n)


def block_softmax(z, idx):
    """z: [B, K] logits; idx: [P, N]. Returns probs [P, B, N],
    probs[k, n, c] = softmax over c of z[n, idx[k, c]] (no temperature)."""
    a = z[:, idx]                      # [B, P, N]
    a = np.transpose(a, (1, 0, 2))     # [P, B, N]
    a = a - a.max(axis=-1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=-1, keepdims=True)


def pairs(num_student):
    """(i, j) with i a student view, j in {0, 1} a teacher (global) view, i != j."""
    return [(i, j) for i in range(num_student) for j in range(2) if i != j]


def loss_and_grad(student, teacher, perm, n, want_grad=True):
    """student: list of S arrays [B, K]; teacher: list of 2 arrays [B, K].
    Returns (consistency, entropy, total, grads list of S arrays [B, K] or None, info)."""
    idx = block_index(perm, n)
    P = idx.shape[0]
    B = student[0].shape[0]
    S = len(student)
    p = [block_softmax(z, idx) for z in student]   # student probs, each [P, B, N]
    q = [block_softmax(z, idx) for z in teacher]   # teacher probs (constants)

    # ---- consistency ----
    prs = pairs(S)
    gp = [np.zeros_like(pi) for pi in p]           # d total / d p_i
    cons = 0.0
    n_clip_lo = n_clip_hi = 0
    min_margin = math.inf  # min |log(distance ratio)| to either clamp boundary, over all s
    for (i, j) in prs:
        s = np.sum(p[i] * q[j], axis=-1)           # [P, B]
        lo = s < EPS
        hi = s > 1.0 - EPS
        n_clip_lo += int(lo.sum())
        n_clip_hi += int(hi.sum())
        min_margin = min(min_margin,
                         float(np.min(np.abs(np.log(s / EPS)))),
                         float(np.min(np.abs(np.log(np.maximum(1.0 - s, 1e-300) / EPS)))))
        sc = np.clip(s, EPS, 1.0 - EPS)
        cons += -np.mean(np.log(sc))
        # d/dp_i of -(1/(P*B)) sum log(sc): clamp passes gradient only where it did not clip
        pass_mask = (~lo) & (~hi)
        coef = np.where(pass_mask, -1.0 / (P * B) / sc, 0.0) / len(prs)   # [P, B]
        gp[i] += coef[..., None] * q[j]
    cons /= len(prs)

    # ---- entropy ----
    allp = np.concatenate(p + q, axis=1)            # [P, (S + 2) * B, N]
    m = allp.mean(axis=1)                           # [P, N]
    m_lo = m < EPS
    m_hi = m > 1.0 - EPS
    mc = np.clip(m, EPS, 1.0 - EPS)
    ent = float(np.mean(math.log(n) + np.sum(m * np.log(mc), axis=-1)))
    # d/dm of (1/P) * sum_c m log(clamp(m)) = (1/P) * (log(clamp(m)) + m/clamp(m) * [not clipped])
    dm = (np.log(mc) + np.where(m_lo | m_hi, 0.0, m / mc)) / P          # [P, N]
    # m = mean over (S + 2) * B rows; only the student rows carry gradient
    for i in range(S):
        gp[i] += dm[:, None, :] / ((S + 2) * B)

    total = cons + ent
    info = {
        "clipped_consistency_low": n_clip_lo,
        "clipped_consistency_high": n_clip_hi,
        "clipped_entropy": int(m_lo.sum() + m_hi.sum()),
        "min_clamp_margin": min_margin,
    }
    if not want_grad:
        return cons, ent, total, None, info

    # ---- backprop through block softmax and the gather ----
    grads = []
    for i in range(S):
        ga = p[i] * (gp[i] - np.sum(p[i] * gp[i], axis=-1, keepdims=True))   # [P, B, N]
        gz = np.zeros_like(student[i])
        gz[:, idx] = np.transpose(ga, (1, 0, 2))   # idx entries are distinct
        grads.append(gz)                            # prototypes outside idx stay 0
    return cons, ent, total, grads, info


def finite_difference(student, teacher, perm, n):
    out = []
    for v in range(len(student)):
        g = np.zeros_like(student[v])
        for b in range(student[v].shape[0]):
            for c in range(student[v].shape[1]):
                sp = [z.copy() for z in student]
                sm = [z.copy() for z in student]
                sp[v][b, c] += FD_H
                sm[v][b, c] -= FD_H
                fp = loss_and_grad(sp, teacher, perm, n, want_grad=False)[2]
                fm = loss_and_grad(sm, teacher, perm, n, want_grad=False)[2]
                g[b, c] = (fp - fm) / (2.0 * FD_H)
        out.append(g)
    return out


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

def f32(x):
    """Round to float32 and back: every stored input is exactly an f32 value."""
    return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)


def random_case(rng, name, B, K, N, S, std):
    perm = rng.permutation(K)
    student = [f32(rng.standard_normal((B, K)) * std) for _ in range(S)]
    teacher = [f32(rng.standard_normal((B, K)) * std) for _ in range(2)]
    return name, B, K, N, perm, student, teacher


def collapsed_case(rng, name, B, K, N, S):
    """Every row of a view is the same logit vector (collapsed across the batch); all views
    share one non-uniform base vector plus a tiny per-view offset, so m_k is far from uniform."""
    perm = rng.permutation(K)
    base = rng.standard_normal(K) * 2.0

    def view():
        row = base + rng.standard_normal(K) * 0.05
        return f32(np.tile(row, (B, 1)))

    student = [view() for _ in range(S)]
    teacher = [view() for _ in range(2)]
    return name, B, K, N, perm, student, teacher


def clamped_case(rng, name, B, K, N, S):
    """Exercises both clamps of the consistency term and the lower clamp of the entropy term.
    Block 0 holds prototypes perm[0..N), block 1 holds perm[N..2N)."""
    perm = rng.permutation(K)
    student = [rng.standard_normal((B, K)) for _ in range(S)]
    teacher = [rng.standard_normal((B, K)) for _ in range(2)]
    big = 25.0
    # lower clamp: local student view 2 (row 0) peaks on block-0 slot 0, teacher 0 on slot 1
    student[2][0, perm[0]] += big
    teacher[0][0, perm[1]] += big
    # lower clamp for a global pair: student 0 (paired with teacher 1 only), row 1, block 1
    student[0][1, perm[N]] += big
    teacher[1][1, perm[N + 1]] += big
    # upper clamp: student view 3 and teacher 0 both peak on the same prototype, row 1, block 0
    student[3][1, perm[0]] += big
    teacher[0][1, perm[0]] += big
    # entropy lower clamp: block-1 slot 3 is never used by any row of any view
    for z in student + teacher:
        z[:, perm[N + 3]] -= 30.0
    return name, B, K, N, perm, [f32(z) for z in student], [f32(z) for z in teacher]


def build_case(spec):
    name, B, K, N, perm, student, teacher = spec
    S = len(student)
    P = K // N
    cons, ent, total, grads, info = loss_and_grad(student, teacher, perm, N)
    fd = finite_difference(student, teacher, perm, N)
    fd_err = max(float(np.max(np.abs(g - h))) for g, h in zip(grads, fd))
    assert fd_err < FD_TOL, f"{name}: finite-difference mismatch {fd_err}"
    assert info["min_clamp_margin"] > math.log(4.0), f"{name}: a value sits near a clamp boundary"
    idx = block_index(perm, N)
    outside = np.setdiff1d(np.arange(K), idx.ravel())
    for g in grads:
        assert np.all(g[:, outside] == 0.0)
    print(f"{name:>22}: B={B} K={K} N={N} P={P} S={S}  consistency={cons:.6f} entropy={ent:.6f} "
          f"total={total:.6f}  fd_max_abs_err={fd_err:.2e}  clamps={info}")
    return {
        "name": name,
        "B": B, "K": K, "N": N, "P": P,
        "student_views": S, "teacher_views": 2,
        "perm": [int(x) for x in perm],
        "student_logits": [z.ravel().tolist() for z in student],
        "teacher_logits": [z.ravel().tolist() for z in teacher],
        "consistency": float(cons),
        "entropy": float(ent),
        "total": float(total),
        "grad_student_logits": [g.ravel().tolist() for g in grads],
        "clamped": {k: info[k] for k in ("clipped_consistency_low", "clipped_consistency_high",
                                         "clipped_entropy")},
        "fd_max_abs_err": fd_err,
    }, ent


# ---------------------------------------------------------------------------
# JSON writer: one key per line, numeric arrays on a single line (keeps the file compact)
# ---------------------------------------------------------------------------

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
    specs = [
        random_case(rng, "a_basic_multicrop", B=4, K=12, N=4, S=4, std=1.0),
        random_case(rng, "b_prototypes_sit_out", B=3, K=14, N=4, S=2, std=1.0),
        random_case(rng, "c_peaky_multicrop", B=4, K=32, N=8, S=6, std=3.0),
        collapsed_case(rng, "d_collapsed", B=4, K=8, N=4, S=4),
        clamped_case(rng, "e_clamped", B=2, K=8, N=4, S=4),
    ]
    cases = []
    for s in specs:
        case, ent = build_case(s)
        cases.append(case)
    d = next(c for c in cases if c["name"] == "d_collapsed")
    assert d["entropy"] > 0.1, "collapsed case should have clearly positive entropy"
    e = next(c for c in cases if c["name"] == "e_clamped")["clamped"]
    assert e["clipped_consistency_low"] > 0 and e["clipped_consistency_high"] > 0 and e["clipped_entropy"] > 0
    for c in cases[:4]:
        assert sum(c["clamped"].values()) == 0, f"{c['name']} unexpectedly clamps"

    doc = {
        "generator": "tools/golden_loss.py",
        "spec": "shared/spec/carp-method.md sections 3-4",
        "seed": SEED,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "eps": EPS,
        "fd_step": FD_H,
        "fd_tolerance": FD_TOL,
        "layout": "logit arrays are flat row-major [B, K] (index n*K + k); student views 0 and 1 "
                  "are the globals; teacher view j is the teacher copy of global view j",
        "cases": cases,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", OUT)
    path = os.path.normpath(path)
    with open(path, "w") as f:
        f.write(dump(doc) + "\n")
    # round-trip check: text parses back to the exact values
    with open(path) as f:
        back = json.load(f)
    assert back["cases"][2]["grad_student_logits"][5] == cases[2]["grad_student_logits"][5]
    for c in back["cases"]:
        for z in c["student_logits"] + c["teacher_logits"]:
            a = np.asarray(z)
            assert np.array_equal(a.astype(np.float32).astype(np.float64), a)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    sys.exit(main())
