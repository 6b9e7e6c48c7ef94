"""Tests of the infinite-width NNGP/NTK kernels (bayesnn.nn.kernels)."""

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from bayesnn.nn import kernels, stax
from bayesnn.nn.kernels import kernel_fn


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    """OpenBLAS threads spin on a loaded 2-core machine (a 500 x 500 Cholesky: 0.5 s instead
    of 0.006 s); one thread for this module's LAPACK calls, restored afterwards."""
    with threadpool_limits(1, user_api="blas"):
        yield


def _ref(x, layers, readout=(1.5, 0.05)):
    """Independent NumPy recursion (ntk parameterisation). layers: [(W, b, act), ...]."""
    d = x.shape[1]
    K = x @ x.T / d
    T = np.zeros_like(K)
    first = True
    for W, b, act in layers:
        b2 = 0.0 if b is None else b**2
        K = W**2 * K + b2
        T = K + (0.0 if first else W**2) * T
        first = False
        v = np.diag(K).copy()
        det = np.maximum(np.outer(v, v) - K**2, 0.0)
        np.fill_diagonal(det, 0.0)
        s = np.sqrt(det)
        th = np.arctan2(s, K)
        if act == "relu":
            E, Ed = (s + (np.pi - th) * K) / (2 * np.pi), (np.pi - th) / (2 * np.pi)
        elif act == "erf":
            P = np.outer(1 + 2 * v, 1 + 2 * v)
            E = 2 / np.pi * np.arcsin(2 * K / np.sqrt(P))
            Ed = 4 / np.pi / np.sqrt(P - 4 * K**2)
        K, T = E, Ed * T
    W, b = readout
    b2 = 0.0 if b is None else b**2
    K = W**2 * K + b2
    return K, K + W**2 * T


def _key(seed):
    """PRNG key for random initialisations; "unsafe_rbg" compiles much faster than threefry."""
    return jax.random.key(seed, impl="unsafe_rbg")


@functools.cache  # same Layer object -> kernel_fn's compiled cache is hit
def _mlp(act, depth, W=1.5, b=0.05, readout_b=0.05, width=512, param="ntk"):
    act_layer = {"relu": stax.Relu, "erf": stax.Erf, "tanh": stax.Tanh}[act]
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(width, W, b, param), act_layer()]
    return stax.serial(*layers, stax.Dense(1, W, readout_b, param))


@pytest.fixture(scope="module")
def x_hard():
    """Gaussian inputs plus an exactly-zero row and two near-duplicate rows."""
    x = np.random.default_rng(0).normal(size=(7, 3))
    x[0] = 0.0
    x[5] = x[4] + 1e-9
    return x


@pytest.mark.parametrize("act", ["relu", "erf"])
@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("readout_b", [0.05, None])
def test_closed_form_against_numpy_recursion(x_hard, act, depth, readout_b):
    with jax.enable_x64(True):
        arch = _mlp(act, depth, readout_b=readout_b)
        K, T = kernel_fn(arch, jnp.asarray(x_hard))
        assert K.dtype == jnp.float64
        Kr, Tr = _ref(x_hard, [(1.5, 0.05, act)] * depth, (1.5, readout_b))
        np.testing.assert_allclose(K, Kr, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(T, Tr, rtol=1e-10, atol=1e-13)


def test_one_relu_layer_is_arc_cosine_kernel():
    """K = ||x|| ||x'|| (sin t + (pi - t) cos t) / (2 pi d) (Cho & Saul 2009), no biases."""
    with jax.enable_x64(True):
        x = np.random.default_rng(1).normal(size=(5, 4))
        arch = stax.serial(stax.Dense(8, 1.0, None), stax.Relu())
        K = kernel_fn(arch, jnp.asarray(x), get="nngp")
        n = np.linalg.norm(x, axis=1)
        c = np.clip(x @ x.T / np.outer(n, n), -1, 1)
        t = np.arccos(c)
        ref = np.outer(n, n) / 4 * (np.sqrt(1 - c**2) + (np.pi - t) * c) / (2 * np.pi)
        np.testing.assert_allclose(K, ref, rtol=1e-9, atol=1e-12)


def test_abrelu_against_quadrature_and_identity():
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(2).normal(size=(5, 3)))
        closed = stax.serial(stax.Dense(4, 1.2, 0.1), stax.ABRelu(-0.3, 0.8), stax.Dense(1))
        quad = stax.serial(
            stax.Dense(4, 1.2, 0.1),
            stax.Elementwise(lambda u: -0.3 * jnp.minimum(u, 0) + 0.8 * jnp.maximum(u, 0), "q"),
            stax.Dense(1),
        )
        Kc, Tc = kernel_fn(closed, x)
        Kq, Tq = kernel_fn(quad, x)
        # the Hermite series converges slowly for kinks (the fallback is meant for smooth
        # activations; see the erf test for its accuracy there).
        np.testing.assert_allclose(Kq, Kc, rtol=2e-3, atol=1e-4)
        np.testing.assert_allclose(Tq, Tc, rtol=3e-2, atol=1e-3)
        lin = stax.serial(stax.Dense(4, 1.2, 0.1), stax.ABRelu(1.0, 1.0), stax.Dense(1))
        ident = stax.serial(stax.Dense(4, 1.2, 0.1), stax.Identity(), stax.Dense(1))
        for a, b in zip(kernel_fn(lin, x), kernel_fn(ident, x), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)


def test_quadrature_matches_erf_closed_form():
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(3).normal(size=(6, 2)))
        closed = stax.serial(stax.Dense(4, 0.8, 0.1), stax.Erf(), stax.Dense(1, 0.8, 0.1))
        quad = stax.serial(
            stax.Dense(4, 0.8, 0.1),
            stax.Elementwise(jax.scipy.special.erf, "erf_q"),
            stax.Dense(1, 0.8, 0.1),
        )
        for a, b in zip(kernel_fn(quad, x), kernel_fn(closed, x), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("act", ["relu", "erf", "tanh"])
def test_psd_on_random_inputs(act):
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(4).normal(size=(40, 5)))
        K, T = kernel_fn(_mlp(act, 2), x)
        for M in (K, T):
            np.testing.assert_allclose(M, M.T, rtol=1e-12, atol=1e-14)
            ev = np.linalg.eigvalsh(np.asarray(M))
            assert ev.min() > -1e-10 * ev.max()


def test_float32_ntk_diagonal_accuracy():
    x = np.random.default_rng(5).normal(size=(300, 10))
    arch = _mlp("relu", 3)
    K32, T32 = kernel_fn(arch, jnp.asarray(x, jnp.float32))
    assert T32.dtype == jnp.float32
    with jax.enable_x64(True):
        K64, T64 = kernel_fn(arch, jnp.asarray(x))
    for a, b in ((K32, K64), (T32, T64)):
        a, b = np.asarray(a, np.float64), np.asarray(b)
        assert np.abs(np.diag(a) - np.diag(b)).max() / np.abs(b).max() < 1e-6
        assert np.abs(a - b).max() / np.abs(b).max() < 1e-6


def test_blocked_equals_full():
    x = jnp.asarray(np.random.default_rng(6).normal(size=(11, 3)), jnp.float32)
    y = jnp.asarray(np.random.default_rng(7).normal(size=(5, 3)), jnp.float32)
    arch = _mlp("relu", 2)
    for x2 in (None, y):
        full = kernel_fn(arch, x, x2)
        blocked = kernel_fn(arch, x, x2, block_size=4)
        for a, b in zip(full, blocked, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        if x2 is None:  # the exact diagonal is kept when blocking
            np.testing.assert_array_equal(np.diag(blocked[1]), np.diag(full[1]))


@pytest.mark.parametrize("act", ["relu", "erf", "tanh"])
def test_gradients_finite_at_diagonal_and_zero(act, x_hard):
    """d/dx and d/d(W_std, b_std) at duplicate rows, a zero row and b_std = 0 (depth 2)."""
    x = jnp.asarray(x_hard, jnp.float32).at[3].set(x_hard[2])  # exact duplicate rows
    fn = {"relu": jax.nn.relu, "erf": jax.scipy.special.erf, "tanh": jnp.tanh}[act]

    def f(x, w, b):
        t = kernels.dense_kernel(w, b, "ntk")
        a = kernels.activation_kernel(act, fn)
        k = t(a(t(a(t(kernels.input_kernel(x))))))
        return jnp.sum(k.nngp) + jnp.sum(k.ntk)

    grads = jax.jit(jax.grad(f, argnums=(0, 1, 2)))(x, 1.3, 0.0)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)
    assert np.any(np.asarray(grads[0]) != 0) and float(grads[1]) != 0


def test_finite_network_covariance_matches_nngp():
    """Empirical output covariance over random inits -> NNGP (width 512, 50 draws x 128 outputs).

    Output units are independent given the hidden layers, so many readout units per draw
    cut the Monte Carlo error at a fraction of the cost of more draws.
    """
    x = jnp.asarray(np.random.default_rng(8).normal(size=(4, 3)), jnp.float32)
    arch = stax.serial(
        stax.Dense(512, 1.5, 0.1),
        stax.Relu(),
        stax.Dense(512, 1.5, 0.1),
        stax.Erf(),
        stax.Dense(128, 1.5, 0.1),
    )
    mean, se = kernels.monte_carlo_nngp(arch, _key(0), x, n_samples=50)
    K = kernel_fn(arch, x, get="nngp")
    # Monte Carlo error (4.5 s.e.) plus the O(1/width) finite-width bias
    tol = 4.5 * se + 4.0 / 512 * jnp.abs(K)
    assert np.all(np.abs(mean - K) <= tol), (mean, K, se)
    assert np.all(se < 0.05 * jnp.abs(K).max())  # the check is not vacuous


@pytest.mark.parametrize("param", ["ntk", "standard"])
def test_empirical_ntk_approaches_analytic(param):
    x = jnp.asarray(np.random.default_rng(9).normal(size=(3, 2)), jnp.float32)
    width = 512
    arch = stax.serial(
        stax.Dense(width, 1.4, 0.2, param),
        stax.Relu(),
        stax.Dense(width, 1.4, 0.2, param),
        stax.Relu(),
        stax.Dense(1, 1.4, 0.2, param),
    )
    theta = kernel_fn(arch, x, get="ntk")
    keys = jax.random.split(_key(1), 6)
    ntk_fn = jax.jit(jax.vmap(lambda k: kernels.empirical_ntk(arch.apply, arch.init(k, (2,)), x)))
    draws = ntk_fn(keys)
    mean = draws.mean(0)
    se = draws.std(0, ddof=1) / np.sqrt(len(keys))
    tol = 4.5 * se + 4.0 / width * jnp.abs(theta)
    assert np.all(np.abs(mean - theta) <= tol), (mean, theta, se)


def test_parameterisations_share_nngp():
    x = jnp.asarray(np.random.default_rng(10).normal(size=(5, 3)), jnp.float32)
    a = kernel_fn(_mlp("relu", 2, param="ntk"), x, get="nngp")
    b = kernel_fn(_mlp("relu", 2, param="standard"), x, get="nngp")
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_bad_inputs():
    arch = _mlp("relu", 1)
    x = jnp.ones((3, 2))
    with pytest.raises(ValueError, match="x1"):
        kernel_fn(arch, jnp.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        kernel_fn(arch, x.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="x2"):
        kernel_fn(arch, x, jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="get"):
        kernel_fn(arch, x, get="cov")
    with pytest.raises(ValueError, match="block_size"):
        kernel_fn(arch, x, block_size=0)
    with pytest.raises(ValueError, match="Dense"):
        kernel_fn(stax.serial(stax.Relu(), stax.Dense(1)), x)
    with pytest.raises(ValueError, match="architecture"):
        kernel_fn(3, x)
    with pytest.raises(ValueError, match="parameterization"):
        kernels.dense_kernel(1.0, 0.0, "mean_field")
    with pytest.raises(ValueError, match="n_samples"):
        kernels.monte_carlo_nngp(arch, jax.random.key(0), x, n_samples=1)


def test_public_names_documented():
    for name in kernels.__all__:
        obj = getattr(kernels, name)
        assert inspect.getdoc(obj), name
