"""Gaussian-likelihood classification of corrupted digits: NNGP vs Student-t process.

Lee et al. (ICLR 2022, reference note section 4.1 and 7) regress one-hot labels with the
NNGP and with its inverse-gamma scale mixture and test on corrupted inputs (MNIST-C). Here:
scikit-learn's 8x8 digits (embedded, no download), a seeded 1000 / 797 train / test split,
pixels scaled to [0, 1] and standardised with the training mean and sd; ReLU NNGP kernel (2
hidden layers, W_std 1.5, b_std 0.05, unit readout without bias); centred one-hot targets.
Test inputs are corrupted at increasing strength:

* ``noise s``: additive Gaussian pixel noise of sd ``s`` (pixels in [0, 1]), clipped to [0, 1];
* ``occlude k``: a random ``k x k`` square of pixels per image set to 0.

Models (the first and the last share ``eta``, hence the posterior mean and the accuracy):

* NNGP, ``sigma^2 = 1`` (unit readout variance; the paper's ``const`` model), ``eta`` from
  the t-process fit;
* NNGP, ``(sigma^2, eta)`` by type-II maximum likelihood on the training set;
* Student-t process, ``(alpha, beta, eta)`` by type-II ML on the training set
  (:func:`bayesnn.nngp.tp.fit_hyperparameters`).

NLL: the negative log predictive density of the whole (centred) one-hot vector of a test
point, averaged over test points (nats). For the t-process the ``C`` outputs of one point
share ``sigma^2``, so the joint is a multivariate t (not the product of the marginals):
``log MVT_nu(y; mu, s^2 I_C)`` with ``nu = 2 alpha + nC``.

    PYTHONPATH=. python benchmarks/nngp_corrupted.py [--quick] [--seeds 3]
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np
from _nngp_common import ARCH, add_blas_threads_argument, gp_type2, limit_blas_threads
from scipy.special import gammaln

from bayesnn import nngp
from bayesnn.datasets.images import load_digits
from bayesnn.nn.kernels import kernel_fn

C = 10
SMOKE_HELP = "tiny sizes: checks that the script runs (seconds); its numbers are not results"
LEVELS = (("clean", 0), ("noise", 0.25), ("noise", 0.5), ("noise", 1.0)) + tuple(
    ("occlude", k) for k in (2, 3, 4)
)


def corrupt(x, kind, level, rng):
    """Corrupt images ``x`` (m, 8, 8) in [0, 1]."""
    if kind == "clean":
        return x
    if kind == "noise":
        return np.clip(x + level * rng.standard_normal(x.shape), 0.0, 1.0)
    out = x.copy()
    r = rng.integers(0, 8 - level + 1, size=(len(x), 2))
    for i, (a, b) in enumerate(r):
        out[i, a : a + level, b : b + level] = 0.0
    return out


def gaussian_nll(y, loc, scale):
    z = (y - loc) / scale
    return np.sum(0.5 * z**2 + np.log(scale) + 0.5 * math.log(2 * math.pi), axis=-1)


def mvt_nll(y, loc, scale, df):
    """-log MVT_df(y; loc, diag(scale^2)) with one shared scale per row (scale[:, c] equal)."""
    c = y.shape[-1]
    r2 = np.sum(((y - loc) / scale) ** 2, axis=-1)
    return -(
        gammaln(0.5 * (df + c))
        - gammaln(0.5 * df)
        - 0.5 * c * np.log(df * math.pi)
        - np.sum(np.log(scale), axis=-1)
        - 0.5 * (df + c) * np.log1p(r2 / df)
    )


def run(seed, n_train, quick):
    images, labels = load_digits()
    images = images / 16.0
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(images))
    tr, te = idx[:n_train], idx[n_train:]
    mu, sd = images[tr].mean(), images[tr].std()

    def feats(x):
        return jnp.asarray(((x - mu) / sd).reshape(len(x), -1), jnp.float64)

    res = {}
    with jax.enable_x64(True):
        xtr = feats(images[tr])
        K = kernel_fn(ARCH, xtr, get="nngp")
        Y = nngp.classification.one_hot(jnp.asarray(labels[tr]), C)
        hp, _ = nngp.tp.fit_hyperparameters(K, Y, num_steps=300, learning_rate=3e-2)
        a, b, eta = (float(hp[k]) for k in ("alpha", "beta", "eta"))
        s2, eta_gp = gp_type2(np.asarray(K), np.asarray(Y), np.logspace(-7, 1, 160))
        gp_fixed = nngp.gp.fit(K, Y, eta)
        gp_ml = nngp.gp.fit(K, Y, eta_gp)
        tp = nngp.tp.fit(K, Y, a, b, eta)
        levels = LEVELS[::3] if quick else LEVELS
        for kind, level in levels:
            xte = feats(corrupt(images[te], kind, level, np.random.default_rng(100 + seed)))
            Kx = kernel_fn(ARCH, xte, xtr, get="nngp")
            kd = jnp.diag(kernel_fn(ARCH, xte, get="nngp"))
            yte = np.asarray(nngp.classification.one_hot(jnp.asarray(labels[te]), C))
            row = {}
            p = nngp.gp.predict(gp_fixed, Kx, kd, 1.0)
            row["acc"] = float(np.mean(np.argmax(np.asarray(p.mean), -1) == labels[te]))
            row["NNGP, sigma^2=1"] = gaussian_nll(yte, np.asarray(p.loc), np.asarray(p.scale))
            p = nngp.gp.predict(gp_ml, Kx, kd, s2)
            row["acc_ml"] = float(np.mean(np.argmax(np.asarray(p.mean), -1) == labels[te]))
            row["NNGP, type-II ML"] = gaussian_nll(yte, np.asarray(p.loc), np.asarray(p.scale))
            t = nngp.tp.predict(tp, Kx, kd)
            row["acc_t"] = float(np.mean(np.argmax(np.asarray(t.loc), -1) == labels[te]))
            df = float(np.asarray(t.df).reshape(-1)[0])
            row["Student-t process"] = mvt_nll(yte, np.asarray(t.loc), np.asarray(t.scale), df)
            for k in ("NNGP, sigma^2=1", "NNGP, type-II ML", "Student-t process"):
                row[k] = float(np.mean(row[k]))
            res[f"{kind} {level}" if kind != "clean" else "clean"] = row
    hyper = {"alpha": a, "beta": b, "eta": eta, "sigma2_ml": s2, "eta_ml": eta_gp}
    return res, hyper


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    add_blas_threads_argument(ap)
    args = ap.parse_args()
    limit_blas_threads(args)
    args.quick = args.quick or args.smoke
    seeds = 1 if args.quick else args.seeds
    n_train = 60 if args.smoke else 500 if args.quick else args.n_train
    runs = [run(s, n_train, args.quick) for s in range(seeds)]
    for i, (_, h) in enumerate(runs):
        print(f"seed {i}: " + ", ".join(f"{k}={v:.4g}" for k, v in h.items()))
    models = ("NNGP, sigma^2=1", "NNGP, type-II ML", "Student-t process")
    print(f"\n{seeds} seed(s), n_train={n_train}; mean +- sd over seeds")
    print(
        "| test inputs | accuracy (sigma^2=1 and t) | accuracy (ML) | "
        + " | ".join(f"NLL {m}" for m in models)
        + " |"
    )
    print("|---|---|---|" + "---|" * len(models))
    for level in runs[0][0]:
        rows = [r[level] for r, _ in runs]
        assert all(r["acc"] == r["acc_t"] for r in rows)  # same eta: same posterior mean
        cells = []
        for k in ("acc", "acc_ml"):
            acc = np.array([r[k] for r in rows])
            cells.append(f"{100 * acc.mean():.1f} +- {100 * acc.std():.1f}")
        for m in models:
            v = np.array([r[m] for r in rows])
            cells.append(f"{v.mean():.2f} +- {v.std():.2f}")
        print(f"| {level} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
