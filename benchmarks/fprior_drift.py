"""Drift of tuned prior scales in long functional-prior fits (issue 3), and a safe default.

The 1-D notebook (examples/01_functional_priors.ipynb at full size: tanh 2x50, GP target
RBF(variance 1.6^2, lengthscale 1.8) on a 200-point grid over the test range [-15, 15],
128 functions a side, warm-started critic 500 + 20 steps) tuned the Gaussian family for 1000
RMSprop(0.05) steps and ended with a hidden-to-hidden weight sd of 47.6. RMSprop normalises
the gradient, so a parameter with a small but consistently signed (or noisy) W1 gradient moves
by up to ``lr`` per step whatever its effect on the functions: once the tanh units saturate,
larger weights barely change the functions and the scale random-walks / drifts.

This script runs several prior optimisers / step counts on that setting and reports, every
``--every`` steps, the per-layer scales and the independent W1
(:func:`bayesnn.functional_prior.evaluate_w1`, one fresh critic per checkpoint, common random
numbers). Usage::

    python benchmarks/fprior_drift.py [--quick] [--configs rmsprop:0.05:1000 ...]
"""

from __future__ import annotations

import argparse
import os
import time

from _pinning import pin_to_one_core  # noqa: E402

pin_to_one_core()  # before jax: XLA sizes its thread pool from the affinity mask

import jax  # noqa: E402
import optax  # noqa: E402

from bayesnn import functional_prior as fp  # noqa: E402
from bayesnn.gp import RBF, GPPrior  # noqa: E402
from bayesnn.nn import stax  # noqa: E402

SMOKE_HELP = "tiny sizes: checks that the script runs (seconds); its numbers are not results"
OPTIMIZERS = {"rmsprop": optax.rmsprop, "adam": optax.adam, "sgd": optax.sgd}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (< ~1 min)")
    ap.add_argument(
        "--configs",
        nargs="+",
        default=["rmsprop:0.05:1000", "rmsprop:0.01:1000", "adam:0.01:1000"],
        help="optimizer:learning_rate:steps",
    )
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--eval-steps", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args(argv)
    hidden, n_fn, grid_pts, first, every, eval_steps = 50, 128, 200, 500, args.every, 1000
    eval_steps = args.eval_steps
    if args.quick:
        hidden, n_fn, grid_pts, first, every, eval_steps = 16, 32, 40, 20, 10, 100
        args.configs = ["rmsprop:0.05:30", "rmsprop:0.01:30"]
    if args.smoke:
        hidden, n_fn, grid_pts, first, every, eval_steps = 4, 8, 10, 2, 2, 3
        args.configs = ["rmsprop:0.05:4"]
    arch = stax.serial(
        stax.Dense(hidden, b_std=1.0),
        stax.Tanh(),
        stax.Dense(hidden, b_std=1.0),
        stax.Tanh(),
        stax.Dense(1, b_std=1.0),
    )
    gp = GPPrior(RBF(variance=1.6**2, lengthscale=1.8), precision="float32")
    ms = fp.grid(-15.0, 15.0, grid_pts)
    x = ms.sample(jax.random.key(0))
    print(f"XLA_FLAGS={os.environ['XLA_FLAGS']}; load: {os.popen('uptime').read().strip()}")
    gp_eval = GPPrior(gp.kernel)  # one object: evaluate_w1 compiles once for all checkpoints
    fam = None
    results = []
    for cfg in args.configs:
        name, lr, steps = cfg.split(":")
        lr, steps = float(lr), int(steps)
        snaps = []
        t0 = time.perf_counter()
        _, hist = fp.fit_functional_prior(
            arch,
            gp,
            ms,
            jax.random.key(0),
            family="gaussian",
            steps=steps,
            num_functions=n_fn,
            estimator=fp.CriticW1(steps=20, first_steps=first),
            prior_optimizer=OPTIMIZERS[name](lr),
            check_every=every,
            callback=lambda i, w, th: snaps.append((i + 1, jax.device_get(th))),  # noqa: B023
        )
        fam = hist.family
        wall = time.perf_counter() - t0
        snaps = [(0, hist.initial_theta)] + snaps
        rows = []
        for i, th in snaps:
            w, se = fp.evaluate_w1(
                jax.random.key(5), arch, fam, th, gp_eval, x, num_steps=eval_steps
            )
            pr = fam.prior(th)
            sw = {k: float(v) for k, v in pr.weight_scales.items()}
            sb = {k: float(v) for k, v in pr.bias_scales.items()}
            rows.append((i, float(w), float(se), sw, sb))
        results.append((cfg, wall, rows))
        print(f"\n{cfg}: fit {wall:.0f} s wall")
        print("| step | indep. W1 | weight sds (per layer) | bias sds |")
        print("|---|---|---|---|")
        for i, w, se, sw, sb in rows:
            ws = ", ".join(f"{v:.2f}" for v in sw.values())
            bs = ", ".join(f"{v:.2f}" for v in sb.values())
            print(f"| {i} | {w:.3f} +- {se:.3f} | {ws} | {bs} |", flush=True)
    print(f"\nload at the end: {os.popen('uptime').read().strip()}")


if __name__ == "__main__":
    main()
