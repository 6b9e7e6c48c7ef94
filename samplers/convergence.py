"""Convergence checks that warn instead of staying silent.

:func:`check_convergence` computes the rank-normalised split R-hat and the bulk effective
sample size (Vehtari, Gelman, Simpson, Carpenter, Bürkner, "Rank-normalization, folding, and
localization: an improved R-hat for assessing convergence of MCMC", Bayesian Analysis 2021;
``az.rhat`` and ``az.ess``) of every entry of ``(chains, draws, ...)`` arrays (for networks:
predictions at probe inputs, see :func:`bayesnn.diagnostics.function_space_diagnostics`) and
issues a :class:`ConvergenceWarning` naming the worst entries, the numbers and what to do.

Thresholds (defaults):

* ``max_rhat = 1.05``: between-chain disagreement above 5% of the within-chain spread. Vehtari
  et al. recommend 1.01 for final NUTS results; SG-MCMC runs are shorter and their R-hat
  estimate itself fluctuates by a few percent at a few hundred draws, so 1.05 (the older
  threshold of Gelman et al.) is used as the level below which nothing is said.
* ``min_ess = 100`` (bulk, all chains together): below about 100 the ESS and R-hat estimates
  are themselves unreliable (Vehtari et al. 2021, section 4) and the Monte Carlo standard
  error of a posterior mean exceeds a tenth of the posterior standard deviation.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

__all__ = ["ConvergenceWarning", "ConvergenceReport", "check_convergence"]


class ConvergenceWarning(UserWarning):
    """Chains disagree (R-hat too large) or carry too little information (ESS too small)."""


class ConvergenceReport(NamedTuple):
    """Result of :func:`check_convergence`.

    Attributes
    ----------
    rhat, ess_bulk
        Dicts name -> array of the entries' shape (without chain and draw axes).
    max_rhat, min_ess
        Worst values over every entry (NaN entries, e.g. constants, ignored).
    converged
        ``max_rhat <= threshold`` and ``min_ess >= threshold``.
    message
        The warning text (empty when converged).
    """

    rhat: dict
    ess_bulk: dict
    max_rhat: float
    min_ess: float
    converged: bool
    message: str


def _as_dict(draws, name):
    if isinstance(draws, dict):
        items = dict(draws)
    else:
        items = {name: draws}
    out = {}
    for key, value in items.items():
        a = np.asarray(value)
        if a.ndim < 2:
            raise ValueError(
                f"check_convergence: {key!r} must have shape (num_chains, num_draws, ...), got "
                f"{a.shape}"
            )
        if a.shape[0] < 2:
            raise ValueError(
                f"check_convergence: {key!r} has {a.shape[0]} chain; R-hat needs at least 2"
            )
        if a.shape[1] < 4:
            raise ValueError(
                f"check_convergence: {key!r} has {a.shape[1]} draws per chain; need at least 4"
            )
        if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
            raise ValueError(f"check_convergence: {key!r} must be a real array, got {a.dtype}")
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise ValueError(f"check_convergence: {key!r} holds NaN or inf draws")
        out[str(key)] = a
    if not out:
        raise ValueError("check_convergence: no draws given")
    return out


def _worst(values: dict, pick) -> tuple[str, tuple, float]:
    best = (None, (), np.nan)
    for key, v in values.items():
        v = np.asarray(v, np.float64)
        if v.size == 0 or np.isnan(v).all():
            continue
        idx = np.unravel_index(pick(v), v.shape) if v.ndim else ()
        val = float(v[idx])
        if best[0] is None or pick(np.array([best[2], val])) == 1:
            best = (key, tuple(int(i) for i in idx), val)
    return best


def check_convergence(
    draws,
    *,
    max_rhat: float = 1.05,
    min_ess: float = 100.0,
    name: str = "x",
    warn: bool = True,
    what: str = "",
) -> ConvergenceReport:
    """R-hat and bulk ESS of every entry; warn when the chains have not converged.

    Parameters
    ----------
    draws
        An array ``(num_chains, num_draws, ...)`` or a dict of such arrays (any quantity:
        predictions at probe points, log-likelihoods, scalar parameters).
    max_rhat, min_ess
        Thresholds (see the module docstring for their justification).
    name
        Name of ``draws`` when it is an array.
    warn
        Issue a :class:`ConvergenceWarning` when not converged.
    what
        Extra advice appended to the warning (e.g. the option names of the caller).

    Returns
    -------
    ConvergenceReport
    """
    import arviz as az

    if not float(max_rhat) > 1.0:
        raise ValueError(f"max_rhat must be > 1, got {max_rhat!r}")
    if not float(min_ess) > 0:
        raise ValueError(f"min_ess must be positive, got {min_ess!r}")
    arrays = _as_dict(draws, name)
    rhat, ess = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant entries give NaN
        for key, a in arrays.items():
            dataset = az.convert_to_dataset({"v": a})
            rhat[key] = np.asarray(az.rhat(dataset, method="rank")["v"])
            ess[key] = np.asarray(az.ess(dataset, method="bulk")["v"])
    r_key, r_idx, worst_rhat = _worst(rhat, np.nanargmax)
    e_key, e_idx, worst_ess = _worst(ess, np.nanargmin)
    bad_rhat = bool(worst_rhat > max_rhat)
    bad_ess = bool(worst_ess < min_ess)
    converged = not (bad_rhat or bad_ess)
    message = ""
    if not converged:
        chains, num_draws = next(iter(arrays.values())).shape[:2]
        parts = []
        if bad_rhat:
            parts.append(f"max R-hat {worst_rhat:.3f} > {max_rhat} (at {r_key}{list(r_idx)})")
        if bad_ess:
            parts.append(f"min bulk ESS {worst_ess:.0f} < {min_ess:.0f} (at {e_key}{list(e_idx)})")
        message = (
            f"the chains have not converged: {'; '.join(parts)}, from {chains} chains x "
            f"{num_draws} draws. Posterior summaries from these draws are unreliable. Run "
            "longer (more burn-in, more draws or thinning), add chains, or check the step "
            "size (a smaller one if chains disagree in level, the engine's automatic one)."
        )
        if what:
            message += " " + what
        if warn:
            warnings.warn(ConvergenceWarning(message), stacklevel=2)
    return ConvergenceReport(rhat, ess, worst_rhat, worst_ess, converged, message)
