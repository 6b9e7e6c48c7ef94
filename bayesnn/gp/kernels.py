"""Stationary and linear covariance functions with fixed values or log-normal hyperpriors.

Kernels are small frozen dataclass pytrees whose hyperparameters are leaves, so a batch of
kernels (leaves with a leading axis) is one ``jax.vmap`` away. A hyperparameter is either a
positive number/array or a :class:`LogNormal` hyperprior; :func:`sample_kernel` replaces
every hyperprior by one draw. We write the kernels ourselves rather than depend on tinygp:
they are a few lines each, and we need hyperprior draws vectorised over a batch of kernels.

Notation: ``x1`` of shape ``(n1, d)``, ``x2`` of shape ``(n2, d)``, ``r^2 = sum_d
((x1_d - x2_d) / l_d)^2`` with a scalar or ARD (``(d,)``) lengthscale ``l`` (Rasmussen &
Williams 2006, ch. 4). Stationary kernels compute the differences ``x1_d - x2_d`` directly
(never ``|x1|^2 + |x2|^2 - 2 x1.x2``), so they are translation invariant in float32 too.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "LogNormal",
    "Kernel",
    "RBF",
    "Matern32",
    "Matern52",
    "Periodic",
    "Linear",
    "Sum",
    "Product",
    "sample_kernel",
    "has_hyperpriors",
]


def _register(cls, data_fields, meta_fields=()):
    return jax.tree_util.register_dataclass(
        dataclasses.dataclass(frozen=True)(cls),
        data_fields=list(data_fields),
        meta_fields=list(meta_fields),
    )


def _float():
    return jnp.result_type(float)


def _check_hyper(name, value):
    """Validate a concrete hyperparameter (positive, finite); hyperpriors/tracers pass."""
    if isinstance(value, LogNormal | jax.core.Tracer) or value is None:
        return value
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):  # tree sentinels during pytree manipulation
        return value
    if not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return value


class LogNormal:
    """Log-normal hyperprior: ``log theta ~ N(loc, scale^2)``.

    Parameters
    ----------
    loc, scale
        Mean and standard deviation of ``log theta`` (scalars or arrays; an array ``loc``
        gives an ARD lengthscale). Note: ``LogNormal(mu, var)`` in github.com/tranbahien/you-need-a-good-prior takes
        the variance; pass ``scale=sqrt(var)``.
    """

    loc: jax.Array
    scale: jax.Array

    def __post_init__(self):
        _check_hyper("LogNormal scale", self.scale)
        if isinstance(self.loc, int | float) or (
            hasattr(self.loc, "shape") and not isinstance(self.loc, jax.core.Tracer)
        ):
            if not np.all(np.isfinite(np.asarray(self.loc, dtype=np.float64))):
                raise ValueError(f"LogNormal loc must be finite, got {self.loc!r}")

    def sample(self, rng_key):
        """One draw ``exp(loc + scale * eps)``."""
        loc = jnp.asarray(self.loc, _float())
        scale = jnp.asarray(self.scale, _float())
        shape = jnp.broadcast_shapes(loc.shape, scale.shape)
        return jnp.exp(loc + scale * jax.random.normal(rng_key, shape))


LogNormal = _register(LogNormal, ["loc", "scale"])


def _check_x(x, name):
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got {x.shape}")
    return x


class Kernel:
    """Base class: ``k(x1, x2) -> (n1, n2)`` covariance matrix; supports ``+`` and ``*``."""

    def __call__(self, x1, x2=None):
        x1 = _check_x(x1, "x1")
        x2 = x1 if x2 is None else _check_x(x2, "x2")
        if x1.shape[-1] != x2.shape[-1]:
            raise ValueError(f"x1 and x2 differ in dimension: {x1.shape} vs {x2.shape}")
        if has_hyperpriors(self):
            raise ValueError("kernel has LogNormal hyperpriors: call sample_kernel first")
        return self.evaluate(x1, x2)

    def evaluate(self, x1, x2):  # pragma: no cover - abstract
        """Covariance matrix for validated inputs."""
        raise NotImplementedError

    def diag(self, x):
        """Prior variances ``k(x_i, x_i)``, shape ``(n,)``."""
        x = _check_x(x, "x")
        return jax.vmap(lambda xi: self.evaluate(xi[None], xi[None])[0, 0])(x)

    def __add__(self, other):
        return Sum(self, other)

    def __mul__(self, other):
        return Product(self, other)


def _scaled_sq_dist(x1, x2, lengthscale):
    ls = jnp.asarray(lengthscale, x1.dtype)
    if ls.ndim == 1 and ls.shape[0] not in (1, x1.shape[-1]):
        raise ValueError(
            f"ARD lengthscale has {ls.shape[0]} entries but inputs have dimension {x1.shape[-1]}"
        )
    # Differences first: |a|^2 + |b|^2 - 2 a.b cancels catastrophically in float32 for inputs
    # far from the origin (offset 1000: RBF 0.61 instead of 0.71).
    d = x1.shape[-1]
    if d <= _PLANES_UP_TO:
        # Few input dimensions: sum d planes (n1, n2) of scaled differences. XLA:CPU vectorises
        # each plane; a reduction over a short trailing axis it vectorises poorly.
        ls = jnp.broadcast_to(ls.reshape(-1), (d,))
        x1t, x2t = x1.T, x2.T
        out = ((x1t[0][:, None] - x2t[0][None, :]) / ls[0]) ** 2
        for i in range(1, d):
            out = out + ((x1t[i][:, None] - x2t[i][None, :]) / ls[i]) ** 2
        return out
    # XLA fuses the subtraction, square and sum: the (n1, n2, d) intermediate is not stored.
    ls = ls.reshape(1, 1, -1) if ls.ndim == 1 else ls
    return jnp.sum(((x1[:, None, :] - x2[None, :, :]) / ls) ** 2, -1)


_PLANES_UP_TO = 32  # input dimensions summed plane by plane in ``_scaled_sq_dist``


def _safe_sqrt(d2):
    return jnp.sqrt(jnp.maximum(d2, 1e-30)) * (d2 > 0)


class RBF(Kernel):
    """Squared exponential ``k = s^2 exp(-r^2 / 2)`` (ARD with a ``(d,)`` lengthscale).

    Parameters
    ----------
    variance
        Signal variance ``s^2`` (or a :class:`LogNormal` hyperprior).
    lengthscale
        Scalar or ``(d,)`` lengthscale ``l`` (or a :class:`LogNormal` hyperprior).
    """

    variance: jax.Array = 1.0
    lengthscale: jax.Array = 1.0

    def __post_init__(self):
        _check_hyper("variance", self.variance)
        _check_hyper("lengthscale", self.lengthscale)

    def evaluate(self, x1, x2):
        """``s^2 exp(-r^2/2)``."""
        return self.variance * jnp.exp(-0.5 * _scaled_sq_dist(x1, x2, self.lengthscale))


RBF = _register(RBF, ["variance", "lengthscale"])


class Matern32(Kernel):
    """Matern 3/2: ``k = s^2 (1 + sqrt(3) r) exp(-sqrt(3) r)``.

    Parameters
    ----------
    variance, lengthscale
        As for :class:`RBF`.
    """

    variance: jax.Array = 1.0
    lengthscale: jax.Array = 1.0

    def __post_init__(self):
        _check_hyper("variance", self.variance)
        _check_hyper("lengthscale", self.lengthscale)

    def evaluate(self, x1, x2):
        """Matern 3/2 covariance."""
        r = jnp.sqrt(3.0) * _safe_sqrt(_scaled_sq_dist(x1, x2, self.lengthscale))
        return self.variance * (1.0 + r) * jnp.exp(-r)


Matern32 = _register(Matern32, ["variance", "lengthscale"])


class Matern52(Kernel):
    """Matern 5/2: ``k = s^2 (1 + sqrt(5) r + 5 r^2 / 3) exp(-sqrt(5) r)``.

    Parameters
    ----------
    variance, lengthscale
        As for :class:`RBF`.
    """

    variance: jax.Array = 1.0
    lengthscale: jax.Array = 1.0

    def __post_init__(self):
        _check_hyper("variance", self.variance)
        _check_hyper("lengthscale", self.lengthscale)

    def evaluate(self, x1, x2):
        """Matern 5/2 covariance."""
        d2 = _scaled_sq_dist(x1, x2, self.lengthscale)
        r = jnp.sqrt(5.0) * _safe_sqrt(d2)
        return self.variance * (1.0 + r + 5.0 * d2 / 3.0) * jnp.exp(-r)


Matern52 = _register(Matern52, ["variance", "lengthscale"])


class Periodic(Kernel):
    """Periodic (MacKay 1998): ``k = s^2 exp(-2 sum_d sin^2(pi |x1_d - x2_d| / p) / l_d^2)``.

    Parameters
    ----------
    variance, lengthscale
        As for :class:`RBF`.
    period
        Period ``p`` (or a :class:`LogNormal` hyperprior).
    """

    variance: jax.Array = 1.0
    lengthscale: jax.Array = 1.0
    period: jax.Array = 1.0

    def __post_init__(self):
        _check_hyper("variance", self.variance)
        _check_hyper("lengthscale", self.lengthscale)
        _check_hyper("period", self.period)

    def evaluate(self, x1, x2):
        """Periodic covariance."""
        diff = x1[:, None, :] - x2[None, :, :]
        ls = jnp.asarray(self.lengthscale)
        ls = ls.reshape(1, 1, -1) if ls.ndim == 1 else ls
        s = jnp.sin(jnp.pi * diff / self.period) / ls
        return self.variance * jnp.exp(-2.0 * jnp.sum(s**2, -1))


Periodic = _register(Periodic, ["variance", "lengthscale", "period"])


class Linear(Kernel):
    """Linear (dot-product) kernel ``k = s^2 x1 . x2 + c`` (not stationary).

    Parameters
    ----------
    variance
        Slope variance ``s^2``.
    bias
        Offset variance ``c >= 0`` (a plain number; use ``0.0`` for none).
    """

    variance: jax.Array = 1.0
    bias: jax.Array = 0.0

    def __post_init__(self):
        _check_hyper("variance", self.variance)
        if isinstance(self.bias, int | float | np.ndarray) or (
            hasattr(self.bias, "shape") and not isinstance(self.bias, jax.core.Tracer)
        ):
            if not np.all(np.asarray(self.bias, dtype=np.float64) >= 0.0):
                raise ValueError(f"bias must be >= 0, got {self.bias!r}")

    def evaluate(self, x1, x2):
        """``s^2 x1 x2^T + c``."""
        return self.variance * (x1 @ x2.T) + self.bias


Linear = _register(Linear, ["variance", "bias"])


class Sum(Kernel):
    """Sum of two kernels ``k1 + k2`` (also ``k1 + k2`` with the operator)."""

    k1: Kernel
    k2: Kernel

    def __post_init__(self):
        for name in ("k1", "k2"):
            if not isinstance(getattr(self, name), Kernel):
                raise ValueError(f"{name} must be a Kernel, got {getattr(self, name)!r}")

    def evaluate(self, x1, x2):
        """``k1(x1, x2) + k2(x1, x2)``."""
        return self.k1.evaluate(x1, x2) + self.k2.evaluate(x1, x2)


Sum = _register(Sum, ["k1", "k2"])


class Product(Kernel):
    """Elementwise product of two kernels ``k1 * k2``."""

    k1: Kernel
    k2: Kernel

    def __post_init__(self):
        for name in ("k1", "k2"):
            if not isinstance(getattr(self, name), Kernel):
                raise ValueError(f"{name} must be a Kernel, got {getattr(self, name)!r}")

    def evaluate(self, x1, x2):
        """``k1(x1, x2) * k2(x1, x2)``."""
        return self.k1.evaluate(x1, x2) * self.k2.evaluate(x1, x2)


Product = _register(Product, ["k1", "k2"])


def _is_prior(x):
    return isinstance(x, LogNormal)


def has_hyperpriors(kernel) -> bool:
    """Whether any hyperparameter of ``kernel`` is a :class:`LogNormal` hyperprior."""
    leaves = jax.tree_util.tree_leaves(kernel, is_leaf=_is_prior)
    return any(_is_prior(leaf) for leaf in leaves)


def sample_kernel(rng_key, kernel):
    """Replace every :class:`LogNormal` hyperprior in ``kernel`` by one draw.

    ``jax.vmap(sample_kernel, (0, None))(keys, kernel)`` gives a batch of kernels (leading
    axis on every leaf) for vectorised hyperprior sampling.
    """
    leaves, treedef = jax.tree_util.tree_flatten(kernel, is_leaf=_is_prior)
    keys = jax.random.split(rng_key, max(len(leaves), 1))
    new = [
        leaf.sample(k) if _is_prior(leaf) else jnp.asarray(leaf, _float())
        for leaf, k in zip(leaves, keys, strict=False)
    ]
    return jax.tree_util.tree_unflatten(treedef, new)
