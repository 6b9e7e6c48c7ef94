"""Gaussian-process priors: kernels with hyperpriors and batched function sampling.

Targets for the functional priors of :mod:`bayesnn.functional_prior` (Tran et al. 2022).
"""

from bayesnn.gp.kernels import (
    RBF,
    Kernel,
    Linear,
    LogNormal,
    Matern32,
    Matern52,
    Periodic,
    Product,
    Sum,
    has_hyperpriors,
    sample_kernel,
)
from bayesnn.gp.sampling import GPPrior, GPSampleError, cholesky_with_jitter

__all__ = [
    "Kernel",
    "RBF",
    "Matern32",
    "Matern52",
    "Periodic",
    "Linear",
    "Sum",
    "Product",
    "LogNormal",
    "sample_kernel",
    "has_hyperpriors",
    "GPPrior",
    "GPSampleError",
    "cholesky_with_jitter",
]
