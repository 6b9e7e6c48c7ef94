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
count): discarded steps are never stored and burn-in and sampling share one compiled program.
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
* checkpoints (``checkpoint_path``): the run state is saved after every chunk (written to a
  temporary file, fsynced, then renamed) and a run that finds its checkpoint resumes from it;
  a checkpoint written with other settings, another key, another state layout or other
  ``args`` is refused with a ``ValueError`` naming what differs (``overwrite=True`` starts
  afresh), a corrupt file with one naming the path, and a missing directory is reported
  before sampling;
* divergence checks: ``diverged(state, info) -> (num_chains,) bool`` is evaluated after every
  step on the device; once a chain has diverged no further step is made (chains spread over
  several devices finish the chunk instead: stopping them all would need a cross-device
  reduction at every step), and after the chunk a :class:`DivergenceError` names the first
  chain and step that diverged.

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
    "DivergenceError",
    "RunResult",
    "online_mean",
    "online_moments",
    "position",
    "run",
    "vmap_chains",
]


class DivergenceError(FloatingPointError):
    """A chain diverged (e.g. a non-finite log-density or gradient)."""


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

    Traces and infos are NumPy arrays when :func:`run` runs eagerly and JAX arrays when it is
    traced.
    """

    state: Any
    trace: Any
    info: Any
    accumulated: Any
    first_divergence: Any


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
def _chunk_program(step, observe, accumulate, key_fn, diverged, stop_on_divergence):
    """Compiled ``run_chunk(carry, rng_key, args, t0, counts, keep)`` for one configuration.

    ``counts[i]`` steps are made before entry ``i`` is recorded; ``keep[i]`` says whether entry
    ``i`` is a kept draw (entries of burn-in-only or padding chunks are not). With
    ``stop_on_divergence`` no further step is made once a chain has diverged (the host then
    raises after the chunk), so a diverging run stops soon instead of computing every step.
    """
    observe_all = None if observe is None else jax.vmap(observe)

    def run_chunk(carry, rng_key, args, t0, counts, keep):
        starts = t0 + jnp.cumsum(counts) - counts

        def one_step(t, carry):
            state, first_bad, acc, _ = carry
            state, info = step(key_fn(rng_key, t), state, *args)
            if diverged is not None:
                bad = diverged(state, info)
                first_bad = jnp.where((first_bad < 0) & bad, t, first_bad)
            return state, first_bad, acc, info

        def outer(carry, xs):
            start, count, kept = xs
            state, first_bad, acc = carry
            info0 = jax.eval_shape(lambda s: step(key_fn(rng_key, start), s, *args)[1], state)
            info0 = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), info0)
            carry = (state, first_bad, acc, info0)
            if stop_on_divergence:
                _, carry = jax.lax.while_loop(
                    lambda c: (c[0] < count) & jnp.all(c[1][1] < 0),
                    lambda c: (c[0] + 1, one_step(start + c[0], c[1])),
                    (jnp.zeros((), count.dtype), carry),
                )
            else:
                carry = jax.lax.fori_loop(0, count, lambda i, c: one_step(start + i, c), carry)
            state, first_bad, acc, info = carry
            if accumulate is not None:
                new = jax.vmap(accumulate.update)(acc, state)
                acc = jax.tree.map(lambda n, o: jnp.where(kept, n, o), new, acc)
            obs = None if observe_all is None else observe_all(state)
            return (state, first_bad, acc), (obs, info)

        return jax.lax.scan(outer, carry, (starts, counts, keep))

    return jax.jit(run_chunk)


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
    diverged: Callable | None = None,
    divergence_message: Callable[[int, int], str] | None = None,
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
        ``diverged(state, info) -> (num_chains,) bool`` after each step (default: never).
    divergence_message
        ``(chain, step) -> str`` for the :class:`DivergenceError`.
    chunk_size
        Kept draws per chunk (default: all, or about a twentieth with a progress bar).
    progress_bar
        Show a ``tqdm.auto`` bar (default :func:`progress_default`); eager runs only.
    checkpoint_path
        Save the run after every chunk to this ``.npz`` file and resume from it when it
        exists (eager runs only).
    overwrite
        Start afresh even when ``checkpoint_path`` holds a checkpoint (it is replaced).
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
    program = _chunk_program(
        step,
        observe,
        accumulate,
        key_fn or _default_key_fn,
        diverged,
        # Stopping every chain needs an all-chain reduction after each step: a collective
        # when the chains span several devices (processes), so sharded runs stop per chunk.
        diverged is not None and not traced and not distributed.spans_devices(initial_state),
    )

    acc = None if accumulate is None else jax.vmap(accumulate.init)(initial_state)
    carry = (initial_state, jnp.full((num_chains,), -1, jnp.int32), acc)
    config = {
        **(checkpoint_config or {}),
        "num_chains": num_chains,
        "num_samples": num_samples,
        "num_burnin": num_burnin,
        "thinning": thinning,
    }
    if checkpoint_path is not None:
        config.update(_fingerprint(rng_key, initial_state, args))
    pieces, first_chunk = [], 0
    if checkpoint_path is not None and os.path.exists(checkpoint_path) and not overwrite:
        counts, keep = plan[0]
        template = jax.eval_shape(
            lambda c: program(c, rng_key, args, jnp.int32(0), counts, keep)[1], carry
        )
        first_chunk, carry, pieces = _load(checkpoint_path, config, carry, template)

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
            carry, (obs, info) = program(
                carry, rng_key, args, jnp.int32(t), jnp.asarray(counts), jnp.asarray(keep)
            )
            t += int(counts.sum())
            n = int(keep.sum())
            if n:
                piece = jax.tree.map(lambda x: x[:n], (obs, info))
                pieces.append(piece if traced else distributed.to_host(piece))
            if not traced and diverged is not None:
                _check_divergence(carry[1], divergence_message)
            if checkpoint_path is not None:
                _save(checkpoint_path, config, i + 1, carry, pieces)
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
    state, first_bad, acc = carry
    return RunResult(state, obs, info, acc, first_bad)


def _check_divergence(first_bad, message):
    bad = distributed.to_host(first_bad)
    if (bad >= 0).any():
        steps = np.where(bad >= 0, bad, np.iinfo(np.int32).max)
        chain = int(np.argmin(steps))
        text = (
            message(chain, int(bad[chain]))
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


def _save(path, config, chunks_done, carry, pieces):
    arrays = {f"state_{i}": _to_numpy(x) for i, x in enumerate(jax.tree_util.tree_leaves(carry))}
    if pieces:
        merged = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *pieces)
        for i, leaf in enumerate(jax.tree_util.tree_leaves(merged)):
            arrays[f"draws_{i}"] = np.asarray(leaf)
    meta = {**config, "chunks_done": int(chunks_done), "has_draws": bool(pieces)}
    arrays["config"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    if jax.process_index() == 0:  # under jax.distributed one process writes the gathered run
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    distributed.barrier("checkpoint saved")  # every process resumes from the same file


def _load(path, config, carry, template):
    try:
        return _read(path, config, carry, template)
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise ValueError(
            f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: {err}); delete "
            "it or pass overwrite=True to start afresh"
        ) from err


def _read(path, config, carry, template):
    with np.load(path) as f:
        saved = json.loads(bytes(f["config"]).decode())
        chunks_done = saved.pop("chunks_done")
        has_draws = saved.pop("has_draws")
        if saved != config:
            differ = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
            details = "; ".join(
                f"{k}: {saved.get(k)!r} in the checkpoint, {config.get(k)!r} now" for k in differ
            )
            raise ValueError(
                f"checkpoint {path} was written by a run with other settings ({details}); "
                "pass overwrite=True to start afresh"
            )
        leaves, treedef = jax.tree_util.tree_flatten(carry)
        restored = []
        for i, leaf in enumerate(leaves):
            arr = jnp.asarray(f[f"state_{i}"])
            if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                arr = jax.random.wrap_key_data(arr)
            if distributed.spans_devices(leaf):  # else left uncommitted, like a fresh run's
                arr = distributed.put(arr, leaf.sharding)
            restored.append(arr)
        carry = jax.tree_util.tree_unflatten(treedef, restored)
        pieces = []
        if has_draws:
            dleaves, dtreedef = jax.tree_util.tree_flatten(template)
            draws = [np.asarray(f[f"draws_{i}"]) for i in range(len(dleaves))]
            pieces = [jax.tree_util.tree_unflatten(dtreedef, draws)]
    return chunks_done, carry, pieces
