"""Tests for bayesnn.metrics against direct computations, scipy and scikit-learn."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst
from scipy import stats
from sklearn.metrics import accuracy_score, brier_score_loss

from bayesnn import metrics as M


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(6, 40, 2)).astype(np.float32)
    y = rng.normal(size=(40, 2)).astype(np.float32)
    return means, y


@pytest.fixture(scope="module")
def classification():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 300, 4)).astype(np.float32) * 2
    labels = rng.integers(0, 4, 300).astype(np.int32)
    return logits, labels


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_rmse(regression):
    means, y = regression
    y_std = np.array([2.0, 0.5], np.float32)
    want = np.sqrt(np.mean(((means.mean(0) - y) * y_std) ** 2))
    np.testing.assert_allclose(M.rmse(means, y, y_std=y_std), want, rtol=1e-5)
    np.testing.assert_allclose(
        M.rmse(means[0], y), np.sqrt(np.mean((means[0] - y) ** 2)), rtol=1e-5
    )


@pytest.mark.parametrize("noise", ["scalar", "per_sample", "full"])
def test_gaussian_nll_mixture_original_units(regression, noise):
    means, y = regression
    rng = np.random.default_rng(2)
    var = {
        "scalar": np.float32(0.3),
        "per_sample": rng.uniform(0.1, 1.0, 6).astype(np.float32),
        "full": rng.uniform(0.1, 1.0, means.shape).astype(np.float32),
    }[noise]
    y_mean, y_std = np.array([1.0, -3.0]), np.array([2.0, 0.5])
    var_full = np.broadcast_to(
        np.reshape(var, (-1, 1, 1)) if np.ndim(var) == 1 else var, means.shape
    )
    # Direct: mixture density of the original-unit targets under original-unit components.
    dens = stats.norm.pdf(
        y * y_std + y_mean, loc=means * y_std + y_mean, scale=np.sqrt(var_full) * y_std
    ).prod(-1)
    want = -np.log(dens.mean(0))
    got = M.gaussian_nll(means, y, var, y_std=y_std, reduce=False)
    np.testing.assert_allclose(got, want, rtol=1e-4)
    np.testing.assert_allclose(M.gaussian_nll(means, y, var, y_std=y_std), want.mean(), rtol=1e-4)
    # NLL_orig = NLL_std + sum(log y_std).
    std = M.gaussian_nll(means, y, var)
    np.testing.assert_allclose(
        M.gaussian_nll(means, y, var, y_std=y_std), std + np.log(y_std).sum(), rtol=1e-5
    )


def test_gaussian_nll_stable_far_from_data():
    means = np.full((3, 2, 1), 0.0, np.float32)
    y = np.array([[40.0], [0.0]], np.float32)
    got = np.asarray(M.gaussian_nll(means, y, 0.01, reduce=False))
    want = 0.5 * np.log(2 * np.pi * 0.01) + y[:, 0] ** 2 / 0.02
    np.testing.assert_allclose(got, want, rtol=1e-5)  # direct density underflows to 0


def test_classification_metrics(classification):
    logits, labels = classification
    probs_s = _softmax(logits.astype(np.float64))
    probs = probs_s.mean(0)
    np.testing.assert_allclose(M.predictive_probs(logits, logits=True), probs, rtol=1e-5)
    np.testing.assert_allclose(M.predictive_probs(probs_s.astype(np.float32)), probs, rtol=1e-5)
    np.testing.assert_allclose(
        M.accuracy(probs, labels), accuracy_score(labels, probs.argmax(-1)), rtol=1e-6
    )
    want_nll = -np.mean(np.log(probs[np.arange(300), labels]))
    np.testing.assert_allclose(M.categorical_nll(logits, labels, logits=True), want_nll, rtol=1e-5)
    np.testing.assert_allclose(
        M.categorical_nll(probs_s.astype(np.float32), labels), want_nll, rtol=1e-5
    )
    onehot = np.eye(4)[labels]
    np.testing.assert_allclose(
        M.brier_score(probs, labels), np.mean(((probs - onehot) ** 2).sum(-1)), rtol=1e-5
    )
    # Binary: twice scikit-learn's binary Brier score.
    p1 = probs[:, :2] / probs[:, :2].sum(-1, keepdims=True)
    lab2 = (labels % 2).astype(np.int32)
    np.testing.assert_allclose(
        M.brier_score(p1, lab2), 2 * brier_score_loss(lab2, p1[:, 1]), rtol=1e-5
    )


def _ece_loop(probs, labels, bins):
    conf, pred = probs.max(-1), probs.argmax(-1)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs((pred[m] == labels[m]).mean() - conf[m].mean())
    return total


def test_ece(classification):
    logits, labels = classification
    probs = _softmax(logits[0].astype(np.float64))
    for bins in (1, 10, 15):
        np.testing.assert_allclose(
            M.expected_calibration_error(probs, labels, num_bins=bins),
            _ece_loop(probs, labels, bins),
            rtol=1e-5,
            atol=1e-7,
        )
    # Calibrated by construction: labels drawn from the predicted probabilities.
    rng = np.random.default_rng(3)
    n = 20000
    p = _softmax(rng.normal(size=(n, 3)) * 1.5)
    lab = (rng.random(n)[:, None] > np.cumsum(p, -1)).sum(-1).astype(np.int32)
    assert float(M.expected_calibration_error(p, lab, num_bins=10)) < 0.02
    # Constant confidence 0.9 with accuracy 0.5: ECE = 0.4.
    q = np.tile(np.array([[0.9, 0.1]]), (10, 1))
    np.testing.assert_allclose(
        M.expected_calibration_error(q, np.array([0, 1] * 5, np.int32)), 0.4, rtol=1e-6
    )


def test_jit(regression, classification):
    means, y = regression
    f = jax.jit(lambda m, t: M.gaussian_nll(m, t, 0.2, y_std=2.0))
    np.testing.assert_allclose(f(means, y), M.gaussian_nll(means, y, 0.2, y_std=2.0), rtol=1e-6)
    logits, labels = classification
    g = jax.jit(lambda p, l: M.expected_calibration_error(p, l) + M.brier_score(p, l))
    p = _softmax(logits[0])
    np.testing.assert_allclose(
        g(p, labels),
        M.expected_calibration_error(p, labels) + M.brier_score(p, labels),
        rtol=1e-5,
    )


def test_metric_errors(regression, classification):
    means, y = regression
    with pytest.raises(ValueError, match="pred shape"):
        M.rmse(means[0, :5], y)
    with pytest.raises(ValueError, match="means shape"):
        M.gaussian_nll(means[:, :5], y, 0.1)
    with pytest.raises(ValueError, match="noise_var must be positive"):
        M.gaussian_nll(means, y, -1.0)
    with pytest.raises(ValueError, match="noise_var shape"):
        M.gaussian_nll(means, y, np.ones(4))
    with pytest.raises(ValueError, match="y holds NaN"):
        M.gaussian_nll(means, np.full_like(y, np.nan), 0.1)
    with pytest.raises(ValueError, match="y_std shape"):
        M.rmse(means, y, y_std=np.ones(3))
    logits, labels = classification
    with pytest.raises(ValueError, match="labels must lie"):
        M.accuracy(logits[0], labels + 4)
    with pytest.raises(ValueError, match="labels must be integers"):
        M.brier_score(logits[0], labels.astype(np.float32))
    with pytest.raises(ValueError, match="probs must be non-negative"):
        M.categorical_nll(logits, labels)
    with pytest.raises(ValueError, match="num_bins"):
        M.expected_calibration_error(_softmax(logits[0]), labels, num_bins=0)


@settings(max_examples=30, deadline=None)
@given(
    shift=hst.floats(-0.5, 0.5, allow_nan=False).filter(lambda v: abs(v) > 1e-3),
    row=hst.integers(0, 4),
)
def test_probability_metrics_reject_values_outside_unit_interval(shift, row):
    """Property: ECE and Brier accept probabilities and raise naming probs as soon as one
    entry leaves [0, 1] (ECE used to return a number for logits or negative values)."""
    rng = np.random.default_rng(row)
    probs = _softmax(rng.normal(size=(5, 3)).astype(np.float32))
    labels = rng.integers(0, 3, 5).astype(np.int32)
    M.expected_calibration_error(probs, labels)
    bad = probs.copy()
    bad[row, 0] = 1.0 + abs(shift) if shift > 0 else -abs(shift)
    for fn in (M.expected_calibration_error, M.brier_score):
        with pytest.raises(ValueError, match=r"probs must be probabilities in \[0, 1\]"):
            fn(bad, labels)


def test_ood_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    from bayesnn.metrics import ood_auroc

    rng = np.random.default_rng(0)
    s_in = np.round(rng.normal(size=300), 1).astype(np.float32)
    s_out = np.round(rng.normal(0.7, 1.0, size=200), 1).astype(np.float32)
    expect = roc_auc_score(np.r_[np.zeros(300), np.ones(200)], np.r_[s_in, s_out])
    np.testing.assert_allclose(ood_auroc(s_in, s_out), expect, rtol=1e-6)
    assert float(ood_auroc(s_in, s_in + 100.0)) == 1.0
    with pytest.raises(ValueError, match="scores_out must be a non-empty 1-D array"):
        ood_auroc(s_in, s_out[:, None])


def test_predictive_entropy_closed_form():
    from bayesnn.metrics import predictive_entropy

    probs = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]], np.float32)
    np.testing.assert_allclose(predictive_entropy(probs), [0.0, np.log(3), np.log(2)], rtol=1e-6)
    with pytest.raises(ValueError, match="probs must be probabilities"):
        predictive_entropy(probs * 2)


def test_calibration_bins_match_a_loop_and_the_ece(classification):
    logits, labels = classification
    probs = _softmax(logits[0].astype(np.float64))
    conf, pred = probs.max(-1), probs.argmax(-1)
    bins = M.calibration_bins(probs, labels, num_bins=10)
    edges = np.linspace(0.0, 1.0, 11)
    for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        m = (conf > lo) & (conf <= hi)
        assert int(bins.count[b]) == m.sum()
        if m.any():
            np.testing.assert_allclose(bins.confidence[b], conf[m].mean(), rtol=1e-6)
            np.testing.assert_allclose(bins.accuracy[b], (pred[m] == labels[m]).mean(), rtol=1e-6)
    # count-weighted rows give the overall mean confidence and accuracy, and the ECE
    w = np.asarray(bins.count) / len(labels)
    np.testing.assert_allclose(w @ np.asarray(bins.confidence), conf.mean(), rtol=1e-6)
    np.testing.assert_allclose(w @ np.asarray(bins.accuracy), (pred == labels).mean(), rtol=1e-6)
    np.testing.assert_allclose(
        w @ np.abs(np.asarray(bins.accuracy) - np.asarray(bins.confidence)),
        M.expected_calibration_error(probs, labels, num_bins=10),
        rtol=1e-6,
    )
    # an over-confident predictor: confidence 0.9 in every bin it fills, accuracy 0.5
    q = np.tile(np.array([[0.9, 0.1]]), (10, 1))
    over = M.calibration_bins(q, np.array([0, 1] * 5, np.int32), num_bins=5)
    np.testing.assert_array_equal(over.count, [0, 0, 0, 0, 10])
    np.testing.assert_allclose(over.confidence[4] - over.accuracy[4], 0.4, rtol=1e-6)
    with pytest.raises(ValueError, match="num_bins"):
        M.calibration_bins(q, np.zeros(10, np.int32), num_bins=0)
