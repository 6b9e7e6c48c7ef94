"""Train and evaluate a fully connected monotone DBM on Fashion-MNIST (Debian's IDX files).

Protocol (the masked training of Feng, Winston and Kolter, TMLR 2023, scaled down for a CPU): pixels binned into
``--bins`` intensity states; one hidden layer of binary units; label not clamped; each
training image hides a fraction of its pixels drawn uniformly in ``--hide`` (default
[0, 0.9], so that one model classifies full images and completes sparse ones) and the step
minimises 0.5 completion loss on hidden pixels (class-balanced focal, gamma = ``--gamma``,
bin weights from the training pixels; gamma = 0 and ``--no-balance``: cross-entropy) + 0.5
label cross-entropy at the mean-field fixed point (Adam). Each row block of ``A`` is
projected onto ``||A_r||^2 <= --max-norm`` after every step (bounded conditioning). Forward:
Anderson on undamped mean field with mixing ``--mixing`` (<= ``--max-iter`` evaluations)
and the automatic Peaceman-Rachford fallback. Evaluation on held-out test images by fraction
of hidden pixels (0 = label only): label accuracy (inferred jointly), per-pixel bin accuracy,
class-balanced (mean per-bin recall) accuracy and MSE (bins scaled to [0, 1]) on the hidden
pixels, next to the per-pixel-mode baseline (each pixel's most frequent training bin) on the
same pixels. Saves PNGs (completions + conditional Gibbs samples; class-conditional Gibbs
samples) to benchmarks/results/mdbm_fashion*.png, the checkpoint and the metrics to
benchmarks/out/.

Usage: python benchmarks/mdbm_fashion.py [--quick] [--train 6000] [--hidden 128] [--epochs 2]
"""

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _mdbm_common import hidden_pixel_nll, pixel_marginals, with_marginal_bias

from bayesnn import boltzmann as bm
from bayesnn.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist

HERE = os.path.dirname(os.path.abspath(__file__))
SMOKE_HELP = "tiny sizes: checks that the script runs (seconds); its numbers are not results"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--train", type=int, default=6000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--bins", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=2e-2)
    ap.add_argument("--m", type=float, default=0.05)
    ap.add_argument("--alpha", type=float, default=1.0, help="FB damping inside Anderson")
    ap.add_argument("--tag", default="", help="suffix of the output file names")
    ap.add_argument("--max-iter", type=int, default=30, help="Anderson cap before fallback")
    ap.add_argument("--mixing", type=float, default=0.5, help="Anderson mixing beta")
    ap.add_argument("--memory", type=int, default=5, help="Anderson memory")
    ap.add_argument("--max-norm", type=float, default=30.0, help="cap on ||A^T A|| (0: none)")
    ap.add_argument("--hide", default="0,0.9", help="hidden fraction per example: lo,hi")
    ap.add_argument("--eval-only", action="store_true", help="load the checkpoint, evaluate")
    ap.add_argument(
        "--no-bias-init", action="store_true", help="zero pixel biases (default: log freq.)"
    )
    ap.add_argument("--bwd-maxiter", type=int, default=4, help="GMRES restarts (x 20)")
    ap.add_argument("--sweeps", type=int, default=100, help="Gibbs sweeps for the figures")
    ap.add_argument("--gamma", type=float, default=2.0, help="focal exponent")
    ap.add_argument("--no-balance", action="store_true", help="uniform bin weights")
    ap.add_argument(
        "--label-weight", type=float, default=0.5, help="loss = (1 - w) pixel + w label"
    )
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    if args.quick:
        args.train, args.test, args.hidden, args.epochs, args.sweeps = 300, 250, 16, 1, 10
    if args.smoke:  # writes only to benchmarks/out (as --quick)
        args.quick, args.tag = True, "_smoke"
        args.train, args.test, args.hidden, args.epochs, args.sweeps = 40, 20, 4, 1, 2
        args.batch, args.max_iter = 20, 20
    try:
        xtr, ytr = load_fashion_mnist("train")
    except FileNotFoundError as err:
        if not args.smoke:
            raise
        print(f"# smoke: {err}; nothing to run")
        return
    xte, yte = load_fashion_mnist("test")
    rng = np.random.default_rng(0)
    itr = rng.permutation(len(ytr))[: args.train]
    ite = rng.permutation(len(yte))[: args.test]
    ptr = np.asarray(bm.bin_images(xtr[itr], args.bins, 255.0))
    pte = np.asarray(bm.bin_images(xte[ite], args.bins, 255.0))
    ytr, yte = ytr[itr], yte[ite]
    spec = bm.fully_connected_spec(784, args.bins, args.hidden, 10)
    params = bm.init_params(jax.random.key(0), spec)
    marg, mode = pixel_marginals(ptr, args.bins)  # smoothed per-pixel bin marginals (training)
    if not args.no_bias_init:
        # the untrained model's mean-field completion is then the per-pixel marginal
        params = with_marginal_bias(params, marg)
    max_norm = args.max_norm if args.max_norm > 0 else None
    hide = tuple(float(x) for x in args.hide.split(","))
    hide = hide[0] if len(hide) == 1 else hide
    config = _solver_config(args)
    print(
        f"# Fashion-MNIST mDBM: 784 x {args.bins} bins, {args.hidden} x 2 hidden, label 10; "
        f"train {args.train}, test {args.test}, {args.epochs} epochs, batch {args.batch}, "
        f"Adam {args.lr}, m {args.m}, hidden fraction {hide} in training, "
        f"||A_r^T A_r|| cap {max_norm}, pixel bias init {not args.no_bias_init}, "
        f"focal gamma {args.gamma}, label weight {args.label_weight}, "
        f"balanced {not args.no_balance}, Anderson alpha {args.alpha} mixing {args.mixing} "
        f"memory {args.memory} (<= {args.max_iter} evaluations) + PR fallback (alpha 0.5), "
        f"GMRES backward {args.bwd_maxiter} x 20 (residual not enforced)",
        flush=True,
    )
    t0 = time.perf_counter()
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)  # git-ignored output folder
    ckpt = os.path.join(HERE, "out", f"mdbm_fashion{args.tag}.npz")
    if args.eval_only:
        log_scale = jnp.array([0.0, 0.0])
        like = bm.TrainState(
            params, log_scale, optax.adam(args.lr).init((params, log_scale)), jnp.array(0)
        )
        state, hist = bm.load_checkpoint(ckpt, like), []
    else:
        state, hist = _train(args, spec, params, ptr, ytr, config, hide, max_norm, ckpt, t0)
    train_s = time.perf_counter() - t0
    coupling = bm.monotone_coupling(state.params, spec, args.m, max_norm=max_norm)
    bm.check_monotone(coupling, spec, args.m)
    t0 = time.perf_counter()
    fracs = (0.0, 0.25, 0.5, 0.75)
    res = bm.evaluate(
        jax.random.key(2),
        coupling,
        spec,
        pte,
        yte,
        fracs,
        batch_size=250,
        config=config,
        on_failure="flag",
        baseline=mode,
    )
    eval_s = time.perf_counter() - t0
    mean = ptr.mean(0) / (args.bins - 1)
    base_acc = float(np.mean(pte == mode[None]))
    base_mse = float(np.mean((pte / (args.bins - 1) - mean[None]) ** 2))
    print(f"\ntrain time {train_s:.0f} s, eval time {eval_s:.0f} s")
    print(
        "| hidden fraction | label accuracy | pixel accuracy (hidden) | mode baseline | "
        "balanced pixel acc. | mode balanced | MSE (hidden) | mode baseline MSE | converged | "
        "fallback batches | max steps |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for f in fracs:
        r = res[f]
        if f == 0.0:
            print(
                f"| 0 (label only) | {r['accuracy']:.3f} | - | - | - | - | - | - | "
                f"{r['converged']:.2f} | {r['fallback']:.2f} | {r['max_steps']} |"
            )
            continue
        print(
            f"| {f} | {r['accuracy']:.3f} | {r['pixel_accuracy']:.3f} | "
            f"{r['baseline_pixel_accuracy']:.3f} | {r['balanced_pixel_accuracy']:.3f} | "
            f"{r['baseline_balanced_pixel_accuracy']:.3f} | {r['mse']:.4f} | "
            f"{r['baseline_mse']:.4f} | "
            f"{r['converged']:.2f} | {r['fallback']:.2f} | {r['max_steps']} |"
        )
    print(
        f"all test pixels: per-pixel mode bin accuracy {base_acc:.3f}; per-pixel "
        f"mean MSE {base_mse:.4f}"
    )
    # cross-entropy of the hidden pixels: model (with its learned loss temperature) vs the
    # per-pixel marginal of the training bins, the baseline a trained model should beat
    temp = float(np.exp(np.asarray(state.log_scale)[0]))
    print(f"\nhidden-pixel cross-entropy (nats; learned pixel temperature {temp:.3f}):")
    print("| hidden fraction | model CE | marginal CE |\n|---|---|---|")
    for f in (0.25, 0.5, 0.75, 1.0):
        ce_m, ce_b = _hidden_pixel_ce(coupling, spec, pte, f, config, temp, marg)
        print(f"| {f} | {ce_m:.3f} | {ce_b:.3f} |", flush=True)
    name = f"mdbm_fashion{args.tag}{'_eval' if args.eval_only else ''}.json"
    with open(os.path.join(HERE, "out", name), "w") as fh:
        json.dump(
            dict(
                args=vars(args),
                history=hist,
                eval=res,
                base_acc=base_acc,
                base_mse=base_mse,
                train_s=train_s,
            ),
            fh,
            indent=1,
        )
    _figure(coupling, spec, pte[:6], args)


def _train(args, spec, params, ptr, ytr, config, hide, max_norm, ckpt, t0):
    return bm.fit(
        jax.random.key(1),
        spec,
        params,
        ptr,
        ytr,
        num_epochs=args.epochs,
        batch_size=args.batch,
        optimizer=optax.adam(args.lr),
        training=bm.TrainingConfig(
            m=args.m,
            hidden_fraction=hide,
            focal_gamma=args.gamma,
            class_weights=None if args.no_balance else "balanced",
            max_norm=max_norm,
            label_weight=args.label_weight,
        ),
        config=config,
        on_failure="flag",
        checkpoint_path=ckpt,
        log_fn=lambda e, s: print(
            f"epoch {e} ({time.perf_counter() - t0:.0f} s): "
            + ", ".join(f"{k} {v:.4g}" for k, v in s.items()),
            flush=True,
        ),
    )


def _hidden_pixel_ce(coupling, spec, pix, hidden, config, temp, marg, batch=250):
    """Mean CE of the hidden pixels: ``softmax(temp * field)`` at the fixed point vs marginal."""
    mask = np.asarray(bm.random_masks(jax.random.key(3), pix.shape, hidden))
    solve = jax.jit(lambda c, e: bm.infer(c, spec, e, config=config)[0])
    tot_m = tot_b = n = 0.0
    for i in range(0, len(pix), batch):
        p, mk = pix[i : i + batch], mask[i : i + batch]
        q = solve(coupling, bm.make_evidence(spec, p, mk))
        m, b, k = hidden_pixel_nll(coupling, spec, p, mk, q, temp, marg)
        tot_m, tot_b, n = tot_m + m, tot_b + b, n + k
    return tot_m / n, tot_b / n


def _solver_config(args):
    """Anderson (mixing, memory, cap from the flags); GMRES backward without residual check."""
    return bm.SolverConfig(
        method="anderson",
        alpha=args.alpha,
        max_iter=args.max_iter,
        mixing=args.mixing,
        memory=args.memory,
        backward=bm.implicit.BackwardOptions(maxiter=args.bwd_maxiter, on_failure="ignore"),
    )


def _gibbs_pixels(key, coupling, spec, evidence, sweeps):
    """Pixel bins ``(1, chains, 784)`` after ``sweeps`` block-Gibbs sweeps, one chain per row."""
    trace, _ = bm.sample(
        key,
        coupling,
        spec,
        evidence.mask[0].shape[0],
        1,
        num_burnin=sweeps,
        evidence=evidence,
        transform=lambda s: jnp.argmax(s.units[0], -1),
    )
    return trace


def _figure(coupling, spec, pix, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, ns = pix.shape[0], 3
    mask = np.asarray(bm.random_masks(jax.random.key(5), pix.shape, 0.6))
    config = _solver_config(args)
    comp, _, _ = bm.complete(coupling, spec, pix, mask, config, on_failure="flag")
    rep = np.repeat(pix, ns, 0)
    ev = bm.make_evidence(spec, rep, np.repeat(mask, ns, 0))
    trace = _gibbs_pixels(jax.random.key(6), coupling, spec, ev, args.sweeps)
    samples = np.asarray(trace[:, 0]).reshape(n, ns, 784)
    cols = 3 + ns
    fig, ax = plt.subplots(n, cols, figsize=(cols * 1.1, n * 1.1))
    for i in range(n):
        masked = np.where(mask[i], pix[i], -1).reshape(28, 28)
        imgs = [pix[i].reshape(28, 28), masked, np.asarray(comp[i]).reshape(28, 28)]
        imgs += [samples[i, j].reshape(28, 28) for j in range(ns)]
        for j, im in enumerate(imgs):
            ax[i, j].imshow(im, cmap="gray", vmin=-1, vmax=args.bins - 1)
            ax[i, j].axis("off")
    for j, t in enumerate(["original", "observed 40%", "MF completion"] + ["Gibbs | obs."] * ns):
        ax[0, j].set_title(t, fontsize=7)
    fig.tight_layout()
    path = os.path.join(
        HERE,
        "results",
        f"mdbm_fashion{args.tag}.png" if not args.quick else "../out/mdbm_fashion_quick.png",
    )
    fig.savefig(path, dpi=60)
    print("saved", os.path.normpath(path))
    # class-conditional Gibbs samples: label clamped, no pixel observed
    nc, per = 10, 3
    lab = np.repeat(np.arange(nc), per)
    ev = bm.make_evidence(
        spec, np.zeros((nc * per, 784), int), np.zeros((nc * per, 784), bool), labels=lab
    )
    trace = _gibbs_pixels(jax.random.key(7), coupling, spec, ev, args.sweeps)
    samples = np.asarray(trace[:, 0]).reshape(nc, per, 28, 28)
    fig, ax = plt.subplots(per, nc, figsize=(nc * 0.9, per * 0.95))
    for c in range(nc):
        for j in range(per):
            ax[j, c].imshow(samples[c, j], cmap="gray", vmin=0, vmax=args.bins - 1)
            ax[j, c].axis("off")
        ax[0, c].set_title(FASHION_MNIST_CLASSES[c][:9], fontsize=6)
    fig.tight_layout()
    path = os.path.join(
        HERE,
        "results",
        f"mdbm_fashion_samples{args.tag}.png"
        if not args.quick
        else "../out/mdbm_fashion_samples_quick.png",
    )
    fig.savefig(path, dpi=60)
    print("saved", os.path.normpath(path))


if __name__ == "__main__":
    main()
