"""Convolutional and pooling layers on NHWC images (neural-tangents' stax names).

Shapes: ``apply`` takes ``(N, H, W, C)`` arrays; ``init``/``output_shape`` take the shape of
one input, ``(H, W, C)`` (neural-tangents includes the batch axis there). Filters are
``HWIO``: ``W`` has shape ``(f_h, f_w, C_in, C_out)``. Only 2-D images and zero padding
(``"VALID"``, ``"SAME"``) are implemented; neural-tangents' ``dimension_numbers`` and
``"CIRCULAR"`` padding are not.

The finite convolution is computed as im2col (strided slices of the zero-padded input) plus
one matrix product, which equals ``lax.conv_general_dilated`` to rounding. On XLA:CPU the
gradients of ``conv_general_dilated`` are lowered to naive loops inside ``lax.scan`` (the loop
of an SG-MCMC chain; outside a loop they are rewritten to fast library convolutions), and
``vmap`` over chains with their own filters makes them grouped convolutions, also slow; the
matrix product's gradients are matrix products in both cases, and the slices' transposes are
pads and adds. ``lax.conv_general_dilated_patches`` is not used: it is itself a convolution
with a one-hot filter, ``(f_h f_w C)^2`` multiply-adds per output position.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from bayesnn.nn import spatial as _spatial
from bayesnn.nn.layer import (
    Layer,
    _check_padding,
    _check_parameterization,
    _check_positive,
    _int_pair,
    _lift,
)

__all__ = ["Conv", "AvgPool", "MaxPool", "GlobalAvgPool", "Flatten", "conv2d"]


def conv2d(x: jax.Array, W: jax.Array, strides=(1, 1), padding: str = "VALID") -> jax.Array:
    """2-D convolution (cross-correlation) of NHWC ``x`` with HWIO ``W`` by im2col.

    Equals ``lax.conv_general_dilated(x, W, strides, padding, dimension_numbers=("NHWC",
    "HWIO", "NHWC"))`` up to rounding; its gradients stay fast inside ``lax.scan`` on CPU.
    """
    fh, fw, cin, cout = W.shape
    patches = _patches(x, (fh, fw), tuple(strides), padding)
    y = patches.reshape(-1, fh * fw * cin) @ W.reshape(fh * fw * cin, cout)
    return y.reshape(patches.shape[:-1] + (cout,))


def _patches(x, filter_shape, strides, padding):
    """im2col: ``(N, H', W', f_h f_w C)``, features ordered ``(tap_h, tap_w, channel)`` as a
    reshaped HWIO filter, from strided slices of the zero-padded input.

    Built in two stages (the ``f_w`` column taps, then the ``f_h`` row taps of those): XLA:CPU
    copies a concatenation of a few wide pieces several times faster than one of ``f_h f_w``
    narrow pieces (e.g. 1-channel images), and the slices' transposes (the input gradient)
    are pads and adds.
    """
    n, h, w, c = x.shape
    (fh, fw), (sh, sw) = filter_shape, strides
    oh, lo_h, hi_h = _spatial.same_padding(h, fh, sh, padding)
    ow, lo_w, hi_w = _spatial.same_padding(w, fw, sw, padding)
    xp = jnp.pad(x, ((0, 0), (lo_h, hi_h), (lo_w, hi_w), (0, 0)))
    hp = xp.shape[1]
    cols = [
        jax.lax.slice(xp, (0, 0, j, 0), (n, hp, j + (ow - 1) * sw + 1, c), (1, 1, sw, 1))
        for j in range(fw)
    ]
    cols = jnp.concatenate(cols, axis=-1) if fw > 1 else cols[0]  # (N, H_pad, W', f_w C)
    rows = [
        jax.lax.slice(cols, (0, i, 0, 0), (n, i + (oh - 1) * sh + 1, ow, fw * c), (1, sh, 1, 1))
        for i in range(fh)
    ]
    if fh == 1:
        return rows[0]
    return jnp.stack(rows, axis=-2).reshape(n, oh, ow, fh * fw * c)


def _check_image_shape(layer: str, input_shape) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ValueError(
            f"{layer}: input must be NHWC images, i.e. one input of shape (H, W, C); "
            f"got input_shape {shape}"
        )
    return shape


def _check_nhwc(layer: str, x) -> None:
    if x.ndim != 4:
        raise ValueError(f"{layer}: input must be NHWC (rank 4), got shape {x.shape}")


def _out_hw(layer: str, arg: str, hw, window, strides, padding):
    out = []
    for size, f, s in zip(hw, window, strides, strict=True):
        if padding == "VALID" and f > size:
            raise ValueError(
                f"{layer}: {arg} {tuple(window)} is larger than the input {tuple(hw)} "
                "with VALID padding"
            )
        out.append(_spatial.same_padding(size, f, s, padding)[0])
    return tuple(out)


def _parameterless_init(output_shape):
    """``init`` of a layer without parameters: checks the input shape, returns ``{}``."""

    def init(rng_key, input_shape):
        del rng_key
        output_shape(input_shape)
        return {}

    return init


def Conv(
    out_chan: int,
    filter_shape,
    strides=None,
    padding: str = "VALID",
    W_std: float = 1.0,
    b_std: float | None = None,
    parameterization: str = "ntk",
) -> Layer:
    """2-D convolution ``y[p] = sum_{d, c} x[s p + d, c] W[d, c] + b`` on NHWC inputs.

    Parameters
    ----------
    out_chan
        Number of output channels.
    filter_shape
        ``(f_h, f_w)``.
    strides
        ``(s_h, s_w)``; ``None`` means ``(1, 1)``.
    padding
        ``"VALID"`` or ``"SAME"`` (zero padding, ``lax``'s convention).
    W_std, b_std
        Weight and bias standard deviations; the weight variance is
        ``W_std^2 / (C_in f_h f_w)``. ``b_std=None`` (default, as in neural-tangents): no
        bias.
    parameterization
        ``"ntk"`` (parameters standard normal, scaled in ``apply``) or ``"standard"``.

    Returns
    -------
    Layer
        Parameters ``{"W": (f_h, f_w, C_in, out_chan), "b": (out_chan,)}``. Differences
        from neural-tangents: no ``dimension_numbers`` (NHWC/HWIO only), no ``"CIRCULAR"``
        padding and no ``s`` (width multiplier) argument.
    """
    if not isinstance(out_chan, int) or isinstance(out_chan, bool) or out_chan < 1:
        raise ValueError(f"Conv: out_chan must be a positive integer, got {out_chan!r}")
    filter_shape = _int_pair("Conv", "filter_shape", filter_shape)
    strides = _int_pair("Conv", "strides", strides, default=(1, 1))
    padding = _check_padding("Conv", padding)
    _check_positive("W_std", W_std)
    if b_std is not None and not float(b_std) >= 0.0:
        raise ValueError(f"Conv: b_std must be >= 0 or None, got {b_std!r}")
    _check_parameterization(parameterization)
    fan_taps = math.prod(filter_shape)

    def output_shape(input_shape):
        h, w, _ = _check_image_shape("Conv", input_shape)
        return _out_hw("Conv", "filter_shape", (h, w), filter_shape, strides, padding) + (
            out_chan,
        )

    def init(rng_key, input_shape):
        output_shape(input_shape)
        cin = int(input_shape[-1])
        w_key, b_key = jax.random.split(rng_key)
        W = jax.random.normal(w_key, filter_shape + (cin, out_chan))
        if parameterization == "standard":
            W = W * (W_std / math.sqrt(cin * fan_taps))
        params = {"W": W}
        if b_std is not None:
            b = jax.random.normal(b_key, (out_chan,))
            params["b"] = b * b_std if parameterization == "standard" else b
        return params

    def apply(params, x):
        _check_nhwc("Conv", x)
        W = params["W"]
        if x.shape[-1] != W.shape[2]:
            raise ValueError(
                f"Conv: expects inputs with {W.shape[2]} channels, got shape {x.shape}"
            )
        _out_hw("Conv", "filter_shape", x.shape[1:3], filter_shape, strides, padding)
        if parameterization == "ntk":
            # scale the filter, not the (much larger) output
            y = conv2d(x, (W_std / math.sqrt(W.shape[2] * fan_taps)) * W, strides, padding)
            if "b" in params:
                y = y + _lift(b_std * params["b"], y.ndim)
            return y
        y = conv2d(x, W, strides, padding)
        return y + _lift(params["b"], y.ndim) if "b" in params else y

    kernel = _spatial.conv_kernel(
        filter_shape, strides, padding, W_std, b_std, parameterization, out_chan
    )
    return Layer(init, apply, output_shape, kernel, "conv")


def _pool_layer(name, layer, window_shape, strides, padding, reducer, kernel):
    window_shape = _int_pair(layer, "window_shape", window_shape)
    strides = _int_pair(layer, "strides", strides, default=(1, 1))
    padding = _check_padding(layer, padding)

    def output_shape(input_shape):
        h, w, c = _check_image_shape(layer, input_shape)
        return _out_hw(layer, "window_shape", (h, w), window_shape, strides, padding) + (c,)

    init = _parameterless_init(output_shape)

    def apply(params, x):
        del params
        _check_nhwc(layer, x)
        _out_hw(layer, "window_shape", x.shape[1:3], window_shape, strides, padding)
        return reducer(x, window_shape, strides, padding)

    return Layer(init, apply, output_shape, kernel(window_shape, strides, padding), name)


def _avg(x, window_shape, strides, padding):
    s = jax.lax.reduce_window(
        x, 0.0, jax.lax.add, (1, *window_shape, 1), (1, *strides, 1), padding
    )
    return s / math.prod(window_shape)


def _max(x, window_shape, strides, padding):
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, *window_shape, 1), (1, *strides, 1), padding
    )


def AvgPool(window_shape, strides=None, padding: str = "VALID") -> Layer:
    """Average pooling over ``window_shape`` positions per channel.

    ``strides=None`` means ``(1, 1)``, as in neural-tangents (not the window, as in
    ``jax.example_libraries.stax``). With ``"SAME"`` padding the zeros count in the average
    (neural-tangents' default ``normalize_edges=False``; that argument is not offered). Its
    kernel needs the covariances of all position pairs.
    """
    layer = _pool_layer(
        "avg_pool", "AvgPool", window_shape, strides, padding, _avg, _spatial.avg_pool_kernel
    )
    return layer._replace(spatial_need=lambda out: "full")


def MaxPool(window_shape, strides=None, padding: str = "VALID") -> Layer:
    """Max pooling (finite networks only: the infinite-width kernel has no closed form, and
    asking for it raises an error). ``strides=None`` means ``(1, 1)``."""

    def no_kernel(window_shape, strides, padding):
        def kernel(k):
            raise NotImplementedError(
                "MaxPool has no closed-form infinite-width kernel; use AvgPool for NNGP/NTK "
                "kernels (MaxPool works in finite networks only)"
            )

        return kernel

    return _pool_layer("max_pool", "MaxPool", window_shape, strides, padding, _max, no_kernel)


def GlobalAvgPool() -> Layer:
    """Mean over all positions: ``(N, H, W, C) -> (N, C)``. Its kernel needs the
    covariances of all position pairs (``O(N^2 (H W)^2)``)."""

    def output_shape(input_shape):
        return (_check_image_shape("GlobalAvgPool", input_shape)[-1],)

    init = _parameterless_init(output_shape)

    def apply(params, x):
        del params
        _check_nhwc("GlobalAvgPool", x)
        return jnp.mean(x, axis=(1, 2))

    return Layer(
        init,
        apply,
        output_shape,
        _spatial.global_avg_pool_kernel,
        "global_avg_pool",
        lambda out: "full",
    )


def Flatten() -> Layer:
    """Flatten each NHWC input to a vector: ``(N, H, W, C) -> (N, H W C)``. Its kernel
    needs only the per-position covariances (``O(N^2 H W)`` per layer before it)."""

    def output_shape(input_shape):
        return (math.prod(_check_image_shape("Flatten", input_shape)),)

    init = _parameterless_init(output_shape)

    def apply(params, x):
        del params
        _check_nhwc("Flatten", x)
        return x.reshape(x.shape[0], -1)

    return Layer(init, apply, output_shape, _spatial.flatten_kernel, "flatten", lambda out: "diag")
