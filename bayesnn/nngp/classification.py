"""Classification with NNGP scale mixtures: Gaussian likelihood on one-hot targets.

The "regression on one-hot labels" classifier of Lee et al. (2018), with the ``C`` outputs
sharing one last-layer variance ``sigma^2 ~ IG(alpha, beta)`` (Lee, Yun, Yang, Lee, ICLR
2022): the posterior is the multi-output Student-t process of
:func:`bayesnn.nngp.tp.fit` with ``2 alpha + nC`` degrees of freedom. The class
prediction is the argmax of the posterior mean, identical for the NNGP and the t-process,
so the two differ only in calibration.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bayesnn.nngp import gp, tp

__all__ = ["one_hot", "predict"]


def one_hot(labels, num_classes: int, centred: bool = True) -> jax.Array:
    """One-hot targets; ``centred=True`` subtracts ``1/C`` (zero-mean prior targets)."""
    labels = jnp.asarray(labels)
    if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    y = jax.nn.one_hot(labels, num_classes)
    return y - 1.0 / num_classes if centred else y


def predict(
    k_train,
    labels,
    k_test_train,
    k_test_diag,
    num_classes: int,
    model: str = "t",
    alpha: float = 2.0,
    beta: float = 2.0,
    eta: float = 1e-2,
    scale: float = 1.0,
):
    """Posterior predictive of the Gaussian-likelihood classifier.

    Parameters
    ----------
    k_train, k_test_train, k_test_diag
        NNGP matrices at unit readout scale.
    labels
        ``(n,)`` integer labels.
    num_classes
        ``C``.
    model
        ``"t"`` (inverse-gamma scale mixture) or ``"gp"`` (fixed ``sigma^2 = scale``).
    alpha, beta, eta, scale
        Prior and regularisation.

    Returns
    -------
    numpyro.distributions.Distribution
        Predictive of the (centred) one-hot vector, batch ``(m, C)``; ``.mean.argmax(-1)``
        is the predicted class. ``log_prob(one_hot(y_test)).sum(-1)`` is the Gaussian NLL.
    """
    if model not in ("t", "gp"):
        raise ValueError(f"model must be 't' or 'gp', got {model!r}")
    y = one_hot(labels, num_classes)
    if model == "gp":
        return gp.predict(gp.fit(k_train, y, eta), k_test_train, k_test_diag, scale)
    return tp.predict(tp.fit(k_train, y, alpha, beta, eta), k_test_train, k_test_diag)
