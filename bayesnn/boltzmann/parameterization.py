"""Monotone, symmetric, hollow couplings for deep Boltzmann machines (any architecture).

Couplings are factored through "row spaces",

.. math::

    W = D - A^T A, \\qquad D = \\operatorname{blockdiag}_j(A_{:,j}^T A_{:,j}),

with ``A_{:,j}`` the ``k_j`` columns of categorical variable ``j`` (dense blocks:
:mod:`bayesnn.boltzmann.dense`; convolutions: :mod:`bayesnn.boltzmann.conv`). ``W`` is
symmetric, hollow (zero ``k_j x k_j`` diagonal blocks) and :math:`I - W \\succeq I - D`.
Scaling the columns of variable ``j`` by :math:`\\sqrt{s_j}`,
:math:`s_j = \\min(1, (1 - m) / \\lVert D_j \\rVert_2)`, keeps ``W`` exactly symmetric and
gives :math:`I - W \\succeq m I`, so the mean-field fixed point is unique for any clamping.
(Feng, Winston and Kolter scale the output rows of ``A`` instead, which breaks the symmetry
of ``W``.) The functions here only use the architecture's and the coupling's methods
(:mod:`bayesnn.boltzmann.coupling`).

Reference: Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bayesnn.boltzmann._precision import einsum

__all__ = [
    "PowerState",
    "state_size",
    "init_params",
    "block_spectral_norms",
    "power_iteration_norms",
    "init_power_state",
    "monotone_coupling",
    "unconstrained_coupling",
    "check_monotone",
]


class PowerState(NamedTuple):
    """Power-iteration vectors ``u[l]`` of shape ``(n_l, k_l)``, carried across steps."""

    u: tuple


def state_size(spec):
    """Total length ``N = sum_l n_l k_l`` of the one-hot state vector of ``spec``."""
    return sum(layer.num_vars * layer.num_states for layer in spec.layers)


def init_params(rng_key, spec, scale=1.0):
    """Random parameters: ``A`` entries ``N(0, scale^2 / fan_in)``, zero unary terms.

    Parameters
    ----------
    rng_key : PRNGKey
    spec : MDBMSpec or ConvMDBMSpec
    scale : float
        Overall scale of ``A`` (before the monotonicity rescaling).

    Returns
    -------
    MDBMParams

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    return spec.init_params(rng_key, scale)


def block_spectral_norms(D):
    """Exact spectral norms of symmetric PSD blocks ``D`` of shape ``(n, k, k)`` (eigvalsh)."""
    return jnp.max(jnp.abs(jnp.linalg.eigvalsh(D)), axis=-1)


def init_power_state(rng_key, spec):
    """Random unit starting vectors for :func:`power_iteration_norms`, one per variable."""
    sizes = [lay.num_vars * lay.num_states for lay in spec.layers]
    g = jax.random.normal(rng_key, (sum(sizes),))  # one PRNG draw for all layers
    u, i = [], 0
    for size, lay in zip(sizes, spec.layers, strict=True):
        v = g[i : i + size].reshape(lay.num_vars, lay.num_states)
        u.append(v / jnp.linalg.norm(v, axis=-1, keepdims=True))
        i += size
    return PowerState(tuple(u))


def power_iteration_norms(D, u, num_iters=2):
    """Spectral-norm estimates of PSD blocks by power iteration from carried vectors.

    .. math:: u \\leftarrow D u / \\lVert D u \\rVert, \\qquad
              \\hat\\sigma = u^T D u \\le \\lVert D \\rVert_2

    The estimate is a lower bound; carried across training steps (weights change slowly) a
    few iterations track the top eigenvector. Use :func:`check_monotone` to verify.

    Parameters
    ----------
    D : array (n, k, k)
    u : array (n, k)
        Current vectors.
    num_iters : int

    Returns
    -------
    norms : array (n,)
    u : array (n, k)
        Updated vectors, to pass to the next call.

    References
    ----------
    Miyato et al., "Spectral normalization for GANs", ICLR 2018 (carried power iteration).
    """

    def body(_, u):
        v = einsum("nkj,nj->nk", D, u)
        return v / (jnp.linalg.norm(v, axis=-1, keepdims=True) + 1e-30)

    u = jax.lax.fori_loop(0, num_iters, body, u)
    u = jax.lax.stop_gradient(u)
    return einsum("nk,nkj,nj->n", u, D, u), u


def monotone_coupling(params, spec, m=0.01, power_state=None, num_power_iters=2, max_norm=None):
    """Effective weights with :math:`I - W \\succeq m I`, exactly symmetric and hollow.

    Columns of variable ``j`` in ``A`` are scaled by :math:`\\sqrt{s_j}`,
    :math:`s_j = \\min(1, (1 - m) / \\lVert D_j \\rVert_2)`, so the new blocks are
    :math:`s_j D_j` and :math:`W = S^{1/2} (D - A^T A) S^{1/2}`.

    Optional norm cap (dense specs): with ``max_norm = L``, each row block ``A_r`` of the raw
    parameters is first multiplied by :math:`\\min(1, \\sqrt{L} / \\lVert A_r \\rVert_2)`
    (exact top eigenvalue of the small ``A_r A_r^T``), then the column scaling above is
    applied (which can only lower the norms). Any such scaling keeps ``W`` symmetric, hollow
    and within the margin, and :math:`m I \\preceq I - W \\preceq (1 + R L) I` with ``R``
    row blocks. The margin alone does not bound ``A^T A`` from above: training then tends
    to grow a few huge directions, the fixed-point problem gets condition number
    ~ :math:`\\lVert A \\rVert^2 / m` and mean-field solvers need many iterations. A cap per
    row block (rather than one for all of ``A``) lets e.g. the label row keep its scale when
    the pixel row grows.

    Parameters
    ----------
    params : MDBMParams
    spec : MDBMSpec or ConvMDBMSpec
    m : float in (0, 1)
        Monotonicity margin.
    power_state : PowerState, optional
        If given, block norms are estimated by carried power iteration (cheaper for large
        blocks, a lower bound); otherwise computed exactly with ``eigvalsh``.
    num_power_iters : int
    max_norm : float, optional
        Cap ``L`` on :math:`\\lVert A_r^T A_r \\rVert_2` per row block (dense specs
        only); None: no cap.

    Returns
    -------
    coupling : Coupling or ConvCoupling
        If ``power_state`` is given, returns ``(coupling, new_power_state)``.

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023 (with the
    symmetric scaling described in the module docstring).
    """
    if not 0.0 < m < 1.0:
        raise ValueError(f"m must be in (0, 1), got {m}")
    if max_norm is not None:
        if not float(max_norm) > 0.0:
            raise ValueError(f"max_norm must be positive, got {max_norm}")
        params = params._replace(A=spec.cap_rows(params.A, float(max_norm)))
    D = spec.block_diagonals(params.A)
    if power_state is None:
        norms = [block_spectral_norms(d) for d in D]
        new_u = None
    else:
        pairs = [
            power_iteration_norms(d, u, num_power_iters)
            for d, u in zip(D, power_state.u, strict=True)
        ]
        norms = [p[0] for p in pairs]
        new_u = PowerState(tuple(p[1] for p in pairs))
    scale = [jnp.minimum(1.0, (1.0 - m) / jnp.maximum(n, 1e-30)) for n in norms]
    sq = [jnp.sqrt(s) for s in scale]
    Ds = tuple(d * s[:, None, None] for d, s in zip(D, scale, strict=True))
    coupling = spec.make_coupling(params.A, params.b, Ds, tuple(sq))
    return coupling if power_state is None else (coupling, new_u)


def unconstrained_coupling(params, spec):
    """Weights ``W = D - A^T A`` without the monotonicity rescaling (plain mean-field DBM).

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    return spec.make_coupling(params.A, params.b, spec.block_diagonals(params.A))


def check_monotone(coupling, spec, m=0.01, atol=1e-5):
    """Verify that effective weights are hollow and satisfy ``I - W >= m I``.

    Checks that the stored blocks ``D`` equal ``blockdiag(A^T A)`` (so ``W = D - A^T A`` is
    hollow) and that every block has ``||D_j||_2 <= 1 - m``, which implies
    :math:`I - W \\succeq I - D \\succeq m I`.

    Parameters
    ----------
    coupling : Coupling or ConvCoupling
    spec : MDBMSpec or ConvMDBMSpec
    m : float
    atol : float
        Slack for rounding.

    Returns
    -------
    True

    Raises
    ------
    ValueError
        Naming the layer and variable at fault (for example after a hand-made edit of the
        effective weights).

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    D_true = coupling.exact_block_diagonals(spec)
    for lid, (d, dt) in enumerate(zip(coupling.D, D_true, strict=True)):
        err = float(jnp.max(jnp.abs(d - dt)))
        if not err <= atol * (1.0 + float(jnp.max(jnp.abs(dt)))):
            raise ValueError(
                f"coupling is inconsistent: layer {lid} diagonal blocks D differ from "
                f"blockdiag(A^T A) by {err:.3g}, so W = D - A^T A is not hollow (rebuild it "
                "with monotone_coupling)"
            )
        norms = block_spectral_norms(dt)
        worst = int(jnp.argmax(norms))
        val = float(norms[worst])
        if not val <= 1.0 - m + atol:
            raise ValueError(
                f"coupling violates the monotonicity constraint: layer {lid}, variable "
                f"{worst} has ||D_j||_2 = {val:.6g} > 1 - m = {1.0 - m:.6g}; I - W >= m I is "
                "no longer guaranteed (rebuild it with monotone_coupling)"
            )
    return True
