"""Dense Hebbian model: energies and flips vs brute-force P-body sums, data laws, bad input."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from spin_helpers import chi2_pvalue, state_codes

from bayesnn import hebbian as hb

N_TINY = 5


def _brute_energy(rows, weight, order, convention, s):
    n = rows.shape[1]
    if convention == "all":
        tuples = itertools.product(range(n), repeat=order)
    else:
        tuples = itertools.permutations(range(n), order)
    total = 0.0
    for t in tuples:
        idx = list(t)
        total += np.sum(np.prod(rows[:, idx] * s[idx], axis=1))
    return -weight / (2 * n ** (order - 1)) * total


@pytest.mark.parametrize("order", [2, 4])
@pytest.mark.parametrize("convention", ["all", "distinct"])
@pytest.mark.parametrize("rule", ["supervised", "unsupervised"])
def test_energy_and_flips_match_brute_force(order, convention, rule):
    """Overlap-form H, dE (vector and cached) equal the explicit N^P sum, repeated indices
    included."""
    ds = hb.make_dataset(jax.random.key(order), 2, N_TINY, 3, 0.6)
    build = hb.supervised_network if rule == "supervised" else hb.unsupervised_network
    net = build(ds.examples, order, quality=0.6, convention=convention)
    rows = np.asarray(net.rows, np.float64)
    model = hb.model.spin_model(net)
    s = np.array([1.0, -1.0, -1.0, 1.0, 1.0])
    e_ref = _brute_energy(rows, net.weight, order, convention, s)
    np.testing.assert_allclose(hb.model.energy(net, jnp.asarray(s)), e_ref, rtol=1e-5, atol=1e-6)
    de_vec = np.asarray(hb.model.delta_energy(net, jnp.asarray(s)))
    cache = model.init_cache(jnp.asarray(s))
    for i in range(N_TINY):
        s2 = s.copy()
        s2[i] *= -1
        de_ref = _brute_energy(rows, net.weight, order, convention, s2) - e_ref
        np.testing.assert_allclose(de_vec[i], de_ref, rtol=1e-4, atol=1e-5)
        de_c = model.delta_energy(cache, jnp.asarray(s), i)
        np.testing.assert_allclose(de_c, de_ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            model.update_cache(cache, jnp.asarray(s), i),
            model.init_cache(jnp.asarray(s2)),
            atol=1e-6,
        )


def test_local_fields_are_minus_gradient_and_flip_rule():
    """h = -dH/ds (autodiff of the overlap form); distinct convention has dE = 2 s h."""
    ds = hb.make_dataset(jax.random.key(3), 3, 40, 5, 0.5)
    s = jnp.where(jax.random.bernoulli(jax.random.key(4), 0.5, (40,)), 1.0, -1.0)

    @jax.jit  # one program per convention instead of many eager op compiles
    def fields(net, s):
        grad = jax.grad(lambda x: hb.model.energy(net, x))(s)
        return grad, hb.model.local_fields(net, s), hb.model.delta_energy(net, s)

    for conv in ("all", "distinct"):
        net = hb.supervised_network(ds.examples, 4, quality=0.5, convention=conv)
        grad, h, de = fields(net, s)
        np.testing.assert_allclose(h, -grad, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(de, 2 * s * h, rtol=1e-5, atol=1e-7)  # distinct convention


def test_supervised_overlap_form():
    """H_sup = -(N/2) sum_mu n_mu^P with n_mu = etabar.s / (N sqrt R) (all index tuples); the
    default convention is "distinct" everywhere (networks and theory)."""
    r, m = 0.4, 7
    ds = hb.make_dataset(jax.random.key(5), 3, 50, m, r)
    assert hb.supervised_network(ds.examples, 6, quality=r).convention == "distinct"
    assert hb.hebbian_network(ds.archetypes, 2).convention == "distinct"
    net = hb.supervised_network(ds.examples, 6, quality=r, convention="all")
    s = ds.archetypes[0]
    big_r = r**2 + (1 - r**2) / m
    n_mu = ds.examples.mean(1) @ s / (50 * np.sqrt(big_r))
    np.testing.assert_allclose(hb.model.energy(net, s), -25.0 * np.sum(n_mu**6), rtol=1e-5)


def test_example_law_moments_and_data_statistics():
    """Exact binomial law: E X = r, Var X = (1 - r^2)/M; generated data follow it."""
    r, m = 0.3, 9
    x, w = hb.data.example_mean_law(r, m)
    np.testing.assert_allclose(np.sum(w), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.sum(w * x), r, rtol=1e-5)
    np.testing.assert_allclose(np.sum(w * x**2) - r**2, (1 - r**2) / m, rtol=1e-4)
    np.testing.assert_allclose(
        w, stats.binom.pmf(np.arange(m + 1), m, (1 + r) / 2), rtol=1e-4, atol=1e-7
    )
    ds = hb.make_dataset(jax.random.key(1), 4, 5000, m, r)
    xbar = np.asarray((ds.examples * ds.archetypes[:, None, :]).mean(1)).ravel()
    se = np.sqrt((1 - r**2) / m / xbar.size)
    assert abs(xbar.mean() - r) < 4 * se
    np.testing.assert_allclose(
        np.mean(xbar**2), hb.data.second_moment(r, m), rtol=4 * np.sqrt(2.0 / xbar.size) * 3
    )
    rho = hb.dataset_entropy(r, m)
    np.testing.assert_allclose(hb.quality_from_entropy(rho, m), r, rtol=1e-6)
    np.testing.assert_allclose(hb.data.second_moment(r, m), r**2 * (1 + rho), rtol=1e-6)


def test_dilution_fraction():
    xi = hb.archetypes(jax.random.key(2), 4, 20000, dilution=0.3)
    frac = float(jnp.mean(xi == 0))
    assert abs(frac - 0.3) < 4 * np.sqrt(0.3 * 0.7 / xi.size)
    assert set(np.unique(np.asarray(xi)).tolist()) == {-1.0, 0.0, 1.0}


def test_observables():
    xi = hb.archetypes(jax.random.key(0), 3, 100)
    s = jnp.stack([xi[1], -xi[2]])
    m = hb.mattis_magnetization(xi, s)
    np.testing.assert_allclose(m[0, 1], 1.0)
    np.testing.assert_allclose(m[1, 2], -1.0)
    np.testing.assert_array_equal(hb.observables.retrieved_pattern(m), [1, 2])
    np.testing.assert_allclose(hb.observables.replica_overlap(s[0], s[0]), 1.0)
    trace = jnp.stack([s, s, -s])
    np.testing.assert_allclose(
        hb.observables.edwards_anderson_overlap(trace), [1 / 9, 1 / 9], rtol=1e-6
    )
    mm = np.array([[0.9, 0.0], [0.8, 0.1], [0.05, 0.9]])
    summ = hb.summarize_retrieval(mm, target=0)
    assert summ.num_escaped == 1 and summ.escaped_to.tolist() == [1]
    np.testing.assert_allclose(summ.mean, 0.85)


def test_simulate_records_several_observables():
    """record=("m", "n", "q", "energy", "spins"): every record is consistent with the spin
    trace (m = xi.s/N, n = overlaps, H(s), q of chain pairs), T = 0 from an archetype keeps
    q = m^2-like overlaps; an odd number of chains with "q" and unknown names raise."""
    ds = hb.make_dataset(jax.random.key(2), 2, 64, 5, 0.7)
    net = hb.supervised_network(ds.examples, 2, quality=0.7)
    s0 = jnp.stack([ds.archetypes[0]] * 4)
    res = hb.simulate(
        jax.random.key(3), net, s0, 2.0, 6, ds.archetypes, record=("n", "q", "energy", "spins")
    )
    sp = res.records["spins"].astype(jnp.float32)
    assert sp.shape == (4, 6, 64) and res.records["spins"].dtype == jnp.int8
    np.testing.assert_allclose(res.trace, hb.mattis_magnetization(ds.archetypes, sp), atol=1e-6)
    np.testing.assert_allclose(res.records["n"], hb.model.overlaps(net, sp), atol=1e-6)
    np.testing.assert_allclose(
        res.records["energy"], jax.vmap(jax.vmap(lambda s: hb.model.energy(net, s)))(sp), rtol=1e-5
    )
    q = res.records["q"]
    assert q.shape == (2, 6)
    np.testing.assert_allclose(q[1], jnp.mean(sp[2] * sp[3], -1), atol=1e-6)
    np.testing.assert_array_equal(res.spins, sp[:, -1])
    with pytest.raises(ValueError, match="even C"):
        hb.simulate(jax.random.key(3), net, s0[:3], 2.0, 2, record=("q",))
    with pytest.raises(ValueError, match="record"):
        hb.simulate(jax.random.key(3), net, s0, 2.0, 2, record=("magnetisation",))
    with pytest.raises(ValueError, match="archetypes"):
        hb.simulate(jax.random.key(3), net, s0, 2.0, 2, record=("m",))


def test_bad_inputs():
    ex = hb.data.noisy_examples(jax.random.key(0), hb.archetypes(jax.random.key(1), 2, 10), 3, 0.5)
    with pytest.raises(ValueError, match="order P"):
        hb.supervised_network(ex, 3)
    with pytest.raises(ValueError, match="order P"):
        hb.unsupervised_network(ex, 0)
    with pytest.raises(ValueError, match="quality"):
        hb.supervised_network(ex, 2, quality=1.5)
    with pytest.raises(ValueError, match="quality"):
        hb.data.noisy_examples(jax.random.key(0), jnp.ones((2, 3)), 3, 0.0)
    with pytest.raises(ValueError, match="num_examples"):
        hb.data.noisy_examples(jax.random.key(0), jnp.ones((2, 3)), 0, 0.5)
    with pytest.raises(ValueError, match="dilution"):
        hb.archetypes(jax.random.key(0), 2, 3, dilution=1.0)
    with pytest.raises(ValueError, match="dilution"):
        hb.archetypes(jax.random.key(0), 2, 3, dilution=-0.1)
    with pytest.raises(ValueError, match="examples"):
        hb.supervised_network(jnp.ones((2, 3)), 2)
    with pytest.raises(ValueError, match="NaN"):
        hb.hebbian_network(jnp.array([[jnp.nan, 1.0]]), 2)
    with pytest.raises(ValueError, match="convention"):
        hb.hebbian_network(jnp.ones((1, 3)), 2, convention="some")
    with pytest.raises(ValueError, match="mismatch"):
        hb.mattis_magnetization(jnp.ones((2, 3)), jnp.ones(4))


def test_image_helpers_and_bad_input():
    img = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    x = hb.binarize(img, threshold=10.0)
    assert x.shape == (2, 16) and set(np.unique(x).tolist()) == {-1.0, 1.0}
    eta = hb.images.class_examples(jax.random.key(0), x, np.array([0, 1]), 1)
    assert eta.shape == (2, 1, 16)
    with pytest.raises(ValueError, match="NaN"):
        hb.binarize(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="binary"):
        hb.images.class_examples(jax.random.key(0), img.reshape(2, -1), np.array([0, 1]), 1)
    with pytest.raises(ValueError, match="num_examples"):
        hb.images.class_examples(jax.random.key(0), x, np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="rule"):
        hb.relax_and_classify(jax.random.key(0), eta, x, 2, rule="hybrid")
    # per-pixel (centred) binarisation: +1 exactly where a pixel exceeds its training mean
    flat = img.reshape(2, -1)
    thr = hb.images.pixel_thresholds(img)
    np.testing.assert_allclose(thr, flat.mean(0))
    np.testing.assert_array_equal(hb.binarize(img, thr), np.where(flat > thr, 1.0, -1.0))
    with pytest.raises(ValueError, match="threshold"):
        hb.binarize(img, np.zeros(5))
    # archetype read-out: each example set's own sign-mean is its nearest archetype
    np.testing.assert_array_equal(np.asarray(hb.images.nearest_archetype(eta, eta[:, 0])), [0, 1])
    # corruption: flip fraction and occluded tail
    big = np.ones((200, 100), np.float32)
    noisy = hb.images.corrupt(jax.random.key(1), big, flip=0.2)
    assert abs((noisy == -1).mean() - 0.2) < 4 * np.sqrt(0.2 * 0.8 / noisy.size)
    part = hb.images.corrupt(jax.random.key(2), big, occlude=0.3)
    assert np.all(part[:, :70] == 1) and abs((part[:, 70:] == -1).mean() - 0.5) < 0.03
    with pytest.raises(ValueError, match="flip"):
        hb.images.corrupt(jax.random.key(0), big, flip=1.5)
    with pytest.raises(ValueError, match="occlude"):
        hb.images.corrupt(jax.random.key(0), big, occlude=-0.1)
    with pytest.raises(ValueError, match="spins"):
        hb.images.corrupt(jax.random.key(0), img.reshape(2, -1))


def test_simulate_chain_parallel_samples_boltzmann():
    """simulate(kernel="chain_parallel") on a tiny dense network (N = 8, P = 4, repeated
    indices included, random order per sweep) draws exp(-beta H): chi-square of 4096 final
    chains over the 2^8 states; bad kernel names are refused."""

    from samplers import spins as sp

    n, beta, chains = 8, 1.5, 4096
    ds = hb.make_dataset(jax.random.key(3), 2, n, 3, 0.6)
    net = hb.supervised_network(ds.examples, 4, quality=0.6)
    res = jax.jit(
        lambda k: hb.simulate(k, net, jnp.ones((chains, n)), beta, 40, kernel="chain_parallel")
    )(jax.random.key(4))
    states = sp.enumerate_states(n)
    probs = np.asarray(jax.nn.softmax(-beta * jax.vmap(lambda s: hb.model.energy(net, s))(states)))
    p, _ = chi2_pvalue(state_codes(res.spins), probs)
    assert p > 1e-3, p
    with pytest.raises(ValueError, match="kernel"):
        hb.simulate(jax.random.key(0), net, jnp.ones((2, n)), beta, 2, kernel="fast")
