"""BlackJAX's own SG-MCMC kernels (``blackjax.sgld``, ``blackjax.sghmc``) on the driver.

BlackJAX's SG kernels take a *gradient estimator* ``grad_estimator(position, minibatch)`` and
a minibatch at every call; the driver (:func:`samplers.sgmcmc.sample`) owns the minibatch
stream and the estimator (``N/B``-scaled minibatch gradient of ``logdensity_fn``, with
clipping and control variates when asked). :func:`blackjax_kernel` turns the BlackJAX object
into an :class:`~samplers.sgmcmc.base.SGMCMCKernel`-like kernel whose :meth:`BlackJAXKernel.bind`
receives that estimator, bound to the step's minibatch, from the driver:

>>> import blackjax                                                   # doctest: +SKIP
>>> sgmcmc.sample(key, blackjax.sgld, logdensity, data, init, ...)    # doctest: +SKIP
>>> sgmcmc.sample(key, blackjax_kernel(blackjax.sghmc, num_integration_steps=5, alpha=1.0),
...               logdensity, data, init, ...)                        # doctest: +SKIP

Conventions (BlackJAX 1.7):

* ``blackjax.sgld`` is the Euler step of overdamped Langevin dynamics,
  ``θ' = θ + h ∇log p̂(θ) + sqrt(2 T h) ξ``, on the same integrator and noise as
  :func:`samplers.sgmcmc.sgld`: given the same key it makes the same draw. The gradient at
  the current position is the one the driver computed already (one gradient per step).
* ``blackjax.sghmc`` redraws the momentum ``p ~ N(0, I)`` at every call and makes
  ``num_integration_steps`` explicit-Euler steps ``θ ← θ + h p``, ``p ← (1 - α h) p +
  h ∇log p̂(θ) + sqrt(h T (2α - h T β)) ξ`` on the *same* minibatch (one gradient per
  integration step, Chen, Fox and Guestrin 2014 with Ma, Chen and Fox 2015's scaling). Unlike
  :func:`samplers.sgmcmc.sghmc` (one step per minibatch, persistent momentum), each driver
  step is one BlackJAX call, so ``num_integration_steps`` gradients per step; its
  trajectories are short HMC runs without accept/reject, and its discretisation bias on a
  Gaussian target of curvature ``λ`` is of order ``h² λ`` (see the tests).

The automatic step size (``step_size=None``) needs a step-size rule for the kernel
(:mod:`samplers.sgmcmc.step_size`); these adapters have none: pass ``step_size``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

from samplers.sgmcmc.base import SGMCMCKernel, check_friction

__all__ = ["BlackJAXState", "BlackJAXKernel", "blackjax_kernel", "as_kernel"]


class BlackJAXState(NamedTuple):
    """The state of a BlackJAX SG kernel whose own state is the bare position."""

    position: Any


def _supported() -> dict:
    from blackjax.sgmcmc import sghmc, sgld

    return {sgld.as_top_level_api: "sgld", sghmc.as_top_level_api: "sghmc"}


def _check_params(name: str, params: dict) -> None:
    if name == "sghmc":
        steps = params.get("num_integration_steps", 10)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(
                f"blackjax.sghmc: num_integration_steps must be an integer >= 1, got {steps!r}"
            )
        check_friction(params.get("alpha", 0.01), params.get("beta", 0.0))
    for key, value in params.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"blackjax.{name}: {key} must be finite, got {value!r}")


class BlackJAXKernel(NamedTuple):
    """A BlackJAX SG kernel (``as_top_level_api(grad_estimator, **params)``) for the driver.

    Attributes
    ----------
    algorithm
        BlackJAX's ``as_top_level_api`` of the kernel (e.g. ``blackjax.sghmc.differentiable``).
    params
        Its hyperparameters as sorted ``(name, value)`` pairs (hashable, so the driver's
        compiled step is cached per kernel and hyperparameters).
    name
        ``"blackjax.<kernel>(<hyperparameters>)"``, e.g. ``"blackjax.sghmc(alpha=0.5)"``,
        used in diagnostics and checkpoint fingerprints (so a checkpoint of a run with other
        hyperparameters is refused).
    """

    algorithm: Callable
    params: tuple
    name: str

    def init(self, position) -> BlackJAXState:
        """The state: the position (BlackJAX's SGLD and SGHMC keep nothing else)."""
        return BlackJAXState(position)

    def bind(self, grad_fn: Callable | None) -> Callable:
        """The kernel step for one minibatch.

        ``grad_fn(position) -> gradient`` is the driver's minibatch gradient estimator bound
        to the step's minibatch; it becomes BlackJAX's ``grad_estimator``. At the current
        position the gradient the driver passes to the step is used (the same value, not
        computed twice). ``grad_fn=None`` (the plain :attr:`step`) serves kernels that only
        need that gradient (SGLD).
        """

        def step(rng_key, state, logdensity, logdensity_grad, step_size, temperature, adapt):
            del logdensity, adapt
            current = state.position

            def grad_estimator(position, minibatch):
                del minibatch  # grad_fn is bound to the step's minibatch
                if position is current:  # trace time: the very object passed below
                    return logdensity_grad
                if grad_fn is None:
                    raise ValueError(
                        f"{self.name} evaluates gradients away from the current position: "
                        "run it through samplers.sgmcmc.sample (which binds the estimator)"
                    )
                return grad_fn(position)

            algorithm = self.algorithm(grad_estimator, **dict(self.params))
            position = algorithm.step(rng_key, current, None, step_size, temperature)
            return BlackJAXState(position), ()

        return step

    @property
    def step(self) -> Callable:
        """The step with the gradient at the current position only (``bind(None)``)."""
        return self.bind(None)


def blackjax_kernel(algorithm, **params) -> BlackJAXKernel:
    """Wrap BlackJAX's ``blackjax.sgld`` or ``blackjax.sghmc`` for :func:`samplers.sgmcmc.sample`.

    Parameters
    ----------
    algorithm
        The BlackJAX object as exported (``blackjax.sgld``, ``blackjax.sghmc``), its module
        (``blackjax.sgmcmc.sghmc``) or its ``as_top_level_api``.
    **params
        Hyperparameters of ``as_top_level_api`` besides ``grad_estimator``, e.g.
        ``num_integration_steps``, ``alpha``, ``beta`` for SGHMC.

    Returns
    -------
    BlackJAXKernel
    """
    factory = getattr(algorithm, "differentiable", None) or getattr(
        algorithm, "as_top_level_api", algorithm
    )
    supported = _supported()
    if factory not in supported:
        raise TypeError(
            f"kernel {algorithm!r} is not one of BlackJAX's SG kernels supported by the driver "
            "(blackjax.sgld, blackjax.sghmc); use samplers.sgmcmc.sgnht / csgld for the others. "
            "Pass the BlackJAX object itself (e.g. blackjax.sghmc), not an instance built with "
            "a gradient estimator: the driver builds the estimator from logdensity_fn"
        )
    name = supported[factory]
    allowed = set(inspect.signature(factory).parameters) - {"grad_estimator"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(
            f"blackjax.{name} has no hyperparameter(s) {unknown}; allowed: {sorted(allowed)}"
        )
    _check_params(name, params)
    items = tuple(sorted(params.items()))
    label = f"blackjax.{name}" + (
        f"({', '.join(f'{k}={v!r}' for k, v in items)})" if items else ""
    )
    return BlackJAXKernel(factory, items, label)


def as_kernel(kernel):
    """The driver's kernel: an :class:`SGMCMCKernel` or :class:`BlackJAXKernel` unchanged,
    BlackJAX's own SG kernel objects wrapped by :func:`blackjax_kernel` with their defaults.
    Anything else raises a ``TypeError`` naming ``kernel``."""
    if isinstance(kernel, SGMCMCKernel | BlackJAXKernel):
        return kernel
    if hasattr(kernel, "differentiable") or hasattr(kernel, "as_top_level_api"):
        return blackjax_kernel(kernel)
    if all(hasattr(kernel, a) for a in ("init", "step", "name")):  # duck-typed kernel
        return SGMCMCKernel(kernel.init, kernel.step, kernel.name)
    if hasattr(kernel, "init") and hasattr(kernel, "step"):
        raise TypeError(
            "kernel looks like a BlackJAX SamplingAlgorithm built by the user; pass the "
            "BlackJAX object itself (e.g. blackjax.sgld, or "
            "samplers.sgmcmc.blackjax_kernel(blackjax.sghmc, num_integration_steps=...)): the "
            "driver builds the minibatch gradient estimator from logdensity_fn"
        )
    raise TypeError(
        f"kernel must be an SG-MCMC kernel (e.g. samplers.sgmcmc.sghmc()) or blackjax.sgld / "
        f"blackjax.sghmc, got {kernel!r}"
    )
