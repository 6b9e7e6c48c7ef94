"""Functional prior for a Bayesian CNN: does a GP-matched prior remove the cold posterior?

Tran et al. (JMLR 2022) tune a network's weight prior so that its functions match a GP prior
(Wasserstein-1 matching on measurement sets) and report that with such a prior the Bayes
posterior (temperature 1) no longer needs tempering. Here, on a Fashion-MNIST subset with the
small CNN of ``bayesian_cnn.py`` (architecture and cyclical-SGHMC settings imported from it):

* GP target: an RBF kernel on the flattened pixels, ``k(x, x') = s^2 exp(-|x - x'|^2 / 2 l^2)``
  with ``s^2 = 1`` and ``l`` = the median distance between training images (the paper's
  UCI choice ``s^2 = 1``, ``l = sqrt(2 D)`` = the RMS distance of standardised inputs,
  carried to pixel space). Each of the 10 logits is matched to an independent GP with this
  kernel (one critic shared across logits; the paper's multi-output setting). Why not the
  CNN-GP of the same architecture: in the NTK parameterisation N(0, 1) weights already
  give that kernel (with the architecture's ``W_std``/``b_std``) up to finite width, so
  matching it returns N(0, 1), and any other choice of ``W_std``/``b_std`` is a hand-set
  prior scale that needs no Wasserstein fit; and with average pooling the CNN-GP needs all
  pixel-pair covariances (O((HW)^2) per image pair), too costly per measurement set here.
  The pixel RBF is a genuinely different function prior (smooth in pixel space, amplitude 1
  per logit) that the CNN family can only approach: the fit is a projection;
* priors tuned: layer-wise Gaussian (GPi-G) and hierarchical (GPi-H, inverse-gamma layer
  variances, sampled with their Gibbs block), ``fit_functional_prior`` with the critic W1
  estimator, measurement sets = minibatches of 16 training images, 32 functions per side, 100
  prior steps with RMSprop(0.1) (``lr * steps = 10``, the fit's documented budget);
* posteriors (cyclical SGHMC as in ``bayesian_cnn.py``): N(0, 1) at T = 1, 0.3, 0.1; GPi-G and
  GPi-H at T = 1; GPi-G at the cold temperature picked for N(0, 1). The cold temperature is
  the T of the grid with the lowest NLL on 500 held-out *training-pool* images (never the
  test set);
* metrics: accuracy, NLL, ECE (15 bins) on the first 1,000 test images and the mean over the
  MNIST-C corruptions of :mod:`bayesnn.datasets.corruptions` at severity 3 of the first 500
  test images (nine sets; 500 rather than 1,000 images per set halves the evaluation, the
  largest phase after sampling, and keeps every corruption; the corrupted mean is over
  4,500 images, the same for every prior);
* the independent-critic check of each fit (``evaluate_w1``) runs 200 critic steps, as many
  as the fit's own first critic, instead of 300.

    PYTHONPATH=. python benchmarks/bcnn_functional_prior.py --smoke   # seconds, tiny sizes
    PYTHONPATH=. python benchmarks/bcnn_functional_prior.py --quick   # 2,000 / 1,000 images

The run pins itself to one core (before importing jax) and prints wall and CPU times per
phase. Not a speed benchmark.
"""

from __future__ import annotations

import os

from _pinning import pin_to_one_core

pin_to_one_core()  # before jax: XLA sizes its thread pool from the affinity mask

import argparse  # noqa: E402
import sys  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bayesian_cnn import MODES as BCNN_MODES  # noqa: E402
from bayesian_cnn import Clock, cnn, corrupted_test_sets, evaluate, to_nhwc  # noqa: E402

from bayesnn import BayesianNeuralNet, likelihoods, priors  # noqa: E402
from bayesnn import functional_prior as fp  # noqa: E402
from bayesnn.baselines import mean_predictive_probs  # noqa: E402
from bayesnn.datasets import (  # noqa: E402
    load_fashion_mnist,
)
from bayesnn.gp import RBF, GPPrior  # noqa: E402
from samplers import sgmcmc  # noqa: E402

SHAPE = (28, 28, 1)
# Sampler settings of bayesian_cnn.py (its argparse defaults): lr_0, momentum, exploration
# ratio, batch size. Its quick mode: 1,200 steps per chain in 4 cycles, a draw every 15 steps.
LR0, MOMENTUM, EXPLORE, BATCH = 0.5, 0.9, 0.7, 128
MODES = {
    "smoke": dict(n_train=256, n_val=64, n_test=64, chains=2, steps=20, cycles=2, thin=2,
                  fit_steps=3, fit_functions=16, fit_points=8, critic_first=5, critic_steps=2,
                  eval_critic_steps=20, corruptions=("shot_noise",), n_corrupted=64,
                  temperatures=(1.0, 0.3),
                  c1=2, c2=4),
    "quick": dict(n_train=2000, n_val=500, n_test=1000, chains=2, steps=1200, cycles=4,
                  thin=20, fit_steps=100, fit_functions=32, fit_points=16, critic_first=200,
                  critic_steps=10, eval_critic_steps=200, corruptions=None, n_corrupted=500,
                  temperatures=(1.0, 0.3, 0.1),  # bayesian_cnn's quick network, (8, 16)
                  c1=BCNN_MODES["quick"]["widths"][0][0], c2=BCNN_MODES["quick"]["widths"][0][1]),
}  # fmt: skip


def sample_cyclical(model, rng_key, x, y, cfg, temperature):
    """``cfg["chains"]`` chains of cyclical SGHMC, as ``bayesian_cnn.py``; kept draws."""
    n, steps, chains = x.shape[0], cfg["steps"], cfg["chains"]
    h0 = float(np.sqrt(LR0 / n))
    schedule = sgmcmc.schedules.cyclical(h0, steps, cfg["cycles"], exploration_ratio=EXPLORE)
    burn = -(-steps // cfg["cycles"])  # the first cycle is burn-in
    init_key, run_key = jax.random.split(rng_key)
    init = jax.vmap(model.init)(jax.random.split(init_key, chains))
    result = model.sample(
        run_key,
        sgmcmc.sghmc(alpha=(1.0 - MOMENTUM) / h0),
        x,
        y,
        init,
        temperature=temperature,
        num_samples=(steps - burn) // cfg["thin"],
        thinning=cfg["thin"],
        num_burnin=burn,
        batch_size=BATCH,
        step_size=schedule,
        progress_bar=False,
    )
    keep = ~np.asarray(result.info.explore).any(axis=0)
    return jax.tree.map(lambda a: jnp.asarray(a)[:, keep], result.positions)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    group.add_argument("--quick", action="store_true", help="2,000 train / 1,000 test images")
    parser.add_argument("--severity", type=int, default=3, help="corruption severity (3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    mode = "smoke" if args.smoke else "quick"
    cfg = MODES[mode]
    total, clock = Clock(), Clock()
    key = jax.random.key(args.seed)

    # ---- data -----------------------------------------------------------------------------------
    rng = np.random.default_rng(args.seed)
    x_all, y_all = load_fashion_mnist("train")
    idx = rng.permutation(x_all.shape[0])
    tr, va = idx[: cfg["n_train"]], idx[cfg["n_train"] : cfg["n_train"] + cfg["n_val"]]
    x_train, y_train = to_nhwc(x_all[tr]), y_all[tr]
    x_val, y_val = to_nhwc(x_all[va]), y_all[va]
    x_te, y_te = load_fashion_mnist("test")
    x_test, y_test = to_nhwc(x_te[: cfg["n_test"]]), y_te[: cfg["n_test"]]
    corrupted = corrupted_test_sets(
        cfg["corruptions"], args.severity, args.seed, cfg["n_corrupted"]
    )
    clock.lap("data")

    arch = cnn(cfg["c1"], cfg["c2"])
    lengthscale = fp.median_distance(x_train)
    target = GPPrior(RBF(variance=1.0, lengthscale=lengthscale))
    print(
        f"mode={mode} train={x_train.shape[0]} val={x_val.shape[0]} test={x_test.shape[0]} "
        f"cnn=({cfg['c1']},{cfg['c2']}) chains={cfg['chains']} steps/chain={cfg['steps']} "
        f"cycles={cfg['cycles']} thin={cfg['thin']} severity={args.severity} "
        f"target=RBF(s2=1, l={lengthscale:.3f}) on pixels, independent per logit",
        flush=True,
    )

    # ---- tune the priors --------------------------------------------------------------------------
    estimator = fp.CriticW1(steps=cfg["critic_steps"], first_steps=cfg["critic_first"])
    tuned, fit_report = {}, {}
    x_eval = jnp.asarray(x_val[: cfg["fit_points"]])  # held-out measurement images for W1
    for i, family in enumerate(("gaussian", "hierarchical")):
        prior, hist = fp.fit_functional_prior(
            arch,
            target,
            fp.classification_minibatch(x_train, cfg["fit_points"]),
            jax.random.fold_in(key, 10 + i),
            family=family,
            steps=cfg["fit_steps"],
            num_functions=cfg["fit_functions"],
            estimator=estimator,
            prior_optimizer=optax.rmsprop(0.1),
            input_shape=SHAPE,
        )
        w1 = {}
        for when, theta in (("initial", hist.initial_theta), ("tuned", hist.theta)):
            est, se = fp.evaluate_w1(
                jax.random.fold_in(key, 20 + i),
                arch,
                hist.family,
                theta,
                target,
                x_eval,
                num_steps=cfg["eval_critic_steps"],
                num_samples=cfg["fit_functions"],
            )
            w1[when] = (float(est), float(se))
        tuned[family], fit_report[family] = prior, w1
        print(
            f"  {family}: held-out W1 (independent critic) initial {w1['initial'][0]:.3f} "
            f"+- {w1['initial'][1]:.3f} -> tuned {w1['tuned'][0]:.3f} +- {w1['tuned'][1]:.3f}",
            flush=True,
        )
        print(f"  {family} prior: {_describe(prior)}", flush=True)
        clock.lap(f"fit {family}")

    # ---- posteriors -------------------------------------------------------------------------------
    lik = likelihoods.Categorical()
    std_model = BayesianNeuralNet.create(
        arch, SHAPE, lambda t: priors.IsotropicGaussian.create(t, 1.0), lik
    )
    models = {
        "N(0,1)": std_model,
        "GPi-G": BayesianNeuralNet.create(arch, SHAPE, tuned["gaussian"], lik),
        "GPi-H": BayesianNeuralNet.create(arch, SHAPE, tuned["hierarchical"], lik),
    }
    draws, val_nll = {}, {}

    def run(prior_name, temperature, k):
        pos = sample_cyclical(
            models[prior_name], jax.random.fold_in(key, k), x_train, y_train, cfg, temperature
        )
        probs = mean_predictive_probs(models[prior_name], pos, x_val, batch_size=500)
        draws[prior_name, temperature] = pos
        val_nll[prior_name, temperature] = evaluate(probs, y_val)["nll"]
        clock.lap(
            f"sample {prior_name} T={temperature} (val NLL {val_nll[prior_name, temperature]:.4f})"
        )

    for j, t in enumerate(cfg["temperatures"]):
        run("N(0,1)", t, 100 + j)
    t_cold = min((t for t in cfg["temperatures"] if t < 1), key=lambda t: val_nll["N(0,1)", t])
    run("GPi-G", 1.0, 200)
    run("GPi-H", 1.0, 201)
    run("GPi-G", t_cold, 202)

    # ---- evaluation -------------------------------------------------------------------------------
    sets = {"clean": (x_test, y_test), **corrupted}
    rows = []
    for (prior_name, t), pos in draws.items():
        res = {s: evaluate(mean_predictive_probs(models[prior_name], pos, xs, batch_size=500), ys)
               for s, (xs, ys) in sets.items()}  # fmt: skip
        corr = {m: float(np.mean([res[s][m] for s in corrupted])) for m in ("acc", "nll", "ece")}
        rows.append((prior_name, t, val_nll[prior_name, t], res["clean"], corr))
    clock.lap("evaluation")

    n_draws = {k: int(jax.tree.leaves(v)[0].shape[1]) for k, v in draws.items()}
    print(f"\ncold T for N(0,1), chosen on validation NLL: {t_cold}")
    print(f"draws per chain: {sorted(set(n_draws.values()))}")
    print(
        "\n| prior | T | val NLL | acc | NLL | ECE | corrupted acc | corrupted NLL "
        "| corrupted ECE |\n|---|---|---|---|---|---|---|---|---|"
    )
    for prior_name, t, vnll, clean, corr in rows:
        print(
            f"| {prior_name} | {t:g} | {vnll:.4f} | {clean['acc']:.4f} | {clean['nll']:.4f} "
            f"| {clean['ece']:.4f} | {corr['acc']:.4f} | {corr['nll']:.4f} | {corr['ece']:.4f} |"
        )
    total.lap("total")
    by = {(p, t): (c, k) for p, t, _, c, k in rows}
    s1, sc, g1 = by["N(0,1)", 1.0], by["N(0,1)", t_cold], by["GPi-G", 1.0]
    print(
        f"bcnn-functional-prior: N(0,1) T=1 nll={s1[0]['nll']:.4f} | N(0,1) T={t_cold:g} "
        f"nll={sc[0]['nll']:.4f} | GPi-G T=1 nll={g1[0]['nll']:.4f} | corrupted "
        f"{s1[1]['nll']:.4f} / {sc[1]['nll']:.4f} / {g1[1]['nll']:.4f}"
    )


def _describe(prior):
    """Per-layer scales of a tuned prior, one line."""
    if isinstance(prior, priors.LayerwiseGaussian):
        return ", ".join(
            f"{k}: W {float(prior.weight_scales[k]):.3f} b {float(prior.bias_scales[k]):.3f}"
            for k in prior.weight_scales
        )
    return ", ".join(
        f"{k}.{n}: InvGamma({float(prior.concentration[k][n]):.2f}, {float(prior.rate[k][n]):.2f})"
        for k in prior.concentration
        for n in prior.concentration[k]
    )


if __name__ == "__main__":
    main()
