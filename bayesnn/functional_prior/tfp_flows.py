"""Per-layer weight priors from TFP bijectors (optional; the ``tfp`` extra).

The flow family of :mod:`bayesnn.functional_prior.flows` writes its bijections out; this
module lets any bijector of ``tensorflow_probability.substrates.jax.bijectors`` play that
role. Per layer ``l`` the weights and biases are flattened into ``w_l`` in ``R^{D_l}`` (leaf
order of the layer's sub-tree) and ``w_l = B_l(z)``, ``z ~ N(0, I)``, where
``B_l = make_bijector(theta_l, D_l)`` is built from tunable hyperparameters ``theta_l``. The
density is the change of variables

.. math::

    \\log p(w) = \\sum_l \\log N(B_l^{-1}(w_l); 0, I) + \\log |\\det J_{B_l^{-1}}(w_l)|,

computed with TFP's ``inverse`` and ``inverse_log_det_jacobian`` (``event_ndims=1``), so it is
exact whenever the bijector's inverse is. :func:`bijector_family` returns a
:class:`~bayesnn.functional_prior.PriorFamily`, which ``fit_functional_prior`` accepts in
place of a family name (Tran et al. 2022, GPi-NF, with TFP's bijector library).

TFP is imported only by the bijector the caller builds: importing this module does not need
it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from bayesnn.functional_prior.families import PriorFamily
from bayesnn.priors import Template

__all__ = ["BijectorPrior", "bijector_family"]


def _layer_leaves(template: Template) -> dict:
    tree = template.unflatten(range(len(template.shapes)))
    if not isinstance(tree, dict):
        raise ValueError("bijector priors need a dict of layers as built by bayesnn.nn.serial")
    return {name: jax.tree_util.tree_leaves(sub) for name, sub in tree.items()}


def _layer_dims(template: Template) -> dict:
    return {
        name: sum(math.prod(template.shapes[i]) for i in ids)
        for name, ids in _layer_leaves(template).items()
    }


class BijectorPrior:
    """Weight prior ``w_l = make_bijector(theta[l], D_l)(z)``, ``z ~ N(0, I)``, per layer.

    Parameters
    ----------
    template
        :class:`bayesnn.priors.Template` of a dict-of-layers parameter pytree.
    theta
        ``{layer: hyperparameters}`` (differentiable leaves).
    make_bijector
        ``make_bijector(theta_layer, dim) -> bijector`` acting on vectors of length ``dim``
        (static; called inside traced code, so it must be traceable in ``theta_layer``).
    """

    template: Template
    theta: dict
    make_bijector: Callable

    def _bijectors(self):
        return {
            n: self.make_bijector(self.theta[n], d) for n, d in _layer_dims(self.template).items()
        }

    def log_prob(self, params) -> jax.Array:
        """Exact log density by the change of variables through the bijectors' inverses."""
        leaves = jax.tree_util.tree_leaves(params)
        if len(leaves) != len(self.template.shapes):
            raise ValueError(
                f"params has {len(leaves)} leaves, expected {len(self.template.shapes)}"
            )
        total = 0.0
        bijectors = self._bijectors()
        for name, ids in _layer_leaves(self.template).items():
            w = jnp.concatenate([jnp.ravel(leaves[i]) for i in ids])
            z = bijectors[name].inverse(w)
            ildj = bijectors[name].inverse_log_det_jacobian(w, event_ndims=1)
            total = total - 0.5 * jnp.sum(z**2) - 0.5 * z.shape[-1] * math.log(2 * math.pi) + ildj
        return total

    def sample(self, rng_key):
        """One parameter pytree ``w = B(z)`` (reparameterised: differentiable in ``theta``)."""
        ids_of = _layer_leaves(self.template)
        leaves = [None] * len(self.template.shapes)
        bijectors = self._bijectors()
        keys = jax.random.split(rng_key, max(len(ids_of), 1))
        for key, (name, ids) in zip(keys, ids_of.items(), strict=False):
            sizes = [math.prod(self.template.shapes[i]) for i in ids]
            w = bijectors[name].forward(jax.random.normal(key, (sum(sizes),)))
            start = 0
            for i, n in zip(ids, sizes, strict=True):
                leaves[i] = w[start : start + n].reshape(self.template.shapes[i])
                start += n
        return self.template.unflatten(leaves)


BijectorPrior = jax.tree_util.register_dataclass(
    dataclasses.dataclass(frozen=True)(BijectorPrior),
    data_fields=["theta"],
    meta_fields=["template", "make_bijector"],
)


def bijector_family(
    template: Template, make_bijector: Callable, init_theta: Callable
) -> PriorFamily:
    """A tunable prior family from TFP bijectors, for ``fit_functional_prior``.

    Parameters
    ----------
    template
        Parameter template of the architecture (``bayesnn.priors.template_of``).
    make_bijector
        ``make_bijector(theta_layer, dim) -> bijector`` on vectors of length ``dim``.
    init_theta
        ``init_theta(dim) -> theta_layer``: initial hyperparameters of a layer with ``dim``
        weights and biases.

    Example
    -------
    An elementwise affine bijector per layer (a layer-wise Gaussian prior, tunable)::

        tfb = tfp.bijectors
        family = bijector_family(
            template,
            lambda th, dim: tfb.Chain([tfb.Shift(th["shift"]), tfb.Scale(jnp.exp(th["log_scale"]))]),
            lambda dim: {"shift": jnp.zeros(dim), "log_scale": jnp.zeros(dim)},
        )
    """
    if not callable(make_bijector):
        raise ValueError(f"make_bijector must be callable, got {make_bijector!r}")
    if not callable(init_theta):
        raise ValueError(f"init_theta must be callable, got {init_theta!r}")
    dims = _layer_dims(template)

    def init():
        return {name: init_theta(d) for name, d in dims.items()}

    def prior(theta):
        return BijectorPrior(template, theta, make_bijector)

    def sample_params(theta, rng_key):
        return prior(theta).sample(rng_key)

    return PriorFamily(init, sample_params, prior, "tfp-bijector")
