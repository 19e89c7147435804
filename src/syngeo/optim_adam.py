r"""Adam and AdamW in the dual space of a potential (docs/geometries.md).

.. math::
    \begin{aligned}
    &g_t \leftarrow \pm\nabla f_t(w_{t-1}) + \lambda\, r(w_{t-1}) \ \text{(coupled decay, Adam)} \\
    &m_t \leftarrow \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
     v_t \leftarrow \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
    &u \leftarrow \nabla\phi(w_{t-1})\ \ (\text{decoupled decay, AdamW: } u \leftarrow u - \eta\lambda\,\delta(u)) \\
    &u \leftarrow u - \eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon), \qquad
     w_t \leftarrow (\nabla\phi)^{-1}(u;\ \mathrm{sign}(w_{t-1}))
    \end{aligned}

**Convention**: the moments are those of the gradients, which are dual vectors, and Adam's
normalised step is taken in the dual space, :math:`\nabla\phi(w)`, exactly as
:class:`~syngeo.MirrorDescent` takes SGD's step there (its momentum buffer averages gradients
too). Bias corrections, ``amsgrad``, ``maximize``, ``eps`` and the learning-rate schedule are
``torch.optim.Adam``'s own: the dual step :math:`\Delta u` is computed by
``torch.optim.adam.adam`` (its single-tensor or foreach kernels) applied to zeros, and the
potential's fused :meth:`~syngeo.LocalPotential.mirror_step_` then sets
:math:`w \leftarrow (\nabla\phi)^{-1}(\nabla\phi(w) + \Delta u)`. For the 2-norm (identity
mirror map) :class:`MirrorAdam` **is** ``torch.optim.Adam`` and :class:`MirrorAdamW` **is**
``torch.optim.AdamW`` (their own call on the weights), bit for bit.

Weight decay (``decay_space``; docs/geometries.md lists which published rule each gives):

* ``"primal"``: :math:`r(w) = w`, the L2 penalty (torch's Adam); AdamW's decoupled decay
  :math:`w \leftarrow (1 - \eta\lambda) w` before the step (torch's AdamW).
* ``"dual"`` (Bregman): :math:`r(w) = \nabla\phi(w) - \nabla\phi(w_{ref})`, the gradient of
  :math:`\lambda D_\phi(w, w_{ref})`, with :math:`w_{ref} = \mathrm{sign}(w)\cdot`
  ``decay_to``; decoupled: :math:`u \leftarrow u - \eta\lambda(u - \nabla\phi(w_{ref}))`, a
  geometric shrink of the dual weights toward the reference (under negative entropy
  :math:`|w| \leftarrow |w|^{1-\eta\lambda} |w_{ref}|^{\eta\lambda}`).
* ``"auto"`` (default): ``"primal"``, except for sign-preserving potentials (negative entropy),
  where :math:`r(w) = \mathrm{sign}(w)` (decoupled: :math:`u \leftarrow u - \eta\lambda\,
  \mathrm{sign}(w)`, i.e. :math:`|w| \leftarrow |w| e^{-\eta\lambda}` under NE), as in
  :class:`~syngeo.MirrorDescent`.

Biological constraints (``constraints``): :mod:`syngeo.constraints`.
The weights are the only state besides torch's moments (no dual cache): a write through
``p.data`` between steps is what the next step starts from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim.adam import adam as _torch_adam

from syngeo import kernels
from syngeo.constraints import (
    ConstraintsLike,
    as_constraint_map,
    constraint_list,
    lift_zeros_,
    project_,
    soften,
    warn_frozen_zeros,
)
from syngeo.errors import InputError, InputTypeError
from syngeo.optim import (
    AUTO_FUSED_MIN_NUMEL,
    _as_potential,
    _check_decay,
    _decay_term,
    _kernel_decay,
    _potential_to_state,
    _register_hooks_once,
)
from syngeo.potentials import Potential, PotentialLike, potential

__all__ = ["MirrorAdam", "MirrorAdamW", "mirror_adam"]


def _state_dict_post_hook(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> Any:
    state_dict["param_groups"] = [
        dict(g, potential=_potential_to_state(g["potential"])) for g in state_dict["param_groups"]
    ]
    return state_dict


def _load_state_dict_pre_hook(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> Any:
    state_dict["param_groups"] = [
        dict(g, potential=potential(g.get("potential", "2-norm")))
        for g in state_dict["param_groups"]
    ]
    return state_dict


class MirrorAdam(torch.optim.Adam):
    r"""Adam with its step taken in the dual space of ``potential`` (module docstring).

    Parameters
    ----------
    params, lr, betas, eps, weight_decay, amsgrad, foreach, maximize
        As in ``torch.optim.Adam`` (``fused``, ``capturable`` and ``differentiable`` are not
        offered).
    potential
        Anything :func:`syngeo.potentials.potential` accepts; may be set per parameter group.
    decay_space, decay_to
        ``"auto"``, ``"primal"`` or ``"dual"`` and the reference magnitude of dual decay
        (module docstring); per group.
    constraints
        A :class:`~syngeo.constraints.Constraint` for every parameter, or a dict
        ``{parameter: Constraint}``; configuration, not state (``state_dict`` omits it).
    fused
        One pass per tensor reading w, g and the moments and writing them back
        (:func:`syngeo.kernels.fused_adam_`; docs/geometries.md, "Cost and performance"):
        ``True`` wherever the CPU kernel applies (float32, a potential with a
        ``step_kernel``, a working C compiler), ``None`` (default) for float32 CPU groups of at
        least ``AUTO_FUSED_MIN_NUMEL`` elements, ``False`` never. The 2-norm is always torch's
        own Adam/AdamW; a user's potential takes the eager path. Constraints are in the kernel
        (constrained parameters in a constrained kernel, the others in the plain one), except
        a floor on a sign-preserving potential together with AdamW's decoupled dual decay,
        which stays eager. Per group.

    Examples
    --------
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([0.5, -2.0]))
    >>> opt = MirrorAdam([w], lr=0.1, potential="ne")
    >>> w.grad = torch.tensor([1.0, 1.0])
    >>> opt.step()  # first Adam step: m̂/sqrt(v̂) = sign(g) = 1, so u ← u − 0.1
    >>> torch.allclose(w, torch.tensor([0.5 * 0.9048374, -2.0 * 1.1051709]))
    True
    """

    _decoupled = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        potential: PotentialLike = "2-norm",
        decay_space: str = "auto",
        decay_to: float = 0.0,
        constraints: ConstraintsLike = None,
        foreach: bool | None = None,
        maximize: bool = False,
        fused: bool | None = None,
    ) -> None:
        if fused is not None and not isinstance(fused, bool):
            raise InputTypeError(f"fused must be True, False or None, got {fused!r}")
        phi = _as_potential(potential)
        _check_decay(decay_space, decay_to, phi)
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            foreach=foreach,
            maximize=maximize,
            decoupled_weight_decay=self._decoupled,
        )
        self.defaults.update(potential=phi, decay_space=decay_space, decay_to=decay_to,
                             fused_kernel=fused)  # fmt: skip
        for group in self.param_groups:
            group.setdefault("fused_kernel", fused)
            group.setdefault("decay_space", decay_space)
            group.setdefault("decay_to", decay_to)
            group["potential"] = _as_potential(group.get("potential", phi))
            _check_decay(group["decay_space"], group["decay_to"], group["potential"])
        all_params = [p for g in self.param_groups for p in g["params"]]
        self._constraints = as_constraint_map(constraints, all_params)
        self._zero_checked: set[int] = set()
        _register_hooks_once(self, _state_dict_post_hook, _load_state_dict_pre_hook)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group; its ``potential`` (if any) is parsed."""
        if not isinstance(param_group, dict):
            raise InputTypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        if "potential" in param_group:
            param_group["potential"] = _as_potential(param_group["potential"])
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if "decay_space" in self.defaults:  # (not yet while torch's __init__ adds the first)
            try:
                _check_decay(group["decay_space"], group["decay_to"], group["potential"])
            except InputError:
                self.param_groups.pop()
                raise

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_constraints", {})
        self.__dict__.setdefault("_zero_checked", set())
        _register_hooks_once(self, _state_dict_post_hook, _load_state_dict_pre_hook)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adam step in the dual space; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            exp_avgs: list[Tensor] = []
            exp_avg_sqs: list[Tensor] = []
            max_exp_avg_sqs: list[Tensor] = []
            state_steps: list[Tensor] = []
            self._init_group(
                group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps
            )
            phi: Potential = group["potential"]
            if phi.preserves_sign:
                warn_frozen_zeros(params, self._zero_checked, self._constraints, phi.name)
            beta1, beta2 = group["betas"]
            mirror_adam(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                max_exp_avg_sqs,
                state_steps,
                potential=phi,
                amsgrad=group["amsgrad"],
                beta1=beta1,
                beta2=beta2,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=group["maximize"],
                foreach=group["foreach"],
                decoupled=group["decoupled_weight_decay"],
                decay_space=group["decay_space"],
                decay_to=group["decay_to"],
                constraints=constraint_list(self._constraints, params),
                fused=group.get("fused_kernel"),
            )
        return loss


class MirrorAdamW(MirrorAdam):
    r"""AdamW (decoupled weight decay) in the dual space of ``potential``; default
    ``weight_decay=1e-2`` as ``torch.optim.AdamW``. Arguments as :class:`MirrorAdam`.

    Examples
    --------
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = MirrorAdamW([w], lr=0.1, weight_decay=0.5, potential="3-norm", decay_space="dual")
    >>> w.grad = torch.zeros(2)
    >>> opt.step()  # no gradient: dual weights shrink by 1 − 0.1·0.5 toward ∇φ(0) = 0
    >>> torch.allclose(w, torch.tensor([1.0, -2.0]) * 0.95**0.5)
    True
    """

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, **kwargs)


def mirror_adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    potential: PotentialLike,
    amsgrad: bool,
    beta1: float,
    beta2: float,
    lr: float | Tensor,
    weight_decay: float,
    eps: float,
    maximize: bool,
    foreach: bool | None = None,
    decoupled: bool = False,
    decay_space: str = "auto",
    decay_to: float = 0.0,
    constraints: list[Any] | None = None,
    fused: bool | None = None,
) -> None:
    """Functional dual-space Adam step, in place on ``params`` (rule: module docstring).

    State lists as for ``torch.optim.adam.adam``. ``constraints``: one
    :class:`~syngeo.constraints.Constraint` or None per parameter (or None). ``fused``: as in
    :class:`MirrorAdam`.
    """
    phi = _as_potential(potential)
    _check_decay(decay_space, decay_to, phi)
    if not params:
        return
    if constraints is not None and len(constraints) != len(params):
        raise InputError(f"got {len(params)} parameters but {len(constraints)} constraints")
    constrained = constraints is not None and any(c is not None for c in constraints)
    if not constrained:
        constraints = None
    if phi.is_euclidean:
        fused = False  # torch's own Adam/AdamW at p = 2 (and its eager projection)
    if fused is not False:
        left = _fused_adam(
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, phi,
            fused=fused, amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=lr,
            weight_decay=weight_decay, eps=eps, maximize=maximize, decoupled=decoupled,
            decay_space=decay_space, decay_to=decay_to, constraints=constraints,
        )  # fmt: skip
        if left is None:
            return
        if len(left) < len(params):  # the rest takes the eager path below

            def pick(xs: list) -> list:
                return [xs[i] for i in left] if xs else xs

            params, grads, exp_avgs, exp_avg_sqs = map(pick, (params, grads, exp_avgs,
                                                             exp_avg_sqs))  # fmt: skip
            max_exp_avg_sqs, state_steps = pick(max_exp_avg_sqs), pick(state_steps)
            constraints = pick(constraints) if constraints is not None else None
    kw = dict(amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=lr, eps=eps, foreach=foreach)
    primal = decay_space == "primal" or (decay_space == "auto" and not phi.preserves_sign)
    soft = constraints is not None and any(c is not None and c.soft for c in constraints)
    if phi.is_euclidean and primal and not soft:
        # torch's Adam/AdamW itself: the mirror maps are identities
        _torch_adam(
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps,
            weight_decay=weight_decay, maximize=maximize, decoupled_weight_decay=decoupled,
            **kw,
        )  # fmt: skip
        if constraints is not None:
            project_(params, constraints)
        return
    g = [-x for x in grads] if maximize else list(grads)
    lr_f = float(lr)
    if weight_decay != 0 and not decoupled:
        g = [x.add(_decay_term(phi, w, decay_space, decay_to), alpha=weight_decay)
             for x, w in zip(g, params, strict=True)]  # fmt: skip
    if weight_decay != 0 and decoupled and primal:
        for w in params:
            w.mul_(1 - lr_f * weight_decay)
    if constraints is not None and phi.preserves_sign:
        lift_zeros_(params, g, constraints)
    # Adam's dual step Δu = −η m̂/(√v̂ + ε), by torch's own kernels run on zeros; then the
    # potential's fused mirror step u ← ∇φ(w) + Δu (mirror_step_ with lr = −1).
    per_tensor = foreach is False or (
        foreach is None and all(w.device.type == "cpu" for w in params)
    )
    if per_tensor and not soft and not (weight_decay != 0 and decoupled and not primal):
        # CPU: one tensor at a time through one reused scratch buffer (no allocation, in cache)
        flat = torch.empty(max(w.numel() for w in params), dtype=params[0].dtype,
                           device=params[0].device)  # fmt: skip
        for i, w in enumerate(params):
            if flat.dtype == w.dtype and flat.device == w.device:
                du = flat[: w.numel()].view(w.shape).zero_()
            else:
                du = torch.zeros_like(w, memory_format=torch.contiguous_format)
            maxes = [max_exp_avg_sqs[i]] if amsgrad else []
            _torch_adam(
                [du], [g[i]], [exp_avgs[i]], [exp_avg_sqs[i]], maxes, [state_steps[i]],
                weight_decay=0.0, maximize=False, decoupled_weight_decay=False, **kw,
            )  # fmt: skip
            phi.mirror_step_([w], [du], -1.0, foreach=False)
        if constraints is not None:
            project_(params, constraints)
        return
    steps = [torch.zeros_like(w) for w in params]
    _torch_adam(
        steps, g, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps,
        weight_decay=0.0, maximize=False, decoupled_weight_decay=False, **kw,
    )  # fmt: skip
    if weight_decay != 0 and decoupled and not primal:
        for du, w in zip(steps, params, strict=True):
            if decay_space == "dual":  # Δu −= ηλ(∇φ(w) − ∇φ(w_ref))
                du.sub_(_decay_term(phi, w, "dual", decay_to), alpha=lr_f * weight_decay)
            else:  # auto, sign-preserving: Δu −= ηλ sign(w)
                du.sub_(torch.sign(w), alpha=lr_f * weight_decay)
    if soft:
        steps = soften(params, steps, constraints)  # type: ignore[arg-type]
    phi.mirror_step_(params, steps, -1.0, foreach=foreach)
    if constraints is not None:
        project_(params, constraints)


def _fused_adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, phi, *,
                fused, amsgrad, beta1, beta2, lr, weight_decay, eps, maximize, decoupled,
                decay_space, decay_to, constraints=None) -> list[int] | None:  # fmt: skip
    """The group through :func:`syngeo.kernels.fused_adam_`: the unconstrained parameters in
    one call, the constrained ones in another (so the former keep the plain kernel's bits);
    returns the indices left for the eager path (None: all done)."""
    everything = list(range(len(params)))
    step_kernel = getattr(phi, "step_kernel", None)
    kernel = step_kernel() if callable(step_kernel) else None
    if kernel is None or (isinstance(lr, Tensor) and lr.numel() != 1):
        return everything
    if any(t.device.type != "cpu" for t in state_steps):
        return everything
    if fused is None and (
        any(w.device.type != "cpu" or w.dtype != torch.float32 for w in params)
        or sum(w.numel() for w in params) < AUTO_FUSED_MIN_NUMEL
    ):
        return everything
    mode, ref = _kernel_decay(phi, weight_decay, decay_space, decay_to)
    if decoupled and mode != "none":
        mode = {"primal": "shrink", "dual": "dual-decoupled", "sign": "sign-decoupled"}[mode]
    if constraints is None:
        parts = [(everything, None)]
    else:
        free = [i for i, c in enumerate(constraints) if c is None]
        held = [i for i, c in enumerate(constraints) if c is not None]
        parts = [(js, None if js is free else [constraints[i] for i in js])
                 for js in (free, held) if js]  # fmt: skip
    left: list[int] = []
    for js, cons in parts:
        done = kernels.fused_adam_(
            [params[i] for i in js], [grads[i] for i in js], [exp_avgs[i] for i in js],
            [exp_avg_sqs[i] for i in js],
            [max_exp_avg_sqs[i] for i in js] if amsgrad else [],
            [state_steps[i] for i in js], kernel, amsgrad=amsgrad, beta1=beta1, beta2=beta2,
            lr=float(lr), eps=eps, weight_decay=weight_decay, decay=mode, decay_ref=ref,
            maximize=maximize, constraints=cons, lift=phi.preserves_sign,
        )  # fmt: skip
        if not done:
            left += js
    return sorted(left) if left else None
