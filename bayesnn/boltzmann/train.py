"""Training a monotone DBM for joint completion and classification (masked empirical risk).

As in the reference: each image gets a random mask hiding a fraction of its pixels; the
mean-field fixed point given the observed pixels (label not clamped) is computed, and the loss
is the cross-entropy of the hidden pixels' bins plus the label's cross-entropy, both from the
fixed-point logits :math:`W q^* + b`,

.. math::

    L = (1 - w) \\frac{1}{|H|} \\sum_{i \\in H} -\\log \\operatorname{softmax}(W q^* + b)_{i,
    x_i} + w \\, (-\\log \\operatorname{softmax}(W q^* + b)_{\\text{label}, y}),

differentiated implicitly (:mod:`bayesnn.boltzmann.implicit`). **This is empirical-risk
training of an approximate-inference procedure, not maximum likelihood**: no negative phase,
no partition function (compare Domke 2013, Stoyanov et al. 2011). The reference uses a
class-balanced focal loss for pixels; plain cross-entropy is used here.

References: Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023;
Goodfellow et al., "Multi-prediction deep Boltzmann machines", NeurIPS 2013.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bayesnn.boltzmann.model import DEFAULT_CONFIG, complete, field, infer, make_evidence
from bayesnn.boltzmann.parameterization import MDBMParams, monotone_coupling
from bayesnn.boltzmann.solver import ConvergenceError

__all__ = [
    "TrainState",
    "random_masks",
    "masked_loss",
    "make_train_step",
    "fit",
    "evaluate",
    "save_checkpoint",
    "load_checkpoint",
]


class TrainState(NamedTuple):
    """Parameters, learned logit scales, optimiser state and step counter.

    ``log_scale`` holds the logs of the (pixel, label) loss temperatures: the loss uses
    logits ``exp(log_scale) * (W q* + b)`` (the reference's ``tau^2`` and ``clftau^2``,
    initialised here to 1 and 3; the reference uses 10 and 1); they do not enter the
    fixed point.
    """

    params: MDBMParams
    log_scale: jax.Array
    opt_state: optax.OptState
    step: jax.Array


def _init_log_scale():
    return jnp.array([0.0, jnp.log(3.0)])


def random_masks(rng_key, shape, hidden_fraction):
    """Bernoulli masks: True (observed) with probability ``1 - hidden_fraction``.

    References
    ----------
    Feng, Winston and Kolter, TMLR 2023 (60% hidden in the reference).
    """
    if not 0.0 <= hidden_fraction <= 1.0:
        raise ValueError(f"hidden_fraction must be in [0, 1], got {hidden_fraction}")
    return jax.random.bernoulli(rng_key, 1.0 - hidden_fraction, shape)


def masked_loss(
    trainable, spec, pixels, labels, mask, m=0.01, label_weight=0.5, config=DEFAULT_CONFIG
):
    """Completion + label cross-entropy at the mean-field fixed point (see module docstring).

    Parameters
    ----------
    trainable : (MDBMParams, array (2,))
        Parameters and log loss temperatures (pixel, label); see :class:`TrainState`.
    spec : MDBMSpec
    pixels : int array (batch, n_visible)
    labels : int array (batch,)
    mask : bool array (batch, n_visible)
        True where observed (clamped).
    m : float
        Monotonicity margin.
    label_weight : float in [0, 1]
    config : SolverConfig

    Returns
    -------
    loss : scalar
    aux : dict
        ``pixel_ce``, ``label_ce``, ``accuracy``, ``converged`` (fraction), ``num_steps``,
        ``residual`` (max).

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    params, log_scale = trainable
    scale = jnp.exp(log_scale)
    coupling = monotone_coupling(params, spec, m)
    ev = make_evidence(spec, pixels, mask)
    q, info = infer(coupling, spec, ev, config=config)
    logits = field(coupling, spec, q)
    logp_vis = jax.nn.log_softmax(scale[0] * logits[0], axis=-1)
    nll_vis = -jnp.take_along_axis(logp_vis, pixels[..., None], axis=-1)[..., 0]
    hidden = 1.0 - mask.astype(logp_vis.dtype)
    pixel_ce = jnp.sum(nll_vis * hidden) / jnp.maximum(jnp.sum(hidden), 1.0)
    logp_lab = jax.nn.log_softmax(scale[1] * logits[-1][:, 0], axis=-1)
    label_ce = -jnp.mean(jnp.take_along_axis(logp_lab, labels[:, None], axis=-1))
    loss = (1.0 - label_weight) * pixel_ce + label_weight * label_ce
    aux = dict(
        pixel_ce=pixel_ce,
        label_ce=label_ce,
        accuracy=jnp.mean(jnp.argmax(logp_lab, -1) == labels),
        converged=jnp.mean(info.converged),
        num_steps=info.num_steps,
        residual=jnp.max(info.residual),
    )
    return loss, aux


def make_train_step(
    spec, optimizer, m=0.01, hidden_fraction=0.6, label_weight=0.5, config=DEFAULT_CONFIG
):
    """Jitted ``step(state, rng_key, pixels, labels) -> (state, metrics)``.

    A fresh random mask hiding ``hidden_fraction`` of the pixels is drawn per step.

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """

    @jax.jit
    def step(state, rng_key, pixels, labels):
        mask = random_masks(rng_key, pixels.shape, hidden_fraction)
        trainable = (state.params, state.log_scale)
        (loss, aux), grads = jax.value_and_grad(masked_loss, has_aux=True)(
            trainable, spec, pixels, labels, mask, m, label_weight, config
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, trainable)
        params, log_scale = optax.apply_updates(trainable, updates)
        gnorm = optax.tree.norm(grads)
        new = TrainState(params, log_scale, opt_state, state.step + 1)
        return new, dict(aux, loss=loss, grad_norm=gnorm)

    return step


def save_checkpoint(path, state):
    """Save a pytree of arrays to ``path`` (``.npz``, no pickle).

    References
    ----------
    numpy ``savez``.
    """
    leaves = jax.tree_util.tree_leaves(state)
    np.savez(path, *[np.asarray(x) for x in leaves])


def load_checkpoint(path, like):
    """Load a pytree saved by :func:`save_checkpoint` with the structure of ``like``.

    References
    ----------
    numpy ``load``.
    """
    treedef = jax.tree_util.tree_structure(like)
    with np.load(path) as f:
        leaves = [jnp.asarray(f[f"arr_{i}"]) for i in range(len(f.files))]
    if len(leaves) != treedef.num_leaves:
        raise ValueError(f"checkpoint {path} does not match the given structure")
    return jax.tree_util.tree_unflatten(treedef, leaves)


def fit(
    rng_key,
    spec,
    params,
    pixels,
    labels,
    num_epochs=1,
    batch_size=128,
    optimizer=None,
    m=0.01,
    hidden_fraction=0.6,
    label_weight=0.5,
    config=DEFAULT_CONFIG,
    checkpoint_path=None,
    state=None,
    on_failure="raise",
    log_fn=None,
):
    """Minibatch training loop (host loop over jitted steps).

    Parameters
    ----------
    rng_key : PRNGKey
    spec : MDBMSpec
    params : MDBMParams
    pixels : int array (n, n_visible)
    labels : int array (n,)
    num_epochs, batch_size : int
        The last incomplete batch of each epoch is dropped (fixed shapes, one compile).
    optimizer : optax.GradientTransformation, optional
        Default ``optax.adam(1e-3)`` (the reference's choice).
    m, hidden_fraction, label_weight, config
        See :func:`masked_loss`.
    checkpoint_path : str, optional
        Saved (``.npz``) after every epoch.
    state : TrainState, optional
        Resume from this state (e.g. :func:`load_checkpoint`).
    on_failure : {"raise", "flag"}
        Raise :class:`ConvergenceError` if a forward solve did not converge or the loss is
        not finite, or only record it in the history.
    log_fn : callable, optional
        Called with ``(epoch, metrics_dict)`` after each epoch.

    Returns
    -------
    state : TrainState
    history : list of dict
        Per-epoch means of the step metrics.

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    pixels = jnp.asarray(pixels)
    labels = jnp.asarray(labels)
    n = pixels.shape[0]
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
    if on_failure not in ("raise", "flag"):
        raise ValueError(f"on_failure must be 'raise' or 'flag', got {on_failure!r}")
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    if state is None:
        log_scale = _init_log_scale()
        state = TrainState(params, log_scale, optimizer.init((params, log_scale)), jnp.array(0))
    step = make_train_step(spec, optimizer, m, hidden_fraction, label_weight, config)
    history = []
    nb = n // batch_size
    for epoch in range(num_epochs):
        rng_key, kp = jax.random.split(rng_key)
        perm = jax.random.permutation(kp, n)
        mets = []
        for i in range(nb):
            rng_key, ks = jax.random.split(rng_key)
            idx = perm[i * batch_size : (i + 1) * batch_size]
            state, met = step(state, ks, pixels[idx], labels[idx])
            mets.append(met)
            if on_failure == "raise":
                loss, conv = float(met["loss"]), float(met["converged"])
                if not math.isfinite(loss) or conv < 1.0:
                    raise ConvergenceError(
                        f"training step {int(state.step)}: loss {loss:.4g}, "
                        f"{100 * (1 - conv):.1f}% of forward solves did not converge "
                        f"(max residual {float(met['residual']):.3g})"
                    )
        summary = {k: float(np.mean([float(x[k]) for x in mets])) for k in mets[0]}
        summary["num_steps_max"] = float(np.max([float(x["num_steps"]) for x in mets]))
        history.append(summary)
        if log_fn is not None:
            log_fn(epoch, summary)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, state)
    return state, history


def evaluate(
    rng_key,
    coupling,
    spec,
    pixels,
    labels,
    hidden_fractions=(0.0, 0.3, 0.6, 0.9),
    batch_size=256,
    config=DEFAULT_CONFIG,
    on_failure="raise",
):
    """Classification and completion metrics on held-out data by fraction of hidden pixels.

    For each fraction: random Bernoulli masks; the label is inferred jointly with the hidden
    pixels. Metrics: label ``accuracy``; ``pixel_accuracy`` (exact bin) and ``mse`` (bin
    centres scaled to [0, 1]) on hidden pixels; ``converged`` fraction; ``max_steps``.

    Parameters
    ----------
    rng_key : PRNGKey
    coupling : Coupling
    spec : MDBMSpec
    pixels : int array (n, n_visible)
    labels : int array (n,)
    hidden_fractions : sequence of float
    batch_size : int
    config : SolverConfig
    on_failure : {"raise", "flag"}

    Returns
    -------
    dict
        ``{fraction: {metric: value}}``.

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    pixels = jnp.asarray(pixels)
    labels = jnp.asarray(labels)
    k = spec.layers[0].num_states
    n = pixels.shape[0]
    out = {}
    for frac in hidden_fractions:
        rng_key, km = jax.random.split(rng_key)
        masks = random_masks(km, pixels.shape, frac)
        correct = hit = hidden = sq = 0.0
        conv, steps = [], []
        for i in range(0, n, batch_size):
            sl = slice(i, min(i + batch_size, n))
            pred, q, info = complete(coupling, spec, pixels[sl], masks[sl], config, on_failure)
            hm = ~masks[sl]
            correct += float(jnp.sum(jnp.argmax(q[-1][:, 0], -1) == labels[sl]))
            hit += float(jnp.sum((pred == pixels[sl]) & hm))
            hidden += float(jnp.sum(hm))
            err = (pred.astype(jnp.float32) - pixels[sl].astype(jnp.float32)) / max(k - 1, 1)
            sq += float(jnp.sum(err * err * hm))
            conv.append(float(jnp.mean(info.converged)))
            steps.append(int(info.num_steps))
        out[float(frac)] = dict(
            accuracy=correct / n,
            pixel_accuracy=hit / hidden if hidden else float("nan"),
            mse=sq / hidden if hidden else float("nan"),
            converged=float(np.mean(conv)),
            max_steps=int(np.max(steps)),
        )
    return out
