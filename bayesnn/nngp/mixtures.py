"""General scale mixtures of NNGPs: any prior on the last-layer variance ``sigma^2``.

For a prior ``H`` on ``sigma^2`` without conjugacy (Burr XII, log-normal, half-Cauchy on
``sigma``, any positive log-density) the posterior over ``sigma^2`` is one-dimensional.
With one Cholesky of ``K = Kbar + eta I`` (``q = tr(Y^T K^{-1} Y)``, ``log|K|``), each
``sigma^2`` costs O(1):

.. math::

    \\log p(Y \\mid \\sigma^2) = -\\tfrac{nC}{2}\\log(2\\pi\\sigma^2)
    - \\tfrac{C}{2}\\log|K| - \\tfrac{q}{2\\sigma^2}.

Importance sampling (Lee et al., ICLR 2022, section 3) draws
``sigma_s^2`` from a proposal and weights them by prior x likelihood / proposal; the
predictive is the mixture ``sum_s w_s N(mu*, sigma_s^2 (Sigma* + eta))``. The authors' code
proposes from the prior (tiny ESS for large n); the default here is a Student-t proposal in
``log sigma^2`` centred at the posterior mode with the Laplace curvature, and the effective
sample size is reported. A finite discrete prior ``sum_k pi_k delta_{s_k}`` is handled
exactly (no sampling).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions import constraints

from bayesnn.nngp._common import to_default_float
from bayesnn.nngp.gp import GPPosterior, latent_moments

__all__ = [
    "BurrXII",
    "DiscreteScalePrior",
    "ScaleMixturePosterior",
    "scale_log_likelihood",
    "importance_posterior",
    "predict",
]


class BurrXII(dist.Distribution):
    """Burr type XII distribution on ``(0, inf)`` (scipy's ``burr12``).

    .. math::

        h(x) = \\frac{c d}{s} (x/s)^{c-1} (1 + (x/s)^c)^{-d-1}, \\qquad x > 0,

    tail index ``c d`` (``IG(alpha, .)`` has tail index ``alpha``). Sampling by inversion of
    the survival function ``(1 + (x/s)^c)^{-d}``.

    Parameters
    ----------
    c, d
        Positive shape parameters.
    scale
        Positive scale ``s`` (default 1).
    """

    arg_constraints = {
        "c": constraints.positive,
        "d": constraints.positive,
        "scale": constraints.positive,
    }
    support = constraints.positive
    reparametrized_params = ["c", "d", "scale"]

    def __init__(self, c, d, scale=1.0, *, validate_args=None):
        self.c, self.d, self.scale = c, d, scale
        batch_shape = jax.lax.broadcast_shapes(jnp.shape(c), jnp.shape(d), jnp.shape(scale))
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        """Inverse-CDF draw: ``x = s ((1 - u)^{-1/d} - 1)^{1/c}``."""
        u = jax.random.uniform(key, sample_shape + self.batch_shape, minval=1e-12, maxval=1.0)
        return self.scale * jnp.expm1(-jnp.log(u) / self.d) ** (1.0 / self.c)

    def log_prob(self, value):
        """Log density ``log h(value)``."""
        z = value / self.scale
        return (
            jnp.log(self.c * self.d / self.scale)
            + (self.c - 1.0) * jnp.log(z)
            - (self.d + 1.0) * jnp.log1p(z**self.c)
        )


class DiscreteScalePrior(NamedTuple):
    """Finite discrete prior ``sum_k pi_k delta_{s_k}`` on ``sigma^2`` (a finite GP mixture).

    Attributes
    ----------
    values
        ``(K,)`` positive variances ``s_k``.
    probs
        ``(K,)`` prior probabilities ``pi_k`` (normalised on use).
    """

    values: jax.Array
    probs: jax.Array


class ScaleMixturePosterior(NamedTuple):
    """Weighted draws (or atoms) of ``sigma^2 | Y`` with the cached GP factorisation.

    Attributes
    ----------
    gp
        :class:`bayesnn.nngp.gp.GPPosterior`.
    sigma2
        ``(S,)`` variances.
    log_weights
        ``(S,)`` normalised log weights.
    ess
        Effective sample size ``1 / sum w_s^2`` (``S`` atoms: exact for a discrete prior).
    """

    gp: GPPosterior
    sigma2: jax.Array
    log_weights: jax.Array
    ess: jax.Array


def scale_log_likelihood(gp: GPPosterior, sigma2: jax.Array) -> jax.Array:
    """``log N(Y; 0, sigma^2 K)`` for an array of ``sigma^2`` in O(1) each."""
    nc = gp.n * gp.n_out
    return (
        -0.5 * nc * jnp.log(2 * math.pi * sigma2)
        - 0.5 * gp.n_out * gp.logdet
        - 0.5 * gp.quad / sigma2
    )


def _prior_log_prob(prior) -> Callable:
    if isinstance(prior, dist.Distribution):
        return prior.log_prob
    if callable(prior):
        return prior
    raise ValueError(
        "prior must be a numpyro Distribution on (0, inf), a DiscreteScalePrior or a "
        f"callable log-density, got {type(prior).__name__}"
    )


def importance_posterior(
    gp: GPPosterior,
    prior,
    rng_key: jax.Array,
    num_samples: int = 1000,
    proposal: str = "laplace",
    df: int = 5,
) -> ScaleMixturePosterior:
    """Posterior over the last-layer variance ``sigma^2`` by importance sampling.

    Parameters
    ----------
    gp
        :func:`bayesnn.nngp.gp.fit` of ``Kbar`` (unit last-layer scale).
    prior
        numpyro distribution on ``sigma^2`` (``InverseGamma``, :class:`BurrXII`,
        ``LogNormal``, a ``TransformedDistribution`` of ``HalfCauchy`` on ``sigma``, ...), a
        callable positive log-density ``log h(sigma^2)`` (unnormalised is fine), or a
        :class:`DiscreteScalePrior` (exact posterior over its atoms).
    rng_key
        PRNG key.
    num_samples
        Number of importance samples ``S``.
    proposal
        ``"laplace"`` (default): Student-t with ``df`` degrees of freedom in
        ``log sigma^2``, located at the posterior mode and scaled by the Laplace curvature
        (x1.5); ``df`` must be a positive integer. ``"prior"``: the prior itself (as in the authors' code; needs ``prior.sample``).

    Returns
    -------
    ScaleMixturePosterior
    """
    if isinstance(prior, DiscreteScalePrior):
        with jax.enable_x64(True):
            v = jnp.asarray(prior.values, jnp.float64)
            p = jnp.asarray(prior.probs, jnp.float64)
            if v.ndim != 1 or v.shape != p.shape or bool(jnp.any(v <= 0)) or bool(jnp.any(p < 0)):
                raise ValueError("prior: values must be positive and probs non-negative (K,)")
            lw = jnp.log(p / jnp.sum(p)) + scale_log_likelihood(gp, v)
            lw = lw - jax.scipy.special.logsumexp(lw)
            ess = 1.0 / jnp.sum(jnp.exp(2 * lw))
        return ScaleMixturePosterior(gp, *to_default_float(v, lw, ess))
    _prior_log_prob(prior)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if proposal not in ("laplace", "prior"):
        raise ValueError(f"proposal must be 'laplace' or 'prior', got {proposal!r}")
    if not isinstance(df, int) or df < 1:
        raise ValueError(f"df must be a positive integer, got {df!r}")
    if proposal == "prior" and not isinstance(prior, dist.Distribution):
        raise ValueError("proposal='prior' needs a numpyro prior with .sample")
    if not isinstance(prior, dist.Distribution):
        prior = jax.tree_util.Partial(prior)  # a pytree: one compiled program per function
    with jax.enable_x64(True):
        stats = jnp.asarray([gp.quad, gp.logdet, gp.n * gp.n_out, gp.n_out], jnp.float64)
        # standard-t draws compiled apart from the prior-specific program (reused across priors)
        z = _standard_t(rng_key, num_samples, df) if proposal == "laplace" else None
        s2, lw, ess, t, h = _importance_core(prior, stats, rng_key, z, num_samples, proposal, df)
        if proposal == "laplace" and (not bool(jnp.isfinite(t)) or not bool(h < 0)):
            raise ValueError("could not locate the posterior mode of log sigma^2")
    return ScaleMixturePosterior(gp, *to_default_float(s2, lw, ess))


def _scale_ll(stats, sigma2):
    quad, logdet, nc, n_out = stats[0], stats[1], stats[2], stats[3]
    return -0.5 * nc * jnp.log(2 * math.pi * sigma2) - 0.5 * n_out * logdet - 0.5 * quad / sigma2


@functools.partial(jax.jit, static_argnums=(1, 2))
def _standard_t(rng_key, num_samples, df):
    """Student-t draws ``z0 / sqrt(chi2_df / df)`` from normals (integer ``df``, no gamma)."""
    z = jax.random.normal(rng_key, (num_samples, df + 1), jnp.float64)
    return z[:, 0] * jax.lax.rsqrt(jnp.mean(z[:, 1:] ** 2, axis=1))


@functools.partial(jax.jit, static_argnames=("num_samples", "proposal", "df"))
def _importance_core(prior, stats, rng_key, z, num_samples, proposal, df):
    """Laplace fit in ``t = log sigma^2``, proposal draws and normalised log weights."""
    log_prior = prior.log_prob if isinstance(prior, dist.Distribution) else prior

    def log_post_t(t):  # log posterior density of t = log sigma^2 (up to a constant)
        s2 = jnp.exp(t)
        return log_prior(s2) + _scale_ll(stats, s2) + t

    g_fn = jax.grad(log_post_t)
    h_fn = jax.grad(g_fn)

    def newton(_, t):  # damped Newton; gradient-sign steps where the curvature is not negative
        g, h = g_fn(t), h_fn(t)
        step = jnp.where(h < 0, -g / jnp.where(h < 0, h, -1.0), jnp.sign(g))
        return t + jnp.clip(step, -2.0, 2.0)

    t0 = jnp.log(jnp.maximum(stats[0] / stats[2], 1e-300))
    t = jax.lax.fori_loop(0, 50, newton, t0)
    h = h_fn(t)
    if proposal == "prior":
        s2 = prior.sample(rng_key, (num_samples,)).astype(stats.dtype)
        lw = _scale_ll(stats, s2)
    else:
        q = dist.StudentT(df, t, 1.5 / jnp.sqrt(jnp.maximum(-h, 1e-300)))
        ts = q.loc + q.scale * z
        s2 = jnp.exp(ts)
        lw = log_post_t(ts) - q.log_prob(ts)
    lw = jnp.where(jnp.isfinite(lw), lw, -jnp.inf)
    lw = lw - jax.scipy.special.logsumexp(lw)
    return s2, lw, 1.0 / jnp.sum(jnp.exp(2 * lw)), t, h


@jax.jit
def _mixture_params(mean, var, eta, sigma2, log_weights):
    m, c = mean.shape
    s = sigma2.shape[0]
    sd = jnp.sqrt((var + eta)[:, None, None] * sigma2[None, None, :].astype(var.dtype))
    loc = mean[:, :, None] * jnp.ones((1, 1, s), mean.dtype)
    sd = sd * jnp.ones((1, c, 1), sd.dtype)
    logits = jnp.broadcast_to(log_weights.astype(mean.dtype), (m, c, s))
    return loc, sd, logits


def predict(
    post: ScaleMixturePosterior, k_test_train, k_test_diag, include_noise: bool = True
) -> dist.MixtureSameFamily:
    """Marginal predictive ``sum_s w_s N(mu*, sigma_s^2 (Sigma* + eta))`` per test point.

    Returns
    -------
    numpyro.distributions.MixtureSameFamily
        Batch shape ``(m, C)``, mixing over the ``S`` draws (``log_prob`` is a log-sum-exp).
    """
    with jax.enable_x64(True):
        mean, var = latent_moments(post.gp, k_test_train, k_test_diag)
        eta = post.gp.eta if include_noise else 0.0
        loc, sd, logits = _mixture_params(mean, var, eta, post.sigma2, post.log_weights)
    loc, sd, logits = to_default_float(loc, sd, logits)
    return dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(loc, sd))
