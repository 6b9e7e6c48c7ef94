"""The two small posteriors of the NUTS gold standard (shared by make_gold.py and the test).

* ``bnn``: a tanh network with one hidden layer of 8 units (105 weights) and a learned
  Gaussian noise scale on the shipped red-wine set (seeded 90/10 split 0, standardised, the
  first 500 training rows), the README quickstart's model at a size NUTS samples in
  minutes. (On yacht, whose targets are nearly noise-free, NUTS's own chains disagreed:
  function-space R-hat 2.0 at 4 x 1500 draws, so it gives no gold standard there.)
* ``logistic``: Bayesian logistic regression on the shipped red-wine set, label "quality
  above the training median", the first 500 training rows, prior N(0, 1) on the 12 weights.

Probe points: the first 20 test inputs of each split.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from bayesnn import BayesianNeuralNet, likelihoods, nn, priors
from bayesnn.datasets import load_uci

NUM_PROBES = 20


def build(name: str):
    """``(model, (x_train, y_train), x_probe)`` of problem ``name``."""
    if name == "bnn":
        split = load_uci("wine-quality-red", split=0, seed=0)
        arch = nn.serial(nn.Dense(8, b_std=1.0), nn.Tanh(), nn.Dense(1, b_std=1.0))
        likelihood = likelihoods.Gaussian(noise_std=None)
        x, y = split.x_train[:500], split.y_train[:500]
    elif name == "logistic":
        split = load_uci("wine-quality-red", split=0, seed=0)
        arch = nn.Dense(1, b_std=1.0)
        likelihood = likelihoods.Bernoulli()
        x = split.x_train[:500]
        y = (split.y_train[:500] > np.median(split.y_train)).astype(np.float32)
    else:
        raise ValueError(f"unknown problem {name!r}")
    model = BayesianNeuralNet.create(
        arch, x.shape[1:], lambda t: priors.IsotropicGaussian.create(t, 1.0), likelihood
    )
    return model, (jnp.asarray(x), jnp.asarray(y)), jnp.asarray(split.x_test[:NUM_PROBES])
