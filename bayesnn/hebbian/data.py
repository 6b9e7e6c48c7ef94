"""Data generators for dense Hebbian networks: archetypes, noisy examples, dilution.

Conventions (Agliari et al., "Dense Hebbian neural networks: a replica symmetric picture of
supervised learning", arXiv 2212.00606, and "... of unsupervised learning", arXiv 2211.14067):

- archetypes :math:`\\xi^\\mu_i \\in \\{-1, +1\\}` i.i.d. uniform, or diluted
  :math:`\\{-1, 0, +1\\}` with :math:`P(0) = d` (Agliari, Alessandrelli, Barra,
  Ricci-Tersenghi, "Parallel learning by multitasking neural networks", arXiv 2308.04106);
- examples :math:`\\eta^{\\mu,a}_i = \\xi^\\mu_i \\chi^{\\mu,a}_i`, with
  :math:`P(\\chi = +1) = (1 + r)/2`, :math:`a = 1..M` (blank archetype entries stay blank);
- example mean :math:`X = M^{-1}\\sum_a \\chi^a = (2B - M)/M`, :math:`B \\sim
  \\mathrm{Bin}(M, (1 + r)/2)`; :math:`R = E[\\bar\\eta^2] = r^2 + (1 - r^2)/M`;
- dataset entropy :math:`\\rho = (1 - r^2)/(M r^2)`, so :math:`R = r^2(1 + \\rho)`.

Data and dynamics take separate PRNG keys.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

__all__ = [
    "HebbianDataset",
    "check_quality",
    "check_num_examples",
    "check_dilution",
    "archetypes",
    "noisy_examples",
    "make_dataset",
    "dataset_entropy",
    "quality_from_entropy",
    "second_moment",
    "example_mean_law",
]


class HebbianDataset(NamedTuple):
    """Archetypes and their noisy examples.

    Attributes
    ----------
    archetypes : Array, shape (K, N)
        :math:`\\xi`, entries in {-1, 0, +1}.
    examples : Array, shape (K, M, N)
        :math:`\\eta^{\\mu, a} = \\xi^\\mu \\chi^{\\mu, a}`.
    quality : float
        Example quality ``r``.
    """

    archetypes: jax.Array
    examples: jax.Array
    quality: float


def check_quality(quality) -> float:
    """Validate the example quality ``r`` in (0, 1] and return it as float.

    Parameters
    ----------
    quality : float
        Probability bias of the example noise, :math:`P(\\chi = 1) = (1 + r)/2`.

    Returns
    -------
    float
    """
    r = float(quality)
    if not (0.0 < r <= 1.0) or not np.isfinite(r):
        raise ValueError(f"quality r must be in (0, 1], got {quality}")
    return r


def check_num_examples(num_examples) -> int:
    """Validate the number of examples per archetype ``M >= 1`` (an integer).

    Parameters
    ----------
    num_examples : int
        ``M``.

    Returns
    -------
    int
    """
    if int(num_examples) != num_examples or int(num_examples) < 1:
        raise ValueError(f"num_examples M must be an integer >= 1, got {num_examples}")
    return int(num_examples)


def check_dilution(dilution) -> float:
    """Validate the dilution ``d`` in [0, 1) and return it as float.

    Parameters
    ----------
    dilution : float
        Probability that an archetype entry is blank (0).

    Returns
    -------
    float
    """
    d = float(dilution)
    if not (0.0 <= d < 1.0):
        raise ValueError(f"dilution must be in [0, 1), got {dilution}")
    return d


def archetypes(rng_key, num_patterns: int, num_spins: int, dilution: float = 0.0, dtype=None):
    """Random archetypes, Rademacher or diluted.

    .. math::
        P(\\xi = \\pm 1) = (1 - d)/2, \\qquad P(\\xi = 0) = d.

    Parameters
    ----------
    rng_key : PRNGKey
        Data key.
    num_patterns : int
        ``K``.
    num_spins : int
        ``N``.
    dilution : float
        ``d`` in [0, 1) (Agliari et al., arXiv 2308.04106).
    dtype : dtype, optional
        Default float32.

    Returns
    -------
    Array, shape (K, N)
    """
    d = check_dilution(dilution)
    if int(num_patterns) < 1 or int(num_spins) < 1:
        raise ValueError("num_patterns and num_spins must be >= 1")
    return _archetypes(rng_key, int(num_patterns), int(num_spins), d, dtype or jnp.float32)


@partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _archetypes(rng_key, num_patterns, num_spins, d, dtype):
    k1, k2 = jax.random.split(rng_key)
    sign = jnp.where(jax.random.bernoulli(k1, 0.5, (num_patterns, num_spins)), 1.0, -1.0)
    if d > 0:
        sign = sign * jax.random.bernoulli(k2, 1.0 - d, sign.shape)
    return sign.astype(dtype)


def noisy_examples(rng_key, xi, num_examples: int, quality: float):
    """Noisy examples :math:`\\eta^{\\mu,a}_i = \\xi^\\mu_i \\chi^{\\mu,a}_i`.

    :math:`\\chi` i.i.d. with :math:`P(\\chi = +1) = (1 + r)/2`, so :math:`E\\chi = r`.

    Parameters
    ----------
    rng_key : PRNGKey
        Data key.
    xi : Array, shape (K, N)
        Archetypes.
    num_examples : int
        ``M >= 1`` per archetype.
    quality : float
        ``r`` in (0, 1].

    Returns
    -------
    Array, shape (K, M, N)
    """
    m = check_num_examples(num_examples)
    r = check_quality(quality)
    xi = jnp.asarray(xi)
    if xi.ndim != 2:
        raise ValueError(f"xi must have shape (K, N), got {xi.shape}")
    return _noisy_examples(rng_key, xi, m, r)


@partial(jax.jit, static_argnums=(2,))
def _noisy_examples(rng_key, xi, m, r):
    chi = jnp.where(
        jax.random.bernoulli(rng_key, (1.0 + r) / 2.0, (xi.shape[0], m, xi.shape[1])), 1.0, -1.0
    )
    return (xi[:, None, :] * chi).astype(xi.dtype)


def make_dataset(
    rng_key, num_patterns, num_spins, num_examples, quality, dilution=0.0
) -> HebbianDataset:
    """Archetypes and examples in one call (the key is split for the two parts).

    Parameters
    ----------
    rng_key : PRNGKey
        Data key (keep it separate from the dynamics key).
    num_patterns, num_spins, num_examples : int
        ``K``, ``N``, ``M``.
    quality : float
        ``r`` in (0, 1].
    dilution : float
        ``d`` in [0, 1).

    Returns
    -------
    HebbianDataset
    """
    k1, k2 = jax.random.split(rng_key)
    xi = archetypes(k1, num_patterns, num_spins, dilution)
    return HebbianDataset(xi, noisy_examples(k2, xi, num_examples, quality), float(quality))


def dataset_entropy(quality, num_examples):
    """Dataset entropy :math:`\\rho = (1 - r^2)/(M r^2)`.

    Parameters
    ----------
    quality : float or Array
        ``r``.
    num_examples : int or Array
        ``M``.

    Returns
    -------
    Array
    """
    r = jnp.asarray(quality, jnp.float32)
    return (1.0 - r**2) / (num_examples * r**2)


def quality_from_entropy(rho, num_examples):
    """Inverse of :func:`dataset_entropy`: :math:`r = (1 + \\rho M)^{-1/2}`.

    Parameters
    ----------
    rho : float or Array
        Dataset entropy, ``>= 0``.
    num_examples : int or Array
        ``M``.

    Returns
    -------
    Array
    """
    return 1.0 / jnp.sqrt(1.0 + jnp.asarray(rho, jnp.float32) * num_examples)


def second_moment(quality, num_examples):
    """:math:`R = E[\\bar\\eta^2] = r^2 + (1 - r^2)/M = r^2 (1 + \\rho)`.

    Parameters
    ----------
    quality : float or Array
        ``r``.
    num_examples : int or Array
        ``M``.

    Returns
    -------
    Array
    """
    r = jnp.asarray(quality, jnp.float32)
    return r**2 + (1.0 - r**2) / num_examples


def example_mean_law(quality, num_examples: int):
    """Exact law of the example mean :math:`X = (2B - M)/M`, :math:`B\\sim\\mathrm{Bin}(M, p)`.

    Here :math:`p = (1 + r)/2`.

    Parameters
    ----------
    quality : float or scalar Array
        ``r`` in (0, 1] (may be traced; then it is not validated).
    num_examples : int
        ``M`` (static).

    Returns
    -------
    values : Array, shape (M + 1,)
        Support :math:`(2k - M)/M`, ``k = 0..M``.
    probs : Array, shape (M + 1,)
        Binomial probabilities (computed in log space; ``r = 1`` gives a point mass at 1).
    """
    m = check_num_examples(num_examples)
    if not isinstance(quality, jax.core.Tracer):
        check_quality(quality)
    r = jnp.asarray(quality, jnp.float32)
    k = jnp.arange(m + 1, dtype=jnp.float32)
    p = (1.0 + r) / 2.0
    logc = gammaln(m + 1.0) - gammaln(k + 1.0) - gammaln(m - k + 1.0)
    log1mp = jnp.log(jnp.maximum(1.0 - p, 1e-30))
    logpmf = logc + k * jnp.log(p) + (m - k) * log1mp
    logpmf = jnp.where((p >= 1.0) & (k < m), -jnp.inf, logpmf)
    probs = jax.nn.softmax(logpmf)
    return (2.0 * k - m) / m, probs
