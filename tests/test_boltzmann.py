"""Monotone deep Boltzmann machines: parameterisation, prox, solvers, gradients, bad input."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mdbm_helpers import host_params

from bayesnn import boltzmann as bm

SPEC = bm.fully_connected_spec(num_visible=12, num_bins=3, num_hidden=6, num_classes=4)
M = 0.05


_host_params = host_params


_monotone = jax.jit(bm.monotone_coupling, static_argnums=(1, 2))
_unconstrained = jax.jit(bm.unconstrained_coupling, static_argnums=1)


@jax.jit
def _solve_jit(coupling, evidence, q0):
    return bm.solver.solve(
        lambda q: bm.model.field(coupling, SPEC, q),
        lambda q: bm.model.clamp(evidence, q),
        q0,
        method="fb",
        max_iter=50,
    )


@pytest.fixture(scope="module")
def params():
    return _host_params(np.random.default_rng(0), SPEC, 4.0, 0.5)


@pytest.fixture(scope="module")
def coupling(params):
    return _monotone(params, SPEC, M)


@pytest.fixture(scope="module")
def evidence():
    rng = np.random.default_rng(1)
    return bm.make_evidence(SPEC, rng.integers(0, 3, (5, 12)), rng.random((5, 12)) < 0.5)


def _matrix_from_matvec(coupling):
    n = bm.parameterization.state_size(SPEC)
    eye = jnp.eye(n)
    sizes = [lay.num_vars * lay.num_states for lay in SPEC.layers]
    offs = np.cumsum([0] + sizes)
    q = tuple(
        eye[:, offs[i] : offs[i + 1]].reshape(n, lay.num_vars, lay.num_states)
        for i, lay in enumerate(SPEC.layers)
    )
    wq = coupling.matvec(SPEC, q)
    return np.asarray(jnp.concatenate([x.reshape(n, -1) for x in wq], axis=1), np.float64)


def test_parameterisation_symmetric_hollow_monotone(params, coupling):
    assert isinstance(SPEC, bm.coupling.ArchitectureSpec)
    assert isinstance(coupling, bm.coupling.CouplingOperator) and coupling.has_resolvent
    W = _matrix_from_matvec(coupling)
    np.testing.assert_allclose(W, W.T, atol=1e-5 * np.abs(W).max())
    var = np.concatenate(
        [
            i * 100 + np.repeat(np.arange(l.num_vars), l.num_states)
            for i, l in enumerate(SPEC.layers)
        ]
    )
    assert np.abs(W[var[:, None] == var[None, :]]).max() < 1e-5
    eye = np.eye(len(W))
    assert np.linalg.eigvalsh(eye - 0.5 * (W + W.T)).min() >= M - 1e-4
    rng = np.random.default_rng(0)
    for _ in range(3):  # clamping keeps the bound (principal submatrices)
        free = rng.random(len(W)) < 0.5
        sub = (eye - W)[np.ix_(free, free)]
        assert np.linalg.eigvalsh(0.5 * (sub + sub.T)).min() >= M - 1e-4
    # the unconstrained weights violate it (the constraint is active)
    Wu = _matrix_from_matvec(bm.unconstrained_coupling(params, SPEC))
    assert np.linalg.eigvalsh(eye - 0.5 * (Wu + Wu.T)).min() < 0
    np.testing.assert_allclose(coupling.dense_matrix(SPEC), W, atol=1e-4)
    assert bm.check_monotone(coupling, SPEC, M)
    # norm cap per row block: m I <= I - W <= (1 + R L) I, still symmetric, hollow, monotone
    assert np.linalg.eigvalsh(eye - W).max() > 1 + 2 * 0.5  # uncapped exceeds the bound
    capped = bm.monotone_coupling(params, SPEC, M, max_norm=0.5)
    Wc = _matrix_from_matvec(capped)
    np.testing.assert_allclose(Wc, Wc.T, atol=1e-5 * np.abs(Wc).max())
    assert np.abs(Wc[var[:, None] == var[None, :]]).max() < 1e-5
    ev = np.linalg.eigvalsh(eye - 0.5 * (Wc + Wc.T))
    assert ev.min() >= M - 1e-4 and ev.max() <= 1 + 2 * 0.5 + 1e-4, (ev.min(), ev.max())
    for row in capped.A:
        S = np.concatenate([np.asarray(a).reshape(a.shape[0], -1) for a in row], axis=1)
        assert np.linalg.norm(S, 2) ** 2 <= 0.5 * (1 + 1e-4)


def test_power_iteration_norms_track_exact(params):
    D = SPEC.block_diagonals(params.A)
    state = bm.parameterization.init_power_state(jax.random.key(3), SPEC)
    for d, u in zip(D, state.u, strict=True):
        est, u2 = bm.parameterization.power_iteration_norms(d, u, 50)
        exact = bm.parameterization.block_spectral_norms(d)
        assert bool(jnp.all(est <= exact * (1 + 1e-5)))
        np.testing.assert_allclose(est, exact, rtol=1e-3)
    c, new_state = bm.monotone_coupling(params, SPEC, M, power_state=state, num_power_iters=50)
    assert bm.check_monotone(c, SPEC, M, atol=1e-3)
    assert len(new_state.u) == len(SPEC.layers)


def test_check_monotone_detects_hand_edits(coupling):
    A = coupling.A
    edited = coupling._replace(A=((2.0 * A[0][0], A[0][1]), A[1]))
    with pytest.raises(ValueError, match="hollow"):
        bm.check_monotone(edited, SPEC, M)
    D2 = SPEC.block_diagonals(edited.A)
    with pytest.raises(ValueError, match="monotonicity constraint: layer 0"):
        bm.check_monotone(edited._replace(D=D2), SPEC, M)


def _sparsemax(y):
    z = np.sort(y)[::-1]
    cs = np.cumsum(z)
    k = np.arange(1, len(y) + 1)
    kk = k[1 + k * z > cs].max()
    tau = (cs[kk - 1] - 1) / kk
    return np.maximum(y - tau, 0)


def test_prox_softmax_kkt_and_sparsemax_limit():
    y = jnp.asarray(3.0 * np.random.default_rng(4).normal(size=(200, 7)), jnp.float32)
    np.testing.assert_allclose(bm.prox.prox_entropy(y, 1.0), jax.nn.softmax(y, -1), atol=1e-7)
    for alpha in (0.1, 0.5, 0.9):
        z = np.asarray(bm.prox.prox_entropy(y, alpha), np.float64)
        np.testing.assert_allclose(z.sum(-1), 1.0, atol=2e-6)
        assert z.min() >= 0
        pos = z > 1e-12
        lhs = (1 - alpha) * z + alpha * np.log(np.where(pos, z, 1.0)) - np.asarray(y)
        nu = np.array([lhs[i][pos[i]].mean() for i in range(len(z))])
        kkt = np.where(pos, lhs - nu[:, None], 0.0)
        assert np.abs(kkt).max() < 1e-4 * (1 + np.abs(np.asarray(y)).max())
    with jax.enable_x64(True):
        y64 = jnp.asarray(np.asarray(y[:20]), jnp.float64)
        zs = np.asarray(bm.prox.prox_entropy(y64, 1e-3, 30, 5))
    sm = np.stack([_sparsemax(np.asarray(r, np.float64)) for r in np.asarray(y[:20])])
    assert np.abs(zs - sm).max() < 2e-2


def test_prox_vjp_matches_finite_differences():
    with jax.enable_x64(True):
        y = jnp.asarray(np.random.default_rng(5).normal(size=(3, 5)) * 2.0)
        v = jnp.asarray(np.random.default_rng(6).normal(size=(3, 5)))
        for alpha in (0.3, 1.0):
            f = jax.jit(lambda x, a=alpha: jnp.sum(v * bm.prox.prox_entropy(x, a, 30, 5)))
            g = jax.grad(f)(y)
            eps = 1e-6
            basis = jnp.eye(15).reshape(15, 3, 5) * eps
            num = (jax.vmap(f)(y[None] + basis) - jax.vmap(f)(y[None] - basis)) / (2 * eps)
            np.testing.assert_allclose(g, num.reshape(3, 5), atol=1e-6)


@partial(jax.jit, static_argnums=2)
def _infer_and_residual(coupling, evidence, config):
    q, info = bm.infer(coupling, SPEC, evidence, config=config)
    res = bm.solver.mean_field_residual(
        lambda z: bm.model.field(coupling, SPEC, z), lambda z: bm.model.clamp(evidence, z), q
    )
    return q, info, res


def test_fixed_point_unique_and_solvers_agree(params, coupling, evidence):
    cfg = bm.SolverConfig(tol=1e-6, max_iter=300)
    multistart = jax.jit(
        lambda c, ev: bm.multistart_mean_field(jax.random.key(7), c, SPEC, ev, 6, cfg)
    )
    qs, info = multistart(coupling, evidence)
    assert bool(jnp.all(info.converged))
    assert float(jnp.max(bm.fixed_point_spread(qs))) < 1e-4
    ref = qs[-1][0]
    # Anderson capped at 2 evaluations fails; the automatic fallback (PR at alpha = 0.5) then
    # solves every example from the start, and says so (the damped-FB fallback: conv tests)
    c = bm.SolverConfig(max_iter=2, tol=1e-6, fallback="pr", fallback_alpha=0.5)
    q, inf, res = _infer_and_residual(coupling, evidence, c)
    assert bool(inf.fallback) and bool(jnp.all(inf.converged)), inf
    assert int(inf.num_steps) > 2
    np.testing.assert_allclose(q[-1], ref, atol=1e-4)
    assert float(jnp.max(res)) < 1e-6
    # baseline without the constraint: several fixed points or no convergence
    qs_u, info_u = multistart(_unconstrained(params, SPEC), evidence)
    spread = bm.fixed_point_spread(qs_u)
    assert float(jnp.max(spread)) > 0.1 or not bool(jnp.all(info_u.converged))


def test_pr_resolvent_matches_dense_inverse(coupling):
    alpha = 0.7
    W = _matrix_from_matvec(coupling)
    n = len(W)
    V = np.linalg.inv((1 + alpha) * np.eye(n) - alpha * W)
    v = np.random.default_rng(8).normal(size=(2, n)).astype(np.float32)
    sizes = [lay.num_vars * lay.num_states for lay in SPEC.layers]
    offs = np.cumsum([0] + sizes)
    vt = tuple(
        jnp.asarray(v[:, offs[i] : offs[i + 1]].reshape(2, lay.num_vars, lay.num_states))
        for i, lay in enumerate(SPEC.layers)
    )
    out = bm.model.pr_resolvent(coupling, SPEC, alpha)(vt)
    out = np.concatenate([x.reshape(2, -1) for x in out], axis=1)
    np.testing.assert_allclose(out, v @ V.T, atol=1e-4)


@pytest.mark.parametrize("method", ["gmres", "bicgstab"])
def test_adjoint_solve_is_scale_free(method):
    """``(I - J)^T u = c`` with ``J^T = W D`` as at a mean-field fixed point (``W`` symmetric,
    ``W <= 0.45 I``, ``D`` positive diagonal: eigenvalues of ``J`` below 1, spectral radius
    ~4): the solution of the dense system, to the solver's tolerance, for a cotangent of
    norm 1 and of norm 1e-8 (an example the loss barely sees); the returned residual is
    relative to ``|c|``."""
    rng = np.random.default_rng(0)
    n = 60
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    w = (q * np.linspace(-4.0, 0.45, n)) @ q.T
    jt = jnp.asarray(w * rng.uniform(0.05, 1.0, n)[None], jnp.float32)
    c = rng.standard_normal(n)
    options = bm.implicit.BackwardOptions(method=method, tol=1e-5)
    for scale in (1.0, 1e-8):
        cot = jnp.asarray(scale * c / np.linalg.norm(c), jnp.float32)
        u, res = bm.implicit.adjoint_solve(lambda v: jt @ v, cot, options)
        exact = np.linalg.solve(
            np.eye(n) - np.asarray(jt, np.float64), np.asarray(cot, np.float64)
        )
        assert float(res) < 1e-4
        np.testing.assert_allclose(u, exact, rtol=0, atol=1e-3 * np.abs(exact).max())


def test_implicit_gradient_matches_unrolled(params, evidence):
    def out(q):
        return jnp.sum(jnp.log(q[-1][:, 0]) * jnp.arange(4.0)[None]) + jnp.sum(q[1][..., 0] ** 2)

    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), params)
        ev = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), evidence)
        cfg = bm.SolverConfig(
            tol=1e-11,
            max_iter=200,
            backward=bm.implicit.BackwardOptions(tol=1e-11, maxiter=10),
            fallback=None,
        )

        def loss(p):
            q, _ = bm.infer(bm.monotone_coupling(p, SPEC, M), SPEC, ev, config=cfg)
            return out(q)

        def loss_unrolled(p):
            c = bm.monotone_coupling(p, SPEC, M)
            q = bm.model.uniform_state(SPEC, 5)
            q = jax.lax.fori_loop(0, 400, lambda i, q: bm.model.mean_field_map(c, SPEC, ev, q), q)
            return out(q)

        g1 = jax.jit(jax.grad(loss))(p64)
        g2 = jax.jit(jax.grad(loss_unrolled))(p64)
        for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-7 * (1 + float(jnp.abs(b).max())))


def test_nonconvergence_is_flagged_and_raised(params, coupling):
    pix = jnp.asarray(np.random.default_rng(9).integers(0, 3, (4, 12)))
    mask = jnp.zeros((4, 12), bool)
    cfg = bm.SolverConfig(method="fb", alpha=1.0, max_iter=2)  # softmax only: cheap compile
    with pytest.raises(bm.ConvergenceError, match="did not converge"):
        bm.complete(coupling, SPEC, pix, mask, cfg)
    _, _, info = bm.complete(coupling, SPEC, pix, mask, cfg, on_failure="flag")
    assert not bool(jnp.any(info.converged)) and int(info.num_steps) == 2
    assert not bool(info.fallback)  # only Anderson falls back
    # plain mean field (alpha = 1) on the unconstrained weights: never reported as converged
    cu = bm.unconstrained_coupling(
        params._replace(A=jax.tree.map(lambda a: 3 * a, params.A)), SPEC
    )
    ev = bm.make_evidence(SPEC, pix, mask)
    _, info = _solve_jit(cu, ev, bm.model.uniform_state(SPEC, 4))
    assert not bool(jnp.all(info.converged))


def test_bad_input(coupling, params):
    with pytest.raises(ValueError, match="images must lie in"):
        bm.bin_images(np.full((2, 8, 8), 17.0), 4, 16)
    with pytest.raises(ValueError, match="NaN"):
        bm.bin_images(np.full((2, 8, 8), np.nan), 4, 16)
    pix = jnp.zeros((2, 12), jnp.int32)
    with pytest.raises(ValueError, match="mask must have shape"):
        bm.complete(coupling, SPEC, pix, jnp.ones((2, 11), bool))
    with pytest.raises(ValueError, match="pixels must have shape"):
        bm.complete(coupling, SPEC, jnp.zeros((2, 13), jnp.int32), jnp.ones((2, 13), bool))
    with pytest.raises(ValueError, match="bin indices"):
        bm.complete(coupling, SPEC, pix + 3, jnp.ones((2, 12), bool))
    with pytest.raises(ValueError, match="alpha"):
        bm.prox.prox_entropy(jnp.zeros(3), 1.5)
    with pytest.raises(ValueError, match="m must be"):
        bm.monotone_coupling(params, SPEC, 1.0)
    with pytest.raises(ValueError, match="method"):
        bm.solver.solve(lambda q: q, lambda q: q, (jnp.zeros((1, 2, 2)),), method="newton")
    q0 = (jnp.full((1, 2, 2), 0.5),)
    with pytest.raises(ValueError, match="fallback"):
        bm.solver.solve(lambda q: q, lambda q: q, q0, max_iter=2, fallback="newton")
    with pytest.raises(ValueError, match="make_resolvent"):
        bm.solver.solve(lambda q: q, lambda q: q, q0, max_iter=2, fallback="pr")
    with pytest.raises(ValueError, match="gamma"):
        bm.train.focal_loss(jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32), gamma=-1.0)
    with pytest.raises(ValueError, match="beta"):
        bm.train.class_balanced_weights(np.zeros((2, 3), int), 3, beta=1.5)
    with pytest.raises(ValueError, match="class_weights"):
        bm.train.make_train_step(SPEC, None, bm.TrainingConfig(class_weights=jnp.ones(5)))
    with pytest.raises(ValueError, match="num_hidden"):
        bm.fully_connected_spec(4, 2, 0, 3)
    with pytest.raises(ValueError, match="hidden_fraction"):
        bm.random_masks(jax.random.key(0), (2, 3), 1.5)
    with pytest.raises(ValueError, match="hidden_fraction"):
        bm.random_masks(jax.random.key(0), (2, 3), (0.5, 0.2))
    with pytest.raises(ValueError, match="mixing"):
        bm.solver.solve(lambda q: q, lambda q: q, q0, mixing=0.0)


def test_bin_images_and_checkpoint(tmp_path, params):
    x = np.array([[[0.0, 3.9], [4.0, 16.0]]])
    np.testing.assert_array_equal(bm.bin_images(x, 4, 16), [[0, 0, 1, 3]])
    path = tmp_path / "ckpt.npz"
    bm.save_checkpoint(path, params)
    back = bm.load_checkpoint(path, params)
    for a, b in zip(
        jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(params), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_focal_loss_closed_forms():
    rng = np.random.default_rng(12)
    logp = jax.nn.log_softmax(jnp.asarray(2.0 * rng.normal(size=(40, 4)), jnp.float32), -1)
    y = jnp.asarray(rng.integers(0, 4, 40))
    sel = jnp.asarray(rng.random(40) < 0.6)
    lp = np.asarray(logp, np.float64)[np.arange(40), np.asarray(y)]
    s = np.asarray(sel, np.float64)
    ce = -(lp * s).sum() / s.sum()
    # gamma = 0 with uniform weights (any constant) is the cross-entropy
    np.testing.assert_allclose(bm.train.focal_loss(logp, y, None, 0.0, sel), ce, rtol=1e-5)
    np.testing.assert_allclose(
        bm.train.focal_loss(logp, y, 3 * jnp.ones(4), 0.0, sel), ce, rtol=1e-5
    )
    w = np.array([0.5, 1.0, 2.0, 0.5])
    foc = w[np.asarray(y)] * (1 - np.exp(lp)) ** 2 * -lp
    want = (foc * s).sum() / (w[np.asarray(y)] * s).sum()
    np.testing.assert_allclose(
        bm.train.focal_loss(logp, y, jnp.asarray(w), 2.0, sel), want, rtol=1e-5
    )
    assert float(bm.train.focal_loss(logp, y, None, 2.0, sel)) < ce  # focusing down-weights
    # class-balanced weights: inverse effective numbers, mean 1
    pix = np.repeat(np.arange(3), [100, 10, 1])
    n = np.array([100.0, 10.0, 1.0])
    for beta in (0.9, 0.999):
        e = (1 - beta) / (1 - beta**n)
        np.testing.assert_allclose(
            bm.train.class_balanced_weights(pix, 3, beta), e / e.mean(), rtol=1e-5
        )
    np.testing.assert_allclose(
        bm.train.class_balanced_weights(pix, 3, 1.0), (1 / n) / (1 / n).mean(), rtol=1e-5
    )
    np.testing.assert_allclose(bm.train.class_balanced_weights(pix, 3, 0.0), np.ones(3), rtol=1e-6)


def test_stacked_field_matches_dense_w_under_jit():
    """Every batch row of the jitted solver field equals ``W q + b`` from the materialised W
    (up to the constant per variable that the solver field drops).

    Regression: jax 0.10.2's XLA CPU miscompiled the D q broadcast-sum fused with the stacked
    matmul, corrupting batch rows >= 20 under jit (eager was right); small batches hid it.
    """
    spec = bm.fully_connected_spec(num_visible=784, num_bins=2, num_hidden=20, num_classes=10)
    rng = np.random.default_rng(3)
    cpl = _monotone(_host_params(rng, spec, 4.0, 0.5), spec, M)
    W = np.asarray(cpl.dense_matrix(spec), np.float64)
    b = np.concatenate([np.asarray(x).reshape(-1) for x in cpl.b])
    batch = 32
    q = tuple(
        jax.nn.softmax(jnp.asarray(rng.normal(size=(batch, lay.num_vars, lay.num_states))), -1)
        for lay in spec.layers
    )
    qf = np.concatenate([np.asarray(x, np.float64).reshape(batch, -1) for x in q], axis=1)
    want = qf @ W.T + b
    got = jax.jit(lambda c, q: c.solver_field(spec)(q))(cpl, q)
    got = np.concatenate([np.asarray(x).reshape(batch, -1) for x in got], axis=1)
    # the solver field is W q + b up to a constant per variable: compare state differences
    ks = np.concatenate([np.full(lay.num_vars, lay.num_states) for lay in spec.layers])
    first = np.repeat(np.cumsum(np.concatenate([[0], ks[:-1]])), ks)
    got, want = got - got[:, first], want - want[:, first]
    err = np.abs(got - want).max(axis=1)
    assert np.all(err < 1e-4 * (1 + np.abs(want).max())), np.nonzero(err > 1e-3)[0]


def test_out_of_range_pixels_and_labels_raise_naming_the_argument(params):
    """Indices outside the states would be one-hot encoded as all zeros (silently no
    evidence); make_evidence and fit refuse them, before any compilation."""
    rng = np.random.default_rng(13)
    pix = rng.integers(0, 3, (4, 12))
    mask = np.ones((4, 12), bool)
    for bad, match in (
        (pix + 3, r"make_evidence: pixels must lie in \[0, 3\), got values in \[3, 5\]"),
        (pix - 3, r"make_evidence: pixels must lie in \[0, 3\)"),
        (pix + 0.5, "make_evidence: pixels must be integer indices"),
    ):
        with pytest.raises(ValueError, match=match):
            bm.make_evidence(SPEC, bad, mask)
    for labels, match in (
        (np.array([0, 1, 4, 2]), r"make_evidence: labels must lie in \[0, 4\)"),
        (np.array([0, -1, 2, 2]), r"make_evidence: labels must lie in \[0, 4\)"),
        (np.array([0.0, 1.0, 2.0, 3.0]), "make_evidence: labels must be integer"),
    ):
        with pytest.raises(ValueError, match=match):
            bm.make_evidence(SPEC, pix, mask, labels=labels)
    ev = bm.make_evidence(SPEC, pix, mask, labels=np.array([0, 1, 2, 3]))  # the edges pass
    np.testing.assert_array_equal(np.asarray(ev.values[-1]).sum(-1), 1.0)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"fit: labels must lie in \[0, 4\)"):
        bm.fit(key, SPEC, params, pix, np.array([0, 1, 2, 4]), batch_size=2)
    with pytest.raises(ValueError, match=r"fit: pixels must lie in \[0, 3\)"):
        bm.fit(key, SPEC, params, pix + 1, np.array([0, 1, 2, 3]), batch_size=2)
    with pytest.raises(ValueError, match="fit: pixels must be integer"):
        bm.fit(key, SPEC, params, pix / 3.0, np.array([0, 1, 2, 3]), batch_size=2)


def test_fully_connected_spec_rejects_single_state_variables():
    """A categorical unit with one state carries nothing (its softmax is constant)."""
    for kwargs, name in (
        (dict(num_bins=1), "num_bins"),
        (dict(num_classes=1), "num_classes"),
        (dict(hidden_states=1), "hidden_states"),
        (dict(num_bins=2.5), "num_bins"),
    ):
        args = dict(num_visible=4, num_bins=2, num_hidden=3, num_classes=3) | kwargs
        with pytest.raises(ValueError, match=f"fully_connected_spec: {name} must be"):
            bm.fully_connected_spec(**args)
    spec = bm.fully_connected_spec(4, 2, 3, 2, hidden_states=2)  # the smallest valid one
    assert [lay.num_states for lay in spec.layers] == [2, 2, 2]


def test_checkpoint_is_atomic_and_shape_checked(tmp_path, params, monkeypatch):
    """A save that dies mid-write leaves the previous checkpoint intact (temp file + fsync +
    rename, no temp file left behind); loading into a template of another architecture or
    dtype raises, naming the leaf."""
    path = tmp_path / "ckpt.npz"
    bm.save_checkpoint(path, params)
    real_savez = np.savez

    def dying_savez(f, *arrays):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(bm.train.np, "savez", dying_savez)
    doubled = jax.tree_util.tree_map(lambda x: 2 * x, params)
    with pytest.raises(OSError, match="disk full"):
        bm.save_checkpoint(path, doubled)
    monkeypatch.setattr(bm.train.np, "savez", real_savez)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]
    back = bm.load_checkpoint(path, params)
    for a, b in zip(
        jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    other = bm.fully_connected_spec(num_visible=12, num_bins=3, num_hidden=5, num_classes=4)
    like = host_params(np.random.default_rng(0), other, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"leaf .*A.*\[0\]\[0\] has shape \(12, 12, 3\)"):
        bm.load_checkpoint(path, like)
    as_int = jax.tree_util.tree_map(lambda x: np.asarray(x, np.int32), params)
    with pytest.raises(ValueError, match="dtype float32, the template .* int32"):
        bm.load_checkpoint(path, as_int)
    with pytest.raises(ValueError, match="holds 7 arrays, the template 3"):
        bm.load_checkpoint(path, (params.A[0][0], params.A[0][1], params.b[0]))


def test_fit_reports_metrics_per_epoch_and_names_the_failed_step(params, monkeypatch):
    """fit keeps step metrics on the device and checks them once per epoch: the history holds
    per-epoch means (and the max of num_steps); with on_failure='raise' a non-converged step
    is reported by its global step number. (A stand-in step: no compilation.)"""
    conv = iter([1.0, 1.0, 1.0, 0.5, 1.0, 1.0])
    seen = []

    def fake_make_train_step(spec, optimizer, training, config):
        def step(state, rng_key, pixels, labels):
            seen.append(pixels.shape)
            k = len(seen)
            met = dict(
                loss=jnp.float32(k),
                converged=jnp.float32(next(conv)),
                residual=jnp.float32(1e-5 * k),
                num_steps=jnp.int32(10 + k),
            )
            return state._replace(step=state.step + 1), met

        return step

    monkeypatch.setattr(bm.train, "make_train_step", fake_make_train_step)
    rng = np.random.default_rng(14)
    pix, lab = rng.integers(0, 3, (7, 12)), rng.integers(0, 4, 7)
    key = jax.random.key(0)
    state, hist = bm.fit(key, SPEC, params, pix, lab, num_epochs=1, batch_size=2)
    assert seen == [(2, 12)] * 3 and int(state.step) == 3  # the last incomplete batch dropped
    keys = ["loss", "converged", "residual", "num_steps", "num_steps_max"]
    assert len(hist) == 1 and sorted(hist[0]) == sorted(keys)
    np.testing.assert_allclose([hist[0][k] for k in keys], [2, 1, 2e-5, 12, 13], rtol=1e-6)
    with pytest.raises(bm.ConvergenceError, match="training step 4: loss 4, 50.0%"):
        bm.fit(key, SPEC, params, pix, lab, num_epochs=2, batch_size=2, state=state)
    assert len(seen) == 6  # the failed step's epoch ran to its end before the check
