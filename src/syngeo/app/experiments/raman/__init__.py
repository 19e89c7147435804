r"""Raman, Rotondo & O'Leary (2019): learning rate under noisy plasticity, and optimal size.

Six reproductions (``syngeo reproduce NAME``), one module each, each defining its
:class:`~syngeo.app.experiments.base.Experiment` as ``EXPERIMENT``; what they share is in
:mod:`~syngeo.app.experiments.raman.common`:

``raman-k`` (:mod:`.k`)
    Second-order prediction of the learning rate ``k`` against the real change of the error over
    one feedback interval, per draw of the three-component plasticity, and the expectation
    :math:`\langle k\rangle` against the mean over draws; linear [10, 5] and sigmoid
    [10, 5, 5, 10] networks (the scripts' prediction checks).
``raman-difficulty`` (:mod:`.difficulty`)
    Local task difficulty and the learning condition: (i) single intervals at a fixed sigmoid
    network while the synaptic noise γ3 grows — where does the mean measured ``k`` change sign,
    against the predicted critical γ3; (ii) noisy learning run to its steady state, where the
    theory predicts that the mean difficulty sits exactly on the bound.
``raman-size`` (:mod:`.size`)
    Learning rate and steady-state error against network size for linear networks expanded by
    semi-orthogonal embeddings (c1 = c2) and sigmoid networks expanded by zero-initialised
    units, under several (γ1, γ2, γ3); predicted curves and N* against simulation.
``raman-deep`` (:mod:`.deep`)
    PNAS Fig. 2: a deep sigmoid network [10, 5, 5, 5, 5, 5, 10] and copies grown to wider hidden
    layers learn a teacher online, without and with synaptic noise: steady-state error and
    learning rate against size, the measured optimum against the paper's cubic N*.
``raman-training`` (:mod:`.training`)
    PNAS Fig. 4: the local task difficulty along a training trajectory rises until it meets the
    bound; a subsampled gradient of the same norm stalls earlier, at the difficulty predicted
    from its alignment with the true gradient.
``raman-geometry`` (:mod:`.geometry`)
    The same three-component plasticity, with its noise in the dual space of negative entropy
    (multiplicative) or of the Euclidean potential (additive), run with
    :class:`syngeo.optim.MirrorDescent`: the weight distributions it produces and the learning
    curves.

Conventions: :mod:`syngeo.bounds`, :mod:`syngeo.plasticity`, :mod:`syngeo.expansion`; the
derivation and where it departs from the slides: ``docs/raman.md``.
"""

from syngeo.app.experiments.raman.deep import DeepConfig
from syngeo.app.experiments.raman.difficulty import DifficultyConfig
from syngeo.app.experiments.raman.geometry import GeometryConfig
from syngeo.app.experiments.raman.k import KConfig
from syngeo.app.experiments.raman.size import SizeConfig, slides_optimal_size
from syngeo.app.experiments.raman.training import TrainingConfig

__all__ = [
    "DeepConfig",
    "DifficultyConfig",
    "GeometryConfig",
    "KConfig",
    "SizeConfig",
    "TrainingConfig",
    "slides_optimal_size",
]
