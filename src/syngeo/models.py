r"""Small networks for finetuning under mirror descent without downloads (docs/deep.md).

The paper finetunes pretrained ImageNet networks, a recurrent network on row-wise sequential MNIST
and a SimSiam ResNet-50 (Pogodin et al. §4.3, B.3). These are the same kinds of networks at a scale
that trains in seconds on a laptop CPU, used by the offline defaults of ``syngeo reproduce fig4 |
fig7a | fig7b``:

* :class:`SmallCNN` — two 3×3 convolutions, average pooling and a linear readout (``fc``, which
  :func:`syngeo.data.weights.select_tensors` recognises as the readout and leaves out);
* :class:`RowRNN` — an Elman RNN (tanh) reading an image one row per time step, with a linear
  readout from the last hidden state (Fig. 7A);
* :class:`SimSiam` — an encoder, a projector and a predictor with the stop-gradient loss of Chen &
  He (2021), :func:`simsiam_loss` (Fig. 7B); the encoder's weights are the ones read.

No normalisation layers in the encoders: their per-batch statistics would make a data-parallel
run differ from a single-process run on the same global batch (:mod:`syngeo.finetune`). SimSiam's
projector and predictor have batch normalisation, as in Chen & He (2021), because without it the
representation collapses; they are not read. :func:`build_model` makes any of them, or a torchvision architecture when the
``vision`` extra is installed, from a name.

Examples
--------
>>> import torch
>>> SmallCNN(width=4)(torch.zeros(2, 1, 8, 8)).shape
torch.Size([2, 10])
>>> RowRNN(hidden=16)(torch.zeros(3, 8, 8)).shape
torch.Size([3, 10])
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import Tensor, nn

from syngeo.errors import InputError
from syngeo.validation import as_positive_int

__all__ = ["ARCHITECTURES", "RowRNN", "SimSiam", "SmallCNN", "build_model", "simsiam_loss"]

#: The architectures defined here (torchvision names are accepted too, see :func:`build_model`).
ARCHITECTURES = ("cnn", "rnn")


class SmallCNN(nn.Module):
    """conv(3×3, ``width``) → ReLU → conv(3×3, 2·``width``) → ReLU → 2×2 max pool → ``fc``.

    Parameters
    ----------
    width : int
        Channels of the first convolution (the second has twice as many).
    n_classes : int
        Outputs of the readout ``fc``.
    in_channels : int
        Image channels.
    image_size : int
        Height and width of the (square) images; the readout sees the flattened pooled map.
    """

    def __init__(
        self, width: int = 8, n_classes: int = 10, in_channels: int = 1, image_size: int = 8
    ) -> None:
        super().__init__()
        width = as_positive_int(width, "width")
        self.conv1 = nn.Conv2d(as_positive_int(in_channels, "in_channels"), width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        side = as_positive_int(image_size, "image_size") // 2
        if side < 1:
            raise InputError(f"image_size must be at least 2, got {image_size!r}")
        self.feature_dim = 2 * width * side * side
        self.fc = nn.Linear(self.feature_dim, as_positive_int(n_classes, "n_classes"))

    def features(self, x: Tensor) -> Tensor:
        """The flattened pooled feature map (batch, ``feature_dim``) before the readout."""
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return nn.functional.max_pool2d(x, 2).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


class RowRNN(nn.Module):
    """An Elman RNN reading an image row by row; a linear readout ``fc`` of the last hidden state.

    Input shape (batch, rows, columns) or (batch, 1, rows, columns): one row per time step.
    """

    def __init__(self, hidden: int = 64, n_classes: int = 10, input_size: int = 8) -> None:
        super().__init__()
        self.rnn = nn.RNN(
            as_positive_int(input_size, "input_size"),
            as_positive_int(hidden, "hidden"),
            batch_first=True,
            nonlinearity="tanh",
        )
        self.fc = nn.Linear(hidden, as_positive_int(n_classes, "n_classes"))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:
            x = x.squeeze(1)
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


class SimSiam(nn.Module):
    r"""SimSiam (Chen & He 2021): encoder ``f``, projector ``g`` and predictor ``h``.

    ``forward(x1, x2)`` returns ``(p1, p2, z1, z2)`` with :math:`z = g(f(x))`, :math:`p = h(z)`;
    :func:`simsiam_loss` applies the stop-gradient to ``z``. The encoder is any module mapping
    images to a feature vector of size ``feature_dim``.
    """

    def __init__(
        self, encoder: nn.Module, feature_dim: int, dim: int = 32, pred_dim: int = 16
    ) -> None:
        super().__init__()
        feature_dim = as_positive_int(feature_dim, "feature_dim")
        dim, pred_dim = as_positive_int(dim, "dim"), as_positive_int(pred_dim, "pred_dim")
        self.encoder = encoder
        # Batch normalisation in the heads, as in Chen & He (2021): without it the
        # representation collapses (the loss reaches -1 with a constant output).
        self.projector = nn.Sequential(
            nn.Linear(feature_dim, dim, bias=False),
            nn.BatchNorm1d(dim),
            nn.ReLU(),
            nn.Linear(dim, dim, bias=False),
            nn.BatchNorm1d(dim, affine=False),
        )
        self.predictor = nn.Sequential(
            nn.Linear(dim, pred_dim, bias=False),
            nn.BatchNorm1d(pred_dim),
            nn.ReLU(),
            nn.Linear(pred_dim, dim),
        )

    def embed(self, x: Tensor) -> Tensor:
        features = (
            self.encoder.features(x) if hasattr(self.encoder, "features") else self.encoder(x)
        )
        return self.projector(features)

    def forward(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        z1, z2 = self.embed(x1), self.embed(x2)
        return self.predictor(z1), self.predictor(z2), z1, z2


def simsiam_loss(
    p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor, *, reduction: str = "mean"
) -> Tensor:
    r"""Symmetrised negative cosine similarity with stop-gradient (Chen & He 2021, Alg. 1).

    .. math:: L = -\tfrac12\big[\cos(p_1, \mathrm{sg}(z_2)) + \cos(p_2, \mathrm{sg}(z_1))\big]

    averaged over the batch (``reduction="mean"``) or per sample (``"none"``).

    Examples
    --------
    >>> import torch
    >>> z = torch.randn(4, 3)
    >>> round(float(simsiam_loss(z, z, z, z)), 6)
    -1.0
    """
    if reduction not in ("mean", "none"):
        raise InputError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    cos = nn.functional.cosine_similarity
    losses = -0.5 * (cos(p1, z2.detach(), dim=-1) + cos(p2, z1.detach(), dim=-1))
    return losses.mean() if reduction == "mean" else losses


def build_model(arch: str, *, n_classes: int = 10, width: int = 8, **kwargs: Any) -> nn.Module:
    """A model by name: ``"cnn"`` (:class:`SmallCNN`), ``"rnn"`` (:class:`RowRNN`, ``width`` is
    the hidden size) or a torchvision architecture (``"resnet18"``, ``"shufflenet_v2_x0_5"``,
    ...; needs torchvision, syngeo's ``vision`` extra), randomly initialised.

    Raises
    ------
    InputError
        An unknown name, or a torchvision name without torchvision installed.

    Examples
    --------
    >>> type(build_model("rnn", width=4)).__name__
    'RowRNN'
    """
    if not isinstance(arch, str) or not arch:
        raise InputError(f"arch must be a name such as 'cnn', 'rnn' or 'resnet18', got {arch!r}")
    if arch == "cnn":
        return SmallCNN(width=width, n_classes=n_classes, **kwargs)
    if arch == "rnn":
        return RowRNN(hidden=width, n_classes=n_classes, **kwargs)
    try:
        models = importlib.import_module("torchvision.models")
    except ImportError:
        raise InputError(
            f"architecture {arch!r} needs torchvision: install syngeo's 'vision' extra (torchvision) "
            f"(built in without it: {', '.join(ARCHITECTURES)})"
        ) from None
    names = set(models.list_models(module=models)) if hasattr(models, "list_models") else set()
    if arch not in names:
        raise InputError(
            f"unknown architecture {arch!r}; use one of {', '.join(ARCHITECTURES)} or a "
            "torchvision classification model name (e.g. resnet18)"
        )
    return models.get_model(arch, weights=None, num_classes=n_classes, **kwargs)
