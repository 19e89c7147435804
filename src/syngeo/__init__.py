"""syngeo — the geometry of synaptic plasticity.

The public API, re-exported. See the README for a tour.
"""

from syngeo.potentials import NegativeEntropy, PNorm, Potential, potential

__version__ = "0.1.0"

__all__ = [
    "NegativeEntropy",
    "PNorm",
    "Potential",
    "__version__",
    "potential",
]
