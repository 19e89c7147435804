"""Time per training epoch under mirror descent against SGD, in one interleaved run (issue: deep
networks; docs/deep.md, "Scale").

Each optimizer trains its own copy of the same network on the same generated images (random
pixels, random labels: the epoch's cost does not depend on what is learnt) with the finetuning
protocol's step (syngeo.finetune: cross-entropy, momentum 0.9, float16 autocast + GradScaler on
CUDA). After one untimed warm-up epoch each, epochs run round robin (rotating the order), and
each row reports the median epoch time and the median over rounds of the per-round ratio to
the baseline, ``torch.optim.SGD(momentum=0.9)`` (``fused=True`` on CUDA, ``foreach=True`` on
CPU). MirrorDescent rows take ``fused=True`` (the Triton kernel on CUDA, the C kernel on CPU)
and, with ``--eager``, ``fused=False``.

The default network is torchvision's ResNet-18 at 224×224 on CUDA (``vision`` extra) and
syngeo's SmallCNN at 32×32 on CPU; ``--arch`` picks any :func:`syngeo.models.build_model` name.
The script exits non-zero only on errors.

Usage::

    python benchmarks/bench_finetune.py --quick                 # CPU: about 1 minute
    python benchmarks/bench_finetune.py --device cuda           # ResNet-18, 2560 images
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import sync
from syngeo import MirrorDescent
from syngeo.models import build_model


def _optimizers(device: str, eager: bool) -> dict[str, Callable[[list], torch.optim.Optimizer]]:
    cuda = device.startswith("cuda")
    out: dict[str, Callable[[list], torch.optim.Optimizer]] = {
        "SGD (baseline)": lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9,
                                                     **({"fused": True} if cuda else {"foreach": True})),
        "MD 3-norm": lambda ps: MirrorDescent(ps, lr=1e-3, potential="3-norm", momentum=0.9, fused=True),
        "MD NE": lambda ps: MirrorDescent(ps, lr=1e-3, potential="ne", momentum=0.9, fused=True),
        "MD 2.5-norm": lambda ps: MirrorDescent(ps, lr=1e-3, potential="p=2.5", momentum=0.9, fused=True),
    }  # fmt: skip
    if eager:
        out.update({
            "eager 3-norm": lambda ps: MirrorDescent(ps, lr=1e-3, potential="3-norm", momentum=0.9, fused=False),
            "eager NE": lambda ps: MirrorDescent(ps, lr=1e-3, potential="ne", momentum=0.9, fused=False),
        })  # fmt: skip
    return out


def _epoch(model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
           x: torch.Tensor, y: torch.Tensor, batch: int, amp: bool) -> float:  # fmt: skip
    """One epoch of the protocol's step; returns the last batch's loss (synchronised)."""
    device = x.device
    loss = torch.zeros((), device=device)
    for start in range(0, x.shape[0], batch):
        xb, yb = x[start : start + batch], y[start : start + batch]
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss = nn.functional.cross_entropy(model(xb).float(), yb)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return float(loss.detach())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument(
        "--arch", default=None, help="model name (default: resnet18 on CUDA, cnn on CPU)"
    )
    parser.add_argument("--images", type=int, default=None, help="images per epoch")
    parser.add_argument("--size", type=int, default=None, help="image height and width")
    parser.add_argument("--batch", type=int, default=256, help="batch size (the protocol's 256)")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per optimizer")
    parser.add_argument("--eager", action="store_true", help="add fused=False rows")
    parser.add_argument("--quick", action="store_true", help="fewer images and 2 rounds")
    args = parser.parse_args(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {device}: CUDA is not available on this machine", file=sys.stderr)
        return 2
    cuda = device.startswith("cuda")
    # a randomly initialised network has exact zeros (batch-norm shifts) that NE never moves:
    # syngeo warns about them once per optimizer, which does not matter for timing
    warnings.filterwarnings("ignore", message=".*exactly 0 under the sign-preserving")
    arch = args.arch or ("resnet18" if cuda else "cnn")
    size = args.size or (224 if cuda else 32)
    images = args.images or (
        (1024 if args.quick else 2560) if cuda else (512 if args.quick else 2048)
    )
    rounds = 2 if args.quick else args.rounds
    amp = cuda
    if cuda:
        torch.backends.cudnn.benchmark = True

    g = torch.Generator().manual_seed(0)
    x = torch.rand(images, 3, size, size, generator=g).to(device)
    y = torch.randint(0, 10, (images,), generator=g).to(device)
    torch.manual_seed(0)
    kwargs = {"in_channels": 3, "image_size": size} if arch == "cnn" else {}
    base = build_model(arch, n_classes=10, **kwargs).to(device).train()
    makers = _optimizers(device, args.eager)
    runs = {}
    for name, make in makers.items():
        model = build_model(arch, n_classes=10, **kwargs).to(device).train()
        model.load_state_dict(base.state_dict())
        opt = make([p for p in model.parameters() if p.requires_grad])
        scaler = torch.amp.GradScaler(torch.device(device).type, enabled=amp)
        started = time.perf_counter()
        _epoch(model, opt, scaler, x, y, args.batch, amp)  # warm-up: kernels, cudnn, buffers
        sync(device)
        runs[name] = (model, opt, scaler, time.perf_counter() - started)
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            model, opt, scaler, _ = runs[name]
            sync(device)
            started = time.perf_counter()
            loss = _epoch(model, opt, scaler, x, y, args.batch, amp)
            sync(device)
            times[name].append(time.perf_counter() - started)
            if loss != loss:
                print(f"{name}: the loss became NaN", file=sys.stderr)
                return 1
    n_params = sum(p.numel() for p in base.parameters())
    print(f"\n{arch}: {n_params:,} parameters, {images} images of {size}x{size}, batch "
          f"{args.batch}, device={device}, amp={amp}, {rounds} interleaved epochs per optimizer, "
          f"torch {torch.__version__}")  # fmt: skip
    print(f"{'optimizer':<16} {'median epoch':>13} {'ratio':>8} {'warm-up epoch':>14}")
    for name in names:
        median = statistics.median(times[name])
        ratio = statistics.median(t / b for t, b in zip(times[name], times[names[0]], strict=True))
        print(f"{name:<16} {median:11.3f} s {ratio:7.2f}x {runs[name][3]:12.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
