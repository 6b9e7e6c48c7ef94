"""Monotone, symmetric, hollow couplings for deep Boltzmann machines.

The state is a stack of categorical (one-hot) variables grouped in layers; layer ``l`` holds
``n_l`` variables of ``k_l`` states. Couplings are factored through "row spaces":

.. math::

    W = D - A^T A, \\qquad D = \\operatorname{blockdiag}_j(A_{:,j}^T A_{:,j}),

where ``A`` is a block matrix whose row block ``r`` reads a chosen subset of layers and
``A_{:,j}`` are the ``k_j`` columns of variable ``j``. ``W`` is symmetric, hollow (zero
``k_j x k_j`` diagonal blocks) and :math:`I - W \\succeq I - D`. Scaling the columns of
variable ``j`` by :math:`\\sqrt{s_j}`, :math:`s_j = \\min(1, (1 - m) / \\lVert D_j \\rVert_2)`,
keeps ``W`` exactly symmetric and gives :math:`I - W \\succeq m I` (the reference code scales
output rows instead, which breaks symmetry). Layers sharing a row block are coupled
(``W_{lk} = -\\sum_r A_{rl}^T A_{rk}``), and a layer is laterally coupled through its own
blocks. Convolutional couplings (:mod:`bayesnn.boltzmann.conv`, a ``ConvMDBMSpec``) go
through the same functions.

Reference: Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bayesnn.boltzmann._precision import einsum as _einsum
from bayesnn.boltzmann._precision import matmul as _mm
from bayesnn.boltzmann.conv import (
    ConvCoupling,
    ConvMDBMSpec,
    conv_block_diagonals,
    conv_matvec,
    init_conv_params,
)

__all__ = [
    "Layer",
    "MDBMSpec",
    "MDBMParams",
    "Coupling",
    "PowerState",
    "fully_connected_spec",
    "init_params",
    "block_diagonals",
    "block_spectral_norms",
    "power_iteration_norms",
    "init_power_state",
    "monotone_coupling",
    "unconstrained_coupling",
    "coupling_matvec",
    "dense_coupling_matrix",
    "check_monotone",
    "state_size",
]


class Layer(NamedTuple):
    """A layer of ``num_vars`` categorical variables with ``num_states`` states each."""

    num_vars: int
    num_states: int
    name: str = ""


class MDBMSpec(NamedTuple):
    """Static architecture of a monotone DBM (hashable, usable as a jit static argument).

    Attributes
    ----------
    layers : tuple of Layer
        Layers in order; by convention layer 0 is visible and the last one the label.
    rows : tuple of (int, tuple of int)
        Row blocks of ``A``: ``(row_dim, layer_indices)``. Layers in one row block are
        coupled; each listed layer is also laterally coupled with itself.
    """

    layers: tuple
    rows: tuple


class MDBMParams(NamedTuple):
    """Free parameters: ``A[r][i]`` of shape ``(row_dim_r, n_l, k_l)`` for the i-th layer of
    row ``r``, and unary terms ``b[l]`` of shape ``(n_l, k_l)``."""

    A: tuple
    b: tuple


class Coupling(NamedTuple):
    """Effective (constrained) weights: scaled ``A``, unary ``b``, blocks ``D[l]`` of shape
    ``(n_l, k_l, k_l)`` so that ``W = D - A^T A``."""

    A: tuple
    b: tuple
    D: tuple


class PowerState(NamedTuple):
    """Power-iteration vectors ``u[l]`` of shape ``(n_l, k_l)``, carried across steps."""

    u: tuple


def state_size(spec):
    """Total length ``N = sum_l n_l k_l`` of the one-hot state vector of ``spec``."""
    return sum(layer.num_vars * layer.num_states for layer in spec.layers)


def fully_connected_spec(num_visible, num_bins, num_hidden, num_classes, hidden_states=2):
    """Fully connected mDBM: visible <-> hidden (one row block) and hidden <-> label.

    As the reference's dense model (kernels ``A10, A11, A21, A22``): row block 1 (dimension
    ``num_hidden * hidden_states``) reads visible and hidden; row block 2 (dimension
    ``num_classes``) reads hidden and label.

    Parameters
    ----------
    num_visible, num_bins : int
        Visible variables (pixels) and their number of intensity bins.
    num_hidden, hidden_states : int
        Hidden categorical variables and their number of states.
    num_classes : int
        States of the label variable.

    Returns
    -------
    MDBMSpec

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    for name, val in [
        ("num_visible", num_visible),
        ("num_bins", num_bins),
        ("num_hidden", num_hidden),
        ("num_classes", num_classes),
        ("hidden_states", hidden_states),
    ]:
        if int(val) != val or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val}")
    layers = (
        Layer(int(num_visible), int(num_bins), "visible"),
        Layer(int(num_hidden), int(hidden_states), "hidden"),
        Layer(1, int(num_classes), "label"),
    )
    rows = ((num_hidden * hidden_states, (0, 1)), (num_classes, (1, 2)))
    return MDBMSpec(layers, rows)


def _validate_spec(spec):
    if not isinstance(spec, MDBMSpec):
        raise ValueError("spec must be an MDBMSpec")
    for r, (dim, lids) in enumerate(spec.rows):
        if dim < 1 or not lids:
            raise ValueError(f"spec.rows[{r}] must have a positive dimension and layers")
        for lid in lids:
            if not 0 <= lid < len(spec.layers):
                raise ValueError(f"spec.rows[{r}] refers to missing layer {lid}")


def init_params(rng_key, spec, scale=1.0):
    """Random parameters: ``A`` entries ``N(0, scale^2 / fan_in)``, zero unary terms.

    Parameters
    ----------
    rng_key : PRNGKey
    spec : MDBMSpec
    scale : float
        Overall scale of ``A`` (before the monotonicity rescaling).

    Returns
    -------
    MDBMParams

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    if isinstance(spec, ConvMDBMSpec):
        return init_conv_params(rng_key, spec, scale)
    _validate_spec(spec)
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be positive and finite, got {scale}")
    shapes = [
        (dim, spec.layers[lid].num_vars, spec.layers[lid].num_states)
        for dim, lids in spec.rows
        for lid in lids
    ]
    g = jax.random.normal(rng_key, (sum(math.prod(s) for s in shapes),))  # one PRNG draw
    A, i = [], 0
    for dim, lids in spec.rows:
        fan_in = sum(spec.layers[lid].num_vars for lid in lids)
        row = []
        for lid in lids:
            layer = spec.layers[lid]
            shape = (dim, layer.num_vars, layer.num_states)
            size = math.prod(shape)
            row.append(scale / math.sqrt(fan_in) * g[i : i + size].reshape(shape))
            i += size
        A.append(tuple(row))
    b = tuple(jnp.zeros((layer.num_vars, layer.num_states)) for layer in spec.layers)
    return MDBMParams(tuple(A), b)


def block_diagonals(spec, A):
    """Per-variable diagonal blocks ``D[l][j] = A_{:,j}^T A_{:,j}`` (shape ``(n_l, k_l, k_l)``).

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    if isinstance(spec, ConvMDBMSpec):
        return conv_block_diagonals(spec, A)
    D = [jnp.zeros((lay.num_vars, lay.num_states, lay.num_states)) for lay in spec.layers]
    for (_, lids), row in zip(spec.rows, A, strict=True):
        for lid, a in zip(lids, row, strict=True):
            D[lid] = D[lid] + _einsum("rnk,rnj->nkj", a, a)
    return tuple(D)


def block_spectral_norms(D):
    """Exact spectral norms of symmetric PSD blocks ``D`` of shape ``(n, k, k)`` (eigvalsh).

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    return jnp.max(jnp.abs(jnp.linalg.eigvalsh(D)), axis=-1)


def init_power_state(rng_key, spec):
    """Random unit starting vectors for :func:`power_iteration_norms`, one per variable.

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
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
        v = _einsum("nkj,nj->nk", D, u)
        return v / (jnp.linalg.norm(v, axis=-1, keepdims=True) + 1e-30)

    u = jax.lax.fori_loop(0, num_iters, body, u)
    u = jax.lax.stop_gradient(u)
    return _einsum("nk,nkj,nj->n", u, D, u), u


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
    ~ :math:`\\lVert A \\rVert^2 / m` and mean-field solvers need many iterations (see
    benchmarks/results/mdbm.md). A cap per row block (rather than one for all of ``A``)
    lets e.g. the label row keep its scale when the pixel row grows.

    Parameters
    ----------
    params : MDBMParams
    spec : MDBMSpec
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
    coupling : Coupling
        If ``power_state`` is given, returns ``(coupling, new_power_state)``.

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023 (with the
    symmetric scaling fix described in the module docstring).
    """
    if not 0.0 < m < 1.0:
        raise ValueError(f"m must be in (0, 1), got {m}")
    if max_norm is not None:
        if not float(max_norm) > 0.0:
            raise ValueError(f"max_norm must be positive, got {max_norm}")
        if isinstance(spec, ConvMDBMSpec):
            raise ValueError("max_norm is only supported for dense MDBMSpec couplings")
        params = params._replace(A=_cap_rows(params.A, float(max_norm)))
    D = block_diagonals(spec, params.A)
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
    if isinstance(spec, ConvMDBMSpec):
        coupling = ConvCoupling(tuple(params.A), tuple(params.b), Ds, tuple(sq))
        return coupling if power_state is None else (coupling, new_u)
    A = tuple(
        tuple(a * sq[lid][None, :, None] for lid, a in zip(lids, row, strict=True))
        for (_, lids), row in zip(spec.rows, params.A, strict=True)
    )
    coupling = Coupling(A, tuple(params.b), Ds)
    if power_state is None:
        return coupling
    return coupling, new_u


def _cap_rows(A, max_norm):
    """Scale each row block so that ``||A_r A_r^T||_2 <= max_norm`` (exact eigvalsh)."""
    out = []
    for row in A:
        S = jnp.concatenate([a.reshape(a.shape[0], -1) for a in row], axis=1)
        top = jnp.linalg.eigvalsh(_mm(S, S.T))[-1]
        c = jnp.sqrt(jnp.minimum(1.0, max_norm / jnp.maximum(top, 1e-30)))
        out.append(tuple(a * c for a in row))
    return tuple(out)


def unconstrained_coupling(params, spec):
    """Weights ``W = D - A^T A`` without the monotonicity rescaling (plain mean-field DBM).

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    D = block_diagonals(spec, params.A)
    if isinstance(spec, ConvMDBMSpec):
        ones = tuple(jnp.ones(d.shape[0]) for d in D)
        return ConvCoupling(tuple(params.A), tuple(params.b), D, ones)
    return Coupling(tuple(params.A), tuple(params.b), D)


def coupling_matvec(coupling, spec, q):
    """``W q`` for a batch of states given as a tuple of ``(batch, n_l, k_l)`` arrays.

    .. math:: W q = D q - A^T (A q)

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    if isinstance(spec, ConvMDBMSpec):
        return conv_matvec(coupling, spec, q)
    out = [_einsum("nkj,bnj->bnk", d, x) for d, x in zip(coupling.D, q, strict=True)]
    for (_, lids), row in zip(spec.rows, coupling.A, strict=True):
        h = sum(_einsum("rnk,bnk->br", a, q[lid]) for lid, a in zip(lids, row, strict=True))
        for lid, a in zip(lids, row, strict=True):
            out[lid] = out[lid] - _einsum("rnk,br->bnk", a, h)
    return tuple(out)


def _layer_block_diag(d):
    """``(n, k, k)`` blocks -> the ``(n k, n k)`` block-diagonal matrix."""
    n, k, _ = d.shape
    return _einsum("nij,nm->nimj", d, jnp.eye(n, dtype=d.dtype)).reshape(n * k, n * k)


def dense_coupling_matrix(coupling, spec):
    """Explicit symmetric ``N x N`` matrix ``W`` (small models and tests only).

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    if isinstance(spec, ConvMDBMSpec):
        n = state_size(spec)
        eye = jnp.eye(n)
        q, i = [], 0
        for lay in spec.layers:
            size = lay.num_vars * lay.num_states
            q.append(eye[:, i : i + size].reshape(n, lay.num_vars, lay.num_states))
            i += size
        W = jnp.concatenate([x.reshape(n, -1) for x in conv_matvec(coupling, spec, q)], 1)
        return 0.5 * (W + W.T)
    cols = []
    for (_, lids), row in zip(spec.rows, coupling.A, strict=True):
        parts = []
        for lid, lay in enumerate(spec.layers):
            if lid in lids:
                a = row[lids.index(lid)]
                parts.append(a.reshape(a.shape[0], -1))
            else:
                parts.append(jnp.zeros((row[0].shape[0], lay.num_vars * lay.num_states)))
        cols.append(jnp.concatenate(parts, axis=1))
    A = jnp.concatenate(cols, axis=0)
    D = jax.scipy.linalg.block_diag(*[_layer_block_diag(d) for d in coupling.D])
    W = D - _mm(A.T, A)
    return 0.5 * (W + W.T)


def check_monotone(coupling, spec, m=0.01, atol=1e-5):
    """Verify that effective weights are hollow and satisfy ``I - W >= m I``.

    Checks that the stored blocks ``D`` equal ``blockdiag(A^T A)`` (so ``W = D - A^T A`` is
    hollow) and that every block has ``||D_j||_2 <= 1 - m``, which implies
    :math:`I - W \\succeq I - D \\succeq m I`.

    Parameters
    ----------
    coupling : Coupling
    spec : MDBMSpec
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
    D_true = block_diagonals(spec, coupling.A)
    if isinstance(spec, ConvMDBMSpec):
        D_true = tuple(
            d * jnp.square(s)[:, None, None]
            for d, s in zip(D_true, coupling.sqrt_scale, strict=True)
        )
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
