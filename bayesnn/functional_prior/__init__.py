"""Functional priors: tune BNN weight priors by Wasserstein matching to GP priors.

Tran, Rossi, Milios & Filippone, "All You Need is a Good Functional Prior for Bayesian Deep
Learning", JMLR 2022. Entry points: :func:`fit_functional_prior` (tune the prior, with a
:class:`CriticW1` or :class:`SlicedW1` estimator) and :func:`sample_posterior` (adaptive
SGHMC with the tuned prior). The building blocks stay in their submodules:
:mod:`~bayesnn.functional_prior.critic` (the Lipschitz critic),
:mod:`~bayesnn.functional_prior.flows` (normalizing-flow bijections),
:mod:`~bayesnn.functional_prior.families` (tunable prior families),
:mod:`~bayesnn.functional_prior.fit` (function samplers, the fit state),
:mod:`~bayesnn.functional_prior.targets` (GP targets on images: pixel kernels, CNN-GP).

Example
-------
>>> from bayesnn.nn import stax
>>> from bayesnn.gp import GPPrior, RBF
>>> from bayesnn import functional_prior as fp
>>> arch = stax.serial(stax.Dense(50, b_std=1.0), stax.Tanh(), stax.Dense(1, b_std=1.0))
>>> prior, hist = fp.fit_functional_prior(
...     arch, GPPrior(RBF(1.0, 0.6)), fp.grid(-6, 6, 100), jax.random.key(0),
...     family="gaussian", steps=200)
"""

from bayesnn.functional_prior import critic, families, fit, flows, targets
from bayesnn.functional_prior.critic import CriticW1, estimate_w1
from bayesnn.functional_prior.families import (
    PriorFamily,
    flow_family,
    gaussian_family,
    hierarchical_family,
)
from bayesnn.functional_prior.fit import FitHistory, evaluate_w1, fit_functional_prior
from bayesnn.functional_prior.flows import FlowPrior
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
    SamplerConfig,
    classification_metrics,
    predict,
    regression_metrics,
    sample_posterior,
)
from bayesnn.functional_prior.sliced import SlicedW1, sliced_w1
from bayesnn.functional_prior.targets import ArchitectureKernel, median_distance

__all__ = [
    "fit_functional_prior",
    "FitHistory",
    "CriticW1",
    "SlicedW1",
    "evaluate_w1",
    "estimate_w1",
    "sliced_w1",
    "PriorFamily",
    "gaussian_family",
    "hierarchical_family",
    "flow_family",
    "FlowPrior",
    "MeasurementSampler",
    "grid",
    "fixed_points",
    "training_inputs",
    "uniform_box",
    "mixture",
    "classification_minibatch",
    "ArchitectureKernel",
    "median_distance",
    "sample_posterior",
    "SamplerConfig",
    "PosteriorSamples",
    "predict",
    "regression_metrics",
    "classification_metrics",
    "critic",
    "families",
    "fit",
    "flows",
    "targets",
]
