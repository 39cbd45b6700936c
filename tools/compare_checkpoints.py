#!/usr/bin/env python3
"""Compares the tensors of two safetensors checkpoints bit for bit (metadata ignored).

    tools/compare_checkpoints.py A.safetensors B.safetensors

Prints `identical (N tensors)` and exits 0 when every tensor has the same name, dtype,
shape and bytes; otherwise lists the differences (largest absolute difference per f32
tensor) and exits 1. Standard library only.
"""
import json
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    body = data[8 + n :]
    return {
        k: (v["dtype"], tuple(v["shape"]), body[v["data_offsets"][0] : v["data_offsets"][1]])
        for k, v in header.items()
    }


def main():
    a, b = read(sys.argv[1]), read(sys.argv[2])
    bad = []
    for k in sorted(set(a) | set(b)):
        if k not in a or k not in b:
            bad.append(f"{k}: only in {'A' if k in a else 'B'}")
        elif a[k][:2] != b[k][:2]:
            bad.append(f"{k}: {a[k][:2]} vs {b[k][:2]}")
        elif a[k][2] != b[k][2]:
            diff = ""
            if a[k][0] == "F32":
                n = len(a[k][2]) // 4
                x = struct.unpack(f"<{n}f", a[k][2])
                y = struct.unpack(f"<{n}f", b[k][2])
                diff = f" (max |diff| {max(abs(p - q) for p, q in zip(x, y)):.3e})"
            bad.append(f"{k}: bytes differ{diff}")
    if bad:
        print("\n".join(bad))
        print(f"{len(bad)} of {len(set(a) | set(b))} tensors differ")
        sys.exit(1)
    print(f"identical ({len(a)} tensors)")


if __name__ == "__main__":
    main()
