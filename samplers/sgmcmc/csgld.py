"""Contour stochastic gradient Langevin dynamics (Deng, Lin and Liang, NeurIPS 2020).

CSGLD samples a *flattened* version of the target ``pi(x) ∝ exp(-U(x) / T)`` (with
``U = -log p``) and corrects for the flattening by importance weights. The energy axis is cut
into ``m`` partitions of width ``Δu`` above ``u_min``; the partition of ``x`` is

.. math::

    J(x) = \\min\\big(\\max(\\lfloor (U(x) - u_{\\min}) / \\Delta u \\rfloor + 1,\\, 1),\\, m - 1\\big),

and a stochastic-approximation (SA) estimate ``θ`` of the energy PDF ``θ(i) = π(S_i)`` drives an
SGLD step with a gradient multiplier:

.. math::

    θ_{k}(i) &= θ_{k-1}(i) + ω_k\\, Ψ_{θ_{k-1}}(U(x_k))^{ζ}
        \\big(1_{i = J(x_k)} - θ_{k-1}(i)\\big), \\\\
    x_{k+1} &= x_k + h \\Big[1 + \\frac{ζ T}{Δu}
        \\big(\\log θ_k(J(x_k)) - \\log θ_k(J(x_k) - 1)\\big)\\Big] \\nabla \\log \\hat p(x_k)
        + \\sqrt{2 T h}\\, ξ_k .

For a fixed ``θ`` the dynamics sample ``ϖ(x) ∝ π(x) / Ψ_θ(U(x))^ζ`` with ``Ψ_θ`` the
piecewise log-linear interpolation of ``θ`` between partition edges; where the log-ratio is
negative the gradient is reversed, which lets the chain climb out of a local mode. Posterior
expectations are ``E_π f ≈ Σ_k w_k f(x_k) / Σ_k w_k`` with ``w_k = θ(J(x_k))^ζ`` (the paper)
or the exact ``w_k = Ψ_θ(U(x_k))^ζ`` (:func:`importance_weights`). ``ζ = 0`` is SGLD.

Two changes to the paper's Algorithm 1, both measured on a two-mode mixture: (i) the SA gain
is ``Ψ_θ(U(x_k))^ζ`` instead of ``θ(J(x_k))^ζ``. Under the simulated dynamics (target
``π / Ψ^ζ``) the mean field is then ``∝ π(S_i) - θ(i)``, so ``θ(i) = π(S_i)`` is the exact
fixed point; with ``θ(J)^ζ`` a partition whose lower neighbour has a much larger ``θ`` is
visited less than the gain assumes, its ``θ`` shrinks further and the estimate runs away
(``blackjax.sgmcmc.csgld`` uses ``θ(J)^1`` whatever ``ζ``). (ii) The lowest partition
``J = 1`` is left flat: ``θ(0)`` (energies below ``u_min``) is never visited, decays to 0 and
would make the multiplier there unbounded. The driver supplies the minibatch
estimate ``log p̂(x_k)`` (already scaled by ``N/B``) at the *current* position, so the index is
updated at the start of the step, before the move: the same sequence of updates as the paper's
Algorithm 1, shifted by one step, and one gradient evaluation per step (BlackJAX's kernel
evaluates the log-density again after the move). The Langevin move is BlackJAX's
``overdamped_langevin``.

References
----------
W. Deng, G. Lin, F. Liang. A contour stochastic gradient Langevin dynamics algorithm for
simulations of multi-modal distributions. NeurIPS 2020.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.sgmcmc.diffusions import overdamped_langevin

from samplers._memo import by_value
from samplers.sgmcmc.base import SGMCMCKernel

__all__ = [
    "CSGLDInfo",
    "CSGLDState",
    "build_kernel",
    "csgld",
    "energy_index",
    "importance_weights",
    "init",
    "sa_decay",
    "weighted_expectation",
]


class CSGLDState(NamedTuple):
    """CSGLD state.

    Attributes
    ----------
    position
        Parameter pytree.
    energy_pdf
        ``(m,)`` SA estimate ``θ`` of the energy PDF (non-negative, sums to 1).
    energy_idx
        Partition index ``J`` of the position at the start of the last step.
    count
        Number of SA updates made (the ``k`` of ``ω_k``).
    """

    position: object
    energy_pdf: jax.Array
    energy_idx: jax.Array
    count: jax.Array


class CSGLDInfo(NamedTuple):
    """Per-step diagnostics: the gradient multiplier ``1 + ζ T (log θ(J) - log θ(J-1)) / Δu``
    (negative where the flattened dynamics climb out of a mode)."""

    multiplier: jax.Array


def _check(num_partitions, energy_gap, min_energy, zeta, sa_step_size, min_pdf):
    if not isinstance(num_partitions, int) or num_partitions < 2:
        raise ValueError(f"num_partitions must be an integer >= 2, got {num_partitions!r}")
    if not (math.isfinite(float(energy_gap)) and float(energy_gap) > 0):
        raise ValueError(f"energy_gap must be positive and finite, got {energy_gap!r}")
    if not math.isfinite(float(min_energy)):
        raise ValueError(f"min_energy must be finite, got {min_energy!r}")
    if not (math.isfinite(float(zeta)) and float(zeta) >= 0):
        raise ValueError(f"zeta must be >= 0 and finite, got {zeta!r}")
    if sa_step_size is not None and not callable(sa_step_size) and not 0 < sa_step_size < 1:
        raise ValueError(f"sa_step_size must be in (0, 1) or a callable, got {sa_step_size!r}")
    if not 0 < float(min_pdf) < 1.0 / num_partitions:
        raise ValueError(f"min_pdf must be in (0, 1/num_partitions), got {min_pdf!r}")


def sa_decay(scale: float = 10.0, offset: float = 100.0, maximum: float = 0.05) -> Callable:
    """SA step sizes ``ω_k = min(maximum, scale / (k + offset))`` (the default of :func:`csgld`).

    A ``1/k`` decay (Robbins-Monro) lets ``θ`` average over many mode switches; slower
    decays such as ``k^{-0.8}`` left ``θ`` tracking the mode visited last in our runs.
    """
    if not (scale > 0 and offset > 0 and 0 < maximum < 1):
        raise ValueError(
            f"sa_decay needs scale > 0, offset > 0, 0 < maximum < 1; got {scale}, {offset}, "
            f"{maximum}"
        )

    def schedule(k):
        return jnp.minimum(maximum, scale / (k + offset))

    return schedule


def init(position, num_partitions: int = 100) -> CSGLDState:
    """Uniform energy PDF ``θ_0 = 1/m``, index ``m - 1`` (top partition), count 0."""
    return CSGLDState(
        position,
        jnp.full((num_partitions,), 1.0 / num_partitions, jnp.float32),
        jnp.asarray(num_partitions - 1, jnp.int32),
        jnp.zeros((), jnp.int32),
    )


def energy_index(logdensity, num_partitions: int, energy_gap: float, min_energy: float = 0.0):
    """Energy partition ``J(x) ∈ {1, ..., m-1}`` of ``U(x) = -logdensity`` (see module doc).

    Parameters
    ----------
    logdensity
        Array of log-density values ``log p̂(x)`` (any shape).
    num_partitions, energy_gap, min_energy
        ``m``, ``Δu`` and ``u_min``.

    Returns
    -------
    int32 array of the shape of ``logdensity``.
    """
    energy = -jnp.asarray(logdensity)
    j = jnp.floor((energy - min_energy) / energy_gap).astype(jnp.int32) + 1
    return jnp.clip(j, 1, num_partitions - 1)


def _log_pdf(energy_pdf, min_pdf):
    return jnp.log(jnp.maximum(energy_pdf, min_pdf))


def _log_pair(log_pdf, idx):
    # log θ(J), log θ(J-1); partition 0 (below u_min) is never visited, so the lowest
    # partition is left flat (θ(0) := θ(1)) instead of using a θ(0) that decays to 0.
    if log_pdf.ndim == 1:
        hi, lo = log_pdf[idx], log_pdf[idx - 1]
    else:
        hi = jnp.take_along_axis(log_pdf, idx, axis=-1)
        lo = jnp.take_along_axis(log_pdf, idx - 1, axis=-1)
    return hi, jnp.where(idx == 1, hi, lo)


def _log_psi(log_pdf, idx, logdensity, energy_gap, min_energy):
    # log Ψ_θ(U): log-linear from θ(J-1) at the lower edge of S_J to θ(J) at its upper edge.
    hi, lo = _log_pair(log_pdf, idx)
    frac = (-logdensity - min_energy) / energy_gap - (idx - 1).astype(hi.dtype)
    return lo + (hi - lo) * frac


def build_kernel(
    num_partitions: int = 100,
    energy_gap: float = 1.0,
    min_energy: float = 0.0,
    zeta: float = 0.75,
    sa_step_size: float | Callable | None = None,
    adapt_only: bool = False,
    min_pdf: float = 1e-6,
):
    """The CSGLD step (see the module docstring for the update).

    Parameters
    ----------
    num_partitions, energy_gap, min_energy
        ``m``, ``Δu``, ``u_min``: ``m Δu`` should cover the energies met while sampling and
        ``u_min`` should lie a little below the smallest energy (e.g. from an optimiser run).
    zeta
        Flattening exponent ``ζ >= 0`` (``0``: SGLD; the paper uses values near ``0.75``).
    sa_step_size
        ``ω_k``: a float in ``(0, 1)``, a callable ``k -> ω_k`` (traced ``int32`` count), or
        ``None`` for :func:`sa_decay` ``()``.
    adapt_only
        If true, ``θ`` is updated only while the driver's ``adapt`` flag is set (burn-in), so
        the kept draws come from a fixed flattened target and the weights are exact.
    min_pdf
        Floor on ``θ`` inside the logarithms. Partitions below the lowest energy reached are
        never visited, so their ``θ`` decays to 0 and, unfloored, the multiplier in the lowest
        visited partition grows without bound and the chain diverges; the floor bounds it by
        ``1 + ζ T log(1 / min_pdf) / Δu``. Pass the same value to :func:`importance_weights`.
    """
    _check(num_partitions, energy_gap, min_energy, zeta, sa_step_size, min_pdf)
    integrator = overdamped_langevin()
    if sa_step_size is None:
        schedule = sa_decay()
    elif callable(sa_step_size):
        schedule = sa_step_size
    else:
        schedule = lambda k: sa_step_size  # noqa: E731

    def step(rng_key, state, logdensity, logdensity_grad, step_size, temperature, adapt):
        idx = energy_index(logdensity, num_partitions, energy_gap, min_energy)
        count = state.count + 1
        pdf = state.energy_pdf
        omega = jnp.asarray(schedule(count), pdf.dtype)
        if adapt_only:
            omega = jnp.where(adapt, omega, 0.0).astype(pdf.dtype)
            count = jnp.where(adapt, count, state.count)
        onehot = jax.nn.one_hot(idx, num_partitions, dtype=pdf.dtype)
        log_psi = _log_psi(_log_pdf(pdf, min_pdf), idx, logdensity, energy_gap, min_energy)
        pdf = pdf + omega * jnp.exp(zeta * log_psi).astype(pdf.dtype) * (onehot - pdf)
        log_hi, log_lo = _log_pair(_log_pdf(pdf, min_pdf), idx)
        multiplier = 1.0 + zeta * temperature * (log_hi - log_lo) / energy_gap
        grad = jax.tree.map(lambda g: (multiplier * g).astype(g.dtype), logdensity_grad)
        position = integrator(rng_key, state.position, grad, step_size, temperature)
        return CSGLDState(position, pdf, idx, count), CSGLDInfo(multiplier)

    return step


@by_value
def csgld(
    num_partitions: int = 100,
    energy_gap: float = 1.0,
    min_energy: float = 0.0,
    zeta: float = 0.75,
    sa_step_size: float | Callable | None = None,
    adapt_only: bool = False,
    min_pdf: float = 1e-6,
) -> SGMCMCKernel:
    """Contour SGLD (Deng, Lin and Liang 2020) as an :class:`SGMCMCKernel`.

    Parameters are those of :func:`build_kernel`. The final energy PDFs are in
    ``result.state.kernel_state.energy_pdf`` (one per chain); pass them with the
    log-densities of the draws to :func:`importance_weights`.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from samplers import sgmcmc
    >>> from samplers.sgmcmc.csgld import importance_weights
    >>> def logdensity(x, batch, data_size):
    ...     return jnp.logaddexp(-0.5 * (x + 3) ** 2, -0.5 * (x - 3) ** 2)
    >>> kernel = sgmcmc.csgld(num_partitions=40, energy_gap=0.25, min_energy=-0.5)
    >>> res = sgmcmc.sample(jax.random.key(0), kernel, logdensity, jnp.zeros((1,)),
    ...                     jnp.zeros((2,)), num_samples=200, batch_size=1, step_size=0.05,
    ...                     progress_bar=False)
    >>> logp = jax.vmap(jax.vmap(lambda x: logdensity(x, None, 1)))(res.positions)
    >>> w = importance_weights(logp, res.state.kernel_state.energy_pdf, energy_gap=0.25,
    ...                          min_energy=-0.5, zeta=0.75)
    >>> w.shape  # per-chain weights summing to 1 over draws
    (2, 200)
    """

    def init_fn(position) -> CSGLDState:
        return init(position, num_partitions)

    step = build_kernel(
        num_partitions, energy_gap, min_energy, zeta, sa_step_size, adapt_only, min_pdf
    )
    return SGMCMCKernel(init_fn, step, "csgld")


def importance_weights(
    logdensity,
    energy_pdf,
    *,
    energy_gap: float,
    min_energy: float = 0.0,
    zeta: float,
    interpolate: bool = True,
    normalize: bool = True,
    min_pdf: float = 1e-6,
):
    """Importance weights that undo the CSGLD flattening.

    .. math::

        w_k = Ψ_θ(U(x_k))^ζ, \\qquad
        \\log Ψ_θ(u) = \\log θ(J-1) + \\big(\\log θ(J) - \\log θ(J-1)\\big)
            \\frac{u - u_{\\min} - (J-1)Δu}{Δu}

    with ``J = J(x_k)`` (``interpolate=True``: the exact weight of the density that the
    gradient multiplier targets), or ``w_k = θ(J(x_k))^ζ`` as in Deng et al. (2020)
    (``interpolate=False``). Computed in log space and normalised along the last (draw)
    axis, so ``E_π f ≈ Σ_k w_k f(x_k)`` per chain.

    Parameters
    ----------
    logdensity
        ``(..., num_draws)`` log-densities ``log p(x_k)`` of the draws (recompute them on the
        full data when possible; a minibatch estimate adds noise).
    energy_pdf
        ``(m,)`` or ``(..., m)`` energy PDF with the same leading (chain) axes as
        ``logdensity``, e.g. ``result.state.kernel_state.energy_pdf``.
    energy_gap, min_energy, zeta
        The kernel's ``Δu``, ``u_min`` and ``ζ``.
    interpolate
        Use ``Ψ_θ`` (default) or the piecewise-constant ``θ(J)``.
    normalize
        Normalise over the last axis (otherwise return ``log w``, unnormalised).
    min_pdf
        The kernel's floor on ``θ``.

    Returns
    -------
    Array of the shape of ``logdensity``.
    """
    logdensity = jnp.asarray(logdensity)
    energy_pdf = jnp.asarray(energy_pdf)
    if logdensity.ndim < 1:
        raise ValueError("logdensity must have a draw axis")
    if energy_pdf.ndim != 1 and energy_pdf.shape[:-1] != logdensity.shape[:-1]:
        raise ValueError(
            f"energy_pdf leading shape {energy_pdf.shape[:-1]} does not match logdensity "
            f"leading shape {logdensity.shape[:-1]}"
        )
    if not (math.isfinite(float(energy_gap)) and float(energy_gap) > 0):
        raise ValueError(f"energy_gap must be positive and finite, got {energy_gap!r}")
    if not (math.isfinite(float(zeta)) and float(zeta) >= 0):
        raise ValueError(f"zeta must be >= 0 and finite, got {zeta!r}")
    m = energy_pdf.shape[-1]
    if m < 2:
        raise ValueError(f"energy_pdf needs at least 2 partitions, got {m}")
    idx = energy_index(logdensity, m, energy_gap, min_energy)
    if not 0 < float(min_pdf) < 1.0 / m:
        raise ValueError(f"min_pdf must be in (0, 1/num_partitions), got {min_pdf!r}")
    log_pdf = _log_pdf(energy_pdf, min_pdf)
    if interpolate:
        log_w = zeta * _log_psi(log_pdf, idx, logdensity, energy_gap, min_energy)
    else:
        log_w = zeta * _log_pair(log_pdf, idx)[0]
    if not normalize:
        return log_w
    return jax.nn.softmax(log_w, axis=-1)


def weighted_expectation(values, weights):
    """``E_π f`` from per-chain normalised weights, chains averaged with equal weight.

    Parameters
    ----------
    values
        ``(num_chains, num_draws, ...)`` values ``f(x_k)``.
    weights
        ``(num_chains, num_draws)`` from :func:`importance_weights`.

    Returns
    -------
    ``(estimate, per_chain)``: the mean over chains and the per-chain estimates
    ``Σ_k w_k f(x_k)`` (their spread gives a Monte Carlo standard error).
    """
    values = jnp.asarray(values)
    weights = jnp.asarray(weights)
    if values.shape[:2] != weights.shape:
        raise ValueError(
            f"values leading shape {values.shape[:2]} must equal weights shape {weights.shape}"
        )
    w = weights.reshape(weights.shape + (1,) * (values.ndim - 2))
    per_chain = jnp.sum(w * values, axis=1)
    return jnp.mean(per_chain, axis=0), per_chain
