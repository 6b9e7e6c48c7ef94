"""Single-site and parallel Monte Carlo samplers for +-1 spin systems.

A model is described by a :class:`SpinModel`: pure functions over an auxiliary *cache* (for
example the overlaps ``m_mu`` of a Hopfield-type network, or the local fields of a pair model)
that make the exact energy change of a single flip cheap and let the cache be updated
incrementally after a flip. The samplers never see the energy itself, only

- ``init_cache(spins) -> cache``,
- ``delta_energy(cache, spins, i) -> dE``: exact ``H(s with s_i flipped) - H(s)``,
- ``update_cache(cache, spins, i) -> cache``: the cache after flipping site ``i`` of ``spins``
  (``spins`` is the configuration *before* the flip),
- optionally ``delta_energy_all(cache, spins) -> (N,)`` single-flip differences of every site
  (needed by the parallel kernels).

Kernels follow the BlackJAX pattern: ``init(spins) -> SpinState`` and
``step(rng_key, state, beta) -> (SpinState, SpinInfo)``; ``beta`` is a call-time argument
(``jnp.inf`` gives zero-temperature dynamics) so annealing schedules need no rebuild. Many
chains run at once with :func:`jax.vmap` (see :func:`run_chains`), and every loop is a
:func:`jax.lax.scan` / :func:`jax.lax.fori_loop`.

Update rules (Glauber 1963; Metropolis et al. 1953), with ``x = beta * dE``:

- heat bath / Glauber: flip with probability ``1 / (1 + exp(x))``;
- Metropolis: flip with probability ``min(1, exp(-x))``.

Both satisfy detailed balance with respect to ``exp(-beta H)`` for sequential updates. At
``beta = inf`` Glauber flips downhill moves, never uphill ones, and ties with probability 1/2;
Metropolis flips downhill moves and ties.

References
----------
R. J. Glauber, "Time-dependent statistics of the Ising model", J. Math. Phys. 4, 294 (1963).
N. Metropolis et al., "Equation of state calculations by fast computing machines",
J. Chem. Phys. 21, 1087 (1953).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from samplers import runner
from samplers._validate import check

__all__ = [
    "SpinModel",
    "SpinState",
    "SpinInfo",
    "flip_probability",
    "model_from_delta_energy_fn",
    "model_from_local_field_fn",
    "pair_model",
    "validate_beta",
    "validate_spins",
    "validate_states",
    "init",
    "build_sequential_kernel",
    "build_parallel_kernel",
    "build_chain_parallel_kernel",
    "init_chains",
    "uniforms",
    "run_chains",
    "enumerate_states",
]

_RULES = ("glauber", "metropolis")


class SpinModel(NamedTuple):
    """Pure functions describing a +-1 spin system for the samplers.

    Attributes
    ----------
    init_cache : callable
        ``init_cache(spins) -> cache``; any pytree (may be ``()``).
    delta_energy : callable
        ``delta_energy(cache, spins, i) -> dE``, the exact energy change
        ``H(s^{(i)}) - H(s)`` of flipping site ``i`` (``s^{(i)}`` is ``s`` with ``s_i -> -s_i``).
    update_cache : callable
        ``update_cache(cache, spins, i) -> cache`` after flipping ``i``; ``spins`` is the
        configuration before the flip.
    delta_energy_all : callable or None
        ``delta_energy_all(cache, spins) -> (N,)``: every single-flip energy difference at once.
        Required by :func:`build_parallel_kernel`; if ``None`` it is formed by ``vmap`` over
        sites of ``delta_energy``.
    energy : callable or None
        ``energy(spins) -> H``, used only for checks and diagnostics.
    site_delta_energy : callable or None
        ``site_delta_energy(cache, s_i, i) -> dE``: the same exact difference as
        ``delta_energy`` from the cache and the *value* ``s_i`` of the flipped spin only (no
        spin vector). Required by :func:`build_chain_parallel_kernel`.
    site_update_cache : callable or None
        ``site_update_cache(cache, s_i, i) -> cache`` after flipping site ``i`` whose value
        before the flip was ``s_i``.
    """

    init_cache: Callable[[jax.Array], Any]
    delta_energy: Callable[[Any, jax.Array, jax.Array], jax.Array]
    update_cache: Callable[[Any, jax.Array, jax.Array], Any]
    delta_energy_all: Callable[[Any, jax.Array], jax.Array] | None = None
    energy: Callable[[jax.Array], jax.Array] | None = None
    site_delta_energy: Callable[[Any, jax.Array, jax.Array], jax.Array] | None = None
    site_update_cache: Callable[[Any, jax.Array, jax.Array], Any] | None = None


class SpinState(NamedTuple):
    """State of one chain.

    Attributes
    ----------
    spins : Array, shape (N,)
        Current configuration, entries +-1 (float dtype).
    cache : pytree
        The model's auxiliary cache for ``spins`` (see :class:`SpinModel`).
    """

    spins: jax.Array
    cache: Any


class SpinInfo(NamedTuple):
    """Diagnostics of one kernel step (one sweep).

    Attributes
    ----------
    acceptance_rate : Array
        Fraction of attempted single-site updates that flipped the spin.
    delta_energy : Array
        Sum of the energy changes of the accepted flips (sequential kernels: exactly
        ``H(new) - H(old)``; parallel kernels: sum of single-flip differences, which is an
        approximation when interacting sites flip together).
    num_flips : Array
        Number of flipped spins in the step.
    """

    acceptance_rate: jax.Array
    delta_energy: jax.Array
    num_flips: jax.Array


def flip_probability(delta_energy: jax.Array, beta: jax.Array, rule: str = "glauber"):
    r"""Probability of flipping a spin given its energy change.

    .. math::
        p_\mathrm{Glauber} = \frac{1}{1 + e^{\beta \Delta E}},\qquad
        p_\mathrm{Metropolis} = \min(1, e^{-\beta \Delta E}).

    ``beta = inf`` is allowed: Glauber gives ``1, 1/2, 0`` for ``dE < 0, = 0, > 0`` and
    Metropolis ``1, 1, 0``.

    Parameters
    ----------
    delta_energy : Array
        Energy change of the flip.
    beta : Array
        Inverse temperature (``>= 0``, may be ``inf``).
    rule : {"glauber", "metropolis"}
        Update rule (Glauber 1963; Metropolis et al. 1953).

    Returns
    -------
    Array
        Flip probability, same shape as ``delta_energy``.
    """
    x = jnp.where(delta_energy == 0, 0.0, beta * delta_energy)
    if rule == "glauber":
        return jax.nn.sigmoid(-x)
    if rule == "metropolis":
        return jnp.exp(-jnp.maximum(x, 0.0))
    raise ValueError(f"rule must be one of {_RULES}, got {rule!r}")


def _flip_probability_fast(delta_energy, beta, rule):
    """:func:`flip_probability` with the logistic written as ``(1 - tanh(x / 2)) / 2``
    (one transcendental per update, vectorised well by XLA:CPU)."""
    x = jnp.where(delta_energy == 0, jnp.zeros((), delta_energy.dtype), beta * delta_energy)
    if rule == "glauber":
        return 0.5 - 0.5 * jnp.tanh(0.5 * x)
    return jnp.exp(-jnp.maximum(x, 0.0))


def model_from_delta_energy_fn(
    delta_energy_fn: Callable[[jax.Array, jax.Array], jax.Array],
    energy_fn: Callable[[jax.Array], jax.Array] | None = None,
) -> SpinModel:
    """Build a cache-free :class:`SpinModel` from ``delta_energy_fn(spins, i) -> dE``.

    Each flip costs whatever ``delta_energy_fn`` costs (often O(N)); prefer a cached model for
    large systems.

    Parameters
    ----------
    delta_energy_fn : callable
        Exact energy difference of flipping site ``i``.
    energy_fn : callable, optional
        Full energy, for diagnostics.

    Returns
    -------
    SpinModel
    """
    return SpinModel(
        init_cache=lambda spins: (),
        delta_energy=lambda cache, spins, i: delta_energy_fn(spins, i),
        update_cache=lambda cache, spins, i: cache,
        energy=energy_fn,
    )


def model_from_local_field_fn(
    local_field_fn: Callable[[jax.Array, jax.Array], jax.Array],
    energy_fn: Callable[[jax.Array], jax.Array] | None = None,
) -> SpinModel:
    r"""Build a :class:`SpinModel` for a pair model from its local field ``h_i(s)``.

    For :math:`H = -\tfrac12 \sum_{i \neq j} J_{ij} s_i s_j - \sum_i b_i s_i` with zero
    diagonal, the local field :math:`h_i = \sum_{j \ne i} J_{ij} s_j + b_i` does not depend on
    :math:`s_i` and :math:`\Delta E_i = 2 s_i h_i`. This is *not* exact for models with
    self-interaction or more-than-pair couplings: use a ``delta_energy`` model for those.

    Parameters
    ----------
    local_field_fn : callable
        ``local_field_fn(spins, i) -> h_i``.
    energy_fn : callable, optional
        Full energy, for diagnostics.

    Returns
    -------
    SpinModel
    """
    return model_from_delta_energy_fn(
        lambda spins, i: 2.0 * spins[i] * local_field_fn(spins, i), energy_fn
    )


def pair_model(couplings: jax.Array, fields: jax.Array | None = None) -> SpinModel:
    r"""Pair (Ising / Sherrington-Kirkpatrick / Hopfield) model with a cached local field.

    .. math::
        H(s) = -\tfrac12 \sum_{i \ne j} J_{ij} s_i s_j - \sum_i b_i s_i,\qquad
        \Delta E_i = 2 s_i h_i,\quad h = J s + b\ (\text{diagonal of } J \text{ ignored}).

    The cache is the local-field vector; a flip updates it in O(N).

    Parameters
    ----------
    couplings : Array, shape (N, N)
        Symmetric coupling matrix ``J``; its diagonal is ignored.
    fields : Array, shape (N,), optional
        External fields ``b`` (default zero).

    Returns
    -------
    SpinModel
    """
    J = jnp.asarray(couplings)
    if J.ndim != 2 or J.shape[0] != J.shape[1]:
        raise ValueError(f"couplings must be a square (N, N) matrix, got shape {J.shape}")
    n = J.shape[0]
    if not bool(jnp.all(jnp.isfinite(J))):
        raise ValueError("couplings contain NaN or inf")
    if not bool(jnp.allclose(J, J.T)):
        raise ValueError("couplings must be symmetric")
    J = J * (1.0 - jnp.eye(n, dtype=J.dtype))
    b = jnp.zeros(n, J.dtype) if fields is None else jnp.asarray(fields, J.dtype)
    if b.shape != (n,):
        raise ValueError(f"fields must have shape ({n},), got {b.shape}")
    if not bool(jnp.all(jnp.isfinite(b))):
        raise ValueError("fields contain NaN or inf")

    def init_cache(spins):
        return J @ spins + b

    def delta_energy(h, spins, i):
        return 2.0 * spins[i] * h[i]

    def update_cache(h, spins, i):
        return h - 2.0 * spins[i] * J[:, i]

    def delta_energy_all(h, spins):
        return 2.0 * spins * h

    def energy(spins):
        return -0.5 * spins @ (J @ spins) - b @ spins

    return SpinModel(
        init_cache,
        delta_energy,
        update_cache,
        delta_energy_all,
        energy,
        site_delta_energy=lambda h, si, i: 2.0 * si * h[i],
        site_update_cache=lambda h, si, i: h - 2.0 * si * J[:, i],
    )


def validate_spins(spins: jax.Array, name: str = "spins") -> jax.Array:
    """Check that ``spins`` is an array of +-1 entries and return it as a float array.

    Parameters
    ----------
    spins : array_like
        Candidate configuration(s), any shape with at least one dimension.
    name : str
        Argument name used in error messages.

    Returns
    -------
    Array
        ``spins`` as a float array (integer input is cast to float32).

    Raises
    ------
    ValueError
        If ``spins`` is a scalar, empty, or has entries other than +-1. Traced values (under
        ``jit``/``vmap``) are checked when the compiled program runs (a
        ``jax.errors.JaxRuntimeError`` carrying the same message).
    """
    s = jnp.asarray(spins)
    if s.ndim == 0 or s.size == 0:
        raise ValueError(f"{name} must be a non-empty array, got shape {s.shape}")
    if not jnp.issubdtype(s.dtype, jnp.floating):
        s = s.astype(jnp.float32)
    return check(
        lambda x: bool(np.all(np.abs(x) == 1)), f"{name} must contain only -1 and +1 entries", s
    )


def validate_beta(beta, num_chains: int, name: str = "beta") -> jax.Array:
    """Check an inverse temperature and broadcast it to one value per chain (float32).

    ``beta`` is a scalar or has shape ``(num_chains,)``; every entry must be ``>= 0`` (``inf``
    allowed: zero temperature) and not NaN. Traced values are checked when the compiled
    program runs (see :func:`validate_spins`).
    """
    b = jnp.asarray(beta, jnp.float32)
    if b.ndim > 1 or (b.ndim == 1 and b.shape[0] != num_chains):
        raise ValueError(
            f"{name} must be a scalar or have one value per chain, shape ({num_chains},); "
            f"got shape {b.shape}"
        )
    b = check(
        lambda x: bool(np.all(x >= 0)),  # NaN compares False
        f"{name} must be >= 0 (inf allowed) and not NaN",
        b,
    )
    return jnp.broadcast_to(b, (num_chains,))


def validate_states(states: SpinState, name: str = "states") -> SpinState:
    """Check batched states (spins ``(C, N)`` of +-1) and return them (spins as checked)."""
    spins = jnp.asarray(states.spins)
    if spins.ndim != 2:
        raise ValueError(
            f"{name}.spins must have shape (num_chains, N) (batch single-chain states with "
            f"jax.vmap or init_chains), got shape {spins.shape}"
        )
    return SpinState(validate_spins(spins, f"{name}.spins"), states.cache)


def init(model: SpinModel, spins: jax.Array) -> SpinState:
    """Initial :class:`SpinState` for one chain.

    Parameters
    ----------
    model : SpinModel
        The spin model.
    spins : Array, shape (N,)
        Starting configuration (+-1). For many chains, ``jax.vmap(lambda s: init(model, s))``.

    Returns
    -------
    SpinState
    """
    s = validate_spins(spins)
    if s.ndim != 1:
        raise ValueError(f"spins must have shape (N,), got {s.shape}; vmap for many chains")
    return SpinState(s, model.init_cache(s))


def _check_rule(rule):
    if rule not in _RULES:
        raise ValueError(f"rule must be one of {_RULES}, got {rule!r}")


def build_sequential_kernel(
    model: SpinModel,
    rule: str = "glauber",
    order: str = "random",
    refresh_cache: bool = True,
) -> Callable:
    r"""Sequential single-site kernel: one call performs one sweep of ``N`` updates.

    Each of the ``N`` updates picks a site ``i`` (uniformly at random with ``order="random"``,
    or ``0, 1, ..., N-1`` with ``order="sweep"``), computes the exact energy change
    ``dE = model.delta_energy(cache, s, i)`` and flips ``s_i`` with the probability of
    :func:`flip_probability`; the cache is updated incrementally. Random-site updates satisfy
    detailed balance with respect to :math:`\pi(s) \propto e^{-\beta H(s)}`; the systematic
    sweep leaves :math:`\pi` invariant (Glauber 1963; Metropolis et al. 1953).

    Parameters
    ----------
    model : SpinModel
        The model (see the module docstring).
    rule : {"glauber", "metropolis"}
        Acceptance rule; Glauber is the heat bath for +-1 spins.
    order : {"random", "sweep"}
        Site-selection order.
    refresh_cache : bool
        Recompute the cache with ``model.init_cache`` at the start of each sweep, so that
        floating-point drift of incremental updates cannot accumulate over long runs.

    Returns
    -------
    step : callable
        ``step(rng_key, state, beta) -> (SpinState, SpinInfo)``; ``beta`` may be ``jnp.inf``.
    """
    _check_rule(rule)
    if order not in ("random", "sweep"):
        raise ValueError(f"order must be 'random' or 'sweep', got {order!r}")

    def step(rng_key, state: SpinState, beta):
        spins, cache = state
        n = spins.shape[0]
        if refresh_cache:
            cache = model.init_cache(spins)
        key_site, key_u = jax.random.split(rng_key)
        if order == "random":
            sites = jax.random.randint(key_site, (n,), 0, n)
        else:
            sites = jnp.arange(n)
        uniforms = jax.random.uniform(key_u, (n,), dtype=spins.dtype)
        beta = jnp.asarray(beta, spins.dtype)

        def body(carry, xs):
            s, c, de_sum, flips = carry
            i, u = xs
            de = model.delta_energy(c, s, i)
            accept = u < flip_probability(de, beta, rule)
            c = jax.lax.cond(accept, lambda: model.update_cache(c, s, i), lambda: c)
            s = s.at[i].multiply(jnp.where(accept, -1.0, 1.0).astype(s.dtype))
            de_sum = de_sum + jnp.where(accept, de, 0.0).astype(de_sum.dtype)
            return (s, c, de_sum, flips + accept.astype(jnp.int32)), None

        init_carry = (spins, cache, jnp.zeros((), spins.dtype), jnp.zeros((), jnp.int32))
        (spins, cache, de_sum, flips), _ = jax.lax.scan(body, init_carry, (sites, uniforms))
        info = SpinInfo(flips.astype(spins.dtype) / n, de_sum, flips)
        return SpinState(spins, cache), info

    return step


def build_parallel_kernel(
    model: SpinModel,
    rule: str = "glauber",
    mode: str = "synchronous",
    fraction: float = 0.1,
    colors: jax.Array | None = None,
    generator: str = "threefry",
) -> Callable:
    r"""Parallel kernel: many sites updated at once from their single-flip energy changes.

    All candidate sites use ``dE_i = model.delta_energy_all(cache, s)_i`` computed in the
    *current* configuration and flip independently with :func:`flip_probability`.

    - ``mode="synchronous"``: every site at once (Little dynamics). Its stationary law differs
      from :math:`e^{-\beta H}` at finite ``N`` when sites interact (and with self-interaction);
      named as an explicit alternative, as in the public teaching code of dense Hebbian nets.
    - ``mode="random_subset"``: each site is a candidate independently with probability
      ``fraction``; approaches sequential dynamics as ``fraction * N`` becomes small compared
      with the interaction range.
    - ``mode="colors"``: sites are partitioned by the integer array ``colors`` and each colour
      class is updated in turn (checkerboard). Exact Gibbs/Metropolis if sites of one colour do
      not interact (e.g. nearest-neighbour lattices with a bipartite colouring).

    One call is one sweep (all colours, or one synchronous/random-subset update). The cache is
    recomputed with ``model.init_cache`` after each parallel update.

    Parameters
    ----------
    model : SpinModel
        The model; ``delta_energy_all`` is used if present, otherwise ``vmap`` of
        ``delta_energy`` over sites.
    rule : {"glauber", "metropolis"}
        Acceptance rule.
    mode : {"synchronous", "random_subset", "colors"}
        Which sites update together.
    fraction : float
        Candidate probability for ``"random_subset"``, in ``(0, 1]``.
    colors : Array of int, shape (N,), optional
        Colour of each site for ``"colors"`` (values ``0..C-1``).
    generator : {"threefry", "hash"}
        Uniform generator (:func:`uniforms`).

    Returns
    -------
    step : callable
        ``step(rng_key, state, beta) -> (SpinState, SpinInfo)``.

    References
    ----------
    W. A. Little, "The existence of persistent states in the brain", Math. Biosci. 19 (1974).
    """
    _check_rule(rule)
    if generator not in ("threefry", "hash"):
        raise ValueError(f"generator must be 'threefry' or 'hash', got {generator!r}")
    if mode not in ("synchronous", "random_subset", "colors"):
        raise ValueError(f"mode must be 'synchronous', 'random_subset' or 'colors', got {mode!r}")
    if mode == "random_subset" and not (0.0 < float(fraction) <= 1.0):
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    num_colors = 1
    if mode == "colors":
        if colors is None:
            raise ValueError("colors is required for mode='colors'")
        colors = jnp.asarray(colors)
        if colors.ndim != 1 or not jnp.issubdtype(colors.dtype, jnp.integer):
            raise ValueError("colors must be a 1-d integer array")
        if int(colors.min()) < 0:
            raise ValueError("colors must be non-negative")
        num_colors = int(colors.max()) + 1

    if model.delta_energy_all is not None:
        de_all = model.delta_energy_all
    else:

        def de_all(cache, spins):
            idx = jnp.arange(spins.shape[0])
            return jax.vmap(lambda i: model.delta_energy(cache, spins, i))(idx)

    def one_update(key, spins, cache, beta, mask):
        de = de_all(cache, spins)
        u = uniforms(key, spins.shape, spins.dtype, generator)
        flip = (u < flip_probability(de, beta, rule)) & mask
        spins = jnp.where(flip, -spins, spins)
        de_sum = jnp.sum(jnp.where(flip, de, 0.0))
        return spins, model.init_cache(spins), de_sum, jnp.sum(flip.astype(jnp.int32))

    def step(rng_key, state: SpinState, beta):
        spins, cache = state
        n = spins.shape[0]
        beta = jnp.asarray(beta, spins.dtype)
        if mode == "synchronous":
            spins, cache, de_sum, flips = one_update(
                rng_key, spins, cache, beta, jnp.ones(n, bool)
            )
            attempts = n
        elif mode == "random_subset":
            k_mask, k_u = jax.random.split(rng_key)
            mask = jax.random.uniform(k_mask, (n,)) < fraction
            spins, cache, de_sum, flips = one_update(k_u, spins, cache, beta, mask)
            attempts = jnp.maximum(jnp.sum(mask.astype(jnp.int32)), 1)
        else:
            if colors.shape != (n,):
                raise ValueError(f"colors must have shape ({n},), got {colors.shape}")

            def body(carry, xs):
                s, c, d, f = carry
                key, col = xs
                s, c, d1, f1 = one_update(key, s, c, beta, colors == col)
                return (s, c, d + d1, f + f1), None

            keys = jax.random.split(rng_key, num_colors)
            carry = (spins, cache, jnp.zeros((), spins.dtype), jnp.zeros((), jnp.int32))
            (spins, cache, de_sum, flips), _ = jax.lax.scan(
                body, carry, (keys, jnp.arange(num_colors))
            )
            attempts = n
        info = SpinInfo(flips.astype(spins.dtype) / attempts, de_sum.astype(spins.dtype), flips)
        return SpinState(spins, cache), info

    return step


def init_chains(model: SpinModel, spins: jax.Array) -> SpinState:
    """Batched :class:`SpinState` of ``C`` chains (leading axis), for
    :func:`build_chain_parallel_kernel` and :func:`run_chains`.

    Parameters
    ----------
    model : SpinModel
        The spin model.
    spins : Array, shape (C, N)
        Starting configurations (+-1).

    Returns
    -------
    SpinState
        ``spins`` of shape (C, N) and the cache batched over chains.
    """
    s = validate_spins(spins)
    if s.ndim != 2:
        raise ValueError(f"spins must have shape (C, N), got {s.shape}")
    return SpinState(s, jax.vmap(model.init_cache)(s))


def _mix32(x):
    """lowbias32 integer hash (C. Wellons, "Hash function prospector", 2018)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def uniforms(rng_key, shape, dtype=jnp.float32, generator: str = "threefry"):
    """Uniform draws on [0, 1) for the spin kernels.

    ``generator="threefry"`` is :func:`jax.random.uniform`. ``generator="hash"`` draws two
    32-bit seeds from ``rng_key`` and hashes a counter with two rounds of the lowbias32
    integer hash (24-bit uniforms): several times cheaper on CPU, where threefry dominates
    the cost of a heat-bath update, but only a statistical-quality generator (not a
    cryptographic one like threefry; do not use it for anything but Monte Carlo decisions).
    Both are deterministic functions of ``rng_key``.

    Parameters
    ----------
    rng_key : PRNGKey
        Key.
    shape : tuple of int
        Output shape (at most ``2**32`` entries).
    dtype : dtype
        Floating output dtype.
    generator : {"threefry", "hash"}
        Bit generator.

    Returns
    -------
    Array
    """
    if generator == "threefry":
        return jax.random.uniform(rng_key, shape, dtype=dtype)
    if generator != "hash":
        raise ValueError(f"generator must be 'threefry' or 'hash', got {generator!r}")
    seeds = jax.random.bits(rng_key, (2,), jnp.uint32)
    size = math.prod(shape)
    return _hash_uniform(jnp.arange(size, dtype=jnp.uint32).reshape(shape), seeds, dtype)


def _hash_uniform(ctr, seeds, dtype):
    """24-bit uniforms from uint32 counters: entry ``j`` of ``uniforms(.., "hash")``."""
    x = _mix32(ctr * jnp.uint32(0x9E3779B9) + seeds[0])
    x = _mix32(x ^ seeds[1])
    return (x >> 8).astype(dtype) * jnp.asarray(2.0**-24, dtype)


def build_chain_parallel_kernel(
    model: SpinModel,
    rule: str = "glauber",
    order: str = "sweep",
    refresh_cache: bool = True,
    unroll: int = 1,
    generator: str = "threefry",
    sweeps_per_step: int = 1,
) -> Callable:
    r"""Exact sequential single-site dynamics of ``C`` chains at once, vectorised over chains.

    All chains visit the **same** site sequence: ``0..N-1`` (``order="sweep"``) or one random
    permutation of the sites per sweep (``order="permutation"``, drawn independently of the
    state). At each site every chain computes its exact energy change from its own cache
    (``model.site_delta_energy``; O(K) for the Hebbian overlap cache) and flips with its own
    random threshold. Inside a step the spins are held lane-major, shape ``(N, C)``, and the
    caches chain-last (e.g. ``(K, C)`` overlaps), so every per-site operation is one vector
    operation over the ``C`` chains. With ``generator="hash"`` the uniforms of site ``t`` are
    hashed from a counter inside the loop (exactly row ``t`` of :func:`uniforms` with the
    sweep's key), so no random array is stored; ``"threefry"`` draws the sweep's ``(N, C)``
    uniforms in one call beforehand. The logistic is evaluated as ``(1 - tanh(x/2))/2``. The
    per-site loop overhead is thus shared by all chains instead of being paid per chain as
    with ``jax.vmap`` of :func:`build_sequential_kernel`.

    Exactness: each chain on its own is a sequential heat-bath (or Metropolis) sampler whose
    site order does not depend on its state, so each chain leaves :math:`e^{-\beta H}`
    invariant. A systematic scan (``"sweep"``) is a composition of reversible single-site
    kernels: stationary but not itself reversible; a fresh random permutation per sweep
    (``"permutation"``) makes the sweep kernel reversible on average over orders (Glauber
    1963). Chains share the site order only; their thresholds are independent.

    Parameters
    ----------
    model : SpinModel
        Must provide ``site_delta_energy`` and ``site_update_cache``.
    rule : {"glauber", "metropolis"}
        Acceptance rule.
    order : {"sweep", "permutation"}
        Shared site order of each sweep.
    refresh_cache : bool
        Recompute caches with ``model.init_cache`` at the start of each step (every
        ``sweeps_per_step`` sweeps), so floating-point drift of the incremental updates
        cannot accumulate over long runs.
    unroll : int
        Sites per iteration of the inner ``lax.fori_loop``.
    generator : {"threefry", "hash"}
        Uniform generator (:func:`uniforms`); ``"hash"`` is much cheaper on CPU.
    sweeps_per_step : int
        Sweeps per call (``>= 1``); the lane-major layout is kept across them.

    Returns
    -------
    step : callable
        ``step(rng_key, states, beta) -> (SpinState, SpinInfo)``; ``states`` batched over
        chains (:func:`init_chains`), ``beta`` a scalar or shape (C,) (``jnp.inf`` allowed);
        the info fields have shape (C,). One call is ``sweeps_per_step`` sweeps
        (``N * sweeps_per_step`` updates per chain). Run it with
        ``run_chains(..., batched=True)``.
    """
    _check_rule(rule)
    if order not in ("sweep", "permutation"):
        raise ValueError(f"order must be 'sweep' or 'permutation', got {order!r}")
    if generator not in ("threefry", "hash"):
        raise ValueError(f"generator must be 'threefry' or 'hash', got {generator!r}")
    if int(unroll) < 1:
        raise ValueError(f"unroll must be >= 1, got {unroll}")
    if int(sweeps_per_step) < 1:
        raise ValueError(f"sweeps_per_step must be >= 1, got {sweeps_per_step}")
    if model.site_delta_energy is None or model.site_update_cache is None:
        raise ValueError(
            "model must define site_delta_energy and site_update_cache for "
            "build_chain_parallel_kernel"
        )
    sweeps = int(sweeps_per_step)
    # Caches are held chain-last inside the step, so per-site work is vectorised over chains
    # (a (K, C) overlap cache reduces over K with C contiguous).
    site_de = jax.vmap(model.site_delta_energy, in_axes=(-1, 0, None))
    site_up = jax.vmap(model.site_update_cache, in_axes=(-1, 0, None), out_axes=-1)
    init_lanes = jax.vmap(model.init_cache, in_axes=1, out_axes=-1)

    def step(rng_key, states: SpinState, beta):
        spins, cache = states
        c, n = spins.shape
        beta = jnp.broadcast_to(jnp.asarray(beta, spins.dtype), (c,))
        zero = jnp.zeros((), spins.dtype)

        def one_sweep(k, carry):
            s_t, cch, de_sum, flips = carry
            key_site, key_u = jax.random.split(jax.random.fold_in(rng_key, k))
            if generator == "hash":
                # row t of uniforms(key_u, (n, c), dtype, "hash"), generated inside the loop
                seeds = jax.random.bits(key_u, (2,), jnp.uint32)
                lanes = jnp.arange(c, dtype=jnp.uint32)
                draw = lambda t: _hash_uniform(
                    lanes + jnp.asarray(t, jnp.uint32) * jnp.uint32(c), seeds, spins.dtype
                )
            else:
                u_all = uniforms(key_u, (n, c), spins.dtype, generator)
                draw = lambda t: jax.lax.dynamic_index_in_dim(u_all, t, 0, keepdims=False)
            sites = jax.random.permutation(key_site, n) if order == "permutation" else None

            def body(t, inner):
                # Each site is visited once per sweep, so its value before the update is read
                # from the sweep's start configuration ``s_t`` (loop-invariant) and the result
                # written to a separate buffer: XLA then updates that buffer in place.
                out, cch, de_sum = inner
                i = t if sites is None else sites[t]
                si = jax.lax.dynamic_index_in_dim(s_t, i, 0, keepdims=False)
                de = site_de(cch, si, i)
                accept = draw(t) < _flip_probability_fast(de, beta, rule)
                new = site_up(cch, si, i)
                cch = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), new, cch)
                out = jax.lax.dynamic_update_index_in_dim(out, jnp.where(accept, -si, si), i, 0)
                return out, cch, de_sum + jnp.where(accept, de, zero)

            s_new, cch, de_sum = jax.lax.fori_loop(
                0, n, body, (s_t, cch, de_sum), unroll=int(unroll)
            )
            # every site is visited exactly once per sweep: changed sites = accepted flips
            flips = flips + jnp.sum((s_new != s_t).astype(jnp.int32), axis=0)
            return s_new, cch, de_sum, flips

        if refresh_cache:
            cache_t = init_lanes(spins.T)
        else:
            cache_t = jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, 0, -1), cache)
        carry = (spins.T, cache_t, jnp.zeros((c,), spins.dtype), jnp.zeros((c,), jnp.int32))
        s_t, cache_t, de_sum, flips = jax.lax.fori_loop(0, sweeps, one_sweep, carry)
        cache = jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, -1, 0), cache_t)
        info = SpinInfo(flips.astype(spins.dtype) / (n * sweeps), de_sum, flips)
        return SpinState(s_t.T, cache), info

    return step


@functools.lru_cache(maxsize=32)
def _thinned_key_fn(thin: int) -> Callable:
    """Key of global step ``t``: ``fold_in(fold_in(rng_key, t // thin), t % thin)``, i.e.
    ``split(split(rng_key, num_steps // thin)[t // thin], thin)[t % thin]`` (equal under JAX's
    default partitionable threefry)."""

    def key_fn(rng_key, t):
        return jax.random.fold_in(jax.random.fold_in(rng_key, t // thin), t % thin)

    return key_fn


@functools.lru_cache(maxsize=32)
def _batched_step(step: Callable, batched: bool, num_chains: int) -> Callable:
    if batched:
        return step
    return runner.vmap_chains(step, num_chains, args_axes=(0,))


def run_chains(
    rng_key: jax.Array,
    step: Callable,
    states: SpinState,
    beta,
    num_steps: int,
    observe_fn: Callable[[SpinState], Any] | None = None,
    thin: int = 1,
    *,
    batched: bool = False,
    progress_bar: bool | None = False,
):
    """Run many independent chains on the chain runner (:func:`samplers.runner.run`).

    Parameters
    ----------
    rng_key : PRNGKey
        Key for the dynamics; step ``t`` uses ``fold_in(fold_in(rng_key, t // thin), t % thin)``
        and, for single-chain kernels, chain ``c`` its ``c``-th split.
    step : callable
        A single-chain kernel from :func:`build_sequential_kernel` or
        :func:`build_parallel_kernel` (vmapped over chains), or, with ``batched=True``, a
        kernel over all chains such as :func:`build_chain_parallel_kernel`.
    states : SpinState
        Batched states, leading axis = chains (e.g. :func:`init_chains`).
    beta : float or Array
        Inverse temperature (``>= 0``, ``inf`` allowed), a scalar shared by all chains or one
        per chain (shape (C,)).
    num_steps : int
        Number of kernel steps (sweeps); must be a multiple of ``thin``.
    observe_fn : callable, optional
        ``observe_fn(state) -> pytree`` for ONE chain, recorded every ``thin`` steps.
    thin : int
        Record every ``thin``-th step; discarded steps are never stored.
    batched : bool
        Whether ``step`` already takes the states of all chains.
    progress_bar : bool or None
        Progress bar of eager runs (``None``: :func:`samplers.runner.progress_default`).

    Returns
    -------
    final : SpinState
        Batched final states.
    trace : pytree or None
        ``observe_fn`` outputs, leaves ``(C, num_steps // thin, ...)``.
    infos : SpinInfo
        Per-chain infos of the recorded steps, ``(C, num_steps // thin)``.

    Notes
    -----
    ``beta`` and the spins are checked on the host when they are concrete; under ``jit`` or
    ``vmap`` (traced arguments) the same checks run inside the compiled program and a failure
    raises ``jax.errors.JaxRuntimeError`` carrying the same message when the program runs.
    """
    if isinstance(num_steps, bool) or isinstance(thin, bool):
        raise ValueError("num_steps and thin must be integers, not bools")
    num_steps = int(num_steps)
    thin = int(thin)
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if thin < 1 or num_steps % thin:
        raise ValueError(f"thin must be >= 1 and divide num_steps, got thin={thin}")
    states = validate_states(states)
    num_chains = states.spins.shape[0]
    beta = validate_beta(beta, num_chains)
    out = runner.run(
        rng_key,
        _batched_step(step, bool(batched), num_chains),
        states,
        num_steps // thin,
        args=(beta,),
        thinning=thin,
        observe=observe_fn,
        key_fn=_thinned_key_fn(thin),
        progress_bar=progress_bar,
    )
    return out.state, out.trace, out.info


def enumerate_states(n: int, dtype=jnp.float32) -> jax.Array:
    """All ``2**n`` configurations of ``n`` spins, shape ``(2**n, n)``, row ``k`` = binary ``k``.

    Bit ``j`` (least significant first) of ``k`` set means ``s_j = +1``. For exact checks on
    tiny systems (``n <= 20``).

    Parameters
    ----------
    n : int
        Number of spins, ``1 <= n <= 20``.
    dtype : dtype
        Output dtype.

    Returns
    -------
    Array, shape (2**n, n)
    """
    if not 1 <= int(n) <= 20:
        raise ValueError(f"n must be in [1, 20], got {n}")
    k = jnp.arange(2**n)[:, None]
    bits = (k >> jnp.arange(n)[None, :]) & 1
    return (2 * bits - 1).astype(dtype)
