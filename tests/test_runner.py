"""The chain runner: burn-in/thinning semantics, chunking, accumulators, divergence,
checkpoints, tracing, validation.

The kernels here are tiny and exact: a counter (the state after step ``t`` is known in closed
form) and a Gaussian AR(1) chain; every test reuses the same step functions so the compiled
runner is shared.
"""

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers import runner

C = 3


class CounterState(NamedTuple):
    position: jax.Array  # number of steps made
    noise: jax.Array  # sum of the uniforms drawn so far


def counter_step(rng_key, state, scale):
    """Adds 1 to ``position`` and a uniform from the step key (times ``scale``) to ``noise``."""
    u = jax.random.uniform(rng_key, (C,))
    new = CounterState(state.position + 1, state.noise + scale * u)
    return new, {"t": state.position[:, 0] + 1, "u": u}


def _init():
    return CounterState(jnp.zeros((C, 1), jnp.int32), jnp.zeros((C,)))


def _position_squared(state):
    return jnp.square(state.position.astype(jnp.float32))


POS_SQ = runner.online_moments(_position_squared)


def _run(**kw):
    base = dict(num_samples=7, num_burnin=4, thinning=3, args=(1.0,), progress_bar=False)
    return runner.run(jax.random.key(0), counter_step, _init(), **{**base, **kw})


def test_burnin_thinning_layout_and_chunks_are_exact():
    """Draw k of every chain is the state after step num_burnin + (k+1) * thinning, laid out
    (chains, draws, ...); its info is that step's; any chunking gives the same draws."""
    whole = _run()
    expected = 4 + 3 * np.arange(1, 8)
    assert whole.trace.shape == (C, 7, 1)
    np.testing.assert_array_equal(whole.trace[..., 0], np.broadcast_to(expected, (C, 7)))
    np.testing.assert_array_equal(whole.info["t"], np.broadcast_to(expected, (C, 7)))
    # chunks of 3 draws (the last one padded) and 1 draw: same keys, same numbers
    for chunk in (3, 1):
        part = _run(chunk_size=chunk)
        np.testing.assert_array_equal(part.trace, whole.trace)
        np.testing.assert_array_equal(part.info["u"], whole.info["u"])
        np.testing.assert_array_equal(part.state.noise, whole.state.noise)
    # step t's key is fold_in(rng_key, t): the uniform of the last step of draw 0
    t0 = 4 + 3 - 1
    u = jax.random.uniform(jax.random.fold_in(jax.random.key(0), t0), (C,))
    np.testing.assert_array_equal(whole.info["u"][:, 0], u)


def test_accumulator_matches_stored_draws():
    """Welford's online mean and variance equal those of the stored trace."""
    res = _run(accumulate=POS_SQ, chunk_size=3)
    draws = np.asarray(res.trace, np.float64) ** 2  # (C, 7, 1)
    acc = res.accumulated
    np.testing.assert_array_equal(acc.count, np.full((C,), 7))
    np.testing.assert_allclose(acc.mean, draws.mean(1), rtol=1e-6)
    np.testing.assert_allclose(acc.m2 / 6, draws.var(1, ddof=1), rtol=1e-5)
    none = _run(observe=None, accumulate=POS_SQ)
    assert none.trace is None
    np.testing.assert_allclose(none.accumulated.mean, acc.mean, rtol=1e-6)


def test_progress_bar_reaches_total(capsys):
    _run(progress_bar=True, num_burnin=40)
    err = capsys.readouterr().err
    assert "100%" in err and f"{40 + 7 * 3}/{40 + 7 * 3}" in err


def _nan_at(state, info):
    # chain 1 diverges when it reaches 10 steps, chain 2 at 13
    limits = jnp.array([10**6, 10, 13])
    return state.position[:, 0] >= limits


@pytest.mark.parametrize("check_every", [1, 2])
def test_divergence_names_first_chain_and_step(check_every):
    """Checked after every step, or every second step with the block replayed: the same
    first step (the check is stateless and the chains stay bad)."""
    with pytest.raises(runner.DivergenceError, match="chain 1 diverged at step 9"):
        _run(diverged=runner.divergence_check(_nan_at), chunk_size=2, check_every=check_every)
    traced = jax.jit(
        lambda k: runner.run(
            k,
            counter_step,
            _init(),
            7,
            num_burnin=4,
            thinning=3,
            args=(1.0,),
            diverged=runner.divergence_check(_nan_at),
            check_every=check_every,
        )
    )
    np.testing.assert_array_equal(traced(jax.random.key(0)).first_divergence, [-1, 9, 12])


def _sum_init(state):
    return jnp.zeros((C,))


def _sum_update(total, state, info):
    # stateful: the running sum of the uniforms; chain 2 reports reason 7 once it exceeds 4
    total = total + info["u"]
    return total, jnp.where((jnp.arange(C) == 2) & (total > 4.0), 7, 0)


SUM_CHECK = runner.DivergenceCheck(_sum_init, _sum_update)


def test_stateful_check_reports_step_and_code():
    """A check with running statistics: the reported step is the first where the running sum
    of chain 2's uniforms (recomputed from the unchecked run) exceeds 4, with its code."""
    free = _run(num_burnin=0, thinning=1, num_samples=25)
    expected = int(np.argmax(np.cumsum(free.info["u"][2]) > 4.0))
    with pytest.raises(runner.DivergenceError, match=f"chain 2 code 7 at step {expected}$"):
        _run(
            num_burnin=0,
            thinning=1,
            num_samples=25,
            chunk_size=5,
            diverged=SUM_CHECK,
            divergence_message=lambda c, t, code: f"chain {c} code {code} at step {t}",
        )


def _gap_init(state):
    return state.position[:, 0]


def _gap_update(last, state, info):
    # stateful: the position at the last check; a chain is "bad" once it is more than
    # GAPS[c] steps past it
    now = state.position[:, 0]
    return now, jnp.where(now - last > jnp.array([5, 1, 2]), 7, 0)


GAP_CHECK = runner.DivergenceCheck(_gap_init, _gap_update)


def test_block_check_replays_the_block_with_the_last_checks_statistics():
    """The check rejects a chain more than ``gap`` steps past its position at the last check
    (gaps 5, 1, 2). Checked every step nothing trips (eager, or traced, where the runner
    always checks every step); every 5 steps, chains 1 and 2 trip at the first check (step
    4), and the host's replay of steps 0-4 against the last check's statistics names chain
    1's step 1 (not 4, and not the never of statistics updated during the replay)."""
    kw = dict(num_burnin=0, num_samples=2, thinning=25, diverged=GAP_CHECK)
    res = _run(**kw)
    np.testing.assert_array_equal(res.first_divergence, [-1, -1, -1])
    np.testing.assert_array_equal(res.trace[..., 0], np.broadcast_to([25, 50], (C, 2)))
    traced = jax.jit(
        lambda key: runner.run(key, counter_step, _init(), args=(1.0,), **kw, check_every=5)
    )(jax.random.key(0))
    np.testing.assert_array_equal(traced.first_divergence, [-1, -1, -1])
    with pytest.raises(runner.DivergenceError, match="chain 1 diverged at step 1$"):
        _run(**kw, check_every=5)
    with pytest.raises(ValueError, match="check_every"):
        _run(check_every=0)


def test_traced_run_equals_eager_run():
    eager = _run()
    traced = jax.jit(
        lambda k, s: runner.run(k, counter_step, _init(), 7, num_burnin=4, thinning=3, args=(s,))
    )(jax.random.key(0), 1.0)
    assert isinstance(traced.trace, jax.Array)
    np.testing.assert_array_equal(traced.trace, eager.trace)
    np.testing.assert_array_equal(traced.info["u"], eager.info["u"])
    with pytest.raises(ValueError, match="checkpoint_path"):
        jax.jit(
            lambda k: (
                runner.run(k, counter_step, _init(), 2, args=(1.0,), checkpoint_path="x.npz").trace
            )
        )(jax.random.key(0))


def test_checkpoint_resume_and_settings(tmp_path, monkeypatch):
    path = tmp_path / "run.npz"
    whole = _run(chunk_size=2)
    calls = {"n": 0}
    real_save = runner._save

    def crashing_save(*args):
        real_save(*args)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(runner, "_save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        _run(chunk_size=2, checkpoint_path=path)
    monkeypatch.setattr(runner, "_save", real_save)
    resumed = _run(chunk_size=2, checkpoint_path=path)
    np.testing.assert_array_equal(resumed.trace, whole.trace)
    np.testing.assert_array_equal(resumed.info["u"], whole.info["u"])
    with pytest.raises(ValueError, match="other settings"):
        _run(chunk_size=2, checkpoint_path=path, thinning=2)


def test_vmap_chains_splits_keys_and_maps_per_chain_args():
    def one(rng_key, x, shift):
        return x + shift + jax.random.normal(rng_key), ()

    step = runner.vmap_chains(one, C, args_axes=(0,))
    key = jax.random.key(3)
    new, _ = step(key, jnp.zeros(C), jnp.arange(C, dtype=jnp.float32))
    keys = jax.random.split(key, C)
    expected = jnp.arange(C) + jax.vmap(jax.random.normal)(keys)
    np.testing.assert_array_equal(new, expected)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(num_samples=True), "num_samples"),
        (dict(num_samples=0), "num_samples"),
        (dict(thinning=2.0), "thinning"),
        (dict(num_burnin=-1), "num_burnin"),
        (dict(chunk_size=0), "chunk_size"),
    ],
)
def test_bad_counts(kw, match):
    with pytest.raises(ValueError, match=match):
        _run(**kw)


def test_initial_state_needs_a_chain_axis():
    with pytest.raises(ValueError, match="leading"):
        runner.run(
            jax.random.key(0),
            counter_step,
            CounterState(jnp.zeros((C, 1), jnp.int32), jnp.zeros(())),
            2,
            args=(1.0,),
        )


def test_checkpoint_fingerprint_overwrite_and_bad_files(tmp_path):
    """A checkpoint of another key, another state layout or other args is refused naming
    what differs; overwrite=True starts afresh; a corrupt file and a missing directory raise
    errors naming the path before sampling."""
    path = tmp_path / "run.npz"
    first = _run(chunk_size=4, checkpoint_path=path)
    with pytest.raises(ValueError, match="rng_key"):
        runner.run(
            jax.random.key(1),
            counter_step,
            _init(),
            7,
            num_burnin=4,
            thinning=3,
            args=(1.0,),
            chunk_size=4,
            checkpoint_path=path,
        )
    with pytest.raises(ValueError, match="args_sha256"):
        _run(chunk_size=4, checkpoint_path=path, args=(2.0,))
    fresh = _run(chunk_size=4, checkpoint_path=path, args=(2.0,), overwrite=True)
    np.testing.assert_allclose(fresh.state.noise, 2 * first.state.noise, rtol=1e-6)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=f"checkpoint {path} is corrupt"):
        _run(chunk_size=4, checkpoint_path=path, args=(2.0,))
    missing = tmp_path / "nowhere" / "run.npz"
    with pytest.raises(ValueError, match="does not exist"):
        _run(checkpoint_path=missing)


def test_checkpoint_appends_each_chunk_once(tmp_path, monkeypatch):
    """Checkpoint cost is linear in the draws: every chunk writes its own draws once (one
    piece file, same size for every full chunk) and a run-state file whose size does not
    grow; the pieces of a resumed run are checked, a damaged one is named."""
    path = tmp_path / "run.npz"
    writes = []
    real = runner._write_atomic

    def record(target, arrays):
        writes.append((os.path.basename(target), sum(a.nbytes for a in arrays.values())))
        real(target, arrays)

    monkeypatch.setattr(runner, "_write_atomic", record)
    res = _run(chunk_size=1, checkpoint_path=path, num_samples=7)
    monkeypatch.setattr(runner, "_write_atomic", real)
    pieces = [b for name, b in writes if name.startswith("piece_")]
    states = [b for name, b in writes if name == "run.npz"]
    assert [name for name, _ in writes[::2]] == [f"piece_{i:06d}.npz" for i in range(7)]
    assert len(pieces) == len(states) == 7
    assert len(set(pieces)) == 1 and len(set(states)) == 1
    draw_bytes = res.trace.nbytes + sum(x.nbytes for x in res.info.values())
    assert sum(pieces) - draw_bytes < 7 * 200  # each draw once (plus a small header each)
    again = _run(chunk_size=1, checkpoint_path=path, num_samples=7)
    np.testing.assert_array_equal(again.info["u"], res.info["u"])
    piece = path.parent / "run.npz.draws" / "piece_000003.npz"
    piece.write_bytes(piece.read_bytes()[:50])
    with pytest.raises(ValueError, match=f"draws file {piece} is missing, corrupt"):
        _run(chunk_size=1, checkpoint_path=path, num_samples=7)
    piece.unlink()
    with pytest.raises(ValueError, match=f"draws file {piece} is missing"):
        _run(chunk_size=1, checkpoint_path=path, num_samples=7)
    fresh = _run(chunk_size=1, checkpoint_path=path, num_samples=7, overwrite=True)
    np.testing.assert_array_equal(fresh.info["u"], res.info["u"])


def test_run_stops_soon_after_divergence(monkeypatch):
    """No step is made after the first divergence (seen with the host check disabled)."""
    monkeypatch.setattr(runner, "_check_divergence", lambda *a: None)
    res = _run(diverged=runner.divergence_check(_nan_at))
    np.testing.assert_array_equal(res.state.position[:, 0], [10, 10, 10])
    np.testing.assert_array_equal(res.first_divergence, [-1, 9, -1])


def test_checkpoint_with_another_state_layout_is_refused(tmp_path):
    """A run-state entry whose shape differs from this run's (e.g. a checkpoint written by
    another version of the runner) is refused naming the path, not loaded into the wrong slot."""
    path = tmp_path / "run.npz"
    _run(chunk_size=4, checkpoint_path=path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    name = next(k for k in arrays if k.startswith("state_") and arrays[k].ndim >= 1)
    arrays[name] = np.concatenate([arrays[name], arrays[name]])
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=f"checkpoint {path} is corrupt.*run-state entry"):
        _run(chunk_size=4, checkpoint_path=path)
