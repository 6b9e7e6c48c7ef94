"""Predictives of gradient-descent-trained wide networks with a random readout scale.

A wide network whose readout weights have variance ``sigma^2 x (usual)``, ``sigma^2 ~ H``
drawn once per network, trained by gradient flow on the MSE to convergence (Lee et al.,
"Scale Mixtures of NNGPs", ICLR 2022; Lee et al. 2019 for the fixed-scale case). With
``Kbar``, ``Thetabar`` the NNGP and NTK at unit readout scale, given ``sigma^2``:

* readout only (NNGP regime): ``f ~ GP(Kbar_xX Kbar^-1 y, sigma^2 Sigma_NNGP)``;
* all layers (NTK regime): ``f ~ GP(Thetabar_xX Thetabar^-1 y, sigma^2 Sigma_NTK)`` with

.. math::

    \\Sigma_{NTK} = K_{xx} + \\Theta_{xX}\\Theta^{-1} K_{XX} \\Theta^{-1}\\Theta_{Xx}
    - (\\Theta_{xX}\\Theta^{-1} K_{Xx} + K_{xX}\\Theta^{-1}\\Theta_{Xx}).

Under ``sigma^2 ~ IG(alpha, beta)`` the ensemble is Student-t with ``2 alpha`` degrees of
freedom and scale ``(beta/alpha) Sigma`` (GD does not reweight ``sigma^2``). The
``posterior=True`` variant draws ``sigma^2`` from ``IG(alpha + nC/2, beta + q/2)`` instead
(``q = y^T Kbar^-1 y``), which turns the NNGP ensemble into the t-process posterior.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from bayesnn._linalg import regularised_cholesky
from bayesnn.nngp._common import (
    as_2d_targets,
    check_matrix,
    check_test_diag,
    positive,
    scaled_sd,
    to_default_float,
)
from bayesnn.nngp.gp import fit as fit_gp

__all__ = ["moments", "predict"]


def moments(
    k_train,
    k_test_train,
    k_test_diag,
    y,
    mode="nngp",
    ntk_train=None,
    ntk_test_train=None,
    eta=1e-6,
):
    """Mean and per-point variance (at unit ``sigma^2``) of the infinitely-trained ensemble.

    Parameters
    ----------
    k_train, k_test_train, k_test_diag
        NNGP ``Kbar(X, X)`` ``(n, n)``, ``Kbar(x*, X)`` ``(m, n)``, ``Kbar(x*, x*)`` ``(m,)``.
    y
        ``(n,)`` or ``(n, C)`` targets.
    mode
        ``"nngp"`` (readout-only training) or ``"ntk"`` (all layers; needs the NTK matrices).
    ntk_train, ntk_test_train
        ``Thetabar(X, X)`` and ``Thetabar(x*, X)``.
    eta
        Absolute diagonal regularisation of the matrix being inverted.

    Returns
    -------
    tuple
        ``(mean (m, C), var (m,))``, solved in float64, returned in the default dtype.
    """
    if mode not in ("nngp", "ntk"):
        raise ValueError(f"mode must be 'nngp' or 'ntk', got {mode!r}")
    eta = positive("eta", eta)
    with jax.enable_x64(True):
        K = check_matrix("k_train", k_train, square=True).astype(jnp.float64)
        n = K.shape[0]
        y = as_2d_targets(y, n).astype(jnp.float64)
        kxX = check_matrix("k_test_train", k_test_train).astype(jnp.float64)
        kxx = check_test_diag(k_test_diag, kxX.shape[0])
        if mode == "nngp":
            L = regularised_cholesky(K, eta, "k_train")
            mean, var = _nngp_moments(L, y, kxX, kxx)
        else:
            if ntk_train is None or ntk_test_train is None:
                raise ValueError("mode='ntk' needs ntk_train and ntk_test_train")
            T = check_matrix("ntk_train", ntk_train, square=True).astype(jnp.float64)
            txX = check_matrix("ntk_test_train", ntk_test_train).astype(jnp.float64)
            L = regularised_cholesky(T, eta, "ntk_train")
            mean, var = _ntk_moments(L, K, y, kxX, kxx, txX)
    return to_default_float(mean, var)


@jax.jit
def _nngp_moments(L, y, kxX, kxx):
    mean = kxX @ jax.scipy.linalg.cho_solve((L, True), y)
    v = jax.scipy.linalg.solve_triangular(L, kxX.T, lower=True)
    return mean, jnp.maximum(kxx - jnp.sum(v * v, axis=0), 0.0)


@jax.jit
def _ntk_moments(L, K, y, kxX, kxx, txX):
    A = jax.scipy.linalg.cho_solve((L, True), txX.T).T  # Theta_xX Theta^-1
    var = kxx + jnp.sum((A @ K) * A, axis=1) - 2.0 * jnp.sum(A * kxX, axis=1)
    return A @ y, jnp.maximum(var, 0.0)


def predict(
    k_train,
    k_test_train,
    k_test_diag,
    y,
    alpha,
    beta,
    mode="nngp",
    ntk_train=None,
    ntk_test_train=None,
    eta=1e-6,
    posterior=False,
) -> dist.StudentT:
    """Student-t marginal predictive of a GD-trained wide ensemble with ``IG`` readout scale.

    .. math:: f(x_*) \\sim t_{2\\alpha}(\\mu, (\\beta/\\alpha)\\, \\Sigma)

    with ``(mu, Sigma)`` from :func:`moments`; ``posterior=True`` uses
    ``(alpha + nC/2, beta + q/2)``.

    Returns
    -------
    numpyro.distributions.StudentT
        Batch shape ``(m, C)`` (latent ``f``: no observation noise).
    """
    alpha, beta = positive("alpha", alpha), positive("beta", beta)
    mean, var = moments(
        k_train, k_test_train, k_test_diag, y, mode, ntk_train, ntk_test_train, eta
    )
    with jax.enable_x64(True):
        mean, var = jnp.asarray(mean, jnp.float64), jnp.asarray(var, jnp.float64)
        a, b = jnp.asarray(alpha, jnp.float64), jnp.asarray(beta, jnp.float64)
        if posterior:
            gp = fit_gp(k_train, y, eta)
            a, b = a + 0.5 * gp.n * gp.n_out, b + 0.5 * gp.quad
        sd = scaled_sd(var, 0.0, b / a, mean.shape[1])
        df = 2.0 * a
    return dist.StudentT(*to_default_float(df, mean, sd))
