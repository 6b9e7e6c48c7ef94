"""Infinite-width NNGP and NTK kernel transforms of the layers in :mod:`bayesnn.nn.stax`.

A network ``serial(Dense, act, ..., Dense)`` with i.i.d. Gaussian weights converges, as the
hidden widths grow, to a Gaussian process whose covariance (the NNGP kernel ``K``) follows a
layer-by-layer recursion; under gradient descent it evolves with the neural tangent kernel
``Theta`` (Neal 1996; Lee et al. 2018; Matthews et al. 2018; Jacot et al. 2018). With the
per-unit convention of neural-tangents (Novak et al. 2020):

.. math::

    K^{0}(x, x') = x \\cdot x' / d, \\qquad \\Theta^0 = 0,

    \\text{Dense:}\\quad K \\leftarrow \\sigma_w^2 K + \\sigma_b^2, \\qquad
    \\Theta \\leftarrow K_{\\text{new}} + \\sigma_w^2 \\Theta \\quad (\\text{"ntk"}),

    \\text{activation } \\phi:\\quad K \\leftarrow \\mathbb{E}[\\phi(u)\\phi(u')], \\qquad
    \\Theta \\leftarrow \\mathbb{E}[\\phi'(u)\\phi'(u')]\\, \\Theta,

with ``(u, u') ~ N(0, [[k11, k12], [k12, k22]])``. For images (NHWC) the kernels carry
per-position or all-position-pair covariances, and convolution, pooling, ``Flatten`` and
``LayerNorm`` act on those (:mod:`bayesnn.nn.spatial`); activations and dense layers act on
every entry as above. Closed forms are used for ReLU,
LeakyReLU/ABReLU (arc-cosine kernel of order 1, Cho & Saul 2009), erf (Williams 1997) and
the identity; any other activation uses a Hermite (Mehler) expansion whose coefficients
are computed by quadrature.

Numerics (see ``shared/reference/scale-mixture-nngp.md`` section 8): the angle is computed
with ``atan2`` (in float32 a vectorisable polynomial as accurate as the library function,
which is a scalar call on CPU and dominated the cost of the recursion); the diagonal
variances are carried separately (``var1``, ``var2``) and entries of ``K(X, X)`` that pair
a point with itself are set exactly (angle 0), which removes the ~2e-4 float32 error of
neural-tangents on the NTK diagonal; ``sqrt`` and ``atan2`` have custom derivatives that
stay finite at ``x = x'`` and ``x = 0``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Kernel",
    "input_kernel",
    "dense_kernel",
    "activation_kernel",
    "kernel_fn",
    "empirical_nngp",
    "empirical_ntk",
    "monte_carlo_nngp",
]

_HIGHEST = jax.lax.Precision.HIGHEST


SPATIAL_MODES = (None, "diag", "full")


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["nngp", "ntk", "var1", "var2", "ids1", "ids2"],
    meta_fields=["width", "is_gaussian", "spatial"],
)
@dataclasses.dataclass(frozen=True)
class Kernel:
    """Pair of NNGP/NTK kernel matrices between two sets of inputs.

    Attributes
    ----------
    nngp
        NNGP covariance per output unit (channel): ``(n1, n2)`` without spatial axes;
        ``(n1, n2, H, W)`` per-position covariances ``K(x1[p], x2[p])`` when
        ``spatial == "diag"``; ``(n1, n2, H, W, H, W)`` covariances ``K(x1[p], x2[p'])`` of
        all position pairs when ``spatial == "full"``.
    ntk
        Neural tangent kernel ``Theta``, same shape as ``nngp``, or ``None`` when not
        computed.
    var1, var2
        Exact variances of the two input sets: ``(n,)``; ``(n, H, W)`` per position
        (``"diag"``); ``(n, H, W, H, W)`` covariances between the positions of one input
        (``"full"``).
    ids1, ids2
        Integer ids of the rows of ``x1`` and ``x2``, or ``None``. A pair with equal ids is
        the same point: its correlation is exactly one (angle 0) and ``nngp`` equals the
        variance there. ``None`` when ``x1`` and ``x2`` are unrelated.
    width
        Number of units (channels) of the current representation; the fan-in per filter tap
        of the next dense or convolutional layer, needed by the NTK of the standard
        parameterisation (static).
    is_gaussian
        Whether the representation is a Gaussian pre-activation (after a dense or
        convolutional layer); the activation transforms require it (static).
    spatial
        ``None`` (no spatial axes), ``"diag"`` or ``"full"`` (static; see ``nngp``).
    """

    nngp: jax.Array
    ntk: jax.Array | None
    var1: jax.Array
    var2: jax.Array
    ids1: jax.Array | None
    ids2: jax.Array | None
    width: int
    is_gaussian: bool
    spatial: str | None = None

    def replace(self, **changes) -> Kernel:
        """Copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def position_vars(self) -> tuple[jax.Array, jax.Array]:
        """Per-position variances ``((n1, *S), (n2, *S))``, ``S`` the spatial shape or ``()``."""
        if self.spatial != "full":
            return self.var1, self.var2
        return _full_diagonal(self.var1), _full_diagonal(self.var2)

    def broadcast_vars(self) -> tuple[jax.Array, jax.Array]:
        """``k11`` and ``k22`` of each entry of ``nngp``, broadcastable against it."""
        v1, v2 = self.position_vars()
        if self.spatial == "full":
            return v1[:, None, :, :, None, None], v2[None, :, None, None, :, :]
        return v1[:, None], v2[None, :]

    def diag_mask(self) -> jax.Array | None:
        """Boolean mask of the ``nngp`` entries that pair a point (and position) with itself,
        broadcastable against ``nngp``; ``None`` when the inputs are unrelated."""
        if self.ids1 is None or self.ids2 is None:
            return None
        same = self.ids1[:, None] == self.ids2[None, :]
        if self.spatial is None:
            return same
        if self.spatial == "diag":
            return same[:, :, None, None]
        h, w = self.nngp.shape[2:4]
        return same[:, :, None, None, None, None] & _position_eye(h, w)[None, None]


def _full_diagonal(v: jax.Array) -> jax.Array:
    """``(n, H, W, H, W) -> (n, H, W)``: the variance of each position."""
    n, h, w = v.shape[:3]
    return jnp.diagonal(v.reshape(n, h * w, h * w), axis1=1, axis2=2).reshape(n, h, w)


def _position_eye(h: int, w: int) -> jax.Array:
    """``(H, W, H, W)`` boolean identity over positions."""
    return jnp.asarray(np.eye(h * w, dtype=bool).reshape(h, w, h, w))


def _set_diag(k: Kernel, nngp: jax.Array, var1: jax.Array) -> jax.Array:
    """``nngp`` with its same-point entries set to the exact variances (of ``var1``)."""
    mask = k.diag_mask()
    if mask is None:
        return nngp
    v1, _ = k.replace(var1=var1, var2=var1).broadcast_vars()
    return jnp.where(mask, v1, nngp)


# ----------------------------------------------------------------------------- safe math


@jax.custom_jvp
def _safe_sqrt(x):
    return jnp.sqrt(x)


@_safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    y = _safe_sqrt(x)  # recursive: the rule's own derivative is safe too (finite Hessians)
    pos = x > 0
    return y, jnp.where(pos, t / (2.0 * jnp.where(pos, y, 1.0)), 0.0)


# atan(t) = t + t z Q(z), z = t^2, on [0, 1]: weighted least-squares fit, max abs error
# 7.4e-9 in exact arithmetic, ~1 ulp of float32 after rounding (vs 1e-7 for XLA's atan2).
_ATAN_Q = (
    -0.33332987086589844,
    0.19990397260318582,
    -0.14185980570399967,
    0.10573953373823694,
    -0.07366752731301222,
    0.04112242586516861,
    -0.015132893974368108,
    0.0026223364114865977,
)


def _atan2(y, x):
    """``atan2(y, x)``; a vectorisable polynomial for float32 and below.

    XLA's CPU ``atan2``/``acos`` are scalar library calls, ~7x the cost of a multiply-add
    pass over the same array, and dominate the kernel recursion; the polynomial (octant
    reduction ``t = min(|x|,|y|) / max(|x|,|y|)`` then a degree-17 odd polynomial) is as
    accurate as the library in float32. float64 keeps ``jnp.arctan2``.
    """
    if jnp.finfo(jnp.result_type(y, x)).bits > 32:
        return jnp.arctan2(y, x)
    ax, ay = jnp.abs(x), jnp.abs(y)
    hi = jnp.maximum(ax, ay)
    t = jnp.minimum(ax, ay) / jnp.where(hi > 0, hi, 1.0)
    z = t * t
    q = jnp.full_like(z, _ATAN_Q[-1])
    for c in _ATAN_Q[-2::-1]:
        q = q * z + c
    r = t + t * z * q
    r = jnp.where(ay > ax, 0.5 * math.pi - r, r)
    r = jnp.where(x < 0, math.pi - r, r)
    return jnp.where(y < 0, -r, r)


@jax.custom_jvp
def _safe_atan2(y, x):
    return _atan2(y, x)


@_safe_atan2.defjvp
def _safe_atan2_jvp(primals, tangents):
    (y, x), (ty, tx) = primals, tangents
    r2 = x * x + y * y
    nz = r2 > 0
    d = jnp.where(nz, (x * ty - y * tx) / jnp.where(nz, r2, 1.0), 0.0)
    return _safe_atan2(y, x), d  # recursive, as in _safe_sqrt


def _det(k12, v1, v2, mask) -> jax.Array:
    """``max(k11 k22 - k12^2, 0)``, exactly zero on same-point pairs (``mask``)."""
    det = v1 * v2 - k12 * k12
    if mask is not None:
        det = jnp.where(mask, 0.0, det)
    return jnp.maximum(det, 0.0)


# ----------------------------------------------------------------------------- transforms


def input_kernel(
    x1: jax.Array,
    x2: jax.Array | None = None,
    compute_ntk: bool = True,
    ids1: jax.Array | None = None,
    ids2: jax.Array | None = None,
    spatial: str | None = "full",
) -> Kernel:
    """Kernel of the raw inputs: ``K0(x, x') = x . x' / C`` and ``Theta0 = 0``.

    Parameters
    ----------
    x1
        ``(n1, d)`` inputs, or ``(n1, H, W, C)`` images (NHWC); the inner product runs over
        the last (channel) axis, per position.
    x2
        Inputs like ``x1``; ``None`` means ``x1`` (then the diagonal is exact).
    compute_ntk
        Whether to carry the NTK.
    ids1, ids2
        Row ids (see :class:`Kernel`); defaults to ``arange(n1)`` for both when ``x2`` is
        ``None``.
    spatial
        For images: ``"diag"`` (per-position covariances only) or ``"full"`` (all position
        pairs). Ignored for ``(n, d)`` inputs.
    """
    same = x2 is None
    x2_ = x1 if same else x2
    d = x1.shape[-1]
    if x1.ndim == 2:
        spatial = None
        nngp = jnp.matmul(x1, x2_.T, precision=_HIGHEST) / d
        var1 = jnp.sum(x1 * x1, axis=-1) / d
        var2 = var1 if same else jnp.sum(x2_ * x2_, axis=-1) / d
    elif x1.ndim == 4 and spatial == "diag":
        nngp = jnp.einsum("ihwc,jhwc->ijhw", x1, x2_, precision=_HIGHEST) / d
        var1 = jnp.sum(x1 * x1, axis=-1) / d
        var2 = var1 if same else jnp.sum(x2_ * x2_, axis=-1) / d
    elif x1.ndim == 4 and spatial == "full":
        nngp = jnp.einsum("ihwc,jxyc->ijhwxy", x1, x2_, precision=_HIGHEST) / d
        var1 = jnp.einsum("ihwc,ixyc->ihwxy", x1, x1, precision=_HIGHEST) / d
        var2 = var1 if same else jnp.einsum("ihwc,ixyc->ihwxy", x2_, x2_, precision=_HIGHEST) / d
    else:
        raise ValueError(
            f"input_kernel: x1 must be (n, d) or NHWC (n, H, W, C) with spatial 'diag' or "
            f"'full'; got shape {x1.shape} and spatial={spatial!r}"
        )
    if same and ids1 is None:
        ids1 = ids2 = jnp.arange(x1.shape[0])
    k = Kernel(nngp, None, var1, var2, ids1, ids2, int(d), False, spatial)
    k = k.replace(nngp=_set_diag(k, nngp, var1))
    if compute_ntk:
        k = k.replace(ntk=jnp.zeros_like(nngp))
    return k


def dense_kernel(W_std, b_std, parameterization, out_dim: int | None = None):
    """Kernel transform of a dense layer.

    .. math::

        K \\leftarrow \\sigma_w^2 K + \\sigma_b^2, \\qquad
        \\Theta \\leftarrow
        \\begin{cases}
        \\sigma_w^2 K_{\\rm in} + \\sigma_b^2 + \\sigma_w^2 \\Theta & \\text{ntk}\\\\
        n_{\\rm in} K_{\\rm in} + 1_{\\rm bias} + \\sigma_w^2 \\Theta & \\text{standard}
        \\end{cases}

    where ``n_in`` is the layer's fan-in (the standard parameterisation's NTK grows with the
    width; Sohl-Dickstein et al. 2020). ``W_std`` and ``b_std`` may be traced (for gradients
    with respect to them).

    Parameters
    ----------
    W_std, b_std
        Weight and bias standard deviations (``b_std=None``: no bias).
    parameterization
        ``"ntk"`` or ``"standard"`` (as in :func:`bayesnn.nn.stax.Dense`).
    out_dim
        Number of output units (recorded as the width for the next layer's standard NTK).

    Returns
    -------
    Callable
        ``Kernel -> Kernel``.
    """
    if parameterization not in ("ntk", "standard"):
        raise ValueError(f"parameterization must be 'ntk' or 'standard', got {parameterization!r}")

    def transform(k: Kernel) -> Kernel:
        w2 = W_std**2
        b2 = 0.0 if b_std is None else b_std**2
        nngp = w2 * k.nngp + b2
        var1 = w2 * k.var1 + b2
        var2 = var1 if k.var2 is k.var1 else w2 * k.var2 + b2
        ntk = k.ntk
        if ntk is not None:
            if parameterization == "ntk":
                ntk = nngp + w2 * ntk
            else:
                ntk = k.width * k.nngp + (0.0 if b_std is None else 1.0) + w2 * ntk
        width = k.width if out_dim is None else int(out_dim)
        return Kernel(
            _set_diag(k, nngp, var1), ntk, var1, var2, k.ids1, k.ids2, width, True, k.spatial
        )

    return transform


def _require_gaussian(k: Kernel, name: str) -> None:
    if not k.is_gaussian:
        raise ValueError(
            f"activation {name!r} must follow a Dense or Conv layer: its kernel transform needs "
            "Gaussian pre-activations (put a Dense or Conv layer before it)"
        )


def _activation(name: str, pair: Callable, diag: Callable):
    """Kernel transform of an activation from its pairwise and diagonal expectations.

    ``pair(k12, k11, k22, mask, with_dot) -> (E[phi phi'], E[phi' phi'] or None)`` on
    broadcastable arrays (``mask``: same-point entries, or ``None``) and
    ``diag(k11) -> E[phi^2]``. Same-point entries of the NNGP are set to ``diag`` exactly.
    With full spatial covariances the within-input covariances ``var1``/``var2`` are
    transformed pairwise as well.
    """

    def transform(k: Kernel) -> Kernel:
        _require_gaussian(k, name)
        v1b, v2b = k.broadcast_vars()
        mask = k.diag_mask()
        nngp, edot = pair(k.nngp, v1b, v2b, mask, k.ntk is not None)
        if mask is not None:
            nngp = jnp.where(mask, diag(v1b), nngp)
        ntk = None if k.ntk is None else edot * k.ntk
        if k.spatial == "full":
            eye = _position_eye(*k.nngp.shape[2:4])[None]

            def self_cov(v):
                vd = _full_diagonal(v)
                a, b = vd[:, :, :, None, None], vd[:, None, None, :, :]
                return jnp.where(eye, diag(a), pair(v, a, b, eye, False)[0])

            var1 = self_cov(k.var1)
            var2 = var1 if k.var2 is k.var1 else self_cov(k.var2)
        else:
            var1 = diag(k.var1)
            var2 = var1 if k.var2 is k.var1 else diag(k.var2)
        return Kernel(nngp, ntk, var1, var2, k.ids1, k.ids2, k.width, False, k.spatial)

    return transform


def _abrelu(a: float, b: float, name: str):
    amb2 = (a - b) ** 2
    apb2 = a * a + b * b

    def pair(k12, v1, v2, mask, with_dot):
        s = _safe_sqrt(_det(k12, v1, v2, mask))
        theta = _safe_atan2(s, k12)
        nngp = (amb2 * (s - theta * k12) + math.pi * apb2 * k12) / (2.0 * math.pi)
        if not with_dot:
            return nngp, None
        edot = (math.pi * apb2 - amb2 * theta) / (2.0 * math.pi)
        if mask is not None:
            edot = jnp.where(mask, 0.5 * apb2, edot)
        return nngp, edot

    return _activation(name, pair, lambda v: 0.5 * apb2 * v)


def _erf(name: str):
    c = 2.0 / math.pi

    def pair(k12, v1, v2, mask, with_dot):
        # arcsin(2 k12 / sqrt(P)) = atan2(2 k12, sqrt(q)), P = (1 + 2 k11)(1 + 2 k22) and
        # q = P - 4 k12^2 = 1 + 2 k11 + 2 k22 + 4 (k11 k22 - k12^2) >= 1 without cancellation
        q = 1.0 + 2.0 * v1 + 2.0 * v2 + 4.0 * _det(k12, v1, v2, mask)
        rq = jax.lax.rsqrt(q)
        nngp = c * _safe_atan2(2.0 * k12, q * rq)
        return nngp, ((2.0 * c) * rq if with_dot else None)

    return _activation(name, pair, lambda v: c * jnp.arcsin(2.0 * v / (1.0 + 2.0 * v)))


def _identity(k: Kernel) -> Kernel:
    return k


def _elementwise_derivative(fn):
    def dfn(x):
        return jax.jvp(fn, (x,), (jnp.ones_like(x),))[1]

    return dfn


def _hermite_series(fn: Callable, name: str, n_terms: int = 64, grid: int = 801):
    """Mehler (Hermite) expansion of ``E[phi(u) phi(u')]``; coefficients by quadrature."""
    if not isinstance(n_terms, int) or n_terms < 1:
        raise ValueError(f"n_terms must be a positive integer, got {n_terms!r}")
    z_np = np.linspace(-12.0, 12.0, grid)
    w_np = np.exp(-0.5 * z_np**2) / np.sqrt(2.0 * np.pi) * (z_np[1] - z_np[0])
    h = np.zeros((n_terms + 1, grid))  # normalised probabilists' Hermite h_n = He_n/sqrt(n!)
    h[0] = 1.0
    if n_terms >= 1:
        h[1] = z_np
    for n in range(1, n_terms):
        h[n + 1] = (z_np * h[n] - np.sqrt(n) * h[n - 1]) / np.sqrt(n + 1.0)
    hw_np = (h * w_np[None, :]).T  # (grid, n_terms + 1)
    dfn = _elementwise_derivative(fn)

    def coeffs(g, v):
        """Coefficients ``(..., n_terms + 1)`` and ``E[g(u)^2]`` for variances ``v``."""
        z = jnp.asarray(z_np, v.dtype)
        vals = g(_safe_sqrt(v)[..., None] * z.reshape((1,) * v.ndim + z.shape))
        a = jnp.matmul(vals, jnp.asarray(hw_np, v.dtype), precision=_HIGHEST)
        full = jnp.matmul(vals * vals, jnp.asarray(w_np, v.dtype), precision=_HIGHEST)
        return a, full

    def series(a1, a2, rho):
        # Horner in rho, highest order first; a scan keeps compile time flat in n_terms
        def step(acc, c):
            c1, c2 = c
            return acc * rho + c1 * c2, None  # all operands have rho's rank

        rev = (jnp.moveaxis(a1[..., ::-1], -1, 0), jnp.moveaxis(a2[..., ::-1], -1, 0))
        acc, _ = jax.lax.scan(step, jnp.zeros(jnp.broadcast_shapes(rho.shape), rho.dtype), rev)
        return acc

    def pair(k12, v1, v2, mask, with_dot):
        denom = _safe_sqrt(v1 * v2)
        pos = denom > 0
        rho = jnp.clip(jnp.where(pos, k12 / jnp.where(pos, denom, 1.0), 0.0), -1.0, 1.0)
        if mask is not None:
            rho = jnp.where(mask, 1.0, rho)
        a1, _ = coeffs(fn, v1)
        a2, _ = coeffs(fn, v2)
        nngp = series(a1, a2, rho)
        if not with_dot:
            return nngp, None
        b1, dvar1 = coeffs(dfn, v1)
        b2, _ = coeffs(dfn, v2)
        edot = series(b1, b2, rho)
        if mask is not None:
            edot = jnp.where(mask, dvar1, edot)
        return nngp, edot

    return _activation(name, pair, lambda v: coeffs(fn, v)[1])


def activation_kernel(name: str, fn: Callable, **kw):
    """Kernel transform of an elementwise activation ``phi``.

    .. math::

        K \\leftarrow \\mathbb{E}[\\phi(u)\\phi(u')], \\qquad
        \\Theta \\leftarrow \\mathbb{E}[\\phi'(u)\\phi'(u')]\\,\\Theta, \\qquad
        (u, u') \\sim N\\left(0, \\begin{pmatrix} k_{11} & k_{12} \\\\ k_{12} & k_{22}
        \\end{pmatrix}\\right).

    Closed forms, with ``s = sqrt(k11 k22 - k12^2)`` and ``theta = atan2(s, k12)``:

    * ``"relu"``, ``"leaky_relu"``, ``"abrelu"`` (``phi = a min(x, 0) + b max(x, 0)``, kw
      ``a``, ``b``; ReLU is ``a=0, b=1``; Cho & Saul 2009):
      ``E[phi phi'] = [(a-b)^2 (s - theta k12) + pi (a^2+b^2) k12] / (2 pi)`` and
      ``E[phi' phi'] = [pi (a^2+b^2) - (a-b)^2 theta] / (2 pi)``.
    * ``"erf"`` (Williams 1997): ``E = (2/pi) arcsin(2 k12 / sqrt((1+2k11)(1+2k22)))``,
      ``E' = (4/pi) / sqrt((1+2k11)(1+2k22) - 4 k12^2)``.
    * ``"identity"``: unchanged.

    Any other ``name`` (tanh, GELU, sigmoid, user functions) uses the Mehler/Hermite
    expansion (the "dual activation" of Daniely et al. 2016)

    .. math::

        \\mathbb{E}[\\phi(u)\\phi(u')] = \\sum_{n=0}^{N} a_n(\\sqrt{k_{11}})
        a_n(\\sqrt{k_{22}})\\, \\rho^n, \\qquad
        a_n(s) = \\mathbb{E}_{z \\sim N(0,1)}[\\phi(s z)\\, He_n(z)] / \\sqrt{n!},

    with ``rho = k12 / sqrt(k11 k22)``, ``N = n_terms`` (kw, default 64) and the 1-D
    Gaussian expectations by quadrature on a fine grid (``phi'`` by forward-mode
    differentiation of ``fn``). Every term is a positive semi-definite kernel, so the
    truncation keeps ``K`` PSD and symmetric (a 2-D Gauss-Hermite rule does neither); the
    diagonal ``E[phi(u)^2]`` is computed without truncation. Accuracy: ~1e-10 for tanh/erf at
    moderate variance, ~1e-4 near ``rho = 1`` with large variance; ~1e-3 for kinked
    functions (use the closed forms for those).

    Parameters
    ----------
    name
        Activation name (selects a closed form when one is known).
    fn
        The elementwise function (used by the quadrature fallback).
    kw
        ``a``, ``b`` for ABReLU; ``n_terms`` for the Hermite expansion.

    Returns
    -------
    Callable
        ``Kernel -> Kernel``.
    """
    if name == "relu":
        return _abrelu(0.0, 1.0, name)
    if name in ("leaky_relu", "abrelu"):
        if "a" not in kw or "b" not in kw:
            raise ValueError(f"activation {name!r} needs the constants a and b")
        return _abrelu(float(kw["a"]), float(kw["b"]), name)
    if name == "erf":
        return _erf(name)
    if name == "identity":
        return _identity
    return _hermite_series(fn, name, int(kw.get("n_terms", 64)))


# ----------------------------------------------------------------------------- user API


def _transform_of(architecture) -> Callable:
    kernel = getattr(architecture, "kernel", None)
    if kernel is not None and callable(kernel):
        return kernel
    if callable(architecture):
        return architecture
    raise ValueError(
        "architecture must be a stax Layer or a callable Kernel -> Kernel, "
        f"got {type(architecture).__name__}"
    )


def _check_inputs(name: str, x, shape: tuple | None = None) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim not in (2, 4):
        raise ValueError(
            f"{name} must be a 2-D array (n, d) or NHWC images (n, H, W, C), got shape {x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    if shape is not None and x.shape[1:] != tuple(shape):
        raise ValueError(
            f"{name} must have the shape of one x1 input, {tuple(shape)}, per row; "
            f"got shape {x.shape}"
        )
    if not isinstance(x, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _normalise_get(get):
    single = isinstance(get, str)
    names = (get,) if single else tuple(get)
    for g in names:
        if g not in ("nngp", "ntk"):
            raise ValueError(f"get must name 'nngp' and/or 'ntk', got {get!r}")
    if not names:
        raise ValueError("get must not be empty")
    return single, names


def _mirror(r: jax.Array) -> jax.Array:
    """``K(x2, x1)`` from ``K(x1, x2)``: swap the input axes (and the position pairs)."""
    if r.ndim == 6:
        return jnp.transpose(r, (1, 0, 4, 5, 2, 3))
    return jnp.swapaxes(r, 0, 1)


@functools.lru_cache(maxsize=128)
def _compiled(transform, names: tuple, same: bool, block_size: int | None, spatial):
    """Jitted ``(x1, x2) -> tuple of kernels``, cached per (transform, names, blocking)."""
    compute_ntk = "ntk" in names

    def one(x1, x2, ids1, ids2):
        k = input_kernel(x1, x2, compute_ntk, ids1, ids2, spatial)
        k = transform(k)
        if not isinstance(k, Kernel):
            raise ValueError(
                "the architecture must end with one branch (close FanOut with FanInSum), "
                f"got {type(k).__name__}"
            )
        return tuple(getattr(k, g) for g in names)

    if block_size is None:

        def run(x1, x2):
            return one(x1, None if same else x2, None, None)

        return jax.jit(run)

    bs = block_size

    def rows(x, i, n):
        # block i of bs rows; the last block is shifted back to end at row n (it overlaps
        # its neighbour instead of being padded, so no pad/slice copies of the result)
        start = jnp.minimum(i * bs, n - bs)
        xi = jax.lax.dynamic_slice_in_dim(x, start, bs, axis=0)
        return start, xi, start + jnp.arange(bs)

    def run_triangle(x1, x2):
        # only the blocks (i, j), j >= i, of the symmetric K(X, X), each written with its
        # mirror into preallocated arrays (dynamic_update_slice in a loop: in place)
        n = x1.shape[0]
        nb = -(-n // bs)
        pi, pj = (jnp.asarray(v, jnp.int32) for v in np.triu_indices(nb))

        def block(p):
            si, xi, idi = rows(x1, pi[p], n)
            sj, xj, idj = rows(x1, pj[p], n)
            return si, sj, one(xi, xj, idi, idj)

        shapes = jax.eval_shape(lambda: block(0)[2])
        init = tuple(jnp.zeros((n, n) + r.shape[2:], r.dtype) for r in shapes)

        def body(p, bufs):
            si, sj, res = block(p)
            out = []
            for buf, r in zip(bufs, res, strict=True):
                zeros = (0,) * (r.ndim - 2)
                buf = jax.lax.dynamic_update_slice(buf, _mirror(r), (sj, si) + zeros)
                out.append(jax.lax.dynamic_update_slice(buf, r, (si, sj) + zeros))
            return tuple(out)

        return jax.lax.fori_loop(0, pi.shape[0], body, init)

    def run_rows(x1, x2):
        n = x1.shape[0]
        shapes = jax.eval_shape(lambda: one(x1[:bs], x2, None, None))
        init = tuple(jnp.zeros((n,) + r.shape[1:], r.dtype) for r in shapes)

        def body(i, bufs):
            si, xi, _ = rows(x1, i, n)
            res = one(xi, x2, None, None)
            return tuple(
                jax.lax.dynamic_update_slice(buf, r, (si,) + (0,) * (r.ndim - 1))
                for buf, r in zip(bufs, res, strict=True)
            )

        return jax.lax.fori_loop(0, -(-n // bs), body, init)

    return jax.jit(run_triangle if same else run_rows)


_AUTO_BLOCK_ENTRIES = 1 << 16  # CPU: blocks of about 2^16 entries stay in cache
_AUTO_BLOCK_ENTRIES_ACCEL = 1 << 26  # GPU/TPU: block only to bound memory
_LIVE_ARRAYS = 10  # intermediates of one block's recursion, in units of its kernel size


def _balanced(n: int, target: int) -> int:
    """Block size <= target that splits n rows into equal blocks (little overlap)."""
    target = max(1, min(n, target))
    return -(-n // -(-n // target))


def _auto_block_size(n1: int, n2: int, same: bool, per_pair: int = 1) -> int | None:
    target = _AUTO_BLOCK_ENTRIES if jax.default_backend() == "cpu" else _AUTO_BLOCK_ENTRIES_ACCEL
    target = max(1, target // per_pair)
    if n1 * n2 <= target:
        return None
    if same:
        return _balanced(n1, math.isqrt(target))
    return _balanced(n1, target // n2)


def _default_memory_limit() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def kernel_fn(
    architecture,
    x1: jax.Array,
    x2: jax.Array | None = None,
    get: str | Sequence[str] = ("nngp", "ntk"),
    block_size: int | str | None = "auto",
    max_memory_bytes: int | None = None,
):
    """Analytic infinite-width NNGP and/or NTK of an architecture between two input sets.

    Parameters
    ----------
    architecture
        A :class:`bayesnn.nn.stax.Layer` (e.g. ``serial(Dense(512), Relu(), Dense(1))``) or a
        bare callable ``Kernel -> Kernel``.
    x1
        ``(n1, d)`` inputs or ``(n1, H, W, C)`` images (NHWC).
    x2
        Inputs like ``x1``, or ``None`` for ``K(x1, x1)`` with an exact diagonal.
    get
        ``"nngp"``, ``"ntk"`` or a sequence of them. The NTK is only computed when asked.
    block_size
        Compute the result in blocks of this many rows of ``x1`` (a ``fori_loop`` over
        blocks writing into preallocated arrays), so the intermediate memory of the
        recursion is ``O(block_size * n2)`` kernels instead of several ``O(n1 * n2)``
        ones and, on a CPU, each block's recursion runs in cache. For ``K(X, X)``
        (``x2=None``) the blocks are ``block_size x block_size`` and only those on and
        above the diagonal are computed, each written together with its mirror image
        (about half the work). ``"auto"`` (default): on a CPU, blocks of about 2^16 numbers
        (counting the spatial entries of each pair of inputs) when the result is larger than
        that (sizes balanced so that the blocks split ``n1`` evenly); on an accelerator,
        blocks of about 2^26 numbers only when the result is larger; ``None``: never block.
    max_memory_bytes
        Upper bound on the estimated memory (the results plus about ten kernel-sized
        intermediates of one block); a larger estimate raises ``ValueError`` before anything
        is allocated. ``None`` (default): half the physical memory.

    Returns
    -------
    jax.Array or tuple of jax.Array
        One array per name in ``get`` (a single array if ``get`` is a str): ``(n1, n2)``
        when the architecture ends without spatial axes (e.g. ``Flatten`` or
        ``GlobalAvgPool`` then ``Dense``); for a spatial output, ``(n1, n2, H, W, H, W)``
        covariances of all position pairs (neural-tangents orders these axes
        ``(H, H, W, W)``). The dtype follows the inputs (float64 inputs need
        ``jax_enable_x64``).

    Notes
    -----
    Images only get the spatial covariances the architecture needs: per-position variances
    (``O(n1 n2 H W)`` per layer) when it is read out by ``Flatten``, all position pairs
    (``O(n1 n2 (H W)^2)``) before ``AvgPool``/``GlobalAvgPool``; see
    :mod:`bayesnn.nn.spatial`. The transforms are pure JAX: ``kernel_fn`` may be called
    under ``jit``/``grad``.
    """
    transform = _transform_of(architecture)
    single, names = _normalise_get(get)
    x1 = _check_inputs("x1", x1)
    same = x2 is None
    if not same:
        x2 = _check_inputs("x2", x2, x1.shape[1:])
        x2 = x2.astype(jnp.result_type(x1, x2))
        x1 = x1.astype(x2.dtype)
    spatial = None
    per_pair = 1
    if x1.ndim == 4:
        need = getattr(architecture, "spatial_need", None)
        spatial = "full" if need is None else need("full")
        if spatial not in ("diag", "full"):
            raise ValueError(f"architecture.spatial_need returned {spatial!r}")
        positions = x1.shape[1] * x1.shape[2]
        per_pair = positions if spatial == "diag" else positions * positions
    n1 = x1.shape[0]
    n2 = n1 if same else x2.shape[0]
    if isinstance(block_size, str) and block_size == "auto":
        block_size = _auto_block_size(n1, n2, same, per_pair)
    elif block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
        block_size = min(block_size, n1)
    if max_memory_bytes is None:
        max_memory_bytes = _default_memory_limit()
    elif not isinstance(max_memory_bytes, int) or max_memory_bytes < 1:
        raise ValueError(f"max_memory_bytes must be a positive integer, got {max_memory_bytes!r}")
    compiled = _compiled(transform, names, same, block_size, spatial)
    x2_ = None if same else x2
    out_shapes = jax.eval_shape(compiled, x1, x2_)
    itemsize = jnp.dtype(x1.dtype).itemsize
    b1 = n1 if block_size is None else block_size
    b2 = n2 if block_size is None or not same else block_size
    estimate = itemsize * (
        sum(math.prod(r.shape) for r in out_shapes)
        + _LIVE_ARRAYS * (b1 * b2 + b1 + b2) * per_pair * len(names)
    )
    if estimate > max_memory_bytes:
        raise ValueError(
            f"kernel_fn: estimated memory {estimate / 2**30:.2f} GiB exceeds max_memory_bytes="
            f"{max_memory_bytes / 2**30:.2f} GiB (n1={n1}, n2={n2}, spatial={spatial!r}, "
            f"block_size={block_size}); use a smaller block_size, fewer inputs, or raise "
            "max_memory_bytes"
        )
    out = compiled(x1, x2_)
    return out[0] if single else out


def empirical_nngp(apply_fn: Callable, params, x1: jax.Array, x2: jax.Array | None = None):
    """Finite-width NNGP estimate of one network draw, averaged over output units.

    .. math:: \\hat K(x, x') = \\frac{1}{C} \\sum_{c=1}^C f_c(x) f_c(x').

    Parameters
    ----------
    apply_fn
        ``apply(params, x) -> (n, C)`` outputs.
    params
        One parameter draw (e.g. from ``init``).
    x1, x2
        Inputs (``x2=None`` means ``x1``).
    """
    f1 = apply_fn(params, x1)
    f2 = f1 if x2 is None else apply_fn(params, x2)
    return jnp.matmul(f1, f2.T, precision=_HIGHEST) / f1.shape[-1]


def empirical_ntk(apply_fn: Callable, params, x1: jax.Array, x2: jax.Array | None = None):
    """Finite-width (empirical) NTK, averaged over output units.

    .. math::

        \\hat\\Theta(x, x') = \\frac{1}{C} \\sum_{c=1}^C
        \\sum_p \\frac{\\partial f_c(x)}{\\partial \\theta_p}
        \\frac{\\partial f_c(x')}{\\partial \\theta_p}

    (Jacot et al. 2018). Uses dense Jacobians: meant for small ``n`` and moderate widths.
    """

    def jac(x):
        return jax.jacrev(lambda p: apply_fn(p, x))(params)

    j1 = jac(x1)
    j2 = j1 if x2 is None else jac(x2)
    total = 0.0
    for a, b in zip(jax.tree_util.tree_leaves(j1), jax.tree_util.tree_leaves(j2), strict=True):
        a2 = a.reshape(a.shape[0], a.shape[1], -1)
        b2 = b.reshape(b.shape[0], b.shape[1], -1)
        total = total + jnp.einsum("icp,jcp->ij", a2, b2, precision=_HIGHEST)
    c = jax.eval_shape(lambda: apply_fn(params, x1)).shape[-1]
    return total / c


def monte_carlo_nngp(
    architecture,
    rng_key: jax.Array,
    x1: jax.Array,
    x2: jax.Array | None = None,
    n_samples: int = 100,
):
    """Monte Carlo NNGP: empirical output covariance over random initialisations.

    Averages :func:`empirical_nngp` over ``n_samples`` independent ``architecture.init``
    draws and returns the mean and its standard error (per entry, from the spread between
    draws), for comparing a finite network with :func:`kernel_fn`.

    Returns
    -------
    tuple
        ``(mean, stderr)``, both ``(n1, n2)``.
    """
    if not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    x1 = _check_inputs("x1", x1)
    xs = x1 if x2 is None else _check_inputs("x2", x2, x1.shape[1:])
    shape = tuple(x1.shape[1:])

    def one(key):
        params = architecture.init(key, shape)
        return empirical_nngp(architecture.apply, params, x1, xs)

    draws = jax.lax.map(jax.jit(one), jax.random.split(rng_key, n_samples))
    mean = jnp.mean(draws, axis=0)
    se = jnp.std(draws, axis=0, ddof=1) / math.sqrt(n_samples)
    return mean, se
