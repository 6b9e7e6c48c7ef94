"""Factories that return one object per distinct value of their arguments.

The compiled SG-MCMC run is cached by the kernel and the step-size schedule it is given, and
both are closures: without this, ``sgmcmc.sghmc(alpha=2.0)`` or
``schedules.cyclical(h0, T, M)`` written again builds a new closure and the whole run is
compiled again. :func:`by_value` wraps a factory so equal hashable arguments give the same
object (an LRU cache of 256 entries); arguments that cannot be hashed (JAX arrays) build a
fresh object, as before. Written here rather than taken from ``functools.lru_cache`` alone
because that raises on unhashable arguments.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

__all__ = ["by_value"]


def by_value(factory: Callable) -> Callable:
    """``factory`` returning the same object for equal hashable arguments (module docstring)."""
    cached = functools.lru_cache(maxsize=256)(factory)

    @functools.wraps(factory)
    def wrapper(*args, **kwargs):
        try:
            hash((args, tuple(kwargs.items())))
        except TypeError:
            return factory(*args, **kwargs)
        return cached(*args, **kwargs)

    return wrapper
