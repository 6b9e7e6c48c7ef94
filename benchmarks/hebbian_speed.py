"""Flips per second of the sequential exact-dH heat bath on a supervised dense Hebbian net.

N = 1000, K in {3, 30}, P = 2 (the reference point: a numba sequential exact-dH heat bath,
one core, ~4e6 flips/s at N = 1000, K = 3). Single chain and C parallel chains (vmap), JAX on
whatever backend is present. If numba is importable, a compiled sequential reference runs
side by side (numba is NOT a bayesnn dependency).

    python benchmarks/hebbian_speed.py [--quick] [--chains 256] [--sweeps 20]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from bayesnn import hebbian as hb


def jax_rate(n, k, chains, sweeps, order=2):
    ds = hb.make_dataset(jax.random.key(0), k, n, 20, 0.5)
    net = hb.supervised_network(ds.examples, order, quality=0.5)
    s0 = jnp.broadcast_to(ds.archetypes[0], (chains, n))
    run = jax.jit(lambda key: hb.simulate(key, net, s0, 1 / 0.3, sweeps).spins)
    run(jax.random.key(1)).block_until_ready()  # compile
    t = time.perf_counter()
    run(jax.random.key(2)).block_until_ready()
    dt = time.perf_counter() - t
    return chains * sweeps * n / dt


def numba_rate(n, k, sweeps, order=2):
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

    rng = np.random.default_rng(0)
    x = rng.choice([-1.0, 1.0], size=(k, n))
    s = x[0].copy()
    nov = x @ s / n
    sites = rng.integers(0, n, size=n * sweeps)
    us = rng.random(n * sweeps)
    sweep(s, x, nov, 1 / 0.3, sites[:n], us[:n], order)
    t = time.perf_counter()
    sweep(s, x, nov, 1 / 0.3, sites, us, order)
    return n * sweeps / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--chains", type=int, default=256)
    ap.add_argument("--sweeps", type=int, default=20)
    args = ap.parse_args()
    sweeps = 5 if args.quick else args.sweeps
    print(f"backend={jax.default_backend()} devices={jax.devices()}")
    print(f"{'K':>4} {'chains':>7} {'flips/s':>12}  impl")
    ref = {}
    for k in (3, 30):
        r = numba_rate(1000, k, 50 if args.quick else 200)
        if r is not None:
            ref[k] = r
            print(f"{k:>4} {1:>7} {r:12.3e}  numba sequential (1 core)")
        for chains in (1, args.chains):
            rate = jax_rate(1000, k, chains, sweeps)
            ratio = f"  ({rate / ref[k]:.1f}x numba)" if k in ref else ""
            print(f"{k:>4} {chains:>7} {rate:12.3e}  jax sequential glauber{ratio}")


if __name__ == "__main__":
    main()
