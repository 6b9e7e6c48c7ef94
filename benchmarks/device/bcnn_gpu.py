"""Bayesian CNN on a GPU: 64+ chains of cyclical SGHMC on the full Fashion-MNIST training set.

The quick CNN of ``benchmarks/bayesian_cnn.py`` (``Conv(16) -> AvgPool -> Conv(32) ->
AvgPool -> Flatten -> Dense(10)``, NTK parameterisation, ``N(0, 1)`` prior, temperature 1),
``--chains`` chains vmapped in one compiled run (sharded when several devices are visible),
60,000 training images, batch 128. Reports compile time, chain-steps per second (after
compilation: the second call reuses the compiled run) and the posterior-predictive
accuracy / NLL / ECE / Brier on the 10,000 test images. Falls back to random images of the
same shape when the IDX files are not on the machine (the metrics are then meaningless).

    python benchmarks/device/bcnn_gpu.py [--chains 64] [--epochs 10] [--cycles 2]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from bayesnn import BayesianNeuralNet, likelihoods, metrics, nn, priors
from bayesnn.baselines import mean_predictive_probs
from samplers import sgmcmc


def data():
    try:
        from bayesnn.datasets import load_fashion_mnist

        (xtr, ytr), (xte, yte) = load_fashion_mnist("train"), load_fashion_mnist("test")
        real = True
    except FileNotFoundError:
        rng = np.random.default_rng(0)
        xtr, xte = rng.integers(0, 256, (60000, 28, 28)), rng.integers(0, 256, (10000, 28, 28))
        ytr, yte = rng.integers(0, 10, 60000), rng.integers(0, 10, 10000)
        real = False
    f = lambda a: (np.asarray(a, np.float32) / 255.0)[..., None]  # noqa: E731
    return f(xtr), np.asarray(ytr, np.int32), f(xte), np.asarray(yte, np.int32), real


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chains", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=10, help="epochs per chain")
    ap.add_argument("--cycles", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    print(f"devices: {jax.devices()}")
    x, y, x_test, y_test, real = data()
    print(f"Fashion-MNIST {'IDX files' if real else 'NOT FOUND: random images'}: {x.shape}")
    he = float(np.sqrt(2.0))
    arch = nn.serial(
        nn.Conv(16, (3, 3), padding="SAME", W_std=he, b_std=1.0),
        nn.Relu(),
        nn.AvgPool((2, 2), (2, 2)),
        nn.Conv(32, (3, 3), padding="SAME", W_std=he, b_std=1.0),
        nn.Relu(),
        nn.AvgPool((2, 2), (2, 2)),
        nn.Flatten(),
        nn.Dense(10, b_std=1.0),
    )
    model = BayesianNeuralNet.create(
        arch, (28, 28, 1), priors.IsotropicGaussian.create, likelihoods.Categorical()
    )
    n = x.shape[0]
    steps = args.epochs * (n // args.batch_size)
    h0 = float(np.sqrt(args.lr / n))
    kernel = sgmcmc.sghmc(alpha=0.1 / h0)
    schedule = sgmcmc.schedules.cyclical(h0, steps, args.cycles, exploration_ratio=0.7)
    init = jax.vmap(model.init)(jax.random.split(jax.random.key(0), args.chains))
    thin = max(1, steps // (args.cycles * 20))

    def run(num_samples):
        return model.sample(
            jax.random.key(1), kernel, x, y, init, num_samples=num_samples, thinning=thin,
            batch_size=args.batch_size, step_size=schedule, progress_bar=False,
        )  # fmt: skip

    t = time.perf_counter()
    jax.block_until_ready(run(1).state)
    print(f"compile + {thin} steps: {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    result = run(steps // thin)
    jax.block_until_ready(result.state)
    wall = time.perf_counter() - t
    done = (steps // thin) * thin
    print(
        f"{args.chains} chains x {done} steps in {wall:.1f} s: "
        f"{args.chains * done / wall:.0f} chain-steps/s, {done / wall:.1f} steps/s"
    )
    keep = ~np.asarray(result.info.explore).any(axis=0)
    keep[: keep.size // args.cycles] = False  # the first cycle is burn-in
    draws = jax.tree.map(lambda a: jnp.asarray(a)[:, keep], result.positions)
    probs = mean_predictive_probs(model, draws, x_test, batch_size=2000)
    print(
        f"posterior ({args.chains} x {int(keep.sum())} draws): "
        f"acc={float(metrics.accuracy(probs, y_test)):.4f} "
        f"nll={float(metrics.categorical_nll(probs, y_test)):.4f} "
        f"ece={float(metrics.expected_calibration_error(probs, y_test)):.4f} "
        f"brier={float(metrics.brier_score(probs, y_test)):.4f}"
    )


if __name__ == "__main__":
    main()
