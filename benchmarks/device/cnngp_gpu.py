"""GlobalAvgPool CNN-GP (NNGP+NTK) on Fashion-MNIST at the largest N a GPU allows.

[Conv(3x3, SAME), ReLU] x 3, GlobalAvgPool, Dense(1) on 28 x 28 images: covariances of all
position pairs, ``(28 * 28)^2 = 614,656`` numbers per pair of images per layer. N doubles
from ``--n0`` while the next run, extrapolated as ``N^2`` from the last one, stays within
``--budget-s`` and ``kernel_fn``'s memory estimate stays within ``--memory-fraction`` of
the device memory (it raises before allocating otherwise). Rows print as they come.

    python benchmarks/device/cnngp_gpu.py [--n0 250] [--budget-s 240] [--dtype float32]
"""

from __future__ import annotations

import argparse
import gzip
import pathlib
import time

import jax
import numpy as np

from bayesnn.nn import stax
from bayesnn.nn.kernels import kernel_fn

DATA = pathlib.Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def images(n):
    if DATA.exists():
        with gzip.open(DATA, "rb") as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n] / 255.0
    else:  # same shapes and scale when the data set is not on the device machine
        x = np.random.default_rng(0).uniform(size=(n, 28, 28))
    x = x[..., None]
    return x - x.mean(axis=(1, 2, 3), keepdims=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n0", type=int, default=250)
    ap.add_argument("--budget-s", type=float, default=240.0)
    ap.add_argument("--memory-fraction", type=float, default=0.8)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = ap.parse_args()
    jax.config.update("jax_enable_x64", args.dtype == "float64")
    dev = jax.devices()[0]
    stats = dev.memory_stats() or {}
    limit = int(args.memory_fraction * stats.get("bytes_limit", 16 << 30))
    print(dev, f"memory limit for kernel_fn {limit / 2**30:.1f} GiB", flush=True)
    conv = [stax.Conv(8, (3, 3), padding="SAME", W_std=1.5, b_std=0.1), stax.Relu()]
    arch = stax.serial(*conv, *conv, *conv, stax.GlobalAvgPool(), stax.Dense(1, 1.5, 0.1))
    n, last = args.n0, None
    while True:
        if last is not None and last * (n / (n // 2)) ** 2 > args.budget_s:
            print(f"stop: N = {n} would take about {last * 4:.0f} s > budget", flush=True)
            break
        x = images(n).astype(args.dtype)
        try:
            t = time.perf_counter()
            K, T = jax.block_until_ready(kernel_fn(arch, x, max_memory_bytes=limit))
            wall = time.perf_counter() - t
        except ValueError as e:  # the memory estimate is over the limit
            print(f"stop: N = {n}: {e}", flush=True)
            break
        ev = np.linalg.eigvalsh(np.asarray(K, np.float64))
        print(
            f"N = {n}: {wall:.1f} s (incl. compile), {n * n / 2 / wall:.0f} pairs/s, "
            f"min eig K / max {ev[0] / ev[-1]:.1e}, finite {bool(np.isfinite(T).all())}",
            flush=True,
        )
        last, n = wall, 2 * n


if __name__ == "__main__":
    main()
