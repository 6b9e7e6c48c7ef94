"""NNGP+NTK speed and float32 accuracy: bayesnn.nn.kernels vs a plain-JAX recursion.

ReLU MLP [Dense(W_std=1.5, b_std=0.05), ReLU] x 3 + Dense(1, 1.5, 0.05), X ~ N(0, 1) of shape
(N, 10), full K(X, X) jitted, both kernels at once. The baseline is the 15-line recursion
of the reference note (``jnp.arctan2``, no exact diagonal; it stands in for neural-tangents,
which the reference note measured at the same speed), run side by side in the same process.
A second row gives the same recursion with bayesnn's polynomial float32 ``atan2``, to show
how much of the gain is the cheaper angle and how much the blocking/triangle.

    python benchmarks/nngp_speed.py [--quick]

The process pins itself to one core (``BAYESNN_PIN_CORE``, default 0) before importing JAX.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _pinning import pin_to_one_core

pin_to_one_core()  # before jax: XLA sizes its thread pool from the affinity mask

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bayesnn.nn import stax  # noqa: E402
from bayesnn.nn.kernels import _atan2, kernel_fn  # noqa: E402

W, B, DEPTH = 1.5, 0.05, 3
SMOKE_HELP = "tiny sizes: checks that the script runs (seconds); its numbers are not results"


def plain_jax(x, atan2=jnp.arctan2):
    """Baseline: the straightforward recursion (atan2, diagonal from the matrix)."""
    d = x.shape[1]
    K = W**2 * (x @ x.T) / d + B**2
    T = K
    for _ in range(DEPTH):
        v = jnp.diag(K)
        s = jnp.sqrt(jnp.maximum(v[:, None] * v[None, :] - K**2, 0.0))
        th = atan2(s, K)
        E = (s + (jnp.pi - th) * K) / (2 * jnp.pi)
        Ed = (jnp.pi - th) / (2 * jnp.pi)
        K_new = W**2 * E + B**2
        T = K_new + W**2 * Ed * T
        K = K_new
    return K, T


def timeit(fn, x, reps):
    """Median and min wall seconds, and median process CPU seconds, after a compile call."""
    jax.block_until_ready(fn(x))
    ts, cs = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(x))
        ts.append(time.perf_counter() - t)
        cs.append(time.process_time() - c)
    return statistics.median(ts), min(ts), statistics.median(cs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    n = 1000 if args.quick else args.n
    reps = 3 if args.quick else args.reps
    if args.smoke:
        n, reps = 300, 1
    layers = []
    for _ in range(DEPTH):
        layers += [stax.Dense(512, W, B), stax.Relu()]
    arch = stax.serial(*layers, stax.Dense(1, W, B))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(n, 10)), jnp.float32)

    ours = jax.jit(lambda x: kernel_fn(arch, x, block_size=None))
    fns = {
        "plain JAX recursion (baseline)": jax.jit(plain_jax),
        "plain JAX recursion + bayesnn's polynomial atan2": jax.jit(
            lambda x: plain_jax(x, _atan2)
        ),
        "bayesnn kernel_fn, block_size=None (one block)": ours,
    }
    for bs in ("auto", 256, 1000):
        fns[f"bayesnn kernel_fn, upper-triangle blocks, block_size={bs}"] = jax.jit(
            lambda x, bs=bs: kernel_fn(arch, x, block_size=bs)
        )
    print(f"N={n}, d=10, depth {DEPTH}, float32, {jax.devices()[0].platform}, reps={reps}")
    print(
        "| implementation | median wall s | min wall s | median CPU s | ratio vs baseline (CPU) |"
    )
    print("|---|---|---|---|---|")
    res = {name: timeit(fn, x, reps) for name, fn in fns.items()}
    base_c = res["plain JAX recursion (baseline)"][2]
    for name, (med, mn, cpu) in res.items():
        print(f"| {name} | {med:.3f} | {mn:.3f} | {cpu:.3f} | {base_c / cpu:.2f}x |")

    # float32 accuracy against float64 (N_acc points)
    m = min(n, 1000)
    x64 = np.asarray(x[:m], np.float64)
    K32, T32 = ours(x[:m])
    B32, BT32 = fns["plain JAX recursion (baseline)"](x[:m])
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
