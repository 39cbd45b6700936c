"""torchvision + PIL side of bench/augment.sh: DINO's multi-crop augmentation of an
image folder through a DataLoader, timed like carp-data's `multicrop` bench.

    python bench/torchvision_augment.py --data DIR [--recipe cifar|imagenet]
        [--images 4096] [--batch 64] [--threads 2] [--json]
    python bench/torchvision_augment.py --generate DIR --count 300   # ~400x350 JPEGs

The transform is DINO's DataAugmentationDINO (main_dino.py) with the recipe's sizes:
RandomResizedCrop (bicubic), flip, ColorJitter(0.4, 0.4, 0.2, 0.1) p=0.8, grayscale p=0.2,
PIL GaussianBlur (p = 1.0 / 0.1 / 0.5), Solarization p=0.2 on global 2, ToTensor, Normalize.
`threads` DataLoader workers, each with torch.set_num_threads(1); img/s counts source
images (8 views each) after one warm-up batch.
"""

import argparse
import json
import random
import time

import numpy as np
import torch
import torchvision
from PIL import Image, ImageFilter, ImageOps
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

RECIPES = {
    "cifar": (32, 16, (0.25, 1.0), (0.05, 0.25)),
    "imagenet": (224, 96, (0.2, 1.0), (0.05, 0.2)),
}


class GaussianBlur:
    """DINO's utils.GaussianBlur: PIL's filter with radius uniform in [0.1, 2.0]."""

    def __init__(self, p):
        self.p = p

    def __call__(self, img):
        if random.random() >= self.p:
            return img
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(0.1, 2.0)))


class Solarization:
    def __init__(self, p):
        self.p = p

    def __call__(self, img):
        return ImageOps.solarize(img) if random.random() < self.p else img


class MultiCrop:
    def __init__(self, recipe, local_views=6):
        g, l, gs, ls = RECIPES[recipe]
        bicubic = transforms.InterpolationMode.BICUBIC
        flip_jitter = transforms.Compose([
            transforms.RandomHorizontalFlip(p=0.5),
            transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            transforms.RandomGrayscale(p=0.2),
        ])
        norm = transforms.Compose([
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ])
        self.g1 = transforms.Compose([transforms.RandomResizedCrop(g, gs, interpolation=bicubic),
                                      flip_jitter, GaussianBlur(1.0), norm])
        self.g2 = transforms.Compose([transforms.RandomResizedCrop(g, gs, interpolation=bicubic),
                                      flip_jitter, GaussianBlur(0.1), Solarization(0.2), norm])
        self.local = transforms.Compose([transforms.RandomResizedCrop(l, ls, interpolation=bicubic),
                                         flip_jitter, GaussianBlur(0.5), norm])
        self.local_views = local_views

    def __call__(self, img):
        return [self.g1(img), self.g2(img)] + [self.local(img) for _ in range(self.local_views)]


def worker_init(_):
    torch.set_num_threads(1)


def generate(root, count):
    import os
    rng = np.random.default_rng(0)
    for c in range(4):
        os.makedirs(f"{root}/class{c}", exist_ok=True)
    y, x = np.mgrid[0:350, 0:400]
    for i in range(count):
        base = np.stack([(x * (i % 7 + 1)) % 256, (y * (i % 5 + 2)) % 256,
                         ((x + y) * (i % 3 + 1)) % 256], axis=-1).astype(np.float64)
        noise = rng.normal(0, 20, size=base.shape)
        img = np.clip(base * 0.7 + noise + 40, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(f"{root}/class{i % 4}/img{i:04d}.jpg", quality=90)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--recipe", default="cifar", choices=sorted(RECIPES))
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--generate")
    ap.add_argument("--count", type=int, default=300)
    a = ap.parse_args()
    if a.generate:
        generate(a.generate, a.count)
        return
    torch.set_num_threads(1)
    ds = datasets.ImageFolder(a.data, transform=MultiCrop(a.recipe))
    idx = random.Random(0).sample(range(len(ds)), min(len(ds), a.images + a.batch))
    loader = DataLoader(Subset(ds, idx), batch_size=a.batch, shuffle=False, drop_last=True,
                        num_workers=a.threads, worker_init_fn=worker_init,
                        persistent_workers=False, prefetch_factor=2)
    it = iter(loader)
    next(it)  # warm-up: workers started, first batch done
    start = time.perf_counter()
    count = 0
    for views, _ in it:
        count += views[0].shape[0]
    secs = time.perf_counter() - start
    out = {"stack": "torchvision", "recipe": a.recipe, "images": count, "secs": round(secs, 3),
           "threads": a.threads, "img_per_s": round(count / secs, 2),
           "torchvision": torchvision.__version__, "torch": torch.__version__}
    if a.json:
        print(json.dumps(out))
    else:
        print(f"torchvision {a.recipe}: {count} images in {secs:.2f} s = {count / secs:.1f} img/s, "
              f"{count / secs / a.threads:.1f} per core ({a.threads} workers)")


if __name__ == "__main__":
    main()
