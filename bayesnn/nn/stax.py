"""Composable network layers in the style of neural-tangents' ``stax``.

Every layer is a :class:`Layer`: a finite network (``init``/``apply``) and, where it exists,
the analytic infinite-width transform of its NNGP and NTK kernels (``kernel``). The same
architecture object is therefore the finite network sampled by SG-MCMC, the function prior
tuned by Wasserstein matching, and the kernel of an NNGP scale mixture.

Parameterisations (Jacot et al. 2018; Lee et al. 2019):

* ``"ntk"`` (default): parameters are standard normal at initialisation and the layer computes
  ``y = (W_std / sqrt(fan_in)) x W + b_std b``. A prior placed on ``W`` is a prior on the
  unscaled weights, which is the "scaled" parameterisation of Tran et al. (2022).
* ``"standard"``: ``y = x W + b`` with ``W ~ N(0, W_std^2 / fan_in)``, ``b ~ N(0, b_std^2)``.

Both give the same NNGP kernel; the NTKs differ by the per-layer scaling.

Parameters are nested dicts with netCDF-safe names: ``serial`` names its children
``"<layer name>_<position>"`` (e.g. ``"dense_0"``) and a dense layer holds ``"W"`` and
``"b"``, so ``jax.tree_util.keystr(path, simple=True, separator=".")`` gives ``dense_0.W``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from bayesnn.nn import kernels as _kernels
from bayesnn.nn import spatial as _spatial
from bayesnn.nn.conv import AvgPool, Conv, Flatten, GlobalAvgPool, MaxPool
from bayesnn.nn.layer import (
    PARAMETERIZATIONS,
    Layer,
    _check_finite,
    _check_parameterization,
    _check_positive,
    _lift,
    _max_need,
    spatial_need,
)

__all__ = [
    "Layer",
    "Dense",
    "Relu",
    "LeakyRelu",
    "ABRelu",
    "Tanh",
    "Erf",
    "Gelu",
    "Sigmoid",
    "Sin",
    "Identity",
    "Elementwise",
    "LayerNorm",
    "Conv",
    "AvgPool",
    "MaxPool",
    "GlobalAvgPool",
    "Flatten",
    "FanOut",
    "FanInSum",
    "parallel",
    "serial",
    "PARAMETERIZATIONS",
]


def Dense(
    out_dim: int,
    W_std: float = 1.0,
    b_std: float | None = 0.0,
    parameterization: str = "ntk",
) -> Layer:
    """Fully connected layer ``y = x W + b`` acting on the last axis.

    Parameters
    ----------
    out_dim
        Number of output units.
    W_std
        Weight standard deviation ``sigma_w``; the effective weight variance is
        ``sigma_w^2 / fan_in``.
    b_std
        Bias standard deviation ``sigma_b``. ``None`` removes the bias (no ``"b"`` parameter);
        ``0.0`` keeps a bias parameter whose prior scale is zero at initialisation.
    parameterization
        ``"ntk"`` or ``"standard"`` (see the module docstring).

    Returns
    -------
    Layer
        Parameters ``{"W": (fan_in, out_dim), "b": (out_dim,)}``.
    """
    if not isinstance(out_dim, int) or out_dim < 1:
        raise ValueError(f"out_dim must be a positive integer, got {out_dim!r}")
    _check_positive("W_std", W_std)
    if b_std is not None and not float(b_std) >= 0.0:
        raise ValueError(f"b_std must be >= 0 or None, got {b_std!r}")
    _check_parameterization(parameterization)

    def output_shape(input_shape):
        return tuple(input_shape[:-1]) + (out_dim,)

    def init(rng_key, input_shape):
        fan_in = int(input_shape[-1])
        w_key, b_key = jax.random.split(rng_key)
        W = jax.random.normal(w_key, (fan_in, out_dim))
        if parameterization == "standard":
            W = W * (W_std / jnp.sqrt(fan_in))
        params = {"W": W}
        if b_std is not None:
            b = jax.random.normal(b_key, (out_dim,))
            params["b"] = b * b_std if parameterization == "standard" else b
        return params

    def apply(params, x):
        W = params["W"]
        if x.shape[-1] != W.shape[0]:
            raise ValueError(
                f"Dense layer expects inputs with last axis {W.shape[0]}, got shape {x.shape}"
            )
        if parameterization == "ntk":
            y = (W_std / jnp.sqrt(W.shape[0])) * (x @ W)
            if "b" in params:
                y = y + b_std * _lift(params["b"], y.ndim)
        else:
            y = x @ W
            if "b" in params:
                y = y + _lift(params["b"], y.ndim)
        return y

    kernel = _kernels.dense_kernel(W_std, b_std, parameterization, out_dim)
    return Layer(init, apply, output_shape, kernel, "dense")


def Elementwise(fn: Callable[[jax.Array], jax.Array], name: str = "elementwise", **kernel_kw):
    """Elementwise nonlinearity ``y = fn(x)`` with no parameters.

    Its NNGP/NTK transform is computed analytically where :mod:`bayesnn.nn.kernels` knows a
    closed form for ``name`` and by Gauss-Hermite quadrature otherwise.

    Parameters
    ----------
    fn
        Scalar function applied elementwise (must be ``jnp``-traceable).
    name
        Layer name, also used to look up a closed-form kernel transform.
    kernel_kw
        Extra constants of the closed form (e.g. ``alpha`` for LeakyReLU).
    """

    def init(rng_key, input_shape):
        del rng_key, input_shape
        return {}

    def apply(params, x):
        del params
        return fn(x)

    kernel = _kernels.activation_kernel(name, fn, **kernel_kw)
    return Layer(init, apply, lambda s: tuple(s), kernel, name)


def Relu() -> Layer:
    """Rectified linear unit ``max(x, 0)``."""
    return Elementwise(jax.nn.relu, "relu")


def LeakyRelu(alpha: float = 0.01) -> Layer:
    """Leaky ReLU ``max(x, 0) + alpha min(x, 0)``."""
    _check_finite("LeakyRelu", "alpha", alpha)
    return ABRelu(alpha, 1.0, name="leaky_relu")


def ABRelu(a: float, b: float, name: str = "abrelu") -> Layer:
    """Piecewise-linear unit ``a min(x, 0) + b max(x, 0)`` (neural-tangents' ``ABRelu``)."""
    _check_finite(name, "a", a)
    _check_finite(name, "b", b)
    return Elementwise(lambda x: a * jnp.minimum(x, 0.0) + b * jnp.maximum(x, 0.0), name, a=a, b=b)


def Tanh() -> Layer:
    """Hyperbolic tangent (kernel by Gauss-Hermite quadrature)."""
    return Elementwise(jnp.tanh, "tanh")


def Erf() -> Layer:
    """Error function ``erf(x)`` (closed-form arcsine kernel, Williams 1997)."""
    return Elementwise(jax.scipy.special.erf, "erf")


def Gelu(approximate: bool = False) -> Layer:
    """Gaussian error linear unit (kernel by Gauss-Hermite quadrature)."""
    return Elementwise(lambda x: jax.nn.gelu(x, approximate=approximate), "gelu")


def Sigmoid() -> Layer:
    """Logistic sigmoid (kernel by Gauss-Hermite quadrature)."""
    return Elementwise(jax.nn.sigmoid, "sigmoid")


def Sin(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Layer:
    """``a sin(b x + c)`` (kernel by the Hermite expansion; neural-tangents has a closed
    form, which the expansion matches to ~1e-12 since ``sin`` is entire)."""
    for name, v in (("a", a), ("b", b), ("c", c)):
        _check_finite("Sin", name, v)
    return Elementwise(lambda x: a * jnp.sin(b * x + c), "sin")


def Identity() -> Layer:
    """Identity map (no parameters, kernel unchanged)."""
    return Elementwise(lambda x: x, "identity")


def _norm_axes(axis, ndim: int) -> tuple[int, ...]:
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, int) or not -ndim <= a < ndim:
            raise ValueError(
                f"LayerNorm: axis {axis!r} is missing from inputs of rank {ndim} "
                "(axes count the batch axis 0, as in neural-tangents)"
            )
        out.append(a % ndim)
    if 0 in out:
        raise ValueError(f"LayerNorm: axis {axis!r} includes the batch axis 0 (not supported)")
    return tuple(sorted(set(out)))


def LayerNorm(axis=-1, eps: float = 1e-12) -> Layer:
    """Layer normalisation ``(x - mean) / sqrt(var + eps)`` over ``axis``.

    ``axis`` counts the batch axis 0 as in neural-tangents: ``-1`` is the channel axis, and
    ``(1, 2, 3)`` normalises NHWC images over positions and channels. The kernel needs the
    channel axis in ``axis`` (otherwise there is no infinite-width limit) and treats the
    channel mean as zero (neural-tangents' limit). neural-tangents' ``batch_axis`` and
    ``channel_axis`` arguments are fixed at 0 and -1 here; normalising over the batch axis is
    not supported.
    """
    if isinstance(axis, bool) or not (
        isinstance(axis, int) or (isinstance(axis, tuple | list) and len(axis) > 0)
    ):
        raise ValueError(f"LayerNorm: axis must be an int or a non-empty tuple, got {axis!r}")
    _check_positive("LayerNorm eps", eps)

    def init(rng_key, input_shape):
        del rng_key
        _norm_axes(axis, len(tuple(input_shape)) + 1)
        return {}

    def apply(params, x):
        del params
        axes = _norm_axes(axis, x.ndim)
        mean = jnp.mean(x, axis=axes, keepdims=True)
        var = jnp.var(x, axis=axes, keepdims=True)
        return (x - mean) / jnp.sqrt(eps + var)

    def kernel(k):
        ndim = 2 if k.spatial is None else 4
        axes = _norm_axes(axis, ndim)
        if ndim - 1 not in axes:
            raise ValueError(
                f"LayerNorm: axis {axis!r} must include the channel axis -1 for an "
                "infinite-width kernel"
            )
        return _spatial.layer_norm_kernel(tuple(a - 1 for a in axes if a < ndim - 1), eps)(k)

    return Layer(init, apply, lambda s: tuple(s), kernel, "layer_norm")


def FanOut(num: int) -> Layer:
    """Copy the input into ``num`` branches (a list), for :func:`parallel`."""
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ValueError(f"FanOut: num must be a positive integer, got {num!r}")

    def init(rng_key, input_shape):
        del rng_key, input_shape
        return {}

    return Layer(
        init,
        lambda params, x: [x] * num,
        lambda s: [s] * num,
        lambda k: [k] * num,
        "fan_out",
    )


def _check_branches(layer: str, items, what: str) -> list:
    if not isinstance(items, list | tuple):
        raise ValueError(f"{layer}: expects a list of branches (after FanOut), got {what}")
    return list(items)


def FanInSum() -> Layer:
    """Sum a list of branches of equal shape (the end of a residual block). The kernel is
    the sum of the branches' kernels: each branch must end in an independent Gaussian layer
    (Dense, Conv) or be the Identity of one, as in neural-tangents."""

    def output_shape(input_shapes):
        shapes = [tuple(s) for s in _check_branches("FanInSum", input_shapes, "one shape")]
        for i, s in enumerate(shapes[1:], start=1):
            if s != shapes[0]:
                raise ValueError(f"FanInSum: branch {i} has shape {s}, branch 0 has {shapes[0]}")
        return shapes[0]

    def init(rng_key, input_shapes):
        del rng_key
        output_shape(input_shapes)
        return {}

    def apply(params, xs):
        del params
        xs = _check_branches("FanInSum", xs, "one array")
        output_shape([x.shape[1:] for x in xs] if xs else [])
        for i, x in enumerate(xs[1:], start=1):
            if x.shape != xs[0].shape:
                raise ValueError(
                    f"FanInSum: branch {i} has shape {x.shape}, branch 0 has {xs[0].shape}"
                )
        return sum(xs[1:], xs[0])

    def kernel(ks):
        return _spatial.fan_in_sum_kernel(_check_branches("FanInSum", ks, "one kernel"))

    return Layer(init, apply, output_shape, kernel, "fan_in_sum")


def parallel(*layers: Layer) -> Layer:
    """Apply ``layers[i]`` to branch ``i`` of a list input (after :func:`FanOut`).

    Parameters are a dict keyed ``"<name>_<index>"`` like :func:`serial`'s.
    """
    if not layers:
        raise ValueError("parallel needs at least one layer")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"parallel: argument {i} is not a Layer: {layer!r}")
    keys = [f"{layer.name}_{i}" for i, layer in enumerate(layers)]
    n = len(layers)

    def branches(items, what):
        items = _check_branches("parallel", items, what)
        if len(items) != n:
            raise ValueError(f"parallel: {n} layers got {len(items)} branches")
        return items

    def output_shape(input_shapes):
        shapes = branches(input_shapes, "one shape")
        return [layer.output_shape(s) for layer, s in zip(layers, shapes, strict=True)]

    def init(rng_key, input_shapes):
        shapes = branches(input_shapes, "one shape")
        params = {}
        for key, layer, shape, sub in zip(
            keys, layers, shapes, jax.random.split(rng_key, n), strict=True
        ):
            p = layer.init(sub, shape)
            if jax.tree_util.tree_leaves(p):
                params[key] = p
        return params

    def apply(params, xs):
        xs = branches(xs, "one array")
        return [
            layer.apply(params.get(key, {}), x)
            for key, layer, x in zip(keys, layers, xs, strict=True)
        ]

    def kernel(ks):
        ks = branches(ks, "one kernel")
        return [layer.kernel(k) for layer, k in zip(layers, ks, strict=True)]

    def need(out):
        return _max_need([spatial_need(layer, out) for layer in layers])

    return Layer(init, apply, output_shape, kernel, "parallel", need)


def serial(*layers: Layer) -> Layer:
    """Compose layers in sequence (function composition).

    Parameters are a dict keyed ``"<name>_<index>"`` for the layers that have parameters.
    The kernel transform is the composition of the layers' transforms.
    """
    if not layers:
        raise ValueError("serial needs at least one layer")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"serial: argument {i} is not a Layer: {layer!r}")
    keys = [f"{layer.name}_{i}" for i, layer in enumerate(layers)]

    def output_shape(input_shape):
        shape = tuple(input_shape)
        for layer in layers:
            shape = layer.output_shape(shape)
        return shape

    def init(rng_key, input_shape):
        shape = tuple(input_shape)
        params = {}
        for key, layer, sub_key in zip(
            keys, layers, jax.random.split(rng_key, len(layers)), strict=True
        ):
            p = layer.init(sub_key, shape)
            if jax.tree_util.tree_leaves(p):
                params[key] = p
            shape = layer.output_shape(shape)
        return params

    def apply(params, x):
        for key, layer in zip(keys, layers, strict=True):
            x = layer.apply(params.get(key, {}), x)
        return x

    def kernel(k):
        for layer in layers:
            k = layer.kernel(k)
        return k

    def need(out):
        for layer in reversed(layers):
            out = spatial_need(layer, out)
        return out

    return Layer(init, apply, output_shape, kernel, "serial", need)
