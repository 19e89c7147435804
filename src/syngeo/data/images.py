"""Image data sets for finetuning: MNIST IDX files, ImageFolder directories, bundled digits.

Everything returns an :class:`ImageSet`: float32 images (N, C, H, W) scaled to [0, 1] and int64
labels, held in memory (the data sets finetuned on are subsets sized to the network, docs/deep.md).

* :func:`read_idx` reads one IDX file (LeCun's format for MNIST, optionally gzipped);
* :func:`load_mnist` reads the four standard MNIST files from a folder;
* :func:`load_digits_images` is scikit-learn's bundled 8×8 digits (1797 images, no download);
* :func:`load_image_folder` reads a ``root/class/image`` folder (needs torchvision, the
  ``vision`` extra).

A missing or empty path raises :class:`~syngeo.errors.DataFileError` (one line in the CLI).

Examples
--------
>>> d = load_digits_images()
>>> d.images.shape, d.n_classes
(torch.Size([1797, 1, 8, 8]), 10)
"""

from __future__ import annotations

import gzip
import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from syngeo.errors import DataFileError, InputError
from syngeo.validation import as_generator

__all__ = [
    "MNIST_FILES",
    "ImageSet",
    "load_digits_images",
    "load_image_folder",
    "load_mnist",
    "read_idx",
]

#: The standard MNIST file names, by split (``.gz`` versions are found too).
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX type codes (the third byte of the magic number) and the big-endian dtypes they denote.
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclass(frozen=True, repr=False)
class ImageSet:
    """Images and labels in memory.

    Attributes
    ----------
    images : torch.Tensor, shape=[N, C, H, W], float32 in [0, 1]
    labels : torch.Tensor, shape=[N], int64
    n_classes : int
    source : str
        Where the data came from.
    """

    images: torch.Tensor
    labels: torch.Tensor
    n_classes: int
    source: str

    def __post_init__(self) -> None:
        if self.images.dim() != 4 or self.labels.dim() != 1:
            raise InputError(
                f"images must be (N, C, H, W) and labels (N,), got {tuple(self.images.shape)} "
                f"and {tuple(self.labels.shape)}"
            )
        if self.images.shape[0] != self.labels.shape[0]:
            raise InputError(
                f"{self.images.shape[0]} images but {self.labels.shape[0]} labels in {self.source}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return f"ImageSet({len(self)} images {tuple(self.images.shape[1:])}, {self.n_classes} classes, {self.source})"

    def subset(self, index: torch.Tensor | np.ndarray) -> ImageSet:
        """The images at ``index`` (same classes and source)."""
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return ImageSet(self.images[index], self.labels[index], self.n_classes, self.source)

    def split(self, n_first: int, rng=None) -> tuple[ImageSet, ImageSet]:
        """A random split into ``n_first`` images and the rest (disjoint)."""
        if not 0 < n_first < len(self):
            raise InputError(f"cannot split {len(self)} images into {n_first} and the rest")
        order = as_generator(rng).permutation(len(self))
        return self.subset(order[:n_first]), self.subset(order[n_first:])


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or ``.gz``): magic ``0 0 TYPE NDIM``, NDIM big-endian uint32 sizes,
    then the data in C order.

    Raises
    ------
    DataFileError
        A missing file, a bad magic number or a size that does not match the data.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such IDX file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise DataFileError(f"{path}: cannot read it: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataFileError(f"{path}: not an IDX file (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFileError(f"{path}: IDX header truncated")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[raw[2]]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataFileError(
            f"{path}: IDX header says shape {shape} ({expected} bytes) but the file holds "
            f"{len(raw) - header} bytes of data; the file is truncated or corrupted"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        for candidate in (folder / name, folder / "raw" / name, folder / "MNIST" / "raw" / name):
            if candidate.is_file():
                return candidate
    return None


def load_mnist(folder: str | os.PathLike, split: str = "train") -> ImageSet:
    """The MNIST ``split`` ("train" or "test") from the standard IDX files in ``folder``
    (also looked for under ``raw/`` and ``MNIST/raw/``, as torchvision stores them)."""
    folder = Path(folder)
    if split not in MNIST_FILES:
        raise InputError(f"split must be 'train' or 'test', got {split!r}")
    if not folder.is_dir():
        raise DataFileError(f"--data {folder}: no such folder (expected the MNIST IDX files)")
    found = [_find(folder, stem) for stem in MNIST_FILES[split]]
    if any(f is None for f in found):
        raise DataFileError(
            f"--data {folder}: no MNIST {split} files; expected {' and '.join(MNIST_FILES[split])} "
            "(optionally .gz)"
        )
    images, labels = read_idx(found[0]), read_idx(found[1])
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataFileError(
            f"--data {folder}: images {images.shape} and labels {labels.shape} do not match"
        )
    if images.shape[0] == 0:
        raise DataFileError(f"--data {folder}: the MNIST {split} files hold no images")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return ImageSet(x, y, 10, f"MNIST {split} ({folder})")


def load_digits_images() -> ImageSet:
    """scikit-learn's bundled handwritten digits: 1797 images of 8×8 pixels, 10 classes."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy((digits.images / 16.0).astype(np.float32)).unsqueeze(1)
    y = torch.from_numpy(digits.target.astype(np.int64))
    return ImageSet(x, y, 10, "scikit-learn digits")


def load_image_folder(root: str | os.PathLike, *, size: int = 224) -> ImageSet:
    """An ImageFolder (``root/CLASS/IMAGE``), centre-cropped to ``size`` and scaled to [0, 1]
    (needs torchvision, syngeo's ``vision`` extra)."""
    root = Path(root)
    if not root.is_dir():
        raise DataFileError(f"--data {root}: no such folder")
    if not any(p.is_dir() for p in root.iterdir()):
        raise DataFileError(f"--data {root}: empty (expected one sub-folder of images per class)")
    try:
        datasets = importlib.import_module("torchvision.datasets")
        transforms = importlib.import_module("torchvision.transforms")
    except ImportError:
        raise InputError(
            "reading an image folder needs torchvision: install syngeo's 'vision' extra (torchvision)"
        ) from None
    tf = transforms.Compose(
        [transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()]
    )
    try:
        ds = datasets.ImageFolder(str(root), transform=tf)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataFileError(f"--data {root}: {exc}") from None
    xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
    return ImageSet(torch.stack(xs), torch.tensor(ys), len(ds.classes), f"ImageFolder {root}")
