"""UCI regression test NLL: NNGP vs inverse-gamma (Student-t process) vs Burr XII mixture.

Protocol (a simplified version of Lee et al., ICLR 2022, reference note section 7): ReLU
MLP kernel (2 hidden layers, W_std=1.5, b_std=0.05, unit readout without bias); x and y
standardised on the training split; the scale/noise hyperparameters are fitted by type-II
maximum likelihood on the training data (never on the test split); NNGP uses the fitted
``sigma^2 = beta / (alpha - 1)`` as a fixed scale, the Student-t process the fitted
``(alpha, beta, eta)``, Burr XII(c=2, d=alpha/2, scale=beta/alpha) importance sampling with
the Laplace proposal (1000 draws). Test NLL of ``y`` (noise included) per point, reported
in original target units (standardised NLL + log y_std) and, for comparison with the
paper's table, in standardised units (the paper's values match the standardised scale: e.g.
yacht -1.35 is impossible in original units, where log y_std = 2.7).

With ``--root`` (default ``../shared/data/uci`` when present) the standard split files are
read; otherwise the shipped data with seeded splits.

The type-II ML fit uses at most ``--fit-subsample`` (3000) training points (a Cholesky per
Adam step); the posteriors use the whole training split (one float64 Cholesky, shared by the
three models). Everything runs in float64 on the default JAX device (a GPU when present):

    PYTHONPATH=. python benchmarks/nngp_uci.py [--quick] [--splits 5] [--sets yacht,energy]
    PYTHONPATH=. python benchmarks/nngp_uci.py --sets all --splits 3   # every set in --root
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _nngp_common import ARCH, add_blas_threads_argument, limit_blas_threads

from bayesnn import nngp
from bayesnn.datasets import SHIPPED_UCI, load_uci, num_splits, uci_names
from bayesnn.nn.kernels import kernel_fn

SMOKE_HELP = "tiny sizes: checks that the script runs (seconds); its numbers are not results"


def run_split(name, split, arch, root=None, fit_subsample=3000, fit_steps=400):
    d = load_uci(name, split, root=root)
    xtr, ytr = np.asarray(d.x_train, np.float64), np.asarray(d.y_train, np.float64).reshape(-1)
    xte, yte = np.asarray(d.x_test, np.float64), np.asarray(d.y_test, np.float64).reshape(-1)
    with jax.enable_x64(True):
        K = kernel_fn(arch, jnp.asarray(xtr), get="nngp")
        Kx = kernel_fn(arch, jnp.asarray(xte), jnp.asarray(xtr), get="nngp")
        kd = jnp.diag(kernel_fn(arch, jnp.asarray(xte), get="nngp"))
        # type-II ML on at most fit_subsample training points (Adam needs a Cholesky per
        # step: O(n^3) each); the posterior below uses all of them
        n = len(ytr)
        sub = np.sort(np.random.default_rng(split).permutation(n)[: min(n, fit_subsample)])
        hp, _ = nngp.tp.fit_hyperparameters(
            K[sub][:, sub], jnp.asarray(ytr[sub]), num_steps=fit_steps, learning_rate=3e-2
        )
        a, b, eta = (float(hp[k]) for k in ("alpha", "beta", "eta"))
        y = jnp.asarray(yte)[:, None]
        log_sy = math.log(float(np.asarray(d.y_std).reshape(-1)[0]))
        gp = nngp.gp.fit(K, jnp.asarray(ytr), eta)  # one factorisation for all three models
        del K
        s2 = b / (a - 1) if a > 1 else b / a
        out = {}
        out["NNGP"] = -float(jnp.mean(nngp.gp.predict(gp, Kx, kd, s2).log_prob(y))) + log_sy
        tp = nngp.tp.TPosterior(gp, jnp.asarray(a + 0.5 * n), jnp.asarray(b) + 0.5 * gp.quad)
        t = nngp.tp.predict(tp, Kx, kd)
        out["Inverse Gamma"] = -float(jnp.mean(t.log_prob(y))) + log_sy
        prior = nngp.BurrXII(2.0, a / 2.0, b / a)
        post = nngp.mixtures.importance_posterior(gp, prior, jax.random.key(split), 1000)
        out["Burr XII"] = (
            -float(jnp.mean(nngp.mixtures.predict(post, Kx, kd).log_prob(y))) + log_sy
        )
        out["ess"] = float(post.ess)
        out["log_sy"] = log_sy
        out["n"] = n
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument(
        "--sets",
        default=None,
        help="comma-separated data set names, or 'all' (every set in --root)",
    )
    ap.add_argument(
        "--fit-subsample",
        type=int,
        default=3000,
        help="type-II ML of (alpha, beta, eta) on at most this many training points",
    )
    default_root = Path(__file__).resolve().parents[2] / "shared" / "data" / "uci"
    ap.add_argument("--root", default=str(default_root) if default_root.is_dir() else None)
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    add_blas_threads_argument(ap)
    args = ap.parse_args()
    limit_blas_threads(args)
    if args.smoke:
        args.quick, args.sets, args.fit_subsample = True, args.sets or "yacht", 50
    names = ("yacht", "energy") if args.quick else SHIPPED_UCI
    if args.sets == "all":
        names = tuple(uci_names(args.root))
    elif args.sets:
        names = tuple(args.sets.split(","))
    splits = 1 if args.quick else args.splits
    arch = ARCH
    keys = ("NNGP", "Inverse Gamma", "Burr XII")
    print(f"root={args.root}; splits={splits}; test NLL per point (mean +- sd over splits)")
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); float64")
    print(
        "| data set | n_train | NNGP | Inverse Gamma | Burr XII | NNGP (std units) |"
        " IG (std units) | Burr (std units) | Burr IS ESS (of 1000) | splits | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        t0 = time.perf_counter()
        k = min(splits, num_splits(name, args.root))
        rows = [run_split(name, s, arch, args.root, args.fit_subsample) for s in range(k)]
        cells, std_cells = [], []
        for key in keys:
            v = np.array([r[key] for r in rows])
            cells.append(f"{v.mean():.2f} +- {v.std():.2f}")
            v = v - np.array([r["log_sy"] for r in rows])
            std_cells.append(f"{v.mean():.2f} +- {v.std():.2f}")
        ess = np.mean([r["ess"] for r in rows])
        n, dt = rows[0]["n"], time.perf_counter() - t0
        print(
            f"| {name} | {n} | "
            + " | ".join(cells + std_cells)
            + f" | {ess:.0f} | {k} | {dt:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
