"""``syngeo demo``: learn under a hidden geometry, then infer it from the weights alone.

:func:`syngeo.simulate.simulate_learning` trains a network on the bundled digits with
:class:`~syngeo.optim.MirrorDescent` under the hidden potential; :func:`syngeo.inference.infer_geometry`
ranks the candidate geometries from the first layer's weights before and after; the ranking, the
verdict (hidden vs inferred), table, summary, figures and report are written to ``--out``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from syngeo.app.cli._app import app, console
from syngeo.app.cli._options import Bootstrap, Estimator, Force, Json, Out, Quiet
from syngeo.app.cli.infer import (
    ESTIMATORS,
    _status,
    check_out_dir,
    checked_paragraph,
    fit_and_check,
    print_ranking,
    print_summary,
)
from syngeo.validation import as_choice, as_nonnegative_int, as_seed

__all__ = ["DemoResult", "run_demo"]

DEFAULT_OUT = Path("syngeo-demo")

_EPILOG = (
    "Examples:\n\n"
    "  syngeo demo\n\n"
    "  syngeo demo --hidden ne --seed 3 --out runs/demo-ne\n\n"
    "  syngeo demo --hidden 2-norm --json --force"
)


@dataclass(frozen=True, eq=False)
class DemoResult:
    """What :func:`run_demo` computed and wrote.

    Attributes
    ----------
    simulation : SimulatedLearning
    fit : GeometryFit
    verdict : RecoveryVerdict
    summary : dict
        Also written to ``summary.json``.
    out : Path
    files : dict of str -> Path
    seconds : dict of str -> float
        Wall-clock time of the simulation, the inference and the outputs.
    checked : CheckedFit
        The fit with its diagnostics (:func:`syngeo.app.cli.infer.fit_and_check`).
    """

    simulation: Any
    fit: Any
    verdict: Any
    summary: dict[str, Any]
    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    checked: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "out": str(self.out),
            "files": {k: str(v) for k, v in self.files.items()},
            "seconds": dict(self.seconds),
        }


def run_demo(
    hidden: str = "3-norm",
    *,
    seed: int = 0,
    estimator: str = "likelihood",
    n_bootstrap: int = 100,
    out: str | Path = DEFAULT_OUT,
    force: bool = False,
) -> DemoResult:
    """Simulate learning under ``hidden``, infer the geometry, write the outputs to ``out``."""
    from syngeo.app.outputs import prepare_out_dir, write_outputs
    from syngeo.app.report import (
        inference_figures,
        inference_report,
        inference_summary,
        inference_table,
    )
    from syngeo.potentials import potential
    from syngeo.simulate import recovery_verdict, simulate_learning

    hidden_name = potential(hidden).name  # unknown names fail before any work
    out = Path(out)
    check_out_dir(out, force)
    t0 = time.perf_counter()
    sim = simulate_learning(hidden_name, seed=seed)
    t1 = time.perf_counter()
    checked = fit_and_check(
        sim.before, sim.after, estimator=estimator, n_bootstrap=n_bootstrap, seed=seed
    )
    fit = checked.fit
    t2 = time.perf_counter()
    verdict = recovery_verdict(hidden_name, fit)
    figures = inference_figures(sim.before, sim.after, fit, truth=hidden_name)
    seconds = {"simulation": t1 - t0, "inference": t2 - t1}
    summary = inference_summary(
        fit,
        {
            "command": "demo",
            "hidden": hidden_name,
            "verdict": verdict.to_dict(),
            "simulation": sim.to_dict(),
            "settings": {"estimator": estimator, "n_bootstrap": n_bootstrap, "seed": seed},
            **checked.to_dict(),
            "seconds": seconds,
        },
    )
    ne_limit = checked.diagnostics.ne_limit.applies
    interval = "" if fit.p_interval is None or ne_limit else f"; interval for p {fit.p_interval}"
    if verdict.p_in_interval is False and not ne_limit:
        interval += (
            f". The refined p lies {abs(fit.best_p - _hidden_p(hidden_name)):.2g} from the truth "
            "with an interval that excludes it: the interval assumes the theory's Gaussian "
            "prediction holds exactly, and a finite network departs from it slightly"
        )
    report = inference_report(
        fit,
        figures,
        {
            "title": f"syngeo demo: recovering a hidden {hidden_name} geometry",
            "intro": (
                f"A network (digits → {sim.n_hidden} tanh units → 10) was trained with mirror "
                f"descent under the **{hidden_name}** geometry on {sim.n_examples} images "
                f"until {sim.train_accuracy:.0%} training accuracy (loss {sim.train_loss:.2g}, "
                f"{sim.epochs} full-batch steps). The inference saw only the first layer's "
                f"{sim.n_synapses} weights before and after. Verdict: {verdict}{interval}. "
                + checked_paragraph(checked)
            ),
            "hidden geometry": hidden_name,
            "inferred (candidate grid)": verdict.inferred_on_grid,
            "inferred (refined)": verdict.inferred,
            "recovered": verdict.recovered,
            "hidden p inside the interval": verdict.p_in_interval,
            "synapses analysed": sim.n_synapses,
            "training images": sim.n_examples,
            "full-batch steps": sim.epochs,
            "training accuracy": f"{sim.train_accuracy:.0%}",
            "change magnitude (hidden geometry)": sim.change_magnitude,
            "seed": seed,
            "command": f"syngeo demo --hidden {hidden_name} --seed {seed}",
        },
    )
    prepare_out_dir(out, force=force)
    files = write_outputs(
        out, table=inference_table(fit), summary=summary, figures=figures, report=report
    )
    seconds["total"] = time.perf_counter() - t0
    return DemoResult(sim, fit, verdict, summary, out, files, seconds, checked)


def _hidden_p(name: str) -> float:
    """The potential's parameter (p for a p-norm); NaN for a potential without one (NE)."""
    from syngeo.potentials import potential

    parameter = potential(name).parameter
    return float("nan") if parameter is None else float(parameter)


@app.command("demo", epilog=_EPILOG)
def demo_command(
    hidden: Annotated[
        str,
        typer.Option("--hidden", help="Geometry learning uses (2-norm, 3-norm, ne, p=2.5, ...)."),
    ] = "3-norm",
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of data, initial weights, bootstrap.")
    ] = 0,
    n_bootstrap: Bootstrap = 100,
    estimator: Estimator = "likelihood",
    out: Out = DEFAULT_OUT,
    force: Force = False,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Simulate learning under a hidden geometry, infer it, and report.

    Trains a network on the bundled digits with mirror descent under --hidden, infers the geometry from the first layer's weights before and after learning, prints the ranking and the verdict, and writes results.parquet/.csv, summary.json, figures (PNG + PDF) and report.md to --out.
    """
    as_seed(seed, "--seed")
    as_nonnegative_int(n_bootstrap, "--bootstrap")
    as_choice(estimator, "--estimator", ESTIMATORS)
    with _status(f"learning under {hidden}, then inferring it", not (quiet or as_json)):
        result = run_demo(
            hidden, seed=seed, estimator=estimator, n_bootstrap=n_bootstrap, out=out, force=force
        )
    if as_json:
        print(json.dumps(result.summary, indent=2))
        return
    if quiet:
        return
    sim = result.simulation
    console.print(
        f"learned under [bold]{sim.potential}[/]: {sim.n_synapses} synapses, {sim.n_examples} "
        f"images, {sim.epochs} steps, train accuracy {sim.train_accuracy:.0%}, "
        f"change magnitude {sim.change_magnitude:.3g}",
        highlight=False,
    )
    print_ranking(result.fit, title="candidate geometries")
    print_summary(result.checked)
    colour = "green" if result.verdict.recovered else "red"
    console.print(f"[bold {colour}]{result.verdict}[/]", highlight=False)
    console.print(
        f"wrote {len(result.files)} files to {result.out}/ (see report.md) in "
        f"{result.seconds['total']:.1f} s",
        highlight=False,
    )
