"""NNGP/NTK regression and scale mixtures of NNGPs (Student-t processes and beyond).

Lee, Yun, Yang, Lee, "Scale Mixtures of Neural Network Gaussian Processes", ICLR 2022.
Kernels come from :func:`bayesnn.nn.kernels.kernel_fn` on a ``bayesnn.nn.stax``
architecture whose readout has unit ``W_std`` (the random scale ``sigma^2`` multiplies it).
"""

from bayesnn.nngp.classification import gaussian_classifier_predict, one_hot
from bayesnn.nngp.ensemble import gd_ensemble_moments, gd_ensemble_predict
from bayesnn.nngp.finite import (
    FinitePredictive,
    fixed_noise_mixture_moments,
    sample_predictive,
    scale_mixture_bnn,
)
from bayesnn.nngp.mixtures import (
    BurrXII,
    DiscreteScalePrior,
    ScaleMixturePosterior,
    importance_posterior,
    mixture_predict,
    scale_log_likelihood,
)
from bayesnn.nngp.regression import (
    GPPosterior,
    TPosterior,
    fit_tp_hyperparameters,
    gp_fit,
    gp_log_marginal,
    gp_predict,
    tp_fit,
    tp_log_marginal,
    tp_predict,
)
from bayesnn.nngp.svtp import (
    SVTPKernels,
    SVTPParams,
    ig_kl,
    inducing_points,
    svtp_elbo,
    svtp_fit,
    svtp_fit_hyperparameters,
    svtp_init,
    svtp_kernel_blocks,
    svtp_kernels,
    svtp_kl,
    svtp_predict,
)

__all__ = [
    "BurrXII",
    "DiscreteScalePrior",
    "FinitePredictive",
    "GPPosterior",
    "SVTPKernels",
    "SVTPParams",
    "ScaleMixturePosterior",
    "TPosterior",
    "fit_tp_hyperparameters",
    "fixed_noise_mixture_moments",
    "gaussian_classifier_predict",
    "gd_ensemble_moments",
    "gd_ensemble_predict",
    "gp_fit",
    "gp_log_marginal",
    "gp_predict",
    "ig_kl",
    "importance_posterior",
    "inducing_points",
    "mixture_predict",
    "one_hot",
    "sample_predictive",
    "scale_log_likelihood",
    "scale_mixture_bnn",
    "svtp_elbo",
    "svtp_fit",
    "svtp_fit_hyperparameters",
    "svtp_init",
    "svtp_kernel_blocks",
    "svtp_kernels",
    "svtp_kl",
    "svtp_predict",
    "tp_fit",
    "tp_log_marginal",
    "tp_predict",
]
