"""Batched sampling of Gaussian-process function values at measurement points.

For a zero-mean (or constant-mean) GP with kernel ``k`` and measurement points ``X``
(``n x d``), a function draw is ``f = m + L z`` with ``L L^T = K(X, X) + j I`` and
``z ~ N(0, I)``. With log-normal hyperpriors on the kernel (a "hierarchical GP" target, as in
Tran et al. 2022, Sec. 5), each function gets its own hyperparameter draw: the kernel
matrices are built with ``vmap`` and factorised by one batched Cholesky.

Jitter escalation: the jitter starts at ``jitter * mean(diag K)`` and is multiplied by 10
until the factor is finite or the cap ``max_jitter * mean(diag K)`` is passed; then the
result is flagged as failed (:class:`GPSampleError` when called eagerly, NaNs under ``jit``).

Precision: with ``GPPrior(..., precision="float64")`` (default) an eager call factorises in
float64 under a local ``jax.enable_x64(True)`` and returns the default float dtype; inside a
traced function the dtype of ``x`` is used (so enable x64 globally for float64 there).
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp

from bayesnn._linalg import cholesky_with_jitter
from bayesnn.gp.kernels import Kernel, has_hyperpriors, sample_kernel

__all__ = ["GPSampleError", "cholesky_with_jitter", "GPPrior"]


class GPSampleError(ValueError):
    """The kernel matrix stayed non positive definite up to the jitter cap."""


def _float():
    return jnp.result_type(float)


def _under_trace() -> bool:
    """Whether we are inside ``jit``/``vmap`` tracing (constants there are not tracers)."""
    from jax._src import core

    return not core.trace_state_clean()


@partial(jax.jit, static_argnames=("num_samples", "jitter", "max_jitter"))
def _sample_impl(rng_key, kernel, mean, x, num_samples, jitter, max_jitter):
    k_key, z_key = jax.random.split(rng_key)
    z = jax.random.normal(z_key, (num_samples, x.shape[0]), dtype=x.dtype)
    if has_hyperpriors(kernel):
        kernels = jax.vmap(sample_kernel, (0, None))(jax.random.split(k_key, num_samples), kernel)
        K = jax.vmap(lambda k: k.evaluate(x, x))(kernels).astype(x.dtype)
        L, _, ok = cholesky_with_jitter(K, jitter, max_jitter)
        f = jnp.einsum("sij,sj->si", L, z)
        ok = jnp.all(ok)
    else:
        kernel = sample_kernel(k_key, kernel)  # casts leaves to arrays
        K = kernel.evaluate(x, x).astype(x.dtype)
        L, _, ok = cholesky_with_jitter(K, jitter, max_jitter)
        f = z @ L.T
    f = f + jnp.asarray(mean, x.dtype)
    return jnp.where(ok, f, jnp.nan), ok


class GPPrior:
    """A GP prior as a target for functional priors: kernel (+ hyperpriors) and mean.

    Parameters
    ----------
    kernel
        A :class:`bayesnn.gp.kernels.Kernel`; hyperparameters may be
        :class:`~bayesnn.gp.kernels.LogNormal` hyperpriors (drawn once per function).
    mean
        Constant mean.
    jitter, max_jitter
        Relative jitter and its cap for :func:`cholesky_with_jitter`.
    precision
        ``"float64"`` (factorise in float64 in eager calls) or ``"float32"``.

    Examples
    --------
    >>> gp = GPPrior(RBF(variance=1.0, lengthscale=0.6))
    >>> f = gp.sample(jax.random.key(0), jnp.linspace(-6, 6, 200)[:, None], 128)
    """

    kernel: Kernel
    mean: float = 0.0
    jitter: float = 1e-6
    max_jitter: float = 1e-2
    precision: str = "float64"

    def __post_init__(self):
        if not isinstance(self.kernel, Kernel):
            raise ValueError(f"kernel must be a bayesnn.gp Kernel, got {self.kernel!r}")
        if not (0 < float(self.jitter) <= float(self.max_jitter)):
            raise ValueError(
                f"need 0 < jitter <= max_jitter, got jitter={self.jitter}, "
                f"max_jitter={self.max_jitter}"
            )
        if self.precision not in ("float64", "float32"):
            raise ValueError(f"precision must be 'float64' or 'float32', got {self.precision!r}")

    def sample_with_status(self, rng_key, x, num_samples: int):
        """``(f, ok)``: function values ``(num_samples, n)`` and the factorisation flag.

        Usable under ``jit`` (computes in ``x``'s dtype there); ``f`` is NaN where not ok.
        """
        if isinstance(x, jax.core.Tracer) or _under_trace():
            x = jnp.asarray(x)
            if x.ndim != 2:
                raise ValueError(f"x must have shape (n, d), got {x.shape}")
            return _sample_impl(
                rng_key, self.kernel, self.mean, x, int(num_samples), self.jitter, self.max_jitter
            )
        x = jnp.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"x must have shape (n, d), got {x.shape}")
        if not bool(jnp.all(jnp.isfinite(x))):
            raise ValueError("x contains NaN or inf")
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        out_dtype = _float()
        if self.precision == "float64":
            with jax.enable_x64(True):
                f, ok = _sample_impl(
                    rng_key,
                    jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), self.kernel),
                    self.mean,
                    jnp.asarray(x, jnp.float64),
                    num_samples,
                    self.jitter,
                    self.max_jitter,
                )
                f = f.astype(out_dtype)
            return f, ok
        return _sample_impl(
            rng_key,
            self.kernel,
            self.mean,
            x.astype(out_dtype),
            num_samples,
            self.jitter,
            self.max_jitter,
        )

    def sample(self, rng_key, x, num_samples: int):
        """Draw ``num_samples`` function values at ``x`` (``(n, d)``) -> ``(num_samples, n)``.

        Raises :class:`GPSampleError` (eager calls) if some kernel matrix is not positive
        definite even with the capped jitter.
        """
        f, ok = self.sample_with_status(rng_key, x, num_samples)
        if not isinstance(ok, jax.core.Tracer) and not bool(ok):
            raise GPSampleError(
                "GP kernel matrix is not positive definite even with relative jitter "
                f"{self.max_jitter} (check the kernel hyperparameters or raise max_jitter)"
            )
        return f

    def covariance(self, x):
        """``K(x, x)`` for a kernel without hyperpriors (for tests and plots)."""
        return self.kernel(x)


GPPrior = jax.tree_util.register_dataclass(
    dataclasses.dataclass(frozen=True)(GPPrior),
    data_fields=["kernel"],
    meta_fields=["mean", "jitter", "max_jitter", "precision"],
)
