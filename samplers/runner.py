"""One chain runner for every sampler in :mod:`samplers`: burn-in, thinning, chunks, progress,
checkpoints and divergence checks in one place.

:func:`run` drives any kernel that follows the BlackJAX protocol

.. code-block:: python

    new_state, info = step(rng_key, state, *args)

where ``state`` holds **all chains** (every leaf has a leading chain axis; vmap a single-chain
kernel over chains, see :func:`vmap_chains`) and ``args`` are run-constant arguments (data,
inverse temperature...) passed as arguments rather than closed over, so a compiled runner is
reused for new values of the same shape. The key of global step ``t`` (``t = 0`` is the first
burn-in step) is ``key_fn(rng_key, t)``, by default ``jax.random.fold_in(rng_key, t)``: a pure
function of the run key and ``t``, so a run cut into chunks or resumed from a checkpoint gives
exactly the draws of an uninterrupted run.

The chain runs ``num_burnin + num_samples * thinning`` steps and keeps the state after steps
``num_burnin + k * thinning`` (``k = 1 .. num_samples``), inside ``lax.scan`` (outer loop over
kept draws) and ``lax.fori_loop`` (inner loop over the steps between them, with a traced trip
count, cut into blocks between divergence checks): discarded steps are never stored, only the
info of a block's last step is kept, and burn-in and sampling share one compiled program.
At each kept draw the runner stores

* ``observe(state)`` for every chain (a pytree; default: ``state.position``; ``None`` stores
  nothing), laid out ``(num_chains, num_samples, ...)``;
* the kernel's ``info`` of the last step, also ``(num_chains, num_samples, ...)``;

and updates the optional streaming :class:`Accumulator` (e.g. :func:`online_mean` of
predictions), whose memory does not grow with the number of draws.

Host-side services (only when :func:`run` is called eagerly, i.e. not under ``jit``/``vmap``):

* chunks: the kept draws are produced ``chunk_size`` at a time by the same compiled program
  (the last chunk is padded with empty steps, so every chunk has the same shape); draws move to
  host memory after every chunk;
* a ``tqdm.auto`` progress bar updated after every chunk (so it reaches 100% exactly); when it
  is shown the run is cut into about 20 chunks (burn-in included);
* checkpoints (``checkpoint_path``): after every chunk the chunk's draws are appended as one
  new file in the directory ``<checkpoint_path>.draws`` and the run state (small: no draws)
  replaces ``checkpoint_path`` (each written to a temporary file, fsynced, then renamed; the
  draws first), so checkpoint cost is linear in the number of draws; a run that finds its
  checkpoint resumes from it;
  a checkpoint written with other settings, another key, another state layout or other
  ``args`` is refused with a ``ValueError`` naming what differs (``overwrite=True`` starts
  afresh), a corrupt file with one naming the path, and a missing directory is reported
  before sampling;
* divergence checks: a :class:`DivergenceCheck` (``init(state) -> check_state`` on the host,
  ``update(check_state, state, info) -> (check_state, code)`` on the device after every step,
  or every ``check_every`` steps with the first bad step found by a host-side replay,
  ``code`` a ``(num_chains,)`` int with ``0`` for healthy and a positive reason otherwise) may
  keep running statistics of the chains (e.g. a running maximum of the log density, to catch
  finite runaways); :func:`divergence_check` turns a stateless ``fn(state, info) -> bool``
  into one. Once a chain has diverged no further step is made, and after the chunk a
  :class:`DivergenceError` names the first chain and step that diverged.
  Chains spread over several devices finish the chunk instead of stopping at once (stopping
  them all would need a cross-device reduction at every step).

Under tracing (``run`` inside ``jit``/``vmap``) the whole run is one program: no progress bar,
no checkpoints (a ``ValueError``), and divergence is not checked (the first diverging step of
each chain is still computed and returned in :attr:`RunResult.first_divergence`).

Colour classes and other multi-stage kernels need nothing special: a kernel whose ``step`` is
a full sweep over colour classes (e.g. :func:`samplers.spins.build_parallel_kernel` with
``mode="colors"``, or a chromatic Gibbs sweep written with ``lax.scan`` over classes) is one
runner step.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import uuid
import zipfile
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from samplers import distributed
from samplers._validate import is_traced

__all__ = [
    "Accumulator",
    "DivergenceCheck",
    "DivergenceError",
    "RunResult",
    "online_mean",
    "online_moments",
    "divergence_check",
    "position",
    "run",
    "vmap_chains",
]


class DivergenceError(FloatingPointError):
    """A chain diverged (e.g. a non-finite log-density or gradient)."""


class DivergenceCheck(NamedTuple):
    """A per-step divergence test that may carry running statistics of all chains.

    Attributes
    ----------
    init
        ``init(state) -> check_state`` for ALL chains, called once on the host with the
        initial state (run-specific thresholds belong here, as arrays, so that ``update``
        stays one function and the compiled runner is reused).
    update
        ``update(check_state, state, info) -> (check_state, code)`` after every step (or
        every ``check_every`` steps of :func:`run`):
        ``state`` is the new state, ``info`` the step's info, ``code`` a ``(num_chains,)``
        integer (or bool) array, ``0`` (``False``) for a healthy chain and a positive reason
        code otherwise. Pass the same function object again to reuse the compiled runner.
    """

    init: Callable
    update: Callable


def _no_check_state(state):
    del state
    return ()


@functools.lru_cache(maxsize=64)
def divergence_check(fn: Callable) -> DivergenceCheck:
    """A stateless :class:`DivergenceCheck` from ``fn(state, info) -> (num_chains,) bool``.

    The same ``fn`` gives the same check (so the compiled runner is reused); a divergence
    is reported with code ``1``.
    """

    def update(check_state, state, info):
        return check_state, fn(state, info)

    return DivergenceCheck(_no_check_state, update)


class Accumulator(NamedTuple):
    """A streaming statistic of the kept draws, per chain.

    Attributes
    ----------
    init
        ``init(state) -> acc`` for ONE chain's state (only shapes may be used: it is called on
        the initial state).
    update
        ``update(acc, state) -> acc`` at every kept draw of ONE chain.
    """

    init: Callable
    update: Callable


class MeanState(NamedTuple):
    """Running mean (and sum of squared deviations) of a function of the draws."""

    count: jax.Array
    mean: Any
    m2: Any


def _welford(fn: Callable, with_variance: bool) -> Accumulator:
    def init(state):
        shapes = jax.eval_shape(fn, state)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        return MeanState(jnp.zeros((), jnp.int32), zeros, zeros if with_variance else ())

    def update(acc, state):
        x = fn(state)
        count = acc.count + 1
        n = count.astype(jnp.float32)
        delta = jax.tree.map(lambda a, m: a - m, x, acc.mean)
        mean = jax.tree.map(lambda m, d: m + (d / n).astype(m.dtype), acc.mean, delta)
        m2 = acc.m2
        if with_variance:
            m2 = jax.tree.map(lambda s, d, a, m: s + d * (a - m), acc.m2, delta, x, mean)
        return MeanState(count, mean, m2)

    return Accumulator(init, update)


def online_mean(fn: Callable) -> Accumulator:
    """Running mean of ``fn(state)`` over the kept draws of each chain.

    Welford's update :math:`\\bar x_n = \\bar x_{n-1} + (x_n - \\bar x_{n-1}) / n` (Welford,
    Technometrics 4, 1962): memory independent of the number of draws. ``fn`` maps ONE chain's
    state to a pytree of floating arrays, e.g. the predictive probabilities at test inputs.
    The result (:class:`MeanState`) has ``mean`` with a leading chain axis.
    """
    return _welford(fn, with_variance=False)


def online_moments(fn: Callable) -> Accumulator:
    """Running mean and sum of squared deviations ``m2`` of ``fn(state)`` (Welford 1962).

    The per-chain sample variance over ``n`` draws is ``m2 / (n - 1)``.
    """
    return _welford(fn, with_variance=True)


class RunResult(NamedTuple):
    """Output of :func:`run`.

    Attributes
    ----------
    state
        Final state of all chains (device arrays; continue from it).
    trace
        ``observe`` outputs, leaves ``(num_chains, num_samples, ...)``, or ``None``.
    info
        Kernel infos at the kept draws, leaves ``(num_chains, num_samples, ...)``.
    accumulated
        Final :class:`Accumulator` states (leading chain axis), or ``None``.
    first_divergence
        ``(num_chains,)`` int32: first step at which ``diverged`` held, ``-1`` if never.
    divergence_code
        ``(num_chains,)`` int32: the reason code ``diverged`` gave at that step (``0`` if
        never).

    Traces and infos are NumPy arrays when :func:`run` runs eagerly and JAX arrays when it is
    traced.
    """

    state: Any
    trace: Any
    info: Any
    accumulated: Any
    first_divergence: Any
    divergence_code: Any = None


def position(state):
    """Default observation: ``state.position`` (the BlackJAX state convention)."""
    return state.position


def vmap_chains(step: Callable, num_chains: int, args_axes=None) -> Callable:
    """A step over all chains from a single-chain ``step(rng_key, state, *args)``.

    Chain ``c`` uses key ``jax.random.split(rng_key, num_chains)[c]``. ``args_axes`` is a tuple
    with one ``jax.vmap`` axis per argument (``0``: one value per chain, e.g. an inverse
    temperature per chain; ``None``: shared), or ``None`` when all arguments are shared.
    """

    def batched(rng_key, state, *args):
        keys = jax.random.split(rng_key, num_chains)
        axes = (None,) * len(args) if args_axes is None else tuple(args_axes)
        return jax.vmap(step, in_axes=(0, 0, *axes))(keys, state, *args)

    return batched


def _num_chains(state) -> int:
    leaves = jax.tree_util.tree_leaves(state)
    if not leaves:
        raise ValueError("initial_state has no arrays")
    sizes = {int(jnp.shape(a)[0]) if jnp.ndim(a) else -1 for a in leaves}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(
            "every leaf of initial_state needs the same leading (chain) axis; got leading "
            f"sizes {sorted(sizes)}"
        )
    return sizes.pop()


def _check_count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def progress_default() -> bool:
    """Progress bars default: off when ``CI`` is set, else on in a terminal or a notebook."""
    if "CI" in os.environ:
        return False
    return sys.stderr.isatty() or "ipykernel" in sys.modules


@functools.lru_cache(maxsize=128)
def _chunk_program(
    step, observe, accumulate, key_fn, check_update, stop_on_divergence, check_every=1
):
    """Compiled ``run_chunk(carry, rng_key, args, t0, counts, keep)`` for one configuration.

    ``counts[i]`` steps are made before entry ``i`` is recorded; ``keep[i]`` says whether entry
    ``i`` is a kept draw (entries of burn-in-only or padding chunks are not). The divergence
    check runs after every block of ``check_every`` steps (blocks end at every entry). With
    ``check_every > 1`` a chain caught at the end of a block is recorded at the block's last
    step, and the block's first state, check state, first step and length are returned (the
    "replay slot") so that the host can replay the block step by step and name the exact step
    (:func:`_replay_program`; compiled only when a chain diverges, so the step is not compiled
    twice in every run). With ``stop_on_divergence`` no further block is run once a chain has
    diverged (the host then raises after the chunk), so a diverging run stops soon instead of
    computing every step.

    Returns ``(carry, (obs, info), slot)``.
    """
    observe_all = None if observe is None else jax.vmap(observe)

    def run_chunk(carry, rng_key, args, t0, counts, keep):
        starts = t0 + jnp.cumsum(counts) - counts

        def steps(t, n, state):
            """``n >= 1`` steps from global step ``t``, no check. Only the last step's info is
            kept, so XLA drops what the others compute for their infos alone."""
            state = jax.lax.fori_loop(
                0, n - 1, lambda j, s: step(key_fn(rng_key, t + j), s, *args)[0], state
            )
            return step(key_fn(rng_key, t + n - 1), state, *args)

        def block(t, n, carry, slot):
            state, (first, check), acc, _ = carry
            if check_update is None:
                state, info = steps(t, n, state)
                return (state, (first, check), acc, info), slot
            new_state, info = steps(t, n, state)
            new_check, code = check_update(check, new_state, info)
            first = _record(first, t + n - 1, code)
            if check_every > 1:
                caught = jnp.any((jnp.asarray(code) > 0) & (carry[1][0][:, 0] < 0))
                slot = jax.tree.map(
                    lambda a, b: jnp.where(caught, a, b), (t, n, state, check), slot
                )
            return (new_state, (first, new_check), acc, info), slot

        def outer(carry_slot, xs):
            carry, slot = carry_slot
            start, count, kept = xs
            state, monitor, acc = carry
            info0 = jax.eval_shape(lambda s: step(key_fn(rng_key, start), s, *args)[1], state)
            info0 = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), info0)
            # without a check the entry is one block (no block when an entry has no steps)
            size = count if check_update is None else check_every

            def go_on(c):
                i, (_, (first, _), _, _), _ = c
                if stop_on_divergence:
                    return (i < count) & jnp.all(first[:, 0] < 0)
                return i < count

            def next_block(c):
                i, carry, slot = c
                n = jnp.minimum(size, count - i)
                return (i + n, *block(start + i, n, carry, slot))

            _, carry, slot = jax.lax.while_loop(
                go_on,
                next_block,
                (jnp.zeros((), count.dtype), (state, monitor, acc, info0), slot),
            )
            state, monitor, acc, info = carry
            if accumulate is not None:
                new = jax.vmap(accumulate.update)(acc, state)
                acc = jax.tree.map(lambda n, o: jnp.where(kept, n, o), new, acc)
            obs = None if observe_all is None else observe_all(state)
            return ((state, monitor, acc), slot), (obs, info)

        state, (_, check), _ = carry
        slot = (jnp.int32(-1), jnp.int32(0), state, check)
        (carry, slot), out = jax.lax.scan(outer, (carry, slot), (starts, counts, keep))
        return carry, out, slot

    return jax.jit(run_chunk)


def _record(first, t, code):
    """Set each chain's first diverging step and code (``first``: ``(chains, 2)``, ``-1``:
    none) where ``code > 0`` and none is set yet; one fused update for both columns."""
    code = jnp.asarray(code).astype(jnp.int32)
    new = (first[:, 0] < 0) & (code > 0)
    return jnp.where(new[:, None], jnp.stack([jnp.full_like(code, t), code], 1), first)


@functools.lru_cache(maxsize=64)
def _replay_program(step, key_fn, check_update):
    """Compiled ``replay(rng_key, args, t, n, state, check) -> first``: ``n`` steps from global
    step ``t`` with the check after each against the fixed check state ``check`` (that of the
    last check before the block): each chain's first step with a positive code."""

    @jax.jit
    def replay(rng_key, args, t, n, state, check):
        def body(j, c):
            s, f = c
            s, info = step(key_fn(rng_key, t + j), s, *args)
            return s, _record(f, t + j, check_update(check, s, info)[1])

        num_chains = jax.tree_util.tree_leaves(state)[0].shape[0]
        first = jnp.tile(jnp.array([-1, 0], jnp.int32), (num_chains, 1))
        return jax.lax.fori_loop(0, n, body, (state, first))[1]

    return replay


def _plan(num_samples, num_burnin, thinning, chunk_size, burnin_chunks):
    """Chunks as ``(counts, keep)`` arrays of length ``chunk_size`` (same shape: one compile)."""
    chunks = []
    if burnin_chunks > 1 and num_burnin > 0:
        per = -(-num_burnin // burnin_chunks)
        done = 0
        while num_burnin - done > 0:
            counts = np.zeros(chunk_size, np.int32)
            counts[0] = min(per, num_burnin - done)
            done += int(counts[0])
            chunks.append((counts, np.zeros(chunk_size, bool)))
        num_burnin = 0
    done = 0
    while done < num_samples:
        n = min(chunk_size, num_samples - done)
        counts = np.zeros(chunk_size, np.int32)
        counts[:n] = thinning
        if done == 0:
            counts[0] += num_burnin
        keep = np.zeros(chunk_size, bool)
        keep[:n] = True
        chunks.append((counts, keep))
        done += n
    return chunks


def _default_key_fn(rng_key, t):
    return jax.random.fold_in(rng_key, t)


def run(
    rng_key,
    step: Callable,
    initial_state,
    num_samples: int,
    *,
    args: tuple = (),
    num_burnin: int = 0,
    thinning: int = 1,
    observe: Callable | None = position,
    accumulate: Accumulator | None = None,
    key_fn: Callable | None = None,
    diverged: DivergenceCheck | None = None,
    divergence_message: Callable[[int, int, int], str] | None = None,
    check_every: int = 1,
    chunk_size: int | None = None,
    progress_bar: bool | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_config: dict | None = None,
    overwrite: bool = False,
) -> RunResult:
    """Run all chains of ``step`` and return thinned draws after burn-in.

    Parameters
    ----------
    rng_key
        Run key.
    step
        ``step(rng_key, state, *args) -> (state, info)`` over all chains (leading axis of
        every leaf); a single-chain kernel goes through :func:`vmap_chains`. Pass the same
        function object again to reuse the compiled runner.
    initial_state
        State of all chains.
    num_samples, num_burnin, thinning
        Kept draws per chain, steps before the first kept draw's thinning interval, steps
        between kept draws: ``num_burnin + num_samples * thinning`` steps in all.
    args
        Run-constant arguments of ``step`` (and of nothing else), e.g. ``(data,)``.
    observe
        ``observe(state) -> pytree`` for ONE chain, stored at every kept draw (default
        :func:`position`; ``None`` stores nothing).
    accumulate
        Optional :class:`Accumulator` updated at every kept draw.
    key_fn
        ``key_fn(rng_key, t) -> key`` for global step ``t`` (int32, traced); default
        ``jax.random.fold_in``.
    diverged
        A :class:`DivergenceCheck` evaluated after every ``check_every`` steps (default:
        never); a stateless ``fn(state, info) -> bool`` goes through
        :func:`divergence_check`.
    divergence_message
        ``(chain, step, code) -> str`` for the :class:`DivergenceError`.
    check_every
        Run ``diverged`` after every ``check_every`` steps (and at every kept draw) instead
        of after every step: its cost per step falls by that factor. When it reports a chain,
        the run stops and the host replays the block of steps since the last check (a second
        program, compiled only then) and reports the first step of the block whose state the
        check (with the statistics of the last check) rejects, so the step named is exact for
        a stateless check; a chain that goes bad and recovers within a block is not seen.
        Traced runs and runs whose chains span several devices check every step.
    chunk_size
        Kept draws per chunk (default: all, or about a twentieth with a progress bar).
    progress_bar
        Show a ``tqdm.auto`` bar (default :func:`progress_default`); eager runs only.
    checkpoint_path
        Save the run state after every chunk to this ``.npz`` file (the draws go to one file
        per chunk in the directory ``<checkpoint_path>.draws``) and resume from it when it
        exists (eager runs only).
    overwrite
        Start afresh even when ``checkpoint_path`` holds a checkpoint (it and its draws are
        replaced).
    checkpoint_config
        JSON-able settings stored in the checkpoint with a fingerprint of the run key, the
        initial state's structure, shapes and dtypes, and a hash of ``args`` (the data);
        resuming with a different fingerprint raises
        ``ValueError``.

    Returns
    -------
    RunResult
    """
    _check_count("num_samples", num_samples, 1)
    _check_count("num_burnin", num_burnin, 0)
    _check_count("thinning", thinning, 1)
    if chunk_size is not None:
        _check_count("chunk_size", chunk_size, 1)
    _check_count("check_every", check_every, 1)
    num_samples, num_burnin, thinning = int(num_samples), int(num_burnin), int(thinning)
    num_chains = _num_chains(initial_state)
    traced = is_traced((rng_key, initial_state, args))
    if traced and checkpoint_path is not None:
        raise ValueError("checkpoint_path cannot be used when run is traced (jit/vmap)")
    if checkpoint_path is not None:
        checkpoint_path = os.fspath(checkpoint_path)
        folder = os.path.dirname(os.path.abspath(checkpoint_path))
        if not os.path.isdir(folder):
            raise ValueError(
                f"checkpoint_path {checkpoint_path}: the directory {folder} does not exist"
            )
        if not os.access(folder, os.W_OK):
            raise ValueError(
                f"checkpoint_path {checkpoint_path}: the directory {folder} is not writable"
            )
    show = (not traced) and (progress_default() if progress_bar is None else bool(progress_bar))
    if chunk_size is None:
        chunk_size = max(1, -(-num_samples // 20)) if show else num_samples
    chunk_size = min(chunk_size, num_samples)
    burnin_chunks = (
        min(20, -(-num_burnin // max(1, chunk_size * thinning))) if show and num_burnin else 1
    )
    plan = _plan(num_samples, num_burnin, thinning, chunk_size, burnin_chunks)
    # Stopping every chain needs an all-chain reduction after each step: a collective when the
    # chains span several devices (processes), so sharded runs stop per chunk.
    stop = diverged is not None and not traced and not distributed.spans_devices(initial_state)
    # The exact step of a block check is found by a replay on the host, after the run stops:
    # traced and sharded runs check every step.
    every = int(check_every) if stop else 1
    program = _chunk_program(
        step,
        observe,
        accumulate,
        key_fn or _default_key_fn,
        None if diverged is None else diverged.update,
        stop,
        every,
    )

    acc = None if accumulate is None else jax.vmap(accumulate.init)(initial_state)
    monitor = (  # per chain: first diverging step (-1: none) and its reason code
        jnp.tile(jnp.array([-1, 0], jnp.int32), (num_chains, 1)),
        () if diverged is None else diverged.init(initial_state),
    )
    carry = (initial_state, monitor, acc)
    config = {
        **(checkpoint_config or {}),
        "num_chains": num_chains,
        "num_samples": num_samples,
        "num_burnin": num_burnin,
        "thinning": thinning,
    }
    if checkpoint_path is not None:
        config.update(_fingerprint(rng_key, initial_state, args))
    pieces, first_chunk, run_id = [], 0, uuid.uuid4().hex
    if checkpoint_path is not None:
        if os.path.exists(checkpoint_path) and not overwrite:
            counts, keep = plan[0]
            template = jax.eval_shape(
                lambda c: program(c, rng_key, args, jnp.int32(0), counts, keep)[1], carry
            )
            first_chunk, carry, pieces, run_id = _load(checkpoint_path, config, carry, template)
        else:
            _start_fresh(checkpoint_path)

    total = num_burnin + num_samples * thinning
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="sampling", unit="step")
        bar.update(int(sum(c.sum() for c, _ in plan[:first_chunk])))
    try:
        t = int(sum(c.sum() for c, _ in plan[:first_chunk]))
        for i in range(first_chunk, len(plan)):
            counts, keep = plan[i]
            carry, (obs, info), slot = program(
                carry, rng_key, args, jnp.int32(t), jnp.asarray(counts), jnp.asarray(keep)
            )
            if every > 1 and int(slot[0]) >= 0:  # a block check caught a chain: exact step
                replay = _replay_program(step, key_fn or _default_key_fn, diverged.update)
                state, (_, check), acc = carry
                first = replay(rng_key, args, slot[0], slot[1], slot[2], slot[3])
                carry = (state, (first, check), acc)
            t += int(counts.sum())
            n = int(keep.sum())
            piece = None
            if n:
                piece = jax.tree.map(lambda x: x[:n], (obs, info))
                piece = piece if traced else distributed.to_host(piece)
                pieces.append(piece)
            if not traced and diverged is not None:
                _check_divergence(carry[1][0], divergence_message)
            if checkpoint_path is not None:
                _save(checkpoint_path, config, run_id, i + 1, carry, piece, len(pieces))
            if bar is not None:
                bar.update(int(counts.sum()))
    finally:
        if bar is not None:
            bar.close()

    xp = jnp if traced else np
    obs, info = jax.tree.map(
        lambda *xs: xp.swapaxes(xs[0] if len(xs) == 1 else xp.concatenate(xs, axis=0), 0, 1),
        *pieces,
    )
    state, (first, _), acc = carry
    return RunResult(state, obs, info, acc, first[:, 0], first[:, 1])


def _check_divergence(first, message):
    """``first``: ``(num_chains, 2)`` first diverging step (``-1``: none) and its code."""
    first = distributed.to_host(first)
    bad, first_code = first[:, 0], first[:, 1]
    if (bad >= 0).any():
        steps = np.where(bad >= 0, bad, np.iinfo(np.int32).max)
        chain = int(np.argmin(steps))
        text = (
            message(chain, int(bad[chain]), int(first_code[chain]))
            if message is not None
            else f"chain {chain} diverged at step {int(bad[chain])}"
        )
        raise DivergenceError(text)


def _to_numpy(leaf):
    return distributed.to_host(leaf)  # raw key data for PRNG keys; gathered over processes


def _fingerprint(rng_key, initial_state, args) -> dict:
    """What changes the draws besides the settings: key, state layout, a hash of ``args``."""
    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(args):
        arr = np.ascontiguousarray(_to_numpy(leaf) if isinstance(leaf, jax.Array) else leaf)
        digest.update(f"{arr.shape}{arr.dtype}".encode())
        digest.update(arr.tobytes())
    layout = [
        f"{jax.tree_util.keystr(path)}:{tuple(jnp.shape(x))}:{jnp.result_type(x)}"
        for path, x in jax.tree_util.tree_flatten_with_path(initial_state)[0]
    ]
    key = _to_numpy(rng_key).tolist() if rng_key is not None else None
    return {
        "rng_key": key,
        "state_layout": layout,
        "state_structure": str(jax.tree_util.tree_structure(initial_state)),
        "args_sha256": digest.hexdigest(),
    }


def _draws_dir(path) -> str:
    return f"{path}.draws"


def _piece_path(path, index) -> str:
    return os.path.join(_draws_dir(path), f"piece_{index:06d}.npz")


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path, arrays):
    """``np.savez`` to a temporary file, fsync, rename over ``path``, fsync the directory."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def _start_fresh(path):
    """Remove the draws of an earlier run (only the runner's own piece files)."""
    if jax.process_index() != 0:  # under jax.distributed process 0 owns the files
        distributed.barrier("checkpoint reset")
        return
    folder = _draws_dir(path)
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith("piece_") and name.endswith((".npz", ".npz.tmp")):
                os.remove(os.path.join(folder, name))
    os.makedirs(folder, exist_ok=True)
    distributed.barrier("checkpoint reset")


def _save(path, config, run_id, chunks_done, carry, piece, num_pieces):
    """Append one chunk: its draws to a new piece file, then the small run-state file.

    Each write is atomic (temporary file, fsync, rename), and the piece is written before
    the state file that counts it, so a run killed at any point resumes from a state file
    whose pieces are all complete. Only the new chunk's draws are written: checkpoint cost
    is linear in the number of draws. Under ``jax.distributed`` process 0 writes the gathered
    run and every process waits for it (all resume from the same files).
    """
    state = {f"state_{i}": _to_numpy(x) for i, x in enumerate(jax.tree_util.tree_leaves(carry))}
    if jax.process_index() != 0:
        distributed.barrier("checkpoint saved")
        return
    if piece is not None:
        arrays = {f"draws_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(piece))}
        arrays["meta"] = np.frombuffer(
            json.dumps({"run_id": run_id, "index": num_pieces - 1}).encode(), np.uint8
        )
        _write_atomic(_piece_path(path, num_pieces - 1), arrays)
    meta = {**config, "chunks_done": int(chunks_done), "num_pieces": int(num_pieces)}
    meta["run_id"] = run_id
    state["config"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    _write_atomic(path, state)
    distributed.barrier("checkpoint saved")


_READ_ERRORS = (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile)


def _load(path, config, carry, template):
    try:
        chunks_done, carry, num_pieces, run_id = _read(path, config, carry)
    except _SettingsError:
        raise
    except _READ_ERRORS as err:
        raise ValueError(
            f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: {err}); delete "
            "it or pass overwrite=True to start afresh"
        ) from err
    dleaves, dtreedef = jax.tree_util.tree_flatten(template)
    pieces = []
    for index in range(num_pieces):
        piece = _piece_path(path, index)
        try:
            with np.load(piece) as f:
                meta = json.loads(bytes(f["meta"]).decode())
                if meta != {"run_id": run_id, "index": index}:
                    raise ValueError(f"it belongs to another run or position ({meta})")
                draws = [np.asarray(f[f"draws_{i}"]) for i in range(len(dleaves))]
        except _READ_ERRORS as err:
            raise ValueError(
                f"checkpoint {path}: draws file {piece} is missing, corrupt or truncated "
                f"({type(err).__name__}: {err}); delete the checkpoint or pass "
                "overwrite=True to start afresh"
            ) from err
        pieces.append(jax.tree_util.tree_unflatten(dtreedef, draws))
    return chunks_done, carry, pieces, run_id


class _SettingsError(ValueError):
    """A readable checkpoint of a run with other settings."""


def _read(path, config, carry):
    with np.load(path) as f:
        saved = json.loads(bytes(f["config"]).decode())
        chunks_done = saved.pop("chunks_done")
        num_pieces = saved.pop("num_pieces")
        run_id = saved.pop("run_id")
        if saved != config:
            differ = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
            details = "; ".join(
                f"{k}: {saved.get(k)!r} in the checkpoint, {config.get(k)!r} now" for k in differ
            )
            raise _SettingsError(
                f"checkpoint {path} was written by a run with other settings ({details}); "
                "pass overwrite=True to start afresh"
            )
        leaves, treedef = jax.tree_util.tree_flatten(carry)
        restored = []
        for i, leaf in enumerate(leaves):
            arr = jnp.asarray(f[f"state_{i}"])
            want = (
                jax.eval_shape(jax.random.key_data, leaf)
                if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
                else leaf
            )
            if arr.shape != want.shape or arr.dtype != want.dtype:
                raise ValueError(
                    f"run-state entry {i} has shape {arr.shape} and dtype {arr.dtype}, expected "
                    f"{want.shape} and {want.dtype} (a checkpoint of another runner version?)"
                )
            if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                arr = jax.random.wrap_key_data(arr)
            if distributed.spans_devices(leaf):  # else left uncommitted, like a fresh run's
                arr = distributed.put(arr, leaf.sharding)
            restored.append(arr)
        carry = jax.tree_util.tree_unflatten(treedef, restored)
    return chunks_done, carry, num_pieces, run_id
