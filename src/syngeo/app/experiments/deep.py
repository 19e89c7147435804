r"""Deep networks finetuned under each geometry and read back (Pogodin et al. Figs. 4, 7A, 7B).

Three :class:`~syngeo.app.experiments.base.Experiment` objects over one cell function
(docs/deep.md):

* :data:`FIG4` (``fig4``): a convolutional network (:class:`syngeo.models.SmallCNN`, several
  widths) pretrained on part of the data and finetuned with cross-entropy on held-out data;
* :data:`FIG7A` (``fig7a``): an RNN reading the images row by row (:class:`syngeo.models.RowRNN`);
* :data:`FIG7B` (``fig7b``): SimSiam (:class:`syngeo.models.SimSiam` with a SmallCNN encoder,
  stop-gradient loss, random-shift/contrast/noise views), finetuned with its own loss; the
  encoder's weights are read.

Offline data: scikit-learn's bundled 8×8 digits (1797 images), no download. ``data_dir`` points
``fig7a`` at the standard MNIST IDX files instead (train split to pretrain, test split to
finetune, as in the paper).

One cell = (architecture, width, trained-with potential, seed)
--------------------------------------------------------------
1. The network is pretrained once per (architecture, width) in the process (Adam, cross-entropy or
   the SimSiam loss, ``pretrain_epochs`` epochs on ``n_pretrain`` images drawn with
   ``config.seed``); the result is memoised, so the cells of one process share it. The cell
   function has no handle on the output folder, so the pretrained weights are not written there;
   ``syngeo finetune --out`` writes the initial and final weights of its runs as safetensors.
2. ``n_finetune`` held-out images are drawn with (``config.seed``, seed) and the network is
   finetuned under the cell's potential by :func:`syngeo.finetune.finetune_one` (the B.3
   protocol: learning-rate grid, cosine annealing, momentum 0.9, epoch extension until 100 %
   training accuracy; SimSiam: lowest loss, no extension).
3. The change is read with every candidate by :func:`syngeo.finetune.read_change`: one row per
   (read-with potential, layer) plus a pooled row, with the CDF distance, the log-likelihood per
   synapse, the change magnitude and the sign flips; pooled rows also hold a histogram of the
   standardised dual change for the figure.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

import syngeo
from syngeo.app.experiments.base import Experiment
from syngeo.app.formatting import fmt, markdown_table, plural
from syngeo.data.images import ImageSet, load_digits_images, load_mnist
from syngeo.errors import InputError
from syngeo.finetune import (
    PAPER_LRS,
    FinetuneProtocol,
    analysed_layers,
    classification_objective,
    finetune_one,
    pretrain,
    read_change,
    simsiam_objective,
)
from syngeo.gaussianity import gaussian_null
from syngeo.models import RowRNN, SimSiam, SmallCNN
from syngeo.threads import limit_threads
from syngeo.validation import as_positive_int

__all__ = ["FIG4", "FIG7A", "FIG7B", "DeepConfig", "cells", "run_cell", "summarise"]

#: Histogram of the standardised dual change z = Δ/std(Δ) stored per pooled row.
HIST_EDGES = np.linspace(-5.0, 5.0, 41)
_KINDS = ("supervised-cnn", "supervised-rnn", "simsiam")


@dataclass(frozen=True)
class DeepConfig:
    """Settings of a deep-network experiment (defaults: the paper's protocol at small scale).

    Attributes
    ----------
    kind : str
        ``"supervised-cnn"`` (fig4), ``"supervised-rnn"`` (fig7a) or ``"simsiam"`` (fig7b).
    widths : tuple[int, ...]
        Network widths (CNN channels, RNN hidden units).
    potentials : tuple[str, ...]
        Trained with; also read with, plus ``extra_candidates``.
    extra_candidates : tuple[str, ...]
    n_seeds : int
        Finetuning subsets (and sample orders) per (width, potential).
    seed : int
        Base seed: pretraining split, initialisation.
    n_pretrain, n_finetune : int
        Images to pretrain on, and in each finetuning subset (drawn from the rest).
    pretrain_epochs : int
    pretrain_lr : float
        Adam's learning rate for pretraining.
    lrs, epochs, max_extensions, batch_size, momentum : as in :class:`syngeo.finetune.FinetuneProtocol`
    data_dir : str or None
        A folder with the MNIST IDX files (fig7a); None: scikit-learn digits.
    """

    kind: str = "supervised-cnn"
    widths: tuple[int, ...] = (4, 8, 16)
    potentials: tuple[str, ...] = ("2-norm", "3-norm", "NE")
    extra_candidates: tuple[str, ...] = ()
    n_seeds: int = 3
    seed: int = 0
    n_pretrain: int = 1200
    n_finetune: int = 256
    pretrain_epochs: int = 15
    pretrain_lr: float = 3e-3
    lrs: tuple[float, ...] = PAPER_LRS
    epochs: int = 30
    max_extensions: int = 4
    batch_size: int = 256
    momentum: float = 0.9
    data_dir: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise InputError(f"kind must be one of {', '.join(_KINDS)}, got {self.kind!r}")
        for name in ("widths", "potentials", "extra_candidates", "lrs"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(
            self, "widths", tuple(as_positive_int(w, "each width") for w in self.widths)
        )
        names = tuple(syngeo.potential(p).name for p in self.potentials)
        if not names or len(set(names)) != len(names):
            raise InputError(f"potentials must be distinct and non-empty, got {self.potentials!r}")
        object.__setattr__(self, "potentials", names)
        object.__setattr__(
            self, "extra_candidates", tuple(syngeo.potential(p).name for p in self.extra_candidates)
        )
        for name in ("n_seeds", "n_pretrain", "n_finetune", "pretrain_epochs"):
            as_positive_int(getattr(self, name), name)
        _ = self.protocol  # validates lrs, epochs, batch size and momentum

    @property
    def protocol(self) -> FinetuneProtocol:
        simsiam = self.kind == "simsiam"
        return FinetuneProtocol(
            lrs=self.lrs,
            epochs=self.epochs,
            max_extensions=0 if simsiam else self.max_extensions,
            batch_size=self.batch_size,
            momentum=self.momentum,
        )

    @property
    def candidates(self) -> tuple[str, ...]:
        return self.potentials + tuple(c for c in self.extra_candidates if c not in self.potentials)


def _quick(cls: type, widths: tuple[int, ...], **kw: Any) -> Any:
    return cls(
        widths=widths,
        n_seeds=1,
        lrs=(1e-3, 1e-2, 1e-1),
        epochs=10,
        max_extensions=2,
        batch_size=64,
        pretrain_epochs=10,
        **kw,
    )


@dataclass(frozen=True)
class Fig7AConfig(DeepConfig):
    """Fig. 7A: the RNN on row-wise sequential digits (or MNIST with ``data_dir``)."""

    kind: str = "supervised-rnn"
    widths: tuple[int, ...] = (16, 32, 64)
    pretrain_lr: float = 1e-2


@dataclass(frozen=True)
class Fig7BConfig(DeepConfig):
    """Fig. 7B: SimSiam, 50 epochs, learning rate by the lowest loss (paper B.3)."""

    kind: str = "simsiam"
    widths: tuple[int, ...] = (8, 16)
    epochs: int = 50


def fig4_quick() -> DeepConfig:
    """One width, one seed, 3 learning rates, 10 epochs (+ up to 2 extensions), batch 64."""
    return _quick(DeepConfig, (8,))


def fig7a_quick() -> Fig7AConfig:
    """One width (32 hidden units), one seed, the fig4 quick protocol."""
    return _quick(Fig7AConfig, (32,))


def fig7b_quick() -> Fig7BConfig:
    """One width, one seed, the fig4 quick protocol (10 epochs, no extension)."""
    return _quick(Fig7BConfig, (8,))


# --------------------------------------------------------------------------------------------
# Data, models, pretraining
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _data(data_dir: str | None) -> tuple[ImageSet, ImageSet | None]:
    if data_dir is None:
        return load_digits_images(), None
    return load_mnist(data_dir, "train"), load_mnist(data_dir, "test")


def _splits(config: DeepConfig) -> tuple[ImageSet, ImageSet]:
    first, second = _data(config.data_dir)
    if second is None:
        if config.n_pretrain >= len(first):
            raise InputError(f"n_pretrain must be below {len(first)} (the images available)")
        return first.split(config.n_pretrain, rng=config.seed)
    order = np.random.default_rng(config.seed).permutation(len(first))[: config.n_pretrain]
    return first.subset(order), second


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random view: a shift of up to one pixel, a contrast factor in [0.7, 1.3] and pixel
    noise of s.d. 0.05 (SimSiam's crops and colour jitter, for 8×8 greyscale images)."""
    n = x.shape[0]
    dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=gen))
    view = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    scale = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=gen)
    return view * scale + 0.05 * torch.randn(x.shape, generator=gen)


def _build(config: DeepConfig, width: int, image: ImageSet) -> torch.nn.Module:
    side = int(image.images.shape[-1])
    if config.kind == "supervised-rnn":
        return RowRNN(hidden=width, n_classes=image.n_classes, input_size=side)
    cnn = SmallCNN(width=width, n_classes=image.n_classes, image_size=side)
    if config.kind == "simsiam":
        return SimSiam(cnn, cnn.feature_dim, dim=32, pred_dim=16)
    return cnn


def _objective(config: DeepConfig, seed: int):
    if config.kind == "simsiam":
        return simsiam_objective(augment, seed)
    return classification_objective


@functools.lru_cache(maxsize=8)
def _pretrained(config: DeepConfig, width: int) -> tuple[dict[str, torch.Tensor], float]:
    """(state dict, held-out accuracy or NaN) of the pretrained network; memoised."""
    pre, held = _splits(config)
    torch.manual_seed(config.seed)
    model = _build(config, width, pre)
    pretrain(
        model,
        pre,
        objective=_objective(config, config.seed),
        epochs=config.pretrain_epochs,
        lr=config.pretrain_lr,
        seed=config.seed,
    )
    model.eval()
    with torch.no_grad():
        if config.kind == "simsiam":
            accuracy = _knn_accuracy(model.encoder.features, pre, held)
        else:
            accuracy = float((model(held.images).argmax(1) == held.labels).float().mean())
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, accuracy


#: Neighbours in the vote that scores a SimSiam encoder (:func:`_knn_accuracy`).
KNN_NEIGHBOURS = 10


def _knn_accuracy(features: Any, reference: ImageSet, held: ImageSet) -> float:
    """Held-out accuracy of a :data:`KNN_NEIGHBOURS`-nearest-neighbour vote (cosine distance)
    on the features of ``reference``: the usual read-out of a self-supervised encoder."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=KNN_NEIGHBOURS, metric="cosine")
    knn.fit(features(reference.images).numpy(), reference.labels.numpy())
    return float(knn.score(features(held.images).numpy(), held.labels.numpy()))


def _cached_pretrained(config: DeepConfig, width: int) -> tuple[dict[str, torch.Tensor], float]:
    """:func:`_pretrained`, kept in the sweep's cache folder (``OUT/cache``) when there is one.

    The file is named by a hash of the whole configuration, the width and the syngeo version,
    so a cached network is reused only by a run that would have trained the same one. The
    state dict's key order is stored too (safetensors sorts keys; layer rows follow the order).
    """
    import hashlib

    from safetensors import safe_open
    from safetensors.torch import save_file

    from syngeo.app.outputs import atomic_write
    from syngeo.app.sweep import cache_dir

    folder = cache_dir()
    if folder is None:
        return _pretrained(config, width)
    # format 2: the SimSiam entry holds its encoder's kNN accuracy (NaN before)
    tag = f"{config!r}|{width}|{syngeo.__version__}|format 2"
    key = hashlib.sha256(tag.encode()).hexdigest()[:16]
    path = folder / f"pretrained-{config.kind}-width{width}-{key}.safetensors"
    if path.is_file():
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
            state = {k: f.get_tensor(k) for k in json.loads(meta["order"])}
        return state, float(meta["accuracy"])
    state, accuracy = _pretrained(config, width)
    tensors = {k: v.contiguous() for k, v in state.items()}
    meta = {"accuracy": repr(accuracy), "order": json.dumps(list(state))}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return state, accuracy


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------


def cells(config: DeepConfig) -> list[dict]:
    """One cell per (width, potential, seed); widest first."""
    arch = {"supervised-cnn": "cnn", "supervised-rnn": "rnn", "simsiam": "simsiam-cnn"}[config.kind]
    return [
        {"arch": arch, "width": w, "potential": p, "seed": s}
        for w in sorted(config.widths, reverse=True)
        for p in config.potentials
        for s in range(config.n_seeds)
    ]


def _histogram(before: np.ndarray, after: np.ndarray, potential: str) -> tuple[list[int], float]:
    phi = syngeo.potential(potential)
    if phi.preserves_sign:
        keep = (np.sign(before) == np.sign(after)) & (before != 0) & (after != 0)
        before, after = before[keep], after[keep]
    delta = syngeo.dual_change(before, after, phi)
    std = float(np.std(delta))
    if not std > 0:
        return [0] * (len(HIST_EDGES) - 1), math.nan
    z = delta / std
    counts, _ = np.histogram(np.clip(z, HIST_EDGES[0], HIST_EDGES[-1]), HIST_EDGES)
    return [int(c) for c in counts], float(np.mean(z))


def run_cell(config: DeepConfig, cell: dict) -> list[dict]:
    """Rows (one per read-with potential and layer, plus pooled) of one cell (module docstring)."""
    import time

    width, seed, potential = int(cell["width"]), int(cell["seed"]), str(cell["potential"])
    with limit_threads(1):
        start = time.perf_counter()
        initial, pretrain_accuracy = _cached_pretrained(config, width)
        _, held = _splits(config)
        if config.n_finetune > len(held):
            raise InputError(f"n_finetune must be at most {len(held)} (the held-out images)")
        rng = np.random.default_rng((config.seed, seed))
        subset = held.subset(rng.choice(len(held), config.n_finetune, replace=False))
        model = _build(config, width, held)
        model.load_state_dict(initial)
        run = finetune_one(
            model,
            subset,
            potential,
            protocol=config.protocol,
            objective=_objective(config, seed),
            seed=seed,
        )
        layers = analysed_layers(initial, layer=("encoder.*",) if config.kind == "simsiam" else ())
        table = read_change(initial, run.final, config.candidates, layers=layers)
    before = np.concatenate([initial[n].double().numpy().ravel() for n in layers])
    after = np.concatenate([run.final[n].double().numpy().ravel() for n in layers])
    rows = []
    for row in table.to_dict(orient="records"):
        hist, z_mean = ([], math.nan)
        if row["layer"] == "pooled":
            hist, z_mean = _histogram(before, after, row["read_with"])
        rows.append(
            {
                "arch": cell["arch"],
                "width": width,
                "trained_with": potential,
                "seed": seed,
                **row,
                "z_hist": json.dumps(hist),
                "z_mean": z_mean,
                "lr": run.lr,
                "epochs": run.epochs,
                "train_loss": run.loss,
                "train_accuracy": run.accuracy,
                "reached_target": run.reached_target,
                "n_runs": len(run.log),
                "pretrain_accuracy": pretrain_accuracy,
                "n_weights": int(before.size),
                "seconds": time.perf_counter() - start,
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# Summary, figures, report
# --------------------------------------------------------------------------------------------

_ORDER = ("2-norm", "3-norm", "NE")


def _order(names) -> list[str]:
    names = list(dict.fromkeys(names))
    return [p for p in _ORDER if p in names] + sorted(p for p in names if p not in _ORDER)


def _pooled(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["layer"] == "pooled"]


def _matrix(df: pd.DataFrame, stat: str, width: int | None = None) -> pd.DataFrame:
    part = _pooled(df)
    if width is not None:
        part = part[part["width"] == width]
    m = part.groupby(["trained_with", "read_with"])[stat].mean().unstack()
    rows, cols = _order(m.index), _order(m.columns)
    return m.loc[rows, cols]


def _diagonal_check(m: pd.DataFrame, best: str) -> list[dict]:
    """Per trained-with row: is its own column the row's best (min or max), and by how much."""
    out = []
    for phi in m.index:
        if phi not in m.columns:
            continue
        row = m.loc[phi].dropna()
        if phi not in row.index:  # nothing measurable (e.g. the weights did not change)
            out.append(
                {
                    "trained_with": phi,
                    "diagonal": math.nan,
                    "row_best": "n/a",
                    "holds": False,
                    "margin": math.nan,
                }
            )
            continue
        target = row.idxmin() if best == "min" else row.idxmax()
        others = row.drop(phi)
        margin = (
            (float(others.min() - row[phi]) if best == "min" else float(row[phi] - others.max()))
            if len(others)
            else math.nan
        )
        out.append(
            {
                "trained_with": phi,
                "diagonal": float(row[phi]),
                "row_best": str(target),
                "holds": bool(target == phi),
                "margin": margin,
            }
        )
    return out


#: Gaussian samples drawn for the report's Gaussian floor of the CDF distance.
GAUSSIAN_FLOOR_DRAWS = 199


def summarise(df: pd.DataFrame, config: DeepConfig) -> dict:
    """Headline numbers: the diagonal checks per width and pooled, magnitudes, training."""
    if not len(df):
        return {"n_rows": 0}
    widths = sorted(int(w) for w in df["width"].unique())
    checks: dict[str, Any] = {}
    for stat, best in (("cdf_distance", "min"), ("log_likelihood", "max")):
        checks[stat] = {
            "all_widths": _diagonal_check(_matrix(df, stat), best),
            "by_width": {str(w): _diagonal_check(_matrix(df, stat, w), best) for w in widths},
        }
    ne_check = None
    m = _matrix(df, "cdf_distance")
    if "NE" in m.columns and "NE" in m.index:

        def best_is_ne(phi: str, worst: bool) -> bool:
            row = m.loc[phi].dropna()
            return bool(len(row)) and (row.idxmax() if worst else row.idxmin()) == "NE"

        ne_check = {
            "best_for_ne_trained": best_is_ne("NE", worst=False),
            "worst_for_other_rows": {
                str(phi): best_is_ne(phi, worst=True) for phi in m.index if phi != "NE"
            },
        }
    own = _pooled(df)
    own = own[own["trained_with"] == own["read_with"]]
    magnitudes = (
        own.groupby(["width", "trained_with"])["magnitude"]
        .median()
        .reset_index()
        .to_dict(orient="records")
    )
    per_cell = own.drop_duplicates(["width", "trained_with", "seed"])
    n_weights = {str(w): int(per_cell[per_cell.width == w]["n_weights"].iloc[0]) for w in widths}
    return {
        "n_rows": len(df),
        "widths": widths,
        "diagonal_is_row_min_cdf": all(c["holds"] for c in checks["cdf_distance"]["all_widths"]),
        "diagonal_is_row_max_likelihood": all(
            c["holds"] for c in checks["log_likelihood"]["all_widths"]
        ),
        "checks": checks,
        "ne_reading": ne_check,
        "magnitude_own_potential": magnitudes,
        "fraction_reached_100_percent": float(per_cell["reached_target"].mean())
        if config.kind != "simsiam"
        else None,
        "short_of_100_percent": [
            {
                "width": int(r.width),
                "trained_with": str(r.trained_with),
                "seed": int(r.seed),
                "train_accuracy": float(r.train_accuracy),
                "epochs": int(r.epochs),
                "magnitude": float(r.magnitude),
            }
            for r in per_cell[~per_cell["reached_target"].astype(bool)].itertuples()
        ]
        if config.kind != "simsiam"
        else [],
        "mean_pretrain_accuracy": float(per_cell["pretrain_accuracy"].mean()),
        "n_weights": n_weights,
        # the CDF distance an exactly Gaussian sample of the same size stays below in 95 % of
        # draws: the diagonal's distances are Gaussian in absolute terms only at or below it
        "gaussian_floor": {
            w: float(np.quantile(gaussian_null("cdf", n, draws=GAUSSIAN_FLOOR_DRAWS, rng=0), 0.95))
            for w, n in n_weights.items()
        },
    }


def _absolute_gaussianity(s: dict) -> str:
    """The report's sentence comparing the diagonal's CDF distances with the Gaussian floor."""
    parts, above, within = [], 0, 0
    for w, floor in s["gaussian_floor"].items():
        diag = [c["diagonal"] for c in s["checks"]["cdf_distance"]["by_width"][w]]
        diag = [d for d in diag if math.isfinite(d)]
        if not diag:
            continue
        above += sum(d > floor for d in diag)
        within += sum(d <= floor for d in diag)
        parts.append(f"width {w}: diagonal {fmt(min(diag))}–{fmt(max(diag))}, floor {fmt(floor)}")
    if not parts:
        return "* **Gaussian in absolute terms**: no diagonal distance was measured."
    verdict = (
        "Every diagonal entry is within the floor: the trained-with reading is indistinguishable "
        "from a Gaussian."
        if not above
        else "Every diagonal entry is above the floor: no trained-with reading is Gaussian in "
        "absolute terms (the paper's claim, above, compares the read-with potentials)."
        if not within
        else f"{within} of {within + above} diagonal entries are within the floor, "
        f"{above} above it."
    )
    return (
        "* **Gaussian in absolute terms** (the floor: the CDF distance an exactly Gaussian sample "
        f"of the same size stays below in 95 % of {GAUSSIAN_FLOOR_DRAWS} draws; the diagonal: "
        "means over seeds): " + "; ".join(parts) + ". " + verdict
    )


def _plot(df: pd.DataFrame, config: DeepConfig, stem: str) -> dict:
    from scipy.stats import norm

    from syngeo.app.plotting import geometry_style, subplots

    figs = {}
    fig, axes = subplots(1, 3, width=3.4, height=3.0, squeeze=False)
    axes = axes[0]
    if len(df):
        for ax, stat, label, cmap in (
            (axes[0], "cdf_distance", "CDF distance d (lower = more Gaussian)", "viridis"),
            (axes[1], "log_likelihood", "log-likelihood per synapse (higher = better)", "magma"),
        ):
            m = _matrix(df, stat)
            im = ax.imshow(m.to_numpy(float), cmap=cmap)
            ax.set_xticks(range(len(m.columns)), m.columns)
            ax.set_yticks(range(len(m.index)), m.index)
            ax.set_xlabel("read with ψ")
            ax.set_ylabel("trained with φ")
            ax.set_title(label, fontsize=8)
            ax.grid(False)
            for i in range(m.shape[0]):
                for j in range(m.shape[1]):
                    dark = (
                        float(im.norm(m.iat[i, j])) < 0.5
                    )  # both colour maps are dark at the low end
                    ax.text(
                        j,
                        i,
                        fmt(m.iat[i, j], ".3g"),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="w" if dark else "k",
                    )
            fig.colorbar(im, ax=ax, shrink=0.8)
        own = _pooled(df)
        own = own[own["trained_with"] == own["read_with"]]
        widths = sorted(own["width"].unique())
        names = _order(own["trained_with"].unique())
        step = 0.8 / max(len(names), 1)
        for k, name in enumerate(names):
            med = [
                own[(own.width == w) & (own.trained_with == name)]["magnitude"].median()
                for w in widths
            ]
            axes[2].bar(
                np.arange(len(widths)) + k * step,
                med,
                step,
                color=geometry_style(name).color,
                label=geometry_style(name).label,
            )
        axes[2].set_xticks(np.arange(len(widths)) + 0.4 - step / 2, [str(w) for w in widths])
        axes[2].set_xlabel("width")
        axes[2].set_ylabel("‖Δ‖/‖∇φ(w0)‖ (trained = read)")
        axes[2].set_title("change magnitude", fontsize=8)
        axes[2].legend(fontsize=7)
    figs[stem] = fig

    names = _order(df["trained_with"].unique()) if len(df) else list(config.potentials)
    reads = _order(df["read_with"].unique()) if len(df) else list(config.candidates)
    fig, axes = subplots(len(names), len(reads), width=2.2, height=1.8, squeeze=False)
    centres = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
    dz = HIST_EDGES[1] - HIST_EDGES[0]
    t = np.linspace(-5, 5, 201)
    pooled = _pooled(df) if len(df) else df
    for i, phi in enumerate(names):
        for j, psi in enumerate(reads):
            ax = axes[i][j]
            part = (
                pooled[(pooled.trained_with == phi) & (pooled.read_with == psi)] if len(df) else []
            )
            if len(part):
                counts = np.sum([json.loads(h) for h in part["z_hist"]], axis=0).astype(float)
                if counts.sum() > 0:
                    ax.bar(
                        centres,
                        counts / (counts.sum() * dz),
                        dz,
                        color=geometry_style(psi).color,
                        alpha=0.6,
                    )
                mu = float(np.nanmean(part["z_mean"]))
                sd = math.sqrt(max(1 - mu * mu, 1e-12))
                ax.plot(t, norm.pdf(t, mu, sd), "k-", lw=1)
                ax.set_title(
                    f"φ={phi}, ψ={psi}, d={fmt(part['cdf_distance'].mean(), '.2f')}", fontsize=7
                )
            ax.set_xlim(-5, 5)
            ax.set_yticks([])
            if i == len(names) - 1:
                ax.set_xlabel(r"$\Delta_\psi\,/\,\mathrm{sd}(\Delta_\psi)$")
    figs[f"{stem}_hist"] = fig
    return figs


def _report(df: pd.DataFrame, config: DeepConfig, stem: str, title: str, claim: str) -> str:
    lines = [f"# {title}", ""]
    if not len(df):
        return "\n".join([*lines, "No cells were run.", ""])
    s = summarise(df, config)
    data = (
        "scikit-learn digits (8×8)"
        if config.data_dir is None
        else f"MNIST IDX files in {config.data_dir}"
    )
    lines += [
        f"![{stem}]({stem}.png)",
        "",
        f"![{stem} histograms]({stem}_hist.png)",
        "",
        f"Protocol (docs/deep.md): {data}; pretrained on {config.n_pretrain} images "
        f"({config.pretrain_epochs} epochs, Adam), finetuned on {config.n_finetune} held-out images per "
        f"seed ({plural(config.n_seeds, 'seed')}) under {', '.join(config.potentials)} with momentum "
        f"{config.momentum}, batch {config.batch_size}, cosine annealing, learning rate from "
        f"{', '.join(f'{lr:g}' for lr in config.lrs)}, {config.epochs} epochs"
        + (
            f" extended by {config.epochs} up to {config.protocol.max_extensions} times until 100 % training accuracy"
            if config.protocol.max_extensions
            else ""
        )
        + f". Widths {', '.join(str(w) for w in s['widths'])} "
        f"({', '.join(f'{v} weights' for v in s['n_weights'].values())} analysed; "
        + (
            "the encoder's convolutions, biases left out). Mean held-out accuracy of a "
            f"{KNN_NEIGHBOURS}-nearest-neighbour vote (cosine) on the encoder's features after "
            f"pretraining: {fmt(s['mean_pretrain_accuracy'])}."
            if config.kind == "simsiam"
            else "biases and the readout left out). Mean held-out accuracy after pretraining: "
            f"{fmt(s['mean_pretrain_accuracy'])}."
        ),
        "",
        "## The paper's claims next to the measurements",
        "",
        f"Paper: {claim}",
        "",
    ]
    for stat, _best, word in (
        ("cdf_distance", "min", "minimum"),
        ("log_likelihood", "max", "maximum"),
    ):
        checks = s["checks"][stat]
        overall = checks["all_widths"]
        held = [c for c in overall if c["holds"]]
        lines.append(
            f"* **{stat}** (mean over widths and seeds): the diagonal is the row {word} for "
            f"{len(held)} of {len(overall)} trained-with potentials"
            + (
                "."
                if len(held) == len(overall)
                else "; it does not hold for "
                + ", ".join(
                    f"{c['trained_with']} (row {word} at {c['row_best']}, margin {fmt(c['margin'])})"
                    for c in overall
                    if not c["holds"]
                )
                + "."
            )
        )
        fails = [
            f"width {w}: {c['trained_with']} (best {c['row_best']})"
            for w, cs in checks["by_width"].items()
            for c in cs
            if not c["holds"]
        ]
        lines.append(
            "  Per width: "
            + ("holds everywhere." if not fails else "does not hold for " + "; ".join(fails) + ".")
        )
    ne = s["ne_reading"]
    if ne is not None:
        worst = ne["worst_for_other_rows"]
        lines.append(
            "* **NE as the read-with potential** (CDF distance): best fit for NE-trained networks: "
            + ("holds" if ne["best_for_ne_trained"] else "does not hold")
            + "; worst fit for "
            + ", ".join(
                f"{phi}-trained: {'holds' if ok else 'does not hold'}" for phi, ok in worst.items()
            )
            + "."
        )
    lines.append(_absolute_gaussianity(s))
    lines += [
        "",
        "### Trained-with × read-with, CDF distance (mean)",
        "",
        _frame(_matrix(df, "cdf_distance")),
        "",
        "### Trained-with × read-with, log-likelihood per synapse (mean)",
        "",
        _frame(_matrix(df, "log_likelihood")),
        "",
    ]
    own = s["magnitude_own_potential"]
    big = [m for m in own if m["trained_with"] != "NE" and m["magnitude"] >= 0.2]
    ne = [m for m in own if m["trained_with"] == "NE"]
    lines += [
        "### Change magnitude ‖Δ‖/‖∇φ(w0)‖ read with the trained-with potential (median over seeds)",
        "",
        markdown_table(
            ["width", "potential", "magnitude"],
            [[m["width"], m["trained_with"], m["magnitude"]] for m in own],
        ),
        "",
        "Paper (B.3): magnitudes usually below 0.2 (0.3–0.5 for some networks), below 0.02 for NE. "
        f"Measured: {len(big)} of {len([m for m in own if m['trained_with'] != 'NE'])} p-norm settings at or above 0.2"
        + (
            f"; NE below 0.02 in {sum(m['magnitude'] < 0.02 for m in ne)} of {len(ne)} widths."
            if ne
            else "."
        ),
        "",
    ]
    if s["fraction_reached_100_percent"] is not None:
        lines.append(
            f"Cells whose kept run reached 100 % training accuracy: {fmt(100 * s['fraction_reached_100_percent'], '.0f')} % "
            "(the paper's all did)"
            + (
                "; short of it: "
                + "; ".join(
                    f"width {c['width']}, {c['trained_with']}, seed {c['seed']} (training accuracy "
                    f"{fmt(c['train_accuracy'])} after {c['epochs']} epochs, magnitude "
                    f"{fmt(c['magnitude'])})"
                    for c in s["short_of_100_percent"]
                )
                + "."
                if s["short_of_100_percent"]
                else "."
            )
        )
    lines.append("")
    return "\n".join(lines)


def _frame(m: pd.DataFrame) -> str:
    return markdown_table(
        ["trained \\ read", *m.columns],
        [[idx, *[m.loc[idx, c] for c in m.columns]] for idx in m.index],
    )


_CLAIM4 = (
    "weights change Gaussianly in the dual space of the trained-with potential, and a "
    "Gaussian change is only seen when the read-with potential is the trained-with one "
    "(Fig. 4B); NE reads NE-trained networks best and p-norm-trained ones worst."
)


def _experiment(
    name: str,
    title: str,
    config: type,
    quick: Any,
    heading: str,
    claim: str,
    data_field: str | None = None,
) -> Experiment:
    """One of the trained-with × read-with experiments: they differ only in the network
    (``config``), the paper's claim and the report's heading; cells, runs, summary, figures
    (``NAME`` and ``NAME_hist``) and report are shared."""
    return Experiment(
        name=name,
        title=title,
        Config=config,
        quick=quick,
        cells=cells,
        run_cell=run_cell,
        summarise=summarise,
        plot=lambda df, c: _plot(df, c, name),
        report=lambda df, c: _report(df, c, name, heading, claim),
        figures=(name, f"{name}_hist"),
        modules=("syngeo.finetune", "syngeo.models", "syngeo.data.images"),
        data_field=data_field,
    )


FIG4 = _experiment(
    "fig4",
    "Pogodin et al. Fig. 4: finetuned CNNs, trained-with × read-with Gaussianity",
    DeepConfig,
    fig4_quick,
    "Fig. 4 — finetuned CNNs read with every potential",
    _CLAIM4,
)

FIG7A = _experiment(
    "fig7a",
    "Pogodin et al. Fig. 7A: an RNN on row-wise sequential digits, read with every potential",
    Fig7AConfig,
    fig7a_quick,
    "Fig. 7A — row-wise sequential RNN read with every potential",
    "the RNN's weight changes behave like the deep networks' (Gaussian only for the trained-with "
    "potential).",
    data_field="data_dir",
)

FIG7B = _experiment(
    "fig7b",
    "Pogodin et al. Fig. 7B: SimSiam finetuned with its own loss, encoder read",
    Fig7BConfig,
    fig7b_quick,
    "Fig. 7B — SimSiam encoder read with every potential",
    "results very similar to the supervised networks (Gaussian only for the trained-with "
    "potential).",
)
