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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bayesnn.nn import kernels as _kernels

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
    "Identity",
    "Elementwise",
    "serial",
    "PARAMETERIZATIONS",
]

PARAMETERIZATIONS = ("ntk", "standard")


class Layer(NamedTuple):
    """A network layer: finite network and infinite-width kernel transform.

    Attributes
    ----------
    init
        ``init(rng_key, input_shape) -> params``. ``input_shape`` is the shape of one input
        (without the batch axis), e.g. ``(d,)``.
    apply
        ``apply(params, x) -> y`` for ``x`` of shape ``(..., *input_shape)``.
    output_shape
        ``output_shape(input_shape) -> shape`` of one output.
    kernel
        ``kernel(k: bayesnn.nn.kernels.Kernel) -> Kernel``, the analytic NNGP/NTK transform of
        the layer in the infinite-width limit (filled by :mod:`bayesnn.nn.kernels`).
    name
        Short netCDF-safe name used to label the layer's parameters.
    """

    init: Callable[[jax.Array, tuple[int, ...]], Any]
    apply: Callable[[Any, jax.Array], jax.Array]
    output_shape: Callable[[tuple[int, ...]], tuple[int, ...]]
    kernel: Callable[[Any], Any]
    name: str


def _check_positive(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not float(value) > 0.0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _check_parameterization(parameterization: str) -> None:
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(
            f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}"
        )


def _lift(b, ndim):
    """Explicitly broadcast a bias over leading axes (no implicit rank promotion)."""
    return jnp.reshape(b, (1,) * (ndim - 1) + b.shape)


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
    return ABRelu(alpha, 1.0, name="leaky_relu")


def ABRelu(a: float, b: float, name: str = "abrelu") -> Layer:
    """Piecewise-linear unit ``a min(x, 0) + b max(x, 0)`` (neural-tangents' ``ABRelu``)."""
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


def Identity() -> Layer:
    """Identity map (no parameters, kernel unchanged)."""
    return Elementwise(lambda x: x, "identity")


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

    return Layer(init, apply, output_shape, kernel, "serial")
