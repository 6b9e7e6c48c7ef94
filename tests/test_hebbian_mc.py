"""Monte Carlo of dense Hebbian networks vs RS theory (sizes from the reference note)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnn import hebbian as hb

NUM_SAMPLES = 8  # independent data sets (disorder samples), one chain each


def _low_storage_runs(order, r, m, beta, n=1000, k=3, sweeps=400, burn=150, seed=0):
    keys = jax.random.split(jax.random.key(seed), NUM_SAMPLES)
    dss = [hb.make_dataset(kk, k, n, m, r) for kk in keys]
    rows = jnp.stack([hb.supervised_network(d.examples, order, quality=r).rows for d in dss])
    xis = jnp.stack([d.archetypes for d in dss])

    @jax.jit
    def run(rows, xis, key):
        def one(rows, xi, key):
            net = hb.HebbianNetwork(rows, order)
            return hb.simulate(key, net, xi[:1], beta, sweeps, xi, burn_in=burn)

        return jax.vmap(one)(rows, xis, jax.random.split(key, NUM_SAMPLES))

    res = run(rows, xis, jax.random.key(seed + 100))  # dynamics key separate from data keys
    return np.asarray(res.mean[:, 0, :])


@pytest.mark.parametrize("order,temperature", [(2, 0.3), (4, 0.3)])
def test_low_storage_mc_matches_rs_exact_law(order, temperature):
    """Sequential heat bath, N = 1000, K = 3, M = 20, r = 0.5: m_1 agrees with the RS solution
    (exact binomial law) within 3 standard errors over data samples + 0.01 finite-size slack;
    escapes are reported, not averaged in."""
    r, m = 0.5, 20
    mags = _low_storage_runs(order, r, m, 1.0 / temperature)
    summ = hb.summarize_retrieval(mags, target=0)
    assert summ.num_escaped <= 1, summ
    theory = float(hb.solve_low_storage(1.0 / temperature, order, hb.exact_law(r, m)).m)
    assert abs(summ.mean - theory) < 3 * summ.stderr + 0.01, (summ, theory)


def test_zero_temperature_dynamics_gives_mean_sign():
    """beta = inf from the archetype: m -> E sign X (here P = 4, where cross-talk is tiny)."""
    r, m = 0.3, 15
    mags = _low_storage_runs(4, r, m, jnp.inf, sweeps=10, burn=8, seed=3)
    theory = float(hb.zero_temperature_magnetization(hb.exact_law(r, m)))
    se = mags[:, 0].std() / np.sqrt(NUM_SAMPLES - 1)
    assert abs(mags[:, 0].mean() - theory) < 3 * se + 0.01, (mags[:, 0], theory)


def test_unsupervised_memorization_threshold():
    """P = 4, r = 0.5 (M* = 1 + r^-P = 17): from a single example, M = 4 stays on the example
    (m ~ r), M = 120 moves to the archetype (m ~ E sign X)."""
    r, order, n, temperature = 0.5, 4, 1000, 0.1
    out = {}
    for m in (4, 120):
        ds = hb.make_dataset(jax.random.key(m), 1, n, m, r)
        net = hb.unsupervised_network(ds.examples, order, quality=r)
        start = ds.examples[0, :1]
        res = jax.jit(
            lambda key: hb.simulate(key, net, start, 1 / temperature, 60, ds.archetypes, 40)
        )(jax.random.key(1))
        ex_overlap = float(jnp.mean(res.spins[0] * start[0]))
        out[m] = (float(res.mean[0, 0]), ex_overlap)
    assert hb.memorization_threshold(r, order) == 17
    m_small, ex_small = out[4]
    assert ex_small > 0.9 and abs(m_small - r) < 0.1, out
    m_big, _ = out[120]
    target = float(hb.solve_low_storage(1 / temperature, order, hb.exact_law(r, 120)).m)
    assert abs(m_big - target) < 0.03, (out, target)


def _cascade_run(d, k=3, n=4000, temperature=0.002, sweeps=30, seed=0):
    xi = hb.archetypes(jax.random.key(seed), k, n, dilution=d)
    first = jnp.argmax(xi != 0, axis=0)
    s0 = jnp.take_along_axis(xi, first[None, :], 0)[0]
    s0 = jnp.where(s0 == 0, 1.0, s0)
    net = hb.hebbian_network(xi, 2)
    res = jax.jit(
        lambda key: hb.simulate(key, net, s0[None], 1 / temperature, sweeps, xi, sweeps - 10)
    )(jax.random.key(seed + 1))
    return np.asarray(res.mean[0]), np.asarray(hb.mattis_magnetization(xi, s0))


def test_multitasking_cascade_below_and_above_threshold():
    """Diluted archetypes, P = 2, K = 3 (d_c = (sqrt5 - 1)/2 ~ 0.618), N = 4000, T = 0.002.
    d = 0.3: amplitudes stay at (1 - d) d^(k-1) within 0.01 (and at the realised cascade
    state). d = 0.75: the worst sites (all three patterns present, 2 and 3 against 1; a
    fraction (1 - d)^3 / 4) flip, so m_1 drops by about 2 (1 - d)^3 / 4 = 0.0078."""
    d = 0.3
    m, m0 = _cascade_run(d)
    np.testing.assert_allclose(m, hb.cascade_amplitudes(d, 3), atol=0.01)
    np.testing.assert_allclose(m, m0, atol=3e-3)
    d_hi = 0.75
    assert d_hi > hb.cascade_threshold(3)
    m_hi, m0_hi = _cascade_run(d_hi)
    drop = m0_hi[0] - m_hi[0]
    predicted = 2 * (1 - d_hi) ** 3 / 4
    assert 0.5 * predicted < drop < 2 * predicted, (m_hi, m0_hi)


def test_p2_high_storage_mc_matches_rs():
    """P = 2, K = alpha N with alpha = 0.01, N = 2000, r = 0.6, M = 30, T = 0.2: MC agrees with
    the high-storage RS (exact law) within 0.015."""
    n, alpha, r, m, temperature = 2000, 0.01, 0.6, 30, 0.2
    k = int(alpha * n)
    keys = jax.random.split(jax.random.key(11), 4)
    dss = [hb.make_dataset(kk, k, n, m, r) for kk in keys]
    rows = jnp.stack([hb.supervised_network(d.examples, 2, quality=r).rows for d in dss])
    xis = jnp.stack([d.archetypes for d in dss])

    @jax.jit
    def run(rows, xis, key):
        def one(rows, xi, key):
            return hb.simulate(
                key, hb.HebbianNetwork(rows, 2), xi[:1], 1 / temperature, 100, xi, 40
            )

        return jax.vmap(one)(rows, xis, jax.random.split(key, 4))

    mags = np.asarray(run(rows, xis, jax.random.key(5)).mean[:, 0, 0])
    _, theory, _ = hb.high_storage_rs(1 / temperature, alpha, 2, hb.exact_law(r, m))
    assert abs(mags.mean() - float(theory)) < 0.015, (mags, theory)
