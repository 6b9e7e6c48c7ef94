"""The :class:`Layer` object shared by all architectures, and argument checks."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Layer", "PARAMETERIZATIONS", "SPATIAL_NEEDS", "spatial_need"]

PARAMETERIZATIONS = ("ntk", "standard")
SPATIAL_NEEDS = ("diag", "full")  # ordered: "full" satisfies every need


class Layer(NamedTuple):
    """A network layer: finite network and infinite-width kernel transform.

    Attributes
    ----------
    init
        ``init(rng_key, input_shape) -> params``. ``input_shape`` is the shape of one input
        (without the batch axis), e.g. ``(d,)`` or ``(H, W, C)``; a list of shapes after
        :func:`~bayesnn.nn.stax.FanOut`.
    apply
        ``apply(params, x) -> y`` for ``x`` of shape ``(batch, *input_shape)`` (dense layers
        and activations also accept several leading axes).
    output_shape
        ``output_shape(input_shape) -> shape`` of one output.
    kernel
        ``kernel(k: bayesnn.nn.kernels.Kernel) -> Kernel``, the analytic NNGP/NTK transform of
        the layer in the infinite-width limit (a list of kernels between ``FanOut`` and
        ``FanInSum``).
    name
        Short netCDF-safe name used to label the layer's parameters.
    spatial_need
        ``spatial_need(out) -> in``: which spatial covariances (``"diag"``: per position;
        ``"full"``: all position pairs) the layer needs of its input when its output must
        carry ``out``. ``None`` (default): the same as its output (elementwise and
        channel-wise layers). :func:`bayesnn.nn.kernels.kernel_fn` runs it backwards over the
        architecture to compute only what the readout needs.
    """

    init: Callable[[jax.Array, Any], Any]
    apply: Callable[[Any, Any], Any]
    output_shape: Callable[[Any], Any]
    kernel: Callable[[Any], Any]
    name: str
    spatial_need: Callable[[str], str] | None = None


def spatial_need(layer: Layer, out: str) -> str:
    """The spatial covariances ``layer`` needs of its input to give ``out`` (see
    :class:`Layer`)."""
    fn = getattr(layer, "spatial_need", None)
    return out if fn is None else fn(out)


def _max_need(needs) -> str:
    return "full" if "full" in needs else "diag"


def _check_positive(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not float(value) > 0.0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _check_finite(layer: str, name: str, value) -> None:
    try:
        ok = math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{layer}: {name} must be a finite number, got {value!r}")


def _check_parameterization(parameterization: str) -> None:
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(
            f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}"
        )


def _lift(b, ndim):
    """Explicitly broadcast a bias over leading axes (no implicit rank promotion)."""
    return jnp.reshape(b, (1,) * (ndim - 1) + b.shape)


def _int_pair(layer: str, name: str, value, default=None) -> tuple[int, int]:
    """A pair of positive integers (a 2-D window, filter or stride)."""
    if value is None and default is not None:
        return default
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair
    ):
        raise ValueError(f"{layer}: {name} must be two positive integers, got {value!r}")
    return pair


def _check_padding(layer: str, padding) -> str:
    if padding not in ("VALID", "SAME"):
        raise ValueError(f"{layer}: padding must be 'VALID' or 'SAME', got {padding!r}")
    return padding
