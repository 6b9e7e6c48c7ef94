"""Phase diagrams of dense Hebbian networks: boundaries vs closed forms and thresholds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from bayesnn import hebbian as hb

AGS_LAW = (jnp.ones(1), jnp.ones(1))  # p = 1: rho = 0 (Amit-Gutfreund-Sompolinsky)


@pytest.fixture(scope="module")
def t_alpha_ags():
    temps = jnp.linspace(0.05, 1.45, 15)  # spacing 0.1
    alphas = jnp.linspace(0.0, 0.16, 17)  # spacing 0.01
    return hb.phase_diagram_t_alpha(temps, alphas, AGS_LAW)


def test_t_alpha_p2_boundaries(t_alpha_ags):
    """P = 2 (T, alpha): the retrieval spinodal reaches T = 1 at alpha = 0 and the T = 0
    closed-form alpha_c (0.138) at low T; the spin glass appears at T_g = 1 + sqrt(alpha);
    retrieval is the global minimum only below AGS's alpha ~ 0.051 at low T."""
    d = t_alpha_ags
    temps, alphas = np.asarray(d.temperatures), np.asarray(d.alphas)
    t_m = hb.phase_boundary(temps, d.exists, axis=0)
    assert abs(t_m[0] - 1.0) <= 0.05 + 1e-6
    assert np.all(np.diff(t_m[np.isfinite(t_m)]) <= 1e-6)  # T_M decreases with alpha
    a_m = hb.phase_boundary(alphas, d.exists, axis=1)
    ac = float(hb.p2_critical_load(AGS_LAW).alpha)
    assert abs(a_m[0] - ac) <= 0.0075, (a_m[0], ac)
    t_g = hb.phase_boundary(temps, d.q_sg > 0, axis=0)
    np.testing.assert_allclose(t_g[1:], 1 + np.sqrt(alphas[1:]), atol=0.1)
    assert not bool(jnp.any(d.q_sg[:, 0] > 0))  # no spin glass at alpha = 0
    a_c_thermo = hb.phase_boundary(alphas, d.phase == 3, axis=1)[0]
    assert 0.04 <= a_c_thermo <= 0.065, a_c_thermo
    ph = np.asarray(d.phase)
    assert set(np.unique(ph)) == {0, 1, 2, 3}
    # Retrieval magnetisation: 1 at low T and load, 0 outside the retrieval region.
    assert float(d.m[0, 0]) > 0.999 and np.all(np.asarray(d.m)[~np.asarray(d.exists)] == 0)


def test_t_alpha_finite_m_low_t_matches_closed_form():
    """Exact law (r = 0.6, M = 30): the low-T retrieval boundary in alpha is alpha_c(law)."""
    law = hb.exact_law(0.6, 30)
    alphas = jnp.linspace(0.0, 0.1, 21)
    d = hb.phase_diagram_t_alpha(jnp.array([0.03]), alphas, law)
    a_m = hb.phase_boundary(alphas, d.exists, axis=1)[0]
    ac = float(hb.p2_critical_load(law).alpha)
    assert abs(a_m - ac) <= 0.005, (a_m, ac)
    m0, _ = hb.theory.p2_zero_temperature(0.02, law)
    np.testing.assert_allclose(d.m[0, 4], m0, atol=5e-3)


@pytest.mark.parametrize("order,temp,alpha", [(2, 0.3, 0.03), (4, 0.5, 0.002)])
def test_high_storage_free_energy_is_stationary_at_rs_solution(order, temp, alpha):
    """df/dn = df/dq = 0 at the fixed point of high_storage_rs (a check of the free-energy
    formula independent of the iteration)."""
    law = hb.exact_law(0.6, 20)
    n, _, q, _ = hb.high_storage_rs(1 / temp, alpha, order, law, num_iter=800)
    assert float(n) > 0.5
    grad = jax.jit(
        jax.grad(
            lambda nq: hb.phase.high_storage_free_energy(nq[0], nq[1], 1 / temp, alpha, order, law)
        )
    )(jnp.array([n, q]))
    np.testing.assert_allclose(grad, 0.0, atol=2e-3)
    # n = q = 0 and P = 2: AGS paramagnet -T log 2 + (alpha T / 2) log(1 - beta).
    f0 = hb.phase.high_storage_free_energy(0.0, 0.0, 0.5, 0.1, 2, law)
    np.testing.assert_allclose(f0, -2 * np.log(2) + 0.1 * np.log(0.5), rtol=1e-5)


def test_t_rho_boundaries_match_transition_temperatures():
    """(T, rho), Gaussian law: P = 2 boundary at T = 1 for every rho; P = 4 spinodal and
    thermodynamic boundaries equal transition_temperatures; low-T m -> erf(1/sqrt(2 rho))."""
    temps = jnp.linspace(0.02, 1.4, 70)  # spacing 0.02
    rhos = jnp.array([0.0, 0.3, 0.8])
    d2 = hb.phase_diagram_t_rho(temps, rhos, 2)
    np.testing.assert_allclose(hb.phase_boundary(temps, d2.exists), 1.0, atol=0.0125)
    d4 = hb.phase_diagram_t_rho(temps, rhos, 4)
    t_s = hb.phase_boundary(temps, d4.exists)
    t_c = hb.phase_boundary(temps, d4.phase == 3)
    for j, rho in enumerate(np.asarray(rhos)):
        tc_ref, ts_ref = hb.transition_temperatures(4, hb.gaussian_law(rho))
        assert abs(t_s[j] - float(ts_ref)) <= 0.0125, (rho, t_s[j], ts_ref)
        assert abs(t_c[j] - float(tc_ref)) <= 0.0125, (rho, t_c[j], tc_ref)
    assert bool(jnp.all(d4.phase[0] == 3))
    # Continuation lands on the same branch as the independent solver at low T.
    for j, rho in enumerate(np.asarray(rhos)):
        ref = hb.solve_low_storage(1 / 0.02, 4, hb.gaussian_law(rho))
        np.testing.assert_allclose(d4.m[0, j], ref.m, atol=1e-3)
    np.testing.assert_allclose(d4.m[0, 1], special.erf(1 / np.sqrt(2 * 0.3)), atol=0.01)


def test_m_r_memorization_boundary_and_snr_consistency():
    """(M, r): the unsupervised archetype/example boundary equals the refined memorisation
    threshold (and M* = 1 + r^-P within 1.5 at P = 4); the supervised RS magnetisation at T = 0
    agrees with the signal-to-noise estimate (alpha = 0, large M; and inside the P = 2 retrieval
    region at alpha = 0.02), and the RS boundary is alpha_c(r, M) = alpha."""
    qs = np.array([0.5, 0.6, 0.7, 0.8])
    d = hb.phase_diagram_m_r(np.arange(1, 26), qs, 4, rule="unsupervised")
    b = hb.phase_boundary(d.num_examples, ~d.archetype_stable, axis=0)
    refined = np.array([hb.theory.refined_memorization_threshold(r, 4) for r in qs])
    np.testing.assert_allclose(b + 0.5, refined)
    assert np.all(np.abs(refined - (1 + qs**-4.0)) <= 1.5)
    assert bool(jnp.all(d.retrieval[-1]))  # archetype state retrieved at T = 0, low storage
    np.testing.assert_allclose(
        d.m_snr[4, 1], hb.theory.snr_magnetization_unsupervised(0.0, 0.6, 5, 4), rtol=1e-5
    )

    ms = np.array([5, 10, 30, 100])
    ds = hb.phase_diagram_m_r(ms, np.linspace(0.2, 0.9, 8), 2)
    big = ms >= 30
    np.testing.assert_allclose(ds.m_rs[big], ds.m_snr[big], atol=0.02)
    dh = hb.phase_diagram_m_r(ms, np.linspace(0.2, 0.9, 8), 2, alpha=0.02)
    ret = np.asarray(dh.retrieval)
    assert ret.any() and (~ret).any()
    assert np.all(np.abs(np.asarray(dh.m_rs - dh.m_snr))[ret] < 0.1)
    for i, j in [(0, 3), (0, 4), (1, 2), (1, 3)]:  # cells on both sides of the boundary
        ac = float(hb.p2_critical_load(hb.exact_law(float(dh.qualities[j]), int(ms[i]))).alpha)
        assert ret[i, j] == (ac > 0.02), (i, j, ac)


def test_plot_and_bad_inputs(t_alpha_ags):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = hb.plot_phase_diagram(t_alpha_ags, "phase")
    assert ax.get_xlabel() == r"$\alpha$" and ax.get_ylabel() == "T"
    assert len(ax.collections) >= 2  # colour mesh + boundary contours
    d = hb.phase_diagram_m_r([2, 4, 8], [0.5, 0.7], 4, rule="unsupervised")
    ax2 = hb.plot_phase_diagram(d)
    assert ax2.get_ylabel() == "M"
    plt.close("all")
    with pytest.raises(ValueError, match="field"):
        hb.plot_phase_diagram(t_alpha_ags, "nope")
    with pytest.raises(ValueError, match="increasing"):
        hb.phase_diagram_t_rho([0.5, 0.2], [0.1], 2)
    with pytest.raises(ValueError, match="temperatures"):
        hb.phase_diagram_t_rho([0.0, 0.2], [0.1], 2)
    with pytest.raises(ValueError, match="rhos"):
        hb.phase_diagram_t_rho([0.1], [-0.1], 2)
    with pytest.raises(ValueError, match="order P"):
        hb.phase_diagram_t_alpha([0.1], [0.1], AGS_LAW, order=3)
    with pytest.raises(ValueError, match="qualities"):
        hb.phase_diagram_m_r([2], [1.5], 2)
    with pytest.raises(ValueError, match="num_examples"):
        hb.phase_diagram_m_r([0], [0.5], 2)
    with pytest.raises(ValueError, match="rule"):
        hb.phase_diagram_m_r([2], [0.5], 2, rule="hebb")
    with pytest.raises(ValueError, match="needs temperature"):
        hb.phase_diagram_m_r([2], [0.5], 4, alpha=0.1)
    with pytest.raises(ValueError, match="mask"):
        hb.phase_boundary([1.0, 2.0], np.ones((3, 2), bool), axis=0)
