"""Sampling from a (monotone) deep Boltzmann machine by block Gibbs sweeps.

The mean-field fixed point is a deterministic approximation; samples from
:math:`p(z) \\propto \\exp(\\tfrac12 z^T W z + b^T z)` itself, and from conditionals given a
partial image, come from Gibbs sweeps with :mod:`samplers.gibbs`. ``W = D - A^T A`` couples
variables inside a layer (lateral terms), so variables are updated one at a time; the row
activations :math:`a_r = A_r z` are cached, making the conditional logits of variable ``j``

.. math:: \\ell_j = D_j z_j - \\sum_r A_{r,j}^T a_r + b_j

(the :math:`D_j z_j` term cancels the self-coupling, since ``W`` is hollow) and a full sweep
cost one matrix-vector product. Many chains run in parallel (vmap).

References: Salakhutdinov and Hinton, "Deep Boltzmann machines", AISTATS 2009; Feng, Winston
and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
"""

import jax
import jax.numpy as jnp

from bayesnn.boltzmann._precision import einsum as _einsum
from bayesnn.boltzmann._precision import matmul as _mm
from bayesnn.boltzmann.conv import ConvMDBMSpec
from samplers import gibbs

__all__ = ["gibbs_kernel", "init_chains", "sample"]


def _row_members(spec):
    members = [[] for _ in spec.layers]
    for r, (_, lids) in enumerate(spec.rows):
        for i, lid in enumerate(lids):
            members[lid].append((r, i))
    return members


def _cache_fn(coupling, spec):
    def fn(units):
        return tuple(
            sum(_einsum("rnk,nk->r", a, units[lid]) for lid, a in zip(lids, row, strict=True))
            for (_, lids), row in zip(spec.rows, coupling.A, strict=True)
        )

    return fn


def gibbs_kernel(coupling, spec):
    """One-sweep Gibbs kernel for one chain of the DBM, with cached row activations.

    Parameters
    ----------
    coupling : Coupling
    spec : MDBMSpec

    Returns
    -------
    kernel : callable
        ``(rng_key, GibbsState, beta=1.0) -> (GibbsState, GibbsInfo)``.
    cache_fn : callable
        ``units -> cache`` to build initial states with :func:`samplers.gibbs.init`.

    References
    ----------
    Salakhutdinov and Hinton, AISTATS 2009.
    """
    if isinstance(spec, ConvMDBMSpec):
        raise ValueError("gibbs_kernel needs a dense MDBMSpec (convolutional specs: not yet)")
    members = _row_members(spec)

    def logits_fn(state, lid, j):
        z = jax.lax.dynamic_index_in_dim(state.units[lid], j, 0, keepdims=False)
        d = jax.lax.dynamic_index_in_dim(coupling.D[lid], j, 0, keepdims=False)
        out = _mm(d, z) + jax.lax.dynamic_index_in_dim(coupling.b[lid], j, 0, keepdims=False)
        for r, i in members[lid]:
            a = jax.lax.dynamic_index_in_dim(coupling.A[r][i], j, 1, keepdims=False)
            out = out - _mm(a.T, state.cache[r])
        return out[None, :]

    def update_fn(cache, lid, j, old, new):
        cache = list(cache)
        for r, i in members[lid]:
            a = jax.lax.dynamic_index_in_dim(coupling.A[r][i], j, 1, keepdims=False)
            cache[r] = cache[r] + _mm(a, new[0] - old[0])
        return tuple(cache)

    kernel = gibbs.build_kernel(logits_fn, (1,) * len(spec.layers), update_fn)
    return kernel, _cache_fn(coupling, spec)


def init_chains(rng_key, coupling, spec, num_chains, evidence=None):
    """Random one-hot starting states for ``num_chains`` chains, observed variables clamped.

    Parameters
    ----------
    rng_key : PRNGKey
    coupling : Coupling
    spec : MDBMSpec
    num_chains : int
    evidence : Evidence, optional
        Batched over chains (``mask[l]`` of shape ``(num_chains, n_l)``).

    Returns
    -------
    GibbsState
        Batched over chains.

    References
    ----------
    Salakhutdinov and Hinton, AISTATS 2009.
    """
    # one uniform draw for all layers (a single PRNG call keeps the compiled program small)
    u = jax.random.uniform(rng_key, (num_chains, sum(lay.num_vars for lay in spec.layers)))
    units, i = [], 0
    for lay in spec.layers:
        idx = jnp.floor(u[:, i : i + lay.num_vars] * lay.num_states).astype(jnp.int32)
        units.append(jax.nn.one_hot(jnp.minimum(idx, lay.num_states - 1), lay.num_states))
        i += lay.num_vars
    units = tuple(units)
    if evidence is None:
        clamp = tuple(jnp.zeros((num_chains, lay.num_vars), bool) for lay in spec.layers)
    else:
        if evidence.mask[0].shape[0] != num_chains:
            raise ValueError(
                f"evidence must be batched over num_chains={num_chains}, got batch "
                f"{evidence.mask[0].shape[0]}"
            )
        clamp = tuple(m > 0.5 for m in evidence.mask)
        units = tuple(
            jnp.where(c[..., None], v, u)
            for u, c, v in zip(units, clamp, evidence.values, strict=True)
        )
    _, cache_fn = gibbs_kernel(coupling, spec)
    return jax.vmap(lambda u, c: gibbs.init(u, c, cache_fn))(units, clamp)


def sample(
    rng_key,
    coupling,
    spec,
    num_chains,
    num_samples,
    num_burnin=100,
    thin=1,
    evidence=None,
    beta=1.0,
    transform=None,
):
    """Draw samples (or conditional samples given evidence) by Gibbs sweeps, many chains.

    Parameters
    ----------
    rng_key : PRNGKey
    coupling : Coupling
    spec : MDBMSpec
    num_chains, num_samples, num_burnin, thin : int
    evidence : Evidence, optional
        Per-chain clamping (e.g. the observed part of an image, repeated per chain).
    beta : float
        Inverse temperature.
    transform : callable, optional
        ``GibbsState -> pytree`` to store (default: all units).

    Returns
    -------
    trace : pytree
        Leaves ``(num_chains, num_samples, ...)``.
    info : GibbsInfo

    References
    ----------
    Salakhutdinov and Hinton, AISTATS 2009; Feng, Winston and Kolter, TMLR 2023.
    """
    if int(num_chains) < 1:
        raise ValueError(f"num_chains must be >= 1, got {num_chains}")
    k_init, k_run = jax.random.split(rng_key)
    states = init_chains(k_init, coupling, spec, num_chains, evidence)
    kernel, _ = gibbs_kernel(coupling, spec)
    _, trace, info = gibbs.sample_chains(
        k_run, kernel, states, num_samples, num_burnin, thin, transform, beta
    )
    return trace, info
