"""Dense (fully connected) monotone couplings: architecture and effective weights.

The state is a stack of categorical (one-hot) variables grouped in layers; layer ``l`` holds
``n_l`` variables of ``k_l`` states. Couplings are factored through "row spaces":

.. math::

    W = D - A^T A, \\qquad D = \\operatorname{blockdiag}_j(A_{:,j}^T A_{:,j}),

where ``A`` is a block matrix whose row block ``r`` (a dense ``(row_dim_r, n_l, k_l)`` matrix
per layer it reads) reads a chosen subset of layers and ``A_{:,j}`` are the ``k_j`` columns
of variable ``j``. ``W`` is symmetric and hollow (zero ``k_j x k_j`` diagonal blocks), and
layers sharing a row block are coupled (``W_{lk} = -\\sum_r A_{rl}^T A_{rk}``); a layer is
laterally coupled through its own blocks. The monotone rescaling
(:func:`bayesnn.boltzmann.parameterization.monotone_coupling`) folds the column scales
:math:`\\sqrt{s_j}` into ``A``.

Reference: Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesnn.boltzmann._precision import einsum, matmul
from bayesnn.boltzmann.coupling import MDBMParams, layer_block_diag
from samplers import gibbs

__all__ = ["CategoricalLayer", "MDBMSpec", "Coupling", "fully_connected_spec"]


class CategoricalLayer(NamedTuple):
    """A layer of ``num_vars`` categorical variables with ``num_states`` states each."""

    num_vars: int
    num_states: int
    name: str = ""


class MDBMSpec(NamedTuple):
    """Static architecture of a dense monotone DBM (hashable, a jit static argument).

    Attributes
    ----------
    layers : tuple of CategoricalLayer
        Layers in order; by convention layer 0 is visible and the last one the label.
    rows : tuple of (int, tuple of int)
        Row blocks of ``A``: ``(row_dim, layer_indices)``. Layers in one row block are
        coupled; each listed layer is also laterally coupled with itself.
    """

    layers: tuple
    rows: tuple

    supports_norm_cap = True

    def validate(self):
        """Raise ``ValueError`` for empty rows or rows reading missing layers."""
        for r, (dim, lids) in enumerate(self.rows):
            if dim < 1 or not lids:
                raise ValueError(f"spec.rows[{r}] must have a positive dimension and layers")
            for lid in lids:
                if not 0 <= lid < len(self.layers):
                    raise ValueError(f"spec.rows[{r}] refers to missing layer {lid}")

    def init_params(self, rng_key, scale=1.0):
        """``A`` entries ``N(0, scale^2 / fan_in)`` (``fan_in``: variables read by the row),
        zero unary terms; one PRNG draw for all blocks."""
        self.validate()
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"scale must be positive and finite, got {scale}")
        shapes = [
            (dim, self.layers[lid].num_vars, self.layers[lid].num_states)
            for dim, lids in self.rows
            for lid in lids
        ]
        g = jax.random.normal(rng_key, (sum(math.prod(s) for s in shapes),))
        A, i = [], 0
        for dim, lids in self.rows:
            fan_in = sum(self.layers[lid].num_vars for lid in lids)
            row = []
            for lid in lids:
                layer = self.layers[lid]
                shape = (dim, layer.num_vars, layer.num_states)
                size = math.prod(shape)
                row.append(scale / math.sqrt(fan_in) * g[i : i + size].reshape(shape))
                i += size
            A.append(tuple(row))
        b = tuple(jnp.zeros((layer.num_vars, layer.num_states)) for layer in self.layers)
        return MDBMParams(tuple(A), b)

    def block_diagonals(self, A):
        """Per-variable blocks ``D[l][j] = A_{:,j}^T A_{:,j}``, shape ``(n_l, k_l, k_l)``."""
        D = [jnp.zeros((lay.num_vars, lay.num_states, lay.num_states)) for lay in self.layers]
        for (_, lids), row in zip(self.rows, A, strict=True):
            for lid, a in zip(lids, row, strict=True):
                D[lid] = D[lid] + einsum("rnk,rnj->nkj", a, a)
        return tuple(D)

    def cap_rows(self, A, max_norm):
        """Scale each row block so that ``||A_r A_r^T||_2 <= max_norm`` (exact eigvalsh of
        the small ``A_r A_r^T``)."""
        out = []
        for row in A:
            S = jnp.concatenate([a.reshape(a.shape[0], -1) for a in row], axis=1)
            top = jnp.linalg.eigvalsh(matmul(S, S.T))[-1]
            c = jnp.sqrt(jnp.minimum(1.0, max_norm / jnp.maximum(top, 1e-30)))
            out.append(tuple(a * c for a in row))
        return tuple(out)

    def make_coupling(self, A, b, D, sqrt_scale=None):
        """:class:`Coupling` with the column scales folded into ``A``."""
        if sqrt_scale is not None:
            A = tuple(
                tuple(a * sqrt_scale[lid][None, :, None] for lid, a in zip(lids, row, strict=True))
                for (_, lids), row in zip(self.rows, A, strict=True)
            )
        return Coupling(tuple(A), tuple(b), tuple(D))


def fully_connected_spec(num_visible, num_bins, num_hidden, num_classes, hidden_states=2):
    """Fully connected mDBM: visible <-> hidden (one row block) and hidden <-> label.

    As the dense model of Feng, Winston and Kolter (kernels ``A10, A11, A21, A22``): row
    block 1 (dimension ``num_hidden * hidden_states``) reads visible and hidden; row block 2
    (dimension ``num_classes``) reads hidden and label.

    Parameters
    ----------
    num_visible : int
        Visible variables (pixels).
    num_bins : int >= 2
        Intensity bins (states) of each pixel.
    num_hidden : int
        Hidden categorical variables.
    num_classes : int >= 2
        States of the label variable.
    hidden_states : int >= 2
        States of each hidden variable.

    Returns
    -------
    MDBMSpec

    Raises
    ------
    ValueError
        Naming the argument: counts must be positive integers, and every categorical
        variable needs at least two states (one state carries no information and its
        softmax is constant).

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    for name, val, low in [
        ("num_visible", num_visible, 1),
        ("num_bins", num_bins, 2),
        ("num_hidden", num_hidden, 1),
        ("num_classes", num_classes, 2),
        ("hidden_states", hidden_states, 2),
    ]:
        if isinstance(val, bool) or int(val) != val or val < low:
            what = "a positive integer" if low == 1 else f"an integer >= {low}"
            raise ValueError(f"fully_connected_spec: {name} must be {what}, got {val}")
    layers = (
        CategoricalLayer(int(num_visible), int(num_bins), "visible"),
        CategoricalLayer(int(num_hidden), int(hidden_states), "hidden"),
        CategoricalLayer(1, int(num_classes), "label"),
    )
    rows = ((num_hidden * hidden_states, (0, 1)), (num_classes, (1, 2)))
    return MDBMSpec(layers, rows)


class Coupling(NamedTuple):
    """Effective dense weights: scaled ``A``, unary ``b`` and blocks ``D[l]`` of shape
    ``(n_l, k_l, k_l)``, so that ``W = D - A^T A`` (see the module docstring)."""

    A: tuple
    b: tuple
    D: tuple

    has_resolvent = True

    def matvec(self, spec, q):
        """``W q = D q - A^T (A q)`` for a batch of states ``(batch, n_l, k_l)``."""
        out = [einsum("nkj,bnj->bnk", d, x) for d, x in zip(self.D, q, strict=True)]
        for (_, lids), row in zip(spec.rows, self.A, strict=True):
            h = sum(einsum("rnk,bnk->br", a, q[lid]) for lid, a in zip(lids, row, strict=True))
            for lid, a in zip(lids, row, strict=True):
                out[lid] = out[lid] - einsum("rnk,br->bnk", a, h)
        return tuple(out)

    def stacked_rows(self, spec):
        """All row blocks as one ``(rows, N)`` matrix (zeros where a row skips a layer)."""
        rows = []
        for (_, lids), row in zip(spec.rows, self.A, strict=True):
            parts = []
            for lid, lay in enumerate(spec.layers):
                if lid in lids:
                    a = row[lids.index(lid)]
                    parts.append(a.reshape(a.shape[0], -1))
                else:
                    parts.append(jnp.zeros((row[0].shape[0], lay.num_vars * lay.num_states)))
            rows.append(jnp.concatenate(parts, axis=1))
        return jnp.concatenate(rows, axis=0)

    def dense_matrix(self, spec):
        """Explicit symmetric ``W = blockdiag(D) - A^T A`` (``N x N``)."""
        A = self.stacked_rows(spec)
        D = jax.scipy.linalg.block_diag(*[layer_block_diag(d) for d in self.D])
        W = D - matmul(A.T, A)
        return 0.5 * (W + W.T)

    def exact_block_diagonals(self, spec):
        """``blockdiag(A^T A)`` of the (already scaled) ``A``."""
        return spec.block_diagonals(self.A)

    def solver_field(self, spec):
        r"""``q -> W q + b`` up to a constant per variable, for the solvers.

        All row blocks are stacked into one matrix, built once per solve, and state 0 of
        every variable is eliminated: on the simplex :math:`A_i q_i = a_{i0} + \sum_{s \ge
        1} (a_{is} - a_{i0}) q_{is}`, and :math:`-(a_{is} - a_{i0})^T A q` is the field
        :math:`-a_{is}^T A q` shifted by :math:`a_{i0}^T A q`, the same for all states of
        the variable. Softmax, the entropy prox and the mean-field residual ignore such
        shifts, and every solver iterate sums to one per variable (simplex points and their
        affine combinations), so the solve is unchanged while the two matmuls per evaluation
        shrink from :math:`\sum_l n_l k_l` to :math:`\sum_l n_l (k_l - 1)` columns (2x fewer
        flops for binary units). Not :func:`bayesnn.boltzmann.field` (which is exact).
        """
        A = self.stacked_rows(spec)
        sizes = [lay.num_vars * lay.num_states for lay in spec.layers]
        offs = np.cumsum([0] + sizes)
        blocks = [
            A[:, offs[i] : offs[i + 1]].reshape(A.shape[0], lay.num_vars, lay.num_states)
            for i, lay in enumerate(spec.layers)
        ]
        const = sum(jnp.sum(blk[:, :, 0], axis=1) for blk in blocks)  # sum_i a_i0, (rows,)
        delta = jnp.concatenate(
            [(blk[:, :, 1:] - blk[:, :, :1]).reshape(A.shape[0], -1) for blk in blocks], axis=1
        )
        red = [lay.num_vars * (lay.num_states - 1) for lay in spec.layers]
        roffs = np.cumsum([0] + red)
        D, b = self.D, self.b

        def fn(q):
            batch = q[0].shape[0]
            qr = jnp.concatenate([x[:, :, 1:].reshape(batch, -1) for x in q], axis=1)
            dq = matmul(matmul(qr, delta.T) + const[None], delta)
            out = []
            for i, (d, x, bl) in enumerate(zip(D, q, b, strict=True)):
                # D q as an einsum: jax 0.10.2's XLA CPU miscompiled a broadcast-multiply-sum
                # fused with the matmul (tests/test_boltzmann.py, the field regression test)
                shifted = dq[:, roffs[i] : roffs[i + 1]].reshape(batch, x.shape[1], -1)
                shifted = jnp.concatenate([jnp.zeros_like(shifted[:, :, :1]), shifted], axis=-1)
                out.append(einsum("nkj,bnj->bnk", d, x) - shifted + bl[None])
            return tuple(out)

        return fn

    def resolvent(self, spec, alpha):
        """``v -> (I + alpha (I - W))^{-1} v`` by the Woodbury identity.

        With :math:`B = \\operatorname{blockdiag}((1 + \\alpha) I - \\alpha D_j)` (SPD),
        :math:`(B + \\alpha A^T A)^{-1} = B^{-1} - B^{-1} A^T (I/\\alpha + A B^{-1} A^T)^{-1}
        A B^{-1}`: one Cholesky of a (rows x rows) matrix per weight update, O(rows N) per
        apply (Winston and Kolter, "Monotone operator equilibrium networks", NeurIPS 2020).
        """
        A = self.stacked_rows(spec)
        Binv = [
            jnp.linalg.inv((1.0 + alpha) * jnp.eye(d.shape[-1])[None] - alpha * d) for d in self.D
        ]
        sizes = [lay.num_vars * lay.num_states for lay in spec.layers]
        offs = np.cumsum([0] + sizes)

        def apply_binv(vf):
            out = []
            for i, (bi, lay) in enumerate(zip(Binv, spec.layers, strict=True)):
                v = vf[:, offs[i] : offs[i + 1]].reshape(-1, lay.num_vars, lay.num_states)
                out.append(einsum("nkj,bnj->bnk", bi, v).reshape(vf.shape[0], -1))
            return jnp.concatenate(out, axis=1)

        BinvAT = apply_binv(A).T  # B^{-1} symmetric, so (B^{-1} A^T) = (A B^{-1})^T
        K = jnp.eye(A.shape[0]) / alpha + matmul(A, BinvAT)
        chol = jax.scipy.linalg.cho_factor(K, lower=True)

        def resolvent(v):
            batch = v[0].shape[0]
            vf = jnp.concatenate([x.reshape(batch, -1) for x in v], axis=1)
            bv = apply_binv(vf)
            s = jax.scipy.linalg.cho_solve(chol, matmul(bv, A.T).T).T
            out = bv - matmul(s, BinvAT.T)
            return tuple(
                out[:, offs[i] : offs[i + 1]].reshape(batch, lay.num_vars, lay.num_states)
                for i, lay in enumerate(spec.layers)
            )

        return resolvent

    def interaction_graph(self, spec):
        """Exact interaction graph from the materialised ``W`` (needs a concrete coupling)."""
        with jax.ensure_compile_time_eval():
            W = self.dense_matrix(spec)
        if isinstance(W, jax.core.Tracer):
            raise ValueError(
                "colouring needs a concrete coupling: close over it instead of passing it as "
                "a traced argument"
            )
        W = np.abs(np.asarray(W)) > 0
        offsets = np.cumsum([0] + [lay.num_vars for lay in spec.layers])[:-1]
        var = np.concatenate(
            [
                off + np.repeat(np.arange(lay.num_vars), lay.num_states)
                for off, lay in zip(offsets, spec.layers, strict=True)
            ]
        )
        nv = int(var.max()) + 1
        adj = np.zeros((nv, nv), bool)
        ii, jj = np.nonzero(W)
        adj[var[ii], var[jj]] = True
        np.fill_diagonal(adj, False)
        return (lambda v: adj[v]), nv

    def gibbs_kernel(self, spec):
        """Sequential single-site Gibbs sweep with cached row activations :math:`a_r = A_r
        z` (Salakhutdinov and Hinton, AISTATS 2009).

        ``W`` couples variables inside a layer (lateral terms), so variables are updated one
        at a time with conditional logits :math:`\\ell_j = D_j z_j - \\sum_r A_{r,j}^T a_r
        + b_j` (the :math:`D_j z_j` term cancels the self-coupling, ``W`` being hollow);
        the cache makes a full sweep cost one matrix-vector product.

        Returns
        -------
        kernel : callable
            ``(rng_key, GibbsState, beta=1.0) -> (GibbsState, GibbsInfo)``
            (:func:`samplers.gibbs.build_kernel`).
        init_fn : callable
            ``(units, clamp) -> GibbsState`` for one chain (cache included).
        """
        members = [[] for _ in spec.layers]
        for r, (_, lids) in enumerate(spec.rows):
            for i, lid in enumerate(lids):
                members[lid].append((r, i))
        A, D, b = self.A, self.D, self.b

        def logits_fn(state, lid, j):
            z = jax.lax.dynamic_index_in_dim(state.units[lid], j, 0, keepdims=False)
            d = jax.lax.dynamic_index_in_dim(D[lid], j, 0, keepdims=False)
            out = matmul(d, z) + jax.lax.dynamic_index_in_dim(b[lid], j, 0, keepdims=False)
            for r, i in members[lid]:
                a = jax.lax.dynamic_index_in_dim(A[r][i], j, 1, keepdims=False)
                out = out - matmul(a.T, state.cache[r])
            return out[None, :]

        def update_fn(cache, lid, j, old, new):
            cache = list(cache)
            for r, i in members[lid]:
                a = jax.lax.dynamic_index_in_dim(A[r][i], j, 1, keepdims=False)
                cache[r] = cache[r] + matmul(a, new[0] - old[0])
            return tuple(cache)

        def cache_fn(units):
            return tuple(
                sum(einsum("rnk,nk->r", a, units[lid]) for lid, a in zip(lids, row, strict=True))
                for (_, lids), row in zip(spec.rows, A, strict=True)
            )

        kernel = gibbs.build_kernel(logits_fn, (1,) * len(spec.layers), update_fn)
        return kernel, lambda units, clamp: gibbs.init(units, clamp, cache_fn)
