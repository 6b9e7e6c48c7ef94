"""Posterior sampling with a (tuned) functional prior: adaptive SGHMC, function-space R-hat.

Tran, Rossi, Milios & Filippone, "All You Need is a Good Functional Prior for Bayesian Deep
Learning", JMLR 2022, section on posterior inference. With the prior ``p(theta)`` returned by
:func:`~bayesnn.functional_prior.fit_functional_prior` (or a fixed baseline) the chains
target

.. math::

    p(\\theta \\mid \\mathcal D) \\propto p(\\theta) \\prod_{i=1}^N p(y_i \\mid f_\\theta(x_i)),

with the minibatch gradient estimate of ``log p(theta) + N/B sum_{i in B} log p(y_i | .)``
and the scale-adapted SGHMC of Springenberg et al. (NeurIPS 2016)
(:func:`samplers.sgmcmc.adaptive_sghmc`; adaptation during burn-in only). Hierarchical
priors (:class:`~bayesnn.priors.HierarchicalGaussian`) alternate SGHMC steps on the weights
with the exact Gibbs draw of the layer variances,
``sigma_l^2 | theta ~ InvGamma(a_l + n_l/2, b_l + ||theta_l||^2/2)``, every ``gibbs_every``
steps. Flow priors (:class:`~bayesnn.functional_prior.FlowPrior`) contribute their exact
change-of-variables log density.

Regression uses the paper's likelihood ``y ~ N(f(x), 0.1)`` on standardised targets (noise
fixed); classification a softmax likelihood over the network's outputs. Gradient clipping
follows the authors' code: the per-example-scaled gradient is clipped at norm ``grad_clip``
(100), i.e. the full-data gradient at ``N * grad_clip``.

Convergence is reported in function space: split R-hat of the network outputs at
evaluation inputs (weight-space R-hat is meaningless for networks, permutation symmetry).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesnn import likelihoods as lik
from bayesnn.metrics import (
    accuracy,
    categorical_nll,
    gaussian_nll,
    predictive_probs,
    rmse,
)
from bayesnn.model import BayesianNeuralNet, check_data
from bayesnn.nn.stax import Layer
from samplers import sgmcmc
from samplers.convergence import check_convergence
from samplers.results import split_rhat

__all__ = [
    "SamplerConfig",
    "PosteriorSamples",
    "sample_posterior",
    "predict",
    "regression_metrics",
    "classification_metrics",
]


class PosteriorSamples(NamedTuple):
    """What :func:`sample_posterior` returns.

    Attributes
    ----------
    model
        The :class:`~bayesnn.model.BayesianNeuralNet` sampled.
    result
        The :class:`samplers.sgmcmc.SampleResult` (positions ``(chains, draws, ...)``).
    idata
        ArviZ ``InferenceData``: outputs ``f`` at the evaluation inputs per draw, pointwise
        log-likelihood when targets were given, sampler statistics.
    rhat
        Split R-hat of ``f`` at each evaluation input and output, ``(n_eval, k)``.
    convergence
        :class:`samplers.convergence.ConvergenceReport` of ``f`` (rank-normalised R-hat and
        bulk ESS; ``None`` with fewer than 2 chains or 4 draws).
    """

    model: BayesianNeuralNet
    result: Any
    idata: Any
    rhat: np.ndarray
    convergence: Any = None


def _default_likelihood(y, noise_var):
    if jnp.issubdtype(jnp.asarray(y).dtype, jnp.integer):
        return lik.Categorical()
    if not float(noise_var) > 0:
        raise ValueError(f"noise_var must be positive, got {noise_var!r}")
    return lik.Gaussian(math.sqrt(float(noise_var)))


class SamplerConfig(NamedTuple):
    """Settings of the adaptive SGHMC run of :func:`sample_posterior` (the paper's protocol).

    Attributes
    ----------
    num_chains, num_samples, num_burnin, thinning
        Chains, kept draws per chain, burn-in steps (adaptation on), steps between draws.
        The paper's UCI run: 4 chains, 2000 burn-in, thinning 2000, 40 draws.
    batch_size, step_size, mdecay
        Minibatch size ``B``, SGHMC learning rate ``h`` and momentum decay (32, 0.01, 0.01).
    grad_clip
        Clip the per-example-scaled gradient at this norm (``None``: no clipping).
    gibbs_every
        Steps between Gibbs updates of hierarchical variances.
    """

    num_chains: int = 4
    num_samples: int = 40
    num_burnin: int = 2000
    thinning: int = 200
    batch_size: int = 32
    step_size: float = 0.01
    mdecay: float = 0.01
    grad_clip: float | None = 100.0
    gibbs_every: int = 20


def sample_posterior(
    architecture: Layer,
    prior,
    data,
    rng_key,
    *,
    likelihood=None,
    noise_var: float = 0.1,
    sampler: SamplerConfig | None = None,
    init: str = "architecture",
    x_eval=None,
    y_eval=None,
    max_eval: int = 200,
    progress_bar: bool | None = False,
    shard: bool = True,
    warn_unconverged: bool = True,
) -> PosteriorSamples:
    """Sample a BNN posterior under ``prior`` with adaptive SGHMC (the paper's protocol).

    Parameters
    ----------
    architecture
        A :mod:`bayesnn.nn.stax` network (the one the prior was tuned for).
    prior
        A prior object (``LayerwiseGaussian``, ``HierarchicalGaussian`` -> Gibbs block,
        ``FlowPrior``, ...) or a factory ``template -> prior``.
    data
        ``(x, y)``: inputs ``(N, d)`` and targets ``(N, k)`` (floats, standardised) or integer
        class labels ``(N,)``.
    rng_key
        PRNG key (chain initialisation, Gibbs draws, minibatches, SGHMC noise).
    likelihood
        A :mod:`bayesnn.likelihoods` object; default ``Gaussian(sqrt(noise_var))`` for float
        targets, ``Categorical()`` for integer labels.
    noise_var
        Fixed regression noise variance (0.1 in the paper, standardised units).
    sampler
        :class:`SamplerConfig` (``None``: its defaults).
    init
        ``"architecture"`` (the network's initialisation, as the authors' code restarts each
        chain) or ``"prior"`` (a draw from ``prior``).
    x_eval, y_eval
        Inputs (and targets) at which ``f`` and its R-hat are recorded; default the first
        ``max_eval`` training points.
    max_eval
        Cap on the default evaluation set.
    progress_bar, shard
        Passed to :func:`samplers.sgmcmc.sample`.
    warn_unconverged
        Issue a :class:`samplers.convergence.ConvergenceWarning` when the function-space
        R-hat exceeds 1.05 or the bulk ESS is below 100 at the evaluation inputs.

    Returns
    -------
    :class:`PosteriorSamples`
    """
    sampler = SamplerConfig() if sampler is None else sampler
    (
        num_chains,
        num_samples,
        num_burnin,
        thinning,
        batch_size,
        step_size,
        mdecay,
        grad_clip,
        gibbs_every,
    ) = sampler
    if not isinstance(architecture, Layer):
        raise ValueError(f"architecture must be a bayesnn.nn Layer, got {architecture!r}")
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError("data must be a pair (x, y)")
    x, y = check_data(*data, name_x="data[0]", name_y="data[1]")
    if init not in ("architecture", "prior"):
        raise ValueError(f"init must be 'architecture' or 'prior', got {init!r}")
    if grad_clip is not None and not float(grad_clip) > 0:
        raise ValueError(f"grad_clip must be positive or None, got {grad_clip!r}")
    for name, v in (("num_chains", num_chains), ("max_eval", max_eval)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    likelihood = _default_likelihood(y, noise_var) if likelihood is None else likelihood
    model = BayesianNeuralNet.create(architecture, x.shape[1:], prior, likelihood)

    init_key, gibbs_key, run_key = jax.random.split(rng_key, 3)
    chain_keys = jax.random.split(init_key, num_chains)
    init_fn = model.init if init == "architecture" else model.init_from_prior
    positions = jax.vmap(init_fn)(chain_keys)
    n = x.shape[0]
    gibbs = {}
    if model.is_hierarchical:
        v0 = model.init_prior_state()
        v_init = jax.vmap(model.gibbs, (0, 0, None))(
            jax.random.split(gibbs_key, num_chains), positions, v0
        )
        gibbs = dict(gibbs_fn=model.gibbs, init_gibbs_state=v_init, gibbs_every=gibbs_every)
    result = sgmcmc.sample(
        run_key,
        sgmcmc.adaptive_sghmc(mdecay=mdecay),
        model.logdensity,
        (x, y),
        positions,
        num_samples=num_samples,
        batch_size=batch_size,
        step_size=step_size,
        num_burnin=num_burnin,
        thinning=thinning,
        grad_clip=None if grad_clip is None else float(grad_clip) * n,
        progress_bar=progress_bar,
        shard=shard,
        **gibbs,
    )
    if x_eval is None:
        x_eval, y_eval = x[:max_eval], y[:max_eval]
    x_eval, y_eval = check_data(x_eval, y_eval, name_x="x_eval", name_y="y_eval")
    idata = model.to_inference_data(result, x_eval, y_eval)
    f = np.asarray(idata.posterior["f"].values)
    rhat = np.asarray(split_rhat(f)) if f.shape[1] >= 4 else np.full(f.shape[2:], np.nan)
    report = None
    if f.shape[0] >= 2 and f.shape[1] >= 4:
        report = check_convergence(
            {"f": f},
            warn=warn_unconverged,
            what="In fp.sample_posterior: SamplerConfig(num_burnin, thinning, num_samples, num_chains).",
        )
    return PosteriorSamples(model, result, idata, rhat, report)


def predict(posterior: PosteriorSamples, x) -> jax.Array:
    """Network outputs ``(num_chains * num_samples, n, k)`` of every draw at inputs ``x``."""
    x, _ = check_data(x, name_x="x", input_shape=posterior.model.input_shape)
    pos = jax.tree.map(
        lambda a: jnp.reshape(jnp.asarray(a), (-1,) + a.shape[2:]), posterior.result.positions
    )
    return jax.jit(jax.vmap(posterior.model.predict, (0, None)))(pos, x)


def regression_metrics(posterior: PosteriorSamples, x, y, *, y_std=1.0) -> dict:
    """Test RMSE of the predictive mean and NLL of the Gaussian mixture predictive.

    ``p(y | x) = 1/S sum_s N(y | f_s(x), sigma^2)`` with the fixed noise ``sigma^2``; both in
    original units when ``y_std`` (the target standardisation scale) is given.
    """
    f = predict(posterior, x)
    noise = posterior.model.likelihood
    if not isinstance(noise, lik.Gaussian) or noise.noise_std is None:
        raise ValueError("regression_metrics needs a fixed-noise Gaussian likelihood")
    y = jnp.asarray(y)
    return {
        "rmse": float(rmse(f, y, y_std=y_std)),
        "nll": float(gaussian_nll(f, y, float(noise.noise_std) ** 2, y_std=y_std)),
    }


def classification_metrics(posterior: PosteriorSamples, x, labels) -> dict:
    """Accuracy and NLL of the Bayesian model average ``1/S sum_s softmax(f_s(x))``."""
    f = predict(posterior, x)
    probs = predictive_probs(f, logits=True)
    return {
        "accuracy": float(accuracy(probs, labels)),
        "nll": float(categorical_nll(f, labels, logits=True)),
    }
