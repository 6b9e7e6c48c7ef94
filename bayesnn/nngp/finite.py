"""Finite width meets infinite width: a BNN with an inverse-gamma readout variance.

The finite counterpart of the scale mixture of NNGPs (Lee, Yun, Yang, Lee, ICLR 2022): a
network ``serial(Dense, act, ..., Dense(C, W_std=1, b_std=None))`` (or a convolutional one,
``serial(Conv, act, ..., Flatten(), Dense(C, W_std=1, b_std=None))``) in the ``"ntk"``
parameterisation with raw weights ``N(0, 1)`` in the hidden layers and readout weights
``N(0, sigma^2)``, ``sigma^2 ~ IG(alpha, beta)``
(:func:`bayesnn.priors.last_layer_scale_mixture`), and Gaussian observation noise of fixed
variance ``s^2``. As the hidden widths grow, given ``sigma^2`` the prior over functions
tends to ``GP(0, sigma^2 Kbar)`` with ``Kbar`` the NNGP kernel at unit readout scale, so the
posterior predictive tends to the one-dimensional mixture

.. math::

    p(f_* \\mid y) = \\int N(f_*; \\mu_{\\sigma^2}, v_{\\sigma^2})\\,
    p(\\sigma^2 \\mid y)\\, d\\sigma^2, \\qquad
    p(\\sigma^2 \\mid y) \\propto \\mathrm{IG}(\\sigma^2; \\alpha, \\beta)\\,
    N(y; 0, \\sigma^2 \\bar K + s^2 I),

with the GP predictive ``mu, v`` at scale ``sigma^2``. (The paper's closed-form Student-t
process needs the noise to scale with ``sigma^2`` too, ``s^2 = sigma^2 eta``; with fixed
noise the mixture above is the exact limit, computed here by quadrature in
``log sigma^2`` after one eigendecomposition of ``Kbar``.)

:func:`sample_predictive` draws the finite network's posterior with SGHMC and the exact Gibbs
step for ``sigma^2`` (:mod:`samplers.sgmcmc`); :func:`fixed_noise_mixture_moments` gives the
infinite-width answer to compare with.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesnn import likelihoods, priors
from bayesnn.model import BayesianNeuralNet
from bayesnn.nngp._common import positive

__all__ = [
    "FinitePredictive",
    "scale_mixture_bnn",
    "sample_predictive",
    "fixed_noise_mixture_moments",
]


def scale_mixture_bnn(architecture, input_shape, alpha, beta, noise_std) -> BayesianNeuralNet:
    """The finite BNN whose infinite-width limit is the scale mixture of NNGPs.

    Parameters
    ----------
    architecture
        ``bayesnn.nn.stax`` network whose readout is ``Dense(C, W_std=1, b_std=None)`` (the
        random scale multiplies the readout weights only, as in the paper).
    input_shape
        Shape of one input.
    alpha, beta
        Inverse-gamma prior ``sigma^2 ~ IG(alpha, beta)`` on the readout variance; raw
        hidden-layer parameters are ``N(0, 1)`` so the layers' ``W_std``/``b_std`` set the
        kernel exactly as in :func:`bayesnn.nn.kernels.kernel_fn`.
    noise_std
        Fixed observation noise standard deviation ``s``.

    Returns
    -------
    bayesnn.model.BayesianNeuralNet
    """
    positive("alpha", alpha)
    positive("beta", beta)
    positive("noise_std", noise_std)
    model = BayesianNeuralNet.create(
        architecture,
        input_shape,
        lambda t: priors.last_layer_scale_mixture(t, alpha, beta, fixed_scale=1.0),
        likelihoods.Gaussian(float(noise_std)),
    )
    last = model.prior.template.layer_names()[-1]
    if set(model.prior.concentration[last]) != {"W"}:
        raise ValueError(
            "architecture: the readout must have no bias (Dense(C, W_std=1.0, b_std=None)); "
            "the scale mixture puts the random scale on the readout weights only"
        )
    return model


class FinitePredictive(NamedTuple):
    """Posterior draws of the finite network at the test inputs.

    Attributes
    ----------
    f
        ``(num_chains, num_samples, m, C)`` network outputs ``f(x*)``.
    sigma2
        ``(num_chains, num_samples)`` readout variances from the Gibbs block.
    """

    f: jax.Array
    sigma2: jax.Array


def sample_predictive(
    model: BayesianNeuralNet,
    rng_key,
    x,
    y,
    x_test,
    *,
    num_chains: int = 16,
    num_samples: int = 100,
    thinning: int = 50,
    num_burnin: int = 2000,
    step_size: float = 0.02,
    friction: float = 1.0,
    batch_size: int | None = None,
) -> FinitePredictive:
    """SGHMC + Gibbs(``sigma^2``) draws of ``f(x_test)`` for :func:`scale_mixture_bnn` models.

    Chains start from independent prior draws (``sigma^2`` first, then the weights). Each
    step is an SGHMC move of all weights (:func:`samplers.sgmcmc.sghmc`, full batch by
    default) followed by the exact conditional
    ``sigma^2 | W ~ IG(alpha + n_W/2, beta + ||W||^2/2)``.

    Parameters
    ----------
    model
        From :func:`scale_mixture_bnn`.
    rng_key
        PRNG key.
    x, y
        Training data: inputs ``(n, *input_shape)`` (``(n, d)`` vectors or ``(n, H, W, C)``
        NHWC images) and targets ``(n, C)``.
    x_test
        ``(m, *input_shape)`` test inputs.
    num_chains, num_samples, thinning, num_burnin
        Sampler lengths (see :func:`samplers.sgmcmc.sample`).
    step_size, friction
        SGHMC step size ``h`` and friction ``alpha``; ``h sqrt(k) << 1`` for the largest
        curvature ``k ~ n lambda_max(Kbar) E[sigma^2] / s^2`` keeps the discretisation bias
        small.
    batch_size
        Minibatch size (default: all ``n`` points, i.e. no gradient noise).

    Returns
    -------
    FinitePredictive
    """
    from samplers import sgmcmc

    y = jnp.asarray(y, jnp.float32)
    if y.ndim == 1:
        y = y[:, None]
    x, y = model.check_data(x, y)
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    x_test = jnp.asarray(model.check_data(x_test, name_x="x_test")[0], jnp.float32)
    init_key, run_key = jax.random.split(rng_key)

    def prior_draw(key):
        kv, kp = jax.random.split(key)
        v = model.prior.sample_variances(kv)
        return {"net": model.prior.sample(kp, v), "likelihood": {}}, v

    positions, variances = jax.vmap(prior_draw)(jax.random.split(init_key, num_chains))
    result = sgmcmc.sample(
        run_key,
        sgmcmc.sghmc(alpha=friction),
        model.logdensity,
        (x, y),
        positions,
        num_samples=num_samples,
        batch_size=x.shape[0] if batch_size is None else batch_size,
        step_size=step_size,
        num_burnin=num_burnin,
        thinning=thinning,
        gibbs_fn=model.gibbs,
        init_gibbs_state=variances,
        progress_bar=False,
        shard=False,
    )
    f = jax.jit(jax.vmap(jax.vmap(model.predict, (0, None)), (0, None)))(result.positions, x_test)
    last = model.prior.template.layer_names()[-1]
    return FinitePredictive(f, result.gibbs_states[last]["W"])


def _float64_matrix(name, k, square=False):
    """``k`` as a finite float64 NumPy matrix (the errors of ``nngp._common.check_matrix``)."""
    k = np.asarray(k, np.float64)
    if k.ndim != 2 or (square and k.shape[0] != k.shape[1]):
        kind = "square 2-D" if square else "2-D"
        raise ValueError(f"{name} must be a {kind} matrix, got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"{name} contains NaN or inf")
    return k


def fixed_noise_mixture_moments(
    k_train,
    k_test_train,
    k_test_diag,
    y,
    alpha: float,
    beta: float,
    noise_var: float,
    num_grid: int = 4001,
):
    """Predictive mean and sd of ``f(x*)`` under ``sigma^2 ~ IG`` with fixed noise (exact).

    .. math::

        \\mu_{\\sigma^2} = \\sigma^2 \\bar K_{*X} (\\sigma^2 \\bar K + s^2 I)^{-1} y, \\qquad
        v_{\\sigma^2} = \\sigma^2 \\bar k_{**}
        - \\sigma^4 \\bar K_{*X} (\\sigma^2 \\bar K + s^2 I)^{-1} \\bar K_{X*},

    mixed over ``p(sigma^2 | y)`` by quadrature on a grid in ``log sigma^2`` (one
    eigendecomposition ``Kbar = U diag(lambda) U^T`` makes each grid point O(n m)).
    Multi-output ``y`` shares ``sigma^2``. Computed in float64.

    Parameters
    ----------
    k_train, k_test_train, k_test_diag
        ``Kbar(X, X)``, ``Kbar(x*, X)``, ``Kbar(x*, x*)`` at unit readout scale.
    y
        ``(n,)`` or ``(n, C)`` targets.
    alpha, beta
        Inverse-gamma prior on ``sigma^2``.
    noise_var
        Observation noise variance ``s^2``.
    num_grid
        Quadrature points in ``log sigma^2`` (covering the posterior +- 15 sd).

    Returns
    -------
    tuple
        ``(mean (m, C), sd (m, C), sigma2_mean)``: moments of the latent ``f(x*)`` (add
        ``noise_var`` to the variance for ``y*``) and ``E[sigma^2 | y]``.
    """
    alpha, beta = positive("alpha", alpha), positive("beta", beta)
    noise_var = positive("noise_var", noise_var)
    # NumPy throughout: a float64 kernel passed outside jax.enable_x64 keeps its precision
    # (jnp.asarray would truncate it to float32).
    K = _float64_matrix("k_train", k_train, square=True)
    Y = np.asarray(y, np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    if Y.ndim != 2 or Y.shape[0] != K.shape[0]:
        raise ValueError(f"y must have shape ({K.shape[0]},) or ({K.shape[0]}, C), got {Y.shape}")
    kx = _float64_matrix("k_test_train", k_test_train)
    kd = np.asarray(k_test_diag, np.float64)
    n, c = Y.shape
    lam, U = np.linalg.eigh(0.5 * (K + K.T))
    lam = np.maximum(lam, 0.0)
    uy = U.T @ Y  # (n, C)
    ux = kx @ U  # (m, n)

    def log_post(t):  # log p(t = log sigma^2 | y) up to a constant
        s2 = np.exp(t)[:, None]
        d = s2 * lam[None, :] + noise_var
        ll = -0.5 * c * np.sum(np.log(d), 1) - 0.5 * np.sum(uy.T[None] ** 2 / d[:, None], (1, 2))
        return ll - alpha * t - beta / s2[:, 0]  # IG density times the Jacobian sigma^2

    grid = np.linspace(-30.0, 30.0, 6001)
    for size in (2001, num_grid):  # zoom in twice on the posterior of log sigma^2
        lp = log_post(grid)
        w = np.exp(lp - lp.max())
        w /= w.sum()
        m_t = np.sum(w * grid)
        half = max(15.0 * np.sqrt(np.sum(w * (grid - m_t) ** 2)), 2.0 * (grid[1] - grid[0]))
        grid = np.linspace(m_t - half, m_t + half, size)
    lp = log_post(grid)
    w = np.exp(lp - lp.max())
    w /= w.sum()
    s2 = np.exp(grid)
    d = s2[:, None] * lam[None, :] + noise_var  # (G, n)
    mean_g = s2[:, None, None] * np.einsum("mn,gn,nc->gmc", ux, 1.0 / d, uy)
    var_g = s2[:, None] * kd[None, :] - s2[:, None] ** 2 * np.einsum("mn,gn->gm", ux**2, 1.0 / d)
    mean = np.einsum("g,gmc->mc", w, mean_g)
    second = np.einsum("g,gm->m", w, np.maximum(var_g, 0.0))[:, None] + np.einsum(
        "g,gmc->mc", w, mean_g**2
    )
    return mean, np.sqrt(np.maximum(second - mean**2, 0.0)), float(np.sum(w * s2))
