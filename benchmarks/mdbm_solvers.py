"""Mean-field solver convergence on a partly trained mDBM (issue #5, solver study).

Loads (or trains, with PR as the forward solver so that every step converges) a fully
connected Fashion-MNIST mDBM, then solves the mean-field fixed point for held-out images at
several hidden-pixel fractions with each candidate solver, *without* fallback, and reports
per-example convergence, field evaluations / iterations and time. Every solver stops on the
true mean-field residual ||q - softmax(W q + b)|| / ||q|| < tol.

Candidates: Anderson on undamped mean field (memory 5 / 10, mixing beta 1 / 0.5), Anderson on
the damped forward-backward map (alpha < 1, damped prox), Peaceman-Rachford at several alpha,
and the same model evaluated at larger margins m (the coupling rescaled harder).

Note: training here uses ``fit``'s default row-norm cap (``max_norm = 30``); pass
``--checkpoint`` to study an uncapped model instead.

Usage: python benchmarks/mdbm_solvers.py [--quick] [--checkpoint PATH] [--train-steps 30]
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bayesnn import boltzmann as bm
from bayesnn.datasets import load_fashion_mnist

HERE = os.path.dirname(os.path.abspath(__file__))
SMOKE_HELP = "tiny sizes: checks that the script runs (seconds); its numbers are not results"

CANDIDATES = {
    "anderson a=1 mem5": dict(method="anderson", alpha=1.0, memory=5, mixing=1.0),
    "anderson a=1 mem5 mix0.5": dict(method="anderson", alpha=1.0, memory=5, mixing=0.5),
    "anderson a=1 mem10 mix0.5": dict(method="anderson", alpha=1.0, memory=10, mixing=0.5),
    "anderson a=1 mem10": dict(method="anderson", alpha=1.0, memory=10, mixing=1.0),
    "anderson a=0.5 (FB prox)": dict(method="anderson", alpha=0.5, memory=5),
    "anderson a=0.25 (FB prox)": dict(method="anderson", alpha=0.25, memory=5),
    "pr a=1": dict(method="pr", alpha=1.0),
    "pr a=0.5": dict(method="pr", alpha=0.5),
    "pr a=0.25": dict(method="pr", alpha=0.25),
}


def load_params(path, spec):
    """Parameters from a ``TrainState`` checkpoint of ``benchmarks/mdbm_fashion.py``."""
    like = bm.init_params(jax.random.key(0), spec)
    with np.load(path) as f:
        leaves = [jnp.asarray(f[f"arr_{i}"]) for i in range(len(jax.tree_util.tree_leaves(like)))]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), leaves)


def _fashion_available():
    try:
        load_fashion_mnist("test")
    except FileNotFoundError:
        return False
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--bins", type=int, default=4)
    ap.add_argument("--m", type=float, default=0.05)
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--margins", default="0.1,0.3")
    ap.add_argument("--only", default=None, help="comma-separated candidate names")
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    if args.quick:
        args.hidden, args.train, args.train_steps, args.batch = 16, 300, 3, 50
        args.only, args.margins = "anderson a=1 mem5,anderson a=1 mem5 mix0.5", ""
    if args.smoke:
        args.hidden, args.train, args.train_steps, args.batch = 4, 40, 2, 8
        args.only, args.margins, args.max_iter = "anderson a=1 mem5", "", 20
        if not _fashion_available():
            print("# smoke: Fashion-MNIST IDX files not found; nothing to run")
            return
    xtr, ytr = load_fashion_mnist("train")
    xte, _ = load_fashion_mnist("test")
    rng = np.random.default_rng(0)
    itr = rng.permutation(len(ytr))[: args.train]
    ptr = np.asarray(bm.bin_images(xtr[itr], args.bins, 255.0))
    ytr = ytr[itr]
    pte = np.asarray(bm.bin_images(xte[: args.batch], args.bins, 255.0))
    spec = bm.fully_connected_spec(784, args.bins, args.hidden, 10)
    t0 = time.perf_counter()
    if args.checkpoint:
        params = load_params(args.checkpoint, spec)
        how = f"checkpoint {args.checkpoint}"
    else:
        cfg = bm.SolverConfig(method="pr", alpha=0.5, max_iter=300, fallback=None)
        cfg = cfg._replace(backward=bm.implicit.BackwardOptions(maxiter=4, on_failure="ignore"))
        state, hist = bm.fit(
            jax.random.key(1),
            spec,
            bm.init_params(jax.random.key(0), spec),
            ptr,
            ytr,
            num_epochs=1,
            batch_size=args.train // max(args.train_steps, 1),
            optimizer=optax.adam(2e-2),
            training=bm.TrainingConfig(m=args.m),
            config=cfg,
            on_failure="flag",
        )
        params = state.params
        how = f"{args.train_steps} training steps (PR alpha 0.5 forward), {hist[-1]}"
    print(f"# model: 784 x {args.bins}, hidden {args.hidden}, m {args.m}; {how}")
    print(f"# setup {time.perf_counter() - t0:.0f} s; batch {args.batch}, tol 1e-4, no fallback")
    fracs = (0.0, 0.25, 0.5, 0.75)
    masks = {f: np.asarray(bm.random_masks(jax.random.key(3), pte.shape, f)) for f in fracs}
    names = list(CANDIDATES) if args.only is None else [x for x in args.only.split(",") if x]
    rows = [(name, args.m, CANDIDATES[name]) for name in names]
    for mm in [float(x) for x in args.margins.split(",") if x]:
        for name in ("anderson a=1 mem5", "anderson a=1 mem5 mix0.5"):
            rows.append((f"{name} (m={mm})", mm, CANDIDATES[name]))
    print(
        "| solver | m | hidden frac | converged (no fallback) | evals/iters | "
        "max residual | ms per solve |"
    )
    print("|---|---|---|---|---|---|---|")
    couplings = {}
    for name, mm, kw in rows:
        if mm not in couplings:
            couplings[mm] = bm.monotone_coupling(params, spec, mm)
        coupling = couplings[mm]
        max_iter = args.max_iter if kw["method"] == "anderson" else 3 * args.max_iter
        config = bm.SolverConfig(max_iter=max_iter, fallback=None, **kw)
        run = jax.jit(
            lambda c, ev, config=config: bm.infer(c, spec, ev, config=config)[1]  # noqa: B023
        )
        for f in fracs:
            ev = bm.make_evidence(spec, pte, masks[f])
            info = run(coupling, ev)
            jax.block_until_ready(info)
            t = time.perf_counter()
            info = run(coupling, ev)
            jax.block_until_ready(info)
            dt = (time.perf_counter() - t) * 1e3
            print(
                f"| {name} | {mm} | {f} | {float(jnp.mean(info.converged)):.2f} | "
                f"{int(info.num_steps)} | {float(jnp.max(info.residual)):.2e} | {dt:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
