"""Observation models ``p(y | f)`` for network outputs ``f``.

Each likelihood has its own (possibly empty) parameter dict, so a learned noise scale is
sampled with the network weights:

* ``init_params() -> dict`` (``{}`` when there is nothing to learn);
* ``log_prior(lik_params) -> scalar``;
* ``log_prob(lik_params, f, y) -> per-example log-likelihood`` (shape ``f.shape[:-1]``);
* ``sample(rng_key, lik_params, f) -> replicated targets`` (posterior predictive checks);
* ``predictive_log_prob`` of a mixture over posterior samples lives in :mod:`bayesnn.metrics`.

Targets are validated against the likelihood's support (:meth:`check_targets`): at trace time
for what the dtype decides (integer class labels), and on concrete values wherever they are
seen outside a trace (``log_prob`` called eagerly, :meth:`BayesianNeuralNet.check_data
<bayesnn.model.BayesianNeuralNet.check_data>` before sampling), so labels outside the support
raise a ``ValueError`` naming ``y`` instead of producing a NaN log density.

Densities come from numpyro.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

__all__ = ["Gaussian", "Categorical", "Bernoulli"]


def _dataclass(cls):
    return dataclasses.dataclass(frozen=True)(cls)


def _concrete(y):
    """``y`` as a numpy array, or ``None`` when it is traced (values unknown)."""
    if isinstance(y, jax.core.Tracer):
        return None
    return np.asarray(y)


def _as_arrays(f, y, name="y"):
    """Outputs and targets as arrays (Python lists accepted), with a clear error otherwise."""
    try:
        f = jnp.asarray(f)
        y = jnp.asarray(y)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"f and {name} must be arrays (or nested lists of numbers): {err}"
        ) from None
    if not jnp.issubdtype(f.dtype, jnp.floating):
        f = f.astype(jnp.float32)
    return f, y


def _check_finite_param(name, value):
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


@_dataclass
class Gaussian:
    """``y ~ N(f, sigma^2)`` with a fixed or learned noise scale.

    Parameters
    ----------
    noise_std
        Fixed noise standard deviation (positive). ``None`` learns it: the parameter is
        ``log_noise_std`` with prior ``N(log_noise_loc, log_noise_scale^2)``.
    log_noise_loc, log_noise_scale
        Prior on the learned log standard deviation.
    """

    noise_std: float | None = 1.0
    log_noise_loc: float = -1.0
    log_noise_scale: float = 1.0

    def __post_init__(self):
        if self.noise_std is not None and not (
            math.isfinite(float(self.noise_std)) and float(self.noise_std) > 0
        ):
            raise ValueError(
                f"noise_std must be positive and finite or None, got {self.noise_std!r}"
            )
        _check_finite_param("log_noise_loc", self.log_noise_loc)
        scale = _check_finite_param("log_noise_scale", self.log_noise_scale)
        if not scale > 0:
            raise ValueError(f"log_noise_scale must be positive, got {self.log_noise_scale!r}")

    def check_targets(self, y, num_outputs=None, name="y"):
        """Validate regression targets: real, finite, ``(..., num_outputs)`` if given."""
        y = jnp.asarray(y)
        if not jnp.issubdtype(y.dtype, jnp.floating) and not jnp.issubdtype(y.dtype, jnp.integer):
            raise TypeError(
                f"{name} must be real numbers for a Gaussian likelihood, got {y.dtype}"
            )
        if num_outputs is not None and (y.ndim < 1 or y.shape[-1] != num_outputs):
            raise ValueError(
                f"{name} must have a last axis of size {num_outputs} (the network outputs), "
                f"got shape {y.shape}"
            )
        yc = _concrete(y)
        if yc is not None and not np.all(np.isfinite(yc)):
            raise ValueError(f"{name} contains NaN or inf")
        return y

    def init_params(self) -> dict:
        """``{}`` for fixed noise, else ``{"log_noise_std": log_noise_loc}``."""
        if self.noise_std is None:
            return {"log_noise_std": jnp.asarray(self.log_noise_loc, jnp.float32)}
        return {}

    def noise(self, lik_params) -> jax.Array:
        """The noise standard deviation."""
        if self.noise_std is None:
            return jnp.exp(lik_params["log_noise_std"])
        return jnp.asarray(self.noise_std, jnp.float32)

    def log_prior(self, lik_params) -> jax.Array:
        """Prior log density of the learned noise (0 when fixed)."""
        if self.noise_std is None:
            return dist.Normal(self.log_noise_loc, self.log_noise_scale).log_prob(
                lik_params["log_noise_std"]
            )
        return jnp.zeros(())

    def log_prob(self, lik_params, f, y) -> jax.Array:
        """Per-example ``log N(y | f, sigma^2)`` summed over output dimensions."""
        f, y = _as_arrays(f, y)
        y = self.check_targets(y)
        if f.shape != y.shape:
            raise ValueError(f"outputs f {f.shape} and targets y {y.shape} differ in shape")
        return jnp.sum(dist.Normal(f, self.noise(lik_params)).log_prob(y), axis=-1)

    def sample(self, rng_key, lik_params, f) -> jax.Array:
        """Replicated targets ``y ~ N(f, sigma^2)``, shape of ``f``."""
        return dist.Normal(f, self.noise(lik_params)).sample(rng_key)


@_dataclass
class Categorical:
    """``y ~ Categorical(softmax(f))``; ``y`` holds integer class labels in ``[0, K)``."""

    def check_targets(self, y, num_outputs=None, name="y"):
        """Validate class labels: an integer dtype (at trace time) and, for concrete labels,
        values in ``[0, num_outputs)`` (``num_outputs`` = K, the number of logits)."""
        y = jnp.asarray(y)
        if not jnp.issubdtype(y.dtype, jnp.integer):
            raise TypeError(
                f"{name} must hold integer class labels for a Categorical likelihood, got "
                f"dtype {y.dtype} (cast with y.astype(int) if the values are whole numbers)"
            )
        yc = _concrete(y)
        if yc is not None and yc.size:
            lo, hi = int(yc.min()), int(yc.max())
            if lo < 0 or (num_outputs is not None and hi >= num_outputs):
                k = "K" if num_outputs is None else str(num_outputs)
                raise ValueError(f"{name} holds class labels outside [0, {k}): min {lo}, max {hi}")
        return y

    def init_params(self) -> dict:
        """No parameters."""
        return {}

    def log_prior(self, lik_params) -> jax.Array:
        """Zero."""
        return jnp.zeros(())

    def log_prob(self, lik_params, f, y) -> jax.Array:
        """Per-example ``log softmax(f)[y]``."""
        f, y = _as_arrays(f, y)
        y = self.check_targets(y, f.shape[-1])
        if y.size != math.prod(f.shape[:-1]):
            raise ValueError(f"labels y {y.shape} do not match outputs f {f.shape}")
        y = jnp.reshape(y, f.shape[:-1])
        return dist.Categorical(logits=f).log_prob(y)

    def sample(self, rng_key, lik_params, f) -> jax.Array:
        """Replicated labels ``y ~ Categorical(softmax(f))``, shape ``f.shape[:-1]``."""
        return dist.Categorical(logits=f).sample(rng_key)


@_dataclass
class Bernoulli:
    """``y ~ Bernoulli(sigmoid(f))`` for one output unit; ``y`` in {0, 1}."""

    def check_targets(self, y, num_outputs=None, name="y"):
        """Validate binary labels: numbers (int, float or bool) with concrete values in {0, 1}."""
        y = jnp.asarray(y)
        if not (
            jnp.issubdtype(y.dtype, jnp.number) or jnp.issubdtype(y.dtype, jnp.bool_)
        ) or jnp.issubdtype(y.dtype, jnp.complexfloating):
            raise TypeError(f"{name} must hold 0/1 labels, got dtype {y.dtype}")
        if num_outputs is not None and num_outputs != 1:
            raise ValueError(f"Bernoulli likelihood needs one output unit, got {num_outputs}")
        yc = _concrete(y)
        if yc is not None and yc.size and not np.all((yc == 0) | (yc == 1)):
            bad = yc[(yc != 0) & (yc != 1)].ravel()[:3]
            raise ValueError(f"{name} must hold labels in {{0, 1}}, found {bad.tolist()}")
        return y

    def init_params(self) -> dict:
        """No parameters."""
        return {}

    def log_prior(self, lik_params) -> jax.Array:
        """Zero."""
        return jnp.zeros(())

    def log_prob(self, lik_params, f, y) -> jax.Array:
        """Per-example Bernoulli log mass."""
        f, y = _as_arrays(f, y)
        if f.shape[-1] != 1:
            raise ValueError(f"Bernoulli likelihood needs one output unit, got f {f.shape}")
        y = self.check_targets(y)
        if y.size != math.prod(f.shape[:-1]):
            raise ValueError(f"labels y {y.shape} do not match outputs f {f.shape}")
        y = jnp.reshape(y, f.shape[:-1]).astype(f.dtype)
        return dist.Bernoulli(logits=f[..., 0]).log_prob(y)

    def sample(self, rng_key, lik_params, f) -> jax.Array:
        """Replicated labels ``y ~ Bernoulli(sigmoid(f))`` in {0, 1}, shape ``f.shape[:-1]``."""
        if f.shape[-1] != 1:
            raise ValueError(f"Bernoulli likelihood needs one output unit, got f {f.shape}")
        return dist.Bernoulli(logits=f[..., 0]).sample(rng_key)
