"""Bayesian CNN on Fashion-MNIST: SGHMC posterior against the MAP and a deep ensemble.

Protocol (reference note ``bayesian-cnn.md`` sections 1 and 5, sized for a CPU):

* data: Fashion-MNIST from the IDX files, pixels ``x / 255`` as NHWC ``(n, 28, 28, 1)``; a
  seeded random training subset, the first test images; the corrupted test sets are the
  same test images through every MNIST-C corruption of :mod:`bayesnn.datasets.corruptions`
  at one severity (``--severity``, default 3);
* network: ``Conv(c1, 3x3, SAME) + ReLU + AvgPool(2) -> Conv(c2, 3x3, SAME) + ReLU +
  AvgPool(2) -> Flatten -> Dense(10)``, NTK parameterisation (He scaling ``W_std = sqrt(2)``
  in the conv layers) with biases; ``(c1, c2) = (8, 16)`` in quick mode, the width rule's
  choice (below; ``--select-width`` reruns it, smoke mode runs it, ``--width c1,c2`` sets
  the width), ``(16, 32)`` in full mode;
* prior: isotropic ``N(0, s^2)`` on the (NTK-scaled) parameters of every layer, the same
  ``s`` for the posterior, the MAP and the ensemble; ``s = 5.0625`` in quick mode, the choice
  of the joint prior-scale and temperature rule below (which starts from the MAP's prior-scale
  rule's ``s = 2.25``), the same ``s`` in full mode (which has no validation images to
  choose one: it takes the quick mode's validated choice); ``--prior-scale`` fixes ``s``;
* posterior (``--sampler preconditioned``, the default): ``--chains`` chains of SGHMC
  (Chen, Fox and Guestrin, ICML 2014; :func:`samplers.sgmcmc.sghmc`) at temperature ``T``,
  all started at the MAP, with a frozen diagonal mass matrix (the sampler rule below), a
  position every ``--thin`` steps, the first ``--burnin`` steps dropped (quick mode: 1,300
  steps, burn-in 500, thinning 50: 4 x 16 = 64 draws; full mode: 23,400 steps (50 epochs),
  burn-in 4,200, thinning 1,200: 4 x 16 = 64 draws); ``T`` from the joint rule below (quick
  mode: 0.5; full mode: 1, and the quick mode's 0.5 for the cold run of the results file;
  ``--temperature`` sets it); ``--sampler cyclical`` runs
  cyclical SGHMC (Zhang et al., ICLR 2020) from draws of the initialiser: cosine step size
  from ``h_0 = sqrt(lr_0 / N)``, friction ``(1 - momentum) / h_0``, the first ``--explore``
  of each cycle without noise, the first cycle burn-in (the cyclical rows of the results file ran
  ``--sampler cyclical --prior-scale 1 --temperature 1 --steps 1200 --thin 15``);
* MAP: the same model (the prior is the weight decay), the maximiser of the log posterior,
  trained to convergence by a rule fixed before any test number was seen
  (:func:`bayesnn.baselines.train_map_to_convergence`): Adam, batch ``--batch-size``, the
  initial learning rate chosen by the MAP learning-rate rule below, the full-data training log posterior evaluated after every epoch; when an
  epoch improves its best value by less than ``--map-rtol`` (1e-4) of the total decrease so
  far (a share of the decrease, not of the value, so that the prior's normalising constant,
  which grows with ``s``, does not loosen the rule), the learning rate is divided by 10, at
  most twice; the third such plateau stops training; cap 150 epochs; the best position seen
  is the MAP;
* MAP learning rate, chosen on the training data alone (no validation data: the MAP is by
  definition the minimiser of the training objective ``U = -log p(theta | D) / N``): the MAP
  rule above is run from the same key at each initial learning rate of ``--map-lrs``
  (``3e-3, 1e-2, 3e-2, 1e-1`` in quick and full mode; 1e-1 alone in smoke mode, to keep it
  fast), and the run with the lowest best objective ``U*`` is the MAP. Why: with the NTK parameterisation Adam's per-parameter step
  is a step ``lr * sqrt(2 / fan_in)`` in the usual parameterisation, and at 3e-3 (a common fixed
  rate) the plateau rule stopped 0.27 nats per example short of the objective that 1e-1
  reaches: a slow optimiser's plateau, not the maximiser. Every MAP of a selection (width,
  prior scale) is trained by the same rule;
* deep ensemble: ``--members`` MAP networks with as many gradient evaluations in total as
  the sampler (``members * steps = chains * steps_per_chain``), Adam at ``--map-lr``
  (3e-3; the equal-cost rule, not the MAP learning-rate rule);
* validation: ``n_val`` further images of the training pool (not in the training subset,
  never used for training) for any choice that needs data and for the calibration
  diagnostics; none in full mode, which trains on all 60,000;
* metrics (:mod:`bayesnn.metrics`): accuracy, NLL, ECE (15 bins), Brier on the clean test
  images and the mean over the corrupted sets; the mean confidence against accuracy
  (over-confident when the confidence is larger) and the reliability diagram
  (:func:`bayesnn.metrics.calibration_bins`) of the posterior and MAP, on the validation and
  clean test images; with ``--per-chain``, on the validation images, the posterior
  predictive of each chain alone against that of all chains (does adding chains / modes move
  the calibration? a diagnostic, off by default to keep the run in budget); OOD AUROC
  of the predictive entropy against scikit-learn's 8x8 digits upsampled (x3, nearest) and
  zero-padded to 28x28 (handwritten digits are the usual Fashion-MNIST OOD set, MNIST, which
  is not shipped here; these are the closest offline substitute).

Network width, chosen on the validation split (the rule, fixed before any run with it). The
quick network underfits at every prior scale (training accuracy about the test accuracy, the
MAP under-confident on its own training images), so its capacity is the remaining lever. The
candidates, in this order, are ``(c1, c2) = (8, 16)`` and
``(16, 32)`` (the full mode's); for each, the MAP at ``s = 1`` is trained by the full MAP rule
below (cap 150 epochs, the same key), and the width whose MAP has the lower validation NLL is
the network of the posterior, the reported MAP (reused, not retrained) and the ensemble. The
prior scale is fixed at ``s = 1`` for this choice: the prior-scale rule below
chose ``s = 1`` at ``(8, 16)``, and with converged MAPs on the whole grid ``s = 1`` led by a
wide margin (validation NLL 0.522 against 0.546-0.554 for ``s`` = 1.5-5.06) while no wider
prior made the MAP fit its training data better; running the walk at the wider network as well
would cost one more MAP per grid value, which the 10-minute budget does not hold (it stays
available as ``--prior-scales``). One seed, the script's; no test image enters the choice.
The rule chose ``(8, 16)`` (validation NLL 0.522 against 0.531, MAPs at Adam 3e-3), and
``(8, 16)`` stays ahead with better-optimised MAPs (0.444 against 0.491 at Adam 3e-2); under
the MAP learning-rate rule the choice costs eight MAPs, which the 10-minute budget does not
hold, so quick mode runs it only with ``--select-width``.

Prior scale, empirical Bayes on the validation split (``--prior-scales``; smoke mode runs
it; quick mode runs its recorded choice). Rerun with MAPs at Adam 1e-1 (the learning rate
the MAP rule chose at ``s = 1``; MAPs at Adam 3e-3 stop on a plateau),
the walk gives validation NLL 0.4434 / 0.4087 / 0.3856 / 0.3955 at ``s = 1 / 1.5 / 2.25 /
3.375`` and stops: ``s = 2.25``. The prior's scale
sets the MAP's weight decay and the posterior's width together (with ReLU and the NTK
parameterisation, a scale ``s`` on every layer multiplies the prior's logits by about
``s^3``); it is chosen, from a grid ``s = 1.5^k`` (``k = 0, 1, 2, ...``:
``1, 1.5, 2.25, 3.375, 5.06``, ``--prior-scales``), as the one whose MAP has the lowest
validation NLL. The grid is walked upwards from ``s = 1`` and the walk stops at the first
value whose validation NLL is larger than its predecessor's (the NLL is expected to be
unimodal in ``s``; downwards is not tried, a narrower prior shrinks the logits further). Each
grid value's MAP is trained by the MAP rule below with the same key, only its epoch cap
lowered to ``select_epochs`` (30 in quick mode) to keep the selection cheap; the chosen
scale's MAP is reused as the reported MAP when it stopped by the rule within that cap
(deterministic training: it is then the MAP the full rule gives), and otherwise retrained
under the full rule. One seed, the script's; no test image enters the choice. Why these
choices:

* one scale for all layers, not the readout's alone: with ReLU and average pooling the
  network is positively homogeneous in each layer's weights (biases aside), so at the MAP
  the weight decay balances the layers' norms and a readout-only scale ``s_r`` gives about
  the MAP of an all-layer scale ``s_r^(1/3)``: the two families reach the same MAPs, while
  the all-layer scale keeps the prior isotropic, so the sampler's one step size and friction
  meet the same prior curvature ``1 / s^2`` in every direction;
* validation NLL of the MAP, not a type-II maximum likelihood fixed point such as
  ``s^2 = |theta_MAP|^2 / d``: that fixed point counts every parameter as determined by the
  data, and in an over-parameterised network the poorly determined ones sit near 0 at the
  MAP, which drives ``s`` down, the wrong way here; the proper MacKay update needs the
  Hessian's effective number of parameters (eigenvalues of the 9,098-parameter Hessian per
  iteration) and still scores the Laplace evidence, not the predictive the criterion
  measures. The validation NLL scores the predictive directly, and the MAP is the cheap
  proxy for the posterior (the scale moves both together).

Sampler rule (fixed from the sampler's theory and the training objective, before any
validation or test number of it was seen). Diagnosis of the cyclical sampler (``--probe``):
its draws sat on a slow descent of ``U = -log p(theta | D) / N`` (2.84, 2.68, 2.58 over the
kept cycles, against ``U* = 2.26`` at the MAP), and chains started at the MAP did not spread
(``U`` stayed at ``U*``): the posterior's curvatures span the prior's ``1 / s^2`` to a
largest Hessian eigenvalue of about 6,000 (:func:`samplers.sgmcmc.step_size.choose_step_size`
at the ``s = 1`` MAP), and the minibatch noise grows with the curvature (``V ~ (N / B) H``), so one
step size either leaves the prior-held directions frozen or heats the stiff ones. The fix is
a fixed diagonal mass: with ``P_i = 1 / s^2 + sum_n (d log p(y_n | x_n, theta) / d
theta_i)^2`` at the MAP (prior curvature plus empirical Fisher diagonal,
:meth:`samplers.sgmcmc.DiagonalMass.from_fisher`), SGHMC runs on ``z = P^{1/2} theta`` (a
fixed linear change of variables: the target is exact), where the prior-held and diagonally dominated directions
have curvature about 1 (the largest preconditioned eigenvalue, measured at the ``s = 2.25``
MAP, is about 300). In ``z``:

* friction ``alpha = 2``, the critical damping ``2 sqrt(k)`` of a unit curvature ``k = 1``;
* step ``h = 0.1 * 2 alpha B / N`` (0.0102 in quick mode): the minibatch noise inflates a
  posterior variance by ``h v / (2 alpha)`` (Chen et al.'s condition, the engine's
  :mod:`samplers.sgmcmc.step_size`), with ``v ~ (N / B) k``; this bounds it by 10% in the
  unit-curvature directions (the stiffest few directions, curvature up to ~300, are stable,
  ``h^2 k < 0.04``, but run hot);
* start at the MAP (the descent from a random start is what the cyclical sampler spent its
  budget on), burn-in 500 steps (about 5 time units, several relaxation times ``1 / sqrt(k)``
  of the unit-curvature directions); the probe (``--probe``) checks it: ``U`` per 200 steps
  flat after the burn-in, at about ``U* + T d / (2N)``, the mean of a Gaussian posterior at
  temperature ``T`` (measured at ``s = 2.25``: ``U`` 4.40 at ``T = 1`` against 4.49, 3.98 at
  ``T = 0.5`` against 4.03, 3.77 at ``T = 0.25`` against 3.80).

Temperature rule (the issue's temperature-tuned posterior, stated before the runs): the
sampler above at ``T = 1, 0.5, 0.25`` (``--select-temperature``; smoke mode ``1, 0.5``), the
lowest validation NLL of the posterior predictive wins. At ``s = 2.25`` in quick mode the
rule chose ``T = 0.25`` (validation NLL 0.3771 / 0.3713 / 0.3682; the MAP's 0.3856), so the
posterior at ``T = 1`` is better than the MAP on validation NLL but is under-confident
(validation ECE 0.031, mean confidence 0.836 at accuracy 0.861; the MAP's ECE 0.018), and
the cold posterior is less so. Quick mode runs the joint rule's recorded choice (below);
the rule costs three sampler runs, which the 10-minute budget does not hold.

Prior scale and temperature jointly (the quick mode's choice; fixed before its runs): the
MAP's validation NLL scores the prior through the MAP alone, while the prior also sets the
posterior's width, so the quick mode's ``(s, T)`` is the pair whose *posterior* predictive
has the lowest validation NLL. ``s`` walks the grid ``2.25, 3.375, 5.0625`` upwards from the
prior-scale rule's choice (stopping at the first ``s`` whose best validation NLL over ``T``
is above its predecessor's); at each ``s`` the MAP is retrained (Adam 1e-1, the MAP
learning-rate rule's choice at ``s = 2.25``) and the temperature rule runs. Rerun it with,
for each ``s``::

    PYTHONPATH=. python benchmarks/bayesian_cnn.py --quick --prior-scale S \
        --select-temperature --map-lrs 0.1

Validation NLL at ``T = 1 / 0.5 / 0.25``: ``s = 2.25``: 0.3709 / 0.3652 / 0.3635; ``s =
3.375``: 0.3666 / 0.3624 / 0.3623; ``s = 5.0625``: 0.3599 / **0.3583** / 0.3585: ``(s, T) =
(5.0625, 0.5)`` (the walk reached the grid's end still improving; the steps between
neighbouring ``s``, 0.001 and 0.004, are about the run-to-run spread of these numbers,
~0.005, so the choice is weakly determined). The wider prior needs a
less cold posterior (the temperature rule's choice moves from 0.25 to 0.5), as prior width
and temperature trade against each other here. The MAP, trained with the prior as its weight
decay, is then the MAP of this prior (the issue's baseline), not the MAP of its own best
prior (``s = 2.25``); the results file reports both.

The posterior predictive is the mean of the class probabilities over the kept draws,
accumulated draw by draw (:func:`bayesnn.baselines.mean_predictive_probs`).

    PYTHONPATH=. python benchmarks/bayesian_cnn.py --smoke   # seconds, tiny sizes
    PYTHONPATH=. python benchmarks/bayesian_cnn.py --quick   # 5,000 / 2,000 images, 4 chains
    PYTHONPATH=. python benchmarks/bayesian_cnn.py           # 60,000 / 10,000 images
    PYTHONPATH=. python benchmarks/bayesian_cnn.py --ensemble-only   # its deep ensemble alone

Not a speed benchmark (``bcnn_speed.py`` is): wall and CPU times are printed for information.
The last line is the fixed summary line.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from bayesnn import BayesianNeuralNet, likelihoods, metrics, nn, priors
from bayesnn.baselines import (
    deep_ensemble,
    full_data_objective,
    mean_predictive_probs,
    train_map_to_convergence,
)
from bayesnn.datasets import (
    CORRUPTIONS,
    load_corrupted_fashion_mnist,
    load_digits,
    load_fashion_mnist,
)
from samplers import sgmcmc

# The joint prior-scale and temperature rule's choice in quick mode (module docstring):
# validation NLL of the posterior predictive at T = 1 / 0.5 / 0.25: s = 2.25: 0.3709 /
# 0.3652 / 0.3635; s = 3.375: 0.3666 / 0.3624 / 0.3623; s = 5.0625: 0.3599 / 0.3583 / 0.3585.
PRIOR_SCALE_QUICK, TEMPERATURE_QUICK = 5.0625, 0.5

MODES = {
    # n_train, n_val (further training-pool images), n_test, the candidate widths (c1, c2)
    # (one: no selection), chains, steps per chain, cycles, members, corruptions, thinning,
    # MAP epoch cap, prior-scale grid and the MAP epoch cap while walking it (no grid: the
    # mode's prior scale), the MAP's candidate Adam learning rates; burn-in steps of the
    # preconditioned sampler, its temperature and the temperature rule's grid
    "smoke": dict(n_train=256, n_val=64, n_test=64, widths=((2, 4), (3, 6)), chains=2, steps=20,
                  cycles=2, members=0, corruptions=("shot_noise",), thin=2, map_epochs=3,
                  scales=(1.0, 1.5), select_epochs=3, map_lrs=(1e-1,), prior_scale=1.0,
                  burnin=10, temperature=1.0, temperatures=(1.0, 0.5)),
    "quick": dict(n_train=5000, n_val=1000, n_test=2000, widths=((8, 16), (16, 32)), chains=4,
                  steps=1300, cycles=4, members=4, corruptions=None, thin=50, map_epochs=150,
                  scales=(), select_epochs=30, map_lrs=(3e-3, 1e-2, 3e-2, 1e-1),
                  prior_scale=PRIOR_SCALE_QUICK, burnin=500, temperature=TEMPERATURE_QUICK,
                  temperatures=(1.0, 0.5, 0.25)),
    "full": dict(n_train=60000, n_val=0, n_test=10000, widths=((16, 32),), chains=4,
                 steps=23400, cycles=10, members=4, corruptions=None, thin=1200, map_epochs=150,
                 scales=(), select_epochs=0, map_lrs=(3e-3, 1e-2, 3e-2, 1e-1),
                 prior_scale=PRIOR_SCALE_QUICK,
                 burnin=4200, temperature=1.0, temperatures=()),
}  # fmt: skip


def cnn(c1: int, c2: int):
    he = float(np.sqrt(2.0))
    return nn.serial(
        nn.Conv(c1, (3, 3), padding="SAME", W_std=he, b_std=1.0),
        nn.Relu(),
        nn.AvgPool((2, 2), (2, 2)),
        nn.Conv(c2, (3, 3), padding="SAME", W_std=he, b_std=1.0),
        nn.Relu(),
        nn.AvgPool((2, 2), (2, 2)),
        nn.Flatten(),
        nn.Dense(10, b_std=1.0),
    )


def to_nhwc(images, max_value=255.0):
    return (np.asarray(images, np.float32) / max_value)[..., None]


def corrupted_test_sets(names, severity, seed, num):
    """``{name: (NHWC images, labels)}`` of the first ``num`` corrupted test images per set
    (``names`` empty or ``None``: every corruption but the identity)."""
    names = names or tuple(c for c in CORRUPTIONS if c != "identity")
    corrupted = {}
    for name in names:
        images, labels = load_corrupted_fashion_mnist(name, severity, seed=seed, num=num)
        corrupted[name] = (to_nhwc(images), labels)
    return corrupted


def ood_digits():
    """sklearn's digits, x3 nearest upsampling (24x24), zero-padded to 28x28, in [0, 1]."""
    images, _ = load_digits()
    big = np.repeat(np.repeat(images, 3, axis=1), 3, axis=2)
    return to_nhwc(np.pad(big, ((0, 0), (2, 2), (2, 2))), 16.0)


def evaluate(probs, labels):
    return {
        "conf": float(np.asarray(probs).max(-1).mean()),
        "acc": float(metrics.accuracy(probs, labels)),
        "nll": float(metrics.categorical_nll(probs, labels)),
        "ece": float(metrics.expected_calibration_error(probs, labels)),
        "brier": float(metrics.brier_score(probs, labels)),
    }


def print_reliability(name, probs, labels, num_bins=15):
    bins = metrics.calibration_bins(probs, labels, num_bins=num_bins)
    count, conf, acc = (np.asarray(a) for a in bins)
    rows = [
        f"({b / num_bins:.2f},{(b + 1) / num_bins:.2f}] n={count[b]} conf={conf[b]:.3f} "
        f"acc={acc[b]:.3f}"
        for b in range(num_bins)
        if count[b] > 0
    ]
    print(f"  reliability {name}: " + "; ".join(rows))


def make_model(arch, scale):
    return BayesianNeuralNet.create(
        arch,
        (28, 28, 1),
        lambda t: priors.IsotropicGaussian.create(t, scale),
        likelihoods.Categorical(),
    )


def train_map(map_key, model, train, map_kwargs, learning_rates):
    """The MAP learning-rate rule of the module docstring: the MAP rule
    (:func:`bayesnn.baselines.train_map_to_convergence`, same key) at every initial learning
    rate; the run with the lowest best training objective ``U*`` is the MAP."""
    fits = []
    for lr in learning_rates:
        fit = train_map_to_convergence(
            map_key, model, *train, **dict(map_kwargs, learning_rate=lr)
        )
        fits.append((float(np.min(np.asarray(fit.objective))), lr, fit))
        print(
            f"    MAP at Adam {lr:g}: {len(fit.learning_rates)} epochs (converged="
            f"{fit.converged}), U*={fits[-1][0]:.4f}",
            flush=True,
        )
    u, lr, fit = min(fits, key=lambda t: t[0])
    print(f"    MAP learning rate {lr:g} (lowest U*={u:.4f})", flush=True)
    return fit


def fit_and_score(name, model, train, val, map_key, map_kwargs, learning_rates):
    """Train ``model``'s MAP by the MAP rules and score it on the validation split; print
    its validation metrics and its confidence and accuracy on the first 2,000 training images
    (is the MAP under-confident on its own training data?). Returns ``(metrics, MAP)``."""
    fit = train_map(map_key, model, train, map_kwargs, learning_rates)
    position = jax.tree.map(lambda a: a[None], fit.position)
    m = evaluate(mean_predictive_probs(model, position, val[0], batch_size=500), val[1])
    probs_train = mean_predictive_probs(model, position, train[0][:2000], batch_size=500)
    mt = evaluate(probs_train, train[1][:2000])
    print(
        f"  {name}: MAP {len(fit.learning_rates)} epochs (converged={fit.converged}), "
        f"objective {float(np.min(np.asarray(fit.objective))):.4f}; validation "
        f"nll={m['nll']:.4f} conf={m['conf']:.4f} acc={m['acc']:.4f} ece={m['ece']:.4f}; "
        f"training conf={mt['conf']:.4f} acc={mt['acc']:.4f} nll={mt['nll']:.4f}; "
        f"|theta|^2={sum(float(jnp.sum(a**2)) for a in jax.tree.leaves(fit.position)):.0f}",
        flush=True,
    )
    return m, fit


def select_width(widths, scale, train, val, map_key, map_kwargs, learning_rates):
    """The width rule of the module docstring: every candidate ``(c1, c2)``'s MAP at prior
    scale ``scale`` (same key, the full MAP rule); the lowest validation NLL wins.

    Returns ``((c1, c2), MAP result)``."""
    tried = []
    for c1, c2 in widths:
        model = make_model(cnn(c1, c2), scale)
        name = f"width ({c1}, {c2}), s={scale:.4g}"
        m, fit = fit_and_score(name, model, train, val, map_key, map_kwargs, learning_rates)
        tried.append(((c1, c2), m["nll"], fit))
    width, _, fit = min(tried, key=lambda t: t[1])
    return width, fit


def select_prior_scale(
    arch, scales, train, val, map_key, map_kwargs, learning_rates, full_grid=False
):
    """The prior-scale rule of the module docstring: walk ``scales`` upwards, train each MAP
    (same key), stop at the first validation NLL above its predecessor's (``full_grid``: go
    on, for the diagnostic that checks the rule's unimodality assumption); the lowest NLL
    wins.

    Returns ``(scale, MAP result)``."""
    tried = []
    for scale in scales:
        model = make_model(arch, scale)
        name = f"prior scale {scale:.4g}"
        m, fit = fit_and_score(name, model, train, val, map_key, map_kwargs, learning_rates)
        tried.append((scale, m["nll"], fit))
        if not full_grid and len(tried) > 1 and m["nll"] > tried[-2][1]:
            break
    scale, _, fit = min(tried, key=lambda t: t[1])
    return scale, fit


def probe_objective(model, result, map_fit, x, y, cycle, thin, burn):
    """Diagnostic: the full-data objective ``U = -log p(theta | D) / N`` of every stored chain
    position (kept draws and exploration-phase positions), against the MAP's ``U*``.

    At temperature 1 a draw from a Gaussian posterior has ``E[U] = U* + d / (2N)`` (each of
    the ``d`` parameters adds 1/2 to ``-log p`` in expectation); fewer when the data leave
    directions at the prior (those add ``1/2`` in ``-log p`` but also start from the prior's
    own spread). Says in which basin the sampler sits: the weak MAP's or the better one's."""
    n = x.shape[0]
    objective = jax.jit(lambda pos: full_data_objective(model, pos, x, y, batch_size=1000))
    per_chain = jax.jit(lambda positions: jax.lax.map(objective, positions))
    u = np.stack(
        [
            np.asarray(per_chain(jax.tree.map(lambda a: a[c], result.positions)))
            for c in range(jax.tree.leaves(result.positions)[0].shape[0])
        ]
    )
    explore = np.asarray(result.info.explore)  # (chains, draws)
    keep = ~explore.any(axis=0)
    d = sum(int(np.prod(a.shape[2:])) for a in jax.tree.leaves(result.positions))
    u_map = float(np.min(np.asarray(map_fit.objective)))
    step = burn + thin * (1 + np.arange(u.shape[1]))  # step count at each stored draw
    cyc = (step - 1) // cycle
    print(f"  probe: d={d}, N={n}, d/(2N)={d / (2 * n):.3f}; MAP U*={u_map:.4f}", flush=True)
    print(
        f"  probe: kept draws U mean={u[:, keep].mean():.4f} (sd over draws "
        f"{u[:, keep].std():.4f}, min {u[:, keep].min():.4f}); per chain "
        + ", ".join(f"{v:.4f}" for v in u[:, keep].mean(axis=1)),
        flush=True,
    )
    for k in np.unique(cyc):
        ex, kp = (cyc == k) & explore.any(axis=0), (cyc == k) & keep
        last_ex = u[:, np.flatnonzero(ex)[-1]] if ex.any() else np.full(u.shape[0], np.nan)
        print(
            f"  probe: cycle {k + 1}: end of exploration U (per chain) "
            + ", ".join(f"{v:.4f}" for v in last_ex)
            + f"; sampling-phase U mean {u[:, kp].mean():.4f}",
            flush=True,
        )


def fisher_mass(model, map_position, x, y, prior_scale):
    """The frozen diagonal mass ``M = diag(precision)``, ``precision = 1 / s^2 + sum_n
    (d log p(y_n | x_n, theta) / d theta)^2`` at the MAP
    (:meth:`samplers.sgmcmc.DiagonalMass.from_fisher`, per-example gradients 500 examples at
    a time); prints the precision's quantiles. It depends on the MAP alone, so one mass serves
    every temperature."""
    mass = sgmcmc.DiagonalMass.from_fisher(
        lambda p, example: model.log_likelihood(p, (example[0][None], example[1][None]))[0],
        map_position,
        (x, y),
        1.0 / prior_scale**2,
    )
    flat = np.concatenate([np.ravel(np.asarray(v)) for v in jax.tree.leaves(mass.precision)])
    print(
        "  preconditioner: precision quantiles (0, 0.5, 0.9, 0.99, 1) "
        + ", ".join(f"{v:.3g}" for v in np.quantile(flat, [0, 0.5, 0.9, 0.99, 1])),
        flush=True,
    )
    return mass


def preconditioned_sghmc(
    rng_key, model, mass, map_position, x, y, *, chains, steps, thin, temperature, batch_size,
    friction, noise_tolerance, logdensity_z,
):  # fmt: skip
    """SGHMC from the MAP with the frozen diagonal mass ``mass`` (:func:`fisher_mass`), run
    as plain SGHMC on ``z = M^{1/2} theta`` (a linear change of variables, so the target is
    exact for any fixed ``M``): in ``z`` the prior-held and diagonally dominated directions
    have curvature about 1, so one friction and step serve them all (the module docstring
    gives the rule for ``alpha`` and ``h``).

    Every chain starts at the MAP with its own noise and minibatches; a position is stored
    every ``thin`` steps from the start (burn-in included, for the probe). ``logdensity_z`` is
    ``mass.logdensity(model.logdensity)``, built once by the caller so that runs at several
    temperatures share one compiled program. Returns
    ``(positions in theta with axes (chains, draws, ...), step of each stored draw, h)``."""
    h = noise_tolerance * 2.0 * friction * batch_size / x.shape[0]
    z0 = jax.tree.map(lambda z: jnp.broadcast_to(z, (chains, *z.shape)), mass.to_z(map_position))
    result = sgmcmc.sample(
        rng_key,
        sgmcmc.sghmc(alpha=friction),
        logdensity_z,
        model.check_data(x, y),
        z0,
        temperature=temperature,
        num_samples=steps // thin,
        thinning=thin,
        batch_size=batch_size,
        step_size=h,
        progress_bar=False,
    )
    return mass.from_z(result.positions), thin * (1 + np.arange(steps // thin)), h


def probe_draws(model, positions, stored_step, burn, map_fit, x, y, temperature, window=200):
    """Diagnostic of :func:`preconditioned_sghmc`: ``U = -log p(theta | D) / N`` of every
    stored position, its mean over the chains per ``window`` steps (flat after the burn-in
    when the chains are stationary), and the kept draws' mean against ``U* + T d / (2N)``,
    the mean of a Gaussian posterior at temperature ``T``."""
    n = x.shape[0]
    objective = jax.jit(lambda pos: full_data_objective(model, pos, x, y, batch_size=1000))
    per_chain = jax.jit(lambda ps: jax.lax.map(objective, ps))
    num_chains = jax.tree.leaves(positions)[0].shape[0]
    u = np.stack(
        [np.asarray(per_chain(jax.tree.map(lambda a: a[c], positions))) for c in range(num_chains)]
    )
    d = sum(int(np.prod(a.shape[2:])) for a in jax.tree.leaves(positions))
    u_map = float(np.min(np.asarray(map_fit.objective)))
    keep = stored_step > burn
    print(
        f"  probe: d={d}, N={n}, MAP U*={u_map:.4f}, U* + T d/(2N) = "
        f"{u_map + temperature * d / (2 * n):.4f}; kept draws U mean={u[:, keep].mean():.4f} "
        f"(sd over draws {u[:, keep].std():.4f}); per chain "
        + ", ".join(f"{v:.4f}" for v in u[:, keep].mean(axis=1)),
        flush=True,
    )
    block = (stored_step - 1) // window
    print(
        f"  probe: U mean over chains per {window} steps (burn-in {burn}): "
        + ", ".join(
            f"{window * b}-{window * (b + 1)}: {u[:, block == b].mean():.4f}"
            for b in np.unique(block)
        ),
        flush=True,
    )


def sample_cyclical(args, cfg, key, model, map_result, train, temperature):
    """The cyclical posterior (``--sampler cyclical``): cyclical SGHMC from draws of the
    initialiser (or the MAP, ``--init-from-map``), ``h_0 = sqrt(lr_0 / N)``, friction
    ``(1 - momentum) / h_0``, the first cycle burn-in. Returns ``(result, cycle, burn)``."""
    x_train, y_train = train
    steps, chains, cycles = cfg["steps"], cfg["chains"], cfg["cycles"]
    h0 = float(np.sqrt(args.lr / x_train.shape[0]))
    alpha = (1.0 - args.momentum) / h0
    schedule = sgmcmc.schedules.cyclical(h0, steps, cycles, exploration_ratio=args.explore)
    cycle = -(-steps // cycles)
    burn = cycle  # the first cycle is burn-in
    init = jax.vmap(model.init)(jax.random.split(jax.random.fold_in(key, 1), chains))
    if args.init_from_map:
        init = jax.tree.map(lambda a: jnp.broadcast_to(a, (chains, *a.shape)), map_result.position)
    result = model.sample(
        jax.random.fold_in(key, 2),
        sgmcmc.sghmc(alpha=alpha),
        x_train,
        y_train,
        init,
        temperature=temperature,
        num_samples=(steps - burn) // cfg["thin"],
        thinning=cfg["thin"],
        num_burnin=burn,
        batch_size=args.batch_size,
        step_size=schedule,
        progress_bar=False,
    )
    return result, cycle, burn


def sample_preconditioned(rng_key, args, cfg, model, map_result, train, val, prior_scale, temp):
    """The posterior of the module docstring (:func:`preconditioned_sghmc`) at temperature
    ``temp``, or, with ``--select-temperature``, at every temperature of the mode's grid,
    keeping the one whose posterior predictive has the lowest validation NLL (the
    temperature rule). Returns ``((positions, stored steps, kept mask), temperature)``."""

    mass = fisher_mass(model, map_result.position, *train, prior_scale)
    logdensity_z = mass.logdensity(model.logdensity)  # one program for every temperature

    def run_at(t):
        positions, stored, h = preconditioned_sghmc(
            rng_key, model, mass, map_result.position, *train, chains=cfg["chains"],
            steps=cfg["steps"], thin=cfg["thin"], temperature=t, batch_size=args.batch_size,
            friction=args.friction, noise_tolerance=args.noise_tolerance,
            logdensity_z=logdensity_z,
        )  # fmt: skip
        print(f"  T={t:g}: step size h={h:.5g} (in z), alpha={args.friction}", flush=True)
        return positions, stored, stored > cfg["burnin"]

    if not (args.select_temperature and val[0].shape[0] and cfg["temperatures"]):
        return run_at(temp), temp
    tried = []
    for t in cfg["temperatures"]:
        out = run_at(t)
        kept = jax.tree.map(lambda a, k=out[2]: a[:, k], out[0])
        m = evaluate(mean_predictive_probs(model, kept, val[0], batch_size=500), val[1])
        print(
            f"  temperature rule: T={t:g} validation nll={m['nll']:.4f} ece={m['ece']:.4f} "
            f"conf={m['conf']:.4f} acc={m['acc']:.4f}",
            flush=True,
        )
        tried.append((m["nll"], t, out))
    _, temp, out = min(tried, key=lambda c: c[0])
    print(f"  chosen temperature {temp:g}", flush=True)
    return out, temp


class Clock:
    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self, what):
        wall, cpu = time.perf_counter(), time.process_time()
        print(f"  [{what}: wall {wall - self.wall:.1f} s, CPU {cpu - self.cpu:.1f} s]", flush=True)
        self.wall, self.cpu = wall, cpu


def train_ensemble(args, cfg, key, model, x_train, y_train):
    """The deep ensemble's stacked member positions: ``members`` MAP networks with as many
    gradient evaluations in total as the sampler (``members * steps = chains * steps``)."""
    ens = deep_ensemble(
        jax.random.fold_in(key, 4),
        model,
        x_train,
        y_train,
        num_members=cfg["members"],
        num_steps=cfg["chains"] * cfg["steps"] // cfg["members"],
        batch_size=args.batch_size,
        learning_rate=args.map_lr,
    )
    return ens.position


def evaluate_methods(model, methods, sets, x_ood):
    """``{(method, set): metrics}`` and ``{(method, "ood_auroc"): AUROC}`` of each method's
    predictive (stacked positions) on every set of ``sets`` and the OOD images; prints the
    reliability diagrams of the non-ensemble methods on the validation and clean sets.

    Every set goes in one array, one compiled predictive per method (one compilation, not
    one per set: compiling dominated the evaluation of the smaller network)."""
    x_eval = np.concatenate([xs for xs, _ in sets.values()] + [x_ood])
    ends = np.cumsum([len(ys) for _, ys in sets.values()])
    table = {}
    for method, positions in methods.items():
        probs_all = np.asarray(mean_predictive_probs(model, positions, x_eval, batch_size=500))
        parts = dict(zip(sets, np.split(probs_all[: ends[-1]], ends[:-1]), strict=True))
        for set_name, (_, ys) in sets.items():
            table[method, set_name] = evaluate(parts[set_name], ys)
            if set_name in ("validation", "clean") and method != "ensemble":
                print_reliability(f"{method} {set_name}", parts[set_name], ys)
        table[method, "ood_auroc"] = float(
            metrics.ood_auroc(
                metrics.predictive_entropy(parts["clean"]),
                metrics.predictive_entropy(probs_all[ends[-1] :]),
            )
        )
    return table


def print_table(table, methods, sets, corrupted):
    """Print every method's metrics per set, the mean over the corrupted sets (added to
    ``table`` as ``(method, "corrupted")``) and the OOD AUROC."""
    print(
        f"\n{'method':<10} {'set':<14} {'conf':>6} {'acc':>6} {'nll':>7} {'ece':>7} {'brier':>7}"
    )
    for method in methods:
        for set_name in sets:
            m = table[method, set_name]
            print(
                f"{method:<10} {set_name:<14} {m['conf']:6.4f} {m['acc']:6.4f} {m['nll']:7.4f} "
                f"{m['ece']:7.4f} {m['brier']:7.4f}"
            )
        corr = {
            k: np.mean([table[method, s][k] for s in corrupted])
            for k in ("conf", "acc", "nll", "ece")
        }
        table[method, "corrupted"] = corr
        print(
            f"{method:<10} {'corrupted avg':<14} {corr['conf']:6.4f} {corr['acc']:6.4f} "
            f"{corr['nll']:7.4f} {corr['ece']:7.4f}"
        )
        print(f"{method:<10} OOD AUROC (entropy, digits): {table[method, 'ood_auroc']:.4f}")


def ensemble_only(args, cfg, key, model, x_train, y_train, x_test, y_test, corrupted, x_ood):
    """The deep ensemble of a run (same key, members and steps as in :func:`main`) and its
    metrics on the clean, corrupted and OOD images, without the MAP and the posterior."""
    clock = Clock()
    methods = {"ensemble": train_ensemble(args, cfg, key, model, x_train, y_train)}
    clock.lap(f"deep ensemble ({cfg['members']} members)")
    sets = {"clean": (x_test, y_test), **corrupted}
    table = evaluate_methods(model, methods, sets, x_ood)
    clock.lap("evaluation")
    print_table(table, methods, sets, corrupted)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    group.add_argument("--quick", action="store_true", help="5,000 train / 2,000 test images")
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="posterior T (default: the mode's, chosen by the temperature rule in quick mode)",
    )
    parser.add_argument(
        "--select-temperature",
        action="store_true",
        help="run the temperature rule (the preconditioned sampler at every T of the mode's "
        "grid; the lowest validation NLL wins)",
    )
    parser.add_argument(
        "--sampler",
        choices=("preconditioned", "cyclical"),
        default="preconditioned",
        help="preconditioned SGHMC from the MAP (default) or cyclical SGHMC (Zhang et al. 2020)",
    )
    parser.add_argument(
        "--friction", type=float, default=2.0, help="preconditioned sampler's alpha (2)"
    )
    parser.add_argument(
        "--noise-tolerance",
        type=float,
        default=0.1,
        help="preconditioned sampler: h = tol * 2 alpha B / N (0.1)",
    )
    parser.add_argument("--burnin", type=int, default=None, help="preconditioned burn-in steps")
    parser.add_argument("--width", type=str, default=None, help="c1,c2; skips the width selection")
    parser.add_argument(
        "--prior-scale",
        type=float,
        default=None,
        help="prior std; skips the prior-scale walk (default: the mode's; smoke: walked)",
    )
    parser.add_argument(
        "--prior-scales", type=str, default=None, help="comma-separated grid to select from"
    )
    parser.add_argument(
        "--select-epochs", type=int, default=None, help="MAP epoch cap while selecting"
    )
    parser.add_argument(
        "--full-grid",
        action="store_true",
        help="diagnostic: train every grid value's MAP (no early stop; the rule's choice is "
        "still the lowest validation NLL)",
    )
    parser.add_argument(
        "--select-only", action="store_true", help="diagnostic: stop after the selection"
    )
    parser.add_argument(
        "--ensemble-only",
        action="store_true",
        help="train and evaluate the deep ensemble alone (the run's other rows are unchanged "
        "by it; no summary line)",
    )
    parser.add_argument(
        "--per-chain",
        action="store_true",
        help="diagnostic: validation metrics of each chain's predictive alone",
    )
    parser.add_argument(
        "--select-width",
        action="store_true",
        help="run the width rule among the mode's candidate widths (smoke mode: always)",
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="diagnostic: full-data objective -log p(theta | D) / N of the stored chain "
        "positions against the MAP's",
    )
    parser.add_argument(
        "--init-from-map",
        action="store_true",
        help="diagnostic: start every chain at the MAP (default: draws of the initialiser)",
    )
    parser.add_argument("--lr", type=float, default=0.5, help="cyclical: lr_0 (0.5)")
    parser.add_argument(
        "--momentum", type=float, default=0.9, help="cyclical: 1 - alpha h_0 (0.9)"
    )
    parser.add_argument("--explore", type=float, default=0.7, help="cyclical: exploration")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--map-lrs", type=str, default=None, help="comma-separated MAP Adam learning rates"
    )
    parser.add_argument("--map-lr", type=float, default=3e-3, help="Adam lr of ensemble (3e-3)")
    parser.add_argument("--map-rtol", type=float, default=1e-4, help="MAP plateau (1e-4)")
    parser.add_argument("--severity", type=int, default=3, help="corruption severity (3)")
    parser.add_argument("--steps", type=int, default=None, help="steps per chain")
    parser.add_argument("--members", type=int, default=None, help="ensemble size (0: none)")
    parser.add_argument("--chains", type=int, default=None, help="chains")
    parser.add_argument("--cycles", type=int, default=None, help="cycles per chain")
    parser.add_argument("--thin", type=int, default=None, help="steps between draws")
    parser.add_argument(
        "--temperatures", type=str, default=None, help="comma-separated grid of the rule"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    cfg = dict(MODES[mode])
    if args.steps is not None:
        cfg["steps"] = args.steps
    for name in ("members", "chains", "cycles", "thin", "select_epochs", "burnin"):
        if getattr(args, name) is not None:
            cfg[name] = getattr(args, name)
    total_clock = Clock()
    clock = Clock()

    rng = np.random.default_rng(args.seed)
    x_all, y_all = load_fashion_mnist("train")
    perm = rng.permutation(x_all.shape[0])
    idx, val_idx = perm[: cfg["n_train"]], perm[cfg["n_train"] : cfg["n_train"] + cfg["n_val"]]
    x_train, y_train = to_nhwc(x_all[idx]), y_all[idx]
    x_val, y_val = to_nhwc(x_all[val_idx]), y_all[val_idx]
    x_te, y_test = load_fashion_mnist("test")
    x_test, y_test = to_nhwc(x_te[: cfg["n_test"]]), y_test[: cfg["n_test"]]
    corrupted = corrupted_test_sets(cfg["corruptions"], args.severity, args.seed, cfg["n_test"])
    x_ood = ood_digits()[: cfg["n_test"]]
    clock.lap("data")

    n = x_train.shape[0]
    key = jax.random.key(args.seed)
    map_kwargs = dict(
        batch_size=args.batch_size,
        rtol=args.map_rtol,
        num_decays=2,
        max_epochs=cfg["map_epochs"],
    )
    map_lrs = cfg["map_lrs"]
    if args.map_lrs is not None:
        map_lrs = tuple(float(v) for v in args.map_lrs.split(","))
    if args.prior_scales is not None:
        cfg["scales"] = tuple(float(v) for v in args.prior_scales.split(","))
    if args.temperatures is not None:
        cfg["temperatures"] = tuple(float(v) for v in args.temperatures.split(","))
    map_key = jax.random.fold_in(key, 3)
    train, val = (x_train, y_train), (x_val, y_val)
    # ---- width (validation NLL of the MAP at a fixed prior scale) ------------------------------
    map_result = None  # (prior scale, MAP) when a selection trained the run's MAP
    width_scale = cfg["prior_scale"] if args.prior_scale is None else args.prior_scale
    if args.width is not None:
        width = tuple(int(v) for v in args.width.split(","))
    elif len(cfg["widths"]) > 1 and x_val.shape[0] and (mode == "smoke" or args.select_width):
        width, fit = select_width(
            cfg["widths"], width_scale, train, val, map_key, map_kwargs, map_lrs
        )
        map_result = (width_scale, fit)
        print(f"  chosen width {width} (MAP reused)", flush=True)
        clock.lap("width selection")
    else:
        width = cfg["widths"][0]
    arch = cnn(*width)
    # ---- prior scale (empirical Bayes on validation; smoke mode or --prior-scales) -------------
    if args.prior_scale is not None or not cfg["scales"] or x_val.shape[0] == 0:
        prior_scale = width_scale
    else:
        select_kwargs = dict(map_kwargs, max_epochs=min(cfg["select_epochs"], cfg["map_epochs"]))
        prior_scale, fit = select_prior_scale(
            arch,
            cfg["scales"],
            train,
            val,
            map_key,
            select_kwargs,
            map_lrs,
            full_grid=args.full_grid,
        )
        reuse = fit.converged or select_kwargs["max_epochs"] == cfg["map_epochs"]
        print(f"  chosen prior scale {prior_scale:.4g} (MAP reused: {reuse})", flush=True)
        map_result = (prior_scale, fit) if reuse else None
        clock.lap("prior-scale selection")
    if args.select_only:
        return
    model = make_model(arch, prior_scale)
    if args.ensemble_only:
        ensemble_only(args, cfg, key, model, x_train, y_train, x_test, y_test, corrupted, x_ood)
        total_clock.lap("total")
        return
    map_result = map_result[1] if map_result and map_result[0] == prior_scale else None
    if map_result is None:
        map_result = train_map(map_key, model, train, map_kwargs, map_lrs)
        clock.lap("MAP")
    steps, chains, cycles = cfg["steps"], cfg["chains"], cfg["cycles"]
    temperature = cfg["temperature"] if args.temperature is None else args.temperature
    sampler = (
        f"sampler=preconditioned-sghmc alpha={args.friction} tol={args.noise_tolerance} "
        f"burnin={cfg['burnin']}"
        if args.sampler == "preconditioned"
        else f"sampler=cyclical-sghmc cycles={cycles} lr0={args.lr} momentum={args.momentum}"
    )
    print(
        f"mode={mode} train={n} test={x_test.shape[0]} cnn=({width[0]},{width[1]}) "
        f"chains={chains} steps/chain={steps} thin={cfg['thin']} T={temperature} "
        f"prior_scale={prior_scale:.4g} {sampler} batch={args.batch_size} "
        f"severity={args.severity}",
        flush=True,
    )

    # ---- posterior -----------------------------------------------------------------------------
    if args.sampler == "preconditioned":
        (positions, stored, keep), temperature = sample_preconditioned(
            jax.random.fold_in(key, 2), args, cfg, model, map_result, train, val, prior_scale,
            temperature,
        )  # fmt: skip
    else:
        result, cycle, burn = sample_cyclical(
            args, cfg, key, model, map_result, train, temperature
        )
        positions, keep = result.positions, ~np.asarray(result.info.explore).any(axis=0)
    draws = jax.tree.map(lambda a: jnp.asarray(a)[:, keep], positions)
    print(f"  posterior: {chains} chains x {int(keep.sum())} kept draws (T={temperature:g})")
    clock.lap("sampling")
    if args.probe and args.sampler == "preconditioned":
        probe_draws(model, positions, stored, cfg["burnin"], map_result, *train, temperature)
        clock.lap("probe")
    elif args.probe:
        probe_objective(model, result, map_result, x_train, y_train, cycle, cfg["thin"], burn)
        clock.lap("probe")

    # ---- baselines ------------------------------------------------------------------------------
    map_position = jax.tree.map(lambda a: a[None], map_result.position)
    epochs = len(map_result.learning_rates)
    objective = np.asarray(map_result.objective)
    print(
        f"  MAP: {epochs} epochs ({epochs * (n // args.batch_size)} Adam steps), converged="
        f"{map_result.converged}, -log posterior / N: {objective[0]:.4f} -> "
        f"{objective.min():.4f} (last epochs: "
        + ", ".join(f"{v:.4f}" for v in objective[-4:])
        + ")",
        flush=True,
    )
    ens_position = None
    if cfg["members"] > 0:
        ens_position = train_ensemble(args, cfg, key, model, x_train, y_train)
        clock.lap(f"deep ensemble ({cfg['members']} members)")

    # ---- evaluation -----------------------------------------------------------------------------
    methods = {"posterior": draws, "map": map_position}
    if ens_position is not None:
        methods["ensemble"] = ens_position
    sets = {"clean": (x_test, y_test), **corrupted}
    if x_val.shape[0]:
        sets = {"validation": (x_val, y_val), **sets}
    table = evaluate_methods(model, methods, sets, x_ood)
    if x_val.shape[0] and args.per_chain:
        for c in range(chains):
            one = jax.tree.map(lambda a: a[c], draws)
            m = evaluate(mean_predictive_probs(model, one, x_val, batch_size=500), y_val)
            print(
                f"  validation, chain {c} alone: conf={m['conf']:.4f} acc={m['acc']:.4f} "
                f"nll={m['nll']:.4f} ece={m['ece']:.4f}"
            )
    clock.lap("evaluation")
    print_table(table, methods, sets, corrupted)
    total_clock.lap("total")
    post, mp = table["posterior", "clean"], table["map", "clean"]
    cpost, cmap = table["posterior", "corrupted"], table["map", "corrupted"]
    print(
        f"bayesian-cnn: posterior acc={post['acc']:.4f} nll={post['nll']:.4f} "
        f"ece={post['ece']:.4f} | map acc={mp['acc']:.4f} nll={mp['nll']:.4f} "
        f"ece={mp['ece']:.4f} | corrupted posterior nll={cpost['nll']:.4f} "
        f"ece={cpost['ece']:.4f} | corrupted map nll={cmap['nll']:.4f} ece={cmap['ece']:.4f}"
    )


if __name__ == "__main__":
    main()
