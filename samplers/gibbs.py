"""Block Gibbs sampling for models of categorical (one-hot) units, many chains at once.

The state is a tuple of groups; group ``g`` holds ``n_g`` categorical variables of ``k_g``
states as a one-hot array ``(n_g, k_g)``. A sweep visits the groups in order; inside group
``g`` the variables are updated ``chunk_sizes[g]`` at a time (a chunk must be conditionally
independent given everything else: the whole group for a bipartite layer, single variables
for a layer with lateral couplings). For the chunk starting at ``start`` the model supplies
the conditional logits

.. math:: \\log p(z_C = e_s \\mid z_{-C}) = \\beta \\, \\ell_{C,s} + \\text{const},

through ``block_logits_fn(state, group, start) -> (chunk, k_g)``; ``group`` is a Python int,
``start`` a traced int. An optional ``cache`` (for example ``A z`` for a factored coupling)
is kept up to date by ``cache_update_fn`` so each chunk update costs O(chunk) instead of a
full matrix-vector product. Clamped (observed) variables keep their initial values.

Chains are vmapped and run by the chain runner (:mod:`samplers.runner`): burn-in and
thinning inside ``lax.scan``, traces laid out ``(chains, draws, ...)``. This module never
imports ``bayesnn``.

Colour classes: a chromatic sweep over a graph colouring is a block Gibbs sweep whose chunks
are the colour classes (variables of one class are conditionally independent given the rest).
Either order the variables by class so each class is a contiguous chunk of one group, or write
the sweep as ``lax.scan`` over classes with masked updates (as
:func:`samplers.spins.build_parallel_kernel` does with ``mode="colors"``); either way the
sweep is one ``kernel(rng_key, state, beta) -> (state, info)`` call and
:func:`sample_chains` (or :func:`samplers.runner.run` with any key scheme) runs it.

References: Geman and Geman, "Stochastic relaxation, Gibbs distributions, and the Bayesian
restoration of images", IEEE TPAMI 1984; Salakhutdinov and Hinton, "Deep Boltzmann
machines", AISTATS 2009 (layer-wise block Gibbs).
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from samplers import runner

__all__ = ["GibbsState", "GibbsInfo", "init", "build_kernel", "sample_chains"]


class GibbsState(NamedTuple):
    """State of one chain.

    Attributes
    ----------
    units : tuple of (n_g, k_g) one-hot arrays
    clamp : tuple of (n_g,) bool arrays
        True for observed variables, which are never resampled.
    cache : pytree
        Model-maintained summary of ``units`` (``()`` if unused).
    """

    units: tuple
    clamp: tuple
    cache: Any


class GibbsInfo(NamedTuple):
    """Per-sweep diagnostics: ``num_changed``, how many variables changed state."""

    num_changed: jax.Array


def init(units, clamp=None, cache_fn=None):
    """Initial state of one chain.

    Parameters
    ----------
    units : sequence of (n_g, k_g) arrays
        One-hot starting values (observed variables hold their observations).
    clamp : sequence of (n_g,) bool arrays, optional
        Observed variables (default: none).
    cache_fn : callable, optional
        ``units -> cache``.

    Returns
    -------
    GibbsState

    References
    ----------
    Geman and Geman, IEEE TPAMI 1984.
    """
    units = tuple(jnp.asarray(u) for u in units)
    for g, u in enumerate(units):
        if u.ndim != 2:
            raise ValueError(f"units[{g}] must have shape (n_vars, n_states), got {u.shape}")
    if clamp is None:
        clamp = tuple(jnp.zeros(u.shape[0], bool) for u in units)
    else:
        clamp = tuple(jnp.asarray(c, bool) for c in clamp)
        if len(clamp) != len(units):
            raise ValueError("clamp must have one mask per group of units")
        for g, (c, u) in enumerate(zip(clamp, units, strict=True)):
            if c.shape != u.shape[:1]:
                raise ValueError(f"clamp[{g}] must have shape {u.shape[:1]}, got {c.shape}")
    cache = () if cache_fn is None else cache_fn(units)
    return GibbsState(units, clamp, cache)


def build_kernel(block_logits_fn, chunk_sizes, cache_update_fn=None):
    """Build a one-sweep block Gibbs kernel.

    Parameters
    ----------
    block_logits_fn : callable
        ``(state, group: int, start: int array) -> logits (chunk, k_g)``: conditional logits
        of variables ``start .. start + chunk - 1`` of ``group`` given the rest.
    chunk_sizes : sequence of int
        Variables updated together in each group (must divide ``n_g``); they must be
        conditionally independent given the other variables.
    cache_update_fn : callable, optional
        ``(cache, group, start, old (chunk, k_g), new (chunk, k_g)) -> cache``.

    Returns
    -------
    kernel : callable
        ``kernel(rng_key, state, beta=1.0) -> (state, GibbsInfo)`` for one chain; ``beta``
        is an inverse temperature multiplying the logits. Each chunk is drawn by the
        Gumbel-max trick, :math:`s = \\arg\\max_s (\\beta \\ell_s + G_s)` with i.i.d. standard
        Gumbel :math:`G` (one PRNG draw per sweep).

    References
    ----------
    Geman and Geman, IEEE TPAMI 1984; Salakhutdinov and Hinton, AISTATS 2009.
    """
    chunk_sizes = tuple(int(c) for c in chunk_sizes)
    if any(c < 1 for c in chunk_sizes):
        raise ValueError(f"chunk_sizes must be positive, got {chunk_sizes}")

    def kernel(rng_key, state, beta=1.0):
        if len(state.units) != len(chunk_sizes):
            raise ValueError("chunk_sizes must have one entry per group of units")
        shapes = [u.shape for u in state.units]
        for g, (c, (n, _)) in enumerate(zip(chunk_sizes, shapes, strict=True)):
            if n % c:
                raise ValueError(f"chunk_sizes[{g}] = {c} does not divide n_vars = {n}")
        # Gumbel-max: argmax(beta * logits + G) ~ softmax(beta * logits); one draw per sweep
        # (a single PRNG call keeps the compiled program small).
        sizes = [n * k for n, k in shapes]
        noise = jax.random.gumbel(rng_key, (sum(sizes),))
        changed = jnp.array(0, jnp.int32)
        off = 0
        for g, c in enumerate(chunk_sizes):
            n, k = shapes[g]
            gum = noise[off : off + n * k].reshape(n // c, c, k)
            off += n * k

            def body(i, carry, g=g, c=c, k=k, gum=gum):
                st, ch = carry
                start = i * c
                logits = beta * block_logits_fn(st, g, start)
                new_idx = jnp.argmax(logits + gum[i], axis=-1)
                new = jax.nn.one_hot(new_idx, k, dtype=st.units[g].dtype)
                old = jax.lax.dynamic_slice_in_dim(st.units[g], start, c, 0)
                fixed = jax.lax.dynamic_slice_in_dim(st.clamp[g], start, c, 0)
                new = jnp.where(fixed[:, None], old, new)
                units = list(st.units)
                units[g] = jax.lax.dynamic_update_slice_in_dim(units[g], new, start, 0)
                cache = st.cache
                if cache_update_fn is not None:
                    cache = cache_update_fn(cache, g, start, old, new)
                ch = ch + jnp.sum(jnp.any(new != old, axis=-1))
                return GibbsState(tuple(units), st.clamp, cache), ch

            state, changed = jax.lax.fori_loop(0, n // c, body, (state, changed))
        return state, GibbsInfo(changed)

    return kernel


def _units(state):
    return state.units


@functools.lru_cache(maxsize=32)
def _chain_key_fn(num_chains: int, num_steps: int):
    """Key of chain ``c`` at global step ``t``: ``split(rng_key, (C, T))[c, t]``, computed as
    ``fold_in(rng_key, c * T + t)`` (equal under JAX's default partitionable threefry)."""

    def key_fn(rng_key, t):
        chains = jnp.arange(num_chains, dtype=jnp.uint32)
        offsets = chains * jnp.uint32(num_steps) + t.astype(jnp.uint32)
        return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng_key, offsets)

    return key_fn


@functools.lru_cache(maxsize=32)
def _batched_kernel(kernel):
    def step(keys, states, beta):
        return jax.vmap(kernel, in_axes=(0, 0, None))(keys, states, beta)

    return step


def sample_chains(
    rng_key,
    kernel,
    initial_states,
    num_samples,
    num_burnin=0,
    thin=1,
    transform=None,
    beta=1.0,
    *,
    accumulate=None,
    progress_bar=False,
):
    """Run many chains (vmapped) on the chain runner (:func:`samplers.runner.run`).

    Parameters
    ----------
    rng_key : PRNGKey
        Chain ``c`` at sweep ``t`` (burn-in sweeps first) uses ``split(rng_key, (C, T))[c, t]``
        with ``T = num_burnin + num_samples * thin``.
    kernel : callable
        From :func:`build_kernel` (one chain), e.g. a chromatic sweep whose chunks are colour
        classes (any kernel ``kernel(rng_key, state, beta) -> (state, info)``).
    initial_states : GibbsState
        Batched over chains (leading axis of every leaf), e.g. ``jax.vmap(init)(...)``.
    num_samples : int
        Kept draws per chain.
    num_burnin : int
        Sweeps discarded first (not stored).
    thin : int
        Sweeps between kept draws.
    transform : callable, optional
        ``state -> pytree`` stored per kept draw (default: ``state.units``).
    beta : float
        Inverse temperature.
    accumulate : samplers.runner.Accumulator, optional
        Streaming statistic of the kept draws (e.g. :func:`samplers.runner.online_mean`).
    progress_bar : bool or None
        Progress bar of eager runs (``None``: :func:`samplers.runner.progress_default`).

    Returns
    -------
    final_state : GibbsState
        Batched final states.
    trace : pytree
        Leaves of shape ``(num_chains, num_samples, ...)``.
    info : GibbsInfo
        ``num_changed`` of shape ``(num_chains, num_samples)`` (last sweep of each thin block).

    References
    ----------
    Geman and Geman, IEEE TPAMI 1984.
    """
    for name, value, minimum in (
        ("num_samples", num_samples, 1),
        ("num_burnin", num_burnin, 0),
        ("thin", thin, 1),
    ):
        if isinstance(value, bool) or int(value) < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    num_samples, num_burnin, thin = int(num_samples), int(num_burnin), int(thin)
    num_chains = jax.tree_util.tree_leaves(initial_states.units)[0].shape[0]
    out = runner.run(
        rng_key,
        _batched_kernel(kernel),
        initial_states,
        num_samples,
        args=(beta,),
        num_burnin=num_burnin,
        thinning=thin,
        observe=_units if transform is None else transform,
        accumulate=accumulate,
        key_fn=_chain_key_fn(num_chains, num_burnin + num_samples * thin),
        progress_bar=progress_bar,
    )
    return out.state, out.trace, out.info
