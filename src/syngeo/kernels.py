r"""Fused mirror-descent steps: one pass over memory per tensor (docs/geometries.md, "Performance").

The eager step of :class:`syngeo.optim.MirrorDescent` is a sequence of element-wise torch
operations, each a pass over the parameters (momentum, mirror map, dual step, inverse map). This
module does the whole step — gradient scaling, ``maximize``, weight decay, momentum (first step,
dampening, nesterov), the mirror map, the dual step and the inverse map — in **one** pass that
reads :math:`w, g, b` once and writes :math:`w, b` once:

* **CPU** (float32): a small C kernel generated for the step's configuration, compiled on first
  use with the system C compiler (``-O3 -march=native``, vectorised transcendental functions from
  glibc's ``libmvec``), loaded with :mod:`ctypes` and cached on disk
  (``$SYNGEO_KERNEL_CACHE``, default ``~/.cache/syngeo/kernels``). A build takes about 0.3 s of
  compiler time, once per configuration and machine; a later process loads the cached library in
  milliseconds. Large tensors are split across ``torch.get_num_threads()`` threads (the GIL is
  released inside the kernel). Where there is no compiler, no ``libmvec`` or the build fails its
  self-test, :func:`cpu_kernel_available` is False and the optimizer silently keeps its eager
  path. ``SYNGEO_CC`` names the compiler (default ``$CC``, else ``gcc``/``cc``).
* **CUDA** (float32, bfloat16, float16 parameters with float32 momentum): a Triton kernel, used
  when :mod:`triton` is importable. It was written and tested with Triton's interpreter
  (``TRITON_INTERPRET=1``, CPU tensors); it has not been run on a GPU.

The CPU kernel also has a **constrained** variant (:class:`Constrained`: the Bregman
projection of :mod:`syngeo.constraints` — zero lift, soft ceiling, per-weight clip with an int8
sign mask — in the same pass) and a **dual-space Adam** step (:func:`fused_adam_`, reading
w, g and Adam's moments once, for :class:`syngeo.MirrorAdam`); both are CPU only.

What the optimizer must know about a potential to use these kernels is its
:class:`StepKernel` (``potential.step_kernel()``): a family name and its parameter. The families'
mirror maps are odd functions, :math:`\nabla\phi(-w) = -\nabla\phi(w)`, which the dual weight decay
uses: :math:`\nabla\phi(\mathrm{sign}(w)\,c) = \mathrm{sign}(w)\,\nabla\phi(c)`.

Rounding (float32, ε = 2⁻²⁴): each kernel evaluates the same closed form as the potential's eager
``mirror_step_`` (same order of operations except that products are not fused into FMAs by the
eager code), with ``libmvec``'s functions (≤ 4 ulp) instead of torch's (≤ 1 ulp); so the two
agree to a few ulp of each intermediate, amplified by the conditioning of the mirror maps
(tests/test_kernels.py derives the bound used there).

Examples
--------
>>> import torch
>>> from syngeo.potentials import potential
>>> kernel = potential("3-norm").step_kernel()
>>> kernel
StepKernel(family='pnorm', parameter=3.0)
>>> w, g = torch.tensor([2.0, -1.0]), torch.tensor([3.0, 0.0])
>>> if cpu_kernel_available(kernel, "none", momentum=False):
...     done = fused_step_([w], [g], None, kernel, lr=1.0)
... else:  # no C compiler here: the same step, eagerly
...     _ = w.copy_(torch.tensor([1.0, -1.0]))
>>> w  # dual 2**2 = 4 -> 4 - 3 = 1 -> w = 1
tensor([ 1., -1.])
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import operator
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "ADAM_DECAY_MODES",
    "DECAY_MODES",
    "FAMILIES",
    "StepKernel",
    "cpu_kernel_available",
    "fused_adam_",
    "fused_step_",
    "triton_available",
]

FAMILIES = ("pnorm", "ne", "hypentropy", "tsallis")
DECAY_MODES = ("none", "primal", "sign", "dual")
"""Weight-decay term r(w) of the fused step: none, w, sign(w), ∇φ(w) − sign(w)·∇φ(c)."""


@dataclass(frozen=True)
class StepKernel:
    """What a fused kernel needs to know about a potential: its family and parameter.

    ``family`` is one of :data:`FAMILIES` (``"pnorm"``: p; ``"ne"``: unused;
    ``"hypentropy"``: β; ``"tsallis"``: q). Potentials return it from ``step_kernel()``; a
    potential without one (a user's own) takes the eager path.
    """

    family: str
    parameter: float = math.nan

    def potential(self) -> Any:
        """The potential this kernel computes (through the public specification, so that the
        kernels never name a potential class)."""
        from syngeo.potentials import potential

        spec = {"pnorm": "p={!r}", "ne": "ne", "hypentropy": "hypentropy(beta={!r})",
                "tsallis": "tsallis(q={!r})"}[self.family]  # fmt: skip
        return potential(spec.format(self.parameter))


# --------------------------------------------------------------------------------------------
# the C kernel: source generated per configuration
# --------------------------------------------------------------------------------------------

_C_HEADER = r"""
#include <math.h>
#include <stdint.h>
#pragma omp declare simd notinbranch
extern float expf(float);
#pragma omp declare simd notinbranch
extern float logf(float);
#pragma omp declare simd notinbranch
extern float expm1f(float);
#pragma omp declare simd notinbranch
extern float log1pf(float);
#pragma omp declare simd notinbranch
extern float cbrtf(float);
#pragma omp declare simd notinbranch
extern float asinhf(float);
#pragma omp declare simd notinbranch
extern float exp2f(float);
#pragma omp declare simd notinbranch
extern float log2f(float);

void syngeo_step(int64_t count, float *const *ws, const float *const *gs, float *const *bs,
                 const int64_t *ns, const float *sc) {
  const float lr = sc[0], mom = sc[1], damp1 = sc[2], wd = sc[3], gmul = sc[4];
  const float gref = sc[5], first = sc[6], nest = sc[7], P0 = sc[8], P1 = sc[9];
  (void)lr; (void)mom; (void)damp1; (void)wd; (void)gref; (void)first; (void)nest;
  (void)P0; (void)P1;
  for (int64_t t = 0; t < count; t++) {
    float *restrict W = ws[t];
    const float *restrict G = gs[t];
    float *restrict B = bs[t];
    const int64_t n = ns[t];
    (void)B;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
      const float w = W[i];
      const float s = (float)((w > 0.f) - (w < 0.f));
      (void)s;
"""

_C_FOOTER = """
    }
  }
}
"""

_SPECIAL_POWERS = ((0.5, "sqrtf({a})"), (1.0, "({a})"), (1.5, "({a} * sqrtf({a}))"),
                   (2.0, "({a} * {a})"), (3.0, "({a} * {a} * {a})"), (1.0 / 3.0, "cbrtf({a})"),
                   (2.0 / 3.0, "(cbrtf({a}) * cbrtf({a}))"), (-0.5, "(1.f / sqrtf({a}))"),
                   (-1.0, "(1.f / ({a}))"), (-2.0, "(1.f / ({a} * {a}))"))  # fmt: skip


def _c_power(a: str, k: float) -> str:
    """C expression for ``a**k`` (a ≥ 0, k ≠ 0): square roots, cube roots and products where
    they are exact, else exp2(k·log2 a) (relative error ≈ |k·ln a|·ε plus a few ulp; libmvec's
    exp2f/log2f pair costs about half of its expf/logf pair)."""
    for value, expr in _SPECIAL_POWERS:
        if abs(k - value) <= 1e-12:
            return expr.format(a=a)
    return f"exp2f({float(torch.tensor(k, dtype=torch.float32))!r}f * log2f({a}))"


def _c_body(kernel: StepKernel, decay: str, momentum: bool) -> str:
    """The loop body: mirror map (where needed), gradient, momentum, dual step, inverse map."""
    pre, step = _c_parts(kernel, decay, momentum, target="W[i]")
    return "".join(f"      {line}\n" for line in pre + step)


def _c_parts(
    kernel: StepKernel, decay: str, momentum: bool, *, target: str, lift: bool = False
) -> tuple[list[str], list[str]]:
    """The loop body in two parts: up to the direction ``d`` (mirror map where needed, gradient,
    momentum) and the step (dual step, inverse map, the new weight assigned to ``target``).
    ``lift``: the step part recomputes what it needs of the mirror map from ``w`` (which a
    constrained kernel may have changed in between: a lifted zero)."""
    family = kernel.family
    need_mirror = decay == "dual"
    lines: list[str] = []
    if family == "pnorm":
        p = kernel.parameter
        lines.append(f"const float m = copysignf({_c_power('fabsf(w)', p - 1.0)}, w);")
    elif family == "tsallis" and _tsallis_direct(kernel.parameter):
        # z = |w|^(q−1) = 1 + E (+inf at w = 0): the powers directly (q − 1 is not small)
        lines.append(f"const float z0 = {_c_power('fabsf(w)', kernel.parameter - 1.0)};")
        if need_mirror:
            lines.append(
                "const float m = w == 0.f ? 0.f : s * (1.f - (P0 + 1.f) * ((z0 - 1.f) / -P0));"
            )
    elif family == "tsallis":
        lines.append("const float e = expm1f(P0 * logf(fabsf(w)));")  # P0 = q − 1
        if need_mirror:
            lines.append("const float m = w == 0.f ? 0.f : s * (1.f - (P0 + 1.f) * (e / -P0));")
    elif family == "ne" and need_mirror:
        lines.append("const float m = w == 0.f ? 0.f : s * (logf(fabsf(w)) + 1.f);")
    elif family == "hypentropy" and need_mirror:
        lines.append("const float m = asinhf(w / P0);")  # P0 = β
    decay_term = {"none": "", "primal": " + wd * w", "sign": " + wd * s",
                  "dual": " + wd * (m - s * gref)"}[decay]  # fmt: skip
    lines.append(f"const float g = gmul * G[i]{decay_term};")
    if momentum:
        lines.append("const float b = first != 0.f ? g : mom * B[i] + damp1 * g;")
        lines.append("B[i] = b;")
        lines.append("const float d = nest != 0.f ? g + mom * b : b;")
    else:
        lines.append("const float d = g;")
    pre, lines = lines, []
    if lift and family == "tsallis" and _tsallis_direct(kernel.parameter):
        lines.append(f"const float z0 = {_c_power('fabsf(w)', kernel.parameter - 1.0)};")
    elif lift and family == "tsallis":
        lines.append("const float e = expm1f(P0 * logf(fabsf(w)));")
    elif lift and family != "ne":  # pragma: no cover - lifting is for sign-preserving families
        raise ValueError(f"the {family} family does not preserve signs: nothing to lift")
    if family == "pnorm":
        p = kernel.parameter
        lines.append("const float u = m - lr * d;")
        lines.append(f"{target} = copysignf({_c_power('fabsf(u)', 1.0 / (p - 1.0))}, u);")
    elif family == "ne":
        lines.append(f"{target} = w * expf(-lr * (s * d));")
    elif family == "hypentropy":
        # w cosh x − sqrt(w² + β²) sinh x, with sinh and cosh from expm1 (no cancellation)
        lines.append("const float x = lr * d;")
        lines.append("const float r = sqrtf(w * w + P0 * P0);")
        lines.append("const float em = expm1f(x);")
        lines.append("const float h = 0.5f * em / (em + 1.f);")
        lines.append(f"{target} = w * (1.f + em * h) - r * (h * (em + 2.f));")
    elif family == "tsallis" and _tsallis_direct(kernel.parameter):  # P1 = η(1 − q)/q
        q = kernel.parameter
        lines.append("float z = z0 + s * (P1 * d);")
        lines.append("z = z < 0.f ? 0.f : z;")  # past the dual domain: ±inf, as the eager step
        lines.append(f"{target} = copysignf({_c_power('z', 1.0 / (q - 1.0))}, w);")
    elif family == "tsallis":  # P1 = η(1 − q)/q
        lines.append("float y = e + s * (P1 * d);")
        lines.append("y = y < -1.f ? -1.f : y;")
        lines.append(f"{target} = copysignf(expf(log1pf(y) / P0), w);")
    else:  # pragma: no cover - guarded by StepKernel users
        raise ValueError(f"no fused kernel for the family {family!r}")
    return pre, lines


def _tsallis_direct(q: float) -> bool:
    r"""Tsallis steps use the plain powers :math:`|w|^{q-1}` and :math:`z^{1/(q-1)}` when
    :math:`|q - 1| \ge 1/4` (they amplify rounding by at most 4); closer to NE, the
    ``expm1``/``log1p`` form, which stays accurate as q → 1 but costs two slower functions."""
    return abs(q - 1.0) >= 0.25


@dataclass(frozen=True)
class Constrained:
    """The constrained variant of a kernel (docs/geometries.md, "Constraints"): ``lift`` sets
    exact zeros of floored weights to σ·m before the step (sign-preserving potentials only),
    ``soft`` generates the soft-ceiling factor. Per tensor the kernel reads a sign mask (int8,
    one byte per weight) or one sign, the floor m, the ceiling M and the soft ceiling (M, or
    +inf where the ceiling is hard)."""

    lift: bool = False
    soft: bool = False


def c_source(
    kernel: StepKernel, decay: str, momentum: bool, constrained: Constrained | None = None
) -> str:
    """The C source of the CPU kernel for one configuration (for inspection and tests)."""
    if constrained is None:
        return _C_HEADER + _c_body(kernel, decay, momentum) + _C_FOOTER
    return _constrained_source(kernel, decay, momentum, constrained)


def _constrained_source(
    kernel: StepKernel, decay: str, momentum: bool, constrained: Constrained
) -> str:
    r"""The constrained kernel: the plain body up to ``d``, then in a nested block (which may
    shadow ``w``, ``s`` and ``d``) the lifted zero, the soft ceiling, the step and the clip onto
    :math:`[lo, hi]` with the free-sign floor: the arithmetic of
    :func:`syngeo.constraints.lift_zeros_`, :func:`~syngeo.constraints.soften` and
    :func:`~syngeo.constraints.project_`, operation for operation."""
    pre, step = _c_parts(kernel, decay, momentum, target="const float nw",
                         lift=constrained.lift)  # fmt: skip
    lines = [*pre, "const float dn = d;", *_constrained_block(constrained, "dn", [], step)]
    body = "".join(f"        {line}\n" for line in lines)
    return (
        _C_HEADER.split("void syngeo_step")[0]
        + """
void syngeo_step(int64_t count, float *const *ws, const float *const *gs, float *const *bs,
                 const int64_t *ns, const float *sc, const int8_t *const *ms, const float *cs) {
  const float lr = sc[0], mom = sc[1], damp1 = sc[2], wd = sc[3], gmul = sc[4];
  const float gref = sc[5], first = sc[6], nest = sc[7], P0 = sc[8], P1 = sc[9];
  (void)lr; (void)mom; (void)damp1; (void)wd; (void)gref; (void)first; (void)nest;
  (void)P0; (void)P1;
  for (int64_t t = 0; t < count; t++) {
    float *restrict W = ws[t];
    const float *restrict G = gs[t];
    float *restrict B = bs[t];
    const int64_t n = ns[t];
    (void)B;
"""
        + _masked_loops("W[i]", body)
        + "  }\n}\n"
    )


def _constrained_block(
    constrained: Constrained, direction: str, middle: list[str], step: list[str]
) -> list[str]:
    r"""C lines of the constrained part of a step (a nested block, which may shadow ``w``,
    ``s`` and ``d``): the lifted zero (its sign from the mask, else from −``direction``), then
    ``middle`` (which must define ``dn``, the dual step's direction), the soft ceiling on
    outward steps, the step (``step``, assigning ``nw``) and the clip onto :math:`[lo, hi]` with
    the free-sign floor: the arithmetic of :func:`syngeo.constraints.lift_zeros_`,
    :func:`~syngeo.constraints.soften` and :func:`~syngeo.constraints.project_`, operation for
    operation."""
    block = ["const float wo = w;", "{"]
    if constrained.lift:
        block += [
            f"const float sd = (float)(({direction} > 0.f) - ({direction} < 0.f));",
            "const float w = (wo == 0.f && LO > 0.f) ? (S != 0.f ? S : -sd) * LO : wo;",
            "const float s = (float)((w > 0.f) - (w < 0.f));",
        ]
    else:
        block += ["const float w = wo;"]
    block += middle
    if constrained.soft:
        block += [
            "float f = 1.f - fabsf(w) / SM;",
            "f = f < 0.f ? 0.f : f;",
            "const float d = (-dn) * s >= 0.f ? -((-dn) * f) : dn;",
        ]
    else:
        block += ["const float d = dn;"]
    return (
        block
        + step
        + [
            "const float lo = S > 0.f ? LO : -HI;",
            "const float hi = S < 0.f ? -LO : HI;",
            "float cw = nw < lo ? lo : nw;",
            "cw = cw > hi ? hi : cw;",
            "W[i] = (S == 0.f && cw != 0.f && fabsf(cw) < LO) ? copysignf(LO, cw) : cw;",
            "}",
        ]
    )


def _masked_loops(load_w: str, body: str, cons: str = "cs") -> str:
    """The element loop of a constrained kernel twice: with a per-weight sign mask (``MK``,
    int8) or one sign for the tensor (``SG``); the tensor's floor, ceiling and soft ceiling
    are ``LO``, ``HI``, ``SM`` (read from ``cons``, four floats per tensor)."""
    loop = """#pragma omp simd
      for (int64_t i = 0; i < n; i++) {
        const float S = %s;
        const float w = %s;
        const float s = (float)((w > 0.f) - (w < 0.f));
        (void)s; (void)S;
%s      }
"""
    return (
        """    const int8_t *restrict MK = ms[t];
    const float SG = @C@[4 * t], LO = @C@[4 * t + 1], HI = @C@[4 * t + 2], SM = @C@[4 * t + 3];
    (void)SM;
    if (MK) {
""".replace("@C@", cons)
        + loop % ("(float)MK[i]", load_w, body)
        + "    } else {\n"
        + loop % ("SG", load_w, body)
        + "    }\n"
    )


_CFLAGS = ("-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math",
           "-ffp-contract=off", "-fPIC", "-shared")  # fmt: skip
_LIBS = ("-lmvec", "-lm")


_COMPILER: dict[tuple[str | None, ...], str | None] = {}


def _compiler() -> str | None:
    """The C compiler's path (looked up once per environment: every step asks)."""
    env = (os.environ.get("SYNGEO_CC"), os.environ.get("CC"), os.environ.get("PATH"))
    if env not in _COMPILER:
        found = None
        for name in (env[0], env[1], "gcc", "cc"):
            if name:
                found = shutil.which(name)
                if found is not None or env[0]:
                    break  # SYNGEO_CC set but not found: no compiler (used to force fallback)
        _COMPILER[env] = found
    return _COMPILER[env]


def _cache_dir() -> Path:
    root = os.environ.get("SYNGEO_KERNEL_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "syngeo" / "kernels"


_MACHINE_KEY: str | None = None


def _machine_key(cc: str) -> str:
    """Compiler version and CPU identity: a library built with -march=native belongs to both."""
    global _MACHINE_KEY
    if _MACHINE_KEY is None:
        try:
            version = subprocess.run(
                [cc, "--version"], capture_output=True, text=True, timeout=30
            ).stdout
        except (OSError, subprocess.SubprocessError):
            version = "?"
        cpu = platform.machine()
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                cpu += "".join(line for line in f if line.startswith(("flags", "model name")))[
                    :4000
                ]
        except OSError:
            cpu += platform.processor()
        _MACHINE_KEY = hashlib.sha256((cc + version + cpu).encode()).hexdigest()[:16]
    return _MACHINE_KEY


_LOCK = threading.Lock()
_LIBRARIES: dict[tuple[StepKernel, str, bool, Constrained | None, str | None], Any] = {}
BUILD_SECONDS: list[float] = []
"""Wall seconds of each compiler run in this process (for the benchmark's first-use report)."""


def _build(source: str, cc: str) -> Path | None:
    digest = hashlib.sha256(
        (source + " ".join(_CFLAGS + _LIBS) + _machine_key(cc)).encode()
    ).hexdigest()[:24]
    target = _cache_dir() / f"step_{digest}.so"
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            src = Path(tmp) / "step.c"
            src.write_text(source, encoding="utf-8")
            out = Path(tmp) / "step.so"
            started = time.perf_counter()
            done = subprocess.run(
                [cc, *_CFLAGS, str(src), "-o", str(out), *_LIBS],
                capture_output=True,
                timeout=120,
            )
            BUILD_SECONDS.append(time.perf_counter() - started)
            if done.returncode != 0:
                return None
            os.replace(out, target)  # atomic: concurrent processes never load a partial file
    except (OSError, subprocess.SubprocessError):
        return None
    return target


def _load(
    kernel: StepKernel, decay: str, momentum: bool, constrained: Constrained | None = None
) -> Any:
    """The compiled ``syngeo_step`` for this configuration, or None (no compiler, failed build,
    failed self-test)."""
    cc = _compiler()
    key = (kernel, decay, momentum, constrained, cc)
    with _LOCK:
        if key in _LIBRARIES:
            return _LIBRARIES[key]
        fn = None
        if cc is not None and platform.system() == "Linux":
            path = _build(c_source(kernel, decay, momentum, constrained), cc)
            if path is not None:
                try:
                    fn = ctypes.CDLL(str(path)).syngeo_step
                    fn.restype = None
                    n_args = 5 if constrained is None else 7
                    fn.argtypes = [ctypes.c_int64] + [ctypes.c_void_p] * n_args
                except (OSError, AttributeError):
                    fn = None
        _LIBRARIES[key] = fn
    if fn is not None and not _self_test(fn, kernel, decay, momentum, constrained):
        with _LOCK:
            _LIBRARIES[key] = None
        fn = None
        # not silent: a compiler is there but produced a wrong kernel (a compiler or libmvec
        # defect, or a bug here); the eager path is still correct
        warnings.warn(
            f"the fused {kernel.family} kernel ({decay} decay, momentum={momentum}, "
            f"{constrained or 'unconstrained'}) built with "
            f"{cc} failed its self-test; MirrorDescent uses the eager step instead",
            RuntimeWarning,
            stacklevel=3,
        )
    return fn


def _self_test(
    fn: Any, kernel: StepKernel, decay: str, momentum: bool, constrained: Constrained | None
) -> bool:
    """A built kernel must agree with the eager formulas on a few values (a miscompiled or
    mislinked library is never used). A constrained kernel is tried with a sign mask and a
    ceiling (no floor: the zero lift and the soft factor are left to the test suite)."""
    w = torch.tensor([0.3, -1.7, 2.5e-3, -4.0, 0.9, 1.1], dtype=torch.float32)
    g = torch.tensor([0.5, -0.25, 1.0, 2.0, -3.0, 0.1], dtype=torch.float32)
    b = torch.full_like(w, 0.2)
    expected_w, expected_b = w.double(), b.double()
    expected_w, expected_b = reference_step(
        expected_w, g.double(), expected_b if momentum else None, kernel, lr=0.01,
        momentum=0.5 if momentum else 0.0, weight_decay=0.1, decay=decay, decay_ref=0.0,
    )  # fmt: skip
    cons = None
    if constrained is not None:
        mask = torch.tensor([1, -1, 0, 1, -1, 0], dtype=torch.int8)
        cons = [(mask, (0.0, 0.0, 2.0, math.inf))]
        lo = torch.where(mask > 0, 0.0, -2.0).double()
        hi = torch.where(mask < 0, 0.0, 2.0).double()
        expected_w = torch.minimum(torch.maximum(expected_w, lo), hi)
    _call_c(fn, [w], [g], [b] if momentum else None, kernel, lr=0.01, momentum=0.5,
            dampening=0.0, weight_decay=0.1, decay_ref=0.0, nesterov=False, gmul=1.0,
            first=False, threads=1, cons=cons)  # fmt: skip
    ok = torch.allclose(w.double(), expected_w, rtol=1e-4, atol=1e-7)
    if momentum:
        ok = ok and torch.allclose(b.double(), expected_b, rtol=1e-5, atol=1e-7)
    return bool(ok)


def reference_step(
    w: Tensor,
    g: Tensor,
    b: Tensor | None,
    kernel: StepKernel,
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    decay: str = "none",
    decay_ref: float = 0.0,
    nesterov: bool = False,
    first: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """The fused step in plain torch on one tensor (new tensors; used for self-tests): the
    mirror form :math:`(\\nabla\\phi)^{-1}(\\nabla\\phi(w) - \\eta d)`."""
    phi = kernel.potential()
    s = torch.sign(w)
    m = phi.grad(w)
    r = {"none": 0 * w, "primal": w, "sign": s, "dual": m - s * decay_ref}[decay]
    g = g + weight_decay * r
    if b is not None:
        b = g.clone() if first else momentum * b + (1 - dampening) * g
        d = g + momentum * b if nesterov else b
    else:
        d = g
    new = phi.grad_inverse(m - lr * d, sign=s if phi.preserves_sign else None)
    return new, b


# --------------------------------------------------------------------------------------------
# calling the C kernel
# --------------------------------------------------------------------------------------------

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_MIN_SEGMENT = 1 << 16  # elements: below this a thread hand-off costs more than it saves


def _pool(threads: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    with _LOCK:
        if _POOL is None or _POOL_SIZE < threads:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="syngeo-step")
            _POOL_SIZE = threads
        return _POOL


def _scalars(
    kernel: StepKernel, lr: float, momentum: float, dampening: float, weight_decay: float,
    gmul: float, decay_ref: float, first: bool, nesterov: bool,
) -> Any:  # fmt: skip
    family, x = kernel.family, kernel.parameter
    if family == "hypentropy":
        p0, p1 = x, 0.0
    elif family == "tsallis":
        p0, p1 = x - 1.0, lr * (1.0 - x) / x
    else:
        p0, p1 = 0.0, 0.0
    values = (lr, momentum, 1.0 - dampening, weight_decay, gmul, decay_ref, float(first),
              float(nesterov), p0, p1)  # fmt: skip
    return (ctypes.c_float * len(values))(*values)


def _call_c(
    fn: Any,
    ws: Sequence[Tensor],
    gs: Sequence[Tensor],
    bs: Sequence[Tensor] | None,
    kernel: StepKernel,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    decay_ref: float,
    nesterov: bool,
    gmul: float,
    first: bool,
    threads: int,
    cons: Sequence[tuple[Tensor | None, tuple[float, float, float, float]]] | None = None,
) -> None:
    """``cons`` (constrained kernels): per tensor, an int8 sign mask of its shape (contiguous)
    or None, and (sign where no mask, floor, ceiling, soft ceiling)."""
    sc = _scalars(kernel, lr, momentum, dampening, weight_decay, gmul, decay_ref, first, nesterov)
    addresses = tuple(map(Tensor.data_ptr, ws)) + tuple(map(Tensor.data_ptr, gs))
    addresses += tuple(map(Tensor.data_ptr, bs)) if bs is not None else ()
    key = (addresses, tuple(map(Tensor.numel, ws)), threads)
    batches = _C_BATCHES.get(key) if cons is None else None
    if batches is None:
        batches = _c_batches(ws, addresses, bs is not None, threads, cons)
        if cons is None:  # the constrained arguments hold values: not cached
            if len(_C_BATCHES) >= _TRITON_TABLES_MAX:
                _C_BATCHES.pop(next(iter(_C_BATCHES)))
            _C_BATCHES[key] = batches
    if not batches:
        return
    if len(batches) == 1:
        fn(*batches[0][:5], sc, *batches[0][5:])
    else:  # the other threads take batches[1:], this one batches[0]
        futures = [_pool(len(batches) - 1).submit(fn, *x[:5], sc, *x[5:]) for x in batches[1:]]
        fn(*batches[0][:5], sc, *batches[0][5:])
        for future in futures:
            future.result()


_C_BATCHES: dict[tuple, list[tuple]] = {}  # (addresses, sizes, threads) → ctypes arguments


def _c_batches(
    ws: Sequence[Tensor],
    addresses: tuple[int, ...],
    has_momentum: bool,
    threads: int,
    cons: Sequence[tuple[Tensor | None, tuple[float, float, float, float]]] | None,
) -> list[tuple]:
    """The kernel's arguments per thread, without the scalars: (count, w, g, b pointer arrays,
    lengths[, masks, constraint values]). Large tensors are cut into segments, dealt out
    largest first onto the least loaded thread."""
    t = len(ws)
    out = []
    for part in _deal(list(map(Tensor.numel, ws)), threads):
        batch = []  # w, g, b, mask, length, tensor
        for j, start, length in part:
            wp, gp = addresses[j], addresses[t + j]
            bp = addresses[2 * t + j] if has_momentum else wp
            mask = cons[j][0] if cons is not None else None
            mp = mask.data_ptr() + start if mask is not None else 0
            off = 4 * start
            batch.append((wp + off, gp + off, bp + off, mp, length, j))
        k = len(batch)
        ptr = ctypes.c_void_p * k
        args: tuple = (
            k,
            ptr(*(s[0] for s in batch)),
            ptr(*(s[1] for s in batch)),
            ptr(*(s[2] for s in batch)),
            (ctypes.c_int64 * k)(*(s[4] for s in batch)),
        )
        if cons is not None:
            args += (
                ptr(*((s[3] or None) for s in batch)),
                (ctypes.c_float * (4 * k))(*(v for s in batch for v in cons[s[5]][1])),
            )
        out.append(args)
    return out


def _deal(sizes: Sequence[int], threads: int) -> list[list[tuple[int, int, int]]]:
    """Segments ``(tensor, start, length)`` of the tensors of these sizes, one list per
    thread: large tensors are cut into pieces of about total / (4 · threads) elements (at
    least ``_MIN_SEGMENT``), dealt out largest first onto the least loaded thread; one list
    (in tensor order) for one thread or a small total. Empty tensors get no segment."""
    total = sum(sizes)
    if total == 0:
        return []
    piece = max(_MIN_SEGMENT, -(-total // (4 * threads))) if threads > 1 else total
    segments = [(j, start, min(piece, n - start))
                for j, n in enumerate(sizes) for start in range(0, n, piece)]  # fmt: skip
    if threads <= 1 or total < 2 * _MIN_SEGMENT:
        return [segments]
    bins: list[list[tuple[int, int, int]]] = [[] for _ in range(threads)]
    loads = [0] * threads
    for seg in sorted(segments, key=lambda x: -x[2]):
        k = loads.index(min(loads))
        bins[k].append(seg)
        loads[k] += seg[2]
    return [b for b in bins if b]


def cpu_kernel_available(
    kernel: StepKernel | None,
    decay: str,
    *,
    momentum: bool,
    constrained: Constrained | None = None,
) -> bool:
    """True when the CPU kernel for this configuration is built (or buildable now) and passed
    its self-test. The first call per configuration may run the compiler (about 0.3 s)."""
    if kernel is None or kernel.family not in FAMILIES or decay not in DECAY_MODES:
        return False
    if constrained is not None and constrained.lift and kernel.family not in _SIGN_PRESERVING:
        return False
    return _load(kernel, decay, momentum, constrained) is not None


_SIGN_PRESERVING = ("ne", "tsallis")


_IS_CPU = operator.attrgetter("is_cpu")
_IS_CUDA = operator.attrgetter("is_cuda")
_DTYPE = operator.attrgetter("dtype")


def _same_layout(
    params: Sequence[Tensor], grads: Sequence[Tensor], bufs: Any, dtypes: Any, on_device: Any
) -> bool:
    """Every tensor dense, contiguous and on the device (``on_device(tensors)``); weights in
    ``dtypes``, each gradient of its weight's dtype and shape, momentum buffers (all present or
    ``bufs`` None) float32 of the weight's shape. Runs at every step: bulk ``map`` checks over
    the lists (about 0.2 µs per tensor, against 2 µs for per-tensor attribute tests)."""
    tensors = [*params, *grads, *(bufs if bufs is not None else ())]
    try:  # a sparse tensor has no is_contiguous
        if not all(map(Tensor.is_contiguous, tensors)):
            return False
    except RuntimeError:
        return False
    if not on_device(tensors):
        return False
    kinds = list(map(_DTYPE, params))
    if not set(kinds).issubset(dtypes) or kinds != list(map(_DTYPE, grads)):
        return False
    shapes = list(map(Tensor.size, params))
    if shapes != list(map(Tensor.size, grads)):
        return False
    if bufs is not None:
        if set(map(_DTYPE, bufs)) != {torch.float32} or shapes != list(map(Tensor.size, bufs)):
            return False
    return True


def _all_cpu(tensors: list[Tensor]) -> bool:
    return all(map(_IS_CPU, tensors))


def _cpu_eligible(params: Sequence[Tensor], grads: Sequence[Tensor], bufs: Any) -> bool:
    return _same_layout(params, grads, bufs, (torch.float32,), _all_cpu)


# --------------------------------------------------------------------------------------------
# Adam in the dual space (syngeo.optim_adam): one pass reading w, g, m, v and writing w, m, v
# --------------------------------------------------------------------------------------------

ADAM_DECAY_MODES = ("none", "primal", "sign", "dual", "shrink", "dual-decoupled", "sign-decoupled")
"""Weight decay of the fused Adam step: coupled r(w) added to g (none, primal, sign, dual),
AdamW's primal shrink w ← (1 − ηλ)w, or a decoupled dual step −ηλ r(w) (dual or sign)."""


@dataclass(frozen=True)
class AdamConfig:
    """One configuration of the fused Adam kernel (a decay mode and amsgrad)."""

    decay: str = "none"
    amsgrad: bool = False


def adam_source(
    kernel: StepKernel, config: AdamConfig, constrained: Constrained | None = None
) -> str:
    r"""C source of the fused dual-space Adam step (``torch.optim.adam``'s single-tensor order
    of operations: ``lerp`` for m, ``v·β₂ + (1−β₂)·g·g``, ``√v/√bc₂ + ε``, then the dual step
    :math:`d = s_t\,(m / \mathrm{denom})` taken by the MirrorDescent step part with η = 1).

    ``constrained``: :class:`syngeo.optim_adam.mirror_adam`'s constrained order — the gradient
    and a coupled decay from the loaded weight, the zero lift with the sign of −g, the moments,
    a decoupled decay from the lifted weight, the soft ceiling, the step, the clip
    (:func:`_constrained_block`). A lift with the decoupled *dual* decay is not generated (its
    mirror map of the lifted weight would come after the step's): that case stays eager."""
    decay = config.decay
    r_mode = {"dual-decoupled": "dual", "sign-decoupled": "sign"}.get(decay, decay)
    mirror_decay = "dual" if r_mode == "dual" else "none"
    lift = constrained is not None and constrained.lift
    if lift and decay == "dual-decoupled":
        raise ValueError("no fused kernel lifts zeros under the decoupled dual decay")
    target = "W[i]" if constrained is None else "const float nw"
    pre, step = _c_parts(kernel, mirror_decay, False, target=target, lift=lift)
    pre = [line for line in pre if not line.startswith(("const float g =", "const float d ="))]
    r = {"none": "0.f", "primal": "w", "sign": "s", "dual": "(m - s * gref)",
         "shrink": "0.f"}[r_mode]  # fmt: skip
    coupled = decay in ("primal", "sign", "dual")
    lines = list(pre)
    lines.append(f"const float g = gmul * G[i]{f' + wd * {r}' if coupled else ''};")
    moments = [
        "const float m1 = M1[i] + b1c * (g - M1[i]);",
        "M1[i] = m1;",
        "const float v = b2 * V[i] + b2c * g * g;",
        "V[i] = v;",
    ]
    if config.amsgrad:
        moments.append("const float vm = VM[i] > v ? VM[i] : v;")
        moments.append("VM[i] = vm;")
        moments.append("const float denom = sqrtf(vm) / BC2 + eps;")
    else:
        moments.append("const float denom = sqrtf(v) / BC2 + eps;")
    name = "d" if constrained is None else "dn"
    if decay in ("dual-decoupled", "sign-decoupled"):
        moments.append(f"const float {name} = SS * (m1 / denom) + dwd * {r};")
    else:
        moments.append(f"const float {name} = SS * (m1 / denom);")
    if constrained is None:
        body = "".join(f"      {line}\n" for line in lines + moments + step)
    else:
        block = _constrained_block(constrained, "g", moments, step)
        body = "".join(f"        {line}\n" for line in lines + block)
    load_w = "W[i] * shrink" if decay == "shrink" else "W[i]"
    head = (
        _C_HEADER.split("void syngeo_step")[0]
        + """
void syngeo_adam(int64_t count, float *const *ws, const float *const *gs, float *const *m1s,
                 float *const *vs, float *const *vms, const int64_t *ns, const float *sc,
                 const float *cs@EXTRA@) {
  const float lr = sc[0], b1c = sc[1], b2 = sc[2], b2c = sc[3], wd = sc[4], gmul = sc[5];
  const float gref = sc[6], eps = sc[7], P0 = sc[8], P1 = sc[9], dwd = sc[10];
  const float shrink = sc[11];
  (void)lr; (void)wd; (void)gref; (void)P0; (void)P1; (void)dwd; (void)shrink;
  for (int64_t t = 0; t < count; t++) {
    float *restrict W = ws[t];
    const float *restrict G = gs[t];
    float *restrict M1 = m1s[t];
    float *restrict V = vs[t];
    float *restrict VM = vms[t];
    const int64_t n = ns[t];
    const float SS = cs[2 * t], BC2 = cs[2 * t + 1];
    (void)VM;
"""
    )
    if constrained is not None:
        head = head.replace(
            "@EXTRA@", ",\n                 const int8_t *const *ms, const float *ks"
        )
        return head + _masked_loops(load_w, body, "ks") + "  }\n}\n"
    return (
        head.replace("@EXTRA@", "")
        + """#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
      const float w = @LOAD_W@;
      const float s = (float)((w > 0.f) - (w < 0.f));
      (void)s;
""".replace("@LOAD_W@", load_w)
        + body
        + _C_FOOTER
    )


_ADAM_LIBRARIES: dict[tuple[StepKernel, AdamConfig, Constrained | None, str | None], Any] = {}


def _load_adam(
    kernel: StepKernel, config: AdamConfig, constrained: Constrained | None = None
) -> Any:
    """The compiled ``syngeo_adam`` for this configuration, or None (as :func:`_load`)."""
    cc = _compiler()
    key = (kernel, config, constrained, cc)
    with _LOCK:
        if key in _ADAM_LIBRARIES:
            return _ADAM_LIBRARIES[key]
        fn = None
        if cc is not None and platform.system() == "Linux":
            path = _build(adam_source(kernel, config, constrained), cc)
            if path is not None:
                try:
                    fn = ctypes.CDLL(str(path)).syngeo_adam
                    fn.restype = None
                    n_args = 8 if constrained is None else 10
                    fn.argtypes = [ctypes.c_int64] + [ctypes.c_void_p] * n_args
                except (OSError, AttributeError):
                    fn = None
        _ADAM_LIBRARIES[key] = fn
    if fn is not None and not _adam_self_test(fn, kernel, config, constrained):
        with _LOCK:
            _ADAM_LIBRARIES[key] = None
        fn = None
        warnings.warn(
            f"the fused {kernel.family} Adam kernel ({config}, {constrained or 'unconstrained'}) "
            f"built with {cc} failed its self-test; MirrorAdam uses the eager step instead",
            RuntimeWarning,
            stacklevel=3,
        )
    return fn


def _adam_self_test(
    fn: Any, kernel: StepKernel, config: AdamConfig, constrained: Constrained | None = None
) -> bool:
    """The built kernel against a float64 evaluation of the same formulas on a few values (a
    constrained kernel with a sign mask and a ceiling, as :func:`_self_test`)."""
    phi = kernel.potential()
    w = torch.tensor([0.3, -1.7, 2.5e-3, -4.0, 0.9, 1.1], dtype=torch.float32)
    g = torch.tensor([0.5, -0.25, 1.0, 2.0, -3.0, 0.1], dtype=torch.float32)
    m1 = torch.full_like(w, 0.2)
    v = torch.full_like(w, 0.3)
    vm = torch.full_like(w, 0.4)
    lr, wd, b1, b2, eps, ss, bc2 = 0.01, 0.1, 0.9, 0.99, 1e-8, 0.05, 0.5
    x, gg = w.double(), g.double()
    if config.decay == "shrink":
        x = x * (1 - lr * wd)
    s = torch.sign(x)
    r = {"none": 0 * x, "primal": x, "sign": s, "dual": phi.grad(x), "shrink": 0 * x,
         "dual-decoupled": phi.grad(x), "sign-decoupled": s}[config.decay]  # fmt: skip
    coupled = config.decay in ("primal", "sign", "dual")
    gg = gg + (wd * r if coupled else 0)
    em = 0.2 + (1 - b1) * (gg - 0.2)
    ev = b2 * 0.3 + (1 - b2) * gg * gg
    den = torch.maximum(ev, torch.tensor(0.4, dtype=torch.float64)) if config.amsgrad else ev
    d = ss * em / (den.sqrt() / bc2 + eps)
    if config.decay in ("dual-decoupled", "sign-decoupled"):
        d = d + lr * wd * r
    expected = phi.grad_inverse(phi.grad(x) - d, sign=s if phi.preserves_sign else None)
    cons = None
    if constrained is not None:
        mask = torch.tensor([1, -1, 0, 1, -1, 0], dtype=torch.int8)
        cons = [(mask, (0.0, 0.0, 2.0, math.inf))]
        lo = torch.where(mask > 0, 0.0, -2.0).double()
        hi = torch.where(mask < 0, 0.0, 2.0).double()
        expected = torch.minimum(torch.maximum(expected, lo), hi)
    _call_adam(fn, [w], [g], [m1], [v], [vm] if config.amsgrad else None, kernel,
               lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd, decay=config.decay,
               decay_ref=0.0, gmul=1.0, step_sizes=[ss], bc2_sqrts=[bc2],
               threads=1, cons=cons)  # fmt: skip
    ok = torch.allclose(w.double(), expected, rtol=1e-4, atol=1e-7)
    ok = (
        ok
        and torch.allclose(m1.double(), em, rtol=1e-5)
        and torch.allclose(v.double(), ev, rtol=1e-5)
    )
    return bool(ok)


def _call_adam(
    fn: Any,
    ws: Sequence[Tensor],
    gs: Sequence[Tensor],
    m1s: Sequence[Tensor],
    vs: Sequence[Tensor],
    vms: Sequence[Tensor] | None,
    kernel: StepKernel,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decay: str,
    decay_ref: float,
    gmul: float,
    step_sizes: Sequence[float],
    bc2_sqrts: Sequence[float],
    threads: int,
    cons: Sequence[tuple[Tensor | None, tuple[float, float, float, float]]] | None = None,
) -> None:
    """``cons`` (constrained kernels): per tensor, as for :func:`_call_c`."""
    family, x = kernel.family, kernel.parameter
    if family == "hypentropy":
        p0, p1 = x, 0.0
    elif family == "tsallis":
        p0, p1 = x - 1.0, (1.0 - x) / x  # η = 1: the step size is inside d
    else:
        p0, p1 = 0.0, 0.0
    coupled = decay in ("primal", "sign", "dual")
    values = (1.0, 1.0 - beta1, beta2, 1.0 - beta2, weight_decay if coupled else 0.0, gmul,
              decay_ref, eps, p0, p1, lr * weight_decay, 1.0 - lr * weight_decay)  # fmt: skip
    sc = (ctypes.c_float * len(values))(*values)
    bins = []
    for part in _deal(list(map(Tensor.numel, ws)), threads):
        batch = []  # (w, g, m, v, v_max pointers), length, tensor, mask pointer
        for j, start, length in part:
            ptrs = (ws[j].data_ptr(), gs[j].data_ptr(), m1s[j].data_ptr(), vs[j].data_ptr(),
                    vms[j].data_ptr() if vms is not None else ws[j].data_ptr())  # fmt: skip
            mask = cons[j][0] if cons is not None else None
            mp = mask.data_ptr() + start if mask is not None else None
            batch.append((tuple(p + 4 * start for p in ptrs), length, j, mp))
        bins.append(batch)
    if not bins:
        return

    def run(batch: list) -> None:
        k = len(batch)
        ptr = ctypes.c_void_p * k
        extra: tuple = ()
        if cons is not None:
            extra = (
                ptr(*(s[3] for s in batch)),
                (ctypes.c_float * (4 * k))(*(v for s in batch for v in cons[s[2]][1])),
            )
        fn(
            k,
            *(ptr(*(s[0][a] for s in batch)) for a in range(5)),
            (ctypes.c_int64 * k)(*(s[1] for s in batch)),
            sc,
            (ctypes.c_float * (2 * k))(
                *(v for s in batch for v in (step_sizes[s[2]], bc2_sqrts[s[2]]))
            ),
            *extra,
        )

    if len(bins) == 1:
        run(bins[0])
    else:
        futures = [_pool(len(bins) - 1).submit(run, batch) for batch in bins[1:]]
        run(bins[0])
        for future in futures:
            future.result()


def fused_adam_(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    max_exp_avg_sqs: Sequence[Tensor],
    state_steps: Sequence[Tensor],
    kernel: StepKernel | None,
    *,
    amsgrad: bool,
    beta1: float,
    beta2: float,
    lr: float,
    eps: float,
    weight_decay: float,
    decay: str,
    decay_ref: float = 0.0,
    maximize: bool = False,
    constraints: Sequence[Any] | None = None,
    lift: bool = False,
) -> bool:
    r"""One fused dual-space Adam step (:class:`syngeo.MirrorAdam`'s rule) in place on float32
    CPU ``params`` and their moments; False (nothing changed, ``state_steps`` included) when no
    kernel applies. ``decay`` is one of :data:`ADAM_DECAY_MODES`; ``decay_ref`` is
    :math:`\nabla\phi(c)` of the dual decay. Bias corrections are torch's (per tensor, from its
    step count, in double precision).

    ``constraints``: one :class:`syngeo.constraints.Constraint` per parameter; the step is then
    :func:`syngeo.optim_adam.mirror_adam`'s constrained one (the zero lift only with
    ``lift=True``, set by the caller for sign-preserving potentials; not with the decoupled
    dual decay, which returns False)."""
    if not params:
        return True
    if kernel is None or kernel.family not in FAMILIES or decay not in ADAM_DECAY_MODES:
        return False
    constrained = None
    if constraints is not None:
        if len(constraints) != len(params) or any(c is None for c in constraints):
            return False
        lift = lift and any(c.min_abs > 0 for c in constraints)
        if lift and (kernel.family not in _SIGN_PRESERVING or decay == "dual-decoupled"):
            return False
        constrained = Constrained(lift=lift, soft=any(c.soft for c in constraints))
    if not (
        _cpu_eligible(params, grads, exp_avgs)
        and _cpu_eligible(params, exp_avg_sqs, max_exp_avg_sqs if amsgrad else None)
    ):  # float32 CPU, dense, contiguous, one shape per parameter: moments as momentum buffers
        return False
    fn = _load_adam(kernel, AdamConfig(decay=decay, amsgrad=amsgrad), constrained)
    if fn is None:
        return False
    cons = None
    if constraints is not None:
        cons = [c.kernel_arguments(w) for c, w in zip(constraints, params, strict=True)]
    step_sizes, bc2_sqrts = [], []
    for t in state_steps:
        t += 1
        step = float(t)
        step_sizes.append(lr / (1 - beta1**step))
        bc2_sqrts.append((1 - beta2**step) ** 0.5)
    _call_adam(fn, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs if amsgrad else None,
               kernel, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
               decay=decay, decay_ref=decay_ref, gmul=-1.0 if maximize else 1.0,
               step_sizes=step_sizes, bc2_sqrts=bc2_sqrts,
               threads=torch.get_num_threads(), cons=cons)  # fmt: skip
    return True


# --------------------------------------------------------------------------------------------
# Triton (CUDA)
# --------------------------------------------------------------------------------------------

_TRITON: Any = None


def triton_available() -> bool:
    """True when :mod:`triton` imports (the CUDA kernel is then used for CUDA tensors)."""
    return _triton_kernel() is not None


def _triton_kernel() -> Any:
    global _TRITON
    if _TRITON is None:
        try:
            _TRITON = _make_triton_kernel()
        except Exception:
            _TRITON = False
    return _TRITON or None


def _make_triton_kernel() -> Any:
    from syngeo import _triton_step

    if _triton_step.triton is None:
        return False
    return _triton_step.triton, _triton_step.multi_step_kernel


def _triton_libdevice() -> bool:
    from syngeo import _triton_step

    return _triton_step.libdevice is not None


_TRITON_FAMILY = {"pnorm": 0, "ne": 1, "hypentropy": 2, "tsallis": 3}
#: Elements per program of the Triton kernel (4 warps: 8 float32 per thread, two 128-bit loads).
TRITON_BLOCK = 1024
# ("blocks", device, sizes, block) → block table; ("addresses", device, sizes, addresses) →
# (address table, aligned)
_TRITON_TABLES: dict[tuple, Any] = {}
_TRITON_TABLES_MAX = 64
_TRITON_FAILED: set[tuple] = set()  # configurations whose kernel failed to compile
_TRITON_COMPILED: set[tuple] = set()  # configurations compiled ahead of a mixed-dtype step


def _cached_table(key: tuple, make: Any) -> Any:
    table = _TRITON_TABLES.get(key)
    if table is None:
        if len(_TRITON_TABLES) >= _TRITON_TABLES_MAX:
            _TRITON_TABLES.pop(next(iter(_TRITON_TABLES)))  # the oldest entry
        table = _TRITON_TABLES[key] = make()
    return table


def triton_launch_tables(
    ws: Sequence[Tensor], gs: Sequence[Tensor], bs: Sequence[Tensor] | None, block: int
) -> tuple[Tensor, Tensor, Tensor, bool]:
    """The tables of one multi-tensor launch over the tensors ``ws`` (one device; an empty
    tensor gets no block).

    Returns ``(table, block_tensor, block_index, aligned)``: ``table`` is int64
    ``[w addresses, g addresses, b addresses, numels]`` (b = w's addresses without momentum,
    never read then), the block table gives each program its tensor and block, and ``aligned``
    says every address is a multiple of 16 bytes (the kernel's vectorisation hint). Both tables
    are cached on the device: the block table by the tensors' sizes, the address table by the
    addresses (stable from step to step while the tensors live).
    """
    device = ws[0].device
    sizes = tuple(map(Tensor.numel, ws))
    addresses = tuple(map(Tensor.data_ptr, ws))
    addresses += tuple(map(Tensor.data_ptr, gs))
    addresses += tuple(map(Tensor.data_ptr, bs)) if bs is not None else addresses[: len(ws)]

    def blocks() -> tuple[Tensor, Tensor]:
        counts = torch.tensor([-(-n // block) for n in sizes], dtype=torch.int64)
        tensor = torch.repeat_interleave(torch.arange(len(sizes), dtype=torch.int32), counts)
        first = torch.cumsum(counts, 0) - counts
        index = torch.arange(int(counts.sum()), dtype=torch.int64) - first.repeat_interleave(counts)
        return tensor.to(device), index.to(torch.int32).to(device)

    def table() -> tuple[Tensor, bool]:
        aligned = all(a % 16 == 0 for a in addresses)
        return torch.tensor(addresses + sizes, dtype=torch.int64).to(device), aligned

    where = str(device)
    block_tensor, block_index = _cached_table(("blocks", where, sizes, block), blocks)
    addressed, aligned = _cached_table(("addresses", where, sizes, addresses), table)
    return addressed, block_tensor, block_index, aligned


def _call_triton(
    ws: Sequence[Tensor],
    gs: Sequence[Tensor],
    bs: Sequence[Tensor] | None,
    kernel: StepKernel,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    decay: str,
    decay_ref: float,
    nesterov: bool,
    gmul: float,
    first: bool,
    grad_scale: Tensor | None,
    found_inf: Tensor | None,
) -> bool:
    """One launch per parameter dtype; False (nothing written) when a kernel does not compile."""
    triton, step_kernel = _triton_kernel()
    tl = triton.language
    family, x = kernel.family, kernel.parameter
    k1 = x - 1.0 if family == "pnorm" else 0.0
    k2 = 1.0 / (x - 1.0) if family == "pnorm" else 0.0
    p0 = x if family == "hypentropy" else (x - 1.0 if family == "tsallis" else 0.0)
    p1 = lr * (1.0 - x) / x if family == "tsallis" else 0.0
    kinds = list(map(_DTYPE, ws))
    if len(set(kinds)) == 1:  # the common case: one launch over everything
        groups: dict[torch.dtype, Any] = {kinds[0]: None}
    else:
        groups = {}
        for j, dtype in enumerate(kinds):
            groups.setdefault(dtype, []).append(j)
    device_type = ws[0].device.type
    accurate = device_type == "cuda" and _triton_libdevice()  # none in the interpreter
    launches = []
    for dtype, idx in groups.items():
        sub_ws, sub_gs, sub_bs = (
            (ws, gs, bs) if idx is None
            else ([ws[j] for j in idx], [gs[j] for j in idx],
                  [bs[j] for j in idx] if bs is not None else None)
        )  # fmt: skip
        table, block_tensor, block_index, aligned = triton_launch_tables(
            sub_ws, sub_gs, sub_bs, TRITON_BLOCK
        )
        if not block_tensor.numel():
            continue  # only empty tensors
        config = dict(
            DT=getattr(tl, str(dtype).removeprefix("torch.")),
            FAMILY=_TRITON_FAMILY[family], DECAY=DECAY_MODES.index(decay),
            MOMENTUM=bs is not None, FIRST=first, NESTEROV=nesterov,
            HAS_SCALE=grad_scale is not None, HAS_INF=found_inf is not None,
            ALIGNED=aligned, ACCURATE=accurate, BLOCK=TRITON_BLOCK,
        )  # fmt: skip
        key = (device_type, dtype, *config.values())
        if key in _TRITON_FAILED:
            return False
        launches.append((key, config, table, block_tensor, block_index, len(sub_ws)))
    w0 = ws[0]

    def arguments(table: Tensor, count: int, block_tensor: Tensor, block_index: Tensor) -> tuple:
        return (table, count, block_tensor, block_index, lr, momentum, 1.0 - dampening,
                weight_decay, gmul, decay_ref, p0, p1, k1, k2,
                grad_scale if grad_scale is not None else w0,
                found_inf if found_inf is not None else w0)  # fmt: skip

    def refuse(key: tuple, error: Exception) -> bool:
        _TRITON_FAILED.add(key)
        warnings.warn(
            f"syngeo's Triton kernel could not be launched ({type(error).__name__}: {error}); "
            "MirrorDescent takes its eager step for this configuration",
            RuntimeWarning,
            stacklevel=5,
        )
        return False

    if len(launches) > 1:  # several dtypes: compile every kernel before the first one writes
        for key, config, table, block_tensor, block_index, count in launches:
            if key in _TRITON_COMPILED:  # once per configuration, not on every step
                continue
            try:
                step_kernel.warmup(*arguments(table, count, block_tensor, block_index),
                                   grid=(block_tensor.numel(),), **config)  # fmt: skip
            except Exception as error:  # nothing written yet
                return refuse(key, error)
            _TRITON_COMPILED.add(key)
    for i, (key, config, table, block_tensor, block_index, count) in enumerate(launches):
        try:
            step_kernel[(block_tensor.numel(),)](
                *arguments(table, count, block_tensor, block_index), **config
            )
        except Exception as error:  # before the launch (compiler, arguments): nothing written
            if i > 0:  # compiled above; an earlier dtype's tensors are already updated
                raise
            return refuse(key, error)
    return True


_HALF_OR_SINGLE = (torch.float32, torch.bfloat16, torch.float16)


def _triton_eligible(
    params: Sequence[Tensor], grads: Sequence[Tensor], bufs: Any, device: torch.device
) -> bool:
    """Float32/bfloat16/float16 weights on ``device`` (CUDA; CPU under the interpreter),
    float32 momentum."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()

        def on_device(tensors: list[Tensor]) -> bool:
            return all(map(_IS_CUDA, tensors)) and set(map(Tensor.get_device, tensors)) == {index}
    else:
        on_device = _all_cpu
    return _same_layout(params, grads, bufs, _HALF_OR_SINGLE, on_device)


# --------------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------------


def fused_step_(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    momentum_buffers: list[Tensor | None] | None,
    kernel: StepKernel,
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    decay: str = "none",
    decay_ref: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    interpret: bool = False,
    constraints: Sequence[Any] | None = None,
    lift: bool = False,
) -> bool:
    r"""One fused mirror-descent step in place on ``params`` (all on one device); False (and
    nothing changed) when no kernel applies, so the caller takes its eager path.

    The update is :class:`syngeo.optim.MirrorDescent`'s: :math:`g \leftarrow \pm g/\text{scale}
    + \lambda r(w)`, momentum :math:`b \leftarrow \mu b + (1-\tau) g` (:math:`b_1 = g`),
    :math:`d = g + \mu b` (nesterov) or :math:`b`, :math:`w \leftarrow (\nabla\phi)^{-1}
    (\nabla\phi(w) - \eta d)`. ``momentum_buffers`` (one entry per parameter, None before the
    first step, all None or none None) is None without momentum; new buffers are float32 and are
    written into the list. ``decay`` is one of :data:`DECAY_MODES` and ``decay_ref`` is
    :math:`\nabla\phi(c)` for the dual decay. ``found_inf`` non-zero skips the step (GradScaler's
    contract); ``grad_scale`` divides the gradients. ``interpret=True`` runs the Triton kernel
    on CPU tensors (``TRITON_INTERPRET=1`` must be set before Triton is imported; tests only).

    ``constraints`` (CPU only): one :class:`syngeo.constraints.Constraint` per parameter; the
    step is then the Bregman projection of the module ``syngeo.constraints`` (the zero lift
    only with ``lift=True``, which the caller sets for sign-preserving potentials).
    """
    if not params:
        return True
    if kernel is None or kernel.family not in FAMILIES or decay not in DECAY_MODES:
        return False
    device = params[0].device
    use_momentum = momentum != 0
    bufs = momentum_buffers if use_momentum else None
    if bufs is not None:
        present = [b is not None for b in bufs]
        if any(present) and not all(present):
            return False
        first = not any(present)
    else:
        first = False
    gmul = -1.0 if maximize else 1.0
    constrained = None
    if constraints is not None:
        if len(constraints) != len(params) or any(c is None for c in constraints):
            return False
        lift = lift and any(c.min_abs > 0 for c in constraints)
        if lift and kernel.family not in _SIGN_PRESERVING:
            return False
        constrained = Constrained(lift=lift, soft=any(c.soft for c in constraints))
    if constrained is not None and (device.type != "cpu" or interpret):
        return False  # the Triton kernel has no constrained variant
    if device.type == "cuda" or interpret:
        ready = None if first else bufs  # the momentum buffers to check (none yet at first)
        if not _triton_eligible(params, grads, ready, device) or _triton_kernel() is None:
            return False
        use = bufs
        if bufs is not None and first:  # float32 momentum, also for half-precision weights
            use = [torch.empty(w.shape, dtype=torch.float32, device=w.device) for w in params]
        ok = _call_triton(params, grads, use, kernel, lr=lr, momentum=momentum,  # type: ignore[arg-type]
                          dampening=dampening, weight_decay=weight_decay, decay=decay,
                          decay_ref=decay_ref, nesterov=nesterov, gmul=gmul, first=first,
                          grad_scale=grad_scale, found_inf=found_inf)  # fmt: skip
        if ok and use is not bufs:
            bufs[:] = use  # type: ignore[index]
        return ok
    if device.type != "cpu" or not _cpu_eligible(params, grads, None if first else bufs):
        return False
    fn = _load(kernel, decay, use_momentum, constrained)
    if fn is None:
        return False
    cons = None
    if constraints is not None:
        cons = [c.kernel_arguments(w) for c, w in zip(constraints, params, strict=True)]
    if found_inf is not None and float(found_inf.reshape(())) != 0.0:
        return True  # GradScaler found inf/nan: skip the step (momentum untouched)
    if grad_scale is not None:
        gmul /= float(grad_scale.reshape(()))
    if bufs is not None and first:
        for j, w in enumerate(params):
            bufs[j] = torch.empty_like(w, memory_format=torch.contiguous_format)
    _call_c(fn, params, grads, bufs, kernel, lr=lr, momentum=momentum, dampening=dampening,  # type: ignore[arg-type]
            weight_decay=weight_decay, decay_ref=decay_ref, nesterov=nesterov, gmul=gmul,
            first=first, threads=torch.get_num_threads(), cons=cons)  # fmt: skip
    return True
