"""Chains over all devices of all processes (:mod:`samplers.distributed`).

Single process: the 8 simulated CPU devices of ``conftest.py``. Several processes: two local
processes under multi-controller JAX (``jax.distributed.initialize``, coordinator on localhost,
CPU collectives through gloo), 2 simulated devices each, whose gathered draws must be those of
a single-process run with the same key.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers import distributed, sgmcmc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, D = 40, 3
KWARGS = dict(num_samples=6, batch_size=8, step_size=1e-2, num_burnin=4, progress_bar=False)


def _data():
    return (
        jax.random.normal(jax.random.key(42), (N, D)) + jnp.arange(D, dtype=jnp.float32)[None, :]
    )


def _assert_same_draws(actual, desired):
    """The draws of one chain do not depend on the device layout: each chain runs the same
    program from its own key. Equal bit for bit under XLA's default code generation; other
    code generation (the suite's compile-time flags) may vectorise the chain axis differently,
    so up to float32 rounding. A wrong key or a misplaced chain differs by the posterior
    spread (~0.1 here), far above this tolerance."""
    np.testing.assert_allclose(np.asarray(actual), np.asarray(desired), rtol=1e-5, atol=1e-6)


def logdensity(theta, batch, data_size):
    return -0.5 * jnp.sum(theta**2) - 0.5 * data_size * jnp.mean(
        jnp.sum((batch - theta[None, :]) ** 2, -1)
    )


def _init(num_chains):
    return jax.random.normal(jax.random.key(1), (num_chains, D))


def _run(num_chains, **kwargs):
    return sgmcmc.sample(
        jax.random.key(2),
        sgmcmc.sghmc(alpha=0.5),
        logdensity,
        _data(),
        _init(num_chains),
        **KWARGS,
        **kwargs,
    )


def _needs_devices(n):
    if jax.device_count() < n:
        pytest.skip(f"needs {n} devices (conftest simulates 8 CPU devices)")


def test_chain_mesh_pads_with_copies_of_the_first_chains():
    # 9 chains on 8 devices: 2 per device on 5 devices, one padding chain (a copy of chain 0).
    _needs_devices(8)
    with pytest.warns(distributed.UnevenChainsWarning, match="9 chains do not divide over 8"):
        layout = distributed.chain_mesh(9, devices=jax.devices()[:8])
    assert (layout.chains_per_device, layout.num_devices, layout.num_padding) == (2, 5, 1)
    x = jnp.arange(9 * 2, dtype=jnp.float32).reshape(9, 2)
    keys = jax.random.split(jax.random.key(0), 9)
    sx, skeys = layout.shard((x, keys))
    order = [0, 1, 2, 3, 4, 5, 6, 7, 8, 0]
    assert sx.shape == (10, 2) and len(sx.sharding.device_set) == 5
    assert [s.data.shape for s in sx.addressable_shards] == [(2, 2)] * 5
    np.testing.assert_array_equal(distributed.to_host(sx), np.asarray(x)[order])
    np.testing.assert_array_equal(
        distributed.to_host(skeys), np.asarray(jax.random.key_data(keys))[order]
    )
    np.testing.assert_array_equal(layout.unpad(distributed.to_host(sx)), np.asarray(x))
    with pytest.raises(ValueError, match="leading chain axis of size 9"):
        layout.shard(jnp.zeros((5, 2)))
    with pytest.raises(ValueError, match="num_chains"):
        distributed.ChainMesh(0)


def test_chain_mesh_layouts():
    _needs_devices(8)
    devices = jax.devices()[:8]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        even = distributed.chain_mesh(16, devices=devices)
        assert (even.chains_per_device, even.num_devices, even.num_padding) == (2, 8, 0)
        assert distributed.chain_mesh(16, shard=False, devices=devices) is None
        assert distributed.chain_mesh(3, devices=devices[:1]) is None
        assert distributed.chain_mesh(1, devices=devices) is None
    # (chains) -> (chains per device, devices used, padding chains)
    for c, want in {6: (1, 6, 0), 10: (2, 5, 0), 17: (3, 6, 1), 23: (3, 8, 1)}.items():
        with pytest.warns(distributed.UnevenChainsWarning):
            layout = distributed.chain_mesh(c, devices=devices)
        assert (layout.chains_per_device, layout.num_devices, layout.num_padding) == want


@pytest.fixture(scope="module")
def single9():
    return _run(9, shard=False)


def test_distributed_uneven_chains_are_sharded_with_a_warning(single9):
    # 9 chains on 8 devices: 2 chains on each of 5 devices (one padding chain, dropped)
    # instead of falling back to one device; the draws are exactly those of the unsharded
    # run (each chain runs the same program from the same key fold_in(rng_key, c)).
    _needs_devices(8)
    with pytest.warns(distributed.UnevenChainsWarning, match="2 chain.s. on each of 5"):
        sharded = _run(9)
    single = single9
    assert sharded.positions.shape == (9, KWARGS["num_samples"], D)
    assert sharded.info.logdensity.shape == (9, KWARGS["num_samples"])
    assert jax.tree.leaves(sharded.state)[0].shape[0] == 9
    _assert_same_draws(sharded.positions, single.positions)
    _assert_same_draws(sharded.info.logdensity, single.info.logdensity)
    # The chains are distinct, so equality above pins every chain to its own key.
    assert np.all(np.abs(np.diff(single.positions[:, -1], axis=0)) > 1e-3)


def test_distributed_sharded_checkpoint_resumes(single9, tmp_path, monkeypatch):
    # A sharded, padded run cut after its first chunk resumes onto the devices' layout and
    # gives the draws of the uninterrupted unsharded run.
    from samplers import runner

    _needs_devices(8)
    path = str(tmp_path / "run.npz")
    real_save = runner._save

    def crashing_save(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(runner, "_save", crashing_save)
    with pytest.warns(distributed.UnevenChainsWarning), pytest.raises(KeyboardInterrupt):
        _run(9, checkpoint_path=path, checkpoint_every=3)
    monkeypatch.setattr(runner, "_save", real_save)
    with pytest.warns(distributed.UnevenChainsWarning):
        resumed = _run(9, checkpoint_path=path, checkpoint_every=3)
    assert len(jax.tree.leaves(resumed.state)[0].sharding.device_set) == 5
    _assert_same_draws(resumed.positions, single9.positions)


WORKER = textwrap.dedent(
    """
    import os, sys, warnings
    import jax
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_default_matmul_precision", "highest")
    process_id, port, out, ckpt = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    jax.distributed.initialize(
        coordinator_address=f"localhost:{port}", num_processes=2, process_id=process_id
    )
    import test_distributed as t
    from samplers import distributed

    with warnings.catch_warnings():
        warnings.simplefilter("error", distributed.UnevenChainsWarning)
        # Two chunks: process 0 writes the gathered run to the checkpoint after each.
        res = t._run(4, checkpoint_path=ckpt, checkpoint_every=3)
        # The checkpoint of the finished run is found by both processes: nothing is rerun.
        again = t._run(4, checkpoint_path=ckpt, checkpoint_every=3)
    leaf = jax.tree.leaves(res.state.kernel_state.position)[0]
    result = dict(
        positions=res.positions.tolist(),
        resumed=again.positions.tolist(),
        logdensity=res.info.logdensity.tolist(),
        local_devices=len(leaf.sharding.addressable_devices),
        global_devices=len(leaf.sharding.device_set),
        final=distributed.to_host(leaf).tolist(),
        process_count=jax.process_count(),
        device_count=jax.device_count(),
    )
    with open(out, "w") as fh:
        import json
        json.dump(result, fh)
    """
)


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_distributed_two_processes_match_single_process(tmp_path):
    """Two processes x 2 CPU devices (jax.distributed.initialize) give single-process draws.

    Compared exactly: each chain runs the same float32 program from the same key
    ``fold_in(rng_key, c)`` (global chain index ``c``) whatever device or process holds it,
    and the processes use the compile options of this test process.
    """
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    port = str(_free_port())
    env = dict(os.environ)
    flags = os.environ.get("XLA_FLAGS", "").split()
    flags = [f for f in flags if "xla_force_host_platform_device_count" not in f]
    env.update(
        XLA_FLAGS=" ".join([*flags, "--xla_force_host_platform_device_count=2"]),
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]),
    )
    outs = [tmp_path / f"out{i}.json" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), str(i), port, str(outs[i]), str(tmp_path / "c.npz")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for i, p in enumerate(procs):
        assert p.returncode == 0, f"process {i} failed:\n{logs[i][-4000:]}"
    results = [json.loads(o.read_text()) for o in outs]
    for r in results:
        assert (r["process_count"], r["device_count"]) == (2, 4)
    single = _run(4, shard=False)
    pieces = sorted((tmp_path / "c.npz.draws").glob("piece_*.npz"))
    assert len(pieces) == 2  # one file per chunk, written by process 0
    saved = [np.load(piece)["draws_0"] for piece in pieces]  # (draws, chains, D) each
    _assert_same_draws(np.concatenate(saved).swapaxes(0, 1), single.positions)
    for r in results:
        # Each process computes the chains of its 2 devices (of 4) and gathers all of them.
        assert (r["local_devices"], r["global_devices"]) == (2, 4)
        _assert_same_draws(np.asarray(r["positions"]), single.positions)
        _assert_same_draws(np.asarray(r["resumed"]), single.positions)
        _assert_same_draws(np.asarray(r["logdensity"]), single.info.logdensity)
        _assert_same_draws(np.asarray(r["final"]), np.asarray(single.state.kernel_state.position))
