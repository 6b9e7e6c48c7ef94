"""Dense Hebbian networks on binarised sklearn digits and Fashion-MNIST.

Classes are unknown archetypes; M training images per class are the examples. Supervised and
unsupervised networks with P in {2, 4, 6}; test images are relaxed by zero-temperature
sequential dynamics (bayesnn.hebbian.relax_and_classify) and classified by the largest overlap
with the class means. Prints accuracy vs M and P; saves reconstructions under benchmarks/out/
and one summary PNG to benchmarks/results/hebbian_images.png.

    python benchmarks/hebbian_images.py [--quick] [--no-fashion]
"""

import argparse
import os
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bayesnn import hebbian as hb  # noqa: E402
from bayesnn.datasets import load_digits, load_fashion_mnist  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def run(name, x_train, y_train, x_test, y_test, ms, orders, num_test, sweeps, seed=0):
    rows = []
    recon = {}
    probes = x_test[:num_test]
    for m in ms:
        eta = hb.class_examples(x_train, y_train, m, jax.random.key(seed + m))
        for order in orders:
            for rule in ("supervised", "unsupervised"):
                t = time.perf_counter()
                pred, relaxed = hb.relax_and_classify(
                    jax.random.key(seed), eta, probes, order, rule, num_sweeps=sweeps
                )
                acc = float(np.mean(pred == y_test[:num_test]))
                rows.append((name, rule, order, m, acc, time.perf_counter() - t))
                print(f"{name:8s} {rule:12s} P={order} M={m:5d} acc={acc:.3f}", flush=True)
                recon[(rule, order, m)] = relaxed[:8]
    return rows, recon


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-fashion", action="store_true")
    args = ap.parse_args()
    orders = (2, 4, 6)
    out_dir = os.path.join(HERE, "out")
    os.makedirs(out_dir, exist_ok=True)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)

    img, lab = load_digits()
    x = hb.binarize(img, threshold=8.0)
    perm = np.random.default_rng(0).permutation(len(lab))
    x, lab = x[perm], lab[perm]
    x_tr, y_tr, x_te, y_te = x[:1300], lab[:1300], x[1300:], lab[1300:]
    # --quick: one M per data set (each (rule, P, M) cell costs a compile, ~3 s CPU)
    ms = (100,) if args.quick else (5, 20, 50, 100)
    rows, recon_d = run(
        "digits", x_tr, y_tr, x_te, y_te, ms, orders, 100 if args.quick else 497, sweeps=5
    )
    fashion = None
    if not args.no_fashion:
        try:
            ftr, fytr = load_fashion_mnist("train")
            fte, fyte = load_fashion_mnist("test")
            fx_tr, fx_te = hb.binarize(ftr, 127.5), hb.binarize(fte, 127.5)
            fms = (100,) if args.quick else (10, 100, 1000)
            r2, recon_f = run(
                "fashion",
                fx_tr,
                fytr,
                fx_te,
                fyte,
                fms,
                orders,
                50 if args.quick else 1000,
                sweeps=3,
            )
            rows += r2
            fashion = (fx_te, recon_f, fms)
        except FileNotFoundError as err:
            print("Fashion-MNIST skipped:", err)

    print("\n| data | rule | P | M | accuracy | seconds |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.3f} | {r[5]:.1f} |")

    # Reconstructions (full set under out/) and one summary figure.
    fig, axes = plt.subplots(1 + len(orders), 8, figsize=(8, 1.1 * (1 + len(orders))))
    for j in range(8):
        axes[0, j].imshow(x_te[j].reshape(8, 8), cmap="gray")
        for i, order in enumerate(orders):
            axes[i + 1, j].imshow(
                recon_d[("supervised", order, ms[-1])][j].reshape(8, 8), cmap="gray"
            )
    for a in axes.ravel():
        a.set_axis_off()
    fig.suptitle(
        f"digits: test image, then relaxed state (supervised, P = 2/4/6, M={ms[-1]})", fontsize=8
    )
    fig.savefig(os.path.join(out_dir, "hebbian_digits_reconstructions.png"), dpi=80)
    fig.savefig(os.path.join(HERE, "results", "hebbian_images.png"), dpi=60)
    if fashion is not None:
        fx_te, recon_f, fms = fashion
        fig, axes = plt.subplots(1 + len(orders), 8, figsize=(8, 1.1 * (1 + len(orders))))
        for j in range(8):
            axes[0, j].imshow(fx_te[j].reshape(28, 28), cmap="gray")
            for i, order in enumerate(orders):
                axes[i + 1, j].imshow(
                    recon_f[("supervised", order, fms[-1])][j].reshape(28, 28), cmap="gray"
                )
        for a in axes.ravel():
            a.set_axis_off()
        fig.savefig(os.path.join(out_dir, "hebbian_fashion_reconstructions.png"), dpi=80)


if __name__ == "__main__":
    main()
