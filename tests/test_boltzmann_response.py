"""Linear response at the mean-field fixed point and the monotone covariance bound."""

import jax
import jax.numpy as jnp
import numpy as np
from mdbm_helpers import host_params

from bayesnn import boltzmann as bm

SPEC = bm.fully_connected_spec(num_visible=12, num_bins=3, num_hidden=6, num_classes=4)
M = 0.05
CFG = bm.SolverConfig(tol=1e-6, max_iter=300, fallback=None)
_infer = jax.jit(lambda c, ev: bm.infer(c, SPEC, ev, config=CFG))


def _flat(q):
    return np.concatenate([np.asarray(x[0]).reshape(-1) for x in q])


def test_linear_response_matches_finite_differences_and_obeys_the_bound():
    """chi = dq/db (central differences), zero on clamped variables, and chi <= I/(1+m) for
    monotone couplings whatever the weights and clamping; the unconstrained coupling of the
    same parameters exceeds the bound (so it is not vacuous)."""
    rng = np.random.default_rng(0)
    for scale in (1.0, 4.0):
        coupling = bm.monotone_coupling(host_params(rng, SPEC, scale, 0.5), SPEC, M)
        mask = rng.random((1, 12)) < 0.5
        ev = bm.make_evidence(SPEC, rng.integers(0, 3, (1, 12)), mask)
        q, info = _infer(coupling, ev)
        assert bool(info.converged[0])
        free = (jnp.asarray(~mask[0]), jnp.ones(6, bool), jnp.ones(1, bool))
        chi = np.asarray(bm.linear_response(coupling, SPEC, tuple(x[0] for x in q), free))
        eig = np.linalg.eigvalsh(chi)
        assert eig[0] > -1e-5 and eig[-1] <= 1 / (1 + M) + 1e-5, eig
        clamped = np.repeat(mask[0], 3)
        assert np.all(chi[: 12 * 3][clamped] == 0.0)
        # one free pixel state and one hidden state: columns of dq/db by central differences
        for layer, var, state in ((0, int(np.flatnonzero(~mask[0])[0]), 1), (1, 2, 0)):
            col = 36 * layer + SPEC.layers[layer].num_states * var + state
            qs = []
            for eps in (1e-2, -1e-2):
                b = list(coupling.b)
                b[layer] = b[layer].at[var, state].add(eps)
                qs.append(_flat(_infer(coupling._replace(b=tuple(b)), ev)[0]))
            fd = (qs[0] - qs[1]) / 2e-2
            np.testing.assert_allclose(chi[:, col], fd, atol=2e-4)
    # without the constraint: a fixed point whose linear response exceeds 1/(1+m)
    params = host_params(np.random.default_rng(0), SPEC, 1.5, 0.0)
    ev = bm.make_evidence(SPEC, np.zeros((1, 12), int), np.zeros((1, 12), bool))
    tops = []
    for coupling in (
        bm.monotone_coupling(params, SPEC, M),
        bm.unconstrained_coupling(params, SPEC),
    ):
        q, info = _infer(coupling, ev)
        assert bool(info.converged[0])
        chi = bm.linear_response(coupling, SPEC, tuple(x[0] for x in q))
        tops.append(float(np.linalg.eigvalsh(np.asarray(chi))[-1]))
    assert tops[0] <= 1 / (1 + M) + 1e-5 < 1.2 < tops[1], tops
