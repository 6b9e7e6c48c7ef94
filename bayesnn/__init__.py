"""bayesnn: Bayesian and probabilistic deep learning in JAX."""

__version__ = "0.1.0"
