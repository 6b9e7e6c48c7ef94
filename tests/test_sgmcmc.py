"""Conformance suite every SG-MCMC kernel passes, plus driver features.

The target is the posterior of a Gaussian mean with known variance (conjugate): with prior
``theta ~ N(0, I)`` and ``y_i ~ N(theta, I)``, ``theta | y ~ N(sum y / (N + 1), I / (N + 1))``.
Errors are z-scores against the Monte Carlo standard error computed from the effective sample
size (as in BlackJAX's MonteCarloStandardErrorTest), plus a discretisation allowance that each
row of the table states.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.diagnostics import effective_sample_size

from samplers import sgmcmc

N, D = 100, 2
NUM_CHAINS = 8
Z = 4.0  # |z| bound: 99.99% two-sided for one statistic


@pytest.fixture(scope="module")
def data():
    y = jax.random.normal(jax.random.key(42), (N, D)) + jnp.array([[1.0, -2.0]])
    return y


def logdensity(theta, batch, data_size):
    return -0.5 * jnp.sum(theta**2) - 0.5 * data_size * jnp.mean(
        jnp.sum((batch - theta[None, :]) ** 2, -1)
    )


def exact(y):
    return np.asarray(y.sum(0) / (N + 1)), 1.0 / (N + 1)


# kernel, step size, burn-in, thinning, allowed relative variance bias (discretisation)
TABLE = [
    ("sgld", sgmcmc.sgld(), 2e-3, 1000, 4, 0.12),
    ("sghmc", sgmcmc.sghmc(alpha=2.0), 0.03, 1000, 4, 0.12),
    ("sgnht", sgmcmc.sgnht(alpha=2.0), 0.03, 2000, 4, 0.15),
    ("psgld", sgmcmc.psgld(), 1e-2, 1000, 4, 0.12),
    ("adaptive_sghmc", sgmcmc.adaptive_sghmc(mdecay=0.05), 0.02, 1000, 4, 0.12),
]


def _moments_z(draws, mean, var, allowance):
    draws = np.asarray(draws, np.float64)  # (chains, draws, D)
    ess = effective_sample_size(draws)
    est_mean = draws.mean((0, 1))
    est_var = draws.var((0, 1))
    z_mean = (est_mean - mean) / np.sqrt(var / ess)
    # Var of a sample variance of Gaussians ~ 2 var^2 / ess; allowance for the step-size bias.
    excess = np.maximum(np.abs(est_var / var - 1.0) - allowance, 0.0)
    z_var = excess / np.sqrt(2.0 / ess)
    return z_mean, z_var, ess


@pytest.mark.parametrize("name,kernel,h,burnin,thin,allow", TABLE, ids=[t[0] for t in TABLE])
def test_conjugate_gaussian_moments(data, name, kernel, h, burnin, thin, allow):
    mean, var = exact(data)
    result = sgmcmc.sample(
        jax.random.key(1),
        kernel,
        logdensity,
        data,
        jnp.zeros((NUM_CHAINS, D)),
        num_samples=500,
        batch_size=N,
        step_size=h,
        num_burnin=burnin,
        thinning=thin,
        progress_bar=False,
        shard=False,
    )
    assert result.positions.shape == (NUM_CHAINS, 500, D)
    assert result.info.logdensity.shape == (NUM_CHAINS, 500)
    z_mean, z_var, ess = _moments_z(result.positions, mean, var, allow)
    assert np.all(ess > 100), ess
    assert np.all(np.abs(z_mean) < Z), (z_mean, ess)
    assert np.all(z_var < Z), (z_var, result.positions.var((0, 1)), var)


def test_minibatch_sgld_with_control_variates(data):
    """Minibatches of N/5 with control variates at the posterior mode: noise-free enough."""
    mean, var = exact(data)
    result = sgmcmc.sample(
        jax.random.key(3),
        sgmcmc.sgld(),
        logdensity,
        data,
        jnp.zeros((NUM_CHAINS, D)),
        num_samples=500,
        batch_size=N // 5,
        step_size=2e-3,
        num_burnin=1000,
        thinning=4,
        control_variate_center=jnp.asarray(mean),
        progress_bar=False,
        shard=False,
    )
    z_mean, z_var, _ = _moments_z(result.positions, mean, var, 0.12)
    assert np.all(np.abs(z_mean) < Z)
    assert np.all(z_var < Z)


def test_bayesian_linear_regression_sghmc_minibatches():
    """SGHMC with small minibatches on Bayesian linear regression recovers the posterior mean."""
    n, d = 400, 3
    kx, ke = jax.random.split(jax.random.key(7))
    x = jax.random.normal(kx, (n, d))
    w_true = jnp.array([0.5, -1.0, 2.0])
    y = x @ w_true + 0.5 * jax.random.normal(ke, (n,))

    def logdens(w, batch, data_size):
        xb, yb = batch
        return -0.5 * jnp.sum(w**2) - 0.5 * data_size * jnp.mean((yb - xb @ w) ** 2) / 0.25

    prec = np.eye(d) + np.asarray(x.T @ x) / 0.25
    cov = np.linalg.inv(prec)
    post_mean = cov @ np.asarray(x.T @ y) / 0.25
    result = sgmcmc.sample(
        jax.random.key(8),
        sgmcmc.sghmc(alpha=5.0),
        logdens,
        (x, y),
        jnp.zeros((NUM_CHAINS, d)),
        num_samples=400,
        batch_size=n // 4,
        step_size=2e-3,
        num_burnin=1000,
        thinning=5,
        progress_bar=False,
        shard=False,
    )
    draws = np.asarray(result.positions, np.float64)
    ess = effective_sample_size(draws)
    # Minibatch noise inflates the spread (known SGHMC bias, beta = 0); test the mean against
    # the posterior sd / sqrt(ESS) and the spread to within a factor 2.
    se = np.sqrt(np.diag(cov) * 2.0 / ess)
    assert np.all(np.abs(draws.mean((0, 1)) - post_mean) < Z * se + 0.01)
    ratio = draws.std((0, 1)) / np.sqrt(np.diag(cov))
    assert np.all((ratio > 0.7) & (ratio < 2.0)), ratio


def _make_pytree_logdensity(traces):
    def logdens(pos, batch, data_size):
        traces.append(1)
        c = pos["b"]["c"].astype(jnp.float32)
        theta = pos["a"] + c.sum()
        return logdensity(theta, batch, data_size) - 0.5 * jnp.sum(c**2)

    return logdens


def test_pytree_positions_dtypes_and_no_recompilation(data):
    """Mixed-shape pytree, bfloat16 leaf kept bfloat16; chunking and reruns do not retrace."""
    init = {"a": jnp.zeros((4, D)), "b": {"c": jnp.zeros((4, 3, 1), jnp.bfloat16)}}
    kwargs = dict(
        num_samples=30,
        batch_size=20,
        step_size=1e-3,
        num_burnin=10,
        thinning=2,
        progress_bar=False,
        shard=False,
    )
    kernel = sgmcmc.sghmc(alpha=1.0)
    one_chunk, three_chunks = [], []
    sgmcmc.sample(
        jax.random.key(0), kernel, _make_pytree_logdensity(one_chunk), data, init, **kwargs
    )
    fn = _make_pytree_logdensity(three_chunks)
    result = sgmcmc.sample(
        jax.random.key(0), kernel, fn, data, init, checkpoint_every=10, **kwargs
    )
    assert result.positions["a"].shape == (4, 30, D)
    assert result.positions["b"]["c"].shape == (4, 30, 3, 1)
    assert result.positions["b"]["c"].dtype == jnp.bfloat16
    assert result.positions["a"].dtype == jnp.float32
    # Burn-in and three equal chunks share one compiled program: as many traces as one chunk.
    assert len(three_chunks) == len(one_chunk) > 0
    before = len(three_chunks)
    sgmcmc.sample(jax.random.key(1), kernel, fn, data, init, checkpoint_every=10, **kwargs)
    assert len(three_chunks) == before  # a rerun with the same functions hits the cache
    # Temperature, a constant step size and the burn-in length are arguments of the compiled
    # program, not constants in it: a temperature sweep does not retrace either.
    kwargs.update(step_size=2e-3, num_burnin=14)
    cold = sgmcmc.sample(
        jax.random.key(0), kernel, fn, data, init, checkpoint_every=10, temperature=0.25,
        **kwargs,
    )  # fmt: skip
    assert len(three_chunks) == before
    assert np.all(np.asarray(cold.info.temperature) == 0.25)
    assert np.all(np.asarray(cold.info.step_size) == np.float32(2e-3))
    assert not np.allclose(np.asarray(cold.positions["a"]), np.asarray(result.positions["a"]))


def test_equal_kernels_and_schedules_reuse_the_compiled_run(data):
    """Factories return one object per hyperparameter value, so a kernel and a schedule
    written again (new calls, equal arguments) do not retrace; unhashable arguments still
    build a working kernel."""
    traces = []
    fn = _make_pytree_logdensity(traces)
    init = {"a": jnp.zeros((2, D)), "b": {"c": jnp.zeros((2, 1))}}

    def run(alpha):
        return sgmcmc.sample(
            jax.random.key(0), sgmcmc.sghmc(alpha=alpha), fn, data, init, num_samples=4,
            batch_size=20, step_size=sgmcmc.schedules.cyclical(1e-3, 8, 2), progress_bar=False,
            shard=False,
        )  # fmt: skip

    first = run(1.0)
    count = len(traces)
    assert count > 0
    second = run(1.0)
    assert len(traces) == count
    np.testing.assert_array_equal(first.positions["a"], second.positions["a"])
    assert sgmcmc.sghmc(alpha=1.0) is sgmcmc.sghmc(alpha=1.0)
    assert sgmcmc.sghmc(alpha=1.0) is not sgmcmc.sghmc(alpha=2.0)
    third = run(jnp.float32(1.0))  # unhashable: a fresh kernel, the same draws
    np.testing.assert_allclose(third.positions["a"], first.positions["a"], rtol=1e-6)


def test_checkpoint_resume_gives_identical_draws(data, tmp_path, monkeypatch):
    from samplers import runner

    kwargs = dict(
        num_samples=40,
        batch_size=25,
        step_size=1e-3,
        num_burnin=20,
        thinning=3,
        progress_bar=False,
        shard=False,
    )
    init = jnp.zeros((2, D))
    full = sgmcmc.sample(jax.random.key(5), sgmcmc.sghmc(), logdensity, data, init, **kwargs)

    path = tmp_path / "run.npz"
    calls = {"n": 0}
    real_save = runner._save

    def crashing_save(*args, **kw):
        real_save(*args, **kw)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(runner, "_save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        sgmcmc.sample(
            jax.random.key(5),
            sgmcmc.sghmc(),
            logdensity,
            data,
            init,
            checkpoint_path=str(path),
            checkpoint_every=10,
            **kwargs,
        )
    monkeypatch.setattr(runner, "_save", real_save)
    resumed = sgmcmc.sample(
        jax.random.key(5),
        sgmcmc.sghmc(),
        logdensity,
        data,
        init,
        checkpoint_path=str(path),
        checkpoint_every=10,
        **kwargs,
    )
    np.testing.assert_allclose(resumed.positions, full.positions, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(resumed.info.logdensity, full.info.logdensity, rtol=1e-5)
    with pytest.raises(ValueError, match="other settings"):
        sgmcmc.sample(
            jax.random.key(5),
            sgmcmc.sghmc(),
            logdensity,
            data,
            init,
            checkpoint_path=str(path),
            checkpoint_every=10,
            **{**kwargs, "thinning": 4},
        )


def test_divergence_raises_with_step(data):
    with pytest.raises(sgmcmc.DivergenceError, match=r"chain \d+ .* at step \d+.*smaller step"):
        sgmcmc.sample(
            jax.random.key(0),
            sgmcmc.sgld(),
            logdensity,
            data,
            jnp.zeros((2, D)),
            num_samples=50,
            batch_size=N,
            step_size=1.0,
            progress_bar=False,
        )


def _runaway(data, h, **kw):
    return sgmcmc.sample(
        jax.random.key(1),
        sgmcmc.adaptive_sghmc(),
        logdensity,
        data,
        jnp.zeros((4, D)),
        batch_size=N,
        step_size=h,
        progress_bar=False,
        shard=False,
        **{"num_samples": 16, **kw},
    )


def test_finite_runaway_raises_naming_chain_and_step(data):
    """Adaptive SGHMC beyond its stability limit grows geometrically but stays finite for 16
    steps (unchecked: |theta| > 1e9); the runaway rules, recomputed here on the host from the
    unchecked run's per-step infos and positions, name the chain and step. A stable step
    size runs through."""
    free = _runaway(data, 0.3, max_logdensity_drop=None, max_norm_growth=None)
    assert np.abs(free.positions[:, -1]).max() > 1e9
    # log density rule: the drop below the running maximum of the earlier steps
    ld = np.asarray(free.info.logdensity, np.float64)  # (chains, steps)
    best = np.concatenate([np.full((4, 1), -np.inf), np.maximum.accumulate(ld, 1)[:, :-1]], 1)
    hits = best - ld > 1e3 * (N + D)
    first = np.where(hits.any(1), hits.argmax(1), 10**9)
    chain = int(first.argmin())
    assert 0 < first[chain] < 16
    with pytest.raises(
        sgmcmc.DivergenceError,
        match=rf"chain {chain} ran away: its log density .* at step {first[chain]} ",
    ):
        _runaway(data, 0.3)
    # norm rule alone: step t compares |theta_t| with the largest norm of the iterates
    # after steps 0 .. k-1, k the largest power of two below t + 1
    norms = np.linalg.norm(np.asarray(free.positions, np.float64), axis=-1)
    hits = np.zeros_like(hits)
    for t in range(1, 16):
        k = 2 ** int(np.floor(np.log2(t)))
        hits[:, t] = norms[:, t] > 1e4 * norms[:, :k].max(1)
    first = np.where(hits.any(1), hits.argmax(1), 10**9)
    chain = int(first.argmin())
    assert 0 < first[chain] < 16
    with pytest.raises(
        sgmcmc.DivergenceError,
        match=rf"chain {chain} ran away: its position norm .* at step {first[chain]} ",
    ):
        _runaway(data, 0.3, max_logdensity_drop=None)
    healthy = _runaway(data, 0.1)
    assert np.isfinite(healthy.positions).all() and np.abs(healthy.positions).max() < 10
    # one 16-step interval: checks after steps 9 and 15 (CHECK_EVERY = 10, and every kept
    # draw); the second check sees the collapse against the first check's log density, and
    # the replay of steps 10-15 names the first of them that is below it by the limit
    assert sgmcmc.driver.CHECK_EVERY == 10
    ld = np.asarray(free.info.logdensity, np.float64)
    hits = ld[:, 9:10] - ld[:, 10:] > 1e3 * (N + D)
    assert hits[:, -1].any()
    first = np.where(hits.any(1), 10 + hits.argmax(1), 10**9)
    chain = int(first.argmin())
    with pytest.raises(
        sgmcmc.DivergenceError,
        match=rf"chain {chain} ran away: its log density .* at step {first[chain]} ",
    ):
        _runaway(data, 0.3, max_norm_growth=None, num_samples=1, thinning=16)


STEP_KW = dict(num_samples=15, batch_size=20, num_burnin=6, thinning=2, progress_bar=False)


def test_per_chain_step_sizes_are_the_runs_at_each_step(data):
    """Chain ``c`` of a run with steps ``(h1, h2)`` is chain ``c`` of a run at ``h_c`` (chain
    keys are ``fold_in(rng_key, c)``): chain 0 the one-chain run at ``h1``, chain 1 the
    two-chain run at ``h2`` (given as a JAX scalar)."""
    init = jax.random.normal(jax.random.key(3), (2, D))
    h1, h2 = 1e-3, 4e-3
    both = sgmcmc.sample(
        jax.random.key(2), sgmcmc.sghmc(alpha=1.0), logdensity, data, init,
        step_size=np.array([h1, h2]), shard=False, **STEP_KW,
    )  # fmt: skip
    one = sgmcmc.sample(
        jax.random.key(2), sgmcmc.sghmc(alpha=1.0), logdensity, data, init[:1],
        step_size=h1, shard=False, **STEP_KW,
    )  # fmt: skip
    two = sgmcmc.sample(
        jax.random.key(2), sgmcmc.sghmc(alpha=1.0), logdensity, data, init,
        step_size=jnp.float32(h2), shard=False, **STEP_KW,
    )  # fmt: skip
    np.testing.assert_allclose(both.positions[0], one.positions[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(both.positions[1], two.positions[1], rtol=1e-6, atol=1e-7)
    assert np.abs(np.asarray(both.positions[1] - one.positions[0])).max() > 1e-3
    np.testing.assert_array_equal(np.asarray(both.info.step_size)[:, 0], np.float32([h1, h2]))


def test_per_chain_divergence_names_the_chain_and_its_step_size(data):
    with pytest.raises(sgmcmc.DivergenceError, match=r"chain 1 .*step_size=0\.5\)"):
        sgmcmc.sample(
            jax.random.key(0), sgmcmc.sgld(), logdensity, data, jnp.zeros((2, D)),
            step_size=[1e-3, 0.5], shard=False, **STEP_KW,
        )  # fmt: skip


def test_optax_schedule_is_the_per_step_schedule(data):
    optax = pytest.importorskip("optax")
    total = STEP_KW["num_burnin"] + STEP_KW["num_samples"] * STEP_KW["thinning"]
    sched = optax.cosine_decay_schedule(5e-3, total, alpha=0.1)
    init = jnp.zeros((2, D))
    run = functools.partial(
        sgmcmc.sample, jax.random.key(4), sgmcmc.sgld(), logdensity, data, init, shard=False,
        **STEP_KW,
    )  # fmt: skip
    with_optax = run(step_size=sched)
    manual = run(step_size=lambda t: (jnp.asarray(sched(t), jnp.float32), jnp.zeros((), bool)))
    np.testing.assert_array_equal(with_optax.positions, manual.positions)
    # kept draw k = 1, 2, ... is the state after step num_burnin + k thinning - 1
    kept = STEP_KW["num_burnin"] + STEP_KW["thinning"] * np.arange(1, STEP_KW["num_samples"] + 1)
    kept = kept - 1
    np.testing.assert_allclose(
        np.asarray(with_optax.info.step_size)[0], [float(sched(t)) for t in kept], rtol=1e-6
    )
    assert not np.asarray(with_optax.info.explore).any()
    # the same optax function is wrapped once: no new compilation on a second call
    assert sgmcmc.schedules.as_schedule(sched) is sgmcmc.schedules.as_schedule(sched)


def test_per_chain_step_sizes_are_in_the_checkpoint_fingerprint(data, tmp_path):
    path = tmp_path / "run.npz"
    kw = dict(checkpoint_path=str(path), checkpoint_every=5, shard=False, **STEP_KW)
    init = jnp.zeros((2, D))
    args = (jax.random.key(5), sgmcmc.sgld(), logdensity, data, init)
    first = sgmcmc.sample(*args, step_size=np.array([1e-3, 2e-3]), **kw)
    again = sgmcmc.sample(*args, step_size=jnp.array([1e-3, 2e-3]), **kw)
    np.testing.assert_array_equal(again.positions, first.positions)
    with pytest.raises(ValueError, match=r"step_sizes.*per_chain.*0\.002.*0\.003"):
        sgmcmc.sample(*args, step_size=np.array([1e-3, 3e-3]), **kw)


def test_per_chain_step_sizes_are_sharded_with_the_chains(data):
    """9 chains on the 8 simulated devices: 2 per device on 5 devices, one padding chain (so
    the step sizes are padded and laid out with the chains); each chain keeps its own step
    size and the draws of the single-device run. (Sharding without per-chain steps:
    tests/test_distributed.py.)"""
    if jax.device_count() < 2:
        pytest.skip("sharding needs at least two devices")
    num_chains = 9
    steps = np.geomspace(5e-4, 5e-3, num_chains).astype(np.float32)
    init = jax.random.normal(jax.random.key(6), (num_chains, D))
    args = (jax.random.key(6), sgmcmc.sgld(), logdensity, data, init)
    with pytest.warns(UserWarning, match="padding"):
        sharded = sgmcmc.sample(*args, step_size=steps, **STEP_KW)
    single = sgmcmc.sample(*args, step_size=steps, shard=False, **STEP_KW)
    assert len(jax.tree.leaves(sharded.state)[0].sharding.device_set) == 5
    np.testing.assert_array_equal(np.asarray(sharded.info.step_size)[:, 0], steps)
    np.testing.assert_allclose(sharded.positions, single.positions, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "step_size,match",
    [
        (np.array([1e-3, 1e-3, 1e-3]), r"step_size has shape \(3,\).*\(num_chains,\) = \(2,\)"),
        (np.full((2, 1), 1e-3), r"step_size has shape \(2, 1\)"),
        (np.array([1e-3, np.nan]), "step_size must be positive and finite.*chain 1"),
        (jnp.array([0.0, 1e-3]), "step_size must be positive and finite.*chain 0"),
        (jnp.float32(-1e-3), "step_size must be positive"),
        ("0.01", "step_size must be a positive number"),
        (lambda t: jnp.where(t == 11, 0.0, 1e-3), r"step size 0.0 at step 11 \(of 36\)"),
    ],
)
def test_bad_step_sizes_raise_before_compiling(data, step_size, match):
    traced = []

    def spy(theta, batch, data_size):
        traced.append(1)
        return logdensity(theta, batch, data_size)

    with pytest.raises(ValueError, match=match):
        sgmcmc.sample(
            jax.random.key(0), sgmcmc.sgld(), spy, data, jnp.zeros((2, D)),
            step_size=step_size, **STEP_KW,
        )  # fmt: skip
    assert not traced


def test_cyclical_schedule_explores_then_samples():
    sched = sgmcmc.schedules.cyclical(0.1, num_steps=100, num_cycles=4, exploration_ratio=0.5)
    h, explore = jax.vmap(sched)(jnp.arange(100))
    assert np.isclose(h[0], 0.1) and h[12] < h[5]
    assert bool(explore[0]) and not bool(explore[20]) and bool(explore[25])
    assert np.isclose(float(np.asarray(explore).mean()), 0.52, atol=0.05)


def test_cyclical_draws_flagged_and_dropped(data):
    sched = sgmcmc.schedules.cyclical(1e-3, num_steps=200, num_cycles=2)
    result = sgmcmc.sample(
        jax.random.key(0),
        sgmcmc.sgld(),
        logdensity,
        data,
        jnp.zeros((2, D)),
        num_samples=40,
        batch_size=50,
        step_size=sched,
        thinning=5,
        progress_bar=False,
        shard=False,
    )
    explore = np.asarray(result.info.explore)
    assert explore.any() and not explore.all()
    assert np.all(np.asarray(result.info.temperature)[explore] == 0)
    idata = result.to_inference_data()
    assert idata.posterior.sizes["draw"] == int((~explore[0]).sum())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(step_size=-1.0), "step_size"),
        (dict(batch_size=1000), "batch_size"),
        (dict(num_samples=0), "num_samples"),
        (dict(thinning=0), "thinning"),
        (dict(batches="nope"), "batches"),
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature=float("inf")), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(num_samples=True), "num_samples"),
        (dict(step_size=float("nan")), "step_size"),
        # a schedule that reaches zero at step 12 of 5 + 5 * 2 = 15 steps (checked before
        # sampling, over every step of the run)
        (dict(step_size=lambda t: (1e-3 * (t < 12), False)), r"step size 0.0 at step 12"),
        (dict(step_size=lambda t: (jnp.where(t == 3, jnp.nan, 1e-3), False)), "NaN at step 3"),
        (dict(max_logdensity_drop=0.0), "max_logdensity_drop"),
        (dict(max_norm_growth=float("nan")), "max_norm_growth"),
    ],
)
def test_bad_arguments(data, kwargs, match):
    base = dict(num_samples=5, batch_size=10, step_size=1e-3, progress_bar=False, thinning=2)
    base["num_burnin"] = 5
    with pytest.raises(ValueError, match=match):
        sgmcmc.sample(
            jax.random.key(0),
            sgmcmc.sgld(),
            logdensity,
            data,
            jnp.zeros((2, D)),
            **{**base, **kwargs},
        )


def test_bad_data_and_positions(data):
    base = dict(num_samples=5, batch_size=10, step_size=1e-3, progress_bar=False)
    bad = data.at[3, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="NaN"):
        sgmcmc.sample(jax.random.key(0), sgmcmc.sgld(), logdensity, bad, jnp.zeros((2, D)), **base)
    with pytest.raises(ValueError, match="chain"):
        sgmcmc.sample(
            jax.random.key(0),
            sgmcmc.sgld(),
            logdensity,
            data,
            {"a": jnp.zeros((2, D)), "b": jnp.zeros((3,))},
            **base,
        )
    with pytest.raises(ValueError, match="leading axis"):
        sgmcmc.sample(
            jax.random.key(0),
            sgmcmc.sgld(),
            logdensity,
            (data, data[:10]),
            jnp.zeros((2, D)),
            **base,
        )


def test_data_lists_and_position_template(data):
    """Data given as Python lists and positions that do not match the model's template are
    refused before compiling, naming the argument and the leaf."""
    base = dict(num_samples=5, batch_size=10, step_size=1e-3, progress_bar=False)
    with pytest.raises(ValueError, match="Python list"):
        sgmcmc.sample(
            jax.random.key(0), sgmcmc.sgld(), logdensity, data.tolist(), jnp.zeros((2, D)), **base
        )
    template = {"w": jnp.zeros((D,)), "b": jnp.zeros(())}
    good = {"w": jnp.zeros((2, D)), "b": jnp.zeros((2,))}
    for bad, match in [
        ({"w": jnp.zeros((2, D))}, "structure"),
        ({"w": jnp.zeros((2, 2 * D)), "b": jnp.zeros((2,))}, r"\['w'\] has shape \(2, 4\)"),
        ({**good, "b": jnp.zeros((2,), jnp.int32)}, r"\['b'\] has dtype int32"),
    ]:
        with pytest.raises(ValueError, match=match):
            sgmcmc.sample(
                jax.random.key(0),
                sgmcmc.sgld(),
                logdensity,
                data,
                bad,
                position_template=template,
                **base,
            )


def test_divergence_on_the_last_step_is_caught():
    """A position that overflows on the very last step (never evaluated by a later step)."""
    with pytest.raises(sgmcmc.DivergenceError, match="non-finite position at step 0"):
        sgmcmc.sample(
            jax.random.key(0),
            sgmcmc.sgld(),
            lambda theta, batch, n: 1e15 * jnp.sum(theta),
            jnp.zeros((4, 1)),
            jnp.zeros((2, 1)),
            num_samples=1,
            batch_size=2,
            step_size=1e25,
            progress_bar=False,
            shard=False,
        )


def test_kernel_hyperparameter_errors():
    for bad in (dict(alpha=float("nan")), dict(beta=-1.0), dict(beta=float("nan"))):
        with pytest.raises(ValueError, match="alpha|beta"):
            sgmcmc.sgnht(**bad)
        with pytest.raises(ValueError, match="alpha|beta"):
            sgmcmc.sghmc(**bad)
    with pytest.raises(ValueError, match="init_xi"):
        sgmcmc.sgnht(init_xi=float("nan"))
    with pytest.raises(ValueError, match="alpha"):
        sgmcmc.sghmc(alpha=0.0)
    with pytest.raises(ValueError, match="decay"):
        sgmcmc.psgld(decay=1.5)
    with pytest.raises(ValueError, match="mdecay"):
        sgmcmc.adaptive_sghmc(mdecay=0.0)


def test_progress_bar_reports_all_steps(data, capsys):
    sgmcmc.sample(
        jax.random.key(0),
        sgmcmc.sgld(),
        logdensity,
        data,
        jnp.zeros((2, D)),
        num_samples=20,
        batch_size=10,
        step_size=1e-3,
        num_burnin=10,
        thinning=2,
        progress_bar=True,
        shard=False,
    )
    err = capsys.readouterr().err
    assert "sampling" in err and "50/50" in err


def _logdensity_with_gibbs(theta, batch, data_size, count):
    del count
    return logdensity(theta, batch, data_size)


def _count_gibbs(rng_key, position, count):
    del rng_key, position
    return count + 1


def test_gibbs_block_pauses_while_a_cyclical_schedule_explores(data):
    # A hierarchical variance drawn given weights that are being optimised (no noise) would
    # shrink towards the mode: the Gibbs block runs only at sampling steps. The block here
    # counts its calls, so the count is exactly the number of sampling steps t with
    # (t + 1) % gibbs_every == 0 under the schedule's own explore flag.
    num_steps, gibbs_every = 60, 2
    schedule = sgmcmc.schedules.cyclical(1e-3, num_steps, 3, exploration_ratio=0.5)
    result = sgmcmc.sample(
        jax.random.key(0),
        sgmcmc.sghmc(alpha=1.0),
        _logdensity_with_gibbs,
        data,
        jnp.zeros((2, D)),
        num_samples=num_steps,
        batch_size=20,
        step_size=schedule,
        gibbs_fn=_count_gibbs,
        init_gibbs_state=jnp.zeros((2,), jnp.int32),
        gibbs_every=gibbs_every,
        progress_bar=False,
        shard=False,
    )
    t = np.arange(num_steps)
    explore = np.asarray(jax.vmap(schedule)(jnp.asarray(t))[1])
    expected = np.cumsum(((t + 1) % gibbs_every == 0) & ~explore)
    assert 0 < expected[-1] < num_steps // gibbs_every  # both phases occur
    np.testing.assert_array_equal(np.asarray(result.gibbs_states), np.stack([expected] * 2))
