"""Convolutional monotone couplings: ``W = D - A^T A`` with ``A`` a block of convolutions.

Layers are images of ``height x width`` positions, each holding ``groups`` categorical
variables of ``states`` states (``groups * states`` channels, NHWC). A row block ``r`` is a
``(height_r, width_r, channels_r)`` "row space"; it reads layer ``l`` with a convolution
:math:`A_{rl}` of kernel ``(k, k, C_l, C_r)``, stride ``s = H_l / H_r`` and zero padding chosen
so that the output has the row's size (a kernel covering a whole layer with ``H_r = 1`` is a
dense coupling). As in the dense case (:mod:`bayesnn.boltzmann.dense`),

.. math::

    W = S^{1/2} (D - A^T A) S^{1/2}, \\qquad D = \\operatorname{blockdiag}_j(A_{:,j}^T A_{:,j}),
    \\qquad s_j = \\min(1, (1 - m) / \\lVert D_j \\rVert_2),

so ``W`` is exactly symmetric and hollow and :math:`I - W \\succeq m I`. ``A^T`` is the exact
transpose of the convolution (``jax.linear_transpose`` of ``lax.conv_general_dilated``).

The ``k x k`` blocks :math:`D_j` follow from the kernel taps: variable ``j`` at pixel
``(y, x)``, group ``g`` is read by the taps ``(t, u)`` for which an output position
``o = (y + p - t) / s`` exists (integer, in range), so
:math:`D_j = \\sum_{(t, u)\\ \\text{valid}} K_{t u g} K_{t u g}^T` (``K_{tug}`` the
``states x C_r`` slice of the kernel). Near the border fewer taps are valid, so these blocks
are exact everywhere (needed for hollowness), not only in the interior.

Reference: Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023 (their
convolutional coupling ``MultiMonotoneHollowConv``, here with the symmetric column scaling
:math:`S^{1/2}` on both sides, which keeps ``W`` exactly symmetric, instead of their output-row
scaling).
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesnn.boltzmann._precision import einsum
from bayesnn.boltzmann.coupling import MDBMParams, color_classes, split_state
from samplers import gibbs

__all__ = ["ConvLayer", "ConvRow", "ConvMDBMSpec", "ConvCoupling", "conv_geometry"]


class ConvLayer(NamedTuple):
    """Image layer: ``height x width`` positions, ``groups`` variables of ``states`` states
    per position (``num_vars = height * width * groups``; variable order ``(y, x, group)``)."""

    height: int
    width: int
    groups: int
    states: int
    name: str = ""

    @property
    def num_vars(self):
        """Number of categorical variables."""
        return self.height * self.width * self.groups

    @property
    def num_states(self):
        """States per variable."""
        return self.states

    @property
    def channels(self):
        """Channels ``groups * states`` of the NHWC image."""
        return self.groups * self.states


class ConvRow(NamedTuple):
    """Row space ``(height, width, channels)`` reading layers by ``(layer_index, kernel)``."""

    channels: int
    height: int
    width: int
    reads: tuple


def conv_geometry(layer, row, kernel):
    """Stride and padding ``(s, lo, hi)`` (height, then width) of a read of ``layer`` by
    ``row`` with a ``kernel x kernel`` kernel: ``s = n_layer / n_row`` and the zero padding
    ``lo + hi = (n_row - 1) s + kernel - n_layer`` split evenly.

    Raises
    ------
    ValueError
        If the layer's size is not a multiple of the row's or the kernel is too small to
        produce the row's size.
    """
    out = []
    for n_in, n_out in ((layer.height, row.height), (layer.width, row.width)):
        if n_out < 1 or n_in % n_out:
            raise ValueError(
                f"row size {n_out} must divide the layer size {n_in} (stride = ratio)"
            )
        s = n_in // n_out
        total = (n_out - 1) * s + kernel - n_in
        if total < 0:
            raise ValueError(f"kernel {kernel} too small for stride {s} on size {n_in}")
        out.append((s, total // 2, total - total // 2))
    if out[0][0] != out[1][0]:
        raise ValueError("height and width strides of a read must agree")
    return out


def _valid_taps(n_in, n_out, kernel, s, lo):
    y = np.arange(n_in)[:, None]
    t = np.arange(kernel)[None, :]
    d = y + lo - t
    return ((d % s == 0) & (d >= 0) & (d // s < n_out)).astype(np.float32)


class ConvMDBMSpec(NamedTuple):
    """Static architecture of a convolutional monotone DBM (hashable).

    Attributes
    ----------
    layers : tuple of ConvLayer
        Layer 0 is visible, the last one the label (e.g. ``ConvLayer(1, 1, 1, 10)``).
    rows : tuple of ConvRow
        Layers read by the same row are coupled; each is also coupled with itself
        (lateral connections within a layer).
    """

    layers: tuple
    rows: tuple

    supports_norm_cap = False

    def validate(self):
        """Raise ``ValueError`` naming the row with bad channels, reads or geometry."""
        for r, row in enumerate(self.rows):
            if row.channels < 1 or not row.reads:
                raise ValueError(f"spec.rows[{r}] needs positive channels and reads")
            for lid, k in row.reads:
                if not 0 <= lid < len(self.layers):
                    raise ValueError(f"spec.rows[{r}] refers to missing layer {lid}")
                if int(k) < 1:
                    raise ValueError(f"spec.rows[{r}] kernel must be >= 1, got {k}")
                conv_geometry(self.layers[lid], row, k)

    def init_params(self, rng_key, scale=1.0):
        """Kernels ``N(0, scale^2 / fan_in)`` (``fan_in`` = taps x channels over a row's
        reads) and zero unary terms; one PRNG draw for all kernels."""
        self.validate()
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"scale must be positive and finite, got {scale}")
        shapes = [
            (k, k, self.layers[lid].channels, row.channels)
            for row in self.rows
            for lid, k in row.reads
        ]
        g = jax.random.normal(rng_key, (sum(math.prod(s) for s in shapes),))
        A, i = [], 0
        for row in self.rows:
            fan_in = sum(k * k * self.layers[lid].channels for lid, k in row.reads)
            kers = []
            for lid, k in row.reads:
                shape = (k, k, self.layers[lid].channels, row.channels)
                size = math.prod(shape)
                kers.append(scale / math.sqrt(fan_in) * g[i : i + size].reshape(shape))
                i += size
            A.append(tuple(kers))
        b = tuple(jnp.zeros((lay.num_vars, lay.num_states)) for lay in self.layers)
        return MDBMParams(tuple(A), b)

    def block_diagonals(self, A):
        """Exact blocks ``D[l][j] = A_{:,j}^T A_{:,j}`` of ``(n_l, k_l, k_l)`` from the
        kernel taps valid at each position (see the module docstring)."""
        D = [jnp.zeros((lay.num_vars, lay.states, lay.states)) for lay in self.layers]
        for row, kers in zip(self.rows, A, strict=True):
            for (lid, k), K in zip(row.reads, kers, strict=True):
                lay = self.layers[lid]
                (s, lo, _), (_, lo_x, _) = conv_geometry(lay, row, k)
                vy = jnp.asarray(_valid_taps(lay.height, row.height, k, s, lo))
                vx = jnp.asarray(_valid_taps(lay.width, row.width, k, s, lo_x))
                Kg = K.reshape(k, k, lay.groups, lay.states, row.channels)
                d = einsum("yt,xu,tugkc,tugjc->yxgkj", vy, vx, Kg, Kg)
                D[lid] = D[lid] + d.reshape(lay.num_vars, lay.states, lay.states)
        return tuple(D)

    def cap_rows(self, A, max_norm):
        """Not available: the row-norm cap needs the rows' Gram matrices (dense specs)."""
        raise ValueError("max_norm is only supported for dense MDBMSpec couplings")

    def make_coupling(self, A, b, D, sqrt_scale=None):
        """:class:`ConvCoupling` keeping the raw kernels and the column scales apart."""
        if sqrt_scale is None:
            sqrt_scale = tuple(jnp.ones(d.shape[0]) for d in D)
        return ConvCoupling(tuple(A), tuple(b), tuple(D), tuple(sqrt_scale))


def _conv(x, K, geom):
    (s, lo, hi), (_, lo_x, hi_x) = geom
    return jax.lax.conv_general_dilated(
        x,
        K,
        (s, s),
        [(lo, hi), (lo_x, hi_x)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )


class ConvCoupling(NamedTuple):
    """Effective convolutional weights: kernels ``A[r][i]`` (HWIO), unary ``b[l]``
    ``(n_l, k_l)``, scaled blocks ``D[l]`` ``(n_l, k_l, k_l)`` and per-variable column scales
    ``sqrt_scale[l]`` ``(n_l,)``: ``W = S^{1/2} (D_0 - A^T A) S^{1/2}``, ``D = S D_0``."""

    A: tuple
    b: tuple
    D: tuple
    sqrt_scale: tuple

    has_resolvent = False

    def matvec(self, spec, q):
        """``W q = D q - S^{1/2} A^T A S^{1/2} q`` for a batch of states ``(batch, n_l,
        k_l)``; ``A^T`` by ``jax.linear_transpose`` of the convolution."""
        out = [einsum("nkj,bnj->bnk", d, x) for d, x in zip(self.D, q, strict=True)]
        imgs = []
        for lay, x, sq in zip(spec.layers, q, self.sqrt_scale, strict=True):
            xs = x * sq[None, :, None]
            imgs.append(xs.reshape(x.shape[0], lay.height, lay.width, lay.channels))
        for row, kers in zip(spec.rows, self.A, strict=True):
            geoms = [conv_geometry(spec.layers[lid], row, k) for lid, k in row.reads]
            h = sum(
                _conv(imgs[lid], K, g)
                for (lid, _), K, g in zip(row.reads, kers, geoms, strict=True)
            )
            for (lid, _), K, g in zip(row.reads, kers, geoms, strict=True):
                x = imgs[lid]
                (back,) = jax.linear_transpose(
                    lambda v, K=K, g=g: _conv(v, K, g), jax.ShapeDtypeStruct(x.shape, x.dtype)
                )(h)
                lay = spec.layers[lid]
                back = back.reshape(x.shape[0], lay.num_vars, lay.states)
                out[lid] = out[lid] - back * self.sqrt_scale[lid][None, :, None]
        return tuple(out)

    def solver_field(self, spec):
        """The exact field ``q -> W q + b``."""

        def fn(q):
            return tuple(w + b[None] for w, b in zip(self.matvec(spec, q), self.b, strict=True))

        return fn

    def dense_matrix(self, spec):
        """Explicit symmetric ``W`` from ``N`` matvecs with the unit vectors."""
        n = sum(lay.num_vars * lay.num_states for lay in spec.layers)
        q = split_state(jnp.eye(n), spec)
        W = jnp.concatenate([x.reshape(n, -1) for x in self.matvec(spec, q)], 1)
        return 0.5 * (W + W.T)

    def exact_block_diagonals(self, spec):
        """``S blockdiag(A^T A)`` recomputed from the raw kernels and the scales."""
        return tuple(
            d * jnp.square(s)[:, None, None]
            for d, s in zip(spec.block_diagonals(self.A), self.sqrt_scale, strict=True)
        )

    def resolvent(self, spec, alpha):
        """Not available: a convolutional ``W`` has no cheap Woodbury form."""
        raise ValueError("pr_resolvent needs a dense MDBMSpec (no Woodbury form for convs)")

    def interaction_graph(self, spec, chunk=128):
        """Interaction graph from the conv structure alone (never materialises ``W``).

        With all-ones kernels, ``(A^T A) e_P`` for the indicator ``e_P`` of every state at
        one position ``P`` is non-zero exactly on the variables that share a row-space
        output with some variable at ``P``: a superset of each of those variables'
        neighbours (one probe per position, ``chunk`` probes per matvec), so it scales to
        the paper's 27,450-state architecture.
        """
        with jax.ensure_compile_time_eval():  # concrete even inside a traced sample()
            return _structural_neighbours(spec, chunk)

    def gibbs_kernel(self, spec):
        """Chromatic block Gibbs sweep (Gonzalez et al., AISTATS 2011).

        The variables are coloured (:func:`bayesnn.boltzmann.coupling.color_classes`) so
        that no two variables of one colour interact; given the others, the variables of
        one colour are conditionally independent with conditionals
        :math:`\\operatorname{softmax}(\\beta (W z + b)_j)` (``W`` is hollow), so a colour
        is resampled at once from one convolutional matvec and a sweep costs one matvec per
        colour.

        Returns
        -------
        kernel : callable
            ``(rng_key, GibbsState, beta=1.0) -> (GibbsState, GibbsInfo)`` for one chain.
        init_fn : callable
            ``(units, clamp) -> GibbsState`` (no cache).
        """
        colors, num_colors = color_classes(self, spec)

        def kernel(rng_key, state, beta=1.0):
            def one(c, carry):
                units, key, changed = carry
                key, sub = jax.random.split(key)
                wz = self.matvec(spec, tuple(u[None] for u in units))
                keys = jax.random.split(sub, len(units))
                new = []
                for k, u, w, b, cl, col in zip(
                    keys, units, wz, self.b, state.clamp, colors, strict=True
                ):
                    draw = jax.random.categorical(k, beta * (w[0] + b), axis=-1)
                    upd = (col == c) & ~cl
                    nu = jnp.where(
                        upd[:, None], jax.nn.one_hot(draw, u.shape[-1], dtype=u.dtype), u
                    )
                    changed = changed + jnp.sum(jnp.any(nu != u, axis=-1))
                    new.append(nu)
                return tuple(new), key, changed

            init = (state.units, rng_key, jnp.array(0, jnp.int32))
            units, _, changed = jax.lax.fori_loop(0, num_colors, one, init)
            return gibbs.GibbsState(units, state.clamp, state.cache), gibbs.GibbsInfo(changed)

        return kernel, lambda units, clamp: gibbs.init(units, clamp)


def _structural_neighbours(spec, chunk):
    lays = spec.layers
    ones = ConvCoupling(
        tuple(
            tuple(jnp.ones((k, k, lays[lid].channels, row.channels)) for lid, k in row.reads)
            for row in spec.rows
        ),
        None,
        tuple(jnp.zeros((lay.num_vars, lay.states, lay.states)) for lay in lays),
        tuple(jnp.ones(lay.num_vars) for lay in lays),
    )
    npos = [lay.height * lay.width for lay in lays]
    var_off = np.cumsum([0] + [lay.num_vars for lay in lays])
    pos_off = np.cumsum([0] + npos)
    matvec = jax.jit(lambda q: ones.matvec(spec, q))
    support = []
    for start in range(0, pos_off[-1], chunk):
        probes = np.arange(start, min(start + chunk, pos_off[-1]))
        q = []
        for lid, lay in enumerate(lays):
            x = np.zeros((chunk, lay.height * lay.width, lay.groups * lay.states), np.float32)
            mine = (probes >= pos_off[lid]) & (probes < pos_off[lid + 1])
            x[np.flatnonzero(mine), probes[mine] - pos_off[lid]] = 1.0
            q.append(jnp.asarray(x.reshape(chunk, lay.num_vars, lay.states)))
        out = matvec(tuple(q))
        hit = np.concatenate([np.any(np.asarray(o) != 0, axis=-1) for o in out], axis=1)
        support.extend(np.flatnonzero(h) for h in hit[: len(probes)])
    pos_of = np.concatenate(
        [pos_off[lid] + np.arange(lay.num_vars) // lay.groups for lid, lay in enumerate(lays)]
    )

    def neighbours(v):
        nb = support[pos_of[v]]
        return nb[nb != v]

    return neighbours, int(var_off[-1])
