r"""Mirror descent as a ``torch.optim.Optimizer`` (docs/theory.md §1).

Gradient descent in the dual space of a potential :math:`\phi`:

.. math::
    \nabla\phi(w_{t+1}) = \nabla\phi(w_t) - \eta\, d_t, \qquad
    w_{t+1} = (\nabla\phi)^{-1}\big(\nabla\phi(w_t) - \eta\, d_t\big),

where :math:`d_t` is the (momentum-averaged) gradient. The layout follows ``torch.optim.sgd``:
the :class:`MirrorDescent` class validates hyperparameters and gathers each parameter group; the
public functional :func:`mirror_descent` does the arithmetic, either in
``_single_tensor_mirror_descent`` (a plain loop over the potential's ``grad`` and
``grad_inverse``: the reference) or in ``_foreach_mirror_descent`` (grouped by device and dtype,
multi-tensor momentum, then the potential's own ``mirror_step_``, a fused closed form where the
potential has one: the fast path, which must match the reference). The optimizer never asks
which potential it has: everything potential-specific is a method of the
:class:`~syngeo.potentials.Potential` protocol. Recipes: :func:`exponentiated_gradient`,
:func:`pnorm_sgd`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Union

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.sgd import sgd as _torch_sgd

from syngeo import kernels
from syngeo.constraints import (
    Constraint,
    ConstraintsLike,
    as_constraint_map,
    constraint_list,
    lift_zeros_,
    project_,
    soften,
    warn_frozen_zeros,
)
from syngeo.errors import InputError, InputTypeError
from syngeo.potentials import NegativeEntropy, PNorm, Potential, PotentialLike, potential
from syngeo.validation import as_choice, as_finite_float

__all__ = [
    "MirrorDescent",
    "PlasticityNoise",
    "exponentiated_gradient",
    "mirror_descent",
    "pnorm_sgd",
]

PlasticityNoise = Callable[[list[Tensor]], Sequence[Tensor]]
"""``noise(params) -> perturbations``: one additive perturbation per parameter, same shapes."""

NOISE_SPACES = ("dual", "primal")
DECAY_SPACES = ("auto", "primal", "dual")

LearningRate = Union[float, Tensor]


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _check_lr(lr: Any) -> None:
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise InputError(
                f"Tensor lr must be 1-element, got a tensor of shape {tuple(lr.shape)}"
            )
        value = float(lr.detach().reshape(()).cpu())
    else:
        try:
            value = as_finite_float(lr, "lr")
        except InputTypeError:
            raise InputTypeError(
                f"Invalid learning rate: {lr!r}; use a float or a 1-element tensor"
            ) from None
        except InputError:
            value = math.nan
    if not math.isfinite(value) or value < 0.0:
        raise InputError(f"Invalid learning rate: {lr}; use a finite lr >= 0")


def _check_hyperparameters(group: dict[str, Any]) -> None:
    """Raise :class:`~syngeo.errors.InputError` (a ``ValueError``) or
    :class:`~syngeo.errors.InputTypeError` (also a ``TypeError``) for an invalid hyperparameter."""
    _check_lr(group["lr"])
    for name in ("momentum", "dampening", "weight_decay"):
        as_finite_float(group[name], name)
    if group["momentum"] < 0.0:
        raise InputError(f"Invalid momentum value: {group['momentum']}; use momentum >= 0")
    if group["weight_decay"] < 0.0:
        raise InputError(
            f"Invalid weight_decay value: {group['weight_decay']}; use weight_decay >= 0"
        )
    if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
        raise InputError(
            "Nesterov momentum requires a momentum and zero dampening; set momentum > 0 and "
            "dampening=0, or nesterov=False"
        )
    for name in ("nesterov", "maximize", "cache_dual"):
        if not isinstance(group[name], bool):
            raise InputTypeError(f"Invalid {name} value: {group[name]!r}; use True or False")
    for name in ("foreach", "fused"):
        if group[name] is not None and not isinstance(group[name], bool):
            raise InputTypeError(f"Invalid {name} value: {group[name]!r}; use None, True or False")
    if group["fused"] and group["foreach"]:
        raise InputError("fused=True and foreach=True cannot be set together; choose one")
    noise = group["plasticity_noise"]
    if noise is not None and not callable(noise):
        raise InputTypeError(
            f"plasticity_noise must be a callable noise(params) -> list of tensors or None, "
            f"got {type(noise).__name__}"
        )
    _check_noise_space(group["noise_space"])


def _check_noise_space(noise_space: Any) -> None:
    try:
        as_choice(noise_space, "noise_space", NOISE_SPACES)
    except InputError:
        raise InputError(
            f"Invalid noise_space value: {noise_space!r}; use 'dual' or 'primal'"
        ) from None


def _check_decay(decay_space: Any, decay_to: Any, phi: Potential) -> None:
    """Validate the weight-decay space and reference magnitude (docs/geometries.md)."""
    try:
        as_choice(decay_space, "decay_space", DECAY_SPACES)
    except InputError:
        raise InputError(
            f"Invalid decay_space value: {decay_space!r}; use 'auto', 'primal' or 'dual'"
        ) from None
    c = as_finite_float(decay_to, "decay_to")
    if c < 0:
        raise InputError(f"Invalid decay_to value: {decay_to}; use a magnitude >= 0")
    if decay_space == "dual" and phi.preserves_sign and c == 0:
        raise InputError(
            f"dual weight decay under the sign-preserving {phi} potential needs a reference "
            "magnitude decay_to > 0 (0 is the boundary of its domain)"
        )


def _dual_reference(phi: Potential, w: Tensor, decay_to: float) -> Tensor:
    """∇φ(w_ref) with w_ref = sign(w)·decay_to (0 when decay_to = 0: ∇φ(0) = 0 here)."""
    if decay_to == 0:
        return torch.zeros_like(w)
    return phi.grad(torch.sign(w) * decay_to)


def _decay_term(phi: Potential, w: Tensor, decay_space: str, decay_to: float) -> Tensor:
    """r(w) of the coupled weight decay λ·r(w) added to the gradient (docs/geometries.md):
    ``"primal"`` w; ``"dual"`` ∇φ(w) − ∇φ(w_ref); ``"auto"`` w, or sign(w) when the potential
    preserves signs."""
    if decay_space == "dual":
        return phi.grad(w) - _dual_reference(phi, w, decay_to)
    if decay_space == "auto" and phi.preserves_sign:
        return torch.sign(w)
    return w


def _as_float(lr: LearningRate) -> float:
    return float(lr.detach().reshape(())) if isinstance(lr, Tensor) else float(lr)


# --------------------------------------------------------------------------------------------
# state-dict hooks: potentials are stored by name where that is lossless, noise is not stored
# --------------------------------------------------------------------------------------------


def _potential_to_state(phi: Potential) -> Any:
    """The potential's name if parsing it gives the same potential back, else the object."""
    name = getattr(phi, "name", None)
    if isinstance(name, str):
        try:
            if potential(name) == phi:
                return name
        except (TypeError, ValueError):
            pass
    return phi


_DUAL, _SIGN, _VERSION = "dual", "sign", "cache_version"
_UNSAVED_STATE = frozenset({_SIGN, _VERSION})
_CACHE_STATE = (_DUAL, _SIGN, _VERSION)
_IS_SPARSE = operator.attrgetter("is_sparse")


def _register_hooks_once(
    optimizer: Optimizer,
    post_hook: Callable[[Optimizer, dict[str, Any]], Any],
    pre_hook: Callable[[Optimizer, dict[str, Any]], Any],
) -> None:
    """Register ``state_dict``'s post-hook and ``load_state_dict``'s pre-hook on ``optimizer``
    unless they are already: called from ``__init__`` and again from ``__setstate__``, because
    optimizer pickles (``copy.deepcopy``, ``torch.save(opt)``) drop hooks."""
    if post_hook not in optimizer._optimizer_state_dict_post_hooks.values():
        optimizer.register_state_dict_post_hook(post_hook)
    if pre_hook not in optimizer._optimizer_load_state_dict_pre_hooks.values():
        optimizer.register_load_state_dict_pre_hook(pre_hook)


def _state_dict_post_hook(optimizer: Optimizer, state_dict: dict[str, Any]) -> dict[str, Any]:
    groups = []
    for group in state_dict["param_groups"]:
        group = dict(group)
        group["potential"] = _potential_to_state(group["potential"])
        # A noise callable is code, not state: the loading optimizer keeps its own.
        group.pop("plasticity_noise", None)
        groups.append(group)
    state_dict["param_groups"] = groups
    # Dual weights kept with ``cache_dual=True`` are saved (a run resumed from them continues
    # bit for bit); the version stamp is not (it belongs to this process's tensors).
    # New dicts: torch's ``state_dict()`` hands out the live per-parameter state dicts.
    state_dict["state"] = {
        index: {k: v for k, v in entry.items() if k not in _UNSAVED_STATE}
        for index, entry in state_dict["state"].items()
    }
    return state_dict


def _load_state_dict_pre_hook(optimizer: Optimizer, state_dict: dict[str, Any]) -> dict[str, Any]:
    groups = []
    current = optimizer.param_groups
    for index, group in enumerate(state_dict["param_groups"]):
        group = dict(group)
        group["potential"] = potential(group.get("potential", "2-norm"))
        if "plasticity_noise" not in group:
            group["plasticity_noise"] = (
                current[index].get("plasticity_noise") if index < len(current) else None
            )
        group.setdefault("noise_space", "dual")
        group.setdefault("decay_space", "auto")
        group.setdefault("decay_to", 0.0)
        group.setdefault("fused", None)
        # The cache is a speed setting of this optimizer, not state: a checkpoint (0.1.0 saved
        # cache_dual=True by default) never switches it on.
        group["cache_dual"] = current[index]["cache_dual"] if index < len(current) else False
        groups.append(group)
    state_dict["param_groups"] = groups
    # A loaded dual is unverified until the first step checks it against the weights. ("sign"
    # entries come from 0.1.0 checkpoints, which cached the signs under negative entropy.)
    state_dict["state"] = {
        index: {k: v for k, v in entry.items() if k not in _UNSAVED_STATE}
        for index, entry in state_dict.get("state", {}).items()
    }
    return state_dict


# --------------------------------------------------------------------------------------------
# the optimizer
# --------------------------------------------------------------------------------------------


class MirrorDescent(Optimizer):
    r"""Mirror descent with momentum, weight decay and plasticity noise (torch's SGD conventions).

    .. math::
       \begin{aligned}
       &\textbf{input: } \eta \text{ (lr)},\ w_0 \text{ (params)},\ \phi \text{ (potential)},\
         \lambda \text{ (weight decay)},\ \mu \text{ (momentum)},\ \tau \text{ (dampening)},\
         \textit{nesterov},\ \textit{maximize},\ \xi \text{ (plasticity noise)} \\
       &\textbf{for } t = 1, 2, \ldots \\
       &\quad g_t \leftarrow \pm\nabla f_t(w_{t-1}) \quad (- \text{ if maximize}) \\
       &\quad \textbf{if } \lambda \ne 0:\ g_t \leftarrow g_t + \lambda\, r(w_{t-1}),\quad
           r(w) = w \text{ (p-norms)},\ r(w) = \mathrm{sign}(w) \text{ (negative entropy)} \\
       &\quad \textbf{if } \mu \ne 0:\ b_t \leftarrow \mu b_{t-1} + (1-\tau) g_t
           \ (b_1 = g_1);\quad d_t \leftarrow g_t + \mu b_t \text{ if nesterov else } b_t \\
       &\quad \textbf{else}:\ d_t \leftarrow g_t \\
       &\quad u_t \leftarrow \nabla\phi(w_{t-1}) - \eta\, d_t
           \ \ (+\, \xi_t \text{ if noise\_space = "dual"}) \\
       &\quad w_t \leftarrow (\nabla\phi)^{-1}\big(u_t;\ \mathrm{sign}(w_{t-1})\big)
           \ \ (+\, \xi_t \text{ if noise\_space = "primal"})
       \end{aligned}

    Conventions
    -----------
    * **Momentum lives in the dual space**: the buffer averages gradients, which are dual vectors,
      exactly as in ``torch.optim.SGD`` (first step :math:`b_1 = g_1`, dampening from the second
      step on). This is how the paper trains with momentum 0.9.
    * For ``PNorm(2)`` the mirror maps are identities and the step is computed like
      ``torch.optim.SGD`` (same operations in the same order, so the results are identical).
    * **Negative entropy** (``"ne"``) gives the exponentiated-gradient rule
      :math:`w_t = w_{t-1} \odot \exp(-\eta\,\mathrm{sign}(w_{t-1}) \odot d_t)`: signs never change
      and a weight at exactly 0 stays 0. Its weight decay is :math:`\lambda\,\mathrm{sign}(w)`,
      which shrinks magnitudes multiplicatively, :math:`|w| \leftarrow |w|\,e^{-\eta\lambda}`
      (docs/theory.md §1); for p-norms it is :math:`\lambda w` (the L2 penalty, as in SGD).
    * **Plasticity noise** ``noise(params) -> list[Tensor]`` receives the group's parameters
      that have a gradient (before the update) and returns one additive perturbation per
      parameter, same shape; it is added as is (not multiplied by ``lr``) in the dual space
      (``noise_space="dual"``, the default) or to the new weights (``"primal"``). Under a
      sign-preserving potential (negative entropy) a primal perturbation that would flip a
      weight's sign is **reflected** at zero, :math:`w \leftarrow \mathrm{sign}(w_{t-1})
      \,|w + \xi|`, so the weight keeps its sign and its perturbed magnitude (clamping to 0
      instead would freeze the synapse forever, since 0 is a fixed point of the rule).
      Noise callables are configuration, not state: ``state_dict()`` omits them and
      ``load_state_dict`` keeps the loading optimizer's.
    * ``state_dict()`` stores each group's potential by name (``"3-norm"``, ``"NE"``) when the
      name parses back to the same potential, so it loads with ``torch.load(weights_only=True)``.
    * **The parameters are the only source of truth** (default). Each step reads the weights,
      evaluates the mirror map and writes :math:`(\nabla\phi)^{-1}(u_t)` back, through the
      potential's :meth:`~syngeo.potentials.LocalPotential.mirror_step_` (a fused closed form for
      p-norms and negative entropy, ``grad``/``grad_inverse`` for any other potential). So a
      write into the parameters between steps, by any route (``p.data.mul_(2)``,
      ``p.data.clamp_(min=0)`` for Dale's law, ``p.data.copy_(...)``, ``model.load_state_dict``,
      ``nn.init``, another optimizer), is what the next step starts from.
    * **Dual cache** (``cache_dual=True``, opt-in; fast path, p-norms with p ≠ 2 are what it is
      for). The optimizer then keeps :math:`u = \nabla\phi(w)` in ``state[p]["dual"]`` and a
      step is :math:`u \leftarrow u - \eta d` (+ dual noise), :math:`w \leftarrow
      (\nabla\phi)^{-1}(u)`, without evaluating the mirror map. Each entry is stamped with
      ``p._version`` after the optimizer's write and recomputed when the stamp differs, so
      in-place writes through the parameter itself (``p.mul_`` under ``torch.no_grad()``,
      ``model.load_state_dict``, ``nn.init``) are seen. **Caveat: writes through** ``p.data``
      **are not seen** (``.data`` has its own version counter) **and are undone by the next
      step**; after one, call ``optimizer.state[p].pop("dual", None)``. A change of dtype, device
      or shape is caught. The cache costs one parameter-sized tensor per parameter; it is not
      used with primal noise or on the reference path (``foreach=False``). Results agree with
      the default to rounding. ``state_dict()`` saves the kept duals; after ``load_state_dict``
      a loaded dual is used only if a zero step from it reproduces the current weights exactly
      (checked once), so a run resumed from one checkpoint continues bit for bit.
      ``cache_dual`` is a setting of the optimizer, not state: ``load_state_dict`` keeps the
      loading optimizer's.
    * **Why no verified cache by default.** A cache could be kept safe by checking, before each
      step, that the weights are still the bits the optimizer wrote (a stored copy, compared and
      refreshed every step). Measured on a ResNet-50 parameter list (one thread, CPU time, in
      units of one ``torch.optim.SGD(momentum=0.9, foreach=True)`` step): the check and the
      copy cost about 0.65x with ``memcmp`` and 1.2x with ``torch.equal``, while the cache saves
      about 0.35x under the 3-norm (the mirror map is ``abs`` and a product), one ``sign`` pass
      under negative entropy and about 1.4x at p = 2.5 (``abs``, ``sqrt``, product). The check
      would pay off only for p-norms with a costly mirror map, at twice the cache's memory, so
      the default is the fused, cache-free update and the cache is an opt-in.
    * **Fused step** (``fused``; :mod:`syngeo.kernels`, docs/geometries.md "Cost and
      performance"): the whole step in one pass per tensor (read w, g, b; write w, b), where
      SGD's foreach step makes three. On CPU a C kernel built on first use (0.3–0.9 s per
      configuration, cached on disk; the eager path where there is no compiler), on CUDA a
      Triton kernel. ``fused=None`` uses it for float32 CPU groups of at least
      ``AUTO_FUSED_MIN_NUMEL`` elements. Measured (``benchmarks/bench_optim.py --quick``, one
      thread, CPU time, ratio to ``torch.optim.SGD(momentum=0.9, foreach=True)``, shared
      machine): 2-norm 0.9–1.0x, 3-norm 0.55–0.63x, NE 0.76–0.88x, p = 2.5 0.71–0.77x,
      generic p 1.1–1.4x, hypentropy 0.82–0.86x, Tsallis(1/2) 0.58–0.65x, dual weight decay
      0.56–0.64x (two threads: docs/geometries.md).
    * Cost of the eager step, in element-wise passes over the parameters (SGD: 3): 2-norm:
      SGD's own; 3-norm: 7 (momentum, abs, product, dual step, abs, sqrt, copysign); NE: 5
      (momentum, sign, signed scaled product, exp, product); other p: 10 to 12 (a power other
      than a square or a square root is ``exp(k·log|x|)``, three passes); measured 2-norm
      0.94x, 3-norm 2.4x, NE 2.6x, p = 2.5 5.5x; with ``cache_dual=True`` 3-norm 2.0x, p = 2.5
      4.0x.

    Parameters
    ----------
    params
        Iterable of parameters or of parameter-group dicts; every key below can be set per group.
    lr
        Learning rate :math:`\eta \ge 0` (float or 1-element tensor).
    potential
        Any specification accepted by :func:`syngeo.potentials.potential` (``"2-norm"``,
        ``"3-norm"``, ``"p=2.5"``, ``2.5``, ``"ne"``, a :class:`~syngeo.potentials.Potential`).
    momentum, dampening, weight_decay, nesterov, maximize
        As in ``torch.optim.SGD``.
    foreach
        Use the grouped, closed-form implementation (default ``None`` means yes; ``False`` runs
        the single-tensor reference loop).
    fused
        One fused kernel pass per tensor (:mod:`syngeo.kernels`; docs/geometries.md,
        "Performance"): ``True`` whenever a kernel applies (CPU float32 with a C compiler,
        CUDA with Triton; the 2-norm uses ``torch.optim.SGD``'s fused kernel) and also
        declares GradScaler support (``_step_supports_amp_scaling``); ``None`` (default) only
        for groups of at least ``AUTO_FUSED_MIN_NUMEL`` float32 CPU elements that are not
        Euclidean (there a one-time kernel build of about 0.3 s, cached on disk, pays back
        within a few steps; smaller groups keep the eager path, so small models never run a
        compiler); ``False`` never. Constraints are fused on CPU (sign mask, floor, hard and
        soft ceiling, the zero lift; constrained parameters take a constrained kernel, the
        others the plain one); on CUDA and under the 2-norm they take the eager path.
        Plasticity noise, ``cache_dual`` and a potential without a kernel (a user's own)
        always take the eager path, as does any machine without a working compiler
        (silently).
    plasticity_noise
        Optional ``noise(params) -> list[Tensor]`` (see Conventions).
    noise_space
        ``"dual"`` or ``"primal"``: where the plasticity noise is added.
    cache_dual
        Keep the dual weights between steps (default ``False``; see Conventions for the caveat:
        writes through ``p.data`` are then lost).
    decay_space, decay_to
        Where weight decay acts: ``"auto"`` (default; the rule above), ``"primal"`` (λw, L2 on
        the weights, for every potential) or ``"dual"`` (λ(∇φ(w) − ∇φ(w_ref)), the gradient of
        a Bregman penalty toward w_ref = sign(w)·``decay_to``); docs/geometries.md.
    constraints
        Sign masks (Dale's law), floors and ceilings on |w|, applied inside the step as the
        Bregman projection (:mod:`syngeo.constraints`): a
        :class:`~syngeo.constraints.Constraint` for every parameter or a dict
        ``{parameter: Constraint}``. Configuration, not state (``state_dict`` omits it);
        unconstrained parameters take exactly the plain step. Disables ``cache_dual`` for the
        groups it touches.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(4, 1)
    >>> opt = MirrorDescent(model.parameters(), lr=0.01, potential="3-norm", momentum=0.9)
    >>> loss = model(torch.randn(8, 4)).pow(2).mean()
    >>> loss.backward()
    >>> opt.step()
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: LearningRate = 1e-3,
        *,
        potential: PotentialLike = "2-norm",
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        plasticity_noise: PlasticityNoise | None = None,
        noise_space: str = "dual",
        cache_dual: bool = False,
        decay_space: str = "auto",
        decay_to: float = 0.0,
        constraints: ConstraintsLike = None,
        fused: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "potential": potential,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "plasticity_noise": plasticity_noise,
            "noise_space": noise_space,
            "cache_dual": cache_dual,
            "decay_space": decay_space,
            "decay_to": decay_to,
            "fused": fused,
        }
        _check_hyperparameters(defaults)
        defaults["potential"] = _as_potential(potential)
        super().__init__(params, defaults)
        # GradScaler then passes grad_scale/found_inf to step() instead of unscaling the grads
        self._step_supports_amp_scaling = bool(fused)
        _register_hooks_once(self, _state_dict_post_hook, _load_state_dict_pre_hook)
        self._constraints = as_constraint_map(
            constraints, [p for g in self.param_groups for p in g["params"]]
        )
        self._zero_checked: set[int] = set()

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group, validating its hyperparameters and parsing its potential."""
        if not isinstance(param_group, dict):
            raise InputTypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        merged = {**self.defaults, **param_group}
        _check_hyperparameters(merged)
        phi = _as_potential(merged["potential"])
        _check_decay(merged["decay_space"], merged["decay_to"], phi)
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["potential"] = phi
        if not phi.is_euclidean:
            for p in group["params"]:
                if not (p.is_floating_point() and not p.is_complex()):
                    self.param_groups.pop()
                    raise InputTypeError(
                        f"mirror descent with the {phi} potential needs real floating-point "
                        f"parameters, got one of dtype {p.dtype}; use the 2-norm for others"
                    )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("potential", PNorm(2.0))
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("plasticity_noise", None)
            group.setdefault("noise_space", "dual")
            group.setdefault("cache_dual", False)
            group.setdefault("decay_space", "auto")
            group.setdefault("decay_to", 0.0)
            group.setdefault("fused", None)
        self.__dict__.setdefault("_constraints", {})
        self.__dict__.setdefault("_zero_checked", set())
        _register_hooks_once(self, _state_dict_post_hook, _load_state_dict_pre_hook)

    def _init_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        momentum_buffer_list: list[Tensor | None],
        cache_list: list[Tensor | None] | None,
        states: list[dict[str, Any]],
    ) -> None:
        phi = group["potential"]
        use_momentum = group["momentum"] != 0
        all_states = self.state
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            params.append(p)
            grads.append(grad)
            state = all_states[p]
            states.append(state)
            if use_momentum:
                momentum_buffer_list.append(state.get("momentum_buffer"))
            if cache_list is not None:
                cache_list.append(_valid_dual(state, p, phi))
            elif len(state) > ("momentum_buffer" in state):  # no longer caching: drop the rest
                for k in _CACHE_STATE:
                    state.pop(k, None)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one mirror-descent step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            momentum_buffer_list: list[Tensor | None] = []
            phi = group["potential"]
            group_constraints = constraint_list(self._constraints, group["params"])
            caching = (
                group_constraints is None
                and group["cache_dual"]
                and group["foreach"] is not False
                and not phi.is_euclidean
                and not (group["plasticity_noise"] is not None and group["noise_space"] == "primal")
            )
            cache_list: list[Tensor | None] | None = [] if caching else None
            states: list[dict[str, Any]] = []
            self._init_group(group, params, grads, momentum_buffer_list, cache_list, states)
            if phi.preserves_sign:
                warn_frozen_zeros(params, self._zero_checked, self._constraints, phi.name)

            mirror_descent(
                params,
                grads,
                momentum_buffer_list,
                potential=phi,
                lr=group["lr"],
                momentum=group["momentum"],
                dampening=group["dampening"],
                weight_decay=group["weight_decay"],
                nesterov=group["nesterov"],
                maximize=group["maximize"],
                foreach=group["foreach"],
                plasticity_noise=group["plasticity_noise"],
                noise_space=group["noise_space"],
                dual_cache=cache_list,
                decay_space=group["decay_space"],
                decay_to=group["decay_to"],
                constraints=constraint_list(self._constraints, params),
                fused=group["fused"],
                grad_scale=getattr(self, "grad_scale", None),
                found_inf=getattr(self, "found_inf", None),
            )

            if group["momentum"] != 0:
                for state, buf in zip(states, momentum_buffer_list, strict=True):
                    state["momentum_buffer"] = buf
            if cache_list is not None:
                for p, state, cached in zip(params, states, cache_list, strict=True):
                    version = _version_of(p)
                    if cached is None or version is None:
                        state.pop(_DUAL, None)
                        state.pop(_VERSION, None)
                    else:  # stamped after the optimizer's own write
                        state[_DUAL] = cached
                        state[_VERSION] = version
        return loss


def _version_of(p: Tensor) -> int | None:
    """``p._version`` (bumped by every in-place change), or None where there is none."""
    try:
        return int(p._version)
    except (AttributeError, RuntimeError):  # e.g. inference-mode tensors have no counter
        return None


def _valid_dual(state: dict[str, Any], p: Tensor, phi: Potential) -> Tensor | None:
    """The kept dual weights of ``p`` if still valid, else None.

    Valid means: same shape, dtype and device as ``p``, and either stamped with ``p``'s current
    version (nothing wrote into ``p`` itself since the optimizer's last step) or, without a stamp
    (loaded from a state dict), reproducing ``p`` exactly under a zero step of the potential's
    own update (so the checkpoint's weights were loaded too).
    """
    cached = state.get(_DUAL)
    if not isinstance(cached, Tensor):
        return None
    if cached.shape != p.shape or cached.dtype != p.dtype or cached.device != p.device:
        return None
    stamp = state.get(_VERSION)
    if stamp is not None:
        return cached if stamp == _version_of(p) else None
    w = p.detach()
    trial = w.clone()
    phi.mirror_step_([trial], [torch.zeros_like(w)], 0.0, duals=[cached.clone()])
    return cached if torch.equal(trial, w) else None


def _as_potential(spec: Any) -> Potential:
    """``potential(spec)``; any object implementing the :class:`Potential` protocol is kept."""
    return potential(spec)


# --------------------------------------------------------------------------------------------
# recipes
# --------------------------------------------------------------------------------------------


def exponentiated_gradient(
    params: Iterable[Any], lr: LearningRate = 1e-3, **kwargs: Any
) -> MirrorDescent:
    r"""Exponentiated gradient: mirror descent under negative entropy.

    :math:`w_{t+1} = w_t \odot \exp(-\eta\,\mathrm{sign}(w_t) \odot d_t)`; keyword arguments as in
    :class:`MirrorDescent` (except ``potential``).

    Examples
    --------
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([0.5, -2.0]))
    >>> opt = exponentiated_gradient([w], lr=0.1)
    >>> w.grad = torch.tensor([1.0, 1.0])
    >>> opt.step()
    >>> torch.allclose(w, torch.tensor([0.5 * math.exp(-0.1), -2.0 * math.exp(0.1)]))
    True
    """
    if "potential" in kwargs:
        raise InputTypeError(
            "exponentiated_gradient fixes the potential; use MirrorDescent for others"
        )
    return MirrorDescent(params, lr, potential=NegativeEntropy(), **kwargs)


def pnorm_sgd(
    params: Iterable[Any], lr: LearningRate = 1e-3, p: float = 2.0, **kwargs: Any
) -> MirrorDescent:
    r"""p-norm mirror descent: :math:`\mathrm{sign}(w)|w|^{p-1}` is updated by gradient steps.

    ``p = 2`` is SGD. Keyword arguments as in :class:`MirrorDescent` (except ``potential``).

    Examples
    --------
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([2.0]))
    >>> opt = pnorm_sgd([w], lr=1.0, p=3)
    >>> w.grad = torch.tensor([3.0])
    >>> opt.step()  # dual 2**2 = 4 -> 4 - 3 = 1 -> w = 1
    >>> w
    Parameter containing:
    tensor([1.], requires_grad=True)
    """
    if "potential" in kwargs:
        raise InputTypeError(
            "pnorm_sgd fixes the potential through p; use MirrorDescent for others"
        )
    return MirrorDescent(params, lr, potential=PNorm(p), **kwargs)


# --------------------------------------------------------------------------------------------
# functional API
# --------------------------------------------------------------------------------------------


def mirror_descent(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    *,
    potential: PotentialLike,
    lr: LearningRate,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    foreach: bool | None = None,
    plasticity_noise: PlasticityNoise | None = None,
    noise_space: str = "dual",
    dual_cache: list[Tensor | None] | None = None,
    decay_space: str = "auto",
    decay_to: float = 0.0,
    constraints: list[Constraint | None] | None = None,
    fused: bool | None = None,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
) -> None:
    r"""Functional mirror-descent step, in place on ``params`` (update rule: :class:`MirrorDescent`).

    Parameters
    ----------
    params, grads
        Parameters and their (dense, or for the 2-norm possibly sparse) gradients, same order.
    momentum_buffer_list
        With ``momentum != 0``: one entry per parameter, ``None`` before the first step; new
        buffers are written into the list and existing ones updated in place. Otherwise ignored
        (may be empty).
    potential
        Anything :func:`syngeo.potentials.potential` accepts.
    lr, momentum, dampening, weight_decay, nesterov, maximize
        As in :class:`MirrorDescent`; ``lr`` may be a 1-element tensor.
    foreach
        ``None`` or ``True``: the fast implementation; ``False``: the single-tensor reference.
    plasticity_noise, noise_space
        Optional ``noise(params) -> list[Tensor]``, evaluated once here (so both
        implementations see the same perturbations), added in the ``"dual"`` or ``"primal"``
        space.
    dual_cache
        Optional list, one entry per parameter, of the dual weights :math:`\nabla\phi(w)` that
        the fast path carries from one step to the next. An entry that is ``None`` is computed
        from the weights (``potential.grad``) and written into the list; a tensor is used and
        updated in place **as is**: the caller guarantees that it still belongs to the current
        weights. After a step with primal noise, on the reference path, or under a Euclidean
        potential, every entry is set to ``None``. ``None`` (the default) means no cache: the
        dual weights are recomputed from the weights, which are the only state.
    decay_space, decay_to
        Weight decay's space (``"auto"``, ``"primal"``, ``"dual"``) and reference magnitude
        (docs/geometries.md).
    constraints
        One :class:`~syngeo.constraints.Constraint` or None per parameter, or None (no
        constraints; then nothing differs from the plain step).
    fused
        As in :class:`MirrorDescent`: ``True`` a fused kernel wherever one applies, ``None``
        only for large float32 CPU groups, ``False`` never.
    grad_scale, found_inf
        GradScaler's contract for fused optimizers: the gradients are divided by
        ``grad_scale`` and the whole step (momentum included) is skipped when ``found_inf`` is
        non-zero.

    The update runs under ``torch.no_grad()``, so leaf tensors that require gradients can be
    passed directly.

    Examples
    --------
    >>> import torch
    >>> w = [torch.tensor([0.5, -2.0], dtype=torch.float64)]
    >>> mirror_descent(w, [torch.ones(2, dtype=torch.float64)], [], potential="ne", lr=0.1)
    >>> torch.allclose(w[0], torch.tensor([0.5 * math.exp(-0.1), -2.0 * math.exp(0.1)], dtype=torch.float64))
    True
    """
    phi = _as_potential(potential)
    _check_noise_space(noise_space)
    _check_decay(decay_space, decay_to, phi)
    if constraints is not None and len(constraints) != len(params):
        raise InputError(f"got {len(params)} parameters but {len(constraints)} constraints")
    if constraints is not None and dual_cache is not None:
        dual_cache[:] = [None] * len(params)
        dual_cache = None  # a lifted zero or a projection would leave a cached dual stale
    if len(params) != len(grads):
        raise InputError(f"got {len(params)} parameters but {len(grads)} gradients")
    if momentum != 0 and len(momentum_buffer_list) != len(params):
        raise InputError(
            f"got {len(params)} parameters but {len(momentum_buffer_list)} momentum buffers; "
            "pass one entry (None before the first step) per parameter"
        )
    if dual_cache is not None and len(dual_cache) != len(params):
        raise InputError(
            f"got {len(params)} parameters but {len(dual_cache)} dual-cache entries; "
            "pass one entry (None when unknown) per parameter"
        )
    if not params:
        return
    has_sparse_grad = any(map(_IS_SPARSE, grads))
    if has_sparse_grad and not phi.is_euclidean:
        raise RuntimeError(
            f"mirror descent with the {phi} potential does not support sparse gradients; "
            "use dense gradients (e.g. nn.Embedding(sparse=False)) or the 2-norm"
        )
    if found_inf is not None and (
        not fused or any(w.device.type != "cuda" for w in params)
    ):  # a CUDA fused kernel reads found_inf itself (no synchronisation)
        if float(found_inf.reshape(())) != 0.0:
            return
        found_inf = None
    if foreach is None:
        foreach = True
    if fused is not False and (fused or foreach):
        with torch.no_grad():
            remaining = _fused_mirror_descent(
                params, grads, momentum_buffer_list, phi, fused=fused, lr=_as_float(lr),
                momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                nesterov=nesterov, maximize=maximize, decay_space=decay_space,
                decay_to=decay_to, grad_scale=grad_scale, found_inf=found_inf,
                eligible=plasticity_noise is None and dual_cache is None and not has_sparse_grad,
                constraints=constraints,
            )  # fmt: skip
        if remaining is None:
            return
        if found_inf is not None and float(found_inf.reshape(())) != 0.0:
            return  # the eager rest of a CUDA step GradScaler skips
        if len(remaining) < len(params):  # the rest takes the eager path below
            params = [params[i] for i in remaining]
            grads = [grads[i] for i in remaining]
            if momentum != 0:
                sub_bufs = [momentum_buffer_list[i] for i in remaining]
                sub_cons = None if constraints is None else [constraints[i] for i in remaining]
                _eager_rest(params, grads, sub_bufs, remaining, momentum_buffer_list, phi, lr,
                            momentum, dampening, weight_decay, nesterov, maximize, foreach,
                            noise_space, decay_space, decay_to, grad_scale,
                            sub_cons)  # fmt: skip
                return
            momentum_buffer_list = []
            if constraints is not None:
                constraints = [constraints[i] for i in remaining]
    if grad_scale is not None:  # eager path of a fused optimizer: unscale here
        inv = 1.0 / float(grad_scale.reshape(()))
        grads = [g * inv for g in grads]
    func = (
        _foreach_mirror_descent
        if foreach and not has_sparse_grad and not torch.jit.is_scripting()
        else _single_tensor_mirror_descent
    )
    with torch.no_grad():  # an update, not part of any graph (also when called directly)
        noise = _draw_noise(plasticity_noise, params)
        kwargs: dict[str, Any] = {}
        if func is _foreach_mirror_descent:
            kwargs["dual_cache"] = dual_cache
        elif dual_cache is not None:  # the reference recomputes the dual weights every step
            dual_cache[:] = [None] * len(params)
        func(
            params,
            grads,
            momentum_buffer_list,
            noise,
            potential=phi,
            lr=_as_float(lr),
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            noise_space=noise_space,
            decay_space=decay_space,
            decay_to=decay_to,
            constraints=constraints,
            **kwargs,
        )


AUTO_FUSED_MIN_NUMEL = 1 << 20
"""``fused=None`` uses a fused kernel for a (device, dtype) group of at least this many float32
CPU elements (docs/geometries.md, "Performance")."""


def _kernel_decay(phi: Potential, weight_decay: float, decay_space: str, decay_to: float):
    """(mode, ∇φ(c)) of the fused kernels' weight decay, or None where no mode matches."""
    if weight_decay == 0:
        return "none", 0.0
    if decay_space == "dual":
        if decay_to == 0:
            return "dual", 0.0
        ref = phi.grad(torch.tensor([decay_to], dtype=torch.float64))
        return "dual", float(ref.reshape(-1)[0])
    if decay_space == "auto" and phi.preserves_sign:
        return "sign", 0.0
    return "primal", 0.0


def _fused_mirror_descent(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    phi: Potential,
    *,
    fused: bool | None,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    decay_space: str,
    decay_to: float,
    grad_scale: Tensor | None,
    found_inf: Tensor | None,
    eligible: bool,
    constraints: list[Constraint | None] | None = None,
) -> list[int] | None:
    """Run the fused kernels on every (device, dtype) group they apply to; return the indices
    of the parameters left for the eager path (None: all done). Within a group, constrained
    parameters take the constrained kernel and the others the plain one (so they get exactly
    the unconstrained optimizer's arithmetic)."""
    everything = list(range(len(params)))
    if not eligible:
        return everything
    if constraints is not None and all(c is None for c in constraints):
        constraints = None
    if phi.is_euclidean and constraints is not None:
        return everything  # the 2-norm's projection stays on the eager (SGD) path
    if phi.is_euclidean:
        if not fused or (decay_space == "dual" and decay_to != 0 and weight_decay != 0):
            return everything
        if any(w.device.type not in ("cpu", "cuda") for w in params):
            return everything
        # the 2-norm is SGD: torch's own fused kernel (bit for bit SGD(fused=True))
        _torch_sgd(
            params, grads, momentum_buffer_list if momentum != 0 else [None] * len(params),
            fused=True, grad_scale=grad_scale, found_inf=found_inf, weight_decay=weight_decay,
            momentum=momentum, lr=lr, dampening=dampening, nesterov=nesterov, maximize=maximize,
        )  # fmt: skip
        return None
    step_kernel = getattr(phi, "step_kernel", None)
    kernel = step_kernel() if callable(step_kernel) else None
    if kernel is None:
        return everything
    decay, decay_ref = _kernel_decay(phi, weight_decay, decay_space, decay_to)
    bufs_in: list[Tensor | None] = momentum_buffer_list if momentum != 0 else [None] * len(params)
    grouped = Optimizer._group_tensors_by_device_and_dtype(
        [params, grads, bufs_in],
        with_indices=True,  # type: ignore[list-item]
    )
    left: list[int] = []
    for (device, dtype), ((dev_params, dev_grads, dev_bufs), indices) in grouped.items():
        if fused is None and (
            device is None
            or device.type != "cpu"
            or dtype != torch.float32
            or sum(w.numel() for w in dev_params) < AUTO_FUSED_MIN_NUMEL  # type: ignore[union-attr]
        ):
            left += indices
            continue
        if constraints is None:
            parts = [(list(range(len(indices))), None)]
        else:
            cons = [constraints[i] for i in indices]
            free = [j for j, c in enumerate(cons) if c is None]
            held = [j for j, c in enumerate(cons) if c is not None]
            parts = [(js, None if js is free else [cons[j] for j in js])
                     for js in (free, held) if js]  # fmt: skip
        for js, part_cons in parts:
            sub_params = [dev_params[j] for j in js]
            bufs = [dev_bufs[j] for j in js] if momentum != 0 else None
            done = kernels.fused_step_(
                sub_params, [dev_grads[j] for j in js], bufs, kernel, lr=lr,  # type: ignore[arg-type, misc]
                momentum=momentum, dampening=dampening, weight_decay=weight_decay, decay=decay,
                decay_ref=decay_ref, nesterov=nesterov, maximize=maximize, grad_scale=grad_scale,
                found_inf=found_inf, constraints=part_cons, lift=phi.preserves_sign,
            )  # fmt: skip
            if not done:
                left += [indices[j] for j in js]
            elif bufs is not None:
                for k, j in enumerate(js):
                    momentum_buffer_list[indices[j]] = bufs[k]
    return sorted(left) if left else None


def _eager_rest(params, grads, sub_bufs, remaining, momentum_buffer_list, phi, lr, momentum,
                dampening, weight_decay, nesterov, maximize, foreach, noise_space, decay_space,
                decay_to, grad_scale, constraints=None) -> None:  # fmt: skip
    """Eager step of the parameters a fused kernel did not take (their buffers written back)."""
    if grad_scale is not None:
        inv = 1.0 / float(grad_scale.reshape(()))
        grads = [g * inv for g in grads]
    func = _foreach_mirror_descent if foreach else _single_tensor_mirror_descent
    with torch.no_grad():
        func(params, grads, sub_bufs, None, potential=phi, lr=_as_float(lr), momentum=momentum,
             dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
             maximize=maximize, noise_space=noise_space, decay_space=decay_space,
             decay_to=decay_to, constraints=constraints)  # fmt: skip
    for j, i in enumerate(remaining):
        momentum_buffer_list[i] = sub_bufs[j]


def _draw_noise(noise: PlasticityNoise | None, params: list[Tensor]) -> list[Tensor] | None:
    """Call the noise callable and check that it returned one same-shaped tensor per parameter."""
    if noise is None:
        return None
    xi = noise(list(params))
    if isinstance(xi, Tensor) or not isinstance(xi, Sequence) or len(xi) != len(params):
        raise InputError(
            f"plasticity_noise must return a list of {len(params)} tensors (one per parameter "
            f"with a gradient), got {type(xi).__name__}"
            + (f" of length {len(xi)}" if isinstance(xi, Sequence) else "")
        )
    out = []
    for i, (x, p) in enumerate(zip(xi, params, strict=True)):
        if not isinstance(x, Tensor) or x.shape != p.shape:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(
                f"plasticity_noise returned {got} for parameter {i} of shape {tuple(p.shape)}; "
                "return one tensor of the parameter's shape per parameter"
            )
        out.append(x.to(device=p.device, dtype=p.dtype))
    return out


def _single_tensor_mirror_descent(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    noise: list[Tensor] | None,
    *,
    potential: Potential,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    noise_space: str,
    decay_space: str = "auto",
    decay_to: float = 0.0,
    constraints: list[Constraint | None] | None = None,
) -> None:
    """Reference implementation: ``grad`` and ``grad_inverse`` of ``potential``, one tensor at a
    time (the ground truth the fast path is tested against)."""
    euclidean = potential.is_euclidean
    keeps_sign = potential.preserves_sign
    for i, w in enumerate(params):
        g = grads[i] if not maximize else -grads[i]
        if weight_decay != 0:
            if decay_space == "auto":
                g = g.add(torch.sign(w) if keeps_sign else w, alpha=weight_decay)
            else:
                g = g.add(_decay_term(potential, w, decay_space, decay_to), alpha=weight_decay)

        if momentum != 0:
            buf = momentum_buffer_list[i]
            if buf is None:
                buf = g.detach().clone()
                momentum_buffer_list[i] = buf
            else:
                buf.mul_(momentum).add_(g, alpha=1 - dampening)
            d = g.add(buf, alpha=momentum) if nesterov else buf
        else:
            d = g

        c = constraints[i] if constraints is not None else None
        if c is not None:
            if keeps_sign:
                lift_zeros_([w], [d], [c])
            if c.soft:
                d = soften([w], [d.neg()], [c])[0].neg()
        xi = noise[i] if noise is not None else None
        if euclidean:
            w.add_(d, alpha=-lr)
            if xi is not None:
                w.add_(xi)
            if c is not None:
                project_([w], [c])
            continue

        u = torch.add(potential.grad(w), d, alpha=-lr)
        if xi is not None and noise_space == "dual":
            u.add_(xi)
        sign = torch.sign(w) if keeps_sign else None
        new = potential.grad_inverse(u, sign=sign)
        if xi is not None and noise_space == "primal":
            new = new + xi
            if keeps_sign:
                new = sign * new.abs()
        w.copy_(new)
        if c is not None:
            project_([w], [c])


def _foreach_mirror_descent(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    noise: list[Tensor] | None,
    *,
    potential: Potential,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    noise_space: str,
    per_tensor: bool | None = None,
    dual_cache: list[Tensor | None] | None = None,
    decay_space: str = "auto",
    decay_to: float = 0.0,
    constraints: list[Constraint | None] | None = None,
) -> None:
    r"""Fast path: per (device, dtype) group, multi-tensor momentum, then one call of the
    potential's :meth:`~syngeo.potentials.LocalPotential.mirror_step_` (its fused closed form,
    or ``grad``/``grad_inverse`` for a potential without one).

    The 2-norm reproduces ``torch.optim.SGD``'s multi-tensor step (same kernels, same order).
    ``per_tensor`` is passed to the potential as ``foreach=not per_tensor`` (``None``: the
    potential's default, per tensor on CPU). ``dual_cache`` (see :func:`mirror_descent`) carries
    the dual weights across calls.
    """
    euclidean = potential.is_euclidean
    keeps_sign = potential.preserves_sign
    noise_list: list[Tensor | None] = list(noise) if noise is not None else [None] * len(params)
    primal_noise = noise is not None and noise_space == "primal" and not euclidean
    caching = dual_cache is not None and not euclidean and not primal_noise
    if dual_cache is not None and not caching:
        dual_cache[:] = [None] * len(params)
    cache_in: list[Tensor | None] = list(dual_cache) if caching else [None] * len(params)  # type: ignore[arg-type]
    bufs_in: list[Tensor | None] = momentum_buffer_list if momentum != 0 else [None] * len(params)
    grouped = Optimizer._group_tensors_by_device_and_dtype(
        [params, grads, bufs_in, noise_list, cache_in],  # type: ignore[list-item]
        with_indices=True,
    )
    for (device, _), (
        (dev_params_, dev_grads_, dev_bufs, dev_noise_, dev_cache),
        indices,
    ) in grouped.items():
        dev_params: list[Tensor] = list(dev_params_)  # type: ignore[arg-type]
        dev_grads: list[Tensor] = list(dev_grads_)  # type: ignore[arg-type]
        dev_noise = None if noise is None else list(dev_noise_)  # type: ignore[arg-type]
        stream = (device is not None and device.type == "cpu") if per_tensor is None else per_tensor
        signs: list[Tensor] | None = None  # sign(w) before the step, where needed

        if maximize:
            dev_grads = torch._foreach_neg(dev_grads)
        if weight_decay != 0:
            if decay_space == "auto":
                if keeps_sign:
                    signs = torch._foreach_sign(dev_params)
                decay = signs if keeps_sign else dev_params
            else:
                decay = [_decay_term(potential, w, decay_space, decay_to) for w in dev_params]
            if maximize:  # dev_grads is already a private copy
                torch._foreach_add_(dev_grads, decay, alpha=weight_decay)
            else:
                dev_grads = torch._foreach_add(dev_grads, decay, alpha=weight_decay)

        if momentum != 0:
            bufs: list[Tensor] = []
            if all(b is not None for b in dev_bufs):
                bufs = list(dev_bufs)  # type: ignore[arg-type]
                if stream and not euclidean and dampening == 0:
                    # b ← g + μ b in one pass per tensor (SGD's two passes are kept for p = 2,
                    # which must reproduce SGD bit for bit)
                    for b, g in zip(bufs, dev_grads, strict=True):
                        torch.add(g, b, alpha=momentum, out=b)
                else:
                    torch._foreach_mul_(bufs, momentum)
                    torch._foreach_add_(bufs, dev_grads, alpha=1 - dampening)
            else:
                for j, b in enumerate(dev_bufs):
                    if b is None:
                        b = dev_grads[j].detach().clone()
                        dev_bufs[j] = b
                        momentum_buffer_list[indices[j]] = b
                    else:
                        b.mul_(momentum).add_(dev_grads[j], alpha=1 - dampening)
                    bufs.append(b)
            if nesterov:
                if maximize or weight_decay != 0:  # dev_grads is a private copy
                    torch._foreach_add_(dev_grads, bufs, alpha=momentum)
                else:  # never write into the caller's .grad tensors
                    dev_grads = torch._foreach_add(dev_grads, bufs, alpha=momentum)
                direction = dev_grads
            else:
                direction = bufs
        else:
            direction = dev_grads

        duals: list[Tensor] | None = None
        if caching:  # missing entries come from the weights
            duals = [
                potential.grad(w) if u is None else u
                for w, u in zip(dev_params, dev_cache, strict=True)
            ]
            for j, i in enumerate(indices):
                dual_cache[i] = duals[j]  # type: ignore[index]
        dev_cons = None if constraints is None else [constraints[i] for i in indices]
        if dev_cons is not None and any(c is not None for c in dev_cons):
            if keeps_sign:
                lift_zeros_(dev_params, direction, dev_cons)
            if any(c is not None and c.soft for c in dev_cons):
                neg = soften(dev_params, [d.neg() for d in direction], dev_cons)
                direction = [d.neg() for d in neg]
        else:
            dev_cons = None
        if primal_noise and keeps_sign and (signs is None or dev_cons is not None):
            signs = torch._foreach_sign(dev_params)
        potential.mirror_step_(
            dev_params,
            direction,
            lr,
            dual_noise=None if primal_noise else dev_noise,
            duals=duals,
            foreach=not stream,
        )
        if primal_noise:
            torch._foreach_add_(dev_params, dev_noise)  # type: ignore[arg-type]
            if keeps_sign:  # reflected at 0: w ← sign(w_prev)·|w + ξ|
                torch._foreach_abs_(dev_params)
                torch._foreach_mul_(dev_params, signs)  # type: ignore[arg-type]
        if dev_cons is not None:
            project_(dev_params, dev_cons)
