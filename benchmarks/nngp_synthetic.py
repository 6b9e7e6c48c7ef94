"""Synthetic A / B heavy-tail regression: NNGP vs inverse-gamma vs Burr XII scale mixtures.

Data exactly as the reference code generates them (Lee et al., ICLR 2022,
``experiments/data.py``: ``syn-normal`` and ``syn-t``):

* Synthetic A: ``x = linspace(-50, 50, 100)``, ``y = f(x) + 0.2 eps``, ``f`` one draw of a GP
  with RBF kernel ``exp(-(x - x')^2 / 2)``, ``eps ~ N(0, 1)``; ``RandomState(829)``.
* Synthetic B: ``x = linspace(-150, 150, 300)``, ``y = f(x) + 0.8 eps``, ``eps ~ t_1``
  (Cauchy); ``RandomState(761)``.

Protocol per split (seed ``s``): random permutation, 80/10/10 train/valid/test, x and y
standardised on the training part. Kernel: ReLU NNGP, 2 hidden layers (W_std 1.5, b_std
0.05), unit readout without bias (as ``nngp_uci.py``). Hyperparameters, never chosen on the
test part:

* NNGP: ``(sigma^2, eta)`` by type-II maximum likelihood on train (profile likelihood over a
  grid of ``eta`` using one eigendecomposition; ``sigma^2 = q / n`` in closed form).
* Inverse gamma (Student-t process): ``(alpha, beta, eta)`` by type-II ML on train
  (:func:`bayesnn.nngp.tp.fit_hyperparameters`).
* Burr XII: ``eta`` from the t-process fit; ``(c, d)`` in ``{1, 2, 3}^2`` (the reference
  grid) and the scale in a log grid, chosen by validation NLL; posterior by importance
  sampling (1000 draws, Laplace proposal). ``--quick``: one split, a 2 x 2 x 1 grid.

Reported: test NLL of ``y`` per point (noise included), mean +- sd over splits, in the
standardised units the paper's table appears to use (see ``results/nngp.md``, UCI section)
and in original units (``+ log y_std``).

    PYTHONPATH=. python benchmarks/nngp_synthetic.py [--quick] [--splits 10]
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from _nngp_common import ARCH, add_blas_threads_argument, limit_blas_threads

from bayesnn import nngp
from bayesnn.nn.kernels import kernel_fn


def synthetic(name: str):
    """The reference code's ``syn-normal`` (A) and ``syn-t`` (B) data sets."""
    num, seed, noise = {"A": (100, 829, "normal"), "B": (300, 761, "t")}[name]
    rs = np.random.RandomState(seed)
    x = np.linspace(-num / 2, num / 2, num)[:, None]
    cov = np.exp(-0.5 * (x - x.T) ** 2)
    f = rs.multivariate_normal(mean=np.zeros(num), cov=cov, size=1).flatten()
    if noise == "normal":
        y = f + rs.standard_normal(size=num) * 0.2
    else:
        y = f + rs.standard_t(df=1, size=num) * 0.8
    return x, y


def split(x, y, seed):
    idx = np.random.RandomState(seed).permutation(len(x))
    n_tr, n_va = int(0.8 * len(x)), int(0.1 * len(x))
    parts = np.split(idx, [n_tr, n_tr + n_va])
    mx, sx = x[parts[0]].mean(0), x[parts[0]].std(0)
    my, sy = y[parts[0]].mean(), y[parts[0]].std()
    return [((x[p] - mx) / sx, (y[p] - my) / sy) for p in parts], sy


ETA_GRID = np.logspace(-4, 1.5, 300)
SMOKE_HELP = "tiny sizes: checks that the script runs (seconds); its numbers are not results"


def gp_type2(K, y, etas=ETA_GRID):
    """Profile type-II ML of ``N(y; 0, s (K + eta I))`` over ``eta``; ``s = q / n``."""
    lam, U = np.linalg.eigh(K)
    r2 = (U.T @ y) ** 2
    n = len(y)
    best = None
    for eta in etas:
        q = np.sum(r2 / (lam + eta))
        s = q / n
        ll = -0.5 * n * math.log(2 * math.pi * s) - 0.5 * np.sum(np.log(lam + eta)) - 0.5 * n
        if best is None or ll > best[0]:
            best = (ll, s, eta)
    return best[1], best[2]


def run_split(name, seed, n_is=1000, quick=False):
    x, y = synthetic(name)
    ((xtr, ytr), (xva, yva), (xte, yte)), sy = split(x, y, seed)
    out = {"log_sy": math.log(sy)}
    with jax.enable_x64(True):
        J = jnp.asarray
        K = np.asarray(kernel_fn(ARCH, J(xtr), get="nngp"))

        def cross(xs):
            return kernel_fn(ARCH, J(xs), J(xtr), get="nngp"), jnp.diag(
                kernel_fn(ARCH, J(xs), get="nngp")
            )

        (Kva, kdva), (Kte, kdte) = cross(xva), cross(xte)
        yte_, yva_ = J(yte)[:, None], J(yva)[:, None]

        s2, eta_gp = gp_type2(K, ytr)
        gp = nngp.gp.fit(K, J(ytr), eta_gp)
        out["NNGP"] = -float(jnp.mean(nngp.gp.predict(gp, Kte, kdte, s2).log_prob(yte_)))

        hp, _ = nngp.tp.fit_hyperparameters(K, J(ytr), num_steps=400, learning_rate=3e-2)
        a, b, eta = (float(hp[k]) for k in ("alpha", "beta", "eta"))
        tp = nngp.tp.predict(nngp.tp.fit(K, J(ytr), a, b, eta), Kte, kdte)
        out["Inverse Gamma"] = -float(jnp.mean(tp.log_prob(yte_)))
        out["alpha"] = a

        gp_t = nngp.gp.fit(K, J(ytr), eta)
        key = jax.random.key(seed)
        best = None
        grid = (
            ((1.0, 2.0), (1.0, 2.0), (1.0,))
            if quick
            else ((1.0, 2.0, 3.0),) * 2 + ((0.3, 1.0, 3.0),)
        )
        for c, d, f in itertools.product(*grid):
            post = nngp.mixtures.importance_posterior(
                gp_t, nngp.BurrXII(c, d, f * b / a), key, n_is
            )
            v = -float(jnp.mean(nngp.mixtures.predict(post, Kva, kdva).log_prob(yva_)))
            if best is None or v < best[0]:
                best = (v, post, (c, d, f))
        post = best[1]
        out["Burr XII"] = -float(jnp.mean(nngp.mixtures.predict(post, Kte, kdte).log_prob(yte_)))
        out["ess"] = float(post.ess)
        out["burr"] = best[2]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    add_blas_threads_argument(ap)
    args = ap.parse_args()
    limit_blas_threads(args)
    args.quick = args.quick or args.smoke
    splits = 1 if args.quick else args.splits
    names, n_is = (("A",), 100) if args.smoke else (("A", "B"), 1000)
    keys = ("NNGP", "Inverse Gamma", "Burr XII")
    print(f"splits={splits}; test NLL per point, mean +- sd over splits")
    print(
        "| data set | n_train | NNGP (std units) | IG (std units) | Burr (std units) |"
        " NNGP (orig.) | IG (orig.) | Burr (orig.) | fitted alpha | Burr IS ESS | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        t0 = time.perf_counter()
        rows = [run_split(name, s, n_is, quick=args.quick) for s in range(splits)]
        cells = []
        for shift in (False, True):
            for k in keys:
                v = np.array([r[k] + (r["log_sy"] if shift else 0.0) for r in rows])
                cells.append(f"{v.mean():.2f} +- {v.std():.2f}")
        alpha = np.median([r["alpha"] for r in rows])
        ess = np.mean([r["ess"] for r in rows])
        n = int(0.8 * len(synthetic(name)[0]))
        dt = time.perf_counter() - t0
        print(
            f"| Synthetic {name} | {n} | " + " | ".join(cells) + f" | {alpha:.3g} | {ess:.0f} |"
            f" {dt:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
