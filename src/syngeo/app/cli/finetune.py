"""``syngeo finetune``: finetune a network under each potential and read every change back.

A thin application of :func:`syngeo.finetune.finetune` (docs/deep.md). The network is
``--arch`` (``cnn``, ``rnn`` or a torchvision name with the ``vision`` extra); its starting
weights are ``--weights FILE`` (a torchvision, timm-style or plain state_dict, or safetensors) or,
without it, pretrained in-process on the training part of the data and cached in
``OUT/pretrained-ARCH-WIDTH-seedSEED.safetensors`` (a later run with ``--force`` reuses it).
The data are ``--data DIR`` (MNIST IDX files, or an ImageFolder with torchvision) or, by
default, scikit-learn's bundled digits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from syngeo.app.cli._app import app, console
from syngeo.app.cli._options import Force, Json, Out

__all__ = ["run_finetune"]

_EPILOG = (
    "Examples:\n\n"
    "  syngeo finetune --quick --out runs/ft      # offline: digits, small CNN\n\n"
    "  syngeo finetune --arch rnn --width 64 --data mnist/ --out runs/rnn\n\n"
    "  syngeo finetune --arch resnet18 --weights r18.pth --data val/ -o r18\n\n"
    "Writes results.csv/.parquet (trained-with × read-with × layer), log.csv (every run of the "
    "learning-rate search), initial.safetensors, final-POTENTIAL.safetensors, summary.json, report.md."
)


def _split_list(text: str, what: str) -> list[str]:
    from syngeo.errors import InputError

    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise InputError(f"{what} must list at least one entry, e.g. '2-norm,3-norm,NE'")
    return items


def _load_data(data: Path | None, arch: str):
    from syngeo.data.images import MNIST_FILES, load_digits_images, load_image_folder, load_mnist
    from syngeo.errors import DataFileError

    if data is None:
        digits = load_digits_images()
        return digits, None
    if not data.exists():
        raise DataFileError(f"--data {data}: no such folder")
    if not data.is_dir():
        raise DataFileError(
            f"--data {data} is a file; give the folder holding the MNIST IDX files or the "
            "ImageFolder class folders"
        )
    if not any(data.iterdir()):
        raise DataFileError(f"--data {data}: the folder is empty")
    stems = MNIST_FILES["test"][0]
    if any(data.rglob(stems + "*")):
        return load_mnist(data, "train"), load_mnist(data, "test")
    return load_image_folder(data, size=224), None


def run_finetune(
    *,
    arch: str = "cnn",
    width: int = 8,
    weights: Path | None = None,
    data: Path | None = None,
    potentials: str = "2-norm,3-norm,NE",
    candidates: str | None = None,
    n_finetune: int = 256,
    seed: int = 0,
    quick: bool = False,
    device: str | None = None,
    out: Path = Path("syngeo-finetune"),
    force: bool = False,
) -> dict[str, Any]:
    """Run the command; the summary dict (also written to ``OUT/summary.json``)."""
    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file

    from syngeo.app.formatting import markdown_table
    from syngeo.app.outputs import prepare_out_dir, write_outputs
    from syngeo.finetune import (
        FinetuneProtocol,
        finetune,
        load_state_dict_file,
        pretrain,
    )
    from syngeo.models import build_model
    from syngeo.threads import limit_threads
    from syngeo.validation import as_positive_int, as_seed

    trained = _split_list(potentials, "--potentials")
    reads = _split_list(candidates, "--candidates") if candidates else None
    n_finetune, seed = as_positive_int(n_finetune, "--n-finetune"), as_seed(seed, "--seed")
    if weights is not None and not Path(weights).is_file():
        from syngeo.errors import DataFileError

        if Path(weights).is_dir():
            raise DataFileError(
                f"--weights {weights} is a folder, not a state_dict file; give a .pt, .pth, "
                ".bin, .ckpt or .safetensors file"
            )
        raise DataFileError(f"--weights {weights}: no such file")
    first, second = _load_data(data, arch)
    out = prepare_out_dir(out, force=force)
    side = int(first.images.shape[-1])
    extra: dict[str, Any] = {}
    if arch == "cnn":
        extra = {"in_channels": int(first.images.shape[1]), "image_size": side}
    elif arch == "rnn":
        extra = {"input_size": side}
    model = build_model(arch, n_classes=first.n_classes, width=width, **extra)
    if second is None:
        if n_finetune >= len(first):
            from syngeo.errors import InputError

            raise InputError(f"--n-finetune must be below the {len(first)} images in the data")
        pre, held = first.split(len(first) - max(n_finetune, len(first) // 4), rng=seed)
    else:
        pre, held = first, second
    with limit_threads(1 if device in (None, "cpu") else torch.get_num_threads()):
        if weights is not None:
            load_state_dict_file(model, weights)
            source = f"loaded from {weights}"
        else:
            cache = out / f"pretrained-{arch}-{width}-seed{seed}.safetensors"
            if cache.is_file():
                model.load_state_dict(load_file(str(cache)))
                source = f"pretrained weights reused from {cache.name}"
            else:
                torch.manual_seed(seed)
                model = build_model(arch, n_classes=first.n_classes, width=width, **extra)
                pretrain(model, pre, epochs=10 if quick else 15, seed=seed)
                save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(cache))
                source = f"pretrained in-process on {len(pre)} images, cached in {cache.name}"
        rng = np.random.default_rng(seed)
        subset = held.subset(rng.choice(len(held), min(n_finetune, len(held)), replace=False))
        protocol = (
            FinetuneProtocol(lrs=(1e-3, 1e-2, 1e-1), epochs=10, max_extensions=2, batch_size=64)
            if quick
            else FinetuneProtocol()
        )
        result = finetune(
            model,
            subset,
            trained,
            candidates=reads,
            protocol=protocol,
            seed=seed,
            device=device,
            out=out,
        )
    matrix = result.distance_matrix()
    runs = {
        k: {
            "lr": r.lr,
            "epochs": r.epochs,
            "accuracy": r.accuracy,
            "loss": r.loss,
            "reached_target": r.reached_target,
        }
        for k, r in result.runs.items()
    }
    diagonal = {
        phi: bool(phi in matrix.columns and matrix.loc[phi].idxmin() == phi) for phi in matrix.index
    }
    summary = {
        "arch": arch,
        "width": width,
        "data": first.source,
        "weights": source,
        "n_finetune": len(subset),
        "layers": list(result.layers),
        "runs": runs,
        "cdf_distance_matrix": {k: dict(v) for k, v in matrix.to_dict(orient="index").items()},
        "diagonal_is_row_min": diagonal,
    }
    lines = [
        "# syngeo finetune",
        "",
        f"{arch} (width {width}), {source}; finetuned on {len(subset)} images of {first.source}.",
        "",
        "## Pooled CDF distance, trained-with × read-with",
        "",
        markdown_table(
            ["trained \\ read", *matrix.columns],
            [[i, *[matrix.loc[i, c] for c in matrix.columns]] for i in matrix.index],
        ),
        "",
    ]
    for phi, ok in diagonal.items():
        lines.append(
            f"* trained with {phi}: the diagonal is the row minimum: {'holds' if ok else 'does not hold'}"
            f" (lr {runs[phi]['lr']:g}, {runs[phi]['epochs']} epochs, training accuracy {runs[phi]['accuracy']:.3g})."
        )
    write_outputs(out, table=result.table, summary=summary, report="\n".join(lines) + "\n")
    result.log.to_csv(out / "log.csv", index=False)
    return summary


@app.command("finetune", epilog=_EPILOG)
def finetune_command(
    arch: Annotated[
        str, typer.Option("--arch", help="cnn, rnn or a torchvision model name.")
    ] = "cnn",
    width: Annotated[
        int, typer.Option("--width", help="Width of cnn/rnn (channels / hidden units).")
    ] = 8,
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            help="Starting state_dict (.pt/.pth/.bin/.ckpt/.safetensors).",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="MNIST IDX folder or ImageFolder.",
            show_default="scikit-learn's bundled digits",
        ),
    ] = None,
    potentials: Annotated[
        str, typer.Option("--potentials", help="Potentials trained with.")
    ] = "2-norm,3-norm,NE",
    candidates: Annotated[
        str | None,
        typer.Option(
            "--candidates", help="Potentials read with.", show_default="those of --potentials"
        ),
    ] = None,
    n_finetune: Annotated[
        int, typer.Option("--n-finetune", help="Images in the finetuning set.")
    ] = 256,
    seed: Annotated[int, typer.Option("--seed", help="Subset, order and pretraining seed.")] = 0,
    quick: Annotated[
        bool, typer.Option("--quick", help="3 learning rates, 10 epochs, batch 64.")
    ] = False,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu, cuda, cuda:1 ...", show_default=False)
    ] = None,
    out: Out = Path("syngeo-finetune"),
    force: Force = False,
    as_json: Json = False,
) -> None:
    """Finetune a network under each potential (Pogodin et al. B.3) and read every weight change
    with every candidate potential."""
    summary = run_finetune(
        arch=arch,
        width=width,
        weights=weights,
        data=data,
        potentials=potentials,
        candidates=candidates,
        n_finetune=n_finetune,
        seed=seed,
        quick=quick,
        device=device,
        out=out,
        force=force,
    )
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
        return
    _print_summary(summary, out)


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    """The table that ends ``syngeo finetune``: one row per trained-with potential."""
    from syngeo.app.formatting import console_table, plural

    rows = [
        (
            phi,
            "yes" if ok else "no",
            summary["runs"][phi]["lr"],
            summary["runs"][phi]["epochs"],
            summary["runs"][phi]["accuracy"],
        )
        for phi, ok in summary["diagonal_is_row_min"].items()
    ]
    console.print(
        console_table(
            ["trained with", "own potential most Gaussian", "lr", "epochs", "training accuracy"],
            rows,
            title=f"{summary['arch']} (width {summary['width']}), finetuned on "
            f"{plural(summary['n_finetune'], 'image')}",
            spec=".3g",
        )
    )
    console.print(f"wrote results to {out}/ (see report.md)", highlight=False)
