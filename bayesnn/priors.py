"""Weight-space priors over parameter pytrees.

A prior is a pytree (its hyperparameters are leaves, so ``jax.grad`` reaches them when a
functional prior is tuned) with

* ``log_prob(params) -> scalar``, the log density of a parameter pytree;
* ``sample(rng_key) -> params``, a draw with the structure of the architecture's parameters.

Densities come from numpyro distributions. Layers are the top-level keys of the parameter
dict built by :func:`bayesnn.nn.serial` (``"dense_0"``, ...); within a layer, ``"W"`` leaves are
weights and every other leaf is a bias. With the ``"ntk"`` parameterisation a prior on the raw
weights is the "scaled" prior of Tran et al. (2022): effective weights ``W / sqrt(fan_in)``.

Hierarchical priors (inverse-gamma variances, Neal 1996) carry their per-layer variances as a
separate state that a sampler updates by exact Gibbs steps (:meth:`HierarchicalGaussian.gibbs`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

__all__ = [
    "Template",
    "template_of",
    "IsotropicGaussian",
    "LayerwiseGaussian",
    "HierarchicalGaussian",
    "last_layer_scale_mixture",
    "check_params",
]


@dataclasses.dataclass(frozen=True)
class Template:
    """Static description (tree structure, shapes and dtypes) of a parameter pytree."""

    treedef: Any
    shapes: tuple
    dtypes: tuple

    def unflatten(self, leaves):
        return jax.tree_util.tree_unflatten(self.treedef, list(leaves))

    def layer_names(self) -> tuple[str, ...]:
        tree = self.unflatten(range(len(self.shapes)))
        return tuple(tree.keys()) if isinstance(tree, dict) else ()


def template_of(params) -> Template:
    """Record the structure of ``params`` (arrays or ``jax.ShapeDtypeStruct``)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    return Template(
        treedef,
        tuple(tuple(int(d) for d in jnp.shape(leaf)) for leaf in leaves),
        tuple(jnp.dtype(getattr(leaf, "dtype", jnp.float32)).name for leaf in leaves),
    )


def check_params(template: Template, params, argname: str = "params") -> None:
    """Raise ``ValueError`` if ``params`` does not match ``template`` in structure or shape."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    if treedef != template.treedef:
        raise ValueError(f"{argname} has tree structure {treedef}, expected {template.treedef}")
    for i, (leaf, shape) in enumerate(zip(leaves, template.shapes, strict=True)):
        if tuple(jnp.shape(leaf)) != shape:
            raise ValueError(f"{argname} leaf {i} has shape {jnp.shape(leaf)}, expected {shape}")


def _layer_items(template: Template):
    """Yield (layer name, key in layer, flat leaf index) for dict-of-dict parameters."""
    tree = template.unflatten(range(len(template.shapes)))
    if not isinstance(tree, dict):
        raise ValueError("layer-wise priors need a dict of layers as built by bayesnn.nn.serial")
    for layer, sub in tree.items():
        if isinstance(sub, dict):
            for name, idx in sub.items():
                yield layer, name, idx
        else:
            yield layer, "W", sub


def _positive(name, value):
    """Check a hyperparameter at construction (skipped for traced values)."""
    value = jnp.asarray(value, jnp.float32)
    try:
        ok = bool(jnp.all(value > 0)) and bool(jnp.all(jnp.isfinite(value)))
    except jax.errors.ConcretizationTypeError:
        return value
    if not ok:
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value


def _register(cls, data_fields, meta_fields):
    return jax.tree_util.register_dataclass(
        dataclasses.dataclass(frozen=True)(cls), data_fields=data_fields, meta_fields=meta_fields
    )


class IsotropicGaussian:
    """``theta ~ N(0, scale^2 I)`` over every leaf of the parameter pytree.

    Parameters
    ----------
    template
        :class:`Template` of the parameters (``template_of(architecture.init(...))``).
    scale
        Positive standard deviation.
    """

    template: Template
    scale: jax.Array

    @classmethod
    def create(cls, template: Template, scale=1.0):
        """Validated constructor."""
        return cls(template, _positive("scale", scale))

    def log_prob(self, params) -> jax.Array:
        """Sum of ``N(0, scale^2)`` log densities over all leaves."""
        d = dist.Normal(0.0, self.scale)
        return sum(jnp.sum(d.log_prob(x)) for x in jax.tree_util.tree_leaves(params))

    def sample(self, rng_key):
        """Draw a parameter pytree."""
        keys = jax.random.split(rng_key, len(self.template.shapes))
        leaves = [
            self.scale * jax.random.normal(k, s, dtype=t)
            for k, s, t in zip(keys, self.template.shapes, self.template.dtypes, strict=True)
        ]
        return self.template.unflatten(leaves)


IsotropicGaussian = _register(IsotropicGaussian, ["scale"], ["template"])


class LayerwiseGaussian:
    """``W_l ~ N(0, s_{w,l}^2)``, ``b_l ~ N(0, s_{b,l}^2)`` with one scale per layer.

    The GPi-G prior of Tran et al. (2022) when the scales are tuned by
    :mod:`bayesnn.functional_prior`.

    Parameters
    ----------
    template
        :class:`Template` of a dict-of-layers parameter pytree.
    weight_scales, bias_scales
        Dicts ``{layer name: positive scale}`` (arrays, differentiable).
    """

    template: Template
    weight_scales: dict
    bias_scales: dict

    @classmethod
    def create(cls, template: Template, weight_scale=1.0, bias_scale=1.0):
        """Same scales for every layer."""
        layers = template.layer_names()
        return cls.from_dicts(
            template, dict.fromkeys(layers, weight_scale), dict.fromkeys(layers, bias_scale)
        )

    @classmethod
    def from_dicts(cls, template: Template, weight_scales: dict, bias_scales: dict):
        """Validated constructor from per-layer scale dicts."""
        layers = set(template.layer_names())
        checked = []
        for name, scales in (("weight_scales", weight_scales), ("bias_scales", bias_scales)):
            if set(scales) != layers:
                raise ValueError(f"{name} must have one entry per layer {sorted(layers)}")
            checked.append({k: _positive(f"{name}[{k!r}]", v) for k, v in scales.items()})
        return cls(template, *checked)

    def scales(self):
        """Flat list of the standard deviation of each leaf (template order)."""
        out = [None] * len(self.template.shapes)
        for layer, name, idx in _layer_items(self.template):
            out[idx] = self.weight_scales[layer] if name == "W" else self.bias_scales[layer]
        return out

    def log_prob(self, params) -> jax.Array:
        """Sum of per-layer Gaussian log densities."""
        leaves = jax.tree_util.tree_leaves(params)
        return sum(
            jnp.sum(dist.Normal(0.0, s).log_prob(x))
            for x, s in zip(leaves, self.scales(), strict=True)
        )

    def sample(self, rng_key):
        """Draw a parameter pytree (reparameterised: differentiable in the scales)."""
        keys = jax.random.split(rng_key, len(self.template.shapes))
        leaves = [
            s * jax.random.normal(k, shape, dtype=t)
            for k, shape, t, s in zip(
                keys, self.template.shapes, self.template.dtypes, self.scales(), strict=True
            )
        ]
        return self.template.unflatten(leaves)


LayerwiseGaussian = _register(LayerwiseGaussian, ["weight_scales", "bias_scales"], ["template"])


class HierarchicalGaussian:
    """Gaussian weights with inverse-gamma variances per layer (weights and biases apart).

    .. math::

        \\sigma^2_{l} \\sim \\mathrm{InvGamma}(a_l, b_l), \\qquad
        \\theta_{l,i} \\mid \\sigma^2_l \\sim N(0, \\sigma^2_l).

    The GPi-H prior of Tran et al. (2022). Variances are a separate state
    (``{layer: {"W": var, "b": var}}``) that samplers update by the exact conditional

    .. math::

        \\sigma^2_l \\mid \\theta \\sim \\mathrm{InvGamma}(a_l + n_l/2,\\; b_l + \\|\\theta_l\\|^2/2).

    Layers listed in ``fixed_scales`` are not hierarchical: their leaves are
    ``N(0, fixed_scale^2)`` and their variance entry stays constant.

    Parameters
    ----------
    template
        :class:`Template` of a dict-of-layers parameter pytree.
    concentration, rate
        Dicts ``{layer: {"W": a, "b": a}}`` of positive inverse-gamma parameters.
    fixed_scales
        Dict ``{layer: scale}`` for non-hierarchical layers (default none).
    """

    template: Template
    concentration: dict
    rate: dict
    fixed_scales: dict

    @classmethod
    def create(cls, template: Template, concentration=1.0, rate=1.0, layers=None, fixed_scale=1.0):
        """Same inverse-gamma parameters for ``layers`` (default all); the others fixed."""
        names = template.layer_names()
        layers = names if layers is None else tuple(layers)
        unknown = set(layers) - set(names)
        if unknown:
            raise ValueError(f"layers {sorted(unknown)} not in the parameters {names}")
        conc, rate_, fixed = {}, {}, {}
        for layer, name, _ in _layer_items(template):
            if layer in layers:
                conc.setdefault(layer, {})[name] = _positive("concentration", concentration)
                rate_.setdefault(layer, {})[name] = _positive("rate", rate)
            else:
                fixed[layer] = _positive("fixed_scale", fixed_scale)
        return cls(template, conc, rate_, fixed)

    def _structure(self, params):
        return self.template.unflatten(jax.tree_util.tree_leaves(params))

    def init_variances(self):
        """Variances at the prior mode-ish point ``b / (a + 1)`` (fixed layers: scale^2)."""
        out = {}
        for layer, name, _ in _layer_items(self.template):
            if layer in self.concentration:
                v = self.rate[layer][name] / (self.concentration[layer][name] + 1.0)
            else:
                v = self.fixed_scales[layer] ** 2
            out.setdefault(layer, {})[name] = jnp.asarray(v, jnp.float32)
        return out

    def log_prob(self, params, variances=None) -> jax.Array:
        """``log p(theta | sigma^2)`` when ``variances`` is given, else the marginal.

        The marginal integrates each hierarchical variance out: per layer, a multivariate
        Student-t ``t_{2a}(0, (b/a) I)`` (closed form).
        """
        tree = self._structure(params)
        total = 0.0
        for layer, name, _ in _layer_items(self.template):
            x = tree[layer][name] if isinstance(tree[layer], dict) else tree[layer]
            if layer in self.concentration:
                a, b = self.concentration[layer][name], self.rate[layer][name]
                if variances is None:
                    n = x.size
                    ss = jnp.sum(x**2)
                    total = total + (
                        jax.scipy.special.gammaln(a + n / 2)
                        - jax.scipy.special.gammaln(a)
                        + a * jnp.log(b)
                        - (a + n / 2) * jnp.log(b + ss / 2)
                        - n / 2 * jnp.log(2 * jnp.pi)
                    )
                else:
                    s = jnp.sqrt(variances[layer][name])
                    total = total + jnp.sum(dist.Normal(0.0, s).log_prob(x))
            else:
                total = total + jnp.sum(dist.Normal(0.0, self.fixed_scales[layer]).log_prob(x))
        return total

    def variance_log_prob(self, variances) -> jax.Array:
        """``log p(sigma^2)`` of the hierarchical variances (inverse gamma)."""
        total = 0.0
        for layer, d in self.concentration.items():
            for name, a in d.items():
                total = total + dist.InverseGamma(a, self.rate[layer][name]).log_prob(
                    variances[layer][name]
                )
        return total

    def sample_variances(self, rng_key):
        """Draw the per-layer variances from their inverse-gamma prior."""
        out = self.init_variances()
        items = [(ln, n) for ln, d in self.concentration.items() for n in d]
        if not items:
            return out
        draws = _inverse_gamma_draws(
            rng_key,
            [self.concentration[ln][n] for ln, n in items],
            [self.rate[ln][n] for ln, n in items],
        )
        for i, (layer, name) in enumerate(items):
            out[layer][name] = draws[i]
        return out

    def sample(self, rng_key, variances=None):
        """Draw parameters (drawing the variances first unless given)."""
        v_key, p_key = jax.random.split(rng_key)
        if variances is None:
            variances = self.sample_variances(v_key)
        keys = iter(jax.random.split(p_key, len(self.template.shapes)))
        leaves = [None] * len(self.template.shapes)
        for layer, name, idx in _layer_items(self.template):
            shape, dtype = self.template.shapes[idx], self.template.dtypes[idx]
            leaves[idx] = jnp.sqrt(variances[layer][name]) * jax.random.normal(
                next(keys), shape, dtype=dtype
            )
        return self.template.unflatten(leaves)

    def gibbs(self, rng_key, params, variances=None):
        """Exact conditional draw of the hierarchical variances given the parameters.

        ``sigma^2_l | theta ~ InvGamma(a_l + n_l/2, b_l + sum theta_l^2 / 2)``.
        """
        tree = self._structure(params)
        out = self.init_variances() if variances is None else jax.tree.map(jnp.asarray, variances)
        items = [(ln, n) for ln, d in self.concentration.items() for n in d]
        if not items:
            return out
        a, b = [], []
        for layer, name in items:
            x = tree[layer][name] if isinstance(tree[layer], dict) else tree[layer]
            a.append(self.concentration[layer][name] + x.size / 2)
            b.append(self.rate[layer][name] + jnp.sum(x**2) / 2)
        # one vectorised gamma draw (InvGamma(a, b) = b / Gamma(a, 1)): a single rejection
        # loop compiles several times faster than one per layer and parameter kind
        draws = _inverse_gamma_draws(rng_key, a, b)
        for i, (layer, name) in enumerate(items):
            out[layer][name] = draws[i]
        return out


def _inverse_gamma_draws(rng_key, concentrations, rates):
    """One ``InvGamma(a_i, b_i)`` draw per scalar pair, as ``b / Gamma(a, 1)`` in one call.

    A single vectorised gamma rejection loop compiles several times faster than one per
    layer and parameter kind.
    """
    a = jnp.stack([jnp.asarray(x, jnp.float32) for x in concentrations])
    b = jnp.stack([jnp.asarray(x, jnp.float32) for x in rates])
    return b / jax.random.gamma(rng_key, a)


HierarchicalGaussian = _register(
    HierarchicalGaussian, ["concentration", "rate", "fixed_scales"], ["template"]
)


def last_layer_scale_mixture(template: Template, concentration=2.0, rate=2.0, fixed_scale=1.0):
    """Inverse-gamma prior on the readout layer's variance, fixed Gaussians elsewhere.

    The finite-width counterpart of the Student-t process of Lee et al. (2022): the last layer
    weights are ``N(0, sigma^2)`` with ``sigma^2 ~ InvGamma(a, b)``; every other layer is
    ``N(0, fixed_scale^2)``.
    """
    names = template.layer_names()
    if not names:
        raise ValueError("the parameters have no layers")
    return HierarchicalGaussian.create(
        template, concentration, rate, layers=(names[-1],), fixed_scale=fixed_scale
    )
