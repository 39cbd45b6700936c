"""Round trip check, by hand: PyTorch checkpoint -> `carp convert` -> safetensors -> torchvision.

Usage (from the repository root, after `cargo build --release -p carp-cli`):

    python3 tools/pth_roundtrip.py target/release/carp

For each fixture written by tools/make_pth_fixtures.py it runs
`carp convert FIXTURE --out DIR/x.safetensors` (torchvision names), loads the file into a
torchvision ResNet of the same shape with `load_state_dict(strict=False)` (the safetensors
file is parsed with numpy here: the `safetensors` pip package is not needed), computes the
eval-mode features for the fixed inputs and compares them with the features PyTorch computed
from the original checkpoint (expected.json). Identical weights give identical features.
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock, Bottleneck

sys.path.insert(0, os.path.dirname(__file__))
from make_pth_fixtures import OUT, inputs, narrow_resnet  # noqa: E402

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64}


def load_safetensors(path):
    """A minimal safetensors reader: 8-byte header length, JSON header, raw data."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        arr = np.frombuffer(body[a:b], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out, header.get("__metadata__", {})


CASES = [
    ("carp_zip.pth", "carp", BasicBlock, [2, 2, 2, 2], 4, True),
    ("carp_legacy.pth", "carp", BasicBlock, [2, 2, 2, 2], 4, True),
    ("vicreg.pth", "vicreg", BasicBlock, [2, 2, 2, 2], 4, False),
    ("mocov3.pth.tar", "mocov3", Bottleneck, [3, 4, 6, 3], 2, False),
]


def main():
    carp = sys.argv[1] if len(sys.argv) > 1 else "target/release/carp"
    with open(f"{OUT}/expected.json") as f:
        expected = json.load(f)
    with tempfile.TemporaryDirectory() as tmp:
        for file, case, block, layers, width, small in CASES:
            out = os.path.join(tmp, file + ".safetensors")
            subprocess.run([carp, "convert", f"{OUT}/{file}", "--out", out], check=True)
            state, _ = load_safetensors(out)
            net = narrow_resnet(block, layers, width, small)
            result = net.load_state_dict(state, strict=False)
            net.fc = nn.Identity()
            net.eval()
            with torch.no_grad():
                y = net(inputs()).numpy()
            ref = np.array(expected[case]["features"], dtype=np.float32).reshape(y.shape)
            diff = np.abs(y - ref).max()
            print(f"{file}: missing {result.missing_keys}, unexpected "
                  f"{result.unexpected_keys}; max |torchvision - original| = {diff:.3g}"
                  f" over {y.size} features")


if __name__ == "__main__":
    main()
