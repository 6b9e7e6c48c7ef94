"""GP targets on images for tuning a convolutional network's prior.

The GP samplers of :mod:`bayesnn.gp` work on ``(n, d)`` inputs; :func:`fit_functional_prior`
passes NHWC measurement images to them flattened, ``(n, H W C)``. Two image kernels:

* a pixel-space kernel, e.g. :class:`bayesnn.gp.RBF` on the flattened pixels with the
  lengthscale of :func:`median_distance` (the "median heuristic"; for standardised
  ``D``-dimensional inputs the root-mean-square distance is ``sqrt(2 D)``, the initial
  lengthscale of Tran et al. 2022 in their UCI setting);
* :class:`ArchitectureKernel`: the infinite-width NNGP kernel of a :mod:`bayesnn.nn.stax`
  architecture (e.g. the CNN-GP of the same convolutional network with chosen
  ``W_std``/``b_std``; Novak et al. 2019, Garriga-Alonso et al. 2019), evaluated by
  :func:`bayesnn.nn.kernels.kernel_fn` on the images reshaped back to ``input_shape``.

Several network outputs are matched to independent GPs with the same kernel (one critic
shared across outputs, distances summed; Tran et al. 2022). For a network read out by a dense
layer this is the exact infinite-width structure: its ``K`` outputs are independent,
identically distributed GPs (Lee et al. 2018).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from bayesnn.gp.kernels import Kernel
from bayesnn.nn.kernels import kernel_fn
from bayesnn.nn.layer import Layer

__all__ = ["ArchitectureKernel", "median_distance"]


class ArchitectureKernel(Kernel):
    """NNGP kernel of ``architecture`` on flattened inputs of shape ``(n, prod(input_shape))``.

    Parameters
    ----------
    architecture
        A :mod:`bayesnn.nn.stax` network with a single output channel axis (e.g. ending in
        ``Flatten`` then ``Dense``); its NNGP is the covariance of each output.
    input_shape
        Shape of one input, e.g. ``(H, W, C)``.

    Examples
    --------
    >>> arch = nn.serial(nn.Conv(4, (3, 3), W_std=2.0), nn.Relu(), nn.Flatten(), nn.Dense(1))
    >>> gp = GPPrior(ArchitectureKernel(arch, (8, 8, 1)))
    """

    architecture: Layer
    input_shape: tuple

    def __post_init__(self):
        if not isinstance(self.architecture, Layer):
            raise ValueError(
                f"ArchitectureKernel: architecture must be a bayesnn.nn Layer, got "
                f"{self.architecture!r}"
            )
        shape = tuple(self.input_shape)
        if not shape or not all(isinstance(d, int | np.integer) and d > 0 for d in shape):
            raise ValueError(
                f"ArchitectureKernel: input_shape must be a tuple of positive ints, got "
                f"{self.input_shape!r}"
            )
        try:
            out = self.architecture.output_shape(shape)
        except Exception as err:  # noqa: BLE001 - re-raised with the argument named
            raise ValueError(
                f"ArchitectureKernel: input_shape {shape} does not fit the architecture: {err}"
            ) from err
        if len(out) != 1:
            raise ValueError(
                f"ArchitectureKernel: the architecture must end without spatial axes "
                f"(e.g. Flatten then Dense), its output shape is {out}"
            )
        object.__setattr__(self, "input_shape", tuple(int(d) for d in shape))

    def _images(self, x):
        dim = int(np.prod(self.input_shape))
        if x.shape[-1] != dim:
            raise ValueError(
                f"ArchitectureKernel: inputs have dimension {x.shape[-1]}, expected "
                f"prod(input_shape {self.input_shape}) = {dim}"
            )
        return x.reshape(x.shape[0], *self.input_shape)

    def evaluate(self, x1, x2):
        """NNGP ``K(x1, x2)`` (exact diagonal when ``x2 is x1``)."""
        a = self._images(x1)
        b = None if x2 is x1 else self._images(x2)
        return kernel_fn(self.architecture, a, b, get="nngp")


ArchitectureKernel = jax.tree_util.register_dataclass(
    dataclasses.dataclass(frozen=True)(ArchitectureKernel),
    data_fields=[],
    meta_fields=["architecture", "input_shape"],
)


def median_distance(x, max_points: int = 1000) -> float:
    """Median Euclidean distance between distinct rows of ``x`` (flattened per example).

    The first ``max_points`` examples are used (pass a shuffled array).
    """
    x = np.asarray(x, np.float64)
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"x must hold at least two examples, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or inf")
    x = x[:max_points].reshape(min(x.shape[0], max_points), -1)
    sq = np.sum(x**2, 1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    iu = np.triu_indices(x.shape[0], 1)
    med = float(np.median(np.sqrt(d2[iu])))
    if not med > 0:
        raise ValueError("all examples of x are identical: no median distance")
    return med
