"""bayesnn: Bayesian and probabilistic deep learning in JAX.

Subpackages: :mod:`bayesnn.nn` (architectures and their infinite-width kernels),
:mod:`bayesnn.priors`, :mod:`bayesnn.likelihoods`, :mod:`bayesnn.model`,
:mod:`bayesnn.datasets`, :mod:`bayesnn.metrics`, :mod:`bayesnn.diagnostics`, and the four model
families :mod:`bayesnn.functional_prior` (with :mod:`bayesnn.gp`), :mod:`bayesnn.nngp`,
:mod:`bayesnn.boltzmann`, :mod:`bayesnn.hebbian`. Sampling lives in the sibling package
``samplers``.
"""

from bayesnn import datasets, diagnostics, likelihoods, metrics, nn, priors
from bayesnn.model import BayesianNeuralNet, numpyro_model

__version__ = "0.1.0"

__all__ = [
    "BayesianNeuralNet",
    "datasets",
    "diagnostics",
    "likelihoods",
    "metrics",
    "nn",
    "numpyro_model",
    "priors",
]
