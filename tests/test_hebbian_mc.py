"""Monte Carlo of dense Hebbian networks vs RS theory (sizes from the reference note).

All simulations go through one jitted runner (``_run``: ``order``, ``weight`` and
``num_sweeps`` static, ``beta`` traced, burn-in applied outside), so tests with equal shapes
share one compile.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnn import hebbian as hb

NUM_SAMPLES = 8  # independent data sets (disorder samples), one chain each
LOW_N, LOW_K, LOW_SWEEPS, LOW_BURN = 1000, 3, 100, 30
PAD = 1001  # as in test_hebbian_theory: laws padded to one size share compiled solvers


def _law(r, m):
    """Exact law of p padded with zero-weight atoms (expectations unchanged)."""
    return tuple(jnp.pad(a, (0, PAD - a.shape[0])) for a in hb.exact_law(r, m))


@partial(jax.jit, static_argnames=("order", "num_sweeps", "weight"))
def _run(rows, xis, spins0, key, beta, order, num_sweeps, weight=1.0):
    """B networks (stacked rows (B, R, N)), one chain each from spins0 (B, N); ``beta`` a
    scalar or one per network (B,).

    Returns the magnetisation trace (T, B, K) and the final spins (B, N).
    """

    def one(rows, xi, s0, key, beta):
        net = hb.HebbianNetwork(rows, order, weight)
        res = hb.simulate(key, net, s0[None], beta, num_sweeps, xi)
        return res.trace[0], res.spins[0]

    keys = jax.random.split(key, rows.shape[0])
    betas = jnp.broadcast_to(beta, rows.shape[:1])
    trace, spins = jax.vmap(one)(rows, xis, spins0, keys, betas)
    return jnp.moveaxis(trace, 0, 1), spins


def _low_storage_runs(order, r, m, beta, seed=0):
    """m_mu time averages (B, K) over disorder samples, N = 1000, K = 3, from archetype 1."""
    keys = jax.random.split(jax.random.key(seed), NUM_SAMPLES)
    dss = [hb.make_dataset(kk, LOW_K, LOW_N, m, r) for kk in keys]
    rows = jnp.stack([hb.supervised_network(d.examples, order, quality=r).rows for d in dss])
    xis = jnp.stack([d.archetypes for d in dss])
    # dynamics key separate from data keys
    trace, _ = _run(rows, xis, xis[:, 0], jax.random.key(seed + 100), beta, order, LOW_SWEEPS)
    return np.asarray(trace[LOW_BURN:].mean(0))


@pytest.mark.parametrize("order,temperature", [(2, 0.3), (4, 0.3)])
def test_low_storage_mc_matches_rs_exact_law(order, temperature):
    """Sequential heat bath, N = 1000, K = 3, M = 20, r = 0.5, 8 data samples, 100 sweeps
    (30 burn-in): m_1 agrees with the RS solution (exact binomial law) within 3 standard
    errors over data samples + 0.01 finite-size slack; escapes are reported, not averaged in."""
    r, m = 0.5, 20
    mags = _low_storage_runs(order, r, m, 1.0 / temperature)
    summ = hb.summarize_retrieval(mags, target=0)
    assert summ.num_escaped <= 1, summ
    theory = float(hb.solve_low_storage(1.0 / temperature, order, _law(r, m)).m)
    assert abs(summ.mean - theory) < 3 * summ.stderr + 0.01, (summ, theory)


def test_zero_temperature_dynamics_gives_mean_sign():
    """beta = inf from the archetype: m -> E sign X (here P = 4, where cross-talk is tiny).
    Same shapes as the P = 4 low-storage test (one compile for both)."""
    r, m = 0.3, 15
    mags = _low_storage_runs(4, r, m, jnp.inf, seed=3)
    theory = float(hb.theory.zero_temperature_magnetization(_law(r, m)))
    se = mags[:, 0].std() / np.sqrt(NUM_SAMPLES - 1)
    assert abs(mags[:, 0].mean() - theory) < 3 * se + 0.01, (mags[:, 0], theory)


def test_unsupervised_memorization_threshold():
    """P = 4, r = 0.5 (M* = 1 + r^-P = 17), N = 1000, T = 0.1, 30 sweeps (15 burn-in): from a
    single example, M = 4 stays on the example (m ~ r), M = 120 moves to the archetype
    (m ~ E sign X). Both networks run in one batched call: the weight 1/M is folded into the
    rows (X -> M^(-1/P) X leaves H unchanged) and the M = 4 network is padded with zero rows
    (which add nothing to H)."""
    r, order, n, temperature, sweeps, burn = 0.5, 4, 1000, 0.1, 30, 15
    ms = (4, 120)
    rows, xis, starts = [], [], []
    for m in ms:
        ds = hb.make_dataset(jax.random.key(m), 1, n, m, r)
        net = hb.unsupervised_network(ds.examples, order, quality=r)
        x = net.rows * net.weight ** (1.0 / order)
        rows.append(jnp.pad(x, ((0, max(ms) - m), (0, 0))))
        xis.append(ds.archetypes)
        starts.append(ds.examples[0, 0])
    starts = jnp.stack(starts)
    trace, spins = _run(
        jnp.stack(rows), jnp.stack(xis), starts, jax.random.key(1), 1 / temperature, order, sweeps
    )
    m_mean = np.asarray(trace[burn:, :, 0].mean(0))
    ex_overlap = np.asarray(jnp.mean(spins * starts, axis=-1))
    assert hb.memorization_threshold(r, order) == 17
    # The example's own archetype overlap is r +- sqrt((1 - r^2)/N) = 0.5 +- 0.027.
    assert ex_overlap[0] > 0.9 and abs(m_mean[0] - r) < 0.1, (m_mean, ex_overlap)
    target = float(hb.solve_low_storage(1 / temperature, order, _law(r, 120)).m)
    assert abs(m_mean[1] - target) < 0.03, (m_mean, target)


def test_multitasking_cascade_below_and_above_threshold():
    """Diluted archetypes, P = 2, K = 3 (d_c = (sqrt5 - 1)/2 ~ 0.618), N = 4000, T = 0.002,
    20 sweeps (mean of the last 5); both dilutions in one batched run.
    d = 0.3: amplitudes stay at (1 - d) d^(k-1) within 0.01 (and at the realised cascade
    state). d = 0.75: the worst sites (all three patterns present, 2 and 3 against 1; a
    fraction (1 - d)^3 / 4, ~16 sites) flip, so m_1 drops by about 2 (1 - d)^3 / 4 = 0.0078
    (a Poisson count: the factor-2 band is > 2.5 sigma)."""
    k, n, temperature, sweeps, burn = 3, 4000, 0.002, 20, 15
    d_lo, d_hi = 0.3, 0.75
    assert d_lo < hb.cascade_threshold(3) < d_hi
    xis, s0s = [], []
    for d in (d_lo, d_hi):
        xi = hb.archetypes(jax.random.key(0), k, n, dilution=d)
        first = jnp.argmax(xi != 0, axis=0)
        s0 = jnp.take_along_axis(xi, first[None, :], 0)[0]
        xis.append(xi)
        s0s.append(jnp.where(s0 == 0, 1.0, s0))
    xis, s0s = jnp.stack(xis), jnp.stack(s0s)
    trace, _ = _run(xis, xis, s0s, jax.random.key(1), 1 / temperature, 2, sweeps)
    m = np.asarray(trace[burn:].mean(0))
    m0 = np.asarray(jax.vmap(hb.mattis_magnetization)(xis, s0s))
    np.testing.assert_allclose(m[0], hb.theory.cascade_amplitudes(d_lo, 3), atol=0.01)
    np.testing.assert_allclose(m[0], m0[0], atol=3e-3)
    drop = m0[1, 0] - m[1, 0]
    predicted = 2 * (1 - d_hi) ** 3 / 4
    assert 0.5 * predicted < drop < 2 * predicted, (m[1], m0[1])


def test_p2_high_storage_mc_matches_rs_at_two_points():
    """P = 2, K = alpha N with alpha = 0.01, N = 2000, 4 data samples at each of
    (r = 0.6, M = 30, T = 0.2) and (r = 0.4, M = 20, T = 0.01) (where the old Gauss-Hermite
    solver gave m = 0.19 instead of 0.92), 60 sweeps (20 burn-in), all 8 runs in one batched
    call: MC agrees with the high-storage RS (exact law) within 0.015 at both points, and the
    low-T RS with the T = 0 closed form."""
    n, alpha = 2000, 0.01
    points = ((0.6, 30, 0.2), (0.4, 20, 0.01))
    k = int(alpha * n)
    rows, xis, theory = [], [], []
    for j, (r, m, temp) in enumerate(points):
        for kk in jax.random.split(jax.random.key(11 + j), 4):
            d = hb.make_dataset(kk, k, n, m, r)
            rows.append(hb.supervised_network(d.examples, 2, quality=r).rows)
            xis.append(d.archetypes)
        law = hb.pad_law(hb.exact_law(r, m), 31)  # one shape: one compile for both points
        theory.append(float(hb.high_storage_rs(1 / temp, alpha, 2, law).m))
    rows, xis = jnp.stack(rows), jnp.stack(xis)
    betas = jnp.repeat(1 / jnp.array([p[2] for p in points]), 4)
    trace, _ = _run(rows, xis, xis[:, 0], jax.random.key(5), betas, 2, 60)
    mags = np.asarray(trace[20:, :, 0].mean(0)).reshape(2, 4)
    np.testing.assert_allclose(mags.mean(1), theory, atol=0.015)
    m0, _ = hb.theory.p2_zero_temperature(alpha, hb.exact_law(0.4, 20))
    assert abs(theory[1] - float(m0)) < 2e-3


def test_vmapped_networks_match_rs_m_and_replica_q():
    """Low storage, P = 4, T = 0.3, exact law r = 0.4, M = 30, N = 1000, K = 3: networks are
    built inside jax.vmap from 8 data sets (no hand-built rows), two replicas per data set;
    the time-averaged m and the two-replica overlap q agree with the RS (m, q) within 3
    standard errors over data sets + 0.01 finite-size slack."""
    r, m, order, temperature, sweeps, burn = 0.4, 30, 4, 0.3, 60, 20
    keys = jax.random.split(jax.random.key(21), NUM_SAMPLES)
    dss = [hb.make_dataset(kk, LOW_K, LOW_N, m, r) for kk in keys]
    examples = jnp.stack([d.examples for d in dss])
    xis = jnp.stack([d.archetypes for d in dss])

    @jax.jit
    def run(examples, xis, key):
        def one(ex, xi, k):
            net = hb.supervised_network(ex, order, quality=r)
            res = hb.simulate(
                k, net, jnp.stack([xi[0], xi[0]]), 1 / temperature, sweeps, xi, burn, record=("q",)
            )
            return res.mean[:, 0].mean(), res.records["q"][:, burn:].mean()

        return jax.vmap(one)(examples, xis, jax.random.split(key, examples.shape[0]))

    mags, qs = (np.asarray(a) for a in run(examples, xis, jax.random.key(22)))
    assert np.all(mags > 0.3), mags  # no escapes
    sol = hb.solve_low_storage(1 / temperature, order, hb.exact_law(r, m))
    for name, mc, th in (("m", mags, sol.m), ("q", qs, sol.q)):
        se = mc.std() / np.sqrt(mc.size - 1)
        assert abs(mc.mean() - float(th)) < 3 * se + 0.01, (name, mc, th)


def test_simulate_refuses_bad_beta_and_spins():
    """simulate checks beta (NaN, < 0, wrong per-chain length) and the start spins before
    sampling; under vmap the same check fails when the compiled program runs."""
    ds = hb.make_dataset(jax.random.key(0), 2, 6, 3, 0.6)
    net = hb.supervised_network(ds.examples, 2, quality=0.6)
    s0 = jnp.ones((2, 6))
    for beta, match in [(jnp.nan, "beta"), (-1.0, "beta"), (jnp.ones(3), "one value per chain")]:
        with pytest.raises(ValueError, match=match):
            hb.simulate(jax.random.key(0), net, s0, beta, 2)
    with pytest.raises(ValueError, match="-1 and \\+1"):
        hb.simulate(jax.random.key(0), net, s0.at[0, 0].set(0.0), 1.0, 2)
    run = jax.vmap(lambda b: hb.simulate(jax.random.key(0), net, s0, b, 2).spins)
    with pytest.raises(jax.errors.JaxRuntimeError, match="beta must be >= 0"):
        jax.block_until_ready(run(jnp.array([1.0, -1.0])))
