"""CNN-GP classification of corrupted Fashion-MNIST: NNGP, Student-t, Burr XII, SVGP and SVTP.

The image protocol of Lee et al., "Scale Mixtures of Neural Network Gaussian Processes"
(ICLR 2022; reference note section 4) on Fashion-MNIST with MNIST-C corruptions
(:mod:`bayesnn.datasets.corruptions`, each at MNIST-C's severity): train on clean images,
test on the clean test set and on each corrupted copy of it. Pixels ``(x / 255 - 0.5) / 0.5``.

Kernel (``--arch conv``, default): three ``Conv(1, (3, 3), padding="SAME", W_std=1.5,
b_std=0.05)`` + ``Relu`` layers, ``Flatten``, ``Dense(1, 1.0)`` (unit readout: the
last-layer variance ``sigma^2`` is the quantity the scale mixtures integrate over); the paper
uses four such conv layers. ``--arch gap`` ends with ``GlobalAvgPool`` instead of
``Flatten`` (all pixel-pair covariances: use a few hundred images at most on a CPU);
``--arch dense`` is the MLP kernel of the other NNGP benchmarks on flattened pixels.

Models, all on the same kernel matrices:

* NNGP, fitted variance: Gaussian regression on centred one-hot labels, ``(sigma^2, eta)``
  by type-II maximum likelihood (the honest baseline: a t-process must beat this, not an
  NNGP with ``sigma^2 = 1``);
* Student-t process: ``sigma^2 ~ IG(alpha, beta)``, ``(alpha, beta, eta)`` by type-II ML
  (:func:`bayesnn.nngp.tp.fit_hyperparameters`); posterior ``IG(alpha + nC/2, beta + q/2)``;
* Burr XII: prior ``BurrXII(c=2, d=alpha/2, scale=beta/alpha)`` with the t-process's
  ``(alpha, beta, eta)``, posterior of ``sigma^2`` by importance sampling (1,000 draws);
* SVGP and SVTP: sparse variational GP / t-process with a softmax likelihood
  (:func:`bayesnn.nngp.svtp.fit`), 200 inducing images in class proportion, prior
  ``IG(2, 2)``, Adam; probabilities ``(1/S) sum_s softmax(f_s)`` with ``S = 1,000``.

Class probabilities of the three regression models: the probability that class ``c`` has
the largest predicted (noisy) one-hot output,

.. math::

    p_c = E_{\\sigma^2 \\mid \\mathcal D} \\int \\phi(z) \\prod_{j \\ne c}
    \\Phi\\Big(\\frac{\\mu_c - \\mu_j}{\\sigma s} + z\\Big) dz,

with ``mu`` the posterior mean and ``sigma^2 s^2`` the predictive variance of every output
of a test point (the outputs share the kernel, hence ``s``); the ``z`` integral by 64-node
Gauss-Hermite quadrature, the ``sigma^2`` expectation over 64 posterior quantiles (t-process)
or weighted importance draws (Burr XII). Metrics: accuracy, NLL ``-mean log p_y`` and ECE
(15 bins) of :mod:`bayesnn.metrics`.

The process pins itself to one core and reports wall and CPU time per stage.

    PYTHONPATH=. python benchmarks/cnngp_corrupted.py --smoke      # ~40 s CPU, mostly compiling
    PYTHONPATH=. python benchmarks/cnngp_corrupted.py --quick      # ~2 min CPU
    PYTHONPATH=. python benchmarks/cnngp_corrupted.py              # 2,000 / 1,000 images, ~15 min CPU
    # paper size (GPU): --n-train 54000 --n-test 10000 --inducing 200 --svtp-steps 20000
"""

from __future__ import annotations

from _pinning import pin_to_one_core  # noqa: E402

pin_to_one_core()  # before jax: XLA sizes its thread pool from the affinity mask

import argparse  # noqa: E402
import functools  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _nngp_common import ARCH, add_blas_threads_argument, gp_type2, limit_blas_threads  # noqa: E402

from bayesnn import metrics, nngp  # noqa: E402
from bayesnn.datasets import (  # noqa: E402
    MNIST_C_SEVERITY,
    load_corrupted_fashion_mnist,
    load_fashion_mnist,
)
from bayesnn.nn import stax  # noqa: E402
from bayesnn.nn.kernels import input_kernel, kernel_fn  # noqa: E402

C = 10
#: The corruptions of the scale-mixture paper's MNIST-C table.
PAPER_CORRUPTIONS = ("shot_noise", "impulse_noise", "glass_blur", "spatter", "zigzag")
EXTRA_CORRUPTIONS = ("motion_blur", "fog", "contrast", "dotted_line")
MODELS = ("NNGP (fitted sigma^2)", "Student-t process", "Burr XII", "SVGP", "SVTP")


def architecture(name: str):
    """The kernel's architecture (see the module docstring)."""
    if name == "dense":
        return ARCH

    def block():
        return [stax.Conv(1, (3, 3), padding="SAME", W_std=1.5, b_std=0.05), stax.Relu()]

    if name == "conv":
        return stax.serial(*block(), *block(), *block(), stax.Flatten(), stax.Dense(1, 1.0))
    if name == "gap":
        return stax.serial(*block(), *block(), *block(), stax.GlobalAvgPool(), stax.Dense(1, 1.0))
    raise ValueError(f"arch must be conv, gap or dense, got {name!r}")


def features(images, arch_name, dtype="float64"):
    x = (np.asarray(images, np.float64) / 255.0 - 0.5) / 0.5
    x = x.reshape(len(x), -1) if arch_name == "dense" else x[..., None]
    return jnp.asarray(x, dtype)


@functools.cache
def _variance_fn(arch, spatial):
    @jax.jit
    def run(xb):
        return arch.kernel(input_kernel(xb, xb[:1], compute_ntk=False, spatial=spatial)).var1

    return run


def variances(arch, x, block=256):
    """Exact ``K(x_i, x_i)`` without the ``n x n`` matrix: the recursion's ``var1``."""
    spatial = None
    if x.ndim == 4:
        need = getattr(arch, "spatial_need", None)
        spatial = "full" if need is None else need("full")
    run = _variance_fn(arch, spatial)
    out = [run(x[i : i + block]) for i in range(0, len(x) - len(x) % block, block)]
    if len(x) % block:
        out.append(run(x[len(x) - len(x) % block :]))
    return jnp.concatenate(out).reshape(len(x))


class Clock:
    """Wall and CPU seconds per stage."""

    def __init__(self):
        self.rows = []

    def __call__(self, name, fn, *args, **kw):
        w, c = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(fn(*args, **kw))
        self.rows.append((name, time.perf_counter() - w, time.process_time() - c))
        return out


_GH_T, _GH_W = np.polynomial.hermite_e.hermegauss(64)  # nodes/weights for N(0, 1)


@jax.jit
def argmax_probs(mean, sd, sigma, weights):
    """``P(argmax_c (mu_c + sigma sd eps_c) = c)``, averaged over ``sigma`` with ``weights``.

    ``mean`` ``(m, C)``, ``sd`` ``(m,)``, ``sigma`` ``(S,)``, ``weights`` ``(S,)`` summing to 1.
    """
    z = jnp.asarray(_GH_T, mean.dtype)
    logw = jnp.log(jnp.asarray(_GH_W / _GH_W.sum(), mean.dtype))
    diff = mean[:, :, None] - mean[:, None, :]  # (m, c, j)
    eye = jnp.eye(mean.shape[1], dtype=bool)

    def one(carry, sw):
        s, w = sw
        a = diff[..., None] / (s * sd[:, None, None, None]) + z  # (m, c, j, K)
        logphi = jnp.where(eye[None, :, :, None], 0.0, jax.scipy.special.log_ndtr(a))
        p = jnp.exp(jax.scipy.special.logsumexp(logw + logphi.sum(axis=2), axis=-1))
        return carry + w * p, None

    p, _ = jax.lax.scan(one, jnp.zeros_like(mean), (sigma, weights))
    return p / p.sum(axis=1, keepdims=True)


def weighted_quantiles(values, log_weights, num=64):
    """``num`` equally weighted representatives (quantile midpoints) of a weighted sample."""
    v, lw = np.asarray(values, np.float64), np.asarray(log_weights, np.float64)
    order = np.argsort(v)
    cdf = np.cumsum(np.exp(lw[order] - lw.max()))
    cdf /= cdf[-1]
    idx = np.searchsorted(cdf, (np.arange(num) + 0.5) / num)
    return v[order][np.minimum(idx, len(v) - 1)]


def scores(probs, labels):
    probs = jnp.asarray(probs, jnp.float64)
    labels = jnp.asarray(labels)
    return {
        "acc": float(metrics.accuracy(probs, labels)),
        "nll": float(metrics.categorical_nll(probs, labels)),
        "ece": float(metrics.expected_calibration_error(probs, labels)),
    }


def fit_models(K, labels, clock, cfg, rng_key):
    """Fit the five models on the training kernel ``K``; returns a predictor."""
    Y = nngp.classification.one_hot(jnp.asarray(labels), C)
    s2, eta_gp = clock("NNGP type-II ML (eigh + grid)", gp_type2, K, Y, np.logspace(-7, 1, 120))
    hp, _ = clock(
        "t-process type-II ML",
        nngp.tp.fit_hyperparameters,
        K,
        Y,
        num_steps=cfg.tp_steps,
        learning_rate=3e-2,
    )
    a, b, eta = (float(hp[k]) for k in ("alpha", "beta", "eta"))
    gp_ml = nngp.gp.fit(K, Y, eta_gp)
    gp_t = nngp.gp.fit(K, Y, eta)
    tp = nngp.tp.fit(K, Y, a, b, eta)
    ig = tp.scale_posterior()
    qs = (np.arange(64) + 0.5) / 64
    from scipy import stats  # only here: scipy's inverse-gamma quantiles

    sig_t = np.sqrt(stats.invgamma.ppf(qs, float(ig.concentration), scale=float(ig.rate)))
    k_is, k_svgp, k_svtp, k_z = jax.random.split(rng_key, 4)
    post = clock(
        "Burr XII importance sampling",
        nngp.mixtures.importance_posterior,
        gp_t,
        nngp.BurrXII(2.0, a / 2.0, b / a),
        k_is,
        1000,
    )
    sig_b = np.sqrt(weighted_quantiles(post.sigma2, post.log_weights))
    z_idx = np.asarray(nngp.svtp.inducing_points(k_z, labels, cfg.inducing))
    K32 = jnp.asarray(K, jnp.float32)
    kern = nngp.svtp.prepare_kernels(K32[z_idx][:, z_idx], K32[:, z_idx], jnp.diagonal(K32))
    sv = {}
    for name, model, key in (("SVGP", "gp", k_svgp), ("SVTP", "t", k_svtp)):
        params, losses = clock(
            f"{name} fit ({cfg.svtp_steps} Adam steps)",
            nngp.svtp.fit,
            kern,
            jnp.asarray(labels, jnp.int32),
            C,
            key,
            model=model,
            config=nngp.svtp.TrainConfig(
                num_steps=cfg.svtp_steps, batch_size=min(100, len(labels))
            ),
        )
        sv[name] = (params, model, float(np.mean(np.asarray(losses)[-50:])))
    hyper = {
        "sigma2_ml": float(s2),
        "eta_ml": float(eta_gp),
        "alpha": a,
        "beta": b,
        "eta_t": eta,
        "burr_ess": float(post.ess),
        "svgp_loss": sv["SVGP"][2],
        "svtp_loss": sv["SVTP"][2],
        "svtp_q_alpha": float(jnp.exp(sv["SVTP"][0].log_alpha)),
        "svtp_q_beta": float(jnp.exp(sv["SVTP"][0].log_beta)),
    }

    def predict(Kx, kd, key):
        out = {}
        p = nngp.gp.predict(gp_ml, Kx, kd, 1.0)
        sd = jnp.asarray(p.scale)[:, 0]
        out[MODELS[0]] = argmax_probs(
            jnp.asarray(p.mean), sd, jnp.full((1,), np.sqrt(s2)), jnp.ones(1)
        )
        p = nngp.gp.predict(gp_t, Kx, kd, 1.0)
        mean, sd = jnp.asarray(p.mean), jnp.asarray(p.scale)[:, 0]
        w = jnp.full((64,), 1 / 64)
        out[MODELS[1]] = argmax_probs(mean, sd, jnp.asarray(sig_t), w)
        out[MODELS[2]] = argmax_probs(mean, sd, jnp.asarray(sig_b), w)
        Kz = jnp.asarray(Kx, jnp.float32)[:, z_idx]
        for name, (params, model, _) in sv.items():
            out[name] = nngp.svtp.predict(
                params, kern.chol_zz, Kz, jnp.asarray(kd, jnp.float32), key, 1000, model
            )
        return out

    return predict, hyper


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    ap.add_argument("--quick", action="store_true", help="small sizes, minutes")
    ap.add_argument("--arch", default="conv", choices=("conv", "gap", "dense"))
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--inducing", type=int, default=200)
    ap.add_argument("--svtp-steps", type=int, default=3000)
    ap.add_argument("--tp-steps", type=int, default=300)
    ap.add_argument(
        "--all-corruptions", action="store_true", help="also " + ", ".join(EXTRA_CORRUPTIONS)
    )
    ap.add_argument(
        "--kernel-dtype",
        default="float64",
        choices=("float64", "float32"),
        help="dtype of the kernel computation (the models always run in float64); float32 "
        "is about 4x faster for --arch gap, at ~2e-7 relative kernel error",
    )
    ap.add_argument("--seed", type=int, default=0)
    add_blas_threads_argument(ap)
    cfg = ap.parse_args()
    if cfg.smoke:
        cfg.n_train, cfg.n_test, cfg.inducing, cfg.svtp_steps, cfg.tp_steps = 60, 30, 20, 50, 50
    elif cfg.quick:
        cfg.n_train, cfg.n_test, cfg.inducing, cfg.svtp_steps = 500, 300, 100, 1000
    limit_blas_threads(cfg)
    jax.config.update("jax_enable_x64", True)
    corruptions = ("identity",) + PAPER_CORRUPTIONS
    if cfg.all_corruptions:
        corruptions += EXTRA_CORRUPTIONS
    arch = architecture(cfg.arch)
    clock = Clock()

    images, labels = load_fashion_mnist("train")
    idx = np.random.default_rng(10).permutation(len(images))[: cfg.n_train]
    xtr, ytr = features(images[idx], cfg.arch, cfg.kernel_dtype), labels[idx]
    K = clock(f"K(train, train), n={cfg.n_train}", kernel_fn, arch, xtr, get="nngp")
    K = np.asarray(K, np.float64)
    predict, hyper = fit_models(K, ytr, clock, cfg, jax.random.key(cfg.seed))

    results = {}
    for name in corruptions:
        te, yte = load_corrupted_fashion_mnist(name, seed=cfg.seed, num=cfg.n_test)
        xte = features(te, cfg.arch, cfg.kernel_dtype)
        Kx = clock(f"K(test, train) {name}", kernel_fn, arch, xte, xtr, get="nngp")
        kd = clock(f"K(x, x) {name}", variances, arch, xte)
        Kx, kd = jnp.asarray(Kx, jnp.float64), jnp.asarray(kd, jnp.float64)
        probs = predict(Kx, kd, jax.random.key(100 + cfg.seed))
        results[name] = {m: scores(p, yte) for m, p in probs.items()}
        print(
            f"{name}: " + ", ".join(f"{m} {r['acc']:.3f}" for m, r in results[name].items()),
            flush=True,
        )

    print(f"\n## CNN-GP on corrupted Fashion-MNIST (arch {cfg.arch})\n")
    print(
        f"n_train={cfg.n_train}, n_test={cfg.n_test} per set, inducing={cfg.inducing}, "
        f"kernel in {cfg.kernel_dtype}, "
        f"SVGP/SVTP {cfg.svtp_steps} Adam steps; corruptions at MNIST-C's severity "
        + ", ".join(f"{c} {MNIST_C_SEVERITY[c]}" for c in corruptions[1:])
    )
    print("hyperparameters: " + ", ".join(f"{k}={v:.4g}" for k, v in hyper.items()))
    for metric, label in (("acc", "accuracy"), ("nll", "NLL"), ("ece", "ECE")):
        print(f"\n| {label} | " + " | ".join(MODELS) + " |")
        print("|---|" + "---|" * len(MODELS))
        for name in corruptions:
            row = results[name]
            cells = [
                f"{100 * row[m][metric]:.1f}" if metric == "acc" else f"{row[m][metric]:.3f}"
                for m in MODELS
            ]
            print(f"| {'clean' if name == 'identity' else name} | " + " | ".join(cells) + " |")
    print("\n| stage (one pinned core) | wall s | CPU s |\n|---|---|---|")
    for name, w, c in clock.rows:
        print(f"| {name} | {w:.1f} | {c:.1f} |")


if __name__ == "__main__":
    main()
