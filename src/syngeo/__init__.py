"""syngeo — the geometry of synaptic plasticity.

The public API, re-exported from the modules that define it (see the README for a tour):

* potentials and mirror descent: :mod:`syngeo.potentials`, :mod:`syngeo.optim`,
  :mod:`syngeo.solvers`;
* Gaussianity of the dual change and inference of the geometry: :mod:`syngeo.gaussianity`,
  :mod:`syngeo.inference`, :mod:`syngeo.diagnostics` (can the answer be trusted?),
  :mod:`syngeo.simulate`, :mod:`syngeo.data.weights`;
* metric-dependent steepest descent (Surace & Brea): :mod:`syngeo.metrics`,
  :mod:`syngeo.release`, :mod:`syngeo.units`;
* learning-rate bounds under noisy plasticity (Raman et al.): :mod:`syngeo.bounds`,
  :mod:`syngeo.plasticity`, :mod:`syngeo.expansion`;
* one snapshot of synapse sizes (which geometry and initial distribution explain it):
  :mod:`syngeo.snapshot`, with the bundled data of :mod:`syngeo.datasets`;
* data: :mod:`syngeo.data.correlated`, :mod:`syngeo.data.weights`;
* errors and input checks: :mod:`syngeo.errors`, :mod:`syngeo.validation`.

Everything above is the library core. The applications built on it (command line, reproduced
experiments, reports, resumable sweeps) live in :mod:`syngeo.app` and use only this public API.
"""

from importlib import import_module as _import_module
from typing import TYPE_CHECKING

# Every public name is imported on first use (PEP 562), not when ``import syngeo`` runs: the core
# modules pull in torch, SciPy and pandas (seconds), which ``syngeo --help`` or a script using
# one module should not pay for. ``syngeo.MirrorDescent`` and ``from syngeo import
# MirrorDescent`` work as before; static tools see the eager imports below.
if TYPE_CHECKING:  # pragma: no cover
    __version__: str
    from syngeo import datasets as datasets
    from syngeo.bounds import (
        ExpectedLearningRate,
        FlatLoss,
        LearningCondition,
        LearningRatePrediction,
        LossGeometry,
        OptimalSize,
        TraceEstimate,
        difficulty_bound,
        expected_learning_rate,
        hessian_trace,
        hessian_vector_product,
        hutchinson_trace,
        learning_condition,
        learning_rate,
        local_task_difficulty,
        loss_geometry,
        optimal_size,
        optimal_size_numeric,
        predicted_learning_rate,
    )
    from syngeo.constraints import Constraint, dale_mask
    from syngeo.data.correlated import (
        correlated_inputs,
        toeplitz_correlation_matrix,
        toeplitz_correlation_row,
    )
    from syngeo.data.weights import WeightPair, WeightSet, load_pair, load_weights
    from syngeo.diagnostics import FitDiagnostics, diagnose
    from syngeo.errors import (
        ConvergenceError,
        DataFileError,
        DomainError,
        InputError,
        InputTypeError,
    )
    from syngeo.expansion import Expansion, expand_linear, expand_sigmoid
    from syngeo.finetune import FinetuneProtocol, FinetuneResult
    from syngeo.gaussianity import (
        GaussianityResult,
        SignChanges,
        cdf_distance,
        change_magnitude,
        dual_change,
        gaussianity_of_change,
        sign_changes,
    )
    from syngeo.inference import (
        ConfidenceInterval,
        GeometryFit,
        default_candidates,
        infer_geometry,
    )
    from syngeo.metrics import (
        Constant,
        Euclidean,
        Fisher,
        FlowField,
        FlowTrajectory,
        Hessian,
        Metric,
        PositionDependent,
        flow_field,
        integrate_flow,
    )
    from syngeo.noise import MeasurementNoise, estimate_noise
    from syngeo.optim import MirrorDescent, exponentiated_gradient, mirror_descent, pnorm_sgd
    from syngeo.optim_adam import MirrorAdam, MirrorAdamW, mirror_adam
    from syngeo.plasticity import PlasticityRates, SynapticNoise, ThreeComponentPlasticity
    from syngeo.potentials import (
        Hypentropy,
        LocalPotential,
        NegativeEntropy,
        PNorm,
        Potential,
        Tsallis,
        potential,
    )
    from syngeo.release import BinomialRelease
    from syngeo.simulate import (
        SimulatedLearning,
        SyntheticChange,
        simulate_change,
        simulate_learning,
    )
    from syngeo.snapshot import (
        InitialMixture,
        SnapshotModel,
        compare_snapshot_models,
        connection_spread,
        fit_snapshot,
        goodness_of_fit,
        snapshot_profile,
    )
    from syngeo.solvers import (
        BregmanProjection,
        LinearizedChange,
        bregman_projection,
        linearized_change,
    )
    from syngeo.units import Quantity, Unit, UnitChange

#: module -> the public names it defines (re-exported here).
_EXPORTS: dict[str, tuple[str, ...]] = {
    "syngeo.bounds": (
        "ExpectedLearningRate",
        "FlatLoss",
        "LearningCondition",
        "LearningRatePrediction",
        "LossGeometry",
        "OptimalSize",
        "TraceEstimate",
        "difficulty_bound",
        "expected_learning_rate",
        "hessian_trace",
        "hessian_vector_product",
        "hutchinson_trace",
        "learning_condition",
        "learning_rate",
        "local_task_difficulty",
        "loss_geometry",
        "optimal_size",
        "optimal_size_numeric",
        "predicted_learning_rate",
    ),
    "syngeo.constraints": (
        "Constraint",
        "dale_mask",
    ),
    "syngeo.data.correlated": (
        "correlated_inputs",
        "toeplitz_correlation_matrix",
        "toeplitz_correlation_row",
    ),
    "syngeo.data.weights": (
        "WeightPair",
        "WeightSet",
        "load_pair",
        "load_weights",
    ),
    "syngeo.errors": (
        "ConvergenceError",
        "DataFileError",
        "DomainError",
        "InputError",
        "InputTypeError",
    ),
    "syngeo.diagnostics": (
        "FitDiagnostics",
        "diagnose",
    ),
    "syngeo.expansion": (
        "Expansion",
        "expand_linear",
        "expand_sigmoid",
    ),
    "syngeo.finetune": (
        "FinetuneProtocol",
        "FinetuneResult",
    ),
    "syngeo.gaussianity": (
        "GaussianityResult",
        "SignChanges",
        "cdf_distance",
        "change_magnitude",
        "dual_change",
        "gaussianity_of_change",
        "sign_changes",
    ),
    "syngeo.inference": (
        "ConfidenceInterval",
        "GeometryFit",
        "default_candidates",
        "infer_geometry",
    ),
    "syngeo.metrics": (
        "Constant",
        "Euclidean",
        "Fisher",
        "FlowField",
        "FlowTrajectory",
        "Hessian",
        "Metric",
        "PositionDependent",
        "flow_field",
        "integrate_flow",
    ),
    "syngeo.noise": (
        "MeasurementNoise",
        "estimate_noise",
    ),
    "syngeo.optim": (
        "MirrorDescent",
        "exponentiated_gradient",
        "mirror_descent",
        "pnorm_sgd",
    ),
    "syngeo.optim_adam": (
        "MirrorAdam",
        "MirrorAdamW",
        "mirror_adam",
    ),
    "syngeo.plasticity": (
        "PlasticityRates",
        "SynapticNoise",
        "ThreeComponentPlasticity",
    ),
    "syngeo.potentials": (
        "Hypentropy",
        "LocalPotential",
        "NegativeEntropy",
        "PNorm",
        "Potential",
        "Tsallis",
        "potential",
    ),
    "syngeo.release": ("BinomialRelease",),
    "syngeo.simulate": (
        "SimulatedLearning",
        "SyntheticChange",
        "simulate_change",
        "simulate_learning",
    ),
    "syngeo.snapshot": (
        "InitialMixture",
        "SnapshotModel",
        "compare_snapshot_models",
        "connection_spread",
        "fit_snapshot",
        "goodness_of_fit",
        "snapshot_profile",
    ),
    "syngeo.solvers": (
        "BregmanProjection",
        "LinearizedChange",
        "bregman_projection",
        "linearized_change",
    ),
    "syngeo.units": (
        "Quantity",
        "Unit",
        "UnitChange",
    ),
}
_SOURCE = {name: module for module, names in _EXPORTS.items() for name in names}
_SUBMODULES = ("datasets",)  # modules re-exported as attributes: syngeo.datasets.dorkenwald2022()


def _version() -> str:
    """One version string: the installed package's metadata (pyproject.toml)."""
    from importlib import metadata

    try:
        return metadata.version("syngeo")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def __getattr__(name: str):
    """Import a public name (or re-exported submodule) on first access and keep it."""
    if name == "__version__":
        value = _version()
    elif name in _SOURCE:
        value = getattr(_import_module(_SOURCE[name]), name)
    elif name in _SUBMODULES:
        value = _import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))


__all__ = [
    "BinomialRelease",
    "BregmanProjection",
    "ConfidenceInterval",
    "Constant",
    "Constraint",
    "ConvergenceError",
    "DataFileError",
    "DomainError",
    "Euclidean",
    "Expansion",
    "ExpectedLearningRate",
    "FinetuneProtocol",
    "FinetuneResult",
    "Fisher",
    "FitDiagnostics",
    "FlatLoss",
    "FlowField",
    "FlowTrajectory",
    "GaussianityResult",
    "GeometryFit",
    "Hessian",
    "Hypentropy",
    "InitialMixture",
    "InputError",
    "InputTypeError",
    "LearningCondition",
    "LearningRatePrediction",
    "LinearizedChange",
    "LocalPotential",
    "LossGeometry",
    "MeasurementNoise",
    "Metric",
    "MirrorAdam",
    "MirrorAdamW",
    "MirrorDescent",
    "NegativeEntropy",
    "OptimalSize",
    "PNorm",
    "PlasticityRates",
    "PositionDependent",
    "Potential",
    "Quantity",
    "SignChanges",
    "SimulatedLearning",
    "SnapshotModel",
    "SynapticNoise",
    "SyntheticChange",
    "ThreeComponentPlasticity",
    "TraceEstimate",
    "Tsallis",
    "Unit",
    "UnitChange",
    "WeightPair",
    "WeightSet",
    "__version__",
    "bregman_projection",
    "cdf_distance",
    "change_magnitude",
    "compare_snapshot_models",
    "connection_spread",
    "correlated_inputs",
    "dale_mask",
    "default_candidates",
    "diagnose",
    "difficulty_bound",
    "dual_change",
    "estimate_noise",
    "expand_linear",
    "expand_sigmoid",
    "expected_learning_rate",
    "exponentiated_gradient",
    "fit_snapshot",
    "flow_field",
    "gaussianity_of_change",
    "goodness_of_fit",
    "hessian_trace",
    "hessian_vector_product",
    "hutchinson_trace",
    "infer_geometry",
    "integrate_flow",
    "learning_condition",
    "learning_rate",
    "linearized_change",
    "load_pair",
    "load_weights",
    "local_task_difficulty",
    "loss_geometry",
    "mirror_adam",
    "mirror_descent",
    "optimal_size",
    "optimal_size_numeric",
    "pnorm_sgd",
    "potential",
    "predicted_learning_rate",
    "sign_changes",
    "simulate_change",
    "simulate_learning",
    "snapshot_profile",
    "toeplitz_correlation_matrix",
    "toeplitz_correlation_row",
]
