"""The SG-MCMC driver: many chains, minibatches, burn-in and thinning inside ``lax.scan``.

:func:`sample` runs any :class:`~samplers.sgmcmc.base.SGMCMCKernel` with what BlackJAX leaves
to the user:

* a minibatch stream per chain (:mod:`samplers.sgmcmc.minibatch`);
* many chains at once (``vmap``), sharded over devices with ``jax.sharding`` when there are
  several and the number of chains divides evenly;
* burn-in and thinning in nested ``lax.scan``: discarded steps are never stored;
* a per-draw :class:`SGMCMCInfo` (minibatch log-density, gradient norm, step size,
  temperature, exploration flag, finiteness);
* step-size schedules (:mod:`samplers.sgmcmc.schedules`), optional gradient clipping and
  control variates;
* an optional Gibbs block (``gibbs_fn``) for variables with exact conditionals, e.g. the
  layer variances of a hierarchical prior;
* a cheap progress bar (a ``lax.cond``-gated host callback, once per draw at most);
* checkpoints: the run is cut into chunks and the state is saved after each, so a killed run
  resumes where it stopped and gives exactly the draws of an uninterrupted run (every random
  number is a function of the chain key and the global step index);
* a :class:`DivergenceError` naming the chain and step where the log-density or gradient first
  became non-finite.

The log-density convention: ``logdensity_fn(position, batch, data_size)`` (plus
``gibbs_state`` when a Gibbs block is used) returns the minibatch estimate
``log p(theta) + N/B sum_i log p(y_i | theta)``.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from samplers.sgmcmc import minibatch
from samplers.sgmcmc.base import SGMCMCKernel, tree_sq_norm
from samplers.sgmcmc.gradients import clip_by_global_norm, control_variates, value_and_grad
from samplers.sgmcmc.schedules import as_schedule

__all__ = ["SGMCMCInfo", "DriverState", "SampleResult", "DivergenceError", "sample"]


class DivergenceError(FloatingPointError):
    """A chain produced a non-finite log-density or gradient."""


class SGMCMCInfo(NamedTuple):
    """Per-step diagnostics (stored at every kept draw).

    Attributes
    ----------
    logdensity
        Minibatch estimate of the log posterior at the position before the step.
    grad_norm
        Euclidean norm of the (clipped) gradient estimate.
    step_size, temperature
        Values used in the step (after the schedule; temperature 0 while exploring).
    explore
        True in an exploration phase of a cyclical schedule (draw not from the posterior).
    is_finite
        Whether the log-density and gradient were finite.
    """

    logdensity: jax.Array
    grad_norm: jax.Array
    step_size: jax.Array
    temperature: jax.Array
    explore: jax.Array
    is_finite: jax.Array


class DriverState(NamedTuple):
    """Per-chain state of the driver (leading axis: chains)."""

    kernel_state: Any
    gibbs_state: Any
    batch_state: minibatch.BatchState
    first_bad_step: jax.Array


class SampleResult(NamedTuple):
    """Draws and diagnostics of :func:`sample`.

    Attributes
    ----------
    positions
        Pytree with leaves ``(num_chains, num_samples, ...)``.
    info
        :class:`SGMCMCInfo` with fields ``(num_chains, num_samples)``.
    gibbs_states
        Gibbs-block draws ``(num_chains, num_samples, ...)`` or ``None``.
    state
        Final :class:`DriverState` (to continue sampling).
    """

    positions: Any
    info: SGMCMCInfo
    gibbs_states: Any
    state: DriverState

    def to_inference_data(self, **kwargs):
        """ArviZ ``InferenceData`` of the posterior draws (exploration draws dropped)."""
        from samplers.results import to_inference_data

        keep = ~np.asarray(self.info.explore).any(axis=0)
        positions = jax.tree.map(lambda x: np.asarray(x)[:, keep], self.positions)
        stats = {k: np.asarray(v)[:, keep] for k, v in self.info._asdict().items()}
        stats["diverging"] = ~stats["is_finite"]
        if self.gibbs_states is not None:
            positions = {
                "position": positions,
                "gibbs": jax.tree.map(lambda x: np.asarray(x)[:, keep], self.gibbs_states),
            }
        return to_inference_data(positions, sample_stats=stats, **kwargs)


def _check_positive_int(name, value, minimum=1):
    if not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _all_finite(a) -> bool:
    """Host-side check (one transfer, no per-call compilation)."""
    a = np.asarray(a)
    return bool(np.isfinite(a.astype(np.float32) if a.dtype.itemsize < 4 else a).all())


def _validate(data, init_positions, batch_size, temperature):
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("data must contain at least one array")
    sizes = {int(jnp.shape(a)[0]) for a in leaves}
    if len(sizes) != 1:
        raise ValueError(f"data arrays must share their leading axis, got sizes {sorted(sizes)}")
    data_size = sizes.pop()
    for i, a in enumerate(leaves):
        if jnp.issubdtype(jnp.result_type(a), jnp.floating) and not _all_finite(a):
            raise ValueError(f"data leaf {i} contains NaN or inf")
    if batch_size > data_size:
        raise ValueError(f"batch_size {batch_size} exceeds the data size {data_size}")
    pleaves = jax.tree_util.tree_leaves(init_positions)
    if not pleaves:
        raise ValueError("init_positions has no arrays")
    chains = {int(jnp.shape(a)[0]) if jnp.ndim(a) else -1 for a in pleaves}
    if len(chains) != 1 or -1 in chains:
        raise ValueError(
            "every leaf of init_positions needs the same leading (chain) axis; "
            f"got leading sizes {sorted(chains)}"
        )
    for i, a in enumerate(pleaves):
        if not _all_finite(a):
            raise ValueError(f"init_positions leaf {i} contains NaN or inf")
    if not float(temperature) >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    return data_size, chains.pop()


def _chain_sharding(num_chains: int, shard: bool):
    devices = jax.devices()
    if not shard or len(devices) < 2 or num_chains % len(devices):
        return None, None
    mesh = jax.sharding.Mesh(np.array(devices), ("chain",))
    return (
        jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("chain")),
        jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()),
    )


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="sampling", unit="step")

    def update(self, t):
        if self.bar is not None and int(t) > self.bar.n:
            self.bar.update(int(t) - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _progress_default() -> bool:
    return "CI" not in os.environ and sys.stderr.isatty()


def _save_checkpoint(path, config, t, state, draws):
    leaves = jax.tree_util.tree_leaves(state)
    arrays = {}
    for i, leaf in enumerate(leaves):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        arrays[f"state_{i}"] = np.asarray(leaf)
    for i, leaf in enumerate(jax.tree_util.tree_leaves(draws)):
        arrays[f"draws_{i}"] = np.asarray(leaf)
    arrays["config"] = np.frombuffer(json.dumps({**config, "t": int(t)}).encode(), np.uint8)
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load_checkpoint(path, config, state_template, draws_template):
    with np.load(path) as f:
        saved = json.loads(bytes(f["config"]).decode())
        t = saved.pop("t")
        if saved != config:
            raise ValueError(
                f"checkpoint {path} was written by a run with other settings: {saved} != {config}"
            )
        leaves, treedef = jax.tree_util.tree_flatten(state_template)
        state = []
        for i, leaf in enumerate(leaves):
            arr = jnp.asarray(f[f"state_{i}"])
            if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                arr = jax.random.wrap_key_data(arr)
            state.append(arr)
        dleaves, dtreedef = jax.tree_util.tree_flatten(draws_template)
        draws = [np.asarray(f[f"draws_{i}"]) for i in range(len(dleaves))]
    return (
        t,
        jax.tree_util.tree_unflatten(treedef, state),
        (jax.tree_util.tree_unflatten(dtreedef, draws) if dleaves else None),
    )


_ACTIVE_PROGRESS = [None]


def _report_progress(t):
    if _ACTIVE_PROGRESS[0] is not None:
        _ACTIVE_PROGRESS[0].update(t)


def _build_runner(
    kernel,
    logdensity_fn,
    step_size,
    temperature,
    batch_size,
    batches,
    gibbs_fn,
    gibbs_every,
    grad_clip,
    num_burnin,
    data_size,
    show,
    control_variate_center=None,
    data=None,
):
    """Compile-once chunk runner: ``run(state, keys, data, t0, inner_counts)``.

    The outer ``lax.scan`` runs over ``inner_counts`` (steps between stored draws; the first
    entry of the first chunk also covers the burn-in), the inner loop is a ``fori_loop`` with
    a traced trip count, so burn-in and sampling share one compiled program.
    """
    schedule = as_schedule(step_size)
    estimator = value_and_grad(logdensity_fn)
    if control_variate_center is not None:
        estimator = control_variates(estimator, control_variate_center, data, data_size)

    def chain_step(t, cstate: DriverState, chain_key, data):
        kernel_key, data_key, gibbs_key = (jax.random.fold_in(chain_key, i) for i in range(3))
        batch, batch_state = minibatch.next_batch(
            data_key, cstate.batch_state, t, data, batch_size, batches
        )
        h, explore = schedule(t)
        temp = jnp.where(explore, 0.0, temperature).astype(jnp.float32)
        position = cstate.kernel_state.position
        if gibbs_fn is None:
            value, grad = estimator(position, batch, data_size)
        else:
            value, grad = estimator(position, batch, data_size, cstate.gibbs_state)
        if grad_clip is not None:
            grad = clip_by_global_norm(grad, grad_clip)
        grad_norm = jnp.sqrt(tree_sq_norm(grad))
        finite = jnp.isfinite(value) & jnp.isfinite(grad_norm)
        kernel_state = kernel.step(
            jax.random.fold_in(kernel_key, t),
            cstate.kernel_state,
            value,
            grad,
            h,
            temp,
            t < num_burnin,
        )
        # Step sizes are float32: keep every state leaf in its own dtype (e.g. bfloat16).
        kernel_state = jax.tree.map(
            lambda new, old: new.astype(old.dtype), kernel_state, cstate.kernel_state
        )
        gibbs_state = cstate.gibbs_state
        if gibbs_fn is not None:
            gibbs_state = jax.lax.cond(
                jnp.mod(t + 1, gibbs_every) == 0,
                lambda: gibbs_fn(
                    jax.random.fold_in(gibbs_key, t), kernel_state.position, gibbs_state
                ),
                lambda: gibbs_state,
            )
        first_bad = jnp.where((cstate.first_bad_step < 0) & ~finite, t, cstate.first_bad_step)
        info = SGMCMCInfo(
            value, grad_norm, jnp.asarray(h, jnp.float32), temp, jnp.asarray(explore), finite
        )
        return DriverState(kernel_state, gibbs_state, batch_state, first_bad), info

    step_all = jax.vmap(chain_step, in_axes=(None, 0, 0, None))

    def run_chunk(state, chain_keys, data, t0, inner_counts):
        num_outer = inner_counts.shape[0]
        starts = t0 + jnp.cumsum(inner_counts) - inner_counts

        def outer(state, xs):
            o, start, count = xs
            info0 = jax.eval_shape(lambda s: step_all(start, s, chain_keys, data)[1], state)
            info0 = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), info0)

            def inner(i, carry):
                state, _ = carry
                return step_all(start + i, state, chain_keys, data)

            state, info = jax.lax.fori_loop(0, count, inner, (state, info0))
            if show:
                jax.lax.cond(
                    jnp.mod(o, max(1, num_outer // 50)) == 0,
                    lambda: jax.debug.callback(_report_progress, start + count),
                    lambda: None,
                )
            return state, (state.kernel_state.position, state.gibbs_state, info)

        return jax.lax.scan(outer, state, (jnp.arange(num_outer), starts, inner_counts))

    return jax.jit(run_chunk)


_cached_runner = functools.lru_cache(maxsize=64)(_build_runner)


def sample(
    rng_key,
    kernel: SGMCMCKernel,
    logdensity_fn: Callable,
    data,
    init_positions,
    *,
    num_samples: int,
    batch_size: int,
    step_size,
    num_burnin: int = 0,
    thinning: int = 1,
    temperature: float = 1.0,
    batches: str = "epoch",
    gibbs_fn: Callable | None = None,
    init_gibbs_state=None,
    gibbs_every: int = 1,
    grad_clip: float | None = None,
    control_variate_center=None,
    progress_bar: bool | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    shard: bool = True,
) -> SampleResult:
    """Run ``num_chains`` SG-MCMC chains and return thinned draws after burn-in.

    Parameters
    ----------
    rng_key
        PRNG key; chain ``c`` uses ``fold_in(rng_key, c)`` for its noise and minibatches.
    kernel
        An :class:`SGMCMCKernel`, e.g. ``samplers.sgmcmc.sghmc(alpha=0.1)``.
    logdensity_fn
        ``(position, batch, data_size[, gibbs_state]) -> scalar`` minibatch log posterior.
    data
        Pytree of arrays sharing the leading (example) axis, e.g. ``(x, y)``.
    init_positions
        Pytree whose leaves have a leading chain axis ``(num_chains, ...)``.
    num_samples, thinning, num_burnin
        Kept draws per chain, steps between kept draws, steps before the first kept draw.
        Each chain runs ``num_burnin + num_samples * thinning`` steps.
    batch_size
        Minibatch size ``B``.
    step_size
        A float or a schedule ``t -> (step_size, explore)`` from
        :mod:`samplers.sgmcmc.schedules`.
    temperature
        Posterior temperature ``T`` (1 samples the posterior, 0 optimises).
    batches
        ``"epoch"`` (permutation per epoch) or ``"replace"`` (indices with replacement).
    gibbs_fn, init_gibbs_state, gibbs_every
        Optional Gibbs block ``gibbs_fn(rng_key, position, gibbs_state) -> gibbs_state``
        applied after every ``gibbs_every`` SG-MCMC steps; ``init_gibbs_state`` has a
        leading chain axis.
    grad_clip
        Clip the gradient estimate to this global norm.
    control_variate_center
        A position (no chain axis) at which the full-data gradient is computed once for
        control-variate gradients.
    progress_bar
        Show a tqdm bar (default: on in an interactive terminal, off when ``CI`` is set).
    checkpoint_path, checkpoint_every
        Save the run state every ``checkpoint_every`` kept draws (and after burn-in) to this
        ``.npz`` file, and resume from it when it exists.
    shard
        Shard chains over devices when several are present.

    Returns
    -------
    SampleResult
    """
    _check_positive_int("num_samples", num_samples)
    _check_positive_int("thinning", thinning)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("num_burnin", num_burnin, minimum=0)
    _check_positive_int("gibbs_every", gibbs_every)
    if batches not in minibatch.SCHEMES:
        raise ValueError(f"batches must be one of {minibatch.SCHEMES}, got {batches!r}")
    if not callable(step_size) and not float(step_size) > 0:
        raise ValueError(f"step_size must be positive, got {step_size!r}")
    if grad_clip is not None and not float(grad_clip) > 0:
        raise ValueError(f"grad_clip must be positive, got {grad_clip!r}")
    if (gibbs_fn is None) != (init_gibbs_state is None):
        raise ValueError("gibbs_fn and init_gibbs_state must be given together")
    if checkpoint_every is not None:
        _check_positive_int("checkpoint_every", checkpoint_every)
    data = jax.tree.map(jnp.asarray, data)
    data_size, num_chains = _validate(data, init_positions, batch_size, temperature)
    show = _progress_default() if progress_bar is None else bool(progress_bar)
    total_steps = num_burnin + num_samples * thinning
    progress = _Progress(total_steps, show)
    runner_args = (
        kernel,
        logdensity_fn,
        step_size,
        float(temperature),
        batch_size,
        batches,
        gibbs_fn,
        gibbs_every,
        grad_clip,
        num_burnin,
        data_size,
        show,
    )
    if control_variate_center is None:
        run_chunk = _cached_runner(*runner_args)
    else:
        run_chunk = _build_runner(*runner_args, control_variate_center, data)
    _ACTIVE_PROGRESS[0] = progress

    chain_keys = jax.vmap(lambda c: jax.random.fold_in(rng_key, c))(jnp.arange(num_chains))
    state = DriverState(
        jax.vmap(kernel.init)(init_positions),
        init_gibbs_state,
        jax.vmap(lambda k: minibatch.init(jax.random.fold_in(k, 1), data_size, batches))(
            chain_keys
        ),
        jnp.full((num_chains,), -1, jnp.int32),
    )
    chain_sharding, replicated = _chain_sharding(num_chains, shard)
    if chain_sharding is not None:
        state = jax.device_put(state, chain_sharding)
        chain_keys = jax.device_put(chain_keys, chain_sharding)
        data = jax.device_put(data, replicated)

    config = {
        "kernel": kernel.name,
        "num_chains": num_chains,
        "num_samples": num_samples,
        "num_burnin": num_burnin,
        "thinning": thinning,
        "batch_size": batch_size,
        "data_size": data_size,
    }
    chunk = num_samples if checkpoint_every is None else min(checkpoint_every, num_samples)
    t, draws = 0, None
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        template_draws = jax.eval_shape(
            lambda s: run_chunk(s, chain_keys, data, jnp.int32(0), jnp.ones((1,), jnp.int32))[1],
            state,
        )
        t, (state, chain_keys), draws = _load_checkpoint(
            checkpoint_path, config, (state, chain_keys), template_draws
        )

    def check(state):
        bad = np.asarray(state.first_bad_step)
        if (bad >= 0).any():
            chain = int(np.argmax(bad >= 0))
            raise DivergenceError(
                f"chain {chain} produced a non-finite log-density or gradient at step "
                f"{int(bad[chain])} (kernel {kernel.name}); try a smaller step size "
                f"(step_size={step_size!r}), gradient clipping (grad_clip=...), or check the "
                "model and data"
            )

    try:
        while t < total_steps:
            done = max(t - num_burnin, 0) // thinning
            n = min(chunk, num_samples - done)
            counts = np.full((n,), thinning, np.int32)
            counts[0] += num_burnin - min(t, num_burnin)
            state, new = run_chunk(state, chain_keys, data, jnp.int32(t), jnp.asarray(counts))
            t += int(counts.sum())
            check(state)
            new = jax.tree.map(lambda x: np.asarray(x), new)
            draws = (
                new
                if draws is None
                else jax.tree.map(lambda a, b: np.concatenate([a, b], axis=0), draws, new)
            )
            if checkpoint_path is not None:
                _save_checkpoint(checkpoint_path, config, t, (state, chain_keys), draws)
    finally:
        progress.close()
        _ACTIVE_PROGRESS[0] = None

    positions, gibbs_states, info = jax.tree.map(lambda x: np.swapaxes(np.asarray(x), 0, 1), draws)
    return SampleResult(positions, info, gibbs_states, state)
