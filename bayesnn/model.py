"""Probabilistic models: architecture + prior + likelihood -> minibatch log-density.

The position that a sampler moves is ``{"net": network params, "likelihood": lik params}``.
For a data set of ``N`` examples and a minibatch ``B`` of size ``|B|``,

.. math::

    \\log \\hat p(\\theta \\mid \\mathcal D) = \\log p(\\theta)
        + \\frac{N}{|B|} \\sum_{i \\in B} \\log p(y_i \\mid f_\\theta(x_i)),

an unbiased estimate of the log posterior (up to a constant): the prior is counted once and
the likelihood is scaled by ``N/|B|`` (Welling and Teh 2011). Hierarchical priors add a
``prior_state`` (the layer variances) updated by exact Gibbs steps between SG-MCMC steps.

:func:`numpyro_model` adapts a numpyro model to the same interface.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesnn.nn.stax import Layer
from bayesnn.priors import check_params, template_of

__all__ = ["BayesianNeuralNet", "PredictiveMean", "NumpyroModel", "numpyro_model", "check_data"]


def _as_array(a, name):
    try:
        if not hasattr(a, "dtype"):  # lists: check the element kind before jax sees them
            a = np.asarray(a)
            if a.dtype.kind not in "biuf":
                raise TypeError(f"got dtype {a.dtype}")
        arr = jnp.asarray(a)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array or a nested list of numbers: {err}") from None
    if not (jnp.issubdtype(arr.dtype, jnp.number) or jnp.issubdtype(arr.dtype, jnp.bool_)):
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    return arr


def check_data(x, y=None, *, name_x="x", name_y="y", input_shape=None):
    """Validate a data set: finite values, matching leading axes, expected input shape.

    ``x`` and ``y`` may be arrays or nested Python lists of numbers; anything else raises a
    ``TypeError`` naming the argument. Returns ``(x, y)`` as arrays.
    """
    x = _as_array(x, name_x)
    if x.ndim < 2:
        raise ValueError(
            f"{name_x} must have a batch axis and a feature axis, got shape {x.shape}"
        )
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        layout = (
            f" (NHWC images: shape (n, {', '.join(map(str, input_shape))}))"
            if len(input_shape) == 3
            else ""
        )
        raise ValueError(
            f"{name_x} has example shape {x.shape[1:]}, expected {tuple(input_shape)}{layout}"
        )
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{name_x} contains NaN or inf")
    if y is not None:
        y = _as_array(y, name_y)
        if y.ndim < 1 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"{name_x} and {name_y} have different numbers of examples: "
                f"{x.shape[0]} and {y.shape[:1] or 'a scalar'}"
            )
        if jnp.issubdtype(y.dtype, jnp.floating) and not bool(jnp.all(jnp.isfinite(y))):
            raise ValueError(f"{name_y} contains NaN or inf")
    return x, y


class PredictiveMean(NamedTuple):
    """State of :meth:`BayesianNeuralNet.predictive_accumulator` (per chain).

    Attributes
    ----------
    draws
        Kept draws seen (exploration draws included).
    count
        Draws averaged (exploration draws excluded).
    mean
        Running mean of the predictions, ``(n, K)``.
    """

    draws: jax.Array
    count: jax.Array
    mean: jax.Array

    def combine(self):
        """Pool chains (leading axis): the count-weighted mean over chains, ``(n, K)``."""
        w = jnp.asarray(self.count, self.mean.dtype)
        w = w / jnp.maximum(w.sum(), 1)
        return jnp.tensordot(w, self.mean, axes=1)


@dataclasses.dataclass(frozen=True)
class BayesianNeuralNet:
    """A Bayesian neural network: architecture, weight prior and likelihood.

    Parameters
    ----------
    architecture
        A :class:`bayesnn.nn.Layer` (e.g. ``serial(Dense(50), Tanh(), Dense(1))``).
    prior
        A prior from :mod:`bayesnn.priors` over the architecture's parameters, or a callable
        ``template -> prior``.
    likelihood
        A likelihood from :mod:`bayesnn.likelihoods`.
    input_shape
        Shape of one input (without the batch axis).

    Examples
    --------
    >>> import jax
    >>> from bayesnn import nn, priors, likelihoods
    >>> arch = nn.serial(nn.Dense(50, b_std=1.0), nn.Tanh(), nn.Dense(1, b_std=1.0))
    >>> model = BayesianNeuralNet.create(arch, (8,), priors.IsotropicGaussian.create,
    ...                                  likelihoods.Gaussian(0.3))
    >>> position = model.init(jax.random.key(0))
    """

    architecture: Layer
    prior: Any
    likelihood: Any
    input_shape: tuple

    @classmethod
    def create(cls, architecture, input_shape, prior, likelihood):
        """Build the model; ``prior`` may be a prior or a ``template -> prior`` factory."""
        input_shape = tuple(int(d) for d in input_shape)
        if not isinstance(architecture, Layer):
            raise TypeError("architecture must be a bayesnn.nn.Layer")
        if callable(prior) and not hasattr(prior, "log_prob"):
            template = template_of(
                jax.eval_shape(lambda k: architecture.init(k, input_shape), jax.random.key(0))
            )
            prior = prior(template)
        return cls(architecture, prior, likelihood, input_shape)

    @property
    def is_hierarchical(self) -> bool:
        """Whether the prior carries variances updated by Gibbs steps."""
        return hasattr(self.prior, "gibbs")

    def init(self, rng_key):
        """A starting position: architecture initialisation (as the functional-prior code, github.com/tranbahien/you-need-a-good-prior, does)."""
        params = self.architecture.init(rng_key, self.input_shape)
        if hasattr(self.prior, "template"):
            check_params(self.prior.template, params, "architecture parameters")
        return {"net": params, "likelihood": self.likelihood.init_params()}

    def init_from_prior(self, rng_key):
        """A starting position drawn from the prior."""
        return {"net": self.prior.sample(rng_key), "likelihood": self.likelihood.init_params()}

    def init_prior_state(self):
        """Initial hierarchical variances (``None`` for non-hierarchical priors)."""
        return self.prior.init_variances() if self.is_hierarchical else None

    def check_data(self, x, y=None, *, name_x="x", name_y="y"):
        """Validate a data set for this model before sampling: ``x`` finite with example shape
        ``input_shape``, ``y`` (if given) with as many examples and inside the likelihood's
        support (e.g. class labels in ``[0, K)`` with ``K`` the number of network outputs).
        Python lists are accepted. Returns ``(x, y)`` as arrays.

        The sampler sees only ``logdensity``; call this first so that bad labels raise a
        ``ValueError`` naming ``y`` instead of a NaN log density (a divergence).
        """
        x, y = check_data(x, y, name_x=name_x, name_y=name_y, input_shape=self.input_shape)
        if y is not None and hasattr(self.likelihood, "check_targets"):
            out = self.architecture.output_shape(self.input_shape)
            y = self.likelihood.check_targets(y, int(out[-1]), name=name_y)
        return x, y

    def predict(self, position, x):
        """Network outputs ``f_theta(x)``."""
        return self.architecture.apply(position["net"], jnp.asarray(x))

    def log_likelihood(self, position, batch):
        """Per-example log-likelihood of ``batch = (x, y)``."""
        x, y = batch
        return self.likelihood.log_prob(position["likelihood"], self.predict(position, x), y)

    def log_prior(self, position, prior_state=None):
        """Log prior density of the position (conditional on ``prior_state`` if given)."""
        if self.is_hierarchical:
            lp = self.prior.log_prob(position["net"], prior_state)
        else:
            lp = self.prior.log_prob(position["net"])
        return lp + self.likelihood.log_prior(position["likelihood"])

    def logdensity(self, position, batch, data_size, prior_state=None):
        """Minibatch estimate of the log posterior: prior once, likelihood times ``N/B``."""
        ll = self.log_likelihood(position, batch)
        return self.log_prior(position, prior_state) + data_size * jnp.mean(ll)

    def sample(
        self,
        rng_key,
        kernel,
        x,
        y,
        init_positions,
        *,
        temperature: float = 1.0,
        **kwargs,
    ):
        """Sample the (tempered) posterior with :func:`samplers.sgmcmc.sample`.

        The target is :math:`p_T(\\theta \\mid \\mathcal D) \\propto
        \\exp(\\log p(\\theta, \\mathcal D) / T)`: ``temperature < 1`` is a cold posterior
        (Wenzel et al., ICML 2020), ``1`` the Bayes posterior. ``x`` and ``y`` are checked by
        :meth:`check_data` and ``temperature`` must be positive and finite, all before
        anything is compiled. A hierarchical prior adds its exact Gibbs block (the layer
        variances, initialised at :meth:`init_prior_state` for every chain). ``kwargs`` go to
        :func:`samplers.sgmcmc.sample` (``num_samples``, ``batch_size``, ``step_size``, ...).
        """
        from samplers import sgmcmc

        try:
            temp = float(temperature)
        except (TypeError, ValueError):
            raise TypeError(f"temperature must be a number, got {temperature!r}") from None
        if not (math.isfinite(temp) and temp > 0):
            raise ValueError(f"temperature must be positive and finite, got {temperature!r}")
        x, y = self.check_data(x, y)
        leaves = jax.tree_util.tree_leaves(init_positions)
        if not leaves or any(jnp.ndim(a) < 1 for a in leaves):
            raise ValueError("init_positions needs a leading chain axis on every leaf")
        lead = jnp.shape(leaves[0])[0]
        example = jax.tree.map(lambda a: a[0], init_positions)
        try:
            check_params(self.prior.template, example["net"], "init_positions['net']")
        except (AttributeError, KeyError, TypeError):
            if not isinstance(example, dict) or "net" not in example:
                raise ValueError(
                    "init_positions must be {'net': ..., 'likelihood': ...} with a leading "
                    "chain axis (e.g. jax.vmap(model.init)(keys))"
                ) from None
        if self.is_hierarchical and "gibbs_fn" not in kwargs:
            state = self.init_prior_state()
            kwargs["gibbs_fn"] = self.gibbs
            kwargs["init_gibbs_state"] = jax.tree.map(
                lambda v: jnp.broadcast_to(v, (lead, *jnp.shape(v))), state
            )
        return sgmcmc.sample(
            rng_key,
            kernel,
            self.logdensity,
            (x, y),
            init_positions,
            temperature=temp,
            **kwargs,
        )

    def predictive_accumulator(
        self,
        x,
        *,
        step_size=None,
        num_burnin: int = 0,
        thinning: int = 1,
        link=None,
        position_fn=None,
    ):
        """A streaming posterior-predictive mean for ``sample(..., accumulate=...)``.

        .. math:: \\bar p(x) = \\frac1S \\sum_{s=1}^S g(f_{\\theta_s}(x)),

        with ``g`` = ``link`` (default: softmax, the class probabilities), averaged by
        Welford's update over the kept draws inside the compiled run, so memory holds one
        ``(n, K)`` mean per chain whatever the number of draws (pass ``store_draws=False`` to
        keep no draws at all). Draws of exploration phases of a cyclical ``step_size`` are
        skipped: give the same ``step_size``, ``num_burnin`` and ``thinning`` as to the
        sampler (kept draw ``k = 1, 2, ...`` follows step ``num_burnin + k thinning - 1``).
        ``position_fn`` maps a chain's sampled position to the model's parameters first, e.g.
        ``mass.from_z`` when sampling ``z = M^{1/2} theta`` under a
        :class:`samplers.sgmcmc.DiagonalMass`.

        The result's ``accumulated`` is a :class:`PredictiveMean` with a leading chain axis;
        :meth:`PredictiveMean.combine` pools the chains.
        """
        from samplers.runner import Accumulator
        from samplers.sgmcmc.schedules import as_schedule

        x, _ = check_data(x, input_shape=self.input_shape)
        for name, value, minimum in (("num_burnin", num_burnin, 0), ("thinning", thinning, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        # only a schedule's exploration flag matters here: floats, per-chain arrays and optax
        # schedules never explore
        schedule = as_schedule(step_size) if callable(step_size) else None
        link = (lambda f: jax.nn.softmax(f, axis=-1)) if link is None else link
        position_fn = (lambda p: p) if position_fn is None else position_fn

        def predict(state):
            return link(self.predict(position_fn(state.kernel_state.position), x))

        def init(state):
            shape = jax.eval_shape(predict, state)
            zero = jnp.zeros((), jnp.int32)
            return PredictiveMean(zero, zero, jnp.zeros(shape.shape, shape.dtype))

        def update(acc, state):
            draws = acc.draws + 1
            explore = False if schedule is None else schedule(num_burnin + draws * thinning - 1)[1]
            count = acc.count + jnp.where(explore, 0, 1)
            delta = (predict(state) - acc.mean) / jnp.maximum(count, 1).astype(acc.mean.dtype)
            mean = acc.mean + jnp.where(explore, 0.0, delta)
            return PredictiveMean(draws, count, mean)

        return Accumulator(init, update)

    def gibbs(self, rng_key, position, prior_state):
        """Exact Gibbs update of the hierarchical prior state given the weights."""
        return self.prior.gibbs(rng_key, position["net"], prior_state)

    def to_inference_data(self, result, x, y=None, *, max_weights: int | None = 0, rng_key=None):
        """ArviZ ``InferenceData`` of a sampler result, in function space by default.

        ``posterior`` holds the predictions ``f`` at ``x`` for every draw (what R-hat/ESS
        should be read on), the likelihood parameters (e.g. the noise scale) and, when
        ``max_weights`` is ``None`` or positive, the network weights (at most
        ``max_weights`` entries per leaf; ``None`` keeps all). With ``y``, the pointwise
        ``log_likelihood`` (for ``az.loo``/``az.waic``) and ``observed_data`` are added.
        With ``rng_key``, ``posterior_predictive`` holds replicated data
        :math:`\\tilde y_{cd} \\sim p(y \\mid f_{\\theta_{cd}}(x))`, one draw from the
        likelihood per posterior draw (draw ``(c, d)`` uses ``fold_in(fold_in(rng_key, c),
        d)``), in the shape of ``y`` when given, so ``az.plot_ppc`` works. The observation
        axis of ``y`` is named ``obs`` in every group. ``sample_stats`` holds the sampler's
        per-draw info. Exploration draws of a cyclical schedule are dropped.
        """
        from samplers.results import to_inference_data

        keep = ~np.asarray(result.info.explore).any(axis=0)
        positions = jax.tree.map(lambda a: jnp.asarray(a)[:, keep], result.positions)
        predict = jax.jit(jax.vmap(jax.vmap(self.predict, (0, None)), (0, None)))
        x = jnp.asarray(x)
        posterior = {"f": predict(positions, x)}
        if positions["likelihood"]:
            posterior["likelihood"] = positions["likelihood"]
        if max_weights is None or max_weights > 0:
            posterior["net"] = positions["net"]
        stats = {k: np.asarray(v)[:, keep] for k, v in result.info._asdict().items()}
        stats["diverging"] = ~stats["is_finite"]
        kwargs = {}
        if y is not None:
            y = jnp.asarray(y)
            loglik = jax.jit(jax.vmap(jax.vmap(self.log_likelihood, (0, None)), (0, None)))(
                positions, (x, y)
            )
            kwargs = {"log_likelihood": {"y": loglik}, "observed_data": {"y": y}}
        if rng_key is not None:
            kwargs["posterior_predictive"] = {
                "y": self._replicate(rng_key, positions["likelihood"], posterior["f"], y)
            }
        return to_inference_data(
            posterior,
            sample_stats=stats,
            max_weights=max_weights if max_weights else None,
            dims={"y": ["obs"]},
            **kwargs,
        )

    def _replicate(self, rng_key, lik_params, f, y=None):
        """One likelihood draw per posterior draw: ``(chains, draws, *y.shape)``."""
        if not hasattr(self.likelihood, "sample"):
            raise ValueError(
                f"rng_key: the likelihood {type(self.likelihood).__name__} cannot draw "
                "replicated data (it has no sample method)"
            )
        chains, draws = f.shape[:2]
        c, d = jnp.meshgrid(jnp.arange(chains), jnp.arange(draws), indexing="ij")
        keys = jax.vmap(
            jax.vmap(lambda c, d: jax.random.fold_in(jax.random.fold_in(rng_key, c), d))
        )(c, d)
        draw = jax.vmap(jax.vmap(self.likelihood.sample))
        y_rep = jax.jit(draw)(keys, lik_params, f)
        if y is not None:
            if y_rep[0, 0].size != y.size:
                raise ValueError(
                    f"y of shape {y.shape} does not match the likelihood's draws "
                    f"of shape {y_rep.shape[2:]}"
                )
            y_rep = y_rep.reshape((chains, draws, *y.shape)).astype(y.dtype)
        return y_rep


class _ScaleObserved:
    """numpyro messenger scaling only observed sample sites (the likelihood)."""

    def __new__(cls, fn, scale):
        from numpyro.primitives import Messenger

        class ScaleObserved(Messenger):
            def __init__(self, fn, scale):
                self.scale = scale
                super().__init__(fn)

            def process_message(self, msg):
                if msg["type"] == "sample" and msg.get("is_observed"):
                    msg["scale"] = (
                        self.scale if msg.get("scale") is None else self.scale * msg["scale"]
                    )

        return ScaleObserved(fn, scale)


@dataclasses.dataclass(frozen=True)
class NumpyroModel:
    """A numpyro model behind the ``logdensity(position, batch, data_size)`` interface.

    Positions live in numpyro's unconstrained space (a dict keyed by the latent site names);
    :meth:`constrain` maps draws back, :meth:`init` draws starting points with numpyro's
    init strategy, :meth:`to_inference_data` shows both.
    """

    model: Callable
    init_position: Any
    _potential_gen: Callable
    _postprocess_gen: Callable
    example_batch: Any
    init_strategy: Callable | None = None
    constrained_sites: tuple = ()

    def logdensity(self, position, batch, data_size, prior_state=None):
        """``-potential`` with observed sites scaled by ``data_size / batch size``."""
        del prior_state
        batch_size = jax.tree_util.tree_leaves(batch)[0].shape[0]
        scaled = _ScaleObserved(self.model, data_size / batch_size)
        from numpyro.infer.util import potential_energy

        return -potential_energy(scaled, tuple(batch), {}, position)

    def init(self, rng_key=None):
        """A starting position (unconstrained) drawn with the init strategy and ``rng_key``.

        numpyro's ``find_valid_initial_params`` applies the strategy (default
        ``init_to_uniform``: uniform in ``(-2, 2)`` in the unconstrained space) and redraws
        until the log density and its gradient are finite, so different keys give different
        valid starting points: ``jax.vmap(model.init)(jax.random.split(key, num_chains))``
        starts the chains apart. ``rng_key=None`` returns the position found when the model
        was built.
        """
        if rng_key is None:
            return self.init_position
        from numpyro.infer import init_to_uniform
        from numpyro.infer.util import find_valid_initial_params

        (position, _, _), _ = find_valid_initial_params(
            rng_key,
            self.model,
            init_strategy=self.init_strategy or init_to_uniform,
            model_args=self.example_batch,
            prototype_params=self.init_position,
        )
        return position

    def constrain(self, position):
        """Map an unconstrained position (or a batch of them, vmapped) to constrained values."""
        fn = self._postprocess_gen(*self.example_batch)
        return fn(position)

    def to_inference_data(self, result, **kwargs):
        """ArviZ ``InferenceData`` of a sampler result on this model.

        ``posterior`` holds the constrained values (and deterministic sites) under the
        model's site names, e.g. ``"sigma"`` for a ``HalfNormal`` scale, and the sampler's
        unconstrained coordinates of the constrained sites under ``"unconstrained.<site>"``
        (e.g. ``log sigma``). ``kwargs`` go to :meth:`SampleResult.to_inference_data
        <samplers.sgmcmc.driver.SampleResult.to_inference_data>` (``posterior_predictive``,
        ``observed_data``, ...).
        """
        constrain = jax.jit(jax.vmap(jax.vmap(self.constrain)))

        def transform(positions):
            out = dict(constrain(positions))
            unconstrained = {k: positions[k] for k in self.constrained_sites}
            if unconstrained:
                out["unconstrained"] = unconstrained
            return out

        return result.to_inference_data(transform=transform, **kwargs)


def _constrained_sites(model, example_batch) -> tuple:
    """Latent sites whose support is not the whole space (a non-identity bijection)."""
    from numpyro import handlers
    from numpyro.distributions.transforms import (
        IdentityTransform,
        IndependentTransform,
        biject_to,
    )

    def is_identity(support):
        transform = biject_to(support)
        while isinstance(transform, IndependentTransform):
            transform = transform.base_transform
        return isinstance(transform, IdentityTransform)

    trace = handlers.trace(handlers.seed(model, 0)).get_trace(*example_batch)
    return tuple(
        name
        for name, site in trace.items()
        if site["type"] == "sample"
        and not site.get("is_observed")
        and not is_identity(site["fn"].support)
    )


def numpyro_model(
    model: Callable, example_batch, rng_key, *, init_strategy: Callable | None = None
) -> NumpyroModel:
    """Adapt a numpyro model ``model(*batch)`` to the SG-MCMC log-density interface.

    The model must take the minibatch arrays as positional arguments and mark the
    likelihood with ``obs=``; observed sites are scaled by ``N / B`` (the prior is not).
    Do not use ``plate(..., subsample_size=...)``: subsampling is the sampler's job.
    ``init_strategy`` is a numpyro init strategy (default ``numpyro.infer.init_to_uniform``,
    uniform in ``(-2, 2)`` in the unconstrained space; e.g. ``init_to_uniform(radius=0.5)``,
    ``init_to_sample``, ``init_to_value(values=...)``) used by :meth:`NumpyroModel.init`;
    ``rng_key`` draws the position :meth:`NumpyroModel.init` returns without a key.
    """
    from numpyro.infer import init_to_uniform
    from numpyro.infer.util import initialize_model

    example_batch = tuple(jnp.asarray(a) for a in example_batch)
    for i, a in enumerate(example_batch):
        if jnp.issubdtype(a.dtype, jnp.floating) and not bool(jnp.all(jnp.isfinite(a))):
            raise ValueError(f"example_batch[{i}] contains NaN or inf")
    if init_strategy is not None and not callable(init_strategy):
        raise TypeError(f"init_strategy must be a numpyro init strategy, got {init_strategy!r}")
    init_strategy = init_strategy or init_to_uniform
    info = initialize_model(
        rng_key, model, model_args=example_batch, dynamic_args=True, init_strategy=init_strategy
    )
    return NumpyroModel(
        model,
        info.param_info.z,
        info.potential_fn,
        info.postprocess_fn,
        example_batch,
        init_strategy,
        _constrained_sites(model, example_batch),
    )
