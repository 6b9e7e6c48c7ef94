"""Site updates ("flips") per second for a supervised dense Hebbian net, side by side.

N = 1000, K in {3, 30}, P = 2, M = 20, r = 0.5, T = 0.3, started at an archetype. Every
figure counts attempted single-site updates per second, aggregated over chains, best of
``--repeats`` timed runs after a compile run; both wall-clock and process-CPU rates are
printed (CPU time is the fairer figure on a loaded shared machine; on an idle one they agree
for single-threaded runs). Rows:

- numba: compiled sequential exact-dH heat bath, one chain, one core (the issue's reference;
  random sites and uniforms pre-drawn outside the timed call, so the reference is flattered;
  skipped if numba is not importable, numba is NOT a bayesnn dependency);
- vmap-seq: ``build_sequential_kernel`` vmapped over C chains (exact, each chain its own
  random sites);
- chain-par: ``build_chain_parallel_kernel`` (exact sequential heat bath of all C chains,
  one shared systematic site sweep, chains on the minor (lane) axis, an O(K) overlap cache
  per chain, 5 sweeps per kernel call; "hash" draws uniforms inside the site loop);
- chain-par xD: the same with the chains sharded over D devices (``--devices D``; on CPU
  these are D host devices, one core each: NOT a one-core figure);
- sync: ``build_parallel_kernel(mode="synchronous")`` vmapped over chains (all sites of all
  chains at once: Little dynamics, NOT the Boltzmann law of H at finite N).

    python benchmarks/hebbian_speed.py [--quick] [--chains 1,256] [--ks 3,30] [--devices 2]

The process pins itself to one core (``BAYESNN_PIN_CORE``, default 0) before importing JAX,
for core-for-core comparisons with numba; with ``--devices D`` it is pinned to the first D
allowed cores instead (one per host device). ``--devices D``
sets ``jax_num_cpu_devices = D`` and shards the chains over the first D default devices
(host devices on a CPU-only machine). The platform is never forced, so on a GPU machine the
JAX rows run on the GPU.
"""

import argparse
import os
import sys
import time

N, M_EX, R_Q, TEMP = 1000, 20, 0.5, 0.3
SMOKE_HELP = "tiny sizes: checks that the script runs (seconds); its numbers are not results"
SWEEPS_PER_STEP = 5  # chain-par: sweeps per kernel call (cache refreshed once per call)


def _parse():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="K=3, 256 chains, few sweeps")
    ap.add_argument("--chains", default="1,256", help="comma-separated chain counts")
    ap.add_argument("--sweeps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ks", default="3,30")
    ap.add_argument("--devices", type=int, default=1, help="shard chains over D devices")
    ap.add_argument(
        "--impls",
        default="vmap-seq,chain-par/threefry,chain-par/hash,sync/hash",
        help="comma-separated rows (kernel/generator)",
    )
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    if args.quick:
        args.ks, args.chains, args.sweeps, args.repeats = "3", "256", 10, 3
    if args.smoke:
        args.quick, args.ks, args.chains, args.sweeps, args.repeats = True, "3", "4", 5, 1
    return args


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None and ARGS.devices == 1:
    from _pinning import pin_to_one_core

    pin_to_one_core()  # before jax: XLA sizes its thread pool from the affinity mask
elif ARGS is not None:
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: ARGS.devices])

import jax  # noqa: E402

if ARGS is not None and ARGS.devices > 1:
    # D host (CPU) devices; does not change the default platform (a GPU stays the default)
    jax.config.update("jax_num_cpu_devices", ARGS.devices)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, PartitionSpec  # noqa: E402

from bayesnn import hebbian as hb  # noqa: E402
from samplers import spins as sp  # noqa: E402


def _network(k):
    ds = hb.make_dataset(jax.random.key(0), k, N, M_EX, R_Q)
    return ds, hb.supervised_network(ds.examples, 2, quality=R_Q)


def _best_time(fn, repeats):
    """Best wall and best process-CPU seconds of ``repeats`` calls (after one warm-up)."""
    jax.block_until_ready(fn(0))
    wall, cpu = np.inf, np.inf
    for r in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(r + 1))
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


def _step(model, impl, generator):
    if impl == "vmap-seq":
        return sp.build_sequential_kernel(model)
    if impl == "chain-par":
        return sp.build_chain_parallel_kernel(
            model, generator=generator, sweeps_per_step=SWEEPS_PER_STEP
        )
    if impl == "sync":
        return sp.build_parallel_kernel(model, mode="synchronous", generator=generator)
    raise ValueError(f"unknown impl {impl!r}")


def jax_rate(k, chains, sweeps, impl, generator, repeats, devices=1):
    """Flips/s (wall, CPU) and the final mean magnetisation of ``chains`` chains."""
    ds, net = _network(k)
    model = hb.model.spin_model(net)
    step = _step(model, impl, generator)
    s0 = jnp.broadcast_to(ds.archetypes[0], (chains, N))

    per_step = SWEEPS_PER_STEP if impl == "chain-par" else 1
    if sweeps % per_step:
        raise ValueError(f"sweeps must be a multiple of {per_step}")

    def run(key, s0):
        states = sp.init_chains(model, s0)
        final, _, _ = sp.run_chains(
            key, step, states, 1 / TEMP, sweeps // per_step, batched=impl == "chain-par"
        )
        return final.spins

    if devices > 1:
        if chains % devices:
            raise ValueError(f"chains ({chains}) must be a multiple of devices ({devices})")
        mesh = Mesh(np.array(jax.devices()[:devices]), ("d",))
        spec = PartitionSpec("d")

        def shard_run(keys, s0):
            return run(keys[0], s0)

        run_j = jax.jit(
            jax.shard_map(
                shard_run, mesh=mesh, in_specs=(spec, spec), out_specs=spec, check_vma=False
            )
        )
        fn = lambda r: run_j(jax.random.split(jax.random.key(r), devices), s0)
    else:
        run_j = jax.jit(run)
        fn = lambda r: run_j(jax.random.key(r), s0)
    wall, cpu = _best_time(fn, repeats)
    m = float(jnp.mean(fn(0) @ ds.archetypes[0]) / N)
    flips = chains * sweeps * N
    return flips / wall, flips / cpu, m


def numba_rate(k, sweeps, repeats, order=2):
    """Flips/s (wall, CPU) of the compiled sequential heat bath, one chain, one core."""
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=False)
    def sweep(s, x, nov, beta, sites, us, p):
        n = s.shape[0]
        for t in range(sites.shape[0]):
            i = sites[t]
            de = 0.0
            for mu in range(x.shape[0]):
                a = nov[mu]
                b = a - 2.0 * s[i] * x[mu, i] / n
                de += a**p - b**p
            de *= 0.5 * n
            if us[t] < 1.0 / (1.0 + np.exp(beta * de)):
                for mu in range(x.shape[0]):
                    nov[mu] -= 2.0 * s[i] * x[mu, i] / n
                s[i] = -s[i]

    ds, net = _network(k)
    x = np.asarray(net.rows, np.float64)
    s = np.asarray(ds.archetypes[0], np.float64).copy()
    nov = x @ s / N
    rng = np.random.default_rng(0)
    sites = rng.integers(0, N, size=N * sweeps)
    us = rng.random(N * sweeps)
    sweep(s, x, nov, 1 / TEMP, sites[:N], us[:N], order)  # compile
    wall, cpu = np.inf, np.inf
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        sweep(s, x, nov, 1 / TEMP, sites, us, order)
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return N * sweeps / wall, N * sweeps / cpu


def main(args):
    ks = [int(k) for k in args.ks.split(",")]
    chain_counts = [int(c) for c in args.chains.split(",")]
    impls = [tuple((s + "/threefry").split("/")[:2]) for s in args.impls.split(",")]
    print(f"backend={jax.default_backend()} devices={jax.devices()}")
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r} argv={' '.join(sys.argv[1:])}")
    print("| K | chains | flips/s (wall) | x numba | flips/CPU-s | x numba | m_1 | kernel |")
    print("|---|---|---|---|---|---|---|---|")
    for k in ks:
        ref = numba_rate(k, 20 if args.quick else 200, args.repeats)
        if ref is not None:
            print(f"| {k} | 1 | {ref[0]:.3e} | 1.00 | {ref[1]:.3e} | 1.00 | | numba (1 core) |")
        else:
            print(f"| {k} | 1 | | | | | | numba not installed: reference row skipped |")
        rows = [(impl, gen, c, 1) for impl, gen in impls for c in chain_counts]
        if args.devices > 1:
            rows += [("chain-par", "hash", c, args.devices) for c in chain_counts if c > 1]
        for impl, gen, chains, dev in rows:
            wall, cpu, m = jax_rate(k, chains, args.sweeps, impl, gen, args.repeats, dev)
            rw = f"{wall / ref[0]:.2f}" if ref else "-"
            rc = f"{cpu / ref[1]:.2f}" if ref else "-"
            name = f"{impl} ({gen})" + (f" x{dev} devices" if dev > 1 else "")
            print(
                f"| {k} | {chains} | {wall:.3e} | {rw} | {cpu:.3e} | {rc} | {m:.3f} | {name} |",
                flush=True,
            )


if __name__ == "__main__":
    main(ARGS)
