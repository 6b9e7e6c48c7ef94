"""The SG-MCMC front end of the chain runner: minibatches, gradients, schedules, Gibbs blocks.

:func:`sample` turns any :class:`~samplers.sgmcmc.base.SGMCMCKernel` into a step of the chain
runner (:func:`samplers.runner.run`, which does burn-in, thinning, chunks, the progress bar,
checkpoints and divergence checks) and adds what BlackJAX leaves to the user:

* a minibatch stream per chain (:mod:`samplers.sgmcmc.minibatch`);
* many chains at once (``vmap``), sharded over all devices of all processes
  (:mod:`samplers.distributed`; a chain count that does not divide the device count is padded,
  with a warning);
* a per-draw :class:`SGMCMCInfo` (minibatch log-density, gradient norm, step size,
  temperature, exploration flag, finiteness);
* step sizes given as a float, a per-chain array (sharded with the chains), an optax
  schedule or a schedule of :mod:`samplers.sgmcmc.schedules`, or chosen by the engine
  (:mod:`samplers.sgmcmc.step_size`); optional gradient clipping and control variates;
* BlackJAX's own SG kernels (``blackjax.sgld``, ``blackjax.sghmc``), given the minibatch
  gradient estimator they take (:mod:`samplers.sgmcmc.blackjax_kernels`);
* an optional Gibbs block (``gibbs_fn``) for variables with exact conditionals, e.g. the
  layer variances of a hierarchical prior;
* a :class:`~samplers.runner.DivergenceError` naming the chain and step where the
  log-density or gradient first became non-finite, or where the chain ran away while still
  finite (:class:`RunawayState`: the log density collapsing far below its running maximum,
  or the position norm exploding over its running level).

Every random number of chain ``c`` is a function of ``fold_in(rng_key, c)`` and the global step
index, so a chunked or resumed run gives exactly the draws of an uninterrupted one.

The log-density convention: ``logdensity_fn(position, batch, data_size)`` (plus
``gibbs_state`` when a Gibbs block is used) returns the minibatch estimate
``log p(theta) + N/B sum_i log p(y_i | theta)``.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from samplers import distributed, runner
from samplers.runner import DivergenceError
from samplers.sgmcmc import minibatch
from samplers.sgmcmc.base import SGMCMCKernel, tree_sq_norm
from samplers.sgmcmc.blackjax_kernels import as_kernel
from samplers.sgmcmc.gradients import clip_by_global_norm, control_variates, value_and_grad
from samplers.sgmcmc.schedules import as_schedule

__all__ = [
    "SGMCMCInfo",
    "DriverState",
    "RunawayState",
    "SampleResult",
    "DivergenceError",
    "sample",
]


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

    The kernel's own info (e.g. :class:`~samplers.sgmcmc.csgld.CSGLDInfo`) is not stored by
    :func:`sample`.
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
    step_size_info
        :class:`samplers.sgmcmc.step_size.StepSizeInfo` when the step size was chosen by the
        engine (``step_size=None``): the step, the curvature and gradient noise that set it,
        the predicted variance ratio; ``None`` for a given step size.
    accumulated
        Final state of the ``accumulate`` statistic (leading chain axis), or ``None``.
    """

    positions: Any
    info: SGMCMCInfo
    gibbs_states: Any
    state: DriverState
    step_size_info: Any = None
    accumulated: Any = None

    def to_inference_data(self, transform: Callable | None = None, **kwargs):
        """ArviZ ``InferenceData`` of the posterior draws (exploration draws dropped).

        ``transform`` maps the kept positions (leaves ``(num_chains, num_draws, ...)``) to
        the ``posterior`` group, e.g. a model's constrained values; ``kwargs`` go to
        :func:`samplers.results.to_inference_data` (``posterior_predictive``,
        ``log_likelihood``, ``observed_data``, ``dims``...).
        """
        from samplers.results import to_inference_data

        keep = ~np.asarray(self.info.explore).any(axis=0)
        positions = jax.tree.map(lambda x: np.asarray(x)[:, keep], self.positions)
        if transform is not None:
            positions = transform(positions)
        stats = {k: np.asarray(v)[:, keep] for k, v in self.info._asdict().items()}
        stats["diverging"] = ~stats["is_finite"]
        if self.gibbs_states is not None:
            positions = {
                "position": positions,
                "gibbs": jax.tree.map(lambda x: np.asarray(x)[:, keep], self.gibbs_states),
            }
        return to_inference_data(positions, sample_stats=stats, **kwargs)


def _check_positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_data_leaves(data):
    for path, leaf in jax.tree_util.tree_flatten_with_path(data)[0]:
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            where = jax.tree_util.keystr(path) or "data"
            raise ValueError(
                f"data must be a pytree of arrays; {where} is a Python {type(leaf).__name__} "
                "(data given as Python lists?): convert it with numpy.asarray"
            )


def _check_template(init_positions, template):
    """Structure, shapes (after the chain axis) and dtypes of the positions vs a template."""
    got = jax.tree_util.tree_structure(init_positions)
    want = jax.tree_util.tree_structure(template)
    if got != want:
        raise ValueError(
            f"init_positions does not have the structure of position_template: {got} != {want}"
        )
    pairs = zip(
        jax.tree_util.tree_flatten_with_path(init_positions)[0],
        jax.tree_util.tree_leaves(template),
        strict=True,
    )
    for (path, leaf), ref in pairs:
        where = jax.tree_util.keystr(path) or "init_positions"
        if tuple(jnp.shape(leaf)[1:]) != tuple(jnp.shape(ref)):
            raise ValueError(
                f"init_positions{where if where != 'init_positions' else ''} has shape "
                f"{tuple(jnp.shape(leaf))} (chains, ...), expected (num_chains, "
                f"*{tuple(jnp.shape(ref))}) from position_template"
            )
        if jnp.result_type(leaf) != jnp.result_type(ref):
            raise ValueError(
                f"init_positions{where if where != 'init_positions' else ''} has dtype "
                f"{jnp.result_type(leaf)}, expected {jnp.result_type(ref)} from "
                "position_template"
            )


_SCHEDULE_BLOCK = 1024


@functools.lru_cache(maxsize=64)
def _schedule_minimum(schedule):
    """Compiled ``num_steps -> (smallest step size, its step)`` over ``t < num_steps``, in
    blocks of 1024 steps (NaN counts as ``-inf``); one compile per schedule."""

    def minimum(num_steps):
        def block(b, carry):
            best, where = carry
            t = b * _SCHEDULE_BLOCK + jnp.arange(_SCHEDULE_BLOCK, dtype=jnp.int32)
            h = jnp.asarray(jax.vmap(schedule)(t)[0], jnp.float32)
            h = jnp.where(jnp.isnan(h), -jnp.inf, h)
            h = jnp.where(t < num_steps, h, jnp.inf)
            i = jnp.argmin(h)
            better = h[i] < best
            return jnp.where(better, h[i], best), jnp.where(better, t[i], where)

        blocks = (num_steps + _SCHEDULE_BLOCK - 1) // _SCHEDULE_BLOCK
        return jax.lax.fori_loop(0, blocks, block, (jnp.float32(jnp.inf), jnp.int32(0)))

    return jax.jit(minimum)


def _check_final_positions(position, num_steps, message):
    """The last step's output is never evaluated by a later step: check it on the host."""
    bad = np.zeros(jax.tree_util.tree_leaves(position)[0].shape[0], bool)
    for leaf in jax.tree_util.tree_leaves(position):
        leaf = distributed.to_host(leaf)
        leaf = leaf.astype(np.float32) if leaf.dtype.itemsize < 4 else leaf
        bad |= ~np.isfinite(leaf.reshape(leaf.shape[0], -1)).all(axis=1)
    if bad.any():
        raise DivergenceError(message(int(np.argmax(bad)), num_steps - 1, _FINAL))


def _step_size_fingerprint(step_size, chain_steps, num_burnin, num_steps):
    """Step sizes at the first step, after burn-in and at the last step, or every chain's
    step size (checkpoint check)."""
    if chain_steps is not None:
        return {"per_chain": [float(h) for h in chain_steps]}
    if not callable(step_size):
        return [float(step_size)]
    schedule = as_schedule(step_size)
    return [float(schedule(jnp.int32(t))[0]) for t in (0, num_burnin, num_steps - 1)]


#: Marker of a per-chain step size in the compiled step (the values travel with the chains).
PER_CHAIN = "per_chain"
#: Marker of a constant step size shared by the chains: its value travels in
#: :class:`RunConstants`, so runs that differ only in it reuse one compiled program.
SHARED = "shared"


class RunConstants(NamedTuple):
    """Run-constant scalars passed to the compiled step as arguments, not closed over: runs
    that differ only in them (a temperature sweep, another constant step size or burn-in
    length) reuse one compiled program.

    Attributes
    ----------
    step_size
        The constant step size (float32; unused with a schedule or per-chain step sizes).
    temperature
        Posterior temperature ``T`` (float32).
    num_burnin
        Burn-in length (int32): kernels adapt while ``t < num_burnin``.
    """

    step_size: jax.Array
    temperature: jax.Array
    num_burnin: jax.Array


def _normalize_step_size(step_size, num_chains):
    """``(step_size, chain_steps)``: a float or a schedule, or ``(PER_CHAIN, (num_chains,)
    float32 array)`` for a per-chain step size; bad values raise a ``ValueError`` naming
    ``step_size`` before anything is compiled."""
    if callable(step_size):
        return step_size, None
    if isinstance(step_size, bool | str | bytes):
        raise ValueError(f"step_size must be a positive number, got {step_size!r}")
    try:
        value = np.asarray(step_size)
    except (TypeError, ValueError) as err:
        raise ValueError(f"step_size must be a number or an array, got {step_size!r}") from err
    if value.dtype.kind not in "iuf" and value.dtype.name != "bfloat16":
        raise ValueError(f"step_size must hold real numbers, got dtype {value.dtype}")
    if value.ndim == 0:
        return float(value), None
    if value.shape != (num_chains,):
        raise ValueError(
            f"step_size has shape {value.shape}: a per-chain step size needs shape "
            f"(num_chains,) = ({num_chains},)"
        )
    value = value.astype(np.float32)
    bad = ~(np.isfinite(value) & (value > 0))
    if bad.any():
        chain = int(np.argmax(bad))
        raise ValueError(
            f"step_size must be positive and finite for every chain; chain {chain} has "
            f"{value[chain]!r}"
        )
    return PER_CHAIN, value


def _check_step_size(step_size, num_steps):
    if step_size is PER_CHAIN:  # checked by _normalize_step_size
        return
    if not callable(step_size):
        h = float(step_size)
        if not (math.isfinite(h) and h > 0):
            raise ValueError(f"step_size must be positive and finite, got {step_size!r}")
        return
    best, where = _schedule_minimum(as_schedule(step_size))(jnp.int32(num_steps))
    if not float(best) > 0:
        value = "NaN" if float(best) == -np.inf else float(best)
        raise ValueError(
            f"step_size schedule gives step size {value} at step {int(where)} (of "
            f"{num_steps}); step sizes must be positive and finite"
        )


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
    if not (math.isfinite(float(temperature)) and float(temperature) >= 0):
        raise ValueError(f"temperature must be finite and >= 0, got {temperature!r}")
    return data_size, chains.pop()


def _step_index(rng_key, t):
    """The SG step's key argument is the global step index (see :func:`_build_step`)."""
    del rng_key
    return t


def _observe(state: DriverState):
    return state.kernel_state.position, state.gibbs_state


class RunawayState(NamedTuple):
    """Running statistics of the runaway check (leaves ``(num_chains,)``).

    The rules are evaluated every :data:`CHECK_EVERY` steps (and at every kept draw), on the
    state and minibatch log density of that step; "the ``t``-th check" below counts these
    evaluations. When a chain is caught, the runner replays the steps since the previous
    check and names the first of them at which a rule holds against the statistics of the
    previous check (:func:`samplers.runner.run`, ``check_every``). A chain has run away at
    a check (it is finite but diverging, e.g. a step size beyond the stability limit, where
    the iterates grow geometrically until they overflow) when

    * its minibatch log density collapses: ``best - logdensity_t > max_logdensity_drop *
      (N + d)``, with ``best`` the running maximum of the log density at the earlier
      checks, ``N`` the data size
      and ``d`` the number of parameters per chain. A log posterior is a sum of ``N``
      likelihood terms and ``d`` prior terms, and at equilibrium at temperature ``T`` it
      sits about ``T d / 2`` below its mode (plus minibatch noise of order ``N / B`` times
      a per-example spread), so the drop per datum-or-parameter does not grow with the data
      size or the model size; ``max_logdensity_drop`` nats per datum-or-parameter is far
      outside equilibrium fluctuations;
    * or its position norm explodes: ``|theta_t| > max_norm_growth * ref_t`` after the
      ``t``-th check, with ``ref_t`` the largest norm at the checks ``1 .. k``, ``k`` the
      largest power of two below ``t`` (a running maximum lagged by up to half the run, kept
      with two numbers). The initial position is not a reference (a chain may start at
      zero), and a ratio does not depend on the parameters' units. Drift or diffusion from
      the initial point changes the norm by a factor of a few between ``t / 2`` and ``t``;
      a geometric runaway of rate ``r`` per step by up to ``r ** (s / 2)`` over ``s``
      steps, so it trips after about ``2 log(max_norm_growth) / log(r)`` steps (rounded up
      to a check). This rule catches runaways along directions
      the log density barely sees (e.g. an unidentified direction under a preconditioner).

    Attributes
    ----------
    stats
        ``(num_chains, 3)``: the running maximum of the minibatch log density, then the
        lagged and the current running maximum of the position norm.
    count
        Checks made; the lagged maximum is refreshed when ``count`` is a power of two.
    limits
        ``(num_chains, 2)``: ``max_logdensity_drop * (N + d)`` and ``max_norm_growth``
        (``inf``: off).

    The statistics are packed in one array (one fused update instead of one per statistic:
    on XLA:CPU each separate output costs a kernel launch), and checking every
    :data:`CHECK_EVERY` steps instead of every step divides the check's cost, a few kernel
    launches that cost as much as a step of a small model, by that factor.
    """

    stats: jax.Array
    count: jax.Array
    limits: jax.Array


#: Steps between two evaluations of the runaway and non-finite check.
CHECK_EVERY = 10

# reason codes of the divergence check (see ``message`` in :func:`sample`)
_NON_FINITE, _COLLAPSE, _EXPLODE, _FINAL = 1, 2, 3, 4


def _runaway_init(state: DriverState, drop_limit: float, growth: float) -> RunawayState:
    num_chains = jax.tree_util.tree_leaves(state.kernel_state.position)[0].shape[0]

    stats = jnp.tile(jnp.array([-jnp.inf, 0.0, 0.0], jnp.float32), (num_chains, 1))
    limits = jnp.tile(jnp.array([drop_limit, growth], jnp.float32), (num_chains, 1))
    return RunawayState(stats, jnp.zeros((num_chains,), jnp.int32), limits)


def _position_norm(position):
    leaves = [jnp.asarray(x, jnp.float32) for x in jax.tree_util.tree_leaves(position)]
    return jnp.sqrt(tree_sq_norm(leaves))


def _runaway_update(check: RunawayState, state: DriverState, info: SGMCMCInfo):
    """The runner's divergence check: non-finite values, then the runaway rules."""
    norm = jax.vmap(_position_norm)(state.kernel_state.position)
    logdensity = jnp.asarray(info.logdensity, jnp.float32)
    best, ref, running_max = check.stats[:, 0], check.stats[:, 1], check.stats[:, 2]
    drop_limit, growth = check.limits[:, 0], check.limits[:, 1]
    collapse = best - logdensity > drop_limit
    explode = (ref > 0) & (norm > growth * ref)
    count = check.count + 1
    running_max = jnp.fmax(running_max, norm)
    refresh = (count & (count - 1)) == 0  # count = 1, 2, 4, 8, ...
    stats = jnp.stack(
        [jnp.fmax(best, logdensity), jnp.where(refresh, running_max, ref), running_max], axis=1
    )
    new = RunawayState(stats, count, check.limits)
    code = jnp.where(
        ~info.is_finite,
        _NON_FINITE,
        jnp.where(collapse, _COLLAPSE, jnp.where(explode, _EXPLODE, 0)),
    )
    return new, code


def _check_threshold(name, value):
    if value is None:
        return math.inf
    if isinstance(value, bool) or not (
        isinstance(value, int | float | np.integer | np.floating) and float(value) > 0
    ):
        raise ValueError(f"{name} must be a positive number or None, got {value!r}")
    return float(value)


def _fold_in_each(keys, t):
    """``[fold_in(k, t) for k in keys]`` as one hash evaluation (bit-identical to separate
    ``fold_in`` calls: Threefry is elementwise in its keys). On XLA:CPU each Threefry call is
    a small rolled loop whose launch costs about as much as a fused kernel of this model, so
    per-step keys are derived together."""
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, t)


def _build_step(
    kernel,
    logdensity_fn,
    step_size,
    batch_size,
    batches,
    gibbs_fn,
    gibbs_every,
    grad_clip,
    data_size,
    control_variate_center=None,
    data=None,
):
    """The runner step ``step(t, state, data, chain_keys, consts[, chain_steps]) -> (state,
    SGMCMCInfo)`` with ``consts`` a :class:`RunConstants`.

    Every random number of chain ``c`` at step ``t`` is a fold of its key
    ``fold_in(rng_key, c)`` (passed in ``chain_keys``) and ``t`` (kernel noise: stream 0,
    minibatches: stream 1, Gibbs block: stream 2), so the runner hands the step the global step
    index instead of a key. ``step_size`` is a schedule (closed over), :data:`SHARED` (the
    value is ``consts.step_size``) or :data:`PER_CHAIN` (each chain's step size is a further
    chain-axis argument ``chain_steps``).
    """
    per_chain = step_size is PER_CHAIN
    shared = step_size is SHARED
    schedule = None if per_chain or shared else as_schedule(step_size)
    estimator = value_and_grad(logdensity_fn)
    if control_variate_center is not None:
        estimator = control_variates(estimator, control_variate_center, data, data_size)

    def chain_step(t, cstate: DriverState, chain_key, data, consts, chain_h=None):
        kernel_key, data_key, gibbs_key = (jax.random.fold_in(chain_key, i) for i in range(3))
        if batches == "replace":  # both streams need a fresh key at every step
            step_key, batch_key = _fold_in_each(jnp.stack([kernel_key, data_key]), t)
        else:
            step_key, batch_key = jax.random.fold_in(kernel_key, t), None
        batch, batch_state = minibatch.next_batch(
            data_key, cstate.batch_state, t, data, batch_size, batches, step_key=batch_key
        )
        if per_chain or shared:
            h, explore = (chain_h if per_chain else consts.step_size), jnp.zeros((), bool)
        else:
            h, explore = schedule(t)
        temp = jnp.where(explore, 0.0, consts.temperature).astype(jnp.float32)
        position = cstate.kernel_state.position
        extra = () if gibbs_fn is None else (cstate.gibbs_state,)
        value, grad = estimator(position, batch, data_size, *extra)
        if grad_clip is not None:
            grad = clip_by_global_norm(grad, grad_clip)
        grad_norm = jnp.sqrt(tree_sq_norm(grad))
        finite = jnp.isfinite(value) & jnp.isfinite(grad_norm)

        def grad_fn(x):
            """The minibatch gradient estimator at another position (same batch)."""
            g = estimator(x, batch, data_size, *extra)[1]
            return g if grad_clip is None else clip_by_global_norm(g, grad_clip)

        kernel_state, _ = kernel.bind(grad_fn)(
            step_key,
            cstate.kernel_state,
            value,
            grad,
            h,
            temp,
            t < consts.num_burnin,
        )
        # Step sizes are float32: keep every state leaf in its own dtype (e.g. bfloat16).
        kernel_state = jax.tree.map(
            lambda new, old: new.astype(old.dtype), kernel_state, cstate.kernel_state
        )
        gibbs_state = cstate.gibbs_state
        if gibbs_fn is not None:
            # No Gibbs draw during a schedule's noise-free exploration phase: drawing a
            # hierarchical variance given weights that are being optimised towards a mode
            # shrinks the variance, which pulls the weights further (a collapse).
            gibbs_state = jax.lax.cond(
                (jnp.mod(t + 1, gibbs_every) == 0) & ~jnp.asarray(explore),
                lambda: gibbs_fn(
                    jax.random.fold_in(gibbs_key, t), kernel_state.position, gibbs_state
                ),
                lambda: gibbs_state,
            )
        info = SGMCMCInfo(
            value,
            grad_norm,
            jnp.asarray(h, jnp.float32),
            temp,
            jnp.asarray(explore),
            finite,
        )
        return DriverState(kernel_state, gibbs_state, batch_state), info

    if per_chain:
        step_all = jax.vmap(chain_step, in_axes=(None, 0, 0, None, None, 0))

        def step(t, state, data, chain_keys, consts, chain_steps):
            return step_all(t, state, chain_keys, data, consts, chain_steps)

        return step

    step_all = jax.vmap(chain_step, in_axes=(None, 0, 0, None, None))

    def step(t, state, data, chain_keys, consts):
        return step_all(t, state, chain_keys, data, consts)

    return step


_cached_step = functools.lru_cache(maxsize=64)(_build_step)


def sample(
    rng_key,
    kernel: SGMCMCKernel,
    logdensity_fn: Callable,
    data,
    init_positions,
    *,
    num_samples: int,
    batch_size: int,
    step_size=None,
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
    position_template=None,
    overwrite_checkpoint: bool = False,
    accumulate: runner.Accumulator | None = None,
    store_draws: bool = True,
    max_logdensity_drop: float | None = 1e3,
    max_norm_growth: float | None = 1e4,
) -> SampleResult:
    """Run ``num_chains`` SG-MCMC chains and return thinned draws after burn-in.

    Parameters
    ----------
    rng_key
        PRNG key; chain ``c`` uses ``fold_in(rng_key, c)`` for its noise and minibatches.
    kernel
        An :class:`SGMCMCKernel`, e.g. ``samplers.sgmcmc.sghmc(alpha=0.1)``, or one of
        BlackJAX's own SG kernels as BlackJAX exports it (``blackjax.sgld``,
        ``blackjax.sghmc``), or with its hyperparameters through
        :func:`samplers.sgmcmc.blackjax_kernels.blackjax_kernel`; the driver builds the
        minibatch gradient estimator BlackJAX's kernels take.
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
        One of: a float or a scalar (JAX or NumPy) array; a per-chain array of shape
        ``(num_chains,)`` (chain ``c`` runs at its own constant step size ``step_size[c]``;
        the array is sharded with the chains); an optax schedule ``step -> step_size``
        (e.g. ``optax.cosine_decay_schedule``); or a schedule ``t -> (step_size, explore)``
        from :mod:`samplers.sgmcmc.schedules`. Every step size of the run must be positive
        and finite (a schedule is evaluated over all steps before sampling; a bad value
        raises a ``ValueError`` naming ``step_size`` before anything is compiled).
        ``None``: chosen by the engine during the first half of the burn-in
        (:func:`samplers.sgmcmc.step_size.tune_step_size`: largest step whose predicted
        bias of posterior variances from discretisation and minibatch noise is <= 10%,
        re-estimated as the chains move); reported in ``result.step_size_info``.
    temperature
        Posterior temperature ``T``, finite and ``>= 0`` (1 samples the posterior, 0
        optimises). The temperature, a constant step size and ``num_burnin`` are arguments
        of the compiled program (:class:`RunConstants`): a temperature sweep, or runs that
        differ only in these, compile once.
    batches
        ``"epoch"`` (permutation per epoch) or ``"replace"`` (indices with replacement).
    gibbs_fn, init_gibbs_state, gibbs_every
        Optional Gibbs block ``gibbs_fn(rng_key, position, gibbs_state) -> gibbs_state``
        applied after every ``gibbs_every`` SG-MCMC steps, except during the exploration
        (noise-free) phase of a cyclical schedule; ``init_gibbs_state`` has a leading chain
        axis.
    grad_clip
        Clip the gradient estimate to this global norm.
    control_variate_center
        A position (no chain axis) at which the full-data gradient is computed once for
        control-variate gradients.
    progress_bar
        Show a tqdm bar (default: on in an interactive terminal, off when ``CI`` is set).
    checkpoint_path, checkpoint_every, overwrite_checkpoint
        Save the run state every ``checkpoint_every`` kept draws to this ``.npz`` file (the
        new draws are appended as one file per chunk in ``<checkpoint_path>.draws``), and
        resume from it when it exists (see :func:`samplers.runner.run`: a checkpoint of a run
        with other settings, key, positions layout or data is refused unless
        ``overwrite_checkpoint=True``, which starts afresh).
    shard
        Shard chains over all devices (of all processes under ``jax.distributed``) when
        there are several (:mod:`samplers.distributed`); a chain count that does not divide
        the device count is padded with copies of the first chains, which are dropped, with
        an :class:`~samplers.distributed.UnevenChainsWarning`. The draws do not depend on the
        layout: chain ``c``'s random numbers come from ``fold_in(rng_key, c)``.
    position_template
        Optional position of ONE chain with the structure, shapes and dtypes the model
        expects (e.g. the model's ``init`` output): ``init_positions`` is checked against it.
    accumulate
        Optional streaming statistic (:class:`samplers.runner.Accumulator`) of each chain's
        :class:`DriverState` at every kept draw, e.g. a running mean of predictions; its
        memory does not grow with ``num_samples``.
    store_draws
        Keep the positions (and Gibbs states) of the kept draws; ``False`` returns
        ``positions=None`` and keeps only ``info`` and ``accumulated``.
    max_logdensity_drop, max_norm_growth
        Runaway thresholds (:class:`RunawayState`): a chain whose minibatch log density falls
        more than ``max_logdensity_drop * (N + d)`` below its running maximum (``N`` data
        points, ``d`` parameters per chain), or whose position norm grows more than
        ``max_norm_growth`` times over its lagged running maximum, raises a
        :class:`DivergenceError` naming the chain and step (checked every
        :data:`CHECK_EVERY` steps, the step found by a replay); ``None`` turns a rule off.

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
    if grad_clip is not None and not float(grad_clip) > 0:
        raise ValueError(f"grad_clip must be positive, got {grad_clip!r}")
    if (gibbs_fn is None) != (init_gibbs_state is None):
        raise ValueError("gibbs_fn and init_gibbs_state must be given together")
    if checkpoint_every is not None:
        _check_positive_int("checkpoint_every", checkpoint_every)
    drop_per_unit = _check_threshold("max_logdensity_drop", max_logdensity_drop)
    growth = _check_threshold("max_norm_growth", max_norm_growth)
    _check_data_leaves(data)
    data = jax.tree.map(jnp.asarray, data)
    data_size, num_chains = _validate(data, init_positions, batch_size, temperature)
    if position_template is not None:
        _check_template(init_positions, position_template)
    kernel = as_kernel(kernel)
    chain_steps = None
    if step_size is not None:
        step_size, chain_steps = _normalize_step_size(step_size, num_chains)
    step_size_info = None
    if step_size is None:
        if gibbs_fn is not None or control_variate_center is not None:
            raise ValueError(
                "step_size=None (automatic) is not available with gibbs_fn or "
                "control_variate_center; pass step_size"
            )
        if num_burnin < 24 or not float(temperature) > 0:
            raise ValueError(
                "step_size=None (automatic) needs num_burnin >= 24 and temperature > 0, got "
                f"num_burnin={num_burnin!r}, temperature={temperature!r}; pass step_size"
            )
        from samplers.sgmcmc.step_size import tune_step_size

        tune_steps = num_burnin // 2
        init_positions, step_size_info = tune_step_size(
            jax.random.fold_in(rng_key, 2**30),
            kernel,
            logdensity_fn,
            data,
            init_positions,
            batch_size=batch_size,
            num_steps=tune_steps,
            temperature=float(temperature),
            batches=batches,
        )
        step_size, num_burnin = step_size_info.step_size, num_burnin - tune_steps
    _check_step_size(step_size, num_burnin + num_samples * thinning)
    shared_step = chain_steps is None and not callable(step_size)
    step_args = (
        kernel,
        logdensity_fn,
        SHARED if shared_step else step_size,
        batch_size,
        batches,
        gibbs_fn,
        gibbs_every,
        grad_clip,
        data_size,
    )
    consts = RunConstants(
        jnp.float32(step_size if shared_step else 1.0),
        jnp.float32(temperature),
        jnp.int32(num_burnin),
    )
    if control_variate_center is None:
        step = _cached_step(*step_args)
    else:
        step = _build_step(*step_args, control_variate_center, data)

    total_steps = num_burnin + num_samples * thinning
    chain_keys = jax.vmap(lambda c: jax.random.fold_in(rng_key, c))(jnp.arange(num_chains))
    state = DriverState(
        jax.vmap(kernel.init)(init_positions),
        init_gibbs_state,
        jax.vmap(lambda k: minibatch.init(jax.random.fold_in(k, 1), data_size, batches))(
            chain_keys
        ),
    )
    per_chain = () if chain_steps is None else (jnp.asarray(chain_steps),)
    layout = distributed.chain_mesh(num_chains, shard)
    if layout is not None:
        state, chain_keys, per_chain = layout.shard((state, chain_keys, per_chain))
        data, consts = layout.replicate((data, consts))

    num_params = sum(
        math.prod(jnp.shape(x)[1:]) for x in jax.tree_util.tree_leaves(init_positions)
    )
    reasons = {
        _NON_FINITE: "produced a non-finite log-density or gradient",
        _COLLAPSE: (
            "ran away: its log density fell more than max_logdensity_drop="
            f"{max_logdensity_drop!r} nats per datum-or-parameter (N + d = "
            f"{data_size + num_params}) below its running maximum"
        ),
        _EXPLODE: (
            f"ran away: its position norm grew more than max_norm_growth={max_norm_growth!r} "
            "times over its running level"
        ),
        _FINAL: "produced a non-finite position",
    }

    def message(chain, t, code):
        return (
            f"chain {chain} {reasons.get(code, 'diverged')} at step {t} "
            f"(kernel {kernel.name}); try a smaller step size (step_size="
            f"{step_size if chain_steps is None else float(chain_steps[chain])!r}), "
            "gradient clipping (grad_clip=...), or check the model and data"
        )

    check = runner.DivergenceCheck(
        functools.partial(
            _runaway_init, drop_limit=drop_per_unit * (data_size + num_params), growth=growth
        ),
        _runaway_update,
    )

    out = runner.run(
        rng_key,
        step,
        state,
        num_samples,
        args=(data, chain_keys, consts, *per_chain),
        num_burnin=num_burnin,
        thinning=thinning,
        observe=_observe if store_draws else None,
        accumulate=accumulate,
        key_fn=_step_index,
        diverged=check,
        divergence_message=message,
        check_every=CHECK_EVERY,
        chunk_size=checkpoint_every,
        progress_bar=progress_bar,
        checkpoint_path=checkpoint_path,
        checkpoint_config={
            "kernel": kernel.name,
            "batch_size": batch_size,
            "data_size": data_size,
            "batches": batches,
            "temperature": float(temperature),
            "grad_clip": None if grad_clip is None else float(grad_clip),
            "gibbs_every": gibbs_every,
            "max_logdensity_drop": drop_per_unit,
            "max_norm_growth": growth,
            "step_sizes": (
                None
                if checkpoint_path is None
                else _step_size_fingerprint(step_size, chain_steps, num_burnin, total_steps)
            ),
        },
        overwrite=overwrite_checkpoint,
    )
    if layout is not None:
        out = out._replace(
            state=layout.unpad(out.state),
            trace=layout.unpad(out.trace),
            info=layout.unpad(out.info),
            accumulated=layout.unpad(out.accumulated),
        )
    _check_final_positions(out.state.kernel_state.position, total_steps, message)
    positions, gibbs_states = out.trace if store_draws else (None, None)
    return SampleResult(
        positions, out.info, gibbs_states, out.state, step_size_info, out.accumulated
    )
