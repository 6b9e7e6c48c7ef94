"""Value checks that also work under ``jit``/``vmap``.

:func:`check` evaluates a NumPy predicate on concrete arrays and raises ``ValueError`` at once.
When an argument is traced (inside ``jit`` or ``vmap``) the values are unknown until the
compiled program runs, so the same predicate runs there through ``jax.pure_callback`` (which
passes the value through, so the check stays in the program); a failure raises
``jax.errors.JaxRuntimeError`` whose text contains the same message.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

__all__ = ["check", "is_traced"]


def is_traced(tree) -> bool:
    """Whether any leaf of ``tree`` is a tracer (we are inside ``jit``/``vmap``/``grad``)."""
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


def check(ok: Callable[..., bool], message: str, value):
    """Raise ``ValueError(message)`` unless ``ok(numpy_value)`` holds; return ``value``.

    Traced values are checked inside the compiled program by a ``jax.pure_callback`` that
    returns ``value`` unchanged: use the returned array, or the check is dead code. Under
    ``vmap`` the callback sees the whole batch at once.
    """

    def host_check(x):
        x = np.asarray(x)
        if not ok(x):
            raise ValueError(message)
        return x

    if not is_traced(value):
        host_check(value)
        return value
    shape = jax.ShapeDtypeStruct(value.shape, value.dtype)
    return jax.pure_callback(host_check, shape, value, vmap_method="expand_dims")
