"""What every monotone-DBM architecture and coupling provides (dense and convolutional).

An architecture ("spec": :class:`~bayesnn.boltzmann.dense.MDBMSpec`,
:class:`~bayesnn.boltzmann.conv.ConvMDBMSpec`) is a static, hashable object that knows its
layers and how the row blocks of ``A`` read them. Its effective weights ("coupling":
:class:`~bayesnn.boltzmann.dense.Coupling`, :class:`~bayesnn.boltzmann.conv.ConvCoupling`)
are a pytree of arrays,

.. math::

    W = S^{1/2} (D_0 - A^T A) S^{1/2}, \\qquad D_0 = \\operatorname{blockdiag}_j(A_{:,j}^T
    A_{:,j}),

(Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023). The rest of the
subpackage (parameterisation, solvers, sampling, linear response, training) only calls the
methods below, so a new architecture is one new pair of classes; nothing dispatches on types.

Specs (:class:`ArchitectureSpec`) build parameters and couplings; couplings
(:class:`CouplingOperator`) apply ``W``. Both protocols are documentation and
``isinstance``-checkable; the implementations are NamedTuples (hashable specs, pytree
couplings).
"""

from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax.numpy as jnp
import numpy as np

from bayesnn.boltzmann._precision import einsum

__all__ = [
    "MDBMParams",
    "ArchitectureSpec",
    "CouplingOperator",
    "layer_block_diag",
    "greedy_colors",
    "color_classes",
    "split_state",
]


class MDBMParams(NamedTuple):
    """Free parameters: ``A[r][i]`` for the i-th layer read by row block ``r`` (dense: a
    ``(row_dim_r, n_l, k_l)`` matrix; convolutional: an HWIO kernel), and unary terms
    ``b[l]`` of shape ``(n_l, k_l)``."""

    A: tuple
    b: tuple


@runtime_checkable
class ArchitectureSpec(Protocol):
    """Static architecture of a monotone DBM (hashable: a jit static argument).

    Attributes ``layers`` (each with ``num_vars``, ``num_states``, ``name``), ``rows``, and
    ``supports_norm_cap`` (whether :meth:`cap_rows` is available).
    """

    layers: tuple
    rows: tuple
    supports_norm_cap: bool

    def validate(self) -> None:
        """Raise ``ValueError`` naming the faulty row or layer."""

    def init_params(self, rng_key, scale: float = 1.0) -> MDBMParams:
        """Random ``A`` (``N(0, scale^2 / fan_in)``) and zero unary terms."""

    def block_diagonals(self, A) -> tuple:
        """Exact blocks ``A_{:,j}^T A_{:,j}`` per layer, ``(n_l, k_l, k_l)``."""

    def cap_rows(self, A, max_norm: float) -> tuple:
        """Scale each row block so that ``||A_r A_r^T||_2 <= max_norm``."""

    def make_coupling(self, A, b, D, sqrt_scale) -> "CouplingOperator":
        """Effective coupling ``S^{1/2} (D_0 - A^T A) S^{1/2}`` from raw ``A`` and the
        scaled blocks ``D = S D_0`` (``sqrt_scale`` None: ``S = I``)."""


@runtime_checkable
class CouplingOperator(Protocol):
    """Effective weights ``W`` (a pytree) with the linear algebra the subpackage needs.

    Every method takes the architecture ``spec`` the coupling was built from.
    """

    b: tuple
    D: tuple
    has_resolvent: bool

    def matvec(self, spec, q) -> tuple:
        """``W q`` for a batch of states ``q[l]`` of shape ``(batch, n_l, k_l)`` (``W`` is
        symmetric, so this is also ``W^T q``)."""

    def solver_field(self, spec):
        """``q -> W q + b`` up to a constant per variable (what the solvers need)."""

    def dense_matrix(self, spec):
        """Explicit symmetric ``N x N`` matrix ``W`` (small models and tests)."""

    def exact_block_diagonals(self, spec) -> tuple:
        """``blockdiag(W's A^T A)`` recomputed from the coupling's own ``A`` (and scales)."""

    def resolvent(self, spec, alpha):
        """``v -> (I + alpha (I - W))^{-1} v`` (Peaceman-Rachford); only if
        ``has_resolvent``."""

    def interaction_graph(self, spec):
        """``(neighbours, num_vars)``: ``neighbours(v)`` lists variables that may interact
        with variable ``v`` (a superset is allowed), for graph colouring."""

    def gibbs_kernel(self, spec) -> tuple[Any, Any]:
        """``(kernel, init_fn)`` of a one-sweep Gibbs kernel for one chain
        (:mod:`samplers.gibbs` conventions) and ``init_fn(units, clamp) -> state``."""


def layer_block_diag(d):
    """``(n, k, k)`` blocks -> the ``(n k, n k)`` block-diagonal matrix."""
    n, k, _ = d.shape
    return einsum("nij,nm->nimj", d, jnp.eye(n, dtype=d.dtype)).reshape(n * k, n * k)


def split_state(flat, spec):
    """Split ``(batch, N)`` rows into the per-layer ``(batch, n_l, k_l)`` state tuple."""
    out, i = [], 0
    for lay in spec.layers:
        size = lay.num_vars * lay.num_states
        out.append(flat[:, i : i + size].reshape(flat.shape[0], lay.num_vars, lay.num_states))
        i += size
    return tuple(out)


def greedy_colors(neighbours, num_vars):
    """Greedy colouring: ``neighbours(v)`` lists the variables that may interact with ``v``.

    Returns an int array ``(num_vars,)``; variables of one colour never interact.

    References
    ----------
    Gonzalez et al., "Parallel Gibbs sampling: from colored fields to thin junction trees",
    AISTATS 2011.
    """
    color = np.full(num_vars, -1)
    for v in range(num_vars):
        used = set(color[neighbours(v)].tolist())
        c = 0
        while c in used:
            c += 1
        color[v] = c
    return color


def color_classes(coupling, spec):
    """Greedy colouring of the variables so that same-coloured variables do not interact.

    The graph comes from ``coupling.interaction_graph(spec)``: dense couplings read it off
    the materialised ``W`` (exact; the coupling must be concrete), convolutional ones from
    the structure alone (a conservative graph, never materialising ``W``).

    Parameters
    ----------
    coupling : CouplingOperator
    spec : ArchitectureSpec

    Returns
    -------
    colors : tuple of int32 arrays (n_l,)
        Colour of each variable, per layer.
    num_colors : int

    References
    ----------
    Gonzalez et al., "Parallel Gibbs sampling: from colored fields to thin junction trees",
    AISTATS 2011.
    """
    neighbours, nv = coupling.interaction_graph(spec)
    color = greedy_colors(neighbours, nv)
    out, i = [], 0
    for lay in spec.layers:
        out.append(jnp.asarray(color[i : i + lay.num_vars], jnp.int32))
        i += lay.num_vars
    return tuple(out), int(color.max()) + 1
