#!/usr/bin/env python3
"""PyTorch baseline for `carp embed`: backbone features of an image folder, JPEG decode
included, the way a torchvision user writes it (PIL decode, the evaluation transform, the
backbone in eval mode under no_grad), on the CPU.

Same images as `carp embed --max-test N` (evenly spaced: index i * len / N), same transform
(small stem: none; ImageNet stem: resize 256 + centre crop 224), random weights.

    python bench/pytorch_embed.py --data ../shared/datasets/cifar10/test --arch resnet18 \
        --small-stem --batch 256 [--channels-last] [--max 0] [--threads 2] [--json]
"""

import argparse
import json
import time

import torch
import torch.nn as nn
import torchvision
from torchvision import transforms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="image folder (class sub-folders)")
    ap.add_argument("--arch", choices=["resnet18", "resnet50"], default="resnet18")
    ap.add_argument("--small-stem", action="store_true", help="3x3 stride-1 stem, no max-pool, no resize")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--max", type=int, default=0, help="at most this many images, evenly spaced (0: all)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    net = getattr(torchvision.models, args.arch)(weights=None)
    if args.small_stem:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    net.eval()
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)

    steps = [] if args.small_stem else [transforms.Resize(256), transforms.CenterCrop(224)]
    tf = transforms.Compose(steps + [
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    folder = torchvision.datasets.ImageFolder(args.data)
    n = len(folder)
    idx = list(range(n)) if args.max == 0 or args.max >= n else [i * n // args.max for i in range(args.max)]

    start = time.perf_counter()
    dim = 0
    with torch.no_grad():
        for b in range(0, len(idx), args.batch):
            x = torch.stack([tf(folder[i][0]) for i in idx[b:b + args.batch]])
            out = net(x.contiguous(memory_format=fmt))
            dim = out.shape[1]
    secs = time.perf_counter() - start
    res = {
        "framework": "pytorch",
        "images": len(idx),
        "dim": dim,
        "seconds": round(secs, 3),
        "img_per_s": round(len(idx) / secs, 2),
        "channels_last": args.channels_last,
        "threads": args.threads,
        "torch": torch.__version__,
    }
    print(json.dumps(res) if args.json else f"pytorch: {len(idx)} x {dim} in {secs:.1f} s ({res['img_per_s']} img/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
