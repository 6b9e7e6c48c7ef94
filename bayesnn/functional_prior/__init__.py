"""Functional priors: tune BNN weight priors by Wasserstein matching to GP priors.

Tran, Rossi, Milios & Filippone, "All You Need is a Good Functional Prior for Bayesian Deep
Learning", JMLR 2022. Entry points: :func:`fit_functional_prior` (tune the prior) and
:func:`sample_posterior` (adaptive SGHMC with the tuned prior).

Example
-------
>>> from bayesnn.nn import stax
>>> from bayesnn.gp import GPPrior, RBF
>>> from bayesnn import functional_prior as fp
>>> arch = stax.serial(stax.Dense(50, b_std=1.0), stax.Tanh(), stax.Dense(1, b_std=1.0))
>>> prior, hist = fp.fit_functional_prior(
...     arch, GPPrior(RBF(1.0, 0.6)), fp.grid(-6, 6, 100), family="gaussian", steps=200,
...     key=jax.random.key(0))
"""

from bayesnn.functional_prior.critic import (
    CriticState,
    apply_critic,
    critic_objective,
    dual_w1,
    estimate_w1,
    init_critic,
    train_critic,
)
from bayesnn.functional_prior.families import (
    PriorFamily,
    flow_family,
    gaussian_family,
    hierarchical_family,
    make_family,
)
from bayesnn.functional_prior.fit import (
    FitHistory,
    FitState,
    evaluate_w1,
    fit_functional_prior,
    function_sampler,
    gp_function_sampler,
)
from bayesnn.functional_prior.flows import FlowPrior, flow_forward, flow_inverse, init_flow
from bayesnn.functional_prior.measurement import (
    MeasurementSampler,
    classification_minibatch,
    fixed_points,
    grid,
    mixture,
    training_inputs,
    uniform_box,
)
from bayesnn.functional_prior.posterior import (
    PosteriorSamples,
    classification_metrics,
    predict,
    regression_metrics,
    sample_posterior,
)
from bayesnn.functional_prior.sliced import sliced_w1

__all__ = [
    "CriticState",
    "init_critic",
    "apply_critic",
    "critic_objective",
    "dual_w1",
    "train_critic",
    "estimate_w1",
    "sliced_w1",
    "PriorFamily",
    "gaussian_family",
    "hierarchical_family",
    "flow_family",
    "make_family",
    "FlowPrior",
    "init_flow",
    "flow_forward",
    "flow_inverse",
    "MeasurementSampler",
    "grid",
    "fixed_points",
    "training_inputs",
    "uniform_box",
    "mixture",
    "classification_minibatch",
    "FitState",
    "FitHistory",
    "function_sampler",
    "gp_function_sampler",
    "fit_functional_prior",
    "evaluate_w1",
    "PosteriorSamples",
    "sample_posterior",
    "predict",
    "regression_metrics",
    "classification_metrics",
]
