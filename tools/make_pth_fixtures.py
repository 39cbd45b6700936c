"""Small PyTorch checkpoints in other methods' layouts, plus the features PyTorch computes.

Writes crates/carp-io/tests/fixtures/pth/ (run from the repository root, by hand; CI has no
Python):

- carp_zip.pth        CARP release layout (spec section 8): {student, teacher, optimizer,
                      fp16_scaler, args (argparse.Namespace), epoch}, state dicts with
                      `module.backbone.` / `module.head.` keys, head with weight_g / weight_v;
                      torch.save's zip container. ResNet-18 at base width 4, small stem.
- carp_legacy.pth     the same object saved with _use_new_zipfile_serialization=False
                      (the pre-1.6 pickle stream).
- vicreg.pth          VICReg layout: {model: {module.backbone.*, module.projector.*}, epoch},
                      ResNet-18 at width 4, ImageNet stem, fp16 weights (as some releases).
- mocov3.pth.tar      MoCo v3 layout: {state_dict: {module.base_encoder.* incl. fc,
                      module.momentum_encoder.* (a stem only, to stay small),
                      module.predictor.*}, arch, epoch},
                      ResNet-50 (bottleneck) at width 2, ImageNet stem.
- expected.json       per fixture: the eval-mode backbone features of the teacher (CARP) or
                      the backbone for 3 fixed 3x32x32 inputs, and for CARP the teacher head's
                      logits on those features.
- evil_reduce.pth     a plain pickle whose dict value is os.system("touch ...") (REDUCE of
                      GLOBAL os.system); must be refused and never run.
- evil_zip.pth        the same call inside a zip checkpoint's data.pkl (posix.system).
- truncated.pth       the first 20000 bytes of carp_zip.pth.
- not_a_checkpoint.pth  a text file.

The inputs are a formula (see `inputs()`), recomputed by the Rust tests, so they are not
stored. Seeded: the same torch version writes the same values.
"""

import argparse
import io
import json
import math
import os
import zipfile

import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

OUT = "crates/carp-io/tests/fixtures/pth"


def narrow_resnet(block, layers, width, small_stem):
    """torchvision's ResNet with stage widths width * (1, 2, 4, 8) (torchvision: 64)."""
    m = ResNet(block, layers, num_classes=10)
    m.inplanes = width
    if small_stem:
        m.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
    else:
        m.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
    m.bn1 = nn.BatchNorm2d(width)
    m.layer1 = m._make_layer(block, width, layers[0])
    m.layer2 = m._make_layer(block, width * 2, layers[1], stride=2)
    m.layer3 = m._make_layer(block, width * 4, layers[2], stride=2)
    m.layer4 = m._make_layer(block, width * 8, layers[3], stride=2)
    m.fc = nn.Linear(width * 8 * block.expansion, 10)
    randomise(m)
    return m


def randomise(m):
    """Non-trivial BatchNorm affine parameters and running statistics everywhere, so a
    mis-mapped weight/bias or mean/var changes the features."""
    g = torch.Generator().manual_seed(1234)
    for mod in m.modules():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = mod.num_features
            with torch.no_grad():
                mod.weight.copy_(0.5 + torch.rand(n, generator=g))
                mod.bias.copy_(0.2 * torch.randn(n, generator=g))
                mod.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(n, generator=g))
            mod.num_batches_tracked.fill_(17)


class CarpHead(nn.Module):
    """DINO-style head as CARP releases it: mlp (Linear, BN, GELU, ..., Linear), then a
    weight-normalised bias-free prototype layer with g fixed at 1."""

    def __init__(self, in_dim, hidden, bottleneck, k):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.GELU(),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.GELU(),
            nn.Linear(hidden, bottleneck),
        )
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck, k, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        self.last_layer.weight_g.requires_grad = False
        randomise(self)

    def forward(self, x):
        return self.last_layer(self.mlp(x))


class Wrapper(nn.Module):
    """DINO's MultiCropWrapper naming: backbone + head."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.head = head


class DDP(nn.Module):
    """What DistributedDataParallel adds to every key: `module.`."""

    def __init__(self, module):
        super().__init__()
        self.module = module


def inputs():
    """3 fixed images [3, 3, 32, 32]; the Rust tests recompute the same formula."""
    n = 3 * 3 * 32 * 32
    vals = [math.sin(0.37 * i + 0.1) * 1.5 + 0.25 * math.cos(0.011 * i) for i in range(n)]
    return torch.tensor(vals, dtype=torch.float64).float().reshape(3, 3, 32, 32)


def features(backbone):
    fc = backbone.fc
    backbone.fc = nn.Identity()
    backbone.eval()
    with torch.no_grad():
        y = backbone(inputs())
    backbone.fc = fc
    return y


def flat(t):
    return [float(v) for v in t.flatten().tolist()]


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    expected = {"input_formula": "sin(0.37 i + 0.1) * 1.5 + 0.25 cos(0.011 i), [3,3,32,32]"}

    # --- CARP release layout ----------------------------------------------------------
    def carp_net(seed):
        torch.manual_seed(seed)
        backbone = narrow_resnet(BasicBlock, [2, 2, 2, 2], 4, small_stem=True)
        backbone.fc = nn.Identity()  # DINO/CARP drop the classifier before wrapping
        head = CarpHead(32, 16, 8, 20)
        return DDP(Wrapper(backbone, head))

    student, teacher = carp_net(1), carp_net(2)
    opt = torch.optim.SGD(student.module.head.parameters(), lr=0.1, momentum=0.9)
    student.module.head.train()
    loss = student.module.head(torch.randn(4, 32)).square().mean()
    loss.backward()
    opt.step()
    scaler = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
              "growth_interval": 2000, "_growth_tracker": 3}
    args = argparse.Namespace(arch="resnet18", out_dim=20, lr=0.3, epochs=200,
                              use_fp16=True, local_crops_number=6, data_path="/data/imagenet")
    ckpt = {
        "student": student.state_dict(),
        "teacher": teacher.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch": 200,
        "args": args,
        "fp16_scaler": scaler,
    }
    torch.save(ckpt, f"{OUT}/carp_zip.pth")
    torch.save(ckpt, f"{OUT}/carp_legacy.pth", _use_new_zipfile_serialization=False)
    tb = teacher.module.backbone
    th = teacher.module.head
    feats = features(tb)
    th.eval()
    with torch.no_grad():
        logits = th(feats)
    expected["carp"] = {"arch": "resnet18", "base_width": 4, "small_stem": True,
                        "features_shape": list(feats.shape), "features": flat(feats),
                        "head_logits_shape": list(logits.shape), "head_logits": flat(logits)}
    sfeats = features(student.module.backbone)
    expected["carp_student"] = {"features": flat(sfeats)}

    # --- VICReg: {model: {module.backbone.*, module.projector.*}} in fp16 --------------
    torch.manual_seed(3)
    backbone = narrow_resnet(BasicBlock, [2, 2, 2, 2], 4, small_stem=False)
    backbone.fc = nn.Identity()
    backbone.half()  # stored in fp16; features from the fp16 values, computed in fp32
    model = nn.Module()
    model.backbone = backbone
    model.projector = nn.Linear(32, 12).half()
    torch.save({"model": DDP(model).state_dict(), "epoch": 100}, f"{OUT}/vicreg.pth")
    backbone.float()
    feats = features(backbone)
    expected["vicreg"] = {"arch": "resnet18", "base_width": 4, "small_stem": False,
                          "features_shape": list(feats.shape), "features": flat(feats)}

    # --- MoCo v3: {state_dict: module.base_encoder.* (incl. fc), ...} -----------------
    torch.manual_seed(4)
    base = narrow_resnet(Bottleneck, [3, 4, 6, 3], 2, small_stem=False)
    base.fc = nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8))
    # The real momentum encoder is a second ResNet; a stem stands in for it (same prefix,
    # which the MoCo v3 key map must drop) to keep the fixture small.
    momentum = nn.Module()
    momentum.conv1 = nn.Conv2d(3, 2, 7, 2, 3, bias=False)
    momentum.bn1 = nn.BatchNorm2d(2)
    moco = nn.Module()
    moco.base_encoder = base
    moco.momentum_encoder = momentum
    moco.predictor = nn.Linear(8, 8)
    torch.save({"state_dict": DDP(moco).state_dict(), "arch": "resnet50", "epoch": 300},
               f"{OUT}/mocov3.pth.tar")
    feats = features(base)
    expected["mocov3"] = {"arch": "resnet50", "base_width": 2, "small_stem": False,
                          "features_shape": list(feats.shape), "features": flat(feats)}

    with open(f"{OUT}/expected.json", "w") as f:
        json.dump(expected, f)
        f.write("\n")

    # --- hostile and broken files -----------------------------------------------------
    # REDUCE(GLOBAL os.system, ("touch /tmp/carp-pwned-by-fixture",)) as a dict value.
    # Written by hand: pickle.dumps of a real call would run it.
    cmd = b"touch /tmp/carp-pwned-by-fixture"
    evil = (b"\x80\x02}q\x00X\x06\x00\x00\x00weightq\x01cos\nsystem\nq\x02X"
            + len(cmd).to_bytes(4, "little") + cmd + b"q\x03\x85q\x04Rq\x05s.")
    with open(f"{OUT}/evil_reduce.pth", "wb") as f:
        f.write(evil)
    with zipfile.ZipFile(f"{OUT}/evil_zip.pth", "w", zipfile.ZIP_STORED) as z:
        z.writestr("evil_zip/data.pkl", evil.replace(b"cos\nsystem\n", b"cposix\nsystem\n"))
        z.writestr("evil_zip/version", "3\n")
        z.writestr("evil_zip/byteorder", "little")
    with open(f"{OUT}/carp_zip.pth", "rb") as f:
        data = f.read()
    with open(f"{OUT}/truncated.pth", "wb") as f:
        f.write(data[:20000])
    with open(f"{OUT}/not_a_checkpoint.pth", "w") as f:
        f.write("This is a README, not a PyTorch checkpoint.\n")

    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}; "
          f"{len(os.listdir(OUT))} files, {total} bytes in {OUT}")


if __name__ == "__main__":
    main()
