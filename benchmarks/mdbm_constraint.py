"""What the monotone constraint costs: mDBM vs the unconstrained mean-field DBM on digits.

Both models have the same architecture (``fully_connected_spec``: 64 pixels x k bins, H
binary hidden units, 10-way label), the same initialisation (pixel biases at the log bin
frequencies, i.e. the per-pixel marginals), data, masks, loss and optimiser; the only
difference is ``fit(..., monotone=False)``, which skips the rescaling that makes
:math:`I - W \\succeq m I`. Reported on held-out digits, per fraction of hidden pixels:
label accuracy, completion bin accuracy vs each pixel's most frequent training bin, and the
hidden-pixel cross-entropy vs the per-pixel marginal.

It also measures the bound behind the result. At a mean-field fixed point the
linear-response covariance of the free units is
:math:`\\chi = (\\Gamma^{-1} - W_{FF})^{-1}` on the tangent space, with
:math:`\\Gamma = \\operatorname{blockdiag}(\\operatorname{diag} q_i - q_i q_i^T)`. A one-hot
covariance has eigenvalues :math:`\\le 1/2`, so :math:`\\Gamma^{-1} \\succeq 2 I` there, and
:math:`W \\preceq (1 - m) I` gives :math:`\\chi \\preceq I / (1 + m)`: **whatever the
weights, a monotone DBM's mean-field covariance has no direction with variance above
1/(1+m)**, while a single independent pixel already has up to 1/2 and the one-hot pixel
covariance of real images has a top eigenvalue in the tens. The script prints the data's top
eigenvalue and each trained model's top eigenvalue of :math:`\\chi` over the free pixels.

    PYTHONPATH=. python benchmarks/mdbm_constraint.py --hidden 48 256 --epochs 20
    python benchmarks/mdbm_constraint.py --quick   # 16 hidden, 1 epoch
    python benchmarks/mdbm_constraint.py --smoke   # tiny: checks that the script runs
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _mdbm_common import hidden_pixel_nll, pixel_marginals, with_marginal_bias

from bayesnn import boltzmann as bm
from bayesnn.datasets import load_digits

FRACS = (0.0, 0.25, 0.5, 0.75)
SMOKE_HELP = "tiny sizes: checks that the script runs (seconds); its numbers are not results"


def _data(bins, num_train=1500, num_test=None):
    images, labels = load_digits()
    pixels = np.asarray(bm.bin_images(images, bins, 16.0))
    perm = np.random.default_rng(0).permutation(len(labels))
    tr, te = perm[:num_train], perm[1500:][:num_test]
    return pixels[tr], labels[tr], pixels[te], labels[te]


def onehot_cov_top(pixels, bins):
    """Top eigenvalue of the covariance of the one-hot encoded pixels."""
    x = np.eye(bins)[pixels].reshape(len(pixels), -1)
    return float(np.linalg.eigvalsh(np.cov(x, rowvar=False))[-1])


def susceptibility_top(coupling, spec, q, mask):
    """Top eigenvalues of ``bm.linear_response`` over the free pixels and over all free units."""
    free = (jnp.asarray(~mask),) + tuple(jnp.ones(lay.num_vars, bool) for lay in spec.layers[1:])
    chi = np.asarray(bm.linear_response(coupling, spec, q, free), np.float64)
    nvis = spec.layers[0].num_vars * spec.layers[0].num_states  # clamped rows are zero
    return float(np.linalg.eigvalsh(chi[:nvis, :nvis])[-1]), float(np.linalg.eigvalsh(chi)[-1])


def run(args, hidden, monotone, data, marg, mode):
    xtr, ytr, xte, yte = data
    bins = args.bins
    spec = bm.fully_connected_spec(64, bins, hidden, 10)
    params = with_marginal_bias(bm.init_params(jax.random.key(0), spec), marg)
    config = bm.SolverConfig(max_iter=args.max_iter, fallback=None)
    t0 = time.perf_counter()
    state, hist = bm.fit(
        jax.random.key(1),
        spec,
        params,
        xtr,
        ytr,
        num_epochs=args.epochs,
        batch_size=50,
        optimizer=optax.adam(args.lr),
        training=bm.TrainingConfig(m=args.m, hidden_fraction=(0.0, 0.9), monotone=monotone),
        config=config,
        on_failure="flag",
    )
    train_s = time.perf_counter() - t0
    if monotone:
        coupling = bm.monotone_coupling(state.params, spec, args.m)
    else:
        coupling = bm.unconstrained_coupling(state.params, spec)
    scale = float(jnp.exp(state.log_scale[0]))
    res = bm.evaluate(
        jax.random.key(2), coupling, spec, xte, yte, FRACS, len(yte), config, "flag", baseline=mode
    )
    rows = []
    for frac in FRACS[1:]:
        mask = np.asarray(bm.random_masks(jax.random.key(3), xte.shape, frac))
        _, q, info = bm.complete(coupling, spec, xte, mask, config, on_failure="flag")
        nll, marginal_nll, n = hidden_pixel_nll(coupling, spec, xte, mask, q, scale, marg)
        ce, mce = nll / n, marginal_nll / n
        chis = [
            susceptibility_top(coupling, spec, [x[i] for x in q], mask[i])
            for i in range(min(5, len(yte)))
        ]
        rows.append(
            (
                frac,
                ce,
                mce,
                float(np.mean([c[0] for c in chis])),
                float(np.max([c[1] for c in chis])),
            )
        )
    name = "monotone" if monotone else "unconstrained"
    conv = np.mean([h["converged"] for h in hist])
    print(
        f"\n## {name}, {hidden} hidden: train {train_s:.0f} s, training solves converged "
        f"{conv:.3f}, last-epoch loss {hist[-1]['loss']:.4f} pixel CE {hist[-1]['pixel_ce']:.4f} "
        f"label CE {hist[-1]['label_ce']:.4f}, pixel temperature {scale:.3f}",
        flush=True,
    )
    print(
        "| hidden | label acc. | pixel acc. | mode | balanced | mode bal. | CE (nats) | "
        "marginal CE | top chi (free pixels) | max top chi (all free) | converged |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for frac in FRACS:
        r = res[frac]
        extra = next((x for x in rows if x[0] == frac), None)
        cells = [f"{frac:g}", f"{r['accuracy']:.3f}"]
        if frac == 0.0:
            cells += ["-"] * 8
        else:
            cells += [
                f"{r['pixel_accuracy']:.3f}",
                f"{r['baseline_pixel_accuracy']:.3f}",
                f"{r['balanced_pixel_accuracy']:.3f}",
                f"{r['baseline_balanced_pixel_accuracy']:.3f}",
                f"{extra[1]:.3f}",
                f"{extra[2]:.3f}",
                f"{extra[3]:.3f}",
                f"{extra[4]:.3f}",
            ]
        cells.append(f"{r['converged']:.3f}")
        print("| " + " | ".join(cells) + " |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="16 hidden units, 1 epoch")
    ap.add_argument("--hidden", type=int, nargs="+", default=[48, 256])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--bins", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--m", type=float, default=0.05)
    ap.add_argument("--max-iter", type=int, default=100, help="Anderson evaluations")
    ap.add_argument("--only", choices=["monotone", "unconstrained"], default=None)
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    if args.quick:
        args.hidden, args.epochs = [16], 1
    if args.smoke:
        args.hidden, args.epochs, args.only, args.max_iter = [4], 1, "monotone", 20
    data = _data(args.bins, 100, 20) if args.smoke else _data(args.bins)
    xtr = data[0]
    marg, mode = pixel_marginals(xtr, args.bins)
    top = onehot_cov_top(xtr, args.bins)
    print(
        f"# digits, 64 pixels x {args.bins} bins, train {len(xtr)} / test {len(data[3])}, "
        f"{args.epochs} epochs of {len(xtr) // 50} steps (batch 50), Adam {args.lr}, m {args.m}, hidden fraction U[0, 0.9] per image, "
        f"CE + label CE (0.5 each), Anderson <= {args.max_iter}, no fallback.\n"
        f"# top eigenvalue of the training pixels' one-hot covariance: {top:.2f} "
        f"(monotone bound on the model's mean-field covariance: 1/(1+m) = {1 / (1 + args.m):.3f})"
    )
    for hidden in args.hidden:
        for monotone in (True, False):
            if args.only and args.only != ("monotone" if monotone else "unconstrained"):
                continue
            run(args, hidden, monotone, data, marg, mode)


if __name__ == "__main__":
    main()
