"""Training a monotone DBM for joint completion and classification (masked empirical risk).

As in Feng, Winston and Kolter: each image gets a random mask hiding a fraction of its
pixels; the mean-field fixed point given the observed pixels (label not clamped) is computed, and the loss
is the cross-entropy of the hidden pixels' bins plus the label's cross-entropy, both from the
fixed-point logits :math:`W q^* + b`,

.. math::

    L = (1 - w) \\frac{1}{|H|} \\sum_{i \\in H} -\\log \\operatorname{softmax}(W q^* + b)_{i,
    x_i} + w \\, (-\\log \\operatorname{softmax}(W q^* + b)_{\\text{label}, y}),

differentiated implicitly (:mod:`bayesnn.boltzmann.implicit`). **This is empirical-risk
training of an approximate-inference procedure, not maximum likelihood**: no negative phase,
no partition function (compare Domke 2013, Stoyanov et al. 2011).

As in Feng, Winston and Kolter's code (github.com/locuslab/MonotoneDBM), the completion term can instead be a class-balanced focal loss (Lin et al.
2017; Cui et al. 2019): with :math:`p_i` the predicted probability of pixel ``i``'s true bin
:math:`x_i` and bin weights :math:`w_c`,

.. math::

    L_{\\text{pix}} = \\frac{\\sum_{i \\in H} w_{x_i} (1 - p_i)^\\gamma (-\\log p_i)}
    {\\sum_{i \\in H} w_{x_i}},

which is the cross-entropy above for :math:`\\gamma = 0` and uniform weights. Weights from
bin frequencies of the training pixels: :func:`class_balanced_weights`.

References: Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023;
Goodfellow et al., "Multi-prediction deep Boltzmann machines", NeurIPS 2013; Lin et al.,
"Focal loss for dense object detection", ICCV 2017; Cui et al., "Class-balanced loss based
on effective number of samples", CVPR 2019.
"""

import os
import tempfile
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bayesnn._training import apply_gradients
from bayesnn.boltzmann.coupling import MDBMParams
from bayesnn.boltzmann.model import (
    DEFAULT_CONFIG,
    check_indices,
    complete,
    field,
    infer,
    make_evidence,
)
from bayesnn.boltzmann.parameterization import monotone_coupling, unconstrained_coupling
from bayesnn.boltzmann.solver import ConvergenceError

__all__ = [
    "TrainState",
    "TrainingConfig",
    "random_masks",
    "class_balanced_weights",
    "focal_loss",
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
    logits ``exp(log_scale) * (W q* + b)`` (the temperatures ``tau^2`` and ``clftau^2`` of
    Feng, Winston and Kolter's code, initialised here to 1 and 3 where they use 10 and 1);
    they do not enter the fixed point.
    """

    params: MDBMParams
    log_scale: jax.Array
    opt_state: optax.OptState
    step: jax.Array


DEFAULT_MAX_NORM = 30.0


class TrainingConfig(NamedTuple):
    """Settings of the masked training objective (see the module docstring).

    Attributes
    ----------
    m : float in (0, 1)
        Monotonicity margin: :math:`I - W \\succeq m I`.
    hidden_fraction : float in [0, 1], or pair ``(low, high)``
        Fraction of pixels hidden per training image (:func:`random_masks`).
    label_weight : float in [0, 1]
        ``w`` in ``L = (1 - w) L_pix + w L_label``.
    focal_gamma : float >= 0
        Focal exponent of the completion loss (0: cross-entropy).
    class_weights : array (k_visible,), "balanced" or None
        Bin weights of the completion loss (:func:`class_balanced_weights`; ``"balanced"``:
        computed by :func:`fit` from its pixels); None: uniform.
    max_norm : float or None
        Cap on each row block's :math:`\\lVert A_r^T A_r \\rVert_2` (see
        :func:`make_train_step`; dense specs; None: off). Default 30.
    monotone : bool
        False: train the unconstrained plain mean-field DBM of the same architecture
        (:func:`unconstrained_coupling`; a baseline, ``m`` and ``max_norm`` unused).
    """

    m: float = 0.01
    hidden_fraction: Any = 0.6
    label_weight: float = 0.5
    focal_gamma: float = 0.0
    class_weights: Any = None
    max_norm: float | None = DEFAULT_MAX_NORM
    monotone: bool = True


DEFAULT_TRAINING = TrainingConfig()


def _init_log_scale():
    return jnp.array([0.0, jnp.log(3.0)])


def random_masks(rng_key, shape, hidden_fraction):
    """Bernoulli masks: True (observed) with probability ``1 - hidden_fraction``.

    Parameters
    ----------
    rng_key : PRNGKey
    shape : tuple ``(batch, n_visible)``
    hidden_fraction : float in [0, 1], or pair ``(low, high)``
        Probability that a pixel is hidden. A pair draws one fraction per example,
        uniform in ``[low, high]``, so that one model is trained for every amount of
        evidence (e.g. ``(0, 0.9)``: classification from full images and completion from
        few pixels alike).

    Returns
    -------
    bool array ``shape``

    References
    ----------
    Feng, Winston and Kolter, TMLR 2023 (they hide 60%).
    """
    if isinstance(hidden_fraction, (tuple, list)):
        if len(hidden_fraction) != 2:
            raise ValueError(f"hidden_fraction must be a float or a pair, got {hidden_fraction}")
        lo, hi = (float(x) for x in hidden_fraction)
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"hidden_fraction must satisfy 0 <= low <= high <= 1, got {lo, hi}")
        k1, k2 = jax.random.split(rng_key)
        frac = jax.random.uniform(k1, shape[:1] + (1,) * (len(shape) - 1), minval=lo, maxval=hi)
        return jax.random.uniform(k2, shape) >= frac
    if not 0.0 <= hidden_fraction <= 1.0:
        raise ValueError(f"hidden_fraction must be in [0, 1], got {hidden_fraction}")
    return jax.random.bernoulli(rng_key, 1.0 - hidden_fraction, shape)


def class_balanced_weights(pixels, num_bins, beta=0.9999):
    """Per-bin weights from bin frequencies (inverse "effective number of samples").

    .. math::

        w_c \\propto \\frac{1 - \\beta}{1 - \\beta^{n_c}}, \\qquad
        \\frac{1}{C} \\sum_c w_c = 1,

    with :math:`n_c` the number of training pixels in bin ``c``. ``beta = 1`` gives inverse
    frequencies :math:`w_c \\propto 1 / n_c`; ``beta = 0`` uniform weights. Empty bins get the
    weight of a bin seen once.

    Parameters
    ----------
    pixels : int array (..., n_visible)
        Bin indices of the training pixels.
    num_bins : int
    beta : float in [0, 1]
        Feng, Winston and Kolter use 0.9999 (which saturates, i.e. gives nearly uniform weights, once
        every bin has more than ~1e5 pixels).

    Returns
    -------
    weights : float32 array (num_bins,)

    References
    ----------
    Cui et al., "Class-balanced loss based on effective number of samples", CVPR 2019.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    x = np.asarray(pixels).ravel()
    if x.size == 0 or x.min() < 0 or x.max() >= num_bins:
        raise ValueError(f"pixels must be non-empty bin indices in [0, {num_bins})")
    n = np.maximum(np.bincount(x, minlength=num_bins).astype(np.float64), 1.0)
    if beta == 1.0:
        w = 1.0 / n
    else:
        w = (1.0 - beta) / -np.expm1(n * np.log(beta)) if beta > 0 else np.ones_like(n)
    return jnp.asarray(w / w.mean(), jnp.float32)


def focal_loss(logp, targets, weights=None, gamma=0.0, where=None):
    """Weighted mean of the class-balanced focal loss ``w_y (1 - p_y)^gamma (-log p_y)``.

    Parameters
    ----------
    logp : array (..., C)
        Log-probabilities.
    targets : int array (...)
    weights : array (C,), optional
        Class weights (default uniform).
    gamma : float >= 0
        Focusing parameter; ``gamma = 0`` with uniform weights is the mean cross-entropy.
    where : array (...), optional
        0/1 selection of the terms (e.g. hidden pixels).

    Returns
    -------
    scalar
        :math:`\\sum_i s_i w_{y_i} (1 - p_i)^\\gamma (-\\log p_i) / \\sum_i s_i w_{y_i}`.

    References
    ----------
    Lin et al., "Focal loss for dense object detection", ICCV 2017; Cui et al., CVPR 2019.
    """
    if float(gamma) < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    lp = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    terms = -lp if float(gamma) == 0.0 else -lp * (1.0 - jnp.exp(lp)) ** gamma
    w = jnp.ones_like(lp) if weights is None else jnp.asarray(weights, lp.dtype)[targets]
    if where is not None:
        w = w * where.astype(lp.dtype)
    return jnp.sum(w * terms) / jnp.maximum(jnp.sum(w), 1e-12)


def masked_loss(
    trainable, spec, pixels, labels, mask, training=DEFAULT_TRAINING, config=DEFAULT_CONFIG
):
    """Completion + label cross-entropy at the mean-field fixed point (see module docstring).

    Parameters
    ----------
    trainable : (MDBMParams, array (2,))
        Parameters and log loss temperatures (pixel, label); see :class:`TrainState`.
    spec : MDBMSpec or ConvMDBMSpec
    pixels : int array (batch, n_visible)
    labels : int array (batch,)
    mask : bool array (batch, n_visible)
        True where observed (clamped).
    training : TrainingConfig
        ``m``, ``label_weight``, ``focal_gamma``, ``class_weights`` (an array or None),
        ``max_norm`` (bounds the condition number of the fixed-point problem by
        ``(1 + R max_norm) / m``, see :func:`monotone_coupling`) and ``monotone`` (False:
        the plain mean-field DBM baseline, whose fixed points need not be unique; for
        comparisons only). ``hidden_fraction`` is not used (``mask`` is given).
    config : SolverConfig

    Returns
    -------
    loss : scalar
    aux : dict
        ``pixel_loss`` (the completion term), ``pixel_ce``, ``label_ce``, ``accuracy``,
        ``converged`` (fraction), ``num_steps``, ``residual`` (max), ``fallback`` (1 if the
        fallback solver ran).

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    params, log_scale = trainable
    m, label_weight = training.m, training.label_weight
    focal_gamma, class_weights = training.focal_gamma, training.class_weights
    scale = jnp.exp(log_scale)
    if training.monotone:
        coupling = monotone_coupling(params, spec, m, max_norm=training.max_norm)
    else:
        coupling = unconstrained_coupling(params, spec)
    ev = make_evidence(spec, pixels, mask)
    q, info = infer(coupling, spec, ev, config=config)
    logits = field(coupling, spec, q)
    logp_vis = jax.nn.log_softmax(scale[0] * logits[0], axis=-1)
    nll_vis = -jnp.take_along_axis(logp_vis, pixels[..., None], axis=-1)[..., 0]
    hidden = 1.0 - mask.astype(logp_vis.dtype)
    pixel_ce = jnp.sum(nll_vis * hidden) / jnp.maximum(jnp.sum(hidden), 1.0)
    if float(focal_gamma) == 0.0 and class_weights is None:
        pixel_loss = pixel_ce
    else:
        pixel_loss = focal_loss(logp_vis, pixels, class_weights, focal_gamma, hidden)
    logp_lab = jax.nn.log_softmax(scale[1] * logits[-1][:, 0], axis=-1)
    label_ce = -jnp.mean(jnp.take_along_axis(logp_lab, labels[:, None], axis=-1))
    loss = (1.0 - label_weight) * pixel_loss + label_weight * label_ce
    aux = dict(
        pixel_loss=pixel_loss,
        pixel_ce=pixel_ce,
        label_ce=label_ce,
        accuracy=jnp.mean(jnp.argmax(logp_lab, -1) == labels),
        converged=jnp.mean(info.converged),
        num_steps=info.num_steps,
        residual=jnp.max(info.residual),
        fallback=jnp.asarray(info.fallback, jnp.float32),
    )
    return loss, aux


def make_train_step(spec, optimizer, training=DEFAULT_TRAINING, config=DEFAULT_CONFIG):
    """Jitted ``step(state, rng_key, pixels, labels) -> (state, metrics)``.

    A fresh random mask hiding ``training.hidden_fraction`` of the pixels (a float, or a
    range ``(low, high)`` drawn per example, see :func:`random_masks`) is drawn per step;
    the loss is :func:`masked_loss`. With ``training.max_norm`` (default 30; None: off) each
    row block of the raw ``A`` is also projected back onto :math:`\\lVert A_r \\rVert_2^2
    \\le` ``max_norm`` after every update, so the stored parameters satisfy the cap and
    ``monotone_coupling(state.params, spec, m)`` is the trained model. This bounds the
    condition number of every mean-field solve by ``(1 + R max_norm) / m`` (``R`` row
    blocks; dense specs only, ignored for convolutional ones): on Fashion-MNIST Anderson
    then converges in about 10-17 evaluations instead of failing on most steps.
    ``training.monotone=False`` trains the unconstrained baseline (no cap).

    Parameters
    ----------
    spec : MDBMSpec or ConvMDBMSpec
    optimizer : optax.GradientTransformation
    training : TrainingConfig
        ``class_weights`` must be an array or None here.
    config : SolverConfig

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """

    if float(training.focal_gamma) < 0:
        raise ValueError(f"focal_gamma must be >= 0, got {training.focal_gamma}")
    max_norm = training.max_norm
    if not spec.supports_norm_cap or not training.monotone:
        max_norm = None  # the row-norm cap is defined for monotone dense couplings only
    elif max_norm is not None and not float(max_norm) > 0:
        raise ValueError(f"max_norm must be positive or None, got {max_norm}")
    class_weights = training.class_weights
    if isinstance(class_weights, str):
        raise ValueError("class_weights='balanced' is resolved by fit; pass an array here")
    cw = None if class_weights is None else jnp.asarray(class_weights, jnp.float32)
    k = spec.layers[0].num_states
    if cw is not None and cw.shape != (k,):
        raise ValueError(f"class_weights must have shape ({k},), got {cw.shape}")
    training = training._replace(max_norm=max_norm, class_weights=cw)
    hidden_fraction = training.hidden_fraction

    @jax.jit
    def step(state, rng_key, pixels, labels):
        mask = random_masks(rng_key, pixels.shape, hidden_fraction)
        trainable = (state.params, state.log_scale)
        (loss, aux), grads = jax.value_and_grad(masked_loss, has_aux=True)(
            trainable, spec, pixels, labels, mask, training, config
        )
        (params, log_scale), opt_state = apply_gradients(
            optimizer, trainable, state.opt_state, grads
        )
        if max_norm is not None:  # projection: the stored parameters satisfy the cap
            params = params._replace(A=spec.cap_rows(params.A, float(max_norm)))
        gnorm = optax.tree.norm(grads)
        new = TrainState(params, log_scale, opt_state, state.step + 1)
        return new, dict(aux, loss=loss, grad_norm=gnorm)

    return step


def save_checkpoint(path, state):
    """Save a pytree of arrays to ``path`` (``.npz``, no pickle), atomically.

    The arrays are written to a temporary file in the same directory, flushed to disk
    (``fsync``) and renamed over ``path`` (``os.replace``), so an interrupted save leaves
    the previous checkpoint intact. The file is written at exactly ``path`` (no ``.npz``
    appended).

    Parameters
    ----------
    path : str or path-like
    state : pytree of arrays
        E.g. a :class:`TrainState` or :class:`MDBMParams`.
    """
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(state)]
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, *leaves)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def load_checkpoint(path, like):
    """Load a pytree saved by :func:`save_checkpoint` with the structure of ``like``.

    Parameters
    ----------
    path : str or path-like
    like : pytree of arrays
        Template: the structure, shapes and dtypes the checkpoint must have (e.g. a freshly
        initialised :class:`TrainState` of the same spec and optimiser).

    Returns
    -------
    pytree
        ``like``'s structure with the saved arrays.

    Raises
    ------
    ValueError
        If the number of arrays, or any array's shape or dtype, differs from ``like``
        (naming the path and the leaf), e.g. a checkpoint of another architecture.
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(like)
    with np.load(path) as f:
        if len(f.files) != len(flat):
            raise ValueError(
                f"checkpoint {path} holds {len(f.files)} arrays, the template {len(flat)}: "
                "it was saved from another structure"
            )
        leaves = []
        for i, (where, ref) in enumerate(flat):
            arr = f[f"arr_{i}"]
            shape, dtype = np.shape(ref), jnp.result_type(ref)
            if arr.shape != shape or arr.dtype != dtype:
                raise ValueError(
                    f"checkpoint {path}: leaf {jax.tree_util.keystr(where)} has shape "
                    f"{arr.shape} and dtype {arr.dtype}, the template {shape} and {dtype}"
                )
            leaves.append(jnp.asarray(arr))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def fit(
    rng_key,
    spec,
    params,
    pixels,
    labels,
    *,
    num_epochs=1,
    batch_size=128,
    optimizer=None,
    training=DEFAULT_TRAINING,
    config=DEFAULT_CONFIG,
    checkpoint_path=None,
    state=None,
    on_failure="raise",
    log_fn=None,
):
    """Minibatch training loop (host loop over jitted steps, no host sync inside an epoch).

    The steps are dispatched asynchronously; their metrics stay on the device and are
    fetched once per epoch, which is when a failure is reported.

    Parameters
    ----------
    rng_key : PRNGKey
    spec : MDBMSpec or ConvMDBMSpec
    params : MDBMParams
    pixels : int array (n, n_visible)
        Bin indices in ``[0, k_visible)`` (:func:`bin_images`).
    labels : int array (n,)
        Classes in ``[0, num_classes)``.
    num_epochs, batch_size : int
        The last incomplete batch of each epoch is dropped (fixed shapes, one compile).
    optimizer : optax.GradientTransformation, optional
        Default ``optax.adam(1e-3)`` (Feng, Winston and Kolter's choice).
    training : TrainingConfig
        Margin, masking, loss weights, row-norm cap, monotone or not. ``class_weights =
        "balanced"`` computes :func:`class_balanced_weights` from ``pixels`` with
        ``beta = 1 - 1 / pixels.size`` (the effective number then tracks the bin counts).
    config : SolverConfig
        Mean-field solver of the forward pass (and its implicit backward).
    checkpoint_path : str, optional
        Saved atomically (:func:`save_checkpoint`) after every epoch.
    state : TrainState, optional
        Resume from this state (e.g. :func:`load_checkpoint`).
    on_failure : {"raise", "flag"}
        Raise :class:`ConvergenceError` (at the end of the epoch, naming the first failed
        step) if a forward solve did not converge or the loss is not finite, or only record
        it in the history.
    log_fn : callable, optional
        Called with ``(epoch, metrics_dict)`` after each epoch.

    Returns
    -------
    state : TrainState
    history : list of dict
        Per-epoch means of the step metrics, and ``num_steps_max``.

    Raises
    ------
    ValueError
        Before any training, naming the argument: ``pixels`` or ``labels`` of the wrong
        shape, not integers, or outside ``[0, k_visible)`` / ``[0, num_classes)``; bad
        ``batch_size``, ``num_epochs`` or ``on_failure``.

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    pixels = jnp.asarray(pixels)
    labels = jnp.asarray(labels)
    vis, lab = spec.layers[0], spec.layers[-1]
    if pixels.ndim != 2 or pixels.shape[1] != vis.num_vars:
        raise ValueError(f"fit: pixels must have shape (n, {vis.num_vars}), got {pixels.shape}")
    n = pixels.shape[0]
    if labels.shape != (n,):
        raise ValueError(f"fit: labels must have shape ({n},), got {labels.shape}")
    check_indices("pixels", pixels, vis.num_states, "fit")
    check_indices("labels", labels, lab.num_states, "fit")
    if isinstance(batch_size, bool) or not 1 <= batch_size <= n:
        raise ValueError(f"fit: batch_size must be in [1, {n}], got {batch_size}")
    if isinstance(num_epochs, bool) or int(num_epochs) != num_epochs or num_epochs < 0:
        raise ValueError(f"fit: num_epochs must be a non-negative integer, got {num_epochs}")
    if on_failure not in ("raise", "flag"):
        raise ValueError(f"on_failure must be 'raise' or 'flag', got {on_failure!r}")
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    if state is None:
        log_scale = _init_log_scale()
        state = TrainState(params, log_scale, optimizer.init((params, log_scale)), jnp.array(0))
    if isinstance(training.class_weights, str):
        if training.class_weights != "balanced":
            raise ValueError(
                f"class_weights must be an array or 'balanced', got {training.class_weights!r}"
            )
        beta = 1.0 - 1.0 / pixels.size
        cw = class_balanced_weights(pixels, vis.num_states, beta)
        training = training._replace(class_weights=cw)
    step = make_train_step(spec, optimizer, training, config)
    history = []
    nb = n // batch_size
    first_step = int(state.step)
    for epoch in range(int(num_epochs)):
        rng_key, kp = jax.random.split(rng_key)
        perm = jax.random.permutation(kp, n)
        mets = []
        for i in range(nb):
            rng_key, ks = jax.random.split(rng_key)
            idx = perm[i * batch_size : (i + 1) * batch_size]
            state, met = step(state, ks, pixels[idx], labels[idx])
            mets.append(met)
        # one transfer per epoch: (nb,) arrays per metric
        mets = jax.device_get({k: jnp.stack([x[k] for x in mets]) for k in mets[0]})
        if on_failure == "raise":
            bad = ~np.isfinite(mets["loss"]) | (mets["converged"] < 1.0)
            if np.any(bad):
                i = int(np.argmax(bad))
                loss, conv = float(mets["loss"][i]), float(mets["converged"][i])
                raise ConvergenceError(
                    f"training step {first_step + epoch * nb + i + 1}: loss {loss:.4g}, "
                    f"{100 * (1 - conv):.1f}% of forward solves did not converge "
                    f"(max residual {float(mets['residual'][i]):.3g})"
                )
        summary = {k: float(np.mean(np.asarray(v, np.float64))) for k, v in mets.items()}
        summary["num_steps_max"] = float(np.max(mets["num_steps"]))
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
    baseline=None,
):
    """Classification and completion metrics on held-out data by fraction of hidden pixels.

    For each fraction: random Bernoulli masks; the label is inferred jointly with the hidden
    pixels. Metrics: label ``accuracy``; ``pixel_accuracy`` (exact bin),
    ``balanced_pixel_accuracy`` (mean over bins of the recall on hidden pixels whose true
    bin it is) and ``mse`` (bin centres scaled to [0, 1]) on hidden pixels; ``converged``
    fraction; ``max_steps``.

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
    baseline : int array (n_visible,), optional
        A fixed completion (e.g. each pixel's most frequent training bin); adds
        ``baseline_pixel_accuracy`` and ``baseline_mse`` on the same hidden pixels.

    Returns
    -------
    dict
        ``{fraction: {metric: value}}``; also ``fallback`` (fraction of batches that needed
        the fallback solver).

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    pixels = jnp.asarray(pixels)
    labels = jnp.asarray(labels)
    k = spec.layers[0].num_states
    n = pixels.shape[0]
    if baseline is not None:
        baseline = jnp.asarray(baseline)
        if baseline.shape != (pixels.shape[1],):
            raise ValueError(f"baseline must have shape ({pixels.shape[1]},)")
    out = {}
    for frac in hidden_fractions:
        rng_key, km = jax.random.split(rng_key)
        masks = random_masks(km, pixels.shape, frac)
        correct = hit = hidden = sq = bhit = bsq = 0.0
        per_bin = np.zeros((3, k))  # hidden pixels per true bin, model hits, baseline hits
        conv, steps, fb = [], [], []
        for i in range(0, n, batch_size):
            sl = slice(i, min(i + batch_size, n))
            pred, q, info = complete(coupling, spec, pixels[sl], masks[sl], config, on_failure)
            hm = ~masks[sl]
            correct += float(jnp.sum(jnp.argmax(q[-1][:, 0], -1) == labels[sl]))
            hit += float(jnp.sum((pred == pixels[sl]) & hm))
            onehot = jax.nn.one_hot(pixels[sl], k) * hm[..., None]
            per_bin[0] += np.asarray(jnp.sum(onehot, axis=(0, 1)))
            per_bin[1] += np.asarray(jnp.sum(onehot * (pred == pixels[sl])[..., None], (0, 1)))
            hidden += float(jnp.sum(hm))
            err = (pred.astype(jnp.float32) - pixels[sl].astype(jnp.float32)) / max(k - 1, 1)
            sq += float(jnp.sum(err * err * hm))
            conv.append(float(jnp.mean(info.converged)))
            steps.append(int(info.num_steps))
            fb.append(float(info.fallback))
            if baseline is not None:
                bp = jnp.broadcast_to(baseline, pixels[sl].shape)
                bhit += float(jnp.sum((bp == pixels[sl]) & hm))
                per_bin[2] += np.asarray(
                    jnp.sum(onehot * (bp == pixels[sl])[..., None], axis=(0, 1))
                )
                berr = (bp - pixels[sl]).astype(jnp.float32) / max(k - 1, 1)
                bsq += float(jnp.sum(berr * berr * hm))
        nan = float("nan")
        seen = per_bin[0] > 0
        recall = per_bin[1:, seen] / per_bin[0, seen]
        out[float(frac)] = dict(
            accuracy=correct / n,
            pixel_accuracy=hit / hidden if hidden else nan,
            balanced_pixel_accuracy=float(recall[0].mean()) if hidden else nan,
            mse=sq / hidden if hidden else nan,
            converged=float(np.mean(conv)),
            max_steps=int(np.max(steps)),
            fallback=float(np.mean(fb)),
        )
        if baseline is not None:
            out[float(frac)].update(
                baseline_pixel_accuracy=bhit / hidden if hidden else nan,
                baseline_balanced_pixel_accuracy=float(recall[1].mean()) if hidden else nan,
                baseline_mse=bsq / hidden if hidden else nan,
            )
    return out
