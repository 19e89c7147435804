"""The Triton (CUDA) form of the fused mirror-descent step (imported only when Triton is).

Same update as syngeo.kernels' C kernel. **One launch per tensor list** (per parameter dtype):
the host writes a table of the tensors' addresses and sizes (``[w…, g…, b…, numel…]``, int64)
and a block table (tensor index, block index) once per list; each program reads its row, turns
the addresses into pointers and updates one block of one tensor. Full blocks take an unmasked
path whose loads and stores the compiler vectorises (128-bit) when the host has checked that
every address is 16-byte aligned (``ALIGNED``); the last block of each tensor is masked.
Parameters in float32, bfloat16 or float16 are computed in float32; momentum is float32.
``found_inf`` (GradScaler) is read once per program: non-zero, the program stores nothing.

``expm1`` and ``log1p`` are libdevice's on a GPU (``ACCURATE``); Triton's interpreter has no
libdevice, so there they are Kahan's cancellation-free forms from ``exp`` and ``log`` (accurate
with a correctly rounded ``log``, not with the GPU's approximate one: for a change of 10⁻⁵ the
approximate ``lg2`` alone would cost 1 % of it).
"""

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU kernels and the eager path do not need it
    triton = None
    tl = None
try:  # CUDA's accurate expm1/log1p (not in Triton's interpreter)
    from triton.language.extra import libdevice
except ImportError:
    libdevice = None

if triton is not None:

    @triton.jit
    def _log1p(x):
        u = 1.0 + x
        return tl.where(u == 1.0, x, tl.log(u) * (x / (u - 1.0)))

    @triton.jit
    def _expm1(x):
        u = tl.exp(x)
        safe = tl.where((u == 1.0) | (u == 0.0) | (x > 80.0), 2.0, u)
        return tl.where(u == 1.0, x, tl.where((u == 0.0) | (x > 80.0), u - 1.0,
                                              (safe - 1.0) * (x / tl.log(safe))))  # fmt: skip

    @triton.jit
    def _log1p_of(x, ACCURATE: tl.constexpr):
        if ACCURATE:
            return libdevice.log1p(x)
        else:
            return _log1p(x)

    @triton.jit
    def _expm1_of(x, ACCURATE: tl.constexpr):
        if ACCURATE:
            return libdevice.expm1(x)
        else:
            return _expm1(x)

    @triton.jit
    def _power(a, k):  # a ≥ 0, k > 0 (log 0 = −inf gives 0)
        return tl.exp(k * tl.log(a))

    @triton.jit
    def _copysign(x, y):
        return tl.where(y < 0.0, -tl.abs(x), tl.where(y > 0.0, tl.abs(x), x * 0.0))

    @triton.jit
    def _scaled(g, scale, gmul, HAS_SCALE: tl.constexpr):  # ±g / scale, as the C kernel
        g = g.to(tl.float32)
        if HAS_SCALE:
            g = g / scale
        return g * gmul

    @triton.jit
    def _update(
        w, g, b, lr, mom, damp1, wd, gref, p0, p1, k1, k2,
        FAMILY: tl.constexpr, DECAY: tl.constexpr, MOMENTUM: tl.constexpr,
        FIRST: tl.constexpr, NESTEROV: tl.constexpr, ACCURATE: tl.constexpr,
    ):  # fmt: skip
        """(new w, new momentum) from float32 w, scaled g and the old momentum b.

        FAMILY: 0 p-norm, 1 NE, 2 hypentropy, 3 Tsallis; DECAY: 0 none, 1 w, 2 sign, 3 dual."""
        s = tl.where(w > 0.0, 1.0, tl.where(w < 0.0, -1.0, 0.0))
        a = tl.abs(w)
        m = w
        e = w
        if FAMILY == 0:
            m = _copysign(_power(a, k1), w)
        if FAMILY == 1:
            m = tl.where(w == 0.0, 0.0, s * (tl.log(tl.where(w == 0.0, 1.0, a)) + 1.0))
        if FAMILY == 2:
            t = w / p0
            at = tl.abs(t)
            m = s * _log1p_of(at + at * (at / (1.0 + tl.sqrt(1.0 + at * at))), ACCURATE)
        if FAMILY == 3:
            e = _expm1_of(p0 * tl.log(a), ACCURATE)
            m = tl.where(w == 0.0, 0.0, s * (1.0 - (p0 + 1.0) * (e / -p0)))
        if DECAY == 1:
            g = g + wd * w
        if DECAY == 2:
            g = g + wd * s
        if DECAY == 3:
            g = g + wd * (m - s * gref)
        d = g
        if MOMENTUM:
            if FIRST:
                b = g
            else:
                b = mom * b + damp1 * g
            d = b
            if NESTEROV:
                d = g + mom * b
        if FAMILY == 0:
            u = m - lr * d
            new = _copysign(_power(tl.abs(u), k2), u)
        elif FAMILY == 1:
            new = w * tl.exp(-lr * (s * d))
        elif FAMILY == 2:
            x = lr * d
            em = _expm1_of(x, ACCURATE)
            h = 0.5 * em / (em + 1.0)
            new = w * (1.0 + em * h) - tl.sqrt(w * w + p0 * p0) * (h * (em + 2.0))
        else:
            y = e + s * (p1 * d)
            y = tl.where(y < -1.0, -1.0, y)
            new = _copysign(tl.exp(_log1p_of(y, ACCURATE) / p0), w)
        return new, b

    @triton.jit
    def multi_step_kernel(
        table, T, block_tensor, block_index,
        lr, mom, damp1, wd, gmul, gref, p0, p1, k1, k2, scale_ptr, found_inf_ptr,
        DT: tl.constexpr, FAMILY: tl.constexpr, DECAY: tl.constexpr, MOMENTUM: tl.constexpr,
        FIRST: tl.constexpr, NESTEROV: tl.constexpr, HAS_SCALE: tl.constexpr,
        HAS_INF: tl.constexpr, ALIGNED: tl.constexpr, ACCURATE: tl.constexpr,
        BLOCK: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0)
        go = True
        if HAS_INF:  # GradScaler found inf/nan: every program stores nothing
            go = tl.load(found_inf_ptr).to(tl.float32) == 0.0
        if go:
            t = tl.load(block_tensor + pid)
            start = tl.load(block_index + pid).to(tl.int64) * BLOCK
            n = tl.load(table + 3 * T + t)
            w_ptr = tl.load(table + t).to(tl.pointer_type(DT))
            g_ptr = tl.load(table + T + t).to(tl.pointer_type(DT))
            b_ptr = tl.load(table + 2 * T + t).to(tl.pointer_type(tl.float32))
            if ALIGNED:  # checked on the host: every address is a multiple of 16 bytes
                w_ptr = tl.multiple_of(w_ptr, 16)
                g_ptr = tl.multiple_of(g_ptr, 16)
                b_ptr = tl.multiple_of(b_ptr, 16)
            scale = 1.0
            if HAS_SCALE:
                scale = tl.load(scale_ptr).to(tl.float32)
            offs = start + tl.arange(0, BLOCK)
            if start + BLOCK <= n:  # a full block: unmasked (vectorised) loads and stores
                w = tl.load(w_ptr + offs).to(tl.float32)
                g = _scaled(tl.load(g_ptr + offs), scale, gmul, HAS_SCALE)
                b = g
                if MOMENTUM and not FIRST:
                    b = tl.load(b_ptr + offs)
                new, b = _update(w, g, b, lr, mom, damp1, wd, gref, p0, p1, k1, k2,
                                 FAMILY, DECAY, MOMENTUM, FIRST, NESTEROV, ACCURATE)  # fmt: skip
                if MOMENTUM:
                    tl.store(b_ptr + offs, b)
                tl.store(w_ptr + offs, new.to(DT))
            else:  # the tensor's last block
                mask = offs < n
                w = tl.load(w_ptr + offs, mask=mask, other=1.0).to(tl.float32)
                g = _scaled(tl.load(g_ptr + offs, mask=mask, other=0.0), scale, gmul, HAS_SCALE)
                b = g
                if MOMENTUM and not FIRST:
                    b = tl.load(b_ptr + offs, mask=mask, other=0.0)
                new, b = _update(w, g, b, lr, mom, damp1, wd, gref, p0, p1, k1, k2,
                                 FAMILY, DECAY, MOMENTUM, FIRST, NESTEROV, ACCURATE)  # fmt: skip
                if MOMENTUM:
                    tl.store(b_ptr + offs, b, mask=mask)
                tl.store(w_ptr + offs, new.to(DT), mask=mask)
