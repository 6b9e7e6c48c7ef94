r"""Dense (P-body) Hebbian networks built from examples, as overlaps (no N^P tensor).

All networks share one form. With ``rows`` :math:`X \in \mathbb{R}^{R \times N}`, a weight
:math:`c` and even :math:`P`,

.. math::
    H(s) = -\frac{c}{2 N^{P-1}} \sum_{\nu=1}^{R} \sum_{(i_1..i_P)}
        X_{\nu i_1} \cdots X_{\nu i_P}\, s_{i_1} \cdots s_{i_P}.

Index conventions (selectable, since the high-storage theory depends on it). The default
everywhere in :mod:`bayesnn.hebbian` (networks, RS theory, signal-to-noise estimates, phase
diagrams) is ``"distinct"``: it is the Hamiltonian the high-storage RS theory and its T = 0
closed forms are derived for (noise constant :math:`c_P = (P-1)!`), the dense-Hopfield
convention, and has no self-interaction. At low storage both conventions have the same
thermodynamics; at P = 2 they differ by a constant, so the dynamics are identical (and the
cheaper overlap cache is used for both).

- ``convention="all"``: the sum runs over all :math:`N^P` index tuples, so
  :math:`H = -(N c/2) \sum_\nu n_\nu^P` with :math:`n_\nu = N^{-1}\sum_i X_{\nu i} s_i`
  (includes repeated-index / self-interaction terms).
- ``convention="distinct"``: only tuples of pairwise distinct indices, so
  :math:`H = -(N c/2)\, P! \sum_\nu e_P(b_\nu)` with :math:`b_{\nu i} = X_{\nu i} s_i / N` and
  :math:`e_P` the elementary symmetric polynomial (computed with Newton's identities from the
  power sums; no self-interaction, :math:`\Delta E_i = 2 s_i h_i`).

Rules (Agliari et al., arXiv 2212.00606 (supervised), arXiv 2211.14067 (unsupervised)):

- supervised: :math:`X_\mu = \bar\eta^\mu/\sqrt{R}` (example mean of each label), ``c = 1``:
  :math:`H = -\frac{1}{2 R^{P/2} M^P N^{P-1}} \sum_\mu \sum_{i_1..i_P}
  (\sum_a \eta^{\mu a}_{i_1}) \cdots (\sum_a \eta^{\mu a}_{i_P}) s_{i_1}\cdots s_{i_P}`;
- unsupervised: :math:`X_{(\mu,a)} = \eta^{\mu a}/\sqrt{R}` (each example its own row),
  ``c = 1/M``;
- dense Hopfield / multitasking: :math:`X = \xi`, ``c = 1``.

The group's public teaching code (GitHub ``AndreaAlessandrelli4/Coding_Lessons``) divides the
example mean by :math:`r(1+\rho) = R/r` instead of :math:`\sqrt R`; the overlaps then differ
by :math:`1/\sqrt{1+\rho}`. Papers that write :math:`H = -\frac{1}{P!\,N^{P-1}}\sum\cdots`
correspond to :math:`\beta' = 2\beta/P!` here.

Exact single-flip energy differences cost O(R) (all tuples) or O(R P^2) (distinct) per flip
from a cache of overlaps / odd power sums; :func:`spin_model` packages them for
:mod:`samplers.spins`.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from samplers import spins as spins_lib

from .data import check_num_examples, check_quality, second_moment

__all__ = [
    "HebbianNetwork",
    "check_order",
    "hebbian_network",
    "supervised_network",
    "unsupervised_network",
    "overlaps",
    "energy",
    "local_fields",
    "delta_energy",
    "spin_model",
]

_CONVENTIONS = ("all", "distinct")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class HebbianNetwork:
    r"""A dense Hebbian network :math:`H = -\frac{c}{2N^{P-1}}\sum_\nu\sum_{i_1..i_P}\prod_k
    X_{\nu i_k} s_{i_k}` (see the module docstring).

    A pytree: ``rows`` is a leaf; ``order``, ``weight`` and ``convention`` are static.

    Attributes
    ----------
    rows : Array, shape (R, N)
        The normalised patterns :math:`X`.
    order : int
        Interaction order ``P`` (even, >= 2).
    weight : float
        Prefactor ``c`` (1 supervised / Hopfield, ``1/M`` unsupervised).
    convention : {"all", "distinct"}
        Index convention of the P-body sum.
    """

    rows: jax.Array
    order: int = dataclasses.field(metadata=dict(static=True))
    weight: float = dataclasses.field(default=1.0, metadata=dict(static=True))
    convention: str = dataclasses.field(default="distinct", metadata=dict(static=True))

    @property
    def num_spins(self) -> int:
        """Number of spins ``N``."""
        return self.rows.shape[-1]


def check_order(order) -> int:
    """Validate an even interaction order ``P >= 2``.

    Parameters
    ----------
    order : int
        ``P``.

    Returns
    -------
    int
    """
    if int(order) != order or int(order) < 2 or int(order) % 2:
        raise ValueError(f"order P must be an even integer >= 2, got {order}")
    return int(order)


def hebbian_network(rows, order: int, weight: float = 1.0, convention: str = "distinct"):
    r"""Network from explicit rows (e.g. archetypes for a dense Hopfield / multitasking net).

    .. math:: H = -\frac{c}{2 N^{P-1}} \sum_\nu \sum_{i_1..i_P} \prod_k X_{\nu i_k} s_{i_k}.

    Parameters
    ----------
    rows : Array, shape (R, N)
        Patterns :math:`X` (finite).
    order : int
        Even ``P``.
    weight : float
        ``c > 0``.
    convention : {"all", "distinct"}
        Index convention.

    Returns
    -------
    HebbianNetwork

    Notes
    -----
    Traceable: inside ``jax.jit``/``jax.vmap`` (e.g. one network per data set of a batch)
    the value checks are skipped; the shape, ``order``, ``weight`` and ``convention`` are
    static (a new shape compiles again).
    """
    p = check_order(order)
    x = jnp.asarray(rows)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"rows must have shape (R, N), got {x.shape}")
    if not isinstance(x, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError("rows contain NaN or inf")
    if convention not in _CONVENTIONS:
        raise ValueError(f"convention must be one of {_CONVENTIONS}, got {convention!r}")
    if not float(weight) > 0:
        raise ValueError(f"weight must be > 0, got {weight}")
    return HebbianNetwork(x, p, float(weight), convention)


def _check_examples(examples):
    eta = jnp.asarray(examples)
    if eta.ndim != 3:
        raise ValueError(f"examples must have shape (K, M, N), got {eta.shape}")
    if not jnp.issubdtype(eta.dtype, jnp.floating):
        eta = eta.astype(jnp.float32)
    if not isinstance(eta, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(eta))):
        raise ValueError("examples contain NaN or inf")
    return eta


def _sqrt_r(eta, quality):
    """sqrt(R) per label, shape (K,): from the quality r, or empirically if r is None."""
    if quality is None:
        # Unknown r (e.g. images): R estimated as the mean of (etabar_i)^2 per label.
        return jnp.sqrt(jnp.mean(eta.mean(1) ** 2, axis=-1))
    r = check_quality(quality)
    check_num_examples(eta.shape[1])
    return jnp.full(eta.shape[0], jnp.sqrt(second_moment(r, eta.shape[1])), eta.dtype)


def supervised_network(examples, order: int, quality=None, convention: str = "distinct"):
    r"""Supervised dense Hebbian network: one row per label, the normalised example mean.

    .. math::
        X_\mu = \frac{\bar\eta^\mu}{\sqrt R},\quad
        \bar\eta^\mu = \frac1M\sum_a \eta^{\mu a},\quad R = r^2 + \frac{1 - r^2}{M},\quad c = 1,

    i.e. :math:`H = -(N/2)\sum_\mu n_\mu^P` (all tuples). Agliari et al., "Dense Hebbian neural
    networks: a replica symmetric picture of supervised learning", arXiv 2212.00606.

    Parameters
    ----------
    examples : Array, shape (K, M, N)
        Examples grouped by label.
    order : int
        Even ``P``.
    quality : float, optional
        ``r``; if ``None`` (unknown, e.g. images) ``R`` is estimated per label as the mean of
        :math:`(\bar\eta^\mu_i)^2`.
    convention : {"all", "distinct"}
        Index convention.

    Returns
    -------
    HebbianNetwork
    """
    eta = _check_examples(examples)
    rows = eta.mean(1) / _sqrt_r(eta, quality)[:, None]
    return hebbian_network(rows, order, 1.0, convention)


def unsupervised_network(examples, order: int, quality=None, convention: str = "distinct"):
    r"""Unsupervised dense Hebbian network: every example is its own row, weight ``1/M``.

    .. math::
        H = -\frac{N}{2M}\sum_{\mu, a} n_{\mu a}^P,\qquad
        n_{\mu a} = \frac{1}{N\sqrt R}\sum_i \eta^{\mu a}_i s_i .

    Agliari et al., "Dense Hebbian neural networks: a replica symmetric picture of
    unsupervised learning", arXiv 2211.14067. Labels are not used (only the grouping into
    ``K x M`` fixes ``M`` in the prefactor).

    Parameters
    ----------
    examples : Array, shape (K, M, N)
        Examples.
    order : int
        Even ``P``.
    quality : float, optional
        ``r``; if ``None``, ``R`` is estimated per group as in :func:`supervised_network`.
    convention : {"all", "distinct"}
        Index convention.

    Returns
    -------
    HebbianNetwork
    """
    eta = _check_examples(examples)
    k, m, n = eta.shape
    rows = (eta / _sqrt_r(eta, quality)[:, None, None]).reshape(k * m, n)
    return hebbian_network(rows, order, 1.0 / m, convention)


def overlaps(net: HebbianNetwork, spins):
    r"""Overlaps :math:`n_\nu = N^{-1}\sum_i X_{\nu i} s_i`.

    Parameters
    ----------
    net : HebbianNetwork
        The network.
    spins : Array, shape (..., N)
        Configurations.

    Returns
    -------
    Array, shape (..., R)
    """
    return jnp.einsum("...i,ri->...r", spins, net.rows) / net.num_spins


def _esym(power_sums, order):
    """Elementary symmetric polynomials e_0..e_order from power sums p_1..p_order (axis 0)."""
    e = [jnp.ones_like(power_sums[0])]
    for k in range(1, order + 1):
        acc = jnp.zeros_like(power_sums[0])
        for j in range(1, k + 1):
            acc = acc + (-1) ** (j - 1) * e[k - j] * power_sums[j - 1]
        e.append(acc / k)
    return e


def _power_sums(net, spins):
    """p_k = sum_i (X_i s_i / N)^k for k = 1..P, each of shape (R,)."""
    b = net.rows * spins[None, :] / net.num_spins
    return [jnp.sum(b**k, axis=-1) for k in range(1, net.order + 1)]


def energy(net: HebbianNetwork, spins):
    r"""Energy :math:`H(s)` of one configuration (see the module docstring).

    ``all``: :math:`-(Nc/2)\sum_\nu n_\nu^P`; ``distinct``: :math:`-(Nc/2)P!\sum_\nu e_P(b_\nu)`.

    Parameters
    ----------
    net : HebbianNetwork
        The network.
    spins : Array, shape (N,)
        Configuration.

    Returns
    -------
    Array
        Scalar energy.
    """
    n = net.num_spins
    if net.convention == "all":
        return -0.5 * n * net.weight * jnp.sum(overlaps(net, spins) ** net.order)
    e = _esym(_power_sums(net, spins), net.order)
    return -0.5 * n * net.weight * math.factorial(net.order) * jnp.sum(e[net.order])


def local_fields(net: HebbianNetwork, spins):
    r"""Local fields :math:`h_i = -\partial H/\partial s_i`.

    ``all``: :math:`h_i = (P/2)\,c \sum_\nu n_\nu^{P-1} X_{\nu i}` (includes the self term);
    ``distinct``: :math:`h_i = (c/2) P! \sum_\nu X_{\nu i}\, e_{P-1}(b_\nu \setminus i)`,
    independent of :math:`s_i`. These drive the synchronous (Little) update
    :math:`s_i \leftarrow \mathrm{sign}(\tanh(\beta h_i) + U(-1,1))`.

    Parameters
    ----------
    net : HebbianNetwork
        The network.
    spins : Array, shape (N,)
        Configuration.

    Returns
    -------
    Array, shape (N,)
    """
    p, c = net.order, net.weight
    if net.convention == "all":
        nu = overlaps(net, spins)
        return 0.5 * p * c * (nu ** (p - 1)) @ net.rows
    e_excl = _e_excluding(net, spins, _power_sums(net, spins))
    return 0.5 * c * math.factorial(p) * jnp.sum(net.rows * e_excl, axis=0)


def _e_excluding(net, spins, power_sums):
    """e_{P-1}(b without site i), shape (R, N), from e_k(b) by the recursion
    e_k(b \\ i) = e_k(b) - b_i e_{k-1}(b \\ i)."""
    e = _esym(power_sums, net.order - 1)
    b = net.rows * spins[None, :] / net.num_spins
    ex = jnp.ones_like(b)
    for k in range(1, net.order):
        ex = e[k][:, None] - b * ex
    return ex


def delta_energy(net: HebbianNetwork, spins):
    r"""Exact single-flip energy differences :math:`\Delta E_i = H(s^{(i)}) - H(s)` of all sites.

    ``all``: with :math:`n'_\nu = n_\nu - 2 s_i X_{\nu i}/N`,
    :math:`\Delta E_i = (Nc/2)\sum_\nu (n_\nu^P - n_\nu'^P)` (self terms exact), evaluated as
    :math:`(n - n')\sum_{k<P} n^k n'^{P-1-k}` to avoid cancellation. ``distinct``:
    :math:`\Delta E_i = 2 s_i h_i`.

    Parameters
    ----------
    net : HebbianNetwork
        The network.
    spins : Array, shape (N,)
        Configuration.

    Returns
    -------
    Array, shape (N,)
    """
    if net.convention == "distinct":
        return 2.0 * spins * local_fields(net, spins)
    nu = overlaps(net, spins)[:, None]
    diff = 2.0 * spins[None, :] * net.rows / net.num_spins
    return 0.5 * net.num_spins * net.weight * jnp.sum(diff * _geom(nu, nu - diff, net.order), 0)


def _geom(a, b, p):
    """sum_{k=0}^{p-1} a^k b^(p-1-k), so that a^p - b^p = (a - b) * _geom(a, b, p)."""
    out = jnp.zeros(jnp.broadcast_shapes(a.shape, b.shape), a.dtype)
    for k in range(p):
        out = out + a**k * b ** (p - 1 - k)
    return out


def spin_model(net: HebbianNetwork) -> spins_lib.SpinModel:
    r"""Package the network for :mod:`samplers.spins` with an O(R)-per-flip cache.

    ``all`` (and P = 2 in both conventions): the cache is the overlap vector :math:`n` (R,); a
    flip of site ``i`` sets
    :math:`n \leftarrow n - 2 s_i X_{:,i}/N` and
    :math:`\Delta E_i = (Nc/2)\sum_\nu(n_\nu^P - n_\nu'^P)` exactly.
    ``distinct``: the cache holds the odd power sums :math:`\sum_i b_{\nu i}^k` (``k`` odd
    ``< P``; even ones are constants), and :math:`\Delta E_i` follows from Newton's identities
    in O(R P^2).

    Parameters
    ----------
    net : HebbianNetwork
        The network.

    Returns
    -------
    samplers.spins.SpinModel
    """
    p, c, n = net.order, net.weight, net.num_spins
    rows = net.rows
    pref = 0.5 * n * c

    if net.convention == "all" or p == 2:
        # site-major copy (N, R) of 2 X / N: site i's row is contiguous. At P = 2 the two
        # conventions differ by the constant -(c/2N) sum X^2, so Delta E is the same.
        cols = rows.T * (2.0 / n)

        def init_cache(s):
            return overlaps(net, s)

        if p == 2:
            # n^2 - (n - d)^2 = 2 d n - d^2 with d = s_i cols_i and d^2 independent of s
            sq = jnp.sum(cols**2, axis=-1)

            def site_de(cache, si, i):
                return pref * (2.0 * si * jnp.sum(cols[i] * cache) - sq[i])

        else:

            def site_de(cache, si, i):
                d = si * cols[i]
                return pref * jnp.sum(d * _geom(cache, cache - d, p))

        def site_up(cache, si, i):
            return cache - si * cols[i]

    else:
        x = rows / n
        even = {k: jnp.sum(x**k, axis=-1) for k in range(2, p + 1, 2)}
        fact = math.factorial(p)

        def init_cache(s):
            return jnp.stack([jnp.sum((x**k) * s[None, :], -1) for k in range(1, p, 2)])

        def _sums(cache):
            return [cache[(k - 1) // 2] if k % 2 else even[k] for k in range(1, p)]

        def site_de(cache, si, i):
            e = _esym(_sums(cache), p - 1)
            bi = x[:, i] * si
            ex = jnp.ones_like(bi)
            for k in range(1, p):
                ex = e[k] - bi * ex
            return pref * fact * 2.0 * jnp.sum(bi * ex)

        def site_up(cache, si, i):
            powers = jnp.stack([x[:, i] ** k for k in range(1, p, 2)])
            return cache - 2.0 * si * powers

    return spins_lib.SpinModel(
        init_cache=init_cache,
        delta_energy=lambda cache, s, i: site_de(cache, s[i], i),
        update_cache=lambda cache, s, i: site_up(cache, s[i], i),
        delta_energy_all=lambda cache, s: delta_energy(net, s),
        energy=lambda s: energy(net, s),
        site_delta_energy=site_de,
        site_update_cache=site_up,
    )
