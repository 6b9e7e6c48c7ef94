"""Site updates ("flips") per second for a supervised dense Hebbian net, side by side.

N = 1000, K in {3, 30}, P = 2, M = 20, r = 0.5, T = 0.3, started at an archetype. Every
figure counts attempted single-site updates per second, aggregated over chains:

- numba: compiled sequential exact-dH heat bath, one chain, one core (the issue's reference;
  skipped if numba is not importable, numba is NOT a bayesnn dependency);
- vmap-seq: ``build_sequential_kernel`` vmapped over C chains (exact, each chain its own
  random sites);
- chain-par: ``build_chain_parallel_kernel`` (exact sequential heat bath of all C chains,
  one shared site sweep, vectorised across chains with an O(K) overlap cache per chain);
- sync: ``build_parallel_kernel(mode="synchronous")`` vmapped over chains (all sites of all
  chains at once from batched overlaps / fields: BLAS-bound, but Little dynamics, NOT the
  Boltzmann law of H at finite N).

    python benchmarks/hebbian_speed.py [--quick] [--chains 256] [--sweeps 20]

Pin one thread with XLA_FLAGS="--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1" for a one-core comparison with numba.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from bayesnn import hebbian as hb
from samplers import spins as sp

N, M_EX, R_Q, TEMP = 1000, 20, 0.5, 0.3
IMPLS = [
    ("vmap-seq", "threefry"),
    ("chain-par", "threefry"),
    ("chain-par", "hash"),
    ("sync", "threefry"),
    ("sync", "hash"),
]


def _network(k):
    ds = hb.make_dataset(jax.random.key(0), k, N, M_EX, R_Q)
    return ds, hb.supervised_network(ds.examples, 2, quality=R_Q)


def jax_rate(k, chains, sweeps, impl, generator="threefry"):
    ds, net = _network(k)
    model = hb.spin_model(net)
    s0 = jnp.broadcast_to(ds.archetypes[0], (chains, N))
    if impl == "vmap-seq":
        step = sp.build_sequential_kernel(model)
    elif impl == "chain-par":
        step = sp.build_chain_parallel_kernel(model, generator=generator)
    else:
        step = sp.build_parallel_kernel(model, mode="synchronous", generator=generator)
    states = sp.init_chains(model, s0)

    @jax.jit
    def run(key):
        final, _, infos = sp.run_chains(key, step, states, 1 / TEMP, sweeps)
        return final.spins, infos.acceptance_rate

    jax.block_until_ready(run(jax.random.key(1)))  # compile
    t = time.perf_counter()
    spins, _ = jax.block_until_ready(run(jax.random.key(2)))
    dt = time.perf_counter() - t
    m = float(jnp.mean(spins @ ds.archetypes[0]) / N)
    return chains * sweeps * N / dt, m


def numba_rate(k, sweeps, order=2):
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
    t = time.perf_counter()
    sweep(s, x, nov, 1 / TEMP, sites, us, order)
    return N * sweeps / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--chains", type=int, default=256)
    ap.add_argument("--sweeps", type=int, default=20)
    ap.add_argument("--ks", default="3,30")
    args = ap.parse_args()
    sweeps = 4 if args.quick else args.sweeps
    ks = [int(k) for k in args.ks.split(",")]
    print(f"backend={jax.default_backend()} devices={jax.devices()}")
    print(f"{'K':>4} {'chains':>7} {'flips/s':>12} {'x numba':>8} {'m_1':>6}  impl")
    for k in ks:
        ref = numba_rate(k, 20 if args.quick else 200)
        if ref is not None:
            print(f"{k:>4} {1:>7} {ref:12.3e} {1.0:8.2f} {'':>6}  numba sequential (1 core)")
        for impl, gen in IMPLS:
            for chains in (1, args.chains):
                if chains == 1 and (args.quick or gen == "hash"):
                    continue
                rate, m = jax_rate(k, chains, sweeps, impl, gen)
                ratio = f"{rate / ref:8.2f}" if ref else f"{'-':>8}"
                name = f"jax {impl} ({gen})"
                print(f"{k:>4} {chains:>7} {rate:12.3e} {ratio} {m:6.3f}  {name}", flush=True)


if __name__ == "__main__":
    main()
