"""The monotone deep Boltzmann machine: energy, clamping, mean-field completion and classes.

Model: categorical units stacked in ``z`` with

.. math:: -E(z) = \\tfrac12 z^T W z + b^T z, \\qquad p(z) \\propto e^{-E(z)},

``W = D - A^T A`` symmetric and hollow (:mod:`bayesnn.boltzmann.parameterization`; dense
or convolutional, :mod:`bayesnn.boltzmann.coupling`). The
fully factorised mean-field approximation :math:`q = \\prod_j q_j` has stationary points
:math:`q_j = \\operatorname{softmax}((W q + b)_j)`; with :math:`I - W \\succeq m I` the point is
unique, for any clamping of observed variables (pixels and/or the label), because clamping
keeps a principal submatrix of ``I - W``. Visible pixels are binned into ``k`` intensity
states; the last layer is the label.

Note: training (:mod:`bayesnn.boltzmann.train`) is empirical risk on mean-field outputs, as
in Feng, Winston and Kolter; it is not maximum likelihood.

Reference: Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesnn.boltzmann.implicit import BackwardOptions, implicit_fixed_point
from bayesnn.boltzmann.solver import raise_if_not_converged, solve

__all__ = [
    "Evidence",
    "SolverConfig",
    "bin_images",
    "make_evidence",
    "uniform_state",
    "field",
    "mean_field_map",
    "energy",
    "pr_resolvent",
    "infer",
    "complete",
    "classify",
]


class Evidence(NamedTuple):
    """Clamped (observed) variables.

    Attributes
    ----------
    mask : tuple of (batch, n_l) float arrays
        1 where the variable is observed.
    values : tuple of (batch, n_l, k_l) float arrays
        Observed one-hots (zero where unobserved).
    """

    mask: tuple
    values: tuple


class SolverConfig(NamedTuple):
    """Static forward/backward solver options (see :func:`bayesnn.boltzmann.solver.solve`).

    Defaults: Anderson-accelerated undamped mean field (``alpha = 1``) with mixing
    ``beta = 0.5`` (undamped mixing cycles on trained models), at most 50 evaluations, true
    residual below ``1e-4``, GMRES adjoint; if Anderson fails for some example, automatic fallback to
    Peaceman-Rachford at ``fallback_alpha`` (``fallback="fb"``: damped forward-backward;
    ``None``: no fallback), flagged in ``info.fallback``. Couplings without a Woodbury
    resolvent (``coupling.has_resolvent`` False: convolutional ones) fall back to damped FB.
    """

    method: str = "anderson"
    alpha: float = 1.0
    tol: float = 1e-4
    max_iter: int = 50
    memory: int = 5
    num_newton: int = 8
    backward: BackwardOptions = BackwardOptions()
    fallback: str | None = "pr"
    fallback_alpha: float = 0.5
    fallback_max_iter: int = 300
    mixing: float = 0.5
    ridge: float = 1e-4


DEFAULT_CONFIG = SolverConfig()


def bin_images(images, num_bins, vmax):
    """Bin intensities in ``[0, vmax]`` into ``num_bins`` equal-width integer bins.

    Parameters
    ----------
    images : array (batch, ...)
        Values in ``[0, vmax]``.
    num_bins : int
    vmax : float
        Largest allowed intensity (16 for sklearn digits, 255 for Fashion-MNIST).

    Returns
    -------
    bins : int32 array (batch, num_pixels)

    Raises
    ------
    ValueError
        If ``images`` has values outside ``[0, vmax]`` or non-finite values.

    References
    ----------
    Feng, Winston and Kolter, TMLR 2023 (they use 20 bins).
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"images must have a batch axis, got shape {x.shape}")
    if int(num_bins) < 2:
        raise ValueError(f"num_bins must be >= 2, got {num_bins}")
    if not np.all(np.isfinite(x)):
        raise ValueError("images contain NaN or inf")
    if x.min() < 0 or x.max() > vmax:
        raise ValueError(
            f"images must lie in [0, {vmax}] (the binning range), got [{x.min()}, {x.max()}]"
        )
    b = np.floor(x / vmax * num_bins).clip(0, num_bins - 1).astype(np.int32)
    return jnp.asarray(b.reshape(b.shape[0], -1))


def check_indices(name, x, num_states, where):
    """Check that ``x`` holds integer indices in ``[0, num_states)``.

    The dtype is always checked; the range only when ``x`` is concrete (inside ``jit`` the
    public entry points have checked their inputs before tracing).

    Raises
    ------
    ValueError
        Naming ``where`` and the argument ``name``.
    """
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise ValueError(
            f"{where}: {name} must be integer indices in [0, {num_states}), got dtype {x.dtype}"
            + (" (bin the images with bin_images)" if name == "pixels" else "")
        )
    if isinstance(x, jax.core.Tracer) or x.size == 0:
        return
    lo, hi = int(jnp.min(x)), int(jnp.max(x))
    if lo < 0 or hi >= num_states:
        raise ValueError(
            f"{where}: {name} must lie in [0, {num_states}), got values in [{lo}, {hi}]"
        )


def make_evidence(spec, pixels, pixel_mask, labels=None):
    """Evidence clamping observed pixels (and the label if ``labels`` is given).

    Parameters
    ----------
    spec : MDBMSpec or ConvMDBMSpec
    pixels : int array (batch, n_visible)
        Bin indices in ``[0, k_visible)``.
    pixel_mask : bool array (batch, n_visible)
        True where the pixel is observed.
    labels : int array (batch,), optional
        Clamped labels in ``[0, num_classes)``; if None the label is inferred.

    Returns
    -------
    Evidence

    Raises
    ------
    ValueError
        Naming the argument: wrong shapes, non-integer pixels or labels, or (for concrete
        inputs) values outside ``[0, k_visible)`` or ``[0, num_classes)``. Out-of-range
        indices would otherwise be clamped as all-zero one-hots, silently.

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    vis = spec.layers[0]
    pixels = jnp.asarray(pixels)
    pixel_mask = jnp.asarray(pixel_mask)
    if pixels.ndim != 2 or pixels.shape[1] != vis.num_vars:
        raise ValueError(f"pixels must have shape (batch, {vis.num_vars}), got {pixels.shape}")
    if pixel_mask.shape != pixels.shape:
        raise ValueError(
            f"pixel_mask must have the shape of pixels {pixels.shape}, got {pixel_mask.shape}"
        )
    check_indices("pixels", pixels, vis.num_states, "make_evidence")
    batch = pixels.shape[0]
    masks, values = [], []
    for lay in spec.layers:
        masks.append(jnp.zeros((batch, lay.num_vars)))
        values.append(jnp.zeros((batch, lay.num_vars, lay.num_states)))
    masks[0] = pixel_mask.astype(jnp.float32)
    values[0] = jax.nn.one_hot(pixels, vis.num_states) * masks[0][..., None]
    if labels is not None:
        labels = jnp.asarray(labels)
        if labels.shape != (batch,):
            raise ValueError(f"labels must have shape ({batch},), got {labels.shape}")
        lab = spec.layers[-1]
        check_indices("labels", labels, lab.num_states, "make_evidence")
        masks[-1] = jnp.ones((batch, 1))
        values[-1] = jax.nn.one_hot(labels, lab.num_states)[:, None, :]
    return Evidence(tuple(masks), tuple(values))


def clamp(evidence, q):
    """Write the observed one-hots of ``evidence`` into the state ``q``."""
    return tuple(
        x * (1.0 - m[..., None]) + v * m[..., None]
        for x, m, v in zip(q, evidence.mask, evidence.values, strict=True)
    )


def uniform_state(spec, batch):
    """Uniform distributions ``q_j = 1/k_j`` for every variable, shape ``(batch, n_l, k_l)``.

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    return tuple(
        jnp.full((batch, lay.num_vars, lay.num_states), 1.0 / lay.num_states)
        for lay in spec.layers
    )


def field(coupling, spec, q):
    """Local fields ``W q + b`` (mean-field logits), per layer.

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    wq = coupling.matvec(spec, q)
    return tuple(w + b[None] for w, b in zip(wq, coupling.b, strict=True))


def mean_field_map(coupling, spec, evidence, q):
    """Undamped mean-field map ``q -> clamp(softmax(W q + b))``.

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    y = field(coupling, spec, q)
    return clamp(evidence, tuple(jax.nn.softmax(v, axis=-1) for v in y))


def energy(coupling, spec, z):
    """Energy ``E(z) = -(1/2) z^T W z - b^T z`` of one-hot states, per example.

    Parameters
    ----------
    coupling : Coupling
    spec : MDBMSpec
    z : tuple of (batch, n_l, k_l) one-hot arrays

    Returns
    -------
    array (batch,)

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    wz = coupling.matvec(spec, z)
    quad = sum(jnp.sum(a * w, axis=(1, 2)) for a, w in zip(z, wz, strict=True))
    lin = sum(jnp.sum(a * b[None], axis=(1, 2)) for a, b in zip(z, coupling.b, strict=True))
    return -0.5 * quad - lin


def pr_resolvent(coupling, spec, alpha):
    """``v -> (I + alpha (I - W))^{-1} v`` by the Woodbury identity.

    With :math:`B = \\operatorname{blockdiag}((1 + \\alpha) I - \\alpha D_j)` (SPD),
    :math:`(B + \\alpha A^T A)^{-1} = B^{-1} - B^{-1} A^T (I/\\alpha + A B^{-1} A^T)^{-1}
    A B^{-1}`: one Cholesky of a (rows x rows) matrix per weight update, O(rows N) per apply.

    References
    ----------
    Winston and Kolter, "Monotone operator equilibrium networks", NeurIPS 2020.
    """
    if not coupling.has_resolvent:
        raise ValueError("pr_resolvent needs a dense MDBMSpec (no Woodbury form for convs)")
    return coupling.resolvent(spec, alpha)


def _solve(coupling, spec, evidence, q0, config):
    woodbury = coupling.has_resolvent
    fallback = config.fallback
    if fallback == "pr" and not woodbury:
        fallback = "fb"
    kw = dict(
        method=config.method,
        alpha=config.alpha,
        tol=config.tol,
        max_iter=config.max_iter,
        memory=config.memory,
        ridge=config.ridge,
        mixing=config.mixing,
        num_newton=config.num_newton,
        fallback=fallback,
        fallback_alpha=config.fallback_alpha,
        fallback_max_iter=config.fallback_max_iter,
    )
    if config.method == "pr" or fallback == "pr":
        if not woodbury:
            raise ValueError("method='pr' needs a dense (Woodbury) resolvent; use 'anderson'")
        kw["make_resolvent"] = lambda a: pr_resolvent(coupling, spec, a)
        if config.method == "pr":
            kw["resolvent_fn"] = pr_resolvent(coupling, spec, config.alpha)
        kw["bias"] = tuple(
            jnp.broadcast_to(b[None], x.shape) for b, x in zip(coupling.b, q0, strict=True)
        )
    return solve(coupling.solver_field(spec), lambda q: clamp(evidence, q), q0, **kw)


def infer(coupling, spec, evidence, q0=None, config=DEFAULT_CONFIG):
    """Unique mean-field fixed point given the evidence, differentiable implicitly.

    Parameters
    ----------
    coupling : Coupling or ConvCoupling
        Effective weights (e.g. from :func:`monotone_coupling`, differentiable in params).
    spec : MDBMSpec or ConvMDBMSpec
        The architecture ``coupling`` was built from.
    evidence : Evidence
    q0 : tuple, optional
        Start (default uniform). Any start gives the same point under the constraint.
    config : SolverConfig

    Returns
    -------
    q : tuple of (batch, n_l, k_l)
        Mean-field marginals (observed variables equal their one-hots).
    info : SolverInfo

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    if q0 is None:
        q0 = uniform_state(spec, evidence.mask[0].shape[0])

    def map_fn(c, ev, q):
        y = c.solver_field(spec)(q)
        return clamp(ev, tuple(jax.nn.softmax(v, axis=-1) for v in y))

    def solve_fn(c, ev, q):
        return _solve(c, spec, ev, q, config)

    return implicit_fixed_point(map_fn, solve_fn, coupling, evidence, q0, config.backward)


@partial(jax.jit, static_argnums=(1, 4))
def _complete_jit(coupling, spec, pixels, mask, config):
    ev = make_evidence(spec, pixels, mask)
    q, info = infer(coupling, spec, ev, config=config)
    pred = jnp.where(mask, pixels, jnp.argmax(q[0], axis=-1))
    return pred, q, info


def complete(coupling, spec, pixels, mask, config=DEFAULT_CONFIG, on_failure="raise"):
    """Complete the unobserved pixels and infer the label jointly.

    Parameters
    ----------
    coupling : Coupling
    spec : MDBMSpec
    pixels : int array (batch, n_visible)
        Bin indices (values at unobserved pixels are ignored).
    mask : bool array (batch, n_visible)
        True where observed.
    config : SolverConfig
    on_failure : {"raise", "flag"}
        Raise :class:`ConvergenceError` if any example did not converge, or return the
        flags in ``info.converged``.

    Returns
    -------
    completed : int array (batch, n_visible)
        Observed bins pasted back, argmax of the marginals elsewhere.
    q : tuple
        Marginals of all layers (``q[-1][:, 0]`` are the class probabilities).
    info : SolverInfo

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    if on_failure not in ("raise", "flag"):
        raise ValueError(f"on_failure must be 'raise' or 'flag', got {on_failure!r}")
    pixels = jnp.asarray(pixels)
    mask = jnp.asarray(mask)
    n, k = spec.layers[0].num_vars, spec.layers[0].num_states
    if pixels.ndim != 2 or pixels.shape[1] != n:
        raise ValueError(f"pixels must have shape (batch, {n}), got {pixels.shape}")
    if mask.shape != pixels.shape:
        raise ValueError(f"mask must have shape {pixels.shape}, got {mask.shape}")
    if not jnp.issubdtype(pixels.dtype, jnp.integer) or (
        pixels.size and (int(pixels.min()) < 0 or int(pixels.max()) >= k)
    ):
        raise ValueError(f"pixels must be bin indices in [0, {k}), use bin_images first")
    pred, q, info = _complete_jit(coupling, spec, pixels, mask.astype(bool), config)
    if on_failure == "raise":
        raise_if_not_converged(info, "completion")
    return pred, q, info


def classify(coupling, spec, pixels, mask=None, config=DEFAULT_CONFIG, on_failure="raise"):
    """Class probabilities given (possibly partially observed) images.

    Parameters
    ----------
    coupling, spec, config, on_failure
        As in :func:`complete`.
    pixels : int array (batch, n_visible)
    mask : bool array (batch, n_visible), optional
        Observed pixels (default: all).

    Returns
    -------
    probs : array (batch, num_classes)
    info : SolverInfo

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    pixels = jnp.asarray(pixels)
    if mask is None:
        mask = jnp.ones(pixels.shape, bool)
    _, q, info = complete(coupling, spec, pixels, mask, config, on_failure)
    return q[-1][:, 0], info
