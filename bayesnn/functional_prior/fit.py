"""Tune a weight prior so that its functions match a GP prior (Wasserstein matching).

Tran, Rossi, Milios & Filippone, "All You Need is a Good Functional Prior for Bayesian Deep
Learning", JMLR 2022. Each prior iteration ``t``:

1. draw a measurement set ``X_t`` and ``n`` GP function values at ``X_t``;
2. with the default :class:`~bayesnn.functional_prior.CriticW1`, update the critic ``c`` by
   ``steps`` gradient-penalised ascent steps on ``E_BNN[c(F)] - E_GP[c(F)]`` (one
   ``lax.fori_loop`` with a traced trip count, so the longer first run and the regular ones
   share one program); the critic is warm-started across iterations (weights and optimiser
   state together);
3. on fresh BNN and GP batches, ``W_t = mean c(F_BNN(theta)) - mean c(F_GP)``; one
   prior-optimiser step on ``grad_theta W_t`` (reparameterised BNN draws).

With :class:`~bayesnn.functional_prior.SlicedW1` steps 2-3 use the sliced W1 of
:mod:`.sliced` instead (no critic). ``CriticW1(warm_start=False)`` resets the critic weights
*and* optimiser state every iteration (the authors' code resets only the weights).

The reported ``w1`` trace is the step-3 value on fresh samples: noisy, not a bound, for
trends only. For an honest before/after comparison use :func:`evaluate_w1` (an independent
critic).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bayesnn._training import gradient_step
from bayesnn.functional_prior.critic import (
    PENALTIES,
    CriticState,
    CriticW1,
    critic_w1_values,
    init_critic,
)
from bayesnn.functional_prior.families import PriorFamily, make_family
from bayesnn.functional_prior.measurement import MeasurementSampler
from bayesnn.functional_prior.sliced import SlicedW1
from bayesnn.gp.sampling import GPPrior, GPSampleError
from bayesnn.nn.stax import Layer
from bayesnn.priors import template_of

__all__ = [
    "FitState",
    "FitHistory",
    "function_sampler",
    "gp_function_sampler",
    "fit_functional_prior",
    "evaluate_w1",
]


class FitState(NamedTuple):
    """State of the alternating optimisation."""

    theta: Any
    prior_opt_state: optax.OptState
    critic: CriticState | None


class FitHistory(NamedTuple):
    """What :func:`fit_functional_prior` returns besides the prior.

    Attributes
    ----------
    w1
        ``(steps,)`` W1 estimate per prior iteration (fresh samples, trained critic).
    critic_loss, penalty
        ``(steps,)`` last critic objective ``-(w - lambda pen)`` and penalty per iteration
        (zeros for the sliced estimator).
    wall_time
        ``(steps,)`` seconds since the start (after each iteration; includes compilation).
    theta
        Final unconstrained hyperparameters; ``family.prior(theta)`` is the tuned prior.
    initial_theta
        Hyperparameters before tuning (``family.prior(initial_theta)`` for "before" plots).
    family
        The :class:`PriorFamily` tuned.
    sample_functions
        ``sample_functions(theta, rng_key, x, n) -> (n, m, k)`` BNN function draws.
    """

    w1: np.ndarray
    critic_loss: np.ndarray
    penalty: np.ndarray
    wall_time: np.ndarray
    theta: Any
    initial_theta: Any
    family: PriorFamily
    sample_functions: Callable


def function_sampler(architecture: Layer, family: PriorFamily):
    """``sample(theta, rng_key, x, n) -> (n, m, k)``: ``n`` i.i.d. functions at ``x``.

    Vector inputs ``(m, d)``: the ``n`` networks are vectorised (``vmap``; batched matrix
    products). Image inputs ``(m, H, W, C)``: one network after the other (``lax.map``):
    vectorised over weights, a convolution becomes a grouped convolution, which XLA:CPU runs
    several times slower than a loop of ordinary ones.
    """

    def sample(theta, rng_key, x, n):
        def one(key):
            y = architecture.apply(family.sample_params(theta, key), x)
            return y.reshape(x.shape[0], -1)

        keys = jax.random.split(rng_key, n)
        return jax.lax.map(one, keys) if x.ndim > 2 else jax.vmap(one)(keys)

    return sample


def gp_function_sampler(gp_prior: GPPrior, num_outputs: int = 1):
    """``sample(rng_key, x, n) -> ((n, m, k), ok)``: independent GP draws per output.

    ``x`` is ``(m, d)`` or ``(m, *input_shape)`` (e.g. NHWC images), flattened to ``(m, -1)``
    for the kernel.
    """

    def sample(rng_key, x, n):
        x = x.reshape(x.shape[0], -1)  # images are flattened: the GP kernel sees vectors
        f, ok = gp_prior.sample_with_status(rng_key, x, n * num_outputs)
        return jnp.moveaxis(f.reshape(num_outputs, n, x.shape[0]), 0, 2), ok

    return sample


def _check_args(architecture, gp_prior, sampler, steps, num_functions, estimator, check_every):
    if not isinstance(architecture, Layer):
        raise ValueError(f"architecture must be a bayesnn.nn Layer, got {architecture!r}")
    if not isinstance(gp_prior, GPPrior):
        raise ValueError(f"gp_prior must be a bayesnn.gp.GPPrior, got {gp_prior!r}")
    if not isinstance(sampler, MeasurementSampler):
        raise ValueError(f"measurement_sampler must be a MeasurementSampler, got {sampler!r}")
    for name, v in (
        ("steps", steps),
        ("num_functions", num_functions),
        ("check_every", check_every),
    ):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if num_functions < 2:
        raise ValueError("num_functions must be at least 2")
    if not isinstance(estimator, CriticW1 | SlicedW1):
        raise ValueError(f"estimator must be a CriticW1 or SlicedW1, got {estimator!r}")
    return estimator.resolved()


def _output_shape(architecture, input_shape):
    """The architecture's output shape for one measurement point, or a clear error."""
    try:
        out = architecture.output_shape(tuple(input_shape))
        jax.eval_shape(lambda k: architecture.init(k, tuple(input_shape)), jax.random.key(0))
    except Exception as err:  # noqa: BLE001 - re-raised with the argument named
        raise ValueError(
            f"measurement points of shape {tuple(input_shape)} (measurement_sampler) do not "
            f"fit the architecture: {err}"
        ) from err
    return tuple(out)


def fit_functional_prior(
    architecture: Layer,
    gp_prior: GPPrior,
    measurement_sampler: MeasurementSampler,
    rng_key,
    *,
    family="gaussian",
    steps: int = 200,
    num_functions: int = 128,
    estimator: CriticW1 | SlicedW1 | None = None,
    prior_optimizer: optax.GradientTransformation | None = None,
    family_kwargs: dict | None = None,
    check_every: int = 10,
    callback: Callable | None = None,
    input_shape: tuple | None = None,
):
    """Tune ``family``'s hyperparameters so the BNN's function prior matches ``gp_prior``.

    Minimises ``W_1(p_BNN(theta), p_GP)`` over the prior hyperparameters ``theta`` on random
    measurement sets (Tran et al. 2022, algorithm 1).

    Parameters
    ----------
    architecture
        A :mod:`bayesnn.nn.stax` network (``"ntk"`` parameterisation: the prior is on the raw,
        unscaled weights, the "scaled" prior of the paper). Each of ``K`` outputs (e.g. the
        logits of a classifier) is matched to an independent GP with the same kernel: one
        critic shared across outputs, distances summed (Tran et al. 2022); the dependence
        between a finite network's outputs is not matched.
    gp_prior
        Target :class:`bayesnn.gp.GPPrior` (fixed hyperparameters or log-normal hyperpriors).
    measurement_sampler
        A :class:`MeasurementSampler` whose points have the network's input shape
        (``(d,)`` vectors, or ``(H, W, C)`` NHWC images for a convolutional network, e.g.
        :func:`~bayesnn.functional_prior.classification_minibatch` of training images). The
        GP sees the points flattened: use a kernel on vectors of pixels (e.g.
        :class:`bayesnn.gp.RBF`) or :class:`~bayesnn.functional_prior.ArchitectureKernel`
        (an NNGP/CNN-GP on images).
    rng_key
        PRNG key (network initialisation, critic, measurement sets, function draws).
    family
        ``"gaussian"``, ``"hierarchical"``, ``"flow"`` or a :class:`PriorFamily`.
    steps
        Prior iterations.
    num_functions
        Functions per side and batch (128 in the paper's UCI setting).
    estimator
        :class:`CriticW1` (default: the dual W1 with a warm-started critic) or
        :class:`SlicedW1` (sliced W1, no critic).
    prior_optimizer
        optax optimiser of ``theta``; default ``rmsprop(0.05)`` (the paper's optimiser and
        UCI learning rate). RMSprop moves each raw hyperparameter by up to ~``lr`` per step
        whatever the gradient's size, so keep ``lr * steps`` near 10: along a flat direction
        of W1 a hidden-layer weight sd keeps growing by ~``lr`` per step
        (``benchmarks/fprior_drift.py``).
    family_kwargs
        Passed to the family constructor (e.g. ``weight_scale``).
    check_every
        Iterations between NaN checks (raises ``FloatingPointError``).
    callback
        ``callback(step, w1, theta)`` called at each check.
    input_shape
        The input shape of the model the prior is for (e.g. ``(28, 28, 1)``); if given, the
        measurement points must have it (``ValueError`` otherwise), so that the tuned prior's
        parameter template is the model's.

    Returns
    -------
    prior, history
        The tuned prior (``LayerwiseGaussian``, ``HierarchicalGaussian`` or ``FlowPrior``)
        and a :class:`FitHistory`.
    """
    estimator = _check_args(
        architecture,
        gp_prior,
        measurement_sampler,
        steps,
        num_functions,
        CriticW1() if estimator is None else estimator,
        check_every,
    )
    in_shape = measurement_sampler.input_shape
    if input_shape is not None and tuple(input_shape) != tuple(in_shape):
        raise ValueError(
            f"measurement points have shape {tuple(in_shape)} (measurement_sampler), but "
            f"input_shape is {tuple(input_shape)}: pass measurement inputs of the model's shape"
        )
    m = measurement_sampler.num_points
    init_key, fam_key, loop_key = jax.random.split(rng_key, 3)
    out_shape = _output_shape(architecture, in_shape)
    params0 = architecture.init(init_key, in_shape)
    num_outputs = int(np.prod(out_shape)) if len(out_shape) else 1
    template = template_of(params0)
    kw = dict(family_kwargs or {})
    if family == "flow":
        kw.setdefault("rng_key", fam_key)
    fam = make_family(family, template, **kw)
    sample_fns = function_sampler(architecture, fam)
    gp_sample = gp_function_sampler(gp_prior, num_outputs)
    popt = prior_optimizer or optax.rmsprop(0.05)
    n = num_functions
    gp_in_jit = gp_prior.precision == "float32"

    x_probe = jax.eval_shape(measurement_sampler.sample, jax.random.key(0))
    if x_probe.shape != (m, *in_shape):
        raise ValueError(
            f"measurement_sampler returned shape {x_probe.shape}, expected {(m, *in_shape)}"
        )

    theta0 = fam.init()
    critic0 = estimator.init(fam_key, m)
    # strong dtypes: weak-typed leaves would change type after one update and recompile
    theta0 = jax.tree.map(lambda a: jnp.array(a, dtype=jnp.asarray(a).dtype), theta0)
    state = FitState(theta0, popt.init(theta0), critic0)
    state = jax.tree.map(
        lambda a: jnp.array(a, dtype=a.dtype) if isinstance(a, jax.Array) else a, state
    )

    def prior_step(state, rng_key, x, f_gp_train, f_gp_eval, num_critic):
        k_bnn, k_crit, k_eval, k_reset = jax.random.split(rng_key, 4)

        def sample_bnn():
            return jax.lax.stop_gradient(sample_fns(state.theta, k_bnn, x, n))

        cstate, (closs, pen) = estimator.train(
            state.critic, sample_bnn, f_gp_train, k_crit, k_reset, num_critic
        )

        def objective(theta):
            return estimator.distance(cstate, k_crit, sample_fns(theta, k_eval, x, n), f_gp_eval)

        theta, popt_state, w1 = gradient_step(objective, popt, state.theta, state.prior_opt_state)
        return FitState(theta, popt_state, cstate), (w1, closs, pen)

    def full_step(state, rng_key, num_critic):
        k_x, k_gp, k_step = jax.random.split(rng_key, 3)
        x = measurement_sampler.sample(k_x)
        f_gp, ok = gp_sample(k_gp, x, 2 * n)
        state, info = prior_step(state, k_step, x, f_gp[:n], f_gp[n:], num_critic)
        return state, (*info, ok)

    jit_full = jax.jit(full_step)
    jit_prior = jax.jit(prior_step)
    jit_x = jax.jit(measurement_sampler.sample)

    w1s, closses, pens, times = [], [], [], []
    t0 = time.perf_counter()
    keys = jax.random.split(loop_key, steps)
    pending = []
    for i in range(steps):
        nc = jnp.int32(estimator.num_steps(i))
        if gp_in_jit:
            state, info = jit_full(state, keys[i], nc)
        else:
            k_x, k_gp, k_step = jax.random.split(keys[i], 3)
            x = jit_x(k_x)
            f_gp, ok = gp_sample(k_gp, x, 2 * n)
            if i == 0 and not bool(ok):
                raise GPSampleError(
                    "GP kernel matrix not positive definite up to the jitter cap "
                    f"{gp_prior.max_jitter} at the first measurement set"
                )
            state, info3 = jit_prior(state, k_step, x, f_gp[:n], f_gp[n:], nc)
            info = (*info3, ok)
        pending.append(info)
        if (i + 1) % check_every == 0 or i == steps - 1:
            host = jax.device_get(pending)
            pending = []
            now = time.perf_counter() - t0
            for w1, cl, pn, ok in host:
                if not bool(ok):
                    raise GPSampleError(
                        "GP kernel matrix not positive definite up to the jitter cap "
                        f"{gp_prior.max_jitter} at a measurement set (prior step <= {i})"
                    )
                if not (np.isfinite(w1) and np.isfinite(cl)):
                    raise FloatingPointError(
                        f"functional-prior fit diverged (NaN/inf W1 or critic loss) by prior "
                        f"step {i}: lower the critic or prior learning rate"
                    )
                w1s.append(float(w1))
                closses.append(float(cl))
                pens.append(float(pn))
                times.append(now)
            if callback is not None:
                callback(i, w1s[-1], state.theta)

    theta = jax.block_until_ready(state.theta)
    prior = fam.prior(theta)
    history = FitHistory(
        np.asarray(w1s),
        np.asarray(closses),
        np.asarray(pens),
        np.asarray(times),
        theta,
        theta0,
        fam,
        sample_fns,
    )
    return prior, history


@functools.lru_cache(maxsize=32)
def _w1_evaluator(
    architecture, family, num_steps, num_samples, hidden, penalty, learning_rate, penalty_weight
):
    """One compiled independent-critic run per setting; ``theta``, ``x`` and the pool traced."""
    sample_fns = function_sampler(architecture, family)
    optimizer = optax.adam(learning_rate, b1=0.5, b2=0.9)

    def run(rng_key, theta, x, pool):
        init_key, train_key, eval_key = jax.random.split(rng_key, 3)
        vals = critic_w1_values(
            init_critic(init_key, x.shape[0], hidden),
            train_key,
            eval_key,
            sample_p=lambda k, n: sample_fns(theta, k, x, n),
            sample_q=lambda k, n: pool[jax.random.randint(k, (n,), 0, pool.shape[0])],
            optimizer=optimizer,
            num_steps=num_steps,
            num_samples=num_samples,
            num_eval_batches=20,
            penalty=penalty,
            penalty_weight=penalty_weight,
        )
        return jnp.mean(vals), jnp.std(vals) / jnp.sqrt(vals.shape[0])

    return jax.jit(run)


def evaluate_w1(
    rng_key,
    architecture: Layer,
    family: PriorFamily,
    theta,
    gp_prior: GPPrior,
    x,
    *,
    num_steps: int = 1000,
    num_samples: int = 128,
    hidden=(200, 200),
    penalty: str = "two-sided",
    learning_rate: float = 1e-3,
    penalty_weight: float = 10.0,
):
    """Independent W1 estimate between the family's functions and the GP at fixed ``x``.

    A fresh critic is trained on fresh batches (``num_steps`` Adam steps) and evaluated on 20
    held-out batch pairs (:func:`~bayesnn.functional_prior.critic.critic_w1_values`); use it
    to compare priors before and after tuning. GP draws are taken from a pool of
    ``64 num_samples`` functions drawn once (in ``gp_prior.precision``). The compiled run is
    cached per (architecture, family, settings): evaluating several ``theta`` (before/after
    tuning) compiles once.

    Returns
    -------
    estimate, stderr
        Mean held-out dual estimate and its Monte Carlo standard error.
    """
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (m, d) or (m, H, W, C), got {x.shape}")
    if penalty not in PENALTIES:
        raise ValueError(f"penalty must be one of {PENALTIES}, got {penalty!r}")
    k = int(np.prod(_output_shape(architecture, x.shape[1:])) or 1)
    pool_key, key = jax.random.split(rng_key)
    pool, ok = gp_function_sampler(gp_prior, k)(pool_key, x, 64 * num_samples)
    if not bool(ok):
        raise GPSampleError("GP kernel matrix not positive definite at x")
    run = _w1_evaluator(
        architecture,
        family,
        int(num_steps),
        int(num_samples),
        tuple(hidden),
        penalty,
        float(learning_rate),
        float(penalty_weight),
    )
    theta = jax.tree.map(lambda a: jnp.array(a, dtype=jnp.asarray(a).dtype), theta)
    return run(key, theta, x, jnp.asarray(pool, x.dtype))
