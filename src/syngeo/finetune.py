r"""Finetune a network under each potential and read every weight change with every candidate.

The paper's deep-network evidence (Pogodin et al. §4.3, appendix B.3; docs/deep.md,
docs/theory.md §2–3): a pretrained network is finetuned by mirror descent under a potential φ,
then the change of its weights is read with every candidate potential ψ. The theory predicts a
Gaussian dual change :math:`\nabla\psi(w) - \nabla\psi(w_0)` for ψ = φ and a non-Gaussian one
otherwise, so the trained-with × read-with matrix of distances to a Gaussian should have its
minimum on the diagonal.

Protocol (:class:`FinetuneProtocol`, defaults = B.3)
----------------------------------------------------
* loss: cross-entropy (or any :class:`Objective`, e.g. :func:`simsiam_objective`);
* :class:`syngeo.MirrorDescent` with momentum 0.9, no weight decay, batch 256, learning rate
  cosine-annealed to 0 over the run (``CosineAnnealingLR`` stepped once per epoch);
* initial learning rate from the grid ``1e-5, 1e-4, …, 1e-1`` (5 points): every rate is trained
  from the same initial weights and the best run is kept (highest final training accuracy, ties
  and objectives without accuracy by the lowest final training loss);
* 30 epochs; while the best run has not reached 100 % training accuracy the whole grid is run
  again with 30 more epochs, up to 4 times (so at most 150 epochs). Every run is logged
  (:attr:`FinetuneResult.log`). The paper's runs all reached 100 %; here ``reached_target``
  says whether they did;
* with ``amp=True`` on a CUDA device: autocast (float16) and ``torch.amp.GradScaler``, whose
  ``step`` calls the optimizer (MirrorDescent follows torch's conventions).

Reading (:func:`read_change`)
-----------------------------
The analysed tensors are chosen by :func:`syngeo.data.weights.select_tensors` (biases,
normalisation parameters and the readout left out, as in the paper). For each candidate ψ and
each tensor, and pooled over all of them: the CDF distance of the uncentred standardised dual
change (:func:`syngeo.cdf_distance`, the paper's statistic), the profile log-likelihood per
synapse of the dual-Gaussian model (:func:`syngeo.inference.change_log_likelihood`; higher is
better), the change magnitude :math:`\|\Delta\|/\|\nabla\psi(w_0)\|`
(:func:`syngeo.change_magnitude`) and the sign flips (:func:`syngeo.sign_changes`). A
sign-preserving candidate (NE) cannot describe a synapse that changed sign or is 0: those
synapses are excluded from its statistics (``n_excluded``), as in the paper.

Data parallel
-------------
When ``torch.distributed`` is initialised (``torchrun``; gloo on CPU, NCCL on GPU) the model is
wrapped in ``DistributedDataParallel``. Every rank draws the same permutation of the data per
epoch; each global batch of ``batch_size`` samples is split into ``world_size`` contiguous
parts, one per rank, and each rank's loss is ``world_size × Σ(its losses) / (global batch
size)``, so the gradient DDP averages is exactly the mean gradient of the global batch, and the
weights equal a one-process run on the same global batches up to float rounding (tested). Only
rank 0 writes files. On GPUs, batch-normalisation layers are converted to
``torch.nn.SyncBatchNorm`` (in place, sharing their parameters and running statistics) before
the model is wrapped, so their batch statistics, too, are those of the global batch. torch's
SyncBatchNorm runs on GPUs only: a model with batch norm trained by several CPU processes is
refused with an :class:`~syngeo.errors.InputError` rather than silently trained on per-rank
statistics.

Examples
--------
>>> import torch
>>> from syngeo.models import SmallCNN
>>> g = torch.Generator().manual_seed(0)
>>> x, y = torch.rand(64, 1, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
>>> result = finetune(SmallCNN(width=2), (x, y), ["2-norm", "3-norm"],
...                   protocol=FinetuneProtocol(lrs=(0.1,), epochs=2, max_extensions=0))
>>> sorted(result.table["read_with"].unique())
['2-norm', '3-norm']
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from syngeo.data.weights import select_tensors
from syngeo.errors import DataFileError, InputError, InputTypeError
from syngeo.gaussianity import cdf_distance, change_magnitude, dual_change, sign_changes
from syngeo.inference import change_log_likelihood
from syngeo.models import simsiam_loss
from syngeo.optim import MirrorDescent
from syngeo.potentials import Potential
from syngeo.potentials import potential as as_potential
from syngeo.validation import (
    as_nonnegative_int,
    as_positive_float,
    as_positive_int,
    as_probability,
    as_seed,
)

__all__ = [
    "PAPER_LRS",
    "FinetuneProtocol",
    "FinetuneResult",
    "Objective",
    "TrainedRun",
    "classification_objective",
    "finetune",
    "finetune_one",
    "load_state_dict_file",
    "pretrain",
    "read_change",
    "simsiam_objective",
]

#: The paper's learning-rate grid: 5 log-spaced values from 1e-5 to 1e-1.
PAPER_LRS: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)

#: What an objective returns for a batch: per-sample losses and per-sample correctness (or None).
Objective = Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Tensor | None]]


def classification_objective(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample cross-entropy and whether the arg-max class is right."""
    logits = model(x)
    if logits.dtype in (torch.float16, torch.bfloat16):  # autocast: the loss in float32
        logits = logits.float()
    losses = nn.functional.cross_entropy(logits, y, reduction="none")
    return losses, logits.argmax(dim=1) == y


def simsiam_objective(
    augment: Callable[[Tensor, torch.Generator], Tensor], seed: int = 0
) -> Objective:
    """SimSiam's loss (:func:`syngeo.models.simsiam_loss`, per sample) on two augmented views.

    ``augment(x, generator)`` returns one random view of the batch; the views are drawn from a
    generator seeded with ``seed`` and advanced batch by batch (so runs are reproducible). There
    is no accuracy: the learning rate is chosen by the lowest final loss.
    """
    gen = torch.Generator().manual_seed(int(seed))

    def objective(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, None]:
        x1, x2 = augment(x, gen), augment(x, gen)
        return simsiam_loss(*model(x1, x2), reduction="none"), None

    return objective


@dataclass(frozen=True)
class FinetuneProtocol:
    """The training protocol (defaults: Pogodin et al. B.3; see the module docstring).

    Attributes
    ----------
    lrs : tuple[float, ...]
        Initial learning rates tried.
    epochs : int
        Epochs of the first round, and the extension per further round.
    max_extensions : int
        Further rounds at most (each ``epochs`` longer) while the target is not reached.
    batch_size : int
        Global batch size (split over the ranks of a distributed run).
    momentum : float
    target_accuracy : float
        Training accuracy at which no further round is run (1.0 = 100 %).
    amp : bool
        Autocast (float16) + GradScaler on CUDA devices; ignored on CPU.
    """

    lrs: tuple[float, ...] = PAPER_LRS
    epochs: int = 30
    max_extensions: int = 4
    batch_size: int = 256
    momentum: float = 0.9
    target_accuracy: float = 1.0
    amp: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.lrs, (str, bytes)) or not hasattr(self.lrs, "__iter__"):
            raise InputTypeError(f"lrs must be a sequence of learning rates, got {self.lrs!r}")
        lrs = tuple(as_positive_float(lr, "each of lrs") for lr in self.lrs)
        if not lrs:
            raise InputError("lrs must hold at least one learning rate")
        object.__setattr__(self, "lrs", lrs)
        as_positive_int(self.epochs, "epochs")
        as_nonnegative_int(self.max_extensions, "max_extensions")
        as_positive_int(self.batch_size, "batch_size")
        if not 0 <= float(self.momentum) < 1:
            raise InputError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        as_probability(self.target_accuracy, "target_accuracy", open_interval=False)

    @property
    def max_epochs(self) -> int:
        return self.epochs * (1 + self.max_extensions)


@dataclass(frozen=True, repr=False)
class TrainedRun:
    """The kept run of one potential: final weights and what the search tried.

    Attributes
    ----------
    potential : str
    lr : float
        Initial learning rate of the kept run.
    epochs : int
    loss, accuracy : float
        Final training loss and accuracy (NaN without accuracy) of the kept run.
    reached_target : bool
    final : dict[str, Tensor]
        The kept run's state dict (CPU).
    log : pandas.DataFrame
        One row per run tried: potential, round, epochs, lr, loss, accuracy, diverged, seconds.
    """

    potential: str
    lr: float
    epochs: int
    loss: float
    accuracy: float
    reached_target: bool
    final: dict[str, Tensor]
    log: pd.DataFrame

    def __repr__(self) -> str:
        return (
            f"TrainedRun({self.potential}, lr={self.lr:g}, epochs={self.epochs}, "
            f"loss={self.loss:.4g}, accuracy={self.accuracy:.4g}, "
            f"reached_target={self.reached_target})"
        )


@dataclass(frozen=True, repr=False)
class FinetuneResult:
    """Result of :func:`finetune`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (trained_with, read_with, layer); ``layer == "pooled"`` is all analysed
        tensors together. Columns: trained_with, read_with, layer, n, n_excluded,
        cdf_distance, log_likelihood (per synapse), magnitude, n_sign_flips.
    runs : dict[str, TrainedRun]
        The kept run per trained-with potential.
    initial : dict[str, Tensor]
        The initial state dict.
    layers : tuple[str, ...]
        The analysed tensors.
    files : dict[str, pathlib.Path]
        Safetensors files written (``initial``, ``final-<potential>``) when ``out`` was given.
    """

    table: pd.DataFrame
    runs: dict[str, TrainedRun]
    initial: dict[str, Tensor]
    layers: tuple[str, ...]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def log(self) -> pd.DataFrame:
        """Every run of every potential's learning-rate search."""
        return pd.concat([r.log for r in self.runs.values()], ignore_index=True)

    def distance_matrix(self, statistic: str = "cdf_distance") -> pd.DataFrame:
        """Pooled ``statistic`` as a trained-with × read-with matrix."""
        pooled = self.table[self.table["layer"] == "pooled"]
        return pooled.pivot(index="trained_with", columns="read_with", values=statistic)

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table.to_dict(orient="records"),
            "runs": {
                k: {
                    "lr": r.lr,
                    "epochs": r.epochs,
                    "loss": r.loss,
                    "accuracy": r.accuracy,
                    "reached_target": r.reached_target,
                }
                for k, r in self.runs.items()
            },
            "layers": list(self.layers),
            "files": {k: str(v) for k, v in self.files.items()},
        }

    def __repr__(self) -> str:
        return (
            f"FinetuneResult(trained_with={list(self.runs)}, layers={len(self.layers)}, "
            f"rows={len(self.table)})"
        )


# --------------------------------------------------------------------------------------------
# Data and distribution helpers
# --------------------------------------------------------------------------------------------


def _as_tensors(data: Any) -> tuple[Tensor, Tensor]:
    if hasattr(data, "images") and hasattr(data, "labels"):
        x, y = data.images, data.labels
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise InputTypeError(
            "data must be an ImageSet (syngeo.data.images) or a pair (inputs, labels) of tensors, "
            f"got {type(data).__name__}"
        )
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.shape[0] == 0:
        raise InputError("the data set is empty: pass at least one sample")
    if x.shape[0] != y.shape[0]:
        raise InputError(f"{x.shape[0]} inputs but {y.shape[0]} labels")
    return x, y


def _dist() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a distributed run."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _all_reduce(values: Tensor) -> Tensor:
    if _dist()[1] > 1:
        torch.distributed.all_reduce(values)
    return values


def _epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[Tensor]:
    """The global batches of one epoch: a permutation drawn from (seed, epoch), the same on
    every rank, cut into batches of ``batch_size`` (the last one may be smaller)."""
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return list(torch.randperm(n, generator=gen).split(batch_size))


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _evaluate(model: nn.Module, x: Tensor, y: Tensor, objective: Objective, device, batch: int):
    """(mean loss, accuracy or NaN) over the whole data set, split over the ranks."""
    rank, world = _dist()
    part = torch.arange(x.shape[0]).tensor_split(world)[rank]
    sums = torch.zeros(3, dtype=torch.float64)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for idx in part.split(batch):
            losses, correct = objective(model, x[idx].to(device), y[idx].to(device))
            sums[0] += float(losses.double().sum())
            sums[1] += float(correct.sum()) if correct is not None else math.nan
            sums[2] += len(idx)
    model.train(was_training)
    sums = _all_reduce(sums)
    return float(sums[0] / sums[2]), float(sums[1] / sums[2])


def _with_global_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with its batch-norm layers synchronised across ranks (GPU), else refused."""
    batch_norms = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)
    ]
    if not batch_norms:
        return model
    if device.type != "cuda":
        raise InputError(
            f"the model has batch-norm layers ({', '.join(batch_norms[:3])}"
            f"{', ...' if len(batch_norms) > 3 else ''}) and several {device.type} processes: "
            "their batch statistics would be per-process, not those of the global batch, and "
            "torch.nn.SyncBatchNorm runs on GPUs only; train on one process or on GPUs"
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _train_once(
    model: nn.Module,
    initial: Mapping[str, Tensor],
    x: Tensor,
    y: Tensor,
    phi: Potential,
    lr: float,
    epochs: int,
    protocol: FinetuneProtocol,
    objective: Objective,
    seed: int,
    device: torch.device,
) -> tuple[float, float, bool]:
    """Train ``model`` from ``initial`` for ``epochs``; (final loss, accuracy, diverged)."""
    model.load_state_dict(initial)
    model.to(device).train()
    rank, world = _dist()
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            _with_global_batch_norm(model, device),
            device_ids=[device.index] if device.type == "cuda" else None,
        )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = MirrorDescent(params, lr=lr, potential=phi, momentum=protocol.momentum)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    autocast_dtype, scaler = _mixed_precision(protocol, device)
    for epoch in range(epochs):
        for batch in _epoch_batches(x.shape[0], protocol.batch_size, seed, epoch):
            idx = batch.tensor_split(world)[rank]
            xb, yb = x[idx].to(device), y[idx].to(device)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                                enabled=autocast_dtype is not None):  # fmt: skip
                losses, _ = objective(net, xb, yb)
            # world × Σ(local losses) / global batch size: DDP's average is the global mean.
            loss = losses.sum() * (world / len(batch))
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        schedule.step()
        if not all(bool(torch.isfinite(p).all()) for p in params):
            return math.inf, math.nan, True
    loss, acc = _evaluate(model, x, y, objective, device, protocol.batch_size)
    return loss, acc, not math.isfinite(loss)


def _mixed_precision(
    protocol: FinetuneProtocol, device: torch.device
) -> tuple[torch.dtype | None, torch.amp.GradScaler]:
    """(autocast dtype, loss scaler) of one training run: float16 autocast and a GradScaler on
    CUDA with ``protocol.amp`` (the B.3 protocol's mixed precision), else no autocast and a
    disabled scaler (its ``scale``/``step`` pass the loss and the step through unchanged)."""
    if protocol.amp and device.type == "cuda":
        return torch.float16, torch.amp.GradScaler("cuda")
    return None, torch.amp.GradScaler(device.type, enabled=False)


def pretrain(
    model: nn.Module,
    data: Any,
    *,
    objective: Objective = classification_objective,
    epochs: int = 15,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> nn.Module:
    """Train ``model`` in place with Adam from its current weights (the stand-in for an ImageNet
    checkpoint in the offline defaults); returned for chaining. Deterministic given ``seed``
    and the initial weights."""
    x, y = _as_tensors(data)
    epochs, batch_size = (
        as_positive_int(epochs, "epochs"),
        as_positive_int(batch_size, "batch_size"),
    )
    opt = torch.optim.Adam(model.parameters(), lr=as_positive_float(lr, "lr"))
    gen = torch.Generator().manual_seed(as_seed(seed))
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(x.shape[0], generator=gen).split(batch_size):
            opt.zero_grad(set_to_none=True)
            losses, _ = objective(model, x[idx], y[idx])
            losses.mean().backward()
            opt.step()
    return model


def _better(a: tuple[float, float], b: tuple[float, float] | None) -> bool:
    """Is run ``a`` = (accuracy, loss) better than ``b``: higher accuracy, then lower loss."""
    if b is None:
        return True
    acc_a = -math.inf if math.isnan(a[0]) else a[0]
    acc_b = -math.inf if math.isnan(b[0]) else b[0]
    if acc_a != acc_b:
        return acc_a > acc_b
    return a[1] < b[1]


def finetune_one(
    model: nn.Module,
    data: Any,
    potential: Any,
    *,
    protocol: FinetuneProtocol | None = None,
    objective: Objective = classification_objective,
    seed: int = 0,
    device: Any = None,
    log: Callable[[str], None] | None = None,
) -> TrainedRun:
    """Finetune a copy of ``model`` under one potential with the learning-rate search and epoch
    extension of ``protocol`` (module docstring); ``model`` itself is not changed.

    Raises
    ------
    InputError
        Bad data, potential or protocol; every run diverged.
    """
    protocol = FinetuneProtocol() if protocol is None else protocol
    phi = as_potential(potential)
    seed = as_seed(seed)
    x, y = _as_tensors(data)
    device = torch.device(device) if device is not None else torch.device("cpu")
    initial = _state(model)
    work = copy.deepcopy(model)
    rows: list[dict[str, Any]] = []
    best: tuple[tuple[float, float], float, int, dict[str, Tensor]] | None = None
    for round_ in range(protocol.max_extensions + 1):
        epochs = protocol.epochs * (round_ + 1)
        for lr in protocol.lrs:
            start = time.perf_counter()
            loss, acc, diverged = _train_once(
                work, initial, x, y, phi, lr, epochs, protocol, objective, seed, device
            )
            rows.append(
                {
                    "potential": phi.name,
                    "round": round_,
                    "epochs": epochs,
                    "lr": lr,
                    "loss": loss,
                    "accuracy": acc,
                    "diverged": diverged,
                    "seconds": time.perf_counter() - start,
                }
            )
            if log is not None:
                log(f"{phi.name}: lr {lr:g}, {epochs} epochs: loss {loss:.4g}, accuracy {acc:.4g}")
            if not diverged and _better((acc, loss), best[0] if best else None):
                best = ((acc, loss), lr, epochs, _state(work))
        if best is not None and best[0][0] >= protocol.target_accuracy:
            break
    if best is None:
        raise InputError(
            f"every finetuning run under {phi.name} diverged (learning rates "
            f"{', '.join(f'{lr:g}' for lr in protocol.lrs)}); try smaller learning rates"
        )
    (acc, loss), lr, epochs, final = best
    return TrainedRun(
        potential=phi.name,
        lr=lr,
        epochs=epochs,
        loss=loss,
        accuracy=acc,
        reached_target=bool(acc >= protocol.target_accuracy),
        final=final,
        log=pd.DataFrame(rows),
    )


# --------------------------------------------------------------------------------------------
# Reading the change
# --------------------------------------------------------------------------------------------


def analysed_layers(
    state: Mapping[str, Tensor], *, layer: Sequence[str] = (), exclude: Sequence[str] = ()
) -> tuple[str, ...]:
    """The tensors of a state dict that are read (biases, norms, readout left out)."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    dtypes = {k: ("float" if v.is_floating_point() else str(v.dtype)) for k, v in state.items()}
    used, _ = select_tensors(shapes, dtypes=dtypes, layer=tuple(layer), exclude=tuple(exclude))
    if not used:
        raise InputError(
            "no tensor is left to analyse after leaving out biases, normalisation parameters and "
            "the readout; pass layer globs to choose tensors"
        )
    return tuple(used)


def _read_one(before: np.ndarray, after: np.ndarray, psi: Potential) -> dict[str, Any]:
    flips = sign_changes(before, after)
    n_excluded = 0
    if psi.preserves_sign and not flips.ne_valid:
        keep = (np.sign(before) == np.sign(after)) & (before != 0) & (after != 0)
        n_excluded = int(before.size - keep.sum())
        before, after = before[keep], after[keep]
    row = {
        "n": int(before.size),
        "n_excluded": n_excluded,
        "n_sign_flips": flips.n_sign_flips,
        "cdf_distance": math.nan,
        "log_likelihood": math.nan,
        "magnitude": math.nan,
    }
    if before.size < 2 or not np.any(before != after):
        return row
    delta = dual_change(before, after, psi)
    if np.std(delta) > 0:
        row["cdf_distance"] = cdf_distance(delta)
    row["magnitude"] = change_magnitude(before, after, psi)
    like = change_log_likelihood(before, after, psi)
    row["log_likelihood"] = like.log_likelihood / like.n
    return row


def read_change(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    candidates: Sequence[Any],
    *,
    layers: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read the change from ``before`` to ``after`` (state dicts) with every candidate.

    Returns one row per (read_with, layer), ``layer == "pooled"`` for all ``layers`` together
    (default: :func:`analysed_layers` of ``before``). Columns: read_with, layer, n, n_excluded,
    n_sign_flips, cdf_distance, log_likelihood (per synapse), magnitude (module docstring).

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> w0 = {"a.weight": torch.randn(40, 40, generator=g)}
    >>> w1 = {"a.weight": w0["a.weight"] + 0.01 * torch.randn(40, 40, generator=g)}
    >>> t = read_change(w0, w1, ["2-norm", "3-norm"])
    >>> pooled = t[t["layer"] == "pooled"].set_index("read_with")
    >>> bool(pooled.loc["2-norm", "cdf_distance"] < pooled.loc["3-norm", "cdf_distance"])
    True
    """
    if not candidates:
        raise InputError("pass at least one candidate potential to read the change with")
    psis = [as_potential(c) for c in candidates]
    names = tuple(analysed_layers(before)) if layers is None else tuple(layers)
    missing = [n for n in names if n not in before or n not in after]
    if missing:
        raise InputError(f"tensors {missing} are not in both BEFORE and AFTER")
    flat_b = {
        n: np.asarray(
            before[n].detach().cpu().double().numpy()
            if hasattr(before[n], "detach")
            else before[n],
            dtype=np.float64,
        ).ravel()
        for n in names
    }
    flat_a = {
        n: np.asarray(
            after[n].detach().cpu().double().numpy() if hasattr(after[n], "detach") else after[n],
            dtype=np.float64,
        ).ravel()
        for n in names
    }
    for n in names:
        if flat_b[n].shape != flat_a[n].shape:
            raise InputError(
                f"tensor {n} has {flat_b[n].size} weights before and {flat_a[n].size} after"
            )
    pooled_b = np.concatenate([flat_b[n] for n in names])
    pooled_a = np.concatenate([flat_a[n] for n in names])
    rows = []
    for psi in psis:
        for name in names:
            rows.append(
                {"read_with": psi.name, "layer": name, **_read_one(flat_b[name], flat_a[name], psi)}
            )
        rows.append(
            {"read_with": psi.name, "layer": "pooled", **_read_one(pooled_b, pooled_a, psi)}
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# The whole protocol
# --------------------------------------------------------------------------------------------


def _save(path: Path, state: Mapping[str, Tensor]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, path)


def finetune(
    model: nn.Module,
    data: Any,
    potentials: Sequence[Any] = ("2-norm", "3-norm", "NE"),
    *,
    candidates: Sequence[Any] | None = None,
    protocol: FinetuneProtocol | None = None,
    objective: Objective = classification_objective,
    seed: int = 0,
    device: Any = None,
    layer: Sequence[str] = (),
    exclude: Sequence[str] = (),
    out: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> FinetuneResult:
    """Finetune ``model`` on ``data`` under each potential and read every change with every
    candidate (module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        The (pretrained) network; it is not modified.
    data : ImageSet or (inputs, labels)
        The finetuning set, in memory.
    potentials : sequence
        Potentials trained with.
    candidates : sequence, optional
        Potentials read with (default: ``potentials``).
    protocol : FinetuneProtocol
    objective : callable
        Per-sample losses and correctness (:func:`classification_objective`,
        :func:`simsiam_objective`).
    seed : int
        Order of the samples in every run.
    device : str or torch.device, optional
    layer, exclude : sequence of globs
        Which tensors are read (:func:`syngeo.data.weights.select_tensors`).
    out : path, optional
        Folder for ``initial.safetensors`` and ``final-<potential>.safetensors`` (rank 0 only).
    log : callable, optional
        Receives one line per run of the learning-rate search.
    """
    if isinstance(potentials, (str, bytes)) or not potentials:
        raise InputError("potentials must be a non-empty list, e.g. ['2-norm', '3-norm', 'NE']")
    phis = [as_potential(p) for p in potentials]
    if len({p.name for p in phis}) != len(phis):
        raise InputError(f"potentials must be distinct, got {[p.name for p in phis]}")
    reads = phis if candidates is None else [as_potential(c) for c in candidates]
    initial = _state(model)
    layers = analysed_layers(initial, layer=layer, exclude=exclude)
    runs: dict[str, TrainedRun] = {}
    tables = []
    for phi in phis:
        run = finetune_one(
            model,
            data,
            phi,
            protocol=protocol,
            objective=objective,
            seed=seed,
            device=device,
            log=log,
        )
        runs[phi.name] = run
        table = read_change(initial, run.final, reads, layers=layers)
        table.insert(0, "trained_with", phi.name)
        tables.append(table)
    files: dict[str, Path] = {}
    if out is not None and _dist()[0] == 0:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        files["initial"] = folder / "initial.safetensors"
        _save(files["initial"], initial)
        for name, run in runs.items():
            files[f"final-{name}"] = folder / f"final-{name}.safetensors"
            _save(files[f"final-{name}"], run.final)
    return FinetuneResult(
        table=pd.concat(tables, ignore_index=True),
        runs=runs,
        initial=initial,
        layers=layers,
        files=files,
    )


# --------------------------------------------------------------------------------------------
# Loading checkpoints
# --------------------------------------------------------------------------------------------

_PREFIXES = ("module.", "model.", "_orig_mod.", "encoder.", "backbone.")


def load_state_dict_file(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a checkpoint into ``model`` (in place; returned): a torchvision or timm state_dict,
    a plain one, or one wrapped in a checkpoint (``{"state_dict": ...}``), ``.pt/.pth/.bin/.ckpt``
    via ``torch.load(weights_only=True)`` or ``.safetensors``. Prefixes added by
    DataParallel/DDP (``module.``) or ``torch.compile`` (``_orig_mod.``) are removed.

    Raises
    ------
    DataFileError
        A missing, unreadable or corrupted file.
    InputError
        Tensors missing from the file, unexpected ones, or shapes that differ from ``model``'s
        (the checkpoint is for another architecture); the message lists a few.
    """
    from syngeo.data.weights import read_tensors

    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"--weights {path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".safetensors", ".pt", ".pth", ".bin", ".ckpt"):
        tensors = read_tensors(path)
    else:
        raise DataFileError(
            f"--weights {path}: unknown file type {suffix!r}; use .pt, .pth, .bin, .ckpt or .safetensors"
        )
    expected = model.state_dict()
    for prefix in _PREFIXES:
        if (
            tensors
            and not any(k in expected for k in tensors)
            and all(k.startswith(prefix) for k in tensors)
        ):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    wrong = [
        f"{k} {tuple(tensors[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tuple(tensors[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} tensors missing ({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''})"
            )
        if unexpected:
            parts.append(
                f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])}{', …' if len(unexpected) > 3 else ''})"
            )
        if wrong:
            parts.append(f"{len(wrong)} with other shapes ({'; '.join(wrong[:3])})")
        raise InputError(
            f"--weights {path} does not fit the {type(model).__name__} model: {'; '.join(parts)}; "
            "check --arch (and the number of classes)"
        )
    model.load_state_dict({k: torch.as_tensor(v) for k, v in tensors.items()})
    return model
