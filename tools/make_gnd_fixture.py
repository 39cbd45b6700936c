#!/usr/bin/env python3
"""A miniature revisitop ground-truth pickle, for carp-data's Revisited reader.

Writes crates/carp-data/tests/fixtures/gnd_tiny.pkl with Python's own pickle (the default
protocol of the Python that runs it, and protocol 2 as a second file gnd_tiny_p2.pkl) in the
shape of gnd_roxford5k.pkl: {"imlist": [...], "qimlist": [...], "gnd": [{"bbx": [...],
"easy": [...], "hard": [...], "junk": [...]}, ...]}.

Usage: python3 tools/make_gnd_fixture.py   (standard library only)
"""
import pickle
import platform

cfg = {
    "imlist": ["all_souls_000000", "radcliffe_000001", "bodleian_000002"],
    "qimlist": ["all_souls_000013", "radcliffe_000390"],
    "gnd": [
        {"bbx": [136.5, 34.1, 648.5, 955.7], "easy": [0], "hard": [2], "junk": []},
        {"bbx": [0, 1, 2, 3], "easy": [], "hard": [], "junk": [1]},
    ],
}
for name, protocol in [("gnd_tiny.pkl", pickle.DEFAULT_PROTOCOL), ("gnd_tiny_p2.pkl", 2)]:
    path = f"crates/carp-data/tests/fixtures/{name}"
    with open(path, "wb") as f:
        pickle.dump(cfg, f, protocol=protocol)
    print(f"wrote {path} (protocol {protocol}, Python {platform.python_version()})")
