"""Convolutional monotone couplings: ``W = D - A^T A`` with ``A`` a block of convolutions.

Layers are images of ``height x width`` positions, each holding ``groups`` categorical
variables of ``states`` states (``groups * states`` channels, NHWC). A row block ``r`` is a
``(height_r, width_r, channels_r)`` "row space"; it reads layer ``l`` with a convolution
:math:`A_{rl}` of kernel ``(k, k, C_l, C_r)``, stride ``s = H_l / H_r`` and zero padding chosen
so that the output has the row's size (a kernel covering a whole layer with ``H_r = 1`` is a
dense coupling). As in the dense case (:mod:`bayesnn.boltzmann.parameterization`),

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
``MultiMonotoneHollowConv``, with symmetric scaling instead of row scaling).
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesnn.boltzmann._precision import einsum as _einsum

__all__ = [
    "ConvLayer",
    "ConvRow",
    "ConvMDBMSpec",
    "ConvCoupling",
    "conv_geometry",
    "init_conv_params",
    "conv_block_diagonals",
    "conv_matvec",
]


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


class ConvCoupling(NamedTuple):
    """Effective convolutional weights: kernels ``A[r][i]`` (HWIO), unary ``b[l]``
    ``(n_l, k_l)``, scaled blocks ``D[l]`` ``(n_l, k_l, k_l)`` and per-variable column scales
    ``sqrt_scale[l]`` ``(n_l,)``: ``W = S^{1/2} (D_0 - A^T A) S^{1/2}``, ``D = S D_0``."""

    A: tuple
    b: tuple
    D: tuple
    sqrt_scale: tuple


def conv_geometry(layer, row, kernel):
    """Stride and padding ``(s, lo, hi)`` of a read of ``layer`` by ``row`` with ``kernel``.

    Raises
    ------
    ValueError
        If the layer's size is not a multiple of the row's or the kernel is too small to
        produce the row's size.

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
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


def _validate(spec):
    if not isinstance(spec, ConvMDBMSpec):
        raise ValueError("spec must be a ConvMDBMSpec")
    for r, row in enumerate(spec.rows):
        if row.channels < 1 or not row.reads:
            raise ValueError(f"spec.rows[{r}] needs positive channels and reads")
        for lid, k in row.reads:
            if not 0 <= lid < len(spec.layers):
                raise ValueError(f"spec.rows[{r}] refers to missing layer {lid}")
            if int(k) < 1:
                raise ValueError(f"spec.rows[{r}] kernel must be >= 1, got {k}")
            conv_geometry(spec.layers[lid], row, k)


def init_conv_params(rng_key, spec, scale=1.0):
    """Kernels ``N(0, scale^2 / fan_in)`` (``fan_in`` = taps x channels over a row's reads)
    and zero unary terms, as ``MDBMParams``-like ``(A, b)``.

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    from bayesnn.boltzmann.parameterization import MDBMParams

    _validate(spec)
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be positive and finite, got {scale}")
    shapes = [
        (k, k, spec.layers[lid].channels, row.channels)
        for row in spec.rows
        for lid, k in row.reads
    ]
    g = jax.random.normal(rng_key, (sum(math.prod(s) for s in shapes),))
    A, i = [], 0
    for row in spec.rows:
        fan_in = sum(k * k * spec.layers[lid].channels for lid, k in row.reads)
        kers = []
        for lid, k in row.reads:
            shape = (k, k, spec.layers[lid].channels, row.channels)
            size = math.prod(shape)
            kers.append(scale / math.sqrt(fan_in) * g[i : i + size].reshape(shape))
            i += size
        A.append(tuple(kers))
    b = tuple(jnp.zeros((lay.num_vars, lay.num_states)) for lay in spec.layers)
    return MDBMParams(tuple(A), b)


def _valid_taps(n_in, n_out, kernel, s, lo):
    y = np.arange(n_in)[:, None]
    t = np.arange(kernel)[None, :]
    d = y + lo - t
    return ((d % s == 0) & (d >= 0) & (d // s < n_out)).astype(np.float32)


def conv_block_diagonals(spec, A):
    """Exact blocks ``D[l][j] = A_{:,j}^T A_{:,j}`` of ``(n_l, k_l, k_l)`` from kernel taps.

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    D = [jnp.zeros((lay.num_vars, lay.states, lay.states)) for lay in spec.layers]
    for row, kers in zip(spec.rows, A, strict=True):
        for (lid, k), K in zip(row.reads, kers, strict=True):
            lay = spec.layers[lid]
            (s, lo, _), (_, lo_x, _) = conv_geometry(lay, row, k)
            vy = jnp.asarray(_valid_taps(lay.height, row.height, k, s, lo))
            vx = jnp.asarray(_valid_taps(lay.width, row.width, k, s, lo_x))
            Kg = K.reshape(k, k, lay.groups, lay.states, row.channels)
            d = _einsum("yt,xu,tugkc,tugjc->yxgkj", vy, vx, Kg, Kg)
            D[lid] = D[lid] + d.reshape(lay.num_vars, lay.states, lay.states)
    return tuple(D)


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


def conv_matvec(coupling, spec, q):
    """``W q`` for a batch of states ``q[l]`` of shape ``(batch, n_l, k_l)``.

    .. math:: W q = D q - S^{1/2} A^T A S^{1/2} q

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    out = [_einsum("nkj,bnj->bnk", d, x) for d, x in zip(coupling.D, q, strict=True)]
    imgs = []
    for lay, x, sq in zip(spec.layers, q, coupling.sqrt_scale, strict=True):
        xs = x * sq[None, :, None]
        imgs.append(xs.reshape(x.shape[0], lay.height, lay.width, lay.channels))
    for row, kers in zip(spec.rows, coupling.A, strict=True):
        geoms = [conv_geometry(spec.layers[lid], row, k) for lid, k in row.reads]
        h = sum(
            _conv(imgs[lid], K, g) for (lid, _), K, g in zip(row.reads, kers, geoms, strict=True)
        )
        for (lid, _), K, g in zip(row.reads, kers, geoms, strict=True):
            x = imgs[lid]
            (back,) = jax.linear_transpose(
                lambda v, K=K, g=g: _conv(v, K, g), jax.ShapeDtypeStruct(x.shape, x.dtype)
            )(h)
            lay = spec.layers[lid]
            back = back.reshape(x.shape[0], lay.num_vars, lay.states)
            out[lid] = out[lid] - back * coupling.sqrt_scale[lid][None, :, None]
    return tuple(out)
