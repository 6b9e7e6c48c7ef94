"""Convolutional monotone couplings: symmetric, hollow, I - W >= m I, unique fixed point."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnn import boltzmann as bm

# 6x6 visible image with 2 states (2 channels), a 3x3 hidden tier of 2 groups x 2 states, a
# 3-way label: lateral visible conv (row 0), visible + hidden (stride 2, row 1), hidden (full
# 3x3 kernel: dense) + label (row 2).
SPEC = bm.ConvMDBMSpec(
    layers=(bm.ConvLayer(6, 6, 1, 2), bm.ConvLayer(3, 3, 2, 2), bm.ConvLayer(1, 1, 1, 3)),
    rows=(
        bm.ConvRow(3, 6, 6, ((0, 3),)),
        bm.ConvRow(4, 3, 3, ((0, 3), (1, 3))),
        bm.ConvRow(3, 1, 1, ((1, 3), (2, 1))),
    ),
)
M = 0.05


def _params(scale):
    rng = np.random.default_rng(0)
    p = bm.init_params(jax.random.key(0), SPEC, scale)
    b = tuple(jnp.asarray(0.5 * rng.normal(size=x.shape), jnp.float32) for x in p.b)
    return p._replace(b=b)


@jax.jit
def _matrix_jit(coupling):
    n = bm.parameterization.state_size(SPEC)
    eye = jnp.eye(n)
    q, i = [], 0
    for lay in SPEC.layers:
        size = lay.num_vars * lay.num_states
        q.append(eye[:, i : i + size].reshape(n, lay.num_vars, lay.num_states))
        i += size
    wq = coupling.matvec(SPEC, tuple(q))
    return jnp.concatenate([x.reshape(n, -1) for x in wq], axis=1)


def _matrix(coupling):
    return np.asarray(_matrix_jit(coupling), np.float64)


@pytest.fixture(scope="module")
def params():
    return _params(4.0)


def test_conv_coupling_symmetric_hollow_monotone(params):
    c = jax.jit(bm.monotone_coupling, static_argnums=(1, 2))(params, SPEC, M)
    assert isinstance(SPEC, bm.coupling.ArchitectureSpec)
    assert isinstance(c, bm.coupling.CouplingOperator) and not c.has_resolvent
    W = _matrix(c)
    n = len(W)
    assert n == 36 * 2 + 9 * 4 + 3
    assert np.abs(W).max() > 0.05  # not trivially zero
    np.testing.assert_allclose(W, W.T, atol=1e-5)
    var = np.concatenate(
        [
            i * 1000 + np.repeat(np.arange(l.num_vars), l.num_states)
            for i, l in enumerate(SPEC.layers)
        ]
    )
    assert np.abs(W[var[:, None] == var[None, :]]).max() < 1e-5  # zero diagonal blocks
    # D from the kernel taps = blockdiag(A^T A) of the operator: hollowness above; and the
    # constraint is active: the unscaled weights violate I - W >= m I
    assert np.linalg.eigvalsh(np.eye(n) - W).min() >= M - 1e-4
    Wu = _matrix(bm.unconstrained_coupling(params, SPEC))
    np.testing.assert_allclose(Wu, Wu.T, atol=1e-4)
    assert np.abs(Wu[var[:, None] == var[None, :]]).max() < 1e-4
    assert np.linalg.eigvalsh(np.eye(n) - Wu).min() < 0
    assert bm.check_monotone(c, SPEC, M)
    # couplings are local: visible pixels 3 apart in a row interact only through row 1
    # (stride 2, 3x3), pixels 5 apart not at all
    v = np.arange(36).reshape(6, 6)
    blk = W[:72, :72].reshape(36, 2, 36, 2)
    assert np.abs(blk[v[0, 0], :, v[0, 5], :]).max() == 0.0
    assert np.abs(blk[v[0, 0], :, v[0, 1], :]).max() > 0.0


def test_conv_fixed_point_unique_and_fallback(params):
    c = bm.monotone_coupling(params, SPEC, M)
    rng = np.random.default_rng(1)
    pix = rng.integers(0, 2, (3, 36))
    ev = bm.make_evidence(SPEC, pix, rng.random((3, 36)) < 0.5)
    cfg = bm.SolverConfig(tol=1e-6, max_iter=300, fallback=None)
    qs, info = jax.jit(bm.multistart_mean_field, static_argnums=(2, 4, 5))(
        jax.random.key(7), c, SPEC, ev, 4, cfg
    )
    assert bool(jnp.all(info.converged))
    assert float(jnp.max(bm.fixed_point_spread(qs))) < 1e-4
    # infer() with Anderson capped at 2 evaluations: the automatic fallback (damped FB for
    # conv models, which have no Woodbury resolvent) converges to the same point, flagged
    cfg2 = bm.SolverConfig(max_iter=2, tol=1e-6, fallback="pr", fallback_alpha=0.5)
    q, info = jax.jit(bm.infer, static_argnums=(1, 4))(c, SPEC, ev, None, cfg2)
    assert bool(info.fallback) and bool(jnp.all(info.converged)), info
    np.testing.assert_allclose(q[-1], qs[-1][0], atol=1e-4)
    with pytest.raises(ValueError, match="dense"):
        bm.model.pr_resolvent(c, SPEC, 0.5)
    with pytest.raises(ValueError, match="divide"):
        bm.conv.conv_geometry(bm.ConvLayer(6, 6, 1, 2), bm.ConvRow(2, 4, 4, ()), 3)
