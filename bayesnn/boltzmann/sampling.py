"""Sampling from a (monotone) deep Boltzmann machine by Gibbs sweeps, many chains at once.

The mean-field fixed point is a deterministic approximation; samples from
:math:`p(z) \\propto \\exp(\\tfrac12 z^T W z + b^T z)` itself, and from conditionals given a
partial image, come from Gibbs sweeps run by :func:`samplers.gibbs.sample_chains` (chains
vmapped, burn-in and thinning inside ``lax.scan``). The sweep is the coupling's own
(``coupling.gibbs_kernel(spec)``):

- dense couplings: sequential single-site Gibbs with the row activations
  :math:`a_r = A_r z` cached, so a sweep costs one matrix-vector product
  (:meth:`bayesnn.boltzmann.dense.Coupling.gibbs_kernel`);
- convolutional couplings: chromatic block Gibbs, one convolutional matvec per colour of a
  greedy colouring built from the conv structure alone
  (:meth:`bayesnn.boltzmann.conv.ConvCoupling.gibbs_kernel`, :func:`color_classes`).

References: Geman and Geman, IEEE TPAMI 1984; Salakhutdinov and Hinton, "Deep Boltzmann
machines", AISTATS 2009; Gonzalez et al., "Parallel Gibbs sampling", AISTATS 2011; Feng,
Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
"""

import jax
import jax.numpy as jnp

from bayesnn.boltzmann.coupling import color_classes
from samplers import gibbs

__all__ = ["gibbs_kernel", "init_chains", "sample", "color_classes"]


def gibbs_kernel(coupling, spec):
    """One-sweep Gibbs kernel for one chain of the DBM.

    Parameters
    ----------
    coupling : Coupling or ConvCoupling
        Concrete effective weights (the dense colouring reads ``W``).
    spec : MDBMSpec or ConvMDBMSpec

    Returns
    -------
    kernel : callable
        ``(rng_key, GibbsState, beta=1.0) -> (GibbsState, GibbsInfo)``.
    init_fn : callable
        ``(units, clamp) -> GibbsState`` for one chain (vmap it over chains).

    References
    ----------
    Salakhutdinov and Hinton, AISTATS 2009; Gonzalez et al., AISTATS 2011.
    """
    return coupling.gibbs_kernel(spec)


def _initial_units(rng_key, spec, num_chains, evidence):
    # one uniform draw for all layers (a single PRNG call keeps the compiled program small)
    u = jax.random.uniform(rng_key, (num_chains, sum(lay.num_vars for lay in spec.layers)))
    units, i = [], 0
    for lay in spec.layers:
        idx = jnp.floor(u[:, i : i + lay.num_vars] * lay.num_states).astype(jnp.int32)
        units.append(jax.nn.one_hot(jnp.minimum(idx, lay.num_states - 1), lay.num_states))
        i += lay.num_vars
    units = tuple(units)
    if evidence is None:
        clamp = tuple(jnp.zeros((num_chains, lay.num_vars), bool) for lay in spec.layers)
        return units, clamp
    if evidence.mask[0].shape[0] != num_chains:
        raise ValueError(
            f"evidence must be batched over num_chains={num_chains}, got batch "
            f"{evidence.mask[0].shape[0]}"
        )
    clamp = tuple(m > 0.5 for m in evidence.mask)
    units = tuple(
        jnp.where(c[..., None], v, u)
        for u, c, v in zip(units, clamp, evidence.values, strict=True)
    )
    return units, clamp


def init_chains(rng_key, coupling, spec, num_chains, evidence=None, init_fn=None):
    """Random one-hot starting states for ``num_chains`` chains, observed variables clamped.

    Parameters
    ----------
    rng_key : PRNGKey
    coupling : Coupling or ConvCoupling
    spec : MDBMSpec or ConvMDBMSpec
    num_chains : int
    evidence : Evidence, optional
        Batched over chains (``mask[l]`` of shape ``(num_chains, n_l)``).
    init_fn : callable, optional
        From :func:`gibbs_kernel` (computed if not given).

    Returns
    -------
    GibbsState
        Batched over chains.

    References
    ----------
    Salakhutdinov and Hinton, AISTATS 2009.
    """
    units, clamp = _initial_units(rng_key, spec, num_chains, evidence)
    if init_fn is None:
        _, init_fn = gibbs_kernel(coupling, spec)
    return jax.vmap(init_fn)(units, clamp)


def sample(
    rng_key,
    coupling,
    spec,
    num_chains,
    num_samples,
    num_burnin=100,
    thin=1,
    evidence=None,
    beta=1.0,
    transform=None,
):
    """Draw samples (or conditional samples given evidence) by Gibbs sweeps, many chains.

    Parameters
    ----------
    rng_key : PRNGKey
    coupling : Coupling or ConvCoupling
    spec : MDBMSpec or ConvMDBMSpec
    num_chains, num_samples, num_burnin, thin : int
    evidence : Evidence, optional
        Per-chain clamping (e.g. the observed part of an image, repeated per chain).
    beta : float
        Inverse temperature.
    transform : callable, optional
        ``GibbsState -> pytree`` to store (default: all units).

    Returns
    -------
    trace : pytree
        Leaves ``(num_chains, num_samples, ...)``.
    info : GibbsInfo
        ``num_changed`` of shape ``(num_chains, num_samples)``.

    References
    ----------
    Salakhutdinov and Hinton, AISTATS 2009; Feng, Winston and Kolter, TMLR 2023.
    """
    if int(num_chains) < 1:
        raise ValueError(f"num_chains must be >= 1, got {num_chains}")
    k_init, k_run = jax.random.split(rng_key)
    kernel, init_fn = gibbs_kernel(coupling, spec)
    states = init_chains(k_init, coupling, spec, num_chains, evidence, init_fn)
    _, trace, info = gibbs.sample_chains(
        k_run, kernel, states, num_samples, num_burnin, thin, transform, beta
    )
    return trace, info
