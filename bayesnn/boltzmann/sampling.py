"""Sampling from a (monotone) deep Boltzmann machine by block Gibbs sweeps.

The mean-field fixed point is a deterministic approximation; samples from
:math:`p(z) \\propto \\exp(\\tfrac12 z^T W z + b^T z)` itself, and from conditionals given a
partial image, come from Gibbs sweeps with :mod:`samplers.gibbs`. ``W = D - A^T A`` couples
variables inside a layer (lateral terms), so variables are updated one at a time; the row
activations :math:`a_r = A_r z` are cached, making the conditional logits of variable ``j``

.. math:: \\ell_j = D_j z_j - \\sum_r A_{r,j}^T a_r + b_j

(the :math:`D_j z_j` term cancels the self-coupling, since ``W`` is hollow) and a full sweep
cost one matrix-vector product. Many chains run in parallel (vmap).

Convolutional models (:class:`ConvMDBMSpec`) use **chromatic block Gibbs**: the variables are
coloured greedily so that no two variables of one colour interact (:math:`W_{ij} = 0`);
given the others, the variables of one colour are then conditionally independent, with
conditionals :math:`\\operatorname{softmax}(\\beta (W z + b)_j)` (``W`` is hollow), so one colour
is resampled at once from one convolutional matvec, and a sweep costs one matvec per colour.
The colouring is computed once on the host from the conv structure alone (all-ones kernels,
one probe per position; ``W`` is never materialised), see :func:`color_classes`.

References: Salakhutdinov and Hinton, "Deep Boltzmann machines", AISTATS 2009; Feng, Winston
and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesnn.boltzmann._precision import einsum as _einsum
from bayesnn.boltzmann._precision import matmul as _mm
from bayesnn.boltzmann.conv import ConvCoupling, ConvMDBMSpec, conv_matvec
from bayesnn.boltzmann.parameterization import coupling_matvec, dense_coupling_matrix
from samplers import gibbs

__all__ = ["gibbs_kernel", "init_chains", "sample", "ColoredState", "color_classes"]


class ColoredState(NamedTuple):
    """State of chromatic block Gibbs chains (convolutional models).

    Attributes
    ----------
    units : tuple of (chains, n_l, k_l) one-hot arrays
    clamp : tuple of (chains, n_l) bool arrays
        True where the variable is observed (never resampled).

    References
    ----------
    Gonzalez et al., "Parallel Gibbs sampling: from colored fields to thin junction trees",
    AISTATS 2011.
    """

    units: tuple
    clamp: tuple


def _greedy_colors(neighbours, num_vars):
    """Greedy colouring: ``neighbours(v)`` lists the variables that may interact with ``v``."""
    color = np.full(num_vars, -1)
    for v in range(num_vars):
        used = set(color[neighbours(v)].tolist())
        c = 0
        while c in used:
            c += 1
        color[v] = c
    return color


def _dense_neighbours(coupling, spec):
    """Exact interaction graph from the materialised ``W`` (dense specs)."""
    with jax.ensure_compile_time_eval():
        W = dense_coupling_matrix(coupling, spec)
    if isinstance(W, jax.core.Tracer):
        raise ValueError(
            "color_classes needs a concrete coupling: close over it instead of passing it as "
            "a traced argument"
        )
    W = np.abs(np.asarray(W)) > 0
    var = np.concatenate(
        [
            off + np.repeat(np.arange(lay.num_vars), lay.num_states)
            for off, lay in zip(
                np.cumsum([0] + [lay.num_vars for lay in spec.layers])[:-1],
                spec.layers,
                strict=True,
            )
        ]
    )
    nv = int(var.max()) + 1
    adj = np.zeros((nv, nv), bool)
    ii, jj = np.nonzero(W)
    adj[var[ii], var[jj]] = True
    np.fill_diagonal(adj, False)
    return lambda v: adj[v], nv


def _conv_neighbours(spec, chunk=128):
    """Interaction graph of a conv spec from its structure alone (never materialises ``W``).

    With all-ones kernels, ``(A^T A) e_P`` for the indicator ``e_P`` of every state at one
    position ``P`` is non-zero exactly on the variables that share a row-space output with
    some variable at ``P``: a superset of each of those variables' neighbours (one probe per
    position, ``chunk`` probes per matvec).
    """
    lays = spec.layers
    ones = ConvCoupling(
        tuple(
            tuple(jnp.ones((k, k, lays[lid].channels, row.channels)) for lid, k in row.reads)
            for row in spec.rows
        ),
        None,
        tuple(jnp.zeros((lay.num_vars, lay.states, lay.states)) for lay in lays),
        tuple(jnp.ones(lay.num_vars) for lay in lays),
    )
    npos = [lay.height * lay.width for lay in lays]
    var_off = np.cumsum([0] + [lay.num_vars for lay in lays])
    pos_off = np.cumsum([0] + npos)
    matvec = jax.jit(lambda q: conv_matvec(ones, spec, q))
    support = []
    for start in range(0, pos_off[-1], chunk):
        probes = np.arange(start, min(start + chunk, pos_off[-1]))
        q = []
        for lid, lay in enumerate(lays):
            x = np.zeros((chunk, lay.height * lay.width, lay.groups * lay.states), np.float32)
            mine = (probes >= pos_off[lid]) & (probes < pos_off[lid + 1])
            x[np.flatnonzero(mine), probes[mine] - pos_off[lid]] = 1.0
            q.append(jnp.asarray(x.reshape(chunk, lay.num_vars, lay.states)))
        out = matvec(tuple(q))
        hit = np.concatenate([np.any(np.asarray(o) != 0, axis=-1) for o in out], axis=1)
        support.extend(np.flatnonzero(h) for h in hit[: len(probes)])
    pos_of = np.concatenate(
        [pos_off[lid] + np.arange(lay.num_vars) // lay.groups for lid, lay in enumerate(lays)]
    )

    def neighbours(v):
        nb = support[pos_of[v]]
        return nb[nb != v]

    return neighbours, int(var_off[-1])


def color_classes(coupling, spec):
    """Greedy colouring of the variables so that same-coloured variables do not interact.

    Dense specs: from the materialised ``W`` (exact). Convolutional specs: from the
    structure alone, one all-ones-kernel matvec per ``128`` positions, never materialising
    ``W`` (a conservative graph: variables at one position count as neighbours of everything
    any of them touches), so it scales to the paper's 27,450-state architecture.

    Parameters
    ----------
    coupling : Coupling or ConvCoupling
    spec : MDBMSpec or ConvMDBMSpec

    Returns
    -------
    colors : tuple of int32 arrays (n_l,)
        Colour of each variable, per layer.
    num_colors : int

    References
    ----------
    Gonzalez et al., "Parallel Gibbs sampling: from colored fields to thin junction trees",
    AISTATS 2011.
    """
    if isinstance(spec, ConvMDBMSpec):
        with jax.ensure_compile_time_eval():  # concrete even inside a traced sample()
            neighbours, nv = _conv_neighbours(spec)
    else:
        neighbours, nv = _dense_neighbours(coupling, spec)
    color = _greedy_colors(neighbours, nv)
    out, i = [], 0
    for lay in spec.layers:
        out.append(jnp.asarray(color[i : i + lay.num_vars], jnp.int32))
        i += lay.num_vars
    return tuple(out), int(color.max()) + 1


def _colored_sample(
    rng_key, coupling, spec, units, clamp, num_samples, num_burnin, thin, beta, transform
):
    colors, num_colors = color_classes(coupling, spec)

    def sweep(key, units):
        def one(c, carry):
            units, key = carry
            key, sub = jax.random.split(key)
            wz = coupling_matvec(coupling, spec, units)
            keys = jax.random.split(sub, len(units))
            new = []
            for k, u, w, b, cl, col in zip(
                keys, units, wz, coupling.b, clamp, colors, strict=True
            ):
                draw = jax.random.categorical(k, beta * (w + b[None]), axis=-1)
                upd = (col[None] == c) & ~cl
                new.append(jnp.where(upd[..., None], jax.nn.one_hot(draw, u.shape[-1]), u))
            return tuple(new), key

        units, _ = jax.lax.fori_loop(0, num_colors, one, (units, key))
        return units

    transform = (lambda s: s.units) if transform is None else transform

    def burn(i, carry):
        units, key = carry
        key, sub = jax.random.split(key)
        return sweep(sub, units), key

    units, key = jax.lax.fori_loop(0, num_burnin, burn, (units, rng_key))

    def draw(carry, _):
        units, key = carry
        units, key = jax.lax.fori_loop(0, thin, burn, (units, key))
        return (units, key), transform(ColoredState(units, clamp))

    (units, _), trace = jax.lax.scan(draw, (units, key), None, length=num_samples)
    trace = jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), trace)
    return trace, dict(num_colors=num_colors)


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
        Batched over chains (a :class:`ColoredState` for convolutional specs).

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
    if isinstance(spec, ConvMDBMSpec):
        return ColoredState(units, clamp)
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
        For convolutional specs (chromatic block Gibbs, see the module docstring): a dict
        with ``num_colors``; ``transform`` then receives a :class:`ColoredState`.

    References
    ----------
    Salakhutdinov and Hinton, AISTATS 2009; Feng, Winston and Kolter, TMLR 2023.
    """
    if int(num_chains) < 1:
        raise ValueError(f"num_chains must be >= 1, got {num_chains}")
    k_init, k_run = jax.random.split(rng_key)
    states = init_chains(k_init, coupling, spec, num_chains, evidence)
    if isinstance(spec, ConvMDBMSpec):
        return _colored_sample(
            k_run,
            coupling,
            spec,
            states.units,
            states.clamp,
            num_samples,
            num_burnin,
            thin,
            beta,
            transform,
        )
    kernel, _ = gibbs_kernel(coupling, spec)
    _, trace, info = gibbs.sample_chains(
        k_run, kernel, states, num_samples, num_burnin, thin, transform, beta
    )
    return trace, info
