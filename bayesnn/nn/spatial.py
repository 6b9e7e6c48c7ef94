"""Infinite-width kernel transforms of convolutional, pooling and normalisation layers.

Notation: a representation of shape ``(H, W, C)`` per input with ``C -> infinity`` has, per
channel, the covariance ``K(x, p; x', p')`` between position ``p`` of input ``x`` and
position ``p'`` of ``x'`` (Novak et al. 2019; Garriga-Alonso et al. 2019). A convolution
with filter ``F = f_h x f_w``, stride ``s``, weights ``W ~ N(0, sigma_w^2 / (C F))`` shared
over positions and independent over filter taps gives

.. math::

    K_{\\rm out}(p, p') = \\frac{\\sigma_w^2}{F} \\sum_{d \\in F}
    K(s p + d, s p' + d) + \\sigma_b^2,

(the same tap ``d`` on both sides; zero padding contributes zero), so the per-position
variances (``p = p'``) only need per-position variances of the input: a network read out by
``Flatten`` needs ``O(N^2 H W)`` numbers per layer (``spatial="diag"``). Average pooling
mixes positions,

.. math::

    K_{\\rm out}(p, p') = \\frac{1}{F^2} \\sum_{d, d' \\in F} K(s p + d, s p' + d'),

and global average pooling averages over all ``(p, p')``: these need the covariances of all
position pairs (``spatial="full"``, ``O(N^2 (H W)^2)``). Which one a layer receives is
decided before the computation by :func:`bayesnn.nn.kernels.kernel_fn` from the layers'
``spatial_need`` (a backward pass over the architecture, as neural-tangents' ``Diagonal``
requirements).

Layouts: ``(n1, n2, H, W)`` (diag) and ``(n1, n2, H, W, H, W)`` (full) for ``nngp``/``ntk``;
``(n, H, W)`` and ``(n, H, W, H, W)`` for ``var1``/``var2``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from bayesnn.nn.kernels import Kernel, _set_diag

__all__ = [
    "same_padding",
    "conv_kernel",
    "avg_pool_kernel",
    "global_avg_pool_kernel",
    "flatten_kernel",
    "layer_norm_kernel",
    "fan_in_sum_kernel",
]


def same_padding(size: int, window: int, stride: int, padding: str) -> tuple[int, int, int]:
    """``(out, lo, hi)``: output length and zero padding of a window, as ``lax`` pads.

    ``"VALID"``: ``out = (size - window) // stride + 1``, no padding. ``"SAME"``:
    ``out = ceil(size / stride)`` and ``max((out - 1) stride + window - size, 0)`` zeros,
    the smaller half before.
    """
    if padding == "VALID":
        if window > size:
            raise ValueError(f"window {window} larger than the input {size} with VALID padding")
        return (size - window) // stride + 1, 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2, total - total // 2


def _pad_axes(x, axes, lo, hi):
    if lo == 0 and hi == 0:
        return x
    cfg = [(0, 0)] * x.ndim
    for a in axes:
        cfg[a] = (lo, hi)
    return jnp.pad(x, cfg)


def _window_sum(x, axes, window, stride, padding):
    """Sum over a window with the same offset ``d`` on every axis in ``axes`` (all equal in
    length): ``y[.., i, .., j, ..] = sum_d x[.., s i + d, .., s j + d, ..]``."""
    size = x.shape[axes[0]]
    out, lo, hi = same_padding(size, window, stride, padding)
    # materialise the (padded) input: XLA would otherwise fuse the producer into each of the
    # `window` shifted reads, and through stacked layers recompute it window^depth times
    x = jax.lax.optimization_barrier(_pad_axes(x, axes, lo, hi))
    total = None
    for d in range(window):
        term = x
        for a in axes:
            term = jax.lax.slice_in_dim(term, d, d + (out - 1) * stride + 1, stride, a)
        total = term if total is None else total + term
    return total


def _conv_mean(x, batch_ndim, spatial, filter_shape, strides, padding):
    """Covariance of a convolution with uniform filter ``1/F`` (before ``sigma_w^2``)."""
    for i, (f, s) in enumerate(zip(filter_shape, strides, strict=True)):
        if spatial == "diag":
            axes = (batch_ndim + i,)
        else:  # pair (p_i, p'_i) shares the tap
            axes = (batch_ndim + i, batch_ndim + 2 + i)
        x = _window_sum(x, axes, f, s, padding)
    return x / math.prod(filter_shape)


def _check_fits(k: Kernel, layer: str, arg: str, window, padding) -> None:
    hw = tuple(k.nngp.shape[2:4])
    if padding == "VALID" and any(f > s for f, s in zip(window, hw, strict=True)):
        raise ValueError(
            f"{layer}: {arg} {tuple(window)} is larger than the input {hw} with VALID padding"
        )


def _require_spatial(k: Kernel, layer: str, modes=("diag", "full")) -> None:
    if k.spatial not in modes:
        if k.spatial is None:
            raise ValueError(
                f"{layer}: its input has no spatial axes (the layer needs NHWC inputs)"
            )
        raise ValueError(
            f"{layer} needs the covariances of all position pairs, got spatial={k.spatial!r} "
            "(kernel_fn chooses this from the layers' spatial_need)"
        )


def conv_kernel(filter_shape, strides, padding, W_std, b_std, parameterization, out_chan):
    """Kernel transform of :func:`bayesnn.nn.stax.Conv` (shared weights, zero padding).

    ``K <- sigma_w^2 conv(K) + sigma_b^2`` with ``conv`` the tap-shared window mean of the
    module docstring, and ``Theta <- K_new + sigma_w^2 conv(Theta)`` ("ntk") or
    ``Theta <- C F conv(K) + 1_bias + sigma_w^2 conv(Theta)`` ("standard", fan-in ``C F``).
    """

    def transform(k: Kernel) -> Kernel:
        _require_spatial(k, "Conv")
        _check_fits(k, "Conv", "filter_shape", filter_shape, padding)
        w2 = W_std**2
        b2 = 0.0 if b_std is None else b_std**2

        def conv(x, batch_ndim):
            return _conv_mean(x, batch_ndim, k.spatial, filter_shape, strides, padding)

        nngp_u = conv(k.nngp, 2)
        nngp = w2 * nngp_u + b2
        var1 = w2 * conv(k.var1, 1) + b2
        var2 = var1 if k.var2 is k.var1 else w2 * conv(k.var2, 1) + b2
        ntk = k.ntk
        if ntk is not None:
            if parameterization == "ntk":
                ntk = nngp + w2 * conv(ntk, 2)
            else:
                fan_in = k.width * math.prod(filter_shape)
                ntk = fan_in * nngp_u + w2 * conv(ntk, 2) + (0.0 if b_std is None else 1.0)
        return Kernel(nngp, ntk, var1, var2, k.ids1, k.ids2, int(out_chan), True, k.spatial)

    return transform


def avg_pool_kernel(window_shape, strides, padding):
    """Kernel transform of :func:`bayesnn.nn.stax.AvgPool` (needs ``spatial="full"``):
    a window sum on each of the four position axes, divided by ``F^2``."""

    def transform(k: Kernel) -> Kernel:
        _require_spatial(k, "AvgPool", ("full",))
        _check_fits(k, "AvgPool", "window_shape", window_shape, padding)

        def pool(x, batch_ndim):
            for i, (f, s) in enumerate(zip(window_shape, strides, strict=True)):
                for a in (batch_ndim + i, batch_ndim + 2 + i):
                    x = _window_sum(x, (a,), f, s, padding)
            return x / math.prod(window_shape) ** 2

        var1 = pool(k.var1, 1)
        var2 = var1 if k.var2 is k.var1 else pool(k.var2, 1)
        ntk = None if k.ntk is None else pool(k.ntk, 2)
        return k.replace(nngp=pool(k.nngp, 2), ntk=ntk, var1=var1, var2=var2)

    return transform


def global_avg_pool_kernel(k: Kernel) -> Kernel:
    """Kernel transform of :func:`bayesnn.nn.stax.GlobalAvgPool`: the mean over all
    position pairs (needs ``spatial="full"``); the output has no spatial axes."""
    _require_spatial(k, "GlobalAvgPool", ("full",))

    def mean(x, batch_ndim):
        return jnp.mean(x, axis=tuple(range(batch_ndim, x.ndim)))

    var1 = mean(k.var1, 1)
    var2 = var1 if k.var2 is k.var1 else mean(k.var2, 1)
    ntk = None if k.ntk is None else mean(k.ntk, 2)
    return k.replace(nngp=mean(k.nngp, 2), ntk=ntk, var1=var1, var2=var2, spatial=None)


def flatten_kernel(k: Kernel) -> Kernel:
    """Kernel transform of :func:`bayesnn.nn.stax.Flatten`: the mean over positions of the
    per-position covariances (the normalised inner product of the flattened features). The
    result is no longer a per-unit covariance (``is_gaussian=False``: an activation cannot
    follow); the width becomes ``H W C``, the fan-in of the next dense layer."""
    _require_spatial(k, "Flatten")

    def trace(x, batch_ndim):
        if k.spatial == "full":
            p = x.shape[batch_ndim] * x.shape[batch_ndim + 1]
            x = jnp.diagonal(x.reshape(x.shape[:batch_ndim] + (p, p)), axis1=-2, axis2=-1)
            return jnp.mean(x, axis=-1)
        return jnp.mean(x, axis=tuple(range(batch_ndim, x.ndim)))

    h, w = k.nngp.shape[2:4]
    var1 = trace(k.var1, 1)
    var2 = var1 if k.var2 is k.var1 else trace(k.var2, 1)
    ntk = None if k.ntk is None else trace(k.ntk, 2)
    return Kernel(trace(k.nngp, 2), ntk, var1, var2, k.ids1, k.ids2, k.width * h * w, False, None)


def layer_norm_kernel(spatial_axes: tuple[int, ...], eps: float):
    """Kernel transform of :func:`bayesnn.nn.stax.LayerNorm` normalising over the channels
    and the spatial axes ``spatial_axes`` (0 = H, 1 = W) of each input:

    .. math:: K(x, p; x', p') \\leftarrow K(x, p; x', p') / \\sqrt{\\nu(x, p) \\nu(x', p')},
        \\qquad \\nu(x, p) = \\epsilon + \\operatorname{mean}_{\\text{axes}} K(x, p; x, p),

    (the channel mean vanishes as ``C -> infinity``; neural-tangents' formula, with its
    ``eps``); the NTK is divided by the same factor.
    """

    def transform(k: Kernel) -> Kernel:
        if not k.is_gaussian:
            raise ValueError(
                "LayerNorm: its kernel needs Gaussian inputs (put a Dense or Conv layer before it)"
            )
        if spatial_axes and k.spatial is None:
            raise ValueError("LayerNorm: axis includes spatial axes but the input has none")
        v1, v2 = k.position_vars()

        def norm(v):
            v = v + eps
            if spatial_axes:
                v = jnp.mean(v, axis=tuple(1 + a for a in spatial_axes), keepdims=True)
                v = jnp.broadcast_to(v, v.shape[:1] + k.nngp.shape[2:4])
            return jax.lax.rsqrt(v)

        r1 = norm(v1)
        r2 = r1 if k.var2 is k.var1 else norm(v2)
        if k.spatial == "full":
            a, b = r1[:, None, :, :, None, None], r2[None, :, None, None, :, :]
        else:
            a, b = r1[:, None], r2[None, :]
        nngp = k.nngp * a * b
        ntk = None if k.ntk is None else k.ntk * a * b

        def self_cov(var, r):
            if k.spatial == "full":
                return var * r[:, :, :, None, None] * r[:, None, None, :, :]
            return var * r * r

        var1 = self_cov(k.var1, r1)
        var2 = var1 if k.var2 is k.var1 else self_cov(k.var2, r2)
        out = k.replace(nngp=nngp, ntk=ntk, var1=var1, var2=var2)
        if k.spatial == "full":
            return out
        return out.replace(nngp=_set_diag(out, nngp, var1))

    return transform


def fan_in_sum_kernel(ks) -> Kernel:
    """Kernel transform of :func:`bayesnn.nn.stax.FanInSum`: the sum of the branches'
    kernels (independent mean-zero Gaussian branches, as neural-tangents assumes)."""
    ks = list(ks)
    first = ks[0]
    for i, k in enumerate(ks[1:], start=1):
        if k.nngp.shape != first.nngp.shape or k.spatial != first.spatial:
            raise ValueError(
                f"FanInSum: branch {i} has kernel shape {k.nngp.shape} (spatial={k.spatial!r})"
                f", branch 0 has {first.nngp.shape} (spatial={first.spatial!r})"
            )
    if not all(k.is_gaussian for k in ks):
        raise ValueError(
            "FanInSum: every branch must end in a Gaussian layer (Dense, Conv, pooling or "
            f"Identity of one); is_gaussian per branch: {[k.is_gaussian for k in ks]}"
        )
    same = first.var2 is first.var1

    def total(name):
        vals = [getattr(k, name) for k in ks]
        if vals[0] is None:
            return None
        return sum(vals[1:], vals[0])

    var1 = total("var1")
    return first.replace(
        nngp=total("nngp"),
        ntk=total("ntk"),
        var1=var1,
        var2=var1 if same else total("var2"),
    )
