#!/usr/bin/env python3
"""PyTorch baseline: time one full CARP training step on the CPU.

Reproduces the step described in shared/spec/carp-method.md (sections 1, 3, 4
and 5) the way the authors' DINO-derived release does it:

* student and teacher = torchvision ResNet (fc = Identity) + CARP head
  (3-layer MLP with BatchNorm1d + GELU, weight-normalised prototype layer with
  g fixed to 1, no L2 normalisation before it);
* multi-crop: views of the same resolution go through the backbone as one
  batch (DINO's MultiCropWrapper), the head runs once on all features; the
  teacher sees only the global views, runs in train mode and has no grad;
* loss: one random permutation of the K prototypes per step, P = K // N blocks,
  softmax within each block, consistency over all (student i, teacher j),
  i != j pairs, plus the entropy (KL-from-uniform) term over the mean block
  assignment of all student + teacher views;
* DINO's LARS (momentum 0.9, eta 0.001, wd 1e-6, neither weight decay nor
  trust ratio for 1-D params), lr = 0.45 * batch / 256;
* EMA teacher update (m = 0.996) after the optimiser step.

Inputs are random tensors generated once: the benchmark measures the model
step only (no data loading or augmentation). img/s counts images (the batch),
not views, per second of wall time for the whole step (both forwards, loss,
backward, optimiser, EMA).

Default = the "cifar" preset: resnet18 with the small-image stem, batch 64,
2 x 32x32 global + 4 x 16x16 local views, K = 4096, N = 128.

    python bench/pytorch_train_step.py                 # 20 timed steps
    python bench/pytorch_train_step.py --json          # machine-readable
"""

import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

EPS = torch.finfo(torch.float32).eps


# --------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------


class NarrowResNet(torchvision.models.resnet.ResNet):
    """torchvision's ResNet with a first-stage width other than 64 (stages w, 2w, 4w, 8w),
    carp's `base_width`; torchvision's initialisation and forward."""

    def __init__(self, block, layers, width: int):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width * block.expansion, 1000)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        for m in self.modules():  # zero_init_residual
            if isinstance(m, torchvision.models.resnet.Bottleneck):
                nn.init.constant_(m.bn3.weight, 0)
            elif isinstance(m, torchvision.models.resnet.BasicBlock):
                nn.init.constant_(m.bn2.weight, 0)


def build_backbone(arch: str, small_stem: bool, width: int = 64) -> tuple[nn.Module, int]:
    if width == 64:
        ctor = {"resnet18": torchvision.models.resnet18, "resnet50": torchvision.models.resnet50}[arch]
        net = ctor(weights=None, zero_init_residual=True)
    else:
        block, layers = {
            "resnet18": (torchvision.models.resnet.BasicBlock, [2, 2, 2, 2]),
            "resnet50": (torchvision.models.resnet.Bottleneck, [3, 4, 6, 3]),
        }[arch]
        net = NarrowResNet(block, layers, width)
    if small_stem:
        # Small-image stem: 3x3 stride-1 conv, no max-pool.
        net.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
    embed_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, embed_dim


class CARPHead(nn.Module):
    """MLP in -> hidden -> hidden -> bottleneck (BN + GELU after all but the
    last linear), then a weight-normalised bias-free prototype layer with g
    fixed to 1. No L2 normalisation of the bottleneck (unlike DINO)."""

    def __init__(self, in_dim: int, k: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 nlayers: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        dims = [in_dim] + [hidden_dim] * (nlayers - 1) + [bottleneck_dim]
        for i in range(nlayers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < nlayers - 1:
                layers.append(nn.BatchNorm1d(dims[i + 1]))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.apply(self._init_weights)
        # weight_norm is deprecated in favour of parametrizations.weight_norm,
        # but the release (and its checkpoints: weight_g / weight_v) use it.
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, k, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        self.last_layer.weight_g.requires_grad = False

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)  # bounds [-2, 2] absolute
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(self.mlp(x))


class MultiCropWrapper(nn.Module):
    """DINO's wrapper: consecutive views of the same resolution go through the
    backbone as one batch; the head runs once on all the features."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, views: list[torch.Tensor]) -> torch.Tensor:
        sizes = torch.tensor([v.shape[-1] for v in views])
        idx_crops = torch.cumsum(torch.unique_consecutive(sizes, return_counts=True)[1], 0)
        start, feats = 0, []
        for end in idx_crops.tolist():
            feats.append(self.backbone(torch.cat(views[start:end])))
            start = end
        return self.head(torch.cat(feats))


def build_net(args) -> MultiCropWrapper:
    small_stem = {"auto": args.global_size <= 64, "small": True, "imagenet": False}[args.stem]
    backbone, embed_dim = build_backbone(args.arch, small_stem, args.base_width)
    head = CARPHead(embed_dim, args.k)
    return MultiCropWrapper(backbone, head)


# --------------------------------------------------------------------------
# Loss (spec sections 3 and 4)
# --------------------------------------------------------------------------


def carp_loss(student_out: torch.Tensor, teacher_out: torch.Tensor, n_student_views: int,
              n_teacher_views: int, partition_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """student_out: (n_student_views * B, K) logits, teacher_out: (n_teacher_views * B, K).
    Returns (consistency, entropy)."""
    k = student_out.shape[-1]
    n = partition_size
    p_blocks = k // n
    # One random permutation per step, the first P*N entries cut into P blocks of N.
    perm = torch.randperm(k, device=student_out.device)[: p_blocks * n]

    # (V*B, P, N) probabilities, softmax within each block (no temperature).
    s_prob = F.softmax(student_out[:, perm].view(-1, p_blocks, n), dim=-1)
    t_prob = F.softmax(teacher_out.detach()[:, perm].view(-1, p_blocks, n), dim=-1)

    s_views = s_prob.chunk(n_student_views)
    t_views = t_prob.chunk(n_teacher_views)

    # Consistency: teacher views are the global views 0..n_teacher_views-1, so a
    # global student view is never paired with the teacher's copy of itself.
    total, n_pairs = 0.0, 0
    for j, q in enumerate(t_views):
        for i, p in enumerate(s_views):
            if i == j:
                continue
            agree = (p * q).sum(dim=-1)  # (B, P)
            total = total + (-torch.log(agree.clamp(EPS, 1 - EPS)).mean())
            n_pairs += 1
    consistency = total / n_pairs

    # Entropy: mean assignment of every block over all student + teacher views
    # and images; KL from uniform averaged over blocks. Gradient only through
    # the student part (teacher probabilities are detached above).
    m = torch.cat([s_prob, t_prob]).mean(dim=0)  # (P, N)
    entropy = (math.log(n) + (m * torch.log(m.clamp(EPS, 1 - EPS))).sum(dim=-1)).mean()
    return consistency, entropy


# --------------------------------------------------------------------------
# Optimiser: DINO's utils.LARS
# --------------------------------------------------------------------------


class LARS(torch.optim.Optimizer):
    """Almost copy-paste from DINO's utils.LARS (itself from the
    facebookresearch/barlowtwins repo): no weight decay and no trust-ratio
    scaling for 1-D parameters."""

    def __init__(self, params, lr=0.0, weight_decay=0.0, momentum=0.9, eta=0.001,
                 weight_decay_filter=None, lars_adaptation_filter=None):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta,
                        weight_decay_filter=weight_decay_filter,
                        lars_adaptation_filter=lars_adaptation_filter)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g["params"]:
                dp = p.grad
                if dp is None:
                    continue
                if p.ndim != 1:
                    dp = dp.add(p, alpha=g["weight_decay"])
                if p.ndim != 1:
                    param_norm = torch.norm(p)
                    update_norm = torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    q = torch.where(param_norm > 0.0,
                                    torch.where(update_norm > 0, (g["eta"] * param_norm / update_norm), one),
                                    one)
                    dp = dp.mul(q)
                param_state = self.state[p]
                if "mu" not in param_state:
                    param_state["mu"] = torch.zeros_like(p)
                mu = param_state["mu"]
                mu.mul_(g["momentum"]).add_(dp)
                p.add_(mu, alpha=-g["lr"])


def get_params_groups(model: nn.Module):
    """DINO's utils.get_params_groups: biases and 1-D params get no weight decay."""
    regularized, not_regularized = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith(".bias") or len(param.shape) == 1:
            not_regularized.append(param)
        else:
            regularized.append(param)
    return [{"params": regularized}, {"params": not_regularized, "weight_decay": 0.0}]


# --------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    ap.add_argument("--batch", type=int, default=64, help="images per step (default 64)")
    ap.add_argument("--k", type=int, default=4096, help="number of prototypes K (default 4096)")
    ap.add_argument("--partition-size", type=int, default=128, help="block size N (default 128)")
    ap.add_argument("--global-views", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--local-views", type=int, default=4, help="local views M (default 4; 0 disables)")
    ap.add_argument("--global-size", type=int, default=32, help="global view side (default 32)")
    ap.add_argument("--local-size", type=int, default=16, help="local view side (default 16)")
    ap.add_argument("--arch", choices=["resnet18", "resnet50"], default="resnet18")
    ap.add_argument("--stem", choices=["auto", "small", "imagenet"], default="auto",
                    help="small = 3x3 s1 conv, no max-pool; auto = small when --global-size <= 64")
    ap.add_argument("--channels-last", action="store_true", help="use torch.channels_last memory format")
    ap.add_argument("--base-width", type=int, default=64, help="first-stage width (default 64)")
    ap.add_argument("--data", default=None,
                    help="image folder: train on its multi-crop views (DataLoader, --workers) "
                         "instead of fixed random inputs; img/s then includes data loading")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers with --data (default 2)")
    ap.add_argument("--global-scale", type=float, nargs=2, default=(0.14, 1.0))
    ap.add_argument("--local-scale", type=float, nargs=2, default=(0.05, 0.14))
    ap.add_argument("--lr", type=float, default=None, help="default 0.45 * batch / 256")
    ap.add_argument("--weight-decay", type=float, default=1e-6)
    ap.add_argument("--momentum-teacher", type=float, default=0.996)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print a JSON object instead of the text line")
    args = ap.parse_args(argv)
    if args.lr is None:
        args.lr = 0.45 * args.batch / 256
    if args.k < args.partition_size:
        ap.error("--k must be >= --partition-size")
    if args.steps < 1:
        ap.error("--steps must be >= 1")
    if args.global_views != 2:
        ap.error("only 2 global views are supported")
    return args


def resource_usage() -> float:
    """User + system CPU seconds of this process and its live DataLoader workers so far."""
    import os
    total = 0.0
    pids = [os.getpid()]
    try:
        pids += [int(p) for p in open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()]
    except OSError:
        pass
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def data_batches(args):
    """Endless multi-crop batches of an image folder: the CIFAR recipe of carp's presets
    (RandomResizedCrop bicubic, flip, colour jitter p 0.8, grayscale p 0.2, solarize p 0.2
    on the second global view, no blur at 32 px), B images x (2 + M) views."""
    import random
    from PIL import ImageOps
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    bicubic = transforms.InterpolationMode.BICUBIC
    common = [transforms.RandomHorizontalFlip(p=0.5),
              transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
              transforms.RandomGrayscale(p=0.2)]
    norm = [transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]

    def solarize(img):
        return ImageOps.solarize(img) if random.random() < 0.2 else img

    g = transforms.Compose([transforms.RandomResizedCrop(args.global_size, tuple(args.global_scale),
                                                         interpolation=bicubic)] + common + norm)
    g2 = transforms.Compose([transforms.RandomResizedCrop(args.global_size, tuple(args.global_scale),
                                                          interpolation=bicubic)] + common
                            + [transforms.Lambda(solarize)] + norm)
    loc = transforms.Compose([transforms.RandomResizedCrop(args.local_size, tuple(args.local_scale),
                                                           interpolation=bicubic)] + common + norm)

    def multicrop(img):
        return [g(img), g2(img)] + [loc(img) for _ in range(args.local_views)]

    data = datasets.ImageFolder(args.data, transform=multicrop)
    loader = DataLoader(data, batch_size=args.batch, shuffle=True, drop_last=True,
                        num_workers=args.workers, persistent_workers=args.workers > 0,
                        worker_init_fn=lambda _: torch.set_num_threads(1))
    while True:
        for views, _ in loader:
            yield views


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    mem_fmt = torch.channels_last if args.channels_last else torch.contiguous_format

    student = build_net(args)
    teacher = build_net(args)
    # Same start weights. (copy.deepcopy fails on nn.utils.weight_norm modules,
    # see pytorch/pytorch#103001, so build twice and copy the state, as DINO does.)
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    student = student.to(memory_format=mem_fmt).train()
    teacher = teacher.to(memory_format=mem_fmt).train()  # teacher tracks its own BN stats

    optimizer = LARS(get_params_groups(student), lr=args.lr, weight_decay=args.weight_decay)
    s_params = [p for p in student.parameters() if p.requires_grad]
    t_params = [pt for ps, pt in zip(student.parameters(), teacher.parameters()) if ps.requires_grad]

    # Random inputs, generated once.
    b = args.batch
    global_views = [torch.randn(b, 3, args.global_size, args.global_size).contiguous(memory_format=mem_fmt)
                    for _ in range(args.global_views)]
    local_views = [torch.randn(b, 3, args.local_size, args.local_size).contiguous(memory_format=mem_fmt)
                   for _ in range(args.local_views)]
    all_views = global_views + local_views
    n_student, n_teacher = len(all_views), len(global_views)
    m = args.momentum_teacher
    batches = data_batches(args) if args.data else None

    def train_step() -> float:
        nonlocal global_views, all_views
        if batches is not None:
            views = [v.contiguous(memory_format=mem_fmt) for v in next(batches)]
            global_views, all_views = views[:n_teacher], views
        with torch.no_grad():
            teacher_out = teacher(global_views)
        student_out = student(all_views)
        consistency, entropy = carp_loss(student_out, teacher_out, n_student, n_teacher, args.partition_size)
        loss = consistency + entropy
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # EMA teacher update, parameter-wise (BN running stats are not averaged).
        with torch.no_grad():
            for ps, pt in zip(s_params, t_params):
                pt.mul_(m).add_(ps.detach(), alpha=1 - m)
        return loss.item()

    for _ in range(args.warmup):
        train_step()

    times = []
    cpu0 = resource_usage()
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = train_step()
        times.append(time.perf_counter() - t0)
    cpu_s = resource_usage() - cpu0
    if not math.isfinite(loss):
        print(f"warning: non-finite loss {loss}", file=sys.stderr)
    total = sum(times)
    step_s = total / len(times)
    img_per_s = b * len(times) / total
    torch_version = torch.__version__.split("+")[0]

    if args.json:
        print(json.dumps({
            "framework": "pytorch",
            "img_per_s": round(img_per_s, 3),
            "step_s": round(step_s, 6),
            "threads": args.threads,
            "batch": b,
            "torch": torch_version,
            "steps": args.steps,
            "warmup": args.warmup,
            "arch": args.arch,
            "k": args.k,
            "partition_size": args.partition_size,
            "global_size": args.global_size,
            "local_size": args.local_size,
            "local_views": args.local_views,
            "channels_last": args.channels_last,
            "step_s_min": round(min(times), 6),
            "base_width": args.base_width,
            "data": args.data,
            "cpu_cores_used": round(cpu_s / total, 3),
            "last_loss": round(loss, 6),
        }))
    else:
        print(f"pytorch img/s: {img_per_s:.1f} (threads {args.threads}, batch {b}, "
              f"steps {args.steps}, torch {torch_version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
