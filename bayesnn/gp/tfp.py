"""TensorFlow Probability kernels as bayesnn GP kernels (optional; the ``tfp`` extra).

:func:`from_tfp` wraps a kernel of ``tensorflow_probability.substrates.jax.math.psd_kernels``
(``ExponentiatedQuadratic``, the Matern family, ``RationalQuadratic``, ``ExpSinSquared``,
``FeatureScaled``, sums and products, ...) as a :class:`bayesnn.gp.Kernel`, so TFP's kernel
library can be the target GP of a functional prior: ``GPPrior(from_tfp(k))``. The covariance
is TFP's ``k.matrix(x1, x2)``; nothing is re-derived here.

The wrapper is a pytree whose leaves are the kernel's floating-point constructor parameters
(``amplitude``, ``length_scale``, ...; nested kernels recursively), so it behaves like the
native kernels: :class:`~bayesnn.gp.GPPrior` casts the leaves to float64 for an eager
float64 factorisation, and a parameter given as a :class:`~bayesnn.gp.LogNormal` hyperprior
(``TFPKernel.create(tfk.MaternFiveHalves, amplitude=LogNormal(0.0, 0.5), length_scale=0.7)``)
is drawn once per function by :func:`~bayesnn.gp.sample_kernel`, giving a hierarchical GP
target (Tran et al. 2022, Sec. 5). Parameters that are not floating point (``feature_ndims``,
``validate_args``, ``name``, ``None``) are kept as static metadata.

TFP is imported only when a kernel is wrapped or evaluated: importing this module does not
need it. The only TFP build that imports on jax 0.10 is a nightly (``tfp-nightly``), which
is why this adapter is an optional extra and not a dependency.
"""

from __future__ import annotations

import dataclasses
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from bayesnn.gp.kernels import Kernel, LogNormal

__all__ = ["TFPKernel", "from_tfp"]


def _tfp():
    try:
        from tensorflow_probability.substrates import jax as tfp
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "bayesnn.gp.tfp needs TensorFlow Probability's JAX substrate: "
            'pip install "bayesnn-jax[tfp]"'
        ) from err
    return tfp


def _is_static(value) -> bool:
    return value is None or isinstance(value, bool | str | numbers.Integral)


class TFPKernel(Kernel):
    """A TFP ``psd_kernels`` kernel behind the :class:`bayesnn.gp.Kernel` interface.

    Build it with :func:`from_tfp` (from a kernel instance) or :meth:`create` (from a kernel
    class and parameters, which may be :class:`~bayesnn.gp.LogNormal` hyperpriors).

    Attributes
    ----------
    kernel_class
        The TFP kernel class (static).
    params
        Floating-point constructor parameters (pytree leaves; nested kernels as
        :class:`TFPKernel`).
    static
        The remaining constructor arguments, as a sorted tuple of ``(name, value)`` pairs.
    """

    kernel_class: type
    params: dict
    static: tuple = ()

    @classmethod
    def create(cls, kernel_class, **parameters) -> TFPKernel:
        """Wrap ``kernel_class(**parameters)``; TFP kernels among the parameters are wrapped too.

        Raises ``ValueError`` if ``kernel_class`` is not a TFP JAX-substrate PSD kernel, if a
        floating-point parameter is not finite, or if ``feature_ndims`` is not 1 (bayesnn
        kernels take inputs of shape ``(n, d)``).
        """
        base = _tfp().math.psd_kernels.PositiveSemidefiniteKernel
        if not (isinstance(kernel_class, type) and issubclass(kernel_class, base)):
            raise ValueError(
                "kernel_class must be a tensorflow_probability.substrates.jax "
                f"psd_kernels class, got {kernel_class!r}"
            )
        params, static = {}, {}
        for name, value in parameters.items():
            if isinstance(value, base):
                params[name] = from_tfp(value)
            elif (
                isinstance(value, list | tuple)
                and value
                and all(isinstance(v, base | TFPKernel) for v in value)
            ):  # the kernels of a sum or product
                params[name] = [v if isinstance(v, TFPKernel) else from_tfp(v) for v in value]
            elif isinstance(value, TFPKernel | LogNormal):
                params[name] = value
            elif _is_static(value):
                static[name] = value
            else:
                arr = np.asarray(value)
                if not np.issubdtype(arr.dtype, np.number):
                    raise ValueError(
                        f"{kernel_class.__name__} parameter {name!r} must be numeric, got {value!r}"
                    )
                if not np.all(np.isfinite(arr)):
                    raise ValueError(
                        f"{kernel_class.__name__} parameter {name!r} must be finite, got {value!r}"
                    )
                params[name] = value
        if static.get("feature_ndims", 1) != 1:
            raise ValueError(
                f"{kernel_class.__name__}: feature_ndims must be 1 (inputs of shape (n, d)), "
                f"got {static['feature_ndims']}"
            )
        return cls(kernel_class, params, tuple(sorted(static.items())))

    def tfp_kernel(self):
        """The TFP kernel instance with the current parameter values."""
        if any(isinstance(v, LogNormal) for v in jax.tree.leaves(self.params, is_leaf=_is_ln)):
            raise ValueError("kernel has LogNormal hyperpriors: call sample_kernel first")
        params = {name: _unwrap(value) for name, value in self.params.items()}
        return self.kernel_class(**params, **dict(self.static))

    def evaluate(self, x1, x2):
        """``k.matrix(x1, x2)`` of the TFP kernel, shape ``(n1, n2)``."""
        with jax.numpy_rank_promotion("allow"):  # TFP relies on NumPy rank promotion
            return self.tfp_kernel().matrix(x1, x2)

    def diag(self, x):
        """Prior variances ``k(x_i, x_i)`` via TFP's ``apply``, shape ``(n,)``."""
        x = jnp.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"x must have shape (n, d), got {x.shape}")
        with jax.numpy_rank_promotion("allow"):
            return self.tfp_kernel().apply(x, x)


def _is_ln(x):
    return isinstance(x, LogNormal)


def _unwrap(value):
    if isinstance(value, TFPKernel):
        return value.tfp_kernel()
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


TFPKernel = jax.tree_util.register_dataclass(
    dataclasses.dataclass(frozen=True)(TFPKernel),
    data_fields=["params"],
    meta_fields=["kernel_class", "static"],
)


def from_tfp(kernel) -> TFPKernel:
    """Wrap a TFP JAX-substrate ``psd_kernels`` kernel instance as a bayesnn GP kernel.

    Example
    -------
    >>> from tensorflow_probability.substrates import jax as tfp
    >>> from bayesnn.gp import GPPrior
    >>> k = tfp.math.psd_kernels.MaternFiveHalves(amplitude=1.0, length_scale=0.5)
    >>> gp = GPPrior(from_tfp(k))  # a target for bayesnn.functional_prior
    """
    base = _tfp().math.psd_kernels.PositiveSemidefiniteKernel
    if not isinstance(kernel, base):
        raise ValueError(
            "kernel must be a tensorflow_probability.substrates.jax psd_kernels kernel "
            f"instance, got {kernel!r}"
        )
    return TFPKernel.create(type(kernel), **kernel.parameters)
