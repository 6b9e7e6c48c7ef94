r"""Binarised-image experiments: classes as unknown archetypes, examples = training images.

Protocol (ours; the papers' image protocol could not be read): grey levels are thresholded to
+-1 (:func:`binarize`; with per-pixel thresholds from :func:`pixel_thresholds` each pixel is
+1 where it is brighter than its training-set mean, which removes the background shared by
all classes: the theory assumes unbiased patterns), ``M`` training images per class form the
examples :math:`\eta^{\mu a}` of an unknown archetype :math:`\xi^\mu` (the class), a
supervised or unsupervised dense Hebbian network of order ``P`` is built with the empirical
normalisation (``r`` unknown), a (possibly corrupted, :func:`corrupt`) test image is relaxed
by zero/low-temperature sequential dynamics and classified by the archetype estimate
:math:`\hat\xi^\mu = \mathrm{sign}\,\bar\eta^\mu` its final state overlaps most (labels
are used only for this read-out in the unsupervised case). Agliari et al., arXiv 2212.00606
and arXiv 2211.14067.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .model import supervised_network, unsupervised_network
from .simulate import simulate

__all__ = [
    "binarize",
    "pixel_thresholds",
    "corrupt",
    "class_examples",
    "relax_and_classify",
    "nearest_archetype",
]


@partial(jax.jit, static_argnames=("num_sweeps",))
def _relax(rng_key, net, probes, beta, num_sweeps):
    """Final spins of sequential dynamics; one compile per (network statics, shapes, sweeps)."""
    return simulate(rng_key, net, probes, beta, num_sweeps).spins


def binarize(images, threshold=None):
    """Flatten images and threshold to +-1: ``+1`` where the value exceeds ``threshold``.

    Parameters
    ----------
    images : array_like, shape (n, ...)
        Grey-level images.
    threshold : float or array_like of shape (D,), optional
        A global grey level, or one threshold per (flattened) pixel, e.g.
        :func:`pixel_thresholds` of the training images. Default: half the maximal grey
        level of the data.

    Returns
    -------
    numpy.ndarray, shape (n, D), float32 in {-1, +1}

    Raises
    ------
    ValueError
        If the result is not binary (NaN input), the images are not a batch, or a per-pixel
        ``threshold`` has the wrong size.
    """
    x = np.asarray(images, np.float32)
    if x.ndim < 2:
        raise ValueError(f"images must have shape (n, ...), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("images contain NaN or inf; cannot binarise")
    x = x.reshape(x.shape[0], -1)
    thr = 0.5 * float(x.max()) if threshold is None else np.asarray(threshold, np.float32)
    if np.ndim(thr) not in (0, 1) or (np.ndim(thr) == 1 and thr.shape[0] != x.shape[1]):
        raise ValueError(f"threshold must be a scalar or have shape ({x.shape[1]},)")
    out = np.where(x > thr, 1.0, -1.0).astype(np.float32)
    if not np.all(np.abs(out) == 1):
        raise ValueError("images are not binary after binarisation")
    return out


def pixel_thresholds(images):
    r"""Per-pixel binarisation thresholds: the mean grey level of each pixel over ``images``.

    ``binarize(x, pixel_thresholds(train))`` gives :math:`s_i = \mathrm{sign}(x_i - \bar x_i)`:
    a pixel is +1 where it is brighter than usual. This centring removes the background that
    all classes share (with a global threshold every class mean has a large common part,
    which the dense network sees as one mixture state). The theory of Agliari et al.
    (arXiv 2212.00606) assumes unbiased +-1 archetypes; centring brings images closer to it.

    Parameters
    ----------
    images : array_like, shape (n, ...)
        Training images.

    Returns
    -------
    numpy.ndarray, shape (D,)
    """
    x = np.asarray(images, np.float32)
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"images must have shape (n, ...) with n >= 1, got {x.shape}")
    return x.reshape(x.shape[0], -1).mean(0)


def corrupt(rng_key, spins, flip: float = 0.0, occlude: float = 0.0):
    """Noisy / partial probes: flip a random fraction of pixels, then replace the last
    ``occlude`` fraction of every image (the bottom rows in raster order) by random +-1.

    Retrieval from corrupted probes is the associative-memory task of the dense Hebbian
    networks (Agliari et al., arXiv 2212.00606).

    Parameters
    ----------
    rng_key : PRNGKey
        Key.
    spins : array_like, shape (n, D)
        Binarised images.
    flip : float
        Probability of flipping each pixel, in [0, 1].
    occlude : float
        Fraction of trailing pixels replaced by fair coin flips, in [0, 1].

    Returns
    -------
    numpy.ndarray, shape (n, D)
    """
    x = np.asarray(spins, np.float32)
    if x.ndim != 2 or not np.all(np.abs(x) == 1):
        raise ValueError("spins must be a (n, D) array of +-1")
    if not (0.0 <= flip <= 1.0):
        raise ValueError(f"flip must be in [0, 1], got {flip}")
    if not (0.0 <= occlude <= 1.0):
        raise ValueError(f"occlude must be in [0, 1], got {occlude}")
    k1, k2 = jax.random.split(rng_key)
    flips = np.asarray(jax.random.bernoulli(k1, flip, x.shape))
    out = np.where(flips, -x, x)
    start = x.shape[1] - int(round(occlude * x.shape[1]))
    coins = np.where(np.asarray(jax.random.bernoulli(k2, 0.5, x.shape)), 1.0, -1.0)
    out[:, start:] = coins[:, start:]
    return out.astype(np.float32)


def class_examples(rng_key, spins, labels, num_examples: int):
    """Pick ``M`` random training images per class: examples ``(K, M, D)`` grouped by label.

    Parameters
    ----------
    rng_key : PRNGKey
        Selection key.
    spins : array_like, shape (n, D)
        Binarised images (+-1).
    labels : array_like of int, shape (n,)
        Class labels ``0..K-1``.
    num_examples : int
        ``M`` per class (must not exceed the smallest class size).

    Returns
    -------
    numpy.ndarray, shape (K, M, D)
    """
    x, y = np.asarray(spins), np.asarray(labels)
    if not np.all(np.abs(x) == 1):
        raise ValueError("spins must be binary (+-1); use binarize first")
    classes = np.unique(y)
    seed = int(jax.random.randint(rng_key, (), 0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    out = []
    for c in classes:
        idx = np.flatnonzero(y == c)
        if num_examples > idx.size or num_examples < 1:
            raise ValueError(f"num_examples must be in [1, {idx.size}] for class {c}")
        out.append(x[rng.choice(idx, num_examples, replace=False)])
    return np.stack(out)


def relax_and_classify(
    rng_key,
    examples,
    probes,
    order,
    rule="supervised",
    beta=jnp.inf,
    num_sweeps=5,
    convention="distinct",
):
    r"""Relax probe images in the network and classify them by the closest archetype estimate.

    The archetype estimate of class :math:`\mu` is :math:`\hat\xi^\mu =
    \mathrm{sign}(\bar\eta^\mu)` (ties +1); a relaxed state :math:`s` is assigned to
    :math:`\arg\max_\mu \hat\xi^\mu\cdot s`. Agliari et al., arXiv 2212.00606.

    Parameters
    ----------
    rng_key : PRNGKey
        Dynamics key.
    examples : array_like, shape (K, M, D)
        Training examples grouped by class.
    probes : array_like, shape (C, D)
        Binarised test images (starting states).
    order : int
        Even ``P``.
    rule : {"supervised", "unsupervised"}
        Hebbian rule.
    beta : float
        Inverse temperature (``inf``: zero-temperature dynamics).
    num_sweeps : int
        Sequential sweeps.
    convention : {"distinct", "all"}
        Index convention of the network (:mod:`bayesnn.hebbian.model`); at finite N and
        P >= 4 the self-interaction terms of ``"all"`` change the relaxed states.

    Returns
    -------
    predictions : numpy.ndarray of int, shape (C,)
    relaxed : numpy.ndarray, shape (C, D)
        Final configurations (reconstructions).
    """
    eta = jnp.asarray(examples, jnp.float32)
    build = {"supervised": supervised_network, "unsupervised": unsupervised_network}
    if rule not in build:
        raise ValueError(f"rule must be 'supervised' or 'unsupervised', got {rule!r}")
    net = build[rule](eta, order, convention=convention)
    res = _relax(rng_key, net, jnp.asarray(probes, jnp.float32), beta, int(num_sweeps))
    return np.asarray(nearest_archetype(eta, res)), np.asarray(res)


def nearest_archetype(examples, spins):
    r"""Index of the archetype estimate :math:`\mathrm{sign}(\bar\eta^\mu)` closest to each
    configuration (largest overlap; no dynamics: the read-out baseline).

    Parameters
    ----------
    examples : array_like, shape (K, M, D)
        Training examples grouped by class.
    spins : array_like, shape (C, D)
        Configurations.

    Returns
    -------
    Array of int, shape (C,)
    """
    xi_hat = jnp.where(jnp.asarray(examples, jnp.float32).mean(1) >= 0, 1.0, -1.0)
    return jnp.argmax(jnp.asarray(spins, jnp.float32) @ xi_hat.T, axis=-1)
