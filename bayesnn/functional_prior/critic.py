"""Wasserstein-1 distance in dual form with a Lipschitz MLP critic (WGAN-GP style).

Kantorovich-Rubinstein duality on function values ``F = (f(x_1), ..., f(x_m))`` at a
measurement set:

.. math::

    W_1(p, q) = \\sup_{\\|c\\|_L \\le 1} E_p[c(F)] - E_q[c(F)],

with ``c`` an MLP ``m -> 200 -> 200 -> 1`` (softplus) kept near 1-Lipschitz by a gradient
penalty at random interpolates ``F~ = e F_p + (1 - e) F_q``, ``e ~ U(0, 1)``:
two-sided ``lambda (||grad c(F~)|| - 1)^2`` (Gulrajani et al. 2017) or one-sided
``lambda max(0, ||grad c(F~)|| - 1)^2`` (Petzka et al. 2018). As in Tran et al. (2022),
multi-output functions ``(n, m, k)`` share one critic across outputs and distances and
penalties are summed over outputs.

The inner loop is one ``lax.scan``; the penalty gradient is ``vmap(grad(c))``. Critic weights
and optimiser state live together in :class:`CriticState`, so warm starts and resets keep
them consistent (the authors' code resets the weights but not Adagrad's accumulators).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from bayesnn._training import gradient_step

__all__ = [
    "CriticState",
    "init_critic",
    "apply_critic",
    "critic_objective",
    "dual_w1",
    "critic_step",
    "train_critic",
    "estimate_w1",
    "critic_w1_values",
    "output_rows",
    "CriticW1",
    "PENALTIES",
]

PENALTIES = ("two-sided", "one-sided", "none")


class CriticState(NamedTuple):
    """Critic weights and their optimiser state (always reset or kept together)."""

    params: list
    opt_state: optax.OptState


def init_critic(rng_key, input_dim: int, hidden=(200, 200)):
    """Critic MLP ``input_dim -> hidden -> 1``: LeCun-normal weights, ``N(0, 1)`` biases.

    Unit-scale first-layer weights and spread biases place the softplus kinks over the
    range of the inputs (Xavier weights with zero biases leave a 1-D critic almost linear).
    """
    if not isinstance(input_dim, int) or input_dim < 1:
        raise ValueError(f"input_dim must be a positive int, got {input_dim!r}")
    sizes = (input_dim, *tuple(hidden), 1)
    params = []
    keys = jax.random.split(rng_key, len(sizes) - 1)
    for k, (a, b) in zip(keys, zip(sizes[:-1], sizes[1:], strict=True), strict=True):
        kw, kb = jax.random.split(k)
        W = jax.random.normal(kw, (a, b)) / jnp.sqrt(a)
        params.append((W, jax.random.normal(kb, (b,))))
    return params


def apply_critic(params, f):
    """Critic value ``c(F)`` for ``f`` of shape ``(..., m)`` -> ``(...)``."""
    lead = (1,) * (f.ndim - 1)
    h = f
    for W, b in params[:-1]:
        h = jax.nn.softplus(h @ W + b.reshape(lead + b.shape))
    W, b = params[-1]
    return (h @ W + b.reshape(lead + b.shape))[..., 0]


def output_rows(f):
    """``(n, m) -> ((n, m), 1)``; ``(n, m, k) -> ((k n, m), k)``: outputs share the critic."""
    if f.ndim == 2:
        return f, 1
    if f.ndim == 3:
        return jnp.moveaxis(f, 2, 0).reshape(-1, f.shape[1]), f.shape[2]
    raise ValueError(f"function samples must be (n, m) or (n, m, k), got shape {f.shape}")


def dual_w1(params, f_p, f_q):
    """Dual estimate ``sum_outputs (mean c(F_p) - mean c(F_q))``."""
    rp, k = output_rows(f_p)
    rq, _ = output_rows(f_q)
    return k * (jnp.mean(apply_critic(params, rp)) - jnp.mean(apply_critic(params, rq)))


def critic_objective(params, f_p, f_q, rng_key, penalty="two-sided"):
    """``(w, pen)``: dual estimate and gradient penalty (mean over interpolates x outputs)."""
    rp, k = output_rows(f_p)
    rq, _ = output_rows(f_q)
    if rp.shape != rq.shape:
        raise ValueError(f"f_p and f_q must have the same shape, got {f_p.shape}, {f_q.shape}")
    w = k * (jnp.mean(apply_critic(params, rp)) - jnp.mean(apply_critic(params, rq)))
    if penalty == "none":
        return w, jnp.zeros(())
    eps = jax.random.uniform(rng_key, (rp.shape[0], 1), dtype=rp.dtype)
    mix = eps * rp + (1.0 - eps) * rq
    g = jax.vmap(jax.grad(lambda v: apply_critic(params, v)))(mix)
    norm = jnp.sqrt(jnp.sum(g**2, -1) + 1e-12)
    gap = norm - 1.0 if penalty == "two-sided" else jax.nn.relu(norm - 1.0)
    return w, k * jnp.mean(gap**2)


def _check_penalty(penalty):
    if penalty not in PENALTIES:
        raise ValueError(f"penalty must be one of {PENALTIES}, got {penalty!r}")


def critic_step(
    state: CriticState,
    f_p,
    f_q,
    rng_key,
    *,
    optimizer: optax.GradientTransformation,
    penalty: str = "two-sided",
    penalty_weight: float = 10.0,
):
    """One critic ascent step on ``w - lambda * pen`` of :func:`critic_objective`.

    Without a penalty (``"none"``) the weights are clipped to ``[-0.1, 0.1]`` after the step
    (Arjovsky et al. 2017), the Lipschitz constraint of the original WGAN.

    Returns
    -------
    state, (loss, w, pen)
        The updated :class:`CriticState`; the loss ``-(w - lambda pen)``, dual estimate and
        penalty before the step.
    """

    def loss(params):
        w, pen = critic_objective(params, f_p, f_q, rng_key, penalty)
        return -(w - penalty_weight * pen), (w, pen)

    params, opt_state, (value, (w, pen)) = gradient_step(
        loss, optimizer, state.params, state.opt_state, has_aux=True
    )
    if penalty == "none":
        params = jax.tree.map(lambda p: jnp.clip(p, -0.1, 0.1), params)
    return CriticState(params, opt_state), (value, w, pen)


@partial(jax.jit, static_argnames=("optimizer", "num_steps", "penalty", "penalty_weight"))
def train_critic(
    state: CriticState,
    f_p,
    f_q,
    rng_key,
    *,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    penalty: str = "two-sided",
    penalty_weight: float = 10.0,
):
    """``num_steps`` critic ascent steps on one batch pair, as one ``lax.scan``.

    Maximises ``w - lambda * pen`` of :func:`critic_objective`. Without a penalty
    (``"none"``) weights are clipped to ``[-0.1, 0.1]`` (Arjovsky et al. 2017).

    Returns
    -------
    state, (w, pen)
        The updated :class:`CriticState` and per-step traces of the dual estimate and penalty.
    """
    _check_penalty(penalty)
    settings = dict(optimizer=optimizer, penalty=penalty, penalty_weight=penalty_weight)

    def step(st, key):
        st, (_, w, pen) = critic_step(st, f_p, f_q, key, **settings)
        return st, (w, pen)

    return jax.lax.scan(step, state, jax.random.split(rng_key, num_steps))


def estimate_w1(
    rng_key,
    sample_p: Callable,
    sample_q: Callable,
    *,
    num_steps: int = 1000,
    num_samples: int = 256,
    num_eval_batches: int = 20,
    hidden=(200, 200),
    learning_rate: float = 1e-3,
    penalty: str = "two-sided",
    penalty_weight: float = 10.0,
):
    """Independent W1 estimate: train a fresh critic on fresh batches, evaluate on new ones.

    Parameters
    ----------
    sample_p, sample_q
        ``sample(rng_key, n) -> (n, m)`` or ``(n, m, k)`` arrays (pure JAX).
    num_steps, num_samples
        Critic steps (a fresh batch pair each step) and batch size.
    num_eval_batches
        Batches of ``num_samples`` held out for the final estimate.

    Returns
    -------
    estimate, stderr
        Mean of the dual objective over held-out batches and its Monte Carlo standard error.
        Not a bound: the critic does not reach the supremum (can be slightly negative).
    """
    _check_penalty(penalty)
    init_key, train_key, eval_key = jax.random.split(rng_key, 3)
    probe = sample_p(init_key, 2)
    params = init_critic(init_key, probe.shape[1], hidden)
    run = jax.jit(
        partial(
            critic_w1_values,
            sample_p=sample_p,
            sample_q=sample_q,
            optimizer=optax.adam(learning_rate, b1=0.5, b2=0.9),
            num_steps=num_steps,
            num_samples=num_samples,
            num_eval_batches=num_eval_batches,
            penalty=penalty,
            penalty_weight=penalty_weight,
        )
    )
    vals = run(params, train_key, eval_key)
    return jnp.mean(vals), jnp.std(vals) / jnp.sqrt(num_eval_batches)


def critic_w1_values(
    params,
    train_key,
    eval_key,
    *,
    sample_p: Callable,
    sample_q: Callable,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    num_samples: int,
    num_eval_batches: int,
    penalty: str = "two-sided",
    penalty_weight: float = 10.0,
):
    """Traceable core of :func:`estimate_w1`: train from ``params``, evaluate held-out batches.

    Training is :func:`critic_step` on a fresh batch pair per step (weights clipped when
    ``penalty="none"``).

    Returns the ``(num_eval_batches,)`` dual estimates ``mean c(F_p) - mean c(F_q)`` of the
    trained critic on fresh batches (a fresh batch pair per training step).
    """
    state = CriticState(params, optimizer.init(params))
    settings = dict(optimizer=optimizer, penalty=penalty, penalty_weight=penalty_weight)

    def step(st, key):
        kp, kq, kpen = jax.random.split(key, 3)
        fp, fq = sample_p(kp, num_samples), sample_q(kq, num_samples)
        st, _ = critic_step(st, fp, fq, kpen, **settings)
        return st, None

    state, _ = jax.lax.scan(step, state, jax.random.split(train_key, num_steps))

    def ev(key):
        kp, kq = jax.random.split(key)
        return dual_w1(state.params, sample_p(kp, num_samples), sample_q(kq, num_samples))

    return jax.vmap(ev)(jax.random.split(eval_key, num_eval_batches))


class CriticW1(NamedTuple):
    """The critic (dual) W1 estimator of :func:`~bayesnn.functional_prior.fit_functional_prior`.

    Each prior iteration trains the critic by ``steps`` ascent steps (:func:`critic_step`) on
    a BNN/GP batch pair, then the prior objective is :func:`dual_w1` on fresh batches.

    Attributes
    ----------
    steps, first_steps
        Critic steps per prior iteration, and for the first one when warm-starting.
    hidden
        Hidden widths of the critic MLP.
    optimizer
        optax optimiser of the critic (``None``: ``adam(1e-3, b1=0.5, b2=0.9)``).
    penalty, penalty_weight
        ``"two-sided"``, ``"one-sided"`` or ``"none"`` (weight clipping); lambda.
    warm_start
        Keep the critic (weights and optimiser state) across iterations; if ``False`` both
        are re-initialised each iteration and ``first_steps`` is unused.
    """

    steps: int = 20
    first_steps: int = 500
    hidden: tuple = (200, 200)
    optimizer: optax.GradientTransformation | None = None
    penalty: str = "two-sided"
    penalty_weight: float = 10.0
    warm_start: bool = True

    def resolved(self) -> CriticW1:
        """Checked settings with the default optimiser filled in."""
        for name in ("steps", "first_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"CriticW1.{name} must be a positive int, got {v!r}")
        if self.penalty not in PENALTIES:
            raise ValueError(f"CriticW1.penalty must be one of {PENALTIES}, got {self.penalty!r}")
        opt = self.optimizer or optax.adam(1e-3, b1=0.5, b2=0.9)
        return self._replace(hidden=tuple(self.hidden), optimizer=opt)

    def num_steps(self, iteration: int) -> int:
        """Critic steps at prior iteration ``iteration``."""
        return self.first_steps if (iteration == 0 and self.warm_start) else self.steps

    def init(self, rng_key, num_points: int) -> CriticState:
        """A fresh critic on ``num_points`` function values and its optimiser state."""
        params = init_critic(rng_key, num_points, self.hidden)
        return CriticState(params, self.optimizer.init(params))

    def train(self, state: CriticState, sample_bnn, f_gp, rng_key, reset_key, num_steps):
        """``num_steps`` critic steps (a traced count) on ``sample_bnn()`` against ``f_gp``.

        Returns the new state and the last ``(loss, penalty)``.
        """
        if not self.warm_start:
            state = self.init(reset_key, f_gp.shape[1])
        f_bnn = sample_bnn()
        settings = dict(
            optimizer=self.optimizer, penalty=self.penalty, penalty_weight=self.penalty_weight
        )

        def body(t, carry):  # fori_loop: the long first run and the others share one program
            st, _ = carry
            key = jax.random.fold_in(rng_key, t)
            st, (loss, _, pen) = critic_step(st, f_bnn, f_gp, key, **settings)
            return st, (loss, pen)

        zero = jnp.zeros((), f_bnn.dtype)
        return jax.lax.fori_loop(0, num_steps, body, (state, (zero, zero)))

    def distance(self, state: CriticState, rng_key, f_p, f_q):
        """Dual estimate :func:`dual_w1` of the trained critic (``rng_key`` unused)."""
        del rng_key
        return dual_w1(state.params, f_p, f_q)
