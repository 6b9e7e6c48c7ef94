"""Seeded synthetic regression sets: the 1-D gap fixture and simple curves.

The gap fixture follows the 1-D experiment of Tran, Rossi, Milios & Filippone, "All You
Need is a Good Functional Prior for Bayesian Deep Learning", JMLR 2022: N = 64 inputs
uniform on [-10, 10], a random 40% gap emptied, targets drawn from an RBF Gaussian process
(amplitude 1.6, lengthscale 1.8) plus noise of variance 0.1, test grid on [-15, 15].
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "ToyRegression",
    "make_random_gap",
    "rbf_gp_sample",
    "make_gap_regression",
    "make_regression_1d",
    "make_linear_regression",
]


class ToyRegression(NamedTuple):
    """A synthetic regression set.

    Attributes
    ----------
    x_train, y_train
        Inputs ``(n, d)`` and noisy targets ``(n, 1)``.
    x_test, f_test
        Test inputs ``(m, d)`` and the noise-free function there ``(m, 1)``.
    noise_std
        Standard deviation of the observation noise.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    f_test: np.ndarray
    noise_std: float


def _check_seed(seed):
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int or numpy Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def make_random_gap(x, gap_ratio: float = 0.2, *, seed=0):
    r"""Empty a random interval of a 1-D input sample, moving its points to one side.

    With :math:`a = \min x`, :math:`b = \max x`, the gap is
    :math:`(g_a, g_a + r(b - a))` with :math:`g_a \sim U(a, a + (1 - r)(b - a))`; points in
    the gap are redrawn uniformly on the longer of :math:`[a, g_a]` and :math:`[g_b, b]`
    (as the reference experiment of Tran et al., JMLR 2022, does). The input is not
    modified.

    Parameters
    ----------
    x
        Inputs ``(n,)`` or ``(n, 1)``.
    gap_ratio
        Fraction :math:`r \in (0, 1)` of the range emptied.
    seed
        Integer seed or ``numpy.random.Generator``.

    Returns
    -------
    x_new
        Array of the same shape with no point inside the gap.
    gap
        ``(g_a, g_b)``.
    """
    rng = _check_seed(seed)
    if not 0.0 < gap_ratio < 1.0:
        raise ValueError(f"gap_ratio must be in (0, 1), got {gap_ratio!r}")
    x = np.array(x, dtype=np.float64)
    if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[1] != 1) or x.shape[0] < 2:
        raise ValueError(f"x must have shape (n,) or (n, 1) with n >= 2, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x holds NaN or inf")
    a, b = x.min(), x.max()
    gap_a = a + rng.random() * (b - a) * (1.0 - gap_ratio)
    gap_b = gap_a + (b - a) * gap_ratio
    inside = (gap_a < x) & (x < gap_b)
    count = int(inside.sum())
    if gap_a - a > b - gap_b:
        x[inside] = a + rng.random(count) * (gap_a - a)
    else:
        x[inside] = gap_b + rng.random(count) * (b - gap_b)
    return x, (float(gap_a), float(gap_b))


def _rbf(x1, x2, amplitude, lengthscale):
    d2 = ((x1[:, None, :] - x2[None, :, :]) / lengthscale) ** 2
    return amplitude**2 * np.exp(-0.5 * d2.sum(-1))


def rbf_gp_sample(x, *, amplitude=1.0, lengthscale=1.0, jitter=1e-8, seed=0):
    r"""One draw of a zero-mean GP with RBF kernel at inputs ``x``.

    :math:`k(x, x') = \sigma^2 \exp(-\lVert x - x' \rVert^2 / (2 \ell^2))`, drawn through
    a Cholesky factor of :math:`K + \epsilon I` in float64 (Rasmussen & Williams 2006,
    "Gaussian Processes for Machine Learning", eq. 2.31 and A.2).

    Parameters
    ----------
    x
        Inputs ``(n, d)``.
    amplitude, lengthscale
        :math:`\sigma > 0` and :math:`\ell > 0`.
    jitter
        :math:`\epsilon` added to the diagonal.
    seed
        Integer seed or ``numpy.random.Generator``.

    Returns
    -------
    Function values ``(n, 1)``.
    """
    rng = _check_seed(seed)
    if not (amplitude > 0 and lengthscale > 0):
        raise ValueError(
            f"amplitude and lengthscale must be positive, got {amplitude!r}, {lengthscale!r}"
        )
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, d), got {x.shape}")
    k = _rbf(x, x, amplitude, lengthscale) + jitter * np.eye(x.shape[0])
    chol = np.linalg.cholesky(k)
    return chol @ rng.standard_normal((x.shape[0], 1))


def make_gap_regression(
    n: int = 64,
    *,
    low: float = -10.0,
    high: float = 10.0,
    gap_ratio: float = 0.4,
    amplitude: float = 1.6,
    lengthscale: float = 1.8,
    noise_var: float = 0.1,
    n_test: int = 100,
    margin: float = 5.0,
    seed: int = 1,
    dtype=np.float32,
) -> ToyRegression:
    r"""1-D regression with a gap: the functional-prior reference fixture.

    :math:`x_i \sim U(\text{low}, \text{high})`, then :func:`make_random_gap`; one joint GP
    draw :math:`f` (RBF, amplitude 1.6, lengthscale 1.8) at the training inputs and at a test
    grid of ``n_test`` points on ``[low - margin, high + margin]``;
    :math:`y_i = f(x_i) + \varepsilon_i`, :math:`\varepsilon_i \sim N(0, 0.1)`.
    Tran, Rossi, Milios & Filippone, JMLR 2022 (section on 1-D regression). Unlike
    github.com/tranbahien/you-need-a-good-prior, the noise-free function at the test grid is returned too.

    Parameters
    ----------
    n
        Number of training points.
    low, high
        Input range.
    gap_ratio
        Fraction of the range emptied.
    amplitude, lengthscale
        RBF kernel parameters of the generating GP.
    noise_var
        Observation noise variance (> 0).
    n_test, margin
        Test grid size and its extension beyond the input range.
    seed
        Integer seed.
    dtype
        Floating dtype of the returned arrays.

    Returns
    -------
    :class:`ToyRegression` (sorted training inputs).
    """
    rng = _check_seed(seed)
    if n < 2 or n_test < 1:
        raise ValueError(f"n must be >= 2 and n_test >= 1, got n={n}, n_test={n_test}")
    if not high > low:
        raise ValueError(f"high must exceed low, got low={low}, high={high}")
    if not noise_var > 0:
        raise ValueError(f"noise_var must be positive, got {noise_var!r}")
    x = low + rng.random((n, 1)) * (high - low)
    x, _ = make_random_gap(x, gap_ratio, seed=rng)
    x = np.sort(x, axis=0)
    x_test = np.linspace(low - margin, high + margin, n_test)[:, None]
    f = rbf_gp_sample(
        np.concatenate([x, x_test]), amplitude=amplitude, lengthscale=lengthscale, seed=rng
    )
    noise_std = float(np.sqrt(noise_var))
    y = f[:n] + noise_std * rng.standard_normal((n, 1))
    c = lambda a: np.asarray(a, dtype=dtype)
    return ToyRegression(c(x), c(y), c(x_test), c(f[n:]), noise_std)


_CURVES = {
    "sin": lambda x: np.sin(3.0 * x) + 0.3 * x,
    "cubic": lambda x: x**3 / 8.0,
    "step": lambda x: np.sign(x),
}


def make_regression_1d(
    kind: str = "sin",
    n: int = 100,
    *,
    noise_std: float = 0.1,
    low: float = -2.0,
    high: float = 2.0,
    n_test: int = 200,
    margin: float = 0.5,
    seed: int = 0,
    dtype=np.float32,
) -> ToyRegression:
    r"""Simple seeded 1-D regression curves: :math:`y = f(x) + \varepsilon`.

    ``kind``: ``"sin"`` :math:`f(x) = \sin 3x + 0.3 x`, ``"cubic"`` :math:`f(x) = x^3 / 8`,
    ``"step"`` :math:`f(x) = \operatorname{sign} x`; :math:`x \sim U(\text{low},
    \text{high})`, :math:`\varepsilon \sim N(0, \text{noise\_std}^2)`; the test grid extends
    ``margin`` beyond the input range (to see uncertainty grow away from the data; cf. the
    cubic toy of Hernández-Lobato & Adams, ICML 2015).

    Parameters
    ----------
    kind
        Curve name.
    n
        Number of training points.
    noise_std
        Noise standard deviation (>= 0).
    low, high
        Input range.
    n_test, margin
        Test grid size and its extension.
    seed
        Integer seed.
    dtype
        Floating dtype of the returned arrays.
    """
    if kind not in _CURVES:
        raise ValueError(f"kind must be one of {sorted(_CURVES)}, got {kind!r}")
    if n < 1 or n_test < 1:
        raise ValueError(f"n and n_test must be >= 1, got n={n}, n_test={n_test}")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
    rng = _check_seed(seed)
    f = _CURVES[kind]
    x = np.sort(low + rng.random((n, 1)) * (high - low), axis=0)
    y = f(x) + noise_std * rng.standard_normal((n, 1))
    x_test = np.linspace(low - margin, high + margin, n_test)[:, None]
    c = lambda a: np.asarray(a, dtype=dtype)
    return ToyRegression(c(x), c(y), c(x_test), c(f(x_test)), float(noise_std))


def make_linear_regression(
    n: int = 100,
    d: int = 3,
    *,
    noise_std: float = 0.5,
    weight_std: float = 1.0,
    n_test: int = 100,
    seed: int = 0,
    dtype=np.float32,
):
    r"""Seeded Bayesian linear regression data: :math:`y = X w + \varepsilon`.

    :math:`X_{ij} \sim N(0, 1)`, :math:`w \sim N(0, \text{weight\_std}^2 I)`,
    :math:`\varepsilon \sim N(0, \text{noise\_std}^2)`. With the prior
    :math:`w \sim N(0, \alpha^{-1} I)` the posterior is Gaussian with precision
    :math:`A = \alpha I + X^T X / \sigma^2` and mean :math:`A^{-1} X^T y / \sigma^2`
    (Bishop 2006, "Pattern Recognition and Machine Learning", eq. 3.53-3.54), a closed form
    for sampler tests.

    Parameters
    ----------
    n, d
        Number of training points and inputs.
    noise_std, weight_std
        :math:`\sigma > 0` and the standard deviation of the true weights.
    n_test
        Number of test points.
    seed
        Integer seed.
    dtype
        Floating dtype of the returned arrays.

    Returns
    -------
    ``(data, w)``: a :class:`ToyRegression` and the true weights ``(d, 1)``.
    """
    if n < 1 or d < 1 or n_test < 1:
        raise ValueError(f"n, d, n_test must be >= 1, got {n}, {d}, {n_test}")
    if not (noise_std > 0 and weight_std > 0):
        raise ValueError(
            f"noise_std and weight_std must be positive, got {noise_std!r}, {weight_std!r}"
        )
    rng = _check_seed(seed)
    w = weight_std * rng.standard_normal((d, 1))
    x = rng.standard_normal((n, d))
    y = x @ w + noise_std * rng.standard_normal((n, 1))
    x_test = rng.standard_normal((n_test, d))
    c = lambda a: np.asarray(a, dtype=dtype)
    return ToyRegression(c(x), c(y), c(x_test), c(x_test @ w), float(noise_std)), c(w)
