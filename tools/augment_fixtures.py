"""Golden outputs of torchvision's augmentation ops for carp's augment.rs.

Writes crates/carp-data/tests/fixtures/augment_golden.json. For three small fixed
images (seeded noise, a gradient with a sharp rectangle, a saturated checkerboard) and
fixed parameters it applies torchvision.transforms.functional on two inputs:

* PIL images (what DINO's pipeline runs): resized_crop (bicubic), hflip,
  adjust_brightness/contrast/saturation/hue, rgb_to_grayscale, solarize(128), PIL's
  ImageFilter.GaussianBlur(radius=sigma) (DINO's GaussianBlur), and two chains
  crop -> flip -> colour jitter (given order) -> [grayscale] -> blur. Outputs are uint8.
* float tensors in [0, 1] (torchvision's tensor kernels, no rounding between ops):
  the four colour adjustments, grayscale and gaussian_blur with kernel 2*ceil(3*sigma)+1
  (also run on the PIL image, rounding once).

The Rust test (crates/carp-data/tests/augment_golden.rs) runs carp's ops with the same
parameters and compares after ImageNet normalisation; the bounds are explained there.
Run from the repository root: /work/main/.venv/bin/python tools/augment_fixtures.py
"""

import json
import math
import os

import numpy as np
import PIL
import torch
import torchvision
import torchvision.transforms.functional as F
from PIL import Image, ImageFilter

OUT = "crates/carp-data/tests/fixtures/augment_golden.json"


def images():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
    y, x = np.mgrid[0:13, 0:11]
    grad = np.stack([x * 23, y * 19, 255 - x * 11 - y * 9], axis=-1).clip(0, 255)
    grad[3:9, 2:7] = [250, 30, 60]
    grad = grad.astype(np.uint8)
    y, x = np.mgrid[0:9, 0:12]
    checker = np.where(((x // 3 + y // 3) % 2 == 0)[..., None], [230, 40, 20], [20, 90, 240])
    checker[7:, :] = [128, 127, 129]
    return {"noise": noise, "gradient": grad, "checker": checker.astype(np.uint8)}


def pil_u8(img):
    return np.asarray(img, dtype=np.uint8).reshape(-1).tolist()


def tensor_of(arr):
    return torch.from_numpy(arr.astype(np.float64) / 255.0).permute(2, 0, 1).float()


def tensor_out(t):
    # HWC order, like the uint8 arrays; 6 decimals are far below the tolerances.
    return [round(float(v), 6) for v in t.permute(1, 2, 0).reshape(-1)]


def blur_kernel(sigma):
    return 2 * max(1, math.ceil(3 * sigma)) + 1


PARTS = ["brightness", "contrast", "saturation", "hue"]


def jitter_pil(img, order, factors):
    for p in order:
        f = factors[p]
        if p == 0:
            img = F.adjust_brightness(img, f)
        elif p == 1:
            img = F.adjust_contrast(img, f)
        elif p == 2:
            img = F.adjust_saturation(img, f)
        else:
            img = F.adjust_hue(img, f)
    return img


def main():
    torch.set_num_threads(1)
    cases = []
    for name, arr in images().items():
        h, w = arr.shape[:2]
        pil = Image.fromarray(arr, "RGB")
        t = tensor_of(arr)
        ops = []

        def add(op, params, pil_out=None, tensor=None):
            entry = {"op": op, "params": params}
            if pil_out is not None:
                entry["pil"] = pil_u8(pil_out)
                entry["shape"] = [pil_out.size[1], pil_out.size[0]]
            if tensor is not None:
                entry["tensor"] = tensor_out(tensor)
            ops.append(entry)

        # Crops: (top, left, height, width) -> (out_height, out_width). Shrink, enlarge,
        # a mixed case, and the full image at another size.
        crops = [
            (1, 2, h - 2, w - 3, 5, 4),
            (3, 1, 5, 4, 12, 11),
            (0, 0, h, w, 6, 20),
            (2, 3, h - 4, w - 5, h - 4, 9),
        ]
        for top, left, ch, cw, oh, ow in crops:
            out = F.resized_crop(
                pil, top, left, ch, cw, [oh, ow], interpolation=F.InterpolationMode.BICUBIC
            )
            add("resized_crop", {"top": top, "left": left, "height": ch, "width": cw,
                                 "out_height": oh, "out_width": ow}, out)
        add("hflip", {}, F.hflip(pil))
        for f in [0.6, 1.37]:
            add("brightness", {"factor": f}, F.adjust_brightness(pil, f),
                F.adjust_brightness(t, f))
        for f in [0.62, 1.4]:
            add("contrast", {"factor": f}, F.adjust_contrast(pil, f), F.adjust_contrast(t, f))
        for f in [0.0, 1.2]:
            add("saturation", {"factor": f}, F.adjust_saturation(pil, f),
                F.adjust_saturation(t, f))
        # PIL shifts the uint8 hue channel by int(f * 255): 20/255 and -13/255 shift by
        # whole steps; 0.1 (the spec's bound) does not.
        for f in [20 / 255, -13 / 255, 0.1]:
            add("hue", {"factor": f}, F.adjust_hue(pil, f), F.adjust_hue(t, f))
        add("grayscale", {}, F.rgb_to_grayscale(pil, 3), F.rgb_to_grayscale(t, 3))
        add("solarize", {"threshold": 128}, F.solarize(pil, 128))
        for s in [0.3, 1.6]:
            k = blur_kernel(s)
            # DINO's blur (PIL's box approximation) -> carp's pil_gaussian_blur.
            add("blur", {"sigma": s}, pil.filter(ImageFilter.GaussianBlur(radius=s)))
            # torchvision's sampled Gaussian -> carp's gaussian_blur.
            add("blur_tensor", {"sigma": s, "kernel": k}, None,
                F.gaussian_blur(t, [k, k], [s, s]))
            add("blur_torchvision_pil", {"sigma": s, "kernel": k},
                F.gaussian_blur(pil, [k, k], [s, s]))

        # Chains, as a view is made (crop, flip, jitter in a drawn order, grayscale, blur).
        chains = [
            {"crop": [1, 1, h - 3, w - 2], "size": 8, "flip": True, "order": [2, 0, 3, 1],
             "factors": [1.21, 0.75, 1.13, 13 / 255], "grayscale": False, "sigma": 0.9},
            {"crop": [0, 2, h - 1, w - 4], "size": 7, "flip": False, "order": [1, 3, 0, 2],
             "factors": [0.7, 1.3, 0.85, -20 / 255], "grayscale": True, "sigma": 0.4},
        ]
        for c in chains:
            top, left, ch, cw = c["crop"]
            img = F.resized_crop(pil, top, left, ch, cw, [c["size"], c["size"]],
                                 interpolation=F.InterpolationMode.BICUBIC)
            if c["flip"]:
                img = F.hflip(img)
            img = jitter_pil(img, c["order"], c["factors"])
            if c["grayscale"]:
                img = F.rgb_to_grayscale(img, 3)
            img = img.filter(ImageFilter.GaussianBlur(radius=c["sigma"]))
            add("chain", c, img)

        cases.append({"name": name, "height": h, "width": w, "input": pil_u8(pil), "ops": ops})

    doc = {
        "script": "tools/augment_fixtures.py",
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     "pillow": PIL.__version__, "numpy": np.__version__},
        "layout": "uint8 and float arrays are HWC, row-major; tensor outputs in [0, 1]",
        "cases": cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
