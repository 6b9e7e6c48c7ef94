"""Observation models ``p(y | f)`` for network outputs ``f``.

Each likelihood has its own (possibly empty) parameter dict, so a learned noise scale is
sampled with the network weights:

* ``init_params() -> dict`` (``{}`` when there is nothing to learn);
* ``log_prior(lik_params) -> scalar``;
* ``log_prob(lik_params, f, y) -> per-example log-likelihood`` (shape ``f.shape[:-1]``);
* ``predictive_log_prob`` of a mixture over posterior samples lives in :mod:`bayesnn.metrics`.

Densities come from numpyro.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

__all__ = ["Gaussian", "Categorical", "Bernoulli"]


def _dataclass(cls):
    return dataclasses.dataclass(frozen=True)(cls)


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
        if self.noise_std is not None and not (float(self.noise_std) > 0):
            raise ValueError(f"noise_std must be positive or None, got {self.noise_std!r}")
        if not float(self.log_noise_scale) > 0:
            raise ValueError(f"log_noise_scale must be positive, got {self.log_noise_scale!r}")

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
        if f.shape != y.shape:
            raise ValueError(f"outputs f {f.shape} and targets y {y.shape} differ in shape")
        return jnp.sum(dist.Normal(f, self.noise(lik_params)).log_prob(y), axis=-1)


@_dataclass
class Categorical:
    """``y ~ Categorical(softmax(f))``; ``y`` holds integer class labels."""

    def init_params(self) -> dict:
        """No parameters."""
        return {}

    def log_prior(self, lik_params) -> jax.Array:
        """Zero."""
        return jnp.zeros(())

    def log_prob(self, lik_params, f, y) -> jax.Array:
        """Per-example ``log softmax(f)[y]``."""
        y = jnp.reshape(y, f.shape[:-1])
        return dist.Categorical(logits=f).log_prob(y)


@_dataclass
class Bernoulli:
    """``y ~ Bernoulli(sigmoid(f))`` for one output unit; ``y`` in {0, 1}."""

    def init_params(self) -> dict:
        """No parameters."""
        return {}

    def log_prior(self, lik_params) -> jax.Array:
        """Zero."""
        return jnp.zeros(())

    def log_prob(self, lik_params, f, y) -> jax.Array:
        """Per-example Bernoulli log mass."""
        if f.shape[-1] != 1:
            raise ValueError(f"Bernoulli likelihood needs one output unit, got f {f.shape}")
        y = jnp.reshape(y, f.shape[:-1]).astype(f.dtype)
        return dist.Bernoulli(logits=f[..., 0]).log_prob(y)
