"""RS theory of dense Hebbian networks: closed forms, limits, thresholds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from bayesnn import hebbian as hb

PAD = 1001  # laws padded with zero-weight atoms to one size: one compile per solver/order


def _pad(law, size=PAD):
    """Append zero-weight atoms at p = 0 (expectations unchanged, shapes shared)."""
    return tuple(jnp.pad(a, (0, size - a.shape[0])) for a in law)


@pytest.mark.parametrize("r,m", [(0.5, 20), (0.3, 11), (0.8, 4)])
def test_zero_temperature_magnetization_is_mean_sign_for_all_orders(r, m):
    """At T = 0 the RS retrieval m = E sign X = sum_k Bin(k) sign(2k - M), for every P."""
    k = np.arange(m + 1)
    ref = np.sum(stats.binom.pmf(k, m, (1 + r) / 2) * np.sign(2 * k - m))
    law = _pad(hb.exact_law(r, m))
    np.testing.assert_allclose(hb.theory.zero_temperature_magnetization(law), ref, rtol=1e-5)
    for order in (2, 4, 6):
        sol = hb.solve_low_storage(jnp.inf, order, law)
        assert bool(sol.retrieval)
        np.testing.assert_allclose(sol.m, ref, rtol=1e-5)


def test_p2_critical_temperature_is_one():
    """P = 2: continuous transition at T_c = 1 for any (r, M): retrieval just below, not above."""
    solve = jax.jit(jax.vmap(lambda b, x, w: hb.solve_low_storage(b, 2, (x, w), num_iter=20000)))
    for r, m in [(0.4, 15), (0.9, 3)]:
        law = _pad(hb.exact_law(r, m))
        tc, _ = hb.transition_temperatures(2, law)
        np.testing.assert_allclose(tc, 1.0, rtol=1e-5)
        betas = jnp.array([1 / 0.97, 1 / 1.03])
        sol = solve(betas, *(jnp.broadcast_to(a, (2,) + a.shape) for a in law))
        assert bool(sol.retrieval[0]) and not bool(sol.retrieval[1])
        # Near T_c: n^2 ~ 2 (1 - T) / E p^4 (Landau expansion of n = E p tanh(beta n p)).
        p4 = float(np.sum(law[1] * law[0] ** 4))
        np.testing.assert_allclose(sol.n[0] ** 2, 3 * 0.03 / 0.97**-3 / p4, rtol=0.15)


def test_p4_first_order_transition():
    """P = 4: T_c < T_s, equal free energies at T_c, metastable retrieval between them."""
    law = _pad(hb.exact_law(0.6, 10))
    tc, ts = (float(t) for t in hb.transition_temperatures(4, law))
    assert 0.2 < tc < ts
    n, _, _ = hb.theory.low_storage_fixed_point(1 / tc, 4, law)
    f = hb.theory.low_storage_free_energy(n, 1 / tc, 4, law)
    np.testing.assert_allclose(f, -tc * np.log(2), atol=2e-3)
    mid = hb.solve_low_storage(2 / (tc + ts), 4, law)
    assert bool(mid.metastable) and not bool(mid.retrieval)


def test_gaussian_form_and_large_m_limit():
    """The exact law approaches the Gaussian law as M grows at fixed rho; the Gaussian
    low-storage solution satisfies the Stein form n = m/sqrt(1+rho) + beta P/2 n^{P-1}
    rho/(1+rho)(1-q)."""
    rho, beta, order = 0.3, 1 / 0.4, 4
    glaw = _pad(hb.gaussian_law(rho))
    sol = hb.solve_low_storage(beta, order, glaw)
    stein = sol.m / np.sqrt(1 + rho) + beta * order / 2 * sol.n ** (order - 1) * rho / (
        1 + rho
    ) * (1 - sol.q)
    np.testing.assert_allclose(sol.n, stein, rtol=1e-4)
    errs = []
    for m in (10, 100, 1000):
        r = float(hb.quality_from_entropy(rho, m))
        law = _pad(hb.exact_law(r, m))
        errs.append(abs(float(hb.solve_low_storage(beta, order, law).m - sol.m)))
    assert errs[2] < errs[0] and errs[2] < 5e-3
    np.testing.assert_allclose(
        hb.theory.zero_temperature_magnetization(
            hb.exact_law(hb.quality_from_entropy(rho, 2001), 2001)
        ),
        special.erf(1 / np.sqrt(2 * rho)),
        atol=5e-4,
    )


def test_high_storage_closed_forms():
    """rho = 0 gives AGS alpha_c ~ 0.138 (P = 2) and max_x P erf^{2(P-1)}/(2 P! x^2) (P > 2);
    alpha_c falls with rho; the T = 0 m equals the finite-T RS at low T."""
    ac = float(hb.p2_critical_load(_pad(hb.gaussian_law(0.0))).alpha)
    np.testing.assert_allclose(ac, 0.1379, atol=5e-4)
    assert float(hb.p2_critical_load(_pad(hb.gaussian_law(0.2))).alpha) < 0.7 * ac
    x = np.linspace(1e-3, 5, 200000)
    for order in (4, 6):
        ref = np.max(
            order * special.erf(x) ** (2 * (order - 1)) / (2 * special.factorial(order) * x**2)
        )
        np.testing.assert_allclose(hb.dense_critical_load(order, 0.0).alpha, ref, rtol=1e-3)
        assert (
            hb.dense_critical_load(order, 0.0, "all").alpha
            < hb.dense_critical_load(order, 0.0).alpha
        )
    law = hb.exact_law(0.6, 30)
    m0, _ = hb.theory.p2_zero_temperature(0.02, law)
    m_lowt = hb.high_storage_rs(1 / 0.01, 0.02, 2, law).m
    np.testing.assert_allclose(m_lowt, m0, atol=2e-3)
    m_above, _ = hb.theory.p2_zero_temperature(1.2 * float(hb.p2_critical_load(law).alpha), law)
    assert float(m_above) == 0.0


def _gaussian_p2_alpha_c(rho):
    """Closed form for the Gaussian law p ~ N(mu, s^2): E erf(yp) = erf(a), E exp(-y^2p^2) =
    exp(-a^2)/d, E p erf(yp) = mu erf(a) + s^2 (2/sqrt(pi)) y exp(-a^2)/d (Stein), with
    d = sqrt(1 + 2 y^2 s^2), a = y mu/d; maximised on a fine log grid of y."""
    mu, s2 = 1 / np.sqrt(1 + rho), rho / (1 + rho)
    y = np.geomspace(1e-3, 1e3, 400001)
    d = np.sqrt(1 + 2 * y**2 * s2)
    a = y * mu / d
    e_perf = mu * special.erf(a) + s2 * 2 / np.sqrt(np.pi) * np.exp(-(a**2)) * y / d
    g = (e_perf - 2 / np.sqrt(np.pi) * y * np.exp(-(a**2)) / d) / (np.sqrt(2) * y)
    return np.max(g) ** 2


def test_gaussian_law_resolves_sign_integrands_and_converges():
    """E sign p = erf(1/sqrt(2 rho)) and the P = 2 alpha_c equal their closed forms (where
    Gauss-Hermite nodes were off by 0.018 and 70%); both converge in the number of nodes; the
    normalisation E p^2 = 1 holds; bad node counts and rho raise."""
    for rho in (0.05, 0.2625, 2.0):
        ref = special.erf(1 / np.sqrt(2 * rho))
        vals = [
            float(hb.theory.zero_temperature_magnetization(hb.gaussian_law(rho, k)))
            for k in (3, 6)
        ]
        np.testing.assert_allclose(vals, ref, atol=2e-6)
        law = hb.gaussian_law(rho)
        assert bool(jnp.all(jnp.isfinite(law[1]))) and bool(jnp.all(law[1] >= 0))
        np.testing.assert_allclose(jnp.sum(law[1] * law[0] ** 2), 1.0, rtol=1e-5)
    for rho in (0.2, 2.0):
        acs = [float(hb.p2_critical_load(hb.gaussian_law(rho, k)).alpha) for k in (4, 8)]
        np.testing.assert_allclose(acs, _gaussian_p2_alpha_c(rho), rtol=2e-3)
        assert abs(acs[0] - acs[1]) < 1e-3 * acs[1]
    with pytest.raises(ValueError, match="nodes_per_panel"):
        hb.gaussian_law(0.3, 400)
    with pytest.raises(ValueError, match="rho"):
        hb.gaussian_law(float("nan"))
    with pytest.raises(ValueError, match="rho"):
        hb.gaussian_law(-0.1)


def test_high_storage_rs_low_temperature_limit():
    """As T -> 0 the finite-T high-storage RS tends to the T = 0 solutions: P = 2 (exact law
    r = 0.4, M = 20, alpha = 0.01) m -> p2_zero_temperature (0.923; was 0.19); P = 4
    (Gaussian law, rho = 0.1) m -> erf(u/sqrt 2) of the parametric T = 0 solution below
    alpha_c and no retrieval just above alpha_c (was retrieval up to 1.37 alpha_c)."""
    law = hb.exact_law(0.4, 20)
    m0, _ = hb.theory.p2_zero_temperature(0.01, law)
    sol = hb.high_storage_rs(100.0, 0.01, 2, law)
    assert bool(sol.retrieval)
    np.testing.assert_allclose(sol.m, m0, atol=1e-3)
    rho, order = 0.1, 4
    ac = float(hb.dense_critical_load(order, rho).alpha)
    glaw = hb.gaussian_law(rho, 4)
    fracs = jnp.array([0.8, 0.95, 1.05])
    sols = jax.vmap(lambda a: hb.high_storage_rs(100.0, a, order, glaw, nodes_per_panel=4))(
        fracs * ac
    )
    np.testing.assert_array_equal(sols.retrieval, [True, True, False])
    # T = 0 parametric solution: the largest u with alpha(u) >= alpha, m = erf(u / sqrt 2).
    u = np.linspace(1e-3, 1 / np.sqrt(rho), 200001)
    n = (special.erf(u / np.sqrt(2)) + 2 * rho * u * stats.norm.pdf(u)) / np.sqrt(1 + rho)
    alpha_u = (order / 2 * n ** (order - 1)) ** 2 / (1 + rho) * (u**-2.0 - rho)
    alpha_u /= (order / 2) ** 2 * hb.theory.noise_constant(order, "distinct")
    np.testing.assert_allclose(alpha_u.max(), ac, rtol=1e-4)
    u_root = u[np.max(np.nonzero(alpha_u >= 0.8 * ac))]
    np.testing.assert_allclose(sols.m[0], special.erf(u_root / np.sqrt(2)), atol=2e-3)
    # The critical point itself: (alpha_c, m_c, field u_c) of the retrieval branch's end.
    crit = hb.dense_critical_load(order, rho)
    i = np.argmax(alpha_u)
    np.testing.assert_allclose(crit.field, u[i], rtol=2e-3)
    np.testing.assert_allclose(crit.m, special.erf(u[i] / np.sqrt(2)), atol=1e-3)
    assert float(sols.m[1]) > float(crit.m)
    # P = 2, rho = 0: Amit-Gutfreund-Sompolinsky m_c = 0.967 at alpha_c = 0.138; the T = 0
    # solution just below alpha_c ends there.
    ags_law = (jnp.ones(1), jnp.ones(1))
    ags = hb.p2_critical_load(ags_law)
    np.testing.assert_allclose(ags.m, 0.967, atol=1e-3)
    m_below, _ = hb.theory.p2_zero_temperature(0.999 * float(ags.alpha), ags_law)
    np.testing.assert_allclose(m_below, ags.m, atol=5e-3)


def test_snr_and_unsupervised_thresholds():
    """SNR reduces to erf(1/sqrt(2 rho)) at alpha = 0; memorisation threshold M* = 1 + r^-P
    where archetype and example energies cross; refined threshold equal for P >= 4."""
    np.testing.assert_allclose(
        hb.theory.snr_magnetization_supervised(0.0, 0.25, 4),
        special.erf(1 / np.sqrt(0.5)),
        rtol=1e-5,
    )
    r, order = 0.5, 4
    mstar = hb.memorization_threshold(r, order)
    for m in (int(np.floor(mstar)) - 1, int(np.ceil(mstar)) + 1):
        e_arch, e_ex = hb.theory.unsupervised_energies(r, m, order)
        assert (e_arch < e_ex) == (m > mstar)
    assert abs(hb.theory.refined_memorization_threshold(r, order) - mstar) <= 1.5
    assert hb.theory.refined_memorization_threshold(r, 2) < 0.7 * hb.memorization_threshold(r, 2)
    assert hb.theory.unsupervised_variance_inflation(1.0, 5, 4) == pytest.approx(1.0)
    assert hb.theory.unsupervised_variance_inflation(0.3, 5, 4) > 10


def test_cascade_thresholds():
    """1 - 2x + x^K = 0: K = 3 -> golden ratio, K -> inf -> 1/2, d_c = x_c^{1/(P-1)}."""
    np.testing.assert_allclose(hb.cascade_threshold(3), (np.sqrt(5) - 1) / 2, rtol=1e-9)
    np.testing.assert_allclose(hb.cascade_threshold(60), 0.5, rtol=1e-9)
    np.testing.assert_allclose(hb.cascade_threshold(3, 4), ((np.sqrt(5) - 1) / 2) ** (1 / 3))
    assert hb.cascade_threshold(2) == 1.0
    dc = hb.cascade_threshold(4)
    assert float(hb.theory.cascade_stability_margin(dc - 1e-3, 4)) > 0
    assert float(hb.theory.cascade_stability_margin(dc + 1e-3, 4)) < 0
    np.testing.assert_allclose(hb.theory.cascade_amplitudes(0.3, 3), [0.7, 0.21, 0.063], rtol=1e-6)


def test_theory_bad_inputs():
    with pytest.raises(ValueError, match="order P"):
        hb.solve_low_storage(1.0, 3, hb.exact_law(0.5, 3))
    with pytest.raises(ValueError, match="quality"):
        hb.exact_law(0.0, 3)
    with pytest.raises(ValueError, match="num_examples"):
        hb.exact_law(0.5, 0)
    with pytest.raises(ValueError, match="dilution"):
        hb.theory.cascade_amplitudes(1.2, 3)
    with pytest.raises(ValueError, match="P must be > 2"):
        hb.dense_critical_load(2, 0.1)
    with pytest.raises(ValueError, match="convention"):
        hb.theory.noise_constant(4, "pairs")
    law = hb.exact_law(0.5, 3)
    for beta in (float("nan"), 0.0, -1.0):
        with pytest.raises(ValueError, match="beta"):
            hb.solve_low_storage(beta, 2, law)
        with pytest.raises(ValueError, match="beta"):
            hb.high_storage_rs(beta, 0.01, 2, law)
    with pytest.raises(ValueError, match="beta"):
        hb.high_storage_rs(jnp.inf, 0.01, 2, law)  # finite-T solver
    with pytest.raises(ValueError, match="alpha"):
        hb.high_storage_rs(10.0, -0.1, 2, law)
    nan_law = (law[0], law[1].at[0].set(jnp.nan))
    with pytest.raises(ValueError, match="law"):
        hb.solve_low_storage(2.0, 2, nan_law)
    with pytest.raises(ValueError, match="sum to 1"):
        hb.high_storage_rs(2.0, 0.01, 2, (law[0], 2 * law[1]))


def test_one_index_convention_default_everywhere():
    """Every hebbian function or class with a ``convention`` argument defaults to "distinct"
    (networks used to default to "all" while the theory used "distinct": c_P = 15 vs 6 at
    P = 4, alpha_c off by 2.5x)."""
    import inspect

    seen = []
    for mod in (hb.model, hb.theory, hb.phase, hb.images):
        for name, obj in vars(mod).items():
            if not callable(obj) or name.startswith("_"):
                continue
            try:
                par = inspect.signature(obj).parameters.get("convention")
            except (TypeError, ValueError):
                continue
            if par is not None:
                seen.append(name)
                assert par.default == "distinct", (mod.__name__, name, par.default)
    assert {"HebbianNetwork", "supervised_network", "high_storage_rs", "noise_constant"} <= set(
        seen
    )
