"""Block Gibbs sampler: exact distributions of a tiny categorical model by enumeration."""

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from samplers import gibbs

GROUPS = ((2, 3), (3, 2))  # (n_vars, n_states)
SIZES = [n * k for n, k in GROUPS]
N = sum(SIZES)
OFFS = np.cumsum([0] + SIZES)
NUM_CHAINS = 8000
NUM_SWEEPS = 15


def _model(seed, bipartite):
    rng = np.random.default_rng(seed)
    W = rng.normal(scale=0.9, size=(N, N))
    W = 0.5 * (W + W.T)
    var_of = np.concatenate(
        [g * 10 + np.repeat(np.arange(n), k) for g, (n, k) in enumerate(GROUPS)]
    )
    W[var_of[:, None] == var_of[None, :]] = 0.0  # hollow
    if bipartite:
        for g in range(len(GROUPS)):
            W[OFFS[g] : OFFS[g + 1], OFFS[g] : OFFS[g + 1]] = 0.0
    b = rng.normal(scale=0.7, size=N)
    return jnp.asarray(W, jnp.float32), jnp.asarray(b, jnp.float32)


def _flat(units):
    return jnp.concatenate([u.reshape(-1) for u in units])


def _exact(W, b, clamp_state=None):
    """Enumerate all configurations; returns (list of index tuples, probabilities)."""
    W, b = np.asarray(W, np.float64), np.asarray(b, np.float64)
    choices = [range(k) for n, k in GROUPS for _ in range(n)]
    confs, logp = [], []
    for c in itertools.product(*choices):
        if clamp_state is not None and c[2] != clamp_state:
            continue
        z = np.concatenate(
            [
                np.eye(k)[list(c[i0 : i0 + n])].ravel()
                for (n, k), i0 in zip(GROUPS, (0, 2), strict=True)
            ]
        )
        confs.append(c)
        logp.append(0.5 * z @ W @ z + b @ z)
    logp = np.array(logp)
    p = np.exp(logp - logp.max())
    return confs, p / p.sum()


def _logits_fn(W, b, chunk_sizes, use_cache):
    def fn(state, g, start):
        n, k = GROUPS[g]
        c = chunk_sizes[g]
        h = state.cache if use_cache else W @ _flat(state.units) + b
        rows = jax.lax.dynamic_slice_in_dim(h, OFFS[g] + start * k, c * k)
        return rows.reshape(c, k)

    return fn


def _cache_update(W):
    def upd(cache, g, start, old, new):
        n, k = GROUPS[g]
        c = old.shape[0]
        cols = jax.lax.dynamic_slice_in_dim(W, OFFS[g] + start * k, c * k, axis=1)
        return cache + cols @ (new - old).reshape(-1)

    return upd


@partial(jax.jit, static_argnums=(4, 5))
def _sample(key, W, b, states, chunk_sizes, use_cache):
    """One compile per (chunk_sizes, use_cache): the model enters as arguments."""
    kernel = gibbs.build_kernel(
        _logits_fn(W, b, chunk_sizes, use_cache),
        chunk_sizes,
        _cache_update(W) if use_cache else None,
    )
    return gibbs.sample_chains(key, kernel, states, 1, num_burnin=NUM_SWEEPS)


def _run(W, b, chunk_sizes, use_cache, clamp_state=None, seed=0):
    rng = np.random.default_rng(seed)  # host-side starts: no PRNG programs to compile
    units = tuple(
        jnp.asarray(np.eye(k, dtype=np.float32)[rng.integers(0, k, (NUM_CHAINS, n))])
        for n, k in GROUPS
    )
    clamp = tuple(jnp.zeros((NUM_CHAINS, n), bool) for n, _ in GROUPS)
    if clamp_state is not None:
        units = (units[0], units[1].at[:, 0].set(jax.nn.one_hot(clamp_state, 2)))
        clamp = (clamp[0], clamp[1].at[:, 0].set(True))
    cache_fn = (lambda u: W @ _flat(u) + b) if use_cache else None
    states = jax.vmap(lambda u, c: gibbs.init(u, c, cache_fn))(units, clamp)
    return _sample(jax.random.key(seed), W, b, states, chunk_sizes, use_cache)


def _chi2_pvalue(trace, confs, p):
    idx = np.asarray(jnp.concatenate([jnp.argmax(u[:, -1], axis=-1) for u in trace], axis=1))
    radix = np.array([k for n, k in GROUPS for _ in range(n)])
    code = lambda rows: np.ravel_multi_index(tuple(np.asarray(rows).T), radix)  # noqa: E731
    pos = np.full(np.prod(radix), -1)
    pos[code(confs)] = np.arange(len(confs))
    counts = np.bincount(pos[code(idx)], minlength=len(confs)).astype(float)
    return stats.chisquare(counts, p * counts.sum()).pvalue, counts


@pytest.mark.parametrize(
    "bipartite,chunk_sizes,use_cache",
    [(False, (1, 1), True), (True, (2, 3), False)],
)
def test_gibbs_matches_enumeration(bipartite, chunk_sizes, use_cache):
    W, b = _model(1, bipartite)
    confs, p = _exact(W, b)
    final, trace, info = _run(W, b, chunk_sizes, use_cache)
    pval, counts = _chi2_pvalue(trace, confs, p)
    assert counts.sum() == NUM_CHAINS
    assert pval > 1e-3, pval
    assert info.num_changed.shape == (NUM_CHAINS, 1)
    if use_cache:  # the maintained cache equals a fresh W z + b
        fresh = jax.vmap(lambda u: W @ _flat(u) + b)(final.units)
        np.testing.assert_allclose(final.cache, fresh, atol=1e-4)


def test_gibbs_detects_invalid_blocking():
    """Updating a laterally coupled group at once is not Gibbs: the test must see it."""
    W, b = _model(1, bipartite=False)
    W = W * 3.0
    confs, p = _exact(W, b)
    _, trace, _ = _run(W, b, (2, 3), False)
    pval, _ = _chi2_pvalue(trace, confs, p)
    assert pval < 1e-6


def test_gibbs_clamped_conditional():
    W, b = _model(2, bipartite=False)
    confs, p = _exact(W, b, clamp_state=1)
    final, trace, _ = _run(W, b, (1, 1), True, clamp_state=1)
    assert bool(jnp.all(jnp.argmax(final.units[1][:, 0], -1) == 1))
    pval, _ = _chi2_pvalue(trace, confs, p)
    assert pval > 1e-3, pval


def test_gibbs_bad_input():
    with pytest.raises(ValueError, match="units"):
        gibbs.init((jnp.zeros(3),))
    with pytest.raises(ValueError, match="clamp"):
        gibbs.init((jnp.zeros((3, 2)),), (jnp.zeros(2, bool),))
    with pytest.raises(ValueError, match="chunk_sizes"):
        gibbs.build_kernel(lambda s, g, i: None, (0,))
    kernel = gibbs.build_kernel(lambda s, g, i: jnp.zeros((2, 2)), (2,))
    with pytest.raises(ValueError, match="divide"):
        kernel(jax.random.key(0), gibbs.init((jnp.zeros((3, 2)),)))
    with pytest.raises(ValueError, match="num_samples"):
        gibbs.sample_chains(jax.random.key(0), kernel, None, 0)
