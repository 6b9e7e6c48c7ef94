"""Function-space diagnostics and ArviZ predictive groups for Bayesian neural networks.

Weight-space R-hat/ESS are not meaningful for networks: hidden-unit permutations and sign
flips make chains that sample the same function distribution look unmixed (in a small BNN
run the median weight R-hat was 3.7 against 1.7 on predictions). Convergence is therefore
judged on **function values at probe inputs**: predictions are computed for every draw
(``vmap`` over chains and draws, in chunks with ``jax.lax.map(..., batch_size=...)`` to bound
memory), stored as an ArviZ ``posterior`` variable and diagnosed with the rank-normalised
split-R-hat and bulk ESS of Vehtari, Gelman, Simpson, Carpenter & Bürkner, "Rank-normalization,
folding, and localization: an improved R-hat", Bayesian Analysis 2021 (``az.rhat``,
``az.ess``), or with the fast classic versions of :mod:`samplers.results` for large probe
sets. See also Izmailov et al., "What are Bayesian neural network posteriors really like?",
ICML 2021, who report R-hat on function values.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from samplers import results as _results

if TYPE_CHECKING:  # arviz takes seconds to import: only where it is used
    import arviz as az

__all__ = [
    "FunctionSpaceDiagnostics",
    "predict_draws",
    "function_space_diagnostics",
    "posterior_predictive_inference_data",
]


class FunctionSpaceDiagnostics(NamedTuple):
    """Result of :func:`function_space_diagnostics`.

    Attributes
    ----------
    inference_data
        ``InferenceData`` whose ``posterior`` holds the predictions ``(chain, draw, probe,
        ...)``; ``az.summary(result.inference_data)`` gives the full table.
    rhat, ess
        R-hat and ESS per probe point and output, shape ``(num_probe, ...)``.
    max_rhat, min_ess
        Worst values over probe points (NaN entries ignored).
    """

    inference_data: az.InferenceData
    rhat: np.ndarray
    ess: np.ndarray
    max_rhat: float
    min_ess: float


def _lead(positions):
    leaves = jax.tree_util.tree_leaves(positions)
    if not leaves:
        raise ValueError("positions holds no arrays")
    lead = None
    for leaf in leaves:
        shape = jnp.shape(leaf)
        if len(shape) < 2:
            raise ValueError(
                f"positions leaves must have shape (num_chains, num_draws, ...), got {shape}"
            )
        if lead is not None and shape[:2] != lead:
            raise ValueError(
                f"positions leaves disagree on (num_chains, num_draws): {shape[:2]} vs {lead}"
            )
        lead = shape[:2]
    return lead


def _check_finite(name, x):
    if not isinstance(x, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{name} holds NaN or inf")


@functools.partial(jax.jit, static_argnames=("predict_fn", "chunk_size"))
def _predict_flat(predict_fn, flat_positions, x, chunk_size):
    fn = lambda p: predict_fn(p, x)
    if chunk_size is None:
        return jax.vmap(fn)(flat_positions)
    return jax.lax.map(fn, flat_positions, batch_size=chunk_size)


def predict_draws(predict_fn, positions, x, *, chunk_size: int | None = 256):
    """Evaluate ``predict_fn`` at inputs ``x`` for every posterior draw.

    Parameters
    ----------
    predict_fn
        ``predict_fn(params, x) -> f`` for one parameter pytree (e.g. a network's ``apply``).
        Pass the same function object across calls to reuse the compilation.
    positions
        Parameter pytree with leaves ``(num_chains, num_draws, ...)``.
    x
        Inputs, passed unchanged to ``predict_fn``.
    chunk_size
        Number of draws evaluated at once (``jax.lax.map`` with ``batch_size``), bounding
        memory at ``chunk_size`` forward passes; ``None`` vmaps over all draws at once.

    Returns
    -------
    Array ``(num_chains, num_draws, *f.shape)``.
    """
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    chains, draws = _lead(positions)
    x = jnp.asarray(x)
    _check_finite("x", x)
    flat = jax.tree_util.tree_map(
        lambda a: jnp.reshape(a, (chains * draws,) + jnp.shape(a)[2:]), positions
    )
    size = None if chunk_size is None else min(chunk_size, chains * draws)
    out = _predict_flat(predict_fn, flat, x, size)
    return out.reshape((chains, draws) + out.shape[1:])


def _probe_dims(var_name, shape, probe_dim):
    return {var_name: [probe_dim] + [f"{var_name}_dim_{i}" for i in range(len(shape) - 3)]}


def function_space_diagnostics(
    predict_fn,
    positions,
    x_probe,
    *,
    chunk_size: int | None = 256,
    method: str = "rank",
    var_name: str = "f",
    probe_dim: str = "probe",
) -> FunctionSpaceDiagnostics:
    """R-hat and ESS of predictions at probe inputs (function-space convergence diagnostics).

    Computes :math:`f_{cd} = ` ``predict_fn(theta_cd, x_probe)`` for every chain ``c`` and
    draw ``d`` (:func:`predict_draws`), stores them in an ``InferenceData`` (``posterior``
    variable ``var_name`` with dims ``(chain, draw, probe, ...)``) and computes, per probe
    point and output:

    - ``method="rank"`` (default): rank-normalised split-R-hat and bulk ESS (Vehtari et al.,
      Bayesian Analysis 2021; ``az.rhat``/``az.ess``), what ``az.summary`` reports;
    - ``method="split"``: classic split-R-hat and ESS of the mean
      (:func:`samplers.results.split_rhat`, :func:`samplers.results.ess`), vectorised in
      JAX, for thousands of probe points.

    Parameters
    ----------
    predict_fn
        ``predict_fn(params, x) -> f`` for one parameter pytree.
    positions
        Parameter pytree, leaves ``(num_chains, num_draws, ...)``; at least 2 chains are
        recommended (R-hat compares chains) and 4 draws are required.
    x_probe
        Probe inputs (e.g. test inputs or a grid), first axis = probe points.
    chunk_size
        Draws per forward batch (see :func:`predict_draws`).
    method
        ``"rank"`` or ``"split"``.
    var_name, probe_dim
        Variable and dimension names in the ``InferenceData``.

    Returns
    -------
    :class:`FunctionSpaceDiagnostics`.
    """
    if method not in ("rank", "split"):
        raise ValueError(f"method must be 'rank' or 'split', got {method!r}")
    chains, draws = _lead(positions)
    if draws < (8 if method == "split" else 4):
        raise ValueError(f"positions: need more draws per chain for diagnostics, got {draws}")
    f = predict_draws(predict_fn, positions, x_probe, chunk_size=chunk_size)
    if f.ndim < 3:
        raise ValueError(f"predict_fn must return an array with a probe axis, got {f.shape[2:]}")
    if not bool(jnp.all(jnp.isfinite(f))):
        bad = np.argwhere(~np.isfinite(np.asarray(f)))[0]
        raise ValueError(
            f"positions: predictions are NaN or inf at chain {bad[0]}, draw {bad[1]} "
            "(diverged draws?); R-hat and ESS are undefined"
        )
    idata = _results.to_inference_data(
        {var_name: f}, dims=_probe_dims(var_name, f.shape, probe_dim)
    )
    import arviz as az

    if method == "rank":
        rhat = np.asarray(az.rhat(idata, method="rank")[var_name].values)
        ess = np.asarray(az.ess(idata, method="bulk")[var_name].values)
    else:
        rhat = np.asarray(_results.split_rhat(f))
        ess = np.asarray(_results.ess(f))
    with np.errstate(all="ignore"):
        max_rhat = float(np.nanmax(rhat)) if np.isfinite(rhat).any() else float("nan")
        min_ess = float(np.nanmin(ess)) if np.isfinite(ess).any() else float("nan")
    return FunctionSpaceDiagnostics(idata, rhat, ess, max_rhat, min_ess)


def posterior_predictive_inference_data(
    predict_fn,
    positions,
    x,
    y,
    log_likelihood_fn,
    *,
    sample_fn=None,
    rng_key=None,
    idata: az.InferenceData | None = None,
    chunk_size: int | None = 256,
    var_name: str = "y",
    obs_dim: str = "obs",
) -> az.InferenceData:
    r"""ArviZ groups for predictive checks and model comparison at inputs ``x``.

    For each draw :math:`\theta_{cd}`: predictions :math:`f_{cd} = ` ``predict_fn(theta, x)``
    (``posterior`` variable ``"f"``), the pointwise log-likelihood
    :math:`\log p(y_i \mid f_{cd,i})` (``log_likelihood`` group, needed by ``az.loo`` /
    ``az.waic``; Vehtari, Gelman & Gabry, Stat. Comput. 2017), optionally replicated data
    :math:`\tilde y_{cd} \sim p(y \mid f_{cd})` (``posterior_predictive``), and ``y`` as
    ``observed_data``. Note that PSIS-LOO's Pareto :math:`\hat k` is often large for BNNs;
    report the test log predictive density (:mod:`bayesnn.metrics`) as well.

    Parameters
    ----------
    predict_fn
        ``predict_fn(params, x) -> f`` for one parameter pytree.
    positions
        Parameter pytree, leaves ``(num_chains, num_draws, ...)``.
    x, y
        Inputs and observed targets; ``y`` has the observations on its first axis.
    log_likelihood_fn
        ``log_likelihood_fn(f, y) -> (n,)`` pointwise log-likelihood for one draw
        (e.g. ``lambda f, y: norm.logpdf(y, f, sigma).sum(-1)``).
    sample_fn
        Optional ``sample_fn(rng_key, f) -> y_rep`` drawing replicated data for one draw.
    rng_key
        PRNG key, required with ``sample_fn``.
    idata
        Optional existing ``InferenceData`` (e.g. from
        :func:`samplers.results.to_inference_data`) to extend: ``"f"`` is added to its
        posterior (chains and draws must match) and the other groups are added or replaced.
    chunk_size
        Draws per forward batch (see :func:`predict_draws`).
    var_name, obs_dim
        Name of the observed variable in ``observed_data``, ``log_likelihood`` and
        ``posterior_predictive``, and of the observation dimension.

    Returns
    -------
    ``arviz.InferenceData``.
    """
    y = jnp.asarray(y)
    _check_finite("y", y)
    if y.ndim < 1:
        raise ValueError(f"y must have an observation axis, got shape {y.shape}")
    if sample_fn is not None and rng_key is None:
        raise ValueError("rng_key is required when sample_fn is given")
    chains, draws = _lead(positions)
    f = predict_draws(predict_fn, positions, x, chunk_size=chunk_size)
    if f.ndim < 3 or f.shape[2] != y.shape[0]:
        raise ValueError(
            f"predict_fn output {f.shape[2:]} must have the {y.shape[0]} observations of y "
            "on its first axis"
        )
    flat_f = f.reshape((chains * draws,) + f.shape[2:])
    loglik = jax.jit(jax.vmap(log_likelihood_fn, in_axes=(0, None)))(flat_f, y)
    if loglik.shape != (chains * draws, y.shape[0]):
        raise ValueError(
            f"log_likelihood_fn must return shape ({y.shape[0]},) per draw, got {loglik.shape[1:]}"
        )
    ppc = None
    if sample_fn is not None:
        keys = jax.random.split(rng_key, chains * draws)
        y_rep = jax.jit(jax.vmap(sample_fn))(keys, flat_f)
        ppc = {var_name: y_rep.reshape((chains, draws) + y_rep.shape[1:])}
    y_dims = [obs_dim] + [f"{var_name}_dim_{i}" for i in range(y.ndim - 1)]
    f_dims = [obs_dim] + [f"f_dim_{i}" for i in range(f.ndim - 3)]
    new = _results.to_inference_data(
        {"f": f},
        posterior_predictive=ppc,
        log_likelihood={var_name: loglik.reshape(chains, draws, y.shape[0])},
        observed_data={var_name: y},
        dims={"f": f_dims, var_name: y_dims},
    )
    if ppc is not None and ppc[var_name].shape[2:] != y.shape:
        raise ValueError(f"sample_fn must return shape {y.shape}, got {ppc[var_name].shape[2:]}")
    if idata is None:
        return new
    if "posterior" in idata.groups():
        post = idata.posterior
        if (post.sizes["chain"], post.sizes["draw"]) != (chains, draws):
            raise ValueError(
                f"idata: posterior has (chain, draw) = ({post.sizes['chain']}, "
                f"{post.sizes['draw']}), positions have ({chains}, {draws})"
            )
        merged = post.assign(f=new.posterior["f"].assign_coords(chain=post.chain, draw=post.draw))
        idata = idata.copy()
        idata.posterior = merged
        import arviz as az

        new = az.InferenceData(**{g: getattr(new, g) for g in new.groups() if g != "posterior"})
    else:
        idata = idata.copy()
    idata.extend(new, join="right")
    return idata
