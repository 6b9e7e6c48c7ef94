"""Dense Hebbian networks on binarised sklearn digits and Fashion-MNIST.

Protocol: pixels binarised against their training-set mean (hb.images.pixel_thresholds: +1 where
brighter than usual; removes the shared background); classes are unknown archetypes; M random
training images per class are the examples; supervised and unsupervised networks with P in
{2, 4, 6}; test images, clean, noisy (20% of pixels flipped) and partial (last 30% of pixels,
the bottom rows, replaced by coin flips; hb.images.corrupt), are relaxed by zero-temperature
sequential dynamics (hb.relax_and_classify) and classified by the archetype estimate
sign(class mean) their final state overlaps most. The "raw" column is the same read-out on
the unrelaxed probe (no dynamics), the baseline the dynamics must be judged against. Prints
accuracy vs M and P; saves reconstructions as PNG.

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


SMOKE_HELP = "tiny sizes: checks that the script runs (seconds); its numbers are not results"
PROBES = {"clean": (0.0, 0.0), "noisy": (0.2, 0.0), "partial": (0.0, 0.3)}


def run(name, x_train, y_train, x_test, y_test, ms, orders, num_test, sweeps, seed=0):
    rows = []
    recon = {}
    y = y_test[:num_test]
    probes = {
        kind: hb.images.corrupt(jax.random.key(seed + 7), x_test[:num_test], flip, occ)
        for kind, (flip, occ) in PROBES.items()
    }
    for m in ms:
        eta = hb.images.class_examples(jax.random.key(seed + m), x_train, y_train, m)
        for kind, pr in probes.items():
            raw = float(np.mean(np.asarray(hb.images.nearest_archetype(eta, pr)) == y))
            for order in orders:
                for rule in ("supervised", "unsupervised"):
                    t = time.perf_counter()
                    pred, relaxed = hb.relax_and_classify(
                        jax.random.key(seed),
                        eta,
                        pr,
                        order,
                        rule,
                        num_sweeps=sweeps,
                        convention="all",  # the protocol of the reported tables
                    )
                    acc = float(np.mean(pred == y))
                    rows.append((name, kind, rule, order, m, raw, acc, time.perf_counter() - t))
                    print(
                        f"{name:8s} {kind:8s} {rule:12s} P={order} M={m:5d} raw={raw:.3f} "
                        f"relaxed={acc:.3f}",
                        flush=True,
                    )
                    recon[(kind, rule, order, m)] = relaxed[:8]
    return rows, recon, probes


def _figure(path, probes, recon, orders, m, side):
    """Rows: noisy probe, then the relaxed state for P = 2, 4, 6 (supervised)."""
    fig, axes = plt.subplots(1 + len(orders), 8, figsize=(8, 1.1 * (1 + len(orders))))
    for j in range(8):
        axes[0, j].imshow(probes["noisy"][j].reshape(side, side), cmap="gray")
        for i, order in enumerate(orders):
            img = recon[("noisy", "supervised", order, m)][j].reshape(side, side)
            axes[i + 1, j].imshow(img, cmap="gray")
    for a in axes.ravel():
        a.set_axis_off()
    fig.suptitle(f"noisy probe, then relaxed state (supervised, P = 2/4/6, M = {m})", fontsize=8)
    fig.savefig(path, dpi=70)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-fashion", action="store_true")
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP + " (no figures)")
    args = ap.parse_args()
    orders = (2, 4, 6)
    if args.smoke:
        args.quick, args.no_fashion, orders = True, True, (4,)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)

    img, lab = load_digits()
    perm = np.random.default_rng(0).permutation(len(lab))
    img, lab = img[perm], lab[perm]
    x = hb.binarize(img, hb.images.pixel_thresholds(img[:1300]))
    x_tr, y_tr, x_te, y_te = x[:1300], lab[:1300], x[1300:], lab[1300:]
    # --quick: one M per data set (each (rule, P, M) cell costs a compile, ~3 s CPU)
    ms = (100,) if args.quick else (5, 20, 100)
    num_test = 20 if args.smoke else 100 if args.quick else 497
    rows, recon_d, probes_d = run("digits", x_tr, y_tr, x_te, y_te, ms, orders, num_test, sweeps=5)
    if not args.smoke:
        _figure(os.path.join(HERE, "results", "hebbian_digits.png"), probes_d, recon_d, orders,
                ms[-1], 8)  # fmt: skip
    if not args.no_fashion:
        try:
            ftr, fytr = load_fashion_mnist("train")
            fte, fyte = load_fashion_mnist("test")
            thr = hb.images.pixel_thresholds(ftr)
            fx_tr, fx_te = hb.binarize(ftr, thr), hb.binarize(fte, thr)
            fms = (100,) if args.quick else (10, 100, 1000)
            nf = 50 if args.quick else 500
            r2, recon_f, probes_f = run(
                "fashion", fx_tr, fytr, fx_te, fyte, fms, orders, nf, sweeps=3
            )
            rows += r2
            _figure(os.path.join(HERE, "results", "hebbian_fashion.png"), probes_f, recon_f,
                    orders, fms[-1], 28)  # fmt: skip
        except FileNotFoundError as err:
            print("Fashion-MNIST skipped:", err)

    print("\n| data | probe | rule | P | M | raw read-out | relaxed | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]:.3f} | {r[6]:.3f} | "
              f"{r[7]:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
