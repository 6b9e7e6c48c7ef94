"""Tests for bayesnn.functional_prior: W1 estimators, flows, families, samplers, fitting."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bayesnn import functional_prior as fp
from bayesnn.functional_prior import critic as critic_mod
from bayesnn.gp import RBF, GPPrior, GPSampleError, Kernel
from bayesnn.nn import stax
from bayesnn.priors import HierarchicalGaussian, LayerwiseGaussian, template_of

SMALL = dict(num_steps=400, num_samples=128, num_eval_batches=20, hidden=(64, 64))


def _gauss(m, shift=0.0, scale=1.0):
    shift = jnp.broadcast_to(jnp.asarray(shift, jnp.float32), (m,))[None, :]
    return lambda k, n: scale * jax.random.normal(k, (n, m)) + shift


# ---------------------------------------------------------------- W1 estimators
def test_w1_identical_distributions_near_zero():
    est, se = fp.estimate_w1(jax.random.key(0), _gauss(4), _gauss(4), **SMALL)
    assert abs(float(est)) < 4 * float(se) + 0.05


def test_w1_shifted_copy_recovers_known_value():
    # W1(N(0, I), N(mu, I)) = ||mu||. With penalty weight lam the penalised optimum is the
    # linear critic of slope g = 1 + ||mu|| / (2 lam): estimate ||mu|| (1 + ||mu|| / (2 lam)).
    mu = jnp.array([1.0, -0.5, 0.5, 0.0])
    norm, lam = float(jnp.linalg.norm(mu)), 10.0
    est, se = fp.estimate_w1(
        jax.random.key(1), _gauss(4), _gauss(4, mu), penalty_weight=lam, **SMALL
    )
    penalised = norm * (1 + norm / (2 * lam))
    assert abs(float(est) - penalised) < 4 * float(se) + 0.05
    assert abs(float(est) / norm - 1) < 0.12


def test_w1_one_dimensional_scale_change():
    # W1(N(0,1), N(0,4)) = |1 - 2| sqrt(2/pi); one-sided penalty (the two-sided one has a
    # local optimum at a linear critic in 1-D).
    est, se = fp.estimate_w1(
        jax.random.key(2),
        _gauss(1),
        _gauss(1, scale=2.0),
        penalty="one-sided",
        learning_rate=1e-2,
        **{**SMALL, "num_steps": 800},
    )
    assert abs(float(est) - math.sqrt(2 / math.pi)) < 4 * float(se) + 0.08


def test_weight_clipping_without_penalty_in_every_critic_route():
    """penalty="none" clips the critic weights to [-0.1, 0.1] after each step (WGAN): in
    critic_step itself and in the independent estimate (critic_w1_values), which skipped
    the clip before. With clipped weights (width 8, 3 inputs, |F| < 6) the dual value is
    bounded by 2 (0.1 * 8 * softplus(0.1 * 3 * 6 + 0.1) + 0.1) < 3.5; unclipped Adam steps of
    size 10 would grow it by orders of magnitude."""
    params = fp.critic.init_critic(jax.random.key(0), 3, (8,))
    opt = optax.adam(10.0)
    st = fp.critic.CriticState(params, opt.init(params))
    f = jax.random.normal(jax.random.key(1), (64, 3))
    st, _ = fp.critic.critic_step(st, f, f + 1.0, jax.random.key(2), optimizer=opt, penalty="none")
    assert max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(st.params)) <= np.float32(0.1)
    est, _ = fp.estimate_w1(
        jax.random.key(3), _gauss(3), _gauss(3, 1.0), penalty="none", learning_rate=10.0,
        num_steps=20, num_samples=64, num_eval_batches=4, hidden=(8,),
    )  # fmt: skip
    assert abs(float(est)) < 3.5


def test_penalty_is_vectorised_correctly_and_outputs_share_critic():
    params = fp.critic.init_critic(jax.random.key(0), 5, (16,))
    fp_ = jax.random.normal(jax.random.key(1), (6, 5, 2))
    fq_ = jax.random.normal(jax.random.key(2), (6, 5, 2)) + 1.0
    w, pen = fp.critic.critic_objective(params, fp_, fq_, jax.random.key(3))
    w_sum = sum(fp.critic.dual_w1(params, fp_[..., j], fq_[..., j]) for j in range(2))
    np.testing.assert_allclose(w, w_sum, rtol=1e-5)
    # explicit loop over interpolates
    rp = jnp.moveaxis(fp_, 2, 0).reshape(-1, 5)
    rq = jnp.moveaxis(fq_, 2, 0).reshape(-1, 5)
    eps = jax.random.uniform(jax.random.key(3), (12, 1))
    gaps = []
    for i in range(12):
        g = jax.grad(lambda v: fp.critic.apply_critic(params, v))(
            eps[i] * rp[i] + (1 - eps[i]) * rq[i]
        )
        gaps.append((jnp.linalg.norm(g) - 1) ** 2)
    np.testing.assert_allclose(pen, 2 * np.mean(gaps), rtol=1e-4)


def test_train_critic_keeps_weights_and_optimizer_state_together():
    opt = optax.adam(1e-3)
    params = fp.critic.init_critic(jax.random.key(0), 3, (8,))
    st = fp.critic.CriticState(params, opt.init(params))
    f1 = jax.random.normal(jax.random.key(1), (16, 3))
    st, (w, pen) = fp.critic.train_critic(
        st, f1, f1 + 1.0, jax.random.key(2), optimizer=opt, num_steps=7
    )
    assert w.shape == (7,) and int(st.opt_state[0].count) == 7
    assert float(w[-1]) > float(w[0])  # ascent on the dual objective


def test_sliced_w1_closed_forms():
    x = jax.random.normal(jax.random.key(0), (500, 1))
    y = 2 * jax.random.normal(jax.random.key(1), (500, 1)) + 0.3
    exact = np.mean(np.abs(np.sort(np.asarray(x[:, 0])) - np.sort(np.asarray(y[:, 0]))))
    np.testing.assert_allclose(fp.sliced_w1(jax.random.key(2), x, y), exact, rtol=1e-5)
    # SW1(N(0,I), N(mu,I)) = ||mu|| E|theta_1| with E|theta_1| = G(m/2)/(sqrt(pi)G((m+1)/2))
    m, n = 5, 4000
    mu = jnp.full((m,), 1.0)
    a = jax.random.normal(jax.random.key(3), (n, m))
    b = jax.random.normal(jax.random.key(4), (n, m)) + mu[None, :]
    e_abs = math.exp(math.lgamma(m / 2) - math.lgamma((m + 1) / 2)) / math.sqrt(math.pi)
    est = float(fp.sliced_w1(jax.random.key(5), a, b, num_projections=2000))
    assert abs(est - math.sqrt(m) * e_abs) < 0.06


# ---------------------------------------------------------------- flows
FLOW = ("affine", "coupling", "spline", "coupling")


def _random_flow(dim, key=0, layers=FLOW):
    p = fp.flows.init_flow(jax.random.key(key), dim, layers)
    leaves, tree = jax.tree_util.tree_flatten(p)
    keys = jax.random.split(jax.random.key(key + 1), len(leaves))
    leaves = [x + 0.5 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return jax.tree_util.tree_unflatten(tree, leaves)


@pytest.mark.parametrize("dim", [1, 5])  # degenerate and odd coupling splits
def test_flow_change_of_variables_numerically(dim):
    p = _random_flow(dim)
    z = 2.0 * jax.random.normal(jax.random.key(7), (dim,))

    @jax.jit
    def run(p, z):
        w, logdet = fp.flows.flow_forward(p, z, FLOW)
        z_back, logdet_inv = fp.flows.flow_inverse(p, w, FLOW)
        J = jax.jacfwd(lambda v: fp.flows.flow_forward(p, v, FLOW)[0])(z)
        return logdet, z_back, logdet_inv, J

    logdet, z_back, logdet_inv, J = run(p, z)
    np.testing.assert_allclose(z_back, z, atol=1e-5)
    np.testing.assert_allclose(logdet, jnp.linalg.slogdet(J)[1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logdet_inv, -logdet, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def tiny_flow_prior():
    # one layer with W (1, 1) and b (1,): a 2-D flow over (W, b)
    template = template_of({"dense_0": {"W": jnp.zeros((1, 1)), "b": jnp.zeros((1,))}})
    prior = fp.FlowPrior.create(template, jax.random.key(0), FLOW)
    return fp.FlowPrior(template, {"dense_0": _random_flow(2, 3)}, prior.layers, prior.bound)


def test_flow_prior_density_integrates_to_one_and_matches_samples(tiny_flow_prior):
    prior = tiny_flow_prior
    h = 0.1  # midpoint rule: no quadrature node on a histogram edge
    g = jnp.linspace(-12 + h / 2, 12 - h / 2, 240)
    W, B = jnp.meshgrid(g, g, indexing="ij")

    def lp(w, b):
        return prior.log_prob({"dense_0": {"W": w.reshape(1, 1), "b": b.reshape(1)}})

    dens = jnp.exp(jax.jit(jax.vmap(jax.vmap(lp)))(W, B))
    assert abs(float(dens.sum()) * h * h - 1.0) < 0.01
    # probability of coarse cells: samples vs integrated density
    draws = jax.jit(jax.vmap(prior.sample))(jax.random.split(jax.random.key(1), 20000))
    w = np.asarray(draws["dense_0"]["W"]).ravel()
    b = np.asarray(draws["dense_0"]["b"]).ravel()
    edges = np.linspace(-12, 12, 9)
    counts, _, _ = np.histogram2d(w, b, [edges, edges])
    probs = counts / counts.sum()
    cell = np.clip(np.searchsorted(edges, np.asarray(g), side="right") - 1, 0, 7)
    expected = np.zeros((8, 8))
    np.add.at(
        expected,
        (cell[:, None].repeat(240, 1), cell[None, :].repeat(240, 0)),
        np.asarray(dens) * h * h,
    )
    se = np.sqrt(expected * (1 - expected) / 20000)
    assert np.all(np.abs(probs - expected) < 5 * se + 3e-3)


def test_flow_prior_identity_init_is_gaussian():
    template = template_of({"d": {"W": jnp.zeros((3, 2)), "b": jnp.zeros((2,))}})
    prior = fp.FlowPrior.create(template, jax.random.key(0), scale=1.5)
    params = prior.sample(jax.random.key(1))
    ref = LayerwiseGaussian.create(template, 1.5, 1.5)
    np.testing.assert_allclose(prior.log_prob(params), ref.log_prob(params), rtol=1e-5)


# ---------------------------------------------------------------- families, Gibbs
ARCH = stax.serial(stax.Dense(8, b_std=1.0), stax.Tanh(), stax.Dense(1, b_std=1.0))


@pytest.fixture(scope="module")
def template():
    return template_of(ARCH.init(jax.random.key(0), (1,)))


@pytest.fixture(scope="module")
def hier_draws(template):
    """One compiled batch of 4000 draws, at the start and at the shape bound (a -> 1)."""
    fam = fp.hierarchical_family(template, concentration=4.0, rate=3.0)
    theta = fam.init()
    low = {"a": jax.tree.map(lambda t: t - 1e3, theta["a"]), "b": theta["b"]}
    draw = jax.jit(jax.vmap(fam.sample_params, (None, 0)))
    keys = jax.random.split(jax.random.key(0), 4000)
    return fam, theta, low, draw(theta, keys), draw(low, keys)


def test_hierarchical_family_draws_variances_per_function(hier_draws):
    fam, theta, _, draws, _ = hier_draws
    w = np.asarray(draws["dense_0"]["W"]).reshape(4000, -1)  # n = 8 weights per function
    # per-function sums of squares: E = n E[s2]; Var = 2n E[s4] + n^2 Var(s2)
    a, b = 4.0, 3.0
    es2, vs2 = b / (a - 1), b**2 / ((a - 1) ** 2 * (a - 2))
    ss = (w**2).sum(1)
    var_theory = 2 * 8 * (vs2 + es2**2) + 8**2 * vs2
    assert abs(ss.mean() - 8 * es2) < 5 * math.sqrt(var_theory / 4000)
    assert abs(ss.var() / var_theory - 1) < 0.25  # shared draws would give 2n E[s4] only
    prior = fam.prior(theta)
    assert isinstance(prior, HierarchicalGaussian)


def test_hierarchical_shape_lower_bound(template, hier_draws):
    # a = a_min + softplus(theta_a): however far the optimiser pushes theta_a down, a > a_min
    fam, theta, low, _, low_draws = hier_draws
    np.testing.assert_allclose(fam.prior(theta).concentration["dense_0"]["W"], 4.0, rtol=1e-5)
    a_low = jax.tree_util.tree_leaves(fam.prior(low).concentration)
    assert all(float(a) >= 1.0 for a in a_low)
    # draws stay finite at the bound (a = 1: finite E|w|, infinite variance)
    assert all(np.all(np.isfinite(v)) for v in jax.tree_util.tree_leaves(low_draws))
    # min_concentration=0 is the unbounded family of the reference
    free = fp.hierarchical_family(template, concentration=1.0, min_concentration=0.0)
    a_free = free.prior({"a": jax.tree.map(lambda t: t - 1e3, free.init()["a"]), "b": theta["b"]})
    assert float(jax.tree_util.tree_leaves(a_free.concentration)[0]) < 1e-6
    with pytest.raises(ValueError, match="concentration must exceed"):
        fp.hierarchical_family(template, concentration=1.0)
    with pytest.raises(ValueError, match="min_concentration"):
        fp.hierarchical_family(template, min_concentration=-1.0)


def test_hierarchical_gibbs_matches_conjugate_posterior(template):
    prior = HierarchicalGaussian.create(template, concentration=2.5, rate=1.5)
    params = prior.sample(jax.random.key(0))
    draws = jax.jit(jax.vmap(lambda k: prior.gibbs(k, params)))(
        jax.random.split(jax.random.key(1), 20000)
    )
    for layer, name in (("dense_0", "W"), ("dense_2", "b")):
        x = np.asarray(params[layer][name])
        a, b = 2.5 + x.size / 2, 1.5 + (x**2).sum() / 2
        v = np.asarray(draws[layer][name])
        mean = b / (a - 1)
        assert abs(v.mean() - mean) < 5 * v.std() / math.sqrt(v.size)
        if a > 3:
            var = b**2 / ((a - 1) ** 2 * (a - 2))
            assert abs(v.var() / var - 1) < 0.1


def test_family_gradients_reach_hyperparameters(template):
    x = jnp.linspace(-1, 1, 5)[:, None]
    # the Gaussian family's gradients are exercised by the tuning test below
    for fam in (fp.hierarchical_family(template), fp.flow_family(template, jax.random.key(0))):
        sample = fp.fit.function_sampler(ARCH, fam)
        g = jax.jit(jax.grad(lambda th: jnp.mean(sample(th, jax.random.key(0), x, 8) ** 2)))(
            fam.init()
        )
        norms = [float(jnp.linalg.norm(v)) for v in jax.tree_util.tree_leaves(g)]
        assert all(np.isfinite(norms)) and max(norms) > 0


# ---------------------------------------------------------------- measurement sets
def test_measurement_samplers():
    rng = np.random.default_rng(0)
    xt = rng.normal(size=(50, 3)).astype(np.float32)
    s = fp.mixture(xt, 20, 0.7)
    x = np.asarray(s.sample(jax.random.key(0)))
    assert x.shape == (20, 3) and s.num_points == 20
    train_rows = {tuple(r) for r in xt}
    assert all(tuple(r) in train_rows for r in x[:14])
    assert len({tuple(r) for r in x[:14]}) == 14  # without replacement
    assert np.all(x[14:] >= xt.min(0)) and np.all(x[14:] <= xt.max(0))
    g = fp.grid(-6, 6, 200)
    np.testing.assert_allclose(
        g.sample(jax.random.key(1))[:, 0], np.linspace(-6, 6, 200), atol=1e-5
    )
    u = fp.uniform_box([0, 1], [1, 3], 7).sample(jax.random.key(2))
    assert u.shape == (7, 2) and float(u[:, 1].min()) >= 1
    c = fp.classification_minibatch(xt, 16)
    assert c.sample(jax.random.key(3)).shape == (16, 3)
    with pytest.raises(ValueError, match="num_points"):
        fp.training_inputs(xt, 51)
    with pytest.raises(ValueError, match="x_train"):
        fp.mixture(np.ones((2, 2, 2)), 4)
    with pytest.raises(ValueError, match="box"):
        fp.mixture(xt, 10, box=(np.zeros(2), np.ones(2)))
    with pytest.raises(ValueError, match="NaN"):
        fp.training_inputs(np.full((4, 1), np.nan), 2)


# ---------------------------------------------------------------- fitting
GP = GPPrior(RBF(1.0, 1.0))
MS = fp.grid(-3, 3, 16)
KEY = jax.random.key(0)
FIT = dict(num_functions=32, estimator=fp.CriticW1(steps=10, first_steps=100, hidden=(32, 32)))


@pytest.fixture(scope="module")
def gaussian_fit():
    # start far from the GP: function variance ~4x too large
    return fp.fit_functional_prior(
        ARCH,
        GP,
        MS,
        jax.random.key(0),
        family="gaussian",
        steps=50,
        family_kwargs=dict(weight_scale=2.5, bias_scale=2.5),
        **FIT,
    )


def test_tuning_reduces_independent_w1_and_moves_variance(gaussian_fit):
    prior, hist = gaussian_fit
    assert isinstance(prior, LayerwiseGaussian) and hist.w1.shape == (50,)
    x = MS.sample(jax.random.key(0))
    kw = dict(num_steps=250, num_samples=64, hidden=(32, 32))
    before, se0 = fp.evaluate_w1(
        jax.random.key(9), ARCH, hist.family, hist.initial_theta, GP, x, **kw
    )
    after, se1 = fp.evaluate_w1(jax.random.key(9), ARCH, hist.family, hist.theta, GP, x, **kw)
    assert float(after) < 0.6 * float(before)
    draw = jax.jit(lambda th: hist.sample_functions(th, jax.random.key(1), x, 2000))
    f0, f1 = draw(hist.initial_theta), draw(hist.theta)
    v0, v1 = float(f0.var(0).mean()), float(f1.var(0).mean())
    assert abs(v1 - 1.0) < 0.5 * abs(v0 - 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["hierarchical", "flow"])
def test_other_families_fit_and_return_priors(family):
    prior, hist = fp.fit_functional_prior(
        ARCH,
        GP,
        MS,
        jax.random.key(1),
        family=family,
        steps=30,
        family_kwargs=dict(concentration=3.0, rate=8.0) if family == "hierarchical" else None,
        **FIT,
    )
    params = prior.sample(jax.random.key(2))
    assert np.isfinite(float(prior.log_prob(params)))
    assert np.mean(hist.w1[-10:]) < np.mean(hist.w1[:10])


@pytest.mark.slow
def test_sliced_estimator_multioutput_and_minibatch_sampler():
    arch = stax.serial(stax.Dense(8, b_std=1.0), stax.Tanh(), stax.Dense(2, b_std=1.0))
    xt = np.random.default_rng(0).normal(size=(100, 2))
    ms = fp.classification_minibatch(xt, 32)
    prior, hist = fp.fit_functional_prior(
        arch,
        GPPrior(RBF(1.0, 1.0), precision="float32"),
        ms,
        jax.random.key(0),
        family="gaussian",
        steps=40,
        estimator=fp.SlicedW1(),
        num_functions=32,
        family_kwargs=dict(weight_scale=3.0, bias_scale=3.0),
    )
    assert np.mean(hist.w1[-10:]) < 0.8 * np.mean(hist.w1[:10])
    f = hist.sample_functions(hist.theta, jax.random.key(0), ms.sample(jax.random.key(1)), 4)
    assert f.shape == (4, 32, 2)


def test_fit_bad_input_and_divergence():
    with pytest.raises(ValueError, match="measurement_sampler"):
        fp.fit_functional_prior(ARCH, GP, np.zeros((3, 1)), KEY, steps=1)
    with pytest.raises(ValueError, match="family"):
        fp.fit_functional_prior(ARCH, GP, MS, KEY, family="planar", steps=1)
    with pytest.raises(ValueError, match="penalty"):
        fp.fit_functional_prior(ARCH, GP, MS, KEY, steps=1, estimator=fp.CriticW1(penalty="l3"))
    with pytest.raises(ValueError, match="estimator"):
        fp.fit_functional_prior(ARCH, GP, MS, KEY, steps=1, estimator="sliced")
    wrong = fp.uniform_box([0, 0], [1, 1], 8)._replace(dim=3)
    with pytest.raises(ValueError, match="measurement_sampler returned shape"):
        fp.fit_functional_prior(ARCH, GP, wrong, KEY, steps=1)
    with pytest.raises(FloatingPointError, match="diverged"):
        fp.fit_functional_prior(
            ARCH,
            GP,
            MS,
            KEY,
            steps=3,
            num_functions=8,
            estimator=fp.CriticW1(steps=2, first_steps=2, hidden=(8,), optimizer=optax.sgd(1e30)),
            check_every=1,
        )

    class Negative(Kernel):
        def evaluate(self, x1, x2):
            return -RBF().evaluate(x1, x2)

    import dataclasses

    Negative = jax.tree_util.register_dataclass(
        dataclasses.dataclass(frozen=True)(Negative), data_fields=[], meta_fields=[]
    )
    with pytest.raises(GPSampleError):
        fp.fit_functional_prior(
            ARCH,
            GPPrior(Negative()),
            MS,
            KEY,
            steps=1,
            num_functions=8,
            estimator=fp.CriticW1(first_steps=1, hidden=(8,)),
        )


def test_public_names_have_docstrings():
    for mod in (fp, critic_mod):
        for name in mod.__all__:
            assert getattr(mod, name).__doc__, name
