"""Step-size schedules: ``schedule(t) -> (step_size, explore)`` for integer step ``t``.

``explore`` is a boolean: during an exploration phase the driver sets the temperature to
zero (the sampler becomes an optimiser) and marks the draws so they are left out of the
posterior. Schedules are pure functions of a traced step index.

Any optax schedule (a callable ``step -> value``, e.g. ``optax.cosine_decay_schedule``) is
accepted as well: :func:`as_schedule` recognises it by its output (one scalar instead of a
pair) and wraps it with :func:`from_optax` (never exploring).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from samplers._memo import by_value

__all__ = ["constant", "polynomial_decay", "cyclical", "from_optax", "as_schedule"]


def _check_positive(name, value):
    if not float(value) > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


@by_value
def constant(step_size: float) -> Callable:
    """A constant step size, never exploring."""
    _check_positive("step_size", step_size)

    def schedule(t):
        return jnp.asarray(step_size, jnp.float32), jnp.zeros((), bool)

    return schedule


@by_value
def polynomial_decay(a: float, b: float = 1.0, gamma: float = 0.55) -> Callable:
    """``h_t = a (b + t)^{-gamma}`` (Welling and Teh 2011; ``gamma`` in (0.5, 1])."""
    _check_positive("a", a)
    _check_positive("b", b)
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")

    def schedule(t):
        return a * (b + t) ** (-gamma), jnp.zeros((), bool)

    return schedule


@by_value
def cyclical(
    step_size: float, num_steps: int, num_cycles: int, exploration_ratio: float = 0.5
) -> Callable:
    """Cyclical cosine step size (Zhang, Li, Zhang, Chen, Wilson, ICLR 2020).

    .. math::

        h_t = \\frac{h_0}{2}\\left[\\cos\\left(\\frac{\\pi \\bmod(t, \\lceil T/M \\rceil)}
              {\\lceil T/M \\rceil}\\right) + 1\\right],

    with ``T = num_steps`` and ``M = num_cycles``. The first ``exploration_ratio`` of each
    cycle explores (optimisation, no noise, draws dropped); the rest samples.
    """
    _check_positive("step_size", step_size)
    if int(num_cycles) < 1 or int(num_steps) < int(num_cycles):
        raise ValueError("need num_steps >= num_cycles >= 1")
    if not 0 <= exploration_ratio < 1:
        raise ValueError(f"exploration_ratio must be in [0, 1), got {exploration_ratio!r}")
    cycle_length = -(-int(num_steps) // int(num_cycles))

    def schedule(t):
        phase = jnp.mod(t, cycle_length) / cycle_length
        h = 0.5 * step_size * (jnp.cos(jnp.pi * phase) + 1.0)
        return h.astype(jnp.float32), phase < exploration_ratio

    return schedule


@functools.lru_cache(maxsize=64)
def from_optax(schedule: Callable) -> Callable:
    """An optax-style schedule ``step -> step_size`` as a driver schedule (never exploring).

    ``h_t = schedule(t)`` as float32, e.g. ``from_optax(optax.cosine_decay_schedule(1e-2,
    1000))``. The wrapper is cached per ``schedule`` (the same function gives the same
    wrapper, so the driver compiles it once).
    """
    if not callable(schedule):
        raise TypeError(f"schedule must be callable (step -> step size), got {schedule!r}")

    def wrapped(t):
        return jnp.asarray(schedule(t), jnp.float32), jnp.zeros((), bool)

    return wrapped


def _is_pair_schedule(schedule: Callable) -> bool:
    """Whether ``schedule(t)`` returns ``(step_size, explore)`` (else one scalar: optax)."""
    try:
        out = jax.eval_shape(schedule, jax.ShapeDtypeStruct((), jnp.int32))
    except Exception as err:  # noqa: BLE001 - reported with the argument's name
        raise ValueError(
            f"step_size schedule cannot be evaluated at a traced integer step: {err}"
        ) from err
    if isinstance(out, tuple) and len(out) == 2:
        return True
    if hasattr(out, "shape") and out.shape == ():
        return False
    raise ValueError(
        "step_size schedule must return a scalar step size (optax style) or a pair "
        f"(step_size, explore); got {out}"
    )


def as_schedule(step_size) -> Callable:
    """A schedule from a float or scalar array (constant), an optax-style schedule
    ``step -> value`` (wrapped by :func:`from_optax`) or a schedule (unchanged)."""
    if callable(step_size):
        return step_size if _is_pair_schedule(step_size) else from_optax(step_size)
    return constant(step_size)
