r"""Binarised-image experiments: classes as unknown archetypes, examples = training images.

Protocol (ours; the papers' image protocol could not be read): grey levels are thresholded to
+-1 (:func:`binarize`), ``M`` training images per class form the examples :math:`\eta^{\mu a}`
of an unknown archetype :math:`\xi^\mu` (the class), a supervised or unsupervised dense
Hebbian network of order ``P`` is built with the empirical normalisation (``r`` unknown), a
test image is relaxed by zero/low-temperature sequential dynamics and classified by its largest
overlap with the class means :math:`\bar\eta^\mu` (labels are used only for this read-out in
the unsupervised case). Agliari et al., arXiv 2212.00606 and arXiv 2211.14067.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .model import overlaps, supervised_network, unsupervised_network
from .simulate import simulate

__all__ = ["binarize", "class_examples", "relax_and_classify"]


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
    threshold : float, optional
        Default: half the maximal grey level of the data.

    Returns
    -------
    numpy.ndarray, shape (n, D), float32 in {-1, +1}

    Raises
    ------
    ValueError
        If the result is not binary (NaN input) or the images are not a batch.
    """
    x = np.asarray(images, np.float32)
    if x.ndim < 2:
        raise ValueError(f"images must have shape (n, ...), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("images contain NaN or inf; cannot binarise")
    thr = 0.5 * float(x.max()) if threshold is None else float(threshold)
    out = np.where(x.reshape(x.shape[0], -1) > thr, 1.0, -1.0).astype(np.float32)
    if not np.all(np.abs(out) == 1):
        raise ValueError("images are not binary after binarisation")
    return out


def class_examples(spins, labels, num_examples: int, rng_key):
    """Pick ``M`` random training images per class: examples ``(K, M, D)`` grouped by label.

    Parameters
    ----------
    spins : array_like, shape (n, D)
        Binarised images (+-1).
    labels : array_like of int, shape (n,)
        Class labels ``0..K-1``.
    num_examples : int
        ``M`` per class (must not exceed the smallest class size).
    rng_key : PRNGKey
        Selection key.

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
    rng_key, examples, probes, order, rule="supervised", beta=jnp.inf, num_sweeps=5
):
    """Relax probe images in the network and classify them by the largest class-mean overlap.

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
    net = build[rule](eta, order)
    means = supervised_network(eta, 2)
    res = _relax(rng_key, net, jnp.asarray(probes, jnp.float32), beta, int(num_sweeps))
    pred = jnp.argmax(overlaps(means, res), axis=-1)
    return np.asarray(pred), np.asarray(res)
