"""Measurement-set samplers: where the BNN and GP function values are compared.

A :class:`MeasurementSampler` draws a set ``X_t`` of ``num_points`` inputs (``(n, d)``, or
``(n, H, W, C)`` images for a convolutional network) per prior iteration; the critic sees the
function values at ``X_t``, so ``num_points`` is fixed. :func:`training_inputs`,
:func:`classification_minibatch` and :func:`fixed_points` accept NHWC images as they are.
The samplers of Tran et al. (2022): a fixed grid (1-D), training inputs, uniform in a box,
their 70%/30% mixture (UCI), and minibatches of training inputs (classification).

Samplers are pure JAX (``sample(rng_key)`` traceable under ``jit``). Unlike the authors'
code, the default box spans the training inputs only; pass ``box=`` explicitly to include
unlabelled test inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "MeasurementSampler",
    "grid",
    "fixed_points",
    "training_inputs",
    "uniform_box",
    "mixture",
    "classification_minibatch",
]


class MeasurementSampler(NamedTuple):
    """A measurement-set sampler.

    Attributes
    ----------
    sample
        ``sample(rng_key) -> X`` of shape ``(num_points, *input_shape)``.
    num_points, dim
        Size of every measurement set and input dimension (the number of pixels times
        channels for images).
    name
        Short description.
    shape
        Shape of one input, e.g. ``(H, W, C)`` for NHWC images; ``None`` (vectors) means
        ``(dim,)``. Read it through :attr:`input_shape`.
    """

    sample: Callable[[jax.Array], jax.Array]
    num_points: int
    dim: int
    name: str
    shape: tuple | None = None

    @property
    def input_shape(self) -> tuple:
        """Shape of one measurement point: ``shape``, or ``(dim,)`` for vectors."""
        return (self.dim,) if self.shape is None else tuple(self.shape)


def _as_inputs(x, name, images=False):
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    ok = x.ndim == 2 or (images and x.ndim == 4)
    if not ok or x.shape[0] < 1 or 0 in x.shape:
        want = "(n, d) or NHWC images (n, H, W, C)" if images else "(n, d)"
        raise ValueError(f"{name} must have shape {want}, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _shape_of(x):
    """``(dim, shape)`` of one input: ``shape`` is ``None`` for vectors."""
    return int(np.prod(x.shape[1:])), (tuple(x.shape[1:]) if x.ndim > 2 else None)


def _check_n(num_points, limit=None, what="num_points"):
    if not isinstance(num_points, int | np.integer) or num_points < 1:
        raise ValueError(f"{what} must be a positive int, got {num_points!r}")
    if limit is not None and num_points > limit:
        raise ValueError(f"{what}={num_points} exceeds the {limit} available training inputs")
    return int(num_points)


def fixed_points(x) -> MeasurementSampler:
    """The same points ``x`` (``(n, d)`` or NHWC images) every iteration."""
    x = _as_inputs(x, "x", images=True)
    dim, shape = _shape_of(x)
    x = jnp.asarray(x)
    return MeasurementSampler(lambda rng_key: x, x.shape[0], dim, "fixed", shape)


def grid(lower: float, upper: float, num_points: int) -> MeasurementSampler:
    """Equally spaced 1-D grid on ``[lower, upper]`` (the 1-D setting: 200 points on [-6, 6])."""
    num_points = _check_n(num_points)
    if not (np.isfinite(lower) and np.isfinite(upper) and upper > lower):
        raise ValueError(f"need finite lower < upper, got {lower}, {upper}")
    return fixed_points(np.linspace(lower, upper, num_points)[:, None])


def _subset(x, n):
    def sample(rng_key):
        idx = jax.random.choice(rng_key, x.shape[0], (n,), replace=False)
        return x[idx]

    return sample


def training_inputs(x_train, num_points: int) -> MeasurementSampler:
    """``num_points`` training inputs (``(N, d)`` or NHWC images) drawn without replacement
    each iteration."""
    x = _as_inputs(x_train, "x_train", images=True)
    n = _check_n(num_points, x.shape[0])
    dim, shape = _shape_of(x)
    return MeasurementSampler(_subset(jnp.asarray(x), n), n, dim, "training inputs", shape)


def uniform_box(lower, upper, num_points: int) -> MeasurementSampler:
    """``num_points`` inputs uniform in the box ``[lower, upper]`` (arrays of shape ``(d,)``)."""
    lo = np.atleast_1d(np.asarray(lower, np.float32))
    hi = np.atleast_1d(np.asarray(upper, np.float32))
    if lo.shape != hi.shape or lo.ndim != 1:
        raise ValueError(f"lower and upper must be (d,) arrays, got {lo.shape}, {hi.shape}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi >= lo)):
        raise ValueError("need finite lower <= upper")
    n = _check_n(num_points)
    lo_j, hi_j = jnp.asarray(lo), jnp.asarray(hi)

    def sample(rng_key):
        return jax.random.uniform(rng_key, (n, lo.shape[0]), minval=lo_j, maxval=hi_j)

    return MeasurementSampler(sample, n, lo.shape[0], "uniform box")


def mixture(x_train, num_points: int = 100, train_fraction: float = 0.7, box=None):
    """The UCI measurement set of Tran et al. (2022): training inputs mixed with box draws.

    ``round(train_fraction * num_points)`` training inputs (without replacement) and the rest
    uniform in ``box = (lower, upper)``; the default box is the training inputs' bounding box
    (the authors' code uses train and test inputs: pass that box explicitly to reproduce it).
    """
    x = _as_inputs(x_train, "x_train")
    n = _check_n(num_points)
    if not 0.0 <= train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in [0, 1], got {train_fraction}")
    n_train = int(round(train_fraction * n))
    _check_n(max(n_train, 1), x.shape[0], "train_fraction * num_points")
    if box is None:
        box = (x.min(0), x.max(0))
    lo, hi = (np.atleast_1d(np.asarray(b, np.float32)) for b in box)
    if lo.shape != (x.shape[1],) or hi.shape != (x.shape[1],):
        raise ValueError(f"box bounds must have shape ({x.shape[1]},), got {lo.shape}, {hi.shape}")
    take = _subset(jnp.asarray(x), n_train) if n_train else None
    uni = uniform_box(lo, hi, n - n_train).sample if n > n_train else None

    def sample(rng_key):
        k1, k2 = jax.random.split(rng_key)
        parts = []
        if take is not None:
            parts.append(take(k1))
        if uni is not None:
            parts.append(uni(k2))
        return jnp.concatenate(parts, 0)

    return MeasurementSampler(sample, n, x.shape[1], f"mixture {train_fraction:.0%} train")


def classification_minibatch(x_train, batch_size: int = 256) -> MeasurementSampler:
    """A random minibatch of ``batch_size`` training inputs (classification setting)."""
    s = training_inputs(x_train, batch_size)
    return s._replace(name="classification minibatch")
