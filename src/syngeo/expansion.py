r"""Student–teacher tasks and network expansions that keep the task fixed (docs/theory.md §6).

Linear task
-----------
Teacher :math:`W^* \in \mathbb{R}^{o\times i}`, student :math:`W`, inputs :math:`x_p` (``P``
columns of ``X``), error averaged over the inputs:

.. math::

    F(W) = \frac{1}{2P}\sum_p \|W^*x_p - Wx_p\|^2 = \tfrac12\mathrm{Tr}\big[(W-W^*)\Sigma(W-W^*)^\top\big],
    \qquad \Sigma = XX^\top/P,

so :math:`\nabla F = (W - W^*)\Sigma`, :math:`\nabla^2F = I_o\otimes\Sigma` (acting on the rows of
``W``) and :math:`\mathrm{Tr}\nabla^2F = o\,\mathrm{Tr}\Sigma`. ``N = o·i`` synapses.

Expansion (:func:`expand_linear`)
---------------------------------
Semi-orthogonal :math:`B \in \mathbb{R}^{c_1 i\times i}`, :math:`D \in \mathbb{R}^{c_2 o\times o}`
(:math:`B^\top B = I_i`, :math:`D^\top D = I_o`). The expanded network has inputs :math:`x' = Bx`
(``c1·i`` input neurons carrying the same signal), ``c2·o`` outputs, teacher
:math:`W^{*\prime} = DW^*B^\top` and student :math:`W' = DWB^\top` (so :math:`D^\top W'B = W`).
Since :math:`W^{*\prime}x' = DW^*x`, the expanded task is the same task read out by ``D``:

* :math:`F[W'] = \tfrac12\mathrm{Tr}[D(W-W^*)\Sigma(W-W^*)^\top D^\top] = F[W]`;
* :math:`\nabla F[W'] = (W'-W^{*\prime})B\Sigma B^\top = D\,\nabla F[W]\,B^\top`, same norm;
* :math:`\nabla^2F[W'] = I_{c_2 o}\otimes B\Sigma B^\top`, so
  :math:`\mathrm{Tr}\nabla^2F[W'] = c_2\,o\,\mathrm{Tr}\Sigma = c_2\,\mathrm{Tr}\nabla^2F[W]`;
* the curvature along the gradient, :math:`\widehat{\nabla F}^\top\nabla^2F\widehat{\nabla F}`, is
  unchanged (it is :math:`\mathrm{Tr}(\Sigma E^\top E\Sigma^2)/\|E\Sigma\|^2`, :math:`E = W - W^*`);
* :math:`N' = c_1c_2\,io`.

The factor :math:`c_2` comes from measuring the error on all ``c2·o`` expanded outputs. If the
expanded outputs were instead read back through :math:`D^\top` (error on ``o`` outputs,
:math:`y = D^\top W'Bx`), the Hessian would be :math:`DD^\top\otimes B\Sigma B^\top` and its trace
would not grow at all.

Sigmoid networks (:class:`SigmoidMLP`, :func:`expand_sigmoid`)
--------------------------------------------------------------
:math:`h^{(k)} = \sigma(W^{(k)}[h^{(k-1)}; -1])`: every layer's last input is a constant −1 (the
bias input of the reference scripts), so :math:`W^{(k)}` has shape ``(n_k, n_{k-1} + 1)``; the
output layer is a sigmoid too. Initial weights are ``N(0, (4/sqrt(fan_in))²)`` with ``fan_in =
n_{k-1} + 1`` (bias input included). Expansion adds hidden units whose incoming *and* outgoing
synapses are 0: the new units output σ(0) = 1/2 but reach nothing, so the function and ``F`` are
unchanged.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from syngeo.bounds import FlatLoss
from syngeo.errors import InputError, InputTypeError
from syngeo.validation import as_positive_int, as_seed

__all__ = [
    "Expansion",
    "LinearTask",
    "SigmoidMLP",
    "SigmoidTask",
    "expand_linear",
    "expand_sigmoid",
    "init_sigmoid_mlp",
    "make_linear_task",
    "make_sigmoid_task",
    "semi_orthogonal",
]


def _generator(rng) -> torch.Generator:
    if isinstance(rng, torch.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return torch.Generator().manual_seed(as_seed(rng, "rng"))
    raise InputTypeError(
        f"rng must be a torch.Generator or an integer seed, got {type(rng).__name__}"
    )


def _pos_int(name: str, n) -> int:
    return as_positive_int(n, name)


def semi_orthogonal(
    rows: int, cols: int, *, rng, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    r"""A random ``rows × cols`` matrix ``Q`` with :math:`Q^\top Q = I` (``rows >= cols``), Haar-distributed.

    Examples
    --------
    >>> Q = semi_orthogonal(6, 2, rng=0)
    >>> torch.allclose(Q.T @ Q, torch.eye(2, dtype=torch.float64))
    True
    """
    rows, cols = _pos_int("rows", rows), _pos_int("cols", cols)
    if rows < cols:
        raise InputError(f"a semi-orthogonal matrix needs rows >= cols, got {rows} x {cols}")
    g = _generator(rng)
    A = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    Q, R = torch.linalg.qr(A)
    Q = Q * torch.sign(torch.diagonal(R))  # sign fix: makes Q Haar-distributed
    return Q.to(dtype)


@dataclass(frozen=True, eq=False)
class LinearTask:
    r"""Linear student–teacher task :math:`F(W) = \tfrac12\mathrm{Tr}[(W - W^*)\Sigma(W - W^*)^\top]`.

    Attributes
    ----------
    teacher : Tensor, shape (o, i)
        :math:`W^*`.
    input_covariance : Tensor, shape (i, i)
        :math:`\Sigma = XX^\top / P` (uncentred second moment of the inputs).
    """

    teacher: torch.Tensor
    input_covariance: torch.Tensor

    def __post_init__(self) -> None:
        W, S = self.teacher, self.input_covariance
        if W.ndim != 2 or S.ndim != 2 or S.shape != (W.shape[1], W.shape[1]):
            raise InputError(
                f"teacher must be (o, i) and input_covariance (i, i); got {tuple(W.shape)} and {tuple(S.shape)}"
            )

    @property
    def n_inputs(self) -> int:
        return self.teacher.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.teacher.shape[0]

    @property
    def n_synapses(self) -> int:
        return self.teacher.numel()

    def _check(self, W: torch.Tensor) -> None:
        if not isinstance(W, torch.Tensor) or W.shape != self.teacher.shape:
            shape = tuple(W.shape) if isinstance(W, torch.Tensor) else type(W).__name__
            raise InputError(
                f"student weights must have shape {tuple(self.teacher.shape)}, got {shape}"
            )

    def loss(self, W: torch.Tensor) -> torch.Tensor:
        """``F(W)`` (differentiable)."""
        self._check(W)
        E = W - self.teacher
        return 0.5 * torch.sum((E @ self.input_covariance) * E)

    def grad(self, W: torch.Tensor) -> torch.Tensor:
        r""":math:`\nabla F = (W - W^*)\Sigma`."""
        self._check(W)
        return (W - self.teacher) @ self.input_covariance

    def hessian_trace(self) -> float:
        r""":math:`\mathrm{Tr}\nabla^2F = o\,\mathrm{Tr}\Sigma` (independent of ``W``)."""
        return float(self.n_outputs * torch.trace(self.input_covariance))

    def flat_loss(self) -> FlatLoss:
        r"""This task as a :class:`syngeo.bounds.FlatLoss` of the flattened (o·i) weights.

        Value, gradient, Hessian-vector products (:math:`V \mapsto V\Sigma` row by row) and
        the trace (:math:`o\,\mathrm{Tr}\Sigma`) by their closed forms.

        Examples
        --------
        >>> task = make_linear_task(3, 2, rng=0)
        >>> loss = task.flat_loss()
        >>> loss.n, round(loss.hessian_trace(loss.initial) - task.hessian_trace(), 12)
        (6, 0.0)
        """
        return _LinearTaskLoss(self)

    def grad_curvature(self, W: torch.Tensor) -> float:
        r""":math:`\widehat{\nabla F}^\top\nabla^2F\widehat{\nabla F} = \mathrm{Tr}(G\Sigma G^\top)/\|G\|^2`, :math:`G = \nabla F`."""
        G = self.grad(W)
        return float(torch.sum((G @ self.input_covariance) * G) / torch.sum(G * G))

    def __repr__(self) -> str:
        return f"LinearTask(outputs={self.n_outputs}, inputs={self.n_inputs}, N={self.n_synapses})"


class _LinearTaskLoss(FlatLoss):
    """:meth:`LinearTask.flat_loss`: closed-form derivatives of the linear task."""

    closed_form_trace = True

    def __init__(self, task: LinearTask) -> None:
        super().__init__(task.loss, torch.zeros_like(task.teacher))
        self.task = task

    def value_and_grad(self, w: torch.Tensor) -> tuple[float, torch.Tensor]:
        W = w.reshape(self.task.teacher.shape)
        return float(self.task.loss(W)), self.task.grad(W).reshape(-1)

    def hvp_rows(self, w: torch.Tensor, V: torch.Tensor, *, chunk: int = 256) -> torch.Tensor:
        o, i = self.task.teacher.shape
        return (V.reshape(-1, o, i) @ self.task.input_covariance).reshape(V.shape)

    def hessian_trace(self, w: torch.Tensor, *, chunk: int = 256) -> float:
        return self.task.hessian_trace()


def make_linear_task(
    n_inputs: int,
    n_outputs: int,
    *,
    n_samples: int = 1000,
    rng,
    dtype: torch.dtype = torch.float64,
) -> LinearTask:
    """Random teacher ``N(0, 1/n_inputs)`` and ``n_samples`` standard Gaussian inputs.

    Examples
    --------
    >>> task = make_linear_task(10, 5, rng=0)
    >>> task.n_synapses, round(task.hessian_trace() / 50, 1)     # o·Tr Σ ≈ o·i
    (50, 1.0)
    """
    i, o, P = (
        _pos_int("n_inputs", n_inputs),
        _pos_int("n_outputs", n_outputs),
        _pos_int("n_samples", n_samples),
    )
    g = _generator(rng)
    teacher = torch.randn(o, i, generator=g, dtype=torch.float64) / math.sqrt(i)
    X = torch.randn(i, P, generator=g, dtype=torch.float64)
    return LinearTask(teacher.to(dtype), (X @ X.T / P).to(dtype))


@dataclass(frozen=True, eq=False)
class Expansion:
    r"""A linear network expanded by semi-orthogonal embeddings (module docstring).

    Attributes
    ----------
    weights : Tensor, shape (c2·o, c1·i)
        :math:`W' = DWB^\top` (so :math:`D^\top W'B = W`).
    B : Tensor, shape (c1·i, i)
        Input embedding, :math:`B^\top B = I`.
    D : Tensor, shape (c2·o, o)
        Output embedding, :math:`D^\top D = I`.
    c1, c2 : int
        Expansion factors of inputs and outputs.
    task : LinearTask or None
        The expanded task (teacher :math:`DW^*B^\top`, input covariance :math:`B\Sigma B^\top`)
        when the original task was given.
    """

    weights: torch.Tensor
    B: torch.Tensor
    D: torch.Tensor
    c1: int
    c2: int
    task: LinearTask | None = None

    @property
    def n_synapses(self) -> int:
        return self.weights.numel()

    def contract(self, weights: torch.Tensor) -> torch.Tensor:
        r"""The original-size weights seen through the embedding, :math:`D^\top W'B`."""
        return self.D.T @ weights @ self.B

    def __repr__(self) -> str:
        o, i = self.D.shape[1], self.B.shape[1]
        return (
            f"Expansion(c1={self.c1}, c2={self.c2}, original=({o}, {i}), "
            f"expanded={tuple(self.weights.shape)}, N={self.n_synapses})"
        )

    def to_dict(self) -> dict:
        return {
            "c1": self.c1,
            "c2": self.c2,
            "n_outputs": self.D.shape[1],
            "n_inputs": self.B.shape[1],
            "n_synapses": self.n_synapses,
        }


def expand_linear(
    W: torch.Tensor, c1: int, c2: int, rng, *, task: LinearTask | None = None
) -> Expansion:
    r"""Embed the linear network ``W`` (o × i) into a ``c2·o × c1·i`` network doing the same task.

    :math:`W' = DWB^\top` with random semi-orthogonal ``B``, ``D``; with ``task`` the teacher and
    inputs are expanded consistently (:math:`W^{*\prime} = DW^*B^\top`, :math:`x' = Bx`) so that
    ``F``, :math:`\|\nabla F\|` and the gradient curvature are unchanged,
    :math:`\mathrm{Tr}\nabla^2F` is multiplied by ``c2`` and ``N`` by ``c1·c2``.

    Examples
    --------
    >>> task = make_linear_task(4, 2, rng=0)
    >>> W = torch.zeros(2, 4, dtype=torch.float64)
    >>> ex = expand_linear(W, 3, 2, rng=1, task=task)
    >>> ex.n_synapses, round(ex.task.hessian_trace() / task.hessian_trace(), 6)
    (48, 2.0)
    >>> bool(torch.isclose(ex.task.loss(ex.weights), task.loss(W)))
    True
    """
    if not isinstance(W, torch.Tensor) or W.ndim != 2:
        raise InputError("W must be a 2-d tensor of shape (outputs, inputs)")
    c1, c2 = _pos_int("c1", c1), _pos_int("c2", c2)
    o, i = W.shape
    g = _generator(rng)
    B = semi_orthogonal(c1 * i, i, rng=g, dtype=W.dtype)
    D = semi_orthogonal(c2 * o, o, rng=g, dtype=W.dtype)
    expanded_task = None
    if task is not None:
        if not isinstance(task, LinearTask) or task.teacher.shape != W.shape:
            raise InputError("task must be a LinearTask whose teacher has the shape of W")
        expanded_task = LinearTask(
            D @ task.teacher.to(W.dtype) @ B.T, B @ task.input_covariance.to(W.dtype) @ B.T
        )
    return Expansion(D @ W @ B.T, B, D, c1, c2, expanded_task)


# ----------------------------------------------------------------------------------------------
# sigmoid networks
# ----------------------------------------------------------------------------------------------


def _with_bias(h: torch.Tensor) -> torch.Tensor:
    return torch.cat([h, -torch.ones(h.shape[0], 1, dtype=h.dtype, device=h.device)], dim=1)


@dataclass(frozen=True, eq=False)
class SigmoidMLP:
    r"""Sigmoid network :math:`h^{(k)} = \sigma(W^{(k)}[h^{(k-1)}; -1])` (module docstring).

    Attributes
    ----------
    weights : tuple of Tensor
        ``weights[k]`` has shape ``(sizes[k+1], sizes[k] + 1)`` (last column: bias input −1).
    """

    weights: tuple[torch.Tensor, ...]

    def __post_init__(self) -> None:
        ws = tuple(self.weights)
        if not ws:
            raise InputError("a SigmoidMLP needs at least one weight matrix")
        for a, b in itertools.pairwise(ws):
            if b.shape[1] != a.shape[0] + 1:
                raise InputError(
                    f"layer shapes {tuple(a.shape)} -> {tuple(b.shape)} do not chain: the next layer "
                    "needs (previous outputs + 1 bias) columns"
                )
        object.__setattr__(self, "weights", ws)

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.weights[0].shape[1] - 1, *(w.shape[0] for w in self.weights))

    @property
    def n_synapses(self) -> int:
        return sum(w.numel() for w in self.weights)

    @staticmethod
    def apply(weights: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Forward pass of ``x`` (shape (P, sizes[0])) with the given weights (functional)."""
        h = x
        for W in weights:
            h = torch.sigmoid(_with_bias(h) @ W.T)
        return h

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(self.weights, x)

    def __repr__(self) -> str:
        return f"SigmoidMLP(sizes={list(self.sizes)}, N={self.n_synapses})"


def init_sigmoid_mlp(
    sizes: Sequence[int], *, rng, std_scale: float = 4.0, dtype: torch.dtype = torch.float64
) -> SigmoidMLP:
    """Weights ``N(0, (std_scale/sqrt(fan_in))²)``, ``fan_in = inputs + 1`` (the bias input).

    Examples
    --------
    >>> init_sigmoid_mlp([10, 5, 10], rng=0)
    SigmoidMLP(sizes=[10, 5, 10], N=115)
    """
    sizes = [_pos_int("layer size", s) for s in sizes]
    if len(sizes) < 2:
        raise InputError(f"sizes needs an input and an output size, got {sizes!r}")
    g = _generator(rng)
    ws = []
    for n_in, n_out in itertools.pairwise(sizes):
        fan_in = n_in + 1
        ws.append(
            torch.randn(n_out, fan_in, generator=g, dtype=torch.float64).to(dtype)
            * (std_scale / math.sqrt(fan_in))
        )
    return SigmoidMLP(tuple(ws))


@dataclass(frozen=True, eq=False)
class SigmoidTask:
    r"""Sigmoid student–teacher task :math:`F = \frac{1}{2P}\sum_p\|y^*(x_p) - y(x_p)\|^2`.

    Attributes
    ----------
    inputs : Tensor, shape (P, n_in)
    targets : Tensor, shape (P, n_out)
        The teacher's outputs on ``inputs``.
    """

    inputs: torch.Tensor
    targets: torch.Tensor

    def loss(self, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """``F`` of the network with ``weights`` (differentiable, functional)."""
        y = SigmoidMLP.apply(weights, self.inputs)
        if y.shape != self.targets.shape:
            raise InputError(
                f"network outputs {tuple(y.shape)} but targets are {tuple(self.targets.shape)}"
            )
        return 0.5 * torch.sum((self.targets - y) ** 2) / self.inputs.shape[0]

    def __repr__(self) -> str:
        return f"SigmoidTask(P={self.inputs.shape[0]}, in={self.inputs.shape[1]}, out={self.targets.shape[1]})"


def make_sigmoid_task(
    teacher: SigmoidMLP, *, n_samples: int = 1000, rng, input_std: float = 1.0
) -> SigmoidTask:
    """Gaussian inputs ``N(0, input_std²)`` labelled by ``teacher``."""
    g = _generator(rng)
    dtype = teacher.weights[0].dtype
    X = input_std * torch.randn(
        _pos_int("n_samples", n_samples), teacher.sizes[0], generator=g, dtype=torch.float64
    ).to(dtype)
    with torch.no_grad():
        Y = teacher(X)
    return SigmoidTask(X, Y)


def expand_sigmoid(net: SigmoidMLP, hidden_sizes: Sequence[int]) -> SigmoidMLP:
    """Grow every hidden layer to ``hidden_sizes`` by adding units with zero in- and out-synapses.

    New rows of ``W^{(k)}`` and new columns of ``W^{(k+1)}`` (inserted before the bias column) are
    0, so the network computes the same function. Input and output sizes never change.

    Examples
    --------
    >>> net = init_sigmoid_mlp([3, 2, 1], rng=0)
    >>> big = expand_sigmoid(net, [5])
    >>> x = torch.ones(4, 3, dtype=torch.float64)
    >>> big.sizes, bool(torch.allclose(big(x), net(x)))
    ((3, 5, 1), True)
    """
    if not isinstance(net, SigmoidMLP):
        raise InputTypeError(f"net must be a SigmoidMLP, got {type(net).__name__}")
    old = net.sizes
    hidden = [as_positive_int(h, "each hidden size") for h in hidden_sizes]
    if len(hidden) != len(old) - 2:
        raise InputError(
            f"the network has {len(old) - 2} hidden layers, got {len(hidden)} new sizes"
        )
    for h_new, h_old in zip(hidden, old[1:-1], strict=False):
        if h_new < h_old:
            raise InputError(f"expansion cannot shrink a layer ({h_old} -> {h_new})")
    new_sizes = [old[0], *hidden, old[-1]]
    ws = []
    for k, W in enumerate(net.weights):
        n_out, n_in = new_sizes[k + 1], new_sizes[k]
        W_new = torch.zeros(n_out, n_in + 1, dtype=W.dtype, device=W.device)
        o_old, i_old = W.shape[0], W.shape[1] - 1
        W_new[:o_old, :i_old] = W[:, :i_old]
        W_new[:o_old, -1] = W[:, -1]
        ws.append(W_new)
    return SigmoidMLP(tuple(ws))
