r"""Replica-symmetric (RS) theory, signal-to-noise estimates and thresholds for dense Hebbian
networks, vectorisable over parameter grids in JAX.

Notation (see :mod:`bayesnn.hebbian.model`): gauge :math:`\xi^1 = +1`, example mean
:math:`X`, :math:`p = X/\sqrt R` (so :math:`E p^2 = 1`), dataset entropy :math:`\rho`. A *law*
is a pair ``(values, weights)`` of a discrete distribution of :math:`p`: the exact binomial law
(:func:`exact_law`) or the large-M Gaussian law (:func:`gaussian_law`).

Low storage (K fixed, N -> inf; RS exact), supervised rule, and the archetype state of the
unsupervised rule:

.. math::
    n = E\,[p \tanh(\beta \tfrac P2 n^{P-1} p)],\quad m = E \tanh(\cdot),\quad
    q = E \tanh^2(\cdot),\qquad
    f(n) = \tfrac{P-1}{2} n^P - \beta^{-1} E \log 2\cosh(\beta \tfrac P2 n^{P-1} p).

At :math:`T = 0`, :math:`m = E\,\mathrm{sign}\,X` for every P; at P = 2, :math:`T_c = E p^2 = 1`.

These formulas were derived from the model definition (the bodies of Agliari et al.,
arXiv 2212.00606 / 2211.14067 / 2308.04106 could not be read); the low-storage, T = 0, P = 2
and multitasking results are checked against Monte Carlo in the tests.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf

from . import _rs
from ._quadrature import check_nodes_per_panel, normal_nodes
from .data import check_dilution, check_num_examples, check_quality, example_mean_law
from .model import check_order

__all__ = [
    "LowStorageSolution",
    "exact_law",
    "pad_law",
    "check_law",
    "gaussian_law",
    "low_storage_fixed_point",
    "low_storage_free_energy",
    "solve_low_storage",
    "zero_temperature_magnetization",
    "transition_temperatures",
    "HighStorageSolution",
    "high_storage_rs",
    "p2_zero_temperature",
    "CriticalLoad",
    "p2_critical_load",
    "noise_constant",
    "dense_critical_load",
    "snr_magnetization_supervised",
    "snr_magnetization_unsupervised",
    "unsupervised_energies",
    "memorization_threshold",
    "refined_memorization_threshold",
    "unsupervised_variance_inflation",
    "cascade_amplitudes",
    "cascade_stability_margin",
    "cascade_threshold",
]


def exact_law(quality, num_examples: int):
    r"""Exact law of :math:`p = X/\sqrt R` with :math:`X = (2B - M)/M`,
    :math:`B \sim \mathrm{Bin}(M, (1+r)/2)`, :math:`R = r^2 + (1 - r^2)/M`.

    Parameters
    ----------
    quality : float
        ``r`` in (0, 1].
    num_examples : int
        ``M`` (static: the law has ``M + 1`` atoms).

    Returns
    -------
    values, weights : Array, shape (M + 1,)

    Notes
    -----
    The solvers are compiled for the law's number of atoms, so every new ``M`` compiles
    them again. To sweep ``M`` (or mix exact and Gaussian laws) with one compile, pad the
    laws to a common size with :func:`pad_law` (zero-weight atoms change no expectation),
    as :func:`~bayesnn.hebbian.phase.phase_diagram_m_r` does internally.
    """
    x, w = example_mean_law(quality, num_examples)
    r = jnp.asarray(quality, jnp.float32)
    return x / jnp.sqrt(r**2 + (1 - r**2) / num_examples), w


def _check_scalar(name, value, *, lo=0.0, strict=False, allow_inf=False):
    """Validate a concrete scalar parameter (tracers pass: grids are validated by callers)."""
    if isinstance(value, jax.core.Tracer):
        return
    v = np.asarray(value, np.float64)
    if v.ndim != 0:
        raise ValueError(f"{name} must be a scalar (vmap for grids), got shape {v.shape}")
    ok = (v > lo if strict else v >= lo) and (np.isfinite(v) or (allow_inf and v == np.inf))
    if not ok:
        bound = f"> {lo}" if strict else f">= {lo}"
        raise ValueError(
            f"{name} must be {bound}{' (inf allowed)' if allow_inf else ''}, got {value}"
        )


def pad_law(law, size: int):
    """Append zero-weight atoms (at ``p = 0``) so that the law has ``size`` atoms.

    Expectations are unchanged; laws of one size share compiled solvers (see
    :func:`exact_law`).

    Parameters
    ----------
    law : tuple
        ``(values, weights)``, shape ``(A,)`` each, ``A <= size``.
    size : int
        Number of atoms.

    Returns
    -------
    values, weights : Array, shape (size,)
    """
    vals, w = (jnp.asarray(a) for a in law)
    if vals.ndim != 1 or vals.shape != w.shape:
        raise ValueError(f"law must be two 1-d arrays of one length, got {vals.shape}, {w.shape}")
    if int(size) < vals.shape[0]:
        raise ValueError(f"size must be >= the law's {vals.shape[0]} atoms, got {size}")
    pad = (0, int(size) - vals.shape[0])
    return jnp.pad(vals, pad), jnp.pad(w, pad)


def gaussian_law(rho, nodes_per_panel: int = 6):
    r"""Large-M law at fixed :math:`\rho`: :math:`p = (1 + \sqrt\rho Z)/\sqrt{1+\rho}`,
    :math:`Z \sim N(0, 1)`, discretised by composite Gauss-Legendre quadrature with a
    breakpoint at :math:`p = 0` (:math:`Z = -\rho^{-1/2}`) and panels refined towards it.

    Every integrand of the theory (``sign p``, :math:`\tanh(\beta h p)` at any temperature,
    :math:`\mathrm{erf}(y p)`) is smooth on each side of ``p = 0``, so expectations converge
    fast in ``nodes_per_panel``; e.g. :math:`E\,\mathrm{sign}\,p` equals the closed form
    :math:`\mathrm{erf}(1/\sqrt{2\rho})` to float32 accuracy (Gauss-Hermite nodes cannot
    resolve the sign and are off by about 0.02 at :math:`\rho = 0.26`).

    Parameters
    ----------
    rho : float or scalar Array
        Dataset entropy, ``>= 0`` (may be traced).
    nodes_per_panel : int
        Gauss-Legendre order per panel, in [2, 64] (static). The law has
        ``34 * nodes_per_panel`` atoms.

    Returns
    -------
    values, weights : Array, shape (34 * nodes_per_panel,)
    """
    npp = check_nodes_per_panel(nodes_per_panel)
    if not isinstance(rho, jax.core.Tracer):
        r = np.asarray(rho, np.float64)
        if r.ndim != 0 or not np.isfinite(r) or r < 0:
            raise ValueError(f"rho must be a finite scalar >= 0, got {rho}")
    rho = jnp.asarray(rho, jnp.float32)
    kink = -1.0 / jnp.sqrt(jnp.maximum(rho, 1e-30))
    z, w = normal_nodes(kink, npp)
    return (1.0 + jnp.sqrt(rho) * z) / jnp.sqrt(1.0 + rho), w


class LowStorageSolution(NamedTuple):
    """Low-storage RS solution.

    Attributes
    ----------
    n : Array
        Overlap with the normalised example mean (what the energy sees).
    m : Array
        Mattis magnetisation with the archetype.
    q : Array
        Replica overlap.
    free_energy : Array
        :math:`f` of the selected solution.
    retrieval : Array of bool
        Whether the retrieval solution is the global minimum (else the paramagnet is).
    metastable : Array of bool
        Retrieval solution exists but the paramagnet has lower free energy.
    """

    n: jax.Array
    m: jax.Array
    q: jax.Array
    free_energy: jax.Array
    retrieval: jax.Array
    metastable: jax.Array


@partial(jax.jit, static_argnames=("order", "num_iter"))
def low_storage_fixed_point(beta, order: int, law, num_iter: int = 3000):
    r"""Largest solution :math:`n \ge 0` of :math:`n = E[p\tanh(\beta\frac P2 n^{P-1}p)]`.

    Iterates :math:`n \leftarrow g(n)` from :math:`n_0 = E|p|`; ``g`` is non-decreasing in n
    and maps :math:`[0, E|p|]` into itself, so the iteration decreases monotonically to the
    largest fixed point (the retrieval branch; 0 if none). Slow only near a transition.

    Parameters
    ----------
    beta : float or scalar Array
        Inverse temperature (``inf`` allowed). ``vmap`` for grids.
    order : int
        Even ``P``.
    law : tuple
        ``(values, weights)`` of ``p``.
    num_iter : int
        Iterations.

    Returns
    -------
    n, m, q : Array
    """
    p_order = check_order(order)
    vals, w = law
    beta = jnp.asarray(beta, jnp.float32)
    n0 = jnp.sum(w * jnp.abs(vals))
    n = jax.lax.fori_loop(
        0, num_iter, lambda _, n: _rs.low_storage_map(n, beta, p_order, law)[0], n0
    )
    _, m, q = _rs.low_storage_map(n, beta, p_order, law)
    return n, m, q


@partial(jax.jit, static_argnames=("order",))
def low_storage_free_energy(n, beta, order: int, law):
    r"""RS free energy :math:`f(n) = \frac{P-1}{2}n^P - \beta^{-1}E\log 2\cosh(\beta\frac P2
    n^{P-1}p)`; the paramagnet (n = 0) has :math:`-\beta^{-1}\log 2` (0 at T = 0).

    Parameters
    ----------
    n : Array
        Overlap.
    beta : float
        Inverse temperature (``inf`` allowed).
    order : int
        Even ``P``.
    law : tuple
        ``(values, weights)``.

    Returns
    -------
    Array
    """
    p_order = check_order(order)
    return _rs.low_storage_f(n, jnp.asarray(beta, jnp.float32), p_order, law)


def _paramagnet_f(beta):
    return jnp.where(jnp.isinf(beta), 0.0, -jnp.log(2.0) / jnp.where(jnp.isinf(beta), 1.0, beta))


def check_law(law):
    """Validate a law ``(values, weights)``: two 1-d arrays of one length, finite values,
    non-negative weights summing to 1 (concrete laws; traced ones pass).

    Parameters
    ----------
    law : tuple
        ``(values, weights)``.

    Returns
    -------
    law : tuple of Array
    """
    try:
        vals, w = (jnp.asarray(a) for a in law)
    except (TypeError, ValueError) as err:
        raise ValueError(f"law must be a pair (values, weights) of arrays: {err}") from None
    if vals.ndim != 1 or vals.shape != w.shape or vals.size == 0:
        raise ValueError(f"law must be two 1-d arrays of one length, got {vals.shape}, {w.shape}")
    if not isinstance(w, jax.core.Tracer) and not isinstance(vals, jax.core.Tracer):
        vn, wn = np.asarray(vals, np.float64), np.asarray(w, np.float64)
        if not (np.all(np.isfinite(vn)) and np.all(np.isfinite(wn)) and np.all(wn >= 0)):
            raise ValueError("law has NaN/inf values or negative/NaN weights")
        if abs(wn.sum() - 1.0) > 1e-4:
            raise ValueError(f"law weights must sum to 1, got {wn.sum():.6g}")
    return vals, w


def solve_low_storage(beta, order: int, law, num_iter: int = 3000, tol: float = 1e-3):
    r"""Stable low-storage RS state: retrieval branch vs paramagnet by free energy.

    Note :math:`E\log 2\cosh(0) = \log 2`, so :func:`low_storage_free_energy` at ``n = 0`` is
    the paramagnet's :math:`-T\log 2`; the retrieval branch is chosen iff its ``n > tol`` and its
    free energy is lower (first-order transition for P >= 4, continuous at P = 2).

    Parameters
    ----------
    beta : float or scalar Array
        Inverse temperature (``inf`` allowed); ``jax.vmap`` over a grid of betas.
    order : int
        Even ``P``.
    law : tuple
        ``(values, weights)`` of ``p`` (:func:`exact_law` or :func:`gaussian_law`).
    num_iter : int
        Fixed-point iterations.
    tol : float
        Overlap below which the branch counts as paramagnetic.

    Returns
    -------
    LowStorageSolution
    """
    _check_scalar("beta", beta, strict=True, allow_inf=True)
    return _solve_low_storage(beta, check_order(order), check_law(law), int(num_iter), tol)


@partial(jax.jit, static_argnames=("order", "num_iter", "tol"))
def _solve_low_storage(beta, order, law, num_iter, tol):
    n, m, q = low_storage_fixed_point(beta, order, law, num_iter)
    f_ret = low_storage_free_energy(n, beta, order, law)
    f_para = _paramagnet_f(jnp.asarray(beta, jnp.float32))
    exists = n > tol
    ret = exists & (f_ret < f_para + 1e-7)
    z = jnp.zeros_like(n)
    return LowStorageSolution(
        jnp.where(ret, n, z),
        jnp.where(ret, m, z),
        jnp.where(ret, q, z),
        jnp.where(ret, f_ret, f_para),
        ret,
        exists & ~ret,
    )


def zero_temperature_magnetization(law):
    r""":math:`m = E\,\mathrm{sign}(p)` (= :math:`E\,\mathrm{sign}X`), the T = 0 retrieval
    magnetisation for every P. For the exact law this is
    :math:`\sum_k \mathrm{Bin}(k; M, \frac{1+r}{2})\,\mathrm{sign}(2k - M)`; for large M,
    :math:`\mathrm{erf}(1/\sqrt{2\rho})`.

    Parameters
    ----------
    law : tuple
        ``(values, weights)``.

    Returns
    -------
    Array
    """
    vals, w = law
    return jnp.sum(w * jnp.sign(vals))


@partial(jax.jit, static_argnames=("order", "t_max", "num_bisect"))
def transition_temperatures(order: int, law, t_max: float = 3.0, num_bisect: int = 30):
    r"""Retrieval transition temperatures in low storage.

    P = 2: continuous, :math:`T_c = E p^2` (= 1 exactly for the normalised law); returned for
    both. P >= 4: first order; ``t_c`` where the retrieval and paramagnetic free energies are
    equal and the spinodal ``t_s`` where the retrieval branch disappears (``t_c < t_s``), both
    by bisection in T.

    Parameters
    ----------
    order : int
        Even ``P``.
    law : tuple
        ``(values, weights)``.
    t_max : float
        Upper end of the bracket.
    num_bisect : int
        Bisection steps.

    Returns
    -------
    t_c, t_s : Array
    """
    p_order = check_order(order)
    vals, w = law
    if p_order == 2:
        tc = jnp.sum(w * vals**2)
        return tc, tc

    def bisect(pred):
        def body(_, lohi):
            lo, hi = lohi
            mid = 0.5 * (lo + hi)
            ok = pred(1.0 / mid)
            return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

        lo, hi = jax.lax.fori_loop(0, num_bisect, body, (jnp.float32(1e-3), jnp.float32(t_max)))
        return 0.5 * (lo + hi)

    t_s = bisect(lambda b: low_storage_fixed_point(b, p_order, law)[0] > 1e-2)
    t_c = bisect(lambda b: solve_low_storage(b, p_order, law, tol=1e-2).retrieval)
    return t_c, t_s


def noise_constant(order: int, convention: str = "distinct"):
    r"""One-step cross-talk constant :math:`c_P`: :math:`(P-1)!` for distinct indices,
    :math:`(2P-3)!!` for sums over all index tuples (repeated indices contribute at the same
    order when :math:`K \sim N^{P-1}`). Equal to 1 at P = 2.

    Parameters
    ----------
    order : int
        Even ``P``.
    convention : {"distinct", "all"}
        Index convention of the Hamiltonian.

    Returns
    -------
    int
    """
    p = check_order(order)
    if convention == "distinct":
        return math.factorial(p - 1)
    if convention == "all":
        return math.prod(range(1, 2 * p - 2, 2))
    raise ValueError(f"convention must be 'distinct' or 'all', got {convention!r}")


class HighStorageSolution(NamedTuple):
    """High-storage RS solution (retrieval branch).

    Attributes
    ----------
    n, m, q : Array
        Overlap with the normalised example mean, Mattis magnetisation, replica overlap
        (``n = m = 0`` where the retrieval branch does not exist).
    retrieval : Array of bool
        The retrieval branch exists: ``n > tol`` at a converged fixed point.
    """

    n: jax.Array
    m: jax.Array
    q: jax.Array
    retrieval: jax.Array


@partial(
    jax.jit, static_argnames=("order", "convention", "num_iter", "nodes_per_panel", "damping")
)
def _high_storage_rs(beta, alpha, order, law, convention, num_iter, nodes_per_panel, damping, tol):
    vals, w = law
    beta = jnp.asarray(beta, jnp.float32)
    alpha = jnp.asarray(alpha, jnp.float32)
    gamma = 0.25 * order**2 * noise_constant(order, convention)
    n0 = jnp.sum(w * jnp.abs(vals))
    n, m, q, resid = _rs.iterate(
        n0, jnp.float32(0.0), beta, alpha, order, gamma, law, num_iter, damping, nodes_per_panel
    )
    ok = (n > tol) & (resid < tol)
    zero = jnp.zeros_like(n)
    return HighStorageSolution(jnp.where(ok, n, zero), jnp.where(ok, m, zero), q, ok)


def high_storage_rs(
    beta,
    alpha,
    order: int,
    law,
    convention: str = "distinct",
    num_iter: int = 2000,
    nodes_per_panel: int = 6,
    damping: float = 0.5,
    tol: float = 1e-2,
) -> HighStorageSolution:
    r"""High-storage RS solution of the supervised rule (retrieval branch).

    P = 2, :math:`K = \alpha N` (Amit-Gutfreund-Sompolinsky form with the example law):

    .. math::
        n = E_{p,z}[p\tanh(\beta(n p + z\sqrt{\alpha q}/(1-\beta(1-q))))],\ m = E\tanh,
        \ q = E\tanh^2 .

    P > 2, :math:`K = \alpha N^{P-1}`, noise constant :math:`\gamma = (P/2)^2 c_P`
    (:func:`noise_constant`; :math:`(P!/2)(P/2)` for distinct indices):

    .. math::
        m, q = E\tanh^{1,2}\bigl(\beta[\tfrac P2 n^{P-1}p + z\sqrt{\alpha\gamma q^{P-1}}]\bigr),
        \ n = E[p\tanh(\cdot)].

    Damped iteration from the retrieval start ``n = E|p|, q = 1``; the ``z`` expectation
    resolves the kink of the tanh at every temperature, so as :math:`T \to 0` the solution
    tends to :func:`p2_zero_temperature` (P = 2) and the retrieval branch ends at
    :func:`dense_critical_load` (P > 2, Gaussian law). Finite ``beta`` only. The P > 2 form
    with ``convention="all"`` uses the one-step constant and is not checked by simulation.

    Parameters
    ----------
    beta, alpha : float or scalar Array
        Inverse temperature (finite, > 0) and load (>= 0); ``jax.vmap`` for grids.
    order : int
        Even ``P``.
    law : tuple
        ``(values, weights)`` of ``p``.
    convention : {"distinct", "all"}
        Index convention of the Hamiltonian (irrelevant at P = 2).
    num_iter : int
        Iterations.
    nodes_per_panel : int
        Gauss-Legendre order per panel of the ``z`` quadrature.
    damping : float
        Weight of the old iterate, in [0, 1).
    tol : float
        Overlap below which (or residual above which) the branch counts as absent.

    Returns
    -------
    HighStorageSolution
    """
    p_order = check_order(order)
    noise_constant(p_order, convention)
    npp = check_nodes_per_panel(nodes_per_panel)
    _check_scalar("beta", beta, strict=True)
    _check_scalar("alpha", alpha)
    law = check_law(law)
    if not 0.0 <= float(damping) < 1.0:
        raise ValueError(f"damping must be in [0, 1), got {damping}")
    return _high_storage_rs(
        beta, alpha, p_order, law, convention, int(num_iter), npp, float(damping), tol
    )


def _p2_g(y, law):
    vals, w = law
    y = jnp.asarray(y, jnp.float32)
    yv = y[:, None] * vals[None, :]
    a = jnp.sum(w[None, :] * vals[None, :] * erf(yv), -1)
    b = jnp.sum(w[None, :] * jnp.exp(-(yv**2)), -1)
    return (a - 2.0 / jnp.sqrt(jnp.pi) * y * b) / (jnp.sqrt(2.0) * y)


class CriticalLoad(NamedTuple):
    r"""T = 0 critical load and the retrieval state at it (the end of the retrieval branch).

    Attributes
    ----------
    alpha : Array
        :math:`\alpha_c`.
    m, n : Array
        Mattis magnetisation and overlap with the normalised example mean at
        :math:`\alpha_c`.
    field : Array
        The T = 0 field parameter at :math:`\alpha_c`: ``y`` of :func:`p2_zero_temperature`
        (P = 2, :math:`m = E\,\mathrm{erf}(yp)`), or ``u``, the local field's mean over its
        standard deviation (P > 2, :math:`m = \mathrm{erf}(u/\sqrt2)`).
    """

    alpha: jax.Array
    m: jax.Array
    n: jax.Array
    field: jax.Array


@partial(jax.jit, static_argnames=("y_max", "num_grid"))
def p2_critical_load(law, y_max: float = 20.0, num_grid: int = 20000) -> CriticalLoad:
    r"""T = 0 critical load of the P = 2 supervised rule (:math:`K = \alpha N`):

    .. math::
        \alpha_c = \max_y \Bigl\{\frac{E[p\,\mathrm{erf}(yp)] - \frac{2}{\sqrt\pi} y
        E[e^{-y^2p^2}]}{\sqrt2\,y}\Bigr\}^2,

    which reduces to the Amit-Gutfreund-Sompolinsky capacity (about 0.138) at
    :math:`\rho = 0` (Amit, Gutfreund, Sompolinsky, Phys. Rev. Lett. 55, 1530 (1985)). At the
    maximiser :math:`y_c`: :math:`m_c = E\,\mathrm{erf}(y_c p)`, :math:`n_c =
    E[p\,\mathrm{erf}(y_c p)]` (about 0.967 at :math:`\rho = 0`).

    Parameters
    ----------
    law : tuple
        ``(values, weights)``.
    y_max, num_grid : float, int
        Search grid for ``y``.

    Returns
    -------
    CriticalLoad
    """
    vals, w = law
    y = jnp.linspace(1e-3, y_max, num_grid)
    g = jnp.where(_p2_g(y, law) > 0, _p2_g(y, law), 0.0)
    y_c = y[jnp.argmax(g)]
    e = erf(y_c * vals)
    return CriticalLoad(jnp.max(g) ** 2, jnp.sum(w * e), jnp.sum(w * vals * e), y_c)


@partial(jax.jit, static_argnames=("y_max", "num_grid"))
def p2_zero_temperature(alpha, law, y_max: float = 20.0, num_grid: int = 20000):
    r"""T = 0 retrieval magnetisation of the P = 2 supervised rule at load :math:`\alpha`.

    ``y`` is the largest root of :math:`E[p\,\mathrm{erf}(yp)] - \frac{2}{\sqrt\pi}
    yE[e^{-y^2p^2}] = y\sqrt{2\alpha}`; then :math:`m = E\,\mathrm{erf}(yp)`. Returns 0 above
    :func:`p2_critical_load`.

    Parameters
    ----------
    alpha : float
        Load ``K/N``.
    law : tuple
        ``(values, weights)``.
    y_max, num_grid : float, int
        Search grid.

    Returns
    -------
    m, y : Array
    """
    vals, w = law
    y = jnp.linspace(1e-3, y_max, num_grid)
    ok = _p2_g(y, law) >= jnp.sqrt(jnp.asarray(alpha, jnp.float32))
    idx = jnp.max(jnp.where(ok, jnp.arange(num_grid), -1))
    y_root = jnp.where(idx >= 0, y[jnp.maximum(idx, 0)], 0.0)
    m = jnp.sum(w * erf(y_root * vals))
    return jnp.where(idx >= 0, m, 0.0), y_root


@partial(jax.jit, static_argnames=("order", "convention", "num_grid"))
def dense_critical_load(
    order: int, rho, convention: str = "distinct", num_grid: int = 20000
) -> CriticalLoad:
    r"""T = 0 critical load :math:`\alpha_c` of the supervised rule for P > 2,
    :math:`K = \alpha N^{P-1}` (large-M Gaussian law), parametric in
    :math:`u \in (0, \rho^{-1/2})`:

    .. math::
        n(u) = \frac{\mathrm{erf}(u/\sqrt2) + 2\rho u\phi(u)}{\sqrt{1+\rho}},\
        a = \frac{P}{2}\frac{n^{P-1}}{\sqrt{1+\rho}},\
        \alpha(u) = \frac{a^2(u^{-2} - \rho)}{\gamma},\ \alpha_c = \max_u \alpha(u),

    with :math:`\gamma = (P/2)^2 c_P`. At :math:`\rho = 0` and distinct indices,
    :math:`\alpha_c = \max_x P\,\mathrm{erf}(x)^{2(P-1)}/(2P!x^2)`. At the maximiser
    :math:`u_c`: :math:`m_c = \mathrm{erf}(u_c/\sqrt2)`, :math:`n_c = n(u_c)`.

    Parameters
    ----------
    order : int
        Even ``P``.
    rho : float
        Dataset entropy.
    convention : {"distinct", "all"}
        Index convention (via :func:`noise_constant`).
    num_grid : int
        Grid size over ``u``.

    Returns
    -------
    CriticalLoad
    """
    p = check_order(order)
    if p == 2:
        raise ValueError("order P must be > 2 here; use p2_critical_load for P = 2")
    gamma = 0.25 * p**2 * noise_constant(p, convention)
    rho = jnp.asarray(rho, jnp.float32)
    u_max = jnp.where(rho > 0, 1.0 / jnp.sqrt(jnp.maximum(rho, 1e-12)), 50.0)
    u = jnp.linspace(1e-3, 1.0, num_grid) * jnp.minimum(u_max, 50.0)
    phi = jnp.exp(-0.5 * u**2) / jnp.sqrt(2 * jnp.pi)
    n = (erf(u / jnp.sqrt(2.0)) + 2 * rho * u * phi) / jnp.sqrt(1 + rho)
    a = 0.5 * p * n ** (p - 1) / jnp.sqrt(1 + rho)
    alpha = a**2 * (u**-2 - rho) / gamma
    i = jnp.argmax(alpha)
    return CriticalLoad(alpha[i], erf(u[i] / jnp.sqrt(2.0)), n[i], u[i])


def snr_magnetization_supervised(alpha, rho, order: int, convention: str = "distinct"):
    r"""One-step signal-to-noise estimate at T = 0 from :math:`s = \xi^1`, supervised rule:

    .. math:: m \approx \mathrm{erf}\bigl(1/\sqrt{2[\rho + \alpha c_P (1+\rho)^P]}\bigr),
        \quad K = \alpha N^{P-1}.

    Parameters
    ----------
    alpha, rho : float or Array
        Load and dataset entropy.
    order : int
        Even ``P``.
    convention : {"distinct", "all"}
        Index convention (:func:`noise_constant`).

    Returns
    -------
    Array
    """
    c = noise_constant(order, convention)
    rho = jnp.asarray(rho, jnp.float32)
    return erf(1.0 / jnp.sqrt(2.0 * (rho + alpha * c * (1.0 + rho) ** order)))


def snr_magnetization_unsupervised(
    alpha, quality, num_examples, order: int, convention: str = "distinct"
):
    r"""One-step SNR estimate at T = 0, unsupervised rule:

    .. math:: m \approx \mathrm{erf}\Bigl(1/\sqrt{2[\rho + \alpha c_P (\tfrac{M-1}{M} +
        \tfrac{1}{M r^{2P}})]}\Bigr).

    Parameters
    ----------
    alpha : float or Array
        Load ``K / N^(P-1)``.
    quality : float
        ``r``.
    num_examples : int
        ``M``.
    order : int
        Even ``P``.
    convention : {"distinct", "all"}
        Index convention.

    Returns
    -------
    Array
    """
    r, m = check_quality(quality), check_num_examples(num_examples)
    c = noise_constant(order, convention)
    rho = (1 - r**2) / (m * r**2)
    var = rho + alpha * c * ((m - 1) / m + 1.0 / (m * r ** (2 * order)))
    return erf(1.0 / jnp.sqrt(2.0 * jnp.asarray(var, jnp.float32)))


def unsupervised_energies(quality, num_examples, order: int):
    r"""T = 0 energies per spin of the unsupervised rule: archetype state
    :math:`-\frac12(r^2/R)^{P/2}` and single-example state
    :math:`-\frac{1}{2M}R^{-P/2}(1 + (M-1)r^{2P})`.

    Parameters
    ----------
    quality : float
        ``r``.
    num_examples : int
        ``M``.
    order : int
        Even ``P``.

    Returns
    -------
    e_archetype, e_example : float
    """
    r, m, p = check_quality(quality), check_num_examples(num_examples), check_order(order)
    big_r = r**2 + (1 - r**2) / m
    return -0.5 * (r**2 / big_r) ** (p / 2), -0.5 / m * big_r ** (-p / 2) * (
        1 + (m - 1) * r ** (2 * p)
    )


def memorization_threshold(quality, order: int):
    r"""Unsupervised memorisation threshold :math:`M^* = 1 + r^{-P}`: below it the single
    examples have lower energy than the archetype (the network memorises examples), above it
    the archetype wins.

    Parameters
    ----------
    quality : float
        ``r``.
    order : int
        Even ``P``.

    Returns
    -------
    float
    """
    return 1.0 + check_quality(quality) ** (-check_order(order))


def refined_memorization_threshold(quality, order: int, max_examples: int = 100000):
    r"""Smallest M for which the true T = 0 archetype fixed point :math:`s = \xi\,\mathrm{sign}X`
    beats a single example: :math:`(E|X|)^P > (1 + (M-1)r^{2P})/M` (exact law of X).

    Equal to :func:`memorization_threshold` for P >= 4 up to rounding, markedly lower for P = 2.

    Parameters
    ----------
    quality : float
        ``r``.
    order : int
        Even ``P``.
    max_examples : int
        Search limit; returns ``max_examples + 1`` if not reached.

    Returns
    -------
    int
    """
    r, p = check_quality(quality), check_order(order)
    from scipy.stats import binom

    for m in range(1, int(max_examples) + 1):
        k = np.arange(m + 1)
        e_abs = float(np.sum(binom.pmf(k, m, (1 + r) / 2) * np.abs(2 * k - m) / m))
        if e_abs**p > (1 + (m - 1) * r ** (2 * p)) / m:
            return m
    return int(max_examples) + 1


def unsupervised_variance_inflation(quality, num_examples, order: int):
    r"""Cross-talk variance inflation of the unsupervised rule at high storage,
    :math:`\kappa = (1 + (M-1)r^{2P})/(M R^P)`; :math:`\alpha_c^{uns} = \alpha_c^{sup}/\kappa`.

    Parameters
    ----------
    quality : float
        ``r``.
    num_examples : int
        ``M``.
    order : int
        Even ``P``.

    Returns
    -------
    float
    """
    r, m, p = check_quality(quality), check_num_examples(num_examples), check_order(order)
    big_r = r**2 + (1 - r**2) / m
    return (1 + (m - 1) * r ** (2 * p)) / (m * big_r**p)


def cascade_amplitudes(dilution, num_patterns: int):
    r"""Hierarchical (cascade) T = 0 state of diluted archetypes, :math:`s_i = \xi^{k^*}_i` with
    :math:`k^*` the first non-blank pattern at site ``i``: :math:`m_k = (1-d)d^{k-1}`
    (Agliari, Alessandrelli, Barra, Ricci-Tersenghi, arXiv 2308.04106).

    Parameters
    ----------
    dilution : float
        ``d`` in [0, 1).
    num_patterns : int
        ``K``.

    Returns
    -------
    Array, shape (K,)
    """
    d = check_dilution(dilution)
    return jnp.asarray((1 - d) * d ** np.arange(int(num_patterns)), jnp.float32)


def cascade_stability_margin(dilution, num_patterns: int, order: int = 2):
    r"""Stability margin :math:`1 - 2x + x^K` with :math:`x = d^{P-1}` of the cascade state:
    the worst site needs :math:`n_1^{P-1} > \sum_{k>1} n_k^{P-1}`. Positive means stable.

    Parameters
    ----------
    dilution : float or Array
        ``d``.
    num_patterns : int
        ``K``.
    order : int
        Even ``P``.

    Returns
    -------
    Array
    """
    x = jnp.asarray(dilution, jnp.float32) ** (check_order(order) - 1)
    return 1 - 2 * x + x ** int(num_patterns)


def cascade_threshold(num_patterns: int, order: int = 2):
    r"""Dilution :math:`d_c = x_c^{1/(P-1)}` above which the cascade breaks, :math:`x_c` the
    root in (0, 1) of :math:`1 - 2x + x^K` (K = 3: :math:`(\sqrt5 - 1)/2`; K -> inf: 1/2).
    K <= 2 has no threshold (returns 1).

    Parameters
    ----------
    num_patterns : int
        ``K``.
    order : int
        Even ``P``.

    Returns
    -------
    float
    """
    k, p = int(num_patterns), check_order(order)
    if k <= 2:
        return 1.0
    # f(x) = 1 - 2x + x^K: f(0) = 1 > 0 and f(1 - 1/(4K)) < 0 for K >= 3.
    lo, hi = 0.0, 1.0 - 1.0 / (4 * k)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 1 - 2 * mid + mid**k > 0:
            lo = mid
        else:
            hi = mid
    return (0.5 * (lo + hi)) ** (1.0 / (p - 1))
