"""Tests for samplers.spins: exact Boltzmann law on tiny systems, zero temperature, API."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from spin_helpers import chi2_pvalue, state_codes

from samplers import spins as sp

N_SPINS = 8
NUM_CHAINS = 4096


@pytest.fixture(scope="module")
def sk_model():
    key = jax.random.key(42)
    J = jax.random.normal(key, (N_SPINS, N_SPINS)) / np.sqrt(N_SPINS)
    J = (J + J.T) / np.sqrt(2.0)
    b = 0.3 * jax.random.normal(jax.random.key(7), (N_SPINS,))
    return sp.pair_model(J, b)


def _exact_probs(model, beta):
    states = sp.enumerate_states(N_SPINS)
    e = jax.vmap(model.energy)(states)
    logp = -beta * e
    return np.asarray(jax.nn.softmax(logp), np.float64)


def _final_states(model, step, beta, num_steps, seed):
    s0 = jnp.ones((NUM_CHAINS, N_SPINS))
    states = jax.vmap(lambda s: sp.init(model, s))(s0)
    final, _, infos = jax.jit(
        lambda k, st: sp.run_chains(k, step, st, beta, num_steps), static_argnums=()
    )(jax.random.key(seed), states)
    return final, infos


@pytest.fixture(scope="module")
def sequential_runner(sk_model):
    """One compiled 40-sweep runner per (rule, order) on the SK model, shared by the tests
    (beta traced; the energy of every chain is recorded after each sweep)."""
    cache = {}

    def get(rule, order):
        if (rule, order) not in cache:
            step = sp.build_sequential_kernel(sk_model, rule=rule, order=order)
            energy = lambda x: sk_model.energy(x.spins)
            cache[rule, order] = jax.jit(
                lambda k, st, beta: sp.run_chains(k, step, st, beta, 40, energy)
            )
        return cache[rule, order]

    return get


def _run_sequential(sk_model, runner, s0, beta, seed):
    states = jax.vmap(lambda s: sp.init(sk_model, s))(s0)
    return runner(jax.random.key(seed), states, beta)


@pytest.mark.parametrize(
    "rule,order",
    [("glauber", "random"), ("metropolis", "random"), ("glauber", "sweep")],
)
def test_sequential_matches_boltzmann(sk_model, sequential_runner, rule, order):
    """Final states of independent chains follow exp(-beta H) (chi-square over 2^8 states)."""
    beta = 0.8
    final, _, _ = _run_sequential(
        sk_model, sequential_runner(rule, order), jnp.ones((NUM_CHAINS, N_SPINS)), beta, 1
    )
    p, tv = chi2_pvalue(state_codes(final.spins), _exact_probs(sk_model, beta))
    # TV of an exact sampler with n draws over 256 states is about sqrt(256 / (2 pi n)) / 2.
    assert p > 1e-3, (p, tv)
    assert tv < 2.5 * 0.5 * np.sqrt(2**N_SPINS / (2 * np.pi * NUM_CHAINS))


@pytest.mark.parametrize(
    "order,generator,per_step", [("sweep", "threefry", 1), ("permutation", "hash", 4)]
)
def test_chain_parallel_kernel_matches_boltzmann(sk_model, order, generator, per_step):
    """Chains updated together site by site (shared order, vectorised over chains, uniforms
    hashed inside the site loop for "hash", several sweeps per step) still sample
    exp(-beta H) exactly: chi-square over the 2^8 states of the final chains."""
    beta = 0.8
    step = sp.build_chain_parallel_kernel(
        sk_model, order=order, generator=generator, sweeps_per_step=per_step
    )
    states = sp.init_chains(sk_model, jnp.ones((NUM_CHAINS, N_SPINS)))
    final, _, infos = jax.jit(
        lambda k, st: sp.run_chains(k, step, st, beta, 40 // per_step, batched=True)
    )(jax.random.key(11), states)
    p, tv = chi2_pvalue(state_codes(final.spins), _exact_probs(sk_model, beta))
    assert p > 1e-3, (p, tv)
    np.testing.assert_allclose(final.cache, jax.vmap(sk_model.init_cache)(final.spins), atol=1e-5)
    assert infos.acceptance_rate.shape == (NUM_CHAINS, 40 // per_step)


def test_chain_parallel_energy_bookkeeping(sk_model):
    """Per-chain sum of accepted dE equals H(final) - H(initial) (no cache refresh)."""
    step = jax.jit(sp.build_chain_parallel_kernel(sk_model, refresh_cache=False))
    s0 = jnp.where(jax.random.bernoulli(jax.random.key(2), 0.5, (16, N_SPINS)), 1.0, -1.0)
    states = sp.init_chains(sk_model, s0)
    new, info = step(jax.random.key(3), states, jnp.linspace(0.1, 2.0, 16))
    de = jax.vmap(sk_model.energy)(new.spins) - jax.vmap(sk_model.energy)(s0)
    np.testing.assert_allclose(info.delta_energy, de, atol=1e-4)
    np.testing.assert_allclose(new.cache, jax.vmap(sk_model.init_cache)(new.spins), atol=1e-5)


def test_hash_uniforms_are_uniform():
    """The hash generator: uniform on [0, 1) (KS test), uncorrelated neighbours, key-dependent."""
    u = np.asarray(sp.uniforms(jax.random.key(0), (200, 500), generator="hash"), np.float64)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u.ravel(), "uniform").pvalue > 1e-3
    r = np.corrcoef(u.ravel()[:-1], u.ravel()[1:])[0, 1]
    assert abs(r) < 4 / np.sqrt(u.size)
    v = np.asarray(sp.uniforms(jax.random.key(1), (200, 500), generator="hash"))
    assert abs(np.corrcoef(u.ravel(), v.ravel())[0, 1]) < 4 / np.sqrt(u.size)


def test_checkerboard_colors_exact_on_ring():
    """Two-colour parallel heat bath on a nearest-neighbour ring is exact Gibbs."""
    n = N_SPINS
    J = np.zeros((n, n), np.float32)
    for i in range(n):
        J[i, (i + 1) % n] = J[(i + 1) % n, i] = 0.7
    model = sp.pair_model(jnp.asarray(J), 0.2 * jnp.ones(n))
    colors = jnp.arange(n) % 2
    step = sp.build_parallel_kernel(model, mode="colors", colors=colors)
    final, _ = _final_states(model, step, 1.0, 40, seed=2)
    states = sp.enumerate_states(n)
    probs = np.asarray(jax.nn.softmax(-jax.vmap(model.energy)(states)), np.float64)
    p, _ = chi2_pvalue(state_codes(final.spins), probs)
    assert p > 1e-3


def test_synchronous_is_not_boltzmann_for_dense_coupling(sk_model):
    """Little dynamics on an SK model has a different stationary law (documented behaviour)."""
    beta = 1.5
    step = sp.build_parallel_kernel(sk_model, mode="synchronous")
    final, _ = _final_states(sk_model, step, beta, 40, seed=3)
    p, _ = chi2_pvalue(state_codes(final.spins), _exact_probs(sk_model, beta))
    assert p < 1e-6


def test_delta_energy_info_and_cache_consistent(sk_model):
    """Sum of accepted dE equals H(final) - H(initial); cached fields equal recomputed ones."""
    step = jax.jit(sp.build_sequential_kernel(sk_model, refresh_cache=False))
    state = sp.init(sk_model, jnp.ones(N_SPINS))
    e0 = sk_model.energy(state.spins)
    new, info = step(jax.random.key(3), state, 0.5)
    np.testing.assert_allclose(info.delta_energy, sk_model.energy(new.spins) - e0, atol=1e-4)
    np.testing.assert_allclose(new.cache, sk_model.init_cache(new.spins), atol=1e-5)
    hamming = int(jnp.sum(new.spins != state.spins))
    assert int(info.num_flips) >= hamming and (int(info.num_flips) - hamming) % 2 == 0
    assert new.spins.dtype == jnp.float32 and new.spins.shape == (N_SPINS,)
    assert 0.0 <= float(info.acceptance_rate) <= 1.0


@pytest.mark.parametrize("rule,order", [("glauber", "sweep"), ("metropolis", "random")])
def test_zero_temperature_reaches_local_minimum(sk_model, sequential_runner, rule, order):
    """At beta=inf energy never increases and the end state has no downhill single flip."""
    flip = jax.random.bernoulli(jax.random.key(5), 0.5, (NUM_CHAINS, N_SPINS))
    s0 = jnp.where(flip, 1.0, -1.0).astype(jnp.float32)  # strong dtype: reuse the compile
    final, energies, infos = _run_sequential(
        sk_model, sequential_runner(rule, order), s0, jnp.inf, 6
    )
    assert np.all(np.diff(np.asarray(energies), axis=1) <= 1e-5)
    assert np.all(np.asarray(infos.delta_energy) <= 1e-6)
    de = jax.vmap(sk_model.delta_energy_all)(final.cache, final.spins)
    assert np.all(np.asarray(de) >= -1e-5)


def test_parallel_chains_are_independent(sk_model, sequential_runner):
    """Chains from one start decorrelate: spin correlations across chains are ~ 0."""
    s0 = jnp.ones((NUM_CHAINS, N_SPINS))
    final, _, _ = _run_sequential(sk_model, sequential_runner("glauber", "random"), s0, 0.3, 8)
    s = np.asarray(final.spins)
    a, b = s[0::2], s[1::2]
    # Pairs of chains: cross-chain covariance of the same site vanishes (SE ~ 1/sqrt(2048)).
    cov = (a * b).mean(0) - a.mean(0) * b.mean(0)
    assert np.all(np.abs(cov) < 4.5 / np.sqrt(a.shape[0]))
    assert len({tuple(r) for r in s[:100]}) > 20


def test_flip_probability_limits():
    de = jnp.array([-1.0, 0.0, 1.0])
    np.testing.assert_allclose(sp.flip_probability(de, jnp.inf), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(sp.flip_probability(de, jnp.inf, "metropolis"), [1.0, 1.0, 0.0])
    np.testing.assert_allclose(
        sp.flip_probability(de, 2.0),
        1 / (1 + np.exp(2.0 * np.array([-1.0, 0.0, 1.0]))),
        rtol=1e-6,
    )


def test_model_from_local_field_fn_matches_pair_model(sk_model):
    J = np.asarray(jax.random.normal(jax.random.key(1), (5, 5)))
    J = (J + J.T) / 2
    np.fill_diagonal(J, 0.0)
    J = jnp.asarray(J)
    ref = sp.pair_model(J)
    m = sp.model_from_local_field_fn(lambda s, i: J[i] @ s)
    s = jnp.array([1.0, -1, 1, 1, -1])
    sites = jnp.arange(5)
    de = jax.jit(jax.vmap(lambda i: m.delta_energy(m.init_cache(s), s, i)))(sites)
    flipped = s[None, :] * (1.0 - 2.0 * jax.nn.one_hot(sites, 5))
    de_ref = jax.vmap(ref.energy)(flipped) - ref.energy(s)
    np.testing.assert_allclose(de, de_ref, rtol=1e-5, atol=1e-6)


def test_bad_inputs():
    J = jnp.eye(3)
    with pytest.raises(ValueError, match="couplings"):
        sp.pair_model(jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="symmetric"):
        sp.pair_model(jnp.array([[0.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="NaN"):
        sp.pair_model(jnp.full((2, 2), jnp.nan))
    with pytest.raises(ValueError, match="fields"):
        sp.pair_model(J, jnp.ones(2))
    model = sp.pair_model(J)
    with pytest.raises(ValueError, match="spins"):
        sp.init(model, jnp.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="spins"):
        sp.init(model, jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="rule"):
        sp.build_sequential_kernel(model, rule="gibbs")
    with pytest.raises(ValueError, match="order"):
        sp.build_sequential_kernel(model, order="zigzag")
    with pytest.raises(ValueError, match="mode"):
        sp.build_parallel_kernel(model, mode="async")
    with pytest.raises(ValueError, match="fraction"):
        sp.build_parallel_kernel(model, mode="random_subset", fraction=0.0)
    with pytest.raises(ValueError, match="colors"):
        sp.build_parallel_kernel(model, mode="colors")
    states = jax.vmap(lambda s: sp.init(model, s))(jnp.ones((2, 3)))
    step = sp.build_sequential_kernel(model)
    with pytest.raises(ValueError, match="thin"):
        sp.run_chains(jax.random.key(0), step, states, 1.0, 10, thin=3)
    with pytest.raises(ValueError, match="n must"):
        sp.enumerate_states(0)
    with pytest.raises(ValueError, match="site_delta_energy"):
        sp.build_chain_parallel_kernel(sp.model_from_delta_energy_fn(lambda s, i: s[i]))
    with pytest.raises(ValueError, match="order"):
        sp.build_chain_parallel_kernel(model, order="random")
    with pytest.raises(ValueError, match="generator"):
        sp.build_chain_parallel_kernel(model, generator="mt")
    with pytest.raises(ValueError, match="sweeps_per_step"):
        sp.build_chain_parallel_kernel(model, sweeps_per_step=0)
    with pytest.raises(ValueError, match="unroll"):
        sp.build_chain_parallel_kernel(model, unroll=0)
    with pytest.raises(ValueError, match="generator"):
        sp.uniforms(jax.random.key(0), (3,), generator="mt")
    with pytest.raises(ValueError, match="spins"):
        sp.init_chains(model, jnp.ones(3))


def test_integer_spins_cast_to_float():
    model = sp.pair_model(jnp.zeros((3, 3)))
    st = sp.init(model, jnp.array([1, -1, 1], dtype=jnp.int32))
    assert st.spins.dtype == jnp.float32


_BETA_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, -0.0, float("inf"), float("nan"), -1e-30]),
)


@settings(max_examples=40, deadline=None)
@given(st.one_of(_BETA_VALUES, st.lists(_BETA_VALUES, min_size=3, max_size=3)))
def test_validate_beta_property(beta):
    """A scalar or per-chain beta passes iff every entry is >= 0 (inf allowed) and not NaN."""
    values = np.atleast_1d(np.asarray(beta, np.float32))
    if np.all(values >= 0):
        out = sp.validate_beta(beta, 3)
        assert out.shape == (3,)
        np.testing.assert_array_equal(out, np.broadcast_to(values, (3,)))
    else:
        with pytest.raises(ValueError, match="beta must be >= 0"):
            sp.validate_beta(beta, 3)


def test_run_chains_refuses_bad_beta_and_spins_also_under_vmap():
    """Bad beta (NaN, < 0, wrong per-chain length) and spins outside {-1, +1} raise
    ValueError on concrete input; under vmap/jit the check runs in the compiled program."""
    model = sp.pair_model(jnp.zeros((3, 3)))
    step = sp.build_sequential_kernel(model)
    states = sp.init_chains(model, jnp.ones((2, 3)))
    for beta, match in [(jnp.nan, "beta"), (-0.5, "beta"), (jnp.ones(3), r"shape \(2,\)")]:
        with pytest.raises(ValueError, match=match):
            sp.run_chains(jax.random.key(0), step, states, beta, 2)
    bad = sp.SpinState(jnp.array([[1.0, 0.5, -1.0], [1.0, 1.0, 1.0]]), states.cache)
    with pytest.raises(ValueError, match="states.spins must contain only -1 and \\+1"):
        sp.run_chains(jax.random.key(0), step, bad, 1.0, 2)

    def run(beta):
        return sp.run_chains(jax.random.key(0), step, states, beta, 2)[0].spins

    np.testing.assert_array_equal(jax.vmap(run)(jnp.array([1.0, 2.0])).shape, (2, 2, 3))
    with pytest.raises(jax.errors.JaxRuntimeError, match="beta must be >= 0"):
        jax.block_until_ready(jax.vmap(run)(jnp.array([1.0, jnp.nan])))
