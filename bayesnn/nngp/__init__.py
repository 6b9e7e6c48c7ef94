"""NNGP/NTK regression and scale mixtures of NNGPs (Student-t processes and beyond).

Lee, Yun, Yang, Lee, "Scale Mixtures of Neural Network Gaussian Processes", ICLR 2022.
Kernels come from :func:`bayesnn.nn.kernels.kernel_fn` on a ``bayesnn.nn.stax``
architecture whose readout has unit ``W_std`` (the random scale ``sigma^2`` multiplies it).

One concept per submodule:

* :mod:`~bayesnn.nngp.gp`: NNGP regression at a fixed scale (``fit``, ``predict``,
  ``log_marginal``);
* :mod:`~bayesnn.nngp.tp`: the Student-t process, ``sigma^2 ~ IG(alpha, beta)`` (``fit``,
  ``predict``, ``log_marginal``, ``fit_hyperparameters``);
* :mod:`~bayesnn.nngp.mixtures`: any prior on ``sigma^2`` by importance sampling or exact
  discrete mixtures (``importance_posterior``, ``predict``);
* :mod:`~bayesnn.nngp.svtp`: sparse variational Student-t process classification;
* :mod:`~bayesnn.nngp.classification`: Gaussian-likelihood classification on one-hot targets;
* :mod:`~bayesnn.nngp.ensemble`: gradient-descent-trained wide ensembles;
* :mod:`~bayesnn.nngp.finite`: the finite-width Bayesian network and its infinite limit.

Example
-------
>>> post = nngp.tp.fit(k_train, y, alpha=2.0, beta=2.0, eta=0.1)
>>> predictive = nngp.tp.predict(post, k_test_train, k_test_diag)
"""

from bayesnn.nngp import classification, ensemble, finite, gp, mixtures, svtp, tp
from bayesnn.nngp.mixtures import BurrXII, DiscreteScalePrior

__all__ = [
    "gp",
    "tp",
    "mixtures",
    "svtp",
    "classification",
    "ensemble",
    "finite",
    "BurrXII",
    "DiscreteScalePrior",
]
