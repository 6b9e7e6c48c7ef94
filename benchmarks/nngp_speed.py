"""NNGP+NTK speed and float32 accuracy: bayesnn.nn.kernels vs a plain-JAX recursion.

ReLU MLP [Dense(W_std=1.5, b_std=0.05), ReLU] x 3 + Dense(1, 1.5, 0.05), X ~ N(0, 1) of shape
(N, 10), full K(X, X) jitted, both kernels at once. The baseline is the 15-line recursion
of the reference note (atan2, no exact diagonal), run side by side in the same process.

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
        python benchmarks/nngp_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from bayesnn.nn import stax
from bayesnn.nn.kernels import kernel_fn

W, B, DEPTH = 1.5, 0.05, 3


def plain_jax(x):
    """Baseline: the straightforward recursion (atan2, diagonal from the matrix)."""
    d = x.shape[1]
    K = W**2 * (x @ x.T) / d + B**2
    T = K
    for _ in range(DEPTH):
        v = jnp.diag(K)
        s = jnp.sqrt(jnp.maximum(v[:, None] * v[None, :] - K**2, 0.0))
        th = jnp.arctan2(s, K)
        E = (s + (jnp.pi - th) * K) / (2 * jnp.pi)
        Ed = (jnp.pi - th) / (2 * jnp.pi)
        K_new = W**2 * E + B**2
        T = K_new + W**2 * Ed * T
        K = K_new
    return K, T


def timeit(fn, x, reps):
    jax.block_until_ready(fn(x))
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(x))
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), min(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    n = 1000 if args.quick else args.n
    reps = 3 if args.quick else args.reps
    layers = []
    for _ in range(DEPTH):
        layers += [stax.Dense(512, W, B), stax.Relu()]
    arch = stax.serial(*layers, stax.Dense(1, W, B))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(n, 10)), jnp.float32)

    ours = jax.jit(lambda x: kernel_fn(arch, x, block_size=None))
    base = jax.jit(plain_jax)
    print("bayesnn kernel_fn below: block_size=None (one block) unless stated")
    print(f"N={n}, d=10, depth {DEPTH}, float32, {jax.devices()[0].platform}, reps={reps}")
    print("| implementation | median s | min s |")
    print("|---|---|---|")
    res = {}
    for name, fn in (("plain JAX recursion (baseline)", base), ("bayesnn kernel_fn", ours)):
        med, mn = timeit(fn, x, reps)
        res[name] = med
        print(f"| {name} | {med:.3f} | {mn:.3f} |")
    for bs in ("auto", 128, 512):
        blocked = jax.jit(lambda x, bs=bs: kernel_fn(arch, x, block_size=bs))
        med, mn = timeit(blocked, x, reps)
        name = f"bayesnn kernel_fn, upper-triangle blocks, block_size={bs}"
        res[name] = med
        print(f"| {name} | {med:.3f} | {mn:.3f} |")
    base_t = res["plain JAX recursion (baseline)"]
    for name, t in res.items():
        print(f"speed ratio baseline / {name}: {base_t / t:.2f}x")

    # float32 accuracy against float64 (N_acc points)
    m = min(n, 1000)
    x64 = np.asarray(x[:m], np.float64)
    K32, T32 = ours(x[:m])
    B32, BT32 = base(x[:m])
    with jax.enable_x64(True):
        K64, T64 = kernel_fn(arch, jnp.asarray(x64))
        K64, T64 = np.asarray(K64), np.asarray(T64)
    print(f"\nfloat32 vs float64, N={m}: max|err| / max|K|")
    print("| variant | NNGP diag | NNGP off-diag | NTK diag | NTK off-diag |")
    print("|---|---|---|---|---|")
    off = ~np.eye(m, dtype=bool)
    for name, (a, b) in (("plain JAX", (B32, BT32)), ("bayesnn", (K32, T32))):
        row = []
        for got, ref in ((a, K64), (b, T64)):
            e = np.abs(np.asarray(got, np.float64) - ref) / np.abs(ref).max()
            row += [np.diag(e).max(), e[off].max()]
        print(f"| {name} | " + " | ".join(f"{v:.1e}" for v in row) + " |")


if __name__ == "__main__":
    main()
