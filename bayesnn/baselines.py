"""Non-Bayesian baselines for a :class:`~bayesnn.model.BayesianNeuralNet`: MAP and deep ensembles.

The MAP network maximises the model's own log posterior,

.. math::

    \\hat\\theta = \\arg\\max_\\theta \\; \\log p(\\theta) + \\sum_{i=1}^N \\log p(y_i \\mid
    f_\\theta(x_i)),

with optax on minibatches: each step descends ``-logdensity(theta, batch, N) / N``, an
unbiased estimate of the negative log posterior per example. The Gaussian prior term is the
weight decay, so the baseline and the sampler share architecture, prior and likelihood; only
the inference differs. A deep ensemble (Lakshminarayanan, Pritzel and Blundell, NeurIPS 2017)
is ``M`` MAP networks from independent initialisations and minibatch orders, trained at once
with ``vmap``; its predictive is the mean of the members' class probabilities, the same
formula as the posterior predictive over draws (:func:`mean_predictive_probs`). To compare at
equal cost, give the ensemble as many gradient evaluations as the sampler:
``num_members * num_steps = num_chains * steps_per_chain``.

:func:`train_map` runs a fixed number of steps; :func:`train_map_to_convergence` trains until
the full-data objective stops improving (a stated rule, see there), which is what "the MAP"
means: the maximiser, not an early-stopped network.

Minibatches come from :mod:`samplers.sgmcmc.minibatch` (an epoch permutation per member),
the optimisation loop from :mod:`bayesnn._training`, so a whole training run is one compiled
``lax.scan`` (one per epoch in :func:`train_map_to_convergence`, which checks the objective
between epochs).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from bayesnn._training import gradient_step
from samplers.sgmcmc import minibatch

__all__ = [
    "MAPResult",
    "ConvergedMAP",
    "train_map",
    "train_map_to_convergence",
    "full_data_objective",
    "deep_ensemble",
    "mean_predictive_probs",
]


class MAPResult(NamedTuple):
    """Trained positions and the loss trace.

    Attributes
    ----------
    position
        ``{"net": ..., "likelihood": ...}`` (a leading member axis for an ensemble).
    losses
        Negative minibatch log posterior per example before each step,
        ``(num_steps,)`` or ``(num_members, num_steps)``.
    """

    position: Any
    losses: jax.Array


def _check_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _train_one(model, optimizer, num_steps, batch_size, data, data_size, rng_key, position):
    init_key, batch_key = jax.random.split(rng_key)
    if position is None:
        position = model.init(init_key)
    batch_state = minibatch.init(batch_key, data_size, "epoch")

    step = _optimizer_step(model, optimizer, batch_key, data, data_size, batch_size)
    carry = (position, optimizer.init(position), batch_state)
    (position, _, _), losses = jax.lax.scan(step, carry, jnp.arange(num_steps))
    return MAPResult(position, losses)


def _optimizer_step(model, optimizer, batch_key, data, data_size, batch_size):
    """``step(carry, t) -> (carry, loss)``: one optax step on the epoch-wise minibatch ``t``
    of ``-log p(θ | D) / N``; ``carry = (position, opt_state, batch_state)``."""

    def loss_fn(position, batch):
        return -model.logdensity(position, batch, data_size) / data_size

    def step(carry, t):
        position, opt_state, batch_state = carry
        batch, batch_state = minibatch.next_batch(
            batch_key, batch_state, t, data, batch_size, "epoch"
        )
        position, opt_state, loss = gradient_step(loss_fn, optimizer, position, opt_state, batch)
        return (position, opt_state, batch_state), loss

    return step


def _prepare(model, x, y, num_steps, batch_size, learning_rate, optimizer):
    _check_int("num_steps", num_steps)
    _check_int("batch_size", batch_size)
    if optimizer is None:
        if not float(learning_rate) > 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
        optimizer = optax.adam(learning_rate)
    x, y = model.check_data(x, y)
    if batch_size > x.shape[0]:
        raise ValueError(f"batch_size {batch_size} exceeds the data size {x.shape[0]}")
    return x, y, optimizer


def train_map(
    rng_key,
    model,
    x,
    y,
    *,
    num_steps: int,
    batch_size: int,
    learning_rate: float = 1e-3,
    optimizer: optax.GradientTransformation | None = None,
    init_position=None,
) -> MAPResult:
    """Train the MAP network of ``model`` (maximum of its log posterior) with optax.

    Parameters
    ----------
    rng_key
        Key for the initialisation (``model.init``) and the minibatch order.
    model
        A :class:`~bayesnn.model.BayesianNeuralNet` (the prior is the regulariser).
    x, y
        Training data, validated by ``model.check_data`` before anything is compiled.
    num_steps, batch_size
        Optimiser steps (one gradient evaluation each) and minibatch size.
    learning_rate
        Adam's learning rate when ``optimizer`` is not given.
    optimizer
        Any optax transformation (default ``optax.adam(learning_rate)``).
    init_position
        Start here instead of ``model.init(key)``.
    """
    x, y, optimizer = _prepare(model, x, y, num_steps, batch_size, learning_rate, optimizer)
    run = jax.jit(
        lambda key, pos: _train_one(
            model, optimizer, num_steps, batch_size, (x, y), x.shape[0], key, pos
        )
    )
    return run(rng_key, init_position)


class ConvergedMAP(NamedTuple):
    """Result of :func:`train_map_to_convergence`.

    Attributes
    ----------
    position
        ``{"net": ..., "likelihood": ...}``: the position with the lowest full-data objective
        seen (checked after every epoch).
    objective
        ``(num_epochs + 1,)`` full-data negative log posterior per example,
        ``-log p(theta | data) / N`` up to a constant, at the start and after each epoch.
    learning_rates
        ``(num_epochs,)`` the learning rate of each epoch.
    converged
        Whether the stopping rule fired before ``max_epochs``.
    """

    position: Any
    objective: jax.Array
    learning_rates: jax.Array
    converged: bool


def full_data_objective(model, position, x, y, *, batch_size: int = 1000):
    """Full-data negative log posterior per example, ``-(log p(theta) + sum_i log p(y_i |
    theta, x_i)) / N``, accumulated over chunks of ``batch_size`` examples (traceable: jit it
    with ``batch_size`` static).

    Each chunk ``c`` gives ``model.logdensity(theta, c, N) = log p(theta) + N/|c| sum_c log
    p``; the ``|c|/N``-weighted sum over chunks is the exact full-data log posterior, so any
    model with the ``logdensity`` protocol works.
    """
    n = x.shape[0]
    total = 0.0
    for i in range(0, n, batch_size):
        chunk = (x[i : i + batch_size], y[i : i + batch_size])
        total = total + (chunk[0].shape[0] / n) * model.logdensity(position, chunk, n)
    return -total / n


def train_map_to_convergence(
    rng_key,
    model,
    x,
    y,
    *,
    batch_size: int,
    learning_rate: float = 3e-3,
    rtol: float = 1e-4,
    num_decays: int = 1,
    decay_factor: float = 0.1,
    max_epochs: int = 200,
    eval_batch_size: int = 1000,
    init_position=None,
) -> ConvergedMAP:
    r"""Train the MAP network of ``model`` until its full-data objective stops improving.

    The objective is :math:`U(\theta) = -\log p(\theta \mid \mathcal D) / N` up to a
    constant (:func:`full_data_objective`), evaluated on *all* training data after every epoch
    of minibatch Adam (``N // batch_size`` steps, an epoch permutation). The rule, with
    :math:`U_0` the value at the start and :math:`U^\star` the best value before the epoch:

    1. after an epoch, the relative improvement is the epoch's share of the total decrease,
       :math:`(U^\star - U) / (U_0 - \min(U, U^\star))` (0 while nothing has decreased);
    2. if it is below ``rtol`` (a plateau, or a worse value), the learning rate is multiplied
       by ``decay_factor``, at most ``num_decays`` times (the minibatch noise floor of a
       constant-step Adam is lowered, so training gets closer to the maximiser);
    3. a plateau with no decay left stops training (``converged=True``); ``max_epochs`` caps
       the run (``converged=False``).

    The improvement is measured against the decrease, not against :math:`|U^\star|`, so the
    rule does not change when a constant is added to the log density: a Gaussian prior's
    normalising constant :math:`\tfrac d2 \log(2\pi s^2)` depends on its scale ``s``, and a
    tolerance relative to :math:`|U^\star|` would loosen as the prior widens (stopping wide-prior
    MAPs early) and tighten as it narrows.

    The returned position is the one with the lowest :math:`U` seen. A stochastic optimiser
    at a constant step hovers around the maximiser at a distance set by its step and the
    minibatch noise; ``converged=True`` says that a whole epoch at the smallest learning rate
    improved :math:`U^\star` by less than ``rtol`` relative, not that the gradient is zero.

    Parameters
    ----------
    rng_key
        Key for the initialisation (``model.init``) and the minibatch order.
    model
        A :class:`~bayesnn.model.BayesianNeuralNet` (or any model with ``init``,
        ``logdensity``, ``check_data``).
    x, y
        Training data, validated by ``model.check_data`` before anything is compiled.
    batch_size
        Minibatch size of the Adam steps.
    learning_rate
        Adam's initial learning rate.
    rtol
        Share of the total decrease below which an epoch's improvement is a plateau, in
        ``(0, 1)``.
    num_decays, decay_factor
        Learning-rate decays allowed, and their factor in ``(0, 1)``.
    max_epochs
        Cap on the number of epochs.
    eval_batch_size
        Chunk size of the full-data objective.
    init_position
        Start here instead of ``model.init(key)``.
    """
    _check_int("max_epochs", max_epochs)
    _check_int("num_decays", num_decays, minimum=0)
    _check_int("eval_batch_size", eval_batch_size)
    if not 0.0 < float(rtol) < 1.0:
        raise ValueError(f"rtol must lie in (0, 1), got {rtol!r}")
    if not 0.0 < float(decay_factor) < 1.0:
        raise ValueError(f"decay_factor must lie in (0, 1), got {decay_factor!r}")
    x, y, _ = _prepare(model, x, y, 1, batch_size, learning_rate, None)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=float(learning_rate))
    n = x.shape[0]
    steps_per_epoch = n // batch_size
    init_key, batch_key = jax.random.split(rng_key)
    position = model.init(init_key) if init_position is None else init_position
    batch_state = minibatch.init(batch_key, n, "epoch")

    @jax.jit
    def epoch(carry, epoch_index, data):
        step = _optimizer_step(model, optimizer, batch_key, data, n, batch_size)
        ts = epoch_index * steps_per_epoch + jnp.arange(steps_per_epoch)
        return jax.lax.scan(step, carry, ts)[0]

    objective = jax.jit(
        lambda pos, xs, ys: full_data_objective(model, pos, xs, ys, batch_size=eval_batch_size)
    )
    carry = (position, optimizer.init(position), batch_state)
    best = start = float(objective(position, x, y))
    best_position, values, rates = position, [best], []
    decays_left, lr, converged = num_decays, float(learning_rate), False
    for e in range(max_epochs):
        rates.append(lr)
        carry = epoch(carry, e, (x, y))
        value = float(objective(carry[0], x, y))
        values.append(value)
        decrease = start - min(value, best)
        improvement = (best - value) / decrease if decrease > 0 else 0.0
        if value < best:
            best, best_position = value, carry[0]
        if improvement < rtol:
            if decays_left == 0:
                converged = True
                break
            decays_left -= 1
            lr *= float(decay_factor)
            position, opt_state, batch_state = carry
            hyper = dict(opt_state.hyperparams)
            hyper["learning_rate"] = jnp.asarray(lr, hyper["learning_rate"].dtype)
            carry = (position, opt_state._replace(hyperparams=hyper), batch_state)
    return ConvergedMAP(best_position, jnp.asarray(values), jnp.asarray(rates), converged)


def deep_ensemble(
    rng_key,
    model,
    x,
    y,
    *,
    num_members: int,
    num_steps: int,
    batch_size: int,
    learning_rate: float = 1e-3,
    optimizer: optax.GradientTransformation | None = None,
) -> MAPResult:
    """``num_members`` MAP networks from independent initialisations, trained with ``vmap``.

    Member ``m`` uses ``fold_in(rng_key, m)`` for its initialisation and minibatch order.
    The ensemble costs ``num_members * num_steps`` gradient evaluations; match a sampler's
    ``num_chains * steps_per_chain`` to compare at equal cost. Returns a :class:`MAPResult`
    whose leaves have a leading member axis (pass ``position`` to
    :func:`mean_predictive_probs`).
    """
    _check_int("num_members", num_members)
    x, y, optimizer = _prepare(model, x, y, num_steps, batch_size, learning_rate, optimizer)
    keys = jax.vmap(lambda m: jax.random.fold_in(rng_key, m))(jnp.arange(num_members))
    run = jax.jit(
        jax.vmap(
            lambda key: _train_one(
                model, optimizer, num_steps, batch_size, (x, y), x.shape[0], key, None
            )
        )
    )
    return run(keys)


def mean_predictive_probs(model, positions, x, *, batch_size: int | None = None):
    """Mean class probabilities over a set of positions, accumulated one position at a time.

    .. math:: \\bar p(y \\mid x) = \\frac1S \\sum_{s=1}^S \\mathrm{softmax}(f_{\\theta_s}(x)),

    the Bayesian model average over posterior draws, or the deep-ensemble predictive over
    members. ``positions`` has leading axes ``(S,)`` or ``(chains, draws)`` (flattened); the
    sum is carried through a ``lax.scan`` so only one ``(n, K)`` array of probabilities is
    live whatever ``S``. ``batch_size`` splits ``x`` (default: all at once).
    """
    x = jnp.asarray(x)
    if tuple(x.shape[1:]) != tuple(model.input_shape):
        raise ValueError(f"x has example shape {x.shape[1:]}, expected {tuple(model.input_shape)}")
    first = jax.tree_util.tree_leaves(positions["net"])[0]
    depth = first.ndim - len(model.prior.template.shapes[0])
    if depth not in (1, 2):
        raise ValueError(
            "positions need one or two leading axes (draws, or chains x draws), got "
            f"leaf shape {first.shape} for parameter shape {model.prior.template.shapes[0]}"
        )
    if depth == 2:
        positions = jax.tree.map(lambda a: a.reshape((-1, *a.shape[2:])), positions)
    n = x.shape[0]
    bs = n if batch_size is None else int(batch_size)
    return _mean_probs(model, positions, x, bs)


def _mean_probs(model, positions, x, batch_size):
    @jax.jit
    def run(positions, xb):
        def body(total, position):
            return total + jax.nn.softmax(model.predict(position, xb), axis=-1), None

        out = model.architecture.output_shape(model.input_shape)
        total0 = jnp.zeros((xb.shape[0], *out), jnp.float32)
        total, _ = jax.lax.scan(body, total0, positions)
        num = jax.tree_util.tree_leaves(positions)[0].shape[0]
        return total / num

    parts = [run(positions, x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    return jnp.concatenate(parts, axis=0)
