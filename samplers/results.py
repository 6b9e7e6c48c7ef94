"""Sampler traces to ArviZ ``InferenceData``, and fast vectorised weight-space diagnostics.

Trace convention: positions are a pytree whose leaves have shape
``(num_chains, num_draws, *event_shape)``; a per-step ``info`` is a NamedTuple (or dict) of
arrays ``(num_chains, num_draws, ...)``. Names are flattened with
``jax.tree_util.keystr(path, simple=True, separator=".")`` and made netCDF-safe, so
``idata.to_netcdf`` works.

ArviZ's rank-normalised R-hat/ESS are right for a few scalar or function-space quantities but
take minutes on all the weights of a network (``az.rhat`` ~75 CPU-s on 4 x 200 x 100k), and
weight-space R-hat is not meaningful for networks anyway (permutation symmetry). For "all the
weights" this module offers the classic split-R-hat (Gelman et al., "Bayesian Data
Analysis", 3rd ed., 2013, eq. 11.4) and Geyer's initial-monotone-sequence ESS (Geyer,
"Practical Markov chain Monte Carlo", Stat. Sci. 1992), as ArviZ's ``method="split"`` and
``method="mean"``/``"identity"``, vectorised with ``jax.numpy`` along all trailing axes.

This module does not import ``bayesnn``.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:  # arviz takes seconds to import: only where it is used
    import arviz as az

__all__ = [
    "flatten_names",
    "to_inference_data",
    "split_rhat",
    "rhat",
    "ess",
    "weight_space_summary",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def _safe_name(name: str, default: str) -> str:
    name = _UNSAFE.sub("_", name).strip(".")
    return name or default


def flatten_names(tree, *, default: str = "x") -> dict:
    """Flatten a pytree into ``{name: leaf}`` with dotted, netCDF-safe names.

    Names come from ``jax.tree_util.keystr(path, simple=True, separator=".")`` (so
    ``{"layers": [{"W": w}]}`` gives ``"layers.0.W"``); characters other than letters, digits,
    ``_``, ``.`` and ``-`` (e.g. ``/``, which breaks netCDF) become ``_``. A bare array is
    named ``default``; ``None`` leaves are dropped.

    Parameters
    ----------
    tree
        Pytree of arrays (dicts, lists, NamedTuples...).
    default
        Name of a leaf at the root.

    Returns
    -------
    Dict from name to leaf, in flattening order.
    """
    if isinstance(tree, tuple) and hasattr(tree, "_asdict"):
        tree = tree._asdict()
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = _safe_name(jax.tree_util.keystr(path, simple=True, separator="."), default)
        if name in out:
            raise ValueError(f"two leaves map to the same variable name {name!r}")
        out[name] = leaf
    return out


def _to_numpy(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind == "V" or (np.issubdtype(x.dtype, np.floating) and x.dtype.itemsize < 4):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"unsupported dtype {x.dtype}")
        x = x.astype(np.float32)  # bfloat16/float16/float8 cannot be written to netCDF
    return x


def _group(arg: str, tree, default: str, lead: tuple | None, ndim_lead: int = 2):
    """Flatten one group, convert to numpy and check the leading (chain, draw) axes."""
    if tree is None:
        return None
    if isinstance(tree, (np.ndarray, jax.Array)) or np.isscalar(tree):
        tree = {default: tree}
    flat = flatten_names(tree, default=default)
    out = {}
    for name, leaf in flat.items():
        arr = _to_numpy(leaf)
        if ndim_lead:
            if arr.ndim < ndim_lead:
                raise ValueError(
                    f"{arg}: leaf {name!r} has shape {arr.shape}; expected "
                    "(num_chains, num_draws, ...)"
                )
            if lead is not None and arr.shape[:ndim_lead] != lead:
                raise ValueError(
                    f"{arg}: leaf {name!r} has leading axes {arr.shape[:ndim_lead]}, "
                    f"expected (num_chains, num_draws) = {lead}"
                )
            lead = arr.shape[:ndim_lead]
        out[name] = arr
    if not out:
        raise ValueError(f"{arg} holds no arrays")
    return out


def _subsample(posterior: dict, max_weights: int, dims: dict, coords: dict):
    for name, arr in list(posterior.items()):
        size = int(np.prod(arr.shape[2:], dtype=np.int64))
        if size <= max_weights:
            continue
        idx = np.unique(np.linspace(0, size - 1, max_weights).round().astype(np.int64))
        posterior[name] = arr.reshape(arr.shape[:2] + (size,))[:, :, idx]
        dim = f"{name}_flat_index"
        dims[name] = [dim]
        coords[dim] = idx


def to_inference_data(
    positions,
    *,
    sample_stats=None,
    posterior_predictive=None,
    log_likelihood=None,
    observed_data=None,
    coords=None,
    dims=None,
    max_weights: int | None = None,
    attrs=None,
) -> az.InferenceData:
    """Convert sampler traces to an ArviZ ``InferenceData`` (built with ``az.from_dict``).

    Parameters
    ----------
    positions
        Pytree of arrays ``(num_chains, num_draws, *event_shape)``: the ``posterior`` group.
    sample_stats
        NamedTuple, dict or pytree of per-step arrays ``(num_chains, num_draws, ...)`` (the
        sampler's ``info``): the ``sample_stats`` group. A field named ``diverging`` (bool)
        or ``lp`` is understood by ArviZ plots.
    posterior_predictive
        Pytree of draws ``(num_chains, num_draws, ...)`` of replicated data.
    log_likelihood
        Pytree of pointwise log-likelihoods ``(num_chains, num_draws, num_obs)``; needed by
        ``az.loo`` and ``az.waic``.
    observed_data
        Pytree of observed arrays (no chain/draw axes).
    coords, dims
        As in ``az.from_dict``: coordinate values and per-variable dimension names (use the
        flattened names, e.g. ``"layers.0.W"``).
    max_weights
        If given, every ``posterior`` leaf with more than ``max_weights`` entries per draw is
        flattened and thinned to ``max_weights`` evenly spaced entries (their flat indices
        are kept as the coordinate ``<name>_flat_index``), to bound memory and file size for
        large networks.
    attrs
        Global attributes.

    Returns
    -------
    ``arviz.InferenceData``; low-precision floats (bfloat16, float16) are stored as float32
    and all names are netCDF-safe, so ``to_netcdf`` works.
    """
    posterior = _group("positions", positions, "theta", None)
    lead = next(iter(posterior.values())).shape[:2]
    stats = _group("sample_stats", sample_stats, "stat", lead)
    ppc = _group("posterior_predictive", posterior_predictive, "y", lead)
    loglik = _group("log_likelihood", log_likelihood, "y", lead)
    observed = _group("observed_data", observed_data, "y", None, ndim_lead=0)
    dims = {k: list(v) for k, v in (dims or {}).items()}
    coords = dict(coords or {})
    if max_weights is not None:
        if isinstance(max_weights, bool) or not isinstance(max_weights, int) or max_weights < 1:
            raise ValueError(f"max_weights must be a positive integer, got {max_weights!r}")
        _subsample(posterior, max_weights, dims, coords)
    import arviz as az

    return az.from_dict(
        posterior=posterior,
        sample_stats=stats,
        posterior_predictive=ppc,
        log_likelihood=loglik,
        observed_data=observed,
        coords=coords or None,
        dims=dims or None,
        attrs=attrs,
    )


# ----------------------------------------------------------------------------- diagnostics


def _as_float(x):
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating) or x.dtype.itemsize < 4:
        x = x.astype(jnp.float32)
    return x


def _check_chain_draw(name, x, min_draws=4):
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (chain, draw, ...), got {x.shape}")
    if x.shape[1] < min_draws:
        raise ValueError(f"{name} needs at least {min_draws} draws per chain, got {x.shape[1]}")
    if not isinstance(x, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(x))):
        bad = np.argwhere(~np.isfinite(np.asarray(x)))[0]
        raise ValueError(
            f"{name} holds NaN or inf draws (first at chain {bad[0]}, draw {bad[1]}): "
            "drop diverged draws before computing diagnostics"
        )


def _split_chains(x):
    half = x.shape[1] // 2
    return jnp.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _rhat_core(x):
    n = x.shape[1]
    chain_mean = x.mean(axis=1)
    within = x.var(axis=1, ddof=1).mean(axis=0)
    between = n * chain_mean.var(axis=0, ddof=1)
    constant = (x.max(axis=(0, 1)) - x.min(axis=(0, 1))) < np.finfo(np.float64).resolution
    return jnp.where(constant, jnp.nan, jnp.sqrt((between / within + n - 1) / n))


@jax.jit
def _split_rhat_jit(x):
    return _rhat_core(_split_chains(x))


@jax.jit
def _rhat_jit(x):
    return _rhat_core(x)


def split_rhat(x):
    r"""Classic split potential scale reduction factor, vectorised over trailing axes.

    Each chain is split in halves (dropping the middle draw for odd lengths), giving
    :math:`m` chains of :math:`n` draws; with :math:`B = n\,\mathrm{Var}_j(\bar x_j)` and
    :math:`W = \mathrm{mean}_j\, s_j^2`,

    .. math:: \hat R = \sqrt{\frac{(n - 1)/n \cdot W + B/n}{W}}

    (Gelman et al., "Bayesian Data Analysis", 3rd ed., 2013, section 11.4); the same as
    ``az.rhat(..., method="split")`` and ``numpyro.diagnostics.split_gelman_rubin``.

    Parameters
    ----------
    x
        Array ``(chain, draw, ...)`` with at least 4 draws.

    Returns
    -------
    Array of shape ``x.shape[2:]`` (NaN where a quantity is constant, as in ArviZ).
    """
    x = _as_float(x)
    _check_chain_draw("x", x)
    return _split_rhat_jit(x)


def rhat(x):
    r"""Classic (unsplit) potential scale reduction factor over trailing axes.

    As :func:`split_rhat` without splitting the chains (``az.rhat(method="identity")``).

    Parameters
    ----------
    x
        Array ``(chain, draw, ...)`` with at least 2 chains and 4 draws.
    """
    x = _as_float(x)
    _check_chain_draw("x", x)
    if x.shape[0] < 2:
        raise ValueError(f"x needs at least 2 chains for unsplit R-hat, got {x.shape[0]}")
    return _rhat_jit(x)


def _ess_core(x):
    m, n = x.shape[:2]
    x = jnp.moveaxis(x, (0, 1), (-2, -1))  # (..., chain, draw): contiguous reductions
    size = 2 ** int(math.ceil(math.log2(2 * n)))
    chain_mean = x.mean(axis=-1)
    spec = jnp.fft.rfft(x - chain_mean[..., None], n=size, axis=-1)
    acov = jnp.fft.irfft(spec.real**2 + spec.imag**2, n=size, axis=-1)[..., :n] / n
    mean_var = acov[..., 0].mean(axis=-1) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + chain_mean.var(axis=-1, ddof=1)
    rho = 1.0 - (mean_var[..., None] - acov.mean(axis=-2)) / var_plus[..., None]
    rho = rho.at[..., 0].set(1.0)
    # Geyer's initial positive sequence over pairs P_k = rho_2k + rho_2k+1 (as ArviZ's _ess):
    # pairs 0..J-1 are kept, J = first k with P_k <= 0, capped at j_max = (n - 3) // 2.
    j_max = max((n - 3) // 2, 0)
    pairs = rho[..., 0 : 2 * j_max + 2 : 2] + rho[..., 1 : 2 * j_max + 2 : 2]
    keep = jnp.cumprod((pairs[..., :j_max] > 0).astype(x.dtype), axis=-1)
    num_kept = keep.sum(axis=-1).astype(jnp.int32)
    # Geyer's initial monotone sequence: running minimum of the kept pairs.
    monotone = jax.lax.cummin(pairs[..., :j_max], axis=pairs.ndim - 1)
    pair_sum = (monotone * keep).sum(axis=-1)
    last_even = jnp.take_along_axis(rho, 2 * num_kept[..., None], axis=-1)[..., 0]
    last_pair = jnp.take_along_axis(pairs, num_kept[..., None], axis=-1)[..., 0]
    term = jnp.where((last_even > 0) | (last_pair >= 0), last_even, 0.0)
    tau = -1.0 + 2.0 * pair_sum + term
    total = m * n
    tau = jnp.maximum(tau, 1.0 / math.log10(total))
    constant = (x.max(axis=(-2, -1)) - x.min(axis=(-2, -1))) < np.finfo(np.float64).resolution
    return jnp.where(constant, float(total), total / tau)


@jax.jit
def _ess_split_jit(x):
    return _ess_core(_split_chains(x))


@jax.jit
def _ess_jit(x):
    return _ess_core(x)


def ess(x, *, split: bool = True):
    r"""Effective sample size of the mean, vectorised over trailing axes.

    Autocovariances by FFT along draws; the combined autocorrelation estimate
    :math:`\hat\rho_t = 1 - (W - \overline{\gamma_t}) / \widehat{\mathrm{var}}^+` (Stan
    reference manual; Vehtari et al., Bayesian Anal. 2021, eq. 10); truncated with Geyer's
    initial positive and initial monotone sequences (Geyer, Stat. Sci. 1992);
    :math:`\mathrm{ESS} = mn / \hat\tau`,
    :math:`\hat\tau = -1 + 2\sum_{t \le 2J-1} \hat\rho_t + \hat\rho_{2J}^+`, floored at
    :math:`1/\log_{10}(mn)`. Matches ``az.ess(method="mean")`` (``split=True``: chains split
    in halves first) and ``az.ess(method="identity")`` (``split=False``) up to float32
    rounding.

    Parameters
    ----------
    x
        Array ``(chain, draw, ...)`` with at least 4 draws.
    split
        Split each chain in halves first (detects drift within chains).

    Returns
    -------
    Array of shape ``x.shape[2:]``.
    """
    x = _as_float(x)
    _check_chain_draw("x", x, min_draws=8 if split else 4)
    return _ess_split_jit(x) if split else _ess_jit(x)


def _chunked(fn, x, chunk_size):
    """Apply ``fn`` on (chain, draw, chunk) column blocks of x (chain, draw, P)."""
    # Blocks of a power-of-two width, so leaves of many sizes share few compilations.
    total = x.shape[2]
    width = min(chunk_size, 2 ** int(math.ceil(math.log2(max(total, 1)))))
    pad = (-total) % width
    x = jnp.pad(x, ((0, 0), (0, 0), (0, pad)))
    parts = [fn(x[:, :, start : start + width]) for start in range(0, total + pad, width)]
    return jnp.concatenate(parts)[:total]


def weight_space_summary(positions, *, split: bool = True, chunk_size: int = 65536):
    """Fast per-leaf R-hat/ESS summary of a (possibly huge) parameter pytree.

    For each leaf ``(chain, draw, *event)`` computes :func:`split_rhat` and :func:`ess` for
    every entry (in column chunks of ``chunk_size`` to bound memory) and reports their median
    and maximum R-hat and minimum and median ESS. Weight-space R-hat of neural networks is
    inflated by symmetries (permutations of hidden units, sign flips): prefer function-space
    diagnostics (``bayesnn.diagnostics``) to judge convergence; use this table to spot leaves
    that do not move or move very slowly.

    Parameters
    ----------
    positions
        Pytree of arrays ``(num_chains, num_draws, ...)``.
    split
        Use split chains (as :func:`split_rhat`; for the ESS as ``az.ess(method="mean")``).
    chunk_size
        Number of entries processed at once.

    Returns
    -------
    ``pandas.DataFrame`` indexed by leaf name with columns ``size``, ``rhat_median``,
    ``rhat_max``, ``ess_min``, ``ess_median`` (NaN entries, e.g. constant weights, ignored;
    all-NaN leaves give NaN).
    """
    import pandas as pd

    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    flat = flatten_names(positions, default="theta")
    if not flat:
        raise ValueError("positions holds no arrays")
    rows = {}
    lead = None
    for name, leaf in flat.items():
        x = _as_float(leaf)
        _check_chain_draw(f"positions leaf {name!r}", x, min_draws=8 if split else 4)
        if lead is not None and x.shape[:2] != lead:
            raise ValueError(
                f"positions: leaf {name!r} has leading axes {x.shape[:2]}, expected {lead}"
            )
        lead = x.shape[:2]
        x = x.reshape(x.shape[:2] + (-1,))
        r = np.asarray(_chunked(_split_rhat_jit if split else _rhat_jit, x, chunk_size))
        e = np.asarray(_chunked(_ess_split_jit if split else _ess_jit, x, chunk_size))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN leaves give NaN
            rows[name] = {
                "size": int(x.shape[2]),
                "rhat_median": float(np.nanmedian(r)),
                "rhat_max": float(np.nanmax(r)),
                "ess_min": float(np.nanmin(e)),
                "ess_median": float(np.nanmedian(e)),
            }
    return pd.DataFrame.from_dict(rows, orient="index")
