"""Step sizes chosen from the model and the minibatch gradient noise.

Every SG-MCMC kernel has two sources of error that grow with the step size ``h``: the
discretisation of the diffusion and the minibatch gradient noise, which the kernels do not
correct. Both are predicted exactly for a Gaussian target: on a quadratic ``U = λ θ²/2`` with
a gradient estimate of noise variance ``v``, each kernel is a linear recurrence
``s' = A s + e`` (``s`` the position, and the momentum for the HMC kernels), whose stationary
covariance solves the discrete Lyapunov equation ``Σ = A Σ Aᵀ + Q``. The ratio

.. math::

    r(h) = \\frac{\\operatorname{Var}_\\infty(\\theta)}{T / \\lambda}

is the factor by which the sampler inflates (``r > 1``) or deflates the posterior variance.
For SGLD, ``r = (1 + h v / 2) / (1 - h λ / 2)``: the gradient-noise part ``h v / 2`` is the
condition ``h λ_max(V) / 4 ≪ 1`` of Welling and Teh (2011) in their parameterisation, and
for SGHMC the same calculation gives ``r ≈ 1 + h v / (2α)``, the condition ``\\hat B = h V / 2
≪ α`` of Chen, Fox and Guestrin (2014). :func:`choose_step_size` returns the largest ``h``
with a stable recurrence and ``|r(h) - 1| <= tolerance`` in the worst direction of the local
Gaussian approximation of the posterior at the given positions:

* the curvature ``λ``: the largest-magnitude eigenvalue of the (preconditioned) Hessian of
  ``-log p(θ | D)``, by power iteration with Hessian-vector products on the full data (or an
  unbiased subsample scaled by ``N/n``);
* the noise ``v``: the largest eigenvalue of the (preconditioned) covariance of the minibatch
  estimate, ``V = (1/B) Cov_i[∇ log p̂_i] (N - B)/(N - 1)`` with ``∇ log p̂_i`` the gradient
  of ``logdensity_fn(θ, {x_i}, N)`` (one example scaled to the data size; the finite-population
  factor is that of epoch-wise batches, drawn without replacement), from per-example
  gradients (``vmap``) at the current positions, through the ``n x n`` Gram matrix;
* both taken in the same direction (the worst case; near the mode ``V ≈ (N/B) H`` and the
  two directions agree).

The default ``tolerance = 0.1`` bounds the predicted bias of posterior variances by 10%, of
standard deviations by about 5%. The price is honest: with ``V ≈ (N/B) H`` near the mode the
noise condition makes ``h`` about ``tolerance B / N`` times the stability limit, so mixing
takes about ``N / (B tolerance)`` times the condition number of the posterior in steps,
whatever the kernel.

Positions at initialisation are far from the typical set (gradients and curvature there are
orders of magnitude larger), so :func:`tune_step_size` re-estimates ``h`` at the end of
burn-in rounds of growing length while the chains move, and reports every estimate.

Preconditioned kernels (``psgld``, ``adaptive_sghmc``) are analysed in the coordinates
``P^{-1/2} θ`` where ``P = 1/(ε + sqrt(E[ĝ²]))`` is the preconditioner they converge to;
``E[ĝ²] = (E ĝ)² + diag V`` is estimated from the same per-example gradients. Each kernel's
recurrence is in its ``StepSizeRule`` (see :data:`RULES`), with its update rule cited in its
module.

References
----------
M. Welling, Y. W. Teh. Bayesian learning via stochastic gradient Langevin dynamics. ICML 2011.
T. Chen, E. B. Fox, C. Guestrin. Stochastic gradient Hamiltonian Monte Carlo. ICML 2014.
S. Ahn, A. Korattikara, M. Welling. Bayesian posterior sampling via stochastic gradient
Fisher scoring. ICML 2012 (the stationary variance of noisy Langevin recurrences).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from samplers.sgmcmc.base import SGMCMCKernel

__all__ = [
    "LocalScales",
    "StepSizeInfo",
    "StepSizeRule",
    "RULES",
    "rule_for",
    "estimate_local_scales",
    "stationary_variance_ratio",
    "choose_step_size",
    "tune_step_size",
]


class LocalScales(NamedTuple):
    """Curvature and gradient-noise scales of the posterior at some positions.

    Attributes
    ----------
    curvature
        ``(num_chains,)`` largest-magnitude eigenvalue of the preconditioned Hessian
        ``P^{1/2} ∇²(-log p(θ | D)) P^{1/2}``.
    noise
        ``(num_chains, 2)``: the largest eigenvalue of ``P^{1/2} V P^{1/2}`` (``V`` the
        covariance of the minibatch gradient estimate), and ``P_i V_ii`` at the coordinate
        ``i`` of smallest ``P_i``.
    precond
        ``(num_chains, 2)``: the preconditioner along the top noise eigenvector ``u``
        (``1 / Σ_i u_i² / P_i``), and the smallest ``P_i`` (all ones without a
        preconditioner). Adaptive SGHMC subtracts its own noise estimate ``h⁴/P_i``; these
        say how much of it acts in each of the two directions.
    """

    curvature: jax.Array
    noise: jax.Array
    precond: jax.Array


class StepSizeInfo(NamedTuple):
    """What set the step size.

    Attributes
    ----------
    step_size
        The chosen step size (a float: the minimum over chains).
    per_chain
        ``(num_chains,)`` largest admissible step size of each chain.
    curvature, noise
        The :class:`LocalScales` entries the choice was made from.
    stability_limit
        ``(num_chains,)`` largest stable step size (spectral radius of ``A`` below 1).
    variance_ratio
        ``(num_chains,)`` predicted ``r(h)`` at the chosen step size.
    noise_ratio
        ``(num_chains,)`` minibatch-gradient noise variance per step over the injected noise
        variance at the chosen step size: ``h v / 2`` for SGLD (Welling and Teh's condition),
        ``h v / (2α) = B̂ / α`` for SGHMC (Chen et al.'s), in the top noise direction.
    history
        Earlier estimates (step sizes per round) when set by :func:`tune_step_size`.
    """

    step_size: float
    per_chain: np.ndarray
    curvature: np.ndarray
    noise: np.ndarray
    stability_limit: np.ndarray
    variance_ratio: np.ndarray
    noise_ratio: np.ndarray
    history: tuple = ()


# ---------------------------------------------------------------------------------------------
# Linear recurrences of each kernel on U = λ θ² / 2 (scaled coordinates)
# ---------------------------------------------------------------------------------------------


def _sgld_recurrence(h, lam, v, temperature, precond):
    del precond
    a = (1.0 - h * lam)[:, None, None]
    q = (2.0 * h * temperature + h * h * v)[:, None, None]
    return a, q


def _sghmc_recurrence(alpha, beta):
    def recurrence(h, lam, v, temperature, precond):
        del precond
        # p' = (1 - αh) p - hλθ + e,  θ' = θ + h p'  (symplectic Euler, see sghmc.py)
        one = np.ones_like(h)
        a = np.stack(
            [
                np.stack([1.0 - h * h * lam, h * (1.0 - alpha * h)], -1),
                np.stack([-h * lam * one, 1.0 - alpha * h], -1),
            ],
            -2,
        )
        q = h * h * v + np.maximum(h * temperature * (2.0 * alpha - h * temperature * beta), 0.0)
        shape = np.stack([np.stack([h * h, h], -1), np.stack([h, one], -1)], -2)
        return a, q[:, None, None] * shape

    return recurrence


def _adaptive_sghmc_recurrence(mdecay):
    def recurrence(h, lam, v, temperature, precond):
        # In y = P^{-1/2} θ, u = P^{-1/2} m: u' = (1-c) u - h² λ y + e, y' = y + u'. The
        # kernel injects N(0, max(2 h² c P T - h⁴, 1e-16)) in θ units, i.e.
        # max(2 h² c T - h⁴/P, 1e-16/P) in y units; ``precond`` is the P of the direction.
        keep = (1.0 - mdecay) * np.ones_like(h)
        a = np.stack(
            [
                np.stack([1.0 - h * h * lam, keep], -1),
                np.stack([-h * h * lam, keep], -1),
            ],
            -2,
        )
        injected = np.maximum(2.0 * h * h * mdecay * temperature - h**4 / precond, 1e-16 / precond)
        q = h**4 * v + injected
        return a, q[:, None, None] * np.ones((1, 2, 2))

    return recurrence


class StepSizeRule(NamedTuple):
    """A kernel's linearised update, used to predict its stationary variance.

    Attributes
    ----------
    recurrence
        ``(h, λ, v, T, p) -> (A, Q)``: the update ``s' = A s + e`` with ``Cov e = Q`` on
        ``U = λ θ²/2`` in preconditioned coordinates (``p``: preconditioner entry, for the
        kernels whose injected noise depends on it); the position is ``s[0]``.
    preconditioned
        Whether the kernel scales its gradient by ``P = 1/(ε + sqrt(E ĝ²))``.
    epsilon
        The ``ε`` of that preconditioner.
    """

    recurrence: Callable
    preconditioned: bool = False
    epsilon: float = 0.0


def _closure_value(kernel: SGMCMCKernel, name: str, default):
    fn = kernel.step
    names = fn.__code__.co_freevars
    if name in names and fn.__closure__ is not None:
        return fn.__closure__[names.index(name)].cell_contents
    return default


def _sgld_rule(kernel):
    return StepSizeRule(_sgld_recurrence)


def _sghmc_rule(kernel):
    alpha = float(_closure_value(kernel, "alpha", 0.01))
    beta = float(_closure_value(kernel, "beta", 0.0))
    return StepSizeRule(_sghmc_recurrence(alpha, beta))


def _psgld_rule(kernel):
    return StepSizeRule(_sgld_recurrence, True, float(_closure_value(kernel, "epsilon", 1e-5)))


def _adaptive_sghmc_rule(kernel):
    mdecay = float(_closure_value(kernel, "mdecay", 0.05))
    epsilon = float(_closure_value(kernel, "epsilon", 1e-16))
    return StepSizeRule(_adaptive_sghmc_recurrence(mdecay), True, epsilon)


#: Kernel name -> ``kernel -> StepSizeRule``. SGNHT is analysed as SGHMC with its initial
#: thermostat ``α`` (conservative: the thermostat settles above ``α`` by the gradient noise it
#: absorbs, Ding et al. 2014). CSGLD as SGLD (its gradient multiplier is 1 on a flat energy
#: PDF; a strongly flattened target needs a smaller step).
RULES: dict[str, Callable[[SGMCMCKernel], StepSizeRule]] = {
    "sgld": _sgld_rule,
    "csgld": _sgld_rule,
    "psgld": _psgld_rule,
    "sghmc": _sghmc_rule,
    "sgnht": _sghmc_rule,
    "adaptive_sghmc": _adaptive_sghmc_rule,
}


def rule_for(kernel: SGMCMCKernel) -> StepSizeRule:
    """The :class:`StepSizeRule` of a kernel, its hyperparameters read from the kernel."""
    if isinstance(kernel, StepSizeRule):
        return kernel
    if kernel.name not in RULES:
        raise ValueError(
            f"no step-size rule for kernel {kernel.name!r}; known: {sorted(RULES)}. Pass "
            "step_size explicitly."
        )
    return RULES[kernel.name](kernel)


def stationary_variance_ratio(
    rule: StepSizeRule, h, curvature, noise, temperature=1.0, precond=1.0
) -> np.ndarray:
    """``r(h)``: stationary position variance over ``T/λ`` (``inf`` where unstable).

    Solves ``Σ = A Σ Aᵀ + Q`` for the kernel's recurrence (``(I - A ⊗ A) vec Σ = vec Q``),
    for every entry of ``h`` at once.

    Parameters
    ----------
    rule
        A :class:`StepSizeRule`.
    h
        Step sizes (any shape).
    curvature, noise
        ``λ > 0`` and ``v >= 0`` of the direction considered (preconditioned coordinates).
    temperature
        ``T > 0``.
    precond
        Preconditioner entry of that direction (kernels whose injected noise depends on it).

    Returns
    -------
    Array of the shape of ``h``.
    """
    h = np.asarray(h, np.float64)
    flat = h.reshape(-1)
    a, q = rule.recurrence(
        flat, float(curvature), float(noise), float(temperature), float(precond)
    )
    k = a.shape[-1]
    radius = np.max(np.abs(np.linalg.eigvals(a)), axis=-1)
    kron = np.einsum("gij,gkl->gikjl", a, a).reshape(-1, k * k, k * k)
    with np.errstate(all="ignore"):
        sigma = np.linalg.solve(np.eye(k * k)[None] - kron, q.reshape(-1, k * k, 1))
        ratio = sigma[:, 0, 0] * float(curvature) / float(temperature)
    bad = (radius >= 1.0) | ~np.isfinite(ratio) | (ratio <= 0)
    return np.where(bad, np.inf, ratio).reshape(h.shape)


def _largest_admissible(rule, curvature, noise, temperature, precond, tolerance, grid):
    """Largest grid step within ``tolerance`` below the first unstable one, and that limit.

    The admissible set need not start at 0: adaptive SGHMC's noise floor (``1e-16``) dominates
    at very small steps.
    """
    ratios = np.stack(
        [
            stationary_variance_ratio(rule, grid, curvature, v, temperature, p)
            for v, p in zip(noise, precond, strict=True)
        ]
    )
    unstable = ~np.isfinite(ratios).all(0)
    if unstable.all():
        return math.nan, math.nan
    # at the smallest steps the spectral radius rounds to 1: skip those
    start = int(np.argmin(unstable))
    rest = unstable[start:]
    first_bad = start + (int(np.argmax(rest)) if rest.any() else rest.size)
    stable = float(grid[first_bad - 1])
    ok = (np.abs(ratios - 1.0) <= tolerance).all(0)
    ok[first_bad:] = False
    if not ok.any():
        return math.nan, stable
    return float(grid[np.nonzero(ok)[0][-1]]), stable


# ---------------------------------------------------------------------------------------------
# Local curvature and gradient noise
# ---------------------------------------------------------------------------------------------


def _subsample(rng_key, data, n):
    size = jax.tree_util.tree_leaves(data)[0].shape[0]
    if n >= size:
        return data
    idx = jax.random.choice(rng_key, size, (n,), replace=False)
    return jax.tree.map(lambda a: jnp.take(a, idx, axis=0), data)


def _scales_one(
    rng_key,
    position,
    logdensity_fn,
    grad_data,
    hess_data,
    data_size,
    batch_size,
    fpc,
    num_iterations,
    preconditioned,
    epsilon,
):
    flat, unravel = ravel_pytree(position)
    n = jax.tree_util.tree_leaves(grad_data)[0].shape[0]

    def one_example(theta, example):
        batch = jax.tree.map(lambda a: a[None], example)
        return logdensity_fn(unravel(theta), batch, data_size)

    per_example = jax.vmap(jax.grad(one_example), in_axes=(None, 0))(flat, grad_data)
    mean = jnp.mean(per_example, axis=0, keepdims=True)
    centred = per_example - mean
    # diag V and E[ĝ²] of the minibatch estimate (V = Cov_i / B times the finite-population
    # factor).
    var_diag = jnp.sum(centred * centred, axis=0) / (n - 1) / batch_size * fpc
    if preconditioned:
        precond = 1.0 / (epsilon + jnp.sqrt(mean[0] * mean[0] + var_diag))
    else:
        precond = jnp.ones_like(flat)
    scaled = centred * jnp.sqrt(precond)[None, :]
    gram = scaled @ scaled.T / (n - 1) / batch_size * fpc
    eigval, eigvec = jnp.linalg.eigh(gram)
    top = scaled.T @ eigvec[:, -1]  # top eigenvector of P^1/2 V P^1/2 in parameter space
    top = top / jnp.maximum(jnp.linalg.norm(top), 1e-30)
    worst = jnp.argmin(precond)
    noise = jnp.stack([jnp.maximum(eigval[-1], 0.0), precond[worst] * var_diag[worst]])
    along = 1.0 / jnp.sum(top * top / precond)

    hess_size = jax.tree_util.tree_leaves(hess_data)[0].shape[0]

    def neg_grad(theta):
        return -jax.grad(lambda t: logdensity_fn(unravel(t), hess_data, data_size))(theta)

    sqrt_p = jnp.sqrt(precond)

    def hvp(u):
        return sqrt_p * jax.jvp(neg_grad, (flat,), (sqrt_p * u,))[1]

    del hess_size
    u0 = jax.random.normal(rng_key, flat.shape, flat.dtype)
    u0 = u0 / jnp.linalg.norm(u0)

    def body(_, carry):
        u, _ = carry
        w = hvp(u)
        norm = jnp.linalg.norm(w)
        return w / jnp.maximum(norm, 1e-30), norm

    _, curvature = jax.lax.fori_loop(0, num_iterations, body, (u0, jnp.zeros((), flat.dtype)))
    return curvature, noise, jnp.stack([along, precond[worst]])


def estimate_local_scales(
    rng_key,
    logdensity_fn: Callable,
    data,
    positions,
    *,
    batch_size: int,
    batches: str = "epoch",
    num_examples: int = 256,
    max_hessian_examples: int = 4096,
    num_iterations: int = 30,
    preconditioned: bool = False,
    epsilon: float = 0.0,
) -> LocalScales:
    """Curvature and minibatch-noise scales at each chain's position.

    Parameters
    ----------
    rng_key
        PRNG key (subsamples, power-iteration start).
    logdensity_fn
        ``(position, batch, data_size) -> scalar`` minibatch log posterior (prior plus
        ``N/B`` times the batch log-likelihood), as for the driver.
    data
        Pytree of arrays sharing the leading (example) axis.
    positions
        Pytree with a leading chain axis.
    batch_size
        The sampler's minibatch size ``B``.
    batches
        ``"epoch"`` (without replacement: finite-population factor ``(N-B)/(N-1)``) or
        ``"replace"``.
    num_examples
        Examples whose per-example gradients estimate the noise covariance.
    max_hessian_examples
        The Hessian uses the full data up to this size, else an unbiased subsample.
    num_iterations
        Power iterations for the curvature.
    preconditioned, epsilon
        Analyse in the coordinates of the RMSprop-type preconditioner
        ``P = 1/(ε + sqrt(E ĝ²))``.

    Returns
    -------
    LocalScales
    """
    if batches not in ("epoch", "replace"):
        raise ValueError(f"batches must be 'epoch' or 'replace', got {batches!r}")
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("data must contain at least one array")
    data_size = int(leaves[0].shape[0])
    if not isinstance(batch_size, int) or not 1 <= batch_size <= data_size:
        raise ValueError(f"batch_size must be an integer in [1, {data_size}], got {batch_size!r}")
    if num_examples < 2:
        raise ValueError(f"num_examples must be >= 2, got {num_examples!r}")
    pleaves = jax.tree_util.tree_leaves(positions)
    if not pleaves or any(jnp.ndim(a) < 1 for a in pleaves):
        raise ValueError("positions must be a pytree of arrays with a leading chain axis")
    num_chains = int(jnp.shape(pleaves[0])[0])
    fpc = (data_size - batch_size) / max(data_size - 1, 1) if batches == "epoch" else 1.0
    keys = jax.random.split(rng_key, num_chains + 2)
    grad_data = _subsample(keys[0], data, num_examples)
    hess_data = _subsample(keys[1], data, max_hessian_examples)

    def one(key, position):
        return _scales_one(
            key,
            position,
            logdensity_fn,
            grad_data,
            hess_data,
            data_size,
            batch_size,
            fpc,
            num_iterations,
            preconditioned,
            epsilon,
        )

    # Chains one at a time: the per-example gradients are (num_examples, num_params) each.
    curvature, noise, precond = jax.lax.map(lambda args: one(*args), (keys[2:], positions))
    return LocalScales(curvature, noise, precond)


_estimate_jit = jax.jit(
    estimate_local_scales,
    static_argnames=(
        "logdensity_fn",
        "batch_size",
        "batches",
        "num_examples",
        "max_hessian_examples",
        "num_iterations",
        "preconditioned",
        "epsilon",
    ),
)


def choose_step_size(
    rng_key,
    kernel: SGMCMCKernel | StepSizeRule,
    logdensity_fn: Callable,
    data,
    positions,
    *,
    batch_size: int,
    batches: str = "epoch",
    temperature: float = 1.0,
    tolerance: float = 0.1,
    num_examples: int = 256,
    num_iterations: int = 30,
) -> StepSizeInfo:
    """The largest step size whose predicted variance bias is within ``tolerance``.

    See the module docstring for the rule. The returned ``step_size`` is the minimum over
    chains; ``info.per_chain`` has each chain's value.

    Parameters
    ----------
    rng_key
        PRNG key.
    kernel
        An :class:`~samplers.sgmcmc.base.SGMCMCKernel` of :data:`RULES` (its hyperparameters
        are read from it) or a :class:`StepSizeRule`.
    logdensity_fn, data, positions, batch_size, batches, num_examples, num_iterations
        As for :func:`estimate_local_scales`.
    temperature
        Posterior temperature ``T > 0``.
    tolerance
        Largest admissible ``|r(h) - 1|`` (relative bias of posterior variances), in (0, 1).

    Returns
    -------
    StepSizeInfo
    """
    if not 0 < float(tolerance) < 1:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")
    if not float(temperature) > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    rule = rule_for(kernel)
    scales = _estimate_jit(
        rng_key,
        logdensity_fn,
        data,
        positions,
        batch_size=batch_size,
        batches=batches,
        num_examples=num_examples,
        num_iterations=num_iterations,
        preconditioned=rule.preconditioned,
        epsilon=rule.epsilon,
    )
    return _choose_from_scales(rule, scales, float(temperature), float(tolerance))


def _choose_from_scales(rule, scales, temperature, tolerance) -> StepSizeInfo:
    curvature = np.asarray(scales.curvature, np.float64)
    noise = np.asarray(scales.noise, np.float64)
    precond = np.asarray(scales.precond, np.float64)
    if not (np.isfinite(curvature).all() and np.isfinite(noise).all()):
        raise FloatingPointError(
            "the curvature or gradient-noise estimate is not finite at the given positions "
            f"(curvature {curvature}, noise {noise}); check the model and the starting points"
        )
    per_chain, limit, ratio, noise_ratio = [], [], [], []
    for c in range(curvature.shape[0]):
        lam = max(curvature[c], 1e-12)
        # ten decades up to beyond the stability limit (1/λ for first-order kernels,
        # 1/sqrt(λ) for second-order ones), 20 points per decade
        top = 4.0 / math.sqrt(lam) + 4.0 / lam
        grid = np.logspace(math.log10(top) - 10, math.log10(top), 201)
        best, stable = _largest_admissible(
            rule, lam, noise[c], temperature, precond[c], tolerance, grid
        )
        if not math.isfinite(best):
            raise FloatingPointError(
                f"no step size keeps the predicted variance bias within {tolerance} for chain "
                f"{c} (curvature {lam:.3g}, gradient noise {noise[c, 0]:.3g}); pass step_size "
                "explicitly or a larger tolerance"
            )
        p = float(precond[c, 0])
        r = float(stationary_variance_ratio(rule, best, lam, noise[c, 0], temperature, p))
        q_total = rule.recurrence(np.array([best]), lam, noise[c, 0], temperature, p)[1]
        q_injected = rule.recurrence(np.array([best]), lam, 0.0, temperature, p)[1]
        per_chain.append(best)
        limit.append(stable)
        ratio.append(r)
        noise_ratio.append(float(q_total[0, -1, -1] / q_injected[0, -1, -1] - 1.0))
    per_chain = np.asarray(per_chain)
    return StepSizeInfo(
        float(per_chain.min()),
        per_chain,
        curvature,
        noise[:, 0],
        np.asarray(limit),
        np.asarray(ratio),
        np.asarray(noise_ratio),
    )


def _burn_in(kernel, logdensity_fn, batch_size, temperature):
    """``run(rng_key, positions, data, h, num_steps) -> positions``: a traced step size and
    trip count, so every round reuses one compilation (kernel state restarted per round,
    minibatches drawn with replacement)."""

    def chain(rng_key, position, data, h, num_steps):
        size = jax.tree_util.tree_leaves(data)[0].shape[0]
        grad_fn = jax.value_and_grad(logdensity_fn)

        def body(t, state):
            key = jax.random.fold_in(rng_key, t)
            idx = jax.random.randint(jax.random.fold_in(key, 0), (batch_size,), 0, size)
            batch = jax.tree.map(lambda a: jnp.take(a, idx, axis=0), data)
            value, grad = grad_fn(state.position, batch, size)
            new, _ = kernel.step(
                jax.random.fold_in(key, 1), state, value, grad, h, temperature, True
            )
            return jax.tree.map(lambda n, o: n.astype(o.dtype), new, state)

        state = jax.lax.fori_loop(0, num_steps, body, kernel.init(position))
        return state.position

    def run(rng_key, positions, data, h, num_steps):
        num_chains = jax.tree_util.tree_leaves(positions)[0].shape[0]
        keys = jax.random.split(rng_key, num_chains)
        return jax.vmap(chain, in_axes=(0, 0, None, None, None))(
            keys, positions, data, h, num_steps
        )

    return jax.jit(run)


_MAX_RETRIES = 6


def tune_step_size(
    rng_key,
    kernel: SGMCMCKernel,
    logdensity_fn: Callable,
    data,
    positions,
    *,
    batch_size: int,
    num_steps: int,
    num_rounds: int = 4,
    stability_fraction: float = 0.5,
    num_refinements: int = 2,
    **choose_kwargs: Any,
):
    """Burn in while re-estimating the local scales as the chains move; choose ``h`` at the end.

    Far from the typical set the gradient noise is orders of magnitude above its value there
    and the accuracy rule would give a step too small to move. The first ``num_rounds``
    burn-in rounds (half of ``num_steps``, lengths doubling) therefore run at
    ``stability_fraction`` times the stability limit (accuracy does not matter while burning
    in, only getting there), re-estimated at the start of each round. A round whose chains
    leave the finite numbers (the curvature grew on the way, e.g. as a learned noise scale
    shrinks) is rerun from its start with a step four times smaller.

    A step near the stability limit also biases where the chains settle: the discretisation
    inflates the variance, so a learned noise scale stays above its posterior range, where
    the curvature (about ``N / σ²``) is smaller. The accuracy step chosen there can be
    unstable once the chains reach the posterior's own scales, which shows as finite bursts,
    not as NaNs. The other half of ``num_steps`` is therefore ``num_refinements`` rounds of
    equal length run *at the accuracy step*: each chooses the step by
    :func:`choose_step_size` at the positions reached, runs the round at it, and re-estimates;
    the result is the smaller of the last two estimates, and never above the last stability
    round's step. The caller then runs (part of its
    burn-in and) the sampling at that step size.

    Parameters
    ----------
    rng_key
        PRNG key.
    kernel, logdensity_fn, data, positions, batch_size
        As for the driver; ``positions`` has a leading chain axis.
    num_steps
        Total burn-in steps over all rounds.
    num_rounds
        Number of burn-in rounds at a fraction of the stability limit.
    stability_fraction
        Burn-in step as a fraction of the smallest per-chain stability limit, in (0, 1).
    num_refinements
        Number of rounds at the accuracy step that follow (0: choose once, after the
        stability rounds, from all of ``num_steps``).
    **choose_kwargs
        Passed to :func:`choose_step_size` (``tolerance``, ``temperature``, ``batches``...).

    Returns
    -------
    ``(positions, info)``: the positions after burn-in and the final :class:`StepSizeInfo`,
    whose ``history`` lists the step size of every round, stability rounds first.
    """
    rule_for(kernel)  # an unknown kernel fails before any argument check or compilation
    if not isinstance(num_rounds, int) or num_rounds < 1:
        raise ValueError(f"num_rounds must be a positive integer, got {num_rounds!r}")
    if isinstance(num_refinements, bool) or not isinstance(num_refinements, int):
        raise ValueError(f"num_refinements must be an integer >= 0, got {num_refinements!r}")
    if num_refinements < 0:
        raise ValueError(f"num_refinements must be an integer >= 0, got {num_refinements!r}")
    if not isinstance(num_steps, int) or num_steps < 2 * (num_rounds + num_refinements):
        raise ValueError(
            "num_steps must be an integer >= 2 * (num_rounds + num_refinements) = "
            f"{2 * (num_rounds + num_refinements)}, got {num_steps!r}"
        )
    if not 0 < stability_fraction < 1:
        raise ValueError(f"stability_fraction must be in (0, 1), got {stability_fraction!r}")
    run = _burn_in(kernel, logdensity_fn, batch_size, float(choose_kwargs.get("temperature", 1.0)))
    refine_steps = num_steps // 2 if num_refinements else 0
    weights = 2.0 ** np.arange(num_rounds)
    stability_steps = num_steps - refine_steps
    lengths = np.maximum(1, np.floor(stability_steps * weights / weights.sum())).astype(int)
    lengths[-1] += stability_steps - lengths.sum()
    history = []
    keys = jax.random.split(rng_key, 2 * num_rounds + 1)
    for k in range(num_rounds):
        info = choose_step_size(
            keys[2 * k],
            kernel,
            logdensity_fn,
            data,
            positions,
            batch_size=batch_size,
            **choose_kwargs,
        )
        h = stability_fraction * float(np.min(info.stability_limit))
        positions, h = _run_round(run, keys[2 * k + 1], positions, data, h, int(lengths[k]), k)
        history.append(h)

    def choose(rng_key):
        return choose_step_size(
            rng_key, kernel, logdensity_fn, data, positions, batch_size=batch_size,
            **choose_kwargs,
        )  # fmt: skip

    info = choose(keys[-1])
    if num_refinements:
        # never above the last burn-in step: far from the posterior's own scales (e.g. a
        # learned noise scale still large) the accuracy rule can see a flat density
        info = info._replace(step_size=min(info.step_size, history[-1]))
        refine_keys = jax.random.split(jax.random.fold_in(rng_key, 1), 2 * num_refinements)
        edges = np.linspace(0, refine_steps, num_refinements + 1).astype(int)
        for j in range(num_refinements):
            k = num_rounds + j
            positions, h = _run_round(
                run, refine_keys[2 * j], positions, data, info.step_size, int(np.diff(edges)[j]), k
            )
            history.append(h)
            new = choose(refine_keys[2 * j + 1])
            info = new if new.step_size <= h else info._replace(step_size=h)
    return positions, info._replace(history=tuple(history))


def _run_round(run, rng_key, positions, data, h, num_steps, k):
    """Run one burn-in round; retry from its start with a 4x smaller step if it diverges."""
    for _ in range(_MAX_RETRIES):
        moved = run(rng_key, positions, data, h, num_steps)
        if all(bool(jnp.isfinite(a).all()) for a in jax.tree_util.tree_leaves(moved)):
            return moved, h
        h /= 4.0  # the curvature grew along the way: retry the round with a smaller step
    raise FloatingPointError(
        f"burn-in round {k} diverged even at step size {h:.3g}; check the model or "
        "pass step_size explicitly"
    )
