"""Predictive metrics for regression and classification with posterior samples.

Regression: RMSE of the posterior-mean prediction and the test negative log-likelihood of the
Gaussian predictive *mixture* over posterior samples (the protocol of Hernández-Lobato &
Adams, ICML 2015, and Gal & Ghahramani, ICML 2016), both reportable in original target
units. Classification: accuracy, categorical NLL of the mixture, expected calibration error
(Guo et al., ICML 2017), the Brier score (Brier 1950), the predictive entropy and the
out-of-distribution AUROC of a score (Hendrycks and Gimpel, ICLR 2017).

All functions are pure ``jax.numpy`` (``jit``-able; shapes are checked at trace time, and
NaN/inf only for concrete inputs).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

__all__ = [
    "rmse",
    "gaussian_nll",
    "predictive_probs",
    "accuracy",
    "categorical_nll",
    "CalibrationBins",
    "calibration_bins",
    "expected_calibration_error",
    "brier_score",
    "predictive_entropy",
    "ood_auroc",
]


def _check_finite(name, x):
    if isinstance(x, jax.core.Tracer):
        return
    if not bool(np.all(np.isfinite(np.asarray(x)))):
        raise ValueError(f"{name} holds NaN or inf")


def _as_array(name, x):
    x = jnp.asarray(x)
    _check_finite(name, x)
    return x


def _pad_stats(name, stat, trailing_shape):
    """Reshape a per-output statistic (scalar or trailing shape) to rank ``len(trailing)``."""
    stat = jnp.asarray(stat)
    if stat.size == 1:
        stat = stat.reshape(())
    if stat.ndim == 0:
        return jnp.broadcast_to(stat, trailing_shape)
    if stat.shape != trailing_shape[len(trailing_shape) - stat.ndim :]:
        raise ValueError(f"{name} shape {stat.shape} does not match output shape {trailing_shape}")
    return jnp.broadcast_to(
        stat.reshape((1,) * (len(trailing_shape) - stat.ndim) + stat.shape), trailing_shape
    )


def rmse(pred, y, *, y_std=1.0):
    r"""Root mean squared error, optionally in original units.

    .. math::
        \mathrm{RMSE} = \sqrt{\tfrac{1}{n}\sum_i \lVert s \odot (\hat y_i - y_i) \rVert^2 / d}

    with :math:`s` = ``y_std`` (standardised -> original units) and :math:`\hat y` the
    prediction; when ``pred`` has one more leading axis than ``y`` it holds per-sample
    predictive means ``(S, n, ...)`` and :math:`\hat y` is their average (the posterior
    predictive mean).

    Parameters
    ----------
    pred
        ``(n, ...)`` predictions or ``(S, n, ...)`` per-sample predictive means.
    y
        ``(n, ...)`` targets, in the same (standardised) units as ``pred``.
    y_std
        Scalar or per-output standard deviation used to standardise ``y``.

    Returns
    -------
    Scalar RMSE (in original units when ``y_std`` is given).
    """
    pred, y = _as_array("pred", pred), _as_array("y", y)
    if pred.ndim == y.ndim + 1:
        pred = pred.mean(axis=0)
    if pred.shape != y.shape:
        raise ValueError(f"pred shape {pred.shape} does not match y shape {y.shape}")
    scale = _pad_stats("y_std", y_std, y.shape[1:])[None]
    return jnp.sqrt(jnp.mean(jnp.square(scale * (pred - y))))


def gaussian_nll(means, y, noise_var, *, y_std=1.0, reduce: bool = True):
    r"""Test negative log-likelihood of the Gaussian predictive mixture.

    With :math:`S` posterior samples giving means :math:`\mu_s(x_i)` and noise variances
    :math:`\sigma^2_s`, the predictive density is the mixture
    :math:`p(y_i) = \frac1S \sum_s \mathcal N(y_i \mid \mu_s(x_i), \sigma^2_s)`, evaluated
    stably with ``logsumexp`` over samples (output dimensions of one point are independent
    given a sample and their log-densities add). The result is in **original target
    units**: if ``y`` and ``means`` are standardised with scale :math:`s` (``y_std``), the
    density of :math:`y_{orig} = s\,y + m` is :math:`p(y)/s`, so

    .. math:: \mathrm{NLL}_{orig} = \mathrm{NLL}_{std} + \textstyle\sum_k \log s_k ,

    which is the number published UCI tables report (test log-likelihood = -NLL, Gal &
    Ghahramani, ICML 2016). Pass ``y_std=1`` for standardised units.

    Parameters
    ----------
    means
        Per-sample predictive means ``(S, n, ...)`` (standardised units).
    y
        Targets ``(n, ...)`` (standardised units).
    noise_var
        Noise variance(s) in standardised units, positive: a scalar, ``(S,)`` (one per
        sample, e.g. a sampled noise), or ``(S, n, ...)`` (heteroscedastic).
    y_std
        Scalar or per-output scale ``s`` of the standardisation.
    reduce
        Average over test points (default) or return the per-point NLL ``(n,)``.

    Returns
    -------
    Mean NLL per test point (scalar) or ``(n,)`` per-point NLL.
    """
    means, y = _as_array("means", means), _as_array("y", y)
    if means.ndim != y.ndim + 1 or means.shape[1:] != y.shape:
        raise ValueError(f"means shape {means.shape} must be (S,) + y.shape, y shape {y.shape}")
    var = _as_array("noise_var", noise_var)
    if not isinstance(var, jax.core.Tracer) and bool(np.any(np.asarray(var) <= 0)):
        raise ValueError("noise_var must be positive")
    if var.ndim == 0:
        var = jnp.broadcast_to(var, means.shape)
    elif var.shape == means.shape[:1]:
        var = jnp.broadcast_to(var.reshape((-1,) + (1,) * y.ndim), means.shape)
    elif var.shape != means.shape:
        raise ValueError(
            f"noise_var shape {var.shape} must be (), (S,)={means.shape[:1]} or {means.shape}"
        )
    out_axes = tuple(range(2, means.ndim))
    logpdf = -0.5 * (jnp.log(2 * jnp.pi * var) + jnp.square(y[None] - means) / var)
    logpdf = logpdf.sum(axis=out_axes) if out_axes else logpdf
    log_pred = logsumexp(logpdf, axis=0) - math.log(means.shape[0])
    log_scale = jnp.log(_pad_stats("y_std", y_std, y.shape[1:])).sum()
    nll = -log_pred + log_scale
    return nll.mean() if reduce else nll


def _log_probs(samples, logits):
    if logits:
        return jax.nn.log_softmax(samples, axis=-1)
    if not isinstance(samples, jax.core.Tracer) and bool(np.any(np.asarray(samples) < 0)):
        raise ValueError("probs must be non-negative (pass logits=True for logits)")
    return jnp.log(jnp.clip(samples, jnp.finfo(samples.dtype).tiny, None))


def _check_labels(labels, n, num_classes):
    labels = jnp.asarray(labels)
    if labels.shape != (n,) or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"labels must be integers of shape ({n},), got {labels.dtype}{labels.shape}"
        )
    if not isinstance(labels, jax.core.Tracer):
        lab = np.asarray(labels)
        if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
            raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    return labels


def _check_unit_interval(name, probs):
    """Probabilities (not logits) are required where their values enter (ECE, Brier)."""
    if not isinstance(probs, jax.core.Tracer):
        p = np.asarray(probs)
        if p.size and (p.min() < 0.0 or p.max() > 1.0):
            raise ValueError(
                f"{name} must be probabilities in [0, 1], got values in "
                f"[{float(p.min()):.4g}, {float(p.max()):.4g}] (convert logits with "
                "predictive_probs(..., logits=True))"
            )
    return probs


def _probs(name, probs):
    probs = _as_array(name, probs)
    if probs.ndim == 3:
        probs = probs.mean(axis=0)
    if probs.ndim != 2:
        raise ValueError(f"{name} must be (n, K) or (S, n, K), got shape {probs.shape}")
    return probs


def predictive_probs(samples, *, logits: bool = False):
    r"""Posterior predictive class probabilities :math:`\bar p = \frac1S \sum_s p_s`.

    Parameters
    ----------
    samples
        Per-sample probabilities or logits ``(S, n, K)``.
    logits
        Whether ``samples`` are logits (softmax is applied per sample).

    Returns
    -------
    ``(n, K)`` mixture probabilities.
    """
    samples = _as_array("samples", samples)
    if samples.ndim != 3:
        raise ValueError(f"samples must be (S, n, K), got shape {samples.shape}")
    return jnp.exp(logsumexp(_log_probs(samples, logits), axis=0) - math.log(samples.shape[0]))


def accuracy(probs, labels):
    r"""Classification accuracy of the arg-max prediction, :math:`\frac1n\sum_i 1[\hat y_i = y_i]`.

    Parameters
    ----------
    probs
        Predictive probabilities (or any scores) ``(n, K)``, or per-sample ``(S, n, K)``
        probabilities averaged first.
    labels
        Integer labels ``(n,)``.
    """
    probs = _probs("probs", probs)
    labels = _check_labels(labels, probs.shape[0], probs.shape[1])
    return jnp.mean(jnp.argmax(probs, axis=-1) == labels)


def categorical_nll(samples, labels, *, logits: bool = False, reduce: bool = True):
    r"""Negative log-likelihood of the categorical predictive mixture.

    .. math:: \mathrm{NLL} = -\frac1n \sum_i \log \frac1S \sum_s p_s(y_i \mid x_i),

    computed with ``logsumexp`` over samples from log-probabilities.

    Parameters
    ----------
    samples
        Per-sample probabilities or logits ``(S, n, K)``; a single ``(n, K)`` array is one
        sample.
    labels
        Integer labels ``(n,)``.
    logits
        Whether ``samples`` are logits.
    reduce
        Average over points (default) or return ``(n,)``.
    """
    samples = _as_array("samples", samples)
    if samples.ndim == 2:
        samples = samples[None]
    if samples.ndim != 3:
        raise ValueError(f"samples must be (S, n, K), got shape {samples.shape}")
    labels = _check_labels(labels, samples.shape[1], samples.shape[2])
    logp = _log_probs(samples, logits)
    picked = jnp.take_along_axis(logp, labels[None, :, None], axis=-1)[..., 0]
    nll = -(logsumexp(picked, axis=0) - math.log(samples.shape[0]))
    return nll.mean() if reduce else nll


class CalibrationBins(NamedTuple):
    """Reliability diagram of the top-label confidence, per equal-width bin.

    Attributes
    ----------
    count
        ``(M,)`` number of points in each bin.
    confidence
        ``(M,)`` mean confidence :math:`\\mathrm{conf}(B_b)` of the bin (0 when empty).
    accuracy
        ``(M,)`` accuracy :math:`\\mathrm{acc}(B_b)` of the bin (0 when empty).
    """

    count: jax.Array
    confidence: jax.Array
    accuracy: jax.Array


def _top_label(probs, labels, num_bins):
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}")
    probs = _probs("probs", probs)
    labels = _check_labels(labels, probs.shape[0], probs.shape[1])
    probs = _check_unit_interval("probs", probs)
    conf = probs.max(axis=-1)
    correct = (jnp.argmax(probs, axis=-1) == labels).astype(conf.dtype)
    bins = jnp.clip(jnp.ceil(conf * num_bins).astype(jnp.int32) - 1, 0, num_bins - 1)
    return conf, correct, bins


def calibration_bins(probs, labels, *, num_bins: int = 15) -> CalibrationBins:
    r"""Reliability diagram: per-bin count, mean confidence and accuracy (Guo et al., 2017).

    The bins and arguments are those of :func:`expected_calibration_error`. A bin with
    :math:`\mathrm{conf}(B_b) > \mathrm{acc}(B_b)` is over-confident; the count-weighted
    means of both rows are the overall mean confidence and accuracy, and the count-weighted
    mean of their absolute difference is the ECE.
    """
    conf, correct, bins = _top_label(probs, labels, num_bins)
    count = jax.ops.segment_sum(jnp.ones_like(conf), bins, num_segments=num_bins)
    safe = jnp.maximum(count, 1.0)
    conf_sum = jax.ops.segment_sum(conf, bins, num_segments=num_bins)
    correct_sum = jax.ops.segment_sum(correct, bins, num_segments=num_bins)
    return CalibrationBins(count.astype(jnp.int32), conf_sum / safe, correct_sum / safe)


def expected_calibration_error(probs, labels, *, num_bins: int = 15):
    r"""Expected calibration error of the top-label confidence (Guo et al., ICML 2017).

    Confidences :math:`c_i = \max_k p_{ik}` are put in ``num_bins`` equal-width bins
    :math:`B_b = ((b-1)/M, b/M]`;

    .. math:: \mathrm{ECE} = \sum_b \frac{|B_b|}{n}\,\bigl|\mathrm{acc}(B_b) -
              \mathrm{conf}(B_b)\bigr| .

    Parameters
    ----------
    probs
        Predictive probabilities ``(n, K)`` or per-sample ``(S, n, K)`` (averaged first).
    labels
        Integer labels ``(n,)``.
    num_bins
        Number of bins :math:`M \ge 1`.
    """
    conf, correct, bins = _top_label(probs, labels, num_bins)
    gap = jax.ops.segment_sum(correct - conf, bins, num_segments=num_bins)
    return jnp.abs(gap).sum() / conf.shape[0]


def brier_score(probs, labels):
    r"""Multi-class Brier score (Brier 1950).

    .. math:: \mathrm{BS} = \frac1n \sum_i \sum_k (p_{ik} - 1[y_i = k])^2 .

    Ranges over :math:`[0, 2]`; for two classes it is twice the binary Brier score of
    ``sklearn.metrics.brier_score_loss``.

    Parameters
    ----------
    probs
        Predictive probabilities ``(n, K)`` or per-sample ``(S, n, K)`` (averaged first).
    labels
        Integer labels ``(n,)``.
    """
    probs = _probs("probs", probs)
    labels = _check_labels(labels, probs.shape[0], probs.shape[1])
    probs = _check_unit_interval("probs", probs)
    onehot = jax.nn.one_hot(labels, probs.shape[1], dtype=probs.dtype)
    return jnp.mean(jnp.sum(jnp.square(probs - onehot), axis=-1))


def predictive_entropy(probs):
    r"""Entropy of the predictive distribution per point, :math:`-\sum_k p_k \log p_k`.

    Parameters
    ----------
    probs
        Predictive probabilities ``(n, K)`` or per-sample ``(S, n, K)`` (averaged first).

    Returns
    -------
    ``(n,)`` entropies in nats (``0 log 0 = 0``).
    """
    probs = _check_unit_interval("probs", _probs("probs", probs))
    return -jnp.sum(jax.scipy.special.xlogy(probs, probs), axis=-1)


def ood_auroc(scores_in, scores_out):
    r"""Area under the ROC curve for telling out-of-distribution points from in-distribution
    ones by a score that is larger out of distribution (e.g. :func:`predictive_entropy`, or
    ``1 - max_k p_k``; Hendrycks and Gimpel, ICLR 2017).

    The Mann-Whitney form, ties counting one half:

    .. math:: \mathrm{AUROC} = \frac{1}{n_{in} n_{out}} \sum_{i, j}
              \bigl(1[s^{out}_j > s^{in}_i] + \tfrac12 1[s^{out}_j = s^{in}_i]\bigr),

    computed from mid-ranks of the pooled scores in ``O(n log n)``. 0.5 is chance, 1 perfect
    separation. Equals ``sklearn.metrics.roc_auc_score`` with out-of-distribution as the
    positive class.

    Parameters
    ----------
    scores_in, scores_out
        1-D arrays of scores of in-distribution and out-of-distribution points.
    """
    scores_in = _as_array("scores_in", scores_in)
    scores_out = _as_array("scores_out", scores_out)
    for name, a in (("scores_in", scores_in), ("scores_out", scores_out)):
        if a.ndim != 1 or a.shape[0] < 1:
            raise ValueError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
    n_in, n_out = scores_in.shape[0], scores_out.shape[0]
    ranks = jax.scipy.stats.rankdata(jnp.concatenate([scores_in, scores_out]), method="average")
    rank_sum = jnp.sum(ranks[n_in:])
    return (rank_sum - n_out * (n_out + 1) / 2) / (n_in * n_out)
