"""Matrix products at full float32 precision for the monotone DBM.

On GPUs XLA's default float32 matmul is TF32 (~1e-3 relative error). That breaks the exact
symmetry of ``W`` and keeps the true mean-field residual above a 1e-4 solver tolerance (the
solver then stops at its iteration cap), so every product in this subpackage asks for
``Precision.HIGHEST``. On the CPU it changes nothing.
"""

import functools

import jax
import jax.numpy as jnp

__all__ = ["einsum", "matmul"]

einsum = functools.partial(jnp.einsum, precision=jax.lax.Precision.HIGHEST)
einsum.__doc__ = "``jnp.einsum`` with ``precision=Precision.HIGHEST`` (no TF32 on GPUs)."
matmul = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)
matmul.__doc__ = "``jnp.matmul`` with ``precision=Precision.HIGHEST`` (no TF32 on GPUs)."
