r"""Phase diagrams of dense Hebbian networks: RS sweeps over (T, alpha), (T, rho) and (M, r).

Every sweep returns arrays (a :class:`typing.NamedTuple` of grids) computed in one jitted
program: the second grid axis is ``vmap``-ped, the temperature axis is a ``lax.scan`` with
**continuation** (each temperature is warm-started from the solution at the previous, lower
one, so the retrieval branch is followed up to its spinodal), and the retrieval branch is
compared by free energy with the non-retrieval branches (paramagnet, RS spin glass).

Phase codes (``phase`` arrays): ``0`` paramagnet, ``1`` spin glass, ``2`` metastable
retrieval (retrieval solution exists, higher free energy), ``3`` retrieval (global minimum).

Free energies per spin (derived from the model of :mod:`bayesnn.hebbian.model`; gauge
:math:`\xi^1 = +1`, :math:`p = X/\sqrt R`, :math:`z \sim N(0,1)`; the bodies of Agliari et
al. arXiv 2212.00606 / 2211.14067 could not be read):

- low storage (:func:`~bayesnn.hebbian.theory.low_storage_free_energy`):
  :math:`f = \frac{P-1}{2}n^P - T\,E\log 2\cosh(\beta\frac P2 n^{P-1}p)`;
- P = 2, :math:`K = \alpha N` (Amit-Gutfreund-Sompolinsky form with the example law in the
  signal; constant :math:`\alpha/2` dropped), with :math:`C = \beta(1-q)`,
  :math:`\hat r = q/(1-C)^2`, :math:`h = np + z\sqrt{\alpha\hat r}`:

  .. math::
      f = \frac{n^2}{2} + \frac{\alpha}{2\beta}\Bigl[\log(1 - C) - \frac{\beta q}{1 - C}\Bigr]
          + \frac{\alpha\beta}{2}\hat r(1-q) - T\,E\log 2\cosh\beta h ;

- P > 2, :math:`K = \alpha N^{P-1}`, noise constant :math:`\gamma = (P/2)^2 c_P`
  (:func:`~bayesnn.hebbian.theory.noise_constant`), :math:`h = \frac P2 n^{P-1}p +
  z\sqrt{\alpha\gamma q^{P-1}}` (p-spin-like Gaussian cross-talk):

  .. math::
      f = \frac{P-1}{2}n^P - \frac{\beta\alpha\gamma}{2P}\bigl(1 - Pq^{P-1} + (P-1)q^P\bigr)
          - T\,E\log 2\cosh\beta h .

Both high-storage free energies are stationary exactly at the fixed points of
:func:`~bayesnn.hebbian.theory.high_storage_rs` (checked by automatic differentiation in the
tests).

References
----------
D. J. Amit, H. Gutfreund, H. Sompolinsky, "Statistical mechanics of neural networks near
saturation", Ann. Phys. 173, 30 (1987). E. Agliari et al., arXiv 2212.00606, 2211.14067.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf, gammaln

from . import _rs
from ._quadrature import check_nodes_per_panel
from .data import check_num_examples
from .model import check_order
from .theory import gaussian_law, noise_constant

__all__ = [
    "PHASES",
    "TAlphaDiagram",
    "TRhoDiagram",
    "MRDiagram",
    "high_storage_free_energy",
    "phase_diagram_t_alpha",
    "phase_diagram_t_rho",
    "phase_diagram_m_r",
    "phase_boundary",
    "plot_phase_diagram",
]

PHASES = ("paramagnet", "spin glass", "metastable retrieval", "retrieval")


class TAlphaDiagram(NamedTuple):
    """High-storage (T, alpha) phase diagram of the supervised rule; arrays ``(T, A)``.

    Attributes
    ----------
    temperatures : Array, shape (T,)
        Increasing temperatures (> 0).
    alphas : Array, shape (A,)
        Loads (``K/N`` for P = 2, ``K/N^(P-1)`` for P > 2).
    n, m, q : Array, shape (T, A)
        Retrieval branch followed by continuation in T (0 where it does not exist).
    q_sg : Array, shape (T, A)
        Overlap of the RS spin-glass branch (``n = 0``; 0 in the paramagnet).
    f_retrieval, f_other : Array, shape (T, A)
        Free energy of the retrieval branch (``inf`` where absent) and of the best
        non-retrieval branch (spin glass or paramagnet).
    exists : Array of bool, shape (T, A)
        Retrieval solution exists (``n > tol`` and converged).
    phase : Array of int, shape (T, A)
        Codes of :data:`PHASES`.
    order : int
        ``P``.
    """

    temperatures: jax.Array
    alphas: jax.Array
    n: jax.Array
    m: jax.Array
    q: jax.Array
    q_sg: jax.Array
    f_retrieval: jax.Array
    f_other: jax.Array
    exists: jax.Array
    phase: jax.Array
    order: int


class TRhoDiagram(NamedTuple):
    """Low-storage (T, rho) phase diagram (large-M Gaussian law); arrays ``(T, R)``.

    Attributes
    ----------
    temperatures : Array, shape (T,)
        Increasing temperatures (> 0).
    rhos : Array, shape (R,)
        Dataset entropies :math:`\\rho = (1 - r^2)/(M r^2)`.
    n, m, q : Array, shape (T, R)
        Retrieval branch by continuation in T (0 where it does not exist).
    f_retrieval, f_paramagnet : Array, shape (T, R)
        Free energies (retrieval ``inf`` where absent; paramagnet :math:`-T\\log 2`).
    exists : Array of bool, shape (T, R)
        Retrieval solution exists.
    phase : Array of int, shape (T, R)
        Codes of :data:`PHASES` (0, 2 or 3).
    order : int
        ``P``.
    """

    temperatures: jax.Array
    rhos: jax.Array
    n: jax.Array
    m: jax.Array
    q: jax.Array
    f_retrieval: jax.Array
    f_paramagnet: jax.Array
    exists: jax.Array
    phase: jax.Array
    order: int


class MRDiagram(NamedTuple):
    """Dataset (M, r) diagram at fixed temperature and load; arrays ``(L, J)``.

    Attributes
    ----------
    num_examples : numpy.ndarray of int, shape (L,)
        ``M`` values.
    qualities : Array, shape (J,)
        ``r`` values.
    rho : Array, shape (L, J)
        Dataset entropy.
    m_rs : Array, shape (L, J)
        RS Mattis magnetisation with the exact binomial law of the example mean.
    retrieval : Array of bool, shape (L, J)
        RS retrieval state is the stable one (low storage) / exists (high storage).
    m_snr : Array, shape (L, J)
        One-step signal-to-noise estimate at T = 0
        (:func:`~bayesnn.hebbian.theory.snr_magnetization_supervised` / ``_unsupervised``).
    archetype_stable : Array of bool, shape (L, J)
        Unsupervised rule: the T = 0 archetype fixed point beats a single example,
        :math:`(E|X|)^P > (1 + (M-1)r^{2P})/M` (all ``True`` for the supervised rule).
    memorization_threshold : Array, shape (J,)
        :math:`M^* = 1 + r^{-P}` (simple energy comparison, for plots).
    rule : str
        ``"supervised"`` or ``"unsupervised"``.
    order : int
        ``P``.
    """

    num_examples: np.ndarray
    qualities: jax.Array
    rho: jax.Array
    m_rs: jax.Array
    retrieval: jax.Array
    m_snr: jax.Array
    archetype_stable: jax.Array
    memorization_threshold: jax.Array
    rule: str
    order: int


def _grid(values, name, positive=True):
    v = jnp.asarray(values, jnp.float32)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d array, got shape {v.shape}")
    if not bool(jnp.all(jnp.isfinite(v))):
        raise ValueError(f"{name} contain NaN or inf")
    if positive and not bool(jnp.all(v > 0)):
        raise ValueError(f"{name} must be > 0")
    if not positive and not bool(jnp.all(v >= 0)):
        raise ValueError(f"{name} must be >= 0")
    return v


def _temperatures(temperatures):
    t = _grid(temperatures, "temperatures")
    if t.size > 1 and not bool(jnp.all(jnp.diff(t) > 0)):
        raise ValueError("temperatures must be strictly increasing (continuation in T)")
    return t


@partial(jax.jit, static_argnames=("order", "convention", "nodes_per_panel"))
def high_storage_free_energy(
    n, q, beta, alpha, order: int, law, convention="distinct", nodes_per_panel: int = 6
):
    r"""RS free energy per spin of the supervised rule at high storage (module docstring).

    P = 2 uses the Amit-Gutfreund-Sompolinsky form (``K = alpha N``, constant ``alpha/2``
    dropped); P > 2 the p-spin-like form with :math:`\gamma = (P/2)^2 c_P`
    (``K = alpha N^(P-1)``). ``n = 0`` gives the spin-glass branch, ``n = q = 0`` the
    paramagnet (for P = 2 only defined for ``T > 1``; ``inf`` is returned where
    :math:`1 - \beta(1-q) \le 0`). The Gaussian ``z`` expectation uses the same
    kink-resolving quadrature as :func:`~bayesnn.hebbian.theory.high_storage_rs`.

    Parameters
    ----------
    n, q : Array
        Order parameters.
    beta, alpha : float or Array
        Inverse temperature (finite) and load.
    order : int
        Even ``P``.
    law : tuple
        ``(values, weights)`` of ``p`` (:func:`~bayesnn.hebbian.theory.exact_law` or
        :func:`~bayesnn.hebbian.theory.gaussian_law`).
    convention : {"distinct", "all"}
        Index convention for P > 2.
    nodes_per_panel : int
        Gauss-Legendre order per panel of the ``z`` quadrature.

    Returns
    -------
    Array
    """
    p_order = check_order(order)
    npp = check_nodes_per_panel(nodes_per_panel)
    beta = jnp.asarray(beta, jnp.float32)
    alpha = jnp.asarray(alpha, jnp.float32)
    gamma = 0.25 * p_order**2 * noise_constant(p_order, convention)
    a, b = _rs.field_coefficients(n, 1.0 - q, beta, alpha, p_order, gamma)
    e_l2c = _rs.moments(a, b, beta, law, npp).log2cosh
    if p_order == 2:
        c = beta * (1.0 - q)
        ok = c < 1.0
        one_c = jnp.where(ok, 1.0 - c, 1.0)
        r_hat = q / one_c**2
        f = (
            0.5 * n**2
            + alpha / (2.0 * beta) * (jnp.log(one_c) - beta * q / one_c)
            + 0.5 * alpha * beta * r_hat * (1.0 - q)
            - e_l2c
        )
        return jnp.where(ok, f, jnp.inf)
    return (
        0.5 * (p_order - 1) * n**p_order
        - beta
        * alpha
        * gamma
        / (2.0 * p_order)
        * (1.0 - p_order * q ** (p_order - 1) + (p_order - 1) * q**p_order)
        - e_l2c
    )


@partial(jax.jit, static_argnames=("order", "convention", "num_iter", "nodes_per_panel"))
def _t_alpha(temps, alphas, order, law, convention, num_iter, nodes_per_panel, damping, tol):
    vals, w = law
    gamma = 0.25 * order**2 * noise_constant(order, convention)
    fe = partial(
        high_storage_free_energy,
        order=order,
        law=law,
        convention=convention,
        nodes_per_panel=nodes_per_panel,
    )

    def sg_u(beta, alpha, q):
        """1 - E tanh^2 on the n = 0 branch."""
        a, b = _rs.field_coefficients(0.0, 1.0 - q, beta, alpha, order, gamma)
        return _rs.moments(a, b, beta, law, nodes_per_panel).u

    def spin_glass_q(beta, alpha, q_prev):
        """n = 0 branch. P = 2: bisection of G(q) = q - E tanh^2 on (max(0, 1 - T), 1] (the
        fixed-point map is unstable at low T); P > 2: the map is increasing in q, so iterate
        down from the previous (larger) solution to the largest fixed point."""
        if order == 2:

            def gfun(q):
                return q - (1.0 - sg_u(beta, alpha, q))

            lo0 = jnp.maximum(0.0, 1.0 - 1.0 / beta) + 1e-4

            def body(_, lohi):
                lo, hi = lohi
                mid = 0.5 * (lo + hi)
                neg = gfun(mid) < 0
                return jnp.where(neg, mid, lo), jnp.where(neg, hi, mid)

            lo, hi = jax.lax.fori_loop(0, 40, body, (lo0, jnp.float32(1.0)))
            return jnp.where(gfun(lo0) < 0, 0.5 * (lo + hi), 0.0)
        return jax.lax.fori_loop(0, num_iter, lambda _, q: 1.0 - sg_u(beta, alpha, q), q_prev)

    def per_alpha(alpha):
        def step(carry, t):
            n0, u0, qs0 = carry
            beta = 1.0 / t
            n, m, q, resid = _rs.iterate(
                n0, u0, beta, alpha, order, gamma, law, num_iter, damping, nodes_per_panel
            )
            exists = (n > tol) & (resid < 10 * tol)
            qs = spin_glass_q(beta, alpha, qs0)
            qs = jnp.where(qs > tol, qs, 0.0)
            f_ret = jnp.where(exists, fe(n, q, beta, alpha), jnp.inf)
            f_sg = jnp.where(qs > 0, fe(0.0, qs, beta, alpha), jnp.inf)
            f_para = fe(0.0, 0.0, beta, alpha)
            # Replica free energies are not minimised over q: the spin glass is the
            # non-retrieval state wherever its q > 0 exists (continuous at P = 2), and the
            # retrieval state is compared with it (AGS's T_c line).
            sg = qs > 0
            f_other = jnp.where(sg, f_sg, f_para)
            phase = jnp.where(
                exists, jnp.where(f_ret < f_other, 3, 2), jnp.where(sg, 1, 0)
            ).astype(jnp.int32)
            zero = jnp.zeros_like(n)
            out = (
                jnp.where(exists, n, zero),
                jnp.where(exists, m, zero),
                jnp.where(exists, q, zero),
                qs,
                f_ret,
                f_other,
                exists,
                phase,
            )
            # Warm start: retrieval from its last solution while it exists; the spin-glass
            # branch from its last q (restarted at 1 once it collapses would re-find it).
            n_next = jnp.where(exists, n, n0)
            u_next = jnp.where(exists, 1.0 - q, u0)
            return (n_next, u_next, jnp.where(qs > 0, qs, qs0)), out

        n_init = jnp.sum(w * jnp.abs(vals))
        carry = (n_init, jnp.float32(0.0), jnp.float32(1.0))
        _, out = jax.lax.scan(step, carry, temps)
        return out

    return jax.vmap(per_alpha, out_axes=1)(alphas)


def phase_diagram_t_alpha(
    temperatures,
    alphas,
    law,
    order: int = 2,
    convention: str = "distinct",
    num_iter: int = 400,
    nodes_per_panel: int = 6,
    damping: float = 0.3,
    tol: float = 5e-2,
) -> TAlphaDiagram:
    r"""(T, alpha) phase diagram of the supervised rule at high storage.

    For each load (vmapped) the temperatures are swept upwards; the retrieval branch of
    :func:`~bayesnn.hebbian.theory.high_storage_rs` starts at ``n = E|p|, q = 1`` and each
    temperature is warm-started from the previous solution while it exists (so the
    retrieval region ends at its spinodal :math:`T_M(\alpha)`); the spin-glass branch
    (``n = 0``) is followed the same way. Phases by free energy
    (:func:`high_storage_free_energy`). At P = 2 the boundary reaches :math:`T = 1` at
    :math:`\alpha = 0` and :math:`\alpha_c` of :func:`~bayesnn.hebbian.theory.p2_critical_load`
    as :math:`T \to 0`; the spin glass appears below :math:`T_g = 1 + \sqrt\alpha`.

    Parameters
    ----------
    temperatures : array_like, shape (T,)
        Strictly increasing, > 0 (use :func:`~bayesnn.hebbian.theory.p2_zero_temperature` at
        T = 0).
    alphas : array_like, shape (A,)
        Loads >= 0.
    law : tuple
        ``(values, weights)`` of ``p``.
    order : int
        Even ``P`` (P > 2: :math:`K = \alpha N^{P-1}`, derived, not checked by simulation).
    convention : {"distinct", "all"}
        Index convention for P > 2.
    num_iter : int
        Damped fixed-point iterations per temperature (warm-started).
    nodes_per_panel : int
        Gauss-Legendre order per panel of the kink-resolving ``z`` quadrature.
    damping : float
        Weight of the old iterate, in [0, 1).
    tol : float
        Overlap ``n`` below which the retrieval branch counts as absent (at low T and finite
        M small spurious overlaps ~0.03 survive above alpha_c; the physical branch ends at
        n ~ 0.9 there), and ``q`` below which the spin glass does; also the convergence
        tolerance.

    Returns
    -------
    TAlphaDiagram
    """
    p_order = check_order(order)
    t = _temperatures(temperatures)
    a = _grid(alphas, "alphas", positive=False)
    if not 0.0 <= float(damping) < 1.0:
        raise ValueError(f"damping must be in [0, 1), got {damping}")
    noise_constant(p_order, convention)
    npp = check_nodes_per_panel(nodes_per_panel)
    out = _t_alpha(t, a, p_order, law, convention, int(num_iter), npp, float(damping), float(tol))
    return TAlphaDiagram(t, a, *out, p_order)


@partial(jax.jit, static_argnames=("order", "num_iter", "nodes_per_panel"))
def _t_rho(temps, rhos, order, num_iter, nodes_per_panel, tol):
    def per_rho(rho):
        law = gaussian_law(rho, nodes_per_panel)
        vals, w = law

        def step(n0, temp):
            beta = 1.0 / temp
            n = jax.lax.fori_loop(
                0, num_iter, lambda _, n: _rs.low_storage_map(n, beta, order, law)[0], n0
            )
            n1, m, q = _rs.low_storage_map(n, beta, order, law)
            exists = (n > tol) & (jnp.abs(n1 - n) < tol)
            f_ret = jnp.where(exists, _rs.low_storage_f(n, beta, order, law), jnp.inf)
            f_para = -temp * jnp.log(2.0)
            phase = jnp.where(exists, jnp.where(f_ret < f_para, 3, 2), 0).astype(jnp.int32)
            z = jnp.zeros_like(n)
            out = (
                jnp.where(exists, n, z),
                jnp.where(exists, m, z),
                jnp.where(exists, q, z),
                f_ret,
                f_para,
                exists,
                phase,
            )
            # Continuation: the largest fixed point decreases with T, so the previous one is
            # an upper start and the monotone iteration cannot skip the retrieval branch.
            return n, out

        _, out = jax.lax.scan(step, jnp.sum(w * jnp.abs(vals)), temps)
        return out

    return jax.vmap(per_rho, out_axes=1)(rhos)


def phase_diagram_t_rho(
    temperatures,
    rhos,
    order: int,
    num_iter: int = 300,
    nodes_per_panel: int = 6,
    tol: float = 1e-3,
) -> TRhoDiagram:
    r"""(T, rho) low-storage phase diagram with the large-M Gaussian law of the example mean.

    For each :math:`\rho` (vmapped) temperatures are swept upwards with continuation: the map
    :math:`n \mapsto E[p\tanh(\beta\frac P2 n^{P-1}p)]` is non-decreasing in ``n`` and its
    largest fixed point decreases with T, so iterating from the previous solution converges
    monotonically to the retrieval branch. Retrieval vs paramagnet by free energy (first-order
    transition for P >= 4 with a metastable band up to the spinodal; continuous at
    :math:`T_c = 1` for P = 2 and every :math:`\rho`). At :math:`T \to 0`,
    :math:`m \to \mathrm{erf}(1/\sqrt{2\rho})`.

    Parameters
    ----------
    temperatures : array_like, shape (T,)
        Strictly increasing, > 0.
    rhos : array_like, shape (R,)
        Dataset entropies >= 0.
    order : int
        Even ``P``.
    num_iter : int
        Iterations per temperature (warm-started).
    nodes_per_panel : int
        Gauss-Legendre order per panel of the Gaussian law
        (:func:`~bayesnn.hebbian.theory.gaussian_law`).
    tol : float
        Overlap below which the retrieval branch counts as absent.

    Returns
    -------
    TRhoDiagram
    """
    p_order = check_order(order)
    t = _temperatures(temperatures)
    r = _grid(rhos, "rhos", positive=False)
    npp = check_nodes_per_panel(nodes_per_panel)
    out = _t_rho(t, r, p_order, int(num_iter), npp, float(tol))
    return TRhoDiagram(t, r, *out, p_order)


def _snr_unsupervised(alpha, r, m, order, c):
    rho = (1 - r**2) / (m * r**2)
    var = rho + alpha * c * ((m - 1) / m + 1.0 / (m * r ** (2 * order)))
    return erf(1.0 / jnp.sqrt(2.0 * var))


def phase_diagram_m_r(
    num_examples,
    qualities,
    order: int,
    temperature: float = 0.0,
    rule: str = "supervised",
    alpha: float = 0.0,
    convention: str = "distinct",
) -> MRDiagram:
    r"""Dataset diagram over the number of examples ``M`` and their quality ``r``.

    For each ``(M, r)`` with the **exact** binomial law of the example mean:

    - ``m_rs``: RS magnetisation. ``alpha = 0``: low storage
      (:func:`~bayesnn.hebbian.theory.solve_low_storage`, free-energy selection);
      ``alpha > 0``: high storage of the supervised rule
      (:func:`~bayesnn.hebbian.theory.p2_zero_temperature` at P = 2, T = 0, else
      :func:`~bayesnn.hebbian.theory.high_storage_rs`), with :math:`\alpha \to \kappa\alpha`
      for the unsupervised rule (:func:`~bayesnn.hebbian.theory.unsupervised_variance_inflation`);
    - ``m_snr``: the one-step signal-to-noise estimate (T = 0);
    - ``archetype_stable`` (unsupervised): the refined memorisation criterion
      :math:`(E|X|)^P > (1 + (M-1)r^{2P})/M`; below it the network memorises single examples.

    Parameters
    ----------
    num_examples : sequence of int, shape (L,)
        ``M`` values (each >= 1; laws are padded to ``max(M) + 1`` atoms, one compile).
    qualities : array_like, shape (J,)
        ``r`` values in (0, 1] (vmapped).
    order : int
        Even ``P``.
    temperature : float
        ``T >= 0``.
    rule : {"supervised", "unsupervised"}
        Hebbian rule.
    alpha : float
        Load (0: low storage).
    convention : {"distinct", "all"}
        Index convention (P > 2 noise constant).

    Returns
    -------
    MRDiagram
    """
    from . import theory

    p_order = check_order(order)
    ms = [check_num_examples(m) for m in np.atleast_1d(num_examples)]
    r = _grid(qualities, "qualities")
    if not bool(jnp.all(r <= 1.0)):
        raise ValueError("qualities r must be in (0, 1]")
    if rule not in ("supervised", "unsupervised"):
        raise ValueError(f"rule must be 'supervised' or 'unsupervised', got {rule!r}")
    temp = float(temperature)
    if not np.isfinite(temp) or temp < 0:
        raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be finite and >= 0, got {alpha}")
    if alpha > 0 and temp == 0 and p_order > 2:
        raise ValueError("alpha > 0 with P > 2 needs temperature > 0 (finite-T RS solver)")
    beta = jnp.inf if temp == 0 else 1.0 / temp
    c = noise_constant(p_order, convention)
    m_max = max(ms)

    def one(mf, rq):
        law = _padded_exact_law(rq, mf, m_max)
        big_r = rq**2 + (1 - rq**2) / mf
        kappa = (1 + (mf - 1) * rq ** (2 * p_order)) / (mf * big_r**p_order)
        a_eff = alpha * kappa if rule == "unsupervised" else jnp.float32(alpha)
        if alpha == 0:
            sol = theory.solve_low_storage(beta, p_order, law)
            m_rs, ret = sol.m, sol.retrieval
        elif temp == 0:
            m_rs, _ = theory.p2_zero_temperature(a_eff, law)
            ret = m_rs > 0
        else:
            sol = theory.high_storage_rs(beta, a_eff, p_order, law, convention)
            m_rs, ret = sol.m, sol.retrieval
        rho = (1 - rq**2) / (mf * rq**2)
        if rule == "supervised":
            snr = erf(1.0 / jnp.sqrt(2.0 * (rho + alpha * c * (1.0 + rho) ** p_order)))
            stable = jnp.bool_(True)
        else:
            snr = _snr_unsupervised(alpha, rq, mf, p_order, c)
            vals, w = law
            e_abs = jnp.sqrt(big_r) * jnp.sum(w * jnp.abs(vals))  # E|X|, X = p sqrt(R)
            stable = e_abs**p_order > (1 + (mf - 1) * rq ** (2 * p_order)) / mf
        return rho, m_rs, ret, snr, stable

    grid = jax.jit(jax.vmap(jax.vmap(one, (None, 0)), (0, None)))
    rho, m_rs, ret, snr, stable = grid(jnp.asarray(ms, jnp.float32), r)
    return MRDiagram(
        np.asarray(ms), r, rho, m_rs, ret, snr, stable, 1.0 + r ** (-p_order), rule, p_order
    )


def _padded_exact_law(quality, num_examples, max_examples: int):
    """Exact law of p = X/sqrt(R) for a traced M <= max_examples, padded with zero-weight
    atoms to max_examples + 1 entries (one compile for a whole M grid)."""
    m = num_examples
    k = jnp.arange(max_examples + 1, dtype=jnp.float32)
    valid = k <= m
    kk = jnp.minimum(k, m)
    pr = (1.0 + quality) / 2.0
    logc = gammaln(m + 1.0) - gammaln(kk + 1.0) - gammaln(m - kk + 1.0)
    logpmf = logc + kk * jnp.log(pr) + (m - kk) * jnp.log(jnp.maximum(1.0 - pr, 1e-30))
    logpmf = jnp.where((pr >= 1.0) & (kk < m), -jnp.inf, logpmf)
    w = jax.nn.softmax(jnp.where(valid, logpmf, -jnp.inf))
    big_r = quality**2 + (1.0 - quality**2) / m
    return jnp.where(valid, (2.0 * kk - m) / m, 0.0) / jnp.sqrt(big_r), w


def phase_boundary(axis_values, mask, axis: int = 0):
    """Where ``mask`` switches from ``True`` to ``False`` along ``axis`` (grid resolution).

    For each line of ``mask`` along ``axis``, the midpoint between the last ``True`` of the
    leading run of ``True`` values and the next grid value (``nan`` if the line starts
    ``False``; the last value if it never becomes ``False``). With ``mask = exists`` and
    ``axis=0`` of a (T, alpha) diagram this is the spinodal :math:`T_M(\\alpha)`; with
    ``axis=1`` it is :math:`\\alpha_M(T)`.

    Parameters
    ----------
    axis_values : array_like, shape (L,)
        Grid values along ``axis``.
    mask : array_like of bool
        Phase indicator with ``mask.shape[axis] == L``.
    axis : int
        Axis to scan.

    Returns
    -------
    numpy.ndarray
        ``mask`` with ``axis`` removed.
    """
    x = np.asarray(axis_values, np.float64)
    mk = np.moveaxis(np.asarray(mask, bool), axis, -1)
    if mk.shape[-1] != x.size:
        raise ValueError(f"mask has {mk.shape[-1]} values along axis {axis}, axis_values {x.size}")
    run = np.cumprod(mk, axis=-1).sum(-1)  # length of the leading True run
    nxt = np.minimum(run, x.size - 1)
    out = 0.5 * (x[np.maximum(run - 1, 0)] + x[nxt])
    out = np.where(run == x.size, x[-1], out)
    return np.where(run == 0, np.nan, out)


def plot_phase_diagram(diagram, field: str = "m", ax=None, boundaries: bool = True):
    """Plot a phase diagram: ``field`` as a colour map plus phase boundaries.

    (T, alpha) and (T, rho): x = alpha or rho, y = T; contours at the retrieval spinodal
    (``exists``), the thermodynamic transition (``phase == 3``) and, for (T, alpha), the
    spin-glass line. (M, r): x = r, y = M; contours of ``retrieval`` and, for the
    unsupervised rule, of ``archetype_stable`` with the curve :math:`M = 1 + r^{-P}`.

    Parameters
    ----------
    diagram : TAlphaDiagram, TRhoDiagram or MRDiagram
        Output of a sweep.
    field : str
        Attribute to colour (e.g. ``"m"``, ``"n"``, ``"q"``, ``"phase"``; ``"m_rs"``,
        ``"m_snr"`` for (M, r); ``"m"`` maps to ``"m_rs"`` there).
    ax : matplotlib Axes, optional
        Target axes (a new figure otherwise).
    boundaries : bool
        Draw the boundary contours.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5))
    if isinstance(diagram, MRDiagram):
        x, y, xlab, ylab = diagram.qualities, diagram.num_examples, "r", "M"
        field = "m_rs" if field == "m" else field
    elif isinstance(diagram, TAlphaDiagram):
        x, y, xlab, ylab = diagram.alphas, diagram.temperatures, r"$\alpha$", "T"
    elif isinstance(diagram, TRhoDiagram):
        x, y, xlab, ylab = diagram.rhos, diagram.temperatures, r"$\rho$", "T"
    else:
        raise ValueError(
            f"diagram must be a TAlphaDiagram, TRhoDiagram or MRDiagram, got "
            f"{type(diagram).__name__}"
        )
    if not hasattr(diagram, field) or np.ndim(getattr(diagram, field)) != 2:
        raise ValueError(f"field {field!r} is not a 2-d array of {type(diagram).__name__}")
    x, y = np.asarray(x), np.asarray(y)
    z = np.asarray(getattr(diagram, field), np.float64)
    mesh = ax.pcolormesh(x, y, z, shading="nearest", cmap="viridis")
    ax.figure.colorbar(mesh, ax=ax, label=field)
    if boundaries and x.size > 1 and y.size > 1:
        if isinstance(diagram, MRDiagram):
            ax.contour(x, y, np.asarray(diagram.retrieval, float), [0.5], colors="w")
            if diagram.rule == "unsupervised":
                ax.contour(
                    x,
                    y,
                    np.asarray(diagram.archetype_stable, float),
                    [0.5],
                    colors="r",
                    linestyles="--",
                )
                ax.plot(x, np.asarray(diagram.memorization_threshold), "r:", lw=1)
                ax.set_ylim(y.min(), y.max())
        else:
            ph = np.asarray(diagram.phase)
            ax.contour(x, y, (ph >= 2).astype(float), [0.5], colors="w")
            ax.contour(x, y, (ph == 3).astype(float), [0.5], colors="w", linestyles="--")
            if isinstance(diagram, TAlphaDiagram):
                ax.contour(x, y, (ph >= 1).astype(float), [0.5], colors="r", linestyles=":")
    ax.set_xlabel(xlab)
    ax.set_ylabel(ylab)
    ax.set_title(f"P = {diagram.order}")
    return ax
