"""Shared by the mDBM benchmark scripts (not a benchmark itself: ``run_all.py`` skips ``_*``)."""

import jax
import jax.numpy as jnp
import numpy as np

from bayesnn import boltzmann as bm


def pixel_marginals(pixels, bins):
    """Per-pixel bin frequencies of training pixels ``(n, n_visible)``, add-one smoothed,
    and each pixel's most frequent bin (the completion baseline)."""
    freq = np.stack([np.bincount(c, minlength=bins) for c in pixels.T]) + 1.0
    return freq / freq.sum(1, keepdims=True), freq.argmax(1)


def with_marginal_bias(params, marg):
    """Pixel biases = centred log marginals: the untrained model completes with them."""
    logf = np.log(marg)
    b0 = jnp.asarray(logf - logf.mean(1, keepdims=True), jnp.float32)
    return params._replace(b=(b0,) + tuple(params.b[1:]))


def hidden_pixel_nll(coupling, spec, pixels, mask, q, temp, marg):
    """Summed NLL of the hidden pixels under ``softmax(temp * field)`` at the fixed point
    ``q`` and under the per-pixel marginals, and the number of hidden pixels."""
    lp = np.asarray(jax.nn.log_softmax(temp * bm.model.field(coupling, spec, q)[0], -1))
    hid = ~np.asarray(mask)
    model = -np.take_along_axis(lp, pixels[..., None], -1)[..., 0][hid].sum()
    marginal = -np.log(marg[np.nonzero(hid)[1], pixels[hid]]).sum()
    return float(model), float(marginal), int(hid.sum())
