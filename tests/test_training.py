"""Tests of the shared optax loop (bayesnn._training) and batched ravel (bayesnn._pytree)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bayesnn._pytree import ravel_batched, unravel_batched_like
from bayesnn._training import gradient_step, minimize


def test_minimize_matches_closed_form_gradient_descent():
    """SGD on 0.5 ||x - a||^2 contracts by (1 - lr) per step: x_k - a = (1 - lr)^k (x_0 - a);
    the trace holds the loss before each step and per-step inputs arrive in order."""
    a = jnp.asarray([1.0, -2.0])
    lr, k = 0.1, 25

    def loss(x, step):
        return 0.5 * jnp.sum((x - a) ** 2) + 0.0 * step

    x, losses = minimize(loss, optax.sgd(lr), jnp.zeros(2), jnp.arange(k, dtype=jnp.float32))
    np.testing.assert_allclose(x - a, (1 - lr) ** k * (0.0 - a), rtol=1e-5)
    expect = 0.5 * float(jnp.sum(a**2)) * (1 - lr) ** (2 * np.arange(k))
    np.testing.assert_allclose(losses, expect, rtol=1e-5)
    x1, _, (value, aux) = gradient_step(
        lambda p: (0.5 * jnp.sum((p - a) ** 2), p), optax.sgd(lr), x, optax.sgd(lr).init(x),
        has_aux=True,
    )  # fmt: skip
    np.testing.assert_allclose(x1 - a, (1 - lr) * (x - a), rtol=1e-5)
    np.testing.assert_array_equal(aux, x)


def test_ravel_batched_round_trip():
    tree = {"a": jnp.arange(12.0).reshape(3, 2, 2), "b": (jnp.ones((3,)), jnp.zeros((3, 5)))}
    flat = ravel_batched(tree)
    assert flat.shape == (3, 4 + 1 + 5)
    back = unravel_batched_like(flat, tree)
    jax.tree.map(np.testing.assert_array_equal, back, tree)
