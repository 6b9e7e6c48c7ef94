"""Linear response at a mean-field fixed point, and the covariance bound of monotone DBMs.

At a fixed point :math:`q = \\sigma(W q + b)` (blockwise softmax, observed variables clamped)
the response of the free marginals to the unary terms is

.. math::

    \\chi = \\frac{\\partial q}{\\partial b} = (I - \\Gamma W)^{-1} \\Gamma,
    \\qquad \\Gamma = \\operatorname{blockdiag}_i(\\operatorname{diag} q_i - q_i q_i^T),

with :math:`\\Gamma_i = 0` for clamped variables. :math:`\\chi` is symmetric, and it is the
linear-response (mean-field) estimate of :math:`\\operatorname{Cov}(z)` in one-hot
coordinates (Kappen and Rodriguez, Neural Computation 1998).

**Bound** (ours; follows from the monotone parameterisation). A one-hot covariance has
eigenvalues :math:`\\le 1/2` (for a unit vector :math:`u`,
:math:`\\operatorname{Var}(u_X) \\le (\\max u - \\min u)^2 / 4 \\le 1/2`), so
:math:`\\Gamma^{-1} \\succeq 2 I` on the range of :math:`\\Gamma`. With
:math:`W \\preceq (1 - m) I`,

.. math::

    \\chi = \\Gamma^{1/2} (I - \\Gamma^{1/2} W \\Gamma^{1/2})^{-1} \\Gamma^{1/2}
    \\preceq \\frac{1}{1 + m} I

for every weight setting, fixed point and clamping. A monotone DBM's mean-field estimate of
the covariance has no direction with variance above :math:`1/(1+m)`, while one independent
binary unit already has up to :math:`1/2` and binned images have strongly correlated pixels
(Fashion-MNIST's one-hot pixel covariance has top eigenvalues in the tens): the monotone
constraint keeps the model in a weak-coupling regime, which is what makes the fixed point
unique and what limits completion.
"""

import jax
import jax.numpy as jnp

from bayesnn.boltzmann._precision import matmul
from bayesnn.boltzmann.coupling import layer_block_diag

__all__ = ["linear_response"]


def linear_response(coupling, spec, q, free=None):
    """Linear-response matrix :math:`\\chi = (I - \\Gamma W)^{-1} \\Gamma` of one example.

    Materialises ``W`` (``N x N``): small and moderate models only.

    Parameters
    ----------
    coupling : Coupling or ConvCoupling
    spec : MDBMSpec or ConvMDBMSpec
    q : tuple of arrays ``(n_l, k_l)``
        Mean-field fixed point of one example (e.g. ``infer(...)[0]`` sliced at one row).
    free : tuple of bool arrays ``(n_l,)``, optional
        Which variables are free; clamped ones get :math:`\\Gamma_i = 0` (they do not
        respond). Default: all free.

    Returns
    -------
    chi : array ``(N, N)``
        Symmetric; rows and columns in the order of the flattened state (layer by layer,
        variable by variable, state by state); zero for clamped variables. Under the
        monotone parameterisation its eigenvalues lie in :math:`[0, 1/(1+m)]`.

    References
    ----------
    Kappen and Rodriguez, "Efficient learning in Boltzmann machines using linear response
    theory", Neural Computation 1998; Feng, Winston and Kolter, "Monotone deep Boltzmann
    machines", TMLR 2023 (the bound above is ours).
    """
    if len(q) != len(spec.layers):
        raise ValueError(f"q must have one array per layer ({len(spec.layers)}), got {len(q)}")
    if free is None:
        free = tuple(jnp.ones(lay.num_vars, bool) for lay in spec.layers)
    blocks = []
    for lay, ql, fl in zip(spec.layers, q, free, strict=True):
        ql = jnp.asarray(ql)
        if ql.shape != (lay.num_vars, lay.num_states):
            raise ValueError(
                f"q for layer {lay.name or lay} must have shape "
                f"({lay.num_vars}, {lay.num_states}), got {ql.shape}"
            )
        if jnp.shape(fl) != (lay.num_vars,):
            raise ValueError(f"free for layer {lay.name or lay} must have shape ({lay.num_vars},)")
        g = ql[:, :, None] * (jnp.eye(lay.num_states)[None] - ql[:, None])  # diag q - q q^T
        blocks.append(layer_block_diag(g * jnp.asarray(fl, ql.dtype)[:, None, None]))
    G = jax.scipy.linalg.block_diag(*blocks)
    W = coupling.dense_matrix(spec).astype(G.dtype)
    chi = jnp.linalg.solve(jnp.eye(len(G), dtype=G.dtype) - matmul(G, W), G)
    return 0.5 * (chi + chi.T)
