"""Data sets that ship with syngeo (no download needed).

* :func:`dorkenwald2022` — spine head volumes of 1961 synapses between layer-2/3 pyramidal cells
  (MICrONS, Dorkenwald et al. 2022), the data of the paper's Fig. 5 (docs/theory.md §4). Its
  source, checksum and citation are in ``syngeo/data/dorkenwald2022/SOURCE.md``, next to the file.

Cite the original authors wherever the data are used; ``DataFrame.attrs["citation"]`` holds the
reference.

Examples
--------
>>> from syngeo.datasets import dorkenwald2022
>>> spines = dorkenwald2022()
>>> len(spines), round(float(spines["spine_vol_um3"].median()), 4)
(1961, 0.0477)
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

__all__ = [
    "DORKENWALD2022_MD5",
    "DORKENWALD2022_TABLE2",
    "MixtureReference",
    "dorkenwald2022",
    "dorkenwald2022_path",
]

DORKENWALD2022_MD5 = "5bbb8ff59dcad4ccea6d46930920cd04"
_DORKENWALD2022_FILE = "soma_subgraph_synapses_spines_v185.csv"
_DORKENWALD2022_CITATION = (
    "Dorkenwald S. et al. (2022). Binary and analog variation of synapses between cortical "
    "pyramidal neurons. eLife 11:e76120. doi:10.7554/eLife.76120. Data: MICrONS Consortium, "
    "phase-1 release."
)


@dataclass(frozen=True)
class MixtureReference:
    """A published two-component Gaussian mixture of log10(spine volume / µm³).

    Attributes
    ----------
    subset : str
        Which synapses were fitted.
    small_mean, small_sd, small_weight, large_mean, large_sd, large_weight : float
        Means and standard deviations in log10 units, and the mixture weights.
    n : int
        Number of synapses in the published fit.
    """

    subset: str
    small_mean: float
    small_sd: float
    small_weight: float
    large_mean: float
    large_sd: float
    large_weight: float
    n: int


#: Dorkenwald et al. (2022), Table 2 (rounded as published).
DORKENWALD2022_TABLE2 = (
    MixtureReference("all synapses", -1.42, 0.24, 0.77, -0.77, 0.22, 0.23, 1960),
    MixtureReference("single-synapse connections", -1.41, 0.24, 0.81, -0.76, 0.21, 0.19, 1546),
    MixtureReference("dual-synapse connections", -1.44, 0.23, 0.64, -0.77, 0.21, 0.36, 320),
)


def dorkenwald2022_path() -> Path:
    """Path of the bundled CSV file (inside the installed package)."""
    return Path(
        str(resources.files("syngeo.data").joinpath("dorkenwald2022", _DORKENWALD2022_FILE))
    )


def dorkenwald2022() -> pd.DataFrame:
    """The MICrONS layer-2/3 synapse table of Dorkenwald et al. (2022), one row per synapse.

    Columns as in the published file (``id``, ``pre_root_id``, ``post_root_id``, ``cleft_vx``,
    ``spine_vol_um3`` in µm³, positions), plus ``connection_size``: the number of synapses of
    the same (pre, post) cell pair, 1 to 5. ``attrs["citation"]`` and ``attrs["units"]`` describe
    the data.
    """
    frame = pd.read_csv(dorkenwald2022_path())
    pair = ["pre_root_id", "post_root_id"]
    frame["connection_size"] = frame.groupby(pair)["id"].transform("size").astype("int64")
    frame.attrs["citation"] = _DORKENWALD2022_CITATION
    frame.attrs["units"] = {"spine_vol_um3": "µm³", "cleft_vx": "voxels"}
    return frame
